/*
 * source.c - the sending side of a live migration
 *
 * The caller's thread runs the rounds (their data path is in
 * source_rounds.c), decides when to stop the guest (convergence.c), and
 * switches over: the last pages, the device state, END, and VERIFY when
 * verifying; from the last of those on, only the destination's FAIL
 * resumes the guest here, so that two guests never run.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/endian_util.h"
#include "common/error.h"
#include "common/sized.h"
#include "common/time.h"
#include "convergence.h"
#include "source.h"

/* ---- the object ---- */

/*
 * The offload backend params ask for: the embedder's own, with
 * params.offload as its arguments, or "NAME[:ARGS]" of an in-tree one.
 */
static int choose_offload(zm_source *src)
{
    const char *spec = src->p.offload;
    const char *args = spec;

    src->p.offload = NULL; /* the caller's string: copied below */
    src->offload_ops = src->p.offload_ops;
    if (!src->offload_ops && spec) {
        const char *colon = strchr(spec, ':');
        size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
        char name[32];
        if (len >= sizeof(name)) {
            return zm_error(-EINVAL, "offload '%s': no such backend", spec);
        }
        memcpy(name, spec, len);
        name[len] = '\0';
        src->offload_ops = zm_offload_by_name(name);
        if (!src->offload_ops) {
            return zm_error(
                -EINVAL, "offload '%s': no such backend (cpu, emulated)", name);
        }
        args = colon ? colon + 1 : "";
    }
    if (src->offload_ops) {
        src->offload_args = strdup(args ? args : "");
        if (!src->offload_args) {
            return zm_error(-ENOMEM, "out of memory");
        }
    }
    return 0;
}

/* Takes the offload's counters into the stats; under stats_lock. */
static void offload_stats(zm_source *src)
{
    if (src->offload) {
        zm_offload_counters(src->offload, &src->stats.offloaded,
                            &src->stats.offload_fallbacks,
                            &src->stats.offload_failures);
    }
}

ZM_API int zm_source_new(const struct zm_params *params,
                         const struct zm_source_hooks *hooks, zm_source **out)
{
    zm_source *src = calloc(1, sizeof(*src));
    int ret;

    if (!src) {
        return zm_error(-ENOMEM, "out of memory");
    }
    if ((ret = zm_params_copy(&src->p, params)) < 0 ||
        (ret = zm_params_check(&src->p)) < 0 ||
        (ret = zm_hooks_copy(&src->hooks, sizeof(src->hooks), hooks)) < 0) {
        free(src);
        return ret;
    }
    zm_pageset_init(&src->pages, src->p.page_size);
    src->stats.sizeof_stats = sizeof(src->stats);
    if ((ret = choose_offload(src)) < 0) {
        free(src);
        return ret;
    }
    if (src->p.dirty_tracking == ZM_TRACKING_EMBEDDER &&
        !src->hooks.dirty_log) {
        free(src->offload_args);
        free(src);
        return zm_error(-EINVAL, "embedder dirty tracking needs the "
                                 "dirty_log hook");
    }
    pthread_mutex_init(&src->lock, NULL);
    pthread_mutex_init(&src->write_lock, NULL);
    pthread_mutex_init(&src->stats_lock, NULL);
    zm_ratelimit_init(&src->rate, src->p.max_bandwidth);
    pthread_cond_init(&src->work_cond, NULL);
    /* send_round() waits on it with a deadline to read the dirty log. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&src->idle_cond, &attr);
    pthread_condattr_destroy(&attr);
    *out = src;
    return 0;
}

ZM_API int zm_source_add_region(zm_source *src, const char *name, void *base,
                                size_t size)
{
    int ret;

    if ((ret = zm_region_name_check(name)) < 0 ||
        (ret = zm_pageset_add(&src->pages, name, base, size)) < 0) {
        return ret;
    }
    pthread_mutex_lock(&src->stats_lock);
    src->stats.total += size;
    pthread_mutex_unlock(&src->stats_lock);
    return 0;
}

ZM_API void zm_source_cancel(zm_source *src)
{
    /* One critical section with switchover()'s commit: a cancel is either
     * before END (and fails the migration) or after it (and is ignored). */
    pthread_mutex_lock(&src->lock);
    if (!src->committed) {
        atomic_store(&src->cancelled, true);
        src_fail_locked(src, zm_error(-ECANCELED, "migration cancelled"));
    }
    pthread_mutex_unlock(&src->lock);
}

