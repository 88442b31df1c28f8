/*
 * fuzz_roundtrip.c - zm_encode() then zm_decode(): the pages come back
 *
 * The input chooses the encoder's options, the pages, where they lie in
 * the source and in the region, and their contents (fuzz_roundtrip.h).
 * Properties:
 *
 *   - zm_encode() succeeds, or fails with -ENOBUFS only when the output
 *     buffer given is smaller than zm_encoder_bound(); it never writes
 *     past the buffer (an allocation of exactly that size);
 *   - encoding the same pages again with the same encoder gives the same
 *     bytes (determinism);
 *   - the packet info is right: counts, zero pages, raw exactly when the
 *     codec is none or the payload would pass the raw threshold, and
 *     zm_packet_peek() on the packet agrees with it;
 *   - zm_decode() takes the packet, reports the same info, writes every
 *     page back exactly as it was sent and touches no other page;
 *   - a zlib or deflate payload inflates to the same pages with the other
 *     library too (they share a format).
 */
#include <errno.h>
#include <string.h>

#include "codec/codec.h"
#include "common/endian_util.h"
#include "fuzz.h"
#include "fuzz_roundtrip.h"
#include "zmigrate.h"
#include "common/zero.h"

#define CANARY 0xa5

static bool same_info(const struct zm_packet_info *a,
                      const struct zm_packet_info *b)
{
    return a->size == b->size && a->region == b->region &&
           a->page_size == b->page_size && a->pages == b->pages &&
           a->zero_pages == b->zero_pages && a->data_size == b->data_size &&
           a->payload_size == b->payload_size && a->codec == b->codec &&
           a->level == b->level && a->raw == b->raw;
}

/* Bytes of page i, from the input after its integers. */
static void fill_page(const struct rt_params *p, uint32_t i, unsigned char *src,
                      struct zm_fdp *fdp)
{
    size_t page_size = (size_t)1 << p->page_shift;
    unsigned char *page = src + ((size_t)p->slot[i] << p->page_shift);
    const struct rt_page *pg = &p->page[i];
    size_t got;
    const uint8_t *bytes = zm_fdp_bytes(fdp, rt_page_bytes(p, i), &got);

    switch (pg->kind) {
    case RT_ZERO:
        memset(page, 0, page_size);
        return;
    case RT_COPY:
        memcpy(page, src + ((size_t)p->slot[pg->from] << p->page_shift),
               page_size);
        page[pg->pos] = (unsigned char)pg->value;
        return;
    default:
        break;
    }
    if (got == 0) {
        memset(page, (int)(i + 1), page_size);
        return;
    }
    /* The bytes there are, repeated to fill the page. */
    for (size_t off = 0; off < page_size; off += got) {
        size_t n = page_size - off < got ? page_size - off : got;
        memcpy(page + off, bytes, n);
    }
}

