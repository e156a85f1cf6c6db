/*
 * db.c: the scheduler's SQLite connection.
 *
 * Durability: WAL journal with synchronous=NORMAL, so a COMMIT writes the
 * WAL but does not sync it; with db_sync full (the default) a commit that
 * changed state marks the connection unsynced, and db_sync_now syncs the WAL
 * before the scheduler lets anything out (a reply, a start, a stop), so a
 * power loss cannot lose anything acknowledged or acted on, and the syncs of
 * commits that nothing waits on (a rank's exit, say) join the next one. The
 * db_sync setting NORMAL (db_set_sync) trades that for speed: the WAL is then
 * synced only at checkpoints, durable across a crash of ftsched but not
 * across a power loss of the host. A batch (db_batch_begin) turns the
 * transactions inside it into savepoints of one transaction (group commit),
 * each still all or nothing.
 * Writes use BEGIN IMMEDIATE: a deferred transaction that reads and then
 * writes can fail with SQLITE_BUSY in WAL mode regardless of busy_timeout.
 * The schema is versioned by PRAGMA user_version and moved forward one
 * migration at a time, each in its own transaction.
 * Costs: db_stmt is a linear search over at most DB_STMT_CACHE entries,
 * comparing pointers first and text only when no pointer matches.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"

static double mono_ms_frac(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* migrations[i] moves the schema from user_version i to i + 1. Append only:
 * a released migration is never edited. */
