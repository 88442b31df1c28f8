/*
 * softdirty.c - dirty tracking by the soft-dirty bit of pagemap
 *
 * Writing "4" to /proc/self/clear_refs clears the soft-dirty bit of every
 * page of the process and write-protects the page-table entries; the next
 * write to a page faults and sets the bit again, which bit 55 of the
 * page's /proc/self/pagemap entry shows.  This needs CONFIG_MEM_SOFT_DIRTY,
 * which many distribution kernels have and some cloud kernels lack.
 *
 * Why a collect needs the writers stopped.  Per page the kernel keeps one
 * bit S, and offers two operations: read S, and clear S for the whole
 * process.  Nothing reads and clears at once.  Whatever the order, each
 * clear of a page follows some last read of it, and a write landing
 * between that read and the clear sets S, is erased by the clear, and is
 * seen by no later read: lost (unless the page happens to be written
 * again).  Clearing before reading only moves the gap: a write between
 * the previous collect's read and this clear is erased unseen.  Reading
 * twice around the clear does not close it either.  So no protocol over
 * these two operations is exact while writers run, and this provider says
 * so (needs_quiesce): the caller stops every writer to tracked memory
 * around each collect.  With the writers stopped, read-then-clear is
 * exact: every write before the collect is in S at the read, and every
 * write after it faults on the write-protected entry (clear_refs flushes
 * the TLBs before returning) and sets S for the next read.
 *
 * Because the clear is process-wide, a collect of one range first reads
 * every range of every soft-dirty tracker in the process into per-range
 * pending bitmaps, under one lock, and only then clears; a range's
 * pending bits are handed out at its own collect.  Anything else that
 * writes clear_refs for this process (CRIU, another library) still erases
 * bits unseen: uffd-wp has no such global state, which is one reason it
 * is preferred.
 *
 * Reports are a superset: a page of a transparent huge page reports the
 * whole huge page, newly mapped areas report as dirty until the first
 * clear, and pages pinned for DMA stay dirty.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dirty.h"
#include "common/error.h"

#define PM_SOFT_DIRTY (1ull << 55)
#define PM_PRESENT (1ull << 63)

/* Pagemap entries read at once: 32 KiB. */
#define CHUNK 4096

struct sd_state {
    struct sd_state *next;
    zm_dirty *d;
    int pagemap;
    int clear_refs;
    uint64_t **pending; /* per range, size / page_size bits */
    uint64_t buf[CHUNK];
};

/* Every live soft-dirty tracker of the process, and who may clear. */
static pthread_mutex_t sd_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sd_state *sd_list;

static int sys_error(int err, const char *what)
{
    return zm_error(-err, "soft-dirty: %s: %s", what, strerror(err));
}

static int sd_probe(void)
{
    size_t pg = zm_dirty_sys_page_size();
    int ret = 0;

    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap < 0) {
        return sys_error(errno, "/proc/self/pagemap");
    }
    int clear_refs = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (clear_refs < 0) {
        ret = sys_error(errno, "/proc/self/clear_refs");
        close(pagemap);
        return ret;
    }
    close(clear_refs);

    /*
     * A page just written is soft-dirty on a kernel that has the bit at
     * all; without CONFIG_MEM_SOFT_DIRTY the bit always reads 0.
     */
    volatile unsigned char *p = mmap(NULL, pg, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        ret = sys_error(errno, "mmap");
        close(pagemap);
        return ret;
    }
    p[0] = 1;
    uint64_t entry = 0;
    off_t off = (off_t)((uintptr_t)p / pg * sizeof(entry));
    ssize_t got = pread(pagemap, &entry, sizeof(entry), off);
    if (got != sizeof(entry)) {
        ret = sys_error(got < 0 ? errno : EIO, "reading /proc/self/pagemap");
    } else if (!(entry & PM_PRESENT)) {
        ret = zm_error(-EIO, "soft-dirty: /proc/self/pagemap shows a page"
                             " just written as not present");
    } else if (!(entry & PM_SOFT_DIRTY)) {
        ret = zm_error(-EOPNOTSUPP, "soft-dirty: kernel built without"
                                    " CONFIG_MEM_SOFT_DIRTY");
    }
    munmap((void *)p, pg);
    close(pagemap);
    return ret;
}

/*
 * ORs the soft-dirty bits of every range of st into its pending bitmaps.
 * Called with sd_lock held.
 */
