/* tp_stress_probe.c - the fairness probe's thread: connect, one message,
 * reply, close, on a fixed schedule, each step a non-blocking call and a
 * poll bounded by --timeout from the connect start.
 *
 * Shared state: p->stop (main writes, the thread reads; relaxed). The
 * result belongs to the thread until tp_stress_probe_join. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tp_stress_engine.h"
#include "tp_stress_msg.h"
#include "tp_stress_probe.h"

#define MS 1000000ull
#define SLICE_NS (50 * MS)       /* longest poll: how soon a stop is seen */

/* What one probe came to, besides an error kind (>= 0). */
enum { PROBE_DONE = -1, PROBE_STOPPED = -2 };

struct tp_stress_probe {
    const struct tp_stress_opts *o;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t start_ns, deadline_ns;
    atomic_bool stop;         /* main writes, the thread reads; relaxed */
    bool started;
    pthread_t tid;
    char *msg, *back;         /* o->size bytes each: sent, received */
    struct tp_stress_probe_result r;
};

static bool is_stopped(struct tp_stress_probe *p, uint64_t now)
{
    return now >= p->deadline_ns || atomic_load_explicit(&p->stop, memory_order_relaxed);
}

/* Polls fd for events until `until`, in slices so that a stop is seen.
 * Returns 0 when ready, TP_STRESS_ERR_TIMEOUT at `until`, or PROBE_STOPPED. */
static int wait_fd(struct tp_stress_probe *p, int fd, short events, uint64_t until)
{
    struct pollfd pfd = { .fd = fd, .events = events };
    uint64_t now, d;

    for (;;) {
        now = tp_stress_now_ns();
        if (is_stopped(p, now))
            return PROBE_STOPPED;
        if (now >= until)
            return TP_STRESS_ERR_TIMEOUT;
        d = until - now < SLICE_NS ? until - now : SLICE_NS;
        if (poll(&pfd, 1, (int)((d + MS - 1) / MS)) > 0)
            return 0;
    }
}

/* Starts a connect on a new socket and waits for it. Returns the fd, or an
 * error kind / PROBE_STOPPED as -1 - that value in *res. */
static int probe_connect(struct tp_stress_probe *p, uint64_t until, int *res)
{
    int fd, one = 1, err = 0;
    socklen_t len = sizeof(err);

    fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *res = tp_stress_err_of(errno);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&p->addr, p->addrlen) < 0 && errno != EINPROGRESS) {
        *res = tp_stress_err_of(errno);
        goto out_close;
    }
    if ((*res = wait_fd(p, fd, POLLOUT, until)) != 0)
        goto out_close;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        *res = tp_stress_err_of(err);
        goto out_close;
    }
    return fd;
out_close:
    close(fd);
    return -1;
}

/* Sends p->msg on fd and reads o->size bytes back into p->back. Returns 0,
 * an error kind or PROBE_STOPPED. */
static int probe_exchange(struct tp_stress_probe *p, int fd, uint64_t until)
{
    size_t size = p->o->size, sent = 0, got = 0;
    ssize_t n;
    int rc;

    while (got < size) {
        if (sent < size)
            n = send(fd, p->msg + sent, size - sent, MSG_NOSIGNAL);
        else
            n = recv(fd, p->back + got, size - got, 0);
        if (n == 0)
            return TP_STRESS_ERR_CLOSED_EARLY;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return tp_stress_err_of(errno);
        if (n < 0 && (rc = wait_fd(p, fd, sent < size ? POLLOUT : POLLIN, until)) != 0)
            return rc;
        if (n > 0 && sent < size)
            sent += (size_t)n;
        else if (n > 0)
            got += (size_t)n;
    }
    return 0;
}

/* Keeps the slowest answered probe: when it started and how long its
 * connect took, so that a report can tell a slow accept queue or a probe
 * caught in the load's connect storm from a reply that waited. */
static void note_time(struct tp_stress_probe *p, uint64_t t0, uint64_t connect_ns, uint64_t ns)
{
    p->r.count++;
    tp_stress_hist_record(&p->r.hist, ns);
    if (ns < p->r.slowest.ns)
        return;
    p->r.slowest.ns = ns;
    p->r.slowest.connect_ns = connect_ns;
    p->r.slowest.at_ns = t0 - p->start_ns;
}

