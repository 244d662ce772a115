/* The built tidepool-stress end to end: against the built tidepool server in
 * every mode, against server threads here that corrupt one reply byte, never
 * answer, or answer half and close, against a port where nothing listens,
 * and --mode chat against a real redis-server (pub/sub) and tidepool.
 * Every child and server thread is stopped and reaped (.fini too, if an
 * assertion ends a test early); every wait is bounded. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STRESS TP_BIN_DIR "/tidepool-stress"
#define SERVER TP_BIN_DIR "/tidepool"
#define LOG_MAX 65536

struct server {
    pid_t pid;
    int err_fd;               /* its stderr */
    unsigned port;
    char conf[64];
    char log[LOG_MAX];
    size_t loglen;
};

struct run {
    int code;                 /* exit code; 128 + signal if killed */
    char out[LOG_MAX];        /* stdout and stderr together */
    size_t len;
};

static struct server srv = { .pid = -1, .err_fd = -1 };
static struct server srv2 = { .pid = -1, .err_fd = -1 };  /* a second instance */
static const char *server_fault;   /* TP_FAULT for the next server (suite fault) */
static pid_t stress_pid = -1;
static struct run res;
static char json_path[64];

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Appends what fd has to buf until needle shows up (NULL: EOF) or the
 * deadline passes. Returns whether needle (or EOF) was seen. */
static bool read_until(int fd, char *buf, size_t *len, const char *needle, uint64_t deadline)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    uint64_t now;
    ssize_t n;

    while ((now = now_ms()) < deadline) {
        if (needle != NULL && strstr(buf, needle) != NULL)
            return true;
        if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
            continue;
        n = read(fd, buf + *len, LOG_MAX - 1 - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return needle == NULL;
        *len += (size_t)n;
        buf[*len] = '\0';
        if (*len == LOG_MAX - 1)
            *len = 0;        /* keep reading; only the tail matters */
    }
    return needle != NULL && strstr(buf, needle) != NULL;
}

/* Waits up to ms for pid; 1 and *status if it exited, 0 if not. */
static int wait_for(pid_t pid, int *status, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;

    do {
        if (waitpid(pid, status, WNOHANG) == pid)
            return 1;
        usleep(10000);
    } while (now_ms() < deadline);
    return 0;
}

/* Waits up to 5 s for pid to exit, then SIGKILLs it; always reaped.
 * Returns the wait status. */
static int reap(pid_t pid)
{
    int status = 0;

    if (!wait_for(pid, &status, 5000)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    return status;
}

/* Starts the built server as s with conf (one listener on 127.0.0.1 running
 * app) and learns its port from its "listening on" line. */
static void server_start_as(struct server *s, const char *conf, const char *app)
{
    char ready[64], pat[64];
    const char *line;
    size_t len = strlen(conf);
    int fd, p[2];

    snprintf(s->conf, sizeof(s->conf), "/tmp/tp_e2e_stress_XXXXXX");
    fd = mkstemp(s->conf);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, conf, len), (ssize_t)len);
    close(fd);
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    s->pid = fork();
    cr_assert_geq(s->pid, 0);
    if (s->pid == 0) {
        dup2(p[1], STDERR_FILENO);
        if (server_fault != NULL) {
            /* The shim sits under the sanitizers' runtime, not before it. */
            setenv("LD_PRELOAD", TP_BIN_DIR "/libtp_fault.so", 1);
            setenv("TP_FAULT", server_fault, 1);
            setenv("ASAN_OPTIONS", "verify_asan_link_order=0:detect_leaks=1", 1);
        }
        execl(SERVER, "tidepool", "-c", s->conf, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    s->err_fd = p[0];
    s->loglen = 0;
    s->log[0] = '\0';
    snprintf(ready, sizeof(ready), "(app %s, framing line)", app);
    cr_assert(read_until(s->err_fd, s->log, &s->loglen, ready, now_ms() + 10000),
              "server did not start: %s", s->log);
    line = strstr(s->log, "listening on 127.0.0.1:");
    cr_assert_not_null(line, "%s", s->log);
    snprintf(pat, sizeof(pat), "listening on 127.0.0.1:%%u (app %s", app);
    cr_assert_eq(sscanf(line, pat, &s->port), 1);
    cr_assert_gt(s->port, 0);
}

static void server_start_conf(const char *conf, const char *app)
{
    server_start_as(&srv, conf, app);
}

/* The built server on 127.0.0.1:0, echo, two workers. */
static void server_start(void)
{
    server_start_conf("listen 127.0.0.1:0;\nworkers 2;\n", "echo");
}

/* Stops server s and returns the "messages N" of its stats line, or -1. */
static long long server_stop_as(struct server *s)
{
    const char *stats;
    long long msgs = -1;

    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGCONT);   /* a test may have ended while it was stopped */
    kill(s->pid, SIGTERM);
    read_until(s->err_fd, s->log, &s->loglen, NULL, now_ms() + 5000);
    reap(s->pid);
    s->pid = -1;
    close(s->err_fd);
    s->err_fd = -1;
    unlink(s->conf);
    stats = strstr(s->log, "stats:");
    if (stats != NULL && (stats = strstr(stats, "messages ")) != NULL)
        msgs = atoll(stats + 9);
    return msgs;
}

static long long server_stop(void)
{
    return server_stop_as(&srv);
}

static void fixture_stop(void);
static void redis_stop(void);

static void cleanup(void)
{
    if (stress_pid > 0) {
        kill(stress_pid, SIGKILL);
        reap(stress_pid);
        stress_pid = -1;
    }
    server_stop();
    server_stop_as(&srv2);
    fixture_stop();
    redis_stop();
    if (json_path[0] != '\0')
        unlink(json_path);
}

TestSuite(stress, .fini = cleanup, .timeout = 60);

/* Starts tidepool-stress with the NULL-terminated arguments; output to a pipe. */
static int stress_spawn(const char *first, va_list ap)
{
    char *argv[40];
    int argc = 0, p[2];
    const char *a;

    argv[argc++] = (char *)"tidepool-stress";
    for (a = first; a != NULL && argc < 39; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    argv[argc] = NULL;
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    stress_pid = fork();
    cr_assert_geq(stress_pid, 0);
    if (stress_pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        dup2(p[1], STDERR_FILENO);
        execv(STRESS, argv);
        _exit(127);
    }
    close(p[1]);
    res.len = 0;
    res.out[0] = '\0';
    return p[0];
}

/* Collects the output until EOF (at most limit_ms) and reaps the tool. */
static void stress_finish(int fd, int limit_ms)
{
    int status;

    read_until(fd, res.out, &res.len, NULL, now_ms() + (uint64_t)limit_ms);
    close(fd);
    status = reap(stress_pid);
    stress_pid = -1;
    res.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    /* Under -DTP_SANITIZE the tool's own reports land here. */
    cr_assert_null(strstr(res.out, "Sanitizer"), "%s", res.out);
    cr_assert_null(strstr(res.out, "runtime error"), "%s", res.out);
}

/* Starts tidepool-stress in the background; stress_finish() collects it. */
static int stress_start(const char *first, ...)
{
    va_list ap;
    int fd;

    va_start(ap, first);
    fd = stress_spawn(first, ap);
    va_end(ap);
    return fd;
}

/* Runs tidepool-stress to the end (bounded by 30 s); fills res. */
static void stress(const char *first, ...)
{
    va_list ap;
    int fd;

    va_start(ap, first);
    fd = stress_spawn(first, ap);
    va_end(ap);
    stress_finish(fd, 30000);
}

static const char *target(unsigned port)
{
    static char buf[32];

    snprintf(buf, sizeof(buf), "127.0.0.1:%u", port);
    return buf;
}

static const char *new_json_path(void)
{
    snprintf(json_path, sizeof(json_path), "/tmp/tp_e2e_stress_%d.json", (int)getpid());
    unlink(json_path);
    return json_path;
}

static char json[16384];

static void json_load(void)
{
    FILE *f = fopen(json_path, "r");
    size_t n;

    cr_assert_not_null(f, "no --json file; output:\n%s", res.out);
    n = fread(json, 1, sizeof(json) - 1, f);
    json[n] = '\0';
    fclose(f);
    cr_assert_eq(json[0], '{');
    cr_assert_not_null(strstr(json, "}"));
}

/* The number after "key": (keys are unique in the schema). */
static double jnum(const char *key)
{
    char pat[64], *end;
    const char *p;
    double v;

    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(json, pat);
    cr_assert_not_null(p, "no %s in %s", key, json);
    v = strtod(p + strlen(pat), &end);
    cr_assert_neq(end, p + strlen(pat), "%s is not a number in %s", key, json);
    return v;
}

/* The number after the first "key": inside the object named obj. */
static double jin(const char *obj, const char *key)
{
    char pat[64], *end;
    const char *p;
    double v;

    snprintf(pat, sizeof(pat), "\"%s\":{", obj);
    p = strstr(json, pat);
    cr_assert_not_null(p, "no %s object in %s", obj, json);
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(p, pat);
    cr_assert_not_null(p, "no %s %s in %s", obj, key, json);
    v = strtod(p + strlen(pat), &end);
    cr_assert_neq(end, p + strlen(pat), "%s %s is not a number in %s", obj, key, json);
    return v;
}

static double jprobe(const char *key)
{
    return jin("probe", key);
}

/* The number after "key " in the stopped server's stats line, or -1. */
static long long server_stat(const char *key)
{
    const char *p = strstr(srv.log, "stats:");
    char pat[64];

    snprintf(pat, sizeof(pat), " %s ", key);
    if (p == NULL || (p = strstr(p, pat)) == NULL)
        return -1;
    return atoll(p + strlen(pat));
}

static bool jtrue(const char *key)
{
    char pat[64];

    snprintf(pat, sizeof(pat), "\"%s\":true", key);
    return strstr(json, pat) != NULL;
}

/* ----------------------------------------------------------------- tests */

Test(stress, echo_with_verify_runs_clean_on_two_threads)
{
    server_start();
    stress("-c", "8", "-t", "2", "-d", "500ms", "-p", "2", "-q", target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "8 requested, 8 opened, 8 open at end"), "%s", res.out);
    cr_assert_not_null(strstr(res.out, "mismatch 0"), "%s", res.out);
    cr_assert_not_null(strstr(res.out, "latency"), "%s", res.out);
    cr_assert_null(strstr(res.out, "\r"), "no progress line when stdout is a pipe");
}

