/* tp_reactor.c - the event loop: epoll, accept, timers, signals, shutdown.
 *
 * One loop turn: wait for events; read every connection that has an edge;
 * accept; take the pool's replies (writing each while its connection is in
 * cache); go back to connections that stopped early; close what timed out;
 * write the connections that got output from others; then publish all the
 * work this turn staged, so none of it waits for the next turn. Work is also
 * published right after each connection's read: what is cheap enough runs
 * and is answered there (all of it with workers 0), while the connection is
 * in cache; the workers start on the rest.
 *
 * Reload (SIGHUP, tp_server_reload) and who owns each conf generation:
 *   - s->conf is the server's copy of the newest conf it serves; only its
 *     globals are read after set-up. A reload replaces it and frees the old
 *     one at once: nothing else points into it.
 *   - Each listener slot owns a copy of its listen block (l->conf), its app
 *     state (l->env) and per-address table; its connections point at the
 *     slot. A reload that keeps an address with the same settings keeps the
 *     slot; one that changes them makes a new slot for new connections and
 *     moves the socket there; one that drops the address closes the socket
 *     and finishes the slot's connections gracefully. A slot left out of the
 *     conf is `retired`: once its last connection is FREE (l->refs 0, so no
 *     message of it is at a pool) sweep_retired() runs app->fini and frees
 *     its conf. Slots never move, since workers read their env by index.
 *   - A new worker count (or queue_max) makes a new pool; new work goes
 *     there. The old one is drained each turn and destroyed once nothing of
 *     it is in flight. A connection has one message at a pool at a time
 *     (TP_CONN_BUSY), so its calls still run one at a time and in order.
 *
 * Mutable globals: none. */
#include "tp_conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tp_sock.h"

#define MAX_EVENTS 512
#define ACCEPT_BUDGET 256        /* connections per listener per loop turn */
#define ACCEPT_PAUSE_MS 100      /* after EMFILE and the like */
#define MAX_WAIT_MS 1000
#define WARN_EVERY_MS 5000       /* rate limit for repeated accept warnings */
#define LISTEN_SLOTS 256         /* listener settings alive at once: the conf's
                                    and those kept for connections a reload left
                                    them with */
#define INLINE_MAX_NS 3000       /* work expected to take less runs on the reactor
                                    thread: a hand-off to a worker (futex wake,
                                    eventfd wake, the message's cache lines moving
                                    between cores) costs more than that here */

/* How far a stop has gone. DELAY: serving on for shutdown_delay while
 * /health says 503; GRACEFUL: listeners closed (those of an app that
 * serves_drain stay until every other connection is gone), finishing. */
enum { STOP_NONE, STOP_DELAY, STOP_GRACEFUL, STOP_NOW };

struct tp_event_src {
    uint8_t source;               /* enum tp_source */
    int fd;
};

/* A pool a reload replaced, finishing what it holds. Reactor only. */
struct old_pool {
    tp_pool_t *pool;
    struct old_pool *next;
};

/* A reload asked for from another thread; guarded by tp_server.lock. */
struct reload_req {
    const struct tp_conf *conf;
    const struct tp_app *const *apps;
    char *err;
    size_t errlen;
    int rc;
    bool done;
};

struct tp_server {
    struct tp_conf *conf;         /* ours: the newest conf served */
    struct tp_server_opts opts;
    struct tp_conns cs;           /* connections, their table, pool, stats,
                                     the epoll fd and the listeners */
    size_t nslots;                /* listener slots below this may be in use */
    uint16_t active[TP_CONF_MAX_LISTEN];  /* slot of conf->listen[i] */
    size_t nactive;
    struct old_pool *old_pools;
    bool pool_retry;              /* drain caught a worker mid-enqueue */
    bool old_retry;               /* ... of an old pool */
    bool hup;                     /* SIGHUP seen: tell the owner after the turn */
    pthread_mutex_t lock;         /* guards req, looping */
    pthread_cond_t cond;
    struct reload_req *req;
    bool looping;                 /* tp_server_run() is in its loop */
    pthread_t loop_thread;
    uint32_t max_conns;
    struct tp_event_src pool_src, signal_src, stop_src;
    atomic_int stop_request;      /* any thread writes, reactor reads: 0,
                                     STOP_GRACEFUL, STOP_NOW */
    int stop_state;               /* reactor: how far shutdown has gone */
    bool drain_closed;            /* reactor: the serves_drain listeners too */
    int64_t drain_at_ms;          /* STOP_DELAY ends */
    int64_t stop_deadline_ms;
    tp_metrics_t *own_metrics;    /* when opts.metrics is NULL */
    int64_t last_accept_warn_ms;
    int64_t next_tick_ms;         /* opts.tick_ms: when TP_SERVER_TICK is due */
};

#define log_(s, ...) tp_conns__log(&(s)->cs, __VA_ARGS__)

static void tell(struct tp_server *s, enum tp_server_event ev)
{
    struct tp_stats st;

    if (s->opts.event == NULL)
        return;
    tp_metrics_snapshot(s->cs.slot, &st);
    s->opts.event(s->opts.event_arg, ev, &st);
}

/* The loop turn's time: ns for the message timings, ms for the timers. */
static void set_clock(struct tp_conns *cs)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    cs->turn_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    cs->turn_stamp = TP_STAMP(cs->turn_ns);
    cs->now_ms = (int64_t)(cs->turn_ns / 1000000);
}

