/* The built tidepool-stress's results end to end: --interval series in
 * --json and --csv (they add up to the run's totals), --hgrm (HdrHistogram's
 * percentile distribution format), the progress line on a terminal, and the
 * plot (gnuplot; the SVG parsed with xmllint) and compare commands on
 * fixed JSON files in tests/e2e/data. Runs go against the built tidepool on
 * 127.0.0.1:0; the server and every child are stopped and reaped in .fini;
 * every wait is bounded. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STRESS TP_BIN_DIR "/tidepool-stress"
#define SERVER TP_BIN_DIR "/tidepool"
#define DATA TP_SOURCE_DIR "/tests/e2e/data/"
#define OUT_MAX (1 << 20)

static pid_t server_pid = -1, child_pid = -1;
static int server_err = -1;
static unsigned port;
static char conf_path[96], tmp_dir[64];
static char out[OUT_MAX];       /* the last child's stdout and stderr */
static size_t out_len;
static int code;                /* its exit status; 128 + signal */

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reads fd into out until EOF or the deadline; keeps the first OUT_MAX - 1 bytes. */
static void read_all(int fd, uint64_t deadline)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    char sink[4096];
    uint64_t now;
    ssize_t n;

    while ((now = now_ms()) < deadline) {
        if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
            continue;
        if (out_len < OUT_MAX - 1)
            n = read(fd, out + out_len, OUT_MAX - 1 - out_len);
        else
            n = read(fd, sink, sizeof(sink));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)         /* EOF; EIO on a pty whose child is gone */
            return;
        if (out_len < OUT_MAX - 1)
            out_len += (size_t)n;
        out[out_len] = '\0';
    }
}

