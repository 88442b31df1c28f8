/*
 * sim_guest.c - the simulated guest of `zmigrate send`: RAM and vCPU threads
 *
 * Stopping is a handshake under one mutex: zm_guest_stop() raises a flag
 * and waits until every vCPU thread has counted itself parked; a vCPU
 * looks at the flag between short slices of work (at most a few hundred
 * microseconds) and parks until zm_guest_resume().  A vCPU with nothing
 * left to do (FILL done) stays parked for good, and a vCPU pacing itself
 * sleeps on the same condition variable, so that a stop wakes it at once.
 */
#include "datagen.h"
#include "errbuf.h"
#include "sim_guest.h"

#include "zmigrate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define PAGE ZM_GUEST_PAGE_SIZE

/* Unit of work when filling RAM with several threads. */
#define FILL_CHUNK (2u << 20)

/* Work between looks at the stop flag: short, so that stops are quick. */
#define WRITER_SLICE 1024u /* random writes, each likely a cache miss */
#define FILL_SLICE 64u     /* pages: 256 KiB of generated data */

/* Pacing: sleep at least this long, keep at most BURST_NS of credit. */
#define TICK_NS UINT64_C(1000000)
#define BURST_NS UINT64_C(4000000)

#define HASH_CHUNK (1u << 20)

struct vcpu {
    _Alignas(64) zm_guest *g; /* one cache line each: counters are hot */
    unsigned index;
    uint64_t begin; /* FILL: its share of RAM, in pages */
    uint64_t end;
    atomic_uint_fast64_t pages; /* dirtied (WRITER) or filled (FILL) */
    pthread_t thread;
};

struct zm_guest {
    unsigned char *ram;
    size_t size;
    uint64_t npages;
    struct zm_guest_options opts; /* corpus_dir not kept */

    /* Corpus data, repeated to fill RAM; NULL for generated data. */
    const unsigned char *data;
    size_t data_size;
    void *data_map; /* FILL: the data's own mapping, else in RAM */

    pthread_mutex_t lock;
    pthread_cond_t run_cond;    /* vCPUs wait: stopped, idle or pacing */
    pthread_cond_t parked_cond; /* zm_guest_stop() waits */
    atomic_bool stop_req;       /* paused, for vCPUs to poll cheaply */
    bool paused;
    bool quit;
    bool started;
    unsigned nthreads; /* vCPU threads running */
    unsigned parked;   /* of those, parked: not touching RAM */
    unsigned stops;
    uint64_t run_since; /* when the vCPUs last started running */
    uint64_t run_ns;    /* running time before that */

    struct vcpu *vcpus; /* opts.vcpus of them */
};

/* Corpus files, sorted by name, as one stream of bytes. */
struct corpus {
    char **paths;
    uint64_t *starts; /* each file's offset; starts[count] is the total */
    unsigned count;
};

