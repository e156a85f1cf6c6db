/*
 * handlers.c: one handler per inbound message type, in a const table indexed
 * by type. sched_handle decodes and validates every frame (ft_proto_decode),
 * checks that this kind of peer may send the type and that a worker has said
 * hello, and only then calls the handler.
 *
 * Handlers that change state do so in one transaction and queue their reply
 * (and any commands to workers) inside it, so nothing leaves before the
 * commit. A failed transaction answers "internal" and changes nothing.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ft/json.h"
#include "ft/proto.h"
#include "ledger.h"
#include "rendezvous.h"
#include "sched_int.h"

/* Who sent the message being handled. */
typedef struct {
    const unsigned char *peer;  /* routing id */
    size_t peer_len;            /* bytes in peer */
    const char *re;             /* request id to echo, "" if none */
    char node[FT_NAME_MAX + 1]; /* worker: node name from the routing id */
    bool worker;                /* routing id starts with "w/" */
} peer_t;

typedef void (*handler_fn)(sched_t *s, const peer_t *p, cJSON *msg);

static void reply(sched_t *s, const peer_t *p, cJSON *msg)
{
    sched_send(s, p->peer, p->peer_len, msg);
}

static void reply_error(sched_t *s, const peer_t *p, const ft_err_t *err)
{
    sched_send(s, p->peer, p->peer_len, ft_proto_error(p->re, err));
}

/* Replies "internal" after a storage failure; the transaction was undone. */
static void fail_internal(sched_t *s, const peer_t *p, ft_err_t *err)
{
    ft_err_t e;

    sched_tx_abort(s);
    ft_error("request failed: %s", err->msg);
    ft_err_set(&e, FT_EINTERNAL, "storage failure, nothing changed: %s", err->msg);
    reply_error(s, p, &e);
}

static bool name_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
            return false;
    return true;
}

static cJSON *num_or_null(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return cJSON_CreateNull();
    return cJSON_CreateNumber((double)sqlite3_column_int64(st, col));
}

/* ---- client requests ---- */

static int count_jobs(sched_t *s, const char *state, int64_t *out, ft_err_t *err)
{
    sqlite3_stmt *st = db_stmt(s->db, "SELECT count(*) FROM jobs WHERE state = ?", err);

    if (!st)
        return -1;
    db_bind_text(st, 1, state);
    if (sqlite3_step(st) != SQLITE_ROW) {
        ft_err_set(err, FT_EINTERNAL, "database: %s", sqlite3_errmsg(s->db->conn));
        sqlite3_reset(st);
        return -1;
    }
    *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return 0;
}

static void h_ping(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err;
    int64_t pending = 0, running = 0;
    int ready = 0;
    cJSON *r;

    if (count_jobs(s, "PENDING", &pending, &err) < 0 ||
        count_jobs(s, "RUNNING", &running, &err) < 0) {
        reply_error(s, p, &err);
        return;
    }
    for (int i = 0; i < s->nnodes; i++)
        ready += s->nodes[i].connected;
    r = ft_proto_new(FT_MSG_PING_REPLY, p->re);
    cJSON_AddStringToObject(r, "version", FT_VERSION_STRING);
    cJSON_AddNumberToObject(r, "proto", FT_PROTO_VERSION);
    cJSON_AddNumberToObject(r, "time", (double)(sched_now_ms(s) / 1000));
    cJSON_AddNumberToObject(r, "jobs_pending", (double)pending);
    cJSON_AddNumberToObject(r, "jobs_running", (double)running);
    cJSON_AddNumberToObject(r, "nodes_ready", ready);
    reply(s, p, r);
}

static const char *const devclass_names[] = {"any", "gpu", "cpu"};

/* Why no set of known nodes can ever hold the request, for the error. */
static void explain_unsat(sched_t *s, const place_req_t *req, const ft_jobspec_t *js, ft_err_t *err)
{
    int total = 0, most = 0, nodes_with = 0;
    char cons[256] = "";
    size_t n;

    for (int i = 0; i < s->nnodes; i++) {
        int c = 0;

        for (int k = 0; k < s->nodes[i].ndevs; k++)
            c += place_dev_matches(&s->nodes[i].devs[k], req);
        total += c;
        nodes_with += c > 0;
        if (c > most)
            most = c;
    }
    snprintf(cons, sizeof(cons), "device '%s'", devclass_names[js->device]);
    n = strlen(cons);
    if (js->gpu_model[0])
        n += (size_t)snprintf(cons + n, sizeof(cons) - n, ", gpu_model '%s'",
                              ft_sanitize(js->gpu_model, 64));
    if (js->gpu_mem_gb > 0 && n < sizeof(cons))
        n += (size_t)snprintf(cons + n, sizeof(cons) - n, ", gpu_mem_gb %g", js->gpu_mem_gb);
    if (js->gpus_per_node > 0 && n < sizeof(cons))
        n += (size_t)snprintf(cons + n, sizeof(cons) - n, ", gpus_per_node %d", js->gpus_per_node);
    if (js->nodes > 0 && n < sizeof(cons))
        snprintf(cons + n, sizeof(cons) - n, ", nodes %d", js->nodes);
    ft_err_set(err, FT_EUNSAT,
               "no set of known nodes can ever hold %d device%s (%s): the cluster has %d matching "
               "device%s on %d node%s, at most %d on one node",
               js->gpus, js->gpus == 1 ? "" : "s", cons, total, total == 1 ? "" : "s", nodes_with,
               nodes_with == 1 ? "" : "s", most);
}

/* The ids of array job first's elements, in index order, into a new JSON
 * array; NULL with err set on a storage failure. */
static cJSON *array_ids(sched_t *s, int64_t first, ft_err_t *err)
{
    sqlite3_stmt *st =
        db_stmt(s->db, "SELECT id FROM jobs WHERE array_job_id = ? ORDER BY array_index", err);
    cJSON *ids = st ? cJSON_CreateArray() : NULL;
    int rc;

    if (!ids)
        return NULL;
    sqlite3_bind_int64(st, 1, first);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)sqlite3_column_int64(st, 0)));
    if (db_rows_done(s->db, st, rc, err) < 0) {
        cJSON_Delete(ids);
        return NULL;
    }
    return ids;
}

/* One job row to insert (h_submit). */
typedef struct {
    const ft_jobspec_t *js;  /* parsed spec */
    const char *spec_text;   /* the spec as stored (JSON) */
    const char *user, *team; /* submitter */
    const char *request_id;  /* idempotency key, NULL = none (every element but the first) */
    int64_t first;           /* array: the first element's id (0 while inserting it) */
    int64_t index;           /* array: this element's index */
    int64_t array;           /* array size, 0 = a job submitted alone */
} new_job_t;

/* Inserts one PENDING job and its "submitted" event inside the caller's
 * transaction; *id is its id. 0, or -1 with err set. */
