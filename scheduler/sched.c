/*
 * sched.c: the scheduler's state machine: the view, the outbox, job and
 * rank transitions, the scheduling pass and the periodic work.
 *
 * Invariants:
 *  - the database is the truth; the view (free devices per node) is a cache
 *    rebuilt from it at start and after any failed transaction;
 *  - every state change happens inside one BEGIN IMMEDIATE transaction, and
 *    the messages it causes reach the outbox in that transaction, so they are
 *    dropped if it rolls back and sent (by the server) only after the commit;
 *  - a device has at most one open allocation (also a partial unique index),
 *    and a gang is placed all at once or not at all.
 * Costs: a scheduling pass reads the head of the queue (64 jobs; further
 * only while devices stay free and jobs are skipped) and places each job in
 * O(nodes log nodes); the liveness sweep is O(nodes).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft/dist.h"
#include "ft/json.h"
#include "ft/proto.h"
#include "ledger.h"
#include "sched_int.h"

/* ---- clocks ---- */

int64_t sched_now_ms(const sched_t *s)
{
    return s->fake_ms ? s->fake_ms : ft_now_ms();
}

int64_t sched_mono_ms(const sched_t *s)
{
    return s->fake_ms ? s->fake_ms : ft_mono_ms();
}

void sched_set_fake_time(sched_t *s, int64_t ms)
{
    /* Switching clocks: restart liveness windows on the new one. */
    if (!s->fake_ms)
        for (int i = 0; i < s->nnodes; i++)
            s->nodes[i].last_recv = s->nodes[i].last_send = ms;
    s->fake_ms = ms;
}

/* ---- outbox ---- */

void sched_send(sched_t *s, const void *peer, size_t peer_len, cJSON *msg)
{
    char *text;
    sched_msg_t *m;

    if (!msg)
        return;
    text = ft_json_print(msg);
    if (text && strlen(text) > FT_MSG_MAX_BYTES) {
        /* Peers refuse frames over the limit: say so instead of sending one. */
        ft_err_t e;
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(msg, "re");
        char re_copy[65] = "";

        if (cJSON_IsString(re))
            ft_strlcpy(re_copy, re->valuestring, sizeof(re_copy));
        ft_err_set(&e, FT_ETOOLARGE,
                   "the reply (%zu bytes) is over the %d-byte message limit; ask for less",
                   strlen(text), FT_MSG_MAX_BYTES);
        free(text);
        cJSON_Delete(msg);
        msg = ft_proto_error(re_copy, &e);
        text = msg ? ft_json_print(msg) : NULL;
    }
    cJSON_Delete(msg);
    if (!text || peer_len == 0 || peer_len > sizeof(m->peer)) {
        free(text);
        ft_error("cannot queue a message: out of memory or bad peer");
        return;
    }
    if (s->nout == s->capout) {
        int cap = s->capout ? s->capout * 2 : 64;
        sched_msg_t *n = realloc(s->out, (size_t)cap * sizeof(*n));

        if (!n) {
            free(text);
            ft_error("cannot queue a message: out of memory");
            return;
        }
        s->out = n;
        s->capout = cap;
    }
    m = &s->out[s->nout++];
    memcpy(m->peer, peer, peer_len);
    m->peer_len = peer_len;
    m->payload = text;
    if (peer_len > 2 && memcmp(peer, "w/", 2) == 0) {
        char name[FT_NAME_MAX + 1];
        size_t n = peer_len - 2 < FT_NAME_MAX ? peer_len - 2 : FT_NAME_MAX;
        view_node_t *node;

        memcpy(name, (const char *)peer + 2, n);
        name[n] = '\0';
        node = sched_node_find(s, name);
        if (node)
            node->last_send = sched_mono_ms(s);
    }
}

void sched_send_node(sched_t *s, const char *node, cJSON *msg)
{
    char peer[FT_NAME_MAX + 3];
    int n = snprintf(peer, sizeof(peer), "w/%s", node);

    sched_send(s, peer, (size_t)n, msg);
}

int sched_outbox_count(const sched_t *s)
{
    return s->nout;
}

const sched_msg_t *sched_outbox_get(const sched_t *s, int i)
{
    return i >= 0 && i < s->nout ? &s->out[i] : NULL;
}

static void outbox_truncate(sched_t *s, int n)
{
    while (s->nout > n)
        free(s->out[--s->nout].payload);
}

void sched_outbox_clear(sched_t *s)
{
    outbox_truncate(s, 0);
    s->out_mark = 0;
}

/* ---- transactions ---- */

int sched_tx_begin(sched_t *s, ft_err_t *err)
{
    s->out_mark = s->nout;
    return db_begin(s->db, err);
}

void sched_tx_abort(sched_t *s)
{
    ft_err_t err;

    db_rollback(s->db);
    outbox_truncate(s, s->out_mark);
    if (sched_rebuild(s, &err) < 0)
        ft_error("cannot rebuild the view after a rollback: %s", err.msg);
}

double sched_last_commit_ms(const sched_t *s)
{
    return s->db->last_commit_ms;
}

int sched_sync(sched_t *s, ft_err_t *err)
{
    int64_t now = sched_mono_ms(s);

    if (!s->db->unsynced) {
        s->unsynced_since = -1;
        return 0;
    }
    if (s->unsynced_since < 0)
        s->unsynced_since = now;
    if (s->nout == 0 && now - s->unsynced_since < SCHED_SYNC_AFTER_MS)
        return 0;
    if (db_sync_now(s->db, err) < 0) {
        outbox_truncate(s, 0);
        return -1;
    }
    s->unsynced_since = -1;
    return 0;
}

int sched_batch_begin(sched_t *s)
{
    ft_err_t err;

    s->batch_mark = s->nout;
    if (db_batch_begin(s->db, &err) < 0) {
        ft_debug("no group commit this turn: %s", err.msg);
        return -1;
    }
    return 0;
}

void sched_batch_end(sched_t *s)
{
    ft_err_t err;

    if (!s->db->batch)
        return;
    if (db_batch_end(s->db, &err) < 0) {
        ft_error("a batch of transactions failed to commit, its replies are dropped: %s", err.msg);
        outbox_truncate(s, s->batch_mark);
        if (sched_rebuild(s, &err) < 0)
            ft_error("cannot rebuild the view after a rollback: %s", err.msg);
    }
}

int sched_tx_commit(sched_t *s, ft_err_t *err)
{
    if (db_commit(s->db, err) < 0) {
        sched_tx_abort(s);
        return -1;
    }
    return 0;
}

/* ---- the view ---- */

