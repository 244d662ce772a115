/* tp_call.c - one message through an app, and the tp_call_* functions apps use.
 *
 * While every message of a batch is answered with TP_APP_KEEP the batch
 * itself is the reply and nothing is copied. The first message answered any
 * other way ends that: the bytes kept so far are copied into a reply buffer
 * (a TP_MSG_SEND to the sender) and everything after is appended to it.
 * Output of zero bytes (possible only with raw framing) is a no-op: it never
 * becomes a message. */
#include "tp_call.h"

#include <errno.h>
#include <string.h>

#include "tp_frame.h"

#define REPLY_MIN_CAP 4000

struct tp_call {
    const struct tp_call_env *env;
    struct tp_msg *msg;           /* the message being run */
    struct tp_msg_list *out;
    struct tp_msg *reply;         /* bytes for the sender, not yet pushed */
    size_t kept;                  /* wire bytes [0, kept) of msg kept in place */
    uint32_t kept_count;          /* messages in them */
    size_t keep_len;              /* batch(): tp_call_keep()'s length, or SIZE_MAX */
    bool copying;                 /* msg is no longer its own reply */
    bool failed;                  /* a reply could not be allocated */
};

static void push_reply(struct tp_call *call)
{
    if (call->reply != NULL) {
        tp_msg_list_push(call->out, call->reply);
        call->reply = NULL;
    }
}

/* Returns a reply buffer with room for n more bytes, or NULL. */
static struct tp_msg *reply_room(struct tp_call *call, size_t n)
{
    struct tp_msg *r = call->reply;

    if (r != NULL && r->cap - r->len >= n)
        return r;
    push_reply(call);
    r = tp_msg_new(n > REPLY_MIN_CAP ? n : REPLY_MIN_CAP);
    if (r == NULL) {
        call->failed = true;
        return NULL;
    }
    r->kind = TP_MSG_SEND;
    r->h = call->msg->h;
    r->listener = call->msg->listener;
    r->read_stamp = call->msg->read_stamp;  /* it answers that read */
    call->reply = r;
    return r;
}

/* Appends count replies, len bytes, as they are on the wire. */
static void reply_raw(struct tp_call *call, const void *data, size_t len, uint32_t count)
{
    struct tp_msg *r;

    if (len == 0 || (r = reply_room(call, len)) == NULL)
        return;
    memcpy(r->data + r->len, data, len);
    r->len += (uint32_t)len;
    r->count += count;
}

/* From here on the batch is not its own reply: copy what was kept. */
static void stop_keeping(struct tp_call *call)
{
    if (call->copying)
        return;
    call->copying = true;
    if (call->keep_len != SIZE_MAX)
        call->kept = call->keep_len;
    reply_raw(call, call->msg->data, call->kept, call->kept_count);
}

size_t tp_call_room(const struct tp_call *call)
{
    return call->copying || call->msg->kind != TP_MSG_DATA ? 0 : call->msg->cap;
}

void tp_call_keep(struct tp_call *call, size_t len)
{
    if (!call->copying && call->msg->kind == TP_MSG_DATA && len <= call->msg->cap)
        call->keep_len = len;
}

/* Builds a framed copy of data in a fresh message of the given kind. */
static struct tp_msg *framed(struct tp_call *call, uint8_t kind, const void *data,
                             size_t len)
{
    enum tp_framing f = call->env->framing;
    char head[4], tail;
    size_t hl, tl;
    struct tp_msg *m;

    tp_frame_wrap(f, len, head, &hl, &tail, &tl);
    m = tp_msg_new(hl + len + tl);
    if (m == NULL) {
        call->failed = true;
        return NULL;
    }
    memcpy(m->data, head, hl);
    memcpy(m->data + hl, data, len);
    memcpy(m->data + hl + len, &tail, tl);
    m->len = (uint32_t)(hl + len + tl);
    m->count = 1;
    m->kind = kind;
    m->h = call->msg->h;
    m->listener = call->msg->listener;
    return m;
}

int tp_call_reply(struct tp_call *call, const void *data, size_t len)
{
    char head[4], tail;
    size_t hl, tl;
    struct tp_msg *r;

    stop_keeping(call);
    tp_frame_wrap(call->env->framing, len, head, &hl, &tail, &tl);
    if (hl + len + tl == 0)
        return 0;
    r = reply_room(call, hl + len + tl);
    if (r == NULL)
        return -ENOMEM;
    memcpy(r->data + r->len, head, hl);
    memcpy(r->data + r->len + hl, data, len);
    memcpy(r->data + r->len + hl + len, &tail, tl);
    r->len += (uint32_t)(hl + len + tl);
    r->count++;
    return 0;
}

/* True if len payload bytes make no bytes on the wire. */
static bool is_empty(const struct tp_call *call, size_t len)
{
    return len == 0 && call->env->framing == TP_FRAMING_RAW;
}

int tp_call_send(struct tp_call *call, struct tp_handle to, const void *data,
                 size_t len)
{
    struct tp_msg *m;

    if (is_empty(call, len))
        return 0;
    m = framed(call, TP_MSG_SEND, data, len);
    if (m == NULL)
        return -ENOMEM;
    m->h = to;
    stop_keeping(call);      /* `to` may be the sender: keep the order */
    push_reply(call);
    tp_msg_list_push(call->out, m);
    return 0;
}

/* Queues m, a broadcast, after what the call made so far. */
static int push_broadcast(struct tp_call *call, struct tp_msg *m, bool include_self)
{
    if (m == NULL)
        return -ENOMEM;
    if (include_self)
        m->flags |= TP_MSG_F_SELF;
    stop_keeping(call);
    push_reply(call);
    tp_msg_list_push(call->out, m);
    return 0;
}

