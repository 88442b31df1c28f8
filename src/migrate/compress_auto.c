/*
 * compress_auto.c - --compression auto (compress_auto.h says how it works)
 */
#include "compress_auto.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/sized.h"
#include "common/time.h"

/* The candidates, cheapest first: the first one measured wins a tie. */
static const struct {
    int codec, level;
} candidates[] = {
    { ZM_CODEC_NONE, 0 }, { ZM_CODEC_LZ4, 1 },  { ZM_CODEC_DEFLATE, 1 },
    { ZM_CODEC_ZSTD, 1 }, { ZM_CODEC_ZSTD, 3 }, { ZM_CODEC_ZSTD, 6 },
    { ZM_CODEC_ZSTD, 9 },
};

/* Guessed cost of a method never measured, to pace its first sample. */
#define GUESS_CPU_PER_BYTE 20e-9
/* Samples are few: their figures move faster than those of the method in
 * use, which every batch refreshes. */
#define ALPHA_SAMPLED 0.25
#define ALPHA_CURRENT 0.1
/* Channels busy this share of a window, not waiting for the link, want
 * all the CPU they can get: what they got is what there is. */
#define CPU_BOUND_BUSY 0.8
/* Raw, with the packet's header and index table: no method does worse. */
#define RAW_MAX 1.002
/* Wire bytes a window must have written to judge the queues' growth. */
#define BACKLOG_MIN (1u << 20)
/* TCP's receive window was full this share of the time: the receiver
 * may be the limit. */
#define RECEIVER_LIMITED 0.2
/* The shortest gap between two samples of one method. */
#define SAMPLE_GAP_MIN 0.02

double zm_auto_predict(const struct zm_auto_method *m,
                       const struct zm_auto_limits *lim)
{
    double cpu = m->cpu_per_byte + m->wire_per_byte * lim->send_cpu_per_byte;
    double link = lim->per_method && m->link > 0 ? m->link : lim->link;
    double calibration = lim->calibration > 0 ? lim->calibration : 1;
    /* A cost not measured (0, or not a number) is unknown, not free: such
     * a method is not measured, and zm_auto_choose() skips it. */
    double by_cpu = m->per_core > 0 ? m->per_core * lim->cores
                    : cpu > 0       ? calibration * lim->cores / cpu
                                    : 0;
    double by_link =
        link > 0 && m->wire_per_byte > 0 ? link / m->wire_per_byte : INFINITY;
    return by_cpu < by_link ? by_cpu : by_link;
}

unsigned zm_auto_choose(const struct zm_auto_method *methods, unsigned n,
                        unsigned current, const struct zm_auto_limits *lim)
{
    unsigned best = current;
    double best_rate =
        methods[current].samples ? zm_auto_predict(&methods[current], lim) : 0;
    double current_rate = best_rate;

    for (unsigned i = 0; i < n; i++) {
        if (methods[i].samples == 0) {
            continue;
        }
        double rate = zm_auto_predict(&methods[i], lim);
        if (rate > best_rate) {
            best = i;
            best_rate = rate;
        }
    }
    return best_rate > current_rate * ZM_AUTO_HYSTERESIS ? best : current;
}

/* Idle (and iowait) ticks of the CPUs this thread may run on. */
static int read_idle(uint64_t *ticks, uint64_t *cpus)
{
    cpu_set_t set;
    char buf[1 << 16];
    int fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return -errno;
    }
    ssize_t len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (len <= 0 || sched_getaffinity(0, sizeof(set), &set) < 0) {
        return -EIO;
    }
    buf[len] = '\0';
    *ticks = 0;
    *cpus = 0;
    for (char *line = buf; line && *line; line = strchr(line, '\n')) {
        unsigned cpu;
        unsigned long long user, nice, sys, idle, iowait;
        line += *line == '\n';
        if (sscanf(line, "cpu%u %llu %llu %llu %llu %llu", &cpu, &user, &nice,
                   &sys, &idle, &iowait) == 6 &&
            cpu < CPU_SETSIZE && CPU_ISSET(cpu, &set)) {
            *ticks += idle + iowait;
            (*cpus)++;
        }
    }
    return *cpus ? 0 : -EIO;
}

