/* stress.c - tidepool-stress: options, signals, the progress line, the final
 * report, --json, --csv and --hgrm; the plot and compare commands. The load
 * itself is tp_stress_engine, the series tp_stress_series. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "tp_stress_args.h"
#include "tp_stress_engine.h"
#include "tp_stress_hgrm.h"
#include "tp_stress_probe.h"
#include "tp_stress_report.h"
#include "tp_stress_series.h"

#define PROG "tidepool-stress"
#define FD_RESERVE 16            /* stdio, epoll instances, --json */
#define PROGRESS_NS 1000000000ull   /* the progress line's interval without --interval */
#define POLL_NS (50 * 1000000ull)   /* longest wait of the main thread */

#define err_name(k) tp_stress_err_name((enum tp_stress_err)(k))

/* The error kinds a mode counts (and the report and JSON show). */
static int nkinds(const struct tp_stress_opts *o)
{
    return o->mode == TP_STRESS_CHAT ? TP_STRESS_ERR_KINDS : TP_STRESS_ERR_CHAT_FIRST;
}

/* Everything the report needs, in the units it prints. */
struct summary {
    const struct tp_stress_opts *o;
    const struct tp_stress_result *r;
    const struct tp_stress_probe_result *probe;   /* NULL without --probe */
    const char *target;          /* the address actually used */
    const struct tp_stress_series *series;   /* NULL without --interval */
    double secs;
    uint64_t messages, bytes;    /* replies (slow: what was sent) */
    double msgs_per_s, mb_per_s, connects_per_s;
    double lat_us[6];            /* p50 p90 p99 p99.9 max mean */
    double probe_us[6];          /* the same for the probes */
    bool ok;
    char why[256];               /* when not ok: which rule of the -h text failed */
};

/* Raises the soft open-file limit to the hard one; returns the soft limit. */
static rlim_t raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

/* Whether a blocking-ish connect to addr succeeds within timeout_ms. */
static bool can_connect(const struct sockaddr *addr, socklen_t len, int timeout_ms)
{
    struct pollfd pfd;
    int fd, err = 0, ok;
    socklen_t elen = sizeof(err);

    fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    ok = connect(fd, addr, len) == 0;
    if (!ok && errno == EINPROGRESS) {
        pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
        ok = poll(&pfd, 1, timeout_ms) == 1 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0;
    }
    close(fd);
    return ok;
}

/* A name may resolve to several addresses (localhost: ::1 and 127.0.0.1):
 * use the first that accepts a connection, as wrk does; else the first. */
static unsigned pick_address(const struct tp_stress_target *t)
{
    unsigned i;

    if (t->naddr == 1)
        return 0;
    for (i = 0; i < t->naddr; i++)
        if (can_connect((const struct sockaddr *)&t->addr[i], t->addrlen[i], 1000))
            return i;
    return 0;
}

/* "812 us", "1.20 ms", "2.01 s". */
static void fmt_us(double us, char *buf, size_t len)
{
    if (us < 1000)
        snprintf(buf, len, "%.0f us", us);
    else if (us < 1e6)
        snprintf(buf, len, "%.2f ms", us / 1e3);
    else
        snprintf(buf, len, "%.2f s", us / 1e6);
}

static uint64_t sum_errors(const uint64_t err[TP_STRESS_ERR_KINDS])
{
    uint64_t sum = 0;
    int k;

    for (k = 0; k < TP_STRESS_ERR_KINDS; k++)
        sum += err[k];
    return sum;
}

static uint64_t total_errors(const struct tp_stress_counts *n)
{
    return sum_errors(n->err);
}

/* One progress line, rewritten in place: the last interval's rate, MB/s and
 * p99, as tcpkali shows them; errors since the start. */
static void progress_line(const struct tp_stress_opts *o, const struct tp_stress_row *r,
                          uint64_t errors)
{
    char p99[32];

    fmt_us((double)r->lat_ns[2] / 1e3, p99, sizeof(p99));
    printf("\r%6.1fs  open %-7llu %s %-10.0f %8.2f MB/s  p99 %-10s errors %llu   ",
           r->t_s, (unsigned long long)r->open,
           o->mode == TP_STRESS_STORM ? "conn/s" : o->mode == TP_STRESS_SLOW ? "sent/s"
           : o->mode == TP_STRESS_CHAT ? "deliv/s" : "msg/s",
           (double)r->msgs / r->dt_s, (double)r->bytes / r->dt_s / 1e6,
           r->lat_count ? p99 : "-", (unsigned long long)errors);
    fflush(stdout);
}

