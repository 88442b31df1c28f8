/*
 * transport.c - TCP, UNIX-socket and file streams behind zm_conn_ops
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/error.h"
#include "common/time.h"
#include "transport.h"

/* ---- URIs ---- */

static int copy_field(char *dst, size_t cap, const char *src, size_t len,
                      const char *text, const char *what)
{
    if (len == 0 || len >= cap) {
        return zm_error(-EINVAL, "URI '%s': %s is %s", text, what,
                        len == 0 ? "empty" : "too long");
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

int zm_uri_parse(const char *text, struct zm_uri *uri)
{
    memset(uri, 0, sizeof(*uri));
    if (strncmp(text, "unix:", 5) == 0 || strncmp(text, "file:", 5) == 0) {
        uri->kind = text[0] == 'u' ? ZM_URI_UNIX : ZM_URI_FILE;
        size_t max = uri->kind == ZM_URI_UNIX
                         ? sizeof(((struct sockaddr_un *)0)->sun_path)
                         : sizeof(uri->path);
        return copy_field(uri->path, max, text + 5, strlen(text + 5), text,
                          "the path");
    }
    if (strncmp(text, "tcp:", 4) != 0) {
        return zm_error(-EINVAL,
                        "URI '%s': expected tcp:HOST:PORT, "
                        "unix:PATH or file:PATH",
                        text);
    }
    const char *host = text + 4;
    const char *colon;
    size_t host_len;

    uri->kind = ZM_URI_TCP;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (!close || close[1] != ':') {
            return zm_error(-EINVAL, "URI '%s': expected [ADDRESS]:PORT", text);
        }
        host++;
        host_len = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(host, ':');
        if (!colon) {
            return zm_error(-EINVAL, "URI '%s': expected tcp:HOST:PORT", text);
        }
        host_len = (size_t)(colon - host);
    }
    int ret = copy_field(uri->host, sizeof(uri->host), host, host_len, text,
                         "the host");
    if (ret < 0) {
        return ret;
    }
    const char *port = colon + 1;
    char *end;
    errno = 0;
    unsigned long value = strtoul(port, &end, 10);
    if (*port == '\0' || *end != '\0' || value > 65535 || errno) {
        return zm_error(-EINVAL, "URI '%s': port '%s' is not 0..65535", text,
                        port);
    }
    return copy_field(uri->port, sizeof(uri->port), port, strlen(port), text,
                      "the port");
}

/* ---- descriptors ---- */

static ssize_t fd_writev(zm_conn *conn, const struct iovec *iov, int iovcnt)
{
    ssize_t n = writev(conn->fd, iov, iovcnt);
    return n < 0 ? -errno : n;
}

/* sendmsg, not writev: a peer that went away must give -EPIPE, not a
 * SIGPIPE that kills the embedding process. */
/*
 * An established connection reports ECONNREFUSED when an ICMP port
 * unreachable came back for it: a reset, as far as we are concerned.  The
 * session keeps -ECONNREFUSED for the peer's own REFUSE or FAIL frame.
 */
static ssize_t socket_error(void)
{
    return errno == ECONNREFUSED ? -ECONNRESET : -errno;
}

static ssize_t socket_writev(zm_conn *conn, const struct iovec *iov, int iovcnt)
{
    struct msghdr msg = { .msg_iov = (struct iovec *)iov,
                          .msg_iovlen = (size_t)iovcnt };
    ssize_t n;

    /* While the socket is full the link is the limit: count the waits,
     * which tell --compression auto that the link, not the CPU, is short.
     * A shutdown() wakes the poll, and the next sendmsg() fails. */
    while ((n = sendmsg(conn->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0 &&
           (errno == EAGAIN || errno == EWOULDBLOCK)) {
        struct pollfd pfd = { .fd = conn->fd, .events = POLLOUT };
        double start = zm_now();
        poll(&pfd, 1, -1);
        conn->write_blocked += zm_now() - start;
    }
    return n < 0 ? socket_error() : n;
}

static ssize_t socket_readv(zm_conn *conn, const struct iovec *iov, int iovcnt)
{
    ssize_t n = readv(conn->fd, iov, iovcnt);
    return n < 0 ? socket_error() : n;
}

static ssize_t fd_readv(zm_conn *conn, const struct iovec *iov, int iovcnt)
{
    ssize_t n = readv(conn->fd, iov, iovcnt);
    return n < 0 ? -errno : n;
}

static void socket_shutdown(zm_conn *conn)
{
    shutdown(conn->fd, SHUT_RDWR);
}

/* TCP: not yet acknowledged; UNIX: not yet read by the peer. */
static size_t socket_unsent(zm_conn *conn)
{
    int n = 0;
    return ioctl(conn->fd, SIOCOUTQ, &n) == 0 && n > 0 ? (size_t)n : 0;
}

static size_t file_unsent(zm_conn *conn)
{
    (void)conn; /* written is as good as delivered */
    return 0;
}

static void file_shutdown(zm_conn *conn)
{
    (void)conn; /* file I/O does not block indefinitely */
}

static void socket_shutdown_read(zm_conn *conn)
{
    shutdown(conn->fd, SHUT_RD);
}

static bool socket_peer_spoke(zm_conn *conn)
{
    struct pollfd pfd = { .fd = conn->fd, .events = POLLIN | POLLRDHUP };

    return poll(&pfd, 1, 0) > 0;
}

static bool file_peer_spoke(zm_conn *conn)
{
    (void)conn; /* a file has no peer */
    return false;
}

static void fd_close(zm_conn *conn)
{
    close(conn->fd);
    free(conn);
}

static const struct zm_conn_ops socket_ops = {
    .caps = 0,
    .writev = socket_writev,
    .readv = socket_readv,
    .shutdown = socket_shutdown,
    .shutdown_read = socket_shutdown_read,
    .peer_spoke = socket_peer_spoke,
    .unsent = socket_unsent,
    .close = fd_close,
};

static const struct zm_conn_ops file_ops = {
    .caps = ZM_CONN_ONE_STREAM | ZM_CONN_ONE_WAY,
    .writev = fd_writev,
    .readv = fd_readv,
    .shutdown = file_shutdown,
    .shutdown_read = file_shutdown,
    .peer_spoke = file_peer_spoke,
    .unsent = file_unsent,
    .close = fd_close,
};

static int conn_new(int fd, const struct zm_conn_ops *ops, zm_conn **out)
{
    zm_conn *conn = calloc(1, sizeof(*conn));

    if (!conn) {
        close(fd);
        return zm_error(-ENOMEM, "out of memory");
    }
    conn->ops = ops;
    conn->fd = fd;
    *out = conn;
    return 0;
}

int zm_conn_from_fd(int fd, zm_conn **out)
{
    return conn_new(fd, &socket_ops, out);
}

static void tune_socket(int fd, int family)
{
    int one = 1;

    if (family == AF_INET || family == AF_INET6) {
        /*
         * A peer that vanished (host down, link cut) must not hold a
         * migration for TCP's fifteen minutes: probe an idle connection
         * after 10 s, give up after 3 unanswered probes 5 s apart, or once
         * sent data has made no progress for 30 s.  That also ends a peer
         * alive but not reading for 30 s (Linux counts zero-window probes
         * too), which no healthy migration does.  Once the switchover has
         * gone out whole, such an end is reported unconfirmed, never
         * resumed from.
         */
        int idle = 10, intvl = 5, cnt = 3, user_timeout_ms = 30000;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
                   sizeof(user_timeout_ms));
        /* Packets are written whole; waiting to coalesce only adds delay
         * to the small control messages. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /*
         * What the kernel holds unsent must go before the stop's last
         * pages: capping it keeps the downtime short, while the data in
         * flight keeps the link busy.  On a 1 Gbit/s link this cut the
         * queue from ~10 MB to ~1 MB and the downtime by a third, at the
         * same throughput (doc/results/2026-11-24-vm-vs-qemu.md).
         */
        int lowat = 1 << 20;
        setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
    }
}

static int resolve(const struct zm_uri *uri, bool passive,
                   struct addrinfo **res)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = passive ? AI_PASSIVE : 0,
    };
    int ret = getaddrinfo(uri->host, uri->port, &hints, res);

    if (ret != 0) {
        return zm_error(-EHOSTUNREACH, "tcp:%s:%s: %s", uri->host, uri->port,
                        gai_strerror(ret));
    }
    return 0;
}

