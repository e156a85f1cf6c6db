/*
 * test_sched.c: the scheduler's state machine driven frame by frame with a
 * fake clock: submit, placement and start, completion, failures and
 * requeue, node loss, cancel, hello reconciliation, idempotent submit,
 * unsatisfiable requests, log relay, heartbeats, priorities and backfill,
 * gang-start timeout, time limits, usage accounting, and protocol errors.
 */
#include "harness.h"
#include "vfs_shim.h"

#define T0 1796000000000LL /* 2026-11-29T... in ms, a fixed start */

static int64_t now = T0;

static void tick(sched_t *s, int64_t ms)
{
    now += ms;
    sched_set_fake_time(s, now);
    sched_cron(s);
    h_collect(s);
}

static void worker(sched_t *s, const char *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void worker(sched_t *s, const char *node, const char *fmt, ...)
{
    char peer[80], buf[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    snprintf(peer, sizeof(peer), "w/%s", node);
    h_send(s, peer, buf);
}

static void started(sched_t *s, const char *node, int64_t job, int attempt, int rank)
{
    worker(
        s, node,
        "{\"v\":1,\"type\":\"rank_started\",\"job_id\":%lld,\"attempt\":%d,\"rank\":%d,\"pid\":%d}",
        (long long)job, attempt, rank, 1000 + rank);
}

static void exited(sched_t *s, const char *node, int64_t job, int attempt, int rank, int code,
                   int sig, const char *reason)
{
    worker(s, node,
           "{\"v\":1,\"type\":\"rank_exited\",\"job_id\":%lld,\"attempt\":%d,\"rank\":%d,"
           "\"exit_code\":%d,\"signal\":%d,\"reason\":\"%s\"}",
           (long long)job, attempt, rank, code, sig, reason);
}

static int64_t open_allocs(sched_t *s, int64_t job)
{
    char sql[160];

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM allocations WHERE job_id = %lld AND end_ms IS NULL",
             (long long)job);
    return h_query_int(s, sql);
}

static sched_t *fresh(char **path)
{
    *path = h_tmpdb();
    now = T0;
    return h_new(*path, now);
}

static void done(sched_t **s, char *path)
{
    sched_destroy(s);
    h_rm(path);
    free(path);
}

static void test_happy_path(void)
{
    char *path;
    sched_t *s = fresh(&path);
    int64_t id;
    cJSON *m, *ranks, *r;

    id = h_submit(s, "{\"command\":[\"train.sh\"],\"gpus\":3}", "ann", ",\"team\":\"nlp\"");
    CHECK(id == 1 && strcmp(h_job_col(s, id, "reason"), "waiting for nodes") == 0,
          "a submit before any node registers is accepted, pending 'waiting for nodes'");
    h_hello(s, "n1", 2, "H100", "gpu", 81920, NULL);
    m = h_find("w/n1", "hello_reply", 0);
    CHECK(m && h_num(m, "heartbeat_ms") == 1000 && h_num(m, "liveness") == 5,
          "hello_reply carries heartbeat 1000 x 5");
    h_hello(s, "n2", 2, "H100", "gpu", 81920, NULL);
    tick(s, 10);
    m = h_find("w/n1", "start", 0);
    CHECK(m != NULL && h_find("w/n2", "start", 0) != NULL, "the 3-GPU gang starts on n1 and n2");
    ranks = cJSON_GetObjectItemCaseSensitive(m, "ranks");
    CHECK(m && cJSON_GetArraySize(ranks) == 2 && h_num(m, "world_size") == 3 &&
              h_num(m, "attempt") == 1 && strcmp(h_str(m, "user"), "ann") == 0 &&
              strcmp(h_str(m, "team"), "nlp") == 0,
          "n1 gets ranks 0 and 1 of world 3, attempt 1, user and team");
    r = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(h_find("w/n2", "start", 0), "ranks"),
                           0);
    CHECK(h_num(r, "rank") == 2 && h_num(r, "local_rank") == 0 && h_num(r, "device") == 0,
          "n2 gets rank 2 as its local rank 0");
    {
        char *txt = ft_json_print(m);
        ft_err_t err;
        ft_msg_type_t t;
        cJSON *back = ft_proto_decode(txt, strlen(txt), &t, NULL, 0, &err);
        CHECK(back && t == FT_MSG_START, "the start message passes the protocol validator%s%s",
              back ? "" : ": ", back ? "" : err.msg);
        cJSON_Delete(back);
        free(txt);
    }
    CHECK(strcmp(h_job_col(s, id, "state"), "RUNNING") == 0 && open_allocs(s, id) == 3,
          "job RUNNING with 3 open allocations");
    started(s, "n1", id, 1, 0);
    started(s, "n1", id, 1, 1);
    started(s, "n2", id, 1, 2);
    worker(s, "n1",
           "{\"v\":1,\"type\":\"progress\",\"job_id\":1,\"attempt\":1,\"rank\":0,\"step\":5,"
           "\"total_steps\":10,\"loss\":1.25}");
    h_send(s, "c2", "{\"v\":1,\"type\":\"job\",\"id\":\"q\",\"job_id\":1}");
    m = cJSON_GetObjectItemCaseSensitive(h_reply("c2"), "job");
    r = cJSON_GetObjectItemCaseSensitive(m, "progress");
    CHECK(r && h_num(r, "step") == 5 && h_num(r, "loss") == 1.25,
          "job reply shows rank 0's latest progress");
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "ranks")) == 3 &&
              cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "allocations")) == 3,
          "job reply lists 3 ranks and 3 allocations");
    CHECK(strcmp(h_str(h_reply("c2"), "re"), "q") == 0, "the reply carries re = the request id");
    tick(s, 5000);
    exited(s, "n1", id, 1, 0, 0, 0, "exited");
    exited(s, "n1", id, 1, 1, 0, 0, "exited");
    CHECK(strcmp(h_job_col(s, id, "state"), "RUNNING") == 0 && open_allocs(s, id) == 1,
          "two of three ranks done: still RUNNING, their allocations closed");
    exited(s, "n2", id, 1, 2, 0, 0, "exited");
    CHECK(strcmp(h_job_col(s, id, "state"), "COMPLETED") == 0 && open_allocs(s, id) == 0 &&
              strcmp(h_job_col(s, id, "exit_code"), "0") == 0,
          "all ranks exited 0: COMPLETED, allocations closed, exit code 0 (%s)",
          h_job_col(s, id, "reason"));
    exited(s, "n2", id, 1, 2, 0, 0, "exited");
    CHECK(strcmp(h_job_col(s, id, "state"), "COMPLETED") == 0 && h_nout == 0,
          "a duplicate rank_exited is ignored");
    CHECK(h_query_int(s, "SELECT sum(end_ms - start_ms) FROM allocations WHERE job_id = 1") ==
              3 * 5000,
          "billed exactly 3 x 5000 ms");
    done(&s, path);
}

