/* tp_http.h - an HTTP/1.1 request head parser (RFC 9112), incremental.
 *
 * The caller keeps the head's bytes contiguous while they arrive and calls
 * tp_http_parse() again with the same bytes and more; the parser picks up at
 * the first line it has not read, so a head read one byte at a time costs
 * what it costs whole, and the answer never depends on where reads cut it.
 * The result points into the caller's buffer (no copies, no allocation).
 *
 * It parses and checks the head only: what to answer is the caller's (app
 * http, app metrics), as is reading a body (Content-Length, chunked). */
#ifndef TP_HTTP_H
#define TP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The methods of RFC 9110 section 9 and PATCH (RFC 5789); any other token is
 * TP_HTTP_OTHER (a method the server does not know: 501 in RFC 9110). */
enum tp_http_method {
    TP_HTTP_OTHER, TP_HTTP_GET, TP_HTTP_HEAD, TP_HTTP_POST, TP_HTTP_PUT,
    TP_HTTP_DELETE, TP_HTTP_CONNECT, TP_HTTP_OPTIONS, TP_HTTP_TRACE, TP_HTTP_PATCH,
};

/* A span of the caller's buffer: bytes [off, off + len) from its start. */
struct tp_http_span {
    uint32_t off;
    uint32_t len;
};

/* A request head, filled in as its lines are parsed. */
struct tp_http_req {
    enum tp_http_method method;
    struct tp_http_span method_text; /* the method as sent */
    struct tp_http_span target;      /* request-target, e.g. "/health" */
    uint8_t major, minor;            /* HTTP/major.minor */
    bool keep_alive;                 /* the connection may serve another request
                                        after this one: HTTP/1.1 unless
                                        "Connection: close", HTTP/1.0 only
                                        with "Connection: keep-alive" */
    bool has_content_length;
    bool has_transfer_encoding;      /* then it ends in chunked (checked) */
    uint64_t content_length;         /* valid if has_content_length */
    bool has_host;
    struct tp_http_span host;        /* the Host field's value */
    uint32_t nfields;                /* header fields */
};

struct tp_http_parser {
    uint32_t pos;                    /* bytes read: the start of the next line */
    uint8_t state;                   /* internal */
    uint8_t conn;                    /* internal: Connection tokens seen */
    uint8_t te;                      /* internal: transfer codings seen */
    uint16_t status;                 /* after an error: the status to answer */
    const char *why;                 /* after an error: a short reason, for logs */
    struct tp_http_req req;
};

/* Starts a new head: call before the first tp_http_parse() of each request. */
void tp_http_parser_init(struct tp_http_parser *p);

/* Parses buf[0..len), the bytes of the head so far (the same bytes as at the
 * last call, and maybe more), reading at most max bytes: a head longer than
 * max is an error. Returns the head's length in bytes once it is complete
 * (through its empty line; empty lines before the request line, which RFC
 * 9112 section 2.2 lets a server skip, count), 0 if more bytes are needed,
 * or -1 on an error, with p->status the status to answer and p->why why:
 *   400  malformed request line or field (bad token, space before ':',
 *        obs-fold, a bare CR, control bytes, invalid or duplicate
 *        Content-Length, Content-Length with Transfer-Encoding, a transfer
 *        coding list not ending in chunked, Transfer-Encoding in HTTP/1.0,
 *        HTTP/1.1 without Host or with two)
 *   414  the request line alone is longer than max
 *   431  the head is longer than max
 *   501  a transfer coding other than chunked
 *   505  an HTTP major version other than 1
 * Lines end in CRLF or a bare LF. Once it returned non-zero, calling again
 * returns the same. Any thread; the parser holds no pointer into buf. */
ssize_t tp_http_parse(struct tp_http_parser *p, const char *buf, size_t len, size_t max);

/* The reason phrase of a status this library answers ("Bad Request"), or
 * "Unknown". */
const char *tp_http_reason(unsigned status);

/* Now as the IMF-fixdate of RFC 9110 section 5.6.7, for the Date field
 * ("Sun, 06 Nov 1994 08:49:37 GMT", 29 bytes). Valid on this thread until
 * its next call. Any thread. */
const char *tp_http_date(void);

#endif /* TP_HTTP_H */
