/*
 * jobspec.c: the job spec users submit, parsed and validated in one place
 * (the client for an early error, the scheduler as the authority, the worker
 * and trainer for what to run). Top-level keys and the exec section are here;
 * the train section of lora jobs is lib/trainspec.c.
 *
 * Invariants after a successful ft_jobspec_parse: every number is within the
 * bounds of its row in spec_keys; kind exec has a non-empty argv and no train;
 * kind lora has a parsed train section and no command; the resource request
 * is self-consistent (nodes x gpus_per_node == gpus when both are given).
 * Unknown keys are errors naming them. Cost: O(size of the spec).
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft/jobspec.h"
#include "ft/json.h"

#define CTX "spec"
#define ARG_MAX_LEN 4096 /* bytes per argv element or env value */
#define ENV_KEY_MAX 128  /* bytes per env name */

typedef enum {
    SK_INT,     /* int field, bounds min..max */
    SK_INT64,   /* int64_t field, bounds min..max */
    SK_NUM,     /* double field, bounds min..max */
    SK_BOOL,    /* bool field */
    SK_NAME,    /* char[FT_NAME_MAX + 1] field */
    SK_SPECIAL, /* parsed by its own function below */
} skind_t;

typedef struct ft_jobspec_key ft_jobspec_key_t;
typedef int (*special_fn)(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err);

struct ft_jobspec_key {
    const char *name;   /* key in the spec */
    skind_t kind;       /* how the value is read */
    size_t off;         /* offsetof into ft_jobspec_t (not for SK_SPECIAL) */
    double min, max;    /* inclusive bounds for numbers */
    special_fn special; /* SK_SPECIAL: the parser */
};

static int parse_kind(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err);
static int parse_device(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err);
static int parse_command(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err);
static int parse_env(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err);
static int parse_cwd(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err);
static int parse_train(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err);

#define OFF(f) offsetof(ft_jobspec_t, f)

/* One row per top-level key. kind comes first: later rows depend on it. */
static const ft_jobspec_key_t spec_keys[] = {
    {"kind", SK_SPECIAL, 0, 0, 0, parse_kind},
    {"name", SK_NAME, OFF(name), 0, 0, NULL},
    {"priority", SK_INT, OFF(priority), -1000, 1000, NULL},
    {"gpus", SK_INT, OFF(gpus), 1, FT_MAX_GPUS_PER_JOB, NULL},
    {"gpus_per_node", SK_INT, OFF(gpus_per_node), 0, 64, NULL},
    {"nodes", SK_INT, OFF(nodes), 0, FT_MAX_GPUS_PER_JOB, NULL},
    {"device", SK_SPECIAL, 0, 0, 0, parse_device},
    {"gpu_model", SK_NAME, OFF(gpu_model), 0, 0, NULL},
    {"gpu_mem_gb", SK_NUM, OFF(gpu_mem_gb), 0, 65536, NULL},
    {"time_limit_s", SK_INT64, OFF(time_limit_s), 0, 366.0 * 86400, NULL},
    {"max_retries", SK_INT, OFF(max_retries), 0, 100, NULL},
    {"requeue_on_failure", SK_BOOL, OFF(requeue_on_failure), 0, 0, NULL},
    {"command", SK_SPECIAL, 0, 0, 0, parse_command},
    {"env", SK_SPECIAL, 0, 0, 0, parse_env},
    {"cwd", SK_SPECIAL, 0, 0, 0, parse_cwd},
    {"train", SK_SPECIAL, 0, 0, 0, parse_train},
};
#define N_SPEC_KEYS (sizeof(spec_keys) / sizeof(spec_keys[0]))

/* Names of ft_devclass_t, by value. */
static const char *const devclass_names[] = {"any", "gpu", "cpu", NULL};
/* Names of ft_job_kind_t, by value. */
static const char *const kind_names[] = {"exec", "lora", NULL};

/* Environment names the worker sets itself; a spec may not override them. */
static const char *const reserved_env[] = {"CUDA_VISIBLE_DEVICES", NULL};

