/*
 * test_ledger_unit.c: the ledger in the scheduler core on a fake clock, so
 * every figure is exact: measured energy stored and priced, the restart gap
 * recorded as unobserved time, utilisation and break-even of the report, and
 * a team over its budget held while another team's job starts.
 */
#include <math.h>
#include <stdarg.h>

#include "../scheduler/harness.h"
#include "ledger.h"

#define T0 1796083200000LL /* 2026-12-01T00:00:00Z, unix ms */
#define HOUR 3600000LL

static const char cost_text[] = "[site]\n"
                                "electricity_per_kwh = 0.20\n"
                                "pue = 1.5\n"
                                "maintenance_per_year = 0.10\n"
                                "[gpu \"H100\"]\n"
                                "price = 43830\n"
                                "server_overhead = 2\n"
                                "years = 4\n"
                                "power_w = 1000\n"
                                "[cloud \"c\"]\n"
                                "H100 = 12\n"
                                "[budget \"vision\"]\n"
                                "gpu_hours = 0.5\n"
                                "[budget \"ops\"]\n"
                                "money = 1.0\n"
                                "over = lower_priority\n"
                                "priority_penalty = 100\n";
/* By hand: capital 87660 / 35064 = 2.5, maintenance 8766 / 8766 = 1.0 per hour,
 * energy rate 1 kW x 1.5 x 0.20 = 0.3 per busy hour; break-even 3.5 / (12 - 0.3). */

static void worker(sched_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void worker(sched_t *s, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    h_send(s, "w/n1", buf);
}

/* Moves the clock, keeps n1 alive and runs the periodic work. */
static void at(sched_t *s, int64_t t)
{
    sched_set_fake_time(s, t);
    worker(s, "{\"v\":1,\"type\":\"heartbeat\"}");
    sched_cron(s);
    h_collect(s);
}

static sched_t *open_sched(const char *db, const char *cost, int64_t t)
{
    sched_config_t cfg;
    ft_err_t err;
    sched_t *s;

    sched_config_defaults(&cfg);
    ft_strlcpy(cfg.db_path, db, sizeof(cfg.db_path));
    ft_strlcpy(cfg.cost_file, cost, sizeof(cfg.cost_file));
    s = sched_new(&cfg, &err);
    if (!s) {
        printf("FAIL cannot create the scheduler: %s\n", err.msg);
        exit(1);
    }
    sched_set_fake_time(s, t);
    return s;
}

static cJSON *request(sched_t *s, const char *text)
{
    h_send(s, "client1", text);
    return h_reply("client1");
}

static const cJSON *row_of(const cJSON *reply, const char *key)
{
    const cJSON *r;

    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(reply, "rows"))
    {
        if (strcmp(h_str(r, "key"), key) == 0)
            return r;
    }
    return NULL;
}

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

/* A team over a money budget with lower_priority: its job of priority 50 is
 * placed after another team's job of priority 0 (penalty 100), not held. */
static void test_lower_priority(const char *cost)
{
    char *db = h_tmpdb();
    sched_t *s = open_sched(db, cost, T0);
    int64_t j1, jo, jn;

    h_hello(s, "n1", 1, "NVIDIA H100 80GB HBM3", "gpu", 81920, NULL);
    at(s, T0);
    j1 = h_submit(s, "{\"name\":\"a\",\"kind\":\"exec\",\"gpus\":1,\"command\":[\"true\"]}", "u",
                  ",\"team\":\"ops\"");
    at(s, T0);
    worker(s,
           "{\"v\":1,\"type\":\"rank_started\",\"job_id\":%lld,\"attempt\":1,\"rank\":0,"
           "\"pid\":10}",
           (long long)j1);
    at(s, T0 + HOUR); /* 3.5 + 0.3 = 3.8 spent of a 1.0 budget */
    jo = h_submit(s,
                  "{\"name\":\"o\",\"kind\":\"exec\",\"gpus\":1,\"priority\":50,"
                  "\"command\":[\"true\"]}",
                  "u", ",\"team\":\"ops\"");
    jn = h_submit(s, "{\"name\":\"n\",\"kind\":\"exec\",\"gpus\":1,\"command\":[\"true\"]}", "v",
                  ",\"team\":\"nlp\"");
    at(s, T0 + HOUR + 20000); /* budgets evaluated */
    worker(s,
           "{\"v\":1,\"type\":\"rank_exited\",\"job_id\":%lld,\"attempt\":1,\"rank\":0,"
           "\"exit_code\":0,\"signal\":0,\"reason\":\"exited\"}",
           (long long)j1);
    at(s, T0 + HOUR + 21000); /* the one device is free: one pass places one job */
    CHECK(strcmp(h_job_col(s, jn, "state"), "RUNNING") == 0 &&
              strcmp(h_job_col(s, jo, "state"), "PENDING") == 0,
          "over its money budget, ops' priority-50 job waits behind nlp's priority-0 job");
    CHECK(strncmp(h_job_col(s, jo, "reason"), "waiting at lower priority: over budget: team 'ops'",
                  50) == 0,
          "its reason says so: '%s'", h_job_col(s, jo, "reason"));
    sched_destroy(&s);
    h_rm(db);
    free(db);
}

