/*
 * proto.c: the one table of protocol messages (docs/protocol.md) and the
 * central validator every inbound frame passes before any handler runs.
 *
 * Each row names a message type, who may send it and its fields with their
 * JSON type, whether required, and bounds (integer range, string length,
 * array length, printed size of an object). The common fields v, type, id and
 * re are checked for every type. Unknown top-level fields are rejected.
 * Cost: O(frame size) to parse plus O(fields x keys) to validate.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft/json.h"
#include "ft/proto.h"

typedef enum {
    JT_INT,  /* integer within [min, max] */
    JT_NUM,  /* any finite number within [min, max] */
    JT_STR,  /* string of at most max bytes */
    JT_BOOL, /* true or false */
    JT_OBJ,  /* object printed in at most max bytes (0 = no limit) */
    JT_ARR,  /* array of [min, max] elements, each of type elem */
} jtype_t;

typedef struct {
    const char *name; /* field name on the wire */
    jtype_t type;     /* JSON type */
    bool required;    /* absence is missing_field */
    bool nullable;    /* null is accepted as "not set" */
    int64_t min, max; /* bounds; meaning depends on type (see jtype_t) */
    int elem;         /* JT_ARR: element type (jtype_t), -1 = any */
} field_t;

#define MAX_FIELDS 16
#define I53 9007199254740991LL /* largest integer a double holds exactly */

typedef struct {
    const char *name;           /* "type" on the wire */
    int senders;                /* FT_FROM_* mask */
    field_t fields[MAX_FIELDS]; /* terminated by a row with name == NULL */
} msg_def_t;

/* clang-format off */
/* Field shorthands: required/optional integer, string, etc. */
#define RI(n, lo, hi) {n, JT_INT, true, false, lo, hi, -1}
#define OI(n, lo, hi) {n, JT_INT, false, false, lo, hi, -1}
#define ON(n) {n, JT_NUM, false, false, 0, 0, -1}
#define RS(n, len) {n, JT_STR, true, false, 0, len, -1}
#define OS(n, len) {n, JT_STR, false, false, 0, len, -1}
#define RB(n) {n, JT_BOOL, true, false, 0, 0, -1}
#define OB(n) {n, JT_BOOL, false, false, 0, 0, -1}
#define RO(n, sz) {n, JT_OBJ, true, false, 0, sz, -1}
#define RA(n, lo, hi, el) {n, JT_ARR, true, false, lo, hi, el}
#define OA(n, lo, hi, el) {n, JT_ARR, false, false, lo, hi, el}

#define JOB_ID RI("job_id", 1, I53)
#define ATTEMPT RI("attempt", 1, 1000000)
#define RANK RI("rank", 0, FT_MAX_RANK)
#define FT_MAX_RANK 1023
#define COUNT(n) RI(n, 0, I53)

