/* tp_apps.c - the table of shipped apps. */
#include "tp_apps.h"

#include <string.h>

static const struct tp_app *const apps[] = { &tp_app_echo, &tp_app_upper, &tp_app_http,
                                              &tp_app_chat, &tp_app_metrics };
static const char *const names[] = { "echo", "upper", "http", "chat", "metrics", NULL };

const struct tp_app *tp_apps_find(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(apps) / sizeof(apps[0]); i++)
        if (strcmp(apps[i]->name, name) == 0)
            return apps[i];
    return NULL;
}

const char *const *tp_apps_names(void)
{
    return names;
}
