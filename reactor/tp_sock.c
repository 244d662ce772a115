/* tp_sock.c - listening sockets. */
#include "tp_sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

static int set_int(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof(value));
}

static int set_options(int fd, const struct tp_listen_conf *l, const char **what)
{
    *what = "setsockopt";
    if (set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0)
        return -errno;
    if (l->reuseport && set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1) < 0)
        return -errno;
    if (l->addr.ss_family == AF_INET6 && set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1) < 0)
        return -errno;
    if (l->tcp_nodelay && set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1) < 0)
        return -errno;
    return 0;
}

int tp_sock_listen(const struct tp_listen_conf *l, const char **what)
{
    int fd, err;

    *what = "socket";
    fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    err = set_options(fd, l, what);
    if (err < 0)
        goto out_close;
    *what = "bind";
    if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) < 0)
        goto out_errno;
    *what = "listen";
    if (listen(fd, l->backlog) < 0)
        goto out_errno;
    return fd;

out_errno:
    err = -errno;
out_close:
    close(fd);
    return err;
}

uint16_t tp_sock_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

const char *tp_sock_addr_text(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];

    snprintf(buf, len, "?");
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)sa;

        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(a->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)sa;

        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, ntohs(a->sin6_port));
    }
    return buf;
}

const char *tp_sock_peer(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
        snprintf(buf, len, "?");
        return buf;
    }
    return tp_sock_addr_text((struct sockaddr *)&ss, buf, len);
}
