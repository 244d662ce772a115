/* tp_conf.c - the conf file: tokenizer, directive table, value parsers.
 *
 * A file is a list of directives: words ending in ";" or, for `listen`, in a
 * "{ ... }" block of its own directives. `include` pulls in another file (or
 * a glob of them) at that place, relative to the including file. Every error
 * is one line naming the file and line and what was expected. */
#include "tp_conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE_BYTES (1u << 20)
#define MAX_TOKEN 4096
#define MAX_ARGS 8
#define MAX_INCLUDE_DEPTH 16

/* ---- defaults ---- */

void tp_conf_listen_init(struct tp_listen_conf *l)
{
    memset(l, 0, sizeof(*l));
    strcpy(l->app, "echo");
    l->framing = TP_FRAMING_LINE;
    strcpy(l->http_body, "hello\n");
    l->http_body_len = 6;
    l->max_message = 64 * 1024;
    l->idle_timeout_ms = 5 * 60 * 1000;
    l->read_timeout_ms = 60 * 1000;
    l->send_buffer_max = 1024 * 1024;
    l->lingering_timeout_ms = 5 * 1000;
    l->lingering_max = 64 * 1024 * 1024;
    l->backlog = 4096;
    l->reuseport = false;
    l->tcp_nodelay = true;
    strcpy(l->chat_channel, "tidepool");
}

static void init_globals(struct tp_conf *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->workers = -1;
    conf->processes = 1;
    conf->max_connections = 65536;
    conf->log_level = TP_LOG_INFO;
    conf->shutdown_timeout_ms = 10 * 1000;
    conf->queue_max = 64ull * 1024 * 1024;
}

static unsigned online_cpus(void)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    return ncpu > 0 ? (unsigned)ncpu : 1;
}

unsigned tp_conf_processes(const struct tp_conf *conf)
{
    return conf->processes > 0 ? (unsigned)conf->processes : online_cpus();
}

unsigned tp_conf_workers(const struct tp_conf *conf)
{
    unsigned share;

    if (conf->workers >= 0)
        return (unsigned)conf->workers;
    share = online_cpus() / tp_conf_processes(conf);
    return share > 0 ? share : 1;
}

void tp_conf_init(struct tp_conf *conf)
{
    init_globals(conf);
    conf->nlisten = 1;
    tp_conf_listen_init(&conf->listen[0]);
    tp_conf_parse_addr("127.0.0.1:7000", &conf->listen[0]);
}

const char *tp_conf_framing_name(enum tp_framing f)
{
    static const char *const names[] = { "line", "length", "raw", "http" };

    return (unsigned)f < 4 ? names[f] : "?";
}

const char *tp_conf_log_level_name(enum tp_log_level l)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };

    return (unsigned)l < 4 ? names[l] : "?";
}

/* ---- value parsers ---- */

/* Digits only, no sign, no overflow past max. Returns chars used or -1. */
static int parse_digits(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    int n = 0;

    for (; isdigit((unsigned char)s[n]); n++) {
        unsigned d = (unsigned)(s[n] - '0');

        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (n == 0)
        return -1;
    *out = v;
    return n;
}

int tp_conf_parse_size(const char *s, uint64_t *out)
{
    uint64_t v, mult = 1;
    int n = parse_digits(s, UINT64_MAX, &v);

    if (n < 0)
        return -EINVAL;
    switch (s[n]) {
    case '\0': break;
    case 'k': case 'K': mult = 1ull << 10; n++; break;
    case 'm': case 'M': mult = 1ull << 20; n++; break;
    case 'g': case 'G': mult = 1ull << 30; n++; break;
    default: return -EINVAL;
    }
    if (s[n] != '\0' || v > UINT64_MAX / mult)
        return -EINVAL;
    *out = v * mult;
    return 0;
}

/* Accepts one or more NUMBER[UNIT] parts, largest unit first as nginx does
 * ("1m30s"); a bare number is seconds. */
int tp_conf_parse_time(const char *s, uint32_t *out_ms)
{
    static const struct { const char *unit; uint64_t ms; } units[] = {
        { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
        { "d", 86400000 },
    };
    uint64_t total = 0;

    if (*s == '\0')
        return -EINVAL;
    while (*s != '\0') {
        uint64_t v, mult = 0;
        int n = parse_digits(s, UINT32_MAX, &v);
        size_t i, len = 0;

        if (n < 0)
            return -EINVAL;
        s += n;
        for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t ul = strlen(units[i].unit);

            if (strncmp(s, units[i].unit, ul) == 0 && ul > len &&
                (s[ul] == '\0' || isdigit((unsigned char)s[ul]))) {
                mult = units[i].ms;
                len = ul;
            }
        }
        if (len == 0) {
            if (*s != '\0')
                return -EINVAL;
            mult = 1000;
        }
        s += len;
        total += v * mult;
        if (total > UINT32_MAX)
            return -EINVAL;
    }
    *out_ms = (uint32_t)total;
    return 0;
}

static int parse_port(const char *s, in_port_t *port)
{
    uint64_t v;
    int n = parse_digits(s, 65535, &v);

    if (n < 0 || s[n] != '\0')
        return -EINVAL;
    *port = htons((uint16_t)v);
    return 0;
}

int tp_conf_parse_addr(const char *s, struct tp_listen_conf *l)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)&l->addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&l->addr;
    char host[64];
    const char *colon, *port;
    size_t hlen;

    if (strlen(s) >= sizeof(l->addr_text))
        return -EINVAL;
    memset(&l->addr, 0, sizeof(l->addr));
    if (s[0] == '[') {                          /* [v6]:port */
        const char *end = strchr(s, ']');

        if (end == NULL || end[1] != ':')
            return -EINVAL;
        hlen = (size_t)(end - s - 1);
        port = end + 2;
        if (hlen == 0 || hlen >= sizeof(host))
            return -EINVAL;
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        in6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1 ||
            parse_port(port, &in6->sin6_port) < 0)
            return -EINVAL;
        l->addrlen = sizeof(*in6);
    } else {                                    /* v4:port, *:port, port */
        colon = strrchr(s, ':');
        in4->sin_family = AF_INET;
        if (colon == NULL) {
            in4->sin_addr.s_addr = htonl(INADDR_ANY);
            port = s;
        } else {
            hlen = (size_t)(colon - s);
            port = colon + 1;
            if (hlen == 0 || hlen >= sizeof(host))
                return -EINVAL;
            memcpy(host, s, hlen);
            host[hlen] = '\0';
            if (strcmp(host, "*") == 0)
                in4->sin_addr.s_addr = htonl(INADDR_ANY);
            else if (strcmp(host, "localhost") == 0)
                in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            else if (inet_pton(AF_INET, host, &in4->sin_addr) != 1)
                return -EINVAL;
        }
        if (parse_port(port, &in4->sin_port) < 0)
            return -EINVAL;
        l->addrlen = sizeof(*in4);
    }
    strcpy(l->addr_text, s);
    return 0;
}

