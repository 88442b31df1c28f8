/*
 * main.c - zmigrate, the command-line tool: send, recv, demo, bench; and
 * vm, which runs the VMM, zmigrate-vm (vm/), a program of its own
 *
 * Built on the public API (zmigrate.h) only, plus tools/: the simulated
 * guest (sim_guest.h), unit parsing (units.h) and the flags and output the
 * commands share (migrate_cli.h).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tools/migrate_cli.h"
#include "tools/sim_guest.h"
#include "tools/units.h"
#include "zmigrate.h"

#define EXIT_USAGE ZM_EXIT_USAGE

static const char usage_text[] =
    "NAME\n"
    "    zmigrate - live migration of memory over compressed channels\n"
    "\n"
    "SYNOPSIS\n"
    "    zmigrate recv --listen URI [--decompress-threads N] [--json] "
    "[--quiet]\n"
    "    zmigrate recv --from file:PATH [--decompress-threads N] [--json]\n"
    "                  [--quiet]\n"
    "    zmigrate send --to URI [MIGRATION OPTIONS] [GUEST OPTIONS]\n"
    "    zmigrate demo [MIGRATION OPTIONS] [GUEST OPTIONS]\n"
    "    zmigrate bench [MIGRATION OPTIONS] [GUEST OPTIONS] [--chart FILE]\n"
    "    zmigrate vm [--kernel ELF] [--ram SIZE] [--vcpus N] [--append ARGS]\n"
    "                [--migrate-to URI [MIGRATION OPTIONS]] [--run-for TIME]\n"
    "    zmigrate vm --incoming URI [--ram SIZE] [--vcpus N] [--run-for TIME]\n"
    "    zmigrate --help | --version\n"
    "\n"
    "DESCRIPTION\n"
    "    recv waits for one migration on URI and receives it into memory\n"
    "    it maps from the source's layout (or restores a saved one from a\n"
    "    file).  send starts a built-in guest, RAM filled with guest-like\n"
    "    data and vCPU threads that keep writing to it, and migrates it live\n"
    "    to URI: rounds over the pages the guest dirtied, until what is left\n"
    "    fits the downtime limit; then it stops the vCPUs, sends the rest\n"
    "    and the vCPU state, and the destination takes over.  demo runs both\n"
    "    ends as two processes on a UNIX socket and prints the result.\n"
    "    bench does that once per method (none, lz4, zstd, zlib, deflate)\n"
    "    and prints a Markdown table: total time, downtime, throughput,\n"
    "    pages per second, sender and receiver CPU %, ratio; --chart FILE\n"
    "    also draws it as a PNG (needs gnuplot).  bench's defaults: 4\n"
    "    channels, writer workload.\n"
    "\n"
    "    vm runs a real guest kernel in a KVM virtual machine and migrates\n"
    "    it live with KVM's dirty log: see 'zmigrate vm --help'.\n"
    "\n"
    "    URI is tcp:HOST:PORT, unix:PATH or file:PATH (send saves the guest\n"
    "    to the file; recv --from restores it).\n"
    "\n"
    "MIGRATION OPTIONS (names as QEMU's migration "
    "parameters)\n" ZM_MIGRATION_OPTIONS_HELP
    "    --dirty-tracking KIND    auto, uffd-wp, soft-dirty (default auto)\n"
    "    demo's defaults: 4 channels, zstd, --verify.\n"
    "\n"
    "GUEST OPTIONS\n"
    "    --guest-ram SIZE         e.g. 4G (default 1G)\n"
    "    --vcpus N                vCPU threads (default 2)\n"
    "    --workload KIND          idle: RAM filled once; fill: the vCPUs\n"
    "                             fill it during the migration; writer: they\n"
    "                             keep writing random values (default idle;\n"
    "                             demo writer)\n"
    "    --dirty-rate RATE        pages dirtied per second x 4096, all vCPUs\n"
    "                             (default 100M/s)\n"
    "    --data SOURCE            generated, random (incompressible), or\n"
    "                             corpus:DIR (the files, repeated)\n"
    "    --zero-percent N         make N% of the pages zero, in runs of 16\n"
    "                             (not with --workload fill; default 0)\n"
    "    --seed N                 for the generated data (default 1)\n"
    "\n"
    "OUTPUT OPTIONS\n"
    "    --json                   one JSON object with the result, on stdout\n"
    "                             (QEMU's names: total-time, downtime,\n"
    "                             ram.transferred, ...; the sender's also has\n"
    "                             \"rounds\", one object per round)\n"
    "    --quiet                  no progress line\n"
    "\n"
    "    On a terminal a progress line shows the round, bytes sent and\n"
    "    remaining, the dirty rate, throughput and compression ratio;\n"
    "    otherwise a plain line each second.\n"
    "\n"
    "EXAMPLES\n"
    "    zmigrate recv --listen tcp:0.0.0.0:4444\n"
    "    zmigrate send --to tcp:desthost:4444 --guest-ram 4G --vcpus 4 \\\n"
    "        --workload writer --dirty-rate 200M/s --compression zstd \\\n"
    "        --multifd-channels 8 --max-bandwidth 1G --downtime-limit 300ms\n"
    "    zmigrate send --to file:guest.zm --compression lz4\n"
    "    zmigrate recv --from file:guest.zm --json\n"
    "    zmigrate demo --guest-ram 256M --compression lz4\n"
    "\n"
    "EXIT STATUS\n"
    "    0 the migration completed (and verified); 1 it failed; 2 usage;\n"
    "    3 send only: the migration went out whole but the destination's\n"
    "    answer never came (status \"unconfirmed\"): it may have the guest.\n";

struct options {
    struct zm_migration_options mig;
    const char *to;
    const char *listen;
    const char *from;
    struct zm_guest_options guest;
    const char *data;
    const char *chart;
};

enum {
    OPT_TO = ZM_OPT_NEXT,
    OPT_LISTEN,
    OPT_FROM,
    OPT_TRACKING,
    OPT_RAM,
    OPT_VCPUS,
    OPT_WORKLOAD,
    OPT_DIRTY_RATE,
    OPT_DATA,
    OPT_ZERO_PERCENT,
    OPT_SEED,
    OPT_CHART,
};

static const struct option long_options[] = {
    { "to", required_argument, NULL, OPT_TO },
    { "listen", required_argument, NULL, OPT_LISTEN },
    { "from", required_argument, NULL, OPT_FROM },
    ZM_MIGRATION_LONG_OPTIONS,
    { "dirty-tracking", required_argument, NULL, OPT_TRACKING },
    { "guest-ram", required_argument, NULL, OPT_RAM },
    { "vcpus", required_argument, NULL, OPT_VCPUS },
    { "workload", required_argument, NULL, OPT_WORKLOAD },
    { "dirty-rate", required_argument, NULL, OPT_DIRTY_RATE },
    { "data", required_argument, NULL, OPT_DATA },
    { "zero-percent", required_argument, NULL, OPT_ZERO_PERCENT },
    { "seed", required_argument, NULL, OPT_SEED },
    { "chart", required_argument, NULL, OPT_CHART },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static void parse_options(int argc, char **argv, struct options *o)
{
    char err[128];
    uint64_t v;
    int c, ret;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        if (zm_migration_option(c, optarg, &o->mig)) {
            continue;
        }
        switch (c) {
        case OPT_TO:
            o->to = optarg;
            break;
        case OPT_LISTEN:
            o->listen = optarg;
            break;
        case OPT_FROM:
            o->from = optarg;
            break;
        case OPT_TRACKING:
            if (strcmp(optarg, "auto") == 0) {
                o->mig.params.dirty_tracking = ZM_TRACKING_AUTO;
            } else if (strcmp(optarg, "uffd-wp") == 0) {
                o->mig.params.dirty_tracking = ZM_TRACKING_UFFD_WP;
            } else if (strcmp(optarg, "soft-dirty") == 0) {
                o->mig.params.dirty_tracking = ZM_TRACKING_SOFT_DIRTY;
            } else {
                zm_usage_error("--dirty-tracking: '%s' (auto, uffd-wp, "
                               "soft-dirty)",
                               optarg);
            }
            break;
        case OPT_RAM:
            if (zm_parse_size(optarg, &v, err, sizeof(err)) < 0 || v == 0 ||
                v % ZM_GUEST_PAGE_SIZE) {
                zm_usage_error("--guest-ram: %s",
                               err[0] ? err : "a non-zero multiple of 4 KiB");
            }
            o->guest.ram = v;
            break;
        case OPT_VCPUS:
            o->guest.vcpus = (unsigned)zm_parse_count_opt("--vcpus", optarg, 1,
                                                          ZM_GUEST_MAX_VCPUS);
            break;
        case OPT_WORKLOAD:
            if ((ret = zm_guest_workload_by_name(optarg)) < 0) {
                zm_usage_error("--workload: '%s' (idle, fill, writer)", optarg);
            }
            o->guest.workload = (enum zm_guest_workload)ret;
            break;
        case OPT_DIRTY_RATE:
            if (zm_parse_rate(optarg, &v, err, sizeof(err)) < 0) {
                zm_usage_error("--dirty-rate: %s", err);
            }
            o->guest.dirty_rate = v;
            break;
        case OPT_DATA:
            o->guest.corpus_dir = NULL;
            o->guest.random = false;
            if (strcmp(optarg, "random") == 0) {
                o->guest.random = true;
            } else if (strncmp(optarg, "corpus:", 7) == 0 && optarg[7]) {
                o->guest.corpus_dir = optarg + 7;
            } else if (strcmp(optarg, "generated") != 0) {
                zm_usage_error("--data: '%s' (generated, random or "
                               "corpus:DIR)",
                               optarg);
            }
            break;
        case OPT_ZERO_PERCENT:
            o->guest.zero_percent =
                (unsigned)zm_parse_count_opt("--zero-percent", optarg, 0, 100);
            break;
        case OPT_SEED:
            o->guest.seed = zm_parse_count_opt("--seed", optarg, 0, UINT64_MAX);
            break;
        case OPT_CHART:
            o->chart = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            exit(0);
        default:
            fprintf(stderr, "Try 'zmigrate --help'.\n");
            exit(EXIT_USAGE);
        }
    }
    if (optind < argc) {
        zm_usage_error("unexpected argument '%s'", argv[optind]);
    }
}

/* ---- recv ---- */

