/* tp_conn.h - a connection's life; internal to reactor/, reactor thread only.
 *
 *   FREE --accept--> READING --EOF, app CLOSE, oversize,------> FINISHING
 *    ^                  |      idle or read timeout, stop          |
 *    |                  |                                          | nothing at the pool,
 *    |                  | error, overflow, stop now                | to ship or to write
 *    |                  v                                          v
 *    +--pool idle,-- CLOSED <----- after EOF, or lingering_timeout 0
 *       app told        ^                                          |
 *                       |                                          | otherwise:
 *                       |                                          | shutdown(SHUT_WR)
 *                       +-- peer took every reply, peer EOF, --- LINGERING
 *                           lingering_timeout, error, stop now    (refused connections
 *                                                                  get here at once)
 *
 *   READING    reads until EAGAIN, cuts whole messages, hands them to the pool
 *              (one batch at a time, so replies keep their order) and writes
 *              the replies; pauses while output is over send_buffer_max
 *              (one holding others' broadcasts is closed instead: slow).
 *   FINISHING  input is no longer served: the messages already read still
 *              run and their replies are written; what arrives is read and
 *              dropped (lingering_max bytes at most), so a client blocked
 *              writing goes on to read. After an EOF the unterminated tail
 *              of a line listener is the last message; after an app's CLOSE
 *              what came later is dropped; otherwise a partial message is.
 *   LINGERING  every reply is with the kernel and our FIN is queued; input is
 *              still dropped (closing on unread bytes would make the kernel
 *              send RST and throw away replies the peer has not yet taken)
 *              until the peer has acknowledged every byte and the FIN,
 *              closes, or lingering_timeout passes. app->close goes on entry.
 *   CLOSED     the fd is closed; the slot waits for its message at the pool
 *              and for app->close, then is FREE with a new generation.
 *
 * Every close begins in tp_conn_close() (EOF and errors included) and
 * progress() carries it on; the fd is closed in one place, on entering
 * CLOSED.
 *
 * set_state() in tp_conn.c is the one place a state changes; advance() is
 * the one place that decides what comes after FINISHING, LINGERING and
 * CLOSED. The app never runs inside these functions: messages go to the pool
 * (tp_pool_submit) and come back through tp_conn__reply(). */
#ifndef TP_CONN_H
#define TP_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <urcu/list.h>

#include "tp_acl.h"
#include "tp_bus.h"
#include "tp_call.h"
#include "tp_conf.h"
#include "tp_metrics.h"
#include "tp_msg.h"
#include "tp_pool.h"
#include "tp_reactor.h"
#include "tp_table.h"

/* What an epoll event points at: each such struct starts with this. */
enum tp_source { TP_SRC_CONN, TP_SRC_LISTENER, TP_SRC_POOL, TP_SRC_SIGNAL,
                 TP_SRC_STOP, TP_SRC_BUS };

enum tp_close_reason { TP_CLOSE_PEER, TP_CLOSE_ERROR, TP_CLOSE_OVERSIZE,
                       TP_CLOSE_IDLE, TP_CLOSE_READ_TIMEOUT, TP_CLOSE_APP,
                       TP_CLOSE_SHUTDOWN, TP_CLOSE_REFUSED, TP_CLOSE_SLOW };

/* A listen block at run time. The reactor fills it and owns the socket and
 * conf (its own copy: tp_reactor.c says when it goes); connections read its
 * conf and keep its lists. */
struct tp_listener {
    uint8_t source;               /* TP_SRC_LISTENER */
    bool ready;                   /* reactor: an accept edge not yet taken */
    bool app_started;             /* reactor: app->init ran */
    bool in_use;                  /* reactor: the slot holds a listener */
    bool retired;                 /* reactor: out of the conf (a reload); it
                                     accepts no more and goes once refs is 0 */
    uint16_t index;
    uint16_t port;
    int fd;                       /* reactor: -1 once closed for shutdown, or
                                     retired (closed, or moved to the slot of
                                     its new settings) */
    uint32_t refs;                /* reactor: connections not FREE that point
                                     here (they read conf, env, name) */
    int64_t paused_until_ms;      /* reactor: accepts retry then (EMFILE) */
    const struct tp_listen_conf *conf;
    struct tp_call_env env;
    char name[72];                /* conf address with the bound port, for logs */
    uint32_t idle_slack_ms;       /* idle list order may lag activity this much */
    struct tp_bus *bus;           /* chat_redis: the room's Redis link, or NULL */
    struct cds_list_head conns;   /* READING and FINISHING connections */
    uint32_t members;             /* of them, those not refused: what the app
                                     hears as tp_call_members() */
    uint32_t busy;                /* its connections with a message at the pool */
    struct cds_list_head idle;    /* the same, oldest activity first */
    struct cds_list_head partial; /* READING with a partial message, oldest first */
    tp_ip_table_t *ips;           /* per source address limits; NULL if none */
    struct tp_metrics_listener *m;  /* its counters in the server's slot;
                                     reactor writes (TP_METRIC_ADD) */
};

typedef void tp_conns_log_fn(void *arg, enum tp_log_level level, const char *msg);