/* Index = ft_msg_type_t. */
static const msg_def_t msg_table[FT_MSG__COUNT] = {
    [FT_MSG_PING] = {"ping", FT_FROM_CLIENT, {{0}}},
    [FT_MSG_SUBMIT] = {"submit", FT_FROM_CLIENT,
        {RO("spec", 64 * 1024), RS("user", 64), OS("team", 64), OS("request_id", 64),
         OI("array", 1, FT_ARRAY_MAX)}},
    [FT_MSG_JOBS] = {"jobs", FT_FROM_CLIENT,
        {OA("states", 0, 5, JT_STR), OS("user", 64), OI("limit", 1, 10000)}},
    [FT_MSG_JOB] = {"job", FT_FROM_CLIENT, {JOB_ID}},
    [FT_MSG_CANCEL] = {"cancel", FT_FROM_CLIENT,
        {RA("job_ids", 1, 1000, JT_INT), OS("reason", 256)}},
    [FT_MSG_LOGS] = {"logs", FT_FROM_CLIENT,
        {JOB_ID, OI("rank", 0, FT_MAX_RANK), OI("offset", 0, I53),
         OI("max_bytes", 1, FT_LOG_CHUNK_MAX)}},
    [FT_MSG_NODES] = {"nodes", FT_FROM_CLIENT, {{0}}},
    [FT_MSG_USAGE] = {"usage", FT_FROM_CLIENT,
        {OS("group_by", 16), OI("since", 0, I53), OI("until", 0, I53), OS("cloud", 64)}},
    [FT_MSG_REPORT] = {"report", FT_FROM_CLIENT, {OI("since", 0, I53), OI("until", 0, I53)}},

    [FT_MSG_PING_REPLY] = {"ping_reply", FT_FROM_SCHED,
        {RS("version", 64), RI("proto", 0, 1000), COUNT("time"), COUNT("jobs_pending"),
         COUNT("jobs_running"), COUNT("nodes_ready")}},
    [FT_MSG_SUBMIT_REPLY] = {"submit_reply", FT_FROM_SCHED,
        {JOB_ID, RB("duplicate"), RS("state", 16), OA("job_ids", 1, FT_ARRAY_MAX, JT_INT)}},
    [FT_MSG_JOBS_REPLY] = {"jobs_reply", FT_FROM_SCHED,
        {RA("jobs", 0, 10000, JT_OBJ), OB("truncated")}},
    [FT_MSG_JOB_REPLY] = {"job_reply", FT_FROM_SCHED, {RO("job", 0)}},
    [FT_MSG_CANCEL_REPLY] = {"cancel_reply", FT_FROM_SCHED,
        {RA("results", 0, 1000, JT_OBJ)}},
    [FT_MSG_LOGS_REPLY] = {"logs_reply", FT_FROM_SCHED,
        {RS("data", 4 * FT_LOG_CHUNK_MAX), COUNT("offset"), RB("eof")}},
    [FT_MSG_NODES_REPLY] = {"nodes_reply", FT_FROM_SCHED, {RA("nodes", 0, 100000, JT_OBJ)}},
    [FT_MSG_USAGE_REPLY] = {"usage_reply", FT_FROM_SCHED,
        {RA("rows", 0, 1000000, JT_OBJ), COUNT("since"), COUNT("until"), OS("currency", 16),
         OA("clouds", 0, 64, JT_STR), OA("budgets", 0, 1000, JT_OBJ)}},
    [FT_MSG_REPORT_REPLY] = {"report_reply", FT_FROM_SCHED,
        {RS("currency", 16), COUNT("since"), COUNT("until"), RO("totals", 0),
         RO("utilisation", 0), RA("break_even", 0, 64, JT_OBJ), RA("days", 0, 100000, JT_OBJ),
         RA("team_days", 0, 1000000, JT_OBJ), RA("teams", 0, 100000, JT_OBJ),
         RA("top_jobs", 0, 100, JT_OBJ), RA("budgets", 0, 1000, JT_OBJ)}},

    [FT_MSG_HELLO] = {"hello", FT_FROM_WORKER,
        {RS("name", 64), RS("hostname", 255), RI("pid", 1, 2147483647), RS("version", 64),
         RA("devices", 0, 64, JT_OBJ), RA("running", 0, 4096, JT_OBJ)}},
    [FT_MSG_HEARTBEAT] = {"heartbeat", FT_FROM_WORKER | FT_FROM_SCHED, {{0}}},
    [FT_MSG_RANK_STARTED] = {"rank_started", FT_FROM_WORKER,
        {JOB_ID, ATTEMPT, RANK, RI("pid", 1, 2147483647)}},
    [FT_MSG_PROGRESS] = {"progress", FT_FROM_WORKER,
        {JOB_ID, ATTEMPT, RANK, COUNT("step"), COUNT("total_steps"), ON("loss"), ON("lr"),
         ON("tokens_per_s"), ON("eval_loss"), ON("grad_norm"), ON("epoch"), ON("elapsed_s"),
         ON("eta_s"), OI("peak_mem_mb", 0, I53), OS("message", 256)}},
    [FT_MSG_RANK_EXITED] = {"rank_exited", FT_FROM_WORKER,
        {JOB_ID, ATTEMPT, RANK, RI("exit_code", -1, 255), RI("signal", 0, 128),
         RS("reason", 256), OI("energy_mj", 0, I53)}},
    [FT_MSG_LOG_DATA] = {"log_data", FT_FROM_WORKER,
        {RI("relay", 1, I53), OS("data", 4 * FT_LOG_CHUNK_MAX), OI("offset", 0, I53),
         OB("eof"), OS("error", 256)}},
    [FT_MSG_RENDEZVOUS] = {"rendezvous", FT_FROM_WORKER,
        {JOB_ID, ATTEMPT, RANK, RS("blob", FT_RDV_BLOB_MAX)}},

    [FT_MSG_HELLO_REPLY] = {"hello_reply", FT_FROM_SCHED,
        {RI("heartbeat_ms", 1, 3600000), RI("liveness", 1, 1000)}},
    [FT_MSG_START] = {"start", FT_FROM_SCHED,
        {JOB_ID, ATTEMPT, RS("kind", 16), RO("spec", 64 * 1024), RS("user", 64), RS("team", 64),
         RI("world_size", 1, FT_MAX_RANK + 1), RA("ranks", 1, FT_MAX_RANK + 1, JT_OBJ),
         OI("array_job_id", 1, I53), OI("array_index", 0, FT_ARRAY_MAX - 1)}},
    [FT_MSG_STOP] = {"stop", FT_FROM_SCHED,
        {JOB_ID, ATTEMPT, RS("reason", 256), RI("grace_ms", 0, 3600000)}},
    [FT_MSG_LOG_READ] = {"log_read", FT_FROM_SCHED,
        {RI("relay", 1, I53), JOB_ID, RANK, COUNT("offset"), RI("max_bytes", 1, FT_LOG_CHUNK_MAX)}},
    [FT_MSG_RENDEZVOUS_REPLY] = {"rendezvous_reply", FT_FROM_SCHED,
        {JOB_ID, ATTEMPT, RA("blobs", 1, FT_MAX_RANK + 1, JT_STR)}},

    [FT_MSG_ERROR] = {"error", FT_FROM_CLIENT | FT_FROM_WORKER | FT_FROM_SCHED,
        {RS("code", 32), RS("message", 1024)}},
};

