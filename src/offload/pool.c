/*
 * pool.c - compression workers behind the offload interface
 *
 * One FIFO of jobs for all queues; each worker keeps an encoder for the
 * codec and level it last used.  A job's result goes to its queue's list
 * of completions, which poll() hands back no sooner than the emulated
 * latency allows.  Failures and hangs are decided at submit, by the job's
 * number, so that a test knows which batches they hit.
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/time.h"
#include "workers.h"

struct item {
    struct zm_offload_job *job;
    struct zm_pool_queue *q;
    uint64_t ready_ns; /* not handed back before */
    bool fail, hang;
    struct item *next;
};

struct zm_pool_queue {
    struct zm_pool *pool;
    struct item *done; /* completed, newest first */
    struct item *hung; /* never to complete; freed with the queue */
    unsigned active;   /* its items a worker holds */
    unsigned inflight; /* submitted, not yet handed back */
    pthread_cond_t cond;
};

struct zm_pool {
    struct zm_pool_config cfg;
    uint32_t page_size;
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct item *todo_head, *todo_tail;
    unsigned inflight; /* over all queues */
    uint64_t jobs;     /* submitted so far */
    uint64_t t0_ns;
    bool lost, quit;
    struct zm_workers workers;
};

static uint64_t now_ns(void)
{
    return (uint64_t)(zm_now() * 1e9);
}

/* A worker's encoder, switched to each job's codec and level. */
static zm_encoder *encoder_for(zm_encoder **enc, uint32_t page_size, int codec,
                               int level)
{
    struct zm_encoder_options eo = {
        .sizeof_options = sizeof(eo),
        .codec = codec,
        .level = level,
        .page_size = page_size,
        .max_pages = ZM_MAX_BATCH_PAGES,
    };

    if (!*enc) {
        return zm_encoder_new(&eo, enc) == 0 ? *enc : NULL;
    }
    return zm_encoder_set_codec(*enc, codec, level) == 0 ? *enc : NULL;
}

static void worker(void *ctx, unsigned index)
{
    struct zm_pool *pool = ctx;
    zm_encoder *enc_cache = NULL;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->quit && !pool->todo_head) {
            pthread_cond_wait(&pool->work, &pool->lock);
        }
        if (pool->quit) {
            break;
        }
        struct item *it = pool->todo_head;
        pool->todo_head = it->next;
        if (!pool->todo_head) {
            pool->todo_tail = NULL;
        }
        it->q->active++;
        pthread_mutex_unlock(&pool->lock);

        struct zm_offload_job *job = it->job;
        if (it->fail) {
            job->result = -EIO;
        } else if (!it->hang) {
            double cpu = zm_thread_cpu();
            zm_encoder *enc = encoder_for(&enc_cache, pool->page_size,
                                          job->codec, job->level);
            job->result =
                enc ? zm_encode(enc, job->region, job->pages, job->count,
                                job->flags, job->out, job->cap, NULL)
                    : -ENOMEM;
            /* Only into a library's job that has the field. */
            if (job->sizeof_job >=
                offsetof(struct zm_offload_job, cpu_seconds) +
                    sizeof(job->cpu_seconds)) {
                job->cpu_seconds = zm_thread_cpu() - cpu;
            }
        }

        zm_workers_note_cpu(&pool->workers, index);
        pthread_mutex_lock(&pool->lock);
        struct zm_pool_queue *q = it->q;
        struct item **list = it->hang ? &q->hung : &q->done;
        it->next = *list;
        *list = it;
        q->active--;
        pthread_cond_broadcast(&q->cond);
    }
    pthread_mutex_unlock(&pool->lock);
    zm_encoder_free(enc_cache);
}

int zm_pool_open(const struct zm_pool_config *cfg, uint32_t page_size,
                 void **dev)
{
    struct zm_pool *pool = calloc(1, sizeof(*pool));

    if (!pool) {
        return zm_error(-ENOMEM, "offload: out of memory");
    }
    pool->cfg = *cfg;
    pool->cfg.threads = cfg->threads ? cfg->threads : 1;
    pool->cfg.depth = cfg->depth ? cfg->depth : 4 * pool->cfg.threads;
    pool->page_size = page_size;
    pool->t0_ns = now_ns();
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    int ret = zm_workers_start(&pool->workers, pool->cfg.threads, worker, pool);
    if (ret < 0) {
        zm_pool_close(pool);
        return ret;
    }
    *dev = pool;
    return 0;
}

void zm_pool_close(void *dev)
{
    struct zm_pool *pool = dev;

    if (!pool) {
        return;
    }
    pthread_mutex_lock(&pool->lock);
    pool->quit = true;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    zm_workers_join(&pool->workers);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->work);
    free(pool);
}

