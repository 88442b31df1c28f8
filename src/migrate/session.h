/*
 * session.h - what the source and the destination share
 */
#ifndef ZM_SESSION_H
#define ZM_SESSION_H

#include <stdint.h>
#include <time.h>

#include "channel/channel.h"
#include "zmigrate.h"

/* SYNC body: u32 round, u32 flags. */
#define ZM_SYNC_SIZE 8u
#define ZM_SYNC_FINAL 1u /* the last round: the channel ends after it */

/* END body: u64 pages sent (normal + zero), u64 rounds. */
#define ZM_END_SIZE 16u

static inline double zm_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline double zm_thread_cpu(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int zm_params_page_shift(uint32_t page_size)
{
    return __builtin_ctz(page_size);
}

/* VERIFY: one xxh3-64 (u64) per page of every region, in layout order;
 * RAM beyond this many pages is not verified. */
#define ZM_VERIFY_MAX_PAGES (16u << 20)

/*
 * Hashes up to max pages of the n regions (base[i], size[i]) in order into
 * out; returns how many.
 */
uint64_t zm_hash_pages(unsigned char *const *base, const size_t *size,
                       unsigned n, uint32_t page_size, uint64_t *out,
                       uint64_t max);

/*
 * The figures derived at the end of a run, on either side: totals, rates,
 * the compression ratio, and the final status from ret.
 */
void zm_stats_finish(struct zm_stats *st, double seconds, int ret,
                     bool cancelled);

/* Checks a filled-in params struct; 0 or -EINVAL with a message. */
int zm_params_check(const struct zm_params *p);

/* Copies a caller's params (maybe an older, smaller struct) over defaults. */
void zm_params_copy(struct zm_params *dst, const struct zm_params *src);

#endif /* ZM_SESSION_H */
