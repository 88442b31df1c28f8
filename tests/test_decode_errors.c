/*
 * test_decode_errors.c - malformed packets are refused, and harmlessly
 *
 * Truncated packets, trailing bytes, every single-bit flip, and each header
 * field set to a bad value are refused with the documented error, and never
 * change memory outside the pages the packet names: for pages scattered
 * (decoded through a scratch buffer) and consecutive (decoded in place).
 * Forged packets with a valid checksum test the checks behind it.  Raw
 * packets go through both receive paths: zm_decode(), and the channel's,
 * which reads the payload straight into the pages (zm_packet_reader_table()
 * and _end()); both must give the same answers.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "common/endian_util.h"
#include "common/hash.h"
#include "engine/packet.h"
#include "test_util.h"
#include "zmigrate.h"
#include "tools/datagen.h"

#define PAGE 4096u
#define REGION_PAGES 64u
#define CANARY 0x3c

#define PACKET_CAP (ZM_PACKET_HEADER_SIZE + 16 * 4 + 16 * PAGE)

static struct t_guarded region_mem;
static zm_decoder *dec;
static unsigned char packet[PACKET_CAP];
static unsigned char bad[PACKET_CAP + 64];
/* Packets are decoded from the end of this, so over-reads fault. */
static struct t_guarded wire;

/* The normal pages of the packet under test, in table order. */
static unsigned char data[7 * PAGE];
static size_t data_len;

/* Pages the packet under test names; all others must keep the canary. */
static bool named[REGION_PAGES];

static void reset_region(void)
{
    memset(region_mem.data, CANARY, (size_t)REGION_PAGES * PAGE);
}

static void check_outside_untouched(const char *what)
{
    for (unsigned p = 0; p < REGION_PAGES; p++) {
        if (named[p]) {
            continue;
        }
        const unsigned char *page = region_mem.data + (size_t)p * PAGE;
        for (unsigned i = 0; i < PAGE; i++) {
            if (page[i] != CANARY) {
                CHECK(false, "%s: page %u written", what, p);
                return;
            }
        }
    }
}

/* src page 4 is the zero page. */
static const unsigned scattered[7] = { 10, 11, 12, 13, 40, 41, 50 };
static const unsigned consecutive[7] = { 20, 21, 22, 23, 40, 24, 25 };

static size_t make_packet(int codec, const unsigned char *src,
                          const unsigned *indices)
{
    struct zm_encoder_options opts = {
        .sizeof_options = sizeof(opts),
        .codec = codec,
        .level = ZM_LEVEL_DEFAULT,
        .max_pages = 16,
    };
    struct zm_page_ref refs[7];
    zm_encoder *enc;

    memset(named, 0, sizeof(named));
    data_len = 0;
    for (unsigned i = 0; i < 7; i++) {
        refs[i] = (struct zm_page_ref){ indices[i], src + i * PAGE };
        named[indices[i]] = true;
        if (i != 4) {
            memcpy(data + data_len, src + i * PAGE, PAGE);
            data_len += PAGE;
        }
    }
    if (zm_encoder_new(&opts, &enc) < 0) {
        return 0;
    }
    ssize_t n = zm_encode(enc, 0, refs, 7, 0, packet, sizeof(packet), NULL);
    zm_encoder_free(enc);
    CHECK(n > 0, "encode: %s", zm_errmsg());
    return n > 0 ? (size_t)n : 0;
}

/* Decode as a receiving channel does: raw payloads straight into place. */
static bool scatter;