Test(stress, message_limit_is_exact_and_agrees_with_the_server)
{
    server_start();
    stress("-c", "5", "-t", "2", "-n", "1000", "-p", "3", "-s", "100", "--json",
           new_json_path(), target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    json_load();
    cr_assert_eq(jnum("messages"), 1000, "%s", json);
    cr_assert_eq(jnum("bytes"), 100000, "%s", json);
    cr_assert(jtrue("ok"));
    cr_assert_eq(server_stop(), 1000, "server log: %s", srv.log);
}

Test(stress, json_has_every_field_of_the_schema)
{
    static const char *keys[] = {
        "threads", "size", "depth", "rate", "requested", "opened", "open_at_end",
        "duration_s", "messages", "msgs_per_s", "bytes", "mb_per_s", "connects_per_s",
        "sent", "in_flight_at_end", "p50", "p90", "p99", "p999", "max", "mean", "refused", "reset", "timeout",
        "mismatch", "closed_early", "other",
    };
    size_t i;

    server_start();
    stress("-c", "4", "-d", "300ms", "--json", new_json_path(), target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    json_load();
    cr_assert_not_null(strstr(json, "\"tool\":\"tidepool-stress\""), "%s", json);
    cr_assert_not_null(strstr(json, "\"version\":\""), "%s", json);
    cr_assert_not_null(strstr(json, "\"mode\":\"echo\""), "%s", json);
    cr_assert_not_null(strstr(json, "\"target\":\"127.0.0.1:"), "%s", json);
    cr_assert_not_null(strstr(json, "\"connections\":{"), "%s", json);
    cr_assert_not_null(strstr(json, "\"latency_us\":{"), "%s", json);
    cr_assert_not_null(strstr(json, "\"errors\":{"), "%s", json);
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        (void)jnum(keys[i]);
    cr_assert_eq(jnum("requested"), 4);
    cr_assert_eq(jnum("opened"), 4);
    cr_assert_eq(jnum("open_at_end"), 4);
    cr_assert_gt(jnum("messages"), 0);
    cr_assert_gt(jnum("msgs_per_s"), 0);
    cr_assert_geq(jnum("duration_s"), 0.29);
    cr_assert_lt(jnum("duration_s"), 2.0);
    cr_assert_leq(jnum("p50"), jnum("p99"));
    cr_assert_leq(jnum("p99"), jnum("max"));
    cr_assert_gt(jnum("mean"), 0);
    cr_assert_geq(jnum("sent"), jnum("messages"));
    cr_assert_eq(jnum("sent") - jnum("messages"), jnum("in_flight_at_end"), "%s", json);
    cr_assert_leq(jnum("in_flight_at_end"), 4, "-c 4 -p 1: %s", json);
    cr_assert(jtrue("ok"));
    cr_assert_not_null(strstr(json, "\"ok\":true,\"why\":\"\",\n \"latency_distribution\":[["), "%s", json);
}

Test(stress, rate_paces_the_messages)
{
    double n;

    server_start();
    stress("-c", "4", "-r", "200", "-d", "1s", "--json", new_json_path(), target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    json_load();
    n = jnum("messages");
    /* 200/s for 1 s: about 200 (the schedule starts once connected). */
    cr_assert(n >= 150 && n <= 205, "%g messages at -r 200 for 1 s: %s", n, json);
    cr_assert_eq(jnum("rate"), 200);
}

Test(stress, issue_7_paced_latency_after_a_server_stall_stays_within_the_run)
{
    int fd;

    /* --ramp 0.5 opens one of the 4 connections in the run, so the pacer
     * hands that one all 2,000 msgs/s; stopping the server for 300 ms piles
     * up 600 of them. Each must be timed from its own intended send time. */
    server_start();
    fd = stress_start("-c", "4", "--ramp", "0.5", "-r", "2000", "-d", "1500ms", "--json",
                      new_json_path(), target(srv.port), NULL);
    usleep(500 * 1000);
    cr_assert_eq(kill(srv.pid, SIGSTOP), 0);
    usleep(300 * 1000);
    cr_assert_eq(kill(srv.pid, SIGCONT), 0);
    stress_finish(fd, 15000);
    json_load();
    cr_assert_eq(jnum("opened"), 1, "%s", json);
    cr_assert_gt(jnum("messages"), 1000, "%s", json);
    cr_assert_lt(jnum("max"), 5e6, "a latency longer than the run: %s", json);
    cr_assert_geq(jnum("max"), 250e3, "the stall shows in the latency: %s", json);
    cr_assert_lt(jnum("p90"), 1e6, "%s", json);
    cr_assert_eq(res.code, 0, "%s", res.out);
}

Test(stress, hold_keeps_connections_open)
{
    server_start();
    stress("--mode", "hold", "-c", "20", "-t", "2", "-d", "400ms", "--json", new_json_path(),
           target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    json_load();
    cr_assert_eq(jnum("opened"), 20, "%s", json);
    cr_assert_eq(jnum("open_at_end"), 20, "%s", json);
    cr_assert_eq(jnum("messages"), 0, "%s", json);
    cr_assert_eq(jnum("closed_early"), 0, "%s", json);
}

Test(stress, hold_fails_when_the_server_closes_the_connections)
{
    int fd;

    server_start();
    fd = stress_start("--mode", "hold", "-c", "10", "-d", "20s", "--json", new_json_path(),
                      target(srv.port), NULL);
    usleep(700 * 1000);
    server_stop();            /* a graceful stop closes every connection */
    stress_finish(fd, 15000);
    cr_assert_eq(res.code, 1, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "not ok: 10 errors: "), "%s", res.out);
    json_load();
    cr_assert_eq(jnum("opened"), 10, "%s", json);
    cr_assert_eq(jnum("open_at_end"), 0, "%s", json);
    cr_assert_eq(jnum("closed_early") + jnum("reset"), 10, "%s", json);
    cr_assert_lt(jnum("duration_s"), 10, "ended when every connection was gone: %s", json);
    cr_assert_not_null(strstr(json, "\"ok\":false"), "%s", json);
}

/* A rolling restart: a second instance binds the same port (reuseport), the
 * first stops gracefully. With --reconnect every connection the first one
 * closed is replaced, the new ones reach the second instance, and the run
 * is ok: a close at a message boundary is not an error, and no reply is
 * lost or corrupted. */
Test(stress, reconnect_replaces_the_connections_a_stopping_server_closes)
{
    char conf[128];
    long long first, second;
    int fd;

    server_start_conf("listen 127.0.0.1:0 { reuseport on; }\nworkers 2;\n", "echo");
    fd = stress_start("--reconnect", "-c", "20", "-p", "4", "-d", "2500ms", "--json",
                      new_json_path(), target(srv.port), NULL);
    usleep(600 * 1000);
    snprintf(conf, sizeof(conf), "listen 127.0.0.1:%u { reuseport on; }\nworkers 2;\n",
             srv.port);
    server_start_as(&srv2, conf, "echo");
    first = server_stop();          /* graceful: its 20 connections close */
    stress_finish(fd, 15000);
    second = server_stop_as(&srv2);
    cr_assert_eq(res.code, 0, "%s", res.out);
    json_load();
    cr_assert_eq(jnum("mismatch") + jnum("closed_early") + jnum("reset"), 0, "%s", json);
    cr_assert_eq(jnum("closed_by_server"), 20, "%s", json);
    cr_assert_geq(jnum("reconnects"), 20, "%s", json);
    cr_assert_eq(jnum("opened"), 20 + jnum("reconnects"), "%s", json);
    cr_assert_eq(jnum("open_at_end"), 20, "%s", json);
    cr_assert_leq(jnum("lost_at_close"), 20 * 4, "%s", json);
    cr_assert_gt(first, 0, "%s", srv.log);
    cr_assert_gt(second, 0, "the new connections did not reach the second instance: %s",
                 srv2.log);
    cr_assert_geq((double)(first + second), jnum("messages"), "%s", json);
    cr_assert_leq((double)(first + second),
                  jnum("messages") + jnum("in_flight_at_end") + jnum("lost_at_close"),
                  "the servers read more than the tool sent: %s", json);
}

Test(stress, hold_fails_when_not_every_connection_opened)
{
    /* --ramp 2: connections at 0 and 500 ms, so 2 of the 4 in 700 ms. */
    server_start();
    stress("--mode", "hold", "-c", "4", "--ramp", "2", "-d", "700ms", "--json",
           new_json_path(), target(srv.port), NULL);
    cr_assert_eq(res.code, 1, "%s", res.out);
    cr_assert_not_null(strstr(res.out,
                              "not ok: 2 of 4 connections opened, 2 still open at the end\n"),
                       "%s", res.out);
    json_load();
    cr_assert_eq(jnum("opened"), 2, "%s", json);
    cr_assert_eq(jnum("open_at_end"), 2, "%s", json);
}

Test(stress, storm_cycles_connections)
{
    server_start();
    stress("--mode", "storm", "-c", "4", "-t", "2", "-d", "500ms", "--json", new_json_path(),
           target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "connects/s"), "%s", res.out);
    json_load();
    cr_assert_gt(jnum("messages"), 10, "%s", json);
    cr_assert_gt(jnum("connects_per_s"), 10, "%s", json);
    cr_assert_geq(jnum("opened"), jnum("messages"), "%s", json);
    cr_assert_eq(jnum("mismatch"), 0, "%s", json);
}

Test(stress, storm_message_limit_is_exact)
{
    server_start();
    stress("--mode", "storm", "-c", "3", "-n", "50", "--json", new_json_path(),
           target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    json_load();
    cr_assert_eq(jnum("messages"), 50, "%s", json);
    cr_assert_eq(server_stop(), 50, "server log: %s", srv.log);
}

Test(stress, slow_sends_without_reading)
{
    server_start();
    stress("--mode", "slow", "-c", "2", "-s", "1k", "-d", "500ms", "--json", new_json_path(),
           target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "replies not read"), "%s", res.out);
    json_load();
    cr_assert_gt(jnum("bytes"), 1024, "%s", json);
    cr_assert_eq(jnum("opened"), 2, "%s", json);
}

Test(stress, flood_verifies_the_echo_and_counts_lines_and_bytes)
{
    server_start();
    stress("--mode", "flood", "-c", "4", "-t", "2", "-s", "15", "-d", "500ms", "--json",
           new_json_path(), target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "lines verified back of"), "%s", res.out);
    cr_assert_not_null(strstr(res.out, "latency is not measured"), "%s", res.out);
    json_load();
    cr_assert_not_null(strstr(json, "\"mode\":\"flood\""), "%s", json);
    cr_assert_eq(jnum("opened"), 4, "%s", json);
    cr_assert_eq(jnum("open_at_end"), 4, "%s", json);
    cr_assert_eq(jnum("mismatch"), 0, "%s", json);
    cr_assert_gt(jnum("bytes"), 15 * 1000, "%s", json);
    cr_assert_gt(jnum("mb_per_s"), 0, "%s", json);
    cr_assert_gt(jnum("msgs_per_s"), 0, "%s", json);
    cr_assert_eq(jnum("window"), 4 << 20, "%s", json);
    /* Lines back are whole 15-byte lines of the bytes back. */
    cr_assert_leq(jnum("messages") * 15, jnum("bytes"), "%s", json);
    cr_assert_gt(jnum("messages") * 15 + 4 * 15, jnum("bytes"), "%s", json);
    cr_assert_geq(jnum("sent_bytes"), jnum("bytes"), "%s", json);
    cr_assert_leq(jnum("sent_bytes") - jnum("bytes"), 4.0 * (4 << 20), "within the window: %s", json);
    cr_assert_eq(jnum("sent") - jnum("messages"), jnum("in_flight_at_end"), "%s", json);
    cr_assert_eq(jnum("p99"), 0, "no latency in flood mode: %s", json);
    cr_assert(jtrue("ok"));
}

Test(stress, flood_message_limit_is_exact_and_agrees_with_the_server)
{
    server_start();
    stress("--mode", "flood", "-c", "3", "-t", "2", "-s", "20", "-n", "100000", "--json",
           new_json_path(), target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    json_load();
    cr_assert_eq(jnum("messages"), 100000, "%s", json);
    cr_assert_eq(jnum("bytes"), 2000000, "%s", json);
    cr_assert_eq(jnum("sent_bytes"), 2000000, "%s", json);
    cr_assert_eq(jnum("in_flight_at_end"), 0, "%s", json);

    /* A 1 KiB window: each connection stops and resumes hundreds of times. */
    stress("--mode", "flood", "-c", "2", "-s", "20", "-n", "20000", "--window", "1k", "-d", "5s",
           "--json", new_json_path(), target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    json_load();
    cr_assert_eq(jnum("messages"), 20000, "%s", json);
    cr_assert_eq(jnum("sent_bytes"), 400000, "%s", json);
    cr_assert_eq(server_stop(), 120000, "server log: %s", srv.log);
}

Test(stress, flood_against_upper_counts_each_connection_as_a_mismatch)
{
    /* The payload after "SEQ:CONN " is lower-case letters; upper turns them
     * into capitals, so every connection's stream differs at its byte 4. */
    server_start_conf("listen 127.0.0.1:0 { app upper; }\nworkers 2;\n", "upper");
    stress("--mode", "flood", "-c", "3", "-s", "15", "-d", "2s", "--json", new_json_path(),
           target(srv.port), NULL);
    cr_assert_eq(res.code, 1, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "at byte 4 (message 0, byte 4): expected 0x65 'e', "
                              "got 0x45 'E'"), "%s", res.out);
    cr_assert_not_null(strstr(res.out, "not ok: 3 errors: mismatch 3\n"), "%s", res.out);
    json_load();
    cr_assert_eq(jnum("mismatch"), 3, "%s", json);
    cr_assert_eq(jnum("messages"), 0, "%s", json);
    cr_assert_eq(jnum("open_at_end"), 0, "%s", json);
    cr_assert_lt(jnum("duration_s"), 1.5, "ended when every connection was gone: %s", json);
    cr_assert_not_null(strstr(json, "\"ok\":false,\"why\":\"3 errors: mismatch 3\""), "%s", json);

    /* With --verify off the same bytes pass. */
    stress("--mode", "flood", "--verify", "off", "-c", "3", "-s", "15", "-d", "300ms",
           target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
}

Test(stress, probe_opens_a_new_connection_each_time_beside_echo)
{
    long long accepted;
    double n;

    server_start();
    stress("-c", "2", "-d", "1s", "--probe", "100ms", "--json", new_json_path(),
           target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "probe        every 100 ms"), "%s", res.out);
    json_load();
    n = jprobe("count");
    /* One at 0 ms, then every 100 ms: 10 in 1 s (the last may be cut off). */
    cr_assert(n >= 5 && n <= 11, "%g probes in 1 s at 100 ms: %s", n, json);
    cr_assert_eq(jprobe("every_ms"), 100, "%s", json);
    cr_assert_gt(jprobe("p50"), 0, "%s", json);
    cr_assert_leq(jprobe("p50"), jprobe("p99"), "%s", json);
    cr_assert_leq(jprobe("p99"), jprobe("max"), "%s", json);
    /* The slowest probe: its own time (the histogram's max is a bucket's
     * edge), the connect inside it, and when in the 1 s it began. */
    cr_assert_geq(jin("slowest", "latency_us"), jprobe("p50") * 0.95, "%s", json);
    cr_assert_leq(jin("slowest", "latency_us"), jprobe("max") * 1.05 + 1, "%s", json);
    cr_assert_gt(jin("slowest", "connect_us"), 0, "%s", json);
    cr_assert_leq(jin("slowest", "connect_us"), jin("slowest", "latency_us"), "%s", json);
    cr_assert(jin("slowest", "at_s") >= 0 && jin("slowest", "at_s") < 1.05, "%s", json);
    cr_assert_eq(jprobe("timeout"), 0, "%s", json);
    cr_assert(jtrue("ok"));
    server_stop();
    accepted = server_stat("accepted");
    cr_assert(accepted >= 2 + (long long)n && accepted <= 3 + (long long)n,
              "the server accepted %lld: 2 + one per probe (%g): %s", accepted, n, srv.log);
}

Test(stress, probe_runs_beside_flood)
{
    server_start();
    stress("--mode", "flood", "-c", "4", "-s", "15", "-d", "1s", "--probe", "100ms", "--json",
           new_json_path(), target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    json_load();
    cr_assert_geq(jprobe("count"), 3, "%s", json);
    cr_assert_gt(jprobe("max"), 0, "%s", json);
    cr_assert_gt(jnum("bytes"), 0, "%s", json);
}

/* Server threads here, each misbehaving in one way. */
enum fixture_kind {
    FIX_CORRUPT,     /* echoes, but changes byte CORRUPT_AT of the first connection */
    FIX_SILENT,      /* reads everything and never answers */
    FIX_HALF,        /* echoes half of its first read on a connection, then closes it */
};
#define CORRUPT_AT 100
#define MAX_PEERS 16

struct fixture {
    enum fixture_kind kind;
    int lfd;
    unsigned port;
    atomic_bool stop;
    bool started;
    pthread_t tid;
};

static struct fixture fix = { .lfd = -1 };

/* Answers the r bytes just read into buf from fd, the connection's first
 * *off bytes having come before them. Returns false to close it. */
static bool fixture_answer(int fd, char *buf, ssize_t r, uint64_t *off)
{
    switch (fix.kind) {
    case FIX_SILENT:
        return true;
    case FIX_HALF:
        send(fd, buf, (size_t)r / 2, MSG_NOSIGNAL);
        return false;
    case FIX_CORRUPT:
        if (*off <= CORRUPT_AT && *off + (uint64_t)r > CORRUPT_AT)
            buf[CORRUPT_AT - *off] = buf[CORRUPT_AT - *off] == '#' ? '%' : '#';
        *off += (uint64_t)r;
        return send(fd, buf, (size_t)r, MSG_NOSIGNAL) == r;
    }
    return false;
}

static void *fixture_main(void *arg)
{
    struct pollfd pfd[MAX_PEERS + 1];
    uint64_t off[MAX_PEERS + 1] = { 0 }, deadline = now_ms() + 30000;
    int n = 1, i, accepted = 0;
    char buf[4096];
    ssize_t r;

    (void)arg;
    pfd[0] = (struct pollfd){ .fd = fix.lfd, .events = POLLIN };
    while (!atomic_load(&fix.stop) && now_ms() < deadline) {
        if (poll(pfd, (nfds_t)n, 50) <= 0)
            continue;
        if ((pfd[0].revents & POLLIN) && n <= MAX_PEERS) {
            int c = accept(fix.lfd, NULL, NULL);

            if (c >= 0) {
                off[n] = accepted++ == 0 ? 0 : UINT64_MAX / 2;   /* corrupt only the first */
                pfd[n++] = (struct pollfd){ .fd = c, .events = POLLIN };
            }
        }
        for (i = 1; i < n; i++) {
            if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            r = read(pfd[i].fd, buf, sizeof(buf));
            if (r <= 0 || !fixture_answer(pfd[i].fd, buf, r, &off[i])) {
                close(pfd[i].fd);
                pfd[i].fd = -1;
            }
        }
    }
    for (i = 1; i < n; i++)
        if (pfd[i].fd >= 0)
            close(pfd[i].fd);
    return NULL;
}

/* A listening socket on 127.0.0.1:0; returns its fd and port. */
static int listen_any(unsigned *port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

/* Starts the fixture server thread of that kind on 127.0.0.1:fix.port. */
static void fixture_start(enum fixture_kind kind)
{
    fix.kind = kind;
    atomic_store(&fix.stop, false);
    fix.lfd = listen_any(&fix.port);
    cr_assert_eq(listen(fix.lfd, 64), 0);
    cr_assert_eq(pthread_create(&fix.tid, NULL, fixture_main, NULL), 0);
    fix.started = true;
}

/* Stops and joins the fixture thread (within 50 ms of a poll) if running. */
static void fixture_stop(void)
{
    if (fix.started) {
        atomic_store(&fix.stop, true);
        pthread_join(fix.tid, NULL);
        fix.started = false;
    }
    if (fix.lfd >= 0) {
        close(fix.lfd);
        fix.lfd = -1;
    }
}

Test(stress, a_corrupted_reply_is_a_mismatch_and_fails_the_run)
{
    fixture_start(FIX_CORRUPT);
    stress("-c", "2", "-d", "700ms", "--json", new_json_path(), target(fix.port), NULL);
    fixture_stop();
    cr_assert_eq(res.code, 1, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "mismatch on connection"), "%s", res.out);
    cr_assert_not_null(strstr(res.out, "at byte 100 "), "%s", res.out);
    cr_assert_not_null(strstr(res.out, "mismatch 1,"), "%s", res.out);
    cr_assert_not_null(strstr(res.out, "not ok: 1 error: mismatch 1\n"), "%s", res.out);
    json_load();
    cr_assert_eq(jnum("mismatch"), 1, "%s", json);
    cr_assert_eq(jnum("open_at_end"), 1, "the other connection carried on: %s", json);
    cr_assert_not_null(strstr(json, "\"ok\":false,\"why\":\"1 error: mismatch 1\""), "%s", json);
}

Test(stress, issue_7_a_server_that_never_answers_fails_the_run)
{
    fixture_start(FIX_SILENT);
    stress("-c", "2", "-p", "3", "-d", "400ms", "--json", new_json_path(), target(fix.port),
           NULL);
    cr_assert_eq(res.code, 1, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "not ok: no reply came back (6 messages sent)\n"),
                       "%s", res.out);
    json_load();
    cr_assert_eq(jnum("opened"), 2, "%s", json);
    cr_assert_eq(jnum("messages"), 0, "%s", json);
    cr_assert_eq(jnum("sent"), 6, "%s", json);
    cr_assert_eq(jnum("in_flight_at_end"), 6, "%s", json);
    cr_assert_not_null(strstr(json, "\"ok\":false,\"why\":\"no reply came back"), "%s", json);

    /* Storm against it: every cycle still waits for its reply at the end. */
    stress("--mode", "storm", "-c", "2", "-d", "400ms", "--json", new_json_path(),
           target(fix.port), NULL);
    fixture_stop();
    cr_assert_eq(res.code, 1, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "not ok: no connect-send-reply-close cycle completed"),
                       "%s", res.out);
    json_load();
    cr_assert_eq(jnum("messages"), 0, "%s", json);
    cr_assert_not_null(strstr(json, "\"ok\":false"), "%s", json);
}

Test(stress, issue_7_a_server_that_truncates_replies_and_closes_fails_the_run)
{
    fixture_start(FIX_HALF);
    stress("-c", "2", "-d", "5s", "--json", new_json_path(), target(fix.port), NULL);
    fixture_stop();
    cr_assert_eq(res.code, 1, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "not ok: 2 errors: closed_early 2\n"), "%s", res.out);
    json_load();
    cr_assert_eq(jnum("opened"), 2, "%s", json);
    cr_assert_eq(jnum("messages"), 0, "%s", json);
    cr_assert_eq(jnum("bytes"), 64, "half of each 64-byte message came back: %s", json);
    cr_assert_eq(jnum("closed_early"), 2, "%s", json);
    cr_assert_eq(jnum("open_at_end"), 0, "%s", json);
    cr_assert_lt(jnum("duration_s"), 2, "ended when both were closed, not after -d: %s", json);
    cr_assert_not_null(strstr(json, "\"ok\":false,\"why\":\"2 errors: closed_early 2\""),
                       "%s", json);
}

