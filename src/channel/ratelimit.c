/*
 * ratelimit.c - the shared limit on bytes per second
 */
#include "ratelimit.h"

#include <errno.h>

#include "common/time.h"

void zm_ratelimit_init(struct zm_ratelimit *rl, uint64_t bytes_per_second)
{
    pthread_condattr_t attr;

    pthread_mutex_init(&rl->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&rl->cond, &attr);
    pthread_condattr_destroy(&attr);
    rl->rate = bytes_per_second;
    rl->next = 0;
    rl->stopped = false;
}

void zm_ratelimit_destroy(struct zm_ratelimit *rl)
{
    pthread_mutex_destroy(&rl->lock);
    pthread_cond_destroy(&rl->cond);
}

void zm_ratelimit_reset(struct zm_ratelimit *rl)
{
    pthread_mutex_lock(&rl->lock);
    rl->next = 0;
    rl->stopped = false;
    pthread_mutex_unlock(&rl->lock);
}

bool zm_ratelimit_wait(struct zm_ratelimit *rl, size_t bytes)
{
    if (!rl->rate) {
        return true;
    }
    pthread_mutex_lock(&rl->lock);
    double now = zm_now();
    if (rl->next < now) {
        rl->next = now;
    }
    bool wait = rl->next > now;
    struct timespec until = zm_deadline(rl->next);
    rl->next += (double)bytes / (double)rl->rate;
    while (wait && !rl->stopped &&
           pthread_cond_timedwait(&rl->cond, &rl->lock, &until) != ETIMEDOUT) {
    }
    bool go_on = !rl->stopped;
    pthread_mutex_unlock(&rl->lock);
    return go_on;
}

void zm_ratelimit_stop(struct zm_ratelimit *rl)
{
    pthread_mutex_lock(&rl->lock);
    rl->stopped = true;
    pthread_cond_broadcast(&rl->cond);
    pthread_mutex_unlock(&rl->lock);
}
