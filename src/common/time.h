/*
 * time.h - clocks as seconds in a double, and back to deadlines
 */
#ifndef ZM_TIME_H
#define ZM_TIME_H

#include <time.h>

/* CLOCK_MONOTONIC, in seconds. */
static inline double zm_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The calling thread's CPU time, in seconds. */
static inline double zm_thread_cpu(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A zm_now() time as an absolute deadline for a CLOCK_MONOTONIC wait. */
static inline struct timespec zm_deadline(double at)
{
    struct timespec ts = { (time_t)at,
                           (long)((at - (double)(time_t)at) * 1e9) };

    return ts;
}

#endif /* ZM_TIME_H */
