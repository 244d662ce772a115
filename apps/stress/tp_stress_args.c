/* tp_stress_args.c - parse and check the stress tool's command line. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_conf.h"
#include "tp_stress_args.h"
#include "tp_stress_line.h"
#include "tp_stress_msg.h"

#define MAX_CONNS 10000000u
#define MAX_THREADS 1024u
#define MAX_DEPTH 65536u
#define MAX_INFLIGHT_BYTES (64u << 20)     /* depth * size per connection */
#define MAX_WINDOW (UINT64_C(1) << 30)
#define DEFAULT_WINDOW (UINT64_C(4) << 20)
#define NS_PER_S 1000000000.0
#define MAX_CHANNEL 256u
#define MAX_PAIRS (UINT64_C(16) << 20)    /* chat: members * senders order records */
#define TIME_TEXT "a time > 0 such as 500ms, 30s, 1m30s"

enum {
    OPT_MODE = 256, OPT_RAMP, OPT_SRC, OPT_VERIFY, OPT_TIMEOUT, OPT_JSON, OPT_VERSION,
    OPT_WINDOW, OPT_PROBE, OPT_SENDERS, OPT_PROTO, OPT_CHANNEL, OPT_FOREIGN, OPT_RECONNECT,
    OPT_INTERVAL, OPT_CSV, OPT_HGRM,
};

static const struct option long_opts[] = {
    { "connections", required_argument, NULL, 'c' },
    { "threads",     required_argument, NULL, 't' },
    { "duration",    required_argument, NULL, 'd' },
    { "messages",    required_argument, NULL, 'n' },
    { "size",        required_argument, NULL, 's' },
    { "depth",       required_argument, NULL, 'p' },
    { "rate",        required_argument, NULL, 'r' },
    { "quiet",       no_argument,       NULL, 'q' },
    { "help",        no_argument,       NULL, 'h' },
    { "mode",        required_argument, NULL, OPT_MODE },
    { "ramp",        required_argument, NULL, OPT_RAMP },
    { "src",         required_argument, NULL, OPT_SRC },
    { "verify",      required_argument, NULL, OPT_VERIFY },
    { "timeout",     required_argument, NULL, OPT_TIMEOUT },
    { "json",        required_argument, NULL, OPT_JSON },
    { "version",     no_argument,       NULL, OPT_VERSION },
    { "window",      required_argument, NULL, OPT_WINDOW },
    { "probe",       required_argument, NULL, OPT_PROBE },
    { "senders",     required_argument, NULL, OPT_SENDERS },
    { "proto",       required_argument, NULL, OPT_PROTO },
    { "channel",     required_argument, NULL, OPT_CHANNEL },
    { "foreign",     required_argument, NULL, OPT_FOREIGN },
    { "reconnect",   no_argument,       NULL, OPT_RECONNECT },
    { "interval",    required_argument, NULL, OPT_INTERVAL },
    { "csv",         required_argument, NULL, OPT_CSV },
    { "hgrm",        required_argument, NULL, OPT_HGRM },
    { NULL, 0, NULL, 0 },
};

static const char *mode_names[] = { "echo", "hold", "storm", "slow", "flood", "chat" };
#define NMODES (sizeof(mode_names) / sizeof(mode_names[0]))

const char *tp_stress_mode_name(enum tp_stress_mode mode)
{
    return (unsigned)mode < NMODES ? mode_names[mode] : "?";
}

