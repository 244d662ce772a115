/* Framing: bytes -> messages for line, length and raw framing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tp_frame.h"

/* Copies n bytes so that they end exactly at a PROT_NONE page: any read past
 * the input faults. */
static char *at_guard_page(const char *src, size_t n, void **map, size_t *maplen)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (n + page - 1) / page + 1;
    char *base;

    *maplen = (pages + 1) * page;
    base = mmap(NULL, *maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(base, MAP_FAILED);
    cr_assert_eq(mprotect(base + pages * page, page, PROT_NONE), 0);
    *map = base;
    memcpy(base + pages * page - n, src, n);
    return base + pages * page - n;
}

/* Cuts the whole of in, fed in two pieces split at every byte, and checks the
 * total number of messages and where the last whole one ends. */
static void check_every_split(enum tp_framing f, const char *in, size_t n,
                              uint32_t want_count, uint32_t want_cut)
{
    size_t split;

    for (split = 0; split <= n; split++) {
        struct tp_frame_cursor cur = { 0, 0 };
        void *map;
        size_t maplen;
        char *p = at_guard_page(in, split, &map, &maplen);

        size_t count;

        cr_assert_eq(tp_frame_advance(f, p, split, 1000, &cur), 0);
        munmap(map, maplen);
        p = at_guard_page(in, n, &map, &maplen);
        cr_assert_eq(tp_frame_advance(f, p, n, 1000, &cur), 0);
        count = tp_frame_count(f, p, cur.cut, 1000);
        munmap(map, maplen);
        cr_assert_eq(count, want_count, "split at %zu: %zu messages", split, count);
        cr_assert_eq(cur.cut, want_cut, "split at %zu: cut %u", split, cur.cut);
    }
}

Test(frame, line_split_at_every_byte_finds_every_message)
{
    const char in[] = "one\ntwo\r\n\nthree";

    check_every_split(TP_FRAMING_LINE, in, sizeof(in) - 1, 3, 10);
}

Test(frame, length_split_at_every_byte_finds_every_message)
{
    const char in[] = "\0\0\0\3abc\0\0\0\0\0\0\0\2x\n\0\0";

    check_every_split(TP_FRAMING_LENGTH, in, sizeof(in) - 1, 3, 17);
}

Test(frame, line_payload_excludes_newline_and_keeps_cr)
{
    struct tp_frame fr;
    ssize_t used = tp_frame_next(TP_FRAMING_LINE, "hi\r\nrest", 8, 100, &fr);

    cr_assert_eq(used, 4);
    cr_assert_eq(fr.off, 0);
    cr_assert_eq(fr.len, 3);
}

Test(frame, partial_line_needs_more)
{
    struct tp_frame fr;

    cr_assert_eq(tp_frame_next(TP_FRAMING_LINE, "abc", 3, 100, &fr), 0);
    cr_assert_eq(tp_frame_next(TP_FRAMING_LINE, "", 0, 100, &fr), 0);
}

Test(frame, binary_bytes_inside_a_line_are_payload)
{
    char in[256];
    struct tp_frame fr;
    int i, n = 0;

    for (i = 0; i < 256; i++)
        if (i != '\n')
            in[n++] = (char)i;
    in[n++] = '\n';
    cr_assert_eq(tp_frame_next(TP_FRAMING_LINE, in, (size_t)n, 1000, &fr), n);
    cr_assert_eq(fr.len, 255);
}

Test(frame, line_longer_than_max_is_refused_with_or_without_its_end)
{
    struct tp_frame fr;
    char in[12] = "0123456789\n";

    cr_assert_eq(tp_frame_next(TP_FRAMING_LINE, in, 11, 10, &fr), 11);
    cr_assert_eq(tp_frame_next(TP_FRAMING_LINE, in, 11, 9, &fr), -EMSGSIZE);
    cr_assert_eq(tp_frame_next(TP_FRAMING_LINE, in, 10, 9, &fr), -EMSGSIZE);
    cr_assert_eq(tp_frame_next(TP_FRAMING_LINE, in, 9, 9, &fr), 0);
}

Test(frame, length_header_over_max_is_refused_before_the_payload_arrives)
{
    struct tp_frame fr;

    cr_assert_eq(tp_frame_next(TP_FRAMING_LENGTH, "\0\0\1\0", 4, 255, &fr), -EMSGSIZE);
    cr_assert_eq(tp_frame_next(TP_FRAMING_LENGTH, "\0\0\0\xff", 4, 255, &fr), 0);
    cr_assert_eq(tp_frame_next(TP_FRAMING_LENGTH, "\xff\xff\xff\xff", 4, 1u << 20, &fr),
                 -EMSGSIZE);
}

