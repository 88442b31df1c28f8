/*
 * embedder.c - dirty tracking by the embedder's own log
 *
 * A VMM knows better than the kernel's page tables which pages its guest
 * wrote (KVM's dirty log or dirty rings see writes through the guest's
 * mappings).  Behind the same interface as uffd-wp and soft-dirty, so the
 * source has one way to ask.  The log fills a zeroed scratch bitmap, which
 * is ORed into the caller's: the count of newly set bits is then exact, and
 * bits past the range are dropped whatever the embedder sets.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "common/error.h"
#include "dirty.h"

struct embedder {
    zm_dirty_log_fn log;
    void *opaque;
    uint64_t *scratch; /* words for the largest range */
};

struct embedder_arg {
    zm_dirty_log_fn log;
    void *opaque;
};

static int embedder_probe(void)
{
    return 0;
}

static int embedder_start(zm_dirty *d)
{
    const struct embedder_arg *arg = d->priv;
    struct embedder *e = calloc(1, sizeof(*e));
    size_t words = 0;

    for (unsigned r = 0; r < d->count; r++) {
        size_t n = zm_bitmap_words(d->ranges[r].size >> d->page_shift);
        words = n > words ? n : words;
    }
    if (e) {
        e->scratch = malloc(words * sizeof(uint64_t));
    }
    if (!e || !e->scratch) {
        free(e);
        return zm_error(-ENOMEM, "dirty: out of memory");
    }
    e->log = arg->log;
    e->opaque = arg->opaque;
    d->priv = e;
    return 0;
}

static ssize_t embedder_collect(zm_dirty *d, unsigned r, uint64_t *bitmap)
{
    struct embedder *e = d->priv;
    uint64_t pages = d->ranges[r].size >> d->page_shift;
    size_t words = zm_bitmap_words(pages);

    memset(e->scratch, 0, words * sizeof(uint64_t));
    int ret = e->log(e->opaque, r, e->scratch);
    if (ret < 0) {
        return ret;
    }
    if (pages % 64) {
        e->scratch[words - 1] &= (1ull << (pages % 64)) - 1;
    }
    return (ssize_t)zm_bitmap_or(bitmap, e->scratch, words);
}

static void embedder_stop(zm_dirty *d)
{
    struct embedder *e = d->priv;

    free(e->scratch);
    free(e);
}

const struct zm_dirty_ops zm_dirty_embedder_ops = {
    .kind = ZM_DIRTY_EMBEDDER,
    .name = "embedder",
    .needs_quiesce = false,
    .probe = embedder_probe,
    .start = embedder_start,
    .collect = embedder_collect,
    .stop = embedder_stop,
};

int zm_dirty_new_embedder(zm_dirty_log_fn log, void *opaque,
                          const struct zm_dirty_range *ranges, unsigned count,
                          size_t page_size, zm_dirty **out)
{
    struct embedder_arg arg = { log, opaque };

    if (!log) {
        *out = NULL;
        return zm_error(-EINVAL, "dirty: the embedder's tracker needs a log");
    }
    return zm_dirty_create(&zm_dirty_embedder_ops, ranges, count, page_size,
                           &arg, out);
}
