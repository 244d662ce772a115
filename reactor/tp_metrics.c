/* tp_metrics.c - the shared counter region and its Prometheus text.
 *
 * The text follows the exposition format 0.0.4: a HELP and a TYPE line for
 * every family, base units (seconds, bytes), `_total` counters, labels for
 * what varies (reason, listener, direction, process). The process_* figures
 * come from /proc/PID as the Prometheus client libraries read them. */
#include "tp_metrics.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const uint64_t tp_metrics_bound_ns[TP_METRICS_BUCKETS - 1] = {
    10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000, 25000000, 50000000,
    100000000, 250000000, 500000000, 1000000000,
};

/* The same bounds as Prometheus reads them. */
static const char *const bound_text[TP_METRICS_BUCKETS] = {
    "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005",
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1", "0.25", "0.5", "1", "+Inf",
};

struct tp_metrics {
    struct tp_metrics_slot *slots;       /* MAP_SHARED */
    size_t size;
    unsigned nslots;
    int self;                            /* this process's slot, -1 if none */
};

tp_metrics_t *tp_metrics_create(unsigned nslots)
{
    struct tp_metrics *m;
    int err;

    if (nslots == 0) {
        errno = EINVAL;
        return NULL;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->nslots = nslots;
    m->self = -1;
    m->size = sizeof(*m->slots) * nslots;
    m->slots = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m->slots == MAP_FAILED) {
        err = errno;
        free(m);
        errno = err;
        return NULL;
    }
    return m;
}

void tp_metrics_destroy(tp_metrics_t *m)
{
    if (m == NULL)
        return;
    munmap(m->slots, m->size);
    free(m);
}

struct tp_metrics_slot *tp_metrics_claim(tp_metrics_t *m, unsigned i)
{
    if (i >= m->nslots)
        return NULL;
    m->self = (int)i;
    __atomic_store_n(&m->slots[i].pid, (int32_t)getpid(), __ATOMIC_RELAXED);
    return &m->slots[i];
}

struct tp_metrics_slot *tp_metrics_own(const tp_metrics_t *m)
{
    return m->self >= 0 ? &m->slots[m->self] : NULL;
}

void tp_metrics_release(tp_metrics_t *m, unsigned i)
{
    struct tp_metrics_slot *s;

    if (i >= m->nslots)
        return;
    s = &m->slots[i];
    TP_METRIC_SET(&s->stats.open, 0);
    TP_METRIC_SET(&s->stats.lingering, 0);
    TP_METRIC_SET(&s->stats.queued_bytes, 0);
    TP_METRIC_SET(&s->draining, 0);
    TP_METRIC_SET(&s->pid, 0);
}

bool tp_metrics_is_draining(const tp_metrics_t *m)
{
    const struct tp_metrics_slot *s = tp_metrics_own(m);

    return s != NULL && __atomic_load_n(&s->draining, __ATOMIC_RELAXED) != 0;
}

