/*
 * fuzz_stream.c - a whole migration stream, as zm_dest_run() reads it from
 * a file: HELLO, LAYOUT, the data frames of every channel, DEVICE_STATE,
 * END and VERIFY (src/migrate/destination.c, doc/wire-format.md)
 *
 * The input is the file.  The destination has two registered regions,
 * "ram" (64 pages) and "rom" (3 pages), zero at the start of each run,
 * each between two PROT_NONE pages.  An input whose LAYOUT names at most
 * 1 MiB in all is run a second time by a destination that registers
 * nothing and maps the layout it reads.
 *
 * Properties:
 *
 *   - nothing crashes, leaks or touches memory outside its buffers and
 *     regions (sanitizers, guard pages);
 *   - zm_dest_run() returns 0, or an error a stream can cause with a
 *     message of its own; the stats say completed exactly when it returned
 *     0, failed otherwise;
 *   - no page is written before the handshake takes the layout, and a
 *     layout taken is the registered 67 pages;
 *   - the device state reaches the load_state hook once in a run that
 *     completes, and at most once, with at most ZM_MAX_DEVICE_STATE bytes,
 *     in one that fails; in a failed run only after VERIFY was asked for
 *     (the state comes before the page hashes);
 *   - once the registered destination has taken the layout, the mapping
 *     one gives the same result, counters and load_state calls, with the
 *     same regions holding the same bytes: only adopt_layout() differs.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "channel/channel.h"
#include "common/endian_util.h"
#include "fuzz.h"
#include "zmigrate.h"

#define PAGE 4096u
#define MAPPED_MAX (1u << 20)

static const struct {
    const char *name;
    size_t pages;
} regions[] = { { "ram", 64 }, { "rom", 3 } };
#define NREGIONS (sizeof(regions) / sizeof(regions[0]))

/* Each region lies between two PROT_NONE pages: any access past it faults. */
static unsigned char *region_mem[NREGIONS];
static unsigned char *mapped_copy[NREGIONS];
static int file_fd;
static char uri[64];

static unsigned load_calls;
static size_t load_len;

struct outcome {
    int ret;
    struct zm_stats st;
    unsigned load_calls;
};

