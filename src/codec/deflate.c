/*
 * deflate.c - raw deflate through ISA-L's igzip
 *
 * Payload: one raw deflate stream, the format zlib's inflate reads with
 * windowBits -15.  A contiguous input goes through the stateless one-shot
 * call, the fastest path; a scattered one streams through a stateful
 * stream so that no staging copy is needed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include <isa-l/igzip_lib.h>

#include "codec.h"

struct deflate_state {
    struct isal_zstream stream;
    struct inflate_state inflater;
    uint8_t *level_buf;
    uint32_t level_buf_size;
    int level;
    bool can_inflate;
};

/* ISA-L's recommended scratch size for each level (0 needs none). */
static const uint32_t level_buf_sizes[] = {
    ISAL_DEF_LVL0_DEFAULT,
    ISAL_DEF_LVL1_DEFAULT,
    ISAL_DEF_LVL2_DEFAULT,
    ISAL_DEF_LVL3_DEFAULT,
};

static void deflate_fini(void *opaque)
{
    struct deflate_state *st = opaque;

    if (st) {
        free(st->level_buf);
        free(st);
    }
}

static int deflate_init(void **state, int level, unsigned mode)
{
    struct deflate_state *st = calloc(1, sizeof(*st));

    if (!st) {
        return -ENOMEM;
    }
    st->level = level;
    if ((mode & ZM_CODEC_COMPRESS) && level_buf_sizes[level] > 0) {
        st->level_buf_size = level_buf_sizes[level];
        st->level_buf = malloc(st->level_buf_size);
        if (!st->level_buf) {
            deflate_fini(st);
            return -ENOMEM;
        }
    }
    st->can_inflate = mode & ZM_CODEC_DECOMPRESS;
    *state = st;
    return 0;
}

static void deflate_setup(struct deflate_state *st, void *dst, size_t cap)
{
    struct isal_zstream *zs = &st->stream;

    zs->level = (uint32_t)st->level;
    zs->level_buf = st->level_buf;
    zs->level_buf_size = st->level_buf_size;
    zs->gzip_flag = IGZIP_DEFLATE;
    zs->next_out = dst;
    zs->avail_out = (uint32_t)cap;
}

static ssize_t deflate_compress(void *opaque, const struct iovec *iov,
                                int iovcnt, size_t total, void *dst, size_t cap)
{
    struct deflate_state *st = opaque;
    struct isal_zstream *zs = &st->stream;

    if (total > UINT32_MAX) {
        return -EINVAL;
    }
    if (cap > UINT32_MAX) {
        cap = UINT32_MAX;
    }
    if (iovcnt == 1) {
        isal_deflate_stateless_init(zs);
        deflate_setup(st, dst, cap);
        zs->next_in = iov[0].iov_base;
        zs->avail_in = (uint32_t)iov[0].iov_len;
        zs->end_of_stream = 1;
        int ret = isal_deflate_stateless(zs);
        if (ret == STATELESS_OVERFLOW) {
            return -ENOBUFS;
        }
        return ret == COMP_OK ? (ssize_t)zs->total_out : -EIO;
    }
    isal_deflate_init(zs);
    deflate_setup(st, dst, cap);
    zs->flush = NO_FLUSH;
    for (int i = 0; i < iovcnt; i++) {
        zs->next_in = iov[i].iov_base;
        zs->avail_in = (uint32_t)iov[i].iov_len;
        zs->end_of_stream = i == iovcnt - 1;
        if (isal_deflate(zs) != COMP_OK) {
            return -EIO;
        }
        /* A full output buffer leaves input behind or the stream open. */
        if (zs->avail_in != 0) {
            return -ENOBUFS;
        }
    }
    if (zs->internal_state.state != ZSTATE_END) {
        return -ENOBUFS;
    }
    return (ssize_t)zs->total_out;
}

static int deflate_decompress(void *opaque, const void *src, size_t src_len,
                              void *dst, size_t dst_len)
{
    struct deflate_state *st = opaque;
    struct inflate_state *is = &st->inflater;

    if (!st->can_inflate || src_len > UINT32_MAX || dst_len > UINT32_MAX) {
        return -EBADMSG;
    }
    isal_inflate_init(is);
    is->crc_flag = ISAL_DEFLATE;
    is->next_in = (uint8_t *)src;
    is->avail_in = (uint32_t)src_len;
    is->next_out = dst;
    is->avail_out = (uint32_t)dst_len;
    /* ISA-L hands back the bytes after the stream: there must be none. */
    if (isal_inflate_stateless(is) != ISAL_DECOMP_OK || is->avail_out != 0 ||
        is->avail_in != 0) {
        return -EBADMSG;
    }
    return 0;
}

const struct zm_codec_ops zm_codec_deflate = {
    .name = "deflate",
    .id = ZM_CODEC_DEFLATE,
    .min_level = 0,
    .max_level = 3,
    .default_level = 1,
    .init = deflate_init,
    .fini = deflate_fini,
    .compress = deflate_compress,
    .decompress = deflate_decompress,
};
