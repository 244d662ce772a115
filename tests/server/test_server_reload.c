/* test_server_reload.c - tp_server_reload() on a running server: what a
 * conf diff keeps, binds and drains, a refused reload, settings for new
 * connections only, and a worker pool resized under a byte-checked stream. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tp_apps.h"
#include "tpt_server.h"

static struct tpt_server *srv;
static struct tp_conf next;       /* the conf a test reloads to */

static void stop_server(void)
{
    if (srv != NULL)
        tpt_stop(srv, false);
    srv = NULL;
}

TestSuite(reload, .fini = stop_server, .timeout = 60);

static void add_listener(struct tp_conf *c, const char *addr, const char *file, int line)
{
    struct tp_listen_conf *l = &c->listen[c->nlisten++];

    tp_conf_listen_init(l);
    cr_assert_eq(tp_conf_parse_addr(addr, l), 0, "%s", addr);
    snprintf(l->file, sizeof(l->file), "%s", file);
    l->line = line;
}

/* A conf with the listeners in addrs (NULL-terminated), all echo, line n+1. */
static void conf_of(struct tp_conf *c, int workers, const char *const *addrs)
{
    tp_conf_init(c);
    c->workers = workers;
    c->nlisten = 0;
    for (int i = 0; addrs[i] != NULL; i++)
        add_listener(c, addrs[i], "t.conf", i + 1);
}

static int reload(const struct tp_conf *c, const struct tp_app *app, char *err, size_t errlen)
{
    const struct tp_app *apps[TP_CONF_MAX_LISTEN];

    for (size_t i = 0; i < c->nlisten; i++)
        apps[i] = app;
    return tp_server_reload(srv->srv, c, apps, err, errlen);
}

static int dial_ip(const char *ip, uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    cr_assert_geq(fd, 0);
    cr_assert_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int e = errno;

        close(fd);
        return -e;
    }
    return fd;
}

/* Sends line, expects want back. */
static void exchange(int fd, const char *line, const char *want)
{
    char buf[512];
    size_t n = strlen(want);

    tpt_write_all(fd, line, strlen(line));
    cr_assert_eq(tpt_read_n(fd, buf, n, 5000), n, "no reply to %s", line);
    cr_assert(memcmp(buf, want, n) == 0, "got %.*s, want %s", (int)n, buf, want);
}

