/* The app runner: a batch through an app, and the replies it makes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "tp_apps.h"
#include "tp_call.h"

static struct tp_msg *batch(const char *bytes, size_t n, uint8_t flags)
{
    struct tp_msg *m = tp_msg_new(n);

    memcpy(m->data, bytes, n);
    m->len = (uint32_t)n;
    m->kind = TP_MSG_DATA;
    m->flags = flags;
    m->h = (struct tp_handle){ 3, 9 };
    return m;
}

static void run(const struct tp_app *app, enum tp_framing f, struct tp_msg *m,
                struct tp_msg_list *out)
{
    struct tp_call_env env = { app, NULL, f, 1000, NULL };

    tp_msg_list_init(out);
    tp_call_run(&env, m, out);
}

static void expect(struct tp_msg *m, uint8_t kind, const char *bytes, size_t n)
{
    cr_assert_not_null(m);
    cr_assert_eq(m->kind, kind);
    cr_assert_eq(m->len, n, "len %u, want %zu", m->len, n);
    cr_assert_eq(memcmp(m->data, bytes, n), 0);
}

Test(call, echo_returns_the_batch_itself_as_the_reply)
{
    struct tp_msg *m = batch("a\nbb\n", 5, 0), *r;
    struct tp_msg_list out;

    run(&tp_app_echo, TP_FRAMING_LINE, m, &out);
    r = tp_msg_list_pop(&out);
    cr_assert_eq(r, m, "no copy");
    expect(r, TP_MSG_DONE, "a\nbb\n", 5);
    cr_assert(r->flags & TP_MSG_F_REPLY);
    cr_assert_null(tp_msg_list_pop(&out));
    tp_msg_free(r);
}

Test(call, upper_changes_letters_in_place_only_in_payloads)
{
    struct tp_msg *m = batch("\0\0\0\3abc\0\0\0\2\xe9z", 13, 0), *r;
    struct tp_msg_list out;

    run(&tp_app_upper, TP_FRAMING_LENGTH, m, &out);
    r = tp_msg_list_pop(&out);
    expect(r, TP_MSG_DONE, "\0\0\0\3ABC\0\0\0\2\xe9Z", 13);
    tp_msg_free(r);
}

Test(call, final_line_without_newline_at_eof_is_a_message)
{
    struct tp_msg *m = batch("x\nlast", 6, TP_MSG_F_EOF), *r;
    struct tp_msg_list out;

    run(&tp_app_upper, TP_FRAMING_LINE, m, &out);
    r = tp_msg_list_pop(&out);
    expect(r, TP_MSG_DONE, "X\nLAST", 6);
    tp_msg_free(r);
}

/* Replies "<len>" to lines starting with '?', keeps the others, drops "-". */
static int mixed_message(struct tp_call *call, char *data, size_t len)
{
    char buf[16];

    if (len > 0 && data[0] == '?') {
        cr_assert_eq(tp_call_reply(call, buf, (size_t)snprintf(buf, sizeof(buf), "%zu", len)), 0);
        return TP_APP_DONE;
    }
    if (len == 1 && data[0] == '-')
        return TP_APP_DONE;
    return TP_APP_KEEP;
}

static const struct tp_app mixed = { .name = "mixed", .message = mixed_message };

Test(call, mixed_replies_keep_the_order_of_the_messages)
{
    struct tp_msg *m = batch("a\n?xy\n-\nb\n?\n", 12, 0), *r;
    struct tp_msg_list out;

    run(&mixed, TP_FRAMING_LINE, m, &out);
    r = tp_msg_list_pop(&out);
    expect(r, TP_MSG_SEND, "a\n3\nb\n1\n", 8);
    cr_assert_eq(r->h.slot, 3);
    cr_assert_eq(r->h.gen, 9);
    tp_msg_free(r);
    r = tp_msg_list_pop(&out);
    cr_assert_eq(r, m);
    cr_assert_eq(r->kind, TP_MSG_DONE);
    cr_assert_not(r->flags & TP_MSG_F_REPLY, "the batch is not the reply any more");
    tp_msg_free(r);
}

