/* tp_stress_addr.c - parse and resolve HOST:PORT; parse --src ranges. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_stress_addr.h"

/* Splits text into host (brackets removed) and port; 0 or -EINVAL. */
static int split_host_port(const char *text, char *host, size_t hostlen,
                           unsigned *port, char *err, size_t errlen)
{
    const char *colon, *h = text, *hend;
    char *end;
    unsigned long p;

    if (text[0] == '[') {
        hend = strchr(text, ']');
        if (hend == NULL || hend[1] != ':') {
            snprintf(err, errlen, "bad HOST:PORT \"%s\": expected [IPV6]:PORT", text);
            return -EINVAL;
        }
        h = text + 1;
        colon = hend + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL) {
            snprintf(err, errlen, "bad HOST:PORT \"%s\": expected HOST:PORT "
                     "(IPv6 as [ADDR]:PORT)", text);
            return -EINVAL;
        }
        hend = colon;
    }
    if (hend == h || (size_t)(hend - h) >= hostlen) {
        snprintf(err, errlen, "bad HOST:PORT \"%s\": %s host", text,
                 hend == h ? "empty" : "too long a");
        return -EINVAL;
    }
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    errno = 0;
    p = strtoul(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 ||
        p == 0 || p > 65535) {
        snprintf(err, errlen, "bad HOST:PORT \"%s\": expected a port 1..65535", text);
        return -EINVAL;
    }
    *port = (unsigned)p;
    return 0;
}

int tp_stress_target_parse(struct tp_stress_target *t, const char *text,
                           char *err, size_t errlen)
{
    struct addrinfo hints, *res, *ai;
    char host[256], port_text[8];
    unsigned port;
    int rc;

    memset(t, 0, sizeof(*t));
    if (strlen(text) >= sizeof(t->text)) {
        snprintf(err, errlen, "bad HOST:PORT: too long");
        return -EINVAL;
    }
    if (split_host_port(text, host, sizeof(host), &port, err, errlen) < 0)
        return -EINVAL;
    snprintf(t->text, sizeof(t->text), "%s", text);
    snprintf(port_text, sizeof(port_text), "%u", port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (text[0] == '[' ? AI_NUMERICHOST : 0);
    rc = getaddrinfo(host, port_text, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "bad HOST:PORT \"%s\": %s", text, gai_strerror(rc));
        return -EINVAL;
    }
    for (ai = res; ai != NULL && t->naddr < TP_STRESS_MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        memcpy(&t->addr[t->naddr], ai->ai_addr, ai->ai_addrlen);
        t->addrlen[t->naddr++] = ai->ai_addrlen;
    }
    freeaddrinfo(res);
    if (t->naddr == 0) {
        snprintf(err, errlen, "bad HOST:PORT \"%s\": no IPv4 or IPv6 address", text);
        return -EINVAL;
    }
    return 0;
}

static int parse_ipv4(const char *text, size_t len, uint32_t *out)
{
    char buf[INET_ADDRSTRLEN];
    struct in_addr a;

    if (len == 0 || len >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, &a) != 1)
        return -EINVAL;
    *out = ntohl(a.s_addr);
    return 0;
}

int tp_stress_src_parse(struct tp_stress_src *s, const char *text,
                        char *err, size_t errlen)
{
    const char *dash = strchr(text, '-');
    size_t len = strlen(text);

    if (dash == NULL) {
        if (parse_ipv4(text, len, &s->first) < 0)
            goto bad;
        s->last = s->first;
        return 0;
    }
    if (parse_ipv4(text, (size_t)(dash - text), &s->first) < 0 ||
        parse_ipv4(dash + 1, len - (size_t)(dash - text) - 1, &s->last) < 0)
        goto bad;
    if (s->first > s->last) {
        snprintf(err, errlen, "--src \"%s\": the first address is after the last", text);
        return -EINVAL;
    }
    return 0;
bad:
    snprintf(err, errlen, "--src \"%s\": expected an IPv4 range like "
             "127.0.0.1-127.0.0.8", text);
    return -EINVAL;
}

void tp_stress_src_addr(const struct tp_stress_src *s, uint64_t n, struct sockaddr_in *sin)
{
    uint64_t span = (uint64_t)(s->last - s->first) + 1;

    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(s->first + (uint32_t)(n % span));
}

void tp_stress_addr_format(const struct sockaddr *addr, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";

    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)addr;

        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)addr;

        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(s4->sin_port));
    }
}
