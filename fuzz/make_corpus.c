/*
 * make_corpus.c - writes the seed inputs of the fuzz targets
 *
 *   make_corpus DIR
 *
 * writes DIR/packet/, DIR/codec/ and DIR/roundtrip/: valid packets for
 * every codec this build has (compressed and raw, consecutive and
 * scattered pages, zero pages, both regions of fuzz_packet's decoder),
 * valid streams of every codec in fuzz_codec's input format, and
 * round-trip inputs that reach each codec and page kind; and DIR/multiboot/:
 * minimal multiboot ELF32 kernels built by hand; DIR/stream/: file:
 * migrations of fuzz_stream's regions made by a real zm_source (every
 * codec, two rounds, with and without VERIFY, either region order).  The
 * vmstate seed is a blob from the real saver, which needs /dev/kvm: see
 * fuzz/README.md.  Its output is checked in as fuzz/corpora/
 * (fuzz/README.md); tests do not run it.
 */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/codec.h"
#include "fuzz_data_producer.h"
#include "fuzz_roundtrip.h"
#include "zmigrate.h"

#define PAGE 4096u
#define MAX_SEED (64u * 1024)

static const char *out_dir;
static unsigned written;

static uint64_t rng_state = 0x7a6d6967ull;

/* splitmix64 */
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Text-like bytes that every codec compresses well. */
static void fill_text(unsigned char *buf, size_t len)
{
    static const char *const words[] = {
        "page ",   "migrate ",    "dirty ",  "region ", "zstd ",   "guest ",
        "memory ", "0x7f3a2c00 ", "static ", "int ",    "return ", "\n",
    };
    size_t n = 0;

    while (n < len) {
        const char *w = words[rng() % (sizeof(words) / sizeof(words[0]))];
        for (size_t i = 0; w[i] && n < len; i++) {
            buf[n++] = (unsigned char)w[i];
        }
    }
}

static void fill_random(unsigned char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (unsigned char)rng();
    }
}

static void save(const char *target, const char *name, const void *data,
                 size_t len)
{
    char path[512];
    FILE *f;

    if (len == 0 || len > MAX_SEED) {
        fprintf(stderr, "make_corpus: %s/%s: %zu bytes, skipped\n", target,
                name, len);
        return;
    }
    snprintf(path, sizeof(path), "%s/%s", out_dir, target);
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
    f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    written++;
}

/* ---- fuzz_packet: packets for a 4 KiB, 64-page batch decoder ---------- */

enum content { TEXT, RANDOM, ZERO };

struct packet_seed {
    const char *name;
    unsigned codecs; /* made with these codecs: bit (1u << id) */
    uint32_t region; /* 0: 64 pages, 1: 3 pages, 2: 2^32 pages */
    unsigned count;
    uint32_t index[16];
    enum content kind[16];
    bool scattered_src; /* pages apart in memory: several codec blocks */
};

#define ALL_CODECS ((1u << ZM_CODEC_COUNT) - 1)
#define ONLY(id) (1u << (id))

/* Every codec in its common shapes; the rarer shapes once or twice. */
static const struct packet_seed packet_seeds[] = {
    { "consecutive",
      ALL_CODECS,
      0,
      8,
      { 10, 11, 12, 13, 14, 15, 16, 17 },
      { TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT },
      false },
    { "scattered-zero",
      ALL_CODECS,
      0,
      6,
      { 40, 3, 22, 23, 50, 7 },
      { TEXT, TEXT, ZERO, TEXT, ZERO, TEXT },
      true },
    { "region1",
      ONLY(ZM_CODEC_LZ4) | ONLY(ZM_CODEC_ZSTD),
      1,
      3,
      { 2, 0, 1 },
      { TEXT, ZERO, TEXT },
      false },
    { "raw",
      ONLY(ZM_CODEC_ZSTD),
      0,
      3,
      { 60, 61, 63 },
      { RANDOM, RANDOM, ZERO },
      false },
    /* fuzz_packet's region 2 has 2^32 pages: the top of the index range. */
    { "region2-top",
      ONLY(ZM_CODEC_ZSTD),
      2,
      2,
      { 0xfffffffeu, 0xffffffffu },
      { TEXT, TEXT },
      false },
    { "region2-scattered",
      ONLY(ZM_CODEC_ZLIB),
      2,
      4,
      { 0xffffffffu, 7, 0x80000000u, 0x12345678u },
      { TEXT, TEXT, TEXT, ZERO },
      true },
};

