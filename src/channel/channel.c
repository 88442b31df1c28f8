/*
 * channel.c - frames and handshake messages
 */
#include <errno.h>
#include <string.h>

#include "channel.h"
#include "common/endian_util.h"
#include "common/error.h"
#include "zmigrate.h"

#define HELLO_MAGIC 0x47494d5au /* "ZMIG" read little endian */

const char *zm_frame_name(uint32_t type)
{
    static const char *const names[] = {
        [ZM_FRAME_HELLO] = "HELLO",
        [ZM_FRAME_LAYOUT] = "LAYOUT",
        [ZM_FRAME_ACCEPT] = "ACCEPT",
        [ZM_FRAME_REFUSE] = "REFUSE",
        [ZM_FRAME_PACKET] = "PACKET",
        [ZM_FRAME_SYNC] = "SYNC",
        [ZM_FRAME_DEVICE_STATE] = "DEVICE_STATE",
        [ZM_FRAME_END] = "END",
        [ZM_FRAME_COMPLETE] = "COMPLETE",
        [ZM_FRAME_FAIL] = "FAIL",
        [ZM_FRAME_VERIFY] = "VERIFY",
    };
    if (type < sizeof(names) / sizeof(names[0]) && names[type]) {
        return names[type];
    }
    return "unknown";
}

int zm_frame_write(zm_conn *conn, uint32_t type, const struct iovec *iov,
                   int iovcnt)
{
    unsigned char header[ZM_FRAME_HEADER_SIZE];
    struct iovec all[ZM_CONN_MAX_IOV];
    uint64_t length = 0;

    if (iovcnt < 0 || iovcnt >= ZM_CONN_MAX_IOV) {
        return zm_error(-EINVAL, "frame: %d buffers", iovcnt);
    }
    for (int i = 0; i < iovcnt; i++) {
        length += iov[i].iov_len;
        all[i + 1] = iov[i];
    }
    if (length > UINT32_MAX) {
        return zm_error(-EINVAL, "frame: %llu-byte body",
                        (unsigned long long)length);
    }
    zm_put_le32(header, type);
    zm_put_le32(header + 4, (uint32_t)length);
    all[0] = (struct iovec){ header, sizeof(header) };
    int ret = zm_conn_write_all(conn, all, iovcnt + 1);
    if (ret < 0) {
        return zm_error(ret, "sending %s: %s", zm_frame_name(type),
                        zm_strerror(ret));
    }
    return 0;
}

int zm_frame_read_header(zm_conn *conn, size_t max, uint32_t *type,
                         uint32_t *length)
{
    unsigned char header[ZM_FRAME_HEADER_SIZE];
    int ret = zm_conn_read_all(conn, header, sizeof(header));

    if (ret < 0) {
        return ret == -ENODATA
                   ? ret
                   : zm_error(ret, "receiving: %s", zm_strerror(ret));
    }
    *type = zm_get_le32(header);
    *length = zm_get_le32(header + 4);
    if (*length > max) {
        return zm_error(-EBADMSG, "%s frame of %u bytes, the limit is %zu",
                        zm_frame_name(*type), *length, max);
    }
    return 0;
}

int zm_frame_expect(zm_conn *conn, uint32_t want, void *buf, size_t cap,
                    uint32_t *length)
{
    uint32_t type = 0;
    int ret = zm_frame_read_header(conn, cap, &type, length);

    if (ret == -ENODATA) {
        return zm_error(-ECONNRESET,
                        "peer closed the connection while we "
                        "waited for %s",
                        zm_frame_name(want));
    }
    if (ret < 0) {
        return ret;
    }
    if ((ret = zm_conn_read_all(conn, buf, *length)) < 0) {
        return zm_error(ret == -ENODATA ? -ECONNRESET : ret, "receiving %s: %s",
                        zm_frame_name(type), zm_strerror(ret));
    }
    if (type == ZM_FRAME_REFUSE || type == ZM_FRAME_FAIL) {
        /* The body is the peer's reason, as text. */
        int n = (int)(*length < 200 ? *length : 200);
        for (int i = 0; i < n; i++) {
            char c = ((char *)buf)[i];
            if (c < 0x20 || c > 0x7e) {
                ((char *)buf)[i] = '?';
            }
        }
        return zm_error(-ECONNREFUSED, "peer %s: %.*s",
                        type == ZM_FRAME_REFUSE ? "refused" : "failed", n,
                        (char *)buf);
    }
    if (type != want) {
        return zm_error(-EPROTO, "expected %s, received %s (type %u)",
                        zm_frame_name(want), zm_frame_name(type), type);
    }
    return 0;
}

void zm_hello_encode(const struct zm_hello *h, unsigned char out[ZM_HELLO_SIZE])
{
    memset(out, 0, ZM_HELLO_SIZE);
    zm_put_le32(out, HELLO_MAGIC);
    zm_put_le16(out + 4, ZM_PROTOCOL_VERSION);
    zm_put_le16(out + 6, h->channel);
    zm_put_le16(out + 8, h->channels);
    out[10] = h->codec;
    out[11] = h->flags;
    zm_put_le32(out + 12, h->page_size);
    zm_put_le32(out + 16, h->max_pages);
    zm_put_le16(out + 20, (uint16_t)h->level);
    /* out[22..24): reserved */
    memcpy(out + 24, h->session, 16);
}

