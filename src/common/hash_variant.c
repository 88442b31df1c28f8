/*
 * hash_variant.c - xxhash's XXH3 for one vector extension
 *
 * Debian's libxxhash is built for baseline SSE2, so instead of linking it
 * this file compiles xxhash's code inline, once per extension (meson.build):
 * ZM_HASH_AVX512 with -mavx512f -mavx512bw, ZM_HASH_AVX2 with -mavx2, and
 * neither for the baseline.  hash.c picks one at run time.  All give the
 * same hashes and share one state layout.
 */
#define XXH_INLINE_ALL
#if defined(ZM_HASH_AVX512)
#ifndef __AVX512F__
#error "ZM_HASH_AVX512 needs -mavx512f"
#endif
#define XXH_VECTOR XXH_AVX512
#define ZM_HASH_FN(name) name##_avx512
#elif defined(ZM_HASH_AVX2)
#ifndef __AVX2__
#error "ZM_HASH_AVX2 needs -mavx2"
#endif
#define XXH_VECTOR XXH_AVX2
#define ZM_HASH_FN(name) name##_avx2
#else
#if defined(__x86_64__) || defined(__i386__)
/* Not left to -march: the baseline must run on every x86-64 CPU. */
#define XXH_VECTOR XXH_SSE2
#endif
#define ZM_HASH_FN(name) name##_base
#endif
#include <xxhash.h>

#include "hash.h"

#ifdef __AVX__
#include <immintrin.h>
#endif

_Static_assert(sizeof(XXH3_state_t) <= sizeof(zm_hash_state),
               "ZM_HASH_STATE_SIZE is too small for this xxhash");
_Static_assert(_Alignof(XXH3_state_t) <= _Alignof(zm_hash_state),
               "zm_hash_state is less aligned than XXH3_state_t");

static XXH3_state_t *zm_xxh3_state(zm_hash_state *s)
{
    return (XXH3_state_t *)(void *)s->opaque;
}

/*
 * Every function here ends with this. GCC 12 may return with the upper
 * vector halves still dirty (it skips vzeroupper around xxhash's call to
 * XXH3_mergeAccs), and on Zen 5 that made the SSE2 code the caller runs
 * next about three times slower.
 */
static inline void zm_hash_leave_avx(void)
{
#ifdef __AVX__
    _mm256_zeroupper();
#endif
}

uint64_t ZM_HASH_FN(zm_hash64)(const void *p, size_t len, uint64_t seed)
{
    uint64_t h = XXH3_64bits_withSeed(p, len, seed);

    zm_hash_leave_avx();
    return h;
}

void ZM_HASH_FN(zm_hash_reset)(zm_hash_state *s, uint64_t seed)
{
    XXH3_state_t *st = zm_xxh3_state(s);

    /* A reset keeps the old secret if the old seed matches; forget it. */
    XXH3_INITSTATE(st);
    XXH3_64bits_reset_withSeed(st, seed);
    zm_hash_leave_avx();
}

void ZM_HASH_FN(zm_hash_update)(zm_hash_state *s, const void *p, size_t len)
{
    XXH3_64bits_update(zm_xxh3_state(s), p, len);
    zm_hash_leave_avx();
}

uint64_t ZM_HASH_FN(zm_hash_digest)(const zm_hash_state *s)
{
    uint64_t h;

    h = XXH3_64bits_digest((const XXH3_state_t *)(const void *)s->opaque);
    zm_hash_leave_avx();
    return h;
}
