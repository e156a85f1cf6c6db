/*
 * client/cmd_jobs.c: the subcommands about jobs: ls, show, logs, cancel, wait,
 * watch. Each builds one request (or a polling loop of them), checks the reply
 * and prints it as a table for people or as JSON for scripts.
 *
 * Invariants: a polling loop never waits on the scheduler longer than the
 * request time-out per round (exit 3 after that); wait and watch exit 0 only
 * when every job ended COMPLETED, 4 otherwise; output is flushed per line so
 * that a pipe sees progress as it happens.
 *
 * Cost: ls is one or two requests; wait is one request per job and then, while
 * jobs run, one `jobs` request per round (rounds back off from 50 ms to 1 s);
 * watch and logs -f are one request per round.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ftctl.h"

static const char *const all_states[] = {"PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"};
#define N_STATES (sizeof(all_states) / sizeof(all_states[0]))

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void oom(void)
{
    ftctl_die_msg("out of memory");
}

/* A request of type t with "job_id"; NULL on allocation failure. */
static cJSON *job_request(ft_msg_type_t t, int64_t id)
{
    cJSON *req = ft_proto_new(t, NULL);
    if (req && !cJSON_AddNumberToObject(req, "job_id", (double)id)) {
        cJSON_Delete(req);
        return NULL;
    }
    return req;
}

/* Asks for one job; 0 with *job (owned by *reply) or an exit code. */
static int fetch_job(ftctl_t *c, int64_t id, cJSON **reply, const cJSON **job)
{
    cJSON *req = job_request(FT_MSG_JOB, id);
    if (!req) {
        oom();
        return FTCTL_EXIT_FAILED;
    }
    int rc = ftctl_request(c, req, c->read_retries, reply);
    if (rc != FTCTL_EXIT_OK)
        return rc;
    *job = cJSON_GetObjectItemCaseSensitive(*reply, "job");
    if (!cJSON_IsObject(*job)) {
        ftctl_die_msg("invalid reply from the scheduler: 'job' is not an object");
        cJSON_Delete(*reply);
        *reply = NULL;
        return FTCTL_EXIT_FAILED;
    }
    return FTCTL_EXIT_OK;
}

/* "a,b,c" from an array of strings, into buf. */
static void join_strings(const cJSON *arr, const char *sep, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it))
            continue;
        int w = snprintf(buf + n, len - n, "%s%s", n ? sep : "", it->valuestring);
        if (w < 0 || (size_t)w >= len - n) {
            if (len > 4)
                memcpy(buf + len - 4, "...", 4);
            return;
        }
        n += (size_t)w;
    }
}

static void fmt_time_or_dash(const cJSON *obj, const char *name, char *buf, size_t len)
{
    if (ftctl_is_null_or_absent(obj, name))
        snprintf(buf, len, "-");
    else
        ft_fmt_time(ftctl_get_int(obj, name, 0), buf, len);
}

/* An integer field as text; "-" when null or absent (not known yet). */
static void fmt_int_or_dash(const cJSON *obj, const char *name, char *buf, size_t len)
{
    if (ftctl_is_null_or_absent(obj, name))
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%lld", (long long)ftctl_get_int(obj, name, 0));
}

/* Age of a pending job, run time of a running or finished one. */
static void fmt_job_time(const cJSON *j, int64_t now, char *buf, size_t len)
{
    const char *state = ftctl_get_str(j, "state", "");
    int64_t submit = ftctl_get_int(j, "submit_time", now);
    int64_t start = ftctl_get_int(j, "start_time", -1);
    int64_t end = ftctl_get_int(j, "end_time", -1);
    if (strcmp(state, "PENDING") == 0)
        ftctl_fmt_duration(now - submit, buf, len);
    else if (start < 0)
        snprintf(buf, len, "-");
    else
        ftctl_fmt_duration((end >= 0 ? end : now) - start, buf, len);
}

/* ================================ ls ================================ */

static int cmp_job_id(const void *a, const void *b)
{
    int64_t x = ftctl_get_int(*(const cJSON *const *)a, "job_id", 0);
    int64_t y = ftctl_get_int(*(const cJSON *const *)b, "job_id", 0);
    return (x > y) - (x < y);
}

static int state_index(const char *s)
{
    for (size_t i = 0; i < N_STATES; i++)
        if (strcmp(all_states[i], s) == 0)
            return (int)i;
    return -1;
}

