/* tp_stress_hist.c - log-linear latency histogram: merge and percentiles. */
#include <assert.h>
#include <string.h>

#include "tp_stress_hist.h"

void tp_stress_hist_init(struct tp_stress_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min_ns = UINT64_MAX;
}

void tp_stress_hist_merge(struct tp_stress_hist *dst, const struct tp_stress_hist *src)
{
    uint32_t i;

    if (src->count == 0)
        return;
    for (i = 0; i < TP_STRESS_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->count += src->count;
    dst->sum_ns += src->sum_ns;
    if (src->min_ns < dst->min_ns)
        dst->min_ns = src->min_ns;
    if (src->max_ns > dst->max_ns)
        dst->max_ns = src->max_ns;
}

static uint32_t bucket_shift(uint32_t i)
{
    if (i < 2 * TP_STRESS_HIST_SUB)
        return 0;
    return (i - 2 * TP_STRESS_HIST_SUB) / TP_STRESS_HIST_SUB + 1;
}

uint64_t tp_stress_hist_bucket_low(uint32_t i)
{
    uint32_t j;

    if (i < 2 * TP_STRESS_HIST_SUB)
        return i;
    j = i - 2 * TP_STRESS_HIST_SUB;
    return (uint64_t)(j % TP_STRESS_HIST_SUB + TP_STRESS_HIST_SUB) << bucket_shift(i);
}

uint64_t tp_stress_hist_bucket_width(uint32_t i)
{
    return UINT64_C(1) << bucket_shift(i);
}

/* Within 1/256 of every value the bucket holds. */
uint64_t tp_stress_hist_bucket_middle(uint32_t i)
{
    return tp_stress_hist_bucket_low(i) + (tp_stress_hist_bucket_width(i) >> 1);
}

uint64_t tp_stress_hist_percentile(const struct tp_stress_hist *h, uint32_t pcm)
{
    const uint64_t scale = 100000;
    uint64_t rank, seen = 0, v;
    uint32_t i;

    if (h->count == 0)
        return 0;
    if (pcm >= scale)
        return h->max_ns;
    if (pcm == 0)
        return h->min_ns;
    /* ceil(count * pcm / scale) in integers: count * pcm may not fit in 64
     * bits, and a double rounds 99.9 / 100 * 1000 up to 1000. */
    rank = h->count / scale * pcm + (h->count % scale * pcm + scale - 1) / scale;
    assert(rank >= 1 && rank <= h->count);
    for (i = 0; i < TP_STRESS_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank)
            break;
    }
    v = tp_stress_hist_bucket_middle(i < TP_STRESS_HIST_BUCKETS ? i : TP_STRESS_HIST_BUCKETS - 1);
    if (v < h->min_ns)
        v = h->min_ns;
    if (v > h->max_ns)
        v = h->max_ns;
    return v;
}

double tp_stress_hist_mean(const struct tp_stress_hist *h)
{
    return h->count ? (double)h->sum_ns / (double)h->count : 0.0;
}
