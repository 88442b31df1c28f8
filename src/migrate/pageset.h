/*
 * pageset.h - the pages a pre-copy round has to send
 *
 * Per RAM region, three bitmaps: todo, this round's pages; redirtied, pages
 * the guest wrote again during the round, which the next round sends, so
 * this one skips those it has not sent yet (a page would otherwise go out
 * twice); and a scratch for reading the dirty log mid-round.  A cursor
 * hands batches out in ascending order to the channel threads.
 *
 * No lock of its own: the source holds its lock around zm_pageset_take(),
 * zm_pageset_merge_log() and the cursor; the rest runs between rounds.
 */
#ifndef ZM_PAGESET_H
#define ZM_PAGESET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dirty/dirty.h"
#include "zmigrate.h"

struct zm_pageset_region {
    char name[ZM_REGION_NAME_MAX + 1];
    unsigned char *base;
    size_t size;
    uint64_t pages;
    uint64_t *todo;
    uint64_t *redirtied;
    uint64_t *log; /* the dirty log read mid-round */
};

struct zm_pageset {
    struct zm_pageset_region regions[ZM_MAX_REGIONS];
    unsigned count;
    uint32_t page_size;
    unsigned cur_region; /* the cursor */
    uint64_t cur_page;
    uint64_t skipped; /* redirtied pages the cursor passed this round */
};

/* An empty set of page_size pages. */
void zm_pageset_init(struct zm_pageset *ps, uint32_t page_size);
void zm_pageset_free(struct zm_pageset *ps);

/*
 * Adds a region (name already checked): -ENOSPC past ZM_MAX_REGIONS,
 * -EEXIST for a name already there, -EINVAL when base or size is not a
 * multiple of the page, -ENOMEM; each with a message.
 */
int zm_pageset_add(struct zm_pageset *ps, const char *name, void *base,
                   size_t size);

/* Every page of every region to be sent. */
void zm_pageset_mark_all(struct zm_pageset *ps);

/* How many pages todo holds. */
uint64_t zm_pageset_pending(const struct zm_pageset *ps);

/* Puts the cursor at the first page, for a round about to start. */
void zm_pageset_rewind(struct zm_pageset *ps);

/* Whether the cursor has handed out the whole round. */
static inline bool zm_pageset_done(const struct zm_pageset *ps)
{
    return ps->cur_region >= ps->count;
}

/*
 * Takes up to max pages of one region from todo, in ascending order,
 * skipping the redirtied ones; returns how many (0: the round is all
 * handed out) and their region.
 */
unsigned zm_pageset_take(struct zm_pageset *ps, struct zm_page_ref *refs,
                         unsigned max, unsigned *region);

/*
 * Moves the redirtied pages and those the tracker reports into todo;
 * returns how many todo holds, or a negative errno with a message.
 */
int64_t zm_pageset_collect(struct zm_pageset *ps, zm_dirty *tracker);

/* Reads the tracker's log of region r into its scratch (no lock needed). */
int zm_pageset_read_log(struct zm_pageset *ps, zm_dirty *tracker, unsigned r);

/* Marks what zm_pageset_read_log() found as redirtied (under the lock). */
void zm_pageset_merge_log(struct zm_pageset *ps, unsigned r);

#endif /* ZM_PAGESET_H */
