/*
 * raw_codec.c - the codec libraries called directly, as the baseline
 *
 * The calls mirror codec-limits (../shared/reference/codec-limits) and the
 * engine's codec files: one-shot calls on a whole batch, contexts made
 * once.  "none" is memcpy, the least any transport has to do.
 */
#include "raw_codec.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zmigrate.h"

#if ZM_HAVE_ZSTD
#include <zstd.h>
#endif
#if ZM_HAVE_LZ4
#include <lz4.h>
#endif
#if ZM_HAVE_ZLIB
#include <zlib.h>
#endif
#if ZM_HAVE_ISAL
#include <isa-l.h>
#include <isa-l/igzip_lib.h>
#endif

size_t raw_codec_bound(size_t len)
{
    /* Above every library's worst case (stored blocks, literal runs). */
    return len + len / 8 + 1024;
}

/* ---- none: memcpy ---------------------------------------------------- */

static void *none_init(int level)
{
    static int dummy;

    (void)level;
    return &dummy;
}

static void none_fini(void *state)
{
    (void)state;
}

static size_t none_compress(void *state, const void *src, size_t len, void *dst,
                            size_t cap)
{
    (void)state;
    if (len > cap) {
        return 0;
    }
    memcpy(dst, src, len);
    return len;
}

static int none_decompress(void *state, const void *src, size_t src_len,
                           void *dst, size_t len)
{
    (void)state;
    if (src_len != len) {
        return -1;
    }
    memcpy(dst, src, len);
    return 0;
}

/* ---- zstd: ZSTD_compressCCtx / ZSTD_decompressDCtx, reused contexts --- */

#if ZM_HAVE_ZSTD
struct zstd_raw {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    int level;
};

static void zstd_raw_fini(void *state)
{
    struct zstd_raw *z = state;

    if (z) {
        ZSTD_freeCCtx(z->cctx);
        ZSTD_freeDCtx(z->dctx);
        free(z);
    }
}

static void *zstd_raw_init(int level)
{
    struct zstd_raw *z = calloc(1, sizeof(*z));

    if (!z) {
        return NULL;
    }
    z->level = level;
    z->cctx = ZSTD_createCCtx();
    z->dctx = ZSTD_createDCtx();
    if (!z->cctx || !z->dctx) {
        zstd_raw_fini(z);
        return NULL;
    }
    return z;
}

static size_t zstd_raw_compress(void *state, const void *src, size_t len,
                                void *dst, size_t cap)
{
    struct zstd_raw *z = state;
    size_t n = ZSTD_compressCCtx(z->cctx, dst, cap, src, len, z->level);

    return ZSTD_isError(n) ? 0 : n;
}

static int zstd_raw_decompress(void *state, const void *src, size_t src_len,
                               void *dst, size_t len)
{
    struct zstd_raw *z = state;
    size_t n = ZSTD_decompressDCtx(z->dctx, dst, len, src, src_len);

    return !ZSTD_isError(n) && n == len ? 0 : -1;
}
#endif

/* ---- lz4: LZ4_compress_fast_extState / LZ4_decompress_safe ----------- */

#if ZM_HAVE_LZ4
struct lz4_raw {
    LZ4_stream_t *stream;
    int acceleration;
};

static void lz4_raw_fini(void *state)
{
    struct lz4_raw *l = state;

    if (l) {
        LZ4_freeStream(l->stream);
        free(l);
    }
}

static void *lz4_raw_init(int level)
{
    struct lz4_raw *l = calloc(1, sizeof(*l));

    if (!l) {
        return NULL;
    }
    l->acceleration = level;
    l->stream = LZ4_createStream();
    if (!l->stream) {
        lz4_raw_fini(l);
        return NULL;
    }
    return l;
}

static size_t lz4_raw_compress(void *state, const void *src, size_t len,
                               void *dst, size_t cap)
{
    struct lz4_raw *l = state;

    if (len > LZ4_MAX_INPUT_SIZE) {
        return 0;
    }
    int n = LZ4_compress_fast_extState(l->stream, src, dst, (int)len,
                                       cap > INT_MAX ? INT_MAX : (int)cap,
                                       l->acceleration);
    return n > 0 ? (size_t)n : 0;
}

static int lz4_raw_decompress(void *state, const void *src, size_t src_len,
                              void *dst, size_t len)
{
    (void)state;
    if (src_len > INT_MAX || len > INT_MAX) {
        return -1;
    }
    int n = LZ4_decompress_safe(src, dst, (int)src_len, (int)len);
    return n >= 0 && (size_t)n == len ? 0 : -1;
}
#endif

