/*
 * zap.c: the ZAP handler (RFC 27) and per-request authorisation.
 *
 * The handler is a REP socket on inproc://zeromq.zap.01 in ftsched's own
 * context, polled by the one reactor: libzmq's I/O thread asks it about each
 * CURVE handshake on the ROUTER (domain "ft", ZMQ_ZAP_ENFORCE_DOMAIN) and
 * waits for the answer. A listed key gets 200 with the key's Z85 text as the
 * User-Id, which every message from that peer then carries (zmq_msg_gets);
 * anything else gets 400 and never completes the handshake.
 *
 * Authorisation is a table by message type. Invariants: a worker key only
 * sends worker messages, under its own node name; a client key never sends
 * worker messages; submit's user and team are the key's, whatever the
 * message said; job, logs and cancel only touch jobs ft_auth_may_touch
 * allows; job lists and usage rows are trimmed to what the key may see.
 *
 * Cost: one bsearch per message; a job load per job, logs or cancelled id;
 * a JSON reparse and reprint of replies that are trimmed.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "ft/json.h"
#include "ft/paths.h"
#include "ft/proto.h"
#include "sched_int.h"
#include "zap.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

/* The reactor handles one request at a time: the group_by of the usage
 * request being handled, for trimming its reply (which does not echo it). */
static bool usage_by_team;

struct zap {
    void *rep;                   /* REP socket bound to ZAP_ENDPOINT */
    char path[FT_PATH_MAX];      /* keys file */
    ft_keys_t keys;              /* current table */
    struct timespec mtime;       /* keys file mtime when loaded */
    off_t size;                  /* keys file size when loaded */
    int64_t next_check;          /* monotonic ms of the next stat */
};

