/*
 * fuzz_packet.c - the receive path: zm_decode() and zm_packet_peek() on
 * arbitrary bytes
 *
 * The input is one packet, as it would arrive.  One decoder, made once,
 * takes every input, as a receiving channel would: 4 KiB pages, batches of
 * up to 64 pages, every codec built, and three regions:
 *
 *   0: 64 pages;
 *   1: 3 pages and a half page past them that must never be written;
 *   2: 2^32 pages (16 TiB of address space, reserved, not committed), the
 *      most a 32-bit index reaches, with an inaccessible page after it;
 *      only its first and last 64 pages are checked for stray writes.
 *      Where the address space is not there to reserve, region 2 has no
 *      pages.
 *
 * Properties:
 *
 *   - nothing crashes, leaks or touches memory it should not (sanitizers);
 *   - zm_decode() returns 0 or one of its documented errors, with a
 *     message; zm_packet_peek() agrees with it: on the header-only prefix
 *     and the whole packet it gives the same answer, a header it refuses
 *     is refused by the decoder with the same error, and a packet the
 *     decoder takes has the size and the info that peek reported;
 *   - a packet, taken or refused, changes no page outside those its index
 *     table names (the regions start each input filled with a canary);
 *   - a packet taken leaves the pages it names in a state that matches
 *     its checksum: normal pages hash, in table order, to the data hash the
 *     checksum was made with, and zero pages are zero; decoding it again
 *     gives the same result;
 *   - a raw packet read as a channel reads it, payload straight into the
 *     pages (zm_packet_reader, engine/packet.h), gets zm_decode()'s answer,
 *     except when its table names a normal page twice: then only the last
 *     copy is there to check, and either answer leaves that page as the
 *     packet's last copy of it.
 *
 * A mutated packet almost never carries the right checksum, so under
 * libFuzzer a custom mutator repairs most of the packets it makes: it
 * decompresses the payload (when it still decompresses) and writes the
 * checksum that matches, so that packets with odd tables, regions and
 * counts reach the code that commits pages.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "codec/codec.h"
#include "common/endian_util.h"
#include "fuzz.h"
#include "common/hash.h"
#include "engine/packet.h"
#include "zmigrate.h"

#define PAGE 4096u
#define MAX_PAGES 64u
#define CANARY 0xa5
#define REGIONS 3
#define WINDOW 64u /* pages checked at each end of region 2 */

static uint64_t region_size[REGIONS] = {
    64 * PAGE,
    3 * PAGE + PAGE / 2, /* the half page past the last whole one is refused */
    (uint64_t)PAGE << 32,
};

static unsigned char *region_mem[REGIONS];
static unsigned char canary_page[PAGE];
static zm_decoder *dec;

static uint64_t region_pages(int r)
{
    return region_size[r] / PAGE;
}

/*
 * The slot of page p of region r in struct named, or -1 for a page of
 * region 2 between its two windows (not checked).
 */
static int slot_of(int r, uint64_t p)
{
    uint64_t pages = region_pages(r);

    if (r < 2 || pages <= 2 * WINDOW || p < WINDOW) {
        return (int)p;
    }
    if (p >= pages - WINDOW) {
        return (int)(WINDOW + p - (pages - WINDOW));
    }
    return -1;
}

/* The pages of region r that are checked: every one, or the windows. */
static uint64_t checked_page(int r, unsigned i)
{
    uint64_t pages = region_pages(r);

    return r < 2 || i < WINDOW ? i : pages - 2 * WINDOW + i;
}

static unsigned checked_count(int r)
{
    uint64_t pages = region_pages(r);

    return r < 2 || pages < 2 * WINDOW ? (unsigned)pages : 2 * WINDOW;
}

/* 16 TiB of address space, no memory: pages appear as they are written. */
static unsigned char *map_huge_region(void)
{
    if (sizeof(size_t) < 8) {
        return NULL;
    }
    size_t size = (size_t)region_size[2];
    unsigned char *m = mmap(NULL, size + PAGE, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        return NULL;
    }
    if (mprotect(m + size, PAGE, PROT_NONE) != 0) {
        munmap(m, size + PAGE);
        return NULL;
    }
    return m;
}

