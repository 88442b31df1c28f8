/*
 * hash_avx512.c - xxhash's XXH3, compiled for AVX-512
 *
 * Build flags: -mavx512f, optionally with -mavx512bw; the whole file may
 * use them. hash.c calls it only when __builtin_cpu_supports() reports
 * avx512f, avx512bw and avx2; building with a wider flag needs a matching
 * check there.
 */
#ifndef __AVX512F__
#error "hash_avx512.c must be compiled with -mavx512f"
#endif

#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX512
#include <xxhash.h>

#include "hash.h"

#include <immintrin.h>

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
 * XXH3_mergeAccs), and on Zen 5 that made the SSE2 code hash.c or the
 * caller runs next about three times slower.
 */
static inline void zm_hash_leave_avx(void)
{
    _mm256_zeroupper();
}

uint64_t zm_hash64_avx512(const void *p, size_t len, uint64_t seed)
{
    uint64_t h = XXH3_64bits_withSeed(p, len, seed);

    zm_hash_leave_avx();
    return h;
}

void zm_hash_reset_avx512(zm_hash_state *s, uint64_t seed)
{
    XXH3_state_t *st = zm_xxh3_state(s);

    /* A reset keeps the old secret if the old seed matches; forget it. */
    XXH3_INITSTATE(st);
    XXH3_64bits_reset_withSeed(st, seed);
    zm_hash_leave_avx();
}

void zm_hash_update_avx512(zm_hash_state *s, const void *p, size_t len)
{
    XXH3_64bits_update(zm_xxh3_state(s), p, len);
    zm_hash_leave_avx();
}

uint64_t zm_hash_digest_avx512(const zm_hash_state *s)
{
    uint64_t h;

    h = XXH3_64bits_digest((const XXH3_state_t *)(const void *)s->opaque);
    zm_hash_leave_avx();
    return h;
}
