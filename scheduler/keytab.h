/*
 * keytab.h: rows summed by a string key, for the usage and ledger reports:
 * a chained hash table (FNV-1a) that also keeps the insertion order, so a
 * report can walk its rows in the order they first appeared.
 *
 * A row type puts keytab_entry_t first (`typedef struct { keytab_entry_t e;
 * double hours; } row_t;`) and gets its rows with keytab_get(t, key,
 * sizeof(row_t)). Lookup and insertion are O(1) on average; memory is one
 * allocation per row plus its key.
 */
#ifndef FT_SCHED_KEYTAB_H
#define FT_SCHED_KEYTAB_H

#include <stddef.h>

#define KEYTAB_BUCKETS 1024

typedef struct keytab_entry {
    char *key;                  /* the row's key (owned) */
    struct keytab_entry *next;  /* hash chain */
    struct keytab_entry *order; /* next row in insertion order */
} keytab_entry_t;

typedef struct {
    keytab_entry_t *b[KEYTAB_BUCKETS]; /* hash buckets */
    keytab_entry_t *first, *last;      /* insertion order */
    int n;                             /* rows */
} keytab_t;

/* The row for key, created zeroed (size bytes, keytab_entry_t first) when
 * new; NULL on out of memory. */
void *keytab_get(keytab_t *t, const char *key, size_t size);
/* Frees every row (each_free, when not NULL, frees a row's own fields
 * first) and empties t. */
void keytab_clear(keytab_t *t, void (*each_free)(void *row));

#endif
