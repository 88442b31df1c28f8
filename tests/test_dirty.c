/*
 * test_dirty.c - the dirty-page trackers
 *
 * For every tracker this kernel and process can use: exactly the written
 * pages are reported (never-touched pages, range edges, kernel-mode and
 * other-thread writes included), once; huge pages and page sizes above the
 * system's map to the right bits; and a pre-copy migration of memory that
 * two threads keep writing ends with a byte-identical copy.  Then the
 * argument checks, and the embedder's log as a tracker (a fake log: zeroed
 * bitmaps, ORed bits, pages past a range dropped, its errors returned).
 * Skips (77) only when no kernel tracker is usable.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "dirty/dirty.h"
#include "test_util.h"
#include "zmigrate.h"

#define MiB (1024u * 1024u)

static size_t pg;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *map_anon(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(T_EXIT_FAIL);
    }
    return p;
}

/* len bytes aligned to align (a power of two), from a larger mapping. */
static unsigned char *map_aligned(size_t len, size_t align, void **map,
                                  size_t *map_len)
{
    *map_len = len + align;
    *map = map_anon(*map_len);
    uintptr_t p = ((uintptr_t)*map + align - 1) & ~(uintptr_t)(align - 1);
    return (unsigned char *)p;
}

static size_t words_for(size_t size, size_t page_size)
{
    return (size / page_size + 63) / 64;
}

static uint64_t *bitmap_new(size_t size, size_t page_size)
{
    uint64_t *b = calloc(words_for(size, page_size), sizeof(uint64_t));
    if (!b) {
        exit(T_EXIT_FAIL);
    }
    return b;
}

static void set_bit(uint64_t *b, size_t i)
{
    b[i / 64] |= 1ull << (i % 64);
}

static bool test_bit(const uint64_t *b, size_t i)
{
    return (b[i / 64] >> (i % 64)) & 1;
}

static size_t popcount(const uint64_t *b, size_t words)
{
    size_t n = 0;
    for (size_t w = 0; w < words; w++) {
        n += (size_t)__builtin_popcountll(b[w]);
    }
    return n;
}

/*
 * Compares got with want: equal, or (exact false) a superset of it.
 * Returns the number of extra pages, or (size_t)-1 after reporting a
 * missing one.
 */
static size_t compare(const char *what, const uint64_t *got,
                      const uint64_t *want, size_t bits, bool exact)
{
    size_t extra = 0;
    for (size_t i = 0; i < bits; i++) {
        bool g = test_bit(got, i), w = test_bit(want, i);
        if (w && !g) {
            CHECK(false, "%s: written page %zu not reported", what, i);
            return (size_t)-1;
        }
        if (g && !w) {
            extra++;
        }
    }
    CHECK(!exact || extra == 0, "%s: %zu pages reported but not written", what,
          extra);
    return extra;
}

/*
 * What a collect that should report want pages may return: exactly that,
 * or (for a provider that reports a superset) at least that.
 */
static bool count_ok(ssize_t n, size_t want, bool exact)
{
    return exact ? n == (ssize_t)want : n >= (ssize_t)want;
}

struct write_arg {
    volatile unsigned char *p;
};

static void *write_one(void *arg)
{
    struct write_arg *w = arg;
    w->p[100] = 0x5a;
    return NULL;
}

/*
 * 64 MiB, two ranges with an untracked gap; some pages touched before
 * tracking starts, most never.
 */
