/* tp_stress_order.c - per sender and recipient: in order, exactly once. */
#include "tp_stress_order.h"

enum tp_stress_order_seen tp_stress_order_see(struct tp_stress_order *o, uint32_t seq)
{
    uint32_t gap, back;

    if (seq >= o->next) {
        gap = seq - o->next;          /* lines skipped */
        o->holes += gap;
        o->seen = gap + 1 >= 64 ? 0 : o->seen << (gap + 1);
        o->seen |= 1;
        o->next = seq + 1;
        return gap == 0 ? TP_STRESS_ORDER_NEXT : TP_STRESS_ORDER_AHEAD;
    }
    back = o->next - 1 - seq;
    if (back < 64) {
        if (o->seen & (UINT64_C(1) << back))
            return TP_STRESS_ORDER_DUP;
        o->seen |= UINT64_C(1) << back;
        o->holes--;                   /* a 0 bit below next is a hole */
        return TP_STRESS_ORDER_LATE;
    }
    if (o->holes == 0)
        return TP_STRESS_ORDER_DUP;
    o->holes--;
    return TP_STRESS_ORDER_LATE;
}

uint64_t tp_stress_order_missing(const struct tp_stress_order *o, uint32_t sent)
{
    return (uint64_t)o->holes + (sent > o->next ? sent - o->next : 0);
}
