/* The HTTP request head parser: results, every error with its status, and
 * the same answer whatever the cut (every split point, byte at a time, input
 * ending at a guard page). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tp_frame.h"
#include "tp_http.h"

#define MAX 1024

/* n bytes copied so they end exactly at a PROT_NONE page. */
struct guarded {
    void *map;
    size_t maplen;
    char *p;
};

static void guard(struct guarded *g, const char *src, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = (n + page - 1) / page + 1;
    char *base;

    g->maplen = (pages + 1) * page;
    base = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(base, MAP_FAILED);
    cr_assert_eq(mprotect(base + pages * page, page, PROT_NONE), 0);
    g->map = base;
    g->p = base + pages * page - n;
    memcpy(g->p, src, n);
}

static void unguard(struct guarded *g)
{
    munmap(g->map, g->maplen);
}

/* Everything a parse tells, for comparing two parses. */
struct outcome {
    ssize_t n;
    unsigned status;
    struct tp_http_req req;
};

static struct outcome outcome_of(const struct tp_http_parser *p, ssize_t n)
{
    struct outcome o = { .n = n, .status = n < 0 ? p->status : 0 };

    if (n > 0)
        o.req = p->req;
    return o;
}

static bool span_eq(struct tp_http_span a, struct tp_http_span b)
{
    return a.off == b.off && a.len == b.len;
}

/* Field by field: padding is not compared. */
static bool req_eq(const struct tp_http_req *a, const struct tp_http_req *b)
{
    return a->method == b->method && span_eq(a->method_text, b->method_text) &&
           span_eq(a->target, b->target) && a->major == b->major && a->minor == b->minor &&
           a->keep_alive == b->keep_alive && a->has_content_length == b->has_content_length &&
           a->has_transfer_encoding == b->has_transfer_encoding &&
           a->content_length == b->content_length && a->has_host == b->has_host &&
           span_eq(a->host, b->host) && a->nfields == b->nfields;
}

static void expect_same(const struct outcome *a, const struct outcome *b, const char *how,
                        size_t at)
{
    cr_assert_eq(a->n, b->n, "%s %zu: returned %zd, whole %zd", how, at, a->n, b->n);
    cr_assert_eq(a->status, b->status, "%s %zu: status %u, whole %u", how, at, a->status,
                 b->status);
    cr_assert(req_eq(&a->req, &b->req), "%s %zu: request differs", how, at);
}

static struct outcome parse_whole(const char *in, size_t n, size_t max)
{
    struct tp_http_parser p;
    struct guarded g;
    ssize_t r;

    guard(&g, in, n);
    tp_http_parser_init(&p);
    r = tp_http_parse(&p, g.p, n, max);
    unguard(&g);
    return outcome_of(&p, r);
}

/* in cut at every byte: the first part, then all of it, gives what all of
 * it gives at once; so does feeding it a byte at a time. */
static struct outcome check_splits(const char *in, size_t n, size_t max)
{
    struct outcome whole = parse_whole(in, n, max), o;
    struct tp_http_parser p;
    struct guarded g;
    size_t split, i;
    ssize_t r;

    for (split = 0; split <= n; split++) {
        tp_http_parser_init(&p);
        guard(&g, in, split);
        r = tp_http_parse(&p, g.p, split, max);
        unguard(&g);
        /* A prefix may only say "more" or what the whole says. */
        if (r != 0) {
            o = outcome_of(&p, r);
            expect_same(&o, &whole, "prefix", split);
        }
        guard(&g, in, n);
        r = tp_http_parse(&p, g.p, n, max);
        unguard(&g);
        o = outcome_of(&p, r);
        expect_same(&o, &whole, "split at", split);
    }
    tp_http_parser_init(&p);
    for (i = 0, r = 0; i <= n; i++) {
        guard(&g, in, i);
        r = tp_http_parse(&p, g.p, i, max);
        unguard(&g);
    }
    o = outcome_of(&p, r);
    expect_same(&o, &whole, "byte at a time, length", n);
    return whole;
}

static struct outcome check(const char *in, size_t max)
{
    return check_splits(in, strlen(in), max);
}

