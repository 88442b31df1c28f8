/*
 * destination.c - the receiving side of a live migration
 *
 * The caller's thread accepts the channels and serves the main channel:
 * the handshake, the layout, the device state, END and VERIFY.  The data
 * channels' threads are in destination_rounds.c.
 */
/*
 * destination.c - the receiving side of a live migration
 *
 * The caller's thread accepts the channels and serves the main channel; a
 * thread per data channel decodes packets straight into guest memory.  At
 * each SYNC the data threads meet, so no page of round r + 1 is applied
 * before every page of round r (doc/design-migration.md).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/endian_util.h"
#include "common/error.h"
#include "common/sized.h"
#include "common/time.h"
#include "destination.h"

ZM_API int zm_dest_new(const struct zm_params *params,
                       const struct zm_dest_hooks *hooks, zm_dest **out)
{
    zm_dest *dst = calloc(1, sizeof(*dst));
    int ret;

    if (!dst) {
        return zm_error(-ENOMEM, "out of memory");
    }
    if ((ret = zm_params_copy(&dst->p, params)) < 0 ||
        (ret = zm_hooks_copy(&dst->hooks, sizeof(dst->hooks), hooks)) < 0) {
        free(dst);
        return ret;
    }
    if (dst->p.decompress_threads > 256) {
        unsigned n = dst->p.decompress_threads;
        free(dst);
        return zm_error(-EINVAL, "decompress-threads %u above 256", n);
    }
    dst->stats.sizeof_stats = sizeof(dst->stats);
    pthread_mutex_init(&dst->lock, NULL);
    pthread_cond_init(&dst->cond, NULL);
    pthread_mutex_init(&dst->stats_lock, NULL);
    *out = dst;
    return 0;
}

ZM_API int zm_dest_add_region(zm_dest *dst, const char *name, void *base,
                              size_t size)
{
    int ret;

    if (dst->nregions == ZM_MAX_REGIONS) {
        return zm_error(-ENOSPC, "more than %u regions", ZM_MAX_REGIONS);
    }
    if ((ret = zm_region_name_check(name)) < 0) {
        return ret;
    }
    if (size == 0 || !base) {
        return zm_error(-EINVAL, "region '%s': no memory", name);
    }
    struct dst_region *r = &dst->regions[dst->nregions++];
    memcpy(r->name, name, strlen(name) + 1);
    r->base = base;
    r->size = size;
    dst->registered = true;
    return 0;
}

ZM_API int zm_dest_listen(zm_dest *dst, const char *uri)
{
    int ret = zm_uri_parse(uri, &dst->uri);

    if (ret < 0 || dst->uri.kind == ZM_URI_FILE) {
        return ret;
    }
    return zm_listener_open(&dst->uri, &dst->listener);
}

ZM_API const char *zm_dest_uri(const zm_dest *dst)
{
    return dst->listener ? zm_listener_uri(dst->listener) : dst->uri.path;
}

ZM_API unsigned zm_dest_region_count(const zm_dest *dst)
{
    return dst->nregions;
}

ZM_API int zm_dest_region(const zm_dest *dst, unsigned i, const char **name,
                          void **base, size_t *size)
{
    if (i >= dst->nregions) {
        return zm_error(-ERANGE, "no region %u, the layout has %u", i,
                        dst->nregions);
    }
    if (name) {
        *name = dst->regions[i].name;
    }
    if (base) {
        *base = dst->regions[i].base;
    }
    if (size) {
        *size = dst->regions[i].size;
    }
    return 0;
}

static void shutdown_all(zm_dest *dst)
{
    /* Reads only: the source must still hear FAIL, or it cannot tell a
     * failure from a crash after its END (and must not resume then). */
    zm_conn_shutdown_read(dst->main);
    zm_conn_shutdown(dst->pending);
    zm_chans_shutdown(dst->chans, sizeof(*dst->chans), dst->nchans, dst->main);
}

