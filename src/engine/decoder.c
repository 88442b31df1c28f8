/*
 * decoder.c - one packet -> pages written into place
 *
 * The packet is untrusted: every count, size, index and id is checked
 * against the header, the packet's length and the registered memory before
 * it is used.  zm_decode() verifies a raw payload before any page is
 * written; a channel reads raw payloads straight into the pages instead
 * (zm_packet_reader, packet.h) and verifies them there.  Compressed ones
 * decompress straight into place when their pages are consecutive (the
 * common case) and are verified right after; pages a decompressor failed
 * on are left zero.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "common/bounds.h"
#include "common/endian_util.h"
#include "common/error.h"
#include "common/hash.h"
#include "common/sized.h"
#include "common/zero.h"
#include "packet.h"

struct zm_decoder {
    uint32_t page_size;
    unsigned page_shift;
    uint32_t max_pages;
    uint32_t codecs; /* accepted ids, bit (1u << id) */
    struct zm_region_map *regions;
    unsigned region_count;
    void *codec_state[ZM_CODEC_COUNT]; /* made on first use */
    unsigned char *scratch; /* decompressed pages that are not consecutive */
};

ZM_API int zm_decoder_new(const struct zm_decoder_options *opts,
                          zm_decoder **out)
{
    struct zm_decoder_options o = { 0 };
    zm_decoder *dec;

    if (!opts || !out || zm_sized_in(&o, sizeof(o), opts) < 0) {
        return zm_error(-EINVAL, "decoder: options missing");
    }
    uint32_t page_size = o.page_size ? o.page_size : 4096;
    uint32_t max_pages = o.max_pages ? o.max_pages : 128;
    uint32_t built = 0;

    for (int id = 0; id < ZM_CODEC_COUNT; id++) {
        built |= zm_codec_available(id) ? 1u << id : 0;
    }
    int ret;
    if ((ret = zm_check_page_size(page_size)) < 0 ||
        (ret = zm_check_batch_pages(max_pages)) < 0) {
        return ret;
    }
    if (o.codecs & ~built) {
        return zm_error(-EOPNOTSUPP,
                        "decoder: codec mask 0x%x names "
                        "codecs this build lacks (built: 0x%x)",
                        o.codecs, built);
    }
    if (o.region_count > 0 && !o.regions) {
        return zm_error(-EINVAL, "decoder: %u regions but no region table",
                        o.region_count);
    }
    for (unsigned r = 0; r < o.region_count; r++) {
        /* Every page offset must be addressable without wrapping. */
        if (o.regions[r].size > SIZE_MAX - (uintptr_t)o.regions[r].base) {
            return zm_error(-EINVAL,
                            "decoder: region %u of %llu bytes "
                            "does not fit the address space",
                            r, (unsigned long long)o.regions[r].size);
        }
    }

    dec = calloc(1, sizeof(*dec));
    if (!dec) {
        return zm_error(-ENOMEM, "decoder: out of memory");
    }
    dec->page_size = page_size;
    dec->page_shift = (unsigned)__builtin_ctz(page_size);
    dec->max_pages = max_pages;
    dec->codecs = o.codecs ? o.codecs : built;
    dec->region_count = o.region_count;
    dec->regions =
        calloc(o.region_count ? o.region_count : 1, sizeof(*dec->regions));
    dec->scratch = aligned_alloc(64, (size_t)max_pages * page_size);
    if (!dec->regions || !dec->scratch) {
        zm_decoder_free(dec);
        return zm_error(-ENOMEM, "decoder: out of memory");
    }
    if (o.region_count) {
        memcpy(dec->regions, o.regions, o.region_count * sizeof(*dec->regions));
    }
    *out = dec;
    return 0;
}

ZM_API void zm_decoder_free(zm_decoder *dec)
{
    if (!dec) {
        return;
    }
    for (int id = 0; id < ZM_CODEC_COUNT; id++) {
        if (dec->codec_state[id]) {
            zm_codec_get(id)->fini(dec->codec_state[id]);
        }
    }
    free(dec->regions);
    free(dec->scratch);
    free(dec);
}

static int codec_state(zm_decoder *dec, const struct zm_codec_ops *codec,
                       void **state)
{
    if (!dec->codec_state[codec->id] &&
        codec->init(&dec->codec_state[codec->id], codec->default_level,
                    ZM_CODEC_DECOMPRESS) < 0) {
        return zm_error(-ENOMEM, "decoder: out of memory for %s", codec->name);
    }
    *state = dec->codec_state[codec->id];
    return 0;
}

/* Writes zeros only where the page is not zero already, so that pages the
 * destination never touched stay unpopulated. */
