/* Queues: the worker pool under threads. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tp_pool.h"

static atomic_uint ran;

/* Doubles a counter in the payload and hands the message back. */
static void work_double(void *arg, struct tp_msg *m, struct tp_msg_list *out)
{
    uint64_t v;

    (void)arg;
    if (m->len >= sizeof(v)) {
        memcpy(&v, m->data, sizeof(v));
        v *= 2;
        memcpy(m->data, &v, sizeof(v));
    }
    m->kind = TP_MSG_DONE;
    atomic_fetch_add(&ran, 1);
    tp_msg_list_push(out, m);
}

/* Produces an extra message before handing the original back. */
static void work_extra(void *arg, struct tp_msg *m, struct tp_msg_list *out)
{
    struct tp_msg *x = tp_msg_new(8);

    (void)arg;
    x->kind = TP_MSG_SEND;
    x->h = m->h;
    tp_msg_list_push(out, x);
    m->kind = TP_MSG_DONE;
    tp_msg_list_push(out, m);
}

static struct tp_msg *numbered(uint64_t v)
{
    struct tp_msg *m = tp_msg_new(sizeof(v));

    memcpy(m->data, &v, sizeof(v));
    m->len = sizeof(v);
    m->kind = TP_MSG_DATA;
    m->h.slot = (uint32_t)v;
    return m;
}

/* Drains until n messages came back or 10 s passed, waiting on the eventfd
 * as the reactor does. Returns how many came back. */
static size_t collect(tp_pool_t *p, struct tp_msg_list *got, size_t n)
{
    struct pollfd pfd = { .fd = tp_pool_event_fd(p), .events = POLLIN };
    size_t have = 0;
    int i, r;

    bool again;

    for (i = 0; i < 10000 && have < n; i++) {
        r = tp_pool_drain(p, true, got, &again);
        cr_assert_geq(r, 0);
        have += (size_t)r;
        if (r == 0 && !again)
            poll(&pfd, 1, 1);
    }
    return have;
}

Test(pool, every_message_comes_back_once_from_many_workers)
{
    enum { N = 100000 };
    tp_pool_t *p = tp_pool_create(4, work_double, NULL, UINT64_MAX);
    static char seen[N];
    struct tp_msg_list got;
    struct tp_msg *m;
    uint64_t i, v;

    cr_assert_not_null(p);
    atomic_store(&ran, 0);
    for (i = 0; i < N; i++) {
        cr_assert_eq(tp_pool_submit(p, numbered(i)), 0);
        if (i % 512 == 511)
            tp_pool_flush(p);
    }
    tp_pool_flush(p);
    tp_msg_list_init(&got);
    cr_assert_eq(collect(p, &got, N), N);
    while ((m = tp_msg_list_pop(&got)) != NULL) {
        memcpy(&v, m->data, sizeof(v));
        cr_assert_eq(v, 2 * (uint64_t)m->h.slot);
        cr_assert_eq(seen[m->h.slot]++, 0, "message %u came back twice", m->h.slot);
        tp_msg_free(m);
    }
    cr_assert_eq(atomic_load(&ran), N);
    cr_assert_eq(tp_pool_inflight(p), 0);
    tp_pool_destroy(p);
}

Test(pool, replies_of_one_message_come_back_in_order)
{
    tp_pool_t *p = tp_pool_create(2, work_extra, NULL, UINT64_MAX);
    struct tp_msg_list got;
    struct tp_msg *a, *b;

    tp_pool_submit(p, numbered(7));
    tp_pool_flush(p);
    tp_msg_list_init(&got);
    cr_assert_eq(collect(p, &got, 2), 2);
    a = tp_msg_list_pop(&got);
    b = tp_msg_list_pop(&got);
    cr_assert_eq(a->kind, TP_MSG_SEND);
    cr_assert_eq(b->kind, TP_MSG_DONE);
    cr_assert_eq(tp_pool_inflight(p), 0, "only the original ends a message");
    tp_msg_free(a);
    tp_msg_free(b);
    tp_pool_destroy(p);
}

