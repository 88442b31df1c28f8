/*
 * test_guest.c - the zmigrate tool's built-in guest: its data, and vCPUs
 * that stop when told, stay stopped and resume
 *
 * Rates are printed, never asserted: the machine may be busy.
 */
#include "tools/datagen.h"
#include "tools/sim_guest.h"
#include "test_util.h"
#include "zmigrate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define KIB 1024u
#define MIB (1024u * 1024u)

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static zm_guest *make(size_t ram, unsigned vcpus,
                      enum zm_guest_workload workload, uint64_t rate,
                      const char *corpus, uint64_t seed)
{
    struct zm_guest_options o = {
        .ram = ram,
        .vcpus = vcpus,
        .workload = workload,
        .dirty_rate = rate,
        .corpus_dir = corpus,
        .seed = seed,
    };
    char err[256] = "";
    zm_guest *g = NULL;
    int ret = zm_guest_new(&o, &g, err, sizeof(err));

    if (ret < 0) {
        fprintf(stderr, "zm_guest_new: %s (%s)\n", zm_strerror(ret), err);
        exit(T_EXIT_FAIL);
    }
    return g;
}

static uint64_t ram_hash(zm_guest *g)
{
    return zm_guest_hash(zm_guest_ram(g), zm_guest_ram_size(g));
}

/* Waits up to 20 s for FILL to finish. */
static bool wait_filled(zm_guest *g)
{
    struct zm_guest_stats st;

    for (int i = 0; i < 20000; i++) {
        zm_guest_stats(g, &st);
        if (st.fill_done) {
            return true;
        }
        sleep_ms(1);
    }
    return false;
}

static void test_options(void)
{
    static const struct {
        struct zm_guest_options o;
        int ret;
        const char *msg;
    } bad[] = {
        { { .ram = 0, .vcpus = 1 }, -EINVAL, "multiple of 4096" },
        { { .ram = 4097, .vcpus = 1 }, -EINVAL, "got 4097" },
        { { .ram = 4096, .vcpus = 0 }, -EINVAL, "vCPUs" },
        { { .ram = 4096, .vcpus = 1025 }, -EINVAL, "vCPUs" },
        { { .ram = 4096, .vcpus = 1, .workload = 7 }, -EINVAL, "workload" },
        { { .ram = 4096, .vcpus = 1, .corpus_dir = "/nonexistent/corpus" },
          -ENOENT,
          "/nonexistent/corpus" },
    };
    char err[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        zm_guest *g = NULL;
        int ret;

        err[0] = '\0';
        ret = zm_guest_new(&bad[i].o, &g, err, sizeof(err));
        CHECK(ret == bad[i].ret, "case %zu: %d, want %d", i, ret, bad[i].ret);
        CHECK(g == NULL, "case %zu: a guest on failure", i);
        CHECK(strstr(err, bad[i].msg) != NULL, "case %zu: message '%s'", i,
              err);
    }
    printf("missing corpus: %s\n", err);

    CHECK(zm_guest_workload_by_name("idle") == ZM_GUEST_IDLE, "idle");
    CHECK(zm_guest_workload_by_name("fill") == ZM_GUEST_FILL, "fill");
    CHECK(zm_guest_workload_by_name("writer") == ZM_GUEST_WRITER, "writer");
    CHECK(zm_guest_workload_by_name("busy") == -EINVAL, "busy");
    CHECK(zm_guest_workload_by_name(NULL) == -EINVAL, "NULL");
    CHECK(strcmp(zm_guest_workload_name(ZM_GUEST_WRITER), "writer") == 0,
          "name");
    CHECK(zm_guest_workload_name(3) == NULL, "no name");
    zm_guest_free(NULL);
}

/* Generated data: zm_datagen_fill()'s, however many vCPUs made it. */
static void test_generated(void)
{
    /* Not a whole number of the guest's 2 MiB fill chunks. */
    size_t size = 6 * MIB + 12 * KIB;
    unsigned char *ref = malloc(size);
    uint64_t page = 0;
    zm_guest *a = make(size, 3, ZM_GUEST_IDLE, 0, NULL, 42);
    zm_guest *b = make(size, 1, ZM_GUEST_WRITER, 0, NULL, 42);
    zm_guest *c = make(size, 2, ZM_GUEST_IDLE, 0, NULL, 43);
    zm_guest *d = make(64 * KIB, 64, ZM_GUEST_IDLE, 0, NULL, 42);

    zm_datagen_fill(ref, size, 0, 42);
    CHECK(zm_guest_ram_size(a) == size, "size %zu", zm_guest_ram_size(a));
    CHECK(((uintptr_t)zm_guest_ram(a) & 4095) == 0, "RAM page-aligned");
    CHECK(zm_guest_first_difference(zm_guest_ram(a), ref, size, 4096, &page) ==
              0,
          "3 vCPUs: differs from zm_datagen_fill() at page %llu",
          (unsigned long long)page);
    CHECK(ram_hash(a) == ram_hash(b), "same seed, another guest");
    CHECK(ram_hash(a) != ram_hash(c), "another seed, same data");
    CHECK(memcmp(zm_guest_ram(d), ref, 64 * KIB) == 0, "more vCPUs than work");
    zm_guest_free(a);
    zm_guest_free(b);
    zm_guest_free(c);
    zm_guest_free(d);
    free(ref);
}