/* The series of a run and the progress line it feeds. */
struct series_run {
    bool on;                 /* --interval or the progress line */
    bool progress;
    bool printed;            /* a progress line is on the screen */
    int err;                 /* -ENOMEM once a row could not be kept */
    uint64_t interval_ns;
    struct tp_stress_series s;
};

/* Takes every interval the threads have cut into the series. */
static void take_ticks(tp_stress_engine_t *e, const struct tp_stress_opts *o,
                       struct series_run *sr)
{
    static struct tp_stress_hist hist;
    struct tp_stress_tick t = { .hist = &hist };

    for (;;) {
        tp_stress_hist_init(&hist);
        if (tp_stress_engine_tick(e, &t) == 0)
            return;
        if (tp_stress_series_add(&sr->s, &t) < 0) {
            sr->err = -ENOMEM;
            continue;
        }
        if (sr->progress && sr->s.n > 0 && !t.tail) {
            progress_line(o, &sr->s.rows[sr->s.n - 1], total_errors(&t.n));
            sr->printed = true;
        }
    }
}

/* Waits for the run to end, taking the series as it is cut (and printing
 * progress if asked). SIGINT/SIGTERM (blocked in every thread) stop it early. */
static void supervise(tp_stress_engine_t *e, const struct tp_stress_opts *o,
                      struct series_run *sr)
{
    struct timespec ts = { 0, (long)POLL_NS };
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sr->on && sr->interval_ns < POLL_NS)
        ts.tv_nsec = (long)sr->interval_ns;
    while (!tp_stress_engine_is_done(e)) {
        if (sigtimedwait(&set, NULL, &ts) > 0)
            tp_stress_engine_stop(e);
        if (sr->on)
            take_ticks(e, o, sr);
    }
}

static void summarize(struct summary *m)
{
    const struct tp_stress_result *r = m->r;
    const struct tp_stress_opts *o = m->o;
    static const uint32_t pcms[5] = { 50000, 90000, 99000, 99900, 100000 };
    int i;

    m->secs = (double)(r->end_ns - r->start_ns) / 1e9;
    if (m->secs <= 0)
        m->secs = 1e-9;
    m->messages = o->mode == TP_STRESS_SLOW ? r->n.sent_msgs
                : o->mode == TP_STRESS_HOLD ? 0 : r->n.msgs;
    m->bytes = o->mode == TP_STRESS_SLOW ? r->n.sent_bytes
             : o->mode == TP_STRESS_HOLD ? 0 : r->n.bytes;
    m->msgs_per_s = (double)m->messages / m->secs;
    m->mb_per_s = (double)m->bytes / m->secs / 1e6;
    m->connects_per_s = o->mode == TP_STRESS_STORM ? (double)r->n.msgs / m->secs : 0.0;
    for (i = 0; i < 5; i++)
        m->lat_us[i] = (double)tp_stress_hist_percentile(&r->hist, pcms[i]) / 1e3;
    m->lat_us[5] = tp_stress_hist_mean(&r->hist) / 1e3;
    if (m->probe == NULL)
        return;
    for (i = 0; i < 5; i++)
        m->probe_us[i] = (double)tp_stress_hist_percentile(&m->probe->hist, pcms[i]) / 1e3;
    m->probe_us[5] = tp_stress_hist_mean(&m->probe->hist) / 1e3;
}

/* "3 errors: closed_early 2, reset 1", after prefix. */
static void errors_why(const char *prefix, const uint64_t err[TP_STRESS_ERR_KINDS],
                       char *why, size_t len)
{
    uint64_t sum = sum_errors(err);
    const char *sep = ": ";
    int k, at;

    at = snprintf(why, len, "%s%llu error%s", prefix, (unsigned long long)sum,
                  sum == 1 ? "" : "s");
    for (k = 0; k < TP_STRESS_ERR_KINDS && at >= 0 && (size_t)at < len; k++) {
        if (err[k] == 0)
            continue;
        at += snprintf(why + at, len - (size_t)at, "%s%s %llu", sep, err_name(k),
                       (unsigned long long)err[k]);
        sep = ", ";
    }
}

/* Whether the run did what was asked, by the "ok needs" rules of the -h
 * text; if not, m->why says which rule failed. */
