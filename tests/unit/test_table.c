/* The connection table's lists: the order the reactor comes back to
 * connections in (pending reads wait their turn in it). */
#include <criterion/criterion.h>

#include "tp_table.h"

/* Takes the pending list and walks it into got. */
static void walk_all(struct tp_table *t, struct tp_conn **got, int *n)
{
    struct tp_conn *c, *walk = tp_table_take(t, TP_LIST_PENDING);

    for (*n = 0; (c = tp_table_pop(t, &walk, TP_LIST_PENDING)) != NULL; (*n)++)
        got[*n] = c;
}

Test(table, lists_keep_the_order_connections_were_added_in)
{
    struct tp_table t;
    struct tp_conn *c[5], *got[8];
    int i, n;

    cr_assert_eq(tp_table_init(&t, 16), 0);
    for (i = 0; i < 5; i++)
        c[i] = tp_table_get(&t);
    for (i = 0; i < 5; i++)
        tp_table_add(&t, TP_LIST_PENDING, c[i]);
    tp_table_add(&t, TP_LIST_PENDING, c[0]);      /* already there: no move */
    walk_all(&t, got, &n);
    cr_assert_eq(n, 5);
    for (i = 0; i < 5; i++)
        cr_assert_eq(got[i], c[i], "position %d", i);
    cr_assert(tp_table_is_empty(&t, TP_LIST_PENDING));
    /* After a take, the list starts again from empty, in order. */
    tp_table_add(&t, TP_LIST_PENDING, c[3]);
    tp_table_add(&t, TP_LIST_PENDING, c[1]);
    walk_all(&t, got, &n);
    cr_assert_eq(n, 2);
    cr_assert_eq(got[0], c[3]);
    cr_assert_eq(got[1], c[1]);
    for (i = 0; i < 5; i++)
        tp_table_put(&t, c[i]);
    tp_table_fini(&t);
}

/* One re-added while its list is walked goes to the next walk, at the end. */
Test(table, a_connection_added_during_a_walk_waits_for_the_next_one)
{
    struct tp_table t;
    struct tp_conn *a, *b, *x, *walk;

    cr_assert_eq(tp_table_init(&t, 16), 0);
    a = tp_table_get(&t);
    b = tp_table_get(&t);
    tp_table_add(&t, TP_LIST_PENDING, a);
    tp_table_add(&t, TP_LIST_PENDING, b);
    walk = tp_table_take(&t, TP_LIST_PENDING);
    x = tp_table_pop(&t, &walk, TP_LIST_PENDING);
    cr_assert_eq(x, a);
    tp_table_add(&t, TP_LIST_PENDING, a);
    cr_assert_eq(tp_table_pop(&t, &walk, TP_LIST_PENDING), b);
    cr_assert_null(tp_table_pop(&t, &walk, TP_LIST_PENDING));
    walk = tp_table_take(&t, TP_LIST_PENDING);
    cr_assert_eq(tp_table_pop(&t, &walk, TP_LIST_PENDING), a);
    cr_assert_null(tp_table_pop(&t, &walk, TP_LIST_PENDING));
    tp_table_put(&t, a);
    tp_table_put(&t, b);
    tp_table_fini(&t);
}

/* The reactor's walk of the pending list as a queue (run_queue): it may
 * stop after the first few (the turn's share is used up), and one served
 * and put back goes behind every one not yet served, so the next walk
 * starts with those; the walk ends at the list's last at its start. */
Test(table, a_connection_served_and_put_back_waits_behind_the_unserved)
{
    struct tp_table t;
    struct tp_conn *c[4], *got[8], *x, *last;
    int i, n;

    cr_assert_eq(tp_table_init(&t, 16), 0);
    cr_assert_null(tp_table_last(&t, TP_LIST_PENDING));
    cr_assert_null(tp_table_shift(&t, TP_LIST_PENDING));
    for (i = 0; i < 4; i++) {
        c[i] = tp_table_get(&t);
        tp_table_add(&t, TP_LIST_PENDING, c[i]);
        cr_assert_eq(tp_table_last(&t, TP_LIST_PENDING), c[i]);
    }
    /* A walk that serves two, puts them back and stops. */
    for (i = 0; i < 2; i++) {
        x = tp_table_shift(&t, TP_LIST_PENDING);
        cr_assert_eq(x, c[i]);
        tp_table_add(&t, TP_LIST_PENDING, x);
    }
    cr_assert_eq(tp_table_last(&t, TP_LIST_PENDING), c[1]);
    /* The next walk: the two unserved first, then the two served. */
    last = tp_table_last(&t, TP_LIST_PENDING);
    for (n = 0; (x = tp_table_shift(&t, TP_LIST_PENDING)) != NULL;) {
        got[n++] = x;
        tp_table_add(&t, TP_LIST_PENDING, x);   /* put back: after `last` */
        if (x == last)
            break;
    }
    cr_assert_eq(n, 4, "the walk ends at the last of its start");
    cr_assert_eq(got[0], c[2]);
    cr_assert_eq(got[1], c[3]);
    cr_assert_eq(got[2], c[0]);
    cr_assert_eq(got[3], c[1]);
    /* Shifting the only one empties the list; adding starts it again. */
    walk_all(&t, got, &n);
    cr_assert_eq(n, 4);
    tp_table_add(&t, TP_LIST_PENDING, c[2]);
    cr_assert_eq(tp_table_shift(&t, TP_LIST_PENDING), c[2]);
    cr_assert(tp_table_is_empty(&t, TP_LIST_PENDING));
    cr_assert_null(tp_table_last(&t, TP_LIST_PENDING));
    tp_table_add(&t, TP_LIST_PENDING, c[0]);
    cr_assert_eq(tp_table_last(&t, TP_LIST_PENDING), c[0]);
    cr_assert_eq(tp_table_shift(&t, TP_LIST_PENDING), c[0]);
    for (i = 0; i < 4; i++)
        tp_table_put(&t, c[i]);
    tp_table_fini(&t);
}

/* The last on the other lists too: next[] is indexed by the list. */
Test(table, each_list_has_its_own_last)
{
    struct tp_table t;
    struct tp_conn *a, *b;

    cr_assert_eq(tp_table_init(&t, 16), 0);
    a = tp_table_get(&t);
    b = tp_table_get(&t);
    tp_table_add(&t, TP_LIST_WAITING, a);
    tp_table_add(&t, TP_LIST_DIRTY, b);
    tp_table_add(&t, TP_LIST_DIRTY, a);
    cr_assert_eq(tp_table_last(&t, TP_LIST_WAITING), a);
    cr_assert_eq(tp_table_last(&t, TP_LIST_DIRTY), a);
    cr_assert_null(tp_table_last(&t, TP_LIST_PENDING));
    cr_assert_eq(tp_table_shift(&t, TP_LIST_DIRTY), b);
    cr_assert_eq(tp_table_shift(&t, TP_LIST_DIRTY), a);
    cr_assert_eq(tp_table_shift(&t, TP_LIST_WAITING), a);
    tp_table_put(&t, a);
    tp_table_put(&t, b);
    tp_table_fini(&t);
}

/* Idle memory per connection (issue 8: at most 163 bytes, measured by the
 * bench's hold row as RSS): the slot is most of it. */
Test(table, a_connection_slot_stays_small)
{
    cr_assert_leq(sizeof(struct tp_conn), 152);
}