zap_t *zap_new(void *ctx, const char *keys_file, ft_err_t *err)
{
    zap_t *z = calloc(1, sizeof(*z));
    struct stat st;
    int linger = 0;

    if (!z) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return NULL;
    }
    ft_strlcpy(z->path, keys_file, sizeof(z->path));
    if (stat(keys_file, &st) < 0 || ft_keys_load(&z->keys, keys_file, err) < 0) {
        if (!err->msg[0] || stat(keys_file, &st) < 0)
            ft_err_set(err, FT_EINTERNAL, "cannot read keys file '%s'", ft_sanitize(keys_file, 200));
        goto fail;
    }
    z->mtime = st.st_mtim;
    z->size = st.st_size;
    z->rep = zmq_socket(ctx, ZMQ_REP);
    if (!z->rep || zmq_setsockopt(z->rep, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
        zmq_bind(z->rep, ZAP_ENDPOINT) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot bind the ZAP handler: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    ft_info("CURVE on: %zu key%s from '%s'", z->keys.n, z->keys.n == 1 ? "" : "s", z->path);
    return z;
fail:
    zap_destroy(&z);
    return NULL;
}

void zap_destroy(zap_t **zp)
{
    zap_t *z = *zp;

    if (!z)
        return;
    if (z->rep)
        zmq_close(z->rep);
    ft_keys_free(&z->keys);
    free(z);
    *zp = NULL;
}

void *zap_socket(zap_t *z)
{
    return z->rep;
}

const ft_identity_t *zap_identity(const zap_t *z, const char *pub)
{
    return ft_keys_find(&z->keys, pub);
}

void zap_maybe_reload(zap_t *z)
{
    struct stat st;
    ft_keys_t k;
    ft_err_t err = {0};
    int64_t now = ft_mono_ms();

    if (now < z->next_check)
        return;
    z->next_check = now + 1000;
    if (stat(z->path, &st) < 0)
        return;
    if (st.st_mtim.tv_sec == z->mtime.tv_sec && st.st_mtim.tv_nsec == z->mtime.tv_nsec &&
        st.st_size == z->size)
        return;
    z->mtime = st.st_mtim;
    z->size = st.st_size;
    if (ft_keys_load(&k, z->path, &err) < 0) {
        ft_warn("keys file changed but is not valid, keeping the old keys: %s", err.msg);
        return;
    }
    ft_keys_free(&z->keys);
    z->keys = k;
    ft_info("keys file '%s' reloaded: %zu key%s", z->path, k.n, k.n == 1 ? "" : "s");
}

/* One ZAP request: version, request id, domain, address, routing id,
 * mechanism, credentials... */
static void zap_one(zap_t *z)
{
    zmq_msg_t part[8];
    int n = 0, more = 1;
    size_t sz = sizeof(more);
    const char *status = "400", *text = "key not listed";
    char user_id[FT_Z85_KEY_LEN + 1] = "";
    char addr[64] = "";

    while (more) {
        zmq_msg_t *m = &part[n < 8 ? n : 7];

        if (n >= 8)
            zmq_msg_close(m);
        zmq_msg_init(m);
        if (zmq_msg_recv(m, z->rep, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(m);
            goto out;
        }
        if (n < 8)
            n++;
        zmq_getsockopt(z->rep, ZMQ_RCVMORE, &more, &sz);
    }
    if (n < 6) {
        text = "malformed ZAP request";
        goto reply;
    }
    if (zmq_msg_size(&part[3]) < sizeof(addr))
        memcpy(addr, zmq_msg_data(&part[3]), zmq_msg_size(&part[3]));
    if (zmq_msg_size(&part[0]) != 3 || memcmp(zmq_msg_data(&part[0]), "1.0", 3) != 0) {
        text = "unsupported ZAP version";
    } else if (zmq_msg_size(&part[2]) != 2 || memcmp(zmq_msg_data(&part[2]), "ft", 2) != 0) {
        text = "wrong ZAP domain";
    } else if (zmq_msg_size(&part[5]) != 5 || memcmp(zmq_msg_data(&part[5]), "CURVE", 5) != 0 ||
               n < 7 || zmq_msg_size(&part[6]) != 32) {
        text = "only CURVE is accepted";
    } else {
        zmq_z85_encode(user_id, zmq_msg_data(&part[6]), 32);
        if (ft_keys_find(&z->keys, user_id)) {
            status = "200";
            text = "OK";
        } else {
            ft_warn("refused an unlisted key %s from %s", user_id, ft_sanitize(addr, 60));
            user_id[0] = '\0';
        }
    }
reply:
    /* REP needs the reply even for a malformed request, or it wedges. */
    zmq_send(z->rep, "1.0", 3, ZMQ_SNDMORE);
    if (n >= 2)
        zmq_send(z->rep, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
    else
        zmq_send(z->rep, "", 0, ZMQ_SNDMORE);
    zmq_send(z->rep, status, 3, ZMQ_SNDMORE);
    zmq_send(z->rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(z->rep, user_id, strlen(user_id), ZMQ_SNDMORE);
    zmq_send(z->rep, "", 0, 0);
out:
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
}

void zap_serve(zap_t *z)
{
    for (int i = 0; i < 100; i++) {
        zmq_pollitem_t it = {z->rep, 0, ZMQ_POLLIN, 0};

        if (zmq_poll(&it, 1, 0) <= 0)
            return;
        zap_one(z);
    }
}

/* ---- authorisation ---- */

typedef enum {
    A_ANY,    /* any client key */
    A_SUBMIT, /* identity stamped on the job; paths under roots */
    A_JOB,    /* "job_id" must be touchable */
    A_CANCEL, /* every id of "job_ids" must be touchable */
    A_USAGE,  /* group_by user or team unless admin; rows trimmed */
    A_LEAD,   /* lead or admin */
    A_WORKER, /* worker keys only, under their own node name */
} arule_t;

/* Index = ft_msg_type_t; types absent here are refused for every key. */
static const arule_t rules[FT_MSG__COUNT] = {
    [FT_MSG_PING] = A_ANY,
    [FT_MSG_NODES] = A_ANY,
    [FT_MSG_JOBS] = A_ANY,
    [FT_MSG_SUBMIT] = A_SUBMIT,
    [FT_MSG_JOB] = A_JOB,
    [FT_MSG_LOGS] = A_JOB,
    [FT_MSG_CANCEL] = A_CANCEL,
    [FT_MSG_USAGE] = A_USAGE,
    [FT_MSG_REPORT] = A_LEAD,
    [FT_MSG_HELLO] = A_WORKER,
    [FT_MSG_HEARTBEAT] = A_WORKER,
    [FT_MSG_RANK_STARTED] = A_WORKER,
    [FT_MSG_PROGRESS] = A_WORKER,
    [FT_MSG_RANK_EXITED] = A_WORKER,
    [FT_MSG_LOG_DATA] = A_WORKER,
    [FT_MSG_RENDEZVOUS] = A_WORKER,
    [FT_MSG_ERROR] = A_ANY,
};

static int check_job(sched_t *s, const ft_identity_t *who, int64_t id, ft_err_t *err)
{
    job_row_t j;
    int r = sched_job_load(s, id, &j, err);

    if (r < 0)
        return -1;
    /* An unknown id is left to the handler's not_found; a job of another
     * team gets the same answer as one that does not exist would reveal. */
    if (r == 1)
        return 0;
    if (!ft_auth_may_touch(who, j.user, j.team)) {
        ft_err_set(err, FT_EFORBIDDEN, "job %lld belongs to '%s' of team '%s': %s '%s' (%s) may not touch it",
                   (long long)id, j.user, j.team, ft_role_name(who->role), who->user, who->team);
        return -1;
    }
    return 0;
}

static int check_spec_paths(sched_t *s, const cJSON *spec, ft_err_t *err)
{
    ft_jobspec_t js;
    int rc = -1;

    if (!s->cfg.path_roots[0])
        return 0;
    memset(&js, 0, sizeof(js));
    /* A spec that does not parse is the handler's to refuse, field by field. */
    if (ft_jobspec_parse(spec, &js, err) < 0) {
        ft_jobspec_free(&js);
        memset(err, 0, sizeof(*err));
        return 0;
    }
    if (js.kind == FT_KIND_LORA) {
        const ft_trainspec_t *t = &js.train;

        if (ft_path_check_roots("spec.train.base_model", t->base_model, s->cfg.path_roots, NULL, 0,
                                err) < 0 ||
            (t->eval_path[0] && ft_path_check_roots("spec.train.eval_path", t->eval_path,
                                                    s->cfg.path_roots, NULL, 0, err) < 0) ||
            ft_path_check_roots("spec.train.output_dir", t->output_dir, s->cfg.path_roots, NULL, 0,
                                err) < 0)
            goto out;
        for (int i = 0; i < t->n_datasets; i++) {
            char field[64];

            snprintf(field, sizeof(field), "spec.train.datasets[%d].path", i);
            if (ft_path_check_roots(field, t->datasets[i].path, s->cfg.path_roots, NULL, 0, err) < 0)
                goto out;
        }
    }
    rc = 0;
out:
    ft_jobspec_free(&js);
    return rc;
}

int authz_request(sched_t *s, const ft_identity_t *who, bool worker_peer, const char *node,
                  const void **frame, size_t *len, char **owned, char *re, size_t relen,
                  ft_err_t *err)
{
    ft_err_t perr = {0};
    cJSON *msg = ft_json_parse(*frame, *len, &perr);
    const cJSON *t, *id;
    ft_msg_type_t type;
    int rc = -1;

    *owned = NULL;
    /* Unparseable input is the core's to refuse with the usual codes. */
    if (!msg)
        return 0;
    id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    if (cJSON_IsString(id))
        ft_strlcpy(re, id->valuestring, relen);
    t = cJSON_GetObjectItemCaseSensitive(msg, "type");
    type = cJSON_IsString(t) ? ft_msg_from_name(t->valuestring) : FT_MSG__COUNT;
    if (type == FT_MSG__COUNT) {
        rc = 0;
        goto out;
    }
    if (worker_peer != (who->role == FT_ROLE_WORKER)) {
        ft_err_set(err, FT_EFORBIDDEN, "%s key of '%s' may not connect as a %s",
                   ft_role_name(who->role), who->user, worker_peer ? "worker" : "client");
        goto out;
    }
    if (worker_peer && strcmp(who->user, node) != 0) {
        ft_err_set(err, FT_EFORBIDDEN, "the key of node '%s' may not speak for node '%s'", who->user,
                   ft_sanitize(node, 64));
        goto out;
    }
    switch (rules[type]) {
    case A_ANY:
        break;
    case A_WORKER:
        if (!worker_peer) {
            ft_err_set(err, FT_EFORBIDDEN, "'%s' is for worker keys only", ft_msg_name(type));
            goto out;
        }
        break;
    case A_LEAD:
        if (who->role != FT_ROLE_LEAD && who->role != FT_ROLE_ADMIN) {
            ft_err_set(err, FT_EFORBIDDEN, "'%s' needs the lead or admin role ('%s' is %s)",
                       ft_msg_name(type), who->user, ft_role_name(who->role));
            goto out;
        }
        break;
    case A_USAGE: {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(msg, "group_by");
        const char *gb = cJSON_IsString(g) ? g->valuestring : "user";

        usage_by_team = strcmp(gb, "team") == 0;

        if (who->role != FT_ROLE_ADMIN && strcmp(gb, "user") != 0 && strcmp(gb, "team") != 0) {
            ft_err_set(err, FT_EFORBIDDEN, "group_by '%s' needs the admin role; use user or team",
                       ft_sanitize(gb, 16));
            goto out;
        }
        break;
    }
    case A_JOB: {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(msg, "job_id");

        if (cJSON_IsNumber(j) && check_job(s, who, (int64_t)j->valuedouble, err) < 0)
            goto out;
        break;
    }
    case A_CANCEL: {
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(msg, "job_ids"), *e;
        int n = 0;

        cJSON_ArrayForEach(e, ids)
        {
            if (++n > 1000)
                break;
            if (cJSON_IsNumber(e) && check_job(s, who, (int64_t)e->valuedouble, err) < 0)
                goto out;
        }
        break;
    }
    case A_SUBMIT: {
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(msg, "spec");

        if (cJSON_IsObject(spec) && check_spec_paths(s, spec, err) < 0)
            goto out;
        /* The key says who submits: self-declared names are overwritten,
         * except an admin's, who may submit on behalf of anyone. */
        if (who->role == FT_ROLE_ADMIN)
            break;
        cJSON_DeleteItemFromObjectCaseSensitive(msg, "user");
        cJSON_DeleteItemFromObjectCaseSensitive(msg, "team");
        cJSON_AddStringToObject(msg, "user", who->user);
        cJSON_AddStringToObject(msg, "team", who->team);
        if (!(*owned = cJSON_PrintUnformatted(msg))) {
            ft_err_set(err, FT_EINTERNAL, "out of memory");
            goto out;
        }
        *frame = *owned;
        *len = strlen(*owned);
        break;
    }
    default:
        ft_err_set(err, FT_EFORBIDDEN, "message type '%s' is not allowed", ft_msg_name(type));
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(msg);
    return rc;
}

/* Does user have a job in team (a lead's view of usage by user)? */
static bool user_in_team(sched_t *s, const char *user, const char *team)
{
    ft_err_t err = {0};
    sqlite3_stmt *st = db_stmt(s->db, "SELECT 1 FROM jobs WHERE user = ? AND team = ? LIMIT 1", &err);
    bool yes = false;

    if (!st)
        return false;
    db_bind_text(st, 1, user);
    db_bind_text(st, 2, team);
    yes = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return yes;
}

/* Trims one reply in place; returns true when it changed. */
static bool trim(sched_t *s, const ft_identity_t *who, cJSON *m, const char *type)
{
    bool changed = false;

    if (strcmp(type, "jobs_reply") == 0) {
        cJSON *jobs = cJSON_GetObjectItemCaseSensitive(m, "jobs"), *j, *next;

        for (j = jobs ? jobs->child : NULL; j; j = next) {
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "user");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "team");

            next = j->next;
            if (!ft_auth_may_touch(who, cJSON_IsString(u) ? u->valuestring : NULL,
                                   cJSON_IsString(t) ? t->valuestring : NULL)) {
                cJSON_Delete(cJSON_DetachItemViaPointer(jobs, j));
                changed = true;
            }
        }
    } else if (strcmp(type, "usage_reply") == 0) {
        bool by_team = usage_by_team;
        cJSON *rows = cJSON_GetObjectItemCaseSensitive(m, "rows"), *r, *next, *c, *cn;

        for (r = rows ? rows->child : NULL; r; r = next) {
            const cJSON *k = cJSON_GetObjectItemCaseSensitive(r, "key");
            const char *key = cJSON_IsString(k) ? k->valuestring : "";
            bool keep;

            next = r->next;
            if (by_team)
                keep = strcmp(key, who->team) == 0;
            else if (who->role == FT_ROLE_LEAD)
                keep = user_in_team(s, key, who->team);
            else
                keep = strcmp(key, who->user) == 0;
            if (!keep) {
                cJSON_Delete(cJSON_DetachItemViaPointer(rows, r));
                changed = true;
            }
        }
        /* Team budgets (ledger.c lists every budgeted team's burn): own team only. */
        rows = cJSON_GetObjectItemCaseSensitive(m, "budgets");
        for (r = rows ? rows->child : NULL; r; r = next) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "team");

            next = r->next;
            if (!cJSON_IsString(t) || strcmp(t->valuestring, who->team) != 0) {
                cJSON_Delete(cJSON_DetachItemViaPointer(rows, r));
                changed = true;
            }
        }
        /* Cluster-wide totals would show what the other teams used. */
        for (c = m->child; c; c = cn) {
            cn = c->next;
            if (c->string && strncmp(c->string, "total", 5) == 0) {
                cJSON_Delete(cJSON_DetachItemViaPointer(m, c));
                changed = true;
            }
        }
    } else if (strcmp(type, "report_reply") == 0) {
        /* A lead's report: cluster utilisation, break-even and totals stay
         * (they name no team, and the reply needs them); per-team rows and
         * top jobs only of its team. */
        static const char *const by_team[] = {"team_days", "teams", "budgets"};
        cJSON *arr, *r, *next;

        for (size_t i = 0; i < sizeof(by_team) / sizeof(by_team[0]); i++) {
            arr = cJSON_GetObjectItemCaseSensitive(m, by_team[i]);
            for (r = arr ? arr->child : NULL; r; r = next) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "team");

                next = r->next;
                if (!cJSON_IsString(t) || strcmp(t->valuestring, who->team) != 0) {
                    cJSON_Delete(cJSON_DetachItemViaPointer(arr, r));
                    changed = true;
                }
            }
        }
        arr = cJSON_GetObjectItemCaseSensitive(m, "top_jobs");
        for (r = arr ? arr->child : NULL; r; r = next) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "job_id");
            ft_err_t err = {0};
            job_row_t j;

            next = r->next;
            if (!cJSON_IsNumber(id) || sched_job_load(s, (int64_t)id->valuedouble, &j, &err) != 0 ||
                !ft_auth_may_touch(who, j.user, j.team)) {
                cJSON_Delete(cJSON_DetachItemViaPointer(arr, r));
                changed = true;
            }
        }
    }
    return changed;
}

void authz_filter_replies(sched_t *s, const ft_identity_t *who, int from)
{
    if (who->role == FT_ROLE_ADMIN || who->role == FT_ROLE_WORKER)
        return;
    for (int i = from; i < s->nout; i++) {
        sched_msg_t *o = &s->out[i];
        const char *p = o->payload;
        cJSON *m;
        const cJSON *t;
        char *text;

        if (!strstr(p, "\"jobs_reply\"") && !strstr(p, "\"usage_reply\"") &&
            !strstr(p, "\"report_reply\""))
            continue;
        if (!(m = cJSON_Parse(p)))
            continue;
        t = cJSON_GetObjectItemCaseSensitive(m, "type");
        if (cJSON_IsString(t) && trim(s, who, m, t->valuestring) && (text = cJSON_PrintUnformatted(m))) {
            free(o->payload);
            o->payload = text;
        }
        cJSON_Delete(m);
    }
}
