/*
 * source.c - the sending side of a live migration
 *
 * The caller's thread runs the rounds; one thread per data channel takes
 * batches of pages from a shared cursor over the round's bitmap, encodes
 * and sends them.  Rounds end with SYNC on every channel, so that the
 * destination never applies a page of round r + 1 before all of round r
 * (doc/design-migration.md).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "channel/ratelimit.h"
#include "common/bitmap.h"
#include "common/endian_util.h"
#include "common/error.h"
#include "common/time.h"
#include "convergence.h"
#include "dirty/dirty.h"
#include "session.h"

struct src_region {
    char name[ZM_REGION_NAME_MAX + 1];
    unsigned char *base;
    size_t size;
    uint64_t pages;
    uint64_t *todo; /* pages to send this round */
    /*
     * Pages the guest wrote again during this round (under lock): the next
     * round sends them, so this one skips those it has not sent yet.
     */
    uint64_t *redirtied;
    uint64_t *peek; /* the dirty log read mid-round, merged into redirtied */
};

struct src_channel {
    zm_source *src;
    unsigned index; /* 1..n */
    zm_conn *conn;  /* the main one, on a one-stream transport */
    zm_encoder *enc;
    unsigned char *packet;
    size_t cap;
    struct zm_chan_thread t;
};

struct zm_source {
    struct zm_params p;
    struct zm_source_hooks hooks;
    struct src_region regions[ZM_MAX_REGIONS];
    unsigned nregions;

    zm_conn *main;
    bool one_stream;            /* ZM_CONN_ONE_STREAM: channels share main */
    bool one_way;               /* ZM_CONN_ONE_WAY: no answer will come */
    pthread_mutex_t write_lock; /* one_stream: one writer at a time */
    struct src_channel *chans;
    unsigned nchans;
    zm_dirty *tracker;

    /* The round's work, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t work_cond;
    pthread_cond_t idle_cond;
    unsigned cur_region;
    uint64_t cur_page;
    bool round_open;
    unsigned busy;
    uint64_t skipped; /* this round's, for stats.skipped */
    bool quit;
    /* The last frame the destination needs (END, or VERIFY) has gone
     * out: it may run the guest already, so a cancel no longer stops the
     * migration, and only its FAIL makes ours resume. */
    bool committed;
    struct zm_failure failure;

    struct zm_ratelimit rate; /* max-bandwidth, for every channel */

    pthread_mutex_t stats_lock;
    struct zm_stats stats;
    uint64_t round_wire_bytes;  /* under stats_lock */
    uint64_t round_pages;       /* sent this round, under stats_lock */
    uint64_t round_zero_pages;  /* of those, under stats_lock */
    uint64_t round_skipped;     /* this round's, under stats_lock */
    uint64_t rounds_wire_bytes; /* since round 0 began, under stats_lock */
    double t_run;               /* when zm_source_run() was called */
    struct zm_round *rounds;    /* zm_source_rounds(), under stats_lock */
    unsigned nrounds, rounds_cap;
    bool rounds_cut; /* out of memory: the history ends there */
    atomic_bool cancelled;
    bool stopped; /* the guest is stopped by us */
};

/* ---- the object ---- */

