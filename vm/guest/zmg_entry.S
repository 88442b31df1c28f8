/*
 * zmg_entry.S - multiboot entry, long mode, per-CPU stacks, AP trampoline
 *
 * The loader enters _start in flat 32-bit protected mode.  We switch to
 * long mode with an identity map of the low 4 GiB and run all C code in
 * 64-bit user mode (CPL 3, IOPL 3, IF 0): some KVMs (kvm-pvm, a software
 * one) run guest user code natively but emulate guest kernel code, and
 * port I/O, RDTSC and the LAPIC page all work from user mode.  "syscall"
 * is the one way back to CPL 0, and only halts the CPU.
 *
 * Application processors start in real mode at TRAMPOLINE after a SIPI;
 * the BSP copies ap_tramp_start..ap_tramp_end there first.
 */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000002 /* we want memory info; the ELF says the rest */

#define MAX_CPUS 64
#define STACK_SIZE 16384
#define TRAMPOLINE 0x8000

#define SEL_CODE32 0x08
#define SEL_DATA 0x10
#define SEL_CODE64 0x18
#define SEL_DATA64 0x20 /* must follow SEL_CODE64: syscall loads both */
#define SEL_UDATA 0x2b
#define SEL_UCODE 0x33

#define CR0_PE 0x00000001
#define CR0_CD_NW 0x60000000
#define CR0_PG 0x80000000
#define CR4_PAE 0x00000020
#define MSR_EFER 0xc0000080
#define EFER_SCE 0x00000001
#define EFER_LME 0x00000100
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_FMASK 0xc0000084
#define RFLAGS_USER 0x00003002 /* IOPL 3, IF 0 */

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

/* Paging on with the BSP's tables, EFER.LME; then a far jump to 64-bit
 * code.  Used by the BSP and by APs, which have no stack here. */
.macro ENTER_LONG_MODE target
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $(EFER_LME | EFER_SCE), %eax
    wrmsr
    movl %cr0, %eax
    andl $~CR0_CD_NW, %eax
    orl $(CR0_PG | CR0_PE), %eax
    movl %eax, %cr0
    ljmp $SEL_CODE64, $\target
.endm

    .text
    .code32
    .globl _start
_start:
    cli
    cld
    /* The loader's EAX (magic) and EBX (multiboot_info) go to kmain. */
    movl %eax, %esi
    movl %ebx, %edi
    lgdt gdt_desc
    ljmp $SEL_CODE32, $1f
1:
    movw $SEL_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    movl $(cpu_stacks + STACK_SIZE), %esp

    /* No long mode: say so on COM1 and stop. */
    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb no_long_mode
    movl $0x80000001, %eax
    cpuid
    btl $29, %edx
    jnc no_long_mode

    /* Identity map 0..4 GiB with 2 MiB pages, user-accessible; the last
     * 32 MiB (IOAPIC, LAPIC) uncached. */
    movl $(pdpt + 7), pml4
    movl $0, pml4 + 4
    xorl %ecx, %ecx
2:
    movl %ecx, %eax
    shll $12, %eax
    addl $(pd + 7), %eax
    movl %eax, pdpt(, %ecx, 8)
    movl $0, pdpt + 4(, %ecx, 8)
    incl %ecx
    cmpl $4, %ecx
    jb 2b
    xorl %ecx, %ecx
3:
    movl %ecx, %eax
    shll $21, %eax
    orl $0x87, %eax /* present, writable, user, 2 MiB */
    cmpl $2032, %ecx
    jb 4f
    orl $0x18, %eax /* PWT, PCD */
