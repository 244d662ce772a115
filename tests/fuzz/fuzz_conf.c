/* fuzz_conf.c - libFuzzer harness for the conf parser (conf/tp_conf.c).
 *
 * Input: any bytes, written as a conf file in the harness's own temporary
 * directory (which also holds sub.conf and d/x.conf for includes to find)
 * and loaded with tp_conf_load(). It checks:
 *   - a refused conf gets one line of error that names the file;
 *   - an accepted one has a listener, and tp_conf_dump() of it loads back,
 *     and dumps the same again (the dump is a fixed point).
 * Inputs that include by absolute path or through ".." are skipped, so
 * includes stay in the temporary directory. Any disagreement traps. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tp_conf.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const apps[] = { "echo", "upper", NULL };
static char dir[64];

static void put(const char *name, const void *text, size_t n)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(text, 1, n, f) == n);
    fclose(f);
}

static void setup(void)
{
    char path[128];

    snprintf(dir, sizeof(dir), "/tmp/tp_fuzz_conf_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    put("sub.conf", "listen 127.0.0.1:7001 { app upper; }\n", 38);
    snprintf(path, sizeof(path), "%s/d", dir);
    CHECK(mkdir(path, 0700) == 0);
    put("d/x.conf", "max_message 1k;\n", 16);
}

/* Whether text includes something outside the directory. */
static bool escapes(const uint8_t *text, size_t n)
{
    for (size_t i = 0; i + 7 <= n; i++) {
        size_t j = i + 7;

        if (memcmp(text + i, "include", 7) != 0)
            continue;
        while (j < n && (text[j] == ' ' || text[j] == '\t' || text[j] == '\n' ||
                         text[j] == '\r' || text[j] == '"' || text[j] == '\'' || text[j] == '\\'))
            j++;
        if (j < n && text[j] == '/')
            return true;
    }
    for (size_t i = 0; i + 2 <= n; i++)
        if (text[i] == '.' && text[i + 1] == '.')
            return true;
    return false;
}

static char *dump(const struct tp_conf *conf, size_t *len)
{
    char *text = NULL;
    FILE *mem = open_memstream(&text, len);

    CHECK(mem != NULL);
    CHECK(tp_conf_dump(conf, mem) == 0);
    CHECK(fclose(mem) == 0);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct tp_conf conf, again;
    char path[128], err[512];
    char *first, *second;
    size_t n1, n2;

    if (dir[0] == '\0')
        setup();
    if (escapes(data, size))
        return 0;
    put("fuzz.conf", data, size);
    snprintf(path, sizeof(path), "%s/fuzz.conf", dir);
    err[0] = '\0';
    if (tp_conf_load(&conf, path, apps, err, sizeof(err)) < 0) {
        CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
        CHECK(strncmp(err, dir, strlen(dir)) == 0);      /* names a file of ours */
        return 0;
    }
    CHECK(conf.nlisten >= 1 && conf.nlisten <= TP_CONF_MAX_LISTEN);
    first = dump(&conf, &n1);
    put("dump.conf", first, n1);
    snprintf(path, sizeof(path), "%s/dump.conf", dir);
    CHECK(tp_conf_load(&again, path, apps, err, sizeof(err)) == 0);
    second = dump(&again, &n2);
    CHECK(n1 == n2 && memcmp(first, second, n1) == 0);
    free(first);
    free(second);
    return 0;
}
