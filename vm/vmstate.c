/*
 * vmstate.c - the VM's state as one blob: the migration's device state
 *
 * Layout (host byte order; both ends are x86-64):
 *   header: "ZMVMSTAT", u32 version, u32 header size, u32 vCPUs,
 *           u32 epoch, u64 RAM size
 *   records: u32 tag, u32 vCPU (0 for the VM's), u32 length, u32 0,
 *            then length bytes padded to 8
 * zm_vm_state_parse() checks the whole blob (every record's tag, vCPU,
 * length, padding and what can be checked of its contents) before
 * zm_vm_load() makes the first KVM call; a record missing, repeated or
 * unknown refuses the blob.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kvm_priv.h"

#define STATE_MAGIC "ZMVMSTAT"
#define STATE_VERSION 1u
#define HEADER_SIZE 32u
#define RECORD_SIZE 16u
/* A struct kvm_msrs with room for every migrated MSR, in 64-bit words. */
#define MSRS_WORDS                                           \
    ((sizeof(struct kvm_msrs) +                              \
      (ZM_VM_MAX_MSRS + 1) * sizeof(struct kvm_msr_entry)) / \
     sizeof(uint64_t))

struct writer {
    unsigned char *buf;
    size_t cap, len;
    bool full;
};

static void *rec_begin(struct writer *w, uint32_t tag, uint32_t index,
                       size_t len)
{
    size_t padded = (len + 7) & ~(size_t)7;
    if (w->full || w->cap - w->len < RECORD_SIZE + padded) {
        w->full = true;
        return NULL;
    }
    uint32_t h[4] = { tag, index, (uint32_t)len, 0 };
    memcpy(w->buf + w->len, h, sizeof(h));
    unsigned char *p = w->buf + w->len + RECORD_SIZE;
    memset(p + len, 0, padded - len);
    w->len += RECORD_SIZE + padded;
    return p;
}

/* One ioctl's result as a record; the ioctl writes into the blob. */
static int rec_ioctl(struct writer *w, int fd, unsigned long req, uint32_t tag,
                     uint32_t index, size_t len, const char *name, char *err,
                     size_t err_size)
{
    void *p = rec_begin(w, tag, index, len);
    if (!p) {
        return 0; /* the caller reports -ENOBUFS */
    }
    memset(p, 0, len);
    if (ioctl(fd, req, p) != 0) {
        int e = errno;
        return zm_vm_fail(err, err_size, -e, "%s (vCPU %u): %s", name, index,
                          strerror(e));
    }
    return 0;
}

static int save_irqchip(zm_vm *vm, struct writer *w, uint32_t tag,
                        uint32_t chip, char *err, size_t err_size)
{
    /* Through an aligned copy: the blob may be at any address. */
    struct kvm_irqchip c = { .chip_id = chip };
    void *p = rec_begin(w, tag, 0, sizeof(c));
    if (!p) {
        return 0;
    }
    if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &c) != 0) {
        return zm_vm_fail(err, err_size, -errno, "KVM_GET_IRQCHIP %u: %s", chip,
                          strerror(errno));
    }
    memcpy(p, &c, sizeof(c));
    return 0;
}

