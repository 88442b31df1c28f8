/*
 * multiboot.c - the multiboot v1 ELF32 loader (see multiboot.h)
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "multiboot.h"

#define MB_HEADER_MAGIC 0x1BADB002u
#define MB_SEARCH 8192u /* the header lies in the first 8 KiB */
#define MB_FLAG_MEMINFO (1u << 1)
#define MB_FLAG_AOUT (1u << 16)
#define MB_INFO_MEM (1u << 0)
#define MB_INFO_CMDLINE (1u << 2)
#define MB_INFO_MMAP (1u << 6)
#define MB_INFO_LOADER (1u << 9)

/* The loader's low-memory layout (all below 0x9FC00). */
#define MB_MMAP_ADDR (ZM_MULTIBOOT_INFO_ADDR + 0x100u)
#define MB_LOADER_NAME_ADDR (ZM_MULTIBOOT_INFO_ADDR + 0x200u)
#define MB_CMDLINE_ADDR 0x9000u
#define MB_CMDLINE_MAX 0x8000u /* bytes with the NUL: up to 0x11000 */

#define LOW_MEM_END 0x9FC00u
#define KERNEL_MIN 0x100000u
#define MAX_FILE (256u << 20) /* a kernel larger than this is a mistake */
#define MAX_PHDRS 64u

static int fail(char *err, size_t err_size, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t err_size, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && err_size) {
        vsnprintf(err, err_size, fmt, ap);
    }
    va_end(ap);
    return code;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/* Reads the whole file; the caller frees *out. */
static int read_file(const char *path, unsigned char **out, size_t *len,
                     char *err, size_t err_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        int e = errno;
        return fail(err, err_size, -e, "%s: %s", path, strerror(e));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, err_size, -ENOEXEC, "%s: not a regular file", path);
    }
    if (st.st_size > (off_t)MAX_FILE) {
        close(fd);
        return fail(err, err_size, -EFBIG,
                    "%s: %lld bytes, more than a "
                    "kernel can be (%u MiB)",
                    path, (long long)st.st_size, MAX_FILE >> 20);
    }
    size_t size = (size_t)st.st_size;
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return fail(err, err_size, -ENOMEM, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return fail(err, err_size, -e, "%s: %s", path, strerror(e));
        }
        got += (size_t)n;
    }
    close(fd);
    *out = buf;
    *len = size;
    return 0;
}

/* The multiboot header: magic, flags, checksum, 4-byte aligned. */
static int check_multiboot_header(const char *path, const unsigned char *f,
                                  size_t len, char *err, size_t err_size)
{
    size_t end = len < MB_SEARCH ? len : MB_SEARCH;
    for (size_t off = 0; off + 12 <= end; off += 4) {
        if (get32(f + off) != MB_HEADER_MAGIC) {
            continue;
        }
        uint32_t flags = get32(f + off + 4);
        uint32_t sum = get32(f + off + 8);
        if ((uint32_t)(MB_HEADER_MAGIC + flags + sum) != 0) {
            return fail(err, err_size, -ENOEXEC,
                        "%s: multiboot header at offset %zu: bad checksum",
                        path, off);
        }
        /* Bits 0..15 are requirements: we give memory info only. */
        uint32_t unsupported = flags & 0xFFFFu & ~(1u | MB_FLAG_MEMINFO);
        if (unsupported) {
            return fail(err, err_size, -ENOEXEC,
                        "%s: the multiboot header asks for features this "
                        "loader lacks (flags 0x%x: video mode or others)",
                        path, unsupported);
        }
        /* MB_FLAG_AOUT: the ELF program headers are authoritative. */
        return 0;
    }
    return fail(err, err_size, -ENOEXEC,
                "%s: no multiboot header (magic 0x%08x) in the first %u "
                "bytes",
                path, MB_HEADER_MAGIC, MB_SEARCH);
}

