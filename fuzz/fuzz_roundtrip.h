/*
 * fuzz_roundtrip.h - the input format of fuzz_roundtrip.c
 *
 * fuzz_roundtrip.c reads it and fuzz/make_corpus.c writes it, both through
 * rt_params(), so that the two cannot drift apart.  All integers are drawn
 * first (from the end of the input), then the pages' bytes (from the
 * front):
 *
 *   codec id, level (the codec's range, narrowed on large batches where a
 *   level would be slow), page shift 9..16, page count, max_pages, raw
 *   threshold 0..100, the NO_ESTIMATE and STABLE flags, region 0..3, the
 *   region's spare pages, consecutive indices (and the first) or a
 *   scattered choice, the source layout (in order or shuffled), an output
 *   buffer smaller than the bound (and its size), a destination that starts
 *   zero; then per page its kind and what the kind needs.
 *
 * Bytes: a literal page takes page-size bytes, a pattern page its period;
 * a short input is stretched by repetition.
 */
#ifndef ZM_FUZZ_ROUNDTRIP_H
#define ZM_FUZZ_ROUNDTRIP_H

#include "fuzz_data_producer.h"
#include "zmigrate.h"

#define RT_MAX_PAGES 64u
#define RT_MAX_DATA (256u * 1024) /* bytes of pages per batch */

enum rt_kind {
    RT_ZERO = 0,    /* all zero */
    RT_LITERAL = 1, /* page-size bytes of the input */
    RT_PATTERN = 2, /* a short run of input bytes, repeated */
    RT_COPY = 3,    /* an earlier page with one byte changed */
};

struct rt_page {
    uint32_t kind;
    uint32_t period; /* RT_PATTERN: 1..64 */
    uint32_t from;   /* RT_COPY: an earlier page */
    uint32_t pos;    /* RT_COPY: the byte changed */
    uint32_t value;
};

struct rt_params {
    uint32_t codec;
    uint32_t level; /* offset from the codec's minimum level */
    uint32_t page_shift;
    uint32_t count;
    uint32_t max_pages;
    uint32_t raw_threshold;
    bool no_estimate;
    bool stable;
    uint32_t region;
    uint32_t spare; /* region pages beyond count */
    bool consecutive;
    uint32_t first; /* consecutive: the first index */
    bool shuffle_src;
    bool small_cap;
    uint32_t cap;
    bool dest_zero;
    uint32_t index[RT_MAX_PAGES]; /* page i's index in the region */
    uint32_t slot[RT_MAX_PAGES];  /* page i's place in the source buffer */
    struct rt_page page[RT_MAX_PAGES];
};

/* Levels that stay fast enough for a fuzzer on data_size bytes. */
static inline void rt_levels(int codec, uint32_t data_size, int *min, int *max)
{
    zm_codec_levels(codec, min, max, NULL);
    if (codec == ZM_CODEC_ZSTD && data_size > 16 * 1024 && *max > 9) {
        *max = 9;
    }
    if (codec == ZM_CODEC_ZLIB && data_size > 64 * 1024 && *max > 6) {
        *max = 6;
    }
}

/* The largest packet (zm_encoder_bound()) for these parameters. */
static inline uint32_t rt_bound(const struct rt_params *p)
{
    return ZM_PACKET_HEADER_SIZE + p->max_pages * 4 +
           (p->max_pages << p->page_shift);
}

/* Bytes a boolean travels as. */
static inline bool rt_bool(struct zm_fdp_io *io, bool want)
{
    return zm_fdp_io_range(io, want, 0, 1) != 0;
}

/*
 * A partial Fisher-Yates shuffle of 0..n-1: out[i] for i < k.  In write
 * mode out[] holds the wanted values (distinct, < n) and is kept.
 */
static inline void rt_choose(struct zm_fdp_io *io, uint32_t n, uint32_t k,
                             uint32_t *out)
{
    uint32_t pool[RT_MAX_PAGES * 2];

    for (uint32_t i = 0; i < n; i++) {
        pool[i] = i;
    }
    for (uint32_t i = 0; i < k; i++) {
        uint32_t want = i;
        for (uint32_t j = i; io->out && j < n; j++) {
            if (pool[j] == out[i]) {
                want = j;
                break;
            }
        }
        uint32_t j = zm_fdp_io_range(io, want, i, n - 1);
        uint32_t t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
        out[i] = pool[i];
    }
}

