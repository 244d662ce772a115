/* tp_conn.c - one connection's life: read, cut, hand off, write, close.
 *
 * Edge-triggered: TP_CONN_READABLE stays set until a read returns EAGAIN (or
 * a short read without a pending hang-up). Whatever stops reading earlier
 * puts the connection where it will be found again without a new edge:
 *   read budget used up       -> srv->pending, next loop turn
 *   batch at a worker, full   -> resumed when the batch comes back
 *   pool backlog full         -> srv->waiting, resumed when it drains
 *   output over the limit     -> resumed when output falls below half */
#include "internal.h"
#include "tp_sock.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

const char *tp_conn__peer(const struct tp_conn *c)
{
    static char buf[64];

    return tp_sock_peer(c->fd, buf, sizeof(buf));
}

#define CHUNK 1024                    /* connection slots per allocation */
#define READ_BUDGET (256 * 1024)      /* bytes per connection per loop turn */
#define IOV_BATCH 64                  /* reply buffers per sendmsg */
#define OUT_HARD_EXTRA (4u << 20)     /* output past 2 * send_buffer_max + this:
                                         the peer is not reading; close it */

static const size_t read_size[] = { 4096, 16384, 65536 };

/* ---- the connection table ---- */

int tp_conn__table_init(struct tp_server *s)
{
    s->nchunks = s->max_conns / CHUNK + 1;
    s->chunks = calloc(s->nchunks, sizeof(*s->chunks));
    if (s->chunks == NULL)
        return -ENOMEM;
    CDS_INIT_LIST_HEAD(&s->free_slots);
    return 0;
}

void tp_conn__table_fini(struct tp_server *s)
{
    uint32_t i;

    for (i = 0; i < s->nchunks; i++)
        free(s->chunks[i]);
    free(s->chunks);
    s->chunks = NULL;
}

static struct tp_conn *slot_new(struct tp_server *s)
{
    struct tp_conn *c, **grown;
    uint32_t i = s->nslots / CHUNK;

    if (!cds_list_empty(&s->free_slots)) {
        c = cds_list_first_entry(&s->free_slots, struct tp_conn, link);
        cds_list_del(&c->link);
        return c;
    }
    if (i == s->nchunks) {          /* zombies can outlast max_connections */
        grown = realloc(s->chunks, (s->nchunks + 1) * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        s->chunks = grown;
        s->chunks[s->nchunks++] = NULL;
    }
    if (s->chunks[i] == NULL && (s->chunks[i] = calloc(CHUNK, sizeof(*c))) == NULL)
        return NULL;
    c = &s->chunks[i][s->nslots % CHUNK];
    c->h.slot = s->nslots++;
    return c;
}

static void slot_free(struct tp_server *s, struct tp_conn *c)
{
    c->state = TP_CONN_FREE;
    c->h.gen++;
    s->live_slots--;
    cds_list_add_tail(&c->link, &s->free_slots);
}

static struct tp_conn *lookup(struct tp_server *s, struct tp_handle h)
{
    struct tp_conn *c;

