/*
 * kvm.c - the VM, its vCPU threads and devices, and KVM's dirty log
 * (see kvm.h); the state blob is in vmstate.c
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvm_priv.h"

/* Above 3 GiB, below the IOAPIC (0xFEC00000): KVM's real-mode helpers. */
#define TSS_ADDR 0xFFFBD000u
#define IDENTITY_MAP_ADDR 0xFFFBC000u

#define COM1 0x3F8u
#define PORT_EPOCH 0x511u
#define PORT_EXIT 0x501u

/* The signal that kicks a vCPU out of KVM_RUN (unblocked in vCPUs only). */
#define SIG_KICK SIGUSR1

static __thread struct kvm_run *tls_run;

int zm_vm_fail(char *err, size_t err_size, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && err_size) {
        vsnprintf(err, err_size, fmt, ap);
    }
    va_end(ap);
    return code;
}

/* The MSRs worth migrating, as QEMU's kvm_put_msrs(); TSC last. */
static const uint32_t wanted_msrs[] = {
    0x174,      /* SYSENTER_CS */
    0x175,      /* SYSENTER_ESP */
    0x176,      /* SYSENTER_EIP */
    0xC0000081, /* STAR */
    0xC0000082, /* LSTAR */
    0xC0000083, /* CSTAR */
    0xC0000084, /* FMASK */
    0xC0000102, /* KERNEL_GS_BASE */
    0xC0000103, /* TSC_AUX */
    0x277,      /* PAT */
    0x1A0,      /* MISC_ENABLE */
    0x2FF,      /* MTRRdefType */
    0x250,      /* MTRRfix64K_00000 */
    0x258,      /* MTRRfix16K_80000 */
    0x259,      /* MTRRfix16K_A0000 */
    0x268,      0x269, 0x26A, 0x26B, 0x26C, 0x26D, 0x26E, 0x26F, /* fix4K */
    0x4B564D00, /* KVM_WALL_CLOCK_NEW */
    0x4B564D01, /* KVM_SYSTEM_TIME_NEW */
    0x11,       /* KVM_WALL_CLOCK */
    0x12,       /* KVM_SYSTEM_TIME */
    0x4B564D02, /* KVM_ASYNC_PF_EN */
    0x4B564D03, /* KVM_STEAL_TIME */
    0x4B564D04, /* KVM_PV_EOI_EN */
    0x3B,       /* TSC_ADJUST */
    0x10,       /* TSC: last, so nothing after it moves the clock */
};

/* ---- setup ---- */

int zm_vm_probe(char *err, size_t err_size)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return zm_vm_fail(err, err_size, -e, "/dev/kvm: %s", strerror(e));
    }
    int api = ioctl(fd, KVM_GET_API_VERSION, 0);
    close(fd);
    if (api != KVM_API_VERSION) {
        return zm_vm_fail(err, err_size, -ENOTSUP,
                          "/dev/kvm: API version %d, not %d", api,
                          KVM_API_VERSION);
    }
    return 0;
}

static void kick_handler(int sig)
{
    (void)sig;
    /* KVM_RUN returns at once (EINTR) if this lands before it enters. */
    if (tls_run) {
        tls_run->immediate_exit = 1;
    }
}

static int get_supported_cpuid(zm_vm *vm, char *err, size_t err_size)
{
    for (unsigned n = 64; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c =
            calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
        if (!c) {
            return zm_vm_fail(err, err_size, -ENOMEM, "out of memory");
        }
        c->nent = n;
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            vm->cpuid = c;
            return 0;
        }
        int e = errno;
        free(c);
        if (e != E2BIG) {
            return zm_vm_fail(err, err_size, -e, "KVM_GET_SUPPORTED_CPUID: %s",
                              strerror(e));
        }
    }
    return zm_vm_fail(err, err_size, -E2BIG,
                      "KVM_GET_SUPPORTED_CPUID: too "
                      "many entries");
}

/* The supported CPUID with this vCPU's APIC id, as QEMU presents it. */
static int set_cpuid(zm_vm *vm, struct zm_vcpu *v, char *err, size_t err_size)
{
    size_t size =
        sizeof(*vm->cpuid) + vm->cpuid->nent * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *c = malloc(size);
    if (!c) {
        return zm_vm_fail(err, err_size, -ENOMEM, "out of memory");
    }
    memcpy(c, vm->cpuid, size);
    for (unsigned i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        switch (e->function) {
        case 1:
            e->ebx = (e->ebx & 0x0000FFFFu) | (v->id << 24) |
                     ((vm->nvcpus & 0xFFu) << 16);
            e->ecx |= 1u << 31; /* hypervisor */
            break;
        case 0xB:
        case 0x1F:
            e->edx = v->id;
            break;
        case 0x8000001E:
            e->eax = v->id;
            break;
        default:
            break;
        }
    }
    int ret = ioctl(v->fd, KVM_SET_CPUID2, c);
    int e = errno;
    free(c);
    if (ret != 0) {
        return zm_vm_fail(err, err_size, -e, "vCPU %u: KVM_SET_CPUID2: %s",
                          v->id, strerror(e));
    }
    return 0;
}

