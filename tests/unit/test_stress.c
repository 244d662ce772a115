/* The stress tool's testable pieces: latency histogram, pacing, message
 * contents, options, target and --src parsing. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tp_stress_hist.h"
#include "tp_stress_pace.h"
#include "tp_stress_args.h"
#include "tp_stress_msg.h"

#define US 1000ull
#define MS 1000000ull
#define SEC 1000000000ull

static struct tp_stress_hist h, parts[4];

static double rel_err(double got, double want)
{
    return fabs(got - want) / want;
}

/* ------------------------------------------------------------------ hist */

Test(stress_hist, relative_error_under_one_percent_from_1us_to_60s)
{
    double v, worst = 0;
    uint64_t ns, got;
    uint32_t i;

    /* Sentinels below and above keep min/max clamping out of the way, so
     * p50 of {0, v, huge} is the value the bucket of v reports. */
    tp_stress_hist_init(&h);
    tp_stress_hist_record(&h, 0);
    tp_stress_hist_record(&h, 100 * 60 * SEC);
    for (v = 1000.0; v <= 60e9; v *= 1.0007) {
        ns = (uint64_t)v;
        i = tp_stress_hist_index(ns);
        tp_stress_hist_record(&h, ns);
        got = tp_stress_hist_percentile(&h, 50000);
        if (rel_err((double)got, (double)ns) > worst)
            worst = rel_err((double)got, (double)ns);
        h.counts[i]--;
        h.count--;
        h.sum_ns -= ns;
    }
    cr_assert_leq(worst, 0.01, "worst relative error %.5f", worst);
    cr_assert_leq(worst, 1.0 / 256 + 1e-9, "a bucket middle is within 1/256: %.5f", worst);
}

Test(stress_hist, small_values_are_exact_and_huge_values_are_clamped_not_lost)
{
    uint64_t v;

    for (v = 0; v < 256; v++)
        cr_assert_eq(tp_stress_hist_index(v), v);
    cr_assert_eq(tp_stress_hist_index(UINT64_MAX), TP_STRESS_HIST_BUCKETS - 1);
    cr_assert_eq(tp_stress_hist_index(TP_STRESS_HIST_MAX_NS), TP_STRESS_HIST_BUCKETS - 1);
    tp_stress_hist_init(&h);
    tp_stress_hist_record(&h, 200 * 60 * SEC);     /* 200 minutes: over the range */
    cr_assert_eq(h.count, 1);
    cr_assert_eq(tp_stress_hist_percentile(&h, 100000), 200 * 60 * SEC, "max stays exact");
    cr_assert_eq(tp_stress_hist_percentile(&h, 50000), 200 * 60 * SEC, "clamped to [min, max]");
}

Test(stress_hist, bucket_index_is_monotonic_and_covers_every_bucket)
{
    uint32_t prev = 0, idx;
    uint64_t v;

    for (v = 1; v < TP_STRESS_HIST_MAX_NS; v += v / 512 + 1) {
        idx = tp_stress_hist_index(v);
        cr_assert_geq(idx, prev, "index went down at %llu", (unsigned long long)v);
        cr_assert_leq(idx, prev + 1, "a bucket skipped at %llu", (unsigned long long)v);
        prev = idx;
    }
    cr_assert_eq(prev, TP_STRESS_HIST_BUCKETS - 1);
}

Test(stress_hist, percentiles_of_uniform_1us_to_10ms)
{
    uint64_t us;

    tp_stress_hist_init(&h);
    for (us = 1; us <= 10000; us++)
        tp_stress_hist_record(&h, us * US);
    cr_assert_eq(h.count, 10000);
    cr_assert_leq(rel_err((double)tp_stress_hist_percentile(&h, 50000), 5000e3), 0.01);
    cr_assert_leq(rel_err((double)tp_stress_hist_percentile(&h, 90000), 9000e3), 0.01);
    cr_assert_leq(rel_err((double)tp_stress_hist_percentile(&h, 99000), 9900e3), 0.01);
    cr_assert_leq(rel_err((double)tp_stress_hist_percentile(&h, 99900), 9990e3), 0.01);
    cr_assert_eq(tp_stress_hist_percentile(&h, 100000), 10000 * US);
    cr_assert_eq(tp_stress_hist_percentile(&h, 0), 1 * US, "p0 is the min");
    cr_assert_float_eq(tp_stress_hist_mean(&h), 5000.5e3, 1e-6);
}