/* Work cut in chunks that threads take in turn. */
struct work {
    zm_guest *g;
    int (*fn)(struct work *w, uint64_t off, uint64_t len, char *msg,
              size_t msg_size);
    uint64_t end;
    atomic_uint_fast64_t next;
    atomic_int error;
    const struct corpus *corpus; /* read_corpus(): what ... */
    unsigned char *dst;          /* ... into where */
    char msg[256];               /* the first failure's */
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* splitmix64 */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

int zm_guest_workload_by_name(const char *name)
{
    static const char *const names[] = { "idle", "fill", "writer" };

    for (int i = 0; name != NULL && i < 3; i++) {
        if (strcmp(name, names[i]) == 0) {
            return i;
        }
    }
    return -EINVAL;
}

const char *zm_guest_workload_name(int workload)
{
    switch (workload) {
    case ZM_GUEST_IDLE:
        return "idle";
    case ZM_GUEST_FILL:
        return "fill";
    case ZM_GUEST_WRITER:
        return "writer";
    }
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* Filling RAM                                                            */
/* ---------------------------------------------------------------------- */

/*
 * RAM [off, off + len) gets its data.  Generated data needs off at a page
 * boundary; corpus data is copied from the image, which must not overlap
 * the range.
 */
/* splitmix64: random bytes that depend on the seed and the offset only. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void fill_random(unsigned char *dst, uint64_t off, uint64_t len,
                        uint64_t seed)
{
    for (uint64_t i = 0; i + 8 <= len; i += 8) {
        uint64_t v = mix64(seed ^ mix64(off + i));
        memcpy(dst + i, &v, 8);
    }
}

static void fill_range(zm_guest *g, uint64_t off, uint64_t len)
{
    if (g->opts.random) {
        fill_random(g->ram + off, off, len, g->opts.seed);
        return;
    }
    if (g->data == NULL) {
        zm_datagen_fill(g->ram + off, len, off, g->opts.seed);
        return;
    }
    while (len > 0) {
        uint64_t at = off % g->data_size;
        uint64_t n = min_u64(len, g->data_size - at);

        memcpy(g->ram + off, g->data + at, n);
        off += n;
        len -= n;
    }
}

static int fill_chunk(struct work *w, uint64_t off, uint64_t len, char *msg,
                      size_t msg_size)
{
    (void)msg;
    (void)msg_size;
    fill_range(w->g, off, len);
    return 0;
}

/* zero_percent of the runs of 16 pages, chosen by the seed, are zero. */
static int zero_chunk(struct work *w, uint64_t off, uint64_t len, char *msg,
                      size_t msg_size)
{
    const uint64_t run = 16 * PAGE;
    zm_guest *g = w->g;

    (void)msg;
    (void)msg_size;
    for (uint64_t at = off - off % run; at < off + len; at += run) {
        if (mix64(g->opts.seed ^ (at / run)) % 100 < g->opts.zero_percent) {
            uint64_t from = at > off ? at : off;
            uint64_t to = min_u64(at + run, off + len);
            memset(g->ram + from, 0, to - from);
        }
    }
    return 0;
}

/* Reads bytes [off, off + len) of the corpus stream to w->dst + off. */
static int read_corpus(struct work *w, uint64_t off, uint64_t len, char *msg,
                       size_t msg_size)
{
    const struct corpus *c = w->corpus;
    unsigned f = 0;

    while (c->starts[f + 1] <= off) {
        f++;
    }
    for (; len > 0; f++) {
        uint64_t at = off - c->starts[f];
        uint64_t n = min_u64(len, c->starts[f + 1] - off);
        uint64_t done = 0;
        int fd = open(c->paths[f], O_RDONLY | O_CLOEXEC);

        if (fd < 0) {
            return zm_errbuf(msg, msg_size, -errno, "cannot open '%s': %s",
                             c->paths[f], strerror(errno));
        }
        while (done < n) {
            ssize_t r =
                pread(fd, w->dst + off + done, n - done, (off_t)(at + done));

            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r <= 0) {
                int ret = r < 0 ? -errno : -EIO;

                close(fd);
                return zm_errbuf(
                    msg, msg_size, ret, "cannot read '%s': %s", c->paths[f],
                    r < 0 ? strerror(-ret) : "shorter than when it was listed");
            }
            done += (uint64_t)r;
        }
        close(fd);
        off += n;
        len -= n;
    }
    return 0;
}

static void *work_main(void *arg)
{
    struct work *w = arg;
    char msg[sizeof(w->msg)];

    while (atomic_load_explicit(&w->error, memory_order_relaxed) == 0) {
        uint64_t off = atomic_fetch_add(&w->next, FILL_CHUNK);
        int ret;
        int none = 0;

        if (off >= w->end) {
            break;
        }
        ret =
            w->fn(w, off, min_u64(FILL_CHUNK, w->end - off), msg, sizeof(msg));
        if (ret < 0) {
            /* The first failure's message is the one reported. */
            if (atomic_compare_exchange_strong(&w->error, &none, ret)) {
                memcpy(w->msg, msg, sizeof(msg));
            }
            break;
        }
    }
    return NULL;
}

/* Makes threads that run no signal handlers. */
static int create_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all;
    sigset_t old;
    int ret;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    ret = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -ret;
}