/* Expects in to be rejected with status, at every split. */
static void expect_status(const char *in, unsigned status)
{
    struct outcome o = check(in, MAX);

    cr_expect_eq(o.n, -1, "accepted: \"%s\"", in);
    cr_expect_eq(o.status, status, "\"%s\": status %u, want %u", in, o.status, status);
}

static bool span_is(const char *in, struct tp_http_span s, const char *want)
{
    return s.len == strlen(want) && memcmp(in + s.off, want, s.len) == 0;
}

Test(http, simple_get_with_crlf)
{
    const char *in = "GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
    struct outcome o = check(in, MAX);

    cr_assert_eq(o.n, (ssize_t)strlen(in));
    cr_expect_eq(o.req.method, TP_HTTP_GET);
    cr_expect(span_is(in, o.req.method_text, "GET"));
    cr_expect(span_is(in, o.req.target, "/index.html"));
    cr_expect(span_is(in, o.req.host, "example.com"));
    cr_expect_eq(o.req.major, 1);
    cr_expect_eq(o.req.minor, 1);
    cr_expect(o.req.keep_alive);
    cr_expect(!o.req.has_content_length);
    cr_expect(!o.req.has_transfer_encoding);
    cr_expect_eq(o.req.nfields, 2);
}

Test(http, bare_lf_lines_are_accepted)
{
    const char *in = "GET / HTTP/1.0\n\n";
    struct outcome o = check(in, MAX);

    cr_assert_eq(o.n, 16);
    cr_expect_eq(o.req.minor, 0);
    cr_expect(!o.req.keep_alive);
    o = check("HEAD /x HTTP/1.1\nHost: h\r\n\n", MAX);   /* mixed */
    cr_assert_eq(o.n, 27);
    cr_expect_eq(o.req.method, TP_HTTP_HEAD);
}

