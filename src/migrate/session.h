/*
 * session.h - what the source and the destination share
 *
 * The frames both sides read and write beyond the handshake (channel.h),
 * the parameters, the statistics, the page hashes of VERIFY, the first
 * failure of a run, and the channel threads.  Neither side includes the
 * other: what both need is here.
 */
#ifndef ZM_SESSION_H
#define ZM_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "channel/channel.h"
#include "zmigrate.h"

/* SYNC body: u32 round, u32 flags. */
#define ZM_SYNC_SIZE 8u
#define ZM_SYNC_FINAL 1u /* the last round: the channel ends after it */

/* END body: u64 pages sent (normal + zero), u64 rounds. */
#define ZM_END_SIZE 16u

/* VERIFY: one xxh3-64 (u64) per page of every region, in layout order;
 * RAM beyond this many pages is not verified. */
#define ZM_VERIFY_MAX_PAGES (16u << 20)

/* ---- parameters ---- */

/* Checks a filled-in params struct; 0 or -EINVAL with a message. */
int zm_params_check(const struct zm_params *p);

/*
 * Copies a caller's params (maybe an older, smaller struct; NULL for the
 * defaults) over the defaults; -EINVAL for a bad sizeof_params.
 */
int zm_params_copy(struct zm_params *dst, const struct zm_params *src);

/*
 * Copies a caller's hooks struct (NULL: none) into dst (dst_size bytes);
 * -EINVAL for a bad sizeof_hooks.
 */
int zm_hooks_copy(void *dst, size_t dst_size, const void *hooks);

/* A region name: 1..ZM_REGION_NAME_MAX printable ASCII bytes; 0 or
 * -EINVAL with a message. */
int zm_region_name_check(const char *name);

/* ---- statistics ---- */

/*
 * The figures derived at the end of a run, on either side: totals, rates,
 * the compression ratio, and the final status from ret.
 */
void zm_stats_finish(struct zm_stats *st, double seconds, int ret,
                     bool cancelled);

/* Counts one packet's pages and payload into st (its wire bytes apart). */
void zm_stats_add_packet(struct zm_stats *st, const struct zm_packet_info *pi);

/* ---- VERIFY ---- */

/* The RAM VERIFY covers: n regions (base[i], size[i]), in layout order. */
struct zm_verify_ram {
    unsigned char *base[ZM_MAX_REGIONS];
    size_t size[ZM_MAX_REGIONS];
    unsigned n;
    uint32_t page_size;
};

/* Pages VERIFY covers: all of them, up to ZM_VERIFY_MAX_PAGES. */
uint64_t zm_verify_pages(const struct zm_verify_ram *ram);

/*
 * VERIFY's body: the xxh3-64 of each page, little endian, for
 * zm_verify_pages() pages.  malloc'd; NULL with a message when out of
 * memory.
 */
uint64_t *zm_verify_hashes(const struct zm_verify_ram *ram);

/*
 * Compares the peer's VERIFY body of len bytes with this side's RAM: 0, or
 * -EBADMSG naming the first page that differs (or the wrong length).
 */
int zm_verify_compare(const struct zm_verify_ram *ram, const char *const *names,
                      const void *theirs, size_t len);

/* ---- the first failure of a run ---- */

struct zm_failure {
    int error; /* 0: none yet */
    char msg[256];
};

/* Records err with the thread's zm_errmsg() unless one is recorded. */
void zm_failure_record(struct zm_failure *f, int err);

/* Makes the recorded failure this thread's error again; returns it. */
int zm_failure_raise(const struct zm_failure *f);

/* ---- channels ---- */

/*
 * What every data channel has, on either side: the first member of each
 * side's own channel struct, so that the helpers below walk an array of
 * those (n of them, stride bytes apart).
 */
struct zm_chan {
    unsigned index; /* 1..n */
    zm_conn *conn;  /* the main one's, on a one-stream transport */
    pthread_t thread;
    bool started;
    double cpu; /* the thread's CPU seconds, set as it ends */
};

/* Starts fn(arg) as c's thread; -EAGAIN with a message when it cannot. */
int zm_chan_start(struct zm_chan *c, void *(*fn)(void *), void *arg);

/* For the thread itself, as it ends. */
void zm_chan_exit(struct zm_chan *c);

/* Joins c's thread if it was started; returns its CPU seconds. */
double zm_chan_join(struct zm_chan *c);

/* Joins every channel's thread; returns their CPU seconds. */
double zm_chans_join(void *chans, size_t stride, unsigned n);

/* Shuts down every channel's connection but main, which the side's own
 * rule shuts down. */
void zm_chans_shutdown(void *chans, size_t stride, unsigned n, zm_conn *main);

/* Closes every channel's connection, and main. */
void zm_chans_close(void *chans, size_t stride, unsigned n, zm_conn *main);

#endif /* ZM_SESSION_H */
