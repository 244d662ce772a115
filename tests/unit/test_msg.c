/* Buffers: message allocation, size classes and the reactor's cache. */
#include <criterion/criterion.h>
#include <string.h>

#include "tp_frame.h"
#include "tp_msg.h"

Test(msg, new_rounds_up_to_a_size_class_and_zeroes_the_header)
{
    struct tp_msg *m = tp_msg_new(100);

    cr_assert_not_null(m);
    cr_assert_geq(m->cap, 100);
    cr_assert_eq(m->cap, tp_msg_class_cap(1));
    cr_assert_eq(m->sclass, 1);
    cr_assert_eq(m->len, 0);
    cr_assert_null(m->next);
    cr_assert_eq(m->kind, 0);
    tp_msg_free(m);
}

Test(msg, each_class_holds_more_and_a_message_of_its_size_fits_it)
{
    unsigned k;

    cr_assert_eq(tp_msg_class_cap(0), 0);
    for (k = 1; tp_msg_class_cap(k) > 0; k++) {
        struct tp_msg *m = tp_msg_new(tp_msg_class_cap(k));

        cr_assert_gt(tp_msg_class_cap(k), tp_msg_class_cap(k - 1));
        cr_assert_eq(m->sclass, k);
        cr_assert_eq(m->cap, tp_msg_class_cap(k));
        tp_msg_free(m);
    }
    cr_assert_geq(k, 4, "read buffers use classes 1..3");
}

/* A read buffer of a class holds a message of its round size and a frame
 * header in one read; one a few bytes short took a read that filled it, a
 * copy into a bigger one and a second read per 64 KiB line. */
Test(msg, a_round_size_message_and_its_frame_header_fit_its_class)
{
    size_t size = 4096;
    unsigned k;

    for (k = 1; k <= 3; k++, size *= 4) {
        cr_assert_geq(tp_msg_class_cap(k), size + TP_FRAME_OVERHEAD + 1,
                      "class %u: %zu bytes of data", k, tp_msg_class_cap(k));
        cr_assert_lt(tp_msg_class_cap(k), size + 4096, "class %u: %zu bytes of data",
                     k, tp_msg_class_cap(k));
    }
}

Test(msg, header_only_messages_have_no_room)
{
    struct tp_msg *m = tp_msg_new(0);

    cr_assert_eq(m->cap, 0);
    tp_msg_free(m);
}

Test(msg, huge_messages_get_exactly_their_size)
{
    struct tp_msg *m = tp_msg_new(10u << 20);

    cr_assert_eq(m->cap, 10u << 20);
    cr_assert_eq(m->sclass, TP_MSG_NOCLASS);
    memset(m->data, 'x', m->cap);
    tp_msg_free(m);
}

Test(msg, cache_reuses_what_was_put_back)
{
    struct tp_msg_cache c;
    struct tp_msg *a, *b;

    tp_msg_cache_init(&c);
    a = tp_msg_cache_get(&c, 1000);
    a->len = 7;
    a->kind = TP_MSG_DATA;
    tp_msg_cache_put(&c, a);
    b = tp_msg_cache_get(&c, 2000);
    cr_assert_eq(a, b);
    cr_assert_eq(b->len, 0, "a reused message comes back with a clean header");
    cr_assert_eq(b->kind, 0);
    tp_msg_cache_put(&c, b);
    tp_msg_cache_fini(&c);
}

/* 8 MiB of a class: 128 buffers of 64 KiB, 2048 of 4 KiB. */
Test(msg, cache_keeps_a_bounded_number)
{
    struct tp_msg_cache c;
    static struct tp_msg *m[3000];
    int i;

    tp_msg_cache_init(&c);
    for (i = 0; i < 200; i++)
        m[i] = tp_msg_cache_get(&c, 60000);
    for (i = 0; i < 200; i++)
        tp_msg_cache_put(&c, m[i]);
    cr_assert_eq(c.count[3], 128);
    for (i = 0; i < 3000; i++)
        m[i] = tp_msg_cache_get(&c, 100);
    for (i = 0; i < 3000; i++)
        tp_msg_cache_put(&c, m[i]);
    cr_assert_eq(c.count[1], 2048);
    tp_msg_cache_fini(&c);
    cr_assert_eq(c.count[1], 0);
    cr_assert_eq(c.count[3], 0);
}

Test(msg, cache_takes_messages_allocated_by_other_threads)
{
    struct tp_msg_cache c;
    struct tp_msg *m = tp_msg_new(50);

    tp_msg_cache_init(&c);
    tp_msg_cache_put(&c, m);
    cr_assert_eq(tp_msg_cache_get(&c, 50), m);
    tp_msg_cache_put(&c, m);
    tp_msg_cache_fini(&c);
}

Test(msg, move_keeps_the_tail_and_rebases_the_cursor)
{
    struct tp_msg_cache c;
    struct tp_msg *m, *n;

    tp_msg_cache_init(&c);
    m = tp_msg_cache_get(&c, 100);
    memcpy(m->data, "abc\ndef", 7);
    m->len = 7;
    m->cut = 4;
    m->scanned = 3;
    n = tp_msg_cache_move(&c, m, 4, 20000);
    cr_assert_not_null(n);
    cr_assert_geq(n->cap, 20000);
    cr_assert_eq(n->len, 3);
    cr_assert_eq(memcmp(n->data, "def", 3), 0);
    cr_assert_eq(n->cut, 0);
    cr_assert_eq(n->scanned, 3);
    tp_msg_cache_put(&c, n);
    tp_msg_cache_fini(&c);
}

Test(msg, list_is_first_in_first_out)
{
    struct tp_msg a = { 0 }, b = { 0 }, c = { 0 };
    struct tp_msg_list l;

    tp_msg_list_init(&l);
    cr_assert_null(tp_msg_list_pop(&l));
    tp_msg_list_push(&l, &a);
    tp_msg_list_push(&l, &b);
    cr_assert_eq(tp_msg_list_pop(&l), &a);
    tp_msg_list_push(&l, &c);
    cr_assert_eq(tp_msg_list_pop(&l), &b);
    cr_assert_eq(tp_msg_list_pop(&l), &c);
    cr_assert_null(tp_msg_list_pop(&l));
    tp_msg_list_push(&l, &a);
    cr_assert_eq(tp_msg_list_pop(&l), &a);
}

Test(msg, list_walks_from_the_oldest_to_the_newest_and_ends)
{
    struct tp_msg a = { 0 }, b = { 0 }, c = { 0 }, *want[] = { &a, &b, &c }, *m;
    struct tp_msg_list l;
    int n = 0;

    tp_msg_list_init(&l);
    cr_assert(tp_msg_list_empty(&l));
    cr_assert_null(tp_msg_list_first(&l));
    tp_msg_list_push(&l, &a);
    cr_assert_eq(tp_msg_list_first(&l), &a);
    cr_assert_null(tp_msg_list_next(&l, &a));
    tp_msg_list_push(&l, &b);
    tp_msg_list_push(&l, &c);
    cr_assert_not(tp_msg_list_empty(&l));
    for (m = tp_msg_list_first(&l); m != NULL; m = tp_msg_list_next(&l, m)) {
        cr_assert_lt(n, 3, "the walk does not end");
        cr_assert_eq(m, want[n++]);
    }
    cr_assert_eq(n, 3);
    cr_assert_eq(tp_msg_list_pop(&l), &a);
    cr_assert_eq(tp_msg_list_first(&l), &b);
    cr_assert_eq(tp_msg_list_pop(&l), &b);
    cr_assert_eq(tp_msg_list_pop(&l), &c);
    cr_assert(tp_msg_list_empty(&l));
}