Test(frame, length_zero_is_an_empty_message)
{
    struct tp_frame fr;

    cr_assert_eq(tp_frame_next(TP_FRAMING_LENGTH, "\0\0\0\0", 4, 10, &fr), 4);
    cr_assert_eq(fr.off, 4);
    cr_assert_eq(fr.len, 0);
}

Test(frame, raw_takes_everything_in_pieces_of_at_most_max)
{
    struct tp_frame fr;

    cr_assert_eq(tp_frame_next(TP_FRAMING_RAW, "abcdef", 6, 100, &fr), 6);
    cr_assert_eq(tp_frame_next(TP_FRAMING_RAW, "abcdef", 6, 4, &fr), 4);
    cr_assert_eq(fr.len, 4);
}

Test(frame, advance_cuts_several_messages_in_one_read)
{
    struct tp_frame_cursor cur = { 0, 0 };
    const char *in = "a\nb\nc\nd";

    cr_assert_eq(tp_frame_advance(TP_FRAMING_LINE, in, 7, 10, &cur), 0);
    cr_assert_eq(cur.cut, 6);
    cr_assert_eq(cur.scanned, 1);
    cr_assert_eq(tp_frame_count(TP_FRAMING_LINE, in, cur.cut, 10), 3);
}

Test(frame, advance_stops_before_an_oversize_message)
{
    struct tp_frame_cursor cur = { 0, 0 };
    const char *in = "ok\n0123456789";

    cr_assert_eq(tp_frame_advance(TP_FRAMING_LINE, in, 13, 5, &cur), -EMSGSIZE);
    cr_assert_eq(cur.cut, 3);
}

/* A long line between short ones, all in one read: the scan that finds only
 * the last '\n' must still see it. */
Test(frame, advance_finds_an_oversize_line_among_short_ones)
{
    struct tp_frame_cursor cur = { 0, 0 };
    const char *in = "ok\nab\n0123456789\nok\n";

    cr_assert_eq(tp_frame_advance(TP_FRAMING_LINE, in, strlen(in), 5, &cur), -EMSGSIZE);
    cr_assert_eq(cur.cut, 6);
    cur = (struct tp_frame_cursor){ 0, 0 };
    cr_assert_eq(tp_frame_advance(TP_FRAMING_LINE, in, strlen(in), 10, &cur), 0);
    cr_assert_eq(cur.cut, strlen(in));
}

Test(frame, advance_resumes_a_long_line_where_it_stopped_scanning)
{
    struct tp_frame_cursor cur = { 0, 0 };
    char in[64];

    memset(in, 'x', sizeof(in));
    cr_assert_eq(tp_frame_advance(TP_FRAMING_LINE, in, 40, 100, &cur), 0);
    cr_assert_eq(cur.scanned, 40);
    in[50] = '\n';
    cr_assert_eq(tp_frame_advance(TP_FRAMING_LINE, in, 64, 100, &cur), 0);
    cr_assert_eq(cur.cut, 51);
    cr_assert_eq(cur.scanned, 13);
}

/* The 16-byte steps and their 255-step folds against a byte-by-byte count,
 * at every length and alignment around them. */
Test(frame, count_matches_a_plain_count_at_every_length)
{
    static char buf[255 * 16 * 2 + 64];
    size_t n, off, want, i;

    for (i = 0; i < sizeof(buf); i++)
        buf[i] = (i * 7) % 5 == 0 ? '\n' : 'x';
    for (off = 0; off < 3; off++)
        for (n = 0; n + off <= sizeof(buf); n += n < 100 ? 1 : 97) {
            for (want = 0, i = 0; i < n; i++)
                want += buf[off + i] == '\n';
            cr_assert_eq(tp_frame_count(TP_FRAMING_LINE, buf + off, n, 1000), want,
                         "offset %zu, length %zu", off, n);
        }
    memset(buf, '\n', sizeof(buf));      /* every byte: the byte counters fill up */
    cr_assert_eq(tp_frame_count(TP_FRAMING_LINE, buf, sizeof(buf), 1000), sizeof(buf));
}

Test(frame, count_walks_length_prefixes_and_raw_pieces)
{
    const char in[] = "\0\0\0\3abc\0\0\0\0\0\0\0\2x\n";

    cr_assert_eq(tp_frame_count(TP_FRAMING_LENGTH, in, sizeof(in) - 1, 100), 3);
    cr_assert_eq(tp_frame_count(TP_FRAMING_RAW, "abcdefghij", 10, 4), 3);
}