static void packet_seeds_for(int codec)
{
    static unsigned char pages[16 * 2 * PAGE];
    static unsigned char packet[MAX_SEED];
    struct zm_encoder_options opts = {
        .sizeof_options = sizeof(opts),
        .codec = codec,
        .level = ZM_LEVEL_DEFAULT,
        .max_pages = 64,
    };
    zm_encoder *enc;

    if (zm_encoder_new(&opts, &enc) < 0) {
        fprintf(stderr, "make_corpus: %s: %s\n", zm_codec_name(codec),
                zm_errmsg());
        exit(1);
    }
    for (size_t s = 0; s < sizeof(packet_seeds) / sizeof(packet_seeds[0]);
         s++) {
        const struct packet_seed *seed = &packet_seeds[s];
        struct zm_page_ref refs[16];
        char name[64];

        if (!(seed->codecs & ONLY(codec))) {
            continue;
        }
        for (unsigned i = 0; i < seed->count; i++) {
            unsigned char *page =
                pages + (size_t)i * (seed->scattered_src ? 2 : 1) * PAGE;
            if (seed->kind[i] == TEXT) {
                fill_text(page, PAGE);
            } else if (seed->kind[i] == RANDOM) {
                fill_random(page, PAGE);
            } else {
                memset(page, 0, PAGE);
            }
            refs[i] = (struct zm_page_ref){ seed->index[i], page };
        }
        ssize_t n = zm_encode(enc, seed->region, refs, seed->count,
                              ZM_ENCODE_STABLE, packet, sizeof(packet), NULL);
        if (n < 0) {
            fprintf(stderr, "make_corpus: encode: %s\n", zm_errmsg());
            exit(1);
        }
        snprintf(name, sizeof(name), "%s-%s", zm_codec_name(codec), seed->name);
        save("packet", name, packet, (size_t)n);
    }
    zm_encoder_free(enc);
}

static void packet_seed_zero_only(void)
{
    static unsigned char zero[2 * PAGE];
    unsigned char packet[256];
    struct zm_encoder_options opts = {
        .sizeof_options = sizeof(opts),
        .codec = ZM_CODEC_NONE,
        .max_pages = 64,
    };
    struct zm_page_ref refs[2] = { { 5, zero }, { 9, zero + PAGE } };
    zm_encoder *enc;

    if (zm_encoder_new(&opts, &enc) == 0) {
        ssize_t n = zm_encode(enc, 0, refs, 2, 0, packet, sizeof(packet), NULL);
        if (n > 0) {
            save("packet", "zero-pages-only", packet, (size_t)n);
        }
        zm_encoder_free(enc);
    }
}

/* ---- fuzz_codec: streams in its input format ------------------------- */

static void codec_seed(const struct zm_codec_ops *c, const char *what,
                       const unsigned char *data, size_t len, int pieces,
                       int as_id)
{
    static unsigned char stream[MAX_SEED];
    static unsigned char input[MAX_SEED];
    struct iovec iov[8];
    void *state = NULL;
    struct zm_fdp_writer w;
    char name[64];

    if (c->init(&state, c->default_level, ZM_CODEC_COMPRESS) < 0) {
        exit(1);
    }
    for (int i = 0; i < pieces; i++) {
        size_t from = len * (size_t)i / (size_t)pieces;
        size_t to = len * (size_t)(i + 1) / (size_t)pieces;
        iov[i] = (struct iovec){ (void *)(data + from), to - from };
    }
    ssize_t n =
        c->compress(state, iov, pieces, len, stream, sizeof(stream) - 16);
    c->fini(state);
    if (n <= 0) {
        fprintf(stderr, "make_corpus: %s %s: compress gave %zd\n", c->name,
                what, n);
        return;
    }
    /* The order fuzz_codec.c draws: codec id, output size; the stream. */
    zm_fdp_writer_init(&w, input, sizeof(input));
    zm_fdp_writer_bytes(&w, stream, (size_t)n);
    zm_fdp_writer_range(&w, (uint32_t)as_id, 0, ZM_CODEC_COUNT - 1);
    zm_fdp_writer_range(&w, (uint32_t)len, 0, 256 * 1024);
    size_t size = zm_fdp_writer_finish(&w);
    snprintf(name, sizeof(name), "%s-%s", zm_codec_name(as_id), what);
    save("codec", name, input, size);
}