const char *tp_stress_args_usage(void)
{
    return
"usage: tidepool-stress [options] HOST:PORT     (127.0.0.1:7000, [::1]:7000, localhost:7000)\n"
"       tidepool-stress plot RUN.json [RUN.json ...] -o FILE.svg|FILE.png\n"
"       tidepool-stress compare A.json [A2.json ...] [--] B.json [B2.json ...]\n"
"  --mode MODE     echo (default): send, read each reply back and check it\n"
"                  hold: open the connections and keep them idle\n"
"                  storm: each slot loops connect, one message, reply, close\n"
"                  slow: send as fast as the socket takes and never read\n"
"                  flood: send -s lines as fast as the socket takes, never waiting\n"
"                  for replies; read what comes back and check it byte for byte\n"
"                  (latency is not measured; -p, -r do not apply; -n counts lines)\n"
"                  chat: -c members of one chat room, --senders of them send\n"
"                  -s lines that name sender, sequence number and send time;\n"
"                  every member checks it got every other member's lines, in\n"
"                  order, once, and none of its own (see CHAT below)\n"
"  -c CONNS        connections (storm: parallel slots), default 10\n"
"  -t THREADS      threads, each with its own epoll and share of the connections, default 1\n"
"  -d TIME         how long to run (default 10s)\n"
"  -n MESSAGES     stop after this many replies in all (whichever of -d/-n comes first)\n"
"  -s SIZE         bytes per message including the '\\n', >= 2 (default 64; 1k, 1m)\n"
"  -p DEPTH        messages in flight per connection, default 1\n"
"  -r RATE         messages/s over all connections, evenly paced; latency is\n"
"                  measured from each message's intended send time (0: unpaced)\n"
"  --ramp RATE     new connections per second (0, default: as fast as possible)\n"
"  --window SIZE   flood: a connection stops sending while this many bytes it\n"
"                  sent have not come back, and resumes as they do (default 4m)\n"
"  --probe TIME    also, every TIME, open a new connection, send one -s message,\n"
"                  wait for it back and close: p50/p90/p99/max of connect to reply\n"
"                  (a probe over --timeout is an error)\n"
"  --senders S     chat: how many send, default 1 (line: S of the -c members;\n"
"                  resp: S publisher connections beside the -c subscribers)\n"
"  --proto P       chat: line (default; a tidepool `app chat` room) or resp\n"
"                  (Redis pub/sub: members SUBSCRIBE, senders PUBLISH)\n"
"  --channel NAME  chat, resp: the channel (default tidepool)\n"
"  --foreign F     chat: error (default) or skip: a line that does not start\n"
"                  with the tool's mark is not an error; text before the mark\n"
"                  (chat_prefix's \"ADDR:PORT: \") is dropped, a line without\n"
"                  it (join_notice) is counted as foreign and ignored\n"
"  --src A-B       bind connections round-robin to the IPv4 addresses A..B\n"
"  --verify on|off compare every reply byte with what was sent (default on)\n"
"  --timeout TIME  a reply or connect slower than this is an error (default 10s)\n"
"  --reconnect     echo, hold: a connection that ends (closed by the server,\n"
"                  reset, timed out, refused) is replaced by a new one at once,\n"
"                  then with back-off 10 ms..1 s while it keeps failing; errors\n"
"                  are still counted, but a close by the server at a message\n"
"                  boundary is not an error: it is counted as closed_by_server,\n"
"                  with the messages it left unanswered (lost_at_close)\n"
"  --json FILE     also write the results to FILE as JSON (with --interval,\n"
"                  the series; always the latency distribution)\n"
"  --interval TIME record each TIME: messages/s, MB/s, open connections, errors\n"
"                  by kind and latency p50/p90/p99/p99.9/max of that interval\n"
"                  alone (default off; the progress line shows the last one)\n"
"  --csv FILE      with --interval: one row per interval to FILE, header first\n"
"  --hgrm FILE     the whole run's latency distribution to FILE in HdrHistogram's\n"
"                  percentile format (as wrk2 --latency: milliseconds), which\n"
"                  the HdrHistogram plotter reads\n"
"  -q              no progress line (it is also off when stdout is not a terminal)\n"
"  -h, --help      print this help;  --version  print the version\n"
"TIME: whole numbers with ms, s, m, h or d, as in 500ms, 30s, 1m30s; a bare number\n"
"is seconds; at most 2^32 - 1 ms (49.7 days)\n"
"ok needs a connection opened, every error count of the report at 0, and\n"
"  echo: a reply, and an answer to every message sent but those in flight at the end\n"
"  (and, with --reconnect, those lost at a server's close)\n"
"  hold: every requested connection opened and still open at the end\n"
"  storm: a cycle completed;  slow: a whole message sent\n"
"  flood: echoed bytes came back (mismatches are errors)\n"
"  --probe: a probe completed (its errors count too)\n"
"  chat: lines were sent and delivered; missing, duplicate, out_of_order and\n"
"  own_echo lines are errors\n"
"CHAT: members connect, then confirm they are in the room (line: members 0\n"
"and 1 send a join line every 100 ms and every member waits for the other's;\n"
"resp: the SUBSCRIBE confirmation), all within --timeout (a member that did\n"
"not is a timeout error); only then do senders\n"
"start. -r is lines/s over all senders, -p lines in flight per sender (sent\n"
"and not yet delivered to every member), -n lines in all, -s >= 38. After -d\n"
"(or -n, or SIGINT) senders stop and the lines in flight drain, each waited\n"
"for at most --timeout; then every member still open counts what it never\n"
"got. A delivery is a line one member received: line mode, each line goes\n"
"to the -c - 1 other members; resp, to all -c subscribers (publishers are\n"
"extra connections: Redis does not let a subscribed connection publish).\n"
"Latency is from a line's send (or, with -r, intended send) time to each\n"
"delivery; duration is from the release of the senders to the end of the drain.\n"
"PLOT draws, with gnuplot, throughput and p99 over time (runs made with\n"
"--interval) and the latency distribution on a log percentile axis (90%, 99%,\n"
"99.9%, ...), one line per run; the file name's .svg or .png picks the format.\n"
"COMPARE prints each figure of run A beside run B with the ratio B/A; with\n"
"several runs a side, their medians and spreads (min..max), and marks with *\n"
"a figure whose spreads do not overlap (a difference beyond run-to-run noise).\n"
"exit status: 0 ok, 1 not ok (why: on stderr and as \"why\" in --json), 2 usage\n"
"error. SIGINT stops early and still reports. plot and compare: 0, or 2 on bad\n"
"input.\n";
}

