/* tp_stress_compare.c - tidepool-stress compare: two runs (or two sets of
 * repetitions) side by side, figure by figure, with the ratio B/A. With
 * several runs a side each figure is the median of its side, shown with
 * its spread (min..max), and a figure whose spreads do not overlap is
 * marked: its difference is beyond the run-to-run noise. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_stress_report.h"

#define PROG "tidepool-stress compare"
#define MAX_RUNS 64                  /* a side */

struct figure {
    const char *key;         /* in the JSON; "errors" is the sum of its object */
    const char *label;
    bool skip_zero;          /* left out when it is 0 in every run (not the mode's) */
    bool setting;            /* what was asked (-d), not measured: never marked */
};

static const struct figure figures[] = {
    { "msgs_per_s", "msgs/s", true, false },
    { "mb_per_s", "MB/s", true, false },
    { "connects_per_s", "connects/s", true, false },
    { "chat.deliveries_per_s", "deliveries/s", true, false },
    { "latency_us.p50", "latency p50 us", true, false },
    { "latency_us.p90", "latency p90 us", true, false },
    { "latency_us.p99", "latency p99 us", true, false },
    { "latency_us.p999", "latency p99.9 us", true, false },
    { "latency_us.max", "latency max us", true, false },
    { "latency_us.mean", "latency mean us", true, false },
    { "probe.latency_us.p50", "probe p50 us", true, false },
    { "probe.latency_us.p99", "probe p99 us", true, false },
    { "probe.latency_us.max", "probe max us", true, false },
    { "messages", "messages", false, false },
    { "errors", "errors", false, false },
    { "duration_s", "duration s", false, true },
};
#define NFIGURES (sizeof(figures) / sizeof(figures[0]))

struct side {
    struct tp_stress_report runs[MAX_RUNS];
    unsigned n;
};

/* Median, min and max of the figure over a side's runs; how many had it. */
struct spread {
    unsigned n;
    double med, min, max;
};