4:
    movl %eax, pd(, %ecx, 8)
    movl $0, pd + 4(, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jb 3b

    ENTER_LONG_MODE bsp_entry64

no_long_mode:
    movl $no_lm_msg, %ebx
5:
    movb (%ebx), %al
    testb %al, %al
    jz halt32
    movw $0x3f8, %dx
    outb %al, %dx
    incl %ebx
    jmp 5b
halt32:
    cli
    hlt
    jmp halt32

    .code64
bsp_entry64:
    movq $(cpu_stacks + STACK_SIZE), %rsp
    call cpu_setup64
    jmp to_user_bsp

/* Per-CPU state for CPL 0: data segments and the syscall MSRs. */
cpu_setup64:
    movw $SEL_DATA64, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movl $MSR_STAR, %ecx
    xorl %eax, %eax
    movl $SEL_CODE64, %edx
    wrmsr
    movl $MSR_LSTAR, %ecx
    movl $sys_halt, %eax
    xorl %edx, %edx
    wrmsr
    movl $MSR_FMASK, %ecx
    movl $0x700, %eax /* TF, IF, DF */
    xorl %edx, %edx
    wrmsr
    ret

/* The BSP: kmain(magic, mbi) in user mode on the same stack. */
to_user_bsp:
    movl %esi, %eax
    movl %edi, %esi
    movl %eax, %edi
    pushq $SEL_UDATA
    pushq $(cpu_stacks + STACK_SIZE)
    pushq $RFLAGS_USER
    pushq $SEL_UCODE
    pushq $bsp_user
    iretq

bsp_user:
    call kmain
    jmp halt_forever

/* What C calls to stop: back to CPL 0, which halts. */
    .globl halt_forever
halt_forever:
    syscall
    jmp halt_forever

sys_halt:
    cli
    hlt
    jmp sys_halt

/*
 * Real-mode code run by each AP at TRAMPOLINE (CS = TRAMPOLINE >> 4,
 * IP = 0).  It only uses addresses relative to TRAMPOLINE, except for
 * the far jump into the kernel proper.
 */
    .code16
    .globl ap_tramp_start
ap_tramp_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl TRAMPOLINE + (tramp_gdt_desc - ap_tramp_start)
    movl %cr0, %eax
    andl $~CR0_CD_NW, %eax
    orl $CR0_PE, %eax
    movl %eax, %cr0
    ljmpl $SEL_CODE32, $ap_entry32
    .align 4
tramp_gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt
    .globl ap_tramp_end
ap_tramp_end:

    .code32
ap_entry32:
    movw $SEL_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    ENTER_LONG_MODE ap_entry64

    .code64
ap_entry64:
    /* A stack slot per AP, first come first served; extra APs stop. */
    movl $1, %eax
    lock xaddl %eax, ap_stack_next
    cmpl $MAX_CPUS, %eax
    jae sys_halt
    movl %eax, %ecx
    incl %ecx
    imull $STACK_SIZE, %ecx
    leaq cpu_stacks(%rcx), %rsp
    movq %rsp, %rbx
    call cpu_setup64
    /* Admission (smp_ap_join) is decided here, at CPL 0, so that an AP
     * that is not wanted can halt. */
    call smp_ap_join
    testl %eax, %eax
    jz sys_halt
    movl %eax, %edi /* ap_main(id) */
    pushq $SEL_UDATA
    pushq %rbx
    pushq $RFLAGS_USER
    pushq $SEL_UCODE
    pushq $ap_user
    iretq

ap_user:
    call ap_main
    jmp halt_forever

    .section .rodata
no_lm_msg:
    .asciz "zmguest: the CPU has no long mode (CPUID 0x80000001 EDX bit 29)\n"

    .data
    .align 16
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff /* 0x08: code, 32-bit, flat */
    .quad 0x00cf92000000ffff /* 0x10: data, flat */
    .quad 0x00af9a000000ffff /* 0x18: code, 64-bit */
    .quad 0x00cf92000000ffff /* 0x20: data, for syscall's SS */
    .quad 0x00cff2000000ffff /* 0x28: user data */
    .quad 0x00affa000000ffff /* 0x30: user code, 64-bit */
gdt_end:
    .align 4
    .word 0
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt

    .align 4
ap_stack_next:
    .long 1

/* Not cleared by kmain (it runs on one of the stacks): the page tables
 * are written in full above and the stacks need no clearing. */
    .section .stack, "aw", @nobits
    .align 4096
pml4:
    .skip 4096
pdpt:
    .skip 4096
pd:
    .skip 4 * 4096
    .globl cpu_stacks
cpu_stacks:
    .skip MAX_CPUS * STACK_SIZE

    .section .note.GNU-stack, "", @progbits
