/*
 * session.c - what the source and the destination share
 */
#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bounds.h"
#include "common/endian_util.h"
#include "common/error.h"
#include "common/hash.h"
#include "common/sized.h"
#include "common/time.h"

/* ---- parameters ---- */

ZM_API void zm_params_init(struct zm_params *p)
{
    *p = (struct zm_params){
        .sizeof_params = sizeof(*p),
        .multifd_channels = 2,
        .compression = ZM_CODEC_NONE,
        .compression_level = ZM_LEVEL_DEFAULT,
        .max_bandwidth = 0,
        .downtime_limit_ms = 300,
        .max_iterations = 30,
        .page_size = 4096,
        .batch_pages = 128,
        .dirty_tracking = ZM_TRACKING_AUTO,
    };
}

int zm_params_copy(struct zm_params *dst, const struct zm_params *src)
{
    zm_params_init(dst);
    if (src && zm_sized_in(dst, sizeof(*dst), src) < 0) {
        return zm_error(-EINVAL, "zm_params: sizeof_params is %zu",
                        src->sizeof_params);
    }
    return 0;
}

int zm_hooks_copy(void *dst, size_t dst_size, const void *hooks)
{
    memset(dst, 0, dst_size);
    memcpy(dst, &dst_size, sizeof(dst_size));
    if (hooks && zm_sized_in(dst, dst_size, hooks) < 0) {
        return zm_error(-EINVAL, "hooks: sizeof_hooks is %zu",
                        zm_sized_size(hooks));
    }
    return 0;
}

int zm_params_check(const struct zm_params *p)
{
    int min, max;

    if (p->multifd_channels < 1 || p->multifd_channels > ZM_MAX_CHANNELS) {
        return zm_error(-EINVAL, "multifd-channels %u outside 1..%u",
                        p->multifd_channels, ZM_MAX_CHANNELS);
    }
    int ret;
    if (p->compression == ZM_COMPRESSION_AUTO) {
        /* auto picks the levels too. */
        if (p->compression_level != ZM_LEVEL_DEFAULT) {
            return zm_error(-EINVAL,
                            "compression-level %d: auto chooses "
                            "the level itself",
                            p->compression_level);
        }
    } else if ((ret = zm_codec_levels(p->compression, &min, &max, NULL)) < 0) {
        return ret;
    } else if (p->compression_level != ZM_LEVEL_DEFAULT &&
               (p->compression_level < min || p->compression_level > max)) {
        return zm_error(-ERANGE, "compression-level %d: %s takes %d..%d",
                        p->compression_level, zm_codec_name(p->compression),
                        min, max);
    }
    if ((ret = zm_check_page_size(p->page_size)) < 0 ||
        (ret = zm_check_batch_pages(p->batch_pages)) < 0) {
        return ret;
    }
    /* Dirty tracking sees the system's pages, no smaller. */
    if (p->page_size < (uint32_t)sysconf(_SC_PAGESIZE)) {
        return zm_error(-EINVAL, "page size %u is below the system's %ld",
                        p->page_size, sysconf(_SC_PAGESIZE));
    }
    if (p->decompress_threads > 256) {
        return zm_error(-EINVAL, "decompress-threads %u above 256",
                        p->decompress_threads);
    }
    if (p->max_iterations < 1) {
        return zm_error(-EINVAL, "max-iterations must be at least 1");
    }
    if (p->dirty_tracking < ZM_TRACKING_AUTO ||
        p->dirty_tracking > ZM_TRACKING_EMBEDDER) {
        return zm_error(-EINVAL, "unknown dirty tracking %d",
                        p->dirty_tracking);
    }
    return 0;
}

int zm_region_name_check(const char *name)
{
    size_t len = name ? strlen(name) : 0;

    if (len == 0 || len > ZM_REGION_NAME_MAX) {
        return zm_error(-EINVAL, "region name must be 1..%u bytes",
                        ZM_REGION_NAME_MAX);
    }
    for (size_t i = 0; i < len; i++) {
        if (name[i] < 0x20 || name[i] > 0x7e) {
            return zm_error(-EINVAL,
                            "region name '%s' has a non-printable "
                            "character",
                            name);
        }
    }
    return 0;
}

ZM_API const char *zm_status_name(int status)
{
    static const char *const names[] = {
        [ZM_STATUS_NONE] = "none",
        [ZM_STATUS_SETUP] = "setup",
        [ZM_STATUS_ACTIVE] = "active",
        [ZM_STATUS_DEVICE] = "device",
        [ZM_STATUS_COMPLETED] = "completed",
        [ZM_STATUS_FAILED] = "failed",
        [ZM_STATUS_CANCELLED] = "cancelled",
        [ZM_STATUS_UNCONFIRMED] = "unconfirmed",
    };
    if (status < 0 || status > ZM_STATUS_UNCONFIRMED) {
        return "unknown";
    }
    return names[status];
}

/* ---- statistics ---- */

