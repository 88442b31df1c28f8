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
    bool parked;                /* under vm->lock */
    bool gone;                  /* the thread ended (under vm->lock) */
    struct kvm_dirty_gfn *ring; /* with a dirty ring: its entries */
    uint32_t ring_next;         /* the next entry to harvest (ring_lock) */
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

    /* dirty ring (zm_vm_set_dirty_ring()); 0 entries: the dirty log */
    uint32_t ring_entries;
    pthread_mutex_t ring_lock;
    uint64_t *ring_dirty; /* harvested, not yet handed over (ring_lock) */
    bool ring_reset_owed; /* entries marked for reset, not reset (ring_lock) */
};

/* ---- the state blob (vmstate.c) ---- */

/* A record's tag: the VM's records, then each vCPU's. */
enum zm_vm_tag {
    ZM_VM_TAG_PIC_MASTER = 1,
    ZM_VM_TAG_PIC_SLAVE,
    ZM_VM_TAG_IOAPIC,
    ZM_VM_TAG_PIT,
    ZM_VM_TAG_CLOCK,
    ZM_VM_TAG_UART,
    ZM_VM_TAG_VM_LAST,
    ZM_VM_TAG_REGS = 16,
    ZM_VM_TAG_SREGS,
    ZM_VM_TAG_XSAVE,
    ZM_VM_TAG_XCRS,
    ZM_VM_TAG_MSRS,
    ZM_VM_TAG_LAPIC,
    ZM_VM_TAG_EVENTS,
    ZM_VM_TAG_MP_STATE,
    ZM_VM_TAG_DEBUGREGS,
    ZM_VM_TAG_TSC_DEADLINE,
    ZM_VM_TAG_VCPU_LAST,
};

#define ZM_VM_VCPU_TAGS (ZM_VM_TAG_VCPU_LAST - ZM_VM_TAG_REGS)
#define ZM_VM_MSR_TSC_DEADLINE 0x6E0u

/* What a blob must match: the destination VM and what its KVM takes. */
struct zm_vm_layout {
    unsigned vcpus;
    uint64_t ram_size;
    size_t xsave_size;    /* the largest XSAVE record taken */
    const uint32_t *msrs; /* the MSRs an MSRS record may hold */
    unsigned nmsrs;
};

/* A record's bytes in the blob (any alignment: read them with memcpy). */
struct zm_vm_record {
    const unsigned char *data; /* NULL: absent */
    uint32_t len;
};

struct zm_vm_state {
    uint32_t vcpus, epoch;
    uint64_t ram_size;
    struct zm_vm_record vm[ZM_VM_TAG_VM_LAST];    /* by tag; [0] unused */
    struct zm_vm_record (*vcpu)[ZM_VM_VCPU_TAGS]; /* [vcpus][tag - REGS] */
};

/*
 * Checks a whole blob against layout without touching any VM: the header,
 * every record's tag, vCPU, size and padding, each record exactly once
 * (TSC_DEADLINE optional), the irqchip ids, the UART's registers, the MSR
 * indices (each in layout's list, once).  0 and st filled (pointing into
 * buf; zm_vm_state_free() it), or -EBADMSG, -EPROTO (another version or
 * an unknown record), -EINVAL (another geometry), -ENOMEM, with the reason
 * in err; st then holds nothing to free.
 */
int zm_vm_state_parse(const struct zm_vm_layout *layout, const void *buf,
                      size_t len, struct zm_vm_state *st, char *err,
                      size_t err_size);
void zm_vm_state_free(struct zm_vm_state *st);

/* Writes a message to err and returns code (a negative errno value). */
int zm_vm_fail(char *err, size_t err_size, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif /* ZM_VM_KVM_PRIV_H */
