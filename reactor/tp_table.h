/* tp_table.h - the connection table and the lists of connections to come
 * back to; internal to reactor/, reactor thread only.
 *
 * A connection is a slot in chunks that never move, named from other threads
 * by handle {slot, generation}; the generation changes when the slot is
 * freed, so a late reply never reaches the slot's next connection. The
 * table also owns the three "come back to this connection" lists: pending
 * (read again without an edge), waiting (the pool was full) and dirty
 * (output to write). tp_conn.c gives the slots their life (see tp_conn.h). */
#ifndef TP_TABLE_H
#define TP_TABLE_H

#include <stdbool.h>
#include <stdint.h>
#include <urcu/list.h>

#include "tp_msg.h"

struct tp_listener;

/* A connection's life; tp_conn.h has the diagram and the events. */
enum tp_conn_state {
    TP_CONN_FREE,       /* slot unused */
    TP_CONN_READING,    /* input open: read, cut, hand whole messages over */
    TP_CONN_FINISHING,  /* input stopped; the last replies are written */
    TP_CONN_LINGERING,  /* replies written, our side shut; input dropped */
    TP_CONN_CLOSED,     /* fd closed; the pool still holds a message of it */
};

/* Flags: edges remembered, work out, list membership. Never a state. */
enum {
    TP_CONN_READABLE   = 1 << 0,  /* an edge not yet read to EAGAIN */
    TP_CONN_RDHUP      = 1 << 1,  /* the peer hung up: read until 0 */
    TP_CONN_BUSY       = 1 << 2,  /* a message (batch, open, close) is at the pool */
    TP_CONN_OUT_FULL   = 1 << 3,  /* output over send_buffer_max: input paused */
    TP_CONN_OVERFLOW   = 1 << 4,  /* output past the hard limit: abort it */
    TP_CONN_APP_CLOSED = 1 << 5,  /* app->close was sent (or is not needed) */
    TP_CONN_LISTED     = 1 << 6,  /* << enum tp_table_list: on that list
                                     (bits 6, 7, 8) */
    TP_CONN_MEMBER     = 1 << 9,  /* counted in its listener's members */
    TP_CONN_BYE        = 1 << 10, /* shutdown_message queued: nothing after it */
    TP_CONN_STREAMING  = 1 << 11, /* its last read filled the room asked for */
};

/* The lists of connections to come back to later in this loop turn (or the
 * next): each is a stack through tp_conn.next[list]. */
enum tp_table_list {
    TP_LIST_PENDING,    /* more to read without a new edge */
    TP_LIST_WAITING,    /* whole messages wait for room in the pool */
    TP_LIST_DIRTY,      /* output to write */
    TP_LISTS
};

struct tp_ip_entry;               /* tp_acl.h */

struct tp_conn {
    uint8_t source;               /* TP_SRC_CONN: what epoll data points at */
    uint8_t state;                /* enum tp_conn_state */
    uint8_t rsize;                /* read buffer size class to use next */
    uint8_t why;                  /* enum tp_close_reason, once not READING */
    uint16_t flags;               /* TP_CONN_* */
    int fd;
    struct tp_handle h;           /* slot and generation */
    uint32_t dropped;             /* input dropped since input stopped */
    uint32_t out_refs;            /* broadcast slots (TP_MSG_REF) in out */
    uint32_t next[TP_LISTS];      /* slot + 1 of the next on each list; 0 ends it
                                     (indexes, not pointers: 12 bytes less
                                     per connection) */
    struct tp_listener *l;
    struct tp_msg *rbuf;          /* read buffer; NULL while there is none */
    struct tp_ip_entry *ip;       /* its source address's count (l->ips), or NULL */
    struct tp_msg_list out;       /* replies to write, in order */
    size_t out_bytes;             /* unsent bytes in out */
    void *app_data;               /* the app's per-connection pointer */
    struct cds_list_head link;    /* l->conns; the free list when FREE */
    struct cds_list_head idle;    /* l->idle, oldest activity first;
                                     LINGERING: the linger list, next check first */
    struct cds_list_head partial; /* l->partial while a partial message is held */
    int64_t active_ms;            /* last progress, give or take l->idle_slack_ms;
                                     LINGERING: when to check it next */
    int64_t partial_ms;           /* when the partial message began;
                                     LINGERING: when to give up */
};

struct tp_table {
    struct tp_conn **chunks;      /* of TP_TABLE_CHUNK slots; never move */
    uint32_t nchunks, nslots;
    struct cds_list_head free_slots;
    uint64_t live;                /* slots not FREE */
    uint32_t list[TP_LISTS];      /* slot + 1 of each list's first; 0: empty */
    uint32_t *tail[TP_LISTS];     /* where the next one added goes */
};

#define TP_TABLE_CHUNK 1024

/* Sizes the table for about max slots (it grows past that if it must).
 * Returns 0 or -ENOMEM. */
int tp_table_init(struct tp_table *t, uint32_t max);
void tp_table_fini(struct tp_table *t);

/* A zeroed slot (but its handle, and flags saying which lists it is still
 * on), counted live; NULL with errno set if out of memory. */
struct tp_conn *tp_table_get(struct tp_table *t);
/* Gives c back: state FREE, a new generation. */
void tp_table_put(struct tp_table *t, struct tp_conn *c);
/* The live connection h names, or NULL if it closed. */
struct tp_conn *tp_table_find(const struct tp_table *t, struct tp_handle h);
/* Slot i (i < nslots), whatever its state. */
struct tp_conn *tp_table_at(const struct tp_table *t, uint32_t i);

/* Puts c at the end of a list, once: while it is there, more calls do
 * nothing. Lists keep the order connections were added in. */
void tp_table_add(struct tp_table *t, enum tp_table_list which, struct tp_conn *c);

/* Detaches a whole list; walk it with tp_table_pop(). Connections added
 * meanwhile go on the fresh list, for the next walk: a walk always ends. */
struct tp_conn *tp_table_take(struct tp_table *t, enum tp_table_list which);

/* The next connection of a detached list (off it, flag cleared), or NULL.
 * Slots come back whatever their state: callers check it. */
struct tp_conn *tp_table_pop(const struct tp_table *t, struct tp_conn **walk,
                             enum tp_table_list which);

/* A live list as a queue, for walks that may stop early (a share of the
 * turn used up) and go on next time from where they stopped: the first
 * connection, taken off the list (flag cleared), or NULL. One put back with
 * tp_table_add() goes behind all those not yet shifted. */
struct tp_conn *tp_table_shift(struct tp_table *t, enum tp_table_list which);

/* The last connection on a list, or NULL: where a walk by shift ends, so
 * that those put back during it wait for the next walk. */
struct tp_conn *tp_table_last(const struct tp_table *t, enum tp_table_list which);

static inline bool tp_table_is_empty(const struct tp_table *t, enum tp_table_list which)
{
    return t->list[which] == 0;
}

#endif /* TP_TABLE_H */
