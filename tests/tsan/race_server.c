/* race_server - the in-process server under load, for ThreadSanitizer.
 *
 * Client threads pipeline lines and check every reply in order; some close
 * right after sending (their replies are at the workers); a chat-like app
 * broadcasts between connections; app chat (prefix, notices) runs a room
 * that members join and leave while one floods it, one member reads and
 * checks it and one never reads (closed as slow); meanwhile another thread
 * reloads the conf 20 times (workers 4, 0, 2, ...; a listener's settings
 * changed, so its socket moves to a new slot; a listener added and removed;
 * the room kept); then a graceful stop while clients still send (the room's
 * reader gets shutdown_message last). Exits 0 when every checked reply
 * matched, every reload took and the server stopped clean. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tp_apps.h"
#include "tp_call.h"
#include "tp_reactor.h"

#define THREADS 6
#define CONNS_PER_THREAD 40
#define LINES 200

static uint16_t port, chat_port, room_port, metrics_port;
static atomic_int failures, clients_done;

static int dial_port(uint16_t to)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(to),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Connects with a small receive buffer, so what it does not read stays
 * with the server. */
static int dial_small(uint16_t to)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(to),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0), rcvbuf = 4096;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int dial(void)
{
    return dial_port(port);
}

/* The chat shape: every line goes to every other connection of the listener,
 * one shared buffer for all recipients; some recipients close meanwhile. */
static int chat_message(struct tp_call *call, char *data, size_t len)
{
    return tp_call_broadcast(call, data, len, false) < 0 ? TP_APP_CLOSE : TP_APP_DONE;
}

static const struct tp_app chat = { .name = "chat", .message = chat_message };

#define CHATTERS 8
#define CHAT_LINES 300

static void *chatter(void *arg)
{
    long id = (long)arg;
    char line[32], sink[65536];
    int fd = dial_port(chat_port), i;

    if (fd < 0) {
        atomic_fetch_add(&failures, 1);
        return NULL;
    }
    for (i = 0; i < CHAT_LINES; i++) {
        int n = sprintf(line, "%ld says %d\n", id, i);

        if (write(fd, line, (size_t)n) != n)
            break;
        /* Read what others said, without waiting (half leave early). */
        while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
            ;
        if (id % 2 == 1 && i == CHAT_LINES / 2)
            break;
    }
    close(fd);
    return NULL;
}

/* ---- the room: app chat itself ---- */

#define ROOM_LINES 20000
#define ROOM_LINE 256             /* bytes, '\n' included: 5 MiB in all, more
                                     than the kernel holds for the sleeper */
#define ROOM_LAG 500              /* lines the reader may be behind */
#define CHURNERS 4

static atomic_int room_read;      /* the reader's count of the sender's lines */
static atomic_int room_over;      /* the sender is done */
static int room_reader_fd = -1;

static void *room_sender(void *arg)
{
    char line[ROOM_LINE + 1];
    int fd = dial_port(room_port), i;

    (void)arg;
    if (fd < 0) {
        atomic_fetch_add(&failures, 1);
        return NULL;
    }
    for (i = 0; i < ROOM_LINES; i++) {
        snprintf(line, sizeof(line), "r %08d %0*d\n", i, ROOM_LINE - 12, 0);
        if (write(fd, line, ROOM_LINE) != ROOM_LINE) {
            atomic_fetch_add(&failures, 1);
            break;
        }
        for (int w = 0; i - atomic_load(&room_read) > ROOM_LAG && w < 20000; w++)
            usleep(500);      /* keep the reader within its send_buffer_max */
    }
    atomic_store(&room_over, 1);
    /* Notices and churners' lines came to it unread: closing on them would
     * reset the connection and lose what the server has not yet read. */
    shutdown(fd, SHUT_WR);
    while (read(fd, line, sizeof(line)) > 0)
        ;
    close(fd);
    return NULL;
}

/* Checks one line the reader got: a notice, a churner's, or the sender's
 * next (after its "ADDR:PORT: " prefix). Returns -1 on a wrong one. */
