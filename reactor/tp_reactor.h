/* tp_reactor.h - the server: one epoll (edge-triggered) reactor thread.
 *
 *   socket -> read until EAGAIN -> cut whole messages -> pool work queue
 *   -> worker runs the app -> pool reply queue -> reactor -> send/sendmsg -> socket
 *
 * The reactor thread owns every connection; other threads name one by
 * handle. tp_server_run() is the loop; everything else is set-up, stop and
 * counters. */
#ifndef TP_REACTOR_H
#define TP_REACTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tp_app.h"
#include "tp_conf.h"
#include "tp_metrics.h"

typedef struct tp_server tp_server_t;

/* Where the server's log lines go (it never prints itself). msg has no
 * trailing newline. Called on the thread that runs tp_server_run(). */
typedef void tp_log_fn(void *arg, enum tp_log_level level, const char *msg);

/* What the loop tells its owner as it goes, for a service manager
 * (systemd's sd_notify in the tidepool binary). Called on the loop's thread
 * with the counters as they are then. */
enum tp_server_event {
    TP_SERVER_READY,     /* every listener is bound; serving starts now */
    TP_SERVER_TICK,      /* every tick_ms while the loop runs: it is alive */
    TP_SERVER_STOPPING,  /* a stop has begun (shutdown_delay, then the
                            listeners close) */
    TP_SERVER_REOPEN,    /* SIGUSR1: reopen log files (logrotate) */
    TP_SERVER_RELOAD,    /* SIGHUP: the owner may read its conf again and
                            call tp_server_reload() from this callback */
};
typedef void tp_event_fn(void *arg, enum tp_server_event ev, const struct tp_stats *st);

struct tp_server_opts {
    const struct tp_app *const *apps;  /* apps[i] serves conf->listen[i] */
    tp_log_fn *log;                    /* NULL: no log */
    void *log_arg;
    int signal_fd;                     /* a signalfd for INT, TERM, HUP,
                                          USR1, or -1 (tp_server_stop only) */
    bool workers_only;                 /* every message to a worker, however
                                          cheap (tests of the hand-off); false:
                                          cheap work runs on the reactor */
    tp_event_fn *event;                /* NULL: nobody listens */
    void *event_arg;
    uint32_t tick_ms;                  /* TP_SERVER_TICK period; 0 = none */
    tp_metrics_t *metrics;             /* where the counters go: its claimed
                                          slot (processes N); NULL: a region
                                          of the server's own */
};


/* Binds every listener of conf and starts the workers (conf->workers, -1 =
 * online CPUs, 0 = run apps inline). The server keeps its own copy of conf:
 * the caller's is its own again on return. Returns
 * NULL with a one-line reason in err, naming the conf file and line where it
 * helps ("tidepool.conf:7: listen 127.0.0.1:7000: bind: Address already in
 * use"). Main thread, before tp_server_run(). */
tp_server_t *tp_server_create(const struct tp_conf *conf,
                              const struct tp_server_opts *opts,
                              char *err, size_t errlen);

/* Runs the loop on the calling thread until the server stops (graceful stop
 * finished, or forced). Returns 0, or -errno if epoll itself failed. */
int tp_server_run(tp_server_t *srv);

/* Serves conf from now on without closing a connection: a listener whose
 * address stays keeps its socket (no connect is refused), new addresses are
 * bound, removed ones stop accepting and their connections finish as on a
 * graceful stop. New settings (app, framing, limits, timeouts, rules) apply
 * to new connections; open ones keep the settings they started with. A new
 * worker count starts a new pool; the old one finishes what it holds. apps[i]
 * serves conf->listen[i]; the server copies what it keeps. All or nothing:
 * on error nothing changed and err has a one-line reason, naming the conf
 * file and line where it helps. Returns 0, -ESHUTDOWN once a stop began,
 * -EBUSY if too many old settings still have connections, or the -errno of
 * the bind, app start or pool start that failed. Call it on the loop's
 * thread (from the TP_SERVER_RELOAD callback) or on any other thread, which
 * then waits while the loop applies it; not from a signal handler. */
int tp_server_reload(tp_server_t *srv, const struct tp_conf *conf,
                     const struct tp_app *const *apps, char *err, size_t errlen);

/* Asks the loop to stop. graceful: serve on for the conf's shutdown_delay
 * while health checks hear of the stop (app metrics), then stop accepting,
 * finish the messages already read, write their replies, close, return;
 * listeners of an app that serves_drain close last, once every other
 * connection is gone. The conf's shutdown_timeout (counted after the delay)
 * or a second call with graceful = false cuts it short. Any thread (not a
 * signal handler). */
void tp_server_stop(tp_server_t *srv, bool graceful);

/* The port listener i of the conf now served is bound to (useful with port
 * 0); 0 past the last. Any thread, but not while a reload is under way on
 * another. */
uint16_t tp_server_port(const tp_server_t *srv, size_t i);

/* Copies the counters (tp_metrics_snapshot). Any thread. */
void tp_server_stats(const tp_server_t *srv, struct tp_stats *out);

/* Frees everything. tp_server_run() must have returned (or never run). */
void tp_server_destroy(tp_server_t *srv);

#endif /* TP_REACTOR_H */