/*
 * Records the first failure, releases the barrier and every blocked read.
 * The lock also guards the connections' creation and closing.
 */
int dst_fail(zm_dest *dst, int err)
{
    pthread_mutex_lock(&dst->lock);
    zm_failure_record(&dst->failure, err);
    pthread_cond_broadcast(&dst->cond);
    shutdown_all(dst);
    pthread_mutex_unlock(&dst->lock);
    return err;
}

ZM_API void zm_dest_cancel(zm_dest *dst)
{
    atomic_store(&dst->cancelled, true);
    dst_fail(dst, zm_error(-ECANCELED, "migration cancelled"));
}

ZM_API int zm_dest_stats(zm_dest *dst, struct zm_stats *stats)
{
    pthread_mutex_lock(&dst->stats_lock);
    int ret = zm_sized_out(stats, &dst->stats, sizeof(dst->stats));
    pthread_mutex_unlock(&dst->stats_lock);
    return ret < 0 ? zm_error(ret, "zm_stats: sizeof_stats is %zu",
                              stats->sizeof_stats)
                   : 0;
}

ZM_API void zm_dest_free(zm_dest *dst)
{
    if (!dst) {
        return;
    }
    for (unsigned i = 0; i < dst->nregions; i++) {
        if (dst->regions[i].mapped) {
            munmap(dst->regions[i].base, dst->regions[i].size);
        }
    }
    zm_listener_close(dst->listener);
    pthread_mutex_destroy(&dst->lock);
    pthread_cond_destroy(&dst->cond);
    pthread_mutex_destroy(&dst->stats_lock);
    free(dst);
}

/* Matches the layout with registered regions, or maps it. */
static int adopt_layout(zm_dest *dst, const struct zm_layout_region *layout,
                        unsigned n)
{
    if (dst->registered) {
        if (n != dst->nregions) {
            return zm_error(-EPROTO,
                            "the source has %u regions, %u are "
                            "registered here",
                            n, dst->nregions);
        }
        for (unsigned i = 0; i < n; i++) {
            /* Packets name regions by index: keep the source's order. */
            unsigned j = i;
            while (j < n && strcmp(dst->regions[j].name, layout[i].name)) {
                j++;
            }
            if (j == n || dst->regions[j].size != layout[i].size) {
                return zm_error(-EPROTO,
                                "region '%s' (%llu bytes) has no "
                                "match here",
                                layout[i].name,
                                (unsigned long long)layout[i].size);
            }
            struct dst_region tmp = dst->regions[i];
            dst->regions[i] = dst->regions[j];
            dst->regions[j] = tmp;
        }
        return 0;
    }
    for (unsigned i = 0; i < n; i++) {
        void *base = mmap(NULL, layout[i].size, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED) {
            return zm_error(-ENOMEM, "cannot map region '%s' of %llu bytes",
                            layout[i].name, (unsigned long long)layout[i].size);
        }
        /* Huge pages: the first write to each page of fresh memory is a
         * fault, and receivers spend much of their CPU on those; 2 MiB
         * pages take 512 times fewer.  Advice only: ignore failure. */
        madvise(base, layout[i].size, MADV_HUGEPAGE);
        struct dst_region *r = &dst->regions[dst->nregions++];
        memcpy(r->name, layout[i].name, sizeof(r->name));
        r->base = base;
        r->size = layout[i].size;
        r->mapped = true;
    }
    return 0;
}

