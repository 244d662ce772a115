/* tp_stress_chat.c - --mode chat on the engine's threads and connections:
 * members of one room read, senders among them (line) or beside them
 * (resp: publishers) send self-describing lines (tp_stress_line.h), and
 * every member checks each line it gets against what it had of that sender
 * (tp_stress_order.h). Phases: connect, join (every member proves it is in
 * the room), release (senders start), send for -d, drain, count.
 *
 * A line in flight has a slot in its sender's window (-p slots): one 64-bit
 * word, seq << 24 | recipients still to get it. The sender sets it before
 * the line leaves; each member that gets the line first decrements it (CAS,
 * so a late or duplicate arrival for a slot already reused does nothing);
 * the member that takes it to 0 wakes the sender's thread (its eventfd, if
 * it is another thread). The sender frees slots in order and so keeps -p
 * lines in flight, no more.
 *
 * Shared state (all atomics, any thread): struct tp_stress_chat's counters
 * and times, each sender's queued/final counts and slot words, and each
 * thread's `kicked` flag. Everything in a tp_stress_chat_worker or
 * tp_stress_chat_conn belongs to its thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "tp_stress_line.h"
#include "tp_stress_order.h"
#include "tp_stress_resp.h"

#define REM_BITS 24                          /* recipients in a slot word */
#define REM_MASK ((UINT64_C(1) << REM_BITS) - 1)
#define SEQ_MASK ((UINT64_C(1) << (64 - REM_BITS)) - 1)
#define NOT_FINAL UINT64_MAX
#define FOREIGN_ROOM 1024u                   /* --foreign skip: prefix bytes allowed */
#define REPLY_ROOM 1024u                     /* a publisher's carry: replies, errors */
#define SLACK_NS (2000 * MS)                 /* the engine's deadline past the phases */
#define JOIN_EVERY_NS (100 * MS)             /* line: join lines again until the release */

enum { ROLE_SENDER = 1u << 31 };             /* role bit: a publisher (resp) */

/* One sender as every thread sees it; its own cache line. */
struct chat_sender {
    _Atomic uint64_t queued;     /* its thread writes (release): lines put out */
    _Atomic uint64_t final;      /* lines written whole, once it is done; NOT_FINAL */
    _Atomic uint64_t *slots;     /* -p words, seq << 24 | recipients to go */
    uint32_t worker;             /* the thread that owns it */
} __attribute__((aligned(64)));

struct tp_stress_chat {
    struct tp_stress_engine *e;
    uint32_t members, senders, total, depth;
    bool resp;
    uint32_t *role;              /* per connection: member id, or sender id | ROLE_SENDER */
    uint32_t *sender_of;         /* line: per member, its sender id or UINT32_MAX */
    struct chat_sender *snd;
    _Atomic uint64_t *slots;     /* senders * depth */
    char subscribe[2 * 256 + 64];   /* resp: the SUBSCRIBE command */
    size_t subscribe_len;
    char pub_head[256 + 64];     /* resp: PUBLISH up to its payload */
    size_t pub_head_len;
    uint64_t ramp_ns;            /* how long --ramp takes to open everything */
    _Atomic uint32_t settled;    /* connects finished, well or not */
    _Atomic uint32_t ready;      /* connections in the room (publishers: connected) */
    _Atomic uint32_t gone;       /* closed before the release */
    _Atomic uint32_t members_live;  /* members open */
    _Atomic uint32_t senders_left;  /* senders not yet done */
    _Atomic uint64_t release_ns; /* 0 until senders may start */
    _Atomic uint64_t send_end_ns;   /* the last sender's stop */
    _Atomic uint64_t over_ns;    /* 0 until every sender is done */
    atomic_bool join_timed_out;
};

struct tp_stress_chat_conn {
    uint32_t member;             /* member id, UINT32_MAX for a publisher */
    uint32_t sender;             /* sender id, UINT32_MAX if it does not send */
    bool live;                   /* counted in members_live */
    bool ready;                  /* counted in ready */
    bool stopped, done;          /* sender: sends no more; drained */
    uint8_t join_seen;           /* line: bit j, the join line of member j came */
    uint32_t carry_len;
    char *carry;                 /* a partial line or reply */
    struct tp_stress_order *order;  /* members: one per sender */
    struct tp_stress_pace pace;  /* sender */
    uint64_t quota;              /* sender: lines to send */
    uint64_t done_seq;           /* sender: oldest line in flight */
    uint64_t stop_at;            /* sender: release + -d */
    uint64_t *sent_at;           /* sender: -p queue times */
    uint64_t replies;            /* publisher: PUBLISH replies read */
};

struct tp_stress_chat_worker {
    int kick_fd;
    atomic_bool kicked;          /* set by other threads before they write kick_fd */
    bool started;
    uint64_t next_join;          /* line: when members 0 and 1 say hello again */
    uint32_t carry_cap;
    struct tp_stress_chat_conn *cc;     /* nconns */
    struct tp_stress_order *orders;     /* nconns * senders */
    char *carries, *rings;
    uint64_t *sent_at;
    uint32_t *local_senders, nlocal;    /* this thread's senders, by conn index */
    uint64_t joined, foreign, publish_replies, given_up, members_at_end;
};

