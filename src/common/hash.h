/*
 * hash.h - XXH3 64-bit hashing with run-time CPU dispatch
 *
 * Results equal libxxhash's XXH3_64bits_withSeed() on every CPU. The code
 * is xxhash's own, compiled once per vector extension (hash_variant.c:
 * SSE2 or the target's default, AVX2, AVX-512); the fastest one the
 * CPU supports is picked once, on the first call, and used by every
 * function below so that a streaming state never changes hands.
 */
#ifndef ZM_HASH_H
#define ZM_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Room for an XXH3_state_t (576 bytes, 64-byte aligned, in xxhash 0.8);
 * hash_variant.c checks at compile time that it fits. Opaque, so that this
 * header does not pull xxhash.h into every user.
 */
#define ZM_HASH_STATE_SIZE 576

/*
 * Caller-owned streaming state: on the stack or inside another struct.
 * On the heap it needs aligned_alloc(64, ...), as malloc() aligns less.
 */
typedef struct zm_hash_state {
    _Alignas(64) unsigned char opaque[ZM_HASH_STATE_SIZE];
} zm_hash_state;

/* XXH3_64bits_withSeed(p, len, seed). p may be NULL when len is 0. */
uint64_t zm_hash64(const void *p, size_t len, uint64_t seed);

/*
 * Streaming: reset, any number of updates, then digest (which may be
 * called again and leaves the state usable). The result equals
 * zm_hash64() over the concatenated updates with the same seed. One state
 * must not be used by two threads at once; separate states may.
 */
void zm_hash_reset(zm_hash_state *s, uint64_t seed);
void zm_hash_update(zm_hash_state *s, const void *p, size_t len);
uint64_t zm_hash_digest(const zm_hash_state *s);

/* Name of the implementation in use: "avx512", "avx2", "sse2", ... */
const char *zm_hash_impl_name(void);

/*
 * Every implementation built in, best first, for tests and benchmarks
 * only. Call the others only when zm_cpu_has(cpu_features) (cpu.h), and
 * keep each state with the implementation that reset it.
 */
struct zm_hash_impl {
    const char *name;
    uint64_t (*hash64)(const void *p, size_t len, uint64_t seed);
    void (*reset)(zm_hash_state *s, uint64_t seed);
    void (*update)(zm_hash_state *s, const void *p, size_t len);
    uint64_t (*digest)(const zm_hash_state *s);
    unsigned cpu_features; /* the ZM_CPU_* bits it needs */
};

extern const struct zm_hash_impl zm_hash_impls[];
extern const unsigned zm_hash_impl_count;

/* hash_variant.c, compiled per extension; only hash.c calls these. */
#define ZM_HASH_DECLARE(suffix)                                                \
    uint64_t zm_hash64_##suffix(const void *p, size_t len, uint64_t seed);     \
    void zm_hash_reset_##suffix(zm_hash_state *s, uint64_t seed);              \
    void zm_hash_update_##suffix(zm_hash_state *s, const void *p, size_t len); \
    uint64_t zm_hash_digest_##suffix(const zm_hash_state *s);
ZM_HASH_DECLARE(base)
#if defined(__x86_64__) || defined(__i386__)
ZM_HASH_DECLARE(avx2)
ZM_HASH_DECLARE(avx512)
#endif

#endif /* ZM_HASH_H */
