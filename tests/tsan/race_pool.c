/* race_pool - drives the worker pool hard for ThreadSanitizer.
 *
 * Many short bursts with pauses in between, so workers keep falling asleep
 * and waking up (the lost-wake-up window), each message checked exactly once.
 * Exits 0 when every message came back once, 1 otherwise. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
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

#define ROUNDS 2000
#define PER_ROUND 64

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void work(void *arg, struct tp_msg *m, struct tp_msg_list *out)
{
    (void)arg;
    m->data[0] ^= 0x20;   /* workers write the message ... */
    m->kind = TP_MSG_DONE;
    tp_msg_list_push(out, m);
}

int main(void)
{
    tp_pool_t *p = tp_pool_create(4, work, NULL, backlog(UINT64_MAX));
    static unsigned char seen[ROUNDS * PER_ROUND];
    struct pollfd pfd;
    struct tp_msg_list got;
    struct tp_msg *m;
    int round, i, back;
    double deadline;

    if (p == NULL)
        return perror("tp_pool_create"), 1;
    pfd = (struct pollfd){ .fd = tp_pool_event_fd(p), .events = POLLIN };
    for (round = 0; round < ROUNDS; round++) {
        for (i = 0; i < PER_ROUND; i++) {
            m = tp_msg_new(1);
            m->data[0] = 'a';
            m->len = 1;
            m->kind = TP_MSG_DATA;
            m->h.slot = (uint32_t)(round * PER_ROUND + i);
            tp_pool_submit(p, m);
        }
        tp_pool_flush(p);
        tp_msg_list_init(&got);
        deadline = now_s() + 10;
        for (back = 0; back < PER_ROUND && now_s() < deadline;) {
            bool again;
            int n = tp_pool_drain(p, true, &got, &again);

            back += n;
            if (again)
                sched_yield();      /* a worker is mid-enqueue (maybe preempted) */
            else if (n == 0 && poll(&pfd, 1, 1) < 0)
                break;
        }
        while ((m = tp_msg_list_pop(&got)) != NULL) {
            /* ... and the reactor reads it: TSan checks the hand-off. */
            if (m->data[0] != 'A' || seen[m->h.slot]++ != 0) {
                fprintf(stderr, "message %u wrong or repeated\n", m->h.slot);
                return 1;
            }
            tp_msg_free(m);
        }
        if (back != PER_ROUND) {
            fprintf(stderr, "round %d: %d of %d came back\n", round, back, PER_ROUND);
            return 1;
        }
        if (round % 100 == 0)
            usleep(1000);   /* let workers sleep */
    }
    tp_pool_destroy(p);
    printf("race_pool: %d messages, each back once\n", ROUNDS * PER_ROUND);
    return 0;
}
