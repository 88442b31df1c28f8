/*
 * compress_auto.h - --compression auto: the method of each batch
 *
 * For every candidate (none, lz4, ISA-L deflate, zstd 1/3/6/9) the
 * controller knows the CPU one byte of guest pages costs to encode and the
 * wire bytes it becomes: the method in use from its own batches, the
 * others as relations to it, measured on a few batches encoded once more
 * with them (the same pages, so the relation holds whatever the data).
 * Every window (ZM_AUTO_WINDOW) it measures what limits delivery:
 *   - the cores: the CPU its threads used plus what stayed idle on the
 *     CPUs it may run on, lowered only by windows the CPU held it (a
 *     process taking a core, a receiver on the same host);
 *   - the link: what it took (written, less what the socket queues grew)
 *     in a window the channels waited on it half their busy time, or the
 *     queues grew by a tenth of what was written.
 * Each method would deliver min(cores / cost, link / wire) guest bytes a
 * second, where what a method delivered per core when the CPU held it
 * replaces the model's cost (and calibrates the others'); the controller
 * moves to the best when it beats the current one by ZM_AUTO_HYSTERESIS
 * in ZM_AUTO_CONFIRM windows in a row.  What the model cannot see, a
 * trial shows: a full link that TCP says is the receiver's window (a
 * receiver that decodes some methods faster than others; then each
 * method keeps its own link figure), and, when the CPU holds the method,
 * the next cheaper one.  Zero pages never reach a codec; hopeless batches
 * go raw whatever the method (doc/compression-auto.md).
 */
#ifndef ZM_COMPRESS_AUTO_H
#define ZM_COMPRESS_AUTO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "zmigrate.h"

#define ZM_AUTO_MAX_METHODS 8
/* Seconds of measurement behind each decision; the first is shorter. */
#define ZM_AUTO_WINDOW 0.25
#define ZM_AUTO_FIRST_WINDOW 0.05
/* The best method must promise this much more than the current one, in
 * ZM_AUTO_CONFIRM windows in a row. */
#define ZM_AUTO_HYSTERESIS 1.04
#define ZM_AUTO_CONFIRM 2
/* Decisions taken at once, in the first windows. */
#define ZM_AUTO_FIRST_DECISIONS 3
/* Channels waiting on the link this share of their busy time: link-bound
 * (less is also the bursts of channels that finish packets at once). */
#define ZM_AUTO_LINK_BOUND 0.5
/* Share of the cores that measuring the other methods may cost: more in
 * the first seconds, when nothing is known yet. */
#define ZM_AUTO_SAMPLE_BUDGET 0.01
#define ZM_AUTO_SAMPLE_BUDGET_START 0.02
#define ZM_AUTO_LEARNING 2.0
/* Trials of another method: how much more link it may hope for, and
 * the back-off between them, doubling while they lose. */
#define ZM_AUTO_PROBE_GAIN 3.0
#define ZM_AUTO_PROBE_MIN 0.5
#define ZM_AUTO_PROBE_MAX 32.0

/* A candidate and what it was measured to cost. */
struct zm_auto_method {
    int codec, level;
    double cpu_per_byte;  /* encode CPU seconds per byte of normal pages */
    double wire_per_byte; /* packet bytes per byte of normal pages */
    double link;          /* wire bytes/s the link took when it limited
                           * this method (0: it never did) */
    /* Guest bytes/s per core it delivered when the CPU limited it (0: not
     * seen): what it really does, send path, receiver and all. */
    double per_core;
    unsigned samples; /* batches behind the figures (0: unknown) */
    /* Against the method in use, on the same pages (1 for that one):
     * relations hold better than figures while the data changes. */
    double rel_cpu, rel_wire;
    double last_measured;
    uint64_t batches, raw_bytes; /* sent with it */
};

/* What limits delivery, as last measured. */
struct zm_auto_limits {
    double cores;             /* CPU compression can get */
    double link;              /* wire bytes/s; 0: not known to limit */
    double send_cpu_per_byte; /* CPU seconds to send a wire byte */
    /* The link depends on the method (a receiver short of CPU): use each
     * method's own figure where it has one. */
    bool per_method;
    /* What the CPU really gave over what encoding costs predict, as seen
     * on a method held by the CPU (1 until then): sending, and on one
     * host the receiver, take their share of the cores too. */
    double calibration;
};

/* Pure: guest bytes/s that m would deliver under lim. */
double zm_auto_predict(const struct zm_auto_method *m,
                       const struct zm_auto_limits *lim);

/*
 * Pure: the method to use next, given the current one: the best of the
 * measured methods when it beats current by ZM_AUTO_HYSTERESIS.
 */