static void judge(struct summary *m)
{
    const struct tp_stress_counts *n = &m->r->n;
    const struct tp_stress_opts *o = m->o;
    uint64_t unanswered = n->sent_msgs - n->msgs;
    char *why = m->why;
    size_t len = sizeof(m->why);

    why[0] = '\0';
    if (n->opened == 0)
        snprintf(why, len, "no connection to %s could be opened", m->target);
    else if (total_errors(n) > 0)
        errors_why("", n->err, why, len);
    else if (o->mode == TP_STRESS_ECHO && n->msgs == 0)
        snprintf(why, len, "no reply came back (%llu messages sent)",
                 (unsigned long long)n->sent_msgs);
    else if (o->mode == TP_STRESS_ECHO &&
             unanswered > m->r->in_flight_at_end + n->lost_at_close)
        snprintf(why, len, "%llu messages sent were never answered",
                 (unsigned long long)(unanswered - m->r->in_flight_at_end - n->lost_at_close));
    else if (o->mode == TP_STRESS_HOLD && (n->opened < o->conns || m->r->open_at_end < o->conns))
        snprintf(why, len, "%llu of %u connections opened, %llu still open at the end",
                 (unsigned long long)n->opened, o->conns,
                 (unsigned long long)m->r->open_at_end);
    else if (o->mode == TP_STRESS_STORM && n->msgs == 0)
        snprintf(why, len, "no connect-send-reply-close cycle completed");
    else if (o->mode == TP_STRESS_SLOW && n->sent_msgs == 0)
        snprintf(why, len, "no whole message was sent");
    else if (o->mode == TP_STRESS_FLOOD && n->bytes == 0)
        snprintf(why, len, "no echoed byte came back (%llu bytes sent)",
                 (unsigned long long)n->sent_bytes);
    else if (o->mode == TP_STRESS_CHAT && n->sent_msgs == 0)
        snprintf(why, len, "no line was sent (%llu of %u members in the room)",
                 (unsigned long long)m->r->chat.joined, m->r->chat.members);
    else if (o->mode == TP_STRESS_CHAT && n->msgs == 0)
        snprintf(why, len, "no line was delivered (%llu sent)",
                 (unsigned long long)n->sent_msgs);
    else if (m->probe != NULL && sum_errors(m->probe->err) > 0)
        errors_why("probe: ", m->probe->err, why, len);
    else if (m->probe != NULL && m->probe->count == 0)
        snprintf(why, len, "no probe completed");
    m->ok = why[0] == '\0';
}

static void print_notes(const struct tp_stress_result *r, rlim_t fd_limit)
{
    if (r->notes & TP_STRESS_NOTE_EMFILE)
        fprintf(stderr, PROG ": note: out of file descriptors (EMFILE/ENFILE, open-file "
                "limit %llu): fewer connections, or raise the limit (ulimit -Hn)\n",
                (unsigned long long)fd_limit);
    if (r->notes & TP_STRESS_NOTE_ADDRNOTAVAIL)
        fprintf(stderr, PROG ": note: out of local ports (EADDRNOTAVAIL; TIME_WAIT after "
                "many closes?): use --src 127.0.0.1-127.0.0.8 or fewer connections\n");
    if (r->notes & TP_STRESS_NOTE_PREFIXED)
        fprintf(stderr, PROG ": note: some lines had the tool's mark after other text "
                "(the room's chat_prefix?): --foreign skip drops such prefixes\n");
    if (r->notes & TP_STRESS_NOTE_ERRNO)
        fprintf(stderr, PROG ": note: errors counted as other began with: %s\n",
                strerror(r->other_errno));
}

/* "probe        every 100 ms: 10 answered, p50 ..., errors 0". */
static void print_probe(const struct summary *m)
{
    const struct tp_stress_probe_result *p = m->probe;
    char l[6][32];
    int i;

    printf("probe        every %.0f ms, a new connection each: %llu answered",
           (double)m->o->probe_ns / 1e6, (unsigned long long)p->count);
    if (p->count > 0) {
        for (i = 0; i < 6; i++)
            fmt_us(m->probe_us[i], l[i], sizeof(l[i]));
        printf(", connect to reply p50 %s, p90 %s, p99 %s, max %s, mean %s",
               l[0], l[1], l[2], l[4], l[5]);
        fmt_us((double)p->slowest.connect_ns / 1e3, l[0], sizeof(l[0]));
        printf(" (the slowest began %.2f s in, its connect took %s)",
               (double)p->slowest.at_ns / 1e9, l[0]);
    }
    printf("; errors %llu", (unsigned long long)sum_errors(p->err));
    for (i = 0; i < TP_STRESS_ERR_KINDS; i++)
        if (p->err[i] > 0)
            printf(", %s %llu", err_name(i), (unsigned long long)p->err[i]);
    printf("\n");
}

