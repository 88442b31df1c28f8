/*
 * zmg_main.c - the test guest: boot, command line, and the vCPUs' loop
 *
 * RAM above the image holds a table of region generations and checksums,
 * then the data regions.  vCPU i owns regions i, i + n, i + 2n, ...  Each
 * vCPU fills its regions once, then keeps rewriting random ones of them,
 * paced by the TSC.  Between writes it polls the migration epoch (port
 * 0x511) and the shared verification requests; the BSP also prints the
 * heartbeat and gathers verification results.  See vm/CONTRACT.md for the
 * command line and the exact output lines.
 */
#include "zmg_data.h"
#include "zmguest.h"

#define MB_BOOT_MAGIC 0x2badb002u
#define MB_INFO_MEM 0x001u
#define MB_INFO_CMDLINE 0x004u
#define MB_INFO_MMAP 0x040u

#define RAM_LIMIT 0xfe000000u /* below the IOAPIC and LAPIC windows */
#define ZMG_PORT_FW_CFG_SEL 0x510
#define EPOCH_NONE_LO 0u
#define EPOCH_NONE_HI 0xffffffffu
#define AP_START_TIMEOUT_MS 1000u
#define VERIFY_TIMEOUT_MS 30000u

/* A verification request is counted in vreq's low 16 bits; requests
 * posted because the epoch changed also count in the high 16 bits, so one
 * atomic add posts both. */
#define VREQ_ONE 0x00001u
#define VREQ_MIGRATION 0x10001u

struct mb_info {
    uint32_t flags;
    uint32_t mem_lower;
    uint32_t mem_upper;
    uint32_t boot_device;
    uint32_t cmdline;
    uint32_t mods_count;
    uint32_t mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length;
    uint32_t mmap_addr;
};

struct mb_mmap {
    uint32_t size; /* of the rest of the entry */
    uint32_t addr_lo;
    uint32_t addr_hi;
    uint32_t len_lo;
    uint32_t len_hi;
    uint32_t type;
};

struct config {
    uint64_t rate;
    uint32_t smp;
    uint32_t fill;
    uint32_t heartbeat_ms;
    uint32_t verify_every;
    uint32_t exit_after_verify;
    uint32_t seed;
    uint32_t hot;        /* percent of each vCPU's regions; 0: uniform */
    uint32_t hot_writes; /* percent of writes that go to those */
};

/* Per region, in guest RAM so that it migrates with the data. */
struct region_meta {
    uint64_t a;
    uint64_t b;
    uint32_t gen; /* 0: never written */
    uint32_t pad;
};

/* Written by its vCPU, read by the BSP: 32-bit fields only, as those
 * are read and written whole. */
struct cpu_state {
    volatile uint32_t written; /* regions written since boot */
    volatile uint32_t done_req;
    volatile uint32_t checked;
    volatile uint32_t bad;
    volatile uint32_t first_bad;
    uint32_t seen_req;
    uint32_t last_epoch;
    uint32_t rng;
    uint32_t nown;
    uint64_t next_write;
    uint64_t next_poll;
} __attribute__((aligned(64)));

extern char __bss_start[], __bss_end[], _end[];

/* Copied from the multiboot info before the BSS is cleared and before
 * anything else is written: the loader may have put it anywhere. */
__attribute__((section(".data"))) static char boot_cmdline[1024];
__attribute__((section(".data"))) static uint32_t boot_ram_end;
__attribute__((section(".data"))) static uint32_t boot_magic;

static struct config cfg;
static struct cpu_state cpus[ZMG_MAX_CPUS];
static struct region_meta *meta;
static uint8_t *data_base;
static uint32_t nregions;
static uint32_t ncpus;
static uint64_t cyc_per_region; /* per vCPU; 0 = flat out */
static uint64_t cyc_poll;

static volatile uint32_t go;
static volatile uint32_t filled_cpus;
static volatile uint32_t vreq;
static volatile uint32_t epoch; /* the last valid epoch any vCPU saw */
static uint32_t no_epoch_port;