static struct tp_stress_chat *chat_of(const struct worker *w)
{
    return w->e->chat;
}

static uint64_t share_of(uint64_t x, uint32_t i, uint32_t n)
{
    return (uint64_t)((unsigned __int128)x * (i + 1) / n - (unsigned __int128)x * i / n);
}

/* ---- set-up ---- */

/* Lays out the roles: line, sender s is member s*N/S; resp, publisher s is
 * connection s*T/S and the others are members in order, so that senders
 * spread over the threads' slices. */
static int lay_out(struct tp_stress_chat *ch)
{
    uint32_t i, s, m = 0;

    ch->role = calloc(ch->total, sizeof(*ch->role));
    ch->sender_of = calloc(ch->members, sizeof(*ch->sender_of));
    if (ch->role == NULL || ch->sender_of == NULL)
        return -ENOMEM;
    for (i = 0; i < ch->members; i++)
        ch->sender_of[i] = UINT32_MAX;
    if (!ch->resp) {
        for (i = 0; i < ch->total; i++)
            ch->role[i] = i;
        for (s = 0; s < ch->senders; s++)
            ch->sender_of[(uint64_t)s * ch->members / ch->senders] = s;
        return 0;
    }
    for (s = 0; s < ch->senders; s++)
        ch->role[(uint64_t)s * ch->total / ch->senders] = s | ROLE_SENDER;
    for (i = 0; i < ch->total; i++)
        if (!(ch->role[i] & ROLE_SENDER))
            ch->role[i] = m++;
    return m == ch->members ? 0 : -EINVAL;
}

/* The SUBSCRIBE command and the head of every PUBLISH (resp). */
static void build_commands(struct tp_stress_chat *ch, const struct tp_stress_opts *o)
{
    const char *sub[2] = { "SUBSCRIBE", o->channel };
    size_t sub_len[2] = { 9, strlen(o->channel) }, n;

    ch->subscribe_len = tp_stress_resp_command(ch->subscribe, sizeof(ch->subscribe), 2, sub,
                                               sub_len);
    /* PUBLISH channel payload, up to the payload: each line fills in the rest. */
    n = (size_t)snprintf(ch->pub_head, sizeof(ch->pub_head), "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n",
                         sub_len[1]);
    memcpy(ch->pub_head + n, o->channel, sub_len[1]);
    n += sub_len[1];
    n += (size_t)snprintf(ch->pub_head + n, sizeof(ch->pub_head) - n, "\r\n$%u\r\n",
                          o->size - 1);
    ch->pub_head_len = n;
}

int tp_stress__chat_create(struct tp_stress_engine *e, char *err, size_t errlen)
{
    struct tp_stress_opts *o = &e->o;
    struct tp_stress_chat *ch = calloc(1, sizeof(*ch));
    uint32_t s, k;

    if (ch == NULL)
        goto out_nomem;
    ch->e = e;
    ch->members = o->conns;
    ch->senders = o->senders;
    ch->resp = o->proto == TP_STRESS_PROTO_RESP;
    ch->total = ch->members + (ch->resp ? ch->senders : 0);
    ch->depth = o->depth;
    e->chat = ch;
    if (lay_out(ch) < 0)
        goto out_nomem;
    ch->snd = aligned_alloc(64, sizeof(*ch->snd) * ch->senders);
    ch->slots = calloc((size_t)ch->senders * ch->depth, sizeof(*ch->slots));
    if (ch->snd == NULL || ch->slots == NULL)
        goto out_nomem;
    for (s = 0; s < ch->senders; s++) {
        atomic_init(&ch->snd[s].queued, 0);
        atomic_init(&ch->snd[s].final, NOT_FINAL);
        ch->snd[s].slots = ch->slots + (size_t)s * ch->depth;
        ch->snd[s].worker = 0;
        for (k = 0; k < ch->depth; k++)
            atomic_init(&ch->snd[s].slots[k], SEQ_MASK << REM_BITS);  /* no line */
    }
    if (ch->resp)
        build_commands(ch, o);
    atomic_init(&ch->senders_left, ch->senders);
    ch->ramp_ns = o->ramp > 0 ? (uint64_t)((double)ch->total / o->ramp * 1e9) : 0;
    e->deadline_extra_ns = 2 * o->timeout_ns + ch->ramp_ns + SLACK_NS;
    o->conns = ch->total;
    if (o->threads > o->conns)
        o->threads = o->conns;
    return 0;
out_nomem:
    tp_stress__chat_destroy(e);
    snprintf(err, errlen, "out of memory setting up the chat room");
    return -ENOMEM;
}

void tp_stress__chat_destroy(struct tp_stress_engine *e)
{
    struct tp_stress_chat *ch = e->chat;

    if (ch == NULL)
        return;
    free(ch->role);
    free(ch->sender_of);
    free(ch->snd);
    free(ch->slots);
    free(ch);
    e->chat = NULL;
}