Test(stress_hist, percentiles_of_a_bimodal_distribution)
{
    int i;

    /* 99% at 100 us, 1% at 50 ms: p99 is still fast, p99.9 is the slow mode. */
    tp_stress_hist_init(&h);
    for (i = 0; i < 99000; i++)
        tp_stress_hist_record(&h, 100 * US);
    for (i = 0; i < 1000; i++)
        tp_stress_hist_record(&h, 50 * MS);
    cr_assert_leq(rel_err((double)tp_stress_hist_percentile(&h, 50000), 100e3), 0.01);
    cr_assert_leq(rel_err((double)tp_stress_hist_percentile(&h, 99000), 100e3), 0.01);
    cr_assert_leq(rel_err((double)tp_stress_hist_percentile(&h, 99900), 50e6), 0.01);
    cr_assert_eq(tp_stress_hist_percentile(&h, 100000), 50 * MS);
    cr_assert_float_eq(tp_stress_hist_mean(&h), (99000 * 100e3 + 1000 * 50e6) / 100000, 1e-3);
}

/* n values: fast ones at 100 us, then slow ones at 50 ms. */
static void record_two_modes(uint64_t fast, uint64_t slow)
{
    tp_stress_hist_init(&h);
    h.counts[tp_stress_hist_index(100 * US)] = fast;
    h.counts[tp_stress_hist_index(50 * MS)] = slow;
    h.count = fast + slow;
    h.sum_ns = fast * 100 * US + slow * 50 * MS;
    h.min_ns = fast ? 100 * US : 50 * MS;
    h.max_ns = slow ? 50 * MS : 100 * US;
}

Test(stress_hist, issue_7_p999_rank_is_exact_at_multiples_of_1000)
{
    uint64_t n, p;

    /* 999 at 100 us and 1 at 50 ms: the 999th value is the p99.9. */
    tp_stress_hist_init(&h);
    for (n = 0; n < 999; n++)
        tp_stress_hist_record(&h, 100 * US);
    tp_stress_hist_record(&h, 50 * MS);
    p = tp_stress_hist_percentile(&h, 99900);
    cr_assert_lt(p, 1 * MS, "p99.9 of 999 x 100 us + 1 x 50 ms is %llu ns",
                 (unsigned long long)p);
    for (n = 1000; n <= 10000000; n += n < 100000 ? 1000 : 999000) {
        record_two_modes(n - n / 1000, n / 1000);
        p = tp_stress_hist_percentile(&h, 99900);
        cr_assert_lt(p, 1 * MS, "%llu values: p99.9 is %llu ns, one rank high",
                     (unsigned long long)n, (unsigned long long)p);
    }
}

Test(stress_hist, percentile_rank_is_the_ceiling_of_count_times_p)
{
    static const uint32_t pcms[] = { 1, 50000, 90000, 99000, 99900, 99990, 99999 };
    uint64_t n, rank;
    size_t i;

    /* With exactly rank fast values the percentile is fast; one fewer, slow. */
    for (n = 1; n <= 3000; n += n < 1100 ? 1 : 127) {
        for (i = 0; i < sizeof(pcms) / sizeof(pcms[0]); i++) {
            rank = (n * pcms[i] + 99999) / 100000;
            record_two_modes(rank, n - rank);
            cr_assert_lt(tp_stress_hist_percentile(&h, pcms[i]), 1 * MS,
                         "n %llu pcm %u: rank %llu", (unsigned long long)n, pcms[i],
                         (unsigned long long)rank);
            record_two_modes(rank - 1, n - rank + 1);
            cr_assert_gt(tp_stress_hist_percentile(&h, pcms[i]), 1 * MS,
                         "n %llu pcm %u: rank %llu", (unsigned long long)n, pcms[i],
                         (unsigned long long)rank);
        }
    }
    /* A count whose product with pcm does not fit in 64 bits. */
    record_two_modes(UINT64_C(1) << 60, UINT64_C(1) << 50);
    cr_assert_lt(tp_stress_hist_percentile(&h, 99900), 1 * MS);
}

Test(stress_hist, empty_reports_zero)
{
    tp_stress_hist_init(&h);
    cr_assert_eq(tp_stress_hist_percentile(&h, 99000), 0);
    cr_assert_eq(tp_stress_hist_percentile(&h, 100000), 0);
    cr_assert_float_eq(tp_stress_hist_mean(&h), 0.0, 1e-12);
}