int tp_conf_parse_cidr(const char *s, struct tp_acl_rule *r)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hlen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    unsigned bits, i;
    uint64_t v;

    memset(r->addr, 0, sizeof(r->addr));
    r->all = false;
    if (strcmp(s, "all") == 0) {
        r->all = true;
        r->family = AF_UNSPEC;
        r->prefix = 0;
        return 0;
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET, host, r->addr) == 1) {
        r->family = AF_INET;
        bits = 32;
    } else if (inet_pton(AF_INET6, host, r->addr) == 1) {
        r->family = AF_INET6;
        bits = 128;
    } else {
        return -EINVAL;
    }
    if (slash != NULL) {
        int n = parse_digits(slash + 1, bits, &v);

        if (n < 0 || slash[1 + n] != '\0')
            return -EINVAL;
        bits = (unsigned)v;
    }
    r->prefix = (uint8_t)bits;
    for (i = bits; i < (r->family == AF_INET ? 32u : 128u); i++)
        if (r->addr[i / 8] & (0x80u >> (i % 8)))
            return -EDOM;
    return 0;
}

static bool same_addr(const struct tp_listen_conf *a, const struct tp_listen_conf *b)
{
    const struct sockaddr_in *a4 = (const void *)&a->addr, *b4 = (const void *)&b->addr;
    const struct sockaddr_in6 *a6 = (const void *)&a->addr, *b6 = (const void *)&b->addr;

    if (a->addr.ss_family != b->addr.ss_family)
        return false;
    if (a->addr.ss_family == AF_INET)
        return a4->sin_port != 0 && a4->sin_port == b4->sin_port &&
               a4->sin_addr.s_addr == b4->sin_addr.s_addr;
    return a6->sin6_port != 0 && a6->sin6_port == b6->sin6_port &&
           memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr)) == 0;
}

/* ---- tokenizer ---- */

enum tok { TOK_WORD, TOK_SEMI, TOK_OPEN, TOK_CLOSE, TOK_EOF, TOK_ERROR };

struct lexer {
    const char *path;
    char *text;            /* whole file, NUL-terminated */
    size_t pos, len;
    int line;
    int tok_line;          /* line of the last token */
    char word[MAX_TOKEN + 1];
};

struct place {             /* where a directive was seen, for "duplicate" */
    char file[TP_CONF_PATH_MAX];
    int line;
};

struct parser {
    struct tp_conf *conf;
    const char *const *apps;
    char *err;
    size_t errlen;
    int depth;
    struct place globals_seen[16];
    struct place listen_seen[TP_CONF_MAX_LISTEN];
};

static int fail(struct parser *p, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct parser *p, const char *file, int line, const char *fmt, ...)
{
    char raw[384], msg[384];
    size_t i, n = 0;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    /* One line, whatever the file held: control bytes of a quoted word
     * are shown escaped (found by tests/fuzz/fuzz_conf.c). */
    for (i = 0; raw[i] != '\0' && n + 5 < sizeof(msg); i++) {
        unsigned char c = (unsigned char)raw[i];

        if (c == '\n')
            n += (size_t)snprintf(msg + n, sizeof(msg) - n, "\\n");
        else if (c < 0x20 || c == 0x7f)
            n += (size_t)snprintf(msg + n, sizeof(msg) - n, "\\x%02x", c);
        else
            msg[n++] = (char)c;
    }
    msg[n] = '\0';
    if (line > 0)
        snprintf(p->err, p->errlen, "%s:%d: %s", file, line, msg);
    else
        snprintf(p->err, p->errlen, "%s: %s", file, msg);
    return -1;
}

static bool is_special(int c)
{
    return c == ';' || c == '{' || c == '}' || c == '#' || c == '"' || c == '\'' ||
           isspace(c);
}

static enum tok lex_quoted(struct lexer *lx, struct parser *p)
{
    char quote = lx->text[lx->pos++];
    size_t n = 0;
    int start = lx->line;

    for (;;) {
        char c;

        if (lx->pos >= lx->len) {
            fail(p, lx->path, start, "unterminated quoted string");
            return TOK_ERROR;
        }
        c = lx->text[lx->pos++];
        if (c == quote)
            break;
        if (c == '\n')
            lx->line++;
        if (c == '\\' && lx->pos < lx->len) {
            c = lx->text[lx->pos++];
            if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
            else if (c == '\n') lx->line++;
        }
        if (c == '\0' || n == MAX_TOKEN) {
            fail(p, lx->path, start, c == '\0' ? "NUL byte in quoted string"
                                               : "quoted string longer than %d bytes", MAX_TOKEN);
            return TOK_ERROR;
        }
        lx->word[n++] = c;
    }
    lx->word[n] = '\0';
    return TOK_WORD;
}

static enum tok lex(struct lexer *lx, struct parser *p)
{
    size_t n = 0;