struct device_state {
    size_t len;
};

static int load_state(void *opaque, const void *buf, size_t len)
{
    struct device_state *ds = opaque;
    (void)buf;
    ds->len = len;
    return 0;
}

static int cmd_recv(struct options *o)
{
    const char *uri = o->listen ? o->listen : o->from;
    struct device_state ds = { 0 };
    struct zm_dest_hooks hooks = { .sizeof_hooks = sizeof(hooks),
                                   .opaque = &ds,
                                   .load_state = load_state };
    struct zm_progress pr = { 0 };
    zm_dest *dst;
    struct zm_stats st = { .sizeof_stats = sizeof(st) };

    if (!uri || (o->listen && o->from)) {
        zm_usage_error("recv needs --listen URI or --from file:PATH%s", "");
    }
    if (o->from && strncmp(o->from, "file:", 5) != 0) {
        zm_usage_error("--from takes a file:PATH, not '%s'", o->from);
    }
    if (zm_dest_new(&o->mig.params, &hooks, &dst) < 0 ||
        zm_dest_listen(dst, uri) < 0) {
        fprintf(stderr, "zmigrate recv: %s\n", zm_errmsg());
        return 1;
    }
    if (!o->mig.quiet && o->listen) {
        fprintf(stderr, "zmigrate recv: listening on %s\n", zm_dest_uri(dst));
    }
    if (!o->mig.quiet) {
        zm_progress_start(&pr, NULL, dst);
    }
    int ret = zm_dest_run(dst);
    zm_progress_stop(&pr);
    zm_dest_stats(dst, &st);
    zm_print_result(stdout, "recv", &st, o->mig.json, ret, NULL);
    zm_dest_free(dst);
    return ret < 0 ? 1 : 0;
}

