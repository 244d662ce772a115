/* tp_stress_addr.h - the stress tool's target (HOST:PORT) and source range. */
#ifndef TP_STRESS_ADDR_H
#define TP_STRESS_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define TP_STRESS_MAX_ADDRS 8

/* Plain struct: what HOST:PORT named and every address it resolved to. */
struct tp_stress_target {
    char text[288];                                    /* as given */
    unsigned naddr;                                    /* >= 1 once parsed */
    struct sockaddr_storage addr[TP_STRESS_MAX_ADDRS]; /* resolver order */
    socklen_t addrlen[TP_STRESS_MAX_ADDRS];
};

/* Plain struct: an inclusive IPv4 range, host byte order. */
struct tp_stress_src {
    uint32_t first;
    uint32_t last;
};

/* Parses "127.0.0.1:7000", "[::1]:7000" or "name:7000" (port 1..65535) and
 * resolves it. Returns 0, or -EINVAL with a one-line reason in err.
 * Blocks on the resolver for names; any thread. */
int tp_stress_target_parse(struct tp_stress_target *t, const char *text,
                           char *err, size_t errlen);

/* Parses "A.B.C.D-E.F.G.H" (first <= last) or a single IPv4 address.
 * Returns 0, or -EINVAL with a one-line reason in err. */
int tp_stress_src_parse(struct tp_stress_src *s, const char *text,
                        char *err, size_t errlen);

/* Fills sin with the n-th source address, cycling through the range (port 0). */
void tp_stress_src_addr(const struct tp_stress_src *s, uint64_t n, struct sockaddr_in *sin);

/* Writes addr as "1.2.3.4:80" or "[::1]:80" into buf. */
void tp_stress_addr_format(const struct sockaddr *addr, char *buf, size_t len);

#endif /* TP_STRESS_ADDR_H */
