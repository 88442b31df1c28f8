/*
 * pageset.c - the pages a pre-copy round has to send
 */
#include "pageset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "common/error.h"

void zm_pageset_init(struct zm_pageset *ps, uint32_t page_size)
{
    memset(ps, 0, sizeof(*ps));
    ps->page_size = page_size;
}

void zm_pageset_free(struct zm_pageset *ps)
{
    for (unsigned i = 0; i < ps->count; i++) {
        free(ps->regions[i].todo);
        free(ps->regions[i].redirtied);
        free(ps->regions[i].log);
    }
    ps->count = 0;
}

int zm_pageset_add(struct zm_pageset *ps, const char *name, void *base,
                   size_t size)
{
    if (ps->count == ZM_MAX_REGIONS) {
        return zm_error(-ENOSPC, "more than %u regions", ZM_MAX_REGIONS);
    }
    if (size == 0 || size % ps->page_size != 0 ||
        (uintptr_t)base % ps->page_size != 0) {
        return zm_error(-EINVAL,
                        "region '%s': base and size must be "
                        "multiples of the %u-byte page",
                        name, ps->page_size);
    }
    for (unsigned i = 0; i < ps->count; i++) {
        if (strcmp(ps->regions[i].name, name) == 0) {
            return zm_error(-EEXIST, "region '%s' added twice", name);
        }
    }
    struct zm_pageset_region *r = &ps->regions[ps->count];
    uint64_t pages = size / ps->page_size;
    size_t words = zm_bitmap_words(pages);
    r->todo = calloc(words, sizeof(uint64_t));
    r->redirtied = calloc(words, sizeof(uint64_t));
    r->log = calloc(words, sizeof(uint64_t));
    if (!r->todo || !r->redirtied || !r->log) {
        free(r->todo);
        free(r->redirtied);
        free(r->log);
        return zm_error(-ENOMEM, "out of memory");
    }
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->base = base;
    r->size = size;
    r->pages = pages;
    ps->count++;
    return 0;
}

void zm_pageset_mark_all(struct zm_pageset *ps)
{
    for (unsigned i = 0; i < ps->count; i++) {
        zm_bitmap_fill(ps->regions[i].todo, ps->regions[i].pages);
    }
}

uint64_t zm_pageset_pending(const struct zm_pageset *ps)
{
    uint64_t n = 0;

    for (unsigned i = 0; i < ps->count; i++) {
        const struct zm_pageset_region *r = &ps->regions[i];
        n += zm_bitmap_count(r->todo, zm_bitmap_words(r->pages));
    }
    return n;
}

void zm_pageset_rewind(struct zm_pageset *ps)
{
    ps->cur_region = 0;
    ps->cur_page = 0;
}

unsigned zm_pageset_take(struct zm_pageset *ps, struct zm_page_ref *refs,
                         unsigned max, unsigned *region)
{
    unsigned n = 0;

    while (ps->cur_region < ps->count) {
        struct zm_pageset_region *r = &ps->regions[ps->cur_region];
        while (ps->cur_page < r->pages && n < max) {
            uint64_t word = ps->cur_page / 64;
            uint64_t again = r->todo[word] & r->redirtied[word];
            if (again) {
                r->todo[word] &= ~again;
                ps->skipped += (uint64_t)__builtin_popcountll(again);
            }
            uint64_t bits = r->todo[word] >> (ps->cur_page % 64);
            if (bits == 0) {
                ps->cur_page = (word + 1) * 64;
                continue;
            }
            ps->cur_page += (uint64_t)__builtin_ctzll(bits);
            if (ps->cur_page >= r->pages) {
                break;
            }
            r->todo[ps->cur_page / 64] &= ~(1ull << (ps->cur_page % 64));
            refs[n++] =
                (struct zm_page_ref){ ps->cur_page,
                                      r->base + ps->cur_page * ps->page_size };
            ps->cur_page++;
        }
        if (n > 0) {
            *region = ps->cur_region;
            return n;
        }
        ps->cur_region++;
        ps->cur_page = 0;
    }
    return 0;
}

int64_t zm_pageset_collect(struct zm_pageset *ps, zm_dirty *tracker)
{
    int64_t dirty = 0;

    for (unsigned i = 0; i < ps->count; i++) {
        struct zm_pageset_region *r = &ps->regions[i];
        size_t words = zm_bitmap_words(r->pages);
        zm_bitmap_or(r->todo, r->redirtied, words);
        memset(r->redirtied, 0, words * sizeof(uint64_t));
        ssize_t n = zm_dirty_collect(tracker, i, r->todo);
        if (n < 0) {
            return zm_error((int)n, "dirty tracking, region '%s': %s", r->name,
                            zm_strerror((int)n));
        }
        /* Count what is pending, whatever the tracker returns. */
        dirty += (int64_t)zm_bitmap_count(r->todo, words);
    }
    return dirty;
}

int zm_pageset_read_log(struct zm_pageset *ps, zm_dirty *tracker, unsigned r)
{
    struct zm_pageset_region *reg = &ps->regions[r];

    memset(reg->log, 0, zm_bitmap_words(reg->pages) * sizeof(uint64_t));
    ssize_t n = zm_dirty_collect(tracker, r, reg->log);
    if (n < 0) {
        return zm_error((int)n, "dirty tracking, region '%s': %s", reg->name,
                        zm_strerror((int)n));
    }
    return 0;
}

void zm_pageset_merge_log(struct zm_pageset *ps, unsigned r)
{
    struct zm_pageset_region *reg = &ps->regions[r];

    zm_bitmap_or(reg->redirtied, reg->log, zm_bitmap_words(reg->pages));
}
