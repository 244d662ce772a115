/* tp_stress_line.h - the lines of --mode chat. A data line names its sender,
 * its sequence number and its send time, so that every recipient can check
 * who sent it, whether it came in order, and how long it took:
 *
 *     tpc:SSSSSS:QQQQQQQQ:TTTTTTTTTTTTTTTT padding...\n
 *
 * S sender (6 hex), Q sequence number (8 hex), T send time in ns (16 hex,
 * CLOCK_MONOTONIC of the tool's process), all lower case, then letters that
 * shift with sender and seq up to the line's size. A join line, "tpj:MMMMMM:"
 * and letters, is the member M's hello that proves the others are in the
 * room. Every byte is fixed by those fields: a recipient regenerates it. */
#ifndef TP_STRESS_LINE_H
#define TP_STRESS_LINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TP_STRESS_LINE_HEAD 37u     /* "tpc:" .. the space after T */
#define TP_STRESS_LINE_MIN 38u      /* the head and the '\n' */
#define TP_STRESS_LINE_MAX_ID 0xffffffu

/* Plain struct: what a line said. */
struct tp_stress_line {
    bool join;            /* a join line: only sender (the member) is set */
    uint32_t sender;
    uint32_t seq;
    uint64_t stamp_ns;
};

/* Writes the size bytes (TP_STRESS_LINE_MIN..) of data line seq of sender
 * (<= TP_STRESS_LINE_MAX_ID) sent at stamp_ns: printable ASCII, one '\n' at
 * the end. Never allocates; any thread. */
void tp_stress_line_fill(char *dst, uint32_t size, uint32_t sender, uint32_t seq,
                         uint64_t stamp_ns);

/* The same for the join line of member. */
void tp_stress_line_fill_join(char *dst, uint32_t size, uint32_t member);

/* Reads the len bytes of a line, its '\n' left off (so len is size - 1 for
 * a line as sent), into *out. With verify, every byte after the head must
 * be what fill wrote. Returns 0; -ENOMSG if it does not start with "tpc:" or
 * "tpj:" (not a line of ours); -EBADMSG if it does but its length, a field
 * or a byte is wrong. */
int tp_stress_line_parse(const char *line, size_t len, uint32_t size, bool verify,
                         struct tp_stress_line *out);

/* Where our mark ("tpc:" or "tpj:") starts in the len bytes at line, or -1:
 * for rooms that prefix each line (chat_prefix) with text of their own. */
long tp_stress_line_find(const char *line, size_t len);

#endif /* TP_STRESS_LINE_H */