static int insert_job(sched_t *s, const new_job_t *nj, int64_t *id, ft_err_t *err)
{
    const ft_jobspec_t *js = nj->js;
    const char *kind = js->kind == FT_KIND_LORA ? "lora" : "exec";
    char note[96] = "";
    sqlite3_stmt *st = db_stmt(
        s->db,
        "INSERT INTO jobs (name, kind, spec, user, team, state, reason, priority, max_retries,"
        " requeue_on_failure, gpus, gpus_per_node, nodes, device, gpu_model, gpu_mem_mb,"
        " time_limit_s, submit_time, request_id, array_job_id, array_index)"
        " VALUES (?, ?, ?, ?, ?, 'PENDING', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        err);

    if (!st)
        return -1;
    db_bind_text(st, 1, js->name);
    db_bind_text(st, 2, kind);
    db_bind_text(st, 3, nj->spec_text);
    db_bind_text(st, 4, nj->user);
    db_bind_text(st, 5, nj->team);
    db_bind_text(st, 6, s->nnodes ? "waiting for resources" : "waiting for nodes");
    sqlite3_bind_int(st, 7, js->priority);
    sqlite3_bind_int(st, 8, js->max_retries);
    sqlite3_bind_int(st, 9, js->requeue_on_failure);
    sqlite3_bind_int(st, 10, js->gpus);
    sqlite3_bind_int(st, 11, js->gpus_per_node);
    sqlite3_bind_int(st, 12, js->nodes);
    db_bind_text(st, 13, devclass_names[js->device]);
    db_bind_text(st, 14, js->gpu_model);
    sqlite3_bind_int64(st, 15, (int64_t)(js->gpu_mem_gb * 1024.0 + 0.5));
    sqlite3_bind_int64(st, 16, js->time_limit_s);
    sqlite3_bind_int64(st, 17, sched_now_ms(s) / 1000);
    db_bind_text(st, 18, nj->request_id);
    if (nj->array && nj->index > 0) { /* the first one learns its id below */
        sqlite3_bind_int64(st, 19, nj->first);
        sqlite3_bind_int64(st, 20, nj->index);
    }
    if (db_step_done(s->db, st, err) < 0)
        return -1;
    *id = sqlite3_last_insert_rowid(s->db->conn);
    if (nj->array && nj->index == 0 &&
        db_run(s->db, err, "UPDATE jobs SET array_job_id = ?, array_index = 0 WHERE id = ?", "ll",
               *id, *id) < 0)
        return -1;
    if (nj->array)
        snprintf(note, sizeof(note), ", array %lld index %lld of %lld",
                 (long long)(nj->index ? nj->first : *id), (long long)nj->index,
                 (long long)nj->array);
    return sched_event(s, *id, NULL, "submitted", err,
                       "submitted by '%s' (team '%s'): %s '%s', %d device%s%s", nj->user, nj->team,
                       kind, js->name, js->gpus, js->gpus == 1 ? "" : "s", note);
}

/* submit: one job, or with "array": N, N jobs of the same spec in one
 * transaction (each its own id; array_job_id = the first's, array_index
 * 0..N-1). All or nothing; the reply leaves only after the commit. */
static void h_submit(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0};
    ft_jobspec_t js;
    const char *user = NULL, *team = "default", *request_id = NULL;
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(msg, "spec");
    char *spec_text = NULL;
    sqlite3_stmt *st;
    int64_t id = 0, first = 0, array = 0;
    cJSON *r, *ids = NULL;
    bool parsed = false;

    ft_json_get_str(msg, NULL, "user", true, FT_NAME_MAX, &user, &err);
    ft_json_get_str(msg, NULL, "team", false, FT_NAME_MAX, &team, &err);
    ft_json_get_str(msg, NULL, "request_id", false, 64, &request_id, &err);
    ft_json_get_int(msg, NULL, "array", false, 1, FT_ARRAY_MAX, &array, &err);
    if (!name_ok(user)) {
        ft_err_set(&err, FT_EBADFIELD, "field 'user': '%s' is not a user name ([A-Za-z0-9._-]+)",
                   ft_sanitize(user, 64));
        goto error;
    }
    if (!name_ok(team)) {
        ft_err_set(&err, FT_EBADFIELD, "field 'team': '%s' is not a team name ([A-Za-z0-9._-]+)",
                   ft_sanitize(team, 64));
        goto error;
    }
    if (request_id && !*request_id) {
        ft_err_set(&err, FT_EBADFIELD, "field 'request_id': must not be empty");
        goto error;
    }
    if (ft_jobspec_parse(spec, &js, &err) < 0) {
        ft_jobspec_free(&js);
        goto error;
    }
    parsed = true;

    if (request_id) {
        st = db_stmt(s->db,
                     "SELECT id, state, array_job_id IS NOT NULL FROM jobs"
                     " WHERE user = ? AND request_id = ?",
                     &err);
        if (!st)
            goto error;
        db_bind_text(st, 1, user);
        db_bind_text(st, 2, request_id);
        if (sqlite3_step(st) == SQLITE_ROW) {
            bool was_array = sqlite3_column_int(st, 2) != 0;

            first = sqlite3_column_int64(st, 0);
            r = ft_proto_new(FT_MSG_SUBMIT_REPLY, p->re);
            cJSON_AddNumberToObject(r, "job_id", (double)first);
            cJSON_AddBoolToObject(r, "duplicate", true);
            cJSON_AddStringToObject(r, "state", db_col_text(st, 1));
            sqlite3_reset(st);
            /* A resent array gets the ids of the first one's elements. */
            if (was_array) {
                if (!(ids = array_ids(s, first, &err))) {
                    cJSON_Delete(r);
                    goto error;
                }
                cJSON_AddItemToObject(r, "job_ids", ids);
                ids = NULL; /* r owns it */
            }
            reply(s, p, r);
            goto out;
        }
        sqlite3_reset(st);
    }

    {
        place_req_t req = {js.gpus,   js.gpus_per_node, js.nodes,
                           js.device, js.gpu_model,     (int64_t)(js.gpu_mem_gb * 1024.0 + 0.5)};
        place_slot_t *slots = calloc((size_t)js.gpus, sizeof(*slots));
        int fits;

        if (!slots) {
            ft_err_set(&err, FT_EINTERNAL, "out of memory");
            goto error;
        }
        fits = s->nnodes == 0 || place_find(s->nodes, s->nnodes, &req, PLACE_EVER, slots) == 0;
        free(slots);
        if (!fits) {
            explain_unsat(s, &req, &js, &err);
            goto error;
        }
    }

    spec_text = ft_json_print(spec);
    if (!spec_text) {
        ft_err_set(&err, FT_EINTERNAL, "out of memory");
        goto error;
    }
    if (array && !(ids = cJSON_CreateArray())) {
        ft_err_set(&err, FT_EINTERNAL, "out of memory");
        goto error;
    }
    if (sched_tx_begin(s, &err) < 0)
        goto internal;
    for (int64_t i = 0; i < (array ? array : 1); i++) {
        new_job_t nj = {&js, spec_text, user, team, i == 0 ? request_id : NULL, first, i, array};

        if (insert_job(s, &nj, &id, &err) < 0)
            goto internal;
        if (i == 0)
            first = id;
        if (ids)
            cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)id));
    }
    r = ft_proto_new(FT_MSG_SUBMIT_REPLY, p->re);
    cJSON_AddNumberToObject(r, "job_id", (double)first);
    cJSON_AddBoolToObject(r, "duplicate", false);
    cJSON_AddStringToObject(r, "state", "PENDING");
    if (ids) {
        cJSON_AddItemToObject(r, "job_ids", ids);
        ids = NULL;
    }
    reply(s, p, r);
    if (sched_tx_commit(s, &err) < 0) {
        /* The reply was dropped with the transaction. */
        ft_err_t e;
        ft_err_set(&e, FT_EINTERNAL, "storage failure, job not submitted: %s", err.msg);
        reply_error(s, p, &e);
        goto out;
    }
    s->dirty = true;
    goto out;
internal:
    fail_internal(s, p, &err);
    goto out;
error:
    reply_error(s, p, &err);
out:
    cJSON_Delete(ids);
    free(spec_text);
    if (parsed)
        ft_jobspec_free(&js);
}

/* Columns every job summary reads, in this order. */
#define JOB_COLS                                                                                   \
    "id, name, kind, user, team, state, reason, priority, gpus, attempt,"                          \
    " submit_time, start_time, end_time, exit_code, spec, array_job_id, array_index"