/* ---- send ---- */

struct vcpu_state {
    zm_guest *guest;
};

/* The built-in guest's "device state": its vCPU statistics. */
static ssize_t save_state(void *opaque, void *buf, size_t cap)
{
    struct vcpu_state *vs = opaque;
    struct zm_guest_stats gs;
    zm_guest_stats(vs->guest, &gs);
    int n = snprintf(buf, cap, "builtin-guest pages_dirtied=%llu",
                     (unsigned long long)gs.pages_dirtied);
    return n < 0 || (size_t)n >= cap ? -ENOBUFS : n;
}

static int hook_stop(void *opaque)
{
    return zm_guest_stop(((struct vcpu_state *)opaque)->guest);
}

static int hook_resume(void *opaque)
{
    return zm_guest_resume(((struct vcpu_state *)opaque)->guest);
}

static int run_send(struct options *o, struct zm_stats *out, bool print)
{
    char err[256];
    zm_guest *guest;
    zm_source *src;
    struct vcpu_state vs;
    struct zm_progress pr = { 0 };
    struct zm_stats st = { .sizeof_stats = sizeof(st) };

    if (!o->to) {
        zm_usage_error("send needs --to URI%s", "");
    }
    struct zm_source_hooks hooks = { .sizeof_hooks = sizeof(hooks),
                                     .opaque = &vs,
                                     .stop = hook_stop,
                                     .resume = hook_resume,
                                     .save_state = save_state };
    /* Parameters first: a bad one fails before gigabytes are filled. */
    if (zm_source_new(&o->mig.params, &hooks, &src) < 0) {
        fprintf(stderr, "zmigrate send: %s\n", zm_errmsg());
        return 1;
    }
    if (zm_guest_new(&o->guest, &guest, err, sizeof(err)) < 0) {
        fprintf(stderr, "zmigrate send: guest: %s\n", err);
        zm_source_free(src);
        return 1;
    }
    vs.guest = guest;
    if (zm_source_add_region(src, "pc.ram", zm_guest_ram(guest),
                             zm_guest_ram_size(guest)) < 0) {
        fprintf(stderr, "zmigrate send: %s\n", zm_errmsg());
        zm_source_free(src);
        zm_guest_free(guest);
        return 1;
    }
    zm_guest_start(guest);
    if (print && !o->mig.quiet) {
        zm_progress_start(&pr, src, NULL);
    }
    int ret = zm_source_run(src, o->to);
    zm_progress_stop(&pr);
    zm_source_stats(src, &st);
    if (print) {
        zm_print_source_result(stdout, src, o->mig.json, ret, NULL);
    }
    if (out) {
        *out = st;
    }
    zm_source_free(src);
    zm_guest_free(guest);
    return st.status == ZM_STATUS_UNCONFIRMED ? 3 : ret < 0 ? 1 : 0;
}

