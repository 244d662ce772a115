/* tp_app.h - the one interface every app implements.
 *
 * An app turns messages into replies. The pool calls it on a worker thread
 * (or the reactor calls it inline with `workers 0`), one call at a time per
 * connection, in the order the connection's messages arrived; different
 * connections run at the same time on different workers, so an app's shared
 * state needs its own synchronization.
 *
 * A call may reply to its sender, send to another connection by handle, or
 * broadcast to every connection of the listener: each reply is framed the
 * way the listener frames messages. Bytes given to tp_call_* are copied.
 *
 * The reactor hands over runs of whole messages, as many as one read
 * brought; an app sees them one call per message (message()) or one call per
 * run (batch()). */
#ifndef TP_APP_H
#define TP_APP_H

#include <stdbool.h>
#include <stddef.h>

#include "tp_conf.h"
#include "tp_msg.h"

struct tp_call;  /* one message (or open/close) being handled; opaque */

/* What message() returns. */
enum {
    TP_APP_DONE = 0,   /* replies, if any, were made with tp_call_*() */
    TP_APP_KEEP = 1,   /* the message, as the app left it (same length, it
                          may edit the bytes in place), is the reply */
    TP_APP_CLOSE = 2,  /* close the connection once its replies are written */
};

struct tp_app {
    const char *name;
    /* Optional: the framings the app works with, as bits 1u << TP_FRAMING_x;
     * 0: any. A listener that names no framing gets the lowest of them, and
     * one that names another is refused (tidepool -t says where). */
    unsigned framings;
    /* Optional. Once per listener before it serves, on the main thread;
     * *state is handed to every call (tp_call_state). Returns 0 or -errno. */
    int (*init)(void **state, const struct tp_listen_conf *conf);
    /* Optional. After the listener stopped and every call returned. */
    void (*fini)(void *state);
    /* Optional. A connection opened, before its first message. Returns 0, or
     * TP_APP_CLOSE to refuse it (after writing any reply). */
    int (*open)(struct tp_call *call);
    /* One message: len payload bytes at data, without framing, writable.
     * Returns TP_APP_DONE, TP_APP_KEEP or TP_APP_CLOSE. Every app has
     * message() or batch(). */
    int (*message)(struct tp_call *call, char *data, size_t len);
    /* Optional; when set it is called instead of message(). A run of whole
     * messages: data[0..len) exactly as they came on the wire, framing
     * included (after EOF, a line listener's run may end in a line without
     * its '\n'). For apps that answer a run at once, as echo does: a flood
     * of short lines then costs one call, not one per line. Returns
     * TP_APP_KEEP (the run, as the app left it, is the reply), TP_APP_DONE
     * or TP_APP_CLOSE. */
    int (*batch)(struct tp_call *call, char *data, size_t len);
    /* Optional. The connection closed (its handle is dead); free what open
     * made. Replies and sends to it made here are dropped; broadcasts reach
     * the listener's other connections. */
    void (*close)(struct tp_call *call);
    /* Its listener stays open through a graceful stop until every other
     * listener's connections are gone, so a load balancer's health check
     * hears that the server is draining (app metrics: /health answers 503)
     * rather than finding the port closed. */
    bool serves_drain;
};

/* The connection this call is for; usable with tp_call_send() later, from
 * any call, until it closes (then sends to it are dropped). */
struct tp_handle tp_call_conn(const struct tp_call *call);

/* The per-connection pointer the app may set in open() and read or change in
 * any later call for the same connection. NULL at first. */
void **tp_call_conn_data(struct tp_call *call);

/* open() only: the peer's address as text, "127.0.0.1:50432" or
 * "[::1]:50432" ("?" if unknown); NULL in any other call. Valid until the
 * call returns. */
const char *tp_call_peer(const struct tp_call *call);

/* How many connections the listener had when the reactor handed this call
 * over: in open() this one included, in close() not. A snapshot the
 * reactor takes (it alone keeps the list); others may have come or gone by
 * the time a broadcast made now is delivered. */
uint32_t tp_call_members(const struct tp_call *call);

/* What init() put in *state. */
void *tp_call_state(const struct tp_call *call);

/* The server's counters (tp_metrics.h): for app metrics. */
struct tp_metrics;
const struct tp_metrics *tp_call_metrics(const struct tp_call *call);

/* Appends a reply of len bytes to the sender. Returns 0 or -ENOMEM. */
int tp_call_reply(struct tp_call *call, const void *data, size_t len);

/* batch() only: how many bytes the batch's own buffer holds, data[0..len)
 * and the room after it; 0 once a reply was made with tp_call_*(). An app
 * that has read all it needs of the run may write its whole reply there,
 * over the input, and hand it back with tp_call_keep(): no copy, no
 * allocation. */
size_t tp_call_room(const struct tp_call *call);

/* batch() only: the reply is data[0..len) as the app wrote it (len at most
 * tp_call_room()); return TP_APP_KEEP or TP_APP_CLOSE after it. Making
 * another reply afterwards copies these bytes first, as for TP_APP_KEEP. */
void tp_call_keep(struct tp_call *call, size_t len);

/* Sends len bytes to connection `to` (after anything already queued for
 * it). Returns 0 or -ENOMEM. */
int tp_call_send(struct tp_call *call, struct tp_handle to, const void *data,
                 size_t len);

/* Sends len bytes to every connection of this listener, the sender too if
 * include_self; one shared buffer, however many recipients. Returns 0 or
 * -ENOMEM. */
int tp_call_broadcast(struct tp_call *call, const void *data, size_t len,
                      bool include_self);

/* The same for bytes already framed: data[0..len) is whole messages with
 * their framing, such as a run batch() was given (or a part of it), sent
 * as they are in one shared buffer. For apps that pass a run on: one copy
 * and one broadcast however many messages it holds. Returns 0 or -ENOMEM. */
int tp_call_broadcast_framed(struct tp_call *call, const void *data, size_t len,
                             bool include_self);

#endif /* TP_APP_H */
