/* tp_http.c - the HTTP/1.1 request head parser: one complete line at a time.
 *
 * A line is read only once it is whole (its '\n' is within the bytes given
 * and within max), so an answer depends only on the bytes, never on where
 * they were cut: the split tests and the fuzz harness hold it to that. */
#include "tp_http.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

enum { ST_START, ST_FIELDS, ST_DONE, ST_ERROR };

enum { CONN_CLOSE = 1, CONN_KEEP_ALIVE = 2 };

/* Transfer-Encoding as it is read: the codings listed, over every field. */
enum { TE_LAST_CHUNKED = 1, TE_CHUNKED_TWICE = 2, TE_OTHER = 4, TE_SEEN_CHUNKED = 8 };

#define MAX_CONTENT_LENGTH_DIGITS 18   /* < 2^63, whatever it is compared with */

/* tchar of RFC 9110 section 5.6.2: the bytes of a token. */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,
    ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
    ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static bool is_tchar(unsigned char c) { return tchar[c] != 0; }
static bool is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

/* field-vchar, SP and HTAB: what a field value may hold (obs-text too). */
static bool is_value_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static ssize_t fail(struct tp_http_parser *p, unsigned status, const char *why)
{
    p->state = ST_ERROR;
    p->status = (uint16_t)status;
    p->why = why;
    return -1;
}

void tp_http_parser_init(struct tp_http_parser *p)
{
    memset(p, 0, sizeof(*p));
}

/* True if s[0..n) equals the lowercase word w, ignoring ASCII case. */
static bool same_word(const char *s, size_t n, const char *w)
{
    size_t i;

    if (strlen(w) != n)
        return false;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != (unsigned char)w[i])
            return false;
    }
    return true;
}

static enum tp_http_method method_of(const char *s, size_t n)
{
    static const char *const names[] = {
        [TP_HTTP_GET] = "GET", [TP_HTTP_HEAD] = "HEAD", [TP_HTTP_POST] = "POST",
        [TP_HTTP_PUT] = "PUT", [TP_HTTP_DELETE] = "DELETE", [TP_HTTP_CONNECT] = "CONNECT",
        [TP_HTTP_OPTIONS] = "OPTIONS", [TP_HTTP_TRACE] = "TRACE", [TP_HTTP_PATCH] = "PATCH",
    };
    size_t i;

    for (i = 1; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0)
            return (enum tp_http_method)i;
    return TP_HTTP_OTHER;
}