/*
 * The wanted MSRs KVM lists and can read on this vCPU: one KVM_GET_MSRS
 * stops at the first it cannot read, so drop that one and try again.
 */
static int probe_msrs(zm_vm *vm, struct zm_vcpu *v, char *err, size_t err_size)
{
    struct kvm_msr_list probe = { .nmsrs = 0 };
    if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) != 0 &&
        errno != E2BIG) {
        return zm_vm_fail(err, err_size, -errno, "KVM_GET_MSR_INDEX_LIST: %s",
                          strerror(errno));
    }
    struct kvm_msr_list *list =
        calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
    struct kvm_msrs *m =
        calloc(1, sizeof(*m) + ZM_VM_MAX_MSRS * sizeof(struct kvm_msr_entry));
    if (!list || !m) {
        free(list);
        free(m);
        return zm_vm_fail(err, err_size, -ENOMEM, "out of memory");
    }
    list->nmsrs = probe.nmsrs;
    if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) != 0) {
        int e = errno;
        free(list);
        free(m);
        return zm_vm_fail(err, err_size, -e, "KVM_GET_MSR_INDEX_LIST: %s",
                          strerror(e));
    }
    vm->nmsrs = 0;
    for (size_t w = 0; w < sizeof(wanted_msrs) / sizeof(wanted_msrs[0]); w++) {
        for (unsigned i = 0; i < list->nmsrs; i++) {
            if (list->indices[i] == wanted_msrs[w]) {
                vm->msrs[vm->nmsrs++] = wanted_msrs[w];
                break;
            }
        }
    }
    for (unsigned i = 0; i < list->nmsrs; i++) {
        vm->has_tsc_deadline |= list->indices[i] == 0x6E0;
    }
    free(list);
    for (;;) {
        m->nmsrs = vm->nmsrs;
        for (unsigned i = 0; i < vm->nmsrs; i++) {
            m->entries[i] = (struct kvm_msr_entry){ .index = vm->msrs[i] };
        }
        int n = ioctl(v->fd, KVM_GET_MSRS, m);
        if (n < 0) {
            int e = errno;
            free(m);
            return zm_vm_fail(err, err_size, -e, "KVM_GET_MSRS: %s",
                              strerror(e));
        }
        if ((unsigned)n >= vm->nmsrs) {
            break;
        }
        memmove(&vm->msrs[n], &vm->msrs[n + 1],
                (vm->nmsrs - (unsigned)n - 1) * sizeof(uint32_t));
        vm->nmsrs--;
    }
    free(m);
    return 0;
}

static int create_vcpu(zm_vm *vm, unsigned id, char *err, size_t err_size)
{
    struct zm_vcpu *v = &vm->vcpus[id];
    v->vm = vm;
    v->id = id;
    v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
    if (v->fd < 0) {
        int e = errno;
        v->fd = -1;
        return zm_vm_fail(err, err_size, -e, "KVM_CREATE_VCPU %u: %s", id,
                          strerror(e));
    }
    v->run =
        mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        int e = errno;
        v->run = NULL;
        return zm_vm_fail(err, err_size, -e, "vCPU %u: mmap kvm_run: %s", id,
                          strerror(e));
    }
    if (vm->ring_entries) {
        long page = sysconf(_SC_PAGESIZE);
        v->ring = mmap(NULL, vm->ring_entries * sizeof(*v->ring),
                       PROT_READ | PROT_WRITE, MAP_SHARED, v->fd,
                       (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * page);
        if (v->ring == MAP_FAILED) {
            int e = errno;
            v->ring = NULL;
            return zm_vm_fail(err, err_size, -e,
                              "vCPU %u: mmap its dirty ring: %s", id,
                              strerror(e));
        }
    }
    return set_cpuid(vm, v, err, err_size);
}

int zm_vm_create_vcpus(zm_vm *vm, unsigned vcpus, char *err, size_t err_size)
{
    if (vm->nvcpus) {
        return zm_vm_fail(err, err_size, -EEXIST, "the vCPUs exist already");
    }
    if (vcpus < 1 || vcpus > ZM_VM_MAX_VCPUS) {
        return zm_vm_fail(err, err_size, -EINVAL, "%u vCPUs: 1..%u", vcpus,
                          ZM_VM_MAX_VCPUS);
    }
    int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (max > 0 && vcpus > (unsigned)max) {
        return zm_vm_fail(err, err_size, -EINVAL,
                          "%u vCPUs: this KVM allows %d", vcpus, max);
    }
    vm->vcpus = calloc(vcpus, sizeof(*vm->vcpus));
    if (!vm->vcpus) {
        return zm_vm_fail(err, err_size, -ENOMEM, "out of memory");
    }
    for (unsigned i = 0; i < vcpus; i++) {
        vm->vcpus[i].fd = -1;
    }
    vm->nvcpus = vcpus;
    int ret;
    for (unsigned i = 0; i < vcpus; i++) {
        if ((ret = create_vcpu(vm, i, err, err_size)) < 0) {
            return ret;
        }
    }
    return probe_msrs(vm, &vm->vcpus[0], err, err_size);
}

