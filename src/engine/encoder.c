/*
 * encoder.c - a batch of pages -> one packet
 *
 * Per batch: find the zero pages (they travel as indices only), estimate
 * whether the rest will compress, take a consistent snapshot of it, hash
 * it, compress it, and fall back to raw when the result is not small enough.
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
#include "estimate.h"
#include "packet.h"

/*
 * A codec context made for one (codec, level).  The encoder keeps the last
 * few it used, so that a caller alternating methods per batch (the source's
 * --compression auto, a pool worker serving several channels) pays for a
 * context once, not per switch.
 */
#define ZM_ENCODER_CONTEXTS 8

struct encoder_context {
    const struct zm_codec_ops *codec; /* NULL: slot unused */
    int level;
    void *state;
    uint64_t last_used;
};

struct zm_encoder {
    const struct zm_codec_ops *codec; /* the current method: ctx[cur] */
    void *codec_state;
    int level;
    unsigned cur;
    uint64_t switches;
    struct encoder_context ctx[ZM_ENCODER_CONTEXTS];
    uint32_t page_size;
    unsigned page_shift;
    uint32_t max_pages;
    uint32_t raw_threshold;
    uint32_t flags;
    /*
     * Whether to run the estimate on the next batch.  It pays only on
     * incompressible data, which comes in runs (a video buffer, a page
     * cache of compressed files); after a batch that compressed, the
     * codec runs untested, and one that does not fit turns it back on.
     */
    bool estimate_next;
    unsigned char *snapshot; /* max_pages pages: the copy we compress */
    struct iovec *iov;       /* the normal pages, adjacent ones merged */
    uint32_t *zero_index;    /* zero pages, appended after the normal ones */
};

ZM_API int zm_encoder_new(const struct zm_encoder_options *opts,
                          zm_encoder **out)
{
    struct zm_encoder_options o = { 0 };
    zm_encoder *enc;
    int ret;

    /* Fields a caller's older, smaller struct lacks stay zero: defaults. */
    if (!opts || !out || zm_sized_in(&o, sizeof(o), opts) < 0) {
        return zm_error(-EINVAL, "encoder: options missing");
    }
    const struct zm_codec_ops *codec = zm_codec_get(o.codec);
    if (!codec) {
        return zm_codec_levels(o.codec, NULL, NULL, NULL);
    }
    int level = o.level == ZM_LEVEL_DEFAULT ? codec->default_level : o.level;
    uint32_t page_size = o.page_size ? o.page_size : 4096;
    uint32_t max_pages = o.max_pages ? o.max_pages : 128;
    uint32_t raw_threshold = o.raw_threshold ? o.raw_threshold : 90;

    if ((ret = zm_codec_check_level(codec, level)) < 0 ||
        (ret = zm_check_page_size(page_size)) < 0 ||
        (ret = zm_check_batch_pages(max_pages)) < 0) {
        return ret;
    }
    if (raw_threshold > 100) {
        return zm_error(-EINVAL, "raw threshold %u%% is above 100%%",
                        raw_threshold);
    }
    if (o.flags & ~ZM_ENCODER_NO_ESTIMATE) {
        return zm_error(-EINVAL, "encoder: unknown flags 0x%x", o.flags);
    }

    enc = calloc(1, sizeof(*enc));
    if (!enc) {
        return zm_error(-ENOMEM, "encoder: out of memory");
    }
    enc->codec = codec;
    enc->level = level;
    enc->page_size = page_size;
    enc->page_shift = (unsigned)__builtin_ctz(page_size);
    enc->max_pages = max_pages;
    enc->raw_threshold = raw_threshold;
    enc->flags = o.flags;
    enc->estimate_next = !(o.flags & ZM_ENCODER_NO_ESTIMATE);
    enc->snapshot = aligned_alloc(64, (size_t)max_pages * page_size);
    enc->iov = calloc(max_pages, sizeof(*enc->iov));
    enc->zero_index = calloc(max_pages, sizeof(*enc->zero_index));
    if (!enc->snapshot || !enc->iov || !enc->zero_index ||
        codec->init(&enc->ctx[0].state, level, ZM_CODEC_COMPRESS) < 0) {
        zm_encoder_free(enc);
        return zm_error(-ENOMEM, "encoder: out of memory");
    }
    enc->ctx[0].codec = codec;
    enc->ctx[0].level = level;
    enc->codec_state = enc->ctx[0].state;
    *out = enc;
    return 0;
}