    for (;;) {                                  /* skip blanks and comments */
        if (lx->pos >= lx->len) {
            lx->tok_line = lx->line;
            return TOK_EOF;
        }
        if (lx->text[lx->pos] == '\n') {
            lx->line++;
            lx->pos++;
        } else if (isspace((unsigned char)lx->text[lx->pos])) {
            lx->pos++;
        } else if (lx->text[lx->pos] == '#') {
            while (lx->pos < lx->len && lx->text[lx->pos] != '\n')
                lx->pos++;
        } else {
            break;
        }
    }
    lx->tok_line = lx->line;
    switch (lx->text[lx->pos]) {
    case ';': lx->pos++; return TOK_SEMI;
    case '{': lx->pos++; return TOK_OPEN;
    case '}': lx->pos++; return TOK_CLOSE;
    case '"': case '\'': return lex_quoted(lx, p);
    }
    while (lx->pos < lx->len && !is_special((unsigned char)lx->text[lx->pos])) {
        if (lx->text[lx->pos] == '\0' || n == MAX_TOKEN) {
            fail(p, lx->path, lx->line, lx->text[lx->pos] == '\0'
                 ? "NUL byte in file" : "word longer than %d bytes", MAX_TOKEN);
            return TOK_ERROR;
        }
        lx->word[n++] = lx->text[lx->pos++];
    }
    lx->word[n] = '\0';
    return TOK_WORD;
}

/* ---- directives ---- */

enum ctx { CTX_MAIN = 1, CTX_LISTEN = 2 };

struct stmt {                       /* one directive as read */
    const char *file;
    int line;
    int nargs;                      /* words after the name */
    char *name;
    char *args[MAX_ARGS];
    int arg_line[MAX_ARGS];
};

struct directive {
    const char *name;
    int ctx;
    int min_args, max_args;
    int (*set)(struct parser *p, const struct stmt *st, struct tp_listen_conf *l);
    const char *usage;
    int slot;                       /* index into the "seen" table; -1: may repeat */
};

static int bad_value(struct parser *p, const struct stmt *st, int i, const char *expected)
{
    return fail(p, st->file, st->arg_line[i], "invalid value \"%s\" for \"%s\": expected %s",
                st->args[i], st->name, expected);
}

static int get_size(struct parser *p, const struct stmt *st, uint64_t min, uint64_t max,
                    const char *expected, uint64_t *out)
{
    if (tp_conf_parse_size(st->args[0], out) < 0 || *out < min || *out > max)
        return bad_value(p, st, 0, expected);
    return 0;
}

static int get_time(struct parser *p, const struct stmt *st, uint32_t *out)
{
    if (tp_conf_parse_time(st->args[0], out) < 0)
        return bad_value(p, st, 0, "a time such as 500ms, 30s, 5m, 1h (0 = off)");
    return 0;
}

static int get_flag(struct parser *p, const struct stmt *st, bool *out)
{
    if (strcmp(st->args[0], "on") == 0)
        *out = true;
    else if (strcmp(st->args[0], "off") == 0)
        *out = false;
    else
        return bad_value(p, st, 0, "\"on\" or \"off\"");
    return 0;
}

/* Finds word in a NULL-terminated list; returns its index or -1. */
static int pick(const char *word, const char *const *list)
{
    int i;

    for (i = 0; list[i] != NULL; i++)
        if (strcmp(word, list[i]) == 0)
            return i;
    return -1;
}

static int set_workers(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    uint64_t v;
    int n;

    if (strcmp(st->args[0], "auto") == 0) {
        p->conf->workers = -1;
        return 0;
    }
    n = parse_digits(st->args[0], 256, &v);
    if (n < 0 || st->args[0][n] != '\0')
        return bad_value(p, st, 0, "a number of threads 0..256 or \"auto\"");
    p->conf->workers = (int)v;
    return 0;
}

static void note_place(struct tp_conf_place *at, const struct stmt *st)
{
    snprintf(at->file, sizeof(at->file), "%s", st->file);
    at->line = st->line;
}

static int set_processes(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    uint64_t v;
    int n;

    note_place(&p->conf->processes_at, st);
    if (strcmp(st->args[0], "auto") == 0) {
        p->conf->processes = -1;
        return 0;
    }
    n = parse_digits(st->args[0], 256, &v);
    if (n < 0 || st->args[0][n] != '\0' || v == 0)
        return bad_value(p, st, 0, "a number of processes 1..256 or \"auto\"");
    p->conf->processes = (int)v;
    return 0;
}

static int set_max_connections(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    uint64_t v;
    int n = parse_digits(st->args[0], 16u << 20, &v);

    if (n < 0 || st->args[0][n] != '\0' || v == 0)
        return bad_value(p, st, 0, "a number 1..16777216");
    p->conf->max_connections = (uint32_t)v;
    return 0;
}

static int set_log_level(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    static const char *const levels[] = { "error", "warn", "info", "debug", NULL };
    int i = pick(st->args[0], levels);

    if (i < 0)
        return bad_value(p, st, 0, "error, warn, info or debug");
    p->conf->log_level = (enum tp_log_level)i;
    return 0;
}

static int set_shutdown_timeout(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    return get_time(p, st, &p->conf->shutdown_timeout_ms);
}

static int set_shutdown_delay(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    return get_time(p, st, &p->conf->shutdown_delay_ms);
}

static int set_queue_max(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    return get_size(p, st, 64 * 1024, 1ull << 40, "a size from 64k to 1024g",
                    &p->conf->queue_max);
}

static int set_app(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    char known[256] = "";
    size_t i, n = 0;

    if (p->apps == NULL || pick(st->args[0], p->apps) >= 0) {
        if (strlen(st->args[0]) >= sizeof(l->app))
            return bad_value(p, st, 0, "an app name");
        strcpy(l->app, st->args[0]);
        return 0;
    }
    for (i = 0; p->apps[i] != NULL && n < sizeof(known); i++)
        n += (size_t)snprintf(known + n, sizeof(known) - n, "%s%s", i ? ", " : "", p->apps[i]);
    return fail(p, st->file, st->arg_line[0], "unknown app \"%s\" (apps: %s)",
                st->args[0], known);
}

