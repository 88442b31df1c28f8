/*
 * packet.c - packet header encoding and the checks that need no context
 */
#include <errno.h>

#include "codec/codec.h"
#include "common/endian_util.h"
#include "common/error.h"
#include "common/sized.h"
#include "packet.h"

void zm_packet_write_header(void *out, const struct zm_packet_header *h)
{
    unsigned char *p = out;

    zm_put_le32(p + 0, ZM_PKT_MAGIC);
    p[4] = ZM_PKT_VERSION;
    p[5] = h->codec;
    p[6] = h->flags;
    p[7] = h->page_shift;
    zm_put_le16(p + 8, (uint16_t)h->level);
    zm_put_le16(p + 10, 0);
    zm_put_le32(p + 12, h->region);
    zm_put_le32(p + 16, h->normal_count);
    zm_put_le32(p + 20, h->zero_count);
    zm_put_le32(p + 24, h->payload_size);
    zm_put_le32(p + 28, 0);
    zm_put_le64(p + 32, h->checksum);
}

int zm_packet_parse_header(const void *buf, size_t len,
                           struct zm_packet_header *h)
{
    const unsigned char *p = buf;

    if (len < ZM_PACKET_HEADER_SIZE) {
        return zm_error(-EBADMSG,
                        "packet: %zu bytes, shorter than the "
                        "%u-byte header",
                        len, ZM_PACKET_HEADER_SIZE);
    }
    if (zm_get_le32(p) != ZM_PKT_MAGIC) {
        return zm_error(-EBADMSG, "packet: bad magic 0x%08x", zm_get_le32(p));
    }
    if (p[4] != ZM_PKT_VERSION) {
        return zm_error(-EPROTO,
                        "packet: version %u, this library "
                        "speaks version %u",
                        p[4], ZM_PKT_VERSION);
    }
    h->codec = p[5];
    h->flags = p[6];
    h->page_shift = p[7];
    h->level = (int16_t)zm_get_le16(p + 8);
    h->region = zm_get_le32(p + 12);
    h->normal_count = zm_get_le32(p + 16);
    h->zero_count = zm_get_le32(p + 20);
    h->payload_size = zm_get_le32(p + 24);
    h->checksum = zm_get_le64(p + 32);

    if (h->codec >= ZM_CODEC_COUNT) {
        return zm_error(-EPROTO, "packet: unknown codec id %u", h->codec);
    }
    if (h->flags & ~ZM_PKT_KNOWN_FLAGS) {
        return zm_error(-EPROTO, "packet: unknown flags 0x%02x",
                        h->flags & ~ZM_PKT_KNOWN_FLAGS);
    }
    if (zm_get_le16(p + 10) != 0 || zm_get_le32(p + 28) != 0) {
        return zm_error(-EPROTO,
                        "packet: uses extensions this library "
                        "does not know (extension count %u, reserved 0x%x)",
                        zm_get_le16(p + 10), zm_get_le32(p + 28));
    }
    if (h->page_shift < 9 || h->page_shift > 16) {
        return zm_error(-EBADMSG, "packet: page shift %u outside 9..16",
                        h->page_shift);
    }
    /* Widened arithmetic: the counts are untrusted 32-bit values. */
    uint64_t pages = (uint64_t)h->normal_count + h->zero_count;
    if (pages == 0) {
        return zm_error(-EBADMSG, "packet: carries no pages");
    }
    if (pages > ZM_MAX_BATCH_PAGES) {
        return zm_error(-EMSGSIZE,
                        "packet: %llu pages, more than the "
                        "limit of %u",
                        (unsigned long long)pages, ZM_MAX_BATCH_PAGES);
    }
    uint64_t data_size = (uint64_t)h->normal_count << h->page_shift;
    if (h->flags & ZM_PKT_RAW ? h->payload_size != data_size
                              : h->payload_size > data_size) {
        return zm_error(-EBADMSG,
                        "packet: payload of %u bytes for %u "
                        "pages of %u bytes (%s)",
                        h->payload_size, h->normal_count, 1u << h->page_shift,
                        h->flags & ZM_PKT_RAW ? "raw" : "compressed");
    }
    if (h->codec == ZM_CODEC_NONE && h->normal_count > 0 &&
        !(h->flags & ZM_PKT_RAW)) {
        return zm_error(-EBADMSG, "packet: codec none without the raw flag");
    }
    if (h->normal_count > 0 && h->payload_size == 0) {
        return zm_error(-EBADMSG, "packet: %u pages with an empty payload",
                        h->normal_count);
    }
    return 0;
}

uint64_t zm_packet_checksum(const void *packet, uint32_t table_entries,
                            uint64_t data_hash)
{
    const unsigned char *p = packet;
    zm_hash_state state;

    zm_hash_reset(&state, data_hash);
    zm_hash_update(&state, p, ZM_PKT_CHECKSUM_OFFSET);
    zm_hash_update(&state, p + ZM_PACKET_HEADER_SIZE,
                   (size_t)table_entries * 4);
    return zm_hash_digest(&state);
}

int zm_packet_info_check(const struct zm_packet_info *info)
{
    if (info && zm_sized_size(info) < sizeof(size_t)) {
        return zm_error(-EINVAL, "zm_packet_info: sizeof_info is %zu",
                        zm_sized_size(info));
    }
    return 0;
}

void zm_packet_info_fill(const struct zm_packet_header *h,
                         struct zm_packet_info *info)
{
    if (!info) {
        return;
    }
    struct zm_packet_info full = {
        .sizeof_info = sizeof(full),
        .size = (uint32_t)zm_packet_size(h),
        .region = h->region,
        .page_size = 1u << h->page_shift,
        .pages = h->normal_count + h->zero_count,
        .zero_pages = h->zero_count,
        .data_size = h->normal_count << h->page_shift,
        .payload_size = h->payload_size,
        .codec = h->codec,
        .level = h->level,
        .raw = h->flags & ZM_PKT_RAW,
    };
    zm_sized_out(info, &full, sizeof(full));
}

ZM_API int zm_packet_peek(const void *buf, size_t len,
                          struct zm_packet_info *info)
{
    struct zm_packet_header h = { 0 };
    int ret = zm_packet_info_check(info);

    if (ret == 0) {
        ret = zm_packet_parse_header(buf, len, &h);
    }
    if (ret == 0) {
        zm_packet_info_fill(&h, info);
    }
    return ret;
}
