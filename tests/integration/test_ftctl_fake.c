/*
 * tests/integration/test_ftctl_fake.c: ftctl against a scripted scheduler.
 *
 * A ZeroMQ ROUTER on a free loopback port plays ftsched: for each case it runs
 * the real ftctl binary (argv[1]) with some arguments, checks every request
 * ftctl sends against the protocol validator, answers from a script (or stays
 * silent, or answers wrongly), and then checks ftctl's exit code, stdout and
 * stderr. This covers what the real daemons cannot easily provoke: a lost
 * reply (submit retries with the same request_id), a late reply to another
 * request, an invalid reply, silence (exit 3 within the time-out).
 *
 * Cost: each case is one ftctl process and a few round trips; about 3 s total,
 * mostly the deliberate time-outs.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "ft/json.h"
#include "ft/proto.h"

static const char *ftctl_path;
static void *zctx, *router;
static char endpoint[256];
static int failures;

/* What the script does with the n-th request (0-based) of a case. */
typedef enum {
    ACT_REPLY = 0, /* send the reply built by the case's function */
    ACT_DROP,      /* say nothing */
} act_t;

typedef struct {
    int n;           /* requests seen in this case */
    cJSON *reqs[16]; /* the first 16 requests, validated, owned */
} seen_t;

/* Builds the reply to request number n; may set *act, and *raw: a frame sent
 * as it is before the reply (or instead of it when the reply is NULL). */
typedef cJSON *(*script_fn)(const cJSON *req, int n, act_t *act, const char **raw);

typedef struct {
    int status;      /* ftctl's exit code */
    char out[65536]; /* its stdout */
    char err[65536]; /* its stderr */
    double secs;     /* wall time */
} run_t;

static void check(int cond, const char *what, const run_t *r)
{
    if (cond) {
        printf("ok: %s\n", what);
        return;
    }
    failures++;
    printf("FAIL: %s\n", what);
    if (r)
        printf("  exit %d\n  stdout: %s\n  stderr: %s\n", r->status, r->out, r->err);
}

static void read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t k;
    while (n + 1 < cap && (k = read(fd, buf + n, cap - 1 - n)) > 0)
        n += (size_t)k;
    buf[n] = '\0';
}

static void send_to(const zmq_msg_t *idf, const char *data, size_t len)
{
    zmq_send(router, zmq_msg_data((zmq_msg_t *)idf), zmq_msg_size((zmq_msg_t *)idf), ZMQ_SNDMORE);
    zmq_send(router, data, len, 0);
}

/* Runs ftctl with args (NULL-terminated), serving requests with fn. */
static void run_case(script_fn fn, seen_t *seen, run_t *r, ...)
{
    const char *argv[32];
    int argc = 0;
    argv[argc++] = ftctl_path;
    va_list ap;
    va_start(ap, r);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 31)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    memset(seen, 0, sizeof(*seen));
    memset(r, 0, sizeof(*r));

    char outp[] = "/tmp/ftctl-fake-out-XXXXXX", errp[] = "/tmp/ftctl-fake-err-XXXXXX";
    int ofd = mkstemp(outp), efd = mkstemp(errp);
    unlink(outp);
    unlink(errp);
    int64_t t0 = ft_mono_ms();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        setenv("FT_SCHEDULER", endpoint, 1);
        setenv("FT_CONFIG", "/dev/null", 1);
        setenv("USER", "tester", 1);
        unsetenv("FT_TEAM");
        execv(ftctl_path, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (ft_mono_ms() - t0 > 20000) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        zmq_pollitem_t it = {.socket = router, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 20) <= 0)
            continue;
        zmq_msg_t idf, body;
        zmq_msg_init(&idf);
        zmq_msg_init(&body);
        zmq_msg_recv(&idf, router, 0);
        zmq_msg_recv(&body, router, 0);
        ft_err_t err;
        ft_err_clear(&err);
        ft_msg_type_t type;
        cJSON *req =
            ft_proto_decode(zmq_msg_data(&body), zmq_msg_size(&body), &type, NULL, 0, &err);
        if (!req) {
            failures++;
            printf("FAIL: ftctl sent an invalid request: %s: %s\n", ft_errcode_name(err.code),
                   err.msg);
        } else if (!(ft_msg_senders(type) & FT_FROM_CLIENT)) {
            failures++;
            printf("FAIL: ftctl sent '%s', not a client message\n", ft_msg_name(type));
        } else {
            act_t act = ACT_REPLY;
            const char *raw = NULL;
            cJSON *rep = fn(req, seen->n, &act, &raw);
            if (act == ACT_REPLY && raw)
                send_to(&idf, raw, strlen(raw)); /* first, when both are given */
            if (act == ACT_REPLY && rep) {
                char *s = ft_json_print(rep);
                send_to(&idf, s, strlen(s));
                free(s);
            }
            cJSON_Delete(rep);
            if (seen->n < 16)
                seen->reqs[seen->n] = req;
            else
                cJSON_Delete(req);
            seen->n++;
        }
        zmq_msg_close(&idf);
        zmq_msg_close(&body);
    }
    r->secs = (ft_mono_ms() - t0) / 1000.0;
    r->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    lseek(ofd, 0, SEEK_SET);
    lseek(efd, 0, SEEK_SET);
    read_all(ofd, r->out, sizeof(r->out));
    read_all(efd, r->err, sizeof(r->err));
    close(ofd);
    close(efd);
}

