/*
 * zstd.c - Zstandard codec
 *
 * Payload: one zstd frame.  Contexts are made once and reused, with the
 * level set once, so that a packet pays no allocation or table setup.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "codec.h"

struct zstd_state {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
};

static void zstd_fini(void *opaque)
{
    struct zstd_state *st = opaque;

    if (st) {
        ZSTD_freeCCtx(st->cctx);
        ZSTD_freeDCtx(st->dctx);
        free(st);
    }
}

static int zstd_init(void **state, int level, unsigned mode)
{
    struct zstd_state *st = calloc(1, sizeof(*st));

    if (!st) {
        return -ENOMEM;
    }
    if (mode & ZM_CODEC_COMPRESS) {
        st->cctx = ZSTD_createCCtx();
        if (!st->cctx || ZSTD_isError(ZSTD_CCtx_setParameter(
                             st->cctx, ZSTD_c_compressionLevel, level))) {
            goto fail;
        }
    }
    if (mode & ZM_CODEC_DECOMPRESS) {
        st->dctx = ZSTD_createDCtx();
        if (!st->dctx) {
            goto fail;
        }
    }
    *state = st;
    return 0;
fail:
    zstd_fini(st);
    return -ENOMEM;
}

static ssize_t zstd_result(size_t ret)
{
    if (!ZSTD_isError(ret)) {
        return (ssize_t)ret;
    }
    return ZSTD_getErrorCode(ret) == ZSTD_error_dstSize_tooSmall ? -ENOBUFS
                                                                 : -EIO;
}

static ssize_t zstd_compress(void *opaque, const struct iovec *iov, int iovcnt,
                             size_t total, void *dst, size_t cap)
{
    struct zstd_state *st = opaque;
    ZSTD_outBuffer out = { dst, cap, 0 };
    size_t ret;

    if (iovcnt == 1) {
        return zstd_result(ZSTD_compress2(st->cctx, dst, cap, iov[0].iov_base,
                                          iov[0].iov_len));
    }
    /* A stream over the buffers; the pledged size keeps the frame header
     * and parameters what a one-shot call would choose. */
    ZSTD_CCtx_reset(st->cctx, ZSTD_reset_session_only);
    ret = ZSTD_CCtx_setPledgedSrcSize(st->cctx, total);
    if (ZSTD_isError(ret)) {
        return -EIO;
    }
    for (int i = 0; i < iovcnt; i++) {
        ZSTD_inBuffer in = { iov[i].iov_base, iov[i].iov_len, 0 };
        ZSTD_EndDirective end = i == iovcnt - 1 ? ZSTD_e_end : ZSTD_e_continue;

        do {
            ret = ZSTD_compressStream2(st->cctx, &out, &in, end);
            if (ZSTD_isError(ret)) {
                return zstd_result(ret);
            }
            if (out.pos == out.size &&
                (in.pos < in.size || (end == ZSTD_e_end && ret != 0))) {
                return -ENOBUFS;
            }
        } while (in.pos < in.size || (end == ZSTD_e_end && ret != 0));
    }
    return (ssize_t)out.pos;
}

static int zstd_decompress(void *opaque, const void *src, size_t src_len,
                           void *dst, size_t dst_len)
{
    struct zstd_state *st = opaque;
    const unsigned char *in = src;

    /* Exactly one frame of the current format: no skippable frames, no
     * trailing frames, and none of the legacy decoders libzstd may carry. */
    if (src_len < 4 ||
        (uint32_t)(in[0] | in[1] << 8 | in[2] << 16 | (uint32_t)in[3] << 24) !=
            ZSTD_MAGICNUMBER ||
        ZSTD_findFrameCompressedSize(src, src_len) != src_len) {
        return -EBADMSG;
    }
    size_t ret = ZSTD_decompressDCtx(st->dctx, dst, dst_len, src, src_len);

    if (ZSTD_isError(ret) || ret != dst_len) {
        return -EBADMSG;
    }
    return 0;
}

const struct zm_codec_ops zm_codec_zstd = {
    .name = "zstd",
    .id = ZM_CODEC_ZSTD,
    .min_level = 1,
    .max_level = 19,
    .default_level = 1,
    .init = zstd_init,
    .fini = zstd_fini,
    .compress = zstd_compress,
    .decompress = zstd_decompress,
};
