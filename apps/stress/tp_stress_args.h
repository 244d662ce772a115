/* tp_stress_args.h - the stress tool's command line: options, defaults, checks. */
#ifndef TP_STRESS_ARGS_H
#define TP_STRESS_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tp_stress_addr.h"

enum tp_stress_mode {
    TP_STRESS_ECHO,    /* send, read the reply, verify, repeat */
    TP_STRESS_HOLD,    /* open connections and keep them idle */
    TP_STRESS_STORM,   /* connect, one message, reply, close, repeat */
    TP_STRESS_SLOW,    /* send as fast as the socket takes, never read */
    TP_STRESS_FLOOD,   /* send as fast as the socket takes, read and verify
                          the echo as it comes, never wait for it */
    TP_STRESS_CHAT,    /* members of one room: senders' lines fan out to all */
};

enum tp_stress_proto {
    TP_STRESS_PROTO_LINE,  /* chat: lines to the server, lines back */
    TP_STRESS_PROTO_RESP,  /* chat: Redis pub/sub, SUBSCRIBE and PUBLISH */
};

enum tp_stress_action {
    TP_STRESS_RUN,
    TP_STRESS_HELP,      /* -h: print tp_stress_args_usage() */
    TP_STRESS_VERSION,   /* --version */
};

/* Plain struct: filled by tp_stress_args_parse, read by the engine. */
struct tp_stress_opts {
    enum tp_stress_action action;
    enum tp_stress_mode mode;
    uint32_t conns;           /* -c, >= 1 */
    uint32_t threads;         /* -t, 1..conns */
    uint32_t size;            /* -s, bytes per message with its '\n' */
    uint32_t depth;           /* -p, messages in flight per connection */
    uint64_t duration_ns;     /* -d */
    uint64_t messages;        /* -n, 0: no limit */
    uint64_t timeout_ns;      /* --timeout */
    uint64_t window;          /* --window, flood: bytes sent and not yet back, at most */
    uint64_t probe_ns;        /* --probe, 0: no probe */
    double rate;              /* -r, messages/s over all connections; 0: unpaced */
    double ramp;              /* --ramp, new connections/s; 0: at once */
    bool verify;              /* --verify */
    bool quiet;               /* -q */
    bool has_src;             /* --src given */
    bool has_window;          /* --window given */
    bool reconnect;           /* --reconnect: replace a connection that ends */
    uint32_t senders;         /* --senders, chat: members (line) or publishers
                                 (resp) that send */
    enum tp_stress_proto proto;  /* --proto, chat */
    const char *channel;      /* --channel, chat resp */
    bool skip_foreign;        /* --foreign skip, chat */
    bool has_chat_opts;       /* --senders, --proto, --channel or --foreign given */
    const char *json_path;    /* --json, NULL: none */
    uint64_t interval_ns;     /* --interval, 0: no time series */
    const char *csv_path;     /* --csv (needs --interval), NULL: none */
    const char *hgrm_path;    /* --hgrm, NULL: none */
    struct tp_stress_src src;
    struct tp_stress_target target;
};

/* Sets the defaults, then parses argv (getopt_long; argv may be permuted).
 * Returns 0 (o->action says whether to run or print help/version), or
 * -EINVAL with a one-line message in err that names the bad option and what
 * it expects. Main thread only (getopt state). */
int tp_stress_args_parse(struct tp_stress_opts *o, int argc, char **argv,
                         char *err, size_t errlen);

/* "echo", "hold", "storm", "slow", "flood" or "chat". */
const char *tp_stress_mode_name(enum tp_stress_mode mode);

/* The -h text. */
const char *tp_stress_args_usage(void);

#endif /* TP_STRESS_ARGS_H */
