/* tp_conf.h - the conf file: an nginx-style tokenizer and directive table.
 *
 * tp_conf_init() fills in the built-in default (one echo listener on
 * 127.0.0.1:7000); tp_conf_load() replaces it with what a file says.
 * Nothing here prints: errors come back as "file:line: what" text. */
#ifndef TP_CONF_H
#define TP_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define TP_CONF_MAX_LISTEN 64
#define TP_CONF_NAME_MAX 32
#define TP_CONF_PATH_MAX 256
#define TP_CONF_HTTP_BODY_MAX 4096
#define TP_CONF_CHANNEL_MAX 128
#define TP_CONF_SHUTDOWN_MESSAGE_MAX 512

enum tp_framing { TP_FRAMING_LINE, TP_FRAMING_LENGTH, TP_FRAMING_RAW, TP_FRAMING_HTTP };
enum tp_log_level { TP_LOG_ERROR, TP_LOG_WARN, TP_LOG_INFO, TP_LOG_DEBUG };

#define TP_CONF_MAX_ACL 64

/* One `allow` or `deny` rule: peers whose first `prefix` bits are addr's. */
struct tp_acl_rule {
    bool allow;
    bool all;                         /* "all": every peer, either family */
    uint8_t family;                   /* AF_INET or AF_INET6 */
    uint8_t prefix;                   /* 0..32 or 0..128 */
    uint8_t addr[16];                 /* network order; bits past prefix are 0 */
};

/* One `listen ADDR:PORT { ... }` block. Times are in milliseconds, 0 = off. */
struct tp_listen_conf {
    char addr_text[64];               /* as written: "127.0.0.1:7000", "[::1]:7000" */
    struct sockaddr_storage addr;     /* parsed, port in network order */
    socklen_t addrlen;
    char app[TP_CONF_NAME_MAX];       /* default "echo" */
    enum tp_framing framing;          /* default line (the app's own, if it has one) */
    int framing_line;                 /* line of the `framing` directive; 0 if not given */
    uint32_t max_message;             /* bytes of one message's payload; default 64k */
    uint32_t idle_timeout_ms;         /* default 5m */
    uint32_t read_timeout_ms;         /* partial message held this long closes; default 60s */
    uint64_t send_buffer_max;         /* unsent reply bytes before reading pauses; default 1m */
    uint32_t lingering_timeout_ms;    /* a close the server starts waits this long at most
                                         for the peer to take its replies; default 5s */
    uint64_t lingering_max;           /* input read and dropped meanwhile, at most
                                         (then left unread); default 64m */
    int backlog;                      /* listen(2) backlog; default 4096 */
    bool reuseport;                   /* default off */
    bool tcp_nodelay;                 /* default on */
    struct tp_acl_rule acl[TP_CONF_MAX_ACL];  /* allow/deny in order; first match
                                         wins, none matching allows */
    uint32_t nacl;
    uint32_t max_conns_per_ip;        /* open connections per source address; 0 = off */
    uint32_t accept_rate_per_ip;      /* new connections per minute per source
                                         address (burst: a second's worth); 0 = off */
    char http_body[TP_CONF_HTTP_BODY_MAX + 1];  /* app http's body; default "hello\n" */
    uint32_t http_body_len;
    bool chat_prefix;                 /* app chat: "ADDR:PORT: " before each line
                                         delivered; default off */
    bool join_notice;                 /* app chat: tell the room who joins and
                                         leaves, and how many are in it; default off */
    char shutdown_message[TP_CONF_SHUTDOWN_MESSAGE_MAX + 1];  /* sent, with "\n",
                                         to each client at a graceful stop after
                                         its last reply; "" = none (default) */
    uint32_t shutdown_message_len;
    char chat_redis_host[48];         /* app chat: the Redis server that links this
                                         room with other instances' (pub/sub), as
                                         a numeric address; "" = off (default) */
    uint16_t chat_redis_port;
    int chat_redis_line;              /* line of `chat_redis`; 0 if not given */
    char chat_channel[TP_CONF_CHANNEL_MAX + 1];  /* its channel; default "tidepool" */
    char file[TP_CONF_PATH_MAX];      /* where the block starts, for later errors */
    int line;                         /* ("port in use"); "" and 0 for the default */
};