Test(stress_hist, merge_of_per_thread_histograms_equals_one_histogram)
{
    uint64_t x = 88172645463325252ull, v;
    int i, t;

    tp_stress_hist_init(&h);
    for (t = 0; t < 4; t++)
        tp_stress_hist_init(&parts[t]);
    for (i = 0; i < 400000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;     /* xorshift64 */
        v = (x % (60 * SEC)) >> (x % 30);             /* ns .. 60 s, skewed low */
        tp_stress_hist_record(&h, v);
        tp_stress_hist_record(&parts[i % 4], v);
    }
    struct tp_stress_hist *merged = &parts[0];
    for (t = 1; t < 4; t++)
        tp_stress_hist_merge(merged, &parts[t]);
    cr_assert_eq(merged->count, h.count);
    cr_assert_eq(merged->sum_ns, h.sum_ns);
    cr_assert_eq(merged->min_ns, h.min_ns);
    cr_assert_eq(merged->max_ns, h.max_ns);
    cr_assert_eq(memcmp(merged->counts, h.counts, sizeof(h.counts)), 0);
    cr_assert_eq(tp_stress_hist_percentile(merged, 99900), tp_stress_hist_percentile(&h, 99900));
}

Test(stress_hist, recording_never_allocates)
{
    struct mallinfo2 before, after;
    uint64_t v;
    int i;

    tp_stress_hist_init(&h);
    before = mallinfo2();
    for (i = 0; i < 1000000; i++) {
        v = (uint64_t)i * 60013;
        tp_stress_hist_record(&h, v);
    }
    (void)tp_stress_hist_percentile(&h, 99900);
    after = mallinfo2();
    cr_assert_eq(after.uordblks, before.uordblks);
    cr_assert_eq(after.hblkhd, before.hblkhd);
    cr_assert_eq(h.count, 1000000);
    cr_assert_leq(sizeof(struct tp_stress_hist), 64 * 1024, "a fixed array, not a tree");
}

/* ------------------------------------------------------------------ pace */

/* Takes every due event at each step of a simulated clock; returns how many
 * were taken and checks each one's intended time. */
static uint64_t take_due(struct tp_stress_pace *p, uint64_t now, double period)
{
    uint64_t n = tp_stress_pace_due(p, now), k, t;

    for (k = 0; k < n; k++) {
        t = tp_stress_pace_take(p);
        cr_assert_leq(t, now, "an event handed out before its time");
        cr_assert_leq(fabs((double)(t - p->start_ns) - (double)(p->taken - 1) * period), 1.0,
                      "event %llu off its schedule", (unsigned long long)(p->taken - 1));
    }
    return n;
}

Test(stress_pace, sends_rate_times_span_over_a_simulated_span)
{
    struct tp_stress_pace p;
    uint64_t now, sent = 0, start = 5 * SEC;

    tp_stress_pace_init(&p, start, 1000);
    for (now = start; now <= start + 10 * SEC; now += 100 * US)
        sent += take_due(&p, now, 1e6);
    /* Events at 0, 1 ms, ..., 10 s inclusive. */
    cr_assert_eq(sent, 10001);
    cr_assert_eq(tp_stress_pace_due(&p, start + 10 * SEC), 0);
    cr_assert_eq(tp_stress_pace_next(&p), start + 10 * SEC + 1 * MS);
}

Test(stress_pace, uneven_period_keeps_the_long_run_rate)
{
    struct tp_stress_pace p;
    uint64_t now, sent = 0;

    tp_stress_pace_init(&p, 0, 7777);     /* 128587.1... ns apart */
    for (now = 0; now <= 3 * SEC; now += 37 * US)
        sent += take_due(&p, now, 1e9 / 7777);
    sent += take_due(&p, 3 * SEC, 1e9 / 7777);
    cr_assert_eq(sent, 3 * 7777 + 1);
}

