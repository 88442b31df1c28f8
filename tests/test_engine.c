/*
 * test_engine.c - batches of pages through zm_encode() and zm_decode()
 *
 * Every codec at its level extremes, with 1, 7 and 128 pages of zero,
 * random, text, mixed (generated) and corpus data, placed consecutively and
 * scattered: the destination ends up with exactly the source pages and
 * nothing else changes.  Zero pages travel as indices; incompressible data
 * travels raw; pages written during encoding still give valid packets.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "test_util.h"
#include "zmigrate.h"
#include "tools/datagen.h"

#define PAGE 4096u
#define REGION_PAGES 512u
#define CANARY 0xa5

enum kind { ZERO, RANDOM, TEXT, MIXED, CORPUS, KIND_COUNT };
static const char *const kind_names[] = { "zero", "random", "text", "mixed",
                                          "corpus" };

static unsigned char *sources[KIND_COUNT]; /* REGION_PAGES pages each */
static unsigned char *packet;
static size_t packet_cap;

static void fill_text(unsigned char *p, size_t len, uint64_t seed)
{
    static const char *const words[] = {
        "the ",   "memory ",  "page ",      "of ",        "a ",
        "guest ", "is ",      "sent ",      "over ",      "channels ",
        "while ", "it ",      "runs, ",     "and ",       "dirty ",
        "pages ", "follow. ", "Migration ", "converges ", "when\n",
    };
    size_t pos = 0;
    while (pos < len) {
        const char *w = words[t_rand(&seed) % 20];
        size_t n = strlen(w);
        if (n > len - pos) {
            n = len - pos;
        }
        memcpy(p + pos, w, n);
        pos += n;
    }
}

/* Reads Silesia files into buf when the corpus is there; false if not. */
static bool fill_corpus(unsigned char *buf, size_t len)
{
    static const char *const files[] = { "samba", "x-ray", "dickens", "osdb" };
    const char *dir = getenv("ZM_CORPUS");
    size_t got = 0;

    for (unsigned f = 0; dir && f < 4 && got < len; f++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, files[f]);
        FILE *fp = fopen(path, "rb");
        if (!fp) {
            continue;
        }
        got += fread(buf + got, 1, (len - got) / 4, fp);
        fclose(fp);
    }
    if (got < len / 2) {
        return false;
    }
    memset(buf + got, 0x11, len - got);
    return true;
}

static void make_sources(void)
{
    size_t size = (size_t)REGION_PAGES * PAGE;
    for (int k = 0; k < KIND_COUNT; k++) {
        sources[k] = aligned_alloc(PAGE, size);
    }
    memset(sources[ZERO], 0, size);
    t_fill_random(sources[RANDOM], size, 1);
    fill_text(sources[TEXT], size, 2);
    zm_datagen_fill(sources[MIXED], size, 0, 3);
    if (!fill_corpus(sources[CORPUS], size)) {
        printf("corpus: not found (set ZM_CORPUS), corpus cases skipped\n");
        free(sources[CORPUS]);
        sources[CORPUS] = NULL;
    }
}

/*
 * Sends count pages of src to dst through a packet: pages i = 0..count-1
 * go to page first + i * step of the region (step 1: consecutive).
 */