/* Copies the ELF header into *eh (the file may lie at any address). */
static int check_ehdr(const char *path, const unsigned char *f, size_t len,
                      Elf32_Ehdr *eh, char *err, size_t err_size)
{
    if (len < sizeof(*eh) || memcmp(f, ELFMAG, SELFMAG) != 0) {
        return fail(err, err_size, -ENOEXEC, "%s: not an ELF file", path);
    }
    memcpy(eh, f, sizeof(*eh));
    if (eh->e_ident[EI_CLASS] != ELFCLASS32 ||
        eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_machine != EM_386) {
        return fail(err, err_size, -ENOEXEC,
                    "%s: not a 32-bit little-endian i386 ELF (class %u, "
                    "data %u, machine %u); a multiboot kernel is ELF32",
                    path, eh->e_ident[EI_CLASS], eh->e_ident[EI_DATA],
                    eh->e_machine);
    }
    if (eh->e_ident[EI_VERSION] != EV_CURRENT || eh->e_type != ET_EXEC) {
        return fail(err, err_size, -ENOEXEC,
                    "%s: not an executable ELF (type %u)", path, eh->e_type);
    }
    if (eh->e_phentsize != sizeof(Elf32_Phdr) || eh->e_phnum == 0 ||
        eh->e_phnum > MAX_PHDRS) {
        return fail(err, err_size, -ENOEXEC,
                    "%s: program headers: %u of %u bytes (expected 1..%u "
                    "of %zu)",
                    path, eh->e_phnum, eh->e_phentsize, MAX_PHDRS,
                    sizeof(Elf32_Phdr));
    }
    if ((uint64_t)eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(Elf32_Phdr) >
        len) {
        return fail(err, err_size, -ENOEXEC,
                    "%s: program headers at offset %u run past the end of "
                    "the file (%zu bytes)",
                    path, eh->e_phoff, len);
    }
    return 0;
}

/*
 * The multiboot_info, its memory map and the command line (cmd_len bytes,
 * checked by the caller, as ram_size is).
 */
static void write_info(void *ram, uint64_t ram_size, const char *cmdline,
                       size_t cmd_len)
{
    unsigned char *m = ram;

    memcpy(m + MB_CMDLINE_ADDR, cmdline ? cmdline : "", cmd_len + 1);
    static const char name[] = "zmigrate vm";
    memcpy(m + MB_LOADER_NAME_ADDR, name, sizeof(name));

    /* type 1 usable, 2 reserved: low RAM, the EBDA/ROM hole, the rest */
    const struct {
        uint64_t base, len;
        uint32_t type;
    } map[] = {
        { 0, LOW_MEM_END, 1 },
        { LOW_MEM_END, 0xA0000 - LOW_MEM_END, 2 },
        { 0xF0000, 0x10000, 2 },
        { KERNEL_MIN, ram_size - KERNEL_MIN, 1 },
    };
    unsigned char *e = m + MB_MMAP_ADDR;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++, e += 24) {
        put32(e, 20); /* size of the entry, without this field */
        put64(e + 4, map[i].base);
        put64(e + 12, map[i].len);
        put32(e + 20, map[i].type);
    }

    unsigned char *mbi = m + ZM_MULTIBOOT_INFO_ADDR;
    memset(mbi, 0, 116);
    put32(mbi + 0,
          MB_INFO_MEM | MB_INFO_CMDLINE | MB_INFO_MMAP | MB_INFO_LOADER);
    put32(mbi + 4, LOW_MEM_END / 1024);                         /* mem_lower */
    put32(mbi + 8, (uint32_t)((ram_size - KERNEL_MIN) / 1024)); /* upper */
    put32(mbi + 16, MB_CMDLINE_ADDR);
    put32(mbi + 44, (uint32_t)(e - (m + MB_MMAP_ADDR))); /* mmap_length */
    put32(mbi + 48, MB_MMAP_ADDR);
    put32(mbi + 64, MB_LOADER_NAME_ADDR);
}

