/* tp_reactor.c - the event loop: epoll, accept, timers, signals, shutdown.
 *
 * One loop turn: wait for events; read every connection that has an edge;
 * accept; take the pool's replies (writing each while its connection is in
 * cache); go back to connections that stopped early; close what timed out;
 * write the connections that got output from others; then publish all the
 * work this turn staged, so none of it waits for the next turn. Work is also
 * published right after each connection's read: what is cheap enough runs
 * and is answered there (all of it with workers 0), while the connection is
 * in cache; the workers start on the rest. */
#include "tp_conn.h"

#include <errno.h>
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
#define INLINE_MAX_NS 3000       /* work expected to take less runs on the reactor
                                    thread: a hand-off to a worker (futex wake,
                                    eventfd wake, the message's cache lines moving
                                    between cores) costs more than that here */

enum { STOP_NONE, STOP_GRACEFUL, STOP_NOW };

struct tp_event_src {
    uint8_t source;               /* enum tp_source */
    int fd;
};

struct tp_server {
    const struct tp_conf *conf;
    struct tp_server_opts opts;
    struct tp_conns cs;           /* connections, their table, pool, stats,
                                     the epoll fd and the listeners */
    size_t nlisten;
    bool pool_retry;              /* drain caught a worker mid-enqueue */
    uint32_t max_conns;
    struct tp_event_src pool_src, signal_src, stop_src;
    atomic_int stop_request;      /* any thread writes, reactor reads: 0, 1
                                     graceful, 2 now */
    int stop_state;               /* reactor: how far shutdown has gone */
    int64_t stop_deadline_ms;
    int64_t last_accept_warn_ms;
    int64_t next_tick_ms;         /* opts.tick_ms: when TP_SERVER_TICK is due */
};

#define log_(s, ...) tp_conns__log(&(s)->cs, __VA_ARGS__)

static void tell(struct tp_server *s, enum tp_server_event ev)
{
    if (s->opts.event != NULL)
        s->opts.event(s->opts.event_arg, ev, &s->cs.stats);
}