Test(stress_pace, after_a_stall_releases_exactly_the_missed_sends)
{
    struct tp_stress_pace p;
    uint64_t now, sent = 0, t;

    tp_stress_pace_init(&p, 0, 1000);
    for (now = 0; now < 1 * SEC; now += 100 * US)
        sent += take_due(&p, now, 1e6);
    cr_assert_eq(sent, 1000);                  /* 0 .. 999 ms */
    /* Stall: nobody asks for 500 ms. The 500 events whose time passed are due
     * at once, each with its own intended time (so latency measured from it
     * includes the stall), and not one more. */
    now = 1 * SEC + 499 * MS + 500 * US;
    cr_assert_eq(tp_stress_pace_due(&p, now), 500);
    t = tp_stress_pace_take(&p);
    cr_assert_eq(t, 1 * SEC, "the first missed send keeps its intended time");
    cr_assert_eq(now - t, 499 * MS + 500 * US, "its latency will include the stall");
    sent += 1 + take_due(&p, now, 1e6);
    cr_assert_eq(tp_stress_pace_due(&p, now), 0, "no burst beyond the missed sends");
    cr_assert_eq(tp_stress_pace_due(&p, 1 * SEC + 500 * MS), 1);
    for (now = 1 * SEC + 500 * MS; now <= 3 * SEC; now += 100 * US)
        sent += take_due(&p, now, 1e6);
    cr_assert_eq(sent, 3001, "the span still holds rate x time sends");
}

Test(stress_pace, nothing_is_due_before_the_start)
{
    struct tp_stress_pace p;

    tp_stress_pace_init(&p, 10 * SEC, 100);
    cr_assert_eq(tp_stress_pace_due(&p, 9 * SEC), 0);
    cr_assert_eq(tp_stress_pace_due(&p, 10 * SEC), 1);
}

Test(stress_pace, rate_zero_is_always_due)
{
    struct tp_stress_pace p;

    tp_stress_pace_init(&p, 10 * SEC, 0);
    cr_assert_gt(tp_stress_pace_due(&p, 10 * SEC), 1000000);
    cr_assert_eq(tp_stress_pace_take(&p), 10 * SEC);
    cr_assert_eq(tp_stress_pace_take(&p), 10 * SEC);
}

/* ------------------------------------------------------------------- msg */

Test(stress_msg, every_size_is_printable_and_ends_with_one_newline)
{
    static char buf[4096 + 1];
    uint32_t size, i;
    uint64_t seq;

    for (size = TP_STRESS_MSG_MIN; size <= 4096; size += size < 300 ? 1 : 97) {
        for (seq = 0; seq < 70; seq += 23) {
            memset(buf, 0, sizeof(buf));
            tp_stress_msg_fill(buf, size, 12345, seq * 0x1000000001ull);
            cr_assert_eq(buf[size - 1], '\n');
            cr_assert_eq(buf[size], '\0', "wrote past size %u", size);
            for (i = 0; i + 1 < size; i++)
                cr_assert(buf[i] >= 0x20 && buf[i] < 0x7f, "size %u byte %u: 0x%02x",
                          size, i, (unsigned char)buf[i]);
        }
    }
}

Test(stress_msg, consecutive_messages_differ_so_misordering_shows)
{
    char a[64], b[64];
    uint32_t size;
    uint64_t seq;

    for (size = 2; size <= 64; size *= 2)
        for (seq = 0; seq < 1000; seq++) {
            tp_stress_msg_fill(a, size, 3, seq);
            tp_stress_msg_fill(b, size, 3, seq + 1);
            cr_assert_neq(memcmp(a, b, size), 0, "size %u seq %llu", size,
                          (unsigned long long)seq);
        }
    tp_stress_msg_fill(a, 64, 3, 7);
    tp_stress_msg_fill(b, 64, 4, 7);
    cr_assert_neq(memcmp(a, b, 64), 0, "connections differ too");
}

Test(stress_msg, large_messages_are_filled_whole)
{
    static char buf[1 << 20];
    size_t i;

    memset(buf, 0, sizeof(buf));
    tp_stress_msg_fill(buf, sizeof(buf), 0, 99);
    cr_assert_eq(memchr(buf, '\n', sizeof(buf)), buf + sizeof(buf) - 1);
    for (i = 0; i + 1 < sizeof(buf); i++)
        cr_assert_neq(buf[i], '\0');
}

/* ------------------------------------------------------------------ args */

static char err[512];
static struct tp_stress_opts opts;