double zm_pool_cpu_seconds(void *dev)
{
    struct zm_pool *pool = dev;

    /* An emulated device's threads stand for an engine off the host, but
     * for host_percent of their work. */
    return zm_workers_cpu(&pool->workers) * pool->cfg.host_percent / 100;
}

int zm_pool_caps(void *dev, struct zm_offload_caps *caps)
{
    const struct zm_pool *pool = dev;
    uint32_t codecs = 0;

    for (int id = 0; id < ZM_CODEC_COUNT; id++) {
        codecs |= zm_codec_available(id) ? 1u << id : 0;
    }
    caps->codecs = codecs;
    caps->max_pages = ZM_MAX_BATCH_PAGES;
    caps->queue_depth = pool->cfg.depth;
    caps->min_pages = pool->cfg.min_pages;
    if (caps->sizeof_caps >=
        offsetof(struct zm_offload_caps, threads) + sizeof(caps->threads)) {
        caps->threads = pool->cfg.threads;
    }
    return 0;
}

int zm_pool_queue_new(void *dev, void **queue)
{
    struct zm_pool *pool = dev;
    struct zm_pool_queue *q = calloc(1, sizeof(*q));
    pthread_condattr_t attr;

    if (!q) {
        return zm_error(-ENOMEM, "offload: out of memory");
    }
    q->pool = pool;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &attr);
    pthread_condattr_destroy(&attr);
    *queue = q;
    return 0;
}

static void free_items(struct item *it)
{
    while (it) {
        struct item *next = it->next;
        free(it);
        it = next;
    }
}

void zm_pool_queue_free(void *queue)
{
    struct zm_pool_queue *q = queue;

    if (!q) {
        return;
    }
    struct zm_pool *pool = q->pool;
    pthread_mutex_lock(&pool->lock);
    /* Drop its jobs not started, then wait out those a worker holds. */
    struct item **link = &pool->todo_head;
    pool->todo_tail = NULL;
    while (*link) {
        struct item *it = *link;
        if (it->q == q) {
            *link = it->next;
            free(it);
        } else {
            pool->todo_tail = it;
            link = &it->next;
        }
    }
    while (q->active) {
        pthread_cond_wait(&q->cond, &pool->lock);
    }
    pool->inflight -= q->inflight;
    pthread_mutex_unlock(&pool->lock);
    free_items(q->done);
    free_items(q->hung);
    pthread_cond_destroy(&q->cond);
    free(q);
}

/* Whether an emulated busy period covers now; under the lock. */
static bool in_busy_period(const struct zm_pool *pool, uint64_t now)
{
    const struct zm_pool_config *c = &pool->cfg;

    return c->busy_every_ns && c->busy_for_ns &&
           (now - pool->t0_ns) % c->busy_every_ns < c->busy_for_ns;
}

int zm_pool_submit(void *queue, struct zm_offload_job *job)
{
    struct zm_pool_queue *q = queue;
    struct zm_pool *pool = q->pool;
    const struct zm_pool_config *c = &pool->cfg;
    uint64_t now = now_ns();
    int ret = 0;

    pthread_mutex_lock(&pool->lock);
    if (pool->lost) {
        ret = -ENODEV;
    } else if (pool->inflight >= c->depth || in_busy_period(pool, now)) {
        ret = -EBUSY;
    } else if (c->lose_after && pool->jobs >= c->lose_after) {
        pool->lost = true;
        ret = -ENODEV;
    }
    struct item *it = ret == 0 ? calloc(1, sizeof(*it)) : NULL;
    if (ret == 0 && !it) {
        ret = -ENOMEM;
    }
    if (ret < 0) {
        pthread_mutex_unlock(&pool->lock);
        return ret;
    }
    uint64_t n = ++pool->jobs;
    *it = (struct item){
        .job = job,
        .q = q,
        .ready_ns = now + c->latency_ns,
        .fail = c->fail_every && n % c->fail_every == 0,
        .hang = c->hang_every && n % c->hang_every == 0,
    };
    if (pool->todo_tail) {
        pool->todo_tail->next = it;
    } else {
        pool->todo_head = it;
    }
    pool->todo_tail = it;
    pool->inflight++;
    q->inflight++;
    pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

/* Moves up to max completed items ready by now into done; under the lock.
 * Sets *next_ns to the earliest ready time of those left (or leaves it). */
static unsigned take_ready(struct zm_pool_queue *q,
                           struct zm_offload_job **done, unsigned max,
                           uint64_t now, uint64_t *next_ns)
{
    unsigned n = 0;
    struct item **link = &q->done;

    while (*link) {
        struct item *it = *link;
        if (n < max && it->ready_ns <= now) {
            *link = it->next;
            done[n++] = it->job;
            free(it);
            continue;
        }
        if (it->ready_ns < *next_ns) {
            *next_ns = it->ready_ns;
        }
        link = &it->next;
    }
    q->inflight -= n;
    q->pool->inflight -= n;
    return n;
}

int zm_pool_poll(void *queue, struct zm_offload_job **done, unsigned max,
                 int timeout_ms)
{
    struct zm_pool_queue *q = queue;
    struct zm_pool *pool = q->pool;
    uint64_t deadline =
        now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        /* What it finished before it was lost, it still hands back. */
        uint64_t now = now_ns();
        uint64_t wake = deadline;
        unsigned n = take_ready(q, done, max, now, &wake);
        if (n == 0 && pool->lost) {
            pthread_mutex_unlock(&pool->lock);
            return -ENODEV;
        }
        if (n > 0 || now >= deadline) {
            pthread_mutex_unlock(&pool->lock);
            return (int)n;
        }
        struct timespec ts = zm_deadline((double)wake * 1e-9);
        pthread_cond_timedwait(&q->cond, &pool->lock, &ts);
    }
}

