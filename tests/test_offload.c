/*
 * test_offload.c - compression offload and QZFS's fallback rules
 *
 * Every rule on the emulated backend, driven through the offloader a
 * channel uses: busy -> software; a failed batch -> redone in software and
 * the device out of service, back after the back-off; a hung batch ->
 * redone after the timeout; a lost device -> software for good; small
 * batches -> software; a backend's wrong packet -> redone.  Every packet,
 * whoever made it, decodes with the ordinary decoder to the batch's pages.
 * Then whole migrations with a failing device complete and verify.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "common/time.h"
#include "offload/offload.h"
#include "test_util.h"
#include "tools/datagen.h"
#include "zmigrate.h"

#define PAGE 4096u
#define BATCH 32u
#define PAGES 1024u

static unsigned char ram[PAGES * PAGE] __attribute__((aligned(4096)));
static unsigned char dest[PAGES * PAGE] __attribute__((aligned(4096)));

struct rig {
    struct zm_offload *off;
    zm_encoder *sw;
    zm_decoder *dec;
    struct zm_offloader *o;
    unsigned next_page;
};

static int rig_open(struct rig *r, const struct zm_offload_ops *ops,
                    const char *args)
{
    struct zm_encoder_options eo = { .sizeof_options = sizeof(eo),
                                     .codec = ZM_CODEC_LZ4,
                                     .level = ZM_LEVEL_DEFAULT,
                                     .max_pages = BATCH };
    struct zm_region_map map = { dest, sizeof(dest) };
    struct zm_decoder_options dopts = { .sizeof_options = sizeof(dopts),
                                        .max_pages = BATCH,
                                        .regions = &map,
                                        .region_count = 1 };
    int ret;

    memset(r, 0, sizeof(*r));
    if (!zm_codec_available(ZM_CODEC_LZ4)) {
        eo.codec = ZM_CODEC_NONE;
    }
    if ((ret = zm_offload_open(ops, args, PAGE, &r->off)) < 0) {
        return ret;
    }
    CHECK(zm_encoder_new(&eo, &r->sw) == 0, "encoder: %s", zm_errmsg());
    CHECK(zm_decoder_new(&dopts, &r->dec) == 0, "decoder: %s", zm_errmsg());
    ret = zm_offloader_new(r->off, r->sw, 4, BATCH, &r->o);
    CHECK(ret == 0, "offloader: %s", zm_errmsg());
    return ret;
}

static void rig_close(struct rig *r)
{
    zm_offloader_free(r->o);
    zm_offload_close(r->off);
    zm_encoder_free(r->sw);
    zm_decoder_free(r->dec);
}

/* Submits the next batch of count pages; returns the submit's answer. */
static int submit(struct rig *r, struct zm_offload_slot *s, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        unsigned page = (r->next_page + i) % PAGES;
        s->refs[i] = (struct zm_page_ref){ page, ram + (size_t)page * PAGE };
    }
    r->next_page += count;
    return zm_offloader_submit(r->o, s, 0, count, ZM_ENCODE_STABLE);
}

/* The slot's packet decodes to its batch's pages; the slot goes back. */
static void check_packet(struct rig *r, struct zm_offload_slot *s,
                         const char *what)
{
    struct zm_packet_info info = { .sizeof_info = sizeof(info) };
    int ret = zm_decode(r->dec, s->packet, (size_t)s->len, &info);

    CHECK(ret == 0, "%s: decode: %s", what, zm_errmsg());
    CHECK(info.pages == s->job.count, "%s: %u pages, %u sent", what, info.pages,
          s->job.count);
    for (unsigned i = 0; ret == 0 && i < s->job.count; i++) {
        size_t off = (size_t)s->refs[i].index * PAGE;
        if (memcmp(dest + off, ram + off, PAGE) != 0) {
            CHECK(0, "%s: page %llu differs", what,
                  (unsigned long long)s->refs[i].index);
            break;
        }
    }
    zm_offloader_release(r->o, s);
}