static void test_failures(void)
{
    char *path;
    sched_t *s = fresh(&path);
    int64_t a, b, c;

    h_hello(s, "n1", 2, "H100", "gpu", 81920, NULL);
    h_hello(s, "n2", 2, "H100", "gpu", 81920, NULL);
    a = h_submit(s, "{\"command\":[\"x\"],\"gpus\":4,\"gpus_per_node\":2}", "ann", NULL);
    tick(s, 10);
    for (int r = 0; r < 4; r++)
        started(s, r < 2 ? "n1" : "n2", a, 1, r);
    exited(s, "n2", a, 1, 3, 3, 0, "exited");
    CHECK(strcmp(h_job_col(s, a, "state"), "FAILED") == 0 &&
              strstr(h_job_col(s, a, "reason"), "rank 3 exited with code 3"),
          "a non-zero exit fails the job: '%s'", h_job_col(s, a, "reason"));
    CHECK(h_count("w/n1", "stop") == 1 && h_count("w/n2", "stop") == 1,
          "the other ranks' workers get stop");
    CHECK(open_allocs(s, a) == 3, "allocations of stopping ranks stay open until they exit");
    tick(s, 10);
    CHECK(h_count(NULL, "start") == 0, "nothing new starts on the stopping devices");
    for (int r = 0; r < 3; r++)
        exited(s, r < 2 ? "n1" : "n2", a, 1, r, -1, 15, "stopped");
    CHECK(open_allocs(s, a) == 0 && strcmp(h_job_col(s, a, "state"), "FAILED") == 0,
          "once stopped, allocations close and the job stays FAILED");

    /* Infrastructure failure: a signal not sent by us requeues. */
    b = h_submit(s, "{\"command\":[\"x\"],\"gpus\":2,\"max_retries\":1}", "bob", NULL);
    tick(s, 10);
    started(s, "n1", b, 1, 0);
    started(s, "n1", b, 1, 1);
    exited(s, "n1", b, 1, 0, -1, 9, "killed");
    CHECK(strcmp(h_job_col(s, b, "state"), "PENDING") == 0 &&
              strcmp(h_job_col(s, b, "attempt"), "2") == 0 &&
              strstr(h_job_col(s, b, "reason"), "killed by signal 9"),
          "killed by signal 9: requeued as attempt 2 ('%s')", h_job_col(s, b, "reason"));
    exited(s, "n1", b, 1, 1, -1, 15, "stopped");
    tick(s, 10);
    CHECK(h_count("w/n1", "start") == 1 && h_num(h_find("w/n1", "start", 0), "attempt") == 2,
          "attempt 2 starts");
    started(s, "n1", b, 2, 0);
    exited(s, "n1", b, 1, 0, 0, 0, "exited");
    CHECK(strcmp(h_job_col(s, b, "state"), "RUNNING") == 0,
          "a stale rank_exited of attempt 1 does not touch attempt 2");
    exited(s, "n1", b, 2, 0, 0, 0, "launch_failed: no such file");
    CHECK(strcmp(h_job_col(s, b, "state"), "FAILED") == 0 &&
              strstr(h_job_col(s, b, "reason"), "no retries left"),
          "second infrastructure failure with max_retries 1: FAILED ('%s')",
          h_job_col(s, b, "reason"));
    exited(s, "n1", b, 2, 1, -1, 15, "stopped");

    /* requeue_on_failure: a non-zero exit is retried too. */
    c = h_submit(s, "{\"command\":[\"x\"],\"max_retries\":2,\"requeue_on_failure\":true}", "cy",
                 NULL);
    tick(s, 10);
    started(s, "n1", c, 1, 0);
    exited(s, "n1", c, 1, 0, 1, 0, "exited");
    CHECK(strcmp(h_job_col(s, c, "state"), "PENDING") == 0 &&
              strcmp(h_job_col(s, c, "attempt"), "2") == 0,
          "requeue_on_failure requeues a non-zero exit");
    done(&s, path);
}

static void test_node_lost(void)
{
    char *path;
    sched_t *s = fresh(&path);
    int64_t a;

    h_hello(s, "n1", 1, "H100", "gpu", 81920, NULL);
    h_hello(s, "n2", 1, "H100", "gpu", 81920, NULL);
    a = h_submit(s, "{\"command\":[\"x\"],\"gpus\":2}", "ann", NULL);
    tick(s, 10);
    started(s, "n1", a, 1, 0);
    started(s, "n2", a, 1, 1);
    /* n1 keeps talking, n2 goes silent. */
    for (int i = 0; i < 4; i++) {
        tick(s, 1000);
        CHECK(h_count("w/n1", "heartbeat") == 1 && h_count("w/n2", "heartbeat") == 1,
              "second %d: both workers get a heartbeat", i + 1);
        worker(s, "n1", "{\"v\":1,\"type\":\"heartbeat\"}");
        CHECK(h_nout == 0, "a heartbeat gets no reply");
    }
    tick(s, 1001);
    worker(s, "n1", "{\"v\":1,\"type\":\"heartbeat\"}");
    tick(s, 100);
    CHECK(!sched_node_find(s, "n2")->connected, "n2 silent for more than 5 s is lost");
    CHECK(h_query_int(s, "SELECT count(*) FROM events WHERE kind = 'node_lost' AND message LIKE "
                         "'node ''n2'' lost%'") == 1,
          "event \"node 'n2' lost\" recorded");
    CHECK(strcmp(h_job_col(s, a, "state"), "PENDING") == 0 &&
              strcmp(h_job_col(s, a, "attempt"), "2") == 0,
          "its job is requeued: '%s'", h_job_col(s, a, "reason"));
    CHECK(h_query_int(s, "SELECT count(*) FROM allocations WHERE node = 'n2' AND end_ms IS NULL") ==
              0,
          "the lost node's allocation is closed");
    CHECK(h_query_int(s, "SELECT count(*) FROM allocations WHERE node = 'n1' AND end_ms IS NULL") ==
              1,
          "n1's allocation stays open until its rank exits");
    worker(s, "n2", "{\"v\":1,\"type\":\"heartbeat\"}");
    CHECK(h_find("w/n2", "error", 0) &&
              strcmp(h_str(h_find("w/n2", "error", 0), "code"), "not_registered") == 0,
          "the lost worker's next message gets not_registered");
    /* n2 comes back still running the old rank: it is told to stop. */
    h_hello(s, "n2", 1, "H100", "gpu", 81920,
            "[{\"job_id\":1,\"attempt\":1,\"rank\":1,\"pid\":5}]");
    CHECK(h_find("w/n2", "hello_reply", 0) && h_find("w/n2", "stop", 0) &&
              h_num(h_find("w/n2", "stop", 0), "attempt") == 1,
          "on hello the stale rank of attempt 1 gets stop");
    done(&s, path);
}