static int save_vcpu(zm_vm *vm, struct zm_vcpu *v, struct writer *w, char *err,
                     size_t err_size)
{
    uint32_t id = v->id;
    int ret;

    if ((ret = rec_ioctl(w, v->fd, KVM_GET_REGS, ZM_VM_TAG_REGS, id,
                         sizeof(struct kvm_regs), "KVM_GET_REGS", err,
                         err_size)) < 0 ||
        (ret = rec_ioctl(w, v->fd, KVM_GET_SREGS, ZM_VM_TAG_SREGS, id,
                         sizeof(struct kvm_sregs), "KVM_GET_SREGS", err,
                         err_size)) < 0 ||
        (ret = rec_ioctl(w, v->fd, vm->xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE,
                         ZM_VM_TAG_XSAVE, id, vm->xsave_size, "KVM_GET_XSAVE",
                         err, err_size)) < 0 ||
        (ret = rec_ioctl(w, v->fd, KVM_GET_XCRS, ZM_VM_TAG_XCRS, id,
                         sizeof(struct kvm_xcrs), "KVM_GET_XCRS", err,
                         err_size)) < 0 ||
        (ret = rec_ioctl(w, v->fd, KVM_GET_LAPIC, ZM_VM_TAG_LAPIC, id,
                         sizeof(struct kvm_lapic_state), "KVM_GET_LAPIC", err,
                         err_size)) < 0 ||
        (ret = rec_ioctl(w, v->fd, KVM_GET_VCPU_EVENTS, ZM_VM_TAG_EVENTS, id,
                         sizeof(struct kvm_vcpu_events), "KVM_GET_VCPU_EVENTS",
                         err, err_size)) < 0 ||
        (ret = rec_ioctl(w, v->fd, KVM_GET_MP_STATE, ZM_VM_TAG_MP_STATE, id,
                         sizeof(struct kvm_mp_state), "KVM_GET_MP_STATE", err,
                         err_size)) < 0 ||
        (ret = rec_ioctl(w, v->fd, KVM_GET_DEBUGREGS, ZM_VM_TAG_DEBUGREGS, id,
                         sizeof(struct kvm_debugregs), "KVM_GET_DEBUGREGS", err,
                         err_size)) < 0) {
        return ret;
    }

    /* MSRs: the probed list, plus TSC_DEADLINE on its own record. */
    unsigned n = vm->nmsrs + (vm->has_tsc_deadline ? 1 : 0);
    uint64_t mbuf[MSRS_WORDS] = { 0 };
    struct kvm_msrs *m = (struct kvm_msrs *)mbuf;
    m->nmsrs = n;
    for (unsigned i = 0; i < vm->nmsrs; i++) {
        m->entries[i].index = vm->msrs[i];
    }
    if (vm->has_tsc_deadline) {
        m->entries[vm->nmsrs].index = ZM_VM_MSR_TSC_DEADLINE;
    }
    int got = ioctl(v->fd, KVM_GET_MSRS, m);
    if (got != (int)n) {
        return zm_vm_fail(err, err_size, got < 0 ? -errno : -EIO,
                          "KVM_GET_MSRS (vCPU %u): %d of %u", id, got, n);
    }
    void *p = rec_begin(w, ZM_VM_TAG_MSRS, id,
                        vm->nmsrs * sizeof(struct kvm_msr_entry));
    if (p) {
        memcpy(p, m->entries, vm->nmsrs * sizeof(struct kvm_msr_entry));
    }
    if (vm->has_tsc_deadline &&
        (p = rec_begin(w, ZM_VM_TAG_TSC_DEADLINE, id, sizeof(uint64_t)))) {
        memcpy(p, &m->entries[vm->nmsrs].data, sizeof(uint64_t));
    }
    return 0;
}