ZM_API int zm_source_stats(zm_source *src, struct zm_stats *stats)
{
    pthread_mutex_lock(&src->stats_lock);
    offload_stats(src);
    int ret = zm_sized_out(stats, &src->stats, sizeof(src->stats));
    pthread_mutex_unlock(&src->stats_lock);
    return ret < 0 ? zm_error(ret, "zm_stats: sizeof_stats is %zu",
                              stats->sizeof_stats)
                   : 0;
}

ZM_API int zm_source_rounds(zm_source *src, struct zm_round *rounds,
                            unsigned cap)
{
    size_t stride = rounds && cap ? rounds[0].sizeof_round : 0;

    if (rounds && cap && stride < sizeof(size_t)) {
        return zm_error(-EINVAL, "zm_round: sizeof_round is %zu", stride);
    }
    pthread_mutex_lock(&src->stats_lock);
    unsigned n = src->nrounds;
    for (unsigned i = 0; rounds && i < n && i < cap; i++) {
        struct zm_round *out = (void *)((char *)rounds + i * stride);
        memcpy(out, &stride, sizeof(stride));
        zm_sized_out(out, &src->rounds[i], sizeof(src->rounds[i]));
    }
    pthread_mutex_unlock(&src->stats_lock);
    return (int)n;
}

/*
 * Appends the round whose counters stats_lock's round_* fields hold.
 * Under stats_lock.  Out of memory, the history ends (a gap would break
 * its sums); the migration goes on.
 */
static void record_round(zm_source *src, double start, uint64_t dirty_after,
                         double expected_ms, bool final)
{
    if (src->rounds_cut) {
        return;
    }
    if (src->nrounds == src->rounds_cap) {
        unsigned cap = src->rounds_cap ? 2 * src->rounds_cap : 16;
        struct zm_round *r = realloc(src->rounds, cap * sizeof(*r));
        if (!r) {
            src->rounds_cut = true;
            return;
        }
        src->rounds = r;
        src->rounds_cap = cap;
    }
    src->rounds[src->nrounds++] = (struct zm_round){
        .sizeof_round = sizeof(struct zm_round),
        .start_ms = (start - src->t_run) * 1000,
        .time_ms = (zm_now() - start) * 1000,
        .pages = src->round_pages,
        .zero_pages = src->round_zero_pages,
        .wire_bytes = src->round_wire_bytes,
        .skipped = src->round_skipped,
        .dirty_after = dirty_after,
        .expected_downtime_ms = (uint64_t)expected_ms,
        .final = final,
    };
}

/* Zeroes the round_* counters for a round about to start. */
static void reset_round(zm_source *src)
{
    pthread_mutex_lock(&src->stats_lock);
    src->round_wire_bytes = 0;
    src->round_pages = 0;
    src->round_zero_pages = 0;
    src->round_skipped = 0;
    pthread_mutex_unlock(&src->stats_lock);
}

static double pool_cpu(void *ctx)
{
    return zm_offload_cpu_seconds(ctx);
}

/* Bytes the data channels wrote that their links have not taken. */
static double channels_queued(void *ctx)
{
    zm_source *src = ctx;
    double bytes = 0;

    for (unsigned i = 0; i < src->nchans; i++) {
        bytes += (double)zm_conn_unsent(src->chans[i].c.conn);
    }
    return bytes;
}

/*
 * The share of the data channels' TCP sending time, since the last call,
 * that the receiver's window was full; -1 when TCP cannot say.
 */
static double channels_receiver_limited(void *ctx)
{
    zm_source *src = ctx;
    uint64_t busy = 0, rwnd = 0;

    for (unsigned i = 0; i < src->nchans; i++) {
        uint64_t b, r;
        if (zm_conn_tcp_limits(src->chans[i].c.conn, &b, &r) < 0) {
            return -1;
        }
        busy += b;
        rwnd += r;
    }
    double share = busy > src->tcp_busy_us
                       ? (double)(rwnd - src->tcp_rwnd_us) /
                             (double)(busy - src->tcp_busy_us)
                       : 0;
    src->tcp_busy_us = busy;
    src->tcp_rwnd_us = rwnd;
    return share;
}

