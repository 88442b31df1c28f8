/*
 * test_abi.c - callers built against an older, shorter header
 *
 * Every struct the library reads or fills begins with its size.  A caller
 * compiled when a struct was shorter passes that size: the library must
 * read no further (what lies beyond is the caller's other data) and write
 * no further.  Each case sits a struct at the front of a buffer full of a
 * canary and states a size that ends partway.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "zmigrate.h"

#define PAGE 4096u
#define PAGES 64u
#define CANARY 0xa5

static unsigned char ram[PAGES * PAGE] __attribute__((aligned(4096)));

static bool all_canary(const void *p, size_t len)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < len; i++) {
        if (c[i] != CANARY) {
            return false;
        }
    }
    return true;
}

/* A struct at the front of a canary-filled buffer, stating size. */
static void *old_struct(void *buf, size_t buf_len, size_t size)
{
    memset(buf, CANARY, buf_len);
    memcpy(buf, &size, sizeof(size));
    return buf;
}

static void test_packet_info(void)
{
    struct zm_encoder_options eo = { .sizeof_options = sizeof(eo) };
    struct zm_decoder_options dopts = { .sizeof_options = sizeof(dopts) };
    struct zm_region_map map = { ram, sizeof(ram) };
    struct zm_page_ref refs[4];
    unsigned char packet[8 * PAGE];
    unsigned char buf[sizeof(struct zm_packet_info) + 64];
    size_t cut = offsetof(struct zm_packet_info, pages);
    zm_encoder *enc;
    zm_decoder *dec;

    dopts.regions = &map;
    dopts.region_count = 1;
    CHECK(zm_encoder_new(&eo, &enc) == 0, "encoder: %s", zm_errmsg());
    CHECK(zm_decoder_new(&dopts, &dec) == 0, "decoder: %s", zm_errmsg());
    for (unsigned i = 0; i < 4; i++) {
        memset(ram + i * PAGE, 'a' + (int)i, PAGE);
        refs[i] = (struct zm_page_ref){ i, ram + i * PAGE };
    }

    struct zm_packet_info *old = old_struct(buf, sizeof(buf), cut);
    ssize_t n = zm_encode(enc, 0, refs, 4, 0, packet, sizeof(packet), old);
    CHECK(n > 0, "encode with an older info: %s", zm_errmsg());
    CHECK(old->sizeof_info == cut, "sizeof_info changed to %zu",
          old->sizeof_info);
    CHECK(old->size == (uint32_t)n && old->region == 0 &&
              old->page_size == PAGE,
          "encode: the fields it has: size %u region %u page %u", old->size,
          old->region, old->page_size);
    CHECK(all_canary(buf + cut, sizeof(buf) - cut),
          "encode wrote past an older info");

    old = old_struct(buf, sizeof(buf), cut);
    CHECK(zm_decode(dec, packet, (size_t)n, old) == 0, "decode: %s",
          zm_errmsg());
    CHECK(old->size == (uint32_t)n, "decode: size %u", old->size);
    CHECK(all_canary(buf + cut, sizeof(buf) - cut),
          "decode wrote past an older info");

    old = old_struct(buf, sizeof(buf), cut);
    CHECK(zm_packet_peek(packet, (size_t)n, old) == 0, "peek: %s", zm_errmsg());
    CHECK(old->size == (uint32_t)n, "peek: size %u", old->size);
    CHECK(all_canary(buf + cut, sizeof(buf) - cut),
          "peek wrote past an older info");

    /* A newer caller's larger struct: filled as far as the library knows. */
    struct {
        struct zm_packet_info info;
        unsigned char later[32];
    } newer;
    memset(&newer, CANARY, sizeof(newer));
    newer.info.sizeof_info = sizeof(newer);
    CHECK(zm_packet_peek(packet, (size_t)n, &newer.info) == 0, "newer: %s",
          zm_errmsg());
    CHECK(newer.info.pages == 4 && newer.info.sizeof_info == sizeof(newer),
          "newer: pages %u", newer.info.pages);
    CHECK(all_canary(newer.later, sizeof(newer.later)),
          "peek wrote past what the library knows");

    /* A size smaller than the size member is no struct at all. */
    struct zm_packet_info none = { .sizeof_info = 0 };
    CHECK(zm_encode(enc, 0, refs, 4, 0, packet, sizeof(packet), &none) ==
              -EINVAL,
          "encode with sizeof_info 0");
    CHECK(zm_decode(dec, packet, (size_t)n, &none) == -EINVAL,
          "decode with sizeof_info 0");
    CHECK(zm_packet_peek(packet, (size_t)n, &none) == -EINVAL,
          "peek with sizeof_info 0");

    /* Older options: fields past the stated size are defaults. */
    unsigned char obuf[sizeof(struct zm_encoder_options) + 16];
    struct zm_encoder_options *oe = old_struct(
        obuf, sizeof(obuf), offsetof(struct zm_encoder_options, level));
    oe->codec = ZM_CODEC_NONE;
    zm_encoder *enc2;
    CHECK(zm_encoder_new(oe, &enc2) == 0,
          "encoder from older options (canary beyond): %s", zm_errmsg());
    CHECK(zm_encoder_bound(enc2) == zm_encoder_bound(enc),
          "older options: not the default page size and batch");
    zm_encoder_free(enc2);
    eo.sizeof_options = 0;
    CHECK(zm_encoder_new(&eo, &enc2) == -EINVAL, "sizeof_options 0");
    zm_encoder_free(enc);
    zm_decoder_free(dec);
}

