/*
 * worker/agent.h: the ftworker reactor: one DEALER connection to ftsched, the
 * node's rank processes, and one zmq_poll loop over the socket, a signalfd
 * (SIGCHLD, SIGTERM, SIGINT) and each rank's event pipe.
 *
 * Invariants: ranks keep running across scheduler outages; a rank_exited is
 * kept in an outbox until the scheduler has shown signs of life on the same
 * connection at least one heartbeat interval after it was sent, and is resent
 * after every re-hello until then (so the scheduler must accept duplicates).
 * Costs: each loop turn polls 2 + (running ranks) descriptors; the timeout is
 * the nearest deadline, at most one second.
 */
#ifndef FT_WORKER_AGENT_H
#define FT_WORKER_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#include "ft/common.h"
#include "devices.h"

typedef struct {
    const char *endpoint;  /* scheduler ROUTER, e.g. tcp://127.0.0.1:7461 */
    const char *name;      /* node name: routing id is "w/NAME" */
    const char *hostname;  /* reported in hello */
    const char *state_dir; /* absolute, exists */
    const char *trainer;   /* ft-train path or name */
    int shutdown_grace_ms; /* SIGTERM to SIGKILL when ftworker itself stops */
    bool spawn_vfork;      /* --spawn vfork: ranks start sharing our memory (rank.h) */
    int64_t exec_delay_ms; /* FT_TEST_EXEC_DELAY_MS, tests only (rank_ctx_t); 0 */
} agent_opts_t;

typedef struct agent agent_t;

/* Takes ownership of devs. NULL with err set on failure (socket, signalfd). */
agent_t *agent_new(const agent_opts_t *opts, wdev_set_t *devs, ft_err_t *err);
/* Runs until SIGTERM/SIGINT and every rank is gone. Returns 0, or -1 on a
 * fatal error (logged). */
int agent_run(agent_t *a);
void agent_destroy(agent_t **a);

#endif
