/* tp_fault.c - an LD_PRELOAD library that makes the kernel look worse than
 * it is, for the tidepool binary under test (tests/e2e/test_stress.c, suite
 * fault).
 *
 *   TP_FAULT="seed=3,io=0.2,accept=0.02,alloc=0.001,after=300" LD_PRELOAD=libtp_fault.so tidepool ...
 *
 * Each key is a probability per call (0..1):
 *   read_short   read/recv on a socket asks the kernel for fewer bytes (1..n-1)
 *   read_eagain  read/recv fails with EAGAIN without reading
 *   read_eintr   read/recv fails with EINTR
 *   send_short   send/sendto/sendmsg/write/writev on a socket sends 1..n-1 bytes
 *   send_eagain  ... fails with EAGAIN without sending
 *   send_eintr   ... fails with EINTR
 *   accept       accept/accept4 fails with EMFILE or ENOBUFS (the connection
 *                stays in the backlog, as it does when the kernel says so)
 *   accept_abort accept/accept4 takes the connection, resets it and fails with
 *                ECONNABORTED (the client sees a reset, as with a real abort)
 *   epoll_eintr  epoll_wait fails with EINTR
 *   alloc        malloc/calloc/realloc called from the program itself (not
 *                from libc or other libraries) return NULL, once `after` ms
 *                have passed since start (start-up allocations succeed)
 *   io=R         sets the six read_ and send_ keys at once
 *   seed=N       the random sequence (per thread), default 1
 *   after=MS     see alloc, default 500
 *
 * Faithful to what the kernel may do to an edge-triggered reader: a read it
 * made short, or an EAGAIN it made up, left bytes in the socket that the
 * kernel will not signal again, so the fd's readiness is reported again at
 * the next epoll_wait (as a real arrival right after the read would); the
 * same for EPOLLOUT after a short or refused send. Only sockets are touched
 * (fstat), so conf files, eventfds and signalfds read as usual.
 *
 * At exit it writes one line to stderr, "tp_fault: injected read_short N
 * ...", so a test can check that faults were really injected. Socket calls
 * and epoll are assumed to come from one thread (the reactor), which is how
 * tidepool works; a mutex keeps the bookkeeping safe anyway. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum kind {
    READ_SHORT, READ_EAGAIN, READ_EINTR, SEND_SHORT, SEND_EAGAIN, SEND_EINTR,
    ACCEPT, ACCEPT_ABORT, EPOLL_EINTR, ALLOC, NKINDS
};

static const char *const kind_names[NKINDS] = {
    "read_short", "read_eagain", "read_eintr", "send_short", "send_eagain",
    "send_eintr", "accept", "accept_abort", "epoll_eintr", "alloc",
};

#define MAX_FD (1 << 17)
#define MAX_IOV 1024

static bool on;
static double rate[NKINDS];
static atomic_ulong hits[NKINDS];
static uint64_t seed = 1;
static int64_t alloc_from_ms;            /* CLOCK_MONOTONIC ms */
static atomic_uint nthreads;
static uintptr_t prog_lo[8], prog_hi[8]; /* the program's executable segments */
static int nprog;

/* What epoll_ctl registered for each fd, and readiness owed to it. */
static struct {
    uint64_t data;
    uint32_t events;
    int epfd;                 /* -1: not registered */
    uint32_t owed;            /* EPOLLIN / EPOLLOUT to report again */
} fds[MAX_FD];
static int owed_list[MAX_FD];
static int nowed;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*real_epoll_wait)(int, struct epoll_event *, int, int);
static int (*real_epoll_ctl)(int, int, int, struct epoll_event *);
static int (*real_close)(int);

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* xorshift64*, one state per thread, all from the seed. */
static uint64_t next_random(void)
{
    static __thread uint64_t s;

    if (s == 0)
        s = (seed + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)atomic_fetch_add(&nthreads, 1) + 1) * 0xBF58476D1CE4E5B9ull;
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
}

static bool roll(enum kind k)
{
    if (!on || rate[k] <= 0)
        return false;
    if ((double)(next_random() >> 11) / (double)(1ull << 53) >= rate[k])
        return false;
    atomic_fetch_add(&hits[k], 1);
    return true;
}