int main(void)
{
    char *db = h_tmpdb(), cost[] = "/tmp/ft-test-ledger-cost-XXXXXX";
    int fd = mkstemp(cost);
    sched_t *s;
    int64_t j1, j2, j3, j4;
    cJSON *r;

    ft_log_init("test_ledger", FT_LOG_WARN);
    if (fd < 0 || write(fd, cost_text, sizeof(cost_text) - 1) != (ssize_t)(sizeof(cost_text) - 1))
        return 1;
    close(fd);
    s = open_sched(db, cost, T0);
    h_hello(s, "n1", 2, "NVIDIA H100 80GB HBM3", "gpu", 81920, NULL);
    at(s, T0);

    /* Job 1 (vision): exactly one hour with 0.5 kWh measured by the worker. */
    j1 = h_submit(s, "{\"name\":\"a\",\"kind\":\"exec\",\"gpus\":1,\"command\":[\"true\"]}", "u",
                  ",\"team\":\"vision\"");
    at(s, T0);
    CHECK(h_count("w/n1", "start") == 1, "job %lld started on n1", (long long)j1);
    worker(s,
           "{\"v\":1,\"type\":\"rank_started\",\"job_id\":%lld,\"attempt\":1,\"rank\":0,"
           "\"pid\":10}",
           (long long)j1);
    at(s, T0 + HOUR);
    worker(s,
           "{\"v\":1,\"type\":\"rank_exited\",\"job_id\":%lld,\"attempt\":1,\"rank\":0,"
           "\"exit_code\":0,\"signal\":0,\"reason\":\"exited\",\"energy_mj\":1800000000}",
           (long long)j1);
    CHECK(strcmp(h_job_col(s, j1, "state"), "COMPLETED") == 0, "job 1 COMPLETED");
    CHECK(h_query_int(s, "SELECT energy_mj FROM ledger_intervals") == 1800000000LL,
          "the worker's energy_mj is stored on the interval");
    r = request(s, "{\"v\":1,\"type\":\"usage\",\"id\":\"u\",\"group_by\":\"team\"}");
    {
        const cJSON *v = row_of(r, "vision");

        CHECK(v && NEAR(h_num(v, "gpu_hours"), 1.0), "vision: 1 GPU-hour");
        CHECK(v && NEAR(h_num(v, "energy_kwh"), 0.5) &&
                  strcmp(h_str(v, "energy_source"), "measured") == 0,
              "vision: 0.5 kWh, measured");
        /* 2.5 + 1.0 + 0.5 kWh x 1.5 x 0.20 = 3.65; cloud 12; difference 8.35 */
        CHECK(v && NEAR(h_num(v, "cost"), 3.65) && NEAR(h_num(v, "cost_energy"), 0.15),
              "vision: cost %.6f = 2.5 + 1.0 + 0.15", v ? h_num(v, "cost") : -1);
        CHECK(v && NEAR(h_num(v, "cloud_cost"), 12) && NEAR(h_num(v, "difference"), 8.35),
              "vision: cloud 12, difference 8.35");
    }

    /* Budget: vision used 1 of 0.5 GPU-hours; its next job is held, nlp's runs. */
    at(s, T0 + HOUR + 20000);
    j2 = h_submit(s, "{\"name\":\"b\",\"kind\":\"exec\",\"gpus\":1,\"command\":[\"true\"]}", "u",
                  ",\"team\":\"vision\"");
    j3 = h_submit(s, "{\"name\":\"c\",\"kind\":\"exec\",\"gpus\":1,\"command\":[\"true\"]}", "v",
                  ",\"team\":\"nlp\"");
    at(s, T0 + HOUR + 20000);
    at(s, T0 + HOUR + 40000); /* a budget evaluation after the submit */
    CHECK(strcmp(h_job_col(s, j2, "state"), "PENDING") == 0 &&
              strncmp(h_job_col(s, j2, "reason"), "held: over budget: team 'vision'", 32) == 0,
          "vision's job is held: '%s'", h_job_col(s, j2, "reason"));
    CHECK(strcmp(h_job_col(s, j3, "state"), "RUNNING") == 0, "nlp's job runs");

    /* Restart: nlp's job stays open; last checkpoint at +40 s, the new
     * ftsched starts at +100 s: 60 s were not observed. */
    sched_destroy(&s);
    s = open_sched(db, cost, T0 + HOUR + 100000);
    h_hello(s, "n1", 2, "NVIDIA H100 80GB HBM3", "gpu", 81920, NULL);
    sched_cron(s);
    h_collect(s);
    {
        char sql[200];

        snprintf(sql, sizeof(sql),
                 "SELECT l.unobserved_ms FROM ledger_intervals l JOIN allocations a ON a.id ="
                 " l.alloc_id WHERE a.job_id = %lld",
                 (long long)j3);
        CHECK(h_query_int(s, sql) == 60000, "the restart gap is 60000 ms unobserved (%lld)",
              (long long)h_query_int(s, sql));
        CHECK(h_query_int(s, "SELECT count(*) FROM events WHERE kind = 'ledger'") == 1,
              "one 'ledger' event tells of it");
    }

    /* Report over [T0, T0 + 2 h): 2 devices first seen at T0: 4 GPU-hours available. */
    j4 = j3;
    sched_set_fake_time(s, T0 + 2 * HOUR);
    r = request(s, "{\"v\":1,\"type\":\"report\",\"id\":\"r\",\"since\":1796083200,"
                   "\"until\":1796090400}");
    {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(r, "utilisation");
        const cJSON *be = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "break_even"), 0);
        double alloc = 1.0 + (double)(2 * HOUR - (HOUR + 20000)) / HOUR; /* j1 + j3 open */

        CHECK(u && NEAR(h_num(u, "available_gpu_hours"), 4.0), "available 4 GPU-hours (%.6f)",
              u ? h_num(u, "available_gpu_hours") : -1);
        CHECK(u && NEAR(h_num(u, "allocated_gpu_hours"), alloc), "allocated %.6f GPU-hours = %.6f",
              u ? h_num(u, "allocated_gpu_hours") : -1, alloc);
        CHECK(u && NEAR(h_num(u, "utilisation"), alloc / 4.0), "utilisation %.6f",
              u ? h_num(u, "utilisation") : -1);
        CHECK(u && NEAR(h_num(u, "idle_cost"), (4.0 - alloc) * 3.5), "idle cost %.6f = %.6f",
              u ? h_num(u, "idle_cost") : -1, (4.0 - alloc) * 3.5);
        CHECK(be && NEAR(h_num(be, "utilisation"), 3.5 / 11.7),
              "break-even against c: %.6f = 3.5 / 11.7", be ? h_num(be, "utilisation") : -1);
    }
    (void)j4;
    sched_destroy(&s);
    test_lower_priority(cost);
    if (getenv("KEEP"))
        printf("kept %s\n", db);
    else
        h_rm(db);
    unlink(cost);
    free(db);
    return check_done("test_ledger_unit");
}