static void clear_page(unsigned char *page, size_t size)
{
    if (!zm_is_zero(page, size)) {
        memset(page, 0, size);
    }
}

/* Checks a packet's fixed header (in avail bytes) against its length len
 * and what this decoder accepts. */
static int check_header(const zm_decoder *dec, const unsigned char *p,
                        size_t avail, size_t len, struct zm_packet_header *h)
{
    int ret = zm_packet_parse_header(p, avail, h);

    if (ret < 0) {
        return ret;
    }
    uint64_t size = zm_packet_size(h);
    if (len != size) {
        return zm_error(-EBADMSG,
                        "packet: %zu bytes, the header describes "
                        "%llu",
                        len, (unsigned long long)size);
    }
    if (h->page_shift != dec->page_shift) {
        return zm_error(-EPROTO, "packet: page size %u, expected %u",
                        1u << h->page_shift, dec->page_size);
    }
    uint32_t pages = h->normal_count + h->zero_count;
    if (pages > dec->max_pages) {
        return zm_error(-EMSGSIZE,
                        "packet: %u pages, more than the "
                        "accepted %u",
                        pages, dec->max_pages);
    }
    if (!(dec->codecs & (1u << h->codec))) {
        return zm_error(-EPROTO, "packet: codec %s was not negotiated",
                        zm_codec_name(h->codec));
    }
    if (h->region >= dec->region_count) {
        return zm_error(-ERANGE, "packet: region %u, only %u registered",
                        h->region, dec->region_count);
    }
    return 0;
}

/* Checks the index table against the region; says whether the normal
 * pages follow each other. */
static int check_table(const zm_decoder *dec, const struct zm_packet_header *h,
                       const unsigned char *table, bool *consecutive)
{
    uint64_t region_pages = dec->regions[h->region].size >> dec->page_shift;
    uint32_t pages = h->normal_count + h->zero_count;
    uint32_t first = h->normal_count ? zm_get_le32(table) : 0;

    *consecutive = true;
    for (uint32_t i = 0; i < pages; i++) {
        uint32_t index = zm_get_le32(table + 4 * i);

        if (index >= region_pages) {
            return zm_error(-ERANGE,
                            "packet: page %u of region %u is "
                            "beyond its %llu pages",
                            index, h->region, (unsigned long long)region_pages);
        }
        /* In 64 bits: [2^32 - 1, 0] must not pass for consecutive. */
        if (i < h->normal_count && (uint64_t)index != (uint64_t)first + i) {
            *consecutive = false;
        }
    }
    return 0;
}

/* Clears the packet's zero pages and fills in info. */
static void finish(const zm_decoder *dec, const unsigned char *p,
                   const struct zm_packet_header *h,
                   struct zm_packet_info *info)
{
    unsigned char *base = dec->regions[h->region].base;
    const unsigned char *table = p + ZM_PACKET_HEADER_SIZE;
    uint32_t pages = h->normal_count + h->zero_count;

    for (uint32_t i = h->normal_count; i < pages; i++) {
        size_t index = zm_get_le32(table + 4 * i);
        clear_page(base + (index << dec->page_shift), dec->page_size);
    }
    if (info) {
        zm_packet_info_fill(h, info);
    }
}

static int checksum_mismatch(const struct zm_packet_header *h,
                             const unsigned char *table)
{
    uint32_t pages = h->normal_count + h->zero_count;
    return zm_error(-EBADMSG,
                    "packet: checksum mismatch (region %u, "
                    "%u pages from page %u)",
                    h->region, pages, pages ? zm_get_le32(table) : 0);
}

int zm_packet_reader_start(struct zm_packet_reader *rd, zm_decoder *dec,
                           const void *header, size_t len)
{
    size_t avail = len < ZM_PACKET_HEADER_SIZE ? len : ZM_PACKET_HEADER_SIZE;

    *rd = (struct zm_packet_reader){ .dec = dec, .len = len };
    int ret = check_header(dec, header, avail, len, &rd->h);
    if (ret < 0) {
        return ret;
    }
    rd->head_size = zm_packet_head_size(&rd->h);
    return 0;
}

int zm_packet_reader_table(struct zm_packet_reader *rd, const void *head,
                           struct iovec *iov, int *iovcnt)
{
    const zm_decoder *dec = rd->dec;
    const unsigned char *table =
        (const unsigned char *)head + ZM_PACKET_HEADER_SIZE;
    int ret = check_table(dec, &rd->h, table, &rd->consecutive);