ssize_t zm_vm_save(zm_vm *vm, void *buf, size_t cap, char *err, size_t err_size)
{
    struct writer w = { .buf = buf, .cap = cap };
    int ret;

    if (cap < HEADER_SIZE) {
        return zm_vm_fail(err, err_size, -ENOBUFS, "no room for the state");
    }
    unsigned char *h = buf;
    memset(h, 0, HEADER_SIZE);
    memcpy(h, STATE_MAGIC, 8);
    uint32_t fields[4] = { STATE_VERSION, HEADER_SIZE, vm->nvcpus,
                           atomic_load(&vm->epoch) };
    memcpy(h + 8, fields, sizeof(fields));
    memcpy(h + 24, &vm->ram_size, sizeof(uint64_t));
    w.len = HEADER_SIZE;

    for (unsigned i = 0; i < vm->nvcpus; i++) {
        if ((ret = save_vcpu(vm, &vm->vcpus[i], &w, err, err_size)) < 0) {
            return ret;
        }
    }
    if ((ret = save_irqchip(vm, &w, ZM_VM_TAG_PIC_MASTER,
                            KVM_IRQCHIP_PIC_MASTER, err, err_size)) < 0 ||
        (ret = save_irqchip(vm, &w, ZM_VM_TAG_PIC_SLAVE, KVM_IRQCHIP_PIC_SLAVE,
                            err, err_size)) < 0 ||
        (ret = save_irqchip(vm, &w, ZM_VM_TAG_IOAPIC, KVM_IRQCHIP_IOAPIC, err,
                            err_size)) < 0 ||
        (ret = rec_ioctl(&w, vm->vm_fd, KVM_GET_PIT2, ZM_VM_TAG_PIT, 0,
                         sizeof(struct kvm_pit_state2), "KVM_GET_PIT2", err,
                         err_size)) < 0 ||
        (ret = rec_ioctl(&w, vm->vm_fd, KVM_GET_CLOCK, ZM_VM_TAG_CLOCK, 0,
                         sizeof(struct kvm_clock_data), "KVM_GET_CLOCK", err,
                         err_size)) < 0) {
        return ret;
    }
    struct zm_uart *u =
        rec_begin(&w, ZM_VM_TAG_UART, 0, sizeof(struct zm_uart));
    if (u) {
        pthread_mutex_lock(&vm->io_lock);
        *u = vm->uart;
        pthread_mutex_unlock(&vm->io_lock);
    }
    if (w.full) {
        return zm_vm_fail(err, err_size, -ENOBUFS,
                          "the VM's state does not fit in %zu bytes", cap);
    }
    return (ssize_t)w.len;
}

/* ---- load ---- */

static int parse_header(const void *buf, size_t len, struct zm_vm_state *st,
                        char *err, size_t err_size)
{
    const unsigned char *b = buf;
    uint32_t fields[4];

    if (len < HEADER_SIZE || memcmp(b, STATE_MAGIC, 8) != 0) {
        return zm_vm_fail(err, err_size, -EBADMSG,
                          "the device state (%zu bytes) is not a zmigrate vm "
                          "state",
                          len);
    }
    memcpy(fields, b + 8, sizeof(fields));
    memcpy(&st->ram_size, b + 24, sizeof(uint64_t));
    if (fields[0] != STATE_VERSION || fields[1] != HEADER_SIZE) {
        return zm_vm_fail(err, err_size, -EPROTO,
                          "device state version %u (header %u bytes); this "
                          "zmigrate vm reads version %u",
                          fields[0], fields[1], STATE_VERSION);
    }
    if (fields[2] < 1 || fields[2] > ZM_VM_MAX_VCPUS ||
        st->ram_size % ZM_VM_PAGE || st->ram_size == 0 ||
        st->ram_size > ZM_VM_MAX_RAM) {
        return zm_vm_fail(err, err_size, -EBADMSG,
                          "device state: %u vCPUs, %llu bytes of RAM: out of "
                          "range",
                          fields[2], (unsigned long long)st->ram_size);
    }
    /* The destination's epoch is this + 1: never 0 or ~0 (unknown). */
    if (fields[3] >= UINT32_MAX - 1) {
        return zm_vm_fail(err, err_size, -EBADMSG,
                          "device state: epoch %u out of range", fields[3]);
    }
    st->vcpus = fields[2];
    st->epoch = fields[3];
    return 0;
}

int zm_vm_state_geometry(const void *buf, size_t len, unsigned *vcpus,
                         uint64_t *ram_size, char *err, size_t err_size)
{
    struct zm_vm_state st = { 0 };
    int ret = parse_header(buf, len, &st, err, err_size);
    if (ret == 0) {
        *vcpus = st.vcpus;
        *ram_size = st.ram_size;
    }
    return ret;
}