static void test_checksums(void)
{
    size_t size = 3 * MIB + 100;
    unsigned char *a = malloc(size);
    unsigned char *b = malloc(size);
    uint64_t page = 0;
    uint64_t h;

    t_fill_random(a, size, 7);
    memcpy(b, a, size);
    h = zm_guest_hash(a, size);
    CHECK(h == zm_guest_hash(b, size), "equal memory, equal hashes");
    CHECK(zm_guest_first_difference(a, b, size, 4096, &page) == 0, "equal");

    b[2 * MIB + 5000] ^= 1;
    CHECK(zm_guest_hash(b, size) != h, "one bit changes the hash");
    CHECK(zm_guest_first_difference(a, b, size, 4096, &page) == 1 &&
              page == (2 * MIB + 5000) / 4096,
          "page %llu", (unsigned long long)page);
    b[size - 1] ^= 1;
    b[7000] ^= 1;
    CHECK(zm_guest_first_difference(a, b, size, 4096, &page) == 1 && page == 1,
          "the first of several: page %llu", (unsigned long long)page);
    CHECK(zm_guest_first_difference(a, b, size, 3000, &page) == 1 && page == 2,
          "3000-byte pages: page %llu", (unsigned long long)page);
    memcpy(b, a, size);
    b[size - 1] ^= 1;
    CHECK(zm_guest_first_difference(a, b, size, 4096, &page) == 1 &&
              page == (size - 1) / 4096,
          "the partial last page: %llu", (unsigned long long)page);
    CHECK(zm_guest_first_difference(a, b, size, 4096, NULL) == 1, "no page");
    CHECK(zm_guest_first_difference(a, b, size, 0, &page) == -EINVAL,
          "page size 0");
    CHECK(zm_guest_first_difference(a, b, 0, 4096, &page) == 0, "size 0");
    free(a);
    free(b);
}

/*
 * While stopped, a writer at full speed changes nothing; once resumed, it
 * does.  Hashes are taken only while stopped: a stop is also the point
 * after which the vCPUs' writes are visible.
 */
static void test_stop_resume(void)
{
    zm_guest *g = make(16 * MIB, 2, ZM_GUEST_WRITER, 0, NULL, 1);
    struct zm_guest_stats st;
    uint64_t h;
    uint64_t pages;
    uint64_t longest = 0;

    CHECK(zm_guest_start(g) == 0, "start");
    CHECK(zm_guest_start(g) == -EALREADY, "second start");
    sleep_ms(20);
    for (int round = 0; round < 10; round++) {
        uint64_t t0 = now_ns();

        CHECK(zm_guest_hook_stop(g) == 0, "stop");
        if (now_ns() - t0 > longest) {
            longest = now_ns() - t0;
        }
        CHECK(zm_guest_stop(g) == 0, "stop again");
        h = ram_hash(g);
        zm_guest_stats(g, &st);
        pages = st.pages_dirtied;
        CHECK(!st.running, "stats say stopped");
        sleep_ms(round == 0 ? 50 : 5);
        zm_guest_stats(g, &st);
        CHECK(ram_hash(g) == h, "round %d: RAM changed while stopped", round);
        CHECK(st.pages_dirtied == pages, "round %d: %llu pages while stopped",
              round, (unsigned long long)(st.pages_dirtied - pages));

        CHECK(zm_guest_hook_resume(g) == 0, "resume");
        CHECK(zm_guest_resume(g) == 0, "resume again");
        sleep_ms(round == 0 ? 50 : 5);
        zm_guest_stop(g);
        zm_guest_stats(g, &st);
        CHECK(ram_hash(g) != h, "round %d: RAM unchanged after resume", round);
        CHECK(st.pages_dirtied > pages, "round %d: no pages after resume",
              round);
        zm_guest_resume(g);
    }
    zm_guest_stop(g);
    zm_guest_stats(g, &st);
    CHECK(st.stops == 21, "%u stops counted", st.stops);
    printf("writer, 2 vCPUs, no limit: %.1f M writes/s, %llu in all; "
           "longest stop %.3f ms\n",
           st.dirty_rate / 4096 / 1e6, (unsigned long long)st.pages_dirtied,
           (double)longest / 1e6);
    zm_guest_free(g);

    /* Freed while running. */
    g = make(4 * MIB, 3, ZM_GUEST_WRITER, 0, NULL, 1);
    zm_guest_start(g);
    sleep_ms(5);
    zm_guest_free(g);
}

