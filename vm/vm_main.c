/*
 * vm_main.c - zmigrate-vm, the VMM (`zmigrate vm` runs it): options, and
 * the three flows (run a kernel; run it and migrate it out; receive one
 * and run it) on libzmigrate's public API and tools/
 *
 * Threads: the main thread waits on an event loop (the VM's eventfd, a
 * signalfd for SIGINT/SIGTERM/SIGUSR2, the migration's eventfd, deadlines);
 * one thread per vCPU (kvm.c); on the source, zm_source_run() on a thread
 * of its own, so the loop still sees the guest exit or a signal and can
 * cancel it.  The hooks run on that migration thread.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "kvm.h"
#include "multiboot.h"
#include "tools/migrate_cli.h"
#include "tools/units.h"
#include "zmigrate.h"

#define DEFAULT_RAM (256ull << 20)
#define DEFAULT_KERNEL "guest/zmguest.elf"
#define NEVER UINT64_MAX

static const char vm_usage[] =
    "NAME\n"
    "    zmigrate vm, zmigrate-vm - a KVM VMM that migrates its guest live\n"
    "\n"
    "SYNOPSIS\n"
    "    zmigrate vm [--kernel ELF] [--ram SIZE] [--vcpus N] [--append ARGS]\n"
    "                [--mem-prealloc] [--run-for TIME]\n"
    "    zmigrate vm [...] --migrate-to URI [--migrate-after TIME]\n"
    "                [--dirty-ring N] [MIGRATION OPTIONS] [--json] [--quiet]\n"
    "    zmigrate vm --incoming URI [--ram SIZE [--mem-prealloc]] [--vcpus N]\n"
    "                [--run-for TIME] [--json] [--quiet]\n"
    "\n"
    "DESCRIPTION\n"
    "    A small virtual machine monitor on KVM (/dev/kvm).  It boots a\n"
    "    multiboot v1 ELF32 kernel, as QEMU's -kernel does: 32-bit protected\n"
    "    mode at the ELF entry, EAX=0x2BADB002, EBX=the multiboot info with\n"
    "    the memory map and the command line.  RAM is one block at guest\n"
    "    physical 0; the vCPUs have an in-kernel LAPIC, IOAPIC, PIC and PIT.\n"
    "    What the guest writes to COM1 (0x3f8) goes to stdout, a line at a\n"
    "    time.  The guest reads the migration epoch from port 0x511 (1 after\n"
    "    boot, +1 on each destination) and ends the VM by writing a status\n"
    "    to port 0x501 (vm/CONTRACT.md).\n"
    "\n"
    "    With --migrate-to, the VM migrates live to URI after --migrate-after\n"
    "    (or at SIGUSR2): rounds over the pages the guest wrote, tracked by\n"
    "    KVM's dirty log, over N compressed channels; then the vCPUs stop,\n"
    "    the last pages and the VM's state (registers, FPU/XSAVE, MSRs,\n"
    "    LAPIC, pending events, irqchip, PIT, KVM clock, UART) travel, and\n"
    "    the source exits.  If the migration fails, the guest runs on here.\n"
    "\n"
    "    With --incoming, it waits for one migration on URI, restores the\n"
    "    VM and runs the guest on.  RAM size and vCPU count come from the\n"
    "    source; --ram and --vcpus, if given, must match it (with --ram the\n"
    "    VM exists before the migration starts: a shorter switchover).\n"
    "\n"
    "OPTIONS\n"
    "    --kernel ELF             the multiboot kernel (default: the built\n"
    "                             guest, " DEFAULT_KERNEL "\n"
    "                             from the zmigrate binary's directory,\n"
    "                             else the installed one in\n"
    "                             LIBEXECDIR/zmigrate/)\n"
    "    --ram SIZE               guest RAM, 2M..3G (default 256M)\n"
    "    --vcpus N                vCPUs, 1..64 (default 1)\n"
    "    --mem-prealloc           back all of the RAM with host memory at\n"
    "                             start (QEMU's -mem-prealloc): on a\n"
    "                             destination, the migration then writes\n"
    "                             pages without faulting them in first;\n"
    "                             with --incoming it needs --ram\n"
    "    --append ARGS            the kernel command line; \" smp=N\" is\n"
    "                             added unless it has an smp=\n"
    "    --run-for TIME           stop the VM after TIME (e.g. 10s) and exit\n"
    "                             0; on a destination, counted from resume\n"
    "    --migrate-to URI         tcp:HOST:PORT, unix:PATH or file:PATH\n"
    "    --migrate-after TIME     when to start (default 1s; 'signal': only\n"
    "                             at SIGUSR2)\n"
    "    --dirty-ring N           track the guest's writes with a KVM dirty\n"
    "                             ring of N entries per vCPU (a power of two,\n"
    "                             1024..65536; QEMU's dirty-ring-size)\n"
    "                             instead of the dirty log\n"
    "    --incoming URI           receive a VM on URI (tcp:HOST:PORT or\n"
    "                             unix:PATH to listen on, file:PATH to read)\n"
    "\n"
    "MIGRATION OPTIONS (as zmigrate send)\n" ZM_MIGRATION_OPTIONS_HELP
    "    Dirty pages always come from KVM: its dirty log, or with\n"
    "    --dirty-ring its per-vCPU dirty rings.\n"
    "\n"
    "OUTPUT\n"
    "    stdout carries the guest's serial output.  The source prints the\n"
    "    migration's result on stdout after the guest's last line: with\n"
    "    --json it is the last line, one JSON object as zmigrate send's.\n"
    "    The destination prints its result on stderr (the guest's output\n"
    "    goes on on stdout).  Progress and messages go to stderr; --quiet\n"
    "    drops the progress line.\n"
    "\n"
    "SIGNALS\n"
    "    SIGUSR2 starts the migration (with --migrate-to).  SIGINT and\n"
    "    SIGTERM stop the VM (and cancel a migration) and exit 0.\n"
    "\n"
    "EXAMPLES\n"
    "    zmigrate vm --ram 256M --vcpus 2 --append 'rate=100M' --run-for 5s\n"
    "    zmigrate vm --incoming unix:/tmp/vm.sock --ram 256M &\n"
    "    zmigrate vm --ram 256M --vcpus 2 --append 'rate=100M' \\\n"
    "        --migrate-to unix:/tmp/vm.sock --compression zstd \\\n"
    "        --multifd-channels 2 --verify\n"
    "\n"
    "EXIT STATUS\n"
    "    The value the guest wrote to port 0x501; 0 after --run-for, a\n"
    "    signal, or a completed outgoing migration; 1 when KVM is not\n"
    "    available, the kernel cannot be loaded, the guest crashed (triple\n"
    "    fault, KVM error) or a migration failed; 2 usage; 3 the migration\n"
    "    was sent whole but the destination's answer never came: it may be\n"
    "    running the guest, so this VM stopped (status \"unconfirmed\").\n";

struct vm_options {
    struct zm_migration_options mig;
    const char *kernel;
    uint64_t ram;
    bool mem_prealloc;
    uint32_t dirty_ring;
    unsigned vcpus;
    const char *append;
    uint64_t run_for_ns;
    const char *migrate_to;
    uint64_t migrate_after_ns;
    const char *incoming;
};

enum {
    OPT_KERNEL = ZM_OPT_NEXT,
    OPT_RAM,
    OPT_MEM_PREALLOC,
    OPT_VCPUS,
    OPT_APPEND,
    OPT_RUN_FOR,
    OPT_MIGRATE_TO,
    OPT_DIRTY_RING,
    OPT_MIGRATE_AFTER,
    OPT_INCOMING,
};

static const struct option vm_long_options[] = {
    { "kernel", required_argument, NULL, OPT_KERNEL },
    { "ram", required_argument, NULL, OPT_RAM },
    { "mem-prealloc", no_argument, NULL, OPT_MEM_PREALLOC },
    { "vcpus", required_argument, NULL, OPT_VCPUS },
    { "append", required_argument, NULL, OPT_APPEND },
    { "run-for", required_argument, NULL, OPT_RUN_FOR },
    { "migrate-to", required_argument, NULL, OPT_MIGRATE_TO },
    { "dirty-ring", required_argument, NULL, OPT_DIRTY_RING },
    { "migrate-after", required_argument, NULL, OPT_MIGRATE_AFTER },
    { "incoming", required_argument, NULL, OPT_INCOMING },
    ZM_MIGRATION_LONG_OPTIONS,
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static uint64_t parse_time(const char *opt, const char *arg)
{
    char err[128], msg[192];
    uint64_t v;
    if (zm_parse_duration(arg, ZM_UNIT_S, &v, err, sizeof(err)) < 0) {
        snprintf(msg, sizeof(msg), "%s: %s", opt, err);
        zm_usage_error("%s", msg);
    }
    return v;
}

static void parse_vm_options(int argc, char **argv, struct vm_options *o)
{
    char err[128];
    uint64_t v;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", vm_long_options, NULL)) != -1) {
        if (zm_migration_option(c, optarg, &o->mig)) {
            continue;
        }
        switch (c) {
        case OPT_KERNEL:
            o->kernel = optarg;
            break;
        case OPT_RAM:
            if (zm_parse_size(optarg, &v, err, sizeof(err)) < 0) {
                zm_usage_error("--ram: %s", err);
            }
            if (v < ZM_MULTIBOOT_MIN_RAM || v > ZM_VM_MAX_RAM || v % 4096) {
                zm_usage_error("--ram: '%s': 2M..3G, a multiple of 4K", optarg);
            }
            o->ram = v;
            break;
        case OPT_MEM_PREALLOC:
            o->mem_prealloc = true;
            break;
        case OPT_VCPUS:
            o->vcpus = (unsigned)zm_parse_count_opt("--vcpus", optarg, 1,
                                                    ZM_VM_MAX_VCPUS);
            break;
        case OPT_APPEND:
            o->append = optarg;
            break;
        case OPT_RUN_FOR:
            o->run_for_ns = parse_time("--run-for", optarg);
            break;
        case OPT_MIGRATE_TO:
            o->migrate_to = optarg;
            break;
        case OPT_DIRTY_RING:
            o->dirty_ring = (uint32_t)zm_parse_count_opt("--dirty-ring", optarg,
                                                         1024, 65536);
            if (o->dirty_ring & (o->dirty_ring - 1)) {
                zm_usage_error("--dirty-ring: '%s' is not a power of two",
                               optarg);
            }
            break;
        case OPT_MIGRATE_AFTER:
            o->migrate_after_ns = strcmp(optarg, "signal") == 0
                                      ? NEVER
                                      : parse_time("--migrate-after", optarg);
            break;
        case OPT_INCOMING:
            o->incoming = optarg;
            break;
        case 'h':
            fputs(vm_usage, stdout);
            exit(0);
        default:
            fprintf(stderr, "Try 'zmigrate vm --help'.\n");
            exit(ZM_EXIT_USAGE);
        }
    }
    if (optind < argc) {
        zm_usage_error("unexpected argument '%s'", argv[optind]);
    }
    if (o->incoming && (o->migrate_to || o->kernel || o->append)) {
        zm_usage_error("--incoming takes no %s (the guest comes from the "
                       "source)",
                       o->migrate_to ? "--migrate-to"
                       : o->kernel   ? "--kernel"
                                     : "--append");
    }
    if (o->dirty_ring && !o->migrate_to) {
        zm_usage_error("%s is for a source (--migrate-to): only it tracks "
                       "the guest's writes",
                       "--dirty-ring");
    }
    if (o->incoming && o->mem_prealloc && !o->ram) {
        zm_usage_error("%s with --incoming needs --ram: without it the RAM "
                       "is mapped only when the migration starts",
                       "--mem-prealloc");
    }
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the migration, on a thread of its own ---- */

