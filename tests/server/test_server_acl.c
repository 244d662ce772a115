/* test_server_acl.c - allow/deny and the per-address limits, in process:
 * clients bound to 127.0.0.2, 127.0.0.3 ... stand for different hosts. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tp_apps.h"
#include "tpt_server.h"

#define LONG_MS 20000

static void ignore_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN);
}

TestSuite(server_acl, .init = ignore_sigpipe, .timeout = 120);

/* A connection from source address src to 127.0.0.1:port. */
static int dial_from(const char *src, uint16_t port)
{
    struct sockaddr_in from = { .sin_family = AF_INET }, to = { .sin_family = AF_INET,
                                .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert_geq(fd, 0);
    cr_assert_eq(inet_pton(AF_INET, src, &from.sin_addr), 1);
    cr_assert_eq(bind(fd, (struct sockaddr *)&from, sizeof(from)), 0, "bind %s: %s", src,
                 strerror(errno));
    cr_assert_eq(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0, "%s", strerror(errno));
    return fd;
}

/* src gets its line echoed. */
static void served(int fd, const char *src)
{
    char buf[64];

    tpt_write_all(fd, "hello\n", 6);
    cr_assert_eq(tpt_read_n(fd, buf, 6, LONG_MS), 6, "%s was not served", src);
    cr_assert(memcmp(buf, "hello\n", 6) == 0);
}

/* The server closed fd without a reply (EOF or reset). */
static void refused(int fd, const char *src)
{
    char buf[64];
    bool reset;
    ssize_t n;

    send(fd, "hello\n", 6, MSG_NOSIGNAL);
    n = tpt_read_all(fd, buf, sizeof(buf), LONG_MS, &reset);
    cr_assert_eq(n, 0, "%s got %zd bytes back, or was not closed", src, n);
    close(fd);
}

static void add_rule(struct tp_listen_conf *l, const char *cidr, bool allow)
{
    cr_assert_eq(tp_conf_parse_cidr(cidr, &l->acl[l->nacl]), 0);
    l->acl[l->nacl++].allow = allow;
}

Test(server_acl, deny_rules_close_before_reading_and_are_counted)
{
    struct tp_conf conf;
    struct tpt_server *t;
    int a, b, c;

    tpt_conf(&conf, 0);
    add_rule(&conf.listen[0], "127.0.0.3", false);
    add_rule(&conf.listen[0], "127.0.0.0/8", true);
    add_rule(&conf.listen[0], "all", false);
    t = tpt_start(&conf, &tp_app_echo);
    a = dial_from("127.0.0.2", t->port);
    served(a, "127.0.0.2");
    b = dial_from("127.0.0.3", t->port);
    refused(b, "127.0.0.3 (denied first)");
    c = dial_from("127.0.0.1", t->port);
    served(c, "127.0.0.1");
    cr_assert(tpt_wait_stats(t, LONG_MS, st.refused_acl == 1), "refused_acl %llu",
              (unsigned long long)tpt_stats(t).refused_acl);
    cr_assert_eq(tpt_stats(t).accepted, 2, "a denied peer is not an accepted connection");
    cr_assert_eq(tpt_stats(t).bytes_in, 12, "not a byte read from the denied peer");
    close(a);
    close(c);
    tpt_stop(t, true);
}

Test(server_acl, max_connections_per_ip_counts_each_source_apart)
{
    struct tp_conf conf;
    struct tpt_server *t;
    int two[3], three, again;

    tpt_conf(&conf, 2);
    conf.listen[0].max_conns_per_ip = 3;
    t = tpt_start(&conf, &tp_app_echo);
    for (int i = 0; i < 3; i++) {
        two[i] = dial_from("127.0.0.2", t->port);
        served(two[i], "127.0.0.2");
    }
    refused(dial_from("127.0.0.2", t->port), "the 4th from 127.0.0.2");
    three = dial_from("127.0.0.3", t->port);
    served(three, "127.0.0.3, beside the full one");
    cr_assert_eq(tpt_stats(t).refused_per_ip, 1);
    /* One closes: its slot is free again. */
    close(two[0]);
    cr_assert(tpt_wait_stats(t, LONG_MS, st.open == 3));
    again = dial_from("127.0.0.2", t->port);
    served(again, "127.0.0.2 after one of its connections closed");
    close(again);
    close(two[1]);
    close(two[2]);
    close(three);
    tpt_stop(t, true);
}

Test(server_acl, accept_rate_per_ip_refuses_the_burst_past_its_tokens)
{
    struct tp_conf conf;
    struct tpt_server *t;
    int first, other;

    tpt_conf(&conf, 0);
    conf.listen[0].accept_rate_per_ip = 1;   /* 1 a minute: a burst of one */
    t = tpt_start(&conf, &tp_app_echo);
    first = dial_from("127.0.0.2", t->port);
    served(first, "127.0.0.2's first");
    refused(dial_from("127.0.0.2", t->port), "127.0.0.2's second within the minute");
    other = dial_from("127.0.0.4", t->port);
    served(other, "127.0.0.4, not slowed by 127.0.0.2");
    cr_assert_eq(tpt_stats(t).refused_rate, 1);
    cr_assert_eq(tpt_stats(t).refused_per_ip, 0);
    close(first);
    close(other);
    tpt_stop(t, true);
}
