/*
 * sched_int.h: the scheduler core's internals, shared by its source files
 * and the unit tests (which look at the view and the database directly).
 */
#ifndef FT_SCHED_INT_H
#define FT_SCHED_INT_H

#include <cjson/cJSON.h>

#include "db.h"
#include "place.h"
#include "sched.h"
#include "view.h"

#define SCHED_MAX_NODES 4096 /* nodes the view holds */
#define SCHED_MAX_RELAYS 256 /* log reads in flight */

/* A log read relayed to a worker, waiting for its log_data. */
typedef struct {
    int64_t id;                 /* relay id sent in log_read; 0 = slot free */
    unsigned char client[256];  /* routing id of the asking client */
    size_t client_len;          /* bytes in client */
    char re[65];                /* the client's request id */
    char node[FT_NAME_MAX + 1]; /* worker asked */
    int64_t deadline;           /* monotonic ms */
} relay_t;

/* A rank the database expects on a node whose worker's hello did not list
 * it. Its rank_exited may still be on the way (the worker sends exits that
 * happened while it was cut off right after hello_reply), so it is written
 * off only when a liveness window passes without one. */
typedef struct {
    int64_t job;                /* job id */
    int attempt;                /* attempt */
    int rank;                   /* rank */
    char node[FT_NAME_MAX + 1]; /* node whose hello did not list it */
    int64_t deadline;           /* monotonic ms */
} missing_t;

/* The job columns the state machine needs. */
typedef struct {
    int64_t id;                 /* job id */
    char state[16];             /* PENDING, RUNNING, COMPLETED, FAILED, CANCELLED */
    char kind[8];               /* exec or lora */
    char user[FT_NAME_MAX + 1]; /* submitting user */
    char team[FT_NAME_MAX + 1]; /* submitting team */
    int attempt;                /* current attempt, from 1 */
    int max_retries;            /* requeues allowed */
    bool requeue_on_failure;    /* a non-zero exit also requeues */
    int gpus;                   /* ranks */
    int64_t start_time;         /* unix seconds of the latest start */
    int64_t time_limit_s;       /* 0 = none */
} job_row_t;

struct sched {
    sched_config_t cfg;               /* settings */
    db_t *db;                         /* the truth */
    view_node_t *nodes;               /* the view, sorted by name */
    int nnodes;                       /* entries used in nodes */
    sched_msg_t *out;                 /* outbox */
    int nout, capout;                 /* outbox entries used / allocated */
    int out_mark;                     /* outbox length when the transaction began */
    int batch_mark;                   /* outbox length when the batch began */
    relay_t relays[SCHED_MAX_RELAYS]; /* log reads in flight */
    int64_t next_relay;               /* next relay id */
    bool dirty;                       /* something changed: run a scheduling pass soon */
    int64_t fake_ms;                  /* tests: fixed clock; 0 = real */
    int64_t next_schedule;            /* monotonic ms of the next periodic pass */
    int64_t next_checkpoint;          /* monotonic ms */
    int64_t next_seen_flush;          /* monotonic ms: write nodes.last_seen */
    int64_t unsynced_since;           /* monotonic ms db->unsynced was first seen; -1 none */
    missing_t *missing;               /* ranks not listed in a hello, awaiting their exit */
    int nmissing, capmissing;         /* entries used / allocated */
    int64_t next_slow;                /* monotonic ms: gang timeout and time limit checks */
    struct ledger *ledger;            /* accounting state (ledger.c); NULL until first use */
};

/* Clocks (the fake one in tests). */
int64_t sched_now_ms(const sched_t *s);
int64_t sched_mono_ms(const sched_t *s);

/* Transactions that keep the outbox and the view consistent with the
 * database: abort rolls back, drops messages queued since begin and rebuilds
 * the view from the database. */
int sched_tx_begin(sched_t *s, ft_err_t *err);
int sched_tx_commit(sched_t *s, ft_err_t *err);
void sched_tx_abort(sched_t *s);

/* Rebuilds the view (nodes, devices, open allocations) from the database,
 * keeping the connection state of nodes already known. */
int sched_rebuild(sched_t *s, ft_err_t *err);

/* Queues msg (consumed) to peer. */
void sched_send(sched_t *s, const void *peer, size_t peer_len, cJSON *msg);
/* Queues msg (consumed) to worker node name. */
void sched_send_node(sched_t *s, const char *node, cJSON *msg);

view_node_t *sched_node_find(sched_t *s, const char *name);
view_node_t *sched_node_add(sched_t *s, const char *name);

/* Appends an event row. job_id 0 and node NULL mean none. */
int sched_event(sched_t *s, int64_t job_id, const char *node, const char *kind, ft_err_t *err,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Loads a job: 0 found, 1 not found, -1 error. */
int sched_job_load(sched_t *s, int64_t id, job_row_t *j, ft_err_t *err);

/* Job state machine steps, each inside a caller's transaction. */
/* Places and starts as many pending jobs as fit (its own transactions). */
int sched_schedule(sched_t *s);
/* The current attempt failed: stop live ranks, then requeue or fail. infra:
 * the failure was not the job's own doing. exit_code: recorded on FAILED. */
int sched_attempt_failed(sched_t *s, const job_row_t *j, bool infra, bool nonzero_exit,
                         int exit_code, const char *why, ft_err_t *err);
/* Sends stop for (job, attempt) to every node with a live rank of it. */
int sched_stop_ranks(sched_t *s, int64_t job_id, int attempt, const char *reason, ft_err_t *err);
/* Closes the allocation of one rank at now and frees its device in the view. */
int sched_close_alloc(sched_t *s, int64_t job_id, int attempt, int rank, ft_err_t *err);
/* A rank exited (or was lost): completes or fails the attempt when due. */
int sched_rank_ended(sched_t *s, int64_t job_id, int attempt, int rank, int exit_code, int signal,
                     const char *reason, ft_err_t *err);
/* Writes off one rank (state 'lost', allocation closed) and lets the job
 * react as to an abnormal exit. In a transaction. */
int sched_lose_rank(sched_t *s, int64_t job, int attempt, int rank, const char *why, ft_err_t *err);
/* Notes a rank not listed in its worker's hello (see missing_t). */
void sched_note_missing(sched_t *s, int64_t job, int attempt, int rank, const char *node);
/* Declares a node lost (own transaction). */
int sched_node_lost(sched_t *s, view_node_t *n, const char *why);

/* Request handlers live in handlers.c; the usage report in usage.c. */
/* usage.c, shared with ledger.c: the start of the UTC day (or month) after
 * t_ms, writing t_ms's "YYYY-MM-DD" (or "YYYY-MM") into key. */
int64_t sched_period_end(int64_t t_ms, bool month, char *key, size_t len);
cJSON *sched_usage_report(sched_t *s, const char *group_by, int64_t since, int64_t until,
                          ft_err_t *err);
void sched_relay_expire(sched_t *s);

#endif