view_node_t *sched_node_find(sched_t *s, const char *name)
{
    int lo = 0, hi = s->nnodes - 1;

    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(s->nodes[mid].name, name);

        if (c == 0)
            return &s->nodes[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

view_node_t *sched_node_add(sched_t *s, const char *name)
{
    view_node_t *n = sched_node_find(s, name), *grown;
    int pos = 0;

    if (n)
        return n;
    if (s->nnodes >= SCHED_MAX_NODES)
        return NULL;
    grown = realloc(s->nodes, (size_t)(s->nnodes + 1) * sizeof(*grown));
    if (!grown)
        return NULL;
    s->nodes = grown;
    while (pos < s->nnodes && strcmp(s->nodes[pos].name, name) < 0)
        pos++;
    memmove(&s->nodes[pos + 1], &s->nodes[pos], (size_t)(s->nnodes - pos) * sizeof(*grown));
    s->nnodes++;
    n = &s->nodes[pos];
    memset(n, 0, sizeof(*n));
    ft_strlcpy(n->name, name, sizeof(n->name));
    n->last_recv = sched_mono_ms(s);
    return n;
}

int sched_rebuild(sched_t *s, ft_err_t *err)
{
    sqlite3_stmt *st;
    int rc;

    /* Nodes: keep connection state, drop nodes the database does not know. */
    for (int i = 0; i < s->nnodes; i++) {
        s->nodes[i].ndevs = -1; /* mark: not seen in the database yet */
    }
    st = db_stmt(s->db, "SELECT name, hostname, state FROM nodes ORDER BY name", err);
    if (!st)
        return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = db_col_text(st, 0);
        view_node_t *n = sched_node_find(s, name);

        if (!n) {
            n = sched_node_add(s, name);
            if (!n) {
                sqlite3_reset(st);
                ft_err_set(err, FT_EINTERNAL, "out of memory rebuilding the view");
                return -1;
            }
            n->connected = false;
        }
        ft_strlcpy(n->hostname, db_col_text(st, 1), sizeof(n->hostname));
        n->ready = strcmp(db_col_text(st, 2), "ready") == 0;
        if (!n->ready)
            n->connected = false;
        n->ndevs = 0;
    }
    if (db_rows_done(s->db, st, rc, err) < 0)
        return -1;
    for (int i = 0; i < s->nnodes;) {
        if (s->nodes[i].ndevs < 0) {
            memmove(&s->nodes[i], &s->nodes[i + 1],
                    (size_t)(s->nnodes - i - 1) * sizeof(view_node_t));
            s->nnodes--;
        } else {
            i++;
        }
    }

    st = db_stmt(s->db,
                 "SELECT node, idx, uuid, model, memory_mb, kind FROM devices ORDER BY node, idx",
                 err);
    if (!st)
        return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        view_node_t *n = sched_node_find(s, db_col_text(st, 0));
        view_dev_t *d;

        if (!n || n->ndevs >= VIEW_MAX_DEVS)
            continue;
        d = &n->devs[n->ndevs++];
        memset(d, 0, sizeof(*d));
        d->index = sqlite3_column_int(st, 1);
        ft_strlcpy(d->uuid, db_col_text(st, 2), sizeof(d->uuid));
        ft_strlcpy(d->model, db_col_text(st, 3), sizeof(d->model));
        d->memory_mb = sqlite3_column_int64(st, 4);
        ft_strlcpy(d->kind, db_col_text(st, 5), sizeof(d->kind));
    }
    if (db_rows_done(s->db, st, rc, err) < 0)
        return -1;

    st = db_stmt(s->db, "SELECT node, device_index, job_id FROM allocations WHERE end_ms IS NULL",
                 err);
    if (!st)
        return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        view_node_t *n = sched_node_find(s, db_col_text(st, 0));
        int idx = sqlite3_column_int(st, 1);

        for (int k = 0; n && k < n->ndevs; k++)
            if (n->devs[k].index == idx)
                n->devs[k].job_id = sqlite3_column_int64(st, 2);
    }
    if (db_rows_done(s->db, st, rc, err) < 0)
        return -1;
    s->dirty = true;
    return 0;
}

/* ---- rows ---- */

int sched_event(sched_t *s, int64_t job_id, const char *node, const char *kind, ft_err_t *err,
                const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (job_id)
        ft_info("job %lld: %s", (long long)job_id, msg);
    else
        ft_info("%s", msg);
    /* job_id 0 is "no job": NULLIF stores NULL */
    return db_run(s->db, err,
                  "INSERT INTO events (time_ms, job_id, node, kind, message)"
                  " VALUES (?, NULLIF(?, 0), ?, ?, ?)",
                  "llttt", sched_now_ms(s), job_id, node, kind, msg);
}

int sched_job_load(sched_t *s, int64_t id, job_row_t *j, ft_err_t *err)
{
    sqlite3_stmt *st = db_stmt(
        s->db,
        "SELECT id, state, kind, user, team, attempt, max_retries, requeue_on_failure, gpus,"
        " coalesce(start_time, 0), time_limit_s FROM jobs WHERE id = ?",
        err);
    int rc;

    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return 1;
    }
    if (rc != SQLITE_ROW) {
        ft_err_set(err, FT_EINTERNAL, "database: %s", sqlite3_errmsg(s->db->conn));
        sqlite3_reset(st);
        return -1;
    }
    memset(j, 0, sizeof(*j));
    j->id = sqlite3_column_int64(st, 0);
    ft_strlcpy(j->state, db_col_text(st, 1), sizeof(j->state));
    ft_strlcpy(j->kind, db_col_text(st, 2), sizeof(j->kind));
    ft_strlcpy(j->user, db_col_text(st, 3), sizeof(j->user));
    ft_strlcpy(j->team, db_col_text(st, 4), sizeof(j->team));
    j->attempt = sqlite3_column_int(st, 5);
    j->max_retries = sqlite3_column_int(st, 6);
    j->requeue_on_failure = sqlite3_column_int(st, 7) != 0;
    j->gpus = sqlite3_column_int(st, 8);
    j->start_time = sqlite3_column_int64(st, 9);
    j->time_limit_s = sqlite3_column_int64(st, 10);
    sqlite3_reset(st);
    return 0;
}

/* ---- transitions ---- */

static cJSON *stop_msg(int64_t job_id, int attempt, const char *reason, int grace_ms)
{
    cJSON *m = ft_proto_new(FT_MSG_STOP, NULL);

    cJSON_AddNumberToObject(m, "job_id", (double)job_id);
    cJSON_AddNumberToObject(m, "attempt", attempt);
    cJSON_AddStringToObject(m, "reason", ft_sanitize(reason, 250));
    cJSON_AddNumberToObject(m, "grace_ms", grace_ms);
    return m;
}

