/*
 * fuzz_vmstate.c - the VM's device state from the migration peer:
 * zm_vm_state_geometry() and zm_vm_state_parse() on arbitrary bytes
 *
 * The input is one state blob, as the destination receives it; it is
 * copied to an odd address, as a blob inside a receive buffer may lie.
 * The destination's layout is the one the blob's header names (as
 * `zmigrate vm --incoming` makes its VM from it), an XSAVE area of
 * XSAVE_MAX bytes and every MSR vm/kvm.c may migrate.
 *
 * Properties:
 *
 *   - nothing crashes, leaks or reads outside the blob (sanitizers);
 *   - the geometry and the parse agree: a header the geometry refuses,
 *     the parse refuses with the same error; otherwise the parse returns
 *     0, -EBADMSG or -EPROTO, with a message, and leaves nothing to free;
 *     a layout of another geometry gets -EINVAL;
 *   - a blob that parses is what the format says, checked by walking it
 *     here: every record lies inside the blob, with zero reserved bytes,
 *     a known tag, a vCPU in range and the size of its kind, and is the
 *     one the parse points to (so none is repeated); every record is
 *     there (TSC_DEADLINE optional); the irqchips carry their ids; the
 *     UART's registers hold only bits a UART can; the MSRs are ones the
 *     layout lists, in its order (so once each, TSC last); the header's
 *     fields come back, with an epoch whose successor is not 0 or ~0;
 *     parsing again gives the same.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "kvm_priv.h"

#define HEADER 32u
#define RECORD 16u
#define XSAVE_MAX 8192u

/* vm/kvm.c's wanted_msrs: what a VM may migrate. */
static const uint32_t msrs[] = {
    0x174,      0x175,      0x176,      0xC0000081, 0xC0000082, 0xC0000083,
    0xC0000084, 0xC0000102, 0xC0000103, 0x277,      0x1A0,      0x2FF,
    0x250,      0x258,      0x259,      0x268,      0x269,      0x26A,
    0x26B,      0x26C,      0x26D,      0x26E,      0x26F,      0x4B564D00,
    0x4B564D01, 0x11,       0x12,       0x4B564D02, 0x4B564D03, 0x4B564D04,
    0x3B,       0x10,
};
#define NMSRS (sizeof(msrs) / sizeof(msrs[0]))

static size_t kind_size(uint32_t tag)
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
        return 8;
    default:
        return 0;
    }
}

static bool records_equal(const struct zm_vm_state *a,
                          const struct zm_vm_state *b)
{
    if (a->vcpus != b->vcpus || a->epoch != b->epoch ||
        a->ram_size != b->ram_size ||
        memcmp(a->vm, b->vm, sizeof(a->vm)) != 0) {
        return false;
    }
    return memcmp(a->vcpu, b->vcpu, a->vcpus * sizeof(*a->vcpu)) == 0;
}

