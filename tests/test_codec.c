/*
 * test_codec.c - every codec through its ops table
 *
 * Contiguous and scattered input give streams that decode to the input;
 * output that would not fit is refused with -ENOBUFS; damaged streams and
 * wrong sizes are refused with -EBADMSG without writing past the output;
 * ISA-L's raw deflate and zlib's inflate each other's streams.
 */
#include <errno.h>
#include <string.h>

#include "codec/codec.h"
#include "test_util.h"
#include "tools/datagen.h"

#define PAGE 4096
#define PAGES 32
#define DATA_SIZE (PAGES * PAGE)

static unsigned char original[DATA_SIZE];
static unsigned char noise[DATA_SIZE];
static unsigned char compressed[2 * DATA_SIZE];

/* The pages of original, scattered in a larger buffer in reverse order. */
static unsigned char scattered[2 * DATA_SIZE];

static void scatter(struct iovec *iov)
{
    for (int i = 0; i < PAGES; i++) {
        unsigned char *slot = scattered + (size_t)(PAGES - 1 - i) * 2 * PAGE;
        memcpy(slot, original + (size_t)i * PAGE, PAGE);
        iov[i] = (struct iovec){ slot, PAGE };
    }
}

static void check_stream(const struct zm_codec_ops *c, void *state,
                         const char *what, ssize_t n)
{
    struct t_guarded out = t_guarded_alloc(DATA_SIZE);

    CHECK(n > 0, "%s %s: compress returned %zd", c->name, what, n);
    if (n <= 0) {
        t_guarded_free(&out);
        return;
    }
    int ret = c->decompress(state, compressed, (size_t)n, out.data, DATA_SIZE);
    CHECK(ret == 0, "%s %s: decompress returned %d", c->name, what, ret);
    CHECK(memcmp(out.data, original, DATA_SIZE) == 0,
          "%s %s: round trip differs", c->name, what);

    /* The guard page right after the buffer catches any overrun. */
    ret = c->decompress(state, compressed, (size_t)n - 1, out.data, DATA_SIZE);
    CHECK(ret == -EBADMSG, "%s %s: truncated stream gave %d", c->name, what,
          ret);
    ret = c->decompress(state, compressed, (size_t)n, out.data + 1,
                        DATA_SIZE - 1);
    CHECK(ret == -EBADMSG, "%s %s: short output gave %d", c->name, what, ret);
    t_guarded_free(&out);
}

static void test_codec_level(const struct zm_codec_ops *c, int level)
{
    void *state = NULL;
    struct iovec whole = { original, DATA_SIZE };
    struct iovec pages[PAGES];
    char what[64];

    CHECK(c->init(&state, level, ZM_CODEC_COMPRESS | ZM_CODEC_DECOMPRESS) == 0,
          "%s level %d: init failed", c->name, level);

    snprintf(what, sizeof(what), "level %d contiguous", level);
    check_stream(c, state, what,
                 c->compress(state, &whole, 1, DATA_SIZE, compressed,
                             sizeof(compressed)));

    scatter(pages);
    snprintf(what, sizeof(what), "level %d scattered", level);
    check_stream(c, state, what,
                 c->compress(state, pages, PAGES, DATA_SIZE, compressed,
                             sizeof(compressed)));

    /* Output that cannot fit must be refused, not truncated. */
    ssize_t n = c->compress(state, &whole, 1, DATA_SIZE, compressed, 64);
    CHECK(n == -ENOBUFS, "%s level %d: tiny output gave %zd", c->name, level,
          n);
    n = c->compress(state, pages, PAGES, DATA_SIZE, compressed, 64);
    CHECK(n == -ENOBUFS, "%s level %d: tiny scattered output gave %zd", c->name,
          level, n);
    /* Random data does not shrink: no room for it in its own size. */
    struct iovec random_data = { noise, DATA_SIZE };
    n = c->compress(state, &random_data, 1, DATA_SIZE, compressed,
                    DATA_SIZE - 1);
    CHECK(n == -ENOBUFS, "%s level %d: random data gave %zd", c->name, level,
          n);

    /* A context that failed a stream must still work for the next one. */
    snprintf(what, sizeof(what), "level %d after ENOBUFS", level);
    check_stream(c, state, what,
                 c->compress(state, pages, PAGES, DATA_SIZE, compressed,
                             sizeof(compressed)));
    c->fini(state);
}