/* A time in the conf's grammar (tp_conf_parse_time), > 0, in ns. */
static int parse_time(const char *text, uint64_t *ns)
{
    uint32_t ms;

    if (tp_conf_parse_time(text, &ms) < 0 || ms == 0)
        return -EINVAL;
    *ns = (uint64_t)ms * 1000000;
    return 0;
}

/* A whole number in [min, max], with k/m/g (powers of 1024) if sizes. */
static int parse_count(const char *text, uint64_t min, uint64_t max, bool sizes, uint64_t *out)
{
    unsigned long long v;
    char *end;
    int shift = 0;

    if (text[0] < '0' || text[0] > '9')
        return -EINVAL;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0)
        return -EINVAL;
    if (sizes && end[0] != '\0' && end[1] == '\0') {
        switch (end[0]) {
        case 'k': case 'K': shift = 10; end++; break;
        case 'm': case 'M': shift = 20; end++; break;
        case 'g': case 'G': shift = 30; end++; break;
        }
    }
    if (*end != '\0' || v > (max >> shift))
        return -EINVAL;
    v <<= shift;
    if (v < min)
        return -EINVAL;
    *out = v;
    return 0;
}

/* A finite number >= 0 (rates). */
static int parse_rate(const char *text, double *out)
{
    char *end;
    double v;

    if (text[0] < '0' || text[0] > '9')
        return -EINVAL;
    errno = 0;
    v = strtod(text, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < 0 || v > 1e12)
        return -EINVAL;
    *out = v;
    return 0;
}

static void set_defaults(struct tp_stress_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->action = TP_STRESS_RUN;
    o->mode = TP_STRESS_ECHO;
    o->conns = 10;
    o->threads = 1;
    o->size = 64;
    o->depth = 1;
    o->duration_ns = 10 * (uint64_t)NS_PER_S;
    o->timeout_ns = 10 * (uint64_t)NS_PER_S;
    o->window = DEFAULT_WINDOW;
    o->verify = true;
    o->senders = 1;
    o->proto = TP_STRESS_PROTO_LINE;
    o->channel = "tidepool";
}

#define BAD(...) do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)