static const char *const migrations[] = {
    /* 0 -> 1: the first schema */
    "CREATE TABLE jobs ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL,"
    " kind TEXT NOT NULL CHECK (kind IN ('exec','lora')),"
    " spec TEXT NOT NULL," /* the spec as submitted (JSON) */
    " user TEXT NOT NULL,"
    " team TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('PENDING','RUNNING','COMPLETED','FAILED','CANCELLED')),"
    " reason TEXT NOT NULL DEFAULT '',"
    " priority INTEGER NOT NULL,"
    " attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),"
    " max_retries INTEGER NOT NULL,"
    " requeue_on_failure INTEGER NOT NULL DEFAULT 0,"
    " gpus INTEGER NOT NULL CHECK (gpus >= 1),"
    " gpus_per_node INTEGER NOT NULL DEFAULT 0,"
    " nodes INTEGER NOT NULL DEFAULT 0,"
    " device TEXT NOT NULL DEFAULT 'any',"
    " gpu_model TEXT NOT NULL DEFAULT '',"
    " gpu_mem_mb INTEGER NOT NULL DEFAULT 0,"
    " time_limit_s INTEGER NOT NULL DEFAULT 0,"
    " submit_time INTEGER NOT NULL," /* unix seconds */
    " start_time INTEGER,"           /* unix seconds, latest attempt */
    " end_time INTEGER,"             /* unix seconds */
    " exit_code INTEGER,"
    " request_id TEXT,"
    " UNIQUE (user, request_id));"
    "CREATE INDEX jobs_state ON jobs (state, priority DESC, id);"
    "CREATE TABLE nodes ("
    " name TEXT PRIMARY KEY,"
    " hostname TEXT NOT NULL DEFAULT '',"
    " state TEXT NOT NULL CHECK (state IN ('ready','lost')),"
    " last_seen INTEGER NOT NULL," /* unix seconds */
    " pid INTEGER NOT NULL DEFAULT 0,"
    " version TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE devices ("
    " node TEXT NOT NULL REFERENCES nodes (name) ON DELETE CASCADE,"
    " idx INTEGER NOT NULL,"
    " uuid TEXT NOT NULL,"
    " model TEXT NOT NULL,"
    " memory_mb INTEGER NOT NULL,"
    " kind TEXT NOT NULL CHECK (kind IN ('gpu','emulated','cpu')),"
    " PRIMARY KEY (node, idx));"
    "CREATE TABLE allocations ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " job_id INTEGER NOT NULL REFERENCES jobs (id),"
    " attempt INTEGER NOT NULL,"
    " rank INTEGER NOT NULL,"
    " node TEXT NOT NULL,"
    " device_index INTEGER NOT NULL,"
    " device_uuid TEXT NOT NULL,"
    " device_model TEXT NOT NULL,"
    " start_ms INTEGER NOT NULL," /* unix milliseconds */
    " end_ms INTEGER,"            /* NULL while open */
    " CHECK (end_ms IS NULL OR end_ms >= start_ms),"
    " UNIQUE (job_id, attempt, rank));"
    "CREATE UNIQUE INDEX allocations_open ON allocations (node, device_index) WHERE end_ms IS NULL;"
    "CREATE INDEX allocations_job ON allocations (job_id, attempt);"
    "CREATE INDEX allocations_time ON allocations (start_ms);"
    "CREATE TABLE ranks ("
    " job_id INTEGER NOT NULL REFERENCES jobs (id),"
    " attempt INTEGER NOT NULL,"
    " rank INTEGER NOT NULL,"
    " node TEXT NOT NULL,"
    " device INTEGER NOT NULL,"
    " pid INTEGER,"
    " state TEXT NOT NULL CHECK (state IN ('starting','running','exited','lost')),"
    " exit_code INTEGER,"
    " signal INTEGER,"
    " reason TEXT,"
    " PRIMARY KEY (job_id, attempt, rank));"
    "CREATE INDEX ranks_node ON ranks (node, state);"
    "CREATE TABLE events ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " time_ms INTEGER NOT NULL,"
    " job_id INTEGER,"
    " node TEXT,"
    " kind TEXT NOT NULL,"
    " message TEXT NOT NULL);"
    "CREATE INDEX events_job ON events (job_id, id);"
    "CREATE TABLE progress ("
    " job_id INTEGER NOT NULL REFERENCES jobs (id),"
    " rank INTEGER NOT NULL,"
    " attempt INTEGER NOT NULL,"
    " time_ms INTEGER NOT NULL,"
    " data TEXT NOT NULL," /* the progress fields as JSON */
    " PRIMARY KEY (job_id, rank));",
    /* 1 -> 2: the periodic checks (gang start timeout, orphan sweep, hello
     * reconciliation) look for live ranks; the ranks table keeps every
     * attempt ever run, so index just the live ones. */
    "CREATE INDEX ranks_live ON ranks (state, job_id, attempt) WHERE state IN ('starting', "
    "'running');",
    /* 2 -> 3: what the ledger knows about an interval besides its start and
     * end (scheduler/ledger.c): the last checkpoint while it was open, time
     * it spent open while no ftsched ran, device energy a worker measured;
     * and the teams over their monthly budget. */
    "CREATE TABLE IF NOT EXISTS ledger_intervals ("
    " alloc_id INTEGER PRIMARY KEY REFERENCES allocations (id),"
    " checked_ms INTEGER NOT NULL,"                  /* unix ms of the last checkpoint */
    " unobserved_ms INTEGER NOT NULL DEFAULT 0,"     /* open while no ftsched ran, ms */
    " energy_mj INTEGER CHECK (energy_mj >= 0));"    /* measured; NULL = estimated */
    "CREATE TABLE IF NOT EXISTS budget_state ("
    " team TEXT PRIMARY KEY,"
    " held INTEGER NOT NULL,"    /* 1: new jobs wait */
    " penalty INTEGER NOT NULL," /* subtracted from priority when placing */
    " reason TEXT NOT NULL);",
    /* 3 -> 4: when ftsched first saw each device, so available capacity is
     * counted from then, not from before the device existed. */
    "CREATE TABLE IF NOT EXISTS ledger_devices ("
    " node TEXT NOT NULL,"
    " idx INTEGER NOT NULL,"
    " first_ms INTEGER NOT NULL," /* unix ms of the first checkpoint that saw it */
    " PRIMARY KEY (node, idx));",
    /* 4 -> 5: job arrays (submit "array": N): each element is a job of its
     * own; array_job_id is the first element's id, array_index 0..N-1. Both
     * NULL for a job submitted alone. */
    "ALTER TABLE jobs ADD COLUMN array_job_id INTEGER;"
    "ALTER TABLE jobs ADD COLUMN array_index INTEGER CHECK (array_index >= 0);"
    "CREATE INDEX jobs_array ON jobs (array_job_id, array_index) WHERE array_job_id IS NOT NULL;",
};
#define N_MIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* Connection settings applied on every open, in order. */
static const char *const pragmas[] = {
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA trusted_schema=OFF",
};