/* One `jobs` request; appends the summaries to out (moved, not copied). */
static int list_jobs(ftctl_t *c, unsigned state_mask, const char *user, int limit,
                     bool warn_truncated, cJSON *out)
{
    cJSON *req = ft_proto_new(FT_MSG_JOBS, NULL);
    if (!req)
        goto oom;
    if (state_mask) {
        cJSON *st = cJSON_AddArrayToObject(req, "states");
        if (!st)
            goto oom;
        for (size_t i = 0; i < N_STATES; i++)
            if (state_mask & (1u << i))
                if (!cJSON_AddItemToArray(st, cJSON_CreateString(all_states[i])))
                    goto oom;
    }
    if (user && !cJSON_AddStringToObject(req, "user", user))
        goto oom;
    if (!cJSON_AddNumberToObject(req, "limit", limit))
        goto oom;
    cJSON *reply = NULL;
    int rc = ftctl_request(c, req, c->read_retries, &reply);
    if (rc != FTCTL_EXIT_OK)
        return rc;
    cJSON *jobs = cJSON_GetObjectItemCaseSensitive(reply, "jobs");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "truncated")) && warn_truncated)
        ftctl_die_msg("warning: the scheduler cut the list to %d jobs (newest kept) to fit "
                      "one reply; narrow it with --state or --user",
                      cJSON_GetArraySize(jobs));
    while (cJSON_IsArray(jobs) && cJSON_GetArraySize(jobs) > 0)
        cJSON_AddItemToArray(out, cJSON_DetachItemFromArray(jobs, 0));
    cJSON_Delete(reply);
    return FTCTL_EXIT_OK;
oom:
    cJSON_Delete(req);
    oom();
    return FTCTL_EXIT_FAILED;
}

static int print_job_table(const cJSON *jobs)
{
    static const char *const hdr[] = {"ID",   "NAME",    "USER",        "TEAM",  "STATE",
                                      "GPUS", "ATTEMPT", "AGE/RUNTIME", "NODES", "REASON"};
    ftctl_table_t *t = ftctl_table_new(10, hdr);
    if (!t) {
        oom();
        return FTCTL_EXIT_FAILED;
    }
    int64_t now = (int64_t)time(NULL);
    const cJSON *j;
    cJSON_ArrayForEach(j, jobs)
    {
        char id[24], gpus[24], att[24], tm[32], nodes[256];
        snprintf(id, sizeof(id), "%lld", (long long)ftctl_get_int(j, "job_id", 0));
        snprintf(gpus, sizeof(gpus), "%lld", (long long)ftctl_get_int(j, "gpus", 0));
        snprintf(att, sizeof(att), "%lld", (long long)ftctl_get_int(j, "attempt", 0));
        fmt_job_time(j, now, tm, sizeof(tm));
        join_strings(cJSON_GetObjectItemCaseSensitive(j, "nodes"), ",", nodes, sizeof(nodes));
        const char *reason = ftctl_get_str(j, "reason", "");
        const char *row[] = {id,
                             ftctl_get_str(j, "name", "-"),
                             ftctl_get_str(j, "user", "-"),
                             ftctl_get_str(j, "team", "-"),
                             ftctl_get_str(j, "state", "-"),
                             gpus,
                             att,
                             tm,
                             nodes[0] ? nodes : "-",
                             reason[0] ? reason : "-"};
        if (ftctl_table_add(t, row) < 0) {
            ftctl_table_destroy(&t);
            oom();
            return FTCTL_EXIT_FAILED;
        }
    }
    ftctl_table_print(t, stdout);
    ftctl_table_destroy(&t);
    return FTCTL_EXIT_OK;
}

enum { OPT_ALL = 256, OPT_STATE, OPT_USER, OPT_RANK, OPT_REASON, OPT_TIMEOUT };

int ftctl_cmd_ls(ftctl_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"all", no_argument, NULL, OPT_ALL},
        {"state", required_argument, NULL, OPT_STATE},
        {"user", required_argument, NULL, OPT_USER},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool all = false;
    unsigned mask = 0;
    const char *user = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_ALL:
            all = true;
            break;
        case OPT_STATE: {
            char buf[256];
            ft_strlcpy(buf, optarg, sizeof(buf));
            char *save = NULL;
            for (char *s = strtok_r(buf, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
                for (char *p = s; *p; p++)
                    if (*p >= 'a' && *p <= 'z')
                        *p = (char)(*p - 'a' + 'A');
                int i = state_index(s);
                if (i < 0)
                    return ftctl_usage_error(
                        "ls",
                        "bad --state '%s': expected PENDING, RUNNING, COMPLETED, "
                        "FAILED or CANCELLED",
                        ft_sanitize(s, 32));
                mask |= 1u << i;
            }
            if (!mask)
                return ftctl_usage_error("ls", "--state needs at least one state");
            break;
        }
        case OPT_USER:
            user = optarg;
            break;
        case 'h':
            return ftctl_usage("ls", 0);
        case ':':
            return ftctl_usage_error("ls", "option '%s' needs a value", argv[optind - 1]);
        default:
            return ftctl_usage_error("ls", "unknown option '%s'",
                                     ft_sanitize(argv[optind - 1], 64));
        }
    }
    if (optind < argc)
        return ftctl_usage_error("ls", "unexpected argument '%s'", ft_sanitize(argv[optind], 64));

    cJSON *jobs = cJSON_CreateArray();
    if (!jobs) {
        oom();
        return FTCTL_EXIT_FAILED;
    }
    int rc;
    if (all || mask) {
        rc = list_jobs(c, mask, user, 10000, true, jobs);
    } else {
        rc = list_jobs(c, 1u << 0 | 1u << 1, user, 10000, true, jobs);
        if (rc == FTCTL_EXIT_OK)
            rc = list_jobs(c, 1u << 2 | 1u << 3 | 1u << 4, user, 20, true, jobs);
    }
    if (rc != FTCTL_EXIT_OK)
        goto out;
    /* Oldest first, as people read a queue. */
    int n = cJSON_GetArraySize(jobs);
    cJSON **v = calloc((size_t)n + 1, sizeof(*v));
    if (!v) {
        oom();
        rc = FTCTL_EXIT_FAILED;
        goto out;
    }
    for (int i = 0; i < n; i++)
        v[i] = cJSON_DetachItemFromArray(jobs, 0);
    qsort(v, (size_t)n, sizeof(*v), cmp_job_id);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(jobs, v[i]);
    free(v);
    if (c->output == FTCTL_OUT_JSON) {
        cJSON *wrap = cJSON_CreateObject();
        if (!wrap) {
            oom();
            rc = FTCTL_EXIT_FAILED;
            goto out;
        }
        cJSON_AddItemToObject(wrap, "jobs", jobs);
        jobs = NULL;
        ftctl_print_payload(wrap);
        cJSON_Delete(wrap);
    } else {
        rc = print_job_table(jobs);
    }
