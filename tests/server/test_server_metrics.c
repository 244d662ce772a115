/* test_server_metrics.c - app metrics on the in-process server: /metrics
 * after traffic (and promtool's check of it), /health through a graceful
 * stop, paths and methods. Listener 0 serves the traffic, listener 1 app
 * metrics; every batch goes to one of 2 workers. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tp_apps.h"
#include "tpt_server.h"

#define LONG_MS 10000

static struct tpt_server *srv;

static void init_suite(void)
{
    signal(SIGPIPE, SIG_IGN);
    tpt_workers_only = true;
}

/* Whatever a test did, its server stops and every thread is joined. */
static void fini_suite(void)
{
    if (srv != NULL)
        tpt_stop(srv, false);
    srv = NULL;
}

TestSuite(server_metrics, .init = init_suite, .fini = fini_suite, .timeout = 60);

static void start(const struct tp_app *traffic, uint32_t shutdown_delay_ms)
{
    const struct tp_app *apps[2] = { traffic, &tp_app_metrics };
    struct tp_conf conf;

    tpt_conf(&conf, 2);
    conf.shutdown_delay_ms = shutdown_delay_ms;
    conf.nlisten = 2;
    tp_conf_listen_init(&conf.listen[1]);
    cr_assert_eq(tp_conf_parse_addr("127.0.0.1:0", &conf.listen[1]), 0);
    conf.listen[1].framing = TP_FRAMING_HTTP;
    srv = tpt_start_apps(&conf, apps);
}

static uint16_t port_of(size_t i)
{
    return tp_server_port(srv->srv, i);
}

struct response {
    unsigned status;
    char head[2048];
    char *body;            /* into text */
    size_t body_len;
    char text[1 << 18];
};

/* Sends request on a new connection and reads until the server closes. */
static void ask(uint16_t port, const char *request, struct response *r)
{
    int fd = tpt_dial(port);
    bool reset;
    ssize_t n;
    char *end;

    tpt_write_all(fd, request, strlen(request));
    n = tpt_read_all(fd, r->text, sizeof(r->text) - 1, LONG_MS, &reset);
    close(fd);
    cr_assert_gt(n, 0, "no response to %s", request);
    r->text[n] = '\0';
    cr_assert_eq(sscanf(r->text, "HTTP/1.1 %u ", &r->status), 1, "%s", r->text);
    end = strstr(r->text, "\r\n\r\n");
    cr_assert_not_null(end, "%s", r->text);
    snprintf(r->head, sizeof(r->head), "%.*s", (int)(end - r->text + 2), r->text);
    r->body = end + 4;
    r->body_len = (size_t)(r->text + n - r->body);
}

static void get(uint16_t port, const char *path, struct response *r)
{
    char req[256];

    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    ask(port, req, r);
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    const char *s;

    for (s = text; (s = strstr(s, line)) != NULL; s++)
        if ((s == text || s[-1] == '\n') && s[n] == '\n')
            return true;
    return false;
}

/* promtool, the Prometheus project's own checker, on the exposition. */
static void promtool_check(const char *body, size_t len)
{
    char path[] = "/tmp/tp_metrics_XXXXXX", cmd[128];
    int fd = mkstemp(path), rc;

    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, body, len), (ssize_t)len);
    close(fd);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
    rc = system(cmd);
    unlink(path);
    cr_expect_eq(rc, 0, "promtool check metrics failed (%d) on:\n%.*s", rc, (int)len, body);
}

