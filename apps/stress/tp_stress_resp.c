/* tp_stress_resp.c - RESP2 commands out, replies in. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tp_stress_resp.h"

#define MAX_LINE 512             /* a type byte, a number or a status or error text, "\r\n" */

/* The line at data[0..len) up to "\r\n": its length without them in *n.
 * Returns the bytes up to and with "\r\n", 0 if not whole, or -errno. */
static ssize_t cut_line(const char *data, size_t len, size_t *n)
{
    const char *cr;
    size_t room = len < MAX_LINE ? len : MAX_LINE;

    cr = memchr(data, '\r', room);
    if (cr == NULL)
        return len >= MAX_LINE ? -EMSGSIZE : 0;
    if ((size_t)(cr - data) + 1 == len)
        return 0;                     /* the '\n' has not come yet */
    if (cr[1] != '\n')
        return -EPROTO;
    *n = (size_t)(cr - data);
    return (ssize_t)(*n + 2);
}

/* A decimal integer, optionally negative, making up all len bytes. */
static int get_int(const char *p, size_t len, int64_t *v)
{
    bool neg = len > 0 && p[0] == '-';
    uint64_t x = 0;
    size_t i = neg;

    if (i == len || len - i > 18)
        return -EPROTO;
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -EPROTO;
        x = x * 10 + (uint64_t)(p[i] - '0');
    }
    *v = neg ? -(int64_t)x : (int64_t)x;
    return 0;
}

/* One value that is not an array (in_array: an array's element). Returns
 * bytes taken, 0 if not whole, -errno. */
static ssize_t parse_item(const char *data, size_t len, size_t max_bulk, bool in_array,
                          struct tp_stress_resp_item *it)
{
    size_t n;
    ssize_t k = cut_line(data, len, &n);
    int64_t v;

    if (k <= 0)
        return k;
    if (n == 0)
        return -EPROTO;
    it->str = data + 1;
    it->len = n - 1;
    switch (data[0]) {
    case '+':
        it->type = TP_STRESS_RESP_STATUS;
        return k;
    case '-':
        it->type = TP_STRESS_RESP_ERROR;
        return k;
    case ':':
        it->type = TP_STRESS_RESP_INT;
        return get_int(data + 1, n - 1, &it->num) < 0 ? -EPROTO : k;
    case '$':
        if (get_int(data + 1, n - 1, &v) < 0 || v < -1)
            return -EPROTO;
        if (v == -1) {
            it->type = TP_STRESS_RESP_NIL;
            it->len = 0;
            return k;
        }
        if ((uint64_t)v > max_bulk)
            return -EMSGSIZE;
        if (len - (size_t)k < (size_t)v + 2)
            return 0;
        if (data[k + v] != '\r' || data[k + v + 1] != '\n')
            return -EPROTO;
        it->type = TP_STRESS_RESP_BULK;
        it->str = data + k;
        it->len = (size_t)v;
        return k + (ssize_t)v + 2;
    case '*':
        if (in_array)
            return -EPROTO;             /* nested arrays: not in pub/sub */
        if (get_int(data + 1, n - 1, &v) < 0 || v < -1)
            return -EPROTO;
        it->type = v == -1 ? TP_STRESS_RESP_NIL : TP_STRESS_RESP_ARRAY;
        it->num = v;
        it->len = 0;
        return k;
    }
    return -EPROTO;
}

ssize_t tp_stress_resp_parse(const char *data, size_t len, size_t max_bulk,
                             struct tp_stress_resp_reply *r)
{
    ssize_t k, used;
    unsigned i;

    r->nitems = 0;
    used = parse_item(data, len, max_bulk, false, &r->top);
    if (used <= 0 || r->top.type != TP_STRESS_RESP_ARRAY)
        return used;
    if (r->top.num > TP_STRESS_RESP_MAX_ITEMS)
        return -EPROTO;
    for (i = 0; i < (unsigned)r->top.num; i++) {
        k = parse_item(data + used, len - (size_t)used, max_bulk, true, &r->item[i]);
        if (k <= 0)
            return k;
        used += k;
    }
    r->nitems = i;
    return used;
}

size_t tp_stress_resp_command(char *dst, size_t cap, unsigned argc, const char *const *argv,
                              const size_t *lens)
{
    char head[32];
    size_t at = 0, n;
    unsigned i;

    n = (size_t)snprintf(head, sizeof(head), "*%u\r\n", argc);
    if (at + n <= cap)
        memcpy(dst + at, head, n);
    at += n;
    for (i = 0; i < argc; i++) {
        n = (size_t)snprintf(head, sizeof(head), "$%zu\r\n", lens[i]);
        if (at + n + lens[i] + 2 <= cap) {
            memcpy(dst + at, head, n);
            memcpy(dst + at + n, argv[i], lens[i]);
            memcpy(dst + at + n + lens[i], "\r\n", 2);
        }
        at += n + lens[i] + 2;
    }
    return at;
}
