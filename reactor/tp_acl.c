/* tp_acl.c - allow/deny matching and the per-address table (see tp_acl.h). */
#include "tp_acl.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define TOKEN 1000000ull          /* one accept, in micro-tokens */
#define SWEEP_EVERY 1024          /* admits between sweeps of idle entries */

/* The peer as 16 bytes of IPv6 (IPv4 as ::ffff:a.b.c.d); false if neither. */
static bool peer_key(const struct sockaddr *sa, uint8_t key[16])
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

    if (sa->sa_family == AF_INET) {
        memcpy(key, mapped, 12);
        memcpy(key + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

static bool is_v4(const uint8_t key[16])
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

    return memcmp(key, mapped, 12) == 0;
}

static bool prefix_matches(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;

    if (memcmp(a, b, whole) != 0)
        return false;
    return rest == 0 || ((a[whole] ^ b[whole]) & (uint8_t)(0xff00u >> rest)) == 0;
}

bool tp_acl_allows(const struct tp_acl_rule *rules, size_t n, const struct sockaddr *peer)
{
    uint8_t key[16];
    bool known = peer_key(peer, key), v4 = known && is_v4(key);
    size_t i;

    for (i = 0; i < n; i++) {
        const struct tp_acl_rule *r = &rules[i];

        if (r->all ||
            (known && r->family == AF_INET && v4 && prefix_matches(key + 12, r->addr, r->prefix)) ||
            (known && r->family == AF_INET6 && prefix_matches(key, r->addr, r->prefix)))
            return r->allow;
    }
    return true;
}

/* ---- the per-address table ---- */

struct tp_ip_entry {
    struct tp_ip_entry *next;     /* bucket chain */
    uint8_t key[16];
    uint32_t open;                /* connections admitted and not released */
    uint64_t tokens;              /* micro-tokens, at `at` */
    int64_t at;
};

struct tp_ip_table {
    struct tp_ip_entry **buckets;
    size_t nbuckets;              /* a power of two */
    size_t count;
    uint32_t max_conns, rate_per_min;
    uint64_t burst;               /* micro-tokens */
    uint64_t k0, k1;              /* hash keys: sources choose addresses */
    unsigned since_sweep;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* key's bucket among nbuckets (a power of two). */
static size_t bucket_of(const tp_ip_table_t *t, const uint8_t key[16], size_t nbuckets)
{
    uint64_t a, b;

    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 8);
    return (size_t)(mix(mix(a ^ t->k0) ^ b ^ t->k1)) & (nbuckets - 1);
}

tp_ip_table_t *tp_ip_table_create(uint32_t max_conns, uint32_t rate_per_min)
{
    tp_ip_table_t *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    t->max_conns = max_conns;
    t->rate_per_min = rate_per_min;
    t->burst = (rate_per_min / 60 > 1 ? rate_per_min / 60 : 1) * TOKEN;
    if (getrandom(&t->k0, sizeof(t->k0), GRND_NONBLOCK) != sizeof(t->k0) ||
        getrandom(&t->k1, sizeof(t->k1), GRND_NONBLOCK) != sizeof(t->k1)) {
        t->k0 = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ull;   /* no entropy yet */
        t->k1 = mix(t->k0);
    }
    return t;
}

void tp_ip_table_destroy(tp_ip_table_t *t)
{
    size_t i;

    if (t == NULL)
        return;
    for (i = 0; i < t->nbuckets; i++)
        while (t->buckets[i] != NULL) {
            struct tp_ip_entry *e = t->buckets[i];

            t->buckets[i] = e->next;
            free(e);
        }
    free(t->buckets);
    free(t);
}

size_t tp_ip_table_count(const tp_ip_table_t *t)
{
    return t->count;
}

/* Brings e's bucket up to now. */
static void refill(const tp_ip_table_t *t, struct tp_ip_entry *e, int64_t now_ms)
{
    uint64_t ms;

    if (t->rate_per_min == 0 || now_ms <= e->at)
        return;
    ms = (uint64_t)(now_ms - e->at);
    e->at = now_ms;
    if (ms > 120000)            /* past any refill time: full; no overflow */
        e->tokens = t->burst;
    else
        e->tokens += ms * t->rate_per_min * (TOKEN / 1000) / 60;
    if (e->tokens > t->burst)
        e->tokens = t->burst;
}

/* An entry nobody holds and whose bucket is full says nothing: drop it. */
static bool forgettable(const tp_ip_table_t *t, struct tp_ip_entry *e, int64_t now_ms)
{
    refill(t, e, now_ms);
    return e->open == 0 && (t->rate_per_min == 0 || e->tokens >= t->burst);
}

static void sweep(tp_ip_table_t *t, int64_t now_ms)
{
    size_t i;

    for (i = 0; i < t->nbuckets; i++) {
        struct tp_ip_entry **pp = &t->buckets[i];

        while (*pp != NULL) {
            struct tp_ip_entry *e = *pp;

            if (forgettable(t, e, now_ms)) {
                *pp = e->next;
                free(e);
                t->count--;
            } else {
                pp = &e->next;
            }
        }
    }
}

static void grow(tp_ip_table_t *t)
{
    size_t n = t->nbuckets * 2, i;
    struct tp_ip_entry **b = calloc(n, sizeof(*b));

    if (b == NULL)
        return;                 /* longer chains; still correct */
    for (i = 0; i < t->nbuckets; i++)
        while (t->buckets[i] != NULL) {
            struct tp_ip_entry *e = t->buckets[i];
            size_t j;

            t->buckets[i] = e->next;
            j = bucket_of(t, e->key, n);
            e->next = b[j];
            b[j] = e;
        }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

enum tp_ip_verdict tp_ip_admit(tp_ip_table_t *t, const struct sockaddr *peer, int64_t now_ms,
                               struct tp_ip_entry **held)
{
    struct tp_ip_entry *e;
    uint8_t key[16];
    size_t i;

    *held = NULL;
    if (!peer_key(peer, key))
        return TP_IP_OK;        /* not IP (never on a TCP listener): no limit */
    if (++t->since_sweep >= SWEEP_EVERY) {
        t->since_sweep = 0;
        sweep(t, now_ms);
    }
    i = bucket_of(t, key, t->nbuckets);
    for (e = t->buckets[i]; e != NULL && memcmp(e->key, key, 16) != 0; e = e->next)
        ;
    if (e == NULL) {
        if (t->count >= t->nbuckets) {
            grow(t);
            i = bucket_of(t, key, t->nbuckets);
        }
        e = calloc(1, sizeof(*e));
        if (e == NULL)
            return TP_IP_NOMEM;
        memcpy(e->key, key, 16);
        e->tokens = t->burst;
        e->at = now_ms;
        e->next = t->buckets[i];
        t->buckets[i] = e;
        t->count++;
    }
    refill(t, e, now_ms);
    if (t->max_conns > 0 && e->open >= t->max_conns)
        return TP_IP_TOO_MANY;
    if (t->rate_per_min > 0) {
        if (e->tokens < TOKEN)
            return TP_IP_TOO_FAST;
        e->tokens -= TOKEN;
    }
    e->open++;
    *held = e;
    return TP_IP_OK;
}

void tp_ip_release(struct tp_ip_entry *e)
{
    if (e != NULL && e->open > 0)
        e->open--;          /* freed by a later sweep once its bucket is full */
}