static void setup(void)
{
    struct zm_region_map maps[REGIONS];

    memset(canary_page, CANARY, sizeof(canary_page));
    for (int r = 0; r < 2; r++) {
        /* Exactly the registered size, so that ASan sees any overrun. */
        region_mem[r] = malloc(region_size[r]);
        FUZZ_CHECK(region_mem[r], "out of memory");
    }
    region_mem[2] = map_huge_region();
    if (!region_mem[2]) {
        region_size[2] = 0;
    }
    for (int r = 0; r < REGIONS && region_mem[r]; r++) {
        for (unsigned i = 0; i < checked_count(r); i++) {
            memcpy(region_mem[r] + checked_page(r, i) * PAGE, canary_page,
                   PAGE);
        }
        uint64_t whole = region_pages(r) * PAGE;
        memset(region_mem[r] + whole, CANARY, region_size[r] - whole);
    }
    for (int r = 0; r < REGIONS; r++) {
        maps[r] = (struct zm_region_map){ region_mem[r], region_size[r] };
    }
    struct zm_decoder_options opts = {
        .sizeof_options = sizeof(opts),
        .page_size = PAGE,
        .max_pages = MAX_PAGES,
        .regions = maps,
        .region_count = REGIONS,
    };
    int ret = zm_decoder_new(&opts, &dec);
    FUZZ_CHECK(ret == 0, "zm_decoder_new: %s", zm_errmsg());
}

static bool same_info(const struct zm_packet_info *a,
                      const struct zm_packet_info *b)
{
    return a->size == b->size && a->region == b->region &&
           a->page_size == b->page_size && a->pages == b->pages &&
           a->zero_pages == b->zero_pages && a->data_size == b->data_size &&
           a->payload_size == b->payload_size && a->codec == b->codec &&
           a->level == b->level && a->raw == b->raw;
}

/* Pages the input may change: those its table names. */
struct named {
    bool page[REGIONS][2 * WINDOW]; /* by slot_of() */
    const uint8_t *table;           /* the entries that name pages */
    size_t entries;
    int region; /* -1: none */
};

static void find_named(const uint8_t *data, size_t size,
                       const struct zm_packet_info *info, bool peeked,
                       struct named *n)
{
    memset(n, 0, sizeof(*n));
    n->region = -1;
    if (!peeked || info->region >= REGIONS) {
        return;
    }
    n->region = (int)info->region;
    n->table = data + ZM_PACKET_HEADER_SIZE;
    n->entries = info->pages;
    if (n->entries > (size - ZM_PACKET_HEADER_SIZE) / 4) {
        n->entries = (size - ZM_PACKET_HEADER_SIZE) / 4;
    }
    for (size_t i = 0; i < n->entries; i++) {
        uint32_t index = zm_get_le32(n->table + 4 * i);
        if (index < region_pages(n->region) && slot_of(n->region, index) >= 0) {
            n->page[n->region][slot_of(n->region, index)] = true;
        }
    }
}

/* Every checked page not named, and the half page, holds the canary. */
static void check_untouched(const struct named *n)
{
    for (int r = 0; r < REGIONS && region_mem[r]; r++) {
        for (unsigned i = 0; i < checked_count(r); i++) {
            uint64_t p = checked_page(r, i);
            FUZZ_CHECK(
                n->page[r][slot_of(r, p)] ||
                    memcmp(region_mem[r] + p * PAGE, canary_page, PAGE) == 0,
                "page %llu of region %d written, but not named",
                (unsigned long long)p, r);
        }
        uint64_t whole = region_pages(r) * PAGE;
        FUZZ_CHECK(memcmp(region_mem[r] + whole, canary_page,
                          region_size[r] - whole) == 0,
                   "the partial page of region %d written", r);
    }
}

/* After a success: the pages in memory are what the checksum covers. */
static void check_pages(const uint8_t *data, const struct zm_packet_info *info)
{
    const uint8_t *table = data + ZM_PACKET_HEADER_SIZE;
    uint32_t normal = info->pages - info->zero_pages;
    unsigned char *base = region_mem[info->region];

    /* A page named twice holds only its last copy: nothing to compare. */
    for (uint32_t i = 0; i < info->pages; i++) {
        for (uint32_t j = 0; j < i; j++) {
            if (zm_get_le32(table + 4 * i) == zm_get_le32(table + 4 * j)) {
                return;
            }
        }
    }
    zm_hash_state state;
    zm_hash_reset(&state, 0);
    for (uint32_t i = 0; i < normal; i++) {
        zm_hash_update(&state, base + (size_t)zm_get_le32(table + 4 * i) * PAGE,
                       PAGE);
    }
    uint64_t sum =
        zm_packet_checksum(data, info->pages, zm_hash_digest(&state));
    FUZZ_CHECK(sum == zm_get_le64(data + ZM_PKT_CHECKSUM_OFFSET),
               "decoded pages do not match the packet's checksum");
    for (uint32_t i = normal; i < info->pages; i++) {
        const unsigned char *page =
            base + (size_t)zm_get_le32(table + 4 * i) * PAGE;
        for (uint32_t b = 0; b < PAGE; b++) {
            FUZZ_CHECK(page[b] == 0, "zero page %u not zero",
                       zm_get_le32(table + 4 * i));
        }
    }
}