struct migration {
    zm_vm *vm;
    zm_source *src;
    const char *uri;
    pthread_t thread;
    bool running;
    int done_fd; /* eventfd: the thread finished */
    int ret;
    char errmsg[512];
    char hook_err[256]; /* the hooks' own detail */
};

static int hook_stop(void *opaque)
{
    return zm_vm_pause(((struct migration *)opaque)->vm);
}

static int hook_resume(void *opaque)
{
    return zm_vm_resume(((struct migration *)opaque)->vm);
}

static ssize_t hook_save(void *opaque, void *buf, size_t cap)
{
    struct migration *m = opaque;
    return zm_vm_save(m->vm, buf, cap, m->hook_err, sizeof(m->hook_err));
}

static int hook_dirty_log(void *opaque, unsigned region, uint64_t *bitmap)
{
    struct migration *m = opaque;
    if (region != 0) {
        return -EINVAL;
    }
    int64_t n = zm_vm_dirty_log(m->vm, bitmap);
    if (n < 0) {
        snprintf(m->hook_err, sizeof(m->hook_err), "KVM dirty log: %s",
                 strerror((int)-n));
        return (int)n;
    }
    return n > INT_MAX ? INT_MAX : (int)n;
}

static void *migration_thread(void *arg)
{
    struct migration *m = arg;
    m->ret = zm_vm_dirty_start(m->vm, m->hook_err, sizeof(m->hook_err));
    if (m->ret == 0) {
        m->ret = zm_source_run(m->src, m->uri);
        snprintf(m->errmsg, sizeof(m->errmsg), "%s%s%s", zm_errmsg(),
                 m->hook_err[0] ? ": " : "", m->hook_err);
    } else {
        snprintf(m->errmsg, sizeof(m->errmsg), "%s", m->hook_err);
    }
    uint64_t one = 1;
    (void)!write(m->done_fd, &one, sizeof(one));
    return NULL;
}