/* One probe, number seq. Returns PROBE_DONE (recorded), an error kind, or
 * PROBE_STOPPED. */
static int probe_once(struct tp_stress_probe *p, uint64_t seq)
{
    uint64_t t0 = tp_stress_now_ns(), until = t0 + p->o->timeout_ns, t1, t2;
    int fd, rc;

    tp_stress_msg_fill(p->msg, p->o->size, p->o->conns, seq);
    fd = probe_connect(p, until, &rc);
    if (fd < 0)
        return rc;
    t1 = tp_stress_now_ns();
    rc = probe_exchange(p, fd, until);
    t2 = tp_stress_now_ns();
    close(fd);
    if (rc != 0)
        return rc;
    if (p->o->verify && memcmp(p->msg, p->back, p->o->size) != 0)
        return TP_STRESS_ERR_MISMATCH;
    note_time(p, t0, t1 - t0, t2 - t0);
    return PROBE_DONE;
}

static void note_failure(struct tp_stress_probe *p, uint64_t seq, int kind)
{
    static const char *what[TP_STRESS_ERR_KINDS] = {
        "connection refused", "connection reset", "no reply within --timeout",
        "the reply differs from the message", "closed before the whole reply", "other error",
    };

    p->r.err[kind]++;
    if (p->r.first_err[0] == '\0')
        snprintf(p->r.first_err, sizeof(p->r.first_err), "probe %llu: %s",
                 (unsigned long long)seq + 1, what[kind]);
}

static void *probe_main(void *arg)
{
    struct tp_stress_probe *p = arg;
    uint64_t next = tp_stress_now_ns(), now, seq;
    struct timespec ts;
    int rc;

    for (seq = 0;; seq++) {
        while ((now = tp_stress_now_ns()) < next && !is_stopped(p, now)) {
            ts.tv_sec = 0;
            ts.tv_nsec = (long)(next - now < SLICE_NS ? next - now : SLICE_NS);
            nanosleep(&ts, NULL);
        }
        if (is_stopped(p, now))
            break;
        rc = probe_once(p, seq);
        if (rc == PROBE_STOPPED)
            break;
        if (rc != PROBE_DONE)
            note_failure(p, seq, rc);
        next += p->o->probe_ns;
        now = tp_stress_now_ns();
        if (next < now)
            next = now;         /* late: the next one at once, no burst */
    }
    return NULL;
}

tp_stress_probe_t *tp_stress_probe_create(const struct tp_stress_opts *o,
                                          const struct sockaddr *addr, socklen_t addrlen)
{
    struct tp_stress_probe *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->o = o;
    memcpy(&p->addr, addr, addrlen);
    p->addrlen = addrlen;
    tp_stress_hist_init(&p->r.hist);
    p->msg = malloc(o->size);
    p->back = malloc(o->size);
    if (p->msg == NULL || p->back == NULL) {
        tp_stress_probe_destroy(p);
        errno = ENOMEM;
        return NULL;
    }
    return p;
}

int tp_stress_probe_start(tp_stress_probe_t *p)
{
    int rc;

    p->start_ns = tp_stress_now_ns();
    p->deadline_ns = p->start_ns + p->o->duration_ns;
    rc = pthread_create(&p->tid, NULL, probe_main, p);
    if (rc != 0)
        return -rc;
    p->started = true;
    return 0;
}

void tp_stress_probe_stop(tp_stress_probe_t *p)
{
    atomic_store_explicit(&p->stop, true, memory_order_relaxed);
}

void tp_stress_probe_join(tp_stress_probe_t *p, struct tp_stress_probe_result *r)
{
    if (p->started) {
        pthread_join(p->tid, NULL);
        p->started = false;
    }
    memcpy(r, &p->r, sizeof(*r));
}

void tp_stress_probe_destroy(tp_stress_probe_t *p)
{
    if (p == NULL)
        return;
    free(p->msg);
    free(p->back);
    free(p);
}
