/*
 * tcpinfo.c - what TCP says limited a connection's sending
 *
 * Apart from transport.c: <linux/tcp.h> has the newer tcp_info fields,
 * and it does not mix with <netinet/tcp.h>.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/tcp.h>

#include "transport.h"

int zm_conn_tcp_limits(zm_conn *conn, uint64_t *busy_us, uint64_t *rwnd_us)
{
    struct tcp_info info;
    socklen_t len = sizeof(info);

    memset(&info, 0, sizeof(info));
    if (!conn || getsockopt(conn->fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0) {
        return -ENOTSUP; /* not TCP: a UNIX socket, a file */
    }
    /* Kernels before 4.10 do not keep these. */
    if (len < offsetof(struct tcp_info, tcpi_rwnd_limited) +
                  sizeof(info.tcpi_rwnd_limited)) {
        return -ENOTSUP;
    }
    *busy_us = info.tcpi_busy_time;
    *rwnd_us = info.tcpi_rwnd_limited;
    return 0;
}
