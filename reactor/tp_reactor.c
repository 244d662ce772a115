/* tp_reactor.c - the event loop: epoll, accept, timers, signals, shutdown.
 *
 * One loop turn: wait for events; read every connection that has an edge;
 * accept; take the workers' replies; go back to connections that stopped
 * early; publish this turn's work to the workers in one burst; write every
 * connection that got output, once; close what timed out. */
#include "internal.h"

#include <errno.h>
#include <signal.h>
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

enum { STOP_NONE, STOP_GRACEFUL, STOP_NOW };

void tp_server__log(struct tp_server *s, enum tp_log_level level,
                    const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    if (s->opts.log == NULL || level > s->conf->log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    s->opts.log(s->opts.log_arg, level, buf);
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

    return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* ---- set-up ---- */

static void work(void *arg, struct tp_msg *msg, struct tp_msg_list *out)
{
    struct tp_server *s = arg;

    tp_call_run(&s->listeners[msg->listener].env, msg, out);
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
    struct tp_listener *l = &s->listeners[i];
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
    fd = tp_sock_listen(lc, &what);
    if (fd < 0) {
        snprintf(err, errlen, "%slisten %s: %s: %s", where, lc->addr_text, what,
                 strerror(-fd));
        return fd;
    }
    l->fd = fd;
    l->port = tp_sock_port(fd);
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
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = s->conf->workers < 0 ? (unsigned)(ncpu > 0 ? ncpu : 1)
                                      : (unsigned)s->conf->workers;
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
    if (n == 0)
        return 0;
    s->pool = tp_pool_create(n, work, s, s->conf->queue_max);
    if (s->pool == NULL) {
        snprintf(err, errlen, "cannot start %u workers: %s", n, strerror(errno));
        return -1;
    }
    s->pool_src = (struct tp_event_src){ TP_SRC_POOL, tp_pool_event_fd(s->pool) };
    if ((rc = watch(s, s->pool_src.fd, &s->pool_src)) < 0) {
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
    s->now_ms = clock_ms();
    s->stop_src.fd = -1;
    tp_msg_cache_init(&s->cache);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->listeners = calloc(conf->nlisten, sizeof(*s->listeners));
    if (s->epfd < 0 || s->listeners == NULL || tp_conn__table_init(s) < 0) {
        snprintf(err, errlen, "cannot set up: %s", strerror(errno));
        goto out_destroy;
    }
    for (i = 0; i < conf->nlisten; i++)
        s->listeners[i].fd = -1;
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
    if (s->now_ms - s->last_accept_warn_ms < WARN_EVERY_MS &&
        s->last_accept_warn_ms != 0)
        return;
    s->last_accept_warn_ms = s->now_ms;
    tp_server__log(s, TP_LOG_WARN, "%s: %s", l->name, why);
}

static bool accept_one(struct tp_server *s, struct tp_listener *l)
{
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd >= 0) {
        if (s->stats.open >= s->max_conns) {
            close(fd);
            TP_STAT_ADD(s, rejected_max_conn, 1);
            warn_accept(s, l, "max_connections reached, refusing connections");
        } else {
            tp_conn__open(s, l, fd);
        }
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
        TP_STAT_ADD(s, accept_errors, 1);
        l->paused_until_ms = s->now_ms + ACCEPT_PAUSE_MS;
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
        struct tp_listener *l = &s->listeners[i];

        if (!l->ready || l->fd < 0 || s->now_ms < l->paused_until_ms)
            continue;
        for (n = 0; n < ACCEPT_BUDGET && accept_one(s, l); n++)
            ;
    }
}

/* ---- the connections to come back to ---- */

static void run_pending(struct tp_server *s)
{
    struct tp_conn *c, *list = s->pending;

    s->pending = NULL;
    while ((c = list) != NULL) {
        list = c->next_pending;
        c->flags &= (uint16_t)~TP_CONN_PENDING;
        tp_conn__resume(s, c);
    }
}

static void run_waiting(struct tp_server *s)
{
    struct tp_conn *c, *list = s->waiting;

    if (s->pool != NULL && tp_pool_is_full(s->pool))
        return;
    s->waiting = NULL;
    while ((c = list) != NULL) {
        list = c->next_wait;
        c->flags &= (uint16_t)~TP_CONN_WAITING;
        tp_conn__resume(s, c);
    }
}

static void run_dirty(struct tp_server *s)
{
    struct tp_conn *c, *list;

    while ((list = s->dirty) != NULL) {
        s->dirty = NULL;
        while ((c = list) != NULL) {
            list = c->next_dirty;
            c->flags &= (uint16_t)~TP_CONN_DIRTY;
            tp_conn__flush(s, c);
        }
    }
}

static void drain_pool(struct tp_server *s, bool clear)
{
    struct tp_msg_list replies;
    struct tp_msg *m;

    tp_msg_list_init(&replies);
    tp_pool_drain(s->pool, clear, &replies, &s->pool_retry);
    while ((m = tp_msg_list_pop(&replies)) != NULL)
        tp_conn__deliver(s, m);
}

/* ---- timers: per-listener lists in deadline order, so O(1) each ---- */

static void expire_listener(struct tp_server *s, struct tp_listener *l)
{
    const struct tp_listen_conf *lc = l->conf;
    struct tp_conn *c;

    while (lc->idle_timeout_ms > 0 && !cds_list_empty(&l->idle)) {
        c = cds_list_first_entry(&l->idle, struct tp_conn, idle);
        if (s->now_ms - c->active_ms < (int64_t)lc->idle_timeout_ms + l->idle_slack_ms)
            break;
        tp_server__log(s, TP_LOG_DEBUG, "%s: closing idle connection %s", l->name,
                       tp_conn__peer(c));
        tp_conn_close(s, c, TP_CLOSE_IDLE);
    }
    while (lc->read_timeout_ms > 0 && !cds_list_empty(&l->partial)) {
        c = cds_list_first_entry(&l->partial, struct tp_conn, partial);
        if (s->now_ms - c->partial_ms < lc->read_timeout_ms)
            break;
        tp_server__log(s, TP_LOG_INFO, "%s: closing %s: it held a partial message "
                       "past read_timeout", l->name, tp_conn__peer(c));
        tp_conn_close(s, c, TP_CLOSE_READ_TIMEOUT);
    }
}

static int64_t earliest(int64_t a, int64_t b)
{
    return b < a ? b : a;
}

/* How long epoll_wait may sleep: until the next deadline, or not at all if
 * something is waiting to be picked up again. */
static int wait_ms(struct tp_server *s)
{
    int64_t next = s->now_ms + MAX_WAIT_MS;
    size_t i;

    if (s->pending != NULL || s->pool_retry ||
        (s->waiting != NULL && s->pool != NULL && !tp_pool_is_full(s->pool)))
        return 0;
    for (i = 0; i < s->nlisten; i++) {
        struct tp_listener *l = &s->listeners[i];
        const struct tp_listen_conf *lc = l->conf;

        if (l->ready && l->fd >= 0)
            next = earliest(next, l->paused_until_ms);
        if (lc->idle_timeout_ms > 0 && !cds_list_empty(&l->idle))
            next = earliest(next, cds_list_first_entry(&l->idle, struct tp_conn,
                                                       idle)->active_ms +
                                   lc->idle_timeout_ms + l->idle_slack_ms);
        if (lc->read_timeout_ms > 0 && !cds_list_empty(&l->partial))
            next = earliest(next, cds_list_first_entry(&l->partial, struct tp_conn,
                                                       partial)->partial_ms + lc->read_timeout_ms);
    }
    if (s->stop_state == STOP_GRACEFUL && s->conf->shutdown_timeout_ms > 0)
        next = earliest(next, s->stop_deadline_ms);
    /* COARSE time runs up to a tick behind: round up so we never spin. */
    return next <= s->now_ms ? 0 : (int)(next - s->now_ms) + 1;
}

/* ---- stopping ---- */

static void close_listeners(struct tp_server *s)
{
    size_t i;

    for (i = 0; i < s->nlisten; i++)
        if (s->listeners[i].fd >= 0) {
            close(s->listeners[i].fd);
            s->listeners[i].fd = -1;
        }
}

/* Walks slots rather than lists: closing one connection may touch others. */
static void for_each_open(struct tp_server *s, bool now)
{
    uint32_t i;

    for (i = 0; i < s->nslots; i++) {
        struct tp_conn *c = &s->chunks[i / 1024][i % 1024];

        if (c->state != TP_CONN_OPEN)
            continue;
        if (now)
            tp_conn_close(s, c, TP_CLOSE_SHUTDOWN);
        else
            tp_conn__drain(s, c);
    }
}

static void begin_stop(struct tp_server *s, int level)
{
    if (level <= s->stop_state)
        return;
    close_listeners(s);
    if (level == STOP_GRACEFUL) {
        s->stop_state = STOP_GRACEFUL;
        s->stop_deadline_ms = s->now_ms + s->conf->shutdown_timeout_ms;
        tp_server__log(s, TP_LOG_INFO, "shutting down: finishing %llu "
                       "connections (signal again to stop at once)",
                       (unsigned long long)s->stats.open);
        for_each_open(s, false);
        return;
    }
    s->stop_state = STOP_NOW;
    if (s->stats.open > 0)
        tp_server__log(s, TP_LOG_WARN, "stopping now: closing %llu connections",
                       (unsigned long long)s->stats.open);
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
    const struct tp_stats *st = &s->stats;

    tp_server__log(s, TP_LOG_INFO, "stats: open %llu, accepted %llu, refused %llu, "
                   "messages %llu, bytes in %llu out %llu, closed: peer %llu "
                   "error %llu oversize %llu idle %llu read_timeout %llu app %llu "
                   "shutdown %llu",
                   (unsigned long long)st->open, (unsigned long long)st->accepted,
                   (unsigned long long)st->rejected_max_conn,
                   (unsigned long long)st->msgs_in, (unsigned long long)st->bytes_in,
                   (unsigned long long)st->bytes_out, (unsigned long long)st->closed_peer,
                   (unsigned long long)st->closed_error,
                   (unsigned long long)st->closed_oversize,
                   (unsigned long long)st->closed_idle,
                   (unsigned long long)st->closed_read_timeout,
                   (unsigned long long)st->closed_app,
                   (unsigned long long)st->closed_shutdown);
}

static void on_signals(struct tp_server *s)
{
    struct signalfd_siginfo si;

    while (read(s->signal_src.fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGINT:
        case SIGTERM:
            tp_server__log(s, TP_LOG_INFO, "got %s", strsignal((int)si.ssi_signo));
            begin_stop(s, s->stop_state == STOP_NONE ? STOP_GRACEFUL : STOP_NOW);
            break;
        case SIGHUP:
            tp_server__log(s, TP_LOG_WARN, "got SIGHUP: reload is not supported "
                           "yet; restart to apply a new conf");
            break;
        case SIGUSR1:
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
    return s->stop_state != STOP_NONE && s->live_slots == 0 &&
           (s->pool == NULL || tp_pool_inflight(s->pool) == 0);
}

/* ---- the loop ---- */

static void on_event(struct tp_server *s, const struct epoll_event *ev, bool *pool_ready)
{
    switch (*(const uint8_t *)ev->data.ptr) {
    case TP_SRC_CONN:
        tp_conn__event(s, ev->data.ptr, ev->events);
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
    if (s->pool != NULL && (pool_ready || s->pool_retry || tp_pool_inflight(s->pool) > 0))
        drain_pool(s, pool_ready);
    run_pending(s);
    run_waiting(s);
    if (s->pool != NULL)
        tp_pool_flush(s->pool);
    run_dirty(s);
    for (i = 0; i < s->nlisten; i++)
        expire_listener(s, &s->listeners[i]);
    if (s->stop_state == STOP_GRACEFUL && s->conf->shutdown_timeout_ms > 0 &&
        s->now_ms >= s->stop_deadline_ms) {
        tp_server__log(s, TP_LOG_WARN, "shutdown_timeout passed");
        begin_stop(s, STOP_NOW);
    }
}

static void log_start(struct tp_server *s)
{
    size_t i;

    for (i = 0; i < s->nlisten; i++)
        tp_server__log(s, TP_LOG_INFO, "listening on %s (app %s, framing %s)",
                       s->listeners[i].name, s->listeners[i].env.app->name,
                       tp_conf_framing_name(s->listeners[i].conf->framing));
}

int tp_server_run(tp_server_t *s)
{
    struct epoll_event ev[MAX_EVENTS];
    bool pool_ready;
    int n, i;

    log_start(s);
    while (!finished(s)) {
        n = epoll_wait(s->epfd, ev, MAX_EVENTS, wait_ms(s));
        if (n < 0 && errno != EINTR)
            return -errno;
        s->now_ms = clock_ms();
        pool_ready = false;
        for (i = 0; i < n; i++)
            on_event(s, &ev[i], &pool_ready);
        turn(s, pool_ready);
    }
    log_stats(s);
    return 0;
}

/* ---- the rest of the interface ---- */

uint16_t tp_server_port(const tp_server_t *s, size_t i)
{
    return i < s->nlisten ? s->listeners[i].port : 0;
}

void tp_server_stats(const tp_server_t *s, struct tp_stats *out)
{
    const uint64_t *from = (const uint64_t *)&s->stats;
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
    tp_pool_destroy(s->pool);     /* no worker runs from here on */
    s->pool = NULL;               /* so closes below run app->close inline */
    if (s->chunks != NULL)
        for_each_open(s, true);
    close_listeners(s);
    for (i = 0; i < s->nlisten; i++)
        if (s->listeners[i].app_started && s->listeners[i].env.app->fini != NULL)
            s->listeners[i].env.app->fini(s->listeners[i].env.state);
    if (s->stop_src.fd >= 0)
        close(s->stop_src.fd);
    if (s->epfd >= 0)
        close(s->epfd);
    tp_conn__table_fini(s);
    tp_msg_cache_fini(&s->cache);
    free(s->listeners);
    free(s);
}
