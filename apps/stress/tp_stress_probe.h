/* tp_stress_probe.h - the fairness probe: one light client beside the load.
 * Every --probe TIME it opens a new connection, sends one -s message, waits
 * for it to come back whole, closes, and times connect start to reply; so a
 * run shows what a newcomer waits while the load's connections keep the
 * server busy. Its own thread, blocking on poll; never prints. */
#ifndef TP_STRESS_PROBE_H
#define TP_STRESS_PROBE_H

#include <stdint.h>
#include <sys/socket.h>

#include "tp_stress_args.h"
#include "tp_stress_engine.h"    /* enum tp_stress_err, tp_stress_now_ns */
#include "tp_stress_hist.h"

typedef struct tp_stress_probe tp_stress_probe_t;

/* Plain struct: what the probes found. */
struct tp_stress_probe_result {
    uint64_t count;                       /* probes answered whole and right */
    uint64_t err[TP_STRESS_ERR_KINDS];    /* probes that failed, by kind */
    char first_err[192];                  /* what the first failure was; "" */
    struct tp_stress_hist hist;           /* connect start to reply, ns */
    struct {                              /* the slowest probe answered */
        uint64_t ns;                      /* connect start to reply */
        uint64_t connect_ns;              /* of which, connect start to connected */
        uint64_t at_ns;                   /* its connect start, from the probe's start */
    } slowest;
};

/* Sets up a probe of o->probe_ns against addr (not started). Returns NULL
 * with errno set. Main thread. */
tp_stress_probe_t *tp_stress_probe_create(const struct tp_stress_opts *o,
                                          const struct sockaddr *addr, socklen_t addrlen);

/* Starts the probe thread: the first probe at once, then one every
 * o->probe_ns (at once after a late one), until o->duration_ns from now or
 * tp_stress_probe_stop(). Returns 0 or -errno (no thread). Main thread. */
int tp_stress_probe_start(tp_stress_probe_t *p);

/* Asks the thread to stop within about 50 ms; a probe then still waiting is
 * dropped uncounted, like messages in flight at the end. Any thread. */
void tp_stress_probe_stop(tp_stress_probe_t *p);

/* Waits for the thread (if started) and fills r. Main thread. */
void tp_stress_probe_join(tp_stress_probe_t *p, struct tp_stress_probe_result *r);

/* Frees p (joined or never started). */
void tp_stress_probe_destroy(tp_stress_probe_t *p);

#endif /* TP_STRESS_PROBE_H */