/* "room ..." and "delivered ..." lines of --mode chat. */
static void print_chat(const struct summary *m)
{
    const struct tp_stress_chat_result *c = &m->r->chat;
    const struct tp_stress_counts *n = &m->r->n;

    printf("room         %u members, %llu joined%s, %u sender%s (%s), %llu members open "
           "at the end\n", c->members, (unsigned long long)c->joined,
           c->join_timed_out ? " (the rest not within --timeout)" : "", c->senders,
           c->senders == 1 ? "" : "s",
           m->o->proto == TP_STRESS_PROTO_RESP ? "extra publisher connections"
                                               : "members that also read",
           (unsigned long long)c->members_at_end);
    printf("delivered    %llu deliveries of %llu lines sent x %u recipients = %llu, "
           "%.1f deliveries/s, %.2f MB/s\n", (unsigned long long)n->msgs,
           (unsigned long long)n->sent_msgs, c->recipients,
           (unsigned long long)(n->sent_msgs * c->recipients), m->msgs_per_s, m->mb_per_s);
    printf("phases       sending %.3f s, drain %.3f s; %llu lines given up after --timeout",
           (double)c->send_ns / 1e9, (double)c->drain_ns / 1e9,
           (unsigned long long)c->given_up);
    if (m->o->skip_foreign)
        printf(", %llu foreign lines skipped", (unsigned long long)c->foreign);
    if (m->o->proto == TP_STRESS_PROTO_RESP)
        printf(", %llu PUBLISH replies checked", (unsigned long long)c->publish_replies);
    printf("\n");
}

static void print_report(const struct summary *m)
{
    const struct tp_stress_opts *o = m->o;
    const struct tp_stress_result *r = m->r;
    char l[6][32];
    int i;

    printf("target       %s (%s), %s mode", o->target.text, m->target,
           tp_stress_mode_name(o->mode));
    if (o->mode == TP_STRESS_CHAT && o->proto == TP_STRESS_PROTO_RESP)
        printf(" (resp: Redis pub/sub, channel %s)", o->channel);
    else if (o->mode == TP_STRESS_CHAT)
        printf(" (line)");
    printf(", %u thread%s, %u B %s, ", o->threads, o->threads == 1 ? "" : "s", o->size,
           o->mode == TP_STRESS_CHAT ? "lines" : "messages");
    if (o->mode == TP_STRESS_CHAT && o->rate > 0)
        printf("depth %u per sender, rate %.0f lines/s over all senders\n", o->depth, o->rate);
    else if (o->mode == TP_STRESS_CHAT)
        printf("depth %u per sender, unpaced\n", o->depth);
    else if (o->mode == TP_STRESS_FLOOD)
        printf("window %llu B, unpaced\n", (unsigned long long)o->window);
    else if (o->rate > 0)
        printf("depth %u, rate %.0f msg/s\n", o->depth, o->rate);
    else
        printf("depth %u, unpaced\n", o->depth);
    printf("connections  %llu requested, %llu opened, %llu open at end\n",
           (unsigned long long)r->requested,
           (unsigned long long)r->n.opened, (unsigned long long)r->open_at_end);
    if (o->reconnect)
        printf("reconnect    %llu replacements started, %llu closed by the server at a "
               "message boundary, %llu messages lost at a close\n",
               (unsigned long long)r->n.reconnects, (unsigned long long)r->n.closed_by_server,
               (unsigned long long)r->n.lost_at_close);
    printf("duration     %.3f s\n", m->secs);
    switch (o->mode) {
    case TP_STRESS_ECHO:
        printf("messages     %llu replies of %llu sent (%llu in flight at the end), "
               "%.1f msgs/s, %.2f MB/s received (%llu bytes)\n",
               (unsigned long long)m->messages, (unsigned long long)r->n.sent_msgs,
               (unsigned long long)r->in_flight_at_end, m->msgs_per_s, m->mb_per_s,
               (unsigned long long)m->bytes);
        break;
    case TP_STRESS_STORM:
        printf("cycles       %llu connect-send-reply-close, %.1f connects/s\n",
               (unsigned long long)m->messages, m->connects_per_s);
        break;
    case TP_STRESS_SLOW:
        printf("sent         %llu messages, %llu bytes, %.2f MB/s (replies not read)\n",
               (unsigned long long)m->messages, (unsigned long long)m->bytes, m->mb_per_s);
        break;
    case TP_STRESS_FLOOD:
        printf("echoed       %llu lines verified back of %llu sent, %.1f msgs/s, %.2f MB/s "
               "(%llu bytes back of %llu sent; latency is not measured)\n",
               (unsigned long long)m->messages, (unsigned long long)r->n.sent_msgs,
               m->msgs_per_s, m->mb_per_s, (unsigned long long)m->bytes,
               (unsigned long long)r->n.sent_bytes);
        break;
    case TP_STRESS_HOLD:
        printf("held         %llu of %llu still open at the end\n",
               (unsigned long long)r->open_at_end, (unsigned long long)r->n.opened);
        break;
    case TP_STRESS_CHAT:
        print_chat(m);
        break;
    }
    if (r->hist.count > 0) {
        for (i = 0; i < 6; i++)
            fmt_us(m->lat_us[i], l[i], sizeof(l[i]));
        printf("latency      p50 %s, p90 %s, p99 %s, p99.9 %s, max %s, mean %s%s\n",
               l[0], l[1], l[2], l[3], l[4], l[5],
               o->mode == TP_STRESS_STORM ? " (connect to reply)"
               : o->mode == TP_STRESS_CHAT ? " (send to each delivery)" : "");
    }
    printf("errors      ");
    for (i = 0; i < nkinds(o); i++)
        printf(" %s %llu%s", err_name(i), (unsigned long long)r->n.err[i],
               i + 1 < nkinds(o) ? "," : "\n");
    if (m->probe != NULL)
        print_probe(m);
    fflush(stdout);
}