Test(http, only_the_head_is_read)
{
    const char *in = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n";
    struct outcome o = check(in, MAX);

    cr_expect_eq(o.n, (ssize_t)strlen("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
}

Test(http, empty_lines_before_the_request_are_skipped)
{
    const char *in = "\r\n\n\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n";
    struct outcome o = check(in, MAX);

    cr_assert_eq(o.n, (ssize_t)strlen(in));
    cr_expect(span_is(in, o.req.target, "/a"));
    o = check("\r\n\r\n", MAX);
    cr_expect_eq(o.n, 0);
}

Test(http, keep_alive_follows_version_and_connection)
{
    struct { const char *in; bool keep; } cases[] = {
        { "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", false },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nConnection: close\r\n\r\n", false },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true },
        { "GET / HTTP/1.0\r\n\r\n", false },
        { "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true },
        { "GET / HTTP/1.0\r\nconnection:  ,keep-alive ,\r\n\r\n", true },
        { "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false },
        { "GET / HTTP/1.9\r\nHost: a\r\n\r\n", true },    /* a later 1.x is 1.1 */
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct outcome o = check(cases[i].in, MAX);

        cr_assert_gt(o.n, 0, "%s", cases[i].in);
        cr_expect_eq(o.req.keep_alive, cases[i].keep, "%s", cases[i].in);
    }
}

Test(http, body_fields_are_reported)
{
    struct outcome o = check("POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n", MAX);

    cr_assert_gt(o.n, 0);
    cr_expect_eq(o.req.method, TP_HTTP_POST);
    cr_expect(o.req.has_content_length);
    cr_expect_eq(o.req.content_length, 42);
    o = check("PUT /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", MAX);
    cr_assert_gt(o.n, 0);
    cr_expect(o.req.has_transfer_encoding);
    cr_expect(!o.req.has_content_length);
    o = check("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", MAX);
    cr_assert_gt(o.n, 0);
    cr_expect(o.req.has_content_length);
    cr_expect_eq(o.req.content_length, 0);
}

Test(http, methods)
{
    static const struct { const char *name; enum tp_http_method m; } ms[] = {
        { "GET", TP_HTTP_GET }, { "HEAD", TP_HTTP_HEAD }, { "POST", TP_HTTP_POST },
        { "PUT", TP_HTTP_PUT }, { "DELETE", TP_HTTP_DELETE }, { "CONNECT", TP_HTTP_CONNECT },
        { "OPTIONS", TP_HTTP_OPTIONS }, { "TRACE", TP_HTTP_TRACE }, { "PATCH", TP_HTTP_PATCH },
        { "get", TP_HTTP_OTHER }, { "BREW", TP_HTTP_OTHER }, { "GETS", TP_HTTP_OTHER },
    };
    char in[128];
    size_t i;

    for (i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        struct outcome o;

        snprintf(in, sizeof(in), "%s * HTTP/1.1\r\nHost: a\r\n\r\n", ms[i].name);
        o = check(in, MAX);
        cr_assert_gt(o.n, 0, "%s", in);
        cr_expect_eq(o.req.method, ms[i].m, "%s", in);
        cr_expect(span_is(in, o.req.method_text, ms[i].name));
    }
}

Test(http, field_values_are_trimmed_and_may_hold_obs_text)
{
    const char *in = "GET / HTTP/1.1\r\nHost: \t h.example \t\r\nX: caf\xc3\xa9\r\nY:\r\n\r\n";
    struct outcome o = check(in, MAX);

    cr_assert_gt(o.n, 0);
    cr_expect(span_is(in, o.req.host, "h.example"));
    cr_expect_eq(o.req.nfields, 3);
}

Test(http, malformed_request_line_is_400)
{
    expect_status("GET\r\n\r\n", 400);
    expect_status("GET /\r\n\r\n", 400);                     /* HTTP/0.9 */
    expect_status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);  /* two spaces */
    expect_status("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
    expect_status(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    expect_status("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);   /* not a token */
    expect_status("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    expect_status("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    expect_status("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    expect_status("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
    expect_status("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400);
    expect_status("GET / HTTP/1\r\nHost: a\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\rHost: a\r\n\r\n", 400);     /* bare CR */
    expect_status("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    expect_status("\x16\x03\x01\x02\x05\x01\xfc\x03\x03\n\n", 400);  /* TLS */
}

/* Expects in to be rejected with 400 for the reason named by why. */
static void expect_why(const char *in, const char *why)
{
    struct tp_http_parser p;

    tp_http_parser_init(&p);
    cr_assert_eq(tp_http_parse(&p, in, strlen(in), MAX), -1, "accepted: \"%s\"", in);
    cr_expect_eq(p.status, 400);
    cr_expect(strstr(p.why, why) != NULL, "\"%s\": why \"%s\", want \"%s\"", in, p.why, why);
}

Test(http, malformed_fields_are_400)
{
    expect_why("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  2\r\n\r\n", "obs-fold");
    expect_why("GET / HTTP/1.1\r\nHost : a\r\n\r\n", "whitespace between field name and colon");
    expect_why("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", "bare CR");
    expect_status("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);    /* space before ':' */
    expect_status("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n  folded\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\n: empty name\r\nHost: a\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nNo colon\r\nHost: a\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nB(d: x\r\nHost: a\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400);  /* bare CR */
    expect_status("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400);
}

Test(http, nul_and_control_bytes_in_fields_are_400)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
    struct outcome o = check_splits(in, sizeof(in) - 1, MAX);

    cr_expect_eq(o.n, -1);
    cr_expect_eq(o.status, 400);
    expect_status("GET / HTTP/1.1\r\nHost: a\x1b[0m\r\n\r\n", 400);
}

Test(http, host_is_required_once_in_1_1)
{
    expect_status("GET / HTTP/1.1\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\n\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
    cr_expect_gt(check("GET / HTTP/1.0\r\n\r\n", MAX).n, 0);
    cr_expect_gt(check("GET / HTTP/1.1\r\nHost:\r\n\r\n", MAX).n, 0);  /* empty is allowed */
}

Test(http, content_length_must_be_one_number)
{
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400);
    cr_expect_eq(check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  007 \r\n\r\n", MAX)
                 .req.content_length, 7);
}

Test(http, transfer_encoding_rules)
{
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                  "Content-Length: 5\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
    expect_status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n", 501);
    cr_expect_gt(check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked \r\n\r\n",
                       MAX).n, 0);
}

Test(http, unsupported_major_version_is_505)
{
    expect_status("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    expect_status("GET / HTTP/0.9\r\n\r\n", 505);
    expect_status("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);   /* the h2 preface */
}

Test(http, head_longer_than_max_is_431_or_414)
{
    char in[256];
    struct outcome o;
    size_t n;

    snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: a\r\nX: %0100d\r\n\r\n", 0);
    n = strlen(in);
    o = check_splits(in, n, n);                       /* exactly max: fine */
    cr_expect_eq(o.n, (ssize_t)n);
    o = check_splits(in, n, n - 1);                   /* one byte over */
    cr_expect_eq(o.n, -1);
    cr_expect_eq(o.status, 431);
    o = check_splits(in, 30, 29);                     /* still coming: known too long */
    cr_expect_eq(o.status, 431);
    o = check_splits(in, 10, 10);
    cr_expect_eq(o.n, 0);                             /* not yet over */
    o = check_splits(in, 11, 10);                     /* in the request line */
    cr_expect_eq(o.status, 414);
    /* An error in a line past max is not looked at: over max is what counts. */
    o = check_splits("GET / HTTP/1.1\r\nHost: a\r\nBad Field\r\n\r\n", 38, 30);
    cr_expect_eq(o.status, 431);
}

Test(http, a_parser_keeps_its_answer)
{
    const char *in = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\r\n";
    struct tp_http_parser p;

    tp_http_parser_init(&p);
    cr_assert_eq(tp_http_parse(&p, in, strlen(in), MAX), 27);
    cr_assert_eq(tp_http_parse(&p, in, strlen(in), MAX), 27);
    tp_http_parser_init(&p);
    cr_assert_eq(tp_http_parse(&p, "BAD\r\n", 5, MAX), -1);
    cr_assert_eq(tp_http_parse(&p, in, strlen(in), MAX), -1);
    cr_expect_eq(p.status, 400);
    cr_expect_not_null(p.why);
}

Test(http, reasons)
{
    cr_expect_str_eq(tp_http_reason(200), "OK");
    cr_expect_str_eq(tp_http_reason(431), "Request Header Fields Too Large");
    cr_expect_str_eq(tp_http_reason(505), "HTTP Version Not Supported");
    cr_expect_str_eq(tp_http_reason(299), "Unknown");
}

/* The reactor's framing http cuts each head where the parser ends it, or,
 * over max, at max + 1; an empty line before a head is a message of its own,
 * which app http skips. So app http always parses exactly one message. */
static void expect_framing_agrees(const char *in, size_t n, uint32_t max)
{
    struct tp_http_parser p;
    struct tp_frame fr;
    size_t pos = 0, blank = 0;
    ssize_t cut, got;

    while (pos + blank < n) {
        cut = tp_frame_next(TP_FRAMING_HTTP, in + pos + blank, n - pos - blank, max, &fr);
        if (cut > 0 && (fr.len == 1 || fr.len == 2) && in[pos + blank + fr.len - 1] == '\n' &&
            (fr.len == 1 || in[pos + blank] == '\r')) {
            blank += (size_t)cut;          /* an empty line: app http skips it */
            continue;
        }
        pos += blank;
        blank = 0;
        tp_http_parser_init(&p);
        got = tp_http_parse(&p, in + pos, n - pos, max);
        if (got > 0) {
            cr_assert_eq(cut, got, "at %zu: framing cut %zd, parser %zd", pos, cut, got);
        } else if (got == 0) {
            cr_assert_eq(cut, 0, "at %zu: framing cut %zd, parser needs more", pos, cut);
            return;
        } else if (p.status == 431 || p.status == 414) {
            cr_assert_eq(cut, (ssize_t)max + 1, "at %zu: over max, cut %zd", pos, cut);
            return;
        } else {
            return;        /* a bad head: the app answers and closes at it */
        }
        pos += (size_t)got;
    }
}

Test(http, framing_http_cuts_where_the_parser_ends)
{
    static const char *const ins[] = {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\nHost: a\n\n",
        "\r\n\nGET / HTTP/1.0\n\n\r\nHEAD / HTTP/1.0\r\nX: y\r\n\r\nGET",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \r\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789012345678901234567890123456789\r\n\r\n",
        "GET /0123456789012345678901234567890123456789012345678901234567 HTTP/1.1\r\n",
        "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\r",
    };
    size_t i;

    for (i = 0; i < sizeof(ins) / sizeof(ins[0]); i++) {
        expect_framing_agrees(ins[i], strlen(ins[i]), 1000);
        expect_framing_agrees(ins[i], strlen(ins[i]), 40);
    }
}
