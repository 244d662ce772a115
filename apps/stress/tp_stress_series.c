/* tp_stress_series.c - rows of the time series, and their CSV and JSON. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tp_stress_series.h"

static const uint32_t pcms[TP_STRESS_SERIES_PCTS] = { 50000, 90000, 99000, 99900, 100000 };
static const char *pct_names[TP_STRESS_SERIES_PCTS] = { "p50", "p90", "p99", "p999", "max" };

void tp_stress_series_init(struct tp_stress_series *s, enum tp_stress_mode mode, int nkinds,
                           uint64_t interval_ns)
{
    memset(s, 0, sizeof(*s));
    s->mode = mode;
    s->nkinds = nkinds;
    s->interval_ns = interval_ns;
}

void tp_stress_series_fini(struct tp_stress_series *s)
{
    free(s->rows);
    s->rows = NULL;
    s->n = s->cap = 0;
}

/* The mode's messages and bytes in n. */
static void mode_counts(enum tp_stress_mode mode, const struct tp_stress_counts *n,
                        uint64_t *msgs, uint64_t *bytes)
{
    *msgs = mode == TP_STRESS_SLOW ? n->sent_msgs : mode == TP_STRESS_HOLD ? 0 : n->msgs;
    *bytes = mode == TP_STRESS_SLOW ? n->sent_bytes : mode == TP_STRESS_HOLD ? 0 : n->bytes;
}

int tp_stress_series_add(struct tp_stress_series *s, const struct tp_stress_tick *t)
{
    uint64_t m0, b0, m1, b1;
    struct tp_stress_row *r;
    int k;

    mode_counts(s->mode, &s->prev, &m0, &b0);
    mode_counts(s->mode, &t->n, &m1, &b1);
    if (t->tail && t->end_ns < t->begin_ns + 1000000 && m1 == m0 && t->hist->count == 0)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        struct tp_stress_row *rows = realloc(s->rows, cap * sizeof(*rows));

        if (rows == NULL)
            return -ENOMEM;
        s->rows = rows;
        s->cap = cap;
    }
    r = &s->rows[s->n++];
    memset(r, 0, sizeof(*r));
    r->t_s = (double)(t->end_ns - t->start_ns) / 1e9;
    r->dt_s = t->end_ns > t->begin_ns ? (double)(t->end_ns - t->begin_ns) / 1e9 : 1e-9;
    r->msgs = m1 - m0;
    r->bytes = b1 - b0;
    r->open = t->open;
    for (k = 0; k < TP_STRESS_ERR_KINDS; k++)
        r->err[k] = t->n.err[k] - s->prev.err[k];
    r->lat_count = t->hist->count;
    for (k = 0; k < TP_STRESS_SERIES_PCTS && r->lat_count > 0; k++)
        r->lat_ns[k] = tp_stress_hist_percentile(t->hist, pcms[k]);
    s->prev = t->n;
    return 0;
}

int tp_stress_series_write_csv(const struct tp_stress_series *s, FILE *f)
{
    const struct tp_stress_row *r;
    size_t i;
    int k;

    fprintf(f, "t_s,dt_s,open,messages,msgs_per_s,mb_per_s");
    for (k = 0; k < s->nkinds; k++)
        fprintf(f, ",%s", tp_stress_err_name((enum tp_stress_err)k));
    fprintf(f, ",lat_count,p50_us,p90_us,p99_us,p999_us,max_us\n");
    for (i = 0; i < s->n; i++) {
        r = &s->rows[i];
        fprintf(f, "%.3f,%.3f,%llu,%llu,%.1f,%.3f", r->t_s, r->dt_s,
                (unsigned long long)r->open, (unsigned long long)r->msgs,
                (double)r->msgs / r->dt_s, (double)r->bytes / r->dt_s / 1e6);
        for (k = 0; k < s->nkinds; k++)
            fprintf(f, ",%llu", (unsigned long long)r->err[k]);
        fprintf(f, ",%llu", (unsigned long long)r->lat_count);
        for (k = 0; k < TP_STRESS_SERIES_PCTS; k++) {
            if (r->lat_count > 0)
                fprintf(f, ",%.3f", (double)r->lat_ns[k] / 1e3);
            else
                fputc(',', f);
        }
        fputc('\n', f);
    }
    return ferror(f) ? -EIO : 0;
}

static void write_json_row(const struct tp_stress_series *s, const struct tp_stress_row *r,
                           FILE *f)
{
    int k;

    fprintf(f, "{\"t\":%.3f,\"dt\":%.3f,\"open\":%llu,\"messages\":%llu,"
            "\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,\"errors\":{", r->t_s, r->dt_s,
            (unsigned long long)r->open, (unsigned long long)r->msgs,
            (double)r->msgs / r->dt_s, (double)r->bytes / r->dt_s / 1e6);
    for (k = 0; k < s->nkinds; k++)
        fprintf(f, "%s\"%s\":%llu", k ? "," : "", tp_stress_err_name((enum tp_stress_err)k),
                (unsigned long long)r->err[k]);
    fprintf(f, "},\"latency_us\":");
    if (r->lat_count == 0) {
        fprintf(f, "null}");
        return;
    }
    fprintf(f, "{\"count\":%llu", (unsigned long long)r->lat_count);
    for (k = 0; k < TP_STRESS_SERIES_PCTS; k++)
        fprintf(f, ",\"%s\":%.3f", pct_names[k], (double)r->lat_ns[k] / 1e3);
    fprintf(f, "}}");
}

void tp_stress_series_write_json(const struct tp_stress_series *s, FILE *f)
{
    size_t i;

    fprintf(f, "\"interval_s\":%.3f,\"series\":[", (double)s->interval_ns / 1e9);
    for (i = 0; i < s->n; i++) {
        fprintf(f, "%s\n  ", i ? "," : "");
        write_json_row(s, &s->rows[i], f);
    }
    fprintf(f, "]");
}