/* Where a directive was written, for messages after the load (a reload's
 * "needs a restart"); "" and 0 when the conf does not have it. */
struct tp_conf_place {
    char file[TP_CONF_PATH_MAX];
    int line;
};

struct tp_conf {
    int workers;                      /* -1 = online CPUs (default); 0 = inline */
    int processes;                    /* serving processes; -1 = online CPUs; default 1 */
    uint32_t max_connections;         /* default 65536, capped at run time by RLIMIT_NOFILE */
    enum tp_log_level log_level;      /* default info */
    uint32_t shutdown_delay_ms;       /* a graceful stop serves on this long, app
                                         metrics's /health answering 503, before
                                         the listeners close; default 0 */
    uint32_t shutdown_timeout_ms;     /* default 10s */
    uint64_t queue_max;               /* bytes at workers before reading pauses; default 64m */
    char error_log[TP_CONF_PATH_MAX]; /* log file; "" = stderr (default) */
    char user[TP_CONF_NAME_MAX];      /* drop root to this user after binding; "" = stay */
    struct tp_conf_place processes_at, user_at, error_log_at;  /* the directives */
    size_t nlisten;
    struct tp_listen_conf listen[TP_CONF_MAX_LISTEN];
};

/* Fills conf with the built-in default: the global defaults above and one
 * listener, 127.0.0.1:7000, app echo, line framing. Any thread. */
void tp_conf_init(struct tp_conf *conf);

/* The worker threads conf asks for, per process: workers, or for auto (-1)
 * the online CPUs shared among the processes (at least one). 0 means the
 * apps run inline on the reactor thread. */
unsigned tp_conf_workers(const struct tp_conf *conf);

/* The serving processes conf asks for: processes, or for auto (-1) one per
 * online CPU. */
unsigned tp_conf_processes(const struct tp_conf *conf);

/* Resets a listener block to its defaults (no address, app "echo"). */
void tp_conf_listen_init(struct tp_listen_conf *l);

/* Parses the file at path into conf (first reset to the global defaults with
 * no listeners). apps is a NULL-terminated list of the app names that exist;
 * `app NAME` must be one of them. Returns 0, or -1 with a one-line message in
 * err such as `tidepool.conf:12: unknown directive "wrokers"`. A file with no
 * listen block is an error. On error conf holds partial, unusable values. */
int tp_conf_load(struct tp_conf *conf, const char *path,
                 const char *const *apps, char *err, size_t errlen);

/* Parses "64k", "1m", "512" (bytes; k/m/g are powers of 1024) into *out.
 * Returns 0 or -EINVAL. */
int tp_conf_parse_size(const char *s, uint64_t *out);

/* Parses "500ms", "30s", "5m", "2h", "1d", "30" (seconds) into *out_ms.
 * Returns 0 or -EINVAL (also on overflow of 32 bits of milliseconds). */
int tp_conf_parse_time(const char *s, uint32_t *out_ms);

/* Parses "127.0.0.1:7000", "[::1]:7000", "*:7000" (IPv4 any) or "[::]:7000"
 * into l->addr/addrlen and copies the text to l->addr_text. Returns 0 or
 * -EINVAL. */
int tp_conf_parse_addr(const char *s, struct tp_listen_conf *l);

/* Parses "10.0.0.0/8", "192.168.1.7" (/32), "2001:db8::/32", "::1" (/128) or
 * "all" into r (r->allow is left alone). Returns 0, -EINVAL, or -EDOM if
 * bits past the prefix are set ("10.0.0.1/8"). */
int tp_conf_parse_cidr(const char *s, struct tp_acl_rule *r);

/* Writes conf to out as a conf file that loads back to the same values:
 * every directive with its effective value, defaults included, includes
 * resolved (`tidepool -T`). Returns 0 or -errno. */
int tp_conf_dump(const struct tp_conf *conf, FILE *out);

/* The name of directive i of the parser's table, NULL past the last (for
 * the test that every one is documented in tidepool.conf(5)). */
const char *tp_conf_directive_name(size_t i);

/* Names for messages: "line", "info", ... */
const char *tp_conf_framing_name(enum tp_framing f);
const char *tp_conf_log_level_name(enum tp_log_level l);

#endif /* TP_CONF_H */