Test(server_metrics, metrics_count_the_traffic_by_listener_and_pass_promtool)
{
    struct response *r = malloc(sizeof(*r));
    char line[256], buf[64];
    int fd;

    start(&tp_app_echo, 0);
    fd = tpt_dial(port_of(0));
    for (int i = 0; i < 10; i++)
        tpt_write_all(fd, "hello\n", 6);
    cr_assert_eq(tpt_read_n(fd, buf, 60, LONG_MS), 60);
    close(fd);
    cr_assert(tpt_wait_stats(srv, LONG_MS, st.open == 0 && st.closed_peer == 1));
    get(port_of(1), "/metrics", r);
    cr_assert_eq(r->status, 200, "%s", r->text);
    cr_expect(strstr(r->head, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
              "%s", r->head);
    snprintf(line, sizeof(line), "Content-Length: %zu\r\n", r->body_len);
    cr_expect(strstr(r->head, line) != NULL, "%s", r->head);
    snprintf(line, sizeof(line),
             "tidepool_messages_total{listener=\"127.0.0.1:%u\",direction=\"in\"} 10", port_of(0));
    cr_expect(has_line(r->body, line), "%s\n%s", line, r->body);
    snprintf(line, sizeof(line),
             "tidepool_messages_total{listener=\"127.0.0.1:%u\",direction=\"out\"} 10", port_of(0));
    cr_expect(has_line(r->body, line), "%s", line);
    snprintf(line, sizeof(line),
             "tidepool_bytes_total{listener=\"127.0.0.1:%u\",direction=\"in\"} 60", port_of(0));
    cr_expect(has_line(r->body, line), "%s", line);
    snprintf(line, sizeof(line),
             "tidepool_bytes_total{listener=\"127.0.0.1:%u\",direction=\"out\"} 60", port_of(0));
    cr_expect(has_line(r->body, line), "%s", line);
    cr_expect(has_line(r->body, "tidepool_connections_accepted_total 2"), "%s", r->body);
    cr_expect(has_line(r->body, "tidepool_connections_open 1"), "the scrape's own");
    cr_expect(has_line(r->body, "tidepool_connections_closed_total{reason=\"peer\"} 1"));
    /* Every echo reply was timed, and every batch waited at a worker. */
    cr_expect(has_line(r->body, "tidepool_message_duration_seconds_count 10"), "%s", r->body);
    cr_expect(has_line(r->body, "tidepool_message_duration_seconds_bucket{le=\"+Inf\"} 10"));
    cr_expect(has_line(r->body, "tidepool_worker_queue_wait_seconds_count 10"), "%s", r->body);
    cr_expect(has_line(r->body, "tidepool_message_duration_seconds_bucket{le=\"1\"} 10"),
              "well under a second each");
    cr_expect(has_line(r->body, "tidepool_worker_queue_wait_seconds_bucket{le=\"1\"} 10"));
    cr_expect(has_line(r->body, "tidepool_draining 0"));
    cr_expect(strstr(r->body, "\nprocess_resident_memory_bytes ") != NULL);
    promtool_check(r->body, r->body_len);
    tpt_stop(srv, true);
    srv = NULL;
    free(r);
}

Test(server_metrics, paths_methods_head_and_keep_alive)
{
    struct response *r = malloc(sizeof(*r));

    start(&tp_app_echo, 0);
    get(port_of(1), "/nope", r);
    cr_expect_eq(r->status, 404, "%s", r->text);
    get(port_of(1), "/metricsx", r);
    cr_expect_eq(r->status, 404, "%s", r->text);
    get(port_of(1), "/metrics?name=x", r);
    cr_expect_eq(r->status, 200, "a query is not part of the path");
    ask(port_of(1), "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", r);
    cr_expect_eq(r->status, 405, "%s", r->text);
    cr_expect(strstr(r->head, "\r\nAllow: GET, HEAD\r\n") != NULL, "%s", r->head);
    ask(port_of(1), "BREW /health HTTP/1.1\r\nHost: t\r\n\r\n", r);
    cr_expect_eq(r->status, 501, "%s", r->text);
    ask(port_of(1), "GET /health HTTP/1.1\r\n\r\n", r);
    cr_expect_eq(r->status, 400, "HTTP/1.1 without Host: %s", r->text);
    ask(port_of(1), "HEAD /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", r);
    cr_expect_eq(r->status, 200);
    cr_expect(strstr(r->head, "\r\nContent-Length: 3\r\n") != NULL, "%s", r->head);
    cr_expect_eq(r->body_len, 0, "HEAD has no body");
    /* Two pipelined requests on one connection, the second closing it. */
    ask(port_of(1), "GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", r);
    cr_expect_eq(r->status, 200);
    cr_expect(strncmp(r->body, "ok\nHTTP/1.1 200 OK\r\n", 20) == 0, "%s", r->text);
    cr_expect(strcmp(r->body + r->body_len - 3, "ok\n") == 0, "%s", r->text);
    tpt_stop(srv, true);
    srv = NULL;
    free(r);
}

/* Connects without failing the test: false if refused. */
static bool can_connect(uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok;

    cr_assert_geq(fd, 0);
    ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

Test(server_metrics, health_is_ok_then_503_through_the_delay_and_the_drain)
{
    enum { LINES = 400 };          /* 2 ms each at app slow: 0.8 s of work */
    struct response *r = malloc(sizeof(*r));
    static char lines[LINES * 4], back[LINES * 4];
    uint16_t traffic, health;
    int busy, fd, i;

    start(&tpt_app_slow, 500);
    traffic = port_of(0);
    health = port_of(1);
    get(health, "/health", r);
    cr_assert_eq(r->status, 200, "%s", r->text);
    cr_expect_eq(r->body_len, 3);
    cr_expect(strcmp(r->body, "ok\n") == 0, "%s", r->body);

    tp_server_stop(srv->srv, true);
    get(health, "/health", r);
    for (i = 0; i < 100 && r->status != 503; i++) {
        usleep(10000);
        get(health, "/health", r);
    }
    cr_assert_eq(r->status, 503, "%s", r->text);
    cr_expect(strcmp(r->body, "draining\n") == 0, "%s", r->body);
    /* shutdown_delay: the traffic listener still serves meanwhile. */
    fd = tpt_dial(traffic);
    tpt_write_all(fd, "hi\n", 3);
    cr_expect_eq(tpt_read_n(fd, back, 3, LONG_MS), 3);
    /* Give it work that outlasts the delay: it holds the drain open. */
    for (i = 0; i < LINES; i++)
        memcpy(lines + i * 4, "abc\n", 4);
    busy = fd;
    tpt_write_all(busy, lines, sizeof(lines));
    /* The delay ends: the traffic listener closes, health answers 503 on. */
    for (i = 0; i < 200 && can_connect(traffic); i++)
        usleep(10000);
    cr_assert(!can_connect(traffic), "the traffic listener still accepts after the delay");
    get(health, "/health", r);
    cr_expect_eq(r->status, 503, "health must answer through the drain: %s", r->text);
    /* The busy connection gets every reply, then the server finishes. */
    cr_expect_eq(tpt_read_n(busy, back, sizeof(back), LONG_MS), sizeof(back));
    cr_expect(memcmp(back, lines, sizeof(back)) == 0);
    cr_expect_geq(tpt_read_to_eof(busy, NULL, 0, LONG_MS), 0, "closed after its replies");
    close(busy);
    for (i = 0; i < 500 && can_connect(health); i++)
        usleep(10000);
    cr_expect(!can_connect(health), "the metrics listener closes once the drain is done");
    tpt_stop(srv, true);
    srv = NULL;
    free(r);
}
