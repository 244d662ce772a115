/* tpt_server.c - see tpt_server.h. */
#include "tpt_server.h"

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tp_call.h"

static long long now_ms(void);
static bool wait_readable(int fd, long long deadline);

void tpt_conf(struct tp_conf *conf, int workers)
{
    tp_conf_init(conf);
    conf->workers = workers;
    cr_assert_eq(tp_conf_parse_addr("127.0.0.1:0", &conf->listen[0]), 0);
}

/* TPT_LOG=1 in the environment shows the server's log on stderr. */
static void log_stderr(void *arg, enum tp_log_level level, const char *msg)
{
    fprintf(stderr, "[%s] %s\n", tp_conf_log_level_name(level), msg);
}

bool tpt_workers_only;

static void *serve(void *arg)
{
    struct tpt_server *t = arg;

    t->rc = tp_server_run(t->srv);
    return NULL;
}

struct tpt_server *tpt_start(const struct tp_conf *conf, const struct tp_app *app)
{
    const struct tp_app *apps[TP_CONF_MAX_LISTEN];
    size_t i;

    for (i = 0; i < conf->nlisten; i++)
        apps[i] = app;
    return tpt_start_apps(conf, apps);
}

struct tpt_server *tpt_start_apps(const struct tp_conf *conf, const struct tp_app *const *apps)
{
    struct tpt_server *t = calloc(1, sizeof(*t));
    struct tp_server_opts opts = { .signal_fd = -1 };
    char err[512];
    pthread_t th;
    size_t i;

    cr_assert_not_null(t);
    t->conf = *conf;
    for (i = 0; i < conf->nlisten; i++)
        t->apps[i] = apps[i];
    opts.apps = t->apps;
    opts.workers_only = tpt_workers_only;
    if (getenv("TPT_LOG") != NULL) {
        opts.log = log_stderr;
        t->conf.log_level = TP_LOG_DEBUG;
    }
    t->srv = tp_server_create(&t->conf, &opts, err, sizeof(err));
    cr_assert_not_null(t->srv, "tp_server_create: %s", err);
    t->port = tp_server_port(t->srv, 0);
    cr_assert_eq(pthread_create(&th, NULL, serve, t), 0);
    t->thread = (unsigned long)th;
    t->running = true;
    return t;
}

void tpt_stop(struct tpt_server *t, bool graceful)
{
    tp_server_stop(t->srv, graceful);
    pthread_join((pthread_t)t->thread, NULL);
    cr_expect_eq(t->rc, 0, "tp_server_run returned %d", t->rc);
    tp_server_destroy(t->srv);
    free(t);
}

struct tp_stats tpt_stats(const struct tpt_server *t)
{
    struct tp_stats st;

    tp_server_stats(t->srv, &st);
    return st;
}

static int dial(int family, uint16_t port, int rcvbuf)
{
    struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(port),
                               .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    struct timeval tv = { .tv_sec = 10 };
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rc;

    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (family == AF_INET)
        rc = connect(fd, (struct sockaddr *)&a4, sizeof(a4));
    else
        rc = connect(fd, (struct sockaddr *)&a6, sizeof(a6));
    cr_assert_eq(rc, 0, "connect: %s", strerror(errno));
    return fd;
}

int tpt_dial(uint16_t port) { return dial(AF_INET, port, 0); }
int tpt_dial6(uint16_t port) { return dial(AF_INET6, port, 0); }
int tpt_dial_small(uint16_t port, int rcvbuf) { return dial(AF_INET, port, rcvbuf); }

void tpt_stream(char *buf, uint64_t off, size_t n)
{
    char line[TPT_LINE + 1];

    while (n > 0) {
        uint64_t i = off / TPT_LINE;
        size_t at = off % TPT_LINE, take = TPT_LINE - at < n ? TPT_LINE - at : n;

        snprintf(line, sizeof(line), "%063llu\n", (unsigned long long)i);
        memcpy(buf, line + at, take);
        buf += take;
        off += take;
        n -= take;
    }
}

size_t tpt_stream_check(const char *buf, size_t n)
{
    char want[TPT_LINE];

    for (size_t off = 0; off < n; off += TPT_LINE) {
        size_t len = n - off < TPT_LINE ? n - off : TPT_LINE;

        tpt_stream(want, off, len);
        for (size_t i = 0; i < len; i++)
            if (buf[off + i] != want[i])
                return off + i;
    }
    return n;
}

static void *flood_main(void *arg)
{
    struct tpt_flood *f = arg;
    static _Thread_local char chunk[TPT_LINE * 1024];
    long long deadline = now_ms() + f->ms;

    while (f->sent < f->limit && !__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE) &&
           now_ms() < deadline) {
        size_t want = f->limit - f->sent < sizeof(chunk) ? f->limit - f->sent : sizeof(chunk);
        ssize_t n;

        tpt_stream(chunk, f->sent, want);
        n = send(f->fd, chunk, want, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            f->sent += (uint64_t)n;
        else if (n < 0 && (errno == EAGAIN || errno == EINTR))
            usleep(500);
        else {
            f->err = n < 0 ? errno : 0;
            break;
        }
    }
    return NULL;
}

