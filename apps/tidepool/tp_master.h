/* tp_master.h - `processes N`: a master that binds nothing, starts N serving
 * processes and supervises them, as nginx's master does.
 *
 * Each serving process is the single-process tidepool (its own reactor and
 * pool) and binds every listener with SO_REUSEPORT, so the kernel spreads
 * new connections over them. The master restarts one that dies (at once the
 * first time, then backing off while it keeps dying within a second of its
 * start), passes TERM, INT, USR1 and (once it checked the conf) HUP on to
 * every process, and exits
 * once they all have. Under systemd the master alone talks to it (READY=1
 * once every process serves, STATUS=, WATCHDOG=1, STOPPING=1). */
#ifndef TP_MASTER_H
#define TP_MASTER_H

#include <stddef.h>

#include "tp_conf.h"
#include "tp_metrics.h"
#include "tp_notify.h"

/* Runs one serving process: index 1..N; ready_fd gets 'r' once it serves
 * and 'h' or 'f' after each reload (see tp_master_run). Returns the exit
 * status. */
typedef int tp_serve_fn(struct tp_conf *conf, unsigned index, int ready_fd);

/* SIGHUP: reads the conf file again and checks it as -t does, against cur
 * (the conf now served): what needs a restart is logged and kept as in cur.
 * Returns a new heap conf, or NULL with a one-line err ("file:line: ..."),
 * or NULL with err "" if there is no file to read. */
typedef struct tp_conf *tp_reload_conf_fn(const struct tp_conf *cur, char *err,
                                          size_t errlen);

/* Runs the master until every process has stopped. conf->processes > 1.
 * On SIGHUP the master checks the conf with read_conf first: a bad one is
 * logged once and not passed on; a good one becomes the conf of processes
 * started from then on, and each running process gets the SIGHUP and
 * reloads itself, then reports 'h' (took it) or 'f' (refused it) on the
 * pipe it said 'r' (ready) on; READY=1 goes to systemd once every one has
 * (or died, or 10 s passed). metrics has a slot per process (process #i
 * holds slot i - 1); when one dies its slot's gauges are zeroed and the
 * counters kept for the process restarted in it. Returns the exit status: 0
 * after a stop asked for by a signal. */
int tp_master_run(struct tp_conf *conf, unsigned nprocs, tp_serve_fn *serve,
                  tp_reload_conf_fn *read_conf, struct tp_notify *notify, tp_log_fn *log,
                  tp_metrics_t *metrics);

#endif /* TP_MASTER_H */
