/* tp_metrics.h - the server's counters, where any thread and any process of
 * `processes N` can read them, and the Prometheus text they make.
 *
 * A region holds one slot per serving process. A slot has one writer, the
 * reactor thread of the process that holds it, which adds to a counter with
 * a relaxed atomic store of its own value plus n (TP_METRIC_ADD: a plain
 * store, no read-modify-write, no lock); readers load each word relaxed. The
 * region is mapped MAP_SHARED before the master forks, so a scrape that
 * reaches any process sees every slot, and a process restarted in a slot
 * goes on from the counts its predecessor left: counters only rise. */
#ifndef TP_METRICS_H
#define TP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tp_conf.h"

/* Counters of one process. Gauges say so; the rest only rise. */
struct tp_stats {
    uint64_t accepted, rejected_max_conn, accept_errors;
    uint64_t refused_acl;                /* closed at accept: a deny rule */
    uint64_t refused_per_ip;             /* ... max_connections_per_ip */
    uint64_t refused_rate;               /* ... accept_rate_per_ip */
    uint64_t open;                       /* gauge: connections now */
    uint64_t closed_peer, closed_error, closed_oversize, closed_idle,
             closed_read_timeout, closed_app, closed_shutdown;
    uint64_t closed_slow;                /* a recipient of broadcasts whose
                                            unsent output passed
                                            send_buffer_max (it does not read) */
    uint64_t msgs_in, bytes_in, bytes_out;  /* tp_server_stats() sums these
                                               from the listeners' */
    uint64_t replies_dropped;            /* for connections already closed */
    uint64_t bytes_discarded;            /* input dropped at close: partial
                                            messages, and what arrives while
                                            lingering */
    uint64_t lingering;                  /* gauge: connections lingering now */
    uint64_t lingered;                   /* lingering closes begun */
    uint64_t linger_cut;                 /* ... cut short by lingering_timeout
                                            (replies may be lost) */
    uint64_t accept_pauses;              /* accepts paused: out of fds (EMFILE,
                                            ENFILE) or memory */
    uint64_t queued_bytes;               /* gauge: bytes of messages at the
                                            pool (set once per loop turn) */
    uint64_t redis_published;            /* chat_redis: runs Redis took */
    uint64_t redis_delivered;            /* ... runs from other instances */
    uint64_t redis_dropped;              /* ... runs not published (Redis down
                                            or behind): local members only */
};

/* Histogram bucket bounds, in ns: 10 us to 1 s; a last bucket takes the
 * rest (+Inf). */
#define TP_METRICS_BUCKETS 17
extern const uint64_t tp_metrics_bound_ns[TP_METRICS_BUCKETS - 1];

struct tp_metrics_hist {
    uint64_t bucket[TP_METRICS_BUCKETS]; /* observations in (bound[i-1], bound[i]] */
    uint64_t sum_ns;                     /* the count is the buckets' sum */
};

struct tp_metrics_listener {
    char name[72];                       /* "127.0.0.1:7000", the bound port */
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
};

/* One process's counters. */
struct tp_metrics_slot {
    struct tp_stats stats;
    struct tp_metrics_hist latency;      /* read until its reply is written */
    struct tp_metrics_hist queue_wait;   /* submitted until a worker took it */
    uint32_t draining;                   /* a graceful stop has begun */
    int32_t pid;                         /* 0: no process holds the slot */
    uint32_t nlisten;
    struct tp_metrics_listener listen[TP_CONF_MAX_LISTEN];
};

typedef struct tp_metrics tp_metrics_t;

/* Adds n to a counter whose only writer is the calling thread. */
#define TP_METRIC_ADD(ptr, n) __atomic_store_n((ptr), *(ptr) + (n), __ATOMIC_RELAXED)
#define TP_METRIC_SET(ptr, v) __atomic_store_n((ptr), (v), __ATOMIC_RELAXED)

/* Counts n observations of ns each. The slot's writer only. */
static inline void tp_metrics_observe(struct tp_metrics_hist *h, uint64_t ns, uint64_t n)
{
    unsigned i = 0;

    while (i < TP_METRICS_BUCKETS - 1 && ns > tp_metrics_bound_ns[i])
        i++;
    TP_METRIC_ADD(&h->bucket[i], n);
    TP_METRIC_ADD(&h->sum_ns, ns * n);
}

/* Maps a zeroed region of nslots slots, shared with the processes forked
 * after it. Returns NULL with errno set. Main thread, before forking. */
tp_metrics_t *tp_metrics_create(unsigned nslots);

/* Unmaps it (in this process). */
void tp_metrics_destroy(tp_metrics_t *m);

/* Makes slot i this process's own (its pid recorded) and returns it. The
 * slot keeps the counts of the process that held it before. */
struct tp_metrics_slot *tp_metrics_claim(tp_metrics_t *m, unsigned i);

/* This process's slot (after tp_metrics_claim), or NULL. */
struct tp_metrics_slot *tp_metrics_own(const tp_metrics_t *m);

/* The process of slot i is gone (the master reaped it): its gauges go to
 * zero, its counters stay for the process that takes the slot next. Only
 * while no process writes the slot. */
void tp_metrics_release(tp_metrics_t *m, unsigned i);

/* True once this process's server has begun a graceful stop. Any thread. */
bool tp_metrics_is_draining(const tp_metrics_t *m);

/* Text that grows as it is written. */
struct tp_metrics_text {
    char *data;
    size_t len, cap;
    bool failed;                         /* out of memory: data is partial */
};

/* Appends the Prometheus text exposition (format 0.0.4) of every slot to
 * out: counters summed over the processes, gauges and the process_* figures
 * of /proc/PID per process (with a `process` label when there are several).
 * Returns 0, or -ENOMEM (out->failed). Any thread, any process that mapped
 * the region; reads /proc. */
int tp_metrics_render(const tp_metrics_t *m, struct tp_metrics_text *out);

/* Frees out's buffer. */
void tp_metrics_text_free(struct tp_metrics_text *out);

/* Copies slot's counters into out, msgs_in, bytes_in and bytes_out summed
 * over its listeners. Any thread. */
void tp_metrics_snapshot(const struct tp_metrics_slot *slot, struct tp_stats *out);

#endif /* TP_METRICS_H */