/* The first method of codec among the candidates; 0 (none) if none is. */
static unsigned first_of(const struct zm_auto *a, int codec)
{
    for (unsigned i = 0; i < a->n; i++) {
        if (a->m[i].codec == codec) {
            return i;
        }
    }
    return 0;
}

int zm_auto_init(struct zm_auto *a, uint32_t codecs, unsigned channels,
                 bool offloaded, unsigned engine_threads,
                 double (*offload_cpu)(void *), void *ctx)
{
    cpu_set_t set;

    memset(a, 0, sizeof(*a));
    atomic_init(&a->frozen, false);
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
        int id = candidates[i].codec;
        if ((codecs & (1u << id)) && zm_codec_available(id)) {
            a->m[a->n++] = (struct zm_auto_method){
                .codec = id,
                .level = candidates[i].level,
                .rel_cpu = 1,
                .rel_wire = 1,
            };
        }
    }
    /* none is always there: it needs nothing on either side. */
    if (a->n == 0 || a->m[0].codec != ZM_CODEC_NONE) {
        return zm_error(-EPROTO, "compression auto: the destination does "
                                 "not take uncompressed pages");
    }
    /*
     * Begin with zstd -1: its short first window costs little either way.
     * None would fill the sockets' buffers with raw pages at once, which
     * a slow link then takes seconds to drain; a stronger method would
     * hold a fast link back on the CPU.
     */
    unsigned start = first_of(a, ZM_CODEC_ZSTD); /* level 1 comes first */
    atomic_store(&a->current, start ? start : first_of(a, ZM_CODEC_LZ4));
    a->channels = channels;
    double cpus = sched_getaffinity(0, sizeof(set), &set) == 0
                      ? CPU_COUNT(&set)
                      : (double)sysconf(_SC_NPROCESSORS_ONLN);
    /* What compresses: the channels, or the backend's engines. */
    double engines = offloaded ? engine_threads : channels;
    a->max_cores = engines > 0 && engines < cpus ? engines : cpus;
    a->lim.cores = a->max_cores;
    a->offload_cpu = offload_cpu;
    a->offload_ctx = ctx;
    a->probe_after = ZM_AUTO_PROBE_MIN;
    a->trial = -1;
    a->t0 = a->win_start = zm_now();
    a->win_offload_cpu0 = offload_cpu ? offload_cpu(ctx) : 0;
    if (read_idle(&a->idle0, &a->idle_cpus) < 0) {
        a->idle_cpus = 0; /* no /proc: the cores stay as counted */
    }
    pthread_mutex_init(&a->lock, NULL);
    return 0;
}

void zm_auto_set_link(struct zm_auto *a, double (*queued)(void *),
                      double (*receiver_limited)(void *), void *ctx)
{
    a->queued = queued;
    a->receiver_limited = receiver_limited;
    a->link_ctx = ctx;
    a->queued0 = queued ? queued(ctx) : 0;
    if (receiver_limited) {
        receiver_limited(ctx); /* from now on */
    }
}

void zm_auto_fini(struct zm_auto *a)
{
    if (a->n) {
        pthread_mutex_destroy(&a->lock);
    }
    free(a->timeline);
    a->timeline = NULL;
    a->n = 0;
}

/* x moves toward sample, a plain mean over the first 1 / alpha. */
static void follow(double *x, double sample, unsigned n, double alpha)
{
    if (n < 1.0 / alpha) {
        alpha = 1.0 / (n + 1);
    }
    *x += alpha * (sample - *x);
}

/*
 * The figures of every method from the one in use and their relations to
 * it; never worse than raw (a batch that does not compress goes raw).
 */
