/*
 * source_rounds.c - the live data path of the sending side
 *
 * One thread per data channel takes batches of pages from the pageset's
 * shared cursor, encodes and sends them; the thread of zm_source_run()
 * waits for the round to end, reading the dirty log meanwhile and watching
 * the destination.  Rounds end with SYNC on every channel, so that the
 * destination never applies a page of round r + 1 before all of round r
 * (doc/design-migration.md).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/endian_util.h"
#include "common/error.h"
#include "common/time.h"
#include "source.h"

/* Makes blocked reads and writes return.  Called under src->lock, which
 * also guards the connections' creation and closing. */
static void shutdown_conns(zm_source *src)
{
    zm_conn_shutdown(src->main);
    zm_chans_shutdown(src->chans, sizeof(*src->chans), src->nchans, src->main);
}

int src_fail_locked(zm_source *src, int err)
{
    zm_failure_record(&src->failure, err);
    src->quit = true;
    pthread_cond_broadcast(&src->work_cond);
    pthread_cond_broadcast(&src->idle_cond);
    zm_ratelimit_stop(&src->rate);
    shutdown_conns(src);
    return err;
}

int src_fail(zm_source *src, int err)
{
    pthread_mutex_lock(&src->lock);
    src_fail_locked(src, err);
    pthread_mutex_unlock(&src->lock);
    return err;
}