/* Parses a NULL-terminated list of arguments after the program name. */
static int parse_list(const char *first, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    const char *a;

    argv[argc++] = (char *)"tidepool-stress";
    va_start(ap, first);
    for (a = first; a != NULL && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    err[0] = '\0';
    return tp_stress_args_parse(&opts, argc, argv, err, sizeof(err));
}

#define PARSE(...) parse_list(__VA_ARGS__, (const char *)NULL)

/* The option is rejected with -EINVAL and a one-line message naming it. */
static void assert_bad(int rc, const char *names)
{
    cr_assert_eq(rc, -EINVAL, "accepted; err=\"%s\"", err);
    cr_assert_neq(strstr(err, names), NULL, "\"%s\" does not name %s", err, names);
    cr_assert_eq(strchr(err, '\n'), NULL, "one line: \"%s\"", err);
    cr_assert_gt(strlen(err), strlen(names) + 10, "says what was expected: \"%s\"", err);
}

Test(stress_args, defaults)
{
    cr_assert_eq(PARSE("127.0.0.1:7000"), 0, "%s", err);
    cr_assert_eq(opts.action, TP_STRESS_RUN);
    cr_assert_eq(opts.mode, TP_STRESS_ECHO);
    cr_assert_eq(opts.conns, 10);
    cr_assert_eq(opts.threads, 1);
    cr_assert_eq(opts.size, 64);
    cr_assert_eq(opts.depth, 1);
    cr_assert_eq(opts.duration_ns, 10 * SEC);
    cr_assert_eq(opts.timeout_ns, 10 * SEC);
    cr_assert_eq(opts.messages, 0);
    cr_assert_float_eq(opts.rate, 0.0, 1e-12);
    cr_assert(opts.verify);
    cr_assert_not(opts.quiet);
    cr_assert_null(opts.json_path);
    cr_assert_eq(opts.window, 4u << 20);
    cr_assert_eq(opts.probe_ns, 0, "no probe unless asked");
    cr_assert_eq(opts.target.naddr, 1);
    cr_assert_eq(opts.target.addr[0].ss_family, AF_INET);
    cr_assert_eq(ntohs(((struct sockaddr_in *)&opts.target.addr[0])->sin_port), 7000);
}

Test(stress_args, every_option_is_read)
{
    cr_assert_eq(PARSE("--mode", "storm", "-c", "1000", "-t", "2", "-d", "1m", "-n", "5000",
                       "-s", "1k", "-p", "8", "-r", "2500.5", "--ramp", "100",
                       "--src", "127.0.0.1-127.0.0.8", "--verify", "off", "--timeout", "500ms",
                       "--json", "/tmp/x.json", "-q", "127.0.0.1:9"), 0, "%s", err);
    cr_assert_eq(opts.mode, TP_STRESS_STORM);
    cr_assert_eq(opts.conns, 1000);
    cr_assert_eq(opts.threads, 2);
    cr_assert_eq(opts.duration_ns, 60 * SEC);
    cr_assert_eq(opts.messages, 5000);
    cr_assert_eq(opts.size, 1024);
    cr_assert_eq(opts.depth, 8);
    cr_assert_float_eq(opts.rate, 2500.5, 1e-9);
    cr_assert_float_eq(opts.ramp, 100.0, 1e-9);
    cr_assert(opts.has_src);
    cr_assert_eq(opts.src.first, 0x7f000001);
    cr_assert_eq(opts.src.last, 0x7f000008);
    cr_assert_not(opts.verify);
    cr_assert_eq(opts.timeout_ns, 500 * MS);
    cr_assert_str_eq(opts.json_path, "/tmp/x.json");
    cr_assert(opts.quiet);
}

Test(stress_args, options_after_the_target_and_every_mode)
{
    static const char *modes[] = { "echo", "hold", "storm", "slow", "flood", "chat" };
    int m;

    for (m = 0; m < 6; m++) {
        cr_assert_eq(PARSE("127.0.0.1:7000", "--mode", modes[m], "-c", "3"), 0, "%s", err);
        cr_assert_eq((int)opts.mode, m);
        cr_assert_str_eq(tp_stress_mode_name(opts.mode), modes[m]);
        cr_assert_eq(opts.conns, 3);
    }
}

Test(stress_args, help_and_version)
{
    cr_assert_eq(PARSE("-h"), 0);
    cr_assert_eq(opts.action, TP_STRESS_HELP);
    cr_assert_eq(PARSE("--version"), 0);
    cr_assert_eq(opts.action, TP_STRESS_VERSION);
    cr_assert_neq(strstr(tp_stress_args_usage(), "--mode"), NULL);
    cr_assert_neq(strstr(tp_stress_args_usage(), "flood: send"), NULL);
    cr_assert_neq(strstr(tp_stress_args_usage(), "(latency is not measured"), NULL,
                  "-h says flood does not measure latency");
    cr_assert_neq(strstr(tp_stress_args_usage(), "--probe TIME"), NULL);
    cr_assert_neq(strstr(tp_stress_args_usage(), "--window SIZE"), NULL);
}

Test(stress_args, times_use_the_conf_grammar)
{
    static const struct { const char *text; uint64_t ns; } ok[] = {
        { "500ms", 500 * MS }, { "30s", 30 * SEC }, { "5m", 300 * SEC }, { "2h", 7200 * SEC },
        { "1d", 86400 * SEC }, { "1m30s", 90 * SEC }, { "1h1m1s1ms", 3661 * SEC + 1 * MS },
        { "3", 3 * SEC }, { "1m30", 90 * SEC }, { "1ms", 1 * MS },
        { "4294967295ms", 4294967295ull * MS },
    };
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cr_assert_eq(PARSE("-d", ok[i].text, "127.0.0.1:7000"), 0, "-d %s: %s", ok[i].text, err);
        cr_assert_eq(opts.duration_ns, ok[i].ns, "-d %s", ok[i].text);
        cr_assert_eq(PARSE("--timeout", ok[i].text, "127.0.0.1:7000"), 0, "--timeout %s: %s",
                     ok[i].text, err);
        cr_assert_eq(opts.timeout_ns, ok[i].ns, "--timeout %s", ok[i].text);
    }
}