static void seen_free(seen_t *s)
{
    for (int i = 0; i < 16; i++)
        cJSON_Delete(s->reqs[i]);
    memset(s, 0, sizeof(*s));
}

static const char *sget(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static cJSON *reply_to(const cJSON *req, ft_msg_type_t t)
{
    return ft_proto_new(t, sget(req, "id"));
}

/* ---- scripts ---- */

static cJSON *s_submit_drop_first(const cJSON *req, int n, act_t *act, const char **raw)
{
    if (n == 0) {
        *act = ACT_DROP; /* the reply is "lost": ftctl must resend */
        return NULL;
    }
    cJSON *r = reply_to(req, FT_MSG_SUBMIT_REPLY);
    cJSON_AddNumberToObject(r, "job_id", 42);
    cJSON_AddBoolToObject(r, "duplicate", true);
    cJSON_AddStringToObject(r, "state", "PENDING");
    return r;
}

static cJSON *s_not_found(const cJSON *req, int n, act_t *act, const char **raw)
{
    ft_err_t e;
    ft_err_set(&e, FT_ENOTFOUND, "no job 7");
    return ft_proto_error(sget(req, "id"), &e);
}

static cJSON *s_silent(const cJSON *req, int n, act_t *act, const char **raw)
{
    *act = ACT_DROP;
    return NULL;
}

static cJSON *s_ping_late(const cJSON *req, int n, act_t *act, const char **raw)
{
    /* First an answer to some other request, then the right one: ftctl must
     * skip the first. Both go out now, in order. */
    cJSON *r = ft_proto_new(FT_MSG_PING_REPLY, "not-my-id");
    cJSON_AddStringToObject(r, "version", "9.9.9");
    cJSON_AddNumberToObject(r, "proto", 1);
    cJSON_AddNumberToObject(r, "time", 1);
    cJSON_AddNumberToObject(r, "jobs_pending", 9);
    cJSON_AddNumberToObject(r, "jobs_running", 9);
    cJSON_AddNumberToObject(r, "nodes_ready", 9);
    char *s = ft_json_print(r);
    cJSON_Delete(r);
    static char late[1024];
    snprintf(late, sizeof(late), "%s", s);
    free(s);
    *raw = late;
    r = reply_to(req, FT_MSG_PING_REPLY);
    cJSON_AddStringToObject(r, "version", "0.1.0");
    cJSON_AddNumberToObject(r, "proto", 1);
    cJSON_AddNumberToObject(r, "time", 1700000000);
    cJSON_AddNumberToObject(r, "jobs_pending", 3);
    cJSON_AddNumberToObject(r, "jobs_running", 2);
    cJSON_AddNumberToObject(r, "nodes_ready", 1);
    return r;
}

static cJSON *s_bad_json(const cJSON *req, int n, act_t *act, const char **raw)
{
    *raw = "{\"v\":1,\"type\":\"ping_reply\",";
    return NULL;
}

static cJSON *job_summary(int id, const char *name, const char *state)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "job_id", id);
    cJSON_AddStringToObject(j, "name", name);
    cJSON_AddStringToObject(j, "kind", "exec");
    cJSON_AddStringToObject(j, "user", "tester");
    cJSON_AddStringToObject(j, "team", "default");
    cJSON_AddStringToObject(j, "state", state);
    cJSON_AddStringToObject(j, "reason", strcmp(state, "FAILED") == 0 ? "exit code 3" : "");
    cJSON_AddNumberToObject(j, "priority", 0);
    cJSON_AddNumberToObject(j, "gpus", 2);
    cJSON_AddNumberToObject(j, "attempt", 1);
    cJSON_AddNumberToObject(j, "submit_time", 1700000000);
    cJSON_AddNumberToObject(j, "start_time", 1700000010);
    if (strcmp(state, "RUNNING") == 0 || strcmp(state, "PENDING") == 0)
        cJSON_AddNullToObject(j, "end_time");
    else
        cJSON_AddNumberToObject(j, "end_time", 1700000075);
    cJSON *nodes = cJSON_AddArrayToObject(j, "nodes");
    cJSON_AddItemToArray(nodes, cJSON_CreateString("n1"));
    return j;
}

