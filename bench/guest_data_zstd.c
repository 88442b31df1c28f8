/*
 * guest_data_zstd.c - how zstd compresses zmguest's data
 *
 * Builds the guest's regions on the host (vm/guest/zmg_data.c, generation
 * 1), keeps the non-zero pages as a sender would, and compresses them in
 * packets of --batch pages dealt round-robin to --channels channels, three
 * ways: each packet on its own (zmigrate's packets), one stream per channel
 * flushed after each packet (QEMU's multifd zstd), and that stream with an
 * 8 MiB window.  Prints the ratio and the speed of one thread.
 *
 *   guest-data-zstd [--regions N] [--batch PAGES] [--channels N] [--level L]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "../vm/guest/zmg_data.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int is_zero(const unsigned char *p)
{
    for (unsigned i = 0; i < ZMG_PAGE_SIZE; i++) {
        if (p[i]) {
            return 0;
        }
    }
    return 1;
}

static unsigned arg(int argc, char **argv, const char *name, unsigned def)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            return (unsigned)strtoul(argv[i + 1], NULL, 10);
        }
    }
    return def;
}

enum mode { PER_PACKET, STREAM, STREAM_WIDE, MODES };
static const char *const mode_name[MODES] = { "each packet alone",
                                              "one stream per channel",
                                              "stream, 8 MiB window" };

int main(int argc, char **argv)
{
    unsigned regions = arg(argc, argv, "--regions", 4096);
    unsigned batch = arg(argc, argv, "--batch", 128);
    unsigned channels = arg(argc, argv, "--channels", 4);
    int level = (int)arg(argc, argv, "--level", 1);

    if (regions == 0 || batch == 0 || channels == 0 || channels > 64) {
        fprintf(stderr, "guest-data-zstd: bad arguments\n");
        return 2;
    }
    size_t size = (size_t)regions * ZMG_REGION_SIZE;
    unsigned char *mem = malloc(size);
    unsigned char *data = malloc(size);
    size_t cap = ZSTD_compressBound((size_t)batch * ZMG_PAGE_SIZE);
    unsigned char *out = malloc(cap);
    if (!mem || !data || !out) {
        fprintf(stderr, "guest-data-zstd: out of memory\n");
        return 1;
    }
    for (unsigned r = 0; r < regions; r++) {
        zmg_fill_region(mem + (size_t)r * ZMG_REGION_SIZE, r, 1, 1);
    }
    size_t len = 0;
    for (size_t off = 0; off < size; off += ZMG_PAGE_SIZE) {
        if (!is_zero(mem + off)) {
            memcpy(data + len, mem + off, ZMG_PAGE_SIZE);
            len += ZMG_PAGE_SIZE;
        }
    }
    printf("%u regions: %zu non-zero pages of %zu, packets of %u pages, "
           "%u channels, level %d\n",
           regions, len / ZMG_PAGE_SIZE, size / ZMG_PAGE_SIZE, batch, channels,
           level);

    size_t packet = (size_t)batch * ZMG_PAGE_SIZE;
    for (int m = 0; m < MODES; m++) {
        ZSTD_CCtx *cctx[64];
        for (unsigned c = 0; c < channels; c++) {
            cctx[c] = ZSTD_createCCtx();
            ZSTD_CCtx_setParameter(cctx[c], ZSTD_c_compressionLevel, level);
            if (m == STREAM_WIDE) {
                ZSTD_CCtx_setParameter(cctx[c], ZSTD_c_windowLog, 23);
            }
        }
        size_t total = 0;
        double t0 = now();
        for (size_t off = 0, i = 0; off < len; off += packet, i++) {
            size_t n = len - off < packet ? len - off : packet;
            ZSTD_CCtx *cc = cctx[i % channels];
            size_t r;
            if (m == PER_PACKET) {
                r = ZSTD_compress2(cc, out, cap, data + off, n);
            } else {
                ZSTD_inBuffer in = { data + off, n, 0 };
                ZSTD_outBuffer o = { out, cap, 0 };
                do {
                    r = ZSTD_compressStream2(cc, &o, &in, ZSTD_e_flush);
                } while (!ZSTD_isError(r) && r != 0);
                r = ZSTD_isError(r) ? r : o.pos;
            }
            if (ZSTD_isError(r)) {
                fprintf(stderr, "zstd: %s\n", ZSTD_getErrorName(r));
                return 1;
            }
            total += r;
        }
        double t = now() - t0;
        printf("%-24s ratio %.3f  %4.0f MB/s\n", mode_name[m],
               (double)len / (double)total, (double)len / t / 1e6);
        for (unsigned c = 0; c < channels; c++) {
            ZSTD_freeCCtx(cctx[c]);
        }
    }
    free(out);
    free(data);
    free(mem);
    return 0;
}
