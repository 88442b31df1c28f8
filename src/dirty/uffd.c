/*
 * uffd.c - dirty tracking by userfaultfd asynchronous write-protect
 *
 * Every tracked page starts write-protected (UFFDIO_WRITEPROTECT).  With
 * UFFD_FEATURE_WP_ASYNC the kernel resolves a write fault by itself: it
 * drops the page's uffd-wp bit and lets the write go on, without waking
 * anyone.  A page without the bit is "written".  The PAGEMAP_SCAN ioctl
 * (PM_SCAN_WP_MATCHING) then, under the page-table lock, reports each
 * written page and sets its bit again, and flushes the TLB before
 * returning.  So a write is either done before the scan saw its page
 * (the page is reported, and its contents, copied after the collect,
 * include the write; a write through a stale TLB entry lands before the
 * flush, still before the copy) or faults again afterwards and is reported
 * by the next scan.  Nothing is lost, whatever the writers do meanwhile.
 *
 * UFFD_FEATURE_WP_UNPOPULATED makes never-touched (pte_none) anonymous
 * pages protected too, through PTE markers; without it their first write
 * would not be seen.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/fs.h>
#include <linux/userfaultfd.h>

#include "dirty.h"
#include "common/error.h"

/*
 * Debian 12's linux-libc-dev (6.1) predates these; the values are the
 * kernel's UAPI (include/uapi/linux/userfaultfd.h and fs.h, Linux 6.7).
 */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

struct page_region {
    __u64 start;
    __u64 end; /* exclusive */
    __u64 categories;
};

#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)

struct pm_scan_arg {
    __u64 size;
    __u64 flags;
    __u64 start;
    __u64 end;
    __u64 walk_end; /* written by the kernel: where the scan stopped */
    __u64 vec;
    __u64 vec_len;
    __u64 max_pages;
    __u64 category_inverted;
    __u64 category_mask;
    __u64 category_anyof_mask;
    __u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif /* PAGEMAP_SCAN */

#define NEEDED_FEATURES (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)

/*
 * The kernel fills its bounce buffer 512 regions at a time anyway; a
 * collect loops on walk_end when there are more.
 */
#define VEC_LEN 512

struct uffd_state {
    int uffd;
    int pagemap;
    struct page_region vec[VEC_LEN];
};

/*
 * A userfaultfd, or -errno with zm_error() set.  Tries, in turn: the
 * syscall; /dev/userfaultfd (Linux 6.1+, access by file mode, for hosts
 * that grant it rather than the sysctl); and a user-mode-only descriptor,
 * which vm.unprivileged_userfaultfd=0 still allows.  The last is enough
 * here: an asynchronous write-protect fault is resolved in the fault
 * path itself, kernel-mode or not, and never waits on the descriptor.
 */
static int uffd_open(void)
{
    const int flags = O_CLOEXEC | O_NONBLOCK;
    int fd = (int)syscall(SYS_userfaultfd, flags);

    if (fd >= 0) {
        return fd;
    }
    int err = errno;
    if (err == ENOSYS) {
        return zm_error(-EOPNOTSUPP, "userfaultfd: not supported by this"
                                     " kernel (CONFIG_USERFAULTFD)");
    }
    if (err != EPERM) {
        return zm_error(-err, "userfaultfd: %s", strerror(err));
    }

    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
        close(dev);
        if (fd >= 0) {
            return fd;
        }
    }
    fd = (int)syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
    if (fd >= 0) {
        return fd;
    }
    if (errno == EPERM) {
        /* The sysctl never refuses user-mode-only: something else did. */
        return zm_error(-EPERM,
                        "userfaultfd: %s, even user-mode-only (a"
                        " seccomp filter or security module)",
                        strerror(EPERM));
    }
    return zm_error(-EPERM,
                    "userfaultfd: %s (vm.unprivileged_userfaultfd=0"
                    " and no CAP_SYS_PTRACE)",
                    strerror(EPERM));
}

/* UFFDIO_API handshake; UFFD_API with features 0 asks what is there. */
static int uffd_api(int fd, uint64_t features, uint64_t *supported)
{
    struct uffdio_api api = { .api = UFFD_API, .features = features };

    if (ioctl(fd, UFFDIO_API, &api) != 0) {
        int err = errno;
        return zm_error(-err, "userfaultfd: UFFDIO_API: %s", strerror(err));
    }
    if (supported) {
        *supported = api.features;
    }
    return 0;
}