/* ---- the event loop ---- */

enum loop_end {
    END_GUEST,    /* exit port or a fatal vCPU exit */
    END_TIME,     /* --run-for */
    END_SIGNAL,   /* SIGINT / SIGTERM */
    END_MIGRATED, /* outgoing migration completed */
};

struct loop {
    zm_vm *vm;
    int sig_fd;
    uint64_t deadline;     /* --run-for, NEVER */
    uint64_t migrate_at;   /* NEVER when none is due */
    struct migration *mig; /* NULL on a destination */
    const struct vm_options *o;
    struct zm_progress progress;
    bool migration_failed;
    bool migration_unconfirmed; /* the destination may run the guest */
};

static void drain(int fd)
{
    uint64_t v;
    (void)!read(fd, &v, sizeof(v));
}

static void start_migration(struct loop *l)
{
    struct migration *m = l->mig;
    l->migrate_at = NEVER;
    if (m->running) {
        return;
    }
    if (!l->o->mig.quiet) {
        fprintf(stderr, "zmigrate vm: migrating to %s\n", m->uri);
        zm_progress_start(&l->progress, m->src, NULL);
    }
    m->hook_err[0] = '\0';
    int ret = pthread_create(&m->thread, NULL, migration_thread, m);
    if (ret != 0) {
        zm_progress_stop(&l->progress);
        fprintf(stderr, "zmigrate vm: migration thread: %s\n", strerror(ret));
        l->migration_failed = true;
        return;
    }
    m->running = true;
}

