/*
 * zmg_data.c - guest-like region content and the region checksum
 *
 * A region is 16 pages.  Each page gets one kind of content (log text,
 * records, pointer tables, sparse, zero or random) dealt from a fixed deck
 * that the region rotates by a hash, so every region has the same mix and
 * the compression ratio is the same in every part of RAM.  The content
 * depends on (seed, region, generation): each rewrite of a region changes
 * every non-zero page.  Only 32-bit integer arithmetic: the guest has no
 * libgcc and no SSE.
 */
#include "zmg_data.h"

enum page_kind {
    K_ZERO,
    K_SPARSE,
    K_RANDOM,
    K_TEXT,
    K_RECORDS,
    K_POINTERS,
};

static const uint8_t deck[ZMG_REGION_PAGES] = {
    K_TEXT,    K_RECORDS, K_RANDOM,   K_POINTERS, K_TEXT,   K_ZERO,
    K_RECORDS, K_ZERO,    K_TEXT,     K_RECORDS,  K_SPARSE, K_RANDOM,
    K_TEXT,    K_RECORDS, K_POINTERS, K_ZERO,
};

/* Words for log-like text; the generator favours the first ones, as
 * real text favours common words. */
#define NWORDS 128u
static const char words[NWORDS][12] = {
    "the",     "to",      "of",       "and",      "in",      "is",
    "for",     "on",      "device",   "error",    "memory",  "page",
    "with",    "not",     "at",       "from",     "by",      "this",
    "failed",  "kernel",  "port",     "link",     "queue",   "start",
    "stop",    "read",    "write",    "buffer",   "timeout", "reset",
    "driver",  "cpu",     "irq",      "pci",      "usb",     "eth0",
    "state",   "ready",   "enabled",  "disabled", "mapped",  "region",
    "status",  "request", "response", "client",   "server",  "user",
    "session", "open",    "close",    "file",     "path",    "value",
    "count",   "size",    "length",   "offset",   "address", "block",
    "sector",  "disk",    "volume",   "mount",    "network", "packet",
    "socket",  "bind",    "listen",   "accept",   "connect", "retry",
    "warning", "info",    "debug",    "notice",   "cache",   "flush",
    "sync",    "commit",  "journal",  "inode",    "dentry",  "thread",
    "process", "signal",  "handler",  "schedule", "task",    "worker",
    "pool",    "alloc",   "free",     "slab",     "object",  "table",
    "index",   "key",     "hash",     "node",     "tree",    "list",
    "entry",   "event",   "timer",    "clock",    "source",  "target",
    "config",  "option",  "module",   "loaded",   "version", "update",
    "http",    "GET",     "POST",     "200",      "404",     "OK",
    "json",    "id",      "name",     "type",     "data",    "true",
    "false",   "null",
};
static uint8_t word_len[NWORDS];

static const char hexdig[16] = "0123456789abcdef";

static uint32_t fmix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static void init_words(void)
{
    /* Racing CPUs store the same values: harmless. */
    for (uint32_t i = 0; i < NWORDS; i++) {
        uint8_t n = 0;
        while (n < sizeof(words[i]) && words[i][n] != '\0') {
            n++;
        }
        word_len[i] = n;
    }
}

static void gen_zero(uint32_t *w)
{
    __builtin_memset(w, 0, ZMG_PAGE_SIZE);
}

static void gen_sparse(uint32_t *w, uint32_t s)
{
    __builtin_memset(w, 0, ZMG_PAGE_SIZE);
    for (uint32_t i = 0; i < 16; i++) {
        const uint32_t r = xs32(&s);
        w[r & 1023] = r >> 10;
    }
}

static void gen_random(uint32_t *w, uint32_t s)
{
    for (uint32_t i = 0; i < ZMG_PAGE_SIZE / 4; i++) {
        w[i] = xs32(&s);
    }
}

static uint8_t *put_dec(uint8_t *p, uint32_t v, uint32_t width, uint8_t pad)
{
    uint8_t tmp[10];
    uint32_t n = 0;
    do {
        tmp[n++] = (uint8_t)('0' + v % 10);
        v /= 10;
    } while (v != 0 && n < sizeof(tmp));
    while (n < width && n < sizeof(tmp)) {
        tmp[n++] = pad;
    }
    while (n != 0) {
        *p++ = tmp[--n];
    }
    return p;
}

static uint8_t *put_word(uint8_t *p, uint32_t i)
{
    /* Copy the whole slot, keep only the word: no per-byte loop. */
    __builtin_memcpy(p, words[i], sizeof(words[i]));
    return p + word_len[i];
}