static int cmd_send(struct options *o)
{
    return run_send(o, NULL, true);
}

/* ---- demo and bench: both ends, as two processes ---- */

/*
 * Migrates the built-in guest to a destination in a child process on a
 * UNIX socket; the child's statistics come back through a pipe.  Returns 0
 * when both sides completed.
 */
static int run_pair(struct options *o, struct zm_stats *send_st,
                    struct zm_stats *recv_st, bool print)
{
    char uri[64];
    int ready[2], result[2];

    snprintf(uri, sizeof(uri), "unix:/tmp/zmigrate-%d.sock", (int)getpid());
    o->to = uri;
    if (pipe(ready) != 0 || pipe(result) != 0) {
        perror("zmigrate: pipe");
        return 1;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("zmigrate: fork");
        return 1;
    }
    if (child == 0) {
        close(ready[0]);
        close(result[0]);
        zm_dest *dst;
        struct device_state ds = { 0 };
        struct zm_dest_hooks hooks = { .sizeof_hooks = sizeof(hooks),
                                       .opaque = &ds,
                                       .load_state = load_state };
        struct zm_stats st = { .sizeof_stats = sizeof(st) };
        if (zm_dest_new(&o->mig.params, &hooks, &dst) < 0 ||
            zm_dest_listen(dst, uri) < 0) {
            fprintf(stderr, "zmigrate: recv: %s\n", zm_errmsg());
            _exit(1);
        }
        (void)!write(ready[1], "r", 1);
        close(ready[1]);
        int ret = zm_dest_run(dst);
        zm_dest_stats(dst, &st);
        if (print) {
            zm_print_result(stdout, "recv", &st, o->mig.json, ret, NULL);
            fflush(stdout);
        }
        (void)!write(result[1], &st, sizeof(st));
        zm_dest_free(dst);
        _exit(ret < 0 ? 1 : 0);
    }
    close(ready[1]);
    close(result[1]);
    char byte;
    int ret = 1;
    if (read(ready[0], &byte, 1) == 1) {
        ret = run_send(o, send_st, print);
    } else {
        fprintf(stderr, "zmigrate: the destination did not start\n");
    }
    close(ready[0]);
    if (read(result[0], recv_st, sizeof(*recv_st)) !=
        (ssize_t)sizeof(*recv_st)) {
        memset(recv_st, 0, sizeof(*recv_st));
    }
    close(result[0]);
    int status;
    waitpid(child, &status, 0);
    bool child_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    return ret == 0 && child_ok ? 0 : 1;
}

