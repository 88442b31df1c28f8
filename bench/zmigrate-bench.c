/*
 * zmigrate-bench.c - the engine against the raw codec libraries
 *
 * `zmigrate-bench codecs` cuts its data into batches of 4 KiB pages and,
 * for each codec and level, runs over all batches in turn: the library's
 * own one-shot call, zm_encode() on the live path (snapshot copy first),
 * zm_encode() with ZM_ENCODE_STABLE, the library's decompression and
 * zm_decode().  The stages of one pass run back to back, in an order that
 * rotates from pass to pass, so that the noise of this shared machine hits
 * engine and library alike.  It prints figures and asserts nothing about
 * speed; the exit status only says whether everything round-tripped.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "zmigrate.h"
#include "common/cpu.h"
#include "common/hash.h"
#include "tools/datagen.h"
#include "tools/json.h"
#include "raw_codec.h"
#include "common/zero.h"

#ifndef ZM_SOURCE_DIR
#define ZM_SOURCE_DIR "."
#endif

#define PAGE 4096u
#define MAX_RUNS 64
#define MAX_ROWS 64
#define MICRO_MIN_RUNS 5
#define GEN_SEED 0x7a6d6967726174eull /* "zmigrate" */
#define ZERO_BUF_SIZE ((size_t)256 << 20)

#define EXIT_USAGE 2

enum stage {
    ST_RAW_COMP,
    ST_LIVE_COMP,
    ST_STABLE_COMP,
    ST_RAW_DEC,
    ST_ENG_DEC,
    ST_COUNT
};

/* The engine's figure paired with the library's, for the speed ratios. */
enum share { SH_LIVE, SH_STABLE, SH_DEC, SH_COUNT };

static const int share_stage[SH_COUNT][2] = {
    [SH_LIVE] = { ST_LIVE_COMP, ST_RAW_COMP },
    [SH_STABLE] = { ST_STABLE_COMP, ST_RAW_COMP },
    [SH_DEC] = { ST_ENG_DEC, ST_RAW_DEC },
};

struct options {
    const char *data;
    size_t size;
    const char *codecs;
    int runs;
    unsigned batch_pages;
    bool json;
    bool quick;
    bool no_estimate;
};

struct batch {
    size_t off; /* bytes into the data */
    unsigned pages;
};

struct dataset {
    unsigned char *data;
    size_t size; /* whole pages */
    size_t pages;
    size_t zero_pages;
    struct batch *batches;
    size_t nbatches;
    bool corpus;
    char path[PATH_MAX];
    unsigned files;
    size_t file_bytes;
};

struct row_spec {
    int codec;
    int level;
};

struct result {
    struct row_spec spec;
    double wall[ST_COUNT]; /* median seconds per pass */
    double cpu[ST_COUNT];
    double share[SH_COUNT]; /* median of per-pass engine/raw speed */
    uint64_t raw_bytes;
    uint64_t live_bytes;
    uint64_t stable_bytes;
    size_t raw_batches; /* batches the engine sent uncompressed */
    size_t zero_pages;  /* pages the engine sent as indices only */
    unsigned quiet;     /* stage passes that held the core >= 95% */
    unsigned timed;
};

/* The state of one row while its passes run. */
struct bench {
    const struct dataset *ds;
    const char *name;
    int level;
    const struct raw_codec *raw;
    void *raw_state;
    zm_encoder *enc;
    zm_decoder *dec;
    const struct zm_page_ref *refs; /* one per page of the data */
    unsigned char *raw_area;
    size_t *raw_off;
    size_t *raw_len;
    unsigned char *pkt_area[2]; /* 0: live path, 1: stable path */
    size_t pkt_area_size;
    size_t *pkt_off[2];
    size_t *pkt_len[2];
    unsigned char *dst;
    bool collect; /* warm-up: count raw batches and zero pages */
    size_t raw_batches;
    size_t zero_pages;
};

struct micro {
    char what[96];
    const char *impl;
    bool dispatched;
    double gbs;
    double gbcpu;
};

static const char *prog = "zmigrate-bench";

/* ---------------------------------------------------------------------- */
/* Small helpers                                                           */
/* ---------------------------------------------------------------------- */

