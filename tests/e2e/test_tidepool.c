/* test_tidepool.c - the built binary end to end: options, -t, start with a
 * conf, echo, signals, errors a user sees. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tpt_e2e.h"

#include "tp_conf.h"

#define BIN TP_BIN_DIR "/tidepool"

struct proc {
    pid_t pid;
    int out, err;          /* read ends of its stdout and stderr */
    char log[131072];      /* stderr read so far */
    size_t loglen;
};

static char dir[] = "/tmp/tp_e2e_XXXXXX";

/* Every process a test spawned and has not reaped: the suite's teardown
 * kills them, so a failed assertion leaves no server behind; and each is
 * told to die with the test (PR_SET_PDEATHSIG), for a test that times out
 * and is killed before its teardown runs. */
#define MAX_SPAWNED 64
static pid_t spawned[MAX_SPAWNED];

static void remember(pid_t pid)
{
    for (size_t i = 0; i < MAX_SPAWNED; i++)
        if (spawned[i] == 0) {
            spawned[i] = pid;
            return;
        }
    cr_assert_fail("more than %d processes spawned and not reaped", MAX_SPAWNED);
}

static void forget(pid_t pid)
{
    for (size_t i = 0; i < MAX_SPAWNED; i++)
        if (spawned[i] == pid)
            spawned[i] = 0;
}

