/* tp_msg.c - message allocation: size classes and the reactor's free lists. */
#include "tp_msg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NCLASS 7

/* Whole allocation sizes, header included, and how many of each a cache
 * keeps: 8 MiB of each data class. A flood of 100 connections swings its
 * live buffers by megabytes from one loop turn to the next; with less kept,
 * malloc gives the top of its heap back to the kernel and takes it again
 * every few turns, and each new page faults (measured: 55,000 faults in 3 s
 * and a third of the throughput, against 3,000 faults with these counts).
 * The first class is a bare header (a broadcast's per-recipient slot).
 *
 * Each data class holds a power of two and SLACK more, so a message of a
 * round size and its frame header fit one buffer and one read. With 80
 * bytes less than 64 KiB, every 64 KiB line took a read that filled the
 * buffer, a copy into a 256 KiB one and a second read (0.84x the minimal
 * echo's throughput, against 1.0x now). */
#define SLACK 64        /* at least TP_FRAME_OVERHEAD + 1, the room read_room()
                           asks for beyond max_message */
#define DATA(n) (sizeof(struct tp_msg) + (n) + SLACK)
static const size_t class_size[NCLASS] = {
    sizeof(struct tp_msg), DATA(4096), DATA(16384), DATA(65536), DATA(262144),
    DATA(1048576), DATA(4194304),
};
static const uint32_t class_keep[NCLASS] = { 4096, 2048, 512, 128, 32, 8, 2 };

static unsigned class_of(size_t cap)
{
    unsigned i;

    for (i = 0; i < NCLASS; i++)
        if (cap + sizeof(struct tp_msg) <= class_size[i])
            return i;
    return TP_MSG_NOCLASS;
}

static void header_init(struct tp_msg *m, size_t cap, unsigned sclass)
{
    memset(m, 0, sizeof(*m));
    m->cap = (uint32_t)cap;
    m->sclass = (uint16_t)sclass;
}

struct tp_msg *tp_msg_new(size_t cap)
{
    unsigned sclass = class_of(cap);
    size_t size = sclass == TP_MSG_NOCLASS ? sizeof(struct tp_msg) + cap
                                           : class_size[sclass];
    struct tp_msg *m;

    if (cap > UINT32_MAX - sizeof(struct tp_msg)) {
        errno = EMSGSIZE;
        return NULL;
    }
    m = malloc(size);
    if (m == NULL)
        return NULL;
    header_init(m, size - sizeof(*m), sclass);
    return m;
}

void tp_msg_free(struct tp_msg *m)
{
    free(m);
}

size_t tp_msg_class_cap(unsigned sclass)
{
    return sclass < NCLASS ? class_size[sclass] - sizeof(struct tp_msg) : 0;
}

void tp_msg_cache_init(struct tp_msg_cache *c)
{
    memset(c, 0, sizeof(*c));
}

void tp_msg_cache_fini(struct tp_msg_cache *c)
{
    unsigned i;
    struct tp_msg *m;

    for (i = 0; i < NCLASS; i++) {
        while ((m = c->free[i]) != NULL) {
            c->free[i] = m->next;
            tp_msg_free(m);
        }
        c->count[i] = 0;
    }
}

struct tp_msg *tp_msg_cache_get(struct tp_msg_cache *c, size_t cap)
{
    unsigned i = class_of(cap);
    struct tp_msg *m;

    if (i == TP_MSG_NOCLASS || c->free[i] == NULL)
        return tp_msg_new(cap);
    m = c->free[i];
    c->free[i] = m->next;
    c->count[i]--;
    header_init(m, class_size[i] - sizeof(*m), i);
    return m;
}

void tp_msg_cache_put(struct tp_msg_cache *c, struct tp_msg *m)
{
    unsigned i = m->sclass;

    if (i >= NCLASS || c->count[i] >= class_keep[i]) {
        tp_msg_free(m);
        return;
    }
    m->next = c->free[i];
    c->free[i] = m;
    c->count[i]++;
}

struct tp_msg *tp_msg_cache_move(struct tp_msg_cache *c, struct tp_msg *m,
                                 uint32_t from, size_t cap)
{
    uint32_t keep = m->len - from;
    struct tp_msg *n;

    if (cap < keep)
        cap = keep;
    n = tp_msg_cache_get(c, cap);
    if (n == NULL)
        return NULL;
    memcpy(n->data, m->data + from, keep);
    n->len = keep;
    n->cut = m->cut > from ? m->cut - from : 0;
    n->scanned = m->scanned;
    tp_msg_cache_put(c, m);
    return n;
}
