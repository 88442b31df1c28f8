/*
 * test_transport.c - URIs and the TCP, UNIX and file streams
 *
 * Large multi-buffer writes arrive whole through short writes; a clean end
 * of stream and one in mid-message are told apart; accept times out;
 * shutdown wakes a blocked reader; a connect the peer does not answer
 * ends on its abort flag, with nothing left behind.  A file is one stream,
 * one way, with no peer to speak; a socket is neither; shutdown_read ends
 * a blocked read and leaves writes to go.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "test_util.h"
#include "channel/transport.h"
#include "zmigrate.h"

#define BIG (8u << 20)

static void test_uris(void)
{
    struct zm_uri u;

    CHECK(zm_uri_parse("tcp:127.0.0.1:4444", &u) == 0 && u.kind == ZM_URI_TCP &&
              strcmp(u.host, "127.0.0.1") == 0 && strcmp(u.port, "4444") == 0,
          "tcp v4");
    CHECK(zm_uri_parse("tcp:[::1]:0", &u) == 0 && strcmp(u.host, "::1") == 0 &&
              strcmp(u.port, "0") == 0,
          "tcp v6");
    CHECK(zm_uri_parse("unix:/tmp/x.sock", &u) == 0 && u.kind == ZM_URI_UNIX &&
              strcmp(u.path, "/tmp/x.sock") == 0,
          "unix");
    CHECK(zm_uri_parse("file:/tmp/guest.zm", &u) == 0 && u.kind == ZM_URI_FILE,
          "file");
    static const char *const bad[] = {
        "tcp:host",    "tcp::80",
        "tcp:host:",   "tcp:host:65536",
        "tcp:host:8x", "tcp:[::1]80",
        "udp:host:1",  "unix:",
        "file:",       "",
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(zm_uri_parse(bad[i], &u) == -EINVAL, "'%s' accepted", bad[i]);
        CHECK(strlen(zm_errmsg()) > 0, "'%s': no message", bad[i]);
    }
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath));
    memcpy(longpath, "unix:", 5);
    longpath[sizeof(longpath) - 1] = '\0';
    CHECK(zm_uri_parse(longpath, &u) == -EINVAL, "unix path > sun_path");
}

struct writer_args {
    zm_conn *conn;
    const unsigned char *data;
    int ret;
};

/* Writes data as 64 uneven buffers, then closes its end. */
static void *writer(void *arg)
{
    struct writer_args *w = arg;
    struct iovec iov[64];
    size_t off = 0;

    for (int i = 0; i < 64; i++) {
        size_t len = i == 63 ? BIG - off : (BIG / 64) + (i % 2 ? 777 : -777);
        iov[i] = (struct iovec){ (void *)(w->data + off), len };
        off += len;
    }
    w->ret = zm_conn_write_all(w->conn, iov, 64);
    zm_conn_close(w->conn);
    return NULL;
}

static void test_stream(const char *uri_text)
{
    static unsigned char sent[BIG], got[BIG];
    struct zm_uri uri;
    zm_listener *lst;
    zm_conn *client, *server;
    pthread_t thread;

    t_fill_random(sent, BIG, 3);
    memset(got, 0, BIG);
    CHECK(zm_uri_parse(uri_text, &uri) == 0, "%s", zm_errmsg());
    CHECK(zm_listener_open(&uri, &lst) == 0, "listen %s: %s", uri_text,
          zm_errmsg());
    CHECK(zm_uri_parse(zm_listener_uri(lst), &uri) == 0, "bound uri %s",
          zm_listener_uri(lst));
    CHECK(zm_conn_connect(&uri, NULL, &client) == 0, "connect %s: %s",
          zm_listener_uri(lst), zm_errmsg());
    CHECK(zm_listener_accept(lst, 5000, &server) == 0, "accept: %s",
          zm_errmsg());

    struct writer_args w = { client, sent, -1 };
    pthread_create(&thread, NULL, writer, &w);
    CHECK(zm_conn_read_all(server, got, BIG) == 0, "read_all");
    pthread_join(thread, NULL);
    CHECK(w.ret == 0, "write_all: %d", w.ret);
    CHECK(memcmp(sent, got, BIG) == 0, "%s: data differs", uri_text);
    CHECK(zm_conn_read_all(server, got, 1) == -ENODATA, "clean end");
    zm_conn_close(server);

    /* Ends in the middle of a message. */
    CHECK(zm_conn_connect(&uri, NULL, &client) == 0, "connect");
    CHECK(zm_listener_accept(lst, 5000, &server) == 0, "accept");
    struct iovec half = { sent, 10 };
    CHECK(zm_conn_write_all(client, &half, 1) == 0, "write 10");
    zm_conn_close(client);
    CHECK(zm_conn_read_all(server, got, 20) == -ECONNRESET, "torn end");
    zm_conn_close(server);

    CHECK(zm_listener_accept(lst, 50, &server) == -ETIMEDOUT, "accept timeout");
    zm_listener_close(lst);
    printf("%s: ok\n", uri_text);
}

