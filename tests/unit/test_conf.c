/* test_conf.c - the conf parser: values, blocks, includes, every error with
 * its file:line. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tp_conf.h"

static const char *const apps[] = { "echo", "upper", NULL };
static char dir[] = "/tmp/tp_conf_XXXXXX";
static struct tp_conf conf;
static char err[512];

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[64];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(conf, .init = setup, .fini = teardown);

/* Writes text to dir/name and returns the path (static buffer). */
static const char *put(const char *name, const char *text)
{
    static char path[4][PATH_MAX];
    static int next;
    char *p = path[next++ % 4];
    FILE *f;

    snprintf(p, PATH_MAX, "%s/%s", dir, name);
    f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static int load(const char *text)
{
    err[0] = '\0';
    return tp_conf_load(&conf, put("t.conf", text), apps, err, sizeof(err));
}

/* The error must be "DIR/t.conf:LINE: ..." and contain want. */
static void expect_error(const char *text, int line, const char *want)
{
    char prefix[PATH_MAX + 32];

    cr_assert_eq(load(text), -1, "accepted: %s", text);
    snprintf(prefix, sizeof(prefix), "%s/t.conf:%d: ", dir, line);
    cr_expect(strncmp(err, prefix, strlen(prefix)) == 0,
              "error \"%s\" does not start with \"%s\"", err, prefix);
    cr_expect(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
}

Test(conf, sizes)
{
    uint64_t v;

    cr_assert_eq(tp_conf_parse_size("512", &v), 0);
    cr_expect_eq(v, 512);
    cr_assert_eq(tp_conf_parse_size("64k", &v), 0);
    cr_expect_eq(v, 65536);
    cr_assert_eq(tp_conf_parse_size("1M", &v), 0);
    cr_expect_eq(v, 1 << 20);
    cr_assert_eq(tp_conf_parse_size("2g", &v), 0);
    cr_expect_eq(v, 2ull << 30);
    cr_expect_eq(tp_conf_parse_size("", &v), -EINVAL);
    cr_expect_eq(tp_conf_parse_size("k", &v), -EINVAL);
    cr_expect_eq(tp_conf_parse_size("-1", &v), -EINVAL);
    cr_expect_eq(tp_conf_parse_size("1kb", &v), -EINVAL);
    cr_expect_eq(tp_conf_parse_size("1.5m", &v), -EINVAL);
    cr_expect_eq(tp_conf_parse_size("99999999999999999999", &v), -EINVAL);
    cr_expect_eq(tp_conf_parse_size("17179869184g", &v), -EINVAL);
}

Test(conf, times)
{
    uint32_t ms;

    cr_assert_eq(tp_conf_parse_time("500ms", &ms), 0);
    cr_expect_eq(ms, 500);
    cr_assert_eq(tp_conf_parse_time("30s", &ms), 0);
    cr_expect_eq(ms, 30000);
    cr_assert_eq(tp_conf_parse_time("30", &ms), 0);
    cr_expect_eq(ms, 30000);
    cr_assert_eq(tp_conf_parse_time("5m", &ms), 0);
    cr_expect_eq(ms, 300000);
    cr_assert_eq(tp_conf_parse_time("1m30s", &ms), 0);
    cr_expect_eq(ms, 90000);
    cr_assert_eq(tp_conf_parse_time("2h", &ms), 0);
    cr_expect_eq(ms, 7200000);
    cr_assert_eq(tp_conf_parse_time("1d", &ms), 0);
    cr_expect_eq(ms, 86400000);
    cr_assert_eq(tp_conf_parse_time("0", &ms), 0);
    cr_expect_eq(ms, 0);
    cr_expect_eq(tp_conf_parse_time("", &ms), -EINVAL);
    cr_expect_eq(tp_conf_parse_time("5x", &ms), -EINVAL);
    cr_expect_eq(tp_conf_parse_time("ms", &ms), -EINVAL);
    cr_expect_eq(tp_conf_parse_time("-5s", &ms), -EINVAL);
    cr_expect_eq(tp_conf_parse_time("50d", &ms), -EINVAL);   /* over 32 bits of ms */
}

Test(conf, addresses)
{
    struct tp_listen_conf l;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&l.addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&l.addr;

    cr_assert_eq(tp_conf_parse_addr("127.0.0.1:7000", &l), 0);
    cr_expect_eq(in4->sin_family, AF_INET);
    cr_expect_eq(ntohs(in4->sin_port), 7000);
    cr_expect_eq(ntohl(in4->sin_addr.s_addr), INADDR_LOOPBACK);
    cr_expect_str_eq(l.addr_text, "127.0.0.1:7000");
    cr_assert_eq(tp_conf_parse_addr("*:80", &l), 0);
    cr_expect_eq(in4->sin_addr.s_addr, htonl(INADDR_ANY));
    cr_assert_eq(tp_conf_parse_addr("8080", &l), 0);
    cr_expect_eq(ntohs(in4->sin_port), 8080);
    cr_assert_eq(tp_conf_parse_addr("[::1]:0", &l), 0);
    cr_expect_eq(in6->sin6_family, AF_INET6);
    cr_expect_eq(in6->sin6_port, 0);
    cr_expect(IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr));
    cr_assert_eq(tp_conf_parse_addr("[::]:7000", &l), 0);
    cr_expect_eq(l.addrlen, sizeof(struct sockaddr_in6));

    cr_expect_eq(tp_conf_parse_addr("127.0.0.1", &l), -EINVAL);
    cr_expect_eq(tp_conf_parse_addr("127.0.0.1:", &l), -EINVAL);
    cr_expect_eq(tp_conf_parse_addr("127.0.0.1:65536", &l), -EINVAL);
    cr_expect_eq(tp_conf_parse_addr("127.0.0.256:80", &l), -EINVAL);
    cr_expect_eq(tp_conf_parse_addr("::1:80", &l), -EINVAL);
    cr_expect_eq(tp_conf_parse_addr("[::1]80", &l), -EINVAL);
    cr_expect_eq(tp_conf_parse_addr("[::1:80", &l), -EINVAL);
    cr_expect_eq(tp_conf_parse_addr("example.com:80", &l), -EINVAL);
    cr_expect_eq(tp_conf_parse_addr(":80", &l), -EINVAL);
}

/* The shipped conf/tidepool.conf is the built-in default, field by field. */
Test(conf, shipped_file_is_the_default)
{
    static struct tp_conf def;
    struct tp_listen_conf *a = &conf.listen[0], *b = &def.listen[0];

    tp_conf_init(&def);
    cr_assert_eq(tp_conf_load(&conf, TP_SOURCE_DIR "/conf/tidepool.conf", apps, err,
                              sizeof(err)), 0, "%s", err);
    cr_expect_eq(conf.workers, def.workers);
    cr_expect_eq(conf.max_connections, def.max_connections);
    cr_expect_eq(conf.log_level, def.log_level);
    cr_expect_eq(conf.shutdown_timeout_ms, def.shutdown_timeout_ms);
    cr_expect_eq(conf.shutdown_delay_ms, def.shutdown_delay_ms);
    cr_expect_eq(def.shutdown_delay_ms, 0);
    cr_expect_eq(conf.queue_max, def.queue_max);
    cr_assert_eq(conf.nlisten, 1);
    cr_expect_str_eq(a->addr_text, b->addr_text);
    cr_expect_eq(a->addrlen, b->addrlen);
    cr_expect(memcmp(&a->addr, &b->addr, a->addrlen) == 0);
    cr_expect_str_eq(a->app, b->app);
    cr_expect_eq(a->framing, b->framing);
    cr_expect_eq(a->max_message, b->max_message);
    cr_expect_eq(a->idle_timeout_ms, b->idle_timeout_ms);
    cr_expect_eq(a->read_timeout_ms, b->read_timeout_ms);
    cr_expect_eq(a->send_buffer_max, b->send_buffer_max);
    cr_expect_eq(a->lingering_timeout_ms, b->lingering_timeout_ms);
    cr_expect_eq(a->lingering_max, b->lingering_max);
    cr_expect_eq(a->backlog, b->backlog);
    cr_expect_eq(a->reuseport, b->reuseport);
    cr_expect_eq(a->tcp_nodelay, b->tcp_nodelay);
    cr_expect_eq(a->http_body_len, b->http_body_len);
    cr_expect_str_eq(a->http_body, b->http_body);
    cr_expect_eq(a->chat_prefix, b->chat_prefix);
    cr_expect_str_eq(a->chat_redis_host, b->chat_redis_host);
    cr_expect_str_eq(a->chat_channel, b->chat_channel);
    cr_expect_eq(a->join_notice, b->join_notice);
    cr_expect_eq(a->shutdown_message_len, b->shutdown_message_len);
    cr_expect_str_eq(a->shutdown_message, b->shutdown_message);
}

Test(conf, chat_prefix_join_notice_and_shutdown_message)
{
    const struct tp_listen_conf *l;

    cr_assert_eq(load("listen 127.0.0.1:7001 {\n"
                      "    chat_prefix on;\n"
                      "    join_notice on;\n"
                      "    shutdown_message \"going down, \\\"bye\\\"\";\n"
                      "}\n"
                      "listen 127.0.0.1:7002 { chat_prefix off; join_notice off; "
                      "shutdown_message ''; }\n"
                      "listen 127.0.0.1:7003;\n"), 0, "%s", err);
    l = &conf.listen[0];
    cr_expect(l->chat_prefix);
    cr_expect(l->join_notice);
    cr_expect_str_eq(l->shutdown_message, "going down, \"bye\"");
    cr_expect_eq(l->shutdown_message_len, strlen("going down, \"bye\""));
    for (size_t i = 1; i < 3; i++) {
        cr_expect(!conf.listen[i].chat_prefix, "listener %zu", i);
        cr_expect(!conf.listen[i].join_notice, "listener %zu", i);
        cr_expect_eq(conf.listen[i].shutdown_message_len, 0, "listener %zu", i);
    }
    expect_error("listen 7000 {\n chat_prefix yes;\n}\n", 2,
                 "invalid value \"yes\" for \"chat_prefix\": expected \"on\" or \"off\"");
    expect_error("listen 7000 {\n join_notice on;\n\n join_notice off;\n}\n", 4,
                 "\"join_notice\" is duplicate (first at");
    expect_error("listen 7000 {\n shutdown_message a;\n shutdown_message b;\n}\n", 3,
                 "\"shutdown_message\" is duplicate");
    expect_error("listen 7000 {\n shutdown_message \"two\\nlines\";\n}\n", 2,
                 "expected one line of at most 512 bytes");
    expect_error("chat_prefix on;\nlisten 7000;\n", 1, "not allowed outside a listen block");
    expect_error("listen 7000 {\n shutdown_message;\n}\n", 2,
                 "\"shutdown_message\" needs a value: shutdown_message TEXT;");
}

/* 512 bytes is the most; 513 is refused, not cut. */
Test(conf, shutdown_message_is_at_most_512_bytes)
{
    static char text[1024];
    char word[514];

    memset(word, 'x', 512);
    word[512] = '\0';
    snprintf(text, sizeof(text), "listen 7000 { shutdown_message %s; }\n", word);
    cr_assert_eq(load(text), 0, "%s", err);
    cr_expect_eq(conf.listen[0].shutdown_message_len, 512);
    word[512] = 'x';
    word[513] = '\0';
    snprintf(text, sizeof(text), "listen 7000 {\n shutdown_message %s; }\n", word);
    expect_error(text, 2, "invalid value \"xxxxxxxx");   /* err holds 512 bytes */
}

Test(conf, http_body_and_framing_http)
{
    const struct tp_listen_conf *l;

    cr_assert_eq(load("listen 127.0.0.1:7001 {\n"
                      "    app echo;\n"
                      "    framing http;\n"
                      "    http_body \"ok\\n{\\\"up\\\": true}\";\n"
                      "}\n"
                      "listen 127.0.0.1:7002 { http_body ''; }\n"
                      "listen 127.0.0.1:7003;\n"), 0, "%s", err);
    l = &conf.listen[0];
    cr_expect_eq(l->framing, TP_FRAMING_HTTP);
    cr_expect_eq(l->framing_line, 3);
    cr_expect_str_eq(l->http_body, "ok\n{\"up\": true}");
    cr_expect_eq(l->http_body_len, strlen("ok\n{\"up\": true}"));
    cr_expect_eq(conf.listen[1].http_body_len, 0);
    cr_expect_eq(conf.listen[1].framing_line, 0);
    cr_expect_str_eq(conf.listen[2].http_body, "hello\n");
    cr_expect_eq(conf.listen[2].http_body_len, 6);
    expect_error("listen 7000 {\n\n http_body;\n}\n", 3, "\"http_body\" needs a value");
    expect_error("listen 7000 {\n http_body a b;\n}\n", 2, "too many values for \"http_body\"");
    expect_error("listen 7000 {\n http_body a;\n http_body b;\n}\n", 3,
                 "\"http_body\" is duplicate");
    expect_error("http_body a;\nlisten 7000;\n", 1, "not allowed outside a listen block");
}

Test(conf, every_directive)
{
    const struct tp_listen_conf *l;

    cr_assert_eq(load("# a comment\n"
                      "workers 3;  log_level debug;\n"
                      "max_connections 100;\n"
                      "shutdown_timeout 1m30s;\n"
                      "queue_max 1m;\n"
                      "listen 127.0.0.1:7001 {\n"
                      "    app upper;   # trailing comment\n"
                      "    framing length;\n"
                      "    max_message 1m;\n"
                      "    idle_timeout 0;\n"
                      "    read_timeout 500ms;\n"
                      "    send_buffer_max 64k;\n"
                      "    backlog 16;\n"
                      "    reuseport on;\n"
                      "    tcp_nodelay off;\n"
                      "    lingering_timeout 2s; lingering_max 1m;\n"
                      "}\n"
                      "listen [::1]:7001;\n"
                      "listen \"127.0.0.2:7001\" { framing 'raw'; }\n"), 0, "%s", err);
    cr_expect_eq(conf.workers, 3);
    cr_expect_eq(conf.log_level, TP_LOG_DEBUG);
    cr_expect_eq(conf.max_connections, 100);
    cr_expect_eq(conf.shutdown_timeout_ms, 90000);
    cr_expect_eq(conf.queue_max, 1 << 20);
    cr_assert_eq(conf.nlisten, 3);
    l = &conf.listen[0];
    cr_expect_str_eq(l->app, "upper");
    cr_expect_eq(l->framing, TP_FRAMING_LENGTH);
    cr_expect_eq(l->max_message, 1 << 20);
    cr_expect_eq(l->idle_timeout_ms, 0);
    cr_expect_eq(l->read_timeout_ms, 500);
    cr_expect_eq(l->send_buffer_max, 65536);
    cr_expect_eq(l->backlog, 16);
    cr_expect(l->reuseport);
    cr_expect(!l->tcp_nodelay);
    cr_expect_eq(l->lingering_timeout_ms, 2000);
    cr_expect_eq(l->lingering_max, 1 << 20);
    cr_expect_eq(l->line, 6);
    cr_expect(strstr(l->file, "t.conf") != NULL);
    l = &conf.listen[1];                  /* without a block: all defaults */
    cr_expect_str_eq(l->app, "echo");
    cr_expect_eq(l->framing, TP_FRAMING_LINE);
    cr_expect_eq(l->max_message, 65536);
    cr_expect_eq(l->line, 18);
    cr_expect_eq(conf.listen[2].framing, TP_FRAMING_RAW);
}

Test(conf, workers_auto_and_zero)
{
    cr_assert_eq(load("workers auto; listen 7000;"), 0, "%s", err);
    cr_expect_eq(conf.workers, -1);
    cr_expect_eq(tp_conf_workers(&conf), (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
    cr_assert_eq(load("workers 0; listen 7000;"), 0, "%s", err);
    cr_expect_eq(conf.workers, 0);
    cr_expect_eq(tp_conf_workers(&conf), 0);
}

Test(conf, include_relative_and_glob)
{
    char sub[PATH_MAX];

    snprintf(sub, sizeof(sub), "%s/conf.d", dir);
    cr_assert_eq(mkdir(sub, 0700), 0);
    put("conf.d/a.conf", "listen 127.0.0.1:7101;\n");
    put("conf.d/b.conf", "listen 127.0.0.1:7102 { app upper; }\n");
    put("limits.conf", "\n\nmax_connections 7;\n");
    put("inner.conf", "framing raw;\n");
    cr_assert_eq(load("include limits.conf;\n"
                      "include conf.d/*.conf;\n"
                      "include conf.d/*.none;\n"
                      "listen 127.0.0.1:7103 { include inner.conf; }\n"), 0, "%s", err);
    cr_expect_eq(conf.max_connections, 7);
    cr_assert_eq(conf.nlisten, 3);
    cr_expect_eq(ntohs(((struct sockaddr_in *)&conf.listen[0].addr)->sin_port), 7101);
    cr_expect_str_eq(conf.listen[1].app, "upper");
    cr_expect_eq(conf.listen[2].framing, TP_FRAMING_RAW);
}

Test(conf, error_in_included_file_names_that_file)
{
    char want[PATH_MAX + 64];

    put("bad.conf", "# fine\nworkers many;\n");
    cr_assert_eq(load("listen 7000;\ninclude bad.conf;\n"), -1);
    snprintf(want, sizeof(want), "%s/bad.conf:2: ", dir);
    cr_expect(strncmp(err, want, strlen(want)) == 0, "%s", err);
}

Test(conf, include_missing_names_the_including_line)
{
    expect_error("listen 7000;\n\ninclude nope.conf;\n", 3, "cannot open");
}

Test(conf, include_loop_is_stopped)
{
    put("loop.conf", "include loop.conf;\n");
    cr_assert_eq(load("include loop.conf;\nlisten 7000;\n"), -1);
    cr_expect(strstr(err, "nested deeper") != NULL, "%s", err);
}

Test(conf, unknown_directive)
{
    expect_error("listen 7000;\n\nwrokers 4;\n", 3, "unknown directive \"wrokers\"");
}

Test(conf, bad_values)
{
    expect_error("workers many;\nlisten 7000;\n", 1, "invalid value \"many\" for \"workers\"");
    expect_error("workers 257;\nlisten 7000;\n", 1, "0..256");
    expect_error("max_connections 0;\nlisten 7000;\n", 1, "max_connections");
    expect_error("log_level loud;\nlisten 7000;\n", 1, "error, warn, info or debug");
    expect_error("shutdown_timeout 5x;\nlisten 7000;\n", 1, "a time");
    expect_error("queue_max 1k;\nlisten 7000;\n", 1, "queue_max");
    expect_error("listen 7000 {\n framing lines;\n}\n", 2, "line, length, raw or http");
    expect_error("listen 7000 {\n max_message 0;\n}\n", 2, "max_message");
    expect_error("listen 7000 {\n max_message 65m;\n}\n", 2, "max_message");
    expect_error("listen 7000 {\n send_buffer_max 1k;\n}\n", 2, "send_buffer_max");
    expect_error("listen 7000 {\n backlog 70000;\n}\n", 2, "1..65535");
    expect_error("listen 7000 {\n reuseport yes;\n}\n", 2, "\"on\" or \"off\"");
    expect_error("listen 7000 {\n\n idle_timeout soon;\n}\n", 3, "idle_timeout");
    expect_error("listen 7000 {\n read_timeout 1y;\n}\n", 2, "read_timeout");
    expect_error("listen 127.0.0.1:99999;\n", 1, "ADDR:PORT");
}

Test(conf, unknown_app_lists_the_known_ones)
{
    expect_error("listen 7000 {\n  app ecko;\n}\n", 2, "unknown app \"ecko\" (apps: echo, upper)");
}

Test(conf, missing_semicolon)
{
    expect_error("workers 2\nlog_level info;\nlisten 7000;\n", 1, "missing \";\" after \"workers 2\"");
    expect_error("listen 7000 {\n  app echo\n}\n", 2, "missing \";\"");
    expect_error("listen 7000;\nworkers 2", 2, "missing \";\"");
    expect_error("listen 7000;\nworkers 2 3;\n", 2, "too many values");
}

Test(conf, braces)
{
    expect_error("listen 7000;\n}\n", 2, "unexpected \"}\"");
    expect_error("listen 7000 {\n  app echo;\n", 3, "needs \"}\"");
    expect_error("listen 7000;\n{\n", 2, "unexpected \"{\"");
    expect_error("listen 7000;\nworkers 2 {\n}\n", 2, "takes no block");
    expect_error("listen 7000 {\n  listen 7001;\n}\n", 2, "not allowed inside a listen block");
    expect_error("listen 7000;\napp echo;\n", 2, "not allowed outside a listen block");
}

Test(conf, duplicates)
{
    expect_error("workers 1;\nlisten 7000;\nworkers 2;\n", 3, "\"workers\" is duplicate (first at ");
    cr_expect(strstr(err, "t.conf:1)") != NULL, "%s", err);
    expect_error("listen 7000 {\n  app echo;\n  app upper;\n}\n", 3, "is duplicate");
    expect_error("shutdown_delay 1s;\nlisten 7000;\nshutdown_delay 2s;\n", 3,
                 "\"shutdown_delay\" is duplicate (first at ");
    expect_error("listen 7000;\nshutdown_delay soon;\n", 2, "shutdown_delay");
    expect_error("listen 127.0.0.1:7000;\nlisten 127.0.0.1:7000;\n", 2,
                 "duplicate listen \"127.0.0.1:7000\" (first at ");
    /* The same directive in two blocks is fine; two port-0 listeners too. */
    cr_expect_eq(load("listen 7000 { app echo; }\nlisten 7001 { app echo; }\n"
                      "listen 127.0.0.1:0;\nlisten 127.0.0.1:0;\n"), 0, "%s", err);
}

Test(conf, quotes_and_tokens)
{
    expect_error("listen 7000;\nlog_level \"info;\n\n", 2, "unterminated quoted string");
    cr_assert_eq(load("log_level \"debug\";\nlisten '7000';\n"), 0, "%s", err);
    cr_expect_eq(conf.log_level, TP_LOG_DEBUG);
}

Test(conf, no_listen_and_empty_file)
{
    cr_assert_eq(load("workers 1;\n"), -1);
    cr_expect(strstr(err, "no listen block") != NULL, "%s", err);
    cr_assert_eq(load(""), -1);
    cr_expect(strstr(err, "no listen block") != NULL, "%s", err);
}

Test(conf, cannot_open)
{
    cr_assert_eq(tp_conf_load(&conf, "/nonexistent/x.conf", apps, err, sizeof(err)), -1);
    cr_expect_str_eq(err, "/nonexistent/x.conf: cannot open: No such file or directory");
    cr_assert_eq(tp_conf_load(&conf, dir, apps, err, sizeof(err)), -1);
    cr_expect(strstr(err, "it is a directory") != NULL, "%s", err);
}

Test(conf, hostile_input_is_refused_cleanly)
{
    static char big[8192];

    memset(big, 'a', sizeof(big) - 1);
    expect_error(big, 1, "longer than");
    static const char nul[] = "listen 7000;\nworkers 1\0;\n";
    FILE *f;

    f = fopen(put("nul.conf", ""), "w");
    cr_assert_not_null(f);
    fwrite(nul, 1, sizeof(nul) - 1, f);
    fclose(f);
    snprintf(big, sizeof(big), "%s/nul.conf", dir);
    cr_assert_eq(tp_conf_load(&conf, big, apps, err, sizeof(err)), -1);
    cr_expect(strstr(err, "nul.conf:2: NUL byte") != NULL, "%s", err);
    memset(big, 'a', sizeof(big) - 1);
    expect_error("listen 7000;\nworkers 1 2 3 4 5 6 7 8 9 10;\n", 2, "too many values for \"workers\"");
}

Test(conf, reads_a_pipe_and_refuses_a_huge_file)
{
    static char huge[(1 << 20) + 100];
    char cmd[PATH_MAX + 64];
    FILE *f;

    /* As from `tidepool -t -c <(generate)`: a pipe has no size up front. */
    snprintf(cmd, sizeof(cmd), "mkfifo %s/fifo", dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "printf 'workers 3;\\nlisten 7000;\\n' > %s/fifo &", dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s/fifo", dir);
    cr_assert_eq(tp_conf_load(&conf, cmd, apps, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(conf.workers, 3);

    memset(huge, '#', sizeof(huge) - 1);
    f = fopen(put("huge.conf", ""), "w");
    cr_assert_not_null(f);
    fputs(huge, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "%s/huge.conf", dir);
    cr_assert_eq(tp_conf_load(&conf, cmd, apps, err, sizeof(err)), -1);
    cr_expect(strstr(err, "is larger than") != NULL, "%s", err);
}

Test(conf, too_many_listeners)
{
    static char text[8192];
    size_t n = 0;
    int i;

    for (i = 0; i < TP_CONF_MAX_LISTEN + 1; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "listen %d;\n", 7000 + i);
    expect_error(text, TP_CONF_MAX_LISTEN + 1, "more than");
}

Test(conf, allow_deny_keep_their_order_and_limits_parse)
{
    cr_assert_eq(load("listen 7000 {\n  deny 10.1.2.3;\n  allow 10.0.0.0/8;\n"
                      "  allow 2001:db8::/32;\n  deny all;\n"
                      "  max_connections_per_ip 20;\n  accept_rate_per_ip 50/s;\n}\n"
                      "listen 7001 {\n  accept_rate_per_ip 30/m;\n}\n"
                      "listen 7002 {\n  accept_rate_per_ip 7;\n}\n"), 0, "%s", err);
    cr_assert_eq(conf.listen[0].nacl, 4);
    cr_assert(!conf.listen[0].acl[0].allow && conf.listen[0].acl[0].prefix == 32);
    cr_assert(conf.listen[0].acl[1].allow && conf.listen[0].acl[1].prefix == 8);
    cr_assert(conf.listen[0].acl[2].allow && conf.listen[0].acl[2].family == AF_INET6);
    cr_assert(!conf.listen[0].acl[3].allow && conf.listen[0].acl[3].all);
    cr_assert_eq(conf.listen[0].max_conns_per_ip, 20);
    cr_assert_eq(conf.listen[0].accept_rate_per_ip, 50 * 60, "kept per minute");
    cr_assert_eq(conf.listen[1].accept_rate_per_ip, 30);
    cr_assert_eq(conf.listen[2].accept_rate_per_ip, 7 * 60, "a bare number is per second");
    cr_assert_eq(conf.listen[1].nacl, 0, "rules belong to their block");
    cr_assert_eq(conf.listen[1].max_conns_per_ip, 0, "off by default");
}

Test(conf, allow_deny_errors_name_the_line)
{
    expect_error("listen 7000 {\n  allow 10.0.0.1/8;\n}\n", 2, "bits set past its prefix");
    expect_error("listen 7000 {\n\n  deny 10.0.0.0/40;\n}\n", 3,
                 "invalid value \"10.0.0.0/40\" for \"deny\"");
    expect_error("allow all;\nlisten 7000;\n", 1, "\"allow\" is not allowed outside a listen block");
    expect_error("listen 7000 {\n  accept_rate_per_ip 5/h;\n}\n", 2, "a rate such as 20/s");
    expect_error("listen 7000 {\n  max_connections_per_ip many;\n}\n", 2,
                 "invalid value \"many\" for \"max_connections_per_ip\"");
    expect_error("listen 7000 {\n  max_connections_per_ip 1;\n  max_connections_per_ip 2;\n}\n",
                 3, "duplicate");
}

Test(conf, too_many_rules_is_an_error_not_a_truncation)
{
    static char text[8192];
    size_t n = (size_t)snprintf(text, sizeof(text), "listen 7000 {\n");

    for (int i = 0; i <= TP_CONF_MAX_ACL; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "  deny 10.0.%d.0/24;\n", i);
    snprintf(text + n, sizeof(text) - n, "}\n");
    expect_error(text, TP_CONF_MAX_ACL + 2, "too many allow/deny rules");
}

/* Every directive at a value that is not its default, written out by
 * tp_conf_dump and read back: the same conf, field by field. A directive the
 * dump forgets comes back as its default and fails here. */
Test(conf, dump_loads_back_to_the_same_values)
{
    static struct tp_conf first;
    char *text = NULL;
    size_t len = 0;
    FILE *mem;

    cr_assert_eq(load("workers 3;\nprocesses 2;\nmax_connections 100;\nlog_level debug;\n"
                      "shutdown_timeout 1m30s;\nshutdown_delay 4s;\nqueue_max 3m;\nerror_log \"/tmp/a b.log\";\n"
                      "user nobody;\n"
                      "listen [::1]:7001 {\n  app upper;\n  framing length;\n  max_message 100k;\n"
                      "  idle_timeout 0;\n  read_timeout 1500ms;\n  send_buffer_max 65537;\n"
                      "  lingering_timeout 2s;\n  lingering_max 1m;\n  backlog 16;\n"
                      "  reuseport on;\n  tcp_nodelay off;\n  allow 2001:db8::/32;\n"
                      "  deny 10.0.0.0/8;\n  allow all;\n  max_connections_per_ip 7;\n"
                      "  accept_rate_per_ip 90/m;\n  http_body \"hi \\\"there\\\"\\n\";\n"
                      "  chat_prefix on;\n  join_notice on;\n"
                      "  shutdown_message \"bye \\\"now\\\"\\tall\";\n}\n"
                      "listen 127.0.0.1:7002 { chat_redis 127.0.0.1:6379; chat_channel r-1; }\n"
                      "listen 127.0.0.1:7003 { chat_redis [::1]:6380; }\n"), 0, "%s", err);
    first = conf;
    mem = open_memstream(&text, &len);
    cr_assert_not_null(mem);
    cr_assert_eq(tp_conf_dump(&first, mem), 0);
    fclose(mem);
    cr_assert_eq(load(text), 0, "%s\n%s", err, text);
    cr_expect_eq(conf.workers, first.workers);
    cr_expect_eq(conf.processes, 2);
    cr_expect_eq(conf.processes, first.processes);
    cr_expect_eq(conf.max_connections, first.max_connections);
    cr_expect_eq(conf.log_level, first.log_level);
    cr_expect_eq(conf.shutdown_timeout_ms, first.shutdown_timeout_ms);
    cr_expect_eq(conf.shutdown_delay_ms, 4000);
    cr_expect_eq(conf.shutdown_delay_ms, first.shutdown_delay_ms);
    cr_expect_eq(conf.queue_max, first.queue_max);
    cr_expect_str_eq(conf.error_log, first.error_log);
    cr_expect_str_eq(conf.user, first.user);
    cr_assert_eq(conf.nlisten, first.nlisten);
    for (size_t i = 0; i < conf.nlisten; i++) {
        struct tp_listen_conf a = first.listen[i], b = conf.listen[i];

        memset(a.file, 0, sizeof(a.file));
        memset(b.file, 0, sizeof(b.file));
        a.line = b.line = 0;
        a.framing_line = b.framing_line = 0;
        a.chat_redis_line = b.chat_redis_line = 0;
        cr_expect(memcmp(&a, &b, sizeof(a)) == 0, "listen %zu differs after the dump:\n%s", i, text);
    }
    free(text);
}

Test(conf, chat_redis_and_chat_channel)
{
    cr_assert_eq(load("listen 127.0.0.1:7000 { chat_redis 10.1.2.3:6379; chat_channel lobby; }\n"
                      "listen 127.0.0.1:7001 { chat_redis [::1]:6379; }\n"
                      "listen 127.0.0.1:7002 { chat_redis off; }\n"
                      "listen 127.0.0.1:7003;\n"), 0, "%s", err);
    cr_expect_str_eq(conf.listen[0].chat_redis_host, "10.1.2.3");
    cr_expect_eq(conf.listen[0].chat_redis_port, 6379);
    cr_expect_str_eq(conf.listen[0].chat_channel, "lobby");
    cr_expect_eq(conf.listen[0].chat_redis_line, 1);
    cr_expect_str_eq(conf.listen[1].chat_redis_host, "::1");
    cr_expect_str_eq(conf.listen[1].chat_channel, "tidepool");
    cr_expect_str_eq(conf.listen[2].chat_redis_host, "");
    cr_expect_str_eq(conf.listen[3].chat_redis_host, "");
    expect_error("listen 127.0.0.1:7000 {\n chat_redis redis.local:6379;\n}\n", 2,
                 "invalid value \"redis.local:6379\" for \"chat_redis\"");
    expect_error("listen 127.0.0.1:7000 {\n chat_redis *:6379;\n}\n", 2, "IP:PORT");
    expect_error("listen 127.0.0.1:7000 {\n chat_redis 6379;\n}\n", 2, "IP:PORT");
    expect_error("listen 127.0.0.1:7000 {\n chat_redis 127.0.0.1:0;\n}\n", 2, "1..65535");
    expect_error("listen 127.0.0.1:7000 {\n chat_channel \"a b\";\n}\n", 2, "no space");
    expect_error("listen 127.0.0.1:7000 {\n chat_channel \"\";\n}\n", 2, "1..128");
    expect_error("listen 127.0.0.1:7000 { chat_redis off;\n chat_redis off; }\n", 2,
                 "is duplicate");
}

Test(conf, processes_and_the_ports_they_share)
{
    cr_assert_eq(load("processes auto;\nlisten 127.0.0.1:7000;\n"), 0, "%s", err);
    cr_assert_eq(conf.processes, -1);
    cr_assert_geq(tp_conf_processes(&conf), 1);
    cr_assert_eq(load("processes 4;\nworkers auto;\nlisten 7000;\n"), 0, "%s", err);
    cr_assert_eq(tp_conf_processes(&conf), 4);
    cr_assert_geq(tp_conf_workers(&conf), 1, "auto workers are the CPUs shared, at least one");
    cr_assert_eq(load("listen 7000;\n"), 0, "%s", err);
    cr_assert_eq(conf.processes, 1, "one process by default");
    expect_error("processes 0;\nlisten 7000;\n", 1, "1..256");
    expect_error("processes 2;\nlisten 127.0.0.1:7000;\n\nlisten 127.0.0.1:0;\n", 4,
                 "port 0 cannot be shared by several processes");
}

Test(conf, a_device_is_refused_not_read)
{
    /* /dev/zero would be read up to the size limit, a tty would wait for
     * input: neither is a conf. */
    expect_error("listen 7000;\n\ninclude /dev/zero;\n", 3, "\"/dev/zero\": it is not a file or a pipe");
}

Test(conf, an_error_is_one_line_whatever_the_file_holds)
{
    /* A quoted word spanning lines, then the missing ';' that quotes it back. */
    cr_assert_eq(load("listen \"127.0.0.1:7000 {\n\ty\nerror_log \" x;\n"), -1);
    cr_assert_null(strchr(err, '\n'), "a newline in the error: %s", err);
    cr_assert_not_null(strstr(err, "7000 {\\n\\x09y\\nerror_log"), "shown escaped: %s", err);
}

Test(conf, restart_only_directives_remember_where_they_were_written)
{
    char want[PATH_MAX];

    /* A reload names these lines when it cannot apply them. */
    cr_assert_eq(load("workers 1;\n\nprocesses 2;\nuser nobody;\nerror_log x.log;\n"
                      "listen 127.0.0.1:7000;\n"), 0, "%s", err);
    snprintf(want, sizeof(want), "%s/t.conf", dir);
    cr_expect_str_eq(conf.processes_at.file, want);
    cr_expect_eq(conf.processes_at.line, 3);
    cr_expect_str_eq(conf.user_at.file, want);
    cr_expect_eq(conf.user_at.line, 4);
    cr_expect_eq(conf.error_log_at.line, 5);
    cr_assert_eq(load("listen 127.0.0.1:7000;\n"), 0, "%s", err);
    cr_expect_eq(conf.processes_at.line, 0, "not written: no place");
    cr_expect_str_eq(conf.processes_at.file, "");
    cr_expect_eq(conf.user_at.line, 0);
    cr_expect_eq(conf.error_log_at.line, 0);
}
