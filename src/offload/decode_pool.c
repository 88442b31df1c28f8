/*
 * decode_pool.c - the receiver's decompression workers
 */
#include "decode_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/error.h"
#include "workers.h"

struct zm_decode_queue {
    struct zm_decode_pool *pool;
    struct zm_decode_job *done; /* finished, under the pool's lock */
    struct zm_decode_job *free; /* this channel's alone */
    struct zm_decode_job *jobs;
    unsigned njobs;
    unsigned pending; /* submitted, not yet handed back */
    pthread_cond_t cond;
};

struct zm_decode_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct zm_decode_job *todo_head, *todo_tail;
    bool quit;
    zm_decoder **decoders;
    unsigned ndecoders;
    struct zm_workers workers;
};

static void worker(void *ctx, unsigned index)
{
    struct zm_decode_pool *pool = ctx;
    zm_decoder *dec = pool->decoders[index];

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->quit && !pool->todo_head) {
            pthread_cond_wait(&pool->work, &pool->lock);
        }
        if (pool->quit) {
            break;
        }
        struct zm_decode_job *job = pool->todo_head;
        pool->todo_head = job->next;
        if (!pool->todo_head) {
            pool->todo_tail = NULL;
        }
        pthread_mutex_unlock(&pool->lock);

        job->info = (struct zm_packet_info){ .sizeof_info = sizeof(job->info) };
        job->result = zm_decode(dec, job->packet, job->len, &job->info);
        if (job->result < 0) {
            snprintf(job->error, sizeof(job->error), "%s", zm_errmsg());
        }
        zm_workers_note_cpu(&pool->workers, index);

        pthread_mutex_lock(&pool->lock);
        struct zm_decode_queue *q = job->queue;
        job->next = q->done;
        q->done = job;
        pthread_cond_broadcast(&q->cond);
    }
    pthread_mutex_unlock(&pool->lock);
}

int zm_decode_pool_new(unsigned threads, const struct zm_decoder_options *opts,
                       struct zm_decode_pool **out)
{
    struct zm_decode_pool *pool = calloc(1, sizeof(*pool));
    int ret = 0;

    if (!pool) {
        return zm_error(-ENOMEM, "decode pool: out of memory");
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    pool->decoders = calloc(threads, sizeof(*pool->decoders));
    if (!pool->decoders) {
        zm_decode_pool_free(pool);
        return zm_error(-ENOMEM, "decode pool: out of memory");
    }
    for (unsigned i = 0; i < threads && ret == 0; i++) {
        ret = zm_decoder_new(opts, &pool->decoders[i]);
        pool->ndecoders += ret == 0;
    }
    if (ret == 0) {
        ret = zm_workers_start(&pool->workers, threads, worker, pool);
    }
    if (ret < 0) {
        zm_decode_pool_free(pool);
        return ret;
    }
    *out = pool;
    return 0;
}

void zm_decode_pool_free(struct zm_decode_pool *pool)
{
    if (!pool) {
        return;
    }
    pthread_mutex_lock(&pool->lock);
    pool->quit = true;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    zm_workers_join(&pool->workers);
    for (unsigned i = 0; i < pool->ndecoders; i++) {
        zm_decoder_free(pool->decoders[i]);
    }
    free(pool->decoders);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->work);
    free(pool);
}

double zm_decode_pool_cpu_seconds(struct zm_decode_pool *pool)
{
    return zm_workers_cpu(&pool->workers);
}

int zm_decode_queue_new(struct zm_decode_pool *pool, unsigned jobs, size_t cap,
                        struct zm_decode_queue **out)
{
    struct zm_decode_queue *q = calloc(1, sizeof(*q));

    if (q) {
        q->jobs = calloc(jobs, sizeof(*q->jobs));
    }
    for (unsigned i = 0; q && q->jobs && i < jobs; i++, q->njobs++) {
        q->jobs[i].packet = malloc(cap);
        if (!q->jobs[i].packet) {
            break;
        }
        q->jobs[i].next = q->free;
        q->free = &q->jobs[i];
    }
    if (!q || q->njobs < jobs) {
        for (unsigned i = 0; q && i < q->njobs; i++) {
            free(q->jobs[i].packet);
        }
        if (q) {
            free(q->jobs);
        }
        free(q);
        return zm_error(-ENOMEM, "decode pool: out of memory");
    }
    q->pool = pool;
    pthread_cond_init(&q->cond, NULL);
    *out = q;
    return 0;
}

/* Hands back finished jobs (at least one, or all when all). */
static struct zm_decode_job *wait_jobs(struct zm_decode_queue *q, bool all)
{
    struct zm_decode_pool *pool = q->pool;
    struct zm_decode_job *list = NULL;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (q->done) {
            struct zm_decode_job *job = q->done;
            q->done = job->next;
            job->next = list;
            list = job;
            q->pending--;
        }
        if (q->pending == 0 || (list && !all)) {
            break;
        }
        pthread_cond_wait(&q->cond, &pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return list;
}

/* Puts the jobs of list through done, back on the free list; the first
 * error. */
static int finish_jobs(struct zm_decode_queue *q, struct zm_decode_job *list,
                       zm_decode_done_fn done, void *arg)
{
    int ret = 0;

    while (list) {
        struct zm_decode_job *job = list;
        list = job->next;
        int r = done ? done(arg, job) : 0;
        ret = ret < 0 ? ret : r;
        job->next = q->free;
        q->free = job;
    }
    return ret;
}

void zm_decode_queue_free(struct zm_decode_queue *q)
{
    if (!q) {
        return;
    }
    finish_jobs(q, wait_jobs(q, true), NULL, NULL);
    for (unsigned i = 0; i < q->njobs; i++) {
        free(q->jobs[i].packet);
    }
    free(q->jobs);
    pthread_cond_destroy(&q->cond);
    free(q);
}

struct zm_decode_job *zm_decode_next(struct zm_decode_queue *q,
                                     zm_decode_done_fn done, void *arg,
                                     int *err)
{
    /* Collect what is back without waiting, then wait if none is free. */
    pthread_mutex_lock(&q->pool->lock);
    bool back = q->done != NULL;
    pthread_mutex_unlock(&q->pool->lock);
    if (back || !q->free) {
        int ret = finish_jobs(q, wait_jobs(q, false), done, arg);
        if (ret < 0) {
            *err = ret;
            return NULL;
        }
    }
    struct zm_decode_job *job = q->free;
    q->free = job->next;
    return job;
}

int zm_decode_drain(struct zm_decode_queue *q, zm_decode_done_fn done,
                    void *arg)
{
    return finish_jobs(q, wait_jobs(q, true), done, arg);
}

void zm_decode_submit(struct zm_decode_queue *q, struct zm_decode_job *job)
{
    struct zm_decode_pool *pool = q->pool;

    job->queue = q;
    job->next = NULL;
    job->error[0] = '\0';
    pthread_mutex_lock(&pool->lock);
    if (pool->todo_tail) {
        pool->todo_tail->next = job;
    } else {
        pool->todo_head = job;
    }
    pool->todo_tail = job;
    q->pending++;
    pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->lock);
}
