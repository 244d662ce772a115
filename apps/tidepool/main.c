/* main.c - the tidepool binary: options, conf, signals, logging, run. */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
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
#include "tp_notify.h"
#include "tp_reactor.h"

#define RESERVED_FDS 96   /* listeners, epoll, eventfds, stdio, logs, and
                             refused connections lingering (at most 64) */

struct options {
    const char *conf_path;   /* NULL: the built-in default */
    bool test_only;
};

static enum tp_log_level log_level = TP_LOG_INFO;

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
    n = snprintf(line, sizeof(line), "%s.%03ldZ [%s] %s\n", stamp,
                 (long)tv.tv_usec / 1000, tp_conf_log_level_name(level), msg);
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
            "usage: tidepool [-c FILE] [-t] [-v] [-h]\n"
            "  -c FILE  serve what FILE says (default: built-in, echo on 127.0.0.1:7000)\n"
            "  -t       check the configuration and exit (0 if it is good, 1 if not)\n"
            "  -v       print the version and exit\n"
            "  -h       print this help and exit\n"
            "signals: TERM/INT stop gracefully (twice: at once), USR1 logs counters,\n"
            "         HUP is logged (reload is not supported yet)\n");
}

static int parse_args(int argc, char **argv, struct options *o)
{
    int ch;

    while ((ch = getopt(argc, argv, ":c:tvh")) != -1) {
        switch (ch) {
        case 'c': o->conf_path = optarg; break;
        case 't': o->test_only = true; break;
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

static int load_conf(const struct options *o, struct tp_conf *conf)
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
    if (o->test_only)
        fprintf(stderr, "tidepool: configuration file %s syntax is ok\n"
                        "tidepool: configuration file %s test is successful\n",
                name, name);
    return 0;
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

static int resolve_apps(const struct tp_conf *conf, const struct tp_app **apps)
{
    size_t i;

    for (i = 0; i < conf->nlisten; i++) {
        apps[i] = tp_apps_find(conf->listen[i].app);
        if (apps[i] == NULL) {
            fprintf(stderr, "tidepool: unknown app \"%s\"\n", conf->listen[i].app);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct tp_conf conf;
    const struct tp_app *apps[TP_CONF_MAX_LISTEN];
    static struct tp_notify notify;
    struct tp_server_opts opts = { .apps = apps, .log = log_line,
                                   .event = tp_notify_event, .event_arg = &notify };
    struct options o = { 0 };
    char err[512];
    tp_server_t *srv;
    int rc;

    if (parse_args(argc, argv, &o) < 0)
        return 2;
    if (load_conf(&o, &conf) < 0)
        return 1;
    if (o.test_only)
        return 0;
    log_level = conf.log_level;
    if (resolve_apps(&conf, apps) < 0)
        return 1;
    fit_fd_limit(&conf);
    opts.tick_ms = tp_notify_init(&notify, log_line, NULL);
    opts.signal_fd = signals_fd();
    if (opts.signal_fd < 0) {
        fprintf(stderr, "tidepool: signalfd: %s\n", strerror(errno));
        return 1;
    }
    srv = tp_server_create(&conf, &opts, err, sizeof(err));
    if (srv == NULL) {
        logf_(TP_LOG_ERROR, "%s", err);
        return 1;
    }
    logf_(TP_LOG_INFO, "tidepool %s started (pid %d, %u workers, max_connections %u)",
          TP_VERSION, (int)getpid(), tp_conf_workers(&conf), conf.max_connections);
    rc = tp_server_run(srv);
    tp_server_destroy(srv);
    close(opts.signal_fd);
    if (rc < 0) {
        logf_(TP_LOG_ERROR, "event loop failed: %s", strerror(-rc));
        return 1;
    }
    logf_(TP_LOG_INFO, "stopped");
    return 0;
}