static int vm_ioctl(zm_vm *vm, unsigned long req, unsigned long arg,
                    const char *name, char *err, size_t err_size)
{
    if (ioctl(vm->vm_fd, req, arg) != 0) {
        int e = errno;
        return zm_vm_fail(err, err_size, -e, "%s: %s", name, strerror(e));
    }
    return 0;
}

static int set_slot(zm_vm *vm, uint32_t flags)
{
    struct kvm_userspace_memory_region r = {
        .slot = 0,
        .flags = flags,
        .guest_phys_addr = 0,
        .memory_size = vm->ram_size,
        .userspace_addr = (uintptr_t)vm->ram,
    };
    return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) == 0 ? 0 : -errno;
}

int zm_vm_new(uint64_t ram_size, void *ram, unsigned vcpus, int out_fd,
              zm_vm **out, char *err, size_t err_size)
{
    int ret;

    if (ram_size == 0 || ram_size % ZM_VM_PAGE || ram_size > ZM_VM_MAX_RAM) {
        return zm_vm_fail(err, err_size, -EINVAL,
                          "RAM of %llu bytes: a multiple of 4 KiB up to 3 GiB",
                          (unsigned long long)ram_size);
    }
    zm_vm *vm = calloc(1, sizeof(*vm));
    if (!vm) {
        return zm_vm_fail(err, err_size, -ENOMEM, "out of memory");
    }
    vm->kvm_fd = vm->vm_fd = vm->event_fd = -1;
    vm->out_fd = out_fd;
    vm->ram_size = ram_size;
    atomic_store(&vm->exit_status, -1);
    atomic_store(&vm->epoch, 1);
    pthread_mutex_init(&vm->lock, NULL);
    pthread_cond_init(&vm->cond, NULL);
    pthread_mutex_init(&vm->io_lock, NULL);
    pthread_mutex_init(&vm->ring_lock, NULL);
    vm->uart.lcr = 0x03; /* 8N1, as firmware leaves it */

    if ((vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)) < 0) {
        ret =
            zm_vm_fail(err, err_size, -errno, "/dev/kvm: %s", strerror(errno));
        goto fail;
    }
    if ((vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        ret = zm_vm_fail(err, err_size, -errno, "eventfd: %s", strerror(errno));
        goto fail;
    }
    static const struct {
        int cap;
        const char *name;
    } caps[] = {
        { KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
        { KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
        { KVM_CAP_PIT2, "KVM_CAP_PIT2" },
        { KVM_CAP_XSAVE, "KVM_CAP_XSAVE" },
        { KVM_CAP_XCRS, "KVM_CAP_XCRS" },
        { KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS" },
        { KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS" },
        { KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK" },
        { KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
          "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2" },
    };
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
            ret = zm_vm_fail(err, err_size, -ENOTSUP, "this KVM lacks %s",
                             caps[i].name);
            goto fail;
        }
    }
    int run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run)) {
        ret = zm_vm_fail(err, err_size, -EIO, "KVM_GET_VCPU_MMAP_SIZE: %d",
                         run_size);
        goto fail;
    }
    vm->run_size = (size_t)run_size;
    if ((vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0)) < 0) {
        ret = zm_vm_fail(err, err_size, -errno, "KVM_CREATE_VM: %s",
                         strerror(errno));
        goto fail;
    }
    int xs = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    vm->xsave2 = xs > 0;
    vm->xsave_size = xs > (int)sizeof(struct kvm_xsave)
                         ? (size_t)xs
                         : sizeof(struct kvm_xsave);
    struct kvm_enable_cap dirty_cap = {
        .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
        .args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE },
    };
    if ((ret = vm_ioctl(vm, KVM_SET_TSS_ADDR, TSS_ADDR, "KVM_SET_TSS_ADDR", err,
                        err_size)) < 0 ||
        (ret = vm_ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR,
                        (uintptr_t) & (uint64_t){ IDENTITY_MAP_ADDR },
                        "KVM_SET_IDENTITY_MAP_ADDR", err, err_size)) < 0 ||
        (ret = vm_ioctl(vm, KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP", err,
                        err_size)) < 0 ||
        (ret = vm_ioctl(
             vm, KVM_CREATE_PIT2,
             /* port 0x61 (gate, OUT2) in the kernel too */
             (uintptr_t) &
                 (struct kvm_pit_config){ .flags = KVM_PIT_SPEAKER_DUMMY },
             "KVM_CREATE_PIT2", err, err_size)) < 0 ||
        (ret = vm_ioctl(vm, KVM_ENABLE_CAP, (uintptr_t)&dirty_cap,
                        "KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2)", err,
                        err_size)) < 0) {
        goto fail;
    }

    if (ram) {
        vm->ram = ram;
    } else {
        vm->ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (vm->ram == MAP_FAILED) {
            vm->ram = NULL;
            ret = zm_vm_fail(
                err, err_size, -errno, "mapping %llu MiB of guest RAM: %s",
                (unsigned long long)(ram_size >> 20), strerror(errno));
            goto fail;
        }
        vm->ram_owned = true;
        /* Huge pages: fewer EPT entries and faster dirty-log walks. */
        madvise(vm->ram, ram_size, MADV_HUGEPAGE);
    }
    if ((ret = set_slot(vm, 0)) < 0) {
        zm_vm_fail(err, err_size, ret, "KVM_SET_USER_MEMORY_REGION: %s",
                   strerror(-ret));
        goto fail;
    }
    if ((ret = get_supported_cpuid(vm, err, err_size)) < 0) {
        goto fail;
    }

    struct sigaction sa = { .sa_handler = kick_handler };
    sigemptyset(&sa.sa_mask);
    sigaction(SIG_KICK, &sa, NULL);

    if (vcpus && (ret = zm_vm_create_vcpus(vm, vcpus, err, err_size)) < 0) {
        goto fail;
    }
    *out = vm;
    return 0;
