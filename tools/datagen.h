/*
 * datagen.h - guest-like data for the tools, tests and benchmarks
 *
 * Not part of libzmigrate: a generator of test data, built into the tools
 * library (tools/) that the programs share.
 */
#ifndef ZM_TOOLS_DATAGEN_H
#define ZM_TOOLS_DATAGEN_H

#include <stddef.h>
#include <stdint.h>

/*
 * Fills buf with deterministic memory that resembles a guest's: text, code,
 * structured records, runs of zero pages and random data, mixed page by
 * page.  zstd level 1 on 512 KiB batches compresses it about as well as the
 * Silesia corpus.  The same seed and length always give the same bytes, and
 * the bytes of a page depend only on the seed and the page's offset, so a
 * buffer can be filled in parts (offset must be a multiple of 4096).
 */
void zm_datagen_fill(void *buf, size_t len, uint64_t offset, uint64_t seed);

#endif /* ZM_TOOLS_DATAGEN_H */