/* Gives each of the thread's connections its role and buffers. */
static void worker_roles(struct worker *w, struct tp_stress_chat_worker *cw)
{
    struct tp_stress_chat *ch = chat_of(w);
    struct tp_stress_chat_conn *cc;
    uint32_t j, role, k = 0;

    for (j = 0; j < w->nconns; j++) {
        cc = &cw->cc[j];
        role = ch->role[w->first + j];
        cc->member = role & ROLE_SENDER ? UINT32_MAX : role;
        cc->sender = role & ROLE_SENDER ? role & ~(uint32_t)ROLE_SENDER
                   : ch->resp ? UINT32_MAX : ch->sender_of[role];
        cc->carry = cw->carries + (size_t)j * cw->carry_cap;
        cc->order = cw->orders + (size_t)j * ch->senders;
        w->conns[j].chat = cc;
        if (cc->sender == UINT32_MAX)
            continue;
        ch->snd[cc->sender].worker = (uint32_t)(w - w->e->w);
        cc->quota = w->o->messages ? share_of(w->o->messages, cc->sender, ch->senders)
                                   : UINT64_MAX;
        cc->sent_at = cw->sent_at + (size_t)k * ch->depth;
        w->conns[j].ring = cw->rings + (size_t)k * w->ring_len;
        cw->local_senders[k++] = j;
    }
    cw->nlocal = k;
}

int tp_stress__chat_worker_init(struct worker *w)
{
    struct tp_stress_chat *ch = chat_of(w);
    const struct tp_stress_opts *o = w->o;
    struct tp_stress_chat_worker *cw = calloc(1, sizeof(*cw));
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TP_STRESS_KICK_DATA };
    uint32_t nsend = 0, j;

    if (cw == NULL)
        return -ENOMEM;
    w->chat = cw;
    cw->kick_fd = -1;
    for (j = 0; j < w->nconns; j++) {
        uint32_t role = ch->role[w->first + j];

        if ((role & ROLE_SENDER) || (!ch->resp && ch->sender_of[role] != UINT32_MAX))
            nsend++;
    }
    w->unit = ch->resp ? (uint32_t)ch->pub_head_len + o->size + 1 : o->size;
    w->ring_len = ch->depth * w->unit;
    cw->carry_cap = o->size + (o->skip_foreign ? FOREIGN_ROOM : 0) +
                    (ch->resp ? REPLY_ROOM + (uint32_t)strlen(o->channel) : 0);
    cw->cc = calloc(w->nconns, sizeof(*cw->cc));
    cw->orders = calloc((size_t)w->nconns * ch->senders, sizeof(*cw->orders));
    cw->carries = malloc((size_t)w->nconns * cw->carry_cap);
    cw->local_senders = calloc(nsend ? nsend : 1, sizeof(*cw->local_senders));
    cw->rings = malloc((size_t)(nsend ? nsend : 1) * w->ring_len);
    cw->sent_at = calloc((size_t)(nsend ? nsend : 1) * ch->depth, sizeof(*cw->sent_at));
    if (cw->cc == NULL || cw->orders == NULL || cw->carries == NULL ||
        cw->local_senders == NULL || cw->rings == NULL || cw->sent_at == NULL)
        return -ENOMEM;
    worker_roles(w, cw);
    cw->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (cw->kick_fd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, cw->kick_fd, &ev) < 0)
        return -errno;
    return 0;
}

void tp_stress__chat_worker_fini(struct worker *w)
{
    struct tp_stress_chat_worker *cw = w->chat;

    if (cw == NULL)
        return;
    if (cw->kick_fd >= 0)
        close(cw->kick_fd);
    free(cw->cc);
    free(cw->orders);
    free(cw->carries);
    free(cw->local_senders);
    free(cw->rings);
    free(cw->sent_at);
    free(cw);
    w->chat = NULL;
}

/* ---- the phases, shared by the threads ---- */

/* Wakes thread i (unless it is w itself, whose turn comes next anyway). */
static void kick(struct worker *w, uint32_t i)
{
    struct worker *t = &w->e->w[i];
    uint64_t one = 1;

    if (t == w || t->chat == NULL)
        return;
    if (!atomic_exchange(&t->chat->kicked, true) &&
        write(t->chat->kick_fd, &one, sizeof(one)) < 0) {
        /* Full or gone: the thread wakes within MAX_WAIT_NS anyway. */
    }
}

static void kick_all(struct worker *w)
{
    uint32_t i;

    for (i = 0; i < w->e->nworkers; i++)
        kick(w, i);
}

/* Lets the senders start, once (timed_out: not every member confirmed). */
static void release(struct worker *w, uint64_t now, bool timed_out)
{
    struct tp_stress_chat *ch = chat_of(w);
    uint64_t zero = 0;

    if (atomic_compare_exchange_strong(&ch->release_ns, &zero, now)) {
        if (timed_out)
            atomic_store(&ch->join_timed_out, true);
        kick_all(w);
    }
}

