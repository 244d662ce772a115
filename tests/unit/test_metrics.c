/* test_metrics.c - the counter region and its Prometheus text exposition. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "tp_metrics.h"

static char *render(const tp_metrics_t *m)
{
    struct tp_metrics_text t = { 0 };

    cr_assert_eq(tp_metrics_render(m, &t), 0);
    cr_assert_not_null(t.data);
    cr_assert_eq(strlen(t.data), t.len, "no NUL inside, NUL after");
    return t.data;
}

/* True if text has exactly this line. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    const char *s;

    for (s = text; (s = strstr(s, line)) != NULL; s++)
        if ((s == text || s[-1] == '\n') && s[n] == '\n')
            return true;
    return false;
}

/* The value on the line that starts with "name " (labels included). */
static double value_of(const char *text, const char *name)
{
    char want[256];
    const char *s;

    snprintf(want, sizeof(want), "\n%s ", name);
    s = strstr(text, want);
    cr_assert_not_null(s, "no %s in:\n%s", name, text);
    return strtod(s + strlen(want), NULL);
}

/* Every sample's family was announced by HELP then TYPE before it, once;
 * histograms' _bucket, _sum and _count belong to theirs. */
static void check_families(const char *text)
{
    char seen[64][128], name[128], type[32];
    const char *line = text;
    size_t nseen = 0, i, k;
    bool typed;

    while (*line != '\0') {
        const char *end = strchr(line, '\n');

        cr_assert_not_null(end, "the text ends in a newline");
        if (sscanf(line, "# TYPE %127s %31s", name, type) == 2) {
            for (i = 0; i < nseen; i++)
                cr_assert_str_neq(seen[i], name, "family %s announced twice", name);
            cr_assert_lt(nseen, 64);
            snprintf(seen[nseen++], sizeof(seen[0]), "%s", name);
        } else if (line[0] != '#') {
            for (k = 0; line + k < end && line[k] != '{' && line[k] != ' '; k++)
                ;
            snprintf(name, sizeof(name), "%.*s", (int)k, line);
            typed = false;
            for (i = 0; i < nseen && !typed; i++) {
                size_t fl = strlen(seen[i]);

                typed = strcmp(name, seen[i]) == 0 ||
                        (strncmp(name, seen[i], fl) == 0 &&
                         (strcmp(name + fl, "_bucket") == 0 || strcmp(name + fl, "_sum") == 0 ||
                          strcmp(name + fl, "_count") == 0));
            }
            cr_assert(typed, "sample %s has no TYPE line before it", name);
        }
        line = end + 1;
    }
    /* And every TYPE follows its HELP. */
    for (i = 0; i < nseen; i++) {
        char help[160], typ[160];
        const char *h, *t;

        snprintf(help, sizeof(help), "# HELP %s ", seen[i]);
        snprintf(typ, sizeof(typ), "# TYPE %s ", seen[i]);
        h = strstr(text, help);
        t = strstr(text, typ);
        cr_assert(h != NULL && t != NULL && h < t, "HELP before TYPE for %s", seen[i]);
    }
}

