/*
 * offload.c - compression handed to a backend, with software fallback
 */
#include "offload.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/time.h"

/* The only list of in-tree backends. */
static const struct zm_offload_ops *const backends[] = {
    &zm_offload_cpu,
    &zm_offload_emulated,
};

ZM_API const struct zm_offload_ops *zm_offload_by_name(const char *name)
{
    for (size_t i = 0; name && i < sizeof(backends) / sizeof(*backends); i++) {
        if (strcmp(backends[i]->name, name) == 0) {
            return backends[i];
        }
    }
    return NULL;
}

struct zm_offload {
    struct zm_offload_ops ops; /* as far as the backend's table went */
    void *dev;
    struct zm_offload_caps caps;
    pthread_mutex_t lock; /* the service state */
    double out_until;     /* out of service until then */
    double backoff;
    bool lost;
    /* When the device last handed a job back: a job is hung only when
     * nothing came back for ZM_OFFLOAD_TIMEOUT since it went in, so time
     * spent queued behind others' jobs does not count. */
    _Atomic double progress;
    atomic_uint_fast64_t offloaded, fallbacks, failures;
};

struct zm_offloader {
    struct zm_offload *off;
    zm_encoder *software;
    void *queue;
    size_t cap;
    uint32_t max_pages;
    struct zm_offload_slot **slots;
    unsigned nslots;
    unsigned inflight;
    struct zm_offload_slot *graveyard; /* abandoned, maybe still held */
};

int zm_offload_open(const struct zm_offload_ops *ops, const char *args,
                    uint32_t page_size, struct zm_offload **out)
{
    struct zm_offload *off;
    int ret;

    if (!ops || ops->version < 1 ||
        ops->sizeof_ops <
            offsetof(struct zm_offload_ops, poll) + sizeof(ops->poll)) {
        return zm_error(-EINVAL, "offload: not a backend table of version "
                                 "1 or later");
    }
    off = calloc(1, sizeof(*off));
    if (!off) {
        return zm_error(-ENOMEM, "offload: out of memory");
    }
    memcpy(&off->ops, ops,
           ops->sizeof_ops < sizeof(off->ops) ? ops->sizeof_ops
                                              : sizeof(off->ops));
    const struct zm_offload_ops *o = &off->ops;
    if (!o->open || !o->close || !o->caps || !o->queue_new || !o->queue_free ||
        !o->submit || !o->poll) {
        free(off);
        return zm_error(-EINVAL, "offload: backend '%s' lacks a function",
                        ops->name ? ops->name : "?");
    }
    off->backoff = ZM_OFFLOAD_BACKOFF;
    off->caps.sizeof_caps = sizeof(off->caps);
    pthread_mutex_init(&off->lock, NULL);
    if ((ret = o->open(args ? args : "", page_size, &off->dev)) < 0) {
        pthread_mutex_destroy(&off->lock);
        free(off);
        return zm_error(ret, "offload: %s: %s", ops->name, zm_errmsg());
    }
    if ((ret = o->caps(off->dev, &off->caps)) < 0) {
        zm_offload_close(off);
        return zm_error(ret, "offload: %s: no capabilities", ops->name);
    }
    *out = off;
    return 0;
}

void zm_offload_close(struct zm_offload *off)
{
    if (!off) {
        return;
    }
    off->ops.close(off->dev);
    pthread_mutex_destroy(&off->lock);
    free(off);
}

unsigned zm_offload_threads(const struct zm_offload *off)
{
    return off->caps.threads; /* 0 unless the backend said */
}

double zm_offload_cpu_seconds(struct zm_offload *off)
{
    return off->ops.cpu_seconds ? off->ops.cpu_seconds(off->dev) : 0;
}

void zm_offload_counters(struct zm_offload *off, uint64_t *offloaded,
                         uint64_t *fallbacks, uint64_t *failures)
{
    *offloaded = atomic_load(&off->offloaded);
    *fallbacks = atomic_load(&off->fallbacks);
    *failures = atomic_load(&off->failures);
}

/* Whether the backend may take batches now; a probe once the back-off
 * is over. */
static bool in_service(struct zm_offload *off)
{
    pthread_mutex_lock(&off->lock);
    bool ok = !off->lost && zm_now() >= off->out_until;
    pthread_mutex_unlock(&off->lock);
    return ok;
}

