/* tp_pool.c - worker threads fed by per-worker wait-free queues.
 *
 * Each worker is the only consumer of its own queue, so it takes work with
 * the lock-free splice (no dequeue mutex); the reactor is the only consumer
 * of the reply queue. A worker about to sleep publishes `sleeping` and checks
 * its queue again; the reactor publishes work and then checks `sleeping`.
 * Both sides use full barriers, so one of them always sees the other and no
 * wake-up is lost (the sleeping-flag form of h2o's multithread queue).
 *
 * With no workers the pool is inline: the same submit, flush and drain, with
 * flush running the work on the calling thread into a plain reply list. */
#include "tp_pool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "tp_tsan.h"

#define NO_WORKER UINT16_MAX
#define COST_BASE 64          /* bytes a batch costs beyond its length */
#define COST_WEIGHT 0.125f    /* of a new timing in the moving average */
#define RETIME_EVERY 128      /* a class sent to workers runs here once in this
                                 many batches, so its cost stays current */
#define HANDOFF_NS_PER_BYTE 0.1f  /* what moving a batch's bytes to another
                                     core costs, beyond inline_max_ns: work
                                     cheaper per byte than that (echo's line
                                     count) stays here however big the batch */

struct worker {
    /* Reactor splices in, this worker splices out. */
    _Alignas(64) struct __cds_wfcq_head head;
    struct cds_wfcq_tail tail;
    /* Futex word. Worker stores 1 before sleeping; reactor exchanges it to 0
     * and wakes. Seq-cst atomics on both sides. */
    _Alignas(64) atomic_int sleeping;
    /* Reactor only: messages staged for the next flush, and how many this
     * worker holds (to pick the least busy one). */
    _Alignas(64) struct tp_msg_list stage;
    uint32_t held;
    struct tp_pool *pool;
    pthread_t tid;
    uint16_t index;
};

/* What the pool has learned of one class's work, from the runs it timed on
 * the reactor thread. Reactor only. */
struct cost {
    float ns_per_byte;              /* moving average, per (len + COST_BASE) bytes */
    uint32_t sent;                  /* batches sent to workers since the last timed run */
};

struct tp_pool {
    tp_pool_work_cb *work;
    void *arg;
    struct cost *costs;             /* one per class; NULL for an inline pool */
    unsigned nclasses;
    uint32_t inline_max_ns;
    struct worker *workers;
    unsigned nworkers;
    atomic_bool stopping;           /* owner writes once, workers read */
    int event_fd;                   /* workers write, reactor reads */
    _Alignas(64) struct __cds_wfcq_head reply_head;  /* workers splice in */
    struct cds_wfcq_tail reply_tail;
    /* Reactor only: replies taken off the shared queue but not yet handed
     * out (a worker was mid-enqueue), and the backlog. */
    _Alignas(64) struct __cds_wfcq_head taken_head;
    struct cds_wfcq_tail taken_tail;
    uint64_t backlog, backlog_max;
    size_t inflight;
    /* Work that runs on the reactor thread at flush (all of it for an
     * inline pool), and its replies. */
    struct tp_msg_list stage, done;
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long futex(atomic_int *word, int op, int val)
{
    return syscall(SYS_futex, (int *)word, op, val, NULL, NULL, 0);
}

/* Worker: sleeps until the reactor publishes work or the pool stops. */
static void worker_sleep(struct worker *w)
{
    atomic_store(&w->sleeping, 1);
    if (cds_wfcq_empty(&w->head, &w->tail) &&
        !atomic_load(&w->pool->stopping))
        futex(&w->sleeping, FUTEX_WAIT_PRIVATE, 1);
    atomic_store(&w->sleeping, 0);
}

/* Worker: hands a batch of replies to the reactor, waking it if its queue
 * was empty (otherwise a wake-up is already pending or it is draining). */
static void worker_reply(struct worker *w, struct __cds_wfcq_head *h,
                         struct cds_wfcq_tail *t)
{
    struct tp_pool *p = w->pool;
    uint64_t one = 1;