struct hook_calls {
    unsigned stops;
};

static int count_stop(void *opaque)
{
    ((struct hook_calls *)opaque)->stops++;
    return 0;
}

/* A source whose hooks and params are an older caller's, saved to a file
 * and received; returns the source (the caller frees it). */
static zm_source *migrate_with_old_structs(struct hook_calls *calls)
{
    unsigned char hbuf[sizeof(struct zm_source_hooks) + 32];
    unsigned char pbuf[sizeof(struct zm_params) + 32];
    char uri[64];
    zm_source *src = NULL;
    zm_dest *dst = NULL;

    /* Hooks up to stop: resume, save_state and dirty_log lie beyond, over
     * canary bytes that would crash if taken for pointers. */
    struct zm_source_hooks *h = old_struct(
        hbuf, sizeof(hbuf), offsetof(struct zm_source_hooks, resume));
    h->opaque = calls;
    h->stop = count_stop;
    /* Params up to compression: the rest, canary, must be defaults. */
    struct zm_params *p = old_struct(pbuf, sizeof(pbuf),
                                     offsetof(struct zm_params, max_bandwidth));
    p->multifd_channels = 2;
    p->compression = ZM_CODEC_NONE;
    p->compression_level = ZM_LEVEL_DEFAULT;
    CHECK(zm_source_new(p, h, &src) == 0, "source from older structs: %s",
          zm_errmsg());
    if (!src) {
        return NULL;
    }
    t_fill_random(ram, sizeof(ram), 7);
    CHECK(zm_source_add_region(src, "ram", ram, sizeof(ram)) == 0, "%s",
          zm_errmsg());
    snprintf(uri, sizeof(uri), "file:/tmp/zm-test-abi-%d", (int)getpid());
    int ret = zm_source_run(src, uri);
    if (ret == -EOPNOTSUPP) {
        printf("no dirty tracking here (%s): skipped\n", zm_errmsg());
        exit(T_EXIT_SKIP);
    }
    CHECK(ret == 0, "save: %s", zm_errmsg());
    CHECK(zm_dest_new(NULL, NULL, &dst) == 0, "dest");
    CHECK(zm_dest_listen(dst, uri) == 0, "listen");
    CHECK(zm_dest_run(dst) == 0, "restore: %s", zm_errmsg());
    zm_dest_free(dst);
    unlink(uri + 5);
    return src;
}

