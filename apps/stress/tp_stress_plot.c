/* tp_stress_plot.c - tidepool-stress plot: throughput and p99 over time
 * (from --interval series) and the latency distribution on HdrHistogram's
 * log percentile axis (x = 1/(1-p)), one line per run. Writes the data and
 * a gnuplot script to a temporary directory, runs gnuplot (svg or pngcairo
 * terminal), and removes the directory. */
#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tp_stress_report.h"

#define PROG "tidepool-stress plot"
#define MAX_RUNS 32

extern char **environ;

struct plot {
    struct tp_stress_report runs[MAX_RUNS];
    bool has_series[MAX_RUNS], has_dist[MAX_RUNS];
    unsigned n, nseries, ndist;
    const char *out, *title;
    bool png;
    double max_x;            /* the distribution's largest 1/(1-p) */
    char dir[64];
};

static int usage(const char *why)
{
    fprintf(stderr, PROG ": %s\nusage: tidepool-stress plot RUN.json [RUN.json ...] "
            "-o FILE.svg|FILE.png [--title TEXT]\n", why);
    return 2;
}

/* A gnuplot single-quoted string: ' doubles, nothing else is special. */
static void put_gp_string(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s != '\0'; s++) {
        if (*s == '\'')
            fputc('\'', f);
        if ((unsigned char)*s >= 0x20)
            fputc(*s, f);
    }
    fputc('\'', f);
}

/* series_I.dat: t msgs_per_s p99_us ("-" without latencies). */
static int write_series(struct plot *p, unsigned i, FILE *f)
{
    json_t *rows = json_object_get(p->runs[i].root, "series"), *row, *lat;
    size_t k;

    json_array_foreach(rows, k, row) {
        lat = json_object_get(row, "latency_us");
        fprintf(f, "%.6f %.6f ", json_number_value(json_object_get(row, "t")),
                json_number_value(json_object_get(row, "msgs_per_s")));
        if (json_is_object(lat))
            fprintf(f, "%.6f\n", json_number_value(json_object_get(lat, "p99")));
        else
            fprintf(f, "-\n");
    }
    return json_array_size(rows) > 0;
}

/* dist_I.dat: 1/(1-p) value_us for every row below 100%. */
static int write_dist(struct plot *p, unsigned i, FILE *f)
{
    json_t *rows = json_object_get(p->runs[i].root, "latency_distribution"), *row;
    double pct, x;
    size_t k;
    int n = 0;

    json_array_foreach(rows, k, row) {
        pct = json_number_value(json_array_get(row, 1));
        if (pct >= 100.0)
            continue;
        x = 1.0 / (1.0 - pct / 100.0);
        if (x > p->max_x)
            p->max_x = x;
        fprintf(f, "%.6f %.6f\n", x, json_number_value(json_array_get(row, 0)));
        n++;
    }
    return n > 0;
}

/* Writes DIR/NAME_I.dat with fn; 1 if it has rows, 0 if none, -1 on error. */
static int write_data(struct plot *p, unsigned i, const char *name,
                      int (*fn)(struct plot *, unsigned, FILE *))
{
    char path[128];
    FILE *f;
    int rc;

    snprintf(path, sizeof(path), "%s/%s_%u.dat", p->dir, name, i);
    if ((f = fopen(path, "w")) == NULL) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return -1;
    }
    rc = fn(p, i, f);
    if (fclose(f) != 0) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return -1;
    }
    return rc;
}

/* One plot command over the runs that have the data. */
static void plot_lines(const struct plot *p, FILE *f, const char *name, const char *using,
                       const bool *has)
{
    const char *sep = "plot ";
    char path[128];
    unsigned i;

    for (i = 0; i < p->n; i++) {
        if (!has[i])
            continue;
        snprintf(path, sizeof(path), "%s/%s_%u.dat", p->dir, name, i);
        fputs(sep, f);
        put_gp_string(f, path);
        fprintf(f, " using %s with linespoints lw 2 pt 7 ps 0.3 lc %u title ", using, i + 1);
        put_gp_string(f, p->runs[i].name);
        sep = ", \\\n     ";
    }
    fprintf(f, "\n");
}

static void write_script(const struct plot *p, FILE *f)
{
    unsigned panels = (p->nseries > 0 ? 2 : 0) + (p->ndist > 0);
    double decades = ceil(log10(p->max_x > 10 ? p->max_x : 10));

    fprintf(f, "set terminal %s size 900,%u font 'sans,10'\nset output ",
            p->png ? "pngcairo" : "svg", 300 * panels + 40);
    put_gp_string(f, p->out);
    fprintf(f, "\nset termoption noenhanced\nset datafile missing '-'\nset grid\n"
            "set key outside right top\nset multiplot layout %u,1 title ", panels);
    put_gp_string(f, p->title);
    fprintf(f, "\n");
    if (p->nseries > 0) {
        fprintf(f, "set title 'Throughput per interval'\nset xlabel 'time (s)'\n"
                "set ylabel 'messages/s'\nset yrange [0:*]\nset format y '%%.1s%%c'\n");
        plot_lines(p, f, "series", "1:2", p->has_series);
        fprintf(f, "set title 'p99 latency per interval'\nset ylabel 'p99 (us)'\n"
                "set format y '%%g'\n");
        plot_lines(p, f, "series", "1:3", p->has_series);
    }
    if (p->ndist > 0) {
        fprintf(f, "set title 'Latency by percentile'\nset xlabel 'percentile'\n"
                "set ylabel 'latency (us)'\nset yrange [0:*]\nset logscale x 10\n"
                "set xrange [1:%g]\n"
                /* Tic labels are gnuplot formats: %%%% is one %. */
                "set xtics ('0%%%%' 1, '90%%%%' 10, '99%%%%' 100, '99.9%%%%' 1000, "
                "'99.99%%%%' 10000, '99.999%%%%' 100000, '99.9999%%%%' 1000000)\n",
                pow(10, decades));
        plot_lines(p, f, "dist", "1:2", p->has_dist);
    }
    fprintf(f, "unset multiplot\n");
}