Test(metrics, one_process_has_every_family_with_help_and_type)
{
    tp_metrics_t *m = tp_metrics_create(1);
    struct tp_metrics_slot *s;
    char *text;

    cr_assert_not_null(m);
    s = tp_metrics_claim(m, 0);
    cr_assert_not_null(s);
    s->stats.accepted = 7;
    s->stats.refused_acl = 1;
    s->stats.refused_per_ip = 2;
    s->stats.refused_rate = 3;
    s->stats.rejected_max_conn = 4;
    s->stats.open = 5;
    s->stats.closed_peer = 6;
    s->stats.closed_read_timeout = 8;
    s->stats.accept_pauses = 9;
    s->stats.lingered = 10;
    s->stats.linger_cut = 11;
    s->stats.queued_bytes = 4096;
    s->nlisten = 2;
    strcpy(s->listen[0].name, "127.0.0.1:7000");
    strcpy(s->listen[1].name, "[::1]:9100");
    s->listen[0].msgs_in = 100;
    s->listen[0].msgs_out = 99;
    s->listen[0].bytes_in = 1000;
    s->listen[0].bytes_out = 990;
    s->listen[1].msgs_in = 3;
    text = render(m);
    check_families(text);
    cr_expect(has_line(text, "# TYPE tidepool_connections_accepted_total counter"));
    cr_expect(has_line(text, "tidepool_connections_accepted_total 7"), "%s", text);
    cr_expect(has_line(text, "tidepool_connections_refused_total{reason=\"acl\"} 1"));
    cr_expect(has_line(text, "tidepool_connections_refused_total{reason=\"per_ip\"} 2"));
    cr_expect(has_line(text, "tidepool_connections_refused_total{reason=\"rate\"} 3"));
    cr_expect(has_line(text, "tidepool_connections_refused_total{reason=\"max_connections\"} 4"));
    cr_expect(has_line(text, "# TYPE tidepool_connections_open gauge"));
    cr_expect(has_line(text, "tidepool_connections_open 5"));
    cr_expect(has_line(text, "tidepool_connections_closed_total{reason=\"peer\"} 6"));
    cr_expect(has_line(text, "tidepool_connections_closed_total{reason=\"read_timeout\"} 8"));
    cr_expect(has_line(text, "tidepool_connections_closed_total{reason=\"shutdown\"} 0"));
    cr_expect(has_line(text, "tidepool_accept_pauses_total 9"));
    cr_expect(has_line(text, "tidepool_lingering_closes_total 10"));
    cr_expect(has_line(text, "tidepool_lingering_timeouts_total 11"));
    cr_expect(has_line(text, "tidepool_worker_queue_bytes 4096"));
    cr_expect(has_line(text, "tidepool_messages_total{listener=\"127.0.0.1:7000\",direction=\"in\"} 100"));
    cr_expect(has_line(text, "tidepool_messages_total{listener=\"127.0.0.1:7000\",direction=\"out\"} 99"));
    cr_expect(has_line(text, "tidepool_messages_total{listener=\"[::1]:9100\",direction=\"in\"} 3"));
    cr_expect(has_line(text, "tidepool_bytes_total{listener=\"127.0.0.1:7000\",direction=\"in\"} 1000"));
    cr_expect(has_line(text, "tidepool_bytes_total{listener=\"127.0.0.1:7000\",direction=\"out\"} 990"));
    cr_expect(has_line(text, "tidepool_draining 0"));
    cr_expect(has_line(text, "# TYPE tidepool_message_duration_seconds histogram"));
    cr_expect(has_line(text, "# TYPE tidepool_worker_queue_wait_seconds histogram"));
    cr_expect(has_line(text, "# TYPE process_cpu_seconds_total counter"));
    cr_expect(strstr(text, "process=") == NULL, "one process: no process label");
    free(text);
    tp_metrics_destroy(m);
}

Test(metrics, histogram_buckets_are_cumulative_and_bounds_inclusive)
{
    tp_metrics_t *m = tp_metrics_create(1);
    struct tp_metrics_slot *s = tp_metrics_claim(m, 0);
    char *text;

    tp_metrics_observe(&s->latency, 10000, 2);        /* exactly 10 us: le 1e-05 */
    tp_metrics_observe(&s->latency, 10001, 1);        /* just over */
    tp_metrics_observe(&s->latency, 1000000000, 1);   /* exactly 1 s */
    tp_metrics_observe(&s->latency, 2000000000, 1);   /* over every bound */
    tp_metrics_observe(&s->latency, 0, 0);            /* nothing */
    text = render(m);
    cr_expect(has_line(text, "tidepool_message_duration_seconds_bucket{le=\"1e-05\"} 2"), "%s", text);
    cr_expect(has_line(text, "tidepool_message_duration_seconds_bucket{le=\"2.5e-05\"} 3"));
    cr_expect(has_line(text, "tidepool_message_duration_seconds_bucket{le=\"0.5\"} 3"));
    cr_expect(has_line(text, "tidepool_message_duration_seconds_bucket{le=\"1\"} 4"));
    cr_expect(has_line(text, "tidepool_message_duration_seconds_bucket{le=\"+Inf\"} 5"));
    cr_expect(has_line(text, "tidepool_message_duration_seconds_count 5"));
    cr_expect(has_line(text, "tidepool_message_duration_seconds_sum 3.000030001"), "%s", text);
    cr_expect(has_line(text, "tidepool_worker_queue_wait_seconds_count 0"));
    cr_expect(has_line(text, "tidepool_worker_queue_wait_seconds_bucket{le=\"+Inf\"} 0"));
    free(text);
    tp_metrics_destroy(m);
}