static int name_index(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

/* True when s holds no control characters (names end up in tables and logs). */
static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static int parse_enum(const cJSON *spec, const char *key, const char *const *names, int *out,
                      ft_err_t *err)
{
    const char *s = NULL;
    int rc = ft_json_get_str(spec, CTX, key, false, 16, &s, err);
    int i;

    if (rc != 0)
        return rc;
    i = name_index(names, s);
    if (i < 0) {
        char allowed[128] = "";

        for (int k = 0; names[k]; k++) {
            size_t n = strlen(allowed);
            snprintf(allowed + n, sizeof(allowed) - n, "%s'%s'", k ? ", " : "", names[k]);
        }
        ft_err_set(err, FT_EBADFIELD, CTX ".%s: '%s' is not one of %s", key, ft_sanitize(s, 64),
                   allowed);
        return -1;
    }
    *out = i;
    return 0;
}

static int parse_kind(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err)
{
    int k = -1;
    int rc = parse_enum(spec, "kind", kind_names, &k, err);

    if (rc < 0)
        return -1;
    if (rc == 1) {
        /* Absent: infer it from the section present, else insist. */
        if (cJSON_GetObjectItemCaseSensitive(spec, "train"))
            k = FT_KIND_LORA;
        else if (cJSON_GetObjectItemCaseSensitive(spec, "command"))
            k = FT_KIND_EXEC;
        else {
            ft_err_set(err, FT_EMISSING, CTX ".kind: required field missing ('exec' or 'lora')");
            return -1;
        }
    }
    out->kind = (ft_job_kind_t)k;
    return 0;
}

static int parse_device(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err)
{
    int d = FT_DEV_ANY;

    if (parse_enum(spec, "device", devclass_names, &d, err) < 0)
        return -1;
    out->device = (ft_devclass_t)d;
    return 0;
}

static int parse_command(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err)
{
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(spec, "command");
    const cJSON *e;
    int n, i = 0;

    if (!cmd) {
        if (out->kind == FT_KIND_EXEC) {
            ft_err_set(err, FT_EMISSING, CTX ".command: required for kind 'exec'");
            return -1;
        }
        return 0;
    }
    if (out->kind != FT_KIND_EXEC) {
        ft_err_set(err, FT_EBADFIELD, CTX ".command: not allowed for kind 'lora' (use 'train')");
        return -1;
    }
    if (!cJSON_IsArray(cmd)) {
        ft_err_set(err, FT_EBADFIELD, CTX ".command: expected an array of strings");
        return -1;
    }
    n = cJSON_GetArraySize(cmd);
    if (n < 1 || n > FT_MAX_ARGV) {
        ft_err_set(err, n < 1 ? FT_EBADFIELD : FT_ETOOLARGE,
                   CTX ".command: expected 1 to %d strings, got %d", FT_MAX_ARGV, n);
        return -1;
    }
    out->argv = calloc((size_t)n + 1, sizeof(char *));
    if (!out->argv) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    cJSON_ArrayForEach(e, cmd)
    {
        if (!cJSON_IsString(e)) {
            ft_err_set(err, FT_EBADFIELD, CTX ".command[%d]: expected a string", i);
            return -1;
        }
        if (strlen(e->valuestring) > ARG_MAX_LEN) {
            ft_err_set(err, FT_ETOOLARGE, CTX ".command[%d]: longer than %d bytes", i, ARG_MAX_LEN);
            return -1;
        }
        if (i == 0 && e->valuestring[0] == '\0') {
            ft_err_set(err, FT_EBADFIELD, CTX ".command[0]: the program must not be empty");
            return -1;
        }
        out->argv[i] = strdup(e->valuestring);
        if (!out->argv[i]) {
            ft_err_set(err, FT_EINTERNAL, "out of memory");
            return -1;
        }
        out->argc = ++i;
    }
    return 0;
}

static bool env_name_ok(const char *k)
{
    if (!(isalpha((unsigned char)k[0]) || k[0] == '_'))
        return false;
    for (const char *p = k + 1; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return false;
    return true;
}

static int parse_env(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err)
{
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(spec, "env");
    const cJSON *e;
    int n, i = 0;

    if (!env)
        return 0;
    if (!cJSON_IsObject(env)) {
        ft_err_set(err, FT_EBADFIELD, CTX ".env: expected an object of strings");
        return -1;
    }
    n = cJSON_GetArraySize(env);
    if (n > FT_MAX_ENV) {
        ft_err_set(err, FT_ETOOLARGE, CTX ".env: more than %d variables", FT_MAX_ENV);
        return -1;
    }
    out->env = calloc((size_t)n + 1, sizeof(char *));
    if (!out->env) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    cJSON_ArrayForEach(e, env)
    {
        const char *k = e->string ? e->string : "";

        if (strlen(k) > ENV_KEY_MAX || !env_name_ok(k)) {
            ft_err_set(
                err, FT_EBADFIELD,
                CTX ".env: '%s' is not a variable name ([A-Za-z_][A-Za-z0-9_]*, at most %d bytes)",
                ft_sanitize(k, 64), ENV_KEY_MAX);
            return -1;
        }
        if (strncmp(k, "FT_", 3) == 0 || name_index(reserved_env, k) >= 0) {
            ft_err_set(err, FT_EBADFIELD, CTX ".env.%s: reserved, set by the worker", k);
            return -1;
        }
        if (!cJSON_IsString(e)) {
            ft_err_set(err, FT_EBADFIELD, CTX ".env.%s: expected a string", k);
            return -1;
        }
        if (strlen(e->valuestring) > ARG_MAX_LEN) {
            ft_err_set(err, FT_ETOOLARGE, CTX ".env.%s: longer than %d bytes", k, ARG_MAX_LEN);
            return -1;
        }
        out->env[i] = ft_asprintf("%s=%s", k, e->valuestring);
        if (!out->env[i]) {
            ft_err_set(err, FT_EINTERNAL, "out of memory");
            return -1;
        }
        out->envc = ++i;
    }
    return 0;
}

static int parse_cwd(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err)
{
    const char *s = NULL;
    int rc = ft_json_get_str(spec, CTX, "cwd", false, FT_PATH_MAX - 1, &s, err);

    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (s[0] != '/' || !printable(s)) {
        ft_err_set(err, FT_EBADFIELD, CTX ".cwd: expected an absolute path, got '%s'",
                   ft_sanitize(s, 64));
        return -1;
    }
    ft_strlcpy(out->cwd, s, sizeof(out->cwd));
    return 0;
}

static int parse_train(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err)
{
    const cJSON *train = cJSON_GetObjectItemCaseSensitive(spec, "train");

    if (out->kind == FT_KIND_EXEC) {
        if (train) {
            ft_err_set(err, FT_EBADFIELD, CTX ".train: not allowed for kind 'exec'");
            return -1;
        }
        return 0;
    }
    if (!train) {
        ft_err_set(err, FT_EMISSING, CTX ".train: required for kind 'lora'");
        return -1;
    }
    return ft_trainspec_parse(train, &out->train, err);
}

/* Resource request consistency, once every key is read. */
static int check_resources(ft_jobspec_t *s, ft_err_t *err)
{
    if (s->nodes > s->gpus) {
        ft_err_set(err, FT_EBADFIELD, CTX ".nodes: %d nodes for %d gpus leaves a node empty",
                   s->nodes, s->gpus);
        return -1;
    }
    if (s->gpus_per_node > s->gpus) {
        ft_err_set(err, FT_EBADFIELD, CTX ".gpus_per_node: %d is more than gpus (%d)",
                   s->gpus_per_node, s->gpus);
        return -1;
    }
    if (s->gpus_per_node > 0 && s->gpus % s->gpus_per_node != 0) {
        ft_err_set(err, FT_EBADFIELD, CTX ".gpus: %d is not a multiple of gpus_per_node (%d)",
                   s->gpus, s->gpus_per_node);
        return -1;
    }
    if (s->nodes > 0 && s->gpus_per_node > 0 && s->nodes * s->gpus_per_node != s->gpus) {
        ft_err_set(err, FT_EBADFIELD, CTX ".gpus: %d is not nodes x gpus_per_node (%d x %d)",
                   s->gpus, s->nodes, s->gpus_per_node);
        return -1;
    }
    if (s->device == FT_DEV_CPU && (s->gpu_model[0] || s->gpu_mem_gb > 0)) {
        ft_err_set(err, FT_EBADFIELD, CTX ".%s: not allowed with device 'cpu'",
                   s->gpu_model[0] ? "gpu_model" : "gpu_mem_gb");
        return -1;
    }
    return 0;
}

/* The default job name: the last path component of the program, or "lora". */
static void default_name(ft_jobspec_t *s)
{
    const char *p, *slash;

    if (s->name[0])
        return;
    if (s->kind == FT_KIND_LORA || !s->argv || !s->argv[0]) {
        ft_strlcpy(s->name, "lora", sizeof(s->name));
        return;
    }
    p = s->argv[0];
    slash = strrchr(p, '/');
    if (slash && slash[1])
        p = slash + 1;
    ft_strlcpy(s->name, p, sizeof(s->name));
    for (char *c = s->name; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
}

int ft_jobspec_parse(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err)
{
    const char *allowed[N_SPEC_KEYS + 1];

    memset(out, 0, sizeof(*out));
    out->gpus = 1;
    out->max_retries = 3;
    ft_trainspec_defaults(&out->train);
    if (!cJSON_IsObject(spec)) {
        ft_err_set(err, FT_EBADFIELD, CTX ": expected an object");
        return -1;
    }
    for (size_t i = 0; i < N_SPEC_KEYS; i++)
        allowed[i] = spec_keys[i].name;
    allowed[N_SPEC_KEYS] = NULL;
    if (ft_json_check_keys(spec, CTX, allowed, err) < 0)
        return -1;

    for (size_t i = 0; i < N_SPEC_KEYS; i++) {
        const ft_jobspec_key_t *k = &spec_keys[i];
        char *base = (char *)out;
        int64_t iv = 0;
        double dv = 0;
        bool bv = false;
        const char *sv = NULL;
        int rc = 0;

        switch (k->kind) {
        case SK_INT:
        case SK_INT64:
            rc = ft_json_get_int(spec, CTX, k->name, false, (int64_t)k->min, (int64_t)k->max, &iv,
                                 err);
            if (rc == 0 && k->kind == SK_INT) {
                int v = (int)iv;
                memcpy(base + k->off, &v, sizeof(v));
            } else if (rc == 0) {
                memcpy(base + k->off, &iv, sizeof(iv));
            }
            break;
        case SK_NUM:
            rc = ft_json_get_num(spec, CTX, k->name, false, k->min, k->max, &dv, err);
            if (rc == 0)
                memcpy(base + k->off, &dv, sizeof(dv));
            break;
        case SK_BOOL:
            rc = ft_json_get_bool(spec, CTX, k->name, false, &bv, err);
            if (rc == 0)
                memcpy(base + k->off, &bv, sizeof(bv));
            break;
        case SK_NAME:
            rc = ft_json_get_str(spec, CTX, k->name, false, FT_NAME_MAX, &sv, err);
            if (rc == 0 && (!sv[0] || !printable(sv))) {
                ft_err_set(err, FT_EBADFIELD,
                           CTX ".%s: expected a non-empty name without control characters",
                           k->name);
                rc = -1;
            }
            if (rc == 0)
                ft_strlcpy(base + k->off, sv, FT_NAME_MAX + 1);
            break;
        case SK_SPECIAL:
            rc = k->special(spec, out, err);
            break;
        }
        if (rc < 0)
            return -1;
    }
    if (check_resources(out, err) < 0)
        return -1;
    default_name(out);
    return 0;
}

void ft_jobspec_free(ft_jobspec_t *spec)
{
    if (!spec)
        return;
    if (spec->argv) {
        for (int i = 0; spec->argv[i]; i++)
            free(spec->argv[i]);
        free(spec->argv);
    }
    if (spec->env) {
        for (int i = 0; spec->env[i]; i++)
            free(spec->env[i]);
        free(spec->env);
    }
    spec->argv = spec->env = NULL;
    spec->argc = spec->envc = 0;
}