out:
    cJSON_Delete(jobs);
    return rc;
}

/* ================================ show ================================ */

/* Prints argv as a shell would need it typed (single quotes where needed). */
static void print_command(const cJSON *cmd)
{
    const cJSON *a;
    bool first = true;
    cJSON_ArrayForEach(a, cmd)
    {
        if (!cJSON_IsString(a))
            continue;
        const char *s = ft_sanitize(a->valuestring, 256);
        bool plain = *s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789._-/=:,+@%") == strlen(s);
        printf("%s", first ? "" : " ");
        if (plain) {
            printf("%s", s);
        } else {
            putchar('\'');
            for (const char *p = s; *p; p++)
                if (*p == '\'')
                    printf("'\\''");
                else
                    putchar(*p);
            putchar('\'');
        }
        first = false;
    }
    putchar('\n');
}

static void print_progress_line(const cJSON *p)
{
    int64_t step = ftctl_get_int(p, "step", 0), total = ftctl_get_int(p, "total_steps", 0);
    printf("step %lld/%lld", (long long)step, (long long)total);
    if (!ftctl_is_null_or_absent(p, "loss"))
        printf("  loss %.4f", ftctl_get_num(p, "loss", 0));
    if (!ftctl_is_null_or_absent(p, "eval_loss"))
        printf("  eval_loss %.4f", ftctl_get_num(p, "eval_loss", 0));
    if (!ftctl_is_null_or_absent(p, "lr"))
        printf("  lr %.3g", ftctl_get_num(p, "lr", 0));
    if (!ftctl_is_null_or_absent(p, "tokens_per_s"))
        printf("  tokens/s %.1f", ftctl_get_num(p, "tokens_per_s", 0));
    if (!ftctl_is_null_or_absent(p, "eta_s")) {
        char d[32];
        ftctl_fmt_duration_f(ftctl_get_num(p, "eta_s", 0), d, sizeof(d));
        printf("  eta %s", d);
    }
    const char *msg = ftctl_get_str(p, "message", NULL);
    if (msg && *msg)
        printf("  %s", ft_sanitize(msg, 128));
    putchar('\n');
}

static void print_spec_summary(const cJSON *spec)
{
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(spec, "command");
    if (cJSON_IsArray(cmd)) {
        printf("command:    ");
        print_command(cmd);
    }
    const char *cwd = ftctl_get_str(spec, "cwd", NULL);
    if (cwd)
        printf("cwd:        %s\n", ft_sanitize(cwd, 256));
    const char *dev = ftctl_get_str(spec, "device", NULL);
    const char *model = ftctl_get_str(spec, "gpu_model", NULL);
    if (dev || model)
        printf("device:     %s%s%s\n", dev ? dev : "any", model ? "  model " : "",
               model ? ft_sanitize(model, 64) : "");
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(spec, "train");
    if (cJSON_IsObject(tr)) {
        printf("base model: %s\n", ft_sanitize(ftctl_get_str(tr, "base_model", "-"), 256));
        const cJSON *ds;
        cJSON_ArrayForEach(ds, cJSON_GetObjectItemCaseSensitive(tr, "datasets"))
            printf("dataset:    %s\n", ft_sanitize(ftctl_get_str(ds, "path", "-"), 256));
        printf("output dir: %s\n", ft_sanitize(ftctl_get_str(tr, "output_dir", "-"), 256));
        if (!ftctl_is_null_or_absent(tr, "max_steps"))
            printf("max steps:  %lld\n", (long long)ftctl_get_int(tr, "max_steps", 0));
    }
}

