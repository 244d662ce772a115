/* tp_bus.c - a chat room's Redis pub/sub link (see tp_bus.h).
 *
 * Each link (pub, sub) owns at most one redisAsyncContext at a time. hiredis
 * frees a context itself after its connect or disconnect callback, so those
 * callbacks are where a link lets go of it (link_lost); the link then waits
 * for its retry time, and tp_bus_tick() connects it again.
 *
 * The links' fds are in the reactor's epoll level-triggered, unlike client
 * sockets: hiredis reads one buffer per redisAsyncHandleRead() and asks for
 * write readiness only while it has output, which is what level-triggered
 * events fit. */
#include "tp_bus.h"

#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define ID_LEN 16                    /* hex digits of an instance's mark */
#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 2000

struct link {
    uint8_t source;                  /* first: what the epoll data points at */
    bool is_sub;
    bool up;                         /* pub: connected; sub: subscribed */
    bool lost_logged;                /* this outage was logged */
    struct tp_bus *bus;
    redisAsyncContext *ac;           /* NULL while down */
    int fd;
    uint32_t events;                 /* what hiredis asked for */
    bool in_epoll;
    int64_t retry_at_ms;             /* down: when to connect again */
    int64_t deadline_ms;             /* connecting: give up then */
    uint32_t backoff_ms;
};

struct tp_bus {
    struct tp_bus_opts o;
    char host[48];
    char channel[TP_CONF_CHANNEL_MAX + 1];
    char name[72];
    char id[ID_LEN + 1];
    struct link pub, sub;
    uint64_t unsent;                 /* bytes published, not yet answered */
    bool drop_logged;                /* "over max_unsent" said for this spell */
    int64_t now_ms;
    struct tp_bus_stats st;
    char *scratch;                   /* a PUBLISH command being formatted */
    size_t scratch_cap;
};

static int64_t clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(struct tp_bus *b, enum tp_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(struct tp_bus *b, enum tp_log_level level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    int n;

    if (b->o.log == NULL)
        return;
    n = snprintf(msg, sizeof(msg), "%s: chat_redis %s:%u channel %s: ", b->name, b->host,
                 b->o.port, b->channel);
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
    va_end(ap);
    b->o.log(b->o.arg, level, msg);
}

static const char *link_name(const struct link *l)
{
    return l->is_sub ? "subscriber" : "publisher";
}

/* ---- hiredis adapter: its read/write wishes into the reactor's epoll ---- */

static void sync_epoll(struct link *l)
{
    struct epoll_event ev = { .events = l->events, .data.ptr = l };

    if (l->events == 0) {
        if (l->in_epoll)
            epoll_ctl(l->bus->o.epfd, EPOLL_CTL_DEL, l->fd, &ev);
        l->in_epoll = false;
        return;
    }
    if (epoll_ctl(l->bus->o.epfd, l->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, l->fd, &ev) == 0)
        l->in_epoll = true;
}

static void ev_add_read(void *p)
{
    struct link *l = p;

    l->events |= EPOLLIN;
    sync_epoll(l);
}

static void ev_del_read(void *p)
{
    struct link *l = p;

    l->events &= ~(uint32_t)EPOLLIN;
    sync_epoll(l);
}

static void ev_add_write(void *p)
{
    struct link *l = p;

    l->events |= EPOLLOUT;
    sync_epoll(l);
}

static void ev_del_write(void *p)
{
    struct link *l = p;

    l->events &= ~(uint32_t)EPOLLOUT;
    sync_epoll(l);
}

/* hiredis frees the context (its fd is still open here). */
static void ev_cleanup(void *p)
{
    struct link *l = p;

    l->events = 0;
    sync_epoll(l);
}

/* ---- a link's life ---- */

/* Down: connect again at the back-off's next step; the outage is logged once. */
static void retry_later(struct link *l, const char *why)
{
    struct tp_bus *b = l->bus;

    l->up = false;
    l->events = 0;
    l->in_epoll = false;             /* closing the fd takes it out of epoll */
    l->retry_at_ms = b->now_ms + l->backoff_ms;
    l->backoff_ms = l->backoff_ms == 0 ? RETRY_FIRST_MS
                  : l->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : l->backoff_ms * 2;
    if (!l->lost_logged) {
        l->lost_logged = true;
        say(b, TP_LOG_ERROR, "%s: %s; %s, retrying every %d s at most", link_name(l), why,
            l->is_sub ? "lines from other instances do not arrive"
                      : "lines reach local members only (counted as dropped)",
            RETRY_MAX_MS / 1000);
    }
}

/* The context is gone (hiredis frees it after the callback that says so). */
static void link_lost(struct link *l, const char *why)
{
    if (l->ac == NULL)
        return;
    l->ac = NULL;
    retry_later(l, why);
}

static void on_message(redisAsyncContext *ac, void *reply, void *priv);

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct link *l = ac->ev.data;
    struct tp_bus *b = l->bus;

    if (status != REDIS_OK) {
        link_lost(l, ac->errstr[0] != '\0' ? ac->errstr : "connect failed");
        return;
    }
    b->st.connects++;
    l->backoff_ms = 0;
    if (!l->is_sub) {
        l->up = true;
        if (l->lost_logged)
            say(b, TP_LOG_INFO, "publisher: connected again");
        l->lost_logged = false;
        return;
    }
    /* on_message runs for the confirmation, then for every message. */
    if (redisAsyncCommand(l->ac, on_message, l, "SUBSCRIBE %b", b->channel,
                          strlen(b->channel)) != REDIS_OK)
        redisAsyncDisconnect(l->ac);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct link *l = ac->ev.data;

    link_lost(l, status == REDIS_OK ? "disconnected"
                 : ac->errstr[0] != '\0' ? ac->errstr : "connection lost");
}