int zm_multiboot_load_buffer(const void *file, size_t len, void *ram,
                             uint64_t ram_size, const char *cmdline,
                             const char *name, struct zm_boot_info *info,
                             char *err, size_t err_size)
{
    const unsigned char *f = file;
    const char *path = name ? name : "the kernel";
    size_t cmd_len = cmdline ? strlen(cmdline) : 0;
    Elf32_Ehdr eh;
    int ret;

    if (ram_size < ZM_MULTIBOOT_MIN_RAM || ram_size > UINT32_MAX) {
        return fail(err, err_size, -EINVAL,
                    "RAM of %llu bytes: a multiboot kernel needs 2 MiB .. "
                    "4 GiB",
                    (unsigned long long)ram_size);
    }
    if (cmd_len >= MB_CMDLINE_MAX) {
        return fail(err, err_size, -E2BIG,
                    "the command line is %zu bytes, at most %u", cmd_len,
                    MB_CMDLINE_MAX - 1);
    }
    if ((ret = check_ehdr(path, f, len, &eh, err, err_size)) < 0 ||
        (ret = check_multiboot_header(path, f, len, err, err_size)) < 0) {
        return ret;
    }

    /* Check every segment before writing any. */
    Elf32_Phdr ph[MAX_PHDRS];
    memcpy(ph, f + eh.e_phoff, eh.e_phnum * sizeof(Elf32_Phdr));
    uint64_t entry = eh.e_entry, kernel_end = 0;
    bool entry_ok = false;
    unsigned loads = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        const Elf32_Phdr *p = &ph[i];
        if (p->p_type != PT_LOAD) {
            continue;
        }
        uint64_t start = p->p_paddr, end = start + (uint64_t)p->p_memsz;
        if (p->p_filesz > p->p_memsz ||
            (uint64_t)p->p_offset + p->p_filesz > len) {
            return fail(err, err_size, -ENOEXEC,
                        "%s: segment %u: %u bytes at offset %u (memory "
                        "size %u) run past the end of the file (%zu bytes) "
                        "or the segment",
                        path, i, p->p_filesz, p->p_offset, p->p_memsz, len);
        }
        if (p->p_memsz == 0) {
            continue;
        }
        if (start < KERNEL_MIN) {
            return fail(err, err_size, -ENOEXEC,
                        "%s: segment %u at physical 0x%llx: below 1 MiB, "
                        "where the loader keeps the multiboot info",
                        path, i, (unsigned long long)start);
        }
        if (end > ram_size) {
            return fail(err, err_size, -EFBIG,
                        "%s: segment %u at physical 0x%llx..0x%llx does not "
                        "fit in %llu MiB of RAM",
                        path, i, (unsigned long long)start,
                        (unsigned long long)end,
                        (unsigned long long)(ram_size >> 20));
        }
        /* QEMU's rule: an entry given as a virtual address is moved. */
        if (!entry_ok && entry >= p->p_vaddr &&
            entry < (uint64_t)p->p_vaddr + p->p_memsz) {
            entry = entry - p->p_vaddr + p->p_paddr;
            entry_ok = true;
        }
        kernel_end = end > kernel_end ? end : kernel_end;
        loads++;
    }
    if (loads == 0 || !entry_ok) {
        return fail(err, err_size, -ENOEXEC,
                    loads ? "%s: the entry point 0x%llx is in no loadable "
                            "segment"
                          : "%s: no loadable segment (entry 0x%llx)",
                    path, (unsigned long long)entry);
    }
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        const Elf32_Phdr *p = &ph[i];
        if (p->p_type != PT_LOAD || p->p_memsz == 0) {
            continue;
        }
        unsigned char *dst = (unsigned char *)ram + p->p_paddr;
        memcpy(dst, f + p->p_offset, p->p_filesz);
        memset(dst + p->p_filesz, 0, p->p_memsz - p->p_filesz);
    }
    write_info(ram, ram_size, cmdline, cmd_len);
    info->entry = (uint32_t)entry;
    info->mbi_addr = ZM_MULTIBOOT_INFO_ADDR;
    info->kernel_end = kernel_end;
    return 0;
}

int zm_multiboot_load(const char *path, void *ram, uint64_t ram_size,
                      const char *cmdline, struct zm_boot_info *info, char *err,
                      size_t err_size)
{
    unsigned char *f = NULL;
    size_t len = 0;
    int ret;

    if ((ret = read_file(path, &f, &len, err, err_size)) < 0) {
        return ret;
    }
    ret = zm_multiboot_load_buffer(f, len, ram, ram_size, cmdline, path, info,
                                   err, err_size);
    free(f);
    return ret;
}
