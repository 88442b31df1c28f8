/*
 * dirty.c - the dirty-page trackers: list, probe, selection, validation
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dirty.h"
#include "common/error.h"
#include "zmigrate.h"

/* In order of preference: the one AUTO tries first comes first. */
static const struct zm_dirty_ops *const providers[] = {
    &zm_dirty_uffd_wp_ops,
    &zm_dirty_soft_dirty_ops,
};

#define NPROVIDERS (sizeof(providers) / sizeof(providers[0]))

static const struct zm_dirty_ops *find_ops(enum zm_dirty_kind kind)
{
    for (size_t i = 0; i < NPROVIDERS; i++) {
        if (providers[i]->kind == kind) {
            return providers[i];
        }
    }
    return NULL;
}

size_t zm_dirty_sys_page_size(void)
{
    static size_t cached;
    size_t pg = __atomic_load_n(&cached, __ATOMIC_RELAXED);

    if (pg == 0) {
        long v = sysconf(_SC_PAGESIZE);
        pg = v > 0 ? (size_t)v : 4096;
        __atomic_store_n(&cached, pg, __ATOMIC_RELAXED);
    }
    return pg;
}

const char *zm_dirty_kind_name(enum zm_dirty_kind kind)
{
    if (kind == ZM_DIRTY_AUTO) {
        return "auto";
    }
    if (kind == ZM_DIRTY_EMBEDDER) {
        return zm_dirty_embedder_ops.name;
    }
    const struct zm_dirty_ops *ops = find_ops(kind);
    return ops ? ops->name : "?";
}

/*
 * Tries every provider; on success returns the first usable one, else
 * NULL with one message that gives each provider's reason.
 */
static const struct zm_dirty_ops *probe_auto(int *err)
{
    char why[512] = "";
    size_t len = 0;
    int first_err = 0;

    for (size_t i = 0; i < NPROVIDERS; i++) {
        int ret = providers[i]->probe();
        if (ret == 0) {
            *err = 0;
            return providers[i];
        }
        if (first_err == 0) {
            first_err = ret;
        }
        /* Every reason matters to whoever has to fix the host. */
        if (len < sizeof(why)) {
            int n = snprintf(why + len, sizeof(why) - len, "%s%s",
                             i ? "; " : "", zm_errmsg());
            len += n > 0 ? (size_t)n : 0;
        }
    }
    *err = zm_error(first_err, "no dirty-page tracking available: %s", why);
    return NULL;
}

int zm_dirty_probe(enum zm_dirty_kind kind)
{
    if (kind == ZM_DIRTY_AUTO) {
        int err;
        probe_auto(&err);
        return err;
    }
    if (kind == ZM_DIRTY_EMBEDDER) {
        return 0;
    }
    const struct zm_dirty_ops *ops = find_ops(kind);
    if (!ops) {
        return zm_error(-EINVAL, "dirty: unknown tracking kind %d", (int)kind);
    }
    return ops->probe();
}

static int cmp_range(const void *a, const void *b)
{
    const struct zm_dirty_range *x = a;
    const struct zm_dirty_range *y = b;
    uintptr_t xb = (uintptr_t)x->base;
    uintptr_t yb = (uintptr_t)y->base;

    return xb < yb ? -1 : xb > yb;
}

/*
 * Page size, alignment, sizes; and, for the kernel's trackers (in_kernel),
 * that every range is mapped and none overlaps another: the embedder's log
 * knows its own memory, aliases included.
 */
static int check_ranges(const struct zm_dirty_range *ranges, unsigned count,
                        size_t page_size, bool in_kernel)
{
    size_t sys = zm_dirty_sys_page_size();

    if (page_size < sys || (page_size & (page_size - 1)) != 0) {
        return zm_error(-EINVAL,
                        "dirty: page size %zu is not a power of two"
                        " >= the system page size %zu",
                        page_size, sys);
    }
    if (count == 0 || !ranges) {
        return zm_error(-EINVAL, "dirty: no ranges to track");
    }
    for (unsigned i = 0; i < count; i++) {
        uintptr_t base = (uintptr_t)ranges[i].base;
        size_t size = ranges[i].size;

        if (base == 0 || base % page_size != 0 || size == 0 ||
            size % page_size != 0) {
            return zm_error(-EINVAL,
                            "dirty: range %u [%p, +%zu) is empty or"
                            " not aligned to the page size %zu",
                            i, ranges[i].base, size, page_size);
        }
        if (base + size < base) {
            return zm_error(-EINVAL, "dirty: range %u [%p, +%zu) wraps", i,
                            ranges[i].base, size);
        }
        if (!in_kernel) {
            continue;
        }
        /*
         * A hole would go untracked (UFFDIO_REGISTER accepts holes);
         * MS_ASYNC does nothing but fail with ENOMEM on one.
         */
        if (msync(ranges[i].base, size, MS_ASYNC) != 0) {
            int err = errno;
            if (err == ENOMEM) {
                return zm_error(-EINVAL,
                                "dirty: range %u [%p, +%zu) is not entirely"
                                " mapped",
                                i, ranges[i].base, size);
            }
            return zm_error(-err, "dirty: range %u [%p, +%zu): msync: %s", i,
                            ranges[i].base, size, strerror(err));
        }
    }

    if (!in_kernel) {
        return 0;
    }
    /* Overlaps would be registered twice and reported twice. */
    struct zm_dirty_range *sorted = malloc(count * sizeof(*sorted));
    if (!sorted) {
        return zm_error(-ENOMEM, "dirty: out of memory");
    }
    memcpy(sorted, ranges, count * sizeof(*sorted));
    qsort(sorted, count, sizeof(*sorted), cmp_range);
    int ret = 0;
    for (unsigned i = 1; i < count; i++) {
        uintptr_t prev_end = (uintptr_t)sorted[i - 1].base + sorted[i - 1].size;
        if ((uintptr_t)sorted[i].base < prev_end) {
            ret = zm_error(-EINVAL,
                           "dirty: ranges [%p, +%zu) and [%p, +%zu) overlap",
                           sorted[i - 1].base, sorted[i - 1].size,
                           sorted[i].base, sorted[i].size);
            break;
        }
    }
    free(sorted);
    return ret;
}