/* --compression auto's controller, for the codecs the peer decodes. */
static int open_auto(zm_source *src)
{
    struct zm_auto *a = malloc(sizeof(*a));

    if (!a) {
        return zm_error(-ENOMEM, "out of memory");
    }
    struct zm_offload *off = src->offload;
    int ret = zm_auto_init(a, src->peer_codecs, src->nchans, off != NULL,
                           off ? zm_offload_threads(off) : 0,
                           off ? pool_cpu : NULL, off);
    if (ret < 0) {
        free(a);
        return ret;
    }
    /* One stream (file:) has no link to measure. */
    if (!src->one_stream) {
        zm_auto_set_link(a, channels_queued, channels_receiver_limited, src);
    }
    pthread_mutex_lock(&src->stats_lock);
    src->autoc = a;
    pthread_mutex_unlock(&src->stats_lock);
    return 0;
}

/* The last run's controller, when the next run starts or the source goes. */
static void free_auto(zm_source *src)
{
    pthread_mutex_lock(&src->stats_lock);
    struct zm_auto *a = src->autoc;
    src->autoc = NULL;
    pthread_mutex_unlock(&src->stats_lock);
    if (a) {
        zm_auto_fini(a);
        free(a);
    }
}

ZM_API int zm_source_auto_timeline(zm_source *src, struct zm_auto_point *points,
                                   unsigned cap)
{
    if (points && cap && points[0].sizeof_point < sizeof(size_t)) {
        return zm_error(-EINVAL, "zm_auto_point: sizeof_point is %zu",
                        points[0].sizeof_point);
    }
    pthread_mutex_lock(&src->stats_lock);
    unsigned n =
        src->autoc ? zm_auto_timeline(src->autoc, points, points ? cap : 0) : 0;
    pthread_mutex_unlock(&src->stats_lock);
    return (int)n;
}

ZM_API int zm_source_auto_methods(zm_source *src,
                                  struct zm_auto_method_info *methods,
                                  unsigned cap)
{
    if (methods && cap && methods[0].sizeof_info < sizeof(size_t)) {
        return zm_error(-EINVAL, "zm_auto_method_info: sizeof_info is %zu",
                        methods[0].sizeof_info);
    }
    pthread_mutex_lock(&src->stats_lock);
    unsigned n = src->autoc
                     ? zm_auto_methods(src->autoc, methods, methods ? cap : 0)
                     : 0;
    pthread_mutex_unlock(&src->stats_lock);
    return (int)n;
}

ZM_API void zm_source_free(zm_source *src)
{
    if (!src) {
        return;
    }
    free_auto(src);
    free(src->rounds);
    free(src->offload_args);
    zm_pageset_free(&src->pages);
    pthread_mutex_destroy(&src->lock);
    pthread_mutex_destroy(&src->write_lock);
    pthread_mutex_destroy(&src->stats_lock);
    pthread_cond_destroy(&src->work_cond);
    pthread_cond_destroy(&src->idle_cond);
    zm_ratelimit_destroy(&src->rate);
    free(src);
}

static int start_tracking(zm_source *src)
{
    int kind = src->p.dirty_tracking;
    struct zm_dirty_range ranges[ZM_MAX_REGIONS];

    for (unsigned i = 0; i < src->pages.count; i++) {
        ranges[i] = (struct zm_dirty_range){ src->pages.regions[i].base,
                                             src->pages.regions[i].size };
    }
    if (kind == ZM_TRACKING_EMBEDDER ||
        (kind == ZM_TRACKING_AUTO && src->hooks.dirty_log)) {
        int ret = zm_dirty_new_embedder(src->hooks.dirty_log, src->hooks.opaque,
                                        ranges, src->pages.count,
                                        src->p.page_size, &src->tracker);
        /* Reset the embedder's log: round 0 sends everything anyway. */
        int64_t dirty =
            ret < 0 ? ret : zm_pageset_collect(&src->pages, src->tracker);
        return dirty < 0 ? (int)dirty : 0;
    }
    enum zm_dirty_kind dk = kind == ZM_TRACKING_UFFD_WP ? ZM_DIRTY_UFFD_WP
                            : kind == ZM_TRACKING_SOFT_DIRTY
                                ? ZM_DIRTY_SOFT_DIRTY
                                : ZM_DIRTY_AUTO;
    return zm_dirty_new(dk, ranges, src->pages.count, src->p.page_size,
                        &src->tracker);
}