/* 1..n-1, for n > 1. */
static size_t shorter(size_t n)
{
    return 1 + (size_t)(next_random() % (n - 1));
}

static bool is_socket(int fd)
{
    struct stat st;

    return fd >= 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static void owe(int fd, uint32_t ev)
{
    if (fd < 0 || fd >= MAX_FD)
        return;
    pthread_mutex_lock(&lock);
    if (fds[fd].epfd >= 0) {      /* not watched: nobody to tell */
        if (fds[fd].owed == 0)
            owed_list[nowed++] = fd;
        fds[fd].owed |= ev;
    }
    pthread_mutex_unlock(&lock);
}

/* ---- configuration ---- */

static void fail_spec(const char *spec, const char *why)
{
    fprintf(stderr, "tp_fault: bad TP_FAULT \"%s\": %s\n", spec, why);
    _exit(2);
}

static int find_program(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    for (int i = 0; i < info->dlpi_phnum && nprog < 8; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            prog_lo[nprog] = info->dlpi_addr + ph->p_vaddr;
            prog_hi[nprog] = prog_lo[nprog] + ph->p_memsz;
            nprog++;
        }
    }
    return 1;   /* the first object is the program itself */
}

static void parse_spec(const char *spec)
{
    char buf[512], *save = NULL, *item;
    int64_t after = 500;

    if (strlen(spec) >= sizeof(buf))
        fail_spec(spec, "too long");
    strcpy(buf, spec);
    for (item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '='), *end;
        double v;
        int k;

        if (eq == NULL)
            fail_spec(spec, "expected key=value items separated by commas");
        *eq = '\0';
        errno = 0;
        v = strtod(eq + 1, &end);
        if (errno != 0 || end == eq + 1 || *end != '\0' || v < 0)
            fail_spec(spec, "a value is not a non-negative number");
        if (strcmp(item, "seed") == 0) {
            seed = (uint64_t)v;
            continue;
        }
        if (strcmp(item, "after") == 0) {
            after = (int64_t)v;
            continue;
        }
        if (v > 1)
            fail_spec(spec, "a rate is over 1");
#ifdef TP_FAULT_NO_ALLOC
        if (strcmp(item, "alloc") == 0 && v > 0)
            fail_spec(spec, "alloc faults are not built in (a sanitizer build)");
#endif
        if (strcmp(item, "io") == 0) {
            for (k = READ_SHORT; k <= SEND_EINTR; k++)
                rate[k] = v;
            continue;
        }
        for (k = 0; k < NKINDS && strcmp(item, kind_names[k]) != 0; k++)
            ;
        if (k == NKINDS)
            fail_spec(spec, "unknown key (see tests/fault/tp_fault.c)");
        rate[k] = v;
    }
    alloc_from_ms = now_ms() + after;
}

static void report(void)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "tp_fault: injected");

    for (int k = 0; k < NKINDS && n < (int)sizeof(line); k++)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " %s %lu", kind_names[k],
                      atomic_load(&hits[k]));
    if (n < (int)sizeof(line) - 1)
        line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0)
        return;
}

#define LOOKUP(name) (real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name))

__attribute__((constructor)) static void init(void)
{
    const char *spec = getenv("TP_FAULT");

    LOOKUP(read); LOOKUP(recv); LOOKUP(write); LOOKUP(writev); LOOKUP(send);
    LOOKUP(sendto); LOOKUP(sendmsg); LOOKUP(accept); LOOKUP(accept4);
    LOOKUP(epoll_wait); LOOKUP(epoll_ctl); LOOKUP(close);
    for (int i = 0; i < MAX_FD; i++)
        fds[i].epfd = -1;
    if (spec == NULL || *spec == '\0')
        return;
    parse_spec(spec);
    dl_iterate_phdr(find_program, NULL);
    atexit(report);
    on = true;
}

/* ---- reads ---- */