void zm_stats_finish(struct zm_stats *st, double seconds, int ret,
                     bool cancelled)
{
    double per = seconds > 0 ? seconds : 1;
    uint64_t payload = st->payload_bytes;

    st->total_time_ms = (uint64_t)(seconds * 1000);
    st->mbps = (double)st->transferred * 8 / 1e6 / per;
    st->pages_per_second =
        (uint64_t)((double)(st->normal + st->duplicate) / per);
    st->compression_ratio =
        payload ? (double)st->normal_bytes / (double)payload : 1.0;
    st->status = ret == 0    ? ZM_STATUS_COMPLETED
                 : cancelled ? ZM_STATUS_CANCELLED
                             : ZM_STATUS_FAILED;
}

void zm_stats_add_packet(struct zm_stats *st, const struct zm_packet_info *pi)
{
    st->duplicate += pi->zero_pages;
    st->normal += pi->pages - pi->zero_pages;
    st->normal_bytes += pi->data_size;
    st->payload_bytes += pi->payload_size;
    st->raw_bytes += pi->raw ? pi->payload_size : 0;
}

/* ---- VERIFY ---- */

uint64_t zm_verify_pages(const struct zm_verify_ram *ram)
{
    uint64_t pages = 0;

    for (unsigned r = 0; r < ram->n; r++) {
        pages += ram->size[r] / ram->page_size;
    }
    return pages < ZM_VERIFY_MAX_PAGES ? pages : ZM_VERIFY_MAX_PAGES;
}

uint64_t *zm_verify_hashes(const struct zm_verify_ram *ram)
{
    uint64_t max = zm_verify_pages(ram);
    uint64_t *out = malloc(max * sizeof(uint64_t) + 1);
    uint64_t count = 0;

    if (!out) {
        zm_error(-ENOMEM, "out of memory for verification");
        return NULL;
    }
    for (unsigned r = 0; r < ram->n; r++) {
        for (size_t off = 0; off < ram->size[r] && count < max;
             off += ram->page_size) {
            uint64_t h = zm_hash64(ram->base[r] + off, ram->page_size, 0);
            zm_put_le64(&out[count++], h);
        }
    }
    return out;
}

int zm_verify_compare(const struct zm_verify_ram *ram, const char *const *names,
                      const void *theirs, size_t len)
{
    uint64_t pages = zm_verify_pages(ram);

    if (len != pages * sizeof(uint64_t)) {
        return zm_error(-EBADMSG, "VERIFY of %zu bytes for %llu pages", len,
                        (unsigned long long)pages);
    }
    uint64_t *ours = zm_verify_hashes(ram);
    if (!ours) {
        return -ENOMEM;
    }
    int ret = 0;
    uint64_t page = 0;
    for (unsigned r = 0; r < ram->n && ret == 0; r++) {
        uint64_t n = ram->size[r] / ram->page_size;
        for (uint64_t i = 0; i < n && page < pages; i++, page++) {
            if (memcmp((const uint64_t *)theirs + page, &ours[page], 8) != 0) {
                ret = zm_error(-EBADMSG,
                               "verify: region '%s' page %llu "
                               "(offset 0x%llx) differs from the source",
                               names[r], (unsigned long long)i,
                               (unsigned long long)i * ram->page_size);
                break;
            }
        }
    }
    free(ours);
    return ret;
}

/* ---- the first failure of a run ---- */

void zm_failure_record(struct zm_failure *f, int err)
{
    if (!f->error) {
        f->error = err;
        snprintf(f->msg, sizeof(f->msg), "%s", zm_errmsg());
    }
}

int zm_failure_raise(const struct zm_failure *f)
{
    return zm_error(f->error, "%s", f->msg);
}

/* ---- channels ---- */

int zm_chan_start(struct zm_chan *c, void *(*fn)(void *), void *arg)
{
    if (pthread_create(&c->thread, NULL, fn, arg) != 0) {
        return zm_error(-EAGAIN, "cannot start channel threads");
    }
    c->started = true;
    return 0;
}

void zm_chan_exit(struct zm_chan *c)
{
    c->cpu = zm_thread_cpu();
}

double zm_chan_join(struct zm_chan *c)
{
    if (c->started) {
        pthread_join(c->thread, NULL);
        c->started = false;
    }
    return c->cpu;
}

static struct zm_chan *chan_at(void *chans, size_t stride, unsigned i)
{
    return (struct zm_chan *)(void *)((char *)chans + (size_t)i * stride);
}

double zm_chans_join(void *chans, size_t stride, unsigned n)
{
    double cpu = 0;

    for (unsigned i = 0; i < n; i++) {
        cpu += zm_chan_join(chan_at(chans, stride, i));
    }
    return cpu;
}

void zm_chans_shutdown(void *chans, size_t stride, unsigned n, zm_conn *main)
{
    for (unsigned i = 0; chans && i < n; i++) {
        struct zm_chan *c = chan_at(chans, stride, i);
        if (c->conn != main) {
            zm_conn_shutdown(c->conn);
        }
    }
}

void zm_chans_close(void *chans, size_t stride, unsigned n, zm_conn *main)
{
    for (unsigned i = 0; chans && i < n; i++) {
        struct zm_chan *c = chan_at(chans, stride, i);
        if (c->conn != main) {
            zm_conn_close(c->conn);
        }
        c->conn = NULL;
    }
    zm_conn_close(main);
}
