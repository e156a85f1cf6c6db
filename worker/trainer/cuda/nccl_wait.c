/*
 * nccl_wait.c: the polling loop of nccl_wait.h. The communicator is checked
 * on every round, also while work is still running, because a peer that dies
 * mid-collective shows up there (ncclRemoteError) and not on the stream.
 */
#include <stdio.h>

#include "nccl_wait.h"

nccl_wait_result_t nccl_wait(const nccl_wait_ops_t *ops, void *ctx, const char *what,
                             double timeout_s, ft_err_t *err)
{
    char msg[256];
    double t0 = ops->now(ctx);
    for (;;) {
        msg[0] = '\0';
        int cs = ops->comm_state(ctx, msg, sizeof(msg));
        if (cs < 0) {
            ops->abort(ctx);
            ft_err_set(err, FT_EINTERNAL, "nccl: '%s' failed: %s", what,
                       msg[0] ? msg : "unknown error");
            return NCCL_WAIT_FAILED;
        }
        if (cs == 0) {
            int ws = ops->work_state ? ops->work_state(ctx, msg, sizeof(msg)) : 0;
            if (ws < 0) {
                ops->abort(ctx);
                ft_err_set(err, FT_EINTERNAL, "nccl: '%s' failed on the device: %s", what,
                           msg[0] ? msg : "unknown error");
                return NCCL_WAIT_FAILED;
            }
            if (ws == 0)
                return NCCL_WAIT_DONE;
        }
        double waited = ops->now(ctx) - t0;
        if (timeout_s > 0.0 && waited > timeout_s) {
            ops->abort(ctx);
            ft_err_set(err, FT_EUNAVAIL,
                       "nccl: '%s' timed out after %.1f s (a peer is gone "
                       "or stuck); communicator aborted",
                       what, waited);
            return NCCL_WAIT_TIMEOUT;
        }
        ops->pause(ctx);
    }
}
