/* tp_sock.h - socket helpers for listeners. */
#ifndef TP_SOCK_H
#define TP_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tp_conf.h"

/* Opens a non-blocking listening socket for l: SO_REUSEADDR, SO_REUSEPORT if
 * asked, IPV6_V6ONLY for IPv6, TCP_NODELAY if asked (accepted sockets inherit
 * it), bound and listening with l->backlog. Returns the fd, or -errno with
 * *what naming the call that failed ("bind", "listen", ...). */
int tp_sock_listen(const struct tp_listen_conf *l, const char **what);

/* The port fd is bound to, in host order; 0 on error. */
uint16_t tp_sock_port(int fd);

/* Writes fd's peer address as "1.2.3.4:5678" or "[::1]:5678" into buf
 * ("?" if unknown) and returns buf. */
const char *tp_sock_peer(int fd, char *buf, size_t len);

/* The same for an address already at hand (accept's); a family other
 * than AF_INET or AF_INET6 is "?". Returns buf. */
const char *tp_sock_addr_text(const struct sockaddr *sa, char *buf, size_t len);

#endif /* TP_SOCK_H */
