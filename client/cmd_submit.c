/*
 * client/cmd_submit.c: `ftctl submit`: a job spec file, or a command wrapped in
 * an exec spec (like sbatch --wrap). The spec is validated here with the same
 * parser the scheduler uses, so a typo fails before anything is sent, naming the
 * key; the scheduler stays the authority.
 *
 * With --array N the one request asks for N jobs of the same spec (a job array,
 * like sbatch --array=0-(N-1)): the scheduler commits them in one transaction
 * and each rank sees FT_ARRAY_INDEX. That is one process and one round trip for
 * N jobs instead of N.
 *
 * Invariants: each submit carries a fresh random request_id and is resent at most
 * once, with the same request_id, after a time-out, so a retry never creates a
 * second job (or array). On success only the job ids are printed, one a line
 * (scripts capture them).
 *
 * Cost: reading the file (at most FT_SPEC_MAX_BYTES) and one round trip (two on
 * a time-out).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "ft/json.h"
#include "ftctl.h"

/* Spec keys written by the options (docs/job-spec.md). */
#define KEY_KIND "kind"
#define KEY_NAME "name"
#define KEY_GPUS "gpus"
#define KEY_PRIORITY "priority"
#define KEY_DEVICE "device"
#define KEY_COMMAND "command"
#define KEY_CWD "cwd"

typedef struct {
    const char *team; /* --team, NULL = session default */
    int64_t gpus;     /* --gpus, -1 = not given */
    const char *name; /* --name, NULL = not given */
    int64_t priority; /* --priority, INT64_MIN = not given */
    bool cpu;         /* --cpu */
    int64_t array;    /* --array N: jobs in the array, 0 = a single job */
} submit_opts_t;

static int parse_int_opt(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Replaces key in obj with item (takes ownership); -1 on allocation failure. */
static int set_key(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return -1;
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return -1;
    }
    return 0;
}

static int apply_opts(cJSON *spec, const submit_opts_t *o)
{
    if (o->gpus >= 0 && set_key(spec, KEY_GPUS, cJSON_CreateNumber((double)o->gpus)) < 0)
        return -1;
    if (o->name && set_key(spec, KEY_NAME, cJSON_CreateString(o->name)) < 0)
        return -1;
    if (o->priority != INT64_MIN &&
        set_key(spec, KEY_PRIORITY, cJSON_CreateNumber((double)o->priority)) < 0)
        return -1;
    if (o->cpu && set_key(spec, KEY_DEVICE, cJSON_CreateString("cpu")) < 0)
        return -1;
    return 0;
}

/* The exec spec for `submit -- CMD ARGS...`; NULL on allocation failure. */
static cJSON *wrap_command(int argc, char **argv)
{
    cJSON *spec = cJSON_CreateObject();
    cJSON *cmd = cJSON_CreateArray();
    if (!spec || !cmd)
        goto fail;
    for (int i = 0; i < argc; i++) {
        cJSON *s = cJSON_CreateString(argv[i]);
        if (!s || !cJSON_AddItemToArray(cmd, s)) {
            cJSON_Delete(s);
            goto fail;
        }
    }
    if (!cJSON_AddStringToObject(spec, KEY_KIND, "exec"))
        goto fail;
    if (!cJSON_AddItemToObject(spec, KEY_COMMAND, cmd))
        goto fail;
    cmd = NULL;
    /* Like sbatch: the job starts where it was submitted from. */
    char cwd[FT_PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) && !cJSON_AddStringToObject(spec, KEY_CWD, cwd))
        goto fail;
    return spec;
fail:
    cJSON_Delete(cmd);
    cJSON_Delete(spec);
    return NULL;
}

static cJSON *read_spec_file(const char *path)
{
    ft_err_t err;
    ft_err_clear(&err);
    size_t len = 0;
    char *buf = ft_read_file(path, FT_SPEC_MAX_BYTES, &len, &err);
    if (!buf) {
        ftctl_die_msg("%s: %s", ft_errcode_name(err.code), err.msg);
        return NULL;
    }
    cJSON *spec = ft_json_parse(buf, len, &err);
    free(buf);
    if (!spec) {
        ftctl_die_msg("%s: '%s': %s", ft_errcode_name(err.code), ft_sanitize(path, 128), err.msg);
        return NULL;
    }
    if (!cJSON_IsObject(spec)) {
        ftctl_die_msg("bad_json: '%s': the job spec must be a JSON object", ft_sanitize(path, 128));
        cJSON_Delete(spec);
        return NULL;
    }
    return spec;
}

static void random_request_id(char *buf, size_t len)
{
    unsigned char r[16];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        /* Unlikely; time and pid still make a key unique enough per user. */
        snprintf(buf, len, "t%lld-p%ld", (long long)ft_now_ms(), (long)getpid());
        return;
    }
    static const char hex[] = "0123456789abcdef";
    size_t j = 0;
    for (size_t i = 0; i < sizeof(r) && j + 2 < len; i++) {
        buf[j++] = hex[r[i] >> 4];
        buf[j++] = hex[r[i] & 15];
    }
    buf[j] = '\0';
}

enum { OPT_TEAM = 256, OPT_GPUS, OPT_NAME, OPT_PRIORITY, OPT_CPU, OPT_ARRAY };