int sched_stop_ranks(sched_t *s, int64_t job_id, int attempt, const char *reason, ft_err_t *err)
{
    sqlite3_stmt *st = db_stmt(s->db,
                               "SELECT DISTINCT node FROM ranks WHERE job_id = ? AND attempt = ?"
                               " AND state IN ('starting', 'running') ORDER BY node",
                               err);
    int rc;

    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, job_id);
    sqlite3_bind_int(st, 2, attempt);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *node = db_col_text(st, 0);
        view_node_t *n = sched_node_find(s, node);

        /* A lost node gets nothing: it will be told on its next hello. */
        if (n && n->connected)
            sched_send_node(s, node, stop_msg(job_id, attempt, reason, s->cfg.stop_grace_ms));
    }
    if (db_rows_done(s->db, st, rc, err) < 0)
        return -1;
    return 0;
}

int sched_close_alloc(sched_t *s, int64_t job_id, int attempt, int rank, ft_err_t *err)
{
    sqlite3_stmt *st =
        db_query(s->db, err,
                 "UPDATE allocations SET end_ms = max(?, start_ms) WHERE job_id = ? AND attempt = ?"
                 " AND rank = ? AND end_ms IS NULL RETURNING node, device_index",
                 "lldd", sched_now_ms(s), job_id, attempt, rank);
    int rc;

    if (!st)
        return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        view_node_t *n = sched_node_find(s, db_col_text(st, 0));
        int idx = sqlite3_column_int(st, 1);

        for (int k = 0; n && k < n->ndevs; k++)
            if (n->devs[k].index == idx && n->devs[k].job_id == job_id)
                n->devs[k].job_id = 0;
        s->dirty = true;
    }
    if (db_rows_done(s->db, st, rc, err) < 0)
        return -1;
    return 0;
}

/* Marks one rank of an attempt lost (reason as given) and closes its
 * allocation; the caller decides what the loss means for the job. */
static int mark_rank_lost(sched_t *s, int64_t job, int attempt, int rank, const char *reason,
                          ft_err_t *err)
{
    if (db_run(s->db, err,
               "UPDATE ranks SET state = 'lost', reason = ? WHERE job_id = ?"
               " AND attempt = ? AND rank = ?",
               "tldd", reason, job, attempt, rank) < 0)
        return -1;
    return sched_close_alloc(s, job, attempt, rank, err);
}

int sched_attempt_failed(sched_t *s, const job_row_t *j, bool infra, bool nonzero_exit,
                         int exit_code, const char *why, ft_err_t *err)
{
    bool retries_left = j->attempt - 1 < j->max_retries;
    bool requeue = retries_left && (infra || (j->requeue_on_failure && nonzero_exit));
    char reason[600];

    if (sched_stop_ranks(s, j->id, j->attempt, why, err) < 0)
        return -1;
    if (requeue) {
        snprintf(reason, sizeof(reason), "requeued after attempt %d: %s", j->attempt, why);
        if (db_run(s->db, err,
                   "UPDATE jobs SET state = 'PENDING', attempt = attempt + 1,"
                   " reason = ? WHERE id = ? AND state = 'RUNNING'",
                   "tl", reason, j->id) < 0 ||
            sched_event(s, j->id, NULL, "requeued", err, "%s", reason) < 0)
            return -1;
    } else {
        if (infra && !retries_left)
            snprintf(reason, sizeof(reason), "%s (no retries left after %d attempts)", why,
                     j->attempt);
        else
            snprintf(reason, sizeof(reason), "%s", why);
        if (db_run(s->db, err,
                   "UPDATE jobs SET state = 'FAILED', reason = ?, end_time = ?,"
                   " exit_code = ? WHERE id = ? AND state = 'RUNNING'",
                   "tldl", reason, sched_now_ms(s) / 1000, exit_code, j->id) < 0 ||
            sched_event(s, j->id, NULL, "failed", err, "failed: %s", reason) < 0)
            return -1;
    }
    s->dirty = true;
    return 0;
}

/* A reason string that does not mean "ran to its end". */
static bool reason_abnormal(const char *reason)
{
    return strncmp(reason, "launch_failed", 13) == 0 || strncmp(reason, "lost", 4) == 0 ||
           strcmp(reason, "stopped") == 0;
}

int sched_rank_ended(sched_t *s, int64_t job_id, int attempt, int rank, int exit_code, int signal,
                     const char *reason, ft_err_t *err)
{
    job_row_t j;
    int rc = sched_job_load(s, job_id, &j, err);
    char why[512];
    bool infra;

    if (rc < 0)
        return -1;
    if (rc == 1 || strcmp(j.state, "RUNNING") != 0 || j.attempt != attempt)
        return 0; /* a stale attempt or a finished job: nothing more to decide */

    if (exit_code == 0 && signal == 0 && !reason_abnormal(reason)) {
        int64_t left = 0;

        if (db_int(s->db, err, &left,
                   "SELECT count(*) FROM ranks WHERE job_id = ? AND attempt = ?"
                   " AND NOT (state = 'exited' AND exit_code = 0 AND signal = 0)",
                   "ld", job_id, attempt) < 0)
            return -1;
        if (left > 0)
            return 0;
        snprintf(why, sizeof(why), "all %d ranks exited 0", j.gpus);
        if (db_run(s->db, err,
                   "UPDATE jobs SET state = 'COMPLETED', reason = ?, end_time = ?,"
                   " exit_code = 0 WHERE id = ? AND state = 'RUNNING'",
                   "tll", why, sched_now_ms(s) / 1000, job_id) < 0 ||
            sched_event(s, job_id, NULL, "completed", err, "completed: %s", why) < 0)
            return -1;
        s->dirty = true;
        return 0;
    }

    if (strncmp(reason, "launch_failed", 13) == 0) {
        const char *detail = reason + 13;

        while (*detail == ':' || *detail == ' ')
            detail++;
        snprintf(why, sizeof(why), "rank %d launch failed%s%s", rank, *detail ? ": " : "",
                 ft_sanitize(detail, 200));
        /* A command or working directory that does not exist is the job's own
         * fault, as a non-zero exit is: retrying it elsewhere cannot help
         * (Slurm fails such a job at once too). Other launch failures (a busy
         * device, the worker shutting down) are the node's. */
        infra = strncmp(detail, "cannot run ", 11) != 0 &&
                strncmp(detail, "cannot change directory", 23) != 0;
    } else if (strncmp(reason, "lost", 4) == 0) {
        snprintf(why, sizeof(why), "rank %d %s", rank, ft_sanitize(reason, 200));
        infra = true;
    } else if (signal != 0) {
        snprintf(why, sizeof(why), "rank %d killed by signal %d", rank, signal);
        infra = true;
    } else if (strcmp(reason, "stopped") == 0) {
        snprintf(why, sizeof(why), "rank %d stopped by its worker (exit code %d)", rank, exit_code);
        infra = true;
    } else if (exit_code == FT_EXIT_PEER_LOST) {
        /* its gang broke under it (ft/dist.h): requeue like a lost rank */
        snprintf(why, sizeof(why), "rank %d lost its gang peers (exit code %d)", rank, exit_code);
        infra = true;
    } else {
        snprintf(why, sizeof(why), "rank %d exited with code %d", rank, exit_code);
        infra = false;
    }
    return sched_attempt_failed(s, &j, infra, exit_code != 0, exit_code, why, err);
}