static void test_migration_structs(void)
{
    struct hook_calls calls = { 0 };
    zm_source *src = migrate_with_old_structs(&calls);

    if (!src) {
        return;
    }
    CHECK(calls.stops == 1, "stop called %u times", calls.stops);

    struct zm_stats full = { .sizeof_stats = sizeof(full) };
    CHECK(zm_source_stats(src, &full) == 0, "stats: %s", zm_errmsg());
    CHECK(full.status == ZM_STATUS_COMPLETED && full.total == sizeof(ram),
          "full stats: status %d total %llu", full.status,
          (unsigned long long)full.total);

    unsigned char sbuf[sizeof(struct zm_stats) + 64];
    size_t cut = offsetof(struct zm_stats, transferred);
    struct zm_stats *old = old_struct(sbuf, sizeof(sbuf), cut);
    CHECK(zm_source_stats(src, old) == 0, "older stats: %s", zm_errmsg());
    CHECK(old->status == full.status && old->iterations == full.iterations &&
              old->sizeof_stats == cut,
          "older stats: the fields it has");
    CHECK(all_canary(sbuf + cut, sizeof(sbuf) - cut),
          "stats wrote past an older struct");
    struct zm_stats none = { .sizeof_stats = 1 };
    CHECK(zm_source_stats(src, &none) == -EINVAL, "sizeof_stats 1");

    /* Rounds: the caller's stride is its struct's size. */
    int n = zm_source_rounds(src, NULL, 0);
    CHECK(n >= 1 && n <= 8, "%d rounds", n);
    struct zm_round rounds[8] = { { .sizeof_round = sizeof(rounds[0]) } };
    CHECK(zm_source_rounds(src, rounds, 8) == n, "rounds, full size");
    size_t stride = offsetof(struct zm_round, wire_bytes);
    unsigned char rbuf[8 * sizeof(struct zm_round) + 64];
    old_struct(rbuf, sizeof(rbuf), stride);
    CHECK(zm_source_rounds(src, (struct zm_round *)(void *)rbuf, 8) == n,
          "rounds, older size");
    for (int i = 0; i < n && i < 8; i++) {
        struct zm_round r;
        memcpy(&r, rbuf + (size_t)i * stride, stride);
        CHECK(r.sizeof_round == stride && r.pages == rounds[i].pages &&
                  r.zero_pages == rounds[i].zero_pages,
              "round %d at stride %zu: %llu pages, %llu expected", i, stride,
              (unsigned long long)r.pages, (unsigned long long)rounds[i].pages);
    }
    size_t used = (size_t)(n < 8 ? n : 8) * stride;
    CHECK(all_canary(rbuf + used, sizeof(rbuf) - used),
          "rounds wrote past the caller's array");
    rounds[0].sizeof_round = 0;
    CHECK(zm_source_rounds(src, rounds, 8) == -EINVAL, "sizeof_round 0");
    CHECK(zm_source_rounds(src, NULL, 8) == n, "no array, a cap: the count");

    /* A second run is its own: its END counts its own pages, so the
     * destination takes it. */
    char uri[64];
    zm_dest *dst = NULL;
    snprintf(uri, sizeof(uri), "file:/tmp/zm-test-abi2-%d", (int)getpid());
    t_fill_random(ram, sizeof(ram), 8);
    CHECK(zm_source_run(src, uri) == 0, "second run: %s", zm_errmsg());
    CHECK(zm_source_stats(src, &full) == 0 &&
              full.normal + full.duplicate == PAGES,
          "second run: %llu pages counted, %u sent",
          (unsigned long long)(full.normal + full.duplicate), PAGES);
    CHECK(zm_dest_new(NULL, NULL, &dst) == 0 && zm_dest_listen(dst, uri) == 0,
          "second run: dest");
    CHECK(zm_dest_run(dst) == 0, "second run restored: %s", zm_errmsg());
    zm_dest_free(dst);
    unlink(uri + 5);
    zm_source_free(src);

    /* Hooks and params that state no size are refused, not guessed. */
    struct zm_source_hooks bad_hooks = { .sizeof_hooks = 0 };
    struct zm_params bad_params = { .sizeof_params = 2 };
    zm_source *s2 = NULL;
    CHECK(zm_source_new(NULL, &bad_hooks, &s2) == -EINVAL, "sizeof_hooks 0");
    CHECK(zm_source_new(&bad_params, NULL, &s2) == -EINVAL, "sizeof_params 2");
    struct zm_dest_hooks bad_dh = { .sizeof_hooks = 0 };
    zm_dest *d2 = NULL;
    CHECK(zm_dest_new(NULL, &bad_dh, &d2) == -EINVAL, "dest sizeof_hooks 0");
    zm_source_free(s2);
    zm_dest_free(d2);
}

