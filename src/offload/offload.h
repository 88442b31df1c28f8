/*
 * offload.h - compression handed to a backend, with software fallback
 *
 * QZFS's rules, kept by the library whatever the backend does:
 *   - a batch below the backend's size threshold, one it answers busy to,
 *     one in a codec it lacks, and every batch while it is out of service
 *     is compressed in software by the submitting thread;
 *   - a batch it fails, hangs on (ZM_OFFLOAD_TIMEOUT) or returns a packet
 *     for that is not the batch's is redone in software, and the backend
 *     is taken out of service, then probed again after a back-off;
 *   - a backend that is lost stays out of service.
 * Either way the packet is the ordinary packet, and no batch is lost.
 */
#ifndef ZM_OFFLOAD_H
#define ZM_OFFLOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "zmigrate.h"

/* The in-tree backends (cpu.c, emulated.c). */
extern const struct zm_offload_ops zm_offload_cpu;
extern const struct zm_offload_ops zm_offload_emulated;

/* A job on the backend this long is hung: redone in software. */
#define ZM_OFFLOAD_TIMEOUT 0.25
/* Jobs taken from the backend per poll. */
#define ZM_OFFLOAD_POLL_MAX 16u
/* Out of service after a failure for this long, doubling to the max. */
#define ZM_OFFLOAD_BACKOFF 0.1
#define ZM_OFFLOAD_BACKOFF_MAX 5.0

/* A backend in use by one migration, shared by its channels. */
struct zm_offload;

/*
 * Opens ops (an older backend's shorter table is accepted; a missing
 * function is -EINVAL) with args; each job names its codec and level.
 */
int zm_offload_open(const struct zm_offload_ops *ops, const char *args,
                    uint32_t page_size, struct zm_offload **out);
void zm_offload_close(struct zm_offload *off);

/* The backend's host CPU seconds since it opened (0 if it cannot say). */
double zm_offload_cpu_seconds(struct zm_offload *off);

/* Its engines that compress at once (caps.threads; 0: unknown). */
unsigned zm_offload_threads(const struct zm_offload *off);

/* Batches offloaded, compressed in software instead, failed (redone). */
void zm_offload_counters(struct zm_offload *off, uint64_t *offloaded,
                         uint64_t *fallbacks, uint64_t *failures);

/* A batch on its way: taken from, and given back to, an offloader. */
struct zm_offload_slot {
    struct zm_offload_job job; /* first: a completed job is its slot */
    struct zm_page_ref *refs;  /* the caller fills count of them */
    unsigned char *packet;     /* the packet, len bytes once done */
    ssize_t len;
    double submitted;
    bool busy;       /* taken by the caller, or on the backend */
    bool on_backend; /* submitted, not yet handed back */
    bool abandoned;  /* hung or lost: the backend may still hold it */
    struct zm_offload_slot *next;
    /* Once done: CPU seconds the packet took (the backend's figure, or
     * the submitting thread's when it was made in software). */
    double encode_cpu;
    bool in_software;
    /* The caller's own, kept with the batch: --compression auto's method
     * and the one to sample, and the seconds (wall, CPU) the submitting
     * thread spent on it. */
    unsigned method;
    int sample;
    double submit_wall, submit_cpu;
};

/* One channel's queue on the backend, its slots and software encoder. */
struct zm_offloader;

/*
 * slots batches in flight at most, of up to max_pages pages; software is
 * the channel's own encoder (same codec, level and page size), used for
 * every fallback.
 */
int zm_offloader_new(struct zm_offload *off, zm_encoder *software,
                     unsigned slots, uint32_t max_pages,
                     struct zm_offloader **out);

/* Hands back every slot's job first (the backend's queue_free). */
void zm_offloader_free(struct zm_offloader *o);

/* Whether a slot is free for the next batch. */
bool zm_offloader_has_slot(const struct zm_offloader *o);

/* A free slot for the next batch, or NULL when all are busy. */
struct zm_offload_slot *zm_offloader_slot(struct zm_offloader *o);

/*
 * Hands the batch in s (refs[0..count) of region) over: 1 when its packet
 * is ready already (compressed in software), 0 when it is on the backend,
 * or the software encoder's negative errno.
 */
int zm_offloader_submit(struct zm_offloader *o, struct zm_offload_slot *s,
                        uint32_t region, unsigned count, unsigned flags);

/*
 * Waits up to timeout_ms for batches on the backend; puts the slots whose
 * packets are ready (failures redone in software) in done, which has room
 * for every slot, and returns how many, or the software encoder's
 * negative errno.
 */
int zm_offloader_wait(struct zm_offloader *o, struct zm_offload_slot **done,
                      int timeout_ms);

/* Batches on the backend now. */
unsigned zm_offloader_inflight(const struct zm_offloader *o);

/* Gives a slot whose packet was written back for the next batch. */
void zm_offloader_release(struct zm_offloader *o, struct zm_offload_slot *s);

#endif /* ZM_OFFLOAD_H */