static void kill_spawned(void)
{
    for (size_t i = 0; i < MAX_SPAWNED; i++)
        if (spawned[i] > 0) {
            kill(spawned[i], SIGKILL);   /* a master's processes die with it */
            waitpid(spawned[i], NULL, 0);
            spawned[i] = 0;
        }
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[64];

    kill_spawned();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(tidepool, .init = setup, .fini = teardown, .timeout = 60);

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

static void spawn(struct proc *p, const char *const argv[])
{
    int out[2], err[2];
    pid_t parent;

    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
    parent = getpid();
    p->pid = fork();
    cr_assert_geq(p->pid, 0);
    if (p->pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(126);           /* the test is gone already */
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    remember(p->pid);
    close(out[1]);
    close(err[1]);
    p->out = out[0];
    p->err = err[0];
    p->loglen = 0;
    p->log[0] = '\0';
}

/* Reads stderr until it contains want (true) or ms pass / EOF (false). */
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

/* Waits for the process to exit (killing it after ms) and returns its exit
 * status, or -1 if it had to be killed. */
static int finish(struct proc *p, int ms)
{
    long long deadline = tpt_now_ms() + ms;
    int status;

    while (waitpid(p->pid, &status, WNOHANG) == 0) {
        if (tpt_now_ms() > deadline) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            forget(p->pid);
            close(p->out);
            close(p->err);
            return -1;
        }
        wait_log(p, "\1never", 10);     /* keep draining stderr */
    }
    forget(p->pid);
    for (;;) {             /* the rest of stderr, up to EOF */
        ssize_t n = read(p->err, p->log + p->loglen, sizeof(p->log) - 1 - p->loglen);

        if (n <= 0)
            break;
        p->loglen += (size_t)n;
        p->log[p->loglen] = '\0';
    }
    close(p->out);
    close(p->err);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static size_t read_out(struct proc *p, char *buf, size_t cap)
{
    size_t got = 0;
    ssize_t n;

    while (got < cap - 1 && (n = read(p->out, buf + got, cap - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    return got;
}

/* Runs BIN with args to completion; returns the exit code. */
static int run(struct proc *p, const char *const argv[], char *out, size_t cap)
{
    spawn(p, argv);
    read_out(p, out, cap);
    return finish(p, 10000);
}

static int dial(uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert_geq(fd, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s",
                 strerror(errno));
    return fd;
}

static void echo_once(uint16_t port, const char *line)
{
    char buf[256];
    size_t n = strlen(line), got = 0;
    int fd = dial(port);
    struct pollfd pf = { .fd = fd, .events = POLLIN };

    cr_assert_eq(write(fd, line, n), (ssize_t)n);
    while (got < n && poll(&pf, 1, 10000) > 0) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - got);

        if (r <= 0)
            break;
        got += (size_t)r;
    }
    cr_assert_eq(got, n);
    cr_assert(memcmp(buf, line, n) == 0);
    close(fd);
}

/* Starts BIN -c conf and returns the port of its first listener. */
static uint16_t start(struct proc *p, const char *conf)
{
    const char *argv[] = { BIN, "-c", conf, NULL };
    char *at;
    unsigned port;

    spawn(p, argv);
    cr_assert(wait_log(p, "listening on 127.0.0.1:", 10000), "no start: %s", p->log);
    cr_assert(wait_log(p, " (app ", 5000));
    at = strstr(p->log, "listening on 127.0.0.1:");
    cr_assert_eq(sscanf(at, "listening on 127.0.0.1:%u", &port), 1);
    return (uint16_t)port;
}

Test(tidepool, version_and_help)
{
    const char *v[] = { BIN, "-v", NULL }, *h[] = { BIN, "-h", NULL };
    struct proc p;
    char out[4096];

    cr_assert_eq(run(&p, v, out, sizeof(out)), 0);
    cr_expect(strncmp(out, "tidepool ", 9) == 0, "%s", out);
    cr_assert_eq(run(&p, h, out, sizeof(out)), 0);
    cr_expect(strstr(out, "usage: tidepool") != NULL, "%s", out);
    cr_expect(strstr(out, "-t") != NULL);
}

Test(tidepool, bad_usage_exits_2)
{
    const char *x[] = { BIN, "-x", NULL }, *c[] = { BIN, "-c", NULL },
               *extra[] = { BIN, "stray", NULL };
    struct proc p;
    char out[4096];

    cr_assert_eq(run(&p, x, out, sizeof(out)), 2);
    cr_expect(strstr(p.log, "unknown option -x") != NULL, "%s", p.log);
    cr_assert_eq(run(&p, c, out, sizeof(out)), 2);
    cr_expect(strstr(p.log, "needs an argument") != NULL, "%s", p.log);
    cr_assert_eq(run(&p, extra, out, sizeof(out)), 2);
    cr_expect(strstr(p.log, "unexpected argument") != NULL, "%s", p.log);
}

Test(tidepool, test_good_conf)
{
    const char *shipped[] = { BIN, "-t", "-c", TP_SOURCE_DIR "/conf/tidepool.conf", NULL },
               *builtin[] = { BIN, "-t", NULL };
    struct proc p;
    char out[256];

    cr_assert_eq(run(&p, shipped, out, sizeof(out)), 0, "%s", p.log);
    cr_expect(strstr(p.log, "syntax is ok") != NULL, "%s", p.log);
    cr_expect(strstr(p.log, "test is successful") != NULL, "%s", p.log);
    cr_assert_eq(run(&p, builtin, out, sizeof(out)), 0, "%s", p.log);
}

Test(tidepool, test_bad_conf_names_file_and_line)
{
    const char *path = put("bad.conf", "workers 2;\nlisten 127.0.0.1:7000 {\n"
                                       "    app ecko;\n}\n");
    const char *argv[] = { BIN, "-t", "-c", path, NULL };
    struct proc p;
    char out[256], want[PATH_MAX + 64];

    cr_assert_eq(run(&p, argv, out, sizeof(out)), 1);
    snprintf(want, sizeof(want), "%s:3: unknown app \"ecko\"", path);
    cr_expect(strstr(p.log, want) != NULL, "%s", p.log);
    cr_expect(strstr(p.log, "test failed") != NULL, "%s", p.log);

    path = put("missing_semi.conf", "listen 7000\n");
    argv[3] = path;
    cr_assert_eq(run(&p, argv, out, sizeof(out)), 1);
    cr_expect(strstr(p.log, "missing_semi.conf:1: missing \";\"") != NULL, "%s", p.log);

    argv[3] = "/nonexistent.conf";
    cr_assert_eq(run(&p, argv, out, sizeof(out)), 1);
    cr_expect(strstr(p.log, "/nonexistent.conf: cannot open") != NULL, "%s", p.log);
}

Test(tidepool, serves_a_conf_and_stops_on_sigterm)
{
    struct proc p;
    uint16_t port = start(&p, put("t.conf", "workers 2;\nlisten 127.0.0.1:0 {\n"
                                            "    app upper;\n}\nlisten [::1]:0;\n"));
    char buf[32];
    int fd = dial(port);

    cr_assert_eq(write(fd, "shout\n", 6), 6);
    cr_assert_eq(read(fd, buf, sizeof(buf)), 6);
    cr_assert(memcmp(buf, "SHOUT\n", 6) == 0);
    close(fd);
    cr_expect(wait_log(&p, "listening on [::1]:", 5000), "%s", p.log);
    kill(p.pid, SIGTERM);
    cr_assert_eq(finish(&p, 10000), 0, "%s", p.log);
    cr_expect(strstr(p.log, "stats: open 0, accepted 1") != NULL, "%s", p.log);
    cr_expect(strstr(p.log, "[info] stopped") != NULL, "%s", p.log);
}

/* A stream of 64-byte lines, line i holding i in 63 digits. */
static void stream(char *buf, unsigned long long first, size_t lines)
{
    char line[65];

    for (size_t k = 0; k < lines; k++) {
        snprintf(line, sizeof(line), "%063llu\n", first + k);
        memcpy(buf + k * 64, line, 64);
    }
}

struct flood { int fd; atomic_int stop; unsigned long long sent; };

/* Writes the stream without ever reading, as fast as the socket takes it. */
static void *flood_main(void *arg)
{
    struct flood *f = arg;
    static char chunk[64 * 1024];
    size_t off = sizeof(chunk);

    fcntl(f->fd, F_SETFL, O_NONBLOCK);
    for (long long end = tpt_now_ms() + 30000; !atomic_load(&f->stop) && tpt_now_ms() < end;) {
        ssize_t n;

        if (off == sizeof(chunk)) {
            stream(chunk, f->sent / 64, 1024);
            off = 0;
        }
        n = send(f->fd, chunk + off, sizeof(chunk) - off, MSG_NOSIGNAL);
        if (n > 0) {
            f->sent += (unsigned long long)n;
            off += (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            usleep(500);
        } else {
            break;
        }
    }
    return NULL;
}

/* The last value logged after key (as in "bytes in 123"), or 0. */
static unsigned long long last_count(const char *log, const char *key)
{
    unsigned long long v = 0;

    for (const char *at = strstr(log, key); at != NULL; at = strstr(at + 1, key))
        sscanf(at + strlen(key), "%llu", &v);
    return v;
}

/* The port of the listener of app `app`, from the start's log. */
static uint16_t port_of_app(struct proc *p, const char *app)
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

/* One sample of app metrics on port: the value after "name ". The client
 * reads the whole response (Content-Length) and closes first, so the scrape
 * costs the server no lingering close. */
static unsigned long long scrape(uint16_t port, const char *name)
{
    static char buf[1 << 17];
    const char *req = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", *body, *at;
    int fd = dial(port);
    size_t got = 0, len = 0;
    char want[160];

    cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    for (;;) {
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        ssize_t n;

        buf[got] = '\0';
        if ((body = strstr(buf, "\r\n\r\n")) != NULL &&
            (at = strstr(buf, "Content-Length: ")) != NULL && at < body &&
            (len = strtoull(at + 16, NULL, 10), got >= (size_t)(body + 4 - buf) + len))
            break;
        cr_assert_gt(poll(&pf, 1, 5000), 0, "scrape timed out: %s", buf);
        n = read(fd, buf + got, sizeof(buf) - 1 - got);
        cr_assert_gt(n, 0, "scrape cut short: %s", buf);
        got += (size_t)n;
    }
    close(fd);
    snprintf(want, sizeof(want), "\n%s ", name);
    at = strstr(buf, want);
    cr_assert_not_null(at, "no %s in %s", name, buf);
    return strtoull(at + strlen(want), NULL, 10);
}

/* Issue 7, defect 1, as a user meets it: a client with a small receive
 * buffer pipelines without pause, SIGTERM comes, the client then reads what
 * it is owed. Every message the server took is answered, then EOF (closing
 * on the unread input would reset the connection and lose replies). */
Test(tidepool, sigterm_with_input_still_arriving_finishes_every_reply)
{
    struct proc p;
    uint16_t port = start(&p, put("t.conf", "listen 127.0.0.1:0;\n"
                                             "listen 127.0.0.1:0 { app metrics; }\n"));
    uint16_t metrics = port_of_app(&p, "metrics");
    static char in[64u << 20], want[64 * 1024];
    char bytes_in[128];
    unsigned long long scrapes = 0;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0), rcvbuf = 32 * 1024, reset = 0;
    struct flood f = { .fd = fd };
    struct pollfd pf = { .fd = fd, .events = POLLIN };
    unsigned long long msgs;
    size_t got = 0;
    pthread_t th;

    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(pthread_create(&th, NULL, flood_main, &f), 0);
    /* Past send_buffer_max of replies: the server has paused reading this
     * connection, and more input waits in its socket. */
    snprintf(bytes_in, sizeof(bytes_in),
             "tidepool_bytes_total{listener=\"127.0.0.1:%u\",direction=\"in\"}", port);
    for (int i = 0; i < 200 && (scrapes++, scrape(metrics, bytes_in) < (2u << 20)); i++)
        wait_log(&p, "\1never", 50);
    scrapes++;
    cr_assert_geq(scrape(metrics, bytes_in), 2u << 20, "%s", p.log);
    kill(p.pid, SIGTERM);
    usleep(100 * 1000);                   /* still sending meanwhile */
    atomic_store(&f.stop, 1);
    pthread_join(th, NULL);
    while (poll(&pf, 1, 10000) > 0) {
        ssize_t r = recv(fd, in + got, sizeof(in) - got, MSG_DONTWAIT);

        if (r < 0 && errno == EAGAIN)
            continue;
        if (r <= 0) {
            reset = r < 0 && errno == ECONNRESET;
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    cr_assert_eq(finish(&p, 15000), 0, "%s", p.log);
    /* The stop's counters are over both listeners: a scrape is a message. */
    msgs = last_count(strstr(p.log, "[info] stopped") ? p.log : "", "messages ") - scrapes;
    cr_log_info("sent %llu bytes, owed %llu replies, got %zu bytes", f.sent, msgs, got);
    cr_assert_not(reset, "reset after %zu bytes", got);
    cr_assert_eq(got, msgs * 64, "got %zu bytes, owed %llu: %s", got, msgs * 64, p.log);
    for (size_t off = 0; off < got; off += sizeof(want)) {
        size_t len = got - off < sizeof(want) ? got - off : sizeof(want);

        stream(want, off / 64, sizeof(want) / 64);
        cr_assert(memcmp(in + off, want, len) == 0, "reply differs near byte %zu", off);
    }
    cr_expect(strstr(p.log, "lingering 0 (of 1, 0 cut short)") != NULL, "%s", p.log);
}

Test(tidepool, port_in_use_is_reported_with_its_line)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int holder = socket(AF_INET, SOCK_STREAM, 0);
    char conf[128], want[PATH_MAX + 64], out[64];
    const char *argv[] = { BIN, "-c", NULL, NULL }, *path;
    struct proc p;

    cr_assert_eq(bind(holder, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(holder, 1), 0);
    getsockname(holder, (struct sockaddr *)&a, &len);
    snprintf(conf, sizeof(conf), "# taken\nlisten 127.0.0.1:%u;\n", ntohs(a.sin_port));
    argv[2] = path = put("t.conf", conf);
    cr_assert_eq(run(&p, argv, out, sizeof(out)), 1, "%s", p.log);
    snprintf(want, sizeof(want), "%s:2: listen 127.0.0.1:%u: bind: Address already in use",
             path, ntohs(a.sin_port));
    cr_expect(strstr(p.log, want) != NULL, "want \"%s\" in: %s", want, p.log);
    close(holder);
}

Test(tidepool, usr1_logs_no_counters_hup_reloads_and_the_stop_logs_them)
{
    struct proc p;

    start(&p, put("t.conf", "listen 127.0.0.1:0;\n"));
    kill(p.pid, SIGUSR1);
    kill(p.pid, SIGHUP);
    cr_expect(wait_log(&p, "reload: done", 5000), "%s", p.log);
    /* The counters are app metrics's now: USR1 (handled before HUP) only
     * reopens the log. */
    cr_expect(strstr(p.log, "stats:") == NULL, "%s", p.log);
    kill(p.pid, SIGINT);
    cr_assert_eq(finish(&p, 10000), 0, "%s", p.log);
    cr_expect(strstr(p.log, "stats: open 0") != NULL, "%s", p.log);
}

Test(tidepool, second_signal_forces_exit)
{
    struct proc p;
    uint16_t port = start(&p, put("t.conf", "shutdown_timeout 0;\n"
                                            "listen 127.0.0.1:0;\n"));
    int fd = dial(port);
    static char big[4 << 20];

    /* A client that sends much and never reads holds the graceful stop. */
    memset(big, 'q', sizeof(big));
    for (size_t i = 63; i < sizeof(big); i += 64)
        big[i] = '\n';
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 200 && send(fd, big, sizeof(big), MSG_NOSIGNAL) != 0; i++)
        usleep(5000);
    kill(p.pid, SIGTERM);
    cr_assert(wait_log(&p, "shutting down", 5000), "%s", p.log);
    usleep(200 * 1000);
    cr_assert_eq(waitpid(p.pid, NULL, WNOHANG), 0, "exited while a client held replies: %s",
                 p.log);
    kill(p.pid, SIGTERM);
    cr_assert_eq(finish(&p, 10000), 0, "%s", p.log);
    close(fd);
}

Test(tidepool, builtin_default_serves_port_7000)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(7000),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int probe = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    const char *argv[] = { BIN, NULL };
    struct proc p;

    setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(probe, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(probe);
        cr_skip_test("127.0.0.1:7000 is in use on this machine");
    }
    close(probe);
    spawn(&p, argv);
    cr_assert(wait_log(&p, "listening on 127.0.0.1:7000 (app echo, framing line)", 10000),
              "%s", p.log);
    echo_once(7000, "hello\n");
    kill(p.pid, SIGTERM);
    cr_assert_eq(finish(&p, 10000), 0, "%s", p.log);
}

/* ---- systemd: the notify protocol and the unit ---- */

/* Reads datagrams until one contains want; returns it in buf, or false
 * after ms. */
static bool wait_notify(int fd, const char *want, int ms, char *buf, size_t cap)
{
    long long deadline = tpt_now_ms() + ms;

    for (;;) {
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        long long left = deadline - tpt_now_ms();
        ssize_t n;

        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            return false;
        n = recv(fd, buf, cap - 1, 0);
        if (n < 0)
            return false;
        buf[n] = '\0';
        if (strstr(buf, want) != NULL)
            return true;
    }
}

Test(tidepool, tells_systemd_ready_status_watchdog_and_stopping)
{
    char path[PATH_MAX], msg[512];
    int nfd = tpt_notify_socket(dir, path, sizeof(path)), fd;
    struct proc p;
    uint16_t port;

    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "200000", 1);     /* WATCHDOG=1 every 100 ms */
    port = start(&p, put("t.conf", "listen 127.0.0.1:0;\n"));
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");

    cr_assert(wait_notify(nfd, "READY=1", 5000, msg, sizeof(msg)), "no READY=1: %s", p.log);
    cr_expect(strstr(msg, "STATUS=serving, 0 connections") != NULL, "%s", msg);
    echo_once(port, "ready means served\n");    /* READY came after the bind */

    /* The watchdog keeps coming from the loop while it is idle. */
    for (int i = 0; i < 3; i++)
        cr_assert(wait_notify(nfd, "WATCHDOG=1", 1000, msg, sizeof(msg)),
                  "watchdog %d did not come within 1 s", i);

    /* STATUS= follows the open connections. */
    fd = dial(port);
    cr_assert(wait_notify(nfd, "STATUS=serving, 1 connections", 3000, msg, sizeof(msg)),
              "STATUS did not show the connection: last \"%s\"", msg);

    kill(p.pid, SIGTERM);
    cr_assert(wait_notify(nfd, "STOPPING=1", 3000, msg, sizeof(msg)), "%s", p.log);
    cr_expect(strstr(msg, "STATUS=stopping: finishing 1 connections") != NULL, "%s", msg);
    close(fd);
    cr_assert_eq(finish(&p, 10000), 0, "%s", p.log);
    close(nfd);
}

Test(tidepool, without_notify_socket_nothing_is_sent)
{
    char path[PATH_MAX], msg[512];
    int nfd = tpt_notify_socket(dir, path, sizeof(path));
    struct proc p;

    /* A NOTIFY_SOCKET that is not in the environment is never written:
     * the socket exists, the server just was not told about it. */
    unsetenv("NOTIFY_SOCKET");
    start(&p, put("t.conf", "listen 127.0.0.1:0;\n"));
    cr_expect_not(wait_notify(nfd, "=", 300, msg, sizeof(msg)), "got \"%s\"", msg);
    kill(p.pid, SIGTERM);
    cr_assert_eq(finish(&p, 10000), 0, "%s", p.log);
    close(nfd);
}

Test(tidepool, systemd_unit_passes_systemd_analyze_verify)
{
    char out[8192], cmd[PATH_MAX + 64];
    FILE *f;
    size_t n;
    int rc;

    /* The unit as configured with this build's paths: verify checks that
     * the commands exist. It exits 0 even on unknown keys, so any output
     * at all is a failure. */
    snprintf(cmd, sizeof(cmd), "systemd-analyze verify --man=no %s/tests/tidepool-build.service 2>&1",
             TP_BIN_DIR);
    f = popen(cmd, "r");
    cr_assert_not_null(f);
    n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    rc = pclose(f);
    cr_assert_eq(rc, 0, "systemd-analyze failed (is the systemd package installed?): %s", out);
    cr_assert_eq(n, 0, "systemd-analyze verify complained:\n%s", out);
}

/* ---- -T, error_log and SIGUSR1, user ---- */

Test(tidepool, minus_T_prints_the_effective_conf_and_it_loads_back)
{
    static char first[16384], second[16384];
    const char *argv1[] = { BIN, "-T", "-c", NULL, NULL };
    struct proc p;
    FILE *f;
    char path[PATH_MAX];

    put("more.conf", "listen 127.0.0.1:7555 {\n  app upper;\n  allow 127.0.0.0/8;\n"
                     "  deny all;\n  read_timeout 1500ms;\n}\n");
    argv1[3] = put("t.conf", "workers 3;\ninclude more.conf;\n");   /* put()'s path is reused */
    cr_assert_eq(run(&p, argv1, first, sizeof(first)), 0, "%s", p.log);
    cr_assert(strstr(p.log, "test is successful") != NULL, "%s", p.log);
    cr_assert(strstr(first, "workers 3;") != NULL, "%s", first);
    cr_assert(strstr(first, "app \"upper\";") != NULL, "the include is resolved: %s", first);
    cr_assert(strstr(first, "read_timeout 1500ms;") != NULL, "%s", first);
    cr_assert(strstr(first, "idle_timeout 300s;") != NULL, "defaults written out: %s", first);
    cr_assert(strstr(first, "allow 127.0.0.0/8;\n    deny all;") != NULL, "rules in order: %s", first);
    /* What -T prints is a conf: it loads, and prints the same again. */
    snprintf(path, sizeof(path), "%s/dumped.conf", dir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(first, f);
    fclose(f);
    {
        const char *argv2[] = { BIN, "-T", "-c", path, NULL };

        cr_assert_eq(run(&p, argv2, second, sizeof(second)), 0, "%s", p.log);
    }
    cr_assert_str_eq(second, first);
}

Test(tidepool, error_log_takes_the_log_and_usr1_reopens_it_for_logrotate)
{
    char path[PATH_MAX], rotated[PATH_MAX], conf[PATH_MAX + 64], text[8192];
    const char *argv[4];
    struct proc p;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "%s/tidepool.log", dir);
    snprintf(rotated, sizeof(rotated), "%s/tidepool.log.1", dir);
    snprintf(conf, sizeof(conf), "error_log %s;\nlisten 127.0.0.1:0;\n", path);
    argv[0] = BIN;
    argv[1] = "-c";
    argv[2] = put("t.conf", conf);
    argv[3] = NULL;
    spawn(&p, argv);
    /* The log is in the file, not on stderr: poll the file for the start. */
    for (int i = 0; i < 500; i++) {
        text[0] = '\0';
        if ((f = fopen(path, "r")) != NULL) {
            n = fread(text, 1, sizeof(text) - 1, f);
            text[n] = '\0';
            fclose(f);
        }
        if (strstr(text, "listening on") != NULL)
            break;
        usleep(10000);
    }
    cr_assert(strstr(text, "listening on") != NULL, "log file: %s; stderr: %s", text, p.log);
    cr_assert_eq(rename(path, rotated), 0);          /* what logrotate does */
    kill(p.pid, SIGUSR1);
    for (int i = 0; i < 500 && access(path, F_OK) != 0; i++)
        usleep(10000);
    cr_assert_eq(access(path, F_OK), 0, "SIGUSR1 did not reopen %s", path);
    kill(p.pid, SIGTERM);
    cr_assert_eq(finish(&p, 10000), 0, "%s", p.log);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    cr_assert(strstr(text, "reopened") != NULL, "%s", text);
    cr_assert(strstr(text, "stopped") != NULL, "later lines go to the new file: %s", text);
    cr_assert(strstr(text, "listening on") == NULL, "the start stays in the old one: %s", text);
    cr_assert_eq(strstr(p.log, "listening on"), NULL, "stderr got the log too: %s", p.log);
}

/* As root (CI): a user the test creates; the server serves as that user. */
Test(tidepool, user_drops_root_after_binding)
{
    const char *name = "tptest_e2e";
    char cmd[128], status[4096], path[64], *uid_line;
    unsigned uid = 0, want;
    struct passwd *pw;
    struct proc p;
    uint16_t port;
    FILE *f;
    size_t n;

    if (geteuid() != 0)
        cr_skip_test("needs root to create a user and to drop to it");
    snprintf(cmd, sizeof(cmd), "userdel %s >/dev/null 2>&1; useradd --system --no-create-home "
             "--shell /usr/sbin/nologin %s", name, name);
    cr_assert_eq(system(cmd), 0, "useradd failed");
    pw = getpwnam(name);
    cr_assert_not_null(pw);
    want = (unsigned)pw->pw_uid;
    snprintf(cmd, sizeof(cmd), "user %s;\nlisten 127.0.0.1:0;\n", name);
    port = start(&p, put("t.conf", cmd));
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p.pid);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    n = fread(status, 1, sizeof(status) - 1, f);
    status[n] = '\0';
    fclose(f);
    uid_line = strstr(status, "\nUid:");
    cr_assert_not_null(uid_line);
    cr_assert_eq(sscanf(uid_line, "\nUid: %u", &uid), 1);
    echo_once(port, "as a user\n");
    kill(p.pid, SIGTERM);
    cr_expect_eq(finish(&p, 10000), 0, "%s", p.log);
    snprintf(cmd, sizeof(cmd), "userdel %s", name);
    cr_expect_eq(system(cmd), 0);
    cr_assert_eq(uid, want, "serving as uid %u, not %s (%u): %s", uid, name, want, p.log);
    cr_assert(strstr(p.log, "running as user tptest_e2e") != NULL, "%s", p.log);
}

Test(tidepool, user_that_does_not_exist_stops_the_start)
{
    const char *argv[] = { BIN, "-c", NULL, NULL };
    char out[256];
    struct proc p;

    if (geteuid() != 0)
        cr_skip_test("as another user, `user` is only a warning");
    argv[2] = put("t.conf", "user no_such_user_tp;\nlisten 127.0.0.1:0;\n");
    cr_assert_eq(run(&p, argv, out, sizeof(out)), 1, "%s", p.log);
    cr_assert(strstr(p.log, "user no_such_user_tp: no such user") != NULL, "%s", p.log);
}

/* ---- processes N: a master and serving processes on one port ---- */

/* Reads n bytes within 5 s; returns n, or what it got before EOF, an error
 * (a reset) or the deadline. */
static ssize_t read_exact(int fd, char *buf, size_t n)
{
    long long deadline = tpt_now_ms() + 5000;
    size_t got = 0;

    while (got < n) {
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        ssize_t r;

        if (poll(&pf, 1, (int)(deadline - tpt_now_ms())) <= 0)
            break;
        r = read(fd, buf + got, n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* The pid the master logged for process k, the last time it started it. */
static pid_t child_pid(struct proc *p, unsigned k)
{
    char pat[64];
    const char *at = NULL, *s;
    int pid = 0;

    snprintf(pat, sizeof(pat), "started process #%u (pid ", k);
    for (s = p->log; (s = strstr(s, pat)) != NULL; s++)
        at = s;
    cr_assert_not_null(at, "process #%u never started: %s", k, p->log);
    cr_assert_eq(sscanf(at + strlen(pat), "%d", &pid), 1);
    return (pid_t)pid;
}

/* "accepted N" in process k's stats line. */
static long long child_accepted(const struct proc *p, unsigned k)
{
    char pat[32];
    const char *s;

    snprintf(pat, sizeof(pat), "#%u stats: ", k);
    s = strstr(p->log, pat);
    if (s == NULL || (s = strstr(s, "accepted ")) == NULL)
        return -1;
    return atoll(s + 9);
}

static uint16_t start_processes(struct proc *p, unsigned n)
{
    char conf[128];
    uint16_t port = tpt_free_port();
    const char *argv[] = { BIN, "-c", NULL, NULL };

    snprintf(conf, sizeof(conf), "processes %u;\nworkers 1;\nlisten 127.0.0.1:%u;\n", n, port);
    argv[2] = put("t.conf", conf);
    spawn(p, argv);
    cr_assert(wait_log(p, "master: all ", 10000), "%s", p->log);
    return port;
}

Test(tidepool, processes_share_the_port_and_each_takes_a_share)
{
    char port_text[32], out[8192];
    const char *stress[] = { TP_BIN_DIR "/tidepool-stress", "-c", "200", "-d", "1s", "-q",
                             port_text, NULL };
    struct proc p, s;
    uint16_t port = start_processes(&p, 2);

    snprintf(port_text, sizeof(port_text), "127.0.0.1:%u", port);
    cr_assert_eq(run(&s, stress, out, sizeof(out)), 0, "%s%s", out, s.log);
    kill(p.pid, SIGHUP);
    cr_assert(wait_log(&p, "#1 got SIGHUP", 5000), "HUP did not reach #1: %s", p.log);
    cr_assert(wait_log(&p, "#2 got SIGHUP", 5000), "HUP did not reach #2: %s", p.log);
    kill(p.pid, SIGTERM);
    cr_assert_eq(finish(&p, 15000), 0, "%s", p.log);
    cr_assert_gt(child_accepted(&p, 1), 0, "process #1 took no connection: %s", p.log);
    cr_assert_gt(child_accepted(&p, 2), 0, "process #2 took no connection: %s", p.log);
    cr_assert_geq(child_accepted(&p, 1) + child_accepted(&p, 2), 200, "%s", p.log);
    cr_assert(strstr(p.log, "master: every process has stopped") != NULL, "%s", p.log);
}

Test(tidepool, a_killed_process_costs_its_connections_and_is_restarted)
{
    enum { N = 40 };
    int fds[N], alive = 0, lost = 0;
    struct proc p;
    uint16_t port = start_processes(&p, 2);
    pid_t victim = child_pid(&p, 1), again;
    long long t0;

    for (int i = 0; i < N; i++) {
        fds[i] = dial(port);
        cr_assert_eq(write(fds[i], "hi\n", 3), 3);
    }
    for (int i = 0; i < N; i++) {
        char buf[8];

        cr_assert_eq(read_exact(fds[i], buf, 3), 3, "connection %d got no echo", i);
    }
    t0 = tpt_now_ms();
    cr_assert_eq(kill(victim, SIGKILL), 0);
    cr_assert(wait_log(&p, "was killed by signal 9", 5000), "%s", p.log);
    /* The master starts #1 again within a second. */
    while (child_pid(&p, 1) == victim && tpt_now_ms() - t0 < 3000)
        wait_log(&p, "\1never", 20);
    again = child_pid(&p, 1);
    cr_assert_neq(again, victim, "process #1 was not restarted: %s", p.log);
    cr_assert_lt(tpt_now_ms() - t0, 1500, "restart took %lld ms", tpt_now_ms() - t0);
    /* Only the killed process's connections are gone; the rest still echo. */
    for (int i = 0; i < N; i++) {
        char buf[8];
        ssize_t n = write(fds[i], "ok\n", 3) == 3 ? read_exact(fds[i], buf, 3) : -1;

        if (n == 3 && memcmp(buf, "ok\n", 3) == 0)
            alive++;
        else
            lost++;
        close(fds[i]);
    }
    cr_assert_gt(lost, 0, "no connection was on the killed process?");
    cr_assert_gt(alive, 0, "the other process lost its connections too");
    for (int i = 0; i < 20; i++)
        echo_once(port, "after the restart\n");
    kill(p.pid, SIGTERM);
    cr_assert_eq(finish(&p, 15000), 0, "%s", p.log);
}

Test(tidepool, processes_that_cannot_start_stop_the_master)
{
    char conf[128];
    uint16_t port = tpt_free_port();
    const char *argv[] = { BIN, "-c", NULL, NULL };
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int holder = socket(AF_INET, SOCK_STREAM, 0);
    char out[256];
    struct proc p;

    /* A socket without SO_REUSEPORT holds the port: no process can bind it. */
    cr_assert_eq(bind(holder, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(holder, 1), 0);
    snprintf(conf, sizeof(conf), "processes 2;\nlisten 127.0.0.1:%u;\n", port);
    argv[2] = put("t.conf", conf);
    cr_assert_eq(run(&p, argv, out, sizeof(out)), 1, "%s", p.log);
    cr_assert(strstr(p.log, "before serving; stopping") != NULL, "%s", p.log);
    cr_assert(strstr(p.log, "Address already in use") != NULL, "%s", p.log);
    close(holder);
}

/* ---- man pages ---- */

static const char *const pages[] = {
    TP_SOURCE_DIR "/apps/tidepool/tidepool.8",
    TP_SOURCE_DIR "/conf/tidepool.conf.5",
    TP_SOURCE_DIR "/apps/stress/tidepool-stress.1",
};

static char *slurp(const char *path)
{
    static char text[3][65536];
    static int next;
    char *buf = text[next++ % 3];
    FILE *f = fopen(path, "r");
    size_t n;

    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    n = fread(buf, 1, sizeof(text[0]) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

Test(tidepool, man_pages_pass_mandoc_lint)
{
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
        char cmd[PATH_MAX + 64], out[4096];
        FILE *f;
        size_t n;

        snprintf(cmd, sizeof(cmd), "mandoc -Tlint -W warning %s 2>&1", pages[i]);
        f = popen(cmd, "r");
        cr_assert_not_null(f);
        n = fread(out, 1, sizeof(out) - 1, f);
        out[n] = '\0';
        cr_assert_eq(pclose(f), 0, "mandoc (is the mandoc package installed?): %s", out);
        cr_assert_eq(n, 0, "%s:\n%s", pages[i], out);
    }
}

Test(tidepool, every_directive_is_in_tidepool_conf_5)
{
    const char *page = slurp(pages[1]), *name;
    char want[64];

    for (size_t i = 0; (name = tp_conf_directive_name(i)) != NULL; i++) {
        snprintf(want, sizeof(want), ".It Ic %s ", name);
        cr_expect(strstr(page, want) != NULL, "directive %s is not in tidepool.conf(5)", name);
    }
}

/* Whether page has "Fl opt" as a whole word (not a prefix of a longer one). */
static bool has_flag(const char *page, const char *opt)
{
    char want[48];
    size_t n = (size_t)snprintf(want, sizeof(want), "Fl %s", opt);

    for (const char *s = page; (s = strstr(s, want)) != NULL; s++)
        if (s[n] == ' ' || s[n] == '\n' || s[n] == ',')
            return true;
    return false;
}

/* Every option --help prints ("  -c FILE", "  --mode MODE", "  -h, --help")
 * is an `Fl` of the page. */
static void options_documented(const char *const argv[], const char *page_path)
{
    static char help[16384];
    const char *page = slurp(page_path);
    struct proc p;
    char *line, *save = NULL;
    int seen = 0;

    cr_assert_eq(run(&p, argv, help, sizeof(help)), 0, "%s", p.log);
    for (line = strtok_r(help, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char *s = line;

        while (*s == ' ')
            s++;
        if (s == line || *s != '-')
            continue;              /* usage line, or a continuation */
        while (*s == '-') {
            char opt[32];
            size_t n = strcspn(s, " ,:");

            snprintf(opt, sizeof(opt), "%.*s", (int)n, s);
            cr_expect(has_flag(page, opt + 1), "%s is not in %s", opt, page_path);
            seen++;
            s += n;
            if (strncmp(s, ", ", 2) != 0)
                break;
            s += 2;
        }
    }
    cr_assert_gt(seen, 4, "no options found in the help: %s", help);
}

Test(tidepool, every_option_of_help_is_in_its_page)
{
    const char *server[] = { BIN, "-h", NULL };
    const char *stress[] = { TP_BIN_DIR "/tidepool-stress", "--help", NULL };

    options_documented(server, pages[0]);
    options_documented(stress, pages[2]);
}

/* ---- app http ---- */

/* teardown() kills what a failed test left running, as for every suite. */
TestSuite(tidepool_http, .init = setup, .fini = teardown, .timeout = 60);

/* Writes req on a new connection and reads until the server closes it
 * (10 s at most). Returns what came back, NUL-terminated, in out. */
static size_t http_exchange(uint16_t port, const char *req, char *out, size_t cap)
{
    int fd = dial(port);
    struct pollfd pf = { .fd = fd, .events = POLLIN };
    long long deadline = tpt_now_ms() + 10000;
    size_t got = 0;
    ssize_t n;

    cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    while (got < cap - 1 && tpt_now_ms() < deadline && poll(&pf, 1, 10000) > 0) {
        n = read(fd, out + got, cap - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    out[got] = '\0';
    cr_assert(tpt_now_ms() < deadline, "the server did not close: \"%s\"", out);
    return got;
}

static int count_of(const char *s, const char *what)
{
    int n = 0;

    for (; (s = strstr(s, what)) != NULL; s += strlen(what))
        n++;
    return n;
}

Test(tidepool_http, test_refuses_a_framing_app_http_cannot_use)
{
    char bad[PATH_MAX - 64], good[PATH_MAX];

    snprintf(bad, sizeof(bad), "%s", put("bad.conf", "listen 127.0.0.1:7000 {\n    app http;\n"
                                                     "    framing length;\n}\n"));
    snprintf(good, sizeof(good), "%s", put("good.conf", "listen 127.0.0.1:7000 { app http; }\n"
                                        "listen 127.0.0.1:7001 { app http; framing http;\n"
                                        "  http_body \"up\\n\"; }\n"
                                        "listen 127.0.0.1:7002 { app echo; framing http; }\n"));
    const char *argv_bad[] = { BIN, "-t", "-c", bad, NULL },
               *argv_good[] = { BIN, "-t", "-c", good, NULL };
    struct proc p;
    char out[256], want[PATH_MAX + 128];

    cr_assert_eq(run(&p, argv_bad, out, sizeof(out)), 1, "%s", p.log);
    snprintf(want, sizeof(want), "%s:3: framing length does not work with app http "
             "(it needs framing http)", bad);
    cr_expect(strstr(p.log, want) != NULL, "%s", p.log);
    cr_expect(strstr(p.log, "test failed") != NULL, "%s", p.log);
    cr_assert_eq(run(&p, argv_good, out, sizeof(out)), 0, "%s", p.log);
    cr_expect(strstr(p.log, "test is successful") != NULL, "%s", p.log);
}

Test(tidepool_http, serves_http_keep_alive_close_pipelining_head_and_errors)
{
    struct proc p;
    uint16_t port = start(&p, put("h.conf", "listen 127.0.0.1:0 {\n    app http;\n"
                                            "    http_body \"e2e ok\\n\";\n"
                                            "    max_message 1k;\n}\n"));
    char out[65536], big[2048];
    struct { const char *req; const char *status; } errors[] = {
        { "GET /x HTTP/1.1\r\nHost : a\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n" },
        { "GET / HTTP/2.0\r\nHost: a\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported\r\n" },
        { "BREW / HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 501 Not Implemented\r\n" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
          "HTTP/1.1 413 Content Too Large\r\n" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
          "HTTP/1.1 501 Not Implemented\r\n" },
        { big, "HTTP/1.1 431 Request Header Fields Too Large\r\n" },
    };
    size_t i;

    /* Pipelined on one connection: GET, HEAD, then GET with close. */
    http_exchange(port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                        "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
                        "GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                        "GET /never HTTP/1.1\r\nHost: a\r\n\r\n", out, sizeof(out));
    cr_expect_eq(count_of(out, "HTTP/1.1 200 OK\r\n"), 3, "%s", out);
    cr_expect_eq(count_of(out, "Content-Length: 7\r\n"), 3, "%s", out);
    cr_expect_eq(count_of(out, "\r\n\r\ne2e ok\n"), 2, "%s", out);   /* HEAD has none */
    cr_expect_eq(count_of(out, "Connection: close\r\n"), 1, "%s", out);
    cr_expect(strstr(out, "Date: ") != NULL && strstr(out, " GMT\r\n") != NULL, "%s", out);
    /* HTTP/1.0 closes after its reply; the classic request ends in "\n\n". */
    http_exchange(port, "GET / HTTP/1.0\n\n", out, sizeof(out));
    cr_expect_eq(count_of(out, "HTTP/1.1 200 OK\r\n"), 1, "%s", out);
    cr_expect(strstr(out, "Connection: close\r\n\r\ne2e ok\n") != NULL, "%s", out);
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\nCookie: %01500d\r\n\r\n", 0);
    for (i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        http_exchange(port, errors[i].req, out, sizeof(out));
        cr_expect(strncmp(out, errors[i].status, strlen(errors[i].status)) == 0,
                  "for \"%.40s\": \"%s\"", errors[i].req, out);
        cr_expect(strstr(out, "Connection: close\r\n") != NULL, "%s", out);
    }
    kill(p.pid, SIGTERM);
    cr_assert_eq(finish(&p, 10000), 0, "%s", p.log);
    cr_expect(strstr(p.log, "(app http, framing http)") != NULL, "%s", p.log);
}

/* ---- shutdown_message and app chat ---- */

/* Reads fd until EOF or reset (10 s of silence at most) into buf. */
static size_t read_until_eof(int fd, char *buf, size_t cap, bool *reset)
{
    struct pollfd pf = { .fd = fd, .events = POLLIN };
    size_t got = 0;

    *reset = false;
    while (got < cap && poll(&pf, 1, 10000) > 0) {
        ssize_t r = recv(fd, buf + got, cap - got, MSG_DONTWAIT);

        if (r < 0 && errno == EAGAIN)
            continue;
        if (r <= 0) {
            *reset = r < 0 && errno == ECONNRESET;
            break;
        }
        got += (size_t)r;
    }
    return got;
}

/* A client pipelines past send_buffer_max, so replies are still unsent when
 * SIGTERM comes: it gets every reply it is owed, then the shutdown_message
 * line, then EOF. */
Test(tidepool, sigterm_sends_shutdown_message_after_the_last_reply)
{
    static const char bye[] = "server going down, \"bye\"\n";
    struct proc p;
    uint16_t port = start(&p, put("t.conf", "listen 127.0.0.1:0 {\n"
                                  "    shutdown_message 'server going down, \"bye\"';\n}\n"
                                  "listen 127.0.0.1:0 { app metrics; }\n"));
    uint16_t metrics = port_of_app(&p, "metrics");
    static char in[64u << 20], want[64 * 1024];
    char bytes_in[128], bytes_out[128];
    unsigned long long scrapes = 0, out;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0), rcvbuf = 32 * 1024;
    struct flood f = { .fd = fd };
    unsigned long long msgs;
    size_t got, owed;
    pthread_t th;
    bool reset;

    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(pthread_create(&th, NULL, flood_main, &f), 0);
    snprintf(bytes_in, sizeof(bytes_in),
             "tidepool_bytes_total{listener=\"127.0.0.1:%u\",direction=\"in\"}", port);
    snprintf(bytes_out, sizeof(bytes_out),
             "tidepool_bytes_total{listener=\"127.0.0.1:%u\",direction=\"out\"}", port);
    for (int i = 0; i < 200 && (scrapes++, scrape(metrics, bytes_in) < (2u << 20)); i++)
        wait_log(&p, "\1never", 50);
    scrapes += 2;
    out = scrape(metrics, bytes_out);     /* first: in - out never undercounts */
    cr_assert_geq(scrape(metrics, bytes_in) - out, 64u << 10, "no replies in flight: %s",
                  p.log);
    kill(p.pid, SIGTERM);
    atomic_store(&f.stop, 1);
    pthread_join(th, NULL);
    got = read_until_eof(fd, in, sizeof(in), &reset);
    close(fd);
    cr_assert_eq(finish(&p, 15000), 0, "%s", p.log);
    /* The stop's counters are over both listeners: a scrape is a message. */
    msgs = last_count(strstr(p.log, "[info] stopped") ? p.log : "", "messages ") - scrapes;
    owed = (size_t)msgs * 64;
    cr_assert_not(reset, "reset after %zu bytes", got);
    cr_assert_eq(got, owed + strlen(bye), "got %zu bytes, owed %zu and the message: %s", got,
                 owed, p.log);
    for (size_t off = 0; off < owed; off += sizeof(want)) {
        size_t len = owed - off < sizeof(want) ? owed - off : sizeof(want);

        stream(want, off / 64, sizeof(want) / 64);
        cr_assert(memcmp(in + off, want, len) == 0, "reply differs near byte %zu", off);
    }
    cr_assert(memcmp(in + owed, bye, strlen(bye)) == 0, "ends \"%.*s\"", (int)strlen(bye),
              in + owed);
}

Test(tidepool, test_refuses_a_framing_app_chat_cannot_use)
{
    char bad[PATH_MAX - 64];
    const char *argv[] = { BIN, "-t", "-c", bad, NULL };
    struct proc p;
    char out[256], want[PATH_MAX + 128];

    snprintf(bad, sizeof(bad), "%s", put("bad.conf", "listen 127.0.0.1:7000 {\n"
                                         "    app chat;\n\n    framing length;\n}\n"));
    cr_assert_eq(run(&p, argv, out, sizeof(out)), 1, "%s", p.log);
    snprintf(want, sizeof(want), "%s:4: framing length does not work with app chat "
             "(it needs framing line)", bad);
    cr_expect(strstr(p.log, want) != NULL, "%s", p.log);
}

/* Two members, as two nc sessions: a line from one reaches the other, with
 * the prefix; a member that never reads, as the room floods, is closed and
 * logged and counted: "slow 1" in the shutdown stats line. */
Test(tidepool, chat_room_delivers_and_drops_a_member_that_does_not_read)
{
    struct proc p;
    uint16_t port = start(&p, put("t.conf", "listen 127.0.0.1:0 {\n    app chat;\n"
                                  "    chat_prefix on;\n    send_buffer_max 64k;\n}\n"));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct sockaddr_in local;
    socklen_t len = sizeof(local);
    int one = dial(port), two = dial(port), sleeper = socket(AF_INET, SOCK_STREAM, 0);
    int rcvbuf = 4096;
    struct flood f = { .fd = one };
    char line[128], buf[128];
    struct pollfd pf = { .fd = two, .events = POLLIN };
    size_t got = 0, n;
    pthread_t th;

    /* A connect completes before the server accepts it, so "hello" sent
     * now could reach a room that two is not in yet. Connections are
     * accepted in order and two's line is read only once it is in: when
     * one hears two, both are members. */
    cr_assert_eq(getsockname(two, (struct sockaddr *)&local, &len), 0);
    n = (size_t)snprintf(line, sizeof(line), "127.0.0.1:%u: ready\n", ntohs(local.sin_port));
    cr_assert_eq(write(two, "ready\n", 6), 6);
    pf.fd = one;
    while (got < n && poll(&pf, 1, 10000) > 0) {
        ssize_t r = read(one, buf + got, n - got);

        if (r <= 0)
            break;
        got += (size_t)r;
    }
    cr_assert_eq(got, n);
    cr_assert(memcmp(buf, line, n) == 0, "got \"%.*s\", want \"%s\"", (int)got, buf, line);
    pf.fd = two;
    got = 0;
    len = sizeof(local);
    cr_assert_eq(getsockname(one, (struct sockaddr *)&local, &len), 0);
    n = (size_t)snprintf(line, sizeof(line), "127.0.0.1:%u: hello\n", ntohs(local.sin_port));
    cr_assert_eq(write(one, "hello\n", 6), 6);
    while (got < n && poll(&pf, 1, 10000) > 0) {
        ssize_t r = read(two, buf + got, n - got);

        if (r <= 0)
            break;
        got += (size_t)r;
    }
    cr_assert_eq(got, n);
    cr_assert(memcmp(buf, line, n) == 0, "got \"%.*s\", want \"%s\"", (int)got, buf, line);
    close(two);
    setsockopt(sleeper, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    cr_assert_eq(connect(sleeper, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(pthread_create(&th, NULL, flood_main, &f), 0);
    wait_log(&p, "it does not keep up with what the room sends", 10000);
    atomic_store(&f.stop, 1);
    pthread_join(th, NULL);
    cr_assert_not_null(strstr(p.log, "it does not keep up with what the room sends"), "%s",
                       p.log);
    close(sleeper);
    close(one);
    kill(p.pid, SIGTERM);
    cr_assert_eq(finish(&p, 15000), 0, "%s", p.log);
    cr_assert_not_null(strstr(p.log, "got Terminated"), "%s", p.log);
    cr_assert_not_null(strstr(strstr(p.log, "got Terminated"), " slow 1,"), "%s", p.log);
}
