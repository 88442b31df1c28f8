/*
 * dirty.h - which pages of the guest's RAM were written since last time
 *
 * The source side of a pre-copy migration sends all of RAM once, then
 * resends, round after round, only the pages written since the previous
 * round.  A tracker answers "which pages were written" for a set of ranges
 * of this process's memory, behind a small ops table so that each kernel
 * mechanism lives in its own file:
 *
 *   uffd-wp     userfaultfd asynchronous write-protection, collected and
 *               re-armed atomically by the PAGEMAP_SCAN ioctl (Linux 6.7+).
 *               Exact, and safe against writers running during a collect.
 *   soft-dirty  /proc/self/clear_refs + the soft-dirty bit of
 *               /proc/self/pagemap (CONFIG_MEM_SOFT_DIRTY).  Works on older
 *               kernels, but clear_refs acts on the whole process, and a
 *               write racing with a collect can be lost, so writers must be
 *               stopped around each collect (zm_dirty_needs_quiesce()).
 *
 * doc/dirty-tracking.md gives the guarantees and the reasoning behind them.
 *
 * Neither sees writes that bypass the CPU's page tables (device DMA into
 * pinned pages), and discarding pages (MADV_DONTNEED, hole punching) is not
 * guaranteed to be reported: the embedder reports those itself.
 */
#ifndef ZM_DIRTY_H
#define ZM_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One tracked memory range (a RAM region of the guest). */
struct zm_dirty_range {
    void *base;  /* aligned to the tracker's page_size */
    size_t size; /* a non-zero multiple of page_size */
};

typedef struct zm_dirty zm_dirty;

enum zm_dirty_kind {
    ZM_DIRTY_AUTO, /* uffd-wp, else soft-dirty, else an error */
    ZM_DIRTY_UFFD_WP,
    ZM_DIRTY_SOFT_DIRTY,
    ZM_DIRTY_EMBEDDER, /* the embedder's log: zm_dirty_new_embedder() */
};

/*
 * Whether this kernel and process can use kind: 0, or a negative errno
 * with zm_errmsg() saying why not (-EOPNOTSUPP: the kernel lacks it,
 * -EPERM: not allowed to this process, -EINVAL: no such kind).  For
 * ZM_DIRTY_AUTO, 0 when any kind is usable.
 */
int zm_dirty_probe(enum zm_dirty_kind kind);

/* "auto", "uffd-wp", "soft-dirty", "embedder"; "?" for anything else. */
const char *zm_dirty_kind_name(enum zm_dirty_kind kind);

/*
 * Starts tracking count ranges (disjoint, mapped, private or shared
 * anonymous memory, shmem or hugetlbfs for uffd-wp): from now on every
 * write to one of their pages is reported by a later collect.  page_size
 * is the granularity of the bitmaps: a power of two, at least the system
 * page size.  AUTO picks uffd-wp, else soft-dirty, else fails, saying why
 * for each; it never returns a tracker that silently tracks nothing.
 * Returns 0 and sets *out, or a negative errno with zm_errmsg() set.
 */
int zm_dirty_new(enum zm_dirty_kind kind, const struct zm_dirty_range *ranges,
                 unsigned count, size_t page_size, zm_dirty **out);

/*
 * The embedder's log (KVM's dirty log, say) for range r: sets the bit of
 * every page written since the previous call in bitmap, which the tracker
 * zeroes first, and resets the log.  0 or a negative errno.
 */
typedef int (*zm_dirty_log_fn)(void *opaque, unsigned r, uint64_t *bitmap);

/*
 * A tracker that asks the embedder (ZM_DIRTY_EMBEDDER), behind the same
 * interface as the kernel's: log is called on the collecting thread.  The
 * first collect reports what the log holds since the embedder started it.
 * Never needs quiescing.  Arguments and result as zm_dirty_new().
 */
int zm_dirty_new_embedder(zm_dirty_log_fn log, void *opaque,
                          const struct zm_dirty_range *ranges, unsigned count,
                          size_t page_size, zm_dirty **out);

/* The kind actually in use (never ZM_DIRTY_AUTO). */
enum zm_dirty_kind zm_dirty_kind_of(const zm_dirty *d);

/*
 * True when a write that runs concurrently with zm_dirty_collect() can be
 * missed, so that every thread writing to any tracked range (of any
 * tracker of this kind in the process) must be stopped from before the
 * collect starts until it returns.  Writes between collects are always
 * caught.  False for uffd-wp, true for soft-dirty.
 */
bool zm_dirty_needs_quiesce(const zm_dirty *d);

/*
 * For range r: sets bit i of bitmap (bit i % 64 of word i / 64; the caller
 * sizes it for size / page_size bits) for every page written since
 * tracking started or since the previous collect of range r, and re-arms
 * tracking for those pages.  Bits are only ever set, never cleared.  A
 * write that races with the collect is reported now or by the next
 * collect, never lost (with the writers stopped, for a tracker that
 * needs_quiesce).  A page can be reported without having been written
 * (soft-dirty; a transparent huge page reports all its pages), never the
 * reverse.  Copy a page's contents only after the collect that reported it.
 *
 * Returns the number of bits it set that were clear before, or a negative
 * errno.  After a failure (other than -EINVAL for a bad r), pages of range
 * r may have been re-armed without being reported: treat the whole range
 * as written.
 *
 * A tracker is not safe to use from several threads at once.
 */
ssize_t zm_dirty_collect(zm_dirty *d, unsigned r, uint64_t *bitmap);

/* Stops tracking and unregisters the ranges; accepts NULL. */
void zm_dirty_free(zm_dirty *d);

/*
 * Provider side: only dirty.c and dirty_*.c use what follows.
 *
 * zm_dirty_create() validates the arguments and copies the ranges into d
 * before calling start, with its argument in d->priv, which start
 * replaces with its own state; collect is only called with a valid r.
 */
struct zm_dirty_ops {
    enum zm_dirty_kind kind;
    const char *name;
    bool needs_quiesce;
    /* 0 when usable here, or a negative errno with zm_error() set. */
    int (*probe)(void);
    /* Arms tracking of d->ranges; sets d->priv. */
    int (*start)(zm_dirty *d);
    ssize_t (*collect)(zm_dirty *d, unsigned r, uint64_t *bitmap);
    /* Disarms and frees d->priv; start's failure paths clean up alone. */
    void (*stop)(zm_dirty *d);
};

struct zm_dirty {
    const struct zm_dirty_ops *ops;
    struct zm_dirty_range *ranges;
    unsigned count;
    size_t page_size;
    unsigned page_shift; /* log2(page_size) */
    void *priv;
};

extern const struct zm_dirty_ops zm_dirty_uffd_wp_ops;
extern const struct zm_dirty_ops zm_dirty_soft_dirty_ops;
extern const struct zm_dirty_ops zm_dirty_embedder_ops;

/* A tracker of ops over checked ranges; start sees arg in d->priv. */
int zm_dirty_create(const struct zm_dirty_ops *ops,
                    const struct zm_dirty_range *ranges, unsigned count,
                    size_t page_size, void *arg, zm_dirty **out);

/*
 * Sets bits [first, first + n) of bitmap; returns how many were clear.
 */
size_t zm_dirty_set_bits(uint64_t *bitmap, size_t first, size_t n);

/* The system page size, cached. */
size_t zm_dirty_sys_page_size(void);

#endif /* ZM_DIRTY_H */
