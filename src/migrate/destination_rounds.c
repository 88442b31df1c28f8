/*
 * destination_rounds.c - the receiving data path
 *
 * A thread per data channel decodes packets straight into guest memory
 * (or reads them for the decode pool, decompress-threads).  At each SYNC
 * the data threads meet, once their packets are all in place, so no page
 * of round r + 1 is applied before every page of round r
 * (doc/design-migration.md).
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "common/endian_util.h"
#include "common/error.h"
#include "destination.h"

/* Waits until every data channel has reached this SYNC. */
static int barrier(zm_dest *dst)
{
    pthread_mutex_lock(&dst->lock);
    uint64_t gen = dst->generation;
    if (++dst->arrived == dst->nchans) {
        dst->arrived = 0;
        dst->generation++;
        pthread_cond_broadcast(&dst->cond);
    } else {
        while (gen == dst->generation && !dst->failure.error) {
            pthread_cond_wait(&dst->cond, &dst->lock);
        }
    }
    int ret = dst->failure.error ? -ECANCELED : 0;
    pthread_mutex_unlock(&dst->lock);
    return ret;
}

static int read_error(struct dst_channel *ch, int ret)
{
    if (ret == -ENODATA || ret == -ECONNRESET) {
        return zm_error(-ECONNRESET,
                        "channel %u: the stream ends inside a packet",
                        ch->c.index);
    }
    return zm_error(ret, "channel %u: %s", ch->c.index, zm_strerror(ret));
}

/*
 * Reads one PACKET frame body of len bytes and applies it.  A raw
 * payload goes from the stream straight into its pages; any other is read
 * after the head and decoded (engine/packet.h's reader).
 */
/* Counts a packet of len bytes that was applied. */
static void count_packet(struct dst_channel *ch, uint32_t len,
                         const struct zm_packet_info *info)
{
    zm_dest *dst = ch->dst;

    ch->pages += info->pages;
    pthread_mutex_lock(&dst->stats_lock);
    dst->stats.transferred += len + ZM_FRAME_HEADER_SIZE;
    zm_stats_add_packet(&dst->stats, info);
    pthread_mutex_unlock(&dst->stats_lock);
}

/* A packet the decode pool finished. */
static int pool_decoded(void *arg, struct zm_decode_job *job)
{
    struct dst_channel *ch = arg;

    if (job->result < 0) {
        return zm_error(job->result, "channel %u: %s", ch->c.index, job->error);
    }
    count_packet(ch, (uint32_t)job->len, &job->info);
    return 0;
}

/* The rest of a compressed packet, read into a job for the decode pool. */
static int to_pool(struct dst_channel *ch, size_t first, uint32_t len)
{
    int ret = 0;
    struct zm_decode_job *job = zm_decode_next(ch->dq, pool_decoded, ch, &ret);

    if (!job) {
        return ret;
    }
    memcpy(job->packet, ch->packet, first);
    if ((ret = zm_conn_read_all(ch->c.conn, job->packet + first, len - first)) <
        0) {
        return read_error(ch, ret); /* the job is freed with the queue */
    }
    job->len = len;
    zm_decode_submit(ch->dq, job);
    return 0;
}

