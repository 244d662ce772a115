/* tp_stress_pace.h - an even send schedule: event k is intended at start + k * period.
 * The schedule never moves: after a stall the events whose time has passed
 * are all due at once (each keeps its intended time, so latency measured from
 * it includes the stall: coordinated omission is not hidden), and no more. */
#ifndef TP_STRESS_PACE_H
#define TP_STRESS_PACE_H

#include <stdint.h>

/* Plain struct: embed it; one thread uses it. */
struct tp_stress_pace {
    uint64_t start_ns;   /* intended time of event 0 */
    double period_ns;    /* 0: every event is due at once */
    uint64_t taken;      /* events handed out so far */
};

/* Starts a schedule of rate events per second from start_ns (rate > 0;
 * rate <= 0 makes every event due at once). */
void tp_stress_pace_init(struct tp_stress_pace *p, uint64_t start_ns, double rate);

/* The intended time of event k. */
uint64_t tp_stress_pace_time(const struct tp_stress_pace *p, uint64_t k);

/* How many events are due at now_ns and not yet taken. */
uint64_t tp_stress_pace_due(const struct tp_stress_pace *p, uint64_t now_ns);

/* Takes the next event, due or not, and returns its intended time. */
uint64_t tp_stress_pace_take(struct tp_stress_pace *p);

/* The intended time of the next event not yet taken. */
static inline uint64_t tp_stress_pace_next(const struct tp_stress_pace *p)
{
    return tp_stress_pace_time(p, p->taken);
}

#endif /* TP_STRESS_PACE_H */