fail:
    zm_vm_free(vm);
    return ret;
}

void zm_vm_free(zm_vm *vm)
{
    if (!vm) {
        return;
    }
    zm_vm_stop(vm);
    for (unsigned i = 0; vm->vcpus && i < vm->nvcpus; i++) {
        struct zm_vcpu *v = &vm->vcpus[i];
        if (v->run) {
            munmap(v->run, vm->run_size);
        }
        if (v->ring) {
            munmap(v->ring, vm->ring_entries * sizeof(*v->ring));
        }
        if (v->fd >= 0) {
            close(v->fd);
        }
    }
    free(vm->vcpus);
    if (vm->vm_fd >= 0) {
        close(vm->vm_fd);
    }
    if (vm->kvm_fd >= 0) {
        close(vm->kvm_fd);
    }
    if (vm->event_fd >= 0) {
        close(vm->event_fd);
    }
    if (vm->ram_owned) {
        munmap(vm->ram, vm->ram_size);
    }
    free(vm->cpuid);
    free(vm->dirty_buf);
    free(vm->ring_dirty);
    pthread_mutex_destroy(&vm->ring_lock);
    pthread_mutex_destroy(&vm->lock);
    pthread_cond_destroy(&vm->cond);
    pthread_mutex_destroy(&vm->io_lock);
    free(vm);
}

void *zm_vm_ram(const zm_vm *vm)
{
    return vm->ram;
}

