/* tp_stress_report.c - a run's --json read back with jansson. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tp_stress_report.h"

int tp_stress_report_load(struct tp_stress_report *r, const char *path, char *err,
                          size_t errlen)
{
    const char *base = strrchr(path, '/'), *tool;
    json_error_t je;
    size_t len;

    memset(r, 0, sizeof(*r));
    r->path = path;
    base = base != NULL ? base + 1 : path;
    len = strlen(base);
    if (len > 5 && strcmp(base + len - 5, ".json") == 0)
        len -= 5;
    if (len >= sizeof(r->name))
        len = sizeof(r->name) - 1;
    memcpy(r->name, base, len);
    r->root = json_load_file(path, 0, &je);
    if (r->root == NULL) {
        if (je.line > 0)
            snprintf(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        else
            snprintf(err, errlen, "%s: %s", path, je.text);
        return -EINVAL;
    }
    tool = json_string_value(json_object_get(r->root, "tool"));
    if (!json_is_object(r->root) || tool == NULL || strcmp(tool, "tidepool-stress") != 0) {
        snprintf(err, errlen, "%s: not the --json of a tidepool-stress run (no \"tool\": "
                 "\"tidepool-stress\")", path);
        tp_stress_report_fini(r);
        return -EINVAL;
    }
    return 0;
}

void tp_stress_report_fini(struct tp_stress_report *r)
{
    json_decref(r->root);
    r->root = NULL;
}

/* The value at a dotted key. */
static json_t *lookup(const struct tp_stress_report *r, const char *key)
{
    char part[64];
    json_t *v = r->root;
    const char *dot;
    size_t len;

    while (v != NULL) {
        dot = strchr(key, '.');
        len = dot != NULL ? (size_t)(dot - key) : strlen(key);
        if (len >= sizeof(part))
            return NULL;
        memcpy(part, key, len);
        part[len] = '\0';
        v = json_object_get(v, part);
        if (dot == NULL)
            return v;
        key = dot + 1;
    }
    return NULL;
}

bool tp_stress_report_number(const struct tp_stress_report *r, const char *key, double *v)
{
    json_t *j = lookup(r, key);

    if (!json_is_number(j))
        return false;
    *v = json_number_value(j);
    return true;
}

const char *tp_stress_report_string(const struct tp_stress_report *r, const char *key)
{
    const char *s = json_string_value(lookup(r, key));

    return s != NULL ? s : "";
}
