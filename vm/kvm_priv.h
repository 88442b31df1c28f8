/*
 * kvm_priv.h - the VM's insides, shared by kvm.c (VM, vCPUs, devices,
 * dirty log) and vmstate.c (the state blob); nothing else includes it
 */
#ifndef ZM_VM_KVM_PRIV_H
#define ZM_VM_KVM_PRIV_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "kvm.h"

#define ZM_VM_PAGE 4096u
#define ZM_VM_MAX_MSRS 64u
#define ZM_UART_LINE 256u

struct zm_vcpu {
    zm_vm *vm;
    unsigned id;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool started;
    bool parked; /* under vm->lock */
    bool gone;   /* the thread ended (under vm->lock) */
};

/* The 16550's registers a guest can read back; migrated with the VM. */
struct zm_uart {
    uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
};

struct zm_vm {
    int kvm_fd;
    int vm_fd;
    int event_fd;
    int out_fd;
    void *ram;
    uint64_t ram_size;
    bool ram_owned;
    size_t run_size;
    size_t xsave_size; /* bytes of KVM_GET_XSAVE2, or sizeof(kvm_xsave) */
    bool xsave2;
    struct kvm_cpuid2 *cpuid;      /* supported, before the per-vCPU ids */
    uint32_t msrs[ZM_VM_MAX_MSRS]; /* migrated MSRs, TSC last */
    unsigned nmsrs;
    bool has_tsc_deadline;

    unsigned nvcpus;
    struct zm_vcpu *vcpus;

    /* run control */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool pause_req;
    bool quit;
    unsigned parked;
    unsigned alive; /* vCPU threads not ended */
    bool started;

    /* devices: COM1 and the ports, under io_lock */
    pthread_mutex_t io_lock;
    struct zm_uart uart;
    char line[ZM_UART_LINE];
    size_t line_len;
    atomic_uint epoch;
    atomic_int exit_status; /* -1 while running */
    char error[320];        /* under lock */
    atomic_bool mmio_warned;

    /* dirty log */
    bool dirty_logging;
    uint64_t *dirty_buf;
};

/* Writes a message to err and returns code (a negative errno value). */
int zm_vm_fail(char *err, size_t err_size, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif /* ZM_VM_KVM_PRIV_H */