/* Marks every live rank of node lost and fails their attempts. In a
 * transaction. */
static int lose_ranks_on_node(sched_t *s, const char *node, const char *why, ft_err_t *err)
{
    typedef struct {
        int64_t job;       /* job id */
        int attempt, rank; /* which rank of which attempt */
    } lr_t;
    lr_t *v = NULL;
    int n = 0, cap = 0, rc = -1, step;
    char reason[320];
    sqlite3_stmt *st = db_stmt(s->db,
                               "SELECT job_id, attempt, rank FROM ranks WHERE node = ? AND state "
                               "IN ('starting', 'running')"
                               " ORDER BY job_id, attempt, rank",
                               err);

    if (!st)
        return -1;
    db_bind_text(st, 1, node);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            lr_t *g = realloc(v, (size_t)(cap = cap ? cap * 2 : 16) * sizeof(*v));
            if (!g) {
                sqlite3_reset(st);
                ft_err_set(err, FT_EINTERNAL, "out of memory");
                goto out;
            }
            v = g;
        }
        v[n++] = (lr_t){sqlite3_column_int64(st, 0), sqlite3_column_int(st, 1),
                        sqlite3_column_int(st, 2)};
    }
    sqlite3_reset(st);
    if (step != SQLITE_DONE) {
        ft_err_set(err, FT_EINTERNAL, "database: %s", sqlite3_errmsg(s->db->conn));
        goto out;
    }
    snprintf(reason, sizeof(reason), "lost: %s", why);
    for (int i = 0; i < n; i++) {
        if (mark_rank_lost(s, v[i].job, v[i].attempt, v[i].rank, reason, err) < 0)
            goto out;
    }
    for (int i = 0; i < n; i++)
        if (sched_rank_ended(s, v[i].job, v[i].attempt, v[i].rank, -1, 0, reason, err) < 0)
            goto out;
    rc = 0;
out:
    free(v);
    return rc;
}

int sched_lose_rank(sched_t *s, int64_t job, int attempt, int rank, const char *why, ft_err_t *err)
{
    char reason[300];

    snprintf(reason, sizeof(reason), "lost: %s", why);
    if (mark_rank_lost(s, job, attempt, rank, reason, err) < 0)
        return -1;
    return sched_rank_ended(s, job, attempt, rank, -1, 0, reason, err);
}

int sched_node_lost(sched_t *s, view_node_t *n, const char *why)
{
    ft_err_t err;
    char name[FT_NAME_MAX + 1], what[300];

    ft_strlcpy(name, n->name, sizeof(name));
    snprintf(what, sizeof(what), "node '%s' lost", name);
    if (sched_tx_begin(s, &err) < 0)
        goto fail;
    if (db_run(s->db, &err, "UPDATE nodes SET state = 'lost', last_seen = ? WHERE name = ?", "lt",
               sched_now_ms(s) / 1000, name) < 0 ||
        sched_event(s, 0, name, "node_lost", &err, "node '%s' lost: %s", name, why) < 0 ||
        lose_ranks_on_node(s, name, what, &err) < 0)
        goto fail;
    if (sched_tx_commit(s, &err) < 0)
        goto fail_committed;
    n = sched_node_find(s, name);
    if (n) {
        n->connected = false;
        n->ready = false;
    }
    /* Log reads waiting on it will not be answered. */
    for (int i = 0; i < SCHED_MAX_RELAYS; i++) {
        relay_t *r = &s->relays[i];

        if (r->id && strcmp(r->node, name) == 0) {
            ft_err_t e;

            ft_err_set(&e, FT_EUNAVAIL, "node '%s' was lost before it answered", name);
            sched_send(s, r->client, r->client_len, ft_proto_error(r->re, &e));
            r->id = 0;
        }
    }
    s->dirty = true;
    return 0;
fail:
    sched_tx_abort(s);
fail_committed:
    ft_error("cannot record node '%s' as lost: %s", name, err.msg);
    return -1;
}

/* ---- the scheduling pass ---- */

#define PASS_FIRST_ROWS 64  /* pending jobs a pass reads first */
#define PASS_ROWS_GROWTH 8  /* each further read takes this many times more */
#define PASS_MAX_ROWS 10000 /* the most a pass reads */

typedef struct {
    int64_t id;                      /* job id */
    int64_t key;                     /* queue order: priority less its team's penalty */
    place_req_t req;                 /* its resource request */
    char gpu_model[FT_NAME_MAX + 1]; /* storage for req.gpu_model */
    int64_t waiting_since;           /* unix s: submitted, or last (re)started */
} pending_t;

#define MAX_SHAPES 64 /* distinct failed requests remembered per pass */

/* Requests that did not fit in this pass, smallest per constraint set.
 * Devices are only taken during a pass, so a request with the same
 * constraints and at least as many devices fails too: a long queue of alike
 * jobs that do not fit costs one placement, not one per job. */
typedef struct {
    pending_t rows[MAX_SHAPES]; /* representative failed jobs (copies) */
    int n;                      /* entries used */
} shapes_t;

static bool same_constraints(const pending_t *a, const pending_t *b)
{
    return a->req.gpus_per_node == b->req.gpus_per_node && a->req.nodes == b->req.nodes &&
           a->req.device == b->req.device && a->req.gpu_mem_mb == b->req.gpu_mem_mb &&
           strcmp(a->gpu_model, b->gpu_model) == 0;
}

static bool failed_before(const shapes_t *sh, const pending_t *q)
{
    for (int k = 0; k < sh->n; k++)
        if (sh->rows[k].req.gpus <= q->req.gpus && same_constraints(&sh->rows[k], q))
            return true;
    return false;
}

static void remember_failure(shapes_t *sh, const pending_t *q)
{
    int k = 0;

    while (k < sh->n && !same_constraints(&sh->rows[k], q))
        k++;
    if (k == sh->n) {
        if (sh->n == MAX_SHAPES)
            return;
        sh->n++;
    } else if (q->req.gpus >= sh->rows[k].req.gpus) {
        return;
    }
    sh->rows[k] = *q;
    sh->rows[k].req.gpu_model = sh->rows[k].gpu_model;
}