uint64_t zm_vm_ram_size(const zm_vm *vm)
{
    return vm->ram_size;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

int zm_vm_prealloc(zm_vm *vm, char *err, size_t err_size)
{
    if (madvise(vm->ram, vm->ram_size, MADV_POPULATE_WRITE) == 0) {
        return 0;
    }
    if (errno != EINVAL) {
        return zm_vm_fail(
            err, err_size, -errno, "preallocating %llu MiB of guest RAM: %s",
            (unsigned long long)(vm->ram_size >> 20), strerror(errno));
    }
    /* An older kernel: a write to each page backs it just as well. */
    volatile unsigned char *ram = vm->ram;
    for (uint64_t off = 0; off < vm->ram_size; off += 4096) {
        ram[off] = ram[off];
    }
    return 0;
}

unsigned zm_vm_vcpus(const zm_vm *vm)
{
    return vm->nvcpus;
}

int zm_vm_event_fd(const zm_vm *vm)
{
    return vm->event_fd;
}

int zm_vm_exit_status(zm_vm *vm)
{
    return atomic_load(&vm->exit_status);
}

const char *zm_vm_error(zm_vm *vm)
{
    return vm->error;
}

uint32_t zm_vm_epoch(zm_vm *vm)
{
    return atomic_load(&vm->epoch);
}

/* ---- boot ---- */

int zm_vm_boot_state(zm_vm *vm, uint32_t entry, uint32_t mbi, char *err,
                     size_t err_size)
{
    struct zm_vcpu *bsp = &vm->vcpus[0];
    struct kvm_sregs sregs;
    struct kvm_regs regs = { 0 };

    if (ioctl(bsp->fd, KVM_GET_SREGS, &sregs) != 0) {
        return zm_vm_fail(err, err_size, -errno, "KVM_GET_SREGS: %s",
                          strerror(errno));
    }
    /* Flat 4 GiB segments: code exec/read, data read/write, 32-bit. */
    struct kvm_segment code = {
        .base = 0,
        .limit = 0xFFFFFFFF,
        .selector = 0x08,
        .type = 0xB,
        .present = 1,
        .dpl = 0,
        .db = 1,
        .s = 1,
        .l = 0,
        .g = 1,
    };
    struct kvm_segment data = code;
    data.selector = 0x10;
    data.type = 0x3;
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.cr0 = 0x11; /* PE, ET; paging off, caches on */
    sregs.cr4 = 0;
    sregs.efer = 0;
    if (ioctl(bsp->fd, KVM_SET_SREGS, &sregs) != 0) {
        return zm_vm_fail(err, err_size, -errno, "KVM_SET_SREGS: %s",
                          strerror(errno));
    }
    regs.rip = entry;
    regs.rax = 0x2BADB002;
    regs.rbx = mbi;
    regs.rflags = 0x2; /* IF = 0 */
    if (ioctl(bsp->fd, KVM_SET_REGS, &regs) != 0) {
        return zm_vm_fail(err, err_size, -errno, "KVM_SET_REGS: %s",
                          strerror(errno));
    }
    atomic_store(&vm->epoch, 1);
    return 0;
}

/* ---- devices ---- */

static void uart_flush(zm_vm *vm)
{
    size_t off = 0;
    while (off < vm->line_len) {
        ssize_t n = write(vm->out_fd, vm->line + off, vm->line_len - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break; /* stdout gone: drop the output, keep the guest */
        }
        off += (size_t)n;
    }
    vm->line_len = 0;
}

static void uart_out(zm_vm *vm, unsigned reg, uint8_t v)
{
    struct zm_uart *u = &vm->uart;
    bool dlab = u->lcr & 0x80;
    switch (reg) {
    case 0:
        if (dlab) {
            u->dll = v;
            break;
        }
        vm->line[vm->line_len++] = (char)v;
        if (v == '\n' || vm->line_len == sizeof(vm->line)) {
            uart_flush(vm);
        }
        break;
    case 1:
        if (dlab) {
            u->dlm = v;
        } else {
            u->ier = v & 0x0F;
        }
        break;
    case 2:
        u->fcr = v & 0xC9; /* FIFO enable and trigger level */
        break;
    case 3:
        u->lcr = v;
        break;
    case 4:
        u->mcr = v & 0x1F;
        break;
    case 7:
        u->scr = v;
        break;
    default:
        break; /* LSR, MSR: read only */
    }
}

static uint8_t uart_in(zm_vm *vm, unsigned reg)
{
    struct zm_uart *u = &vm->uart;
    bool dlab = u->lcr & 0x80;
    switch (reg) {
    case 0:
        return dlab ? u->dll : 0; /* nothing is ever received */
    case 1:
        return dlab ? u->dlm : u->ier;
    case 2:
        /* No interrupt pending; FIFOs reported when enabled. */
        return (u->fcr & 1) ? 0xC1 : 0x01;
    case 3:
        return u->lcr;
    case 4:
        return u->mcr;
    case 5:
        return 0x60; /* THR empty, transmitter empty: always ready */
    case 6:
        /* Loopback mirrors MCR; otherwise carrier, DSR and CTS up. */
        return (u->mcr & 0x10) ? (uint8_t)((u->mcr & 0x0F) << 4) : 0xB0;
    default:
        return u->scr;
    }
}

static void post_event(zm_vm *vm)
{
    uint64_t one = 1;
    (void)!write(vm->event_fd, &one, sizeof(one));
}

/* Ends the VM's run with status (first one wins) and wakes the main loop. */
static void set_exit(zm_vm *vm, int status)
{
    int expected = -1;
    atomic_compare_exchange_strong(&vm->exit_status, &expected, status);
    post_event(vm);
}

static void handle_io(zm_vm *vm, struct kvm_run *run)
{
    unsigned char *data = (unsigned char *)run + run->io.data_offset;
    unsigned port = run->io.port, size = run->io.size;
    bool out = run->io.direction == KVM_EXIT_IO_OUT;

    for (unsigned i = 0; i < run->io.count; i++, data += size) {
        if (port >= COM1 && port < COM1 + 8) {
            pthread_mutex_lock(&vm->io_lock);
            if (out) {
                uart_out(vm, port - COM1, data[0]);
            } else {
                memset(data, 0, size);
                data[0] = uart_in(vm, port - COM1);
            }
            pthread_mutex_unlock(&vm->io_lock);
        } else if (port == PORT_EPOCH && !out) {
            uint32_t e = atomic_load(&vm->epoch);
            memcpy(data, &e, size < 4 ? size : 4);
        } else if (port == PORT_EXIT && out) {
            pthread_mutex_lock(&vm->io_lock);
            uart_flush(vm);
            pthread_mutex_unlock(&vm->io_lock);
            set_exit(vm, data[0]);
        } else if (!out) {
            memset(data, 0xFF, size); /* nothing there */
        }
    }
}

/* ---- vCPU threads ---- */

static void vcpu_fatal(struct zm_vcpu *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void vcpu_fatal(struct zm_vcpu *v, const char *fmt, ...)
{
    zm_vm *vm = v->vm;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct kvm_regs regs = { 0 };
    struct kvm_sregs sregs = { 0 };
    /* Where the guest was: what one needs to debug a crash. */
    ioctl(v->fd, KVM_GET_REGS, &regs);
    ioctl(v->fd, KVM_GET_SREGS, &sregs);
    pthread_mutex_lock(&vm->lock);
    if (!vm->error[0]) {
        snprintf(vm->error, sizeof(vm->error),
                 "vCPU %u: %s (rip 0x%llx cr0 0x%llx cr3 0x%llx cr4 0x%llx "
                 "efer 0x%llx)",
                 v->id, msg, (unsigned long long)regs.rip,
                 (unsigned long long)sregs.cr0, (unsigned long long)sregs.cr3,
                 (unsigned long long)sregs.cr4, (unsigned long long)sregs.efer);
    }
    pthread_mutex_unlock(&vm->lock);
    set_exit(vm, 256);
}

/* Waits while a pause is asked for; false once the VM quits. */
static bool vcpu_checkpoint(struct zm_vcpu *v)
{
    zm_vm *vm = v->vm;
    pthread_mutex_lock(&vm->lock);
    while (vm->pause_req && !vm->quit) {
        if (!v->parked) {
            v->parked = true;
            vm->parked++;
            pthread_cond_broadcast(&vm->cond);
        }
        pthread_cond_wait(&vm->cond, &vm->lock);
    }
    if (v->parked) {
        v->parked = false;
        vm->parked--;
    }
    bool go = !vm->quit;
    pthread_mutex_unlock(&vm->lock);
    return go;
}

static int ring_full(zm_vm *vm);

/*
 * A vCPU parks only after KVM_RUN returned EINTR: KVM completes a pending
 * port or MMIO read before it honours immediate_exit, so the state saved
 * while parked is consistent (QEMU's rule too).
 */
static void *vcpu_thread(void *arg)
{
    struct zm_vcpu *v = arg;
    zm_vm *vm = v->vm;
    struct kvm_run *run = v->run;
    sigset_t kick;
    bool check = true;

    tls_run = run;
    sigemptyset(&kick);
    sigaddset(&kick, SIG_KICK);
    pthread_sigmask(SIG_UNBLOCK, &kick, NULL);

    for (;;) {
        if (check) {
            /* Reset before reading the flags: a later kick sets it again. */
            run->immediate_exit = 0;
            pthread_mutex_lock(&vm->lock);
            bool stop = vm->pause_req || vm->quit;
            pthread_mutex_unlock(&vm->lock);
            if (stop && !vcpu_checkpoint(v)) {
                break;
            }
            check = false;
        }
        if (ioctl(v->fd, KVM_RUN, 0) != 0) {
            if (errno == EINTR || errno == EAGAIN) {
                check = true;
                continue;
            }
            vcpu_fatal(v, "KVM_RUN: %s", strerror(errno));
            break;
        }
        switch (run->exit_reason) {
        case KVM_EXIT_IO:
            handle_io(vm, run);
            continue;
        case KVM_EXIT_MMIO:
            if (!run->mmio.is_write) {
                memset(run->mmio.data, 0, sizeof(run->mmio.data));
            }
            if (!atomic_exchange(&vm->mmio_warned, true)) {
                fprintf(stderr,
                        "zmigrate vm: warning: the guest %s unemulated "
                        "MMIO at 0x%llx (ignored; reads are 0)\n",
                        run->mmio.is_write ? "wrote" : "read",
                        (unsigned long long)run->mmio.phys_addr);
            }
            continue;
        case KVM_EXIT_INTR:
            check = true;
            continue;
        case KVM_EXIT_DIRTY_RING_FULL: {
            int ret = ring_full(vm);
            if (ret < 0) {
                vcpu_fatal(v, "KVM_RESET_DIRTY_RINGS: %s", strerror(-ret));
                break;
            }
            check = true;
            continue;
        }
        case KVM_EXIT_SHUTDOWN:
            vcpu_fatal(v, "the guest shut down (triple fault)");
            break;
        case KVM_EXIT_INTERNAL_ERROR:
            vcpu_fatal(v, "KVM internal error, suberror %u",
                       run->internal.suberror);
            break;
        case KVM_EXIT_FAIL_ENTRY:
            vcpu_fatal(v, "VM entry failed, reason 0x%llx",
                       (unsigned long long)
                           run->fail_entry.hardware_entry_failure_reason);
            break;
        case KVM_EXIT_SYSTEM_EVENT:
            vcpu_fatal(v, "the guest asked for a system event (type %u)",
                       run->system_event.type);
            break;
        case KVM_EXIT_HLT:
            vcpu_fatal(v, "the guest halted with interrupts off");
            break;
        default:
            vcpu_fatal(v, "unexpected KVM exit %u", run->exit_reason);
            break;
        }
        break;
    }
    pthread_mutex_lock(&vm->lock);
    v->gone = true;
    vm->alive--;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    return NULL;
}

int zm_vm_start(zm_vm *vm, char *err, size_t err_size)
{
    sigset_t kick, old;

    if (vm->started) {
        return 0;
    }
    /* Only vCPU threads take the kick: block it here, they unblock it. */
    sigemptyset(&kick);
    sigaddset(&kick, SIG_KICK);
    pthread_sigmask(SIG_BLOCK, &kick, &old);
    vm->started = true;
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        struct zm_vcpu *v = &vm->vcpus[i];
        pthread_mutex_lock(&vm->lock);
        vm->alive++;
        pthread_mutex_unlock(&vm->lock);
        int ret = pthread_create(&v->thread, NULL, vcpu_thread, v);
        if (ret != 0) {
            pthread_mutex_lock(&vm->lock);
            vm->alive--;
            pthread_mutex_unlock(&vm->lock);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            zm_vm_stop(vm);
            return zm_vm_fail(err, err_size, -ret, "vCPU thread: %s",
                              strerror(ret));
        }
        v->started = true;
        /* Named so that tools (and the QEMU bench) can tell guest time from
         * migration time: QEMU names its threads "CPU n/KVM". */
        char name[16];
        snprintf(name, sizeof(name), "vcpu%u", i);
        pthread_setname_np(v->thread, name);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}

static void kick_all(zm_vm *vm)
{
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        struct zm_vcpu *v = &vm->vcpus[i];
        if (v->started && !v->gone) {
            pthread_kill(v->thread, SIG_KICK);
        }
    }
}

int zm_vm_pause(zm_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->pause_req = true;
    pthread_mutex_unlock(&vm->lock);
    kick_all(vm);
    pthread_mutex_lock(&vm->lock);
    while (vm->parked < vm->alive) {
        pthread_cond_wait(&vm->cond, &vm->lock);
    }
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

int zm_vm_resume(zm_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->pause_req = false;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

void zm_vm_stop(zm_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->quit = true;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    kick_all(vm);
    for (unsigned i = 0; vm->vcpus && i < vm->nvcpus; i++) {
        struct zm_vcpu *v = &vm->vcpus[i];
        if (v->started) {
            pthread_join(v->thread, NULL);
            v->started = false;
        }
    }
    /* A line the guest was stopped in the middle of ends here, so that
     * what the VMM prints next (the JSON result) is a line of its own. */
    pthread_mutex_lock(&vm->io_lock);
    if (vm->line_len > 0 && vm->line_len < sizeof(vm->line)) {
        vm->line[vm->line_len++] = '\n';
    }
    uart_flush(vm);
    pthread_mutex_unlock(&vm->io_lock);
}

/* ---- dirty log, or dirty ring ---- */

int zm_vm_set_dirty_ring(zm_vm *vm, uint32_t entries, char *err,
                         size_t err_size)
{
    if (vm->nvcpus || vm->ring_entries) {
        return zm_vm_fail(err, err_size, -EBUSY,
                          "the dirty ring comes once, before the vCPUs");
    }
    if (entries < 1024 || entries > 65536 || (entries & (entries - 1))) {
        return zm_vm_fail(err, err_size, -EINVAL,
                          "a dirty ring of %u entries: a power of two in "
                          "1024..65536",
                          entries);
    }
    int max = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING);
    size_t bytes = (size_t)entries * sizeof(struct kvm_dirty_gfn);
    if (max <= 0) {
        return zm_vm_fail(err, err_size, -ENOTSUP,
                          "this KVM has no dirty ring "
                          "(KVM_CAP_DIRTY_LOG_RING)");
    }
    if (bytes > (size_t)max) {
        return zm_vm_fail(err, err_size, -EINVAL,
                          "a dirty ring of %u entries: this KVM takes at "
                          "most %zu",
                          entries, (size_t)max / sizeof(struct kvm_dirty_gfn));
    }
    uint64_t pages = vm->ram_size / ZM_VM_PAGE;
    vm->ring_dirty = calloc((pages + 63) / 64, sizeof(uint64_t));
    if (!vm->ring_dirty) {
        return zm_vm_fail(err, err_size, -ENOMEM, "out of memory");
    }
    struct kvm_enable_cap cap = { .cap = KVM_CAP_DIRTY_LOG_RING,
                                  .args = { bytes } };
    int ret = vm_ioctl(vm, KVM_ENABLE_CAP, (uintptr_t)&cap,
                       "KVM_ENABLE_CAP(DIRTY_LOG_RING)", err, err_size);
    if (ret < 0) {
        free(vm->ring_dirty);
        vm->ring_dirty = NULL;
        return ret;
    }
    vm->ring_entries = entries;
    return 0;
}

/*
 * Moves the pages the vCPUs' rings name into ring_dirty and hands the
 * entries back: KVM_RESET_DIRTY_RINGS write-protects those pages again.
 * Under ring_lock; the vCPUs may run.  A reset that failed is owed: the
 * next harvest makes it even if it finds nothing new, or a full ring
 * would stay full.
 */
static int ring_harvest(zm_vm *vm)
{
    uint64_t pages = vm->ram_size / ZM_VM_PAGE;
    uint32_t mask = vm->ring_entries - 1;

    for (unsigned i = 0; i < vm->nvcpus; i++) {
        struct zm_vcpu *v = &vm->vcpus[i];
        while (v->ring) {
            struct kvm_dirty_gfn *e = &v->ring[v->ring_next & mask];
            if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) &
                  KVM_DIRTY_GFN_F_DIRTY)) {
                break;
            }
            /* Slot 0 is all the RAM; anything else is not ours. */
            if (e->slot == 0 && e->offset < pages) {
                vm->ring_dirty[e->offset / 64] |= 1ull << (e->offset % 64);
            }
            __atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET,
                             __ATOMIC_RELEASE);
            v->ring_next++;
            vm->ring_reset_owed = true;
        }
    }
    if (!vm->ring_reset_owed) {
        return 0;
    }
    /* Newer kernels stop a long reset for a signal, a pause's kick. */
    int ret;
    do {
        ret = ioctl(vm->vm_fd, KVM_RESET_DIRTY_RINGS, 0);
    } while (ret < 0 && errno == EINTR);
    if (ret < 0) {
        return -errno;
    }
    vm->ring_reset_owed = false;
    return 0;
}

