/* tp_stress_series.h - a run's time series (--interval): one row per
 * interval with that interval's own rates, open connections, errors and
 * latency percentiles, built from the engine's ticks; written as CSV (--csv)
 * and as the "series" of --json. */
#ifndef TP_STRESS_SERIES_H
#define TP_STRESS_SERIES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tp_stress_engine.h"

#define TP_STRESS_SERIES_PCTS 5      /* p50 p90 p99 p99.9 max */

/* Plain struct: one interval. */
struct tp_stress_row {
    double t_s;              /* its end, seconds from the run's start */
    double dt_s;             /* its length (the tail's may be short) */
    uint64_t open;           /* connections open at its end */
    uint64_t msgs, bytes;    /* the mode's messages in it (slow: sent; hold: none;
                                storm: cycles; chat: deliveries) */
    uint64_t err[TP_STRESS_ERR_KINDS];
    uint64_t lat_count;      /* latencies recorded in it; 0: lat_ns unset */
    uint64_t lat_ns[TP_STRESS_SERIES_PCTS];
};

/* Plain struct: the rows so far; init/fini. */
struct tp_stress_series {
    enum tp_stress_mode mode;
    int nkinds;              /* error kinds the mode counts */
    uint64_t interval_ns;
    struct tp_stress_row *rows;
    size_t n, cap;
    struct tp_stress_counts prev;    /* the previous tick's totals */
};

/* Empties s for a run of mode with interval_ns (> 0), counting nkinds
 * error kinds. */
void tp_stress_series_init(struct tp_stress_series *s, enum tp_stress_mode mode, int nkinds,
                           uint64_t interval_ns);

/* Frees the rows. */
void tp_stress_series_fini(struct tp_stress_series *s);

/* Appends the row of tick t: its counters less the previous tick's, its
 * histogram's percentiles. A tail shorter than 1 ms with nothing in it is
 * dropped. Returns 0, or -ENOMEM (s unchanged). */
int tp_stress_series_add(struct tp_stress_series *s, const struct tp_stress_tick *t);

/* Writes the header line and a row per interval: t_s, dt_s, open, messages,
 * msgs_per_s, mb_per_s, one column per error kind, lat_count, p50_us,
 * p90_us, p99_us, p999_us, max_us (empty when the interval has no
 * latencies). Returns 0 or -EIO. */
int tp_stress_series_write_csv(const struct tp_stress_series *s, FILE *f);

/* Writes `"interval_s":I,"series":[{...}, ...]` (no braces around), each
 * row an object with the CSV's figures, errors an object, latency_us null
 * without latencies. */
void tp_stress_series_write_json(const struct tp_stress_series *s, FILE *f);

#endif /* TP_STRESS_SERIES_H */