/*
 * Connects one channel, stores it in *slot under the lock that fail()
 * takes to shut connections down, and sends its HELLO.
 */
static int open_channel(zm_source *src, const struct zm_uri *uri,
                        struct zm_hello *hello, unsigned index, zm_conn **slot)
{
    unsigned char buf[ZM_HELLO_SIZE];
    zm_conn *conn;
    int ret = zm_conn_connect(uri, &src->cancelled, &conn);

    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&src->lock);
    *slot = conn;
    if (src->quit) {
        zm_conn_shutdown(conn); /* cancelled while connecting */
    }
    pthread_mutex_unlock(&src->lock);
    hello->channel = (uint16_t)index;
    zm_hello_encode(hello, buf);
    struct iovec iov = { buf, sizeof(buf) };
    return zm_frame_write(conn, ZM_FRAME_HELLO, &iov, 1);
}

/* LAYOUT on the main channel, and the destination's ACCEPT. */
static int send_layout(zm_source *src)
{
    struct zm_layout_region *layout = calloc(src->pages.count, sizeof(*layout));
    unsigned char *body = malloc(ZM_LAYOUT_MAX_SIZE + ZM_FRAME_CONTROL_MAX);
    ssize_t len = -ENOMEM;

    if (layout && body) {
        for (unsigned i = 0; i < src->pages.count; i++) {
            memcpy(layout[i].name, src->pages.regions[i].name,
                   sizeof(layout[i].name));
            layout[i].size = src->pages.regions[i].size;
        }
        len = zm_layout_encode(layout, src->pages.count, body,
                               ZM_LAYOUT_MAX_SIZE);
    }
    int ret = len < 0 ? (int)len : 0;
    if (ret == 0) {
        struct iovec iov = { body, (size_t)len };
        ret = zm_frame_write(src->main, ZM_FRAME_LAYOUT, &iov, 1);
    }
    if (ret == 0 && !src->one_way) {
        uint32_t n;
        ret = zm_frame_expect(src->main, ZM_FRAME_ACCEPT, body,
                              ZM_FRAME_CONTROL_MAX, &n);
        /* The codecs it decodes; a peer that does not say takes HELLO's. */
        src->peer_codecs =
            ret == 0 && n >= 4 ? zm_get_le32(body) : 1u << src->hello_codec;
    } else if (ret == 0) {
        /* A file: whoever restores it needs the codecs we use. */
        for (int id = 0; id < ZM_CODEC_COUNT; id++) {
            src->peer_codecs |= zm_codec_available(id) ? 1u << id : 0;
        }
    }
    free(layout);
    free(body);
    return ret == -ENOMEM ? zm_error(ret, "out of memory") : ret;
}

static int connect_channels(zm_source *src, const struct zm_uri *uri)
{
    bool automatic = src->p.compression == ZM_COMPRESSION_AUTO;
    struct zm_hello hello = {
        .channels = (uint16_t)src->p.multifd_channels,
        .page_size = src->p.page_size,
        .max_pages = src->p.batch_pages,
        /* auto: any codec the destination decodes (its ACCEPT says). */
        .codec = (uint8_t)(automatic ? ZM_CODEC_NONE : src->p.compression),
        .flags = src->p.verify ? ZM_HELLO_VERIFY : 0,
        .level = (int16_t)(src->p.compression_level == ZM_LEVEL_DEFAULT
                               ? 0
                               : src->p.compression_level),
    };
    int ret;

    src->hello_codec = hello.codec;
    src->peer_codecs = 0;

    if (getrandom(hello.session, sizeof(hello.session), 0) !=
        (ssize_t)sizeof(hello.session)) {
        int err = errno ? -errno : -EIO;
        return zm_error(err, "no random bytes for the session id: %s",
                        zm_strerror(err));
    }
    if ((ret = open_channel(src, uri, &hello, 0, &src->main)) < 0) {
        return ret;
    }
    src->one_stream = zm_conn_caps(src->main) & ZM_CONN_ONE_STREAM;
    src->one_way = zm_conn_caps(src->main) & ZM_CONN_ONE_WAY;
    if ((ret = send_layout(src)) < 0) {
        return ret;
    }
    for (unsigned i = 0; i < src->nchans; i++) {
        struct src_channel *ch = &src->chans[i];
        if (src->one_stream) {
            ch->c.conn = src->main;
        } else if ((ret = open_channel(src, uri, &hello, ch->c.index,
                                       &ch->c.conn)) < 0) {
            return ret;
        }
    }
    return 0;
}

