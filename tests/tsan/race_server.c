/* race_server - the in-process server under load, for ThreadSanitizer.
 *
 * Client threads pipeline lines and check every reply in order; some close
 * right after sending (their replies are at the workers); a chat-like app
 * broadcasts between connections; then a graceful stop while clients still
 * send. Exits 0 when every checked reply matched and the server stopped clean. */
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

static uint16_t port, chat_port, metrics_port;
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
    const struct tp_app *apps[3] = { &tp_app_echo, &chat, &tp_app_metrics };
    struct tp_server_opts opts = { .apps = apps, .signal_fd = -1,
                                   .workers_only = workers_only };
    pthread_t th[THREADS], chat_th[CHATTERS], loop, scrape_th;
    struct tp_stats st;
    tp_server_t *srv;
    char err[256];
    long i;

    tp_conf_init(&conf);
    conf.workers = 4;
    tp_conf_parse_addr("127.0.0.1:0", &conf.listen[0]);
    conf.nlisten = 3;
    tp_conf_listen_init(&conf.listen[1]);
    tp_conf_parse_addr("127.0.0.1:0", &conf.listen[1]);
    tp_conf_listen_init(&conf.listen[2]);
    tp_conf_parse_addr("127.0.0.1:0", &conf.listen[2]);
    conf.listen[2].framing = TP_FRAMING_HTTP;
    srv = tp_server_create(&conf, &opts, err, sizeof(err));
    if (srv == NULL)
        return fprintf(stderr, "%s\n", err), 1;
    port = tp_server_port(srv, 0);
    chat_port = tp_server_port(srv, 1);
    metrics_port = tp_server_port(srv, 2);
    atomic_store(&clients_done, 0);
    pthread_create(&loop, NULL, serve, srv);
    pthread_create(&scrape_th, NULL, scraper, NULL);
    for (i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, client, (void *)i);
    for (i = 0; i < CHATTERS; i++)
        pthread_create(&chat_th[i], NULL, chatter, (void *)i);
    for (i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < CHATTERS; i++)
        pthread_join(chat_th[i], NULL);
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
    pthread_join(loop, NULL);
    tp_server_stats(srv, &st);
    tp_server_destroy(srv);
    if (st.open != 0)
        atomic_fetch_add(&failures, 1);
    printf("race_server (%s): %llu connections, %llu messages, %d failures\n",
           workers_only ? "every message to a worker" : "cheap work on the reactor",
           (unsigned long long)st.accepted, (unsigned long long)st.msgs_in,
           atomic_load(&failures));
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
