/*
 * cpu.h - the one probe of the CPU's vector extensions
 *
 * Every run-time dispatcher (zero.c, hash.c) asks here, so that they all
 * agree on what the CPU and the OS support, and a new extension is added
 * once.
 */
#ifndef ZM_CPU_H
#define ZM_CPU_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

enum zm_cpu_feature {
    ZM_CPU_SSE2 = 1u << 0,
    ZM_CPU_AVX2 = 1u << 1,
    /* AVX-512 F and BW (and so AVX2): all the code built with -mavx512f
     * -mavx512bw may use.  Only Xeon Phi has F without BW. */
    ZM_CPU_AVX512 = 1u << 2,
};

/* The ZM_CPU_* bits this CPU and OS support; probed once. */
unsigned zm_cpu_features(void);

/* Whether every feature in mask is supported (true for 0). */
static inline bool zm_cpu_has(unsigned mask)
{
    return (zm_cpu_features() & mask) == mask;
}

/*
 * Run-time dispatch over a table of count implementations, best first,
 * stride bytes apart, each with its ZM_CPU_* needs as an unsigned at
 * offset features_at: the first this CPU supports (the last if none),
 * picked on the first call and cached in *cache.  Relaxed ordering is
 * enough: the table is constant data, every entry is correct, and first
 * callers racing here all store the same pointer.
 */
const void *zm_cpu_pick_first(_Atomic(const void *) *cache, const void *table,
                              size_t stride, unsigned count,
                              size_t features_at);

static inline const void *zm_cpu_pick(_Atomic(const void *) *cache,
                                      const void *table, size_t stride,
                                      unsigned count, size_t features_at)
{
    const void *impl = atomic_load_explicit(cache, memory_order_relaxed);

    if (__builtin_expect(impl == NULL, 0)) {
        impl = zm_cpu_pick_first(cache, table, stride, count, features_at);
    }
    return impl;
}

#endif /* ZM_CPU_H */