Test(call, replies_are_framed_like_the_listener)
{
    struct tp_msg *m = batch("\0\0\0\2?a", 6, 0), *r;
    struct tp_msg_list out;

    run(&mixed, TP_FRAMING_LENGTH, m, &out);
    r = tp_msg_list_pop(&out);
    expect(r, TP_MSG_SEND, "\0\0\0\0012", 5);
    tp_msg_free(r);
    tp_msg_free(tp_msg_list_pop(&out));
}

static int shout_message(struct tp_call *call, char *data, size_t len)
{
    tp_call_broadcast(call, data, len, false);
    return TP_APP_CLOSE;
}

static const struct tp_app shout = { .name = "shout", .message = shout_message };

Test(call, broadcast_then_close_stops_the_batch)
{
    struct tp_msg *m = batch("hi\nnot run\n", 11, 0), *r;
    struct tp_msg_list out;

    run(&shout, TP_FRAMING_LINE, m, &out);
    r = tp_msg_list_pop(&out);
    expect(r, TP_MSG_BROADCAST, "hi\n", 3);
    cr_assert_not(r->flags & TP_MSG_F_SELF);
    tp_msg_free(r);
    r = tp_msg_list_pop(&out);
    cr_assert_eq(r->kind, TP_MSG_DONE);
    cr_assert(r->flags & TP_MSG_F_CLOSE);
    cr_assert_null(tp_msg_list_pop(&out));
    tp_msg_free(r);
}

static int counting_open(struct tp_call *call)
{
    *tp_call_conn_data(call) = (void *)"opened";
    return TP_APP_DONE;
}

static const struct tp_app opener = { .name = "opener", .open = counting_open,
                                      .message = mixed_message };

Test(call, open_sets_the_connection_pointer_that_travels_back)
{
    struct tp_msg *m = tp_msg_new(0), *r;
    struct tp_msg_list out;

    m->kind = TP_MSG_OPEN;
    run(&opener, TP_FRAMING_LINE, m, &out);
    r = tp_msg_list_pop(&out);
    cr_assert_eq(r->kind, TP_MSG_DONE);
    cr_assert_str_eq(r->conn_data, "opened");
    cr_assert_not(r->flags & (TP_MSG_F_REPLY | TP_MSG_F_CLOSE));
    tp_msg_free(r);
}

static int empty_message(struct tp_call *call, char *data, size_t len)
{
    tp_call_reply(call, data, 0);
    tp_call_send(call, tp_call_conn(call), data, 0);
    tp_call_broadcast(call, data, 0, true);
    return TP_APP_DONE;
}

static const struct tp_app empty = { .name = "empty", .message = empty_message };

/* Issue 7, defect 2, at its source: raw framing makes zero bytes of zero
 * bytes, and no message (an empty one used to stall the reactor's writer). */
Test(call, issue_7_zero_byte_output_makes_no_message)
{
    struct tp_msg *m = batch("abc", 3, 0), *r;
    struct tp_msg_list out;

    run(&empty, TP_FRAMING_RAW, m, &out);
    r = tp_msg_list_pop(&out);
    cr_assert_eq(r, m, "something came before the batch itself");
    cr_assert_eq(r->kind, TP_MSG_DONE);
    cr_assert_not(r->flags & TP_MSG_F_REPLY);
    cr_assert_null(tp_msg_list_pop(&out));
    tp_msg_free(r);
    /* With line framing an empty payload is a line: "\n" each. */
    m = batch("abc\n", 4, 0);
    run(&empty, TP_FRAMING_LINE, m, &out);
    for (int i = 0; i < 3; i++) {
        r = tp_msg_list_pop(&out);
        expect(r, i < 2 ? TP_MSG_SEND : TP_MSG_BROADCAST, "\n", 1);
        tp_msg_free(r);
    }
    while ((r = tp_msg_list_pop(&out)) != NULL)
        tp_msg_free(r);
}

