/* internal.h - what the two files of the stress tool's engine share:
 * tp_stress_engine.c (threads, connections, the echo-family modes) and
 * tp_stress_chat.c (--mode chat on top of the same threads and connections).
 * Not an interface for anything else; tp_stress_engine.h is that. */
#ifndef TP_STRESS_INTERNAL_H
#define TP_STRESS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tp_stress_engine.h"
#include "tp_stress_pace.h"

#define MS 1000000ull
#define RBUF_SIZE (256 * 1024)
#define SWEEP_NS (100 * MS)          /* timeout checks */
#define MAX_WAIT_NS (100 * MS)       /* longest epoll wait: stop latency */

struct tp_stress_chat;          /* tp_stress_chat.c: the room */
struct tp_stress_chat_worker;   /* one thread's part of it */
struct tp_stress_chat_conn;     /* one member's or sender's */

enum conn_state { C_IDLE, C_CONNECTING, C_OPEN, C_DONE };

struct conn {
    int fd;
    uint32_t gen;            /* bumped at close: stale events are dropped */
    uint8_t state;
    bool out_blocked;        /* EPOLLOUT asked for (echo, flood) */
    uint32_t index;          /* 0..conns-1 over all threads */
    uint64_t seq_queued;     /* messages put in the ring */
    uint64_t seq_done;       /* replies complete */
    uint64_t out_off;        /* stream bytes written */
    uint64_t in_off;         /* stream bytes received */
    uint64_t out_limit;      /* flood: stream bytes it may send (-n); UINT64_MAX */
    uint64_t wait_since;     /* connect start, or last progress with replies due */
    uint64_t cycle_start;    /* storm: connect start */
    uint64_t retry_at;       /* storm, --reconnect: when the slot may connect again */
    uint32_t backoff_ms;     /* --reconnect: the next retry's delay */
    char *ring;              /* depth * size bytes in flight (echo, storm); flood:
                                the thread's stream */
    uint64_t *stamps;        /* depth send (or intended) times */
    struct tp_stress_chat_conn *chat;   /* chat: its member or sender state */
};

struct worker {
    struct tp_stress_engine *e;
    const struct tp_stress_opts *o;
    pthread_t tid;
    bool started;
    int epfd;
    uint32_t first, nconns;  /* global index of the first connection; count */
    uint64_t quota;          /* replies (storm: cycles) to finish; UINT64_MAX */
    double rate, ramp;       /* this thread's share */
    struct conn *conns;
    char *rings, *rbuf;
    char *stream;            /* slow, flood: whole messages; flood: twice over,
                                so that any stream_len bytes from pos < stream_len
                                are contiguous */
    uint64_t *stamps;
    uint32_t ring_len, stream_len;
    uint32_t unit;           /* bytes per message on the wire (flush): -s, or a
                                chat PUBLISH command */
    uint32_t *retry;         /* storm: FIFO of slots waiting to reconnect */
    uint32_t retry_head, retry_len;
    uint32_t next_open;      /* next connection never started */
    uint32_t pending;        /* connects in progress */
    uint32_t live;           /* connections not given up (storm: slots) */
    uint32_t rr;             /* pacing round robin */
    uint64_t open;           /* connections open now */
    uint64_t issued;         /* messages (storm: cycles) started */
    uint64_t src_next;       /* --src round robin */
    bool pace_started, stopping;
    bool pace_full;          /* due messages wait: no open connection had room */
    bool refill;             /* -n budget came back: offer it to idle connections */
    bool no_pwait2;          /* the kernel lacks epoll_pwait2 */
    struct tp_stress_pace pace, ramp_pace;
    struct tp_stress_hist *rec;  /* where latencies go: total, or cur with an interval */
    struct tp_stress_hist *total, *cur;
    struct tp_stress_counts n;
    unsigned notes;
    int other_errno;
    unsigned ndetails;
    uint64_t details_dropped;
    char details[TP_STRESS_MAX_DETAILS][192];
    uint64_t end_ns, open_at_end, in_flight_at_end;
    uint64_t next_sweep;
    uint64_t cut_k, cut_at;  /* the next interval to cut, and when it ends */
    pthread_mutex_t lock;    /* guards the pub_* fields: the thread writes them at
                                a cut, main reads them and empties pub_hist */
    struct tp_stress_hist *pub_hist;  /* interval pub_k, swapped with cur at the cut */
    uint64_t pub_k;          /* TP_STRESS_NO_CUT: pub_hist taken (empty) */
    struct tp_stress_counts pub_n;    /* w->n at the cut */
    uint64_t pub_open;
    uint64_t pub_at;         /* when the thread cut it (at or after its nominal end) */
    struct tp_stress_counts fin_n;    /* w->n when the loop ended */
    bool pub_finished;       /* the thread left its loop: no more cuts */
    struct tp_stress_chat_worker *chat;  /* chat: this thread's part */
};