/* Waits for every batch on the backend, checking each packet. */
static unsigned drain(struct rig *r, const char *what)
{
    struct zm_offload_slot *done[8];
    unsigned n = 0;
    double until = zm_now() + 10;

    while (zm_offloader_inflight(r->o) > 0 && zm_now() < until) {
        int got = zm_offloader_wait(r->o, done, 100);
        CHECK(got >= 0, "%s: wait: %d", what, got);
        for (int i = 0; i < got; i++) {
            check_packet(r, done[i], what);
            n++;
        }
    }
    CHECK(zm_offloader_inflight(r->o) == 0, "%s: batches never came back",
          what);
    return n;
}

/* One batch end to end: submit, then its packet now or after a wait. */
static void one_batch(struct rig *r, unsigned count, const char *what)
{
    struct zm_offload_slot *s = zm_offloader_slot(r->o);
    int ret = submit(r, s, count);

    CHECK(ret >= 0, "%s: submit: %s", what, zm_errmsg());
    if (ret == 1) {
        check_packet(r, s, what);
    } else {
        drain(r, what);
    }
}

static void counters(struct rig *r, uint64_t *offloaded, uint64_t *fallbacks,
                     uint64_t *failures)
{
    zm_offload_counters(r->off, offloaded, fallbacks, failures);
}

static void test_names(void)
{
    CHECK(zm_offload_by_name("cpu") == &zm_offload_cpu, "cpu");
    CHECK(zm_offload_by_name("emulated") == &zm_offload_emulated, "emulated");
    CHECK(zm_offload_by_name("qat") == NULL && zm_offload_by_name(NULL) == NULL,
          "unknown names");
}

static void test_cpu_pool(void)
{
    struct rig r;
    uint64_t off, fb, fail;

    CHECK(rig_open(&r, &zm_offload_cpu, "threads=3") == 0, "cpu: %s",
          zm_errmsg());
    /* Four batches in flight at once, then all back. */
    for (unsigned b = 0; b < 4; b++) {
        CHECK(submit(&r, zm_offloader_slot(r.o), BATCH) == 0,
              "cpu: batch %u not taken", b);
    }
    CHECK(zm_offloader_slot(r.o) == NULL, "a fifth slot of four");
    CHECK(drain(&r, "cpu") == 4, "cpu: four packets back");
    counters(&r, &off, &fb, &fail);
    CHECK(off == 4 && fb == 0 && fail == 0,
          "cpu: %llu offloaded %llu fallbacks %llu failures",
          (unsigned long long)off, (unsigned long long)fb,
          (unsigned long long)fail);
    CHECK(zm_offload_cpu_seconds(r.off) > 0, "cpu: the workers' CPU");
    rig_close(&r);

    CHECK(zm_offload_open(&zm_offload_cpu, "threads=0", PAGE, &r.off) ==
              -EINVAL,
          "threads=0");
    CHECK(zm_offload_open(&zm_offload_cpu, "latency=1ms", PAGE, &r.off) ==
                  -EINVAL &&
              strstr(zm_errmsg(), "latency"),
          "cpu takes no latency: %s", zm_errmsg());
    CHECK(zm_offload_open(&zm_offload_emulated, "depth", PAGE, &r.off) ==
              -EINVAL,
          "a key without a value");
    CHECK(zm_offload_open(&zm_offload_emulated, "host-percent=101", PAGE,
                          &r.off) == -EINVAL,
          "host-percent=101");
    /* The engines auto counts as cores; a device off the host counts
     * none of its threads' CPU as the host's. */
    CHECK(zm_offload_open(&zm_offload_emulated, "threads=3,host-percent=0",
                          PAGE, &r.off) == 0,
          "threads=3,host-percent=0: %s", zm_errmsg());
    CHECK(zm_offload_threads(r.off) == 3, "threads: %u",
          zm_offload_threads(r.off));
    CHECK(zm_offload_cpu_seconds(r.off) == 0, "host-percent=0: %g s",
          zm_offload_cpu_seconds(r.off));
    zm_offload_close(r.off);
}