void tpt_flood_start(struct tpt_flood *f, int fd, uint64_t limit, int ms)
{
    pthread_t th;

    *f = (struct tpt_flood){ .fd = fd, .limit = limit, .ms = ms };
    cr_assert_eq(pthread_create(&th, NULL, flood_main, f), 0);
    f->thread = (unsigned long)th;
}

uint64_t tpt_flood_stop(struct tpt_flood *f)
{
    __atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
    pthread_join((pthread_t)f->thread, NULL);
    return f->sent;
}

ssize_t tpt_read_all(int fd, char *buf, size_t cap, int ms, bool *reset)
{
    long long deadline = now_ms() + ms;
    size_t got = 0;

    *reset = false;
    while (wait_readable(fd, deadline)) {
        ssize_t n = recv(fd, buf + got, cap - got, MSG_DONTWAIT);

        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            *reset = errno == ECONNRESET;
        if (n <= 0 || got + (size_t)n >= cap)
            return n > 0 ? -1 : (ssize_t)got;
        got += (size_t)n;
    }
    return -1;
}

void tpt_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for fd to be readable until deadline. */
static bool wait_readable(int fd, long long deadline)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    long long left = deadline - now_ms();

    return left > 0 && poll(&p, 1, (int)left) > 0;
}

size_t tpt_read_n(int fd, void *buf, size_t len, int ms)
{
    long long deadline = now_ms() + ms;
    size_t got = 0;

    while (got < len && wait_readable(fd, deadline)) {
        ssize_t n = recv(fd, (char *)buf + got, len - got, MSG_DONTWAIT);

        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

ssize_t tpt_read_to_eof(int fd, void *buf, size_t cap, int ms)
{
    long long deadline = now_ms() + ms;
    char sink[65536];
    size_t got = 0;

    while (wait_readable(fd, deadline)) {
        char *to = buf != NULL && got < cap ? (char *)buf + got : sink;
        size_t room = buf != NULL && got < cap ? cap - got : sizeof(sink);
        ssize_t n = recv(fd, to, room, MSG_DONTWAIT);

        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return (ssize_t)got;       /* EOF or reset */
        got += (size_t)n;
    }
    return -1;
}

size_t tpt_rss(void)
{
    unsigned long size, resident;
    FILE *f = fopen("/proc/self/statm", "r");

    cr_assert_not_null(f);
    cr_assert_eq(fscanf(f, "%lu %lu", &size, &resident), 2);
    fclose(f);
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

double tpt_cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

void tpt_raise_fd_limit(void)
{
    struct rlimit rl;

    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

/* ---- apps ---- */

static int slow_message(struct tp_call *call, char *data, size_t len)
{
    struct timespec ts = { 0, 2 * 1000 * 1000 };

    nanosleep(&ts, NULL);
    return TP_APP_KEEP;
}

const struct tp_app tpt_app_slow = { .name = "slow", .message = slow_message };

static int chat_message(struct tp_call *call, char *data, size_t len)
{
    return tp_call_broadcast(call, data, len, false) < 0 ? TP_APP_CLOSE : TP_APP_DONE;
}

const struct tp_app tpt_app_chat = { .name = "chat", .message = chat_message };

static atomic_int opens, closes;

static int count_open(struct tp_call *call)
{
    int *mine = malloc(sizeof(*mine));

    if (mine == NULL)
        return TP_APP_CLOSE;
    *mine = atomic_fetch_add(&opens, 1);
    *tp_call_conn_data(call) = mine;
    return 0;
}

/* Replies "<open index>:<message>" so the test sees conn_data is per connection. */
static int count_message(struct tp_call *call, char *data, size_t len)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "%d:%.*s", *(int *)*tp_call_conn_data(call),
                     (int)(len < 400 ? len : 400), data);

    return tp_call_reply(call, line, (size_t)n) < 0 ? TP_APP_CLOSE : TP_APP_DONE;
}

static void count_close(struct tp_call *call)
{
    free(*tp_call_conn_data(call));
    *tp_call_conn_data(call) = NULL;
    atomic_fetch_add(&closes, 1);
}

const struct tp_app tpt_app_count = { .name = "count", .open = count_open,
                                      .message = count_message, .close = count_close };

static int empty_message(struct tp_call *call, char *data, size_t len)
{
    if (tp_call_reply(call, data, 0) < 0 ||
        tp_call_send(call, tp_call_conn(call), data, 0) < 0 ||
        tp_call_broadcast(call, data, 0, true) < 0 ||
        tp_call_reply(call, data, len) < 0)
        return TP_APP_CLOSE;
    return TP_APP_DONE;
}

const struct tp_app tpt_app_empty = { .name = "empty", .message = empty_message };

int tpt_count_open(void) { return atomic_load(&opens); }
int tpt_count_close(void) { return atomic_load(&closes); }