static void round_trip(zm_encoder *enc, zm_decoder *dec, unsigned char *dst,
                       const unsigned char *src, unsigned count, unsigned first,
                       unsigned step, unsigned flags, const char *what)
{
    struct zm_page_ref refs[128];
    struct zm_packet_info ei = { .sizeof_info = sizeof(ei) };
    struct zm_packet_info di = { .sizeof_info = sizeof(di) };
    struct zm_packet_info pi = { .sizeof_info = sizeof(pi) };

    memset(dst, CANARY, (size_t)REGION_PAGES * PAGE);
    for (unsigned i = 0; i < count; i++) {
        unsigned index = (first + i * step) % REGION_PAGES;
        refs[i] = (struct zm_page_ref){ index, src + (size_t)index * PAGE };
    }
    ssize_t n = zm_encode(enc, 0, refs, count, flags, packet, packet_cap, &ei);
    CHECK(n > 0, "%s: encode: %s", what, zm_errmsg());
    if (n <= 0) {
        return;
    }
    CHECK(ei.size == (size_t)n && ei.pages == count, "%s: info", what);
    CHECK(zm_packet_peek(packet, ZM_PACKET_HEADER_SIZE, &pi) == 0 &&
              pi.size == (size_t)n && pi.zero_pages == ei.zero_pages &&
              pi.raw == ei.raw,
          "%s: peek disagrees with encode", what);
    int ret = zm_decode(dec, packet, (size_t)n, &di);
    CHECK(ret == 0, "%s: decode: %s", what, zm_errmsg());
    CHECK(di.pages == count && di.zero_pages == ei.zero_pages,
          "%s: decode info", what);

    static unsigned char canary_page[PAGE];
    memset(canary_page, CANARY, PAGE);
    unsigned bad = 0;
    for (unsigned page = 0; page < REGION_PAGES; page++) {
        bool sent = false;
        for (unsigned i = 0; i < count; i++) {
            sent |= refs[i].index == page;
        }
        const unsigned char *want =
            sent ? src + (size_t)page * PAGE : canary_page;
        if (memcmp(dst + (size_t)page * PAGE, want, PAGE) != 0) {
            bad++;
        }
    }
    CHECK(bad == 0, "%s: %u pages differ", what, bad);
}

static void test_round_trips(void)
{
    unsigned char *dst = aligned_alloc(PAGE, (size_t)REGION_PAGES * PAGE);
    struct zm_region_map region = { dst, (uint64_t)REGION_PAGES * PAGE };
    struct zm_decoder_options dopts = {
        .sizeof_options = sizeof(dopts),
        .regions = &region,
        .region_count = 1,
    };
    zm_decoder *dec;
    unsigned cases = 0;

    CHECK(zm_decoder_new(&dopts, &dec) == 0, "decoder: %s", zm_errmsg());
    for (int codec = 0; codec < ZM_CODEC_COUNT; codec++) {
        int levels[2];
        if (zm_codec_levels(codec, &levels[0], &levels[1], NULL) < 0) {
            continue;
        }
        for (int l = 0; l < 2; l++) {
            struct zm_encoder_options opts = {
                .sizeof_options = sizeof(opts),
                .codec = codec,
                .level = levels[l],
            };
            zm_encoder *enc;
            CHECK(zm_encoder_new(&opts, &enc) == 0, "encoder %s %d: %s",
                  zm_codec_name(codec), levels[l], zm_errmsg());
            for (int k = 0; k < KIND_COUNT; k++) {
                static const unsigned counts[] = { 1, 7, 128 };
                if (!sources[k]) {
                    continue;
                }
                for (int c = 0; c < 3; c++) {
                    for (unsigned step = 1; step <= 3; step += 2) {
                        char what[128];
                        snprintf(what, sizeof(what),
                                 "%s-%d %s %u pages "
                                 "step %u",
                                 zm_codec_name(codec), levels[l], kind_names[k],
                                 counts[c], step);
                        round_trip(enc, dec, dst, sources[k], counts[c],
                                   (unsigned)(c * 131 + k * 17), step, 0, what);
                        round_trip(enc, dec, dst, sources[k], counts[c],
                                   (unsigned)(c * 131 + k * 17), step,
                                   ZM_ENCODE_STABLE, what);
                        cases += 2;
                    }
                }
            }
            zm_encoder_free(enc);
        }
    }
    printf("round trips: %u cases\n", cases);
    zm_decoder_free(dec);
    free(dst);
}

static ssize_t encode_one(int codec, uint32_t threshold, uint32_t flags,
                          const unsigned char *src, unsigned count,
                          struct zm_packet_info *info)
{
    struct zm_encoder_options opts = {
        .sizeof_options = sizeof(opts),
        .codec = codec,
        .level = ZM_LEVEL_DEFAULT,
        .raw_threshold = threshold,
        .flags = flags,
    };
    struct zm_page_ref refs[128];
    zm_encoder *enc;

