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

#include <stdbool.h>
#include <stddef.h>
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

/* Bytes of the header and the index table, the part read first. */
static inline size_t zm_packet_head_size(const struct zm_packet_header *h)
{
    return ZM_PACKET_HEADER_SIZE +
           4 * ((size_t)h->normal_count + h->zero_count);
}

/*
 * The largest packet of at most max_pages pages of page_size bytes: every
 * page raw, which the store-raw rule and the parser make the bound.
 */
static inline size_t zm_packet_max_size(uint32_t max_pages, uint32_t page_size)
{
    return ZM_PACKET_HEADER_SIZE + 4 * (size_t)max_pages +
           (size_t)max_pages * page_size;
}

/* 0 when info is NULL or states a usable size, else -EINVAL. */
int zm_packet_info_check(const struct zm_packet_info *info);

/* Fills info (checked, may be NULL) as far as its size reaches with the
 * public description of the packet h describes. */
void zm_packet_info_fill(const struct zm_packet_header *h,
                         struct zm_packet_info *info);

/*
 * The packet checksum: xxh3-64 of the header's first 32 bytes and the index
 * table (which follows the header), seeded with the xxh3-64 of the
 * uncompressed contents of the normal pages.
 */
uint64_t zm_packet_checksum(const void *packet, uint32_t table_entries,
                            uint64_t data_hash);

/*
 * Reading a packet from a stream, its header parsed once, in three steps:
 *
 *   zm_packet_reader_start()  with the first ZM_PACKET_HEADER_SIZE bytes
 *                             (fewer if the frame is shorter) of a frame
 *                             of len bytes: checks the header against len
 *                             and the decoder; head_size says how much of
 *                             the packet to have read for the next step;
 *   zm_packet_reader_table()  with the head read: checks the index table.
 *                             Returns 1 when the payload is raw and goes
 *                             straight from the stream into the pages: iov
 *                             (room for the decoder's max_pages entries)
 *                             says where; 0 when it is to be read after the
 *                             head, into the same buffer (always, when iov
 *                             is NULL);
 *   zm_packet_reader_end()    with the payload read: verifies the checksum,
 *                             decodes into place, clears the zero pages.
 *
 * zm_decode() is these three over a packet in memory, and refuses a packet
 * before it writes a page.  Read straight into the pages, a raw payload is
 * checked in place: a packet refused at the end has written the pages its
 * table names, and no others.  Each step returns 0 (or 1) or a negative
 * errno as zm_decode() does, with zm_errmsg() set.
 */
struct zm_packet_reader {
    zm_decoder *dec;
    struct zm_packet_header h;
    size_t len;       /* the whole packet */
    size_t head_size; /* header and index table */
    bool consecutive; /* the normal pages follow each other */
    bool in_pages;    /* the raw payload was read into the pages */
};

int zm_packet_reader_start(struct zm_packet_reader *rd, zm_decoder *dec,
                           const void *header, size_t len);
int zm_packet_reader_table(struct zm_packet_reader *rd, const void *head,
                           struct iovec *iov, int *iovcnt);
int zm_packet_reader_end(struct zm_packet_reader *rd, const void *packet,
                         struct zm_packet_info *info);

#endif /* ZM_PACKET_H */
