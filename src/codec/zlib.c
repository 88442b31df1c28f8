/*
 * zlib.c - zlib's deflate
 *
 * Payload: one raw deflate stream (no zlib header or Adler-32: the packet
 * has its own checksum), so it is the same format the "deflate" codec
 * writes and either library can inflate the other's output.  When the build
 * has ISA-L, its inflate decodes zlib's payloads too: same bytes, read at
 * about twice the speed, so a zlib receiver costs less CPU.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <zlib.h>

#include "codec.h"

struct zlib_state {
    z_stream deflater;
    z_stream inflater;
    bool have_deflater;
    bool have_inflater;
    void *isal_inflater; /* the deflate codec's context, if built */
};

static void zlib_fini(void *opaque)
{
    struct zlib_state *st = opaque;

    if (st) {
        if (st->have_deflater) {
            deflateEnd(&st->deflater);
        }
        if (st->have_inflater) {
            inflateEnd(&st->inflater);
        }
#if ZM_HAVE_ISAL
        zm_codec_deflate.fini(st->isal_inflater);
#endif
        free(st);
    }
}

static int zlib_init(void **state, int level, unsigned mode)
{
    struct zlib_state *st = calloc(1, sizeof(*st));

    if (!st) {
        return -ENOMEM;
    }
    if (mode & ZM_CODEC_COMPRESS) {
        if (deflateInit2(&st->deflater, level, Z_DEFLATED, -MAX_WBITS, 8,
                         Z_DEFAULT_STRATEGY) != Z_OK) {
            goto fail;
        }
        st->have_deflater = true;
    }
#if ZM_HAVE_ISAL
    if ((mode & ZM_CODEC_DECOMPRESS) &&
        zm_codec_deflate.init(&st->isal_inflater,
                              zm_codec_deflate.default_level,
                              ZM_CODEC_DECOMPRESS) < 0) {
        goto fail;
    }
#endif
    if ((mode & ZM_CODEC_DECOMPRESS) && !st->isal_inflater) {
        if (inflateInit2(&st->inflater, -MAX_WBITS) != Z_OK) {
            goto fail;
        }
        st->have_inflater = true;
    }
    *state = st;
    return 0;
fail:
    zlib_fini(st);
    return -ENOMEM;
}

static ssize_t zlib_compress(void *opaque, const struct iovec *iov, int iovcnt,
                             size_t total, void *dst, size_t cap)
{
    struct zlib_state *st = opaque;
    z_stream *zs = &st->deflater;
    int ret = Z_OK;

    if (total > UINT_MAX || cap > UINT_MAX) {
        return -EINVAL;
    }
    deflateReset(zs);
    zs->next_out = dst;
    zs->avail_out = (uInt)cap;
    for (int i = 0; i < iovcnt; i++) {
        int flush = i == iovcnt - 1 ? Z_FINISH : Z_NO_FLUSH;

        zs->next_in = iov[i].iov_base;
        zs->avail_in = (uInt)iov[i].iov_len;
        ret = deflate(zs, flush);
        if (ret == Z_STREAM_ERROR) {
            return -EIO;
        }
        /* Output full with input left over: it will not fit. */
        if (zs->avail_in != 0 || (flush == Z_FINISH && ret != Z_STREAM_END)) {
            return -ENOBUFS;
        }
    }
    return (ssize_t)zs->total_out;
}

static int zlib_decompress(void *opaque, const void *src, size_t src_len,
                           void *dst, size_t dst_len)
{
    struct zlib_state *st = opaque;
    z_stream *zs = &st->inflater;

    if (st->isal_inflater) {
        return zm_codec_deflate.decompress(st->isal_inflater, src, src_len, dst,
                                           dst_len);
    }
    if (!st->have_inflater || src_len > UINT_MAX || dst_len > UINT_MAX) {
        return -EBADMSG;
    }
    inflateReset(zs);
    zs->next_in = (Bytef *)src;
    zs->avail_in = (uInt)src_len;
    zs->next_out = dst;
    zs->avail_out = (uInt)dst_len;
    if (inflate(zs, Z_FINISH) != Z_STREAM_END || zs->avail_out != 0 ||
        zs->avail_in != 0) {
        return -EBADMSG;
    }
    return 0;
}

const struct zm_codec_ops zm_codec_zlib = {
    .name = "zlib",
    .id = ZM_CODEC_ZLIB,
    .min_level = 1,
    .max_level = 9,
    .default_level = 1,
    .init = zlib_init,
    .fini = zlib_fini,
    .compress = zlib_compress,
    .decompress = zlib_decompress,
};
