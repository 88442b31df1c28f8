/*
 * estimate.c - sampled order-0 entropy
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "estimate.h"

#define SAMPLES_PER_PAGE 8
#define SAMPLE_BYTES 8

double zm_estimate_entropy(const struct iovec *iov, int iovcnt,
                           size_t page_size)
{
    uint32_t counts[256] = { 0 };
    size_t total = 0;
    /* Positions step by a prime so that records of a power-of-two size do
     * not always show the same field. */
    size_t stride = (page_size - SAMPLE_BYTES) / SAMPLES_PER_PAGE;
    size_t page_seq = 0;

    stride -= stride % 2 == 0 ? 1 : 0;
    for (int i = 0; i < iovcnt; i++) {
        const unsigned char *base = iov[i].iov_base;

        for (size_t off = 0; off + page_size <= iov[i].iov_len;
             off += page_size, page_seq++) {
            size_t pos = (page_seq * 37) % stride;

            for (int s = 0; s < SAMPLES_PER_PAGE; s++, pos += stride) {
                const unsigned char *p = base + off + pos;

                for (int b = 0; b < SAMPLE_BYTES; b++) {
                    counts[p[b]]++;
                }
            }
            total += SAMPLES_PER_PAGE * SAMPLE_BYTES;
        }
    }
    if (total == 0) {
        return 0.0;
    }
    /* H = log2(N) - sum(c * log2(c)) / N */
    double sum = 0.0;
    for (int v = 0; v < 256; v++) {
        if (counts[v] > 1) {
            sum += counts[v] * log2((double)counts[v]);
        }
    }
    return log2((double)total) - sum / (double)total;
}