/* Joins the finished (or cancelled) migration; true if it completed. */
static bool finish_migration(struct loop *l, bool print)
{
    struct migration *m = l->mig;

    pthread_join(m->thread, NULL);
    m->running = false;
    drain(m->done_fd);
    zm_progress_stop(&l->progress);
    if (m->ret == 0) {
        /* The vCPUs are stopped: the guest's output is complete. */
        zm_vm_stop(l->vm);
        zm_print_source_result(stdout, m->src, l->o->mig.json, 0, NULL);
        return true;
    }
    struct zm_stats st = { .sizeof_stats = sizeof(st) };
    zm_source_stats(m->src, &st);
    if (st.status == ZM_STATUS_UNCONFIRMED) {
        /* Never two guests: this one stays stopped, and the run ends. */
        zm_vm_stop(l->vm);
        l->migration_unconfirmed = true;
        fprintf(stderr, "zmigrate vm: the destination did not confirm the "
                        "migration; it may be running the guest, so this VM "
                        "stays stopped and exits\n");
        zm_print_source_result(stderr, m->src, l->o->mig.json, m->ret,
                               m->errmsg);
        return true;
    }
    zm_vm_dirty_stop(l->vm);
    l->migration_failed = true;
    if (print) {
        fprintf(stderr, "zmigrate vm: the migration failed; the guest runs "
                        "on here\n");
        zm_print_source_result(stderr, m->src, l->o->mig.json, m->ret,
                               m->errmsg);
    }
    return false;
}

