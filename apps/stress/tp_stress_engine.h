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
    /* Only --mode chat counts these: */
    TP_STRESS_ERR_MISSING,       /* a line a member never got (counted at the end) */
    TP_STRESS_ERR_DUPLICATE,     /* a line a member got twice */
    TP_STRESS_ERR_OUT_OF_ORDER,  /* a line that came after a later one of its sender */
    TP_STRESS_ERR_OWN_ECHO,      /* a member got its own line back */
    TP_STRESS_ERR_KINDS
};
#define TP_STRESS_ERR_CHAT_FIRST TP_STRESS_ERR_MISSING

/* "refused", "reset", ... as the report and --json name the kind. Any thread. */
const char *tp_stress_err_name(enum tp_stress_err kind);

/* The kind a connection's errno counts as (TP_STRESS_ERR_OTHER for any not
 * named). Any thread. */
enum tp_stress_err tp_stress_err_of(int err);

/* Why "other" errors happened, as bits of notes. */
#define TP_STRESS_NOTE_EMFILE 1u         /* out of file descriptors */
#define TP_STRESS_NOTE_ADDRNOTAVAIL 2u   /* out of local ports */
#define TP_STRESS_NOTE_ERRNO 4u          /* other_errno says */
#define TP_STRESS_NOTE_PREFIXED 8u       /* chat: our mark after other text */

#define TP_STRESS_MAX_DETAILS 10         /* mismatch lines kept */

/* Plain struct: counters, summed over threads. */
struct tp_stress_counts {
    uint64_t msgs;          /* replies complete (storm: cycles; chat: deliveries) */
    uint64_t bytes;         /* reply bytes received (chat: of the lines delivered) */
    uint64_t sent_msgs;     /* whole messages written (chat: lines) */
    uint64_t sent_bytes;
    uint64_t opened;        /* connects that succeeded */
    uint64_t reconnects;    /* --reconnect: replacements started */
    uint64_t closed_by_server;  /* --reconnect: closes at a message boundary */
    uint64_t lost_at_close; /* --reconnect: messages in flight on a connection
                               that ended, never answered */
    uint64_t err[TP_STRESS_ERR_KINDS];
};

/* Plain struct: what --mode chat adds to the outcome. A delivery is a line
 * one member received, so a line makes `recipients` of them. */
struct tp_stress_chat_result {
    uint32_t members;            /* -c */
    uint32_t senders;            /* --senders */
    uint32_t recipients;         /* per line: members - 1 (line: the sender is a
                                    member), members (resp: publishers are not) */
    uint64_t joined;             /* members that confirmed they were in the room */
    uint64_t members_at_end;     /* still open when the run ended */
    uint64_t foreign;            /* lines skipped as not ours (--foreign skip) */
    uint64_t publish_replies;    /* resp: PUBLISH replies read and checked */
    uint64_t given_up;           /* lines no longer waited for after --timeout */
    uint64_t send_ns;            /* from the release to the end of sending */
    uint64_t drain_ns;           /* from there to the last line or give-up */
    bool join_timed_out;         /* released at --timeout, not by every member */
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
    uint64_t requested;                  /* connections the engine opens (chat
                                            resp: members and publishers) */
    struct tp_stress_chat_result chat;   /* --mode chat only */
    struct tp_stress_hist hist;          /* latency, ns (chat: send to each delivery) */
};

/* Plain struct: one interval of the run (the time series), summed over
 * the threads. Interval k ends at start + (k + 1) * interval; each thread
 * cuts it at its first loop turn at or after that time, swapping its
 * latency histogram for an empty one, so a sample costs no more than
 * without a series. A thread cuts k only once main has taken k - 1. */
struct tp_stress_tick {
    uint64_t index;          /* k */
    uint64_t start_ns;       /* CLOCK_MONOTONIC: the run's start */
    uint64_t begin_ns;       /* where the previous interval ended (the start) */
    uint64_t end_ns;         /* the last thread's cut: its nominal end, start +
                                (k + 1) * interval, or a little later (a
                                thread cuts at its first loop turn from then;
                                later still while main has not taken k - 1);
                                for the tail the run's end */
    uint64_t open;           /* connections open at the cut */
    struct tp_stress_counts n;           /* totals at the cut (not differences) */
    struct tp_stress_hist *hist;         /* caller's: the interval's latencies are added */
    bool tail;               /* the part of the run after the last whole interval */
};

/* Sets up the threads' connections and buffers for o against addr (not
 * started). interval_ns: cut a time series every interval_ns (0: none).
 * Returns NULL with a one-line reason in err. Main thread. */
tp_stress_engine_t *tp_stress_engine_create(const struct tp_stress_opts *o,
                                            const struct sockaddr *addr, socklen_t addrlen,
                                            uint64_t interval_ns, char *err, size_t errlen);

/* Starts the threads; the run lasts until o->duration_ns from now, -n is
 * reached, every connection failed, or tp_stress_engine_stop(). Returns 0 or
 * -errno (no thread left running). Main thread. */
int tp_stress_engine_start(tp_stress_engine_t *e);

/* Asks every thread to stop within about 100 ms. Any thread. */
void tp_stress_engine_stop(tp_stress_engine_t *e);

/* Whether every thread has finished. Any thread. */
bool tp_stress_engine_is_done(tp_stress_engine_t *e);

/* Takes the next interval of the series into t (t->hist is added to, the
 * rest overwritten) once every thread still running has cut it. Returns 1
 * if it did, 0 if it is not cut yet. After tp_stress_engine_join, returns
 * the remaining intervals, then the tail (t->tail) once, then 0. Only with
 * an interval; main thread. */
int tp_stress_engine_tick(tp_stress_engine_t *e, struct tp_stress_tick *t);

/* Waits for the threads and fills r (about 40 KiB). Main thread, after start. */
void tp_stress_engine_join(tp_stress_engine_t *e, struct tp_stress_result *r);

/* Frees e (joined or never started). */
void tp_stress_engine_destroy(tp_stress_engine_t *e);

/* CLOCK_MONOTONIC in ns. */
uint64_t tp_stress_now_ns(void);

#endif /* TP_STRESS_ENGINE_H */
