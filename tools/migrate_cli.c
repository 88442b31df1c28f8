/*
 * migrate_cli.c - migration flags, progress line and results for the zmigrate
 * commands (see migrate_cli.h)
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migrate_cli.h"
#include "json.h"
#include "units.h"

const char *zm_cli_name = "zmigrate";

void zm_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "%s: ", zm_cli_name);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    fprintf(stderr, fmt, arg);
#pragma GCC diagnostic pop
    fprintf(stderr, "\nTry '%s --help'.\n", zm_cli_name);
    exit(ZM_EXIT_USAGE);
}

uint64_t zm_parse_count_opt(const char *opt, const char *s, uint64_t min,
                            uint64_t max)
{
    uint64_t v;
    char err[128];
    if (zm_parse_uint(s, min, max, &v, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s: %s\n", zm_cli_name, opt, err);
        exit(ZM_EXIT_USAGE);
    }
    return v;
}

bool zm_migration_option(int c, const char *arg,
                         struct zm_migration_options *mo)
{
    char err[128];
    uint64_t v;
    int ret;

    switch (c) {
    case ZM_OPT_CHANNELS:
        mo->params.multifd_channels =
            (unsigned)zm_parse_count_opt("--multifd-channels", arg, 1, 64);
        return true;
    case ZM_OPT_COMPRESSION:
        if (strcmp(arg, "auto") == 0) {
            mo->params.compression = ZM_COMPRESSION_AUTO;
        } else if ((ret = zm_codec_by_name(arg)) < 0) {
            zm_usage_error("--compression: %s", zm_errmsg());
        } else {
            mo->params.compression = ret;
        }
        return true;
    case ZM_OPT_LEVEL: {
        char *end;
        long level = strtol(arg, &end, 10);
        if (*arg == '\0' || *end != '\0' || level < -1000000 ||
            level > 1000000) {
            zm_usage_error("--compression-level: '%s' is not a number", arg);
        }
        mo->params.compression_level = (int)level;
        return true;
    }
    case ZM_OPT_BANDWIDTH:
        if (zm_parse_rate(arg, &v, err, sizeof(err)) < 0) {
            zm_usage_error("--max-bandwidth: %s", err);
        }
        mo->params.max_bandwidth = v == ZM_RATE_UNLIMITED ? 0 : v;
        return true;
    case ZM_OPT_DOWNTIME:
        if (zm_parse_duration(arg, ZM_UNIT_MS, &v, err, sizeof(err)) < 0) {
            zm_usage_error("--downtime-limit: %s", err);
        }
        mo->params.downtime_limit_ms = v / ZM_UNIT_MS;
        return true;
    case ZM_OPT_ITERATIONS:
        mo->params.max_iterations =
            (unsigned)zm_parse_count_opt("--max-iterations", arg, 1, 1000000);
        return true;
    case ZM_OPT_BATCH:
        mo->params.batch_pages =
            (uint32_t)zm_parse_count_opt("--batch-pages", arg, 1, 1024);
        return true;
    case ZM_OPT_OFFLOAD: {
        size_t name = strcspn(arg, ":");
        char buf[32] = "";
        if (name < sizeof(buf)) {
            memcpy(buf, arg, name);
            buf[name] = '\0';
        }
        if (!zm_offload_by_name(buf)) {
            zm_usage_error("--offload: no backend '%s' (cpu, emulated)", buf);
        }
        if (strlen(arg) >= sizeof(mo->offload)) {
            zm_usage_error("--offload: '%s' is too long", arg);
        }
        snprintf(mo->offload, sizeof(mo->offload), "%s", arg);
        mo->params.offload = mo->offload;
        return true;
    }
    case ZM_OPT_COMPRESS_THREADS:
        snprintf(
            mo->offload, sizeof(mo->offload), "cpu:threads=%u",
            (unsigned)zm_parse_count_opt("--compress-threads", arg, 1, 256));
        mo->params.offload = mo->offload;
        return true;
    case ZM_OPT_DECOMPRESS_THREADS:
        mo->params.decompress_threads =
            (unsigned)zm_parse_count_opt("--decompress-threads", arg, 0, 256);
        return true;
    case ZM_OPT_VERIFY:
    case ZM_OPT_NO_VERIFY:
        mo->params.verify = c == ZM_OPT_VERIFY;
        return true;
    case ZM_OPT_JSON:
        mo->json = true;
        return true;
    case ZM_OPT_QUIET:
        mo->quiet = true;
        return true;
    default:
        return false;
    }
}

/* ---- progress ---- */

