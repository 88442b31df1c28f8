/*
 * estimate.h - a cheap guess of whether data will compress
 *
 * QZFS's compressibility check: sample a small share of the bytes and
 * compute their order-0 entropy.  Random, encrypted or already compressed
 * data is near 8 bits per byte and cannot shrink below the store-raw
 * threshold, so the codec's time on it would be wasted.
 */
#ifndef ZM_ESTIMATE_H
#define ZM_ESTIMATE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

/*
 * Entropy of a sample of the pages in iov, in bits per byte (0..8).  Reads
 * 8 bytes at 8 positions of each page_size-byte page: 1/64 of a 4 KiB page.
 */
double zm_estimate_entropy(const struct iovec *iov, int iovcnt,
                           size_t page_size);

/* Sampled entropy at or above this means: send the data raw. */
#define ZM_INCOMPRESSIBLE_BITS 7.5

#endif /* ZM_ESTIMATE_H */