static void test_basic(enum zm_dirty_kind kind)
{
    const char *name = zm_dirty_kind_name(kind);
    const bool exact = kind == ZM_DIRTY_UFFD_WP;
    const size_t len = 64 * MiB;
    unsigned char *map = map_anon(len);
    madvise(map, len, MADV_NOHUGEPAGE); /* huge pages: test_thp() */

    struct zm_dirty_range rg[2] = {
        { map, 30 * MiB },
        { map + 32 * MiB, 32 * MiB },
    };
    const size_t npages[2] = { rg[0].size / pg, rg[1].size / pg };
    for (size_t off = 0; off < len; off += 3 * pg) {
        map[off] = 1;
    }

    zm_dirty *d;
    int ret = zm_dirty_new(kind, rg, 2, pg, &d);
    CHECK(ret == 0, "%s: new: %d %s", name, ret, zm_errmsg());
    if (ret != 0) {
        munmap(map, len);
        return;
    }
    CHECK(zm_dirty_kind_of(d) == kind, "%s: kind_of", name);
    CHECK(zm_dirty_needs_quiesce(d) == (kind == ZM_DIRTY_SOFT_DIRTY),
          "%s: needs_quiesce", name);

    uint64_t *got[2], *want[2];
    for (int r = 0; r < 2; r++) {
        got[r] = bitmap_new(rg[r].size, pg);
        want[r] = bitmap_new(rg[r].size, pg);
        ssize_t n = zm_dirty_collect(d, (unsigned)r, got[r]);
        CHECK(count_ok(n, 0, exact),
              "%s: range %d: %zd pages dirty before any write", name, r, n);
        memset(got[r], 0, words_for(rg[r].size, pg) * 8);
    }

    /* Reads are not writes. */
    volatile unsigned long sum = 0;
    for (size_t off = 0; off < len; off += 5 * pg) {
        sum += map[off];
    }
    (void)sum;

    /* The written set: edges, random pages, kernel and other-thread. */
    uint64_t seed = 42;
    size_t untouched = 0;
    for (int r = 0; r < 2; r++) {
        unsigned char *base = rg[r].base;
        size_t idx[260];
        idx[0] = 0;
        idx[1] = npages[r] - 1;
        idx[2] = 1;
        idx[3] = 2;
        for (int i = 4; i < 260; i++) {
            idx[i] = t_rand(&seed) % npages[r];
        }
        for (int i = 0; i < 260; i++) {
            size_t mapidx = (size_t)(base - map) / pg + idx[i];
            untouched += mapidx % 3 != 0 && !test_bit(want[r], idx[i]);
            base[idx[i] * pg + (t_rand(&seed) % pg)] = 0xa5;
            set_bit(want[r], idx[i]);
        }
    }
    CHECK(untouched > 100, "only %zu never-touched pages written", untouched);
    /* A run of 300 pages: one region, many bitmap words. */
    memset((unsigned char *)rg[0].base + 2000 * pg, 4, 300 * pg);
    for (size_t i = 2000; i < 2300; i++) {
        set_bit(want[0], i);
    }
    map[31 * MiB] = 7; /* the gap: not tracked */

    /*
     * Kernel-mode writes: read(2) into a touched and a never-touched page
     * (range 1 starts at map page 8192: its pages 7 and 8 are map pages
     * 8199 and 8200), and a write through /proc/self/mem, which takes
     * the get_user_pages() path as vhost or O_DIRECT reads do.
     */
    int fds[2];
    CHECK(pipe(fds) == 0, "pipe");
    for (size_t kidx = 7; kidx <= 8; kidx++) {
        CHECK(write(fds[1], "kernel write", 12) == 12, "pipe write");
        CHECK(read(fds[0], (unsigned char *)rg[1].base + kidx * pg + 10, 12) ==
                  12,
              "%s: read(2) into tracked page %zu: %s", name, kidx,
              strerror(errno));
        set_bit(want[1], kidx);
    }
    close(fds[0]);
    close(fds[1]);
    int mem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    if (mem >= 0) {
        size_t kidx = 11;
        off_t at = (off_t)(uintptr_t)((unsigned char *)rg[1].base + kidx * pg);
        CHECK(pwrite(mem, "gup", 3, at) == 3, "%s: /proc/self/mem: %s", name,
              strerror(errno));
        set_bit(want[1], kidx);
        close(mem);
    }

    /* Another thread. */
    pthread_t t;
    struct write_arg wa = { (unsigned char *)rg[0].base + 1000 * pg };
    pthread_create(&t, NULL, write_one, &wa);
    pthread_join(t, NULL);
    set_bit(want[0], 1000);

    size_t extra = 0;
    for (int r = 0; r < 2; r++) {
        size_t words = words_for(rg[r].size, pg);
        ssize_t n = zm_dirty_collect(d, (unsigned)r, got[r]);
        CHECK(n >= 0 && (size_t)n == popcount(got[r], words),
              "%s: range %d: returned %zd for %zu bits", name, r, n,
              popcount(got[r], words));
        size_t e = compare(name, got[r], want[r], npages[r], exact);
        extra += e == (size_t)-1 ? 0 : e;
    }
    printf("  %s basic: %zu + %zu pages written, reported %s (%zu extra)\n",
           name, popcount(want[0], words_for(rg[0].size, pg)),
           popcount(want[1], words_for(rg[1].size, pg)),
           extra ? "a superset" : "exactly", extra);

    /* Nothing written since: nothing reported. */
    for (int r = 0; r < 2; r++) {
        memset(got[r], 0, words_for(rg[r].size, pg) * 8);
        ssize_t n = zm_dirty_collect(d, (unsigned)r, got[r]);
        CHECK(count_ok(n, 0, exact), "%s: range %d: %zd pages reported twice",
              name, r, n);
        if (n != 0) {
            printf("  %s basic: %zd pages reported again without a write\n",
                   name, n);
        }
    }

    /*
     * Every other page of range 0: thousands of separate regions, more
     * than one PAGEMAP_SCAN output vector holds.  Bits already set in the
     * caller's bitmap stay set and are not counted.
     */
    memset(want[0], 0, words_for(rg[0].size, pg) * 8);
    memset(got[0], 0, words_for(rg[0].size, pg) * 8);
    set_bit(got[0], 1);
    for (size_t i = 0; i < npages[0]; i += 2) {
        ((unsigned char *)rg[0].base)[i * pg + 8] ^= 1;
        set_bit(want[0], i);
    }
    ssize_t n = zm_dirty_collect(d, 0, got[0]);
    CHECK(count_ok(n, npages[0] / 2, exact), "%s: %zd pages, wrote %zu", name,
          n, npages[0] / 2);
    CHECK(test_bit(got[0], 1), "%s: collect cleared a caller's bit", name);
    set_bit(want[0], 1);
    compare(name, got[0], want[0], npages[0], exact);

    zm_dirty_free(d);
    for (int r = 0; r < 2; r++) {
        free(got[r]);
        free(want[r]);
    }

    /* Tracking stopped: writes work; the ranges can be tracked again. */
    map[5 * pg] = 9;
    ret = zm_dirty_new(kind, rg, 2, pg, &d);
    CHECK(ret == 0, "%s: new again: %d %s", name, ret, zm_errmsg());
    if (ret == 0) {
        uint64_t *b = bitmap_new(rg[0].size, pg);
        map[6 * pg] = 9;
        n = zm_dirty_collect(d, 0, b);
        CHECK(n >= 1 && test_bit(b, 6), "%s: second tracker: %zd", name, n);
        CHECK(!exact || n == 1, "%s: second tracker: %zd pages", name, n);
        free(b);
        zm_dirty_free(d);
    }
    munmap(map, len);
}