    if (ret < 0) {
        return ret;
    }
    rd->in_pages = iov && rd->h.flags & ZM_PKT_RAW && rd->h.normal_count > 0;
    if (!rd->in_pages) {
        return 0;
    }
    unsigned char *base = dec->regions[rd->h.region].base;
    int n = 0;
    for (uint32_t i = 0; i < rd->h.normal_count; i++) {
        unsigned char *page =
            base + ((size_t)zm_get_le32(table + 4 * i) << dec->page_shift);
        if (n > 0 &&
            (unsigned char *)iov[n - 1].iov_base + iov[n - 1].iov_len == page) {
            iov[n - 1].iov_len += dec->page_size;
        } else {
            iov[n++] = (struct iovec){ page, dec->page_size };
        }
    }
    *iovcnt = n;
    return 1;
}

/* The raw payload read into the pages: the checksum over them in place. */
static int end_in_pages(zm_decoder *dec, const struct zm_packet_header *h,
                        const unsigned char *p, struct zm_packet_info *info)
{
    unsigned char *base = dec->regions[h->region].base;
    const unsigned char *table = p + ZM_PACKET_HEADER_SIZE;
    zm_hash_state state;

    zm_hash_reset(&state, 0);
    for (uint32_t i = 0; i < h->normal_count; i++) {
        size_t index = zm_get_le32(table + 4 * i);
        zm_hash_update(&state, base + (index << dec->page_shift),
                       dec->page_size);
    }
    if (zm_packet_checksum(p, h->normal_count + h->zero_count,
                           zm_hash_digest(&state)) != h->checksum) {
        return checksum_mismatch(h, table);
    }
    finish(dec, p, h, info);
    return 0;
}

int zm_packet_reader_end(struct zm_packet_reader *rd, const void *packet,
                         struct zm_packet_info *info)
{
    zm_decoder *dec = rd->dec;
    const struct zm_packet_header *h = &rd->h;
    const unsigned char *p = packet;
    int ret;

    if (rd->in_pages) {
        return end_in_pages(dec, h, p, info);
    }
    const struct zm_region_map *region = &dec->regions[h->region];
    const unsigned char *table = p + ZM_PACKET_HEADER_SIZE;
    uint32_t pages = h->normal_count + h->zero_count;
    uint32_t first = h->normal_count ? zm_get_le32(table) : 0;
    unsigned char *base = region->base;
    const unsigned char *payload = p + rd->head_size;
    size_t data_size = (size_t)h->normal_count << dec->page_shift;
    const unsigned char *data; /* the decoded pages, contiguous */
    bool in_place = false;

    if (h->flags & ZM_PKT_RAW || h->normal_count == 0) {
        data = payload;
    } else {
        const struct zm_codec_ops *codec = zm_codec_get(h->codec);
        unsigned char *dst = rd->consecutive
                                 ? base + ((size_t)first << dec->page_shift)
                                 : dec->scratch;
        void *state = NULL;

        if ((ret = codec_state(dec, codec, &state)) < 0) {
            return ret;
        }
        if (codec->decompress(state, payload, h->payload_size, dst, data_size) <
            0) {
            /* Partial output is garbage, and libzstd's can hold bytes of
             * its own uninitialised memory: none of it stays in the guest. */
            if (rd->consecutive) {
                memset(dst, 0, data_size);
            }
            return zm_error(-EBADMSG,
                            "packet: %s payload of %u bytes does "
                            "not decompress to %u pages",
                            codec->name, h->payload_size, h->normal_count);
        }
        data = dst;
        in_place = rd->consecutive;
    }
    if (zm_packet_checksum(p, pages, zm_hash64(data, data_size, 0)) !=
        h->checksum) {
        return checksum_mismatch(h, table);
    }
    /* Verified; now commit what is not in place yet. */
    if (!in_place) {
        for (uint32_t i = 0; i < h->normal_count; i++) {
            size_t index = zm_get_le32(table + 4 * i);
            memcpy(base + (index << dec->page_shift),
                   data + ((size_t)i << dec->page_shift), dec->page_size);
        }
    }
    finish(dec, p, h, info);
    return 0;
}

ZM_API int zm_decode(zm_decoder *dec, const void *packet, size_t len,
                     struct zm_packet_info *info)
{
    struct zm_packet_reader rd;
    int ret = zm_packet_info_check(info);

    if (ret == 0) {
        ret = zm_packet_reader_start(&rd, dec, packet, len);
    }
    if (ret == 0) {
        ret = zm_packet_reader_table(&rd, packet, NULL, NULL);
    }
    return ret < 0 ? ret : zm_packet_reader_end(&rd, packet, info);
}