Test(stress, flood_stops_sending_at_the_window_while_nothing_comes_back)
{
    fixture_start(FIX_SILENT);
    stress("--mode", "flood", "-c", "2", "--window", "64k", "-d", "500ms", "--json",
           new_json_path(), target(fix.port), NULL);
    fixture_stop();
    cr_assert_eq(res.code, 1, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "not ok: no echoed byte came back (131072 bytes sent)\n"),
                       "%s", res.out);
    json_load();
    cr_assert_eq(jnum("sent_bytes"), 2 * 65536, "64 KiB each, then it waits: %s", json);
    cr_assert_eq(jnum("window"), 65536, "%s", json);
    cr_assert_eq(jnum("bytes"), 0, "%s", json);
    cr_assert_eq(jnum("open_at_end"), 2, "%s", json);
}

Test(stress, flood_bytes_unanswered_past_the_timeout_are_errors)
{
    fixture_start(FIX_SILENT);
    stress("--mode", "flood", "-c", "2", "--timeout", "300ms", "-d", "5s", "--json",
           new_json_path(), target(fix.port), NULL);
    fixture_stop();
    cr_assert_eq(res.code, 1, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "not ok: 2 errors: timeout 2\n"), "%s", res.out);
    json_load();
    cr_assert_eq(jnum("timeout"), 2, "%s", json);
    cr_assert_lt(jnum("duration_s"), 3, "ended when both timed out: %s", json);
}

