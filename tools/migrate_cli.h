/*
 * migrate_cli.h - what the zmigrate commands share: migration flags, the
 * progress line and the result (table or JSON)
 *
 * `zmigrate send/recv/demo/bench` (cli/main.c) and zmigrate-vm (vm/)
 * take the same migration flags and print the same results, so both parse
 * and print them here.  Public API (zmigrate.h) only.
 */
#ifndef ZM_TOOLS_MIGRATE_CLI_H
#define ZM_TOOLS_MIGRATE_CLI_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "zmigrate.h"

/* Exit status of a usage error. */
#define ZM_EXIT_USAGE 2

/*
 * getopt_long() codes of the shared flags; a command numbers its own from
 * ZM_OPT_NEXT.
 */
enum {
    ZM_OPT_CHANNELS = 256,
    ZM_OPT_COMPRESSION,
    ZM_OPT_LEVEL,
    ZM_OPT_BANDWIDTH,
    ZM_OPT_DOWNTIME,
    ZM_OPT_ITERATIONS,
    ZM_OPT_BATCH,
    ZM_OPT_OFFLOAD,
    ZM_OPT_COMPRESS_THREADS,
    ZM_OPT_DECOMPRESS_THREADS,
    ZM_OPT_VERIFY,
    ZM_OPT_NO_VERIFY,
    ZM_OPT_JSON,
    ZM_OPT_QUIET,
    ZM_OPT_NEXT,
};

/* The shared flags' entries for a struct option table. */
#define ZM_MIGRATION_LONG_OPTIONS                                         \
    { "multifd-channels", required_argument, NULL, ZM_OPT_CHANNELS },     \
        { "compression", required_argument, NULL, ZM_OPT_COMPRESSION },   \
        { "compression-level", required_argument, NULL, ZM_OPT_LEVEL },   \
        { "max-bandwidth", required_argument, NULL, ZM_OPT_BANDWIDTH },   \
        { "downtime-limit", required_argument, NULL, ZM_OPT_DOWNTIME },   \
        { "max-iterations", required_argument, NULL, ZM_OPT_ITERATIONS }, \
        { "batch-pages", required_argument, NULL, ZM_OPT_BATCH },         \
        { "offload", required_argument, NULL, ZM_OPT_OFFLOAD },           \
        { "compress-threads", required_argument, NULL,                    \
          ZM_OPT_COMPRESS_THREADS },                                      \
        { "decompress-threads", required_argument, NULL,                  \
          ZM_OPT_DECOMPRESS_THREADS },                                    \
        { "verify", no_argument, NULL, ZM_OPT_VERIFY },                   \
        { "no-verify", no_argument, NULL, ZM_OPT_NO_VERIFY },             \
        { "json", no_argument, NULL, ZM_OPT_JSON },                       \
    {                                                                     \
        "quiet", no_argument, NULL, ZM_OPT_QUIET                          \
    }

/* The shared flags' --help text (--dirty-tracking is send's own). */
#define ZM_MIGRATION_OPTIONS_HELP                                              \
    "    --multifd-channels N     data channels, 1..64 (default 2)\n"          \
    "    --compression NAME       none, lz4, zstd, zlib, deflate, or auto:\n"  \
    "                             per batch, the method that delivers most\n"  \
    "                             over the link measured and the CPU free\n"   \
    "                             (none, lz4, deflate:1, zstd:1..9; its\n"     \
    "                             choices go to --json) (default none)\n"      \
    "    --compression-level N    the codec's level (default: its own)\n"      \
    "    --max-bandwidth RATE     bytes/s on the wire, e.g. 1G, 100M/s,\n"     \
    "                             1Gbit/s (default unlimited)\n"               \
    "    --downtime-limit TIME    e.g. 300ms, 1s (default 300ms)\n"            \
    "    --max-iterations N       rounds before switching over anyway\n"       \
    "                             (default 30)\n"                              \
    "    --batch-pages N          pages per packet, 1..1024 (default 128):\n"  \
    "                             larger batches compress a little better\n"   \
    "    --offload NAME[:KEY=VALUE,...]\n"                                     \
    "                             compress on a backend, in software when\n"   \
    "                             it is busy or fails: cpu (threads=N,\n"      \
    "                             depth=D, min-pages=P) or emulated (also\n"   \
    "                             latency=200us, busy-every=, busy-for=,\n"    \
    "                             fail-every=N, hang-every=N,\n"               \
    "                             lose-after=N, host-percent=P: the share\n"   \
    "                             of its CPU that is the host's); see\n"       \
    "                             doc/offload.md\n"                            \
    "    --compress-threads N     --offload cpu:threads=N: N workers\n"        \
    "                             compress, the channels only send\n"          \
    "    --decompress-threads N   receiving: N workers decode, the channels\n" \
    "                             only read (default 0: the channels)\n"       \
    "    --verify                 after completion both sides hash all RAM\n"  \
    "                             and compare (--no-verify: don't)\n"

/* The migration flags' values, and the output flags. */
struct zm_migration_options {
    struct zm_params params;
    bool json;
    bool quiet;
    char offload[256]; /* params.offload points here */
};

/*
 * The command's name in messages ("zmigrate" or "zmigrate vm"): usage
 * errors say "<name>: ..." and "Try '<name> --help'.".
 */
extern const char *zm_cli_name;

/* Prints "<name>: <fmt with arg>" and the --help hint; exits 2. */
void zm_usage_error(const char *fmt, const char *arg)
    __attribute__((noreturn, format(printf, 1, 0)));

/* A whole number in [min, max] for flag opt, or a usage error. */
uint64_t zm_parse_count_opt(const char *opt, const char *s, uint64_t min,
                            uint64_t max);

/*
 * Applies getopt code c with argument arg if it is a shared flag: returns
 * true, or false for a code that is not one of them.  A bad value is a
 * usage error (exit 2).
 */
bool zm_migration_option(int c, const char *arg,
                         struct zm_migration_options *mo);

/*
 * The progress line on stderr while a migration runs: on a terminal one
 * line redrawn five times a second, otherwise a plain line each second.
 * Give src or dst.
 */
struct zm_progress {
    pthread_t thread;
    atomic_bool done;
    bool tty;
    bool started;
    zm_source *src;
    zm_dest *dst;
};

void zm_progress_start(struct zm_progress *pr, zm_source *src, zm_dest *dst);
/* Stops the thread (if started) and prints the final line. */
void zm_progress_stop(struct zm_progress *pr);

/*
 * The result of one side ("send", "recv", ...) on out: a short table, or
 * one JSON object on one line (QEMU's query-migrate names).  ret is
 * zm_source_run()'s or zm_dest_run()'s value; on failure err is the reason
 * (NULL: zm_errmsg(), right on the thread that ran the migration).
 */
void zm_print_result(FILE *out, const char *side, const struct zm_stats *st,
                     bool json, int ret, const char *err);

/*
 * The source's result, as zm_print_result(out, "send", ...); the JSON also
 * has "rounds", one object per round (zm_source_rounds()).
 */
void zm_print_source_result(FILE *out, zm_source *src, bool json, int ret,
                            const char *err);

#endif /* ZM_TOOLS_MIGRATE_CLI_H */