static void refresh(struct zm_auto *a)
{
    const struct zm_auto_method *cur = &a->m[atomic_load(&a->current)];
    double cost =
        cur->cpu_per_byte + cur->wire_per_byte * a->lim.send_cpu_per_byte;

    if (cur->per_core > 0 && cost > 0) {
        a->lim.calibration = fmin(5, fmax(0.2, cur->per_core * cost));
    }

    for (unsigned i = 0; i < a->n; i++) {
        struct zm_auto_method *m = &a->m[i];
        if (m != cur && m->samples > 0) {
            m->cpu_per_byte = m->rel_cpu * cur->cpu_per_byte;
            m->wire_per_byte = fmin(m->rel_wire * cur->wire_per_byte, RAW_MAX);
        }
    }
}

/* The method in use becomes next: the relations are re-based on it. */
static void rebase(struct zm_auto *a, unsigned next)
{
    struct zm_auto_method *to = &a->m[next];
    double f_cpu = to->rel_cpu, f_wire = to->rel_wire;

    refresh(a); /* next's figures, from the old method's */
    for (unsigned i = 0; i < a->n; i++) {
        /* A relation never measured (or 0) stays as it is. */
        a->m[i].rel_cpu /= f_cpu > 0 && isfinite(f_cpu) ? f_cpu : 1;
        a->m[i].rel_wire /= f_wire > 0 && isfinite(f_wire) ? f_wire : 1;
    }
    to->rel_cpu = to->rel_wire = 1;
    atomic_store(&a->current, next);
}

/*
 * The method to sample next, if one is due: each is measured again after
 * a gap that keeps all of them together within ZM_AUTO_SAMPLE_BUDGET of
 * the cores, so the cheap ones are measured often and zstd -9 seldom.
 */
static int sample_due(struct zm_auto *a, unsigned current, double now)
{
    double batch =
        (double)(a->win_batches ? a->win_raw / a->win_batches : 512u << 10);
    double budget = now - a->t0 < ZM_AUTO_LEARNING ? ZM_AUTO_SAMPLE_BUDGET_START
                                                   : ZM_AUTO_SAMPLE_BUDGET;
    /* A method whose encoding alone stops below half of what the method
     * in use delivers cannot win, whatever its ratio: measured once, then
     * left alone until the link or the cores change that. */
    double delivered = zm_auto_predict(&a->m[current], &a->lim);
    int pick = -1;

    for (unsigned i = 0; i < a->n; i++) {
        const struct zm_auto_method *m = &a->m[i];
        double cost = (m->samples ? m->cpu_per_byte : GUESS_CPU_PER_BYTE) *
                      batch * (a->n - 1);
        double gap = fmax(SAMPLE_GAP_MIN, cost / (budget * a->lim.cores));
        bool hopeless = m->samples > 0 && m->cpu_per_byte > 0 &&
                        a->lim.cores / m->cpu_per_byte < 0.5 * delivered;
        if (i != current && !hopeless && now >= m->last_measured + gap &&
            (pick < 0 || m->last_measured < a->m[pick].last_measured)) {
            pick = (int)i;
        }
    }
    return pick;
}

void zm_auto_freeze(struct zm_auto *a)
{
    atomic_store(&a->frozen, true);
}

unsigned zm_auto_begin(struct zm_auto *a, zm_encoder *enc, int *sample)
{
    double now = zm_now();

    pthread_mutex_lock(&a->lock);
    unsigned pick = atomic_load(&a->current);
    *sample = atomic_load(&a->frozen) ? -1 : sample_due(a, pick, now);
    if (*sample >= 0) {
        /* Claimed: no other channel samples it meanwhile. */
        a->m[*sample].last_measured = now;
    }
    pthread_mutex_unlock(&a->lock);
    if (zm_encoder_set_codec(enc, a->m[pick].codec, a->m[pick].level) < 0) {
        /* Out of memory for a context: none needs none. */
        zm_encoder_set_codec(enc, ZM_CODEC_NONE, 0);
        pick = 0;
    }
    return pick;
}