/* Whether PAGEMAP_SCAN exists: an empty scan succeeds where it does. */
static int check_pagemap_scan(int pagemap)
{
    struct pm_scan_arg arg = { .size = sizeof(arg) };

    if (ioctl(pagemap, PAGEMAP_SCAN, &arg) == 0) {
        return 0;
    }
    int err = errno;
    if (err == ENOTTY || err == EINVAL) {
        return zm_error(-EOPNOTSUPP,
                        "uffd-wp: PAGEMAP_SCAN needs Linux >= 6.7"
                        " (ioctl on /proc/self/pagemap: %s)",
                        strerror(err));
    }
    return zm_error(-err, "uffd-wp: PAGEMAP_SCAN: %s", strerror(err));
}

static int open_pagemap(void)
{
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        int err = errno;
        return zm_error(-err, "uffd-wp: /proc/self/pagemap: %s", strerror(err));
    }
    return fd;
}

/* The features this kernel offers, or -errno saying what is missing. */
static int uffd_check(uint64_t *features)
{
    int fd = uffd_open();
    if (fd < 0) {
        return fd;
    }
    uint64_t have = 0;
    int ret = uffd_api(fd, 0, &have);
    close(fd);
    if (ret < 0) {
        return ret;
    }
    if ((have & NEEDED_FEATURES) != NEEDED_FEATURES) {
        return zm_error(-EOPNOTSUPP,
                        "uffd-wp: kernel lacks %s (needs Linux"
                        " >= 6.7 with CONFIG_PTE_MARKER_UFFD_WP)",
                        !(have & UFFD_FEATURE_WP_ASYNC)
                            ? "UFFD_FEATURE_WP_ASYNC"
                            : "UFFD_FEATURE_WP_UNPOPULATED");
    }

    int pagemap = open_pagemap();
    if (pagemap < 0) {
        return pagemap;
    }
    ret = check_pagemap_scan(pagemap);
    close(pagemap);
    if (ret < 0) {
        return ret;
    }
    if (features) {
        *features = have;
    }
    return 0;
}

static int uffd_probe(void)
{
    return uffd_check(NULL);
}

static void uffd_unregister(int uffd, const zm_dirty *d, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct uffdio_range range = {
            .start = (uintptr_t)d->ranges[i].base,
            .len = d->ranges[i].size,
        };
        /* Fails only when the caller unmapped the range already. */
        (void)ioctl(uffd, UFFDIO_UNREGISTER, &range);
    }
}

static int uffd_arm(struct uffd_state *st, zm_dirty *d, unsigned *registered)
{
    for (unsigned i = 0; i < d->count; i++) {
        struct uffdio_register reg = {
            .range = { .start = (uintptr_t)d->ranges[i].base,
                       .len = d->ranges[i].size },
            .mode = UFFDIO_REGISTER_MODE_WP,
        };
        if (ioctl(st->uffd, UFFDIO_REGISTER, &reg) != 0) {
            int err = errno;
            const char *hint =
                err == EBUSY    ? " (already tracked by another userfaultfd)"
                : err == EINVAL ? " (must be anonymous, shmem or hugetlbfs)"
                                : "";
            return zm_error(-err,
                            "uffd-wp: cannot register range %u [%p, +%zu)"
                            ": %s%s",
                            i, d->ranges[i].base, d->ranges[i].size,
                            strerror(err), hint);
        }
        *registered = i + 1;
        if (!(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT))) {
            return zm_error(-EOPNOTSUPP,
                            "uffd-wp: range %u [%p, +%zu) cannot"
                            " be write-protected (memory type not supported)",
                            i, d->ranges[i].base, d->ranges[i].size);
        }
    }
    /* Registering first: a range is tracked only once all are. */
    for (unsigned i = 0; i < d->count; i++) {
        struct uffdio_writeprotect wp = {
            .range = { .start = (uintptr_t)d->ranges[i].base,
                       .len = d->ranges[i].size },
            .mode = UFFDIO_WRITEPROTECT_MODE_WP,
        };
        int ret;
        do {
            ret = ioctl(st->uffd, UFFDIO_WRITEPROTECT, &wp);
        } while (ret != 0 && (errno == EAGAIN || errno == EINTR));
        if (ret != 0) {
            int err = errno;
            return zm_error(-err,
                            "uffd-wp: cannot write-protect range %u"
                            " [%p, +%zu): %s",
                            i, d->ranges[i].base, d->ranges[i].size,
                            strerror(err));
        }
    }
    return 0;
}

