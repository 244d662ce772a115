/* tp_table.c - connection slots in chunks, and the lists to come back to. */
#include "tp_table.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int tp_table_init(struct tp_table *t, uint32_t max)
{
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < TP_LISTS; i++)
        t->tail[i] = &t->list[i];
    t->nchunks = max / TP_TABLE_CHUNK + 1;
    t->chunks = calloc(t->nchunks, sizeof(*t->chunks));
    if (t->chunks == NULL)
        return -ENOMEM;
    CDS_INIT_LIST_HEAD(&t->free_slots);
    return 0;
}

void tp_table_fini(struct tp_table *t)
{
    uint32_t i;

    for (i = 0; i < t->nchunks && t->chunks != NULL; i++)
        free(t->chunks[i]);
    free(t->chunks);
    t->chunks = NULL;
}

struct tp_conn *tp_table_at(const struct tp_table *t, uint32_t i)
{
    return &t->chunks[i / TP_TABLE_CHUNK][i % TP_TABLE_CHUNK];
}

/* A slot never used before, or NULL. */
static struct tp_conn *fresh_slot(struct tp_table *t)
{
    uint32_t i = t->nslots / TP_TABLE_CHUNK;
    struct tp_conn **grown, *c;

    if (i == t->nchunks) {      /* lingering and closing slots outlast the max */
        grown = realloc(t->chunks, (t->nchunks + 1) * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        t->chunks = grown;
        t->chunks[t->nchunks++] = NULL;
    }
    if (t->chunks[i] == NULL &&
        (t->chunks[i] = calloc(TP_TABLE_CHUNK, sizeof(*c))) == NULL)
        return NULL;
    c = tp_table_at(t, t->nslots);
    c->h.slot = t->nslots++;
    return c;
}

struct tp_conn *tp_table_get(struct tp_table *t)
{
    struct tp_conn *c;
    uint32_t next[TP_LISTS];
    struct tp_handle h;
    uint16_t listed;

    if (cds_list_empty(&t->free_slots)) {
        c = fresh_slot(t);
        if (c == NULL)
            return NULL;
    } else {
        c = cds_list_first_entry(&t->free_slots, struct tp_conn, link);
        cds_list_del(&c->link);
    }
    /* A reused slot may still be on a list from its last life: keep that. */
    h = c->h;
    listed = c->flags & (uint16_t)(((1 << TP_LISTS) - 1) * TP_CONN_LISTED);
    memcpy(next, c->next, sizeof(next));
    memset(c, 0, sizeof(*c));
    c->h = h;
    c->flags = listed;
    memcpy(c->next, next, sizeof(next));
    t->live++;
    return c;
}

void tp_table_put(struct tp_table *t, struct tp_conn *c)
{
    c->state = TP_CONN_FREE;
    c->h.gen++;
    t->live--;
    cds_list_add_tail(&c->link, &t->free_slots);
}

struct tp_conn *tp_table_find(const struct tp_table *t, struct tp_handle h)
{
    struct tp_conn *c;

    if (h.slot >= t->nslots)
        return NULL;
    c = tp_table_at(t, h.slot);
    return c->h.gen == h.gen && c->state != TP_CONN_FREE ? c : NULL;
}

void tp_table_add(struct tp_table *t, enum tp_table_list which, struct tp_conn *c)
{
    uint16_t bit = (uint16_t)(TP_CONN_LISTED << which);

    if (c->flags & bit)
        return;
    c->flags |= bit;
    c->next[which] = 0;
    *t->tail[which] = c->h.slot + 1;
    t->tail[which] = &c->next[which];
}

/* The slot a list link names (slot + 1), or NULL for 0. */
static struct tp_conn *linked(const struct tp_table *t, uint32_t link)
{
    return link != 0 ? tp_table_at(t, link - 1) : NULL;
}

struct tp_conn *tp_table_take(struct tp_table *t, enum tp_table_list which)
{
    struct tp_conn *walk = linked(t, t->list[which]);

    t->list[which] = 0;
    t->tail[which] = &t->list[which];
    return walk;
}

struct tp_conn *tp_table_pop(const struct tp_table *t, struct tp_conn **walk,
                             enum tp_table_list which)
{
    struct tp_conn *c = *walk;

    if (c != NULL) {
        *walk = linked(t, c->next[which]);
        c->flags &= (uint16_t)~(TP_CONN_LISTED << which);
    }
    return c;
}

struct tp_conn *tp_table_shift(struct tp_table *t, enum tp_table_list which)
{
    struct tp_conn *c = linked(t, t->list[which]);

    if (c == NULL)
        return NULL;
    t->list[which] = c->next[which];
    if (t->list[which] == 0)
        t->tail[which] = &t->list[which];
    c->flags &= (uint16_t)~(TP_CONN_LISTED << which);
    return c;
}

struct tp_conn *tp_table_last(const struct tp_table *t, enum tp_table_list which)
{
    const char *tail = (const char *)t->tail[which];

    if (t->tail[which] == &t->list[which])
        return NULL;
    /* tail points at the last one's next[which]. */
    return (struct tp_conn *)(tail - offsetof(struct tp_conn, next) - which * sizeof(uint32_t));
}