static int unix_address(const struct zm_uri *uri, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (strlen(uri->path) >= sizeof(sun->sun_path)) {
        return zm_error(-ENAMETOOLONG, "unix:%s: path too long", uri->path);
    }
    strcpy(sun->sun_path, uri->path);
    return 0;
}

/* connect(), in 200 ms slices that look at *abort when it is given. */
static int connect_abortable(int fd, const struct sockaddr *addr, socklen_t len,
                             const atomic_bool *abort)
{
    if (!abort) {
        return connect(fd, addr, len) == 0 ? 0 : -errno;
    }
    int flags = fcntl(fd, F_GETFL);
    int ret = 0;

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        return -errno;
    }
    if (connect(fd, addr, len) != 0) {
        ret = -errno;
    }
    struct pollfd pfd = { .fd = fd, .events = POLLOUT };
    while (ret == -EINPROGRESS) {
        if (atomic_load(abort)) {
            ret = -ECANCELED;
            break;
        }
        int n = poll(&pfd, 1, 200);
        if (n < 0 && errno != EINTR) {
            ret = -errno;
        } else if (n > 0) {
            int err = 0;
            socklen_t err_len = sizeof(err);
            ret = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) < 0
                      ? -errno
                      : -err;
        }
    }
    if (fcntl(fd, F_SETFL, flags) < 0 && ret == 0) {
        ret = -errno;
    }
    return ret;
}