/* --compression auto's reports, to callers with older structs. */
static void test_auto_structs(void)
{
    struct zm_params p;
    char uri[64];
    zm_source *src = NULL;

    zm_params_init(&p);
    p.compression = ZM_COMPRESSION_AUTO;
    CHECK(zm_source_new(&p, NULL, &src) == 0, "auto source: %s", zm_errmsg());
    if (!src) {
        return;
    }
    zm_source_add_region(src, "ram", ram, sizeof(ram));
    snprintf(uri, sizeof(uri), "file:/tmp/zm-test-abi3-%d", (int)getpid());
    CHECK(zm_source_run(src, uri) == 0, "auto save: %s", zm_errmsg());
    unlink(uri + 5);

    struct zm_auto_method_info full[16] = { { .sizeof_info =
                                                  sizeof(full[0]) } };
    int n = zm_source_auto_methods(src, full, 16);
    CHECK(n >= 2 && n <= 16, "%d methods", n);
    size_t stride = offsetof(struct zm_auto_method_info, batches);
    unsigned char buf[16 * sizeof(struct zm_auto_method_info) + 64];
    old_struct(buf, sizeof(buf), stride);
    CHECK(zm_source_auto_methods(src, (void *)buf, 16) == n,
          "methods, older size");
    for (int i = 0; i < n && i < 16; i++) {
        struct zm_auto_method_info m;
        memcpy(&m, buf + (size_t)i * stride, stride);
        CHECK(m.sizeof_info == stride && m.codec == full[i].codec &&
                  m.level == full[i].level,
              "method %d at stride %zu: %d:%d", i, stride, m.codec, m.level);
    }
    size_t used = (size_t)(n < 16 ? n : 16) * stride;
    CHECK(all_canary(buf + used, sizeof(buf) - used),
          "methods wrote past the caller's array");

    int np = zm_source_auto_timeline(src, NULL, 0);
    CHECK(np >= 0, "%d points", np);
    stride = offsetof(struct zm_auto_point, level);
    unsigned char pbuf[4 * sizeof(struct zm_auto_point) + 64];
    old_struct(pbuf, sizeof(pbuf), stride);
    CHECK(zm_source_auto_timeline(src, (void *)pbuf, 4) == np,
          "timeline, older size");
    /* The first point's size member is the caller's own. */
    used = np > 0 ? (size_t)(np < 4 ? np : 4) * stride : sizeof(size_t);
    CHECK(all_canary(pbuf + used, sizeof(pbuf) - used),
          "timeline wrote past the caller's array");
    full[0].sizeof_info = 0;
    CHECK(zm_source_auto_methods(src, full, 16) == -EINVAL, "sizeof_info 0");
    zm_source_free(src);
}

int main(void)
{
    test_packet_info();
    test_migration_structs();
    test_auto_structs();
    return t_exit();
}
