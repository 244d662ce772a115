/* peer_mt_epoll.c - N copies of peer_epoll's loop, one per thread.
 *
 * Each thread has its own epoll set and its own SO_REUSEPORT listening socket
 * on the same port, so the kernel spreads connections over the threads and the
 * threads share nothing but the fd-indexed pending table (each fd belongs to
 * one thread). The per-connection code is peer_epoll.c's, with the epoll fd
 * passed in. The main thread waits for SIGTERM/SIGINT and stops the loops.
 * usage: peer_mt_epoll [-t THREADS] PORT   (THREADS default: online CPUs) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define MAX_EVENTS 256
#define BACKLOG 4096
#define MAX_THREADS 256

struct pending {
    size_t off, len;
    char data[];
};

struct loop {
    pthread_t tid;
    int epfd, lfd;
};

/* Mutable globals, set in main before the threads start: pending[fd] is
 * touched only by the thread that accepted fd; stop_fd is written once. */
static struct pending **pending;
static rlim_t maxfd;
static int stop_fd = -1;

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

/* Returns a non-blocking SO_REUSEPORT socket on 127.0.0.1:port, or -1. */
static int listen_on(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int one = 1, fd;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, BACKLOG) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int watch(int epfd, int fd, int op, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };

    return epoll_ctl(epfd, op, fd, &ev);
}

static void conn_close(int fd)
{
    free(pending[fd]);
    pending[fd] = NULL;
    close(fd);
}

/* As in peer_epoll.c: 0 all sent, -EAGAIN rest kept, -errno on error. */
static int send_or_keep(int epfd, int fd, const char *buf, size_t len)
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
    return watch(epfd, fd, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT | EPOLLET) < 0 ? -errno : -EAGAIN;
}

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

static void on_conn(int epfd, int fd)
{
    char buf[CHUNK];
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
        rc = send_or_keep(epfd, fd, buf, (size_t)n);
    }
    if (rc != -EAGAIN)
        conn_close(fd);
}

static void on_accept(const struct loop *lp)
{
    static _Thread_local bool warned;
    int one = 1, fd;

    while ((fd = accept4(lp->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        if ((rlim_t)fd >= maxfd || watch(lp->epfd, fd, EPOLL_CTL_ADD, EPOLLIN | EPOLLET) < 0) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if ((errno == EMFILE || errno == ENFILE) && !warned) {
        warned = true;   /* level-triggered: this repeats until fds free up */
        fprintf(stderr, "peer_mt_epoll: accept: %s\n", strerror(errno));
    }
}

/* One thread's loop; returns when stop_fd becomes readable. */
static void *run_loop(void *arg)
{
    struct loop *lp = arg;
    struct epoll_event ev[MAX_EVENTS];
    int n, i;

    for (;;) {
        n = epoll_wait(lp->epfd, ev, MAX_EVENTS, -1);
        if (n < 0 && errno != EINTR)
            break;
        for (i = 0; i < n; i++) {
            if (ev[i].data.fd == stop_fd)
                return NULL;
            if (ev[i].data.fd == lp->lfd)
                on_accept(lp);
            else
                on_conn(lp->epfd, ev[i].data.fd);
        }
    }
    fprintf(stderr, "peer_mt_epoll: epoll_wait: %s\n", strerror(errno));
    return NULL;
}

/* Creates a loop's epoll set and listener. Returns 0 or -1 with errno set. */
static int loop_init(struct loop *lp, int port)
{
    lp->lfd = listen_on(port);
    lp->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (lp->lfd < 0 || lp->epfd < 0)
        return -1;
    if (watch(lp->epfd, lp->lfd, EPOLL_CTL_ADD, EPOLLIN) < 0 ||
        watch(lp->epfd, stop_fd, EPOLL_CTL_ADD, EPOLLIN) < 0)
        return -1;
    return 0;
}

static int parse_args(int argc, char **argv, int *port, int *nthreads)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN), v;
    char *end;
    int ch;

    *nthreads = cpus > 0 ? (int)(cpus < MAX_THREADS ? cpus : MAX_THREADS) : 1;
    while ((ch = getopt(argc, argv, "t:")) != -1) {
        v = ch == 't' ? strtol(optarg, &end, 10) : 0;
        if (ch != 't' || *end != '\0' || v < 1 || v > MAX_THREADS)
            goto usage;
        *nthreads = (int)v;
    }
    if (optind != argc - 1)
        goto usage;
    v = strtol(argv[optind], &end, 10);
    if (*end != '\0' || v < 1 || v > 65535)
        goto usage;
    *port = (int)v;
    return 0;
usage:
    fprintf(stderr, "usage: peer_mt_epoll [-t THREADS(1-%d)] PORT\n", MAX_THREADS);
    return -1;
}

int main(int argc, char **argv)
{
    static struct loop loops[MAX_THREADS];
    uint64_t one = 1;
    sigset_t set;
    int port, nthreads, sig, i;

    if (parse_args(argc, argv, &port, &nthreads) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);   /* inherited by every loop thread */
    maxfd = raise_nofile();
    pending = calloc(maxfd, sizeof(*pending));
    stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (pending == NULL || stop_fd < 0) {
        fprintf(stderr, "peer_mt_epoll: %s\n", strerror(errno));
        return 1;
    }
    for (i = 0; i < nthreads; i++) {
        if (loop_init(&loops[i], port) < 0) {
            fprintf(stderr, "peer_mt_epoll: port %d: %s\n", port, strerror(errno));
            return 1;
        }
    }
    for (i = 0; i < nthreads; i++) {
        if ((errno = pthread_create(&loops[i].tid, NULL, run_loop, &loops[i])) != 0) {
            fprintf(stderr, "peer_mt_epoll: pthread_create: %s\n", strerror(errno));
            return 1;
        }
    }
    sigwait(&set, &sig);
    /* Never read, so stop_fd stays readable and wakes every loop. */
    if (write(stop_fd, &one, sizeof(one)) < 0)
        return 1;
    for (i = 0; i < nthreads; i++) {
        pthread_join(loops[i].tid, NULL);
        close(loops[i].lfd);
        close(loops[i].epfd);
    }
    return 0;
}