static int set_framing(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    static const char *const names[] = { "line", "length", "raw", "http", NULL };
    int i = pick(st->args[0], names);

    if (i < 0)
        return bad_value(p, st, 0, "line, length, raw or http");
    l->framing = (enum tp_framing)i;
    l->framing_line = st->line;
    return 0;
}

static int set_max_message(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    uint64_t v = 0;

    if (get_size(p, st, 1, 64u << 20, "a size from 1 to 64m", &v) < 0)
        return -1;
    l->max_message = (uint32_t)v;
    return 0;
}

static int set_http_body(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    size_t n = strlen(st->args[0]);

    if (n > TP_CONF_HTTP_BODY_MAX)
        return bad_value(p, st, 0, "a body of at most 4096 bytes");
    memcpy(l->http_body, st->args[0], n + 1);
    l->http_body_len = (uint32_t)n;
    return 0;
}

static int set_chat_prefix(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    return get_flag(p, st, &l->chat_prefix);
}

static int set_join_notice(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    return get_flag(p, st, &l->join_notice);
}

/* One line of text: it is sent followed by "\n". */
static int set_shutdown_message(struct parser *p, const struct stmt *st,
                                struct tp_listen_conf *l)
{
    size_t n = strlen(st->args[0]);

    if (n > TP_CONF_SHUTDOWN_MESSAGE_MAX || strpbrk(st->args[0], "\r\n") != NULL)
        return bad_value(p, st, 0, "one line of at most 512 bytes (\"\" for none)");
    memcpy(l->shutdown_message, st->args[0], n + 1);
    l->shutdown_message_len = (uint32_t)n;
    return 0;
}

/* "off" or a numeric ADDR:PORT (no name: resolving would block the reactor
 * at each reconnect; no wildcard: it is where to connect). */
static int set_chat_redis(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    static struct tp_listen_conf tmp;   /* large; the parser is single-threaded */
    const void *ip;
    int port;

    l->chat_redis_line = st->line;
    if (strcmp(st->args[0], "off") == 0) {
        l->chat_redis_host[0] = '\0';
        l->chat_redis_port = 0;
        return 0;
    }
    if (tp_conf_parse_addr(st->args[0], &tmp) < 0 || strchr(st->args[0], ':') == NULL ||
        st->args[0][0] == '*')
        return bad_value(p, st, 0, "\"off\" or the Redis server as IP:PORT or [IPv6]:PORT");
    if (tmp.addr.ss_family == AF_INET) {
        ip = &((struct sockaddr_in *)&tmp.addr)->sin_addr;
        port = ntohs(((struct sockaddr_in *)&tmp.addr)->sin_port);
    } else {
        ip = &((struct sockaddr_in6 *)&tmp.addr)->sin6_addr;
        port = ntohs(((struct sockaddr_in6 *)&tmp.addr)->sin6_port);
    }
    if (port == 0)
        return bad_value(p, st, 0, "a port 1..65535");
    inet_ntop(tmp.addr.ss_family, ip, l->chat_redis_host, sizeof(l->chat_redis_host));
    l->chat_redis_port = (uint16_t)port;
    return 0;
}

/* A Redis channel name: printable, no space (it goes in a RESP bulk string,
 * so any byte would do; these keep logs and -T readable). */
static int set_chat_channel(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    size_t n = strlen(st->args[0]);
    const char *s;

    for (s = st->args[0]; *s != '\0'; s++)
        if (*s <= ' ' || *s == 0x7f)
            break;
    if (n == 0 || n > TP_CONF_CHANNEL_MAX || *s != '\0')
        return bad_value(p, st, 0, "a channel name of 1..128 printable bytes, no space");
    memcpy(l->chat_channel, st->args[0], n + 1);
    return 0;
}

static int set_idle_timeout(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    return get_time(p, st, &l->idle_timeout_ms);
}

static int set_read_timeout(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    return get_time(p, st, &l->read_timeout_ms);
}

static int set_send_buffer_max(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    return get_size(p, st, 4096, 1ull << 32, "a size from 4k to 4g", &l->send_buffer_max);
}

static int set_lingering_timeout(struct parser *p, const struct stmt *st,
                                 struct tp_listen_conf *l)
{
    return get_time(p, st, &l->lingering_timeout_ms);
}

static int set_lingering_max(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    return get_size(p, st, 0, 1ull << 30, "a size from 0 to 1g", &l->lingering_max);
}

static int set_backlog(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    uint64_t v;
    int n = parse_digits(st->args[0], 65535, &v);

    if (n < 0 || st->args[0][n] != '\0' || v == 0)
        return bad_value(p, st, 0, "a number 1..65535");
    l->backlog = (int)v;
    return 0;
}

static int set_reuseport(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    return get_flag(p, st, &l->reuseport);
}

static int set_tcp_nodelay(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    return get_flag(p, st, &l->tcp_nodelay);
}

static int add_rule(struct parser *p, const struct stmt *st, struct tp_listen_conf *l,
                    bool allow)
{
    struct tp_acl_rule *r = &l->acl[l->nacl];
    int rc;

    if (l->nacl == TP_CONF_MAX_ACL)
        return fail(p, st->file, st->line, "too many allow/deny rules in one listen block "
                    "(at most %d)", TP_CONF_MAX_ACL);
    rc = tp_conf_parse_cidr(st->args[0], r);
    if (rc == -EDOM)
        return fail(p, st->file, st->arg_line[0], "\"%s %s\": the address has bits set "
                    "past its prefix length", st->name, st->args[0]);
    if (rc < 0)
        return bad_value(p, st, 0, "an address, ADDRESS/PREFIX (10.0.0.0/8, 2001:db8::/32) "
                         "or \"all\"");
    r->allow = allow;
    l->nacl++;
    return 0;
}

static int set_allow(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    return add_rule(p, st, l, true);
}

static int set_deny(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    return add_rule(p, st, l, false);
}

static int set_max_conns_per_ip(struct parser *p, const struct stmt *st,
                                struct tp_listen_conf *l)
{
    uint64_t v;
    int n = parse_digits(st->args[0], 16u << 20, &v);