Test(frame, wrap_adds_the_framing_a_reply_needs)
{
    char head[4], tail;
    size_t hl, tl;

    tp_frame_wrap(TP_FRAMING_LINE, 5, head, &hl, &tail, &tl);
    cr_assert_eq(hl, 0);
    cr_assert_eq(tl, 1);
    cr_assert_eq(tail, '\n');
    tp_frame_wrap(TP_FRAMING_LENGTH, 0x01020304, head, &hl, &tail, &tl);
    cr_assert_eq(hl, 4);
    cr_assert_eq(tl, 0);
    cr_assert_eq(memcmp(head, "\1\2\3\4", 4), 0);
    tp_frame_wrap(TP_FRAMING_RAW, 5, head, &hl, &tail, &tl);
    cr_assert_eq(hl + tl, 0);
}

Test(frame, http_split_at_every_byte_finds_every_head)
{
    const char in[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"     /* 27 */
                      "\r\n"                                  /* an empty line: 2 */
                      "GET /b HTTP/1.0\n\n"                   /* 17 */
                      "HEAD / HTTP/1.1\nHost: b\r\n\n"        /* 26 */
                      "GET /partial HTTP/1.1\r\nHo";

    check_every_split(TP_FRAMING_HTTP, in, sizeof(in) - 1, 4, 72);
}

Test(frame, http_head_ends_at_its_first_empty_line)
{
    struct tp_frame fr;

    cr_assert_eq(tp_frame_next(TP_FRAMING_HTTP, "GET / HTTP/1.0\r\n\r\nX", 19, 100, &fr), 18);
    cr_expect_eq(fr.off, 0);
    cr_expect_eq(fr.len, 18);
    cr_expect_eq(tp_frame_next(TP_FRAMING_HTTP, "\n", 1, 100, &fr), 1);
    cr_expect_eq(tp_frame_next(TP_FRAMING_HTTP, "\r\n", 2, 100, &fr), 2);
    cr_expect_eq(tp_frame_next(TP_FRAMING_HTTP, "\r", 1, 100, &fr), 0);
    /* "\r\r\n" is not an empty line: the parser will refuse it. */
    cr_expect_eq(tp_frame_next(TP_FRAMING_HTTP, "A\n\r\r\nB\n\n", 8, 100, &fr), 8);
    cr_expect_eq(tp_frame_next(TP_FRAMING_HTTP, "A\nB\r\n\r", 7, 100, &fr), 0);
}

Test(frame, http_head_over_max_is_cut_at_max_plus_one_for_the_app_to_answer)
{
    const char *in = "GET / HTTP/1.1\r\nHost: abcdefgh\r\n\r\n";
    struct tp_frame_cursor cur = { 0, 0 };
    struct tp_frame fr;

    cr_expect_eq(tp_frame_next(TP_FRAMING_HTTP, in, 20, 20, &fr), 0);
    cr_expect_eq(tp_frame_next(TP_FRAMING_HTTP, in, 21, 20, &fr), 21);
    /* An end past max does not count: the head is too long. */
    cr_expect_eq(tp_frame_next(TP_FRAMING_HTTP, in, strlen(in), 20, &fr), 21);
    cr_assert_eq(tp_frame_advance(TP_FRAMING_HTTP, in, 30, 20, &cur), 0);
    cr_expect_eq(cur.cut, 21);
    cr_expect_eq(tp_frame_count(TP_FRAMING_HTTP, in, 30, 20), 1);
}

/* Fed a byte at a time, the cursor's resumed search cuts where a search
 * from scratch does, at every length. */
Test(frame, http_advance_resumes_where_it_stopped)
{
    const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nX: \r\r\n\r\n\nGET / HTTP/1.1\r\nA: b\n\r\n"
                      "GET / HTTP/1.1\r\n\r";
    size_t n = sizeof(in) - 1, i;
    struct tp_frame_cursor cur = { 0, 0 };

    for (i = 0; i <= n; i++) {
        struct tp_frame_cursor fresh = { 0, 0 };

        cr_assert_eq(tp_frame_advance(TP_FRAMING_HTTP, in, i, 1000, &cur), 0);
        cr_assert_eq(tp_frame_advance(TP_FRAMING_HTTP, in, i, 1000, &fresh), 0);
        cr_assert_eq(cur.cut, fresh.cut, "length %zu: cut %u, from scratch %u", i, cur.cut,
                     fresh.cut);
    }
    cr_expect_eq(cur.cut, 57);
}

Test(frame, http_wraps_nothing)
{
    char head[4], tail;
    size_t hl = 9, tl = 9;

    tp_frame_wrap(TP_FRAMING_HTTP, 10, head, &hl, &tail, &tl);
    cr_expect_eq(hl, 0);
    cr_expect_eq(tl, 0);
}
