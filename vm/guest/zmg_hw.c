/*
 * zmg_hw.c - what a freestanding kernel needs: memory functions, the
 * serial console, the TSC and starting APs (all from user mode)
 */
#include "zmguest.h"

#define COM1 0x3f8
#define COM1_LSR (COM1 + 5)
#define LSR_THRE 0x20

#define PIT_CH2 0x42
#define PIT_CMD 0x43
#define PIT_GATE 0x61
#define PIT_HZ 1193182u
#define CALIBRATE_MS 20u

#define LAPIC_BASE 0xfee00000u
#define LAPIC_ID 0x020
#define LAPIC_SVR 0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_INIT 0x00000500u
#define ICR_STARTUP 0x00000600u
#define ICR_ASSERT 0x00004000u
#define ICR_BUSY 0x00001000u

uint32_t tsc_khz;

static volatile uint32_t console_lock;

/* Memory functions: the compiler may call these for struct copies and
 * large clears.  rep movs/stos so that the compiler cannot turn them back
 * into calls to themselves. */
void *memset(void *dst, int c, size_t n)
{
    void *d = dst;
    __asm__ volatile("rep stosb"
                     : "+D"(d), "+c"(n)
                     : "a"((uint8_t)c)
                     : "memory");
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    void *d = dst;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}

void spin_lock(volatile uint32_t *lock)
{
    while (__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE) != 0) {
        while (*lock != 0) {
            cpu_relax();
        }
    }
}

void spin_unlock(volatile uint32_t *lock)
{
    __atomic_store_n(lock, 0, __ATOMIC_RELEASE);
}

static void serial_putc(char c)
{
    /* Bounded: a serial port nobody emulates must not hang the guest. */
    for (uint32_t i = 0; i < 1000000u; i++) {
        if (inb(COM1_LSR) & LSR_THRE) {
            break;
        }
        cpu_relax();
    }
    outb(COM1, (uint8_t)c);
}

static void put_str(const char *s)
{
    while (*s != '\0') {
        serial_putc(*s++);
    }
}

static void put_num(uint64_t v, uint32_t base, uint32_t width, char pad)
{
    char tmp[24];
    uint32_t n = 0;

    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v != 0 && n < sizeof(tmp));
    while (n < width && n < sizeof(tmp)) {
        tmp[n++] = pad;
    }
    while (n != 0) {
        serial_putc(tmp[--n]);
    }
}

/* %s %c %u %x %d and %llu %llx, with an optional 0 flag and width. */
void kprintf(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    spin_lock(&console_lock);
    for (const char *f = fmt; *f != '\0'; f++) {
        if (*f != '%') {
            serial_putc(*f);
            continue;
        }
        f++;
        char pad = ' ';
        uint32_t width = 0;
        int longs = 0;
        if (*f == '0') {
            pad = '0';
            f++;
        }
        while (*f >= '0' && *f <= '9') {
            width = width * 10 + (uint32_t)(*f++ - '0');
        }
        while (*f == 'l') {
            longs++;
            f++;
        }
        switch (*f) {
        case 's':
            put_str(va_arg(ap, const char *));
            break;
        case 'c':
            serial_putc((char)va_arg(ap, int));
            break;
        case 'd': {
            const int v = va_arg(ap, int);
            if (v < 0) {
                serial_putc('-');
            }
            put_num(v < 0 ? -(uint64_t)v : (uint64_t)v, 10, width, pad);
            break;
        }
        case 'u':
        case 'x': {
            const uint32_t base = *f == 'u' ? 10 : 16;
            const uint64_t v = longs >= 2 ? va_arg(ap, unsigned long long)
                                          : va_arg(ap, unsigned int);
            put_num(v, base, width, pad);
            break;
        }
        case '\0':
            f--;
            break;
        default:
            serial_putc('%');
            serial_putc(*f);
            break;
        }
    }
    spin_unlock(&console_lock);
    va_end(ap);
}

static void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c,
                  uint32_t *d)
{
    __asm__ volatile("cpuid"
                     : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
                     : "a"(leaf), "c"(0));
}

/* The hypervisor's TSC frequency leaf (KVM with some VMMs, VMware): only
 * a fallback when the PIT gives nothing sensible. */
static uint32_t tsc_khz_from_cpuid(void)
{
    uint32_t a, b, c, d;

    cpuid(1, &a, &b, &c, &d);
    if ((c & (1u << 31)) == 0) {
        return 0;
    }
    cpuid(0x40000000u, &a, &b, &c, &d);
    if (a < 0x40000010u) {
        return 0;
    }
    cpuid(0x40000010u, &a, &b, &c, &d);
    return a;
}

/*
 * One PIT run, as Linux's pit_calibrate_tsc: channel 2 in mode 0 counts
 * down once with the gate open; port 0x61 bit 5 (OUT2) rises when it
 * reaches 0.  The start and the end are each known to within two TSC
 * reads around a port access; *err is that uncertainty, large when the
 * vCPU was preempted, so the caller keeps the best of several runs.
 */