Test(metrics, several_processes_sum_counters_and_label_gauges)
{
    tp_metrics_t *m = tp_metrics_create(2);
    struct tp_metrics_slot *a, *b;
    char *text;

    b = tp_metrics_claim(m, 1);
    a = tp_metrics_claim(m, 0);                 /* this process: slot 0 */
    cr_assert_eq(tp_metrics_own(m), a);
    a->stats.accepted = 3;
    b->stats.accepted = 4;
    a->stats.open = 1;
    b->stats.open = 2;
    a->nlisten = b->nlisten = 1;
    strcpy(a->listen[0].name, "127.0.0.1:7000");
    strcpy(b->listen[0].name, "127.0.0.1:7000");
    a->listen[0].msgs_in = 10;
    b->listen[0].msgs_in = 20;
    tp_metrics_observe(&a->queue_wait, 30000, 1);
    tp_metrics_observe(&b->queue_wait, 30000, 2);
    b->draining = 1;
    text = render(m);
    check_families(text);
    cr_expect(has_line(text, "tidepool_connections_accepted_total 7"), "%s", text);
    cr_expect(has_line(text, "tidepool_connections_open{process=\"1\"} 1"));
    cr_expect(has_line(text, "tidepool_connections_open{process=\"2\"} 2"));
    cr_expect(has_line(text, "tidepool_messages_total{listener=\"127.0.0.1:7000\",direction=\"in\"} 30"));
    cr_expect(has_line(text, "tidepool_worker_queue_wait_seconds_bucket{le=\"5e-05\"} 3"));
    cr_expect(has_line(text, "tidepool_draining{process=\"1\"} 0"));
    cr_expect(has_line(text, "tidepool_draining{process=\"2\"} 1"));
    /* Both slots name this process (the test claimed both): both read. */
    cr_expect(strstr(text, "process_open_fds{process=\"1\"} ") != NULL, "%s", text);
    cr_expect(strstr(text, "process_open_fds{process=\"2\"} ") != NULL);
    cr_expect(!tp_metrics_is_draining(m), "slot 0, this process's, is not draining");
    free(text);
    tp_metrics_destroy(m);
}

Test(metrics, a_released_slot_keeps_its_counters_and_zeroes_its_gauges)
{
    tp_metrics_t *m = tp_metrics_create(2);
    struct tp_metrics_slot *s = tp_metrics_claim(m, 1);
    char *text;

    tp_metrics_claim(m, 0);
    s->stats.accepted = 5;
    s->stats.open = 3;
    s->stats.lingering = 2;
    s->stats.queued_bytes = 100;
    s->draining = 1;
    tp_metrics_release(m, 1);
    cr_expect_eq(s->pid, 0);
    text = render(m);
    cr_expect(has_line(text, "tidepool_connections_accepted_total 5"), "%s", text);
    cr_expect(has_line(text, "tidepool_connections_open{process=\"2\"} 0"));
    cr_expect(has_line(text, "tidepool_connections_lingering{process=\"2\"} 0"));
    cr_expect(has_line(text, "tidepool_worker_queue_bytes{process=\"2\"} 0"));
    cr_expect(has_line(text, "tidepool_draining{process=\"2\"} 0"));
    cr_expect(strstr(text, "process_open_fds{process=\"2\"}") == NULL,
              "no process holds slot 2: no process_* lines for it");
    /* A process restarted in the slot counts on from there. */
    tp_metrics_claim(m, 1);
    TP_METRIC_ADD(&s->stats.accepted, 1);
    free(text);
    text = render(m);
    cr_expect(has_line(text, "tidepool_connections_accepted_total 6"), "%s", text);
    free(text);
    tp_metrics_destroy(m);
}

Test(metrics, label_values_are_escaped)
{
    tp_metrics_t *m = tp_metrics_create(1);
    struct tp_metrics_slot *s = tp_metrics_claim(m, 0);
    char *text;

    s->nlisten = 1;
    strcpy(s->listen[0].name, "a\"b\\c\nd");
    text = render(m);
    cr_expect(has_line(text, "tidepool_messages_total{listener=\"a\\\"b\\\\c\\nd\",direction=\"in\"} 0"),
              "%s", text);
    free(text);
    tp_metrics_destroy(m);
}

Test(metrics, process_figures_are_this_processs_from_proc)
{
    tp_metrics_t *m = tp_metrics_create(1);
    struct rlimit rl;
    char *text;
    double start;

    tp_metrics_claim(m, 0);
    text = render(m);
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    cr_expect_eq(value_of(text, "process_max_fds"), (double)rl.rlim_cur);
    cr_expect_gt(value_of(text, "process_resident_memory_bytes"), 100000);
    cr_expect_gt(value_of(text, "process_virtual_memory_bytes"),
                 value_of(text, "process_resident_memory_bytes"));
    cr_expect_geq(value_of(text, "process_open_fds"), 3, "stdin, stdout, stderr at least");
    cr_expect_lt(value_of(text, "process_open_fds"), 1000);
    start = value_of(text, "process_start_time_seconds");
    cr_expect(start <= (double)time(NULL) + 1 && start > (double)time(NULL) - 3600,
              "started %f, now %lld", start, (long long)time(NULL));
    cr_expect_geq(value_of(text, "process_cpu_seconds_total"), 0);
    free(text);
    tp_metrics_destroy(m);
}

Test(metrics, draining_is_this_processs_own_slot)
{
    tp_metrics_t *m = tp_metrics_create(1);
    struct tp_metrics_slot *s;

    cr_expect(!tp_metrics_is_draining(m), "no slot claimed yet");
    s = tp_metrics_claim(m, 0);
    cr_expect(!tp_metrics_is_draining(m));
    TP_METRIC_SET(&s->draining, 1);
    cr_expect(tp_metrics_is_draining(m));
    cr_expect_null(tp_metrics_claim(m, 1), "past the last slot");
    tp_metrics_destroy(m);
}