/*
 * The backend failed batches of ours: out of service for a back-off (or
 * for good when it is lost); they are redone in software.
 */
static void device_failed(struct zm_offload *off, bool lost, unsigned batches)
{
    pthread_mutex_lock(&off->lock);
    off->lost = off->lost || lost;
    double now = zm_now();
    /* One incident seen by several channels doubles the back-off once. */
    if (now >= off->out_until) {
        off->out_until = now + off->backoff;
        off->backoff = off->backoff * 2 < ZM_OFFLOAD_BACKOFF_MAX
                           ? off->backoff * 2
                           : ZM_OFFLOAD_BACKOFF_MAX;
    }
    pthread_mutex_unlock(&off->lock);
    atomic_fetch_add(&off->failures, batches);
}

static void back_in_service(struct zm_offload *off)
{
    pthread_mutex_lock(&off->lock);
    off->backoff = ZM_OFFLOAD_BACKOFF;
    pthread_mutex_unlock(&off->lock);
}

static struct zm_offload_slot *slot_new(size_t cap, uint32_t max_pages)
{
    struct zm_offload_slot *s = calloc(1, sizeof(*s));

    if (s) {
        s->refs = calloc(max_pages, sizeof(*s->refs));
        s->packet = malloc(cap);
    }
    if (!s || !s->refs || !s->packet) {
        if (s) {
            free(s->refs);
            free(s->packet);
        }
        free(s);
        return NULL;
    }
    return s;
}

static void slot_free(struct zm_offload_slot *s)
{
    if (s) {
        free(s->refs);
        free(s->packet);
        free(s);
    }
}

int zm_offloader_new(struct zm_offload *off, zm_encoder *software,
                     unsigned slots, uint32_t max_pages,
                     struct zm_offloader **out)
{
    struct zm_offloader *o = calloc(1, sizeof(*o));
    int ret;

    if (!o) {
        return zm_error(-ENOMEM, "offload: out of memory");
    }
    o->off = off;
    o->software = software;
    o->cap = zm_encoder_bound(software);
    o->max_pages = max_pages;
    o->slots = calloc(slots, sizeof(*o->slots));
    ret = o->slots ? 0 : -ENOMEM;
    for (unsigned i = 0; ret == 0 && i < slots; i++, o->nslots++) {
        o->slots[i] = slot_new(o->cap, max_pages);
        ret = o->slots[i] ? 0 : -ENOMEM;
    }
    if (ret < 0) {
        zm_offloader_free(o);
        return zm_error(ret, "offload: out of memory");
    }
    if ((ret = off->ops.queue_new(off->dev, &o->queue)) < 0) {
        o->queue = NULL;
        zm_offloader_free(o);
        return zm_error(ret, "offload: %s: no queue", off->ops.name);
    }
    *out = o;
    return 0;
}

void zm_offloader_free(struct zm_offloader *o)
{
    if (!o) {
        return;
    }
    if (o->queue) {
        o->off->ops.queue_free(o->queue);
    }
    for (unsigned i = 0; i < o->nslots; i++) {
        slot_free(o->slots[i]);
    }
    while (o->graveyard) {
        struct zm_offload_slot *next = o->graveyard->next;
        slot_free(o->graveyard);
        o->graveyard = next;
    }
    free(o->slots);
    free(o);
}

bool zm_offloader_has_slot(const struct zm_offloader *o)
{
    for (unsigned i = 0; i < o->nslots; i++) {
        if (!o->slots[i]->busy) {
            return true;
        }
    }
    return false;
}

struct zm_offload_slot *zm_offloader_slot(struct zm_offloader *o)
{
    for (unsigned i = 0; i < o->nslots; i++) {
        if (!o->slots[i]->busy) {
            o->slots[i]->busy = true;
            return o->slots[i];
        }
    }
    return NULL;
}

void zm_offloader_release(struct zm_offloader *o, struct zm_offload_slot *s)
{
    (void)o;
    s->busy = false;
}

unsigned zm_offloader_inflight(const struct zm_offloader *o)
{
    return o->inflight;
}

