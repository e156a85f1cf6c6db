/*
 * test_nccl_wait.c: the fail-fast state machine of the NCCL collectives
 * (worker/trainer/cuda/nccl_wait.c) driven by a scripted stub instead of
 * NCCL, so it runs on any machine: a communicator that becomes ready after a
 * few polls, work that finishes later, an asynchronous error reported by the
 * communicator while work is still queued (a peer died), a device error on
 * the stream, and a peer that never answers (the deadline). Checks the
 * result, that abort ran exactly when it should (once, or never), how many
 * polls happened, and the message given to people.
 */
#include <stdio.h>
#include <string.h>

#include "nccl_wait.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* A scripted communicator: ready after comm_ready polls, or failing at poll
 * comm_fail_at; work done after work_done polls of the stream, or failing at
 * work_fail_at; a fake clock advancing `tick` seconds per pause. */
typedef struct {
    int comm_ready, comm_fail_at; /* poll numbers (1-based); 0 = never */
    int work_done, work_fail_at;  /* poll numbers of work_state; 0 = never */
    double tick;                  /* seconds per pause */
    int comm_polls, work_polls;   /* counters */
    int aborts;                   /* abort calls */
    double clock;                 /* fake time */
} stub_t;

static int stub_comm(void *ctx, char *msg, size_t len)
{
    stub_t *s = ctx;
    s->comm_polls++;
    if (s->comm_fail_at && s->comm_polls >= s->comm_fail_at) {
        snprintf(msg, len, "remote process exited or there was a network error");
        return -1;
    }
    return s->comm_ready && s->comm_polls >= s->comm_ready ? 0 : 1;
}

static int stub_work(void *ctx, char *msg, size_t len)
{
    stub_t *s = ctx;
    s->work_polls++;
    if (s->work_fail_at && s->work_polls >= s->work_fail_at) {
        snprintf(msg, len, "an illegal memory access was encountered");
        return -1;
    }
    return s->work_done && s->work_polls >= s->work_done ? 0 : 1;
}

static void stub_abort(void *ctx)
{
    ((stub_t *)ctx)->aborts++;
}

static double stub_now(void *ctx)
{
    return ((stub_t *)ctx)->clock;
}

static void stub_pause(void *ctx)
{
    stub_t *s = ctx;
    s->clock += s->tick;
}

static const nccl_wait_ops_t with_work = {stub_comm, stub_work, stub_abort, stub_now, stub_pause};
static const nccl_wait_ops_t comm_only = {stub_comm, NULL, stub_abort, stub_now, stub_pause};

static void report(const char *name, int ok, const stub_t *s, const ft_err_t *e)
{
    printf("%-4s %-44s comm polls %d, work polls %d, aborts %d, t %.2f s%s%s\n", ok ? "ok" : "FAIL",
           name, s->comm_polls, s->work_polls, s->aborts, s->clock, e->msg[0] ? ": " : "", e->msg);
}

