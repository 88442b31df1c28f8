/*
 * hash.c - the XXH3 dispatcher
 *
 * hash_variant.c is compiled once per vector extension; this picks the
 * best the CPU supports once, on the first call, so that a streaming state
 * never changes hands.
 */
#include "hash.h"

#include <stdatomic.h>
#include <stddef.h>

#include "cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#define ZM_HASH_X86 1
#define ZM_HASH_BASE_NAME "sse2"
#else
#define ZM_HASH_BASE_NAME "default"
#endif

/* Best first: the dispatcher takes the first one supported. */
const struct zm_hash_impl zm_hash_impls[] = {
#ifdef ZM_HASH_X86
    { .name = "avx512",
      .hash64 = zm_hash64_avx512,
      .reset = zm_hash_reset_avx512,
      .update = zm_hash_update_avx512,
      .digest = zm_hash_digest_avx512,
      .cpu_features = ZM_CPU_AVX512 },
    { .name = "avx2",
      .hash64 = zm_hash64_avx2,
      .reset = zm_hash_reset_avx2,
      .update = zm_hash_update_avx2,
      .digest = zm_hash_digest_avx2,
      .cpu_features = ZM_CPU_AVX2 },
#endif
    { .name = ZM_HASH_BASE_NAME,
      .hash64 = zm_hash64_base,
      .reset = zm_hash_reset_base,
      .update = zm_hash_update_base,
      .digest = zm_hash_digest_base,
      .cpu_features = 0 },
};

const unsigned zm_hash_impl_count =
    sizeof(zm_hash_impls) / sizeof(zm_hash_impls[0]);

static _Atomic(const void *) zm_hash_chosen;

static inline const struct zm_hash_impl *zm_hash_get(void)
{
    return zm_cpu_pick(&zm_hash_chosen, zm_hash_impls, sizeof(zm_hash_impls[0]),
                       zm_hash_impl_count,
                       offsetof(struct zm_hash_impl, cpu_features));
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
