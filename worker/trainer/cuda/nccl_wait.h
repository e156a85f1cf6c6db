/*
 * nccl_wait.h: the fail-fast wait behind the NCCL collectives, kept apart
 * from NCCL itself so that its logic is tested on any machine with a stub.
 *
 * NCCL runs with non-blocking communicators: every call returns at once
 * (ncclInProgress) and the caller polls. One wait polls the communicator's
 * state (ncclCommGetAsyncError) and the queued work (cudaStreamQuery) until
 * both are done; on an error reported by either, or when the deadline
 * passes, it calls abort exactly once (ncclCommAbort), so a dead or stuck
 * peer turns into an error on every rank instead of a hang.
 * Cost: one poll per `pause` until done; no allocation.
 */
#ifndef FT_NCCL_WAIT_H
#define FT_NCCL_WAIT_H

#include <stddef.h>

#include "ft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    /* communicator: 0 ready, 1 still in progress, -1 failed (reason in msg) */
    int (*comm_state)(void *ctx, char *msg, size_t len);
    /* queued work: 0 done, 1 running, -1 failed (reason in msg); NULL when
     * there is nothing to wait for but the communicator (init) */
    int (*work_state)(void *ctx, char *msg, size_t len);
    /* tears the communicator down; called at most once per wait */
    void (*abort)(void *ctx);
    /* monotonic seconds */
    double (*now)(void *ctx);
    /* gives the CPU away between polls */
    void (*pause)(void *ctx);
} nccl_wait_ops_t;

typedef enum {
    NCCL_WAIT_DONE = 0,     /* communicator ready and work done */
    NCCL_WAIT_FAILED = -1,  /* an error was reported; aborted */
    NCCL_WAIT_TIMEOUT = -2, /* the deadline passed; aborted */
} nccl_wait_result_t;

/* Polls until done or failed; `what` names the operation in err (e.g.
 * "all-reduce of 1024 floats"). timeout_s <= 0 means no deadline. */
nccl_wait_result_t nccl_wait(const nccl_wait_ops_t *ops, void *ctx, const char *what,
                             double timeout_s, ft_err_t *err);

#ifdef __cplusplus
}
#endif

#endif