/* clang-format on */

/* Fields every message may carry besides its own. */
static const char *const common_fields[] = {"v", "type", "id", "re"};

const char *ft_msg_name(ft_msg_type_t t)
{
    if ((int)t < 0 || t >= FT_MSG__COUNT)
        return "?";
    return msg_table[t].name;
}

ft_msg_type_t ft_msg_from_name(const char *name)
{
    if (!name)
        return FT_MSG__COUNT;
    for (int i = 0; i < FT_MSG__COUNT; i++)
        if (strcmp(msg_table[i].name, name) == 0)
            return (ft_msg_type_t)i;
    return FT_MSG__COUNT;
}

int ft_msg_senders(ft_msg_type_t t)
{
    if ((int)t < 0 || t >= FT_MSG__COUNT)
        return 0;
    return msg_table[t].senders;
}

static const char *jtype_name(int t)
{
    static const char *const names[] = {"an integer", "a number",  "a string",
                                        "a boolean",  "an object", "an array"};

    return t >= 0 && t <= JT_ARR ? names[t] : "a value";
}

static bool is_jtype(const cJSON *it, int t)
{
    switch (t) {
    case JT_INT: {
        double v = it->valuedouble;
        return cJSON_IsNumber(it) && v >= (double)-I53 && v <= (double)I53 && v == floor(v);
    }
    case JT_NUM:
        return cJSON_IsNumber(it);
    case JT_STR:
        return cJSON_IsString(it);
    case JT_BOOL:
        return cJSON_IsBool(it);
    case JT_OBJ:
        return cJSON_IsObject(it);
    case JT_ARR:
        return cJSON_IsArray(it);
    default:
        return true;
    }
}