/* Stopped before it starts: the vCPUs start parked. */
static void test_stop_before_start(void)
{
    zm_guest *g = make(4 * MIB, 2, ZM_GUEST_WRITER, 0, NULL, 2);
    struct zm_guest_stats st;
    uint64_t h = ram_hash(g);

    zm_guest_stop(g);
    CHECK(zm_guest_start(g) == 0, "start");
    zm_guest_stop(g);
    sleep_ms(30);
    zm_guest_stats(g, &st);
    CHECK(ram_hash(g) == h, "RAM changed before resume");
    CHECK(st.pages_dirtied == 0 && !st.running, "%llu pages before resume",
          (unsigned long long)st.pages_dirtied);
    zm_guest_resume(g);
    sleep_ms(30);
    zm_guest_stop(g);
    CHECK(ram_hash(g) != h, "RAM unchanged after resume");
    zm_guest_free(g);

    /* An idle guest has no vCPUs to stop. */
    g = make(4 * MIB, 2, ZM_GUEST_IDLE, 0, NULL, 2);
    h = ram_hash(g);
    CHECK(zm_guest_start(g) == 0, "start idle");
    sleep_ms(10);
    CHECK(zm_guest_stop(g) == 0 && zm_guest_resume(g) == 0, "idle stop");
    zm_guest_stop(g);
    zm_guest_stats(g, &st);
    CHECK(ram_hash(g) == h && st.pages_dirtied == 0, "idle guest wrote");
    CHECK(st.fill_done && st.bytes_filled == 4 * MIB, "idle guest filled");
    zm_guest_free(g);
}

/* The rate is paced; what it comes to is printed, not checked. */
static void test_rate(void)
{
    static const uint64_t rates[] = { 50 * MIB, 400 * 4096 };
    struct zm_guest_stats st;

    for (unsigned i = 0; i < 2; i++) {
        zm_guest *g = make(32 * MIB, 2, ZM_GUEST_WRITER, rates[i], NULL, 3);
        uint64_t t0;

        zm_guest_start(g);
        sleep_ms(400);
        zm_guest_stop(g);
        zm_guest_stats(g, &st);
        printf("writer at %llu B/s: %.0f B/s (%.0f%%) over %.0f ms, "
               "%llu pages\n",
               (unsigned long long)rates[i], st.dirty_rate,
               100 * st.dirty_rate / (double)rates[i],
               (double)st.running_ns / 1e6,
               (unsigned long long)st.pages_dirtied);
        CHECK(st.pages_dirtied > 0, "no pages dirtied at %llu B/s",
              (unsigned long long)rates[i]);
        zm_guest_free(g);

        /* One page every 2 s per vCPU: stopping wakes them. */
        g = make(4 * MIB, 2, ZM_GUEST_WRITER, 4096, NULL, 3);
        zm_guest_start(g);
        sleep_ms(5);
        t0 = now_ns();
        zm_guest_stop(g);
        printf("stopping vCPUs that sleep to pace themselves: %.3f ms\n",
               (double)(now_ns() - t0) / 1e6);
        zm_guest_free(g);
    }
}

/* FILL: zero at first, then, paced or not, the same data as IDLE. */
static void test_fill(void)
{
    size_t size = 8 * MIB;
    unsigned char *ref = malloc(size);
    static const uint64_t rates[] = { 0, 32 * MIB };

    zm_datagen_fill(ref, size, 0, 5);
    for (unsigned i = 0; i < 2; i++) {
        zm_guest *g = make(size, 3, ZM_GUEST_FILL, rates[i], NULL, 5);
        unsigned char *zero = calloc(1, size);
        struct zm_guest_stats st;
        uint64_t page = 0;
        uint64_t h;

        CHECK(memcmp(zm_guest_ram(g), zero, size) == 0, "RAM zero at first");
        zm_guest_stats(g, &st);
        CHECK(!st.fill_done && st.bytes_filled == 0, "filled before start");
        zm_guest_start(g);
        sleep_ms(40);
        zm_guest_stop(g);
        zm_guest_stats(g, &st);
        h = ram_hash(g);
        printf("fill at %llu B/s: %llu KiB after %.0f ms\n",
               (unsigned long long)rates[i],
               (unsigned long long)st.bytes_filled / KIB,
               (double)st.running_ns / 1e6);
        sleep_ms(20);
        CHECK(ram_hash(g) == h, "RAM changed while stopped");
        zm_guest_resume(g);
        CHECK(wait_filled(g), "fill not done in 20 s");
        zm_guest_stop(g);
        zm_guest_stats(g, &st);
        CHECK(st.bytes_filled == size && st.pages_dirtied == size / 4096,
              "%llu bytes filled", (unsigned long long)st.bytes_filled);
        CHECK(zm_guest_first_difference(zm_guest_ram(g), ref, size, 4096,
                                        &page) == 0,
              "filled RAM differs from IDLE's at page %llu",
              (unsigned long long)page);
        /* Done: the vCPUs idle, and stop and resume still work. */
        zm_guest_resume(g);
        sleep_ms(5);
        zm_guest_stop(g);
        CHECK(memcmp(zm_guest_ram(g), ref, size) == 0, "RAM changed");
        zm_guest_free(g);
        free(zero);
    }
    free(ref);
}