static void test_busy_and_small(void)
{
    struct rig r;
    uint64_t off, fb, fail;

    CHECK(rig_open(&r, &zm_offload_emulated,
                   "depth=1,latency=20ms,min-pages=8") == 0,
          "emulated: %s", zm_errmsg());
    struct zm_offload_slot *a = zm_offloader_slot(r.o);
    struct zm_offload_slot *b = zm_offloader_slot(r.o);
    CHECK(submit(&r, a, BATCH) == 0, "first batch on the device");
    CHECK(submit(&r, b, BATCH) == 1, "second: busy, compressed here");
    check_packet(&r, b, "busy");
    one_batch(&r, 4, "small");
    CHECK(drain(&r, "busy") == 1, "the first comes back");
    counters(&r, &off, &fb, &fail);
    CHECK(off == 1 && fb == 2 && fail == 0,
          "busy: %llu offloaded %llu fallbacks %llu failures",
          (unsigned long long)off, (unsigned long long)fb,
          (unsigned long long)fail);
    rig_close(&r);
}

static void test_fail_and_back(void)
{
    struct rig r;
    uint64_t off, fb, fail;

    CHECK(rig_open(&r, &zm_offload_emulated, "fail-every=2,latency=0") == 0,
          "emulated: %s", zm_errmsg());
    one_batch(&r, BATCH, "job 1");
    one_batch(&r, BATCH, "job 2, failed, redone");
    counters(&r, &off, &fb, &fail);
    CHECK(off == 1 && fail == 1, "after a failure: %llu offloaded, %llu failed",
          (unsigned long long)off, (unsigned long long)fail);
    /* Out of service: the next batch is compressed here. */
    struct zm_offload_slot *s = zm_offloader_slot(r.o);
    CHECK(submit(&r, s, BATCH) == 1, "out of service: here");
    check_packet(&r, s, "out of service");
    /* After the back-off the device is probed again, and takes it. */
    usleep((useconds_t)(ZM_OFFLOAD_BACKOFF * 1.5e6));
    one_batch(&r, BATCH, "job 3, the probe");
    counters(&r, &off, &fb, &fail);
    CHECK(off == 2 && fb == 1 && fail == 1,
          "back in service: %llu offloaded %llu fallbacks %llu failures",
          (unsigned long long)off, (unsigned long long)fb,
          (unsigned long long)fail);
    rig_close(&r);
}

static void test_hang(void)
{
    struct rig r;
    uint64_t off, fb, fail;

    CHECK(rig_open(&r, &zm_offload_emulated, "hang-every=1") == 0,
          "emulated: %s", zm_errmsg());
    double t0 = zm_now();
    one_batch(&r, BATCH, "hung, redone");
    counters(&r, &off, &fb, &fail);
    CHECK(off == 0 && fail == 1, "hang: %llu offloaded, %llu failed",
          (unsigned long long)off, (unsigned long long)fail);
    CHECK(zm_now() - t0 >= ZM_OFFLOAD_TIMEOUT, "redone before the timeout");
    /* The hung job stays with the backend until the queue is freed. */
    rig_close(&r);
}

static void test_lost(void)
{
    struct rig r;
    uint64_t off, fb, fail;

    CHECK(rig_open(&r, &zm_offload_emulated, "lose-after=1,latency=0") == 0,
          "emulated: %s", zm_errmsg());
    one_batch(&r, BATCH, "before the loss");
    one_batch(&r, BATCH, "the loss");
    usleep((useconds_t)(ZM_OFFLOAD_BACKOFF * 1.5e6));
    one_batch(&r, BATCH, "after the loss, past a back-off");
    counters(&r, &off, &fb, &fail);
    CHECK(off == 1 && fail == 1 && fb == 1,
          "lost: %llu offloaded %llu fallbacks %llu failures",
          (unsigned long long)off, (unsigned long long)fb,
          (unsigned long long)fail);
    rig_close(&r);
}

/* A backend of an older header whose packets are garbage. */
static int liar_device;