Test(stress, flood_finds_one_corrupted_byte_at_its_offset)
{
    fixture_start(FIX_CORRUPT);
    stress("--mode", "flood", "-c", "2", "-s", "15", "-d", "700ms", "--json", new_json_path(),
           target(fix.port), NULL);
    fixture_stop();
    cr_assert_eq(res.code, 1, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "at byte 100 (message 6, byte 10)"), "%s", res.out);
    cr_assert_not_null(strstr(res.out, "not ok: 1 error: mismatch 1\n"), "%s", res.out);
    json_load();
    cr_assert_eq(jnum("mismatch"), 1, "%s", json);
    cr_assert_eq(jnum("open_at_end"), 1, "the other connection carried on: %s", json);
    cr_assert_gt(jnum("bytes"), 100, "%s", json);
}

Test(stress, a_probe_without_a_reply_is_a_timeout_error)
{
    /* Hold keeps its one connection open and asks nothing of the server;
     * the probes wait for replies that never come. */
    fixture_start(FIX_SILENT);
    stress("--mode", "hold", "-c", "1", "-d", "1s", "--probe", "300ms", "--timeout", "200ms",
           "--json", new_json_path(), target(fix.port), NULL);
    fixture_stop();
    cr_assert_eq(res.code, 1, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "probe 1: no reply within --timeout"), "%s", res.out);
    cr_assert_not_null(strstr(res.out, "not ok: probe: "), "%s", res.out);
    json_load();
    cr_assert_eq(jprobe("count"), 0, "%s", json);
    cr_assert(jprobe("timeout") >= 2 && jprobe("timeout") <= 4, "%s", json);
    cr_assert_eq(jnum("timeout"), 0, "the load itself was fine: %s", json);
    cr_assert_not_null(strstr(json, "\"why\":\"probe: "), "%s", json);
}