Test(stress_args, bad_times_are_refused_saying_what_is_accepted)
{
    static const char *bad[] = {
        "5x", "", "s", "ms", "-1s", "1.5s", "0.5s", "250us", "100ns", "10 s", "1sec",
        "1.5.s", "0", "0s", "0ms", "4294967296ms", "49d18h", "1m30x", "+1s", " 1s",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_bad(PARSE("-d", bad[i], "127.0.0.1:7000"), "-d");
        cr_assert_not_null(strstr(err, "expected a time > 0 such as 500ms, 30s, 1m30s"),
                           "-d \"%s\": %s", bad[i], err);
        assert_bad(PARSE("--timeout", bad[i], "127.0.0.1:7000"), "--timeout");
        cr_assert_not_null(strstr(err, "such as 500ms, 30s, 1m30s"), "--timeout \"%s\": %s",
                           bad[i], err);
    }
}

Test(stress_args, zero_connections_is_refused)
{
    assert_bad(PARSE("-c", "0", "127.0.0.1:7000"), "-c");
    assert_bad(PARSE("-c", "ten", "127.0.0.1:7000"), "-c");
    assert_bad(PARSE("-c", "-5", "127.0.0.1:7000"), "-c");
    assert_bad(PARSE("-c", "99999999999999999999999", "127.0.0.1:7000"), "-c");
}

Test(stress_args, message_size_below_two_is_refused)
{
    assert_bad(PARSE("-s", "0", "127.0.0.1:7000"), "-s");
    assert_bad(PARSE("-s", "1", "127.0.0.1:7000"), "-s");
    assert_bad(PARSE("-s", "64q", "127.0.0.1:7000"), "-s");
    assert_bad(PARSE("-s", "1g", "127.0.0.1:7000"), "-s");
    cr_assert_eq(PARSE("-s", "2", "127.0.0.1:7000"), 0);
    cr_assert_eq(opts.size, 2);
}

Test(stress_args, bad_counts_and_rates_are_refused)
{
    assert_bad(PARSE("-t", "0", "127.0.0.1:7000"), "-t");
    assert_bad(PARSE("-n", "0", "127.0.0.1:7000"), "-n");
    assert_bad(PARSE("-p", "0", "127.0.0.1:7000"), "-p");
    assert_bad(PARSE("-r", "fast", "127.0.0.1:7000"), "-r");
    assert_bad(PARSE("-r", "-1", "127.0.0.1:7000"), "-r");
    assert_bad(PARSE("--ramp", "x", "127.0.0.1:7000"), "--ramp");
    assert_bad(PARSE("-t", "4", "-c", "2", "127.0.0.1:7000"), "-t");
    assert_bad(PARSE("-p", "65536", "-s", "16m", "127.0.0.1:7000"), "-p");
}