    if (h.slot >= s->nslots)
        return NULL;
    c = &s->chunks[h.slot / CHUNK][h.slot % CHUNK];
    return c->h.gen == h.gen && c->state != TP_CONN_FREE ? c : NULL;
}

/* ---- lists of connections to come back to ---- */

static void pend(struct tp_server *s, struct tp_conn *c)
{
    if (!(c->flags & TP_CONN_PENDING)) {
        c->flags |= TP_CONN_PENDING;
        c->next_pending = s->pending;
        s->pending = c;
    }
}

static void wait_for_pool(struct tp_server *s, struct tp_conn *c)
{
    if (!(c->flags & TP_CONN_WAITING)) {
        c->flags |= TP_CONN_WAITING;
        c->next_wait = s->waiting;
        s->waiting = c;
    }
}

/* Notes progress for idle_timeout. Moving c to the tail of the idle list
 * writes two other connections' cache lines, so a busy connection moves at
 * most once per idle_slack_ms (idle_timeout / 16, at most 1 s); expiry adds
 * the slack, so a connection is closed late by at most that, never early. */
static void touch(struct tp_server *s, struct tp_conn *c)
{
    if (s->now_ms - c->active_ms < c->l->idle_slack_ms)
        return;
    c->active_ms = s->now_ms;
    cds_list_del(&c->idle);
    cds_list_add_tail(&c->idle, &c->l->idle);
}

/* ---- output ---- */

static void release(struct tp_server *s, struct tp_msg *m)
{
    if (m->kind == TP_MSG_REF && --m->shared->refs == 0)
        tp_msg_cache_put(&s->cache, m->shared);
    tp_msg_cache_put(&s->cache, m);
}

static void mark_dirty(struct tp_server *s, struct tp_conn *c)
{
    if (!(c->flags & TP_CONN_DIRTY)) {
        c->flags |= TP_CONN_DIRTY;
        c->next_dirty = s->dirty;
        s->dirty = c;
    }
}

static void queue_out(struct tp_server *s, struct tp_conn *c, struct tp_msg *m)
{
    m->off = 0;
    tp_msg_list_push(&c->out, m);
    c->out_bytes += m->len;
    mark_dirty(s, c);
    if (c->out_bytes > c->l->conf->send_buffer_max)
        c->flags |= TP_CONN_OUT_FULL;
    /* Not closed here: callers may be walking a list of connections. */
    if (c->out_bytes > 2 * c->l->conf->send_buffer_max + OUT_HARD_EXTRA)
        c->flags |= TP_CONN_OVERFLOW;
}

/* Drops written bytes from the front of c's output. */
static void consume(struct tp_server *s, struct tp_conn *c, size_t n)
{
    struct tp_msg *m;

    c->out_bytes -= n;
    while (n > 0) {
        m = c->out.head;
        if (n < m->len - m->off) {
            m->off += (uint32_t)n;
            return;
        }
        n -= m->len - m->off;
        release(s, tp_msg_list_pop(&c->out));
    }
}

static size_t gather(struct tp_conn *c, struct iovec *iov, int *n)
{
    struct tp_msg *m;
    size_t total = 0;

    for (*n = 0, m = c->out.head; m != NULL && *n < IOV_BATCH; m = m->next) {
        char *base = m->kind == TP_MSG_REF ? m->shared->data : m->data;

        iov[*n].iov_base = base + m->off;
        iov[*n].iov_len = m->len - m->off;
        total += iov[(*n)++].iov_len;
    }
    return total;
}

static void maybe_finish(struct tp_server *s, struct tp_conn *c);

/* Writes until the output is gone or the socket is full (then EPOLLOUT
 * brings us back). Returns -1 if c was closed. */
static int conn_write(struct tp_server *s, struct tp_conn *c)
{
    struct iovec iov[IOV_BATCH];
    struct msghdr mh = { .msg_iov = iov };
    size_t total;
    ssize_t n;
    int niov;

    while (c->out.head != NULL) {
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
        if (n < 0) {
            tp_server__log(s, TP_LOG_DEBUG, "write: %s", strerror(errno));
            tp_conn_close(s, c, TP_CLOSE_ERROR);
            return -1;
        }
        TP_STAT_ADD(s, bytes_out, (uint64_t)n);
        consume(s, c, (size_t)n);
        touch(s, c);
        if ((size_t)n < total)
            break;
    }
    if ((c->flags & TP_CONN_OUT_FULL) &&
        c->out_bytes <= c->l->conf->send_buffer_max / 2) {
        c->flags &= (uint16_t)~TP_CONN_OUT_FULL;
        pend(s, c);
    }
    return 0;
}

void tp_conn__flush(struct tp_server *s, struct tp_conn *c)
{
    if (c->state != TP_CONN_OPEN)
        return;
    if (c->flags & TP_CONN_OVERFLOW) {
        tp_server__log(s, TP_LOG_INFO, "%s: closing %s: it does not read what it "
                       "is sent (%zu bytes unsent)", c->l->name,
                       tp_conn__peer(c), c->out_bytes);
        tp_conn_close(s, c, TP_CLOSE_ERROR);
        return;
    }
    if (conn_write(s, c) == 0)
        maybe_finish(s, c);
}

/* ---- handing messages to the app ---- */

static void dispatch(struct tp_server *s, struct tp_conn *c, struct tp_msg *m)
{
    struct tp_msg_list out;
    int err;

    m->h = c->h;
    m->listener = c->l->index;
    m->conn_data = c->app_data;
    c->flags |= TP_CONN_BUSY;
    if (s->pool != NULL) {
        err = tp_pool_submit(s->pool, m);
        assert(err == 0);   /* callers checked tp_pool_is_full() */
        (void)err;
        return;
    }
    tp_msg_list_init(&out);
    tp_call_run(&c->l->env, m, &out);
    while ((m = tp_msg_list_pop(&out)) != NULL)
        tp_conn__deliver(s, m);
}

static bool peer_done(const struct tp_conn *c)
{
    return (c->flags & TP_CONN_EOF) && c->l->conf->framing == TP_FRAMING_LINE;
}

/* Bytes of the read buffer that can go to the app now. */
static uint32_t shippable(const struct tp_conn *c)
{
    if (c->rbuf == NULL)
        return 0;
    return peer_done(c) ? c->rbuf->len : c->rbuf->cut;
}

/* Hands the whole messages of the read buffer to the app, keeping the
 * partial one (if any) in a fresh buffer. Returns -ENOMEM or 0. */
static int ship(struct tp_server *s, struct tp_conn *c)
{
    struct tp_msg *b = c->rbuf, *rest;
    uint32_t end = shippable(c);

    if (end == 0 || (c->flags & (TP_CONN_BUSY | TP_CONN_CLOSE_SOON)))
        return 0;
    if (s->pool != NULL && tp_pool_is_full(s->pool)) {
        wait_for_pool(s, c);
        return 0;
    }
    if (end > b->cut)
        TP_STAT_ADD(s, msgs_in, 1);   /* the unterminated tail at EOF */
    rest = NULL;
    if (end < b->len) {
        rest = tp_msg_cache_get(&s->cache, b->len - end);
        if (rest == NULL)
            return -ENOMEM;
        memcpy(rest->data, b->data + end, b->len - end);
        rest->len = b->len - end;
        rest->scanned = b->scanned;
        b->len = end;
    }
    c->rbuf = rest;
    b->kind = TP_MSG_DATA;
    b->flags = peer_done(c) ? TP_MSG_F_EOF : 0;
    dispatch(s, c, b);
    return 0;
}

/* ---- input ---- */

static void track_partial(struct tp_server *s, struct tp_conn *c, uint32_t count)
{
    bool partial = c->rbuf->cut < c->rbuf->len;

    if (partial && (count > 0 || !(c->flags & TP_CONN_PARTIAL))) {
        if (c->flags & TP_CONN_PARTIAL)
            cds_list_del(&c->partial);
        cds_list_add_tail(&c->partial, &c->l->partial);
        c->partial_ms = s->now_ms;
        c->flags |= TP_CONN_PARTIAL;
    } else if (!partial && (c->flags & TP_CONN_PARTIAL)) {
        cds_list_del(&c->partial);
        c->flags &= (uint16_t)~TP_CONN_PARTIAL;
    }
}

/* Finds the whole messages just read and ships them. Returns -1 if c was
 * closed. */
static int cut_input(struct tp_server *s, struct tp_conn *c)
{
    const struct tp_listen_conf *lc = c->l->conf;
    struct tp_frame_cursor cur = { c->rbuf->cut, c->rbuf->scanned };
    uint32_t count;
    int err;

    err = tp_frame_advance(lc->framing, c->rbuf->data, c->rbuf->len,
                           lc->max_message, &cur, &count);
    c->rbuf->cut = cur.cut;
    c->rbuf->scanned = cur.scanned;
    TP_STAT_ADD(s, msgs_in, count);
    if (err < 0) {
        tp_server__log(s, TP_LOG_INFO, "%s: closing %s: message longer than "
                       "max_message (%u bytes)", c->l->name,
                       tp_conn__peer(c), lc->max_message);
        tp_conn_close(s, c, TP_CLOSE_OVERSIZE);
        return -1;
    }
    track_partial(s, c, count);
    if (ship(s, c) < 0) {
        tp_server__log(s, TP_LOG_ERROR, "%s: out of memory, closing %s", c->l->name,
                       tp_conn__peer(c));
        tp_conn_close(s, c, TP_CLOSE_ERROR);
        return -1;
    }
    return 0;
}

static bool input_blocked(const struct tp_conn *c)
{
    const struct tp_msg *b = c->rbuf;

    if (c->state != TP_CONN_OPEN ||
        (c->flags & (TP_CONN_EOF | TP_CONN_DRAIN | TP_CONN_CLOSE_SOON |
                     TP_CONN_OUT_FULL)))
        return true;
    /* A full buffer with whole messages in it waits for them to be shipped
     * (a batch is at a worker, or the pool is full); with none, it grows. */
    return b != NULL && b->len == b->cap && b->cut > 0;
}

/* Makes room in the read buffer. Returns bytes of room, or 0 if out of
 * memory. */
static size_t read_room(struct tp_server *s, struct tp_conn *c)
{
    const struct tp_listen_conf *lc = c->l->conf;
    size_t most = (size_t)lc->max_message + TP_FRAME_OVERHEAD + 1;
    size_t want;
    struct tp_msg *b = c->rbuf;

    if (b == NULL) {
        b = tp_msg_cache_get(&s->cache, read_size[c->rsize] - sizeof(*b));
    } else if (b->len == b->cap) {
        /* One message fills the buffer: grow towards max_message. */
        want = (size_t)b->cap * 4 < most ? (size_t)b->cap * 4 : most;
        b = want > b->cap ? tp_msg_cache_move(&s->cache, b, 0, want) : NULL;
    }
    if (b == NULL)
        return 0;
    c->rbuf = b;
    return b->cap - b->len;
}

/* Adapts the next read buffer's size to how much the last read brought. */
static void learn_size(struct tp_conn *c, size_t n, size_t room)
{
    if (n == room && c->rsize + 1u < sizeof(read_size) / sizeof(read_size[0]))
        c->rsize++;
    else if (n < room / 8 && c->rsize > 0)
        c->rsize--;
}

static void conn_read(struct tp_server *s, struct tp_conn *c)
{
    size_t budget = READ_BUDGET, room;
    ssize_t n;

    while ((c->flags & TP_CONN_READABLE) && !input_blocked(c)) {
        if (budget == 0) {
            pend(s, c);
            return;
        }
        room = read_room(s, c);
        if (room == 0) {
            tp_server__log(s, TP_LOG_ERROR, "%s: no memory for a read buffer, "
                           "closing %s", c->l->name,
                           tp_conn__peer(c));
            tp_conn_close(s, c, TP_CLOSE_ERROR);
            return;
        }
        n = read(c->fd, c->rbuf->data + c->rbuf->len, room);
        if (n > 0) {
            c->rbuf->len += (uint32_t)n;
            budget -= (size_t)n < budget ? (size_t)n : budget;
            TP_STAT_ADD(s, bytes_in, (uint64_t)n);
            touch(s, c);
            learn_size(c, (size_t)n, room);
            /* A short read emptied the socket; a later arrival is a new
             * edge. Not so for a hang-up already reported: read it now. */
            if ((size_t)n < room && !(c->flags & TP_CONN_RDHUP))
                c->flags &= (uint16_t)~TP_CONN_READABLE;
            if (cut_input(s, c) < 0)
                return;
        } else if (n == 0) {
            c->flags = (uint16_t)((c->flags | TP_CONN_EOF) & ~TP_CONN_READABLE);
            if (c->rbuf != NULL && ship(s, c) < 0) {
                tp_conn_close(s, c, TP_CLOSE_ERROR);
                return;
            }
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->flags &= (uint16_t)~TP_CONN_READABLE;
        } else if (errno != EINTR) {
            tp_server__log(s, TP_LOG_DEBUG, "read: %s", strerror(errno));
            tp_conn_close(s, c, TP_CLOSE_ERROR);
            return;
        }
    }
    if (c->rbuf != NULL && c->rbuf->len == 0) {
        tp_msg_cache_put(&s->cache, c->rbuf);
        c->rbuf = NULL;
    }
}

/* ---- open, close, finish ---- */

/* Closes c if it has nothing left to do after its input ended. */
static void maybe_finish(struct tp_server *s, struct tp_conn *c)
{
    if (c->state != TP_CONN_OPEN || (c->flags & TP_CONN_BUSY) || c->out.head != NULL)
        return;
    if (c->flags & TP_CONN_CLOSE_SOON)
        tp_conn_close(s, c, TP_CLOSE_APP);
    else if (shippable(c) > 0)
        return;
    else if (c->flags & TP_CONN_DRAIN)
        tp_conn_close(s, c, TP_CLOSE_SHUTDOWN);
    else if (c->flags & TP_CONN_EOF)
        tp_conn_close(s, c, TP_CLOSE_PEER);
}

void tp_conn__open(struct tp_server *s, struct tp_listener *l, int fd)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };
    struct tp_conn *c = slot_new(s);
    struct tp_msg *m;

    if (c == NULL || (ev.data.ptr = c, epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev)) < 0) {
        tp_server__log(s, TP_LOG_ERROR, "%s: cannot take a connection: %s",
                       l->name, strerror(errno));
        TP_STAT_ADD(s, accept_errors, 1);
        close(fd);
        if (c != NULL)
            cds_list_add(&c->link, &s->free_slots);
        return;
    }
    c->source = TP_SRC_CONN;
    c->state = TP_CONN_OPEN;
    c->rsize = 0;
    /* A reused slot may still sit on a to-do list from its last life. */
    c->flags &= TP_CONN_PENDING | TP_CONN_DIRTY | TP_CONN_WAITING;
    c->fd = fd;
    c->l = l;
    c->rbuf = NULL;
    tp_msg_list_init(&c->out);
    c->out_bytes = 0;
    c->app_data = NULL;
    c->active_ms = s->now_ms;
    cds_list_add_tail(&c->link, &l->conns);
    cds_list_add_tail(&c->idle, &l->idle);
    s->live_slots++;
    TP_STAT_ADD(s, accepted, 1);
    TP_STAT_ADD(s, open, 1);
    if (l->env.app->open != NULL && (m = tp_msg_cache_get(&s->cache, 0)) != NULL) {
        m->kind = TP_MSG_OPEN;
        dispatch(s, c, m);
    }
}