int main(void)
{
    ft_err_t e;

    /* init: ready at the 4th poll, nothing else to wait for */
    stub_t s1 = {.comm_ready = 4, .tick = 0.01};
    ft_err_clear(&e);
    nccl_wait_result_t r = nccl_wait(&comm_only, &s1, "init of rank 0 of 2", 5.0, &e);
    int ok = r == NCCL_WAIT_DONE && s1.comm_polls == 4 && s1.aborts == 0 && e.msg[0] == '\0';
    report("init ready after 4 polls", ok, &s1, &e);
    CHECK(ok, "init: result %d", r);

    /* collective: communicator ready at once, work done at the 3rd stream poll */
    stub_t s2 = {.comm_ready = 1, .work_done = 3, .tick = 0.001};
    ft_err_clear(&e);
    r = nccl_wait(&with_work, &s2, "all-reduce of 10 floats", 5.0, &e);
    ok = r == NCCL_WAIT_DONE && s2.work_polls == 3 && s2.comm_polls == 3 && s2.aborts == 0;
    report("all-reduce done after 3 stream polls", ok, &s2, &e);
    CHECK(ok, "all-reduce: result %d", r);

    /* the stream is not even polled while the communicator is in progress */
    stub_t s3 = {.comm_ready = 5, .work_done = 1, .tick = 0.001};
    ft_err_clear(&e);
    r = nccl_wait(&with_work, &s3, "all-reduce of 10 floats", 5.0, &e);
    ok = r == NCCL_WAIT_DONE && s3.comm_polls == 5 && s3.work_polls == 1 && s3.aborts == 0;
    report("stream polled only once comm is ready", ok, &s3, &e);
    CHECK(ok, "in progress: result %d", r);

    /* a peer dies mid-collective: the communicator reports it while the
     * stream is still busy; abort once, the reason and the op in the message */
    stub_t s4 = {.comm_ready = 1, .comm_fail_at = 7, .work_done = 0, .tick = 0.01};
    ft_err_clear(&e);
    r = nccl_wait(&with_work, &s4, "all-reduce of 1048576 floats", 30.0, &e);
    ok = r == NCCL_WAIT_FAILED && s4.aborts == 1 && s4.comm_polls == 7 &&
         strstr(e.msg, "'all-reduce of 1048576 floats' failed") &&
         strstr(e.msg, "remote process exited");
    report("peer error while work queued", ok, &s4, &e);
    CHECK(ok, "peer error: result %d, message '%s'", r, e.msg);

    /* a device error on the stream */
    stub_t s5 = {.comm_ready = 1, .work_fail_at = 2, .tick = 0.01};
    ft_err_clear(&e);
    r = nccl_wait(&with_work, &s5, "broadcast of 8 bytes from rank 0", 30.0, &e);
    ok = r == NCCL_WAIT_FAILED && s5.aborts == 1 && strstr(e.msg, "on the device") &&
         strstr(e.msg, "illegal memory access");
    report("device error on the stream", ok, &s5, &e);
    CHECK(ok, "device error: result %d, message '%s'", r, e.msg);

    /* a peer that never joins: the deadline, one abort, not a hang; the
     * time waited is within one tick of the deadline */
    stub_t s6 = {.comm_ready = 0, .tick = 0.25};
    ft_err_clear(&e);
    r = nccl_wait(&comm_only, &s6, "init of rank 0 of 2", 3.0, &e);
    ok = r == NCCL_WAIT_TIMEOUT && s6.aborts == 1 && s6.clock > 3.0 && s6.clock <= 3.25 + 1e-9 &&
         strstr(e.msg, "timed out after 3.") && strstr(e.msg, "aborted");
    report("silent peer hits the deadline", ok, &s6, &e);
    CHECK(ok, "deadline: result %d, clock %.2f, message '%s'", r, s6.clock, e.msg);

    /* work that never finishes also hits the deadline */
    stub_t s7 = {.comm_ready = 1, .work_done = 0, .tick = 0.5};
    ft_err_clear(&e);
    r = nccl_wait(&with_work, &s7, "all-reduce of 10 floats", 2.0, &e);
    ok = r == NCCL_WAIT_TIMEOUT && s7.aborts == 1 && s7.clock <= 2.5 + 1e-9;
    report("stuck stream hits the deadline", ok, &s7, &e);
    CHECK(ok, "stuck: result %d", r);

    /* no deadline (<= 0): keeps polling; here the work ends at poll 1000 */
    stub_t s8 = {.comm_ready = 1, .work_done = 1000, .tick = 1.0};
    ft_err_clear(&e);
    r = nccl_wait(&with_work, &s8, "all-reduce of 10 floats", 0.0, &e);
    ok = r == NCCL_WAIT_DONE && s8.work_polls == 1000 && s8.aborts == 0;
    report("no deadline waits as long as it takes", ok, &s8, &e);
    CHECK(ok, "no deadline: result %d", r);

    if (failures) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
