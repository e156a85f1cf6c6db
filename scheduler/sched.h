/*
 * sched.h: the scheduler's core, free of ZeroMQ: inbound frames in, outbound
 * messages out (an outbox the server flushes after each call), periodic work
 * in sched_cron. Tests drive it directly.
 */
#ifndef FT_SCHED_H
#define FT_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "ft/common.h"
#include "ft/jobspec.h"

typedef struct {
    char db_path[FT_PATH_MAX]; /* SQLite file */
    char listen[256];          /* ZeroMQ endpoint to bind */
    int heartbeat_ms;          /* heartbeat interval both ways */
    int liveness;              /* missed heartbeats before a worker is lost */
    int gang_start_timeout_s;  /* a gang not fully started by then is requeued */
    int stop_grace_ms;         /* SIGTERM to SIGKILL delay asked of workers */
    int relay_timeout_ms;      /* log relay expiry */
    int checkpoint_interval_s; /* WAL checkpoint period */
    int schedule_interval_ms;  /* scheduling pass period when nothing changed */
    int busy_timeout_ms;       /* SQLite busy handler wait before SQLITE_BUSY */
    char cost_file[FT_PATH_MAX]; /* cost model (docs/cost-model.md); "" = built-in figures */
    int reserve_after_s;       /* a job pending this long stops backfill behind it; 0 = never */
    ft_log_level_t log_level;  /* least severe level logged */
    char keys_file[FT_PATH_MAX];   /* authorised keys (docs/operations.md); "" = none */
    char server_key[FT_PATH_MAX];  /* the server's CURVE key pair file */
    int insecure;                  /* 1 = no CURVE, by explicit choice only */
    char path_roots[4096];         /* ':'-separated roots for spec paths; "" = unchecked */
    int db_sync;                   /* DB_SYNC_FULL (default) or DB_SYNC_NORMAL, db.h */
} sched_config_t;

void sched_config_defaults(sched_config_t *cfg);
/* Reads "key = value" lines ('#' comments) over cfg. */
int sched_config_load(sched_config_t *cfg, const char *path, ft_err_t *err);
/* Sets one key from text (shared by the file and the command line). */
int sched_config_set(sched_config_t *cfg, const char *key, const char *value, ft_err_t *err);

/* One message waiting to be sent. */
typedef struct {
    unsigned char peer[256]; /* routing id */
    size_t peer_len;         /* bytes in peer */
    char *payload;           /* JSON text, malloc'd */
} sched_msg_t;

typedef struct sched sched_t;

/* Opens the database and rebuilds the view. NULL with err set on failure. */
sched_t *sched_new(const sched_config_t *cfg, ft_err_t *err);
void sched_destroy(sched_t **s);

/* Handles one frame from peer (its routing id). Never fails: bad input gets
 * an error reply in the outbox. */
void sched_handle(sched_t *s, const void *peer, size_t peer_len, const void *frame, size_t len);
/* Periodic work: liveness, heartbeats, scheduling pass, gang-start timeout,
 * time limits, relay expiry, checkpoints. Cheap when nothing is due. */
void sched_cron(sched_t *s);
/* The scheduling pass of sched_cron alone, when something changed or it is
 * due: the server runs it inside a batch, so that the starts it sends share
 * the commit of the messages that freed or queued their devices. */
void sched_schedule_due(sched_t *s);
/* Milliseconds until sched_cron next has work (for the poll timeout). */
int sched_next_timeout_ms(sched_t *s);

/* Group commit: between sched_batch_begin and sched_batch_end every
 * transaction (sched_handle's, a scheduling pass's) is a savepoint of one
 * transaction, committed by sched_batch_end; flush the outbox only after it
 * and sched_sync, as its messages may promise what the commit makes true.
 * begin: 0, or -1 (then each transaction commits on its own). end: when the
 * COMMIT fails, the batch's messages are dropped from the outbox and the view
 * is rebuilt from the database. */
int sched_batch_begin(sched_t *s);
void sched_batch_end(sched_t *s);
/* How long the last COMMIT took, ms; for debug logs. */
double sched_last_commit_ms(const sched_t *s);

/* Durable before sent (db_sync full): syncs the WAL when the outbox holds
 * anything and a commit since the last sync changed state, or when such a
 * commit is SCHED_SYNC_AFTER_MS old with nothing to send. Call it before
 * sending the outbox. 0, or -1 with err: the sync failed, the outbox is
 * cleared (nothing may be promised), and the caller must stop. */
int sched_sync(sched_t *s, ft_err_t *err);
#define SCHED_SYNC_AFTER_MS 50

/* The outbox: messages produced since the last clear, in order. */
int sched_outbox_count(const sched_t *s);
const sched_msg_t *sched_outbox_get(const sched_t *s, int i);
void sched_outbox_clear(sched_t *s);

/* Tests: a fixed clock (wall and monotonic both = ms); 0 = real clocks. */
void sched_set_fake_time(sched_t *s, int64_t ms);

#endif