static double clock_s(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double t[MAX_RUNS];

    memcpy(t, v, (size_t)n * sizeof(*t));
    qsort(t, (size_t)n, sizeof(*t), cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* Page-aligned, zero-filled and unpopulated until first written. */
static void *map_zeroed(size_t size)
{
    void *p = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        fprintf(stderr, "%s: cannot map %zu bytes: %s\n", prog, size,
                strerror(errno));
        return NULL;
    }
    return p;
}

static void unmap(void *p, size_t size)
{
    if (p) {
        munmap(p, size ? size : 1);
    }
}

static double mb(uint64_t bytes)
{
    return (double)bytes / 1e6;
}

static double ratio_of(uint64_t in, uint64_t out)
{
    return out ? (double)in / (double)out : 0.0;
}

/* Prints s as a JSON string literal. */
/* ---------------------------------------------------------------------- */
/* Usage                                                                   */
/* ---------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "NAME\n"
        "    zmigrate-bench - libzmigrate's engine against the raw codec "
        "libraries\n"
        "\n"
        "SYNOPSIS\n"
        "    zmigrate-bench codecs [--data corpus[:DIR] | --data generated]\n"
        "                          [--size SIZE] [--codec NAME[:LEVEL],...]\n"
        "                          [--runs N] [--batch-pages N] "
        "[--no-estimate]\n"
        "                          [--quick] [--json]\n"
        "    zmigrate-bench --help\n"
        "\n"
        "DESCRIPTION\n"
        "    Cuts the data into 4 KiB pages and batches of 128 pages (512 KiB, "
        "the\n"
        "    batch QEMU multifd sends) and, for each codec and level, makes "
        "timed\n"
        "    passes over all batches with the same buffers:\n"
        "\n"
        "      raw compress     the library's one-shot call on the batch, with "
        "a\n"
        "                       context made once (ZSTD_compressCCtx,\n"
        "                       LZ4_compress_fast_extState, deflate raw with\n"
        "                       deflateReset, isal_deflate_stateless); memcpy "
        "for\n"
        "                       \"none\";\n"
        "      engine live      zm_encode() of the batch's page refs, flags 0: "
        "the\n"
        "                       pages are copied to a snapshot first, as while "
        "the\n"
        "                       guest runs;\n"
        "      engine stable    zm_encode() with ZM_ENCODE_STABLE (no "
        "snapshot);\n"
        "      raw decompress   the library's one-shot decompression;\n"
        "      engine decode    zm_decode() of the live packets into a "
        "destination\n"
        "                       region, checksum verified.\n"
        "\n"
        "    The stages of a pass run back to back and their order rotates "
        "from\n"
        "    pass to pass.  Each stage reports MB/s of wall-clock time and "
        "MB/cpu-s\n"
        "    of the thread's CPU time (MB = 1e6 bytes of uncompressed input), "
        "the\n"
        "    median of the timed passes after one untimed warm-up that also "
        "checks\n"
        "    every round trip.  Engine/raw speed ratios are the median of the\n"
        "    per-pass ratios of CPU time: CPU time leaves out the time another "
        "job\n"
        "    held the core, so it is the robust figure on a shared machine.\n"
        "    Compression ratio = input bytes / output bytes; the engine's "
        "output\n"
        "    is whole packets (header, page table, payload), zero pages travel "
        "as\n"
        "    indices only, and batches that do not compress travel raw.\n"
        "\n"
        "    Then it times zero-page detection (zm_is_zero, every "
        "implementation\n"
        "    this CPU supports, one call per all-zero 4 KiB page over 256 MiB: "
        "a\n"
        "    full scan, the worst case), xxh3 (zm_hash64) per page and per "
        "batch,\n"
        "    and the batch copy of the live path, and prints the share of "
        "zero\n"
        "    pages and the effective migration rate with 2 compressing and 2\n"
        "    decompressing cores on 1, 10 and 25 Gbit/s links:\n"
        "    min(2 x compress, 2 x decompress, link x ratio), in MB/s of "
        "guest\n"
        "    memory.\n"
        "\n"
        "    The output is Markdown: a header naming the machine, the "
        "libraries,\n"
        "    the implementations and the data, then the tables.\n"
        "\n"
        "OPTIONS\n"
        "    -d, --data corpus[:DIR]\n"
        "        The Silesia corpus files found in DIR (dickens, mozilla, mr, "
        "nci,\n"
        "        ooffice, osdb, reymont, samba, sao, webster, x-ray, xml).  "
        "Each\n"
        "        file is cut on its own, as codec-limits does: batches never\n"
        "        straddle files, a file's last batch may be short and its "
        "last\n"
        "        page is padded with zeros.  Without DIR: ../shared/corpus "
        "from the\n"
        "        current directory, then from the source tree.\n"
        "    -d, --data generated\n"
        "        Guest-like memory from zm_datagen_fill() with a fixed seed.\n"
        "        Default: the corpus when it is found, else generated data.\n"
        "    -s, --size SIZE\n"
        "        Bytes of generated data, with an optional K, M or G suffix "
        "(KiB,\n"
        "        MiB, GiB); rounded up to whole pages.  Default 64M.\n"
        "    -c, --codec NAME[:LEVEL],...\n"
        "        The rows to run.  NAME is none, lz4, zstd, zlib or deflate; "
        "LEVEL\n"
        "        defaults to the codec's default.  Default: none, lz4:1, "
        "zstd:1,\n"
        "        zstd:3, zlib:1, zlib:6, deflate:0, deflate:1, deflate:3, each "
        "if\n"
        "        this build has its library.\n"
        "    -r, --runs N\n"
        "        Timed passes per stage, 1..%d; the median is reported.  "
        "Default\n"
        "        5.  The short memory tests make at least %d.\n"
        "    -b, --batch-pages N\n"
        "        Pages per batch, 1..%u.  Default 128.\n"
        "    -E, --no-estimate\n"
        "        Create the encoders with ZM_ENCODER_NO_ESTIMATE: always run "
        "the\n"
        "        codec, even on batches that look incompressible.\n"
        "    -q, --quick\n"
        "        A short run for demos: 32 MiB of generated data, rows none,\n"
        "        lz4:1, zstd:1, deflate:1, zlib:1, one timed pass.  Options "
        "given\n"
        "        explicitly take precedence.\n"
        "    -j, --json\n"
        "        One JSON object per line instead of Markdown: \"type\" is "
        "\"meta\",\n"
        "        \"codec\", \"micro\" or \"zero_share\".\n"
        "    -h, --help\n"
        "        This text.\n"
        "\n"
        "EXAMPLES\n"
        "    zmigrate-bench codecs --data corpus:../shared/corpus\n"
        "    zmigrate-bench codecs --data generated --size 256M --runs 9\n"
        "    zmigrate-bench codecs --codec lz4,zstd:3,deflate:1 --json\n"
        "    zmigrate-bench codecs --quick\n"
        "\n"
        "EXIT STATUS\n"
        "    0   the figures were printed;\n"
        "    1   failure: data unreadable, out of memory, or a round trip or "
        "a\n"
        "        codec call failed;\n"
        "    2   usage error: unknown command or option, bad value, unknown "
        "or\n"
        "        unbuilt codec, level out of range.\n",
        MAX_RUNS, MICRO_MIN_RUNS, ZM_MAX_BATCH_PAGES);
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '%s --help'.\n", prog);
    return EXIT_USAGE;
}

/* ---------------------------------------------------------------------- */
/* Option values                                                           */
/* ---------------------------------------------------------------------- */

static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;

    errno = 0;
    if (*s == '-') {
        return false;
    }
    v = strtoull(s, &end, 10);
    if (errno || end == s) {
        return false;
    }
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    case '\0':
        break;
    default:
        return false;
    }
    if (shift) {
        end++;
        if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0) {
            end += strlen(end);
        }
    }
    if (*end != '\0' || v == 0 || v > (64ull << 30) >> shift) {
        return false;
    }
    *out = (size_t)(v << shift);
    return true;
}

/* Checks one row the way a caller of the library would meet the error. */
static int check_row(const struct row_spec *r, unsigned batch_pages)
{
    struct zm_encoder_options o = {
        .sizeof_options = sizeof(o),
        .codec = r->codec,
        .level = r->level,
        .max_pages = batch_pages,
    };
    zm_encoder *enc = NULL;
    int ret = zm_encoder_new(&o, &enc);

    zm_encoder_free(enc);
    return ret;
}

static int parse_codecs(const char *list, unsigned batch_pages,
                        struct row_spec *rows, unsigned *nrows)
{
    char *copy = strdup(list);
    char *save = NULL;
    int ret = 0;

    if (!copy) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    *nrows = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        struct row_spec r;
        int def = 0;
        long level;

        if (colon) {
            *colon = '\0';
        }
        r.codec = zm_codec_by_name(tok);
        if (r.codec < 0) {
            ret = usage_error("--codec: %s", zm_errmsg());
            break;
        }
        zm_codec_levels(r.codec, NULL, NULL, &def);
        r.level = def;
        if (colon) {
            if (!parse_long(colon + 1, INT_MIN + 1, INT_MAX, &level)) {
                ret = usage_error("--codec: bad level '%s'", colon + 1);
                break;
            }
            r.level = (int)level;
        }
        if (check_row(&r, batch_pages) < 0) {
            ret = usage_error("--codec: %s", zm_errmsg());
            break;
        }
        if (*nrows == MAX_ROWS) {
            ret = usage_error("--codec: more than %s rows", "64");
            break;
        }
        rows[(*nrows)++] = r;
    }
    if (ret == 0 && *nrows == 0) {
        ret = usage_error("--codec: no codec in '%s'", list);
    }
    free(copy);
    return ret;
}