/* The offload backend, and each channel's queue on it, when asked for. */
static int open_offload(zm_source *src)
{
    struct zm_offload *off;
    int ret;

    if (!src->offload_ops) {
        return 0;
    }
    ret = zm_offload_open(src->offload_ops, src->offload_args, src->p.page_size,
                          &off);
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&src->stats_lock);
    src->offload = off;
    pthread_mutex_unlock(&src->stats_lock);
    for (unsigned i = 0; i < src->nchans; i++) {
        struct src_channel *ch = &src->chans[i];
        if ((ret = zm_offloader_new(off, ch->enc, ZM_SRC_OFFLOAD_SLOTS,
                                    src->p.batch_pages, &ch->off)) < 0) {
            return ret;
        }
    }
    return 0;
}

/* After the channel threads are joined. */
static void close_offload(zm_source *src)
{
    for (unsigned i = 0; i < src->nchans; i++) {
        zm_offloader_free(src->chans[i].off);
        src->chans[i].off = NULL;
    }
    double cpu = src->offload ? zm_offload_cpu_seconds(src->offload) : 0;
    pthread_mutex_lock(&src->stats_lock);
    offload_stats(src);
    src->offload_cpu = cpu;
    struct zm_offload *off = src->offload;
    src->offload = NULL;
    pthread_mutex_unlock(&src->stats_lock);
    zm_offload_close(off);
}