static uint64_t ld(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void tp_metrics_snapshot(const struct tp_metrics_slot *slot, struct tp_stats *out)
{
    const uint64_t *from = (const uint64_t *)&slot->stats;
    uint64_t *to = (uint64_t *)out;
    uint32_t i, n = __atomic_load_n(&slot->nlisten, __ATOMIC_RELAXED);

    for (i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        to[i] = ld(&from[i]);
    out->msgs_in = out->bytes_in = out->bytes_out = 0;
    for (i = 0; i < n && i < TP_CONF_MAX_LISTEN; i++) {
        out->msgs_in += ld(&slot->listen[i].msgs_in);
        out->bytes_in += ld(&slot->listen[i].bytes_in);
        out->bytes_out += ld(&slot->listen[i].bytes_out);
    }
}

/* ---- text ---- */

void tp_metrics_text_free(struct tp_metrics_text *out)
{
    free(out->data);
    out->data = NULL;
    out->len = out->cap = 0;
}

static void put(struct tp_metrics_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void put(struct tp_metrics_text *t, const char *fmt, ...)
{
    va_list ap;
    size_t want;
    char *d;
    int n;

    if (t->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->data != NULL ? t->data + t->len : NULL,
                      t->data != NULL ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if (t->data != NULL && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        want = t->cap > 0 ? t->cap * 2 : 16384;
        while (want < t->len + (size_t)n + 1)
            want *= 2;
        d = realloc(t->data, want);
        if (d == NULL) {
            t->failed = true;
            return;
        }
        t->data = d;
        t->cap = want;
    }
}

static void family(struct tp_metrics_text *t, const char *name, const char *type,
                   const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped, into buf. */
static const char *escaped(const char *s, char *buf, size_t cap)
{
    size_t n = 0;

    for (; *s != '\0' && n + 3 < cap; s++) {
        if (*s == '\\' || *s == '"' || *s == '\n') {
            buf[n++] = '\\';
            buf[n++] = *s == '\n' ? 'n' : *s;
        } else {
            buf[n++] = *s;
        }
    }
    buf[n] = '\0';
    return buf;
}

/* What a render reads of the region, once. */
struct view {
    const struct tp_metrics *m;
    struct tp_stats sum;                 /* counters over every slot */
    bool several;                        /* label per-process lines */
};

#define FIELD(st, off) (*(const uint64_t *)((const char *)(st) + (off)))

static uint64_t summed(const struct view *v, size_t off)
{
    return FIELD(&v->sum, off);
}

static void counter(struct tp_metrics_text *t, const struct view *v, const char *name,
                    const char *help, size_t off)
{
    family(t, name, "counter", help);
    put(t, "%s %llu\n", name, (unsigned long long)summed(v, off));
}

/* A counter with one label over several fields of struct tp_stats. */
struct labelled {
    const char *value;
    size_t off;
};

static void counter_by(struct tp_metrics_text *t, const struct view *v, const char *name,
                       const char *help, const char *label, const struct labelled *ls,
                       size_t n)
{
    size_t i;

    family(t, name, "counter", help);
    for (i = 0; i < n; i++)
        put(t, "%s{%s=\"%s\"} %llu\n", name, label, ls[i].value,
            (unsigned long long)summed(v, ls[i].off));
}

/* A gauge of struct tp_stats: one line per process that holds its slot
 * (labelled when there are several), or the one slot's. */
static void gauge(struct tp_metrics_text *t, const struct view *v, const char *name,
                  const char *help, size_t off)
{
    unsigned i;

    family(t, name, "gauge", help);
    if (!v->several) {
        put(t, "%s %llu\n", name, (unsigned long long)ld(&FIELD(&v->m->slots[0].stats, off)));
        return;
    }
    for (i = 0; i < v->m->nslots; i++)
        put(t, "%s{process=\"%u\"} %llu\n", name, i + 1,
            (unsigned long long)ld(&FIELD(&v->m->slots[i].stats, off)));
}

#define OFF(field) offsetof(struct tp_stats, field)

static void connections(struct tp_metrics_text *t, const struct view *v)
{
    static const struct labelled refused[] = {
        { "acl", OFF(refused_acl) }, { "per_ip", OFF(refused_per_ip) },
        { "rate", OFF(refused_rate) }, { "max_connections", OFF(rejected_max_conn) },
    };
    static const struct labelled closed[] = {
        { "peer", OFF(closed_peer) }, { "error", OFF(closed_error) },
        { "oversize", OFF(closed_oversize) }, { "idle", OFF(closed_idle) },
        { "read_timeout", OFF(closed_read_timeout) }, { "app", OFF(closed_app) },
        { "shutdown", OFF(closed_shutdown) }, { "slow", OFF(closed_slow) },
    };

    counter(t, v, "tidepool_connections_accepted_total",
            "Connections accepted and served.", OFF(accepted));
    counter_by(t, v, "tidepool_connections_refused_total",
               "Connections refused at accept, by the rule that refused them.",
               "reason", refused, sizeof(refused) / sizeof(refused[0]));
    gauge(t, v, "tidepool_connections_open", "Connections open now.", OFF(open));
    counter_by(t, v, "tidepool_connections_closed_total",
               "Connections closed, by what closed them.", "reason", closed,
               sizeof(closed) / sizeof(closed[0]));
    counter(t, v, "tidepool_accept_errors_total",
            "Accepts that failed (out of a resource, or the connection could not be set up).",
            OFF(accept_errors));
    counter(t, v, "tidepool_accept_pauses_total",
            "Times accepting paused for a while, out of file descriptors (EMFILE) or memory.",
            OFF(accept_pauses));
    gauge(t, v, "tidepool_connections_lingering",
          "Connections in a lingering close now.", OFF(lingering));
    counter(t, v, "tidepool_lingering_closes_total",
            "Lingering closes begun (the server closes while input may still arrive).",
            OFF(lingered));
    counter(t, v, "tidepool_lingering_timeouts_total",
            "Lingering closes cut short by lingering_timeout.", OFF(linger_cut));
    counter(t, v, "tidepool_replies_dropped_total",
            "Replies dropped because their connection had closed.", OFF(replies_dropped));
    counter(t, v, "tidepool_discarded_bytes_total",
            "Input bytes dropped at close: partial messages, and what arrives while closing.",
            OFF(bytes_discarded));
    gauge(t, v, "tidepool_worker_queue_bytes",
          "Bytes of messages handed to the workers and not yet answered.", OFF(queued_bytes));
    counter(t, v, "tidepool_chat_redis_published_total",
            "chat_redis: runs of lines Redis took for the other instances.",
            OFF(redis_published));
    counter(t, v, "tidepool_chat_redis_received_total",
            "chat_redis: runs of lines from other instances delivered here.",
            OFF(redis_delivered));
    counter(t, v, "tidepool_chat_redis_dropped_total",
            "chat_redis: runs not published (Redis down or behind): local members only.",
            OFF(redis_dropped));
}

/* Messages and bytes by listener: the same listener in every process. */
static void traffic(struct tp_metrics_text *t, const struct view *v, bool bytes)
{
    const char *name = bytes ? "tidepool_bytes_total" : "tidepool_messages_total";
    /* The names as this process bound them: every process has the same
     * listeners, and this one has surely named them. */
    const struct tp_metrics_slot *s0 = tp_metrics_own(v->m) != NULL ? tp_metrics_own(v->m)
                                                                    : &v->m->slots[0];
    uint32_t i, n = __atomic_load_n(&s0->nlisten, __ATOMIC_ACQUIRE);  /* then the names */
    uint64_t in, out;
    unsigned k;
    char lbl[160];

    family(t, name, "counter", bytes ? "Bytes read and written, by listener."
                                     : "Messages read, and replies written, by listener.");
    for (i = 0; i < n && i < TP_CONF_MAX_LISTEN; i++) {
        in = out = 0;
        for (k = 0; k < v->m->nslots; k++) {
            const struct tp_metrics_listener *l = &v->m->slots[k].listen[i];

            in += ld(bytes ? &l->bytes_in : &l->msgs_in);
            out += ld(bytes ? &l->bytes_out : &l->msgs_out);
        }
        escaped(s0->listen[i].name, lbl, sizeof(lbl));
        put(t, "%s{listener=\"%s\",direction=\"in\"} %llu\n", name, lbl,
            (unsigned long long)in);
        put(t, "%s{listener=\"%s\",direction=\"out\"} %llu\n", name, lbl,
            (unsigned long long)out);
    }
}

static void histogram(struct tp_metrics_text *t, const struct view *v, const char *name,
                      const char *help, size_t off)
{
    uint64_t bucket[TP_METRICS_BUCKETS] = { 0 }, sum_ns = 0, cum = 0;
    unsigned i, k;

    for (k = 0; k < v->m->nslots; k++) {
        const struct tp_metrics_hist *h =
            (const void *)((const char *)&v->m->slots[k] + off);

        for (i = 0; i < TP_METRICS_BUCKETS; i++)
            bucket[i] += ld(&h->bucket[i]);
        sum_ns += ld(&h->sum_ns);
    }
    family(t, name, "histogram", help);
    for (i = 0; i < TP_METRICS_BUCKETS; i++) {
        cum += bucket[i];
        put(t, "%s_bucket{le=\"%s\"} %llu\n", name, bound_text[i], (unsigned long long)cum);
    }
    /* The count is the +Inf bucket, as Prometheus expects, however the
     * writer moved on while the words were read. */
    put(t, "%s_sum %llu.%09llu\n%s_count %llu\n", name,
        (unsigned long long)(sum_ns / 1000000000u), (unsigned long long)(sum_ns % 1000000000u),
        name, (unsigned long long)cum);
}

/* ---- /proc ---- */

struct proc_figures {
    double cpu_seconds, start_time;
    uint64_t rss_bytes, vsize_bytes, open_fds, max_fds;
};

static int read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (f == NULL)
        return -errno;
    n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return 0;
}

/* The "btime" line of /proc/stat: after a line per CPU, so read by line. */
static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    char line[512];
    double t = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "btime ", 6) == 0) {
            t = strtod(line + 6, NULL);
            break;
        }
    fclose(f);
    return t;
}

static int proc_stat(int pid, struct proc_figures *f)
{
    char path[64], buf[1024], *p, *end;
    unsigned long long v[22];
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    int i;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (read_file(path, buf, sizeof(buf)) < 0 || (p = strrchr(buf, ')')) == NULL)
        return -1;
    /* Fields 3 onwards, after "pid (comm)": v[0] is field 3 (state). */
    p += 2;
    v[0] = 0;
    while (*p != ' ' && *p != '\0')
        p++;
    for (i = 1; i < 22; i++) {
        v[i] = strtoull(p, &end, 10);
        if (end == p)
            return -1;
        p = end;
    }
    f->cpu_seconds = (double)(v[11] + v[12]) / (double)tick;      /* utime, stime */
    f->start_time = boot_time() + (double)v[19] / (double)tick;    /* starttime */
    f->vsize_bytes = v[20];
    f->rss_bytes = v[21] * (uint64_t)page;
    return 0;
}

static int proc_fds(int pid, struct proc_figures *f)
{
    char path[64], buf[4096], *p;
    struct dirent *e;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    if ((d = opendir(path)) == NULL)
        return -1;
    f->open_fds = 0;
    while ((e = readdir(d)) != NULL)
        f->open_fds += e->d_name[0] != '.';
    closedir(d);
    f->open_fds -= f->open_fds > 0 && pid == getpid();  /* opendir's own */
    snprintf(path, sizeof(path), "/proc/%d/limits", pid);
    if (read_file(path, buf, sizeof(buf)) < 0 || (p = strstr(buf, "Max open files")) == NULL)
        return -1;
    f->max_fds = strtoull(p + strlen("Max open files"), NULL, 10);
    return 0;
}

static void proc_line(struct tp_metrics_text *t, const struct view *v, const char *name,
                      unsigned slot, const char *value)
{
    if (v->several)
        put(t, "%s{process=\"%u\"} %s\n", name, slot + 1, value);
    else
        put(t, "%s %s\n", name, value);
}

static void process_metrics(struct tp_metrics_text *t, const struct view *v)
{
    static const struct { const char *name, *type, *help; } fams[] = {
        { "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds." },
        { "process_resident_memory_bytes", "gauge", "Resident memory size in bytes." },
        { "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes." },
        { "process_open_fds", "gauge", "Number of open file descriptors." },
        { "process_max_fds", "gauge", "Maximum number of open file descriptors." },
        { "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds." },
    };
    struct proc_figures f[v->m->nslots];
    bool ok[v->m->nslots];
    char value[64];
    unsigned i, k;
    int pid;

    for (k = 0; k < v->m->nslots; k++) {
        pid = __atomic_load_n(&v->m->slots[k].pid, __ATOMIC_RELAXED);
        ok[k] = pid > 0 && proc_stat(pid, &f[k]) == 0 && proc_fds(pid, &f[k]) == 0;
    }
    for (i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
        family(t, fams[i].name, fams[i].type, fams[i].help);
        for (k = 0; k < v->m->nslots; k++) {
            if (!ok[k])
                continue;
            switch (i) {
            case 0: snprintf(value, sizeof(value), "%.2f", f[k].cpu_seconds); break;
            case 1: snprintf(value, sizeof(value), "%llu", (unsigned long long)f[k].rss_bytes); break;
            case 2: snprintf(value, sizeof(value), "%llu", (unsigned long long)f[k].vsize_bytes); break;
            case 3: snprintf(value, sizeof(value), "%llu", (unsigned long long)f[k].open_fds); break;
            case 4: snprintf(value, sizeof(value), "%llu", (unsigned long long)f[k].max_fds); break;
            default: snprintf(value, sizeof(value), "%.2f", f[k].start_time); break;
            }
            proc_line(t, v, fams[i].name, k, value);
        }
    }
}

int tp_metrics_render(const tp_metrics_t *m, struct tp_metrics_text *out)
{
    struct view v = { .m = m, .several = m->nslots > 1 };
    struct tp_stats one;
    unsigned k, i;
    char value[16];

    for (k = 0; k < m->nslots; k++) {
        tp_metrics_snapshot(&m->slots[k], &one);
        for (i = 0; i < sizeof(one) / sizeof(uint64_t); i++)
            ((uint64_t *)&v.sum)[i] += ((const uint64_t *)&one)[i];
    }
    connections(out, &v);
    traffic(out, &v, false);
    traffic(out, &v, true);
    histogram(out, &v, "tidepool_message_duration_seconds",
              "Time from the read of a message to the write of its reply.",
              offsetof(struct tp_metrics_slot, latency));
    histogram(out, &v, "tidepool_worker_queue_wait_seconds",
              "Time a batch of messages waited in a worker's queue.",
              offsetof(struct tp_metrics_slot, queue_wait));
    family(out, "tidepool_draining", "gauge",
           "1 once a graceful stop has begun (/health answers 503), else 0.");
    for (k = 0; k < m->nslots; k++) {
        snprintf(value, sizeof(value), "%u",
                 __atomic_load_n(&m->slots[k].draining, __ATOMIC_RELAXED) != 0);
        proc_line(out, &v, "tidepool_draining", k, value);
    }
    process_metrics(out, &v);
    return out->failed ? -ENOMEM : 0;
}