void zm_auto_sample(struct zm_auto *a, zm_encoder *enc, int method,
                    const struct zm_page_ref *pages, unsigned count,
                    uint32_t region, unsigned flags, void *scratch, size_t cap,
                    const struct zm_auto_batch *sent)
{
    const struct zm_auto_method *m = &a->m[method];
    struct zm_packet_info info = { .sizeof_info = sizeof(info) };
    int level;
    int codec = zm_encoder_codec(enc, &level);

    if (sent->raw_bytes == 0 || sent->wire_bytes == 0 ||
        zm_encoder_set_codec(enc, m->codec, m->level) < 0) {
        return;
    }
    double cpu = zm_thread_cpu();
    ssize_t len =
        zm_encode(enc, region, pages, count, flags, scratch, cap, &info);
    cpu = zm_thread_cpu() - cpu;
    zm_encoder_set_codec(enc, codec, level);
    if (len < 0 || info.data_size == 0) {
        return;
    }
    pthread_mutex_lock(&a->lock);
    /*
     * The same pages, made with the method in use (unless it changed
     * meanwhile): how the two compare on them.  Figures of their own would
     * compare this batch with other data, and corpus files differ tenfold.
     */
    struct zm_auto_method *m2 = &a->m[method];
    double sent_cpu = sent->encode_cpu / (double)sent->raw_bytes;
    double sent_wire = (double)sent->wire_bytes / (double)sent->raw_bytes;
    if (sent->method == atomic_load(&a->current) && sent_cpu > 0) {
        follow(&m2->rel_cpu, cpu / info.data_size / sent_cpu, m2->samples,
               ALPHA_SAMPLED);
        follow(&m2->rel_wire, (double)len / info.data_size / sent_wire,
               m2->samples, ALPHA_SAMPLED);
        m2->samples++;
    }
    a->win_cpu += cpu;
    pthread_mutex_unlock(&a->lock);
}

/*
 * The link as the current method saw it, from a window's wire rate and the
 * share of the window the channels were busy (sending or making packets;
 * between rounds they wait).  Returns whether the link was the limit.
 */
static bool update_link(struct zm_auto *a, struct zm_auto_method *cur,
                        double wall)
{
    struct zm_auto_limits *lim = &a->lim;
    /* What the link took: written, less what the buffers hold more. */
    double queued = a->queued ? a->queued(a->link_ctx) : 0;
    double taken = (double)a->win_wire - (queued - a->queued0);
    double wire_rate = fmax(0, taken) / wall;
    double busy = fmin(1, a->win_busy / (a->channels * wall));

    /* Buffers that grew by a tenth of what was written: the link does not
     * keep up, though the writes have not had to wait yet (the first
     * window: the buffers still take everything). */
    bool backlog = a->win_wire >= BACKLOG_MIN &&
                   queued - a->queued0 > 0.1 * (double)a->win_wire;

    a->queued0 = queued;
    if (backlog || (a->win_busy > 0 &&
                    a->win_blocked / a->win_busy >= ZM_AUTO_LINK_BOUND)) {
        double seen = busy > 0 ? wire_rate / busy : wire_rate;
        /* A window of nothing taken (a receiver that stopped reading for a
         * while) says nothing of the link's speed. */
        if (seen > 0) {
            cur->link = cur->link > 0 ? 0.3 * cur->link + 0.7 * seen : seen;
            lim->link = cur->link;
        }
        return true;
    }
    /* Not the limit: it carries at least this much. */
    if (cur->link > 0 && wire_rate > cur->link) {
        cur->link = wire_rate;
    }
    if (lim->link > 0 && wire_rate > lim->link) {
        lim->link = wire_rate;
    }
    return false;
}

/*
 * A trial ended: the link as the tried method saw it against the link as
 * the method before it saw it says whether the link is one for all
 * methods (a network) or depends on the method (a receiver short of CPU
 * decodes some faster than others).
 */