static int cmd_demo(struct options *o)
{
    char ram[ZM_FORMAT_MAX], rate[ZM_FORMAT_MAX];
    struct zm_stats send_st = { .sizeof_stats = sizeof(send_st) };
    struct zm_stats recv_st = { .sizeof_stats = sizeof(recv_st) };

    zm_format_bytes(ram, sizeof(ram), o->guest.ram);
    zm_format_rate(rate, sizeof(rate), (double)o->guest.dirty_rate);
    /* With --json, stdout carries only the results. */
    fprintf(o->mig.json ? stderr : stdout,
            "zmigrate demo: a %s guest, %u vCPUs, workload %s at %s, %s "
            "over %u channels, on a UNIX socket\n",
            ram, o->guest.vcpus, zm_guest_workload_name(o->guest.workload),
            rate,
            o->mig.params.compression == ZM_COMPRESSION_AUTO
                ? "auto"
                : zm_codec_name(o->mig.params.compression),
            o->mig.params.multifd_channels);
    int ret = run_pair(o, &send_st, &recv_st, true);
    if (!o->mig.json) {
        printf("zmigrate demo: %s\n", ret != 0 ? "FAILED"
                                      : o->mig.params.verify
                                          ? "completed, RAM verified"
                                          : "completed");
    }
    return ret;
}

/* The seeds' table: one migration per method, same guest and link. */
static int cmd_bench(struct options *o, const char *chart)
{
    static const int methods[] = { ZM_CODEC_NONE, ZM_CODEC_LZ4, ZM_CODEC_ZSTD,
                                   ZM_CODEC_ZLIB, ZM_CODEC_DEFLATE };
    char ram[ZM_FORMAT_MAX], bw[ZM_FORMAT_MAX];
    FILE *data = NULL;
    char data_path[64];
    int failures = 0;

    zm_format_bytes(ram, sizeof(ram), o->guest.ram);
    zm_format_rate(bw, sizeof(bw),
                   o->mig.params.max_bandwidth
                       ? (double)o->mig.params.max_bandwidth
                       : (double)ZM_RATE_UNLIMITED);
    printf("## zmigrate bench: %s guest, workload %s, %u channels, "
           "max-bandwidth %s\n\n",
           ram, zm_guest_workload_name(o->guest.workload),
           o->mig.params.multifd_channels, bw);
    printf("| method | total time (ms) | downtime (ms) | throughput (mbps) | "
           "pages/s | send CPU %% | recv CPU %% | ratio | rounds |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    if (chart) {
        snprintf(data_path, sizeof(data_path), "/tmp/zmigrate-bench-%d.dat",
                 (int)getpid());
        data = fopen(data_path, "w");
    }
    for (unsigned m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
        struct zm_stats s = { .sizeof_stats = sizeof(s) };
        struct zm_stats r = { .sizeof_stats = sizeof(r) };
        if (!zm_codec_available(methods[m])) {
            continue;
        }
        o->mig.params.compression = methods[m];
        o->mig.params.compression_level = ZM_LEVEL_DEFAULT;
        int ret = run_pair(o, &s, &r, false);
        const char *name = zm_codec_name(methods[m]);
        if (ret != 0) {
            printf("| %s | failed: %s | | | | | | | |\n", name, zm_errmsg());
            failures++;
            continue;
        }
        double secs = s.total_time_ms / 1000.0;
        double send_pct = secs > 0 ? 100 * s.cpu_seconds / secs : 0;
        double recv_pct = secs > 0 ? 100 * r.cpu_seconds / secs : 0;
        printf("| %s | %llu | %llu | %.0f | %llu | %.0f | %.0f | %.2f | "
               "%u |\n",
               name, (unsigned long long)s.total_time_ms,
               (unsigned long long)s.downtime_ms, s.mbps,
               (unsigned long long)s.pages_per_second, send_pct, recv_pct,
               s.compression_ratio, s.iterations);
        fflush(stdout);
        if (data) {
            fprintf(data, "%s %llu %llu %.0f %.0f\n", name,
                    (unsigned long long)s.total_time_ms,
                    (unsigned long long)s.downtime_ms, send_pct, recv_pct);
        }
    }
    if (data) {
        fclose(data);
        char cmd[512];
        snprintf(cmd, sizeof(cmd),
                 "gnuplot -e \"set terminal png size 900,500; "
                 "set output '%s'; set style data histograms; "
                 "set style fill solid; set ylabel 'ms'; set y2label 'CPU %%'; "
                 "set y2tics; set yrange [0:*]; set y2range [0:*]; set ytics "
                 "nomirror; "
                 "plot '%s' using 2:xtic(1) title 'total time (ms)', "
                 "'' using 3 title 'downtime (ms)', "
                 "'' using 4 axes x1y2 title 'send CPU %%', "
                 "'' using 5 axes x1y2 title 'recv CPU %%'\"",
                 chart, data_path);
        if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
            fprintf(stderr, "zmigrate bench: gnuplot is not installed, no "
                            "chart (apt-get install gnuplot-nox)\n");
        } else if (system(cmd) != 0) {
            fprintf(stderr, "zmigrate bench: gnuplot failed\n");
        } else {
            printf("\nchart: %s\n", chart);
        }
        unlink(data_path);
    }
    return failures ? 1 : 0;
}