static void default_codecs(bool quick, struct row_spec *rows, unsigned *nrows)
{
    static const struct row_spec full[] = {
        { ZM_CODEC_NONE, 0 },    { ZM_CODEC_LZ4, 1 },
        { ZM_CODEC_ZSTD, 1 },    { ZM_CODEC_ZSTD, 3 },
        { ZM_CODEC_ZLIB, 1 },    { ZM_CODEC_ZLIB, 6 },
        { ZM_CODEC_DEFLATE, 0 }, { ZM_CODEC_DEFLATE, 1 },
        { ZM_CODEC_DEFLATE, 3 },
    };
    static const struct row_spec short_list[] = {
        { ZM_CODEC_NONE, 0 },    { ZM_CODEC_LZ4, 1 },  { ZM_CODEC_ZSTD, 1 },
        { ZM_CODEC_DEFLATE, 1 }, { ZM_CODEC_ZLIB, 1 },
    };
    const struct row_spec *list = quick ? short_list : full;
    size_t n = quick ? sizeof(short_list) / sizeof(short_list[0])
                     : sizeof(full) / sizeof(full[0]);

    *nrows = 0;
    for (size_t i = 0; i < n; i++) {
        if (zm_codec_available(list[i].codec)) {
            rows[(*nrows)++] = list[i];
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Data                                                                    */
/* ---------------------------------------------------------------------- */

static const char *const silesia[] = {
    "dickens", "mozilla", "mr",  "nci",     "ooffice", "osdb",
    "reymont", "samba",   "sao", "webster", "x-ray",   "xml",
};
#define SILESIA_COUNT (sizeof(silesia) / sizeof(silesia[0]))

static bool file_size(const char *dir, const char *name, size_t *size)
{
    char path[PATH_MAX];
    struct stat st;

    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path) ||
        stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        return false;
    }
    *size = (size_t)st.st_size;
    return true;
}

static bool corpus_present(const char *dir)
{
    size_t size;

    for (size_t i = 0; i < SILESIA_COUNT; i++) {
        if (file_size(dir, silesia[i], &size) && size > 0) {
            return true;
        }
    }
    return false;
}

/* Where the corpus is when no directory is named, or NULL. */
static const char *default_corpus(void)
{
    static const char *const dirs[] = {
        "../shared/corpus",
        ZM_SOURCE_DIR "/../shared/corpus",
    };

    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (corpus_present(dirs[i])) {
            return dirs[i];
        }
    }
    return NULL;
}

static int add_batches(struct dataset *ds, size_t first_page, size_t pages,
                       unsigned batch_pages)
{
    for (size_t p = 0; p < pages; p += batch_pages) {
        size_t n = pages - p < batch_pages ? pages - p : batch_pages;

        ds->batches[ds->nbatches++] = (struct batch){
            .off = (first_page + p) * PAGE,
            .pages = (unsigned)n,
        };
    }
    return 0;
}

static int load_corpus(struct dataset *ds, const char *dir,
                       unsigned batch_pages)
{
    size_t sizes[SILESIA_COUNT] = { 0 };
    bool have[SILESIA_COUNT] = { false };
    size_t pages = 0;
    size_t nbatches = 0;

    for (size_t i = 0; i < SILESIA_COUNT; i++) {
        have[i] = file_size(dir, silesia[i], &sizes[i]) && sizes[i] > 0;
        if (have[i]) {
            size_t fp = (sizes[i] + PAGE - 1) / PAGE;

            pages += fp;
            nbatches += (fp + batch_pages - 1) / batch_pages;
        }
    }
    if (pages == 0) {
        fprintf(stderr,
                "%s: no Silesia corpus file (dickens, mr, ...) in "
                "%s\n",
                prog, dir);
        return 1;
    }
    snprintf(ds->path, sizeof(ds->path), "%s", dir);
    ds->corpus = true;
    ds->size = pages * PAGE;
    ds->pages = pages;
    ds->data = map_zeroed(ds->size);
    ds->batches = calloc(nbatches, sizeof(*ds->batches));
    if (!ds->data || !ds->batches) {
        fprintf(stderr, "%s: out of memory for the corpus\n", prog);
        return 1;
    }

    size_t page = 0;

    for (size_t i = 0; i < SILESIA_COUNT; i++) {
        char path[PATH_MAX];
        FILE *f;

        if (!have[i]) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, silesia[i]);
        f = fopen(path, "rb");
        if (!f || fread(ds->data + page * PAGE, 1, sizes[i], f) != sizes[i]) {
            fprintf(stderr, "%s: cannot read %s: %s\n", prog, path,
                    f ? "short read" : strerror(errno));
            if (f) {
                fclose(f);
            }
            return 1;
        }
        fclose(f);
        size_t fp = (sizes[i] + PAGE - 1) / PAGE;

        add_batches(ds, page, fp, batch_pages);
        page += fp;
        ds->files++;
        ds->file_bytes += sizes[i];
    }
    return 0;
}

static int make_generated(struct dataset *ds, size_t size, unsigned batch_pages)
{
    size_t pages = (size + PAGE - 1) / PAGE;

    ds->corpus = false;
    ds->size = pages * PAGE;
    ds->pages = pages;
    ds->data = map_zeroed(ds->size);
    ds->batches =
        calloc((pages + batch_pages - 1) / batch_pages, sizeof(*ds->batches));
    if (!ds->data || !ds->batches) {
        fprintf(stderr, "%s: out of memory for %zu bytes of data\n", prog,
                ds->size);
        return 1;
    }
    zm_datagen_fill(ds->data, ds->size, 0, GEN_SEED);
    add_batches(ds, 0, pages, batch_pages);
    return 0;
}

static void count_zero_pages(struct dataset *ds)
{
    ds->zero_pages = 0;
    for (size_t p = 0; p < ds->pages; p++) {
        ds->zero_pages += zm_is_zero(ds->data + p * PAGE, PAGE);
    }
}

static void free_dataset(struct dataset *ds)
{
    unmap(ds->data, ds->size);
    free(ds->batches);
}

/* ---------------------------------------------------------------------- */
/* One pass of one stage over all batches                                  */
/* ---------------------------------------------------------------------- */

static int raw_compress_pass(struct bench *b)
{
    const struct dataset *ds = b->ds;
    size_t pos = 0;

    for (size_t i = 0; i < ds->nbatches; i++) {
        size_t len = (size_t)ds->batches[i].pages * PAGE;
        size_t n =
            b->raw->compress(b->raw_state, ds->data + ds->batches[i].off, len,
                             b->raw_area + pos, raw_codec_bound(len));

        if (n == 0) {
            fprintf(stderr,
                    "%s: %s %d: raw compression of batch %zu "
                    "failed\n",
                    prog, b->name, b->level, i);
            return -1;
        }
        b->raw_off[i] = pos;
        b->raw_len[i] = n;
        pos += n;
    }
    return 0;
}

static int encode_pass(struct bench *b, int path, unsigned flags)
{
    const struct dataset *ds = b->ds;
    unsigned char *area = b->pkt_area[path];
    struct zm_packet_info info = { .sizeof_info = sizeof(info) };
    size_t pos = 0;

    for (size_t i = 0; i < ds->nbatches; i++) {
        const struct batch *bt = &ds->batches[i];
        ssize_t n = zm_encode(b->enc, 0, b->refs + bt->off / PAGE, bt->pages,
                              flags, area + pos, b->pkt_area_size - pos,
                              b->collect ? &info : NULL);

        if (n < 0) {
            fprintf(stderr, "%s: %s %d: zm_encode of batch %zu: %s\n", prog,
                    b->name, b->level, i, zm_errmsg());
            return -1;
        }
        if (b->collect) {
            b->raw_batches += info.raw && info.data_size > 0;
            b->zero_pages += info.zero_pages;
        }
        b->pkt_off[path][i] = pos;
        b->pkt_len[path][i] = (size_t)n;
        pos += (size_t)n;
    }
    return 0;
}