    if (zm_encoder_new(&opts, &enc) < 0) {
        return -1;
    }
    for (unsigned i = 0; i < count; i++) {
        refs[i] = (struct zm_page_ref){ i, src + (size_t)i * PAGE };
    }
    ssize_t n = zm_encode(enc, 0, refs, count, 0, packet, packet_cap, info);
    zm_encoder_free(enc);
    return n;
}

static void test_store_rules(void)
{
    struct zm_packet_info info = { .sizeof_info = sizeof(info) };
    int codec =
        zm_codec_available(ZM_CODEC_ZSTD) ? ZM_CODEC_ZSTD : ZM_CODEC_NONE;

    /* All zero: indices only, no payload. */
    ssize_t n = encode_one(codec, 0, 0, sources[ZERO], 128, &info);
    CHECK(n == ZM_PACKET_HEADER_SIZE + 128 * 4 && info.zero_pages == 128 &&
              info.payload_size == 0,
          "zero batch: %zd bytes, %u zero pages", n, info.zero_pages);

    /* Random data goes raw, whether the estimate or the codec says so. */
    n = encode_one(codec, 0, 0, sources[RANDOM], 128, &info);
    CHECK(n > 0 && info.raw && info.payload_size == 128 * PAGE,
          "random batch: raw %d, payload %u", info.raw, info.payload_size);
    n = encode_one(codec, 0, ZM_ENCODER_NO_ESTIMATE, sources[RANDOM], 128,
                   &info);
    CHECK(n > 0 && info.raw, "random batch without estimate: raw %d", info.raw);

    if (codec != ZM_CODEC_NONE) {
        /* Text compresses; at a 1% threshold it must go raw instead. */
        n = encode_one(codec, 0, 0, sources[TEXT], 128, &info);
        CHECK(n > 0 && !info.raw &&
                  info.payload_size * 100 <= info.data_size * 90,
              "text batch: raw %d, %u of %u bytes", info.raw, info.payload_size,
              info.data_size);
        n = encode_one(codec, 1, 0, sources[TEXT], 128, &info);
        CHECK(n > 0 && info.raw, "text at a 1%% threshold: raw %d", info.raw);
    }
    /* The "none" codec always sends raw. */
    n = encode_one(ZM_CODEC_NONE, 0, 0, sources[TEXT], 128, &info);
    CHECK(n > 0 && info.raw && info.codec == ZM_CODEC_NONE, "none: raw %d",
          info.raw);
}

static void test_bad_options(void)
{
    struct zm_encoder_options opts = {
        .sizeof_options = sizeof(opts),
        .codec = ZM_CODEC_ZSTD,
        .level = 20,
    };
    zm_encoder *enc = NULL;

    if (zm_codec_available(ZM_CODEC_ZSTD)) {
        CHECK(zm_encoder_new(&opts, &enc) == -ERANGE, "zstd level 20");
        CHECK(strstr(zm_errmsg(), "zstd") && strstr(zm_errmsg(), "1..19"),
              "message: %s", zm_errmsg());
    }
    opts.codec = ZM_CODEC_NONE;
    opts.level = ZM_LEVEL_DEFAULT;
    opts.page_size = 3000;
    CHECK(zm_encoder_new(&opts, &enc) == -EINVAL, "page size 3000");
    opts.page_size = 0;
    opts.max_pages = ZM_MAX_BATCH_PAGES + 1;
    CHECK(zm_encoder_new(&opts, &enc) == -EINVAL, "max pages");
    opts.max_pages = 0;
    opts.raw_threshold = 101;
    CHECK(zm_encoder_new(&opts, &enc) == -EINVAL, "threshold 101");
    opts.raw_threshold = 0;
    opts.codec = 77;
    CHECK(zm_encoder_new(&opts, &enc) == -EINVAL, "codec 77");

    /* An older caller's smaller struct still works, with defaults. */
    opts.codec = ZM_CODEC_NONE;
    opts.sizeof_options = offsetof(struct zm_encoder_options, page_size);
    CHECK(zm_encoder_new(&opts, &enc) == 0, "short options: %s", zm_errmsg());
    CHECK(enc && zm_encoder_bound(enc) ==
                     ZM_PACKET_HEADER_SIZE + 128 * 4 + 128 * PAGE,
          "default bound");
    struct zm_page_ref ref = { (uint64_t)UINT32_MAX + 1, sources[TEXT] };
    CHECK(zm_encode(enc, 0, &ref, 1, 0, packet, packet_cap, NULL) == -EINVAL,
          "index beyond 32 bits");
    ref.index = 0;
    CHECK(zm_encode(enc, 0, &ref, 0, 0, packet, packet_cap, NULL) == -EINVAL,
          "zero pages");
    CHECK(zm_encode(enc, 0, &ref, 1, 0, packet, 100, NULL) == -ENOBUFS,
          "small output");
    zm_encoder_free(enc);
    zm_encoder_free(NULL);
    zm_decoder_free(NULL);
}