static void test_cancel_and_idempotence(void)
{
    char *path;
    sched_t *s = fresh(&path);
    int64_t a, b, dup;
    cJSON *res;

    h_hello(s, "n1", 1, "H100", "gpu", 81920, NULL);
    a = h_submit(s, "{\"command\":[\"x\"]}", "ann", ",\"request_id\":\"r-1\"");
    dup = h_submit(s, "{\"command\":[\"x\"]}", "ann", ",\"request_id\":\"r-1\"");
    CHECK(a == dup &&
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h_reply("client1"), "duplicate")),
          "the same (user, request_id) returns the same job, duplicate true");
    b = h_submit(s, "{\"command\":[\"x\"]}", "bob", ",\"request_id\":\"r-1\"");
    CHECK(b != a && b > 0, "another user's request_id r-1 is a new job");
    tick(s, 10);
    started(s, "n1", a, 1, 0);
    h_send(s, "c", "{\"v\":1,\"type\":\"cancel\",\"id\":\"k\",\"job_ids\":[1,2,99]}");
    res = cJSON_GetObjectItemCaseSensitive(h_reply("c"), "results");
    CHECK(cJSON_GetArraySize(res) == 3 &&
              strcmp(h_str(cJSON_GetArrayItem(res, 0), "state"), "CANCELLED") == 0 &&
              strcmp(h_str(cJSON_GetArrayItem(res, 1), "state"), "CANCELLED") == 0 &&
              strcmp(h_str(cJSON_GetArrayItem(res, 2), "error"), "no such job") == 0,
          "cancel: running and pending cancelled, unknown id reported");
    CHECK(h_find("w/n1", "stop", 0) != NULL, "cancelling a running job sends stop");
    CHECK(strcmp(h_job_col(s, a, "state"), "CANCELLED") == 0 && open_allocs(s, a) == 1,
          "RUNNING -> CANCELLED at once; the allocation stays open until the rank exits");
    exited(s, "n1", a, 1, 0, -1, 15, "stopped");
    CHECK(open_allocs(s, a) == 0 && strcmp(h_job_col(s, a, "state"), "CANCELLED") == 0,
          "rank exit closes it, still CANCELLED");
    h_send(s, "c", "{\"v\":1,\"type\":\"cancel\",\"job_ids\":[1]}");
    res = cJSON_GetObjectItemCaseSensitive(h_reply("c"), "results");
    CHECK(strstr(h_str(cJSON_GetArrayItem(res, 0), "error"), "already CANCELLED") != NULL,
          "cancelling twice reports 'already CANCELLED'");
    /* A job cancelled before its rank reported in, on a worker that never
     * answers: the allocation must not leak. */
    {
        int64_t c = h_submit(s, "{\"command\":[\"x\"]}", "ann", NULL);
        char q[80];

        tick(s, 10);
        CHECK(open_allocs(s, c) == 1, "job %lld placed, its rank still starting", (long long)c);
        snprintf(q, sizeof(q), "{\"v\":1,\"type\":\"cancel\",\"job_ids\":[%lld]}", (long long)c);
        h_send(s, "c", q);
        for (int i = 0; i < 62; i++) {
            worker(s, "n1", "{\"v\":1,\"type\":\"heartbeat\"}");
            tick(s, 1000);
        }
        CHECK(
            open_allocs(s, c) == 0 && strcmp(h_job_col(s, c, "state"), "CANCELLED") == 0,
            "after the gang start timeout the never-started rank is written off, its device freed");
    }
    done(&s, path);
}

static void test_unsat_and_errors(void)
{
    char *path;
    sched_t *s = fresh(&path);
    cJSON *r;

    h_hello(s, "n1", 4, "A100", "gpu", 40960, NULL);
    CHECK(h_submit(s, "{\"command\":[\"x\"],\"gpus\":8}", "ann", NULL) < 0 &&
              strcmp(h_str(h_reply("client1"), "code"), "unsatisfiable") == 0,
          "8 gpus on a 4-gpu cluster: unsatisfiable: '%s'", h_str(h_reply("client1"), "message"));
    CHECK(h_submit(s, "{\"command\":[\"x\"],\"gpu_model\":\"H100\"}", "ann", NULL) < 0 &&
              strcmp(h_str(h_reply("client1"), "code"), "unsatisfiable") == 0,
          "an H100 on an A100 cluster: unsatisfiable");
    CHECK(h_submit(s, "{\"command\":[\"x\"],\"gpus\":\"two\"}", "ann", NULL) < 0 &&
              strcmp(h_str(h_reply("client1"), "code"), "bad_field") == 0 &&
              strstr(h_str(h_reply("client1"), "message"), "spec.gpus"),
          "a bad spec field is named: '%s'", h_str(h_reply("client1"), "message"));
    CHECK(h_submit(s, "{\"command\":[\"x\"]}", "bad user", NULL) < 0 &&
              strcmp(h_str(h_reply("client1"), "code"), "bad_field") == 0,
          "a user name with a space is refused");
    h_send(s, "c", "{\"v\":1,\"type\":\"job\",\"job_id\":42}");
    CHECK(strcmp(h_str(h_reply("c"), "code"), "not_found") == 0, "job 42: not_found");
    h_send(s, "c",
           "{\"v\":1,\"type\":\"rank_started\",\"job_id\":1,\"attempt\":1,\"rank\":0,\"pid\":1}");
    CHECK(strcmp(h_str(h_reply("c"), "code"), "unknown_type") == 0,
          "a client may not send rank_started");
    h_send(s, "w/n9", "{\"v\":1,\"type\":\"heartbeat\"}");
    CHECK(strcmp(h_str(h_reply("w/n9"), "code"), "not_registered") == 0,
          "a worker that never said hello: not_registered");
    h_send(s, "w/n9", "{\"v\":1,\"type\":\"submit\",\"user\":\"a\",\"spec\":{}}");
    CHECK(strcmp(h_str(h_reply("w/n9"), "code"), "unknown_type") == 0, "a worker may not submit");
    h_send(s, "w/n9",
           "{\"v\":1,\"type\":\"hello\",\"name\":\"n8\",\"hostname\":\"h\",\"pid\":1,\"version\":"
           "\"x\",\"devices\":[],\"running\":[]}");
    CHECK(strcmp(h_str(h_reply("w/n9"), "code"), "forbidden") == 0,
          "hello naming another node than its routing id: forbidden");
    h_send(s, "w/n9",
           "{\"v\":1,\"type\":\"hello\",\"name\":\"n9\",\"hostname\":\"h\",\"pid\":1,\"version\":"
           "\"x\","
           "\"devices\":[{\"index\":0,\"uuid\":\"u\",\"model\":\"m\",\"memory_mb\":1,\"kind\":"
           "\"tpu\"}],\"running\":[]}");
    CHECK(strcmp(h_str(h_reply("w/n9"), "code"), "bad_field") == 0 &&
              strstr(h_str(h_reply("w/n9"), "message"), "devices[0].kind"),
          "a device of unknown kind is refused: '%s'", h_str(h_reply("w/n9"), "message"));
    h_send(s, "c", "{\"v\":1,\"type\":\"ping\",\"id\":\"p\"");
    CHECK(strcmp(h_str(h_reply("c"), "code"), "bad_json") == 0, "truncated JSON: bad_json");
    h_send(s, "c", "\x01\x02\xff");
    CHECK(strcmp(h_str(h_reply("c"), "code"), "bad_json") == 0, "binary garbage: bad_json");
    h_send(s, "c", "{\"v\":1,\"type\":\"error\",\"code\":\"x\"}");
    CHECK(h_nout == 0, "an invalid error message is not answered with an error");
    h_send(s, "c", "{\"v\":1,\"type\":\"ping\",\"id\":\"p\"}");
    r = h_reply("c");
    CHECK(r && strcmp(h_type(r), "ping_reply") == 0 && h_num(r, "nodes_ready") == 1,
          "ping still answers after all that");
    /* Random bytes and mutated messages never crash it. */
    {
        unsigned seed = 7;
        const char *base = "{\"v\":1,\"type\":\"submit\",\"user\":\"u\",\"spec\":{\"command\":["
                           "\"x\"],\"gpus\":2}}";
        char buf[256];
        int answered = 0;

        for (int i = 0; i < 3000; i++) {
            size_t n = strlen(base);
            memcpy(buf, base, n + 1);
            for (int k = 0; k < 3; k++)
                buf[rand_r(&seed) % n] = (char)(rand_r(&seed) % 256);
            h_send(s, i % 2 ? "c" : "w/n1", buf);
            answered += h_nout > 0;
        }
        CHECK(answered > 0, "3000 mutated frames handled without a crash (%d answered)", answered);
    }
    done(&s, path);
}

