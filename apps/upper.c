/* upper.c - replies with each message, its ASCII letters uppercased. */
#include "tp_apps.h"

static int upper_message(struct tp_call *call, char *data, size_t len)
{
    size_t i;

    (void)call;
    for (i = 0; i < len; i++)
        if (data[i] >= 'a' && data[i] <= 'z')
            data[i] = (char)(data[i] - 'a' + 'A');
    return TP_APP_KEEP;
}

const struct tp_app tp_app_upper = {
    .name = "upper",
    .message = upper_message,
};
