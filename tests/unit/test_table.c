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

/* Idle memory per connection (issue 8: at most 163 bytes, measured by the
 * bench's hold row as RSS): the slot is most of it. */
Test(table, a_connection_slot_stays_small)
{
    cr_assert_leq(sizeof(struct tp_conn), 152);
}