/* request-line = method SP request-target SP HTTP-version, in s[a..b). */
static ssize_t request_line(struct tp_http_parser *p, const char *s, uint32_t a, uint32_t b)
{
    struct tp_http_req *r = &p->req;
    uint32_t i = a, t;

    while (i < b && is_tchar((unsigned char)s[i]))
        i++;
    if (i == a || i == b || s[i] != ' ')
        return fail(p, 400, "malformed method");
    r->method_text = (struct tp_http_span){ a, i - a };
    r->method = method_of(s + a, i - a);
    t = ++i;
    while (i < b && (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f)
        i++;
    if (i == t || i == b || s[i] != ' ')
        return fail(p, 400, "malformed request-target");
    r->target = (struct tp_http_span){ t, i - t };
    i++;
    if (b - i != 8 || memcmp(s + i, "HTTP/", 5) != 0 || s[i + 6] != '.' ||
        s[i + 5] < '0' || s[i + 5] > '9' || s[i + 7] < '0' || s[i + 7] > '9')
        return fail(p, 400, "malformed HTTP-version");
    r->major = (uint8_t)(s[i + 5] - '0');
    r->minor = (uint8_t)(s[i + 7] - '0');
    if (r->major != 1)
        return fail(p, 505, "HTTP major version not 1");
    return 0;
}

static ssize_t content_length(struct tp_http_parser *p, const char *v, uint32_t n)
{
    uint64_t x = 0;
    uint32_t i;

    if (p->req.has_content_length)
        return fail(p, 400, "duplicate Content-Length");
    if (n == 0 || n > MAX_CONTENT_LENGTH_DIGITS)
        return fail(p, 400, "invalid Content-Length");
    for (i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return fail(p, 400, "invalid Content-Length");
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    p->req.has_content_length = true;
    p->req.content_length = x;
    return 0;
}

/* Calls each(p, element) for the non-empty elements of a comma-separated
 * list (RFC 9110 section 5.6.1), OWS trimmed. */
static void list_each(struct tp_http_parser *p, const char *v, uint32_t n,
                      void (*each)(struct tp_http_parser *, const char *, uint32_t))
{
    uint32_t i = 0, a, e;

    while (i < n) {
        while (i < n && (is_ows((unsigned char)v[i]) || v[i] == ','))
            i++;
        a = i;
        while (i < n && v[i] != ',')
            i++;
        e = i;
        while (e > a && is_ows((unsigned char)v[e - 1]))
            e--;
        if (e > a)
            each(p, v + a, e - a);
    }
}

static void connection_token(struct tp_http_parser *p, const char *s, uint32_t n)
{
    if (same_word(s, n, "close"))
        p->conn |= CONN_CLOSE;
    else if (same_word(s, n, "keep-alive"))
        p->conn |= CONN_KEEP_ALIVE;
}

/* One transfer-coding: a token, maybe with parameters after ';'. Anything
 * else counts as a coding we do not know; where it is last, the list does
 * not end in chunked, which is a 400 when the head ends. */
static void transfer_coding(struct tp_http_parser *p, const char *s, uint32_t n)
{
    uint32_t i = 0;

    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == n && same_word(s, n, "chunked")) {
        if (p->te & TE_SEEN_CHUNKED)
            p->te |= TE_CHUNKED_TWICE;
        p->te |= TE_SEEN_CHUNKED | TE_LAST_CHUNKED;
        return;
    }
    p->te |= TE_OTHER;
    p->te &= (uint8_t)~TE_LAST_CHUNKED;
}

/* name ":" OWS value OWS, in s[a..b), a not at a space. */
static ssize_t field_line(struct tp_http_parser *p, const char *s, uint32_t a, uint32_t b)
{
    struct tp_http_req *r = &p->req;
    uint32_t i = a, v, e;
    const char *name = s + a;
    size_t nlen;

    while (i < b && is_tchar((unsigned char)s[i]))
        i++;
    if (i < b && is_ows((unsigned char)s[i]))
        return fail(p, 400, "whitespace between field name and colon");
    if (i == a || i == b || s[i] != ':')
        return fail(p, 400, "malformed field name");
    nlen = i - a;
    for (v = ++i; i < b; i++)
        if (!is_value_byte((unsigned char)s[i]))
            return fail(p, 400, s[i] == '\r' ? "bare CR" : "control byte in field value");
    while (v < b && is_ows((unsigned char)s[v]))
        v++;
    for (e = b; e > v && is_ows((unsigned char)s[e - 1]); e--)
        ;
    r->nfields++;
    if (same_word(name, nlen, "content-length"))
        return content_length(p, s + v, e - v);
    if (same_word(name, nlen, "transfer-encoding")) {
        if (r->minor == 0)
            return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
        r->has_transfer_encoding = true;
        list_each(p, s + v, e - v, transfer_coding);
    } else if (same_word(name, nlen, "connection")) {
        list_each(p, s + v, e - v, connection_token);
    } else if (same_word(name, nlen, "host")) {
        if (r->has_host)
            return fail(p, 400, "more than one Host");
        r->has_host = true;
        r->host = (struct tp_http_span){ v, e - v };
    }
    return 0;
}

/* The empty line: checks what needs the whole head, then decides
 * keep-alive. */
static ssize_t head_done(struct tp_http_parser *p)
{
    struct tp_http_req *r = &p->req;
    unsigned te = p->te;

    if (r->minor > 0 && !r->has_host)
        return fail(p, 400, "HTTP/1.1 request without Host");
    if (r->has_transfer_encoding) {
        if (r->has_content_length)
            return fail(p, 400, "both Content-Length and Transfer-Encoding");
        if (!(te & TE_LAST_CHUNKED) || (te & TE_CHUNKED_TWICE))
            return fail(p, 400, "transfer codings not ending in one chunked");
        if (te & TE_OTHER)
            return fail(p, 501, "transfer coding not implemented");
    }
    if (r->minor > 0)
        r->keep_alive = !(p->conn & CONN_CLOSE);
    else
        r->keep_alive = (p->conn & CONN_KEEP_ALIVE) && !(p->conn & CONN_CLOSE);
    p->state = ST_DONE;
    return (ssize_t)p->pos;
}

/* One whole line, s[a..nl) with nl at its '\n'. */
static ssize_t line(struct tp_http_parser *p, const char *s, uint32_t a, uint32_t nl)
{
    uint32_t b = nl > a && s[nl - 1] == '\r' ? nl - 1 : nl;

    p->pos = nl + 1;
    if (p->state == ST_START) {
        if (b == a)
            return 0;                  /* an empty line before the request */
        p->state = ST_FIELDS;
        return request_line(p, s, a, b);
    }
    if (b == a)
        return head_done(p);
    if (is_ows((unsigned char)s[a]))
        return fail(p, 400, "obs-fold (a line starting with whitespace)");
    return field_line(p, s, a, b);
}

ssize_t tp_http_parse(struct tp_http_parser *p, const char *buf, size_t len, size_t max)
{
    uint32_t lim;
    const char *nl;
    ssize_t r;

    if (p->state == ST_DONE)
        return (ssize_t)p->pos;
    if (p->state == ST_ERROR)
        return -1;
    if (max > UINT32_MAX - 1)
        max = UINT32_MAX - 1;
    lim = (uint32_t)(len < max ? len : max);
    while (p->pos < lim) {
        nl = memchr(buf + p->pos, '\n', lim - p->pos);
        if (nl == NULL)
            break;
        r = line(p, buf, p->pos, (uint32_t)(nl - buf));
        if (r != 0)
            return r;
    }
    if (len <= max)
        return 0;
    if (p->state == ST_START && lim > p->pos)
        return fail(p, 414, "request line longer than the limit");
    return fail(p, 431, "request head longer than the limit");
}

const char *tp_http_reason(unsigned status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    }
    return "Unknown";
}

/* Formatted once a second per thread (each worker and the reactor keep
 * their own: no lock). */
static _Thread_local struct { time_t sec; char text[64]; } date_cache = { -1, "" };

const char *tp_http_date(void)
{
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    time_t now = time(NULL);
    struct tm tm;

    if (now != date_cache.sec && gmtime_r(&now, &tm) != NULL) {
        snprintf(date_cache.text, sizeof(date_cache.text), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
                 (tm.tm_year + 1900) % 10000, tm.tm_hour, tm.tm_min, tm.tm_sec);
        date_cache.sec = now;
    }
    return date_cache.text;
}
