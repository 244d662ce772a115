/* tp_stress_hgrm.h - a latency histogram as HdrHistogram's percentile
 * distribution text (the .hgrm of wrk2 --latency and HdrHistogram's
 * outputPercentileDistribution), which the HdrHistogram plotter reads. */
#ifndef TP_STRESS_HGRM_H
#define TP_STRESS_HGRM_H

#include <stdio.h>

#include "tp_stress_hist.h"

#define TP_STRESS_HGRM_TICKS 5        /* percentile ticks per half distance */

/* Writes h (nanoseconds) to f as HdrHistogram_c's hdr_percentiles_print
 * does in CLASSIC format: the header, a row per percentile tick (value in
 * milliseconds with 3 decimals, as wrk2 writes them; percentile; count at
 * or below; 1/(1-percentile)), the 100% row, and the Mean/StdDeviation,
 * Max/Total count and Buckets/SubBuckets footer. The histogram is shaped as
 * an HdrHistogram of 2 significant figures, 1 ns to 2^40 ns, so values are
 * those an hdr_histogram of that shape holding the same counts reports
 * (each row the highest value of its bucket; mean and deviation from bucket
 * middles). An empty h writes the 100% row with count 0 and a zero footer.
 * ticks: ticks per half distance (TP_STRESS_HGRM_TICKS), >= 1.
 * Returns 0 or -EIO. Any thread; h is only read. */
int tp_stress_hgrm_write(FILE *f, const struct tp_stress_hist *h, int ticks);

/* A row of the distribution: value_ns the highest value of its bucket,
 * percentile in 0..100, count the values at or below. Returns 0 to go on,
 * < 0 to stop (tp_stress_hgrm_each returns it). */
typedef int (*tp_stress_hgrm_row_cb)(void *arg, uint64_t value_ns, double percentile,
                                     uint64_t count);

/* Calls row for every row tp_stress_hgrm_write writes, the 100% row last
 * (for an empty h only that one, value 0). Returns 0 or what row returned. */
int tp_stress_hgrm_each(const struct tp_stress_hist *h, int ticks, tp_stress_hgrm_row_cb row,
                        void *arg);

#endif /* TP_STRESS_HGRM_H */
