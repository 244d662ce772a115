/* tp_stress_hist.h - log-linear latency histogram (HdrHistogram style).
 * Values are nanoseconds. Below 256 ns every value has its own bucket; above,
 * each power of two is cut into 128 linear sub-buckets, so a bucket is never
 * wider than 1/128 of its lower bound and the reported value (the bucket
 * middle) is within 0.4% of every value recorded in it. Fixed arrays: a
 * record is a few instructions and never allocates. */
#ifndef TP_STRESS_HIST_H
#define TP_STRESS_HIST_H

#include <stdint.h>

#define TP_STRESS_HIST_SUB_BITS 7               /* 128 sub-buckets per 2^k */
#define TP_STRESS_HIST_SUB (1u << TP_STRESS_HIST_SUB_BITS)
#define TP_STRESS_HIST_MAX_BITS 40              /* 2^40 ns: about 18 minutes */
#define TP_STRESS_HIST_BUCKETS (2 * TP_STRESS_HIST_SUB + \
    (TP_STRESS_HIST_MAX_BITS - TP_STRESS_HIST_SUB_BITS - 1) * TP_STRESS_HIST_SUB)
#define TP_STRESS_HIST_MAX_NS ((UINT64_C(1) << TP_STRESS_HIST_MAX_BITS) - 1)

/* Plain struct: embed it or allocate it (about 35 KiB); one owner at a time. */
struct tp_stress_hist {
    uint64_t count;
    uint64_t sum_ns;     /* for the mean */
    uint64_t min_ns;     /* exact; UINT64_MAX while empty */
    uint64_t max_ns;     /* exact, even above TP_STRESS_HIST_MAX_NS */
    uint64_t counts[TP_STRESS_HIST_BUCKETS];
};

/* Empties h. */
void tp_stress_hist_init(struct tp_stress_hist *h);

/* The bucket holding ns (values over TP_STRESS_HIST_MAX_NS share the last one). */
static inline uint32_t tp_stress_hist_index(uint64_t ns)
{
    unsigned k;

    if (ns > TP_STRESS_HIST_MAX_NS)
        ns = TP_STRESS_HIST_MAX_NS;
    if (ns < 2 * TP_STRESS_HIST_SUB)
        return (uint32_t)ns;
    k = 63u - (unsigned)__builtin_clzll(ns);          /* ns in [2^k, 2^(k+1)) */
    return (uint32_t)(2 * TP_STRESS_HIST_SUB +
                      (k - TP_STRESS_HIST_SUB_BITS - 1) * TP_STRESS_HIST_SUB +
                      ((ns >> (k - TP_STRESS_HIST_SUB_BITS)) - TP_STRESS_HIST_SUB));
}

/* Counts one value. Inline because it runs once per reply. */
static inline void tp_stress_hist_record(struct tp_stress_hist *h, uint64_t ns)
{
    h->counts[tp_stress_hist_index(ns)]++;
    h->count++;
    h->sum_ns += ns;
    if (ns < h->min_ns)
        h->min_ns = ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

/* Bucket i's lowest value, its width (values it holds) and its middle
 * (lowest + width / 2). The layout is HdrHistogram's with 2 significant
 * figures: bucket i holds exactly the values an hdr_histogram(1, 2^40 - 1, 2)
 * counts at index i. i < TP_STRESS_HIST_BUCKETS. */
uint64_t tp_stress_hist_bucket_low(uint32_t i);
uint64_t tp_stress_hist_bucket_width(uint32_t i);
uint64_t tp_stress_hist_bucket_middle(uint32_t i);

/* Adds every count of src to dst (per-thread histograms into one). */
void tp_stress_hist_merge(struct tp_stress_hist *dst, const struct tp_stress_hist *src);

/* The value at or below which pcm thousandths of a percent (0..100000; p99.9
 * is 99900) of the values lie: the value of rank ceil(count * pcm / 100000),
 * reported as the middle of its bucket clamped to [min, max]; 0 and 100000
 * give the exact min and max. 0 if h is empty. */
uint64_t tp_stress_hist_percentile(const struct tp_stress_hist *h, uint32_t pcm);

/* The exact mean in ns, 0 if h is empty. */
double tp_stress_hist_mean(const struct tp_stress_hist *h);

#endif /* TP_STRESS_HIST_H */