static void progress_line(struct zm_progress *pr, bool final)
{
    struct zm_stats st = { .sizeof_stats = sizeof(st) };
    char sent[ZM_FORMAT_MAX], left[ZM_FORMAT_MAX], dirty[ZM_FORMAT_MAX];

    if (pr->src) {
        zm_source_stats(pr->src, &st);
    } else {
        zm_dest_stats(pr->dst, &st);
    }
    zm_format_bytes(sent, sizeof(sent), st.transferred);
    zm_format_bytes(left, sizeof(left), st.remaining);
    zm_format_rate(dirty, sizeof(dirty), (double)st.dirty_pages_rate * 4096);
    double ratio = st.payload_bytes
                       ? (double)st.normal_bytes / (double)st.payload_bytes
                       : 0;
    fprintf(stderr,
            "%s%-9s round %-3u %s %10s  remaining %10s  dirty %12s  "
            "ratio %.2f%s",
            pr->tty ? "\r" : "", zm_status_name(st.status), st.iterations,
            pr->src ? "sent" : "recv", sent, left, dirty, ratio,
            pr->tty && !final ? "" : "\n");
    fflush(stderr);
}

static void *progress_thread(void *arg)
{
    struct zm_progress *pr = arg;
    unsigned tick = 0;

    while (!atomic_load(&pr->done)) {
        struct timespec ts = { 0, 200 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        /* A line a second when it is not a terminal. */
        if (!atomic_load(&pr->done) && (pr->tty || ++tick % 5 == 0)) {
            progress_line(pr, false);
        }
    }
    return NULL;
}

void zm_progress_start(struct zm_progress *pr, zm_source *src, zm_dest *dst)
{
    pr->tty = isatty(2);
    pr->src = src;
    pr->dst = dst;
    atomic_store(&pr->done, false);
    pr->started = pthread_create(&pr->thread, NULL, progress_thread, pr) == 0;
}

void zm_progress_stop(struct zm_progress *pr)
{
    if (!pr->started) {
        return;
    }
    atomic_store(&pr->done, true);
    pthread_join(pr->thread, NULL);
    pr->started = false;
    progress_line(pr, true);
}

/* ---- results ---- */

/* JSON: the rounds, as "rounds": [...], after the other members. */
static void print_rounds(FILE *out, const struct zm_round *r, unsigned n)
{
    fputs(", \"rounds\": [", out);
    for (unsigned i = 0; i < n; i++) {
        fprintf(out,
                "%s{\"start-ms\": %.3f, \"time-ms\": %.3f, \"pages\": %llu, "
                "\"zero-pages\": %llu, \"wire-bytes\": %llu, "
                "\"skipped\": %llu, \"dirty-after\": %llu, "
                "\"expected-downtime\": %llu, \"final\": %s}",
                i ? ", " : "", r[i].start_ms, r[i].time_ms,
                (unsigned long long)r[i].pages,
                (unsigned long long)r[i].zero_pages,
                (unsigned long long)r[i].wire_bytes,
                (unsigned long long)r[i].skipped,
                (unsigned long long)r[i].dirty_after,
                (unsigned long long)r[i].expected_downtime_ms,
                r[i].final ? "true" : "false");
    }
    fputc(']', out);
}

/* "zstd:3", or "none": a method as --compression auto reports it. */
static void method_name(char *buf, size_t len, int codec, int level)
{
    if (codec == ZM_CODEC_NONE) {
        snprintf(buf, len, "none");
    } else {
        snprintf(buf, len, "%s:%d", zm_codec_name(codec), level);
    }
}

/*
 * --compression auto: the methods' batches and costs, and the timeline of
 * decisions ("compression-auto" in the JSON; a line in the table).
 */
static void print_auto(FILE *out, zm_source *src, bool json)
{
    struct zm_auto_method_info m[16] = { { .sizeof_info = sizeof(m[0]) } };
    int nm = src ? zm_source_auto_methods(src, m, 16) : 0;
    char name[32];

    if (nm <= 0) {
        return;
    }
    nm = nm < 16 ? nm : 16;
    uint64_t total = 0;
    for (int i = 0; i < nm; i++) {
        total += m[i].batches;
    }
    if (!json) {
        fprintf(out, "  compression auto:");
        for (int i = 0; i < nm; i++) {
            method_name(name, sizeof(name), m[i].codec, m[i].level);
            if (m[i].batches) {
                fprintf(out, " %s %.0f%%", name,
                        100.0 * (double)m[i].batches / (double)total);
            }
        }
        fputc('\n', out);
        return;
    }
    fprintf(out, ", \"compression-auto\": {\"methods\": [");
    for (int i = 0; i < nm; i++) {
        method_name(name, sizeof(name), m[i].codec, m[i].level);
        fprintf(out,
                "%s{\"method\": \"%s\", \"batches\": %llu, "
                "\"raw-bytes\": %llu, \"cpu-ns-per-byte\": %.3f, "
                "\"wire-per-byte\": %.4f}",
                i ? ", " : "", name, (unsigned long long)m[i].batches,
                (unsigned long long)m[i].raw_bytes, m[i].cpu_ns_per_byte,
                m[i].wire_per_byte);
    }
    fprintf(out, "], \"timeline\": [");
    int np = zm_source_auto_timeline(src, NULL, 0);
    struct zm_auto_point *p = np > 0 ? calloc((size_t)np, sizeof(*p)) : NULL;
    if (p) {
        p[0].sizeof_point = sizeof(*p);
        np = zm_source_auto_timeline(src, p, (unsigned)np);
        for (int i = 0; i < np; i++) {
            method_name(name, sizeof(name), p[i].codec, p[i].level);
            fprintf(out,
                    "%s{\"time-ms\": %.0f, \"method\": \"%s\", "
                    "\"raw-mbps\": %.1f, \"wire-mbps\": %.1f, "
                    "\"link-mbps\": %.1f, \"cores\": %.2f}",
                    i ? ", " : "", p[i].time_ms, name, p[i].raw_mbps,
                    p[i].wire_mbps, p[i].link_mbps, p[i].cores);
        }
        free(p);
    }
    fputs("]}", out);
}

static void print_result(FILE *out, const char *side, const struct zm_stats *st,
                         const struct zm_round *rounds, unsigned nrounds,
                         zm_source *src, bool json, int ret, const char *err)
{
    const char *why = ret >= 0 ? "" : err ? err : zm_errmsg();

    if (json) {
        fprintf(out, "{\"side\": \"%s\", \"status\": \"%s\", \"error\": ", side,
                zm_status_name(st->status));
        zm_json_string(out, why);
        fprintf(
            out,
            ", \"total-time\": %llu, \"setup-time\": %llu, "
            "\"downtime\": %llu, \"expected-downtime\": %llu, "
            "\"iterations\": %u, \"max-iterations-reached\": %s, "
            "\"ram\": {\"transferred\": %llu, \"remaining\": %llu, "
            "\"total\": %llu, \"duplicate\": %llu, \"normal\": %llu, "
            "\"normal-bytes\": %llu, \"dirty-pages-rate\": %llu, "
            "\"dirty-sync-count\": %llu, \"skipped\": %llu, "
            "\"mbps\": %.3f, \"pages-per-second\": %llu}, "
            "\"compression-ratio\": %.4f, \"cpu-seconds\": %.3f, "
            "\"offload\": {\"offloaded\": %llu, \"fallbacks\": %llu, "
            "\"failures\": %llu}",
            (unsigned long long)st->total_time_ms,
            (unsigned long long)st->setup_time_ms,
            (unsigned long long)st->downtime_ms,
            (unsigned long long)st->expected_downtime_ms, st->iterations,
            st->max_iterations_reached ? "true" : "false",
            (unsigned long long)st->transferred,
            (unsigned long long)st->remaining, (unsigned long long)st->total,
            (unsigned long long)st->duplicate, (unsigned long long)st->normal,
            (unsigned long long)st->normal_bytes,
            (unsigned long long)st->dirty_pages_rate,
            (unsigned long long)st->dirty_sync_count,
            (unsigned long long)st->skipped, st->mbps,
            (unsigned long long)st->pages_per_second, st->compression_ratio,
            st->cpu_seconds, (unsigned long long)st->offloaded,
            (unsigned long long)st->offload_fallbacks,
            (unsigned long long)st->offload_failures);
        if (rounds) {
            print_rounds(out, rounds, nrounds);
        }
        print_auto(out, src, true);
        fputs("}\n", out);
        fflush(out);
        return;
    }
    char total[ZM_FORMAT_MAX], wire[ZM_FORMAT_MAX];
    zm_format_bytes(total, sizeof(total), st->total);
    zm_format_bytes(wire, sizeof(wire), st->transferred);
    fprintf(out, "%s: %s%s%s\n", side, zm_status_name(st->status),
            ret < 0 ? ": " : "", why);
    fprintf(out,
            "  RAM %s in %u rounds, %s on the wire (ratio %.2f), "
            "%llu zero pages",
            total, st->iterations, wire, st->compression_ratio,
            (unsigned long long)st->duplicate);
    if (st->skipped) {
        fprintf(out, ", %llu written again and left to a later round",
                (unsigned long long)st->skipped);
    }
    fputc('\n', out);
    fprintf(out,
            "  total %llu ms, downtime %llu ms%s, %.0f Mbit/s, "
            "%llu pages/s, CPU %.2f s\n",
            (unsigned long long)st->total_time_ms,
            (unsigned long long)st->downtime_ms,
            st->max_iterations_reached ? " (max-iterations reached)" : "",
            st->mbps, (unsigned long long)st->pages_per_second,
            st->cpu_seconds);
    if (st->offloaded || st->offload_fallbacks || st->offload_failures) {
        fprintf(out,
                "  offload: %llu batches offloaded, %llu compressed here "
                "instead, %llu failed and redone here\n",
                (unsigned long long)st->offloaded,
                (unsigned long long)st->offload_fallbacks,
                (unsigned long long)st->offload_failures);
    }
    print_auto(out, src, false);
    fflush(out);
}

void zm_print_result(FILE *out, const char *side, const struct zm_stats *st,
                     bool json, int ret, const char *err)
{
    print_result(out, side, st, NULL, 0, NULL, json, ret, err);
}

void zm_print_source_result(FILE *out, zm_source *src, bool json, int ret,
                            const char *err)
{
    static const struct zm_round none[1];
    struct zm_stats st = { .sizeof_stats = sizeof(st) };
    int count = json ? zm_source_rounds(src, NULL, 0) : 0;
    unsigned n = count > 0 ? (unsigned)count : 0;
    struct zm_round *rounds = n ? calloc(n, sizeof(*rounds)) : NULL;

    zm_source_stats(src, &st);
    if (rounds) {
        rounds[0].sizeof_round = sizeof(*rounds);
        zm_source_rounds(src, rounds, n); /* the migration is over: n stays */
    }
    print_result(out, "send", &st, rounds ? rounds : none, rounds ? n : 0, src,
                 json, ret, err);
    free(rounds);
}
