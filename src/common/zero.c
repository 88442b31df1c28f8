/*
 * zero.c - zero-page detection: scalar, SSE2, AVX2 and AVX-512 versions
 *
 * The file builds with plain -O2: each vector version carries its own
 * target attribute and runs only when zm_cpu_has() (cpu.h) says the CPU,
 * and the OS for the wider registers, can run it.
 *
 * Every version tests its first vector alone, because a non-zero page
 * nearly always shows it in the first bytes; then it ORs four aligned
 * vectors per iteration and tests once, since zero pages must be read to
 * the end and DRAM, not the core, is then the limit. The last vector is an
 * unaligned load that ends exactly at p + len, so no read leaves the
 * buffer; lengths below one vector take the small paths.
 */
#include "zero.h"

#include "cpu.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ZM_ZERO_X86 1
#endif

/* Per-function instruction sets: the file builds without -m flags. */
#define ZM_TARGET_SSE2 __attribute__((target("sse2")))
#define ZM_TARGET_AVX __attribute__((target("avx")))
#define ZM_TARGET_AVX2 __attribute__((target("avx2")))
#define ZM_TARGET_AVX512 __attribute__((target("avx512f,avx512bw")))

/* Inlined even at -O0, so debug and sanitizer builds stay quick. */
#define ZM_ZERO_INLINE static inline __attribute__((always_inline))

ZM_ZERO_INLINE uint64_t zm_zero_load64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

ZM_ZERO_INLINE uint32_t zm_zero_load32(const unsigned char *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

/* len < 16: two overlapping loads cover every byte without a loop. */
ZM_ZERO_INLINE bool zm_is_zero_small(const unsigned char *s, size_t len)
{
    if (len >= 8) {
        return (zm_zero_load64(s) | zm_zero_load64(s + len - 8)) == 0;
    }
    if (len >= 4) {
        return (zm_zero_load32(s) | zm_zero_load32(s + len - 4)) == 0;
    }
    if (len == 0) {
        return true;
    }
    /* First, middle and last cover 1 to 3 bytes. */
    return (s[0] | s[len / 2] | s[len - 1]) == 0;
}

static bool zm_is_zero_scalar(const void *p, size_t len)
{
    const unsigned char *s = p;
    const unsigned char *q;
    const unsigned char *end;

    if (len < 16) {
        return zm_is_zero_small(s, len);
    }
    if ((zm_zero_load64(s) | zm_zero_load64(s + 8)) != 0) {
        return false;
    }
    end = s + len;
    for (q = s + 16; end - q >= 32; q += 32) {
        if ((zm_zero_load64(q) | zm_zero_load64(q + 8) |
             zm_zero_load64(q + 16) | zm_zero_load64(q + 24)) != 0) {
            return false;
        }
    }
    if (end - q > 16 && (zm_zero_load64(q) | zm_zero_load64(q + 8)) != 0) {
        return false;
    }
    return (zm_zero_load64(end - 16) | zm_zero_load64(end - 8)) == 0;
}

#ifdef ZM_ZERO_X86

/*
 * Loads pass (const void *) to the intrinsics: a cast straight to a vector
 * pointer would claim an alignment unaligned loads do not have.
 */

/*
 * Skip from s to the next multiple of align; the bytes skipped were
 * covered by the first unaligned load, which is at least align long.
 */
ZM_ZERO_INLINE const unsigned char *zm_zero_align_up(const unsigned char *s,
                                                     uintptr_t align)
{
    return s + ((-(uintptr_t)s) & (align - 1));
}

ZM_TARGET_SSE2
ZM_ZERO_INLINE bool zm_sse2_nonzero(__m128i v)
{
    return _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128())) != 0xffff;
}

ZM_TARGET_SSE2
static bool zm_is_zero_sse2(const void *p, size_t len)
{
    const unsigned char *s = p;
    const unsigned char *q;
    const unsigned char *end;

    if (len < 16) {
        return zm_is_zero_small(s, len);
    }
    if (zm_sse2_nonzero(_mm_loadu_si128((const void *)s))) {
        return false;
    }
    end = s + len;
    for (q = zm_zero_align_up(s, 16); end - q >= 64; q += 64) {
        __m128i a = _mm_load_si128((const void *)q);
        __m128i b = _mm_load_si128((const void *)(q + 16));
        __m128i c = _mm_load_si128((const void *)(q + 32));
        __m128i d = _mm_load_si128((const void *)(q + 48));

        if (zm_sse2_nonzero(
                _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)))) {
            return false;
        }
    }
    for (; end - q >= 16; q += 16) {
        if (zm_sse2_nonzero(_mm_load_si128((const void *)q))) {
            return false;
        }
    }
    return q == end ||
           !zm_sse2_nonzero(_mm_loadu_si128((const void *)(end - 16)));
}

/*
 * The AVX versions end with this. GCC 12 does not always clear the upper
 * vector halves itself (at -O0 and -O1, where the helpers below are
 * calls, it did not), and dirty upper halves make the caller's SSE code
 * run several times slower.
 */
ZM_TARGET_AVX
ZM_ZERO_INLINE void zm_zero_leave_avx(void)
{
    _mm256_zeroupper();
}