static int print_show(const cJSON *j)
{
    char t1[32], t2[32], t3[32];
    printf("job %lld '%s' (%s)\n", (long long)ftctl_get_int(j, "job_id", 0),
           ft_sanitize(ftctl_get_str(j, "name", "-"), 64), ftctl_get_str(j, "kind", "-"));
    printf("state:      %s  attempt %lld\n", ftctl_get_str(j, "state", "-"),
           (long long)ftctl_get_int(j, "attempt", 0));
    const char *reason = ftctl_get_str(j, "reason", "");
    if (*reason)
        printf("reason:     %s\n", ft_sanitize(reason, 256));
    if (!ftctl_is_null_or_absent(j, "exit_code"))
        printf("exit code:  %lld\n", (long long)ftctl_get_int(j, "exit_code", 0));
    printf("user:       %s  team %s  priority %lld  gpus %lld\n", ftctl_get_str(j, "user", "-"),
           ftctl_get_str(j, "team", "-"), (long long)ftctl_get_int(j, "priority", 0),
           (long long)ftctl_get_int(j, "gpus", 0));
    fmt_time_or_dash(j, "submit_time", t1, sizeof(t1));
    fmt_time_or_dash(j, "start_time", t2, sizeof(t2));
    fmt_time_or_dash(j, "end_time", t3, sizeof(t3));
    printf("submitted:  %s  started %s  ended %s\n", t1, t2, t3);
    if (!ftctl_is_null_or_absent(j, "array_job_id"))
        printf("array:      job %lld, index %lld\n", (long long)ftctl_get_int(j, "array_job_id", 0),
               (long long)ftctl_get_int(j, "array_index", 0));
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(j, "spec");
    if (cJSON_IsObject(spec))
        print_spec_summary(spec);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "progress");
    if (cJSON_IsObject(p)) {
        printf("progress:   ");
        print_progress_line(p);
    }

    int rc = FTCTL_EXIT_OK;
    ftctl_table_t *t = NULL;
    const cJSON *it;
    static const char *const rh[] = {"RANK",  "NODE", "DEVICE", "PID",
                                     "STATE", "EXIT", "SIGNAL", "REASON"};
    const cJSON *ranks = cJSON_GetObjectItemCaseSensitive(j, "ranks");
    if (cJSON_GetArraySize(ranks) > 0) {
        printf("\nranks:\n");
        if (!(t = ftctl_table_new(8, rh)))
            goto oom;
        cJSON_ArrayForEach(it, ranks)
        {
            char r[24], d[24], pid[24], ec[24], sig[24];
            snprintf(r, sizeof(r), "%lld", (long long)ftctl_get_int(it, "rank", 0));
            snprintf(d, sizeof(d), "%lld", (long long)ftctl_get_int(it, "device", 0));
            fmt_int_or_dash(it, "pid", pid, sizeof(pid));
            fmt_int_or_dash(it, "exit_code", ec, sizeof(ec));
            fmt_int_or_dash(it, "signal", sig, sizeof(sig));
            const char *rreason = ftctl_get_str(it, "reason", "");
            const char *row[] = {r,   ftctl_get_str(it, "node", "-"),  d,
                                 pid, ftctl_get_str(it, "state", "-"), ec,
                                 sig, *rreason ? rreason : "-"};
            if (ftctl_table_add(t, row) < 0)
                goto oom;
        }
        ftctl_table_print(t, stdout);
        ftctl_table_destroy(&t);
    }
    static const char *const ah[] = {"ATTEMPT", "RANK", "NODE", "DEVICE", "MODEL", "START", "END"};
    const cJSON *allocs = cJSON_GetObjectItemCaseSensitive(j, "allocations");
    if (cJSON_GetArraySize(allocs) > 0) {
        printf("\nallocations:\n");
        if (!(t = ftctl_table_new(7, ah)))
            goto oom;
        cJSON_ArrayForEach(it, allocs)
        {
            char a[24], r[24];
            snprintf(a, sizeof(a), "%lld", (long long)ftctl_get_int(it, "attempt", 0));
            snprintf(r, sizeof(r), "%lld", (long long)ftctl_get_int(it, "rank", 0));
            fmt_time_or_dash(it, "start", t1, sizeof(t1));
            fmt_time_or_dash(it, "end", t2, sizeof(t2));
            const char *row[] = {a,
                                 r,
                                 ftctl_get_str(it, "node", "-"),
                                 ftctl_get_str(it, "device_uuid", "-"),
                                 ftctl_get_str(it, "device_model", "-"),
                                 t1,
                                 t2};
            if (ftctl_table_add(t, row) < 0)
                goto oom;
        }
        ftctl_table_print(t, stdout);
        ftctl_table_destroy(&t);
    }
    static const char *const eh[] = {"TIME", "EVENT", "MESSAGE"};
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(j, "events");
    if (cJSON_GetArraySize(events) > 0) {
        printf("\nevents:\n");
        if (!(t = ftctl_table_new(3, eh)))
            goto oom;
        cJSON_ArrayForEach(it, events)
        {
            fmt_time_or_dash(it, "time", t1, sizeof(t1));
            const char *row[] = {t1, ftctl_get_str(it, "kind", "-"),
                                 ftctl_get_str(it, "message", "")};
            if (ftctl_table_add(t, row) < 0)
                goto oom;
        }
        ftctl_table_print(t, stdout);
        ftctl_table_destroy(&t);
    }
    return rc;
oom:
    ftctl_table_destroy(&t);
    oom();
    return FTCTL_EXIT_FAILED;
}

