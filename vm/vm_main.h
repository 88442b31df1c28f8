/*
 * vm_main.h - `zmigrate vm`: boot a multiboot kernel in KVM and migrate it
 * live with libzmigrate (see doc/vm.md)
 */
#ifndef ZM_VM_MAIN_H
#define ZM_VM_MAIN_H

/*
 * Runs `zmigrate vm` with its arguments (argv[0] is "vm"); returns the
 * process's exit status.
 */
int zm_vm_main(int argc, char **argv);

#endif /* ZM_VM_MAIN_H */