static int liar_open(const char *args, uint32_t page_size, void **dev)
{
    (void)args;
    (void)page_size;
    *dev = &liar_device;
    return 0;
}
static void liar_close(void *dev)
{
    (void)dev;
}
static int liar_caps(void *dev, struct zm_offload_caps *caps)
{
    (void)dev;
    caps->codecs = ~0u;
    caps->max_pages = ZM_MAX_BATCH_PAGES;
    caps->queue_depth = 8;
    return 0;
}
static struct zm_offload_job *liar_job;
static int liar_queue_new(void *dev, void **q)
{
    *q = dev;
    return 0;
}
static void liar_queue_free(void *q)
{
    (void)q;
}
static int liar_submit(void *q, struct zm_offload_job *job)
{
    (void)q;
    memset(job->out, 0x5a, 64);
    job->result = 64;
    liar_job = job;
    return 0;
}
static int liar_poll(void *q, struct zm_offload_job **done, unsigned max,
                     int timeout_ms)
{
    (void)q;
    (void)max;
    (void)timeout_ms;
    done[0] = liar_job;
    liar_job = NULL;
    return done[0] ? 1 : 0;
}

static void test_wrong_packets_and_old_tables(void)
{
    struct zm_offload_ops liar = {
        .version = 1,
        .sizeof_ops = offsetof(struct zm_offload_ops, cpu_seconds),
        .name = "liar",
        .open = liar_open,
        .close = liar_close,
        .caps = liar_caps,
        .queue_new = liar_queue_new,
        .queue_free = liar_queue_free,
        .submit = liar_submit,
        .poll = liar_poll,
    };
    struct rig r;
    uint64_t off, fb, fail;

    CHECK(rig_open(&r, &liar, "") == 0, "an older table: %s", zm_errmsg());
    one_batch(&r, BATCH, "garbage, redone");
    counters(&r, &off, &fb, &fail);
    CHECK(off == 0 && fail == 1, "garbage: %llu offloaded, %llu failed",
          (unsigned long long)off, (unsigned long long)fail);
    CHECK(zm_offload_cpu_seconds(r.off) == 0, "no cpu_seconds in its table");
    rig_close(&r);

    liar.poll = NULL;
    CHECK(zm_offload_open(&liar, "", PAGE, &r.off) == -EINVAL,
          "a table without poll");
    liar.poll = liar_poll;
    liar.sizeof_ops = offsetof(struct zm_offload_ops, poll);
    CHECK(zm_offload_open(&liar, "", PAGE, &r.off) == -EINVAL,
          "a table too short for poll");
}

/* A whole migration to a file and back, verified, through the backend;
 * decoded by decompress_threads workers. */
static void migrate_with(const char *offload, unsigned decompress_threads,
                         struct zm_stats *st)
{
    struct zm_params p;
    char uri[64];
    zm_source *src = NULL;
    zm_dest *dst = NULL;
    const char *name = offload ? offload : "no offload";

    zm_params_init(&p);
    p.compression =
        zm_codec_available(ZM_CODEC_ZSTD) ? ZM_CODEC_ZSTD : ZM_CODEC_NONE;
    p.multifd_channels = 3;
    p.batch_pages = 16;
    p.verify = true;
    p.offload = offload;
    CHECK(zm_source_new(&p, NULL, &src) == 0, "%s: source: %s", name,
          zm_errmsg());
    if (!src) {
        return;
    }
    CHECK(zm_source_add_region(src, "ram", ram, sizeof(ram)) == 0, "%s",
          zm_errmsg());
    snprintf(uri, sizeof(uri), "file:/tmp/zm-test-offload-%d", (int)getpid());
    int ret = zm_source_run(src, uri);
    if (ret == -EOPNOTSUPP) {
        printf("no dirty tracking here (%s): skipped\n", zm_errmsg());
        exit(T_EXIT_SKIP);
    }
    CHECK(ret == 0, "%s: save: %s", name, zm_errmsg());
    CHECK(zm_source_stats(src, st) == 0, "stats");
    struct zm_params dp;
    zm_params_init(&dp);
    dp.decompress_threads = decompress_threads;
    CHECK(zm_dest_new(&dp, NULL, &dst) == 0, "dest");
    CHECK(zm_dest_listen(dst, uri) == 0, "listen");
    CHECK(zm_dest_run(dst) == 0, "%s: restore, verified: %s", name,
          zm_errmsg());
    void *base = NULL;
    size_t size = 0;
    zm_dest_region(dst, 0, NULL, &base, &size);
    CHECK(base && size == sizeof(ram) && memcmp(base, ram, size) == 0,
          "%s: the RAM that arrived", name);
    zm_dest_free(dst);
    zm_source_free(src);
    unlink(uri + 5);
}