/* Each raw deflate stream must inflate with the other library. */
static void test_deflate_interop(void)
{
    const struct zm_codec_ops *isal = zm_codec_get(ZM_CODEC_DEFLATE);
    const struct zm_codec_ops *zlib = zm_codec_get(ZM_CODEC_ZLIB);
    struct iovec whole = { original, DATA_SIZE };
    struct iovec pages[PAGES];
    void *a, *b;

    if (!isal || !zlib) {
        printf("deflate interop: skipped (needs ISA-L and zlib)\n");
        return;
    }
    scatter(pages);
    for (int level = isal->min_level; level <= isal->max_level; level++) {
        CHECK(isal->init(&a, level, ZM_CODEC_COMPRESS) == 0, "isal init");
        CHECK(zlib->init(&b, 1, ZM_CODEC_COMPRESS | ZM_CODEC_DECOMPRESS) == 0,
              "zlib init");
        for (int sg = 0; sg < 2; sg++) {
            ssize_t n = sg ? isal->compress(a, pages, PAGES, DATA_SIZE,
                                            compressed, sizeof(compressed))
                           : isal->compress(a, &whole, 1, DATA_SIZE, compressed,
                                            sizeof(compressed));
            CHECK(n > 0, "isal level %d: %zd", level, n);
            check_stream(zlib, b,
                         sg ? "inflating ISA-L scattered"
                            : "inflating ISA-L contiguous",
                         n);
        }
        isal->fini(a);
        zlib->fini(b);
    }
    CHECK(zlib->init(&a, 9, ZM_CODEC_COMPRESS) == 0, "zlib init");
    CHECK(isal->init(&b, 1, ZM_CODEC_DECOMPRESS) == 0, "isal init");
    check_stream(isal, b, "inflating zlib level 9",
                 zlib->compress(a, &whole, 1, DATA_SIZE, compressed,
                                sizeof(compressed)));
    zlib->fini(a);
    isal->fini(b);
}

static void test_names_and_levels(void)
{
    static const char *const names[] = { "none", "lz4", "zstd", "zlib",
                                         "deflate" };
    for (int id = 0; id < ZM_CODEC_COUNT; id++) {
        int ret = zm_codec_by_name(names[id]);
        CHECK(ret == id || (ret == -EOPNOTSUPP && !zm_codec_available(id)),
              "by_name(%s) = %d", names[id], ret);
        CHECK(strcmp(zm_codec_name(id), names[id]) == 0, "name(%d)", id);
    }
    CHECK(zm_codec_by_name("brotli") == -EINVAL, "unknown name");
    CHECK(strstr(zm_errmsg(), "brotli") != NULL, "message: %s", zm_errmsg());
    CHECK(zm_codec_name(ZM_CODEC_COUNT) == NULL, "name past the end");
    CHECK(zm_codec_levels(99, NULL, NULL, NULL) == -EINVAL, "levels(99)");

    const struct zm_codec_ops *zstd = zm_codec_get(ZM_CODEC_ZSTD);
    if (zstd) {
        int min, max, def;
        CHECK(zm_codec_levels(ZM_CODEC_ZSTD, &min, &max, &def) == 0, "levels");
        CHECK(min == 1 && max == 19 && def == 1, "zstd %d..%d (%d)", min, max,
              def);
        CHECK(zm_codec_check_level(zstd, 20) == -ERANGE, "zstd 20");
        CHECK(strstr(zm_errmsg(), "1..19") != NULL,
              "message names the "
              "range: %s",
              zm_errmsg());
        CHECK(zm_codec_check_level(zstd, 0) == -ERANGE, "zstd 0");
    }
}

int main(void)
{
    /* Guest-like pages, zero pages left out: those never reach a codec. */
    static unsigned char pool[64 * DATA_SIZE];
    static const unsigned char zero_page[PAGE];
    int taken = 0;

    zm_datagen_fill(pool, sizeof(pool), 0, 42);
    for (size_t off = 0; off < sizeof(pool) && taken < PAGES; off += PAGE) {
        if (memcmp(pool + off, zero_page, PAGE) != 0) {
            memcpy(original + (size_t)taken++ * PAGE, pool + off, PAGE);
        }
    }
    CHECK(taken == PAGES, "generated data has only %d non-zero pages", taken);
    t_fill_random(noise, DATA_SIZE, 7);
    test_names_and_levels();
    for (int id = 0; id < ZM_CODEC_COUNT; id++) {
        const struct zm_codec_ops *c = zm_codec_get(id);
        if (!c) {
            printf("%s: not built, skipped\n", zm_codec_name(id));
            continue;
        }
        test_codec_level(c, c->min_level);
        test_codec_level(c, c->default_level);
        test_codec_level(c, c->max_level);
        printf("%s: levels %d, %d, %d checked\n", c->name, c->min_level,
               c->default_level, c->max_level);
    }
    test_deflate_interop();
    return t_exit();
}