static cJSON *job_summary(sched_t *s, sqlite3_stmt *st, ft_err_t *err)
{
    cJSON *j = cJSON_CreateObject(), *nodes;
    int64_t id = sqlite3_column_int64(st, 0);
    int attempt = sqlite3_column_int(st, 9);
    sqlite3_stmt *q;

    cJSON_AddNumberToObject(j, "job_id", (double)id);
    cJSON_AddStringToObject(j, "name", db_col_text(st, 1));
    cJSON_AddStringToObject(j, "kind", db_col_text(st, 2));
    cJSON_AddStringToObject(j, "user", db_col_text(st, 3));
    cJSON_AddStringToObject(j, "team", db_col_text(st, 4));
    cJSON_AddStringToObject(j, "state", db_col_text(st, 5));
    cJSON_AddStringToObject(j, "reason", db_col_text(st, 6));
    cJSON_AddNumberToObject(j, "priority", sqlite3_column_int(st, 7));
    cJSON_AddNumberToObject(j, "gpus", sqlite3_column_int(st, 8));
    cJSON_AddNumberToObject(j, "attempt", attempt);
    cJSON_AddItemToObject(j, "submit_time", num_or_null(st, 10));
    cJSON_AddItemToObject(j, "start_time", num_or_null(st, 11));
    cJSON_AddItemToObject(j, "end_time", num_or_null(st, 12));
    cJSON_AddItemToObject(j, "array_job_id", num_or_null(st, 15));
    cJSON_AddItemToObject(j, "array_index", num_or_null(st, 16));
    nodes = cJSON_AddArrayToObject(j, "nodes");
    q = db_stmt(s->db,
                "SELECT DISTINCT node FROM ranks WHERE job_id = ? AND attempt = ? ORDER BY node",
                err);
    if (!q) {
        cJSON_Delete(j);
        return NULL;
    }
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_int(q, 2, attempt);
    while (sqlite3_step(q) == SQLITE_ROW)
        cJSON_AddItemToArray(nodes, cJSON_CreateString(db_col_text(q, 0)));
    sqlite3_reset(q);
    return j;
}

/* Bit per job state, for the jobs filter. */
static const char *const state_names[] = {"PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"};

static void h_jobs(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0};
    const cJSON *states = cJSON_GetObjectItemCaseSensitive(msg, "states"), *e;
    const char *user = NULL;
    int64_t limit = 200;
    int mask = 0, idx = 0;
    size_t size = 0;
    sqlite3_stmt *st;
    cJSON *r, *arr;

    ft_json_get_str(msg, NULL, "user", false, FT_NAME_MAX, &user, &err);
    ft_json_get_int(msg, NULL, "limit", false, 1, 10000, &limit, &err);
    cJSON_ArrayForEach(e, states)
    {
        int bit = -1;

        for (int k = 0; k < 5; k++)
            if (strcmp(e->valuestring, state_names[k]) == 0)
                bit = k;
        if (bit < 0) {
            ft_err_set(&err, FT_EBADFIELD, "field 'states[%d]': '%s' is not a job state", idx,
                       ft_sanitize(e->valuestring, 64));
            reply_error(s, p, &err);
            return;
        }
        mask |= 1 << bit;
        idx++;
    }
    if (!mask)
        mask = 31;
    st = db_stmt(s->db,
                 "SELECT " JOB_COLS " FROM jobs WHERE (? & (CASE state WHEN 'PENDING' THEN 1"
                 " WHEN 'RUNNING' THEN 2 WHEN 'COMPLETED' THEN 4 WHEN 'FAILED' THEN 8"
                 " ELSE 16 END)) != 0 AND (?2 IS NULL OR user = ?2) ORDER BY id DESC LIMIT ?3",
                 &err);
    if (!st) {
        reply_error(s, p, &err);
        return;
    }
    sqlite3_bind_int(st, 1, mask);
    db_bind_text(st, 2, user);
    sqlite3_bind_int64(st, 3, limit);
    r = ft_proto_new(FT_MSG_JOBS_REPLY, p->re);
    arr = cJSON_AddArrayToObject(r, "jobs");
    while (sqlite3_step(st) == SQLITE_ROW) {
        cJSON *j = job_summary(s, st, &err);
        char *t;

        if (!j)
            continue;
        /* Stay under the message limit: newest first, then "truncated". */
        t = ft_json_print(j);
        size += t ? strlen(t) + 1 : 0;
        free(t);
        if (size > FT_MSG_MAX_BYTES - 4096) {
            cJSON_Delete(j);
            cJSON_AddBoolToObject(r, "truncated", true);
            break;
        }
        cJSON_AddItemToArray(arr, j);
    }
    sqlite3_reset(st);
    reply(s, p, r);
}

/* One row of a query as a JSON object (h_job's lists). */
typedef cJSON *(*row_fn)(sqlite3_stmt *st);

static cJSON *rank_row(sqlite3_stmt *st)
{
    cJSON *e = cJSON_CreateObject();

    cJSON_AddNumberToObject(e, "rank", sqlite3_column_int(st, 0));
    cJSON_AddStringToObject(e, "node", db_col_text(st, 1));
    cJSON_AddNumberToObject(e, "device", sqlite3_column_int(st, 2));
    cJSON_AddItemToObject(e, "pid", num_or_null(st, 3));
    cJSON_AddStringToObject(e, "state", db_col_text(st, 4));
    cJSON_AddItemToObject(e, "exit_code", num_or_null(st, 5));
    cJSON_AddItemToObject(e, "signal", num_or_null(st, 6));
    cJSON_AddStringToObject(e, "reason", db_col_text(st, 7));
    return e;
}

static cJSON *alloc_row(sqlite3_stmt *st)
{
    cJSON *e = cJSON_CreateObject();

    cJSON_AddNumberToObject(e, "attempt", sqlite3_column_int(st, 0));
    cJSON_AddNumberToObject(e, "rank", sqlite3_column_int(st, 1));
    cJSON_AddStringToObject(e, "node", db_col_text(st, 2));
    cJSON_AddStringToObject(e, "device_uuid", db_col_text(st, 3));
    cJSON_AddStringToObject(e, "device_model", db_col_text(st, 4));
    cJSON_AddNumberToObject(e, "start", (double)(sqlite3_column_int64(st, 5) / 1000));
    if (sqlite3_column_type(st, 6) == SQLITE_NULL)
        cJSON_AddNullToObject(e, "end");
    else
        cJSON_AddNumberToObject(e, "end", (double)(sqlite3_column_int64(st, 6) / 1000));
    return e;
}

static cJSON *event_row(sqlite3_stmt *st)
{
    cJSON *e = cJSON_CreateObject();

    cJSON_AddNumberToObject(e, "time", (double)(sqlite3_column_int64(st, 0) / 1000));
    cJSON_AddStringToObject(e, "kind", db_col_text(st, 1));
    cJSON_AddStringToObject(e, "message", db_col_text(st, 2));
    return e;
}

/* Adds key: [row(r) for each row r of sql] to j. sql's first parameter is the
 * job id, its second (when it has one) the attempt. */
static int add_rows(sched_t *s, cJSON *j, const char *key, const char *sql, int64_t id,
                    int attempt, row_fn row, ft_err_t *err)
{
    cJSON *arr = cJSON_AddArrayToObject(j, key);
    sqlite3_stmt *st = db_stmt(s->db, sql, err);

    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_bind_parameter_count(st) >= 2)
        sqlite3_bind_int(st, 2, attempt);
    while (sqlite3_step(st) == SQLITE_ROW)
        cJSON_AddItemToArray(arr, row(st));
    sqlite3_reset(st);
    return 0;
}