/* Parses exactly one job id argument after the options. */
static int one_job_id(const char *cmd, int argc, char **argv, int64_t *id)
{
    if (optind >= argc)
        return ftctl_usage_error(cmd, "expected a job id");
    if (optind + 1 < argc)
        return ftctl_usage_error(cmd, "expected one job id, got %d arguments", argc - optind);
    if (ftctl_parse_job_id(argv[optind], id) < 0)
        return FTCTL_EXIT_USAGE;
    return FTCTL_EXIT_OK;
}

int ftctl_cmd_show(ftctl_t *c, int argc, char **argv)
{
    int rc = ftctl_only_help_opt("show", argc, argv);
    if (rc != FTCTL_EXIT_OK)
        return rc < 0 ? FTCTL_EXIT_OK : rc;
    int64_t id;
    if ((rc = one_job_id("show", argc, argv, &id)) != FTCTL_EXIT_OK)
        return rc;
    cJSON *reply = NULL;
    const cJSON *job = NULL;
    if ((rc = fetch_job(c, id, &reply, &job)) != FTCTL_EXIT_OK)
        return rc;
    if (c->output == FTCTL_OUT_JSON)
        ftctl_print_payload(reply);
    else
        rc = print_show(job);
    cJSON_Delete(reply);
    return rc;
}

/* ================================ logs ================================ */

int ftctl_cmd_logs(ftctl_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"rank", required_argument, NULL, OPT_RANK},
        {"follow", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int64_t rank = 0;
    bool follow = false;
    int opt;
    while ((opt = getopt_long(argc, argv, ":fh", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_RANK: {
            char *end;
            long long v = strtoll(optarg, &end, 10);
            if (end == optarg || *end || v < 0 || v >= FT_MAX_GPUS_PER_JOB)
                return ftctl_usage_error("logs", "bad --rank '%s': expected 0..%d",
                                         ft_sanitize(optarg, 32), FT_MAX_GPUS_PER_JOB - 1);
            rank = v;
            break;
        }
        case 'f':
            follow = true;
            break;
        case 'h':
            return ftctl_usage("logs", 0);
        case ':':
            return ftctl_usage_error("logs", "option '%s' needs a value", argv[optind - 1]);
        default:
            return ftctl_usage_error("logs", "unknown option '%s'",
                                     ft_sanitize(argv[optind - 1], 64));
        }
    }
    int64_t id;
    int rc = one_job_id("logs", argc, argv, &id);
    if (rc != FTCTL_EXIT_OK)
        return rc;

    if (follow)
        c->read_retries = FTCTL_POLL_RETRIES;
    bool json = c->output == FTCTL_OUT_JSON;
    char *all = NULL; /* json: everything read, concatenated */
    size_t all_len = 0;
    int64_t offset = 0;
    bool eof = false;
    int64_t delay = 100;
    for (;;) {
        cJSON *req = job_request(FT_MSG_LOGS, id);
        if (!req || !cJSON_AddNumberToObject(req, "rank", (double)rank) ||
            !cJSON_AddNumberToObject(req, "offset", (double)offset) ||
            !cJSON_AddNumberToObject(req, "max_bytes", 65536)) {
            cJSON_Delete(req);
            oom();
            rc = FTCTL_EXIT_FAILED;
            goto out;
        }
        cJSON *reply = NULL;
        ftctl_rpc_t r = ftctl_call(c, req, c->read_retries, &reply);
        if (r == FTCTL_RPC_ERROR) {
            /* With -f, a rank that has not started yet is worth waiting for,
             * unless its job has ended (cancelled while pending, say). */
            if (follow && strcmp(ftctl_get_str(reply, "code", ""), "bad_state") == 0) {
                cJSON *jr = NULL;
                const cJSON *job = NULL;
                int frc = fetch_job(c, id, &jr, &job);
                bool ended =
                    frc == FTCTL_EXIT_OK && ftctl_state_is_final(ftctl_get_str(job, "state", ""));
                cJSON_Delete(jr);
                if (frc != FTCTL_EXIT_OK) {
                    cJSON_Delete(reply);
                    rc = frc;
                    goto out;
                }
                if (!ended) {
                    cJSON_Delete(reply);
                    sleep_ms(delay);
                    continue;
                }
            }
            rc = ftctl_print_error_reply(reply);
            cJSON_Delete(reply);
            goto out;
        }
        if (r == FTCTL_RPC_TIMEOUT) {
            rc = ftctl_print_unreachable(c);
            goto out;
        }
        if (r != FTCTL_RPC_OK) {
            rc = FTCTL_EXIT_FAILED;
            goto out;
        }
        const char *data = ftctl_get_str(reply, "data", "");
        size_t n = strlen(data);
        int64_t next = ftctl_get_int(reply, "offset", offset);
        eof = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "eof"));
        if (json) {
            char *grown = realloc(all, all_len + n + 1);
            if (!grown) {
                cJSON_Delete(reply);
                oom();
                rc = FTCTL_EXIT_FAILED;
                goto out;
            }
            all = grown;
            memcpy(all + all_len, data, n + 1);
            all_len += n;
        } else if (n) {
            fwrite(data, 1, n, stdout);
            fflush(stdout);
        }
        cJSON_Delete(reply);
        bool progressed = next > offset;
        offset = next;
        if (eof)
            break;
        if (!progressed) {
            if (!follow)
                break;
            sleep_ms(delay);
            if (delay < 500)
                delay += 100;
        } else {
            delay = 100;
        }
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddNumberToObject(o, "job_id", (double)id) ||
            !cJSON_AddNumberToObject(o, "rank", (double)rank) ||
            !cJSON_AddStringToObject(o, "data", all ? all : "") ||
            !cJSON_AddNumberToObject(o, "offset", (double)offset) ||
            !cJSON_AddBoolToObject(o, "eof", eof)) {
            cJSON_Delete(o);
            oom();
            rc = FTCTL_EXIT_FAILED;
            goto out;
        }
        ftctl_print_payload(o);
        cJSON_Delete(o);
    }