static void codec_seeds(void)
{
    static unsigned char text[16 * PAGE];
    static unsigned char mixed[4 * PAGE];

    fill_text(text, sizeof(text));
    fill_text(mixed, sizeof(mixed));
    fill_random(mixed + PAGE, PAGE / 2);
    memset(mixed + 2 * PAGE, 0, PAGE);

    for (int id = 0; id < ZM_CODEC_COUNT; id++) {
        const struct zm_codec_ops *c = zm_codec_get(id);

        if (!c) {
            continue;
        }
        if (id == ZM_CODEC_NONE) {
            codec_seed(c, "page", text, PAGE, 1, id);
            continue;
        }
        codec_seed(c, "text-16p", text, sizeof(text), 1, id);
        codec_seed(c, "mixed-4p-pieces", mixed, sizeof(mixed), 4, id);
    }
    /* The two raw deflate libraries read each other's streams. */
    if (zm_codec_get(ZM_CODEC_ZLIB) && zm_codec_get(ZM_CODEC_DEFLATE)) {
        codec_seed(zm_codec_get(ZM_CODEC_ZLIB), "from-zlib", mixed,
                   sizeof(mixed), 1, ZM_CODEC_DEFLATE);
        codec_seed(zm_codec_get(ZM_CODEC_DEFLATE), "from-deflate", mixed,
                   sizeof(mixed), 2, ZM_CODEC_ZLIB);
    }
}

/* ---- fuzz_roundtrip: parameters and contents ------------------------- */

static void roundtrip_seed(const char *name, struct rt_params *p)
{
    static unsigned char input[MAX_SEED];
    static unsigned char bytes[MAX_SEED];
    struct zm_fdp_writer w;
    struct zm_fdp_io io = { NULL, &w };
    struct rt_params want = *p;

    /* Integers first, then each page's bytes, as the target draws. */
    zm_fdp_writer_init(&w, input, sizeof(input));
    rt_params(&io, p);
    if (p->codec != want.codec || p->count != want.count) {
        fprintf(stderr, "make_corpus: roundtrip %s: out of range\n", name);
        exit(1);
    }
    for (uint32_t i = 0; i < p->count; i++) {
        size_t len = rt_page_bytes(p, i);
        if (p->page[i].kind == RT_LITERAL) {
            fill_text(bytes, len);
            if (i % 3 == 2) {
                fill_random(bytes, len / 4);
            }
        } else {
            fill_random(bytes, len);
        }
        zm_fdp_writer_bytes(&w, bytes, len);
    }
    save("roundtrip", name, input, zm_fdp_writer_finish(&w));
}

static void roundtrip_seeds(void)
{
    static const uint32_t kinds[] = {
        RT_LITERAL, RT_PATTERN, RT_ZERO, RT_COPY,
        RT_PATTERN, RT_LITERAL, RT_COPY, RT_ZERO
    };
    char name[64];

    for (int id = 0; id < ZM_CODEC_COUNT; id++) {
        if (!zm_codec_available(id)) {
            continue;
        }
        for (int variant = 0; variant < 3; variant++) {
            struct rt_params p = { 0 };

            /* Small pages and a short buffer: two codecs are enough. */
            if ((id == ZM_CODEC_NONE && variant > 0) ||
                (variant == 2 && id != ZM_CODEC_LZ4 && id != ZM_CODEC_ZSTD)) {
                break;
            }
            p.codec = (uint32_t)id;
            p.level = (uint32_t)variant;
            p.page_shift = variant == 2 ? 9 : 12;
            p.count = 8;
            p.max_pages = variant == 1 ? 16 : 8;
            p.raw_threshold = variant == 1 ? 60 : 0;
            p.no_estimate = variant == 2;
            p.stable = variant != 0;
            p.region = (uint32_t)variant;
            p.spare = variant == 0 ? 2 : 8;
            p.consecutive = variant == 0;
            p.first = 1;
            for (uint32_t i = 0; i < p.count; i++) {
                p.index[i] = (i * 5 + 3) % (p.count + p.spare);
                p.slot[i] = p.count - 1 - i;
                p.page[i] = (struct rt_page){
                    .kind = kinds[i],
                    .period = 3 + 7 * i,
                    .from = i / 2,
                    .pos = 100 * i,
                    .value = 0x40 + i,
                };
            }
            p.shuffle_src = variant == 1;
            p.small_cap = variant == 2;
            p.cap = 1500;
            p.dest_zero = variant == 1;
            snprintf(name, sizeof(name), "%s-%s", zm_codec_name(id),
                     variant == 0   ? "consecutive"
                     : variant == 1 ? "scattered-stable"
                                    : "small-pages-small-cap");
            roundtrip_seed(name, &p);
        }
    }
    /* Large pages, few of them. */
    struct rt_params big = {
        .codec = ZM_CODEC_ZSTD,
        .page_shift = 16,
        .count = 2,
        .max_pages = 4,
        .spare = 1,
        .consecutive = true,
        .page = { { .kind = RT_PATTERN, .period = 17 },
                  { .kind = RT_COPY, .from = 0, .pos = 65535, .value = 1 } },
    };
    if (!zm_codec_available(ZM_CODEC_ZSTD)) {
        big.codec = ZM_CODEC_NONE;
    }
    roundtrip_seed("64k-pages", &big);
}