int db_schema_version(void)
{
    return N_MIGRATIONS;
}

int db_exec(db_t *db, const char *sql, ft_err_t *err)
{
    char *msg = NULL;

    if (sqlite3_exec(db->conn, sql, NULL, NULL, &msg) != SQLITE_OK) {
        ft_err_set(err, FT_EINTERNAL, "database: %s", msg ? msg : sqlite3_errmsg(db->conn));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int user_version(db_t *db, int *out, ft_err_t *err)
{
    sqlite3_stmt *st = db_stmt(db, "PRAGMA user_version", err);

    if (!st)
        return -1;
    if (sqlite3_step(st) != SQLITE_ROW) {
        ft_err_set(err, FT_EINTERNAL, "database: cannot read user_version: %s",
                   sqlite3_errmsg(db->conn));
        sqlite3_reset(st);
        return -1;
    }
    *out = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return 0;
}

static int migrate(db_t *db, ft_err_t *err)
{
    int v;

    if (user_version(db, &v, err) < 0)
        return -1;
    if (v > N_MIGRATIONS) {
        ft_err_set(
            err, FT_EINTERNAL,
            "database schema version %d is newer than this ftsched (%d); refusing to touch it", v,
            N_MIGRATIONS);
        return -1;
    }
    for (; v < N_MIGRATIONS; v++) {
        char pragma[64];

        if (db_begin(db, err) < 0)
            return -1;
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version=%d", v + 1);
        if (db_exec(db, migrations[v], err) < 0 || db_exec(db, pragma, err) < 0) {
            db_rollback(db);
            return -1;
        }
        if (db_commit(db, err) < 0)
            return -1;
        ft_info("database migrated to schema version %d", v + 1);
    }
    return 0;
}

db_t *db_open(const char *path, ft_err_t *err)
{
    db_t *db = calloc(1, sizeof(*db));
    int on = 1;

    if (!db) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return NULL;
    }
    if (sqlite3_open_v2(path, &db->conn,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        ft_err_set(err, FT_EINTERNAL, "cannot open database '%s': %s", path,
                   db->conn ? sqlite3_errmsg(db->conn) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(db->conn, 1);
    sqlite3_busy_timeout(db->conn, 5000);
    /* Defensive mode: no writes to the schema through pragmas or shadow
     * tables, so no SQL text can corrupt the file. */
    sqlite3_db_config(db->conn, SQLITE_DBCONFIG_DEFENSIVE, 1, &on);
    for (size_t i = 0; i < sizeof(pragmas) / sizeof(pragmas[0]); i++) {
        if (db_exec(db, pragmas[i], err) < 0)
            goto fail;
    }
    if (migrate(db, err) < 0)
        goto fail;
    return db;
fail:
    db_destroy(&db);
    return NULL;
}

void db_destroy(db_t **pdb)
{
    db_t *db = pdb ? *pdb : NULL;

    if (!db)
        return;
    for (int i = 0; i < db->ncache; i++)
        sqlite3_finalize(db->cache[i].stmt);
    if (db->conn)
        sqlite3_close(db->conn);
    free(db);
    *pdb = NULL;
}

sqlite3_stmt *db_stmt(db_t *db, const char *sql, ft_err_t *err)
{
    sqlite3_stmt *st = NULL;

    /* Callers pass literals, so the same text is nearly always the same
     * pointer: one pass comparing pointers, then one comparing text. */
    for (int pass = 0; pass < 2 && !st; pass++)
        for (int i = 0; i < db->ncache; i++)
            if (pass == 0 ? db->cache[i].sql == sql : strcmp(db->cache[i].sql, sql) == 0) {
                st = db->cache[i].stmt;
                break;
            }
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return st;
    }
    if (sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        ft_err_set(err, FT_EINTERNAL, "database: cannot prepare statement: %s",
                   sqlite3_errmsg(db->conn));
        return NULL;
    }
    if (db->ncache < DB_STMT_CACHE) {
        db->cache[db->ncache].sql = sql;
        db->cache[db->ncache].stmt = st;
        db->ncache++;
    } else {
        /* Should not happen: the scheduler has a fixed set of queries. */
        ft_err_set(err, FT_EINTERNAL, "database: statement cache full");
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/* Runs one of the few transaction statements (BEGIN IMMEDIATE, COMMIT,
 * SAVEPOINT, RELEASE) from the statement cache: sqlite3_exec would parse it
 * again on every call, and a drain runs several per job. */
static int tx_step(db_t *db, const char *sql, ft_err_t *err)
{
    sqlite3_stmt *st = db_stmt(db, sql, err);

    if (!st)
        return -1;
    if (sqlite3_step(st) != SQLITE_DONE) {
        ft_err_set(err, FT_EINTERNAL, "database: %s", sqlite3_errmsg(db->conn));
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    return 0;
}

int db_begin(db_t *db, ft_err_t *err)
{
    if (db->in_tx) {
        ft_err_set(err, FT_EINTERNAL, "database: nested transaction");
        return -1;
    }
    if (tx_step(db, db->batch ? "SAVEPOINT tx" : "BEGIN IMMEDIATE", err) < 0)
        return -1;
    db->in_tx = true;
    db->tx_changes0 = sqlite3_total_changes64(db->conn);
    return 0;
}

static void mark_unsynced(db_t *db)
{
    if (db->sync == DB_SYNC_FULL)
        db->unsynced = true;
}

int db_sync_now(db_t *db, ft_err_t *err)
{
    sqlite3_file *wal = NULL;
    int rc;

    if (!db->unsynced)
        return 0;
    rc = sqlite3_file_control(db->conn, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal);
    if (rc == SQLITE_OK && wal && wal->pMethods)
        rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
    if (rc != SQLITE_OK) {
        ft_err_set(err, FT_EINTERNAL, "database: cannot sync the write-ahead log: %s",
                   sqlite3_errstr(rc));
        return -1;
    }
    db->unsynced = false;
    db->nsyncs++;
    return 0;
}

static void reset_all(db_t *db)
{
    /* An active statement can block ROLLBACK of a write transaction in
     * older SQLite: reset every statement first. */
    for (int i = 0; i < db->ncache; i++)
        sqlite3_reset(db->cache[i].stmt);
}

int db_batch_begin(db_t *db, ft_err_t *err)
{
    if (db->in_tx || db->batch) {
        ft_err_set(err, FT_EINTERNAL, "database: batch inside a transaction");
        return -1;
    }
    if (tx_step(db, "BEGIN IMMEDIATE", err) < 0)
        return -1;
    db->batch = true;
    db->batch_sync = false;
    return 0;
}

int db_batch_end(db_t *db, ft_err_t *err)
{
    double t0 = mono_ms_frac();
    int rc;

    if (!db->batch) {
        ft_err_set(err, FT_EINTERNAL, "database: no batch to end");
        return -1;
    }
    if (db->in_tx) /* a caller that neither committed nor rolled back: undo it */
        db_rollback(db);
    db->batch = false;
    rc = tx_step(db, "COMMIT", err);
    db->last_commit_ms = mono_ms_frac() - t0;
    if (rc == 0 && db->batch_sync)
        mark_unsynced(db);
    if (rc < 0) {
        reset_all(db);
        if (!sqlite3_get_autocommit(db->conn))
            sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

int db_commit(db_t *db, ft_err_t *err)
{
    double t0 = mono_ms_frac();
    int rc;

    if (!db->in_tx) {
        ft_err_set(err, FT_EINTERNAL, "database: commit without a transaction");
        return -1;
    }
    rc = tx_step(db, db->batch ? "RELEASE tx" : "COMMIT", err);
    db->last_commit_ms = mono_ms_frac() - t0;
    if (rc < 0) {
        db_rollback(db);
        return -1;
    }
    db->in_tx = false;
    if (!db->relaxed && sqlite3_total_changes64(db->conn) != db->tx_changes0) {
        if (db->batch)
            db->batch_sync = true;
        else
            mark_unsynced(db);
    }
    return 0;
}

void db_rollback(db_t *db)
{
    if (!db->in_tx)
        return;
    reset_all(db);
    if (db->batch)
        sqlite3_exec(db->conn, "ROLLBACK TO tx; RELEASE tx", NULL, NULL, NULL);
    else if (!sqlite3_get_autocommit(db->conn))
        sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
    db->in_tx = false;
}

int db_step_done(db_t *db, sqlite3_stmt *st, ft_err_t *err)
{
    int rc = sqlite3_step(st);

    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        ft_err_set(err, FT_EINTERNAL, "database: %s", sqlite3_errmsg(db->conn));
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    return 0;
}

/* Binds the parameters described by types (see db.h) from ap to st. */
static void bind_va(sqlite3_stmt *st, const char *types, va_list ap)
{
    for (int i = 0; types[i]; i++) {
        switch (types[i]) {
        case 'l':
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
            break;
        case 'd':
            sqlite3_bind_int(st, i + 1, va_arg(ap, int));
            break;
        case 'f':
            sqlite3_bind_double(st, i + 1, va_arg(ap, double));
            break;
        case 't':
            db_bind_text(st, i + 1, va_arg(ap, const char *));
            break;
        default: /* a programmer error: the type strings are literals */
            abort();
        }
    }
}

sqlite3_stmt *db_query(db_t *db, ft_err_t *err, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = db_stmt(db, sql, err);
    va_list ap;

    if (!st)
        return NULL;
    va_start(ap, types);
    bind_va(st, types, ap);
    va_end(ap);
    return st;
}

int db_run(db_t *db, ft_err_t *err, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = db_stmt(db, sql, err);
    va_list ap;

    if (!st)
        return -1;
    va_start(ap, types);
    bind_va(st, types, ap);
    va_end(ap);
    return db_step_done(db, st, err);
}

int db_int(db_t *db, ft_err_t *err, int64_t *out, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = db_stmt(db, sql, err);
    va_list ap;
    int rc;

    if (!st)
        return -1;
    va_start(ap, types);
    bind_va(st, types, ap);
    va_end(ap);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return 0;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 1;
    ft_err_set(err, FT_EINTERNAL, "database: %s", sqlite3_errmsg(db->conn));
    return -1;
}

int db_rows_done(db_t *db, sqlite3_stmt *st, int rc, ft_err_t *err)
{
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        ft_err_set(err, FT_EINTERNAL, "database: %s", sqlite3_errmsg(db->conn));
        return -1;
    }
    return 0;
}

void db_set_busy_timeout(db_t *db, int ms)
{
    sqlite3_busy_timeout(db->conn, ms);
}

int db_set_sync(db_t *db, int sync, ft_err_t *err)
{
    if (db_sync_now(db, err) < 0 || db_exec(db, "PRAGMA synchronous=NORMAL", err) < 0)
        return -1;
    db->sync = sync == DB_SYNC_NORMAL ? DB_SYNC_NORMAL : DB_SYNC_FULL;
    return 0;
}

void db_sync_relax(db_t *db)
{
    db->relaxed = true;
}

void db_sync_restore(db_t *db)
{
    db->relaxed = false;
}

int db_checkpoint(db_t *db, bool truncate)
{
    int log = 0, ckpt = 0;
    int rc = sqlite3_wal_checkpoint_v2(
        db->conn, NULL, truncate ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE, &log,
        &ckpt);

    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        ft_warn("database: checkpoint failed: %s", sqlite3_errmsg(db->conn));
        return -1;
    }
    return 0;
}

void db_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

const char *db_col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);

    return s ? (const char *)s : "";
}