static int raw_decompress_pass(struct bench *b)
{
    const struct dataset *ds = b->ds;

    for (size_t i = 0; i < ds->nbatches; i++) {
        size_t len = (size_t)ds->batches[i].pages * PAGE;

        if (b->raw->decompress(b->raw_state, b->raw_area + b->raw_off[i],
                               b->raw_len[i], b->dst + ds->batches[i].off,
                               len) < 0) {
            fprintf(stderr,
                    "%s: %s %d: raw decompression of batch %zu "
                    "failed\n",
                    prog, b->name, b->level, i);
            return -1;
        }
    }
    return 0;
}

static int decode_pass(struct bench *b, int path)
{
    const struct dataset *ds = b->ds;

    for (size_t i = 0; i < ds->nbatches; i++) {
        if (zm_decode(b->dec, b->pkt_area[path] + b->pkt_off[path][i],
                      b->pkt_len[path][i], NULL) < 0) {
            fprintf(stderr, "%s: %s %d: zm_decode of batch %zu: %s\n", prog,
                    b->name, b->level, i, zm_errmsg());
            return -1;
        }
    }
    return 0;
}

static int run_stage(struct bench *b, enum stage st)
{
    switch (st) {
    case ST_RAW_COMP:
        return raw_compress_pass(b);
    case ST_LIVE_COMP:
        return encode_pass(b, 0, 0);
    case ST_STABLE_COMP:
        return encode_pass(b, 1, ZM_ENCODE_STABLE);
    case ST_RAW_DEC:
        return raw_decompress_pass(b);
    case ST_ENG_DEC:
        return decode_pass(b, 0);
    default:
        return -1;
    }
}

static uint64_t sum(const size_t *v, size_t n)
{
    uint64_t s = 0;

    for (size_t i = 0; i < n; i++) {
        s += v[i];
    }
    return s;
}

/* The warm-up pass: every stage once, every round trip checked. */
static int warm_up(struct bench *b)
{
    const struct dataset *ds = b->ds;
    int ret = 0;

    b->collect = true;
    ret = run_stage(b, ST_RAW_COMP) || run_stage(b, ST_LIVE_COMP);
    b->collect = false;
    if (ret || run_stage(b, ST_STABLE_COMP)) {
        return -1;
    }
    /* Poison the destination so that a page left unwritten shows. */
    memset(b->dst, 0x5a, ds->size);
    if (raw_decompress_pass(b) < 0) {
        return -1;
    }
    if (memcmp(b->dst, ds->data, ds->size) != 0) {
        fprintf(stderr, "%s: %s %d: raw round trip differs\n", prog, b->name,
                b->level);
        return -1;
    }
    for (int path = 1; path >= 0; path--) {
        memset(b->dst, 0x5a, ds->size);
        if (decode_pass(b, path) < 0) {
            return -1;
        }
        if (memcmp(b->dst, ds->data, ds->size) != 0) {
            fprintf(stderr,
                    "%s: %s %d: engine round trip (%s path) "
                    "differs\n",
                    prog, b->name, b->level, path ? "stable" : "live");
            return -1;
        }
    }
    return 0;
}

static int bench_row(struct bench *b, const struct row_spec *spec,
                     const struct options *opt, struct result *res)
{
    struct zm_encoder_options eo = {
        .sizeof_options = sizeof(eo),
        .codec = spec->codec,
        .level = spec->level,
        .max_pages = opt->batch_pages,
        .flags = opt->no_estimate ? ZM_ENCODER_NO_ESTIMATE : 0,
    };
    struct zm_region_map region = { b->dst, b->ds->size };
    struct zm_decoder_options dopt = {
        .sizeof_options = sizeof(dopt),
        .max_pages = opt->batch_pages,
        .regions = &region,
        .region_count = 1,
    };
    double wall[ST_COUNT][MAX_RUNS];
    double cpu[ST_COUNT][MAX_RUNS];
    double share[SH_COUNT][MAX_RUNS];
    int ret = -1;

    memset(res, 0, sizeof(*res));
    res->spec = *spec;
    b->name = zm_codec_name(spec->codec);
    b->level = spec->level;
    b->raw = raw_codec_get(spec->codec);
    b->raw_state = b->raw ? b->raw->init(spec->level) : NULL;
    b->raw_batches = 0;
    b->zero_pages = 0;
    if (!b->raw_state) {
        fprintf(stderr, "%s: %s %d: no raw baseline (out of memory?)\n", prog,
                b->name, b->level);
        return -1;
    }
    if (zm_encoder_new(&eo, &b->enc) < 0 ||
        zm_decoder_new(&dopt, &b->dec) < 0) {
        fprintf(stderr, "%s: %s %d: %s\n", prog, b->name, b->level,
                zm_errmsg());
        goto out;
    }
    if (warm_up(b) < 0) {
        goto out;
    }
    for (int p = 0; p < opt->runs; p++) {
        /* Rotate the order so that no stage always runs first or last. */
        for (int k = 0; k < ST_COUNT; k++) {
            int st = k < 3 ? (k + p) % 3 : 3 + (k - 3 + p) % 2;
            double w0 = clock_s(CLOCK_MONOTONIC);
            double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);

            if (run_stage(b, (enum stage)st) < 0) {
                goto out;
            }
            /* A floor keeps tiny runs from dividing by zero. */
            cpu[st][p] = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0 + 1e-9;
            wall[st][p] = clock_s(CLOCK_MONOTONIC) - w0 + 1e-9;
            res->quiet += cpu[st][p] >= 0.95 * wall[st][p];
            res->timed++;
        }
        for (int s = 0; s < SH_COUNT; s++) {
            /* Speed ratio = time ratio, inverted. */
            share[s][p] = cpu[share_stage[s][1]][p] / cpu[share_stage[s][0]][p];
        }
    }
    for (int st = 0; st < ST_COUNT; st++) {
        res->wall[st] = median(wall[st], opt->runs);
        res->cpu[st] = median(cpu[st], opt->runs);
    }
    for (int s = 0; s < SH_COUNT; s++) {
        res->share[s] = median(share[s], opt->runs);
    }
    res->raw_bytes = sum(b->raw_len, b->ds->nbatches);
    res->live_bytes = sum(b->pkt_len[0], b->ds->nbatches);
    res->stable_bytes = sum(b->pkt_len[1], b->ds->nbatches);
    res->raw_batches = b->raw_batches;
    res->zero_pages = b->zero_pages;
    ret = 0;
out:
    zm_encoder_free(b->enc);
    zm_decoder_free(b->dec);
    b->enc = NULL;
    b->dec = NULL;
    b->raw->fini(b->raw_state);
    b->raw_state = NULL;
    return ret;
}

