/* tp_stress_hgrm.c - HdrHistogram's percentile distribution over our
 * histogram: the tick iteration of HdrHistogram_c's percentile iterator
 * (hdr_iter_percentile_init, hdr_percentiles_print), the same doubles in
 * the same order so that the rows are the ones it prints. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>

#include "tp_stress_hgrm.h"

#define VALUE_SCALE 1e6              /* ns to ms */
/* Of an hdr_histogram with 2 significant figures up to 2^40 - 1: 256
 * sub-buckets (values below 256 each have their own) and 33 buckets. */
#define HDR_SUB_BUCKETS (2 * TP_STRESS_HIST_SUB)
#define HDR_BUCKETS (TP_STRESS_HIST_MAX_BITS - TP_STRESS_HIST_SUB_BITS - 1 + 1)

/* The highest value bucket i holds (HdrHistogram's highest equivalent value). */
static uint64_t bucket_high(uint32_t i)
{
    return tp_stress_hist_bucket_low(i) + tp_stress_hist_bucket_width(i) - 1;
}

/* hdr_mean and hdr_stddev: from the middle of each bucket. */
static void mean_stddev(const struct tp_stress_hist *h, double *mean, double *sd)
{
    unsigned __int128 total = 0;
    double dev, sum = 0;
    uint32_t i;

    for (i = 0; i < TP_STRESS_HIST_BUCKETS; i++)
        total += (unsigned __int128)h->counts[i] * tp_stress_hist_bucket_middle(i);
    *mean = (double)total / (double)h->count;
    for (i = 0; i < TP_STRESS_HIST_BUCKETS; i++) {
        if (h->counts[i] == 0)
            continue;
        dev = (double)tp_stress_hist_bucket_middle(i) - *mean;
        sum += dev * dev * (double)h->counts[i];
    }
    *sd = sqrt(sum / (double)h->count);
}

/* The rows of percentile_iter_next: at each bucket with a count, one row
 * per tick its cumulative percentile reaches, each tick closer to 100% by
 * 100 / (ticks * 2^(floor(log2(100 / (100 - p))) + 1)); once every value
 * is counted, one row and then the 100% row. */
int tp_stress_hgrm_each(const struct tp_stress_hist *h, int ticks, tp_stress_hgrm_row_cb row,
                        void *arg)
{
    double next = 0.0, cur, pct;
    uint64_t cum = 0, half;
    uint32_t i, last = 0;
    int64_t t;
    int rc;

    for (i = 0; i < TP_STRESS_HIST_BUCKETS && cum < h->count; i++) {
        if (h->counts[i] == 0)
            continue;
        cum += h->counts[i];
        last = i;
        cur = (100.0 * (double)cum) / (double)h->count;
        while (next <= cur && next < 100.0) {
            pct = next;
            t = (int64_t)(log(100 / (100.0 - next)) / log(2)) + 1;
            half = (uint64_t)pow(2, (double)t);
            next += 100.0 / (double)((uint64_t)ticks * half);
            if ((rc = row(arg, bucket_high(i), pct, cum)) < 0)
                return rc;
            if (cum == h->count)
                break;
        }
    }
    return row(arg, h->count > 0 ? bucket_high(last) : 0, 100.0, h->count);
}

static int write_row(void *arg, uint64_t value, double pct, uint64_t cum)
{
    double p = pct / 100.0;

    return fprintf(arg, "%12.3f %12f %12" PRIu64 " %12.2f\n", (double)value / VALUE_SCALE,
                   p, cum, 1.0 / (1.0 - p)) < 0 ? -EIO : 0;
}

int tp_stress_hgrm_write(FILE *f, const struct tp_stress_hist *h, int ticks)
{
    double mean = 0, sd = 0, max = 0;

    if (ticks < 1)
        return -EIO;
    if (fprintf(f, "%12s %12s %12s %12s\n\n", "Value", "Percentile", "TotalCount",
                "1/(1-Percentile)") < 0)
        return -EIO;
    if (tp_stress_hgrm_each(h, ticks, write_row, f) < 0)
        return -EIO;
    if (h->count > 0) {
        mean_stddev(h, &mean, &sd);
        max = h->max_ns > 0 ? (double)bucket_high(tp_stress_hist_index(h->max_ns)) : 0;
    }
    if (fprintf(f, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n"
                "#[Max     = %12.3f, Total count    = %12" PRIu64 "]\n"
                "#[Buckets = %12d, SubBuckets     = %12d]\n",
                mean / VALUE_SCALE, sd / VALUE_SCALE, max / VALUE_SCALE, h->count,
                HDR_BUCKETS, HDR_SUB_BUCKETS) < 0)
        return -EIO;
    return 0;
}