/* One more connect finished (well or not); the last one lets the line
 * room's members 0 and 1 send their join lines, on whichever thread. */
static void settle(struct worker *w)
{
    struct tp_stress_chat *ch = chat_of(w);

    if (atomic_fetch_add(&ch->settled, 1) + 1 == ch->total)
        kick_all(w);
}

/* Every connection is in the room or gone: release. */
static void check_ready(struct worker *w, uint64_t now)
{
    struct tp_stress_chat *ch = chat_of(w);

    if (atomic_load(&ch->ready) + atomic_load(&ch->gone) >= ch->total)
        release(w, now, false);
}

static void set_ready(struct worker *w, struct tp_stress_chat_conn *cc, uint64_t now)
{
    if (cc->ready)
        return;
    cc->ready = true;
    if (cc->member != UINT32_MAX)
        w->chat->joined++;
    atomic_fetch_add(&chat_of(w)->ready, 1);
    check_ready(w, now);
}

/* A sender sends no more and has nothing in flight: count it out. */
static void sender_done(struct worker *w, struct conn *c, uint64_t now)
{
    struct tp_stress_chat *ch = chat_of(w);
    struct tp_stress_chat_conn *cc = c->chat;
    uint64_t end = atomic_load(&ch->send_end_ns), zero = 0;

    if (cc->done)
        return;
    cc->done = cc->stopped = true;
    atomic_store_explicit(&ch->snd[cc->sender].final, c->out_off / w->unit,
                          memory_order_release);
    while (end < now && !atomic_compare_exchange_weak(&ch->send_end_ns, &end, now))
        ;
    if (atomic_fetch_sub(&ch->senders_left, 1) == 1 &&
        atomic_compare_exchange_strong(&ch->over_ns, &zero, now))
        kick_all(w);
}

/* ---- members: reading and checking ---- */

static char printable(unsigned char ch)
{
    return ch >= 0x20 && ch < 0x7f ? (char)ch : '.';
}

/* Counts a mismatch on c and keeps what it was, with the line's start. */
static void mismatch(struct worker *w, struct conn *c, const char *what, const char *p,
                     size_t len)
{
    char shown[48];
    size_t i;

    for (i = 0; i < len && i < sizeof(shown) - 1; i++)
        shown[i] = printable((unsigned char)p[i]);
    shown[i] = '\0';
    w->n.err[TP_STRESS_ERR_MISMATCH]++;
    tp_stress__note_detail(w, "chat connection %u: %s: \"%s%s\"", c->index, what, shown,
                           len > i ? "..." : "");
}

/* The member that takes a line's count to 0 wakes its sender. */
static void delivered(struct worker *w, uint32_t s, uint32_t seq)
{
    struct chat_sender *sd = &chat_of(w)->snd[s];
    _Atomic uint64_t *slot = &sd->slots[seq % chat_of(w)->depth];
    uint64_t v = atomic_load_explicit(slot, memory_order_relaxed);

    do {
        if ((v >> REM_BITS) != (seq & SEQ_MASK) || (v & REM_MASK) == 0)
            return;              /* given up, or the slot holds a later line */
    } while (!atomic_compare_exchange_weak_explicit(slot, &v, v - 1, memory_order_acq_rel,
                                                    memory_order_relaxed));
    if ((v & REM_MASK) == 1)
        kick(w, sd->worker);
}

/* A join line of member j came to c. */
static void on_join(struct worker *w, struct conn *c, uint32_t j, const char *p, size_t len,
                    uint64_t now)
{
    struct tp_stress_chat_conn *cc = c->chat;
    uint8_t need = cc->member == 0 ? 2 : cc->member == 1 ? 1 : 3;

    if (j > 1 || chat_of(w)->resp) {
        mismatch(w, c, "a join line from no member that sends one", p, len);
        return;
    }
    /* Join lines go out again and again until the release: more than one
     * is no error, nor is one after it; its own back is, once. */
    if (j == cc->member && !(cc->join_seen & (1u << j)))
        w->n.err[TP_STRESS_ERR_OWN_ECHO]++;
    cc->join_seen |= (uint8_t)(1u << j);
    if ((cc->join_seen & need) == need)
        set_ready(w, cc, now);
}