static bool figure_value(const struct tp_stress_report *r, const char *key, double *v)
{
    json_t *errors, *x;
    const char *k;

    if (strcmp(key, "errors") != 0)
        return tp_stress_report_number(r, key, v);
    errors = json_object_get(r->root, "errors");
    if (!json_is_object(errors))
        return false;
    *v = 0;
    json_object_foreach(errors, k, x)
        *v += json_is_number(x) ? json_number_value(x) : 0;
    return true;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static struct spread side_spread(const struct side *s, const char *key)
{
    double v[MAX_RUNS];
    struct spread sp = { 0 };
    unsigned i;

    for (i = 0; i < s->n; i++)
        if (figure_value(&s->runs[i], key, &v[sp.n]))
            sp.n++;
    if (sp.n == 0)
        return sp;
    qsort(v, sp.n, sizeof(v[0]), cmp_double);
    sp.min = v[0];
    sp.max = v[sp.n - 1];
    sp.med = sp.n % 2 ? v[sp.n / 2] : (v[sp.n / 2 - 1] + v[sp.n / 2]) / 2;
    return sp;
}

static void fmt_num(double v, char *buf, size_t len)
{
    snprintf(buf, len, v >= 1e5 || v <= -1e5 ? "%.0f" : "%.6g", v);
}

/* "51234" or "51234 [50100..52000]". */
static void fmt_spread(const struct spread *sp, bool several, char *buf, size_t len)
{
    char a[32], b[32], c[32];

    if (sp->n == 0) {
        snprintf(buf, len, "-");
        return;
    }
    fmt_num(sp->med, a, sizeof(a));
    if (!several) {
        snprintf(buf, len, "%s", a);
        return;
    }
    fmt_num(sp->min, b, sizeof(b));
    fmt_num(sp->max, c, sizeof(c));
    snprintf(buf, len, "%s [%s..%s]", a, b, c);
}

static void print_figure(const struct figure *f, const struct side *a, const struct side *b)
{
    struct spread sa = side_spread(a, f->key), sb = side_spread(b, f->key);
    bool several = a->n > 1 || b->n > 1;
    char ta[128], tb[128], ratio[32];
    const char *mark = "";

    if (sa.n == 0 && sb.n == 0)
        return;
    if (f->skip_zero && sa.max == 0 && sa.min == 0 && sb.max == 0 && sb.min == 0)
        return;
    fmt_spread(&sa, several, ta, sizeof(ta));
    fmt_spread(&sb, several, tb, sizeof(tb));
    if (sa.n == 0 || sb.n == 0)
        snprintf(ratio, sizeof(ratio), "-");
    else if (sa.med == 0)
        snprintf(ratio, sizeof(ratio), sb.med == 0 ? "1.00" : "inf");
    else
        snprintf(ratio, sizeof(ratio), "%.2f", sb.med / sa.med);
    if (!f->setting && sa.n > 1 && sb.n > 1 && (sb.min > sa.max || sb.max < sa.min))
        mark = " *";
    printf("%-18s %-28s %-28s %s%s\n", f->label, ta, tb, ratio, mark);
}

static void describe(const char *name, const struct side *s)
{
    unsigned i;

    printf("%s: %s %u run%s:", name, tp_stress_report_string(&s->runs[0], "mode"), s->n,
           s->n == 1 ? "" : "s");
    for (i = 0; i < s->n; i++)
        printf(" %s", s->runs[i].path);
    printf("\n");
}

static void free_side(struct side *s)
{
    unsigned i;

    for (i = 0; i < s->n; i++)
        tp_stress_report_fini(&s->runs[i]);
    s->n = 0;
}

static int load_side(struct side *s, char **paths, int n)
{
    char err[512];
    int i;

    if (n > MAX_RUNS) {
        fprintf(stderr, PROG ": at most %d runs a side\n", MAX_RUNS);
        return -EINVAL;
    }
    for (i = 0; i < n; i++) {
        if (tp_stress_report_load(&s->runs[s->n], paths[i], err, sizeof(err)) < 0) {
            fprintf(stderr, PROG ": %s\n", err);
            free_side(s);
            return -EINVAL;
        }
        s->n++;
    }
    return 0;
}

static const char usage_text[] =
    "usage: tidepool-stress compare A.json B.json\n"
    "       tidepool-stress compare A1.json A2.json ... -- B1.json B2.json ...\n";

static int usage(const char *why)
{
    fprintf(stderr, PROG ": %s\n%s", why, usage_text);
    return 2;
}

int tp_stress_compare_main(int argc, char **argv)
{
    static struct side a, b;
    int sep = -1, b_first, i;
    unsigned k;

    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(usage_text, stdout);
        return 0;
    }
    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], "--") == 0 && sep < 0)
            sep = i;
    if (sep < 0 && argc != 3)
        return usage(argc < 3 ? "expected two runs, A and B"
                              : "several runs a side: put -- between A's and B's");
    if (sep == 1 || sep == argc - 1)
        return usage("expected runs on both sides of --");
    if (sep < 0)
        sep = 2;                /* A B: B starts at argv[2] */
    b_first = strcmp(argv[sep], "--") == 0 ? sep + 1 : sep;
    if (load_side(&a, argv + 1, sep - 1) < 0)
        return 2;
    if (load_side(&b, argv + b_first, argc - b_first) < 0) {
        free_side(&a);
        return 2;
    }
    describe("A", &a);
    describe("B", &b);
    if (strcmp(tp_stress_report_string(&a.runs[0], "mode"),
               tp_stress_report_string(&b.runs[0], "mode")) != 0)
        printf("note: the runs are of different modes\n");
    printf("%-18s %-28s %-28s %s\n", "figure", "A", "B", "B/A");
    for (k = 0; k < NFIGURES; k++)
        print_figure(&figures[k], &a, &b);
    if (a.n > 1 && b.n > 1)
        printf("A, B: median [min..max] of the runs; * the spreads do not overlap\n");
    free_side(&a);
    free_side(&b);
    return 0;
}