/*
 * Runs w over [begin, w->end) with up to `threads` threads, the caller's
 * among them.  If no more threads can be made, fewer do the work.
 */
static int run_parallel(struct work *w, uint64_t begin, unsigned threads,
                        char *err, size_t err_size)
{
    uint64_t chunks = (w->end - begin + FILL_CHUNK - 1) / FILL_CHUNK;
    pthread_t *t;
    unsigned made = 0;

    atomic_init(&w->next, begin);
    atomic_init(&w->error, 0);
    threads = (unsigned)min_u64(threads, chunks);
    t = calloc(threads, sizeof(*t));
    while (t != NULL && made + 1 < threads &&
           create_thread(&t[made], work_main, w) == 0) {
        made++;
    }
    work_main(w);
    for (unsigned i = 0; i < made; i++) {
        pthread_join(t[i], NULL);
    }
    free(t);
    if (atomic_load(&w->error) < 0) {
        return zm_errbuf(err, err_size, atomic_load(&w->error), "%s", w->msg);
    }
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void corpus_free(struct corpus *c)
{
    for (unsigned i = 0; i < c->count; i++) {
        free(c->paths[i]);
    }
    free(c->paths);
    free(c->starts);
}

/*
 * Lists dir's regular files (symbolic links followed) that are not empty
 * and whose names do not begin with '.', by name.
 */
static int corpus_list(const char *dir, struct corpus *c, char *err,
                       size_t err_size)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    unsigned cap = 0;
    int ret = 0;

    *c = (struct corpus){ 0 };
    if (d == NULL) {
        return zm_errbuf(err, err_size, -errno, "corpus directory '%s': %s",
                         dir, strerror(errno));
    }
    while ((e = readdir(d)) != NULL) {
        struct stat st;

        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, 0) != 0 ||
            !S_ISREG(st.st_mode) || st.st_size == 0) {
            continue;
        }
        if (c->count == cap) {
            char **p;

            cap = cap ? 2 * cap : 16;
            p = realloc(c->paths, cap * sizeof(*p));
            if (p == NULL) {
                ret = -ENOMEM;
                break;
            }
            c->paths = p;
        }
        if (asprintf(&c->paths[c->count], "%s/%s", dir, e->d_name) < 0) {
            ret = -ENOMEM;
            break;
        }
        c->count++;
    }
    closedir(d);
    if (ret == 0 && c->count == 0) {
        return zm_errbuf(err, err_size, -ENOENT,
                         "corpus directory '%s' holds no data files", dir);
    }
    if (ret == 0) {
        /* Same directory, so sorting paths sorts names. */
        qsort(c->paths, c->count, sizeof(*c->paths), cmp_names);
        c->starts = calloc(c->count + 1, sizeof(*c->starts));
        ret = c->starts == NULL ? -ENOMEM : 0;
    }
    for (unsigned i = 0; ret == 0 && i < c->count; i++) {
        struct stat st;

        if (stat(c->paths[i], &st) != 0) {
            ret = zm_errbuf(err, err_size, -errno, "corpus file '%s': %s",
                            c->paths[i], strerror(errno));
            break;
        }
        c->starts[i + 1] = c->starts[i] + (uint64_t)st.st_size;
    }
    if (ret == -ENOMEM) {
        zm_errbuf(err, err_size, ret, "out of memory listing '%s'", dir);
    }
    if (ret < 0) {
        corpus_free(c);
    }
    return ret;
}

/*
 * Reads the corpus, as much of it as fits in RAM, to where it is copied
 * from: RAM itself for IDLE and WRITER, its own mapping for FILL.
 */