struct tp_stress_engine {
    struct tp_stress_opts o;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t interval_ns;    /* 0: no series (latencies go straight to total) */
    uint64_t start_ns, deadline_ns;
    uint64_t next_k;         /* main: the next interval tp_stress_engine_tick takes */
    uint64_t last_end_ns;    /* main: where the previous interval ended */
    bool joined;             /* main: tp_stress_engine_join ran */
    bool tail_taken;         /* main: the run's tail after the last cut was taken */
    uint64_t deadline_extra_ns;  /* chat: joining and draining, beyond -d */
    atomic_bool stop;        /* main writes, threads read; relaxed */
    atomic_uint running;     /* threads still in their loop */
    unsigned nworkers;
    struct worker *w;
    struct tp_stress_chat *chat;         /* chat: the room, shared by the threads */
};

/* ---- tp_stress_engine.c, for tp_stress_chat.c ---- */

/* The one close path; kind: the error to count, or -1. */
void tp_stress__conn_close(struct worker *w, struct conn *c, int kind, uint64_t now);
/* Closes c for errno err, counted by its kind. */
void tp_stress__conn_fail(struct worker *w, struct conn *c, int err, uint64_t now);
/* epoll_ctl for c: 0 or -errno. */
int tp_stress__conn_watch(struct worker *w, struct conn *c, int op, uint32_t events);
/* One read into w->rbuf: 1 if bytes came (*n), 0 to wait, -1 if c closed. */
int tp_stress__read_some(struct worker *w, struct conn *c, size_t *n, uint64_t *now);
/* Writes c->ring from c->out_off up to c->seq_queued * w->unit. */
void tp_stress__flush(struct worker *w, struct conn *c, uint64_t now);
/* Keeps one line for the report (TP_STRESS_MAX_DETAILS, then counted). */
void tp_stress__note_detail(struct worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- tp_stress_chat.c, for tp_stress_engine.c ---- */

/* Sets up the room for e->o (resp: e->o.conns grows by the publishers).
 * 0, or -errno with a reason in err. Main thread, before the workers. */
int tp_stress__chat_create(struct tp_stress_engine *e, char *err, size_t errlen);
void tp_stress__chat_destroy(struct tp_stress_engine *e);
/* This thread's part: roles, buffers, its eventfd in w->epfd. 0 or -errno. */
int tp_stress__chat_worker_init(struct worker *w);
void tp_stress__chat_worker_fini(struct worker *w);
/* c's connect finished. */
void tp_stress__chat_connected(struct worker *w, struct conn *c, uint64_t now);
/* An epoll event for open c. */
void tp_stress__chat_event(struct worker *w, struct conn *c, uint32_t events, uint64_t now);
/* The thread's eventfd fired: another thread released the room or finished a line. */
void tp_stress__chat_kicked(struct worker *w, uint64_t now);
/* c is about to close (any reason, the run's end too). */
void tp_stress__chat_closing(struct worker *w, struct conn *c, uint64_t now);
/* The mode's periodic work; lowers *wake to when it is next due. */
void tp_stress__chat_turn(struct worker *w, uint64_t now, uint64_t *wake);
/* Whether the room's run is over (every sender done and drained). */
bool tp_stress__chat_is_over(const struct worker *w);
/* Counts what the members still open never got, before they are closed. */
void tp_stress__chat_finish(struct worker *w, uint64_t now);
/* Adds the room's figures to r. Main thread, after the threads ended. */
void tp_stress__chat_join(struct tp_stress_engine *e, struct tp_stress_result *r);

/* pub_k while no interval waits for main. */
#define TP_STRESS_NO_CUT UINT64_MAX

/* The epoll data of a thread's eventfd (no connection has it). */
#define TP_STRESS_KICK_DATA UINT64_MAX

#endif /* TP_STRESS_INTERNAL_H */
