/* main.c - the tidepool binary: options, conf, signals, logging, run,
 * reload.
 *
 * Conf generations here: main() loads the first into its static `conf`;
 * each good reload is a heap copy (events.owned) that replaces it, and the
 * one before is freed once the server has taken the new one (the server
 * keeps its own copies, see tp_reactor.c). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tp_apps.h"
#include "tp_conf.h"
#include "tp_master.h"
#include "tp_notify.h"
#include "tp_reactor.h"

#define RESERVED_FDS 96   /* listeners, epoll, eventfds, stdio, logs, and
                             refused connections lingering (at most 64) */

struct options {
    const char *conf_path;   /* NULL: the built-in default */
    bool test_only;
    bool dump;               /* -T: -t, then print the effective conf */
};

static enum tp_log_level log_level = TP_LOG_INFO;
static char proc_tag[16];     /* "#2 " in serving process 2 of several */
static const char *conf_path; /* -c FILE, re-read on SIGHUP; NULL: built-in */
static tp_metrics_t *metrics; /* the counters: a slot per serving process,
                                 mapped before the master forks */

/* One line to stderr, written with one call so lines never interleave. */
static void log_line(void *arg, enum tp_log_level level, const char *msg)
{
    char line[768], stamp[32];
    struct timeval tv;
    struct tm tm;
    int n;

    (void)arg;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof(line), "%s.%03ldZ [%s] %s%s\n", stamp,
                 (long)tv.tv_usec / 1000, tp_conf_log_level_name(level), proc_tag, msg);
    if (n > (int)sizeof(line) - 1)
        n = (int)sizeof(line) - 1;
    if (write(STDERR_FILENO, line, (size_t)n) < 0)
        return;   /* nowhere left to report it */
}