static cJSON *s_jobs(const cJSON *req, int n, act_t *act, const char **raw)
{
    cJSON *r = reply_to(req, FT_MSG_JOBS_REPLY);
    cJSON *jobs = cJSON_AddArrayToObject(r, "jobs");
    const cJSON *states = cJSON_GetObjectItemCaseSensitive(req, "states");
    bool finished = cJSON_GetArraySize(states) == 3;
    if (finished)
        cJSON_AddItemToArray(jobs, job_summary(3, "done\033[31mred", "COMPLETED"));
    else
        cJSON_AddItemToArray(jobs, job_summary(12, "a-much-longer-job-name", "RUNNING"));
    return r;
}

static int job_polls;

static cJSON *s_job_then(const cJSON *req, const char *final_state)
{
    cJSON *r = reply_to(req, FT_MSG_JOB_REPLY);
    const char *state = job_polls++ < 2 ? "RUNNING" : final_state;
    cJSON *j = job_summary(5, "w", state);
    cJSON_AddItemToObject(j, "spec", cJSON_Parse("{\"kind\":\"exec\",\"command\":[\"true\"]}"));
    if (strcmp(state, "RUNNING") == 0)
        cJSON_AddNullToObject(j, "exit_code");
    else
        cJSON_AddNumberToObject(j, "exit_code", strcmp(state, "FAILED") == 0 ? 3 : 0);
    cJSON_AddArrayToObject(j, "ranks");
    cJSON *p = cJSON_AddObjectToObject(j, "progress");
    cJSON_AddNumberToObject(p, "step", job_polls);
    cJSON_AddNumberToObject(p, "total_steps", 4);
    cJSON_AddNumberToObject(p, "loss", 1.5);
    cJSON_AddNumberToObject(p, "time", 1700000020);
    cJSON_AddArrayToObject(j, "allocations");
    cJSON_AddArrayToObject(j, "events");
    cJSON_AddItemToObject(r, "job", j);
    return r;
}

static cJSON *s_job_completes(const cJSON *req, int n, act_t *act, const char **raw)
{
    return s_job_then(req, "COMPLETED");
}

static cJSON *s_job_fails(const cJSON *req, int n, act_t *act, const char **raw)
{
    return s_job_then(req, "FAILED");
}

static cJSON *s_job_runs(const cJSON *req, int n, act_t *act, const char **raw)
{
    job_polls = 0; /* never gets past RUNNING */
    return s_job_then(req, "COMPLETED");
}

static cJSON *s_cancel(const cJSON *req, int n, act_t *act, const char **raw)
{
    cJSON *r = reply_to(req, FT_MSG_CANCEL_REPLY);
    cJSON *res = cJSON_AddArrayToObject(r, "results");
    const cJSON *id;
    cJSON_ArrayForEach(id, cJSON_GetObjectItemCaseSensitive(req, "job_ids"))
    {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "job_id", id->valuedouble);
        if (id->valuedouble == 9) {
            cJSON_AddStringToObject(o, "state", "COMPLETED");
            cJSON_AddStringToObject(o, "error", "job 9 already finished");
        } else {
            cJSON_AddStringToObject(o, "state", "CANCELLED");
            cJSON_AddNullToObject(o, "error");
        }
        cJSON_AddItemToArray(res, o);
    }
    return r;
}