/* zlib and deflate share a format: the other one inflates it too. */
static void check_twin(const struct rt_params *p, const unsigned char *packet,
                       const struct zm_packet_info *info,
                       const unsigned char *dest)
{
    int other = p->codec == ZM_CODEC_ZLIB      ? ZM_CODEC_DEFLATE
                : p->codec == ZM_CODEC_DEFLATE ? ZM_CODEC_ZLIB
                                               : -1;
    const struct zm_codec_ops *twin = zm_codec_get(other);
    void *state = NULL;

    if (!twin || info->raw || info->data_size == 0) {
        return;
    }
    unsigned char *out = malloc(info->data_size);
    FUZZ_CHECK(out, "out of memory");
    FUZZ_CHECK(twin->init(&state, twin->default_level, ZM_CODEC_DECOMPRESS) ==
                   0,
               "%s: init", twin->name);
    const unsigned char *table = packet + ZM_PACKET_HEADER_SIZE;
    int ret = twin->decompress(state, table + 4 * (size_t)info->pages,
                               info->payload_size, out, info->data_size);
    FUZZ_CHECK(ret == 0, "%s does not inflate a %s payload: %d", twin->name,
               zm_codec_name((int)p->codec), ret);
    for (uint32_t k = 0; k < info->pages - info->zero_pages; k++) {
        size_t index = zm_get_le32(table + 4 * k);
        FUZZ_CHECK(memcmp(out + ((size_t)k << p->page_shift),
                          dest + (index << p->page_shift),
                          info->page_size) == 0,
                   "%s inflates page %u of a %s payload differently",
                   twin->name, k, zm_codec_name((int)p->codec));
    }
    twin->fini(state);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zm_fdp fdp = zm_fdp_init(data, size);
    struct zm_fdp_io io = { &fdp, NULL };
    static struct rt_params p;

    memset(&p, 0, sizeof(p));
    rt_params(&io, &p);

    size_t page_size = (size_t)1 << p.page_shift;
    size_t data_size = (size_t)p.count << p.page_shift;
    uint32_t region_pages = p.count + p.spare;
    size_t region_size = (size_t)region_pages << p.page_shift;
    unsigned char *src = malloc(data_size);
    unsigned char *dest = malloc(region_size);
    unsigned char *out = malloc(p.cap);
    unsigned char *again = malloc(p.cap);
    struct zm_page_ref refs[RT_MAX_PAGES];
    uint32_t zero = 0;

    FUZZ_CHECK(src && dest && ((out && again) || p.cap == 0), "out of memory");
    for (uint32_t i = 0; i < p.count; i++) {
        fill_page(&p, i, src, &fdp);
    }
    for (uint32_t i = 0; i < p.count; i++) {
        refs[i] = (struct zm_page_ref){ p.index[i], src + ((size_t)p.slot[i]
                                                           << p.page_shift) };
        zero += zm_is_zero(refs[i].data, page_size);
    }

    struct zm_encoder_options eopts = {
        .sizeof_options = sizeof(eopts),
        .codec = (int)p.codec,
        .level = rt_level(&p),
        .page_size = (uint32_t)page_size,
        .max_pages = p.max_pages,
        .raw_threshold = p.raw_threshold,
        .flags = p.no_estimate ? ZM_ENCODER_NO_ESTIMATE : 0,
    };
    zm_encoder *enc;
    int ret = zm_encoder_new(&eopts, &enc);
    FUZZ_CHECK(ret == 0, "zm_encoder_new: %s", zm_errmsg());
    FUZZ_CHECK(zm_encoder_bound(enc) == rt_bound(&p),
               "zm_encoder_bound %zu, expected %u", zm_encoder_bound(enc),
               rt_bound(&p));

    unsigned flags = p.stable ? ZM_ENCODE_STABLE : 0;
    struct zm_packet_info info = { .sizeof_info = sizeof(info) };
    struct zm_packet_info info2 = { .sizeof_info = sizeof(info2) };
    ssize_t n =
        zm_encode(enc, p.region, refs, p.count, flags, out, p.cap, &info);
    ssize_t n2 =
        zm_encode(enc, p.region, refs, p.count, flags, again, p.cap, &info2);
    FUZZ_CHECK(n == n2, "encoded twice: %zd then %zd bytes", n, n2);
    if (n < 0) {
        FUZZ_CHECK(n == -ENOBUFS && p.cap < rt_bound(&p),
                   "zm_encode: %zd (%s) with a %u-byte buffer", n, zm_errmsg(),
                   p.cap);
        goto done;
    }
    FUZZ_CHECK(memcmp(out, again, (size_t)n) == 0,
               "encoded twice: different bytes");
    FUZZ_CHECK(same_info(&info, &info2), "encoded twice: other info");

    /* The info describes what was sent. */
    uint32_t normal = p.count - zero;
    uint32_t threshold = p.raw_threshold ? p.raw_threshold : 90;
    /* The level travels in 16 bits: larger lz4 accelerations saturate. */
    int wire_level = eopts.level > INT16_MAX ? INT16_MAX : eopts.level;
    FUZZ_CHECK((size_t)n <= p.cap && info.size == (uint32_t)n &&
                   info.region == p.region && info.page_size == page_size &&
                   info.pages == p.count && info.zero_pages == zero &&
                   info.data_size == (size_t)normal << p.page_shift &&
                   info.codec == (int)p.codec && info.level == wire_level,
               "encode info: size %u of %zd, %u pages, %u zero (want %u)",
               info.size, n, info.pages, info.zero_pages, zero);
    if (normal == 0) {
        FUZZ_CHECK(info.payload_size == 0 && !info.raw,
                   "only zero pages, a payload of %u bytes", info.payload_size);
    } else if (info.raw) {
        FUZZ_CHECK(info.payload_size == info.data_size,
                   "raw payload of %u bytes for %u", info.payload_size,
                   info.data_size);
    } else {
        FUZZ_CHECK(p.codec != ZM_CODEC_NONE, "codec none, not raw");
        FUZZ_CHECK(info.payload_size > 0 &&
                       (uint64_t)info.payload_size <=
                           (uint64_t)info.data_size * threshold / 100,
                   "compressed payload of %u bytes for %u, threshold %u%%",
                   info.payload_size, info.data_size, threshold);
    }

    struct zm_packet_info peek = { .sizeof_info = sizeof(peek) };
    ret = zm_packet_peek(out, (size_t)n, &peek);
    FUZZ_CHECK(ret == 0, "peek: %d (%s)", ret, zm_errmsg());
    FUZZ_CHECK(same_info(&info, &peek), "peek and encode disagree");

    /* Decode into a region where only the chosen one is real. */
    struct zm_region_map maps[4] = { { 0 } };
    maps[p.region] = (struct zm_region_map){ dest, region_size };
    struct zm_decoder_options dopts = {
        .sizeof_options = sizeof(dopts),
        .page_size = (uint32_t)page_size,
        .max_pages = p.max_pages,
        .regions = maps,
        .region_count = p.region + 1,
    };
    zm_decoder *dec;
    ret = zm_decoder_new(&dopts, &dec);
    FUZZ_CHECK(ret == 0, "zm_decoder_new: %s", zm_errmsg());
    int fill = p.dest_zero ? 0 : CANARY;
    memset(dest, fill, region_size);
    struct zm_packet_info got = { .sizeof_info = sizeof(got) };
    ret = zm_decode(dec, out, (size_t)n, &got);
    FUZZ_CHECK(ret == 0, "zm_decode: %d (%s)", ret, zm_errmsg());
    FUZZ_CHECK(same_info(&peek, &got), "decode and peek disagree");
    zm_decoder_free(dec);

    bool named[RT_MAX_PAGES * 2] = { false };
    for (uint32_t i = 0; i < p.count; i++) {
        FUZZ_CHECK(memcmp(dest + ((size_t)p.index[i] << p.page_shift),
                          refs[i].data, page_size) == 0,
                   "page %u (index %u) differs after the round trip", i,
                   p.index[i]);
        named[p.index[i]] = true;
    }
    for (uint32_t pg = 0; pg < region_pages; pg++) {
        const unsigned char *d = dest + ((size_t)pg << p.page_shift);
        for (size_t b = 0; !named[pg] && b < page_size; b++) {
            FUZZ_CHECK(d[b] == fill, "page %u written, but not sent", pg);
        }
    }
    check_twin(&p, out, &info, dest);

done:
    zm_encoder_free(enc);
    free(src);
    free(dest);
    free(out);
    free(again);
    return 0;
}
