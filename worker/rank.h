/*
 * worker/rank.h: one rank = one child process in its own process group,
 * started from a `start` message, with its output appended to the job's log
 * file and an event pipe the worker reads progress lines from.
 *
 * Files, under the (absolute) state dir:
 *   jobs/JOBID.rank-R.log    stdout + stderr of every attempt, appended (workers
 *                            before this layout wrote jobs/JOBID/rank-R.log)
 *   jobs/JOBID/rank-R/       per-rank working files (lora only: spec.json)
 *   ranks/device-D.pid       "PID STARTTIME JOBID RANK" while a rank runs on
 *                            device D, empty otherwise: one slot per device,
 *                            rewritten in place, so that a rank creates no
 *                            inode besides its log (and its job's folder)
 * Invariants: a running rank has pid > 0 and pgid == pid; its event fd is the
 * read end of a pipe whose write end only the child (and its descendants)
 * hold, as fd 3; exec failures are learnt through a close-on-exec pipe, so a rank that
 * fails to start is never reported as started.
 * Costs: rank_launch never waits for the child's exec: an exec stuck on a dead
 * network mount does not stall the worker's loop. With ctx.vfork (ftworker's
 * default) the child is cloned by a spawner thread and shares this process's
 * memory until its exec (no page tables copied, no copy-on-write faults after
 * it): that thread, not the caller, waits for the exec, and rank_launch only
 * for the child's pid; while the spawner is stuck in an exec that does not end,
 * launches fork (rank.c, "the spawner thread"). Besides the fork or clone,
 * an exec rank costs the worker about 10 system calls: the open (creation) of
 * its log, a socket pair and a pipe, one write of its slot; rank_forget one
 * ftruncate. No folder per job or rank (lora's excepted): on ext4 a mkdir
 * cost 20 times a file creation (408 vs 22 us here). No fsync: the log and
 * the slot need none.
 */
#ifndef FT_WORKER_RANK_H
#define FT_WORKER_RANK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <cjson/cJSON.h>
#include "ft/common.h"
#include "ft/jobspec.h"
#include "devices.h"
#include "event.h"

/* The fd number the event pipe has in every rank (FT_EVENT_FD, --event-fd):
 * low, so that even shells limited to one-digit fds can write to it. */
#define RANK_EVENT_FD 3

typedef struct {
    int64_t job_id;                 /* scheduler's job id */
    int64_t attempt;                /* attempt number, from 1 */
    int rank;                       /* global rank in [0, world_size) */
    int local_rank;                 /* rank among this job's ranks on this node */
    int world_size;                 /* ranks in the whole gang */
    int device;                     /* device index on this node */
    pid_t pid;                      /* child pid == its process group id */
    int event_fd;                   /* read end of the event pipe, -1 once closed */
    char evbuf[EVENT_LINE_MAX + 1]; /* partial event line, not NUL-terminated */
    size_t evlen;                   /* bytes in evbuf */
    bool ev_skipping;               /* an over-long line is being discarded up to '\n' */
    bool warned_unknown;            /* an unknown event key was already reported */
    int bad_lines;                  /* event lines dropped so far (warnings are capped) */
    int64_t last_total;             /* last total_steps seen, -1 before any */
    bool stop_requested;            /* we sent SIGTERM: its end is "stopped" */
    bool kill_sent;                 /* SIGKILL already sent to the group */
    int64_t kill_at_ms;             /* monotonic ms for SIGKILL; 0 = none scheduled */
    int64_t started_ms;             /* monotonic ms at launch */
    uint64_t energy0_mj;            /* device energy counter at launch, mJ (energy_ok) */
    bool energy_ok;                 /* energy0_mj was read: rank_exited carries energy_mj */
    bool power_ok;                  /* no counter but power readable: energy is integrated */
    double power_mj;                /* integrated power samples so far, mJ (power_ok) */
    uint64_t power_last_mw;         /* last power sample, mW */
    int64_t power_last_ms;          /* monotonic ms of that sample */
    cJSON *pending_progress;        /* newest progress not yet sent (coalesced), or NULL */
    int64_t progress_sent_ms;       /* monotonic ms of the last progress sent */
    int slot_fd;                    /* borrowed device slot (rank_slot_open) holding our
                                       pid until rank_forget, or -1 */
    int report_fd;                  /* exec report pipe until the exec is settled, else -1 */
    int log_fd;                     /* the rank's log, kept until the exec is settled, else -1 */
    bool started;                   /* exec succeeded (rank_started may be sent) */
    bool launch_failed;             /* exec failed: the child's exit is not a rank_exited */
    char launch_why[512];           /* why, reported as launch_failed once the child is
                                       reaped (so the device is free when the scheduler
                                       hears of it) */
    char *argv0;                    /* program, for the launch failure message */
    char *cwd;                      /* working directory, for the same */
    char *rdv_blob;                 /* rendezvous blob not answered yet (resent after a
                                       reconnect, see wrdv.h), or NULL */
} rank_t;