/* The BSP's: heartbeat and verification bookkeeping. */
static uint32_t hb_n;
static uint64_t hb_period;
static uint64_t hb_next;
static uint64_t hb_last_tsc;
static uint32_t hb_last_written;
static uint32_t migr_seen;
static uint32_t exit_done;

static void save_boot_info(uint32_t magic, const struct mb_info *mbi)
{
    boot_magic = magic;
    if (magic != MB_BOOT_MAGIC) {
        return;
    }
    if (mbi->flags & MB_INFO_CMDLINE) {
        const char *s = (const char *)(uintptr_t)mbi->cmdline;
        uint32_t i = 0;
        while (i < sizeof(boot_cmdline) - 1 && s[i] != '\0') {
            boot_cmdline[i] = s[i];
            i++;
        }
        boot_cmdline[i] = '\0';
    }
    if (mbi->flags & MB_INFO_MMAP) {
        /* The usable range that holds the image, merging adjacent ones. */
        uint32_t end = 0x100000u;
        int grew = 1;
        while (grew) {
            grew = 0;
            uint32_t off = 0;
            while (off + sizeof(struct mb_mmap) <= mbi->mmap_length) {
                const struct mb_mmap *e =
                    (const void *)(uintptr_t)(mbi->mmap_addr + off);
                off += e->size + 4;
                if (e->type != 1 || e->addr_hi != 0) {
                    continue;
                }
                uint64_t top = (uint64_t)e->addr_lo + e->len_lo +
                               ((uint64_t)e->len_hi << 32);
                if (top > RAM_LIMIT) {
                    top = RAM_LIMIT;
                }
                if (e->addr_lo <= end && top > end) {
                    end = (uint32_t)top;
                    grew = 1;
                }
            }
        }
        boot_ram_end = end;
    }
    if (boot_ram_end <= 0x100000u && (mbi->flags & MB_INFO_MEM)) {
        uint64_t top = 0x100000u + (uint64_t)mbi->mem_upper * 1024;
        boot_ram_end = top > RAM_LIMIT ? RAM_LIMIT : (uint32_t)top;
    }
}

static int parse_u64(const char *s, uint32_t n, int suffixes, uint64_t *out)
{
    uint64_t v = 0;
    uint32_t i = 0;

    if (n == 0) {
        return -1;
    }
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > 0xffffffffffffffffull / 10 - 10) {
            return -1;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0) {
        return -1;
    }
    if (i + 1 == n && suffixes) {
        uint32_t shift;
        switch (s[i]) {
        case 'K':
        case 'k':
            shift = 10;
            break;
        case 'M':
        case 'm':
            shift = 20;
            break;
        case 'G':
        case 'g':
            shift = 30;
            break;
        default:
            return -1;
        }
        if ((v >> (64 - shift)) != 0) {
            return -1;
        }
        v <<= shift;
        i++;
    }
    if (i != n) {
        return -1;
    }
    *out = v;
    return 0;
}

static int key_is(const char *s, uint32_t n, const char *key)
{
    uint32_t i = 0;
    for (; i < n && key[i] != '\0'; i++) {
        if (s[i] != key[i]) {
            return 0;
        }
    }
    return i == n && key[i] == '\0';
}

static void print_token(const char *what, const char *s, uint32_t n)
{
    char tmp[64];
    uint32_t i = 0;
    for (; i < n && i < sizeof(tmp) - 1; i++) {
        tmp[i] = s[i];
    }
    tmp[i] = '\0';
    kprintf("zmguest: %s '%s' ignored\n", what, tmp);
}

