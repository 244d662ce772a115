/* The pieces of tidepool-stress --mode chat that need no server: the
 * self-describing lines, the per-sender order record, and the RESP2 parser
 * (every split point, byte at a time, each input ending at a guard page). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tp_stress_line.h"
#include "tp_stress_order.h"
#include "tp_stress_resp.h"

/* ------------------------------------------------------------------ line */

Test(stress_line, a_line_reads_back_as_written_at_every_size)
{
    static char buf[600];
    struct tp_stress_line l;
    uint32_t size;

    for (size = TP_STRESS_LINE_MIN; size <= sizeof(buf); size += 7) {
        tp_stress_line_fill(buf, size, 0xabcdef, 0x89abcdef, UINT64_C(0x0123456789abcdef));
        cr_assert_eq(memchr(buf, '\n', size), buf + size - 1, "one newline, at the end");
        cr_assert_eq(tp_stress_line_parse(buf, size - 1, size, true, &l), 0, "size %u", size);
        cr_assert_not(l.join);
        cr_assert_eq(l.sender, 0xabcdef);
        cr_assert_eq(l.seq, 0x89abcdef);
        cr_assert_eq(l.stamp_ns, UINT64_C(0x0123456789abcdef));
    }
    tp_stress_line_fill_join(buf, 64, 1);
    cr_assert_eq(tp_stress_line_parse(buf, 63, 64, true, &l), 0);
    cr_assert(l.join);
    cr_assert_eq(l.sender, 1);
}

Test(stress_line, every_changed_byte_is_caught)
{
    char line[80], bad[80];
    struct tp_stress_line l;
    size_t i;

    tp_stress_line_fill(line, sizeof(line), 3, 17, 123456789);
    for (i = 0; i + 1 < sizeof(line); i++) {
        memcpy(bad, line, sizeof(line));
        bad[i] = bad[i] == 'Z' ? 'Y' : 'Z';
        cr_assert_lt(tp_stress_line_parse(bad, sizeof(line) - 1, sizeof(line), true, &l), 0,
                     "byte %zu changed and not seen", i);
    }
    /* Without verify the letters are not compared, the head still is. */
    memcpy(bad, line, sizeof(line));
    bad[60] = 'Z';
    cr_assert_eq(tp_stress_line_parse(bad, sizeof(line) - 1, sizeof(line), false, &l), 0);
    bad[12] = 'x';
    cr_assert_eq(tp_stress_line_parse(bad, sizeof(line) - 1, sizeof(line), false, &l), -EBADMSG);
}

Test(stress_line, lines_of_one_sender_differ_from_seq_to_seq_and_sender_to_sender)
{
    char a[64], b[64], c[64];

    tp_stress_line_fill(a, 64, 1, 5, 100);
    tp_stress_line_fill(b, 64, 1, 6, 100);
    tp_stress_line_fill(c, 64, 2, 5, 100);
    cr_assert_neq(memcmp(a + TP_STRESS_LINE_HEAD, b + TP_STRESS_LINE_HEAD, 26), 0);
    cr_assert_neq(memcmp(a, c, 64), 0);
}

Test(stress_line, other_text_and_other_lengths_are_told_apart)
{
    char line[64];
    struct tp_stress_line l;

    cr_assert_eq(tp_stress_line_parse("hello", 5, 64, true, &l), -ENOMSG);
    cr_assert_eq(tp_stress_line_parse("", 0, 64, true, &l), -ENOMSG);
    tp_stress_line_fill(line, 64, 0, 0, 1);
    cr_assert_eq(tp_stress_line_parse(line, 62, 64, true, &l), -EBADMSG, "one byte short");
    cr_assert_eq(tp_stress_line_parse(line, 63, 65, true, &l), -EBADMSG, "sized for another -s");
}

Test(stress_line, the_mark_is_found_after_a_prefix)
{
    char buf[128];
    int n;

    n = snprintf(buf, sizeof(buf), "127.0.0.1:51234: ");
    tp_stress_line_fill(buf + n, 64, 7, 9, 11);
    cr_assert_eq(tp_stress_line_find(buf, (size_t)n + 63), n);
    cr_assert_eq(tp_stress_line_find("* 127.0.0.1:5 joined (tp 3)", 27), -1);
    cr_assert_eq(tp_stress_line_find("tp", 2), -1);
    cr_assert_eq(tp_stress_line_find("xtpj:", 5), 1);
}

/* ----------------------------------------------------------------- order */

Test(stress_order, in_order_lines_are_next_and_nothing_is_missing)
{
    struct tp_stress_order o = { 0 };
    uint32_t i;

    for (i = 0; i < 1000; i++)
        cr_assert_eq(tp_stress_order_see(&o, i), TP_STRESS_ORDER_NEXT);
    cr_assert_eq(tp_stress_order_missing(&o, 1000), 0);
    cr_assert_eq(tp_stress_order_missing(&o, 1003), 3, "the last three never came");
}

