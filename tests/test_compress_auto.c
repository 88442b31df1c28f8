/*
 * test_compress_auto.c - --compression auto's model and choice
 *
 * The pure part of src/migrate/compress_auto.c: what each method would
 * deliver under given limits, and which one the controller moves to, with
 * figures like those measured on a 2-core machine (CPU ns per byte, wire
 * bytes per byte): the fast link takes none, 1 Gbit/s zstd -1, 100 Mbit/s
 * the highest level the cores afford, a starved host lz4; a method barely
 * better does not make it move; a receiver that decodes some methods
 * faster than others is judged per method.  Then the controller itself,
 * fed batches: it accounts them, and keeps its timeline.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "migrate/compress_auto.h"
#include "test_util.h"

enum { NONE, LZ4, DEFLATE1, ZSTD1, ZSTD3, ZSTD9, METHODS };

static const char *names[METHODS] = { "none",   "lz4",    "deflate:1",
                                      "zstd:1", "zstd:3", "zstd:9" };

/* Figures like those measured on generated guest data (doc/results/). */
static void methods_init(struct zm_auto_method m[METHODS])
{
    static const double cpu_ns[METHODS] = { 0.1, 1.6, 2.3, 2.9, 4.9, 19 };
    static const double wire[METHODS] = { 1.0, 0.44, 0.35, 0.33, 0.29, 0.25 };

    for (int i = 0; i < METHODS; i++) {
        m[i] = (struct zm_auto_method){ .cpu_per_byte = cpu_ns[i] * 1e-9,
                                        .wire_per_byte = wire[i],
                                        .samples = 10 };
    }
}

static bool near(double a, double b)
{
    return fabs(a - b) <= 1e-9 * fabs(b);
}

static void test_predict(void)
{
    struct zm_auto_method m = { .cpu_per_byte = 2e-9, .wire_per_byte = 0.5 };
    struct zm_auto_limits lim = { .cores = 2, .link = 1e8 };

    /* 2 cores / 2 ns = 1e9 B/s by CPU; 1e8 / 0.5 = 2e8 B/s by link. */
    CHECK(near(zm_auto_predict(&m, &lim), 2e8), "link-bound: %g",
          zm_auto_predict(&m, &lim));
    /* Unknown link: the CPU alone, 1e9. */
    lim.link = 0;
    CHECK(near(zm_auto_predict(&m, &lim), 1e9), "CPU-bound: %g",
          zm_auto_predict(&m, &lim));
    /* Sending costs too: 2 ns + 0.5 * 2 ns = 3 ns a byte, 2 / 3e-9. */
    lim.send_cpu_per_byte = 2e-9;
    CHECK(near(zm_auto_predict(&m, &lim), 2 / 3e-9), "with send cost: %g",
          zm_auto_predict(&m, &lim));
    /* A method's own link counts only when the link is per method. */
    m.link = 5e7;
    lim.link = 1e8;
    lim.send_cpu_per_byte = 0;
    CHECK(near(zm_auto_predict(&m, &lim), 2e8), "shared link: %g",
          zm_auto_predict(&m, &lim));
    lim.per_method = true;
    CHECK(near(zm_auto_predict(&m, &lim), 1e8), "own link: %g",
          zm_auto_predict(&m, &lim));
}

static void expect_choice(const char *what, struct zm_auto_method *m,
                          unsigned current, const struct zm_auto_limits *lim,
                          unsigned want)
{
    unsigned got = zm_auto_choose(m, METHODS, current, lim);
    CHECK(got == want, "%s: chose %s, want %s", what, names[got], names[want]);
}

static void test_choose(void)
{
    struct zm_auto_method m[METHODS];
    struct zm_auto_limits lim = { .cores = 1.6, .send_cpu_per_byte = 0.2e-9 };

    methods_init(m);
    /* The link never limited: the cheapest CPU wins. */
    expect_choice("unknown link", m, LZ4, &lim, NONE);
    /* 10 Gbit/s: none fills it (1.25e9 B/s); lz4 stops at 1e9 by CPU. */
    lim.link = 1.25e9;
    expect_choice("10 Gbit/s", m, LZ4, &lim, NONE);
    /* 1 Gbit/s: zstd -1 reaches 1.25e8 / 0.33 = 379 MB/s of guest pages,
     * lz4 only 284, zstd -3 stops at 1.6 / 4.96 ns = 323 by CPU. */
    lim.link = 1.25e8;
    expect_choice("1 Gbit/s", m, NONE, &lim, ZSTD1);
    /* 100 Mbit/s: zstd -9 gives 50 MB/s, under its 84 MB/s of CPU. */
    lim.link = 1.25e7;
    expect_choice("100 Mbit/s", m, ZSTD1, &lim, ZSTD9);
    /* Another process took most of the cores: 0.4 of one left.  At
     * 1 Gbit/s zstd -1 now stops at 138 MB/s by CPU, lz4 at 226. */
    lim.link = 1.25e8;
    lim.cores = 0.4;
    expect_choice("starved, 1 Gbit/s", m, ZSTD1, &lim, LZ4);

    /* Hysteresis: deflate 3% above lz4 does not move it; 20% does. */
    lim = (struct zm_auto_limits){ .cores = 1, .link = 0 };
    methods_init(m);
    m[NONE].samples = m[ZSTD1].samples = m[ZSTD3].samples = 0;
    m[ZSTD9].samples = 0;
    m[DEFLATE1].cpu_per_byte = m[LZ4].cpu_per_byte / 1.03;
    expect_choice("3% better", m, LZ4, &lim, LZ4);
    m[DEFLATE1].cpu_per_byte = m[LZ4].cpu_per_byte / 1.2;
    expect_choice("20% better", m, LZ4, &lim, DEFLATE1);
    /* A method never measured is not chosen, however cheap it looks. */
    m[ZSTD1].cpu_per_byte = 1e-12;
    expect_choice("unmeasured", m, LZ4, &lim, DEFLATE1);

    /*
     * A receiver on the same host decodes none at 2.4 GB/s and lz4 at
     * 390 MB/s of wire: with the link per method, none wins; taken as one
     * link of 390 MB/s, lz4 would.
     */
    methods_init(m);
    lim = (struct zm_auto_limits){ .cores = 1.6, .link = 3.9e8 };
    m[NONE].link = 2.4e9;
    m[LZ4].link = 3.9e8;
    expect_choice("one link", m, LZ4, &lim, LZ4);
    lim.per_method = true;
    expect_choice("link per method", m, LZ4, &lim, NONE);
}

