/*
 * test_db.c: the scheduler's database layer: the schema is created by the
 * migrations from an empty file, durability settings are in force, the
 * constraints that protect billing hold, a newer schema is refused, and the
 * view is rebuilt from the database after a restart.
 */
#include "harness.h"
#include "vfs_shim.h"

static void test_fresh(const char *path)
{
    ft_err_t err;
    db_t *db = db_open(path, &err);
    sqlite3_stmt *st;

    CHECK(db != NULL, "open a new database%s%s", db ? "" : ": ", db ? "" : err.msg);
    if (!db)
        return;
    st = db_stmt(db, "PRAGMA user_version", &err);
    CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == db_schema_version(),
          "user_version is the schema version %d", db_schema_version());
    sqlite3_reset(st);
    st = db_stmt(db, "PRAGMA journal_mode", &err);
    CHECK(st && sqlite3_step(st) == SQLITE_ROW &&
              strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0,
          "journal_mode is wal");
    sqlite3_reset(st);
    st = db_stmt(db, "PRAGMA synchronous", &err);
    CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 2,
          "synchronous is FULL (2)");
    sqlite3_reset(st);
    st = db_stmt(db, "PRAGMA foreign_keys", &err);
    CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1,
          "foreign_keys is on");
    sqlite3_reset(st);
    {
        static const char *const tables[] = {"jobs",  "allocations", "nodes",   "devices",
                                             "ranks", "events",      "progress"};
        for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
            st = db_stmt(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?",
                         &err);
            db_bind_text(st, 1, tables[i]);
            CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1,
                  "table '%s' exists", tables[i]);
            sqlite3_reset(st);
        }
    }
    /* The partial unique index: one open allocation per device. */
    CHECK(db_exec(db,
                  "INSERT INTO jobs (name, kind, spec, user, team, state, priority, max_retries, "
                  "gpus, submit_time)"
                  " VALUES ('a', 'exec', '{}', 'u', 't', 'RUNNING', 0, 0, 2, 1)",
                  &err) == 0,
          "insert a job");
    CHECK(db_exec(db,
                  "INSERT INTO allocations (job_id, attempt, rank, node, device_index, "
                  "device_uuid, device_model, start_ms)"
                  " VALUES (1, 1, 0, 'n1', 0, 'u0', 'm', 1000)",
                  &err) == 0,
          "open an allocation on n1:0");
    CHECK(db_exec(db,
                  "INSERT INTO allocations (job_id, attempt, rank, node, device_index, "
                  "device_uuid, device_model, start_ms)"
                  " VALUES (1, 1, 1, 'n1', 0, 'u0', 'm', 1000)",
                  &err) < 0,
          "a second open allocation on n1:0 is refused: %s", err.msg);
    CHECK(db_exec(db, "UPDATE allocations SET end_ms = 2000 WHERE rank = 0", &err) == 0,
          "close it");
    CHECK(db_exec(db,
                  "INSERT INTO allocations (job_id, attempt, rank, node, device_index, "
                  "device_uuid, device_model, start_ms)"
                  " VALUES (1, 1, 1, 'n1', 0, 'u0', 'm', 2000)",
                  &err) == 0,
          "then n1:0 can be allocated again");
    CHECK(db_exec(db, "UPDATE allocations SET end_ms = 10 WHERE rank = 1", &err) < 0,
          "an allocation cannot end before it starts: %s", err.msg);
    CHECK(db_exec(db,
                  "INSERT INTO allocations (job_id, attempt, rank, node, device_index, "
                  "device_uuid, device_model, start_ms)"
                  " VALUES (99, 1, 0, 'n1', 1, 'u1', 'm', 1000)",
                  &err) < 0,
          "an allocation for a job that does not exist is refused: %s", err.msg);
    CHECK(db_exec(db,
                  "INSERT INTO jobs (name, kind, spec, user, team, state, priority, max_retries, "
                  "gpus, submit_time)"
                  " VALUES ('a', 'exec', '{}', 'u', 't', 'BOGUS', 0, 0, 1, 1)",
                  &err) < 0,
          "an unknown job state is refused: %s", err.msg);
    CHECK(db_exec(db,
                  "INSERT INTO jobs (name, kind, spec, user, team, state, priority, max_retries, "
                  "gpus, submit_time, request_id)"
                  " VALUES ('a', 'exec', '{}', 'u', 't', 'PENDING', 0, 0, 1, 1, 'r1'),"
                  " ('b', 'exec', '{}', 'u', 't', 'PENDING', 0, 0, 1, 1, 'r1')",
                  &err) < 0,
          "a repeated (user, request_id) is refused: %s", err.msg);
    /* Transactions: rollback undoes. */
    CHECK(db_begin(db, &err) == 0, "BEGIN IMMEDIATE");
    CHECK(db_begin(db, &err) < 0, "a nested transaction is refused: %s", err.msg);
    db_exec(db, "DELETE FROM allocations", &err);
    db_rollback(db);
    st = db_stmt(db, "SELECT count(*) FROM allocations", &err);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 2,
          "rollback kept both allocations");
    sqlite3_reset(st);
    /* One-call statements: db_run binds by type letters, db_int reads one value. */
    {
        int64_t v = -1, big = (int64_t)1 << 40;

        CHECK(db_run(db, &err, "INSERT INTO events (time_ms, job_id, node, kind, message)"
                     " VALUES (?, ?, ?, ?, ?)", "ldttt", big, 7, NULL, "test", "x") == 0,
              "db_run inserts with int64, int, NULL and text parameters");
        CHECK(db_int(db, &err, &v, "SELECT time_ms FROM events WHERE kind = ? AND job_id = ?"
                     " AND node IS NULL", "td", "test", 7) == 0 && v == big,
              "db_int reads back the 64-bit value (%lld)", (long long)v);
        v = -1;
        CHECK(db_int(db, &err, &v, "SELECT time_ms FROM events WHERE kind = ?", "t", "none") == 1 &&
                  v == -1,
              "db_int: no row is 1 and leaves *out alone");
        CHECK(db_run(db, &err, "INSERT INTO no_such_table VALUES (?)", "d", 1) < 0 &&
                  strstr(err.msg, "no_such_table"),
              "db_run reports a bad statement: %s", err.msg);
    }
    CHECK(db_checkpoint(db, true) == 0, "checkpoint (truncate)");
    db_destroy(&db);
    CHECK(db == NULL, "db_destroy nulls the pointer");
    db_destroy(&db);
}