/* The size of a record of tag; 0: variable (XSAVE, MSRS) or unknown. */
static size_t fixed_size(uint32_t tag)
{
    switch (tag) {
    case ZM_VM_TAG_PIC_MASTER:
    case ZM_VM_TAG_PIC_SLAVE:
    case ZM_VM_TAG_IOAPIC:
        return sizeof(struct kvm_irqchip);
    case ZM_VM_TAG_PIT:
        return sizeof(struct kvm_pit_state2);
    case ZM_VM_TAG_CLOCK:
        return sizeof(struct kvm_clock_data);
    case ZM_VM_TAG_UART:
        return sizeof(struct zm_uart);
    case ZM_VM_TAG_REGS:
        return sizeof(struct kvm_regs);
    case ZM_VM_TAG_SREGS:
        return sizeof(struct kvm_sregs);
    case ZM_VM_TAG_XCRS:
        return sizeof(struct kvm_xcrs);
    case ZM_VM_TAG_LAPIC:
        return sizeof(struct kvm_lapic_state);
    case ZM_VM_TAG_EVENTS:
        return sizeof(struct kvm_vcpu_events);
    case ZM_VM_TAG_MP_STATE:
        return sizeof(struct kvm_mp_state);
    case ZM_VM_TAG_DEBUGREGS:
        return sizeof(struct kvm_debugregs);
    case ZM_VM_TAG_TSC_DEADLINE:
        return sizeof(uint64_t);
    default:
        return 0;
    }
}

static bool known_tag(uint32_t tag)
{
    return (tag >= ZM_VM_TAG_PIC_MASTER && tag < ZM_VM_TAG_VM_LAST) ||
           (tag >= ZM_VM_TAG_REGS && tag < ZM_VM_TAG_VCPU_LAST);
}

/* A record's length for its tag: 0, or -EBADMSG / -EPROTO. */
static int check_len(const struct zm_vm_layout *l, uint32_t tag, uint32_t index,
                     uint32_t len, char *err, size_t err_size)
{
    const size_t entry = sizeof(struct kvm_msr_entry);

    switch (tag) {
    case ZM_VM_TAG_XSAVE:
        /* The source's XSAVE area may be smaller than ours, not larger. */
        if (len > l->xsave_size) {
            return zm_vm_fail(err, err_size, -EPROTO,
                              "device state: vCPU %u's XSAVE area is %u "
                              "bytes, this KVM's %zu",
                              index, len, l->xsave_size);
        }
        if (len < sizeof(struct kvm_xsave)) {
            break;
        }
        return 0;
    case ZM_VM_TAG_MSRS:
        if (len % entry == 0 && len / entry <= l->nmsrs &&
            len / entry <= ZM_VM_MAX_MSRS) {
            return 0;
        }
        break;
    default:
        if (len == fixed_size(tag)) {
            return 0;
        }
        break;
    }
    return zm_vm_fail(err, err_size, -EBADMSG,
                      "device state: record %u (vCPU %u) of %u bytes: wrong "
                      "size",
                      tag, index, len);
}

/*
 * The MSRs: each one this VM migrates, in the order of its list as the
 * saver writes them (so none twice, and the TSC last: nothing set after
 * it moves the guest's clock).
 */
static int check_msrs(const struct zm_vm_layout *l, uint32_t index,
                      const struct zm_vm_record *r, char *err, size_t err_size)
{
    const size_t n = r->len / sizeof(struct kvm_msr_entry);
    const unsigned nl = l->nmsrs < ZM_VM_MAX_MSRS ? l->nmsrs : ZM_VM_MAX_MSRS;
    unsigned next = 0;

    for (size_t i = 0; i < n; i++) {
        struct kvm_msr_entry e;
        memcpy(&e, r->data + i * sizeof(e), sizeof(e));
        unsigned k = 0;
        while (k < nl && l->msrs[k] != e.index) {
            k++;
        }
        if (k == nl) {
            return zm_vm_fail(err, err_size, -EBADMSG,
                              "device state: vCPU %u: MSR 0x%x is not one "
                              "this VM migrates",
                              index, e.index);
        }
        if (k < next) {
            return zm_vm_fail(err, err_size, -EBADMSG,
                              "device state: vCPU %u: MSR 0x%x twice or out "
                              "of order",
                              index, e.index);
        }
        next = k + 1;
    }
    return 0;
}

