/*
 * sim_guest.h - the simulated guest of `zmigrate send`: RAM and vCPU threads
 *
 * A stand-in for a virtual machine, so that `zmigrate send` has something
 * live to migrate: RAM filled with guest-like data, and vCPU threads that
 * write to it in one of three ways.
 *
 *   IDLE    RAM is filled before zm_guest_new() returns; no vCPU writes.
 *   FILL    RAM starts zero; once started, the vCPUs fill it with the same
 *           data as IDLE would, each its own contiguous share, front to
 *           back, at dirty_rate in total; then they idle.  Models a guest
 *           that populates its memory while it migrates.
 *   WRITER  RAM is filled as for IDLE; once started, each vCPU writes one
 *           random 8-byte value at a random 8-byte-aligned offset of a
 *           uniformly random 4 KiB page, again and again.
 *
 * The data is zm_datagen_fill()'s (the seed picks it), or the files of a
 * corpus directory laid end to end and repeated until RAM is full.
 *
 * Rates count 4 KiB pages dirtied, which is what a migration must resend:
 * dirty_rate is bytes per second = pages written per second * 4096, as in
 * QEMU's calc-dirty-rate.  A WRITER vCPU dirties one page per 8-byte
 * write, so it writes dirty_rate / 4096 / vcpus values per second; pages
 * are random, so a page may be hit twice within one migration round, which
 * the counters do not correct for (rare while the dirtied set is small
 * against RAM).  vCPUs pace themselves in bursts about a millisecond apart;
 * a vCPU that falls behind (no CPU for it) does not catch up in a burst.
 * dirty_rate 0 or UINT64_MAX means as fast as the vCPUs can: then a
 * WRITER makes tens of millions of writes a second, and pages_dirtied,
 * which counts writes, far exceeds the distinct pages dirtied.
 *
 * RAM is an anonymous private mapping with MAP_NORESERVE.  Transparent
 * huge pages are left as the system sets them: dirty tracking works on 4
 * KiB pages either way, and a migration should be measured on the memory a
 * guest would have.  vCPU threads block all signals, so the tool's signal
 * handlers run on its own threads.
 *
 * Functions return 0 or a negative errno value.  One thread controls a
 * guest (new, start, stop, resume, free); zm_guest_stats() may be called
 * from any thread.
 */
#ifndef ZM_TOOLS_SIM_GUEST_H
#define ZM_TOOLS_SIM_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The page the guest dirties and counts, whatever the host's. */
#define ZM_GUEST_PAGE_SIZE 4096u

#define ZM_GUEST_MAX_VCPUS 1024u

enum zm_guest_workload {
    ZM_GUEST_IDLE,
    ZM_GUEST_FILL,
    ZM_GUEST_WRITER,
};

struct zm_guest_options {
    size_t ram;     /* bytes: a multiple of ZM_GUEST_PAGE_SIZE, not 0 */
    unsigned vcpus; /* 1..ZM_GUEST_MAX_VCPUS */
    enum zm_guest_workload workload;
    uint64_t dirty_rate;    /* bytes/s, all vCPUs together (FILL, WRITER) */
    const char *corpus_dir; /* NULL: zm_datagen_fill() */
    bool random;   /* instead: random bytes, which nothing compresses */
    uint64_t seed; /* for generated data and WRITER's choices */
    /* This share of the pages, in runs of 16, is zero (IDLE, WRITER). */
    unsigned zero_percent;
};

struct zm_guest_stats {
    uint64_t pages_dirtied; /* WRITER: pages written; FILL: pages filled */
    uint64_t bytes_filled;  /* RAM holding its data: all but during FILL */
    uint64_t running_ns;    /* vCPUs running since start, stops excluded */
    double dirty_rate;      /* pages_dirtied * 4096 / running_ns, bytes/s */
    unsigned stops;         /* stops that stopped a running guest */
    bool running;           /* started and not stopped */
    bool fill_done;         /* bytes_filled == RAM size */
};

typedef struct zm_guest zm_guest;

/* "idle", "fill", "writer" -> enum zm_guest_workload, or -EINVAL. */
int zm_guest_workload_by_name(const char *name);

/* The workload's name, or NULL. */
const char *zm_guest_workload_name(int workload);

/*
 * Maps RAM and, for IDLE and WRITER, fills it, with one thread per vCPU.
 * Returns 0 and sets *out, or -EINVAL (bad option), -ENOENT (no corpus
 * directory, or no data in it), -ENOMEM, -EIO or another -errno from
 * reading the corpus; err (err_size bytes, may be NULL) then says what
 * failed.  The vCPUs do not run until zm_guest_start().
 */
int zm_guest_new(const struct zm_guest_options *opts, zm_guest **out, char *err,
                 size_t err_size);

/*
 * Starts the vCPU threads (none for IDLE).  If the guest was stopped
 * before, they start stopped.  Returns 0, -EALREADY, or -EAGAIN (no
 * threads could be made; none run then).
 */
int zm_guest_start(zm_guest *g);

/*
 * Stops every vCPU: returns once each one is parked and will not touch RAM
 * until zm_guest_resume().  Memory written before is visible to the caller
 * (the handshake is a mutex).  Stopping a stopped guest does nothing;
 * calls do not nest.  Always returns 0.
 */
int zm_guest_stop(zm_guest *g);

/* Lets the vCPUs run again; does nothing if they run.  Returns 0. */
int zm_guest_resume(zm_guest *g);

/* zm_guest_stop() and zm_guest_resume() as migration hooks (opaque = g). */
int zm_guest_hook_stop(void *opaque);
int zm_guest_hook_resume(void *opaque);

void *zm_guest_ram(zm_guest *g);
size_t zm_guest_ram_size(const zm_guest *g);

void zm_guest_stats(zm_guest *g, struct zm_guest_stats *stats);

/* Stops and joins the vCPUs and unmaps RAM.  Accepts NULL. */
void zm_guest_free(zm_guest *g);

/*
 * A checksum of memory, to compare a source's RAM with a destination's:
 * XXH3-64 of each 1 MiB, folded in order (seeded with the previous value).
 */
uint64_t zm_guest_hash(const void *ram, size_t size);

/*
 * Compares a and b page by page (the last page may be partial).  Returns
 * 0 if they are equal, 1 with the first differing page's number in *page
 * (may be NULL), or -EINVAL (page_size 0).
 */
int zm_guest_first_difference(const void *a, const void *b, size_t size,
                              size_t page_size, uint64_t *page);

#endif /* ZM_TOOLS_SIM_GUEST_H */