static void h_job(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0};
    int64_t id = 0;
    sqlite3_stmt *st;
    cJSON *r, *j = NULL, *spec;
    int attempt;
    const char *text;

    ft_json_get_int(msg, NULL, "job_id", true, 1, INT64_MAX, &id, &err);
    st = db_stmt(s->db, "SELECT " JOB_COLS " FROM jobs WHERE id = ?", &err);
    if (!st)
        goto error;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        ft_err_set(&err, FT_ENOTFOUND, "no job %lld", (long long)id);
        goto error;
    }
    j = job_summary(s, st, &err);
    if (!j) {
        sqlite3_reset(st);
        goto error;
    }
    attempt = sqlite3_column_int(st, 9);
    text = db_col_text(st, 14);
    spec = cJSON_Parse(text);
    cJSON_AddItemToObject(j, "spec", spec ? spec : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "exit_code", num_or_null(st, 13));
    sqlite3_reset(st);

    if (add_rows(s, j, "ranks",
                 "SELECT rank, node, device, pid, state, exit_code, signal, reason FROM ranks"
                 " WHERE job_id = ? AND attempt = ? ORDER BY rank",
                 id, attempt, rank_row, &err) < 0)
        goto error;

    st = db_stmt(s->db, "SELECT data, time_ms, attempt FROM progress WHERE job_id = ? AND rank = 0",
                 &err);
    if (!st)
        goto error;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW && (spec = cJSON_Parse(db_col_text(st, 0)))) {
        cJSON_AddNumberToObject(spec, "time", (double)(sqlite3_column_int64(st, 1) / 1000));
        cJSON_AddNumberToObject(spec, "attempt", sqlite3_column_int(st, 2));
        cJSON_AddItemToObject(j, "progress", spec);
    } else {
        cJSON_AddNullToObject(j, "progress");
    }
    sqlite3_reset(st);

    if (add_rows(s, j, "allocations",
                 "SELECT attempt, rank, node, device_uuid, device_model, start_ms, end_ms"
                 " FROM allocations WHERE job_id = ? ORDER BY attempt, rank",
                 id, attempt, alloc_row, &err) < 0 ||
        add_rows(s, j, "events",
                 "SELECT time_ms, kind, message FROM (SELECT id, time_ms, kind, message FROM"
                 " events WHERE job_id = ? ORDER BY id DESC LIMIT 50) ORDER BY id",
                 id, attempt, event_row, &err) < 0)
        goto error;

    r = ft_proto_new(FT_MSG_JOB_REPLY, p->re);
    cJSON_AddItemToObject(r, "job", j);
    reply(s, p, r);
    return;
error:
    cJSON_Delete(j);
    reply_error(s, p, &err);
}

static void h_cancel(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0};
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(msg, "job_ids"), *e;
    const char *why = "cancelled by user";
    char reason[300];
    cJSON *r, *results;

    ft_json_get_str(msg, NULL, "reason", false, 256, &why, &err);
    if (strncmp(why, "cancelled", 9) == 0)
        snprintf(reason, sizeof(reason), "%s", ft_sanitize(why, 200));
    else
        snprintf(reason, sizeof(reason), "cancelled: %s", ft_sanitize(why, 200));
    r = ft_proto_new(FT_MSG_CANCEL_REPLY, p->re);
    results = cJSON_AddArrayToObject(r, "results");
    if (sched_tx_begin(s, &err) < 0)
        goto internal;
    cJSON_ArrayForEach(e, ids)
    {
        int64_t id = (int64_t)e->valuedouble;
        cJSON *res = cJSON_CreateObject();
        job_row_t j;
        int rc = sched_job_load(s, id, &j, &err);

        cJSON_AddItemToArray(results, res);
        cJSON_AddNumberToObject(res, "job_id", (double)id);
        if (rc < 0)
            goto internal;
        if (rc == 1) {
            cJSON_AddNullToObject(res, "state");
            cJSON_AddStringToObject(res, "error", "no such job");
            continue;
        }
        if (strcmp(j.state, "PENDING") != 0 && strcmp(j.state, "RUNNING") != 0) {
            char m[64];

            snprintf(m, sizeof(m), "already %s", j.state);
            cJSON_AddStringToObject(res, "state", j.state);
            cJSON_AddStringToObject(res, "error", m);
            continue;
        }
        if (strcmp(j.state, "RUNNING") == 0 &&
            sched_stop_ranks(s, j.id, j.attempt, reason, &err) < 0)
            goto internal;
        {
            sqlite3_stmt *st = db_stmt(s->db,
                                       "UPDATE jobs SET state = 'CANCELLED', reason = ?,"
                                       " end_time = ? WHERE id = ?",
                                       &err);
            if (!st)
                goto internal;
            db_bind_text(st, 1, reason);
            sqlite3_bind_int64(st, 2, sched_now_ms(s) / 1000);
            sqlite3_bind_int64(st, 3, j.id);
            if (db_step_done(s->db, st, &err) < 0 ||
                sched_event(s, j.id, NULL, "cancelled", &err, "%s (was %s)", reason, j.state) < 0)
                goto internal;
        }
        cJSON_AddStringToObject(res, "state", "CANCELLED");
        cJSON_AddNullToObject(res, "error");
    }
    reply(s, p, r);
    r = NULL;
    if (sched_tx_commit(s, &err) < 0) {
        ft_err_t x;
        ft_err_set(&x, FT_EINTERNAL, "storage failure, nothing cancelled: %s", err.msg);
        reply_error(s, p, &x);
    }
    s->dirty = true;
    return;
internal:
    cJSON_Delete(r);
    fail_internal(s, p, &err);
}

static void h_logs(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0};
    int64_t id = 0, rank = 0, offset = 0, max_bytes = 65536;
    job_row_t j;
    sqlite3_stmt *st;
    char node[FT_NAME_MAX + 1];
    view_node_t *n;
    relay_t *slot = NULL;
    cJSON *m;
    int rc;

    ft_json_get_int(msg, NULL, "job_id", true, 1, INT64_MAX, &id, &err);
    ft_json_get_int(msg, NULL, "rank", false, 0, FT_MAX_GPUS_PER_JOB - 1, &rank, &err);
    ft_json_get_int(msg, NULL, "offset", false, 0, INT64_MAX, &offset, &err);
    ft_json_get_int(msg, NULL, "max_bytes", false, 1, FT_LOG_CHUNK_MAX, &max_bytes, &err);
    rc = sched_job_load(s, id, &j, &err);
    if (rc != 0) {
        if (rc == 1)
            ft_err_set(&err, FT_ENOTFOUND, "no job %lld", (long long)id);
        goto error;
    }
    if (rank >= j.gpus) {
        ft_err_set(&err, FT_ENOTFOUND, "job %lld has no rank %lld (it has %d)", (long long)id,
                   (long long)rank, j.gpus);
        goto error;
    }
    st = db_stmt(s->db,
                 "SELECT node FROM ranks WHERE job_id = ? AND rank = ? AND pid IS NOT NULL"
                 " ORDER BY attempt DESC LIMIT 1",
                 &err);
    if (!st)
        goto error;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, rank);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        ft_err_set(&err, FT_ESTATE, "rank %lld of job %lld never started (job is %s)",
                   (long long)rank, (long long)id, j.state);
        goto error;
    }
    ft_strlcpy(node, db_col_text(st, 0), sizeof(node));
    sqlite3_reset(st);
    n = sched_node_find(s, node);
    if (!n || !n->connected) {
        ft_err_set(&err, FT_EUNAVAIL, "node '%s' that ran rank %lld is not connected", node,
                   (long long)rank);
        goto error;
    }
    for (int i = 0; i < SCHED_MAX_RELAYS && !slot; i++)
        if (!s->relays[i].id)
            slot = &s->relays[i];
    if (!slot || p->peer_len > sizeof(slot->client)) {
        ft_err_set(&err, FT_EUNAVAIL, "too many log reads in flight, try again");
        goto error;
    }
    slot->id = s->next_relay++;
    memcpy(slot->client, p->peer, p->peer_len);
    slot->client_len = p->peer_len;
    ft_strlcpy(slot->re, p->re, sizeof(slot->re));
    ft_strlcpy(slot->node, node, sizeof(slot->node));
    slot->deadline = sched_mono_ms(s) + s->cfg.relay_timeout_ms;
    m = ft_proto_new(FT_MSG_LOG_READ, NULL);
    cJSON_AddNumberToObject(m, "relay", (double)slot->id);
    cJSON_AddNumberToObject(m, "job_id", (double)id);
    cJSON_AddNumberToObject(m, "rank", (double)rank);
    cJSON_AddNumberToObject(m, "offset", (double)offset);
    cJSON_AddNumberToObject(m, "max_bytes", (double)max_bytes);
    sched_send_node(s, node, m);
    return;
error:
    reply_error(s, p, &err);
}

void sched_relay_expire(sched_t *s)
{
    int64_t now = sched_mono_ms(s);

    for (int i = 0; i < SCHED_MAX_RELAYS; i++) {
        relay_t *r = &s->relays[i];

        if (r->id && now >= r->deadline) {
            ft_err_t e;

            ft_err_set(&e, FT_EUNAVAIL, "node '%s' did not answer the log read within %d ms",
                       r->node, s->cfg.relay_timeout_ms);
            sched_send(s, r->client, r->client_len, ft_proto_error(r->re, &e));
            r->id = 0;
        }
    }
}

