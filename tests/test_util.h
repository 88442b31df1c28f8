/*
 * test_util.h - the little every test needs
 *
 * Exit codes follow Meson and liburing: 0 pass, 1 fail, 77 skip.
 */
#ifndef ZM_TEST_UTIL_H
#define ZM_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define T_EXIT_PASS 0
#define T_EXIT_FAIL 1
#define T_EXIT_SKIP 77

static int t_failures;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                  \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
            t_failures++;                                                    \
        }                                                                    \
    } while (0)

static inline int t_exit(void)
{
    if (t_failures) {
        fprintf(stderr, "%d check(s) failed\n", t_failures);
        return T_EXIT_FAIL;
    }
    return T_EXIT_PASS;
}

/* splitmix64: a seeded, deterministic source of test data. */
static inline uint64_t t_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void t_fill_random(void *buf, size_t len, uint64_t seed)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        if (i % 8 == 0) {
            seed = t_rand(&seed);
        }
        p[i] = (unsigned char)(seed >> (8 * (i % 8)));
    }
}

/*
 * len bytes whose end touches an inaccessible page (and whose start follows
 * one), so that a read or write past either end faults at once, as in
 * libdeflate's alloc_guarded_buffer().
 */
struct t_guarded {
    unsigned char *data;
    void *map;
    size_t map_len;
};

static inline struct t_guarded t_guarded_alloc(size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (len + pg - 1) / pg * pg;
    struct t_guarded g = { 0 };

    g.map_len = body + 2 * pg;
    g.map =
        mmap(NULL, g.map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g.map == MAP_FAILED) {
        perror("mmap");
        exit(T_EXIT_FAIL);
    }
    unsigned char *start = (unsigned char *)g.map + pg;
    if (mprotect(start, body, PROT_READ | PROT_WRITE) != 0) {
        perror("mprotect");
        exit(T_EXIT_FAIL);
    }
    g.data = start + (body - len);
    return g;
}

static inline void t_guarded_free(struct t_guarded *g)
{
    if (g->map) {
        munmap(g->map, g->map_len);
    }
    g->map = NULL;
}

#endif /* ZM_TEST_UTIL_H */
