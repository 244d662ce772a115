/* Queues: the worker pool under threads. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tp_pool.h"

/* Every message to a worker (inline_max_ns 0): these tests are about the
 * hand-off. */
static const struct tp_pool_opts *backlog(uint64_t max)
{
    static struct tp_pool_opts o;

    o = (struct tp_pool_opts){ .backlog_max = max, .nclasses = 1 };
    return &o;
}

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
    tp_pool_t *p = tp_pool_create(4, work_double, NULL, backlog(UINT64_MAX));
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
    tp_pool_t *p = tp_pool_create(2, work_extra, NULL, backlog(UINT64_MAX));
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
    tp_pool_t *p = tp_pool_create(1, work_double, NULL, backlog(16));
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
    tp_pool_t *p = tp_pool_create(2, work_double, NULL, backlog(UINT64_MAX));
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
    tp_pool_t *p = tp_pool_create(1, work_double, NULL, backlog(UINT64_MAX));
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
    tp_pool_t *p = tp_pool_create(0, work_extra, NULL, backlog(1 << 20));
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
    tp_pool_t *p = tp_pool_create(0, work_double, NULL, backlog(16));
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

/* ---- what runs where: cheap work on the flushing thread ---- */

static pthread_t flusher;

/* Spins for as many µs as the message's first byte says (0: none), and
 * records in its second byte whether it ran on the flushing thread. */
static void work_timed(void *arg, struct tp_msg *m, struct tp_msg_list *out)
{
    struct timespec t0, t;
    long us = (unsigned char)m->data[0];

    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000 + (t.tv_nsec - t0.tv_nsec) / 1000 < us);
    m->data[1] = pthread_equal(pthread_self(), flusher) ? 'h' : 'w';
    m->kind = TP_MSG_DONE;
    tp_msg_list_push(out, m);
}

static struct tp_msg *costing(unsigned us, uint16_t cls)
{
    struct tp_msg *m = tp_msg_new(64);

    memset(m->data, 'x', 64);
    m->data[0] = (char)us;
    m->len = 64;
    m->kind = TP_MSG_DATA;
    m->listener = cls;
    return m;
}

/* Submits one message, flushes, waits for it; returns where it ran. */
static char run_one(tp_pool_t *p, unsigned us, uint16_t cls)
{
    struct tp_msg_list got;
    struct tp_msg *m;
    char where;

    tp_msg_list_init(&got);
    cr_assert_eq(tp_pool_submit(p, costing(us, cls)), 0);
    tp_pool_flush(p);
    cr_assert_eq(collect(p, &got, 1), 1);
    m = tp_msg_list_pop(&got);
    where = m->data[1];
    tp_msg_free(m);
    return where;
}

static tp_pool_t *routed_pool(void)
{
    struct tp_pool_opts o = { .backlog_max = UINT64_MAX, .nclasses = 2,
                              .inline_max_ns = 3000 };

    flusher = pthread_self();
    return tp_pool_create(2, work_timed, NULL, &o);
}

/* Class 0 costs nothing, class 1 costs 100 µs a message: after a few timed
 * runs class 1 goes to the workers, class 0 never leaves this thread, and
 * class 1 still comes back now and then to be timed again. */
Test(pool, cheap_work_runs_here_and_costly_work_at_the_workers)
{
    tp_pool_t *p = routed_pool();
    int here0 = 0, here1 = 0, i;

    cr_assert_not_null(p);
    for (i = 0; i < 20; i++)               /* learning */
        run_one(p, 100, 1);
    for (i = 0; i < 512; i++) {
        here0 += run_one(p, 0, 0) == 'h';
        here1 += run_one(p, 100, 1) == 'h';
    }
    cr_assert_eq(here0, 512, "cheap work ran here %d times of 512", here0);
    cr_assert(here1 >= 2 && here1 <= 16, "costly work ran here %d times of 512 "
              "(once in 128 to time it again)", here1);
    tp_pool_destroy(p);
}

/* One run that takes long (a preempted thread looks like that) does not send
 * a cheap class away: the next runs are still here. */
Test(pool, one_slow_run_does_not_send_cheap_work_away)
{
    tp_pool_t *p = routed_pool();
    int here = 0, i;

    for (i = 0; i < 50; i++)
        run_one(p, 0, 0);
    run_one(p, 250, 0);                     /* 250 µs once */
    for (i = 0; i < 50; i++)
        here += run_one(p, 0, 0) == 'h';
    cr_assert_eq(here, 50, "after one slow run, %d of 50 ran here", here);
    tp_pool_destroy(p);
}

/* With inline_max_ns 0 (the hand-off tests above), nothing runs here. */
Test(pool, inline_max_ns_0_sends_everything_to_the_workers)
{
    struct tp_pool_opts o = { .backlog_max = UINT64_MAX, .nclasses = 1 };
    tp_pool_t *p;
    int here = 0, i;

    flusher = pthread_self();
    p = tp_pool_create(2, work_timed, NULL, &o);
    for (i = 0; i < 100; i++)
        here += run_one(p, 0, 0) == 'h';
    cr_assert_eq(here, 0);
    tp_pool_destroy(p);
}
