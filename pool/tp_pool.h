/* tp_pool.h - worker threads that run the app on messages from the reactor.
 *
 * Work goes out through one wait-free liburcu queue per worker and comes back
 * through one shared reply queue. The reactor stages what it submits during a
 * loop turn and publishes it with one splice per worker (tp_pool_flush), so a
 * turn that cuts hundreds of messages costs one hand-off and at most one wake
 * per sleeping worker. Workers wake the reactor through an eventfd only when
 * the reply queue goes from empty to non-empty.
 *
 * Work that costs less than a hand-off runs on the reactor thread instead:
 * the pool times the runs it makes there and learns each class's cost (a
 * class is what msg->listener names: the reactor gives each listener its
 * own, since each has its own app). Work expected to take at most
 * inline_max_ns runs in tp_pool_flush(); the rest goes to the workers, and
 * one batch in 128 of a worker-bound class still runs here so its
 * cost stays current. So a cheap app (echo) pays no futex, no eventfd and no
 * cache-line transfer per message, and an expensive one still runs beside
 * the reactor, which stays free to read and write.
 *
 * A pool of zero workers is inline: the same calls, but all of the work runs
 * in tp_pool_flush(). Either way, replies of work run there wait for
 * tp_pool_drain(); the reactor uses one path for both.
 *
 * Who may call what, concurrently:
 *
 *   call                      thread         runs alongside
 *   tp_pool_create/destroy    owner          nothing else on this pool
 *   tp_pool_submit/flush      reactor        workers (enqueue side of their
 *                                            queues), tp_pool_drain
 *   tp_pool_drain/event_fd    reactor        workers (they enqueue replies)
 *   tp_pool_is_full/inflight  reactor        workers
 *   tp_pool_backlog
 *   the work callback         worker, or     other workers (on the reactor
 *                             the reactor    too: it runs inside
 *                             in flush       tp_pool_flush())
 */
#ifndef TP_POOL_H
#define TP_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tp_msg.h"

typedef struct tp_pool tp_pool_t;

/* A message handed to a worker carries how long it waited in the worker's
 * queue (msg->queue_ns, once the worker took it); one run on the reactor
 * thread carries 0.
 *
 * Runs on a worker for each message. It must push every message it produces
 * onto out, in the order they are to be written, and the message it was given
 * exactly once, last, as kind TP_MSG_DONE: that is how the reactor learns the
 * batch is finished. It must not block for long: it holds up every message
 * queued behind it on this worker. */
typedef void tp_pool_work_cb(void *arg, struct tp_msg *msg, struct tp_msg_list *out);

struct tp_pool_opts {
    uint64_t backlog_max;       /* bytes of submitted messages that may be at
                                   the pool at once */
    unsigned nclasses;          /* cost classes: msg->listener < nclasses */
    uint32_t inline_max_ns;     /* work expected to take at most this runs in
                                   tp_pool_flush(); 0: every message goes to a
                                   worker */
};

/* Starts nworkers threads running work(arg, ...), or none for an inline pool
 * (nworkers 0). Returns NULL with errno set on failure. */
tp_pool_t *tp_pool_create(unsigned nworkers, tp_pool_work_cb *work, void *arg,
                          const struct tp_pool_opts *opts);

/* Stages msg for this thread or the least busy worker (see above); either
 * way it runs from the next tp_pool_flush(). On 0 the pool owns msg until it comes back from
 * tp_pool_drain(). Returns -ENOBUFS, keeping nothing, while the backlog is over
 * backlog_max: stop reading until tp_pool_drain() brings it down. Messages
 * with no bytes (open and close events) are never refused. Reactor thread
 * only; never blocks. */
int tp_pool_submit(tp_pool_t *pool, struct tp_msg *msg);

/* True while tp_pool_submit() would refuse work. */
bool tp_pool_is_full(const tp_pool_t *pool);

/* Publishes what was staged for the workers, one splice per worker, waking
 * those that sleep; then runs here what was staged to run here. Returns how
 * many ran here: their replies are ready for tp_pool_drain(). Reactor thread
 * only; never blocks (but runs as long as the work it runs takes). */
size_t tp_pool_flush(tp_pool_t *pool);

/* True for a pool of zero workers. */
bool tp_pool_is_inline(const tp_pool_t *pool);

/* The eventfd that turns readable when replies wait (-1 for an inline pool,
 * whose replies are ready when tp_pool_flush() returns). Register it with
 * epoll; tp_pool_drain() clears it. */
int tp_pool_event_fd(const tp_pool_t *pool);

/* Moves every reply that is ready onto out (reactor-owned from then on).
 * Pass clear = true when epoll reported the eventfd: it is read first, then
 * the queue drained. Returns how many were moved. *again is set when a worker
 * was caught mid-enqueue and some replies could not be taken yet: call again
 * soon, without waiting for the eventfd. Reactor thread only; never blocks. */
int tp_pool_drain(tp_pool_t *pool, bool clear, struct tp_msg_list *out, bool *again);

/* Messages submitted and not yet back from tp_pool_drain(). Reactor thread. */
size_t tp_pool_inflight(const tp_pool_t *pool);

/* Bytes of those messages (what backlog_max limits). Reactor thread. */
uint64_t tp_pool_backlog(const tp_pool_t *pool);

/* Stops and joins the workers. Messages still queued are freed without being
 * run, as are replies not yet drained. Owner thread, once. */
void tp_pool_destroy(tp_pool_t *pool);

#endif /* TP_POOL_H */