/*
 * Reads the parameters (io->in) or writes those in *p (io->out).  Either
 * way *p ends up holding what a reader gets.
 */
static inline void rt_params(struct zm_fdp_io *io, struct rt_params *p)
{
    int min, max;

    p->codec = zm_fdp_io_range(io, p->codec, 0, ZM_CODEC_COUNT - 1);
    if (!zm_codec_available((int)p->codec)) {
        p->codec = ZM_CODEC_NONE;
    }
    p->page_shift = zm_fdp_io_range(io, p->page_shift, 9, 16);
    uint32_t most = RT_MAX_DATA >> p->page_shift;
    if (most > RT_MAX_PAGES) {
        most = RT_MAX_PAGES;
    }
    p->count = zm_fdp_io_range(io, p->count, 1, most);
    p->max_pages = zm_fdp_io_range(io, p->max_pages, p->count, most);
    rt_levels((int)p->codec, p->count << p->page_shift, &min, &max);
    p->level = zm_fdp_io_range(io, p->level, 0, (uint32_t)(max - min));
    p->raw_threshold = zm_fdp_io_range(io, p->raw_threshold, 0, 100);
    p->no_estimate = rt_bool(io, p->no_estimate);
    p->stable = rt_bool(io, p->stable);
    p->region = zm_fdp_io_range(io, p->region, 0, 3);
    p->spare = zm_fdp_io_range(io, p->spare, 0, p->count);
    p->consecutive = rt_bool(io, p->consecutive);
    if (p->consecutive) {
        p->first = zm_fdp_io_range(io, p->first, 0, p->spare);
        for (uint32_t i = 0; i < p->count; i++) {
            p->index[i] = p->first + i;
        }
    } else {
        rt_choose(io, p->count + p->spare, p->count, p->index);
    }
    p->shuffle_src = rt_bool(io, p->shuffle_src);
    if (p->shuffle_src) {
        rt_choose(io, p->count, p->count, p->slot);
    } else {
        for (uint32_t i = 0; i < p->count; i++) {
            p->slot[i] = i;
        }
    }
    p->small_cap = rt_bool(io, p->small_cap);
    p->cap = p->small_cap ? zm_fdp_io_range(io, p->cap, 0, rt_bound(p))
                          : rt_bound(p);
    p->dest_zero = rt_bool(io, p->dest_zero);
    for (uint32_t i = 0; i < p->count; i++) {
        struct rt_page *pg = &p->page[i];

        pg->kind = zm_fdp_io_range(io, pg->kind, RT_ZERO, RT_COPY);
        if (pg->kind == RT_COPY && i == 0) {
            pg->kind = RT_LITERAL;
        }
        if (pg->kind == RT_PATTERN) {
            pg->period = zm_fdp_io_range(io, pg->period, 1, 64);
        } else if (pg->kind == RT_COPY) {
            pg->from = zm_fdp_io_range(io, pg->from, 0, i - 1);
            pg->pos =
                zm_fdp_io_range(io, pg->pos, 0, (1u << p->page_shift) - 1);
            pg->value = zm_fdp_io_range(io, pg->value, 0, 255);
        }
    }
}

/* The level rt_params() chose, as the encoder takes it. */
static inline int rt_level(const struct rt_params *p)
{
    int min, max;

    rt_levels((int)p->codec, p->count << p->page_shift, &min, &max);
    return min + (int)p->level;
}

/* Bytes of input page i takes (after every integer). */
static inline uint32_t rt_page_bytes(const struct rt_params *p, uint32_t i)
{
    switch (p->page[i].kind) {
    case RT_LITERAL:
        return 1u << p->page_shift;
    case RT_PATTERN:
        return p->page[i].period;
    default:
        return 0;
    }
}

#endif /* ZM_FUZZ_ROUNDTRIP_H */