static int whoami_message(struct tp_call *call, char *data, size_t len)
{
    char line[64];
    struct tp_handle h = tp_call_conn(call);
    int n = snprintf(line, sizeof(line), "%s %u.%u", (const char *)tp_call_state(call),
                     h.slot, h.gen);

    return tp_call_reply(call, line, (size_t)n) < 0 ? TP_APP_CLOSE : TP_APP_DONE;
}

static const struct tp_app whoami = { .name = "whoami", .message = whoami_message };

Test(call, state_and_handle_are_the_listeners_and_the_connections)
{
    struct tp_call_env env = { &whoami, (void *)"room", TP_FRAMING_LINE, 1000, NULL };
    struct tp_msg *m = batch("?\n", 2, 0), *r;
    struct tp_msg_list out;

    tp_msg_list_init(&out);
    tp_call_run(&env, m, &out);
    r = tp_msg_list_pop(&out);
    expect(r, TP_MSG_SEND, "room 3.9\n", 9);
    tp_msg_free(r);
    r = tp_msg_list_pop(&out);
    cr_assert_eq(r->kind, TP_MSG_DONE);
    tp_msg_free(r);
}

/* Rewrites the batch buffer as "<n messages>!" repeated to fill a length
 * given by the batch's first byte ('0'+k: k * 10 bytes), and keeps it. */
static int rewrite_batch(struct tp_call *call, char *data, size_t len)
{
    size_t want = (size_t)(data[0] - '0') * 10, i;
    bool close_after = data[1] == 'c';

    cr_assert_geq(tp_call_room(call), len);
    if (want > tp_call_room(call))
        return TP_APP_DONE;
    for (i = 0; i < want; i++)
        data[i] = (char)('a' + i % 26);
    tp_call_keep(call, want);
    return close_after ? TP_APP_CLOSE : TP_APP_DONE;
}

static const struct tp_app rewrite_app = { .name = "rewrite", .batch = rewrite_batch };

Test(call, keep_makes_the_rewritten_batch_buffer_the_reply)
{
    struct tp_msg *m = batch("5\n", 2, 0), *r;
    struct tp_msg_list out;

    cr_assert_geq(m->cap, 50u);
    run(&rewrite_app, TP_FRAMING_LINE, m, &out);
    r = tp_msg_list_pop(&out);
    cr_assert_eq(r, m, "no copy, no new buffer");
    expect(r, TP_MSG_DONE, "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwx", 50);
    cr_assert(r->flags & TP_MSG_F_REPLY);
    cr_assert(!(r->flags & TP_MSG_F_CLOSE));
    cr_assert_null(tp_msg_list_pop(&out));
    tp_msg_free(r);

    m = batch("2c\n", 3, 0);                 /* the reply, then close */
    run(&rewrite_app, TP_FRAMING_LINE, m, &out);
    r = tp_msg_list_pop(&out);
    expect(r, TP_MSG_DONE, "abcdefghijklmnopqrst", 20);
    cr_assert(r->flags & TP_MSG_F_REPLY);
    cr_assert(r->flags & TP_MSG_F_CLOSE);
    tp_msg_free(r);
}

/* keep, then a reply: both go out, in that order, the kept bytes copied. */
static int keep_then_reply(struct tp_call *call, char *data, size_t len)
{
    memcpy(data, "first,", 6);
    tp_call_keep(call, 6);
    cr_assert_eq(tp_call_reply(call, "second", 6), 0);
    cr_assert_eq(tp_call_room(call), 0);
    return TP_APP_KEEP;
}

static const struct tp_app keep_reply_app = { .name = "keepreply", .batch = keep_then_reply };

Test(call, a_reply_after_keep_copies_the_kept_bytes_first)
{
    struct tp_msg *m = batch("x\n", 2, 0), *r;
    struct tp_msg_list out;

    run(&keep_reply_app, TP_FRAMING_RAW, m, &out);
    r = tp_msg_list_pop(&out);
    expect(r, TP_MSG_SEND, "first,second", 12);
    tp_msg_free(r);
    r = tp_msg_list_pop(&out);
    cr_assert_eq(r, m);
    cr_assert(!(r->flags & TP_MSG_F_REPLY));
    tp_msg_free(r);
}