/* s as a JSON string: quotes, backslashes and control bytes escaped. */
static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", (unsigned char)*s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

/* The "probe" object: latency_us and errors as at the top level. */
static void write_json_probe(FILE *f, const struct summary *m)
{
    const struct tp_stress_probe_result *p = m->probe;
    int i;

    fprintf(f, " \"probe\":{\"every_ms\":%.3f,\"count\":%llu,\n  \"latency_us\":{\"p50\":%.3f,"
            "\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,\"mean\":%.3f},\n  \"errors\":{",
            (double)m->o->probe_ns / 1e6, (unsigned long long)p->count, m->probe_us[0],
            m->probe_us[1], m->probe_us[2], m->probe_us[3], m->probe_us[4], m->probe_us[5]);
    for (i = 0; i < TP_STRESS_ERR_CHAT_FIRST; i++)
        fprintf(f, "\"%s\":%llu%s", err_name(i), (unsigned long long)p->err[i],
                i + 1 < TP_STRESS_ERR_CHAT_FIRST ? "," : "},\n");
    fprintf(f, "  \"slowest\":{\"latency_us\":%.3f,\"connect_us\":%.3f,\"at_s\":%.6f}},\n",
            (double)p->slowest.ns / 1e3, (double)p->slowest.connect_ns / 1e3,
            (double)p->slowest.at_ns / 1e9);
}

/* The "chat" object: the room, and deliveries (= "messages") against lines. */
static void write_json_chat(FILE *f, const struct summary *m)
{
    const struct tp_stress_chat_result *c = &m->r->chat;
    const struct tp_stress_opts *o = m->o;

    fprintf(f, " \"chat\":{\"proto\":\"%s\",\"channel\":",
            o->proto == TP_STRESS_PROTO_RESP ? "resp" : "line");
    put_json_string(f, o->proto == TP_STRESS_PROTO_RESP ? o->channel : "");
    fprintf(f, ",\"members\":%u,\"senders\":%u,\"recipients\":%u,\"joined\":%llu,"
            "\"join_timed_out\":%s,\n  \"members_at_end\":%llu,\"lines\":%llu,"
            "\"deliveries\":%llu,\"expected\":%llu,\"deliveries_per_s\":%.3f,\n"
            "  \"send_s\":%.6f,\"drain_s\":%.6f,\"given_up\":%llu,\"foreign\":%llu,"
            "\"publish_replies\":%llu},\n",
            c->members, c->senders, c->recipients, (unsigned long long)c->joined,
            c->join_timed_out ? "true" : "false", (unsigned long long)c->members_at_end,
            (unsigned long long)m->r->n.sent_msgs, (unsigned long long)m->r->n.msgs,
            (unsigned long long)(m->r->n.sent_msgs * c->recipients), m->msgs_per_s,
            (double)c->send_ns / 1e9, (double)c->drain_ns / 1e9,
            (unsigned long long)c->given_up, (unsigned long long)c->foreign,
            (unsigned long long)c->publish_replies);
}