Test(reload, same_address_keeps_its_socket_new_is_bound_removed_drains)
{
    static const char *const before[] = { "127.0.0.1:0", "127.0.0.2:0", NULL };
    static const char *const after[] = { "127.0.0.1:0", "127.0.0.3:0", NULL };
    static struct tp_conf conf;
    static char lines[100 * 16], back[sizeof(lines)];
    char err[256];
    uint16_t kept, removed, added;
    size_t n = 0;
    int a, b, c;

    conf_of(&conf, 2, before);
    tpt_workers_only = true;      /* else the loop itself runs the slow batch */
    srv = tpt_start(&conf, &tpt_app_slow);
    tpt_workers_only = false;
    kept = tp_server_port(srv->srv, 0);
    removed = tp_server_port(srv->srv, 1);
    a = dial_ip("127.0.0.1", kept);
    b = dial_ip("127.0.0.2", removed);
    cr_assert_geq(a, 0);
    cr_assert_geq(b, 0);
    exchange(a, "a\n", "a\n");
    /* b's 100 lines take the slow app 200 ms: once the server has read
     * them, they are at a worker when b's listener goes. */
    for (int i = 0; i < 100; i++)
        n += (size_t)sprintf(lines + n, "line %d\n", i);
    tpt_write_all(b, lines, n);
    cr_assert(tpt_wait_stats(srv, 2000, st.bytes_in >= n + 2));
    cr_assert_lt(tpt_stats(srv).msgs_in, 100, "the batch ran before the reload");

    conf_of(&next, 2, after);
    cr_assert_eq(reload(&next, &tpt_app_slow, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(tp_server_port(srv->srv, 0), kept, "the kept address moved");
    added = tp_server_port(srv->srv, 1);
    cr_assert_neq(added, 0);

    /* The kept socket and its connection serve on; the new one serves. */
    exchange(a, "still\n", "still\n");
    c = dial_ip("127.0.0.1", kept);
    cr_assert_geq(c, 0, "a connect to the kept address failed: %s", strerror(-c));
    exchange(c, "kept\n", "kept\n");
    close(c);
    c = dial_ip("127.0.0.3", added);
    cr_assert_geq(c, 0, "the new address does not take connections: %s", strerror(-c));
    exchange(c, "new\n", "new\n");
    close(c);

    /* The removed one accepts no more; its connection gets every reply to
     * what it sent, then EOF. */
    cr_expect_eq(dial_ip("127.0.0.2", removed), -ECONNREFUSED);
    cr_assert_eq(tpt_read_to_eof(b, back, sizeof(back), 5000), (ssize_t)n,
                 "the removed listener's connection lost replies");
    cr_expect(memcmp(back, lines, n) == 0);
    close(b);
    cr_expect(tpt_wait_stats(srv, 2000, st.closed_shutdown == 1 && st.open == 1),
              "closed_shutdown %llu open %llu", (unsigned long long)tpt_stats(srv).closed_shutdown,
              (unsigned long long)tpt_stats(srv).open);
    close(a);
}

Test(reload, refused_reload_changes_nothing_and_names_file_and_line)
{
    static const char *const one[] = { "127.0.0.1:0", NULL };
    static struct tp_conf conf;
    struct sockaddr_in held = { .sin_family = AF_INET };
    socklen_t len = sizeof(held);
    char err[256], want[128];
    int holder = socket(AF_INET, SOCK_STREAM, 0), fd, before;
    uint16_t port;

    conf_of(&conf, 1, one);
    srv = tpt_start(&conf, &tp_app_echo);
    port = tp_server_port(srv->srv, 0);
    fd = dial_ip("127.0.0.1", port);
    exchange(fd, "abc\n", "abc\n");
    /* An address someone else holds makes the bind fail. */
    held.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(holder, (struct sockaddr *)&held, sizeof(held)), 0);
    cr_assert_eq(listen(holder, 1), 0);
    cr_assert_eq(getsockname(holder, (struct sockaddr *)&held, &len), 0);

    /* The new conf changes the app, adds a listener that binds, then one
     * that cannot: none of it may stay. */
    conf_of(&next, 3, one);
    add_listener(&next, "127.0.0.5:0", "t.conf", 6);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(held.sin_port));
    add_listener(&next, addr, "inc/more.conf", 7);
    before = (int)tpt_stats(srv).accepted;
    cr_assert_lt(reload(&next, &tp_app_upper, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "inc/more.conf:7: listen %s: bind: Address already in use", addr);
    cr_expect_str_eq(err, want);

    cr_expect_eq(tp_server_port(srv->srv, 0), port);
    cr_expect_eq(tp_server_port(srv->srv, 1), 0, "a listener of the refused conf is served");
    exchange(fd, "old\n", "old\n");
    close(fd);
    fd = dial_ip("127.0.0.1", port);
    exchange(fd, "still echo\n", "still echo\n");
    close(fd);
    cr_expect_eq(tpt_stats(srv).accepted, (uint64_t)before + 1);
    close(holder);
}

Test(reload, new_settings_apply_to_new_connections_only)
{
    static const char *const one[] = { "127.0.0.1:0", NULL };
    static struct tp_conf conf;
    static char big[201];
    char err[256];
    uint16_t port;
    int old, young;

    memset(big, 'x', 199);
    big[199] = '\n';
    conf_of(&conf, 2, one);
    srv = tpt_start(&conf, &tp_app_echo);
    port = tp_server_port(srv->srv, 0);
    old = dial_ip("127.0.0.1", port);
    exchange(old, "before\n", "before\n");

    conf_of(&next, 2, one);
    next.listen[0].max_message = 16;
    cr_assert_eq(reload(&next, &tp_app_upper, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tp_server_port(srv->srv, 0), port);

    young = dial_ip("127.0.0.1", port);
    exchange(young, "hello\n", "HELLO\n");
    /* The old connection keeps echo and the 64k limit. */
    exchange(old, "hello\n", "hello\n");
    exchange(old, big, big);
    /* The new one has max_message 16: a long line closes it. */
    tpt_write_all(young, big, 199);
    cr_expect_geq(tpt_read_to_eof(young, NULL, 0, 5000), 0);
    cr_expect(tpt_wait_stats(srv, 2000, st.closed_oversize == 1));
    close(young);
    close(old);
    cr_expect(tpt_wait_stats(srv, 2000, st.open == 0));
    /* With the old settings' last connection gone, a new connection still
     * gets the new ones. */
    young = dial_ip("127.0.0.1", port);
    exchange(young, "after\n", "AFTER\n");
    close(young);
}

static long long ms_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Checks n bytes that arrived at offset off of a stream. */
static void check_stream(int i, const char *buf, uint64_t off, size_t n)
{
    static char want[65536];

    tpt_stream(want, off, n);
    cr_assert(memcmp(buf, want, n) == 0, "stream %d differs near byte %llu", i,
              (unsigned long long)off);
}

/* Two streams flood the server while it goes through workers 2, 0, 3, 1, 0,
 * 4, ...: 20 reloads, each after at least 256 KiB more of each stream came
 * back; every byte comes back, in order. */
Test(reload, workers_resize_keeps_every_message_in_order, .timeout = 90)
{
    static const char *const one[] = { "127.0.0.1:0", NULL };
    static const int sizes[] = { 0, 3, 1, 0, 4, 2 };
    enum { FLOODS = 2, STEP = 256 << 10 };
    static struct tp_conf conf;
    static char buf[65536];
    struct tpt_flood f[FLOODS];
    uint64_t have[FLOODS] = { 0 }, sent[FLOODS], mark[FLOODS] = { 0 };
    int fd[FLOODS], reloads = 0;
    long long deadline = ms_now() + 60000;
    char err[256];
    bool ready, all;

    conf_of(&conf, 2, one);
    tpt_workers_only = true;
    srv = tpt_start(&conf, &tp_app_echo);
    tpt_workers_only = false;
    for (int i = 0; i < FLOODS; i++) {
        fd[i] = tpt_dial(srv->port);
        tpt_flood_start(&f[i], fd[i], UINT64_MAX, 60000);
    }
    /* Reloads from this thread need the loop running: it accepted. */
    cr_assert(tpt_wait_stats(srv, 5000, st.accepted == FLOODS));
    while (reloads < 20 && ms_now() < deadline) {
        ready = true;
        for (int i = 0; i < FLOODS; i++) {
            ssize_t n = recv(fd[i], buf, sizeof(buf), MSG_DONTWAIT);

            if (n > 0) {
                check_stream(i, buf, have[i], (size_t)n);
                have[i] += (uint64_t)n;
            }
            ready &= have[i] >= mark[i] + STEP;
        }
        if (!ready)
            continue;
        conf_of(&next, sizes[reloads % 6], one);
        cr_assert_eq(reload(&next, &tp_app_echo, err, sizeof(err)), 0, "%s", err);
        reloads++;
        for (int i = 0; i < FLOODS; i++)
            mark[i] = have[i];
    }
    cr_assert_eq(reloads, 20, "the streams stalled after %d reloads", reloads);
    /* Only whole lines are answered: a flood may stop inside one. */
    for (int i = 0; i < FLOODS; i++) {
        sent[i] = tpt_flood_stop(&f[i]);
        sent[i] -= sent[i] % TPT_LINE;
    }
    do {
        all = true;
        for (int i = 0; i < FLOODS; i++) {
            struct pollfd pf = { .fd = fd[i], .events = POLLIN };
            ssize_t n;

            if (have[i] == sent[i] || poll(&pf, 1, 10) <= 0 ||
                (n = recv(fd[i], buf, sizeof(buf), MSG_DONTWAIT)) <= 0) {
                all &= have[i] == sent[i];
                continue;
            }
            check_stream(i, buf, have[i], (size_t)n);
            have[i] += (uint64_t)n;
            all &= have[i] == sent[i];
        }
    } while (!all && ms_now() < deadline);
    for (int i = 0; i < FLOODS; i++) {
        cr_expect_eq(have[i], sent[i], "stream %d: %llu of %llu bytes back", i,
                     (unsigned long long)have[i], (unsigned long long)sent[i]);
        close(fd[i]);
    }
    cr_log_info("20 reloads during %llu + %llu bytes of streams", (unsigned long long)sent[0],
                (unsigned long long)sent[1]);
}

Test(reload, after_a_stop_began_it_is_refused)
{
    static const char *const one[] = { "127.0.0.1:0", NULL };
    static struct tp_conf conf;
    char err[256];

    int fd;

    conf_of(&conf, 0, one);
    srv = tpt_start(&conf, &tp_app_echo);
    fd = tpt_dial(srv->port);
    exchange(fd, "x\n", "x\n");
    close(fd);
    tp_server_stop(srv->srv, true);
    conf_of(&next, 0, one);
    cr_expect_eq(reload(&next, &tp_app_echo, err, sizeof(err)), -ESHUTDOWN);
}