static zm_conn *shutdown_target;

static void *blocked_reader(void *arg)
{
    unsigned char byte;
    int *ret = arg;

    *ret = zm_conn_read_all(shutdown_target, &byte, 1);
    return NULL;
}

static void test_shutdown(void)
{
    struct zm_uri uri;
    zm_listener *lst;
    zm_conn *client;
    pthread_t thread;
    int ret = 1;

    zm_uri_parse("tcp:127.0.0.1:0", &uri);
    CHECK(zm_listener_open(&uri, &lst) == 0, "listen");
    zm_uri_parse(zm_listener_uri(lst), &uri);
    CHECK(zm_conn_connect(&uri, NULL, &client) == 0, "connect");
    CHECK(zm_listener_accept(lst, 5000, &shutdown_target) == 0, "accept");
    pthread_create(&thread, NULL, blocked_reader, &ret);
    usleep(50 * 1000);
    zm_conn_shutdown(shutdown_target);
    pthread_join(thread, NULL);
    CHECK(ret == -ENODATA, "blocked read after shutdown: %d", ret);
    zm_conn_close(shutdown_target);
    zm_conn_close(client);
    zm_listener_close(lst);
}

static void test_file(void)
{
    static unsigned char data[1 << 20], back[1 << 20];
    char path[] = "/tmp/zm-test-transport-XXXXXX";
    int fd = mkstemp(path);
    struct zm_uri uri;
    zm_conn *conn;
    char text[64];

    close(fd);
    snprintf(text, sizeof(text), "file:%s", path);
    t_fill_random(data, sizeof(data), 4);
    CHECK(zm_uri_parse(text, &uri) == 0, "file uri");
    CHECK(zm_conn_connect(&uri, NULL, &conn) == 0, "create: %s", zm_errmsg());
    struct iovec iov = { data, sizeof(data) };
    CHECK(zm_conn_write_all(conn, &iov, 1) == 0, "write");
    zm_conn_close(conn);
    CHECK(zm_conn_open_file(&uri, &conn) == 0, "open: %s", zm_errmsg());
    CHECK(zm_conn_read_all(conn, back, sizeof(back)) == 0, "read");
    CHECK(memcmp(data, back, sizeof(data)) == 0, "file data differs");
    CHECK(zm_conn_read_all(conn, back, 1) == -ENODATA, "file end");
    zm_conn_close(conn);
    unlink(path);

    zm_listener *lst;
    CHECK(zm_listener_open(&uri, &lst) == -EINVAL, "listen on a file");
    snprintf(text, sizeof(text), "file:/nonexistent-dir/x");
    zm_uri_parse(text, &uri);
    CHECK(zm_conn_open_file(&uri, &conn) == -ENOENT, "missing file");
    CHECK(strstr(zm_errmsg(), "/nonexistent-dir/x") != NULL, "message: %s",
          zm_errmsg());
}

/*
 * What each transport says it is: a file is one stream, one way, with no
 * peer to speak; a socket is neither, and its peer speaks by writing.
 */
