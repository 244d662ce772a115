/* tp_stress_msg.c - deterministic printable message contents. */
#include <string.h>

#include "tp_stress_msg.h"

#define AZ "abcdefghijklmnopqrstuvwxyz"
#define AZ8 AZ AZ AZ AZ AZ AZ AZ AZ
#define AZ64 AZ8 AZ8 AZ8 AZ8 AZ8 AZ8 AZ8 AZ8

/* 26 * 128 letters: any run of up to PATTERN_RUN starts at any letter. */
static const char pattern[] = AZ64 AZ64;
#define PATTERN_RUN (sizeof(pattern) - 1 - 26)

/* Writes v in lower-case hex, least significant digit first (so that even a
 * 2-byte message changes from one seq to the next); returns the end. */
static char *put_hex(char *p, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";

    do {
        *p++ = digits[v & 15];
        v >>= 4;
    } while (v != 0);
    return p;
}

void tp_stress_msg_fill(char *dst, uint32_t size, uint32_t conn, uint64_t seq)
{
    char head[40], *end;
    uint32_t len = size - 1, k, run;

    end = put_hex(head, seq);
    *end++ = ':';
    end = put_hex(end, conn);
    *end++ = ' ';
    k = (uint32_t)(end - head) < len ? (uint32_t)(end - head) : len;
    memcpy(dst, head, k);
    while (k < len) {
        run = len - k < PATTERN_RUN ? len - k : (uint32_t)PATTERN_RUN;
        memcpy(dst + k, pattern + (seq + k) % 26, run);
        k += run;
    }
    dst[len] = '\n';
}
