/* tp_stress_pace.c - an even send schedule that keeps its intended times. */
#include "tp_stress_pace.h"

void tp_stress_pace_init(struct tp_stress_pace *p, uint64_t start_ns, double rate)
{
    p->start_ns = start_ns;
    p->period_ns = rate > 0 ? 1e9 / rate : 0.0;
    p->taken = 0;
}

uint64_t tp_stress_pace_time(const struct tp_stress_pace *p, uint64_t k)
{
    return p->start_ns + (uint64_t)((double)k * p->period_ns);
}

uint64_t tp_stress_pace_due(const struct tp_stress_pace *p, uint64_t now_ns)
{
    uint64_t n;

    if (p->period_ns <= 0)
        return UINT64_MAX - p->taken;
    if (now_ns < p->start_ns)
        return 0;
    /* Events 0..n-1 have intended times <= now. */
    n = (uint64_t)((double)(now_ns - p->start_ns) / p->period_ns) + 1;
    /* Rounding of the division may disagree with tp_stress_pace_time by one. */
    while (n > 0 && tp_stress_pace_time(p, n - 1) > now_ns)
        n--;
    while (tp_stress_pace_time(p, n) <= now_ns)
        n++;
    return n > p->taken ? n - p->taken : 0;
}

uint64_t tp_stress_pace_take(struct tp_stress_pace *p)
{
    return tp_stress_pace_time(p, p->taken++);
}