/* A writer changes the pages while they are encoded, as a running guest
 * does: every packet must still verify and decode. */
static atomic_bool writer_stop;
static unsigned char *live;

static void *writer(void *arg)
{
    uint64_t seed = 99;
    (void)arg;
    while (!atomic_load_explicit(&writer_stop, memory_order_relaxed)) {
        uint64_t r = t_rand(&seed);
        size_t off = (r >> 8) % (128 * PAGE);
        /* Volatile keeps every store: the encoder must see them land. */
        ((volatile unsigned char *)live)[off] = (unsigned char)r;
    }
    return NULL;
}

static void test_concurrent_writes(void)
{
    unsigned char *dst = aligned_alloc(PAGE, 128 * PAGE);
    struct zm_region_map region = { dst, 128 * PAGE };
    struct zm_decoder_options dopts = {
        .sizeof_options = sizeof(dopts),
        .regions = &region,
        .region_count = 1,
    };
    struct zm_page_ref refs[128];
    pthread_t thread;
    zm_decoder *dec;
    unsigned failures = 0, packets = 0;

    live = aligned_alloc(PAGE, 128 * PAGE);
    memcpy(live, sources[TEXT], 128 * PAGE);
    for (unsigned i = 0; i < 128; i++) {
        refs[i] = (struct zm_page_ref){ i, live + (size_t)i * PAGE };
    }
    CHECK(zm_decoder_new(&dopts, &dec) == 0, "decoder");
    atomic_store(&writer_stop, false);
    pthread_create(&thread, NULL, writer, NULL);
    for (int codec = 0; codec < ZM_CODEC_COUNT; codec++) {
        struct zm_encoder_options opts = {
            .sizeof_options = sizeof(opts),
            .codec = codec,
            .level = ZM_LEVEL_DEFAULT,
        };
        zm_encoder *enc;
        if (zm_encoder_new(&opts, &enc) < 0) {
            continue;
        }
        for (int i = 0; i < 20; i++) {
            ssize_t n =
                zm_encode(enc, 0, refs, 128, 0, packet, packet_cap, NULL);
            if (n < 0 || zm_decode(dec, packet, (size_t)n, NULL) < 0) {
                failures++;
                fprintf(stderr, "%s: %s\n", zm_codec_name(codec), zm_errmsg());
            }
            packets++;
        }
        zm_encoder_free(enc);
    }
    atomic_store(&writer_stop, true);
    pthread_join(thread, NULL);
    CHECK(failures == 0, "%u of %u packets made under writes failed", failures,
          packets);
    zm_decoder_free(dec);
    free(live);
    free(dst);
}

/*
 * The limits: 1024 pages of 512 bytes and 64 pages of 64 KiB per packet,
 * into the second of two regions, consecutive and scattered, for every
 * codec at its default level.
 */