static void test_priority_backfill_timeouts(void)
{
    char *path;
    sched_t *s = fresh(&path);
    int64_t big, small, high, low, limited;

    h_hello(s, "n1", 4, "H100", "gpu", 81920, NULL);
    big = h_submit(s, "{\"command\":[\"x\"],\"gpus\":4}", "ann", NULL);
    tick(s, 10);
    CHECK(strcmp(h_job_col(s, big, "state"), "RUNNING") == 0, "a 4-gpu job takes the node");
    low = h_submit(s, "{\"command\":[\"x\"],\"gpus\":1,\"priority\":-5}", "ann", NULL);
    high = h_submit(s, "{\"command\":[\"x\"],\"gpus\":4,\"priority\":10}", "ann", NULL);
    small = h_submit(s, "{\"command\":[\"x\"],\"gpus\":2}", "ann", NULL);
    for (int r = 0; r < 4; r++)
        exited(s, "n1", big, 1, r, 0, 0, "exited");
    tick(s, 10);
    CHECK(strcmp(h_job_col(s, high, "state"), "RUNNING") == 0 &&
              strcmp(h_job_col(s, small, "state"), "PENDING") == 0,
          "the highest priority runs first, though submitted later");
    /* Gang start timeout: high never reports its ranks started. */
    now += 61000;
    sched_set_fake_time(s, now);
    worker(s, "n1", "{\"v\":1,\"type\":\"heartbeat\"}");
    tick(s, 1000);
    {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM events WHERE job_id = %lld AND kind = 'requeued'"
                 " AND message LIKE '%%gang not fully started within 60 s%%'",
                 (long long)high);
        CHECK(h_query_int(s, sql) == 1 && strcmp(h_job_col(s, high, "attempt"), "2") == 0,
              "a gang not started within 60 s is requeued as attempt 2");
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM allocations WHERE job_id = %lld AND attempt = 1"
                 " AND end_ms IS NULL",
                 (long long)high);
        CHECK(h_query_int(s, sql) == 0, "the allocations of attempt 1 are closed");
    }
    CHECK(strcmp(h_job_col(s, high, "state"), "RUNNING") == 0 && h_count("w/n1", "start") == 1,
          "the freed node is used again in the same pass (priority 10 first)");
    /* Start what runs now, then free everything and check backfill. */
    worker(s, "n1", "{\"v\":1,\"type\":\"heartbeat\"}");
    {
        int64_t jobs[] = {high, small, low};
        for (int i = 0; i < 3; i++) {
            int n = atoi(h_job_col(s, jobs[i], "gpus"));
            int att = atoi(h_job_col(s, jobs[i], "attempt"));
            if (strcmp(h_job_col(s, jobs[i], "state"), "RUNNING") == 0)
                for (int r = 0; r < n; r++)
                    exited(s, "n1", jobs[i], att, r, 0, 0, "exited");
        }
    }
    h_hello(s, "n1", 4, "H100", "gpu", 81920, NULL);
    big = h_submit(s, "{\"command\":[\"x\"],\"gpus\":3}", "ann", NULL);
    tick(s, 10);
    {
        int64_t wide =
            h_submit(s, "{\"command\":[\"x\"],\"gpus\":2,\"priority\":100}", "ann", NULL);
        int64_t one = h_submit(s, "{\"command\":[\"x\"],\"gpus\":1}", "ann", NULL);
        tick(s, 10);
        CHECK(strcmp(h_job_col(s, wide, "state"), "PENDING") == 0 &&
                  strcmp(h_job_col(s, one, "state"), "RUNNING") == 0,
              "backfill: a 1-gpu job runs while the 2-gpu head waits (%s / %s)",
              h_job_col(s, wide, "state"), h_job_col(s, one, "state"));
    }
    limited = h_submit(s, "{\"command\":[\"x\"],\"time_limit_s\":30}", "ann", NULL);
    CHECK(limited > 0, "submit a job with a 30 s time limit");
    done(&s, path);
}

static void test_time_limit_and_hello_reconcile(void)
{
    char *path;
    sched_t *s = fresh(&path);
    int64_t a, b;

    h_hello(s, "n1", 2, "H100", "gpu", 81920, NULL);
    a = h_submit(s, "{\"command\":[\"x\"],\"time_limit_s\":30}", "ann", NULL);
    b = h_submit(s, "{\"command\":[\"x\"]}", "ann", NULL);
    tick(s, 10);
    started(s, "n1", a, 1, 0);
    started(s, "n1", b, 1, 0);
    for (int i = 0; i < 31; i++) {
        worker(s, "n1", "{\"v\":1,\"type\":\"heartbeat\"}");
        tick(s, 1000);
    }
    CHECK(strcmp(h_job_col(s, a, "state"), "FAILED") == 0 &&
              strstr(h_job_col(s, a, "reason"), "time limit of 30 s"),
          "past its time limit the job FAILED: '%s'", h_job_col(s, a, "reason"));
    /* The worker restarts: it still runs job a's rank, job b's rank is gone,
     * and it runs something we never asked for. */
    h_hello(s, "n1", 2, "H100", "gpu", 81920,
            "[{\"job_id\":1,\"attempt\":1,\"rank\":0,\"pid\":7},{\"job_id\":77,\"attempt\":1,"
            "\"rank\":0,\"pid\":8}]");
    CHECK(h_count("w/n1", "stop") == 2,
          "stop for the failed job's rank and for the unknown job 77");
    CHECK(strcmp(h_job_col(s, b, "state"), "RUNNING") == 0,
          "job b's missing rank is not written off at once: its exit may follow hello_reply");
    for (int i = 0; i < 6; i++) {
        worker(s, "n1", "{\"v\":1,\"type\":\"heartbeat\"}");
        tick(s, 1000);
    }
    {
        char q[200];
        snprintf(q, sizeof(q),
                 "SELECT count(*) FROM events WHERE job_id = %lld AND kind = 'requeued'"
                 " AND message LIKE '%%not running on node ''n1''%%'",
                 (long long)b);
        CHECK(h_query_int(s, q) == 1 && strcmp(h_job_col(s, b, "attempt"), "2") == 0,
              "no exit within the liveness window: the rank is lost, job b requeued as attempt 2");
    }
    CHECK(open_allocs(s, a) == 1,
          "job a's rank still runs: its allocation stays open until it exits");
    done(&s, path);
}

/* The scheduler restarts while a job runs; the job ends during the outage.
 * The worker's hello no longer lists the rank and its rank_exited follows the
 * hello_reply: the job must complete, not be rerun. */
static void test_exit_during_outage(void)
{
    char *path;
    sched_t *s = fresh(&path);
    int64_t a;

    h_hello(s, "n1", 1, "H100", "gpu", 81920, NULL);
    a = h_submit(s, "{\"command\":[\"x\"]}", "ann", NULL);
    tick(s, 10);
    started(s, "n1", a, 1, 0);
    sched_destroy(&s);
    s = h_new(path, now);
    h_hello(s, "n1", 1, "H100", "gpu", 81920, "[]");
    CHECK(h_find("w/n1", "hello_reply", 0) && strcmp(h_job_col(s, a, "state"), "RUNNING") == 0,
          "after the restart the rank is missing from hello; the job waits");
    exited(s, "n1", a, 1, 0, 0, 0, "exited");
    CHECK(strcmp(h_job_col(s, a, "state"), "COMPLETED") == 0 &&
              strcmp(h_job_col(s, a, "attempt"), "1") == 0,
          "the exit delivered after hello_reply completes the job in attempt 1");
    tick(s, 6000);
    CHECK(strcmp(h_job_col(s, a, "state"), "COMPLETED") == 0 &&
              h_query_int(s, "SELECT count(*) FROM events WHERE kind = 'requeued'") == 0,
          "and the missing-rank sweep later leaves it alone");
    done(&s, path);
}