/* ---- zlib: raw deflate (-15), deflateReset per batch ------------------ */

#if ZM_HAVE_ZLIB
struct zlib_raw {
    z_stream deflater;
    z_stream inflater;
    int have;
};

static void zlib_raw_fini(void *state)
{
    struct zlib_raw *z = state;

    if (z) {
        if (z->have & 1) {
            deflateEnd(&z->deflater);
        }
        if (z->have & 2) {
            inflateEnd(&z->inflater);
        }
        free(z);
    }
}

static void *zlib_raw_init(int level)
{
    struct zlib_raw *z = calloc(1, sizeof(*z));

    if (!z) {
        return NULL;
    }
    if (deflateInit2(&z->deflater, level, Z_DEFLATED, -MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) == Z_OK) {
        z->have |= 1;
    }
    if (inflateInit2(&z->inflater, -MAX_WBITS) == Z_OK) {
        z->have |= 2;
    }
    if (z->have != 3) {
        zlib_raw_fini(z);
        return NULL;
    }
    return z;
}

static size_t zlib_raw_compress(void *state, const void *src, size_t len,
                                void *dst, size_t cap)
{
    struct zlib_raw *z = state;
    z_stream *zs = &z->deflater;

    if (len > UINT_MAX || cap > UINT_MAX) {
        return 0;
    }
    deflateReset(zs);
    zs->next_in = (Bytef *)(uintptr_t)src;
    zs->avail_in = (uInt)len;
    zs->next_out = dst;
    zs->avail_out = (uInt)cap;
    if (deflate(zs, Z_FINISH) != Z_STREAM_END) {
        return 0;
    }
    return (size_t)zs->total_out;
}

static int zlib_raw_decompress(void *state, const void *src, size_t src_len,
                               void *dst, size_t len)
{
    struct zlib_raw *z = state;
    z_stream *zs = &z->inflater;

    if (src_len > UINT_MAX || len > UINT_MAX) {
        return -1;
    }
    inflateReset(zs);
    zs->next_in = (Bytef *)(uintptr_t)src;
    zs->avail_in = (uInt)src_len;
    zs->next_out = dst;
    zs->avail_out = (uInt)len;
    if (inflate(zs, Z_FINISH) != Z_STREAM_END || zs->avail_out != 0) {
        return -1;
    }
    return 0;
}
#endif

/* ---- ISA-L: isal_deflate_stateless, level_buf ISAL_DEF_LVLx_DEFAULT --- */

#if ZM_HAVE_ISAL
struct isal_raw {
    struct isal_zstream stream;
    struct inflate_state inflater;
    uint8_t *level_buf;
    uint32_t level_buf_size;
    int level;
};

static const uint32_t isal_level_buf_sizes[] = {
    ISAL_DEF_LVL0_DEFAULT,
    ISAL_DEF_LVL1_DEFAULT,
    ISAL_DEF_LVL2_DEFAULT,
    ISAL_DEF_LVL3_DEFAULT,
};

static void isal_raw_fini(void *state)
{
    struct isal_raw *r = state;

    if (r) {
        free(r->level_buf);
        free(r);
    }
}

static void *isal_raw_init(int level)
{
    struct isal_raw *r = calloc(1, sizeof(*r));

    if (!r || level < 0 || level > 3) {
        free(r);
        return NULL;
    }
    r->level = level;
    r->level_buf_size = isal_level_buf_sizes[level];
    if (r->level_buf_size > 0) {
        r->level_buf = malloc(r->level_buf_size);
        if (!r->level_buf) {
            isal_raw_fini(r);
            return NULL;
        }
    }
    return r;
}

static size_t isal_raw_compress(void *state, const void *src, size_t len,
                                void *dst, size_t cap)
{
    struct isal_raw *r = state;
    struct isal_zstream *zs = &r->stream;

    if (len > UINT32_MAX || cap > UINT32_MAX) {
        return 0;
    }
    isal_deflate_stateless_init(zs);
    zs->level = (uint32_t)r->level;
    zs->level_buf = r->level_buf;
    zs->level_buf_size = r->level_buf_size;
    zs->gzip_flag = IGZIP_DEFLATE;
    zs->end_of_stream = 1;
    zs->next_in = (uint8_t *)(uintptr_t)src;
    zs->avail_in = (uint32_t)len;
    zs->next_out = dst;
    zs->avail_out = (uint32_t)cap;
    if (isal_deflate_stateless(zs) != COMP_OK) {
        return 0;
    }
    return zs->total_out;
}