static int watch(struct tp_server *s, int fd, void *ptr)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = ptr };

    return epoll_ctl(s->cs.epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* ---- chat_redis ---- */

static void bus_deliver(void *arg, unsigned tag, const char *data, size_t len)
{
    struct tp_server *s = arg;

    tp_conn__broadcast_remote(&s->cs, (uint16_t)tag, data, len);
}

static void bus_log(void *arg, enum tp_log_level level, const char *msg)
{
    struct tp_server *s = arg;

    log_(s, level, "%s", msg);
}

/* Links slot l's room (listen block lc) to Redis if lc says so. Each slot
 * has its own link: after a reload that changed a chat listener's settings,
 * the old slot's members and the new slot's still hear each other through
 * the channel. */
static int open_bus(struct tp_server *s, struct tp_listener *l,
                    const struct tp_listen_conf *lc, char *err, size_t errlen)
{
    struct tp_bus_opts o = {
        .host = lc->chat_redis_host, .port = lc->chat_redis_port,
        .channel = lc->chat_channel, .name = l->name,
        .epfd = s->cs.epfd, .source = TP_SRC_BUS,
        /* As much as one slow member may hold: Redis is one more member. */
        .max_unsent = lc->send_buffer_max,
        .deliver = bus_deliver, .log = bus_log, .arg = s, .tag = l->index,
    };

    if (lc->chat_redis_host[0] == '\0')
        return 0;
    l->bus = tp_bus_create(&o, s->cs.now_ms);
    if (l->bus == NULL) {
        snprintf(err, errlen, "%s:%d: chat_redis: %s", lc->file, lc->chat_redis_line,
                 strerror(errno));
        return -ENOMEM;
    }
    return 0;
}

/* The rooms' Redis figures, summed into the stats. */
static void bus_stats(struct tp_server *s)
{
    uint64_t pub = 0, del = 0, drop = 0;
    struct tp_bus_stats st;
    size_t i;

    for (i = 0; i < s->nslots; i++) {
        if (!s->cs.listeners[i].in_use || s->cs.listeners[i].bus == NULL)
            continue;
        tp_bus_stats(s->cs.listeners[i].bus, &st);
        pub += st.published;
        del += st.delivered;
        drop += st.dropped;
    }
    TP_STAT_SET(&s->cs, redis_published, pub);
    TP_STAT_SET(&s->cs, redis_delivered, del);
    TP_STAT_SET(&s->cs, redis_dropped, drop);
}

/* ---- set-up ---- */

static void work(void *arg, struct tp_msg *msg, struct tp_msg_list *out)
{
    struct tp_server *s = arg;

    tp_call_run(&s->cs.listeners[msg->listener].env, msg, out);
}

static tp_pool_t *pool_for(struct tp_server *s, const struct tp_conf *conf)
{
    return tp_pool_create(tp_conf_workers(conf), work, s, &(struct tp_pool_opts){
        .backlog_max = conf->queue_max, .nclasses = LISTEN_SLOTS,
        .inline_max_ns = s->opts.workers_only ? 0 : INLINE_MAX_NS });
}

/* The address as written, with the port bound (port 0 listeners). */
static void set_name(struct tp_listener *l)
{
    const char *text = l->conf->addr_text, *colon = strrchr(text, ':');

    if (colon != NULL)
        snprintf(l->name, sizeof(l->name), "%.*s:%u", (int)(colon - text), text, l->port);
    else
        snprintf(l->name, sizeof(l->name), "*:%u", l->port);
}

/* The counters of the listener called name in this process's metrics slot:
 * one entry per address, kept across reloads (a listener whose settings
 * changed, and a process restarted in the slot, go on counting where it
 * was); past TP_CONF_MAX_LISTEN addresses the last entry is shared. The
 * name is written before the count that makes readers look at it. */
static struct tp_metrics_listener *metrics_entry(struct tp_server *s, const char *name)
{
    struct tp_metrics_slot *slot = s->cs.slot;
    uint32_t i, n = slot->nlisten;

    for (i = 0; i < n; i++)
        if (strcmp(slot->listen[i].name, name) == 0)
            return &slot->listen[i];
    if (n == TP_CONF_MAX_LISTEN)
        return &slot->listen[n - 1];
    for (i = 0; i < sizeof(slot->listen[n].name) && (i == 0 || name[i - 1] != '\0'); i++)
        __atomic_store_n(&slot->listen[n].name[i], name[i], __ATOMIC_RELAXED);
    __atomic_store_n(&slot->nlisten, n + 1, __ATOMIC_RELEASE);
    return &slot->listen[n];
}

/* A free listener slot, zeroed, marked in use; NULL if every one is. */
static struct tp_listener *slot_new(struct tp_server *s)
{
    struct tp_listener *l;
    size_t i;

    for (i = 0; i < LISTEN_SLOTS && s->cs.listeners[i].in_use; i++)
        ;
    if (i == LISTEN_SLOTS)
        return NULL;
    l = &s->cs.listeners[i];
    memset(l, 0, sizeof(*l));
    l->in_use = true;
    l->fd = -1;
    l->index = (uint16_t)i;
    if (i >= s->nslots)
        s->nslots = i + 1;
    return l;
}

/* Undoes slot_new() and slot_setup(): the app's state, the conf copy, the
 * socket if the slot still has one. */
static void slot_free(struct tp_server *s, struct tp_listener *l)
{
    if (l->app_started && l->env.app->fini != NULL)
        l->env.app->fini(l->env.state);
    tp_ip_table_destroy(l->ips);
    tp_bus_destroy(l->bus);
    if (l->fd >= 0)
        close(l->fd);
    free((void *)l->conf);
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    while (s->nslots > 0 && !s->cs.listeners[s->nslots - 1].in_use)
        s->nslots--;
}

/* Fills slot l for listen block lc served by app: its own copy of lc, app
 * state, and a socket: a new one bound now, or with moved >= 0 the socket of
 * the slot that served lc's address before (l takes it at commit). */
static int slot_setup(struct tp_server *s, struct tp_listener *l,
                      const struct tp_listen_conf *lc, const struct tp_app *app,
                      int moved, char *err, size_t errlen)
{
    struct tp_listen_conf *own = malloc(sizeof(*own));
    const char *what;
    char where[TP_CONF_PATH_MAX + 16] = "";
    int fd, rc;

    if (own == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    memcpy(own, lc, sizeof(*own));
    if (lc->line > 0)
        snprintf(where, sizeof(where), "%s:%d: ", lc->file, lc->line);
    l->source = TP_SRC_LISTENER;
    l->conf = own;
    l->env = (struct tp_call_env){ app, NULL, lc->framing, lc->max_message,
                                   s->opts.metrics };
    CDS_INIT_LIST_HEAD(&l->conns);
    CDS_INIT_LIST_HEAD(&l->idle);
    CDS_INIT_LIST_HEAD(&l->partial);
    if (app->framings != 0 && !(app->framings & (1u << lc->framing))) {
        snprintf(err, errlen, "%sapp %s does not work with framing %s", where,
                 app->name, tp_conf_framing_name(lc->framing));
        return -EINVAL;
    }
    if (moved < 0) {
        fd = tp_sock_listen(own, &what);
        if (fd < 0) {
            snprintf(err, errlen, "%slisten %s: %s: %s", where, lc->addr_text, what,
                     strerror(-fd));
            return fd;
        }
        l->fd = fd;
        if ((rc = watch(s, fd, l)) < 0) {
            snprintf(err, errlen, "epoll_ctl: %s", strerror(-rc));
            return rc;
        }
    }
    l->port = tp_sock_port(moved < 0 ? l->fd : moved);
    if ((lc->max_conns_per_ip > 0 || lc->accept_rate_per_ip > 0) &&
        (l->ips = tp_ip_table_create(lc->max_conns_per_ip, lc->accept_rate_per_ip)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    set_name(l);
    l->m = metrics_entry(s, l->name);
    if ((rc = open_bus(s, l, own, err, errlen)) < 0)
        return rc;
    l->idle_slack_ms = lc->idle_timeout_ms / 16 < 1000 ? lc->idle_timeout_ms / 16 : 1000;
    if (app->init != NULL && (rc = app->init(&l->env.state, own)) < 0) {
        snprintf(err, errlen, "%sapp %s: cannot start: %s", where, app->name, strerror(-rc));
        return rc;
    }
    l->app_started = true;
    return 0;
}

static int open_wakeups(struct tp_server *s, char *err, size_t errlen)
{
    int rc;

    s->stop_src = (struct tp_event_src){ TP_SRC_STOP, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) };
    if (s->stop_src.fd < 0 || (rc = watch(s, s->stop_src.fd, &s->stop_src)) < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        return -1;
    }
    s->signal_src = (struct tp_event_src){ TP_SRC_SIGNAL, s->opts.signal_fd };
    if (s->opts.signal_fd >= 0 && (rc = watch(s, s->opts.signal_fd, &s->signal_src)) < 0) {
        snprintf(err, errlen, "signalfd: %s", strerror(-rc));
        return rc;
    }
    s->cs.pool = pool_for(s, s->conf);
    if (s->cs.pool == NULL) {
        snprintf(err, errlen, "cannot start %u workers: %s", tp_conf_workers(s->conf),
                 strerror(errno));
        return -1;
    }
    s->pool_src = (struct tp_event_src){ TP_SRC_POOL, tp_pool_event_fd(s->cs.pool) };
    if (s->pool_src.fd >= 0 && (rc = watch(s, s->pool_src.fd, &s->pool_src)) < 0) {
        snprintf(err, errlen, "epoll_ctl: %s", strerror(-rc));
        return rc;
    }
    return 0;
}

static void answer_now(void *arg);

tp_server_t *tp_server_create(const struct tp_conf *conf,
                              const struct tp_server_opts *opts,
                              char *err, size_t errlen)
{
    struct tp_server *s = calloc(1, sizeof(*s));
    struct tp_listener *l;
    size_t i;

    if (s == NULL || (s->conf = malloc(sizeof(*s->conf))) == NULL) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(s->conf, conf, sizeof(*conf));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->opts = *opts;
    s->opts.apps = NULL;          /* the caller's: read below only */
    s->max_conns = conf->max_connections;
    s->stop_src.fd = -1;
    if (s->opts.metrics == NULL) {
        s->own_metrics = s->opts.metrics = tp_metrics_create(1);
        if (s->own_metrics == NULL || tp_metrics_claim(s->own_metrics, 0) == NULL) {
            snprintf(err, errlen, "cannot map the counters: %s", strerror(errno));
            tp_metrics_destroy(s->own_metrics);
            free(s);
            return NULL;
        }
    }
    s->cs.slot = tp_metrics_own(s->opts.metrics);
    if (s->cs.slot == NULL) {
        snprintf(err, errlen, "the counters have no slot for this process");
        free(s);
        return NULL;
    }
    set_clock(&s->cs);
    s->cs.answer = answer_now;
    s->cs.answer_arg = s;
    s->cs.log = opts->log;
    s->cs.log_arg = opts->log_arg;
    s->cs.log_level = conf->log_level;
    CDS_INIT_LIST_HEAD(&s->cs.linger);
    tp_msg_cache_init(&s->cs.cache);
    s->cs.epfd = epoll_create1(EPOLL_CLOEXEC);
    s->cs.listeners = calloc(LISTEN_SLOTS, sizeof(*s->cs.listeners));
    if (s->cs.epfd < 0 || s->cs.listeners == NULL ||
        tp_table_init(&s->cs.table, conf->max_connections) < 0) {
        snprintf(err, errlen, "cannot set up: %s", strerror(errno));
        goto out_destroy;
    }
    for (i = 0; i < LISTEN_SLOTS; i++)
        s->cs.listeners[i].fd = -1;
    for (i = 0; i < conf->nlisten; i++) {
        if ((l = slot_new(s)) == NULL || slot_setup(s, l, &conf->listen[i], opts->apps[i],
                                                    -1, err, errlen) < 0)
            goto out_destroy;
        s->active[s->nactive++] = l->index;
    }
    if (open_wakeups(s, err, errlen) < 0)
        goto out_destroy;
    return s;

out_destroy:
    tp_server_destroy(s);
    return NULL;
}

/* ---- accepting ---- */

static void warn_accept(struct tp_server *s, struct tp_listener *l, const char *why)
{
    if (s->cs.now_ms - s->last_accept_warn_ms < WARN_EVERY_MS &&
        s->last_accept_warn_ms != 0)
        return;
    s->last_accept_warn_ms = s->cs.now_ms;
    log_(s, TP_LOG_WARN, "%s: %s", l->name, why);
}

/* Whether l's rules and per-address limits let peer in; if not, counts
 * why. *ip is the address's count to hold while the connection lives. */
static bool admitted(struct tp_server *s, struct tp_listener *l, const struct sockaddr *peer,
                     struct tp_ip_entry **ip)
{
    *ip = NULL;
    if (!tp_acl_allows(l->conf->acl, l->conf->nacl, peer)) {
        TP_STAT_ADD(&s->cs, refused_acl, 1);
        return false;
    }
    if (l->ips == NULL)
        return true;
    switch (tp_ip_admit(l->ips, peer, s->cs.now_ms, ip)) {
    case TP_IP_OK:
        return true;
    case TP_IP_TOO_MANY:
        TP_STAT_ADD(&s->cs, refused_per_ip, 1);
        return false;
    case TP_IP_TOO_FAST:
        TP_STAT_ADD(&s->cs, refused_rate, 1);
        return false;
    case TP_IP_NOMEM:
        break;
    }
    TP_STAT_ADD(&s->cs, accept_errors, 1);
    return false;
}

static bool accept_one(struct tp_server *s, struct tp_listener *l)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    struct tp_ip_entry *ip;
    bool refuse;

    if (fd >= 0) {
        if (!admitted(s, l, (struct sockaddr *)&peer, &ip)) {
            close(fd);          /* refused: not a byte read, nothing written */
            return true;
        }
        refuse = s->cs.slot->stats.open >= s->max_conns;
        if (refuse) {
            TP_STAT_ADD(&s->cs, rejected_max_conn, 1);
            warn_accept(s, l, "max_connections reached, refusing connections");
            tp_ip_release(ip);
            ip = NULL;
        }
        tp_conn__open(&s->cs, l, fd, refuse, ip, (struct sockaddr *)&peer);
        return true;
    }
    switch (errno) {
    case EAGAIN:
        l->ready = false;
        return false;
    case EINTR: case ECONNABORTED: case EPROTO: case EPERM:
        return true;    /* that one connection failed; go on */
    default:
        /* EMFILE, ENFILE, ENOBUFS, ENOMEM: out of a resource. Leave the
         * connections in the backlog and try again shortly. */
        TP_STAT_ADD(&s->cs, accept_errors, 1);
        TP_STAT_ADD(&s->cs, accept_pauses, 1);
        l->paused_until_ms = s->cs.now_ms + ACCEPT_PAUSE_MS;
        warn_accept(s, l, errno == EMFILE || errno == ENFILE
                    ? "accept: out of file descriptors, pausing accepts"
                    : strerror(errno));
        return false;
    }
}

static void accept_ready(struct tp_server *s)
{
    size_t i;
    int n;

    for (i = 0; i < s->nslots; i++) {
        struct tp_listener *l = &s->cs.listeners[i];

        if (!l->ready || l->fd < 0 || s->cs.now_ms < l->paused_until_ms)
            continue;
        for (n = 0; n < ACCEPT_BUDGET && accept_one(s, l); n++)
            ;
    }
}

/* ---- the pool's replies, and the connections to come back to ---- */

static void take_replies(struct tp_server *s, bool clear)
{
    struct tp_msg_list replies;
    struct tp_msg *m;

    tp_msg_list_init(&replies);
    tp_pool_drain(s->cs.pool, clear, &replies, &s->pool_retry);
    while ((m = tp_msg_list_pop(&replies)) != NULL)
        tp_conn__reply(&s->cs, m);
}

static void publish(struct tp_server *s, bool writes);

/* tp_conns.answer: a connection's read stopped for its batch at the pool. */
static void answer_now(void *arg)
{
    publish(arg, false);
}

/* Writes the output of every connection on the dirty list. */
static void run_dirty(struct tp_server *s)
{
    struct tp_conn *c, *walk = tp_table_take(&s->cs.table, TP_LIST_DIRTY);

    s->cs.refs_unwritten = 0;
    while ((c = tp_table_pop(&s->cs.table, &walk, TP_LIST_DIRTY)) != NULL)
        tp_conn__flush(&s->cs, c);
}

/* Whether this turn can serve more of a list: bytes left in the pending
 * list's share; room in the pool. */
static bool has_room(const struct tp_server *s, enum tp_table_list which)
{
    return which == TP_LIST_PENDING ? s->cs.turn_left > 0 : !tp_pool_is_full(s->cs.pool);
}

/* Comes back to the pending or waiting connections, oldest first, while the
 * turn has room; where it stops, the next turn goes on. One served and put
 * back waits behind every one not yet served, so the few a share serves
 * never keep the rest of the list waiting (walking the whole list and
 * putting them all back, the first few came first again every turn). */
static void run_queue(struct tp_server *s, enum tp_table_list which)
{
    struct tp_table *t = &s->cs.table;
    struct tp_conn *c, *last = tp_table_last(t, which);

    while (has_room(s, which) && (c = tp_table_shift(t, which)) != NULL) {
        /* As after a connection's event: answer what runs here while its
         * bytes are in cache, not after every other connection's. */
        tp_conn__resume(&s->cs, c);
        publish(s, false);
        if (c == last)
            break;      /* the rest were put back during this walk */
    }
}

/* Publishes what was staged for the pool. Work run here (cheap work, or all
 * of it with workers 0) has its replies ready at once, and they may stage
 * more (the next batch of a connection) or give other connections output:
 * go on until nothing is left. Output for other connections (the dirty
 * list) is written when writes is set (the end of the turn), or before if
 * broadcasts have queued many slots (tp_conn__defer_writes). */
static void publish(struct tp_server *s, bool writes)
{
    for (;;) {
        if (!tp_table_is_empty(&s->cs.table, TP_LIST_DIRTY) &&
            (writes || !tp_conn__defer_writes(&s->cs)))
            run_dirty(s);
        if (tp_pool_flush(s->cs.pool) == 0) {
            /* Writing may have queued more (a shutdown_message). */
            if (writes && !tp_table_is_empty(&s->cs.table, TP_LIST_DIRTY))
                continue;
            return;
        }
        take_replies(s, false);
    }
}

/* ---- timers ---- */

static int64_t earliest(int64_t a, int64_t b)
{
    return b < a ? b : a;
}

/* How long epoll_wait may sleep: until the next deadline, or not at all if
 * something is waiting to be picked up again. */
static int wait_ms(struct tp_server *s)
{
    int64_t next = s->cs.now_ms + MAX_WAIT_MS;
    size_t i;

    if (!tp_table_is_empty(&s->cs.table, TP_LIST_PENDING) || s->pool_retry || s->old_retry ||
        (!tp_table_is_empty(&s->cs.table, TP_LIST_WAITING) && !tp_pool_is_full(s->cs.pool)))
        return 0;
    for (i = 0; i < s->nslots; i++) {
        struct tp_listener *l = &s->cs.listeners[i];

        if (!l->in_use)
            continue;
        if (l->ready && l->fd >= 0)
            next = earliest(next, l->paused_until_ms);
        next = earliest(next, tp_conn__next_timer(&s->cs, l));
        if (l->bus != NULL)
            next = earliest(next, tp_bus_next_ms(l->bus));
    }
    next = earliest(next, tp_conn__next_linger_check(&s->cs));
    if (s->stop_state == STOP_DELAY)
        next = earliest(next, s->drain_at_ms);
    if ((s->stop_state == STOP_DELAY || s->stop_state == STOP_GRACEFUL) &&
        s->conf->shutdown_timeout_ms > 0)
        next = earliest(next, s->stop_deadline_ms);
    if (s->opts.tick_ms > 0)
        next = earliest(next, s->next_tick_ms);
    /* COARSE time runs up to a tick behind: round up so we never spin. */
    return next <= s->cs.now_ms ? 0 : (int)(next - s->cs.now_ms) + 1;
}

/* ---- stopping ---- */

static bool serves_drain(const struct tp_listener *l)
{
    return l->env.app->serves_drain;
}

/* Closes the listeners; with all false, not those that serve the drain. */
static void close_listeners(struct tp_server *s, bool all)
{
    size_t i;

    for (i = 0; i < s->nslots; i++)
        if (s->cs.listeners[i].in_use && s->cs.listeners[i].fd >= 0 &&
            (all || !serves_drain(&s->cs.listeners[i]))) {
            close(s->cs.listeners[i].fd);
            s->cs.listeners[i].fd = -1;
        }
}

/* Walks slots rather than lists: closing one connection may touch others.
 * With all false, the connections of listeners that serve the drain go on. */
static void for_each_open(struct tp_server *s, bool now, bool all)
{
    uint32_t i;

    for (i = 0; i < s->cs.table.nslots; i++) {
        struct tp_conn *c = tp_table_at(&s->cs.table, i);

        if (now)
            tp_conn_close(&s->cs, c, TP_CLOSE_SHUTDOWN, true);
        else if (all || c->state != TP_CONN_READING || !serves_drain(c->l))
            tp_conn__stop(&s->cs, c);
    }
}

/* Connections of listeners that do not serve the drain. */
static uint64_t others_live(const struct tp_server *s)
{
    uint64_t n = 0;
    size_t i;

    for (i = 0; i < s->nslots; i++)
        if (s->cs.listeners[i].in_use && !serves_drain(&s->cs.listeners[i]))
            n += s->cs.listeners[i].refs;
    return n;
}

/* The delay is over (or there is none): stop accepting, finish. */
static void begin_drain(struct tp_server *s)
{
    s->stop_state = STOP_GRACEFUL;
    close_listeners(s, false);
    log_(s, TP_LOG_INFO, "shutting down: finishing %llu connections (signal "
         "again to stop at once)", (unsigned long long)s->cs.slot->stats.open);
    for_each_open(s, false, false);
}

/* Once every other connection is gone, the drain's own listeners go too. */
static void end_drain(struct tp_server *s)
{
    if (s->stop_state != STOP_GRACEFUL || s->drain_closed || others_live(s) > 0)
        return;
    s->drain_closed = true;
    close_listeners(s, true);
    for_each_open(s, false, true);
}

static void begin_stop(struct tp_server *s, bool now)
{
    if (s->stop_state == STOP_NOW || (!now && s->stop_state != STOP_NONE))
        return;
    if (s->stop_state == STOP_NONE) {
        TP_METRIC_SET(&s->cs.slot->draining, 1);
        tell(s, TP_SERVER_STOPPING);
        s->drain_at_ms = s->cs.now_ms + s->conf->shutdown_delay_ms;
        s->stop_deadline_ms = s->drain_at_ms + s->conf->shutdown_timeout_ms;
    }
    if (now) {
        s->stop_state = STOP_NOW;
        close_listeners(s, true);
        if (s->cs.slot->stats.open > 0)
            log_(s, TP_LOG_WARN, "stopping now: closing %llu connections",
                 (unsigned long long)s->cs.slot->stats.open);
        for_each_open(s, true, true);
        return;
    }
    if (s->conf->shutdown_delay_ms > 0) {
        s->stop_state = STOP_DELAY;
        log_(s, TP_LOG_INFO, "shutting down in %u ms (shutdown_delay): serving on "
             "meanwhile, /health answers 503", s->conf->shutdown_delay_ms);
        return;
    }
    begin_drain(s);
}

void tp_server_stop(tp_server_t *s, bool graceful)
{
    int want = graceful ? STOP_GRACEFUL : STOP_NOW, have = 0;
    uint64_t one = 1;

    while (have < want && !atomic_compare_exchange_weak(&s->stop_request, &have, want))
        ;
    while (write(s->stop_src.fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

/* The shutdown summary: the counters, as app metrics also serves them. */
static void log_stats(struct tp_server *s)
{
    struct tp_stats snap, *st = &snap;

    bus_stats(s);
    tp_metrics_snapshot(s->cs.slot, &snap);
    log_(s, TP_LOG_INFO, "stats: open %llu, accepted %llu, refused: max_connections %llu "
         "deny %llu per_ip %llu rate %llu, "
         "messages %llu, bytes in %llu out %llu, closed: peer %llu error %llu "
         "oversize %llu idle %llu read_timeout %llu app %llu shutdown %llu slow %llu, "
         "lingering %llu (of %llu, %llu cut short), accept errors %llu (%llu pauses)",
         (unsigned long long)st->open, (unsigned long long)st->accepted,
         (unsigned long long)st->rejected_max_conn, (unsigned long long)st->refused_acl,
         (unsigned long long)st->refused_per_ip, (unsigned long long)st->refused_rate,
         (unsigned long long)st->msgs_in, (unsigned long long)st->bytes_in,
         (unsigned long long)st->bytes_out, (unsigned long long)st->closed_peer,
         (unsigned long long)st->closed_error,
         (unsigned long long)st->closed_oversize,
         (unsigned long long)st->closed_idle,
         (unsigned long long)st->closed_read_timeout,
         (unsigned long long)st->closed_app,
         (unsigned long long)st->closed_shutdown,
         (unsigned long long)st->closed_slow,
         (unsigned long long)st->lingering, (unsigned long long)st->lingered,
         (unsigned long long)st->linger_cut, (unsigned long long)st->accept_errors,
         (unsigned long long)st->accept_pauses);
    if (st->redis_published + st->redis_delivered + st->redis_dropped > 0)
        log_(s, TP_LOG_INFO, "stats: chat_redis: published %llu, from other instances %llu, "
             "dropped %llu", (unsigned long long)st->redis_published,
             (unsigned long long)st->redis_delivered, (unsigned long long)st->redis_dropped);
}

static void on_signals(struct tp_server *s)
{
    struct signalfd_siginfo si;

    while (read(s->signal_src.fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGINT:
        case SIGTERM:
            log_(s, TP_LOG_INFO, "got %s", strsignal((int)si.ssi_signo));
            begin_stop(s, s->stop_state != STOP_NONE);
            break;
        case SIGHUP:
            if (s->opts.event == NULL)
                log_(s, TP_LOG_WARN, "got SIGHUP: nobody here reads a conf to reload");
            else
                s->hup = true;      /* after this turn, at a quiet point */
            break;
        case SIGUSR1:
            tell(s, TP_SERVER_REOPEN);   /* the counters: app metrics */
            break;
        }
    }
}

static void serve_request(struct tp_server *s);

static void on_stop_request(struct tp_server *s)
{
    uint64_t cnt;

    if (read(s->stop_src.fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
        return;
    switch (atomic_load(&s->stop_request)) {
    case STOP_GRACEFUL: begin_stop(s, false); break;
    case STOP_NOW: begin_stop(s, true); break;
    }
    serve_request(s);
}

static bool finished(const struct tp_server *s)
{
    return s->stop_state >= STOP_GRACEFUL && s->cs.table.live == 0 &&
           tp_pool_inflight(s->cs.pool) == 0 && s->old_pools == NULL;
}

/* ---- reload ---- */

static void log_listening(struct tp_server *s, const struct tp_listener *l, const char *how)
{
    log_(s, TP_LOG_INFO, "%slistening on %s (app %s, framing %s)", how, l->name,
         l->env.app->name, tp_conf_framing_name(l->conf->framing));
}

/* Replies of the pools a reload replaced; each goes once nothing of it is
 * in flight. */
static void take_old_replies(struct tp_server *s)
{
    struct old_pool **at = &s->old_pools, *o;
    struct tp_msg_list replies;
    struct tp_msg *m;
    bool again;

    s->old_retry = false;
    while ((o = *at) != NULL) {
        tp_msg_list_init(&replies);
        tp_pool_drain(o->pool, true, &replies, &again);
        while ((m = tp_msg_list_pop(&replies)) != NULL)
            tp_conn__reply(&s->cs, m);
        s->old_retry |= again;
        if (tp_pool_inflight(o->pool) > 0 || again) {
            at = &o->next;
            continue;
        }
        *at = o->next;
        tp_pool_destroy(o->pool);
        free(o);
        log_(s, TP_LOG_DEBUG, "reload: the old workers have finished");
    }
}

/* Frees the listener slots a reload left behind once their last connection
 * is gone. */
static void sweep_retired(struct tp_server *s)
{
    size_t i;

    for (i = 0; i < s->nslots; i++) {
        struct tp_listener *l = &s->cs.listeners[i];

        if (l->in_use && l->retired && l->refs == 0) {
            log_(s, TP_LOG_DEBUG, "%s: the last connection of its old settings is gone",
                 l->name);
            slot_free(s, l);
        }
    }
}

/* What a reload will do, worked out before anything changes. */
struct plan {
    struct tp_listener *to[TP_CONF_MAX_LISTEN];  /* the slot of new listener i */
    int moved[TP_CONF_MAX_LISTEN];    /* slot whose socket it takes, or -1 */
    bool fresh[TP_CONF_MAX_LISTEN];   /* a slot made by this reload */
    bool kept[TP_CONF_MAX_LISTEN];    /* by old active index: still in the conf */
    tp_pool_t *pool;                  /* a new pool, or NULL to keep the pool */
    struct tp_conf *conf;             /* our copy of the new conf */
};

static bool same_addr(const struct tp_listen_conf *a, const struct tp_listen_conf *b)
{
    return a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

/* Whether a connection would see any difference between a and b: all but
 * where they were written. */
static bool same_settings(const struct tp_listen_conf *a, const struct tp_listen_conf *b)
{
    static struct tp_listen_conf x, y;    /* loop thread only; too big for a frame */

    memcpy(&x, a, sizeof(x));
    memcpy(&y, b, sizeof(y));
    memset(x.file, 0, sizeof(x.file));
    memset(y.file, 0, sizeof(y.file));
    x.line = y.line = x.framing_line = y.framing_line = 0;
    return memcmp(&x, &y, sizeof(x)) == 0;
}

/* The old active listener (index into s->active) on lc's address not yet
 * matched, or -1. */
static int match(struct tp_server *s, const struct tp_listen_conf *lc, const bool *kept)
{
    size_t j;

    for (j = 0; j < s->nactive; j++)
        if (!kept[j] && same_addr(s->cs.listeners[s->active[j]].conf, lc))
            return (int)j;
    return -1;
}

static void plan_undo(struct tp_server *s, struct plan *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (p->fresh[i])
            slot_free(s, p->to[i]);
    if (p->pool != NULL)
        tp_pool_destroy(p->pool);     /* it never had work; closes its eventfd */
    free(p->conf);
}

/* Sets up everything conf needs that can fail: slots, sockets, app state, a
 * pool. Nothing the loop serves changes yet. */
static int plan_make(struct tp_server *s, const struct tp_conf *conf,
                     const struct tp_app *const *apps, struct plan *p,
                     char *err, size_t errlen)
{
    struct tp_listener *old;
    size_t i;
    int j, rc = -ENOMEM;

    memset(p, 0, sizeof(*p));
    for (i = 0; i < conf->nlisten; i++) {
        const struct tp_listen_conf *lc = &conf->listen[i];

        p->moved[i] = -1;
        if ((j = match(s, lc, p->kept)) >= 0) {
            p->kept[j] = true;
            old = &s->cs.listeners[s->active[j]];
            if (same_settings(old->conf, lc) && old->env.app == apps[i]) {
                p->to[i] = old;
                continue;
            }
            p->moved[i] = old->index;
        }
        if ((p->to[i] = slot_new(s)) == NULL) {
            snprintf(err, errlen, "too many old listener settings still have "
                     "connections (%d); try again once they have closed", LISTEN_SLOTS);
            rc = -EBUSY;
            goto out_undo;
        }
        p->fresh[i] = true;
        rc = slot_setup(s, p->to[i], lc, apps[i],
                        p->moved[i] >= 0 ? s->cs.listeners[p->moved[i]].fd : -1, err, errlen);
        if (rc < 0) {
            i++;
            goto out_undo;
        }
    }
    if (tp_conf_workers(conf) != tp_conf_workers(s->conf) || conf->queue_max != s->conf->queue_max) {
        if ((p->pool = pool_for(s, conf)) == NULL ||
            (tp_pool_event_fd(p->pool) >= 0 &&
             watch(s, tp_pool_event_fd(p->pool), &s->pool_src) < 0)) {
            rc = -errno;
            snprintf(err, errlen, "cannot start %u workers: %s", tp_conf_workers(conf),
                     strerror(errno));
            goto out_undo;
        }
    }
    if ((p->conf = malloc(sizeof(*p->conf))) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out_undo;
    }
    memcpy(p->conf, conf, sizeof(*conf));
    return 0;

out_undo:
    plan_undo(s, p, i);
    return rc;
}

/* A changed listener: new connections get l's settings; the socket moves
 * from the slot that had them, which keeps its connections. Cannot fail. */
static void move_socket(struct tp_server *s, struct tp_listener *l, struct tp_listener *from)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = l };
    int on = l->conf->tcp_nodelay;

    l->fd = from->fd;
    from->fd = -1;
    from->retired = true;
    /* Same fd, same registration: only where its events point changes. */
    epoll_ctl(s->cs.epfd, EPOLL_CTL_MOD, l->fd, &ev);
    l->ready = true;              /* an edge the old slot had not taken */
    if (l->conf->backlog != from->conf->backlog)
        listen(l->fd, l->conf->backlog);
    if (l->conf->tcp_nodelay != from->conf->tcp_nodelay)
        setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (l->conf->reuseport != from->conf->reuseport)
        log_(s, TP_LOG_WARN, "%s:%d: reuseport: a bound socket keeps what it had "
             "(%s); changing it needs a restart", l->conf->file, l->conf->line,
             from->conf->reuseport ? "on" : "off");
    log_(s, TP_LOG_INFO, "reload: %s: new settings for new connections; %llu open "
         "keep the old ones", l->name, (unsigned long long)from->refs);
}

/* A listener the conf no longer has: it stops accepting and its connections
 * finish as on a graceful stop (what arrived runs, replies are written, a
 * lingering close). */
static void remove_listener(struct tp_server *s, struct tp_listener *l)
{
    uint32_t i;

    close(l->fd);
    l->fd = -1;
    l->retired = true;
    log_(s, TP_LOG_INFO, "reload: %s: no longer in the conf; not accepting, %llu "
         "connections finish", l->name, (unsigned long long)l->refs);
    for (i = 0; i < s->cs.table.nslots; i++) {
        struct tp_conn *c = tp_table_at(&s->cs.table, i);

        if (c->state != TP_CONN_FREE && c->l == l)
            tp_conn__stop(&s->cs, c);
    }
}

static void swap_pool(struct tp_server *s, tp_pool_t *pool, const struct tp_conf *conf)
{
    struct old_pool *o = malloc(sizeof(*o));
    tp_pool_t *old = s->cs.pool;

    log_(s, TP_LOG_INFO, "reload: workers %u -> %u, queue_max %llu (the old workers "
         "finish the %zu batches they hold)", tp_conf_workers(s->conf), tp_conf_workers(conf),
         (unsigned long long)conf->queue_max, tp_pool_inflight(old));
    s->cs.pool = pool;
    if (tp_pool_inflight(old) == 0 || o == NULL) {
        /* Nothing of it in flight (an inline pool never has any after
         * publish()). Out of memory, destroying drops what it holds: the
         * connections waiting for it would never finish, so wait instead. */
        while (tp_pool_inflight(old) > 0) {
            struct tp_msg_list replies;
            struct tp_msg *m;
            bool again;

            tp_msg_list_init(&replies);
            tp_pool_drain(old, true, &replies, &again);
            while ((m = tp_msg_list_pop(&replies)) != NULL)
                tp_conn__reply(&s->cs, m);
            if (tp_pool_inflight(old) > 0)
                usleep(1000);
        }
        tp_pool_destroy(old);
        free(o);
        return;
    }
    o->pool = old;
    o->next = s->old_pools;
    s->old_pools = o;
}

/* Serves what p prepared. Nothing here can fail. */
static void plan_commit(struct tp_server *s, struct plan *p)
{
    const struct tp_conf *conf = p->conf;
    size_t i;

    /* Staged work goes out on the pool it was staged for. */
    publish(s, true);
    for (i = 0; i < conf->nlisten; i++) {
        if (p->moved[i] >= 0)
            move_socket(s, p->to[i], &s->cs.listeners[p->moved[i]]);
        else if (p->fresh[i])
            log_listening(s, p->to[i], "reload: ");
    }
    for (i = 0; i < s->nactive; i++)
        if (!p->kept[i])
            remove_listener(s, &s->cs.listeners[s->active[i]]);
    for (i = 0; i < conf->nlisten; i++)
        s->active[i] = p->to[i]->index;
    s->nactive = conf->nlisten;
    if (p->pool != NULL)
        swap_pool(s, p->pool, p->conf);
    s->max_conns = conf->max_connections;
    s->cs.log_level = conf->log_level;
    free(s->conf);
    s->conf = p->conf;
    sweep_retired(s);
    publish(s, true);
}

static int apply_reload(struct tp_server *s, const struct tp_conf *conf,
                        const struct tp_app *const *apps, char *err, size_t errlen)
{
    struct plan *p;
    int rc;

    if (s->stop_state != STOP_NONE) {
        snprintf(err, errlen, "the server is stopping");
        return -ESHUTDOWN;
    }
    if (conf->nlisten > TP_CONF_MAX_LISTEN) {
        snprintf(err, errlen, "more than %d listen blocks", TP_CONF_MAX_LISTEN);
        return -EINVAL;
    }
    if ((p = malloc(sizeof(*p))) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = plan_make(s, conf, apps, p, err, errlen);
    if (rc == 0)
        plan_commit(s, p);
    free(p);
    return rc;
}

/* Loop thread: applies a reload another thread asked for. */
static void serve_request(struct tp_server *s)
{
    struct reload_req *r;

    pthread_mutex_lock(&s->lock);
    r = s->req;
    s->req = NULL;
    pthread_mutex_unlock(&s->lock);
    if (r == NULL)
        return;
    r->rc = apply_reload(s, r->conf, r->apps, r->err, r->errlen);
    pthread_mutex_lock(&s->lock);
    r->done = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* The loop is done: a reload asked for now is refused. */
static void leave_loop(struct tp_server *s)
{
    pthread_mutex_lock(&s->lock);
    s->looping = false;
    if (s->req != NULL) {
        snprintf(s->req->err, s->req->errlen, "the server has stopped");
        s->req->rc = -ESHUTDOWN;
        s->req->done = true;
        s->req = NULL;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
}

int tp_server_reload(tp_server_t *s, const struct tp_conf *conf,
                     const struct tp_app *const *apps, char *err, size_t errlen)
{
    struct reload_req r = { conf, apps, err, errlen, 0, false };
    uint64_t one = 1;

    pthread_mutex_lock(&s->lock);
    if (!s->looping || pthread_equal(s->loop_thread, pthread_self())) {
        pthread_mutex_unlock(&s->lock);
        return apply_reload(s, conf, apps, err, errlen);
    }
    while (s->req != NULL && s->looping)      /* one at a time */
        pthread_cond_wait(&s->cond, &s->lock);
    if (!s->looping) {
        pthread_mutex_unlock(&s->lock);
        snprintf(err, errlen, "the server has stopped");
        return -ESHUTDOWN;
    }
    s->req = &r;
    while (write(s->stop_src.fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    while (!r.done)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    return r.rc;
}

/* ---- the loop ---- */

static void on_event(struct tp_server *s, const struct epoll_event *ev, bool *pool_ready)
{
    switch (*(const uint8_t *)ev->data.ptr) {
    case TP_SRC_CONN:
        tp_conn__event(&s->cs, ev->data.ptr, ev->events);
        /* Answer now what runs here, while the connection is in cache, and
         * let the workers start on the rest. */
        publish(s, false);
        break;
    case TP_SRC_LISTENER:
        ((struct tp_listener *)ev->data.ptr)->ready = true;
        break;
    case TP_SRC_POOL:
        *pool_ready = true;
        break;
    case TP_SRC_SIGNAL:
        on_signals(s);
        break;
    case TP_SRC_STOP:
        on_stop_request(s);
        break;
    case TP_SRC_BUS:
        tp_bus_event(ev->data.ptr, ev->events);
        break;
    }
}

static void turn(struct tp_server *s, bool pool_ready)
{
    size_t i;

    accept_ready(s);
    if (pool_ready || s->pool_retry || tp_pool_inflight(s->cs.pool) > 0)
        take_replies(s, pool_ready);
    tp_conn__new_share(&s->cs);        /* the pending list's share */
    run_queue(s, TP_LIST_PENDING);
    run_queue(s, TP_LIST_WAITING);
    take_old_replies(s);
    for (i = 0; i < s->nslots; i++) {
        if (!s->cs.listeners[i].in_use)
            continue;
        tp_conn__expire(&s->cs, &s->cs.listeners[i]);
        if (s->cs.listeners[i].bus != NULL)
            tp_bus_tick(s->cs.listeners[i].bus, s->cs.now_ms);
    }
    tp_conn__check_lingering(&s->cs);
    sweep_retired(s);
    if (s->stop_state == STOP_DELAY && s->cs.now_ms >= s->drain_at_ms)
        begin_drain(s);
    if ((s->stop_state == STOP_DELAY || s->stop_state == STOP_GRACEFUL) &&
        s->conf->shutdown_timeout_ms > 0 && s->cs.now_ms >= s->stop_deadline_ms) {
        log_(s, TP_LOG_WARN, "shutdown_timeout passed");
        begin_stop(s, true);
    }
    end_drain(s);
    publish(s, true);
    TP_STAT_SET(&s->cs, queued_bytes, tp_pool_backlog(s->cs.pool));
}

static void log_start(struct tp_server *s)
{
    size_t i;

    for (i = 0; i < s->nactive; i++)
        log_listening(s, &s->cs.listeners[s->active[i]], "");
}

int tp_server_run(tp_server_t *s)
{
    struct epoll_event ev[MAX_EVENTS];
    bool pool_ready;
    int n, i;

    log_start(s);
    set_clock(&s->cs);
    s->next_tick_ms = s->cs.now_ms + s->opts.tick_ms;
    pthread_mutex_lock(&s->lock);
    s->loop_thread = pthread_self();
    s->looping = true;
    pthread_mutex_unlock(&s->lock);
    tell(s, TP_SERVER_READY);
    while (!finished(s)) {
        n = epoll_wait(s->cs.epfd, ev, MAX_EVENTS, wait_ms(s));
        if (n < 0 && errno != EINTR) {
            n = -errno;
            leave_loop(s);
            return n;
        }
        set_clock(&s->cs);
        tp_conn__new_share(&s->cs);        /* the events' share */
        pool_ready = false;
        for (i = 0; i < n; i++)
            on_event(s, &ev[i], &pool_ready);
        turn(s, pool_ready);
        tp_conns__time_written(&s->cs);
        if (s->hup) {
            s->hup = false;
            if (s->stop_state == STOP_NONE)
                tell(s, TP_SERVER_RELOAD);
        }
        if (s->opts.tick_ms > 0 && s->cs.now_ms >= s->next_tick_ms) {
            s->next_tick_ms = s->cs.now_ms + s->opts.tick_ms;
            bus_stats(s);
            tell(s, TP_SERVER_TICK);
        }
    }
    close_listeners(s, true);
    leave_loop(s);
    log_stats(s);
    return 0;
}

/* ---- the rest of the interface ---- */

uint16_t tp_server_port(const tp_server_t *s, size_t i)
{
    return i < s->nactive ? s->cs.listeners[s->active[i]].port : 0;
}

void tp_server_stats(const tp_server_t *s, struct tp_stats *out)
{
    tp_metrics_snapshot(s->cs.slot, out);
}

void tp_server_destroy(tp_server_t *s)
{
    size_t i;

    if (s == NULL)
        return;
    /* After a normal run every slot is free. Otherwise close what is left;
     * app->close calls staged now die with the pool, unrun. */
    if (s->cs.table.chunks != NULL && s->cs.pool != NULL)
        for_each_open(s, true, true);
    tp_pool_destroy(s->cs.pool);
    while (s->old_pools != NULL) {
        struct old_pool *o = s->old_pools;

        s->old_pools = o->next;
        tp_pool_destroy(o->pool);
        free(o);
    }
    close_listeners(s, true);
    for (i = s->nslots; i-- > 0;)
        if (s->cs.listeners[i].in_use)
            slot_free(s, &s->cs.listeners[i]);
    if (s->stop_src.fd >= 0)
        close(s->stop_src.fd);
    if (s->cs.epfd >= 0)
        close(s->cs.epfd);
    tp_table_fini(&s->cs.table);
    tp_msg_cache_fini(&s->cs.cache);
    free(s->cs.listeners);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->conf);
    tp_metrics_destroy(s->own_metrics);
    free(s);
}
