/*
 * db.h: the scheduler's SQLite database: opening with the durability settings,
 * schema versioning by forward migrations, a cache of prepared statements and
 * write transactions.
 *
 * Every query goes through db_stmt() with bound parameters; statements are
 * prepared once per connection and reset on each use.
 */
#ifndef FT_SCHED_DB_H
#define FT_SCHED_DB_H

#include <sqlite3.h>
#include <stdbool.h>

#include "ft/common.h"

#define DB_STMT_CACHE 128 /* distinct SQL texts the scheduler uses (~80), with room */

/* How state transitions are committed (ftsched's db_sync setting). */
enum {
    DB_SYNC_FULL = 0,   /* WAL synced before anything is sent (db_sync_now): survives power loss */
    DB_SYNC_NORMAL = 1, /* synchronous=NORMAL: survives a crash of ftsched, not of the host */
};

typedef struct {
    const char *sql;    /* the text (usually a literal); compared by content */
    sqlite3_stmt *stmt; /* prepared once, reset on reuse */
} db_cached_t;

typedef struct {
    sqlite3 *conn;                    /* the one connection */
    db_cached_t cache[DB_STMT_CACHE]; /* prepared statements */
    int ncache;                       /* entries used in cache */
    bool in_tx;                       /* inside BEGIN IMMEDIATE .. COMMIT */
    double last_commit_ms;            /* wall time of the last COMMIT, ms */
    int sync;                         /* DB_SYNC_* for state transitions */
    bool batch;                       /* in db_batch_begin..end: begin/commit are savepoints */
    bool relaxed;                     /* between db_sync_relax and db_sync_restore */
    bool batch_sync;                  /* a savepoint of this batch changed state unrelaxed */
    bool unsynced;                    /* db_sync full: a state change committed, not synced */
    int64_t tx_changes0;              /* sqlite3_total_changes64 when the transaction began */
    int nsyncs;                       /* WAL syncs made by db_sync_now (tests, debug) */
} db_t;

/* The schema version this build writes (PRAGMA user_version). */
int db_schema_version(void);

/* Opens (creating if needed) and migrates path to the current schema.
 * NULL with err set on failure. ":memory:" works for tests. */
db_t *db_open(const char *path, ft_err_t *err);
void db_destroy(db_t **db);

/* The cached prepared statement for sql, reset and with bindings cleared.
 * NULL (err set, FT_EINTERNAL) when it cannot be prepared. */
sqlite3_stmt *db_stmt(db_t *db, const char *sql, ft_err_t *err);

/* Runs a statement with no results and no parameters (DDL, pragmas). */
int db_exec(db_t *db, const char *sql, ft_err_t *err);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. Commit failure leaves the transaction
 * rolled back. Rollback is safe to call when no transaction is open. Inside a
 * batch they are SAVEPOINT / RELEASE / ROLLBACK TO: each caller's work stays
 * all or nothing, and the batch's one COMMIT makes it durable. */
int db_begin(db_t *db, ft_err_t *err);
int db_commit(db_t *db, ft_err_t *err);
void db_rollback(db_t *db);

/* Group commit: one BEGIN IMMEDIATE around many db_begin..db_commit pairs,
 * so that they share one WAL sync. db_batch_end commits (-1 with err set and
 * everything since db_batch_begin rolled back when that fails). */
int db_batch_begin(db_t *db, ft_err_t *err);
int db_batch_end(db_t *db, ft_err_t *err);

/* Steps a statement that returns no rows (INSERT/UPDATE/DELETE). */
int db_step_done(db_t *db, sqlite3_stmt *st, ft_err_t *err);

/* Ends a loop of sqlite3_step over rows: resets st, then 0 when rc (the last
 * step's result) is SQLITE_DONE, else -1 with err set from the connection. */
int db_rows_done(db_t *db, sqlite3_stmt *st, int rc, ft_err_t *err);

/* Statements with their parameters in one call. types has one letter per
 * parameter, in order: 'l' int64_t, 'd' int, 'f' double, 't' text (NULL binds
 * NULL). Prepare, bind and (db_run, db_int) step in one place so that callers
 * do not repeat the sequence, nor forget a reset on an error path.
 *   db_query: the bound statement, for a loop over its rows (end it with
 *             db_rows_done); NULL with err set.
 *   db_run:   runs a statement that returns no rows; 0 or -1.
 *   db_int:   the first column of the first row into *out: 0; 1 when there
 *             is no row (*out unchanged); -1 with err set. */
sqlite3_stmt *db_query(db_t *db, ft_err_t *err, const char *sql, const char *types, ...);
int db_run(db_t *db, ft_err_t *err, const char *sql, const char *types, ...);
int db_int(db_t *db, ft_err_t *err, int64_t *out, const char *sql, const char *types, ...);

/* Sets how long a locked database is waited for before SQLITE_BUSY. */
void db_set_busy_timeout(db_t *db, int ms);

/* Sets how state transitions are made durable (DB_SYNC_*). Commits never
 * sync by themselves (synchronous=NORMAL): with DB_SYNC_FULL a commit that
 * changed state sets db->unsynced, and db_sync_now syncs the WAL, which the
 * scheduler calls before anything leaves it (sched_sync). One sync then
 * covers every commit before it, since the WAL is written in order. 0, or
 * -1 with err. */
int db_set_sync(db_t *db, int sync, ft_err_t *err);
/* Around a write that is not a state transition (progress, last_seen): its
 * commit does not set db->unsynced; the next sync covers it anyway. */
void db_sync_relax(db_t *db);
void db_sync_restore(db_t *db);

/* Makes every commit so far durable: syncs the WAL when db->unsynced. 0, or
 * -1 with err: the sync failed, and what was committed may not be on disk
 * (nor, on Linux, will a retry tell: the failed pages may be marked clean). */
int db_sync_now(db_t *db, ft_err_t *err);

/* Checkpoints the WAL (PASSIVE; TRUNCATE when truncate is true). */
int db_checkpoint(db_t *db, bool truncate);

/* Bind helpers: NULL strings bind NULL. */
void db_bind_text(sqlite3_stmt *st, int i, const char *s);
/* Column text, "" for NULL. */
const char *db_col_text(sqlite3_stmt *st, int i);

#endif