/* The batch of s compressed by the calling thread. */
static int software(struct zm_offloader *o, struct zm_offload_slot *s)
{
    double cpu = zm_thread_cpu();
    int level;
    int codec = zm_encoder_codec(o->software, &level);

    s->on_backend = false;
    /* The batch's own method (auto may have moved on since it went in). */
    zm_encoder_set_codec(o->software, s->job.codec, s->job.level);
    s->len = zm_encode(o->software, s->job.region, s->refs, s->job.count,
                       s->job.flags, s->packet, o->cap, NULL);
    zm_encoder_set_codec(o->software, codec, level);
    s->encode_cpu = zm_thread_cpu() - cpu;
    s->in_software = true;
    return s->len < 0 ? (int)s->len : 1;
}

int zm_offloader_submit(struct zm_offloader *o, struct zm_offload_slot *s,
                        uint32_t region, unsigned count, unsigned flags)
{
    struct zm_offload *off = o->off;
    int level;
    /* The channel may switch methods per batch (--compression auto). */
    int codec = zm_encoder_codec(o->software, &level);

    s->job = (struct zm_offload_job){
        .sizeof_job = sizeof(s->job),
        .region = region,
        .pages = s->refs,
        .count = count,
        .flags = flags,
        .codec = codec,
        .level = level,
        .out = s->packet,
        .cap = o->cap,
    };
    if (count < off->caps.min_pages || count > off->caps.max_pages ||
        !(off->caps.codecs & (1u << codec)) || !in_service(off)) {
        atomic_fetch_add(&off->fallbacks, 1);
        return software(o, s);
    }
    s->len = 0;
    int ret = off->ops.submit(o->queue, &s->job);
    if (ret == 0) {
        s->submitted = zm_now();
        s->on_backend = true;
        o->inflight++;
        return 0;
    }
    if (ret == -EBUSY) {
        atomic_fetch_add(&off->fallbacks, 1);
    } else {
        device_failed(off, ret == -ENODEV, 1);
    }
    return software(o, s);
}

/*
 * Gives up on s, which the backend may still hold: a fresh slot takes its
 * place and its batch, s goes to the graveyard until the backend hands it
 * back or its queue is freed.  Returns the fresh slot (NULL: no memory).
 */
static struct zm_offload_slot *abandon(struct zm_offloader *o,
                                       struct zm_offload_slot *s)
{
    struct zm_offload_slot *fresh = slot_new(o->cap, o->max_pages);

    if (!fresh) {
        return NULL;
    }
    fresh->busy = true;
    /* Field by field: the backend may still write s->job.result. */
    fresh->job = (struct zm_offload_job){
        .sizeof_job = sizeof(fresh->job),
        .region = s->job.region,
        .pages = fresh->refs,
        .count = s->job.count,
        .flags = s->job.flags,
        .codec = s->job.codec,
        .level = s->job.level,
        .out = fresh->packet,
        .cap = s->job.cap,
    };
    memcpy(fresh->refs, s->refs, s->job.count * sizeof(*s->refs));
    fresh->method = s->method;
    fresh->sample = s->sample;
    fresh->submit_wall = s->submit_wall;
    fresh->submit_cpu = s->submit_cpu;
    for (unsigned i = 0; i < o->nslots; i++) {
        if (o->slots[i] == s) {
            o->slots[i] = fresh;
        }
    }
    s->abandoned = true;
    s->next = o->graveyard;
    o->graveyard = s;
    o->inflight--;
    return fresh;
}

/* The backend handed an abandoned slot back: it is free to go. */
static bool bury(struct zm_offloader *o, struct zm_offload_slot *s)
{
    for (struct zm_offload_slot **link = &o->graveyard; *link;
         link = &(*link)->next) {
        if (*link == s) {
            *link = s->next;
            slot_free(s);
            return true;
        }
    }
    return false;
}

/* Whether the backend's packet is the batch's: well formed, its region,
 * its page count, its length. */
static bool packet_is_batch(const struct zm_offloader *o,
                            const struct zm_offload_job *job)
{
    struct zm_packet_info info = { .sizeof_info = sizeof(info) };

    return job->result > 0 && (size_t)job->result <= o->cap &&
           zm_packet_peek(job->out, (size_t)job->result, &info) == 0 &&
           info.size == (uint32_t)job->result && info.region == job->region &&
           info.pages == job->count;
}