ZM_API int zm_source_new(const struct zm_params *params,
                         const struct zm_source_hooks *hooks, zm_source **out)
{
    zm_source *src = calloc(1, sizeof(*src));
    int ret;

    if (!src) {
        return zm_error(-ENOMEM, "out of memory");
    }
    zm_params_copy(&src->p, params);
    if ((ret = zm_params_check(&src->p)) < 0) {
        free(src);
        return ret;
    }
    if (hooks) {
        src->hooks = *hooks;
    }
    if (src->p.dirty_tracking == ZM_TRACKING_EMBEDDER &&
        !src->hooks.dirty_log) {
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

    if (src->nregions == ZM_MAX_REGIONS) {
        return zm_error(-ENOSPC, "more than %u regions", ZM_MAX_REGIONS);
    }
    if ((ret = zm_region_name_check(name)) < 0) {
        return ret;
    }
    if (size == 0 || size % src->p.page_size != 0 ||
        (uintptr_t)base % src->p.page_size != 0) {
        return zm_error(-EINVAL,
                        "region '%s': base and size must be "
                        "multiples of the %u-byte page",
                        name, src->p.page_size);
    }
    for (unsigned i = 0; i < src->nregions; i++) {
        if (strcmp(src->regions[i].name, name) == 0) {
            return zm_error(-EEXIST, "region '%s' added twice", name);
        }
    }
    struct src_region *r = &src->regions[src->nregions];
    uint64_t pages = size / src->p.page_size;
    size_t words = zm_bitmap_words(pages);
    r->todo = calloc(words, sizeof(uint64_t));
    r->redirtied = calloc(words, sizeof(uint64_t));
    r->peek = calloc(words, sizeof(uint64_t));
    if (!r->todo || !r->redirtied || !r->peek) {
        free(r->todo);
        free(r->redirtied);
        free(r->peek);
        return zm_error(-ENOMEM, "out of memory");
    }
    memcpy(r->name, name, strlen(name) + 1);
    r->base = base;
    r->size = size;
    r->pages = pages;
    src->nregions++;
    pthread_mutex_lock(&src->stats_lock);
    src->stats.total += size;
    pthread_mutex_unlock(&src->stats_lock);
    return 0;
}

static int fail_locked(zm_source *src, int err);

ZM_API void zm_source_cancel(zm_source *src)
{
    /* One critical section with switchover()'s commit: a cancel is either
     * before END (and fails the migration) or after it (and is ignored). */
    pthread_mutex_lock(&src->lock);
    if (!src->committed) {
        atomic_store(&src->cancelled, true);
        fail_locked(src, zm_error(-ECANCELED, "migration cancelled"));
    }
    pthread_mutex_unlock(&src->lock);
}

ZM_API void zm_source_stats(zm_source *src, struct zm_stats *stats)
{
    pthread_mutex_lock(&src->stats_lock);
    *stats = src->stats;
    pthread_mutex_unlock(&src->stats_lock);
}

ZM_API unsigned zm_source_rounds(zm_source *src, struct zm_round *rounds,
                                 unsigned cap)
{
    pthread_mutex_lock(&src->stats_lock);
    unsigned n = src->nrounds;
    if (rounds && cap && n) {
        memcpy(rounds, src->rounds,
               (n < cap ? n : cap) * sizeof(struct zm_round));
    }
    pthread_mutex_unlock(&src->stats_lock);
    return n;
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

ZM_API void zm_source_free(zm_source *src)
{
    if (!src) {
        return;
    }
    free(src->rounds);
    for (unsigned i = 0; i < src->nregions; i++) {
        free(src->regions[i].todo);
        free(src->regions[i].redirtied);
        free(src->regions[i].peek);
    }
    pthread_mutex_destroy(&src->lock);
    pthread_mutex_destroy(&src->write_lock);
    pthread_mutex_destroy(&src->stats_lock);
    pthread_cond_destroy(&src->work_cond);
    pthread_cond_destroy(&src->idle_cond);
    zm_ratelimit_destroy(&src->rate);
    free(src);
}

/* ---- sending ---- */

/* Makes blocked reads and writes return.  Called under src->lock, which
 * also guards the connections' creation and closing. */
static void shutdown_conns(zm_source *src)
{
    zm_conn_shutdown(src->main);
    for (unsigned i = 0; src->chans && i < src->nchans; i++) {
        if (src->chans[i].conn != src->main) {
            zm_conn_shutdown(src->chans[i].conn);
        }
    }
}

/* Records the first failure and makes every thread stop; under src->lock. */
static int fail_locked(zm_source *src, int err)
{
    zm_failure_record(&src->failure, err);
    src->quit = true;
    pthread_cond_broadcast(&src->work_cond);
    pthread_cond_broadcast(&src->idle_cond);
    zm_ratelimit_stop(&src->rate);
    shutdown_conns(src);
    return err;
}

static int fail(zm_source *src, int err)
{
    pthread_mutex_lock(&src->lock);
    fail_locked(src, err);
    pthread_mutex_unlock(&src->lock);
    return err;
}

static int chan_write(struct src_channel *ch, uint32_t type,
                      const struct iovec *iov, int iovcnt, size_t bytes)
{
    zm_source *src = ch->src;

    if (!zm_ratelimit_wait(&src->rate, bytes + ZM_FRAME_HEADER_SIZE)) {
        return -ECANCELED; /* fail() has the cause */
    }
    if (src->one_stream) {
        pthread_mutex_lock(&src->write_lock);
    }
    int ret = zm_frame_write(ch->conn, type, iov, iovcnt);
    if (src->one_stream) {
        pthread_mutex_unlock(&src->write_lock);
    }
    if (ret == 0) {
        pthread_mutex_lock(&src->stats_lock);
        src->stats.transferred += bytes + ZM_FRAME_HEADER_SIZE;
        src->round_wire_bytes += bytes + ZM_FRAME_HEADER_SIZE;
        src->rounds_wire_bytes += bytes + ZM_FRAME_HEADER_SIZE;
        pthread_mutex_unlock(&src->stats_lock);
    }
    return ret;
}

/*
 * Takes up to batch_pages pages of one region from the round's bitmap,
 * in ascending order; returns how many (0: the round is all handed out).
 * Called under src->lock.
 */
static unsigned take_batch(zm_source *src, struct zm_page_ref *refs,
                           unsigned *region)
{
    unsigned n = 0;

    while (src->cur_region < src->nregions) {
        struct src_region *r = &src->regions[src->cur_region];
        while (src->cur_page < r->pages && n < src->p.batch_pages) {
            uint64_t word = src->cur_page / 64;
            uint64_t again = r->todo[word] & r->redirtied[word];
            if (again) {
                r->todo[word] &= ~again;
                src->skipped += (uint64_t)__builtin_popcountll(again);
            }
            uint64_t bits = r->todo[word] >> (src->cur_page % 64);
            if (bits == 0) {
                src->cur_page = (word + 1) * 64;
                continue;
            }
            src->cur_page += (uint64_t)__builtin_ctzll(bits);
            if (src->cur_page >= r->pages) {
                break;
            }
            r->todo[src->cur_page / 64] &= ~(1ull << (src->cur_page % 64));
            refs[n++] = (struct zm_page_ref){
                src->cur_page, r->base + src->cur_page * src->p.page_size
            };
            src->cur_page++;
        }
        if (n > 0) {
            *region = src->cur_region;
            return n;
        }
        src->cur_region++;
        src->cur_page = 0;
    }
    return 0;
}

static void *channel_thread(void *arg)
{
    struct src_channel *ch = arg;
    zm_source *src = ch->src;
    struct zm_page_ref *refs = calloc(src->p.batch_pages, sizeof(*refs));
    unsigned flags = 0;

    if (!refs) {
        fail(src, zm_error(-ENOMEM, "out of memory"));
        return NULL;
    }
    pthread_mutex_lock(&src->lock);
    for (;;) {
        while (!src->quit &&
               !(src->round_open && src->cur_region < src->nregions)) {
            pthread_cond_wait(&src->work_cond, &src->lock);
        }
        if (src->quit) {
            break;
        }
        unsigned region;
        unsigned n = take_batch(src, refs, &region);
        if (n == 0) {
            if (src->busy == 0) {
                pthread_cond_broadcast(&src->idle_cond);
            }
            continue;
        }
        /* Once the guest is stopped, pages no longer change. */
        flags = src->stopped ? ZM_ENCODE_STABLE : 0;
        src->busy++;
        pthread_mutex_unlock(&src->lock);

        struct zm_packet_info info;
        ssize_t len = zm_encode(ch->enc, region, refs, n, flags, ch->packet,
                                ch->cap, &info);
        int ret = len < 0 ? (int)len : 0;
        if (ret == 0) {
            struct iovec iov = { ch->packet, (size_t)len };
            ret = chan_write(ch, ZM_FRAME_PACKET, &iov, 1, (size_t)len);
        }
        if (ret == 0) {
            uint64_t bytes = (uint64_t)info.pages * src->p.page_size;
            pthread_mutex_lock(&src->stats_lock);
            zm_stats_add_packet(&src->stats, &info);
            src->round_pages += info.pages;
            src->round_zero_pages += info.zero_pages;
            src->stats.remaining -=
                bytes <= src->stats.remaining ? bytes : src->stats.remaining;
            pthread_mutex_unlock(&src->stats_lock);
        } else {
            fail(src, ret);
        }

        pthread_mutex_lock(&src->lock);
        src->busy--;
        if (src->busy == 0 && src->cur_region >= src->nregions) {
            pthread_cond_broadcast(&src->idle_cond);
        }
    }
    pthread_mutex_unlock(&src->lock);
    free(refs);
    zm_chan_thread_exit(&ch->t);
    return NULL;
}

/*
 * Reads the dirty log while a round runs (on the thread of
 * zm_source_run(), as every hook): a page written again before its turn
 * would go out twice, now and next round, so it goes next round only.  On
 * a link-bound migration of a busy guest this saves a large share of each
 * round (doc/design-migration.md).
 */
static int peek_dirty(zm_source *src)
{
    for (unsigned i = 0; i < src->nregions; i++) {
        struct src_region *r = &src->regions[i];
        size_t words = zm_bitmap_words(r->pages);
        memset(r->peek, 0, words * sizeof(uint64_t));
        ssize_t n = zm_dirty_collect(src->tracker, i, r->peek);
        if (n < 0) {
            return zm_error((int)n, "dirty tracking, region '%s': %s", r->name,
                            zm_strerror((int)n));
        }
        pthread_mutex_lock(&src->lock);
        for (size_t w = 0; w < words; w++) {
            r->redirtied[w] |= r->peek[w];
        }
        pthread_mutex_unlock(&src->lock);
    }
    return 0;
}

/* The destination spoke or hung up during the rounds: why, as an error. */
static int destination_failed(zm_source *src)
{
    unsigned char reason[ZM_FRAME_CONTROL_MAX];
    uint32_t len;
    /* A FAIL frame gives -ECONNREFUSED with the peer's reason. */
    int ret =
        zm_frame_expect(src->main, ZM_FRAME_FAIL, reason, sizeof(reason), &len);

    if (ret == -ECONNRESET) {
        return zm_error(ret, "the destination closed the connection");
    }
    return ret < 0 ? ret
                   : zm_error(-EPROTO, "the destination sent an unexpected "
                                       "frame during the rounds");
}

/* Sends every page marked in the regions' todo bitmaps, then SYNC. */
static int send_round(zm_source *src, uint32_t round, bool final)
{
    /* What this round will send, counted down as batches go out. */
    uint64_t pending = 0;
    for (unsigned i = 0; i < src->nregions; i++) {
        const struct src_region *r = &src->regions[i];
        pending += zm_bitmap_count(r->todo, zm_bitmap_words(r->pages));
    }
    pthread_mutex_lock(&src->stats_lock);
    src->stats.remaining = pending * src->p.page_size;
    pthread_mutex_unlock(&src->stats_lock);

    /* A stopped guest writes nothing; soft-dirty cannot be read live. */
    bool peek =
        !final && !src->stopped && !zm_dirty_needs_quiesce(src->tracker);
    double interval = 0.05, next_peek = zm_now() + interval;
    /* The destination says nothing on the main channel until the end: if
     * it does (FAIL) or hangs up, the data channels may never tell. */
    double watch = 0.2, next_watch = zm_now() + watch;

    pthread_mutex_lock(&src->lock);
    src->cur_region = 0;
    src->cur_page = 0;
    src->round_open = true;
    pthread_cond_broadcast(&src->work_cond);
    while (!src->quit &&
           !(src->cur_region >= src->nregions && src->busy == 0)) {
        double wake = peek && next_peek < next_watch ? next_peek : next_watch;
        struct timespec ts = zm_deadline(wake);
        if (pthread_cond_timedwait(&src->idle_cond, &src->lock, &ts) !=
            ETIMEDOUT) {
            continue;
        }
        pthread_mutex_unlock(&src->lock);
        double t = zm_now();
        if (t >= next_watch) {
            next_watch = t + watch;
            if (zm_conn_peer_spoke(src->main)) {
                return fail(src, destination_failed(src));
            }
        }
        if (peek && t >= next_peek) {
            int ret = peek_dirty(src);
            if (ret < 0) {
                return fail(src, ret);
            }
            /* Reading the log costs the guest and us: keep it under 5%. */
            double now = zm_now();
            next_peek =
                now + (20 * (now - t) > interval ? 20 * (now - t) : interval);
        }
        pthread_mutex_lock(&src->lock);
    }
    src->round_open = false;
    int err = src->failure.error;
    uint64_t skipped = src->skipped;
    src->skipped = 0;
    pthread_mutex_unlock(&src->lock);
    pthread_mutex_lock(&src->stats_lock);
    src->stats.skipped += skipped;
    src->round_skipped += skipped;
    pthread_mutex_unlock(&src->stats_lock);
    if (err) {
        return err;
    }

    unsigned char body[ZM_SYNC_SIZE];
    zm_put_le32(body, round);
    zm_put_le32(body + 4, final ? ZM_SYNC_FINAL : 0);
    struct iovec iov = { body, sizeof(body) };
    /* One stream needs one SYNC to separate its rounds. */
    unsigned n = src->one_stream ? 1 : src->nchans;
    for (unsigned i = 0; i < n; i++) {
        int ret =
            chan_write(&src->chans[i], ZM_FRAME_SYNC, &iov, 1, sizeof(body));
        if (ret < 0) {
            return fail(src, ret);
        }
    }
    return 0;
}

/* Marks every page of every region to be sent. */
static void mark_all(zm_source *src)
{
    for (unsigned i = 0; i < src->nregions; i++) {
        zm_bitmap_fill(src->regions[i].todo, src->regions[i].pages);
    }
}

/*
 * ORs the pages written since the last look, and those skipped as written
 * again during the round, into todo; returns how many todo holds.
 */
static int64_t collect_dirty(zm_source *src)
{
    int64_t dirty = 0;

    for (unsigned i = 0; i < src->nregions; i++) {
        struct src_region *r = &src->regions[i];
        size_t words = zm_bitmap_words(r->pages);
        zm_bitmap_or(r->todo, r->redirtied, words);
        memset(r->redirtied, 0, words * sizeof(uint64_t));
        ssize_t n = zm_dirty_collect(src->tracker, i, r->todo);
        if (n < 0) {
            return zm_error((int)n, "dirty tracking, region '%s': %s", r->name,
                            zm_strerror((int)n));
        }
        /* Count what is pending, whatever the provider returns. */
        dirty += (int64_t)zm_bitmap_count(r->todo, words);
    }
    return dirty;
}

static int start_tracking(zm_source *src)
{
    int kind = src->p.dirty_tracking;
    struct zm_dirty_range ranges[ZM_MAX_REGIONS];

    for (unsigned i = 0; i < src->nregions; i++) {
        ranges[i] = (struct zm_dirty_range){ src->regions[i].base,
                                             src->regions[i].size };
    }
    if (kind == ZM_TRACKING_EMBEDDER ||
        (kind == ZM_TRACKING_AUTO && src->hooks.dirty_log)) {
        int ret = zm_dirty_new_embedder(src->hooks.dirty_log, src->hooks.opaque,
                                        ranges, src->nregions, src->p.page_size,
                                        &src->tracker);
        /* Reset the embedder's log: round 0 sends everything anyway. */
        int64_t dirty = ret < 0 ? ret : collect_dirty(src);
        return dirty < 0 ? (int)dirty : 0;
    }
    enum zm_dirty_kind dk = kind == ZM_TRACKING_UFFD_WP ? ZM_DIRTY_UFFD_WP
                            : kind == ZM_TRACKING_SOFT_DIRTY
                                ? ZM_DIRTY_SOFT_DIRTY
                                : ZM_DIRTY_AUTO;
    return zm_dirty_new(dk, ranges, src->nregions, src->p.page_size,
                        &src->tracker);
}

static int connect_channels(zm_source *src, const struct zm_uri *uri)
{
    struct zm_hello hello = {
        .channels = (uint16_t)src->p.multifd_channels,
        .page_size = src->p.page_size,
        .max_pages = src->p.batch_pages,
        .codec = (uint8_t)src->p.compression,
        .flags = src->p.verify ? ZM_HELLO_VERIFY : 0,
        .level = (int16_t)(src->p.compression_level == ZM_LEVEL_DEFAULT
                               ? 0
                               : src->p.compression_level),
    };
    unsigned char hello_buf[ZM_HELLO_SIZE];
    int ret;

    if (getrandom(hello.session, sizeof(hello.session), 0) !=
        (ssize_t)sizeof(hello.session)) {
        return zm_error(-EIO, "no random bytes for the session id");
    }
    zm_conn *conn;
    if ((ret = zm_conn_connect(uri, &src->cancelled, &conn)) < 0) {
        return ret;
    }
    pthread_mutex_lock(&src->lock);
    src->main = conn;
    if (src->quit) {
        zm_conn_shutdown(conn); /* cancelled while connecting */
    }
    pthread_mutex_unlock(&src->lock);
    src->one_stream = zm_conn_caps(conn) & ZM_CONN_ONE_STREAM;
    src->one_way = zm_conn_caps(conn) & ZM_CONN_ONE_WAY;
    zm_hello_encode(&hello, hello_buf);
    struct iovec iov = { hello_buf, sizeof(hello_buf) };
    if ((ret = zm_frame_write(src->main, ZM_FRAME_HELLO, &iov, 1)) < 0) {
        return ret;
    }

    struct zm_layout_region *layout = calloc(src->nregions, sizeof(*layout));
    unsigned char *body = malloc(ZM_LAYOUT_MAX_SIZE + ZM_FRAME_CONTROL_MAX);
    ssize_t len = -ENOMEM;
    if (layout && body) {
        for (unsigned i = 0; i < src->nregions; i++) {
            memcpy(layout[i].name, src->regions[i].name,
                   sizeof(layout[i].name));
            layout[i].size = src->regions[i].size;
        }
        len = zm_layout_encode(layout, src->nregions, body, ZM_LAYOUT_MAX_SIZE);
    }
    ret = len < 0 ? (int)len : 0;
    if (ret == 0) {
        iov = (struct iovec){ body, (size_t)len };
        ret = zm_frame_write(src->main, ZM_FRAME_LAYOUT, &iov, 1);
    }
    if (ret == 0 && !src->one_way) {
        uint32_t n;
        ret = zm_frame_expect(src->main, ZM_FRAME_ACCEPT, body,
                              ZM_FRAME_CONTROL_MAX, &n);
    }
    free(layout);
    free(body);
    if (ret < 0) {
        return ret == -ENOMEM ? zm_error(ret, "out of memory") : ret;
    }

    for (unsigned i = 0; i < src->nchans; i++) {
        struct src_channel *ch = &src->chans[i];
        if (src->one_stream) {
            ch->conn = src->main;
            continue;
        }
        if ((ret = zm_conn_connect(uri, &src->cancelled, &conn)) < 0) {
            return ret;
        }
        pthread_mutex_lock(&src->lock);
        ch->conn = conn;
        if (src->quit) {
            zm_conn_shutdown(conn);
        }
        pthread_mutex_unlock(&src->lock);
        hello.channel = (uint16_t)ch->index;
        zm_hello_encode(&hello, hello_buf);
        iov = (struct iovec){ hello_buf, sizeof(hello_buf) };
        if ((ret = zm_frame_write(ch->conn, ZM_FRAME_HELLO, &iov, 1)) < 0) {
            return ret;
        }
    }
    return 0;
}

static int setup(zm_source *src, const char *uri_text)
{
    struct zm_uri uri;
    int ret;

    if (src->nregions == 0) {
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
    struct zm_encoder_options eo = {
        .sizeof_options = sizeof(eo),
        .codec = src->p.compression,
        .level = src->p.compression_level,
        .page_size = src->p.page_size,
        .max_pages = src->p.batch_pages,
    };
    for (unsigned i = 0; i < src->nchans; i++) {
        struct src_channel *ch = &src->chans[i];
        ch->src = src;
        ch->index = i + 1;
        if ((ret = zm_encoder_new(&eo, &ch->enc)) < 0) {
            return ret;
        }
        ch->cap = zm_encoder_bound(ch->enc);
        ch->packet = malloc(ch->cap);
        if (!ch->packet) {
            return zm_error(-ENOMEM, "out of memory");
        }
    }
    if ((ret = start_tracking(src)) < 0) {
        return ret;
    }
    if ((ret = connect_channels(src, &uri)) < 0) {
        return ret;
    }
    for (unsigned i = 0; i < src->nchans; i++) {
        if ((ret = zm_chan_thread_start(&src->chans[i].t, channel_thread,
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
    unsigned char *base[ZM_MAX_REGIONS];
    size_t size[ZM_MAX_REGIONS];
    uint64_t pages = 0;

    for (unsigned i = 0; i < src->nregions; i++) {
        base[i] = src->regions[i].base;
        size[i] = src->regions[i].size;
        pages += src->regions[i].pages;
    }
    if (pages > ZM_VERIFY_MAX_PAGES) {
        pages = ZM_VERIFY_MAX_PAGES;
    }
    uint64_t *hashes = malloc(pages * sizeof(uint64_t));
    if (!hashes) {
        return zm_error(-ENOMEM, "out of memory for verification");
    }
    pages = zm_hash_pages(base, size, src->nregions, src->p.page_size, hashes,
                          pages);
    for (uint64_t i = 0; i < pages; i++) {
        zm_put_le64(&hashes[i], hashes[i]);
    }
    struct iovec iov = { hashes, pages * sizeof(uint64_t) };
    int ret = write_commit(src, ZM_FRAME_VERIFY, &iov, 1);
    free(hashes);
    return ret;
}

/* Stops the guest, sends the rest and the device state, waits COMPLETE. */
static int switchover(zm_source *src, uint32_t round, double *t_stop)
{
    int ret;
    int64_t dirty;

    set_status(src, ZM_STATUS_DEVICE);
    reset_round(src);
    *t_stop = zm_now();
    if (src->hooks.stop && (ret = src->hooks.stop(src->hooks.opaque)) < 0) {
        return zm_error(ret, "the embedder could not stop the guest");
    }
    src->stopped = true;
    if ((dirty = collect_dirty(src)) < 0) {
        return (int)dirty;
    }
    if ((ret = send_round(src, round, true)) < 0) {
        return ret;
    }
    pthread_mutex_lock(&src->stats_lock);
    record_round(src, *t_stop, 0, 0, true);
    /* It was sent, whatever becomes of the switchover. */
    src->stats.iterations = round + 1;
    pthread_mutex_unlock(&src->stats_lock);

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
            return zm_error(state_len < 0 ? (int)state_len : -EMSGSIZE,
                            "the embedder could not save the device state");
        }
    }
    struct iovec iov = { state, (size_t)state_len };
    ret = zm_frame_write(src->main, ZM_FRAME_DEVICE_STATE, &iov, state ? 1 : 0);
    free(state);
    if (ret < 0) {
        return ret;
    }

    unsigned char end[ZM_END_SIZE];
    pthread_mutex_lock(&src->stats_lock);
    zm_put_le64(end, src->stats.normal + src->stats.duplicate);
    pthread_mutex_unlock(&src->stats_lock);
    zm_put_le64(end + 8, round + 1);
    iov = (struct iovec){ end, sizeof(end) };
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

    mark_all(src);
    double t_rounds = zm_now();
    for (uint32_t round = 0;; round++) {
        double start = zm_now();
        reset_round(src);

        bool last = round + 1 >= src->p.max_iterations;
        if (last) {
            double t_stop;
            pthread_mutex_lock(&src->stats_lock);
            src->stats.max_iterations_reached = round > 0;
            pthread_mutex_unlock(&src->stats_lock);
            ret = switchover(src, round, &t_stop);
            if (ret == 0) {
                pthread_mutex_lock(&src->stats_lock);
                src->stats.downtime_ms = (uint64_t)((zm_now() - t_stop) * 1000);
                src->stats.iterations = round + 1;
                pthread_mutex_unlock(&src->stats_lock);
            }
            return ret;
        }
        if ((ret = send_round(src, round, false)) < 0) {
            return ret;
        }
        bool quiesce = zm_dirty_needs_quiesce(src->tracker);
        if (quiesce && src->hooks.stop) {
            src->hooks.stop(src->hooks.opaque);
        }
        int64_t dirty = collect_dirty(src);
        if (quiesce && src->hooks.resume) {
            src->hooks.resume(src->hooks.opaque);
        }
        if (dirty < 0) {
            return (int)dirty;
        }

        /* Would the rest fit in the downtime at the link's speed? */
        struct zm_round_sample sample = {
            .round = round,
            .round_s = zm_now() - start,
            .rounds_s = zm_now() - t_rounds,
            .dirty_pages = (uint64_t)dirty,
            .queued_bytes = zm_conn_unsent(src->main),
            .page_size = src->p.page_size,
        };
        for (unsigned i = 0; !src->one_stream && i < src->nchans; i++) {
            sample.queued_bytes += zm_conn_unsent(src->chans[i].conn);
        }
        struct zm_convergence conv;
        pthread_mutex_lock(&src->stats_lock);
        sample.round_wire_bytes = src->round_wire_bytes;
        sample.rounds_wire_bytes = src->rounds_wire_bytes;
        sample.round_pages = src->round_pages;
        sample.normal_bytes = src->stats.normal_bytes;
        for (int c = 0; c < ZM_CODEC_COUNT; c++) {
            sample.payload_bytes += src->stats.payload_bytes[c];
        }
        zm_convergence_assess(&sample, src->p.downtime_limit_ms,
                              src->p.max_iterations, &conv);
        src->stats.iterations = round + 1;
        src->stats.dirty_sync_count++;
        src->stats.remaining = (uint64_t)dirty * src->p.page_size;
        src->stats.dirty_pages_rate =
            (uint64_t)((double)dirty / sample.round_s);
        src->stats.expected_downtime_ms = (uint64_t)conv.expected_ms;
        record_round(src, start, (uint64_t)dirty, conv.expected_ms, false);
        pthread_mutex_unlock(&src->stats_lock);

        if (conv.switch_over) {
            double t_stop;
            ret = switchover(src, round + 1, &t_stop);
            if (ret == 0) {
                pthread_mutex_lock(&src->stats_lock);
                src->stats.downtime_ms = (uint64_t)((zm_now() - t_stop) * 1000);
                src->stats.iterations = round + 2;
                pthread_mutex_unlock(&src->stats_lock);
            }
            return ret;
        }
    }
}

static void teardown(zm_source *src)
{
    pthread_mutex_lock(&src->lock);
    src->quit = true;
    pthread_cond_broadcast(&src->work_cond);
    pthread_mutex_unlock(&src->lock);
    double cpu = zm_thread_cpu();
    for (unsigned i = 0; i < src->nchans; i++) {
        cpu += zm_chan_thread_join(&src->chans[i].t);
    }
    pthread_mutex_lock(&src->lock);
    for (unsigned i = 0; i < src->nchans; i++) {
        struct src_channel *ch = &src->chans[i];
        if (ch->conn != src->main) {
            zm_conn_close(ch->conn);
        }
        zm_encoder_free(ch->enc);
        free(ch->packet);
    }
    free(src->chans);
    src->chans = NULL;
    src->nchans = 0;
    zm_conn_close(src->main);
    src->main = NULL;
    pthread_mutex_unlock(&src->lock);
    zm_dirty_free(src->tracker);
    src->tracker = NULL;
    pthread_mutex_lock(&src->stats_lock);
    src->stats.cpu_seconds = cpu;
    pthread_mutex_unlock(&src->stats_lock);
}

ZM_API int zm_source_run(zm_source *src, const char *uri)
{
    double t0 = zm_now();
    double cpu0 = zm_thread_cpu();

    pthread_mutex_lock(&src->stats_lock);
    src->t_run = t0;
    src->nrounds = 0;
    src->rounds_cut = false;
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