/* What can be checked of the VM's records before KVM sees them. */
static int check_vm_records(const struct zm_vm_state *st, char *err,
                            size_t err_size)
{
    static const uint32_t chips[3] = { ZM_VM_TAG_PIC_MASTER,
                                       ZM_VM_TAG_PIC_SLAVE, ZM_VM_TAG_IOAPIC };
    for (uint32_t c = 0; c < 3; c++) {
        uint32_t id;
        memcpy(&id,
               st->vm[chips[c]].data + offsetof(struct kvm_irqchip, chip_id),
               sizeof(id));
        if (id != c) {
            return zm_vm_fail(err, err_size, -EBADMSG,
                              "device state: irqchip %u says it is %u", c, id);
        }
    }
    /* Only bits the UART's registers can hold (see uart_out()). */
    struct zm_uart u;
    memcpy(&u, st->vm[ZM_VM_TAG_UART].data, sizeof(u));
    if ((u.ier & ~0x0Fu) || (u.fcr & ~0xC9u) || (u.mcr & ~0x1Fu)) {
        return zm_vm_fail(err, err_size, -EBADMSG,
                          "device state: UART IER 0x%x, FCR 0x%x, MCR 0x%x: "
                          "bits no UART holds",
                          u.ier, u.fcr, u.mcr);
    }
    return 0;
}

static int parse(const struct zm_vm_layout *l, const void *buf, size_t len,
                 struct zm_vm_state *st, char *err, size_t err_size)
{
    static const unsigned char zeros[8];
    const unsigned char *b = buf;
    int ret;

    if ((ret = parse_header(buf, len, st, err, err_size)) < 0) {
        return ret;
    }
    if (st->vcpus != l->vcpus || st->ram_size != l->ram_size) {
        return zm_vm_fail(err, err_size, -EINVAL,
                          "the source's VM has %u vCPUs and %llu MiB of RAM, "
                          "this one %u and %llu MiB",
                          st->vcpus, (unsigned long long)(st->ram_size >> 20),
                          l->vcpus, (unsigned long long)(l->ram_size >> 20));
    }
    st->vcpu = calloc(st->vcpus, sizeof(*st->vcpu));
    if (!st->vcpu) {
        return zm_vm_fail(err, err_size, -ENOMEM, "out of memory");
    }
    size_t off = HEADER_SIZE;
    while (off < len) {
        uint32_t h[4];
        if (len - off < RECORD_SIZE) {
            return zm_vm_fail(err, err_size, -EBADMSG,
                              "device state: torn record at offset %zu", off);
        }
        memcpy(h, b + off, sizeof(h));
        off += RECORD_SIZE;
        uint32_t tag = h[0], index = h[1], rlen = h[2];
        size_t padded = ((size_t)rlen + 7) & ~(size_t)7;
        if (padded > len - off) {
            return zm_vm_fail(err, err_size, -EBADMSG,
                              "device state: record %u of %u bytes at offset "
                              "%zu runs past the end (%zu bytes)",
                              tag, rlen, off, len);
        }
        if (!known_tag(tag)) {
            return zm_vm_fail(err, err_size, -EPROTO,
                              "device state: unknown record %u at offset %zu",
                              tag, off - RECORD_SIZE);
        }
        if (h[3] != 0 || memcmp(b + off + rlen, zeros, padded - rlen) != 0) {
            return zm_vm_fail(err, err_size, -EBADMSG,
                              "device state: record %u at offset %zu: "
                              "reserved bytes not zero",
                              tag, off - RECORD_SIZE);
        }
        if ((ret = check_len(l, tag, index, rlen, err, err_size)) < 0) {
            return ret;
        }
        struct zm_vm_record *r;
        if (tag < ZM_VM_TAG_VM_LAST && index == 0) {
            r = &st->vm[tag];
        } else if (tag >= ZM_VM_TAG_REGS && index < st->vcpus) {
            r = &st->vcpu[index][tag - ZM_VM_TAG_REGS];
        } else {
            return zm_vm_fail(err, err_size, -EBADMSG,
                              "device state: record %u for vCPU %u of %u", tag,
                              index, st->vcpus);
        }
        if (r->data) {
            return zm_vm_fail(err, err_size, -EBADMSG,
                              "device state: record %u (vCPU %u) twice", tag,
                              index);
        }
        r->data = b + off;
        r->len = rlen;
        if (tag == ZM_VM_TAG_MSRS &&
            (ret = check_msrs(l, index, r, err, err_size)) < 0) {
            return ret;
        }
        off += padded;
    }
    for (uint32_t t = ZM_VM_TAG_PIC_MASTER; t < ZM_VM_TAG_VM_LAST; t++) {
        if (!st->vm[t].data) {
            return zm_vm_fail(err, err_size, -EBADMSG,
                              "device state: record %u missing", t);
        }
    }
    for (uint32_t i = 0; i < st->vcpus; i++) {
        for (uint32_t t = ZM_VM_TAG_REGS; t < ZM_VM_TAG_VCPU_LAST; t++) {
            /* TSC_DEADLINE only where the source's KVM has it. */
            if (!st->vcpu[i][t - ZM_VM_TAG_REGS].data &&
                t != ZM_VM_TAG_TSC_DEADLINE) {
                return zm_vm_fail(err, err_size, -EBADMSG,
                                  "device state: record %u of vCPU %u "
                                  "missing",
                                  t, i);
            }
        }
    }
    return check_vm_records(st, err, err_size);
}