static uint64_t pit_run(uint32_t ms, uint64_t *err)
{
    const uint32_t latch = PIT_HZ / (1000u / ms);

    outb(PIT_GATE, (uint8_t)((inb(PIT_GATE) & ~0x02) | 0x01));
    outb(PIT_CMD, 0xb0); /* channel 2, lobyte/hibyte, mode 0, binary */
    outb(PIT_CH2, (uint8_t)(latch & 0xff));
    const uint64_t s0 = rdtsc();
    outb(PIT_CH2, (uint8_t)(latch >> 8)); /* counting starts here */
    const uint64_t s1 = rdtsc();
    uint64_t prev = s1;
    uint64_t now = s1;
    for (uint32_t polls = 0; polls < 100000000u; polls++) {
        const uint8_t v = inb(PIT_GATE);
        now = rdtsc();
        if (v & 0x20) {
            break;
        }
        prev = now;
    }
    *err = (now - prev) / 2 + (s1 - s0) / 2;
    return (prev + now) / 2 - (s0 + s1) / 2;
}

void tsc_calibrate(void)
{
    uint64_t best = 0;
    uint64_t best_err = ~(uint64_t)0;

    /* Stop at 0.05 %; a busy host may need a few tries. */
    for (int i = 0; i < 8 && best_err * 2000 > best; i++) {
        uint64_t err;
        const uint64_t c = pit_run(CALIBRATE_MS, &err);
        if (err < best_err) {
            best = c;
            best_err = err;
        }
    }
    uint64_t khz = best / CALIBRATE_MS;
    if (khz < 100000u || khz > 20000000u) {
        const uint32_t alt = tsc_khz_from_cpuid();
        kprintf("zmguest: PIT calibration gave %llu kHz, using %s\n",
                (unsigned long long)khz, alt ? "CPUID" : "2 GHz");
        khz = alt ? alt : 2000000u;
    }
    tsc_khz = (uint32_t)khz;
}

uint64_t tsc_from_us(uint32_t us)
{
    return (uint64_t)us * tsc_khz / 1000;
}

uint32_t tsc_to_ms(uint64_t cycles)
{
    const uint64_t ms = cycles / tsc_khz;
    return ms > 0xffffffffu ? 0xffffffffu : (uint32_t)ms;
}

void udelay(uint32_t us)
{
    const uint64_t t0 = rdtsc();
    const uint64_t n = tsc_from_us(us);

    while (rdtsc() - t0 < n) {
        cpu_relax();
    }
}

static uint32_t lapic_read(uint32_t reg)
{
    return *(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg);
}

static void lapic_write(uint32_t reg, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg) = v;
}

static void lapic_wait_icr(void)
{
    for (uint32_t i = 0; i < 1000000u; i++) {
        if ((lapic_read(LAPIC_ICR_LO) & ICR_BUSY) == 0) {
            return;
        }
        cpu_relax();
    }
}

static void lapic_ipi(uint32_t apic_id, uint32_t lo)
{
    lapic_write(LAPIC_ICR_HI, apic_id << 24);
    lapic_write(LAPIC_ICR_LO, lo);
    lapic_wait_icr();
}

extern const uint8_t ap_tramp_start[], ap_tramp_end[];

/* The APs' admission: the number admitted, and GATE_CLOSED once the BSP
 * stops waiting, so that a late AP cannot join a layout made without it. */
#define GATE_CLOSED 0x80000000u
static volatile uint32_t ap_gate;
static volatile uint32_t ap_want;

uint32_t smp_ap_join(void)
{
    uint32_t v = __atomic_load_n(&ap_gate, __ATOMIC_ACQUIRE);

    for (;;) {
        if ((v & GATE_CLOSED) != 0 || v >= ap_want) {
            return 0;
        }
        if (__atomic_compare_exchange_n(&ap_gate, &v, v + 1, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            return v + 1;
        }
    }
}

/*
 * INIT-SIPI-SIPI to the first `want` APIC IDs other than ours: vCPUs are
 * numbered from 0 in QEMU and in zmigrate vm.  Not a broadcast: that
 * hangs kvm-pvm, and would wake vCPUs beyond smp=.  APs beyond `want`
 * halt in smp_ap_join.  Returns how many APs arrived within timeout_ms.
 */
uint32_t smp_start_aps(uint32_t want, uint32_t timeout_ms)
{
    if (want == 0) {
        return 0;
    }
    ap_want = want;
    memcpy((void *)(uintptr_t)ZMG_TRAMPOLINE, ap_tramp_start,
           (size_t)(ap_tramp_end - ap_tramp_start));

    /* Software-enable the local APIC; vector 0xff is never delivered. */
    lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | 0x1ffu);

    const uint32_t self = lapic_read(LAPIC_ID) >> 24;
    const uint32_t last = want < self ? want - 1 : want;

    for (uint32_t id = 0; id <= last; id++) {
        if (id != self) {
            lapic_ipi(id, ICR_ASSERT | ICR_INIT);
        }
    }
    udelay(10000);
    for (int i = 0; i < 2; i++) {
        for (uint32_t id = 0; id <= last; id++) {
            if (id != self) {
                lapic_ipi(id,
                          ICR_ASSERT | ICR_STARTUP | (ZMG_TRAMPOLINE >> 12));
            }
        }
        udelay(200);
    }
    const uint64_t t0 = rdtsc();
    const uint64_t limit = tsc_from_us(timeout_ms * 1000u);
    while (__atomic_load_n(&ap_gate, __ATOMIC_ACQUIRE) < want &&
           rdtsc() - t0 < limit) {
        cpu_relax();
    }
    return __atomic_fetch_or(&ap_gate, GATE_CLOSED, __ATOMIC_ACQ_REL) &
           ~GATE_CLOSED;
}