static void test_reopen_and_newer(const char *path)
{
    ft_err_t err;
    db_t *db = db_open(path, &err);

    CHECK(db != NULL, "reopen an existing database without migrating again");
    if (!db)
        return;
    db_exec(db, "PRAGMA user_version=999", &err);
    db_destroy(&db);
    db = db_open(path, &err);
    CHECK(db == NULL && strstr(err.msg, "newer"), "a newer schema is refused: '%s'", err.msg);
    db_destroy(&db);
    db = db_open("/nonexistent-dir/x.db", &err);
    CHECK(db == NULL, "an unreachable path fails cleanly: '%s'", err.msg);
}

/* A database left at version 1 is moved forward to the current version. */
static void test_migration_from_v1(void)
{
    char *path = h_tmpdb();
    ft_err_t err = {0};
    db_t *db = db_open(path, &err);
    sqlite3_stmt *st;

    CHECK(db && db_schema_version() >= 2, "schema version is at least 2");
    if (!db)
        return;
    CHECK(db_exec(db,
                  "DROP INDEX ranks_live; DROP INDEX jobs_array;"
                  " ALTER TABLE jobs DROP COLUMN array_index;"
                  " ALTER TABLE jobs DROP COLUMN array_job_id; PRAGMA user_version=1",
                  &err) == 0,
          "turn the file back into a version-1 database%s%s", err.msg[0] ? ": " : "", err.msg);
    db_destroy(&db);
    db = db_open(path, &err);
    CHECK(db != NULL, "reopen migrates it%s%s", db ? "" : ": ", db ? "" : err.msg);
    if (!db)
        return;
    st = db_stmt(db,
                 "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'ranks_live'",
                 &err);
    CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1,
          "migration 1 -> 2 created index ranks_live");
    sqlite3_reset(st);
    st = db_stmt(db, "SELECT count(*) FROM pragma_table_info('jobs') WHERE name IN"
                     " ('array_job_id', 'array_index')", &err);
    CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 2,
          "migration 4 -> 5 added jobs.array_job_id and jobs.array_index");
    sqlite3_reset(st);
    st = db_stmt(db, "PRAGMA user_version", &err);
    CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == db_schema_version(),
          "user_version is %d after the migration", db_schema_version());
    sqlite3_reset(st);
    db_destroy(&db);
    h_rm(path);
    free(path);
}

