/*
 * rendezvous.c: the scheduler side of the rendezvous (rendezvous.h).
 *
 * Open exchanges live in one small process-wide table, each tagged with the
 * scheduler that owns it (a daemon has one; unit tests may run several). An
 * entry is dropped when its reply is queued, when a newer attempt of the
 * same job opens one, or after RDV_MAX_AGE_MS (its ranks gave up long ago).
 */
#include <stdlib.h>
#include <string.h>

#include "ft/json.h"
#include "ft/proto.h"
#include "rendezvous.h"

#define RDV_MAX_AGE_MS (60 * 60 * 1000)
#define RDV_MAX_OPEN 4096 /* open exchanges at most; the oldest goes first */

typedef struct {
    const sched_t *owner; /* scheduler the exchange belongs to */
    int64_t job;          /* job id */
    int attempt;          /* attempt the blobs belong to */
    int world;            /* ranks expected */
    int got;              /* distinct ranks in */
    char **blobs;         /* (world) blob per rank, NULL until it arrives */
    int64_t born_ms;      /* monotonic ms of the first blob */
} rdv_entry_t;

static rdv_entry_t *table; /* open exchanges, unordered */
static int ntable, captable;

static void entry_free(int i)
{
    rdv_entry_t *e = &table[i];
    for (int k = 0; k < e->world; k++)
        free(e->blobs[k]);
    free(e->blobs);
    table[i] = table[--ntable];
}

int sched_rdv_open_count(const sched_t *s)
{
    int n = 0;
    for (int i = 0; i < ntable; i++)
        n += table[i].owner == s;
    return n;
}

/* Drops this job's older exchanges and expired ones; returns the entry for
 * (job, attempt) or -1. */
static int find(const sched_t *s, int64_t job, int attempt, int64_t now)
{
    int found = -1;
    for (int i = 0; i < ntable;) {
        rdv_entry_t *e = &table[i];
        if (e->owner == s && e->job == job && e->attempt < attempt) {
            entry_free(i);
            continue;
        }
        if (now - e->born_ms > RDV_MAX_AGE_MS) {
            entry_free(i);
            continue;
        }
        if (e->owner == s && e->job == job && e->attempt == attempt)
            found = i;
        i++;
    }
    return found;
}

static int add(const sched_t *s, int64_t job, int attempt, int world, int64_t now, ft_err_t *err)
{
    if (ntable == RDV_MAX_OPEN) {
        int old = 0;
        for (int i = 1; i < ntable; i++)
            if (table[i].born_ms < table[old].born_ms)
                old = i;
        ft_warn("rendezvous: %d exchanges open; dropping the oldest (job %lld)", ntable,
                (long long)table[old].job);
        entry_free(old);
    }
    if (ntable == captable) {
        int cap = captable ? captable * 2 : 16;
        rdv_entry_t *t = realloc(table, (size_t)cap * sizeof(*t));
        if (!t)
            goto oom;
        table = t;
        captable = cap;
    }
    rdv_entry_t *e = &table[ntable];
    memset(e, 0, sizeof(*e));
    e->blobs = calloc((size_t)world, sizeof(char *));
    if (!e->blobs)
        goto oom;
    e->owner = s;
    e->job = job;
    e->attempt = attempt;
    e->world = world;
    e->born_ms = now;
    return ntable++;
oom:
    ft_err_set(err, FT_EINTERNAL, "out of memory for a rendezvous");
    return -1;
}

/* 1 when rank of (job, attempt) is live on node. */
static int rank_live_on(sched_t *s, int64_t job, int attempt, int rank, const char *node,
                        ft_err_t *err)
{
    sqlite3_stmt *st = db_stmt(s->db,
                               "SELECT state FROM ranks WHERE job_id = ? AND attempt = ? AND"
                               " rank = ? AND node = ?",
                               err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, attempt);
    sqlite3_bind_int64(st, 3, rank);
    db_bind_text(st, 4, node);
    int rc = sqlite3_step(st);
    int live = rc == SQLITE_ROW && (strcmp(db_col_text(st, 0), "starting") == 0 ||
                                    strcmp(db_col_text(st, 0), "running") == 0);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        ft_err_set(err, FT_EINTERNAL, "database: %s", sqlite3_errmsg(s->db->conn));
        live = -1;
    }
    sqlite3_reset(st);
    return live;
}