static int check_field(const cJSON *msg, const field_t *f, ft_err_t *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(msg, f->name);
    int64_t i;
    double d;
    bool b;
    const char *s;

    if (!it) {
        if (!f->required)
            return 0;
        ft_err_set(err, FT_EMISSING, "field '%s': required field missing", f->name);
        return -1;
    }
    if (f->nullable && cJSON_IsNull(it))
        return 0;
    switch (f->type) {
    case JT_INT:
        return ft_json_get_int(msg, NULL, f->name, true, f->min, f->max, &i, err) < 0 ? -1 : 0;
    case JT_NUM:
        return ft_json_get_num(msg, NULL, f->name, true, -1e300, 1e300, &d, err) < 0 ? -1 : 0;
    case JT_STR:
        return ft_json_get_str(msg, NULL, f->name, true, (size_t)f->max, &s, err) < 0 ? -1 : 0;
    case JT_BOOL:
        return ft_json_get_bool(msg, NULL, f->name, true, &b, err) < 0 ? -1 : 0;
    case JT_OBJ:
        if (!cJSON_IsObject(it)) {
            ft_err_set(err, FT_EBADFIELD, "field '%s': expected an object", f->name);
            return -1;
        }
        if (f->max > 0) {
            char *p = cJSON_PrintUnformatted(it);
            size_t n = p ? strlen(p) : 0;

            free(p);
            if (!p) {
                ft_err_set(err, FT_EINTERNAL, "out of memory measuring field '%s'", f->name);
                return -1;
            }
            if (n > (size_t)f->max) {
                ft_err_set(err, FT_ETOOLARGE, "field '%s': larger than %lld bytes", f->name,
                           (long long)f->max);
                return -1;
            }
        }
        return 0;
    case JT_ARR: {
        int n = 0, idx = 0;
        const cJSON *e;

        if (!cJSON_IsArray(it)) {
            ft_err_set(err, FT_EBADFIELD, "field '%s': expected an array", f->name);
            return -1;
        }
        n = cJSON_GetArraySize(it);
        if (n < f->min || n > f->max) {
            ft_err_set(err, n > f->max ? FT_ETOOLARGE : FT_EBADFIELD,
                       "field '%s': expected %lld to %lld elements, got %d", f->name,
                       (long long)f->min, (long long)f->max, n);
            return -1;
        }
        cJSON_ArrayForEach(e, it)
        {
            if (f->elem >= 0 && !is_jtype(e, f->elem)) {
                ft_err_set(err, FT_EBADFIELD, "field '%s[%d]': expected %s", f->name, idx,
                           jtype_name(f->elem));
                return -1;
            }
            idx++;
        }
        return 0;
    }
    }
    return 0;
}

static bool field_known(const msg_def_t *def, const char *name)
{
    for (size_t i = 0; i < sizeof(common_fields) / sizeof(common_fields[0]); i++)
        if (strcmp(common_fields[i], name) == 0)
            return true;
    for (const field_t *f = def->fields; f->name; f++)
        if (strcmp(f->name, name) == 0)
            return true;
    return false;
}

