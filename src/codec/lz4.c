/*
 * lz4.c - LZ4 block codec
 *
 * Payload: a sequence of LZ4 blocks, each preceded by its compressed size
 * (u32 little endian).  A contiguous input is one block; a scattered input
 * becomes one block per buffer, compressed in streaming mode so that each
 * block still finds matches in the ones before it without a staging copy.
 * The level is LZ4's acceleration: 1 is the default, higher is faster.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include <lz4.h>

#include "codec.h"
#include "common/endian_util.h"

struct lz4_state {
    LZ4_stream_t *stream;
    LZ4_streamDecode_t *decode;
    int acceleration;
};

static void lz4_fini(void *opaque)
{
    struct lz4_state *st = opaque;

    if (st) {
        LZ4_freeStream(st->stream);
        LZ4_freeStreamDecode(st->decode);
        free(st);
    }
}

static int lz4_init(void **state, int level, unsigned mode)
{
    struct lz4_state *st = calloc(1, sizeof(*st));

    if (!st) {
        return -ENOMEM;
    }
    st->acceleration = level;
    if (mode & ZM_CODEC_COMPRESS) {
        st->stream = LZ4_createStream();
    }
    if (mode & ZM_CODEC_DECOMPRESS) {
        st->decode = LZ4_createStreamDecode();
    }
    if (((mode & ZM_CODEC_COMPRESS) && !st->stream) ||
        ((mode & ZM_CODEC_DECOMPRESS) && !st->decode)) {
        lz4_fini(st);
        return -ENOMEM;
    }
    *state = st;
    return 0;
}

static ssize_t lz4_compress(void *opaque, const struct iovec *iov, int iovcnt,
                            size_t total, void *dst, size_t cap)
{
    struct lz4_state *st = opaque;
    unsigned char *out = dst;
    size_t used = 0;

    if (total > LZ4_MAX_INPUT_SIZE) {
        return -EINVAL;
    }
    /* A full reset: a fast reset keeps the last packet's hash entries,
     * and chasing those stale candidates costs ~4% of the speed. */
    LZ4_initStream(st->stream, sizeof(*st->stream));
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len == 0) {
            continue;
        }
        if (cap - used <= 4) {
            return -ENOBUFS;
        }
        size_t room = cap - used - 4;
        /* LZ4 gives up (returns 0) as soon as the block cannot fit. */
        int n = LZ4_compress_fast_continue(
            st->stream, iov[i].iov_base, (char *)out + used + 4,
            (int)iov[i].iov_len, room > INT32_MAX ? INT32_MAX : (int)room,
            st->acceleration);
        if (n <= 0) {
            return -ENOBUFS;
        }
        zm_put_le32(out + used, (uint32_t)n);
        used += 4 + (size_t)n;
    }
    return (ssize_t)used;
}

static int lz4_decompress(void *opaque, const void *src, size_t src_len,
                          void *dst, size_t dst_len)
{
    struct lz4_state *st = opaque;
    const unsigned char *in = src;
    char *out = dst;
    size_t in_pos = 0;
    size_t out_pos = 0;

    if (dst_len > LZ4_MAX_INPUT_SIZE) {
        return -EBADMSG;
    }
    LZ4_setStreamDecode(st->decode, NULL, 0);
    while (in_pos < src_len) {
        if (src_len - in_pos < 4) {
            return -EBADMSG;
        }
        uint32_t block = zm_get_le32(in + in_pos);
        in_pos += 4;
        if (block == 0 || block > src_len - in_pos || out_pos == dst_len ||
            block > INT32_MAX) {
            return -EBADMSG;
        }
        int n = LZ4_decompress_safe_continue(
            st->decode, (const char *)in + in_pos, out + out_pos, (int)block,
            (int)(dst_len - out_pos));
        if (n <= 0) {
            return -EBADMSG;
        }
        in_pos += block;
        out_pos += (size_t)n;
    }
    return out_pos == dst_len ? 0 : -EBADMSG;
}

const struct zm_codec_ops zm_codec_lz4 = {
    .name = "lz4",
    .id = ZM_CODEC_LZ4,
    .min_level = 1,
    .max_level = 65537, /* LZ4_ACCELERATION_MAX */
    .default_level = 1,
    .init = lz4_init,
    .fini = lz4_fini,
    .compress = lz4_compress,
    .decompress = lz4_decompress,
};