static void test_caps(void)
{
    char dir[] = "/tmp/zm-test-transport-caps-XXXXXX";
    char text[128], path[96];
    const unsigned file_caps = ZM_CONN_ONE_STREAM | ZM_CONN_ONE_WAY;
    struct zm_uri uri;
    zm_conn *conn;

    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(path, sizeof(path), "%s/stream.zm", dir);
    snprintf(text, sizeof(text), "file:%s", path);
    CHECK(zm_uri_parse(text, &uri) == 0, "file uri: %s", zm_errmsg());
    CHECK(zm_conn_connect(&uri, NULL, &conn) == 0, "create: %s", zm_errmsg());
    CHECK(zm_conn_caps(conn) == file_caps, "file: connect: caps %#x",
          zm_conn_caps(conn));
    CHECK(!zm_conn_peer_spoke(conn), "file: connect: the peer spoke");
    struct iovec iov = { "saved stream", 12 };
    CHECK(zm_conn_write_all(conn, &iov, 1) == 0, "file: write");
    /* Reads of a file never block: nothing to shut, writes still go. */
    zm_conn_shutdown_read(conn);
    CHECK(zm_conn_write_all(conn, &iov, 1) == 0,
          "file: write after shutdown_read");
    CHECK(!zm_conn_peer_spoke(conn), "file: the peer spoke after writes");
    zm_conn_close(conn);

    /* Read back: the data waiting to be read is no peer speaking. */
    char back[24];
    CHECK(zm_conn_open_file(&uri, &conn) == 0, "open: %s", zm_errmsg());
    CHECK(zm_conn_caps(conn) == file_caps, "file: open: caps %#x",
          zm_conn_caps(conn));
    CHECK(!zm_conn_peer_spoke(conn), "file: open: the peer spoke");
    CHECK(zm_conn_read_all(conn, back, sizeof(back)) == 0 &&
              memcmp(back, "saved streamsaved stream", 24) == 0,
          "file: read back");
    CHECK(!zm_conn_peer_spoke(conn), "file: at its end: the peer spoke");
    zm_conn_close(conn);
    unlink(path);
    rmdir(dir);

    /* A socketpair: no caps; peer_spoke once the other end writes. */
    int sv[2];
    zm_conn *a = NULL, *b = NULL;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0,
          "socketpair: %s", strerror(errno));
    CHECK(zm_conn_from_fd(sv[0], &a) == 0 && zm_conn_from_fd(sv[1], &b) == 0,
          "from_fd: %s", zm_errmsg());
    CHECK(zm_conn_caps(a) == 0 && zm_conn_caps(b) == 0, "socket caps %#x %#x",
          zm_conn_caps(a), zm_conn_caps(b));
    CHECK(!zm_conn_peer_spoke(a), "socket: peer spoke before writing");
    struct iovec one = { "x", 1 };
    CHECK(zm_conn_write_all(b, &one, 1) == 0, "socket: write");
    CHECK(zm_conn_peer_spoke(a), "socket: peer wrote, peer_spoke false");
    CHECK(zm_conn_read_all(a, back, 1) == 0 && back[0] == 'x', "socket: read");
    CHECK(!zm_conn_peer_spoke(a), "socket: peer_spoke after reading all");
    zm_conn_close(b);
    CHECK(zm_conn_peer_spoke(a), "socket: peer hung up, peer_spoke false");
    zm_conn_close(a);
    printf("caps: ok\n");
}

struct read_arg {
    zm_conn *conn;
    int ret;
};

static void *read_one(void *arg)
{
    struct read_arg *r = arg;
    unsigned char byte;

    r->ret = zm_conn_read_all(r->conn, &byte, 1);
    return NULL;
}

/*
 * shutdown_read ends a blocked read (and later ones) with the end of the
 * stream or an error, and leaves writes to go: the destination's last word
 * after it stops listening.
 */
