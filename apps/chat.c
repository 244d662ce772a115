/* chat.c - a chat room per listener: each line a client sends goes,
 * unchanged, to every other client of the listener and not back to it, in
 * the order it sent them (the classic select() chat server).
 *
 * A run of lines is passed on in one call, one copy and one broadcast: the
 * reactor fans that one shared buffer out to every member. With chat_prefix
 * each line gets "ADDR:PORT: " in front; with join_notice the room hears
 * "* ADDR:PORT joined (N members)" and "* ADDR:PORT left (N members)", N
 * being the count the reactor hands each open and close (tp_call_members). */
#include "tp_apps.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOTICE_MAX 128

struct room {                     /* immutable once init returns */
    bool prefix;
    bool notices;
};

struct member {                   /* one connection's, from open to close */
    size_t prefix_len;
    char prefix[72];              /* "[ipv6]:port: " */
    char peer[64];
};

static int chat_init(void **state, const struct tp_listen_conf *conf)
{
    struct room *r = malloc(sizeof(*r));

    if (r == NULL)
        return -ENOMEM;
    r->prefix = conf->chat_prefix;
    r->notices = conf->join_notice;
    *state = r;
    return 0;
}

static void chat_fini(void *state)
{
    free(state);
}

/* Tells the room (the newcomer included) who came or went. */
static int notice(struct tp_call *call, const char *peer, const char *what, bool self)
{
    char line[NOTICE_MAX];
    uint32_t n = tp_call_members(call);
    int len = snprintf(line, sizeof(line), "* %s %s (%u %s)", peer, what, n,
                       n == 1 ? "member" : "members");

    return tp_call_broadcast(call, line, (size_t)len, self);
}

static int chat_open(struct tp_call *call)
{
    const struct room *r = tp_call_state(call);
    const char *peer = tp_call_peer(call);
    struct member *m;

    if (!r->prefix && !r->notices)
        return 0;
    m = malloc(sizeof(*m));
    if (m == NULL)
        return TP_APP_CLOSE;
    snprintf(m->peer, sizeof(m->peer), "%s", peer != NULL ? peer : "?");
    m->prefix_len = (size_t)snprintf(m->prefix, sizeof(m->prefix), "%s: ", m->peer);
    *tp_call_conn_data(call) = m;
    if (r->notices && notice(call, m->peer, "joined", true) < 0)
        return TP_APP_CLOSE;
    return 0;
}

static void chat_close(struct tp_call *call)
{
    const struct room *r = tp_call_state(call);
    struct member *m = *tp_call_conn_data(call);

    if (m == NULL)
        return;
    if (r->notices)
        notice(call, m->peer, "left", false);   /* out of memory: unsaid */
    free(m);
    *tp_call_conn_data(call) = NULL;
}

/* The run with the sender's prefix before each line, as one broadcast. */
static int send_prefixed(struct tp_call *call, const struct member *m, const char *data,
                         size_t len)
{
    const char *p = data, *end = data + len, *nl;
    size_t lines = 0, n = 0;
    char *buf;
    int rc;

    for (nl = p; nl < end && (nl = memchr(nl, '\n', (size_t)(end - nl))) != NULL; nl++)
        lines++;
    if (len > 0 && data[len - 1] != '\n')
        lines++;                  /* after EOF: a last line without its '\n' */
    buf = malloc(len + lines * (m->prefix_len + 1));
    if (buf == NULL)
        return -ENOMEM;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        nl = nl != NULL ? nl + 1 : end;
        memcpy(buf + n, m->prefix, m->prefix_len);
        memcpy(buf + n + m->prefix_len, p, (size_t)(nl - p));
        n += m->prefix_len + (size_t)(nl - p);
        if (nl[-1] != '\n')
            buf[n++] = '\n';
        p = nl;
    }
    rc = tp_call_broadcast_framed(call, buf, n, false);
    free(buf);
    return rc;
}

/* data[0..len) is whole lines as they came, '\n' included (after EOF the
 * last may lack it: it is delivered as a line all the same). */
static int chat_batch(struct tp_call *call, char *data, size_t len)
{
    const struct room *r = tp_call_state(call);
    const struct member *m = *tp_call_conn_data(call);
    size_t whole = len;
    int rc;

    if (r->prefix && m != NULL)
        return send_prefixed(call, m, data, len) < 0 ? TP_APP_CLOSE : TP_APP_DONE;
    while (whole > 0 && data[whole - 1] != '\n')
        whole--;
    rc = tp_call_broadcast_framed(call, data, whole, false);
    if (rc == 0 && whole < len)
        rc = tp_call_broadcast(call, data + whole, len - whole, false);
    return rc < 0 ? TP_APP_CLOSE : TP_APP_DONE;
}

const struct tp_app tp_app_chat = {
    .name = "chat",
    .framings = 1u << TP_FRAMING_LINE,
    .init = chat_init,
    .fini = chat_fini,
    .open = chat_open,
    .batch = chat_batch,
    .close = chat_close,
};
