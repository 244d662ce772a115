/* tp_conn.c - one connection's life (the states are in tp_conn.h): read,
 * cut, hand off, write, finish, linger, close.
 *
 * Edge-triggered: TP_CONN_READABLE stays set until a read returns EAGAIN (or
 * a short read without a pending hang-up). Whatever stops reading earlier
 * puts the connection where it will be found again without a new edge:
 *   read budget used up       -> pending list, next loop turn (the
 *                                connection's, or the turn's: see
 *                                TP_TURN_BUDGET)
 *   batch at the pool, full   -> read again when the batch comes back
 *   pool backlog full         -> waiting list, when the pool drains
 *   output over the limit     -> pending list, when output falls below half
 *
 * Mutable globals (reactor thread only): `discard`, where lingering input
 * goes, and tp_conn__peer()'s buffer. */
#include "tp_conn.h"

#include <assert.h>
#include <errno.h>
#include <linux/sockios.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tp_frame.h"
#include "tp_sock.h"

#define READ_BUDGET (256 * 1024)      /* bytes per connection per loop turn: four
                                         reads of the largest read buffer */
#define READ_MAX (65536 - 128)       /* bytes per read while a connection
                                         streams: see conn_read() */
#define READ_CLASSES 3                /* read buffers use the first data size
                                         classes, growing while reads fill them */
#define IOV_BATCH 64                  /* reply buffers per sendmsg */
#define OUT_HARD_EXTRA (4u << 20)     /* output past 2 * send_buffer_max + this:
                                         the peer is not reading; abort */
#define LINGER_CHECK_MS 20            /* how often a lingering send queue is looked at */
#define REFUSED_LINGER_MAX 64         /* refused connections lingering at once */
#define TP_PEER_TEXT_MAX 64           /* "[ipv6]:port" and its NUL */

static char discard[65536];