int tp_call_broadcast(struct tp_call *call, const void *data, size_t len,
                      bool include_self)
{
    if (is_empty(call, len))
        return 0;
    return push_broadcast(call, framed(call, TP_MSG_BROADCAST, data, len), include_self);
}

int tp_call_broadcast_framed(struct tp_call *call, const void *data, size_t len,
                             bool include_self)
{
    struct tp_msg *m;

    if (len == 0)
        return 0;
    m = tp_msg_new(len);
    if (m == NULL) {
        call->failed = true;
        return -ENOMEM;
    }
    memcpy(m->data, data, len);
    m->len = (uint32_t)len;
    m->count = (uint32_t)tp_frame_count(call->env->framing, m->data, m->len,
                                        call->env->max_message);
    m->kind = TP_MSG_BROADCAST;
    m->h = call->msg->h;
    m->listener = call->msg->listener;
    return push_broadcast(call, m, include_self);
}

const char *tp_call_peer(const struct tp_call *call)
{
    const struct tp_msg *m = call->msg;

    return m->kind == TP_MSG_OPEN && m->cap > 0 ? m->data : NULL;
}

uint32_t tp_call_members(const struct tp_call *call)
{
    return call->msg->count;
}

struct tp_handle tp_call_conn(const struct tp_call *call)
{
    return call->msg->h;
}

void **tp_call_conn_data(struct tp_call *call)
{
    return &call->msg->conn_data;
}

void *tp_call_state(const struct tp_call *call)
{
    return call->env->state;
}

const struct tp_metrics *tp_call_metrics(const struct tp_call *call)
{
    return call->env->metrics;
}

/* Runs the app on each message of a batch; returns the app's last verdict
 * and counts the messages in *count. */
static int run_messages(struct tp_call *call, uint32_t *count)
{
    const struct tp_call_env *env = call->env;
    struct tp_msg *m = call->msg;
    struct tp_frame fr;
    size_t pos = 0;
    ssize_t used;
    int r = TP_APP_DONE;

    while (pos < m->len && r != TP_APP_CLOSE && !call->failed) {
        used = tp_frame_next(env->framing, m->data + pos, m->len - pos,
                             env->max_message, &fr);
        if (used <= 0) {
            /* Only a final line without its '\n' ends here: the reactor
             * hands over whole messages, and at EOF whatever remains. */
            if (used < 0 || env->framing != TP_FRAMING_LINE ||
                !(m->flags & TP_MSG_F_EOF))
                break;
            fr.off = 0;
            fr.len = m->len - pos;
            used = (ssize_t)fr.len;
        }
        (*count)++;
        r = env->app->message(call, m->data + pos + fr.off, fr.len);
        if (r == TP_APP_KEEP && call->copying) {
            reply_raw(call, m->data + pos, (size_t)used, 1);
        } else if (r == TP_APP_KEEP) {
            call->kept = pos + (size_t)used;
            call->kept_count++;
        } else {
            stop_keeping(call);
        }
        pos += (size_t)used;
    }
    return r;
}

/* The whole batch in one call to app->batch. */
static int run_batch(struct tp_call *call, uint32_t *count)
{
    const struct tp_call_env *env = call->env;
    struct tp_msg *m = call->msg;
    size_t n = tp_frame_count(env->framing, m->data, m->len, env->max_message);
    int r;

    /* An unterminated last line (after EOF) is a message too. */
    if (env->framing == TP_FRAMING_LINE && m->len > 0 && m->data[m->len - 1] != '\n')
        n++;
    *count = (uint32_t)n;
    call->kept_count = (uint32_t)n;   /* a reply per message, as echo makes */
    if (m->len == 0)
        return TP_APP_DONE;
    call->keep_len = SIZE_MAX;
    r = env->app->batch(call, m->data, m->len);
    if (call->keep_len != SIZE_MAX) {
        /* tp_call_keep(): the rewritten buffer is the reply, whatever the
         * verdict (TP_APP_CLOSE closes after it); if a reply was made after
         * it, it was copied then. */
        if (!call->copying)
            call->kept = call->keep_len;
        return r == TP_APP_CLOSE ? r : TP_APP_DONE;
    }
    if (r == TP_APP_KEEP && !call->copying) {
        call->kept = m->len;
    } else if (r == TP_APP_KEEP) {
        reply_raw(call, m->data, m->len, (uint32_t)n);
    }
    return r;
}

void tp_call_run(const struct tp_call_env *env, struct tp_msg *msg,
                 struct tp_msg_list *out)
{
    struct tp_call call = { .env = env, .msg = msg, .out = out, .keep_len = SIZE_MAX };
    uint32_t count = 0;
    int r = TP_APP_DONE;

    if (msg->kind == TP_MSG_DATA && env->app->batch != NULL)
        r = run_batch(&call, &count);
    else if (msg->kind == TP_MSG_DATA)
        r = run_messages(&call, &count);
    else if (msg->kind == TP_MSG_OPEN && env->app->open != NULL)
        r = env->app->open(&call);
    else if (msg->kind == TP_MSG_CLOSE && env->app->close != NULL)
        env->app->close(&call);
    push_reply(&call);
    msg->flags &= TP_MSG_F_EOF;
    if (msg->kind == TP_MSG_DATA && !call.copying && call.kept > 0) {
        msg->len = (uint32_t)call.kept;
        msg->flags |= TP_MSG_F_REPLY;
    }
    if (r == TP_APP_CLOSE || call.failed)
        msg->flags |= TP_MSG_F_CLOSE;
    msg->count = count;
    msg->kind = TP_MSG_DONE;
    tp_msg_list_push(out, msg);
}