static void set_key(const char *k, uint32_t kn, const char *v, uint32_t vn)
{
    static const struct {
        const char *name;
        uint64_t min, max;
        int suffixes;
    } keys[] = {
        { "rate", 0, 0xffffffffffffull, 1 },
        { "smp", 1, ZMG_MAX_CPUS, 0 },
        { "fill", 1, 100, 0 },
        { "heartbeat", 10, 3600000, 0 },
        { "verify_every", 0, 0xffffffffu, 0 },
        { "exit_after_verify", 0, 1, 0 },
        { "seed", 0, 0xffffffffu, 0 },
        { "hot", 0, 100, 0 },
        { "hot_writes", 0, 100, 0 },
    };
    for (uint32_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (!key_is(k, kn, keys[i].name)) {
            continue;
        }
        uint64_t x;
        if (parse_u64(v, vn, keys[i].suffixes, &x) != 0 || x < keys[i].min ||
            x > keys[i].max) {
            print_token("bad value", k, kn + 1 + vn);
            return;
        }
        switch (i) {
        case 0:
            cfg.rate = x;
            break;
        case 1:
            cfg.smp = (uint32_t)x;
            break;
        case 2:
            cfg.fill = (uint32_t)x;
            break;
        case 3:
            cfg.heartbeat_ms = (uint32_t)x;
            break;
        case 4:
            cfg.verify_every = (uint32_t)x;
            break;
        case 5:
            cfg.exit_after_verify = (uint32_t)x;
            break;
        case 6:
            cfg.seed = (uint32_t)x;
            break;
        case 7:
            cfg.hot = (uint32_t)x;
            break;
        default:
            cfg.hot_writes = (uint32_t)x;
            break;
        }
        return;
    }
    print_token("unknown key", k, kn);
}

static void parse_cmdline(const char *s)
{
    cfg.rate = 100ull << 20;
    cfg.smp = 1;
    cfg.fill = 90;
    cfg.heartbeat_ms = 1000;
    cfg.seed = 1;
    cfg.hot_writes = 80;

    for (int first = 1; *s != '\0'; first = 0) {
        while (*s == ' ' || *s == '\t') {
            s++;
        }
        if (*s == '\0') {
            break;
        }
        const char *tok = s;
        const char *eq = NULL;
        while (*s != '\0' && *s != ' ' && *s != '\t') {
            if (*s == '=' && eq == NULL) {
                eq = s;
            }
            s++;
        }
        if (eq == NULL) {
            /* Loaders put the kernel's own path first. */
            if (!first) {
                print_token("word", tok, (uint32_t)(s - tok));
            }
            continue;
        }
        set_key(tok, (uint32_t)(eq - tok), eq + 1, (uint32_t)(s - eq - 1));
    }
}

static uint32_t *region_ptr(uint32_t r)
{
    return (uint32_t *)(void *)(data_base + r * ZMG_REGION_SIZE);
}

static int layout(void)
{
    const uint32_t image_end = ((uint32_t)(uintptr_t)_end + 4095u) & ~4095u;

    if (boot_ram_end < image_end + 4 * ZMG_REGION_SIZE) {
        return -1;
    }
    const uint32_t avail_kib = (boot_ram_end - image_end) / 1024;
    uint32_t n = avail_kib / 100 * cfg.fill / (ZMG_REGION_SIZE / 1024);
    uint32_t base;
    for (;; n--) {
        const uint32_t table_end = image_end + n * sizeof(struct region_meta);
        base = (table_end + ZMG_REGION_SIZE - 1) & ~(ZMG_REGION_SIZE - 1);
        if (n == 0 ||
            (uint64_t)base + (uint64_t)n * ZMG_REGION_SIZE <= boot_ram_end) {
            break;
        }
    }
    if (n < ncpus) {
        return -1;
    }
    meta = (struct region_meta *)(uintptr_t)image_end;
    data_base = (uint8_t *)(uintptr_t)base;
    nregions = n;
    memset(meta, 0, n * sizeof(*meta));
    return 0;
}

/*
 * The next region this vCPU rewrites: uniform over its regions, or with
 * hot=P, hot_writes percent of the time one of the first P percent of
 * them (a working set, as real guests have), otherwise one of the rest.
 */