static enum loop_end run_loop(struct loop *l)
{
    for (;;) {
        int status = zm_vm_exit_status(l->vm);
        if (status >= 0) {
            return END_GUEST;
        }
        uint64_t now = now_ns();
        if (now >= l->deadline) {
            return END_TIME;
        }
        if (l->mig && now >= l->migrate_at) {
            start_migration(l);
            continue;
        }
        uint64_t next =
            l->deadline < l->migrate_at ? l->deadline : l->migrate_at;
        int timeout = -1;
        if (next != NEVER) {
            uint64_t ms = (next - now + 999999) / 1000000;
            timeout = ms > INT_MAX ? INT_MAX : (int)ms;
        }
        struct pollfd fds[3] = {
            { .fd = zm_vm_event_fd(l->vm), .events = POLLIN },
            { .fd = l->sig_fd, .events = POLLIN },
            { .fd = l->mig ? l->mig->done_fd : -1, .events = POLLIN },
        };
        if (poll(fds, 3, timeout) < 0 && errno != EINTR) {
            perror("zmigrate vm: poll");
            return END_SIGNAL;
        }
        if (fds[0].revents) {
            drain(fds[0].fd);
        }
        if (fds[1].revents) {
            struct signalfd_siginfo si;
            if (read(l->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGUSR2) {
                    if (l->mig) {
                        start_migration(l);
                    }
                } else {
                    return END_SIGNAL;
                }
            }
        }
        if (fds[2].revents && l->mig && l->mig->running &&
            finish_migration(l, true)) {
            return END_MIGRATED;
        }
    }
}

/*
 * How the VM's run ended -> the exit status; stops the VM and cancels a
 * migration still running.
 */
static int end_run(struct loop *l, enum loop_end end)
{
    if (l->mig && l->mig->running) {
        zm_source_cancel(l->mig->src);
        finish_migration(l, false);
        if (l->migration_unconfirmed) {
            return 3; /* too late to cancel, and no answer came */
        }
    }
    if (end == END_MIGRATED) {
        return l->migration_unconfirmed ? 3 : 0;
    }
    zm_vm_stop(l->vm);
    int status = zm_vm_exit_status(l->vm);
    if (end == END_GUEST && status > 255) {
        fprintf(stderr, "zmigrate vm: %s\n", zm_vm_error(l->vm));
        return 1;
    }
    if (end == END_SIGNAL && !l->o->mig.quiet) {
        fprintf(stderr, "zmigrate vm: stopped by a signal\n");
    }
    if (l->migration_failed) {
        return 1;
    }
    return end == END_GUEST ? status : 0;
}

/* SIGINT, SIGTERM, SIGUSR2 as a file descriptor; blocked in all threads. */
static int block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0) {
        perror("zmigrate vm: signalfd");
    }
    return fd;
}

/* ---- boot (and migrate out) ---- */

/* The guest beside the tool in the build tree, else the installed one. */
static const char *default_kernel(char *buf, size_t size)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
        }
        snprintf(buf, size, "%s/%s", exe, DEFAULT_KERNEL);
        if (access(buf, R_OK) == 0) {
            return buf;
        }
    }
#ifdef ZM_GUEST_INSTALLED
    if (access(ZM_GUEST_INSTALLED, R_OK) == 0) {
        return ZM_GUEST_INSTALLED;
    }
#endif
    return n > 0 ? buf : NULL;
}

/* The command line with " smp=N" unless it names smp= itself. */
static char *make_cmdline(const char *append, unsigned vcpus)
{
    const char *a = append ? append : "";
    bool has_smp = false;
    for (const char *p = a; (p = strstr(p, "smp=")) != NULL; p += 4) {
        if (p == a || p[-1] == ' ') {
            has_smp = true;
        }
    }
    size_t len = strlen(a) + 32;
    char *s = malloc(len);
    if (s) {
        if (has_smp) {
            snprintf(s, len, "%s", a);
        } else {
            snprintf(s, len, "%s%ssmp=%u", a, a[0] ? " " : "", vcpus);
        }
    }
    return s;
}