int zm_conn_connect(const struct zm_uri *uri, const atomic_bool *abort,
                    zm_conn **out)
{
    int fd, ret;

    if (uri->kind == ZM_URI_FILE) {
        fd = open(uri->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            return zm_error(-errno, "file:%s: %s", uri->path, strerror(errno));
        }
        return conn_new(fd, &file_ops, out);
    }
    if (uri->kind == ZM_URI_UNIX) {
        struct sockaddr_un sun;
        if ((ret = unix_address(uri, &sun)) < 0) {
            return ret;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
            ret = -errno;
            if (fd >= 0) {
                close(fd);
            }
            return zm_error(ret, "unix:%s: %s", uri->path, strerror(-ret));
        }
        return conn_new(fd, &socket_ops, out);
    }

    struct addrinfo *res, *ai;
    if ((ret = resolve(uri, false, &res)) < 0) {
        return ret;
    }
    ret = -ECONNREFUSED;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            ret = -errno;
            continue;
        }
        if ((ret = connect_abortable(fd, ai->ai_addr, ai->ai_addrlen, abort)) ==
            0) {
            tune_socket(fd, ai->ai_family);
            break;
        }
        close(fd);
        if (ret == -ECANCELED) {
            freeaddrinfo(res);
            return zm_error(ret, "tcp:%s:%s: connect cancelled", uri->host,
                            uri->port);
        }
    }
    freeaddrinfo(res);
    if (!ai) {
        return zm_error(ret, "tcp:%s:%s: %s", uri->host, uri->port,
                        strerror(-ret));
    }
    return conn_new(fd, &socket_ops, out);
}

int zm_conn_open_file(const struct zm_uri *uri, zm_conn **out)
{
    int fd = open(uri->path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return zm_error(-errno, "file:%s: %s", uri->path, strerror(errno));
    }
    return conn_new(fd, &file_ops, out);
}

/* Drops n transferred bytes from the front of iov, and empty entries. */
static void iov_advance(struct iovec **iov, int *iovcnt, size_t n)
{
    struct iovec *v = *iov;

    while (*iovcnt > 0 && n >= v->iov_len) {
        n -= v->iov_len;
        v++;
        (*iovcnt)--;
    }
    if (*iovcnt > 0) {
        v->iov_base = (char *)v->iov_base + n;
        v->iov_len -= n;
    }
    *iov = v;
}

int zm_conn_write_all(zm_conn *conn, const struct iovec *iov, int iovcnt)
{
    struct iovec local[ZM_CONN_MAX_IOV];
    struct iovec *v = local;

    if (iovcnt < 0 || iovcnt > ZM_CONN_MAX_IOV) {
        return zm_error(-EINVAL, "write: %d buffers, at most %d", iovcnt,
                        ZM_CONN_MAX_IOV);
    }
    /* A private copy, advanced past what each short write took. */
    memcpy(local, iov, (size_t)iovcnt * sizeof(*iov));
    while (iovcnt > 0) {
        ssize_t n = conn->ops->writev(conn, v, iovcnt);
        if (n == -EINTR) {
            continue;
        }
        if (n < 0) {
            return (int)n;
        }
        iov_advance(&v, &iovcnt, (size_t)n);
    }
    return 0;
}

int zm_conn_readv_all(zm_conn *conn, struct iovec *iov, int iovcnt)
{
    bool started = false;

    iov_advance(&iov, &iovcnt, 0);
    while (iovcnt > 0) {
        ssize_t n = conn->ops->readv(conn, iov, iovcnt);
        if (n == -EINTR) {
            continue;
        }
        if (n < 0) {
            return (int)n;
        }
        if (n == 0) {
            return started ? -ECONNRESET : -ENODATA;
        }
        started = true;
        iov_advance(&iov, &iovcnt, (size_t)n);
    }
    return 0;
}

int zm_conn_read_all(zm_conn *conn, void *buf, size_t len)
{
    struct iovec iov = { buf, len };
    return zm_conn_readv_all(conn, &iov, 1);
}