    if (n < 0 || st->args[0][n] != '\0')
        return bad_value(p, st, 0, "a number of connections (0 = no limit)");
    l->max_conns_per_ip = (uint32_t)v;
    return 0;
}

/* RATE: "20/s", "600/m", or "20" (per second); kept per minute. */
static int set_accept_rate_per_ip(struct parser *p, const struct stmt *st,
                                  struct tp_listen_conf *l)
{
    const char *s = st->args[0];
    uint64_t v, per = 60;
    int n = parse_digits(s, 1000000, &v);

    if (n > 0 && strcmp(s + n, "/m") == 0)
        per = 1;
    else if (n > 0 && s[n] != '\0' && strcmp(s + n, "/s") != 0)
        n = -1;
    if (n < 0)
        return bad_value(p, st, 0, "a rate such as 20/s or 600/m (0 = no limit)");
    l->accept_rate_per_ip = (uint32_t)(v * per);
    return 0;
}

static int resolve_path(const char *includer, const char *path, char *out, size_t outlen);

static int set_error_log(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    const char *v = st->args[0];

    note_place(&p->conf->error_log_at, st);
    if (strcmp(v, "stderr") == 0) {
        p->conf->error_log[0] = '\0';
        return 0;
    }
    if (v[0] == '\0' || resolve_path(st->file, v, p->conf->error_log,
                                     sizeof(p->conf->error_log)) < 0)
        return bad_value(p, st, 0, "a file name (relative to this file) or \"stderr\"");
    return 0;
}

static int set_user(struct parser *p, const struct stmt *st, struct tp_listen_conf *l)
{
    const char *v = st->args[0];
    size_t i, n = strlen(v);

    note_place(&p->conf->user_at, st);
    for (i = 0; i < n; i++)
        if (!(isalnum((unsigned char)v[i]) || v[i] == '_' || v[i] == '-' || v[i] == '.'))
            break;
    if (n == 0 || n >= sizeof(p->conf->user) || i < n)
        return bad_value(p, st, 0, "a user name");
    memcpy(p->conf->user, v, n + 1);
    return 0;
}

static const struct directive directives[] = {
    { "workers", CTX_MAIN, 1, 1, set_workers, "workers N|auto;", 0 },
    { "max_connections", CTX_MAIN, 1, 1, set_max_connections, "max_connections N;", 1 },
    { "log_level", CTX_MAIN, 1, 1, set_log_level, "log_level LEVEL;", 2 },
    { "shutdown_timeout", CTX_MAIN, 1, 1, set_shutdown_timeout, "shutdown_timeout TIME;", 3 },
    { "queue_max", CTX_MAIN, 1, 1, set_queue_max, "queue_max SIZE;", 4 },
    { "error_log", CTX_MAIN, 1, 1, set_error_log, "error_log FILE|stderr;", 5 },
    { "user", CTX_MAIN, 1, 1, set_user, "user NAME;", 6 },
    { "processes", CTX_MAIN, 1, 1, set_processes, "processes N|auto;", 7 },
    { "shutdown_delay", CTX_MAIN, 1, 1, set_shutdown_delay, "shutdown_delay TIME;", 8 },
    { "app", CTX_LISTEN, 1, 1, set_app, "app NAME;", 0 },
    { "framing", CTX_LISTEN, 1, 1, set_framing, "framing line|length|raw;", 1 },
    { "max_message", CTX_LISTEN, 1, 1, set_max_message, "max_message SIZE;", 2 },
    { "idle_timeout", CTX_LISTEN, 1, 1, set_idle_timeout, "idle_timeout TIME;", 3 },
    { "read_timeout", CTX_LISTEN, 1, 1, set_read_timeout, "read_timeout TIME;", 4 },
    { "send_buffer_max", CTX_LISTEN, 1, 1, set_send_buffer_max, "send_buffer_max SIZE;", 5 },
    { "backlog", CTX_LISTEN, 1, 1, set_backlog, "backlog N;", 6 },
    { "reuseport", CTX_LISTEN, 1, 1, set_reuseport, "reuseport on|off;", 7 },
    { "tcp_nodelay", CTX_LISTEN, 1, 1, set_tcp_nodelay, "tcp_nodelay on|off;", 8 },
    { "lingering_timeout", CTX_LISTEN, 1, 1, set_lingering_timeout,
      "lingering_timeout TIME;", 9 },
    { "lingering_max", CTX_LISTEN, 1, 1, set_lingering_max, "lingering_max SIZE;", 10 },
    { "allow", CTX_LISTEN, 1, 1, set_allow, "allow ADDRESS[/PREFIX]|all;", -1 },
    { "deny", CTX_LISTEN, 1, 1, set_deny, "deny ADDRESS[/PREFIX]|all;", -1 },
    { "max_connections_per_ip", CTX_LISTEN, 1, 1, set_max_conns_per_ip,
      "max_connections_per_ip N;", 11 },
    { "accept_rate_per_ip", CTX_LISTEN, 1, 1, set_accept_rate_per_ip,
      "accept_rate_per_ip RATE;", 12 },
    { "http_body", CTX_LISTEN, 1, 1, set_http_body, "http_body TEXT;", 13 },
    { "chat_prefix", CTX_LISTEN, 1, 1, set_chat_prefix, "chat_prefix on|off;", 14 },
    { "join_notice", CTX_LISTEN, 1, 1, set_join_notice, "join_notice on|off;", 15 },
    { "shutdown_message", CTX_LISTEN, 1, 1, set_shutdown_message,
      "shutdown_message TEXT;", 16 },
    { "chat_redis", CTX_LISTEN, 1, 1, set_chat_redis, "chat_redis off|ADDR:PORT;", 19 },
    { "chat_channel", CTX_LISTEN, 1, 1, set_chat_channel, "chat_channel NAME;", 20 },
    { "listen", CTX_MAIN, 1, 1, NULL, "listen ADDR:PORT { ... }", -1 },
    { "include", CTX_MAIN | CTX_LISTEN, 1, 1, NULL, "include FILE;", -1 },
};

