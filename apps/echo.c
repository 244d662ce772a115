/* echo.c - replies with each message unchanged. */
#include "tp_apps.h"

static int echo_message(struct tp_call *call, char *data, size_t len)
{
    (void)call;
    (void)data;
    (void)len;
    return TP_APP_KEEP;
}

const struct tp_app tp_app_echo = {
    .name = "echo",
    .message = echo_message,
};