/* Applies one option; 0 or -EINVAL with err set. */
static int apply(struct tp_stress_opts *o, int ch, const char *arg, char *err, size_t errlen)
{
    uint64_t v;
    size_t m;

    switch (ch) {
    case 'c':
        if (parse_count(arg, 1, MAX_CONNS, false, &v) < 0)
            BAD("-c \"%s\": expected a number of connections, 1..%u", arg, MAX_CONNS);
        o->conns = (uint32_t)v;
        return 0;
    case 't':
        if (parse_count(arg, 1, MAX_THREADS, false, &v) < 0)
            BAD("-t \"%s\": expected a number of threads, 1..%u", arg, MAX_THREADS);
        o->threads = (uint32_t)v;
        return 0;
    case 'd':
        if (parse_time(arg, &o->duration_ns) < 0)
            BAD("-d \"%s\": expected " TIME_TEXT, arg);
        return 0;
    case 'n':
        if (parse_count(arg, 1, UINT64_C(1) << 62, false, &o->messages) < 0)
            BAD("-n \"%s\": expected a number of messages >= 1", arg);
        return 0;
    case 's':
        if (parse_count(arg, TP_STRESS_MSG_MIN, TP_STRESS_MSG_MAX, true, &v) < 0)
            BAD("-s \"%s\": expected a message size in bytes including the '\\n', "
                "%u..%u (k, m allowed)", arg, TP_STRESS_MSG_MIN, TP_STRESS_MSG_MAX);
        o->size = (uint32_t)v;
        return 0;
    case 'p':
        if (parse_count(arg, 1, MAX_DEPTH, false, &v) < 0)
            BAD("-p \"%s\": expected messages in flight per connection, 1..%u",
                arg, MAX_DEPTH);
        o->depth = (uint32_t)v;
        return 0;
    case 'r':
        if (parse_rate(arg, &o->rate) < 0)
            BAD("-r \"%s\": expected messages per second >= 0 (0: unpaced)", arg);
        return 0;
    case 'q':
        o->quiet = true;
        return 0;
    case 'h':
        o->action = TP_STRESS_HELP;
        return 0;
    case OPT_VERSION:
        o->action = TP_STRESS_VERSION;
        return 0;
    case OPT_MODE:
        for (m = 0; m < NMODES; m++)
            if (strcmp(arg, mode_names[m]) == 0)
                break;
        if (m == NMODES)
            BAD("--mode \"%s\": expected echo, hold, storm, slow, flood or chat", arg);
        o->mode = (enum tp_stress_mode)m;
        return 0;
    case OPT_RAMP:
        if (parse_rate(arg, &o->ramp) < 0)
            BAD("--ramp \"%s\": expected new connections per second >= 0", arg);
        return 0;
    case OPT_SRC:
        o->has_src = true;
        return tp_stress_src_parse(&o->src, arg, err, errlen);
    case OPT_VERIFY:
        if (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0)
            BAD("--verify \"%s\": expected on or off", arg);
        o->verify = strcmp(arg, "on") == 0;
        return 0;
    case OPT_TIMEOUT:
        if (parse_time(arg, &o->timeout_ns) < 0)
            BAD("--timeout \"%s\": expected " TIME_TEXT, arg);
        return 0;
    case OPT_WINDOW:
        if (parse_count(arg, 1, MAX_WINDOW, true, &o->window) < 0)
            BAD("--window \"%s\": expected bytes sent and not yet back per connection, "
                "1..1g (k, m, g allowed)", arg);
        o->has_window = true;
        return 0;
    case OPT_PROBE:
        if (parse_time(arg, &o->probe_ns) < 0)
            BAD("--probe \"%s\": expected " TIME_TEXT, arg);
        return 0;
    case OPT_SENDERS:
        if (parse_count(arg, 1, TP_STRESS_LINE_MAX_ID + 1, false, &v) < 0)
            BAD("--senders \"%s\": expected a number of senders, 1..%u", arg,
                TP_STRESS_LINE_MAX_ID + 1);
        o->senders = (uint32_t)v;
        o->has_chat_opts = true;
        return 0;
    case OPT_PROTO:
        if (strcmp(arg, "line") != 0 && strcmp(arg, "resp") != 0)
            BAD("--proto \"%s\": expected line or resp", arg);
        o->proto = strcmp(arg, "resp") == 0 ? TP_STRESS_PROTO_RESP : TP_STRESS_PROTO_LINE;
        o->has_chat_opts = true;
        return 0;
    case OPT_CHANNEL:
        if (arg[0] == '\0' || strlen(arg) > MAX_CHANNEL)
            BAD("--channel \"%s\": expected a channel name of 1..%u bytes", arg, MAX_CHANNEL);
        o->channel = arg;
        o->has_chat_opts = true;
        return 0;
    case OPT_FOREIGN:
        if (strcmp(arg, "error") != 0 && strcmp(arg, "skip") != 0)
            BAD("--foreign \"%s\": expected error or skip", arg);
        o->skip_foreign = strcmp(arg, "skip") == 0;
        o->has_chat_opts = true;
        return 0;
    case OPT_RECONNECT:
        o->reconnect = true;
        return 0;
    case OPT_JSON:
        if (arg[0] == '\0')
            BAD("--json: expected a file name");
        o->json_path = arg;
        return 0;
    case OPT_INTERVAL:
        if (parse_time(arg, &o->interval_ns) < 0)
            BAD("--interval \"%s\": expected " TIME_TEXT, arg);
        return 0;
    case OPT_CSV:
        if (arg[0] == '\0')
            BAD("--csv: expected a file name");
        o->csv_path = arg;
        return 0;
    case OPT_HGRM:
        if (arg[0] == '\0')
            BAD("--hgrm: expected a file name");
        o->hgrm_path = arg;
        return 0;
    }
    BAD("internal error: option %d", ch);
}

