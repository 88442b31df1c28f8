/*
 * test_hash.c - every zm_hash implementation this CPU runs, one-shot and
 * streaming, against XXH3_64bits_withSeed() from the linked libxxhash
 *
 * Lengths cover each XXH3 path (0-16, 17-128, 129-240, then stripes and
 * 1 KiB blocks) at every alignment; streams are cut at random.
 */
#include "common/cpu.h"
#include "common/hash.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

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

#define ZM_MAX_REPORTS 20
#define ZM_DATA_SIZE ((size_t)1 << 21)

/* The public functions, through the dispatcher, as one more impl. */
static const struct zm_hash_impl dispatch_impl = {
    .name = "dispatch",
    .hash64 = zm_hash64,
    .reset = zm_hash_reset,
    .update = zm_hash_update,
    .digest = zm_hash_digest,
};

static const uint64_t seeds[] = {
    0, 1, 0x9e3779b97f4a7c15u, 0xffffffffffffffffu, 0x00000000deadbeefu,
};

#define ZM_SEED_COUNT (sizeof(seeds) / sizeof(seeds[0]))

static const size_t long_lens[] = {
    1200,  2047,  2048,   2049,    4095,
    4096,  4097,  8191,   8192,    8193,
    16391, 65539, 262144, 1048577, ZM_DATA_SIZE - 64,
};

#define ZM_LONG_LEN_COUNT (sizeof(long_lens) / sizeof(long_lens[0]))

static unsigned long failures;
static uint64_t rng_state = 0x2545f4914f6cdd1du;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void report(const struct zm_hash_impl *impl, const char *what,
                   size_t len, size_t align, uint64_t seed, uint64_t got,
                   uint64_t want)
{
    if (++failures <= ZM_MAX_REPORTS) {
        fprintf(stderr,
                "FAIL %s: %s len %zu align %zu seed %#llx: "
                "got %016llx want %016llx\n",
                impl->name, what, len, align, (unsigned long long)seed,
                (unsigned long long)got, (unsigned long long)want);
    }
}

static void check_one_shot(const struct zm_hash_impl *impl,
                           const unsigned char *data, size_t len, size_t align,
                           uint64_t seed)
{
    const unsigned char *p = data + align;
    uint64_t want = XXH3_64bits_withSeed(p, len, seed);
    uint64_t got = impl->hash64(p, len, seed);

    if (got != want) {
        report(impl, "one-shot", len, align, seed, got, want);
    }
}

static void test_one_shot(const struct zm_hash_impl *impl,
                          const unsigned char *data)
{
    size_t len;
    size_t align;
    unsigned s;
    unsigned i;

    for (s = 0; s < ZM_SEED_COUNT; s++) {
        for (len = 0; len <= 1100; len++) {
            for (align = 0; align < 64; align += (len <= 300 ? 1 : 13)) {
                check_one_shot(impl, data, len, align, seeds[s]);
            }
        }
        for (i = 0; i < ZM_LONG_LEN_COUNT; i++) {
            check_one_shot(impl, data, long_lens[i], 0, seeds[s]);
            check_one_shot(impl, data, long_lens[i], 7, seeds[s]);
        }
    }
    for (i = 0; i < 2000; i++) {
        uint64_t seed = rng();

        len = rng() % 5000;
        check_one_shot(impl, data, len, rng() % 64, seed);
    }
    if (impl->hash64(NULL, 0, 42) != XXH3_64bits_withSeed(NULL, 0, 42)) {
        report(impl, "null", 0, 0, 42, 0, 0);
    }
}

/* Small cuts exercise the internal buffer, big ones whole blocks. */
static size_t random_chunk(size_t left)
{
    size_t n;

    switch (rng() % 4) {
    case 0:
        n = rng() % 17;
        break;
    case 1:
        n = rng() % 300;
        break;
    case 2:
        n = rng() % 5000;
        break;
    default:
        n = left;
        break;
    }
    return n < left ? n : left;
}

static void check_stream(const struct zm_hash_impl *impl, zm_hash_state *st,
                         const unsigned char *p, size_t len, uint64_t seed)
{
    uint64_t want = XXH3_64bits_withSeed(p, len, seed);
    size_t done = 0;
    uint64_t got;

    impl->reset(st, seed);
    while (done < len) {
        size_t n = random_chunk(len - done);

        impl->update(st, p + done, n);
        done += n;
        /* A digest midway must match the prefix and leave st usable. */
        if (rng() % 8 == 0) {
            uint64_t mid = impl->digest(st);
            uint64_t mid_want = XXH3_64bits_withSeed(p, done, seed);

            if (mid != mid_want) {
                report(impl, "mid-stream", done, 0, seed, mid, mid_want);
            }
        }
    }
    got = impl->digest(st);
    if (got != want) {
        report(impl, "stream", len, 0, seed, got, want);
    }
}

/* A state inside a struct, after a field that would misalign it. */
struct zm_hash_holder {
    char tag;
    zm_hash_state st;
};