/* The settings table: file, comments, bounds, unknown keys. */
static void test_config(void)
{
    char path[] = "/tmp/ft-test-config-XXXXXX";
    sched_config_t cfg;
    ft_err_t err;
    int fd = mkstemp(path);
    static const char good[] = "# ft scheduler\n\nheartbeat_ms = 250   # faster\n  liveness=3\n"
                               "listen = ipc:///tmp/x.sock\nlog_level = debug\n";
    static const char bad_int[] = "heartbeat_ms = 5\n";
    static const char no_eq[] = "liveness 3\n";
    static const char unknown[] = "\n\nhartbeat_ms = 3\n";

    CHECK(fd >= 0 && write(fd, good, sizeof(good) - 1) == (ssize_t)(sizeof(good) - 1),
          "write a config file");
    close(fd);
    sched_config_defaults(&cfg);
    CHECK(cfg.heartbeat_ms == 1000 && cfg.liveness == 5 && cfg.gang_start_timeout_s == 60 &&
              strcmp(cfg.db_path, "ft.db") == 0,
          "defaults: heartbeat 1000 ms x 5, gang start 60 s, ft.db");
    CHECK(sched_config_load(&cfg, path, &err) == 0 && cfg.heartbeat_ms == 250 &&
              cfg.liveness == 3 && strcmp(cfg.listen, "ipc:///tmp/x.sock") == 0 &&
              cfg.log_level == FT_LOG_DEBUG,
          "comments, blank lines and spaces around '=' are fine");
    ft_write_file_atomic(path, bad_int, sizeof(bad_int) - 1, &err);
    CHECK(sched_config_load(&cfg, path, &err) < 0 && strstr(err.msg, "line 1") &&
              strstr(err.msg, "heartbeat_ms"),
          "out of bounds: '%s'", err.msg);
    ft_write_file_atomic(path, no_eq, sizeof(no_eq) - 1, &err);
    CHECK(sched_config_load(&cfg, path, &err) < 0 && strstr(err.msg, "expected 'key = value'"),
          "no '=': '%s'", err.msg);
    ft_write_file_atomic(path, unknown, sizeof(unknown) - 1, &err);
    CHECK(sched_config_load(&cfg, path, &err) < 0 && strstr(err.msg, "line 3") &&
              strstr(err.msg, "unknown key 'hartbeat_ms'"),
          "unknown key named with its line: '%s'", err.msg);
    CHECK(sched_config_set(&cfg, "log_level", "loud", &err) < 0, "log_level 'loud' refused: '%s'",
          err.msg);
    CHECK(cfg.db_sync == DB_SYNC_FULL, "db_sync defaults to full");
    CHECK(sched_config_set(&cfg, "db_sync", "normal", &err) == 0 && cfg.db_sync == DB_SYNC_NORMAL,
          "db_sync = normal is taken");
    CHECK(sched_config_set(&cfg, "db_sync", "off", &err) < 0 && strstr(err.msg, "full or normal"),
          "db_sync 'off' refused: '%s'", err.msg);
    unlink(path);
}