static int64_t clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int watch(struct tp_server *s, int fd, void *ptr)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = ptr };

    return epoll_ctl(s->cs.epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* ---- set-up ---- */

static void work(void *arg, struct tp_msg *msg, struct tp_msg_list *out)
{
    struct tp_server *s = arg;

    tp_call_run(&s->cs.listeners[msg->listener].env, msg, out);
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

static int open_listener(struct tp_server *s, size_t i, char *err, size_t errlen)
{
    const struct tp_listen_conf *lc = &s->conf->listen[i];
    struct tp_listener *l = &s->cs.listeners[i];
    const char *what;
    char where[TP_CONF_PATH_MAX + 16] = "";
    int fd, rc;

    if (lc->line > 0)
        snprintf(where, sizeof(where), "%s:%d: ", lc->file, lc->line);
    l->source = TP_SRC_LISTENER;
    l->index = (uint16_t)i;
    l->conf = lc;
    l->env = (struct tp_call_env){ s->opts.apps[i], NULL, lc->framing, lc->max_message };
    CDS_INIT_LIST_HEAD(&l->conns);
    CDS_INIT_LIST_HEAD(&l->idle);
    CDS_INIT_LIST_HEAD(&l->partial);
    if (l->env.app->framings != 0 && !(l->env.app->framings & (1u << lc->framing))) {
        snprintf(err, errlen, "%sapp %s does not work with framing %s", where,
                 l->env.app->name, tp_conf_framing_name(lc->framing));
        return -EINVAL;
    }
    fd = tp_sock_listen(lc, &what);
    if (fd < 0) {
        snprintf(err, errlen, "%slisten %s: %s: %s", where, lc->addr_text, what,
                 strerror(-fd));
        return fd;
    }
    l->fd = fd;
    l->port = tp_sock_port(fd);
    if ((lc->max_conns_per_ip > 0 || lc->accept_rate_per_ip > 0) &&
        (l->ips = tp_ip_table_create(lc->max_conns_per_ip, lc->accept_rate_per_ip)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    set_name(l);
    l->idle_slack_ms = lc->idle_timeout_ms / 16 < 1000 ? lc->idle_timeout_ms / 16 : 1000;
    if ((rc = watch(s, fd, l)) < 0) {
        snprintf(err, errlen, "epoll_ctl: %s", strerror(-rc));
        return rc;
    }
    if (l->env.app->init != NULL && (rc = l->env.app->init(&l->env.state, lc)) < 0) {
        snprintf(err, errlen, "%sapp %s: cannot start: %s", where,
                 l->env.app->name, strerror(-rc));
        return rc;
    }
    l->app_started = true;
    return 0;
}

static int open_wakeups(struct tp_server *s, char *err, size_t errlen)
{
    unsigned n = tp_conf_workers(s->conf);
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
    s->cs.pool = tp_pool_create(n, work, s, &(struct tp_pool_opts){
        .backlog_max = s->conf->queue_max, .nclasses = (unsigned)s->nlisten,
        .inline_max_ns = s->opts.workers_only ? 0 : INLINE_MAX_NS });
    if (s->cs.pool == NULL) {
        snprintf(err, errlen, "cannot start %u workers: %s", n, strerror(errno));
        return -1;
    }
    s->pool_src = (struct tp_event_src){ TP_SRC_POOL, tp_pool_event_fd(s->cs.pool) };
    if (s->pool_src.fd >= 0 && (rc = watch(s, s->pool_src.fd, &s->pool_src)) < 0) {
        snprintf(err, errlen, "epoll_ctl: %s", strerror(-rc));
        return rc;
    }
    return 0;
}

tp_server_t *tp_server_create(const struct tp_conf *conf,
                              const struct tp_server_opts *opts,
                              char *err, size_t errlen)
{
    struct tp_server *s = calloc(1, sizeof(*s));
    size_t i;

    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->conf = conf;
    s->opts = *opts;
    s->max_conns = conf->max_connections;
    s->stop_src.fd = -1;
    s->cs.now_ms = clock_ms();
    s->cs.log = opts->log;
    s->cs.log_arg = opts->log_arg;
    s->cs.log_level = conf->log_level;
    CDS_INIT_LIST_HEAD(&s->cs.linger);
    tp_msg_cache_init(&s->cs.cache);
    s->cs.epfd = epoll_create1(EPOLL_CLOEXEC);
    s->cs.listeners = calloc(conf->nlisten, sizeof(*s->cs.listeners));
    if (s->cs.epfd < 0 || s->cs.listeners == NULL ||
        tp_table_init(&s->cs.table, conf->max_connections) < 0) {
        snprintf(err, errlen, "cannot set up: %s", strerror(errno));
        goto out_destroy;
    }
    for (i = 0; i < conf->nlisten; i++)
        s->cs.listeners[i].fd = -1;
    for (s->nlisten = 0; s->nlisten < conf->nlisten; s->nlisten++)
        if (open_listener(s, s->nlisten, err, errlen) < 0) {
            s->nlisten++;
            goto out_destroy;
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
        refuse = s->cs.stats.open >= s->max_conns;
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

    for (i = 0; i < s->nlisten; i++) {
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

static void run_list(struct tp_server *s, enum tp_table_list which)
{
    struct tp_conn *c, *walk = tp_table_take(&s->cs.table, which);

    if (which == TP_LIST_DIRTY)
        s->cs.refs_unwritten = 0;
    while ((c = tp_table_pop(&walk, which)) != NULL) {
        if (which == TP_LIST_DIRTY) {
            tp_conn__flush(&s->cs, c);
        } else {
            /* As after a connection's event: answer what runs here while
             * its bytes are in cache, not after every other connection's. */
            tp_conn__resume(&s->cs, c);
            publish(s, false);
        }
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
            run_list(s, TP_LIST_DIRTY);
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

    if (!tp_table_is_empty(&s->cs.table, TP_LIST_PENDING) || s->pool_retry ||
        (!tp_table_is_empty(&s->cs.table, TP_LIST_WAITING) && !tp_pool_is_full(s->cs.pool)))
        return 0;
    for (i = 0; i < s->nlisten; i++) {
        struct tp_listener *l = &s->cs.listeners[i];

        if (l->ready && l->fd >= 0)
            next = earliest(next, l->paused_until_ms);
        next = earliest(next, tp_conn__next_timer(&s->cs, l));
    }
    next = earliest(next, tp_conn__next_linger_check(&s->cs));
    if (s->stop_state == STOP_GRACEFUL && s->conf->shutdown_timeout_ms > 0)
        next = earliest(next, s->stop_deadline_ms);
    if (s->opts.tick_ms > 0)
        next = earliest(next, s->next_tick_ms);
    /* COARSE time runs up to a tick behind: round up so we never spin. */
    return next <= s->cs.now_ms ? 0 : (int)(next - s->cs.now_ms) + 1;
}

/* ---- stopping ---- */

static void close_listeners(struct tp_server *s)
{
    size_t i;

    for (i = 0; i < s->nlisten; i++)
        if (s->cs.listeners[i].fd >= 0) {
            close(s->cs.listeners[i].fd);
            s->cs.listeners[i].fd = -1;
        }
}

/* Walks slots rather than lists: closing one connection may touch others. */
static void for_each_open(struct tp_server *s, bool now)
{
    uint32_t i;

    for (i = 0; i < s->cs.table.nslots; i++) {
        struct tp_conn *c = tp_table_at(&s->cs.table, i);

        if (now)
            tp_conn_close(&s->cs, c, TP_CLOSE_SHUTDOWN, true);
        else
            tp_conn__stop(&s->cs, c);
    }
}

static void begin_stop(struct tp_server *s, int level)
{
    if (level <= s->stop_state)
        return;
    close_listeners(s);
    if (s->stop_state == STOP_NONE)
        tell(s, TP_SERVER_STOPPING);
    if (level == STOP_GRACEFUL) {
        s->stop_state = STOP_GRACEFUL;
        s->stop_deadline_ms = s->cs.now_ms + s->conf->shutdown_timeout_ms;
        log_(s, TP_LOG_INFO, "shutting down: finishing %llu connections (signal "
             "again to stop at once)", (unsigned long long)s->cs.stats.open);
        for_each_open(s, false);
        return;
    }
    s->stop_state = STOP_NOW;
    if (s->cs.stats.open > 0)
        log_(s, TP_LOG_WARN, "stopping now: closing %llu connections",
             (unsigned long long)s->cs.stats.open);
    for_each_open(s, true);
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

static void log_stats(struct tp_server *s)
{
    const struct tp_stats *st = &s->cs.stats;

    log_(s, TP_LOG_INFO, "stats: open %llu, accepted %llu, refused: max_connections %llu "
         "deny %llu per_ip %llu rate %llu, "
         "messages %llu, bytes in %llu out %llu, closed: peer %llu error %llu "
         "oversize %llu idle %llu read_timeout %llu app %llu shutdown %llu slow %llu, "
         "lingering %llu (of %llu, %llu cut short)",
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
         (unsigned long long)st->linger_cut);
}

static void on_signals(struct tp_server *s)
{
    struct signalfd_siginfo si;

    while (read(s->signal_src.fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGINT:
        case SIGTERM:
            log_(s, TP_LOG_INFO, "got %s", strsignal((int)si.ssi_signo));
            begin_stop(s, s->stop_state == STOP_NONE ? STOP_GRACEFUL : STOP_NOW);
            break;
        case SIGHUP:
            log_(s, TP_LOG_WARN, "got SIGHUP: reload is not supported yet; "
                 "restart to apply a new conf");
            break;
        case SIGUSR1:
            tell(s, TP_SERVER_REOPEN);
            log_stats(s);
            break;
        }
    }
}

static void on_stop_request(struct tp_server *s)
{
    uint64_t cnt;

    if (read(s->stop_src.fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
        return;
    begin_stop(s, atomic_load(&s->stop_request));
}

static bool finished(const struct tp_server *s)
{
    return s->stop_state != STOP_NONE && s->cs.table.live == 0 &&
           tp_pool_inflight(s->cs.pool) == 0;
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
    }
}

static void turn(struct tp_server *s, bool pool_ready)
{
    size_t i;

    accept_ready(s);
    if (pool_ready || s->pool_retry || tp_pool_inflight(s->cs.pool) > 0)
        take_replies(s, pool_ready);
    run_list(s, TP_LIST_PENDING);
    if (!tp_pool_is_full(s->cs.pool))
        run_list(s, TP_LIST_WAITING);
    for (i = 0; i < s->nlisten; i++)
        tp_conn__expire(&s->cs, &s->cs.listeners[i]);
    tp_conn__check_lingering(&s->cs);
    if (s->stop_state == STOP_GRACEFUL && s->conf->shutdown_timeout_ms > 0 &&
        s->cs.now_ms >= s->stop_deadline_ms) {
        log_(s, TP_LOG_WARN, "shutdown_timeout passed");
        begin_stop(s, STOP_NOW);
    }
    publish(s, true);
}

static void log_start(struct tp_server *s)
{
    size_t i;

    for (i = 0; i < s->nlisten; i++)
        log_(s, TP_LOG_INFO, "listening on %s (app %s, framing %s)",
             s->cs.listeners[i].name, s->cs.listeners[i].env.app->name,
             tp_conf_framing_name(s->cs.listeners[i].conf->framing));
}

int tp_server_run(tp_server_t *s)
{
    struct epoll_event ev[MAX_EVENTS];
    bool pool_ready;
    int n, i;

    log_start(s);
    s->cs.now_ms = clock_ms();
    s->next_tick_ms = s->cs.now_ms + s->opts.tick_ms;
    tell(s, TP_SERVER_READY);
    while (!finished(s)) {
        n = epoll_wait(s->cs.epfd, ev, MAX_EVENTS, wait_ms(s));
        if (n < 0 && errno != EINTR)
            return -errno;
        s->cs.now_ms = clock_ms();
        tp_conn__new_turn(&s->cs);
        pool_ready = false;
        for (i = 0; i < n; i++)
            on_event(s, &ev[i], &pool_ready);
        turn(s, pool_ready);
        if (s->opts.tick_ms > 0 && s->cs.now_ms >= s->next_tick_ms) {
            s->next_tick_ms = s->cs.now_ms + s->opts.tick_ms;
            tell(s, TP_SERVER_TICK);
        }
    }
    log_stats(s);
    return 0;
}

/* ---- the rest of the interface ---- */

uint16_t tp_server_port(const tp_server_t *s, size_t i)
{
    return i < s->nlisten ? s->cs.listeners[i].port : 0;
}

void tp_server_stats(const tp_server_t *s, struct tp_stats *out)
{
    const uint64_t *from = (const uint64_t *)&s->cs.stats;
    uint64_t *to = (uint64_t *)out;
    size_t i;

    for (i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
}

void tp_server_destroy(tp_server_t *s)
{
    size_t i;

    if (s == NULL)
        return;
    /* After a normal run every slot is free. Otherwise close what is left;
     * app->close calls staged now die with the pool, unrun. */
    if (s->cs.table.chunks != NULL && s->cs.pool != NULL)
        for_each_open(s, true);
    tp_pool_destroy(s->cs.pool);
    close_listeners(s);
    for (i = 0; i < s->nlisten; i++) {
        if (s->cs.listeners[i].app_started && s->cs.listeners[i].env.app->fini != NULL)
            s->cs.listeners[i].env.app->fini(s->cs.listeners[i].env.state);
        tp_ip_table_destroy(s->cs.listeners[i].ips);
    }
    if (s->stop_src.fd >= 0)
        close(s->stop_src.fd);
    if (s->cs.epfd >= 0)
        close(s->cs.epfd);
    tp_table_fini(&s->cs.table);
    tp_msg_cache_fini(&s->cs.cache);
    free(s->cs.listeners);
    free(s);
}
