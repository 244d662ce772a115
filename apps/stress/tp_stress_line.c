/* tp_stress_line.c - write and check the self-describing lines of --mode chat. */
#include <errno.h>
#include <string.h>

#include "tp_stress_line.h"

#define AZ "abcdefghijklmnopqrstuvwxyz"
#define AZ8 AZ AZ AZ AZ AZ AZ AZ AZ
#define AZ64 AZ8 AZ8 AZ8 AZ8 AZ8 AZ8 AZ8 AZ8

/* 26 * 128 letters: any run of up to PATTERN_RUN starts at any letter. */
static const char pattern[] = AZ64 AZ64;
#define PATTERN_RUN (sizeof(pattern) - 1 - 26)
#define JOIN_HEAD 11u                 /* "tpj:MMMMMM:" */

static const char digits[] = "0123456789abcdef";

/* v as exactly n lower-case hex digits, most significant first. */
static void put_hex(char *p, uint64_t v, unsigned n)
{
    while (n-- > 0) {
        p[n] = digits[v & 15];
        v >>= 4;
    }
}

/* The n hex digits at p, or -1 if one is not a lower-case hex digit. */
static int64_t get_hex(const char *p, unsigned n)
{
    uint64_t v = 0;
    unsigned i;
    char ch;

    for (i = 0; i < n; i++) {
        ch = p[i];
        if (ch >= '0' && ch <= '9')
            v = v << 4 | (uint64_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v = v << 4 | (uint64_t)(ch - 'a' + 10);
        else
            return -1;
    }
    return n == 16 && v > INT64_MAX ? -1 : (int64_t)v;
}

/* The letters from byte `from` to len of a line whose letters start at `shift`. */
static void fill_pad(char *dst, uint32_t from, uint32_t len, uint64_t shift)
{
    uint32_t run;

    while (from < len) {
        run = len - from < PATTERN_RUN ? len - from : (uint32_t)PATTERN_RUN;
        memcpy(dst + from, pattern + (shift + from) % 26, run);
        from += run;
    }
}

static bool pad_is(const char *line, uint32_t from, uint32_t len, uint64_t shift)
{
    uint32_t run;

    while (from < len) {
        run = len - from < PATTERN_RUN ? len - from : (uint32_t)PATTERN_RUN;
        if (memcmp(line + from, pattern + (shift + from) % 26, run) != 0)
            return false;
        from += run;
    }
    return true;
}

void tp_stress_line_fill(char *dst, uint32_t size, uint32_t sender, uint32_t seq,
                         uint64_t stamp_ns)
{
    memcpy(dst, "tpc:", 4);
    put_hex(dst + 4, sender, 6);
    dst[10] = ':';
    put_hex(dst + 11, seq, 8);
    dst[19] = ':';
    put_hex(dst + 20, stamp_ns, 16);
    dst[36] = ' ';
    fill_pad(dst, TP_STRESS_LINE_HEAD, size - 1, (uint64_t)sender + seq);
    dst[size - 1] = '\n';
}

void tp_stress_line_fill_join(char *dst, uint32_t size, uint32_t member)
{
    memcpy(dst, "tpj:", 4);
    put_hex(dst + 4, member, 6);
    dst[10] = ':';
    fill_pad(dst, JOIN_HEAD, size - 1, member);
    dst[size - 1] = '\n';
}

int tp_stress_line_parse(const char *line, size_t len, uint32_t size, bool verify,
                         struct tp_stress_line *out)
{
    int64_t sender, seq, stamp;

    if (len < 4 || (memcmp(line, "tpc:", 4) != 0 && memcmp(line, "tpj:", 4) != 0))
        return -ENOMSG;
    if (len != size - 1)
        return -EBADMSG;
    out->join = line[2] == 'j';
    if ((sender = get_hex(line + 4, 6)) < 0 || line[10] != ':')
        return -EBADMSG;
    out->sender = (uint32_t)sender;
    if (out->join) {
        out->seq = 0;
        out->stamp_ns = 0;
        return !verify || pad_is(line, JOIN_HEAD, (uint32_t)len, (uint64_t)sender) ? 0 : -EBADMSG;
    }
    if ((seq = get_hex(line + 11, 8)) < 0 || line[19] != ':' ||
        (stamp = get_hex(line + 20, 16)) < 0 || line[36] != ' ')
        return -EBADMSG;
    out->seq = (uint32_t)seq;
    out->stamp_ns = (uint64_t)stamp;
    if (verify && !pad_is(line, TP_STRESS_LINE_HEAD, (uint32_t)len, (uint64_t)sender + (uint64_t)seq))
        return -EBADMSG;
    return 0;
}

long tp_stress_line_find(const char *line, size_t len)
{
    const char *p = line, *end = line + len;

    while (end - p >= 4 && (p = memmem(p, (size_t)(end - p), "tp", 2)) != NULL) {
        if (end - p >= 4 && (p[2] == 'c' || p[2] == 'j') && p[3] == ':')
            return p - line;
        p++;
    }
    return -1;
}
