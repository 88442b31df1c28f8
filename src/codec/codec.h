/*
 * codec.h - the internal interface every codec implements
 *
 * One file per codec defines a const struct zm_codec_ops; codec.c holds the
 * only list of them.  A codec context (the void * state) belongs to one
 * thread at a time.
 */
#ifndef ZM_CODEC_H
#define ZM_CODEC_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "zmigrate.h"

#define ZM_CODEC_COMPRESS (1u << 0)
#define ZM_CODEC_DECOMPRESS (1u << 1)

struct zm_codec_ops {
    const char *name;
    int id; /* enum zm_codec, pinned on the wire */
    int min_level;
    int max_level;
    int default_level;

    /*
     * Allocates a context for the directions in mode (ZM_CODEC_COMPRESS,
     * ZM_CODEC_DECOMPRESS or both), compressing at level (range-checked
     * by the caller).  Returns 0 and sets *state, or -ENOMEM.
     */
    int (*init)(void **state, int level, unsigned mode);
    /* Releases a context from init; accepts NULL. */
    void (*fini)(void *state);

    /*
     * Compresses the concatenation of iov[0..iovcnt) (total bytes, > 0) into
     * dst.  Returns the compressed size, or -ENOBUFS when the result does
     * not fit in cap bytes: the caller then stores the data raw, so codecs
     * should give up early rather than finish a useless stream.
     */
    ssize_t (*compress)(void *state, const struct iovec *iov, int iovcnt,
                        size_t total, void *dst, size_t cap);

    /*
     * Decompresses src (untrusted) into dst, which must come out exactly
     * dst_len bytes long.  Returns 0 or -EBADMSG; never writes outside dst.
     */
    int (*decompress)(void *state, const void *src, size_t src_len, void *dst,
                      size_t dst_len);
};

/* The codec with this id if this build has it, else NULL. */
const struct zm_codec_ops *zm_codec_get(int id);

/* Checks level against the codec's range; sets zm_errmsg() when not. */
int zm_codec_check_level(const struct zm_codec_ops *ops, int level);

#if ZM_HAVE_LZ4
extern const struct zm_codec_ops zm_codec_lz4;
#endif
#if ZM_HAVE_ZSTD
extern const struct zm_codec_ops zm_codec_zstd;
#endif
#if ZM_HAVE_ZLIB
extern const struct zm_codec_ops zm_codec_zlib;
#endif
#if ZM_HAVE_ISAL
extern const struct zm_codec_ops zm_codec_deflate;
#endif
extern const struct zm_codec_ops zm_codec_none;

#endif /* ZM_CODEC_H */