static void migrate(const char *offload, struct zm_stats *st)
{
    migrate_with(offload, 0, st);
}

/* A saved stream with one byte flipped fails cleanly through the pool. */
static void corrupt_restore(unsigned decompress_threads)
{
    char path[64], uri[80];
    struct zm_params p;
    zm_source *src = NULL;
    zm_dest *dst = NULL;

    snprintf(path, sizeof(path), "/tmp/zm-test-offload-bad-%d", (int)getpid());
    snprintf(uri, sizeof(uri), "file:%s", path);
    zm_params_init(&p);
    p.compression =
        zm_codec_available(ZM_CODEC_ZSTD) ? ZM_CODEC_ZSTD : ZM_CODEC_NONE;
    p.batch_pages = 16;
    CHECK(zm_source_new(&p, NULL, &src) == 0 &&
              zm_source_add_region(src, "ram", ram, sizeof(ram)) == 0 &&
              zm_source_run(src, uri) == 0,
          "save: %s", zm_errmsg());
    zm_source_free(src);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL, "reopen the stream");
    if (!f) {
        return;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size / 2, SEEK_SET);
    int c = fgetc(f);
    fseek(f, size / 2, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    zm_params_init(&p);
    p.decompress_threads = decompress_threads;
    CHECK(zm_dest_new(&p, NULL, &dst) == 0 && zm_dest_listen(dst, uri) == 0,
          "dest");
    int ret = zm_dest_run(dst);
    CHECK(ret < 0 && zm_errmsg()[0], "a flipped byte restored: %d", ret);
    zm_dest_free(dst);
    unlink(path);
}

/* Restores the stream in path with decompress_threads workers; the
 * region's contents into out (cap bytes) and its size into *size, when it
 * completes. */
static int restore(const char *uri, unsigned decompress_threads,
                   unsigned char *out, size_t cap, size_t *size)
{
    struct zm_params p;
    zm_dest *dst = NULL;

    zm_params_init(&p);
    p.decompress_threads = decompress_threads;
    if (zm_dest_new(&p, NULL, &dst) < 0 || zm_dest_listen(dst, uri) < 0) {
        return -1;
    }
    int ret = zm_dest_run(dst);
    void *base = NULL;
    *size = 0;
    if (ret == 0 && zm_dest_region(dst, 0, NULL, &base, size) == 0) {
        memcpy(out, base, *size < cap ? *size : cap);
    }
    zm_dest_free(dst);
    return ret;
}

/*
 * The pool and the channel decode alike: one saved stream, 200 copies
 * with one byte flipped each, restored both ways: both fail, or both
 * complete with the same pages.
 */
