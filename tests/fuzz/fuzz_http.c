/* fuzz_http.c - libFuzzer harness for the HTTP request head parser
 * (apps/tp_http.c) and framing http (reactor/tp_frame.c).
 *
 * Input: byte 0 picks max (the head limit: small ones reach 414/431 often),
 * bytes 1-2 a split point, the rest is what a client sent. It checks:
 *   - the head parsed whole and parsed cut at the split point (the first
 *     part, then all of it) give the same answer, and a part never answers
 *     anything but "more" or that answer;
 *   - what a complete head reports lies inside it;
 *   - framing http cuts each head where the parser ends it, and its cursor,
 *     resumed after the split, cuts where a search from scratch does.
 * Any disagreement traps. Each part is copied into a buffer of exactly its
 * size, so ASan catches a read past it. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tp_frame.h"
#include "tp_http.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool span_ok(struct tp_http_span s, ssize_t n)
{
    return (ssize_t)s.off + (ssize_t)s.len <= n;
}

static bool same(const struct tp_http_parser *a, ssize_t ra, const struct tp_http_parser *b,
                 ssize_t rb)
{
    const struct tp_http_req *x = &a->req, *y = &b->req;

    if (ra != rb)
        return false;
    if (ra < 0)
        return a->status == b->status;
    if (ra == 0)
        return true;
    return x->method == y->method && x->method_text.off == y->method_text.off &&
           x->method_text.len == y->method_text.len && x->target.off == y->target.off &&
           x->target.len == y->target.len && x->major == y->major && x->minor == y->minor &&
           x->keep_alive == y->keep_alive && x->has_content_length == y->has_content_length &&
           x->content_length == y->content_length &&
           x->has_transfer_encoding == y->has_transfer_encoding &&
           x->has_host == y->has_host && x->host.off == y->host.off &&
           x->host.len == y->host.len && x->nfields == y->nfields;
}

static ssize_t parse_copy(struct tp_http_parser *p, const char *in, size_t n, size_t max)
{
    char *buf = malloc(n ? n : 1);
    ssize_t r;

    CHECK(buf != NULL);
    memcpy(buf, in, n);
    r = tp_http_parse(p, buf, n, max);
    free(buf);
    return r;
}

static void check_split(const char *in, size_t n, size_t split, size_t max)
{
    struct tp_http_parser whole, cut;
    ssize_t rw, rc;

    tp_http_parser_init(&whole);
    rw = parse_copy(&whole, in, n, max);
    CHECK(rw >= -1 && rw <= (ssize_t)n && (rw <= 0 || (size_t)rw <= max));
    if (rw < 0)
        CHECK(whole.status == 400 || whole.status == 414 || whole.status == 431 ||
              whole.status == 501 || whole.status == 505);
    if (rw > 0)
        CHECK(span_ok(whole.req.method_text, rw) && span_ok(whole.req.target, rw) &&
              span_ok(whole.req.host, rw) && whole.req.major == 1 &&
              whole.req.method_text.len > 0 && whole.req.target.len > 0);
    tp_http_parser_init(&cut);
    rc = parse_copy(&cut, in, split, max);
    CHECK(rc == 0 || same(&cut, rc, &whole, rw));
    rc = parse_copy(&cut, in, n, max);
    CHECK(same(&cut, rc, &whole, rw));
}

static bool is_blank(const char *p, size_t n)
{
    return (n == 1 && p[0] == '\n') || (n == 2 && p[0] == '\r' && p[1] == '\n');
}

/* Walks the heads as framing http cuts them and as the parser ends them. */
static void check_framing(const char *in, size_t n, uint32_t max)
{
    struct tp_http_parser p;
    struct tp_frame fr;
    size_t pos = 0, blank = 0;
    ssize_t cut, got;

    while (pos + blank < n) {
        cut = tp_frame_next(TP_FRAMING_HTTP, in + pos + blank, n - pos - blank, max, &fr);
        CHECK(cut >= 0 && (size_t)cut <= n - pos - blank);
        if (cut > 0 && is_blank(in + pos + blank, (size_t)cut)) {
            blank += (size_t)cut;
            continue;
        }
        /* As app http does: empty lines skipped, the head parsed. */
        pos += blank;
        blank = 0;
        tp_http_parser_init(&p);
        got = tp_http_parse(&p, in + pos, n - pos, max);
        if (got > 0) {
            CHECK(cut == got);
        } else if (got == 0) {
            CHECK(cut == 0);
            return;
        } else {
            if (p.status == 414 || p.status == 431)
                CHECK(cut == (ssize_t)max + 1);
            return;
        }
        pos += (size_t)got;
    }
}

/* The reactor's cursor: advanced over a part, then over everything, it cuts
 * where one advance over everything does. */
static void check_cursor(const char *in, size_t n, size_t split, uint32_t max)
{
    struct tp_frame_cursor resumed = { 0, 0 }, fresh = { 0, 0 };
    char *buf = malloc(n ? n : 1);

    CHECK(buf != NULL);
    memcpy(buf, in, n);
    CHECK(tp_frame_advance(TP_FRAMING_HTTP, buf, split, max, &resumed) == 0);
    CHECK(tp_frame_advance(TP_FRAMING_HTTP, buf, n, max, &resumed) == 0);
    CHECK(tp_frame_advance(TP_FRAMING_HTTP, buf, n, max, &fresh) == 0);
    CHECK(resumed.cut == fresh.cut);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data + 3;
    size_t n, split;
    uint32_t max;

    if (size < 3)
        return 0;
    n = size - 3;
    max = data[0] & 0x80 ? 65536 : 8u + data[0] * 4u;
    split = ((size_t)data[1] << 8 | data[2]) % (n + 1);
    check_split(in, n, split, max);
    check_framing(in, n, max);
    check_cursor(in, n, split, max);
    return 0;
}
