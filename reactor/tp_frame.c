/* tp_frame.c - message boundaries for line, length-prefixed and raw framing. */
#include "tp_frame.h"

#include <errno.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static uint32_t be32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;

    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static ssize_t next_line(const char *p, size_t n, size_t from, uint32_t max,
                         struct tp_frame *out)
{
    const char *nl = memchr(p + from, '\n', n - from);

    if (nl == NULL)
        return n > max ? -EMSGSIZE : 0;
    if ((size_t)(nl - p) > max)
        return -EMSGSIZE;
    out->off = 0;
    out->len = (size_t)(nl - p);
    return nl - p + 1;
}

static ssize_t next_length(const char *p, size_t n, uint32_t max, struct tp_frame *out)
{
    uint32_t len;

    if (n < 4)
        return 0;
    len = be32(p);
    if (len > max)
        return -EMSGSIZE;
    if (n - 4 < len)
        return 0;
    out->off = 4;
    out->len = len;
    return (ssize_t)len + 4;
}

/* HTTP: a request head ends at the first empty line after its first line;
 * an empty line before it is a message of its own (RFC 9112 section 2.2 lets
 * a server skip them; the app does). Lines end in '\n' or "\r\n". Only the
 * first max bytes are searched: a head with no end there is cut at max + 1
 * bytes, once they are in, for the app to answer 431 (a cut that does not
 * depend on how the bytes arrived). `from` is a
 * line start after the first line, where an earlier search stopped, or 0;
 * *resume gets where this one stopped when it needs more. */
static ssize_t next_http(const char *p, size_t n, size_t from, uint32_t max,
                         struct tp_frame *out, size_t *resume)
{
    size_t lim = n < max ? n : max, i = from;
    const char *nl;

    *resume = 0;
    if (n == 0 || (p[0] == '\r' && n == 1))
        return 0;
    out->off = 0;
    if (p[0] == '\n' || (p[0] == '\r' && p[1] == '\n'))
        return (ssize_t)(out->len = p[0] == '\n' ? 1 : 2);
    if (i == 0) {
        nl = memchr(p, '\n', lim);
        if (nl == NULL)
            goto more;                    /* the first line again next time */
        i = (size_t)(nl - p) + 1;
    }
    /* i is a line start after the first line. */
    while (i < lim) {
        if (p[i] == '\n' || (p[i] == '\r' && i + 1 < lim && p[i + 1] == '\n')) {
            out->len = i + (p[i] == '\n' ? 1 : 2);
            return (ssize_t)out->len;
        }
        nl = memchr(p + i, '\n', lim - i);
        if (nl == NULL)
            break;
        i = (size_t)(nl - p) + 1;
    }
    *resume = i;
more:
    if (n > max) {
        *resume = 0;
        return (ssize_t)(out->len = (size_t)max + 1);
    }
    return 0;
}

ssize_t tp_frame_next(enum tp_framing f, const char *p, size_t n, uint32_t max,
                      struct tp_frame *out)
{
    size_t resume;

    switch (f) {
    case TP_FRAMING_HTTP:
        return next_http(p, n, 0, max, out, &resume);
    case TP_FRAMING_LINE:
        return n == 0 ? 0 : next_line(p, n, 0, max, out);
    case TP_FRAMING_LENGTH:
        return next_length(p, n, max, out);
    case TP_FRAMING_RAW:
        /* Never too long: a raw stream is cut into max-sized pieces. */
        if (n == 0)
            return 0;
        out->off = 0;
        out->len = n < max ? n : max;
        return (ssize_t)out->len;
    }
    return -EINVAL;
}

/* Line framing: one memrchr finds the end of the last whole line in the new
 * bytes, so a read of a thousand short lines costs one scan, not a thousand.
 * Lines are checked one by one against max only where the run is long
 * enough to hold one longer than max. */