/* One line (without its '\n', or a PUBLISH payload) came to member c. */
static void on_line(struct worker *w, struct conn *c, const char *p, size_t len, uint64_t now)
{
    struct tp_stress_chat *ch = chat_of(w);
    struct tp_stress_chat_conn *cc = c->chat;
    struct tp_stress_line l;
    long at;

    if (w->o->skip_foreign) {
        if ((at = tp_stress_line_find(p, len)) < 0) {
            w->chat->foreign++;
            return;
        }
        p += at;
        len -= (size_t)at;
    }
    if (tp_stress_line_parse(p, len, w->o->size, w->o->verify, &l) < 0) {
        if (!w->o->skip_foreign && tp_stress_line_find(p, len) > 0)
            w->notes |= TP_STRESS_NOTE_PREFIXED;
        mismatch(w, c, len + 1 == w->o->size ? "a line not as sent" : "a line of another length",
                 p, len);
        return;
    }
    if (l.join) {
        on_join(w, c, l.sender, p, len, now);
        return;
    }
    if (l.sender >= ch->senders || l.stamp_ns > now ||
        l.seq >= atomic_load_explicit(&ch->snd[l.sender].queued, memory_order_acquire)) {
        mismatch(w, c, "a line no sender sent", p, len);
        return;
    }
    if (l.sender == cc->sender) {
        w->n.err[TP_STRESS_ERR_OWN_ECHO]++;
        return;
    }
    switch (tp_stress_order_see(&cc->order[l.sender], l.seq)) {
    case TP_STRESS_ORDER_DUP:
        w->n.err[TP_STRESS_ERR_DUPLICATE]++;
        return;
    case TP_STRESS_ORDER_LATE:
        w->n.err[TP_STRESS_ERR_OUT_OF_ORDER]++;
        break;
    case TP_STRESS_ORDER_NEXT:
    case TP_STRESS_ORDER_AHEAD:
        break;
    }
    w->n.msgs++;
    w->n.bytes += w->o->size;
    tp_stress_hist_record(w->rec, now - l.stamp_ns);
    delivered(w, l.sender, l.seq);
}

/* Line protocol: one whole line off data, handled. Returns its bytes, 0
 * if the line is not whole, -1 if c closed. */
static ssize_t cut_line(struct worker *w, struct conn *c, const char *data, size_t len,
                        uint64_t now)
{
    const char *nl = memchr(data, '\n', len);

    if (nl == NULL)
        return 0;
    on_line(w, c, data, (size_t)(nl - data), now);
    return nl - data + 1;
}

static bool is_bulk(const struct tp_stress_resp_item *it, const char *s, size_t len)
{
    return it->type == TP_STRESS_RESP_BULK && it->len == len && memcmp(it->str, s, len) == 0;
}

/* A subscriber's reply: a message, or the confirmation of its SUBSCRIBE. */
static void on_push(struct worker *w, struct conn *c, const struct tp_stress_resp_reply *r,
                    const char *data, size_t len, uint64_t now)
{
    const char *chan = w->o->channel;
    size_t clen = strlen(chan);

    if (r->top.type == TP_STRESS_RESP_ARRAY && r->nitems == 3 && is_bulk(&r->item[1], chan, clen)) {
        if (is_bulk(&r->item[0], "message", 7) && r->item[2].type == TP_STRESS_RESP_BULK) {
            on_line(w, c, r->item[2].str, r->item[2].len, now);
            return;
        }
        if (is_bulk(&r->item[0], "subscribe", 9) && r->item[2].type == TP_STRESS_RESP_INT &&
            r->item[2].num == 1 && !c->chat->ready) {
            set_ready(w, c->chat, now);
            return;
        }
    }
    mismatch(w, c, "a reply that is no message of the channel", data, len);
}

/* A publisher's reply: PUBLISH's count of the subscribers that got it. */
static void on_publish_reply(struct worker *w, struct conn *c,
                             const struct tp_stress_resp_reply *r, const char *data, size_t len)
{
    struct tp_stress_chat *ch = chat_of(w);
    struct tp_stress_chat_conn *cc = c->chat;
    int64_t live = atomic_load(&ch->members_live);
    char what[96];

    if (atomic_load(&ch->over_ns) != 0)
        return;     /* the run is over: members are being closed; not checked */
    if (cc->replies >= c->out_off / w->unit) {
        mismatch(w, c, "a reply to no PUBLISH", data, len);
        return;
    }
    cc->replies++;
    w->chat->publish_replies++;
    if (r->top.type != TP_STRESS_RESP_INT) {
        mismatch(w, c, "PUBLISH did not answer with an integer", data, len);
        return;
    }
    if (r->top.num != live) {
        snprintf(what, sizeof(what), "PUBLISH reached %lld subscribers of %lld",
                 (long long)r->top.num, (long long)live);
        mismatch(w, c, what, data, len);
    }
}

/* RESP: one whole reply off data, handled. Bad bytes close c (a stream
 * that is not RESP cannot be cut again). */
static ssize_t cut_reply(struct worker *w, struct conn *c, const char *data, size_t len,
                         uint64_t now)
{
    struct tp_stress_resp_reply r;
    ssize_t k = tp_stress_resp_parse(data, len, w->o->size, &r);

    if (k < 0) {
        mismatch(w, c, k == -EMSGSIZE ? "a reply too long" : "bytes that are not RESP2",
                 data, len);
        tp_stress__conn_close(w, c, -1, now);
        return -1;
    }
    if (k == 0)
        return 0;
    if (c->chat->member == UINT32_MAX)
        on_publish_reply(w, c, &r, data, (size_t)k);
    else
        on_push(w, c, &r, data, (size_t)k, now);
    return k;
}

static ssize_t cut(struct worker *w, struct conn *c, const char *data, size_t len, uint64_t now)
{
    return chat_of(w)->resp ? cut_reply(w, c, data, len, now) : cut_line(w, c, data, len, now);
}

