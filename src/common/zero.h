/*
 * zero.h - zero-page detection with run-time CPU dispatch
 *
 * Most of a guest's idle memory is zero pages; finding them cheaply lets us
 * send a one-byte marker instead of compressing 4 KiB.
 */
#ifndef ZM_ZERO_H
#define ZM_ZERO_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Returns true if all len bytes at p are zero (len 0 gives true; p may then
 * be NULL). Any alignment and length; never reads outside [p, p + len).
 * Thread safe: the implementation is picked once, on the first call.
 */
bool zm_is_zero(const void *p, size_t len);

/* Name of the implementation zm_is_zero() uses: "avx512", "avx2", ... */
const char *zm_zero_impl_name(void);

/*
 * Every implementation built in, best first, for tests and benchmarks
 * only. Call is_zero only when zm_cpu_has(cpu_features) (cpu.h).
 */
struct zm_zero_impl {
    const char *name;
    bool (*is_zero)(const void *p, size_t len);
    unsigned cpu_features; /* the ZM_CPU_* bits it needs */
};

extern const struct zm_zero_impl zm_zero_impls[];
extern const unsigned zm_zero_impl_count;

#endif /* ZM_ZERO_H */