static int devclass_from(const char *s)
{
    return strcmp(s, "gpu") == 0 ? FT_DEV_GPU : strcmp(s, "cpu") == 0 ? FT_DEV_CPU : FT_DEV_ANY;
}

/* Starts job id on slots in one transaction. 0 started, 1 skipped, -1 error. */
static int start_job(sched_t *s, int64_t id, const place_slot_t *slots, int nslots)
{
    ft_err_t err;
    job_row_t j;
    sqlite3_stmt *st;
    cJSON *spec = NULL;
    char nodes_txt[512] = "";
    int64_t now = sched_now_ms(s);
    int64_t array_job_id = 0, array_index = 0; /* 0: not an array element */
    int rc;

    if (sched_tx_begin(s, &err) < 0)
        goto fail;
    rc = sched_job_load(s, id, &j, &err);
    if (rc < 0)
        goto fail;
    if (rc == 1 || strcmp(j.state, "PENDING") != 0 || j.gpus != nslots) {
        db_rollback(s->db);
        return 1;
    }
    st = db_stmt(s->db, "SELECT spec, array_job_id, array_index FROM jobs WHERE id = ?", &err);
    if (!st)
        goto fail;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *t = db_col_text(st, 0);
        spec = ft_json_parse(t, strlen(t), &err);
        if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
            array_job_id = sqlite3_column_int64(st, 1);
            array_index = sqlite3_column_int64(st, 2);
        }
    }
    sqlite3_reset(st);
    if (!spec) {
        ft_err_set(&err, FT_EINTERNAL, "stored spec of job %lld does not parse", (long long)id);
        goto fail;
    }
    for (int r = 0; r < nslots; r++) {
        view_node_t *n = &s->nodes[slots[r].node];
        view_dev_t *d = &n->devs[slots[r].dev];

        if (db_run(s->db, &err,
                   "INSERT INTO allocations (job_id, attempt, rank, node, device_index,"
                   " device_uuid, device_model, start_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   "lddtdttl", id, j.attempt, r, n->name, d->index, d->uuid, d->model, now) < 0)
            goto fail;
        if (db_run(s->db, &err,
                   "INSERT INTO ranks (job_id, attempt, rank, node, device, state)"
                   " VALUES (?, ?, ?, ?, ?, 'starting')",
                   "lddtd", id, j.attempt, r, n->name, d->index) < 0)
            goto fail;
        d->job_id = id;
        if (r == 0 || slots[r].node != slots[r - 1].node) {
            size_t len = strlen(nodes_txt);
            snprintf(nodes_txt + len, sizeof(nodes_txt) - len, "%s%s", r ? ", " : "", n->name);
        }
    }
    st = db_stmt(s->db,
                 "UPDATE jobs SET state = 'RUNNING', start_time = ?, reason = ?"
                 " WHERE id = ? AND state = 'PENDING'",
                 &err);
    if (!st)
        goto fail;
    {
        char reason[600];

        snprintf(reason, sizeof(reason), "attempt %d running on %s", j.attempt, nodes_txt);
        sqlite3_bind_int64(st, 1, now / 1000);
        db_bind_text(st, 2, reason);
        sqlite3_bind_int64(st, 3, id);
        if (db_step_done(s->db, st, &err) < 0 ||
            sched_event(s, id, NULL, "started", &err, "attempt %d placed on %s (%d ranks)",
                        j.attempt, nodes_txt, nslots) < 0)
            goto fail;
    }
    /* One start per node with its ranks, in rank order. */
    for (int r = 0; r < nslots;) {
        int node = slots[r].node, local = 0;
        cJSON *m = ft_proto_new(FT_MSG_START, NULL), *ranks;

        cJSON_AddNumberToObject(m, "job_id", (double)id);
        cJSON_AddNumberToObject(m, "attempt", j.attempt);
        cJSON_AddStringToObject(m, "kind", j.kind);
        cJSON_AddItemToObject(m, "spec", cJSON_Duplicate(spec, true));
        cJSON_AddStringToObject(m, "user", j.user);
        cJSON_AddStringToObject(m, "team", j.team);
        cJSON_AddNumberToObject(m, "world_size", nslots);
        if (array_job_id > 0) { /* FT_ARRAY_JOB_ID, FT_ARRAY_INDEX in the ranks */
            cJSON_AddNumberToObject(m, "array_job_id", (double)array_job_id);
            cJSON_AddNumberToObject(m, "array_index", (double)array_index);
        }
        ranks = cJSON_AddArrayToObject(m, "ranks");
        for (; r < nslots && slots[r].node == node; r++) {
            cJSON *e = cJSON_CreateObject();

            cJSON_AddNumberToObject(e, "rank", r);
            cJSON_AddNumberToObject(e, "local_rank", local++);
            cJSON_AddNumberToObject(e, "device", s->nodes[node].devs[slots[r].dev].index);
            cJSON_AddItemToArray(ranks, e);
        }
        sched_send_node(s, s->nodes[node].name, m);
    }
    cJSON_Delete(spec);
    spec = NULL;
    if (sched_tx_commit(s, &err) < 0) {
        ft_error("cannot start job %lld: %s", (long long)id, err.msg);
        return -1;
    }
    return 0;
fail:
    cJSON_Delete(spec);
    sched_tx_abort(s);
    ft_error("cannot start job %lld: %s", (long long)id, err.msg);
    return -1;
}

/* The queue, best first: priority, less the penalty of a team over its
 * budget, then id; held teams' jobs left out. With no penalty in force the
 * order is (priority DESC, id), which the jobs_state index gives without a
 * sort, so reading the first rows costs those rows, not the whole queue. */
static const char pending_sql[] =
    "SELECT id, priority, gpus, gpus_per_node, nodes, device, gpu_model, gpu_mem_mb,"
    " max(submit_time, coalesce(start_time, 0)) FROM jobs WHERE state = 'PENDING' "
    "AND team NOT IN (SELECT team FROM budget_state WHERE held) " /* ledger.c */
    "ORDER BY priority DESC, id LIMIT ?";
static const char pending_penalised_sql[] =
    "SELECT id, priority - coalesce((SELECT penalty FROM budget_state b WHERE b.team = jobs.team),"
    " 0) AS k, gpus, gpus_per_node, nodes, device, gpu_model, gpu_mem_mb,"
    " max(submit_time, coalesce(start_time, 0)) FROM jobs WHERE state = 'PENDING' "
    "AND team NOT IN (SELECT team FROM budget_state WHERE held) " /* ledger.c */
    "ORDER BY k DESC, id LIMIT ?";

/* Reads the first limit jobs of the queue into *p (grown as needed, *cap
 * entries); *n rows. 0, or -1 with err set. */
static int read_pending(sched_t *s, bool penalised, int limit, pending_t **p, int *cap, int *n,
                        ft_err_t *err)
{
    sqlite3_stmt *st =
        db_query(s->db, err, penalised ? pending_penalised_sql : pending_sql, "d", limit);
    int rc;

    *n = 0;
    if (!st)
        return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        pending_t *q;

        if (*n == *cap) {
            int ncap = *cap ? *cap * 2 : PASS_FIRST_ROWS;
            pending_t *g = realloc(*p, (size_t)ncap * sizeof(**p));

            if (!g) {
                sqlite3_reset(st);
                ft_err_set(err, FT_EINTERNAL, "out of memory");
                return -1;
            }
            *p = g;
            *cap = ncap;
        }
        q = &(*p)[(*n)++];
        q->id = sqlite3_column_int64(st, 0);
        q->key = sqlite3_column_int64(st, 1);
        q->req.gpus = sqlite3_column_int(st, 2);
        q->req.gpus_per_node = sqlite3_column_int(st, 3);
        q->req.nodes = sqlite3_column_int(st, 4);
        q->req.device = (ft_devclass_t)devclass_from(db_col_text(st, 5));
        ft_strlcpy(q->gpu_model, db_col_text(st, 6), sizeof(q->gpu_model));
        q->req.gpu_mem_mb = sqlite3_column_int64(st, 7);
        q->waiting_since = sqlite3_column_int64(st, 8);
    }
    return db_rows_done(s->db, st, rc, err);
}