ZM_API int zm_encoder_set_codec(zm_encoder *enc, int codec_id, int level)
{
    const struct zm_codec_ops *codec = zm_codec_get(codec_id);
    int ret;

    if (!codec) {
        return zm_codec_levels(codec_id, NULL, NULL, NULL);
    }
    if (level == ZM_LEVEL_DEFAULT) {
        level = codec->default_level;
    }
    if (codec == enc->codec && level == enc->level) {
        return 0;
    }
    if ((ret = zm_codec_check_level(codec, level)) < 0) {
        return ret;
    }
    enc->switches++;
    unsigned victim = ZM_ENCODER_CONTEXTS;
    for (unsigned i = 0; i < ZM_ENCODER_CONTEXTS; i++) {
        if (enc->ctx[i].codec == codec && enc->ctx[i].level == level) {
            victim = i;
            goto found;
        }
    }
    /* An unused slot, else the least recently used; never the current. */
    for (unsigned i = 0; i < ZM_ENCODER_CONTEXTS; i++) {
        if (i == enc->cur) {
            continue;
        }
        if (!enc->ctx[i].codec) {
            victim = i;
            break;
        }
        if (victim == ZM_ENCODER_CONTEXTS ||
            enc->ctx[i].last_used < enc->ctx[victim].last_used) {
            victim = i;
        }
    }
    struct encoder_context *c = &enc->ctx[victim];
    void *state = NULL;
    if (codec->init(&state, level, ZM_CODEC_COMPRESS) < 0) {
        return zm_error(-ENOMEM, "encoder: out of memory for %s", codec->name);
    }
    if (c->codec) {
        c->codec->fini(c->state);
    }
    *c = (struct encoder_context){ codec, level, state, 0 };
found:
    enc->ctx[enc->cur].last_used = enc->switches;
    enc->cur = victim;
    enc->codec = codec;
    enc->level = level;
    enc->codec_state = enc->ctx[victim].state;
    return 0;
}

ZM_API int zm_encoder_codec(const zm_encoder *enc, int *level)
{
    if (level) {
        *level = enc->level;
    }
    return enc->codec->id;
}

ZM_API void zm_encoder_free(zm_encoder *enc)
{
    if (!enc) {
        return;
    }
    for (unsigned i = 0; i < ZM_ENCODER_CONTEXTS; i++) {
        if (enc->ctx[i].codec) {
            enc->ctx[i].codec->fini(enc->ctx[i].state);
        }
    }
    free(enc->snapshot);
    free(enc->iov);
    free(enc->zero_index);
    free(enc);
}

ZM_API size_t zm_encoder_bound(const zm_encoder *enc)
{
    return ZM_PACKET_HEADER_SIZE + (size_t)enc->max_pages * 4 +
           ((size_t)enc->max_pages << enc->page_shift);
}

static void copy_iov(unsigned char *dst, const struct iovec *iov, int iovcnt)
{
    for (int i = 0; i < iovcnt; i++) {
        memcpy(dst, iov[i].iov_base, iov[i].iov_len);
        dst += iov[i].iov_len;
    }
}

static uint64_t hash_iov(const struct iovec *iov, int iovcnt)
{
    zm_hash_state state;

    if (iovcnt == 1) {
        return zm_hash64(iov[0].iov_base, iov[0].iov_len, 0);
    }
    zm_hash_reset(&state, 0);
    for (int i = 0; i < iovcnt; i++) {
        zm_hash_update(&state, iov[i].iov_base, iov[i].iov_len);
    }
    return zm_hash_digest(&state);
}

/*
 * Fills payload with the normal pages, compressed when that pays, and
 * returns its size and *raw; *data_hash covers exactly the bytes encoded.
 */
static ssize_t encode_payload(zm_encoder *enc, int iovcnt, size_t data_size,
                              unsigned flags, unsigned char *payload,
                              size_t room, uint64_t *data_hash, bool *raw)
{
    const struct iovec *src = enc->iov;
    struct iovec snapshot;
    int srccnt = iovcnt;

    if (enc->codec->id != ZM_CODEC_NONE) {
        if (!(flags & ZM_ENCODE_STABLE)) {
            /* Another thread may write the pages while the codec reads
             * them; compress and hash one private copy so they agree.
             * The estimate then reads the copy too, from cache. */
            copy_iov(enc->snapshot, src, srccnt);
            snapshot = (struct iovec){ enc->snapshot, data_size };
            src = &snapshot;
            srccnt = 1;
        }
        bool hopeless = enc->estimate_next &&
                        zm_estimate_entropy(src, srccnt, enc->page_size) >=
                            ZM_INCOMPRESSIBLE_BITS;
        if (!hopeless) {
            size_t limit = data_size * enc->raw_threshold / 100;
            ssize_t n =
                enc->codec->compress(enc->codec_state, src, srccnt, data_size,
                                     payload, limit < room ? limit : room);
            if (n >= 0) {
                enc->estimate_next = false;
                *data_hash = hash_iov(src, srccnt);
                *raw = false;
                return n;
            }
            if (n != -ENOBUFS) {
                return zm_error((int)n, "encode: %s failed: %s",
                                enc->codec->name, zm_strerror((int)n));
            }
            enc->estimate_next = !(enc->flags & ZM_ENCODER_NO_ESTIMATE);
        }
    }
    if (data_size > room) {
        return zm_error(-ENOBUFS,
                        "encode: the raw payload needs %zu bytes, "
                        "the buffer has %zu left",
                        data_size, room);
    }
    /* Hash the copy in the packet: no one else writes it. */
    copy_iov(payload, src, srccnt);
    *data_hash = zm_hash64(payload, data_size, 0);
    *raw = true;
    return (ssize_t)data_size;
}

