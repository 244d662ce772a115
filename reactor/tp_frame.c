/* tp_frame.c - message boundaries for line, length-prefixed and raw framing. */
#include "tp_frame.h"

#include <errno.h>
#include <string.h>

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

ssize_t tp_frame_next(enum tp_framing f, const char *p, size_t n, uint32_t max,
                      struct tp_frame *out)
{
    switch (f) {
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

int tp_frame_advance(enum tp_framing f, const char *p, size_t n, uint32_t max,
                     struct tp_frame_cursor *cur, uint32_t *count)
{
    struct tp_frame fr;
    ssize_t used;

    *count = 0;
    for (;;) {
        size_t left = n - cur->cut;

        if (f == TP_FRAMING_LINE)
            used = left == 0 ? 0
                             : next_line(p + cur->cut, left, cur->scanned, max, &fr);
        else
            used = tp_frame_next(f, p + cur->cut, left, max, &fr);
        if (used < 0)
            return (int)used;
        if (used == 0) {
            cur->scanned = (uint32_t)left;
            return 0;
        }
        cur->cut += (uint32_t)used;
        cur->scanned = 0;
        (*count)++;
    }
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