/* ---------------------------------------------------------------------- */
/* Memory tests: zero check, xxh3, the snapshot copy                       */
/* ---------------------------------------------------------------------- */

enum micro_kind { MK_ZERO, MK_HASH, MK_COPY };

struct micro_job {
    enum micro_kind kind;
    bool (*is_zero)(const void *p, size_t len);
    uint64_t (*hash64)(const void *p, size_t len, uint64_t seed);
    const unsigned char *buf;
    size_t len;
    size_t step;
    unsigned char *scratch; /* step bytes, for MK_COPY */
};

static volatile uint64_t micro_sink;

static uint64_t micro_once(const struct micro_job *j)
{
    uint64_t acc = 0;

    for (size_t o = 0; o < j->len; o += j->step) {
        size_t n = j->len - o < j->step ? j->len - o : j->step;

        switch (j->kind) {
        case MK_ZERO:
            acc += j->is_zero(j->buf + o, n);
            break;
        case MK_HASH:
            acc += j->hash64(j->buf + o, n, 0);
            break;
        case MK_COPY:
            memcpy(j->scratch, j->buf + o, n);
            /* Keep the copy: the compiler may not drop it. */
            __asm__ volatile("" : : "r"(j->scratch) : "memory");
            acc += j->scratch[0];
            break;
        }
    }
    return acc;
}

static void micro_time(const struct micro_job *j, int runs, struct micro *m)
{
    double wall[MAX_RUNS];
    double cpu[MAX_RUNS];

    micro_sink += micro_once(j); /* warm-up */
    for (int p = 0; p < runs; p++) {
        double w0 = clock_s(CLOCK_MONOTONIC);
        double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);

        micro_sink += micro_once(j);
        cpu[p] = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0 + 1e-9;
        wall[p] = clock_s(CLOCK_MONOTONIC) - w0 + 1e-9;
    }
    m->gbs = (double)j->len / median(wall, runs) / 1e9;
    m->gbcpu = (double)j->len / median(cpu, runs) / 1e9;
}

static int bench_micro(const struct dataset *ds, const struct options *opt,
                       struct micro *out, unsigned *count)
{
    int runs = opt->runs > MICRO_MIN_RUNS ? opt->runs : MICRO_MIN_RUNS;
    size_t batch = (size_t)opt->batch_pages * PAGE;
    unsigned char *zeros = map_zeroed(ZERO_BUF_SIZE);
    unsigned char *scratch = malloc(batch);
    const char *zname = zm_zero_impl_name();
    const char *hname = zm_hash_impl_name();
    unsigned n = 0;

    if (!zeros || !scratch) {
        unmap(zeros, ZERO_BUF_SIZE);
        free(scratch);
        fprintf(stderr, "%s: out of memory for the memory tests\n", prog);
        return 1;
    }
    /* Write the zeros: the kernel's shared zero page would flatter us. */
    memset(zeros, 0, ZERO_BUF_SIZE);

    struct micro_job j = {
        .kind = MK_ZERO,
        .is_zero = zm_is_zero,
        .buf = zeros,
        .len = ZERO_BUF_SIZE,
        .step = PAGE,
    };

    snprintf(out[n].what, sizeof(out[n].what),
             "zm_is_zero, all-zero 4 KiB pages (full scan), 256 MiB");
    out[n].impl = zname;
    out[n].dispatched = true;
    micro_time(&j, runs, &out[n++]);
    for (unsigned i = 0; i < zm_zero_impl_count; i++) {
        if (!zm_cpu_has(zm_zero_impls[i].cpu_features)) {
            continue;
        }
        j.is_zero = zm_zero_impls[i].is_zero;
        snprintf(out[n].what, sizeof(out[n].what),
                 "is_zero, all-zero 4 KiB pages (full scan), 256 MiB");
        out[n].impl = zm_zero_impls[i].name;
        out[n].dispatched = false;
        micro_time(&j, runs, &out[n++]);
    }

    j = (struct micro_job){
        .kind = MK_ZERO,
        .is_zero = zm_is_zero,
        .buf = ds->data,
        .len = ds->size,
        .step = PAGE,
    };
    snprintf(out[n].what, sizeof(out[n].what),
             "zm_is_zero, data pages (early exit)");
    out[n].impl = zname;
    out[n].dispatched = true;
    micro_time(&j, runs, &out[n++]);

    j = (struct micro_job){
        .kind = MK_HASH,
        .hash64 = zm_hash64,
        .buf = ds->data,
        .len = ds->size,
        .step = PAGE,
    };
    snprintf(out[n].what, sizeof(out[n].what),
             "zm_hash64 (xxh3), per 4 KiB page of data");
    out[n].impl = hname;
    out[n].dispatched = true;
    micro_time(&j, runs, &out[n++]);
    for (unsigned i = 0; i < zm_hash_impl_count; i++) {
        if (!zm_cpu_has(zm_hash_impls[i].cpu_features)) {
            continue;
        }
        j.hash64 = zm_hash_impls[i].hash64;
        snprintf(out[n].what, sizeof(out[n].what),
                 "xxh3 hash64, per 4 KiB page of data");
        out[n].impl = zm_hash_impls[i].name;
        out[n].dispatched = false;
        micro_time(&j, runs, &out[n++]);
    }
    j.hash64 = zm_hash64;
    j.step = batch;
    snprintf(out[n].what, sizeof(out[n].what),
             "zm_hash64 (xxh3), per %zu KiB batch of data", batch >> 10);
    out[n].impl = hname;
    out[n].dispatched = true;
    micro_time(&j, runs, &out[n++]);

    j = (struct micro_job){
        .kind = MK_COPY,
        .buf = ds->data,
        .len = ds->size,
        .step = batch,
        .scratch = scratch,
    };
    snprintf(out[n].what, sizeof(out[n].what),
             "memcpy %zu KiB batch to a reused snapshot (live path)",
             batch >> 10);
    out[n].impl = "libc";
    out[n].dispatched = true;
    micro_time(&j, runs, &out[n++]);

    *count = n;
    unmap(zeros, ZERO_BUF_SIZE);
    free(scratch);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Output                                                                  */
/* ---------------------------------------------------------------------- */

static const struct {
    const char *name;
    double gbit;
} links[] = {
    { "1 Gbit/s", 1.0 },
    { "10 Gbit/s", 10.0 },
    { "25 Gbit/s", 25.0 },
};
#define LINK_COUNT (sizeof(links) / sizeof(links[0]))
#define CORES 2

/* MB/s of guest memory over a link; *bound: c, d (CPU) or n (network). */
static double effective(const struct result *r, uint64_t bytes, double gbit,
                        char *bound)
{
    double send = CORES * mb(bytes) / r->cpu[ST_LIVE_COMP];
    double recv = CORES * mb(bytes) / r->cpu[ST_ENG_DEC];
    double net = gbit * 1e3 / 8 * ratio_of(bytes, r->live_bytes);
    double e = net;

    *bound = 'n';
    if (send < e) {
        e = send;
        *bound = 'c';
    }
    if (recv < e) {
        e = recv;
        *bound = 'd';
    }
    return e;
}

static void cpu_model(char *buf, size_t size)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];

    snprintf(buf, size, "unknown CPU");
    if (!f) {
        return;
    }
    while (fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');

        if (strncmp(line, "model name", 10) == 0 && colon) {
            colon++;
            colon += strspn(colon, " \t");
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(buf, size, "%s", colon);
            break;
        }
    }
    fclose(f);
}