/* What a launch needs besides the rank itself. */
typedef struct {
    const char *state_dir; /* absolute */
    const char *trainer;   /* ft-train path (absolute, or a name found in PATH) */
    const char *node_name; /* for messages */
    int slot_fd;           /* the device's slot file (rank_slot_open), or -1: none kept */
    bool vfork;            /* clone sharing our memory (CLONE_VM | CLONE_VFORK) from the
                              spawner thread instead of forking: about 400 us of CPU less
                              per rank (see ftworker --spawn) */
    int64_t exec_delay_ms; /* test hook (FT_TEST_EXEC_DELAY_MS): children of the spawner
                              sleep this long, in ms, before their exec, as if it hung;
                              0 in production */
} rank_ctx_t;

/* Ranks started with ctx.vfork, by the way they started (rank_spawn_counts). */
typedef struct {
    uint64_t spawned; /* cloned by the spawner thread */
    uint64_t forked;  /* forked instead: the spawner was busy, or failed */
} rank_spawn_counts_t;

typedef struct {
    int64_t job_id, attempt;  /* from `start` */
    int rank, local_rank;     /* from the ranks entry */
    int world_size;           /* from `start` */
    const wdev_t *dev;        /* the device this rank gets */
    const ft_jobspec_t *spec; /* parsed spec */
    const cJSON *spec_json;   /* the spec as received (written for lora) */
    int64_t array_job_id;     /* `start`'s array_job_id; 0 = not an array element */
    int64_t array_index;      /* `start`'s array_index (FT_ARRAY_INDEX) */
} rank_req_t;

/* jobs/JOBID.rank-R.log under state_dir into buf. -1 when it does not fit. */
int rank_log_path(const char *state_dir, int64_t job_id, int rank, char *buf, size_t len);

/* jobs/JOBID/rank-R.log, where workers before the flat layout kept the log:
 * read when the flat one does not exist. -1 when it does not fit. */
int rank_log_path_old(const char *state_dir, int64_t job_id, int rank, char *buf, size_t len);

/* Opens (creating it and ranks/ if needed) the slot file ranks/device-D.pid
 * under state_dir, where the pid of the rank running on device D is kept
 * (see rank_kill_leftovers). Returns the fd (the caller closes it) or -1 with
 * err set. */
int rank_slot_open(const char *state_dir, int device, ft_err_t *err);

/* Starts a rank: fork (or clone, ctx.vfork), and the child execs. 0: forked, *out filled (caller
 * owns it) with report_fd open: whether the exec worked is learnt later,
 * without blocking, from rank_check_exec. -1: not forked (no log, no pipe,
 * spec not writable...), err->msg says why (the caller reports
 * "launch_failed: <msg>"); the reason is also appended to the rank's log when
 * the log could be opened. */
int rank_launch(const rank_ctx_t *ctx, const rank_req_t *req, rank_t **out, ft_err_t *err);

/* How the ranks launched with ctx.vfork in this process started so far. */
void rank_spawn_counts(rank_spawn_counts_t *out);

/* Reads the exec report once report_fd is readable (or the child exited).
 * 1: the exec succeeded (started = true); 0: not known yet; -1: it failed
 * (launch_failed = true, err->msg says why, also appended to the log). */
int rank_check_exec(rank_t *r, ft_err_t *err);

/* Sends sig to the rank's process group. */
void rank_signal(rank_t *r, int sig);

/* Turns a wait status into the rank_exited fields. reason is static. */
void rank_exit_fields(const rank_t *r, int status, int *exit_code, int *sig, const char **reason);

/* Empties the rank's slot (it ended and was reported). */
void rank_forget(rank_t *r);

/* At start-up: kills what ranks of an earlier ftworker on this state dir left
 * running (found through the slots ranks/device-*.pid, and the
 * jobs/JOBID/rank-R.pid files that workers before the slots wrote; a process
 * counts when it is in the rank's process group, started after the rank did
 * and still has the job's FT_JOB_ID in its environment, so a recycled pid is
 * never hit), empties the slots and removes the old pid files. Returns the
 * number of processes killed. */
int rank_kill_leftovers(const char *state_dir);

/* Closes the event fd and frees; sets *r to NULL. */
void rank_destroy(rank_t **r);

#endif
