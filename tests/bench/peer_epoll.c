/* peer_epoll.c - the plainest fast echo server: one thread, one epoll loop.
 *
 * Edge-triggered: read until drained and write each chunk back at once. A
 * connection is its fd and nothing else, until a write comes up short: then the
 * rest is kept in a pending buffer, EPOLLOUT is added, and the connection is
 * not read again until that buffer is sent. This is the ceiling for a single
 * reactor thread that tests/bench/run compares tidepool with.
 * usage: peer_epoll PORT   (listens on 127.0.0.1; SIGTERM/SIGINT stop it) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define MAX_EVENTS 256
#define BACKLOG 4096

/* What a full socket did not take. */
struct pending {
    size_t off, len;
    char data[];
};

/* Mutable globals: pending[fd] is NULL unless that connection has unsent
 * bytes; the table is sized to the open-file limit once, in main. */
static struct pending **pending;
static int epfd = -1;

/* Raises the soft open-file limit to the hard one; returns the soft limit. */
static rlim_t raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : rl.rlim_cur;
}

/* Returns a non-blocking socket listening on 127.0.0.1:port, or -1. */
static int listen_on(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int one = 1, fd;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, BACKLOG) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Blocks SIGINT and SIGTERM and returns a signalfd for them, or -1. */
static int signal_fd(void)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static int watch(int fd, int op, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };

    return epoll_ctl(epfd, op, fd, &ev);
}

static void conn_close(int fd)
{
    free(pending[fd]);
    pending[fd] = NULL;
    close(fd);   /* also removes fd from the epoll set */
}

/* Writes buf; keeps what the socket does not take. Returns 0 if all was sent,
 * -EAGAIN if some was kept (EPOLLOUT is then watched), -errno on error. */
static int send_or_keep(int fd, const char *buf, size_t len)
{
    struct pending *p;
    ssize_t n;

    do
        n = write(fd, buf, len);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN)
        return -errno;
    if (n == (ssize_t)len)
        return 0;
    if (n < 0)
        n = 0;
    p = malloc(sizeof(*p) + len - (size_t)n);
    if (p == NULL)
        return -ENOMEM;
    p->off = 0;
    p->len = len - (size_t)n;
    memcpy(p->data, buf + n, p->len);
    pending[fd] = p;
    return watch(fd, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0 ? -errno : -EAGAIN;
}

/* Sends pending bytes. Returns 0 once none are left (and frees the buffer),
 * -EAGAIN if the socket is full again, -errno on error. */
static int flush(int fd)
{
    struct pending *p = pending[fd];
    ssize_t n;

    while (p->off < p->len) {
        n = write(fd, p->data + p->off, p->len - p->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? -EAGAIN : -errno;
        p->off += (size_t)n;
    }
    free(p);
    pending[fd] = NULL;
    return 0;
}

/* Any event on a connection: finish pending output, then echo until the
 * socket is drained. A read shorter than the buffer drained it (the next
 * bytes raise a new edge), so no read is spent on EAGAIN, as in nginx; unless
 * the peer also closed (EPOLLRDHUP), when we read on to see the EOF. Errors
 * and EOF show up as read() failing or returning 0. */
static void on_conn(int fd, uint32_t events)
{
    static char buf[CHUNK];
    ssize_t n;
    int rc = 0;

    if (pending[fd] != NULL)
        rc = flush(fd);
    while (rc == 0) {
        n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0)
            break;
        rc = send_or_keep(fd, buf, (size_t)n);
        if (rc == 0 && (size_t)n < sizeof(buf) && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
            return;
    }
    if (rc != -EAGAIN)
        conn_close(fd);
}

static void on_accept(int lfd, rlim_t maxfd)
{
    static bool warned;
    int one = 1, fd;

    while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        if ((rlim_t)fd >= maxfd || watch(fd, EPOLL_CTL_ADD, EPOLLIN | EPOLLRDHUP | EPOLLET) < 0) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if ((errno == EMFILE || errno == ENFILE) && !warned) {
        warned = true;   /* level-triggered: this repeats until fds free up */
        fprintf(stderr, "peer_epoll: accept: %s\n", strerror(errno));
    }
}

static int parse_port(int argc, char **argv)
{
    char *end;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : 0;

    if (argc != 2 || *end != '\0' || port < 1 || port > 65535) {
        fprintf(stderr, "usage: peer_epoll PORT\n");
        return -1;
    }
    return (int)port;
}

int main(int argc, char **argv)
{
    struct epoll_event ev[MAX_EVENTS];
    int port = parse_port(argc, argv), lfd, sfd, n, i;
    rlim_t maxfd = raise_nofile();
    bool running = true;

    if (port < 0)
        return 2;
    pending = calloc(maxfd, sizeof(*pending));
    sfd = signal_fd();
    lfd = listen_on(port);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (pending == NULL || sfd < 0 || lfd < 0 || epfd < 0 ||
        watch(lfd, EPOLL_CTL_ADD, EPOLLIN) < 0 || watch(sfd, EPOLL_CTL_ADD, EPOLLIN) < 0) {
        fprintf(stderr, "peer_epoll: port %d: %s\n", port, strerror(errno));
        return 1;
    }
    while (running) {
        n = epoll_wait(epfd, ev, MAX_EVENTS, -1);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "peer_epoll: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        for (i = 0; i < n; i++) {
            if (ev[i].data.fd == lfd)
                on_accept(lfd, maxfd);
            else if (ev[i].data.fd == sfd)
                running = false;
            else
                on_conn(ev[i].data.fd, ev[i].events);
        }
    }
    close(lfd);
    close(epfd);
    return 0;
}
