/*
 * workers.h - a set of worker threads and the CPU they spend
 *
 * What the compression pool (pool.c) and the decode pool (decode_pool.c)
 * share: start n threads, each told its index; let each note its CPU time
 * after a job; sum it; join them.
 */
#ifndef ZM_WORKERS_H
#define ZM_WORKERS_H

#include <pthread.h>
#include <stdatomic.h>

struct zm_workers {
    pthread_t *threads;
    _Atomic double *cpu; /* each worker's CPU seconds after its last job */
    unsigned n;          /* started */
};

/*
 * Starts n threads running fn(ctx, index).  On failure those started keep
 * running: the caller makes them quit, then calls zm_workers_join().
 * 0, or -ENOMEM / -EAGAIN with a message.
 */
int zm_workers_start(struct zm_workers *w, unsigned n,
                     void (*fn)(void *ctx, unsigned index), void *ctx);

/* For worker index, after a job: its CPU time so far. */
void zm_workers_note_cpu(struct zm_workers *w, unsigned index);

/* The workers' CPU seconds so far. */
double zm_workers_cpu(struct zm_workers *w);

/* Joins the started threads (told to quit already) and frees the set. */
void zm_workers_join(struct zm_workers *w);

#endif /* ZM_WORKERS_H */
