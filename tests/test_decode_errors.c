/*
 * test_decode_errors.c - malformed packets are refused, and harmlessly
 *
 * Truncated packets, trailing bytes, every single-bit flip, and each header
 * field set to a bad value are refused with the documented error, and never
 * change memory outside the pages the packet names.
 */
#include <errno.h>
#include <string.h>

#include "endian_util.h"
#include "test_util.h"
#include "zmigrate.h"

#define PAGE 4096u
#define REGION_PAGES 64u
#define CANARY 0x3c

static struct t_guarded region_mem;
static zm_decoder *dec;
static unsigned char packet[ZM_PACKET_HEADER_SIZE + 16 * 4 + 16 * PAGE];
static unsigned char bad[sizeof(packet) + 16];

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

static size_t make_packet(int codec, const unsigned char *src)
{
    struct zm_encoder_options opts = {
        .sizeof_options = sizeof(opts),
        .codec = codec,
        .level = ZM_LEVEL_DEFAULT,
        .max_pages = 16,
    };
    /* Consecutive pages, a zero page, and two pages further away. */
    static const unsigned indices[] = { 10, 11, 12, 13, 40, 41, 50 };
    struct zm_page_ref refs[7];
    zm_encoder *enc;

    memset(named, 0, sizeof(named));
    for (unsigned i = 0; i < 7; i++) {
        refs[i] = (struct zm_page_ref){ indices[i], src + i * PAGE };
        named[indices[i]] = true;
    }
    if (zm_encoder_new(&opts, &enc) < 0) {
        return 0;
    }
    ssize_t n = zm_encode(enc, 0, refs, 7, 0, packet, sizeof(packet), NULL);
    zm_encoder_free(enc);
    CHECK(n > 0, "encode: %s", zm_errmsg());
    return n > 0 ? (size_t)n : 0;
}

static void expect(int want, const unsigned char *pkt, size_t len,
                   const char *what)
{
    reset_region();
    int ret = zm_decode(dec, pkt, len, NULL);
    CHECK(ret == want, "%s: got %d (%s), want %d", what, ret, zm_errmsg(),
          want);
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
    CHECK(zm_decode(dec, packet, n, NULL) == 0, "intact packet");
    memcpy(intact, region_mem.data, region_size);

    /* Every bit of header and table, then a stride through the payload. */
    size_t table_end = ZM_PACKET_HEADER_SIZE + 7 * 4;
    for (size_t bit = 0; bit < n * 8;
         bit += bit < table_end * 8 ? 1 : 61) {
        memcpy(bad, packet, n);
        bad[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        reset_region();
        if (zm_decode(dec, bad, n, NULL) == 0) {
            if (bit >= table_end * 8 &&
                memcmp(region_mem.data, intact, region_size) == 0) {
                harmless++;
            } else {
                accepted++;
                fprintf(stderr, "%s: flip of bit %zu accepted\n", codec,
                        bit);
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
    region = (struct zm_region_map){ region_mem.data,
                                     (uint64_t)REGION_PAGES * PAGE };
    CHECK(zm_decoder_new(&opts, &dec) == 0, "decoder: %s", zm_errmsg());

    zm_datagen_fill(src, sizeof(src), 0, 5);
    memset(src + 4 * PAGE, 0, PAGE);  /* page 40 is a zero page */
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
        size_t n = make_packet(codec, src);
        if (n == 0) {
            continue;
        }
        expect(0, packet, n, "the intact packet");
        test_truncation(n, zm_codec_name(codec));
        test_bit_flips(n, zm_codec_name(codec));
        /* Field checks want a compressed packet: the first codec. */
        if (codec != ZM_CODEC_NONE && !fields_done) {
            test_fields(n);
            test_negotiation(n);
            fields_done = true;
        }
        printf("%s: %zu-byte packet, corruptions refused\n",
               zm_codec_name(codec), n);
    }
    zm_decoder_free(dec);
    t_guarded_free(&region_mem);
    return t_exit();
}
