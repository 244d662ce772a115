/* tp_apps.h - the apps tidepool ships, by name. */
#ifndef TP_APPS_H
#define TP_APPS_H

#include "tp_app.h"

extern const struct tp_app tp_app_echo;
extern const struct tp_app tp_app_upper;
extern const struct tp_app tp_app_http;
extern const struct tp_app tp_app_chat;
extern const struct tp_app tp_app_metrics;

/* The app called name, or NULL. */
const struct tp_app *tp_apps_find(const char *name);

/* NULL-terminated list of every app's name (for tp_conf_load). */
const char *const *tp_apps_names(void);

#endif /* TP_APPS_H */
