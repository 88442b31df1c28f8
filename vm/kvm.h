/*
 * kvm.h - a small KVM virtual machine for zmigrate vm
 *
 * One VM: RAM as one block at guest physical 0, an in-kernel irqchip and
 * PIT, N vCPUs with one thread each, a COM1 UART whose output goes to a
 * file descriptor, and the ports of vm/CONTRACT.md (0x511 epoch, 0x501
 * exit).  For migration: KVM's dirty log, pausing the vCPUs, and the
 * whole state as one versioned blob.
 *
 * Functions return 0 or a negative errno value and write a message into
 * err (err_size bytes).  The VM's calls are made from one thread (the
 * "main" thread); zm_vm_pause/zm_vm_resume/zm_vm_dirty_log/zm_vm_save may
 * also be called from one other thread (the migration's) while the main
 * thread only waits on zm_vm_event_fd().
 */
#ifndef ZM_VM_KVM_H
#define ZM_VM_KVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Guest RAM lies below the LAPIC, IOAPIC and the TSS KVM needs. */
#define ZM_VM_MAX_RAM (3ull << 30)
#define ZM_VM_MAX_VCPUS 64u

typedef struct zm_vm zm_vm;

/*
 * Whether KVM can be used: 0, or a negative errno value with the reason
 * ("/dev/kvm: No such file or directory") in err.
 */
int zm_vm_probe(char *err, size_t err_size);

/*
 * Creates a VM with ram_size bytes of RAM (a multiple of 4 KiB, at most
 * ZM_VM_MAX_RAM) and vcpus vCPUs (1..ZM_VM_MAX_VCPUS; 0: none yet, see
 * zm_vm_create_vcpus()).  ram NULL: the VM maps its RAM; else ram is the
 * memory to use (page-aligned, ram_size bytes, outliving the VM).  The
 * UART writes to out_fd.
 */
int zm_vm_new(uint64_t ram_size, void *ram, unsigned vcpus, int out_fd,
              zm_vm **out, char *err, size_t err_size);
void zm_vm_free(zm_vm *vm);

/* Creates the vCPUs of a VM made with vcpus 0. */
int zm_vm_create_vcpus(zm_vm *vm, unsigned vcpus, char *err, size_t err_size);

void *zm_vm_ram(const zm_vm *vm);
uint64_t zm_vm_ram_size(const zm_vm *vm);
unsigned zm_vm_vcpus(const zm_vm *vm);

/*
 * Backs all of the VM's RAM with host memory now (QEMU's -mem-prealloc), so
 * that a migration writing it later takes no page faults.
 */
int zm_vm_prealloc(zm_vm *vm, char *err, size_t err_size);

/*
 * Puts the bootstrap processor in the multiboot entry state (32-bit
 * protected mode, flat segments, EAX magic, EBX mbi); the others wait for
 * INIT-SIPI in the in-kernel LAPIC.  Sets the epoch to 1.
 */
int zm_vm_boot_state(zm_vm *vm, uint32_t entry, uint32_t mbi, char *err,
                     size_t err_size);

/* Starts the vCPU threads (once). */
int zm_vm_start(zm_vm *vm, char *err, size_t err_size);

/*
 * Stops every vCPU and returns once none is inside KVM_RUN (a signal
 * kicks each out; no sleeping).  zm_vm_resume() lets them go on.
 */
int zm_vm_pause(zm_vm *vm);
int zm_vm_resume(zm_vm *vm);

/* Ends the vCPU threads for good (idempotent); flushes the UART line. */
void zm_vm_stop(zm_vm *vm);

/*
 * A file descriptor (eventfd) that becomes readable when the guest wrote
 * the exit port or a vCPU failed; zm_vm_exit_status() then says which.
 */
int zm_vm_event_fd(const zm_vm *vm);

/*
 * -1 while the guest runs; the value written to port 0x501; or, after a
 * fatal vCPU exit (triple fault, internal error, failed entry), 256 with
 * the reason in zm_vm_error().
 */
int zm_vm_exit_status(zm_vm *vm);
const char *zm_vm_error(zm_vm *vm);

uint32_t zm_vm_epoch(zm_vm *vm);

/*
 * Dirty logging (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): zm_vm_dirty_start()
 * starts logging the guest's writes; zm_vm_dirty_log() ORs the pages
 * written since the previous call (or the start) into bitmap (one bit a
 * 4 KiB page, 64 a word) and re-protects exactly them; returns the count.
 */
int zm_vm_dirty_start(zm_vm *vm, char *err, size_t err_size);
int64_t zm_vm_dirty_log(zm_vm *vm, uint64_t *bitmap);
void zm_vm_dirty_stop(zm_vm *vm);

/*
 * Tracks writes with a dirty ring of entries (a power of two in
 * 1024..65536) per vCPU instead (KVM_CAP_DIRTY_LOG_RING): call it on a VM
 * made with 0 vCPUs, before zm_vm_create_vcpus().  zm_vm_dirty_start(),
 * _log() and _stop() then harvest the rings; a vCPU whose ring fills
 * empties them all itself and runs on.
 */
int zm_vm_set_dirty_ring(zm_vm *vm, uint32_t entries, char *err,
                         size_t err_size);

/*
 * The state of the paused VM (every vCPU's registers, FPU/XSAVE, MSRs,
 * LAPIC, events; the irqchip, PIT, clock; the UART and the epoch) as one
 * blob into buf (cap bytes).  Returns its size, or -ENOBUFS.
 */
ssize_t zm_vm_save(zm_vm *vm, void *buf, size_t cap, char *err,
                   size_t err_size);

/*
 * The geometry a blob describes, after checking its header: 0, or
 * -EBADMSG / -EPROTO with the reason.
 */
int zm_vm_state_geometry(const void *buf, size_t len, unsigned *vcpus,
                         uint64_t *ram_size, char *err, size_t err_size);

/*
 * Restores a blob from zm_vm_save() into a VM of the same geometry whose
 * vCPUs have not started, after checking every record; the epoch becomes
 * the source's + 1.  -EBADMSG (malformed), -EPROTO (another version), -EINVAL
 * (another geometry), or KVM's error.
 */
int zm_vm_load(zm_vm *vm, const void *buf, size_t len, char *err,
               size_t err_size);

#endif /* ZM_VM_KVM_H */