static int setup(zm_source *src, const char *uri_text)
{
    struct zm_uri uri;
    int ret;

    if (src->pages.count == 0) {
        return zm_error(-EINVAL, "no RAM regions registered");
    }
    if ((ret = zm_uri_parse(uri_text, &uri)) < 0) {
        return ret;
    }
    struct src_channel *chans = calloc(src->p.multifd_channels, sizeof(*chans));
    if (!chans) {
        return zm_error(-ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&src->lock); /* fail() walks them */
    src->chans = chans;
    src->nchans = src->p.multifd_channels;
    pthread_mutex_unlock(&src->lock);
    bool automatic = src->p.compression == ZM_COMPRESSION_AUTO;
    struct zm_encoder_options eo = {
        .sizeof_options = sizeof(eo),
        .codec = automatic ? ZM_CODEC_NONE : src->p.compression,
        .level = src->p.compression_level,
        .page_size = src->p.page_size,
        .max_pages = src->p.batch_pages,
    };
    for (unsigned i = 0; i < src->nchans; i++) {
        struct src_channel *ch = &src->chans[i];
        ch->src = src;
        ch->c.index = i + 1;
        if ((ret = zm_encoder_new(&eo, &ch->enc)) < 0) {
            return ret;
        }
        ch->cap = zm_encoder_bound(ch->enc);
        ch->packet = malloc(ch->cap);
        ch->scratch = automatic ? malloc(ch->cap) : NULL;
        if (!ch->packet || (automatic && !ch->scratch)) {
            return zm_error(-ENOMEM, "out of memory");
        }
    }
    if ((ret = open_offload(src)) < 0) {
        return ret;
    }
    if ((ret = start_tracking(src)) < 0) {
        return ret;
    }
    if ((ret = connect_channels(src, &uri)) < 0) {
        return ret;
    }
    if (automatic && (ret = open_auto(src)) < 0) {
        return ret;
    }
    for (unsigned i = 0; i < src->nchans; i++) {
        if ((ret = zm_chan_start(&src->chans[i].c, src_channel_thread,
                                 &src->chans[i])) < 0) {
            return ret;
        }
    }
    return 0;
}

static void set_status(zm_source *src, int status)
{
    pthread_mutex_lock(&src->stats_lock);
    src->stats.status = status;
    pthread_mutex_unlock(&src->stats_lock);
}

/*
 * Writes the last frame the destination needs before it may run the guest
 * (END, or VERIFY when verifying).  From here a cancel is ignored.  If the
 * write fails, the frame is incomplete at the destination, which cannot
 * complete: the commit is undone and the failure is an ordinary one.
 */
static int write_commit(zm_source *src, uint32_t type, struct iovec *iov,
                        int iovcnt)
{
    if (src->one_way) {
        return zm_frame_write(src->main, type, iov, iovcnt);
    }
    pthread_mutex_lock(&src->lock);
    if (src->failure.error) { /* a cancel just before: still ours */
        int err = src->failure.error;
        pthread_mutex_unlock(&src->lock);
        return err;
    }
    src->committed = true;
    pthread_mutex_unlock(&src->lock);
    int ret = zm_frame_write(src->main, type, iov, iovcnt);
    if (ret < 0) {
        pthread_mutex_lock(&src->lock);
        src->committed = false;
        pthread_mutex_unlock(&src->lock);
    }
    return ret;
}

/* VERIFY: a hash of every page, for the destination to compare. */
static int send_verify(zm_source *src)
{
    struct zm_verify_ram ram = { .n = src->pages.count,
                                 .page_size = src->p.page_size };

    for (unsigned i = 0; i < ram.n; i++) {
        ram.base[i] = src->pages.regions[i].base;
        ram.size[i] = src->pages.regions[i].size;
    }
    uint64_t *hashes = zm_verify_hashes(&ram);
    if (!hashes) {
        return -ENOMEM;
    }
    struct iovec iov = { hashes, zm_verify_pages(&ram) * sizeof(uint64_t) };
    int ret = write_commit(src, ZM_FRAME_VERIFY, &iov, 1);
    free(hashes);
    return ret;
}

/* DEVICE_STATE: what the embedder's save_state hook gives, if any. */
static int send_device_state(zm_source *src)
{
    unsigned char *state = NULL;
    ssize_t state_len = 0;

    if (src->hooks.save_state) {
        state = malloc(ZM_MAX_DEVICE_STATE);
        if (!state) {
            return zm_error(-ENOMEM, "out of memory for the device state");
        }
        state_len = src->hooks.save_state(src->hooks.opaque, state,
                                          ZM_MAX_DEVICE_STATE);
        if (state_len < 0 || state_len > (ssize_t)ZM_MAX_DEVICE_STATE) {
            free(state);
            return zm_error(state_len < 0 ? (int)state_len : -EOVERFLOW,
                            "the embedder could not save the device state");
        }
    }
    struct iovec iov = { state, (size_t)state_len };
    int ret =
        zm_frame_write(src->main, ZM_FRAME_DEVICE_STATE, &iov, state ? 1 : 0);
    free(state);
    return ret;
}

/*
 * Stops the guest, sends the rest (as round number round) and the device
 * state, then END and, when verifying, VERIFY, each answered by COMPLETE.
 */
static int switchover(zm_source *src, uint32_t round)
{
    int ret;
    int64_t dirty;

    set_status(src, ZM_STATUS_DEVICE);
    reset_round(src);
    double t_stop = zm_now();
    if (src->hooks.stop && (ret = src->hooks.stop(src->hooks.opaque)) < 0) {
        return zm_error(ret, "the embedder could not stop the guest");
    }
    src->stopped = true;
    if (src->autoc) {
        zm_auto_freeze(src->autoc);
    }
    if ((dirty = zm_pageset_collect(&src->pages, src->tracker)) < 0) {
        return (int)dirty;
    }
    if ((ret = src_send_round(src, round, true)) < 0) {
        return ret;
    }
    pthread_mutex_lock(&src->stats_lock);
    record_round(src, t_stop, 0, 0, true);
    /* It was sent, whatever becomes of the switchover. */
    src->stats.iterations = round + 1;
    pthread_mutex_unlock(&src->stats_lock);

    if ((ret = send_device_state(src)) < 0) {
        return ret;
    }

    unsigned char end[ZM_END_SIZE];
    pthread_mutex_lock(&src->stats_lock);
    zm_put_le64(end, src->stats.normal + src->stats.duplicate);
    pthread_mutex_unlock(&src->stats_lock);
    zm_put_le64(end + 8, round + 1);
    struct iovec iov = { end, sizeof(end) };
    /* With verify, the destination completes only on the whole VERIFY. */
    ret = src->p.verify ? zm_frame_write(src->main, ZM_FRAME_END, &iov, 1)
                        : write_commit(src, ZM_FRAME_END, &iov, 1);
    if (ret < 0) {
        return ret;
    }
    unsigned char reply[ZM_FRAME_CONTROL_MAX];
    uint32_t n;
    if (!src->one_way &&
        (ret = zm_frame_expect(src->main, ZM_FRAME_COMPLETE, reply,
                               sizeof(reply), &n)) < 0) {
        return ret;
    }
    if (src->p.verify) {
        /* The guest is still stopped: its RAM is what the peer has. */
        if ((ret = send_verify(src)) < 0) {
            return ret;
        }
        if (!src->one_way &&
            (ret = zm_frame_expect(src->main, ZM_FRAME_COMPLETE, reply,
                                   sizeof(reply), &n)) < 0) {
            return ret;
        }
    }
    pthread_mutex_lock(&src->stats_lock);
    src->stats.downtime_ms = (uint64_t)((zm_now() - t_stop) * 1000);
    pthread_mutex_unlock(&src->stats_lock);
    return 0;
}

/*
 * One live round: sends what is dirty, collects what the guest wrote
 * meanwhile, and says whether the rest now fits the downtime
 * (convergence.c).
 */
static int live_round(zm_source *src, uint32_t round, double t_rounds,
                      bool *converged)
{
    double start = zm_now();
    int ret;

    reset_round(src);
    if ((ret = src_send_round(src, round, false)) < 0) {
        return ret;
    }
    bool quiesce = zm_dirty_needs_quiesce(src->tracker);
    if (quiesce && src->hooks.stop) {
        src->hooks.stop(src->hooks.opaque);
    }
    int64_t dirty = zm_pageset_collect(&src->pages, src->tracker);
    if (quiesce && src->hooks.resume) {
        src->hooks.resume(src->hooks.opaque);
    }
    if (dirty < 0) {
        return (int)dirty;
    }

    struct zm_round_sample sample = {
        .round = round,
        .round_s = zm_now() - start,
        .rounds_s = zm_now() - t_rounds,
        .dirty_pages = (uint64_t)dirty,
        .queued_bytes = zm_conn_unsent(src->main),
        .page_size = src->p.page_size,
    };
    for (unsigned i = 0; !src->one_stream && i < src->nchans; i++) {
        sample.queued_bytes += zm_conn_unsent(src->chans[i].c.conn);
    }
    struct zm_convergence conv;
    pthread_mutex_lock(&src->stats_lock);
    sample.round_wire_bytes = src->round_wire_bytes;
    sample.rounds_wire_bytes = src->rounds_wire_bytes;
    sample.round_pages = src->round_pages;
    sample.normal_bytes = src->stats.normal_bytes;
    sample.payload_bytes = src->stats.payload_bytes;
    zm_convergence_assess(&sample, src->p.downtime_limit_ms,
                          src->p.max_iterations, &conv);
    src->stats.iterations = round + 1;
    src->stats.dirty_sync_count++;
    src->stats.remaining = (uint64_t)dirty * src->p.page_size;
    src->stats.dirty_pages_rate = (uint64_t)((double)dirty / sample.round_s);
    src->stats.expected_downtime_ms = (uint64_t)conv.expected_ms;
    record_round(src, start, (uint64_t)dirty, conv.expected_ms, false);
    pthread_mutex_unlock(&src->stats_lock);
    *converged = conv.switch_over;
    return 0;
}

static int migrate(zm_source *src, const char *uri, double t0)
{
    int ret = setup(src, uri);
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&src->stats_lock);
    src->stats.setup_time_ms = (uint64_t)((zm_now() - t0) * 1000);
    src->stats.status = ZM_STATUS_ACTIVE;
    pthread_mutex_unlock(&src->stats_lock);

    zm_pageset_mark_all(&src->pages);
    double t_rounds = zm_now();
    for (uint32_t round = 0;; round++) {
        if (round + 1 >= src->p.max_iterations) {
            pthread_mutex_lock(&src->stats_lock);
            src->stats.max_iterations_reached = round > 0;
            pthread_mutex_unlock(&src->stats_lock);
            return switchover(src, round);
        }
        bool converged = false;
        if ((ret = live_round(src, round, t_rounds, &converged)) < 0) {
            return ret;
        }
        if (converged) {
            return switchover(src, round + 1);
        }
    }
}

