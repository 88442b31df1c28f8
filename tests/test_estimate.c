/*
 * test_estimate.c - the compressibility estimate
 *
 * Random data is called incompressible; zero, text and generated data are
 * not; and no 512 KiB batch of the corpus or of generated data that zstd-1
 * can bring under 90% is called incompressible (that would send it raw).
 */
#include <string.h>
#include <zstd.h>

#include "engine/estimate.h"
#include "test_util.h"
#include "zmigrate.h"
#include "tools/datagen.h"

#define BATCH (512u * 1024u)

static unsigned char batch_out[BATCH + 4096];

/* Batches of buf that zstd-1 compresses below 90% yet look random. */
static unsigned false_raw(const unsigned char *buf, size_t len,
                          const char *what)
{
    unsigned wrong = 0;
    for (size_t off = 0; off + BATCH <= len; off += BATCH) {
        struct iovec iov = { (void *)(buf + off), BATCH };
        double bits = zm_estimate_entropy(&iov, 1, 4096);
        if (bits < ZM_INCOMPRESSIBLE_BITS) {
            continue;
        }
        size_t n =
            ZSTD_compress(batch_out, sizeof(batch_out), buf + off, BATCH, 1);
        if (!ZSTD_isError(n) && n * 10 < BATCH * 9) {
            fprintf(stderr,
                    "%s: batch at %zu: %.2f bits/byte but zstd-1 "
                    "gives %.0f%%\n",
                    what, off, bits, 100.0 * n / BATCH);
            wrong++;
        }
    }
    return wrong;
}

int main(void)
{
    static unsigned char buf[32u << 20];
    struct iovec iov = { buf, BATCH };
    double bits;

    memset(buf, 0, BATCH);
    bits = zm_estimate_entropy(&iov, 1, 4096);
    CHECK(bits == 0.0, "zero pages: %.3f", bits);

    t_fill_random(buf, BATCH, 1);
    bits = zm_estimate_entropy(&iov, 1, 4096);
    CHECK(bits >= ZM_INCOMPRESSIBLE_BITS, "random: %.3f", bits);
    printf("random: %.3f bits/byte\n", bits);

    /* Scattered pages and other page sizes sample in bounds (ASan). */
    struct iovec pages[3] = { { buf, 65536 },
                              { buf + 131072, 131072 },
                              { buf + 300032, 512 } };
    bits = zm_estimate_entropy(pages, 3, 512);
    CHECK(bits >= 7.8, "random, 512-byte pages: %.3f", bits);
    iov.iov_len = 65536;
    bits = zm_estimate_entropy(&iov, 1, 65536);
    CHECK(bits >= 7.5, "random, 64 KiB pages: %.3f", bits);

    zm_datagen_fill(buf, sizeof(buf), 0, 11);
    CHECK(false_raw(buf, sizeof(buf), "generated") == 0,
          "generated data called incompressible");

    static const char *const files[] = { "dickens", "mr",    "nci",
                                         "ooffice", "osdb",  "reymont",
                                         "samba",   "x-ray", "xml" };
    const char *dir = getenv("ZM_CORPUS");
    unsigned tested = 0;
    for (unsigned f = 0; dir && f < 9; f++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, files[f]);
        FILE *fp = fopen(path, "rb");
        if (!fp) {
            continue;
        }
        size_t n = fread(buf, 1, sizeof(buf), fp);
        fclose(fp);
        CHECK(false_raw(buf, n, files[f]) == 0, "%s called incompressible",
              files[f]);
        tested++;
    }
    printf("corpus files checked: %u%s\n", tested,
           tested ? "" : " (no corpus: set ZM_CORPUS)");
    return t_exit();
}
