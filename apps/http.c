/* http.c - app http: a minimal HTTP/1.1 responder. Every GET or HEAD gets
 * 200 OK and the listener's http_body; keep-alive as HTTP/1.x says, pipelined
 * requests answered in order; anything else gets its error status and the
 * connection closes after it.
 *
 * The listener frames request heads (framing http, the reactor cuts them),
 * so a batch holds whole heads and the app keeps nothing per connection.
 * Replies are written to a buffer on the stack and, when they fit, handed
 * back in the batch's own buffer (tp_call_keep): a request costs no
 * allocation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_apps.h"
#include "tp_http.h"

#define OUT_CAP 16384            /* replies gathered before they are handed on */
#define HEAD_MAX 512             /* a reply's status line and fields, at most */
#define DATE_LEN 29              /* "Sun, 06 Nov 1994 08:49:37 GMT" */

struct http_state {
    const char *body;            /* the listener's http_body (its conf outlives us) */
    size_t body_len;
    uint32_t max_head;           /* max_message: the longest head */
    char length[48];             /* "Content-Length: N\r\n" of the 200 */
    size_t length_len;
};

static int http_init(void **state, const struct tp_listen_conf *conf)
{
    struct http_state *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return -ENOMEM;
    st->body = conf->http_body;
    st->body_len = conf->http_body_len;
    st->max_head = conf->max_message;
    st->length_len = (size_t)snprintf(st->length, sizeof(st->length),
                                      "Content-Length: %zu\r\n", st->body_len);
    *state = st;
    return 0;
}

static void http_fini(void *state)
{
    free(state);
}

static char *put(char *to, const char *s, size_t n)
{
    memcpy(to, s, n);
    return to + n;
}

#define PUT_LIT(to, lit) put((to), (lit), sizeof(lit) - 1)

/* Status line, Server and Date, at to; returns the end. */
static char *start_reply(char *to, unsigned status)
{
    const char *reason = tp_http_reason(status);

    to = PUT_LIT(to, "HTTP/1.1 ");
    *to++ = (char)('0' + status / 100);
    *to++ = (char)('0' + status / 10 % 10);
    *to++ = (char)('0' + status % 10);
    *to++ = ' ';
    to = put(to, reason, strlen(reason));
    to = PUT_LIT(to, "\r\nServer: tidepool\r\nDate: ");
    to = put(to, tp_http_date(), DATE_LEN);
    return PUT_LIT(to, "\r\nContent-Type: text/plain\r\n");
}

/* 200 OK for a GET or HEAD. Returns the reply's length. */
static size_t ok_reply(const struct http_state *st, const struct tp_http_req *r, char *out)
{
    char *to = start_reply(out, 200);

    to = put(to, st->length, st->length_len);
    if (!r->keep_alive)
        to = PUT_LIT(to, "Connection: close\r\n");
    else if (r->minor == 0)
        to = PUT_LIT(to, "Connection: keep-alive\r\n");
    to = PUT_LIT(to, "\r\n");
    if (r->method != TP_HTTP_HEAD)
        to = put(to, st->body, st->body_len);
    return (size_t)(to - out);
}

/* An error: "<status> <reason>\n" as the body (none for HEAD), then close. */
static size_t error_reply(unsigned status, bool head, char *out)
{
    char body[64], *to = start_reply(out, status);
    int n = snprintf(body, sizeof(body), "%u %s\n", status, tp_http_reason(status));

    if (status == 405)
        to = PUT_LIT(to, "Allow: GET, HEAD\r\n");
    to += sprintf(to, "Content-Length: %d\r\nConnection: close\r\n\r\n", n);
    if (!head)
        to = put(to, body, (size_t)n);
    return (size_t)(to - out);
}

/* What a whole, well-formed request gets: 0 for 200, or an error status. */
static unsigned verdict(const struct tp_http_req *r)
{
    bool ours = r->method == TP_HTTP_GET || r->method == TP_HTTP_HEAD;

    if (r->method == TP_HTTP_OTHER)
        return 501;                       /* a method we do not know */
    if (r->has_transfer_encoding)
        return 501;                       /* a chunked body: we read none */
    if (r->has_content_length && r->content_length > 0)
        return 413;                       /* a body: we take none */
    return ours ? 0 : 405;
}

/* Gathers replies in out and passes them on when it fills. */
struct replies {
    struct tp_call *call;
    char out[OUT_CAP];
    size_t used;
    bool passed;                          /* some went out with tp_call_reply */
    bool failed;
};

static char *room(struct replies *rs, size_t need)
{
    if (OUT_CAP - rs->used < need) {
        if (tp_call_reply(rs->call, rs->out, rs->used) < 0)
            rs->failed = true;
        rs->passed = true;
        rs->used = 0;
    }
    return rs->out + rs->used;
}

/* Hands the gathered replies back: in the batch's own buffer if they fit. */
static int finish(struct replies *rs, char *data, bool close)
{
    if (!rs->passed && rs->used <= tp_call_room(rs->call)) {
        memcpy(data, rs->out, rs->used);
        tp_call_keep(rs->call, rs->used);
    } else if (rs->used > 0 && tp_call_reply(rs->call, rs->out, rs->used) < 0) {
        rs->failed = true;
    }
    return close || rs->failed ? TP_APP_CLOSE : TP_APP_DONE;
}

static int http_batch(struct tp_call *call, char *data, size_t len)
{
    const struct http_state *st = tp_call_state(call);
    struct replies rs;              /* not "= { ... }": that would zero out[] */
    struct tp_http_parser p;
    size_t pos = 0, need = HEAD_MAX + st->body_len;
    ssize_t n;
    unsigned status;
    char *to;

    rs.call = call;
    rs.used = 0;
    rs.passed = rs.failed = false;
    while (pos < len) {
        /* Empty lines before a head are messages of their own (RFC 9112
         * section 2.2 lets a server skip them); max counts from the head. */
        if (data[pos] == '\n' || (data[pos] == '\r' && pos + 1 < len && data[pos + 1] == '\n')) {
            pos += data[pos] == '\n' ? 1 : 2;
            continue;
        }
        tp_http_parser_init(&p);
        n = tp_http_parse(&p, data + pos, len - pos, st->max_head);
        to = room(&rs, need);
        if (n <= 0) {
            /* n == 0 cannot happen (the framing cuts whole heads); answer it
             * rather than leave the client waiting. */
            rs.used += error_reply(n < 0 ? p.status : 400,
                                   p.req.method == TP_HTTP_HEAD, to);
            return finish(&rs, data, true);
        }
        if ((status = verdict(&p.req)) != 0) {
            rs.used += error_reply(status, p.req.method == TP_HTTP_HEAD, to);
            return finish(&rs, data, true);
        }
        rs.used += ok_reply(st, &p.req, to);
        if (!p.req.keep_alive)
            return finish(&rs, data, true);
        pos += (size_t)n;
    }
    return finish(&rs, data, false);
}

const struct tp_app tp_app_http = {
    .name = "http",
    .framings = 1u << TP_FRAMING_HTTP,
    .init = http_init,
    .fini = http_fini,
    .batch = http_batch,
};