Test(stress_order, a_gap_is_missing_until_its_lines_come_late)
{
    struct tp_stress_order o = { 0 };

    cr_assert_eq(tp_stress_order_see(&o, 0), TP_STRESS_ORDER_NEXT);
    cr_assert_eq(tp_stress_order_see(&o, 4), TP_STRESS_ORDER_AHEAD);
    cr_assert_eq(tp_stress_order_missing(&o, 5), 3);
    cr_assert_eq(tp_stress_order_see(&o, 2), TP_STRESS_ORDER_LATE);
    cr_assert_eq(tp_stress_order_see(&o, 2), TP_STRESS_ORDER_DUP, "twice late is a duplicate");
    cr_assert_eq(tp_stress_order_see(&o, 4), TP_STRESS_ORDER_DUP);
    cr_assert_eq(tp_stress_order_see(&o, 0), TP_STRESS_ORDER_DUP);
    cr_assert_eq(tp_stress_order_missing(&o, 5), 2, "1 and 3 still missing");
    cr_assert_eq(tp_stress_order_see(&o, 5), TP_STRESS_ORDER_NEXT);
    cr_assert_eq(tp_stress_order_see(&o, 1), TP_STRESS_ORDER_LATE);
    cr_assert_eq(tp_stress_order_see(&o, 3), TP_STRESS_ORDER_LATE);
    cr_assert_eq(tp_stress_order_missing(&o, 6), 0);
}

Test(stress_order, a_duplicate_of_the_last_line_is_caught)
{
    struct tp_stress_order o = { 0 };

    cr_assert_eq(tp_stress_order_see(&o, 0), TP_STRESS_ORDER_NEXT);
    cr_assert_eq(tp_stress_order_see(&o, 0), TP_STRESS_ORDER_DUP);
    cr_assert_eq(tp_stress_order_see(&o, 1), TP_STRESS_ORDER_NEXT);
    cr_assert_eq(tp_stress_order_see(&o, 1), TP_STRESS_ORDER_DUP);
    cr_assert_eq(tp_stress_order_missing(&o, 2), 0);
}

Test(stress_order, far_behind_lines_are_told_apart_by_the_holes)
{
    struct tp_stress_order o = { 0 };
    uint32_t i;

    /* 10 is skipped; 200 lines later it comes, out of the 64-line window. */
    for (i = 0; i < 300; i++)
        if (i != 10)
            tp_stress_order_see(&o, i);
    cr_assert_eq(tp_stress_order_missing(&o, 300), 1);
    cr_assert_eq(tp_stress_order_see(&o, 10), TP_STRESS_ORDER_LATE);
    cr_assert_eq(tp_stress_order_missing(&o, 300), 0);
    cr_assert_eq(tp_stress_order_see(&o, 20), TP_STRESS_ORDER_DUP, "no holes left");
    /* A jump longer than the window clears it, and the holes still count. */
    cr_assert_eq(tp_stress_order_see(&o, 1000), TP_STRESS_ORDER_AHEAD);
    cr_assert_eq(tp_stress_order_missing(&o, 1001), 700);
    cr_assert_eq(tp_stress_order_see(&o, 999), TP_STRESS_ORDER_LATE);
    cr_assert_eq(tp_stress_order_see(&o, 999), TP_STRESS_ORDER_DUP);
}

/* ------------------------------------------------------------------ resp */

static char *guard_base;
static size_t page;

/* A copy of len bytes that ends where a PROT_NONE page begins. */
static const char *at_guard(const char *s, size_t len)
{
    if (guard_base == NULL) {
        page = (size_t)sysconf(_SC_PAGESIZE);
        guard_base = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                          -1, 0);
        cr_assert_neq(guard_base, MAP_FAILED);
        cr_assert_eq(mprotect(guard_base + 2 * page, page, PROT_NONE), 0);
    }
    cr_assert_leq(len, 2 * page);
    memcpy(guard_base + 2 * page - len, s, len);
    return guard_base + 2 * page - len;
}

/* Every strict prefix of s needs more; all of it is one reply of its length. */
static void assert_cut_everywhere(const char *s, size_t len, struct tp_stress_resp_reply *r)
{
    size_t k;

    for (k = 0; k < len; k++)
        cr_assert_eq(tp_stress_resp_parse(at_guard(s, k), k, 1 << 20, r), 0,
                     "prefix %zu of %zu of \"%.*s\" was taken as whole", k, len, (int)len, s);
    cr_assert_eq(tp_stress_resp_parse(at_guard(s, len), len, 1 << 20, r), (ssize_t)len);
}

#define CUT(lit, r) assert_cut_everywhere(lit, sizeof(lit) - 1, r)

