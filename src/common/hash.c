/*
 * hash.c - XXH3 at the baseline vector level, and the dispatcher
 *
 * No extra build flags. Debian's libxxhash is built for baseline SSE2, so
 * instead of linking it we compile xxhash's code inline here and again in
 * hash_avx2.c and hash_avx512.c, each with its own XXH_VECTOR, and pick one
 * at run time. All give the same hashes and share one state layout, but
 * the dispatcher still picks once, so a state never changes hands.
 */
#define XXH_INLINE_ALL
#if defined(__x86_64__) || defined(__i386__)
#define ZM_HASH_X86 1
/* Not left to -march: this file must run on every x86-64 CPU. */
#define XXH_VECTOR XXH_SSE2
#define ZM_HASH_BASE_NAME "sse2"
#else
#define ZM_HASH_BASE_NAME "default"
#endif
#include <xxhash.h>

#include "hash.h"

#include <stdatomic.h>
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
 * Only when a build passes -mavx or more for the whole tree: GCC 12 may
 * then leave the upper vector halves dirty here, as in hash_avx2.c.
 */
static inline void zm_hash_leave_avx(void)
{
#ifdef __AVX__
    _mm256_zeroupper();
#endif
}

static uint64_t zm_hash64_base(const void *p, size_t len, uint64_t seed)
{
    uint64_t h = XXH3_64bits_withSeed(p, len, seed);

    zm_hash_leave_avx();
    return h;
}

static void zm_hash_reset_base(zm_hash_state *s, uint64_t seed)
{
    XXH3_state_t *st = zm_xxh3_state(s);

    /* A reset keeps the old secret if the old seed matches; forget it. */
    XXH3_INITSTATE(st);
    XXH3_64bits_reset_withSeed(st, seed);
    zm_hash_leave_avx();
}

static void zm_hash_update_base(zm_hash_state *s, const void *p, size_t len)
{
    XXH3_64bits_update(zm_xxh3_state(s), p, len);
    zm_hash_leave_avx();
}

static uint64_t zm_hash_digest_base(const zm_hash_state *s)
{
    uint64_t h;

    h = XXH3_64bits_digest((const XXH3_state_t *)(const void *)s->opaque);
    zm_hash_leave_avx();
    return h;
}

static bool zm_cpu_any(void)
{
    return true;
}

#ifdef ZM_HASH_X86
static bool zm_cpu_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}

/*
 * Everything hash_avx512.c may be built with: -mavx512f implies AVX2, and
 * the build may add -mavx512bw. Only Xeon Phi has AVX-512F without BW.
 */
static bool zm_cpu_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx2");
}
#endif

/* Best first: the dispatcher takes the first one supported. */
const struct zm_hash_impl zm_hash_impls[] = {
#ifdef ZM_HASH_X86
    { .name = "avx512",
      .hash64 = zm_hash64_avx512,
      .reset = zm_hash_reset_avx512,
      .update = zm_hash_update_avx512,
      .digest = zm_hash_digest_avx512,
      .supported = zm_cpu_avx512 },
    { .name = "avx2",
      .hash64 = zm_hash64_avx2,
      .reset = zm_hash_reset_avx2,
      .update = zm_hash_update_avx2,
      .digest = zm_hash_digest_avx2,
      .supported = zm_cpu_avx2 },
#endif
    { .name = ZM_HASH_BASE_NAME,
      .hash64 = zm_hash64_base,
      .reset = zm_hash_reset_base,
      .update = zm_hash_update_base,
      .digest = zm_hash_digest_base,
      .supported = zm_cpu_any },
};

const unsigned zm_hash_impl_count =
    sizeof(zm_hash_impls) / sizeof(zm_hash_impls[0]);

/*
 * Relaxed ordering is enough: the table is constant data, every entry is
 * correct, and first callers racing here all store the same pointer.
 */
static _Atomic(const struct zm_hash_impl *) zm_hash_chosen;

static const struct zm_hash_impl *zm_hash_pick(void)
{
    const struct zm_hash_impl *impl;
    unsigned i;

    impl = atomic_load_explicit(&zm_hash_chosen, memory_order_relaxed);
    if (impl != NULL) {
        return impl;
    }
    impl = &zm_hash_impls[zm_hash_impl_count - 1];
    for (i = 0; i < zm_hash_impl_count; i++) {
        if (zm_hash_impls[i].supported()) {
            impl = &zm_hash_impls[i];
            break;
        }
    }
    atomic_store_explicit(&zm_hash_chosen, impl, memory_order_relaxed);
    return impl;
}

static inline const struct zm_hash_impl *zm_hash_get(void)
{
    const struct zm_hash_impl *impl;

    impl = atomic_load_explicit(&zm_hash_chosen, memory_order_relaxed);
    if (__builtin_expect(impl == NULL, 0)) {
        impl = zm_hash_pick();
    }
    return impl;
}

uint64_t zm_hash64(const void *p, size_t len, uint64_t seed)
{
    return zm_hash_get()->hash64(p, len, seed);
}

void zm_hash_reset(zm_hash_state *s, uint64_t seed)
{
    zm_hash_get()->reset(s, seed);
}

void zm_hash_update(zm_hash_state *s, const void *p, size_t len)
{
    zm_hash_get()->update(s, p, len);
}

uint64_t zm_hash_digest(const zm_hash_state *s)
{
    return zm_hash_get()->digest(s);
}

const char *zm_hash_impl_name(void)
{
    return zm_hash_get()->name;
}
