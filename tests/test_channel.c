/*
 * test_channel.c - frames, HELLO and LAYOUT
 *
 * Frames arrive whole; lengths over the limit, wrong types, refusals and
 * torn streams give distinct errors; HELLO and LAYOUT round-trip and every
 * malformed field is refused; random damage never crashes the decoders.
 * A message wrapped in context by zm_error() keeps the message it wraps.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "channel/channel.h"
#include "common/endian_util.h"
#include "common/error.h"
#include "test_util.h"
#include "zmigrate.h"

static void conn_pair(zm_conn **a, zm_conn **b)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
        perror("socketpair");
        exit(T_EXIT_FAIL);
    }
    zm_conn_from_fd(fds[0], a);
    zm_conn_from_fd(fds[1], b);
}

static void test_frames(void)
{
    zm_conn *a, *b;
    unsigned char buf[256];
    uint32_t type, len;

    conn_pair(&a, &b);
    struct iovec parts[3] = { { "abc", 3 }, { "", 0 }, { "defgh", 5 } };
    CHECK(zm_frame_write(a, ZM_FRAME_SYNC, parts, 3) == 0, "write");
    CHECK(zm_frame_expect(b, ZM_FRAME_SYNC, buf, sizeof(buf), &len) == 0 &&
              len == 8 && memcmp(buf, "abcdefgh", 8) == 0,
          "expect: %s", zm_errmsg());

    CHECK(zm_frame_write(a, ZM_FRAME_END, parts, 1) == 0, "write");
    CHECK(zm_frame_expect(b, ZM_FRAME_SYNC, buf, sizeof(buf), &len) == -EPROTO,
          "wrong type");
    CHECK(strstr(zm_errmsg(), "END") != NULL, "message: %s", zm_errmsg());

    struct iovec big = { buf, 200 };
    CHECK(zm_frame_write(a, ZM_FRAME_PACKET, &big, 1) == 0, "write");
    CHECK(zm_frame_read_header(b, 100, &type, &len) == -EBADMSG,
          "over the limit");

    /* A refusal carries the peer's reason, made printable. */
    zm_conn_close(a);
    zm_conn_close(b);
    conn_pair(&a, &b);
    struct iovec reason = { "codec zstd\n not built", 21 };
    CHECK(zm_frame_write(a, ZM_FRAME_REFUSE, &reason, 1) == 0, "write");
    CHECK(zm_frame_expect(b, ZM_FRAME_ACCEPT, buf, sizeof(buf), &len) ==
              -ECONNREFUSED,
          "refusal");
    CHECK(strstr(zm_errmsg(), "codec zstd? not built") != NULL, "message: %s",
          zm_errmsg());

    /* A clean end, then a torn frame. */
    zm_conn_close(a);
    CHECK(zm_frame_read_header(b, 100, &type, &len) == -ENODATA, "end");
    zm_conn_close(b);
    conn_pair(&a, &b);
    unsigned char header[8];
    zm_put_le32(header, ZM_FRAME_SYNC);
    zm_put_le32(header + 4, 50);
    struct iovec torn = { header, 8 };
    zm_conn_write_all(a, &torn, 1);
    zm_conn_close(a);
    CHECK(zm_frame_expect(b, ZM_FRAME_SYNC, buf, sizeof(buf), &len) ==
              -ECONNRESET,
          "torn body");
    zm_conn_close(b);
}

static void test_hello(void)
{
    struct zm_hello h = {
        .channel = 2,
        .channels = 4,
        .page_size = 4096,
        .max_pages = 128,
        .codec = ZM_CODEC_ZSTD,
        .level = -5,
    };
    struct zm_hello back;
    unsigned char wire[ZM_HELLO_SIZE], bad[ZM_HELLO_SIZE];

    memset(h.session, 0xab, sizeof(h.session));
    zm_hello_encode(&h, wire);
    CHECK(zm_hello_decode(wire, sizeof(wire), &back) == 0, "%s", zm_errmsg());
    CHECK(back.channel == 2 && back.channels == 4 && back.page_size == 4096 &&
              back.max_pages == 128 && back.codec == ZM_CODEC_ZSTD &&
              back.level == -5 && memcmp(back.session, h.session, 16) == 0,
          "round trip");
    CHECK(zm_hello_decode(wire, sizeof(wire) - 1, &back) == -EBADMSG, "short");

    static const struct {
        size_t off;
        int width;
        uint32_t value;
        int err;
    } cases[] = {
        { 0, 4, 0x50545448, -EBADMSG }, /* "HTTP": not us */
        { 4, 2, 2, -EPROTO },           /* version */
        { 6, 2, 5, -EBADMSG },          /* channel > channels */
        { 8, 2, 0, -EBADMSG },          /* no data channels */
        { 8, 2, ZM_MAX_CHANNELS + 1, -EBADMSG },
        { 10, 1, ZM_CODEC_COUNT, -EPROTO },
        { 12, 4, 3000, -EBADMSG }, /* page size */
        { 12, 4, 1u << 20, -EBADMSG },
        { 16, 4, 0, -EBADMSG }, /* max pages */
        { 16, 4, ZM_MAX_BATCH_PAGES + 1, -EBADMSG },
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(bad, wire, sizeof(bad));
        if (cases[i].width == 1) {
            bad[cases[i].off] = (unsigned char)cases[i].value;
        } else if (cases[i].width == 2) {
            zm_put_le16(bad + cases[i].off, (uint16_t)cases[i].value);
        } else {
            zm_put_le32(bad + cases[i].off, cases[i].value);
        }
        CHECK(zm_hello_decode(bad, sizeof(bad), &back) == cases[i].err,
              "case %u: %s", i, zm_errmsg());
    }
}