#define NDIRECTIVES (sizeof(directives) / sizeof(directives[0]))

struct block {                      /* the block being filled */
    enum ctx ctx;
    struct tp_listen_conf *listen;  /* CTX_LISTEN */
    struct place *seen;             /* per-directive first place */
};

static int parse_file(struct parser *p, const char *path, struct block *b, int line_of_include,
                      const char *includer);

const char *tp_conf_directive_name(size_t i)
{
    return i < NDIRECTIVES ? directives[i].name : NULL;
}

static const struct directive *find_directive(const char *name)
{
    size_t i;

    for (i = 0; i < NDIRECTIVES; i++)
        if (strcmp(directives[i].name, name) == 0)
            return &directives[i];
    return NULL;
}

static int check_duplicate(struct parser *p, const struct stmt *st, const struct directive *d,
                           struct block *b)
{
    struct place *seen = &b->seen[d->slot];

    if (seen->line > 0)
        return fail(p, st->file, st->line, "\"%s\" is duplicate (first at %s:%d)",
                    st->name, seen->file, seen->line);
    snprintf(seen->file, sizeof(seen->file), "%s", st->file);
    seen->line = st->line;
    return 0;
}

/* Joins dir-of(includer) and path unless path is absolute. */
static int resolve_path(const char *includer, const char *path, char *out, size_t outlen)
{
    const char *slash = strrchr(includer, '/');
    int n;

    if (path[0] == '/' || slash == NULL)
        n = snprintf(out, outlen, "%s", path);
    else
        n = snprintf(out, outlen, "%.*s/%s", (int)(slash - includer), includer, path);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static int do_include(struct parser *p, const struct stmt *st, struct block *b)
{
    char pattern[TP_CONF_PATH_MAX];
    glob_t g;
    size_t i;
    int rc;

    if (resolve_path(st->file, st->args[0], pattern, sizeof(pattern)) < 0)
        return fail(p, st->file, st->line, "include path too long");
    if (p->depth >= MAX_INCLUDE_DEPTH)
        return fail(p, st->file, st->line, "includes nested deeper than %d (a loop?)",
                    MAX_INCLUDE_DEPTH);
    if (strpbrk(pattern, "*?[") == NULL)       /* one file: must exist */
        return parse_file(p, pattern, b, st->line, st->file);
    rc = glob(pattern, GLOB_ERR, NULL, &g);
    if (rc == GLOB_NOMATCH)
        return 0;                              /* "conf.d/ *.conf" may be empty */
    if (rc != 0)
        return fail(p, st->file, st->line, "include \"%s\": cannot read the directory",
                    st->args[0]);
    for (i = 0, rc = 0; i < g.gl_pathc && rc == 0; i++)
        rc = parse_file(p, g.gl_pathv[i], b, st->line, st->file);
    globfree(&g);
    return rc;
}

static int parse_block(struct parser *p, struct lexer *lx, struct block *b, bool braced);

static int do_listen(struct parser *p, struct lexer *lx, const struct stmt *st, bool braced)
{
    struct tp_conf *c = p->conf;
    struct tp_listen_conf *l;
    struct block b = { CTX_LISTEN, NULL, NULL };
    struct place seen[32];
    size_t i;

    if (c->nlisten == TP_CONF_MAX_LISTEN)
        return fail(p, st->file, st->line, "more than %d listen blocks", TP_CONF_MAX_LISTEN);
    l = &c->listen[c->nlisten];
    tp_conf_listen_init(l);
    if (tp_conf_parse_addr(st->args[0], l) < 0)
        return bad_value(p, st, 0, "ADDR:PORT such as 127.0.0.1:7000, *:7000 or [::1]:7000");
    snprintf(l->file, sizeof(l->file), "%s", st->file);
    l->line = st->line;
    for (i = 0; i < c->nlisten; i++)
        if (same_addr(&c->listen[i], l))
            return fail(p, st->file, st->line, "duplicate listen \"%s\" (first at %s:%d)",
                        st->args[0], p->listen_seen[i].file, p->listen_seen[i].line);
    snprintf(p->listen_seen[c->nlisten].file, sizeof(p->listen_seen[0].file), "%s", st->file);
    p->listen_seen[c->nlisten].line = st->line;
    c->nlisten++;
    if (!braced)
        return 0;
    memset(seen, 0, sizeof(seen));
    b.listen = l;
    b.seen = seen;
    return parse_block(p, lx, &b, true);
}

/* Runs one directive whose words are in st; ended by ";" or, if braced, "{". */
static int run_stmt(struct parser *p, struct lexer *lx, struct stmt *st, struct block *b,
                    bool braced)
{
    const struct directive *d = find_directive(st->name);

    if (d == NULL)
        return fail(p, st->file, st->line, "unknown directive \"%s\"", st->name);
    if (!(d->ctx & b->ctx))
        return fail(p, st->file, st->line, "\"%s\" is not allowed %s", st->name,
                    b->ctx == CTX_MAIN ? "outside a listen block" : "inside a listen block");
    if (st->nargs < d->min_args)
        return fail(p, st->file, st->line, "\"%s\" needs a value: %s", st->name, d->usage);
    if (st->nargs > d->max_args) {
        int last = d->max_args;    /* the first word too many */

        if (st->arg_line[last] > st->arg_line[last - 1])
            return fail(p, st->file, st->arg_line[last - 1], "missing \";\" after \"%s %s\"",
                        st->name, st->args[last - 1]);
        return fail(p, st->file, st->line, "too many values for \"%s\": expected %s",
                    st->name, d->usage);
    }
    if (braced && strcmp(d->name, "listen") != 0)
        return fail(p, st->file, st->line, "\"%s\" takes no block: expected %s",
                    st->name, d->usage);
    if (strcmp(d->name, "listen") == 0)
        return do_listen(p, lx, st, braced);
    if (strcmp(d->name, "include") == 0)
        return do_include(p, st, b);
    if (d->slot >= 0 && check_duplicate(p, st, d, b) < 0)
        return -1;                  /* allow and deny repeat: the rules are a list */
    return d->set(p, st, b->listen);
}

static int parse_stmts(struct parser *p, struct lexer *lx, struct block *b, bool braced,
                       char (*words)[MAX_TOKEN + 1], int open_line);

/* Reads directives until EOF (top of a file) or the "}" that closes a block. */
static int parse_block(struct parser *p, struct lexer *lx, struct block *b, bool braced)
{
    char (*words)[MAX_TOKEN + 1] = malloc((MAX_ARGS + 1) * sizeof(*words));
    int open_line = lx->tok_line, rc;

    if (words == NULL)
        return fail(p, lx->path, lx->line, "out of memory");
    rc = parse_stmts(p, lx, b, braced, words, open_line);
    free(words);
    return rc;
}

static int parse_stmts(struct parser *p, struct lexer *lx, struct block *b, bool braced,
                       char (*words)[MAX_TOKEN + 1], int open_line)
{
    struct stmt st;

    for (;;) {
        int nwords = 0, lines[MAX_ARGS + 1];
        enum tok t;

        while ((t = lex(lx, p)) == TOK_WORD) {
            if (nwords == MAX_ARGS + 1 && lx->tok_line == lines[0])
                return fail(p, lx->path, lines[0], "too many values for \"%s\"", words[0]);
            if (nwords == MAX_ARGS + 1)
                return fail(p, lx->path, lines[0], "missing \";\" after \"%s\"", words[0]);
            lines[nwords] = lx->tok_line;
            memcpy(words[nwords++], lx->word, strlen(lx->word) + 1);
        }
        if (t == TOK_ERROR)
            return -1;
        if (nwords == 0) {
            if (t == TOK_SEMI)
                continue;                       /* a stray ";" is harmless */
            if (t == TOK_OPEN)
                return fail(p, lx->path, lx->tok_line, "unexpected \"{\"");
            if (t == TOK_CLOSE && braced)
                return 0;
            if (t == TOK_CLOSE)
                return fail(p, lx->path, lx->tok_line, "unexpected \"}\"");
            if (braced)
                return fail(p, lx->path, lx->tok_line,
                            "unexpected end of file: the block opened at line %d needs \"}\"",
                            open_line);
            return 0;
        }
        if (t == TOK_EOF || t == TOK_CLOSE)
            return fail(p, lx->path, lines[nwords - 1], "missing \";\" after \"%s\"",
                        words[nwords - 1]);
        st.file = lx->path;
        st.line = lines[0];
        st.name = words[0];
        st.nargs = nwords - 1;
        for (int i = 1; i < nwords; i++) {
            st.args[i - 1] = words[i];
            st.arg_line[i - 1] = lines[i];
        }
        if (run_stmt(p, lx, &st, b, t == TOK_OPEN) < 0)
            return -1;
    }
}

/* Reads the whole file (a pipe such as <(...) too) into lx, up to
 * MAX_FILE_BYTES. */
static int read_file(struct parser *p, const char *path, struct lexer *lx,
                     int line_of_include, const char *includer)
{
    const char *file = includer ? includer : path;
    /* Looked at before it is opened: a device (/dev/zero, a tty) or a
     * socket is refused rather than read; a pipe (-c <(generate)) is read,
     * its open waiting for the writer as usual. */
    struct stat sb;
    FILE *f = NULL;
    size_t cap = 64 * 1024, n;

    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISFIFO(sb.st_mode))
        return fail(p, file, includer ? line_of_include : 0, "cannot read \"%s\": it is %s",
                    path, S_ISDIR(sb.st_mode) ? "a directory" : "not a file or a pipe");
    f = fopen(path, "rbe");
    if (f == NULL && includer == NULL)
        return fail(p, file, 0, "cannot open: %s", strerror(errno));
    if (f == NULL)
        return fail(p, file, line_of_include, "cannot open \"%s\": %s", path, strerror(errno));
    lx->len = 0;
    lx->text = NULL;
    for (;;) {
        char *more = realloc(lx->text, cap + 1);

        if (more == NULL) {
            fclose(f);
            free(lx->text);
            return fail(p, file, line_of_include, "out of memory reading \"%s\"", path);
        }
        lx->text = more;
        n = fread(lx->text + lx->len, 1, cap - lx->len, f);
        lx->len += n;
        if (lx->len < cap || cap > MAX_FILE_BYTES)
            break;
        cap *= 2;
    }
    if (ferror(f) || lx->len > MAX_FILE_BYTES) {
        int err = errno;

        fclose(f);
        free(lx->text);
        if (lx->len > MAX_FILE_BYTES)
            return fail(p, file, line_of_include, "\"%s\" is larger than %u bytes", path,
                        MAX_FILE_BYTES);
        return fail(p, file, line_of_include, "cannot read \"%s\": %s", path, strerror(err));
    }
    fclose(f);
    lx->text[lx->len] = '\0';
    lx->path = path;
    lx->pos = 0;
    lx->line = 1;
    lx->tok_line = 1;
    return 0;
}