/* zm_dirty_create() once the ranges are checked. */
static int create_checked(const struct zm_dirty_ops *ops,
                          const struct zm_dirty_range *ranges, unsigned count,
                          size_t page_size, void *arg, zm_dirty **out)
{
    int ret;

    *out = NULL;
    zm_dirty *d = calloc(1, sizeof(*d));
    if (!d) {
        return zm_error(-ENOMEM, "dirty: out of memory");
    }
    d->ranges = malloc(count * sizeof(*d->ranges));
    if (!d->ranges) {
        free(d);
        return zm_error(-ENOMEM, "dirty: out of memory");
    }
    memcpy(d->ranges, ranges, count * sizeof(*d->ranges));
    d->ops = ops;
    d->count = count;
    d->page_size = page_size;
    d->page_shift = (unsigned)__builtin_ctzll(page_size);
    d->priv = arg;

    ret = ops->start(d);
    if (ret < 0) {
        free(d->ranges);
        free(d);
        return ret;
    }
    *out = d;
    return 0;
}

int zm_dirty_create(const struct zm_dirty_ops *ops,
                    const struct zm_dirty_range *ranges, unsigned count,
                    size_t page_size, void *arg, zm_dirty **out)
{
    int ret =
        check_ranges(ranges, count, page_size, ops->kind != ZM_DIRTY_EMBEDDER);

    *out = NULL;
    return ret < 0 ? ret
                   : create_checked(ops, ranges, count, page_size, arg, out);
}

int zm_dirty_new(enum zm_dirty_kind kind, const struct zm_dirty_range *ranges,
                 unsigned count, size_t page_size, zm_dirty **out)
{
    const struct zm_dirty_ops *ops;
    int ret;

    *out = NULL;
    if (kind != ZM_DIRTY_AUTO && !find_ops(kind)) {
        return zm_error(-EINVAL, "dirty: unknown tracking kind %d", (int)kind);
    }
    ret = check_ranges(ranges, count, page_size, true);
    if (ret < 0) {
        return ret;
    }
    if (kind == ZM_DIRTY_AUTO) {
        ops = probe_auto(&ret);
    } else {
        ops = find_ops(kind);
        ret = ops->probe();
    }
    if (ret < 0) {
        return ret;
    }
    /* Checked above, before the probe: one msync pass over the RAM. */
    return create_checked(ops, ranges, count, page_size, NULL, out);
}

enum zm_dirty_kind zm_dirty_kind_of(const zm_dirty *d)
{
    return d->ops->kind;
}

bool zm_dirty_needs_quiesce(const zm_dirty *d)
{
    return d->ops->needs_quiesce;
}

ssize_t zm_dirty_collect(zm_dirty *d, unsigned r, uint64_t *bitmap)
{
    if (r >= d->count) {
        return zm_error(-EINVAL, "dirty: range %u out of %u", r, d->count);
    }
    return d->ops->collect(d, r, bitmap);
}

void zm_dirty_free(zm_dirty *d)
{
    if (!d) {
        return;
    }
    d->ops->stop(d);
    free(d->ranges);
    free(d);
}

size_t zm_dirty_set_bits(uint64_t *bitmap, size_t first, size_t n)
{
    size_t newly = 0;

    while (n > 0) {
        size_t word = first / 64;
        unsigned bit = (unsigned)(first % 64);
        size_t span = 64 - bit < n ? 64 - bit : n;
        uint64_t mask = span == 64 ? ~0ull : ((1ull << span) - 1) << bit;

        newly += (size_t)__builtin_popcountll(mask & ~bitmap[word]);
        bitmap[word] |= mask;
        first += span;
        n -= span;
    }
    return newly;
}