static int make_channels(zm_dest *dst)
{
    struct zm_region_map maps[ZM_MAX_REGIONS];
    struct zm_decoder_options opts = {
        .sizeof_options = sizeof(opts),
        .page_size = dst->hello.page_size,
        .max_pages = dst->hello.max_pages,
        .regions = maps,
        .region_count = dst->nregions,
    };
    int ret;

    for (unsigned i = 0; i < dst->nregions; i++) {
        maps[i] = (struct zm_region_map){ dst->regions[i].base,
                                          dst->regions[i].size };
    }
    /* One stream carries every channel's frames. */
    unsigned nchans = dst->one_stream ? 1 : dst->hello.channels;
    struct dst_channel *chans = calloc(nchans, sizeof(*chans));
    if (!chans) {
        return zm_error(-ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&dst->lock); /* fail() walks them */
    dst->chans = chans;
    dst->nchans = nchans;
    pthread_mutex_unlock(&dst->lock);
    for (unsigned i = 0; i < dst->nchans; i++) {
        struct dst_channel *ch = &dst->chans[i];
        ch->dst = dst;
        ch->c.index = i + 1;
        if ((ret = zm_decoder_new(&opts, &ch->dec)) < 0) {
            return ret;
        }
        ch->cap =
            zm_packet_max_size(dst->hello.max_pages, dst->hello.page_size);
        ch->packet = malloc(ch->cap);
        ch->iov = calloc(dst->hello.max_pages, sizeof(*ch->iov));
        if (!ch->packet || !ch->iov) {
            return zm_error(-ENOMEM, "out of memory");
        }
    }
    if (dst->p.decompress_threads &&
        (ret = zm_decode_pool_new(dst->p.decompress_threads, &opts,
                                  &dst->decode_pool)) < 0) {
        return ret;
    }
    for (unsigned i = 0; dst->decode_pool && i < dst->nchans; i++) {
        struct dst_channel *ch = &dst->chans[i];
        if ((ret = zm_decode_queue_new(dst->decode_pool, ZM_DST_DECODE_JOBS,
                                       ch->cap, &ch->dq)) < 0) {
            return ret;
        }
    }
    return 0;
}

/* The codecs this build decodes, bit (1u << id): the decoders take all. */
static uint32_t built_codecs(void)
{
    uint32_t mask = 0;

    for (int id = 0; id < ZM_CODEC_COUNT; id++) {
        mask |= zm_codec_available(id) ? 1u << id : 0;
    }
    return mask;
}

/* Reads HELLO and LAYOUT on the main channel; refuses what cannot work. */
static int handshake(zm_dest *dst)
{
    unsigned char *body = malloc(ZM_LAYOUT_MAX_SIZE);
    struct zm_layout_region *layout = calloc(ZM_MAX_REGIONS, sizeof(*layout));
    uint32_t len;
    unsigned n = 0;
    int ret = body && layout ? 0 : zm_error(-ENOMEM, "out of memory");

    if (ret == 0) {
        ret = zm_frame_expect(dst->main, ZM_FRAME_HELLO, body, ZM_HELLO_SIZE,
                              &len);
    }
    if (ret == 0) {
        ret = zm_hello_decode(body, len, &dst->hello);
    }
    if (ret == 0 && dst->hello.channel != 0) {
        ret = zm_error(-EPROTO, "the first connection is data channel %u",
                       dst->hello.channel);
    }
    if (ret == 0 && !zm_codec_available(dst->hello.codec)) {
        ret = zm_error(-EPROTO, "codec %s is not built here",
                       zm_codec_name(dst->hello.codec));
    }
    if (ret == 0 && dst->p.page_size != 4096 &&
        dst->p.page_size != dst->hello.page_size) {
        ret = zm_error(-EPROTO, "page size %u, this side uses %u",
                       dst->hello.page_size, dst->p.page_size);
    }
    if (ret == 0) {
        ret = zm_frame_expect(dst->main, ZM_FRAME_LAYOUT, body,
                              ZM_LAYOUT_MAX_SIZE, &len);
    }
    if (ret == 0) {
        ret = zm_layout_decode(body, len, dst->hello.page_size, layout, &n);
    }
    if (ret == 0) {
        ret = adopt_layout(dst, layout, n);
    }
    if (ret == 0) {
        ret = make_channels(dst);
    }
    if (!dst->one_way) {
        /* Tell the source, so that it fails with our reason, or which
         * codecs we decode (its --compression auto chooses among them). */
        const char *reason = zm_errmsg();
        unsigned char codecs[4];
        zm_put_le32(codecs, built_codecs());
        struct iovec iov =
            ret < 0 ? (struct iovec){ (void *)reason, strlen(reason) }
                    : (struct iovec){ codecs, sizeof(codecs) };
        char msg[256];
        snprintf(msg, sizeof(msg), "%s", reason);
        zm_frame_write(dst->main, ret < 0 ? ZM_FRAME_REFUSE : ZM_FRAME_ACCEPT,
                       &iov, 1);
        if (ret < 0) {
            zm_error(ret, "%s", msg);
        }
    }
    for (unsigned i = 0; ret == 0 && i < n; i++) {
        pthread_mutex_lock(&dst->stats_lock);
        dst->stats.total += layout[i].size;
        pthread_mutex_unlock(&dst->stats_lock);
    }
    free(body);
    free(layout);
    return ret;
}

/*
 * Accepts the data channels of this session, in any order, within 10 s of
 * the last one.  A failure or cancel ends the wait: accepting polls for
 * it, and the connection whose HELLO is awaited is shut down by fail().
 */
static int accept_channels(zm_dest *dst)
{
    unsigned char body[ZM_HELLO_SIZE];
    struct zm_hello h;
    uint32_t len;

    for (unsigned got = 0, waited_ms = 0; got < dst->nchans;) {
        zm_conn *conn;
        int ret = zm_listener_accept(dst->listener, 200, &conn);
        if (ret == -ETIMEDOUT) {
            pthread_mutex_lock(&dst->lock);
            bool failed = dst->failure.error != 0;
            pthread_mutex_unlock(&dst->lock);
            if (failed) {
                return -ECANCELED; /* zm_dest_run() reports the reason */
            }
            if ((waited_ms += 200) < 10000) {
                continue;
            }
            return zm_error(-ETIMEDOUT,
                            "%s: %u of %u data channels connected "
                            "within 10 s",
                            zm_dest_uri(dst), got, dst->nchans);
        }
        if (ret < 0) {
            return ret;
        }
        waited_ms = 0;
        pthread_mutex_lock(&dst->lock);
        dst->pending = conn;
        if (dst->failure.error) {
            zm_conn_shutdown(conn); /* cancelled meanwhile */
        }
        pthread_mutex_unlock(&dst->lock);
        ret = zm_frame_expect(conn, ZM_FRAME_HELLO, body, sizeof(body), &len);
        if (ret == 0) {
            ret = zm_hello_decode(body, len, &h);
        }
        if (ret == 0 &&
            (memcmp(h.session, dst->hello.session, 16) != 0 || h.channel < 1 ||
             h.channel > dst->nchans || dst->chans[h.channel - 1].c.conn)) {
            ret = zm_error(-EPROTO,
                           "a connection that is not a new data "
                           "channel of this migration (channel %u)",
                           h.channel);
        }
        pthread_mutex_lock(&dst->lock);
        dst->pending = NULL;
        if (ret == 0) {
            dst->chans[h.channel - 1].c.conn = conn;
        }
        pthread_mutex_unlock(&dst->lock);
        if (ret < 0) {
            zm_conn_close(conn);
            return ret;
        }
        got++;
    }
    return 0;
}

/* DEVICE_STATE then END on the main channel, once the data is in. */
static int finish(zm_dest *dst, uint64_t pages)
{
    unsigned char *state = malloc(ZM_MAX_DEVICE_STATE);
    unsigned char end[ZM_END_SIZE];
    uint32_t len = 0, end_len;
    int ret = state ? 0 : zm_error(-ENOMEM, "out of memory");

    if (ret == 0) {
        ret = zm_frame_expect(dst->main, ZM_FRAME_DEVICE_STATE, state,
                              ZM_MAX_DEVICE_STATE, &len);
    }
    if (ret == 0) {
        ret = zm_frame_expect(dst->main, ZM_FRAME_END, end, sizeof(end),
                              &end_len);
    }
    if (ret == 0 && (end_len != ZM_END_SIZE || zm_get_le64(end) != pages)) {
        ret = zm_error(-EBADMSG, "the source sent %llu pages, %llu arrived",
                       (unsigned long long)zm_get_le64(end),
                       (unsigned long long)pages);
    }
    if (ret == 0) {
        pthread_mutex_lock(&dst->stats_lock);
        dst->stats.iterations = (unsigned)zm_get_le64(end + 8);
        pthread_mutex_unlock(&dst->stats_lock);
    }
    if (ret == 0 && dst->hooks.load_state) {
        ret = dst->hooks.load_state(dst->hooks.opaque, state, len);
        if (ret < 0) {
            ret = zm_error(ret, "the embedder could not load the device "
                                "state");
        }
    }
    free(state);
    return ret;
}

/* Compares the source's page hashes (VERIFY) with this side's RAM. */
static int verify(zm_dest *dst)
{
    struct zm_verify_ram ram = { .n = dst->nregions,
                                 .page_size = dst->hello.page_size };
    const char *names[ZM_MAX_REGIONS];
    uint32_t len;

    for (unsigned i = 0; i < ram.n; i++) {
        ram.base[i] = dst->regions[i].base;
        ram.size[i] = dst->regions[i].size;
        names[i] = dst->regions[i].name;
    }
    size_t cap = zm_verify_pages(&ram) * sizeof(uint64_t);
    void *theirs = malloc(cap + 1);
    int ret =
        theirs ? zm_frame_expect(dst->main, ZM_FRAME_VERIFY, theirs, cap, &len)
               : zm_error(-ENOMEM, "out of memory");
    if (ret == 0) {
        ret = zm_verify_compare(&ram, names, theirs, len);
    }
    free(theirs);
    return ret;
}

static int receive(zm_dest *dst)
{
    int ret;
    uint64_t pages = 0;

    zm_conn *conn;
    if (dst->uri.kind == ZM_URI_FILE) {
        ret = zm_conn_open_file(&dst->uri, &conn);
    } else if (!dst->listener) {
        ret = zm_error(-EINVAL, "zm_dest_listen() first");
    } else {
        /* Poll, so that a cancel before any source comes is seen. */
        do {
            ret = zm_listener_accept(dst->listener, 200, &conn);
        } while (ret == -ETIMEDOUT && !atomic_load(&dst->cancelled));
    }
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&dst->lock);
    dst->main = conn;
    dst->one_stream = zm_conn_caps(conn) & ZM_CONN_ONE_STREAM;
    dst->one_way = zm_conn_caps(conn) & ZM_CONN_ONE_WAY;
    if (dst->failure.error) {
        zm_conn_shutdown(conn);
    }
    pthread_mutex_unlock(&dst->lock);
    if ((ret = handshake(dst)) < 0) {
        return ret;
    }
    pthread_mutex_lock(&dst->stats_lock);
    dst->stats.status = ZM_STATUS_ACTIVE;
    pthread_mutex_unlock(&dst->stats_lock);
    if (dst->one_stream) {
        if ((ret = dst_read_file(dst, &pages)) < 0 ||
            (ret = finish(dst, pages)) < 0) {
            return ret;
        }
        return dst->hello.flags & ZM_HELLO_VERIFY ? verify(dst) : 0;
    }

    if ((ret = accept_channels(dst)) < 0) {
        return ret;
    }
    for (unsigned i = 0; i < dst->nchans; i++) {
        if ((ret = zm_chan_start(&dst->chans[i].c, dst_data_thread,
                                 &dst->chans[i])) < 0) {
            /* Those started would wait at the first SYNC for this one. */
            return dst_fail(dst, ret);
        }
    }
    for (unsigned i = 0; i < dst->nchans; i++) {
        zm_chan_join(&dst->chans[i].c);
        pages += dst->chans[i].pages;
    }
    pthread_mutex_lock(&dst->lock);
    ret = dst->failure.error;
    pthread_mutex_unlock(&dst->lock);
    if (ret < 0 || (ret = finish(dst, pages)) < 0) {
        return ret;
    }
    if (dst->hello.flags & ZM_HELLO_VERIFY) {
        /* Everything arrived; now check it, the verdict comes after.  Not
         * after a cancel in load_state: then the verdict is FAIL at once. */
        pthread_mutex_lock(&dst->lock);
        ret = dst->failure.error;
        pthread_mutex_unlock(&dst->lock);
        struct iovec none = { NULL, 0 };
        if (ret < 0 || (ret = zm_frame_write(dst->main, ZM_FRAME_COMPLETE,
                                             &none, 1)) < 0) {
            return ret;
        }
        return verify(dst);
    }
    return 0;
}