static void write_file(const char *dir, const char *name, const void *data,
                       size_t len)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(T_EXIT_FAIL);
    }
}

static void remove_file(const char *dir, const char *name)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    remove(path);
}

/* Corpus files: by name, end to end, repeated; some files are skipped. */
static void test_corpus_files(void)
{
    char dir[] = "/tmp/zm-test-guest-XXXXXX";
    unsigned char a[3] = { 'a', 'b', 'c' };
    unsigned char b[5000];
    unsigned char stream[sizeof(a) + sizeof(b)];
    size_t size = 64 * KIB;
    unsigned char *want = malloc(size);
    char err[256];
    char sub[600];

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(T_EXIT_FAIL);
    }
    t_fill_random(b, sizeof(b), 9);
    memcpy(stream, a, sizeof(a));
    memcpy(stream + sizeof(a), b, sizeof(b));
    for (size_t i = 0; i < size; i++) {
        want[i] = stream[i % sizeof(stream)];
    }

    /* Empty: no data files. */
    zm_guest *g = NULL;
    struct zm_guest_options o = { .ram = size, .vcpus = 2, .corpus_dir = dir };
    write_file(dir, "empty", "", 0);
    CHECK(zm_guest_new(&o, &g, err, sizeof(err)) == -ENOENT &&
              strstr(err, "no data files") != NULL,
          "empty corpus: %s", err);

    write_file(dir, "b", b, sizeof(b));
    write_file(dir, "a", a, sizeof(a));
    write_file(dir, ".hidden", "hidden", 6);
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    mkdir(sub, 0700);

    for (int w = ZM_GUEST_IDLE; w <= ZM_GUEST_WRITER; w++) {
        g = make(size, 2, (enum zm_guest_workload)w, 0, dir, 1);
        if (w == ZM_GUEST_FILL) {
            zm_guest_start(g);
            CHECK(wait_filled(g), "fill not done");
            zm_guest_stop(g);
        }
        CHECK(memcmp(zm_guest_ram(g), want, size) == 0, "%s: RAM differs",
              zm_guest_workload_name(w));
        zm_guest_free(g);
    }

    /* RAM smaller than the corpus: its start. */
    g = make(4096, 1, ZM_GUEST_IDLE, 0, dir, 1);
    CHECK(memcmp(zm_guest_ram(g), want, 4096) == 0, "small RAM differs");
    zm_guest_free(g);

    rmdir(sub);
    remove_file(dir, "a");
    remove_file(dir, "b");
    remove_file(dir, ".hidden");
    remove_file(dir, "empty");
    rmdir(dir);
    free(want);
}

static int data_file(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* The shared corpus, when there: the guest starts with its files. */
static void test_corpus_shared(void)
{
    const char *dir = getenv("ZM_CORPUS");
    size_t size = 8 * MIB;
    unsigned char *want;
    struct dirent **names;
    size_t got = 0;
    int n;

    n = dir != NULL ? scandir(dir, &names, data_file, by_name) : -1;
    if (n <= 0) {
        printf("corpus: not found (set ZM_CORPUS), its case skipped\n");
        return;
    }
    want = malloc(size);
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && got < size &&
            (f = fopen(path, "rb")) != NULL) {
            got += fread(want + got, 1, size - got, f);
            fclose(f);
        }
        free(names[i]);
    }
    free(names);
    if (got == size) {
        zm_guest *g = make(size, 2, ZM_GUEST_IDLE, 0, dir, 1);
        uint64_t page = 0;

        CHECK(zm_guest_first_difference(zm_guest_ram(g), want, size, 4096,
                                        &page) == 0,
              "corpus RAM differs at page %llu", (unsigned long long)page);
        zm_guest_free(g);
        printf("corpus: %s\n", dir);
    } else {
        printf("corpus: under 8 MiB in %s, its case skipped\n", dir);
    }
    free(want);
}

int main(void)
{
    test_options();
    test_generated();
    test_checksums();
    test_stop_resume();
    test_stop_before_start();
    test_rate();
    test_fill();
    test_corpus_files();
    test_corpus_shared();
    return t_exit();
}