Test(stress, nothing_listening_counts_refused_and_fails)
{
    unsigned port;

    close(listen_any(&port));      /* bound, never listened: refused */
    stress("-c", "3", "-d", "5s", "--json", new_json_path(), target(port), NULL);
    cr_assert_eq(res.code, 1, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "refused 3,"), "%s", res.out);
    cr_assert_not_null(strstr(res.out, "no connection"), "%s", res.out);
    json_load();
    cr_assert_eq(jnum("refused"), 3, "%s", json);
    cr_assert_eq(jnum("opened"), 0, "%s", json);
    cr_assert_lt(jnum("duration_s"), 2, "gave up at once, not after -d: %s", json);
}

Test(stress, usage_errors_exit_2_with_one_line)
{
    static const char *cases[][3] = {
        { "-c", "0", "-c" }, { "-s", "0", "-s" }, { "-d", "5x", "-d" }, { "-d", "1.5s", "-d" },
        { "--mode", "blast", "--mode" }, { "--src", "1.2.3-x", "--src" },
        { "--window", "1m", "--window" }, { "--probe", "0", "--probe" },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        stress(cases[i][0], cases[i][1], "127.0.0.1:7000", NULL);
        cr_assert_eq(res.code, 2, "%s %s: %s", cases[i][0], cases[i][1], res.out);
        cr_assert_not_null(strstr(res.out, cases[i][2]), "%s", res.out);
        cr_assert_not_null(strstr(res.out, "-h"), "a hint to -h: %s", res.out);
        cr_assert_eq(strchr(res.out, '\n'), res.out + res.len - 1, "one line: %s", res.out);
    }
    stress("--mode", "flood", "--reconnect", "127.0.0.1:7000", NULL);
    cr_assert_eq(res.code, 2, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "--reconnect"), "%s", res.out);
    stress("-c", "5", "nohost", NULL);
    cr_assert_eq(res.code, 2, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "HOST:PORT"), "%s", res.out);
}

Test(stress, help_and_version_exit_0)
{
    stress("-h", NULL);
    cr_assert_eq(res.code, 0);
    cr_assert_not_null(strstr(res.out, "usage: tidepool-stress"), "%s", res.out);
    stress("--version", NULL);
    cr_assert_eq(res.code, 0);
    cr_assert_not_null(strstr(res.out, "tidepool-stress 0."), "%s", res.out);
}

Test(stress, sigint_stops_early_and_still_reports)
{
    uint64_t t0;
    int fd;

    server_start();
    t0 = now_ms();
    fd = stress_start("-c", "4", "-d", "30s", "--json", new_json_path(), target(srv.port), NULL);
    usleep(500 * 1000);
    kill(stress_pid, SIGINT);
    stress_finish(fd, 10000);
    cr_assert_lt(now_ms() - t0, 5000, "stopped soon after SIGINT");
    cr_assert_eq(res.code, 0, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "duration"), "%s", res.out);
    json_load();
    cr_assert_gt(jnum("messages"), 0, "%s", json);
    cr_assert_lt(jnum("duration_s"), 5, "%s", json);
}

/* ------------------------------------------------------------ chat mode */

/* A real redis-server (Debian's), on a free loopback port, in a temp dir. */
struct redis {
    pid_t pid;
    unsigned port;
    char dir[64];
};

static struct redis rds = { .pid = -1 };