ZM_API int zm_dest_run(zm_dest *dst)
{
    double t0 = zm_now();
    double cpu0 = zm_thread_cpu();

    pthread_mutex_lock(&dst->stats_lock);
    dst->stats.status = ZM_STATUS_SETUP;
    pthread_mutex_unlock(&dst->stats_lock);

    int ret = receive(dst);
    /*
     * A cancel may also land after the last read (in load_state, say):
     * then the source must not be told COMPLETE, nor the caller 0.  The
     * verdict is written under the lock fail() takes, so a cancel comes
     * either before it (FAIL) or after it (too late).
     */
    pthread_mutex_lock(&dst->lock);
    if (dst->failure.error) {
        ret = zm_failure_raise(&dst->failure);
    }
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", zm_errmsg());
    if (dst->main && !dst->one_way) {
        struct iovec iov = { msg, ret < 0 ? strlen(msg) : 0 };
        int wret = zm_frame_write(
            dst->main, ret < 0 ? ZM_FRAME_FAIL : ZM_FRAME_COMPLETE, &iov, 1);
        if (ret == 0 && wret < 0) {
            /* The source never hears of it: it cannot take the guest. */
            ret = wret;
            snprintf(msg, sizeof(msg), "sending COMPLETE: %s",
                     zm_strerror(wret));
        }
    }
    pthread_mutex_unlock(&dst->lock);
    if (ret < 0) {
        shutdown_all(dst);
    }

    double cpu = zm_thread_cpu() - cpu0;
    cpu += zm_chans_join(dst->chans, sizeof(*dst->chans), dst->nchans);
    for (unsigned i = 0; i < dst->nchans; i++) {
        zm_decode_queue_free(dst->chans[i].dq);
        dst->chans[i].dq = NULL;
    }
    if (dst->decode_pool) {
        cpu += zm_decode_pool_cpu_seconds(dst->decode_pool);
        zm_decode_pool_free(dst->decode_pool);
        dst->decode_pool = NULL;
    }
    pthread_mutex_lock(&dst->lock);
    for (unsigned i = 0; i < dst->nchans; i++) {
        zm_decoder_free(dst->chans[i].dec);
        free(dst->chans[i].packet);
        free(dst->chans[i].iov);
    }
    zm_chans_close(dst->chans, sizeof(*dst->chans), dst->nchans, dst->main);
    free(dst->chans);
    dst->chans = NULL;
    dst->nchans = 0;
    dst->main = NULL;
    pthread_mutex_unlock(&dst->lock);

    double total = zm_now() - t0;
    pthread_mutex_lock(&dst->stats_lock);
    struct zm_stats *st = &dst->stats;
    st->cpu_seconds = cpu;
    zm_stats_finish(st, total, ret, atomic_load(&dst->cancelled));
    pthread_mutex_unlock(&dst->stats_lock);
    if (ret < 0) {
        zm_error(ret, "%s", msg);
    }
    return ret;
}
