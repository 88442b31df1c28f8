/*
 * zmguest.h - the test guest's kernel: shared declarations
 *
 * The guest's C code runs in 64-bit user mode (CPL 3, IOPL 3) on an
 * identity map of the low 4 GiB, without interrupts (zmg_entry.S).
 * Everything it must keep across a migration (counters, generations,
 * checksums) lives in ordinary guest RAM, so a migration carries it.
 */
#ifndef ZMGUEST_H
#define ZMGUEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define ZMG_MAX_CPUS 64u
#define ZMG_STACK_SIZE 16384u
#define ZMG_TRAMPOLINE 0x8000u

#define ZMG_PORT_EPOCH 0x511
#define ZMG_PORT_EXIT 0x501

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
    __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
    __asm__ volatile("pause" ::: "memory");
}

static inline void barrier(void)
{
    __asm__ volatile("" ::: "memory");
}

/* zmg_hw.c */
extern uint32_t tsc_khz;

void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
__attribute__((format(printf, 1, 2))) void kprintf(const char *fmt, ...);
void spin_lock(volatile uint32_t *lock);
void spin_unlock(volatile uint32_t *lock);
void tsc_calibrate(void);
uint64_t tsc_from_us(uint32_t us);
uint32_t tsc_to_ms(uint64_t cycles);
void udelay(uint32_t us);
uint32_t smp_start_aps(uint32_t want, uint32_t timeout_ms);
uint32_t smp_ap_join(void);
__attribute__((noreturn)) void halt_forever(void);

/* zmg_main.c */
void ap_main(uint32_t id);

#endif