static void h_nodes(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0};
    sqlite3_stmt *st =
        db_stmt(s->db, "SELECT name, hostname, state, last_seen FROM nodes ORDER BY name", &err);
    sqlite3_stmt *dv;
    cJSON *r, *arr;

    if (!st) {
        reply_error(s, p, &err);
        return;
    }
    r = ft_proto_new(FT_MSG_NODES_REPLY, p->re);
    arr = cJSON_AddArrayToObject(r, "nodes");
    while (sqlite3_step(st) == SQLITE_ROW) {
        cJSON *n = cJSON_CreateObject(), *devs;
        view_node_t *v = sched_node_find(s, db_col_text(st, 0));

        cJSON_AddStringToObject(n, "name", db_col_text(st, 0));
        cJSON_AddStringToObject(n, "hostname", db_col_text(st, 1));
        /* A node the database calls ready that has not said hello to this
         * process yet is reported as it is: not connected. */
        cJSON_AddStringToObject(n, "state", v && v->connected ? "ready" : db_col_text(st, 2));
        cJSON_AddBoolToObject(n, "connected", v && v->connected);
        cJSON_AddNumberToObject(n, "last_seen", (double)sqlite3_column_int64(st, 3));
        devs = cJSON_AddArrayToObject(n, "devices");
        dv = db_stmt(s->db,
                     "SELECT d.idx, d.uuid, d.model, d.memory_mb, d.kind, a.job_id FROM devices d"
                     " LEFT JOIN allocations a ON a.node = d.node AND a.device_index = d.idx"
                     " AND a.end_ms IS NULL WHERE d.node = ? ORDER BY d.idx",
                     &err);
        if (dv) {
            db_bind_text(dv, 1, db_col_text(st, 0));
            while (sqlite3_step(dv) == SQLITE_ROW) {
                cJSON *d = cJSON_CreateObject();

                cJSON_AddNumberToObject(d, "index", sqlite3_column_int(dv, 0));
                cJSON_AddStringToObject(d, "uuid", db_col_text(dv, 1));
                cJSON_AddStringToObject(d, "model", db_col_text(dv, 2));
                cJSON_AddNumberToObject(d, "memory_mb", (double)sqlite3_column_int64(dv, 3));
                cJSON_AddStringToObject(d, "kind", db_col_text(dv, 4));
                cJSON_AddItemToObject(d, "job_id", num_or_null(dv, 5));
                cJSON_AddItemToArray(devs, d);
            }
            sqlite3_reset(dv);
        }
        cJSON_AddItemToArray(arr, n);
    }
    sqlite3_reset(st);
    reply(s, p, r);
}

/* Answers "bad field" when a [since, until] window runs backwards; true if it did. */
static bool window_bad(sched_t *s, const peer_t *p, int64_t since, int64_t until)
{
    ft_err_t err;

    if (until >= since)
        return false;
    ft_err_set(&err, FT_EBADFIELD, "field 'until': %lld is before since (%lld)", (long long)until,
               (long long)since);
    reply_error(s, p, &err);
    return true;
}

/* Replies a message of this type carrying every field of body (consumed). */
static void reply_fields(sched_t *s, const peer_t *p, ft_msg_type_t type, cJSON *body)
{
    cJSON *m = ft_proto_new(type, p->re), *c;

    while ((c = body->child)) {
        cJSON_DetachItemViaPointer(body, c);
        cJSON_AddItemToObject(m, c->string, c);
    }
    cJSON_Delete(body);
    reply(s, p, m);
}

static void h_usage(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0};
    const char *group_by = "user", *cloud = NULL;
    /* rounded up: an interval closed in the current second is counted whole */
    int64_t since = 0, until = (sched_now_ms(s) + 999) / 1000;
    cJSON *r;

    ft_json_get_str(msg, NULL, "group_by", false, 16, &group_by, &err);
    ft_json_get_int(msg, NULL, "since", false, 0, INT64_MAX / 1000, &since, &err);
    ft_json_get_int(msg, NULL, "until", false, 0, INT64_MAX / 1000, &until, &err);
    ft_json_get_str(msg, NULL, "cloud", false, 64, &cloud, &err);
    if (window_bad(s, p, since, until))
        return;
    r = sched_usage_report(s, group_by, since, until, &err);
    if (r && ledger_usage_costs(s, r, group_by, since, until, cloud, &err) < 0) {
        cJSON_Delete(r);
        r = NULL;
    }
    if (!r) {
        reply_error(s, p, &err);
        return;
    }
    reply_fields(s, p, FT_MSG_USAGE_REPLY, r);
}

/* The team leads' report (ledger.c); until defaults to now, since to 30 days before. */
static void h_report(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0};
    int64_t until = (sched_now_ms(s) + 999) / 1000, since; /* as usage: the current second counts */
    cJSON *r;

    ft_json_get_int(msg, NULL, "until", false, 0, INT64_MAX / 1000, &until, &err);
    since = until > 30 * 86400 ? until - 30 * 86400 : 0;
    ft_json_get_int(msg, NULL, "since", false, 0, INT64_MAX / 1000, &since, &err);
    if (window_bad(s, p, since, until))
        return;
    if (!(r = ledger_report(s, since, until, &err))) {
        reply_error(s, p, &err);
        return;
    }
    reply_fields(s, p, FT_MSG_REPORT_REPLY, r);
}

/* ---- worker messages ---- */

static const char *const dev_keys[] = {"index", "uuid", "model", "memory_mb", "kind", NULL};
static const char *const run_keys[] = {"job_id", "attempt", "rank", "pid", NULL};
static const char *const dev_kinds[] = {"gpu", "emulated", "cpu", NULL};

typedef struct {
    int64_t job;  /* job id */
    int attempt;  /* attempt */
    int rank;     /* rank */
    int64_t pid;  /* pid reported (running) */
    bool matched; /* expected rank found in the report */
    bool stopped; /* reported rank: a stop went out for its job and attempt */
} rk_t;

static int check_devices(const cJSON *devs, ft_err_t *err)
{
    const cJSON *d;
    int i = 0;
    uint64_t seen = 0;

    cJSON_ArrayForEach(d, devs)
    {
        char ctx[32];
        int64_t idx, mem;
        const char *uuid, *model, *kind;
        bool ok = false;

        snprintf(ctx, sizeof(ctx), "devices[%d]", i);
        if (ft_json_check_keys(d, ctx, dev_keys, err) < 0 ||
            ft_json_get_int(d, ctx, "index", true, 0, VIEW_MAX_DEVS - 1, &idx, err) < 0 ||
            ft_json_get_str(d, ctx, "uuid", true, 128, &uuid, err) < 0 ||
            ft_json_get_str(d, ctx, "model", true, 128, &model, err) < 0 ||
            ft_json_get_int(d, ctx, "memory_mb", true, 0, (int64_t)1 << 40, &mem, err) < 0 ||
            ft_json_get_str(d, ctx, "kind", true, 16, &kind, err) < 0)
            return -1;
        for (int k = 0; dev_kinds[k]; k++)
            ok |= strcmp(dev_kinds[k], kind) == 0;
        if (!ok) {
            ft_err_set(err, FT_EBADFIELD, "%s.kind: '%s' is not gpu, emulated or cpu", ctx,
                       ft_sanitize(kind, 32));
            return -1;
        }
        if (!*uuid) {
            ft_err_set(err, FT_EBADFIELD, "%s.uuid: must not be empty", ctx);
            return -1;
        }
        if (seen & ((uint64_t)1 << idx)) {
            ft_err_set(err, FT_EBADFIELD, "%s.index: %lld appears twice", ctx, (long long)idx);
            return -1;
        }
        seen |= (uint64_t)1 << idx;
        i++;
    }
    return 0;
}