static void count_close(struct tp_server *s, enum tp_close_reason why)
{
    switch (why) {
    case TP_CLOSE_PEER: TP_STAT_ADD(s, closed_peer, 1); break;
    case TP_CLOSE_ERROR: TP_STAT_ADD(s, closed_error, 1); break;
    case TP_CLOSE_OVERSIZE: TP_STAT_ADD(s, closed_oversize, 1); break;
    case TP_CLOSE_IDLE: TP_STAT_ADD(s, closed_idle, 1); break;
    case TP_CLOSE_READ_TIMEOUT: TP_STAT_ADD(s, closed_read_timeout, 1); break;
    case TP_CLOSE_APP: TP_STAT_ADD(s, closed_app, 1); break;
    case TP_CLOSE_SHUTDOWN: TP_STAT_ADD(s, closed_shutdown, 1); break;
    }
    TP_STAT_ADD(s, open, (uint64_t)-1);
}

/* A closed connection's slot lives on until no worker holds its messages and
 * the app heard of the close. */
static void zombie_next(struct tp_server *s, struct tp_conn *c)
{
    struct tp_msg *m;

    if (c->l->env.app->close != NULL && !(c->flags & TP_CONN_CLOSE_SENT) &&
        (m = tp_msg_cache_get(&s->cache, 0)) != NULL) {
        c->flags |= TP_CONN_CLOSE_SENT;
        m->kind = TP_MSG_CLOSE;
        dispatch(s, c, m);
        return;
    }
    slot_free(s, c);
}

