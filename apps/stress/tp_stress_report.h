/* tp_stress_report.h - the tool's --json read back (with jansson), for its
 * plot and compare commands; and those commands. */
#ifndef TP_STRESS_REPORT_H
#define TP_STRESS_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Plain struct: one run's JSON; load/fini. */
struct tp_stress_report {
    const char *path;
    char name[64];           /* the file name without directory and .json */
    json_t *root;            /* owned */
};

/* Reads path, which must be a tidepool-stress --json ("tool":
 * "tidepool-stress"). Returns 0, or -EINVAL with "PATH: why" (line and
 * column for bad JSON) in err. */
int tp_stress_report_load(struct tp_stress_report *r, const char *path, char *err,
                          size_t errlen);

void tp_stress_report_fini(struct tp_stress_report *r);

/* The number at key, dotted for objects within ("latency_us.p99");
 * false if it is missing, null or not a number. */
bool tp_stress_report_number(const struct tp_stress_report *r, const char *key, double *v);

/* The string at key ("mode"), or "" if missing. */
const char *tp_stress_report_string(const struct tp_stress_report *r, const char *key);

/* tidepool-stress plot ... and compare ...: argv[0] is the command's name.
 * Return the exit status (0, or 2 on bad input or a failed gnuplot). */
int tp_stress_plot_main(int argc, char **argv);
int tp_stress_compare_main(int argc, char **argv);

#endif /* TP_STRESS_REPORT_H */
