/* tp_call.h - runs an app over one message from the reactor.
 *
 * The same code serves a worker (through the pool's work callback) and the
 * reactor itself with `workers 0`. */
#ifndef TP_CALL_H
#define TP_CALL_H

#include "tp_app.h"
#include "tp_conf.h"
#include "tp_msg.h"

/* What a listener's calls need; immutable while the server runs. */
struct tp_call_env {
    const struct tp_app *app;
    void *state;                  /* from app->init */
    enum tp_framing framing;
    uint32_t max_message;
    const struct tp_metrics *metrics;  /* the server's counters */
};

/* Runs msg (kind OPEN, DATA or CLOSE) through env->app. Pushes onto out every
 * message the app produced, in order, then msg itself turned into a
 * TP_MSG_DONE: its bytes are the reply when every message was answered with
 * TP_APP_KEEP (TP_MSG_F_REPLY set), TP_MSG_F_CLOSE set if the app asked to
 * close or a reply could not be allocated, and ->count set to the messages
 * the batch held. Any thread; reentrant. */
void tp_call_run(const struct tp_call_env *env, struct tp_msg *msg,
                 struct tp_msg_list *out);

#endif /* TP_CALL_H */
