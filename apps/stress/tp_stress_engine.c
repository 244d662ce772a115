/* tp_stress_engine.c - the load engine. Each thread owns an epoll instance
 * (level-triggered; storm is edge-triggered) and a slice of the connections.
 * Echo keeps the messages in flight in a per-connection ring of depth*size
 * bytes: a reply is compared with memcmp against the ring, completed
 * messages are timed, and the next ones are written at once, one send per
 * connection per event. Flood (and slow) send from one pre-built block of
 * whole messages per thread, a repeating stream; flood compares what comes
 * back with the stream at the connection's offset and stops sending while
 * --window bytes are out. No allocation after set-up, no atomics per message.
 *
 * With an interval (the time series, the progress line), each thread
 * records into its own cur histogram and at each interval's end swaps it
 * with pub_hist, which main takes and empties (tp_stress_engine_tick): one
 * lock per thread per interval, none per sample.
 *
 * Shared state: engine->stop (main writes, threads read; relaxed),
 * engine->running (threads decrement once), and each worker's pub_* fields
 * (under worker->lock). Everything else in a worker belongs to its thread. */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "tp_stress_msg.h"

#define MAX_EVENTS 512
#define MAX_PENDING 256              /* connects outstanding per thread */
#define STREAM_BLOCK (64 * 1024)     /* slow, flood: at least this many bytes of messages */
#define FLOOD_SENDS 4                /* sends per connection per writable event */
#define RETRY_NS (20 * MS)           /* storm slot after EMFILE, EADDRNOTAVAIL */
#define RECONNECT_FIRST_MS 10u       /* --reconnect: back-off after a failed retry */
#define RECONNECT_MAX_MS 1000u

static void echo_pump(struct worker *w, struct conn *c, uint64_t now);

uint64_t tp_stress_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t in_flight(const struct conn *c)
{
    return c->seq_queued - c->seq_done;
}

static uint64_t epoll_data(const struct worker *w, const struct conn *c)
{
    return (uint64_t)(uint32_t)(c - w->conns) | (uint64_t)c->gen << 32;
}

int tp_stress__conn_watch(struct worker *w, struct conn *c, int op, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.u64 = epoll_data(w, c) };

    return epoll_ctl(w->epfd, op, c->fd, &ev) < 0 ? -errno : 0;
}

const char *tp_stress_err_name(enum tp_stress_err kind)
{
    static const char *names[TP_STRESS_ERR_KINDS] = {
        "refused", "reset", "timeout", "mismatch", "closed_early", "other",
        "missing", "duplicate", "out_of_order", "own_echo",
    };

    return (unsigned)kind < TP_STRESS_ERR_KINDS ? names[kind] : "?";
}

enum tp_stress_err tp_stress_err_of(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return TP_STRESS_ERR_REFUSED;
    case ECONNRESET: case EPIPE: case ECONNABORTED:
        return TP_STRESS_ERR_RESET;
    case ETIMEDOUT:
        return TP_STRESS_ERR_TIMEOUT;
    }
    return TP_STRESS_ERR_OTHER;
}

/* Maps an errno to an error kind, noting the ones that need a word. */
static int error_kind(struct worker *w, int err)
{
    enum tp_stress_err kind = tp_stress_err_of(err);

    if (kind != TP_STRESS_ERR_OTHER)
        return kind;
    switch (err) {
    case EMFILE: case ENFILE:
        w->notes |= TP_STRESS_NOTE_EMFILE;
        return TP_STRESS_ERR_OTHER;
    case EADDRNOTAVAIL: case EADDRINUSE:
        w->notes |= TP_STRESS_NOTE_ADDRNOTAVAIL;
        return TP_STRESS_ERR_OTHER;
    }
    if (!(w->notes & TP_STRESS_NOTE_ERRNO)) {
        w->notes |= TP_STRESS_NOTE_ERRNO;
        w->other_errno = err;
    }
    return TP_STRESS_ERR_OTHER;
}

static bool is_resource_error(int err)
{
    return err == EMFILE || err == ENFILE || err == EADDRNOTAVAIL ||
           err == EADDRINUSE || err == ENOBUFS || err == ENOMEM;
}

/* Storm: queue the slot to connect again at retry_at. */
static void retry_push(struct worker *w, struct conn *c, uint64_t at)
{
    c->state = C_IDLE;
    c->retry_at = at;
    w->retry[(w->retry_head + w->retry_len++) % w->nconns] = (uint32_t)(c - w->conns);
}