/* A frame longer than the carry can hold: not ours; c is closed. */
static void too_long(struct worker *w, struct conn *c, const char *p, size_t len, uint64_t now)
{
    mismatch(w, c, chat_of(w)->resp ? "a reply longer than any sent" : "a line longer than any sent",
             p, len);
    tp_stress__conn_close(w, c, -1, now);
}

/* Cuts what was read into lines or replies; a partial one waits in the carry. */
static void feed(struct worker *w, struct conn *c, const char *data, size_t n, uint64_t now)
{
    struct tp_stress_chat_conn *cc = c->chat;
    uint32_t cap = w->chat->carry_cap;
    size_t take;
    ssize_t k;

    if (cc->carry_len > 0) {
        take = n < cap - cc->carry_len ? n : cap - cc->carry_len;
        memcpy(cc->carry + cc->carry_len, data, take);
        k = cut(w, c, cc->carry, cc->carry_len + take, now);
        if (k < 0)
            return;
        if (k == 0) {
            if (cc->carry_len + take == cap)
                too_long(w, c, cc->carry, cap, now);
            else
                cc->carry_len += (uint32_t)take;
            return;
        }
        data += (size_t)k - cc->carry_len;   /* the carry alone was not whole */
        n -= (size_t)k - cc->carry_len;
        cc->carry_len = 0;
    }
    while (n > 0 && c->fd >= 0) {
        k = cut(w, c, data, n, now);
        if (k < 0)
            return;
        if (k == 0) {
            if (n >= cap) {
                too_long(w, c, data, n, now);
                return;
            }
            memcpy(cc->carry, data, n);
            cc->carry_len = (uint32_t)n;
            return;
        }
        data += k;
        n -= (size_t)k;
    }
}

/* ---- senders ---- */

/* Puts line c->seq_queued in the window and the ring, counting the members
 * it must reach, and publishes it as queued before it can be read back. */
static void queue_line(struct worker *w, struct conn *c, uint64_t stamp, uint64_t now)
{
    struct tp_stress_chat *ch = chat_of(w);
    struct tp_stress_chat_conn *cc = c->chat;
    uint64_t seq = c->seq_queued, live = atomic_load(&ch->members_live);
    uint32_t slot = (uint32_t)(seq % ch->depth);
    char *frame = c->ring + (size_t)slot * w->unit;

    if (!ch->resp && cc->live && live > 0)
        live--;                                  /* not back to the sender */
    atomic_store_explicit(&ch->snd[cc->sender].slots[slot], (seq & SEQ_MASK) << REM_BITS | live,
                          memory_order_release);
    if (ch->resp) {
        memcpy(frame, ch->pub_head, ch->pub_head_len);
        tp_stress_line_fill(frame + ch->pub_head_len, w->o->size, cc->sender, (uint32_t)seq,
                            stamp);
        memcpy(frame + ch->pub_head_len + w->o->size - 1, "\r\n", 2);
    } else {
        tp_stress_line_fill(frame, w->o->size, cc->sender, (uint32_t)seq, stamp);
    }
    cc->sent_at[slot] = now;
    c->seq_queued++;
    atomic_store_explicit(&ch->snd[cc->sender].queued, c->seq_queued, memory_order_release);
}

/* Frees the slots of lines every member got, oldest first; gives up on a
 * written line older than --timeout (its absence is counted at the end). */
static void advance(struct worker *w, struct conn *c, uint64_t now)
{
    struct tp_stress_chat *ch = chat_of(w);
    struct tp_stress_chat_conn *cc = c->chat;
    _Atomic uint64_t *slots = ch->snd[cc->sender].slots;
    uint32_t slot;
    uint64_t v;

    while (cc->done_seq < c->seq_queued) {
        slot = (uint32_t)(cc->done_seq % ch->depth);
        v = atomic_load_explicit(&slots[slot], memory_order_acquire);
        if ((v & REM_MASK) != 0) {
            if (now < cc->sent_at[slot] + w->o->timeout_ns)
                return;
            if (cc->done_seq >= c->out_off / w->unit) {
                /* Not even written in --timeout: the server does not read it. */
                tp_stress__conn_close(w, c, TP_STRESS_ERR_TIMEOUT, now);
                return;
            }
            atomic_store_explicit(&slots[slot], v & ~REM_MASK, memory_order_relaxed);
            w->chat->given_up++;
        }
        cc->done_seq++;
    }
}

/* Queues what the window, the pace and -n allow, and writes it. */
static void pump(struct worker *w, struct conn *c, uint64_t now, uint64_t *wake)
{
    struct tp_stress_chat_conn *cc = c->chat;
    uint64_t room = chat_of(w)->depth - (c->seq_queued - cc->done_seq), due;

    if (!cc->stopped && w->o->rate > 0) {
        due = tp_stress_pace_due(&cc->pace, now);
        for (; room > 0 && due > 0 && c->seq_queued < cc->quota; room--, due--)
            queue_line(w, c, tp_stress_pace_take(&cc->pace), now);
        if (room > 0 && c->seq_queued < cc->quota && tp_stress_pace_next(&cc->pace) < *wake)
            *wake = tp_stress_pace_next(&cc->pace);
    } else if (!cc->stopped) {
        for (; room > 0 && c->seq_queued < cc->quota; room--)
            queue_line(w, c, now, now);
    }
    if (c->seq_queued >= cc->quota)
        cc->stopped = true;
    if (c->out_off < c->seq_queued * w->unit && !c->out_blocked)
        tp_stress__flush(w, c, now);
}