/* Waits up to ms for pid, then SIGKILLs it; reaped either way. */
static int reap(pid_t pid, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    int status = 0;

    while (now_ms() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return status;
}

static void finish_child(int fd)
{
    int status;

    read_all(fd, now_ms() + 30000);
    close(fd);
    status = reap(child_pid, 5000);
    child_pid = -1;
    code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    cr_assert_null(strstr(out, "Sanitizer"), "%s", out);
    cr_assert_null(strstr(out, "runtime error"), "%s", out);
}

/* Runs argv (argv[0] a path) to its end, bounded by 30 s; path: PATH for it
 * (NULL: ours). Fills out and code. */
static void run_argv(char **argv, const char *path)
{
    int p[2];

    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    out_len = 0;
    out[0] = '\0';
    child_pid = fork();
    cr_assert_geq(child_pid, 0);
    if (child_pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        dup2(p[1], STDERR_FILENO);
        if (path != NULL)
            setenv("PATH", path, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    finish_child(p[0]);
}

/* Runs tidepool-stress with the NULL-terminated arguments. */
static void stress(const char *first, ...)
{
    char *argv[48];
    int argc = 0;
    const char *a;
    va_list ap;

    argv[argc++] = (char *)STRESS;
    va_start(ap, first);
    for (a = first; a != NULL && argc < 47; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    run_argv(argv, NULL);
}

/* A shell command's output (xmllint, file checks), bounded. */
static void shell(const char *cmd)
{
    char *argv[] = { (char *)"/bin/sh", (char *)"-c", (char *)cmd, NULL };

    run_argv(argv, NULL);
}

/* The built server, echo on 127.0.0.1:0; learns its port from its log. */
static void server_start(void)
{
    static const char conf[] = "listen 127.0.0.1:0;\nworkers 2;\n";
    char log[8192] = "";
    size_t len = 0;
    const char *line;
    uint64_t deadline = now_ms() + 10000;
    int fd, p[2];
    ssize_t n;

    snprintf(conf_path, sizeof(conf_path), "%s/tp.conf", tmp_dir);
    fd = open(conf_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, conf, sizeof(conf) - 1), (ssize_t)sizeof(conf) - 1);
    close(fd);
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    server_pid = fork();
    cr_assert_geq(server_pid, 0);
    if (server_pid == 0) {
        dup2(p[1], STDERR_FILENO);
        execl(SERVER, "tidepool", "-c", conf_path, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    server_err = p[0];
    while (strstr(log, "(app echo") == NULL && now_ms() < deadline && len < sizeof(log) - 1) {
        struct pollfd pfd = { .fd = server_err, .events = POLLIN };

        if (poll(&pfd, 1, 100) <= 0)
            continue;
        if ((n = read(server_err, log + len, sizeof(log) - 1 - len)) <= 0)
            break;
        len += (size_t)n;
        log[len] = '\0';
    }
    line = strstr(log, "listening on 127.0.0.1:");
    cr_assert_not_null(line, "server did not start: %s", log);
    cr_assert_eq(sscanf(line, "listening on 127.0.0.1:%u", &port), 1);
}

static void setup(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/tp_e2e_results_XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_dir));
}

static void teardown(void)
{
    char cmd[128];

    if (child_pid > 0) {
        kill(child_pid, SIGKILL);
        reap(child_pid, 1000);
        child_pid = -1;
    }
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        reap(server_pid, 5000);
        server_pid = -1;
    }
    if (server_err >= 0) {
        close(server_err);
        server_err = -1;
    }
    if (tmp_dir[0] != '\0') {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmp_dir);
        tmp_dir[0] = '\0';
    }
}

TestSuite(stress_results, .init = setup, .fini = teardown, .timeout = 90);

static const char *target(void)
{
    static char buf[32];

    snprintf(buf, sizeof(buf), "127.0.0.1:%u", port);
    return buf;
}

static const char *tmp(const char *name)
{
    static char paths[8][128];
    static unsigned next;
    char *p = paths[next++ % 8];

    snprintf(p, 128, "%s/%s", tmp_dir, name);
    return p;
}

static char *slurp(const char *path)
{
    static char buf[OUT_MAX];
    FILE *f = fopen(path, "r");
    size_t n;

    cr_assert_not_null(f, "no %s; the tool said:\n%s", path, out);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The number after "key": at or after from. */
static double num_after(const char *from, const char *key, const char **end)
{
    char pat[64], *e;
    const char *p;
    double v;

    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(from, pat);
    cr_assert_not_null(p, "no %s in %.400s", key, from);
    v = strtod(p + strlen(pat), &e);
    cr_assert_neq(e, p + strlen(pat), "%s is not a number", key);
    if (end != NULL)
        *end = e;
    return v;
}

/* Sums key over the series' rows (a row without it counts 0: a latency of
 * null has no count); *rows: how many. */
static double series_sum(const char *json, const char *key, int *rows)
{
    const char *p = strstr(json, "\"series\":["), *next;
    char pat[64];
    double sum = 0;

    cr_assert_not_null(p, "no series in %.2000s", json);
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    *rows = 0;
    for (p = strstr(p, "{\"t\":"); p != NULL; p = next) {
        const char *k = strstr(p, pat);

        next = strstr(p + 1, "{\"t\":");
        if (k != NULL && (next == NULL || k < next))
            sum += num_after(p, key, NULL);
        (*rows)++;
    }
    return sum;
}

static int count_lines(const char *s)
{
    int n = 0;

    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* ------------------------------------------------------------ the series */

Test(stress_results, interval_series_adds_up_to_the_run_and_csv_has_a_row_each)
{
    const char *json, *csv;
    char head[512];
    double dt, t, dt_sum = 0;
    int rows, i;

    server_start();
    stress("-c", "4", "-t", "2", "-d", "1100ms", "-p", "2", "--interval", "200ms", "--json",
           tmp("run.json"), "--csv", tmp("run.csv"), "-q", target(), NULL);
    cr_assert_eq(code, 0, "%s", out);
    json = slurp(tmp("run.json"));
    cr_assert_eq(num_after(json, "interval_s", NULL), 0.2);
    cr_assert_eq(series_sum(json, "messages", &rows), num_after(json, "messages", NULL),
                 "the intervals' messages add up to the run's: %s", json);
    cr_assert_eq(rows, 6, "1.1 s: five 200 ms intervals and a tail: %d rows", rows);
    cr_assert_eq(series_sum(json, "count", &rows), num_after(json, "messages", NULL),
                 "every reply's latency is in exactly one interval: %s", json);
    cr_assert_not_null(strstr(json, ",100.000000,"), "%s", json);
    cr_assert_eq(strtod(strstr(json, ",100.000000,") + 12, NULL), num_after(json, "messages", NULL),
                 "the run's distribution has every reply: %s", json);
    /* Every whole interval is 200 ms; the run's 4 connections stay open. */
    const char *p = strstr(json, "\"series\":[");
    for (i = 0; i < 6; i++) {
        p = strstr(p, "{\"t\":");
        dt = num_after(p, "dt", NULL);
        /* A thread cuts at its first loop turn from the interval's end on:
         * row i ends at 0.2 * (i + 1) s or a little later. */
        t = num_after(p, "t", NULL);
        if (i < 5)
            cr_assert(t >= 0.2 * (i + 1) - 0.0005 && t < 0.2 * (i + 1) + 0.1,
                      "row %d: t %.3f", i, t);
        else
            cr_assert(t >= 1.1 - 0.0005 && t < 1.3, "the tail: t %.3f", t);
        cr_assert(dt > 0.0 && dt < 0.3, "row %d: dt %.3f", i, dt);
        dt_sum += dt;
        cr_assert(fabs(t - dt_sum) < 0.0035, "row %d: t %.3f, its dts add up to %.3f", i, t, dt_sum);
        cr_assert_eq(num_after(p, "open", NULL), 4, "row %d", i);
        /* A reply is counted and timed at once, by one thread: in its interval. */
        cr_assert_eq(num_after(p, "count", NULL), num_after(p, "messages", NULL),
                     "row %d: as many latencies as replies: %.300s", i, p);
        cr_assert_geq(num_after(p, "p99", NULL), num_after(p, "p50", NULL));
        p++;
    }
    csv = slurp(tmp("run.csv"));
    snprintf(head, sizeof(head), "t_s,dt_s,open,messages,msgs_per_s,mb_per_s,refused,reset,"
             "timeout,mismatch,closed_early,other,lat_count,p50_us,p90_us,p99_us,p999_us,"
             "max_us\n");
    cr_assert_eq(strncmp(csv, head, strlen(head)), 0, "%s", csv);
    cr_assert_eq(count_lines(csv), rows + 1, "a header and a row per interval:\n%s", csv);
    cr_assert_eq(sscanf(csv + strlen(head), "%lf,%lf,%d,", &t, &dt, &i), 3, "%s", csv);
    cr_assert(t >= 0.2 - 0.0005 && t < 0.3 && dt == t && i == 4, "%s", csv);
}

Test(stress_results, interval_gives_each_mode_the_figures_it_has)
{
    const char *json;
    int rows;

    server_start();
    stress("--mode", "flood", "-c", "2", "-d", "600ms", "--interval", "200ms", "--json",
           tmp("flood.json"), "-q", target(), NULL);
    cr_assert_eq(code, 0, "%s", out);
    json = slurp(tmp("flood.json"));
    cr_assert_eq(series_sum(json, "messages", &rows), num_after(json, "messages", NULL));
    cr_assert_not_null(strstr(json, "\"latency_us\":null"), "flood has no latency: %s", json);
    stress("--mode", "storm", "-c", "4", "-d", "600ms", "--interval", "200ms", "--json",
           tmp("storm.json"), "-q", target(), NULL);
    cr_assert_eq(code, 0, "%s", out);
    json = slurp(tmp("storm.json"));
    cr_assert_eq(series_sum(json, "messages", &rows), num_after(json, "messages", NULL),
                 "storm: cycles per interval");
    stress("--mode", "hold", "-c", "5", "-d", "600ms", "--interval", "200ms", "--json",
           tmp("hold.json"), "-q", target(), NULL);
    cr_assert_eq(code, 0, "%s", out);
    json = slurp(tmp("hold.json"));
    cr_assert_eq(series_sum(json, "open", &rows), 5.0 * rows, "hold: 5 open in every row");
    cr_assert_eq(series_sum(json, "messages", &rows), 0);
}

Test(stress_results, csv_needs_an_interval)
{
    stress("--csv", "/tmp/x.csv", "127.0.0.1:1", NULL);
    cr_assert_eq(code, 2, "%s", out);
    cr_assert_not_null(strstr(out, "--csv: needs --interval"), "%s", out);
    stress("--interval", "0", "127.0.0.1:1", NULL);
    cr_assert_eq(code, 2, "%s", out);
    cr_assert_not_null(strstr(out, "--interval \"0\""), "%s", out);
}

/* The progress line, on a terminal: one per interval with its rate and p99. */
Test(stress_results, progress_line_on_a_terminal_shows_each_interval)
{
    int fd, lines = 0;
    const char *p;

    server_start();
    out_len = 0;
    out[0] = '\0';
    child_pid = forkpty(&fd, NULL, NULL, NULL);
    cr_assert_geq(child_pid, 0);
    if (child_pid == 0) {
        execl(STRESS, "tidepool-stress", "-c", "2", "-d", "1s", "--interval", "250ms",
              target(), (char *)NULL);
        _exit(127);
    }
    finish_child(fd);
    cr_assert_eq(code, 0, "%s", out);
    for (p = out; (p = strchr(p, '\r')) != NULL; p++)
        if (strncmp(p, "\r", 1) == 0 && strstr(p, "p99") != NULL && p[1] != '\n')
            lines++;
    cr_assert_geq(lines, 3, "a line per 250 ms interval:\n%s", out);
    cr_assert_not_null(strstr(out, "msg/s"), "%s", out);
    cr_assert_not_null(strstr(out, "   0.5s"), "elapsed at the interval's end:\n%s", out);
}

/* ------------------------------------------------------------ .hgrm */

Test(stress_results, hgrm_is_hdrhistograms_percentile_distribution)
{
    static const char head[] = "       Value   Percentile   TotalCount 1/(1-Percentile)\n\n";
    double value, pct, inv, prev_value = 0, prev_pct = -1, mean, sd;
    long long count, prev_count = 0, total;
    const char *h, *line;
    int rows = 0, buckets, subs;

    server_start();
    stress("-c", "2", "-n", "5000", "--hgrm", tmp("run.hgrm"), "-q", target(), NULL);
    cr_assert_eq(code, 0, "%s", out);
    h = slurp(tmp("run.hgrm"));
    cr_assert_eq(strncmp(h, head, strlen(head)), 0, "%s", h);
    for (line = h + strlen(head); *line != '#' && *line != '\0'; line = strchr(line, '\n') + 1) {
        if (sscanf(line, "%lf %lf %lld %lf", &value, &pct, &count, &inv) < 3)
            cr_assert_fail("row %d: %.60s", rows, line);
        cr_assert_geq(value, prev_value, "row %d", rows);
        cr_assert_gt(pct, prev_pct, "row %d", rows);
        cr_assert_geq(count, prev_count, "row %d", rows);
        prev_value = value;
        prev_pct = pct;
        prev_count = count;
        rows++;
    }
    cr_assert_gt(rows, 20);
    cr_assert_eq(pct, 1.0);
    cr_assert_eq(count, 5000);
    cr_assert_eq(sscanf(line, "#[Mean    = %lf, StdDeviation   = %lf]\n", &mean, &sd), 2, "%s",
                 line);
    line = strchr(line, '\n') + 1;
    cr_assert_eq(sscanf(line, "#[Max     = %lf, Total count    = %lld]\n", &value, &total), 2);
    cr_assert_eq(total, 5000);
    cr_assert_eq(value, prev_value, "the max is the 100%% row's value");
    line = strchr(line, '\n') + 1;
    cr_assert_eq(sscanf(line, "#[Buckets = %d, SubBuckets     = %d]\n", &buckets, &subs), 2);
    cr_assert_eq(buckets, 33);
    cr_assert_eq(subs, 256);
}

/* ------------------------------------------------------------ plot */

/* How many legend (key) texts of the SVG read name. */
static int legend_count(const char *svg, const char *name)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "xmllint --xpath \"count(//*[local-name()='g']"
             "[starts-with(@id,'gnuplot_plot_')]//*[local-name()='text'][normalize-space()="
             "'%s'])\" '%s'", name, svg);
    shell(cmd);
    cr_assert_eq(code, 0, "%s: %s", cmd, out);
    return atoi(out);
}

Test(stress_results, plot_svg_is_well_formed_and_names_every_run_in_its_legend)
{
    char cmd[256];

    stress("plot", DATA "before.json", DATA "after.json", "-o", tmp("p.svg"), "--title",
           "before and after", NULL);
    cr_assert_eq(code, 0, "%s", out);
    snprintf(cmd, sizeof(cmd), "xmllint --noout '%s'", tmp("p.svg"));
    shell(cmd);
    cr_assert_eq(code, 0, "the SVG is not well formed: %s", out);
    /* Three panels (throughput, p99, distribution), each with both runs. */
    cr_assert_eq(legend_count(tmp("p.svg"), "before"), 3);
    cr_assert_eq(legend_count(tmp("p.svg"), "after"), 3);
    snprintf(cmd, sizeof(cmd), "xmllint --xpath \"count(//*[local-name()='text']"
             "[normalize-space()='99.9%%'])\" '%s'", tmp("p.svg"));
    shell(cmd);
    cr_assert_eq(atoi(out), 1, "the percentile axis has its 99.9%% tic: %s", out);
    cr_assert_eq(access(tmp("p.png"), F_OK), -1);
}

Test(stress_results, plot_png_is_a_png)
{
    char cmd[256];

    stress("plot", DATA "before.json", "-o", tmp("p.png"), NULL);
    cr_assert_eq(code, 0, "%s", out);
    snprintf(cmd, sizeof(cmd), "head -c 8 '%s' | od -An -tx1", tmp("p.png"));
    shell(cmd);
    cr_assert_not_null(strstr(out, "89 50 4e 47 0d 0a 1a 0a"), "%s", out);
}

Test(stress_results, plot_without_gnuplot_is_a_clear_error)
{
    char *argv[] = { (char *)STRESS, (char *)"plot", (char *)DATA "before.json", (char *)"-o",
                     (char *)tmp("p.svg"), NULL };

    run_argv(argv, "/nonexistent");
    cr_assert_eq(code, 2, "%s", out);
    cr_assert_not_null(strstr(out, "gnuplot is not installed"), "%s", out);
}

Test(stress_results, plot_refuses_bad_input_in_one_line)
{
    stress("plot", DATA "before.json", NULL);
    cr_assert_eq(code, 2);
    cr_assert_not_null(strstr(out, "expected -o FILE.svg"), "%s", out);
    stress("plot", DATA "before.json", "-o", tmp("p.pdf"), NULL);
    cr_assert_eq(code, 2);
    cr_assert_not_null(strstr(out, "must end in .svg or .png"), "%s", out);
    stress("plot", DATA "missing.json", "-o", tmp("p.svg"), NULL);
    cr_assert_eq(code, 2);
    cr_assert_not_null(strstr(out, "missing.json"), "%s", out);
    stress("plot", TP_SOURCE_DIR "/tests/fuzz/run", "-o", tmp("p.svg"), NULL);
    cr_assert_eq(code, 2);
    cr_assert_not_null(strstr(out, "tests/fuzz/run:1:"), "not JSON, with line: %s", out);
}

/* ------------------------------------------------------------ compare */

/* The line of out that starts with label. */
static const char *line_of(const char *label)
{
    static char line[256];
    const char *p = out;
    size_t n;

    while (p != NULL && strncmp(p, label, strlen(label)) != 0)
        p = (p = strchr(p, '\n')) != NULL ? p + 1 : NULL;
    cr_assert_not_null(p, "no %s line in:\n%s", label, out);
    n = strcspn(p, "\n");
    snprintf(line, sizeof(line), "%.*s", (int)n, p);
    return line;
}

Test(stress_results, compare_prints_each_figure_with_the_ratio)
{
    stress("compare", DATA "compare_a1.json", DATA "compare_b1.json", NULL);
    cr_assert_eq(code, 0, "%s", out);
    cr_assert_not_null(strstr(line_of("msgs/s "), " 1000 "), "%s", out);
    cr_assert_not_null(strstr(line_of("msgs/s "), " 2000 "), "%s", out);
    cr_assert_not_null(strstr(line_of("msgs/s "), " 2.00"), "%s", out);
    cr_assert_not_null(strstr(line_of("latency p99 us "), " 1.10"), "%s", out);
    cr_assert_not_null(strstr(line_of("errors "), " inf"), "0 to 1 error: %s", out);
    cr_assert_null(strchr(out, '*'), "one run a side: no spread to judge: %s", out);
}

Test(stress_results, compare_marks_figures_whose_spreads_do_not_overlap)
{
    stress("compare", DATA "compare_a1.json", DATA "compare_a2.json", "--",
           DATA "compare_b1.json", DATA "compare_b2.json", NULL);
    cr_assert_eq(code, 0, "%s", out);
    /* msgs/s: A 1000, 1100; B 2000, 2100: medians 1050 and 2050. */
    cr_assert_not_null(strstr(line_of("msgs/s "), "1050 [1000..1100]"), "%s", out);
    cr_assert_not_null(strstr(line_of("msgs/s "), "2050 [2000..2100]"), "%s", out);
    cr_assert_not_null(strstr(line_of("msgs/s "), " 1.95 *"), "%s", out);
    /* p99: A 100, 120; B 110, 115 overlap: a difference within the noise. */
    cr_assert_not_null(strstr(line_of("latency p99 us "), "110 [100..120]"), "%s", out);
    cr_assert_not_null(strstr(line_of("latency p99 us "), " 1.02"), "%s", out);
    cr_assert_null(strchr(line_of("latency p99 us "), '*'), "%s", out);
    cr_assert_null(strchr(line_of("latency p50 us "), '*'), "%s", out);
}

Test(stress_results, compare_refuses_bad_input)
{
    stress("compare", DATA "compare_a1.json", NULL);
    cr_assert_eq(code, 2, "%s", out);
    stress("compare", DATA "compare_a1.json", DATA "compare_a2.json", DATA "compare_b1.json",
           NULL);
    cr_assert_eq(code, 2, "%s", out);
    cr_assert_not_null(strstr(out, "put -- between"), "%s", out);
    stress("compare", DATA "compare_a1.json", TP_SOURCE_DIR "/README.md", NULL);
    cr_assert_eq(code, 2, "%s", out);
    cr_assert_not_null(strstr(out, "README.md:1:"), "%s", out);
}