static int synchronous_now(db_t *db)
{
    ft_err_t err;
    sqlite3_stmt *st = db_stmt(db, "PRAGMA synchronous", &err);
    int v = -1;

    if (st && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    if (st)
        sqlite3_reset(st);
    return v;
}

/* One transaction: an event row (changed) or an update of none (!changed). */
static bool write_tx(db_t *db, bool changed)
{
    ft_err_t err;

    return db_begin(db, &err) == 0 &&
           db_exec(db,
                   changed ? "INSERT INTO events (time_ms, kind, message) VALUES (1, 't', 'x')"
                           : "UPDATE events SET message = 'y' WHERE id < 0",
                   &err) == 0 &&
           db_commit(db, &err) == 0;
}

/* db_sync full: commits do not sync (synchronous=NORMAL); one that changed
 * state marks the connection unsynced, and db_sync_now syncs the WAL once for
 * all of them. Relaxed writes and writes that change nothing ask for no
 * sync; a batch asks at its end. A failed sync is reported and leaves the
 * mark. db_sync normal never asks. */
static void test_db_sync(void)
{
    char *path = h_tmpdb();
    ft_err_t err;
    db_t *db;
    int w;

    shim_install();
    db = db_open(path, &err);
    CHECK(db != NULL, "open a database for db_sync (over a counting VFS)");
    if (!db)
        goto out;
    CHECK(db_set_sync(db, DB_SYNC_FULL, &err) == 0 && db->sync == DB_SYNC_FULL &&
              synchronous_now(db) == 1 && !db->unsynced,
          "db_sync full: commits do not sync by themselves (NORMAL, 1), nothing left unsynced");
    w = shim_wal_syncs;
    CHECK(write_tx(db, true) && write_tx(db, true) && db->unsynced && shim_wal_syncs == w,
          "two commits that change state: written, marked, not synced");
    CHECK(db_sync_now(db, &err) == 0 && shim_wal_syncs == w + 1 && !db->unsynced,
          "db_sync_now syncs the WAL once for both");
    CHECK(db_sync_now(db, &err) == 0 && shim_wal_syncs == w + 1, "nothing unsynced: no sync");
    db_sync_relax(db);
    CHECK(write_tx(db, true) && !db->unsynced, "a relaxed commit asks for no sync");
    db_sync_restore(db);
    CHECK(write_tx(db, false) && !db->unsynced, "a commit that changed nothing asks for none");
    CHECK(db_batch_begin(db, &err) == 0, "batch begins");
    db_sync_relax(db);
    write_tx(db, true);
    db_sync_restore(db);
    CHECK(db_batch_end(db, &err) == 0 && !db->unsynced, "a batch of relaxed writes asks for none");
    CHECK(db_batch_begin(db, &err) == 0 && write_tx(db, true) && !db->unsynced,
          "inside a batch a state change marks nothing yet");
    CHECK(db_batch_end(db, &err) == 0 && db->unsynced && shim_wal_syncs == w + 1,
          "its COMMIT marks it, and does not sync");
    shim_fail_wal_sync = 1;
    CHECK(db_sync_now(db, &err) < 0 && strstr(err.msg, "sync") && db->unsynced,
          "a failed sync is reported ('%s') and the mark stays", err.msg);
    shim_fail_wal_sync = 0;
    CHECK(db_sync_now(db, &err) == 0 && shim_wal_syncs == w + 2 && !db->unsynced,
          "the next one syncs");
    CHECK(db_set_sync(db, DB_SYNC_NORMAL, &err) == 0 && synchronous_now(db) == 1 &&
              write_tx(db, true) && !db->unsynced && shim_wal_syncs == w + 2,
          "db_sync normal: NORMAL (1), never marked");
    db_destroy(&db);
out:
    shim_remove();
    h_rm(path);
    free(path);
}

/* Group commit: inside a batch, each db_begin..db_commit is a savepoint; a
 * rollback undoes only its own part; db_batch_end makes the rest durable. */
static void test_batch(void)
{
    char *path = h_tmpdb();
    ft_err_t err;
    db_t *db = db_open(path, &err), *again;

    CHECK(db != NULL, "open a database for the batch");
    if (!db)
        goto out;
    CHECK(db_batch_begin(db, &err) == 0 && db->batch, "db_batch_begin");
    CHECK(db_batch_begin(db, &err) < 0, "a batch does not nest: '%s'", err.msg);
    for (int i = 0; i < 3; i++) {
        CHECK(db_begin(db, &err) == 0 &&
                  db_run(db, &err,
                         "INSERT INTO events (time_ms, kind, message) VALUES (?, 'x', 'batch')",
                         "d", i) == 0,
              "transaction %d inside the batch", i);
        if (i == 1)
            db_rollback(db);
        else
            CHECK(db_commit(db, &err) == 0, "transaction %d released", i);
    }
    {
        int64_t n = -1;

        CHECK(db_int(db, &err, &n, "SELECT count(*) FROM events WHERE message = 'batch'", "") ==
                      0 &&
                  n == 2,
              "inside the batch: the rolled-back transaction 1 is gone, 0 and 2 are there");
    }
    CHECK(db_batch_end(db, &err) == 0 && !db->batch && sqlite3_get_autocommit(db->conn),
          "db_batch_end commits");
    again = db_open(path, &err);
    CHECK(again != NULL, "a second connection opens");
    if (again) {
        sqlite3_stmt *st = db_stmt(again, "SELECT group_concat(time_ms, ',') FROM events"
                                          " WHERE message = 'batch'", &err);
        CHECK(st && sqlite3_step(st) == SQLITE_ROW &&
                  strcmp(db_col_text(st, 0), "0,2") == 0,
              "the second connection sees rows 0 and 2 committed, 1 not: '%s'",
              st ? db_col_text(st, 0) : "");
        if (st)
            sqlite3_reset(st);
    }
    db_destroy(&again);
    CHECK(db_batch_end(db, &err) < 0, "ending a batch that is not open fails: '%s'", err.msg);
    db_destroy(&db);
out:
    h_rm(path);
    free(path);
}

static void test_restart_rebuild(void)
{
    char *path = h_tmpdb();
    sched_t *s = h_new(path, 1000000);
    int64_t id;
    view_node_t *n;
    int busy = 0;

    h_hello(s, "n1", 4, "H100", "gpu", 81920, NULL);
    id = h_submit(s, "{\"command\":[\"true\"],\"gpus\":3}", "ann", NULL);
    CHECK(id == 1, "submit job 1");
    sched_cron(s);
    h_collect(s);
    CHECK(strcmp(h_job_col(s, id, "state"), "RUNNING") == 0, "job 1 is RUNNING before the restart");
    sched_destroy(&s);

    s = h_new(path, 1000000);
    n = sched_node_find(s, "n1");
    CHECK(n && n->ndevs == 4 && n->ready && !n->connected,
          "after restart node n1 is known with 4 devices, ready in the database but not connected");
    for (int k = 0; n && k < n->ndevs; k++)
        busy += n->devs[k].job_id == id;
    CHECK(busy == 3, "the view marks the 3 devices of job 1 busy (got %d)", busy);
    /* The worker reconnects and reports its ranks: they are adopted. */
    h_hello(s, "n1", 4, "H100", "gpu", 81920,
            "[{\"job_id\":1,\"attempt\":1,\"rank\":0,\"pid\":11},{\"job_id\":1,\"attempt\":1,"
            "\"rank\":1,\"pid\":12},"
            "{\"job_id\":1,\"attempt\":1,\"rank\":2,\"pid\":13}]");
    CHECK(h_find("w/n1", "hello_reply", 0) != NULL, "hello_reply after the restart");
    CHECK(h_count("w/n1", "stop") == 0, "no stop for adopted ranks");
    CHECK(h_query_int(s, "SELECT count(*) FROM ranks WHERE job_id = 1 AND state = 'running' AND "
                         "pid IS NOT NULL") == 3,
          "the three ranks are running with their pids");
    CHECK(strcmp(h_job_col(s, id, "state"), "RUNNING") == 0, "job 1 is still RUNNING");
    sched_destroy(&s);
    h_rm(path);
    free(path);
}

int main(void)
{
    char *path = h_tmpdb();

    ft_log_init("test_db", FT_LOG_WARN);
    test_fresh(path);
    test_reopen_and_newer(path);
    h_rm(path);
    free(path);
    test_migration_from_v1();
    test_config();
    test_db_sync();
    test_batch();
    test_restart_rebuild();
    h_drop();
    return check_done("test_db");
}