static void test_logs_relay(void)
{
    char *path;
    sched_t *s = fresh(&path);
    int64_t a;
    cJSON *rd;

    h_hello(s, "n1", 2, "H100", "gpu", 81920, NULL);
    a = h_submit(s, "{\"command\":[\"x\"],\"gpus\":2}", "ann", NULL);
    h_send(s, "c", "{\"v\":1,\"type\":\"logs\",\"id\":\"L\",\"job_id\":1}");
    CHECK(strcmp(h_str(h_reply("c"), "code"), "bad_state") == 0,
          "logs of a rank that never started: bad_state");
    tick(s, 10);
    started(s, "n1", a, 1, 0);
    h_send(s, "c", "{\"v\":1,\"type\":\"logs\",\"id\":\"L\",\"job_id\":1,\"rank\":5}");
    CHECK(strcmp(h_str(h_reply("c"), "code"), "not_found") == 0,
          "logs of rank 5 of a 2-rank job: not_found");
    h_send(s, "c",
           "{\"v\":1,\"type\":\"logs\",\"id\":\"L\",\"job_id\":1,\"offset\":10,\"max_bytes\":100}");
    rd = h_find("w/n1", "log_read", 0);
    CHECK(rd && h_num(rd, "offset") == 10 && h_num(rd, "max_bytes") == 100 &&
              h_num(rd, "rank") == 0,
          "the request is relayed to the worker as log_read");
    worker(s, "n1",
           "{\"v\":1,\"type\":\"log_data\",\"relay\":%d,\"data\":\"hello\\n\",\"offset\":16,"
           "\"eof\":false}",
           (int)h_num(rd, "relay"));
    CHECK(h_reply("c") && strcmp(h_type(h_reply("c")), "logs_reply") == 0 &&
              strcmp(h_str(h_reply("c"), "data"), "hello\n") == 0 &&
              h_num(h_reply("c"), "offset") == 16 && strcmp(h_str(h_reply("c"), "re"), "L") == 0,
          "the worker's log_data comes back to the client as logs_reply with re");
    h_send(s, "c", "{\"v\":1,\"type\":\"logs\",\"id\":\"M\",\"job_id\":1}");
    tick(s, 5001);
    CHECK(h_reply("c") && strcmp(h_str(h_reply("c"), "code"), "unavailable") == 0 &&
              strcmp(h_str(h_reply("c"), "re"), "M") == 0,
          "an unanswered relay expires after 5 s with unavailable");
    done(&s, path);
}

static void test_usage(void)
{
    char *path;
    sched_t *s = fresh(&path);
    int64_t a, b;
    cJSON *rows;
    char req[256];
    /* Start just before a UTC midnight to see the day split. */
    int64_t midnight = (T0 / 86400000 + 1) * 86400000;

    now = midnight - 3600 * 1000;
    sched_set_fake_time(s, now);
    h_hello(s, "n1", 4, "H100", "gpu", 81920, NULL);
    a = h_submit(s, "{\"command\":[\"x\"],\"gpus\":2}", "ann", ",\"team\":\"nlp\"");
    b = h_submit(s, "{\"command\":[\"x\"],\"gpus\":1}", "bob", ",\"team\":\"nlp\"");
    tick(s, 0);
    started(s, "n1", a, 1, 0);
    started(s, "n1", a, 1, 1);
    started(s, "n1", b, 1, 0);
    now += 2 * 3600 * 1000; /* two hours, one on each side of midnight */
    sched_set_fake_time(s, now);
    exited(s, "n1", a, 1, 0, 0, 0, "exited");
    exited(s, "n1", a, 1, 1, 0, 0, "exited");
    /* b is still running: counted up to now. */
    h_send(s, "c", "{\"v\":1,\"type\":\"usage\",\"group_by\":\"user\"}");
    rows = cJSON_GetObjectItemCaseSensitive(h_reply("c"), "rows");
    CHECK(cJSON_GetArraySize(rows) == 2 &&
              strcmp(h_str(cJSON_GetArrayItem(rows, 0), "key"), "ann") == 0 &&
              h_num(cJSON_GetArrayItem(rows, 0), "gpu_seconds") == 4 * 3600 &&
              h_num(cJSON_GetArrayItem(rows, 0), "gpu_hours") == 4 &&
              h_num(cJSON_GetArrayItem(rows, 0), "intervals") == 2 &&
              h_num(cJSON_GetArrayItem(rows, 1), "gpu_seconds") == 2 * 3600,
          "by user: ann 4 GPU-hours over 2 intervals, bob 2 (open interval up to now)");
    h_send(s, "c", "{\"v\":1,\"type\":\"usage\",\"group_by\":\"day\"}");
    rows = cJSON_GetObjectItemCaseSensitive(h_reply("c"), "rows");
    CHECK(cJSON_GetArraySize(rows) == 2 &&
              h_num(cJSON_GetArrayItem(rows, 0), "gpu_seconds") == 3 * 3600 &&
              h_num(cJSON_GetArrayItem(rows, 1), "gpu_seconds") == 3 * 3600 &&
              h_num(cJSON_GetArrayItem(rows, 0), "jobs") == 2,
          "by day: split at midnight, 3 GPU-hours each side, 2 jobs each");
    snprintf(req, sizeof(req),
             "{\"v\":1,\"type\":\"usage\",\"group_by\":\"team\",\"since\":%lld,\"until\":%lld}",
             (long long)(midnight / 1000), (long long)(midnight / 1000 + 1800));
    h_send(s, "c", req);
    rows = cJSON_GetObjectItemCaseSensitive(h_reply("c"), "rows");
    CHECK(cJSON_GetArraySize(rows) == 1 &&
              strcmp(h_str(cJSON_GetArrayItem(rows, 0), "key"), "nlp") == 0 &&
              h_num(cJSON_GetArrayItem(rows, 0), "gpu_seconds") == 3 * 1800,
          "clipped to half an hour: 3 devices x 1800 s for team nlp");
    h_send(s, "c", "{\"v\":1,\"type\":\"usage\",\"group_by\":\"color\"}");
    CHECK(strcmp(h_str(h_reply("c"), "code"), "bad_field") == 0, "unknown group_by: bad_field");
    h_send(s, "c", "{\"v\":1,\"type\":\"nodes\"}");
    rows = cJSON_GetObjectItemCaseSensitive(h_reply("c"), "nodes");
    CHECK(cJSON_GetArraySize(rows) == 1 && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
                                               cJSON_GetArrayItem(rows, 0), "devices")) == 4,
          "nodes lists n1 with 4 devices");
    h_send(s, "c", "{\"v\":1,\"type\":\"jobs\",\"states\":[\"RUNNING\"]}");
    rows = cJSON_GetObjectItemCaseSensitive(h_reply("c"), "jobs");
    CHECK(cJSON_GetArraySize(rows) == 1 &&
              h_num(cJSON_GetArrayItem(rows, 0), "job_id") == (double)b,
          "jobs filtered to RUNNING lists job %lld only", (long long)b);
    h_send(s, "c", "{\"v\":1,\"type\":\"jobs\",\"states\":[\"DONE\"]}");
    CHECK(strcmp(h_str(h_reply("c"), "code"), "bad_field") == 0,
          "an unknown state filter: bad_field");
    done(&s, path);
}

/* Durable before sent (db_sync full): commits do not sync; sched_sync does,
 * once, before an outbox that holds anything leaves, or SCHED_SYNC_AFTER_MS
 * after a commit that sends nothing. Relaxed writes (progress) wait for the
 * next sync without asking for one. */
