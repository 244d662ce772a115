/* tp_master.h - `processes N`: a master that binds nothing, starts N serving
 * processes and supervises them, as nginx's master does.
 *
 * Each serving process is the single-process tidepool (its own reactor and
 * pool) and binds every listener with SO_REUSEPORT, so the kernel spreads
 * new connections over them. The master restarts one that dies (at once the
 * first time, then backing off while it keeps dying within a second of its
 * start), passes TERM, INT, HUP and USR1 on to every process, and exits
 * once they all have. Under systemd the master alone talks to it (READY=1
 * once every process serves, STATUS=, WATCHDOG=1, STOPPING=1). */
#ifndef TP_MASTER_H
#define TP_MASTER_H

#include "tp_conf.h"
#include "tp_metrics.h"
#include "tp_notify.h"

/* Runs one serving process: index 1..N, ready_fd gets one byte once it
 * serves (then the function may close it). Returns the exit status. */
typedef int tp_serve_fn(struct tp_conf *conf, unsigned index, int ready_fd);

/* Runs the master until every process has stopped. conf->processes > 1.
 * metrics has a slot per process (process #i holds slot i - 1); when one
 * dies its slot's gauges are zeroed and the counters kept for the process
 * restarted in it. Returns the exit status: 0 after a stop asked for by a
 * signal. */
int tp_master_run(struct tp_conf *conf, unsigned nprocs, tp_serve_fn *serve,
                  struct tp_notify *notify, tp_log_fn *log, tp_metrics_t *metrics);

#endif /* TP_MASTER_H */