    if (cds_wfcq_empty(h, t))
        return;
    if (__cds_wfcq_splice_blocking(&p->reply_head, &p->reply_tail, h, t) ==
        CDS_WFCQ_RET_DEST_EMPTY) {
        while (write(p->event_fd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
    }
}

/* Worker: runs every message it was given, in order, collecting replies. */
static void worker_run_batch(struct worker *w, struct __cds_wfcq_head *h,
                             struct cds_wfcq_tail *t)
{
    struct __cds_wfcq_head out_head;
    struct cds_wfcq_tail out_tail;
    struct cds_wfcq_node *node;
    struct tp_msg_list out;
    struct tp_msg *m;
    uint64_t took;

    __cds_wfcq_init(&out_head, &out_tail);
    while ((node = __cds_wfcq_dequeue_blocking(h, t)) != NULL) {
        m = caa_container_of(node, struct tp_msg, node);
        tp_tsan_acquire(m);
        took = now_ns();     /* per batch: a hand-off costs far more */
        m->queue_ns = took > m->queue_ns ? took - m->queue_ns : 1;
        tp_msg_list_init(&out);
        w->pool->work(w->pool->arg, m, &out);
        while ((m = tp_msg_list_pop(&out)) != NULL) {
            m->worker = w->index;
            cds_wfcq_node_init(&m->node);
            tp_tsan_release(m);
            cds_wfcq_enqueue(&out_head, &out_tail, &m->node);
        }
    }
    worker_reply(w, &out_head, &out_tail);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct __cds_wfcq_head h;
    struct cds_wfcq_tail t;

    for (;;) {
        __cds_wfcq_init(&h, &t);
        if (__cds_wfcq_splice_blocking(&h, &t, &w->head, &w->tail) !=
            CDS_WFCQ_RET_SRC_EMPTY) {
            worker_run_batch(w, &h, &t);
            continue;
        }
        if (atomic_load(&w->pool->stopping))
            return NULL;
        worker_sleep(w);
    }
}

static void wake(struct worker *w)
{
    if (atomic_load(&w->sleeping) && atomic_exchange(&w->sleeping, 0))
        futex(&w->sleeping, FUTEX_WAKE_PRIVATE, 1);
}

static int start_workers(struct tp_pool *p)
{
    sigset_t all, old;
    unsigned i;
    int err = 0;

    /* Workers never take signals: the reactor reads them from a signalfd. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (i = 0; i < p->nworkers; i++) {
        err = -pthread_create(&p->workers[i].tid, NULL, worker_main, &p->workers[i]);
        if (err < 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err < 0) {
        p->nworkers = i;
        return err;
    }
    return 0;
}

tp_pool_t *tp_pool_create(unsigned nworkers, tp_pool_work_cb *work, void *arg,
                          const struct tp_pool_opts *opts)
{
    struct tp_pool *p;
    unsigned i;
    int err;

    if (nworkers > UINT16_MAX - 1) {
        errno = EINVAL;
        return NULL;
    }
    p = aligned_alloc(64, sizeof(*p) + 63 - (sizeof(*p) + 63) % 64);
    if (p == NULL)
        return NULL;
    memset(p, 0, sizeof(*p));
    p->nclasses = opts->nclasses > 0 ? opts->nclasses : 1;
    p->inline_max_ns = opts->inline_max_ns;
    if (nworkers > 0 && (p->costs = calloc(p->nclasses, sizeof(*p->costs))) == NULL) {
        free(p);
        return NULL;
    }
    p->work = work;
    p->arg = arg;
    p->backlog_max = opts->backlog_max;
    p->nworkers = nworkers;
    __cds_wfcq_init(&p->reply_head, &p->reply_tail);
    __cds_wfcq_init(&p->taken_head, &p->taken_tail);
    tp_msg_list_init(&p->stage);
    tp_msg_list_init(&p->done);
    p->event_fd = -1;
    if (nworkers == 0)
        return p;
    p->workers = aligned_alloc(64, sizeof(*p->workers) * nworkers);
    if (p->workers == NULL)
        goto out_free_pool;
    memset(p->workers, 0, sizeof(*p->workers) * nworkers);
    for (i = 0; i < nworkers; i++) {
        struct worker *w = &p->workers[i];

        __cds_wfcq_init(&w->head, &w->tail);
        tp_msg_list_init(&w->stage);
        w->pool = p;
        w->index = (uint16_t)i;
    }
    p->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->event_fd < 0)
        goto out_free_workers;
    err = start_workers(p);
    if (err < 0) {
        tp_pool_destroy(p);
        errno = -err;
        return NULL;
    }
    return p;

out_free_workers:
    err = errno;
    free(p->workers);
    errno = err;
out_free_pool:
    err = errno;
    free(p->costs);
    free(p);
    errno = err;
    return NULL;
}

static struct worker *least_busy(struct tp_pool *p)
{
    struct worker *best = &p->workers[0];
    unsigned i;

    for (i = 1; i < p->nworkers && best->held > 0; i++)
        if (p->workers[i].held < best->held)
            best = &p->workers[i];
    return best;
}

static struct cost *cost_of(struct tp_pool *p, const struct tp_msg *m)
{
    return &p->costs[m->listener < p->nclasses ? m->listener : p->nclasses - 1];
}

/* True if m is expected to cost less than handing it to a worker: run it
 * here, on the reactor thread, at flush. Its class's cost is learned from
 * such runs; a class that goes to workers still runs here now and then, so
 * an app that became cheap comes back. */
static float larger(float a, float b)
{
    return a > b ? a : b;
}

/* What handing m to a worker costs the reactor, in ns. */
static float handoff_ns(const struct tp_pool *p, const struct tp_msg *m)
{
    return (float)p->inline_max_ns + HANDOFF_NS_PER_BYTE * (float)m->len;
}

static bool runs_here(struct tp_pool *p, const struct tp_msg *m)
{
    struct cost *c = cost_of(p, m);

    if (c->ns_per_byte * (float)(m->len + COST_BASE) <= handoff_ns(p, m))
        return true;
    if (++c->sent < RETIME_EVERY)
        return false;
    c->sent = 0;
    return true;
}

int tp_pool_submit(tp_pool_t *p, struct tp_msg *m)
{
    struct worker *w;

    if (m->len > 0 && tp_pool_is_full(p))
        return -ENOBUFS;
    m->charge = m->len;
    p->backlog += m->charge;
    p->inflight++;
    if (p->nworkers == 0 || (p->inline_max_ns > 0 && runs_here(p, m))) {
        m->worker = NO_WORKER;
        tp_msg_list_push(&p->stage, m);
        return 0;
    }
    w = least_busy(p);
    m->worker = w->index;
    w->held++;
    tp_msg_list_push(&w->stage, m);
    return 0;
}

bool tp_pool_is_full(const tp_pool_t *p)
{
    return p->inflight > 0 && p->backlog >= p->backlog_max;
}

/* Runs the work staged for this thread, in order, onto the reply list. With
 * workers, each run is timed (one clock read between two runs) to learn what
 * its class costs. */
static size_t run_here(struct tp_pool *p)
{
    uint64_t t0 = 0, t1;
    struct tp_msg *m;
    struct cost *c;
    size_t n = 0;
    float bytes, most, took;

    if (p->nworkers > 0 && !tp_msg_list_empty(&p->stage))
        t0 = now_ns();
    while ((m = tp_msg_list_pop(&p->stage)) != NULL) {
        c = p->nworkers > 0 ? cost_of(p, m) : NULL;
        bytes = (float)(m->len + COST_BASE);
        most = c != NULL ? 2 * larger(c->ns_per_byte * bytes, handoff_ns(p, m)) : 0;
        p->work(p->arg, m, &p->done);     /* m is on p->done now: no touching */
        n++;
        if (c == NULL)
            continue;
        t1 = now_ns();
        /* A run the thread was preempted in looks slow: one timing moves
         * the estimate by at most twice what it or a hand-off is, so it
         * takes several slow runs in a row to send a class to workers. */
        took = (float)(t1 - t0) < most ? (float)(t1 - t0) : most;
        c->ns_per_byte += (took / bytes - c->ns_per_byte) * COST_WEIGHT;
        t0 = t1;
    }
    return n;
}

size_t tp_pool_flush(tp_pool_t *p)
{
    struct __cds_wfcq_head h;
    struct cds_wfcq_tail t;
    struct tp_msg *m;
    uint64_t now = 0;
    unsigned i;

    for (i = 0; i < p->nworkers; i++) {
        struct worker *w = &p->workers[i];

        if (tp_msg_list_empty(&w->stage))
            continue;
        if (now == 0)
            now = now_ns();  /* once per flush, for the queue-wait figures */
        __cds_wfcq_init(&h, &t);
        while ((m = tp_msg_list_pop(&w->stage)) != NULL) {
            m->queue_ns = now;
            cds_wfcq_node_init(&m->node);
            tp_tsan_release(m);
            cds_wfcq_enqueue(&h, &t, &m->node);
        }
        __cds_wfcq_splice_blocking(&w->head, &w->tail, &h, &t);
        wake(w);
    }
    /* After the workers have theirs: they run while this thread does. */
    return run_here(p);
}

bool tp_pool_is_inline(const tp_pool_t *p)
{
    return p->nworkers == 0;
}

int tp_pool_event_fd(const tp_pool_t *p)
{
    return p->event_fd;
}

/* Accounts for a message coming back: the original of a batch ends it. */
static void returned(struct tp_pool *p, struct tp_msg *m)
{
    if (m->kind != TP_MSG_DONE)
        return;
    if (m->worker != NO_WORKER)
        p->workers[m->worker].held--;
    p->backlog -= m->charge;
    p->inflight--;
}

int tp_pool_drain(tp_pool_t *p, bool clear, struct tp_msg_list *out, bool *again)
{
    struct cds_wfcq_node *node;
    struct tp_msg *m;
    uint64_t cnt;
    int n = 0;

    /* Clear, then drain: a reply enqueued after the splice below finds the
     * queue empty and writes the eventfd again, so none is left behind. */
    *again = false;
    while ((m = tp_msg_list_pop(&p->done)) != NULL) {
        returned(p, m);
        tp_msg_list_push(out, m);
        n++;
    }
    if (p->nworkers == 0)
        return n;
    if (clear && read(p->event_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
        *again = true;      /* not expected of an eventfd; look again soon */
    if (__cds_wfcq_splice_nonblocking(&p->taken_head, &p->taken_tail,
                                      &p->reply_head, &p->reply_tail) ==
        CDS_WFCQ_RET_WOULDBLOCK)
        *again = true;
    while ((node = __cds_wfcq_dequeue_nonblocking(&p->taken_head,
                                                  &p->taken_tail)) != NULL) {
        if (node == CDS_WFCQ_WOULDBLOCK) {
            *again = true;
            break;
        }
        m = caa_container_of(node, struct tp_msg, node);
        tp_tsan_acquire(m);
        returned(p, m);
        tp_msg_list_push(out, m);
        n++;
    }
    return n;
}

size_t tp_pool_inflight(const tp_pool_t *p)
{
    return p->inflight;
}

uint64_t tp_pool_backlog(const tp_pool_t *p)
{
    return p->backlog;
}

static void free_queue(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t)
{
    struct cds_wfcq_node *node;

    while ((node = __cds_wfcq_dequeue_blocking(h, t)) != NULL)
        tp_msg_free(caa_container_of(node, struct tp_msg, node));
}

void tp_pool_destroy(tp_pool_t *p)
{
    struct tp_msg *m;
    unsigned i;

    if (p == NULL)
        return;
    atomic_store(&p->stopping, true);
    for (i = 0; i < p->nworkers; i++) {
        atomic_store(&p->workers[i].sleeping, 0);
        futex(&p->workers[i].sleeping, FUTEX_WAKE_PRIVATE, 1);
    }
    for (i = 0; i < p->nworkers; i++)
        pthread_join(p->workers[i].tid, NULL);
    for (i = 0; i < p->nworkers; i++) {
        struct worker *w = &p->workers[i];

        while ((m = tp_msg_list_pop(&w->stage)) != NULL)
            tp_msg_free(m);
        free_queue((struct __cds_wfcq_head *)&w->head, &w->tail);
    }
    free_queue(&p->reply_head, &p->reply_tail);
    free_queue(&p->taken_head, &p->taken_tail);
    while ((m = tp_msg_list_pop(&p->stage)) != NULL)
        tp_msg_free(m);
    while ((m = tp_msg_list_pop(&p->done)) != NULL)
        tp_msg_free(m);
    if (p->event_fd >= 0)
        close(p->event_fd);
    free(p->workers);
    free(p->costs);
    free(p);
}