/* Back to the canary; pages of region 2 between the windows are dropped. */
static void reset_named(const struct named *n)
{
    if (n->region < 0) {
        return;
    }
    for (size_t i = 0; i < n->entries; i++) {
        uint64_t index = zm_get_le32(n->table + 4 * i);
        if (index >= region_pages(n->region)) {
            continue;
        }
        unsigned char *page = region_mem[n->region] + index * PAGE;
        if (slot_of(n->region, index) >= 0) {
            memcpy(page, canary_page, PAGE);
        } else {
            madvise(page, PAGE, MADV_DONTNEED);
        }
    }
}

static bool normal_page_twice(const uint8_t *data, uint32_t normal)
{
    const uint8_t *table = data + ZM_PACKET_HEADER_SIZE;

    for (uint32_t i = 0; i < normal; i++) {
        for (uint32_t j = 0; j < i; j++) {
            if (zm_get_le32(table + 4 * i) == zm_get_le32(table + 4 * j)) {
                return true;
            }
        }
    }
    return false;
}

/*
 * The channel's path for a raw packet; ret is zm_decode()'s answer, and
 * the pages it named are back to the canary.
 */
static void check_scatter(const uint8_t *data, size_t size, int ret,
                          const struct named *named)
{
    struct zm_packet_reader rd;
    struct iovec iov[MAX_PAGES];
    struct zm_packet_info got = { .sizeof_info = sizeof(got) };
    int iovcnt = 0;

    if (zm_packet_reader_start(&rd, dec, data, size) < 0 ||
        !(rd.h.flags & ZM_PKT_RAW) || rd.h.normal_count == 0) {
        return; /* the same path as zm_decode() from here */
    }
    int sret = zm_packet_reader_table(&rd, data, iov, &iovcnt);
    if (sret == 1) {
        size_t off = rd.head_size;
        for (int i = 0; i < iovcnt; i++) {
            FUZZ_CHECK(off + iov[i].iov_len <= size, "scatter: iov too long");
            memcpy(iov[i].iov_base, data + off, iov[i].iov_len);
            off += iov[i].iov_len;
        }
        FUZZ_CHECK(off == size, "scatter: iov covers %zu of %zu bytes", off,
                   size);
        sret = zm_packet_reader_end(&rd, data, &got);
    }
    FUZZ_CHECK(sret == ret || normal_page_twice(data, rd.h.normal_count),
               "scatter: %d (%s), zm_decode: %d", sret, zm_errmsg(), ret);
    check_untouched(named);
    if (sret == 0) {
        check_pages(data, &got);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zm_packet_info peek = { .sizeof_info = sizeof(peek) };
    struct zm_packet_info head = { .sizeof_info = sizeof(head) };
    struct zm_packet_info got = { .sizeof_info = sizeof(got) };
    struct named named;

    if (!dec) {
        setup();
    }

    int peek_ret = zm_packet_peek(data, size, &peek);
    FUZZ_CHECK(peek_ret == 0 || peek_ret == -EBADMSG || peek_ret == -EPROTO ||
                   peek_ret == -EMSGSIZE,
               "zm_packet_peek returned %d", peek_ret);
    if (size < ZM_PACKET_HEADER_SIZE) {
        FUZZ_CHECK(peek_ret == -EBADMSG, "peek of %zu bytes: %d", size,
                   peek_ret);
    } else {
        /* The header alone is all peek needs. */
        int head_ret = zm_packet_peek(data, ZM_PACKET_HEADER_SIZE, &head);
        FUZZ_CHECK(head_ret == peek_ret,
                   "peek: %d on the header, %d on the packet", head_ret,
                   peek_ret);
        FUZZ_CHECK(peek_ret < 0 || same_info(&head, &peek),
                   "peek: the header alone gives other info");
    }
    if (peek_ret == 0) {
        FUZZ_CHECK(peek.pages > 0 && peek.pages <= ZM_MAX_BATCH_PAGES &&
                       peek.zero_pages <= peek.pages,
                   "peek: %u pages, %u zero", peek.pages, peek.zero_pages);
        FUZZ_CHECK(peek.size == ZM_PACKET_HEADER_SIZE + 4 * peek.pages +
                                    peek.payload_size,
                   "peek: size %u", peek.size);
    }
    find_named(data, size, &peek, peek_ret == 0, &named);

    int ret = zm_decode(dec, data, size, &got);
    FUZZ_CHECK(ret == 0 || ret == -EBADMSG || ret == -EPROTO ||
                   ret == -ERANGE || ret == -EMSGSIZE,
               "zm_decode returned %d (%s)", ret, zm_errmsg());
    if (ret < 0) {
        FUZZ_CHECK(zm_errmsg()[0] != '\0', "zm_decode: %d without a message",
                   ret);
    }
    if (peek_ret < 0) {
        FUZZ_CHECK(ret == peek_ret,
                   "peek refused the header with %d, zm_decode returned %d",
                   peek_ret, ret);
    }
    check_untouched(&named);

    if (ret == 0) {
        FUZZ_CHECK(peek_ret == 0, "decoded a packet peek refused");
        FUZZ_CHECK(same_info(&peek, &got), "decode and peek disagree");
        FUZZ_CHECK(got.size == size, "decoded %zu bytes, info says %u", size,
                   got.size);
        FUZZ_CHECK(got.region < REGIONS && got.pages <= MAX_PAGES &&
                       got.page_size == PAGE,
                   "decoded region %u, %u pages of %u bytes", got.region,
                   got.pages, got.page_size);
        check_pages(data, &got);

        /* The decoder keeps codec state between packets: once more. */
        ret = zm_decode(dec, data, size, NULL);
        FUZZ_CHECK(ret == 0, "second decode returned %d (%s)", ret,
                   zm_errmsg());
        check_untouched(&named);
        check_pages(data, &got);
    }
    reset_named(&named);
    check_scatter(data, size, ret, &named);
    reset_named(&named);
    return 0;
}

#ifdef ZM_LIBFUZZER
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed);

