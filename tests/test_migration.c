/*
 * test_migration.c - live migration end to end, on loopback
 *
 * A guest (RAM filled with generated data, a writer thread dirtying pages
 * through stop/resume hooks) migrates to a destination thread; afterwards
 * the destination's memory and device state equal the source's, byte for
 * byte.  Every codec with 1 and 4 channels; idle and writing guests; a
 * file: save and restore; the embedder's dirty bitmap; a guest whose
 * writes outrun a slow link ends at max-iterations; a failed migration
 * resumes the guest.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "channel/channel.h"
#include "migrate/session.h"
#include "test_util.h"
#include "channel/transport.h"
#include "zmigrate.h"
#include "tools/datagen.h"

#define RAM (32u << 20)
#define PAGE 4096u

struct guest {
    unsigned char *ram;
    pthread_t writer;
    bool writing;
    atomic_bool quit;
    /* stop/resume handshake */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop_requested;
    bool parked;
    unsigned stops, resumes;
    uint64_t writes;
    uint64_t pace_ns; /* between bursts of 8 writes; 0: flat out */
    /* The embedder's dirty log, when the test keeps one. */
    bool log_dirty;
    uint64_t *log;
};

static void *writer_thread(void *arg)
{
    struct guest *g = arg;
    uint64_t seed = 77;

    while (!atomic_load(&g->quit)) {
        pthread_mutex_lock(&g->lock);
        while (g->stop_requested) {
            g->parked = true;
            pthread_cond_broadcast(&g->cond);
            pthread_cond_wait(&g->cond, &g->lock);
        }
        g->parked = false;
        /* A burst of writes per lock: the writer must not starve stop(). */
        for (int i = 0; i < 8; i++) {
            uint64_t r = t_rand(&seed);
            size_t page = (r >> 16) % (RAM / PAGE);
            size_t off = page * PAGE + (r % (PAGE / 8)) * 8;
            memcpy(g->ram + off, &r, 8);
            if (g->log_dirty) {
                __atomic_fetch_or(&g->log[page / 64], 1ull << (page % 64),
                                  __ATOMIC_RELAXED);
            }
            g->writes++;
        }
        pthread_mutex_unlock(&g->lock);
        if (g->pace_ns) {
            struct timespec ts = { 0, (long)g->pace_ns };
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static int guest_stop(void *opaque)
{
    struct guest *g = opaque;
    pthread_mutex_lock(&g->lock);
    g->stops++;
    g->stop_requested = true;
    while (g->writing && !g->parked && !atomic_load(&g->quit)) {
        pthread_cond_wait(&g->cond, &g->lock);
    }
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static int guest_resume(void *opaque)
{
    struct guest *g = opaque;
    pthread_mutex_lock(&g->lock);
    g->resumes++;
    g->stop_requested = false;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static const char device_state[] = "vcpu0: rip=0xfff0 rflags=0x2";

static ssize_t guest_save(void *opaque, void *buf, size_t cap)
{
    (void)opaque;
    if (cap < sizeof(device_state)) {
        return -ENOBUFS;
    }
    memcpy(buf, device_state, sizeof(device_state));
    return sizeof(device_state);
}

static int guest_dirty_log(void *opaque, unsigned region, uint64_t *bitmap)
{
    struct guest *g = opaque;
    (void)region;
    for (size_t w = 0; w < RAM / PAGE / 64; w++) {
        bitmap[w] |= __atomic_exchange_n(&g->log[w], 0, __ATOMIC_RELAXED);
    }
    return 0;
}

static void guest_init(struct guest *g, bool writing, uint64_t pace_ns)
{
    memset(g, 0, sizeof(*g));
    g->ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    zm_datagen_fill(g->ram, RAM, 0, 9);
    g->log = calloc(RAM / PAGE / 64, sizeof(uint64_t));
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->pace_ns = pace_ns;
    g->writing = writing;
    if (writing) {
        pthread_create(&g->writer, NULL, writer_thread, g);
    }
}

static void guest_fini(struct guest *g)
{
    atomic_store(&g->quit, true);
    guest_resume(g);
    if (g->writing) {
        pthread_join(g->writer, NULL);
    }
    munmap(g->ram, RAM);
    free(g->log);
}

struct dest_run {
    zm_dest *dst;
    int ret;
    char msg[256];
    char state[64];
    size_t state_len;
};

static int dest_load(void *opaque, const void *buf, size_t len)
{
    struct dest_run *d = opaque;
    d->state_len = len < sizeof(d->state) ? len : sizeof(d->state);
    memcpy(d->state, buf, d->state_len);
    return 0;
}

static void *dest_thread(void *arg)
{
    struct dest_run *d = arg;
    d->ret = zm_dest_run(d->dst);
    snprintf(d->msg, sizeof(d->msg), "%s", zm_errmsg());
    return NULL;
}

struct scenario {
    const char *name;
    int codec;
    unsigned channels;
    bool writing;
    uint64_t pace_ns;
    int tracking;
    uint64_t max_bandwidth;
    unsigned max_iterations;
    bool file;
    /* Called with the source after it completed, before it is freed. */
    void (*inspect)(const struct scenario *sc, zm_source *src,
                    const struct zm_stats *st);
};

/*
 * The round history adds up: one entry a round, only the last final, every
 * dirty page of a round sent or skipped by the next, all pages counted.
 */
static void check_rounds(const char *name, zm_source *src,
                         const struct zm_stats *st)
{
    struct zm_round r[64] = { { .sizeof_round = sizeof(r[0]) } };
    unsigned n = (unsigned)zm_source_rounds(src, r, 64);
    uint64_t pages = 0, wire = 0;

    CHECK(n == st->iterations && n >= 1 && n <= 64,
          "%s: %u rounds recorded, %u run", name, n, st->iterations);
    if (n != st->iterations || n < 1 || n > 64) {
        return;
    }
    CHECK(zm_source_rounds(src, NULL, 0) == (int)n, "%s: the count alone",
          name);
    CHECK(r[0].pages + r[0].skipped == RAM / PAGE,
          "%s: round 0 sent %llu and skipped %llu of %u pages", name,
          (unsigned long long)r[0].pages, (unsigned long long)r[0].skipped,
          (unsigned)(RAM / PAGE));
    for (unsigned i = 0; i < n; i++) {
        pages += r[i].pages;
        wire += r[i].wire_bytes;
        CHECK(r[i].final == (i == n - 1), "%s: round %u final=%d", name, i,
              r[i].final);
        CHECK(r[i].zero_pages <= r[i].pages && r[i].time_ms >= 0 &&
                  (i == 0 || r[i].start_ms >= r[i - 1].start_ms),
              "%s: round %u: %llu zero of %llu pages, at %.3f ms for %.3f ms",
              name, i, (unsigned long long)r[i].zero_pages,
              (unsigned long long)r[i].pages, r[i].start_ms, r[i].time_ms);
        if (i > 0 && i < n - 1) {
            CHECK(r[i].pages + r[i].skipped == r[i - 1].dirty_after,
                  "%s: round %u sent %llu, skipped %llu, of %llu dirty", name,
                  i, (unsigned long long)r[i].pages,
                  (unsigned long long)r[i].skipped,
                  (unsigned long long)r[i - 1].dirty_after);
        }
    }
    CHECK(n < 2 || (r[n - 1].pages >= r[n - 2].dirty_after &&
                    r[n - 1].skipped == 0 && r[n - 1].dirty_after == 0),
          "%s: final round %llu pages after %llu dirty", name,
          (unsigned long long)r[n - 1].pages,
          (unsigned long long)r[n - 2].dirty_after);
    CHECK(pages == st->normal + st->duplicate,
          "%s: rounds sent %llu pages, the total says %llu", name,
          (unsigned long long)pages,
          (unsigned long long)(st->normal + st->duplicate));
    CHECK(wire <= st->transferred, "%s: rounds %llu wire bytes of %llu", name,
          (unsigned long long)wire, (unsigned long long)st->transferred);
}

/* Runs a scenario; returns the source's stats through *st. */
static void run(const struct scenario *sc, struct zm_stats *st)
{
    struct guest g;
    struct zm_params p;
    struct dest_run d = { 0 };
    struct zm_dest_hooks dh = { .sizeof_hooks = sizeof(dh),
                                .opaque = &d,
                                .load_state = dest_load };
    pthread_t thread;
    char file_uri[64];

    guest_init(&g, sc->writing, sc->pace_ns);
    g.log_dirty = sc->tracking == ZM_TRACKING_EMBEDDER;
    zm_params_init(&p);
    p.compression = sc->codec;
    p.multifd_channels = sc->channels;
    p.dirty_tracking = sc->tracking;
    p.max_bandwidth = sc->max_bandwidth;
    p.downtime_limit_ms = 100;
    p.verify = true;
    if (sc->max_iterations) {
        p.max_iterations = sc->max_iterations;
    }
    struct zm_source_hooks sh = {
        .sizeof_hooks = sizeof(sh),
        .opaque = &g,
        .stop = guest_stop,
        .resume = guest_resume,
        .save_state = guest_save,
        .dirty_log =
            sc->tracking == ZM_TRACKING_EMBEDDER ? guest_dirty_log : NULL,
    };
    zm_source *src;
    CHECK(zm_source_new(&p, &sh, &src) == 0, "%s: source: %s", sc->name,
          zm_errmsg());
    CHECK(zm_source_add_region(src, "pc.ram", g.ram, RAM) == 0, "%s: %s",
          sc->name, zm_errmsg());

    CHECK(zm_dest_new(NULL, &dh, &d.dst) == 0, "dest");
    if (sc->file) {
        snprintf(file_uri, sizeof(file_uri), "file:/tmp/zm-test-mig-%d",
                 (int)getpid());
        CHECK(zm_source_run(src, file_uri) == 0, "%s: save: %s", sc->name,
              zm_errmsg());
        CHECK(zm_dest_listen(d.dst, file_uri) == 0, "listen file");
        d.ret = zm_dest_run(d.dst);
        snprintf(d.msg, sizeof(d.msg), "%s", zm_errmsg());
        unlink(file_uri + 5);
    } else {
        CHECK(zm_dest_listen(d.dst, "tcp:127.0.0.1:0") == 0, "listen: %s",
              zm_errmsg());
        pthread_create(&thread, NULL, dest_thread, &d);
        int ret = zm_source_run(src, zm_dest_uri(d.dst));
        CHECK(ret == 0, "%s: source: %s", sc->name, zm_errmsg());
        pthread_join(thread, NULL);
    }
    CHECK(d.ret == 0, "%s: destination: %s", sc->name, d.msg);
    zm_source_stats(src, st);
    check_rounds(sc->name, src, st);

    /* The guest is stopped now: compare with what arrived. */
    const char *name;
    void *base = NULL;
    size_t size = 0;
    CHECK(zm_dest_region(d.dst, 0, &name, &base, &size) == 0 &&
              strcmp(name, "pc.ram") == 0 && size == RAM,
          "%s: destination region", sc->name);
    if (base && size == RAM) {
        size_t bad = 0, first = 0;
        for (size_t off = 0; off < RAM; off += PAGE) {
            if (memcmp(g.ram + off, (unsigned char *)base + off, PAGE)) {
                first = bad++ ? first : off / PAGE;
            }
        }
        CHECK(bad == 0, "%s: %zu pages differ, the first is %zu", sc->name, bad,
              first);
    }
    CHECK(d.state_len == sizeof(device_state) &&
              memcmp(d.state, device_state, sizeof(device_state)) == 0,
          "%s: device state", sc->name);
    CHECK(st->status == ZM_STATUS_COMPLETED, "%s: status %s", sc->name,
          zm_status_name(st->status));
    /* Stopped for the switchover and left stopped: it moved. */
    CHECK(g.stops == g.resumes + 1, "%s: %u stops, %u resumes", sc->name,
          g.stops, g.resumes);
    struct zm_stats ds = { .sizeof_stats = sizeof(ds) };
    zm_dest_stats(d.dst, &ds);
    CHECK(ds.normal + ds.duplicate == st->normal + st->duplicate,
          "%s: pages sent %llu, received %llu", sc->name,
          (unsigned long long)(st->normal + st->duplicate),
          (unsigned long long)(ds.normal + ds.duplicate));
    printf("%-26s %2u rounds, %6.1f MB wire, ratio %.2f, downtime %3llu ms,"
           " %llu writes, %llu skipped%s\n",
           sc->name, st->iterations, st->transferred / 1e6,
           st->compression_ratio, (unsigned long long)st->downtime_ms,
           (unsigned long long)g.writes, (unsigned long long)st->skipped,
           st->max_iterations_reached ? ", max-iterations" : "");
    if (sc->inspect) {
        sc->inspect(sc, src, st);
    }
    zm_dest_free(d.dst);
    zm_source_free(src);
    guest_fini(&g);
}

/*
 * --compression auto's reports add up: every normal page went out with
 * one of its methods, each timeline point names one of them, in time
 * order.  Returns the method that carried the most pages.
 */
static struct zm_auto_method_info
check_auto(const struct scenario *sc, zm_source *src, const struct zm_stats *st)
{
    struct zm_auto_method_info m[16] = { { .sizeof_info = sizeof(m[0]) } };
    struct zm_auto_point p[512] = { { .sizeof_point = sizeof(p[0]) } };
    int n = zm_source_auto_methods(src, m, 16);
    int np = zm_source_auto_timeline(src, p, 512);
    uint64_t raw = 0;
    unsigned most = 0;

    CHECK(n >= 2 && n <= 16 && m[0].codec == ZM_CODEC_NONE, "%s: %d methods",
          sc->name, n);
    for (int i = 0; i < n && i < 16; i++) {
        raw += m[i].raw_bytes;
        most = m[i].raw_bytes > m[most].raw_bytes ? (unsigned)i : most;
    }
    CHECK(raw == st->normal * PAGE,
          "%s: methods sent %llu bytes of normal pages, the stats %llu",
          sc->name, (unsigned long long)raw,
          (unsigned long long)(st->normal * PAGE));
    CHECK(np >= 0 && np <= 512, "%s: %d points", sc->name, np);
    for (int i = 0; i < np && i < 512; i++) {
        bool known = false;
        for (int j = 0; j < n && j < 16; j++) {
            known |= p[i].codec == m[j].codec && p[i].level == m[j].level;
        }
        CHECK(known && (i == 0 || p[i].time_ms >= p[i - 1].time_ms),
              "%s: point %d: %d:%d at %.0f ms", sc->name, i, p[i].codec,
              p[i].level, p[i].time_ms);
    }
    return m[most];
}

static void inspect_auto(const struct scenario *sc, zm_source *src,
                         const struct zm_stats *st)
{
    check_auto(sc, src, st);
}

/* A link of a few MB/s is worth the CPU of compression, whatever it is. */
static void inspect_auto_slow(const struct scenario *sc, zm_source *src,
                              const struct zm_stats *st)
{
    struct zm_auto_method_info most = check_auto(sc, src, st);
    CHECK(most.codec != ZM_CODEC_NONE, "%s: most pages went uncompressed",
          sc->name);
}

/* A page that differs after the migration fails it, named. */
static int load_and_corrupt(void *opaque, const void *buf, size_t len)
{
    struct dest_run *d = opaque;
    void *base;

    zm_dest_region(d->dst, 0, NULL, &base, NULL);
    ((unsigned char *)base)[1234 * PAGE + 17] ^= 1;
    return dest_load(opaque, buf, len);
}

static void test_verify_mismatch(void)
{
    struct guest g;
    struct zm_params p;
    struct dest_run d = { 0 };
    struct zm_dest_hooks dh = { .sizeof_hooks = sizeof(dh),
                                .opaque = &d,
                                .load_state = load_and_corrupt };
    struct zm_source_hooks sh = { .sizeof_hooks = sizeof(sh),
                                  .opaque = &g,
                                  .stop = guest_stop,
                                  .resume = guest_resume,
                                  .save_state = guest_save };
    pthread_t thread;
    zm_source *src;

    guest_init(&g, false, 0);
    zm_params_init(&p);
    p.verify = true;
    p.compression = ZM_CODEC_LZ4;
    CHECK(zm_source_new(&p, &sh, &src) == 0, "source");
    zm_source_add_region(src, "pc.ram", g.ram, RAM);
    CHECK(zm_dest_new(NULL, &dh, &d.dst) == 0, "dest");
    CHECK(zm_dest_listen(d.dst, "tcp:127.0.0.1:0") == 0, "listen");
    pthread_create(&thread, NULL, dest_thread, &d);
    int ret = zm_source_run(src, zm_dest_uri(d.dst));
    pthread_join(thread, NULL);
    CHECK(ret < 0 && strstr(zm_errmsg(), "page 1234"), "source: %d, '%s'", ret,
          zm_errmsg());
    CHECK(d.ret == -EBADMSG && strstr(d.msg, "page 1234"),
          "destination: %d, '%s'", d.ret, d.msg);
    CHECK(g.stops == g.resumes, "guest left stopped after a failed verify");
    printf("%-26s %s\n", "verify mismatch", d.msg);
    zm_dest_free(d.dst);
    zm_source_free(src);
    guest_fini(&g);
}

/* The destination fails while the guest is stopped for the switchover:
 * the source fails too, and resumes the guest. */
static zm_dest *failing_dest;

static ssize_t save_and_break(void *opaque, void *buf, size_t cap)
{
    zm_dest_cancel(failing_dest);
    return guest_save(opaque, buf, cap);
}

static void test_failure(void)
{
    struct guest g;
    struct zm_params p;
    struct dest_run d = { 0 };
    pthread_t thread;
    zm_source *src;
    struct zm_stats st = { .sizeof_stats = sizeof(st) };

    guest_init(&g, true, 1000000);
    zm_params_init(&p);
    struct zm_source_hooks sh = { .sizeof_hooks = sizeof(sh),
                                  .opaque = &g,
                                  .stop = guest_stop,
                                  .resume = guest_resume,
                                  .save_state = save_and_break };
    CHECK(zm_source_new(&p, &sh, &src) == 0, "source");
    zm_source_add_region(src, "pc.ram", g.ram, RAM);
    CHECK(zm_dest_new(NULL, NULL, &d.dst) == 0, "dest");
    failing_dest = d.dst;
    CHECK(zm_dest_listen(d.dst, "tcp:127.0.0.1:0") == 0, "listen");
    pthread_create(&thread, NULL, dest_thread, &d);
    int ret = zm_source_run(src, zm_dest_uri(d.dst));
    pthread_join(thread, NULL);
    zm_source_stats(src, &st);
    CHECK(ret < 0, "source succeeded against a cancelled destination");
    CHECK(st.status == ZM_STATUS_FAILED, "status %s",
          zm_status_name(st.status));
    CHECK(d.ret == -ECANCELED, "destination: %d", d.ret);
    CHECK(g.stops >= 1 && g.stops == g.resumes && !g.stop_requested,
          "guest left stopped (%u stops, %u resumes)", g.stops, g.resumes);
    /* The final round went out before the device state failed: counted. */
    struct zm_round r[64] = { { .sizeof_round = sizeof(r[0]) } };
    unsigned n = (unsigned)zm_source_rounds(src, r, 64);
    CHECK(n == st.iterations && n >= 2 && n <= 64 && r[n - 1].final,
          "failure at switchover: %u rounds recorded, %u counted", n,
          st.iterations);
    printf("%-26s source: %s\n", "failure at switchover", zm_errmsg());
    zm_dest_free(d.dst);
    zm_source_free(src);
    guest_fini(&g);
}

/*
 * A peer that opens a data channel and then says nothing: zm_dest_cancel()
 * still ends zm_dest_run(), in whichever wait it is (accepting the data
 * channels, or reading the silent one's HELLO).  A hang fails the test by
 * its timeout.
 */
static void test_cancel_silent_channel(bool connect_data)
{
    struct dest_run d = { 0 };
    struct zm_hello hello = { .channel = 0,
                              .channels = 2,
                              .page_size = 4096,
                              .max_pages = 128,
                              .codec = ZM_CODEC_NONE };
    struct zm_layout_region region = { .name = "pc.ram", .size = 1 << 20 };
    unsigned char hello_body[ZM_HELLO_SIZE], layout[64], reply[256];
    struct zm_uri uri;
    zm_conn *main_conn = NULL, *data_conn = NULL;
    pthread_t thread;
    uint32_t len;

    CHECK(zm_dest_new(NULL, NULL, &d.dst) == 0, "dest");
    CHECK(zm_dest_listen(d.dst, "tcp:127.0.0.1:0") == 0, "listen");
    pthread_create(&thread, NULL, dest_thread, &d);
    CHECK(zm_uri_parse(zm_dest_uri(d.dst), &uri) == 0 &&
              zm_conn_connect(&uri, NULL, &main_conn) == 0,
          "connect: %s", zm_errmsg());
    memset(hello.session, 0x5a, sizeof(hello.session));
    zm_hello_encode(&hello, hello_body);
    ssize_t layout_len = zm_layout_encode(&region, 1, layout, sizeof(layout));
    struct iovec hv = { hello_body, sizeof(hello_body) };
    struct iovec lv = { layout, (size_t)layout_len };
    CHECK(layout_len > 0 &&
              zm_frame_write(main_conn, ZM_FRAME_HELLO, &hv, 1) == 0 &&
              zm_frame_write(main_conn, ZM_FRAME_LAYOUT, &lv, 1) == 0 &&
              zm_frame_expect(main_conn, ZM_FRAME_ACCEPT, reply, sizeof(reply),
                              &len) == 0,
          "handshake: %s", zm_errmsg());
    /* The ACCEPT has gone out, so the destination is waiting for data
     * channels, or (once this connects) for the HELLO of one. */
    if (connect_data) {
        CHECK(zm_conn_connect(&uri, NULL, &data_conn) == 0, "connect data: %s",
              zm_errmsg());
        usleep(100000); /* most likely accepted by now; either wait will do */
    }
    zm_dest_cancel(d.dst);
    pthread_join(thread, NULL);
    CHECK(d.ret == -ECANCELED, "cancelled while %s: %d, '%s'",
          connect_data ? "a data channel was silent" : "accepting", d.ret,
          d.msg);
    printf("%-26s %s\n",
           connect_data ? "cancel, silent channel" : "cancel, accepting",
           d.msg);
    zm_conn_close(data_conn);
    zm_conn_close(main_conn);
    zm_dest_free(d.dst);
}

/*
 * Cancels that land late.  On the destination, one during load_state
 * (after the last byte was read) fails both sides: the source must not
 * hear COMPLETE, and resumes.  On the source, one after END has gone out
 * is too late: the destination may run the guest already, so it is
 * ignored and both complete.
 */
static zm_source *late_source;
static zm_dest *late_dest;

static int load_and_cancel_dest(void *opaque, const void *buf, size_t len)
{
    (void)opaque, (void)buf, (void)len;
    zm_dest_cancel(late_dest);
    return 0;
}

static int load_and_cancel_source(void *opaque, const void *buf, size_t len)
{
    (void)opaque, (void)buf, (void)len;
    zm_source_cancel(late_source);
    return 0;
}

static void test_late_cancel(bool dest_side)
{
    struct guest g;
    struct zm_params p;
    struct dest_run d = { 0 };
    struct zm_dest_hooks dh = { .sizeof_hooks = sizeof(dh),
                                .load_state = dest_side
                                                  ? load_and_cancel_dest
                                                  : load_and_cancel_source };
    struct zm_source_hooks sh = { .sizeof_hooks = sizeof(sh),
                                  .opaque = &g,
                                  .stop = guest_stop,
                                  .resume = guest_resume,
                                  .save_state = guest_save };
    struct zm_stats sst = { .sizeof_stats = sizeof(sst) };
    struct zm_stats dst = { .sizeof_stats = sizeof(dst) };
    pthread_t thread;

    guest_init(&g, false, 0);
    zm_params_init(&p);
    CHECK(zm_source_new(&p, &sh, &late_source) == 0, "source");
    zm_source_add_region(late_source, "pc.ram", g.ram, RAM);
    CHECK(zm_dest_new(NULL, &dh, &d.dst) == 0, "dest");
    late_dest = d.dst;
    CHECK(zm_dest_listen(d.dst, "tcp:127.0.0.1:0") == 0, "listen");
    pthread_create(&thread, NULL, dest_thread, &d);
    int ret = zm_source_run(late_source, zm_dest_uri(d.dst));
    pthread_join(thread, NULL);
    zm_source_stats(late_source, &sst);
    zm_dest_stats(d.dst, &dst);
    if (dest_side) {
        CHECK(
            ret < 0 && d.ret == -ECANCELED && sst.status == ZM_STATUS_FAILED &&
                dst.status == ZM_STATUS_CANCELLED,
            "destination cancelled in load_state: source %d (%s), "
            "destination %d (%s)",
            ret, zm_status_name(sst.status), d.ret, zm_status_name(dst.status));
        CHECK(g.stops == 1 && g.resumes == 1,
              "source guest: %u stops, %u "
              "resumes",
              g.stops, g.resumes);
    } else {
        CHECK(ret == 0 && d.ret == 0 && sst.status == ZM_STATUS_COMPLETED,
              "source cancelled after END: source %d (%s), destination %d", ret,
              zm_status_name(sst.status), d.ret);
        CHECK(g.stops == 1 && g.resumes == 0,
              "source guest: %u stops, %u "
              "resumes",
              g.stops, g.resumes);
    }
    printf("%-26s source %s, destination %s\n",
           dest_side ? "late destination cancel" : "late source cancel",
           zm_status_name(sst.status), zm_status_name(dst.status));
    zm_dest_free(d.dst);
    zm_source_free(late_source);
    guest_fini(&g);
}

/*
 * A source whose first run failed (nothing listens) runs again, to a real
 * destination, and completes: a failure leaves nothing behind.
 */
static void test_rerun(void)
{
    struct guest g;
    struct zm_params p;
    struct dest_run d = { 0 };
    struct zm_source_hooks sh = { .sizeof_hooks = sizeof(sh),
                                  .opaque = &g,
                                  .stop = guest_stop,
                                  .resume = guest_resume };
    pthread_t thread;
    zm_source *src;
    char path[64];

    guest_init(&g, false, 0);
    zm_params_init(&p);
    CHECK(zm_source_new(&p, &sh, &src) == 0, "source");
    zm_source_add_region(src, "pc.ram", g.ram, RAM);
    snprintf(path, sizeof(path), "unix:/tmp/zm-nobody-%d.sock", (int)getpid());
    int first = zm_source_run(src, path);
    CHECK(first < 0, "a run to %s succeeded", path);
    CHECK(zm_dest_new(NULL, NULL, &d.dst) == 0, "dest");
    CHECK(zm_dest_listen(d.dst, "tcp:127.0.0.1:0") == 0, "listen");
    pthread_create(&thread, NULL, dest_thread, &d);
    int ret = zm_source_run(src, zm_dest_uri(d.dst));
    pthread_join(thread, NULL);
    CHECK(ret == 0 && d.ret == 0, "second run: source %d (%s), dest %d (%s)",
          ret, zm_errmsg(), d.ret, d.msg);
    printf("%-26s first %d, then %d\n", "run again after a failure", first,
           ret);
    zm_dest_free(d.dst);
    zm_source_free(src);
    guest_fini(&g);
}

/*
 * max-bandwidth of 1 byte/s: after its first packet the source would wait
 * for days.  A cancel ends the wait.  A hang fails the test by its timeout.
 */
static zm_source *slow_source;

static void *cancel_later(void *arg)
{
    (void)arg;
    usleep(200000); /* most likely in the wait by now; either way works */
    zm_source_cancel(slow_source);
    return NULL;
}

static void test_cancel_rate_wait(void)
{
    struct guest g;
    struct zm_params p;
    struct dest_run d = { 0 };
    pthread_t thread, canceller;

    guest_init(&g, false, 0);
    zm_params_init(&p);
    p.max_bandwidth = 1;
    CHECK(zm_source_new(&p, NULL, &slow_source) == 0, "source");
    zm_source_add_region(slow_source, "pc.ram", g.ram, RAM);
    CHECK(zm_dest_new(NULL, NULL, &d.dst) == 0, "dest");
    CHECK(zm_dest_listen(d.dst, "tcp:127.0.0.1:0") == 0, "listen");
    pthread_create(&thread, NULL, dest_thread, &d);
    pthread_create(&canceller, NULL, cancel_later, NULL);
    int ret = zm_source_run(slow_source, zm_dest_uri(d.dst));
    pthread_join(canceller, NULL);
    zm_dest_cancel(d.dst); /* in case the source never connected */
    pthread_join(thread, NULL);
    CHECK(ret == -ECANCELED && d.ret < 0,
          "cancelled at 1 byte/s: source %d, destination %d", ret, d.ret);
    printf("%-26s destination: %s\n", "cancel, bandwidth wait", d.msg);
    zm_dest_free(d.dst);
    zm_source_free(slow_source);
    guest_fini(&g);
}

/*
 * A destination that fails during the rounds says so on the main channel
 * (FAIL) and never reads its data channels: the source hears it there,
 * rather than waiting on full sockets for ever.
 */
struct fake_dest {
    zm_listener *lst;
    zm_conn *main;
    bool verify_then_vanish; /* answer END, take VERIFY, then vanish */
};

static void *fake_dest_thread(void *arg)
{
    struct fake_dest *f = arg;
    unsigned char body[ZM_LAYOUT_MAX_SIZE];
    uint32_t len;
    static const char reason[] = "disk full";
    struct iovec none = { NULL, 0 }, why = { (void *)reason, strlen(reason) };

    CHECK(zm_listener_accept(f->lst, 10000, &f->main) == 0 &&
              zm_frame_expect(f->main, ZM_FRAME_HELLO, body, sizeof(body),
                              &len) == 0 &&
              zm_frame_expect(f->main, ZM_FRAME_LAYOUT, body, sizeof(body),
                              &len) == 0 &&
              zm_frame_write(f->main, ZM_FRAME_ACCEPT, &none, 1) == 0,
          "fake destination: %s", zm_errmsg());
    usleep(100000);
    zm_frame_write(f->main, ZM_FRAME_FAIL, &why, 1);
    return NULL;
}

static void test_dest_fails_during_rounds(void)
{
    struct guest g;
    struct zm_params p;
    struct fake_dest f = { 0 };
    struct zm_uri uri;
    pthread_t thread;
    zm_source *src;

    guest_init(&g, false, 0);
    zm_params_init(&p);
    CHECK(zm_uri_parse("tcp:127.0.0.1:0", &uri) == 0 &&
              zm_listener_open(&uri, &f.lst) == 0,
          "listen: %s", zm_errmsg());
    CHECK(zm_source_new(&p, NULL, &src) == 0, "source");
    zm_source_add_region(src, "pc.ram", g.ram, RAM);
    pthread_create(&thread, NULL, fake_dest_thread, &f);
    int ret = zm_source_run(src, zm_listener_uri(f.lst));
    pthread_join(thread, NULL);
    CHECK(ret == -ECONNREFUSED && strstr(zm_errmsg(), "disk full"),
          "source: %d, '%s'", ret, zm_errmsg());
    printf("%-26s source: %s\n", "destination fails early", zm_errmsg());
    zm_conn_close(f.main);
    zm_listener_close(f.lst);
    zm_source_free(src);
    guest_fini(&g);
}

/*
 * A destination that takes everything, END included, then vanishes
 * without answering: the source cannot know whether it runs the guest.
 * It must not resume its own (two guests), and says so: -ENOTCONN,
 * status unconfirmed.
 */
struct drain {
    zm_conn *conn;
    pthread_t thread;
};

static void *drain_thread(void *arg)
{
    struct drain *d = arg;
    static _Thread_local unsigned char sink[1 << 16];

    while (zm_conn_read_all(d->conn, sink, sizeof(sink)) == 0) {
    }
    return NULL;
}

static void *vanishing_dest_thread(void *arg)
{
    struct fake_dest *f = arg;
    unsigned char *body = malloc(ZM_MAX_DEVICE_STATE);
    struct drain drains[4];
    struct zm_hello hello = { 0 };
    uint32_t len;
    struct iovec none = { NULL, 0 };
    unsigned started = 0;

    bool ok = body && zm_listener_accept(f->lst, 10000, &f->main) == 0 &&
              zm_frame_expect(f->main, ZM_FRAME_HELLO, body, ZM_HELLO_SIZE,
                              &len) == 0 &&
              zm_hello_decode(body, len, &hello) == 0 && hello.channels <= 4 &&
              zm_frame_expect(f->main, ZM_FRAME_LAYOUT, body,
                              ZM_LAYOUT_MAX_SIZE, &len) == 0 &&
              zm_frame_write(f->main, ZM_FRAME_ACCEPT, &none, 1) == 0;
    CHECK(ok, "vanishing destination: %s", zm_errmsg());
    while (ok && started < hello.channels) {
        ok = zm_listener_accept(f->lst, 10000, &drains[started].conn) == 0;
        CHECK(ok, "accept: %s", zm_errmsg());
        if (ok) {
            pthread_create(&drains[started].thread, NULL, drain_thread,
                           &drains[started]);
            started++;
        }
    }
    CHECK(ok &&
              zm_frame_expect(f->main, ZM_FRAME_DEVICE_STATE, body,
                              ZM_MAX_DEVICE_STATE, &len) == 0 &&
              zm_frame_expect(f->main, ZM_FRAME_END, body, ZM_END_SIZE, &len) ==
                  0,
          "vanishing destination: %s", zm_errmsg());
    if (ok && f->verify_then_vanish) {
        CHECK(zm_frame_write(f->main, ZM_FRAME_COMPLETE, &none, 1) == 0 &&
                  zm_frame_expect(f->main, ZM_FRAME_VERIFY, body,
                                  ZM_MAX_DEVICE_STATE, &len) == 0,
              "vanishing destination, verify: %s", zm_errmsg());
    }
    zm_conn_close(f->main); /* no COMPLETE, no FAIL */
    f->main = NULL;
    for (unsigned i = 0; i < started; i++) {
        pthread_join(drains[i].thread, NULL);
        zm_conn_close(drains[i].conn);
    }
    free(body);
    return NULL;
}

/*
 * when: 0, vanish after END; 1, with verify, after END (the destination
 * cannot complete without VERIFY: an ordinary failure, the guest resumes);
 * 2, with verify, after VERIFY (unconfirmed again).
 */
static void test_unconfirmed(int when)
{
    struct guest g;
    struct zm_params p;
    struct fake_dest f = { 0 };
    struct zm_uri uri;
    struct zm_source_hooks sh = { .sizeof_hooks = sizeof(sh),
                                  .opaque = &g,
                                  .stop = guest_stop,
                                  .resume = guest_resume,
                                  .save_state = guest_save };
    struct zm_stats st = { .sizeof_stats = sizeof(st) };
    pthread_t thread;
    zm_source *src;

    guest_init(&g, false, 0);
    zm_params_init(&p);
    p.compression = ZM_CODEC_LZ4;
    p.verify = when > 0;
    f.verify_then_vanish = when == 2;
    CHECK(zm_uri_parse("tcp:127.0.0.1:0", &uri) == 0 &&
              zm_listener_open(&uri, &f.lst) == 0,
          "listen: %s", zm_errmsg());
    CHECK(zm_source_new(&p, &sh, &src) == 0, "source");
    zm_source_add_region(src, "pc.ram", g.ram, RAM);
    pthread_create(&thread, NULL, vanishing_dest_thread, &f);
    int ret = zm_source_run(src, zm_listener_uri(f.lst));
    pthread_join(thread, NULL);
    zm_source_stats(src, &st);
    if (when == 1) {
        CHECK(ret < 0 && ret != -ENOTCONN && st.status == ZM_STATUS_FAILED,
              "verify, vanished before VERIFY: %d (%s), '%s'", ret,
              zm_status_name(st.status), zm_errmsg());
        CHECK(g.stops == 1 && g.resumes == 1,
              "failed before VERIFY: %u stops, %u resumes", g.stops, g.resumes);
    } else {
        CHECK(ret == -ENOTCONN && st.status == ZM_STATUS_UNCONFIRMED &&
                  strstr(zm_errmsg(), "may be running the guest"),
              "source: %d (%s), '%s'", ret, zm_status_name(st.status),
              zm_errmsg());
        CHECK(g.stops == 1 && g.resumes == 0,
              "unconfirmed: %u stops, %u resumes", g.stops, g.resumes);
    }
    static const char *const what[] = { "vanishes after END",
                                        "vanishes before VERIFY",
                                        "vanishes after VERIFY" };
    printf("%-26s %s: %s\n", "destination", what[when],
           zm_status_name(st.status));
    zm_listener_close(f.lst);
    zm_source_free(src);
    guest_fini(&g);
}

int main(void)
{
    struct zm_stats st = { .sizeof_stats = sizeof(st) };

    for (int codec = 0; codec < ZM_CODEC_COUNT; codec++) {
        if (!zm_codec_available(codec)) {
            continue;
        }
        for (unsigned ch = 1; ch <= 4; ch += 3) {
            char name[64];
            snprintf(name, sizeof(name), "%s, %u channel%s, writer",
                     zm_codec_name(codec), ch, ch > 1 ? "s" : "");
            struct scenario sc = { .name = name,
                                   .codec = codec,
                                   .channels = ch,
                                   .writing = true,
                                   .pace_ns = 1000000 };
            run(&sc, &st);
        }
    }
    /* --compression auto: the destination decodes what it is sent. */
    struct scenario automatic = { .name = "auto, 4 channels, writer",
                                  .codec = ZM_COMPRESSION_AUTO,
                                  .channels = 4,
                                  .writing = true,
                                  .pace_ns = 1000000,
                                  .inspect = inspect_auto };
    run(&automatic, &st);
    struct scenario auto_slow = { .name = "auto, 8 MB/s",
                                  .codec = ZM_COMPRESSION_AUTO,
                                  .channels = 2,
                                  .max_bandwidth = 8 << 20,
                                  .inspect = inspect_auto_slow };
    run(&auto_slow, &st);
    struct scenario auto_file = { .name = "auto, file:",
                                  .codec = ZM_COMPRESSION_AUTO,
                                  .channels = 2,
                                  .file = true,
                                  .inspect = inspect_auto };
    run(&auto_file, &st);

    struct scenario idle = { .name = "zstd, idle",
                             .codec = ZM_CODEC_ZSTD,
                             .channels = 2 };
    run(&idle, &st);
    CHECK(st.iterations <= 2, "idle guest took %u rounds", st.iterations);

    /* A slow link makes rounds long, so a writer leaves dirty pages:
     * more than one round. */
    struct scenario busy = { .name = "lz4, busy, 60 MB/s",
                             .codec = ZM_CODEC_LZ4,
                             .channels = 2,
                             .writing = true,
                             .pace_ns = 200000,
                             .max_bandwidth = 60 << 20 };
    run(&busy, &st);
    CHECK(st.iterations > 1, "busy guest: %u rounds", st.iterations);

    /* Writes outrun the link: ends at max-iterations, not in a hang. */
    struct scenario outrun = { .name = "none, outrun, 4 rounds",
                               .codec = ZM_CODEC_NONE,
                               .channels = 2,
                               .writing = true,
                               .pace_ns = 0,
                               .max_bandwidth = 40 << 20,
                               .max_iterations = 4 };
    run(&outrun, &st);
    CHECK(st.iterations == 4 && st.max_iterations_reached,
          "outrun: %u rounds, reached %d", st.iterations,
          st.max_iterations_reached);
    /* Rounds this long see pages written again before their turn: they
     * wait for the next round (and the content check above still holds). */
    CHECK(st.skipped > 0, "outrun: no page skipped");

    struct scenario embedder = { .name = "zstd, embedder bitmap",
                                 .codec = ZM_CODEC_ZSTD,
                                 .channels = 2,
                                 .writing = true,
                                 .pace_ns = 500000,
                                 .tracking = ZM_TRACKING_EMBEDDER,
                                 .max_bandwidth = 100 << 20 };
    run(&embedder, &st);
    CHECK(st.skipped > 0, "embedder bitmap: no page skipped");

    struct scenario file = { .name = "zstd, file: save/restore",
                             .codec = ZM_CODEC_ZSTD,
                             .channels = 3,
                             .writing = true,
                             .pace_ns = 1000000,
                             .file = true };
    run(&file, &st);

    /* max-bandwidth: 32 MiB raw at 16 MiB/s takes ~2 s.  The limiter may
     * never let more through than the limit (+10%); a loaded machine may
     * send less, so only the ceiling is checked, and the rate printed. */
    struct scenario limited = { .name = "none, 16 MiB/s limit",
                                .codec = ZM_CODEC_NONE,
                                .channels = 4,
                                .max_bandwidth = 16 << 20 };
    run(&limited, &st);
    double rate = (double)st.transferred / (st.total_time_ms / 1000.0);
    printf("%-26s %.2f MiB/s over %.2f s\n", "", rate / (1 << 20),
           st.total_time_ms / 1000.0);
    CHECK(rate <= 1.10 * (16 << 20), "16 MiB/s limit, %.2f MiB/s sent",
          rate / (1 << 20));

    /* A moderate dirty rate converges: the switchover comes because the
     * expected downtime fits the limit, not because rounds ran out. */
    struct scenario moderate = { .name = "zstd, moderate writer",
                                 .codec = ZM_CODEC_ZSTD,
                                 .channels = 2,
                                 .writing = true,
                                 .pace_ns = 200000,
                                 .max_bandwidth = 100 << 20 };
    run(&moderate, &st);
    CHECK(!st.max_iterations_reached && st.expected_downtime_ms <= 100,
          "moderate writer: expected downtime %llu ms, limit 100 ms",
          (unsigned long long)st.expected_downtime_ms);

    test_failure();
    test_verify_mismatch();
    test_cancel_silent_channel(false);
    test_cancel_silent_channel(true);
    test_late_cancel(true);
    test_late_cancel(false);
    test_rerun();
    test_cancel_rate_wait();
    test_dest_fails_during_rounds();
    test_unconfirmed(0);
    test_unconfirmed(1);
    test_unconfirmed(2);
    return t_exit();
}
