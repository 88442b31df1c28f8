/*
 * test_zero.c - every zm_is_zero() implementation this CPU runs, against
 * the obvious byte loop, at every alignment and at guard pages
 *
 * Buffers end exactly where their allocation ends (so AddressSanitizer
 * sees any over-read) or next to a PROT_NONE page (so the test itself
 * faults on one). Bytes just before a buffer are non-zero, so a read
 * below it that counts shows as a wrong answer.
 */
#include "common/cpu.h"
#include "common/zero.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

/*
 * AVX code must return with the upper halves of the YMM registers clean,
 * or SSE code after it runs several times slower. XGETBV with ECX = 1
 * reads XINUSE, whose bit 2 says whether that state is in use.
 */
static bool upper_state_dirty(void)
{
    unsigned lo, hi;

    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1) : "memory");
    (void)hi;
    return (lo >> 2) & 1;
}

__attribute__((target("avx"))) static void upper_state_clear(void)
{
    _mm256_zeroupper();
}

/* Whether XINUSE can be read and shows vzeroupper's effect here. */
static bool upper_state_trackable(void)
{
    unsigned a, b, c, d;

    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) ||
        !(c & bit_AVX) || !__get_cpuid_count(0xd, 1, &a, &b, &c, &d) ||
        !(a & 4)) {
        return false;
    }
    upper_state_clear();
    return !upper_state_dirty();
}
#else
static bool upper_state_dirty(void)
{
    return false;
}

static void upper_state_clear(void)
{
}

static bool upper_state_trackable(void)
{
    return false;
}
#endif

#define ZM_MAX_CHECKERS 16
#define ZM_MAX_REPORTS 20

struct zm_checker {
    const char *name;
    bool (*is_zero)(const void *p, size_t len);
};

static struct zm_checker checkers[ZM_MAX_CHECKERS];
static unsigned checker_count;
static unsigned long failures;

/* Lengths past the dense 0..600 sweep: around vectors, pages, 2 pages. */
static const size_t long_lens[] = {
    601,  1000, 1023, 1024, 1025, 2047, 2048, 2049, 4031, 4095, 4096,
    4097, 4100, 4159, 8191, 8192, 8193, 8199, 8255, 8256, 8257, 8447,
};

#define ZM_LONG_LEN_COUNT (sizeof(long_lens) / sizeof(long_lens[0]))

/* Low, high, all and middle bits, so a sign or lane mix-up shows. */
static const unsigned char nonzero_vals[] = { 0x01, 0x80, 0xff, 0x10 };