/* Logs in three chunks: "one\n" (not ended), nothing new, then "two\n" and eof. */
static cJSON *s_logs(const cJSON *req, int n, act_t *act, const char **raw)
{
    static const char *const data[] = {"one\n", "", "two\n"};
    int i = n < 3 ? n : 2;
    int64_t off = (int64_t)cJSON_GetObjectItemCaseSensitive(req, "offset")->valuedouble;
    cJSON *r = reply_to(req, FT_MSG_LOGS_REPLY);
    cJSON_AddStringToObject(r, "data", data[i]);
    cJSON_AddNumberToObject(r, "offset", (double)(off + (int64_t)strlen(data[i])));
    cJSON_AddBoolToObject(r, "eof", i == 2);
    return r;
}

static cJSON *s_usage(const cJSON *req, int n, act_t *act, const char **raw)
{
    cJSON *r = reply_to(req, FT_MSG_USAGE_REPLY);
    cJSON *rows = cJSON_AddArrayToObject(r, "rows");
    static const char *const keys[] = {"alice", "bob"};
    for (int i = 0; i < 2; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "key", keys[i]);
        cJSON_AddNumberToObject(o, "gpu_seconds", 5400.0 * (i + 1));
        cJSON_AddNumberToObject(o, "gpu_hours", 1.5 * (i + 1));
        cJSON_AddNumberToObject(o, "jobs", i + 1);
        cJSON_AddNumberToObject(o, "intervals", 2 * (i + 1));
        cJSON_AddItemToArray(rows, o);
    }
    cJSON_AddNumberToObject(r, "since", 1700000000);
    cJSON_AddNumberToObject(r, "until", 1700086400);
    return r;
}

static cJSON *s_job_silent_twice(const cJSON *req, int n, act_t *act, const char **raw)
{
    if (n < 2) {
        *act = ACT_DROP; /* a scheduler restarting */
        return NULL;
    }
    job_polls = 5;
    return s_job_then(req, "COMPLETED");
}