static void test_layout(void)
{
    static struct zm_layout_region in[3], out[ZM_MAX_REGIONS];
    static unsigned char wire[ZM_LAYOUT_MAX_SIZE], bad[ZM_LAYOUT_MAX_SIZE];
    unsigned n;

    strcpy(in[0].name, "pc.ram");
    in[0].size = 1ull << 30;
    strcpy(in[1].name, "vga.vram");
    in[1].size = 16 << 20;
    strcpy(in[2].name, "x");
    in[2].size = 4096;
    ssize_t len = zm_layout_encode(in, 3, wire, sizeof(wire));
    CHECK(len == 4 + 3 * 9 + 6 + 8 + 1, "length %zd", len);
    CHECK(zm_layout_decode(wire, (size_t)len, 4096, out, &n) == 0 && n == 3 &&
              strcmp(out[1].name, "vga.vram") == 0 && out[0].size == 1ull << 30,
          "round trip: %s", zm_errmsg());

    CHECK(zm_layout_decode(wire, (size_t)len, 8192, out, &n) == -EBADMSG,
          "4 KiB region, 8 KiB pages");
    for (ssize_t cut = 0; cut < len; cut++) {
        CHECK(zm_layout_decode(wire, (size_t)cut, 4096, out, &n) == -EBADMSG,
              "cut at %zd", cut);
    }
    memcpy(bad, wire, (size_t)len);
    bad[len] = 0;
    CHECK(zm_layout_decode(bad, (size_t)len + 1, 4096, out, &n) == -EBADMSG,
          "trailing byte");
    memcpy(bad, wire, (size_t)len);
    zm_put_le32(bad, 0);
    CHECK(zm_layout_decode(bad, (size_t)len, 4096, out, &n) == -EBADMSG,
          "no regions");
    zm_put_le32(bad, ZM_MAX_REGIONS + 1);
    CHECK(zm_layout_decode(bad, (size_t)len, 4096, out, &n) == -EBADMSG,
          "too many regions");
    memcpy(bad, wire, (size_t)len);
    bad[4 + 9] = '\n';
    CHECK(zm_layout_decode(bad, (size_t)len, 4096, out, &n) == -EBADMSG,
          "control character");
    memcpy(bad, wire, (size_t)len);
    zm_put_le64(bad + 4, 0);
    CHECK(zm_layout_decode(bad, (size_t)len, 4096, out, &n) == -EBADMSG,
          "empty region");
    strcpy(in[2].name, "pc.ram");
    len = zm_layout_encode(in, 3, wire, sizeof(wire));
    CHECK(zm_layout_decode(wire, (size_t)len, 4096, out, &n) == -EBADMSG,
          "duplicate name");

    /* Random damage: refused or accepted, never a crash (ASan). */
    uint64_t seed = 5;
    strcpy(in[2].name, "x");
    len = zm_layout_encode(in, 3, wire, sizeof(wire));
    for (int i = 0; i < 20000; i++) {
        memcpy(bad, wire, (size_t)len);
        for (int k = 0; k < 3; k++) {
            uint64_t r = t_rand(&seed);
            bad[r % (uint64_t)len] ^= (unsigned char)(r >> 32);
        }
        zm_layout_decode(bad, (size_t)(t_rand(&seed) % (uint64_t)len + 1), 4096,
                         out, &n);
    }
}

/* The library's idiom, zm_error(ret, "context: %s", zm_errmsg()), reads
 * the message it replaces. */
static void test_error_context(void)
{
    char longer[300];

    zm_error(-EBADMSG, "checksum mismatch (%d)", 42);
    zm_error(-EBADMSG, "channel %u: %s", 3u, zm_errmsg());
    CHECK(strcmp(zm_errmsg(), "channel 3: checksum mismatch (42)") == 0,
          "wrapped: '%s'", zm_errmsg());

    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    zm_error(-EPROTO, "%s", longer);
    size_t len = strlen(zm_errmsg());
    zm_error(-EPROTO, "ab: %s", zm_errmsg());
    CHECK(strlen(zm_errmsg()) == len && strncmp(zm_errmsg(), "ab: xxx", 7) == 0,
          "wrapped at the limit: %zu bytes, '%.10s...'", strlen(zm_errmsg()),
          zm_errmsg());
}

int main(void)
{
    test_error_context();
    test_frames();
    test_hello();
    test_layout();
    return t_exit();
}