static void test_extremes(void)
{
    static const struct {
        uint32_t page_size, pages;
    } shapes[] = {
        { 512, ZM_MAX_BATCH_PAGES },
        { 65536, 64 },
    };
    for (unsigned sh = 0; sh < 2; sh++) {
        uint32_t ps = shapes[sh].page_size, count = shapes[sh].pages;
        size_t size = (size_t)ps * count * 2;
        unsigned char *src = aligned_alloc(4096, size);
        unsigned char *dst[2] = { aligned_alloc(4096, 4096),
                                  aligned_alloc(4096, size) };
        struct zm_region_map regions[2] = { { dst[0], 4096 },
                                            { dst[1], size } };
        struct zm_decoder_options dopts = {
            .sizeof_options = sizeof(dopts),
            .page_size = ps,
            .max_pages = count,
            .regions = regions,
            .region_count = 2,
        };
        struct zm_page_ref *refs = calloc(count, sizeof(*refs));
        size_t cap = ZM_PACKET_HEADER_SIZE + 4 * count + (size_t)ps * count;
        unsigned char *pkt = malloc(cap);
        zm_decoder *dec;

        zm_datagen_fill(src, size, 0, 21);
        CHECK(zm_decoder_new(&dopts, &dec) == 0, "decoder: %s", zm_errmsg());
        for (int codec = 0; codec < ZM_CODEC_COUNT; codec++) {
            struct zm_encoder_options eopts = {
                .sizeof_options = sizeof(eopts),
                .codec = codec,
                .level = ZM_LEVEL_DEFAULT,
                .page_size = ps,
                .max_pages = count,
            };
            zm_encoder *enc;
            if (zm_encoder_new(&eopts, &enc) < 0) {
                continue;
            }
            CHECK(zm_encoder_bound(enc) == cap, "bound");
            for (unsigned mode = 0; mode < 4; mode++) {
                unsigned step = mode & 1 ? 2 : 1; /* scattered: every other */
                unsigned flags = mode & 2 ? ZM_ENCODE_STABLE : 0;
                memset(dst[1], CANARY, size);
                for (uint32_t i = 0; i < count; i++) {
                    refs[i] =
                        (struct zm_page_ref){ (uint64_t)i * step,
                                              src + (size_t)i * step * ps };
                }
                ssize_t n =
                    zm_encode(enc, 1, refs, count, flags, pkt, cap, NULL);
                int ret = n > 0 ? zm_decode(dec, pkt, (size_t)n, NULL) : -1;
                CHECK(ret == 0, "%s, %u x %u B, mode %u: %s",
                      zm_codec_name(codec), count, ps, mode, zm_errmsg());
                unsigned bad = 0;
                for (uint32_t i = 0; i < count * 2; i++) {
                    bool sent = i % step == 0 && i / step < count;
                    const unsigned char *got = dst[1] + (size_t)i * ps;
                    if (sent ? memcmp(got, src + (size_t)i * ps, ps) != 0
                             : got[0] != CANARY || got[ps - 1] != CANARY) {
                        bad++;
                    }
                }
                CHECK(bad == 0, "%s, %u x %u B, mode %u: %u pages wrong",
                      zm_codec_name(codec), count, ps, mode, bad);
            }
            zm_encoder_free(enc);
        }
        zm_decoder_free(dec);
        free(pkt);
        free(refs);
        free(src);
        free(dst[0]);
        free(dst[1]);
    }
}

int main(void)
{
    packet_cap = ZM_PACKET_HEADER_SIZE + 128 * 4 + 128 * PAGE;
    packet = malloc(packet_cap);
    make_sources();
    test_bad_options();
    test_store_rules();
    test_round_trips();
    test_concurrent_writes();
    test_extremes();
    for (int k = 0; k < KIND_COUNT; k++) {
        free(sources[k]);
    }
    free(packet);
    return t_exit();
}