/* A vCPU's ring is full: empty them all, so that it can run on. */
static int ring_full(zm_vm *vm)
{
    pthread_mutex_lock(&vm->ring_lock);
    int ret = ring_harvest(vm);
    pthread_mutex_unlock(&vm->ring_lock);
    return ret;
}

int zm_vm_dirty_start(zm_vm *vm, char *err, size_t err_size)
{
    uint64_t pages = vm->ram_size / ZM_VM_PAGE;
    if (!vm->ring_entries && !vm->dirty_buf) {
        vm->dirty_buf = calloc((pages + 63) / 64, sizeof(uint64_t));
        if (!vm->dirty_buf) {
            return zm_vm_fail(err, err_size, -ENOMEM, "out of memory");
        }
    }
    /* Without INITIALLY_SET: the log starts empty, writes from now on. */
    int ret = set_slot(vm, KVM_MEM_LOG_DIRTY_PAGES);
    if (ret < 0) {
        return zm_vm_fail(err, err_size, ret,
                          "KVM_SET_USER_MEMORY_REGION(LOG_DIRTY_PAGES): %s",
                          strerror(-ret));
    }
    vm->dirty_logging = true;
    return 0;
}

int64_t zm_vm_dirty_log(zm_vm *vm, uint64_t *bitmap)
{
    uint64_t pages = vm->ram_size / ZM_VM_PAGE;
    uint64_t words = (pages + 63) / 64;
    int64_t count = 0;

    if (!vm->dirty_logging) {
        return -EINVAL;
    }
    if (vm->ring_entries) {
        pthread_mutex_lock(&vm->ring_lock);
        int ret = ring_harvest(vm);
        for (uint64_t w = 0; ret == 0 && w < words; w++) {
            uint64_t bits = vm->ring_dirty[w];
            if (bits) {
                bitmap[w] |= bits;
                count += __builtin_popcountll(bits);
                vm->ring_dirty[w] = 0;
            }
        }
        pthread_mutex_unlock(&vm->ring_lock);
        return ret < 0 ? ret : count;
    }
    /*
     * KVM's bitmap is unsigned long per 64 pages, bit i = page i: on
     * x86-64 the same layout as the library's uint64_t words.
     */
    _Static_assert(sizeof(unsigned long) == sizeof(uint64_t),
                   "KVM's dirty bitmap words are 64-bit here");
    struct kvm_dirty_log log = { .slot = 0, .dirty_bitmap = vm->dirty_buf };
    if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) != 0) {
        return -errno;
    }
    bool any = false;
    for (uint64_t w = 0; w < words; w++) {
        uint64_t bits = vm->dirty_buf[w];
        if (bits) {
            bitmap[w] |= bits;
            count += __builtin_popcountll(bits);
            any = true;
        }
    }
    if (!any) {
        return 0;
    }
    /* Re-protect exactly what was returned, before the pages are read. */
    struct kvm_clear_dirty_log clear = {
        .slot = 0,
        .num_pages = (uint32_t)pages,
        .first_page = 0,
        .dirty_bitmap = vm->dirty_buf,
    };
    if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clear) != 0) {
        return -errno;
    }
    return count;
}

void zm_vm_dirty_stop(zm_vm *vm)
{
    if (vm->dirty_logging) {
        set_slot(vm, 0);
        vm->dirty_logging = false;
        if (vm->ring_entries) {
            /* Leave the rings empty for a later start. */
            pthread_mutex_lock(&vm->ring_lock);
            ring_harvest(vm);
            memset(vm->ring_dirty, 0,
                   (vm->ram_size / ZM_VM_PAGE + 63) / 64 * sizeof(uint64_t));
            pthread_mutex_unlock(&vm->ring_lock);
        }
    }
}
