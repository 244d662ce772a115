/* metrics.c - app metrics: the server's counters over HTTP, for Prometheus,
 * and a health check for load balancers.
 *
 *   GET /metrics  200, the Prometheus text exposition format 0.0.4
 *   GET /health   200 "ok\n" while serving, 503 "draining\n" once a
 *                 graceful stop has begun (HAProxy's option httpchk)
 *   other paths   404; methods other than GET and HEAD 405 (or 501 for one
 *                 HTTP does not define), as app http answers them
 *
 * The listener frames request heads (framing http) and the heads are read
 * with the parser app http uses (tp_http.h). Its listener stays open through
 * a graceful stop (serves_drain), so /health answers 503 until the drain
 * ends rather than the port closing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_apps.h"
#include "tp_http.h"
#include "tp_metrics.h"

#define EXPOSITION_TYPE "text/plain; version=0.0.4; charset=utf-8"

static void append(struct tp_metrics_text *out, const char *data, size_t len)
{
    size_t want;
    char *d;

    if (out->failed)
        return;
    if (out->cap - out->len < len) {
        want = out->len + len + 4096;
        if ((d = realloc(out->data, want)) == NULL) {
            out->failed = true;
            return;
        }
        out->data = d;
        out->cap = want;
    }
    memcpy(out->data + out->len, data, len);
    out->len += len;
}

static void reply_head(struct tp_metrics_text *out, unsigned status, const char *type,
                       size_t length, bool close)
{
    char head[512];
    int n;

    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %u %s\r\nServer: tidepool\r\nDate: %s\r\n"
                 "Content-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                 status, tp_http_reason(status), tp_http_date(), type, length,
                 status == 405 ? "Allow: GET, HEAD\r\n" : "",
                 close ? "Connection: close\r\n" : "");
    append(out, head, (size_t)n);
}

/* A reply with a short body (none for HEAD). */
static void simple(struct tp_metrics_text *out, unsigned status, bool head, bool close,
                   const char *body)
{
    reply_head(out, status, "text/plain; charset=utf-8", strlen(body), close);
    if (!head)
        append(out, body, strlen(body));
}

/* The path of the target, without its query. */
static bool is_path(const char *data, const struct tp_http_span *t, const char *path)
{
    size_t n = strlen(path);

    return t->len >= n && memcmp(data + t->off, path, n) == 0 &&
           (t->len == n || data[t->off + n] == '?');
}

static void exposition(struct tp_call *call, struct tp_metrics_text *out, bool head,
                       bool close)
{
    struct tp_metrics_text body = { 0 };

    if (tp_metrics_render(tp_call_metrics(call), &body) < 0) {
        tp_metrics_text_free(&body);
        simple(out, 500, head, true, "500 Internal Server Error\n");
        return;
    }
    reply_head(out, 200, EXPOSITION_TYPE, body.len, close);
    if (!head)
        append(out, body.data, body.len);
    tp_metrics_text_free(&body);
}

/* Answers one well-formed head. Returns true if the connection goes on. */
static bool answer(struct tp_call *call, const char *data, const struct tp_http_req *r,
                   struct tp_metrics_text *out)
{
    bool head = r->method == TP_HTTP_HEAD, close = !r->keep_alive;

    if (r->method == TP_HTTP_OTHER || r->has_transfer_encoding) {
        simple(out, 501, head, true, "501 Not Implemented\n");
        return false;
    }
    if (r->has_content_length && r->content_length > 0) {
        simple(out, 413, head, true, "413 Content Too Large\n");
        return false;
    }
    if (r->method != TP_HTTP_GET && r->method != TP_HTTP_HEAD) {
        simple(out, 405, head, true, "405 Method Not Allowed\n");
        return false;
    }
    if (is_path(data, &r->target, "/metrics")) {
        exposition(call, out, head, close);
    } else if (is_path(data, &r->target, "/health")) {
        if (tp_metrics_is_draining(tp_call_metrics(call)))
            simple(out, 503, head, close, "draining\n");
        else
            simple(out, 200, head, close, "ok\n");
    } else {
        simple(out, 404, head, close, "404 Not Found\n");
    }
    return !close;
}

/* Hands the replies back: in the batch's own buffer if they fit. */
static int finish(struct tp_call *call, char *data, struct tp_metrics_text *out, bool close)
{
    int r = close ? TP_APP_CLOSE : TP_APP_DONE;

    if (out->failed) {
        r = TP_APP_CLOSE;
    } else if (out->len <= tp_call_room(call)) {
        memcpy(data, out->data, out->len);
        tp_call_keep(call, out->len);
    } else if (tp_call_reply(call, out->data, out->len) < 0) {
        r = TP_APP_CLOSE;
    }
    tp_metrics_text_free(out);
    return r;
}

static int metrics_batch(struct tp_call *call, char *data, size_t len)
{
    struct tp_metrics_text out = { 0 };
    struct tp_http_parser p;
    size_t pos = 0;
    ssize_t n;

    while (pos < len) {
        /* Empty lines before a head (RFC 9112 section 2.2). */
        if (data[pos] == '\n' || (data[pos] == '\r' && pos + 1 < len && data[pos + 1] == '\n')) {
            pos += data[pos] == '\n' ? 1 : 2;
            continue;
        }
        tp_http_parser_init(&p);
        n = tp_http_parse(&p, data + pos, len - pos, len - pos);
        if (n <= 0) {
            /* n == 0 cannot happen (the framing cuts whole heads). */
            char body[64];

            snprintf(body, sizeof(body), "%u %s\n", n < 0 ? p.status : 400u,
                     tp_http_reason(n < 0 ? p.status : 400u));
            simple(&out, n < 0 ? p.status : 400u, p.req.method == TP_HTTP_HEAD, true, body);
            return finish(call, data, &out, true);
        }
        if (!answer(call, data + pos, &p.req, &out))
            return finish(call, data, &out, true);
        pos += (size_t)n;
    }
    return finish(call, data, &out, false);
}

const struct tp_app tp_app_metrics = {
    .name = "metrics",
    .framings = 1u << TP_FRAMING_HTTP,
    .batch = metrics_batch,
    .serves_drain = true,
};
