/*
 * multiboot.h - loads a multiboot v1 ELF32 kernel into guest RAM
 *
 * What QEMU's -kernel accepts for such a kernel: the ELF's PT_LOAD
 * segments at their physical addresses, a multiboot_info with the memory
 * sizes, the command line and a memory map, and the boot state of the
 * multiboot specification (see vm/CONTRACT.md).  The file is input: every
 * header field, offset and size is checked against the file and the RAM
 * before it is used.
 */
#ifndef ZM_VM_MULTIBOOT_H
#define ZM_VM_MULTIBOOT_H

#include <stddef.h>
#include <stdint.h>

/* The value in EAX at the kernel's entry. */
#define ZM_MULTIBOOT_BOOT_MAGIC 0x2BADB002u

/* Where the loader puts its own structures: below the kernel's 1 MiB. */
#define ZM_MULTIBOOT_INFO_ADDR 0x8000u

/* The least RAM a kernel may be given. */
#define ZM_MULTIBOOT_MIN_RAM (2u << 20)

struct zm_boot_info {
    uint32_t entry;      /* physical address of the 32-bit entry point */
    uint32_t mbi_addr;   /* EBX at entry */
    uint64_t kernel_end; /* end of the highest segment (informative) */
};

/*
 * Loads the kernel file at path into ram (ram_size bytes at guest physical
 * address 0) with the command line cmdline (may be NULL), and writes the
 * multiboot_info.  Returns 0 and fills info, or a negative errno value
 * with a message naming the file and the problem in err: -ENOENT / -EACCES
 * / ... (cannot read), -ENOEXEC (not a multiboot ELF32 kernel, or a field
 * out of range), -EFBIG (does not fit the RAM), -E2BIG (command line too
 * long).
 */
int zm_multiboot_load(const char *path, void *ram, uint64_t ram_size,
                      const char *cmdline, struct zm_boot_info *info, char *err,
                      size_t err_size);

/*
 * The same from the file's len bytes at file (any alignment); name (may be
 * NULL) stands for the file in messages.  Everything is checked before the
 * first write: a failure leaves ram as it was, a success writes only the
 * segments (inside ram, at or above 1 MiB) and the loader's structures
 * below 1 MiB.
 */
int zm_multiboot_load_buffer(const void *file, size_t len, void *ram,
                             uint64_t ram_size, const char *cmdline,
                             const char *name, struct zm_boot_info *info,
                             char *err, size_t err_size);

#endif /* ZM_VM_MULTIBOOT_H */