/* Everything connections share. The reactor embeds and owns it. */
struct tp_conns {
    struct tp_table table;
    struct tp_listener *listeners;  /* indexed by tp_msg.listener; slots never
                                       move (workers read their env) */
    struct tp_msg_cache cache;
    tp_pool_t *pool;
    int epfd;
    int64_t now_ms;               /* cached once per loop turn */
    size_t turn_left;             /* bytes this loop turn may still read */
    struct cds_list_head linger;  /* LINGERING connections, next check first */
    uint32_t refs_unwritten;      /* broadcast slots queued since the dirty
                                     list was last written (tp_conn__defer_writes) */
    uint32_t refused_lingering;   /* refused connections now LINGERING */
    enum tp_log_level log_level;
    void (*answer)(void *arg);    /* runs the staged work that runs on this
                                     thread and takes its replies (the
                                     reactor's publish); NULL: not done */
    void *answer_arg;
    tp_conns_log_fn *log;         /* NULL: no log */
    void *log_arg;
    struct tp_metrics_slot *slot; /* the counters: reactor writes (relaxed
                                     atomic stores), any thread reads */
    uint64_t turn_ns;             /* CLOCK_MONOTONIC, once per loop turn */
    uint32_t turn_stamp;          /* TP_STAMP(turn_ns) */
    /* Replies written this turn, by the turn that read their messages (this
     * one, or a few others for those a worker answered); they are timed at
     * the end of the turn, one clock read for all. */
    uint64_t written_now;
    struct { uint32_t stamp; uint64_t n; } written[4];
    unsigned nwritten;
};

/* Adds n to a counter; only the reactor thread writes counters. */
#define TP_STAT_ADD(cs, field, n) TP_METRIC_ADD(&(cs)->slot->stats.field, (n))
#define TP_STAT_SET(cs, field, v) TP_METRIC_SET(&(cs)->slot->stats.field, (v))

/* Times the replies counted in cs->written against the clock now. */
void tp_conns__time_written(struct tp_conns *cs);

/* Logs at level if the conf lets it through. */
void tp_conns__log(struct tp_conns *cs, enum tp_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Takes an accepted fd from peer: a new READING connection, or with refuse
 * (over max_connections) one that only lingers. Closes fd if it cannot be
 * set up. */
void tp_conn__open(struct tp_conns *cs, struct tp_listener *l, int fd, bool refuse,
                   struct tp_ip_entry *ip, const struct sockaddr *peer);

/* Bytes one loop turn reads from the connections its events name, and as
 * many again from the pending list; past them, connections wait on the
 * pending list, in the order they became readable, for the next turn
 * (which accepts first). tp_conn__new_share() starts each share's count. */
#define TP_TURN_BUDGET (1024 * 1024)

static inline void tp_conn__new_share(struct tp_conns *cs)
{
    cs->turn_left = TP_TURN_BUDGET;
}

/* An epoll event for c. */
void tp_conn__event(struct tp_conns *cs, struct tp_conn *c, uint32_t events);

/* Reads c again: it was on the pending or waiting list. */
void tp_conn__resume(struct tp_conns *cs, struct tp_conn *c);

/* Broadcast slots a loop turn may queue before the dirty list is written:
 * until then one member's slots from many senders pile up and go out in
 * one sendmsg, not one each (1,000 members: a write per member per turn,
 * not per line). Bounds what they hold to about TP_DEFER_REFS headers. */
#define TP_DEFER_REFS 16384

/* True while writing the dirty list may wait for the end of the turn. */
static inline bool tp_conn__defer_writes(const struct tp_conns *cs)
{
    return cs->refs_unwritten < TP_DEFER_REFS;
}

/* Writes c's output: it was on the dirty list. */
void tp_conn__flush(struct tp_conns *cs, struct tp_conn *c);

/* Bytes published by another instance on listener's chat_redis channel:
 * to every member, as one shared broadcast (not published again). */
void tp_conn__broadcast_remote(struct tp_conns *cs, uint16_t listener, const char *data,
                               size_t len);

/* A message back from the pool: a batch done, or a send or broadcast. */
void tp_conn__reply(struct tp_conns *cs, struct tp_msg *m);

/* Begins closing c for why. With now, the fd closes at once and unwritten
 * output is dropped (errors, stop now); otherwise c finishes what it read,
 * writes the replies and lingers. The one close path. */
void tp_conn_close(struct tp_conns *cs, struct tp_conn *c, enum tp_close_reason why,
                   bool now);

/* Graceful stop: c takes in what already arrived, then closes for shutdown. */
void tp_conn__stop(struct tp_conns *cs, struct tp_conn *c);

/* Closes what timed out on l (idle_timeout, read_timeout), and checks the
 * lingering connections that are due. */
void tp_conn__expire(struct tp_conns *cs, struct tp_listener *l);
void tp_conn__check_lingering(struct tp_conns *cs);

/* The earliest time a timer of l, or of the lingering connections, is due
 * (INT64_MAX if none). */
int64_t tp_conn__next_timer(struct tp_conns *cs, struct tp_listener *l);
int64_t tp_conn__next_linger_check(struct tp_conns *cs);

/* c's peer address as text, for the rare log line; valid until the next
 * call. */
const char *tp_conn__peer(const struct tp_conn *c);

#endif /* TP_CONN_H */
