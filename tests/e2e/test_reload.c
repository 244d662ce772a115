/* test_reload.c - SIGHUP on the built tidepool: 20 reloads under
 * tidepool-stress echo and storm traffic, a refused conf, settings for new
 * connections only, systemd's reload protocol, the master of `processes`,
 * and a privileged port after `user` dropped root. */
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
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tpt_e2e.h"

#define BIN TP_BIN_DIR "/tidepool"
#define STRESS TP_BIN_DIR "/tidepool-stress"

static char dir[] = "/tmp/tp_reload_XXXXXX";
static pid_t pids[4];             /* every process a test started */

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    cr_assert_not_null(mkdtemp(dir));
}

/* Whatever happened, nothing a test started runs on. */
static void teardown(void)
{
    char cmd[64];

    for (size_t i = 0; i < sizeof(pids) / sizeof(pids[0]); i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(reload, .init = setup, .fini = teardown, .timeout = 120);

static const char *path_of(const char *name)
{
    static char path[4][PATH_MAX];
    static int next;
    char *p = path[next++ % 4];

    snprintf(p, PATH_MAX, "%s/%s", dir, name);
    return p;
}

/* Writes the conf in place (truncate and rewrite, as an editor would). */
static void put(const char *name, const char *text)
{
    FILE *f = fopen(path_of(name), "w");

    cr_assert_not_null(f);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* Starts argv with stdout and stderr to file `out` in dir; returns its
 * pid, remembered for the teardown. */
static pid_t spawn(const char *const argv[], const char *out)
{
    int fd = open(path_of(out), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    pid_t pid;
    size_t i;

    cr_assert_geq(fd, 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fd);
    for (i = 0; i < sizeof(pids) / sizeof(pids[0]) && pids[i] > 0; i++)
        ;
    cr_assert_lt(i, sizeof(pids) / sizeof(pids[0]));
    pids[i] = pid;
    return pid;
}

/* Waits for pid to exit within ms (else kills it); its exit status, or -1. */
static int reap(pid_t pid, int ms)
{
    long long deadline = tpt_now_ms() + ms;
    int status;

    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (tpt_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            status = -1;
            break;
        }
        usleep(10000);
    }
    for (size_t i = 0; i < sizeof(pids) / sizeof(pids[0]); i++)
        if (pids[i] == pid)
            pids[i] = 0;
    return status == -1 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char *slurp(const char *name)
{
    static char buf[1 << 20];
    FILE *f = fopen(path_of(name), "r");
    size_t n = 0;

    if (f != NULL) {
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return buf;
}

static int count(const char *s, const char *what)
{
    int n = 0;

    for (; (s = strstr(s, what)) != NULL; s += strlen(what))
        n++;
    return n;
}

/* Waits up to ms until the file has want at least times times. */
static bool wait_log(const char *name, const char *want, int times, int ms)
{
    long long deadline = tpt_now_ms() + ms;

    while (count(slurp(name), want) < times) {
        if (tpt_now_ms() > deadline)
            return false;
        usleep(5000);
    }
    return true;
}

/* The port tidepool logged for addr ("127.0.0.1"), the last time. */
static uint16_t port_of(const char *log, const char *addr)
{
    char pat[64];
    const char *at = NULL, *s;
    unsigned port = 0;

    snprintf(pat, sizeof(pat), "listening on %s:", addr);
    for (s = log; (s = strstr(s, pat)) != NULL; s++)
        at = s;
    cr_assert_not_null(at, "never listened on %s: %s", addr, log);
    cr_assert_eq(sscanf(at + strlen(pat), "%u", &port), 1);
    return (uint16_t)port;
}

static int dial(const char *ip, uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    cr_assert_geq(fd, 0);
    inet_pton(AF_INET, ip, &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect %s:%u: %s", ip,
                 port, strerror(errno));
    return fd;
}

/* Sends line on fd and expects want back within 5 s. */
static void exchange(int fd, const char *line, const char *want)
{
    char buf[256];
    size_t n = strlen(want), got = 0;
    long long deadline = tpt_now_ms() + 5000;

    cr_assert_eq(write(fd, line, strlen(line)), (ssize_t)strlen(line));
    while (got < n && tpt_now_ms() < deadline) {
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        ssize_t r;

        if (poll(&pf, 1, 100) <= 0)
            continue;
        if ((r = read(fd, buf + got, n - got)) <= 0)
            break;
        got += (size_t)r;
    }
    cr_assert_eq(got, n, "short reply to %s", line);
    cr_assert(memcmp(buf, want, n) == 0, "got \"%.*s\", want \"%s\"", (int)n, buf, want);
}

static long long json_num(const char *json, const char *key)
{
    char pat[64];
    const char *s;

    snprintf(pat, sizeof(pat), "\"%s\":", key);
    s = strstr(json, pat);
    cr_assert_not_null(s, "no %s in %s", key, json);
    return atoll(s + strlen(pat));
}

/* ---- the test: reloads under load ---- */

static const char conf_a[] =
    "workers 2;\n"
    "listen 127.0.0.1:0;\n"
    "listen 127.0.0.2:0;\n";
static const char conf_b[] =
    "workers 0;\n"
    "listen 127.0.0.1:0;\n"
    "listen 127.0.0.3:0;\n";

/* 100 verifying echo connections and a connect storm (a second
 * tidepool-stress) against one listener, while the conf alternates between
 * two that each add a listener, remove one and change workers (2 <-> 0): 20
 * SIGHUPs, each waited for. No error, no refused connect, every reply
 * verified, and each reload really happened. */
Test(reload, twenty_sighups_under_echo_and_storm_traffic_drop_nothing)
{
    const char *argv[] = { BIN, "-c", NULL, NULL };
    char target[32], echo_json[PATH_MAX], storm_json[PATH_MAX], done[32];
    const char *echo_argv[] = { STRESS, "--mode", "echo", "-c", "100", "-d", "8s",
                                "-q", "--json", echo_json, target, NULL };
    const char *storm_argv[] = { STRESS, "--mode", "storm", "-c", "8", "-d", "8s",
                                 "-q", "--json", storm_json, target, NULL };
    pid_t srv, echo, storm;
    uint16_t port;
    char *json;

    put("t.conf", conf_a);
    argv[2] = path_of("t.conf");
    srv = spawn(argv, "server.log");
    cr_assert(wait_log("server.log", "listening on 127.0.0.2:", 1, 10000), "%s",
              slurp("server.log"));
    port = port_of(slurp("server.log"), "127.0.0.1");
    snprintf(target, sizeof(target), "127.0.0.1:%u", port);
    snprintf(echo_json, sizeof(echo_json), "%s/echo.json", dir);
    snprintf(storm_json, sizeof(storm_json), "%s/storm.json", dir);
    echo = spawn(echo_argv, "echo.out");
    storm = spawn(storm_argv, "storm.out");
    usleep(1000 * 1000);          /* both under way */
    for (int i = 1; i <= 20; i++) {
        put("t.conf", i % 2 == 1 ? conf_b : conf_a);
        kill(srv, SIGHUP);
        snprintf(done, sizeof(done), "reload: done");
        cr_assert(wait_log("server.log", done, i, 10000), "reload %d did not finish: %s", i,
                  slurp("server.log"));
        usleep(200 * 1000);
    }
    cr_expect_eq(count(slurp("server.log"), "reload failed"), 0, "%s", slurp("server.log"));
    /* Each went through: 10 times each way, the listeners and the pool. */
    cr_expect_eq(count(slurp("server.log"), "reload: listening on 127.0.0.3:"), 10);
    cr_expect_eq(count(slurp("server.log"), "reload: listening on 127.0.0.2:"), 10);
    cr_expect_eq(count(slurp("server.log"), "reload: workers 2 -> 0"), 10);
    cr_expect_eq(count(slurp("server.log"), "reload: workers 0 -> 2"), 10);
    cr_expect_eq(count(slurp("server.log"), "reload: 127.0.0.1:"), 0,
                 "the kept listener changed: %s", slurp("server.log"));

    cr_expect_eq(reap(echo, 30000), 0, "echo: %s", slurp("echo.out"));
    cr_expect_eq(reap(storm, 30000), 0, "storm: %s", slurp("storm.out"));
    json = slurp("echo.json");
    cr_log_info("echo: %s", json);
    cr_expect(strstr(json, "\"ok\":true") != NULL, "%s", json);
    cr_expect(strstr(json, "\"errors\":{\"refused\":0,\"reset\":0,\"timeout\":0,\"mismatch\":0,"
                           "\"closed_early\":0,\"other\":0}") != NULL, "%s", json);
    cr_expect_eq(json_num(json, "opened"), 100);
    cr_expect_eq(json_num(json, "open_at_end"), 100);
    cr_expect_eq(json_num(json, "messages") + json_num(json, "in_flight_at_end"),
                 json_num(json, "sent"), "%s", json);
    cr_expect_gt(json_num(json, "messages"), 1000);
    json = slurp("storm.json");
    cr_log_info("storm: %s", json);
    cr_expect(strstr(json, "\"ok\":true") != NULL, "%s", json);
    cr_expect(strstr(json, "\"errors\":{\"refused\":0,\"reset\":0,\"timeout\":0,\"mismatch\":0,"
                           "\"closed_early\":0,\"other\":0}") != NULL, "%s", json);
    cr_expect_gt(json_num(json, "messages"), 100);
    kill(srv, SIGTERM);
    cr_expect_eq(reap(srv, 15000), 0, "%s", slurp("server.log"));
}

/* ---- a refused conf, and settings for new connections only ---- */

Test(reload, a_bad_conf_is_refused_with_file_and_line_and_the_old_one_serves)
{
    const char *argv[] = { BIN, "-c", NULL, NULL };
    char want[PATH_MAX + 64];
    uint16_t port;
    pid_t srv;
    int old, young;

    put("t.conf", "workers 1;\nlisten 127.0.0.1:0;\n");
    argv[2] = path_of("t.conf");
    srv = spawn(argv, "server.log");
    cr_assert(wait_log("server.log", "listening on 127.0.0.1:", 1, 10000));
    port = port_of(slurp("server.log"), "127.0.0.1");
    old = dial("127.0.0.1", port);
    exchange(old, "one\n", "one\n");

    /* What -t refuses: all of it is refused, though line 2 alone is good. */
    put("t.conf", "workers 1;\nlisten 127.0.0.1:0 { app upper; }\nwrokers 3;\n");
    kill(srv, SIGHUP);
    cr_assert(wait_log("server.log", "reload failed", 1, 5000), "%s", slurp("server.log"));
    snprintf(want, sizeof(want), "reload failed: %s:3: unknown directive \"wrokers\"; the old "
             "configuration serves on", path_of("t.conf"));
    cr_expect(strstr(slurp("server.log"), want) != NULL, "want \"%s\" in %s", want,
              slurp("server.log"));
    young = dial("127.0.0.1", port);
    exchange(young, "two\n", "two\n");
    close(young);
    exchange(old, "three\n", "three\n");

    /* A good one: app upper and a small max_message for new connections;
     * the open one keeps echo and 64k. */
    put("t.conf", "workers 1;\nlisten 127.0.0.1:0 { app upper; max_message 8; }\n");
    kill(srv, SIGHUP);
    cr_assert(wait_log("server.log", "reload: done", 1, 5000), "%s", slurp("server.log"));
    young = dial("127.0.0.1", port);
    exchange(young, "four\n", "FOUR\n");
    exchange(old, "five, a line longer than eight\n", "five, a line longer than eight\n");
    close(old);
    close(young);
    kill(srv, SIGTERM);
    cr_expect_eq(reap(srv, 15000), 0, "%s", slurp("server.log"));
}

/* ---- systemd's reload protocol ---- */

/* The next datagram within ms into buf, or false. */
static bool next_notify(int fd, int ms, char *buf, size_t cap)
{
    struct pollfd pf = { .fd = fd, .events = POLLIN };
    ssize_t n;

    if (poll(&pf, 1, ms) <= 0 || (n = recv(fd, buf, cap - 1, 0)) < 0)
        return false;
    buf[n] = '\0';
    return true;
}

/* Skips STATUS=/WATCHDOG= updates to the next datagram holding want. */
static bool wait_notify(int fd, const char *want, char *buf, size_t cap)
{
    long long deadline = tpt_now_ms() + 5000;

    while (tpt_now_ms() < deadline)
        if (next_notify(fd, 500, buf, cap) && strstr(buf, want) != NULL)
            return true;
    return false;
}

static unsigned long long monotonic_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000;
}

Test(reload, notify_socket_hears_reloading_with_monotonic_usec_then_ready)
{
    const char *argv[] = { BIN, "-c", NULL, NULL };
    char path[PATH_MAX], msg[1024];
    unsigned long long before, after, said;
    const char *at;
    int nfd = tpt_notify_socket(dir, path, sizeof(path));
    pid_t srv;

    put("t.conf", "listen 127.0.0.1:0;\n");
    argv[2] = path_of("t.conf");
    setenv("NOTIFY_SOCKET", path, 1);
    srv = spawn(argv, "server.log");
    unsetenv("NOTIFY_SOCKET");
    cr_assert(wait_notify(nfd, "READY=1", msg, sizeof(msg)), "%s", slurp("server.log"));

    for (int round = 0; round < 2; round++) {
        /* Round 0 a good conf, round 1 a bad one: READY=1 comes either way. */
        put("t.conf", round == 0 ? "listen 127.0.0.1:0;\nlisten 127.0.0.2:0;\n"
                                 : "listen 127.0.0.1:0;\nlisten 127.0.0.2:0\n");
        before = monotonic_usec();
        kill(srv, SIGHUP);
        cr_assert(wait_notify(nfd, "RELOADING=1", msg, sizeof(msg)), "round %d: %s", round,
                  slurp("server.log"));
        after = monotonic_usec();
        at = strstr(msg, "MONOTONIC_USEC=");
        cr_assert_not_null(at, "RELOADING=1 without MONOTONIC_USEC: %s", msg);
        said = strtoull(at + 15, NULL, 10);
        cr_expect(said >= before && said <= after, "MONOTONIC_USEC %llu not in [%llu, %llu]",
                  said, before, after);
        /* The next message that is not a periodic STATUS is READY=1. */
        do
            cr_assert(next_notify(nfd, 5000, msg, sizeof(msg)), "round %d: no READY=1", round);
        while (strstr(msg, "READY=1") == NULL && strncmp(msg, "STATUS=", 7) == 0);
        cr_assert(strstr(msg, "READY=1") != NULL, "round %d: %s", round, msg);
        if (round == 0)
            cr_expect(strstr(msg, "STATUS=serving, reloaded") != NULL, "%s", msg);
        else
            cr_expect(strstr(msg, "STATUS=reload failed: ") != NULL &&
                      strstr(msg, "t.conf:2: missing \";\"") != NULL, "%s", msg);
    }
    kill(srv, SIGTERM);
    cr_expect(wait_notify(nfd, "STOPPING=1", msg, sizeof(msg)));
    cr_expect_eq(reap(srv, 15000), 0, "%s", slurp("server.log"));
    close(nfd);
}

/* ---- processes N ---- */

/* The pid the master logged for process k, the last time it started it. */
static pid_t child_pid(const char *log, unsigned k)
{
    char pat[64];
    const char *at = NULL, *s;
    int pid = 0;

    snprintf(pat, sizeof(pat), "started process #%u (pid ", k);
    for (s = log; (s = strstr(s, pat)) != NULL; s++)
        at = s;
    cr_assert_not_null(at, "process #%u never started: %s", k, log);
    cr_assert_eq(sscanf(at + strlen(pat), "%d", &pid), 1);
    return (pid_t)pid;
}

Test(reload, the_master_checks_once_and_a_restarted_process_gets_the_newest_conf)
{
    const char *argv[] = { BIN, "-c", NULL, NULL };
    char conf[256], want[PATH_MAX + 64], path[PATH_MAX], msg[1024];
    uint16_t port = tpt_free_port();
    int nfd = tpt_notify_socket(dir, path, sizeof(path)), fd;
    pid_t srv;

    snprintf(conf, sizeof(conf), "processes 2;\nworkers 1;\nlisten 127.0.0.1:%u;\n", port);
    put("t.conf", conf);
    argv[2] = path_of("t.conf");
    setenv("NOTIFY_SOCKET", path, 1);      /* the master alone speaks to it */
    srv = spawn(argv, "server.log");
    unsetenv("NOTIFY_SOCKET");
    cr_assert(wait_log("server.log", "master: all 2 processes serve", 1, 10000), "%s",
              slurp("server.log"));
    cr_assert(wait_notify(nfd, "READY=1", msg, sizeof(msg)));

    /* A bad conf: logged once, by the master; no process reloads. */
    snprintf(conf, sizeof(conf), "processes 2;\nworkers 1;\nlisten 127.0.0.1:%u { app nope; }\n",
             port);
    put("t.conf", conf);
    kill(srv, SIGHUP);
    cr_assert(wait_log("server.log", "master: reload failed", 1, 5000), "%s", slurp("server.log"));
    cr_assert(wait_notify(nfd, "RELOADING=1", msg, sizeof(msg)));
    cr_assert(wait_notify(nfd, "READY=1", msg, sizeof(msg)));
    cr_expect(strstr(msg, "STATUS=reload failed: ") != NULL, "%s", msg);
    usleep(300 * 1000);
    snprintf(want, sizeof(want), "master: reload failed: %s:3: unknown app \"nope\"",
             path_of("t.conf"));
    cr_expect(strstr(slurp("server.log"), want) != NULL, "want %s in %s", want,
              slurp("server.log"));
    cr_expect_eq(count(slurp("server.log"), "reload failed"), 1, "%s", slurp("server.log"));
    cr_expect_eq(count(slurp("server.log"), "got SIGHUP: reloading"), 0);

    /* processes 1 is not taken, so port 0 cannot be either. */
    put("t.conf", "processes 1;\nlisten 127.0.0.1:0;\n");
    kill(srv, SIGHUP);
    cr_assert(wait_log("server.log", "master: reload failed", 2, 5000), "%s", slurp("server.log"));
    snprintf(want, sizeof(want), "master: reload failed: %s:2: listen 127.0.0.1:0: port 0 "
             "cannot be shared by the 2 processes that serve: name a port", path_of("t.conf"));
    cr_expect(strstr(slurp("server.log"), want) != NULL, "want %s in %s", want,
              slurp("server.log"));
    cr_assert(wait_notify(nfd, "RELOADING=1", msg, sizeof(msg)));
    cr_assert(wait_notify(nfd, "READY=1", msg, sizeof(msg)));

    /* A good one that also asks for 3 processes: that needs a restart
     * (warned once, by the master); the app change goes to both. */
    snprintf(conf, sizeof(conf), "processes 3;\nworkers 1;\nlisten 127.0.0.1:%u { app upper; }\n",
             port);
    put("t.conf", conf);
    kill(srv, SIGHUP);
    /* READY=1 comes once both processes have reloaded, not before. */
    cr_assert(wait_notify(nfd, "RELOADING=1", msg, sizeof(msg)));
    cr_assert(wait_notify(nfd, "READY=1", msg, sizeof(msg)), "%s", slurp("server.log"));
    cr_expect(strstr(msg, "STATUS=serving with 2 processes, reloaded") != NULL, "%s", msg);
    cr_expect(strstr(slurp("server.log"), "#1 reload: done") != NULL &&
              strstr(slurp("server.log"), "#2 reload: done") != NULL,
              "READY=1 before the processes reloaded: %s", slurp("server.log"));
    cr_assert(wait_log("server.log", "#1 reload: done", 1, 5000), "%s", slurp("server.log"));
    cr_assert(wait_log("server.log", "#2 reload: done", 1, 5000), "%s", slurp("server.log"));
    snprintf(want, sizeof(want), "%s:1: processes 3: a change of processes needs a restart; "
             "serving on with 2", path_of("t.conf"));
    cr_expect(strstr(slurp("server.log"), want) != NULL, "want %s in %s", want,
              slurp("server.log"));
    cr_expect_eq(count(slurp("server.log"), "needs a restart"), 2, "processes 1, then 3, "
                 "each warned once: %s", slurp("server.log"));
    for (int i = 0; i < 8; i++) {
        fd = dial("127.0.0.1", port);
        exchange(fd, "up\n", "UP\n");
        close(fd);
    }

    /* A process the master restarts starts from the newest conf. */
    kill(child_pid(slurp("server.log"), 1), SIGKILL);
    cr_assert(wait_log("server.log", "started process #1", 2, 5000), "%s", slurp("server.log"));
    cr_assert(wait_log("server.log", "#1 listening on", 2, 5000), "%s", slurp("server.log"));
    cr_expect(strstr(strstr(slurp("server.log"), "restarting it"), "#1 listening on 127.0.0.1:")
              != NULL);
    cr_expect(wait_log("server.log", "(app upper, framing line)", 1, 1000));
    for (int i = 0; i < 16; i++) {
        fd = dial("127.0.0.1", port);
        exchange(fd, "up\n", "UP\n");
        close(fd);
    }
    kill(srv, SIGTERM);
    cr_expect_eq(reap(srv, 15000), 0, "%s", slurp("server.log"));
    close(nfd);
}

/* ---- what cannot change ---- */

Test(reload, without_c_the_builtin_default_is_kept)
{
    const char *argv[] = { BIN, NULL };
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(7000),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int probe = socket(AF_INET, SOCK_STREAM, 0), one = 1, fd;
    pid_t srv;

    setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(probe, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(probe);
        cr_skip_test("127.0.0.1:7000 is in use on this machine");
    }
    close(probe);
    srv = spawn(argv, "server.log");
    cr_assert(wait_log("server.log", "listening on 127.0.0.1:7000", 1, 10000));
    fd = dial("127.0.0.1", 7000);
    kill(srv, SIGHUP);
    cr_assert(wait_log("server.log", "reload: started without -c, so there is no file to read "
                       "again; the built-in default serves on", 1, 5000), "%s",
              slurp("server.log"));
    exchange(fd, "same\n", "same\n");
    close(fd);
    kill(srv, SIGTERM);
    cr_expect_eq(reap(srv, 15000), 0, "%s", slurp("server.log"));
}

/* A privileged port no one holds, or 0. */
static uint16_t free_privileged_port(void)
{
    for (uint16_t p = 1023; p > 900; p--) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(p),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

        ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (ok)
            return p;
    }
    return 0;
}

Test(reload, after_user_dropped_root_a_privileged_port_fails_the_reload_whole)
{
    const char *argv[] = { BIN, "-c", NULL, NULL };
    char conf[256], want[PATH_MAX + 128];
    uint16_t port, low;
    pid_t srv;
    int fd;

    if (geteuid() != 0)
        cr_skip_test("needs root, to drop it");
    if ((low = free_privileged_port()) == 0)
        cr_skip_test("no free port below 1024");
    chmod(dir, 0755);             /* user nobody reads the conf again */
    put("t.conf", "user nobody;\nlisten 127.0.0.1:0;\n");
    argv[2] = path_of("t.conf");
    srv = spawn(argv, "server.log");
    cr_assert(wait_log("server.log", "running as user nobody", 1, 10000), "%s",
              slurp("server.log"));
    port = port_of(slurp("server.log"), "127.0.0.1");

    snprintf(conf, sizeof(conf), "user nobody;\nlisten 127.0.0.1:0 { app upper; }\n"
             "listen 127.0.0.1:%u;\n", low);
    put("t.conf", conf);
    kill(srv, SIGHUP);
    cr_assert(wait_log("server.log", "reload failed", 1, 5000), "%s", slurp("server.log"));
    snprintf(want, sizeof(want), "reload failed: %s:3: listen 127.0.0.1:%u: bind: Permission "
             "denied: the server runs as user nobody and can no longer bind a privileged port "
             "(that needs a restart); the old configuration serves on", path_of("t.conf"), low);
    cr_expect(strstr(slurp("server.log"), want) != NULL, "want %s in %s", want,
              slurp("server.log"));
    fd = dial("127.0.0.1", port);
    exchange(fd, "still echo\n", "still echo\n");       /* the app change did not take */
    close(fd);
    kill(srv, SIGTERM);
    cr_expect_eq(reap(srv, 15000), 0, "%s", slurp("server.log"));
}
