/*
 * fuzz_multiboot.c - the kernel loader: zm_multiboot_load_buffer() on an
 * arbitrary file
 *
 * The input is the kernel file; it is copied to an odd address (the
 * loader must not assume the ELF's alignment).  The RAM is RAM_SIZE bytes
 * (2 MiB and a bit, not a whole number of pages) ending right before an
 * inaccessible page, filled with a canary before each input.
 *
 * Properties:
 *
 *   - nothing crashes or touches memory it should not (sanitizers, the
 *     guard page);
 *   - the loader returns 0, -ENOEXEC or -EFBIG, with a message; a file it
 *     refuses leaves the RAM as it was;
 *   - a file it takes has PT_LOAD segments inside the file and inside RAM
 *     at or above 1 MiB, and the RAM then holds exactly what a loader
 *     written here expects (segments copied and zero-filled in order, the
 *     rest untouched) except the loader's own area below 1 MiB, which
 *     holds the multiboot_info and the command line; the entry point lies
 *     in a loaded segment;
 *   - the same file with a command line too long is refused with -E2BIG
 *     and changes nothing.
 */
#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "multiboot.h"

#define RAM_SIZE (ZM_MULTIBOOT_MIN_RAM + 3 * 4096 + 5)
#define CANARY 0x5a
#define INFO_START ZM_MULTIBOOT_INFO_ADDR
#define INFO_END 0x11000u /* the command line ends below */
#define CMDLINE_ADDR 0x9000u
#define KERNEL_MIN 0x100000u

static const char cmdline[] = "rate=1M smp=2 seed=7";
static unsigned char *ram;
static unsigned char *expect;
static char *long_cmdline;

static void setup(void)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t span = (RAM_SIZE + (size_t)page - 1) / (size_t)page * (size_t)page;
    unsigned char *m = mmap(NULL, span + (size_t)page, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    FUZZ_CHECK(m != MAP_FAILED, "mmap");
    FUZZ_CHECK(mprotect(m + span, (size_t)page, PROT_NONE) == 0, "mprotect");
    ram = m + span - RAM_SIZE;
    expect = malloc(RAM_SIZE);
    long_cmdline = malloc(0x8000 + 1);
    FUZZ_CHECK(expect && long_cmdline, "out of memory");
    memset(long_cmdline, 'x', 0x8000);
    long_cmdline[0x8000] = '\0';
}

static bool all_canary(const unsigned char *p, size_t len)
{
    return len == 0 || (p[0] == CANARY && memcmp(p, p + 1, len - 1) == 0);
}

/* expect = the canary with the segments the loader should have written. */
static void reference_load(const unsigned char *f, size_t len,
                           const struct zm_boot_info *info)
{
    Elf32_Ehdr eh;
    uint64_t end_max = 0;
    bool entry_in = false;

    memset(expect, CANARY, RAM_SIZE);
    FUZZ_CHECK(len >= sizeof(eh), "a file of %zu bytes taken", len);
    memcpy(&eh, f, sizeof(eh));
    FUZZ_CHECK(eh.e_phentsize == sizeof(Elf32_Phdr) && eh.e_phnum > 0,
               "program headers");
    FUZZ_CHECK((uint64_t)eh.e_phoff + eh.e_phnum * sizeof(Elf32_Phdr) <= len,
               "program headers past the end");
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf32_Phdr p;
        memcpy(&p, f + eh.e_phoff + i * sizeof(p), sizeof(p));
        if (p.p_type != PT_LOAD || p.p_memsz == 0) {
            continue;
        }
        uint64_t start = p.p_paddr, end = start + (uint64_t)p.p_memsz;
        FUZZ_CHECK(start >= KERNEL_MIN && end <= RAM_SIZE,
                   "segment %u at 0x%llx..0x%llx taken", i,
                   (unsigned long long)start, (unsigned long long)end);
        FUZZ_CHECK(
            p.p_filesz <= p.p_memsz && (uint64_t)p.p_offset + p.p_filesz <= len,
            "segment %u: %u bytes at offset %u", i, p.p_filesz, p.p_offset);
        memcpy(expect + start, f + p.p_offset, p.p_filesz);
        memset(expect + start + p.p_filesz, 0, p.p_memsz - p.p_filesz);
        end_max = end > end_max ? end : end_max;
        entry_in |= info->entry >= start && info->entry < end;
    }
    FUZZ_CHECK(entry_in, "entry 0x%x in no segment", info->entry);
    FUZZ_CHECK(info->kernel_end == end_max, "kernel end 0x%llx, not 0x%llx",
               (unsigned long long)info->kernel_end,
               (unsigned long long)end_max);
    FUZZ_CHECK(info->mbi_addr == ZM_MULTIBOOT_INFO_ADDR, "mbi 0x%x",
               info->mbi_addr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ram) {
        setup();
    }
    unsigned char *alloc = malloc(size + 1);
    FUZZ_CHECK(alloc, "out of memory");
    unsigned char *f = alloc + 1;
    memcpy(f, data, size);
    memset(ram, CANARY, RAM_SIZE);

    char err[512] = "";
    struct zm_boot_info info = { 0 };
    int ret = zm_multiboot_load_buffer(f, size, ram, RAM_SIZE, cmdline, NULL,
                                       &info, err, sizeof(err));
    FUZZ_CHECK(ret == 0 || ret == -ENOEXEC || ret == -EFBIG, "load %d: %s", ret,
               err);
    if (ret < 0) {
        FUZZ_CHECK(err[0], "load %d without a message", ret);
        FUZZ_CHECK(all_canary(ram, RAM_SIZE), "a refused file wrote RAM");
        free(alloc);
        return 0;
    }

    reference_load(f, size, &info);
    FUZZ_CHECK(
        memcmp(ram, expect, INFO_START) == 0 &&
            memcmp(ram + INFO_END, expect + INFO_END, RAM_SIZE - INFO_END) == 0,
        "the RAM differs from the segments");
    FUZZ_CHECK(memcmp(ram + CMDLINE_ADDR, cmdline, sizeof(cmdline)) == 0,
               "command line");
    uint32_t flags, cmd_addr;
    memcpy(&flags, ram + ZM_MULTIBOOT_INFO_ADDR, 4);
    memcpy(&cmd_addr, ram + ZM_MULTIBOOT_INFO_ADDR + 16, 4);
    FUZZ_CHECK(flags == 0x245 && cmd_addr == CMDLINE_ADDR,
               "multiboot_info flags 0x%x, cmdline 0x%x", flags, cmd_addr);

    /* The same file, a command line too long: refused, RAM as it was. */
    memcpy(expect, ram, RAM_SIZE);
    ret = zm_multiboot_load_buffer(f, size, ram, RAM_SIZE, long_cmdline,
                                   "kernel", &info, err, sizeof(err));
    FUZZ_CHECK(ret == -E2BIG, "a long command line: %d", ret);
    FUZZ_CHECK(memcmp(ram, expect, RAM_SIZE) == 0,
               "a refused command line wrote RAM");
    free(alloc);
    return 0;
}