struct dist_out {
    FILE *f;
    bool first;
};

static int json_dist_row(void *arg, uint64_t value_ns, double pct, uint64_t count)
{
    struct dist_out *d = arg;

    fprintf(d->f, "%s[%.3f,%.6f,%llu]", d->first ? "" : ",", (double)value_ns / 1e3, pct,
            (unsigned long long)count);
    d->first = false;
    return 0;
}

/* "latency_distribution": the .hgrm rows as [value_us, percentile, count]. */
static void write_json_dist(FILE *f, const struct tp_stress_hist *h)
{
    struct dist_out d = { f, true };

    fprintf(f, ",\n \"latency_distribution\":[");
    if (h->count > 0)
        tp_stress_hgrm_each(h, TP_STRESS_HGRM_TICKS, json_dist_row, &d);
    fprintf(f, "]");
}

/* Writes the results to f and closes it. The series and the distribution
 * come last, so that the summary figures open the file. */
static int write_json(const struct summary *m, FILE *f)
{
    const struct tp_stress_opts *o = m->o;
    const struct tp_stress_result *r = m->r;
    int i;
    fprintf(f, "{\"tool\":\"tidepool-stress\",\"version\":\"%s\",\"mode\":\"%s\",\"target\":",
            TP_VERSION, tp_stress_mode_name(o->mode));
    put_json_string(f, o->target.text);
    fprintf(f, ",\n \"threads\":%u,\"size\":%u,\"depth\":%u,\"rate\":%.10g,\n",
            o->threads, o->size, o->depth, o->rate);
    fprintf(f, " \"connections\":{\"requested\":%llu,\"opened\":%llu,\"open_at_end\":%llu,"
            "\"reconnects\":%llu,\"closed_by_server\":%llu,\"lost_at_close\":%llu},\n",
            (unsigned long long)r->requested, (unsigned long long)r->n.opened,
            (unsigned long long)r->open_at_end, (unsigned long long)r->n.reconnects,
            (unsigned long long)r->n.closed_by_server, (unsigned long long)r->n.lost_at_close);
    fprintf(f, " \"duration_s\":%.6f,\"messages\":%llu,\"msgs_per_s\":%.3f,\"bytes\":%llu,"
            "\"mb_per_s\":%.6f,\n \"connects_per_s\":%.3f,\"sent\":%llu,\"sent_bytes\":%llu,"
            "\"in_flight_at_end\":%llu,\n",
            m->secs, (unsigned long long)m->messages, m->msgs_per_s,
            (unsigned long long)m->bytes, m->mb_per_s, m->connects_per_s,
            (unsigned long long)r->n.sent_msgs, (unsigned long long)r->n.sent_bytes,
            (unsigned long long)r->in_flight_at_end);
    if (o->mode == TP_STRESS_FLOOD)
        fprintf(f, " \"window\":%llu,\n", (unsigned long long)o->window);
    if (o->mode == TP_STRESS_CHAT)
        write_json_chat(f, m);
    fprintf(f, " \"latency_us\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
            "\"max\":%.3f,\"mean\":%.3f},\n", m->lat_us[0], m->lat_us[1], m->lat_us[2],
            m->lat_us[3], m->lat_us[4], m->lat_us[5]);
    fprintf(f, " \"errors\":{");
    for (i = 0; i < nkinds(o); i++)
        fprintf(f, "\"%s\":%llu%s", err_name(i), (unsigned long long)r->n.err[i],
                i + 1 < nkinds(o) ? "," : "},\n");
    if (m->probe != NULL)
        write_json_probe(f, m);
    fprintf(f, " \"ok\":%s,\"why\":", m->ok ? "true" : "false");
    put_json_string(f, m->why);
    write_json_dist(f, &r->hist);
    if (m->series != NULL) {
        fprintf(f, ",\n ");
        tp_stress_series_write_json(m->series, f);
    }
    fprintf(f, "}\n");
    if (ferror(f)) {
        fclose(f);
        return -EIO;
    }
    return fclose(f) != 0 ? -errno : 0;
}