static void describe_data(const struct dataset *ds, char *buf, size_t size)
{
    if (ds->corpus) {
        snprintf(buf, size,
                 "corpus %s: %u Silesia files, %zu bytes, cut "
                 "per file into %zu pages of 4 KiB (last page of each file "
                 "zero-padded)",
                 ds->path, ds->files, ds->file_bytes, ds->pages);
    } else {
        snprintf(buf, size,
                 "generated: zm_datagen_fill(seed 0x%llx), "
                 "%zu bytes, %zu pages of 4 KiB",
                 (unsigned long long)GEN_SEED, ds->size, ds->pages);
    }
}

static void print_header(const struct dataset *ds, const struct options *o,
                         unsigned nrows)
{
    char model[256];
    char versions[512];
    char data[PATH_MAX + 256];
    struct utsname un;
    double load[3] = { 0, 0, 0 };
    unsigned long long full = 0;

    cpu_model(model, sizeof(model));
    raw_codec_versions(versions, sizeof(versions));
    describe_data(ds, data, sizeof(data));
    if (uname(&un) != 0) {
        snprintf(un.release, sizeof(un.release), "?");
    }
    if (getloadavg(load, 3) < 0) {
        load[0] = -1;
    }
    for (size_t i = 0; i < ds->nbatches; i++) {
        full += ds->batches[i].pages == o->batch_pages;
    }
    if (o->json) {
        printf("{\"type\":\"meta\",\"cpu\":");
        zm_json_string(stdout, model);
        printf(",\"cpus\":%ld,\"kernel\":", sysconf(_SC_NPROCESSORS_ONLN));
        zm_json_string(stdout, un.release);
        printf(",\"versions\":");
        zm_json_string(stdout, versions);
        printf(",\"zero_impl\":\"%s\",\"hash_impl\":\"%s\",\"data\":\"%s\","
               "\"path\":",
               zm_zero_impl_name(), zm_hash_impl_name(),
               ds->corpus ? "corpus" : "generated");
        zm_json_string(stdout, ds->corpus ? ds->path : "");
        printf(",\"bytes\":%zu,\"pages\":%zu,\"zero_pages\":%zu,"
               "\"batches\":%zu,\"batch_pages\":%u,\"runs\":%d,"
               "\"rows\":%u,\"estimate\":%s,\"load1\":%.2f}\n",
               ds->size, ds->pages, ds->zero_pages, ds->nbatches,
               o->batch_pages, o->runs, nrows,
               o->no_estimate ? "false" : "true", load[0]);
        return;
    }
    printf("# zmigrate-bench codecs\n\n");
    printf("- machine: %s, %ld online CPUs, Linux %s; load average %.2f at "
           "start\n",
           model, sysconf(_SC_NPROCESSORS_ONLN), un.release, load[0]);
    printf("- libraries: %s\n", versions);
    printf("- implementations: zm_is_zero %s, zm_hash64 (xxh3) %s\n",
           zm_zero_impl_name(), zm_hash_impl_name());
    printf("- data: %s\n", data);
    printf("- batches: %zu of up to %u pages (%zu full); %s\n", ds->nbatches,
           o->batch_pages, (size_t)full,
           o->no_estimate ? "estimate off (ZM_ENCODER_NO_ESTIMATE)"
                          : "compressibility estimate on (default)");
    printf("- zero pages: %zu of %zu (%.3f%%)\n", ds->zero_pages, ds->pages,
           ds->pages ? 100.0 * (double)ds->zero_pages / (double)ds->pages
                     : 0.0);
    printf("- timing: %d timed pass%s per stage after 1 warm-up, median; "
           "MB = 1e6 bytes of uncompressed input; one thread\n\n",
           o->runs, o->runs == 1 ? "" : "es");
    fflush(stdout);
}

static void print_row_json(const struct result *r, uint64_t bytes)
{
    static const char *const keys[ST_COUNT] = {
        "raw_comp", "live_comp", "stable_comp", "raw_dec", "eng_dec",
    };

    printf("{\"type\":\"codec\",\"codec\":\"%s\",\"level\":%d,"
           "\"bytes\":%" PRIu64,
           zm_codec_name(r->spec.codec), r->spec.level, bytes);
    for (int st = 0; st < ST_COUNT; st++) {
        printf(",\"%s_mbs\":%.1f,\"%s_mbcpus\":%.1f", keys[st],
               mb(bytes) / r->wall[st], keys[st], mb(bytes) / r->cpu[st]);
    }
    printf(",\"live_vs_raw\":%.4f,\"stable_vs_raw\":%.4f,"
           "\"dec_vs_raw\":%.4f,\"raw_ratio\":%.4f,\"live_ratio\":%.4f,"
           "\"stable_ratio\":%.4f,\"raw_batches\":%zu,\"zero_pages\":%zu,"
           "\"quiet_passes\":%u,\"timed_passes\":%u",
           r->share[SH_LIVE], r->share[SH_STABLE], r->share[SH_DEC],
           ratio_of(bytes, r->raw_bytes), ratio_of(bytes, r->live_bytes),
           ratio_of(bytes, r->stable_bytes), r->raw_batches, r->zero_pages,
           r->quiet, r->timed);
    for (size_t l = 0; l < LINK_COUNT; l++) {
        char bound;
        double e = effective(r, bytes, links[l].gbit, &bound);

        printf(",\"eff_%gg_mbs\":%.1f,\"eff_%gg_bound\":\"%c\"", links[l].gbit,
               e, links[l].gbit, bound);
    }
    printf("}\n");
    fflush(stdout);
}