static void teardown(zm_source *src)
{
    pthread_mutex_lock(&src->lock);
    src->quit = true;
    pthread_cond_broadcast(&src->work_cond);
    pthread_mutex_unlock(&src->lock);
    double cpu = zm_thread_cpu() +
                 zm_chans_join(src->chans, sizeof(*src->chans), src->nchans);
    close_offload(src);
    pthread_mutex_lock(&src->lock);
    for (unsigned i = 0; i < src->nchans; i++) {
        zm_encoder_free(src->chans[i].enc);
        free(src->chans[i].packet);
        free(src->chans[i].scratch);
    }
    zm_chans_close(src->chans, sizeof(*src->chans), src->nchans, src->main);
    free(src->chans);
    src->chans = NULL;
    src->nchans = 0;
    src->main = NULL;
    pthread_mutex_unlock(&src->lock);
    zm_dirty_free(src->tracker);
    src->tracker = NULL;
    pthread_mutex_lock(&src->stats_lock);
    /* A pool's workers are this side's compressors too. */
    src->stats.cpu_seconds = cpu + src->offload_cpu;
    src->offload_cpu = 0;
    pthread_mutex_unlock(&src->stats_lock);
}

ZM_API int zm_source_run(zm_source *src, const char *uri)
{
    double t0 = zm_now();
    double cpu0 = zm_thread_cpu();

    free_auto(src);
    pthread_mutex_lock(&src->stats_lock);
    src->t_run = t0;
    src->nrounds = 0;
    src->rounds_cut = false;
    /* Each run's figures are its own: END's page count above all, which
     * the destination checks against what arrived. */
    uint64_t ram = src->stats.total;
    src->stats =
        (struct zm_stats){ .sizeof_stats = sizeof(src->stats), .total = ram };
    src->rounds_wire_bytes = 0;
    pthread_mutex_unlock(&src->stats_lock);
    set_status(src, ZM_STATUS_SETUP);
    int ret = migrate(src, uri, t0);
    /* Keep the first cause: a worker's, or this thread's own.  A cancel
     * that came after the last check (file: writes cannot be interrupted)
     * fails the migration too. */
    pthread_mutex_lock(&src->lock);
    if (src->failure.error) {
        ret = zm_failure_raise(&src->failure);
    }
    pthread_mutex_unlock(&src->lock);
    /*
     * After the commit (write_commit()), only the destination's FAIL frame
     * (-ECONNREFUSED) says it will not run the guest.  Any other end leaves
     * that open: resuming here could make two guests, so ours stays stopped.
     */
    bool unconfirmed = ret < 0 && src->committed && ret != -ECONNREFUSED;
    if (unconfirmed) {
        char cause[160];
        snprintf(cause, sizeof(cause), "%s", zm_errmsg());
        ret = zm_error(-ENOTCONN,
                       "the destination may be running the guest, which "
                       "stays stopped here: no answer after the "
                       "switchover (%s)",
                       cause);
    }
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", zm_errmsg());
    teardown(src);
    if (ret < 0 && !unconfirmed && src->stopped && src->hooks.resume) {
        src->hooks.resume(src->hooks.opaque);
    }
    src->stopped = false;
    /* The next zm_source_run() starts afresh; a cancel from now on is its. */
    pthread_mutex_lock(&src->lock);
    src->quit = false;
    src->committed = false;
    src->failure.error = 0;
    zm_ratelimit_reset(&src->rate); /* a failed run's reservations are void */
    bool cancelled = atomic_exchange(&src->cancelled, false);
    pthread_mutex_unlock(&src->lock);

    double total = zm_now() - t0;
    pthread_mutex_lock(&src->stats_lock);
    struct zm_stats *st = &src->stats;
    st->cpu_seconds -= cpu0;
    zm_stats_finish(st, total, ret, cancelled);
    if (unconfirmed) {
        st->status = ZM_STATUS_UNCONFIRMED;
    }
    if (ret == 0) {
        st->remaining = 0;
    }
    pthread_mutex_unlock(&src->stats_lock);
    if (ret < 0) {
        zm_error(ret, "%s", msg);
    }
    return ret;
}