Test(stress_resp, a_message_push_is_cut_at_every_split_point)
{
    static const char msg[] = "*3\r\n$7\r\nmessage\r\n$8\r\ntidepool\r\n$5\r\nhe\r\no\r\n";
    struct tp_stress_resp_reply r;

    CUT(msg, &r);
    cr_assert_eq(r.top.type, TP_STRESS_RESP_ARRAY);
    cr_assert_eq(r.nitems, 3);
    cr_assert_eq(r.item[0].type, TP_STRESS_RESP_BULK);
    cr_assert_eq(r.item[0].len, 7);
    cr_assert_eq(memcmp(r.item[0].str, "message", 7), 0);
    cr_assert_eq(memcmp(r.item[1].str, "tidepool", 8), 0);
    cr_assert_eq(r.item[2].len, 5, "a payload may hold CR LF: the length says where it ends");
    cr_assert_eq(memcmp(r.item[2].str, "he\r\no", 5), 0);
}

Test(stress_resp, subscribe_confirmation_integer_status_error_and_nil)
{
    struct tp_stress_resp_reply r;

    CUT("*3\r\n$9\r\nsubscribe\r\n$8\r\ntidepool\r\n:1\r\n", &r);
    cr_assert_eq(r.item[2].type, TP_STRESS_RESP_INT);
    cr_assert_eq(r.item[2].num, 1);
    CUT(":1000\r\n", &r);
    cr_assert_eq(r.top.type, TP_STRESS_RESP_INT);
    cr_assert_eq(r.top.num, 1000);
    CUT(":-12\r\n", &r);
    cr_assert_eq(r.top.num, -12);
    CUT("+OK\r\n", &r);
    cr_assert_eq(r.top.type, TP_STRESS_RESP_STATUS);
    cr_assert_eq(r.top.len, 2);
    CUT("-ERR unknown command 'PUBLISHX', with args beginning with: 'tidepool' 'x'\r\n", &r);
    cr_assert_eq(r.top.type, TP_STRESS_RESP_ERROR);
    cr_assert_eq(memcmp(r.top.str, "ERR unknown", 11), 0);
    CUT("$-1\r\n", &r);
    cr_assert_eq(r.top.type, TP_STRESS_RESP_NIL);
    CUT("$0\r\n\r\n", &r);
    cr_assert_eq(r.top.type, TP_STRESS_RESP_BULK);
    cr_assert_eq(r.top.len, 0);
    CUT("*0\r\n", &r);
    cr_assert_eq(r.nitems, 0);
}

Test(stress_resp, replies_one_after_another_are_cut_one_at_a_time)
{
    static const char two[] = ":1\r\n*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n:2\r\n";
    struct tp_stress_resp_reply r;
    const char *p = two;
    size_t left = sizeof(two) - 1;
    ssize_t k;

    cr_assert_eq(k = tp_stress_resp_parse(p, left, 64, &r), 4);
    p += k, left -= (size_t)k;
    cr_assert_eq(k = tp_stress_resp_parse(p, left, 64, &r), 32);
    cr_assert_eq(r.nitems, 3);
    p += k, left -= (size_t)k;
    cr_assert_eq(k = tp_stress_resp_parse(p, left, 64, &r), 4);
    cr_assert_eq(r.top.num, 2);
    cr_assert_eq((size_t)k, left);
}

Test(stress_resp, bytes_that_are_not_resp2_are_refused)
{
    static const char *bad[] = {
        "hello\r\n", ":12x\r\n", ":\r\n", "$-2\r\n", "$3\r\nabcd\r\n", "*1\r\n*1\r\n:1\r\n",
        "*5\r\n", ":1\rx", "$abc\r\n", "\r\n", ":-\r\n",
    };
    struct tp_stress_resp_reply r;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(tp_stress_resp_parse(at_guard(bad[i], strlen(bad[i])), strlen(bad[i]), 64, &r),
                     -EPROTO, "\"%s\" was not refused", bad[i]);
    cr_assert_eq(tp_stress_resp_parse("$65\r\n", 5, 64, &r), -EMSGSIZE, "bulk over the maximum");
    memset(guard_base, '+', 2 * page);
    cr_assert_eq(tp_stress_resp_parse(guard_base, 2 * page, 64, &r), -EMSGSIZE,
                 "a status line that never ends");
}

Test(stress_resp, commands_are_arrays_of_bulk_strings)
{
    const char *argv[] = { "PUBLISH", "tidepool", "a b" };
    size_t lens[] = { 7, 8, 3 }, n;
    char buf[64];

    n = tp_stress_resp_command(buf, sizeof(buf), 3, argv, lens);
    cr_assert_eq(n, 40);
    cr_assert_eq(memcmp(buf, "*3\r\n$7\r\nPUBLISH\r\n$8\r\ntidepool\r\n$3\r\na b\r\n", n), 0);
    cr_assert_gt(tp_stress_resp_command(buf, 10, 3, argv, lens), 10, "too small: says so");
}
