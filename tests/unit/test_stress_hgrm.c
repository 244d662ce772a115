/* tp_stress_hgrm: the HdrHistogram percentile distribution, row by row,
 * against what HdrHistogram_c's hdr_percentiles_print writes for the same
 * values (hdr_init(1, 2^40 - 1, 2), value_scale 1e6, ticks 5, CLASSIC,
 * value column with 3 decimals as wrk2's: the texts below are its output;
 * the first is small enough to check by hand, see small_is_right_by_hand). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_stress_hgrm.h"

static struct tp_stress_hist h;

/* 1 us, 2 us three times, 50 us. */
static const char small_ref[] =
    "       Value   Percentile   TotalCount 1/(1-Percentile)\n"
    "\n"
    "       0.001     0.000000            1         1.00\n"
    "       0.001     0.100000            1         1.11\n"
    "       0.001     0.200000            1         1.25\n"
    "       0.002     0.300000            4         1.43\n"
    "       0.002     0.400000            4         1.67\n"
    "       0.002     0.500000            4         2.00\n"
    "       0.002     0.550000            4         2.22\n"
    "       0.002     0.600000            4         2.50\n"
    "       0.002     0.650000            4         2.86\n"
    "       0.002     0.700000            4         3.33\n"
    "       0.002     0.750000            4         4.00\n"
    "       0.002     0.775000            4         4.44\n"
    "       0.002     0.800000            4         5.00\n"
    "       0.050     0.825000            5         5.71\n"
    "       0.050     1.000000            5          inf\n"
    "#[Mean    =        0.011, StdDeviation   =        0.019]\n"
    "#[Max     =        0.050, Total count    =            5]\n"
    "#[Buckets =           33, SubBuckets     =          256]\n";

/* 1 ms, 2 ms, ... 100 ms. */
static const char hundred_ref[] =
    "       Value   Percentile   TotalCount 1/(1-Percentile)\n"
    "\n"
    "       1.004     0.000000            1         1.00\n"
    "      10.027     0.100000           10         1.11\n"
    "      20.054     0.200000           20         1.25\n"
    "      30.015     0.300000           30         1.43\n"
    "      40.108     0.400000           40         1.67\n"
    "      50.070     0.500000           50         2.00\n"
    "      55.050     0.550000           55         2.22\n"
    "      60.031     0.600000           60         2.50\n"
    "      65.012     0.650000           65         2.86\n"
    "      70.255     0.700000           70         3.33\n"
    "      75.497     0.750000           75         4.00\n"
    "      78.119     0.775000           78         4.44\n"
    "      80.216     0.800000           80         5.00\n"
    "      83.362     0.825000           83         5.71\n"
    "      85.459     0.850000           85         6.67\n"
    "      88.080     0.875000           88         8.00\n"
    "      89.129     0.887500           89         8.89\n"
    "      90.178     0.900000           90        10.00\n"
    "      92.275     0.912500           92        11.43\n"
    "      93.323     0.925000           93        13.33\n"
    "      94.372     0.937500           94        16.00\n"
    "      95.420     0.943750           95        17.78\n"
    "      95.420     0.950000           95        20.00\n"
    "      96.469     0.956250           96        22.86\n"
    "      97.518     0.962500           97        26.67\n"
    "      97.518     0.968750           97        32.00\n"
    "      98.042     0.971875           98        35.56\n"
    "      98.042     0.975000           98        40.00\n"
    "      98.042     0.978125           98        45.71\n"
    "      99.090     0.981250           99        53.33\n"
    "      99.090     0.984375           99        64.00\n"
    "      99.090     0.985938           99        71.11\n"
    "      99.090     0.987500           99        80.00\n"
    "      99.090     0.989062           99        91.43\n"
    "     100.139     0.990625          100       106.67\n"
    "     100.139     1.000000          100          inf\n"
    "#[Mean    =       50.499, StdDeviation   =       28.868]\n"
    "#[Max     =      100.139, Total count    =          100]\n"
    "#[Buckets =           33, SubBuckets     =          256]\n";

static const char empty_ref[] =
"       Value   Percentile   TotalCount 1/(1-Percentile)\n"
"\n"
"       0.000     1.000000            0          inf\n"
"#[Mean    =        0.000, StdDeviation   =        0.000]\n"
"#[Max     =        0.000, Total count    =            0]\n"
"#[Buckets =           33, SubBuckets     =          256]\n";

