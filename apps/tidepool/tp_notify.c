/* tp_notify.c - sd_notify() calls for the server's life (see tp_notify.h). */
#include "tp_notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#define STATUS_EVERY_MS 1000

uint32_t tp_notify_init(struct tp_notify *n, tp_log_fn *log, void *log_arg)
{
    uint64_t usec = 0;
    uint32_t tick = STATUS_EVERY_MS;

    memset(n, 0, sizeof(*n));
    n->log = log;
    n->log_arg = log_arg;
    n->on = getenv("NOTIFY_SOCKET") != NULL;
    if (!n->on)
        return 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        n->watchdog_usec = usec;
        if (usec / 2000 < tick)
            tick = usec / 2000 > 0 ? (uint32_t)(usec / 2000) : 1;
    }
    return tick;
}

static void send_state(struct tp_notify *n, const char *state)
{
    char msg[128];
    int rc = sd_notify(0, state);

    if (rc >= 0 || n->failed)
        return;
    n->failed = true;
    snprintf(msg, sizeof(msg), "sd_notify: %s (further failures not logged)", strerror(-rc));
    if (n->log != NULL)
        n->log(n->log_arg, TP_LOG_WARN, msg);
}

void tp_notify_reloading(struct tp_notify *n)
{
    struct timespec ts;
    char state[96];

    if (!n->on)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    send_state(n, state);
}

void tp_notify_reloaded(struct tp_notify *n, const char *status)
{
    char state[640];

    if (!n->on)
        return;
    snprintf(state, sizeof(state), "READY=1\nSTATUS=%s", status);
    send_state(n, state);
}

void tp_notify_event(void *arg, enum tp_server_event ev, const struct tp_stats *st)
{
    struct tp_notify *n = arg;
    unsigned long long open = (unsigned long long)st->open;
    char state[160];

    if (!n->on)
        return;
    switch (ev) {
    case TP_SERVER_READY:
        snprintf(state, sizeof(state), "READY=1\nSTATUS=serving, %llu connections", open);
        n->last_open = st->open;
        break;
    case TP_SERVER_TICK:
        if (n->watchdog_usec == 0 && st->open == n->last_open)
            return;
        n->last_open = st->open;
        snprintf(state, sizeof(state), "%sSTATUS=%s, %llu connections",
                 n->watchdog_usec > 0 ? "WATCHDOG=1\n" : "",
                 n->stopping ? "stopping: finishing" : "serving", open);
        break;
    case TP_SERVER_STOPPING:
        n->stopping = true;
        n->last_open = st->open;
        snprintf(state, sizeof(state), "STOPPING=1\nSTATUS=stopping: finishing %llu connections", open);
        break;
    default:
        return;
    }
    send_state(n, state);
}