static ssize_t faulty_read(int fd, void *buf, size_t n, int flags, bool is_recv)
{
    if (on && n > 0 && is_socket(fd)) {
        if (roll(READ_EINTR)) {
            errno = EINTR;
            return -1;
        }
        if (roll(READ_EAGAIN)) {
            owe(fd, EPOLLIN);
            errno = EAGAIN;
            return -1;
        }
        if (n > 1 && roll(READ_SHORT)) {
            size_t ask = shorter(n);
            ssize_t got = is_recv ? real_recv(fd, buf, ask, flags) : real_read(fd, buf, ask);

            if (got == (ssize_t)ask)
                owe(fd, EPOLLIN);
            return got;
        }
    }
    return is_recv ? real_recv(fd, buf, n, flags) : real_read(fd, buf, n);
}

ssize_t read(int fd, void *buf, size_t n)
{
    return faulty_read(fd, buf, n, 0, false);
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    return faulty_read(fd, buf, n, flags, true);
}

/* ---- sends ---- */

/* Returns how many bytes this send may take (n when no fault), or -1 with
 * errno set for a refused one. */
static ssize_t send_allowance(int fd, size_t n)
{
    if (!on || n == 0 || !is_socket(fd))
        return (ssize_t)n;
    if (roll(SEND_EINTR)) {
        errno = EINTR;
        return -1;
    }
    if (roll(SEND_EAGAIN)) {
        owe(fd, EPOLLOUT);
        errno = EAGAIN;
        return -1;
    }
    if (n > 1 && roll(SEND_SHORT)) {
        owe(fd, EPOLLOUT);
        return (ssize_t)shorter(n);
    }
    return (ssize_t)n;
}

ssize_t write(int fd, const void *buf, size_t n)
{
    ssize_t may = send_allowance(fd, n);

    return may < 0 ? -1 : real_write(fd, buf, (size_t)may);
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    ssize_t may = send_allowance(fd, n);

    return may < 0 ? -1 : real_send(fd, buf, (size_t)may, flags);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to,
               socklen_t tolen)
{
    ssize_t may = send_allowance(fd, n);

    return may < 0 ? -1 : real_sendto(fd, buf, (size_t)may, flags, to, tolen);
}

/* Copies iov[0..cnt) cut to `may` bytes into out; returns the new count. */
static int cut_iov(const struct iovec *iov, int cnt, size_t may, struct iovec *out)
{
    int i;

    for (i = 0; i < cnt && i < MAX_IOV && may > 0; i++) {
        out[i] = iov[i];
        if (out[i].iov_len > may)
            out[i].iov_len = may;
        may -= out[i].iov_len;
    }
    return i;
}

static size_t iov_total(const struct iovec *iov, size_t cnt)
{
    size_t total = 0;

    for (size_t i = 0; i < cnt; i++)
        total += iov[i].iov_len;
    return total;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    size_t total = cnt > 0 ? iov_total(iov, (size_t)cnt) : 0;
    ssize_t may = send_allowance(fd, total);
    struct iovec cut[MAX_IOV];

    if (may < 0)
        return -1;
    if ((size_t)may == total || cnt > MAX_IOV)
        return real_writev(fd, iov, cnt);
    return real_writev(fd, cut, cut_iov(iov, cnt, (size_t)may, cut));
}

ssize_t sendmsg(int fd, const struct msghdr *mh, int flags)
{
    size_t total = iov_total(mh->msg_iov, mh->msg_iovlen);
    ssize_t may = send_allowance(fd, total);
    struct iovec cut[MAX_IOV];
    struct msghdr m;

    if (may < 0)
        return -1;
    if ((size_t)may == total || mh->msg_iovlen > MAX_IOV)
        return real_sendmsg(fd, mh, flags);
    m = *mh;
    m.msg_iov = cut;
    m.msg_iovlen = (size_t)cut_iov(mh->msg_iov, (int)mh->msg_iovlen, (size_t)may, cut);
    return real_sendmsg(fd, &m, flags);
}

/* ---- accepting ---- */