/* Shared memory (memfd), as guests whose RAM vhost-user shares use. */
static void test_shared(enum zm_dirty_kind kind)
{
    const char *name = zm_dirty_kind_name(kind);
    const bool exact = kind == ZM_DIRTY_UFFD_WP;
    const size_t len = 8 * MiB, npages = len / pg;
    int fd = memfd_create("zm-test-dirty", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)len) != 0) {
        printf("  %s shared: skipped (memfd: %s)\n", name, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    unsigned char *p =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED, "mmap memfd");
    if (p == MAP_FAILED) {
        close(fd);
        return;
    }
    memset(p, 1, len / 2); /* the second half never touched */

    struct zm_dirty_range rg = { p, len };
    zm_dirty *d;
    int ret = zm_dirty_new(kind, &rg, 1, pg, &d);
    CHECK(ret == 0, "%s: shared: new: %s", name, zm_errmsg());
    if (ret == 0) {
        uint64_t *got = bitmap_new(len, pg), *want = bitmap_new(len, pg);
        ssize_t n = zm_dirty_collect(d, 0, got);
        CHECK(count_ok(n, 0, exact),
              "%s: shared: %zd pages dirty before any write", name, n);
        memset(got, 0, words_for(len, pg) * 8);
        uint64_t seed = 9;
        for (int i = 0; i < 100; i++) {
            size_t idx = t_rand(&seed) % npages;
            p[idx * pg + 17] = 2;
            set_bit(want, idx);
        }
        /* Through the file, not the mapping: the page cache directly. */
        CHECK(pwrite(fd, "file", 4, (off_t)(npages - 2) * (off_t)pg) == 4,
              "pwrite memfd");
        n = zm_dirty_collect(d, 0, got);
        compare(name, got, want, npages, exact);
        printf("  %s shared: %zu pages written through the mapping, %zd"
               " reported; a pwrite(2) to the file %s\n",
               name, popcount(want, words_for(len, pg)), n,
               test_bit(got, npages - 2) ? "reported" : "not reported");
        memset(got, 0, words_for(len, pg) * 8);
        n = zm_dirty_collect(d, 0, got);
        CHECK(count_ok(n, 0, exact), "%s: shared: %zd pages reported twice",
              name, n);
        free(got);
        free(want);
        zm_dirty_free(d);
    }
    munmap(p, len);
    close(fd);
}

/* A bitmap page of 4 system pages: writes map to page_size bits. */
static void test_page_size(enum zm_dirty_kind kind)
{
    const char *name = zm_dirty_kind_name(kind);
    const size_t big = 4 * pg;
    void *map;
    size_t map_len;
    unsigned char *p = map_aligned(4 * MiB, big, &map, &map_len);
    madvise(map, map_len, MADV_NOHUGEPAGE);
    struct zm_dirty_range rg = { p, 4 * MiB };

    zm_dirty *d;
    int ret = zm_dirty_new(kind, &rg, 1, big, &d);
    CHECK(ret == 0, "%s: new(page_size %zu): %s", name, big, zm_errmsg());
    if (ret == 0) {
        uint64_t *b = bitmap_new(rg.size, big);
        p[5 * pg + 100] = 1; /* bit 1 */
        p[40 * pg + 3] = 1;  /* bit 10 */
        p[41 * pg + 3] = 1;  /* bit 10 again */
        p[4 * MiB - 1] = 1;  /* the last bit */
        ssize_t n = zm_dirty_collect(d, 0, b);
        size_t last = 4 * MiB / big - 1;
        CHECK(count_ok(n, 3, kind == ZM_DIRTY_UFFD_WP) && test_bit(b, 1) &&
                  test_bit(b, 10) && test_bit(b, last),
              "%s: page_size %zu: %zd bits", name, big, n);
        free(b);
        zm_dirty_free(d);
    }
    munmap(map, map_len);
}