out:
    free(all);
    return rc;
}

/* ================================ cancel ================================ */

int ftctl_cmd_cancel(ftctl_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"reason", required_argument, NULL, OPT_REASON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *reason = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_REASON:
            if (strlen(optarg) > 256)
                return ftctl_usage_error("cancel", "--reason is longer than 256 bytes");
            reason = optarg;
            break;
        case 'h':
            return ftctl_usage("cancel", 0);
        case ':':
            return ftctl_usage_error("cancel", "option '%s' needs a value", argv[optind - 1]);
        default:
            return ftctl_usage_error("cancel", "unknown option '%s'",
                                     ft_sanitize(argv[optind - 1], 64));
        }
    }
    if (optind >= argc)
        return ftctl_usage_error("cancel", "expected at least one job id");
    if (argc - optind > 1000)
        return ftctl_usage_error("cancel", "at most 1000 job ids per call, got %d", argc - optind);
    cJSON *req = ft_proto_new(FT_MSG_CANCEL, NULL);
    cJSON *ids = req ? cJSON_AddArrayToObject(req, "job_ids") : NULL;
    if (!ids)
        goto oom;
    for (int i = optind; i < argc; i++) {
        int64_t id;
        if (ftctl_parse_job_id(argv[i], &id) < 0) {
            cJSON_Delete(req);
            return FTCTL_EXIT_USAGE;
        }
        if (!cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)id)))
            goto oom;
    }
    char dflt[128];
    snprintf(dflt, sizeof(dflt), "cancelled by %s", c->user);
    if (!cJSON_AddStringToObject(req, "reason", reason ? reason : dflt))
        goto oom;
    cJSON *reply = NULL;
    int rc = ftctl_request(c, req, 0, &reply);
    if (rc != FTCTL_EXIT_OK)
        return rc;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(reply, "results"))
    {
        if (!ftctl_is_null_or_absent(it, "error")) {
            rc = FTCTL_EXIT_FAILED;
            if (c->output != FTCTL_OUT_JSON)
                ftctl_die_msg("cannot cancel job %lld: %s",
                              (long long)ftctl_get_int(it, "job_id", 0),
                              ftctl_get_str(it, "error", "?"));
        } else if (c->output != FTCTL_OUT_JSON) {
            printf("job %lld %s\n", (long long)ftctl_get_int(it, "job_id", 0),
                   ftctl_get_str(it, "state", "?"));
        }
    }
    if (c->output == FTCTL_OUT_JSON)
        ftctl_print_payload(reply);
    cJSON_Delete(reply);
    return rc;
oom:
    cJSON_Delete(req);
    oom();
    return FTCTL_EXIT_FAILED;
}

/* ================================ wait ================================ */

typedef struct {
    int64_t id; /* job id from the command line */
    cJSON *job; /* latest summary, owned; NULL before the first answer */
    bool final; /* COMPLETED, FAILED or CANCELLED seen */
} wait_job_t;

