/* tp_notify.h - what the tidepool binary tells systemd (Type=notify-reload).
 *
 * READY=1 once every listener is bound, STATUS= with the open connections,
 * RELOADING=1 and READY=1 again around a reload (Type=notify-reload),
 * WATCHDOG=1 from the event loop itself while it runs (so a stuck loop is
 * noticed, not just a dead process), STOPPING=1 when a stop begins. Through
 * libsystemd's sd_notify(); nothing is sent unless the service manager set
 * NOTIFY_SOCKET. */
#ifndef TP_NOTIFY_H
#define TP_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "tp_reactor.h"

struct tp_notify {
    bool on;                  /* NOTIFY_SOCKET is set */
    uint64_t watchdog_usec;   /* WATCHDOG_USEC for this process, 0 = none */
    uint64_t last_open;       /* open connections in the last STATUS= */
    bool stopping;            /* STOPPING=1 was sent */
    bool failed;              /* a send failed (logged once) */
    tp_log_fn *log;
    void *log_arg;
};

/* Reads the environment. Returns the period, in ms, at which the server
 * should call tp_notify_event with TP_SERVER_TICK (half the watchdog
 * interval, at most a second), or 0 if systemd is not listening. */
uint32_t tp_notify_init(struct tp_notify *n, tp_log_fn *log, void *log_arg);

/* The reload half of Type=notify-reload: RELOADING=1 with MONOTONIC_USEC=
 * (CLOCK_MONOTONIC now, in µs) as a reload starts, and READY=1 with
 * STATUS=status once it is over, taken or refused. */
void tp_notify_reloading(struct tp_notify *n);
void tp_notify_reloaded(struct tp_notify *n, const char *status);

/* A tp_event_fn: arg is the struct tp_notify. */
void tp_notify_event(void *arg, enum tp_server_event ev, const struct tp_stats *st);

#endif /* TP_NOTIFY_H */
