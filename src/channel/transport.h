/*
 * transport.h - byte streams between the two ends of a migration
 *
 * A connection is a reliable byte stream behind a small ops table, so that
 * TLS, a fault-injecting proxy or a resumable channel can be slotted in
 * without touching the engine or the session.  Today: TCP, UNIX sockets,
 * and files (a saved migration stream).
 */
#ifndef ZM_TRANSPORT_H
#define ZM_TRANSPORT_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

enum zm_uri_kind {
    ZM_URI_TCP,  /* tcp:HOST:PORT, HOST may be [v6] */
    ZM_URI_UNIX, /* unix:PATH */
    ZM_URI_FILE, /* file:PATH */
};

struct zm_uri {
    enum zm_uri_kind kind;
    char host[256];
    char port[16];
    char path[PATH_MAX];
};

/* Parses text into uri; -EINVAL with zm_errmsg() set when it is not one. */
int zm_uri_parse(const char *text, struct zm_uri *uri);

typedef struct zm_conn zm_conn;

/*
 * What a transport is, so that the session adapts to it without naming it.
 * file: has both: a saved stream, read later by nobody who could answer.
 */
#define ZM_CONN_ONE_STREAM (1u << 0) /* every channel's frames, in order */
#define ZM_CONN_ONE_WAY (1u << 1)    /* no answer: no ACCEPT, COMPLETE, FAIL */

struct zm_conn_ops {
    unsigned caps; /* ZM_CONN_* */
    /* Writes some of iov; returns bytes written or a negative errno. */
    ssize_t (*writev)(zm_conn *conn, const struct iovec *iov, int iovcnt);
    /* Reads into iov, some of it; 0 at end of stream, or a negative errno. */
    ssize_t (*readv)(zm_conn *conn, const struct iovec *iov, int iovcnt);
    /* Makes blocked and later reads and writes fail (cancellation). */
    void (*shutdown)(zm_conn *conn);
    /* Makes blocked and later reads fail; writes still go. */
    void (*shutdown_read)(zm_conn *conn);
    /* The peer has sent something or hung up; never blocks. */
    bool (*peer_spoke)(zm_conn *conn);
    /* Bytes written but not yet taken by the peer (0 if unknown). */
    size_t (*unsent)(zm_conn *conn);
    void (*close)(zm_conn *conn);
};

struct zm_conn {
    const struct zm_conn_ops *ops;
    int fd;
    /* Seconds writes waited for the socket to take more (the writer's). */
    double write_blocked;
};

/*
 * Connects to uri (for file: creates or truncates the file).  A TCP
 * connect gives up with -ECANCELED once *abort turns true (abort may be
 * NULL): a host that drops SYNs would otherwise hold it for minutes.
 */
int zm_conn_connect(const struct zm_uri *uri, const atomic_bool *abort,
                    zm_conn **out);

/* The connection's ZM_CONN_* capabilities. */
unsigned zm_conn_caps(const zm_conn *conn);

/* Opens an existing file: URI for reading. */
int zm_conn_open_file(const struct zm_uri *uri, zm_conn **out);

/* Wraps a connected descriptor; the connection owns it from now on. */
int zm_conn_from_fd(int fd, zm_conn **out);

#define ZM_CONN_MAX_IOV 64

/*
 * Writes all of iov (at most ZM_CONN_MAX_IOV buffers), retrying short
 * writes; 0 or a negative errno.
 */
int zm_conn_write_all(zm_conn *conn, const struct iovec *iov, int iovcnt);

/*
 * Reads exactly len bytes.  Returns 0, -ENODATA when the stream ended
 * before the first byte (a clean end), -ECONNRESET when it ended in the
 * middle, or another negative errno.
 */
int zm_conn_read_all(zm_conn *conn, void *buf, size_t len);

/*
 * Fills all of iov (iovcnt <= IOV_MAX buffers), as zm_conn_read_all()
 * fills one; the entries are used up as they fill, so iov is left changed.
 */
int zm_conn_readv_all(zm_conn *conn, struct iovec *iov, int iovcnt);

void zm_conn_shutdown(zm_conn *conn);
/* Makes blocked and later reads fail; writes still go (a last word). */
void zm_conn_shutdown_read(zm_conn *conn);
/*
 * True when the peer has sent something or hung up: on a channel that
 * should be silent, a sign of failure.  Never blocks; false for files.
 */
bool zm_conn_peer_spoke(zm_conn *conn);
/*
 * Bytes already written that still wait in this end's buffers: on a slow
 * link, what the next write must queue behind.
 */
size_t zm_conn_unsent(zm_conn *conn);

/*
 * TCP's own accounts (tcpi_busy_time, tcpi_rwnd_limited): microseconds
 * it had data to send, and of those, the receiver's window was full (the
 * receiver, not the network, was the limit).  -ENOTSUP when the
 * connection is not TCP or the kernel does not keep them.
 */
int zm_conn_tcp_limits(zm_conn *conn, uint64_t *busy_us, uint64_t *rwnd_us);
/* Closes and frees; accepts NULL. */
void zm_conn_close(zm_conn *conn);

typedef struct zm_listener zm_listener;

/* Listens on a tcp: or unix: URI; port 0 picks a free port. */
int zm_listener_open(const struct zm_uri *uri, zm_listener **out);

/* The URI peers should connect to (with the port actually bound). */
const char *zm_listener_uri(const zm_listener *lst);

/*
 * Waits up to timeout_ms (-1: forever) for a peer.  Returns 0 and sets
 * *out, -ETIMEDOUT, or another negative errno.
 */
int zm_listener_accept(zm_listener *lst, int timeout_ms, zm_conn **out);

/* Closes and frees; removes the socket file of a unix: listener. */
void zm_listener_close(zm_listener *lst);

#endif /* ZM_TRANSPORT_H */