static uint32_t pick_region(struct cpu_state *c, uint32_t id)
{
    const uint32_t n = c->nown;
    const uint32_t nhot = (n * cfg.hot + 99) / 100;
    uint32_t k;

    if (nhot == 0 || nhot >= n) {
        k = xs32(&c->rng) % n;
    } else if (xs32(&c->rng) % 100 < cfg.hot_writes) {
        k = xs32(&c->rng) % nhot;
    } else {
        k = nhot + xs32(&c->rng) % (n - nhot);
    }
    return id + k * ncpus;
}

static void write_region(struct cpu_state *c, uint32_t r)
{
    struct region_meta *const m = &meta[r];
    uint32_t *const p = region_ptr(r);
    uint32_t gen = m->gen + 1;

    if (gen == 0) {
        gen = 1;
    }
    zmg_fill_region(p, r, gen, cfg.seed);
    const struct zmg_sum s = zmg_checksum(p, ZMG_REGION_SIZE / 4);
    m->a = s.a;
    m->b = s.b;
    m->gen = gen;
    c->written = c->written + 1;
}

static void verify_own(struct cpu_state *c, uint32_t id)
{
    uint32_t checked = 0;
    uint32_t bad = 0;
    uint32_t first = 0xffffffffu;

    for (uint32_t r = id; r < nregions; r += ncpus) {
        const struct region_meta *const m = &meta[r];
        if (m->gen == 0) {
            continue;
        }
        checked++;
        const struct zmg_sum s =
            zmg_checksum(region_ptr(r), ZMG_REGION_SIZE / 4);
        if (s.a != m->a || s.b != m->b) {
            if (bad++ == 0) {
                first = r;
            }
        }
    }
    c->checked = checked;
    c->bad = bad;
    c->first_bad = first;
}

static int req_done(uint32_t done, uint32_t req)
{
    return (int16_t)(uint16_t)(done - req) >= 0;
}

/* The BSP waits for every vCPU's answer to req and prints the result; a
 * vCPU that does not answer counts as bad. */
static void verify_gather(uint32_t req)
{
    const uint64_t t0 = rdtsc();
    const uint64_t limit = (uint64_t)VERIFY_TIMEOUT_MS * tsc_khz;
    uint32_t checked = 0;
    uint32_t bad = 0;
    uint32_t first = 0xffffffffu;

    for (uint32_t i = 0; i < ncpus; i++) {
        struct cpu_state *const c = &cpus[i];
        while (
            !req_done(__atomic_load_n(&c->done_req, __ATOMIC_ACQUIRE), req) &&
            rdtsc() - t0 < limit) {
            cpu_relax();
        }
        if (!req_done(c->done_req, req)) {
            kprintf("zmguest: cpu %u did not verify\n", i);
            checked += c->nown;
            bad += c->nown;
            first = i < first ? i : first;
            continue;
        }
        checked += c->checked;
        bad += c->bad;
        first = c->first_bad < first ? c->first_bad : first;
    }
    if (bad == 0) {
        kprintf("verify epoch=%u regions=%u bad=0 ok\n", epoch, checked);
    } else {
        kprintf("verify epoch=%u regions=%u bad=%u FAILED first=%u\n", epoch,
                checked, bad, first);
    }
    /* Only the first verification after a migration decides the exit. */
    const uint32_t migr = req >> 16;
    if (migr != migr_seen) {
        migr_seen = migr;
        if (cfg.exit_after_verify && !exit_done) {
            exit_done = 1;
            outb(ZMG_PORT_EXIT, bad == 0 ? 0 : 1);
        }
    }
}

static void verify_round(struct cpu_state *c, uint32_t id)
{
    const uint32_t req = __atomic_load_n(&vreq, __ATOMIC_ACQUIRE);

    c->seen_req = req;
    verify_own(c, id);
    __atomic_store_n(&c->done_req, req, __ATOMIC_RELEASE);
    if (id == 0) {
        verify_gather(req);
    }
}

/* QEMU has its fw_cfg at 0x510 (selector) and 0x511 (data), where
 * zmigrate vm has the epoch: if selecting item 0 there reads "QEMU", the
 * epoch is unknown for good. */