static bool naive_is_zero(const unsigned char *p, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

/*
 * Runs the first n checkers. The position sweeps leave out the last, the
 * dispatcher, which only adds a call in front of one of the others.
 */
static void check_n(unsigned n, const unsigned char *p, size_t len, bool want,
                    const char *what, size_t pos)
{
    unsigned i;

    for (i = 0; i < n; i++) {
        bool got = checkers[i].is_zero(p, len);

        if (got == want) {
            continue;
        }
        if (++failures <= ZM_MAX_REPORTS) {
            fprintf(stderr,
                    "FAIL %s: %s len %zu addr%%64 %u pos %zu: "
                    "got %d want %d\n",
                    checkers[i].name, what, len, (unsigned)((uintptr_t)p & 63),
                    pos, got, want);
        }
    }
}

static void check(const unsigned char *p, size_t len, bool want,
                  const char *what, size_t pos)
{
    check_n(checker_count, p, len, want, what, pos);
}

/*
 * Up to 192 bytes every position; longer, every one within 96 bytes of
 * either end, where the head and tail code works, and a sample between,
 * to stay quick in -O0 sanitizer builds.
 */
static bool position_wanted(size_t pos, size_t len)
{
    return len <= 192 || pos < 96 || len - pos <= 96 || pos % 29 == 0;
}

/* The byte at pos alone is non-zero, for every wanted pos. */
static void sweep_positions(unsigned char *p, size_t len, const char *what)
{
    size_t pos;

    check(p, len, true, what, len);
    for (pos = 0; pos < len; pos++) {
        if (!position_wanted(pos, len)) {
            continue;
        }
        p[pos] = nonzero_vals[pos % sizeof(nonzero_vals)];
        check_n(checker_count - 1, p, len, false, what, pos);
        p[pos] = 0;
    }
}

/* Ends (and, with ASan, the allocation's redzone starts) at p + len. */
static void test_aligned_sweep(size_t len)
{
    unsigned align;

    for (align = 0; align < 64; align++) {
        void *mem;
        size_t size = align + len;

        if (posix_memalign(&mem, 64, size != 0 ? size : 1) != 0) {
            fprintf(stderr, "FAIL: out of memory\n");
            failures++;
            return;
        }
        memset(mem, 0, size != 0 ? size : 1);
        /* Non-zero bytes before p make any read below p give false. */
        memset(mem, 0xff, align);
        sweep_positions((unsigned char *)mem + align, len, "heap");
        free(mem);
    }
}

struct zm_guarded {
    unsigned char *map;
    unsigned char *rw;
    size_t rw_size;
    size_t map_size;
};

/* rw_size bytes, page aligned, with a PROT_NONE page on either side. */
static bool guarded_alloc(struct zm_guarded *g, size_t rw_size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *map;

    g->rw_size = (rw_size + page - 1) / page * page;
    g->map_size = g->rw_size + 2 * page;
    map = mmap(NULL, g->map_size, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        return false;
    }
    g->map = map;
    g->rw = g->map + page;
    if (mprotect(g->map, page, PROT_NONE) != 0 ||
        mprotect(g->rw + g->rw_size, page, PROT_NONE) != 0) {
        munmap(g->map, g->map_size);
        return false;
    }
    return true;
}

static void guarded_free(struct zm_guarded *g)
{
    munmap(g->map, g->map_size);
}

/* All-zero, then first, middle and last byte set. */
static void check_few(unsigned char *p, size_t len, const char *what)
{
    const size_t pos[] = { 0, len / 2, len - 1 };
    unsigned i;

    check(p, len, true, what, len);
    for (i = 0; len != 0 && i < 3; i++) {
        p[pos[i]] = 0x80;
        check(p, len, false, what, pos[i]);
        p[pos[i]] = 0;
    }
}

static void test_guard_len(const struct zm_guarded *g, size_t len)
{
    unsigned align;

    /* Any read past p + len faults on the guard page. */
    check_few(g->rw + g->rw_size - len, len, "end-guard");
    /* Any read before p + align, up to 64 bytes back, faults. */
    for (align = 0; align < 64 && align + len <= g->rw_size; align++) {
        memset(g->rw, 0xff, align);
        check_few(g->rw + align, len, "start-guard");
        memset(g->rw, 0, align);
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Sparse random bytes, either end of the guarded area, against the loop. */
static void test_random(const struct zm_guarded *g, unsigned rounds)
{
    unsigned r;

    for (r = 0; r < rounds; r++) {
        size_t len = rng() % (g->rw_size - 64);
        size_t align = rng() % 64;
        unsigned char *p = (r & 1) ? g->rw + align : g->rw + g->rw_size - len;
        unsigned n = (unsigned)(rng() % 4);
        unsigned i;

        memset(g->rw, 0, g->rw_size);
        for (i = 0; len != 0 && i < n; i++) {
            p[rng() % len] = (unsigned char)(rng() | 1);
        }
        check(p, len, naive_is_zero(p, len), "random", 0);
    }
    memset(g->rw, 0, g->rw_size);
}

/* Each impl must return with the upper state clean, whatever the length. */
static void test_upper_state(void)
{
    static unsigned char buf[8192 + 64];
    static const size_t lens[] = { 4096, 4000, 200, 40, 7, 0 };
    unsigned i;
    unsigned k;

    if (!upper_state_trackable()) {
        printf("upper YMM state check: cannot tell here, skipped\n");
        return;
    }
    for (i = 0; i < checker_count; i++) {
        for (k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
            bool zero;

            upper_state_clear();
            zero = checkers[i].is_zero(buf + 1, lens[k]);
            if (upper_state_dirty()) {
                fprintf(stderr,
                        "FAIL %s: len %zu leaves the upper YMM "
                        "state in use\n",
                        checkers[i].name, lens[k]);
                failures++;
            }
            if (!zero) {
                fprintf(stderr, "FAIL %s: len %zu: zeros called non-zero\n",
                        checkers[i].name, lens[k]);
                failures++;
            }
        }
    }
}

static void add_checkers(void)
{
    const char *chosen = zm_zero_impl_name();
    const char *best = NULL;
    unsigned i;

    for (i = 0; i < zm_zero_impl_count; i++) {
        const struct zm_zero_impl *impl = &zm_zero_impls[i];

        if (!zm_cpu_has(impl->cpu_features)) {
            printf("impl %-8s not supported here, skipped\n", impl->name);
            continue;
        }
        if (best == NULL) {
            best = impl->name;
        }
        if (checker_count < ZM_MAX_CHECKERS - 1) {
            checkers[checker_count].name = impl->name;
            checkers[checker_count].is_zero = impl->is_zero;
            checker_count++;
        }
        printf("impl %-8s tested\n", impl->name);
    }
    if (best == NULL || strcmp(best, chosen) != 0) {
        fprintf(stderr,
                "FAIL: dispatch chose \"%s\", not the best "
                "supported \"%s\"\n",
                chosen, best ? best : "(none)");
        failures++;
    }
    checkers[checker_count].name = "zm_is_zero";
    checkers[checker_count].is_zero = zm_is_zero;
    checker_count++;
    printf("dispatch chose %s\n", chosen);
}

int main(void)
{
    struct zm_guarded g;
    size_t len;
    unsigned i;

    add_checkers();
    if (checker_count <= 1) {
        return 77;
    }
    check(NULL, 0, true, "null", 0);
    test_upper_state();

    for (len = 0; len <= 600; len++) {
        test_aligned_sweep(len);
    }
    for (i = 0; i < ZM_LONG_LEN_COUNT; i++) {
        test_aligned_sweep(long_lens[i]);
    }

    if (!guarded_alloc(&g, 3 * 4096)) {
        perror("mmap");
        return 1;
    }
    for (len = 0; len <= 600; len++) {
        test_guard_len(&g, len);
    }
    for (i = 0; i < ZM_LONG_LEN_COUNT; i++) {
        test_guard_len(&g, long_lens[i]);
    }
    test_guard_len(&g, g.rw_size);
    test_random(&g, 5000);
    guarded_free(&g);

    if (failures != 0) {
        fprintf(stderr, "%lu failures\n", failures);
        return 1;
    }
    printf("all passed\n");
    return 0;
}