static int corpus_load(zm_guest *g, const char *dir, char *err, size_t err_size)
{
    struct corpus c;
    struct work w = { .g = g, .fn = read_corpus, .corpus = &c };
    int ret = corpus_list(dir, &c, err, err_size);

    if (ret < 0) {
        return ret;
    }
    g->data_size = (size_t)min_u64(c.starts[c.count], g->size);
    if (g->opts.workload == ZM_GUEST_FILL) {
        g->data_map = mmap(NULL, g->data_size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (g->data_map == MAP_FAILED) {
            g->data_map = NULL;
            corpus_free(&c);
            return zm_errbuf(err, err_size, -ENOMEM,
                             "cannot map %zu bytes for the corpus",
                             g->data_size);
        }
        w.dst = g->data_map;
    } else {
        w.dst = g->ram;
    }
    w.end = g->data_size;
    ret = run_parallel(&w, 0, g->opts.vcpus, err, err_size);
    corpus_free(&c);
    if (ret < 0) {
        return ret;
    }
    g->data = w.dst;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* vCPUs                                                                  */
/* ---------------------------------------------------------------------- */

/* A token bucket in pages, refilled by the clock. */
struct pacer {
    double per_ns; /* pages per nanosecond; 0: no limit */
    double tokens;
    double burst;
    uint64_t last;
};

static void pacer_init(struct pacer *p, const zm_guest *g, uint64_t now)
{
    uint64_t rate = g->opts.dirty_rate;

    p->per_ns = 0;
    if (rate != 0 && rate != UINT64_MAX) {
        p->per_ns = (double)rate / PAGE / g->opts.vcpus / 1e9;
    }
    p->burst = p->per_ns * (double)BURST_NS;
    if (p->burst < 1) {
        p->burst = 1;
    }
    p->tokens = 0;
    p->last = now;
}

/*
 * Pages to do now, at most max.  0 when there is no credit yet, and
 * *wake is when there will be (at least TICK_NS away, so that fast rates
 * run in bursts rather than a wake-up per page).
 */
static uint64_t pacer_take(struct pacer *p, uint64_t now, uint64_t max,
                           uint64_t *wake)
{
    uint64_t n;

    if (p->per_ns == 0) {
        return max;
    }
    p->tokens += (double)(now - p->last) * p->per_ns;
    p->last = now;
    if (p->tokens > p->burst) {
        p->tokens = p->burst;
    }
    if (p->tokens < 1) {
        double need = (1 - p->tokens) / p->per_ns;

        *wake = now + (need > (double)TICK_NS ? (uint64_t)need + 1 : TICK_NS);
        return 0;
    }
    n = min_u64((uint64_t)p->tokens, max);
    p->tokens -= (double)n;
    return n;
}

static void write_random(zm_guest *g, uint64_t *rng, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = rng_next(rng);
        uint64_t off = r % g->npages * PAGE + (r >> 55) * 8;

        /* Atomic, so that a reader never sees half a value. */
        __atomic_store_n((uint64_t *)(void *)(g->ram + off), rng_next(rng),
                         __ATOMIC_RELAXED);
    }
}

/*
 * Parks while the guest is stopped (or for good once idle), or sleeps
 * until wake (0: no sleep).  Returns whether to quit; *parked says whether
 * the vCPU was parked.
 */
static bool vcpu_wait(zm_guest *g, bool idle, uint64_t wake, bool *parked)
{
    bool quit;

    *parked = false;
    pthread_mutex_lock(&g->lock);
    while (!g->quit && (g->paused || idle)) {
        if (!*parked) {
            *parked = true;
            g->parked++;
            pthread_cond_broadcast(&g->parked_cond);
        }
        pthread_cond_wait(&g->run_cond, &g->lock);
    }
    if (*parked) {
        g->parked--;
    } else if (!g->quit && wake != 0) {
        struct timespec ts = {
            .tv_sec = (time_t)(wake / 1000000000u),
            .tv_nsec = (long)(wake % 1000000000u),
        };

        pthread_cond_timedwait(&g->run_cond, &g->lock, &ts);
    }
    quit = g->quit;
    pthread_mutex_unlock(&g->lock);
    return quit;
}

static void *vcpu_main(void *arg)
{
    struct vcpu *v = arg;
    zm_guest *g = v->g;
    uint64_t rng = g->opts.seed ^ (UINT64_C(0xd1b54a32d192ed03) * v->index);
    uint64_t next = v->begin; /* FILL: the next page */
    bool idle = g->opts.workload == ZM_GUEST_FILL && v->begin == v->end;
    uint64_t wake = 0;
    struct pacer pc;

    pacer_init(&pc, g, now_ns());
    for (;;) {
        uint64_t n;

        if (idle || wake != 0 ||
            atomic_load_explicit(&g->stop_req, memory_order_relaxed)) {
            bool parked;

            if (vcpu_wait(g, idle, wake, &parked)) {
                break;
            }
            wake = 0;
            if (parked) {
                /* No credit for the time stopped: no burst on resume. */
                pacer_init(&pc, g, now_ns());
            }
            continue;
        }
        if (g->opts.workload == ZM_GUEST_WRITER) {
            n = pacer_take(&pc, now_ns(), WRITER_SLICE, &wake);
            write_random(g, &rng, n);
        } else {
            n = pacer_take(&pc, now_ns(), min_u64(FILL_SLICE, v->end - next),
                           &wake);
            fill_range(g, next * PAGE, n * PAGE);
            next += n;
            idle = next == v->end;
        }
        if (n > 0) {
            atomic_fetch_add_explicit(&v->pages, n, memory_order_relaxed);
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* The guest                                                              */
/* ---------------------------------------------------------------------- */

static int check_options(const struct zm_guest_options *o, char *err,
                         size_t err_size)
{
    if (o->ram == 0 || o->ram % PAGE != 0) {
        return zm_errbuf(err, err_size, -EINVAL,
                         "guest RAM must be a non-zero multiple of %u bytes "
                         "(got %zu)",
                         PAGE, o->ram);
    }
    if (o->vcpus == 0 || o->vcpus > ZM_GUEST_MAX_VCPUS) {
        return zm_errbuf(err, err_size, -EINVAL,
                         "vCPUs must be 1 to %u (got %u)", ZM_GUEST_MAX_VCPUS,
                         o->vcpus);
    }
    if (zm_guest_workload_name((int)o->workload) == NULL) {
        return zm_errbuf(err, err_size, -EINVAL, "unknown workload %d",
                         (int)o->workload);
    }
    if (o->zero_percent > 100 ||
        (o->zero_percent > 0 && o->workload == ZM_GUEST_FILL)) {
        return zm_errbuf(err, err_size, -EINVAL,
                         "zero pages: %u%% (0..100, and not with the fill "
                         "workload, which writes all of RAM)",
                         o->zero_percent);
    }
    if (o->random && o->corpus_dir) {
        return zm_errbuf(err, err_size, -EINVAL,
                         "random data or a corpus, not both");
    }
    return 0;
}

int zm_guest_new(const struct zm_guest_options *opts, zm_guest **out, char *err,
                 size_t err_size)
{
    pthread_condattr_t attr;
    zm_guest *g;
    size_t vsize;
    int ret;

    if (opts == NULL || out == NULL) {
        return zm_errbuf(err, err_size, -EINVAL, "invalid arguments");
    }
    ret = check_options(opts, err, err_size);
    if (ret < 0) {
        return ret;
    }
    g = calloc(1, sizeof(*g));
    vsize = opts->vcpus * sizeof(struct vcpu);
    if (g == NULL ||
        (g->vcpus = aligned_alloc(_Alignof(struct vcpu), vsize)) == NULL) {
        free(g);
        return zm_errbuf(err, err_size, -ENOMEM, "out of memory");
    }
    memset(g->vcpus, 0, vsize);
    g->opts = *opts;
    g->opts.corpus_dir = NULL;
    g->size = opts->ram;
    g->npages = opts->ram / PAGE;
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g->run_cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&g->parked_cond, NULL);
    atomic_init(&g->stop_req, false);
    for (unsigned i = 0; i < opts->vcpus; i++) {
        struct vcpu *v = &g->vcpus[i];

        v->g = g;
        v->index = i;
        v->begin = g->npages * i / opts->vcpus;
        v->end = g->npages * (i + 1) / opts->vcpus;
        atomic_init(&v->pages, 0);
    }

    g->ram = mmap(NULL, g->size, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (g->ram == MAP_FAILED) {
        g->ram = NULL;
        ret =
            zm_errbuf(err, err_size, -ENOMEM, "cannot map %zu bytes of RAM: %s",
                      g->size, strerror(errno));
        goto out;
    }
    if (opts->corpus_dir != NULL) {
        ret = corpus_load(g, opts->corpus_dir, err, err_size);
        if (ret < 0) {
            goto out;
        }
    }
    if (opts->workload != ZM_GUEST_FILL) {
        /* Corpus data was read to the start of RAM; it repeats after. */
        struct work w = { .g = g, .fn = fill_chunk, .end = g->size };

        ret = run_parallel(&w, g->data ? g->data_size : 0, opts->vcpus, err,
                           err_size);
    }
    if (ret == 0 && opts->zero_percent > 0) {
        /* After the fill: corpus data repeats from RAM's start. */
        struct work w = { .g = g, .fn = zero_chunk, .end = g->size };

        ret = run_parallel(&w, 0, opts->vcpus, err, err_size);
    }
out:
    if (ret < 0) {
        zm_guest_free(g);
        return ret;
    }
    *out = g;
    return 0;
}

int zm_guest_start(zm_guest *g)
{
    unsigned made = 0;
    int ret = 0;

    pthread_mutex_lock(&g->lock);
    if (g->started) {
        pthread_mutex_unlock(&g->lock);
        return -EALREADY;
    }
    g->started = true;
    g->run_since = now_ns();
    pthread_mutex_unlock(&g->lock);
    if (g->opts.workload == ZM_GUEST_IDLE) {
        return 0;
    }
    for (; made < g->opts.vcpus; made++) {
        ret = create_thread(&g->vcpus[made].thread, vcpu_main, &g->vcpus[made]);
        if (ret < 0) {
            break;
        }
        pthread_mutex_lock(&g->lock);
        g->nthreads++;
        pthread_mutex_unlock(&g->lock);
    }
    if (ret == 0) {
        return 0;
    }

    /* All or nothing: a guest with fewer vCPUs than asked is not it. */
    pthread_mutex_lock(&g->lock);
    g->quit = true;
    atomic_store_explicit(&g->stop_req, true, memory_order_relaxed);
    pthread_cond_broadcast(&g->run_cond);
    pthread_mutex_unlock(&g->lock);
    for (unsigned i = 0; i < made; i++) {
        pthread_join(g->vcpus[i].thread, NULL);
    }
    pthread_mutex_lock(&g->lock);
    g->quit = false;
    atomic_store_explicit(&g->stop_req, g->paused, memory_order_relaxed);
    g->nthreads = 0;
    g->started = false;
    pthread_mutex_unlock(&g->lock);
    return ret;
}

int zm_guest_stop(zm_guest *g)
{
    pthread_mutex_lock(&g->lock);
    if (!g->paused) {
        g->paused = true;
        atomic_store_explicit(&g->stop_req, true, memory_order_relaxed);
        if (g->started) {
            g->run_ns += now_ns() - g->run_since;
            g->stops++;
        }
        /* Wake vCPUs that sleep to pace themselves. */
        pthread_cond_broadcast(&g->run_cond);
    }
    while (g->paused && g->parked < g->nthreads) {
        pthread_cond_wait(&g->parked_cond, &g->lock);
    }
    pthread_mutex_unlock(&g->lock);
    return 0;
}

int zm_guest_resume(zm_guest *g)
{
    pthread_mutex_lock(&g->lock);
    if (g->paused) {
        g->paused = false;
        atomic_store_explicit(&g->stop_req, false, memory_order_relaxed);
        g->run_since = now_ns();
        pthread_cond_broadcast(&g->run_cond);
    }
    pthread_mutex_unlock(&g->lock);
    return 0;
}

int zm_guest_hook_stop(void *opaque)
{
    return zm_guest_stop(opaque);
}

int zm_guest_hook_resume(void *opaque)
{
    return zm_guest_resume(opaque);
}

void *zm_guest_ram(zm_guest *g)
{
    return g->ram;
}

size_t zm_guest_ram_size(const zm_guest *g)
{
    return g->size;
}

void zm_guest_stats(zm_guest *g, struct zm_guest_stats *st)
{
    uint64_t pages = 0;

    for (unsigned i = 0; i < g->opts.vcpus; i++) {
        pages += atomic_load_explicit(&g->vcpus[i].pages, memory_order_relaxed);
    }
    *st = (struct zm_guest_stats){ .pages_dirtied = pages };
    pthread_mutex_lock(&g->lock);
    st->running = g->started && !g->paused;
    st->running_ns = g->run_ns + (st->running ? now_ns() - g->run_since : 0);
    st->stops = g->stops;
    pthread_mutex_unlock(&g->lock);
    st->bytes_filled = g->size;
    if (g->opts.workload == ZM_GUEST_FILL) {
        st->bytes_filled = pages * PAGE;
    }
    st->fill_done = st->bytes_filled == g->size;
    if (st->running_ns > 0) {
        st->dirty_rate = (double)pages * PAGE * 1e9 / (double)st->running_ns;
    }
}

void zm_guest_free(zm_guest *g)
{
    if (g == NULL) {
        return;
    }
    pthread_mutex_lock(&g->lock);
    g->quit = true;
    /* Busy vCPUs look at the lock only when asked to stop. */
    atomic_store_explicit(&g->stop_req, true, memory_order_relaxed);
    pthread_cond_broadcast(&g->run_cond);
    pthread_mutex_unlock(&g->lock);
    for (unsigned i = 0; i < g->nthreads; i++) {
        pthread_join(g->vcpus[i].thread, NULL);
    }
    if (g->ram != NULL) {
        munmap(g->ram, g->size);
    }
    if (g->data_map != NULL) {
        munmap(g->data_map, g->data_size);
    }
    pthread_cond_destroy(&g->parked_cond);
    pthread_cond_destroy(&g->run_cond);
    pthread_mutex_destroy(&g->lock);
    free(g->vcpus);
    free(g);
}

/* ---------------------------------------------------------------------- */
/* Checking                                                               */
/* ---------------------------------------------------------------------- */

uint64_t zm_guest_hash(const void *ram, size_t size)
{
    const unsigned char *p = ram;
    uint64_t h = 0;

    for (size_t off = 0; off < size; off += HASH_CHUNK) {
        h = XXH3_64bits_withSeed(p + off, min_u64(HASH_CHUNK, size - off), h);
    }
    return h;
}

int zm_guest_first_difference(const void *a, const void *b, size_t size,
                              size_t page_size, uint64_t *page)
{
    const unsigned char *pa = a;
    const unsigned char *pb = b;
    size_t off = 0;

    if (page_size == 0) {
        return -EINVAL;
    }
    /* Whole megabytes first: equal memory is the common case. */
    while (size - off >= HASH_CHUNK &&
           memcmp(pa + off, pb + off, HASH_CHUNK) == 0) {
        off += HASH_CHUNK;
    }
    off -= off % page_size;
    for (; off < size; off += page_size) {
        size_t n = min_u64(page_size, size - off);

        if (memcmp(pa + off, pb + off, n) != 0) {
            if (page != NULL) {
                *page = off / page_size;
            }
            return 1;
        }
    }
    return 0;
}