/* True when q comes after (key, id) in the queue's order. */
static bool after(const pending_t *q, int64_t key, int64_t id)
{
    return q->key < key || (q->key == key && q->id > id);
}

int sched_schedule(sched_t *s)
{
    ft_err_t err = {0};
    pending_t *p = NULL;
    place_slot_t *slots = NULL;
    int n = 0, cap = 0, rc, started = 0, free_devs = 0;
    int limit = PASS_FIRST_ROWS;
    bool batched = false, more = true, held_back = false, seen_any = false;
    int64_t last_key = 0, last_id = 0; /* the last job looked at, in queue order */
    int64_t penalised = 0;
    shapes_t shapes;
    int64_t now_s = sched_now_ms(s) / 1000;

    shapes.n = 0;
    for (int i = 0; i < s->nnodes; i++)
        if (s->nodes[i].ready && s->nodes[i].connected)
            for (int k = 0; k < s->nodes[i].ndevs; k++)
                free_devs += s->nodes[i].devs[k].job_id == 0;
    if (free_devs == 0)
        return 0;
    if (db_int(s->db, &err, &penalised,
               "SELECT EXISTS (SELECT 1 FROM budget_state WHERE penalty <> 0)", "") < 0)
        goto fail;
    slots = calloc(FT_MAX_GPUS_PER_JOB, sizeof(*slots));
    if (!slots) {
        ft_err_set(&err, FT_EINTERNAL, "out of memory");
        goto fail;
    }
    /* The queue's head is read first; only when its jobs do not take every
     * free device is it read again, further (started jobs have left it, the
     * ones already looked at are skipped by their place in the order).
     * Backfill: a job that does not fit now is skipped, not waited for,
     * unless it has waited reserve_after_s: then nothing behind it starts,
     * so the devices it needs drain (when the connected nodes could hold
     * it at all; else holding back would block the queue for nothing). */
    while (more && !held_back && free_devs > 0) {
        if (read_pending(s, penalised != 0, limit, &p, &cap, &n, &err) < 0)
            goto fail;
        more = n == limit && limit < PASS_MAX_ROWS;
        limit = limit > PASS_MAX_ROWS / PASS_ROWS_GROWTH ? PASS_MAX_ROWS : limit * PASS_ROWS_GROWTH;
        for (int i = 0; i < n && free_devs > 0; i++) {
            bool fits = false;

            if (seen_any && !after(&p[i], last_key, last_id))
                continue;
            seen_any = true;
            last_key = p[i].key;
            last_id = p[i].id;
            p[i].req.gpu_model = p[i].gpu_model;
            if (p[i].req.gpus <= free_devs && !failed_before(&shapes, &p[i])) {
                fits = place_find(s->nodes, s->nnodes, &p[i].req, PLACE_NOW, slots) == 0;
                if (!fits)
                    remember_failure(&shapes, &p[i]);
            }
            if (!fits) {
                if (s->cfg.reserve_after_s > 0 &&
                    now_s - p[i].waiting_since >= s->cfg.reserve_after_s &&
                    place_find(s->nodes, s->nnodes, &p[i].req, PLACE_DRAINED, slots) == 0) {
                    ft_debug("job %lld has waited %lld s: holding back the jobs behind it",
                             (long long)p[i].id, (long long)(now_s - p[i].waiting_since));
                    held_back = true;
                    break;
                }
                continue;
            }
            if (started == 0 && !s->db->in_tx && !s->db->batch)
                batched = sched_batch_begin(s) == 0; /* the pass's starts share one sync */
            rc = start_job(s, p[i].id, slots, p[i].req.gpus);
            if (rc < 0) {
                more = false; /* the database is failing: try again on the next pass */
                break;
            }
            if (rc == 0) {
                started++;
                free_devs -= p[i].req.gpus;
            }
        }
    }
    if (batched)
        sched_batch_end(s);
    free(slots);
    free(p);
    return started;
fail:
    if (batched)
        sched_batch_end(s);
    free(slots);
    free(p);
    ft_error("scheduling pass failed: %s", err.code ? err.msg : "out of memory");
    return -1;
}

/* ---- periodic checks ---- */

/* Up to 64 job ids that sql (one integer parameter, arg) selects; -1 when it
 * cannot be prepared. */
static int select_job_ids(sched_t *s, const char *sql, int64_t arg, int64_t ids[64])
{
    ft_err_t err;
    int n = 0;
    sqlite3_stmt *st = db_stmt(s->db, sql, &err);

    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, arg);
    while (sqlite3_step(st) == SQLITE_ROW && n < 64)
        ids[n++] = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

/* Changes one loaded job inside the caller's transaction; 0 or -1 (err set). */
typedef int (*job_fix_fn)(sched_t *s, job_row_t *j, ft_err_t *err);

/* Runs fix on each job of ids, one transaction each; the first failure undoes
 * its transaction, ends the pass and logs "<what> check failed: ...". */