/* A new non-blocking socket connecting to the target: fd or -errno. */
static int open_socket(struct worker *w)
{
    const struct tp_stress_engine *e = w->e;
    int fd, one = 1, err;

    fd = socket(e->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (w->o->mode != TP_STRESS_STORM)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (w->o->has_src) {
        struct sockaddr_in sin;

        /* The port is picked at connect(), per destination: many more
         * connections than ~28k per source address. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        tp_stress_src_addr(&w->o->src, w->src_next++, &sin);
        if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
            goto fail;
    }
    if (connect(fd, (const struct sockaddr *)&e->addr, e->addrlen) < 0 && errno != EINPROGRESS)
        goto fail;
    return fd;
fail:
    err = -errno;
    close(fd);
    return err;
}

/* Starts connecting c. A failure is counted and c given up (storm: retried). */
static void conn_start(struct worker *w, struct conn *c, uint64_t now)
{
    uint32_t events = EPOLLOUT;
    int fd, err;

    if (w->o->mode == TP_STRESS_STORM)
        events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    else if (w->o->mode == TP_STRESS_SLOW)
        events = EPOLLOUT | EPOLLRDHUP;
    c->seq_queued = c->seq_done = c->out_off = c->in_off = 0;
    c->wait_since = c->cycle_start = now;
    c->state = C_CONNECTING;
    w->pending++;
    fd = open_socket(w);
    if (fd < 0) {
        c->fd = -1;
        tp_stress__conn_fail(w, c, -fd, now);
        return;
    }
    c->fd = fd;
    err = tp_stress__conn_watch(w, c, EPOLL_CTL_ADD, events);
    if (err < 0)
        tp_stress__conn_fail(w, c, -err, now);
}

/* The one close path. kind: the error to count, or -1. Storm slots, and
 * with --reconnect every connection, go back to the retry list (after
 * delay_ns at least); other connections are given up. */
static void conn_close_retry(struct worker *w, struct conn *c, int kind, uint64_t now,
                             uint64_t delay_ns)
{
    if (w->o->mode == TP_STRESS_CHAT && (c->state == C_OPEN || c->state == C_CONNECTING))
        tp_stress__chat_closing(w, c, now);
    if (kind >= 0)
        w->n.err[kind]++;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->gen++;
    c->out_blocked = false;
    if (c->state == C_OPEN)
        w->open--;
    else if (c->state == C_CONNECTING)
        w->pending--;
    if (w->o->reconnect && !w->stopping)
        w->n.lost_at_close += in_flight(c);
    if (w->o->mode == TP_STRESS_ECHO && w->quota != UINT64_MAX && in_flight(c) > 0) {
        /* Messages lost with c go back to the thread's -n budget. */
        w->issued -= in_flight(c);
        c->seq_queued = c->seq_done;
        w->refill = true;
    }
    if (w->o->mode == TP_STRESS_FLOOD && c->out_limit != UINT64_MAX && !w->stopping) {
        /* Its share of -n will not come back: the others finish without it. */
        w->quota -= c->out_limit / w->o->size - c->seq_done;
    }
    if (w->o->mode == TP_STRESS_STORM && !w->stopping) {
        if (c->seq_done == 0 && w->issued > 0)
            w->issued--;            /* the cycle failed: someone redoes it */
        retry_push(w, c, now + delay_ns);
        return;
    }
    if (w->o->reconnect && !w->stopping) {
        /* At once the first time; then 10 ms, doubling up to 1 s, until a
         * reply (hold: a connect) shows the target serves again. */
        retry_push(w, c, now + (delay_ns > c->backoff_ms * MS ? delay_ns : c->backoff_ms * MS));
        c->backoff_ms = c->backoff_ms == 0 ? RECONNECT_FIRST_MS
                      : c->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS
                      : c->backoff_ms * 2;
        return;
    }
    c->state = C_DONE;
    w->live--;
}

void tp_stress__conn_close(struct worker *w, struct conn *c, int kind, uint64_t now)
{
    conn_close_retry(w, c, kind, now, 0);
}

/* Closes c for errno err; a storm slot out of descriptors or ports waits. */
void tp_stress__conn_fail(struct worker *w, struct conn *c, int err, uint64_t now)
{
    conn_close_retry(w, c, error_kind(w, err), now, is_resource_error(err) ? RETRY_NS : 0);
}

/* Keeps one line about a mismatch for the report. */
void tp_stress__note_detail(struct worker *w, const char *fmt, ...)
{
    va_list ap;

    if (w->ndetails == TP_STRESS_MAX_DETAILS) {
        w->details_dropped++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(w->details[w->ndetails++], sizeof(w->details[0]), fmt, ap);
    va_end(ap);
}

static char printable(unsigned char ch)
{
    return ch >= 0x20 && ch < 0x7f ? (char)ch : '.';
}

/* Compares the n bytes just read with what was sent at c->in_off.
 * Returns 0, or -1 after reporting and closing c. */
static int verify(struct worker *w, struct conn *c, const char *data, size_t n, uint64_t now)
{
    size_t done = 0, pos, len, i;
    uint64_t sent = c->out_off - c->in_off;

    if (!w->o->verify && n <= sent)
        return 0;
    while (done < n && done < sent) {
        pos = (size_t)((c->in_off + done) % w->ring_len);
        len = w->ring_len - pos;
        if (len > n - done)
            len = n - done;
        if (len > sent - done)
            len = (size_t)(sent - done);
        if (w->o->verify && memcmp(c->ring + pos, data + done, len) != 0) {
            for (i = 0; c->ring[pos + i] == data[done + i]; i++)
                ;
            uint64_t off = c->in_off + done + i;
            tp_stress__note_detail(w, "mismatch on connection %u at byte %llu (message %llu, "
                        "byte %llu): expected 0x%02x '%c', got 0x%02x '%c'; closed it",
                        c->index, (unsigned long long)off,
                        (unsigned long long)(off / w->o->size),
                        (unsigned long long)(off % w->o->size),
                        (unsigned char)c->ring[pos + i], printable((unsigned char)c->ring[pos + i]),
                        (unsigned char)data[done + i], printable((unsigned char)data[done + i]));
            tp_stress__conn_close(w, c, TP_STRESS_ERR_MISMATCH, now);
            return -1;
        }
        done += len;
    }
    if (done < n) {
        tp_stress__note_detail(w, "mismatch on connection %u at byte %llu: %zu bytes more than "
                    "were sent; closed it", c->index,
                    (unsigned long long)c->out_off, n - done);
        tp_stress__conn_close(w, c, TP_STRESS_ERR_MISMATCH, now);
        return -1;
    }
    return 0;
}

/* Puts the next message in c's ring, timed from t. */
static void queue_msg(struct worker *w, struct conn *c, uint64_t t, uint64_t now)
{
    uint32_t slot = (uint32_t)(c->seq_queued % w->o->depth);

    if (in_flight(c) == 0)
        c->wait_since = now;
    tp_stress_msg_fill(c->ring + (size_t)slot * w->o->size, w->o->size, c->index, c->seq_queued);
    c->stamps[slot] = t;
    c->seq_queued++;
}

static void want_out(struct worker *w, struct conn *c, bool on, uint64_t now)
{
    uint32_t events = w->o->mode == TP_STRESS_STORM
                    ? EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET
                    : on ? EPOLLIN | EPOLLOUT : EPOLLIN;
    int err;

    c->out_blocked = on;
    if (w->o->mode == TP_STRESS_STORM)
        return;             /* edge-triggered: EPOLLOUT is always asked for */
    err = tp_stress__conn_watch(w, c, EPOLL_CTL_MOD, events);
    if (err < 0)
        tp_stress__conn_fail(w, c, -err, now);
}

/* Counts n bytes just sent on c, and the messages they completed. */
static void count_sent(struct worker *w, struct conn *c, size_t n)
{
    w->n.sent_bytes += n;
    w->n.sent_msgs += (c->out_off + n) / w->unit - c->out_off / w->unit;
    c->out_off += n;
}

/* Writes what is queued and not yet sent, in one send while it fits. */
void tp_stress__flush(struct worker *w, struct conn *c, uint64_t now)
{
    uint64_t end = c->seq_queued * w->unit;
    struct iovec iov[2];
    struct msghdr mh = { .msg_iov = iov };
    size_t pos, len;
    ssize_t n;

    while (c->out_off < end) {
        pos = (size_t)(c->out_off % w->ring_len);
        len = w->ring_len - pos;
        if (len > end - c->out_off)
            len = (size_t)(end - c->out_off);
        iov[0] = (struct iovec){ c->ring + pos, len };
        iov[1] = (struct iovec){ c->ring, (size_t)(end - c->out_off) - len };
        mh.msg_iovlen = iov[1].iov_len ? 2 : 1;
        n = mh.msg_iovlen == 1 ? send(c->fd, iov[0].iov_base, len, MSG_NOSIGNAL)
                               : sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (!c->out_blocked)
                want_out(w, c, true, now);
            return;
        }
        if (n < 0) {
            tp_stress__conn_fail(w, c, errno, now);
            return;
        }
        count_sent(w, c, (size_t)n);
    }
    if (c->out_blocked)
        want_out(w, c, false, now);
}

/* Queues what the depth, pacing and -n allow, then writes it. Paced, the
 * messages due are taken from the schedule oldest first, each with its own
 * intended time; those no connection has room for wait there. */
static void echo_pump(struct worker *w, struct conn *c, uint64_t now)
{
    uint64_t room = w->o->depth - in_flight(c), due;

    if (!w->stopping && w->o->rate > 0) {
        due = tp_stress_pace_due(&w->pace, now);
        for (; room > 0 && due > 0 && w->issued < w->quota; room--, due--) {
            queue_msg(w, c, tp_stress_pace_take(&w->pace), now);
            w->issued++;
        }
        if (room > 0)
            w->pace_full = false;
    } else if (!w->stopping) {
        for (; room > 0 && w->issued < w->quota; room--) {
            queue_msg(w, c, now, now);
            w->issued++;
        }
    }
    if (c->out_off < c->seq_queued * w->o->size && !c->out_blocked)
        tp_stress__flush(w, c, now);
}

/* One read: 1 if bytes arrived (counted in *n), 0 to wait, -1 if c closed. */
int tp_stress__read_some(struct worker *w, struct conn *c, size_t *n, uint64_t *now)
{
    ssize_t r;

    do
        r = recv(c->fd, w->rbuf, RBUF_SIZE, 0);
    while (r < 0 && errno == EINTR);
    *now = tp_stress_now_ns();
    if (r > 0) {
        *n = (size_t)r;
        return 1;
    }
    if (r < 0 && errno == EAGAIN)
        return 0;
    if (r == 0 && w->o->reconnect && c->in_off % w->unit == 0) {
        w->n.closed_by_server++;        /* a graceful close: no reply cut */
        tp_stress__conn_close(w, c, -1, *now);
    } else if (r == 0)
        tp_stress__conn_close(w, c, TP_STRESS_ERR_CLOSED_EARLY, *now);
    else
        tp_stress__conn_fail(w, c, errno, *now);
    return -1;
}

static void echo_readable(struct worker *w, struct conn *c)
{
    uint64_t before = c->seq_done, now, t;
    size_t n;

    if (tp_stress__read_some(w, c, &n, &now) <= 0)
        return;
    if (verify(w, c, w->rbuf, n, now) < 0)
        return;
    c->in_off += n;
    w->n.bytes += n;
    for (; c->seq_done < c->in_off / w->o->size; c->seq_done++) {
        t = c->stamps[c->seq_done % w->o->depth];
        assert(t <= now);       /* no message is timed from the future */
        tp_stress_hist_record(w->rec, now - t);
    }
    w->n.msgs += c->seq_done - before;
    if (c->seq_done > before)
        c->backoff_ms = 0;              /* it serves: the next loss retries at once */
    c->wait_since = now;
    echo_pump(w, c, now);
}

/* Storm, edge-triggered: read until the reply is whole or EAGAIN. */
static void storm_readable(struct worker *w, struct conn *c)
{
    uint64_t now;
    size_t n;

    while (tp_stress__read_some(w, c, &n, &now) > 0) {
        if (verify(w, c, w->rbuf, n, now) < 0)
            return;
        c->in_off += n;
        w->n.bytes += n;
        if (c->in_off == w->o->size) {
            c->seq_done = 1;
            w->n.msgs++;
            assert(c->cycle_start <= now);
            tp_stress_hist_record(w->rec, now - c->cycle_start);
            tp_stress__conn_close(w, c, -1, now);
            return;
        }
    }
}

/* Hold: the server should send nothing; EOF or an error ends the connection. */
static void hold_readable(struct worker *w, struct conn *c)
{
    uint64_t now;
    size_t n;

    tp_stress__read_some(w, c, &n, &now);
}

/* Slow: one send per writable event from a block of whole messages. */
static void slow_writable(struct worker *w, struct conn *c, uint32_t ev, uint64_t now)
{
    size_t pos = (size_t)(c->out_off % w->stream_len);
    ssize_t n;

    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        int err = 0;
        socklen_t len = sizeof(err);

        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0)
            tp_stress__conn_fail(w, c, err, now);
        else
            tp_stress__conn_close(w, c, TP_STRESS_ERR_CLOSED_EARLY, now);
        return;
    }
    n = send(c->fd, w->stream + pos, w->stream_len - pos, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) {
        tp_stress__conn_fail(w, c, errno, now);
        return;
    }
    count_sent(w, c, (size_t)n);
}

/* Flood: sends from the stream while the socket, the window and -n allow,
 * FLOOD_SENDS sends at most so that one connection does not hold the
 * thread; EPOLLOUT stays asked for while there is more to send. */
static void flood_write(struct worker *w, struct conn *c, uint64_t now)
{
    uint64_t room, limit;
    size_t pos, len;
    ssize_t n;
    int k;

    for (k = 0; k < FLOOD_SENDS; k++) {
        room = w->o->window - (c->out_off - c->in_off);
        limit = c->out_limit - c->out_off;
        if (room > limit)
            room = limit;
        if (room == 0) {
            if (c->out_blocked)
                want_out(w, c, false, now);   /* flood_readable resumes it */
            return;
        }
        pos = (size_t)(c->out_off % w->stream_len);
        len = room < w->stream_len ? (size_t)room : w->stream_len;
        n = send(c->fd, w->stream + pos, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0) {
            tp_stress__conn_fail(w, c, errno, now);
            return;
        }
        if (c->out_off == c->in_off)
            c->wait_since = now;              /* replies are due from now */
        count_sent(w, c, (size_t)n);
    }
    if (!c->out_blocked)
        want_out(w, c, true, now);
}

/* Flood: checks what came back against the stream; counts whole lines. */
static void flood_readable(struct worker *w, struct conn *c)
{
    uint64_t before = c->seq_done, now;
    size_t n;

    if (tp_stress__read_some(w, c, &n, &now) <= 0)
        return;
    if (verify(w, c, w->rbuf, n, now) < 0)
        return;
    c->in_off += n;
    w->n.bytes += n;
    c->seq_done = c->in_off / w->o->size;
    w->n.msgs += c->seq_done - before;
    c->wait_since = now;
    /* Stopped by the window: resume once half of it came back. */
    if (!c->out_blocked && c->out_off < c->out_limit &&
        c->out_off - c->in_off <= w->o->window / 2)
        flood_write(w, c, now);
}

/* A connect finished (or failed): check it and start the mode's work. */
static void on_connected(struct worker *w, struct conn *c, uint64_t now)
{
    socklen_t len = sizeof(int);
    int err = 0;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        tp_stress__conn_fail(w, c, err, now);
        return;
    }
    w->pending--;
    w->open++;
    w->n.opened++;
    c->state = C_OPEN;
    switch (w->o->mode) {
    case TP_STRESS_ECHO:
        if (w->o->rate > 0 && !w->pace_started) {
            w->pace_started = true;
            tp_stress_pace_init(&w->pace, now, w->rate);
        }
        if ((err = tp_stress__conn_watch(w, c, EPOLL_CTL_MOD, EPOLLIN)) < 0)
            tp_stress__conn_fail(w, c, -err, now);
        else
            echo_pump(w, c, now);
        break;
    case TP_STRESS_HOLD:
        c->backoff_ms = 0;
        if ((err = tp_stress__conn_watch(w, c, EPOLL_CTL_MOD, EPOLLIN | EPOLLRDHUP)) < 0)
            tp_stress__conn_fail(w, c, -err, now);
        break;
    case TP_STRESS_STORM:
        queue_msg(w, c, now, now);
        tp_stress__flush(w, c, now);
        break;
    case TP_STRESS_SLOW:
        break;
    case TP_STRESS_FLOOD:
        c->out_blocked = true;
        if ((err = tp_stress__conn_watch(w, c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT)) < 0)
            tp_stress__conn_fail(w, c, -err, now);
        else
            flood_write(w, c, now);
        break;
    case TP_STRESS_CHAT:
        tp_stress__chat_connected(w, c, now);
        break;
    }
}

