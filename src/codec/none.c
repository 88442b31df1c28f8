/*
 * none.c - the identity codec
 *
 * The engine sends "none" packets raw and never calls these; they exist so
 * that every id in the codec table behaves the same in tests and tools.
 */
#include <errno.h>
#include <string.h>

#include "codec.h"

static int none_init(void **state, int level, unsigned mode)
{
    (void)level;
    (void)mode;
    *state = NULL;
    return 0;
}

static void none_fini(void *state)
{
    (void)state;
}

static ssize_t none_compress(void *state, const struct iovec *iov, int iovcnt,
                             size_t total, void *dst, size_t cap)
{
    unsigned char *out = dst;

    (void)state;
    if (total > cap) {
        return -ENOBUFS;
    }
    for (int i = 0; i < iovcnt; i++) {
        memcpy(out, iov[i].iov_base, iov[i].iov_len);
        out += iov[i].iov_len;
    }
    return (ssize_t)total;
}

static int none_decompress(void *state, const void *src, size_t src_len,
                           void *dst, size_t dst_len)
{
    (void)state;
    if (src_len != dst_len) {
        return -EBADMSG;
    }
    memcpy(dst, src, dst_len);
    return 0;
}

const struct zm_codec_ops zm_codec_none = {
    .name = "none",
    .id = ZM_CODEC_NONE,
    .min_level = 0,
    .max_level = 0,
    .default_level = 0,
    .init = none_init,
    .fini = none_fini,
    .compress = none_compress,
    .decompress = none_decompress,
};