static int read_running(const cJSON *running, rk_t **out, int *nout, ft_err_t *err)
{
    const cJSON *e;
    int n = cJSON_GetArraySize(running), i = 0;
    rk_t *v = calloc((size_t)n + 1, sizeof(*v));

    if (!v) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    cJSON_ArrayForEach(e, running)
    {
        char ctx[32];
        int64_t job, attempt, rank, pid;

        snprintf(ctx, sizeof(ctx), "running[%d]", i);
        if (ft_json_check_keys(e, ctx, run_keys, err) < 0 ||
            ft_json_get_int(e, ctx, "job_id", true, 1, INT64_MAX, &job, err) < 0 ||
            ft_json_get_int(e, ctx, "attempt", true, 1, 1000000, &attempt, err) < 0 ||
            ft_json_get_int(e, ctx, "rank", true, 0, FT_MAX_GPUS_PER_JOB - 1, &rank, err) < 0 ||
            ft_json_get_int(e, ctx, "pid", true, 1, 2147483647, &pid, err) < 0) {
            free(v);
            return -1;
        }
        v[i++] = (rk_t){job, (int)attempt, (int)rank, pid, false, false};
    }
    *out = v;
    *nout = i;
    return 0;
}

static void h_hello(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0};
    const char *name = NULL, *hostname = NULL, *version = NULL;
    int64_t pid = 0;
    const cJSON *devs = cJSON_GetObjectItemCaseSensitive(msg, "devices"), *d;
    const cJSON *running = cJSON_GetObjectItemCaseSensitive(msg, "running");
    rk_t *rep = NULL, *exp = NULL;
    int nrep = 0, nexp = 0, cexp = 0, rc;
    sqlite3_stmt *st;
    view_node_t *n;
    cJSON *r;

    ft_json_get_str(msg, NULL, "name", true, FT_NAME_MAX, &name, &err);
    ft_json_get_str(msg, NULL, "hostname", true, 255, &hostname, &err);
    ft_json_get_str(msg, NULL, "version", true, 64, &version, &err);
    ft_json_get_int(msg, NULL, "pid", true, 1, 2147483647, &pid, &err);
    if (!name_ok(name)) {
        ft_err_set(&err, FT_EBADFIELD, "field 'name': '%s' is not a node name ([A-Za-z0-9._-]+)",
                   ft_sanitize(name, 64));
        goto error;
    }
    if (strcmp(name, p->node) != 0) {
        ft_err_set(&err, FT_EFORBIDDEN, "routing id 'w/%s' does not match name '%s'",
                   ft_sanitize(p->node, 64), ft_sanitize(name, 64));
        goto error;
    }
    if (check_devices(devs, &err) < 0 || read_running(running, &rep, &nrep, &err) < 0)
        goto error;

    if (sched_tx_begin(s, &err) < 0)
        goto internal;
    if (db_run(s->db, &err,
               "INSERT INTO nodes (name, hostname, state, last_seen, pid, version)"
               " VALUES (?1, ?2, 'ready', ?3, ?4, ?5) ON CONFLICT (name) DO UPDATE SET"
               " hostname = ?2, state = 'ready', last_seen = ?3, pid = ?4, version = ?5",
               "ttllt", name, hostname, sched_now_ms(s) / 1000, pid, version) < 0)
        goto internal;
    if (db_run(s->db, &err, "DELETE FROM devices WHERE node = ?", "t", name) < 0)
        goto internal;
    cJSON_ArrayForEach(d, devs)
    {
        st = db_stmt(s->db,
                     "INSERT INTO devices (node, idx, uuid, model, memory_mb, kind)"
                     " VALUES (?, ?, ?, ?, ?, ?)",
                     &err);
        if (!st)
            goto internal;
        db_bind_text(st, 1, name);
        sqlite3_bind_int(st, 2, cJSON_GetObjectItemCaseSensitive(d, "index")->valueint);
        db_bind_text(st, 3, cJSON_GetObjectItemCaseSensitive(d, "uuid")->valuestring);
        db_bind_text(st, 4, cJSON_GetObjectItemCaseSensitive(d, "model")->valuestring);
        sqlite3_bind_int64(st, 5,
                           (int64_t)cJSON_GetObjectItemCaseSensitive(d, "memory_mb")->valuedouble);
        db_bind_text(st, 6, cJSON_GetObjectItemCaseSensitive(d, "kind")->valuestring);
        if (db_step_done(s->db, st, &err) < 0)
            goto internal;
    }
    if (sched_event(s, 0, name, "node_ready", &err,
                    "node '%s' ready: %d devices, %d ranks reported, worker pid %lld", name,
                    cJSON_GetArraySize(devs), nrep, (long long)pid) < 0)
        goto internal;
    r = ft_proto_new(FT_MSG_HELLO_REPLY, p->re);
    cJSON_AddNumberToObject(r, "heartbeat_ms", s->cfg.heartbeat_ms);
    cJSON_AddNumberToObject(r, "liveness", s->cfg.liveness);
    reply(s, p, r);

    /* Reconcile: what the database expects here against what runs here. */
    st = db_stmt(s->db,
                 "SELECT job_id, attempt, rank FROM ranks WHERE node = ?"
                 " AND state IN ('starting', 'running')",
                 &err);
    if (!st)
        goto internal;
    db_bind_text(st, 1, name);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (nexp == cexp) {
            rk_t *g = realloc(exp, (size_t)(cexp = cexp ? cexp * 2 : 16) * sizeof(*exp));
            if (!g) {
                sqlite3_reset(st);
                ft_err_set(&err, FT_EINTERNAL, "out of memory");
                goto internal;
            }
            exp = g;
        }
        exp[nexp++] = (rk_t){sqlite3_column_int64(st, 0),
                             sqlite3_column_int(st, 1),
                             sqlite3_column_int(st, 2),
                             0,
                             false,
                             false};
    }
    sqlite3_reset(st);
    for (int i = 0; i < nrep; i++) {
        rk_t *e = NULL;
        job_row_t j;
        bool current;

        for (int k = 0; k < nexp && !e; k++)
            if (exp[k].job == rep[i].job && exp[k].attempt == rep[i].attempt &&
                exp[k].rank == rep[i].rank)
                e = &exp[k];
        rc = sched_job_load(s, rep[i].job, &j, &err);
        if (rc < 0)
            goto internal;
        current = rc == 0 && strcmp(j.state, "RUNNING") == 0 && j.attempt == rep[i].attempt;
        if (e) {
            /* Ours: adopt it (its allocation stays open until it exits). */
            e->matched = true;
            if (db_run(s->db, &err,
                       "UPDATE ranks SET pid = ?, state = 'running' WHERE job_id = ?"
                       " AND attempt = ? AND rank = ?",
                       "lldd", rep[i].pid, rep[i].job, rep[i].attempt, rep[i].rank) < 0)
                goto internal;
        }
        if (!e || !current) {
            bool dup = false;

            for (int k = 0; k < i; k++)
                dup |=
                    rep[k].stopped && rep[k].job == rep[i].job && rep[k].attempt == rep[i].attempt;
            rep[i].stopped = true;
            if (!dup) {
                cJSON *m = ft_proto_new(FT_MSG_STOP, NULL);

                cJSON_AddNumberToObject(m, "job_id", (double)rep[i].job);
                cJSON_AddNumberToObject(m, "attempt", rep[i].attempt);
                cJSON_AddStringToObject(m, "reason",
                                        e ? "job no longer running" : "not expected on this node");
                cJSON_AddNumberToObject(m, "grace_ms", s->cfg.stop_grace_ms);
                sched_send(s, p->peer, p->peer_len, m);
            }
        }
    }
    if (sched_tx_commit(s, &err) < 0) {
        ft_error("hello from '%s' not recorded: %s", name, err.msg);
        goto out;
    }
    /* Ranks expected here but not listed: their exits may follow the
     * hello_reply; written off by sched_cron if none comes in time. */
    for (int k = 0; k < nexp; k++)
        if (!exp[k].matched)
            sched_note_missing(s, exp[k].job, exp[k].attempt, exp[k].rank, name);
    if (sched_rebuild(s, &err) < 0)
        ft_error("cannot rebuild the view: %s", err.msg);
    n = sched_node_find(s, name);
    if (n) {
        n->connected = true;
        n->ready = true;
        n->last_recv = sched_mono_ms(s);
        n->last_send = sched_mono_ms(s);
    }
    s->dirty = true;
    goto out;