/* Connects to 127.0.0.1:port; the fd, or -1. Blocking, 1 s at most. */
static int connect_to(unsigned port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct timeval tv = { 1, 0 };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends cmd on fd and reads one reply line ("+PONG", ":20") into buf. */
static bool redis_call(int fd, const char *cmd, char *buf, size_t len)
{
    size_t n = 0;
    ssize_t r;

    if (send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) != (ssize_t)strlen(cmd))
        return false;
    while (n + 1 < len) {
        r = recv(fd, buf + n, 1, 0);
        if (r <= 0)
            return false;
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = '\0';
    return true;
}

static bool redis_answers(unsigned port)
{
    char buf[64];
    int fd = connect_to(port);
    bool ok;

    if (fd < 0)
        return false;
    ok = redis_call(fd, "PING\r\n", buf, sizeof(buf)) && strcmp(buf, "+PONG\r\n") == 0;
    close(fd);
    return ok;
}

/* Starts redis-server with no persistence and waits (10 s at most) until it
 * answers PING. */
static void redis_start(void)
{
    char port[16];
    uint64_t deadline = now_ms() + 10000;
    int status, devnull;

    snprintf(rds.dir, sizeof(rds.dir), "/tmp/tp_e2e_redis_XXXXXX");
    cr_assert_not_null(mkdtemp(rds.dir));
    close(listen_any(&rds.port));
    snprintf(port, sizeof(port), "%u", rds.port);
    rds.pid = fork();
    cr_assert_geq(rds.pid, 0);
    if (rds.pid == 0) {
        devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDOUT_FILENO);
        if (chdir(rds.dir) < 0)
            _exit(126);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", rds.dir, "--daemonize", "no",
               (char *)NULL);
        _exit(127);
    }
    while (now_ms() < deadline) {
        if (waitpid(rds.pid, &status, WNOHANG) == rds.pid) {
            rds.pid = -1;
            cr_assert_fail("redis-server exited at start (status %d; 127: not installed, "
                           "apt-get install redis-server, as .ci/deps does)", status);
        }
        if (redis_answers(rds.port))
            return;
        usleep(20 * 1000);
    }
    cr_assert_fail("redis-server did not answer PING on port %u within 10 s", rds.port);
}

static void redis_stop(void)
{
    char path[128];

    if (rds.pid > 0) {
        kill(rds.pid, SIGTERM);
        reap(rds.pid);
        rds.pid = -1;
    }
    if (rds.dir[0] != '\0') {
        snprintf(path, sizeof(path), "%s/dump.rdb", rds.dir);
        unlink(path);             /* --save '' writes none; in case */
        rmdir(rds.dir);
        rds.dir[0] = '\0';
    }
}

/* The number after "key": inside the "chat" object. */
static double jchat(const char *key)
{
    char pat[64], *end;
    const char *p = strstr(json, "\"chat\":{");
    double v;

    cr_assert_not_null(p, "no chat object in %s", json);
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(p, pat);
    cr_assert_not_null(p, "no chat %s in %s", key, json);
    v = strtod(p + strlen(pat), &end);
    cr_assert_neq(end, p + strlen(pat), "chat %s is not a number in %s", key, json);
    return v;
}

/* Every error count of the JSON, chat's own included, is 0. */
static void assert_no_errors(void)
{
    static const char *kinds[] = {
        "refused", "reset", "timeout", "mismatch", "closed_early", "other",
        "missing", "duplicate", "out_of_order", "own_echo",
    };
    size_t i;

    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        cr_assert_eq(jnum(kinds[i]), 0, "%s: %s", kinds[i], json);
}

Test(stress, chat_resp_every_subscriber_gets_every_published_line_once)
{
    redis_start();
    stress("--mode", "chat", "--proto", "resp", "-c", "20", "--senders", "4", "-p", "4",
           "-n", "400", "-t", "2", "--json", new_json_path(), target(rds.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "8000 deliveries of 400 lines sent x 20 recipients"),
                       "%s", res.out);
    json_load();
    cr_assert_not_null(strstr(json, "\"mode\":\"chat\""), "%s", json);
    cr_assert_not_null(strstr(json, "\"proto\":\"resp\",\"channel\":\"tidepool\""), "%s", json);
    cr_assert_eq(jnum("requested"), 24, "20 subscribers and 4 publishers: %s", json);
    cr_assert_eq(jnum("opened"), 24, "%s", json);
    cr_assert_eq(jchat("members"), 20, "%s", json);
    cr_assert_eq(jchat("joined"), 20, "every SUBSCRIBE confirmed: %s", json);
    cr_assert_eq(jchat("recipients"), 20, "%s", json);
    cr_assert_eq(jchat("lines"), 400, "%s", json);
    cr_assert_eq(jchat("deliveries"), 400 * 20, "%s", json);
    cr_assert_eq(jchat("expected"), 400 * 20, "%s", json);
    cr_assert_eq(jnum("messages"), 400 * 20, "messages are deliveries: %s", json);
    cr_assert_eq(jchat("publish_replies"), 400, "every PUBLISH answered :20: %s", json);
    cr_assert_eq(jchat("given_up"), 0, "%s", json);
    cr_assert_eq(jnum("bytes"), 400 * 20 * 64, "%s", json);
    assert_no_errors();
    cr_assert_gt(jnum("p50"), 0, "%s", json);
    cr_assert_leq(jnum("p50"), jnum("p99"), "%s", json);
    cr_assert_leq(jnum("p99"), jnum("max"), "%s", json);
    cr_assert(jtrue("ok"));
}

