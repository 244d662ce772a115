/* tp_master.c - the master of `processes N` (see tp_master.h).
 *
 * Conf generations: m->conf starts as the caller's; each good reload makes
 * a heap conf (m->owned) that replaces it, the one before freed at once:
 * a process forked later copies the newest. */
#include "tp_master.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 256
#define QUICK_DEATH_MS 1000       /* dying sooner after its start backs off */
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define RELOAD_WAIT_MS 10000      /* READY=1 after a reload at the latest */

struct child {
    pid_t pid;                    /* 0: not running */
    int ready_fd;                 /* read end of its report pipe: 'r' once it
                                     serves, then 'h' (took it) or 'f' (refused
                                     it) after each reload; -1 once closed */
    bool reloading;               /* sent SIGHUP, its report not yet read */
    bool served;                  /* it has been ready at least once */
    unsigned quick_deaths;        /* in a row */
    int64_t started_ms;
    int64_t restart_ms;           /* when to start it again; 0: not due */
};

struct master {
    struct tp_conf *conf;
    struct tp_conf *owned;        /* conf if a reload allocated it, else NULL */
    unsigned n;
    tp_serve_fn *serve;
    tp_reload_conf_fn *read_conf;
    struct tp_notify *notify;
    tp_log_fn *log;
    tp_metrics_t *metrics;
    struct child kids[MAX_PROCS];
    int sigfd;
    bool stopping, said_ready, failed;
    unsigned reload_pending;      /* processes still reloading */
    unsigned reload_refused;      /* ... that refused the conf */
    int64_t reload_deadline_ms;   /* 0: no reload under way */
    pid_t self;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(struct master *m, enum tp_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(struct master *m, enum tp_log_level level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (level > m->conf->log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    m->log(NULL, level, msg);
}

static void notify(struct master *m, const char *state)
{
    if (m->notify->on)
        sd_notify(0, state);
}

static unsigned running(const struct master *m)
{
    unsigned i, k = 0;

    for (i = 0; i < m->n; i++)
        k += m->kids[i].pid > 0;
    return k;
}

static void start(struct master *m, unsigned i)
{
    struct child *c = &m->kids[i];
    int p[2];
    pid_t pid;

    c->restart_ms = 0;
    if (pipe2(p, O_CLOEXEC) < 0) {
        say(m, TP_LOG_ERROR, "master: pipe: %s; process #%u not started", strerror(errno), i + 1);
        c->restart_ms = now_ms() + BACKOFF_MAX_MS;
        return;
    }
    pid = fork();
    if (pid < 0) {
        say(m, TP_LOG_ERROR, "master: fork: %s; process #%u not started", strerror(errno), i + 1);
        close(p[0]);
        close(p[1]);
        c->restart_ms = now_ms() + BACKOFF_MAX_MS;
        return;
    }
    if (pid == 0) {
        /* A serving process goes when the master does, even by SIGKILL. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != m->self)
            _exit(1);
        close(m->sigfd);
        close(p[0]);
        for (unsigned k = 0; k < m->n; k++)
            if (m->kids[k].ready_fd >= 0)
                close(m->kids[k].ready_fd);     /* its siblings' */
        unsetenv("NOTIFY_SOCKET");       /* only the master speaks to systemd */
        _exit(m->serve(m->conf, i + 1, p[1]));
    }
    close(p[1]);
    c->pid = pid;
    c->ready_fd = p[0];
    c->started_ms = now_ms();
    say(m, TP_LOG_INFO, "master: started process #%u (pid %d)", i + 1, (int)pid);
}

static void forward(struct master *m, int sig)
{
    unsigned i;

    for (i = 0; i < m->n; i++)
        if (m->kids[i].pid > 0)
            kill(m->kids[i].pid, sig);
}

static void begin_stop(struct master *m, int sig)
{
    char state[96];

    if (!m->stopping) {
        m->stopping = true;
        snprintf(state, sizeof(state), "STOPPING=1\nSTATUS=stopping %u processes", running(m));
        notify(m, state);
    }
    forward(m, sig);
}

/* READY=1 once every process that got the SIGHUP has said how its reload
 * went (or died, or RELOAD_WAIT_MS passed). */
static void reload_check(struct master *m)
{
    char status[160];
    unsigned i;

    if (m->reload_deadline_ms == 0)
        return;
    if (m->reload_pending > 0 && now_ms() < m->reload_deadline_ms)
        return;
    if (m->reload_pending > 0)
        say(m, TP_LOG_WARN, "master: reload: %u processes did not say they are done "
            "within %d ms", m->reload_pending, RELOAD_WAIT_MS);
    for (i = 0; i < m->n; i++)
        m->kids[i].reloading = false;
    if (m->reload_refused > 0)
        snprintf(status, sizeof(status), "serving with %u processes; %u refused the "
                 "reloaded conf (see the log)", m->n, m->reload_refused);
    else
        snprintf(status, sizeof(status), "serving with %u processes, reloaded", m->n);
    m->reload_deadline_ms = 0;
    m->reload_pending = 0;
    tp_notify_reloaded(m->notify, status);
}

/* A process is done with a reload (its report, or its death). */
static void reload_answered(struct master *m, struct child *c, bool refused)
{
    if (!c->reloading)
        return;
    c->reloading = false;
    m->reload_pending--;
    m->reload_refused += refused;
    reload_check(m);
}

static void on_exit_of(struct master *m, pid_t pid, int status)
{
    unsigned i;
    struct child *c;
    char how[64];
    int64_t now = now_ms(), wait;

    for (i = 0; i < m->n && m->kids[i].pid != pid; i++)
        ;
    if (i == m->n)
        return;
    c = &m->kids[i];
    c->pid = 0;
    reload_answered(m, c, false);
    tp_metrics_release(m->metrics, i);   /* its connections died with it */
    if (c->ready_fd >= 0) {
        close(c->ready_fd);
        c->ready_fd = -1;
    }
    if (WIFSIGNALED(status))
        snprintf(how, sizeof(how), "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
    if (m->stopping) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            m->failed = true;
        say(m, TP_LOG_INFO, "master: process #%u (pid %d) %s", i + 1, (int)pid, how);
        return;
    }
    if (!c->served) {
        /* It never served: a conf or bind problem that a restart repeats. */
        say(m, TP_LOG_ERROR, "master: process #%u (pid %d) %s before serving; stopping",
            i + 1, (int)pid, how);
        m->failed = true;
        begin_stop(m, SIGTERM);
        return;
    }
    c->quick_deaths = now - c->started_ms < QUICK_DEATH_MS ? c->quick_deaths + 1 : 0;
    wait = 0;
    if (c->quick_deaths > 0) {
        wait = BACKOFF_FIRST_MS << (c->quick_deaths - 1 < 6 ? c->quick_deaths - 1 : 6);
        if (wait > BACKOFF_MAX_MS)
            wait = BACKOFF_MAX_MS;
    }
    c->restart_ms = now + wait;
    say(m, TP_LOG_WARN, "master: process #%u (pid %d) %s; restarting it%s", i + 1, (int)pid,
        how, wait > 0 ? " after a back-off (it died soon after its start)" : "");
    if (wait > 0)
        say(m, TP_LOG_INFO, "master: process #%u restarts in %lld ms", i + 1, (long long)wait);
}

/* SIGHUP: check the conf here first, so a bad one is logged once and no
 * process is bothered with it; then each process reloads itself. */
static void reload(struct master *m)
{
    char err[512], status[640];
    struct tp_conf *nc;

    tp_notify_reloading(m->notify);
    say(m, TP_LOG_INFO, "master: got SIGHUP: checking the conf");
    nc = m->read_conf(m->conf, err, sizeof(err));
    if (nc == NULL && err[0] == '\0') {
        say(m, TP_LOG_WARN, "master: reload: started without -c, so there is no file to "
            "read again; the built-in default serves on");
        tp_notify_reloaded(m->notify, "reload: no conf file; built-in default kept");
        return;
    }
    if (nc == NULL) {
        say(m, TP_LOG_ERROR, "master: reload failed: %s; the processes serve on with the "
            "old configuration", err);
        snprintf(status, sizeof(status), "reload failed: %s", err);
        tp_notify_reloaded(m->notify, status);
        return;
    }
    free(m->owned);
    m->conf = m->owned = nc;
    m->reload_pending = m->reload_refused = 0;
    for (unsigned i = 0; i < m->n; i++) {
        m->kids[i].reloading = m->kids[i].pid > 0 && m->kids[i].ready_fd >= 0;
        m->reload_pending += m->kids[i].reloading;
    }
    m->reload_deadline_ms = now_ms() + RELOAD_WAIT_MS;
    say(m, TP_LOG_INFO, "master: the conf is good; %u processes reload", m->reload_pending);
    forward(m, SIGHUP);
    reload_check(m);
}

static void on_signals(struct master *m)
{
    struct signalfd_siginfo si;
    int status;
    pid_t pid;

    while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            say(m, TP_LOG_INFO, "master: got %s%s", strsignal((int)si.ssi_signo),
                m->stopping ? " again: every process stops at once" : ": stopping every process");
            begin_stop(m, (int)si.ssi_signo);
            break;
        case SIGHUP:
            if (!m->stopping)
                reload(m);
            break;
        case SIGUSR1:
            forward(m, (int)si.ssi_signo);
            break;
        case SIGCHLD:
            break;
        }
    }
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        on_exit_of(m, pid, status);
}

static void on_ready(struct master *m, unsigned i)
{
    struct child *c = &m->kids[i];
    char byte, state[96];
    unsigned k, ready = 0;

    if (read(c->ready_fd, &byte, 1) != 1) {
        close(c->ready_fd);      /* EOF: it died; SIGCHLD tells the rest */
        c->ready_fd = -1;
        reload_answered(m, c, false);
        return;
    }
    if (byte == 'h' || byte == 'f') {
        reload_answered(m, c, byte == 'f');
        return;
    }
    c->served = true;
    for (k = 0; k < m->n; k++)
        ready += m->kids[k].served;
    if (!m->said_ready && ready == m->n) {
        m->said_ready = true;
        snprintf(state, sizeof(state), "READY=1\nSTATUS=serving with %u processes", m->n);
        notify(m, state);
        say(m, TP_LOG_INFO, "master: all %u processes serve", m->n);
    }
}

int tp_master_run(struct tp_conf *conf, unsigned nprocs, tp_serve_fn *serve,
                  tp_reload_conf_fn *read_conf, struct tp_notify *notify_state, tp_log_fn *log,
                  tp_metrics_t *metrics)
{
    static struct master m;
    struct pollfd pfd[1 + MAX_PROCS];
    unsigned map[1 + MAX_PROCS];
    sigset_t set;
    int64_t next_dog = 0;
    unsigned i;

    m = (struct master){ .conf = conf, .n = nprocs < MAX_PROCS ? nprocs : MAX_PROCS,
                         .serve = serve, .read_conf = read_conf, .notify = notify_state,
                         .log = log, .metrics = metrics, .self = getpid() };
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGCHLD);
    signal(SIGPIPE, SIG_IGN);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 ||
        (m.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        say(&m, TP_LOG_ERROR, "master: signalfd: %s", strerror(errno));
        return 1;
    }
    say(&m, TP_LOG_INFO, "master: pid %d, starting %u processes", (int)m.self, m.n);
    for (i = 0; i < m.n; i++) {
        m.kids[i].ready_fd = -1;
        start(&m, i);
    }
    while (!m.stopping || running(&m) > 0) {
        int64_t now = now_ms(), next = now + 1000;
        nfds_t n = 1;
        int rc;

        for (i = 0; i < m.n; i++) {
            /* Stopping, nothing restarts: a restart time left from a
             * process that died just before must not keep poll from
             * sleeping. */
            if (!m.stopping && m.kids[i].restart_ms > 0 && m.kids[i].restart_ms < next)
                next = m.kids[i].restart_ms;
            if (m.kids[i].ready_fd >= 0) {
                pfd[n] = (struct pollfd){ .fd = m.kids[i].ready_fd, .events = POLLIN };
                map[n++] = i;
            }
        }
        if (m.notify->watchdog_usec > 0 && next > next_dog)
            next = next_dog;
        if (m.reload_deadline_ms > 0 && next > m.reload_deadline_ms)
            next = m.reload_deadline_ms;
        pfd[0] = (struct pollfd){ .fd = m.sigfd, .events = POLLIN };
        rc = poll(pfd, n, next > now ? (int)(next - now) : 0);
        if (rc < 0 && errno != EINTR) {
            say(&m, TP_LOG_ERROR, "master: poll: %s", strerror(errno));
            begin_stop(&m, SIGTERM);
            sleep(1);
            continue;
        }
        if (rc > 0 && (pfd[0].revents & POLLIN))
            on_signals(&m);
        for (nfds_t k = 1; rc > 0 && k < n; k++)
            if (pfd[k].revents != 0 && m.kids[map[k]].ready_fd == pfd[k].fd)
                on_ready(&m, map[k]);
        reload_check(&m);
        now = now_ms();
        for (i = 0; i < m.n && !m.stopping; i++)
            if (m.kids[i].pid == 0 && m.kids[i].restart_ms > 0 && m.kids[i].restart_ms <= now)
                start(&m, i);
        if (m.notify->watchdog_usec > 0 && now >= next_dog) {
            notify(&m, "WATCHDOG=1");
            next_dog = now + (int64_t)(m.notify->watchdog_usec / 2000);
        }
    }
    close(m.sigfd);
    say(&m, TP_LOG_INFO, "master: every process has stopped");
    m.conf = conf;
    free(m.owned);
    return m.failed ? 1 : 0;
}