static int chan_write(struct src_channel *ch, uint32_t type,
                      const struct iovec *iov, int iovcnt, size_t bytes)
{
    zm_source *src = ch->src;

    /* Time waiting for max-bandwidth or the socket is time the link, not
     * the CPU, held the channel (--compression auto weighs it). */
    double start = zm_now();
    if (!zm_ratelimit_wait(&src->rate, bytes + ZM_FRAME_HEADER_SIZE)) {
        return -ECANCELED; /* src_fail() has the cause */
    }
    ch->blocked += zm_now() - start;
    if (src->one_stream) {
        pthread_mutex_lock(&src->write_lock);
    }
    double before = ch->c.conn->write_blocked;
    int ret = zm_frame_write(ch->c.conn, type, iov, iovcnt);
    ch->blocked += ch->c.conn->write_blocked - before;
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

/* Writes a packet of len bytes and counts it. */
static int send_packet(struct src_channel *ch, unsigned char *packet,
                       size_t len, const struct zm_packet_info *info)
{
    zm_source *src = ch->src;
    struct iovec iov = { packet, len };
    int ret = chan_write(ch, ZM_FRAME_PACKET, &iov, 1, len);

    if (ret == 0) {
        uint64_t bytes = (uint64_t)info->pages * src->p.page_size;
        pthread_mutex_lock(&src->stats_lock);
        zm_stats_add_packet(&src->stats, info);
        src->round_pages += info->pages;
        src->round_zero_pages += info->zero_pages;
        src->stats.remaining -=
            bytes <= src->stats.remaining ? bytes : src->stats.remaining;
        pthread_mutex_unlock(&src->stats_lock);
    }
    return ret;
}

/* After a batch is sent (or failed, with ret < 0); under src->lock. */
static void batch_done(zm_source *src, unsigned batches, int ret)
{
    src->busy -= batches;
    if (ret < 0) {
        src_fail_locked(src, ret);
    }
    if (src->busy == 0 && zm_pageset_done(&src->pages)) {
        pthread_cond_broadcast(&src->idle_cond);
    }
}

/* Takes the next batch into refs; 0 when the round is handed out.  Under
 * src->lock; counts the batch busy. */
static unsigned take_batch(zm_source *src, struct zm_page_ref *refs,
                           unsigned *region, unsigned *flags)
{
    unsigned n = zm_pageset_take(&src->pages, refs, src->p.batch_pages, region);

    if (n == 0) {
        if (src->busy == 0) {
            pthread_cond_broadcast(&src->idle_cond);
        }
        return 0;
    }
    /* Once the guest is stopped, pages no longer change. */
    *flags = src->stopped ? ZM_ENCODE_STABLE : 0;
    src->busy++;
    return n;
}

/*
 * Reports a sent batch to --compression auto: b holds its method, encode
 * and send CPU, and its start time and the channel's blocked seconds at
 * the start, which become its busy and blocked seconds here.
 */
static void auto_end(struct src_channel *ch, struct zm_auto_batch *b,
                     const struct zm_packet_info *info, double thread_cpu)
{
    b->raw_bytes = (uint64_t)info->data_size;
    b->wire_bytes = info->size;
    b->thread_cpu = thread_cpu;
    b->blocked = ch->blocked - b->blocked;
    b->busy = zm_now() - b->busy;
    zm_auto_end(ch->src->autoc, b);
}

/* Compression on this thread: take, encode, send. */
static void compress_here(struct src_channel *ch, struct zm_page_ref *refs)
{
    zm_source *src = ch->src;

    pthread_mutex_lock(&src->lock);
    for (;;) {
        while (!src->quit &&
               !(src->round_open && !zm_pageset_done(&src->pages))) {
            pthread_cond_wait(&src->work_cond, &src->lock);
        }
        if (src->quit) {
            break;
        }
        unsigned region, flags;
        unsigned n = take_batch(src, refs, &region, &flags);
        if (n == 0) {
            continue;
        }
        pthread_mutex_unlock(&src->lock);

        struct zm_auto_batch b = { 0 };
        double cpu0 = 0;
        int sample = -1;
        if (src->autoc) {
            b.busy = zm_now();
            b.blocked = ch->blocked;
            cpu0 = zm_thread_cpu();
            b.method = zm_auto_begin(src->autoc, ch->enc, &sample);
        }
        struct zm_packet_info info = { .sizeof_info = sizeof(info) };
        ssize_t len = zm_encode(ch->enc, region, refs, n, flags, ch->packet,
                                ch->cap, &info);
        double cpu1 = src->autoc ? zm_thread_cpu() : 0;
        int ret = len < 0 ? (int)len
                          : send_packet(ch, ch->packet, (size_t)len, &info);
        if (src->autoc && ret == 0) {
            b.encode_cpu = cpu1 - cpu0;
            b.send_cpu = zm_thread_cpu() - cpu1;
            auto_end(ch, &b, &info, b.encode_cpu + b.send_cpu);
            /* Not once the guest is stopped: that is downtime. */
            if (sample >= 0 && !(flags & ZM_ENCODE_STABLE)) {
                zm_auto_sample(src->autoc, ch->enc, sample, refs, n, region,
                               flags, ch->scratch, ch->cap, &b);
            }
        }

        pthread_mutex_lock(&src->lock);
        batch_done(src, 1, ret);
    }
    pthread_mutex_unlock(&src->lock);
}

/* Sends the packet of a finished slot and gives the slot back. */
static int send_slot(struct src_channel *ch, struct zm_offload_slot *slot)
{
    struct zm_packet_info info = { .sizeof_info = sizeof(info) };
    int ret = zm_packet_peek(slot->packet, (size_t)slot->len, &info);
    /* The channel was busy with it while submitting, and now. */
    struct zm_auto_batch b = {
        .method = slot->method,
        /* auto_end(): + the send */
        .busy = zm_now() - slot->submit_wall - ch->engine_wait,
        .blocked = ch->blocked,
    };
    ch->engine_wait = 0;
    double cpu0 = ch->src->autoc ? zm_thread_cpu() : 0;

    if (ret == 0) {
        ret = send_packet(ch, slot->packet, (size_t)slot->len, &info);
    }
    if (ch->src->autoc && ret == 0) {
        b.encode_cpu = slot->encode_cpu;
        b.send_cpu = zm_thread_cpu() - cpu0;
        auto_end(ch, &b, &info, slot->submit_cpu + b.send_cpu);
        if (slot->sample >= 0 && !(slot->job.flags & ZM_ENCODE_STABLE)) {
            zm_auto_sample(ch->src->autoc, ch->enc, slot->sample, slot->refs,
                           slot->job.count, slot->job.region, slot->job.flags,
                           ch->scratch, ch->cap, &b);
        }
    }
    zm_offloader_release(ch->off, slot);
    return ret;
}

/*
 * Compression offloaded (offload.h): batches go to the backend, up to the
 * offloader's slots in flight, and their packets go out as they come back;
 * what the backend cannot take is compressed here.
 */
static void compress_offloaded(struct src_channel *ch)
{
    zm_source *src = ch->src;
    struct zm_offload_slot *done[ZM_SRC_OFFLOAD_SLOTS];

    pthread_mutex_lock(&src->lock);
    while (!src->quit) {
        bool work = src->round_open && !zm_pageset_done(&src->pages);
        unsigned inflight = zm_offloader_inflight(ch->off);
        /* What came back goes out first: it frees the device's queue (a
         * full one answers busy) and shows a hung or failed batch early. */
        bool full = work && !zm_offloader_has_slot(ch->off);
        int wait_ms = !work || full ? 50 : 0;
        if (inflight > 0) {
            pthread_mutex_unlock(&src->lock);
            double start = src->autoc && full ? zm_now() : 0;
            int got = zm_offloader_wait(ch->off, done, wait_ms);
            /* Work waits on the engines: busy, as a compressing thread is
             * (--compression auto's CPU-bound windows). */
            ch->engine_wait += start > 0 ? zm_now() - start : 0;
            int ret = got < 0 ? got : 0;
            for (int i = 0; i < got; i++) {
                int sent = send_slot(ch, done[i]);
                ret = ret < 0 ? ret : sent;
            }
            pthread_mutex_lock(&src->lock);
            batch_done(src, got > 0 ? (unsigned)got : 0, ret);
            if (wait_ms > 0) {
                continue; /* nothing to submit: look again */
            }
        }
        struct zm_offload_slot *slot = work ? zm_offloader_slot(ch->off) : NULL;
        if (slot) {
            unsigned region, flags;
            unsigned n = take_batch(src, slot->refs, &region, &flags);
            if (n == 0) {
                zm_offloader_release(ch->off, slot);
                continue;
            }
            pthread_mutex_unlock(&src->lock);
            double wall = 0, cpu = 0;
            if (src->autoc) {
                wall = zm_now();
                cpu = zm_thread_cpu();
                slot->method =
                    zm_auto_begin(src->autoc, ch->enc, &slot->sample);
            }
            int r = zm_offloader_submit(ch->off, slot, region, n, flags);
            if (src->autoc) {
                /* Busy while submitting and sending; not while waiting. */
                slot->submit_cpu = zm_thread_cpu() - cpu;
                slot->submit_wall = zm_now() - wall;
            }
            int ret = r == 1 ? send_slot(ch, slot) : r;
            pthread_mutex_lock(&src->lock);
            if (r != 0) {
                batch_done(src, 1, ret);
            }
            continue;
        }
        if (!src->quit && zm_offloader_inflight(ch->off) == 0) {
            pthread_cond_wait(&src->work_cond, &src->lock);
        }
    }
    pthread_mutex_unlock(&src->lock);
}

void *src_channel_thread(void *arg)
{
    struct src_channel *ch = arg;
    zm_source *src = ch->src;

    if (ch->off) {
        compress_offloaded(ch);
    } else {
        struct zm_page_ref *refs = calloc(src->p.batch_pages, sizeof(*refs));
        if (!refs) {
            src_fail(src, zm_error(-ENOMEM, "out of memory"));
        } else {
            compress_here(ch, refs);
        }
        free(refs);
    }
    zm_chan_exit(&ch->c);
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
    for (unsigned i = 0; i < src->pages.count; i++) {
        int ret = zm_pageset_read_log(&src->pages, src->tracker, i);
        if (ret < 0) {
            return ret;
        }
        pthread_mutex_lock(&src->lock);
        zm_pageset_merge_log(&src->pages, i);
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

int src_send_round(zm_source *src, uint32_t round, bool final)
{
    /* What this round will send, counted down as batches go out. */
    uint64_t pending = zm_pageset_pending(&src->pages);
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
    zm_pageset_rewind(&src->pages);
    src->round_open = true;
    pthread_cond_broadcast(&src->work_cond);
    while (!src->quit && !(zm_pageset_done(&src->pages) && src->busy == 0)) {
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
                return src_fail(src, destination_failed(src));
            }
        }
        if (peek && t >= next_peek) {
            int ret = peek_dirty(src);
            if (ret < 0) {
                return src_fail(src, ret);
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
    uint64_t skipped = src->pages.skipped;
    src->pages.skipped = 0;
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
            return src_fail(src, ret);
        }
    }
    return 0;
}