/* ---- fuzz_multiboot: small multiboot ELF32 kernels --------------------- */

struct mb_segment {
    uint32_t type, vaddr, paddr, memsz;
    const unsigned char *bytes;
    uint32_t filesz;
};

/*
 * An ELF32 executable: the header, the program headers, the multiboot
 * header (flags), then each segment's bytes, the first one loaded from
 * offset 0 so that it holds the headers too (as linkers lay kernels out).
 */
static void multiboot_seed(const char *name, uint32_t flags, uint32_t entry,
                           const struct mb_segment *seg, unsigned nseg)
{
    unsigned char buf[1024] = { 0 };
    size_t off = sizeof(Elf32_Ehdr) + nseg * sizeof(Elf32_Phdr);
    const uint32_t mb[3] = { 0x1BADB002u, flags, -(0x1BADB002u + flags) };

    memcpy(buf + off, mb, sizeof(mb));
    off += sizeof(mb);
    Elf32_Ehdr eh = {
        .e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS32,
                     ELFDATA2LSB, EV_CURRENT },
        .e_type = ET_EXEC,
        .e_machine = EM_386,
        .e_version = EV_CURRENT,
        .e_entry = entry,
        .e_phoff = sizeof(Elf32_Ehdr),
        .e_ehsize = sizeof(Elf32_Ehdr),
        .e_phentsize = sizeof(Elf32_Phdr),
        .e_phnum = (Elf32_Half)nseg,
    };
    memcpy(buf, &eh, sizeof(eh));
    for (unsigned i = 0; i < nseg; i++) {
        Elf32_Phdr ph = {
            .p_type = seg[i].type,
            .p_vaddr = seg[i].vaddr,
            .p_paddr = seg[i].paddr,
            .p_memsz = seg[i].memsz,
            .p_flags = PF_R | PF_W | PF_X,
            .p_align = 4,
        };
        if (i == 0) {
            /* The headers and everything before the next segment. */
            memcpy(buf + off, seg[0].bytes, seg[0].filesz);
            off += seg[0].filesz;
            ph.p_filesz = (uint32_t)off;
        } else {
            ph.p_offset = (uint32_t)off;
            ph.p_filesz = seg[i].filesz;
            if (seg[i].filesz) {
                memcpy(buf + off, seg[i].bytes, seg[i].filesz);
                off += seg[i].filesz;
            }
        }
        memcpy(buf + sizeof(eh) + i * sizeof(ph), &ph, sizeof(ph));
    }
    save("multiboot", name, buf, off);
}

static void multiboot_seeds(void)
{
    static const unsigned char code[] = { 0xFA, 0xF4, 0xEB,
                                          0xFD }; /* cli;hlt */
    static const unsigned char data[] = "zmigrate multiboot seed";
    /* Headers, multiboot header, code: the entry follows them. */
    const uint32_t code1 =
        (uint32_t)(sizeof(Elf32_Ehdr) + sizeof(Elf32_Phdr) + 12);
    const struct mb_segment one[] = {
        { PT_LOAD, 0x100000, 0x100000, 0x3000, code, sizeof(code) },
    };
    multiboot_seed("valid-one-segment", 0x2, 0x100000 + code1, one, 1);

    /* Linked high (entry virtual), a data segment with bss, a note. */
    const uint32_t code3 =
        (uint32_t)(sizeof(Elf32_Ehdr) + 3 * sizeof(Elf32_Phdr) + 12);
    const struct mb_segment three[] = {
        { PT_LOAD, 0xC0100000, 0x100000, 0x1000, code, sizeof(code) },
        { PT_NOTE, 0, 0, 0, NULL, 0 },
        { PT_LOAD, 0xC0101000, 0x101000, 0x4000, data, sizeof(data) },
    };
    multiboot_seed("valid-high-vaddr-bss", 0x10003, 0xC0100000 + code3, three,
                   3);
}

/* ---- fuzz_stream: file: migrations of fuzz_stream's two regions ------ */

#define STREAM_RAM_PAGES 64u
#define STREAM_ROM_PAGES 3u

struct stream_source {
    unsigned char *ram, *rom;
    unsigned ram_region; /* its index in the layout */
    unsigned dirty_calls;
};

