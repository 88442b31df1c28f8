/*
 * estimate.c - sampled order-0 entropy
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "estimate.h"

/* 8 bytes out of every 512: 1/64 of the data, in any page size. */
#define SAMPLE_BYTES 8
#define SAMPLE_SPACING 512

double zm_estimate_entropy(const struct iovec *iov, int iovcnt,
                           size_t page_size)
{
    uint32_t counts[256] = { 0 };
    size_t total = 0;
    size_t samples =
        page_size >= 2 * SAMPLE_SPACING ? page_size / SAMPLE_SPACING : 1;
    /* An odd stride, and a start that moves from page to page, so that
     * records of a power-of-two size do not always show the same field. */
    size_t stride = (page_size - SAMPLE_BYTES) / samples;
    size_t page_seq = 0;

    stride -= stride % 2 == 0 ? 1 : 0;
    for (int i = 0; i < iovcnt; i++) {
        const unsigned char *base = iov[i].iov_base;

        for (size_t off = 0; off + page_size <= iov[i].iov_len;
             off += page_size, page_seq++) {
            size_t pos = (page_seq * 37) % stride;

            for (size_t s = 0; s < samples; s++, pos += stride) {
                const unsigned char *p = base + off + pos;

                for (int b = 0; b < SAMPLE_BYTES; b++) {
                    counts[p[b]]++;
                }
            }
            total += samples * SAMPLE_BYTES;
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
