/* test_acl.c - allow/deny rules and the per-address limits (reactor/tp_acl). */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "tp_acl.h"
#include "tp_conf.h"

static struct sockaddr_storage v4(const char *a)
{
    struct sockaddr_storage ss = { 0 };
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;

    in->sin_family = AF_INET;
    cr_assert_eq(inet_pton(AF_INET, a, &in->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *a)
{
    struct sockaddr_storage ss = { 0 };
    struct sockaddr_in6 *in = (struct sockaddr_in6 *)&ss;

    in->sin6_family = AF_INET6;
    cr_assert_eq(inet_pton(AF_INET6, a, &in->sin6_addr), 1);
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

/* Rules from "allow X" / "deny X" words, in order. */
static size_t rules(struct tp_acl_rule *r, const char *const *words)
{
    size_t n = 0;

    for (; words[n] != NULL; n++) {
        const char *w = words[n];
        bool allow = strncmp(w, "allow ", 6) == 0;

        cr_assert_eq(tp_conf_parse_cidr(w + (allow ? 6 : 5), &r[n]), 0, "%s", w);
        r[n].allow = allow;
    }
    return n;
}

Test(acl, cidr_parses_addresses_prefixes_and_all)
{
    struct tp_acl_rule r;

    cr_assert_eq(tp_conf_parse_cidr("10.0.0.0/8", &r), 0);
    cr_assert_eq(r.family, AF_INET);
    cr_assert_eq(r.prefix, 8);
    cr_assert_eq(r.addr[0], 10);
    cr_assert_eq(tp_conf_parse_cidr("192.168.1.7", &r), 0);
    cr_assert_eq(r.prefix, 32);
    cr_assert_eq(tp_conf_parse_cidr("2001:db8::/32", &r), 0);
    cr_assert_eq(r.family, AF_INET6);
    cr_assert_eq(r.prefix, 32);
    cr_assert_eq(tp_conf_parse_cidr("::1", &r), 0);
    cr_assert_eq(r.prefix, 128);
    cr_assert_eq(tp_conf_parse_cidr("0.0.0.0/0", &r), 0);
    cr_assert_eq(r.prefix, 0);
    cr_assert_eq(tp_conf_parse_cidr("all", &r), 0);
    cr_assert(r.all);
    cr_assert_eq(tp_conf_parse_cidr("10.0.0.1/8", &r), -EDOM, "host bits past the prefix");
    cr_assert_eq(tp_conf_parse_cidr("10.1.0.0/15", &r), -EDOM);
    cr_assert_eq(tp_conf_parse_cidr("10.2.0.0/15", &r), 0);
    for (const char *const *bad = (const char *const[]){ "", "/8", "10.0.0.0/", "10.0.0.0/33",
             "::/129", "10.0.0.0/8x", "300.0.0.1", "10.0.0", "alll", "10.0.0.0/-1", NULL };
         *bad != NULL; bad++)
        cr_assert_eq(tp_conf_parse_cidr(*bad, &r), -EINVAL, "\"%s\"", *bad);
}

Test(acl, first_match_wins_and_none_matching_allows)
{
    struct tp_acl_rule r[8];
    size_t n = rules(r, (const char *const[]){ "deny 127.0.0.3", "allow 127.0.0.0/8",
                                               "deny all", NULL });
    struct sockaddr_storage a = v4("127.0.0.2"), b = v4("127.0.0.3"), c = v4("10.0.0.1");

    cr_assert(tp_acl_allows(r, n, SA(a)));
    cr_assert_not(tp_acl_allows(r, n, SA(b)), "the deny before the allow wins");
    cr_assert_not(tp_acl_allows(r, n, SA(c)), "deny all catches the rest");
    cr_assert(tp_acl_allows(r, 0, SA(c)), "no rules: everyone");
    n = rules(r, (const char *const[]){ "deny 10.0.0.0/8", NULL });
    cr_assert(tp_acl_allows(r, n, SA(a)), "no rule matches: allowed");
    cr_assert_not(tp_acl_allows(r, n, SA(c)));
}

Test(acl, prefixes_cut_at_any_bit)
{
    struct tp_acl_rule r[2];
    size_t n = rules(r, (const char *const[]){ "allow 192.168.4.0/22", "deny all", NULL });

    for (int third = 0; third < 16; third++) {
        char addr[32];
        struct sockaddr_storage ss;

        snprintf(addr, sizeof(addr), "192.168.%d.9", third);
        ss = v4(addr);
        cr_assert_eq(tp_acl_allows(r, n, SA(ss)), third >= 4 && third <= 7, "%s", addr);
    }
}

Test(acl, ipv6_rules_and_ipv4_seen_through_ipv6)
{
    struct tp_acl_rule r[4];
    size_t n = rules(r, (const char *const[]){ "allow 2001:db8::/33", "allow 127.0.0.1",
                                               "deny all", NULL });
    struct sockaddr_storage in = v6("2001:db8:7fff::1"), out = v6("2001:db8:8000::1"),
                            mapped = v6("::ffff:127.0.0.1"), mapped2 = v6("::ffff:127.0.0.2"),
                            lo6 = v6("::1");

    cr_assert(tp_acl_allows(r, n, SA(in)));
    cr_assert_not(tp_acl_allows(r, n, SA(out)));
    cr_assert(tp_acl_allows(r, n, SA(mapped)), "an IPv4 peer on a [::] listener is IPv4");
    cr_assert_not(tp_acl_allows(r, n, SA(mapped2)));
    cr_assert_not(tp_acl_allows(r, n, SA(lo6)), "::1 is not 127.0.0.1");
}

Test(acl, per_ip_connection_limit_counts_open_connections)
{
    tp_ip_table_t *t = tp_ip_table_create(3, 0);
    struct sockaddr_storage a = v4("127.0.0.2"), b = v4("127.0.0.3");
    struct tp_ip_entry *held[4], *other;

    cr_assert_not_null(t);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tp_ip_admit(t, SA(a), 0, &held[i]), TP_IP_OK);
    cr_assert_eq(tp_ip_admit(t, SA(a), 0, &held[3]), TP_IP_TOO_MANY);
    cr_assert_null(held[3]);
    cr_assert_eq(tp_ip_admit(t, SA(b), 0, &other), TP_IP_OK, "another address has its own");
    tp_ip_release(held[0]);
    cr_assert_eq(tp_ip_admit(t, SA(a), 0, &held[0]), TP_IP_OK, "a closed one frees a slot");
    cr_assert_eq(tp_ip_table_count(t), 2);
    tp_ip_table_destroy(t);
}

Test(acl, per_ip_rate_allows_a_burst_then_refills)
{
    tp_ip_table_t *t = tp_ip_table_create(0, 10 * 60);     /* 10/s: bursts of 10 */
    struct sockaddr_storage a = v4("127.0.0.2"), b = v4("127.0.0.3");
    struct tp_ip_entry *e;
    int ok = 0;

    for (int i = 0; i < 20; i++)
        ok += tp_ip_admit(t, SA(a), 1000, &e) == TP_IP_OK;
    cr_assert_eq(ok, 10, "the burst is a second's worth");
    cr_assert_eq(tp_ip_admit(t, SA(a), 1000, &e), TP_IP_TOO_FAST);
    cr_assert_eq(tp_ip_admit(t, SA(b), 1000, &e), TP_IP_OK, "other addresses are not slowed");
    cr_assert_eq(tp_ip_admit(t, SA(a), 1099, &e), TP_IP_TOO_FAST, "0.99 tokens after 99 ms");
    cr_assert_eq(tp_ip_admit(t, SA(a), 1100, &e), TP_IP_OK, "one token after 100 ms");
    cr_assert_eq(tp_ip_admit(t, SA(a), 1100, &e), TP_IP_TOO_FAST);
    ok = 0;
    for (int i = 0; i < 20; i++)
        ok += tp_ip_admit(t, SA(a), 10000, &e) == TP_IP_OK;
    cr_assert_eq(ok, 10, "a long pause refills the burst, no more");
    tp_ip_table_destroy(t);

    t = tp_ip_table_create(0, 30);                       /* 30/m: a burst of 1 */
    cr_assert_eq(tp_ip_admit(t, SA(a), 0, &e), TP_IP_OK);
    cr_assert_eq(tp_ip_admit(t, SA(a), 1999, &e), TP_IP_TOO_FAST);
    cr_assert_eq(tp_ip_admit(t, SA(a), 2000, &e), TP_IP_OK);
    tp_ip_table_destroy(t);
}

Test(acl, the_table_forgets_idle_addresses_and_survives_growth)
{
    tp_ip_table_t *t = tp_ip_table_create(2, 60);        /* 1/s */
    struct tp_ip_entry *held[5000];
    char addr[64];

    /* 5,000 addresses with a connection each: the table grows and every one
     * is still found (the second connection of each is refused). */
    for (int i = 0; i < 5000; i++) {
        struct sockaddr_storage ss;

        snprintf(addr, sizeof(addr), "2001:db8::%x:%x", i / 256, i % 256);
        ss = v6(addr);
        cr_assert_eq(tp_ip_admit(t, SA(ss), 0, &held[i]), TP_IP_OK, "%s", addr);
    }
    cr_assert_eq(tp_ip_table_count(t), 5000);
    for (int i = 0; i < 5000; i += 7) {
        struct sockaddr_storage ss;
        struct tp_ip_entry *e;

        snprintf(addr, sizeof(addr), "2001:db8::%x:%x", i / 256, i % 256);
        ss = v6(addr);
        cr_assert_eq(tp_ip_admit(t, SA(ss), 0, &e), TP_IP_TOO_FAST, "%s", addr);
    }
    for (int i = 0; i < 5000; i++)
        tp_ip_release(held[i]);
    /* Once their buckets are full again, the idle ones go at the next sweep. */
    for (int i = 0; i < 2048; i++) {
        struct sockaddr_storage ss = v4("127.0.0.9");
        struct tp_ip_entry *e;

        tp_ip_admit(t, SA(ss), 60000 + i * 1000, &e);
        tp_ip_release(e);
    }
    cr_assert_leq(tp_ip_table_count(t), 1, "idle addresses kept: %zu", tp_ip_table_count(t));
    tp_ip_table_destroy(t);
}