static int accept_fault(int lfd)
{
    if (roll(ACCEPT)) {
        errno = next_random() & 1 ? EMFILE : ENOBUFS;
        return -1;
    }
    if (roll(ACCEPT_ABORT)) {
        int fd = real_accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

        if (fd < 0)
            return -1;      /* nothing to abort: the real error stands */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){ 1, 0 }, sizeof(struct linger));
        real_close(fd);
        errno = ECONNABORTED;
        return -1;
    }
    return 0;
}

int accept(int lfd, struct sockaddr *addr, socklen_t *len)
{
    return on && accept_fault(lfd) < 0 ? -1 : real_accept(lfd, addr, len);
}

int accept4(int lfd, struct sockaddr *addr, socklen_t *len, int flags)
{
    return on && accept_fault(lfd) < 0 ? -1 : real_accept4(lfd, addr, len, flags);
}

/* ---- epoll ---- */

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    int rc = real_epoll_ctl(epfd, op, fd, ev);

    if (rc == 0 && fd >= 0 && fd < MAX_FD) {
        pthread_mutex_lock(&lock);
        if (op == EPOLL_CTL_DEL) {
            fds[fd].epfd = -1;
        } else {
            fds[fd].epfd = epfd;
            fds[fd].data = ev->data.u64;
            fds[fd].events = ev->events;
        }
        pthread_mutex_unlock(&lock);
    }
    return rc;
}

int close(int fd)
{
    if (fd >= 0 && fd < MAX_FD) {
        pthread_mutex_lock(&lock);
        fds[fd].epfd = -1;
        fds[fd].owed = 0;
        pthread_mutex_unlock(&lock);
    }
    return real_close(fd);
}

/* Adds the readiness owed to fds of epfd to the n events already there
 * (OR-ed into an event for the same fd, else appended while there is room). */
static int pay_owed(int epfd, struct epoll_event *evs, int n, int max)
{
    int keep = 0;

    for (int i = 0; i < nowed; i++) {
        int fd = owed_list[i], j;
        uint32_t bits;

        if (fds[fd].owed == 0)
            continue;                            /* closed meanwhile */
        if (fds[fd].epfd != epfd) {
            if (fds[fd].epfd < 0)
                fds[fd].owed = 0;
            else
                owed_list[keep++] = fd;          /* another epoll's */
            continue;
        }
        bits = fds[fd].owed & fds[fd].events;
        for (j = 0; j < n && evs[j].data.u64 != fds[fd].data; j++)
            ;
        if (j == n && n == max) {
            owed_list[keep++] = fd;              /* no room: next time */
            continue;
        }
        if (j == n) {
            evs[n].events = 0;
            evs[n].data.u64 = fds[fd].data;
            n++;
        }
        evs[j].events |= bits;
        fds[fd].owed = 0;
    }
    nowed = keep;
    return n;
}

int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
{
    int n;

    if (!on)
        return real_epoll_wait(epfd, evs, max, timeout);
    if (roll(EPOLL_EINTR)) {
        errno = EINTR;
        return -1;
    }
    pthread_mutex_lock(&lock);
    if (nowed > 0)
        timeout = 0;
    pthread_mutex_unlock(&lock);
    n = real_epoll_wait(epfd, evs, max, timeout);
    if (n < 0)
        return n;
    pthread_mutex_lock(&lock);
    n = pay_owed(epfd, evs, n, max);
    pthread_mutex_unlock(&lock);
    return n;
}

/* ---- allocation ---- */

#ifndef TP_FAULT_NO_ALLOC   /* sanitizer builds: ASan's allocator must stay */

static bool from_program(const void *caller)
{
    uintptr_t a = (uintptr_t)caller;

    for (int i = 0; i < nprog; i++)
        if (a >= prog_lo[i] && a < prog_hi[i])
            return true;
    return false;
}

static bool alloc_fails(const void *caller)
{
    return on && rate[ALLOC] > 0 && from_program(caller) && now_ms() >= alloc_from_ms &&
           roll(ALLOC);
}

void *malloc(size_t n)
{
    if (alloc_fails(__builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(n);
}

void *calloc(size_t k, size_t n)
{
    if (alloc_fails(__builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    if (n > 0 && alloc_fails(__builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, n);
}
#endif /* TP_FAULT_NO_ALLOC */
