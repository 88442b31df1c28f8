/*
 * test_datagen.c - zm_datagen_fill(): determinism, filling in parts, and
 * the mix and compressibility of what it makes
 */
#include "zmigrate.h"
#include "tools/datagen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#define PAGE 4096u
#define BATCH (512u * 1024u) /* the size the ratio target is stated for */
#define MIB (1024u * 1024u)
#define STATS_SIZE (64u * MIB)

/* Silesia compresses 3.32 times with zstd -1 at 512 KiB; allow 20%. */
#define RATIO_MIN 2.66
#define RATIO_MAX 3.98

static int failures;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (!(cond)) {                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fputc('\n', stderr);                                 \
            failures++;                                          \
        }                                                        \
    } while (0)

static void *xmalloc(size_t n)
{
    void *p = malloc(n);

    if (p == NULL) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static double now(void)
{
    struct timespec ts;

    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int is_zero_page(const unsigned char *p)
{
    static const unsigned char zero[PAGE];

    return memcmp(p, zero, PAGE) == 0;
}

/*
 * Whether the page's bytes look uniformly random: the sum of the squared
 * byte counts is about n + n * (n - 1) / 256 = 69616 for random bytes and
 * several times that for text, code or records.
 */
static int is_random_page(const unsigned char *p)
{
    unsigned counts[256] = { 0 };
    unsigned long sum = 0;

    for (unsigned i = 0; i < PAGE; i++) {
        counts[p[i]]++;
    }
    for (unsigned v = 0; v < 256; v++) {
        sum += (unsigned long)counts[v] * counts[v];
    }
    return sum < 80000;
}

static void test_determinism(void)
{
    const size_t len = 8 * MIB;
    unsigned char *a = xmalloc(len);
    unsigned char *b = xmalloc(len);
    size_t same = 0;

    zm_datagen_fill(a, len, 0, 42);
    zm_datagen_fill(b, len, 0, 42);
    CHECK(memcmp(a, b, len) == 0, "same seed gave different bytes");

    zm_datagen_fill(b, len, 0, 43);
    CHECK(memcmp(a, b, len) != 0, "seeds 42 and 43 gave the same bytes");
    for (size_t off = 0; off < len; off += PAGE) {
        same += memcmp(a + off, b + off, PAGE) == 0;
    }
    /* Only zero pages may coincide. */
    CHECK(same < len / PAGE / 4, "seeds 42 and 43 share %zu of %zu pages", same,
          len / PAGE);

    /* The offset moves the data: page n of a fill at 0 is page 0 of a fill
     * at n pages. */
    zm_datagen_fill(b, len - 3 * PAGE, 3 * PAGE, 42);
    CHECK(memcmp(a + 3 * PAGE, b, len - 3 * PAGE) == 0,
          "a fill at offset 3 pages differs from the same pages at 0");
    free(a);
    free(b);
}

static void test_split(void)
{
    const size_t len = 8 * MIB;
    /* Far from 0, and not on a block or span boundary. */
    const uint64_t base = UINT64_C(5) * 1024 * MIB + 13 * PAGE;
    static const size_t parts[] = { 1, 7, 130, 15, 16, 2 };
    unsigned char *a = xmalloc(len);
    unsigned char *b = xmalloc(len);
    size_t done = 0;

    zm_datagen_fill(a, len, 0, 7);
    memset(b, 0xa5, len);
    zm_datagen_fill(b, len / 2, 0, 7);
    zm_datagen_fill(b + len / 2, len / 2, len / 2, 7);
    CHECK(memcmp(a, b, len) == 0, "[0, 8 MiB) filled in two halves differs");

    zm_datagen_fill(a, len, base, 7);
    memset(b, 0xa5, len);
    for (size_t i = 0; done < len; i++) {
        size_t n =
            i < sizeof(parts) / sizeof(parts[0]) ? parts[i] * PAGE : len - done;

        zm_datagen_fill(b + done, n, base + done, 7);
        done += n;
    }
    CHECK(memcmp(a, b, len) == 0, "a fill at 5 GiB in parts differs");

    /* Page by page, for the first few hundred pages. */
    memset(b, 0xa5, len);
    for (size_t off = 0; off < 300 * PAGE; off += PAGE) {
        zm_datagen_fill(b + off, PAGE, base + off, 7);
    }
    CHECK(memcmp(a, b, 300 * PAGE) == 0, "a fill page by page differs");

    /* Near the end of the 64-bit address space. */
    const uint64_t top = (UINT64_MAX / PAGE - 4) * (uint64_t)PAGE;
    zm_datagen_fill(a, 4 * PAGE, top, 7);
    zm_datagen_fill(b, 2 * PAGE, top, 7);
    zm_datagen_fill(b + 2 * PAGE, 2 * PAGE, top + 2 * PAGE, 7);
    CHECK(memcmp(a, b, 4 * PAGE) == 0, "a fill at the top of memory differs");
    free(a);
    free(b);
}

/*
 * Lengths around the page size and the generators' overrun: the bytes
 * written are those of the whole pages, cut, and nothing outside the
 * buffer changes.
 */
static void test_partial(void)
{
    static const size_t lens[] = {
        0,          1,           100,           4095,           4096,
        4097,       4096 + 255,  4096 + 256,    4096 + 257,     4096 + 511,
        4096 + 512, 8192 + 4095, 5 * 4096 + 17, 300 * 4096 + 9,
    };
    const size_t guard = 4096;
    const size_t max = 301 * PAGE;
    const uint64_t offset = 77 * PAGE;
    unsigned char *ref = xmalloc(max);
    unsigned char *buf = xmalloc(max + 2 * guard);

    zm_datagen_fill(ref, max, offset, 99);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        const size_t len = lens[i];
        size_t bad = 0;

        memset(buf, 0xa5, max + 2 * guard);
        zm_datagen_fill(buf + guard, len, offset, 99);
        CHECK(memcmp(buf + guard, ref, len) == 0,
              "a fill of %zu bytes is not the start of the longer fill", len);
        for (size_t j = 0; j < guard; j++) {
            bad += buf[j] != 0xa5;
        }
        for (size_t j = guard + len; j < max + 2 * guard; j++) {
            bad += buf[j] != 0xa5;
        }
        CHECK(bad == 0, "a fill of %zu bytes wrote %zu bytes outside", len,
              bad);
    }
    free(ref);
    free(buf);
}

/* zstd -1 on each whole BATCH of data; returns the ratio. */
static double zstd_ratio(ZSTD_CCtx *cctx, const unsigned char *data, size_t len,
                         void *out, size_t cap)
{
    size_t in = 0;
    size_t comp = 0;

    for (size_t off = 0; off + BATCH <= len; off += BATCH) {
        const size_t n =
            ZSTD_compressCCtx(cctx, out, cap, data + off, BATCH, 1);

        if (ZSTD_isError(n)) {
            fprintf(stderr, "zstd: %s\n", ZSTD_getErrorName(n));
            exit(1);
        }
        in += BATCH;
        comp += n;
    }
    return comp == 0 ? 0.0 : (double)in / (double)comp;
}

static void test_mix(void)
{
    unsigned char *data = xmalloc(STATS_SIZE);
    unsigned char *nonzero = xmalloc(STATS_SIZE);
    const size_t cap = ZSTD_compressBound(BATCH);
    void *out = xmalloc(cap);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    const size_t pages = STATS_SIZE / PAGE;
    size_t zero = 0;
    size_t random = 0;
    size_t kept = 0;

    if (cctx == NULL) {
        fprintf(stderr, "ZSTD_createCCtx failed\n");
        exit(1);
    }
    zm_datagen_fill(data, STATS_SIZE, 0, 1);
    /* Time a second fill, of memory already mapped. */
    const double t0 = now();
    zm_datagen_fill(data, STATS_SIZE, 0, 1);
    const double secs = now() - t0;

    for (size_t off = 0; off < STATS_SIZE; off += PAGE) {
        if (is_zero_page(data + off)) {
            zero++;
        } else {
            random += is_random_page(data + off);
            memcpy(nonzero + kept, data + off, PAGE);
            kept += PAGE;
        }
    }
    const double zero_share = (double)zero / (double)pages;
    const double random_share = (double)random / (double)pages;
    const double all = zstd_ratio(cctx, data, STATS_SIZE, out, cap);
    const double nz = zstd_ratio(cctx, nonzero, kept, out, cap);

    printf("fill: %.2f GB/s (%u MiB in %.1f ms)\n",
           secs > 0 ? STATS_SIZE / secs / 1e9 : 0.0, STATS_SIZE / MIB,
           secs * 1e3);
    printf("zero pages: %.1f%%, random pages: %.1f%%\n", 100 * zero_share,
           100 * random_share);
    printf("zstd -1 per 512 KiB: all pages %.3f, non-zero pages %.3f\n", all,
           nz);

    CHECK(zero_share >= 0.05 && zero_share <= 0.20,
          "zero pages are %.1f%% of the data, not 5%% to 20%%",
          100 * zero_share);
    CHECK(random_share >= 0.02 && random_share <= 0.10,
          "random pages are %.1f%% of the data, not 2%% to 10%%",
          100 * random_share);
    CHECK(all >= RATIO_MIN && all <= RATIO_MAX,
          "zstd ratio over all pages %.3f is outside [%.2f, %.2f]", all,
          RATIO_MIN, RATIO_MAX);
    CHECK(nz >= RATIO_MIN && nz <= RATIO_MAX,
          "zstd ratio over non-zero pages %.3f is outside [%.2f, %.2f]", nz,
          RATIO_MIN, RATIO_MAX);

    ZSTD_freeCCtx(cctx);
    free(out);
    free(nonzero);
    free(data);
}

int main(void)
{
    test_determinism();
    test_split();
    test_partial();
    test_mix();
    if (failures != 0) {
        fprintf(stderr, "test_datagen: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_datagen: ok\n");
    return 0;
}
