/* tp_stress_engine.h - the stress tool's load engine: threads, each with its
 * own epoll instance and an even share of the connections, driving one of
 * the modes of struct tp_stress_opts. Counters and latency histograms are
 * per thread and merged at the end; the engine never prints. */
#ifndef TP_STRESS_ENGINE_H
#define TP_STRESS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tp_stress_hist.h"
#include "tp_stress_args.h"

typedef struct tp_stress_engine tp_stress_engine_t;

enum tp_stress_err {
    TP_STRESS_ERR_REFUSED,
    TP_STRESS_ERR_RESET,
    TP_STRESS_ERR_TIMEOUT,
    TP_STRESS_ERR_MISMATCH,
    TP_STRESS_ERR_CLOSED_EARLY,
    TP_STRESS_ERR_OTHER,
    TP_STRESS_ERR_KINDS
};

/* The kind a connection's errno counts as (TP_STRESS_ERR_OTHER for any not
 * named). Any thread. */
enum tp_stress_err tp_stress_err_of(int err);

/* Why "other" errors happened, as bits of notes. */
#define TP_STRESS_NOTE_EMFILE 1u         /* out of file descriptors */
#define TP_STRESS_NOTE_ADDRNOTAVAIL 2u   /* out of local ports */
#define TP_STRESS_NOTE_ERRNO 4u          /* other_errno says */

#define TP_STRESS_MAX_DETAILS 10         /* mismatch lines kept */

/* Plain struct: counters, summed over threads. */
struct tp_stress_counts {
    uint64_t msgs;          /* replies complete (storm: cycles) */
    uint64_t bytes;         /* reply bytes received */
    uint64_t sent_msgs;     /* whole messages written */
    uint64_t sent_bytes;
    uint64_t opened;        /* connects that succeeded */
    uint64_t err[TP_STRESS_ERR_KINDS];
};

/* Plain struct: the outcome of a run. */
struct tp_stress_result {
    uint64_t start_ns, end_ns;           /* CLOCK_MONOTONIC */
    uint64_t open_at_end;                /* connections open when the run ended */
    uint64_t in_flight_at_end;           /* echo: messages queued on them, unanswered */
    struct tp_stress_counts n;
    unsigned notes;                      /* TP_STRESS_NOTE_* */
    int other_errno;                     /* the first unexpected errno */
    unsigned ndetails;
    char details[TP_STRESS_MAX_DETAILS][192];  /* one line per mismatch */
    uint64_t details_dropped;
    struct tp_stress_hist hist;          /* latency, ns */
};

/* Plain struct: one progress sample. */
struct tp_stress_snap {
    uint64_t open;
    struct tp_stress_counts n;
    struct tp_stress_hist *interval;     /* caller's; latencies since the last snap are added */
};

/* Sets up the threads' connections and buffers for o against addr (not
 * started). progress: keep per-interval histograms for snapshots.
 * Returns NULL with a one-line reason in err. Main thread. */
tp_stress_engine_t *tp_stress_engine_create(const struct tp_stress_opts *o,
                                            const struct sockaddr *addr, socklen_t addrlen,
                                            bool progress, char *err, size_t errlen);

/* Starts the threads; the run lasts until o->duration_ns from now, -n is
 * reached, every connection failed, or tp_stress_engine_stop(). Returns 0 or
 * -errno (no thread left running). Main thread. */
int tp_stress_engine_start(tp_stress_engine_t *e);

/* Asks every thread to stop within about 100 ms. Any thread. */
void tp_stress_engine_stop(tp_stress_engine_t *e);

/* Whether every thread has finished. Any thread. */
bool tp_stress_engine_is_done(tp_stress_engine_t *e);

/* Adds the counters as last published by the threads (every 250 ms) to s,
 * and the latencies recorded since the previous snap to s->interval. Only
 * with progress; main thread. */
void tp_stress_engine_snap(tp_stress_engine_t *e, struct tp_stress_snap *s);

/* Waits for the threads and fills r (about 40 KiB). Main thread, after start. */
void tp_stress_engine_join(tp_stress_engine_t *e, struct tp_stress_result *r);

/* Frees e (joined or never started). */
void tp_stress_engine_destroy(tp_stress_engine_t *e);

/* CLOCK_MONOTONIC in ns. */
uint64_t tp_stress_now_ns(void);

#endif /* TP_STRESS_ENGINE_H */