void tp_conn_close(struct tp_server *s, struct tp_conn *c, enum tp_close_reason why)
{
    struct tp_msg *m;

    if (c->state != TP_CONN_OPEN)
        return;
    count_close(s, why);
    cds_list_del(&c->link);
    cds_list_del(&c->idle);
    if (c->flags & TP_CONN_PARTIAL)
        cds_list_del(&c->partial);
    if (c->rbuf != NULL) {
        if (c->rbuf->len > 0 && why == TP_CLOSE_PEER)
            tp_server__log(s, TP_LOG_DEBUG, "%s: %s closed in the middle of a "
                           "message; %u bytes dropped", c->l->name,
                           tp_conn__peer(c), c->rbuf->len);
        TP_STAT_ADD(s, bytes_discarded, c->rbuf->len);
        tp_msg_cache_put(&s->cache, c->rbuf);
        c->rbuf = NULL;
    }
    close(c->fd);           /* after the counters: a peer that sees EOF sees them */
    c->fd = -1;
    while ((m = tp_msg_list_pop(&c->out)) != NULL)
        release(s, m);
    c->out_bytes = 0;
    c->flags &= TP_CONN_BUSY | TP_CONN_PENDING | TP_CONN_DIRTY | TP_CONN_WAITING;
    c->state = TP_CONN_ZOMBIE;
    if (!(c->flags & TP_CONN_BUSY))
        zombie_next(s, c);
}

