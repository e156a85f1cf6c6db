/*
 * test_nccl.c: the NCCL collectives on one GPU: a world of one (init through
 * a unique id passed as hex, all-reduce of device floats, of host doubles
 * through the staging buffer, broadcast, barrier), input checks of
 * coll_nccl_new (bad rank, short or non-hex id), and fail-fast: rank 0 of a
 * world of two whose peer never comes must give up at its deadline (2 s)
 * with an error instead of hanging. Skips (77) without a CUDA device.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coll_nccl.h"
#include "cuda_backend.h"
#include "gtest.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(void)
{
    const backend_t *cu;
    int open_rc = gt_open_cuda(&cu);
    if (open_rc)
        return open_rc;
    ft_err_t err;
    ft_err_clear(&err);
    char id[COLL_NCCL_ID_HEX + 1];
    if (coll_nccl_make_id(id, sizeof(id), &err) < 0) {
        printf("FAIL %s\n", err.msg);
        return 1;
    }
    printf("ok   unique id: %.16s... (%zu hex characters)\n", id, strlen(id));

    /* input checks */
    coll_nccl_opts_t bad = {.rank = 2, .world = 2, .device = 0, .id_hex = id, .timeout_s = 5};
    coll_t *c = coll_nccl_new(&bad, &err);
    GT_CHECK(!c && strstr(err.msg, "'rank'"), "rank 2 of 2 accepted (%s)", err.msg);
    printf("%-4s rank outside world: %s\n", !c ? "ok" : "FAIL", err.msg);
    coll_nccl_opts_t shortid = {
        .rank = 0, .world = 1, .device = 0, .id_hex = "abcd", .timeout_s = 5};
    c = coll_nccl_new(&shortid, &err);
    GT_CHECK(!c && strstr(err.msg, "'nccl_id'"), "short id accepted (%s)", err.msg);
    printf("%-4s short id: %s\n", !c ? "ok" : "FAIL", err.msg);
    char badhex[COLL_NCCL_ID_HEX + 1];
    memcpy(badhex, id, sizeof(badhex));
    badhex[17] = 'g';
    coll_nccl_opts_t nonhex = {
        .rank = 0, .world = 1, .device = 0, .id_hex = badhex, .timeout_s = 5};
    c = coll_nccl_new(&nonhex, &err);
    GT_CHECK(!c && strstr(err.msg, "character 17"), "non-hex id accepted (%s)", err.msg);
    printf("%-4s non-hex id: %s\n", !c ? "ok" : "FAIL", err.msg);

    /* a world of one */
    coll_nccl_opts_t one = {.rank = 0, .world = 1, .device = 0, .id_hex = id, .timeout_s = 30};
    c = coll_nccl_new(&one, &err);
    if (!c) {
        printf("FAIL world of one: %s\n", err.msg);
        return 1;
    }
    size_t n = 1000;
    float *h = malloc(n * sizeof(float)), *back = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        h[i] = (float)i * 0.5f;
    float *d = cu->alloc(n * sizeof(float));
    GT_CHECK(d && cu->upload(d, h, n * sizeof(float)) == 0, "upload");
    int rc = c->allreduce_sum_f32(c, d, n);
    GT_CHECK(rc == 0, "all-reduce of device floats: %s", coll_nccl_error(c));
    GT_CHECK(cu->download(back, d, n * sizeof(float)) == 0, "download");
    gt_expect("all-reduce (world 1) of device floats", back, h, n, 0.0, 1.0 - 1e-12);
    double dh[3] = {1.5, -2.25, 1e10};
    rc = c->allreduce_sum_f64(c, dh, 3);
    GT_CHECK(rc == 0 && dh[0] == 1.5 && dh[1] == -2.25 && dh[2] == 1e10,
             "all-reduce of host doubles: rc %d, %g %g %g", rc, dh[0], dh[1], dh[2]);
    printf("%-4s all-reduce (world 1) of host doubles\n", rc == 0 ? "ok" : "FAIL");
    char msg[16] = "hello, ranks";
    rc = c->broadcast(c, msg, sizeof(msg), 0);
    GT_CHECK(rc == 0 && strcmp(msg, "hello, ranks") == 0, "broadcast");
    rc = c->barrier(c);
    GT_CHECK(rc == 0, "barrier");
    printf("%-4s broadcast and barrier\n", rc == 0 ? "ok" : "FAIL");
    coll_destroy(&c);
    cu->free(d);
    free(h);
    free(back);

    /* fail-fast: the peer of rank 0 never joins */
    char id2[COLL_NCCL_ID_HEX + 1];
    if (coll_nccl_make_id(id2, sizeof(id2), &err) < 0) {
        printf("FAIL %s\n", err.msg);
        return 1;
    }
    coll_nccl_opts_t lonely = {.rank = 0, .world = 2, .device = 0, .id_hex = id2, .timeout_s = 2.0};
    double t0 = now_s();
    c = coll_nccl_new(&lonely, &err);
    double dt = now_s() - t0;
    int ok = !c && dt >= 2.0 && dt < 20.0 && strstr(err.msg, "timed out");
    printf("%-4s missing peer: gave up after %.2f s (deadline 2 s): %s\n", ok ? "ok" : "FAIL", dt,
           err.msg);
    GT_CHECK(ok, "missing peer not detected in time");
    if (c)
        coll_destroy(&c);

    if (gt_failures) {
        printf("%d check(s) failed\n", gt_failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