static int parse_file(struct parser *p, const char *path, struct block *b, int line_of_include,
                      const char *includer)
{
    struct lexer *lx = malloc(sizeof(*lx));    /* ~4 KiB: keep it off the stack */
    int rc;

    if (lx == NULL)
        return fail(p, path, 0, "out of memory");
    rc = read_file(p, path, lx, line_of_include, includer);
    if (rc == 0) {
        p->depth++;
        rc = parse_block(p, lx, b, false);
        p->depth--;
        free(lx->text);
    }
    free(lx);
    return rc;
}

/* Several processes share each port (SO_REUSEPORT): port 0 would give each
 * its own. */
static int check_shared_ports(struct parser *p, const struct tp_conf *conf)
{
    size_t i;

    for (i = 0; i < conf->nlisten; i++) {
        const struct tp_listen_conf *l = &conf->listen[i];
        in_port_t port = l->addr.ss_family == AF_INET6
                             ? ((const struct sockaddr_in6 *)(const void *)&l->addr)->sin6_port
                             : ((const struct sockaddr_in *)(const void *)&l->addr)->sin_port;

        if (port == 0)
            return fail(p, l->file, l->line, "listen %s: port 0 cannot be shared by several "
                        "processes (processes is not 1): name a port", l->addr_text);
    }
    return 0;
}

