/*
 * fuzz_data_producer.h - parameters and bytes drawn from a fuzz input
 *
 * After zstd's tests/fuzz/fuzz_data_producer.h: integers come from the end
 * of the input and bulk bytes from its front, so that a mutation of the
 * contents leaves the parameters alone and the other way round.  An
 * exhausted producer keeps answering (the minimum of each range, no
 * bytes): every input, even an empty one, is a valid input.
 *
 * Integers are read little endian from the end backwards: the last byte
 * of the input is the low byte of the first integer drawn, and a range
 * takes only as many bytes as its width needs (none for min == max).
 * zm_fdp_writer builds inputs in this format for fuzz/make_corpus.c.
 */
#ifndef ZM_FUZZ_DATA_PRODUCER_H
#define ZM_FUZZ_DATA_PRODUCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct zm_fdp {
    const uint8_t *data; /* unconsumed bytes: data[0..size) */
    size_t size;
};

static inline struct zm_fdp zm_fdp_init(const uint8_t *data, size_t size)
{
    return (struct zm_fdp){ data, size };
}

/* Bytes a range of max - min needs: 0 to 4. */
static inline unsigned zm_fdp_range_bytes(uint32_t range)
{
    unsigned n = 0;

    while (n < 4 && (range >> (8 * n)) != 0) {
        n++;
    }
    return n;
}

/* A value in min..max (inclusive) from the end of the input. */
static inline uint32_t zm_fdp_range(struct zm_fdp *p, uint32_t min,
                                    uint32_t max)
{
    uint32_t range = max - min;
    unsigned n = zm_fdp_range_bytes(range);
    uint32_t bits = 0;

    for (unsigned i = 0; i < n && p->size > 0; i++) {
        bits |= (uint32_t)p->data[--p->size] << (8 * i);
    }
    if (range == UINT32_MAX) {
        return bits;
    }
    return min + bits % (range + 1);
}

static inline bool zm_fdp_bool(struct zm_fdp *p)
{
    return zm_fdp_range(p, 0, 1) != 0;
}

/* Bytes left for zm_fdp_bytes(). */
static inline size_t zm_fdp_remaining(const struct zm_fdp *p)
{
    return p->size;
}

/*
 * Takes up to want bytes from the front; returns them and sets *got
 * (which may be less than want, or 0 with a non-NULL pointer).
 */
static inline const uint8_t *zm_fdp_bytes(struct zm_fdp *p, size_t want,
                                          size_t *got)
{
    const uint8_t *out = p->data;
    size_t n = want < p->size ? want : p->size;

    p->data += n;
    p->size -= n;
    *got = n;
    return out;
}

/* Takes everything that is left. */
static inline const uint8_t *zm_fdp_rest(struct zm_fdp *p, size_t *got)
{
    return zm_fdp_bytes(p, p->size, got);
}

/*
 * The inverse, for writing seeds: record the bytes (zm_fdp_writer_bytes)
 * and the integers (zm_fdp_writer_range, in the order the target draws
 * them), then zm_fdp_writer_finish() lays out the input.
 */
#define ZM_FDP_WRITER_TAIL 1024

struct zm_fdp_writer {
    uint8_t *buf; /* the input being built: bytes first */
    size_t cap;
    size_t len;
    uint8_t tail[ZM_FDP_WRITER_TAIL]; /* integer bytes, in draw order */
    size_t tail_len;
    bool overflow;
};

static inline void zm_fdp_writer_init(struct zm_fdp_writer *w, uint8_t *buf,
                                      size_t cap)
{
    memset(w, 0, sizeof(*w));
    w->buf = buf;
    w->cap = cap;
}

static inline void zm_fdp_writer_bytes(struct zm_fdp_writer *w, const void *src,
                                       size_t len)
{
    if (len > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    memcpy(w->buf + w->len, src, len);
    w->len += len;
}

/* Records value (clamped into min..max) as zm_fdp_range(min, max) reads it. */
static inline void zm_fdp_writer_range(struct zm_fdp_writer *w, uint32_t value,
                                       uint32_t min, uint32_t max)
{
    uint32_t v = value < min ? 0 : value > max ? max - min : value - min;
    unsigned n = zm_fdp_range_bytes(max - min);

    for (unsigned i = 0; i < n; i++) {
        if (w->tail_len == sizeof(w->tail)) {
            w->overflow = true;
            return;
        }
        w->tail[w->tail_len++] = (uint8_t)(v >> (8 * i));
    }
}

static inline void zm_fdp_writer_bool(struct zm_fdp_writer *w, bool value)
{
    zm_fdp_writer_range(w, value, 0, 1);
}

/* Appends the integers, last drawn first; returns the input's size or 0. */
static inline size_t zm_fdp_writer_finish(struct zm_fdp_writer *w)
{
    if (w->overflow || w->tail_len > w->cap - w->len) {
        return 0;
    }
    for (size_t i = 0; i < w->tail_len; i++) {
        w->buf[w->len + i] = w->tail[w->tail_len - 1 - i];
    }
    w->len += w->tail_len;
    w->tail_len = 0;
    return w->len;
}

/*
 * One description of an input format for both directions: a function that
 * draws its parameters through zm_fdp_io_range() reads them from an input
 * (out == NULL) or, given the values it wants, writes an input that reads
 * back as those values (in == NULL).  Either way it returns the value.
 */
struct zm_fdp_io {
    struct zm_fdp *in;
    struct zm_fdp_writer *out;
};

static inline uint32_t zm_fdp_io_range(struct zm_fdp_io *io, uint32_t want,
                                       uint32_t min, uint32_t max)
{
    if (io->in) {
        return zm_fdp_range(io->in, min, max);
    }
    zm_fdp_writer_range(io->out, want, min, max);
    return want < min ? min : want > max ? max : want;
}

#endif /* ZM_FUZZ_DATA_PRODUCER_H */
