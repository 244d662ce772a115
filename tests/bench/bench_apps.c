/* bench_apps.c - the app table of tidepool-bench, the benchmark's server:
 * the shipped apps (echo, upper) and two that cost CPU per message, for the
 * rows where workers should pay off. It replaces apps/tp_apps.c, so it
 * defines the two functions apps/tp_apps.h declares. */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "tp_apps.h"

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull
#define CHUNK 256                /* bytes hashed between clock reads */

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* FNV-1a over len bytes, continuing from h. */
static uint64_t fnv1a(const char *data, size_t len, uint64_t h)
{
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)data[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Hashes the message over and over until ns have passed: real work the
 * compiler cannot drop, on whichever thread runs the app. */
static void spend(const char *data, size_t len, uint64_t ns)
{
    uint64_t end = now_ns() + ns, h = FNV_OFFSET;

    do
        h = fnv1a(data, len < CHUNK ? len : CHUNK, h ^ len);
    while (now_ns() < end);
    __asm__ volatile("" : : "r"(h));      /* keep the result "used" */
}

static int cost5us_message(struct tp_call *call, char *data, size_t len)
{
    (void)call;
    spend(data, len, 5000);
    return TP_APP_KEEP;
}

static int cost50us_message(struct tp_call *call, char *data, size_t len)
{
    (void)call;
    spend(data, len, 50000);
    return TP_APP_KEEP;
}

/* Echo apps that spend 5 and 50 us of CPU on each message. */
static const struct tp_app cost5us = { .name = "cost5us", .message = cost5us_message };
static const struct tp_app cost50us = { .name = "cost50us", .message = cost50us_message };

static const struct tp_app *const apps[] = { &tp_app_echo, &tp_app_upper, &cost5us, &cost50us };
static const char *const names[] = { "echo", "upper", "cost5us", "cost50us", NULL };

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