/* Blocks SIGINT/SIGTERM in this and every later thread (supervise waits for
 * them) and ignores SIGPIPE. */
static void setup_signals(void)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
}

/* Runs e, and probe (if not NULL) beside it, to the end of the run; fills
 * r, pr and the series, and frees both. Returns 0 or -errno if a thread did
 * not start. */
static int drive(tp_stress_engine_t *e, tp_stress_probe_t *probe, const struct tp_stress_opts *o,
                 struct series_run *sr, struct tp_stress_result *r,
                 struct tp_stress_probe_result *pr)
{
    int rc;

    rc = tp_stress_engine_start(e);
    if (rc == 0 && probe != NULL && (rc = tp_stress_probe_start(probe)) < 0)
        tp_stress_engine_stop(e);
    supervise(e, o, sr);
    tp_stress_engine_join(e, r);
    if (sr->on)
        take_ticks(e, o, sr);       /* the intervals left, and the tail */
    if (sr->printed)
        printf("\n");
    tp_stress_engine_destroy(e);
    if (probe != NULL) {
        tp_stress_probe_stop(probe);    /* the load is over: so is the probe */
        tp_stress_probe_join(probe, pr);
        tp_stress_probe_destroy(probe);
    }
    return rc;
}

/* Connections the run opens: chat resp adds the publishers to -c. */
static uint64_t total_conns(const struct tp_stress_opts *o)
{
    if (o->mode == TP_STRESS_CHAT && o->proto == TP_STRESS_PROTO_RESP)
        return (uint64_t)o->conns + o->senders;
    return o->conns;
}

/* The output files, opened before the run so that a bad path fails at once. */
struct outputs {
    FILE *json, *csv, *hgrm;
};

static FILE *open_output(const char *opt, const char *path)
{
    FILE *f;

    if (path == NULL)
        return NULL;
    if ((f = fopen(path, "w")) == NULL)
        fprintf(stderr, PROG ": %s %s: %s\n", opt, path, strerror(errno));
    return f;
}

static void close_outputs(struct outputs *out)
{
    if (out->json != NULL)
        fclose(out->json);
    if (out->csv != NULL)
        fclose(out->csv);
    if (out->hgrm != NULL)
        fclose(out->hgrm);
}

static int open_outputs(const struct tp_stress_opts *o, struct outputs *out)
{
    out->json = open_output("--json", o->json_path);
    out->csv = open_output("--csv", o->csv_path);
    out->hgrm = open_output("--hgrm", o->hgrm_path);
    if ((o->json_path && !out->json) || (o->csv_path && !out->csv) ||
        (o->hgrm_path && !out->hgrm)) {
        close_outputs(out);
        return -1;
    }
    return 0;
}

/* Writes and closes the files; 0, or -1 after saying which failed. */
static int write_outputs(const struct summary *m, struct outputs *out)
{
    const struct tp_stress_opts *o = m->o;
    int rc = 0, err;

    if (out->csv != NULL) {
        err = tp_stress_series_write_csv(m->series, out->csv);
        if (fclose(out->csv) != 0 || err < 0) {
            fprintf(stderr, PROG ": --csv %s: %s\n", o->csv_path, strerror(EIO));
            rc = -1;
        }
    }
    if (out->hgrm != NULL) {
        err = tp_stress_hgrm_write(out->hgrm, &m->r->hist, TP_STRESS_HGRM_TICKS);
        if (fclose(out->hgrm) != 0 || err < 0) {
            fprintf(stderr, PROG ": --hgrm %s: %s\n", o->hgrm_path, strerror(EIO));
            rc = -1;
        }
    }
    if (out->json != NULL && (err = write_json(m, out->json)) < 0) {
        fprintf(stderr, PROG ": --json %s: %s\n", o->json_path, strerror(-err));
        rc = -1;
    }
    return rc;
}