/* Refreshes one job with a `job` request; keeps only its summary fields. */
static int refresh_one(ftctl_t *c, wait_job_t *w)
{
    cJSON *reply = NULL;
    const cJSON *job = NULL;
    int rc = fetch_job(c, w->id, &reply, &job);
    if (rc != FTCTL_EXIT_OK)
        return rc;
    cJSON *j = cJSON_DetachItemFromObjectCaseSensitive(reply, "job");
    cJSON_Delete(reply);
    /* The summary is enough here; drop the bulky parts. */
    static const char *const drop[] = {"spec", "events", "allocations", "ranks", "progress"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(j, drop[i]);
    cJSON_Delete(w->job);
    w->job = j;
    w->final = ftctl_state_is_final(ftctl_get_str(j, "state", ""));
    return FTCTL_EXIT_OK;
}

/* The ids among jobs still PENDING or RUNNING, as a sorted array. */
static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int unfinished_ids(ftctl_t *c, int64_t **ids_out, int *n_out)
{
    cJSON *jobs = cJSON_CreateArray();
    if (!jobs) {
        oom();
        return FTCTL_EXIT_FAILED;
    }
    int rc = list_jobs(c, 1u << 0 | 1u << 1, NULL, 10000, false, jobs);
    if (rc != FTCTL_EXIT_OK) {
        cJSON_Delete(jobs);
        return rc;
    }
    int n = cJSON_GetArraySize(jobs);
    int64_t *ids = calloc((size_t)n + 1, sizeof(*ids));
    if (!ids) {
        cJSON_Delete(jobs);
        oom();
        return FTCTL_EXIT_FAILED;
    }
    int i = 0;
    const cJSON *j;
    cJSON_ArrayForEach(j, jobs) ids[i++] = ftctl_get_int(j, "job_id", 0);
    qsort(ids, (size_t)n, sizeof(*ids), cmp_i64);
    cJSON_Delete(jobs);
    *ids_out = ids;
    *n_out = n;
    return FTCTL_EXIT_OK;
}

/* Waits for the jobs in w[0..n) to end, or until deadline_ms (monotonic;
 * 0 = never). Returns 0 when all ended (whatever their state), an exit code
 * on a request failure, or FTCTL_EXIT_INCOMPLETE on time-out (printed). */
static int wait_jobs(ftctl_t *c, wait_job_t *w, int n, int64_t deadline_ms)
{
    int rc;
    for (int i = 0; i < n; i++)
        if ((rc = refresh_one(c, &w[i])) != FTCTL_EXIT_OK)
            return rc;
    int64_t delay = 50;
    for (;;) {
        int left = 0;
        for (int i = 0; i < n; i++)
            left += !w[i].final;
        if (!left)
            return FTCTL_EXIT_OK;
        if (deadline_ms && ft_mono_ms() >= deadline_ms) {
            for (int i = 0; i < n; i++)
                if (!w[i].final)
                    ftctl_die_msg("timed out waiting for job %lld (%s)", (long long)w[i].id,
                                  ftctl_get_str(w[i].job, "state", "?"));
            return FTCTL_EXIT_INCOMPLETE;
        }
        int64_t nap = delay;
        if (deadline_ms && ft_mono_ms() + nap > deadline_ms)
            nap = deadline_ms - ft_mono_ms();
        sleep_ms(nap);
        delay = delay * 3 / 2 > 1000 ? 1000 : delay * 3 / 2;
        if (left <= 4) {
            for (int i = 0; i < n; i++)
                if (!w[i].final && (rc = refresh_one(c, &w[i])) != FTCTL_EXIT_OK)
                    return rc;
            continue;
        }
        /* Many jobs: one list of the unfinished ones tells which have ended;
         * only those are asked for again, once, for their final state. */
        int64_t *ids = NULL;
        int nids = 0;
        if ((rc = unfinished_ids(c, &ids, &nids)) != FTCTL_EXIT_OK)
            return rc;
        for (int i = 0; i < n && rc == FTCTL_EXIT_OK; i++)
            if (!w[i].final && !bsearch(&w[i].id, ids, (size_t)nids, sizeof(*ids), cmp_i64))
                rc = refresh_one(c, &w[i]);
        free(ids);
        if (rc != FTCTL_EXIT_OK)
            return rc;
    }
}

/* 0 if every job COMPLETED, else FTCTL_EXIT_INCOMPLETE; prints the outcome. */
static int report_jobs(ftctl_t *c, wait_job_t *w, int n)
{
    int rc = FTCTL_EXIT_OK;
    cJSON *arr = c->output == FTCTL_OUT_JSON ? cJSON_CreateArray() : NULL;
    for (int i = 0; i < n; i++) {
        const char *state = ftctl_get_str(w[i].job, "state", "?");
        if (arr)
            cJSON_AddItemToArray(arr, cJSON_Duplicate(w[i].job, 1));
        else
            printf("job %lld %s\n", (long long)w[i].id, state);
        if (strcmp(state, "COMPLETED") != 0) {
            rc = FTCTL_EXIT_INCOMPLETE;
            if (!arr) {
                const char *reason = ftctl_get_str(w[i].job, "reason", "");
                ftctl_die_msg("job %lld %s%s%s", (long long)w[i].id, state, *reason ? ": " : "",
                              ft_sanitize(reason, 256));
            }
        }
    }
    if (arr) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddItemToObject(o, "jobs", arr);
            ftctl_print_payload(o);
            cJSON_Delete(o);
        } else {
            cJSON_Delete(arr);
            oom();
            return FTCTL_EXIT_FAILED;
        }
    }
    return rc;
}

int ftctl_cmd_wait(ftctl_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    double timeout_s = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_TIMEOUT:
            if (ftctl_parse_seconds(optarg, 1e9, &timeout_s) < 0)
                return ftctl_usage_error("wait", "bad --timeout '%s': expected seconds > 0",
                                         ft_sanitize(optarg, 32));
            break;
        case 'h':
            return ftctl_usage("wait", 0);
        case ':':
            return ftctl_usage_error("wait", "option '%s' needs a value", argv[optind - 1]);
        default:
            return ftctl_usage_error("wait", "unknown option '%s'",
                                     ft_sanitize(argv[optind - 1], 64));
        }
    }
    if (optind >= argc)
        return ftctl_usage_error("wait", "expected at least one job id");
    int n = argc - optind;
    wait_job_t *w = calloc((size_t)n, sizeof(*w));
    if (!w) {
        oom();
        return FTCTL_EXIT_FAILED;
    }
    int rc = FTCTL_EXIT_OK;
    for (int i = 0; i < n; i++)
        if (ftctl_parse_job_id(argv[optind + i], &w[i].id) < 0) {
            rc = FTCTL_EXIT_USAGE;
            goto out;
        }
    c->read_retries = FTCTL_POLL_RETRIES;
    int64_t deadline = timeout_s > 0 ? ft_mono_ms() + (int64_t)(timeout_s * 1000) : 0;
    rc = wait_jobs(c, w, n, deadline);
    if (rc == FTCTL_EXIT_OK)
        rc = report_jobs(c, w, n);