static void fix_jobs(sched_t *s, const int64_t *ids, int n, job_fix_fn fix, const char *what)
{
    ft_err_t err;

    for (int i = 0; i < n; i++) {
        job_row_t j;

        if (sched_tx_begin(s, &err) < 0)
            goto fail;
        if (sched_job_load(s, ids[i], &j, &err) != 0)
            goto fail;
        if (fix(s, &j, &err) < 0)
            goto fail;
        if (sched_tx_commit(s, &err) < 0)
            goto fail_committed;
    }
    return;
fail:
    sched_tx_abort(s);
fail_committed:
    ft_error("%s check failed: %s", what, err.msg);
}

/* Stops a gang that did not fully start, then writes off its ranks that
 * never reported in. */
static int fail_gang_start(sched_t *s, job_row_t *j, ft_err_t *err)
{
    int ranks[FT_MAX_GPUS_PER_JOB], nr = 0;
    char why[200];
    sqlite3_stmt *st;

    snprintf(why, sizeof(why), "gang not fully started within %d s", s->cfg.gang_start_timeout_s);
    /* Stop first (the stop reaches every node with a live rank), then
     * write off the ranks that never reported in. */
    if (sched_attempt_failed(s, j, true, false, -1, why, err) < 0)
        return -1;
    st = db_stmt(s->db,
                 "SELECT rank FROM ranks WHERE job_id = ? AND attempt = ?"
                 " AND state = 'starting'",
                 err);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, j->id);
    sqlite3_bind_int(st, 2, j->attempt);
    while (sqlite3_step(st) == SQLITE_ROW && nr < FT_MAX_GPUS_PER_JOB)
        ranks[nr++] = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    for (int k = 0; k < nr; k++) {
        if (mark_rank_lost(s, j->id, j->attempt, ranks[k], "lost: gang start timeout", err) < 0)
            return -1;
    }
    return 0;
}

/* Jobs whose gang has not fully started within the timeout: requeue. */
static void check_gang_timeouts(sched_t *s)
{
    int64_t ids[64];
    int64_t now_s = sched_now_ms(s) / 1000;
    int n = select_job_ids(
        s,
        "SELECT DISTINCT j.id FROM jobs j JOIN ranks r ON r.job_id = j.id AND r.attempt = j.attempt"
        " WHERE j.state = 'RUNNING' AND r.state = 'starting' AND j.start_time <= ? LIMIT 64",
        now_s - s->cfg.gang_start_timeout_s, ids);

    fix_jobs(s, ids, n, fail_gang_start, "gang start timeout");
}

/* Ranks of finished or superseded attempts that never reported in: a worker
 * that lost the start never answers the stop either, so without this sweep
 * their devices would stay allocated for ever. */
static void sweep_orphan_ranks(sched_t *s)
{
    ft_err_t err = {0};
    typedef struct {
        int64_t job;       /* job id */
        int attempt, rank; /* which rank of which attempt */
    } or_t;
    or_t v[256];
    int n = 0;
    sqlite3_stmt *st = db_stmt(
        s->db,
        "SELECT r.job_id, r.attempt, r.rank FROM ranks r CROSS JOIN allocations a ON a.job_id = "
        "r.job_id"
        " AND a.attempt = r.attempt AND a.rank = r.rank WHERE r.state IN ('starting', 'running')"
        " AND r.state = 'starting'"
        " AND a.end_ms IS NULL AND a.start_ms <= ? LIMIT 256",
        &err);

    if (!st)
        return;
    sqlite3_bind_int64(st, 1, sched_now_ms(s) - (int64_t)s->cfg.gang_start_timeout_s * 1000);
    while (sqlite3_step(st) == SQLITE_ROW && n < 256)
        v[n++] = (or_t){sqlite3_column_int64(st, 0), sqlite3_column_int(st, 1),
                        sqlite3_column_int(st, 2)};
    sqlite3_reset(st);
    if (n == 0)
        return;
    if (sched_tx_begin(s, &err) < 0)
        goto fail;
    for (int i = 0; i < n; i++)
        if (sched_lose_rank(s, v[i].job, v[i].attempt, v[i].rank, "never reported started", &err) <
            0)
            goto fail;
    if (sched_tx_commit(s, &err) < 0)
        goto fail_committed;
    return;
fail:
    sched_tx_abort(s);
fail_committed:
    ft_error("orphan rank sweep failed: %s", err.msg);
}

void sched_note_missing(sched_t *s, int64_t job, int attempt, int rank, const char *node)
{
    missing_t *m;

    for (int i = 0; i < s->nmissing; i++)
        if (s->missing[i].job == job && s->missing[i].attempt == attempt &&
            s->missing[i].rank == rank)
            return;
    if (s->nmissing == s->capmissing) {
        int cap = s->capmissing ? s->capmissing * 2 : 16;
        missing_t *g = realloc(s->missing, (size_t)cap * sizeof(*g));

        if (!g) {
            ft_error("out of memory noting a missing rank");
            return;
        }
        s->missing = g;
        s->capmissing = cap;
    }
    m = &s->missing[s->nmissing++];
    m->job = job;
    m->attempt = attempt;
    m->rank = rank;
    ft_strlcpy(m->node, node, sizeof(m->node));
    m->deadline = sched_mono_ms(s) + (int64_t)s->cfg.heartbeat_ms * s->cfg.liveness;
}

/* Ranks a hello did not list and whose exit did not follow in time: lost. */
static void sweep_missing(sched_t *s)
{
    int64_t now = sched_mono_ms(s);
    ft_err_t err = {0};

    for (int i = 0; i < s->nmissing;) {
        missing_t m = s->missing[i];
        sqlite3_stmt *st;
        bool live;
        char why[200];

        if (now < m.deadline) {
            i++;
            continue;
        }
        s->missing[i] = s->missing[--s->nmissing];
        st = db_stmt(s->db,
                     "SELECT count(*) FROM ranks WHERE job_id = ? AND attempt = ? AND rank = ?"
                     " AND node = ? AND state IN ('starting', 'running')",
                     &err);
        if (!st)
            continue;
        sqlite3_bind_int64(st, 1, m.job);
        sqlite3_bind_int(st, 2, m.attempt);
        sqlite3_bind_int(st, 3, m.rank);
        db_bind_text(st, 4, m.node);
        live = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0;
        sqlite3_reset(st);
        if (!live)
            continue; /* its exit arrived, or its node was lost meanwhile */
        snprintf(why, sizeof(why), "not running on node '%s' when its worker said hello", m.node);
        if (sched_tx_begin(s, &err) < 0 ||
            sched_lose_rank(s, m.job, m.attempt, m.rank, why, &err) < 0) {
            sched_tx_abort(s);
            ft_error("cannot write off job %lld rank %d: %s", (long long)m.job, m.rank, err.msg);
            continue;
        }
        if (sched_tx_commit(s, &err) < 0)
            ft_error("cannot write off job %lld rank %d: %s", (long long)m.job, m.rank, err.msg);
    }
}