int ft_proto_validate(const cJSON *msg, ft_msg_type_t *type, ft_err_t *err)
{
    const cJSON *v, *t, *c;
    const char *s;
    ft_msg_type_t mt;
    const msg_def_t *def;

    if (type)
        *type = FT_MSG__COUNT;
    if (!cJSON_IsObject(msg)) {
        ft_err_set(err, FT_EBADJSON, "message is not a JSON object");
        return -1;
    }
    v = cJSON_GetObjectItemCaseSensitive(msg, "v");
    if (!v) {
        ft_err_set(err, FT_EVERSION, "field 'v': protocol version missing");
        return -1;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)FT_PROTO_VERSION) {
        ft_err_set(err, FT_EVERSION, "field 'v': unsupported protocol version (this is %d)",
                   FT_PROTO_VERSION);
        return -1;
    }
    t = cJSON_GetObjectItemCaseSensitive(msg, "type");
    if (!t) {
        ft_err_set(err, FT_EUNKNOWNTYPE, "field 'type': message type missing");
        return -1;
    }
    if (!cJSON_IsString(t)) {
        ft_err_set(err, FT_EUNKNOWNTYPE, "field 'type': expected a string");
        return -1;
    }
    mt = ft_msg_from_name(t->valuestring);
    if (mt == FT_MSG__COUNT) {
        ft_err_set(err, FT_EUNKNOWNTYPE, "unknown message type '%s'",
                   ft_sanitize(t->valuestring, 64));
        return -1;
    }
    if (type)
        *type = mt;
    def = &msg_table[mt];
    if (ft_json_get_str(msg, NULL, "id", false, 64, &s, err) < 0 ||
        ft_json_get_str(msg, NULL, "re", false, 64, &s, err) < 0)
        return -1;
    for (c = msg->child; c; c = c->next) {
        if (!c->string || !field_known(def, c->string)) {
            ft_err_set(err, FT_EBADFIELD, "unknown field '%s' in '%s'",
                       ft_sanitize(c->string ? c->string : "", 64), def->name);
            return -1;
        }
    }
    for (const field_t *f = def->fields; f->name; f++)
        if (check_field(msg, f, err) < 0)
            return -1;
    return 0;
}

cJSON *ft_proto_decode(const void *buf, size_t len, ft_msg_type_t *type, char *req_id,
                       size_t req_id_len, ft_err_t *err)
{
    cJSON *msg;
    const cJSON *id;

    if (type)
        *type = FT_MSG__COUNT;
    if (req_id && req_id_len)
        req_id[0] = '\0';
    if (len > FT_MSG_MAX_BYTES) {
        ft_err_set(err, FT_ETOOLARGE, "message of %zu bytes is over the limit of %d", len,
                   FT_MSG_MAX_BYTES);
        return NULL;
    }
    msg = ft_json_parse(buf, len, err);
    if (!msg)
        return NULL;
    /* Read "id" first so that even a message that fails validation gets an
     * error reply the sender can match. */
    id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    if (req_id && req_id_len && cJSON_IsString(id) && strlen(id->valuestring) <= 64)
        ft_strlcpy(req_id, id->valuestring, req_id_len);
    if (ft_proto_validate(msg, type, err) < 0) {
        cJSON_Delete(msg);
        return NULL;
    }
    return msg;
}

cJSON *ft_proto_new(ft_msg_type_t type, const char *re)
{
    cJSON *msg = cJSON_CreateObject();

    if (!msg)
        return NULL;
    if (!cJSON_AddNumberToObject(msg, "v", FT_PROTO_VERSION) ||
        !cJSON_AddStringToObject(msg, "type", ft_msg_name(type)) ||
        (re && *re && !cJSON_AddStringToObject(msg, "re", re))) {
        cJSON_Delete(msg);
        return NULL;
    }
    return msg;
}

cJSON *ft_proto_error(const char *re, const ft_err_t *err)
{
    cJSON *msg = ft_proto_new(FT_MSG_ERROR, re);
    ft_errcode_t code = err && err->code != FT_OK ? err->code : FT_EINTERNAL;
    const char *text = err && err->msg[0] ? err->msg : "unspecified error";

    if (!msg)
        return NULL;
    if (!cJSON_AddStringToObject(msg, "code", ft_errcode_name(code)) ||
        !cJSON_AddStringToObject(msg, "message", ft_sanitize(text, 1000))) {
        cJSON_Delete(msg);
        return NULL;
    }
    return msg;
}