static void test_sync_before_send(void)
{
    char *path;
    sched_t *s = fresh(&path);
    int n;

    h_hello(s, "n1", 1, "H100", "gpu", 81920, NULL);
    CHECK(!s->db->unsynced, "hello_reply left after a sync");
    n = s->db->nsyncs;
    CHECK(h_submit(s, "{\"command\":[\"x\"]}", "ann", NULL) == 1 && s->db->nsyncs == n + 1 &&
              !s->db->unsynced,
          "submit: one sync before its reply (%d -> %d)", n, s->db->nsyncs);
    tick(s, 10);
    CHECK(h_count("w/n1", "start") == 1 && s->db->nsyncs == n + 2,
          "the start leaves after the sync of its allocation (%d syncs)", s->db->nsyncs - n);
    started(s, "n1", 1, 1, 0);
    CHECK(h_nout == 0 && s->db->unsynced && s->db->nsyncs == n + 2,
          "rank_started sends nothing: committed, not yet synced");
    worker(s, "n1",
           "{\"v\":1,\"type\":\"progress\",\"job_id\":1,\"attempt\":1,\"rank\":0,"
           "\"step\":1,\"total_steps\":9}");
    tick(s, SCHED_SYNC_AFTER_MS / 2);
    CHECK(s->db->unsynced && s->db->nsyncs == n + 2, "half the window later: still one to come");
    CHECK(sched_next_timeout_ms(s) <= SCHED_SYNC_AFTER_MS / 2,
          "the poll wakes by the end of the window to sync it (in %d ms)",
          sched_next_timeout_ms(s));
    tick(s, SCHED_SYNC_AFTER_MS / 2);
    CHECK(!s->db->unsynced && s->db->nsyncs == n + 3,
          "%d ms after the commit it is synced, with nothing to send", SCHED_SYNC_AFTER_MS);
    worker(s, "n1",
           "{\"v\":1,\"type\":\"progress\",\"job_id\":1,\"attempt\":1,\"rank\":0,"
           "\"step\":2,\"total_steps\":9}");
    CHECK(!s->db->unsynced && h_query_int(s, "SELECT count(*) FROM progress") == 1,
          "a progress write (relaxed) asks for no sync");
    exited(s, "n1", 1, 1, 0, 0, 0, "exited");
    CHECK(h_nout == 0 && s->db->unsynced && strcmp(h_job_col(s, 1, "state"), "COMPLETED") == 0,
          "rank_exited with nothing queued: COMPLETED, committed, not yet synced");
    h_send(s, "client1", "{\"v\":1,\"type\":\"job\",\"id\":\"q\",\"job_id\":1}");
    CHECK(h_reply("client1") &&
              strcmp(h_str(cJSON_GetObjectItemCaseSensitive(h_reply("client1"), "job"), "state"),
                     "COMPLETED") == 0 &&
              s->db->nsyncs == n + 4 && !s->db->unsynced,
          "a client reading that state gets it only after the sync (%d syncs)", s->db->nsyncs - n);
    CHECK(db_set_sync(s->db, DB_SYNC_NORMAL, &(ft_err_t){0}) == 0 &&
              h_submit(s, "{\"command\":[\"x\"]}", "ann", NULL) == 2 && !s->db->unsynced &&
              s->db->nsyncs == n + 4,
          "db_sync normal: no sync before the reply");
    done(&s, path);
}

/* A WAL sync that fails: sched_sync reports it and empties the outbox, so
 * the server sends nothing it could not keep (and stops). */
static void test_sync_fails(void)
{
    char *path;
    sched_t *s;
    ft_err_t err;
    const char spec[] = "{\"v\":1,\"type\":\"submit\",\"id\":\"s\",\"user\":\"ann\","
                        "\"spec\":{\"command\":[\"x\"]}}";

    shim_install();
    s = fresh(&path);
    sched_handle(s, "client1", 7, spec, sizeof(spec) - 1);
    CHECK(sched_outbox_count(s) == 1 && s->db->unsynced, "a submit: its reply waits, unsynced");
    shim_fail_wal_sync = 1;
    CHECK(sched_sync(s, &err) < 0 && strstr(err.msg, "sync") && sched_outbox_count(s) == 0,
          "the sync fails ('%s'): nothing is left to send", err.msg);
    shim_fail_wal_sync = 0;
    done(&s, path);
    shim_remove();
}

/* Storage faults: another connection holds the write lock, so every write
 * transaction fails with SQLITE_BUSY. Nothing may change, nothing may be
 * sent but the error, and the view must come back consistent. */
static void test_storage_faults(void)
{
    char *path = h_tmpdb();
    sched_config_t cfg;
    ft_err_t err;
    sched_t *s;
    sqlite3 *other;
    int64_t id;
    view_node_t *n;

    now = T0;
    sched_config_defaults(&cfg);
    ft_strlcpy(cfg.db_path, path, sizeof(cfg.db_path));
    cfg.busy_timeout_ms = 20;
    s = sched_new(&cfg, &err);
    CHECK(s != NULL, "scheduler with a 20 ms busy timeout");
    if (!s) {
        h_rm(path);
        free(path);
        return;
    }
    sched_set_fake_time(s, now);
    h_hello(s, "n1", 2, "H100", "gpu", 81920, NULL);
    CHECK(sqlite3_open(path, &other) == SQLITE_OK &&
              sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK,
          "a second connection takes the write lock");
    id = h_submit(s, "{\"command\":[\"x\"]}", "ann", NULL);
    CHECK(id < 0 && strcmp(h_str(h_reply("client1"), "code"), "internal") == 0 && h_nout == 1,
          "submit while locked: one 'internal' error, no acknowledgement: '%s'",
          h_str(h_reply("client1"), "message"));
    CHECK(h_query_int(s, "SELECT count(*) FROM jobs") == 0, "no job row was written");
    sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
    id = h_submit(s, "{\"command\":[\"x\"],\"gpus\":2}", "ann", NULL);
    CHECK(id == 1, "after the lock is gone the same submit works");
    sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    tick(s, 10);
    n = sched_node_find(s, "n1");
    CHECK(h_count(NULL, "start") == 0 && strcmp(h_job_col(s, id, "state"), "PENDING") == 0,
          "a placement whose transaction fails sends no start and leaves the job PENDING");
    CHECK(n && n->devs[0].job_id == 0 && n->devs[1].job_id == 0,
          "the view was rebuilt: both devices free again");
    worker(s, "n1",
           "{\"v\":1,\"type\":\"rank_exited\",\"job_id\":1,\"attempt\":1,\"rank\":0,\"exit_code\":"
           "0,\"signal\":0,\"reason\":\"exited\"}");
    CHECK(h_nout == 1 && strcmp(h_str(h_reply("w/n1"), "code"), "internal") == 0,
          "a worker event that cannot be stored is answered 'internal'");
    sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(other);
    tick(s, 10);
    CHECK(h_count("w/n1", "start") == 1 && strcmp(h_job_col(s, id, "state"), "RUNNING") == 0 &&
              open_allocs(s, id) == 2,
          "with storage back, the next pass starts the job");
    {
        sqlite3_stmt *st;
        int ok = 0;
        if (sqlite3_prepare_v2(s->db->conn, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK) {
            ok = sqlite3_step(st) == SQLITE_ROW &&
                 strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
            sqlite3_finalize(st);
        }
        CHECK(ok, "PRAGMA integrity_check says ok");
    }
    done(&s, path);
}

/* Replies never exceed the message limit: jobs is cut ("truncated"), and a
 * reply that cannot be cut becomes a too_large error. */
static void test_reply_limits(void)
{
    char *path;
    sched_t *s = fresh(&path);
    ft_err_t err;
    cJSON *r;
    int64_t n;

    CHECK(db_exec(s->db,
                  "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 6000)"
                  " INSERT INTO jobs (name, kind, spec, user, team, state, reason, priority, "
                  "max_retries, gpus, submit_time)"
                  " SELECT printf('job-%058d', i), 'exec', '{}', 'ann', 'default', 'FAILED',"
                  " printf('%0200d', i), 0, 0, 1, 1 FROM c",
                  &err) == 0,
          "6000 finished jobs in the database");
    h_send(s, "c", "{\"v\":1,\"type\":\"jobs\",\"limit\":10000}");
    r = h_reply("c");
    n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "jobs"));
    CHECK(r && strcmp(h_type(r), "jobs_reply") == 0 &&
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "truncated")) && n > 1000 &&
              n < 6000,
          "jobs of 6000 long rows: cut to %lld newest, truncated true", (long long)n);
    {
        char *t = ft_json_print(r);
        ft_msg_type_t ty;
        cJSON *back = ft_proto_decode(t, strlen(t), &ty, NULL, 0, &err);
        CHECK(back != NULL, "the cut reply (%zu bytes) passes the validator", strlen(t));
        cJSON_Delete(back);
        free(t);
    }
    CHECK(db_exec(s->db,
                  "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 19999)"
                  " INSERT INTO allocations (job_id, attempt, rank, node, device_index, "
                  "device_uuid, device_model, start_ms, end_ms)"
                  " SELECT 1, 1 + i / 1000, i % 1000, 'n1', 0, printf('GPU-%036d', i), 'NVIDIA "
                  "H100 80GB HBM3', 1000, 2000 FROM c",
                  &err) == 0,
          "20000 allocation rows for job 1");
    h_send(s, "c", "{\"v\":1,\"type\":\"job\",\"id\":\"big\",\"job_id\":1}");
    r = h_reply("c");
    CHECK(r && strcmp(h_str(r, "code"), "too_large") == 0 && strcmp(h_str(r, "re"), "big") == 0,
          "a job reply over 1 MiB becomes too_large with re: '%s'", h_str(r, "message"));
    done(&s, path);
}