/* Queues the reply to every node of the gang. */
static int send_reply(sched_t *s, const rdv_entry_t *e, ft_err_t *err)
{
    sqlite3_stmt *st = db_stmt(s->db,
                               "SELECT DISTINCT node FROM ranks WHERE job_id = ? AND attempt = ?"
                               " ORDER BY node",
                               err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, e->job);
    sqlite3_bind_int64(st, 2, e->attempt);
    int rc, nodes = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *m = ft_proto_new(FT_MSG_RENDEZVOUS_REPLY, NULL);
        cJSON *arr = cJSON_CreateArray();
        bool ok = m && arr && cJSON_AddNumberToObject(m, "job_id", (double)e->job) &&
                  cJSON_AddNumberToObject(m, "attempt", e->attempt);
        for (int k = 0; ok && k < e->world; k++) {
            cJSON *b = cJSON_CreateString(e->blobs[k]);
            ok = b && cJSON_AddItemToArray(arr, b);
            if (!ok)
                cJSON_Delete(b);
        }
        if (ok && cJSON_AddItemToObject(m, "blobs", arr))
            arr = NULL;
        else
            ok = false;
        cJSON_Delete(arr);
        if (!ok) {
            cJSON_Delete(m);
            sqlite3_reset(st);
            ft_err_set(err, FT_EINTERNAL, "out of memory building rendezvous_reply");
            return -1;
        }
        sched_send_node(s, db_col_text(st, 0), m);
        nodes++;
    }
    if (db_rows_done(s->db, st, rc, err) < 0)
        return -1;
    ft_info("job %lld attempt %d: rendezvous of %d ranks complete, sent to %d nodes",
            (long long)e->job, e->attempt, e->world, nodes);
    return 0;
}

int sched_rdv_handle(sched_t *s, const char *node, const cJSON *msg, ft_err_t *err)
{
    int64_t job = 0, attempt = 0, rank = 0;
    const char *blob = NULL;
    job_row_t j;
    if (ft_json_get_int(msg, NULL, "job_id", true, 1, INT64_MAX, &job, err) < 0 ||
        ft_json_get_int(msg, NULL, "attempt", true, 1, 1000000, &attempt, err) < 0 ||
        ft_json_get_int(msg, NULL, "rank", true, 0, INT64_MAX, &rank, err) < 0 ||
        ft_json_get_str(msg, NULL, "blob", true, FT_RDV_BLOB_MAX, &blob, err) < 0)
        return 1;
    int rc = sched_job_load(s, job, &j, err);
    if (rc < 0)
        return -1;
    if (rc > 0 || strcmp(j.state, "RUNNING") != 0 || j.attempt != attempt) {
        ft_err_set(err, FT_ESTATE, "rendezvous of job %lld attempt %lld rank %lld: not the "
                   "job's running attempt", (long long)job, (long long)attempt, (long long)rank);
        return 1;
    }
    if (rank >= j.gpus) {
        ft_err_set(err, FT_EBADFIELD, "rendezvous of job %lld: rank %lld outside world %d",
                   (long long)job, (long long)rank, j.gpus);
        return 1;
    }
    rc = rank_live_on(s, job, (int)attempt, (int)rank, node, err);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        ft_err_set(err, FT_EFORBIDDEN, "rendezvous of job %lld attempt %lld: rank %lld does "
                   "not run on '%s'", (long long)job, (long long)attempt, (long long)rank, node);
        return 1;
    }
    int64_t now = sched_mono_ms(s);
    int i = find(s, job, (int)attempt, now);
    if (i < 0 && (i = add(s, job, (int)attempt, j.gpus, now, err)) < 0)
        return -1;
    rdv_entry_t *e = &table[i];
    char *copy = strdup(blob);
    if (!copy) {
        ft_err_set(err, FT_EINTERNAL, "out of memory for a rendezvous");
        return -1;
    }
    if (!e->blobs[rank])
        e->got++;
    free(e->blobs[rank]); /* a rank that asks again replaces its blob */
    e->blobs[rank] = copy;
    ft_debug("job %lld attempt %lld: rendezvous blob of rank %lld (%d of %d)", (long long)job,
             (long long)attempt, (long long)rank, e->got, e->world);
    if (e->got < e->world)
        return 0;
    rc = send_reply(s, e, err);
    entry_free(i);
    return rc < 0 ? -1 : 0;
}