Test(stress, chat_resp_rate_paces_the_lines_over_all_senders)
{
    double lines;

    redis_start();
    stress("--mode", "chat", "--proto", "resp", "-c", "10", "--senders", "2", "-p", "8",
           "-r", "400", "-d", "1s", "--channel", "room-7", "--json", new_json_path(),
           target(rds.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    json_load();
    lines = jchat("lines");
    /* 400/s for 1 s from the release: about 400. */
    cr_assert(lines >= 300 && lines <= 405, "%g lines at -r 400 for 1 s: %s", lines, json);
    cr_assert_eq(jchat("deliveries"), lines * 10, "%s", json);
    cr_assert_not_null(strstr(json, "\"channel\":\"room-7\""), "%s", json);
    cr_assert_lt(jnum("p99"), 500e3, "paced far below capacity: %s", json);
    assert_no_errors();
}

/* Publishes "hello" on channel from a connection of the test's own until a
 * PUBLISH reaches `want` subscribers (the tool's all joined), then `more`
 * times. Returns the subscribers all those PUBLISHes reached. */
static long publish_foreign(unsigned port, const char *channel, long want, int more)
{
    uint64_t deadline = now_ms() + 10000;
    char cmd[128], buf[64];
    long reached = 0, n = 0;
    int fd = connect_to(port);

    cr_assert_geq(fd, 0);
    snprintf(cmd, sizeof(cmd), "PUBLISH %s hello\r\n", channel);
    while (now_ms() < deadline && (n < want || more-- > 0)) {
        cr_assert(redis_call(fd, cmd, buf, sizeof(buf)), "PUBLISH failed");
        cr_assert_eq(buf[0], ':', "%s", buf);
        n = atol(buf + 1);
        reached += n;
        if (n < want)
            usleep(5 * 1000);   /* a bounded poll while the tool subscribes */
    }
    close(fd);
    cr_assert_eq(n, want, "the tool's %ld subscribers never all joined", want);
    return reached;
}

/* Whether the tool's channel has n subscribers (PUBSUB NUMSUB). */
static bool redis_has_subscribers(unsigned port, long n)
{
    char buf[64];
    int fd = connect_to(port);
    bool ok = false;

    if (fd < 0)
        return false;
    /* *2 $8 tidepool :N: the reply's lines, one at a time. */
    if (redis_call(fd, "PUBSUB NUMSUB tidepool\r\n", buf, sizeof(buf)) &&
        redis_call(fd, "", buf, sizeof(buf)) && redis_call(fd, "", buf, sizeof(buf)) &&
        redis_call(fd, "", buf, sizeof(buf)))
        ok = buf[0] == ':' && atol(buf + 1) == n;
    close(fd);
    return ok;
}

Test(stress, chat_resp_a_line_not_of_the_tool_is_a_mismatch_or_with_skip_foreign)
{
    long reached;
    int fd;

    redis_start();
    fd = stress_start("--mode", "chat", "--proto", "resp", "-c", "8", "-r", "200", "-d", "1s",
                      "--json", new_json_path(), target(rds.port), NULL);
    reached = publish_foreign(rds.port, "tidepool", 8, 3);
    stress_finish(fd, 20000);
    cr_assert_eq(res.code, 1, "%s", res.out);
    json_load();
    cr_assert_eq(jnum("mismatch"), reached, "one per hello each member got: %s", json);
    cr_assert_not_null(strstr(res.out, "a line of another length: \"hello\""), "%s", res.out);
    cr_assert_eq(jchat("deliveries"), jchat("lines") * 8, "the tool's own lines all came: %s",
                 json);

    fd = stress_start("--mode", "chat", "--proto", "resp", "-c", "8", "-r", "200", "-d", "1s",
                      "--foreign", "skip", "--json", new_json_path(), target(rds.port), NULL);
    reached = publish_foreign(rds.port, "tidepool", 8, 3);
    stress_finish(fd, 20000);
    cr_assert_eq(res.code, 0, "%s", res.out);
    json_load();
    cr_assert_eq(jchat("foreign"), reached, "%s", json);
    cr_assert_not_null(strstr(res.out, "foreign lines skipped"), "%s", res.out);
    assert_no_errors();
}

Test(stress, chat_resp_subscribers_the_server_drops_are_errors)
{
    char buf[64];
    int fd, cfd;

    redis_start();
    fd = stress_start("--mode", "chat", "--proto", "resp", "-c", "6", "--senders", "2", "-r",
                      "500", "-d", "1500ms", "--foreign", "skip", "--json", new_json_path(),
                      target(rds.port), NULL);
    publish_foreign(rds.port, "tidepool", 6, 0);
    cfd = connect_to(rds.port);
    cr_assert_geq(cfd, 0);
    cr_assert(redis_call(cfd, "CLIENT KILL TYPE pubsub\r\n", buf, sizeof(buf)));
    close(cfd);
    cr_assert_str_eq(buf, ":6\r\n", "killed the tool's 6 subscribers");
    stress_finish(fd, 20000);
    cr_assert_eq(res.code, 1, "%s", res.out);
    json_load();
    cr_assert_eq(jnum("closed_early") + jnum("reset"), 6, "%s", json);
    cr_assert_eq(jchat("members_at_end"), 0, "%s", json);
    cr_assert_eq(jnum("missing"), 0, "members gone are not counted missing: %s", json);
}

Test(stress, chat_sigint_stops_the_senders_drains_and_reports)
{
    uint64_t t0;
    int fd;

    redis_start();
    t0 = now_ms();
    fd = stress_start("--mode", "chat", "--proto", "resp", "-c", "10", "--senders", "2", "-r",
                      "1000", "-d", "30s", "--json", new_json_path(), target(rds.port), NULL);
    /* SIGINT once the 10 subscribers joined and lines flowed for 300 ms. */
    while (now_ms() - t0 < 10000 && !redis_has_subscribers(rds.port, 10))
        usleep(10 * 1000);
    usleep(300 * 1000);
    kill(stress_pid, SIGINT);
    stress_finish(fd, 10000);
    cr_assert_lt(now_ms() - t0, 8000, "stopped soon after SIGINT");
    cr_assert_eq(res.code, 0, "nothing lost in the drain: %s", res.out);
    json_load();
    cr_assert_gt(jchat("lines"), 0, "%s", json);
    cr_assert_eq(jchat("deliveries"), jchat("lines") * 10, "%s", json);
    cr_assert_lt(jnum("duration_s"), 5, "%s", json);
    assert_no_errors();
}

Test(stress, chat_line_against_echo_reports_own_echo_missing_and_members_never_joined)
{
    /* Echo sends each line back to its sender alone: a room where nobody
     * hears anyone. Members 0 and 1 get their own join lines back, no
     * member joins; the 10 lines come back to their senders and reach none
     * of the 3 others each. */
    server_start();
    stress("--mode", "chat", "-c", "4", "--senders", "2", "-n", "10", "-p", "5", "--timeout",
           "300ms", "-d", "5s", "--json", new_json_path(), target(srv.port), NULL);
    cr_assert_eq(res.code, 1, "%s", res.out);
    cr_assert_not_null(strstr(res.out, "not ok: 46 errors: timeout 4, missing 30, own_echo 12\n"),
                       "%s", res.out);
    json_load();
    cr_assert_eq(jchat("joined"), 0, "%s", json);
    cr_assert_not_null(strstr(json, "\"join_timed_out\":true"), "%s", json);
    cr_assert_eq(jchat("lines"), 10, "%s", json);
    cr_assert_eq(jchat("deliveries"), 0, "%s", json);
    cr_assert_eq(jchat("given_up"), 10, "%s", json);
    cr_assert_eq(jnum("own_echo"), 12, "%s", json);
    cr_assert_eq(jnum("missing"), 30, "%s", json);
    cr_assert_lt(jnum("duration_s"), 2, "each line waited --timeout, not -d: %s", json);
}

/* Issue 9: the tool's line protocol against a real tidepool `app chat`:
 * every member gets every other member's lines once, in order, none of its
 * own; the run is ok and the server closed nobody as slow. */
Test(stress, chat_line_against_app_chat_every_member_gets_every_other_members_lines)
{
    server_start_conf("listen 127.0.0.1:0 { app chat; }\nworkers 2;\n", "chat");
    stress("--mode", "chat", "-c", "30", "--senders", "5", "-p", "4", "-n", "2000", "-t", "2",
           "--json", new_json_path(), target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    json_load();
    cr_assert_not_null(strstr(json, "\"proto\":\"line\""), "%s", json);
    cr_assert_eq(jchat("members"), 30, "%s", json);
    cr_assert_eq(jchat("joined"), 30, "%s", json);
    cr_assert_eq(jchat("recipients"), 29, "%s", json);
    cr_assert_eq(jchat("lines"), 2000, "%s", json);
    cr_assert_eq(jchat("deliveries"), 2000 * 29, "%s", json);
    cr_assert_eq(jchat("expected"), 2000 * 29, "%s", json);
    cr_assert_eq(jchat("given_up"), 0, "%s", json);
    cr_assert_eq(jchat("foreign"), 0, "%s", json);
    assert_no_errors();
    cr_assert(jtrue("ok"), "%s", json);
    cr_assert_geq(server_stop(), 2000, "%s", srv.log);
    cr_assert_eq(server_stat("slow"), 0, "%s", srv.log);
}

/* With chat_prefix and join_notice the tool, told --foreign skip, drops the
 * prefix and counts the notices as foreign: still every line, in order. */
Test(stress, chat_line_with_prefix_and_notices_still_delivers_every_line)
{
    server_start_conf("listen 127.0.0.1:0 { app chat; chat_prefix on; join_notice on; }\n"
                      "workers 2;\n", "chat");
    stress("--mode", "chat", "-c", "12", "--senders", "3", "-p", "4", "-n", "600",
           "--foreign", "skip", "--json", new_json_path(), target(srv.port), NULL);
    cr_assert_eq(res.code, 0, "%s", res.out);
    json_load();
    cr_assert_eq(jchat("deliveries"), 600 * 11, "%s", json);
    /* Each member hears the joins from its own on: 12 + 11 + ... + 1. */
    cr_assert_geq(jchat("foreign"), 12 * 13 / 2, "%s", json);
    assert_no_errors();
}

/* ---- the server under injected faults (tests/fault/tp_fault.c) ---- */

TestSuite(fault, .fini = cleanup, .timeout = 120);

/* The count the shim reported for kind at the server's exit, or -1. */
static long long injected(const char *kind)
{
    const char *p = strstr(srv.log, "tp_fault: injected");
    char pat[64];

    snprintf(pat, sizeof(pat), " %s ", kind);
    if (p == NULL || (p = strstr(p, pat)) == NULL)
        return -1;
    return atoll(p + strlen(pat));
}

/* Server CPU seconds (user + system) so far, from /proc. */
static double server_cpu_s(void)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)srv.pid);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');        /* the name may hold spaces */
    cr_assert_not_null(p);
    cr_assert_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st), 2);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A server that has nothing to do uses no CPU, faults or not: a lost edge
 * would show up as a spin (or, the other way, as a hang in the run). */
static void expect_idle(void)
{
    double before = server_cpu_s();

    usleep(500 * 1000);
    cr_expect_lt(server_cpu_s() - before, 0.1, "the idle server used %.2f s of CPU in 0.5 s",
                 server_cpu_s() - before);
}

static void start_with_faults(const char *fault, int workers)
{
    char conf[128];

    server_fault = fault;
    snprintf(conf, sizeof(conf), "listen 127.0.0.1:0;\nworkers %d;\n", workers);
    server_start_conf(conf, "echo");
    server_fault = NULL;
}

/* Short reads and writes, made-up EAGAIN and EINTR on every socket call,
 * EINTR from epoll_wait, EMFILE/ENOBUFS from accept: a correct
 * edge-triggered server loses no byte and no connection to any of them. */