static int apply_packet(struct dst_channel *ch, uint32_t len)
{
    struct zm_packet_reader rd;
    struct zm_packet_info info = { .sizeof_info = sizeof(info) };
    size_t first = len < ZM_PACKET_HEADER_SIZE ? len : ZM_PACKET_HEADER_SIZE;
    int iovcnt = 0;
    int ret = zm_conn_read_all(ch->c.conn, ch->packet, first);

    if (ret < 0) {
        return read_error(ch, ret);
    }
    if ((ret = zm_packet_reader_start(&rd, ch->dec, ch->packet, len)) < 0) {
        return zm_error(ret, "channel %u: %s", ch->c.index, zm_errmsg());
    }
    /* Raw payloads go straight into place; the rest to the pool, if any. */
    if (ch->dq && !(rd.h.flags & ZM_PKT_RAW && rd.h.normal_count > 0)) {
        return to_pool(ch, first, len);
    }
    ret =
        zm_conn_read_all(ch->c.conn, ch->packet + first, rd.head_size - first);
    if (ret < 0) {
        return read_error(ch, ret);
    }
    int raw = zm_packet_reader_table(&rd, ch->packet, ch->iov, &iovcnt);
    if (raw < 0) {
        return zm_error(raw, "channel %u: %s", ch->c.index, zm_errmsg());
    }
    ret = raw ? zm_conn_readv_all(ch->c.conn, ch->iov, iovcnt)
              : zm_conn_read_all(ch->c.conn, ch->packet + rd.head_size,
                                 len - rd.head_size);
    if (ret < 0) {
        return read_error(ch, ret);
    }
    if ((ret = zm_packet_reader_end(&rd, ch->packet, &info)) < 0) {
        return zm_error(ret, "channel %u: %s", ch->c.index, zm_errmsg());
    }
    count_packet(ch, len, &info);
    return 0;
}

/*
 * Reads one data frame; returns 1 after the final SYNC, 0 to go on, or a
 * negative errno.
 */
static int data_frame(zm_dest *dst, struct dst_channel *ch)
{
    uint32_t type, len;
    int ret = zm_frame_read_header(ch->c.conn, ch->cap, &type, &len);

    if (ret == -ENODATA) {
        return zm_error(-ECONNRESET, "channel %u: %s", ch->c.index,
                        dst->one_stream ? "the stream ends before the "
                                          "migration does"
                                        : "closed before the final round");
    }
    if (ret < 0) {
        return zm_error(ret, "channel %u: %s", ch->c.index, zm_errmsg());
    }
    if (type == ZM_FRAME_PACKET) {
        return apply_packet(ch, len);
    }
    if (type != ZM_FRAME_SYNC || len != ZM_SYNC_SIZE) {
        return zm_error(-EPROTO,
                        "channel %u: unexpected %s frame of %u "
                        "bytes",
                        ch->c.index, zm_frame_name(type), len);
    }
    unsigned char body[ZM_SYNC_SIZE];
    if ((ret = zm_conn_read_all(ch->c.conn, body, sizeof(body))) < 0) {
        return zm_error(-ECONNRESET, "channel %u: torn SYNC", ch->c.index);
    }
    if (zm_get_le32(body + 4) & ~ZM_SYNC_FINAL) {
        return zm_error(-EPROTO, "channel %u: unknown SYNC flags", ch->c.index);
    }
    /* Every packet of the round in place before the others go on. */
    if (ch->dq && (ret = zm_decode_drain(ch->dq, pool_decoded, ch)) < 0) {
        return ret;
    }
    if ((ret = barrier(dst)) < 0) {
        return ret;
    }
    return zm_get_le32(body + 4) & ZM_SYNC_FINAL ? 1 : 0;
}

void *dst_data_thread(void *arg)
{
    struct dst_channel *ch = arg;
    zm_dest *dst = ch->dst;

    for (;;) {
        int ret = data_frame(dst, ch);
        if (ret < 0) {
            dst_fail(dst, ret);
            break;
        }
        if (ret == 1) {
            break;
        }
    }
    zm_chan_exit(&ch->c);
    return NULL;
}

int dst_read_file(zm_dest *dst, uint64_t *pages)
{
    struct dst_channel *ch = &dst->chans[0];

    ch->c.conn = dst->main;
    for (;;) {
        /* A file cannot be shut down under a read: look for a cancel. */
        if (atomic_load(&dst->cancelled)) {
            return -ECANCELED; /* zm_dest_run() gives the reason */
        }
        int ret = data_frame(dst, ch);
        if (ret < 0) {
            return ret;
        }
        if (ret == 1) {
            *pages = ch->pages;
            return 0;
        }
    }
}
