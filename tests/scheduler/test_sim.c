/*
 * test_sim.c: a randomized simulation of a small cluster against the
 * scheduler core. Workers start, finish, fail and vanish; users submit and
 * cancel; garbage arrives. After every step the invariants that make billing
 * and placement trustworthy are checked against the database and the view:
 *  - no device has two open allocations, and the view agrees with the ledger;
 *  - a live rank has an open allocation, an ended rank has none;
 *  - a RUNNING job has exactly `gpus` ranks in its current attempt, a PENDING
 *    job none; attempts never exceed max_retries + 1;
 *  - a COMPLETED job's ranks all exited 0;
 *  - every message the scheduler sends passes the protocol validator and no
 *    start goes to a disconnected node.
 * Fixed seed, so a failure reproduces.
 */
#include <stdarg.h>

#include "harness.h"

#define NNODES 4
#define STEPS 4000

static int64_t now = 1796000000000LL;
static unsigned seed = 20261130;
static bool alive[NNODES];         /* node answers heartbeats */
static int violations;             /* invariant failures seen */
static int steps_done;             /* steps run */
static int sent_checked, sent_bad; /* outbox messages validated / invalid */

static const char *node_name(int i)
{
    static const char *const names[NNODES] = {"n1", "n2", "n3", "n4"};
    return names[i];
}

static int rnd(int n)
{
    return (int)(rand_r(&seed) % (unsigned)n);
}

static void check_outbox(sched_t *s)
{
    for (int i = 0; i < h_nout; i++) {
        ft_err_t err;
        ft_msg_type_t t;
        char *txt = ft_json_print(h_out[i].msg);

        sent_checked++;
        if (!txt || ft_proto_validate(h_out[i].msg, &t, &err) < 0) {
            if (sent_bad++ < 5)
                printf("FAIL message to %s does not validate: %s: %s\n", h_out[i].peer, err.msg,
                       txt ? txt : "");
        }
        if (strcmp(h_type(h_out[i].msg), "start") == 0) {
            view_node_t *n = sched_node_find(s, h_out[i].peer + 2);
            if (!n || !n->connected) {
                violations++;
                printf("FAIL start sent to disconnected %s\n", h_out[i].peer);
            }
        }
        free(txt);
    }
}