/*
 * Redoes in software the batches on the backend that it hung on (every one
 * when lost): into fresh slots, added to done.  Sets *oldest to the submit
 * time of the oldest still waiting (0: none).
 */
static int reap(struct zm_offloader *o, bool lost,
                struct zm_offload_slot **done, unsigned *n, double *oldest)
{
    double now = zm_now();
    unsigned failed = 0;

    *oldest = 0;
    for (unsigned i = 0; i < o->nslots; i++) {
        struct zm_offload_slot *s = o->slots[i];
        if (!s->on_backend) {
            continue;
        }
        double progress = atomic_load(&o->off->progress);
        double since = s->submitted > progress ? s->submitted : progress;
        if (!lost && now - since < ZM_OFFLOAD_TIMEOUT) {
            *oldest = !*oldest || since < *oldest ? since : *oldest;
            continue;
        }
        struct zm_offload_slot *fresh = abandon(o, s);
        if (!fresh) {
            return zm_error(-ENOMEM, "offload: out of memory");
        }
        int ret = software(o, fresh);
        if (ret < 0) {
            return ret;
        }
        done[(*n)++] = fresh;
        failed++;
    }
    if (failed) {
        device_failed(o->off, lost, failed);
    }
    return 0;
}

/* Takes a job the backend handed back: its packet, or a redo. */
static int completed(struct zm_offloader *o, struct zm_offload_job *job,
                     struct zm_offload_slot **done, unsigned *n)
{
    struct zm_offload_slot *s = (struct zm_offload_slot *)(void *)job;

    atomic_store(&o->off->progress, zm_now());
    if (s->abandoned) {
        bury(o, s); /* redone already */
        return 0;
    }
    if (!s->on_backend) {
        return 0; /* handed back twice, or never ours: a broken backend */
    }
    s->on_backend = false;
    o->inflight--;
    done[(*n)++] = s;
    if (packet_is_batch(o, job)) {
        s->len = job->result;
        /* The backend's figure, if it gave a sane one. */
        s->encode_cpu = isfinite(job->cpu_seconds) && job->cpu_seconds > 0
                            ? job->cpu_seconds
                            : 0;
        s->in_software = false;
        atomic_fetch_add(&o->off->offloaded, 1);
        back_in_service(o->off);
        return 0;
    }
    device_failed(o->off, false, 1);
    int ret = software(o, s);
    return ret < 0 ? ret : 0;
}

/*
 * Polls the backend for up to timeout_ms and takes what it hands back;
 * a lost backend's batches are all redone here.
 */
static int collect(struct zm_offloader *o, struct zm_offload_slot **done,
                   unsigned *n, int timeout_ms)
{
    struct zm_offload_job *jobs[ZM_OFFLOAD_POLL_MAX];
    double oldest;
    int got = o->off->ops.poll(o->queue, jobs, ZM_OFFLOAD_POLL_MAX, timeout_ms);

    if (got < 0) {
        return reap(o, true, done, n, &oldest);
    }
    int ret = 0;
    for (int i = 0; i < got && i < (int)ZM_OFFLOAD_POLL_MAX; i++) {
        int r = completed(o, jobs[i], done, n);
        ret = ret < 0 ? ret : r;
    }
    return ret;
}

int zm_offloader_wait(struct zm_offloader *o, struct zm_offload_slot **done,
                      int timeout_ms)
{
    double until = zm_now() + timeout_ms / 1000.0;
    unsigned n = 0;
    int ret = 0;

    while (ret == 0 && n == 0 && o->inflight > 0) {
        /* What is back already first: a batch is hung only if it is not
         * back when we look, however long we were away. */
        double oldest;
        if ((ret = collect(o, done, &n, 0)) < 0 || n > 0 ||
            (ret = reap(o, false, done, &n, &oldest)) < 0 || n > 0) {
            break;
        }
        double now = zm_now();
        if (now >= until) {
            break;
        }
        double wait = oldest + ZM_OFFLOAD_TIMEOUT - now;
        wait = until - now < wait ? until - now : wait;
        ret = collect(o, done, &n, (int)(wait * 1000) + 1);
    }
    return ret < 0 ? ret : (int)n;
}