/* Rewrites the checksum of the packet in data to match its contents. */
static void fix_checksum(uint8_t *data, size_t size)
{
    static void *states[ZM_CODEC_COUNT];
    static unsigned char pages[MAX_PAGES * PAGE];
    struct zm_packet_header h;

    if (zm_packet_parse_header(data, size, &h) < 0) {
        return;
    }
    /* Bytes inserted or erased: let the payload size follow. */
    uint64_t table_end =
        ZM_PACKET_HEADER_SIZE + 4 * ((uint64_t)h.normal_count + h.zero_count);
    if (zm_packet_size(&h) != size && size >= table_end) {
        zm_put_le32(data + 24, (uint32_t)(size - table_end));
        if (zm_packet_parse_header(data, size, &h) < 0) {
            return;
        }
    }
    if (zm_packet_size(&h) != size) {
        return;
    }
    uint32_t count = h.normal_count + h.zero_count;
    size_t data_size = (size_t)h.normal_count << h.page_shift;
    const uint8_t *payload = data + ZM_PACKET_HEADER_SIZE + 4 * (size_t)count;
    const uint8_t *contents = payload;

    if (!(h.flags & ZM_PKT_RAW) && h.normal_count > 0) {
        const struct zm_codec_ops *codec = zm_codec_get(h.codec);
        if (!codec || data_size > sizeof(pages)) {
            return;
        }
        if (!states[h.codec] &&
            codec->init(&states[h.codec], codec->default_level,
                        ZM_CODEC_DECOMPRESS) < 0) {
            return;
        }
        if (codec->decompress(states[h.codec], payload, h.payload_size, pages,
                              data_size) < 0) {
            return;
        }
        contents = pages;
    }
    zm_put_le64(
        data + ZM_PKT_CHECKSUM_OFFSET,
        zm_packet_checksum(data, count, zm_hash64(contents, data_size, 0)));
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed)
{
    size = LLVMFuzzerMutate(data, size, max_size);
    /* A quarter keep their damage: the checks must refuse those. */
    if (seed % 4 != 0) {
        fix_checksum(data, size);
    }
    return size;
}
#endif