static void logf_(enum tp_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void logf_(enum tp_log_level level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (level > log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_line(NULL, level, msg);
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: tidepool [-c FILE] [-t | -T] [-v] [-h]\n"
            "  -c FILE  serve what FILE says (default: built-in, echo on 127.0.0.1:7000)\n"
            "  -t       check the configuration and exit (0 if it is good, 1 if not)\n"
            "  -T       as -t, then print the effective configuration (includes\n"
            "           resolved, defaults written out) to stdout\n"
            "  -v       print the version and exit\n"
            "  -h       print this help and exit\n"
            "signals: TERM/INT stop gracefully (twice: at once), USR1 reopens the\n"
            "         error_log file (for logrotate), HUP re-reads FILE and serves it\n"
            "         without dropping a connection; the counters: app metrics, and\n"
            "         the last line logged at a stop\n");
}

static int parse_args(int argc, char **argv, struct options *o)
{
    int ch;

    while ((ch = getopt(argc, argv, ":c:tTvh")) != -1) {
        switch (ch) {
        case 'c': o->conf_path = optarg; break;
        case 't': o->test_only = true; break;
        case 'T': o->test_only = o->dump = true; break;
        case 'v': printf("tidepool %s\n", TP_VERSION); exit(0);
        case 'h': usage(stdout); exit(0);
        case ':':
            fprintf(stderr, "tidepool: option -%c needs an argument\n", optopt);
            usage(stderr);
            return -1;
        default:
            fprintf(stderr, "tidepool: unknown option -%c\n", optopt);
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tidepool: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Finds each listener's app and settles its framing: an app that works
 * with some framings only gets the first of them by default, and a conf that
 * names another is an error at the `framing` line. */
static int resolve_apps(struct tp_conf *conf, const struct tp_app **apps, char *err,
                        size_t errlen)
{
    struct tp_listen_conf *l;
    unsigned want, f;
    size_t i, n;

    for (i = 0; i < conf->nlisten; i++) {
        l = &conf->listen[i];
        apps[i] = tp_apps_find(l->app);
        if (apps[i] == NULL) {
            snprintf(err, errlen, "unknown app \"%s\"", l->app);
            return -1;
        }
        if (l->chat_redis_host[0] != '\0' && strcmp(l->app, "chat") != 0) {
            fprintf(stderr, "tidepool: %s:%d: chat_redis works with app chat only "
                    "(this listener runs app %s)\n", l->file, l->chat_redis_line, l->app);
            return -1;
        }
        want = apps[i]->framings;
        if (want == 0 || (want & (1u << l->framing)))
            continue;
        if (l->framing_line > 0) {
            n = (size_t)snprintf(err, errlen, "%s:%d: framing %s does not work with app %s "
                                 "(it needs framing", l->file, l->framing_line,
                                 tp_conf_framing_name(l->framing), l->app);
            for (f = 0; f < 32; f++)
                if ((want & (1u << f)) && n < errlen)
                    n += (size_t)snprintf(err + n, errlen - n, " %s",
                                          tp_conf_framing_name((enum tp_framing)f));
            if (n < errlen)
                snprintf(err + n, errlen - n, ")");
            return -1;
        }
        for (f = 0; !(want & (1u << f)); f++)
            ;
        l->framing = (enum tp_framing)f;
    }
    return 0;
}

static int load_conf(const struct options *o, struct tp_conf *conf,
                     const struct tp_app **apps)
{
    char err[512];
    const char *name = o->conf_path ? o->conf_path : "(built-in default)";

    if (o->conf_path == NULL)
        tp_conf_init(conf);
    else if (tp_conf_load(conf, o->conf_path, tp_apps_names(), err, sizeof(err)) < 0) {
        fprintf(stderr, "tidepool: %s\n", err);
        if (o->test_only)
            fprintf(stderr, "tidepool: configuration file %s test failed\n", name);
        return -1;
    }
    if (resolve_apps(conf, apps, err, sizeof(err)) < 0) {
        fprintf(stderr, "tidepool: %s\n", err);
        if (o->test_only)
            fprintf(stderr, "tidepool: configuration file %s test failed\n", name);
        return -1;
    }
    if (o->test_only)
        fprintf(stderr, "tidepool: configuration file %s syntax is ok\n"
                        "tidepool: configuration file %s test is successful\n",
                name, name);
    if (o->dump && (tp_conf_dump(conf, stdout) < 0 || fflush(stdout) != 0)) {
        fprintf(stderr, "tidepool: writing the configuration: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* error_log FILE: the file takes the place of stderr, so whatever writes
 * there (this log, a crash report) lands in it. Called again on SIGUSR1
 * after logrotate moved the old file away. Returns 0 or -errno. */
static int open_log(const struct tp_conf *conf)
{
    int fd;

    if (conf->error_log[0] == '\0')
        return 0;
    fd = open(conf->error_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    if (fd != STDERR_FILENO && dup2(fd, STDERR_FILENO) < 0) {
        int e = errno;

        close(fd);
        return -e;
    }
    if (fd != STDERR_FILENO)
        close(fd);
    return 0;
}

struct events {
    struct tp_notify notify;
    const struct tp_conf *conf;   /* the conf served now */
    struct tp_conf *owned;        /* the same if a reload allocated it; NULL
                                     while it is main()'s (or the master's) */
    tp_server_t *srv;
    unsigned index;               /* serving process #index; 0: the only one */
    bool dropped_root;            /* `user` took effect: ports < 1024 are gone */
    int ready_fd;             /* serving process of a master: its report pipe,
                                 'r' once ready, 'h' or 'f' after each reload */
};

static struct events events;

/* user NAME: run as NAME from now on (the listeners are bound). Only root
 * can; anyone else gets a warning and runs on as they are, as with nginx.
 * A drop that fails half way is fatal: never run on as root by mistake. */
static int drop_root(const struct tp_conf *conf)
{
    struct passwd *pw;

    if (conf->user[0] == '\0')
        return 0;
    if (geteuid() != 0) {
        logf_(TP_LOG_WARN, "user %s: not running as root, staying uid %d", conf->user,
              (int)geteuid());
        return 0;
    }
    errno = 0;
    pw = getpwnam(conf->user);
    if (pw == NULL) {
        logf_(TP_LOG_ERROR, "user %s: %s", conf->user, errno ? strerror(errno) : "no such user");
        return -1;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0) {
        logf_(TP_LOG_ERROR, "user %s: cannot switch to it: %s", conf->user, strerror(errno));
        return -1;
    }
    if (pw->pw_uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
        logf_(TP_LOG_ERROR, "user %s: root could be regained; refusing to run", conf->user);
        return -1;
    }
    logf_(TP_LOG_INFO, "running as user %s (uid %d, gid %d)", conf->user, (int)pw->pw_uid,
          (int)pw->pw_gid);
    events.dropped_root = pw->pw_uid != 0;
    return 0;
}


static void reload(struct events *e);
static bool reload_conf(struct events *e);

/* What the loop reports: systemd hears of it; SIGUSR1 reopens the log;
 * SIGHUP reloads. */
static void on_server_event(void *arg, enum tp_server_event ev, const struct tp_stats *st)
{
    struct events *e = arg;
    int rc;

    if (ev == TP_SERVER_REOPEN) {
        if ((rc = open_log(e->conf)) < 0)
            logf_(TP_LOG_ERROR, "error_log %s: cannot reopen: %s (logging on to the old file)",
                  e->conf->error_log, strerror(-rc));
        else if (e->conf->error_log[0] != '\0')
            logf_(TP_LOG_INFO, "error_log %s reopened", e->conf->error_log);
        return;
    }
    if (ev == TP_SERVER_RELOAD) {
        reload(e);
        return;
    }
    if (ev == TP_SERVER_READY && e->ready_fd >= 0) {
        if (write(e->ready_fd, "r", 1) != 1)
            logf_(TP_LOG_WARN, "cannot tell the master this process serves: %s", strerror(errno));
    }
    tp_notify_event(&e->notify, ev, st);
}

/* Raises the open-file limit as far as allowed and keeps max_connections
 * within it, so the server refuses cleanly instead of failing accept(). */
static void fit_fd_limit(struct tp_conf *conf)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)conf->max_connections + RESERVED_FDS;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want) {
        uint32_t fit = rl.rlim_cur > RESERVED_FDS * 2 ? (uint32_t)(rl.rlim_cur - RESERVED_FDS) : RESERVED_FDS;

        logf_(TP_LOG_INFO, "max_connections %u is over the open-file limit "
              "(%llu); serving at most %u", conf->max_connections,
              (unsigned long long)rl.rlim_cur, fit);
        conf->max_connections = fit;
    }
}

/* ---- reload ---- */

/* Reads conf_path into a new heap conf with its apps resolved, as -t
 * would: NULL with a one-line err ("file:line: ...") if it is bad, or with
 * err "" if there is no file to read (the built-in default). */
static struct tp_conf *read_conf(const struct tp_app **apps, char *err, size_t errlen)
{
    struct tp_conf *nc;

    err[0] = '\0';
    if (conf_path == NULL)
        return NULL;
    if ((nc = malloc(sizeof(*nc))) == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (tp_conf_load(nc, conf_path, tp_apps_names(), err, errlen) < 0 ||
        resolve_apps(nc, apps, err, errlen) < 0) {
        free(nc);
        return NULL;
    }
    return nc;
}

static void value_of(const char *what, const struct tp_conf *c, char *out, size_t cap)
{
    if (strcmp(what, "processes") == 0) {
        if (c->processes < 0)
            snprintf(out, cap, "auto");
        else
            snprintf(out, cap, "%d", c->processes);
    } else if (strcmp(what, "user") == 0) {
        snprintf(out, cap, "%s", c->user[0] ? c->user : "(none)");
    } else {
        snprintf(out, cap, "%s", c->error_log[0] ? c->error_log : "stderr");
    }
}

/* One setting a reload cannot change: warn where it is written (in the new
 * conf, or where the old one had it) and say what stays. */
static void needs_restart(const char *what, const struct tp_conf *cur, const struct tp_conf *nc,
                          const struct tp_conf_place *cur_at, const struct tp_conf_place *new_at)
{
    const struct tp_conf_place *at = new_at->line > 0 ? new_at : cur_at;
    char was[TP_CONF_PATH_MAX], now[TP_CONF_PATH_MAX];

    value_of(what, cur, was, sizeof(was));
    value_of(what, nc, now, sizeof(now));
    if (at->line > 0)
        logf_(TP_LOG_WARN, "%s:%d: %s %s: a change of %s needs a restart; serving on with %s",
              at->file, at->line, what, now, what, was);
    else
        logf_(TP_LOG_WARN, "%s: %s %s: a change of %s needs a restart; serving on with %s",
              conf_path, what, now, what, was);
}

/* What a reload keeps whatever nc says: processes, user, error_log (the
 * process is started, has dropped root, has its log). Warns of each change
 * (all but processes if warn_processes is false) and puts the old values
 * back into nc. */
static void keep_restart_only(const struct tp_conf *cur, struct tp_conf *nc, bool warn)
{
    if (nc->processes != cur->processes && warn)
        needs_restart("processes", cur, nc, &cur->processes_at, &nc->processes_at);
    if (strcmp(nc->user, cur->user) != 0 && warn)
        needs_restart("user", cur, nc, &cur->user_at, &nc->user_at);
    if (strcmp(nc->error_log, cur->error_log) != 0 && warn)
        needs_restart("error_log", cur, nc, &cur->error_log_at, &nc->error_log_at);
    nc->processes = cur->processes;
    memcpy(nc->user, cur->user, sizeof(nc->user));
    memcpy(nc->error_log, cur->error_log, sizeof(nc->error_log));
}

/* Several processes share each port: a conf read with `processes 1` (a
 * change a reload does not make) may still have port 0. */
static int check_shared_ports(const struct tp_conf *cur, const struct tp_conf *nc, char *err,
                              size_t errlen)
{
    size_t i;

    if (tp_conf_processes(cur) <= 1)
        return 0;
    for (i = 0; i < nc->nlisten; i++) {
        const struct tp_listen_conf *l = &nc->listen[i];
        in_port_t port = l->addr.ss_family == AF_INET6
                             ? ((const struct sockaddr_in6 *)(const void *)&l->addr)->sin6_port
                             : ((const struct sockaddr_in *)(const void *)&l->addr)->sin_port;

        if (port == 0) {
            snprintf(err, errlen, "%s:%d: listen %s: port 0 cannot be shared by the %u "
                     "processes that serve: name a port", l->file, l->line, l->addr_text,
                     tp_conf_processes(cur));
            return -1;
        }
    }
    return 0;
}

/* SIGHUP in a serving process: read the conf again and serve it, or keep
 * the old one whole. systemd hears RELOADING=1 first and READY=1 after,
 * whatever came of it. */
static bool reload_conf(struct events *e)
{
    const struct tp_app *apps[TP_CONF_MAX_LISTEN];
    char err[512], status[640];
    struct tp_conf *nc;
    size_t i;
    int rc;

    tp_notify_reloading(&e->notify);
    logf_(TP_LOG_INFO, "got SIGHUP: reloading %s", conf_path ? conf_path : "(built-in default)");
    if ((nc = read_conf(apps, err, sizeof(err))) == NULL) {
        if (err[0] == '\0') {
            logf_(TP_LOG_WARN, "reload: started without -c, so there is no file to "
                  "read again; the built-in default serves on");
            tp_notify_reloaded(&e->notify, "reload: no conf file; built-in default kept");
            return true;
        }
        logf_(TP_LOG_ERROR, "reload failed: %s; the old configuration serves on", err);
        snprintf(status, sizeof(status), "reload failed: %s", err);
        tp_notify_reloaded(&e->notify, status);
        return false;
    }
    keep_restart_only(e->conf, nc, e->index == 0);   /* a master warns for all */
    if (check_shared_ports(e->conf, nc, err, sizeof(err)) < 0) {
        logf_(TP_LOG_ERROR, "reload failed: %s; the old configuration serves on", err);
        snprintf(status, sizeof(status), "reload failed: %s", err);
        tp_notify_reloaded(&e->notify, status);
        free(nc);
        return false;
    }
    if (e->index > 0)
        for (i = 0; i < nc->nlisten; i++)
            nc->listen[i].reuseport = true;
    fit_fd_limit(nc);
    rc = tp_server_reload(e->srv, nc, apps, err, sizeof(err));
    if (rc < 0) {
        if (rc == -EACCES && e->dropped_root)
            logf_(TP_LOG_ERROR, "reload failed: %s: the server runs as user %s and can no "
                  "longer bind a privileged port (that needs a restart); the old "
                  "configuration serves on", err, e->conf->user);
        else
            logf_(TP_LOG_ERROR, "reload failed: %s; the old configuration serves on", err);
        snprintf(status, sizeof(status), "reload failed: %s", err);
        tp_notify_reloaded(&e->notify, status);
        free(nc);
        return false;
    }
    free(e->owned);
    e->conf = e->owned = nc;
    log_level = nc->log_level;
    logf_(TP_LOG_INFO, "reload: done; serving %s (%zu listeners, %u workers)", conf_path,
          nc->nlisten, tp_conf_workers(nc));
    snprintf(status, sizeof(status), "serving, reloaded %s", conf_path);
    tp_notify_reloaded(&e->notify, status);
    return true;
}

/* The reload, then (under a master) its outcome on the report pipe: the
 * master says READY=1 once every process has. */
static void reload(struct events *e)
{
    bool took = reload_conf(e);

    if (e->ready_fd >= 0 && write(e->ready_fd, took ? "h" : "f", 1) != 1)
        logf_(TP_LOG_WARN, "cannot tell the master this reload is done: %s", strerror(errno));
}


/* The master's half of a reload (tp_reload_conf_fn): the new conf, checked
 * as -t would, with what needs a restart warned of and kept as it is. */
static struct tp_conf *master_read_conf(const struct tp_conf *cur, char *err, size_t errlen)
{
    const struct tp_app *apps[TP_CONF_MAX_LISTEN];
    struct tp_conf *nc = read_conf(apps, err, errlen);

    if (nc == NULL)
        return NULL;
    keep_restart_only(cur, nc, true);
    if (check_shared_ports(cur, nc, err, errlen) < 0) {
        free(nc);
        return NULL;
    }
    fit_fd_limit(nc);
    return nc;
}

/* Signals arrive through a signalfd the reactor reads; block them first so
 * every thread started later inherits the mask. */
static int signals_fd(void)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* One serving process: binds, drops root, runs the loop. index is 0 for
 * the only process, 1..N under a master (then ready_fd hears of READY). */
static int serve(struct tp_conf *conf, unsigned index, int ready_fd)
{
    const struct tp_app *apps[TP_CONF_MAX_LISTEN];
    struct tp_server_opts opts = { .apps = apps, .log = log_line,
                                   .event = on_server_event, .event_arg = &events };
    char err[512];
    tp_server_t *srv;
    size_t i;
    int rc;

    if (index > 0) {
        snprintf(proc_tag, sizeof(proc_tag), "#%u ", index);
        for (i = 0; i < conf->nlisten; i++)
            conf->listen[i].reuseport = true;   /* the processes share each port */
    }
    if (resolve_apps(conf, apps, err, sizeof(err)) < 0) {
        logf_(TP_LOG_ERROR, "%s", err);
        return 1;
    }
    events.conf = conf;
    events.index = index;
    events.ready_fd = ready_fd;
    opts.tick_ms = tp_notify_init(&events.notify, log_line, NULL);
    if ((opts.metrics = metrics) != NULL && tp_metrics_claim(metrics, index > 0 ? index - 1 : 0) == NULL) {
        logf_(TP_LOG_ERROR, "no counter slot for process #%u", index);
        return 1;
    }
    opts.signal_fd = signals_fd();
    if (opts.signal_fd < 0) {
        logf_(TP_LOG_ERROR, "signalfd: %s", strerror(errno));
        return 1;
    }
    srv = tp_server_create(conf, &opts, err, sizeof(err));
    if (srv == NULL) {
        logf_(TP_LOG_ERROR, "%s", err);
        return 1;
    }
    if (drop_root(conf) < 0) {
        tp_server_destroy(srv);
        return 1;
    }
    logf_(TP_LOG_INFO, "tidepool %s started (pid %d, %u workers, max_connections %u)",
          TP_VERSION, (int)getpid(), tp_conf_workers(conf), conf->max_connections);
    events.srv = srv;
    rc = tp_server_run(srv);
    events.srv = NULL;
    tp_server_destroy(srv);
    free(events.owned);
    events.owned = NULL;
    close(opts.signal_fd);
    if (rc < 0) {
        logf_(TP_LOG_ERROR, "event loop failed: %s", strerror(-rc));
        return 1;
    }
    logf_(TP_LOG_INFO, "stopped");
    return 0;
}

int main(int argc, char **argv)
{
    static struct tp_conf conf;
    const struct tp_app *apps[TP_CONF_MAX_LISTEN];
    struct options o = { 0 };
    unsigned nprocs;
    int rc;

    if (parse_args(argc, argv, &o) < 0)
        return 2;
    conf_path = o.conf_path;
    if (load_conf(&o, &conf, apps) < 0)
        return 1;
    if (o.test_only)
        return 0;
    log_level = conf.log_level;
    if ((rc = open_log(&conf)) < 0) {
        fprintf(stderr, "tidepool: error_log %s: %s\n", conf.error_log, strerror(-rc));
        return 1;
    }
    fit_fd_limit(&conf);
    nprocs = tp_conf_processes(&conf);
    if ((metrics = tp_metrics_create(nprocs > 1 ? nprocs : 1)) == NULL) {
        fprintf(stderr, "tidepool: cannot map the counters: %s\n", strerror(errno));
        return 1;
    }
    if (nprocs <= 1)
        return serve(&conf, 0, -1);
    events.conf = &conf;
    tp_notify_init(&events.notify, log_line, NULL);
    return tp_master_run(&conf, nprocs, serve, master_read_conf, &events.notify, log_line,
                         metrics);
}