internal:
    fail_internal(s, p, &err);
    goto out;
error:
    reply_error(s, p, &err);
out:
    free(rep);
    free(exp);
}

static void h_heartbeat(sched_t *s, const peer_t *p, cJSON *msg)
{
    /* Liveness was refreshed before dispatch: any message counts. */
}

/* Reads job_id, attempt and rank, the fields naming one rank in a worker's message. */
static void get_rank_id(const cJSON *msg, int64_t *job, int64_t *attempt, int64_t *rank,
                        ft_err_t *err)
{
    ft_json_get_int(msg, NULL, "job_id", true, 1, INT64_MAX, job, err);
    ft_json_get_int(msg, NULL, "attempt", true, 1, INT64_MAX, attempt, err);
    ft_json_get_int(msg, NULL, "rank", true, 0, INT64_MAX, rank, err);
}

static void send_stop(sched_t *s, const peer_t *p, int64_t job, int attempt, const char *why)
{
    cJSON *m = ft_proto_new(FT_MSG_STOP, NULL);

    cJSON_AddNumberToObject(m, "job_id", (double)job);
    cJSON_AddNumberToObject(m, "attempt", attempt);
    cJSON_AddStringToObject(m, "reason", why);
    cJSON_AddNumberToObject(m, "grace_ms", s->cfg.stop_grace_ms);
    sched_send(s, p->peer, p->peer_len, m);
}

static void h_rank_started(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0};
    int64_t job = 0, attempt = 0, rank = 0, pid = 0;
    sqlite3_stmt *st;
    job_row_t j;
    int rc;

    get_rank_id(msg, &job, &attempt, &rank, &err);
    ft_json_get_int(msg, NULL, "pid", true, 1, INT64_MAX, &pid, &err);
    if (sched_tx_begin(s, &err) < 0)
        goto internal;
    if (db_run(s->db, &err,
               "UPDATE ranks SET pid = ?, state = 'running' WHERE job_id = ? AND attempt = ?"
               " AND rank = ? AND node = ? AND state = 'starting'",
               "llllt", pid, job, attempt, rank, p->node) < 0)
        goto internal;
    rc = sched_job_load(s, job, &j, &err);
    if (rc < 0)
        goto internal;
    if (sqlite3_changes(s->db->conn) == 0) {
        /* Not a rank we are waiting for here: a duplicate is harmless, a
         * stranger is stopped. */
        st = db_stmt(s->db,
                     "SELECT state, pid FROM ranks WHERE job_id = ? AND attempt = ? AND rank = ?"
                     " AND node = ?",
                     &err);
        if (!st)
            goto internal;
        sqlite3_bind_int64(st, 1, job);
        sqlite3_bind_int64(st, 2, attempt);
        sqlite3_bind_int64(st, 3, rank);
        db_bind_text(st, 4, p->node);
        rc = sqlite3_step(st);
        if (!(rc == SQLITE_ROW && strcmp(db_col_text(st, 0), "running") == 0 &&
              sqlite3_column_int64(st, 1) == pid))
            send_stop(s, p, job, (int)attempt, "rank not expected on this node");
        sqlite3_reset(st);
    } else {
        if (sched_event(s, job, p->node, "rank_started", &err,
                        "rank %lld started on '%s' (pid %lld)", (long long)rank, p->node,
                        (long long)pid) < 0)
            goto internal;
        if (strcmp(j.state, "RUNNING") != 0 || j.attempt != attempt)
            send_stop(s, p, job, (int)attempt, "job no longer running");
    }
    if (sched_tx_commit(s, &err) < 0)
        ft_error("rank_started not recorded: %s", err.msg);
    return;
internal:
    fail_internal(s, p, &err);
}

/* A rank's blob for its gang's rendezvous (rendezvous.h); a stale or
 * foreign rank is stopped so that it cannot wait on a gang it is not in. */
static void h_rendezvous(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0}, e2 = {0};
    int64_t job = 0, attempt = 0;
    int rc = sched_rdv_handle(s, p->node, msg, &err);

    if (rc < 0) {
        /* read-only so far: nothing to roll back */
        ft_error("rendezvous failed: %s", err.msg);
        reply_error(s, p, &err);
        return;
    }
    if (rc > 0) {
        ft_warn("%s", err.msg);
        ft_json_get_int(msg, NULL, "job_id", true, 1, INT64_MAX, &job, &e2);
        ft_json_get_int(msg, NULL, "attempt", true, 1, INT64_MAX, &attempt, &e2);
        send_stop(s, p, job, (int)attempt, "stale rendezvous: not the job's running attempt");
    }
}

/* Fields of a progress message that are its payload (not addressing). */
static const char *const progress_skip[] = {"v",      "type",    "id",   "re",
                                            "job_id", "attempt", "rank", NULL};

static void h_progress(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0};
    int64_t job = 0, attempt = 0, rank = 0;
    job_row_t j;
    sqlite3_stmt *st;
    cJSON *data, *c;
    char *text = NULL;
    int rc;

    get_rank_id(msg, &job, &attempt, &rank, &err);
    rc = sched_job_load(s, job, &j, &err);
    if (rc != 0 || strcmp(j.state, "RUNNING") != 0 || j.attempt != attempt) {
        ft_debug("progress of job %lld attempt %lld ignored: not the running attempt",
                 (long long)job, (long long)attempt);
        return;
    }
    data = cJSON_CreateObject();
    for (c = msg->child; c; c = c->next) {
        bool skip = false;

        for (int k = 0; progress_skip[k]; k++)
            skip |= strcmp(progress_skip[k], c->string) == 0;
        if (!skip)
            cJSON_AddItemToObject(data, c->string, cJSON_Duplicate(c, true));
    }
    text = ft_json_print(data);
    cJSON_Delete(data);
    if (!text)
        return;
    /* Progress is not a state transition: a lost update after a power cut
     * is harmless, so skip the per-commit WAL sync. */
    db_sync_relax(s->db);
    if (sched_tx_begin(s, &err) < 0)
        goto fail;
    st = db_stmt(s->db,
                 "INSERT INTO progress (job_id, rank, attempt, time_ms, data)"
                 " SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM ranks WHERE job_id = ?1"
                 " AND attempt = ?3 AND rank = ?2 AND node = ?6)"
                 " ON CONFLICT (job_id, rank) DO UPDATE SET attempt = excluded.attempt,"
                 " time_ms = excluded.time_ms,"
                 /* merge within an attempt, so an eval event keeps the last
                  * training loss beside eval_loss; a message is not kept */
                 " data = CASE WHEN progress.attempt = excluded.attempt"
                 " THEN json_patch(json_remove(progress.data, '$.message'), excluded.data)"
                 " ELSE excluded.data END",
                 &err);
    if (!st)
        goto fail;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, rank);
    sqlite3_bind_int64(st, 3, attempt);
    sqlite3_bind_int64(st, 4, sched_now_ms(s));
    db_bind_text(st, 5, text);
    db_bind_text(st, 6, p->node);
    if (db_step_done(s->db, st, &err) < 0)
        goto fail;
    if (sched_tx_commit(s, &err) < 0)
        ft_error("progress not recorded: %s", err.msg);
    goto out;
fail:
    sched_tx_abort(s);
    ft_error("progress not recorded: %s", err.msg);
out:
    db_sync_restore(s->db);
    free(text);
}