int zm_vm_state_parse(const struct zm_vm_layout *layout, const void *buf,
                      size_t len, struct zm_vm_state *st, char *err,
                      size_t err_size)
{
    memset(st, 0, sizeof(*st));
    int ret = parse(layout, buf, len, st, err, err_size);
    if (ret < 0) {
        zm_vm_state_free(st);
    }
    return ret;
}

void zm_vm_state_free(struct zm_vm_state *st)
{
    free(st->vcpu);
    st->vcpu = NULL;
}

/*
 * The record's bytes in an aligned buffer of size bytes, zero-filled past
 * them (the parser keeps every record within the type it is read as).
 */
static void *copy_rec(const struct zm_vm_record *r, void *tmp, size_t size)
{
    memset(tmp, 0, size);
    memcpy(tmp, r->data, r->len < size ? r->len : size);
    return tmp;
}

static int set_vcpu_ioctl(struct zm_vcpu *v, unsigned long req, void *arg,
                          const char *name, char *err, size_t err_size)
{
    if (ioctl(v->fd, req, arg) != 0) {
        int e = errno;
        return zm_vm_fail(err, err_size, -e, "%s (vCPU %u): %s", name, v->id,
                          strerror(e));
    }
    return 0;
}

/* n entries, at most ZM_VM_MAX_MSRS (checked by the parser). */
static int load_msrs(struct zm_vcpu *v, const void *entries, size_t n,
                     char *err, size_t err_size)
{
    uint64_t mbuf[MSRS_WORDS] = { 0 };
    struct kvm_msrs *m = (struct kvm_msrs *)mbuf;
    unsigned k = 0;

    for (size_t i = 0; i < n && i < ZM_VM_MAX_MSRS; i++) {
        struct kvm_msr_entry e;
        memcpy(&e, (const unsigned char *)entries + i * sizeof(e), sizeof(e));
        /* A wall-clock MSR write stores the clock at its address: skip 0. */
        if ((e.index == 0x11 || e.index == 0x4B564D00) && e.data == 0) {
            continue;
        }
        m->entries[k++] =
            (struct kvm_msr_entry){ .index = e.index, .data = e.data };
    }
    m->nmsrs = k;
    int got = ioctl(v->fd, KVM_SET_MSRS, m);
    if (got != (int)k) {
        return zm_vm_fail(err, err_size, got < 0 ? -errno : -EINVAL,
                          "KVM_SET_MSRS (vCPU %u): MSR 0x%x refused", v->id,
                          got >= 0 && (unsigned)got < k ? m->entries[got].index
                                                        : 0);
    }
    return 0;
}

