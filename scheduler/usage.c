/*
 * usage.c: GPU-time accounting from the allocations ledger.
 *
 * Each allocation is one device for one rank of one attempt, [start_ms,
 * end_ms) with an open interval counting up to now. An interval is clipped to
 * [since, until) and, for day and month groups, split at UTC boundaries, so
 * every millisecond of device time is counted once and in exactly one row.
 * Cost: one pass over the allocations overlapping the window; a hash table
 * of groups.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ft/json.h"
#include "keytab.h"
#include "sched_int.h"

typedef enum { G_USER, G_TEAM, G_JOB, G_NODE, G_MODEL, G_DAY, G_MONTH } group_t;

static const struct {
    const char *name; /* group_by value */
    group_t g;        /* what keys the rows */
} groups[] = {
    {"user", G_USER},       {"team", G_TEAM}, {"job", G_JOB},     {"node", G_NODE},
    {"gpu_model", G_MODEL}, {"day", G_DAY},   {"month", G_MONTH},
};

typedef struct {
    keytab_entry_t e;   /* key, chain, order: keytab.h */
    int64_t ms;         /* device milliseconds */
    int64_t jobs;       /* distinct jobs */
    int64_t intervals;  /* interval pieces counted */
    int64_t last_job;   /* last job counted (rows arrive ordered by job) */
} urow_t;

/* Start of the next UTC day or month after t_ms, and the key of t_ms's. */
int64_t sched_period_end(int64_t t_ms, bool month, char *key, size_t len)
{
    time_t t = (time_t)(t_ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(key, len, month ? "%Y-%m" : "%Y-%m-%d", &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    if (month) {
        tm.tm_mday = 1;
        tm.tm_mon += 1;
    } else {
        tm.tm_mday += 1;
    }
    return (int64_t)timegm(&tm) * 1000;
}

static int add(keytab_t *t, const char *key, int64_t job, int64_t ms)
{
    urow_t *r = keytab_get(t, key, sizeof(urow_t));

    if (!r)
        return -1;
    r->ms += ms;
    r->intervals++;
    if (r->last_job != job) {
        r->jobs++;
        r->last_job = job;
    }
    return 0;
}

static int cmp_rows(const void *a, const void *b)
{
    return strcmp((*(urow_t *const *)a)->e.key, (*(urow_t *const *)b)->e.key);
}

cJSON *sched_usage_report(sched_t *s, const char *group_by, int64_t since, int64_t until,
                          ft_err_t *err)
{
    keytab_t t;
    int gi = -1, rc;
    int64_t lo = since * 1000, hi = until * 1000, now = sched_now_ms(s);
    sqlite3_stmt *st;
    cJSON *out = NULL, *rows;
    urow_t **sorted = NULL;

    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
        if (strcmp(groups[i].name, group_by) == 0)
            gi = (int)i;
    if (gi < 0) {
        ft_err_set(
            err, FT_EBADFIELD,
            "field 'group_by': '%s' is not one of user, team, job, node, gpu_model, day, month",
            ft_sanitize(group_by, 32));
        return NULL;
    }
    memset(&t, 0, sizeof(t));
    st = db_stmt(s->db,
                 "SELECT a.job_id, j.user, j.team, a.node, a.device_model, a.start_ms,"
                 " coalesce(a.end_ms, ?1) FROM allocations a JOIN jobs j ON j.id = a.job_id"
                 " WHERE a.start_ms < ?3 AND coalesce(a.end_ms, ?1) > ?2"
                 " ORDER BY a.job_id, a.attempt, a.rank",
                 err);
    if (!st)
        return NULL;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, lo);
    sqlite3_bind_int64(st, 3, hi);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t job = sqlite3_column_int64(st, 0);
        int64_t a = sqlite3_column_int64(st, 5), b = sqlite3_column_int64(st, 6);
        char key[64];
        const char *k = key;

        if (a < lo)
            a = lo;
        if (b > hi)
            b = hi;
        if (b <= a)
            continue;
        switch (groups[gi].g) {
        case G_USER:
            k = db_col_text(st, 1);
            break;
        case G_TEAM:
            k = db_col_text(st, 2);
            break;
        case G_JOB:
            snprintf(key, sizeof(key), "%lld", (long long)job);
            break;
        case G_NODE:
            k = db_col_text(st, 3);
            break;
        case G_MODEL:
            k = db_col_text(st, 4);
            break;
        case G_DAY:
        case G_MONTH:
            while (a < b) {
                int64_t e = sched_period_end(a, groups[gi].g == G_MONTH, key, sizeof(key));

                if (e > b)
                    e = b;
                if (add(&t, key, job, e - a) < 0)
                    goto oom;
                a = e;
            }
            continue;
        }
        if (add(&t, k, job, b - a) < 0)
            goto oom;
    }
    if (db_rows_done(s->db, st, rc, err) < 0)
        goto out;
    sorted = calloc((size_t)t.n + 1, sizeof(*sorted));
    if (!sorted)
        goto oom;
    {
        int i = 0;

        for (urow_t *r = (urow_t *)t.first; r; r = (urow_t *)r->e.order)
            sorted[i++] = r;
        qsort(sorted, (size_t)t.n, sizeof(*sorted), cmp_rows);
    }
    out = cJSON_CreateObject();
    rows = cJSON_AddArrayToObject(out, "rows");
    for (int i = 0; i < t.n; i++) {
        cJSON *r = cJSON_CreateObject();

        cJSON_AddStringToObject(r, "key", sorted[i]->e.key);
        cJSON_AddNumberToObject(r, "gpu_seconds", (double)sorted[i]->ms / 1000.0);
        cJSON_AddNumberToObject(r, "gpu_hours", (double)sorted[i]->ms / 3600000.0);
        cJSON_AddNumberToObject(r, "jobs", (double)sorted[i]->jobs);
        cJSON_AddNumberToObject(r, "intervals", (double)sorted[i]->intervals);
        cJSON_AddItemToArray(rows, r);
    }
    cJSON_AddNumberToObject(out, "since", (double)since);
    cJSON_AddNumberToObject(out, "until", (double)until);
    goto out;
oom:
    sqlite3_reset(st);
    ft_err_set(err, FT_EINTERNAL, "out of memory");
out:
    free(sorted);
    keytab_clear(&t, NULL);
    return out;
}
