/* tp_acl.h - who may connect: allow/deny rules, and limits per source address.
 *
 * Checked by the reactor right after accept, before a connection exists:
 * a refused peer is closed without a byte read. The rules come from the
 * conf (struct tp_acl_rule: first match wins, none matching allows); the
 * per-address table counts each source's open connections and meters its
 * new ones (a token bucket), so one client cannot take every slot. An IPv4
 * peer seen through an IPv6 listener (::ffff:a.b.c.d) is the IPv4 address
 * for both. Reactor thread only. */
#ifndef TP_ACL_H
#define TP_ACL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tp_conf.h"

/* Whether the first of rules[0..n) matching peer allows it (true if none
 * matches). */
bool tp_acl_allows(const struct tp_acl_rule *rules, size_t n, const struct sockaddr *peer);

typedef struct tp_ip_table tp_ip_table_t;
struct tp_ip_entry;           /* one source address; opaque */

enum tp_ip_verdict {
    TP_IP_OK,                 /* admitted; *held must be released at close */
    TP_IP_TOO_MANY,           /* max_conns already open from this address */
    TP_IP_TOO_FAST,           /* its accept rate is used up for now */
    TP_IP_NOMEM,
};

/* A table for max_conns open connections (0: no limit) and rate_per_min new
 * ones (0: no limit; bursts of a second's worth, at least 1) per address.
 * Returns NULL with errno set. */
tp_ip_table_t *tp_ip_table_create(uint32_t max_conns, uint32_t rate_per_min);
void tp_ip_table_destroy(tp_ip_table_t *t);

/* Counts a new connection from peer at now_ms, if its limits allow it. On
 * TP_IP_OK *held names its entry for tp_ip_release(). */
enum tp_ip_verdict tp_ip_admit(tp_ip_table_t *t, const struct sockaddr *peer, int64_t now_ms,
                               struct tp_ip_entry **held);

/* The connection admitted with e closed (e may be NULL: nothing held). */
void tp_ip_release(struct tp_ip_entry *e);

/* Addresses the table holds now (tests; memory stays bounded by it). */
size_t tp_ip_table_count(const tp_ip_table_t *t);

#endif /* TP_ACL_H */