/* QEMU's order: regs, XSAVE, XCRs, sregs, LAPIC, MSRs, events, MP state. */
static int load_vcpu(zm_vm *vm, struct zm_vcpu *v, const struct zm_vm_record *r,
                     char *err, size_t err_size)
{
    union {
        struct kvm_regs regs;
        struct kvm_sregs sregs;
        struct kvm_xcrs xcrs;
        struct kvm_lapic_state lapic;
        struct kvm_vcpu_events events;
        struct kvm_mp_state mp;
        struct kvm_debugregs dregs;
    } t;
    int ret;

    void *xsave = malloc(vm->xsave_size);
    if (!xsave) {
        return zm_vm_fail(err, err_size, -ENOMEM, "out of memory");
    }
    copy_rec(&r[ZM_VM_TAG_XSAVE - ZM_VM_TAG_REGS], xsave, vm->xsave_size);
    ret = set_vcpu_ioctl(
        v, KVM_SET_REGS,
        copy_rec(&r[ZM_VM_TAG_REGS - ZM_VM_TAG_REGS], &t, sizeof(t)),
        "KVM_SET_REGS", err, err_size);
    if (ret == 0) {
        ret = set_vcpu_ioctl(v, KVM_SET_XSAVE, xsave, "KVM_SET_XSAVE", err,
                             err_size);
    }
    free(xsave);
    if (ret < 0 ||
        (ret = set_vcpu_ioctl(
             v, KVM_SET_XCRS,
             copy_rec(&r[ZM_VM_TAG_XCRS - ZM_VM_TAG_REGS], &t, sizeof(t)),
             "KVM_SET_XCRS", err, err_size)) < 0 ||
        (ret = set_vcpu_ioctl(
             v, KVM_SET_SREGS,
             copy_rec(&r[ZM_VM_TAG_SREGS - ZM_VM_TAG_REGS], &t, sizeof(t)),
             "KVM_SET_SREGS", err, err_size)) < 0 ||
        (ret = set_vcpu_ioctl(
             v, KVM_SET_LAPIC,
             copy_rec(&r[ZM_VM_TAG_LAPIC - ZM_VM_TAG_REGS], &t, sizeof(t)),
             "KVM_SET_LAPIC", err, err_size)) < 0) {
        return ret;
    }
    const struct zm_vm_record *msrs = &r[ZM_VM_TAG_MSRS - ZM_VM_TAG_REGS];
    if ((ret =
             load_msrs(v, msrs->data, msrs->len / sizeof(struct kvm_msr_entry),
                       err, err_size)) < 0) {
        return ret;
    }
    copy_rec(&r[ZM_VM_TAG_EVENTS - ZM_VM_TAG_REGS], &t, sizeof(t));
    /* Only what this KVM takes without extra capabilities. */
    t.events.flags &= KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
    t.events.flags |=
        KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
    if ((ret = set_vcpu_ioctl(v, KVM_SET_VCPU_EVENTS, &t, "KVM_SET_VCPU_EVENTS",
                              err, err_size)) < 0 ||
        (ret = set_vcpu_ioctl(
             v, KVM_SET_MP_STATE,
             copy_rec(&r[ZM_VM_TAG_MP_STATE - ZM_VM_TAG_REGS], &t, sizeof(t)),
             "KVM_SET_MP_STATE", err, err_size)) < 0) {
        return ret;
    }
    /* After the LAPIC: the deadline counts only in TSC-deadline mode. */
    const struct zm_vm_record *dl = &r[ZM_VM_TAG_TSC_DEADLINE - ZM_VM_TAG_REGS];
    if (dl->data && vm->has_tsc_deadline) {
        struct kvm_msr_entry e = { .index = ZM_VM_MSR_TSC_DEADLINE };
        memcpy(&e.data, dl->data, sizeof(uint64_t));
        if ((ret = load_msrs(v, &e, 1, err, err_size)) < 0) {
            return ret;
        }
    }
    return set_vcpu_ioctl(
        v, KVM_SET_DEBUGREGS,
        copy_rec(&r[ZM_VM_TAG_DEBUGREGS - ZM_VM_TAG_REGS], &t, sizeof(t)),
        "KVM_SET_DEBUGREGS", err, err_size);
}