int ftctl_cmd_submit(ftctl_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"team", required_argument, NULL, OPT_TEAM},
        {"gpus", required_argument, NULL, OPT_GPUS},
        {"name", required_argument, NULL, OPT_NAME},
        {"priority", required_argument, NULL, OPT_PRIORITY},
        {"cpu", no_argument, NULL, OPT_CPU},
        {"array", required_argument, NULL, OPT_ARRAY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    submit_opts_t o = {.team = NULL, .gpus = -1, .name = NULL, .priority = INT64_MIN};
    /* Everything after the first "--" is the wrapped command, never parsed
     * here; options may come in any order before it, or around a spec file. */
    int dd = -1;
    for (int i = 1; i < argc && dd < 0; i++)
        if (strcmp(argv[i], "--") == 0)
            dd = i;
    int opt_argc = dd >= 0 ? dd : argc;
    int opt;
    while ((opt = getopt_long(opt_argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_TEAM:
            o.team = optarg;
            break;
        case OPT_GPUS:
            if (parse_int_opt(optarg, 1, FT_MAX_GPUS_PER_JOB, &o.gpus) < 0)
                return ftctl_usage_error("submit", "bad --gpus '%s': expected 1..%d",
                                         ft_sanitize(optarg, 32), FT_MAX_GPUS_PER_JOB);
            break;
        case OPT_NAME:
            o.name = optarg;
            break;
        case OPT_PRIORITY:
            if (parse_int_opt(optarg, -1000, 1000, &o.priority) < 0)
                return ftctl_usage_error("submit", "bad --priority '%s': expected -1000..1000",
                                         ft_sanitize(optarg, 32));
            break;
        case OPT_CPU:
            o.cpu = true;
            break;
        case OPT_ARRAY:
            if (parse_int_opt(optarg, 1, FT_ARRAY_MAX, &o.array) < 0)
                return ftctl_usage_error("submit", "bad --array '%s': expected 1..%d",
                                         ft_sanitize(optarg, 32), FT_ARRAY_MAX);
            break;
        case 'h':
            return ftctl_usage("submit", 0);
        case ':':
            return ftctl_usage_error("submit", "option '%s' needs a value", argv[optind - 1]);
        default:
            return ftctl_usage_error("submit", "unknown option '%s'",
                                     ft_sanitize(argv[optind - 1], 64));
        }
    }
    bool wrapped = dd >= 0;
    if (wrapped && optind < opt_argc)
        return ftctl_usage_error("submit", "unexpected argument '%s' before '--'",
                                 ft_sanitize(argv[optind], 64));
    const char *team = o.team ? o.team : c->team;
    size_t tl = strlen(team);
    if (tl == 0 || tl > FT_NAME_MAX ||
        strspn(team, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != tl)
        return ftctl_usage_error("submit", "bad --team '%s': expected 1..%d of [A-Za-z0-9._-]",
                                 ft_sanitize(team, 64), FT_NAME_MAX);

    cJSON *spec = NULL;
    if (wrapped) {
        if (dd + 1 >= argc)
            return ftctl_usage_error("submit", "no command after '--'");
        spec = wrap_command(argc - dd - 1, argv + dd + 1);
        if (!spec) {
            ftctl_die_msg("out of memory");
            return FTCTL_EXIT_FAILED;
        }
    } else {
        if (optind >= argc)
            return ftctl_usage_error("submit", "expected a job spec file, or '--' and a command");
        if (optind + 1 < argc)
            return ftctl_usage_error("submit",
                                     "expected one job spec file, got %d arguments; "
                                     "put '--' before a command",
                                     argc - optind);
        spec = read_spec_file(argv[optind]);
        if (!spec)
            return FTCTL_EXIT_FAILED;
    }
    if (apply_opts(spec, &o) < 0) {
        cJSON_Delete(spec);
        ftctl_die_msg("out of memory");
        return FTCTL_EXIT_FAILED;
    }

    /* The early check: the same parser the scheduler runs. */
    ft_jobspec_t js;
    ft_err_t err;
    memset(&js, 0, sizeof(js));
    ft_err_clear(&err);
    int prc = ft_jobspec_parse(spec, &js, &err);
    ft_jobspec_free(&js);
    if (prc < 0) {
        if (wrapped)
            ftctl_die_msg("%s: %s", ft_errcode_name(err.code), err.msg);
        else
            ftctl_die_msg("%s: '%s': %s", ft_errcode_name(err.code), ft_sanitize(argv[optind], 128),
                          err.msg);
        cJSON_Delete(spec);
        return FTCTL_EXIT_FAILED;
    }

    ftctl_trace("spec-checked");
    cJSON *req = ft_proto_new(FT_MSG_SUBMIT, NULL);
    char rid[40];
    random_request_id(rid, sizeof(rid));
    if (!req || !cJSON_AddItemToObject(req, "spec", spec)) {
        cJSON_Delete(req);
        cJSON_Delete(spec);
        ftctl_die_msg("out of memory");
        return FTCTL_EXIT_FAILED;
    }
    if (!cJSON_AddStringToObject(req, "user", c->user) ||
        !cJSON_AddStringToObject(req, "team", team) ||
        !cJSON_AddStringToObject(req, "request_id", rid) ||
        (o.array && !cJSON_AddNumberToObject(req, "array", (double)o.array))) {
        cJSON_Delete(req);
        ftctl_die_msg("out of memory");
        return FTCTL_EXIT_FAILED;
    }
    cJSON *reply = NULL;
    int rc = ftctl_request(c, req, 1, &reply);
    if (rc != FTCTL_EXIT_OK)
        return rc;
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(reply, "job_ids"), *id;
    if (c->output == FTCTL_OUT_JSON) {
        ftctl_print_payload(reply);
    } else if (cJSON_IsArray(ids)) { /* the validator checked: integers */
        cJSON_ArrayForEach(id, ids)
        {
            printf("%lld\n", (long long)id->valuedouble);
        }
    } else {
        printf("%lld\n", (long long)ftctl_get_int(reply, "job_id", 0));
    }
    cJSON_Delete(reply);
    return FTCTL_EXIT_OK;
}
