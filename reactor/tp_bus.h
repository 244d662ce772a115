/* tp_bus.h - a chat room's link to Redis pub/sub (`chat_redis`,
 * `chat_channel`), so that rooms of several tidepool instances are one room.
 *
 * What the room's members say is published to the channel, marked with this
 * instance's id; what the channel carries from other instances is handed to
 * deliver() for the local members; our own lines coming back are dropped, so
 * nobody gets a line twice. One connection publishes (in the order the
 * reactor hands runs over, so each sender's order holds across instances)
 * and one subscribes (Redis does not let a subscribed connection publish).
 *
 * Both are hiredis asynchronous contexts driven by the reactor's own epoll
 * through hiredis's adapter hooks; nothing here blocks (the address is
 * numeric, the connect non-blocking). While Redis is unreachable the room
 * goes on locally: runs not published are counted as dropped, the outage is
 * logged once, and each connection retries with a back-off from 100 ms to
 * 5 s. Reactor thread only. */
#ifndef TP_BUS_H
#define TP_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "tp_conf.h"

typedef struct tp_bus tp_bus_t;

struct tp_bus_stats {
    uint64_t published;     /* runs Redis took (PUBLISH answered) */
    uint64_t delivered;     /* runs from other instances handed to deliver() */
    uint64_t dropped;       /* runs not published: Redis down, or over max_unsent */
    uint64_t connects;      /* connections made, both links, first ones included */
};

struct tp_bus_opts {
    const char *host;       /* numeric IPv4 or IPv6 address */
    uint16_t port;
    const char *channel;
    const char *name;       /* the listener's, for the log */
    int epfd;               /* the reactor's epoll: the bus adds its fds there */
    uint8_t source;         /* the first byte of what the bus's epoll events
                               point at, for the reactor's dispatch */
    uint64_t max_unsent;    /* published bytes Redis has not yet answered, at
                               most; past it a run is dropped (counted) */
    /* Bytes from another instance, whole lines (the last may lack its '\n'
     * if a foreign publisher sent one so). */
    void (*deliver)(void *arg, unsigned tag, const char *data, size_t len);
    void (*log)(void *arg, enum tp_log_level level, const char *msg);
    void *arg;
    unsigned tag;           /* handed back to deliver() */
};

/* Starts connecting both links. Returns NULL with errno set (ENOMEM). */
tp_bus_t *tp_bus_create(const struct tp_bus_opts *o, int64_t now_ms);

/* Publishes a run of whole lines, as the room's members sent them. */
void tp_bus_publish(tp_bus_t *b, const char *data, size_t len);

/* An epoll event whose data.ptr the bus registered (the first byte is
 * opts->source). */
void tp_bus_event(void *ptr, uint32_t events);

/* When tp_bus_tick() is next due (a retry, a connect deadline); INT64_MAX
 * if nothing is. */
int64_t tp_bus_next_ms(const tp_bus_t *b);

/* Retries what is due at now_ms. */
void tp_bus_tick(tp_bus_t *b, int64_t now_ms);

void tp_bus_stats(const tp_bus_t *b, struct tp_bus_stats *st);

/* Closes both links (unanswered publishes are counted as dropped). */
void tp_bus_destroy(tp_bus_t *b);

#endif /* TP_BUS_H */