static void pool_matches_channel(void)
{
    char path[64], uri[80];
    struct zm_params p;
    zm_source *src = NULL;

    snprintf(path, sizeof(path), "/tmp/zm-test-offload-flip-%d", (int)getpid());
    snprintf(uri, sizeof(uri), "file:%s", path);
    zm_params_init(&p);
    p.compression =
        zm_codec_available(ZM_CODEC_ZSTD) ? ZM_CODEC_ZSTD : ZM_CODEC_NONE;
    p.batch_pages = 16;
    CHECK(zm_source_new(&p, NULL, &src) == 0 &&
              zm_source_add_region(src, "ram", ram, 64 * PAGE) == 0 &&
              zm_source_run(src, uri) == 0,
          "save: %s", zm_errmsg());
    zm_source_free(src);
    FILE *f = fopen(path, "rb");
    static unsigned char stream[2 << 20];
    size_t len = f ? fread(stream, 1, sizeof(stream), f) : 0;
    if (f) {
        fclose(f);
    }
    CHECK(len > 0 && len < sizeof(stream), "a stream of %zu bytes", len);
    uint64_t seed = 5;
    unsigned both_ok = 0, both_failed = 0;
    for (unsigned i = 0; len > 0 && i < 200; i++) {
        size_t at = (size_t)(t_rand(&seed) % len);
        unsigned char was = stream[at];
        stream[at] ^= (unsigned char)(1u << (t_rand(&seed) % 8));
        f = fopen(path, "wb");
        CHECK(f && fwrite(stream, 1, len, f) == len, "rewrite the stream");
        if (f) {
            fclose(f);
        }
        stream[at] = was;
        static unsigned char pooled[64 * PAGE];
        size_t inline_size, pool_size;
        memset(dest, 0, 64 * PAGE);
        memset(pooled, 0, sizeof(pooled));
        int inline_ret = restore(uri, 0, dest, 64 * PAGE, &inline_size);
        int pool_ret = restore(uri, 2, pooled, sizeof(pooled), &pool_size);
        CHECK((inline_ret == 0) == (pool_ret == 0),
              "byte %zu flipped: the channel says %d, the pool %d", at,
              inline_ret, pool_ret);
        if (inline_ret == 0 && pool_ret == 0) {
            CHECK(inline_size == pool_size &&
                      memcmp(dest, pooled, sizeof(pooled)) == 0,
                  "byte %zu flipped: the pool's pages differ", at);
            both_ok++;
        } else {
            both_failed++;
        }
    }
    CHECK(both_failed > 100, "%u of 200 flips refused", both_failed);
    printf("pool against channel: %u flips refused by both, %u taken by "
           "both (the same pages)\n",
           both_failed, both_ok);
    unlink(path);
}

static void test_decode_pool(void)
{
    struct zm_stats st = { .sizeof_stats = sizeof(st) };

    migrate_with(NULL, 3, &st);
    migrate_with("cpu:threads=2", 2, &st);
    corrupt_restore(2);
    corrupt_restore(0);
    pool_matches_channel();
}

static void test_migrations(void)
{
    struct zm_stats st = { .sizeof_stats = sizeof(st) };
    uint64_t batches;

    migrate("cpu:threads=2", &st);
    batches = st.offloaded + st.offload_fallbacks;
    CHECK(st.offloaded > 0 && st.offload_fallbacks == 0 &&
              st.offload_failures == 0,
          "cpu: %llu offloaded %llu fallbacks %llu failures",
          (unsigned long long)st.offloaded,
          (unsigned long long)st.offload_fallbacks,
          (unsigned long long)st.offload_failures);
    CHECK(batches >= PAGES / 16, "cpu: %llu batches for %u pages",
          (unsigned long long)batches, PAGES);

    st = (struct zm_stats){ .sizeof_stats = sizeof(st) };
    migrate("emulated:fail-every=3,hang-every=7,latency=100us,depth=4", &st);
    CHECK(st.offload_failures > 0 && st.offloaded > 0,
          "emulated, failing: %llu offloaded %llu fallbacks %llu failures",
          (unsigned long long)st.offloaded,
          (unsigned long long)st.offload_fallbacks,
          (unsigned long long)st.offload_failures);

    st = (struct zm_stats){ .sizeof_stats = sizeof(st) };
    migrate("emulated:lose-after=5,latency=0", &st);
    CHECK(st.offload_failures >= 1 && st.offloaded <= 5,
          "emulated, lost: %llu offloaded %llu failures",
          (unsigned long long)st.offloaded,
          (unsigned long long)st.offload_failures);

    zm_source *src = NULL;
    struct zm_params p;
    zm_params_init(&p);
    p.offload = "qat:device=0";
    CHECK(zm_source_new(&p, NULL, &src) == -EINVAL &&
              strstr(zm_errmsg(), "qat"),
          "an unknown backend: %s", zm_errmsg());
}

int main(void)
{
    zm_datagen_fill(ram, sizeof(ram), 0, 11);
    test_names();
    test_cpu_pool();
    test_busy_and_small();
    test_fail_and_back();
    test_hang();
    test_lost();
    test_wrong_packets_and_old_tables();
    test_migrations();
    test_decode_pool();
    return t_exit();
}