ZM_TARGET_AVX2
ZM_ZERO_INLINE bool zm_avx2_nonzero(__m256i v)
{
    return !_mm256_testz_si256(v, v);
}

ZM_TARGET_AVX2
static bool zm_is_zero_avx2_body(const void *p, size_t len)
{
    const unsigned char *s = p;
    const unsigned char *q;
    const unsigned char *end;

    if (len < 32) {
        if (len >= 16) {
            __m128i v =
                _mm_or_si128(_mm_loadu_si128((const void *)s),
                             _mm_loadu_si128((const void *)(s + len - 16)));

            return _mm_testz_si128(v, v);
        }
        return zm_is_zero_small(s, len);
    }
    if (zm_avx2_nonzero(_mm256_loadu_si256((const void *)s))) {
        return false;
    }
    end = s + len;
    for (q = zm_zero_align_up(s, 32); end - q >= 128; q += 128) {
        __m256i a = _mm256_load_si256((const void *)q);
        __m256i b = _mm256_load_si256((const void *)(q + 32));
        __m256i c = _mm256_load_si256((const void *)(q + 64));
        __m256i d = _mm256_load_si256((const void *)(q + 96));

        if (zm_avx2_nonzero(_mm256_or_si256(_mm256_or_si256(a, b),
                                            _mm256_or_si256(c, d)))) {
            return false;
        }
    }
    for (; end - q >= 32; q += 32) {
        if (zm_avx2_nonzero(_mm256_load_si256((const void *)q))) {
            return false;
        }
    }
    return q == end ||
           !zm_avx2_nonzero(_mm256_loadu_si256((const void *)(end - 32)));
}

ZM_TARGET_AVX2
static bool zm_is_zero_avx2(const void *p, size_t len)
{
    bool zero = zm_is_zero_avx2_body(p, len);

    zm_zero_leave_avx();
    return zero;
}

ZM_TARGET_AVX512
ZM_ZERO_INLINE bool zm_avx512_nonzero(__m512i v)
{
    return _mm512_test_epi64_mask(v, v) != 0;
}

ZM_TARGET_AVX512
static bool zm_is_zero_avx512_body(const void *p, size_t len)
{
    const unsigned char *s = p;
    const unsigned char *q;
    const unsigned char *end;

    if (len < 64) {
        if (len == 0) {
            return true;
        }
        /* Masked-off bytes are never read, nor can they fault. */
        return !zm_avx512_nonzero(
            _mm512_maskz_loadu_epi8(((uint64_t)1 << len) - 1, s));
    }
    if (zm_avx512_nonzero(_mm512_loadu_si512(s))) {
        return false;
    }
    end = s + len;
    for (q = zm_zero_align_up(s, 64); end - q >= 256; q += 256) {
        __m512i a = _mm512_load_si512(q);
        __m512i b = _mm512_load_si512(q + 64);
        __m512i c = _mm512_load_si512(q + 128);
        __m512i d = _mm512_load_si512(q + 192);

        if (zm_avx512_nonzero(_mm512_or_si512(_mm512_or_si512(a, b),
                                              _mm512_or_si512(c, d)))) {
            return false;
        }
    }
    for (; end - q >= 64; q += 64) {
        if (zm_avx512_nonzero(_mm512_load_si512(q))) {
            return false;
        }
    }
    return q == end || !zm_avx512_nonzero(_mm512_loadu_si512(end - 64));
}

ZM_TARGET_AVX512
static bool zm_is_zero_avx512(const void *p, size_t len)
{
    bool zero = zm_is_zero_avx512_body(p, len);

    zm_zero_leave_avx();
    return zero;
}

#endif /* ZM_ZERO_X86 */

/* Best first: the dispatcher takes the first one supported. */
const struct zm_zero_impl zm_zero_impls[] = {
#ifdef ZM_ZERO_X86
    { .name = "avx512",
      .is_zero = zm_is_zero_avx512,
      .cpu_features = ZM_CPU_AVX512 },
    { .name = "avx2", .is_zero = zm_is_zero_avx2, .cpu_features = ZM_CPU_AVX2 },
    { .name = "sse2", .is_zero = zm_is_zero_sse2, .cpu_features = ZM_CPU_SSE2 },
#endif
    { .name = "scalar", .is_zero = zm_is_zero_scalar, .cpu_features = 0 },
};

const unsigned zm_zero_impl_count =
    sizeof(zm_zero_impls) / sizeof(zm_zero_impls[0]);

static _Atomic(const void *) zm_zero_chosen;

static const struct zm_zero_impl *zm_zero_pick(void)
{
    return zm_cpu_pick(&zm_zero_chosen, zm_zero_impls, sizeof(zm_zero_impls[0]),
                       zm_zero_impl_count,
                       offsetof(struct zm_zero_impl, cpu_features));
}

bool zm_is_zero(const void *p, size_t len)
{
    /* Most pages are not zero and show it here, with no indirect call. */
    if (len >= 8 && zm_zero_load64(p) != 0) {
        return false;
    }
    return zm_zero_pick()->is_zero(p, len);
}

const char *zm_zero_impl_name(void)
{
    return zm_zero_pick()->name;
}