/* App chat: a run of lines is one broadcast of the run as it came, not
 * back to the sender, and the batch itself is no reply; after EOF a last
 * line without its '\n' gets one. */
Test(call, chat_broadcasts_a_run_of_lines_once_as_it_came)
{
    struct tp_listen_conf lc;
    struct tp_call_env env = { &tp_app_chat, NULL, TP_FRAMING_LINE, 1000, NULL };
    struct tp_msg *m = batch("a\nbb\nccc", 8, TP_MSG_F_EOF), *r;
    struct tp_msg_list out;

    tp_conf_listen_init(&lc);
    cr_assert_eq(tp_app_chat.init(&env.state, &lc), 0);
    tp_msg_list_init(&out);
    tp_call_run(&env, m, &out);
    r = tp_msg_list_pop(&out);
    expect(r, TP_MSG_BROADCAST, "a\nbb\n", 5);
    cr_assert_not(r->flags & TP_MSG_F_SELF);
    cr_assert_eq(r->h.slot, 3);
    tp_msg_free(r);
    r = tp_msg_list_pop(&out);
    expect(r, TP_MSG_BROADCAST, "ccc\n", 4);
    tp_msg_free(r);
    r = tp_msg_list_pop(&out);
    cr_assert_eq(r, m);
    cr_assert_eq(r->kind, TP_MSG_DONE);
    cr_assert_not(r->flags & (TP_MSG_F_REPLY | TP_MSG_F_CLOSE));
    cr_assert_eq(r->count, 3, "three messages in the batch");
    cr_assert_null(tp_msg_list_pop(&out));
    tp_msg_free(r);
    tp_app_chat.fini(env.state);
}

/* With chat_prefix and join_notice: open hears the peer and the count from
 * the reactor, every line of a run gets the prefix, close says who left. */
Test(call, chat_prefix_and_notices_use_the_peer_and_member_count)
{
    struct tp_listen_conf lc;
    struct tp_call_env env = { &tp_app_chat, NULL, TP_FRAMING_LINE, 1000, NULL };
    struct tp_msg *m = tp_msg_new(64), *r;
    struct tp_msg_list out;
    void *conn;

    tp_conf_listen_init(&lc);
    lc.chat_prefix = lc.join_notice = true;
    cr_assert_eq(tp_app_chat.init(&env.state, &lc), 0);
    m->kind = TP_MSG_OPEN;
    m->count = 7;
    strcpy(m->data, "[::1]:4242");
    tp_msg_list_init(&out);
    tp_call_run(&env, m, &out);
    r = tp_msg_list_pop(&out);
    expect(r, TP_MSG_BROADCAST, "* [::1]:4242 joined (7 members)\n", 32);
    cr_assert(r->flags & TP_MSG_F_SELF, "the newcomer hears it too");
    tp_msg_free(r);
    r = tp_msg_list_pop(&out);
    cr_assert_eq(r->kind, TP_MSG_DONE);
    conn = r->conn_data;
    cr_assert_not_null(conn);
    tp_msg_free(r);

    m = batch("hi\nyou\n", 7, 0);
    m->conn_data = conn;
    tp_call_run(&env, m, &out);
    r = tp_msg_list_pop(&out);
    expect(r, TP_MSG_BROADCAST, "[::1]:4242: hi\n[::1]:4242: you\n", 31);
    tp_msg_free(r);
    tp_msg_free(tp_msg_list_pop(&out));

    m = tp_msg_new(0);
    m->kind = TP_MSG_CLOSE;
    m->count = 6;
    m->conn_data = conn;
    tp_call_run(&env, m, &out);
    r = tp_msg_list_pop(&out);
    expect(r, TP_MSG_BROADCAST, "* [::1]:4242 left (6 members)\n", 30);
    tp_msg_free(r);
    r = tp_msg_list_pop(&out);
    cr_assert_null(r->conn_data, "close freed it");
    tp_msg_free(r);
    tp_app_chat.fini(env.state);
}