/* n pending exec jobs of user ann straight into the table (faster than n
 * submits), at the given priority and GPU count */
static int insert_pending(sched_t *s, int n, int priority, int gpus, ft_err_t *err)
{
    char *sql = ft_asprintf(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d)"
        " INSERT INTO jobs (name, kind, spec, user, team, state, priority, max_retries,"
        " gpus, submit_time) SELECT 'w', 'exec', '{\"command\":[\"x\"]}', 'ann',"
        " 'default', 'PENDING', %d, 0, %d, %lld FROM c",
        n, priority, gpus, (long long)(now / 1000));
    int rc = db_exec(s->db, sql, err);
    free(sql);
    return rc;
}

/* A long queue of alike jobs that do not fit: one placement decides them all,
 * and a smaller job behind them still starts. */
static void test_many_pending(void)
{
    char *path;
    sched_t *s = fresh(&path);
    ft_err_t err;
    int64_t small, t0;

    h_hello(s, "n1", 4, "H100", "gpu", 81920, NULL);
    h_submit(s, "{\"command\":[\"x\"],\"gpus\":3}", "ann", NULL);
    tick(s, 10);
    CHECK(insert_pending(s, 5000, 0, 2, &err) == 0,
          "5000 pending 2-gpu jobs while 1 device is free");
    small = h_submit(s, "{\"command\":[\"x\"],\"gpus\":1}", "bob", NULL);
    t0 = ft_mono_ms();
    tick(s, 10);
    CHECK(strcmp(h_job_col(s, small, "state"), "RUNNING") == 0,
          "the 1-gpu job behind them starts (pass took %lld ms)", (long long)(ft_mono_ms() - t0));
    CHECK(h_query_int(s, "SELECT count(*) FROM jobs WHERE state = 'PENDING'") == 5000,
          "the 5000 stay pending");
    done(&s, path);
}

/* A pass reads the queue's head first and further only while devices stay
 * free: jobs past the first read still start, in queue order (priority, then
 * id), and the ones already looked at are not placed twice. */
static void test_queue_pages(void)
{
    char *path;
    sched_t *s = fresh(&path);
    ft_err_t err;
    int64_t ones[5], late;
    char states[64] = "";

    h_hello(s, "n1", 4, "H100", "gpu", 81920, NULL);
    h_submit(s, "{\"command\":[\"x\"],\"gpus\":1}", "ann", NULL);
    tick(s, 10);
    CHECK(insert_pending(s, 100, 5, 4, &err) == 0, "100 pending 4-gpu jobs at priority 5, 3 free");
    for (int i = 0; i < 5; i++)
        ones[i] = h_submit(s, "{\"command\":[\"x\"],\"gpus\":1}", "bob", NULL);
    late = h_submit(s, "{\"command\":[\"x\"],\"gpus\":1,\"priority\":1}", "bob", NULL);
    h_drop();
    tick(s, 10);
    for (int i = 0; i < 5; i++)
        states[i] = h_job_col(s, ones[i], "state")[0];
    CHECK(strcmp(h_job_col(s, late, "state"), "RUNNING") == 0 && strcmp(states, "RRPPP") == 0,
          "past 100 rows: the priority-1 job and the two oldest 1-gpu jobs start (%s)", states);
    CHECK(h_count("w/n1", "start") == 3, "three starts sent, none twice (%d)",
          h_count("w/n1", "start"));
    CHECK(h_query_int(s, "SELECT count(*) FROM jobs WHERE state = 'PENDING' AND gpus = 4") == 100,
          "the 4-gpu jobs stay pending");
    done(&s, path);
}

/* Anti-starvation: a job that has waited reserve_after_s (30 min) stops the
 * backfill behind it, so the devices it needs drain; it then starts. */
static void test_reservation(void)
{
    char *path;
    sched_t *s = fresh(&path);
    int64_t a, big, small, small2;

    h_hello(s, "n1", 4, "H100", "gpu", 81920, NULL);
    a = h_submit(s, "{\"command\":[\"x\"],\"gpus\":3}", "ann", NULL);
    tick(s, 10);
    for (int r = 0; r < 3; r++)
        started(s, "n1", a, 1, r);
    big = h_submit(s, "{\"command\":[\"x\"],\"gpus\":4}", "bob", NULL);
    small = h_submit(s, "{\"command\":[\"x\"],\"gpus\":1,\"priority\":-1}", "cy", NULL);
    tick(s, 10);
    CHECK(strcmp(h_job_col(s, small, "state"), "RUNNING") == 0,
          "while the 4-gpu job is young, a 1-gpu job backfills");
    started(s, "n1", small, 1, 0);
    exited(s, "n1", small, 1, 0, 0, 0, "exited");
    /* Half an hour later the 4-gpu job still waits (job a holds 3). */
    now += 1801 * 1000;
    sched_set_fake_time(s, now);
    worker(s, "n1", "{\"v\":1,\"type\":\"heartbeat\"}");
    small2 = h_submit(s, "{\"command\":[\"x\"],\"gpus\":1,\"priority\":-1}", "cy", NULL);
    tick(s, 10);
    CHECK(strcmp(h_job_col(s, small2, "state"), "PENDING") == 0 &&
              strcmp(h_job_col(s, big, "state"), "PENDING") == 0,
          "after 30 min the 4-gpu job holds back the 1-gpu job behind it");
    for (int r = 0; r < 3; r++)
        exited(s, "n1", a, 1, r, 0, 0, "exited");
    tick(s, 10);
    CHECK(strcmp(h_job_col(s, big, "state"), "RUNNING") == 0 &&
              strcmp(h_job_col(s, small2, "state"), "PENDING") == 0,
          "when job a ends the 4-gpu job starts first");
    done(&s, path);
}

