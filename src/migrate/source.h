/*
 * source.h - the sending side's object, shared by its two files
 *
 * source.c: the object, setup and teardown, the rounds' loop and the
 * switchover; source_rounds.c: the live data path, channel threads taking
 * batches from the pageset and the wait for a round to end.  Private to
 * them: the destination never includes it (tests/check_layout.py).
 */
#ifndef ZM_SOURCE_H
#define ZM_SOURCE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "channel/ratelimit.h"
#include "compress_auto.h"
#include "dirty/dirty.h"
#include "offload/offload.h"
#include "pageset.h"
#include "session.h"

/* Batches a channel keeps on the offload backend at once. */
#define ZM_SRC_OFFLOAD_SLOTS 4

struct src_channel {
    struct zm_chan c; /* first: session.c's helpers walk the array */
    zm_source *src;
    zm_encoder *enc;          /* also the offload's software fallback */
    struct zm_offloader *off; /* NULL: compress on this thread */
    unsigned char *packet;
    size_t cap;
    double blocked;         /* seconds its writes waited for the link */
    double engine_wait;     /* offloaded: seconds work waited on the engines */
    unsigned char *scratch; /* auto: cap bytes to measure other methods in */
};

struct zm_source {
    struct zm_params p;
    struct zm_source_hooks hooks;
    struct zm_pageset pages; /* the regions, and the round's work */

    zm_conn *main;
    bool one_stream;            /* ZM_CONN_ONE_STREAM: channels share main */
    bool one_way;               /* ZM_CONN_ONE_WAY: no answer will come */
    pthread_mutex_t write_lock; /* one_stream: one writer at a time */
    struct src_channel *chans;
    unsigned nchans;
    zm_dirty *tracker;

    /* Compression offload (NULL ops: none); offload is open during a run,
     * and set and cleared under stats_lock, which zm_source_stats() takes
     * to read its counters. */
    const struct zm_offload_ops *offload_ops;
    char *offload_args;
    struct zm_offload *offload;
    double offload_cpu; /* its CPU seconds, taken as it closes */

    /* --compression auto: made at setup, kept until the next run so that
     * its timeline can be read; set and cleared under stats_lock. */
    struct zm_auto *autoc;
    uint32_t peer_codecs; /* what the destination decodes (its ACCEPT) */
    int hello_codec;      /* the codec HELLO named */
    uint64_t tcp_busy_us, tcp_rwnd_us; /* the channels' TCP accounts */

    /* The round's work, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t work_cond;
    pthread_cond_t idle_cond;
    bool round_open;
    unsigned busy;
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

/* Records the first failure and makes every thread stop; returns err. */
int src_fail(zm_source *src, int err);
/* The same, under src->lock. */
int src_fail_locked(zm_source *src, int err);

/* A data channel's thread: takes batches, encodes and sends them. */
void *src_channel_thread(void *arg);

/* Sends every page of the pageset's todo bitmaps, then SYNC. */
int src_send_round(zm_source *src, uint32_t round, bool final);

#endif /* ZM_SOURCE_H */