static void h_rank_exited(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0};
    int64_t job = 0, attempt = 0, rank = 0, code = 0, sig = 0, energy_mj = 0;
    const char *reason = "";

    get_rank_id(msg, &job, &attempt, &rank, &err);
    ft_json_get_int(msg, NULL, "exit_code", true, -1, 255, &code, &err);
    ft_json_get_int(msg, NULL, "signal", true, 0, 128, &sig, &err);
    ft_json_get_str(msg, NULL, "reason", true, 256, &reason, &err);
    if (sched_tx_begin(s, &err) < 0)
        goto internal;
    if (db_run(s->db, &err,
               "UPDATE ranks SET state = 'exited', exit_code = ?, signal = ?, reason = ?"
               " WHERE job_id = ? AND attempt = ? AND rank = ? AND node = ?"
               " AND state IN ('starting', 'running')",
               "lltlllt", code, sig, reason, job, attempt, rank, p->node) < 0)
        goto internal;
    if (sqlite3_changes(s->db->conn) == 0) {
        /* A duplicate, or a rank already written off: nothing to do. */
        db_rollback(s->db);
        ft_debug("rank_exited for job %lld attempt %lld rank %lld from '%s' ignored",
                 (long long)job, (long long)attempt, (long long)rank, p->node);
        return;
    }
    if (cJSON_GetObjectItemCaseSensitive(msg, "energy_mj") &&
        ft_json_get_int(msg, NULL, "energy_mj", false, 0, INT64_MAX, &energy_mj, &err) == 0 &&
        ledger_note_energy(s, job, (int)attempt, (int)rank, energy_mj, &err) < 0)
        goto internal;
    if (sched_close_alloc(s, job, (int)attempt, (int)rank, &err) < 0 ||
        sched_event(s, job, p->node, "rank_exited", &err,
                    "rank %lld attempt %lld on '%s': %s, exit code %lld, signal %lld",
                    (long long)rank, (long long)attempt, p->node, ft_sanitize(reason, 200),
                    (long long)code, (long long)sig) < 0 ||
        sched_rank_ended(s, job, (int)attempt, (int)rank, (int)code, (int)sig, reason, &err) < 0)
        goto internal;
    if (sched_tx_commit(s, &err) < 0)
        ft_error("rank_exited not recorded: %s", err.msg);
    return;
internal:
    fail_internal(s, p, &err);
}

static void h_log_data(sched_t *s, const peer_t *p, cJSON *msg)
{
    ft_err_t err = {0};
    int64_t id = 0, offset = 0;
    const char *data = NULL, *error = NULL;
    bool eof = false;
    relay_t *r = NULL;
    cJSON *m;

    ft_json_get_int(msg, NULL, "relay", true, 1, INT64_MAX, &id, &err);
    for (int i = 0; i < SCHED_MAX_RELAYS && !r; i++)
        if (s->relays[i].id == id && strcmp(s->relays[i].node, p->node) == 0)
            r = &s->relays[i];
    if (!r) {
        ft_debug("log_data for unknown or expired relay %lld from '%s'", (long long)id, p->node);
        return;
    }
    ft_json_get_str(msg, NULL, "error", false, 256, &error, &err);
    ft_json_get_str(msg, NULL, "data", false, 4 * FT_LOG_CHUNK_MAX, &data, &err);
    if (error || !data) {
        ft_err_set(&err, FT_EUNAVAIL, "node '%s' cannot read the log: %s", p->node,
                   error ? ft_sanitize(error, 200) : "no data in its answer");
        sched_send(s, r->client, r->client_len, ft_proto_error(r->re, &err));
    } else {
        ft_json_get_int(msg, NULL, "offset", false, 0, INT64_MAX, &offset, &err);
        ft_json_get_bool(msg, NULL, "eof", false, &eof, &err);
        m = ft_proto_new(FT_MSG_LOGS_REPLY, r->re);
        cJSON_AddStringToObject(m, "data", data);
        cJSON_AddNumberToObject(m, "offset", (double)offset);
        cJSON_AddBoolToObject(m, "eof", eof);
        sched_send(s, r->client, r->client_len, m);
    }
    r->id = 0;
}

static void h_error(sched_t *s, const peer_t *p, cJSON *msg)
{
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(msg, "code");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(msg, "message");

    ft_warn("%s%s reported an error: %s: %s", p->worker ? "worker " : "client",
            p->worker ? p->node : "", ft_sanitize(code->valuestring, 32),
            ft_sanitize(text->valuestring, 200));
}

/* Index = ft_msg_type_t; NULL = never sent to the scheduler. */
static const struct {
    handler_fn fn; /* the handler */
} handlers[FT_MSG__COUNT] = {
    [FT_MSG_PING] = {h_ping},
    [FT_MSG_SUBMIT] = {h_submit},
    [FT_MSG_JOBS] = {h_jobs},
    [FT_MSG_JOB] = {h_job},
    [FT_MSG_CANCEL] = {h_cancel},
    [FT_MSG_LOGS] = {h_logs},
    [FT_MSG_NODES] = {h_nodes},
    [FT_MSG_USAGE] = {h_usage},
    [FT_MSG_REPORT] = {h_report},
    [FT_MSG_HELLO] = {h_hello},
    [FT_MSG_HEARTBEAT] = {h_heartbeat},
    [FT_MSG_RANK_STARTED] = {h_rank_started},
    [FT_MSG_PROGRESS] = {h_progress},
    [FT_MSG_RANK_EXITED] = {h_rank_exited},
    [FT_MSG_LOG_DATA] = {h_log_data},
    [FT_MSG_RENDEZVOUS] = {h_rendezvous},
    [FT_MSG_ERROR] = {h_error},
};

static double mono_ms_frac(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void sched_handle(sched_t *s, const void *peer, size_t peer_len, const void *frame, size_t len)
{
    ft_err_t err = {0};
    char re[65] = "";
    ft_msg_type_t type;
    peer_t p = {peer, peer_len, re, "", false};
    view_node_t *n = NULL;
    cJSON *msg;

    if (peer_len == 0)
        return;
    p.worker = peer_len > 2 && memcmp(peer, "w/", 2) == 0;
    if (p.worker) {
        size_t nl = peer_len - 2;

        if (nl > FT_NAME_MAX || memchr((const char *)peer + 2, '\0', nl)) {
            ft_err_set(&err, FT_EFORBIDDEN,
                       "worker routing id must be 'w/NAME' with NAME at most %d bytes",
                       FT_NAME_MAX);
            reply_error(s, &p, &err);
            return;
        }
        memcpy(p.node, (const char *)peer + 2, nl);
        p.node[nl] = '\0';
        n = sched_node_find(s, p.node);
        /* Any message from a connected worker is a sign of life. */
        if (n && n->connected)
            n->last_recv = sched_mono_ms(s);
    }
    msg = ft_proto_decode(frame, len, &type, re, sizeof(re), &err);
    if (!msg) {
        ft_debug("bad message from %s%s: %s", p.worker ? "worker " : "a client", p.node, err.msg);
        /* Never answer an error with an error: two confused peers would
         * loop forever. */
        if (type != FT_MSG_ERROR)
            reply_error(s, &p, &err);
        return;
    }
    if (!(ft_msg_senders(type) & (p.worker ? FT_FROM_WORKER : FT_FROM_CLIENT)) ||
        !handlers[type].fn) {
        ft_err_set(&err, FT_EUNKNOWNTYPE, "message type '%s' may not be sent by a %s",
                   ft_msg_name(type), p.worker ? "worker" : "client");
        reply_error(s, &p, &err);
        goto out;
    }
    if (p.worker && type != FT_MSG_HELLO && !(n && n->connected)) {
        if (type != FT_MSG_ERROR) {
            ft_err_set(&err, FT_ENOTREG, "node '%s' must send hello first", p.node);
            reply_error(s, &p, &err);
        }
        goto out;
    }
    if (p.worker) {
        handlers[type].fn(s, &p, msg);
    } else {
        /* A client waits on this: its cost, for --log-level debug. */
        double t0 = mono_ms_frac();

        s->db->last_commit_ms = 0;
        handlers[type].fn(s, &p, msg);
        ft_debug("'%s' handled in %.3f ms (commit %.3f ms), %zu bytes", ft_msg_name(type),
                 mono_ms_frac() - t0, s->db->last_commit_ms, len);
    }
out:
    cJSON_Delete(msg);
}