/* ---- cases ---- */

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH-TO-FTCTL\n", argv[0]);
        return 2;
    }
    ftctl_path = argv[1];
    if (access(ftctl_path, X_OK) != 0) {
        printf("skip: '%s' is not built\n", ftctl_path);
        return 77;
    }
    zctx = zmq_ctx_new();
    router = zmq_socket(zctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof(linger));
    if (zmq_bind(router, "tcp://127.0.0.1:*") != 0) {
        printf("FAIL: cannot bind: %s\n", zmq_strerror(errno));
        return 1;
    }
    size_t len = sizeof(endpoint);
    zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &len);
    printf("fake scheduler at %s\n", endpoint);

    seen_t seen;
    run_t r;

    /* 1. A lost submit reply: ftctl resends once with the same request_id. */
    run_case(s_submit_drop_first, &seen, &r, "--timeout", "0.3", "submit", "--team", "ml", "--gpus",
             "2", "--", "sh", "-c", "echo hi", NULL);
    check(r.status == 0 && strcmp(r.out, "42\n") == 0, "submit after a lost reply prints 42", &r);
    check(seen.n == 2, "submit was sent exactly twice", &r);
    if (seen.n == 2) {
        const cJSON *a = seen.reqs[0], *b = seen.reqs[1];
        check(*sget(a, "request_id") && strcmp(sget(a, "request_id"), sget(b, "request_id")) == 0,
              "both tries carry the same request_id", NULL);
        check(strcmp(sget(a, "user"), "tester") == 0 && strcmp(sget(a, "team"), "ml") == 0,
              "user from $USER, team from --team", NULL);
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(a, "spec");
        const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(spec, "command");
        check(cJSON_GetArraySize(cmd) == 3 &&
                  strcmp(cJSON_GetArrayItem(cmd, 2)->valuestring, "echo hi") == 0 &&
                  strcmp(sget(spec, "kind"), "exec") == 0 &&
                  cJSON_GetObjectItemCaseSensitive(spec, "gpus")->valuedouble == 2 &&
                  sget(spec, "cwd")[0] == '/',
              "the wrapped spec: kind exec, command argv, gpus 2, absolute cwd", NULL);
    }
    seen_free(&seen);

    /* 2. Two submits get different request_ids. */
    char rid1[80] = "";
    run_case(s_submit_drop_first, &seen, &r, "--timeout", "0.3", "submit", "--", "true", NULL);
    if (seen.n >= 1)
        snprintf(rid1, sizeof(rid1), "%s", sget(seen.reqs[0], "request_id"));
    seen_free(&seen);
    run_case(s_submit_drop_first, &seen, &r, "--timeout", "0.3", "submit", "--", "true", NULL);
    check(seen.n >= 1 && *rid1 && strcmp(rid1, sget(seen.reqs[0], "request_id")) != 0,
          "each submit command has a fresh request_id", &r);
    seen_free(&seen);

    /* 3. An error reply: exit 1, "ftctl: code: message". */
    run_case(s_not_found, &seen, &r, "show", "7", NULL);
    check(r.status == 1 && strstr(r.err, "ftctl: not_found: no job 7") && !r.out[0],
          "error reply: exit 1 and 'ftctl: not_found: no job 7'", &r);
    seen_free(&seen);

    /* 4. Silence: exit 3 within the time-out; reads are not retried. */
    run_case(s_silent, &seen, &r, "--timeout", "0.5", "nodes", NULL);
    check(r.status == 3 && r.secs < 2.0 && seen.n == 1 && strstr(r.err, "unreachable"),
          "silent scheduler: exit 3 after 0.5 s, one try", &r);
    seen_free(&seen);

    /* 5. A reply with another re is skipped; the right one is used. */
    run_case(s_ping_late, &seen, &r, "-o", "json", "ping", NULL);
    cJSON *pj = cJSON_Parse(r.out);
    check(r.status == 0 && pj && cJSON_GetObjectItem(pj, "jobs_pending") &&
              cJSON_GetObjectItem(pj, "jobs_pending")->valuedouble == 3 &&
              !cJSON_GetObjectItem(pj, "type") && !cJSON_GetObjectItem(pj, "re"),
          "ping -o json: the payload of the matching reply, no envelope", &r);
    cJSON_Delete(pj);
    seen_free(&seen);

    /* 6. Invalid JSON in a reply: exit 1, said so. */
    run_case(s_bad_json, &seen, &r, "ping", NULL);
    check(r.status == 1 && strstr(r.err, "invalid reply"), "invalid reply: exit 1", &r);
    seen_free(&seen);

    /* 7. ls: two requests (unfinished, then the last 20 finished), one table. */
    run_case(s_jobs, &seen, &r, "ls", NULL);
    check(r.status == 0 && seen.n == 2, "ls sends two jobs requests", &r);
    check(strncmp(r.out, "ID  NAME", 8) == 0 && strstr(r.out, "AGE/RUNTIME"),
          "ls prints the header", &r);
    check(strstr(r.out, "done?[31mred") && !strchr(r.out, '\033'),
          "control characters in names are shown as '?'", &r);
    {
        /* "3" sorts before "12"; columns line up: STATE starts at the same byte. */
        char *l1 = strchr(r.out, '\n');
        char *l2 = l1 ? strchr(l1 + 1, '\n') : NULL;
        check(l1 && l2 && strncmp(l1 + 1, "3 ", 2) == 0 && strncmp(l2 + 1, "12", 2) == 0,
              "ls sorts by id", &r);
        if (l1 && l2) {
            const char *h = strstr(r.out, "STATE");
            const char *s1 = strstr(l1, "COMPLETED"), *s2 = strstr(l2, "RUNNING");
            check(h && s1 && s2 && h - r.out == s1 - (l1 + 1) && s1 - (l1 + 1) == s2 - (l2 + 1),
                  "ls columns are aligned", &r);
        }
        check(strstr(r.out, "1m05s") != NULL, "a finished job shows its run time 1m05s", &r);
    }
    seen_free(&seen);

    /* 8. wait: RUNNING twice, then COMPLETED -> exit 0; FAILED -> exit 4. */
    job_polls = 0;
    run_case(s_job_completes, &seen, &r, "wait", "5", NULL);
    check(r.status == 0 && strstr(r.out, "job 5 COMPLETED"), "wait: COMPLETED exits 0", &r);
    seen_free(&seen);
    job_polls = 0;
    run_case(s_job_fails, &seen, &r, "wait", "5", NULL);
    check(r.status == 4 && strstr(r.err, "job 5 FAILED: exit code 3"),
          "wait: FAILED exits 4 with the reason", &r);
    seen_free(&seen);
    job_polls = 0;
    run_case(s_job_fails, &seen, &r, "watch", "5", NULL);
    check(r.status == 4 && strstr(r.out, "step 1/4") && strstr(r.out, "job 5 FAILED") &&
              !strchr(r.out, '\r'),
          "watch (not a tty): plain step lines, FAILED exits 4", &r);
    seen_free(&seen);
    run_case(s_job_runs, &seen, &r, "wait", "--timeout", "0.3", "5", NULL);
    check(r.status == 4 && strstr(r.err, "timed out"), "wait --timeout runs out: exit 4", &r);
    seen_free(&seen);

    /* 8b. wait rides out a short outage: each read is resent twice. */
    run_case(s_job_silent_twice, &seen, &r, "--timeout", "0.3", "wait", "5", NULL);
    check(r.status == 0 && seen.n == 3, "wait resends a read twice and then succeeds", &r);
    seen_free(&seen);
    run_case(s_silent, &seen, &r, "--timeout", "0.3", "wait", "5", NULL);
    check(r.status == 3 && seen.n == 3 && strstr(r.err, "3 tries"),
          "wait gives up after 3 silent tries: exit 3", &r);
    seen_free(&seen);
    run_case(s_silent, &seen, &r, "--timeout", "0.3", "show", "5", NULL);
    check(r.status == 3 && seen.n == 1, "show does not retry", &r);
    seen_free(&seen);

    /* 9. cancel: per-job results; one error makes the exit code 1. */
    run_case(s_cancel, &seen, &r, "cancel", "--reason", "wrong data", "8", "9", NULL);
    check(r.status == 1 && strstr(r.out, "job 8 CANCELLED") &&
              strstr(r.err, "cannot cancel job 9: job 9 already finished"),
          "cancel 8 9: 8 cancelled, 9 reported, exit 1", &r);
    check(seen.n == 1 && strcmp(sget(seen.reqs[0], "reason"), "wrong data") == 0,
          "one cancel request carrying --reason", &r);
    seen_free(&seen);

    /* 10. logs -f: follows offsets until eof; without -f stops at no news. */
    run_case(s_logs, &seen, &r, "logs", "-f", "--rank", "1", "4", NULL);
    check(r.status == 0 && strcmp(r.out, "one\ntwo\n") == 0 && seen.n == 3,
          "logs -f: 'one', a quiet poll, 'two' and eof", &r);
    if (seen.n == 3)
        check(cJSON_GetObjectItemCaseSensitive(seen.reqs[2], "offset")->valuedouble == 4 &&
                  cJSON_GetObjectItemCaseSensitive(seen.reqs[0], "rank")->valuedouble == 1,
              "logs asks from the returned offset, for --rank 1", NULL);
    seen_free(&seen);
    run_case(s_logs, &seen, &r, "logs", "4", NULL);
    check(r.status == 0 && strcmp(r.out, "one\n") == 0 && seen.n == 2,
          "logs without -f stops when nothing new comes", &r);
    seen_free(&seen);

    /* 11. usage: a table with a total. */
    run_case(s_usage, &seen, &r, "usage", "--by", "user", "--since", "2023-11-14", NULL);
    check(r.status == 0 && strstr(r.out, "USER") && strstr(r.out, "GPU_HOURS") &&
              strstr(r.out, "alice") && strstr(r.out, "TOTAL  4.5"),
          "usage: rows and a TOTAL of 4.5 GPU-hours", &r);
    check(seen.n == 1 && strcmp(sget(seen.reqs[0], "group_by"), "user") == 0 &&
              cJSON_GetObjectItemCaseSensitive(seen.reqs[0], "since")->valuedouble == 1699920000,
          "usage request: group_by user, since 2023-11-14 as unix seconds", &r);
    seen_free(&seen);

    /* 12. Usage errors never reach the scheduler. */
    run_case(s_silent, &seen, &r, "cancel", "abc", NULL);
    check(r.status == 2 && seen.n == 0, "cancel abc: exit 2, nothing sent", &r);
    seen_free(&seen);

    zmq_close(router);
    zmq_ctx_term(zctx);
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "pass", failures);
    return failures ? 1 : 0;
}