/* ---- events ---- */

void tp_conn__event(struct tp_server *s, struct tp_conn *c, uint32_t events)
{
    if (c->state != TP_CONN_OPEN)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->flags |= TP_CONN_READABLE;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->flags |= TP_CONN_RDHUP;
    if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && c->out.head != NULL &&
        conn_write(s, c) < 0)
        return;
    conn_read(s, c);
    /* Inline (workers 0) the replies exist already: write them while c is
     * still in cache, not on the later pass over the dirty list. */
    if (s->pool == NULL && c->out.head != NULL) {
        tp_conn__flush(s, c);
        return;
    }
    maybe_finish(s, c);
}

void tp_conn__resume(struct tp_server *s, struct tp_conn *c)
{
    if (c->state != TP_CONN_OPEN)
        return;
    if (ship(s, c) < 0) {
        tp_conn_close(s, c, TP_CLOSE_ERROR);
        return;
    }
    conn_read(s, c);
    maybe_finish(s, c);
}

void tp_conn__drain(struct tp_server *s, struct tp_conn *c)
{
    if (c->state != TP_CONN_OPEN)
        return;
    /* Take in what already arrived, then no more. */
    c->flags |= TP_CONN_READABLE;
    conn_read(s, c);
    if (c->state != TP_CONN_OPEN)
        return;
    c->flags |= TP_CONN_DRAIN;
    maybe_finish(s, c);
}