out:
    for (int i = 0; i < n; i++)
        cJSON_Delete(w[i].job);
    free(w);
    return rc;
}

/* ================================ watch ================================ */

static void draw_bar(const cJSON *p, const char *state)
{
    int64_t step = ftctl_get_int(p, "step", 0), total = ftctl_get_int(p, "total_steps", 0);
    double frac = total > 0 ? (double)step / (double)total : 0;
    if (frac > 1)
        frac = 1;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    printf("\r\033[K%s [%s] %3d%% %lld/%lld", state, bar, (int)(frac * 100), (long long)step,
           (long long)total);
    if (!ftctl_is_null_or_absent(p, "loss"))
        printf("  loss %.4f", ftctl_get_num(p, "loss", 0));
    if (!ftctl_is_null_or_absent(p, "tokens_per_s"))
        printf("  %.0f tok/s", ftctl_get_num(p, "tokens_per_s", 0));
    if (!ftctl_is_null_or_absent(p, "eta_s")) {
        char d[32];
        ftctl_fmt_duration_f(ftctl_get_num(p, "eta_s", 0), d, sizeof(d));
        printf("  ETA %s", d);
    }
    fflush(stdout);
}

/* "job 3 RUNNING (attempt 1)" on its own line; returns false (no bar drawn). */
static bool print_state_line(const cJSON *job, int64_t id, bool bar_drawn)
{
    if (bar_drawn)
        putchar('\n');
    const char *reason = ftctl_get_str(job, "reason", "");
    printf("job %lld %s (attempt %lld)%s%s\n", (long long)id, ftctl_get_str(job, "state", "?"),
           (long long)ftctl_get_int(job, "attempt", 0), *reason ? ": " : "",
           ft_sanitize(reason, 200));
    return false;
}

int ftctl_cmd_watch(ftctl_t *c, int argc, char **argv)
{
    int rc = ftctl_only_help_opt("watch", argc, argv);
    if (rc != FTCTL_EXIT_OK)
        return rc < 0 ? FTCTL_EXIT_OK : rc;
    int64_t id;
    if ((rc = one_job_id("watch", argc, argv, &id)) != FTCTL_EXIT_OK)
        return rc;
    c->read_retries = FTCTL_POLL_RETRIES;
    bool tty = isatty(STDOUT_FILENO) && c->output != FTCTL_OUT_JSON;
    bool json = c->output == FTCTL_OUT_JSON;
    char last_state[32] = "";
    int64_t last_step = -1, last_attempt = -1;
    bool bar_drawn = false;
    for (;;) {
        cJSON *reply = NULL;
        const cJSON *job = NULL;
        if ((rc = fetch_job(c, id, &reply, &job)) != FTCTL_EXIT_OK) {
            if (bar_drawn)
                putchar('\n');
            return rc;
        }
        const char *state = ftctl_get_str(job, "state", "?");
        int64_t attempt = ftctl_get_int(job, "attempt", 0);
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(job, "progress");
        if (cJSON_IsObject(p) && !ftctl_is_null_or_absent(p, "attempt") &&
            ftctl_get_int(p, "attempt", attempt) != attempt)
            p = NULL; /* progress of an earlier attempt */
        bool final = ftctl_state_is_final(state);
        bool changed = strcmp(state, last_state) != 0 || attempt != last_attempt;
        if (attempt != last_attempt)
            last_step = -1; /* a new attempt counts its steps again */
        if (!json && changed && !final)
            bar_drawn = print_state_line(job, id, bar_drawn);
        if (!json && cJSON_IsObject(p)) {
            int64_t step = ftctl_get_int(p, "step", 0);
            if (tty) {
                if (!final) {
                    draw_bar(p, state);
                    bar_drawn = true;
                }
            } else if (step != last_step) {
                print_progress_line(p);
            }
            last_step = step;
        }
        if (!json && final) {
            if (tty && cJSON_IsObject(p)) {
                if (bar_drawn)
                    putchar('\n');
                bar_drawn = false;
                printf("final: ");
                print_progress_line(p);
            }
            bar_drawn = print_state_line(job, id, bar_drawn);
        }
        ft_strlcpy(last_state, state, sizeof(last_state));
        last_attempt = attempt;
        fflush(stdout);
        if (final) {
            if (json)
                ftctl_print_payload(reply);
            rc = strcmp(state, "COMPLETED") == 0 ? FTCTL_EXIT_OK : FTCTL_EXIT_INCOMPLETE;
            cJSON_Delete(reply);
            return rc;
        }
        cJSON_Delete(reply);
        sleep_ms(tty ? 500 : 250);
    }
}