void zm_conn_shutdown(zm_conn *conn)
{
    if (conn) {
        conn->ops->shutdown(conn);
    }
}

void zm_conn_shutdown_read(zm_conn *conn)
{
    if (conn) {
        conn->ops->shutdown_read(conn);
    }
}

bool zm_conn_peer_spoke(zm_conn *conn)
{
    return conn->ops->peer_spoke(conn);
}

unsigned zm_conn_caps(const zm_conn *conn)
{
    return conn->ops->caps;
}

size_t zm_conn_unsent(zm_conn *conn)
{
    return conn ? conn->ops->unsent(conn) : 0;
}

void zm_conn_close(zm_conn *conn)
{
    if (conn) {
        conn->ops->close(conn);
    }
}

/* ---- listeners ---- */

struct zm_listener {
    int fd;
    struct zm_uri uri;
    char uri_text[PATH_MAX + 16];
};

int zm_listener_open(const struct zm_uri *uri, zm_listener **out)
{
    zm_listener *lst = calloc(1, sizeof(*lst));
    int ret;

    if (!lst) {
        return zm_error(-ENOMEM, "out of memory");
    }
    lst->fd = -1;
    lst->uri = *uri;
    if (uri->kind == ZM_URI_FILE) {
        free(lst);
        return zm_error(-EINVAL,
                        "file:%s: a file is opened, not listened "
                        "on",
                        uri->path);
    }
    if (uri->kind == ZM_URI_UNIX) {
        struct sockaddr_un sun;
        if ((ret = unix_address(uri, &sun)) < 0) {
            free(lst);
            return ret;
        }
        unlink(uri->path); /* a stale socket from an earlier run */
        lst->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lst->fd < 0 ||
            bind(lst->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
            listen(lst->fd, 64) < 0) {
            ret = zm_error(-errno, "unix:%s: %s", uri->path, strerror(errno));
            zm_listener_close(lst);
            return ret;
        }
        snprintf(lst->uri_text, sizeof(lst->uri_text), "unix:%s", uri->path);
        *out = lst;
        return 0;
    }

    struct addrinfo *res;
    if ((ret = resolve(uri, true, &res)) < 0) {
        free(lst);
        return ret;
    }
    int one = 1;
    lst->fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
                     res->ai_protocol);
    if (lst->fd < 0 ||
        setsockopt(lst->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(lst->fd, res->ai_addr, res->ai_addrlen) < 0 ||
        listen(lst->fd, 64) < 0) {
        ret = zm_error(-errno, "tcp:%s:%s: %s", uri->host, uri->port,
                       strerror(errno));
        freeaddrinfo(res);
        zm_listener_close(lst);
        return ret;
    }
    freeaddrinfo(res);

    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char host[256], port[16];
    getsockname(lst->fd, (struct sockaddr *)&ss, &sslen);
    getnameinfo((struct sockaddr *)&ss, sslen, host, sizeof(host), port,
                sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(lst->uri_text, sizeof(lst->uri_text),
             strchr(host, ':') ? "tcp:[%s]:%s" : "tcp:%s:%s", host, port);
    *out = lst;
    return 0;
}

const char *zm_listener_uri(const zm_listener *lst)
{
    return lst->uri_text;
}

int zm_listener_accept(zm_listener *lst, int timeout_ms, zm_conn **out)
{
    struct pollfd pfd = { .fd = lst->fd, .events = POLLIN };

    for (;;) {
        int ret = poll(&pfd, 1, timeout_ms);
        if (ret < 0 && errno == EINTR) {
            continue;
        }
        if (ret < 0) {
            return zm_error(-errno, "%s: %s", lst->uri_text, strerror(errno));
        }
        if (ret == 0) {
            return zm_error(-ETIMEDOUT,
                            "%s: no peer connected within "
                            "%d ms",
                            lst->uri_text, timeout_ms);
        }
        int fd = accept4(lst->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED)) {
            continue;
        }
        if (fd < 0) {
            return zm_error(-errno, "%s: accept: %s", lst->uri_text,
                            strerror(errno));
        }
        tune_socket(fd, lst->uri.kind == ZM_URI_TCP ? AF_INET : AF_UNIX);
        return conn_new(fd, &socket_ops, out);
    }
}

void zm_listener_close(zm_listener *lst)
{
    if (!lst) {
        return;
    }
    if (lst->fd >= 0) {
        close(lst->fd);
        if (lst->uri.kind == ZM_URI_UNIX) {
            unlink(lst->uri.path);
        }
    }
    free(lst);
}