Test(pool, submit_refuses_past_the_backlog_until_drained)
{
    tp_pool_t *p = tp_pool_create(1, work_double, NULL, 16);
    struct tp_msg_list got;
    struct tp_msg *m = numbered(1), *open_event = tp_msg_new(0);

    cr_assert_eq(tp_pool_submit(p, numbered(1)), 0);
    cr_assert_eq(tp_pool_submit(p, numbered(2)), 0);
    cr_assert(tp_pool_is_full(p));
    cr_assert_eq(tp_pool_submit(p, m), -ENOBUFS);
    open_event->kind = TP_MSG_OPEN;
    cr_assert_eq(tp_pool_submit(p, open_event), 0, "events without bytes pass");
    tp_pool_flush(p);
    tp_msg_list_init(&got);
    cr_assert_eq(collect(p, &got, 3), 3);
    cr_assert_not(tp_pool_is_full(p));
    cr_assert_eq(tp_pool_submit(p, m), 0);
    tp_pool_flush(p);
    cr_assert_eq(collect(p, &got, 1), 1);
    while ((m = tp_msg_list_pop(&got)) != NULL)
        tp_msg_free(m);
    tp_pool_destroy(p);
}

Test(pool, sleeping_workers_wake_for_work_after_a_pause)
{
    tp_pool_t *p = tp_pool_create(2, work_double, NULL, UINT64_MAX);
    struct tp_msg_list got;
    struct tp_msg *m;
    int round;

    tp_msg_list_init(&got);
    for (round = 0; round < 20; round++) {
        usleep(2000);   /* let the workers fall asleep */
        tp_pool_submit(p, numbered((uint64_t)round));
        tp_pool_flush(p);
        cr_assert_eq(collect(p, &got, 1), 1, "round %d lost its wake-up", round);
        tp_msg_free(tp_msg_list_pop(&got));
    }
    cr_assert_null((m = tp_msg_list_pop(&got)));
    tp_pool_destroy(p);
}

Test(pool, destroy_frees_work_never_run)
{
    tp_pool_t *p = tp_pool_create(1, work_double, NULL, UINT64_MAX);
    int i;

    for (i = 0; i < 1000; i++) {
        tp_pool_submit(p, numbered((uint64_t)i));
        if (i == 500)
            tp_pool_flush(p);
    }
    tp_pool_destroy(p);   /* staged, queued and replied messages: no leak */
}

Test(pool, zero_workers_run_the_work_at_flush_on_the_caller)
{
    tp_pool_t *p = tp_pool_create(0, work_extra, NULL, 1 << 20);
    struct tp_msg_list got;
    struct tp_msg *m;
    bool again = true;
    int i;

    cr_assert_not_null(p);
    cr_assert(tp_pool_is_inline(p));
    cr_assert_eq(tp_pool_event_fd(p), -1);
    tp_msg_list_init(&got);
    for (i = 0; i < 3; i++)
        cr_assert_eq(tp_pool_submit(p, numbered((uint64_t)i)), 0);
    /* Nothing runs before the flush, as with threads. */
    cr_assert_eq(tp_pool_drain(p, false, &got, &again), 0);
    cr_assert_eq(tp_pool_inflight(p), 3);
    cr_assert_eq(tp_pool_flush(p), 3);
    cr_assert_eq(tp_pool_drain(p, false, &got, &again), 6);
    cr_assert_not(again);
    cr_assert_eq(tp_pool_inflight(p), 0);
    for (i = 0; i < 3; i++) {             /* each extra, then its original */
        m = tp_msg_list_pop(&got);
        cr_assert_eq(m->kind, TP_MSG_SEND);
        cr_assert_eq(m->h.slot, (uint32_t)i);
        tp_msg_free(m);
        m = tp_msg_list_pop(&got);
        cr_assert_eq(m->kind, TP_MSG_DONE);
        cr_assert_eq(m->h.slot, (uint32_t)i);
        tp_msg_free(m);
    }
    cr_assert_eq(tp_pool_flush(p), 0);
    tp_pool_submit(p, numbered(9));       /* destroy frees what was never run */
    tp_pool_destroy(p);
}

Test(pool, zero_workers_keep_the_backlog_limit)
{
    tp_pool_t *p = tp_pool_create(0, work_double, NULL, 16);
    struct tp_msg_list got;
    struct tp_msg *m;
    bool again;

    tp_msg_list_init(&got);
    cr_assert_eq(tp_pool_submit(p, numbered(1)), 0);
    cr_assert_eq(tp_pool_submit(p, numbered(2)), 0);
    cr_assert(tp_pool_is_full(p));
    m = numbered(3);
    cr_assert_eq(tp_pool_submit(p, m), -ENOBUFS);
    tp_msg_free(m);                       /* refused: still ours */
    tp_pool_flush(p);
    cr_assert(tp_pool_is_full(p), "full until the replies are taken");
    cr_assert_eq(tp_pool_drain(p, false, &got, &again), 2);
    cr_assert_not(tp_pool_is_full(p));
    while ((m = tp_msg_list_pop(&got)) != NULL)
        tp_msg_free(m);
    tp_pool_destroy(p);
}