/* ---- messages back from the app ---- */

static void done(struct tp_server *s, struct tp_msg *m)
{
    struct tp_conn *c = lookup(s, m->h);

    assert(c != NULL && (c->flags & TP_CONN_BUSY));
    c->flags &= (uint16_t)~TP_CONN_BUSY;
    c->app_data = m->conn_data;
    if (c->state == TP_CONN_ZOMBIE) {
        if (m->flags & TP_MSG_F_REPLY)
            TP_STAT_ADD(s, replies_dropped, 1);
        tp_msg_cache_put(&s->cache, m);
        zombie_next(s, c);
        return;
    }
    if (m->flags & TP_MSG_F_CLOSE)
        c->flags |= TP_CONN_CLOSE_SOON;
    if ((m->flags & TP_MSG_F_REPLY) && m->len > 0)
        queue_out(s, c, m);
    else
        tp_msg_cache_put(&s->cache, m);
    if (c->state != TP_CONN_OPEN)
        return;
    if (ship(s, c) < 0) {
        tp_conn_close(s, c, TP_CLOSE_ERROR);
        return;
    }
    /* Inline (workers 0) this runs inside conn_read(), which goes on
     * reading and then writes by itself. From a worker: write the reply now,
     * while c is in cache, and read again later this turn. */
    if (s->pool == NULL) {
        maybe_finish(s, c);
        return;
    }
    if (c->flags & TP_CONN_READABLE)
        pend(s, c);
    tp_conn__flush(s, c);
}

static void send_to(struct tp_server *s, struct tp_msg *m)
{
    struct tp_conn *c = lookup(s, m->h);

    if (c == NULL || c->state != TP_CONN_OPEN) {
        TP_STAT_ADD(s, replies_dropped, 1);
        tp_msg_cache_put(&s->cache, m);
        return;
    }
    queue_out(s, c, m);
}

static void broadcast(struct tp_server *s, struct tp_msg *m)
{
    struct tp_listener *l = &s->listeners[m->listener];
    struct tp_conn *c, *tmp;
    struct tp_msg *ref;

    m->refs = 1;   /* ours, until the loop is done */
    cds_list_for_each_entry_safe(c, tmp, &l->conns, link) {
        if (c->h.slot == m->h.slot && c->h.gen == m->h.gen &&
            !(m->flags & TP_MSG_F_SELF))
            continue;
        ref = tp_msg_cache_get(&s->cache, 0);
        if (ref == NULL) {          /* it would miss a message: drop it */
            c->flags |= TP_CONN_OVERFLOW;
            mark_dirty(s, c);
            continue;
        }
        ref->kind = TP_MSG_REF;
        ref->shared = m;
        ref->len = m->len;
        m->refs++;
        queue_out(s, c, ref);
    }
    if (--m->refs == 0)
        tp_msg_cache_put(&s->cache, m);
}

void tp_conn__deliver(struct tp_server *s, struct tp_msg *m)
{
    switch (m->kind) {
    case TP_MSG_DONE:
        done(s, m);
        break;
    case TP_MSG_SEND:
        send_to(s, m);
        break;
    case TP_MSG_BROADCAST:
        broadcast(s, m);
        break;
    default:
        assert(!"unexpected message kind from a worker");
        tp_msg_cache_put(&s->cache, m);
    }
}