static void print_tables(const struct dataset *ds, const struct result *res,
                         unsigned nrows, size_t batches)
{
    uint64_t bytes = ds->size;

    printf("## Compression, engine vs raw library\n\n");
    printf("MB/cpu-s from the thread's CPU time (the robust figure here), "
           "MB/s from wall-clock time. live = zm_encode() with flags 0 "
           "(snapshot copy first), stable = ZM_ENCODE_STABLE. Ratios are "
           "input / output; the engine's output is whole packets.\n\n");
    printf("| codec | lvl | raw MB/cpu-s | live MB/cpu-s | stable "
           "MB/cpu-s | live/raw | stable/raw | raw MB/s | live MB/s | "
           "stable MB/s | raw ratio | engine ratio | sent raw | quiet |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
           "---:|---:|\n");
    for (unsigned i = 0; i < nrows; i++) {
        const struct result *r = &res[i];

        printf("| %s | %d | %.0f | %.0f | %.0f | %.0f%% | %.0f%% | %.0f | "
               "%.0f | %.0f | %.3f | %.3f | %zu/%zu | %u/%u |\n",
               zm_codec_name(r->spec.codec), r->spec.level,
               mb(bytes) / r->cpu[ST_RAW_COMP],
               mb(bytes) / r->cpu[ST_LIVE_COMP],
               mb(bytes) / r->cpu[ST_STABLE_COMP], 100 * r->share[SH_LIVE],
               100 * r->share[SH_STABLE], mb(bytes) / r->wall[ST_RAW_COMP],
               mb(bytes) / r->wall[ST_LIVE_COMP],
               mb(bytes) / r->wall[ST_STABLE_COMP],
               ratio_of(bytes, r->raw_bytes), ratio_of(bytes, r->live_bytes),
               r->raw_batches, batches, r->quiet, r->timed);
    }
    printf("\n\"sent raw\": batches the engine sent uncompressed (estimate "
           "or store-raw rule); \"quiet\": stage passes whose CPU time was "
           ">= 95%% of their wall-clock time (not preempted).\n\n");

    printf("## Decompression, engine vs raw library\n\n");
    printf("engine = zm_decode() of the live packets into a destination "
           "region, xxh3 checksum verified.\n\n");
    printf("| codec | lvl | raw MB/cpu-s | engine MB/cpu-s | engine/raw | "
           "raw MB/s | engine MB/s |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    for (unsigned i = 0; i < nrows; i++) {
        const struct result *r = &res[i];

        printf("| %s | %d | %.0f | %.0f | %.0f%% | %.0f | %.0f |\n",
               zm_codec_name(r->spec.codec), r->spec.level,
               mb(bytes) / r->cpu[ST_RAW_DEC], mb(bytes) / r->cpu[ST_ENG_DEC],
               100 * r->share[SH_DEC], mb(bytes) / r->wall[ST_RAW_DEC],
               mb(bytes) / r->wall[ST_ENG_DEC]);
    }
    printf("\n");
    fflush(stdout);
}

static void print_effective(const struct dataset *ds, const struct result *res,
                            unsigned nrows)
{
    uint64_t bytes = ds->size;

    printf("## Effective migration rate, %d cores each side\n\n", CORES);
    printf("MB/s of guest memory = min(%d x engine compress MB/cpu-s "
           "(live), %d x engine decode MB/cpu-s, link MB/s x engine "
           "ratio); link at line rate (1 Gbit/s = 125 MB/s). c = sender "
           "CPU-bound, d = receiver CPU-bound, n = network-bound. "
           "x-over: link speed above which compressing delivers less than "
           "sending raw.\n\n",
           CORES, CORES);
    printf("| codec | lvl | ratio | send MB/s | recv MB/s |");
    for (size_t l = 0; l < LINK_COUNT; l++) {
        printf(" %s |", links[l].name);
    }
    printf(" x-over Gbit/s |\n|---|---:|---:|---:|---:|");
    for (size_t l = 0; l < LINK_COUNT; l++) {
        printf("---:|");
    }
    printf("---:|\n");
    for (unsigned i = 0; i < nrows; i++) {
        const struct result *r = &res[i];
        double send = CORES * mb(bytes) / r->cpu[ST_LIVE_COMP];
        double recv = CORES * mb(bytes) / r->cpu[ST_ENG_DEC];
        double ratio = ratio_of(bytes, r->live_bytes);

        printf("| %s | %d | %.3f | %.0f | %.0f |", zm_codec_name(r->spec.codec),
               r->spec.level, ratio, send, recv);
        for (size_t l = 0; l < LINK_COUNT; l++) {
            char bound;
            double e = effective(r, bytes, links[l].gbit, &bound);

            printf(" %.0f %c |", e, bound);
        }
        if (r->spec.codec == ZM_CODEC_NONE || ratio <= 1.0) {
            printf(" - |\n");
        } else {
            double cpu = send < recv ? send : recv;

            printf(" %.1f |\n", cpu * 8 / 1e3);
        }
    }
    printf("\n");
}

static void print_micro(const struct micro *m, unsigned n, bool json, int runs)
{
    if (json) {
        for (unsigned i = 0; i < n; i++) {
            printf("{\"type\":\"micro\",\"what\":");
            zm_json_string(stdout, m[i].what);
            printf(",\"impl\":\"%s\",\"dispatched\":%s,\"gbs\":%.2f,"
                   "\"gbcpus\":%.2f}\n",
                   m[i].impl, m[i].dispatched ? "true" : "false", m[i].gbs,
                   m[i].gbcpu);
        }
        return;
    }
    printf("## Zero-page detection, xxh3, snapshot copy (one core)\n\n");
    printf("GB = 1e9 bytes scanned; median of %d passes.\n\n", runs);
    printf("| test | impl | GB/s | GB/cpu-s |\n|---|---|---:|---:|\n");
    for (unsigned i = 0; i < n; i++) {
        printf("| %s | %s%s | %.1f | %.1f |\n", m[i].what, m[i].impl,
               m[i].dispatched && strcmp(m[i].impl, "libc") != 0
                   ? " (dispatched)"
                   : "",
               m[i].gbs, m[i].gbcpu);
    }
    printf("\n");
}

static void print_targets(const struct result *res, unsigned nrows,
                          const struct micro *zero)
{
    printf("## Targets (reported, not asserted)\n\n");
    printf("- zero-page detection >= 8 GB/s on one core: %.1f GB/cpu-s "
           "(%s, full scan of all-zero pages): %s\n",
           zero->gbcpu, zero->impl, zero->gbcpu >= 8.0 ? "met" : "NOT met");
    printf("- engine >= 90%% of the raw codec speed (CPU time, live / "
           "stable / decode):\n");
    for (unsigned i = 0; i < nrows; i++) {
        const struct result *r = &res[i];
        bool ok = r->share[SH_LIVE] >= 0.9 && r->share[SH_STABLE] >= 0.9 &&
                  r->share[SH_DEC] >= 0.9;

        printf("  - %s %d: %.0f%% / %.0f%% / %.0f%%: %s\n",
               zm_codec_name(r->spec.codec), r->spec.level,
               100 * r->share[SH_LIVE], 100 * r->share[SH_STABLE],
               100 * r->share[SH_DEC], ok ? "met" : "below");
    }
    printf("\n");
}

/* ---------------------------------------------------------------------- */
/* main                                                                    */
/* ---------------------------------------------------------------------- */