/* Prints what the threads noted, judges the run and reports it. */
static void conclude(struct summary *m, int start_rc, rlim_t fd_limit)
{
    const struct tp_stress_result *r = m->r;
    const struct tp_stress_opts *o = m->o;
    unsigned i;

    for (i = 0; i < r->ndetails; i++)
        fprintf(stderr, PROG ": %s\n", r->details[i]);
    if (r->details_dropped > 0)
        fprintf(stderr, PROG ": ... and %llu more %s\n",
                (unsigned long long)r->details_dropped,
                o->mode == TP_STRESS_CHAT ? "mismatches" : "mismatching connections");
    if (m->probe != NULL && m->probe->first_err[0] != '\0')
        fprintf(stderr, PROG ": %s (first probe failure)\n", m->probe->first_err);
    print_notes(r, fd_limit);
    summarize(m);
    judge(m);
    if (start_rc < 0) {
        m->ok = false;
        snprintf(m->why, sizeof(m->why), "starting threads: %s", strerror(-start_rc));
    }
    print_report(m);
    if (!m->ok)
        fprintf(stderr, PROG ": not ok: %s\n", m->why);
}

/* Runs the load and reports; returns the exit code. */
static int run(const struct tp_stress_opts *o, rlim_t fd_limit)
{
    static struct tp_stress_result r;
    static struct tp_stress_probe_result pr;
    static struct series_run sr;
    unsigned a = pick_address(&o->target);
    const struct sockaddr *addr = (const struct sockaddr *)&o->target.addr[a];
    struct summary m = { .o = o, .r = &r };
    struct outputs out = { 0 };
    char err[256], target[80];
    tp_stress_probe_t *probe = NULL;
    tp_stress_engine_t *e;
    int rc, start_rc;

    tp_stress_addr_format(addr, target, sizeof(target));
    m.target = target;
    if (total_conns(o) + FD_RESERVE + 2 * o->threads > fd_limit)
        fprintf(stderr, PROG ": warning: %llu connections are over the open-file limit "
                "(%llu); connections past it will fail (counted as other, EMFILE)\n",
                (unsigned long long)total_conns(o), (unsigned long long)fd_limit);
    if (open_outputs(o, &out) < 0)
        return 1;
    sr.progress = !o->quiet && isatty(STDOUT_FILENO);
    sr.on = sr.progress || o->interval_ns > 0;
    sr.interval_ns = o->interval_ns > 0 ? o->interval_ns : sr.on ? PROGRESS_NS : 0;
    tp_stress_series_init(&sr.s, o->mode, nkinds(o), sr.interval_ns ? sr.interval_ns : 1);
    e = tp_stress_engine_create(o, addr, o->target.addrlen[a], sr.interval_ns, err, sizeof(err));
    if (e == NULL) {
        fprintf(stderr, PROG ": %s\n", err);
        close_outputs(&out);
        return 1;
    }
    if (o->probe_ns > 0 && (probe = tp_stress_probe_create(o, addr, o->target.addrlen[a])) == NULL) {
        fprintf(stderr, PROG ": --probe: %s\n", strerror(errno));
        tp_stress_engine_destroy(e);
        close_outputs(&out);
        return 1;
    }
    start_rc = drive(e, probe, o, &sr, &r, &pr);
    if (probe != NULL)
        m.probe = &pr;
    if (o->interval_ns > 0)
        m.series = &sr.s;
    if (sr.err < 0)
        fprintf(stderr, PROG ": --interval: out of memory: intervals are missing from the "
                "series\n");
    conclude(&m, start_rc, fd_limit);
    rc = write_outputs(&m, &out);
    tp_stress_series_fini(&sr.s);
    return rc < 0 ? 1 : m.ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    static struct tp_stress_opts o;
    char err[512];
    rlim_t fd_limit;

    if (argc > 1 && strcmp(argv[1], "plot") == 0)
        return tp_stress_plot_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "compare") == 0)
        return tp_stress_compare_main(argc - 1, argv + 1);
    if (tp_stress_args_parse(&o, argc, argv, err, sizeof(err)) < 0) {
        fprintf(stderr, PROG ": %s (try '" PROG " -h')\n", err);
        return 2;
    }
    if (o.action == TP_STRESS_HELP) {
        fputs(tp_stress_args_usage(), stdout);
        return 0;
    }
    if (o.action == TP_STRESS_VERSION) {
        printf(PROG " %s\n", TP_VERSION);
        return 0;
    }
    fd_limit = raise_fd_limit();
    setup_signals();
    return run(&o, fd_limit);
}