static int uffd_start(zm_dirty *d)
{
    uint64_t have = 0;
    int ret = uffd_check(&have);
    if (ret < 0) {
        return ret;
    }

    struct uffd_state *st = calloc(1, sizeof(*st));
    if (!st) {
        return zm_error(-ENOMEM, "uffd-wp: out of memory");
    }
    st->pagemap = -1;
    st->uffd = uffd_open();
    if (st->uffd < 0) {
        ret = st->uffd;
        free(st);
        return ret;
    }
    /* shmem and hugetlbfs RAM (memfd guests) need the extra feature. */
    uint64_t want = NEEDED_FEATURES | (have & UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
    unsigned registered = 0;
    ret = uffd_api(st->uffd, want, NULL);
    if (ret == 0) {
        ret = st->pagemap = open_pagemap();
    }
    if (ret >= 0) {
        ret = uffd_arm(st, d, &registered);
    }
    if (ret < 0) {
        uffd_unregister(st->uffd, d, registered);
        close(st->uffd);
        if (st->pagemap >= 0) {
            close(st->pagemap);
        }
        free(st);
        return ret;
    }
    d->priv = st;
    return 0;
}

static ssize_t uffd_collect(zm_dirty *d, unsigned r, uint64_t *bitmap)
{
    struct uffd_state *st = d->priv;
    const uint64_t base = (uintptr_t)d->ranges[r].base;
    const uint64_t end = base + d->ranges[r].size;
    uint64_t cur = base;
    size_t newly = 0;

    while (cur < end) {
        struct pm_scan_arg arg = {
            .size = sizeof(arg),
            .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
            .start = cur,
            .end = end,
            .vec = (uintptr_t)st->vec,
            .vec_len = VEC_LEN,
            .category_mask = PAGE_IS_WRITTEN,
            .return_mask = PAGE_IS_WRITTEN,
        };
        long n = ioctl(st->pagemap, PAGEMAP_SCAN, &arg);
        if (n < 0) {
            int err = errno;
            /* CHECK_WPASYNC: part of the range is no longer ours. */
            return zm_error(-err,
                            "uffd-wp: PAGEMAP_SCAN of range %u at %#llx:"
                            " %s%s",
                            r, (unsigned long long)cur, strerror(err),
                            err == EPERM ? " (range unmapped or remapped"
                                           " while tracked?)"
                                         : "");
        }
        for (long i = 0; i < n; i++) {
            /* Huge pages come as one region: expand to page bits. */
            uint64_t s = st->vec[i].start < base ? base : st->vec[i].start;
            uint64_t e = st->vec[i].end > end ? end : st->vec[i].end;
            if (s >= e) {
                continue;
            }
            size_t first = (size_t)((s - base) >> d->page_shift);
            size_t last = (size_t)((e - 1 - base) >> d->page_shift);
            newly += zm_dirty_set_bits(bitmap, first, last - first + 1);
        }
        if (arg.walk_end >= end) {
            break;
        }
        if (arg.walk_end <= cur) {
            return zm_error(-EIO,
                            "uffd-wp: PAGEMAP_SCAN of range %u made no"
                            " progress at %#llx",
                            r, (unsigned long long)cur);
        }
        cur = arg.walk_end;
    }
    return (ssize_t)newly;
}

static void uffd_stop(zm_dirty *d)
{
    struct uffd_state *st = d->priv;

    if (!st) {
        return;
    }
    /* Unregistering also drops the protection from the pages. */
    uffd_unregister(st->uffd, d, d->count);
    close(st->uffd);
    close(st->pagemap);
    free(st);
    d->priv = NULL;
}

const struct zm_dirty_ops zm_dirty_uffd_wp_ops = {
    .kind = ZM_DIRTY_UFFD_WP,
    .name = "uffd-wp",
    .needs_quiesce = false,
    .probe = uffd_probe,
    .start = uffd_start,
    .collect = uffd_collect,
    .stop = uffd_stop,
};