static void send_as(sched_t *s, const char *peer, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_as(sched_t *s, const char *peer, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    h_send(s, peer, buf);
    check_outbox(s);
}

static void invariant(sched_t *s, const char *what, const char *sql)
{
    int64_t v = h_query_int(s, sql);

    if (v != 0) {
        violations++;
        if (violations < 20)
            printf("FAIL step %d: %s (%lld rows)\n", steps_done, what, (long long)v);
    }
}

static void check_invariants(sched_t *s)
{
    invariant(
        s, "a device with two open allocations",
        "SELECT count(*) FROM (SELECT node, device_index FROM allocations WHERE end_ms IS NULL"
        " GROUP BY node, device_index HAVING count(*) > 1)");
    invariant(s, "an open allocation of an ended rank",
              "SELECT count(*) FROM allocations a JOIN ranks r ON r.job_id = a.job_id AND "
              "r.attempt = a.attempt"
              " AND r.rank = a.rank WHERE a.end_ms IS NULL AND r.state IN ('exited', 'lost')");
    invariant(
        s, "a live rank without an open allocation",
        "SELECT count(*) FROM ranks r JOIN allocations a ON r.job_id = a.job_id AND r.attempt = "
        "a.attempt"
        " AND r.rank = a.rank WHERE r.state IN ('starting', 'running') AND a.end_ms IS NOT NULL");
    invariant(s, "a RUNNING job without exactly gpus ranks in its attempt",
              "SELECT count(*) FROM jobs j WHERE j.state = 'RUNNING' AND j.gpus !="
              " (SELECT count(*) FROM ranks r WHERE r.job_id = j.id AND r.attempt = j.attempt)");
    invariant(
        s, "a PENDING job with ranks in its current attempt",
        "SELECT count(*) FROM jobs j JOIN ranks r ON r.job_id = j.id AND r.attempt = j.attempt"
        " WHERE j.state = 'PENDING'");
    invariant(s, "more attempts than max_retries allows",
              "SELECT count(*) FROM jobs WHERE attempt - 1 > max_retries");
    invariant(
        s, "a COMPLETED job with a rank that did not exit 0",
        "SELECT count(*) FROM jobs j JOIN ranks r ON r.job_id = j.id AND r.attempt = j.attempt"
        " WHERE j.state = 'COMPLETED' AND NOT (r.state = 'exited' AND r.exit_code = 0 AND r.signal "
        "= 0)");
    invariant(s, "a finished job without end_time or a live one with it",
              "SELECT count(*) FROM jobs WHERE (state IN ('COMPLETED','FAILED','CANCELLED')) != "
              "(end_time IS NOT NULL)");
    /* The view agrees with the ledger. */
    for (int i = 0; i < s->nnodes; i++) {
        for (int k = 0; k < s->nodes[i].ndevs; k++) {
            char sql[256];
            int64_t want;

            snprintf(sql, sizeof(sql),
                     "SELECT coalesce((SELECT job_id FROM allocations WHERE node = '%s'"
                     " AND device_index = %d AND end_ms IS NULL), 0)",
                     s->nodes[i].name, s->nodes[i].devs[k].index);
            want = h_query_int(s, sql);
            if (want != s->nodes[i].devs[k].job_id) {
                violations++;
                if (violations < 20)
                    printf("FAIL step %d: view says %s:%d holds job %lld, ledger says %lld\n",
                           steps_done, s->nodes[i].name, s->nodes[i].devs[k].index,
                           (long long)s->nodes[i].devs[k].job_id, (long long)want);
            }
        }
    }
}

/* A random rank in one of the states, as (job, attempt, rank, node). */
static bool pick_rank(sched_t *s, const char *where, int64_t *job, int *attempt, int *rank,
                      char *node)
{
    char sql[512];
    sqlite3_stmt *st;
    int64_t n;
    bool ok = false;

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM ranks r JOIN jobs j ON j.id = r.job_id WHERE %s", where);
    n = h_query_int(s, sql);
    if (n <= 0)
        return false;
    snprintf(
        sql, sizeof(sql),
        "SELECT r.job_id, r.attempt, r.rank, r.node FROM ranks r JOIN jobs j ON j.id = r.job_id"
        " WHERE %s ORDER BY r.job_id, r.attempt, r.rank LIMIT 1 OFFSET %d",
        where, rnd((int)n));
    if (sqlite3_prepare_v2(s->db->conn, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) {
            *job = sqlite3_column_int64(st, 0);
            *attempt = sqlite3_column_int(st, 1);
            *rank = sqlite3_column_int(st, 2);
            ft_strlcpy(node, (const char *)sqlite3_column_text(st, 3), FT_NAME_MAX + 1);
            ok = true;
        }
        sqlite3_finalize(st);
    }
    return ok;
}

static int node_index(const char *name)
{
    for (int i = 0; i < NNODES; i++)
        if (strcmp(node_name(i), name) == 0)
            return i;
    return -1;
}

static void step(sched_t *s)
{
    int op = rnd(100);
    int64_t job;
    int attempt, rank;
    char node[FT_NAME_MAX + 1], peer[80];

    if (op < 20) {
        char spec[256];
        int gpus = 1 + rnd(6), mode = rnd(4);

        if (mode == 0 && gpus % 2 == 0)
            snprintf(spec, sizeof(spec),
                     "{\"command\":[\"x\"],\"gpus\":%d,\"gpus_per_node\":2,\"priority\":%d,\"max_"
                     "retries\":%d,\"requeue_on_failure\":%s}",
                     gpus, rnd(5), rnd(3), rnd(2) ? "true" : "false");
        else
            snprintf(spec, sizeof(spec),
                     "{\"command\":[\"x\"],\"gpus\":%d,\"priority\":%d,\"max_retries\":%d,"
                     "\"requeue_on_failure\":%s}",
                     gpus, rnd(5), rnd(3), rnd(2) ? "true" : "false");
        h_submit(s, spec, rnd(2) ? "ann" : "bob", NULL);
        check_outbox(s);
    } else if (op < 45) {
        /* A worker reports a start it was asked for (current or stale). */
        if (pick_rank(s, "r.state = 'starting'", &job, &attempt, &rank, node) &&
            alive[node_index(node)]) {
            snprintf(peer, sizeof(peer), "w/%s", node);
            send_as(s, peer,
                    "{\"v\":1,\"type\":\"rank_started\",\"job_id\":%lld,\"attempt\":%d,\"rank\":%d,"
                    "\"pid\":%d}",
                    (long long)job, attempt, rank, 100 + rank);
        }
    } else if (op < 70) {
        if (pick_rank(s, "r.state = 'running'", &job, &attempt, &rank, node) &&
            alive[node_index(node)]) {
            int how = rnd(20);

            snprintf(peer, sizeof(peer), "w/%s", node);
            if (how < 15)
                send_as(s, peer,
                        "{\"v\":1,\"type\":\"rank_exited\",\"job_id\":%lld,\"attempt\":%d,\"rank\":"
                        "%d,\"exit_code\":0,\"signal\":0,\"reason\":\"exited\"}",
                        (long long)job, attempt, rank);
            else if (how < 17)
                send_as(s, peer,
                        "{\"v\":1,\"type\":\"rank_exited\",\"job_id\":%lld,\"attempt\":%d,\"rank\":"
                        "%d,\"exit_code\":2,\"signal\":0,\"reason\":\"exited\"}",
                        (long long)job, attempt, rank);
            else if (how < 19)
                send_as(s, peer,
                        "{\"v\":1,\"type\":\"rank_exited\",\"job_id\":%lld,\"attempt\":%d,\"rank\":"
                        "%d,\"exit_code\":-1,\"signal\":9,\"reason\":\"killed\"}",
                        (long long)job, attempt, rank);
            else
                send_as(s, peer,
                        "{\"v\":1,\"type\":\"progress\",\"job_id\":%lld,\"attempt\":%d,\"rank\":%d,"
                        "\"step\":1,\"total_steps\":9}",
                        (long long)job, attempt, rank);
        }
    } else if (op < 80) {
        /* Ranks told to stop (cancelled or superseded) report stopped. */
        if (pick_rank(s,
                      "r.state IN ('running', 'starting') AND (j.state != 'RUNNING' OR j.attempt "
                      "!= r.attempt)",
                      &job, &attempt, &rank, node) &&
            alive[node_index(node)]) {
            snprintf(peer, sizeof(peer), "w/%s", node);
            send_as(s, peer,
                    "{\"v\":1,\"type\":\"rank_exited\",\"job_id\":%lld,\"attempt\":%d,\"rank\":%d,"
                    "\"exit_code\":-1,\"signal\":15,\"reason\":\"stopped\"}",
                    (long long)job, attempt, rank);
        }
    } else if (op < 84) {
        int64_t n = h_query_int(s, "SELECT max(id) FROM jobs");
        if (n > 0)
            send_as(s, "c", "{\"v\":1,\"type\":\"cancel\",\"job_ids\":[%lld]}",
                    (long long)(1 + rnd((int)n)));
    } else if (op < 86) {
        /* A node goes silent, or a silent one comes back and says hello. */
        int i = rnd(NNODES);
        if (alive[i]) {
            alive[i] = false;
        } else {
            alive[i] = true;
            h_hello(s, node_name(i), 4, "H100", "gpu", 81920, NULL);
            check_outbox(s);
        }
    } else if (op < 88) {
        static const char *const junk[] = {
            "{\"v\":1,\"type\":\"rank_exited\",\"job_id\":1}",
            "nope",
            "{\"v\":1,\"type\":\"start\"}",
            "{\"v\":1,\"type\":\"rank_started\",\"job_id\":99999,\"attempt\":1,\"rank\":0,\"pid\":"
            "5}",
            "{\"v\":1,\"type\":\"log_data\",\"relay\":77,\"data\":\"x\"}",
        };
        send_as(s, rnd(2) ? "w/n1" : "c", "%s", junk[rnd(5)]);
    } else {
        int ms = 100 + rnd(1500);

        now += ms;
        sched_set_fake_time(s, now);
        for (int i = 0; i < NNODES; i++)
            if (alive[i]) {
                snprintf(peer, sizeof(peer), "w/%s", node_name(i));
                h_send(s, peer, "{\"v\":1,\"type\":\"heartbeat\"}");
                /* A node the scheduler forgot (lost) says hello again. */
                if (h_find(peer, "error", 0)) {
                    h_hello(s, node_name(i), 4, "H100", "gpu", 81920, NULL);
                }
                check_outbox(s);
            }
        sched_cron(s);
        h_collect(s);
        check_outbox(s);
    }
}

int main(void)
{
    char *path = h_tmpdb();
    sched_t *s;
    int64_t completed, failed, requeued, lost;

    ft_log_init("test_sim", FT_LOG_ERROR);
    s = h_new(path, now);
    for (int i = 0; i < NNODES; i++) {
        alive[i] = true;
        h_hello(s, node_name(i), 4, "H100", "gpu", 81920, NULL);
    }
    for (steps_done = 0; steps_done < STEPS; steps_done++) {
        step(s);
        check_invariants(s);
    }
    completed = h_query_int(s, "SELECT count(*) FROM jobs WHERE state = 'COMPLETED'");
    failed = h_query_int(s, "SELECT count(*) FROM jobs WHERE state = 'FAILED'");
    requeued = h_query_int(s, "SELECT count(*) FROM events WHERE kind = 'requeued'");
    lost = h_query_int(s, "SELECT count(*) FROM events WHERE kind = 'node_lost'");
    CHECK(completed > 50 && failed > 5 && requeued > 5 && lost > 2,
          "the simulation exercised completion (%lld), failure (%lld), requeue (%lld), node loss "
          "(%lld)",
          (long long)completed, (long long)failed, (long long)requeued, (long long)lost);
    CHECK(violations == 0, "%d steps, no invariant violated (%d violations)", STEPS, violations);
    CHECK(sent_bad == 0 && sent_checked > 1000,
          "all %d messages sent passed the protocol validator (%d did not)", sent_checked,
          sent_bad);
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
    sched_destroy(&s);
    h_rm(path);
    free(path);
    h_drop();
    return check_done("test_sim");
}