static void test_stream(const struct zm_hash_impl *impl,
                        const unsigned char *data)
{
    struct zm_hash_holder h;
    zm_hash_state *heap;
    unsigned i;
    unsigned s;

    heap = aligned_alloc(64, sizeof(*heap));
    if (heap == NULL) {
        fprintf(stderr, "FAIL: out of memory\n");
        failures++;
        return;
    }
    /* Garbage in a fresh state must not leak into the hash. */
    memset(heap, 0xa5, sizeof(*heap));
    memset(&h, 0x5a, sizeof(h));
    for (i = 0; i < 1500; i++) {
        size_t len = rng() % (i % 10 == 0 ? 70000 : 3000);
        uint64_t seed = (i % 3 == 0) ? seeds[i % ZM_SEED_COUNT] : rng();

        check_stream(impl, (i & 1) ? heap : &h.st, data + rng() % 64, len,
                     seed);
    }
    /* Reused states, with the same seed again and with another one. */
    for (s = 0; s < 3 * ZM_SEED_COUNT; s++) {
        check_stream(impl, &h.st, data, 5000, seeds[s % ZM_SEED_COUNT]);
        check_stream(impl, &h.st, data + 1, 300, seeds[s / 3]);
    }
    /* Empty stream, and zero-length updates with a NULL pointer. */
    impl->reset(&h.st, 7);
    impl->update(&h.st, NULL, 0);
    if (impl->digest(&h.st) != XXH3_64bits_withSeed(NULL, 0, 7)) {
        report(impl, "empty stream", 0, 0, 7, impl->digest(&h.st), 0);
    }
    free(heap);
}

/* Data ending at a PROT_NONE page: xxhash must not read past the end. */
static void test_guard(const struct zm_hash_impl *impl)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t size = 4 * page;
    zm_hash_state st;
    unsigned char *map;
    unsigned char *end;
    size_t len;
    size_t i;

    map = mmap(NULL, size + page, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED || mprotect(map + size, page, PROT_NONE) != 0) {
        perror("mmap");
        failures++;
        return;
    }
    for (i = 0; i < size; i++) {
        map[i] = (unsigned char)rng();
    }
    end = map + size;
    for (len = 0; len <= size; len += (len < 1100 ? 1 : 509)) {
        uint64_t seed = seeds[len % ZM_SEED_COUNT];
        uint64_t want = XXH3_64bits_withSeed(end - len, len, seed);
        uint64_t got = impl->hash64(end - len, len, seed);

        if (got != want) {
            report(impl, "guard", len, 0, seed, got, want);
        }
        impl->reset(&st, seed);
        impl->update(&st, end - len, len);
        got = impl->digest(&st);
        if (got != want) {
            report(impl, "guard stream", len, 0, seed, got, want);
        }
    }
    munmap(map, size + page);
}

/* Each impl must return with the upper state clean, after every call. */
static void test_upper_state(const struct zm_hash_impl *impl,
                             const unsigned char *data)
{
    static const size_t lens[] = { 4096, 5000, 200, 100, 7 };
    zm_hash_state st;
    unsigned k;

    if (!upper_state_trackable()) {
        printf("upper YMM state check: cannot tell here, skipped\n");
        return;
    }
    for (k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        const char *dirty = NULL;
        uint64_t h;

        upper_state_clear();
        h = impl->hash64(data + 1, lens[k], 3);
        if (upper_state_dirty()) {
            dirty = "hash64";
        }
        upper_state_clear();
        impl->reset(&st, 3);
        if (dirty == NULL && upper_state_dirty()) {
            dirty = "reset";
        }
        upper_state_clear();
        impl->update(&st, data + 1, lens[k]);
        if (dirty == NULL && upper_state_dirty()) {
            dirty = "update";
        }
        upper_state_clear();
        if (impl->digest(&st) != h) {
            report(impl, "digest", lens[k], 1, 3, 0, h);
        }
        if (dirty == NULL && upper_state_dirty()) {
            dirty = "digest";
        }
        if (dirty != NULL) {
            fprintf(stderr,
                    "FAIL %s: %s, len %zu, leaves the upper YMM "
                    "state in use\n",
                    impl->name, dirty, lens[k]);
            failures++;
        }
    }
}

static void test_impl(const struct zm_hash_impl *impl,
                      const unsigned char *data)
{
    test_upper_state(impl, data);
    test_one_shot(impl, data);
    test_stream(impl, data);
    test_guard(impl);
}

int main(void)
{
    const char *chosen = zm_hash_impl_name();
    unsigned char *data;
    const char *best = NULL;
    unsigned tested = 0;
    unsigned i;

    data = malloc(ZM_DATA_SIZE);
    if (data == NULL) {
        return 1;
    }
    for (i = 0; i < ZM_DATA_SIZE; i++) {
        data[i] = (unsigned char)(rng() >> 24);
    }

    for (i = 0; i < zm_hash_impl_count; i++) {
        const struct zm_hash_impl *impl = &zm_hash_impls[i];

        if (!zm_cpu_has(impl->cpu_features)) {
            printf("impl %-8s not supported here, skipped\n", impl->name);
            continue;
        }
        if (best == NULL) {
            best = impl->name;
        }
        test_impl(impl, data);
        tested++;
        printf("impl %-8s tested\n", impl->name);
    }
    printf("dispatch chose %s\n", chosen);
    if (best == NULL || strcmp(best, chosen) != 0) {
        fprintf(stderr,
                "FAIL: dispatch chose \"%s\", not the best "
                "supported \"%s\"\n",
                chosen, best ? best : "(none)");
        failures++;
    }
    test_impl(&dispatch_impl, data);
    free(data);

    if (tested == 0) {
        return 77;
    }
    if (failures != 0) {
        fprintf(stderr, "%lu failures\n", failures);
        return 1;
    }
    printf("all passed\n");
    return 0;
}