static int advance_lines(const char *p, size_t n, uint32_t max,
                         struct tp_frame_cursor *cur)
{
    size_t from = cur->cut + cur->scanned, end;
    const char *nl = n > from ? memrchr(p + from, '\n', n - from) : NULL;
    struct tp_frame fr;
    ssize_t used;

    if (nl != NULL) {
        end = (size_t)(nl - p) + 1;
        while (end - cur->cut > (size_t)max + 1) {      /* may hold a long line */
            used = next_line(p + cur->cut, end - cur->cut, cur->scanned, max, &fr);
            if (used < 0)
                return (int)used;
            cur->cut += (uint32_t)used;
            cur->scanned = 0;
        }
        cur->cut = (uint32_t)end;
    }
    cur->scanned = (uint32_t)(n - cur->cut);
    return n - cur->cut > max ? -EMSGSIZE : 0;
}

/* HTTP: a partial head is searched again from the line where the last
 * search stopped, so a head that arrives a byte at a time costs one pass. */
static int advance_http(const char *p, size_t n, uint32_t max, struct tp_frame_cursor *cur)
{
    struct tp_frame fr;
    size_t resume;
    ssize_t used;

    while ((used = next_http(p + cur->cut, n - cur->cut, cur->scanned, max, &fr,
                             &resume)) > 0) {
        cur->cut += (uint32_t)used;
        cur->scanned = 0;
    }
    cur->scanned = (uint32_t)resume;
    return 0;
}

int tp_frame_advance(enum tp_framing f, const char *p, size_t n, uint32_t max,
                     struct tp_frame_cursor *cur)
{
    struct tp_frame fr;
    ssize_t used;

    if (f == TP_FRAMING_LINE)
        return advance_lines(p, n, max, cur);
    if (f == TP_FRAMING_HTTP)
        return advance_http(p, n, max, cur);
    for (;;) {
        used = tp_frame_next(f, p + cur->cut, n - cur->cut, max, &fr);
        if (used <= 0)
            return (int)used;
        cur->cut += (uint32_t)used;
    }
}

/* Counts c in p[0..n), 16 bytes a step where SSE2 is there (every x86-64):
 * byte-wide counters, folded into the total before they can wrap. */
static size_t count_byte(const char *p, size_t n, char c)
{
    size_t total = 0, i = 0;
#ifdef __SSE2__
    const __m128i want = _mm_set1_epi8(c), zero = _mm_setzero_si128();

    while (n - i >= 16) {
        __m128i acc = zero;
        size_t stop = n - i >= 255 * 16 ? i + 255 * 16 : i + (n - i) / 16 * 16;

        for (; i < stop; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));

            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(v, want));
        }
        acc = _mm_sad_epu8(acc, zero);
        total += (size_t)_mm_cvtsi128_si32(acc) +
                 (size_t)_mm_cvtsi128_si32(_mm_unpackhi_epi64(acc, acc));
    }
#endif
    for (; i < n; i++)
        total += p[i] == c;
    return total;
}

size_t tp_frame_count(enum tp_framing f, const char *p, size_t n, uint32_t max)
{
    struct tp_frame fr;
    size_t count = 0, pos = 0;
    ssize_t used;

    if (f == TP_FRAMING_LINE)
        return count_byte(p, n, '\n');
    if (f == TP_FRAMING_RAW)
        return max == 0 ? 0 : (n + max - 1) / max;
    while ((used = tp_frame_next(f, p + pos, n - pos, max, &fr)) > 0) {
        pos += (size_t)used;
        count++;
    }
    return count;
}

void tp_frame_wrap(enum tp_framing f, size_t len, char head[4], size_t *head_len,
                   char *tail, size_t *tail_len)
{
    *head_len = 0;
    *tail_len = 0;
    if (f == TP_FRAMING_LENGTH) {
        head[0] = (char)(len >> 24);
        head[1] = (char)(len >> 16);
        head[2] = (char)(len >> 8);
        head[3] = (char)len;
        *head_len = 4;
    } else if (f == TP_FRAMING_LINE) {
        *tail = '\n';
        *tail_len = 1;
    }
}