/* The rendezvous relay (scheduler/rendezvous.c): blobs from every rank, then
 * all of them in rank order to every node of the gang; only live ranks of the
 * running attempt, only from their own node; anything else is told to stop. */
static void rdv(sched_t *s, const char *node, int64_t job, int attempt, int rank, const char *blob)
{
    worker(s, node,
           "{\"v\":1,\"type\":\"rendezvous\",\"id\":\"r%d\",\"job_id\":%lld,\"attempt\":%d,"
           "\"rank\":%d,\"blob\":\"%s\"}",
           rank, (long long)job, attempt, rank, blob);
}

static void test_rendezvous(void)
{
    char *path;
    sched_t *s = fresh(&path);
    int64_t a;
    cJSON *m, *blobs;

    h_hello(s, "n1", 2, "H100", "gpu", 81920, NULL);
    h_hello(s, "n2", 1, "H100", "gpu", 81920, NULL);
    a = h_submit(s, "{\"command\":[\"x\"],\"gpus\":3}", "ann", NULL);
    tick(s, 10);
    for (int r = 0; r < 3; r++)
        started(s, r < 2 ? "n1" : "n2", a, 1, r);
    rdv(s, "n2", a, 1, 0, "QUFB");
    CHECK(h_find("w/n2", "stop", 0) && h_count(NULL, "rendezvous_reply") == 0,
          "a blob for rank 0 from n2 (rank 0 is on n1) is refused with a stop");
    rdv(s, "n1", a, 2, 0, "QUFB");
    CHECK(h_find("w/n1", "stop", 0) && h_num(h_find("w/n1", "stop", 0), "attempt") == 2,
          "a blob for attempt 2 while attempt 1 runs: that attempt is told to stop");
    rdv(s, "n1", a, 1, 1, "QkJC");
    CHECK(h_nout == 0, "rank 1's blob: nothing sent yet");
    rdv(s, "n2", a, 1, 2, "Q0ND");
    CHECK(h_nout == 0, "rank 2's blob: nothing sent yet");
    rdv(s, "n1", a, 1, 0, "QUFB");
    m = h_find("w/n1", "rendezvous_reply", 0);
    blobs = cJSON_GetObjectItemCaseSensitive(m, "blobs");
    CHECK(m && h_find("w/n2", "rendezvous_reply", 0) && h_count(NULL, "rendezvous_reply") == 2 &&
              cJSON_GetArraySize(blobs) == 3 &&
              strcmp(cJSON_GetArrayItem(blobs, 0)->valuestring, "QUFB") == 0 &&
              strcmp(cJSON_GetArrayItem(blobs, 2)->valuestring, "Q0ND") == 0 &&
              h_num(m, "attempt") == 1,
          "the last blob completes it: one rendezvous_reply per node, blobs in rank order");
    {
        char *t = ft_json_print(m);
        ft_err_t err;
        ft_msg_type_t ty;
        cJSON *back = ft_proto_decode(t, strlen(t), &ty, NULL, 0, &err);
        CHECK(back && ty == FT_MSG_RENDEZVOUS_REPLY, "the reply passes the validator");
        cJSON_Delete(back);
        free(t);
    }
    rdv(s, "n2", a, 1, 2, "Q0ND");
    CHECK(h_nout == 0, "a blob sent after completion opens a new exchange: nothing sent");
    /* The attempt fails and is requeued: the old gang is forgotten. */
    exited(s, "n2", a, 1, 2, -1, 9, "killed");
    for (int r = 0; r < 2; r++)
        exited(s, "n1", a, 1, r, -1, 15, "stopped");
    tick(s, 10);
    for (int r = 0; r < 3; r++)
        started(s, r < 2 ? "n1" : "n2", a, 2, r);
    rdv(s, "n1", a, 1, 0, "QUFB");
    CHECK(h_find("w/n1", "stop", 0) && h_num(h_find("w/n1", "stop", 0), "attempt") == 1,
          "after the requeue, a blob for attempt 1 is stale: stop");
    rdv(s, "n1", a, 2, 0, "WFhY");
    CHECK(h_nout == 0, "attempt 2 starts a fresh rendezvous");
    done(&s, path);
}


/* submit "array": N: N jobs in one transaction, ids in index order, the
 * request id covers the whole array, start carries the element's index. */
static void test_array(void)
{
    char *path;
    sched_t *s = fresh(&path);
    cJSON *r, *ids, *again, *st;
    int64_t first;
    int n_starts = 0, ok_index = 1;

    h_hello(s, "n1", 2, "H100", "gpu", 81920, NULL);
    first = h_submit(s, "{\"command\":[\"x\"]}", "ann", ",\"request_id\":\"arr-1\",\"array\":4");
    r = h_reply("client1");
    ids = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(r, "job_ids"), true); /* kept */
    CHECK(first > 0 && cJSON_GetArraySize(ids) == 4 &&
              cJSON_GetArrayItem(ids, 0)->valuedouble == (double)first,
          "array 4: four ids, job_id is the first (%lld)", (long long)first);
    for (int i = 0; i < 4; i++) {
        int64_t id = (int64_t)cJSON_GetArrayItem(ids, i)->valuedouble;

        ok_index &= atoll(h_job_col(s, id, "array_index")) == i &&
                    atoll(h_job_col(s, id, "array_job_id")) == first &&
                    strcmp(h_job_col(s, id, "state"), "PENDING") == 0;
    }
    CHECK(ok_index, "each element is PENDING with array_job_id %lld and its index",
          (long long)first);
    again = NULL;
    CHECK(h_submit(s, "{\"command\":[\"x\"]}", "ann", ",\"request_id\":\"arr-1\",\"array\":4") ==
                  first &&
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive((again = h_reply("client1")),
                                                            "duplicate")),
          "a resent array request gets the first array back, duplicate true");
    CHECK(again && cJSON_Compare(cJSON_GetObjectItemCaseSensitive(again, "job_ids"), ids, true),
          "the duplicate reply lists the same four ids");
    CHECK(h_query_int(s, "SELECT count(*) FROM jobs") == 4, "still four jobs");
    tick(s, 10);
    for (int k = 0; (st = h_find("w/n1", "start", k)) != NULL; k++) {
        n_starts++;
        ok_index &= h_num(st, "array_job_id") == (double)first &&
                    h_num(st, "array_index") == h_num(st, "job_id") - (double)first;
    }
    CHECK(n_starts == 2 && ok_index, "two elements start on two devices, with their index (%d)",
          n_starts);
    cJSON_Delete(ids);
    h_send(s, "client1",
           "{\"v\":1,\"type\":\"submit\",\"id\":\"s\",\"user\":\"ann\",\"array\":1001,"
           "\"spec\":{\"command\":[\"x\"]}}");
    CHECK(strcmp(h_type(h_reply("client1")), "error") == 0 &&
              strstr(h_str(h_reply("client1"), "message"), "array"),
          "array 1001 is refused by the validator: %s", h_str(h_reply("client1"), "message"));
    done(&s, path);
}

int main(void)
{
    ft_log_init("test_sched", FT_LOG_ERROR);
    test_happy_path();
    test_failures();
    test_node_lost();
    test_cancel_and_idempotence();
    test_array();
    test_unsat_and_errors();
    test_priority_backfill_timeouts();
    test_time_limit_and_hello_reconcile();
    test_exit_during_outage();
    test_logs_relay();
    test_usage();
    test_storage_faults();
    test_sync_before_send();
    test_sync_fails();
    test_reply_limits();
    test_many_pending();
    test_queue_pages();
    test_reservation();
    test_rendezvous();
    h_drop();
    return check_done("test_sched");
}