static int parse_options(int argc, char **argv, struct options *o,
                         struct row_spec *rows, unsigned *nrows)
{
    static const struct option longopts[] = {
        { "data", required_argument, NULL, 'd' },
        { "size", required_argument, NULL, 's' },
        { "codec", required_argument, NULL, 'c' },
        { "runs", required_argument, NULL, 'r' },
        { "batch-pages", required_argument, NULL, 'b' },
        { "no-estimate", no_argument, NULL, 'E' },
        { "quick", no_argument, NULL, 'q' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool size_set = false;
    bool runs_set = false;
    long v;
    int c;

    *o = (struct options){ .size = (size_t)64 << 20,
                           .runs = 5,
                           .batch_pages = 128 };
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":d:s:c:r:b:Eqjh", longopts, NULL)) !=
           -1) {
        switch (c) {
        case 'd':
            o->data = optarg;
            break;
        case 's':
            if (!parse_size(optarg, &o->size)) {
                return usage_error("bad --size '%s' (e.g. 64M, 1G)", optarg);
            }
            size_set = true;
            break;
        case 'c':
            o->codecs = optarg;
            break;
        case 'r':
            if (!parse_long(optarg, 1, MAX_RUNS, &v)) {
                return usage_error("bad --runs '%s' (1..64)", optarg);
            }
            o->runs = (int)v;
            runs_set = true;
            break;
        case 'b':
            if (!parse_long(optarg, 1, ZM_MAX_BATCH_PAGES, &v)) {
                return usage_error("bad --batch-pages '%s' (1..1024)", optarg);
            }
            o->batch_pages = (unsigned)v;
            break;
        case 'E':
            o->no_estimate = true;
            break;
        case 'q':
            o->quick = true;
            break;
        case 'j':
            o->json = true;
            break;
        case 'h':
            usage(stdout);
            return -1;
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            if (optopt) {
                char opt[3] = { '-', (char)optopt, '\0' };

                return usage_error("unknown option '%s'", opt);
            }
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        return usage_error("unexpected argument '%s'", argv[optind]);
    }
    if (o->quick) {
        if (!o->data) {
            o->data = "generated";
        }
        if (!size_set) {
            o->size = (size_t)32 << 20;
        }
        if (!runs_set) {
            o->runs = 1;
        }
    }
    if (o->data && strcmp(o->data, "generated") != 0 &&
        strcmp(o->data, "corpus") != 0 && strncmp(o->data, "corpus:", 7)) {
        return usage_error("bad --data '%s' (corpus[:DIR] or generated)",
                           o->data);
    }
    if (o->data && strncmp(o->data, "corpus:", 7) == 0 && !o->data[7]) {
        return usage_error("bad --data '%s': no directory", o->data);
    }
    if (o->codecs) {
        return parse_codecs(o->codecs, o->batch_pages, rows, nrows);
    }
    default_codecs(o->quick, rows, nrows);
    return 0;
}

static int load_data(const struct options *o, struct dataset *ds)
{
    const char *dir = NULL;

    if (!o->data || strcmp(o->data, "corpus") == 0) {
        dir = default_corpus();
        if (!dir && o->data) {
            fprintf(stderr,
                    "%s: no corpus in ../shared/corpus (from here "
                    "or from the source tree)\n",
                    prog);
            return 1;
        }
    } else if (strncmp(o->data, "corpus:", 7) == 0) {
        dir = o->data + 7;
    }
    int ret = dir ? load_corpus(ds, dir, o->batch_pages)
                  : make_generated(ds, o->size, o->batch_pages);

    if (ret == 0) {
        count_zero_pages(ds);
    }
    return ret;
}

static int run_codecs(const struct options *o, const struct row_spec *rows,
                      unsigned nrows)
{
    struct dataset ds = { 0 };
    struct result res[MAX_ROWS];
    struct micro micro[32];
    unsigned nmicro = 0;
    struct bench b = { 0 };
    struct zm_page_ref *refs = NULL;
    size_t raw_area_size = 0;
    int ret = 1;

    if (load_data(o, &ds) != 0) {
        goto out;
    }
    for (size_t i = 0; i < ds.nbatches; i++) {
        raw_area_size += raw_codec_bound((size_t)ds.batches[i].pages * PAGE);
    }
    /* zm_encoder_bound() for this batch size, for every codec. */
    size_t pkt_bound =
        ZM_PACKET_HEADER_SIZE + (size_t)o->batch_pages * (4 + PAGE);

    b.ds = &ds;
    b.pkt_area_size = ds.nbatches * pkt_bound;
    refs = calloc(ds.pages, sizeof(*refs));
    b.raw_off = calloc(ds.nbatches, sizeof(size_t));
    b.raw_len = calloc(ds.nbatches, sizeof(size_t));
    for (int path = 0; path < 2; path++) {
        b.pkt_off[path] = calloc(ds.nbatches, sizeof(size_t));
        b.pkt_len[path] = calloc(ds.nbatches, sizeof(size_t));
        b.pkt_area[path] = map_zeroed(b.pkt_area_size);
    }
    b.raw_area = map_zeroed(raw_area_size);
    b.dst = map_zeroed(ds.size);
    if (!refs || !b.raw_off || !b.raw_len || !b.pkt_off[0] || !b.pkt_off[1] ||
        !b.pkt_len[0] || !b.pkt_len[1] || !b.pkt_area[0] || !b.pkt_area[1] ||
        !b.raw_area || !b.dst) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto out;
    }
    for (size_t p = 0; p < ds.pages; p++) {
        refs[p] = (struct zm_page_ref){ p, ds.data + p * PAGE };
    }
    b.refs = refs;

    print_header(&ds, o, nrows);
    for (unsigned i = 0; i < nrows; i++) {
        if (!o->json) {
            fprintf(stderr, "%s: %s %d ...\n", prog,
                    zm_codec_name(rows[i].codec), rows[i].level);
        }
        if (bench_row(&b, &rows[i], o, &res[i]) < 0) {
            goto out;
        }
        if (o->json) {
            print_row_json(&res[i], ds.size);
        }
    }
    if (!o->json) {
        print_tables(&ds, res, nrows, ds.nbatches);
    }
    if (bench_micro(&ds, o, micro, &nmicro) != 0) {
        goto out;
    }
    print_micro(micro, nmicro, o->json,
                o->runs > MICRO_MIN_RUNS ? o->runs : MICRO_MIN_RUNS);
    if (o->json) {
        printf("{\"type\":\"zero_share\",\"pages\":%zu,\"zero_pages\":%zu,"
               "\"share\":%.6f}\n",
               ds.pages, ds.zero_pages,
               ds.pages ? (double)ds.zero_pages / (double)ds.pages : 0.0);
    } else {
        print_effective(&ds, res, nrows);
        print_targets(res, nrows, &micro[0]);
    }
    ret = fflush(stdout) == 0 ? 0 : 1;
out:
    free(refs);
    free(b.raw_off);
    free(b.raw_len);
    for (int path = 0; path < 2; path++) {
        free(b.pkt_off[path]);
        free(b.pkt_len[path]);
        unmap(b.pkt_area[path], b.pkt_area_size);
    }
    unmap(b.raw_area, raw_area_size);
    unmap(b.dst, ds.size);
    free_dataset(&ds);
    return ret;
}

int main(int argc, char **argv)
{
    struct options o;
    struct row_spec rows[MAX_ROWS];
    unsigned nrows = 0;
    int ret;

    if (argc < 2) {
        return usage_error("missing command (%s)", "codecs");
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "codecs") != 0) {
        return usage_error("unknown command '%s' (codecs)", argv[1]);
    }
    ret = parse_options(argc - 1, argv + 1, &o, rows, &nrows);
    if (ret != 0) {
        return ret < 0 ? 0 : ret;
    }
    if (nrows == 0) {
        fprintf(stderr, "%s: no codec to run\n", prog);
        return 1;
    }
    return run_codecs(&o, rows, nrows);
}
