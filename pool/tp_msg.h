/* tp_msg.h - the message that crosses threads, and the buffer it lives in.
 *
 * One struct tp_msg is one allocation: a header and the bytes. The reactor
 * reads socket data straight into one (then it is a connection's read
 * buffer), hands it to a worker as a batch of whole messages, and gets the
 * same object back as the reply, so the echo path neither copies nor mallocs.
 *
 * Ownership moves with the object: whoever holds the pointer owns it, and a
 * message is reachable from exactly one place at a time (a queue, a list, a
 * connection). Order per connection: the reactor keeps at most one batch per
 * connection at the workers, so replies come back in the order messages
 * arrived whatever the number of workers. A worker hands back a batch's
 * sends and broadcasts before the batch itself (DONE), in one splice, and
 * the connection's next batch leaves only once that DONE is in: so what
 * one connection's calls send, to itself or to others, reaches the reactor
 * in the order the calls ran, even when they ran on different workers. */
#ifndef TP_MSG_H
#define TP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <urcu/wfcqueue.h>

/* A connection as other threads name it: table slot + generation. The
 * generation changes when the slot's connection closes, so a stale handle
 * never reaches a newer connection (nginx's "instance" bit, widened). */
struct tp_handle {
    uint32_t slot;
    uint32_t gen;
};

enum tp_msg_kind {
    /* reactor -> worker */
    TP_MSG_OPEN,        /* a connection opened: run app->open; data holds
                           the peer's address as text, NUL-terminated (len
                           stays 0: an event is never refused) */
    TP_MSG_DATA,        /* data[0..len) holds whole messages (a batch) */
    TP_MSG_CLOSE,       /* a connection closed: run app->close */
    /* worker -> reactor */
    TP_MSG_DONE,        /* the original OPEN/DATA/CLOSE coming back; writes
                           data[0..len) to the connection if TP_MSG_F_REPLY */
    TP_MSG_SEND,        /* new bytes for connection `h` (sender or another) */
    TP_MSG_BROADCAST,   /* new bytes for every connection of `listener` but `h` */
    /* reactor only */
    TP_MSG_REF,         /* an output slot pointing at a shared BROADCAST buffer */
};

enum {
    TP_MSG_F_REPLY = 1 << 0,  /* DONE: data[0..len) is the reply to write */
    TP_MSG_F_CLOSE = 1 << 1,  /* DONE: close the connection after its replies */
    TP_MSG_F_EOF   = 1 << 2,  /* DATA: last batch; trailing bytes are a message */
    TP_MSG_F_SELF  = 1 << 3,  /* BROADCAST: the sender gets it too */
    TP_MSG_F_REMOTE = 1 << 4, /* BROADCAST: from another instance (chat_redis):
                                 not published again */
};

struct tp_msg {
    struct cds_wfcq_node node;  /* queue link while the message crosses threads */
    struct tp_msg *next;        /* list link for the thread that owns it */
    struct tp_handle h;         /* the connection it comes from or goes to */
    uint32_t len;               /* bytes used in data */
    uint32_t cap;               /* bytes available in data */
    uint32_t off;               /* reactor: bytes of data already written */
    uint32_t cut;               /* reactor: end of the last whole message read */
    uint32_t scanned;           /* reactor: bytes after cut known to hold no end */
    uint32_t charge;            /* pool: bytes counted against its backlog */
    uint8_t kind;               /* enum tp_msg_kind */
    uint8_t flags;              /* TP_MSG_F_* */
    uint16_t listener;          /* index of the listener of h */
    uint16_t worker;            /* pool: which worker holds it */
    uint16_t sclass;            /* size class, TP_MSG_NOCLASS if none */
    /* Fields of kinds that never meet share their bytes: the header stays
     * 80 bytes, which its zeroing at every reuse is measurably sensitive to. */
    union {
        uint32_t refs;          /* BROADCAST: REF slots still pointing here */
        uint32_t read_stamp;    /* DATA, DONE, SEND to the sender: TP_STAMP()
                                   of the loop turn that read it (carried to
                                   its reply); 0 if it answers no read */
    };
    uint32_t count;             /* OPEN, DATA, CLOSE: connections the listener
                                   had when the reactor sent it (the app's
                                   tp_call_members); DONE: messages the batch
                                   held; SEND, BROADCAST, REF: replies framed
                                   in data */
    void *conn_data;            /* the app's per-connection pointer, carried
                                   to the worker and back with each batch */
    union {
        struct tp_msg *shared;  /* REF: the buffer whose bytes it stands for */
        uint64_t queue_ns;      /* pool (never a REF): when it was queued for a
                                   worker, then, once the worker took it, how
                                   long it waited (at least 1); 0 if it ran
                                   on the reactor */
    };
    char data[];
};

