/*
 * workers.c - a set of worker threads and the CPU they spend
 */
#include "workers.h"

#include <errno.h>
#include <stdlib.h>

#include "common/error.h"
#include "common/time.h"

struct start {
    void (*fn)(void *ctx, unsigned index);
    void *ctx;
    unsigned index;
};

static void *trampoline(void *arg)
{
    struct start s = *(struct start *)arg;

    free(arg);
    s.fn(s.ctx, s.index);
    return NULL;
}

int zm_workers_start(struct zm_workers *w, unsigned n,
                     void (*fn)(void *ctx, unsigned index), void *ctx)
{
    w->n = 0;
    w->threads = calloc(n, sizeof(*w->threads));
    w->cpu = calloc(n, sizeof(*w->cpu));
    if (!w->threads || !w->cpu) {
        return zm_error(-ENOMEM, "workers: out of memory");
    }
    for (unsigned i = 0; i < n; i++) {
        struct start *s = malloc(sizeof(*s));
        if (s) {
            *s = (struct start){ fn, ctx, i };
        }
        if (!s || pthread_create(&w->threads[i], NULL, trampoline, s) != 0) {
            free(s);
            return zm_error(-EAGAIN, "workers: cannot start threads");
        }
        w->n++;
    }
    return 0;
}

void zm_workers_note_cpu(struct zm_workers *w, unsigned index)
{
    atomic_store_explicit(&w->cpu[index], zm_thread_cpu(),
                          memory_order_relaxed);
}

double zm_workers_cpu(struct zm_workers *w)
{
    double sum = 0;

    for (unsigned i = 0; i < w->n; i++) {
        sum += atomic_load_explicit(&w->cpu[i], memory_order_relaxed);
    }
    return sum;
}

void zm_workers_join(struct zm_workers *w)
{
    for (unsigned i = 0; i < w->n; i++) {
        pthread_join(w->threads[i], NULL);
    }
    free(w->threads);
    free((void *)w->cpu);
    *w = (struct zm_workers){ 0 };
}
