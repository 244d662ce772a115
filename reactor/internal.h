/* internal.h - what the reactor's own files share; not an interface.
 *
 * Everything here belongs to the reactor thread. tp_reactor.c runs the loop
 * (epoll, accept, timers, signals, shutdown); tp_conn.c is one connection's
 * life (read, cut, hand off, write, close). */
#ifndef TP_REACTOR_INTERNAL_H
#define TP_REACTOR_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <urcu/list.h>

#include "tp_call.h"
#include "tp_frame.h"
#include "tp_msg.h"
#include "tp_pool.h"
#include "tp_reactor.h"

/* What an epoll event points at: each such struct starts with this. */
enum tp_source { TP_SRC_CONN, TP_SRC_LISTENER, TP_SRC_POOL, TP_SRC_SIGNAL,
                 TP_SRC_STOP };

enum tp_conn_state {
    TP_CONN_FREE,       /* slot unused */
    TP_CONN_OPEN,       /* fd open */
    TP_CONN_ZOMBIE,     /* fd closed; a message is still at a worker */
};

enum {
    TP_CONN_READABLE   = 1 << 0,  /* an edge not yet read to EAGAIN */
    TP_CONN_RDHUP      = 1 << 1,  /* peer shut its write side: read to 0 */
    TP_CONN_EOF        = 1 << 2,  /* no more input (read 0, or stopped) */
    TP_CONN_BUSY       = 1 << 3,  /* a message is at a worker */
    TP_CONN_PENDING    = 1 << 4,  /* on srv->pending */
    TP_CONN_DIRTY      = 1 << 5,  /* on srv->dirty: output to write */
    TP_CONN_WAITING    = 1 << 6,  /* on srv->waiting: pool was full */
    TP_CONN_OUT_FULL   = 1 << 7,  /* output over send_buffer_max */
    TP_CONN_CLOSE_SOON = 1 << 8,  /* close once replies are written */
    TP_CONN_PARTIAL    = 1 << 9,  /* on the listener's read-timeout list */
    TP_CONN_DRAIN      = 1 << 10, /* shutting down: read no more */
    TP_CONN_CLOSE_SENT = 1 << 11, /* zombie: app->close is on its way */
    TP_CONN_OVERFLOW   = 1 << 12, /* output past the hard limit: close */
};

struct tp_listener;

struct tp_conn {
    uint8_t source;               /* TP_SRC_CONN */
    uint8_t state;                /* enum tp_conn_state */
    uint8_t rsize;                /* read buffer size class to use next */
    uint16_t flags;               /* TP_CONN_* */
    int fd;
    struct tp_handle h;           /* slot and generation */
    struct tp_listener *l;
    struct tp_msg *rbuf;          /* read buffer; NULL while there is none */
    struct tp_msg_list out;       /* replies to write, in order */
    size_t out_bytes;             /* unsent bytes in out */
    void *app_data;               /* the app's per-connection pointer */
    struct tp_conn *next_pending; /* srv->pending */
    struct tp_conn *next_dirty;   /* srv->dirty */
    struct tp_conn *next_wait;    /* srv->waiting */
    struct cds_list_head link;    /* l->conns; srv->free_slots when free */
    struct cds_list_head idle;    /* l->idle, oldest activity first */
    struct cds_list_head partial; /* l->partial, oldest partial first */
    int64_t active_ms;            /* last read or write progress, give or take
                                     l->idle_slack_ms (see touch()) */
    int64_t partial_ms;           /* when the partial message began */
};

struct tp_listener {
    uint8_t source;               /* TP_SRC_LISTENER */
    bool ready;                   /* an accept edge not yet taken to EAGAIN */
    uint16_t index;
    uint16_t port;
    int fd;                       /* -1 once closed for shutdown */
    int64_t paused_until_ms;      /* accept errors (EMFILE): retry then */
    const struct tp_listen_conf *conf;
    char name[72];                /* conf address with the bound port, for logs */
    uint32_t idle_slack_ms;       /* idle list order may lag activity this much */
    struct tp_call_env env;
    bool app_started;
    struct cds_list_head conns, idle, partial;
};

struct tp_event_src {
    uint8_t source;
    int fd;
};

struct tp_server {
    const struct tp_conf *conf;
    struct tp_server_opts opts;
    int epfd;
    int64_t now_ms;               /* cached once per loop turn */
    struct tp_listener *listeners;
    size_t nlisten;
    tp_pool_t *pool;              /* NULL with workers 0 */
    struct tp_msg_cache cache;
    bool pool_retry;              /* drain caught a worker mid-enqueue */

    /* Connection table: chunks of slots, allocated as needed. */
    struct tp_conn **chunks;
    uint32_t nchunks, nslots;
    struct cds_list_head free_slots;
    uint32_t max_conns;
    uint64_t live_slots;          /* open connections and zombies */

    struct tp_conn *pending;      /* ready to read again without an edge */
    struct tp_conn *dirty;        /* output to write this turn */
    struct tp_conn *waiting;      /* stopped because the pool was full */

    struct tp_event_src pool_src, signal_src, stop_src;
    atomic_int stop_request;      /* any thread writes, reactor reads: 0, 1
                                     graceful, 2 now */
    int stop_state;               /* reactor: how far shutdown has gone */
    int64_t stop_deadline_ms;
    int64_t last_accept_warn_ms;

    struct tp_stats stats;        /* reactor writes (relaxed atomic stores),
                                     any thread reads */
};

/* Adds n to a counter; only the reactor thread writes counters. */
#define TP_STAT_ADD(s, field, n) \
    __atomic_store_n(&(s)->stats.field, (s)->stats.field + (n), __ATOMIC_RELAXED)

/* Logs at level if the conf lets it through. */
void tp_server__log(struct tp_server *s, enum tp_log_level level,
                    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* tp_conn.c */
enum tp_close_reason { TP_CLOSE_PEER, TP_CLOSE_ERROR, TP_CLOSE_OVERSIZE,
                       TP_CLOSE_IDLE, TP_CLOSE_READ_TIMEOUT, TP_CLOSE_APP,
                       TP_CLOSE_SHUTDOWN };

int tp_conn__table_init(struct tp_server *s);
void tp_conn__table_fini(struct tp_server *s);
/* Takes an accepted fd; closes it if the connection cannot be set up. */
void tp_conn__open(struct tp_server *s, struct tp_listener *l, int fd);
/* An epoll event for c. */
void tp_conn__event(struct tp_server *s, struct tp_conn *c, uint32_t events);
/* Reads c again (it was on srv->pending or srv->waiting). */
void tp_conn__resume(struct tp_server *s, struct tp_conn *c);
/* A message back from a worker (or from an inline call). */
void tp_conn__deliver(struct tp_server *s, struct tp_msg *m);
/* Writes c's output (it was on srv->dirty). */
void tp_conn__flush(struct tp_server *s, struct tp_conn *c);

/* c's peer address as text, for the rare log line; valid until the next
 * call. Reactor thread. */
const char *tp_conn__peer(const struct tp_conn *c);
/* The one close path. */
void tp_conn_close(struct tp_server *s, struct tp_conn *c, enum tp_close_reason why);
/* Shutdown: no more input; finish what was read and close. */
void tp_conn__drain(struct tp_server *s, struct tp_conn *c);

#endif /* TP_REACTOR_INTERNAL_H */
