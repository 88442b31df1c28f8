/*
 * packet.h - the packet header: layout, parsing and the checksum
 *
 * doc/wire-format.md is the normative description; this file implements it.
 *
 *   off size field
 *     0   4  magic "ZMPK"
 *     4   1  version (1)
 *     5   1  codec id (enum zm_codec)
 *     6   1  flags (ZM_PKT_RAW, ZM_PKT_OFFLOAD)
 *     7   1  page shift (log2 of the page size, 9..16)
 *     8   2  level (signed, informative)
 *    10   2  extension count (0 in version 1)
 *    12   4  region
 *    16   4  normal page count (contents in the payload)
 *    20   4  zero page count
 *    24   4  payload size
 *    28   4  reserved (0)
 *    32   8  checksum
 *    40      index table: (normal + zero) x u32, normal pages first
 *            payload
 */
#ifndef ZM_PACKET_H
#define ZM_PACKET_H

#include <stdint.h>
#include <sys/uio.h>

#include "common/hash.h"
#include "zmigrate.h"

#define ZM_PKT_MAGIC 0x4b504d5au /* "ZMPK" read little endian */
#define ZM_PKT_VERSION 1

#define ZM_PKT_RAW (1u << 0)     /* payload is the pages, uncompressed */
#define ZM_PKT_OFFLOAD (1u << 1) /* payload made by an accelerator */
#define ZM_PKT_KNOWN_FLAGS (ZM_PKT_RAW | ZM_PKT_OFFLOAD)

/* The checksum covers the header up to here, then the index table. */
#define ZM_PKT_CHECKSUM_OFFSET 32u

struct zm_packet_header {
    uint8_t codec;
    uint8_t flags;
    uint8_t page_shift;
    int16_t level;
    uint32_t region;
    uint32_t normal_count;
    uint32_t zero_count;
    uint32_t payload_size;
    uint64_t checksum;
};

/* Writes the header, checksum field included, into out[0..40). */
void zm_packet_write_header(void *out, const struct zm_packet_header *h);

/*
 * Parses and checks the context-free fields of the header in buf (len >=
 * ZM_PACKET_HEADER_SIZE); returns 0 or a negative errno with zm_errmsg()
 * set.  On success the whole packet is ZM_PACKET_HEADER_SIZE +
 * 4 * (normal + zero) + payload_size bytes, which fits in 32 bits.
 */
int zm_packet_parse_header(const void *buf, size_t len,
                           struct zm_packet_header *h);

/* Total size of the packet the header describes. */
static inline uint64_t zm_packet_size(const struct zm_packet_header *h)
{
    return ZM_PACKET_HEADER_SIZE +
           4ull * ((uint64_t)h->normal_count + h->zero_count) + h->payload_size;
}

/*
 * The packet checksum: xxh3-64 of the header's first 32 bytes and the index
 * table (which follows the header), seeded with the xxh3-64 of the
 * uncompressed contents of the normal pages.
 */
uint64_t zm_packet_checksum(const void *packet, uint32_t table_entries,
                            uint64_t data_hash);

/*
 * A raw packet's payload can go straight from the stream into the pages,
 * without a copy through a buffer.  zm_decode_raw_begin() checks a RAW
 * packet of len bytes from its first head_len bytes (header and index
 * table, as zm_packet_size() counts them), exactly as zm_decode() would,
 * and fills iov (room for dec's max_pages entries) with where the payload
 * goes: one entry per run of consecutive pages.  The caller reads the
 * payload into iov, then zm_decode_raw_end() checks the checksum over the
 * pages in place and clears the zero pages.  Unlike zm_decode(), the
 * normal pages are written before the check: a packet refused at the end
 * has written the pages its table names, and no others.
 */
int zm_decode_raw_begin(zm_decoder *dec, const void *head, size_t head_len,
                        size_t len, struct iovec *iov, int *iovcnt);
int zm_decode_raw_end(zm_decoder *dec, const void *head,
                      struct zm_packet_info *info);

#endif /* ZM_PACKET_H */