static int vm_set(zm_vm *vm, unsigned long req, void *arg, const char *name,
                  char *err, size_t err_size)
{
    if (ioctl(vm->vm_fd, req, arg) != 0) {
        int e = errno;
        return zm_vm_fail(err, err_size, -e, "%s: %s", name, strerror(e));
    }
    return 0;
}

/*
 * Everything the blob says is checked before the first ioctl.  What KVM
 * itself refuses (a register value, say) ends the restore part way; the
 * VM is then not fit to run, and zmigrate vm does not start it.
 */
int zm_vm_load(zm_vm *vm, const void *buf, size_t len, char *err,
               size_t err_size)
{
    const struct zm_vm_layout layout = {
        .vcpus = vm->nvcpus,
        .ram_size = vm->ram_size,
        .xsave_size = vm->xsave_size,
        .msrs = vm->msrs,
        .nmsrs = vm->nmsrs,
    };
    struct zm_vm_state st;
    union {
        struct kvm_irqchip chip;
        struct kvm_pit_state2 pit;
        struct kvm_clock_data clock;
        struct zm_uart uart;
    } t;
    int ret;

    if (vm->started) {
        return zm_vm_fail(err, err_size, -EBUSY, "the VM runs already");
    }
    if ((ret = zm_vm_state_parse(&layout, buf, len, &st, err, err_size)) < 0) {
        return ret;
    }
    for (uint32_t i = 0; i < st.vcpus && ret == 0; i++) {
        ret = load_vcpu(vm, &vm->vcpus[i], st.vcpu[i], err, err_size);
    }
    static const struct {
        uint32_t tag;
        unsigned long req;
        const char *name;
    } vmsets[] = {
        { ZM_VM_TAG_PIC_MASTER, KVM_SET_IRQCHIP,
          "KVM_SET_IRQCHIP (PIC master)" },
        { ZM_VM_TAG_PIC_SLAVE, KVM_SET_IRQCHIP, "KVM_SET_IRQCHIP (PIC slave)" },
        { ZM_VM_TAG_IOAPIC, KVM_SET_IRQCHIP, "KVM_SET_IRQCHIP (IOAPIC)" },
        { ZM_VM_TAG_PIT, KVM_SET_PIT2, "KVM_SET_PIT2" },
    };
    for (size_t i = 0; i < sizeof(vmsets) / sizeof(vmsets[0]) && ret == 0;
         i++) {
        ret = vm_set(vm, vmsets[i].req,
                     copy_rec(&st.vm[vmsets[i].tag], &t, sizeof(t)),
                     vmsets[i].name, err, err_size);
    }
    if (ret == 0) {
        /* The guest's clock goes on from the source's, not from now. */
        copy_rec(&st.vm[ZM_VM_TAG_CLOCK], &t, sizeof(t));
        struct kvm_clock_data clock = { .clock = t.clock.clock };
        ret = vm_set(vm, KVM_SET_CLOCK, &clock, "KVM_SET_CLOCK", err, err_size);
    }
    if (ret == 0) {
        copy_rec(&st.vm[ZM_VM_TAG_UART], &t, sizeof(t));
        pthread_mutex_lock(&vm->io_lock);
        vm->uart = t.uart;
        pthread_mutex_unlock(&vm->io_lock);
        atomic_store(&vm->epoch, st.epoch + 1);
    }
    zm_vm_state_free(&st);
    return ret;
}