static int sd_harvest(struct sd_state *st)
{
    const zm_dirty *d = st->d;
    const size_t pg = zm_dirty_sys_page_size();
    const unsigned shift = d->page_shift - (unsigned)__builtin_ctzll(pg);

    for (unsigned r = 0; r < d->count; r++) {
        const size_t npages = d->ranges[r].size / pg;
        const uint64_t first = (uintptr_t)d->ranges[r].base / pg;
        uint64_t *pending = st->pending[r];

        for (size_t i = 0; i < npages;) {
            size_t n = npages - i < CHUNK ? npages - i : CHUNK;
            ssize_t got = pread(st->pagemap, st->buf, n * sizeof(uint64_t),
                                (off_t)((first + i) * sizeof(uint64_t)));
            if (got <= 0) {
                return sys_error(got < 0 ? errno : EIO,
                                 "reading /proc/self/pagemap");
            }
            n = (size_t)got / sizeof(uint64_t);
            for (size_t j = 0; j < n; j++) {
                if (st->buf[j] & PM_SOFT_DIRTY) {
                    size_t bit = (i + j) >> shift;
                    pending[bit / 64] |= 1ull << (bit % 64);
                }
            }
            i += n;
        }
    }
    return 0;
}

/*
 * Reads every tracker's bits, then clears the whole process's.  Called
 * with sd_lock held.  A failure before the clear loses nothing: the
 * kernel keeps the bits for the next try.
 */
static int sd_harvest_all_and_clear(int clear_refs)
{
    for (struct sd_state *s = sd_list; s; s = s->next) {
        int ret = sd_harvest(s);
        if (ret < 0) {
            return ret;
        }
    }
    ssize_t n = write(clear_refs, "4", 1);
    if (n != 1) {
        return sys_error(n < 0 ? errno : EIO, "writing /proc/self/clear_refs");
    }
    return 0;
}

static size_t bitmap_words(const zm_dirty *d, unsigned r)
{
    size_t bits = d->ranges[r].size >> d->page_shift;
    return (bits + 63) / 64;
}

static void sd_free_state(struct sd_state *st, unsigned count)
{
    if (st->pending) {
        for (unsigned r = 0; r < count; r++) {
            free(st->pending[r]);
        }
        free(st->pending);
    }
    if (st->pagemap >= 0) {
        close(st->pagemap);
    }
    if (st->clear_refs >= 0) {
        close(st->clear_refs);
    }
    free(st);
}

static int sd_start(zm_dirty *d)
{
    struct sd_state *st = calloc(1, sizeof(*st));
    int ret = 0;

    if (!st) {
        return zm_error(-ENOMEM, "soft-dirty: out of memory");
    }
    st->d = d;
    st->clear_refs = -1;
    st->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (st->pagemap < 0) {
        ret = sys_error(errno, "/proc/self/pagemap");
        goto fail;
    }
    st->clear_refs = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (st->clear_refs < 0) {
        ret = sys_error(errno, "/proc/self/clear_refs");
        goto fail;
    }
    st->pending = calloc(d->count, sizeof(*st->pending));
    if (!st->pending) {
        ret = zm_error(-ENOMEM, "soft-dirty: out of memory");
        goto fail;
    }
    for (unsigned r = 0; r < d->count; r++) {
        st->pending[r] = calloc(bitmap_words(d, r), sizeof(uint64_t));
        if (!st->pending[r]) {
            ret = zm_error(-ENOMEM, "soft-dirty: out of memory");
            goto fail;
        }
    }

    /* Start = clear, after saving the other trackers' bits. */
    pthread_mutex_lock(&sd_lock);
    ret = sd_harvest_all_and_clear(st->clear_refs);
    if (ret == 0) {
        st->next = sd_list;
        sd_list = st;
    }
    pthread_mutex_unlock(&sd_lock);
    if (ret < 0) {
        goto fail;
    }
    d->priv = st;
    return 0;

fail:
    sd_free_state(st, d->count);
    return ret;
}

static ssize_t sd_collect(zm_dirty *d, unsigned r, uint64_t *bitmap)
{
    struct sd_state *st = d->priv;
    size_t newly = 0;

    pthread_mutex_lock(&sd_lock);
    int ret = sd_harvest_all_and_clear(st->clear_refs);
    if (ret == 0) {
        uint64_t *pending = st->pending[r];
        for (size_t w = 0, n = bitmap_words(d, r); w < n; w++) {
            newly += (size_t)__builtin_popcountll(pending[w] & ~bitmap[w]);
            bitmap[w] |= pending[w];
            pending[w] = 0;
        }
    }
    pthread_mutex_unlock(&sd_lock);
    return ret < 0 ? ret : (ssize_t)newly;
}

static void sd_stop(zm_dirty *d)
{
    struct sd_state *st = d->priv;

    if (!st) {
        return;
    }
    pthread_mutex_lock(&sd_lock);
    for (struct sd_state **pp = &sd_list; *pp; pp = &(*pp)->next) {
        if (*pp == st) {
            *pp = st->next;
            break;
        }
    }
    pthread_mutex_unlock(&sd_lock);
    sd_free_state(st, d->count);
    d->priv = NULL;
}

const struct zm_dirty_ops zm_dirty_soft_dirty_ops = {
    .kind = ZM_DIRTY_SOFT_DIRTY,
    .name = "soft-dirty",
    .needs_quiesce = true,
    .probe = sd_probe,
    .start = sd_start,
    .collect = sd_collect,
    .stop = sd_stop,
};