static int decode(zm_decoder *d, const unsigned char *pkt, size_t len)
{
    struct zm_packet_reader rd;
    struct iovec iov[16];
    int iovcnt = 0;

    if (!scatter) {
        return zm_decode(d, pkt, len, NULL);
    }
    int ret = zm_packet_reader_start(&rd, d, pkt, len);
    if (ret < 0) {
        return ret;
    }
    CHECK(rd.head_size <= len, "reader: head of %zu bytes in %zu", rd.head_size,
          len);
    int raw = zm_packet_reader_table(&rd, pkt, iov, &iovcnt);
    if (raw < 0) {
        return raw;
    }
    if (raw) {
        /* What readv() would do with the rest of the packet. */
        size_t off = rd.head_size;
        for (int i = 0; i < iovcnt; i++) {
            CHECK(off + iov[i].iov_len <= len, "scatter: iov past the packet");
            memcpy(iov[i].iov_base, pkt + off, iov[i].iov_len);
            off += iov[i].iov_len;
        }
        CHECK(off == len, "scatter: iov covers %zu of %zu bytes", off, len);
    }
    return zm_packet_reader_end(&rd, pkt, NULL);
}

static void expect(int want, const unsigned char *pkt, size_t len,
                   const char *what)
{
    reset_region();
    unsigned char *at = wire.data + (PACKET_CAP + 64 - len);
    memcpy(at, pkt, len);
    int ret = decode(dec, at, len);
    CHECK(ret == want, "%s%s: got %d (%s), want %d", what,
          scatter ? " (scatter)" : "", ret, zm_errmsg(), want);
    if (ret < 0) {
        CHECK(zm_errmsg()[0] != '\0', "%s: no message", what);
    }
    check_outside_untouched(what);
}

static void test_truncation(size_t n, const char *codec)
{
    char what[64];
    for (size_t len = 0; len < n; len += len < 200 ? 1 : 97) {
        snprintf(what, sizeof(what), "%s truncated to %zu", codec, len);
        expect(-EBADMSG, packet, len, what);
    }
    memcpy(bad, packet, n);
    bad[n] = 0;
    snprintf(what, sizeof(what), "%s with a trailing byte", codec);
    expect(-EBADMSG, bad, n + 1, what);
}

/*
 * A flip must be refused, except in a compressed payload, where it may
 * leave the output unchanged (a match offset pointing at another copy of
 * the same bytes): then the pages must be exactly the intact ones.
 */