static int isal_raw_decompress(void *state, const void *src, size_t src_len,
                               void *dst, size_t len)
{
    struct isal_raw *r = state;
    struct inflate_state *is = &r->inflater;

    if (src_len > UINT32_MAX || len > UINT32_MAX) {
        return -1;
    }
    isal_inflate_init(is);
    is->crc_flag = ISAL_DEFLATE;
    is->next_in = (uint8_t *)(uintptr_t)src;
    is->avail_in = (uint32_t)src_len;
    is->next_out = dst;
    is->avail_out = (uint32_t)len;
    if (isal_inflate_stateless(is) != ISAL_DECOMP_OK || is->avail_out != 0) {
        return -1;
    }
    return 0;
}
#endif

static const struct raw_codec raw_codecs[ZM_CODEC_COUNT] = {
    [ZM_CODEC_NONE] = {
        .id = ZM_CODEC_NONE,
        .call = "memcpy",
        .init = none_init,
        .fini = none_fini,
        .compress = none_compress,
        .decompress = none_decompress,
    },
#if ZM_HAVE_LZ4
    [ZM_CODEC_LZ4] = {
        .id = ZM_CODEC_LZ4,
        .call = "LZ4_compress_fast_extState / LZ4_decompress_safe",
        .init = lz4_raw_init,
        .fini = lz4_raw_fini,
        .compress = lz4_raw_compress,
        .decompress = lz4_raw_decompress,
    },
#endif
#if ZM_HAVE_ZSTD
    [ZM_CODEC_ZSTD] = {
        .id = ZM_CODEC_ZSTD,
        .call = "ZSTD_compressCCtx / ZSTD_decompressDCtx, reused contexts",
        .init = zstd_raw_init,
        .fini = zstd_raw_fini,
        .compress = zstd_raw_compress,
        .decompress = zstd_raw_decompress,
    },
#endif
#if ZM_HAVE_ZLIB
    [ZM_CODEC_ZLIB] = {
        .id = ZM_CODEC_ZLIB,
        .call = "deflate raw -15 + deflateReset / inflate + inflateReset",
        .init = zlib_raw_init,
        .fini = zlib_raw_fini,
        .compress = zlib_raw_compress,
        .decompress = zlib_raw_decompress,
    },
#endif
#if ZM_HAVE_ISAL
    [ZM_CODEC_DEFLATE] = {
        .id = ZM_CODEC_DEFLATE,
        .call = "isal_deflate_stateless (level_buf ISAL_DEF_LVLx_DEFAULT) "
                "/ isal_inflate_stateless",
        .init = isal_raw_init,
        .fini = isal_raw_fini,
        .compress = isal_raw_compress,
        .decompress = isal_raw_decompress,
    },
#endif
};

const struct raw_codec *raw_codec_get(int id)
{
    if (id < 0 || id >= ZM_CODEC_COUNT || !raw_codecs[id].init) {
        return NULL;
    }
    return &raw_codecs[id];
}

void raw_codec_versions(char *buf, size_t size)
{
    size_t used = 0;
    int n;

    buf[0] = '\0';
#define ZM_BENCH_ADD(...)                                   \
    do {                                                    \
        n = snprintf(buf + used, size - used, __VA_ARGS__); \
        if (n > 0 && (size_t)n < size - used) {             \
            used += (size_t)n;                              \
        }                                                   \
    } while (0)
    ZM_BENCH_ADD("zmigrate %s", zm_version());
#if ZM_HAVE_ZSTD
    ZM_BENCH_ADD(", zstd %s", ZSTD_versionString());
#endif
#if ZM_HAVE_LZ4
    ZM_BENCH_ADD(", lz4 %s", LZ4_versionString());
#endif
#if ZM_HAVE_ZLIB
    ZM_BENCH_ADD(", zlib %s", zlibVersion());
#endif
#if ZM_HAVE_ISAL
    /* ISA-L has no run-time version call: this is the header's. */
    ZM_BENCH_ADD(", ISA-L %d.%d.%d (headers)", ISAL_MAJOR_VERSION,
                 ISAL_MINOR_VERSION, ISAL_PATCH_VERSION);
#endif
#undef ZM_BENCH_ADD
}
