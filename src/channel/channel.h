/*
 * channel.h - frames on a stream, and the handshake messages
 *
 * Every message is a frame: u32 type, u32 length, then length bytes of
 * body, little endian.  Readers check the length against the frame type's
 * limit before reading the body.  doc/design-migration.md has the protocol.
 */
#ifndef ZM_CHANNEL_H
#define ZM_CHANNEL_H

#include <stdbool.h>
#include <stdint.h>

#include "transport.h"
#include "zmigrate.h"

/* Frame types are pinned on the wire, like codec ids. */
enum zm_frame_type {
    ZM_FRAME_HELLO = 1,
    ZM_FRAME_LAYOUT = 2,
    ZM_FRAME_ACCEPT = 3,
    ZM_FRAME_REFUSE = 4,
    ZM_FRAME_PACKET = 5,
    ZM_FRAME_SYNC = 6,
    ZM_FRAME_DEVICE_STATE = 7,
    ZM_FRAME_END = 8,
    ZM_FRAME_COMPLETE = 9,
    ZM_FRAME_FAIL = 10,
    ZM_FRAME_VERIFY = 11,
};

#define ZM_FRAME_HEADER_SIZE 8u
/* Control messages (everything but packets and device state). */
#define ZM_FRAME_CONTROL_MAX 65536u

const char *zm_frame_name(uint32_t type);

/* Writes one frame whose body is the concatenation of iov (<= 63 buffers). */
int zm_frame_write(zm_conn *conn, uint32_t type, const struct iovec *iov,
                   int iovcnt);

/*
 * Reads a frame header.  Returns 0, -ENODATA at a clean end of stream, or
 * a negative errno; -EBADMSG (message set) when length exceeds max.
 */
int zm_frame_read_header(zm_conn *conn, size_t max, uint32_t *type,
                         uint32_t *length);

/*
 * Reads one whole frame that must be of type want, with a body of at most
 * cap bytes, into buf; sets *length.  A REFUSE or FAIL frame in its place
 * becomes -ECONNREFUSED with the peer's reason in zm_errmsg().
 */
int zm_frame_expect(zm_conn *conn, uint32_t want, void *buf, size_t cap,
                    uint32_t *length);

/* ---- HELLO: the first frame on every channel ---- */

#define ZM_PROTOCOL_VERSION 1u
#define ZM_HELLO_SIZE 40u
#define ZM_MAX_CHANNELS 64u

struct zm_hello {
    uint8_t session[16]; /* random, the same on all channels of a session */
    uint16_t channel;    /* 0: the main channel; 1..channels: data */
    uint16_t channels;   /* number of data channels */
    uint32_t page_size;
    uint32_t max_pages;
    uint8_t codec;
    uint8_t flags; /* ZM_HELLO_VERIFY */
    int16_t level;
};

/* After COMPLETE the source sends VERIFY: a hash of every page. */
#define ZM_HELLO_VERIFY 1u

void zm_hello_encode(const struct zm_hello *hello,
                     unsigned char out[ZM_HELLO_SIZE]);

/* Parses and range-checks a HELLO body; -EPROTO / -EBADMSG with message. */
int zm_hello_decode(const void *buf, size_t len, struct zm_hello *hello);

/* ---- LAYOUT: the source's RAM regions, on the main channel ---- */

struct zm_layout_region {
    char name[ZM_REGION_NAME_MAX + 1];
    uint64_t size;
};

/* Bytes a LAYOUT body of n regions with these names needs, at most. */
#define ZM_LAYOUT_MAX_SIZE \
    (4u + ZM_MAX_REGIONS * (1u + 8u + ZM_REGION_NAME_MAX))

/* Encodes n regions into out (cap bytes); returns the length or -errno. */
ssize_t zm_layout_encode(const struct zm_layout_region *regions, unsigned n,
                         unsigned char *out, size_t cap);

/*
 * Decodes a LAYOUT body into regions (room for ZM_MAX_REGIONS); sets *n.
 * Names must be non-empty, unique and free of control characters; sizes
 * non-zero multiples of page_size.
 */
int zm_layout_decode(const void *buf, size_t len, size_t page_size,
                     struct zm_layout_region *regions, unsigned *n);

#endif /* ZM_CHANNEL_H */