/* A time with its unit: ns, us, ms or s (no unit: ns); the number at
 * most 3600, so that no unit makes it overflow. */
static int parse_time(const char *v, uint64_t *ns)
{
    char *end;
    double x = strtod(v, &end);
    double unit = 1;

    if (end == v || !(x >= 0 && x <= 3600)) { /* NaN fails too */
        return -EINVAL;
    }
    if (strcmp(end, "s") == 0) {
        unit = 1e9;
    } else if (strcmp(end, "ms") == 0) {
        unit = 1e6;
    } else if (strcmp(end, "us") == 0) {
        unit = 1e3;
    } else if (*end && strcmp(end, "ns") != 0) {
        return -EINVAL;
    }
    *ns = (uint64_t)(x * unit);
    return 0;
}

static int parse_count(const char *v, unsigned *out)
{
    char *end;
    unsigned long x = strtoul(v, &end, 10);

    if (end == v || *end || *v == '-' || x > 1u << 20) {
        return -EINVAL;
    }
    *out = (unsigned)x;
    return 0;
}

/* Whether key is in the comma-separated list allowed. */
static bool allowed_key(const char *allowed, const char *key)
{
    size_t len = strlen(key);

    for (const char *p = allowed; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == len && strncmp(p, key, n) == 0) {
            return true;
        }
        p += n + (comma ? 1 : 0);
    }
    return false;
}

static int parse_one(const char *key, const char *val,
                     struct zm_pool_config *cfg)
{
    unsigned min_pages = 0;
    int ret = -EINVAL;

    if (strcmp(key, "threads") == 0) {
        ret = parse_count(val, &cfg->threads);
        ret = ret == 0 && (cfg->threads < 1 || cfg->threads > 256) ? -EINVAL
                                                                   : ret;
    } else if (strcmp(key, "depth") == 0) {
        ret = parse_count(val, &cfg->depth);
    } else if (strcmp(key, "latency") == 0) {
        ret = parse_time(val, &cfg->latency_ns);
    } else if (strcmp(key, "busy-every") == 0) {
        ret = parse_time(val, &cfg->busy_every_ns);
    } else if (strcmp(key, "busy-for") == 0) {
        ret = parse_time(val, &cfg->busy_for_ns);
    } else if (strcmp(key, "fail-every") == 0) {
        ret = parse_count(val, &cfg->fail_every);
    } else if (strcmp(key, "hang-every") == 0) {
        ret = parse_count(val, &cfg->hang_every);
    } else if (strcmp(key, "lose-after") == 0) {
        ret = parse_count(val, &cfg->lose_after);
    } else if (strcmp(key, "min-pages") == 0) {
        ret = parse_count(val, &min_pages);
        cfg->min_pages = min_pages;
    } else if (strcmp(key, "host-percent") == 0) {
        ret = parse_count(val, &cfg->host_percent);
        ret = ret == 0 && cfg->host_percent > 100 ? -EINVAL : ret;
    }
    return ret;
}

int zm_pool_parse(const char *args, const char *allowed,
                  struct zm_pool_config *cfg)
{
    char buf[256];

    if (!args || !*args) {
        return 0;
    }
    if (strlen(args) >= sizeof(buf)) {
        return zm_error(-EINVAL, "offload: arguments longer than %zu bytes",
                        sizeof(buf) - 1);
    }
    snprintf(buf, sizeof(buf), "%s", args);
    char *save = NULL;
    for (char *kv = strtok_r(buf, ",", &save); kv;
         kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            return zm_error(-EINVAL, "offload: '%s' is not KEY=VALUE", kv);
        }
        *eq = '\0';
        if (!allowed_key(allowed, kv)) {
            return zm_error(-EINVAL, "offload: unknown key '%s' (%s)", kv,
                            allowed);
        }
        if (parse_one(kv, eq + 1, cfg) < 0) {
            return zm_error(-EINVAL, "offload: bad value '%s' for %s", eq + 1,
                            kv);
        }
    }
    return 0;
}