static void test_shutdown_read(void)
{
    int sv[2];
    zm_conn *a = NULL, *b = NULL;
    pthread_t thread;
    struct read_arg r = { NULL, 1 };

    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0,
          "socketpair: %s", strerror(errno));
    CHECK(zm_conn_from_fd(sv[0], &a) == 0 && zm_conn_from_fd(sv[1], &b) == 0,
          "from_fd: %s", zm_errmsg());
    r.conn = a;
    pthread_create(&thread, NULL, read_one, &r);
    usleep(50 * 1000); /* most likely blocked by now; either way works */
    zm_conn_shutdown_read(a);

    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    if (pthread_timedjoin_np(thread, NULL, &until) != 0) {
        CHECK(false, "shutdown_read did not end a blocked read");
        zm_conn_shutdown(a); /* let it go */
        pthread_join(thread, NULL);
    }
    CHECK(r.ret == -ENODATA || (r.ret < 0 && r.ret != -ECONNRESET),
          "blocked read after shutdown_read: %d", r.ret);
    unsigned char byte;
    int ret = zm_conn_read_all(a, &byte, 1);
    CHECK(ret == -ENODATA || (ret < 0 && ret != -ECONNRESET),
          "later read after shutdown_read: %d", ret);

    /* Writes still go, and arrive. */
    char got[9] = { 0 };
    struct iovec iov = { "last word", 9 };
    CHECK(zm_conn_write_all(a, &iov, 1) == 0, "write after shutdown_read");
    CHECK(zm_conn_read_all(b, got, 9) == 0 && memcmp(got, "last word", 9) == 0,
          "the write after shutdown_read: '%.9s'", got);
    zm_conn_close(a);
    zm_conn_close(b);
    printf("shutdown_read: %d\n", r.ret);
}

/*
 * A listener whose accept queue is full drops new SYNs, so a connect to it
 * hangs: the abort flag must end it with -ECANCELED and no connection.
 */
static atomic_bool abort_connect;

static void *abort_later(void *arg)
{
    (void)arg;
    usleep(200000); /* most likely waiting by now; either way works */
    atomic_store(&abort_connect, true);
    return NULL;
}

static void test_connect_abort(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    int lst = socket(AF_INET, SOCK_STREAM, 0), fill[3];
    char text[64];
    struct zm_uri uri;
    pthread_t thread;

    CHECK(lst >= 0 && bind(lst, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
              listen(lst, 0) == 0 &&
              getsockname(lst, (struct sockaddr *)&sa, &len) == 0,
          "listener: %s", strerror(errno));
    for (int i = 0; i < 3; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof(sa));
    }
    snprintf(text, sizeof(text), "tcp:127.0.0.1:%u", ntohs(sa.sin_port));
    CHECK(zm_uri_parse(text, &uri) == 0, "uri");

    zm_conn *conn = (zm_conn *)&uri; /* must stay as it is */
    atomic_store(&abort_connect, true);
    int ret = zm_conn_connect(&uri, &abort_connect, &conn);
    CHECK(ret == -ECANCELED && conn == (zm_conn *)&uri,
          "connect, already aborted: %d", ret);

    atomic_store(&abort_connect, false);
    pthread_create(&thread, NULL, abort_later, NULL);
    ret = zm_conn_connect(&uri, &abort_connect, &conn);
    pthread_join(thread, NULL);
    CHECK(ret == -ECANCELED && conn == (zm_conn *)&uri,
          "connect, aborted while waiting: %d (%s)", ret, zm_errmsg());
    printf("connect abort: %s\n", zm_errmsg());
    for (int i = 0; i < 3; i++) {
        close(fill[i]);
    }
    close(lst);
}

int main(void)
{
    char unix_uri[64];

    test_uris();
    test_stream("tcp:127.0.0.1:0");
    snprintf(unix_uri, sizeof(unix_uri), "unix:/tmp/zm-test-%d.sock",
             (int)getpid());
    test_stream(unix_uri);
    test_shutdown();
    test_connect_abort();
    test_file();
    test_caps();
    test_shutdown_read();
    return t_exit();
}