/* One of the thread's senders, each turn. */
static void sender_turn(struct worker *w, struct conn *c, bool stop, uint64_t now,
                        uint64_t *wake)
{
    struct tp_stress_chat_conn *cc = c->chat;

    if (cc->done || c->state != C_OPEN)
        return;
    if (stop || now >= cc->stop_at)
        cc->stopped = true;
    else if (cc->stop_at < *wake)
        *wake = cc->stop_at;
    advance(w, c, now);
    if (c->fd < 0)
        return;
    pump(w, c, now, wake);
    if (c->fd >= 0 && cc->stopped && cc->done_seq == c->seq_queued)
        sender_done(w, c, now);
}

/* ---- the engine's hooks ---- */

void tp_stress__chat_connected(struct worker *w, struct conn *c, uint64_t now)
{
    struct tp_stress_chat *ch = chat_of(w);
    struct tp_stress_chat_conn *cc = c->chat;
    int err;

    settle(w);
    if (cc->member != UINT32_MAX) {
        cc->live = true;
        atomic_fetch_add(&ch->members_live, 1);
    }
    if ((err = tp_stress__conn_watch(w, c, EPOLL_CTL_MOD, EPOLLIN)) < 0) {
        tp_stress__conn_fail(w, c, -err, now);
        return;
    }
    if (ch->resp && cc->member != UINT32_MAX) {
        /* A fresh socket takes a small command whole. */
        ssize_t n = send(c->fd, ch->subscribe, ch->subscribe_len, MSG_NOSIGNAL);

        if (n != (ssize_t)ch->subscribe_len) {
            tp_stress__conn_fail(w, c, n < 0 ? errno : EAGAIN, now);
            return;
        }
    }
    if (ch->resp && cc->member == UINT32_MAX)
        set_ready(w, cc, now);              /* a publisher needs only its connection */
}

void tp_stress__chat_event(struct worker *w, struct conn *c, uint32_t events, uint64_t now)
{
    size_t n;

    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (tp_stress__read_some(w, c, &n, &now) < 0)
            return;
        if (n > 0 && c->fd >= 0)
            feed(w, c, w->rbuf, n, now);
    }
    if (c->fd >= 0 && c->out_blocked && (events & EPOLLOUT))
        tp_stress__flush(w, c, now);
}

