/*
 * decode_pool.h - the receiver's decompression workers
 *
 * The twin of the cpu offload pool on the destination (QEMU's
 * decompress-threads): data channels only read packets off the wire, and
 * a pool of workers, each with its own decoder over the same regions,
 * decodes them into place.  A channel waits for all of its packets before
 * it reaches a round's SYNC, so the barrier still separates rounds; within
 * a round no page is in two packets, so workers never write the same page.
 */
#ifndef ZM_DECODE_POOL_H
#define ZM_DECODE_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "zmigrate.h"

/* One packet to decode, in a buffer of the channel's. */
struct zm_decode_job {
    unsigned char *packet;
    size_t len;
    /* Set by the worker. */
    int result;      /* zm_decode()'s */
    char error[160]; /* its zm_errmsg() when it failed */
    struct zm_packet_info info;
    struct zm_decode_job *next;
    struct zm_decode_queue *queue;
};

struct zm_decode_pool;
struct zm_decode_queue;

/* threads workers, each with a decoder made from opts. */
int zm_decode_pool_new(unsigned threads, const struct zm_decoder_options *opts,
                       struct zm_decode_pool **out);
void zm_decode_pool_free(struct zm_decode_pool *pool);

/* The workers' CPU seconds so far. */
double zm_decode_pool_cpu_seconds(struct zm_decode_pool *pool);

/*
 * A channel's queue, with jobs buffers of cap bytes (a whole packet): its
 * jobs come back to it alone.
 */
int zm_decode_queue_new(struct zm_decode_pool *pool, unsigned jobs, size_t cap,
                        struct zm_decode_queue **out);

/* Waits for the queue's jobs, then frees it and its buffers. */
void zm_decode_queue_free(struct zm_decode_queue *q);

/* What a channel does with each job that comes back: 0 or -errno. */
typedef int (*zm_decode_done_fn)(void *arg, struct zm_decode_job *job);

/*
 * A free job buffer for the next packet, once jobs that came back went
 * through done (waiting for one when every buffer is out).  NULL with
 * *err set when done() failed for one.
 */
struct zm_decode_job *zm_decode_next(struct zm_decode_queue *q,
                                     zm_decode_done_fn done, void *arg,
                                     int *err);

/* Decodes job (its packet, len bytes) on a worker. */
void zm_decode_submit(struct zm_decode_queue *q, struct zm_decode_job *job);

/* Waits for every job of the queue and puts each through done; returns
 * the first error. */
int zm_decode_drain(struct zm_decode_queue *q, zm_decode_done_fn done,
                    void *arg);

#endif /* ZM_DECODE_POOL_H */