static void on_event(struct worker *w, const struct epoll_event *ev, uint64_t now)
{
    struct conn *c;

    if (ev->data.u64 == TP_STRESS_KICK_DATA) {
        tp_stress__chat_kicked(w, now);
        return;
    }
    c = &w->conns[(uint32_t)ev->data.u64];
    if (c->gen != (uint32_t)(ev->data.u64 >> 32) || c->fd < 0)
        return;             /* closed earlier in this batch */
    if (c->state == C_CONNECTING) {
        if (!(ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        on_connected(w, c, now);
        if (c->state != C_OPEN || w->o->mode != TP_STRESS_STORM)
            return;         /* storm: the reply may be in this event too */
    }
    switch (w->o->mode) {
    case TP_STRESS_ECHO:
        if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            echo_readable(w, c);
        if (c->fd >= 0 && c->out_blocked && (ev->events & EPOLLOUT))
            tp_stress__flush(w, c, now);
        break;
    case TP_STRESS_STORM:
        if (c->out_blocked && (ev->events & EPOLLOUT))
            tp_stress__flush(w, c, now);
        if (c->fd >= 0 && (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)))
            storm_readable(w, c);
        break;
    case TP_STRESS_HOLD:
        hold_readable(w, c);
        break;
    case TP_STRESS_SLOW:
        slow_writable(w, c, ev->events, now);
        break;
    case TP_STRESS_FLOOD:
        if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            flood_readable(w, c);
        if (c->fd >= 0 && c->out_blocked && (ev->events & EPOLLOUT))
            flood_write(w, c, now);
        break;
    case TP_STRESS_CHAT:
        tp_stress__chat_event(w, c, ev->events, now);
        break;
    }
}

/* Offers the paced messages now due to the open connections in turn. If
 * they stay due after every connection had its turn, all are full: wait for
 * a reply (echo_pump) instead of waking for them. */
static void pace_turn(struct worker *w, uint64_t now)
{
    uint32_t tries;
    struct conn *c;

    for (tries = 0; tries < w->nconns; tries++) {
        if (w->issued >= w->quota || tp_stress_pace_due(&w->pace, now) == 0)
            return;
        c = &w->conns[w->rr];
        w->rr = w->rr + 1 == w->nconns ? 0 : w->rr + 1;
        if (c->state == C_OPEN && in_flight(c) < w->o->depth)
            echo_pump(w, c, now);
    }
    w->pace_full = tp_stress_pace_due(&w->pace, now) > 0;
}

/* Starts connections not yet started, within the ramp and MAX_PENDING. */
static void open_turn(struct worker *w, uint64_t now)
{
    struct conn *c;

    while (w->next_open < w->nconns && w->pending < MAX_PENDING) {
        if (w->ramp > 0) {
            if (tp_stress_pace_due(&w->ramp_pace, now) == 0)
                return;
            tp_stress_pace_take(&w->ramp_pace);
        }
        c = &w->conns[w->next_open++];
        if (w->o->mode == TP_STRESS_STORM) {
            if (w->issued >= w->quota) {
                c->state = C_IDLE;      /* parked: the -n budget is spent */
                continue;
            }
            w->issued++;
        }
        conn_start(w, c, now);
    }
}

/* Storm, --reconnect: reconnects the slots whose retry time has come. */
static void retry_turn(struct worker *w, uint64_t now, uint64_t *wake)
{
    uint32_t n = w->retry_len, slot;
    struct conn *c;

    while (n-- > 0) {
        slot = w->retry[w->retry_head];
        w->retry_head = w->retry_head + 1 == w->nconns ? 0 : w->retry_head + 1;
        w->retry_len--;
        c = &w->conns[slot];
        if (c->retry_at > now) {
            retry_push(w, c, c->retry_at);
            if (c->retry_at < *wake)
                *wake = c->retry_at;
            continue;
        }
        if (w->o->mode != TP_STRESS_STORM) {
            w->n.reconnects++;          /* --reconnect */
            conn_start(w, c, now);
            continue;
        }
        if (w->issued >= w->quota)
            continue;                   /* parked */
        w->issued++;
        conn_start(w, c, now);
    }
    if (w->retry_len > 0 && *wake > now)
        *wake = now;
}

/* Gives -n budget that came back from a closed connection to idle ones. */
static void refill_turn(struct worker *w, uint64_t now)
{
    uint32_t i;

    w->refill = false;
    for (i = 0; i < w->nconns && w->issued < w->quota; i++)
        if (w->conns[i].state == C_OPEN && w->o->rate <= 0)
            echo_pump(w, &w->conns[i], now);
}

/* Closes connections whose connect or reply is over --timeout. */
static void sweep(struct worker *w, uint64_t now)
{
    uint64_t limit = w->o->timeout_ns;
    bool replies = w->o->mode == TP_STRESS_ECHO || w->o->mode == TP_STRESS_STORM;
    struct conn *c;
    uint32_t i;

    for (i = 0; i < w->nconns; i++) {
        c = &w->conns[i];
        if (c->fd < 0 || now <= c->wait_since + limit)
            continue;
        if (c->state == C_CONNECTING ||
            (c->state == C_OPEN && replies && in_flight(c) > 0) ||
            (c->state == C_OPEN && w->o->mode == TP_STRESS_FLOOD && c->out_off > c->in_off))
            tp_stress__conn_close(w, c, TP_STRESS_ERR_TIMEOUT, now);
    }
}

/* Ends interval w->cut_k: its latencies (cur) and counters go to pub_* for
 * main, and an empty histogram takes cur's place. Returns false, leaving
 * everything as it was, while main has not taken the previous interval. */
static bool cut(struct worker *w, uint64_t now)
{
    struct tp_stress_hist *full = w->cur;
    bool done;

    pthread_mutex_lock(&w->lock);
    done = w->pub_k == TP_STRESS_NO_CUT;
    if (done) {
        tp_stress_hist_merge(w->total, full);
        w->cur = w->rec = w->pub_hist;      /* main emptied it */
        w->pub_hist = full;
        w->pub_k = w->cut_k;
        w->pub_n = w->n;
        w->pub_open = w->open;
        w->pub_at = now;
    }
    pthread_mutex_unlock(&w->lock);
    if (done) {
        w->cut_k++;
        w->cut_at += w->e->interval_ns;
    }
    return done;
}

/* Cuts the interval if it is over; lowers *wake to the next cut. */
static void cut_turn(struct worker *w, uint64_t now, uint64_t *wake)
{
    if (now >= w->cut_at && !cut(w, now)) {
        if (now + MS < *wake)
            *wake = now + MS;   /* main is late taking the last one: soon again */
        return;
    }
    if (w->cut_at < *wake)
        *wake = w->cut_at;
}

/* Tells main the thread's loop is over: final counters, no more cuts. */
static void publish_end(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    w->fin_n = w->n;
    w->pub_finished = true;
    pthread_mutex_unlock(&w->lock);
}

/* The periodic work of a loop turn; lowers *wake to when it is next due. */
static void turn(struct worker *w, uint64_t now, uint64_t *wake)
{
    open_turn(w, now);
    if (w->next_open < w->nconns && w->pending < MAX_PENDING && w->ramp > 0 &&
        tp_stress_pace_next(&w->ramp_pace) < *wake)
        *wake = tp_stress_pace_next(&w->ramp_pace);
    if (w->retry_len > 0)
        retry_turn(w, now, wake);
    if (w->refill)
        refill_turn(w, now);
    if (w->o->mode == TP_STRESS_CHAT)
        tp_stress__chat_turn(w, now, wake);
    if (w->o->rate > 0 && w->pace_started && w->issued < w->quota && !w->pace_full) {
        pace_turn(w, now);
        if (!w->pace_full && tp_stress_pace_next(&w->pace) < *wake)
            *wake = tp_stress_pace_next(&w->pace);
    }
    if (now >= w->next_sweep) {
        sweep(w, now);
        w->next_sweep = now + SWEEP_NS;
    }
    if (w->next_sweep < *wake)
        *wake = w->next_sweep;
    if (w->cur != NULL)
        cut_turn(w, now, wake);
}

static bool is_finished(const struct worker *w)
{
    if (w->o->mode == TP_STRESS_CHAT)
        return tp_stress__chat_is_over(w);
    if (w->o->mode == TP_STRESS_STORM)
        return w->n.msgs >= w->quota;
    if (w->next_open < w->nconns || w->pending > 0)
        return false;
    return w->live == 0 || ((w->o->mode == TP_STRESS_ECHO || w->o->mode == TP_STRESS_FLOOD) &&
                            w->n.msgs >= w->quota);
}

static int wait_events(struct worker *w, struct epoll_event *ev, uint64_t now, uint64_t wake)
{
    uint64_t d = wake > now ? wake - now : 0;
    struct timespec ts;
    int n;

    if (d > MAX_WAIT_NS)
        d = MAX_WAIT_NS;
    ts.tv_sec = (time_t)(d / 1000000000ull);
    ts.tv_nsec = (long)(d % 1000000000ull);
    if (!w->no_pwait2) {
        n = epoll_pwait2(w->epfd, ev, MAX_EVENTS, &ts, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n < 0 && errno == EINTR ? 0 : n;
        w->no_pwait2 = true;
    }
    n = epoll_wait(w->epfd, ev, MAX_EVENTS, (int)((d + MS - 1) / MS));
    return n < 0 && errno == EINTR ? 0 : n;
}

/* Closes what is left at the end of the run (not counted as errors). */
static void worker_finish(struct worker *w, uint64_t now)
{
    uint32_t i;

    w->stopping = true;
    w->end_ns = now;
    w->open_at_end = w->open;
    if (w->o->mode == TP_STRESS_CHAT)
        tp_stress__chat_finish(w, now);
    if (w->cur != NULL)
        publish_end(w);
    for (i = 0; i < w->nconns; i++) {
        if (w->conns[i].state == C_OPEN && w->o->mode == TP_STRESS_ECHO)
            w->in_flight_at_end += in_flight(&w->conns[i]);
        if (w->conns[i].state == C_OPEN && w->o->mode == TP_STRESS_FLOOD)
            w->in_flight_at_end += w->conns[i].out_off / w->o->size - w->conns[i].seq_done;
        if (w->conns[i].fd >= 0)
            tp_stress__conn_close(w, &w->conns[i], -1, now);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct tp_stress_engine *e = w->e;
    struct epoll_event ev[MAX_EVENTS];
    uint64_t now = e->start_ns, wake;
    int n, i;

    w->next_sweep = now + SWEEP_NS;
    w->cut_at = now + e->interval_ns;
    if (w->ramp > 0)
        tp_stress_pace_init(&w->ramp_pace, now, w->ramp);
    if (w->rate > 0)
        prctl(PR_SET_TIMERSLACK, 1000UL);   /* wake on schedule, not 50 us late */
    for (;;) {
        wake = e->deadline_ns;
        turn(w, now, &wake);
        /* Chat sees the stop in its turn: it stops sending, then drains. */
        if (is_finished(w) || now >= e->deadline_ns ||
            (w->o->mode != TP_STRESS_CHAT &&
             atomic_load_explicit(&e->stop, memory_order_relaxed)))
            break;
        n = wait_events(w, ev, now, wake);
        if (n < 0) {
            w->notes |= TP_STRESS_NOTE_ERRNO;
            w->other_errno = errno;
            break;
        }
        now = tp_stress_now_ns();
        for (i = 0; i < n; i++)
            on_event(w, &ev[i], now);
    }
    worker_finish(w, tp_stress_now_ns());
    atomic_fetch_sub(&e->running, 1);
    return NULL;
}

/* This thread's share of x, when conns are spread as worker_init does. */
static uint64_t share(uint64_t x, uint32_t first, uint32_t n, uint32_t conns)
{
    unsigned __int128 hi = (unsigned __int128)x * (first + n) / conns;
    unsigned __int128 lo = (unsigned __int128)x * first / conns;

    return (uint64_t)(hi - lo);
}

static int worker_alloc(struct worker *w, const struct tp_stress_opts *o, bool series)
{
    uint32_t i, k;

    w->conns = calloc(w->nconns, sizeof(*w->conns));
    w->rbuf = malloc(RBUF_SIZE);
    w->total = malloc(sizeof(*w->total));
    if (w->conns == NULL || w->rbuf == NULL || w->total == NULL)
        return -ENOMEM;
    if (o->mode == TP_STRESS_ECHO || o->mode == TP_STRESS_STORM) {
        w->ring_len = o->depth * o->size;
        w->rings = malloc((size_t)w->nconns * w->ring_len);
        w->stamps = malloc((size_t)w->nconns * o->depth * sizeof(*w->stamps));
        if (w->rings == NULL || w->stamps == NULL)
            return -ENOMEM;
    }
    if ((o->mode == TP_STRESS_STORM || o->reconnect) &&
        (w->retry = malloc(w->nconns * sizeof(*w->retry))) == NULL)
        return -ENOMEM;
    if (o->mode == TP_STRESS_SLOW || o->mode == TP_STRESS_FLOOD) {
        k = o->size < STREAM_BLOCK ? STREAM_BLOCK / o->size : 1;
        w->stream_len = k * o->size;
        if ((w->stream = malloc((size_t)w->stream_len * 2)) == NULL)
            return -ENOMEM;
        for (i = 0; i < k; i++)
            tp_stress_msg_fill(w->stream + (size_t)i * o->size, o->size, 0, i);
        memcpy(w->stream + w->stream_len, w->stream, w->stream_len);
        w->ring_len = w->stream_len;          /* what verify() compares with */
    }
    if (series) {
        w->cur = malloc(sizeof(*w->cur));
        w->pub_hist = malloc(sizeof(*w->pub_hist));
        if (w->cur == NULL || w->pub_hist == NULL)
            return -ENOMEM;
        tp_stress_hist_init(w->cur);
        tp_stress_hist_init(w->pub_hist);
    }
    return 0;
}

/* Worker i of e: its slice of the connections, budget and buffers. */
static int worker_init(struct tp_stress_engine *e, struct worker *w, uint32_t i)
{
    const struct tp_stress_opts *o = &e->o;
    uint32_t per = o->conns / e->nworkers, extra = o->conns % e->nworkers, j;
    int err;

    w->e = e;
    w->o = o;
    w->epfd = -1;
    w->first = i * per + (i < extra ? i : extra);
    w->nconns = per + (i < extra);
    w->live = w->nconns;
    w->quota = o->messages ? share(o->messages, w->first, w->nconns, o->conns) : UINT64_MAX;
    w->rate = o->rate * w->nconns / o->conns;
    w->ramp = o->ramp * w->nconns / o->conns;
    w->src_next = w->first;
    w->unit = o->size;
    w->pub_k = TP_STRESS_NO_CUT;
    pthread_mutex_init(&w->lock, NULL);
    if ((err = worker_alloc(w, o, e->interval_ns > 0)) < 0)
        return err;
    tp_stress_hist_init(w->total);
    w->rec = w->cur != NULL ? w->cur : w->total;
    for (j = 0; j < w->nconns; j++) {
        w->conns[j].fd = -1;
        w->conns[j].index = w->first + j;
        w->conns[j].out_limit = UINT64_MAX;
        if (o->mode == TP_STRESS_FLOOD) {
            w->conns[j].ring = w->stream;
            if (w->quota != UINT64_MAX)
                w->conns[j].out_limit = share(w->quota, j, 1, w->nconns) * o->size;
        }
        if (w->rings != NULL) {
            w->conns[j].ring = w->rings + (size_t)j * w->ring_len;
            w->conns[j].stamps = w->stamps + (size_t)j * o->depth;
        }
    }
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0)
        return -errno;
    return o->mode == TP_STRESS_CHAT ? tp_stress__chat_worker_init(w) : 0;
}

static void worker_fini(struct worker *w)
{
    if (w->o != NULL && w->o->mode == TP_STRESS_CHAT)
        tp_stress__chat_worker_fini(w);
    if (w->epfd >= 0)
        close(w->epfd);
    pthread_mutex_destroy(&w->lock);
    free(w->conns);
    free(w->rbuf);
    free(w->rings);
    free(w->stamps);
    free(w->retry);
    free(w->stream);
    free(w->total);
    free(w->cur);
    free(w->pub_hist);
}

tp_stress_engine_t *tp_stress_engine_create(const struct tp_stress_opts *o,
                                            const struct sockaddr *addr, socklen_t addrlen,
                                            uint64_t interval_ns, char *err, size_t errlen)
{
    struct tp_stress_engine *e = calloc(1, sizeof(*e));
    uint32_t i;
    int rc;

    if (e == NULL)
        goto out_nomem;
    e->o = *o;
    if (e->o.mode == TP_STRESS_STORM)
        e->o.depth = 1;
    memcpy(&e->addr, addr, addrlen);
    e->addrlen = addrlen;
    e->interval_ns = interval_ns;
    if (e->o.mode == TP_STRESS_CHAT && tp_stress__chat_create(e, err, errlen) < 0) {
        free(e);
        return NULL;
    }
    e->nworkers = e->o.threads;
    e->w = calloc(e->nworkers, sizeof(*e->w));
    if (e->w == NULL)
        goto out_free_engine;
    for (i = 0; i < e->nworkers; i++) {
        if ((rc = worker_init(e, &e->w[i], i)) < 0) {
            snprintf(err, errlen, "setting up thread %u: %s", i, strerror(-rc));
            e->nworkers = i + 1;
            tp_stress_engine_destroy(e);
            return NULL;
        }
    }
    return e;
out_free_engine:
    tp_stress__chat_destroy(e);
    free(e);
out_nomem:
    snprintf(err, errlen, "out of memory");
    return NULL;
}

int tp_stress_engine_start(tp_stress_engine_t *e)
{
    uint32_t i;
    int rc;

    e->start_ns = tp_stress_now_ns();
    e->deadline_ns = e->start_ns + e->o.duration_ns + e->deadline_extra_ns;
    atomic_store(&e->running, e->nworkers);
    for (i = 0; i < e->nworkers; i++) {
        rc = pthread_create(&e->w[i].tid, NULL, worker_main, &e->w[i]);
        if (rc != 0) {
            atomic_store(&e->stop, true);
            atomic_fetch_sub(&e->running, e->nworkers - i);
            return -rc;
        }
        e->w[i].started = true;
    }
    return 0;
}

void tp_stress_engine_stop(tp_stress_engine_t *e)
{
    atomic_store_explicit(&e->stop, true, memory_order_relaxed);
}

bool tp_stress_engine_is_done(tp_stress_engine_t *e)
{
    return atomic_load(&e->running) == 0;
}

static void add_counts(struct tp_stress_counts *dst, const struct tp_stress_counts *src)
{
    int k;

    dst->msgs += src->msgs;
    dst->bytes += src->bytes;
    dst->sent_msgs += src->sent_msgs;
    dst->sent_bytes += src->sent_bytes;
    dst->opened += src->opened;
    dst->reconnects += src->reconnects;
    dst->closed_by_server += src->closed_by_server;
    dst->lost_at_close += src->lost_at_close;
    for (k = 0; k < TP_STRESS_ERR_KINDS; k++)
        dst->err[k] += src->err[k];
}

/* Whether every thread has cut interval k or will cut no more; *some:
 * whether one has cut it. */
static bool tick_is_ready(struct tp_stress_engine *e, uint64_t k, bool *some)
{
    struct worker *w;
    bool ready = true;
    uint32_t i;

    *some = false;
    for (i = 0; i < e->nworkers; i++) {
        w = &e->w[i];
        pthread_mutex_lock(&w->lock);
        if (w->pub_k == k)
            *some = true;
        else if (!w->pub_finished)
            ready = false;
        pthread_mutex_unlock(&w->lock);
    }
    return ready;
}

/* The run after the last cut: what the joined threads still hold. */
static void take_tail(struct tp_stress_engine *e, struct tp_stress_tick *t)
{
    struct worker *w;
    uint32_t i;

    t->tail = true;
    t->end_ns = t->begin_ns;      /* the last thread's end, below */
    for (i = 0; i < e->nworkers; i++) {
        w = &e->w[i];
        tp_stress_hist_merge(t->hist, w->cur);
        add_counts(&t->n, &w->n);
        t->open += w->open_at_end;
        if (w->end_ns > t->end_ns)
            t->end_ns = w->end_ns;
    }
    e->tail_taken = true;
}

int tp_stress_engine_tick(tp_stress_engine_t *e, struct tp_stress_tick *t)
{
    uint64_t k = e->next_k;
    struct worker *w;
    bool some;
    uint32_t i;

    assert(e->interval_ns > 0);
    if (!tick_is_ready(e, k, &some))
        return 0;
    if (!some && (!e->joined || e->tail_taken))
        return 0;
    memset(&t->n, 0, sizeof(t->n));
    t->open = 0;
    t->index = k;
    t->tail = false;
    t->start_ns = e->start_ns;
    t->begin_ns = e->last_end_ns > e->start_ns ? e->last_end_ns : e->start_ns;
    if (!some) {
        take_tail(e, t);
        e->last_end_ns = t->end_ns;
        return 1;
    }
    t->end_ns = t->begin_ns;
    /* Once ready, a thread's part stays as it is until taken here: it cuts
     * k + 1 only after pub_k is emptied. */
    for (i = 0; i < e->nworkers; i++) {
        w = &e->w[i];
        pthread_mutex_lock(&w->lock);
        if (w->pub_k == k) {
            tp_stress_hist_merge(t->hist, w->pub_hist);
            tp_stress_hist_init(w->pub_hist);
            w->pub_k = TP_STRESS_NO_CUT;
            add_counts(&t->n, &w->pub_n);
            t->open += w->pub_open;
            if (w->pub_at > t->end_ns)
                t->end_ns = w->pub_at;
        } else {
            add_counts(&t->n, &w->fin_n);   /* finished: its connections are closed */
        }
        pthread_mutex_unlock(&w->lock);
    }
    e->last_end_ns = t->end_ns;
    e->next_k++;
    return 1;
}

void tp_stress_engine_join(tp_stress_engine_t *e, struct tp_stress_result *r)
{
    struct worker *w;
    uint32_t i, d;

    memset(r, 0, offsetof(struct tp_stress_result, hist));
    tp_stress_hist_init(&r->hist);
    r->start_ns = r->end_ns = e->start_ns;
    for (i = 0; i < e->nworkers; i++) {
        w = &e->w[i];
        if (!w->started) {
            w->pub_finished = true;     /* never ran: nothing to cut */
            continue;
        }
        pthread_join(w->tid, NULL);
        w->started = false;
        if (w->end_ns > r->end_ns)
            r->end_ns = w->end_ns;
        r->open_at_end += w->open_at_end;
        r->in_flight_at_end += w->in_flight_at_end;
        add_counts(&r->n, &w->n);
        tp_stress_hist_merge(&r->hist, w->total);
        if (w->cur != NULL)
            tp_stress_hist_merge(&r->hist, w->cur);     /* since the last cut */
        if ((w->notes & TP_STRESS_NOTE_ERRNO) && !(r->notes & TP_STRESS_NOTE_ERRNO))
            r->other_errno = w->other_errno;
        r->notes |= w->notes;
        for (d = 0; d < w->ndetails; d++) {
            if (r->ndetails < TP_STRESS_MAX_DETAILS)
                memcpy(r->details[r->ndetails++], w->details[d], sizeof(r->details[0]));
            else
                r->details_dropped++;
        }
        r->details_dropped += w->details_dropped;
    }
    e->joined = true;
    r->requested = e->o.conns;
    if (e->o.mode == TP_STRESS_CHAT)
        tp_stress__chat_join(e, r);
}

void tp_stress_engine_destroy(tp_stress_engine_t *e)
{
    uint32_t i;

    if (e == NULL)
        return;
    for (i = 0; i < e->nworkers; i++)
        worker_fini(&e->w[i]);
    free(e->w);
    tp_stress__chat_destroy(e);
    free(e);
}