static int epoch_port_is_fw_cfg(void)
{
    char sig[4];

    outw(ZMG_PORT_FW_CFG_SEL, 0);
    for (int i = 0; i < 4; i++) {
        sig[i] = (char)inb(ZMG_PORT_EPOCH);
    }
    return sig[0] == 'Q' && sig[1] == 'E' && sig[2] == 'M' && sig[3] == 'U';
}

static void poll_epoch(struct cpu_state *c)
{
    if (no_epoch_port) {
        return;
    }
    const uint32_t e = inl(ZMG_PORT_EPOCH);

    if (e == EPOCH_NONE_LO || e == EPOCH_NONE_HI || e == c->last_epoch) {
        return;
    }
    c->last_epoch = e;
    /* The first vCPU to see a new epoch posts the request. */
    uint32_t old = __atomic_load_n(&epoch, __ATOMIC_ACQUIRE);
    while (old != e) {
        if (__atomic_compare_exchange_n(&epoch, &old, e, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            __atomic_fetch_add(&vreq, VREQ_MIGRATION, __ATOMIC_ACQ_REL);
            break;
        }
    }
}

static uint32_t total_written(void)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < ncpus; i++) {
        n += cpus[i].written;
    }
    return n;
}

static void heartbeat(uint64_t now)
{
    const int64_t early = (int64_t)(hb_next - now);

    if (early > 0) {
        /* A TSC that went back (a new host) must not stop the beat. */
        if ((uint64_t)early > 2 * hb_period) {
            hb_next = now + hb_period;
        }
        return;
    }
    hb_n++;
    const uint32_t written = total_written();
    uint64_t elapsed = now - hb_last_tsc;
    if ((int64_t)elapsed <= 0 || elapsed > 100 * hb_period) {
        elapsed = hb_period;
    }
    /* MiB/s = regions * 64 KiB * tsc_hz / elapsed / 2^20, rounded. */
    const uint64_t rate =
        ((uint64_t)(written - hb_last_written) * 125u * tsc_khz + elapsed) /
        (2 * elapsed);
    kprintf("heartbeat %u epoch=%u written=%uM rate=%llu\n", hb_n, epoch,
            written / (1024u * 1024u / ZMG_REGION_SIZE),
            (unsigned long long)rate);
    hb_last_tsc = now;
    hb_last_written = written;
    hb_next += hb_period;
    if ((int64_t)(now - hb_next) > (int64_t)hb_period) {
        hb_next = now + hb_period;
    }
    if (cfg.verify_every != 0 && hb_n % cfg.verify_every == 0) {
        __atomic_fetch_add(&vreq, VREQ_ONE, __ATOMIC_ACQ_REL);
    }
}

static void pace(struct cpu_state *c, uint64_t now)
{
    c->next_write += cyc_per_region;
    const int64_t behind = (int64_t)(now - c->next_write);
    /* Drop debt older than ~100 ms (a pause, a migration), and restart
     * from now if the TSC went back. */
    if (behind > (int64_t)(100 * (uint64_t)tsc_khz) ||
        -behind > (int64_t)(2 * cyc_per_region)) {
        c->next_write = now;
    }
}

static __attribute__((noreturn)) void worker(uint32_t id)
{
    struct cpu_state *const c = &cpus[id];
    const uint64_t t0 = rdtsc();

    for (uint32_t r = id; r < nregions; r += ncpus) {
        write_region(c, r);
    }
    __atomic_fetch_add(&filled_cpus, 1, __ATOMIC_ACQ_REL);
    if (id == 0) {
        while (__atomic_load_n(&filled_cpus, __ATOMIC_ACQUIRE) < ncpus &&
               rdtsc() - t0 < (uint64_t)VERIFY_TIMEOUT_MS * tsc_khz) {
            cpu_relax();
        }
        const uint64_t now = rdtsc();
        kprintf("zmguest: filled %uM in %u ms\n",
                nregions / (1024u * 1024u / ZMG_REGION_SIZE),
                tsc_to_ms(now - t0));
        hb_last_tsc = now;
        hb_last_written = total_written();
        hb_next = now + hb_period;
    }
    c->next_write = rdtsc();
    c->next_poll = c->next_write;
    for (;;) {
        const uint64_t now = rdtsc();
        if ((int64_t)(now - c->next_poll) >= 0 ||
            (int64_t)(c->next_poll - now) > (int64_t)(2 * cyc_poll)) {
            c->next_poll = now + cyc_poll;
            poll_epoch(c);
        }
        if (__atomic_load_n(&vreq, __ATOMIC_ACQUIRE) != c->seen_req) {
            verify_round(c, id);
        }
        if (id == 0) {
            heartbeat(now);
        }
        if (cyc_per_region == 0) {
            write_region(c, pick_region(c, id));
        } else if ((int64_t)(now - c->next_write) >= 0) {
            write_region(c, pick_region(c, id));
            pace(c, now);
        } else {
            cpu_relax();
        }
    }
}