static void test_bit_flips(size_t n, const char *codec)
{
    size_t region_size = (size_t)REGION_PAGES * PAGE;
    unsigned char *intact = malloc(region_size);
    unsigned accepted = 0, harmless = 0, flips = 0;

    reset_region();
    CHECK(decode(dec, packet, n) == 0, "intact packet");
    memcpy(intact, region_mem.data, region_size);

    /* Every bit of header and table, then a stride through the payload. */
    size_t table_end = ZM_PACKET_HEADER_SIZE + 7 * 4;
    for (size_t bit = 0; bit < n * 8; bit += bit < table_end * 8 ? 1 : 61) {
        unsigned char *at = wire.data + (PACKET_CAP + 64 - n);
        memcpy(at, packet, n);
        at[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        memcpy(bad, at, n);
        reset_region();
        if (decode(dec, at, n) == 0) {
            if (bit >= table_end * 8 &&
                memcmp(region_mem.data, intact, region_size) == 0) {
                harmless++;
            } else {
                accepted++;
                fprintf(stderr, "%s: flip of bit %zu accepted\n", codec, bit);
            }
        } else if (strstr(zm_errmsg(), "does not decompress")) {
            /* A failed decompressor's partial output must not stay in the
             * pages: libzstd's holds bytes of its own uninitialised memory.
             * In place, the pages are cleared; through scratch, untouched. */
            for (unsigned p = 0; p < REGION_PAGES; p++) {
                const unsigned char *page = region_mem.data + (size_t)p * PAGE;
                bool canary = page[0] == CANARY, zero = page[0] == 0;
                for (unsigned i = 1; i < PAGE; i++) {
                    canary &= page[i] == CANARY;
                    zero &= page[i] == 0;
                }
                CHECK(!named[p] || canary || zero,
                      "%s: flip of bit %zu: page %u holds partial output",
                      codec, bit, p);
            }
        }
        flips++;
        /* A flipped index may name another page: allow that one. */
        if (bit >= ZM_PACKET_HEADER_SIZE * 8 && bit < table_end * 8) {
            unsigned idx = zm_get_le32(bad + (bit / 32) * 4);
            if (idx < REGION_PAGES) {
                named[idx] |= 2;
            }
            check_outside_untouched("index flip");
            for (unsigned p = 0; p < REGION_PAGES; p++) {
                named[p] &= 1;
            }
        } else {
            check_outside_untouched("bit flip");
        }
    }
    CHECK(accepted == 0, "%s: %u of %u bit flips accepted", codec, accepted,
          flips);
    if (harmless) {
        printf("%s: %u payload flips decoded to the same pages\n", codec,
               harmless);
    }
    free(intact);
}

/* Sets a header field in a copy of the packet and expects an error. */
static void field(size_t n, size_t off, int width, uint32_t value, int want,
                  const char *what)
{
    memcpy(bad, packet, n);
    if (width == 1) {
        bad[off] = (unsigned char)value;
    } else if (width == 2) {
        zm_put_le16(bad + off, (uint16_t)value);
    } else {
        zm_put_le32(bad + off, value);
    }
    expect(want, bad, n, what);
}

static void test_fields(size_t n)
{
    field(n, 0, 4, 0x12345678, -EBADMSG, "magic");
    field(n, 4, 1, 2, -EPROTO, "version 2");
    field(n, 5, 1, ZM_CODEC_COUNT, -EPROTO, "unknown codec");
    field(n, 6, 1, 0x80, -EPROTO, "unknown flag");
    field(n, 7, 1, 13, -EPROTO, "page size 8 KiB");
    field(n, 7, 1, 40, -EBADMSG, "page shift 40");
    field(n, 10, 2, 1, -EPROTO, "extension count");
    field(n, 28, 4, 1, -EPROTO, "reserved");
    field(n, 12, 4, 1, -ERANGE, "region 1");
    field(n, 16, 4, 0xffffffffu, -EMSGSIZE, "normal count 2^32-1");
    field(n, 20, 4, 0xfffffff0u, -EMSGSIZE, "zero count huge");
    field(n, 16, 4, 0, -EBADMSG, "normal count 0 with a payload");
    field(n, 24, 4, 0xffffffffu, -EBADMSG, "payload size 2^32-1");
    field(n, 40, 4, REGION_PAGES, -ERANGE, "index past the region");
    field(n, 40, 4, 0xffffffffu, -ERANGE, "index 2^32-1");
    /* Counts that still describe n bytes but move the table's end. */
    memcpy(bad, packet, n);
    zm_put_le32(bad + 16, zm_get_le32(packet + 16) + 1);
    zm_put_le32(bad + 20, zm_get_le32(packet + 20) - 1);
    expect(-EBADMSG, bad, n, "a zero page claimed as normal");
}

/*
 * Re-signs bad after an edit, as a malicious or buggy sender
 * would: the checksum is right for the intended pages, so only the checks
 * behind it can refuse the packet.
 */
static void resign(void)
{
    uint32_t pages = zm_get_le32(bad + 16) + zm_get_le32(bad + 20);

    zm_put_le64(bad + ZM_PKT_CHECKSUM_OFFSET,
                zm_packet_checksum(bad, pages, zm_hash64(data, data_len, 0)));
}

/* Appends extra bytes to the payload of packet (n bytes) and re-signs. */
static size_t append_payload(size_t n, const void *extra, size_t len)
{
    memcpy(bad, packet, n);
    memcpy(bad + n, extra, len);
    zm_put_le32(bad + 24, zm_get_le32(bad + 24) + (uint32_t)len);
    resign();
    return n + len;
}

static void test_forged(int codec, size_t n)
{
    char what[64];
    bool raw = packet[6] & ZM_PKT_RAW;

    /* The intact packet re-signed still decodes: resign() is right. */
    memcpy(bad, packet, n);
    resign();
    snprintf(what, sizeof(what), "%s re-signed", zm_codec_name(codec));
    expect(0, bad, n, what);

    if (!raw) {
        static const unsigned char junk[8] = { 0 };
        snprintf(what, sizeof(what), "%s with trailing bytes",
                 zm_codec_name(codec));
        expect(-EBADMSG, bad, append_payload(n, junk, 1), what);
        expect(-EBADMSG, bad, append_payload(n, junk, 8), what);
        /* Marked raw, the compressed payload has the wrong size. */
        memcpy(bad, packet, n);
        bad[6] |= ZM_PKT_RAW;
        resign();
        expect(-EBADMSG, bad, n, "compressed payload marked raw");
    }
    if (codec == ZM_CODEC_ZSTD && !raw) {
        /* A skippable frame, then a second (empty) frame. */
        static const unsigned char skippable[8] = { 0x50, 0x2a, 0x4d, 0x18 };
        expect(-EBADMSG, bad, append_payload(n, skippable, 8),
               "zstd + skippable frame");
        static const unsigned char empty_frame[] = {
            0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x00,
        };
        expect(-EBADMSG, bad, append_payload(n, empty_frame, 9),
               "zstd + empty frame");
    }
    if (codec == ZM_CODEC_LZ4 && !raw) {
        static const unsigned char empty_block[4] = { 0 };
        expect(-EBADMSG, bad, append_payload(n, empty_block, 4),
               "lz4 + empty block");
    }
    if (codec == ZM_CODEC_NONE) {
        memcpy(bad, packet, n);
        bad[6] &= (unsigned char)~ZM_PKT_RAW;
        resign();
        expect(-EBADMSG, bad, n, "none without the raw flag");
    }
    /* No pages at all. */
    memcpy(bad, packet, ZM_PACKET_HEADER_SIZE);
    zm_put_le32(bad + 16, 0);
    zm_put_le32(bad + 20, 0);
    zm_put_le32(bad + 24, 0);
    bad[6] &= (unsigned char)~ZM_PKT_RAW;
    data_len = 0;
    resign();
    expect(-EBADMSG, bad, ZM_PACKET_HEADER_SIZE, "no pages");
}

/*
 * Page 2^32 - 1 then page 0 of a region of 2^32 pages is no run: each page
 * goes where its index says and nothing past the region is written (the
 * page after it is inaccessible).
 */
static void test_index_wrap(void)
{
    const size_t small = 512;
    const size_t region_size = (size_t)1 << 41; /* 2^32 pages of 512 B */
    unsigned char *map =
        mmap(NULL, region_size + 4096, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) {
        printf("index wrap: no 2 TiB of address space, skipped\n");
        return;
    }
    mprotect(map + region_size, 4096, PROT_NONE);

    unsigned char pages[2][512];
    memset(pages[0], 0x41, small);
    memset(pages[1], 0x42, small);
    struct zm_page_ref refs[2] = { { 0xffffffffu, pages[0] }, { 0, pages[1] } };
    struct zm_region_map region = { map, region_size };
    struct zm_decoder_options dopts = { .sizeof_options = sizeof(dopts),
                                        .page_size = 512,
                                        .regions = &region,
                                        .region_count = 1 };
    for (int codec = 0; codec < ZM_CODEC_COUNT; codec++) {
        struct zm_encoder_options eopts = { .sizeof_options = sizeof(eopts),
                                            .codec = codec,
                                            .level = ZM_LEVEL_DEFAULT,
                                            .page_size = 512 };
        zm_encoder *enc;
        zm_decoder *wrap_dec;
        if (zm_encoder_new(&eopts, &enc) < 0) {
            continue;
        }
        CHECK(zm_decoder_new(&dopts, &wrap_dec) == 0, "decoder");
        ssize_t n = zm_encode(enc, 0, refs, 2, 0, packet, sizeof(packet), NULL);
        CHECK(n > 0, "encode: %s", zm_errmsg());
        int ret = zm_decode(wrap_dec, packet, (size_t)n, NULL);
        CHECK(ret == 0, "%s: decode: %s", zm_codec_name(codec), zm_errmsg());
        CHECK(memcmp(map + region_size - small, pages[0], small) == 0 &&
                  memcmp(map, pages[1], small) == 0,
              "%s: pages not where their indices say", zm_codec_name(codec));
        zm_decoder_free(wrap_dec);
        zm_encoder_free(enc);
    }
    munmap(map, region_size + 4096);
}

static void test_negotiation(size_t n)
{
    struct zm_region_map region = { region_mem.data,
                                    (uint64_t)REGION_PAGES * PAGE };
    struct zm_decoder_options opts = {
        .sizeof_options = sizeof(opts),
        .codecs = 1u << ZM_CODEC_NONE,
        .max_pages = 4,
        .regions = &region,
        .region_count = 1,
    };
    zm_decoder *strict;

    CHECK(zm_decoder_new(&opts, &strict) == 0, "decoder");
    reset_region();
    int ret = zm_decode(strict, packet, n, NULL);
    CHECK(ret == -EMSGSIZE, "7 pages to a 4-page decoder: %d", ret);
    zm_decoder_free(strict);
    opts.max_pages = 16;
    CHECK(zm_decoder_new(&opts, &strict) == 0, "decoder");
    ret = zm_decode(strict, packet, n, NULL);
    CHECK(ret == -EPROTO, "codec not negotiated: %d", ret);
    zm_decoder_free(strict);

    opts.codecs = 0;
    opts.page_size = 8192;
    CHECK(zm_decoder_new(&opts, &strict) == 0, "decoder");
    ret = zm_decode(strict, packet, n, NULL);
    CHECK(ret == -EPROTO, "page size mismatch: %d", ret);
    zm_decoder_free(strict);
}

int main(void)
{
    unsigned char src[7 * PAGE];
    struct zm_region_map region;
    struct zm_decoder_options opts = {
        .sizeof_options = sizeof(opts),
        .max_pages = 16,
        .regions = &region,
        .region_count = 1,
    };

    region_mem = t_guarded_alloc((size_t)REGION_PAGES * PAGE);
    wire = t_guarded_alloc(PACKET_CAP + 64);
    region = (struct zm_region_map){ region_mem.data,
                                     (uint64_t)REGION_PAGES * PAGE };
    CHECK(zm_decoder_new(&opts, &dec) == 0, "decoder: %s", zm_errmsg());

    zm_datagen_fill(src, sizeof(src), 0, 5);
    memset(src + 4 * PAGE, 0, PAGE); /* page 40 is a zero page */
    for (unsigned i = 0; i < 7; i++) {
        if (i != 4) {
            src[i * PAGE] = (unsigned char)(i + 1); /* others are not */
        }
    }
    bool fields_done = false;
    for (int codec = 0; codec < ZM_CODEC_COUNT; codec++) {
        if (!zm_codec_available(codec)) {
            continue;
        }
        for (int run = 0; run < (codec == ZM_CODEC_NONE ? 4 : 2); run++) {
            int layout = run % 2;
            scatter = run >= 2;
            size_t n =
                make_packet(codec, src, layout ? consecutive : scattered);
            if (n == 0) {
                continue;
            }
            expect(0, packet, n, "the intact packet");
            test_truncation(n, zm_codec_name(codec));
            test_bit_flips(n, zm_codec_name(codec));
            test_forged(codec, n);
            /* Field checks want a compressed packet: the first codec. */
            if (codec != ZM_CODEC_NONE && !fields_done) {
                test_fields(n);
                test_negotiation(n);
                fields_done = true;
            }
            printf("%s, %s pages%s: %zu-byte packet, corruptions refused\n",
                   zm_codec_name(codec), layout ? "consecutive" : "scattered",
                   scatter ? ", read into place" : "", n);
        }
    }
    test_index_wrap();
    zm_decoder_free(dec);
    t_guarded_free(&wire);
    t_guarded_free(&region_mem);
    return t_exit();
}