/* Writes h to a string (caller frees). */
static char *hgrm_text(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    cr_assert_not_null(f);
    cr_assert_eq(tp_stress_hgrm_write(f, &h, TP_STRESS_HGRM_TICKS), 0);
    cr_assert_eq(fclose(f), 0);
    return buf;
}

/* Compares line by line, so that a failure names the row. */
static void assert_rows(const char *got, const char *want)
{
    int line = 1;

    while (*got != '\0' && *want != '\0') {
        size_t g = strcspn(got, "\n"), w = strcspn(want, "\n");

        cr_assert(g == w && memcmp(got, want, g) == 0,
                  "line %d:\n got  \"%.*s\"\n want \"%.*s\"", line, (int)g, got, (int)w, want);
        got += g + (got[g] == '\n');
        want += w + (want[w] == '\n');
        line++;
    }
    cr_assert(*got == '\0' && *want == '\0', "line %d: got \"%s\", want \"%s\"",
              line, got, want);
}

Test(stress_hgrm, small_set_matches_hdr_percentiles_print_row_by_row)
{
    char *text;

    tp_stress_hist_init(&h);
    tp_stress_hist_record(&h, 1000);
    tp_stress_hist_record(&h, 2000);
    tp_stress_hist_record(&h, 2000);
    tp_stress_hist_record(&h, 2000);
    tp_stress_hist_record(&h, 50000);
    text = hgrm_text();
    assert_rows(text, small_ref);
    free(text);
}

/* By hand: 1000 ns is in [2^9, 2^10), cut in 128 buckets 4 ns wide, so in
 * [1000, 1004); 2000 ns in [2000, 2008) (8 ns wide): highest values 1003 and
 * 2007, 0.001 and 0.002 ms; 50000 is in [49920, 50176), highest 50175 = 0.050 ms. Ticks: 5 per
 * half distance, so 0, 10, ... 50%, then steps of 5% to 75%, of 2.5% to
 * 87.5%: the row at 80% still has 4 of 5 values (2 us), the next tick
 * 82.5% needs the 5th (50 us); then the 100% row. Mean from bucket middles:
 * (1002 + 3 * 2004 + 50048) / 5 = 11412.4 ns = 0.011 ms. */
Test(stress_hgrm, small_is_right_by_hand)
{
    cr_assert_not_null(strstr(small_ref, "       0.002     0.800000            4         5.00\n"
                                         "       0.050     0.825000            5         5.71\n"
                                         "       0.050     1.000000            5          inf\n"));
    cr_assert_not_null(strstr(small_ref, "#[Mean    =        0.011,"));
    cr_assert_eq(tp_stress_hist_bucket_low(tp_stress_hist_index(50000)), 49920);
    cr_assert_eq(tp_stress_hist_bucket_width(tp_stress_hist_index(50000)), 256);
    cr_assert_eq(tp_stress_hist_bucket_width(tp_stress_hist_index(1000)), 4);
    cr_assert_eq(tp_stress_hist_bucket_low(tp_stress_hist_index(2000)), 2000);
}

Test(stress_hgrm, hundred_values_match_hdr_percentiles_print_row_by_row)
{
    char *text;
    uint64_t ms;

    tp_stress_hist_init(&h);
    for (ms = 100; ms >= 1; ms--)
        tp_stress_hist_record(&h, ms * 1000000);
    text = hgrm_text();
    assert_rows(text, hundred_ref);
    free(text);
}

Test(stress_hgrm, empty_histogram_writes_the_100_percent_row_and_a_zero_footer)
{
    char *text;

    tp_stress_hist_init(&h);
    text = hgrm_text();
    assert_rows(text, empty_ref);
    free(text);
}

Test(stress_hgrm, merged_thread_histograms_write_what_one_histogram_would)
{
    static struct tp_stress_hist a, b;
    char *one, *two;
    uint64_t v;

    tp_stress_hist_init(&h);
    tp_stress_hist_init(&a);
    tp_stress_hist_init(&b);
    for (v = 1; v <= 20000; v++) {
        tp_stress_hist_record(&h, v * 997);
        tp_stress_hist_record(v % 3 ? &a : &b, v * 997);
    }
    one = hgrm_text();
    tp_stress_hist_init(&h);
    tp_stress_hist_merge(&h, &a);
    tp_stress_hist_merge(&h, &b);
    two = hgrm_text();
    assert_rows(two, one);
    free(one);
    free(two);
}
