/*
 * cpu.c - the CPU-feature probe
 *
 * __builtin_cpu_supports() reads cpuid and, for the wide registers,
 * whether the OS saves them (xgetbv), which a bare cpuid check would miss.
 */
#include "cpu.h"

#include <stdatomic.h>
#include <string.h>

/* Bit 31 marks "probed", so 0 means "not yet". */
#define ZM_CPU_PROBED (1u << 31)

static atomic_uint zm_cpu_cached;

static unsigned zm_cpu_probe(void)
{
    unsigned f = 0;

#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse2")) {
        f |= ZM_CPU_SSE2;
    }
    if (__builtin_cpu_supports("avx2")) {
        f |= ZM_CPU_AVX2;
    }
    if (__builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx2")) {
        f |= ZM_CPU_AVX512;
    }
#endif
    return f;
}

unsigned zm_cpu_features(void)
{
    /* Relaxed: racing first callers compute and store the same value. */
    unsigned f = atomic_load_explicit(&zm_cpu_cached, memory_order_relaxed);

    if (__builtin_expect(f == 0, 0)) {
        f = zm_cpu_probe() | ZM_CPU_PROBED;
        atomic_store_explicit(&zm_cpu_cached, f, memory_order_relaxed);
    }
    return f & ~ZM_CPU_PROBED;
}

const void *zm_cpu_pick_first(_Atomic(const void *) *cache, const void *table,
                              size_t stride, unsigned count, size_t features_at)
{
    const char *entry = table;
    const void *impl = entry + (size_t)(count - 1) * stride;

    for (unsigned i = 0; i < count; i++, entry += stride) {
        unsigned needs;
        memcpy(&needs, entry + features_at, sizeof(needs));
        if (zm_cpu_has(needs)) {
            impl = entry;
            break;
        }
    }
    atomic_store_explicit(cache, impl, memory_order_relaxed);
    return impl;
}
