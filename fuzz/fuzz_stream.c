/*
 * fuzz_stream.c - a whole migration stream, as zm_dest_run() reads it from
 * a file: HELLO, LAYOUT, the data frames of every channel, DEVICE_STATE,
 * END and VERIFY (src/destination.c, doc/wire-format.md)
 *
 * The input is the file.  The destination has two registered regions,
 * "ram" (64 pages) and "rom" (3 pages), zero at the start of each run,
 * each between two guard pages full of a canary.  An input whose LAYOUT
 * names at most 1 MiB in all is run a second time by a destination that
 * registers nothing and maps the layout it reads.
 *
 * Properties:
 *
 *   - nothing crashes, leaks or reads outside its buffers (sanitizers);
 *   - zm_dest_run() returns 0, or an error a stream can cause with a
 *     message; the stats say completed exactly when it returned 0;
 *   - the guard pages keep their canary;
 *   - the device state reaches the load_state hook once in a run that
 *     completes, and at most once, with at most ZM_MAX_DEVICE_STATE bytes,
 *     in one that fails; in a failed run only after VERIFY was asked for
 *     (the state comes before the page hashes);
 *   - a stream the registered destination takes, the mapping one takes as
 *     well, with the same regions and the same bytes in them.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "zmigrate.h"

#define PAGE 4096u
#define CANARY 0xa5
#define MAPPED_MAX (1u << 20)

static const struct {
    const char *name;
    size_t pages;
} regions[] = { { "ram", 64 }, { "rom", 3 } };
#define NREGIONS (sizeof(regions) / sizeof(regions[0]))

static unsigned char *region_mem[NREGIONS]; /* guard page, region, guard */
static unsigned char *mapped_copy[NREGIONS];
static unsigned char canary_page[PAGE];
static int file_fd;
static char uri[64];

static struct {
    unsigned calls;
    size_t len;
} loaded;

static void setup(void)
{
    file_fd = memfd_create("fuzz_stream", MFD_CLOEXEC);
    FUZZ_CHECK(file_fd >= 0, "memfd_create: %s", strerror(errno));
    snprintf(uri, sizeof(uri), "file:/proc/self/fd/%d", file_fd);
    memset(canary_page, CANARY, sizeof(canary_page));
    for (unsigned r = 0; r < NREGIONS; r++) {
        region_mem[r] = malloc((regions[r].pages + 2) * PAGE);
        mapped_copy[r] = malloc(regions[r].pages * PAGE);
        FUZZ_CHECK(region_mem[r] && mapped_copy[r], "out of memory");
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
    loaded.calls++;
    loaded.len = len;
    return 0;
}

static bool expected_error(int ret)
{
    switch (ret) {
    case -EBADMSG:      /* a malformed frame, packet or layout */
    case -EPROTO:       /* a well-formed one that makes no sense here */
    case -ERANGE:       /* a page outside its region */
    case -EMSGSIZE:     /* a frame larger than its kind allows */
    case -ECONNRESET:   /* the file ends before the migration does */
    case -ECONNREFUSED: /* a REFUSE or FAIL frame in the file */
        return true;
    default:
        return false;
    }
}

/* Sum of the LAYOUT's region sizes, or UINT64_MAX if it cannot be read. */
static uint64_t layout_total(const uint8_t *data, size_t size)
{
    const size_t hello_end = 8 + 40;
    uint64_t total = 0;

    if (size < hello_end + 12) {
        return UINT64_MAX;
    }
    const uint8_t *p = data + hello_end + 8;
    size_t len = size - hello_end - 8;
    uint32_t count = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
    size_t pos = 4;
    for (uint32_t i = 0; i < count; i++) {
        if (len - pos < 9) {
            return UINT64_MAX;
        }
        uint64_t s = 0;
        for (int b = 7; b >= 0; b--) {
            s = s << 8 | p[pos + b];
        }
        if (s > MAPPED_MAX || total + s > MAPPED_MAX) {
            return UINT64_MAX;
        }
        total += s;
        pos += 9 + p[pos + 8];
        if (pos > len) {
            return UINT64_MAX;
        }
    }
    return total;
}

/* Runs one destination on the file; registered: into region_mem. */
static int run(bool registered, bool verify, zm_dest **out)
{
    struct zm_params params;
    struct zm_dest_hooks hooks = { .load_state = load_state };
    struct zm_stats st;
    zm_dest *dst;
    int ret;

    zm_params_init(&params);
    FUZZ_CHECK(zm_dest_new(&params, &hooks, &dst) == 0, "zm_dest_new");
    for (unsigned r = 0; registered && r < NREGIONS; r++) {
        FUZZ_CHECK(zm_dest_add_region(dst, regions[r].name,
                                      region_mem[r] + PAGE,
                                      regions[r].pages * PAGE) == 0,
                   "zm_dest_add_region");
    }
    FUZZ_CHECK(zm_dest_listen(dst, uri) == 0, "zm_dest_listen");
    loaded.calls = 0;
    ret = zm_dest_run(dst);
    zm_dest_stats(dst, &st);
    FUZZ_CHECK(ret == 0 || expected_error(ret), "returned %d (%s): %s", ret,
               strerror(-ret), zm_errmsg());
    FUZZ_CHECK(ret == 0 || zm_errmsg()[0], "an error without a message");
    FUZZ_CHECK((st.status == ZM_STATUS_COMPLETED) == (ret == 0),
               "status %s after %d", zm_status_name(st.status), ret);
    /* VERIFY comes after the state, so only it can fail a loaded run. */
    FUZZ_CHECK(loaded.calls <= 1 && (ret < 0 || loaded.calls == 1) &&
                   (ret == 0 || loaded.calls == 0 || verify),
               "load_state called %u times, then %d", loaded.calls, ret);
    FUZZ_CHECK(loaded.calls == 0 || loaded.len <= ZM_MAX_DEVICE_STATE,
               "a device state of %zu bytes", loaded.len);
    *out = dst;
    return ret;
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
        size_t len = regions[r].pages * PAGE;
        memcpy(region_mem[r], canary_page, PAGE);
        memset(region_mem[r] + PAGE, 0, len);
        memcpy(region_mem[r] + PAGE + len, canary_page, PAGE);
    }
    /* HELLO's flags: the byte at 11 of its body, after an 8-byte frame
     * header.  The destination refuses unknown ones, so this is exact. */
    const bool verify = size > 19 && data[19] & 1;
    int ret = run(true, verify, &dst);
    zm_dest_free(dst);
    for (unsigned r = 0; r < NREGIONS; r++) {
        size_t len = regions[r].pages * PAGE;
        FUZZ_CHECK(memcmp(region_mem[r], canary_page, PAGE) == 0 &&
                       memcmp(region_mem[r] + PAGE + len, canary_page, PAGE) ==
                           0,
                   "a guard page of region '%s' was written", regions[r].name);
    }

    if (layout_total(data, size) > MAPPED_MAX) {
        return 0;
    }
    int mapped_ret = run(false, verify, &dst);
    if (ret == 0) {
        FUZZ_CHECK(mapped_ret == 0,
                   "registered regions took it, mapped ones gave %d: %s",
                   mapped_ret, zm_errmsg());
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
            FUZZ_CHECK(memcmp(mapped_copy[r], region_mem[r] + PAGE,
                              regions[r].pages * PAGE) == 0,
                       "region '%s' differs between the two destinations",
                       regions[r].name);
        }
    }
    zm_dest_free(dst);
    return 0;
}