static void setup(void)
{
    file_fd = memfd_create("fuzz_stream", MFD_CLOEXEC);
    FUZZ_CHECK(file_fd >= 0, "memfd_create: %s", strerror(errno));
    snprintf(uri, sizeof(uri), "file:/proc/self/fd/%d", file_fd);
    for (unsigned r = 0; r < NREGIONS; r++) {
        size_t len = regions[r].pages * PAGE;
        unsigned char *m = mmap(NULL, len + 2 * PAGE, PROT_NONE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        FUZZ_CHECK(m != MAP_FAILED &&
                       mprotect(m + PAGE, len, PROT_READ | PROT_WRITE) == 0,
                   "mmap: %s", strerror(errno));
        region_mem[r] = m + PAGE;
        mapped_copy[r] = malloc(len);
        FUZZ_CHECK(mapped_copy[r], "out of memory");
    }
}

static int load_state(void *opaque, const void *buf, size_t len)
{
    (void)opaque;
    /* The whole of it must be readable: ASan checks this sum's reads. */
    unsigned sum = 0;
    for (size_t i = 0; i < len; i++) {
        sum += ((const unsigned char *)buf)[i];
    }
    (void)sum;
    load_calls++;
    load_len = len;
    return 0;
}

static bool all_zero(const unsigned char *p, size_t len)
{
    return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

static bool expected_error(int ret)
{
    switch (ret) {
    case -EBADMSG:      /* a malformed frame, packet or layout, or a
                         * frame larger than its kind allows */
    case -EPROTO:       /* a well-formed one that makes no sense here */
    case -ERANGE:       /* a page outside its region */
    case -EMSGSIZE:     /* a packet of more pages than HELLO allows */
    case -ECONNRESET:   /* the file ends before the migration does */
    case -ECONNREFUSED: /* a REFUSE or FAIL frame where a control one goes */
        return true;
    default:
        return false;
    }
}

/*
 * Sum of the LAYOUT's region sizes, read with the library's own decoders,
 * or UINT64_MAX if the handshake would refuse it anyway.
 */
static uint64_t layout_total(const uint8_t *data, size_t size)
{
    static struct zm_layout_region layout[ZM_MAX_REGIONS];
    const size_t at = ZM_FRAME_HEADER_SIZE + ZM_HELLO_SIZE;
    struct zm_hello hello;
    unsigned n;
    uint64_t total = 0;

    if (size < at + ZM_FRAME_HEADER_SIZE ||
        zm_hello_decode(data + ZM_FRAME_HEADER_SIZE, ZM_HELLO_SIZE, &hello) <
            0) {
        return UINT64_MAX;
    }
    uint32_t len = zm_get_le32(data + at + 4);
    if (len > size - at - ZM_FRAME_HEADER_SIZE ||
        zm_layout_decode(data + at + ZM_FRAME_HEADER_SIZE, len, hello.page_size,
                         layout, &n) < 0) {
        return UINT64_MAX;
    }
    for (unsigned i = 0; i < n; i++) {
        if (layout[i].size > MAPPED_MAX - total) {
            return UINT64_MAX;
        }
        total += layout[i].size;
    }
    return total;
}

/* Runs one destination on the file; registered: into region_mem. */
static struct outcome run(bool registered, bool verify, zm_dest **out)
{
    struct zm_params params;
    struct zm_dest_hooks hooks = { .sizeof_hooks = sizeof(hooks),
                                   .load_state = load_state };
    struct outcome o;
    zm_dest *dst;

    zm_params_init(&params);
    FUZZ_CHECK(zm_dest_new(&params, &hooks, &dst) == 0, "zm_dest_new");
    for (unsigned r = 0; registered && r < NREGIONS; r++) {
        FUZZ_CHECK(zm_dest_add_region(dst, regions[r].name, region_mem[r],
                                      regions[r].pages * PAGE) == 0,
                   "zm_dest_add_region");
    }
    FUZZ_CHECK(zm_dest_listen(dst, uri) == 0, "zm_dest_listen");
    load_calls = 0;
    /* The message is per thread and never cleared: set one ("no region
     * 999") that a run failing without its own would leave in place. */
    zm_dest_region(dst, 999, NULL, NULL, NULL);
    char before[256];
    snprintf(before, sizeof(before), "%s", zm_errmsg());
    o.ret = zm_dest_run(dst);
    o.load_calls = load_calls;
    o.st.sizeof_stats = sizeof(o.st);
    zm_dest_stats(dst, &o.st);
    FUZZ_CHECK(o.ret == 0 || expected_error(o.ret), "returned %d (%s): %s",
               o.ret, strerror(-o.ret), zm_errmsg());
    FUZZ_CHECK(o.ret == 0 || (zm_errmsg()[0] && strcmp(zm_errmsg(), before)),
               "an error without a message of its own");
    FUZZ_CHECK(o.st.status ==
                   (o.ret == 0 ? ZM_STATUS_COMPLETED : ZM_STATUS_FAILED),
               "status %s after %d", zm_status_name(o.st.status), o.ret);
    /* VERIFY comes after the state, so only it can fail a loaded run. */
    FUZZ_CHECK(load_calls <= 1 && (o.ret < 0 || load_calls == 1) &&
                   (o.ret == 0 || load_calls == 0 || verify),
               "load_state called %u times, then %d", load_calls, o.ret);
    FUZZ_CHECK(load_calls == 0 || load_len <= ZM_MAX_DEVICE_STATE,
               "a device state of %zu bytes", load_len);
    *out = dst;
    return o;
}

/* Counters a destination keeps; the same stream must give the same. */
static bool same_counts(const struct zm_stats *a, const struct zm_stats *b)
{
    return a->total == b->total && a->transferred == b->transferred &&
           a->normal == b->normal && a->duplicate == b->duplicate &&
           a->normal_bytes == b->normal_bytes &&
           a->iterations == b->iterations &&
           a->payload_bytes == b->payload_bytes && a->raw_bytes == b->raw_bytes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    zm_dest *dst;

    if (!ready) {
        setup();
        ready = true;
    }
    FUZZ_CHECK(
        ftruncate(file_fd, 0) == 0 &&
            (size == 0 || pwrite(file_fd, data, size, 0) == (ssize_t)size),
        "cannot write the memfd: %s", strerror(errno));
    for (unsigned r = 0; r < NREGIONS; r++) {
        memset(region_mem[r], 0, regions[r].pages * PAGE);
    }

    /* HELLO's flags: the byte at 11 of its body, after an 8-byte frame
     * header.  The destination refuses unknown ones, so this is exact. */
    const bool verify = size > 19 && data[19] & 1;
    struct outcome reg = run(true, verify, &dst);
    zm_dest_free(dst);
    /* The handshake took the layout exactly when it counted the RAM. */
    const bool taken = reg.st.total != 0;
    FUZZ_CHECK(!taken || reg.st.total == (64 + 3) * PAGE,
               "a layout of %llu bytes matched",
               (unsigned long long)reg.st.total);
    for (unsigned r = 0; !taken && r < NREGIONS; r++) {
        FUZZ_CHECK(all_zero(region_mem[r], regions[r].pages * PAGE),
                   "region '%s' written before a handshake succeeded",
                   regions[r].name);
    }

    if (layout_total(data, size) > MAPPED_MAX) {
        FUZZ_CHECK(!taken, "a layout of 67 pages read as more than 1 MiB");
        return 0;
    }
    struct outcome map = run(false, verify, &dst);
    if (taken) {
        /* Only adopt_layout() differs: everything after must agree. */
        FUZZ_CHECK(map.ret == reg.ret && map.load_calls == reg.load_calls &&
                       same_counts(&map.st, &reg.st),
                   "registered regions gave %d, mapped ones %d: %s", reg.ret,
                   map.ret, zm_errmsg());
        FUZZ_CHECK(zm_dest_region_count(dst) == NREGIONS, "%u regions",
                   zm_dest_region_count(dst));
        for (unsigned r = 0; r < NREGIONS; r++) {
            const char *name;
            void *base;
            size_t len;
            FUZZ_CHECK(zm_dest_region(dst, r, &name, &base, &len) == 0,
                       "zm_dest_region(%u)", r);
            /* Registered regions were reordered to the layout's order. */
            unsigned want = strcmp(name, regions[0].name) == 0 ? 0 : 1;
            FUZZ_CHECK(strcmp(name, regions[want].name) == 0 &&
                           len == regions[want].pages * PAGE,
                       "mapped region %u is '%s' of %zu bytes", r, name, len);
            memcpy(mapped_copy[want], base, len);
        }
        for (unsigned r = 0; r < NREGIONS; r++) {
            FUZZ_CHECK(memcmp(mapped_copy[r], region_mem[r],
                              regions[r].pages * PAGE) == 0,
                       "region '%s' differs between the two destinations",
                       regions[r].name);
        }
    }
    zm_dest_free(dst);
    return 0;
}