/*
 * The first call starts the log.  The second, after round 0, finds two
 * pages of ram rewritten and one that had data now zero: round 1 sends
 * them.  Later calls find nothing.
 */
static int stream_dirty_log(void *opaque, unsigned region, uint64_t *bitmap)
{
    struct stream_source *s = opaque;

    if (region == s->ram_region && s->dirty_calls++ == 1) {
        fill_text(s->ram + 20 * PAGE, 2 * PAGE);
        memset(s->ram + 1 * PAGE, 0, PAGE);
        bitmap[0] |= 3ull << 20 | 1ull << 1;
    }
    return 0;
}

static ssize_t stream_save_state(void *opaque, void *buf, size_t cap)
{
    static const char state[] = "device state of the seed";

    (void)opaque;
    if (cap < sizeof(state)) {
        return -ENOBUFS;
    }
    memcpy(buf, state, sizeof(state));
    return sizeof(state);
}

static void stream_seed(const char *name, int codec, unsigned channels,
                        unsigned batch, bool verify, bool rom_first)
{
    static unsigned char ram[STREAM_RAM_PAGES * PAGE]
        __attribute__((aligned(4096)));
    static unsigned char rom[STREAM_ROM_PAGES * PAGE]
        __attribute__((aligned(4096)));
    static unsigned char file[MAX_SEED + 1];
    struct stream_source s = { ram, rom, rom_first ? 1 : 0, 0 };
    struct zm_source_hooks hooks = { .sizeof_hooks = sizeof(hooks),
                                     .opaque = &s,
                                     .save_state = stream_save_state,
                                     .dirty_log = stream_dirty_log };
    struct zm_params p;
    zm_source *src;
    char path[512], uri[600];

    /* Mostly zero, as fresh guest RAM: zero pages travel as indices. */
    memset(ram, 0, sizeof(ram));
    memset(rom, 0, sizeof(rom));
    for (unsigned i = 0; i < 6; i++) {
        fill_text(ram + (1 + 7 * i) * PAGE, PAGE);
    }
    fill_random(rom + PAGE, PAGE / 2);

    zm_params_init(&p);
    p.compression = codec;
    p.multifd_channels = channels;
    p.batch_pages = batch;
    p.dirty_tracking = ZM_TRACKING_EMBEDDER;
    p.verify = verify;
    snprintf(path, sizeof(path), "%s/stream.tmp", out_dir);
    snprintf(uri, sizeof(uri), "file:%s", path);
    /* The destination matches regions by name: either order works. */
    if (zm_source_new(&p, &hooks, &src) < 0 ||
        (rom_first && zm_source_add_region(src, "rom", rom, sizeof(rom)) < 0) ||
        zm_source_add_region(src, "ram", ram, sizeof(ram)) < 0 ||
        (!rom_first &&
         zm_source_add_region(src, "rom", rom, sizeof(rom)) < 0) ||
        zm_source_run(src, uri) < 0) {
        fprintf(stderr, "make_corpus: stream %s: %s\n", name, zm_errmsg());
        unlink(path);
        exit(1);
    }
    zm_source_free(src);

    FILE *f = fopen(path, "rb");
    size_t len = f ? fread(file, 1, sizeof(file), f) : 0;
    if (f) {
        fclose(f);
    }
    unlink(path);
    if (len == 0 || len > MAX_SEED) {
        fprintf(stderr, "make_corpus: stream %s: %zu bytes\n", name, len);
        exit(1);
    }
    save("stream", name, file, len);
}

static void stream_seeds(void)
{
    char name[64];

    for (int id = 0; id < ZM_CODEC_COUNT; id++) {
        if (zm_codec_available(id)) {
            snprintf(name, sizeof(name), "%s-2ch-batch8", zm_codec_name(id));
            stream_seed(name, id, 2, 8, false, false);
        }
    }
    stream_seed("none-1ch-batch128-verify", ZM_CODEC_NONE, 1, 128, true, false);
    stream_seed("zstd-3ch-batch1-verify", ZM_CODEC_ZSTD, 3, 1, true, false);
    stream_seed("lz4-rom-first", ZM_CODEC_LZ4, 1, 16, false, true);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
        perror(out_dir);
        return 1;
    }
    for (int id = 0; id < ZM_CODEC_COUNT; id++) {
        if (zm_codec_available(id)) {
            packet_seeds_for(id);
        }
    }
    packet_seed_zero_only();
    codec_seeds();
    roundtrip_seeds();
    multiboot_seeds();
    stream_seeds();
    printf("wrote %u seeds under %s\n", written, out_dir);
    return 0;
}