static int room_line(const char *p, size_t len, int *next)
{
    const char *mark = memmem(p, len, ": r ", 4);
    int seq;

    if (len > 0 && p[0] == '*')
        return 0;                         /* join_notice */
    if (memmem(p, len, ": churn", 7) != NULL)
        return 0;
    if (mark == NULL || sscanf(mark + 4, "%d", &seq) != 1 || seq != *next)
        return -1;
    (*next)++;
    atomic_store(&room_read, *next);
    return 0;
}

/* Reads the room until EOF; the last line must be shutdown_message. */
static void *room_reader(void *arg)
{
    static char buf[1 << 16];
    size_t have = 0, at;
    int next = 0, bad = 0;
    char last[64] = "";
    ssize_t r;

    (void)arg;
    while ((r = read(room_reader_fd, buf + have, sizeof(buf) - have)) > 0) {
        char *nl;

        have += (size_t)r;
        for (at = 0; (nl = memchr(buf + at, '\n', have - at)) != NULL; at = (size_t)(nl - buf) + 1) {
            size_t len = (size_t)(nl - (buf + at));

            snprintf(last, sizeof(last), "%.*s", (int)len, buf + at);
            if (strcmp(last, "bye") != 0 && room_line(buf + at, len, &next) < 0 && bad++ == 0)
                fprintf(stderr, "race_server: room line %d: \"%s\"\n", next, last);
        }
        memmove(buf, buf + at, have - at);
        have -= at;
    }
    if (bad > 0 || next != ROOM_LINES || strcmp(last, "bye") != 0) {
        fprintf(stderr, "race_server: the room's reader got %d of %d lines, %d wrong, "
                "last \"%s\"\n", next, ROOM_LINES, bad, last);
        atomic_fetch_add(&failures, 1);
    }
    close(room_reader_fd);
    return NULL;
}

/* Joins, says a line now and then, leaves, while the sender floods. */
static void *churner(void *arg)
{
    long id = (long)arg;

    for (int i = 0; i < 200 && !atomic_load(&room_over); i++) {
        int fd = dial_port(room_port);

        if (fd < 0) {
            atomic_fetch_add(&failures, 1);
            return NULL;
        }
        if ((i + id) % 3 == 0 && write(fd, "churn\n", 6) != 6)
            atomic_fetch_add(&failures, 1);
        close(fd);
    }
    return NULL;
}

