/* fuzz_frame.c - libFuzzer harness for line, length and raw framing
 * (reactor/tp_frame.c).
 *
 * Input: byte 0 picks the framing and max (small ones reach the oversize
 * paths), bytes 1-2 a split point, the rest is what a client sent. For line
 * and length framing, the input cut the way the reactor cuts it (the first
 * part with tp_frame_advance, then all of it, the cursor carried over) must
 * give exactly the messages, or the oversize error at the same place, that a
 * plain reference cut written here (one message at a time, no shortcuts)
 * gives for the whole input, and tp_frame_count must count them. Raw framing
 * has no boundaries to keep: every byte is cut, in pieces of at most max.
 * Any disagreement traps. The input is copied into a buffer of exactly its
 * size, so ASan catches a read past it. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tp_frame.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The reference: where the whole messages of p[0..n) end, one at a time.
 * Returns the bytes cut, *count the messages, *oversize whether the next
 * message is (or will be) longer than max. */
static size_t reference(enum tp_framing f, const char *p, size_t n, uint32_t max,
                        size_t *count, bool *oversize)
{
    size_t cut = 0;

    *count = 0;
    *oversize = false;
    for (;;) {
        size_t left = n - cut, len, i;

        if (f == TP_FRAMING_LINE) {
            for (i = 0; i < left && p[cut + i] != '\n'; i++)
                ;
            len = i;
            if (len > max) {                 /* too long, ended or not */
                *oversize = true;
                return cut;
            }
            if (i == left)
                return cut;
            cut += len + 1;
        } else {
            const unsigned char *u = (const unsigned char *)p + cut;

            if (left < 4)
                return cut;
            len = (size_t)u[0] << 24 | (size_t)u[1] << 16 | (size_t)u[2] << 8 | u[3];
            if (len > max) {
                *oversize = true;
                return cut;
            }
            if (left - 4 < len)
                return cut;
            cut += 4 + len;
        }
        (*count)++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t maxes[8] = { 1, 2, 3, 7, 16, 64, 1000, 65536 };
    enum tp_framing f;
    struct tp_frame_cursor cur = { 0, 0 };
    size_t n, split, count, want_count;
    uint32_t max;
    bool oversize;
    char *p;
    int rc;

    if (size < 3)
        return 0;
    f = data[0] % 3 == 0 ? TP_FRAMING_LINE : data[0] % 3 == 1 ? TP_FRAMING_LENGTH : TP_FRAMING_RAW;
    max = maxes[(data[0] >> 2) & 7];
    n = size - 3;
    split = n ? ((size_t)data[1] << 8 | data[2]) % (n + 1) : 0;
    p = malloc(n ? n : 1);
    CHECK(p != NULL);
    memcpy(p, data + 3, n);

    if (f == TP_FRAMING_RAW) {
        rc = tp_frame_advance(f, p, split, max, &cur);
        CHECK(rc == 0 && cur.cut == split);
        rc = tp_frame_advance(f, p, n, max, &cur);
        CHECK(rc == 0 && cur.cut == n);
        CHECK(tp_frame_count(f, p, n, max) == (n + max - 1) / max);
        free(p);
        return 0;
    }

    size_t want = reference(f, p, n, max, &want_count, &oversize);

    /* As the reactor reads it: a first part, then the rest. */
    rc = tp_frame_advance(f, p, split, max, &cur);
    CHECK(rc == 0 || rc == -EMSGSIZE);
    CHECK(cur.cut <= split);
    if (rc == 0)
        rc = tp_frame_advance(f, p, n, max, &cur);
    CHECK(rc == 0 || rc == -EMSGSIZE);
    CHECK((rc == -EMSGSIZE) == oversize);
    CHECK(cur.cut == want);
    /* The messages before the cut, counted as the pool counts them. */
    count = tp_frame_count(f, p, want, max);
    CHECK(count == want_count);
    /* And tp_frame_next agrees message by message. */
    for (size_t at = 0, k = 0; at < want; k++) {
        struct tp_frame fr;
        ssize_t used = tp_frame_next(f, p + at, want - at, max, &fr);

        CHECK(used > 0 && fr.off + fr.len <= (size_t)used && k < want_count);
        at += (size_t)used;
    }
    free(p);
    return 0;
}