/* The controller, fed batches by hand: accounting and reports. */
static void test_controller(void)
{
    struct zm_auto a;
    uint32_t all = 0;

    for (int id = 0; id < ZM_CODEC_COUNT; id++) {
        all |= 1u << id;
    }
    /* A destination without none is refused: nothing could go raw. */
    CHECK(zm_auto_init(&a, 1u << ZM_CODEC_LZ4, 2, false, 0, NULL, NULL) ==
              -EPROTO,
          "no none accepted");
    /* Only none: auto has nothing to choose, and chooses none. */
    CHECK(zm_auto_init(&a, 1u << ZM_CODEC_NONE, 2, false, 0, NULL, NULL) == 0,
          "none only: %s", zm_errmsg());
    CHECK(a.n == 1 && atomic_load(&a.current) == 0, "none only: %u methods",
          a.n);
    zm_auto_fini(&a);

    CHECK(zm_auto_init(&a, all, 2, false, 0, NULL, NULL) == 0, "init: %s",
          zm_errmsg());
    CHECK(a.n >= 2 && a.m[0].codec == ZM_CODEC_NONE, "%u methods", a.n);
    struct zm_encoder_options eo = { .sizeof_options = sizeof(eo) };
    zm_encoder *enc;
    CHECK(zm_encoder_new(&eo, &enc) == 0, "encoder");
    uint64_t raw = 0;
    unsigned sampled = 0;
    for (int i = 0; i < 200; i++) {
        int sample;
        unsigned method = zm_auto_begin(&a, enc, &sample);
        int level;
        int codec = zm_encoder_codec(enc, &level);
        CHECK(method < a.n && codec == a.m[method].codec &&
                  level == a.m[method].level,
              "batch %d: method %u is %d:%d, the encoder has %d:%d", i, method,
              a.m[method].codec, a.m[method].level, codec, level);
        CHECK(sample < (int)a.n && sample != (int)method,
              "batch %d: sample %d of method %u", i, sample, method);
        sampled += sample >= 0;
        struct zm_auto_batch b = { .method = method,
                                   .raw_bytes = 1 << 19,
                                   .wire_bytes = 1 << 18,
                                   .encode_cpu = 1e-4,
                                   .thread_cpu = 1e-4,
                                   .busy = 2e-4 };
        zm_auto_end(&a, &b);
        raw += b.raw_bytes;
    }
    /* Every other method is measured once early on. */
    CHECK(sampled >= a.n - 1, "%u samples of %u other methods", sampled,
          a.n - 1);
    struct zm_auto_method_info info[ZM_AUTO_MAX_METHODS] = {
        { .sizeof_info = sizeof(info[0]) }
    };
    unsigned n = zm_auto_methods(&a, info, ZM_AUTO_MAX_METHODS);
    uint64_t sum = 0;
    for (unsigned i = 0; i < n; i++) {
        sum += info[i].raw_bytes;
        CHECK(info[i].sizeof_info == sizeof(info[0]), "stride kept");
    }
    CHECK(n == a.n && sum == raw, "%u methods, %llu of %llu bytes", n,
          (unsigned long long)sum, (unsigned long long)raw);
    /* No further than cap. */
    memset(info, 0xa5, sizeof(info));
    info[0].sizeof_info = sizeof(info[0]);
    CHECK(zm_auto_methods(&a, info, 2) == a.n &&
              info[1].codec == a.m[1].codec &&
              info[2].sizeof_info == (size_t)0xa5a5a5a5a5a5a5a5ull,
          "cap 2: the third was written");
    zm_encoder_free(enc);
    zm_auto_fini(&a);
}

int main(void)
{
    test_predict();
    test_choose();
    test_controller();
    return t_exit();
}