/* Reads exactly n bytes within 10 s. */
static int read_all(int fd, char *buf, size_t n)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    size_t got = 0;
    ssize_t r;

    while (got < n) {
        if (poll(&p, 1, 10000) <= 0)
            return -1;
        r = read(fd, buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void *client(void *arg)
{
    static _Thread_local char out[LINES * 16], in[LINES * 16];
    long id = (long)arg;
    int c, i, fd;
    size_t n;

    for (c = 0; c < CONNS_PER_THREAD; c++) {
        if ((fd = dial()) < 0) {
            atomic_fetch_add(&failures, 1);
            continue;
        }
        for (n = 0, i = 0; i < LINES; i++)
            n += (size_t)sprintf(out + n, "%ld.%d.%d\n", id, c, i);
        if (write(fd, out, n) != (ssize_t)n)
            atomic_fetch_add(&failures, 1);
        /* Every third connection leaves with its replies in flight. */
        if (c % 3 != 0 && (read_all(fd, in, n) < 0 || memcmp(in, out, n) != 0))
            atomic_fetch_add(&failures, 1);
        close(fd);
    }
    return NULL;
}

/* The app chat room's listen block, the same at start and at each reload
 * (so the room keeps its slot). */
static void room_conf(struct tp_listen_conf *l)
{
    tp_conf_listen_init(l);
    tp_conf_parse_addr("127.0.0.1:0", l);
    strcpy(l->app, "chat");
    l->chat_prefix = l->join_notice = true;
    l->send_buffer_max = 256 * 1024;
    strcpy(l->shutdown_message, "bye");
    l->shutdown_message_len = 3;
}

/* app metrics's listen block, the same at start and at each reload. */
static void metrics_conf(struct tp_listen_conf *l)
{
    tp_conf_listen_init(l);
    tp_conf_parse_addr("127.0.0.1:0", l);
    l->framing = TP_FRAMING_HTTP;
}

#define RELOADS 20

/* Reloads srv while the clients run: odd rounds change listener 0's
 * max_message (a new slot takes its socket), add 127.0.0.2:0 and change the
 * worker count; even rounds go back. The chat room stays as it is. */
static void *reloader(void *srv)
{
    static const int workers[] = { 0, 4, 2, 4, 1 };
    static struct tp_conf conf;
    const struct tp_app *apps[5] = { &tp_app_echo, &chat, &tp_app_chat, &tp_app_metrics,
                                     &tp_app_echo };
    char err[256];
    int i;

    for (i = 1; i <= RELOADS; i++) {
        tp_conf_init(&conf);
        conf.workers = workers[i % 5];
        tp_conf_parse_addr("127.0.0.1:0", &conf.listen[0]);
        conf.nlisten = i % 2 == 1 ? 5 : 4;
        tp_conf_listen_init(&conf.listen[1]);
        tp_conf_parse_addr("127.0.0.1:0", &conf.listen[1]);
        room_conf(&conf.listen[2]);
        metrics_conf(&conf.listen[3]);
        if (i % 2 == 1) {
            conf.listen[0].max_message = 32 * 1024;
            tp_conf_listen_init(&conf.listen[4]);
            tp_conf_parse_addr("127.0.0.2:0", &conf.listen[4]);
        }
        if (tp_server_reload(srv, &conf, apps, err, sizeof(err)) != 0 ||
            tp_server_port(srv, 0) != port) {
            fprintf(stderr, "race_server: reload %d: %s\n", i, err);
            atomic_fetch_add(&failures, 1);
        }
        usleep(20 * 1000);
    }
    return NULL;
}

static void *serve(void *srv)
{
    if (tp_server_run(srv) != 0)
        atomic_fetch_add(&failures, 1);
    return NULL;
}

/* app metrics reads the counters (on a worker, or on the reactor) while the
 * reactor writes them: scrape until the clients are done. */
static void *scraper(void *arg)
{
    static char buf[1 << 16];
    const char *req = "GET /metrics HTTP/1.0\r\n\r\n";
    int scrapes = 0;

    (void)arg;
    while (!atomic_load(&clients_done) || scrapes == 0) {
        int fd = dial_port(metrics_port);
        size_t got = 0;
        ssize_t n;

        if (fd < 0 || write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
            atomic_fetch_add(&failures, 1);
            if (fd >= 0)
                close(fd);
            return NULL;
        }
        while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
            got += (size_t)n;
        buf[got] = '\0';
        close(fd);
        if (strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) != 0 ||
            strstr(buf, "\ntidepool_messages_total{") == NULL) {
            fprintf(stderr, "race_server: bad scrape: %.200s\n", buf);
            atomic_fetch_add(&failures, 1);
            return NULL;
        }
        scrapes++;
        usleep(2000);
    }
    return NULL;
}

/* One whole run against a fresh server. */
static int run(bool workers_only)
{
    static struct tp_conf conf;
    const struct tp_app *apps[4] = { &tp_app_echo, &chat, &tp_app_chat, &tp_app_metrics };
    struct tp_server_opts opts = { .apps = apps, .signal_fd = -1,
                                   .workers_only = workers_only };
    pthread_t th[THREADS], chat_th[CHATTERS], churn_th[CHURNERS], loop, sender, reader;
    pthread_t reload_th, scrape_th;
    int sleeper;
    struct tp_stats st;
    tp_server_t *srv;
    char err[256];
    long i;

    tp_conf_init(&conf);
    conf.workers = 4;
    tp_conf_parse_addr("127.0.0.1:0", &conf.listen[0]);
    conf.nlisten = 4;
    tp_conf_listen_init(&conf.listen[1]);
    tp_conf_parse_addr("127.0.0.1:0", &conf.listen[1]);
    room_conf(&conf.listen[2]);
    atomic_store(&room_read, 0);
    atomic_store(&room_over, 0);
    metrics_conf(&conf.listen[3]);
    srv = tp_server_create(&conf, &opts, err, sizeof(err));
    if (srv == NULL)
        return fprintf(stderr, "%s\n", err), 1;
    port = tp_server_port(srv, 0);
    chat_port = tp_server_port(srv, 1);
    room_port = tp_server_port(srv, 2);
    metrics_port = tp_server_port(srv, 3);
    atomic_store(&clients_done, 0);
    pthread_create(&loop, NULL, serve, srv);
    pthread_create(&scrape_th, NULL, scraper, NULL);
    room_reader_fd = dial_port(room_port);
    sleeper = dial_small(room_port);          /* never reads */
    if (room_reader_fd < 0 || sleeper < 0)
        return fprintf(stderr, "race_server: cannot join the room\n"), 1;
    pthread_create(&reader, NULL, room_reader, NULL);
    pthread_create(&sender, NULL, room_sender, NULL);
    for (i = 0; i < CHURNERS; i++)
        pthread_create(&churn_th[i], NULL, churner, (void *)i);
    for (i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, client, (void *)i);
    /* Reloads need the loop running: wait until it has accepted. */
    for (i = 0, tp_server_stats(srv, &st); i < 2000 && st.accepted == 0; i++) {
        usleep(5000);
        tp_server_stats(srv, &st);
    }
    pthread_create(&reload_th, NULL, reloader, srv);
    for (i = 0; i < CHATTERS; i++)
        pthread_create(&chat_th[i], NULL, chatter, (void *)i);
    for (i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < CHATTERS; i++)
        pthread_join(chat_th[i], NULL);
    pthread_join(sender, NULL);
    for (i = 0; i < CHURNERS; i++)
        pthread_join(churn_th[i], NULL);
    /* The reader has it all (its check is exact) before the stop. */
    for (i = 0; i < 2000 && atomic_load(&room_read) < ROOM_LINES; i++)
        usleep(5000);
    pthread_join(reload_th, NULL);
    atomic_store(&clients_done, 1);
    pthread_join(scrape_th, NULL);
    /* Stop while a last client is mid-stream: what it sent before the stop
     * is answered in full, then EOF. */
    tp_server_stats(srv, &st);
    int fd = dial();
    uint64_t accepted = st.accepted;
    for (i = 0; i < 2000 && st.accepted == accepted; i++) {
        usleep(5000);
        tp_server_stats(srv, &st);
    }
    if (fd < 0 || st.accepted == accepted || write(fd, "last\nwords\n", 11) != 11)
        atomic_fetch_add(&failures, 1);
    tp_server_stop(srv, true);
    if (fd >= 0) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        char back[32];
        int got = read_all(fd, back, 11) == 0 && memcmp(back, "last\nwords\n", 11) == 0;

        if (!got || poll(&p, 1, 10000) != 1 || read(fd, back, sizeof(back)) != 0) {
            fprintf(stderr, "race_server: the last client's replies are missing\n");
            atomic_fetch_add(&failures, 1);
        }
        close(fd);
    }
    pthread_join(reader, NULL);
    close(sleeper);
    pthread_join(loop, NULL);
    tp_server_stats(srv, &st);
    tp_server_destroy(srv);
    if (st.open != 0)
        atomic_fetch_add(&failures, 1);
    printf("race_server (%s): %llu connections, %llu messages, %llu closed as slow, "
           "%d failures\n",
           workers_only ? "every message to a worker" : "cheap work on the reactor",
           (unsigned long long)st.accepted, (unsigned long long)st.msgs_in,
           (unsigned long long)st.closed_slow, atomic_load(&failures));
    return atomic_load(&failures) == 0 ? 0 : 1;
}

/* Both ways the server runs work: every message handed to a worker, and
 * the default, where the reactor runs what it measured to be cheap (both
 * apps here) and the workers what was not (the first runs, while a timing
 * of a slow machine under TSan says otherwise). */
int main(void)
{
    int rc = run(true);

    return run(false) | rc;
}
