/*
 * ratelimit.h - the shared limit on bytes per second (max-bandwidth)
 *
 * One bucket for every channel of a migration: each write reserves its
 * bytes in turn and sleeps until the link, at the limit, would have
 * carried what went before.  A stop wakes every sleeper, so a failure or a
 * cancel is not held up by a slow limit (which can mean seconds).
 */
#ifndef ZM_RATELIMIT_H
#define ZM_RATELIMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct zm_ratelimit {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    uint64_t rate;       /* bytes/s; 0: unlimited */
    double next;         /* when the link is free of what was reserved */
    bool stopped;
};

void zm_ratelimit_init(struct zm_ratelimit *rl, uint64_t bytes_per_second);
void zm_ratelimit_destroy(struct zm_ratelimit *rl);

/* Forgets earlier reservations and a stop: for a new migration. */
void zm_ratelimit_reset(struct zm_ratelimit *rl);

/*
 * Reserves bytes and waits until they may go on the wire; false if the
 * bucket was stopped (before or during the wait).  Without a limit it
 * returns true at once, stopped or not: no lock on the hot path, and the
 * caller's writes fail on their own after a stop.
 */
bool zm_ratelimit_wait(struct zm_ratelimit *rl, size_t bytes);

/* Ends every wait, now and until the next reset. */
void zm_ratelimit_stop(struct zm_ratelimit *rl);

#endif /* ZM_RATELIMIT_H */