/* Runs gnuplot SCRIPT; 0 or 2 after saying why not. */
static int run_gnuplot(const char *script)
{
    char *argv[] = { "gnuplot", (char *)script, NULL };
    int rc, status;
    pid_t pid;

    rc = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
    if (rc == ENOENT) {
        fprintf(stderr, PROG ": gnuplot is not installed (not in PATH); on Debian: "
                "apt-get install gnuplot-nox\n");
        return 2;
    }
    if (rc != 0) {
        fprintf(stderr, PROG ": starting gnuplot: %s\n", strerror(rc));
        return 2;
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 2;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, PROG ": gnuplot failed (its message is above)\n");
        return 2;
    }
    return 0;
}

/* The data files and the script in p->dir, then gnuplot. */
static int draw(struct plot *p)
{
    char script[128];
    unsigned i;
    FILE *f;
    int s, d;

    for (i = 0; i < p->n; i++) {
        if ((s = write_data(p, i, "series", write_series)) < 0 ||
            (d = write_data(p, i, "dist", write_dist)) < 0)
            return 2;
        p->has_series[i] = s > 0;
        p->has_dist[i] = d > 0;
        p->nseries += s > 0;
        p->ndist += d > 0;
    }
    if (p->nseries == 0 && p->ndist == 0) {
        fprintf(stderr, PROG ": nothing to plot: no run has a series (--interval) or "
                "latencies\n");
        return 2;
    }
    snprintf(script, sizeof(script), "%s/plot.gp", p->dir);
    if ((f = fopen(script, "w")) == NULL) {
        fprintf(stderr, PROG ": %s: %s\n", script, strerror(errno));
        return 2;
    }
    write_script(p, f);
    if (fclose(f) != 0) {
        fprintf(stderr, PROG ": %s: %s\n", script, strerror(errno));
        return 2;
    }
    return run_gnuplot(script);
}

/* Removes the temporary directory and what draw() wrote into it. */
static void remove_dir(const struct plot *p)
{
    static const char *names[] = { "series", "dist" };
    char path[128];
    unsigned i, k;

    for (i = 0; i < p->n; i++)
        for (k = 0; k < 2; k++) {
            snprintf(path, sizeof(path), "%s/%s_%u.dat", p->dir, names[k], i);
            unlink(path);
        }
    snprintf(path, sizeof(path), "%s/plot.gp", p->dir);
    unlink(path);
    rmdir(p->dir);
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);

    return n > t && strcmp(s + n - t, tail) == 0;
}

/* Options and run files; 0 or the exit status. */
static int parse(struct plot *p, int argc, char **argv)
{
    char err[512];
    int i;

    for (i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--title") == 0) && i + 1 == argc)
            return usage("expected a value after -o or --title");
        if (strcmp(argv[i], "-o") == 0) {
            p->out = argv[++i];
        } else if (strcmp(argv[i], "--title") == 0) {
            p->title = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            snprintf(err, sizeof(err), "unknown option %s", argv[i]);
            return usage(err);
        } else if (p->n == MAX_RUNS) {
            return usage("too many runs (at most 32)");
        } else if (tp_stress_report_load(&p->runs[p->n], argv[i], err, sizeof(err)) < 0) {
            fprintf(stderr, PROG ": %s\n", err);
            return 2;
        } else {
            p->n++;
        }
    }
    if (p->n == 0)
        return usage("expected at least one RUN.json");
    if (p->out == NULL)
        return usage("expected -o FILE.svg or -o FILE.png");
    if (!ends_with(p->out, ".svg") && !ends_with(p->out, ".png"))
        return usage("-o: the file name must end in .svg or .png");
    p->png = ends_with(p->out, ".png");
    if (p->title == NULL)
        p->title = "tidepool-stress";
    return 0;
}

int tp_stress_plot_main(int argc, char **argv)
{
    static struct plot p;
    const char *tmp = getenv("TMPDIR");
    unsigned i;
    int rc;

    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: tidepool-stress plot RUN.json [RUN.json ...] -o FILE.svg|FILE.png "
               "[--title TEXT]\n");
        return 0;
    }
    rc = parse(&p, argc, argv);
    if (rc == 0) {
        snprintf(p.dir, sizeof(p.dir), "%s/tidepool-plot.XXXXXX",
                 tmp != NULL && tmp[0] != '\0' && strlen(tmp) < 32 ? tmp : "/tmp");
        if (mkdtemp(p.dir) == NULL) {
            fprintf(stderr, PROG ": a temporary directory %s: %s\n", p.dir, strerror(errno));
            rc = 2;
        } else {
            rc = draw(&p);
            remove_dir(&p);
        }
    }
    for (i = 0; i < p.n; i++)
        tp_stress_report_fini(&p.runs[i]);
    return rc;
}
