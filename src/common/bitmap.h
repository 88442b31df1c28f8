/*
 * bitmap.h - page bitmaps: bit i % 64 of word i / 64, one bit a page
 */
#ifndef ZM_BITMAP_H
#define ZM_BITMAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Words a bitmap of n bits takes. */
static inline size_t zm_bitmap_words(uint64_t n)
{
    return (size_t)((n + 63) / 64);
}

/* Bits set among the first words of bitmap. */
static inline uint64_t zm_bitmap_count(const uint64_t *bitmap, size_t words)
{
    uint64_t n = 0;

    for (size_t w = 0; w < words; w++) {
        n += (uint64_t)__builtin_popcountll(bitmap[w]);
    }
    return n;
}

/* Sets bits [0, n) and clears the rest of the last word. */
static inline void zm_bitmap_fill(uint64_t *bitmap, uint64_t n)
{
    memset(bitmap, 0xff, zm_bitmap_words(n) * sizeof(uint64_t));
    if (n % 64) {
        bitmap[n / 64] = (1ull << (n % 64)) - 1;
    }
}

/*
 * ORs src into dst over words words; returns how many bits were newly set
 * in dst.
 */
static inline uint64_t zm_bitmap_or(uint64_t *dst, const uint64_t *src,
                                    size_t words)
{
    uint64_t newly = 0;

    for (size_t w = 0; w < words; w++) {
        newly += (uint64_t)__builtin_popcountll(src[w] & ~dst[w]);
        dst[w] |= src[w];
    }
    return newly;
}

#endif /* ZM_BITMAP_H */
