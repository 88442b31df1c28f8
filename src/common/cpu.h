/*
 * cpu.h - the one probe of the CPU's vector extensions
 *
 * Every run-time dispatcher (zero.c, hash.c) asks here, so that they all
 * agree on what the CPU and the OS support, and a new extension is added
 * once.
 */
#ifndef ZM_CPU_H
#define ZM_CPU_H

#include <stdbool.h>

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

#endif /* ZM_CPU_H */