/*
 * `zmigrate vm ARGS` is `zmigrate-vm ARGS`: $ZMIGRATE_VM if set, else the
 * program beside this one (installed), else in the build tree's vm/, else
 * on $PATH.  Returns only on failure.
 */
static int run_vm(char **argv)
{
    char self[PATH_MAX], path[PATH_MAX + 32];
    const char *env = getenv("ZMIGRATE_VM");

    argv[0] = "zmigrate-vm";
    if (env && *env) {
        execv(env, argv);
        fprintf(stderr, "zmigrate vm: cannot run %s (ZMIGRATE_VM): %s\n", env,
                strerror(errno));
        return 1;
    }
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    char *slash = n > 0 ? memrchr(self, '/', (size_t)n) : NULL;
    if (slash) {
        *slash = '\0';
        static const char *const beside[] = { "zmigrate-vm",
                                              "../vm/zmigrate-vm" };
        for (size_t i = 0; i < sizeof(beside) / sizeof(beside[0]); i++) {
            snprintf(path, sizeof(path), "%s/%s", self, beside[i]);
            if (access(path, X_OK) == 0) {
                execv(path, argv);
            }
        }
    }
    execvp("zmigrate-vm", argv);
    fprintf(stderr,
            "zmigrate vm: cannot run zmigrate-vm (%s): install it beside "
            "zmigrate or on PATH, or set ZMIGRATE_VM\n",
            strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    struct options o = { 0 };

    signal(SIGPIPE, SIG_IGN);
    zm_params_init(&o.mig.params);
    o.guest = (struct zm_guest_options){ .ram = 1u << 30,
                                         .vcpus = 2,
                                         .workload = ZM_GUEST_IDLE,
                                         .dirty_rate = 100u << 20,
                                         .seed = 1 };
    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "vm") == 0) {
        return run_vm(argv + 1);
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("zmigrate %s\n", zm_version());
        return 0;
    }
    if (strcmp(cmd, "bench") == 0) {
        o.mig.params.multifd_channels = 4;
        o.guest.workload = ZM_GUEST_WRITER;
        o.mig.quiet = true;
    }
    if (strcmp(cmd, "demo") == 0) {
        o.mig.params.compression =
            zm_codec_available(ZM_CODEC_ZSTD) ? ZM_CODEC_ZSTD : ZM_CODEC_NONE;
        o.mig.params.multifd_channels = 4;
        o.mig.params.verify = true;
        o.guest.workload = ZM_GUEST_WRITER;
    }
    parse_options(argc - 1, argv + 1, &o);
    if (strcmp(cmd, "send") == 0) {
        return cmd_send(&o);
    }
    if (strcmp(cmd, "recv") == 0) {
        return cmd_recv(&o);
    }
    if (strcmp(cmd, "demo") == 0) {
        return cmd_demo(&o);
    }
    if (strcmp(cmd, "bench") == 0) {
        return cmd_bench(&o, o.chart);
    }
    zm_usage_error("unknown command '%s' (send, recv, demo, bench, vm)", cmd);
    return EXIT_USAGE;
}