void ap_main(uint32_t id)
{
    while (__atomic_load_n(&go, __ATOMIC_ACQUIRE) == 0) {
        cpu_relax();
    }
    worker(id);
}

void kmain(uint32_t magic, uint32_t mbi_addr);

void kmain(uint32_t magic, uint32_t mbi_addr)
{
    save_boot_info(magic, (const struct mb_info *)(uintptr_t)mbi_addr);
    memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
    if (boot_magic != MB_BOOT_MAGIC) {
        kprintf("zmguest: not started by a multiboot loader (eax=0x%x)\n",
                boot_magic);
        halt_forever();
    }
    parse_cmdline(boot_cmdline);
    tsc_calibrate();

    no_epoch_port = epoch_port_is_fw_cfg();
    const uint32_t e = no_epoch_port ? 0 : inl(ZMG_PORT_EPOCH);
    epoch = (e == EPOCH_NONE_LO || e == EPOCH_NONE_HI) ? 0 : e;
    const uint32_t aps = smp_start_aps(cfg.smp - 1, AP_START_TIMEOUT_MS);
    ncpus = 1 + aps;
    if (ncpus < cfg.smp) {
        kprintf("zmguest: only %u of %u cpus started\n", ncpus, cfg.smp);
    }
    if (layout() != 0) {
        kprintf("zmguest: not enough RAM (ends at 0x%x)\n", boot_ram_end);
        halt_forever();
    }
    kprintf("zmguest: boot ram=%uM regions=%u region_kib=%u cpus=%u "
            "rate=%llu tsc_khz=%u\n",
            (boot_ram_end + (1u << 19)) >> 20, nregions, ZMG_REGION_SIZE / 1024,
            ncpus, (unsigned long long)cfg.rate, tsc_khz);
    if (cfg.hot != 0 && cfg.hot < 100) {
        kprintf("zmguest: hot=%u hot_writes=%u: writes favour a working "
                "set\n",
                cfg.hot, cfg.hot_writes);
    }
    kprintf("zmguest: data at 0x%x, %u bytes; table at 0x%x\n",
            (uint32_t)(uintptr_t)data_base, nregions * ZMG_REGION_SIZE,
            (uint32_t)(uintptr_t)meta);

    if (cfg.rate != 0) {
        /* Each vCPU writes rate / ncpus bytes per second. */
        cyc_per_region =
            (uint64_t)ZMG_REGION_SIZE * tsc_khz * 1000u / cfg.rate * ncpus;
        if (cyc_per_region == 0) {
            cyc_per_region = 1;
        }
    }
    cyc_poll = tsc_khz; /* 1 ms: the epoch port is a VM exit */
    hb_period = (uint64_t)cfg.heartbeat_ms * tsc_khz;
    for (uint32_t i = 0; i < ncpus; i++) {
        cpus[i].nown = (nregions - i + ncpus - 1) / ncpus;
        cpus[i].rng = 0x9e3779b9u * (i + 1) ^ cfg.seed;
        if (cpus[i].rng == 0) {
            cpus[i].rng = 1;
        }
        cpus[i].last_epoch = epoch;
    }
    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    worker(0);
}