#define TP_MSG_NOCLASS 0xffff

/* A CLOCK_MONOTONIC time in ns as a read_stamp: units of 1024 ns, 32 bits
 * (a difference is right for 73 minutes), never 0. */
#define TP_STAMP(ns) ((uint32_t)((ns) >> 10) | 1u)

/* Allocates a message with room for at least cap bytes, rounded up to a size
 * class when it fits one so the reactor's cache can reuse it. Zeroes the
 * header. Returns NULL with errno set. Any thread. */
struct tp_msg *tp_msg_new(size_t cap);

/* Frees a message from tp_msg_new(). Any thread. */
void tp_msg_free(struct tp_msg *m);

/* A free list of recently freed messages by size class, so the reactor's
 * steady state allocates nothing. Single-threaded: owned by one thread. */
struct tp_msg_cache {
    struct tp_msg *free[7];
    uint32_t count[7];
};

void tp_msg_cache_init(struct tp_msg_cache *c);
/* Frees everything cached. */
void tp_msg_cache_fini(struct tp_msg_cache *c);
/* Returns a message with room for at least cap bytes, header zeroed; NULL
 * with errno set. */
struct tp_msg *tp_msg_cache_get(struct tp_msg_cache *c, size_t cap);
/* Takes m back (kept for reuse or freed). */
void tp_msg_cache_put(struct tp_msg_cache *c, struct tp_msg *m);
/* Moves m's bytes [from, len) into a fresh message with room for at least
 * cap bytes (cut/scanned rebased), puts m back and returns the new one, or
 * NULL with errno set and m untouched. */
struct tp_msg *tp_msg_cache_move(struct tp_msg_cache *c, struct tp_msg *m,
                                 uint32_t from, size_t cap);

/* Bytes of data a message of size class sclass holds: class 0 is a bare
 * header (a broadcast's per-recipient slot), 1 the smallest with data, a read
 * buffer's usual size; each class after holds more. 0 past the last. */
size_t tp_msg_class_cap(unsigned sclass);

/* FIFO of messages through ->next; owned by one thread. Circular, so one
 * pointer (8 bytes in every connection) is the whole list: tail->next is
 * the head. */
struct tp_msg_list {
    struct tp_msg *tail;
};

static inline void tp_msg_list_init(struct tp_msg_list *l)
{
    l->tail = NULL;
}

static inline bool tp_msg_list_empty(const struct tp_msg_list *l)
{
    return l->tail == NULL;
}

static inline void tp_msg_list_push(struct tp_msg_list *l, struct tp_msg *m)
{
    if (l->tail == NULL) {
        m->next = m;
    } else {
        m->next = l->tail->next;
        l->tail->next = m;
    }
    l->tail = m;
}

/* The oldest message, or NULL. */
static inline struct tp_msg *tp_msg_list_first(const struct tp_msg_list *l)
{
    return l->tail != NULL ? l->tail->next : NULL;
}

/* The message after m (which is on l), or NULL after the last. */
static inline struct tp_msg *tp_msg_list_next(const struct tp_msg_list *l,
                                              const struct tp_msg *m)
{
    return m == l->tail ? NULL : m->next;
}

static inline struct tp_msg *tp_msg_list_pop(struct tp_msg_list *l)
{
    struct tp_msg *m = tp_msg_list_first(l);

    if (m != NULL) {
        if (m == l->tail)
            l->tail = NULL;
        else
            l->tail->next = m->next;
        m->next = NULL;
    }
    return m;
}

#endif /* TP_MSG_H */