static int run_boot(struct vm_options *o)
{
    char err[512], kpath[PATH_MAX + 64];
    struct migration mig = { .ret = 0, .done_fd = -1 };
    struct loop l = {
        .o = o, .sig_fd = -1, .deadline = NEVER, .migrate_at = NEVER
    };
    zm_vm *vm = NULL;
    int status = 1;

    const char *kernel = o->kernel;
    if (!kernel) {
        kernel = default_kernel(kpath, sizeof(kpath));
        if (!kernel || access(kernel, R_OK) != 0) {
            fprintf(stderr,
                    "zmigrate vm: no kernel: the built guest %s was not "
                    "found (build it: ninja -C BUILDDIR vm/guest/zmguest.elf; "
                    "or give --kernel ELF)\n",
                    kernel ? kernel : DEFAULT_KERNEL);
            return 1;
        }
    }
    if (o->migrate_to) {
        o->mig.params.dirty_tracking = ZM_TRACKING_EMBEDDER;
        struct zm_source_hooks hooks = { .sizeof_hooks = sizeof(hooks),
                                         .opaque = &mig,
                                         .stop = hook_stop,
                                         .resume = hook_resume,
                                         .save_state = hook_save,
                                         .dirty_log = hook_dirty_log };
        /* Parameters first: a bad one fails before the guest boots. */
        if (zm_source_new(&o->mig.params, &hooks, &mig.src) < 0) {
            fprintf(stderr, "zmigrate vm: %s\n", zm_errmsg());
            return 1;
        }
        mig.uri = o->migrate_to;
        mig.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        l.mig = &mig;
        l.migrate_at = o->migrate_after_ns == NEVER
                           ? NEVER
                           : now_ns() + o->migrate_after_ns;
    }
    char *cmdline = make_cmdline(o->append, o->vcpus);
    struct zm_boot_info boot;
    l.sig_fd = block_signals();
    if (!cmdline || l.sig_fd < 0 || (mig.src && mig.done_fd < 0)) {
        fprintf(stderr, "zmigrate vm: out of resources\n");
        goto out;
    }
    /* A dirty ring comes before the vCPUs. */
    if (zm_vm_new(o->ram, NULL, 0, STDOUT_FILENO, &vm, err, sizeof(err)) < 0 ||
        (o->dirty_ring &&
         zm_vm_set_dirty_ring(vm, o->dirty_ring, err, sizeof(err)) < 0) ||
        zm_vm_create_vcpus(vm, o->vcpus, err, sizeof(err)) < 0 ||
        (o->mem_prealloc && zm_vm_prealloc(vm, err, sizeof(err)) < 0)) {
        fprintf(stderr, "zmigrate vm: %s\n", err);
        goto out;
    }
    if (zm_multiboot_load(kernel, zm_vm_ram(vm), o->ram, cmdline, &boot, err,
                          sizeof(err)) < 0) {
        fprintf(stderr, "zmigrate vm: cannot load the kernel: %s\n", err);
        goto out;
    }
    if (mig.src &&
        zm_source_add_region(mig.src, "pc.ram", zm_vm_ram(vm), o->ram) < 0) {
        fprintf(stderr, "zmigrate vm: %s\n", zm_errmsg());
        goto out;
    }
    mig.vm = vm;
    l.vm = vm;
    if (zm_vm_boot_state(vm, boot.entry, boot.mbi_addr, err, sizeof(err)) < 0 ||
        zm_vm_start(vm, err, sizeof(err)) < 0) {
        fprintf(stderr, "zmigrate vm: %s\n", err);
        goto out;
    }
    if (o->run_for_ns) {
        l.deadline = now_ns() + o->run_for_ns;
    }
    status = end_run(&l, run_loop(&l));
out:
    zm_vm_free(vm);
    zm_source_free(mig.src);
    free(cmdline);
    if (mig.done_fd >= 0) {
        close(mig.done_fd);
    }
    if (l.sig_fd >= 0) {
        close(l.sig_fd);
    }
    return status;
}

/* ---- incoming ---- */

struct incoming {
    const struct vm_options *o;
    zm_dest *dst;
    zm_vm *vm;
    char err[512];
};

/*
 * The source's state: make the VM if --ram did not (on the memory the
 * library mapped for the source's layout), then restore it.  The vCPUs
 * start after zm_dest_run(): with --verify the RAM is compared after this.
 */
static int hook_load(void *opaque, const void *buf, size_t len)
{
    struct incoming *in = opaque;
    unsigned vcpus;
    uint64_t ram_size;
    int ret;

    if ((ret = zm_vm_state_geometry(buf, len, &vcpus, &ram_size, in->err,
                                    sizeof(in->err))) < 0) {
        return ret;
    }
    if (in->o->vcpus && in->o->vcpus != vcpus) {
        snprintf(in->err, sizeof(in->err),
                 "the source's VM has %u vCPUs, --vcpus says %u", vcpus,
                 in->o->vcpus);
        return -EINVAL;
    }
    if (!in->vm) {
        const char *name;
        void *base;
        size_t size;
        if (zm_dest_region_count(in->dst) != 1 ||
            zm_dest_region(in->dst, 0, &name, &base, &size) < 0 ||
            strcmp(name, "pc.ram") != 0 || size != ram_size) {
            snprintf(in->err, sizeof(in->err),
                     "the source's layout is not one 'pc.ram' region of "
                     "%llu bytes",
                     (unsigned long long)ram_size);
            return -EINVAL;
        }
        if ((ret = zm_vm_new(size, base, 0, STDOUT_FILENO, &in->vm, in->err,
                             sizeof(in->err))) < 0) {
            return ret;
        }
    }
    if (zm_vm_vcpus(in->vm) == 0 &&
        (ret = zm_vm_create_vcpus(in->vm, vcpus, in->err, sizeof(in->err))) <
            0) {
        return ret;
    }
    return zm_vm_load(in->vm, buf, len, in->err, sizeof(in->err));
}

