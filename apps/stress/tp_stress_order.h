/* tp_stress_order.h - what one recipient has had of one sender's lines: the
 * next sequence number it waits for, the lines it skipped (holes) and which
 * of the 64 before `next` came, so each arrival is told apart as the next
 * one, one that jumps ahead, a late one (it filled a hole: out of order) or
 * a duplicate. Lines more than 64 behind `next` are told apart by the holes
 * alone: late while there are holes, else a duplicate. */
#ifndef TP_STRESS_ORDER_H
#define TP_STRESS_ORDER_H

#include <stdint.h>

enum tp_stress_order_seen {
    TP_STRESS_ORDER_NEXT,    /* the one waited for */
    TP_STRESS_ORDER_AHEAD,   /* after a gap: the skipped ones are holes */
    TP_STRESS_ORDER_LATE,    /* fills a hole: it came out of order */
    TP_STRESS_ORDER_DUP,     /* came before */
};

/* Plain struct, zero-initialised: nothing seen yet. One owner (the thread
 * that reads the recipient's connection). */
struct tp_stress_order {
    uint32_t next;           /* lowest seq not yet seen, holes aside */
    uint32_t holes;          /* seqs below next never seen */
    uint64_t seen;           /* bit i: seq next - 1 - i came */
};

/* Records the arrival of seq and says what it was. Never allocates. */
enum tp_stress_order_seen tp_stress_order_see(struct tp_stress_order *o, uint32_t seq);

/* Lines of the first `sent` (0..sent-1) that never came: the holes, and
 * those from next on. */
uint64_t tp_stress_order_missing(const struct tp_stress_order *o, uint32_t sent);

#endif /* TP_STRESS_ORDER_H */
