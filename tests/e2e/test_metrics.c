/* test_metrics.c - app metrics of the built binary: a real Prometheus server
 * scrapes it and answers a query, and with `processes N` any process's
 * scrape serves the sum, which a restart does not take back.
 *
 * Every process a test starts is recorded and killed in the suite's fini,
 * whatever happened; every wait is bounded. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tpt_e2e.h"

#define BIN TP_BIN_DIR "/tidepool"

static char dir[] = "/tmp/tp_metrics_e2e_XXXXXX";
static pid_t procs[4];                /* started here; killed in fini */
static size_t nprocs;

struct proc {
    pid_t pid;
    int err;                          /* its stderr (tidepool) */
    char log[65536];
    size_t loglen;
};

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[96];
    size_t i;

    for (i = 0; i < nprocs; i++) {
        if (procs[i] <= 0)
            continue;
        kill(procs[i], SIGKILL);
        waitpid(procs[i], NULL, 0);
    }
    nprocs = 0;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(metrics_e2e, .init = setup, .fini = teardown, .timeout = 90);

static const char *put(const char *name, const char *text)
{
    static char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Starts argv with stderr to a pipe (p->err) or, with log_path, to a file. */
static void spawn(struct proc *p, const char *const argv[], const char *log_path)
{
    int err[2];

    cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
    cr_assert_lt(nprocs, sizeof(procs) / sizeof(procs[0]));
    p->pid = fork();
    cr_assert_geq(p->pid, 0);
    if (p->pid == 0) {
        int fd = log_path != NULL ? open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : err[1];

        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    procs[nprocs++] = p->pid;
    close(err[1]);
    p->err = err[0];
    p->loglen = 0;
    p->log[0] = '\0';
}

static bool wait_log(struct proc *p, const char *want, int ms)
{
    long long deadline = tpt_now_ms() + ms;

    while (strstr(p->log, want) == NULL) {
        struct pollfd pf = { .fd = p->err, .events = POLLIN };
        long long left = deadline - tpt_now_ms();
        ssize_t n;

        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            return false;
        n = read(p->err, p->log + p->loglen, sizeof(p->log) - 1 - p->loglen);
        if (n <= 0)
            return strstr(p->log, want) != NULL;
        p->loglen += (size_t)n;
        p->log[p->loglen] = '\0';
    }
    return true;
}

/* Reads what p wrote up to its exit (EOF on the pipe), for at most 1 s. */
static void drain_log(struct proc *p)
{
    long long deadline = tpt_now_ms() + 1000;
    struct pollfd pf = { .fd = p->err, .events = POLLIN };
    ssize_t n;

    while (p->loglen + 1 < sizeof(p->log) && tpt_now_ms() < deadline && poll(&pf, 1, 100) > 0) {
        n = read(p->err, p->log + p->loglen, sizeof(p->log) - 1 - p->loglen);
        if (n <= 0)
            break;
        p->loglen += (size_t)n;
        p->log[p->loglen] = '\0';
    }
}

/* TERM, then KILL after ms; returns the exit status (-1 if killed). */
static int stop(struct proc *p, int ms)
{
    long long deadline = tpt_now_ms() + ms;
    int status;
    size_t i;

    kill(p->pid, SIGTERM);
    while (waitpid(p->pid, &status, WNOHANG) == 0) {
        if (tpt_now_ms() > deadline) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            status = -1;
            break;
        }
        wait_log(p, "\1never", 10);
    }
    /* A second TERM ends a shutdown_delay at once: the exit may come
     * before the loop read the last lines. */
    drain_log(p);
    for (i = 0; i < nprocs; i++)
        if (procs[i] == p->pid)
            procs[i] = 0;
    close(p->err);
    return status == -1 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A connection to 127.0.0.1:port, or -1 if refused. */
static int dial(uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    cr_assert_geq(fd, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends request and reads until EOF (at most 5 s) into buf; returns the
 * bytes read, or -1 if nobody listens. */
static ssize_t exchange(uint16_t port, const char *request, char *buf, size_t cap)
{
    long long deadline = tpt_now_ms() + 5000;
    int fd = dial(port);
    size_t got = 0;
    ssize_t n;

    if (fd < 0)
        return -1;
    cr_assert_eq(write(fd, request, strlen(request)), (ssize_t)strlen(request));
    while (got < cap - 1) {
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        long long left = deadline - tpt_now_ms();

        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            break;
        if ((n = read(fd, buf + got, cap - 1 - got)) <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

/* Echoes n lines over one connection and checks they come back. */
static void echo_lines(uint16_t port, int n)
{
    char buf[4096];
    int fd = dial(port), i;
    size_t want = (size_t)n * 6, got = 0;
    ssize_t r;

    cr_assert_geq(fd, 0);
    for (i = 0; i < n; i++)
        cr_assert_eq(write(fd, "hello\n", 6), 6);
    while (got < want) {
        struct pollfd pf = { .fd = fd, .events = POLLIN };

        cr_assert_gt(poll(&pf, 1, 5000), 0, "echo timed out");
        r = read(fd, buf, sizeof(buf));
        cr_assert_gt(r, 0);
        got += (size_t)r;
    }
    close(fd);
}

/* The value of the sample that starts with `sample ` in a scrape. */
static long long sample(const char *text, const char *name)
{
    char want[256];
    const char *s;

    snprintf(want, sizeof(want), "\n%s ", name);
    s = strstr(text, want);
    cr_assert_not_null(s, "no %s in:\n%s", name, text);
    return atoll(s + strlen(want));
}

static uint16_t listener_port(struct proc *p, const char *app)
{
    char want[64];
    const char *at, *line;
    unsigned port;

    snprintf(want, sizeof(want), " (app %s,", app);
    cr_assert(wait_log(p, want, 10000), "no %s listener: %s", app, p->log);
    at = strstr(p->log, want);
    for (line = at; line > p->log && line[-1] != '\n'; line--)
        ;
    line = strstr(line, "listening on 127.0.0.1:");
    cr_assert(line != NULL && line < at, "%s", p->log);
    cr_assert_eq(sscanf(line, "listening on 127.0.0.1:%u", &port), 1);
    return (uint16_t)port;
}

/* The value of the query's series whose labels include every one of want
 * (`"label":"value"` strings), from a Prometheus /api/v1/query answer; -1 if
 * none. */
static long long series_value(const char *json, const char *const *want, size_t nwant)
{
    const char *s = json, *end, *v;
    size_t i;

    while ((s = strstr(s, "{\"metric\":")) != NULL) {
        end = strstr(s, "\"value\":[");
        if (end == NULL)
            return -1;
        for (i = 0; i < nwant; i++) {
            const char *hit = strstr(s, want[i]);

            if (hit == NULL || hit > end)
                break;
        }
        if (i == nwant && (v = strstr(end, ",\"")) != NULL)
            return atoll(v + 2);
        s = end;
    }
    return -1;
}

Test(metrics_e2e, prometheus_scrapes_tidepool_and_answers_a_query)
{
    static char answer[65536], yml[1024], path[PATH_MAX + 64], query[512];
    struct proc tp, prom;
    const char *tp_argv[] = { BIN, "-c", NULL, NULL };
    char listen_arg[64], cfg_arg[PATH_MAX + 32], data_arg[PATH_MAX + 32], listener[64];
    const char *prom_argv[] = { "prometheus", cfg_arg, listen_arg, data_arg, NULL };
    const char *want[2] = { "\"direction\":\"in\"", listener };
    uint16_t echo, metrics, port = tpt_free_port();
    long long v = -1, deadline;

    tp_argv[2] = put("t.conf", "workers 1;\nlisten 127.0.0.1:0;\n"
                               "listen 127.0.0.1:0 { app metrics; }\n");
    spawn(&tp, tp_argv, NULL);
    echo = listener_port(&tp, "echo");
    metrics = listener_port(&tp, "metrics");
    snprintf(listener, sizeof(listener), "\"listener\":\"127.0.0.1:%u\"", echo);

    snprintf(yml, sizeof(yml),
             "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
             "scrape_configs:\n  - job_name: tidepool\n    static_configs:\n"
             "      - targets: ['127.0.0.1:%u']\n", metrics);
    snprintf(cfg_arg, sizeof(cfg_arg), "--config.file=%s", put("prometheus.yml", yml));
    snprintf(listen_arg, sizeof(listen_arg), "--web.listen-address=127.0.0.1:%u", port);
    snprintf(data_arg, sizeof(data_arg), "--storage.tsdb.path=%s/data", dir);
    snprintf(path, sizeof(path), "%s/prometheus.log", dir);
    spawn(&prom, prom_argv, path);

    echo_lines(echo, 7);
    /* Scrapes every second; the first may come before the traffic. */
    snprintf(query, sizeof(query), "GET /api/v1/query?query=tidepool_messages_total HTTP/1.0\r\n"
             "Host: 127.0.0.1:%u\r\n\r\n", port);
    for (deadline = tpt_now_ms() + 30000; tpt_now_ms() < deadline; usleep(250000)) {
        if (exchange(port, query, answer, sizeof(answer)) <= 0)
            continue;                 /* not listening yet */
        if ((v = series_value(answer, want, 2)) > 0)
            break;
    }
    cr_expect_eq(v, 7, "tidepool_messages_total{listener=echo,direction=in}: %s", answer);
    cr_expect(strstr(answer, "\"status\":\"success\"") != NULL, "%s", answer);
    snprintf(query, sizeof(query), "GET /api/v1/query?query=up HTTP/1.0\r\n"
             "Host: 127.0.0.1:%u\r\n\r\n", port);
    cr_assert_gt(exchange(port, query, answer, sizeof(answer)), 0);
    cr_expect(strstr(answer, "\"job\":\"tidepool\"") != NULL && strstr(answer, ",\"1\"]") != NULL,
              "the target is up: %s", answer);
    cr_expect_eq(stop(&prom, 10000), 0, "prometheus did not stop cleanly");
    cr_expect_eq(stop(&tp, 10000), 0, "%s", tp.log);
}

/* A scrape of process k alone would see a share: every scrape must show the
 * whole, whichever process answers it. */
Test(metrics_e2e, processes_serve_the_sum_and_a_restart_keeps_it)
{
    static char text[1 << 17];
    const char *argv[] = { BIN, "-c", NULL, NULL };
    char conf[256], name[128], pid_pat[64];
    struct proc p;
    uint16_t echo = tpt_free_port(), metrics = tpt_free_port();
    int i, child = 0;
    const char *at;

    snprintf(conf, sizeof(conf), "processes 2;\nworkers 1;\nlisten 127.0.0.1:%u;\n"
             "listen 127.0.0.1:%u { app metrics; }\n", echo, metrics);
    argv[2] = put("p.conf", conf);
    spawn(&p, argv, NULL);
    cr_assert(wait_log(&p, "master: all 2 processes serve", 10000), "%s", p.log);
    for (i = 0; i < 20; i++)
        echo_lines(echo, 3);
    snprintf(name, sizeof(name), "tidepool_messages_total{listener=\"127.0.0.1:%u\",direction=\"in\"}",
             echo);
    /* New connections spread over both processes: each must say 60. */
    for (i = 0; i < 10; i++) {
        cr_assert_gt(exchange(metrics, "GET /metrics HTTP/1.0\r\n\r\n", text, sizeof(text)), 0);
        cr_expect_eq(sample(text, name), 60, "scrape %d:\n%s", i, text);
        cr_expect_eq(sample(text, "tidepool_connections_accepted_total") >= 20, 1);
    }
    cr_expect(strstr(text, "process_start_time_seconds{process=\"1\"} ") != NULL, "%s", text);
    cr_expect(strstr(text, "process_start_time_seconds{process=\"2\"} ") != NULL, "%s", text);
    /* Kill process #1: the master restarts it in its slot; the count stays. */
    snprintf(pid_pat, sizeof(pid_pat), "started process #1 (pid ");
    at = strstr(p.log, pid_pat);
    cr_assert_not_null(at, "%s", p.log);
    cr_assert_eq(sscanf(at + strlen(pid_pat), "%d", &child), 1);
    cr_assert_eq(kill(child, SIGKILL), 0);
    cr_assert(wait_log(&p, "restarting it", 5000), "%s", p.log);
    cr_assert(wait_log(&p, "started process #1 (pid ", 5000));
    for (i = 0; i < 200 && !strstr(p.log + (at - p.log) + 1, "#1 listening on"); i++)
        wait_log(&p, "\1never", 20);
    echo_lines(echo, 1);
    for (i = 0; i < 10; i++) {
        cr_assert_gt(exchange(metrics, "GET /metrics HTTP/1.0\r\n\r\n", text, sizeof(text)), 0);
        cr_expect_eq(sample(text, name), 61, "after the restart, scrape %d:\n%s", i, text);
    }
    cr_expect_eq(stop(&p, 15000), 0, "%s", p.log);
}

/* A load balancer must hear that the server drains before its port closes:
 * HAProxy's httpchk on /health marks it DOWN for a 503 during
 * shutdown_delay, while the traffic listener still accepts. */
Test(metrics_e2e, haproxy_sees_503_before_the_listener_closes)
{
    static char cfg[1024];
    const char *tp_argv[] = { BIN, "-c", NULL, NULL };
    const char *ha_argv[] = { "haproxy", "-db", "-f", NULL, NULL };
    char conf[256], buf[16];
    struct proc tp, ha;
    uint16_t echo = tpt_free_port(), metrics = tpt_free_port(), front = tpt_free_port();
    long long deadline;
    int fd = -1, n;
    const char *down;

    snprintf(conf, sizeof(conf), "workers 1;\nshutdown_delay 3s;\nlisten 127.0.0.1:%u;\n"
             "listen 127.0.0.1:%u { app metrics; }\n", echo, metrics);
    tp_argv[2] = put("t.conf", conf);
    spawn(&tp, tp_argv, NULL);
    listener_port(&tp, "metrics");
    snprintf(cfg, sizeof(cfg),
             "global\n    log stderr format raw local0\n"
             "defaults\n    mode tcp\n    log global\n    timeout connect 1s\n"
             "    timeout client 5s\n    timeout server 5s\n"
             "backend be\n    option httpchk GET /health\n    http-check send hdr Host t\n"
             "    server s1 127.0.0.1:%u check port %u inter 200 fall 1 rise 1\n"
             "frontend fe\n    bind 127.0.0.1:%u\n    default_backend be\n",
             echo, metrics, front);
    ha_argv[3] = put("haproxy.cfg", cfg);
    spawn(&ha, ha_argv, NULL);
    /* Through HAProxy to the echo listener. */
    for (deadline = tpt_now_ms() + 5000; tpt_now_ms() < deadline && (fd = dial(front)) < 0; usleep(50000))
        ;
    cr_assert_geq(fd, 0, "haproxy does not listen: %s", ha.log);
    cr_assert_eq(write(fd, "hi\n", 3), 3);
    for (n = 0; n < 3; ) {
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        ssize_t r;

        cr_assert_gt(poll(&pf, 1, 5000), 0, "no echo through haproxy: %s", ha.log);
        r = read(fd, buf + n, sizeof(buf) - (size_t)n);
        cr_assert_gt(r, 0, "%s", ha.log);
        n += (int)r;
    }
    close(fd);
    kill(tp.pid, SIGTERM);
    cr_assert(wait_log(&ha, "is DOWN", 5000), "haproxy did not take the server out: %s", ha.log);
    down = strstr(ha.log, "is DOWN");
    cr_expect(strstr(down, "code: 503") != NULL, "the check heard a 503: %s", down);
    /* The traffic listener is still open when HAProxy takes it out. */
    fd = dial(echo);
    cr_expect_geq(fd, 0, "the echo listener closed before haproxy saw the 503: %s", tp.log);
    if (fd >= 0)
        close(fd);
    cr_expect_neq(stop(&ha, 5000), -1, "haproxy did not stop on TERM: %s", ha.log);
    cr_expect_eq(stop(&tp, 15000), 0, "%s", tp.log);
    cr_expect(strstr(tp.log, "shutting down in 3000 ms (shutdown_delay)") != NULL, "%s", tp.log);
}
