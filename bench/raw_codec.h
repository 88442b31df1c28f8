/*
 * raw_codec.h - the codec libraries called directly, as the baseline
 *
 * Each entry makes the same library calls as the matching file in src/codec
 * on one contiguous buffer, with a context allocated once and reused, so that
 * the benchmark can tell the engine's own cost from the codec's.
 */
#ifndef ZM_BENCH_RAW_CODEC_H
#define ZM_BENCH_RAW_CODEC_H

#include <stddef.h>

struct raw_codec {
    int id;           /* enum zm_codec */
    const char *call; /* the library calls made, for the report */

    /* Returns a context for level, or NULL when out of memory. */
    void *(*init)(int level);
    void (*fini)(void *state);

    /* Returns the compressed size, or 0 when the call failed. */
    size_t (*compress)(void *state, const void *src, size_t len, void *dst,
                       size_t cap);

    /* Returns 0 when dst holds exactly len decompressed bytes, else -1. */
    int (*decompress)(void *state, const void *src, size_t src_len, void *dst,
                      size_t len);
};

/* The baseline for codec id, or NULL when this build lacks the library. */
const struct raw_codec *raw_codec_get(int id);

/* Output room that every raw codec is guaranteed to fit len bytes into. */
size_t raw_codec_bound(size_t len);

/* "zstd 1.5.4, lz4 1.9.4, ...": the libraries this build links. */
void raw_codec_versions(char *buf, size_t size);

#endif /* ZM_BENCH_RAW_CODEC_H */
