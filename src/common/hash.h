/*
 * hash.h - XXH3 64-bit hashing with run-time CPU dispatch
 *
 * Results equal libxxhash's XXH3_64bits_withSeed() on every CPU. The code
 * is xxhash's own, compiled once per vector extension (hash.c: SSE2 or
 * the target's default, hash_avx2.c, hash_avx512.c); the fastest one the
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
 * each hash*.c checks at compile time that it fits. Opaque, so that this
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
 * only. Call the others only when supported() returns true, and keep each
 * state with the implementation that reset it.
 */
struct zm_hash_impl {
    const char *name;
    uint64_t (*hash64)(const void *p, size_t len, uint64_t seed);
    void (*reset)(zm_hash_state *s, uint64_t seed);
    void (*update)(zm_hash_state *s, const void *p, size_t len);
    uint64_t (*digest)(const zm_hash_state *s);
    bool (*supported)(void);
};

extern const struct zm_hash_impl zm_hash_impls[];
extern const unsigned zm_hash_impl_count;

/* Defined in hash_avx2.c and hash_avx512.c; only hash.c calls these. */
#if defined(__x86_64__) || defined(__i386__)
uint64_t zm_hash64_avx2(const void *p, size_t len, uint64_t seed);
void zm_hash_reset_avx2(zm_hash_state *s, uint64_t seed);
void zm_hash_update_avx2(zm_hash_state *s, const void *p, size_t len);
uint64_t zm_hash_digest_avx2(const zm_hash_state *s);

uint64_t zm_hash64_avx512(const void *p, size_t len, uint64_t seed);
void zm_hash_reset_avx512(zm_hash_state *s, uint64_t seed);
void zm_hash_update_avx512(zm_hash_state *s, const void *p, size_t len);
uint64_t zm_hash_digest_avx512(const zm_hash_state *s);
#endif

#endif /* ZM_HASH_H */