void tp_conns__log(struct tp_conns *cs, enum tp_log_level level, const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    if (cs->log == NULL || level > cs->log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    cs->log(cs->log_arg, level, buf);
}

const char *tp_conn__peer(const struct tp_conn *c)
{
    static char buf[64];

    return tp_sock_peer(c->fd, buf, sizeof(buf));
}

static bool is_open(const struct tp_conn *c)
{
    return c->state == TP_CONN_READING || c->state == TP_CONN_FINISHING;
}

/* Notes progress for idle_timeout. Moving c to the tail of the idle list
 * writes two other connections' cache lines, so a busy connection moves at
 * most once per idle_slack_ms (idle_timeout / 16, at most 1 s); expiry adds
 * the slack, so a connection is closed late by at most that, never early. */
static void touch(struct tp_conns *cs, struct tp_conn *c)
{
    if (cs->now_ms - c->active_ms < c->l->idle_slack_ms)
        return;
    c->active_ms = cs->now_ms;
    cds_list_del(&c->idle);
    cds_list_add_tail(&c->idle, &c->l->idle);
}

/* ---- output ---- */

static void release(struct tp_conns *cs, struct tp_msg *m)
{
    if (m->kind == TP_MSG_REF && --m->shared->refs == 0)
        tp_msg_cache_put(&cs->cache, m->shared);
    tp_msg_cache_put(&cs->cache, m);
}

/* Appends m to c's output; the caller writes it or marks c dirty. Empty
 * output is dropped here: a zero-byte send() would never make progress. */
static void queue_out(struct tp_conns *cs, struct tp_conn *c, struct tp_msg *m)
{
    if (m->len == 0) {
        release(cs, m);
        return;
    }
    m->off = 0;
    tp_msg_list_push(&c->out, m);
    c->out_bytes += m->len;
    /* Output c's own input made pauses c's reading (it is the one that
     * reads); what others broadcast cannot be held back that way: past the
     * limit, c is slow (tp_conn__flush). */
    if (m->kind == TP_MSG_REF)
        c->out_refs++;
    else if (c->out_bytes > c->l->conf->send_buffer_max)
        c->flags |= TP_CONN_OUT_FULL;
    /* Not closed here: callers may be walking a list of connections. */
    if (c->out_bytes > 2 * c->l->conf->send_buffer_max + OUT_HARD_EXTRA)
        c->flags |= TP_CONN_OVERFLOW;
}

void tp_conns__time_written(struct tp_conns *cs)
{
    struct timespec ts;
    uint32_t now;
    unsigned i;

    if (cs->nwritten == 0 && cs->written_now == 0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = TP_STAMP((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    if (cs->written_now > 0)
        tp_metrics_observe(&cs->slot->latency, (uint64_t)(now - cs->turn_stamp) << 10,
                           cs->written_now);
    for (i = 0; i < cs->nwritten; i++)
        tp_metrics_observe(&cs->slot->latency, (uint64_t)(now - cs->written[i].stamp) << 10,
                           cs->written[i].n);
    cs->nwritten = 0;
    cs->written_now = 0;
}

/* A reply to a message read in an earlier turn (it went to a worker). */
static void written_earlier(struct tp_conns *cs, const struct tp_msg *m)
{
    unsigned i;

    for (i = 0; i < cs->nwritten && cs->written[i].stamp != m->read_stamp; i++)
        ;
    if (i == sizeof(cs->written) / sizeof(cs->written[0])) {
        tp_conns__time_written(cs);
        i = 0;
    }
    if (i == cs->nwritten) {
        cs->written[i].stamp = m->read_stamp;
        cs->written[i].n = 0;
        cs->nwritten++;
    }
    cs->written[i].n += m->count;
}

/* m's last byte went to the kernel: count its replies, and time them at the
 * end of the turn with the others read in the same turn. */
static inline void written(struct tp_conns *cs, struct tp_conn *c, const struct tp_msg *m)
{
    TP_METRIC_ADD(&c->l->m->msgs_out, m->count);
    if (m->read_stamp == cs->turn_stamp)
        cs->written_now += m->count;
    else if (m->read_stamp != 0 && m->kind != TP_MSG_REF)
        written_earlier(cs, m);
}

/* Drops written bytes from the front of c's output. */
static void consume(struct tp_conns *cs, struct tp_conn *c, size_t n)
{
    struct tp_msg *m;

    c->out_bytes -= n;
    while (n > 0) {
        m = tp_msg_list_first(&c->out);
        if (n < m->len - m->off) {
            m->off += (uint32_t)n;
            return;
        }
        n -= m->len - m->off;
        written(cs, c, m);
        if (m->kind == TP_MSG_REF)
            c->out_refs--;
        release(cs, tp_msg_list_pop(&c->out));
    }
}

static size_t gather(struct tp_conn *c, struct iovec *iov, int *n)
{
    struct tp_msg *m;
    size_t total = 0;

    for (*n = 0, m = tp_msg_list_first(&c->out); m != NULL && *n < IOV_BATCH;
         m = tp_msg_list_next(&c->out, m)) {
        char *base = m->kind == TP_MSG_REF ? m->shared->data : m->data;

        iov[*n].iov_base = base + m->off;
        iov[*n].iov_len = m->len - m->off;
        total += iov[(*n)++].iov_len;
    }
    return total;
}

/* Writes until the output is gone or the socket is full (then EPOLLOUT
 * brings us back). Returns -1 if c was closed. */
static int conn_write(struct tp_conns *cs, struct tp_conn *c)
{
    struct iovec iov[IOV_BATCH];
    struct msghdr mh = { .msg_iov = iov };
    size_t total;
    ssize_t n;
    int niov;

    while (!tp_msg_list_empty(&c->out)) {
        total = gather(c, iov, &niov);
        mh.msg_iovlen = (size_t)niov;
        /* send() skips sendmsg()'s copy-in of the header and iovec array:
         * measurably cheaper for the common one-buffer reply. */
        if (niov == 1)
            n = send(c->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        else
            n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {       /* 0 cannot happen with bytes to send; never spin */
            tp_conns__log(cs, TP_LOG_DEBUG, "write: %s", n < 0 ? strerror(errno) : "no progress");
            tp_conn_close(cs, c, TP_CLOSE_ERROR, true);
            return -1;
        }
        TP_METRIC_ADD(&c->l->m->bytes_out, (uint64_t)n);
        consume(cs, c, (size_t)n);
        touch(cs, c);
        if ((size_t)n < total)
            break;
    }
    if ((c->flags & TP_CONN_OUT_FULL) &&
        c->out_bytes <= c->l->conf->send_buffer_max / 2) {
        c->flags &= (uint16_t)~TP_CONN_OUT_FULL;
        tp_table_add(&cs->table, TP_LIST_PENDING, c);
    }
    return 0;
}

static void advance(struct tp_conns *cs, struct tp_conn *c);

/* What comes next for c, if it is closing (see advance()). */
static inline void progress(struct tp_conns *cs, struct tp_conn *c)
{
    if (c->state != TP_CONN_READING)
        advance(cs, c);
}

/* True if c holds broadcast output and, after a write, more unsent output
 * than send_buffer_max: it does not keep up with the room. Pausing its
 * reading would not slow the others who send to it, so it is closed (as
 * Redis closes a pub/sub client past its output limit): its backlog is
 * bounded, and nobody else waits for it or loses a message. */
static bool is_slow(const struct tp_conn *c)
{
    return c->out_refs > 0 && c->out_bytes > c->l->conf->send_buffer_max;
}

void tp_conn__flush(struct tp_conns *cs, struct tp_conn *c)
{
    if (!is_open(c))
        return;
    if (!(c->flags & TP_CONN_OVERFLOW) && conn_write(cs, c) < 0)
        return;
    if (is_slow(c)) {
        tp_conns__log(cs, TP_LOG_INFO, "%s: closing %s: it does not keep up with "
                      "what the room sends (%zu bytes unsent, send_buffer_max %llu)",
                      c->l->name, tp_conn__peer(c), c->out_bytes,
                      (unsigned long long)c->l->conf->send_buffer_max);
        tp_conn_close(cs, c, TP_CLOSE_SLOW, true);
        return;
    }
    if (c->flags & TP_CONN_OVERFLOW) {
        tp_conns__log(cs, TP_LOG_INFO, "%s: closing %s: it does not read what it "
                      "is sent (%zu bytes unsent)", c->l->name, tp_conn__peer(c),
                      c->out_bytes);
        tp_conn_close(cs, c, TP_CLOSE_ERROR, true);
        return;
    }
    progress(cs, c);
}

/* ---- handing messages to the app ---- */

static void dispatch(struct tp_conns *cs, struct tp_conn *c, struct tp_msg *m)
{
    int err;

    m->h = c->h;
    m->listener = c->l->index;
    m->conn_data = c->app_data;
    m->count = c->l->members;
    c->flags |= TP_CONN_BUSY;
    c->l->busy++;
    err = tp_pool_submit(cs->pool, m);
    assert(err == 0);   /* callers checked tp_pool_is_full(); events are never refused */
    (void)err;
}

/* Tells the app c is gone, once, when no batch of c is at the pool. */
static void app_close(struct tp_conns *cs, struct tp_conn *c)
{
    struct tp_msg *m;

    if (c->flags & (TP_CONN_APP_CLOSED | TP_CONN_BUSY))
        return;
    c->flags |= TP_CONN_APP_CLOSED;
    if (c->l->env.app->close == NULL)
        return;
    m = tp_msg_cache_get(&cs->cache, 0);
    if (m == NULL) {
        tp_conns__log(cs, TP_LOG_ERROR, "%s: out of memory: app close skipped", c->l->name);
        return;
    }
    m->kind = TP_MSG_CLOSE;
    dispatch(cs, c, m);
}

/* Hands the whole messages of the read buffer to the app, keeping the
 * partial one (if any) in a fresh buffer. Returns -ENOMEM or 0. */
static int ship(struct tp_conns *cs, struct tp_conn *c)
{
    struct tp_msg *b = c->rbuf, *rest = NULL;
    uint32_t end = b != NULL ? b->cut : 0;

    if (end == 0 || (c->flags & TP_CONN_BUSY) || !is_open(c))
        return 0;
    if (tp_pool_is_full(cs->pool)) {
        tp_table_add(&cs->table, TP_LIST_WAITING, c);
        return 0;
    }
    if (end < b->len) {
        /* A short partial message waits in a buffer just big enough for
         * it, and read_room() moves it into a full-size one, warm in the
         * cache, when more arrives; a long one starts a full-size one now
         * rather than be copied twice. */
        size_t part = b->len - end, want = tp_msg_class_cap(1u + c->rsize);

        rest = tp_msg_cache_get(&cs->cache, part <= want / 4 ? part : part > want ? part : want);
        if (rest == NULL)
            return -ENOMEM;
        memcpy(rest->data, b->data + end, b->len - end);
        rest->len = b->len - end;
        rest->scanned = b->scanned;
        b->len = end;
    }
    c->rbuf = rest;
    b->kind = TP_MSG_DATA;
    b->read_stamp = cs->turn_stamp;
    /* After EOF a line listener's unterminated tail is a message too. */
    b->flags = c->state == TP_CONN_FINISHING && c->why == TP_CLOSE_PEER ? TP_MSG_F_EOF : 0;
    dispatch(cs, c, b);
    return 0;
}

/* ---- input ---- */

/* Keeps c on the read-timeout list exactly while it is reading and holds a
 * partial message; `fresh` means whole messages were just cut, so the
 * partial one is new. */
static void track_partial(struct tp_conns *cs, struct tp_conn *c, bool fresh)
{
    bool partial = c->state == TP_CONN_READING && !(c->flags & TP_CONN_OUT_FULL) &&
                   c->rbuf != NULL && c->rbuf->cut < c->rbuf->len;
    bool listed = !cds_list_empty(&c->partial);

    if (partial && (fresh || !listed)) {
        cds_list_del(&c->partial);
        cds_list_add_tail(&c->partial, &c->l->partial);
        c->partial_ms = cs->now_ms;
    } else if (!partial && listed) {
        cds_list_del_init(&c->partial);
    }
}

/* Finds the whole messages just read and ships them. Returns -1 if c is no
 * longer reading. */
static int cut_input(struct tp_conns *cs, struct tp_conn *c)
{
    const struct tp_listen_conf *lc = c->l->conf;
    struct tp_frame_cursor cur = { c->rbuf->cut, c->rbuf->scanned };
    bool fresh;
    int err;

    err = tp_frame_advance(lc->framing, c->rbuf->data, c->rbuf->len,
                           lc->max_message, &cur);
    fresh = cur.cut > c->rbuf->cut;
    c->rbuf->cut = cur.cut;
    c->rbuf->scanned = cur.scanned;
    if (err < 0) {
        tp_conns__log(cs, TP_LOG_INFO, "%s: closing %s: message longer than "
                      "max_message (%u bytes)", c->l->name, tp_conn__peer(c),
                      lc->max_message);
        tp_conn_close(cs, c, TP_CLOSE_OVERSIZE, false);
        return -1;
    }
    track_partial(cs, c, fresh);
    if (ship(cs, c) < 0) {
        tp_conns__log(cs, TP_LOG_ERROR, "%s: out of memory, closing %s", c->l->name,
                      tp_conn__peer(c));
        tp_conn_close(cs, c, TP_CLOSE_ERROR, true);
        return -1;
    }
    return 0;
}

static bool input_blocked(const struct tp_conn *c)
{
    const struct tp_msg *b = c->rbuf;

    if (c->state != TP_CONN_READING || (c->flags & TP_CONN_OUT_FULL))
        return true;
    /* A full buffer with whole messages in it waits for them to be shipped
     * (a batch is at the pool, or the pool is full); with none, it grows. */
    return b != NULL && b->len == b->cap && b->cut > 0;
}

/* Makes room in the read buffer. Returns bytes of room, or 0 if out of
 * memory. */
static size_t read_room(struct tp_conns *cs, struct tp_conn *c)
{
    size_t most = (size_t)c->l->conf->max_message + TP_FRAME_OVERHEAD + 1, want;
    struct tp_msg *b = c->rbuf;

    if (b == NULL) {
        b = tp_msg_cache_get(&cs->cache, tp_msg_class_cap(1u + c->rsize));
    } else if (b->cap < (want = tp_msg_class_cap(1u + c->rsize))) {
        /* A partial message kept small by ship(): read into a buffer of
         * the learned size, the one just freed (warm in the cache), rather
         * than keep a big one per connection waiting, cold, for its next
         * read. */
        b = tp_msg_cache_move(&cs->cache, b, 0, want);
    } else if (b->len == b->cap) {
        /* One message fills the buffer: grow towards max_message, a
         * size class at a time. */
        want = tp_msg_class_cap(b->sclass + 1u);
        if (want == 0)
            want = (size_t)b->cap * 4;
        if (want > most)
            want = most;
        b = want > b->cap ? tp_msg_cache_move(&cs->cache, b, 0, want) : NULL;
    }
    if (b == NULL)
        return 0;
    c->rbuf = b;
    return b->cap - b->len;
}

/* Adapts the next read buffer's size to how full this one is after a
 * read: a message that fills a buffer makes the next one bigger (not the
 * short read that finished it, or every 4 KiB message would take a read, a
 * copy into a grown buffer and a second read). */
static void learn_size(struct tp_conn *c, const struct tp_msg *b)
{
    if (b->len == b->cap && c->rsize + 1u < READ_CLASSES)
        c->rsize++;
    else if (b->len < b->cap / 8 && c->rsize > 0)
        c->rsize--;
}

/* What c may read now: READ_BUDGET, or what is left of the turn's share. */
static size_t turn_budget(const struct tp_conns *cs)
{
    return READ_BUDGET < cs->turn_left ? READ_BUDGET : cs->turn_left;
}

/* Reads up to budget bytes (at least one read if budget > 0); with answer,
 * runs what the pool runs here as it goes (not while a caller walks a list
 * of connections). Returns false if c's slot was freed meanwhile (c is not
 * to be touched). */
static bool conn_read(struct tp_conns *cs, struct tp_conn *c, size_t budget, bool answer)
{
    struct tp_handle h;
    size_t room;
    ssize_t n;

    while ((c->flags & TP_CONN_READABLE) && !input_blocked(c)) {
        if (budget == 0) {
            tp_table_add(&cs->table, TP_LIST_PENDING, c);
            break;
        }
        room = read_room(cs, c);
        if (room == 0) {
            tp_conns__log(cs, TP_LOG_ERROR, "%s: no memory for a read buffer, closing %s",
                          c->l->name, tp_conn__peer(c));
            tp_conn_close(cs, c, TP_CLOSE_ERROR, true);
            return true;
        }
        /* A connection whose last read filled its room streams: what it
         * sends is echoed in reads' worth, and a write past one 64 KiB GSO
         * segment (headers included) costs the kernel a second, tiny one
         * (measured: a raw flood at 0.91x). A read that is not known to
         * stream takes the whole room, so a 64 KiB message takes one. */
        if (room > READ_MAX && (c->flags & TP_CONN_STREAMING))
            room = READ_MAX;
        n = read(c->fd, c->rbuf->data + c->rbuf->len, room);
        if (n > 0) {
            c->rbuf->len += (uint32_t)n;
            /* A budget too small for another read as big as this one ends
             * the turn here: what was read gets answered (and its buffer
             * reused, warm) before this connection reads again. */
            budget = budget - (size_t)n >= (size_t)n && (size_t)n < budget ? budget - (size_t)n : 0;
            cs->turn_left -= (size_t)n < cs->turn_left ? (size_t)n : cs->turn_left;
            TP_METRIC_ADD(&c->l->m->bytes_in, (uint64_t)n);
            touch(cs, c);
            learn_size(c, c->rbuf);
            if ((size_t)n == room)
                c->flags |= TP_CONN_STREAMING;
            else
                c->flags &= (uint16_t)~TP_CONN_STREAMING;
            /* A short read emptied the socket; a later arrival is a new
             * edge. Not so for a hang-up already reported: read it now. */
            if ((size_t)n < room && !(c->flags & TP_CONN_RDHUP))
                c->flags &= (uint16_t)~TP_CONN_READABLE;
            if (cut_input(cs, c) < 0)
                break;
            /* One batch of c at a time: where it runs on this thread
             * (workers 0, or work cheap enough), answer it now and read on
             * into the buffer it frees, warm, while the budget lasts,
             * instead of leaving c with a full buffer for a later pass. */
            if (answer && (c->flags & (TP_CONN_BUSY | TP_CONN_READABLE)) ==
                    (TP_CONN_BUSY | TP_CONN_READABLE) && budget > 0 && cs->answer != NULL) {
                h = c->h;
                cs->answer(cs->answer_arg);
                if (tp_table_find(&cs->table, h) != c)
                    return false;
            }
        } else if (n == 0) {
            c->flags &= (uint16_t)~TP_CONN_READABLE;
            tp_conn_close(cs, c, TP_CLOSE_PEER, false);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->flags &= (uint16_t)~TP_CONN_READABLE;
        } else if (errno != EINTR) {
            tp_conns__log(cs, TP_LOG_DEBUG, "read: %s", strerror(errno));
            tp_conn_close(cs, c, TP_CLOSE_ERROR, true);
            return true;
        }
    }
    if (c->rbuf != NULL && c->rbuf->len == 0) {
        tp_msg_cache_put(&cs->cache, c->rbuf);
        c->rbuf = NULL;
    }
    return true;
}

/* ---- lingering ---- */

/* FINISHING, LINGERING: reads and drops what arrived, lingering_max bytes
 * in all (then the rest is left unread and the peer's writes block, which
 * costs us nothing). Dropping lets a client that is blocked writing go on to
 * read its replies. Returns 1 at EOF, -1 if the connection failed, else 0. */
static int drop_input(struct tp_conns *cs, struct tp_conn *c)
{
    uint64_t most = c->l->conf->lingering_max;
    ssize_t n;

    while (c->dropped < most) {
        n = read(c->fd, discard, most - c->dropped < sizeof(discard)
                                 ? (size_t)(most - c->dropped) : sizeof(discard));
        if (n > 0) {
            TP_STAT_ADD(cs, bytes_discarded, (uint64_t)n);
            c->dropped += (uint32_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        c->flags &= (uint16_t)~TP_CONN_READABLE;
        if (n == 0)
            return 1;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
    return 0;
}

/* LINGERING: true once c may close: the peer closed or failed, or every
 * byte we sent and our FIN were acknowledged, so the peer holds all its
 * replies even if closing now makes the kernel answer later input with RST. */
static bool linger_done(struct tp_conns *cs, struct tp_conn *c)
{
    int unacked = 1;

    if (drop_input(cs, c) != 0)
        return true;
    return ioctl(c->fd, SIOCOUTQ, &unacked) < 0 || unacked == 0;
}

void tp_conn__check_lingering(struct tp_conns *cs)
{
    struct tp_conn *c;

    while (!cds_list_empty(&cs->linger)) {
        c = cds_list_first_entry(&cs->linger, struct tp_conn, idle);
        if (c->active_ms > cs->now_ms)
            break;
        if (cs->now_ms >= c->partial_ms) {
            tp_conns__log(cs, TP_LOG_DEBUG, "%s: %s: lingering_timeout passed",
                          c->l->name, tp_conn__peer(c));
            TP_STAT_ADD(cs, linger_cut, 1);
            tp_conn_close(cs, c, c->why, true);
            continue;
        }
        c->active_ms = cs->now_ms + LINGER_CHECK_MS;
        cds_list_del(&c->idle);
        cds_list_add_tail(&c->idle, &cs->linger);
        progress(cs, c);
    }
}

int64_t tp_conn__next_linger_check(struct tp_conns *cs)
{
    if (cds_list_empty(&cs->linger))
        return INT64_MAX;
    return cds_list_first_entry(&cs->linger, struct tp_conn, idle)->active_ms;
}

/* ---- the state machine ---- */

static void leave_listener(struct tp_conn *c)
{
    if (c->flags & TP_CONN_MEMBER) {
        c->flags &= (uint16_t)~TP_CONN_MEMBER;
        c->l->members--;
    }
    cds_list_del(&c->link);
    cds_list_del(&c->idle);
    cds_list_del_init(&c->partial);
}

/* Entering FINISHING: input stops. What was read and is whole still runs;
 * after EOF a line listener's unterminated tail is a message; after an app's
 * CLOSE nothing more runs; any other partial message is dropped. */
static void stop_input(struct tp_conns *cs, struct tp_conn *c)
{
    struct tp_msg *b = c->rbuf;
    uint32_t keep;

    cds_list_del_init(&c->partial);
    if (b == NULL)
        return;
    keep = c->why == TP_CLOSE_APP ? 0 : b->cut;
    if (c->why == TP_CLOSE_PEER && c->l->conf->framing == TP_FRAMING_LINE &&
        b->len > b->cut)
        keep = b->len;          /* counted when it has run, as all messages are */
    if (b->len > keep) {
        if (c->why == TP_CLOSE_PEER)
            tp_conns__log(cs, TP_LOG_DEBUG, "%s: %s closed in the middle of a "
                          "message; %u bytes dropped", c->l->name, tp_conn__peer(c),
                          b->len - keep);
        TP_STAT_ADD(cs, bytes_discarded, b->len - keep);
    }
    b->len = b->cut = keep;
    if (keep == 0) {
        tp_msg_cache_put(&cs->cache, b);
        c->rbuf = NULL;
    }
}

static void count_close(struct tp_conns *cs, const struct tp_conn *c)
{
    switch ((enum tp_close_reason)c->why) {
    case TP_CLOSE_PEER: TP_STAT_ADD(cs, closed_peer, 1); break;
    case TP_CLOSE_ERROR: TP_STAT_ADD(cs, closed_error, 1); break;
    case TP_CLOSE_OVERSIZE: TP_STAT_ADD(cs, closed_oversize, 1); break;
    case TP_CLOSE_IDLE: TP_STAT_ADD(cs, closed_idle, 1); break;
    case TP_CLOSE_READ_TIMEOUT: TP_STAT_ADD(cs, closed_read_timeout, 1); break;
    case TP_CLOSE_APP: TP_STAT_ADD(cs, closed_app, 1); break;
    case TP_CLOSE_SHUTDOWN: TP_STAT_ADD(cs, closed_shutdown, 1); break;
    case TP_CLOSE_SLOW: TP_STAT_ADD(cs, closed_slow, 1); break;
    case TP_CLOSE_REFUSED:
        cs->refused_lingering--;
        return;               /* counted when refused; never open */
    }
    TP_STAT_ADD(cs, open, (uint64_t)-1);
}

/* Entering CLOSED: the fd and whatever is left unsent or unread go. */
static void close_fd(struct tp_conns *cs, struct tp_conn *c)
{
    struct tp_msg *m;

    if (c->state == TP_CONN_LINGERING) {
        cds_list_del(&c->idle);
        TP_STAT_ADD(cs, lingering, (uint64_t)-1);
    } else {
        leave_listener(c);
    }
    if (c->rbuf != NULL) {
        TP_STAT_ADD(cs, bytes_discarded, c->rbuf->len);
        tp_msg_cache_put(&cs->cache, c->rbuf);
        c->rbuf = NULL;
    }
    while ((m = tp_msg_list_pop(&c->out)) != NULL)
        release(cs, m);
    c->out_bytes = 0;
    c->out_refs = 0;
    count_close(cs, c);
    tp_ip_release(c->ip);
    c->ip = NULL;
    close(c->fd);           /* after the counters: a peer that sees EOF sees them */
    c->fd = -1;
}

/* The one place a connection's state changes; each case is what entering
 * that state takes. */
static void set_state(struct tp_conns *cs, struct tp_conn *c, enum tp_conn_state to)
{
    const struct tp_listen_conf *lc = c->l->conf;

    switch (to) {
    case TP_CONN_FREE:
        c->l->refs--;
        tp_table_put(&cs->table, c);
        return;
    case TP_CONN_READING:
        break;
    case TP_CONN_FINISHING:
        stop_input(cs, c);
        break;
    case TP_CONN_LINGERING:
        shutdown(c->fd, SHUT_WR);
        leave_listener(c);
        c->active_ms = cs->now_ms + LINGER_CHECK_MS;
        c->partial_ms = cs->now_ms + lc->lingering_timeout_ms;
        cds_list_add_tail(&c->idle, &cs->linger);
        TP_STAT_ADD(cs, lingering, 1);
        TP_STAT_ADD(cs, lingered, 1);
        app_close(cs, c);
        break;
    case TP_CONN_CLOSED:
        close_fd(cs, c);
        break;
    }
    c->state = (uint8_t)to;
}

/* FINISHING for a graceful stop, every reply written: queues the listener's
 * shutdown_message, once, as the last output (nothing is queued after it).
 * Returns true if c is to wait: for the message to be written, or for the
 * listener's other connections to be done at the pool. */
static bool say_goodbye(struct tp_conns *cs, struct tp_conn *c)
{
    const struct tp_listen_conf *lc = c->l->conf;
    struct tp_msg *m;

    if (c->why != TP_CLOSE_SHUTDOWN || lc->shutdown_message_len == 0 ||
        (c->flags & TP_CONN_BYE))
        return false;
    /* What the others read before the stop may still be at the pool, on
     * its way to c (a broadcast): the message waits for it. done() comes
     * back here when the listener has nothing left there. */
    if (c->l->busy > 0)
        return true;
    c->flags |= TP_CONN_BYE;
    m = tp_msg_cache_get(&cs->cache, lc->shutdown_message_len + 1);
    if (m == NULL) {
        tp_conns__log(cs, TP_LOG_ERROR, "%s: out of memory: no shutdown_message for %s",
                      c->l->name, tp_conn__peer(c));
        return false;
    }
    memcpy(m->data, lc->shutdown_message, lc->shutdown_message_len);
    m->data[lc->shutdown_message_len] = '\n';
    m->len = lc->shutdown_message_len + 1;
    queue_out(cs, c, m);
    tp_table_add(&cs->table, TP_LIST_DIRTY, c);
    return true;
}

/* What comes next for a connection that is closing, as far as it can go
 * now. Called (through progress()) after anything that may let it move on. */
static void advance(struct tp_conns *cs, struct tp_conn *c)
{
    for (;;) {
        switch (c->state) {
        case TP_CONN_FINISHING:
            if ((c->flags & TP_CONN_READABLE) && c->why != TP_CLOSE_PEER &&
                drop_input(cs, c) < 0) {
                set_state(cs, c, TP_CONN_CLOSED);   /* nobody to write to */
                break;
            }
            /* What was read still goes to the app: the tail an EOF made a
             * message may be all there is, with nothing at the pool. */
            if (ship(cs, c) < 0) {
                tp_conns__log(cs, TP_LOG_ERROR, "%s: out of memory, closing %s",
                              c->l->name, tp_conn__peer(c));
                set_state(cs, c, TP_CONN_CLOSED);
                break;
            }
            if ((c->flags & TP_CONN_BUSY) || !tp_msg_list_empty(&c->out) ||
                (c->rbuf != NULL && c->rbuf->cut > 0))
                return;
            if (say_goodbye(cs, c))
                return;             /* written from the dirty list; back here then */
            /* After the peer's FIN nothing can arrive, so no lingering. */
            if (c->why == TP_CLOSE_PEER || c->l->conf->lingering_timeout_ms == 0)
                set_state(cs, c, TP_CONN_CLOSED);
            else
                set_state(cs, c, TP_CONN_LINGERING);
            break;
        case TP_CONN_LINGERING:
            if (!linger_done(cs, c))
                return;
            set_state(cs, c, TP_CONN_CLOSED);
            break;
        case TP_CONN_CLOSED:
            app_close(cs, c);
            if (c->flags & TP_CONN_BUSY)
                return;
            set_state(cs, c, TP_CONN_FREE);
            return;
        default:
            return;
        }
    }
}

void tp_conn_close(struct tp_conns *cs, struct tp_conn *c, enum tp_close_reason why,
                   bool now)
{
    switch (c->state) {
    case TP_CONN_READING:
        c->why = (uint8_t)why;
        set_state(cs, c, now ? TP_CONN_CLOSED : TP_CONN_FINISHING);
        break;
    case TP_CONN_FINISHING:
    case TP_CONN_LINGERING:
        if (!now)
            return;           /* closing already; the first reason counts */
        set_state(cs, c, TP_CONN_CLOSED);
        break;
    default:
        return;
    }
    progress(cs, c);
}

/* ---- events ---- */

void tp_conn__open(struct tp_conns *cs, struct tp_listener *l, int fd, bool refuse,
                   struct tp_ip_entry *ip, const struct sockaddr *peer)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };
    struct tp_conn *c = NULL;
    struct tp_msg *m;

    if (refuse && cs->refused_lingering >= REFUSED_LINGER_MAX) {
        close(fd);            /* past every bound: not even a lingering close */
        return;
    }
    c = tp_table_get(&cs->table);
    if (c == NULL || (ev.data.ptr = c, epoll_ctl(cs->epfd, EPOLL_CTL_ADD, fd, &ev)) < 0) {
        tp_conns__log(cs, TP_LOG_ERROR, "%s: cannot take a connection: %s",
                      l->name, strerror(errno));
        TP_STAT_ADD(cs, accept_errors, 1);
        close(fd);
        tp_ip_release(ip);
        if (c != NULL)
            tp_table_put(&cs->table, c);
        return;
    }
    c->source = TP_SRC_CONN;
    c->fd = fd;
    c->ip = ip;
    c->l = l;
    l->refs++;
    tp_msg_list_init(&c->out);
    c->active_ms = cs->now_ms;
    cds_list_add_tail(&c->link, &l->conns);
    cds_list_add_tail(&c->idle, &l->idle);
    CDS_INIT_LIST_HEAD(&c->partial);
    set_state(cs, c, TP_CONN_READING);
    if (refuse) {
        cs->refused_lingering++;
        c->flags |= TP_CONN_APP_CLOSED;
        tp_conn_close(cs, c, TP_CLOSE_REFUSED, false);
        return;
    }
    TP_STAT_ADD(cs, accepted, 1);
    TP_STAT_ADD(cs, open, 1);
    c->flags |= TP_CONN_MEMBER;
    l->members++;
    if (l->env.app->open == NULL)
        return;
    m = tp_msg_cache_get(&cs->cache, TP_PEER_TEXT_MAX);
    if (m == NULL) {
        c->flags |= TP_CONN_APP_CLOSED;     /* its open never ran */
        tp_conns__log(cs, TP_LOG_ERROR, "%s: out of memory, closing %s", l->name,
                      tp_conn__peer(c));
        tp_conn_close(cs, c, TP_CLOSE_ERROR, true);
        return;
    }
    m->kind = TP_MSG_OPEN;
    /* In data but not in len: an event carries no bytes the pool counts. */
    tp_sock_addr_text(peer, m->data, TP_PEER_TEXT_MAX);
    dispatch(cs, c, m);
}

/* True if c reads into the smallest read buffer (4 KiB): it has not been
 * filling its reads, so it is a new client, a request, a probe, not a flood. */
static bool is_light(const struct tp_conn *c)
{
    return c->rsize == 0 && (c->rbuf == NULL || c->rbuf->cap <= tp_msg_class_cap(1));
}

void tp_conn__event(struct tp_conns *cs, struct tp_conn *c, uint32_t events)
{
    size_t budget;

    if (c->state == TP_CONN_FREE || c->state == TP_CONN_CLOSED)
        return;               /* an event from before the close */
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->flags |= TP_CONN_READABLE;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->flags |= TP_CONN_RDHUP;
    if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && !tp_msg_list_empty(&c->out) &&
        conn_write(cs, c) < 0)
        return;
    /* One already waiting on the pending list keeps its place there. Any
     * other is read now, from the events' share of the turn (past it, it
     * joins the end of the list): it had emptied its socket, so it is
     * light (a new client, a request, a probe) and does not wait behind
     * every flooding connection's next READ_BUDGET. The list has its own
     * share of the turn, so the new ones cannot starve it. */
    if (c->flags & (TP_CONN_LISTED << TP_LIST_PENDING))
        return;
    budget = turn_budget(cs);
    /* Past the share, a light one still gets one read: a probe's line is
     * answered in this turn, not after a whole round of the list. At most
     * MAX_EVENTS (512) such reads of 4 KiB a turn. */
    if (budget == 0 && is_light(c))
        budget = 1;
    if (conn_read(cs, c, budget, true))
        progress(cs, c);
}

void tp_conn__resume(struct tp_conns *cs, struct tp_conn *c)
{
    if (!is_open(c))
        return;
    if (ship(cs, c) < 0) {
        tp_conn_close(cs, c, TP_CLOSE_ERROR, true);
        return;
    }
    if (conn_read(cs, c, turn_budget(cs), true))
        progress(cs, c);
}

void tp_conn__stop(struct tp_conns *cs, struct tp_conn *c)
{
    size_t left = cs->turn_left;

    if (c->state != TP_CONN_READING)
        return;
    /* Take in what already arrived, up to a connection's budget, whatever
     * this turn has read from others. */
    c->flags |= TP_CONN_READABLE;
    conn_read(cs, c, READ_BUDGET, false);
    cs->turn_left = left;
    tp_conn_close(cs, c, TP_CLOSE_SHUTDOWN, false);
}

/* ---- timers: per-listener lists in deadline order, so O(1) each ---- */

void tp_conn__expire(struct tp_conns *cs, struct tp_listener *l)
{
    const struct tp_listen_conf *lc = l->conf;
    struct tp_conn *c;

    while (lc->idle_timeout_ms > 0 && !cds_list_empty(&l->idle)) {
        c = cds_list_first_entry(&l->idle, struct tp_conn, idle);
        if (cs->now_ms - c->active_ms < (int64_t)lc->idle_timeout_ms + l->idle_slack_ms)
            break;
        tp_conns__log(cs, TP_LOG_DEBUG, "%s: closing idle connection %s", l->name,
                      tp_conn__peer(c));
        if (c->state == TP_CONN_FINISHING) {
            /* No progress writing its last replies: the peer is gone. */
            tp_conn_close(cs, c, TP_CLOSE_IDLE, true);
            continue;
        }
        tp_conn_close(cs, c, TP_CLOSE_IDLE, false);
        if (c->state == TP_CONN_FINISHING) {   /* give it a period to finish */
            c->active_ms = cs->now_ms;
            cds_list_del(&c->idle);
            cds_list_add_tail(&c->idle, &l->idle);
        }
    }
    while (lc->read_timeout_ms > 0 && !cds_list_empty(&l->partial)) {
        c = cds_list_first_entry(&l->partial, struct tp_conn, partial);
        if (cs->now_ms - c->partial_ms < lc->read_timeout_ms)
            break;
        if (c->flags & (TP_CONN_OUT_FULL | TP_CONN_LISTED << TP_LIST_WAITING)) {
            cds_list_del_init(&c->partial);   /* we paused it: its clock stops */
            continue;
        }
        tp_conns__log(cs, TP_LOG_INFO, "%s: closing %s: it held a partial message "
                      "past read_timeout", l->name, tp_conn__peer(c));
        tp_conn_close(cs, c, TP_CLOSE_READ_TIMEOUT, false);
    }
}

static int64_t earliest(int64_t a, int64_t b)
{
    return b < a ? b : a;
}

int64_t tp_conn__next_timer(struct tp_conns *cs, struct tp_listener *l)
{
    const struct tp_listen_conf *lc = l->conf;
    int64_t next = INT64_MAX;

    if (lc->idle_timeout_ms > 0 && !cds_list_empty(&l->idle))
        next = cds_list_first_entry(&l->idle, struct tp_conn, idle)->active_ms +
               lc->idle_timeout_ms + l->idle_slack_ms;
    if (lc->read_timeout_ms > 0 && !cds_list_empty(&l->partial))
        next = earliest(next, cds_list_first_entry(&l->partial, struct tp_conn,
                                                   partial)->partial_ms + lc->read_timeout_ms);
    return next;
}

/* ---- messages back from the app ---- */

/* The listener has nothing at the pool: those waiting to say goodbye
 * (say_goodbye) may. Only FINISHING connections wait, and going on never
 * takes another one off the list. */
static void goodbyes_due(struct tp_conns *cs, struct tp_listener *l)
{
    struct tp_conn *c, *next;

    cds_list_for_each_entry_safe(c, next, &l->conns, link)
        if (c->state == TP_CONN_FINISHING && c->why == TP_CLOSE_SHUTDOWN &&
            !(c->flags & (TP_CONN_BYE | TP_CONN_BUSY)))
            progress(cs, c);
}

static void finish_call(struct tp_conns *cs, struct tp_msg *m)
{
    struct tp_conn *c = tp_table_find(&cs->table, m->h);
    bool close_after = m->flags & TP_MSG_F_CLOSE;

    assert(c != NULL && (c->flags & TP_CONN_BUSY));
    TP_METRIC_ADD(&c->l->m->msgs_in, m->count);
    if (m->queue_ns != 0 && m->count > 0)
        tp_metrics_observe(&cs->slot->queue_wait, m->queue_ns, m->count);
    c->flags &= (uint16_t)~TP_CONN_BUSY;
    c->app_data = m->conn_data;
    c->l->busy--;
    if (!is_open(c)) {
        if (m->flags & TP_MSG_F_REPLY)
            TP_STAT_ADD(cs, replies_dropped, 1);
        tp_msg_cache_put(&cs->cache, m);
        progress(cs, c);
        return;
    }
    if (m->flags & TP_MSG_F_REPLY)
        queue_out(cs, c, m);
    else
        tp_msg_cache_put(&cs->cache, m);
    if (close_after)          /* after queueing: its reply is the last one */
        tp_conn_close(cs, c, TP_CLOSE_APP, false);
    if (ship(cs, c) < 0) {
        tp_conn_close(cs, c, TP_CLOSE_ERROR, true);
        return;
    }
    if ((c->flags & TP_CONN_READABLE) && c->state == TP_CONN_READING)
        tp_table_add(&cs->table, TP_LIST_PENDING, c);
    /* Write the reply now, while c is in cache. */
    tp_conn__flush(cs, c);
}

/* A batch (or open, close) is back: c goes on; then, if the listener has
 * nothing more at the pool, those waiting to say goodbye do. */
static void done(struct tp_conns *cs, struct tp_msg *m)
{
    struct tp_listener *l = &cs->listeners[m->listener];

    finish_call(cs, m);
    if (l->busy == 0 && l->conf->shutdown_message_len > 0)
        goodbyes_due(cs, l);
}

static void send_to(struct tp_conns *cs, struct tp_msg *m)
{
    struct tp_conn *c = tp_table_find(&cs->table, m->h);

    if (c == NULL || !is_open(c) || (c->flags & TP_CONN_BYE)) {
        TP_STAT_ADD(cs, replies_dropped, 1);
        tp_msg_cache_put(&cs->cache, m);
        return;
    }
    queue_out(cs, c, m);
    tp_table_add(&cs->table, TP_LIST_DIRTY, c);
}

static void broadcast(struct tp_conns *cs, struct tp_msg *m)
{
    struct tp_listener *l = &cs->listeners[m->listener];
    struct tp_conn *c;
    struct tp_msg *ref;

    if (l->bus != NULL && !(m->flags & TP_MSG_F_REMOTE) && m->len > 0)
        tp_bus_publish(l->bus, m->data, m->len);   /* the other instances' members */
    m->refs = 1;   /* ours, until the loop is done */
    cds_list_for_each_entry(c, &l->conns, link) {
        if (m->len == 0)
            break;            /* nothing to send: a no-op */
        if ((c->h.slot == m->h.slot && c->h.gen == m->h.gen &&
             !(m->flags & TP_MSG_F_SELF)) || (c->flags & TP_CONN_BYE))
            continue;
        tp_table_add(&cs->table, TP_LIST_DIRTY, c);
        ref = tp_msg_cache_get(&cs->cache, 0);
        if (ref == NULL) {          /* it would miss a message: drop it */
            c->flags |= TP_CONN_OVERFLOW;
            continue;
        }
        ref->kind = TP_MSG_REF;
        ref->shared = m;
        ref->len = m->len;
        ref->count = m->count;
        m->refs++;
        cs->refs_unwritten++;
        queue_out(cs, c, ref);
    }
    if (--m->refs == 0)
        tp_msg_cache_put(&cs->cache, m);
}

void tp_conn__broadcast_remote(struct tp_conns *cs, uint16_t listener, const char *data,
                               size_t len)
{
    bool nl = len > 0 && data[len - 1] == '\n';
    struct tp_msg *m = tp_msg_cache_get(&cs->cache, len + !nl);

    if (m == NULL) {
        tp_conns__log(cs, TP_LOG_ERROR, "out of memory: a line from another instance "
                      "was not delivered");
        return;
    }
    memcpy(m->data, data, len);
    if (!nl)
        m->data[len] = '\n';       /* a foreign publisher's line, framed */
    m->len = (uint32_t)(len + !nl);
    m->count = (uint32_t)tp_frame_count(cs->listeners[listener].env.framing, m->data, m->len,
                                        cs->listeners[listener].env.max_message);
    m->kind = TP_MSG_BROADCAST;
    m->flags = TP_MSG_F_SELF | TP_MSG_F_REMOTE;
    m->listener = listener;
    m->h.slot = UINT32_MAX;        /* no sender here: every member gets it */
    broadcast(cs, m);
}

void tp_conn__reply(struct tp_conns *cs, struct tp_msg *m)
{
    switch (m->kind) {
    case TP_MSG_DONE:
        done(cs, m);
        break;
    case TP_MSG_SEND:
        send_to(cs, m);
        break;
    case TP_MSG_BROADCAST:
        broadcast(cs, m);
        break;
    default:
        assert(!"unexpected message kind from the pool");
        tp_msg_cache_put(&cs->cache, m);
    }
}
