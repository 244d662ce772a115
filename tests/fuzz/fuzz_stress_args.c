/* fuzz_stress_args.c - libFuzzer harness for tidepool-stress's command line
 * (apps/stress/tp_stress_args.c and the HOST:PORT and --src parsers).
 *
 * Input: any bytes, cut at NUL bytes into arguments after argv[0]. It checks:
 *   - the parser returns 0 or -EINVAL, never anything else;
 *   - a refusal comes with one printable line of error;
 *   - an accepted command line holds the invariants the engine relies on
 *     (counts in range, threads <= connections, bytes in flight bounded, a
 *     target address, the chat rules);
 *   - parsing the same arguments again gives the same options (getopt's
 *     state is reset between parses).
 * Host names are resolved numerically only (getaddrinfo below adds
 * AI_NUMERICHOST), so no input makes the harness wait on DNS. Any
 * disagreement traps. */
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tp_stress_args.h"
#include "tp_stress_line.h"
#include "tp_stress_msg.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)
#define MAX_ARGS 32
#define MAX_ARG_LEN 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef int getaddrinfo_fn(const char *, const char *, const struct addrinfo *,
                           struct addrinfo **);

/* The parser's getaddrinfo, numeric only: "localhost" or any name fails at
 * once with EAI_NONAME instead of asking a resolver. */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static getaddrinfo_fn *real;
    struct addrinfo h;

    if (real == NULL)
        real = (getaddrinfo_fn *)dlsym(RTLD_NEXT, "getaddrinfo");
    CHECK(real != NULL);
    memset(&h, 0, sizeof(h));
    if (hints != NULL)
        h = *hints;
    h.ai_flags |= AI_NUMERICHOST;
    return real(node, service, &h, res);
}

/* Cuts data at NUL bytes into argv[1..]; argv[0] is the program. */
static int split(const uint8_t *data, size_t size, char *buf, char **argv)
{
    int argc = 1;
    size_t i = 0;

    argv[0] = "tidepool-stress";
    memcpy(buf, data, size);
    buf[size] = '\0';
    while (i <= size && argc < MAX_ARGS) {
        size_t len = strlen(buf + i);

        if (len > MAX_ARG_LEN)
            return -1;
        argv[argc++] = buf + i;
        i += len + 1;
    }
    argv[argc] = NULL;
    return i <= size ? -1 : argc;        /* more arguments than we take: skip */
}

static bool one_printable_line(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static void check_accepted(const struct tp_stress_opts *o)
{
    CHECK(o->action == TP_STRESS_RUN || o->action == TP_STRESS_HELP ||
          o->action == TP_STRESS_VERSION);
    if (o->action != TP_STRESS_RUN)
        return;
    CHECK(o->conns >= 1 && o->threads >= 1 && o->threads <= o->conns);
    CHECK(o->size >= TP_STRESS_MSG_MIN && o->size <= TP_STRESS_MSG_MAX);
    CHECK(o->depth >= 1 && (uint64_t)o->depth * o->size <= (64u << 20));
    CHECK(o->duration_ns > 0 && o->timeout_ns > 0);
    CHECK(o->window >= 1 && o->rate >= 0 && o->ramp >= 0);
    CHECK(o->target.naddr >= 1 && o->target.naddr <= TP_STRESS_MAX_ADDRS);
    CHECK((unsigned)o->mode <= TP_STRESS_CHAT);
    CHECK(o->channel != NULL && o->channel[0] != '\0');
    CHECK(o->json_path == NULL || o->json_path[0] != '\0');
    CHECK(o->csv_path == NULL || (o->csv_path[0] != '\0' && o->interval_ns > 0));
    CHECK(o->hgrm_path == NULL || o->hgrm_path[0] != '\0');
    if (o->mode == TP_STRESS_CHAT) {
        CHECK(o->size >= TP_STRESS_LINE_MIN);
        CHECK(o->conns <= TP_STRESS_LINE_MAX_ID + 1);
        CHECK(o->proto == TP_STRESS_PROTO_RESP ||
              (o->conns >= 2 && o->senders <= o->conns));
        CHECK(o->probe_ns == 0);
    } else {
        CHECK(!o->has_chat_opts);
    }
    if (o->has_window)
        CHECK(o->mode == TP_STRESS_FLOOD);
    if (o->rate > 0)
        CHECK(o->mode != TP_STRESS_FLOOD);
}

static bool same_text(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The options both parses must agree on (pointers into argv compared by text). */
static void check_same(const struct tp_stress_opts *a, const struct tp_stress_opts *b)
{
    CHECK(a->action == b->action && a->mode == b->mode && a->conns == b->conns);
    CHECK(a->threads == b->threads && a->size == b->size && a->depth == b->depth);
    CHECK(a->duration_ns == b->duration_ns && a->messages == b->messages);
    CHECK(a->timeout_ns == b->timeout_ns && a->window == b->window);
    CHECK(a->probe_ns == b->probe_ns && a->rate == b->rate && a->ramp == b->ramp);
    CHECK(a->verify == b->verify && a->quiet == b->quiet && a->senders == b->senders);
    CHECK(a->proto == b->proto && a->skip_foreign == b->skip_foreign);
    CHECK(same_text(a->channel, b->channel) && same_text(a->json_path, b->json_path));
    CHECK(a->interval_ns == b->interval_ns && same_text(a->csv_path, b->csv_path));
    CHECK(same_text(a->hgrm_path, b->hgrm_path));
    CHECK(a->target.naddr == b->target.naddr);
    CHECK(strcmp(a->target.text, b->target.text) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct tp_stress_opts first, second;
    static char buf1[MAX_ARGS * (MAX_ARG_LEN + 1)], buf2[sizeof(buf1)];
    char *argv1[MAX_ARGS + 1], *argv2[MAX_ARGS + 1];
    char err1[512], err2[512];
    int argc, rc1, rc2;

    if (size >= sizeof(buf1))
        return 0;
    argc = split(data, size, buf1, argv1);
    if (argc < 0 || split(data, size, buf2, argv2) != argc)
        return 0;
    err1[0] = err2[0] = '\0';
    rc1 = tp_stress_args_parse(&first, argc, argv1, err1, sizeof(err1));
    rc2 = tp_stress_args_parse(&second, argc, argv2, err2, sizeof(err2));
    CHECK(rc1 == 0 || rc1 == -EINVAL);
    CHECK(rc1 == rc2);
    if (rc1 < 0) {
        CHECK(one_printable_line(err1));
        CHECK(strcmp(err1, err2) == 0);
        return 0;
    }
    check_accepted(&first);
    check_same(&first, &second);
    return 0;
}