/* The blob walked here, against what the parse made of it. */
static void check_parsed(const unsigned char *b, size_t len,
                         const struct zm_vm_layout *l,
                         const struct zm_vm_state *st)
{
    uint32_t h[4];
    uint64_t ram;
    unsigned found = 0, present = 0;

    memcpy(h, b + 8, sizeof(h));
    memcpy(&ram, b + 24, sizeof(ram));
    FUZZ_CHECK(st->vcpus == h[2] && st->epoch == h[3] && st->ram_size == ram,
               "header %u vCPUs, epoch %u; parsed %u, %u", h[2], h[3],
               st->vcpus, st->epoch);
    FUZZ_CHECK(st->vcpus == l->vcpus && st->ram_size == l->ram_size,
               "geometry");
    FUZZ_CHECK(st->epoch < UINT32_MAX - 1, "epoch %u", st->epoch);
    for (size_t off = HEADER; off < len;) {
        FUZZ_CHECK(len - off >= RECORD, "torn record at %zu", off);
        memcpy(h, b + off, sizeof(h));
        off += RECORD;
        uint32_t tag = h[0], index = h[1], rlen = h[2];
        size_t padded = ((size_t)rlen + 7) & ~(size_t)7;
        FUZZ_CHECK(padded <= len - off, "record %u past the end", tag);
        FUZZ_CHECK(h[3] == 0, "reserved field %u", h[3]);
        for (size_t i = rlen; i < padded; i++) {
            FUZZ_CHECK(b[off + i] == 0, "padding byte %zu", i);
        }
        const struct zm_vm_record *r;
        if (tag >= ZM_VM_TAG_PIC_MASTER && tag < ZM_VM_TAG_VM_LAST) {
            FUZZ_CHECK(index == 0, "VM record %u for vCPU %u", tag, index);
            r = &st->vm[tag];
        } else {
            FUZZ_CHECK(tag >= ZM_VM_TAG_REGS && tag < ZM_VM_TAG_VCPU_LAST,
                       "unknown tag %u taken", tag);
            FUZZ_CHECK(index < st->vcpus, "vCPU %u of %u", index, st->vcpus);
            r = &st->vcpu[index][tag - ZM_VM_TAG_REGS];
        }
        FUZZ_CHECK(r->data == b + off && r->len == rlen,
                   "record %u (vCPU %u) at %zu: the parse has another "
                   "(%p, %u bytes)",
                   tag, index, off, (const void *)r->data, r->len);
        if (tag == ZM_VM_TAG_XSAVE) {
            FUZZ_CHECK(rlen >= sizeof(struct kvm_xsave) &&
                           rlen <= l->xsave_size,
                       "XSAVE of %u bytes", rlen);
        } else if (tag == ZM_VM_TAG_MSRS) {
            size_t n = rlen / sizeof(struct kvm_msr_entry);
            FUZZ_CHECK(rlen % sizeof(struct kvm_msr_entry) == 0 &&
                           n <= l->nmsrs && n <= ZM_VM_MAX_MSRS,
                       "MSRS of %u bytes", rlen);
            size_t next = 0;
            for (size_t i = 0; i < n; i++) {
                struct kvm_msr_entry e;
                memcpy(&e, r->data + i * sizeof(e), sizeof(e));
                size_t k = 0;
                while (k < l->nmsrs && l->msrs[k] != e.index) {
                    k++;
                }
                FUZZ_CHECK(k < l->nmsrs, "MSR 0x%x not in the list", e.index);
                FUZZ_CHECK(k >= next, "MSR 0x%x twice or out of order",
                           e.index);
                next = k + 1;
            }
        } else {
            FUZZ_CHECK(rlen == kind_size(tag), "record %u of %u bytes, not %zu",
                       tag, rlen, kind_size(tag));
        }
        found++;
        off += padded;
    }
    for (uint32_t t = ZM_VM_TAG_PIC_MASTER; t < ZM_VM_TAG_VM_LAST; t++) {
        FUZZ_CHECK(st->vm[t].data, "VM record %u missing", t);
        present++;
    }
    FUZZ_CHECK(!st->vm[0].data, "record 0");
    for (uint32_t i = 0; i < st->vcpus; i++) {
        for (uint32_t t = 0; t < ZM_VM_VCPU_TAGS; t++) {
            if (st->vcpu[i][t].data) {
                present++;
            } else {
                FUZZ_CHECK(t + ZM_VM_TAG_REGS == ZM_VM_TAG_TSC_DEADLINE,
                           "vCPU %u record %u missing", i, t + ZM_VM_TAG_REGS);
            }
        }
    }
    FUZZ_CHECK(found == present, "%u records in the blob, %u parsed", found,
               present);
    static const uint32_t chips[3] = { ZM_VM_TAG_PIC_MASTER,
                                       ZM_VM_TAG_PIC_SLAVE, ZM_VM_TAG_IOAPIC };
    for (uint32_t c = 0; c < 3; c++) {
        uint32_t id;
        memcpy(&id, st->vm[chips[c]].data, sizeof(id));
        FUZZ_CHECK(id == c, "irqchip %u is %u", c, id);
    }
    struct zm_uart u;
    memcpy(&u, st->vm[ZM_VM_TAG_UART].data, sizeof(u));
    FUZZ_CHECK(!(u.ier & ~0x0Fu) && !(u.fcr & ~0xC9u) && !(u.mcr & ~0x1Fu),
               "UART IER 0x%x FCR 0x%x MCR 0x%x", u.ier, u.fcr, u.mcr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* At an odd address, at the end of its allocation. */
    unsigned char *alloc = malloc(size + 1);
    FUZZ_CHECK(alloc, "out of memory");
    unsigned char *b = alloc + 1;
    memcpy(b, data, size);

    char err[512] = "";
    unsigned vcpus = 0;
    uint64_t ram_size = 0;
    int g = zm_vm_state_geometry(b, size, &vcpus, &ram_size, err, sizeof(err));
    FUZZ_CHECK(g == 0 || g == -EBADMSG || g == -EPROTO, "geometry %d", g);
    FUZZ_CHECK(g == 0 || err[0], "geometry %d without a message", g);

    struct zm_vm_layout l = {
        .vcpus = g == 0 ? vcpus : 1,
        .ram_size = g == 0 ? ram_size : 1u << 20,
        .xsave_size = XSAVE_MAX,
        .msrs = msrs,
        .nmsrs = NMSRS,
    };
    struct zm_vm_state st;
    err[0] = '\0';
    int ret = zm_vm_state_parse(&l, b, size, &st, err, sizeof(err));
    if (g < 0) {
        FUZZ_CHECK(ret == g, "geometry %d, parse %d", g, ret);
    }
    FUZZ_CHECK(ret == 0 || ret == -EBADMSG || ret == -EPROTO, "parse %d: %s",
               ret, err);
    if (ret < 0) {
        FUZZ_CHECK(err[0], "parse %d without a message", ret);
        FUZZ_CHECK(st.vcpu == NULL, "a refused blob left records");
    } else {
        check_parsed(b, size, &l, &st);
        struct zm_vm_state again;
        FUZZ_CHECK(zm_vm_state_parse(&l, b, size, &again, err, sizeof(err)) ==
                           0 &&
                       records_equal(&st, &again),
                   "a second parse differs");
        zm_vm_state_free(&again);
        zm_vm_state_free(&st);
    }

    if (g == 0) {
        /* Another geometry: refused, whatever the records. */
        struct zm_vm_layout other = l;
        if (size % 2) {
            other.vcpus = vcpus % ZM_VM_MAX_VCPUS + 1;
        } else {
            other.ram_size = ram_size + ZM_VM_PAGE;
        }
        err[0] = '\0';
        ret = zm_vm_state_parse(&other, b, size, &st, err, sizeof(err));
        FUZZ_CHECK(ret == -EINVAL && err[0] && !st.vcpu, "another geometry: %d",
                   ret);
    }
    free(alloc);
    return 0;
}