int zm_hello_decode(const void *buf, size_t len, struct zm_hello *h)
{
    const unsigned char *p = buf;

    if (len != ZM_HELLO_SIZE || zm_get_le32(p) != HELLO_MAGIC) {
        return zm_error(-EBADMSG, "handshake: the peer is not a zmigrate "
                                  "endpoint");
    }
    if (zm_get_le16(p + 4) != ZM_PROTOCOL_VERSION) {
        return zm_error(-EPROTO,
                        "handshake: protocol version %u, this "
                        "side speaks %u",
                        zm_get_le16(p + 4), ZM_PROTOCOL_VERSION);
    }
    h->channel = zm_get_le16(p + 6);
    h->channels = zm_get_le16(p + 8);
    h->codec = p[10];
    h->flags = p[11];
    h->page_size = zm_get_le32(p + 12);
    h->max_pages = zm_get_le32(p + 16);
    h->level = (int16_t)zm_get_le16(p + 20);
    memcpy(h->session, p + 24, 16);

    if (h->channels < 1 || h->channels > ZM_MAX_CHANNELS ||
        h->channel > h->channels) {
        return zm_error(-EBADMSG,
                        "handshake: channel %u of %u (1..%u data "
                        "channels)",
                        h->channel, h->channels, ZM_MAX_CHANNELS);
    }
    if (h->page_size < ZM_MIN_PAGE_SIZE || h->page_size > ZM_MAX_PAGE_SIZE ||
        (h->page_size & (h->page_size - 1)) != 0) {
        return zm_error(-EBADMSG, "handshake: page size %u", h->page_size);
    }
    if (h->max_pages < 1 || h->max_pages > ZM_MAX_BATCH_PAGES) {
        return zm_error(-EBADMSG, "handshake: %u pages per packet (1..%u)",
                        h->max_pages, ZM_MAX_BATCH_PAGES);
    }
    if (h->codec >= ZM_CODEC_COUNT) {
        return zm_error(-EPROTO, "handshake: unknown codec id %u", h->codec);
    }
    if (h->flags & ~ZM_HELLO_VERIFY) {
        return zm_error(-EPROTO, "handshake: unknown flags 0x%x", h->flags);
    }
    return 0;
}

ssize_t zm_layout_encode(const struct zm_layout_region *regions, unsigned n,
                         unsigned char *out, size_t cap)
{
    size_t pos = 4;

    if (n == 0 || n > ZM_MAX_REGIONS) {
        return zm_error(-EINVAL, "layout: %u regions (1..%u)", n,
                        ZM_MAX_REGIONS);
    }
    zm_put_le32(out, n);
    for (unsigned i = 0; i < n; i++) {
        size_t name_len = strlen(regions[i].name);
        if (name_len > ZM_REGION_NAME_MAX || pos + 9 + name_len > cap) {
            return zm_error(-EINVAL, "layout: region '%s' does not fit",
                            regions[i].name);
        }
        zm_put_le64(out + pos, regions[i].size);
        out[pos + 8] = (unsigned char)name_len;
        memcpy(out + pos + 9, regions[i].name, name_len);
        pos += 9 + name_len;
    }
    return (ssize_t)pos;
}

int zm_layout_decode(const void *buf, size_t len, size_t page_size,
                     struct zm_layout_region *regions, unsigned *n)
{
    const unsigned char *p = buf;
    size_t pos = 4;

    if (len < 4) {
        return zm_error(-EBADMSG, "layout: %zu bytes", len);
    }
    uint32_t count = zm_get_le32(p);
    if (count == 0 || count > ZM_MAX_REGIONS) {
        return zm_error(-EBADMSG, "layout: %u regions (1..%u)", count,
                        ZM_MAX_REGIONS);
    }
    for (uint32_t i = 0; i < count; i++) {
        if (len - pos < 9) {
            return zm_error(-EBADMSG, "layout: truncated at region %u", i);
        }
        uint64_t size = zm_get_le64(p + pos);
        size_t name_len = p[pos + 8];
        if (name_len == 0 || len - pos - 9 < name_len) {
            return zm_error(-EBADMSG,
                            "layout: region %u: bad name length "
                            "%zu",
                            i, name_len);
        }
        for (size_t c = 0; c < name_len; c++) {
            if (p[pos + 9 + c] < 0x20 || p[pos + 9 + c] > 0x7e) {
                return zm_error(-EBADMSG,
                                "layout: region %u: name has a "
                                "non-printable byte",
                                i);
            }
        }
        memcpy(regions[i].name, p + pos + 9, name_len);
        regions[i].name[name_len] = '\0';
        if (size == 0 || size % page_size != 0) {
            return zm_error(-EBADMSG,
                            "layout: region '%s': %llu bytes is "
                            "not a whole number of %zu-byte pages",
                            regions[i].name, (unsigned long long)size,
                            page_size);
        }
        regions[i].size = size;
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(regions[j].name, regions[i].name) == 0) {
                return zm_error(-EBADMSG, "layout: region '%s' twice",
                                regions[i].name);
            }
        }
        pos += 9 + name_len;
    }
    if (pos != len) {
        return zm_error(-EBADMSG, "layout: %zu bytes after the last region",
                        len - pos);
    }
    *n = count;
    return 0;
}