/* Fails a job past its time limit, for good. */
static int fail_time_limit(sched_t *s, job_row_t *j, ft_err_t *err)
{
    char why[200];

    snprintf(why, sizeof(why), "time limit of %lld s reached", (long long)j->time_limit_s);
    /* Not a retryable failure: max_retries does not apply. */
    j->max_retries = 0;
    j->requeue_on_failure = false;
    return sched_attempt_failed(s, j, false, false, -1, why, err) < 0 ? -1 : 0;
}

/* RUNNING jobs past their time limit: FAILED, ranks stopped. */
static void check_time_limits(sched_t *s)
{
    int64_t ids[64];
    int64_t now_s = sched_now_ms(s) / 1000;
    int n = select_job_ids(s,
                           "SELECT id FROM jobs WHERE state = 'RUNNING' AND time_limit_s > 0"
                           " AND start_time + time_limit_s <= ? LIMIT 64",
                           now_s, ids);

    fix_jobs(s, ids, n, fail_time_limit, "time limit");
}

/* Writes last_seen of connected nodes (not a state transition: relaxed sync). */
static void flush_last_seen(sched_t *s)
{
    ft_err_t err;
    int64_t now_s = sched_now_ms(s) / 1000;

    db_sync_relax(s->db);
    if (sched_tx_begin(s, &err) < 0)
        goto out;
    for (int i = 0; i < s->nnodes; i++) {
        sqlite3_stmt *st;

        if (!s->nodes[i].connected)
            continue;
        st = db_stmt(s->db, "UPDATE nodes SET last_seen = ? WHERE name = ?", &err);
        if (!st) {
            sched_tx_abort(s);
            goto out;
        }
        sqlite3_bind_int64(st, 1, now_s);
        db_bind_text(st, 2, s->nodes[i].name);
        if (db_step_done(s->db, st, &err) < 0) {
            sched_tx_abort(s);
            goto out;
        }
    }
    sched_tx_commit(s, &err);
out:
    db_sync_restore(s->db);
}

void sched_cron(sched_t *s)
{
    int64_t now = sched_mono_ms(s);
    int64_t expiry = (int64_t)s->cfg.heartbeat_ms * s->cfg.liveness;

    /* Liveness: a ready node silent for heartbeat x liveness is lost. */
    for (int i = 0; i < s->nnodes; i++) {
        view_node_t *n = &s->nodes[i];

        if (n->ready && now - n->last_recv > expiry) {
            char why[128];

            snprintf(why, sizeof(why), "silent for %lld ms", (long long)(now - n->last_recv));
            sched_node_lost(s, n, why);
        }
    }
    sched_relay_expire(s);
    if (s->nmissing)
        sweep_missing(s);
    if (now >= s->next_slow) {
        s->next_slow = now + 1000;
        check_gang_timeouts(s);
        sweep_orphan_ranks(s);
        check_time_limits(s);
    }
    sched_schedule_due(s);
    ledger_cron(s);
    if (now >= s->next_seen_flush) {
        s->next_seen_flush = now + 10000;
        flush_last_seen(s);
    }
    if (now >= s->next_checkpoint) {
        s->next_checkpoint = now + (int64_t)s->cfg.checkpoint_interval_s * 1000;
        db_checkpoint(s->db, false);
    }
    /* Heartbeats last: only to workers that were sent nothing else. */
    for (int i = 0; i < s->nnodes; i++) {
        view_node_t *n = &s->nodes[i];

        if (n->connected && now - n->last_send >= s->cfg.heartbeat_ms)
            sched_send_node(s, n->name, ft_proto_new(FT_MSG_HEARTBEAT, NULL));
    }
}

void sched_schedule_due(sched_t *s)
{
    int64_t now = sched_mono_ms(s);

    if (s->dirty || now >= s->next_schedule) {
        s->dirty = false;
        s->next_schedule = now + s->cfg.schedule_interval_ms;
        sched_schedule(s);
    }
}

int sched_next_timeout_ms(sched_t *s)
{
    int64_t now = sched_mono_ms(s), t = now + s->cfg.heartbeat_ms;

    if (s->dirty)
        return 0;
    if (s->next_schedule < t)
        t = s->next_schedule;
    if (s->next_slow < t)
        t = s->next_slow;
    for (int i = 0; i < s->nnodes; i++)
        if (s->nodes[i].connected && s->nodes[i].last_send + s->cfg.heartbeat_ms < t)
            t = s->nodes[i].last_send + s->cfg.heartbeat_ms;
    if (s->db->unsynced && s->unsynced_since >= 0 && s->unsynced_since + SCHED_SYNC_AFTER_MS < t)
        t = s->unsynced_since + SCHED_SYNC_AFTER_MS;
    t -= now;
    if (t < 0)
        t = 0;
    if (t > 250)
        t = 250; /* bounded: liveness and relay expiry are checked on every tick */
    return (int)t;
}

/* ---- life cycle ---- */

sched_t *sched_new(const sched_config_t *cfg, ft_err_t *err)
{
    sched_t *s = calloc(1, sizeof(*s));
    int64_t now;

    if (!s) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->next_relay = 1;
    s->unsynced_since = -1;
    s->db = db_open(cfg->db_path, err);
    if (!s->db)
        goto fail;
    db_set_busy_timeout(s->db, cfg->busy_timeout_ms);
    if (db_set_sync(s->db, cfg->db_sync, err) < 0)
        goto fail;
    if (sched_rebuild(s, err) < 0 || ledger_start(s, err) < 0)
        goto fail;
    now = sched_mono_ms(s);
    /* Nodes the database calls ready get time to say hello: a worker notices
     * the silence only after its own liveness window, then redials after its
     * back-off (1 s at first), so they get two windows and a second before
     * they are written off (tests/chaos found one window too short). */
    for (int i = 0; i < s->nnodes; i++)
        s->nodes[i].last_recv = now + (int64_t)cfg->heartbeat_ms * cfg->liveness + 1000;
    s->dirty = true;
    return s;
fail:
    sched_destroy(&s);
    return NULL;
}

void sched_destroy(sched_t **ps)
{
    sched_t *s = ps ? *ps : NULL;

    if (!s)
        return;
    sched_outbox_clear(s);
    ledger_destroy(&s->ledger);
    free(s->out);
    free(s->nodes);
    free(s->missing);
    if (s->db)
        db_checkpoint(s->db, true);
    db_destroy(&s->db);
    free(s);
    *ps = NULL;
}
