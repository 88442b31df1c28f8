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
 * Entropy of a sample of the pages in iov, in bits per byte (0..8): 8 bytes
 * out of every 512 of each page_size-byte page (iov lengths are multiples
 * of it).  Few samples bias the figure low, towards trying the codec.
 */
double zm_estimate_entropy(const struct iovec *iov, int iovcnt,
                           size_t page_size);

/*
 * Sampled entropy at or above this means: send the data raw.  Random data
 * samples at about 7.98 (8 K samples of 256 values); a tar of partly
 * compressed files at 7.8 still shrinks to 87% with zstd-1, so the line sits
 * close to random: the estimate only has to catch the hopeless cases.
 */
#define ZM_INCOMPRESSIBLE_BITS 7.9

#endif /* ZM_ESTIMATE_H */