static void end_trial(struct zm_auto *a, bool bound)
{
    const struct zm_auto_method *tried = &a->m[a->trial];
    const struct zm_auto_method *before = &a->m[a->trial_from];

    if (before->link > 0 && tried->link > 0) {
        double r = tried->link / before->link;
        bool shared = r > 0.8 && r < 1.25;
        if (bound || !shared) {
            a->lim.per_method = !shared;
        }
    }
    a->trial = -1;
}

/*
 * The method worth a trial, or -1: one the model would prefer if the link
 * carried ZM_AUTO_PROBE_GAIN times what it did.  Only a trial shows that a
 * receiver decodes one method faster than another, or that the link got
 * faster while the CPU, not the link, held the current method.
 */
/*
 * Held by the CPU: the next cheaper method (by encoding cost) that was
 * never seen held by the CPU, or -1.  Its cost here is not only encoding:
 * sending, and on one host the receiver, may make raw pages cheaper than
 * the model thinks, which only running them shows.
 */
static int cheaper_untried(const struct zm_auto *a, unsigned cur)
{
    int pick = -1;

    for (unsigned i = 0; i < a->n; i++) {
        const struct zm_auto_method *m = &a->m[i];
        if (i != cur && m->samples > 0 && m->per_core == 0 &&
            m->cpu_per_byte < a->m[cur].cpu_per_byte &&
            (pick < 0 || m->cpu_per_byte > a->m[pick].cpu_per_byte)) {
            pick = (int)i;
        }
    }
    return pick;
}

static int trial_candidate(const struct zm_auto *a, unsigned cur)
{
    double bar = zm_auto_predict(&a->m[cur], &a->lim) * ZM_AUTO_HYSTERESIS;
    double best = bar;
    int pick = -1;

    if (a->lim.link <= 0) {
        return -1; /* the link never limited: the model needs no trial */
    }
    for (unsigned i = 0; i < a->n; i++) {
        struct zm_auto_method m = a->m[i];
        struct zm_auto_limits hope = a->lim;
        if (i == cur || m.samples == 0) {
            continue;
        }
        hope.link = (a->lim.per_method && m.link > 0 ? m.link : a->lim.link) *
                    ZM_AUTO_PROBE_GAIN;
        m.link = hope.link;
        double rate = zm_auto_predict(&m, &hope);
        if (rate > best) {
            best = rate;
            pick = (int)i;
        }
    }
    return pick;
}

static void record(struct zm_auto *a, double now, double wall)
{
    if (a->points == a->points_cap) {
        unsigned cap = a->points_cap ? 2 * a->points_cap : 256;
        void *p = cap <= 1u << 16
                      ? realloc(a->timeline, cap * sizeof(*a->timeline))
                      : NULL;
        if (!p) {
            return; /* the history ends there; the migration goes on */
        }
        a->timeline = p;
        a->points_cap = cap;
    }
    const struct zm_auto_method *m = &a->m[atomic_load(&a->current)];
    a->timeline[a->points++] = (struct zm_auto_point){
        .sizeof_point = sizeof(struct zm_auto_point),
        .time_ms = (now - a->t0) * 1e3,
        .codec = m->codec,
        .level = m->level,
        .raw_mbps = (double)a->win_raw * 8 / wall / 1e6,
        .wire_mbps = (double)a->win_wire * 8 / wall / 1e6,
        .link_mbps = a->lim.link * 8 / 1e6,
        .cores = a->lim.cores,
    };
}