int tp_conf_load(struct tp_conf *conf, const char *path,
                 const char *const *apps, char *err, size_t errlen)
{
    struct parser *p = calloc(1, sizeof(*p));
    struct block b = { CTX_MAIN, NULL, NULL };
    int rc;

    if (p == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    init_globals(conf);
    p->conf = conf;
    p->apps = apps;
    p->err = err;
    p->errlen = errlen;
    b.seen = p->globals_seen;
    rc = parse_file(p, path, &b, 0, NULL);
    if (rc == 0 && conf->nlisten == 0)
        rc = fail(p, path, 0, "no listen block: add one such as "
                  "\"listen 127.0.0.1:7000 { app echo; }\"");
    if (rc == 0 && conf->processes != 1)
        rc = check_shared_ports(p, conf);
    free(p);
    return rc;
}

/* ---- writing a conf back out (tidepool -T) ---- */

static void put_quoted(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        if (*s == '\n')
            fputs("\\n", out);
        else if (*s == '\t')
            fputs("\\t", out);
        else
            fputc(*s, out);
    }
    fputc('"', out);
}

static void put_size(FILE *out, const char *name, uint64_t v, const char *indent)
{
    static const char units[] = { 'g', 'm', 'k' };
    int i;

    for (i = 0; i < 3; i++) {
        uint64_t u = 1ull << (10 * (3 - i));

        if (v != 0 && v % u == 0) {
            fprintf(out, "%s%s %llu%c;\n", indent, name, (unsigned long long)(v / u), units[i]);
            return;
        }
    }
    fprintf(out, "%s%s %llu;\n", indent, name, (unsigned long long)v);
}

static void put_time(FILE *out, const char *name, uint32_t ms, const char *indent)
{
    if (ms != 0 && ms % 1000 == 0)
        fprintf(out, "%s%s %us;\n", indent, name, ms / 1000);
    else
        fprintf(out, "%s%s %ums;\n", indent, name, ms);
}

static void put_rule(FILE *out, const struct tp_acl_rule *r)
{
    char text[INET6_ADDRSTRLEN];

    if (r->all) {
        fprintf(out, "    %s all;\n", r->allow ? "allow" : "deny");
        return;
    }
    inet_ntop(r->family, r->addr, text, sizeof(text));
    fprintf(out, "    %s %s/%u;\n", r->allow ? "allow" : "deny", text, r->prefix);
}

int tp_conf_dump(const struct tp_conf *conf, FILE *out)
{
    size_t i, j;

    fprintf(out, "# the effective configuration: every directive, defaults included\n");
    if (conf->workers < 0)
        fprintf(out, "workers auto;\n");
    else
        fprintf(out, "workers %d;\n", conf->workers);
    if (conf->processes < 0)
        fprintf(out, "processes auto;\n");
    else
        fprintf(out, "processes %d;\n", conf->processes);
    fprintf(out, "max_connections %u;\n", conf->max_connections);
    fprintf(out, "log_level %s;\n", tp_conf_log_level_name(conf->log_level));
    fputs("error_log ", out);
    put_quoted(out, conf->error_log[0] != '\0' ? conf->error_log : "stderr");
    fputs(";\n", out);
    if (conf->user[0] != '\0')
        fprintf(out, "user %s;\n", conf->user);
    put_time(out, "shutdown_delay", conf->shutdown_delay_ms, "");
    put_time(out, "shutdown_timeout", conf->shutdown_timeout_ms, "");
    put_size(out, "queue_max", conf->queue_max, "");
    for (i = 0; i < conf->nlisten; i++) {
        const struct tp_listen_conf *l = &conf->listen[i];

        fputs("\nlisten ", out);
        put_quoted(out, l->addr_text);
        fputs(" {\n    app ", out);
        put_quoted(out, l->app);
        fprintf(out, ";\n    framing %s;\n", tp_conf_framing_name(l->framing));
        put_size(out, "max_message", l->max_message, "    ");
        put_time(out, "idle_timeout", l->idle_timeout_ms, "    ");
        put_time(out, "read_timeout", l->read_timeout_ms, "    ");
        put_size(out, "send_buffer_max", l->send_buffer_max, "    ");
        put_time(out, "lingering_timeout", l->lingering_timeout_ms, "    ");
        put_size(out, "lingering_max", l->lingering_max, "    ");
        fputs("    http_body ", out);
        put_quoted(out, l->http_body);
        fprintf(out, ";\n    chat_prefix %s;\n    join_notice %s;\n    shutdown_message ",
                l->chat_prefix ? "on" : "off", l->join_notice ? "on" : "off");
        put_quoted(out, l->shutdown_message);
        fputs(";\n", out);
        if (l->chat_redis_host[0] == '\0')
            fputs("    chat_redis off;\n", out);
        else if (strchr(l->chat_redis_host, ':') != NULL)
            fprintf(out, "    chat_redis [%s]:%u;\n", l->chat_redis_host, l->chat_redis_port);
        else
            fprintf(out, "    chat_redis %s:%u;\n", l->chat_redis_host, l->chat_redis_port);
        fputs("    chat_channel ", out);
        put_quoted(out, l->chat_channel);
        fputs(";\n", out);
        fprintf(out, "    backlog %d;\n    reuseport %s;\n    tcp_nodelay %s;\n", l->backlog,
                l->reuseport ? "on" : "off", l->tcp_nodelay ? "on" : "off");
        for (j = 0; j < l->nacl; j++)
            put_rule(out, &l->acl[j]);
        fprintf(out, "    max_connections_per_ip %u;\n    accept_rate_per_ip %u/m;\n}\n",
                l->max_conns_per_ip, l->accept_rate_per_ip);
    }
    return ferror(out) ? -EIO : 0;
}