/* The rules of --mode chat: 0 or -EINVAL. */
static int check_chat(const struct tp_stress_opts *o, char *err, size_t errlen)
{
    if (o->size < TP_STRESS_LINE_MIN)
        BAD("-s %u: chat lines carry sender, sequence and time: expected at least %u",
            o->size, TP_STRESS_LINE_MIN);
    if (o->conns > TP_STRESS_LINE_MAX_ID + 1)
        BAD("-c %u: expected at most %u chat members", o->conns, TP_STRESS_LINE_MAX_ID + 1);
    if (o->proto == TP_STRESS_PROTO_LINE && o->conns < 2)
        BAD("-c %u: a line chat room needs 2 members or more (a line goes to the others)",
            o->conns);
    if (o->proto == TP_STRESS_PROTO_LINE && o->senders > o->conns)
        BAD("--senders %u: expected at most the -c %u members (line senders are members)",
            o->senders, o->conns);
    if ((uint64_t)o->senders * o->conns > MAX_PAIRS)
        BAD("--senders %u with -c %u: expected at most %llu member-sender pairs",
            o->senders, o->conns, (unsigned long long)MAX_PAIRS);
    if (o->probe_ns > 0)
        BAD("--probe: not with --mode chat (the probe's line would go to the room)");
    return 0;
}

/* Checks that need every option: 0 or -EINVAL. */
static int check_all(struct tp_stress_opts *o, char *err, size_t errlen)
{
    if (o->threads > o->conns)
        BAD("-t %u: expected at most as many threads as connections (-c %u)",
            o->threads, o->conns);
    if ((uint64_t)o->depth * o->size > MAX_INFLIGHT_BYTES)
        BAD("-p %u with -s %u: expected at most %u bytes in flight per connection",
            o->depth, o->size, MAX_INFLIGHT_BYTES);
    if (o->has_window && o->mode != TP_STRESS_FLOOD)
        BAD("--window: only with --mode flood (the other modes bound what is in "
            "flight with -p)");
    if (o->rate > 0 && o->mode == TP_STRESS_FLOOD)
        BAD("-r: not with --mode flood, which sends as fast as the socket takes");
    if (o->reconnect && o->mode != TP_STRESS_ECHO && o->mode != TP_STRESS_HOLD)
        BAD("--reconnect: only with --mode echo or hold (storm always connects anew)");
    if (o->has_chat_opts && o->mode != TP_STRESS_CHAT)
        BAD("--senders, --proto, --channel, --foreign: only with --mode chat");
    if (o->mode == TP_STRESS_CHAT && check_chat(o, err, errlen) < 0)
        return -EINVAL;
    if (o->csv_path != NULL && o->interval_ns == 0)
        BAD("--csv: needs --interval (a row per interval)");
    if (o->has_src && o->target.addr[0].ss_family != AF_INET)
        BAD("--src: the range is IPv4 but %s is not an IPv4 address", o->target.text);
    return 0;
}

static int parse(struct tp_stress_opts *o, int argc, char **argv, char *err, size_t errlen)
{
    int ch;

    set_defaults(o);
    optind = 0;    /* glibc: start over, even after an earlier parse */
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":c:t:d:n:s:p:r:qh", long_opts, NULL)) != -1) {
        if (ch == ':') {
            if (optopt > 0 && optopt < OPT_MODE)
                BAD("-%c: expected a value after it", optopt);
            BAD("%s: expected a value after it", argv[optind - 1]);
        }
        if (ch == '?') {
            if (optopt > 0 && optopt < OPT_MODE)
                BAD("unknown option -%c", optopt);
            BAD("unknown option %s", argv[optind - 1]);
        }
        if (apply(o, ch, optarg, err, errlen) < 0)
            return -EINVAL;
    }
    if (o->action != TP_STRESS_RUN)
        return 0;
    if (optind >= argc)
        BAD("missing HOST:PORT (the server to stress, e.g. 127.0.0.1:7000)");
    if (optind + 1 < argc)
        BAD("unexpected argument \"%s\" after HOST:PORT", argv[optind + 1]);
    if (tp_stress_target_parse(&o->target, argv[optind], err, errlen) < 0)
        return -EINVAL;
    return check_all(o, err, errlen);
}

/* The error is one line whatever the arguments held: control bytes in a
 * quoted argument become '?'. */
static int one_line(int rc, char *err)
{
    for (; *err != '\0'; err++)
        if ((unsigned char)*err < 0x20 || *err == 0x7f)
            *err = '?';
    return rc;
}

int tp_stress_args_parse(struct tp_stress_opts *o, int argc, char **argv,
                         char *err, size_t errlen)
{
    int rc = parse(o, argc, argv, err, errlen);

    return rc < 0 ? one_line(rc, err) : rc;
}