/* The method for the next window: the model's choice, or one on trial. */
static void switch_method(struct zm_auto *a, unsigned cur, bool bound,
                          bool cpu_bound, double now)
{
    bool was_trial = a->trial >= 0;

    if (was_trial) {
        end_trial(a, bound);
    }
    refresh(a);
    unsigned next = zm_auto_choose(a->m, a->n, cur, &a->lim);
    /* A trial's verdict stands at once; otherwise the same method must win
     * ZM_AUTO_CONFIRM windows in a row: one window's noise moves nothing. */
    if (was_trial || next == cur || a->points < ZM_AUTO_FIRST_DECISIONS) {
        a->pending_wins =
            0; /* the first ones are urgent: the start is a guess */
    } else {
        a->pending_wins = next == a->pending ? a->pending_wins + 1 : 1;
        a->pending = next;
        if (a->pending_wins < ZM_AUTO_CONFIRM) {
            next = cur;
        } else {
            a->pending_wins = 0;
        }
    }
    if (was_trial) {
        /* A trial that won resets the back-off; one that lost doubles it. */
        a->probe_after = next == cur
                             ? ZM_AUTO_PROBE_MIN
                             : fmin(2 * a->probe_after, ZM_AUTO_PROBE_MAX);
    }
    /*
     * Trials, when a link that waits could be the receiver (TCP says its
     * window was full, or cannot say), or when the CPU, not the link, held
     * the method (the link may have got faster).  A network link that TCP
     * finds full needs none: the link is the same for every method.
     */
    double receiver =
        a->receiver_limited ? a->receiver_limited(a->link_ctx) : -1;
    bool worth = receiver < 0 || receiver >= RECEIVER_LIMITED;
    int trial = -1;
    if (next == cur && a->pending_wins == 0 && !atomic_load(&a->frozen) &&
        now - a->probe_at >= a->probe_after) {
        trial = cpu_bound        ? cheaper_untried(a, cur)
                : bound && worth ? trial_candidate(a, cur)
                                 : -1;
    }
    if (trial >= 0) {
        a->trial = trial;
        a->trial_from = cur;
        a->probe_at = now;
        next = (unsigned)trial;
    }
    if (next != cur) {
        rebase(a, next);
        /* A trial's one window is its measure; else wait one out. */
        a->held = trial >= 0 ? 0 : 1;
    }
}

/* The end of a window: what limited it, and the method for the next. */
static void decide(struct zm_auto *a, double now)
{
    double wall = now - a->win_start;
    double cpu = a->win_cpu;
    uint64_t idle = 0, cpus = 0;

    if (a->offload_cpu) {
        double pool = a->offload_cpu(a->offload_ctx);
        cpu += pool - a->win_offload_cpu0;
        a->win_offload_cpu0 = pool;
    }
    double cores = a->max_cores;
    if (read_idle(&idle, &cpus) == 0) {
        /* Unless the CPUs we may use changed (then next time). */
        if (cpus == a->idle_cpus && idle >= a->idle0) {
            double idle_cores =
                (double)(idle - a->idle0) / (double)sysconf(_SC_CLK_TCK) / wall;
            cores = fmin(cores, cpu / wall + idle_cores);
        }
        a->idle0 = idle;
        a->idle_cpus = cpus;
    }
    if (a->win_wire > 0) {
        a->lim.send_cpu_per_byte = a->win_send_cpu / (double)a->win_wire;
    }
    unsigned cur = atomic_load(&a->current);
    bool bound = update_link(a, &a->m[cur], wall);
    /*
     * What we used plus what stayed idle is what compression could have
     * had, when it wanted all it could get: the channels busy, not waiting
     * for the link.  Otherwise it only says "at least": other processes
     * used what we did not ask for, and would share it if we did.
     */
    bool cpu_bound =
        !bound && a->win_busy >= CPU_BOUND_BUSY * a->channels * wall;
    if (cpu_bound) {
        a->lim.cores = fmax(0.05, (a->lim.cores + cores) / 2);
        /* What the method delivers on these cores, all costs included;
         * not from the window after a switch, which mixes two methods. */
        struct zm_auto_method *m = &a->m[cur];
        double seen = (double)a->win_raw / wall / a->lim.cores;
        if (!a->held) {
            m->per_core = m->per_core > 0 ? 0.5 * (m->per_core + seen) : seen;
        }
    } else {
        a->lim.cores = fmax(a->lim.cores, cores);
    }
    if (a->trial >= 0 || a->held == 0) {
        switch_method(a, cur, bound, cpu_bound, now);
    } else {
        a->held--; /* the window after a switch mixes both methods */
    }
    record(a, now, wall);
    a->win_start = now;
    a->win_cpu = a->win_send_cpu = a->win_blocked = a->win_busy = 0;
    a->win_raw = a->win_wire = a->win_batches = 0;
}