/* Bytes of anonymous huge pages mapped at p, from /proc/self/smaps. */
static size_t anon_huge_bytes(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    bool in = false;
    size_t kb = 0;

    if (!f) {
        return 0;
    }
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            in = lo <= (uintptr_t)p && (uintptr_t)p < hi;
        } else if (in && sscanf(line, "AnonHugePages: %zu kB", &kb) == 1) {
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

/* One write into a huge page reports (at most) that huge page's pages. */
static void test_thp(enum zm_dirty_kind kind)
{
    const char *name = zm_dirty_kind_name(kind);
    const bool exact = kind == ZM_DIRTY_UFFD_WP;
    const size_t huge = 2 * MiB, len = 4 * huge;
    void *map;
    size_t map_len;
    unsigned char *p = map_aligned(len, huge, &map, &map_len);

    if (madvise(p, len, MADV_HUGEPAGE) != 0) {
        printf("  %s thp: skipped (MADV_HUGEPAGE: %s)\n", name,
               strerror(errno));
        munmap(map, map_len);
        return;
    }
    memset(p, 1, len);
    size_t hb = anon_huge_bytes(p);
    if (hb == 0) {
        printf("  %s thp: skipped (no huge page was mapped)\n", name);
        munmap(map, map_len);
        return;
    }

    struct zm_dirty_range rg = { p, len };
    zm_dirty *d;
    int ret = zm_dirty_new(kind, &rg, 1, pg, &d);
    CHECK(ret == 0, "%s: thp new: %s", name, zm_errmsg());
    if (ret != 0) {
        munmap(map, map_len);
        return;
    }
    const size_t per = huge / pg;
    uint64_t *b = bitmap_new(len, pg);
    ssize_t n = zm_dirty_collect(d, 0, b);
    CHECK(count_ok(n, 0, exact), "%s: thp: %zd pages dirty before any write",
          name, n);
    memset(b, 0, words_for(len, pg) * 8);

    p[huge + 3 * pg + 5] = 2;
    n = zm_dirty_collect(d, 0, b);
    CHECK(n >= 1 && test_bit(b, per + 3), "%s: thp write not reported", name);
    for (size_t i = 0; i < len / pg; i++) {
        if (exact && test_bit(b, i) && (i < per || i >= 2 * per)) {
            CHECK(false,
                  "%s: thp: page %zu reported, outside the huge page"
                  " written",
                  name, i);
            break;
        }
    }
    printf("  %s thp: %zu MiB in huge pages; 1 write reported as %zd"
           " pages\n",
           name, hb / MiB, n);

    memset(b, 0, words_for(len, pg) * 8);
    n = zm_dirty_collect(d, 0, b);
    CHECK(count_ok(n, 0, exact), "%s: thp: %zd pages reported twice", name, n);
    p[3 * huge + per / 2 * pg] = 3;
    n = zm_dirty_collect(d, 0, b);
    CHECK(n >= 1 && test_bit(b, 3 * per + per / 2),
          "%s: thp: second write not reported", name);
    free(b);
    zm_dirty_free(d);
    munmap(map, map_len);
}

/*
 * The migration property.  Two "vCPU" threads write counters into random
 * pages (half the time into a small hot set) while the "migration"
 * copies everything once, then in rounds copies the pages each collect
 * reports.  Now and then, and at the end, it stops the writers and does a
 * last collect and copy, as the final round of a migration does: source
 * and destination must then be byte-identical, since a write lost by a
 * collect that raced with it would leave a stale page behind.  (A lost
 * write only shows if its page is not written again before the check:
 * hence several checks.)
 */
struct guest {
    struct zm_dirty_range rg[2];
    size_t npages[2];
    atomic_bool stop;
    bool quiesce;
    /* Writers read-hold it per batch; a stop write-holds it. */
    pthread_rwlock_t gate;
};

struct vcpu {
    struct guest *g;
    uint64_t seed;
    uint64_t writes;
    pthread_t thread;
};

static void *vcpu_run(void *arg)
{
    struct vcpu *v = arg;
    struct guest *g = v->g;
    uint64_t counter = v->seed << 40;

    while (!atomic_load_explicit(&g->stop, memory_order_relaxed)) {
        pthread_rwlock_rdlock(&g->gate);
        for (int i = 0; i < 256; i++) {
            uint64_t x = t_rand(&v->seed);
            int r = (int)(x & 1);
            size_t page =
                (x >> 1) & 1 ? (x >> 8) % 64 : (x >> 8) % g->npages[r];
            size_t slot = (x >> 40) % (pg / 8);
            uint64_t *w =
                (uint64_t *)((unsigned char *)g->rg[r].base + page * pg) + slot;
            __atomic_store_n(w, ++counter, __ATOMIC_RELAXED);
        }
        pthread_rwlock_unlock(&g->gate);
        v->writes += 256;
    }
    return NULL;
}

/* Copies a page the guest may be writing: whole words, no torn ones. */
static void copy_page(unsigned char *dst, const unsigned char *src)
{
    const uint64_t *s = (const uint64_t *)src;
    uint64_t *o = (uint64_t *)dst;
    for (size_t i = 0; i < pg / 8; i++) {
        o[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
    }
}

static size_t copy_dirty(unsigned char *dst, const unsigned char *src,
                         const uint64_t *b, size_t npages)
{
    size_t n = 0;
    for (size_t w = 0; w < (npages + 63) / 64; w++) {
        for (uint64_t m = b[w]; m; m &= m - 1) {
            size_t i = w * 64 + (size_t)__builtin_ctzll(m);
            copy_page(dst + i * pg, src + i * pg);
            n++;
        }
    }
    return n;
}

/* One round: collect and copy both ranges; the pages copied, or -1. */
static ssize_t round_trip(zm_dirty *d, struct guest *g, unsigned char **dst,
                          uint64_t **b, bool stopped)
{
    size_t n = 0;
    for (unsigned r = 0; r < 2; r++) {
        memset(b[r], 0, words_for(g->rg[r].size, pg) * 8);
        if (g->quiesce && !stopped) {
            pthread_rwlock_wrlock(&g->gate);
        }
        ssize_t got = zm_dirty_collect(d, r, b[r]);
        if (g->quiesce && !stopped) {
            pthread_rwlock_unlock(&g->gate);
        }
        CHECK(got >= 0, "collect: %zd %s", got, zm_errmsg());
        if (got < 0) {
            return -1;
        }
        n += copy_dirty(dst[r], g->rg[r].base, b[r], g->npages[r]);
    }
    return (ssize_t)n;
}

/* With the writers stopped: the destination must equal the source. */
static bool identical(const char *name, struct guest *g, unsigned char **dst)
{
    size_t bad = 0, first = 0;
    int first_r = 0;
    for (int r = 0; r < 2; r++) {
        const unsigned char *src = g->rg[r].base;
        for (size_t i = 0; i < g->npages[r]; i++) {
            if (memcmp(src + i * pg, dst[r] + i * pg, pg) != 0) {
                if (bad++ == 0) {
                    first = i;
                    first_r = r;
                }
            }
        }
    }
    CHECK(bad == 0,
          "%s: %zu pages differ after migration, first: range %d"
          " page %zu (lost writes)",
          name, bad, first_r, first);
    return bad == 0;
}

static void test_migration(enum zm_dirty_kind kind, double seconds)
{
    const char *name = zm_dirty_kind_name(kind);
    const unsigned nchecks = 8;
    struct guest g = { 0 };
    const size_t size[2] = { 24 * MiB, 8 * MiB };
    unsigned char *dst[2];
    uint64_t *b[2];

    for (int r = 0; r < 2; r++) {
        g.rg[r].base = map_anon(size[r]);
        g.rg[r].size = size[r];
        g.npages[r] = size[r] / pg;
        /* The first half has contents, the rest is never touched. */
        t_fill_random(g.rg[r].base, size[r] / 2, 7 + (uint64_t)r);
        dst[r] = map_anon(size[r]);
        b[r] = bitmap_new(size[r], pg);
    }

    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* Otherwise a stream of readers starves the collect. */
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&g.gate, &attr);
    pthread_rwlockattr_destroy(&attr);

    struct vcpu v[2];
    for (int i = 0; i < 2; i++) {
        v[i] = (struct vcpu){ .g = &g, .seed = 1000 + (uint64_t)i };
        pthread_create(&v[i].thread, NULL, vcpu_run, &v[i]);
    }

    zm_dirty *d;
    int ret = zm_dirty_new(kind, g.rg, 2, pg, &d);
    CHECK(ret == 0, "%s: new: %s", name, zm_errmsg());
    if (ret != 0) {
        atomic_store(&g.stop, true);
        for (int i = 0; i < 2; i++) {
            pthread_join(v[i].thread, NULL);
        }
        goto out;
    }
    g.quiesce = zm_dirty_needs_quiesce(d);

    /* Round 0: everything, while the guest runs. */
    for (int r = 0; r < 2; r++) {
        for (size_t i = 0; i < g.npages[r]; i++) {
            copy_page(dst[r] + i * pg, (unsigned char *)g.rg[r].base + i * pg);
        }
    }
    double t0 = now();
    unsigned rounds = 0, checks = 0;
    size_t copied = 0, last = 0;
    bool ok = true;
    while (ok && checks < nchecks - 1) {
        ssize_t n = round_trip(d, &g, dst, b, false);
        ok = n >= 0;
        copied += ok ? (size_t)n : 0;
        rounds++;
        if (ok && now() - t0 >= seconds * (checks + 1) / nchecks) {
            /* A final round, then the guest goes on: as if resumed. */
            pthread_rwlock_wrlock(&g.gate);
            n = round_trip(d, &g, dst, b, true);
            ok = n >= 0 && identical(name, &g, dst);
            pthread_rwlock_unlock(&g.gate);
            checks++;
        }
    }
    atomic_store(&g.stop, true);
    for (int i = 0; i < 2; i++) {
        pthread_join(v[i].thread, NULL);
    }
    if (ok) {
        ssize_t n = round_trip(d, &g, dst, b, true);
        last = n > 0 ? (size_t)n : 0;
        ok = n >= 0 && identical(name, &g, dst);
        checks++;
    }
    double dt = now() - t0;

    printf("  %s migration: %u rounds in %.2f s%s, %.1f M writes, %zu pages"
           " resent (%.0f/round), %zu in the last round, %u/%u checks"
           " identical\n",
           name, rounds, dt,
           g.quiesce ? " (writers stopped around each collect)" : "",
           (double)(v[0].writes + v[1].writes) / 1e6, copied,
           rounds ? (double)copied / rounds : 0.0, last,
           ok ? checks : checks - 1, nchecks);
    CHECK(copied > 0, "%s: nothing reported while the guest wrote", name);
    zm_dirty_free(d);
out:
    pthread_rwlock_destroy(&g.gate);
    for (int r = 0; r < 2; r++) {
        munmap(g.rg[r].base, size[r]);
        munmap(dst[r], size[r]);
        free(b[r]);
    }
}

/* A range replaced behind the tracker's back is an error, not silence. */
static void test_remapped(enum zm_dirty_kind kind)
{
    const char *name = zm_dirty_kind_name(kind);
    unsigned char *p = map_anon(4 * MiB);
    struct zm_dirty_range rg = { p, 4 * MiB };
    zm_dirty *d;

    if (zm_dirty_new(kind, &rg, 1, pg, &d) != 0) {
        CHECK(false, "%s: new: %s", name, zm_errmsg());
        munmap(p, 4 * MiB);
        return;
    }
    /* Another tracker cannot take the same memory. */
    zm_dirty *d2;
    int ret = zm_dirty_new(kind, &rg, 1, pg, &d2);
    CHECK(ret == -EBUSY && strstr(zm_errmsg(), "another"),
          "%s: tracked twice: %d '%s'", name, ret, zm_errmsg());
    if (ret == 0) {
        zm_dirty_free(d2);
    }

    void *q = mmap(p, 4 * MiB, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(q == p, "mmap MAP_FIXED");
    p[0] = 1;
    uint64_t *b = bitmap_new(rg.size, pg);
    ssize_t n = zm_dirty_collect(d, 0, b);
    CHECK(n < 0 && strlen(zm_errmsg()) > 0,
          "%s: collect of a remapped range: %zd", name, n);
    printf("  %s remapped range: %zd (%s)\n", name, n, zm_errmsg());
    free(b);
    zm_dirty_free(d);
    munmap(p, 4 * MiB);
}

/*
 * Where the kernel lacks the soft-dirty bit, its provider cannot be
 * tested for real; its plumbing can: two trackers at once, reading
 * pagemap for every range and clearing, on a kernel where every page
 * reads clean.  (Under ASan this still finds bookkeeping bugs.)
 */
static void test_softdirty_plumbing(void)
{
    const struct zm_dirty_ops *ops = &zm_dirty_soft_dirty_ops;
    const size_t len = 16 * MiB;
    unsigned char *map = map_anon(len);
    struct zm_dirty_range rg[3] = {
        { map, 6 * MiB },
        { map + 8 * MiB, 4 * MiB },
        { map + 12 * MiB, 4 * MiB },
    };
    struct zm_dirty a = { .ops = ops,
                          .ranges = rg,
                          .count = 2,
                          .page_size = pg,
                          .page_shift = (unsigned)__builtin_ctzll(pg) };
    struct zm_dirty b = { .ops = ops,
                          .ranges = rg + 2,
                          .count = 1,
                          .page_size = 2 * pg,
                          .page_shift = (unsigned)__builtin_ctzll(2 * pg) };

    int ra = ops->start(&a);
    int rb = ops->start(&b);
    CHECK(ra == 0 && rb == 0, "soft-dirty plumbing: start %d %d: %s", ra, rb,
          zm_errmsg());
    if (ra == 0 && rb == 0) {
        uint64_t *bm = bitmap_new(6 * MiB, pg);
        memset(map, 3, len);
        ssize_t n0 = ops->collect(&a, 0, bm);
        ssize_t n1 = ops->collect(&a, 1, bm);
        ssize_t n2 = ops->collect(&b, 0, bm);
        CHECK(n0 == 0 && n1 == 0 && n2 == 0,
              "soft-dirty plumbing: %zd %zd %zd bits on a kernel without"
              " the bit",
              n0, n1, n2);
        free(bm);
    }
    if (ra == 0) {
        ops->stop(&a);
    }
    if (rb == 0) {
        ops->stop(&b);
    }
    printf("  soft-dirty plumbing (every page reads clean here): %s\n",
           ra == 0 && rb == 0 ? "ran" : zm_errmsg());
    munmap(map, len);
}

static void test_errors(void)
{
    unsigned char *p = map_anon(4 * MiB);
    struct zm_dirty_range ok = { p, 4 * MiB };
    zm_dirty *d = (zm_dirty *)&ok;

    const struct {
        const char *what;
        struct zm_dirty_range rg[2];
        unsigned count;
        size_t page_size;
    } bad[] = {
        { "unaligned base", { { p + 1, pg } }, 1, pg },
        { "unaligned size", { { p, pg + 1 } }, 1, pg },
        { "empty range", { { p, 0 } }, 1, pg },
        { "NULL base", { { NULL, pg } }, 1, pg },
        { "no ranges", { { p, pg } }, 0, pg },
        { "page size not a power of two", { { p, 3 * pg } }, 1, 3 * pg },
        { "page size below the system's", { { p, pg } }, 1, pg / 2 },
        { "base not aligned to page_size", { { p + pg, 4 * pg } }, 1, 2 * MiB },
        { "overlapping ranges", { { p, 2 * pg }, { p + pg, 2 * pg } }, 2, pg },
        { "wrapping range",
          { { (void *)(UINTPTR_MAX & ~(uintptr_t)(pg - 1)), 2 * pg } },
          1,
          pg },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int ret = zm_dirty_new(ZM_DIRTY_AUTO, bad[i].rg, bad[i].count,
                               bad[i].page_size, &d);
        CHECK(ret == -EINVAL && d == NULL && strlen(zm_errmsg()) > 0,
              "%s: %d '%s'", bad[i].what, ret, zm_errmsg());
    }
    printf("  errors: e.g. '%s'\n", zm_errmsg());

    CHECK(zm_dirty_probe((enum zm_dirty_kind)42) == -EINVAL, "probe(42)");
    CHECK(zm_dirty_new((enum zm_dirty_kind)42, &ok, 1, pg, &d) == -EINVAL,
          "new(42)");
    CHECK(strcmp(zm_dirty_kind_name((enum zm_dirty_kind)42), "?") == 0,
          "name(42)");
    CHECK(strcmp(zm_dirty_kind_name(ZM_DIRTY_AUTO), "auto") == 0, "auto");

    /* An unavailable kind fails as its probe does, saying why. */
    const enum zm_dirty_kind kinds[] = { ZM_DIRTY_UFFD_WP,
                                         ZM_DIRTY_SOFT_DIRTY };
    for (int k = 0; k < 2; k++) {
        int probe = zm_dirty_probe(kinds[k]);
        if (probe == 0) {
            continue;
        }
        char why[256];
        snprintf(why, sizeof(why), "%s", zm_errmsg());
        int ret = zm_dirty_new(kinds[k], &ok, 1, pg, &d);
        CHECK(ret == probe && d == NULL && strcmp(why, zm_errmsg()) == 0,
              "%s: new %d '%s', probe %d '%s'", zm_dirty_kind_name(kinds[k]),
              ret, zm_errmsg(), probe, why);
    }

    /* A hole in a range would go untracked. */
    munmap(p + 2 * MiB, pg);
    int ret = zm_dirty_new(ZM_DIRTY_AUTO, &ok, 1, pg, &d);
    CHECK(ret == -EINVAL && strstr(zm_errmsg(), "mapped"),
          "range with a hole: %d '%s'", ret, zm_errmsg());
    printf("  errors: '%s'\n", zm_errmsg());
    mmap(p + 2 * MiB, pg, PROT_READ | PROT_WRITE,
         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);

    if (zm_dirty_probe(ZM_DIRTY_AUTO) == 0 &&
        zm_dirty_new(ZM_DIRTY_AUTO, &ok, 1, pg, &d) == 0) {
        CHECK(zm_dirty_kind_of(d) != ZM_DIRTY_AUTO, "kind_of(auto)");
        uint64_t b[8] = { 0 };
        CHECK(zm_dirty_collect(d, 1, b) == -EINVAL, "collect(range 1 of 1)");
        zm_dirty_free(d);
    }
    zm_dirty_free(NULL);
    munmap(p, 4 * MiB);
}

/*
 * The embedder's log as a tracker.  The log checks that it is handed a
 * zeroed bitmap (after a call that set every bit of it), sets the bits
 * it is told to, and records how it was called.
 */
struct fake_log {
    size_t words[3]; /* of each range's bitmap */
    unsigned calls;
    unsigned last_r;
    void *last_opaque;
    bool dirty_handed; /* a call got a bitmap with a bit already set */
    bool fill;         /* the next call sets every bit of the bitmap */
    const size_t *set; /* else these bits */
    size_t nset;
    int fail; /* returned, after setting the bits, when negative */
};

static int fake_log_fn(void *opaque, unsigned r, uint64_t *bitmap)
{
    struct fake_log *f = opaque;

    f->calls++;
    f->last_r = r;
    f->last_opaque = opaque;
    if (r > 2) {
        return -ERANGE;
    }
    for (size_t w = 0; w < f->words[r]; w++) {
        f->dirty_handed |= bitmap[w] != 0;
    }
    if (f->fill) {
        memset(bitmap, 0xff, f->words[r] * sizeof(uint64_t));
    }
    for (size_t i = 0; !f->fill && i < f->nset; i++) {
        set_bit(bitmap, f->set[i]);
    }
    return f->fail;
}

static void test_embedder(void)
{
    /*
     * Range 0: 100 pages (2 words); range 1: 200 pages (4 words); range
     * 2: 64 pages (1 word), the last but not the largest (the scratch
     * bitmap must fit range 1: ASan sees it when it does not).
     */
    unsigned char *map = map_anon(400 * pg);
    struct zm_dirty_range rg[3] = {
        { map, 100 * pg },
        { map + 110 * pg, 200 * pg },
        { map + 320 * pg, 64 * pg },
    };
    struct fake_log f = { .words = { 2, 4, 1 } };
    zm_dirty *d = (zm_dirty *)&f;

    CHECK(zm_dirty_probe(ZM_DIRTY_EMBEDDER) == 0, "embedder: probe");
    CHECK(strcmp(zm_dirty_kind_name(ZM_DIRTY_EMBEDDER), "embedder") == 0,
          "embedder: name '%s'", zm_dirty_kind_name(ZM_DIRTY_EMBEDDER));

    int ret = zm_dirty_new_embedder(NULL, &f, rg, 3, pg, &d);
    CHECK(ret == -EINVAL && d == NULL && strlen(zm_errmsg()) > 0,
          "embedder: NULL log: %d", ret);
    /* The ranges' shape is checked as for the kernel's trackers... */
    struct zm_dirty_range bad = { map + 1, pg };
    d = (zm_dirty *)&f;
    ret = zm_dirty_new_embedder(fake_log_fn, &f, &bad, 1, pg, &d);
    CHECK(ret == -EINVAL && d == NULL, "embedder: unaligned range: %d", ret);
    /* ...but not whether they overlap or are mapped: the embedder's log
     * knows its memory, aliases included (a VMM's ROM alias of RAM). */
    struct zm_dirty_range alias[2] = { { map, 100 * pg }, { map, 50 * pg } };
    ret = zm_dirty_new_embedder(fake_log_fn, &f, alias, 2, pg, &d);
    CHECK(ret == 0 && d != NULL, "embedder: aliased ranges: %d %s", ret,
          zm_errmsg());
    zm_dirty_free(ret == 0 ? d : NULL);
    CHECK(f.calls == 0, "embedder: log called %u times by new", f.calls);

    ret = zm_dirty_new_embedder(fake_log_fn, &f, rg, 3, pg, &d);
    CHECK(ret == 0 && d != NULL, "embedder: new: %d %s", ret, zm_errmsg());
    if (ret != 0) {
        munmap(map, 400 * pg);
        return;
    }
    CHECK(zm_dirty_kind_of(d) == ZM_DIRTY_EMBEDDER, "embedder: kind_of %d",
          (int)zm_dirty_kind_of(d));
    CHECK(!zm_dirty_needs_quiesce(d), "embedder: needs_quiesce");
    CHECK(f.calls == 0, "embedder: log called %u times by new", f.calls);

    /* The bitmaps end on guard pages: a word too many faults. */
    struct t_guarded g0 = t_guarded_alloc(2 * sizeof(uint64_t));
    struct t_guarded g1 = t_guarded_alloc(4 * sizeof(uint64_t));
    uint64_t *b0 = (uint64_t *)g0.data, *b1 = (uint64_t *)g1.data;
    memset(b0, 0, 2 * sizeof(uint64_t));
    memset(b1, 0, 4 * sizeof(uint64_t));

    /*
     * Range 1, the log sets all 256 bits of its 4 words (the canary for
     * the next call): the 200 of the range are reported, 200..255
     * dropped; the log saw range 1 and its opaque.
     */
    f.fill = true;
    ssize_t n = zm_dirty_collect(d, 1, b1);
    CHECK(n == 200, "embedder: all of range 1: %zd", n);
    CHECK(b1[0] == ~0ull && b1[1] == ~0ull && b1[2] == ~0ull && b1[3] == 0xff,
          "embedder: range 1 bits %llx %llx %llx %llx",
          (unsigned long long)b1[0], (unsigned long long)b1[1],
          (unsigned long long)b1[2], (unsigned long long)b1[3]);
    CHECK(f.calls == 1 && f.last_r == 1 && f.last_opaque == &f,
          "embedder: log called %u times, last for range %u, opaque %p",
          f.calls, f.last_r, f.last_opaque);
    f.fill = false;

    /*
     * Again, the log sets 5 and 70: it must get a zeroed bitmap, and
     * both bits are already set in the caller's: 0 newly set.
     */
    const size_t again[] = { 5, 70 };
    f.set = again;
    f.nset = 2;
    n = zm_dirty_collect(d, 1, b1);
    CHECK(!f.dirty_handed, "embedder: the log got the last call's bits");
    CHECK(n == 0, "embedder: %zd bits newly set, all were set", n);
    CHECK(popcount(b1, 4) == 200, "embedder: %zu bits after OR",
          popcount(b1, 4));

    /* Only bit 5 set in the caller's; the log sets 5, 70 and 199: 2 new. */
    const size_t three[] = { 5, 70, 199 };
    memset(b1, 0, 4 * sizeof(uint64_t));
    set_bit(b1, 5);
    f.set = three;
    f.nset = 3;
    n = zm_dirty_collect(d, 1, b1);
    CHECK(n == 2, "embedder: %zd newly set, want 2 (5 was set)", n);
    CHECK(popcount(b1, 4) == 3 && test_bit(b1, 5) && test_bit(b1, 70) &&
              test_bit(b1, 199),
          "embedder: range 1 holds %zu bits", popcount(b1, 4));
    CHECK(!f.dirty_handed, "embedder: the log got a used bitmap");

    /*
     * Range 0 (100 pages) after range 1 filled the scratch: the log gets
     * its 2 words zeroed and sets 0, 99, 100 and 127; 100 and 127 lie
     * past the last page and are dropped.  The caller's 50 stays.
     */
    const size_t edges[] = { 0, 99, 100, 127 };
    set_bit(b0, 50);
    f.fill = true;
    zm_dirty_collect(d, 1, b1); /* the scratch all ones again */
    f.fill = false;
    f.set = edges;
    f.nset = 4;
    n = zm_dirty_collect(d, 0, b0);
    CHECK(!f.dirty_handed, "embedder: range 0 got a used bitmap");
    CHECK(f.last_r == 0 && f.last_opaque == &f,
          "embedder: last call for range %u", f.last_r);
    CHECK(n == 2, "embedder: range 0: %zd newly set, want 2", n);
    CHECK(b0[0] == (1ull | 1ull << 50) && b0[1] == 1ull << (99 - 64),
          "embedder: range 0 bits %llx %llx", (unsigned long long)b0[0],
          (unsigned long long)b0[1]);

    /* A failing log: its error comes back, whatever it set. */
    unsigned calls = f.calls;
    f.fail = -EIO;
    n = zm_dirty_collect(d, 0, b0);
    CHECK(n == -EIO, "embedder: failing log: %zd", n);
    f.fail = -ENOMEM;
    n = zm_dirty_collect(d, 1, b1);
    CHECK(n == -ENOMEM, "embedder: failing log, range 1: %zd", n);
    CHECK(f.calls == calls + 2, "embedder: %u calls for 2 collects",
          f.calls - calls);
    f.fail = 0;

    /*
     * Range 2, 64 pages, a whole word: the failed call above left bits
     * 0 and 99 in the scratch; the log gets a zeroed word, sets 0 and
     * 63, and both are kept.
     */
    struct t_guarded g2 = t_guarded_alloc(sizeof(uint64_t));
    uint64_t *b2 = (uint64_t *)g2.data;
    const size_t ends[] = { 0, 63 };
    *b2 = 0;
    f.set = ends;
    f.nset = 2;
    n = zm_dirty_collect(d, 2, b2);
    CHECK(!f.dirty_handed, "embedder: range 2 got a used bitmap");
    CHECK(n == 2 && *b2 == (1ull | 1ull << 63) && f.last_r == 2,
          "embedder: range 2: %zd, %llx, last range %u", n,
          (unsigned long long)*b2, f.last_r);
    t_guarded_free(&g2);

    /* No range 3: -EINVAL, and the log is not asked. */
    calls = f.calls;
    n = zm_dirty_collect(d, 3, b1);
    CHECK(n == -EINVAL && f.calls == calls,
          "embedder: collect(range 3 of 3): %zd, %u calls", n, f.calls - calls);

    /* Still working after the failures. */
    const size_t one[] = { 42 };
    memset(b0, 0, 2 * sizeof(uint64_t));
    f.set = one;
    f.nset = 1;
    n = zm_dirty_collect(d, 0, b0);
    CHECK(n == 1 && b0[0] == 1ull << 42 && b0[1] == 0,
          "embedder: after failures: %zd", n);

    zm_dirty_free(d);
    t_guarded_free(&g0);
    t_guarded_free(&g1);

    /*
     * A second tracker with its own opaque, over one range of 25 pages of
     * 4 system pages (one word): the log sets 24 and 63, 63 is dropped.
     * The first tracker's log is not called.
     */
    struct fake_log f2 = { .words = { 1, 0 } };
    const size_t last[] = { 24, 63 };
    const size_t big_pg = 4 * pg;
    struct zm_dirty_range big = {
        (void *)(((uintptr_t)map + big_pg - 1) & ~(uintptr_t)(big_pg - 1)),
        25 * big_pg, /* at most 103 of the 320 pages mapped */
    };
    f2.set = last;
    f2.nset = 2;
    calls = f.calls;
    ret = zm_dirty_new_embedder(fake_log_fn, &f2, &big, 1, big_pg, &d);
    CHECK(ret == 0, "embedder: page_size %zu: %s", big_pg, zm_errmsg());
    if (ret == 0) {
        uint64_t b = 0;
        n = zm_dirty_collect(d, 0, &b);
        CHECK(n == 1 && b == 1ull << 24, "embedder: 25 pages of %zu: %zd, %llx",
              big_pg, n, (unsigned long long)b);
        CHECK(f2.calls == 1 && f2.last_opaque == &f2 && f2.last_r == 0 &&
                  f.calls == calls,
              "embedder: second tracker: %u calls, opaque %p, first log %u",
              f2.calls, f2.last_opaque, f.calls - calls);
        zm_dirty_free(d);
    }
    munmap(map, 400 * pg);
    printf("  embedder: ok\n");
}

/* The bitmap helper every provider reports through. */
static void test_bits(void)
{
    uint64_t b[4] = { 0 };

    CHECK(zm_dirty_set_bits(b, 60, 70) == 70, "set 60+70");
    CHECK(b[0] == 0xf000000000000000ull && b[1] == ~0ull && b[2] == 3 &&
              b[3] == 0,
          "bits %llx %llx %llx %llx", (unsigned long long)b[0],
          (unsigned long long)b[1], (unsigned long long)b[2],
          (unsigned long long)b[3]);
    CHECK(zm_dirty_set_bits(b, 0, 256) == 256 - 70, "set all: new ones only");
    CHECK(zm_dirty_set_bits(b, 5, 1) == 0, "set again");
    CHECK(b[0] == ~0ull && b[3] == ~0ull, "all set");
}

int main(void)
{
    pg = (size_t)sysconf(_SC_PAGESIZE);
    /* Under ASan everything is slower; the property needs rounds, not time. */
    const char *secs = getenv("ZM_DIRTY_SECONDS");
    double seconds = secs ? atof(secs) : 1.5;

    const enum zm_dirty_kind kinds[] = { ZM_DIRTY_UFFD_WP,
                                         ZM_DIRTY_SOFT_DIRTY };
    int tested = 0;
    for (int k = 0; k < 2; k++) {
        const char *name = zm_dirty_kind_name(kinds[k]);
        int probe = zm_dirty_probe(kinds[k]);
        if (probe != 0) {
            printf("%s: skipped: %s\n", name, zm_errmsg());
            if (kinds[k] == ZM_DIRTY_SOFT_DIRTY && probe == -EOPNOTSUPP) {
                test_softdirty_plumbing();
            }
            continue;
        }
        printf("%s: testing\n", name);
        double t = now();
        test_basic(kinds[k]);
        test_shared(kinds[k]);
        test_page_size(kinds[k]);
        test_thp(kinds[k]);
        if (kinds[k] == ZM_DIRTY_UFFD_WP) {
            test_remapped(kinds[k]);
        }
        test_migration(kinds[k], seconds);
        printf("%s: done in %.2f s\n", name, now() - t);
        tested++;
    }

    int ret = zm_dirty_probe(ZM_DIRTY_AUTO);
    printf("auto: %s\n", ret == 0 ? "available" : zm_errmsg());
    test_errors();
    test_bits();
    test_embedder(); /* needs no kernel support: always runs */

    if (tested == 0 && t_failures == 0) {
        printf("no dirty tracker usable here: skipped\n");
        return T_EXIT_SKIP;
    }
    return t_exit();
}