Test(stress_args, bad_host_port_is_refused)
{
    static const char *bad[] = {
        "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:80x",
        ":7000", "[::1]7000", "[::1", "::1:7000", "[]:7000", "no-such-host.invalid:7000",
        "127.0.0.1:-1",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_bad(PARSE(bad[i]), "HOST:PORT");
}

Test(stress_args, ipv4_ipv6_and_names_resolve)
{
    cr_assert_eq(PARSE("[::1]:7000"), 0, "%s", err);
    cr_assert_eq(opts.target.addr[0].ss_family, AF_INET6);
    cr_assert_eq(ntohs(((struct sockaddr_in6 *)&opts.target.addr[0])->sin6_port), 7000);
    cr_assert_eq(PARSE("localhost:7000"), 0, "%s", err);
    cr_assert_geq(opts.target.naddr, 1);
    cr_assert_str_eq(opts.target.text, "localhost:7000");
}

Test(stress_args, bad_src_range_is_refused)
{
    assert_bad(PARSE("--src", "127.0.0.8-127.0.0.1", "127.0.0.1:7000"), "--src");
    assert_bad(PARSE("--src", "127.0.0.1-", "127.0.0.1:7000"), "--src");
    assert_bad(PARSE("--src", "localhost", "127.0.0.1:7000"), "--src");
    assert_bad(PARSE("--src", "127.0.0.1-127.0.0.300", "127.0.0.1:7000"), "--src");
    assert_bad(PARSE("--src", "127.0.0.1-127.0.0.2", "[::1]:7000"), "--src");
}

Test(stress_args, src_range_cycles_round_robin)
{
    struct sockaddr_in sin;
    struct tp_stress_src s;
    int i;

    cr_assert_eq(tp_stress_src_parse(&s, "127.0.0.1-127.0.0.3", err, sizeof(err)), 0);
    for (i = 0; i < 7; i++) {
        tp_stress_src_addr(&s, (uint64_t)i, &sin);
        cr_assert_eq(sin.sin_family, AF_INET);
        cr_assert_eq(ntohl(sin.sin_addr.s_addr), 0x7f000001u + (uint32_t)(i % 3));
        cr_assert_eq(sin.sin_port, 0);
    }
    cr_assert_eq(tp_stress_src_parse(&s, "10.0.0.5", err, sizeof(err)), 0);
    cr_assert_eq(s.first, s.last);
}

Test(stress_args, flood_window_and_probe_are_read)
{
    cr_assert_eq(PARSE("--mode", "flood", "--window", "64k", "--probe", "100ms", "-s", "15",
                       "-c", "1000", "-t", "2", "--src", "127.0.0.1-127.0.0.4", "-q",
                       "127.0.0.1:7000"), 0, "%s", err);
    cr_assert_eq(opts.mode, TP_STRESS_FLOOD);
    cr_assert_str_eq(tp_stress_mode_name(opts.mode), "flood");
    cr_assert_eq(opts.window, 65536);
    cr_assert_eq(opts.probe_ns, 100 * MS);
    cr_assert_eq(opts.size, 15);
    cr_assert_eq(PARSE("--mode", "flood", "--window", "1", "127.0.0.1:7000"), 0, "%s", err);
    cr_assert_eq(opts.window, 1);
    cr_assert_eq(PARSE("--mode", "flood", "--window", "1g", "127.0.0.1:7000"), 0, "%s", err);
    cr_assert_eq(opts.window, 1u << 30);
    cr_assert_eq(PARSE("--probe", "1m30s", "127.0.0.1:7000"), 0, "%s", err);
    cr_assert_eq(opts.probe_ns, 90 * SEC, "any mode takes a probe");
    cr_assert_eq(opts.mode, TP_STRESS_ECHO);
}

Test(stress_args, bad_window_and_probe_are_refused)
{
    assert_bad(PARSE("--mode", "flood", "--window", "0", "127.0.0.1:7000"), "--window");
    assert_bad(PARSE("--mode", "flood", "--window", "2g", "127.0.0.1:7000"), "--window");
    assert_bad(PARSE("--mode", "flood", "--window", "big", "127.0.0.1:7000"), "--window");
    assert_bad(PARSE("--window", "64k", "127.0.0.1:7000"), "--window");
    cr_assert_not_null(strstr(err, "only with --mode flood"), "%s", err);
    assert_bad(PARSE("--mode", "echo", "--window", "64k", "127.0.0.1:7000"), "--window");
    assert_bad(PARSE("--mode", "flood", "-r", "1000", "127.0.0.1:7000"), "-r");
    cr_assert_not_null(strstr(err, "flood"), "%s", err);
    assert_bad(PARSE("--probe", "0", "127.0.0.1:7000"), "--probe");
    assert_bad(PARSE("--probe", "100us", "127.0.0.1:7000"), "--probe");
    cr_assert_not_null(strstr(err, "such as 500ms, 30s, 1m30s"), "%s", err);
    assert_bad(PARSE("127.0.0.1:7000", "--probe"), "--probe");
}

Test(stress_args, unknown_mode_is_refused)
{
    assert_bad(PARSE("--mode", "blast", "127.0.0.1:7000"), "--mode");
    cr_assert_not_null(strstr(err, "echo, hold, storm, slow, flood or chat"), "%s", err);
    assert_bad(PARSE("--verify", "yes", "127.0.0.1:7000"), "--verify");
}

Test(stress_args, unknown_options_missing_values_and_targets)
{
    assert_bad(PARSE("-x", "127.0.0.1:7000"), "-x");
    assert_bad(PARSE("--bogus", "127.0.0.1:7000"), "--bogus");
    assert_bad(PARSE("127.0.0.1:7000", "-c"), "-c");
    assert_bad(PARSE("127.0.0.1:7000", "--mode"), "--mode");
    assert_bad(PARSE("-c", "5"), "HOST:PORT");
    assert_bad(PARSE("127.0.0.1:7000", "127.0.0.1:7001"), "HOST:PORT");
}

Test(stress_args, parsing_twice_starts_over)
{
    cr_assert_eq(PARSE("-c", "7", "127.0.0.1:7000"), 0);
    cr_assert_eq(PARSE("127.0.0.1:7001"), 0);
    cr_assert_eq(opts.conns, 10, "defaults again, getopt restarted");
}

Test(stress_args, chat_options_are_read)
{
    cr_assert_eq(PARSE("--mode", "chat", "-c", "1000", "--senders", "10", "-p", "4", "-r", "5000",
                       "--foreign", "skip", "127.0.0.1:7000"), 0, "%s", err);
    cr_assert_eq(opts.mode, TP_STRESS_CHAT);
    cr_assert_eq(opts.senders, 10);
    cr_assert_eq(opts.proto, TP_STRESS_PROTO_LINE);
    cr_assert(opts.skip_foreign);
    cr_assert_str_eq(opts.channel, "tidepool");
    cr_assert_eq(PARSE("--mode", "chat", "--proto", "resp", "--channel", "room 7", "-c", "3",
                       "--senders", "5", "127.0.0.1:6379"), 0, "%s", err);
    cr_assert_eq(opts.proto, TP_STRESS_PROTO_RESP);
    cr_assert_str_eq(opts.channel, "room 7");
    cr_assert_eq(opts.senders, 5, "resp publishers are extra connections: more than -c is fine");
    cr_assert_not(opts.skip_foreign);
    cr_assert_eq(PARSE("--mode", "chat", "127.0.0.1:7000"), 0, "%s", err);
    cr_assert_eq(opts.senders, 1, "one sender by default");
}

Test(stress_args, chat_rules_are_checked_with_a_reason)
{
    assert_bad(PARSE("--senders", "2", "127.0.0.1:7000"), "--mode chat");
    assert_bad(PARSE("--proto", "resp", "127.0.0.1:7000"), "--mode chat");
    assert_bad(PARSE("--mode", "chat", "--proto", "http", "127.0.0.1:7000"), "--proto");
    assert_bad(PARSE("--mode", "chat", "--foreign", "maybe", "127.0.0.1:7000"), "--foreign");
    assert_bad(PARSE("--mode", "chat", "--channel", "", "127.0.0.1:7000"), "--channel");
    assert_bad(PARSE("--mode", "chat", "--senders", "0", "127.0.0.1:7000"), "--senders");
    assert_bad(PARSE("--mode", "chat", "-c", "4", "--senders", "5", "127.0.0.1:7000"), "--senders");
    assert_bad(PARSE("--mode", "chat", "-c", "1", "127.0.0.1:7000"), "-c 1");
    assert_bad(PARSE("--mode", "chat", "-s", "37", "127.0.0.1:7000"), "-s 37");
    assert_bad(PARSE("--mode", "chat", "--probe", "1s", "127.0.0.1:7000"), "--probe");
    assert_bad(PARSE("--mode", "chat", "-c", "10000", "--senders", "10000", "127.0.0.1:7000"),
               "pairs");
    cr_assert_eq(PARSE("--mode", "chat", "-c", "1", "--proto", "resp", "127.0.0.1:7000"), 0,
                 "one subscriber is a room in Redis: %s", err);
    cr_assert_eq(PARSE("--mode", "chat", "-s", "38", "127.0.0.1:7000"), 0, "%s", err);
}
