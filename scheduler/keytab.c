/*
 * keytab.c: the keyed row table of the usage and ledger reports (keytab.h).
 */
#include <stdlib.h>
#include <string.h>

#include "keytab.h"

/* FNV-1a */
static unsigned key_hash(const char *s)
{
    unsigned h = 2166136261u;

    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

void *keytab_get(keytab_t *t, const char *key, size_t size)
{
    unsigned h = key_hash(key) % KEYTAB_BUCKETS;
    keytab_entry_t *r;

    for (r = t->b[h]; r; r = r->next)
        if (strcmp(r->key, key) == 0)
            return r;
    r = calloc(1, size);
    if (!r || !(r->key = strdup(key))) {
        free(r);
        return NULL;
    }
    r->next = t->b[h];
    t->b[h] = r;
    if (t->last)
        t->last->order = r;
    else
        t->first = r;
    t->last = r;
    t->n++;
    return r;
}

void keytab_clear(keytab_t *t, void (*each_free)(void *row))
{
    for (keytab_entry_t *r = t->first, *n; r; r = n) {
        n = r->order;
        if (each_free)
            each_free(r);
        free(r->key);
        free(r);
    }
    memset(t, 0, sizeof(*t));
}
