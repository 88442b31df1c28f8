/*
 * pool.h - compression workers behind the offload interface
 *
 * The engine of the "cpu" and "emulated" backends: M worker threads run
 * zm_encode() for the jobs that N queues (one per submitting channel)
 * hand in, so channels only move bytes and workers only compress.  The
 * emulated backend adds what a device does to a caller: a latency, a queue
 * depth past which it is busy, busy periods, and failures on purpose.
 */
#ifndef ZM_POOL_H
#define ZM_POOL_H

#include <stdint.h>

#include "zmigrate.h"

struct zm_pool_config {
    unsigned threads; /* workers */
    unsigned depth;   /* jobs in flight over all queues before busy */
    /* Emulation; all 0 for the cpu backend. */
    uint64_t latency_ns;    /* a job completes no sooner after its submit */
    uint64_t busy_every_ns; /* every this long, busy ... */
    uint64_t busy_for_ns;   /* ... for this long */
    unsigned fail_every;    /* the Nth, 2Nth, ... job fails (-EIO) */
    unsigned hang_every;    /* the Nth, 2Nth, ... job never completes */
    unsigned lose_after;    /* after this many jobs the device is gone */
    uint32_t min_pages;     /* reported in caps */
    unsigned host_percent;  /* of the workers' CPU that counts as the
                             * host's (100 for the cpu backend) */
};

/*
 * The backend functions, with zm_offload_ops' signatures, so that each
 * backend is an open() that reads its arguments and a table of these.
 */
int zm_pool_open(const struct zm_pool_config *cfg, uint32_t page_size,
                 void **dev);
void zm_pool_close(void *dev);
int zm_pool_caps(void *dev, struct zm_offload_caps *caps);
int zm_pool_queue_new(void *dev, void **queue);
void zm_pool_queue_free(void *queue);
int zm_pool_submit(void *queue, struct zm_offload_job *job);
int zm_pool_poll(void *queue, struct zm_offload_job **done, unsigned max,
                 int timeout_ms);
double zm_pool_cpu_seconds(void *dev);

/*
 * Parses "key=value,..." into cfg: threads, depth, latency, busy-every,
 * busy-for, fail-every, hang-every, lose-after, min-pages (times take
 * ns/us/ms/s).  Keys not in allowed (a comma-separated list) are refused:
 * -EINVAL with a message naming them.
 */
int zm_pool_parse(const char *args, const char *allowed,
                  struct zm_pool_config *cfg);

#endif /* ZM_POOL_H */