/* Kernel-log-like lines: "[ 1234.567890] word: word word ... 42\n". */
static void gen_text(uint8_t *p, uint32_t s)
{
    uint8_t *const end = p + ZMG_PAGE_SIZE;
    uint32_t sec = s & 0xffff;
    uint32_t usec = (s >> 8) % 1000000u;

    /* A line is at most 15 + 12 + 10 * 12 + 12 + 1 bytes. */
    while (p + 160 <= end) {
        uint32_t r = xs32(&s);
        usec += r & 0xffff;
        if (usec >= 1000000u) {
            usec -= 1000000u;
            sec++;
        }
        *p++ = '[';
        p = put_dec(p, sec, 5, ' ');
        *p++ = '.';
        p = put_dec(p, usec, 6, '0');
        *p++ = ']';
        *p++ = ' ';
        p = put_word(p, 8 + ((r >> 16) & 31));
        *p++ = ':';
        const uint32_t nw = 2 + ((r >> 21) & 7);
        for (uint32_t i = 0; i < nw; i++) {
            const uint32_t q = xs32(&s);
            *p++ = ' ';
            p = put_word(p, q & (q >> 7) & (q >> 14) & (NWORDS - 1));
        }
        switch ((r >> 24) & 7) {
        case 0:
        case 1:
            *p++ = ' ';
            p = put_dec(p, xs32(&s) & 0xfff, 0, '0');
            break;
        case 2: {
            const uint32_t v = 0xc1000000u + (xs32(&s) & 0xffff0u);
            *p++ = ' ';
            *p++ = '0';
            *p++ = 'x';
            for (int sh = 28; sh >= 0; sh -= 4) {
                *p++ = (uint8_t)hexdig[(v >> sh) & 15];
            }
            break;
        }
        default:
            break;
        }
        *p++ = '\n';
    }
    while (p < end - 1) {
        *p++ = ' ';
    }
    *p = '\n';
}

/* An array of 32-byte structs: ids, flags, list pointers, small counts. */
static void gen_records(uint32_t *w, uint32_t s)
{
    const uint32_t id = s >> 12;
    const uint32_t base = 0xc1000000u | ((s & 0xfff) << 12);
    uint32_t t = s & 0xffffff;

    for (uint32_t i = 0; i < ZMG_PAGE_SIZE / 32; i++, w += 8) {
        const uint32_t r = xs32(&s);
        t += (r >> 30) == 0 ? 1 : 0;
        w[0] = id + i;
        w[1] = (r & 7) == 0 ? 0x11u : 0x01u;
        w[2] = base + ((r >> 3) & 0x3f) * 32;
        w[3] = ((r >> 9) & 3) | (((r >> 11) & 0x3f) << 16);
        w[4] = 1;
        w[5] = t;
        w[6] = 0;
        w[7] = (r >> 27) == 0 ? (r & 0xffff) : 0;
    }
}

/* A table of 64-bit kernel-like pointers, a quarter of them NULL. */
static void gen_pointers(uint32_t *w, uint32_t s)
{
    const uint32_t hi = (s & 1) ? 0xffff8880u : 0xffffc900u;
    const uint32_t lo = s & 0xfff00000u;

    for (uint32_t i = 0; i < ZMG_PAGE_SIZE / 8; i++, w += 2) {
        const uint32_t r = xs32(&s);
        if ((r & 3) == 0) {
            w[0] = 0;
            w[1] = 0;
        } else {
            w[0] = lo + ((r >> 2) & 0xffff) * 64;
            w[1] = hi;
        }
    }
}

void zmg_fill_region(void *dst, uint32_t region, uint32_t gen, uint32_t seed)
{
    if (word_len[0] == 0) {
        init_words();
    }
    const uint32_t key = fmix32(seed ^ fmix32(region * 0x9e3779b9u + gen));
    uint8_t *page = dst;

    for (uint32_t i = 0; i < ZMG_REGION_PAGES; i++, page += ZMG_PAGE_SIZE) {
        uint32_t s = fmix32(key + i * 0x632be5abu);
        if (s == 0) {
            s = 1; /* xorshift's one fixed point */
        }
        uint32_t *const w = (uint32_t *)(void *)page;
        switch (deck[(i + key) & (ZMG_REGION_PAGES - 1)]) {
        case K_ZERO:
            gen_zero(w);
            break;
        case K_SPARSE:
            gen_sparse(w, s);
            break;
        case K_RANDOM:
            gen_random(w, s);
            break;
        case K_TEXT:
            gen_text(page, s);
            break;
        case K_RECORDS:
            gen_records(w, s);
            break;
        default:
            gen_pointers(w, s);
            break;
        }
    }
    /* A header makes every region's content unique, and findable in a
     * memory dump. */
    uint32_t *const h = dst;
    h[0] = 0x52474d5au; /* "ZMGR" */
    h[1] = region;
    h[2] = gen;
    h[3] = seed;
}

struct zmg_sum zmg_checksum(const uint32_t *p, uint32_t n)
{
    uint64_t a = 0;
    uint64_t b = 0;

    for (uint32_t i = 0; i < n; i++) {
        a += p[i];
        b += a;
    }
    return (struct zmg_sum){ .a = a, .b = b };
}
