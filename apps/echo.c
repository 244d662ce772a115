/* echo.c - replies with each message unchanged. */
#include "tp_apps.h"

/* A whole run of messages is its own reply: one call however many lines. */
static int echo_batch(struct tp_call *call, char *data, size_t len)
{
    (void)call;
    (void)data;
    (void)len;
    return TP_APP_KEEP;
}

const struct tp_app tp_app_echo = {
    .name = "echo",
    .batch = echo_batch,
};