static void link_connect(struct link *l)
{
    struct tp_bus *b = l->bus;
    redisAsyncContext *ac = redisAsyncConnect(b->host, b->o.port);

    if (ac == NULL || ac->err) {
        char why[160];

        snprintf(why, sizeof(why), "%s", ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        retry_later(l, why);
        return;
    }
    l->ac = ac;
    l->fd = ac->c.fd;
    l->events = 0;
    l->in_epoll = false;
    l->deadline_ms = b->now_ms + CONNECT_TIMEOUT_MS;
    ac->ev.data = l;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    /* The connect callback asks for the first write event: hooks first. */
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

/* ---- the channel ---- */

static bool is_ours(const struct tp_bus *b, const char *data, size_t len)
{
    return len >= ID_LEN && memcmp(data, b->id, ID_LEN) == 0;
}

/* A message marked by a tidepool instance: 16 hex digits, then the run. */
static bool is_marked(const char *data, size_t len)
{
    size_t i;

    if (len < ID_LEN)
        return false;
    for (i = 0; i < ID_LEN; i++)
        if (!((data[i] >= '0' && data[i] <= '9') || (data[i] >= 'a' && data[i] <= 'f')))
            return false;
    return true;
}

static void on_message(redisAsyncContext *ac, void *reply, void *priv)
{
    struct link *l = priv;
    struct tp_bus *b = l->bus;
    redisReply *r = reply, *kind, *body;

    (void)ac;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return;                       /* a disconnect, or not a push we know */
    kind = r->element[0];
    body = r->element[2];
    if (kind->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(kind->str, "subscribe") == 0) {
        l->up = true;
        if (l->lost_logged)
            say(b, TP_LOG_INFO, "subscriber: subscribed again (lines published meanwhile "
                "by other instances did not reach this one)");
        l->lost_logged = false;
        return;
    }
    if (strcmp(kind->str, "message") != 0 || body->type != REDIS_REPLY_STRING || body->len == 0)
        return;
    if (is_ours(b, body->str, body->len))
        return;                       /* our own line, already delivered here */
    b->st.delivered++;
    if (is_marked(body->str, body->len)) {
        if (body->len > ID_LEN)
            b->o.deliver(b->o.arg, b->o.tag, body->str + ID_LEN, body->len - ID_LEN);
    } else {
        b->o.deliver(b->o.arg, b->o.tag, body->str, body->len);   /* redis-cli PUBLISH */
    }
}

static void on_published(redisAsyncContext *ac, void *reply, void *priv)
{
    struct tp_bus *b = ((struct link *)ac->ev.data)->bus;
    size_t len = (size_t)(uintptr_t)priv;
    redisReply *r = reply;

    b->unsent -= len;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER) {
        b->st.published++;
        return;
    }
    b->st.dropped++;                  /* lost with the connection, or refused */
    if (r != NULL && r->type == REDIS_REPLY_ERROR && !b->drop_logged) {
        b->drop_logged = true;
        say(b, TP_LOG_ERROR, "PUBLISH refused: %s", r->str);
    }
}

static int reserve(struct tp_bus *b, size_t n)
{
    char *p;

    if (n <= b->scratch_cap)
        return 0;
    p = realloc(b->scratch, n);
    if (p == NULL)
        return -ENOMEM;
    b->scratch = p;
    b->scratch_cap = n;
    return 0;
}

void tp_bus_publish(tp_bus_t *b, const char *data, size_t len)
{
    size_t chlen = strlen(b->channel), n;
    int head;

    if (!b->pub.up) {
        b->st.dropped++;
        return;                       /* the outage was logged by link_lost */
    }
    if (b->unsent + len > b->o.max_unsent) {
        b->st.dropped++;
        if (!b->drop_logged) {
            b->drop_logged = true;
            say(b, TP_LOG_WARN, "Redis has %llu bytes unanswered, over %llu: lines reach "
                "local members only until it catches up (counted as dropped)",
                (unsigned long long)b->unsent, (unsigned long long)b->o.max_unsent);
        }
        return;
    }
    b->drop_logged = false;
    /* *3 $7 PUBLISH $chlen channel $len id+data, formatted once. */
    if (reserve(b, 64 + chlen + ID_LEN + len) < 0) {
        b->st.dropped++;
        return;
    }
    head = snprintf(b->scratch, b->scratch_cap, "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n$%zu\r\n%s",
                    chlen, b->channel, ID_LEN + len, b->id);
    n = (size_t)head;
    memcpy(b->scratch + n, data, len);
    n += len;
    memcpy(b->scratch + n, "\r\n", 2);
    n += 2;
    if (redisAsyncFormattedCommand(b->pub.ac, on_published, (void *)(uintptr_t)len,
                                   b->scratch, n) != REDIS_OK) {
        b->st.dropped++;
        return;
    }
    b->unsent += len;
}

/* ---- the reactor's side ---- */

void tp_bus_event(void *ptr, uint32_t events)
{
    struct link *l = ptr;

    l->bus->now_ms = clock_ms();
    if (l->ac == NULL)
        return;                       /* gone earlier in this batch */
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        redisAsyncHandleRead(l->ac);
    if (l->ac != NULL && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        redisAsyncHandleWrite(l->ac);
}

static int64_t link_next(const struct link *l)
{
    if (l->ac == NULL)
        return l->retry_at_ms;
    if (!(l->ac->c.flags & REDIS_CONNECTED))
        return l->deadline_ms;
    return INT64_MAX;
}

int64_t tp_bus_next_ms(const tp_bus_t *b)
{
    int64_t a = link_next(&b->pub), c = link_next(&b->sub);

    return a < c ? a : c;
}

static void link_tick(struct link *l, int64_t now_ms)
{
    if (l->ac == NULL) {
        if (now_ms >= l->retry_at_ms)
            link_connect(l);
        return;
    }
    if (!(l->ac->c.flags & REDIS_CONNECTED) && now_ms >= l->deadline_ms) {
        redisAsyncContext *ac = l->ac;

        link_lost(l, "connect timed out");
        redisAsyncFree(ac);           /* its callbacks find the link let go */
    }
}

void tp_bus_tick(tp_bus_t *b, int64_t now_ms)
{
    b->now_ms = now_ms;
    link_tick(&b->pub, now_ms);
    link_tick(&b->sub, now_ms);
}

void tp_bus_stats(const tp_bus_t *b, struct tp_bus_stats *st)
{
    *st = b->st;
}

static void link_init(struct tp_bus *b, struct link *l, bool is_sub)
{
    l->source = b->o.source;
    l->is_sub = is_sub;
    l->bus = b;
    l->fd = -1;
}

tp_bus_t *tp_bus_create(const struct tp_bus_opts *o, int64_t now_ms)
{
    struct tp_bus *b = calloc(1, sizeof(*b));
    uint64_t r = 0;

    if (b == NULL)
        return NULL;
    b->o = *o;
    snprintf(b->host, sizeof(b->host), "%s", o->host);
    snprintf(b->channel, sizeof(b->channel), "%s", o->channel);
    snprintf(b->name, sizeof(b->name), "%s", o->name != NULL ? o->name : "?");
    b->o.host = b->host;
    b->o.channel = b->channel;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint64_t)clock_ms() ^ ((uint64_t)getpid() << 32);
    snprintf(b->id, sizeof(b->id), "%016llx", (unsigned long long)r);
    b->now_ms = now_ms;
    link_init(b, &b->pub, false);
    link_init(b, &b->sub, true);
    link_connect(&b->pub);
    link_connect(&b->sub);
    return b;
}

static void link_close(struct link *l)
{
    redisAsyncContext *ac = l->ac;

    if (ac == NULL)
        return;
    l->lost_logged = true;            /* a close we asked for: nothing to say */
    link_lost(l, "closed");
    redisAsyncFree(ac);
}

void tp_bus_destroy(tp_bus_t *b)
{
    if (b == NULL)
        return;
    link_close(&b->pub);
    link_close(&b->sub);
    free(b->scratch);
    free(b);
}
