/*
 * destination.h - the receiving side's object, shared by its two files
 *
 * destination.c: the object, the handshake, the end of a migration;
 * destination_rounds.c: the data path, a thread per data channel reading
 * packets into place (or handing them to the decode pool) and meeting the
 * others at each SYNC.  Private to them: the source never includes it
 * (tests/check_layout.py).
 */
#ifndef ZM_DESTINATION_H
#define ZM_DESTINATION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "engine/packet.h"
#include "offload/decode_pool.h"
#include "session.h"

struct dst_region {
    char name[ZM_REGION_NAME_MAX + 1];
    unsigned char *base;
    size_t size;
    bool mapped; /* by us, from the layout */
};

/* Packets a channel has with the decode pool at once. */
#define ZM_DST_DECODE_JOBS 4

struct dst_channel {
    struct zm_chan c; /* first: session.c's helpers walk the array */
    zm_dest *dst;
    zm_decoder *dec;
    unsigned char *packet;
    size_t cap;
    struct iovec *iov;          /* where a raw payload goes, hello.max_pages */
    struct zm_decode_queue *dq; /* NULL: decode on this thread */
    uint64_t pages;
};

struct zm_dest {
    struct zm_params p;
    struct zm_dest_hooks hooks;
    struct dst_region regions[ZM_MAX_REGIONS];
    unsigned nregions;
    bool registered; /* regions came from zm_dest_add_region() */

    struct zm_uri uri;
    zm_listener *listener;
    zm_conn *main;
    bool one_stream;       /* ZM_CONN_ONE_STREAM: one channel, on main */
    bool one_way;          /* ZM_CONN_ONE_WAY: the source hears nothing */
    zm_conn *pending;      /* accepted, its HELLO not yet read */
    struct zm_hello hello; /* the source's */
    struct dst_channel *chans;
    unsigned nchans;

    /* Round barrier and failure, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned arrived;
    uint64_t generation;
    struct zm_failure failure;
    struct zm_decode_pool *decode_pool; /* decompress-threads, or NULL */

    pthread_mutex_t stats_lock;
    struct zm_stats stats;
    atomic_bool cancelled;
};

/* Records the first failure, releases the barrier and every blocked read. */
int dst_fail(zm_dest *dst, int err);

/* A data channel's thread, until its final SYNC or a failure. */
void *dst_data_thread(void *arg);

/* One stream (file:), read in order on the calling thread; sets *pages. */
int dst_read_file(zm_dest *dst, uint64_t *pages);

#endif /* ZM_DESTINATION_H */