unsigned zm_auto_choose(const struct zm_auto_method *methods, unsigned n,
                        unsigned current, const struct zm_auto_limits *lim);

/* One batch, as the channel that sent it measured it. */
struct zm_auto_batch {
    unsigned method;
    uint64_t raw_bytes;  /* its normal pages' bytes */
    uint64_t wire_bytes; /* the packet */
    double encode_cpu;   /* CPU seconds to make the packet, wherever */
    double send_cpu;     /* and to send it */
    double thread_cpu;   /* of those, the channel thread's own */
    double blocked;      /* seconds waiting for the link or max-bandwidth */
    double busy;         /* wall seconds from taking the batch to sent */
};

/* The controller of one migration, shared by its channels. */
struct zm_auto {
    pthread_mutex_t lock;
    struct zm_auto_method m[ZM_AUTO_MAX_METHODS];
    unsigned n;
    _Atomic unsigned current;
    unsigned channels;
    double max_cores; /* CPUs we may run on, or fewer compressing threads */
    double (*offload_cpu)(void *ctx); /* CPU seconds of a pool, or NULL */
    void *offload_ctx;
    /* Bytes written to the channels that the link has not taken yet; the
     * share of the time sending that the receiver's window was full (< 0:
     * unknown). */
    double (*queued)(void *ctx);
    double (*receiver_limited)(void *ctx);
    void *link_ctx;
    double queued0;        /* at the window's start */
    unsigned pending;      /* the method that won the last window, ... */
    unsigned pending_wins; /* ... and how many windows in a row */

    struct zm_auto_limits lim;
    unsigned held;       /* windows to wait after a switch */
    atomic_bool frozen;  /* the guest is stopped: no samples, no trials */
    int trial;           /* the method on trial this window, or -1 */
    unsigned trial_from; /* the method before it */
    double probe_at;     /* when the last trial began */
    double probe_after;  /* the back-off between trials */

    /* The window being measured. */
    double win_start, win_cpu, win_send_cpu, win_blocked, win_busy;
    double win_offload_cpu0;
    uint64_t win_raw, win_wire, win_batches;
    uint64_t idle0, idle_cpus; /* /proc/stat idle ticks, CPUs counted */
    double t0;

    struct zm_auto_point *timeline;
    unsigned points, points_cap;
};

/*
 * Sets a up with the methods of codecs (bit 1 << id, as the destination
 * decodes them and this build has them) for channels data channels.  When
 * offloaded, engine_threads (0: unknown) compress, and offload_cpu reads
 * the backend's host CPU.
 */
int zm_auto_init(struct zm_auto *a, uint32_t codecs, unsigned channels,
                 bool offloaded, unsigned engine_threads,
                 double (*offload_cpu)(void *), void *ctx);

/*
 * What the transport can say about the link, before the channels start:
 * queued(ctx), the bytes written to the channels that the link has not
 * taken yet (socket buffers), so that the link is measured by what it
 * took, not by what the buffers swallowed; receiver_limited(ctx), the
 * share of the time spent sending since the last call that the receiver's
 * window was full, or < 0 when unknown (then trials find it out).
 */
void zm_auto_set_link(struct zm_auto *a, double (*queued)(void *),
                      double (*receiver_limited)(void *), void *ctx);
void zm_auto_fini(struct zm_auto *a);

/*
 * The method for the next batch, set on enc; *sample is another method to
 * measure on the same pages once the batch is sent (zm_auto_sample()), or
 * -1.
 */
unsigned zm_auto_begin(struct zm_auto *a, zm_encoder *enc, int *sample);

/*
 * Encodes the pages of a batch just sent with method, into scratch (cap
 * bytes, zm_encoder_bound()), to measure it; sent is that batch's report.
 * enc comes back to its method.
 */
void zm_auto_sample(struct zm_auto *a, zm_encoder *enc, int method,
                    const struct zm_page_ref *pages, unsigned count,
                    uint32_t region, unsigned flags, void *scratch, size_t cap,
                    const struct zm_auto_batch *sent);

/* The guest stopped: what is left is downtime, no time to explore. */
void zm_auto_freeze(struct zm_auto *a);

/* Accounts a sent batch; decides at the end of each window. */
void zm_auto_end(struct zm_auto *a, const struct zm_auto_batch *b);

/* Copies up to max timeline points; returns how many there are. */
unsigned zm_auto_timeline(struct zm_auto *a, struct zm_auto_point *out,
                          unsigned max);

/* Copies up to max methods' reports; returns how many there are. */
unsigned zm_auto_methods(struct zm_auto *a, struct zm_auto_method_info *out,
                         unsigned max);

#endif /* ZM_COMPRESS_AUTO_H */