/*
 * The index table, normal pages first, zero ones after; the normal pages'
 * contents as enc->iov, runs of consecutive pages merged.  Sets *normal
 * and *iovcnt; -EINVAL for an index the wire cannot carry.
 */
static int build_table(zm_encoder *enc, const struct zm_page_ref *pages,
                       unsigned count, unsigned char *table, uint32_t *normal,
                       int *iovcnt)
{
    uint32_t zero = 0;

    *normal = 0;
    *iovcnt = 0;
    for (unsigned i = 0; i < count; i++) {
        const unsigned char *data = pages[i].data;

        if (pages[i].index > UINT32_MAX) {
            return zm_error(-EINVAL,
                            "encode: page index %llu does not fit "
                            "the 32-bit wire field",
                            (unsigned long long)pages[i].index);
        }
        if (zm_is_zero(data, enc->page_size)) {
            enc->zero_index[zero++] = (uint32_t)pages[i].index;
            continue;
        }
        zm_put_le32(table + 4 * (*normal)++, (uint32_t)pages[i].index);
        struct iovec *prev = *iovcnt ? &enc->iov[*iovcnt - 1] : NULL;
        if (prev &&
            (const unsigned char *)prev->iov_base + prev->iov_len == data) {
            prev->iov_len += enc->page_size;
        } else {
            enc->iov[(*iovcnt)++] =
                (struct iovec){ (void *)data, enc->page_size };
        }
    }
    for (uint32_t i = 0; i < zero; i++) {
        zm_put_le32(table + 4 * (*normal + i), enc->zero_index[i]);
    }
    return 0;
}

ZM_API ssize_t zm_encode(zm_encoder *enc, uint32_t region,
                         const struct zm_page_ref *pages, unsigned count,
                         unsigned flags, void *out, size_t cap,
                         struct zm_packet_info *info)
{
    unsigned char *packet = out;
    unsigned char *table = packet + ZM_PACKET_HEADER_SIZE;
    uint32_t normal = 0;
    int iovcnt = 0;

    if (count < 1 || count > enc->max_pages) {
        return zm_error(-EINVAL, "encode: %u pages, must be 1..%u", count,
                        enc->max_pages);
    }
    if (flags & ~ZM_ENCODE_STABLE) {
        return zm_error(-EINVAL, "encode: unknown flags 0x%x", flags);
    }
    int ret = zm_packet_info_check(info);
    if (ret < 0) {
        return ret;
    }
    size_t table_end = ZM_PACKET_HEADER_SIZE + (size_t)count * 4;
    if (cap < table_end) {
        return zm_error(-ENOBUFS,
                        "encode: %zu-byte buffer, the header "
                        "alone needs %zu",
                        cap, table_end);
    }

    if ((ret = build_table(enc, pages, count, table, &normal, &iovcnt)) < 0) {
        return ret;
    }
    uint32_t zero = count - normal;

    size_t data_size = (size_t)normal << enc->page_shift;
    uint64_t data_hash = zm_hash64(NULL, 0, 0);
    bool raw = false;
    ssize_t payload_size = 0;

    if (normal > 0) {
        payload_size =
            encode_payload(enc, iovcnt, data_size, flags, packet + table_end,
                           cap - table_end, &data_hash, &raw);
        if (payload_size < 0) {
            return payload_size;
        }
    }
    uint8_t pkt_flags = raw ? ZM_PKT_RAW : 0;

    struct zm_packet_header h = {
        .codec = (uint8_t)enc->codec->id,
        .flags = pkt_flags,
        .page_shift = (uint8_t)enc->page_shift,
        .level = (int16_t)(enc->level > INT16_MAX ? INT16_MAX : enc->level),
        .region = region,
        .normal_count = normal,
        .zero_count = zero,
        .payload_size = (uint32_t)payload_size,
    };
    zm_packet_write_header(packet, &h);
    zm_put_le64(packet + ZM_PKT_CHECKSUM_OFFSET,
                zm_packet_checksum(packet, count, data_hash));

    zm_packet_info_fill(&h, info);
    return (ssize_t)(table_end + (size_t)payload_size);
}
