/*
 * zmg_data.h - the guest's data: generating regions and checksumming them
 *
 * Plain C on <stdint.h> only, so that a host program can build the same
 * file to measure how well the data compresses.
 */
#ifndef ZMG_DATA_H
#define ZMG_DATA_H

#include <stdint.h>

#define ZMG_PAGE_SIZE 4096u
#define ZMG_REGION_SIZE 65536u
#define ZMG_REGION_PAGES (ZMG_REGION_SIZE / ZMG_PAGE_SIZE)

/* Fletcher-like sums over 32-bit words, both kept exact in 64 bits: for a
 * region of 2^14 words neither can wrap, so any one changed word changes a
 * and any swap of two different words changes b. */
struct zmg_sum {
    uint64_t a;
    uint64_t b;
};

/* xorshift32: the guest's one pseudo-random generator (*s must not be 0). */
static inline uint32_t xs32(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* Fill ZMG_REGION_SIZE bytes at dst with content that depends only on the
 * arguments.  dst is 4-byte aligned. */
void zmg_fill_region(void *dst, uint32_t region, uint32_t gen, uint32_t seed);

/* Checksum of n 32-bit words. */
struct zmg_sum zmg_checksum(const uint32_t *p, uint32_t n);

#endif