void zm_auto_end(struct zm_auto *a, const struct zm_auto_batch *b)
{
    double now = zm_now();

    pthread_mutex_lock(&a->lock);
    struct zm_auto_method *m = &a->m[b->method];
    m->batches++;
    m->raw_bytes += b->raw_bytes;
    /* Batches still in flight from before a switch tell nothing new. */
    if (b->raw_bytes > 0 && b->method == atomic_load(&a->current)) {
        if (b->encode_cpu > 0) { /* a backend may not say */
            follow(&m->cpu_per_byte, b->encode_cpu / (double)b->raw_bytes,
                   m->samples, ALPHA_CURRENT);
        }
        follow(&m->wire_per_byte,
               fmin((double)b->wire_bytes / (double)b->raw_bytes, RAW_MAX),
               m->samples, ALPHA_CURRENT);
        m->samples++;
        m->last_measured = now;
    }
    a->win_cpu += b->thread_cpu;
    a->win_send_cpu += b->send_cpu;
    a->win_blocked += b->blocked;
    a->win_busy += b->busy;
    a->win_raw += b->raw_bytes;
    a->win_wire += b->wire_bytes;
    a->win_batches++;
    /* The first window is short: the method to start with is a guess. */
    double window = a->points ? ZM_AUTO_WINDOW : ZM_AUTO_FIRST_WINDOW;
    if (now - a->win_start >= window && a->win_batches >= 4) {
        decide(a, now);
    }
    pthread_mutex_unlock(&a->lock);
}

/* Copies items of size bytes to the caller's stride-sized structs. */
static void copy_out(void *out, unsigned max, const void *items, size_t size,
                     unsigned n)
{
    size_t stride = max ? zm_sized_size(out) : 0;

    for (unsigned i = 0; i < n && i < max; i++) {
        void *dst = (char *)out + i * stride;
        memcpy(dst, &stride, sizeof(stride));
        zm_sized_out(dst, (const char *)items + i * size, size);
    }
}

unsigned zm_auto_timeline(struct zm_auto *a, struct zm_auto_point *out,
                          unsigned max)
{
    if (!a->n) {
        return 0;
    }
    pthread_mutex_lock(&a->lock);
    unsigned n = a->points;
    copy_out(out, max, a->timeline, sizeof(*a->timeline), n);
    pthread_mutex_unlock(&a->lock);
    return n;
}

unsigned zm_auto_methods(struct zm_auto *a, struct zm_auto_method_info *out,
                         unsigned max)
{
    struct zm_auto_method_info info[ZM_AUTO_MAX_METHODS];

    if (!a->n) {
        return 0;
    }
    pthread_mutex_lock(&a->lock);
    refresh(a);
    for (unsigned i = 0; i < a->n; i++) {
        const struct zm_auto_method *m = &a->m[i];
        info[i] = (struct zm_auto_method_info){
            .sizeof_info = sizeof(info[i]),
            .codec = m->codec,
            .level = m->level,
            .batches = m->batches,
            .raw_bytes = m->raw_bytes,
            .cpu_ns_per_byte = m->cpu_per_byte * 1e9,
            .wire_per_byte = m->wire_per_byte,
        };
    }
    copy_out(out, max, info, sizeof(info[0]), a->n);
    pthread_mutex_unlock(&a->lock);
    return a->n;
}