Test(fault, every_reply_verifies_under_io_faults)
{
    static const char *const faults[] = {
        "seed=1,io=0.2,epoll_eintr=0.05,accept=0.05",
        "seed=2,io=0.4,epoll_eintr=0.2,accept=0.1",
        "seed=3,read_short=0.5,send_short=0.5,read_eagain=0.1,send_eagain=0.1",
    };
    static const int workers[] = { 4, 0 };

    for (size_t f = 0; f < sizeof(faults) / sizeof(faults[0]); f++) {
        for (size_t w = 0; w < 2; w++) {
            start_with_faults(faults[f], workers[w]);
            stress("-c", "40", "-p", "4", "-s", "300", "-d", "700ms", "--json", new_json_path(),
                   target(srv.port), NULL);
            cr_assert_eq(res.code, 0, "%s workers %d: %s", faults[f], workers[w], res.out);
            json_load();
            cr_assert_eq(jnum("mismatch"), 0, "%s", json);
            cr_assert_eq(jnum("opened"), 40, "%s", json);
            cr_assert_gt(jnum("messages"), 1000, "%s", json);
            stress("--mode", "flood", "-c", "8", "-s", "15", "-d", "500ms", "--json",
                   new_json_path(), target(srv.port), NULL);
            cr_assert_eq(res.code, 0, "%s workers %d: %s", faults[f], workers[w], res.out);
            json_load();
            cr_assert_eq(jnum("mismatch"), 0, "%s", json);
            expect_idle();
            server_stop();
            cr_assert_gt(injected("read_short"), 0, "no fault injected? %s", srv.log);
            cr_assert_gt(injected("send_short"), 0, "%s", srv.log);
            cr_assert_gt(injected("read_eagain"), 0, "%s", srv.log);
            cr_assert_gt(injected("send_eagain"), 0, "%s", srv.log);
        }
    }
}

/* The same faults under a chat room: every line delivered still verifies
 * (unchanged, once, in its sender's order, to every other member), and
 * the server neither crashes nor spins. */
Test(fault, every_chat_line_verifies_under_io_faults)
{
    static const char *const faults[] = {
        "seed=4,io=0.2,epoll_eintr=0.05,accept=0.05",
        "seed=5,read_short=0.5,send_short=0.5,read_eagain=0.1,send_eagain=0.1",
    };
    static const int workers[] = { 4, 0 };
    char conf[128];

    for (size_t f = 0; f < sizeof(faults) / sizeof(faults[0]); f++) {
        for (size_t w = 0; w < 2; w++) {
            snprintf(conf, sizeof(conf), "listen 127.0.0.1:0 { app chat; }\nworkers %d;\n",
                     workers[w]);
            server_fault = faults[f];
            server_start_conf(conf, "chat");
            server_fault = NULL;
            stress("--mode", "chat", "-c", "20", "--senders", "4", "-p", "4", "-d", "700ms",
                   "--json", new_json_path(), target(srv.port), NULL);
            cr_assert_eq(res.code, 0, "%s workers %d: %s", faults[f], workers[w], res.out);
            json_load();
            cr_assert_eq(jchat("joined"), 20, "%s", json);
            cr_assert_gt(jchat("lines"), 100, "%s", json);
            cr_assert_eq(jchat("deliveries"), jchat("lines") * 19, "%s", json);
            assert_no_errors();
            expect_idle();
            server_stop();
            cr_assert_gt(injected("read_short"), 0, "no fault injected? %s", srv.log);
            cr_assert_gt(injected("send_short"), 0, "%s", srv.log);
            cr_assert_eq(server_stat("slow"), 0, "%s", srv.log);
        }
    }
}

/* Allocations fail now and then under a busy room: each failure closes at
 * most the connection it hit (a member that would miss a broadcast is
 * closed, never served a gap); what the members got verifies. */
Test(fault, an_allocation_failure_in_a_chat_room_closes_at_most_its_connection)
{
#ifdef TP_SANITIZED
    cr_skip_test("allocation faults need glibc's allocator (sanitizer build)");
#endif
    static const int workers[] = { 4, 0 };
    char conf[128];

    for (size_t w = 0; w < 2; w++) {
        long long nomem = 0;

        snprintf(conf, sizeof(conf), "listen 127.0.0.1:0 { app chat; }\nworkers %d;\n",
                 workers[w]);
        server_fault = "seed=13,alloc=0.02,after=200";
        server_start_conf(conf, "chat");
        server_fault = NULL;
        usleep(300 * 1000);    /* past `after`: allocations may fail from now */
        stress("--mode", "chat", "-c", "20", "--senders", "4", "-p", "4", "-d", "700ms",
               "--timeout", "2s", "--json", new_json_path(), target(srv.port), NULL);
        json_load();
        cr_assert_eq(jnum("mismatch"), 0, "workers %d: %s", workers[w], json);
        cr_assert_eq(jnum("duplicate"), 0, "%s", json);
        cr_assert_eq(jnum("out_of_order"), 0, "%s", json);
        cr_assert_eq(jnum("own_echo"), 0, "%s", json);
        /* Not "missing": a sender whose batch could not be broadcast is
         * closed, and that batch's lines reach nobody. */
        cr_assert_gt(jchat("deliveries"), 100, "the room stopped: %s", json);
        expect_idle();
        cr_assert_geq(server_stop(), 0, "no stats line: the server died? %s", srv.log);
        cr_assert_gt(injected("alloc"), 0, "no allocation failed: %s", srv.log);
        for (const char *p = srv.log; (p = strstr(p, "memory")) != NULL; p++)
            nomem++;
        cr_assert_leq(server_stat("error"), nomem, "more connections closed than "
                      "allocations failed: %s", srv.log);
    }
}

/* A connection reset in accept (ECONNABORTED) costs that connection only. */
Test(fault, aborted_accepts_cost_only_their_connection)
{
    start_with_faults("seed=7,accept_abort=0.2", 2);
    stress("--mode", "storm", "-c", "4", "-n", "400", "--json", new_json_path(),
           target(srv.port), NULL);
    json_load();
    cr_assert_eq(jnum("mismatch"), 0, "%s", json);
    cr_assert_gt(jnum("reset") + jnum("closed_early"), 0, "no abort seen by the client: %s", json);
    cr_assert_gt(jnum("messages"), 200, "the server stopped serving: %s", json);
    expect_idle();
    server_stop();
    cr_assert_gt(injected("accept_abort"), 0, "%s", srv.log);
}

/* malloc/calloc/realloc from tidepool's own code fail now and then (after
 * start-up): each failure closes at most the connection it hit, is logged,
 * and the server goes on serving everyone else, byte for byte. */
Test(fault, an_allocation_failure_closes_at_most_its_connection)
{
#ifdef TP_SANITIZED
    cr_skip_test("allocation faults need glibc's allocator (sanitizer build)");
#endif
    static const int workers[] = { 4, 0 };

    for (size_t w = 0; w < 2; w++) {
        long long nomem;

        start_with_faults("seed=11,alloc=0.05,after=200,io=0.05", workers[w]);
        usleep(300 * 1000);    /* past `after`: allocations may fail from now */
        /* Big messages grow read buffers, a storm makes connections: both allocate. */
        stress("-c", "30", "-p", "2", "-s", "20000", "-d", "700ms", "--json", new_json_path(),
               target(srv.port), NULL);
        json_load();
        cr_assert_eq(jnum("mismatch"), 0, "workers %d: %s", workers[w], json);
        cr_assert_gt(jnum("messages"), 100, "%s", json);
        stress("--mode", "storm", "-c", "4", "-d", "300ms", "--json", new_json_path(),
               target(srv.port), NULL);
        json_load();
        cr_assert_eq(jnum("mismatch"), 0, "%s", json);
        cr_assert_gt(jnum("messages"), 100, "%s", json);
        expect_idle();
        server_stop();
        cr_assert_gt(injected("alloc"), 0, "no allocation failed: %s", srv.log);
        nomem = 0;
        for (const char *p = srv.log; (p = strstr(p, "memory")) != NULL; p++)
            nomem++;
        cr_assert_gt(nomem, 0, "failures not logged: %s", srv.log);
        cr_assert_leq(server_stat("error"), nomem + 40 + 4,
                      "more connections closed than allocations failed: %s", srv.log);
    }
}