static int run_incoming(struct vm_options *o)
{
    struct incoming in = { .o = o };
    struct zm_dest_hooks hooks = { .sizeof_hooks = sizeof(hooks),
                                   .opaque = &in,
                                   .load_state = hook_load };
    struct zm_progress pr = { 0 };
    struct zm_stats st = { .sizeof_stats = sizeof(st) };
    char err[512];
    int status = 1;

    if (o->ram) {
        /* The VM first: the switchover then only restores state. */
        if (zm_vm_new(o->ram, NULL, o->vcpus, STDOUT_FILENO, &in.vm, err,
                      sizeof(err)) < 0) {
            fprintf(stderr, "zmigrate vm: %s\n", err);
            return 1;
        }
        if (o->mem_prealloc && zm_vm_prealloc(in.vm, err, sizeof(err)) < 0) {
            fprintf(stderr, "zmigrate vm: %s\n", err);
            zm_vm_free(in.vm);
            return 1;
        }
    }
    if (zm_dest_new(&o->mig.params, &hooks, &in.dst) < 0 ||
        (in.vm &&
         zm_dest_add_region(in.dst, "pc.ram", zm_vm_ram(in.vm), o->ram) < 0) ||
        zm_dest_listen(in.dst, o->incoming) < 0) {
        fprintf(stderr, "zmigrate vm: %s\n", zm_errmsg());
        goto out;
    }
    if (!o->mig.quiet) {
        fprintf(stderr, "zmigrate vm: listening on %s\n", zm_dest_uri(in.dst));
        zm_progress_start(&pr, NULL, in.dst);
    }
    int ret = zm_dest_run(in.dst);
    zm_progress_stop(&pr);
    char why[1024];
    snprintf(why, sizeof(why), "%s%s%s", zm_errmsg(), in.err[0] ? ": " : "",
             in.err);
    zm_dest_stats(in.dst, &st);
    if (ret < 0) {
        zm_print_result(stderr, "recv", &st, o->mig.json, ret, why);
        goto out;
    }
    struct loop l = {
        .o = o, .vm = in.vm, .deadline = NEVER, .migrate_at = NEVER
    };
    l.sig_fd = block_signals();
    if (l.sig_fd < 0 || zm_vm_start(in.vm, err, sizeof(err)) < 0) {
        fprintf(stderr, "zmigrate vm: %s\n", l.sig_fd < 0 ? "signalfd" : err);
        goto out;
    }
    if (o->run_for_ns) {
        l.deadline = now_ns() + o->run_for_ns;
    }
    zm_print_result(stderr, "recv", &st, o->mig.json, 0, NULL);
    if (!o->mig.quiet) {
        fprintf(stderr, "zmigrate vm: the guest runs here (epoch %u)\n",
                zm_vm_epoch(in.vm));
    }
    status = end_run(&l, run_loop(&l));
    close(l.sig_fd);
out:
    /* The VM may run on memory the destination mapped: free it first. */
    zm_vm_free(in.vm);
    zm_dest_free(in.dst);
    return status;
}

int main(int argc, char **argv)
{
    struct vm_options o = { .migrate_after_ns = 1000000000u };
    char err[256];

    signal(SIGPIPE, SIG_IGN);

    zm_cli_name = "zmigrate vm";
    zm_params_init(&o.mig.params);
    parse_vm_options(argc, argv, &o);
    if (zm_vm_probe(err, sizeof(err)) < 0) {
        fprintf(stderr, "zmigrate vm: KVM is not available: %s\n", err);
        return 1;
    }
    if (o.incoming) {
        return run_incoming(&o);
    }
    if (!o.ram) {
        o.ram = DEFAULT_RAM;
    }
    if (!o.vcpus) {
        o.vcpus = 1;
    }
    return run_boot(&o);
}