void tp_stress__chat_kicked(struct worker *w, uint64_t now)
{
    uint64_t v;

    atomic_store(&w->chat->kicked, false);
    if (read(w->chat->kick_fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: another kick was read already; the turn follows anyway. */
    }
}

void tp_stress__chat_closing(struct worker *w, struct conn *c, uint64_t now)
{
    struct tp_stress_chat *ch = chat_of(w);
    struct tp_stress_chat_conn *cc = c->chat;

    if (c->state == C_CONNECTING)
        settle(w);
    if (cc->live) {
        cc->live = false;
        atomic_fetch_sub(&ch->members_live, 1);
    }
    if (atomic_load(&ch->release_ns) == 0) {
        if (cc->ready)
            atomic_fetch_sub(&ch->ready, 1);
        cc->ready = false;
        atomic_fetch_add(&ch->gone, 1);
        check_ready(w, now);
    }
    if (cc->sender != UINT32_MAX)
        sender_done(w, c, now);
}

/* Line: once every connect has settled, members 0 and 1 say hello, and again
 * every JOIN_EVERY_NS until the release: a connect completes before the
 * server has accepted it, so a member may not be in the room yet when the
 * first hello goes out. */
static void send_joins(struct worker *w, uint64_t now)
{
    char line[4096], *buf;
    uint32_t j, size = w->o->size;
    struct conn *c;
    ssize_t n;

    for (j = 0; j < w->nconns; j++) {
        c = &w->conns[j];
        if (c->chat->member > 1 || c->state != C_OPEN)
            continue;
        buf = size <= sizeof(line) ? line : malloc(size);
        if (buf == NULL) {
            tp_stress__conn_fail(w, c, ENOMEM, now);
            continue;
        }
        tp_stress_line_fill_join(buf, size, c->chat->member);
        n = send(c->fd, buf, size, MSG_NOSIGNAL);
        if (buf != line)
            free(buf);
        if (n != (ssize_t)size)
            tp_stress__conn_fail(w, c, n < 0 ? errno : EAGAIN, now);
    }
}

/* At the release: each sender's pace starts at its own phase of the period. */
static void start_senders(struct worker *w, uint64_t rel)
{
    struct tp_stress_chat *ch = chat_of(w);
    double rate = w->o->rate / ch->senders;
    struct tp_stress_chat_conn *cc;
    uint32_t k;

    w->chat->started = true;
    for (k = 0; k < w->chat->nlocal; k++) {
        cc = w->conns[w->chat->local_senders[k]].chat;
        cc->stop_at = rel + w->o->duration_ns;
        tp_stress_pace_init(&cc->pace, rel + (rate > 0 ? (uint64_t)(cc->sender * 1e9 /
                                                                  w->o->rate) : 0), rate);
    }
}

/* Released at --timeout: each member open and not in the room is a timeout. */
static void count_unjoined(struct worker *w)
{
    struct tp_stress_chat_conn *cc;
    uint32_t j;

    for (j = 0; j < w->nconns; j++) {
        cc = w->conns[j].chat;
        if (w->conns[j].state == C_OPEN && cc->member != UINT32_MAX && !cc->ready)
            w->n.err[TP_STRESS_ERR_TIMEOUT]++;
    }
}

void tp_stress__chat_turn(struct worker *w, uint64_t now, uint64_t *wake)
{
    struct tp_stress_chat *ch = chat_of(w);
    struct tp_stress_chat_worker *cw = w->chat;
    uint64_t rel, join_deadline, zero = 0;
    bool stop = atomic_load_explicit(&w->e->stop, memory_order_relaxed);
    uint32_t k;

    rel = atomic_load(&ch->release_ns);
    if (rel == 0 && !ch->resp && atomic_load(&ch->settled) >= ch->total) {
        if (now >= cw->next_join) {
            send_joins(w, now);
            cw->next_join = now + JOIN_EVERY_NS;
        }
        if (cw->next_join < *wake)
            *wake = cw->next_join;
    }
    if (rel == 0) {
        join_deadline = w->e->start_ns + w->o->timeout_ns + ch->ramp_ns;
        if (stop && atomic_compare_exchange_strong(&ch->over_ns, &zero, now))
            kick_all(w);                  /* stopped before anything was sent */
        else if (now >= join_deadline)
            release(w, now, true);
        else if (join_deadline < *wake)
            *wake = join_deadline;
        rel = atomic_load(&ch->release_ns);
        if (rel == 0)
            return;
    }
    if (!cw->started) {
        start_senders(w, rel);
        if (atomic_load(&ch->join_timed_out))
            count_unjoined(w);
    }
    for (k = 0; k < cw->nlocal; k++)
        sender_turn(w, &w->conns[cw->local_senders[k]], stop, now, wake);
}

bool tp_stress__chat_is_over(const struct worker *w)
{
    return atomic_load(&chat_of(w)->over_ns) != 0;
}

void tp_stress__chat_finish(struct worker *w, uint64_t now)
{
    struct tp_stress_chat *ch = chat_of(w);
    struct tp_stress_chat_conn *cc;
    uint64_t sent;
    uint32_t j, s;

    for (j = 0; j < w->nconns; j++) {
        cc = w->conns[j].chat;
        if (w->conns[j].state != C_OPEN || cc->member == UINT32_MAX)
            continue;
        w->chat->members_at_end++;
        for (s = 0; s < ch->senders; s++) {
            if (s == cc->sender)
                continue;
            sent = atomic_load_explicit(&ch->snd[s].final, memory_order_acquire);
            if (sent == NOT_FINAL)       /* the run was cut short: what it queued */
                sent = atomic_load(&ch->snd[s].queued);
            w->n.err[TP_STRESS_ERR_MISSING] += tp_stress_order_missing(&cc->order[s],
                                                                       (uint32_t)sent);
        }
    }
}

void tp_stress__chat_join(struct tp_stress_engine *e, struct tp_stress_result *r)
{
    struct tp_stress_chat *ch = e->chat;
    struct tp_stress_chat_result *cr = &r->chat;
    uint64_t rel = atomic_load(&ch->release_ns), over = atomic_load(&ch->over_ns);
    uint64_t send_end = atomic_load(&ch->send_end_ns);
    struct tp_stress_chat_worker *cw;
    uint32_t i;

    cr->members = ch->members;
    cr->senders = ch->senders;
    cr->recipients = ch->resp ? ch->members : ch->members - 1;
    cr->join_timed_out = atomic_load(&ch->join_timed_out);
    for (i = 0; i < e->nworkers; i++) {
        if ((cw = e->w[i].chat) == NULL)
            continue;
        cr->joined += cw->joined;
        cr->members_at_end += cw->members_at_end;
        cr->foreign += cw->foreign;
        cr->publish_replies += cw->publish_replies;
        cr->given_up += cw->given_up;
    }
    if (over == 0)
        over = r->end_ns;                /* cut short by the engine's deadline */
    if (rel == 0 || rel > over)
        rel = over;
    if (send_end < rel || send_end > over)
        send_end = over;
    r->start_ns = rel;
    r->end_ns = over;
    cr->send_ns = send_end - rel;
    cr->drain_ns = over - send_end;
}
