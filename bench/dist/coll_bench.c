/*
 * coll_bench.c: all-reduce bandwidth of the TCP ring collective between W
 * rank processes on this machine (loopback; rendezvous through a temporary
 * FT_RDV_DIR). For each size it prints the time per all-reduce, the
 * algorithm bandwidth (bytes / time) and the bus bandwidth (algbw x
 * 2 (W-1) / W, what each link carried), the figures NCCL's tests print.
 * usage: coll_bench [--ranks W] [--max-mib M] [--iters N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coll_ring.h"
#include "rdv.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long arg_long(int argc, char **argv, const char *name, long def, long lo, long hi)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            char *end;
            long v = strtol(argv[i + 1], &end, 10);
            if (*end || v < lo || v > hi) {
                fprintf(stderr, "coll_bench: '%s': expected an integer in [%ld, %ld]\n", name, lo,
                        hi);
                exit(2);
            }
            return v;
        }
    }
    return def;
}

static int rank_main(int rank, int world, size_t max_elems, int iters, const char *dir)
{
    ft_err_t err = {0};
    setenv("FT_RDV_DIR", dir, 1);
    rdv_t *r = rdv_new(-1, rank, world, &err);
    coll_t *c = r ? coll_ring_new(r, rank, world, "127.0.0.1", &err) : NULL;
    rdv_destroy(&r);
    if (!c) {
        fprintf(stderr, "rank %d: %s\n", rank, err.msg);
        return 1;
    }
    float *buf = calloc(max_elems, sizeof(float));
    if (!buf)
        return 1;
    if (rank == 0)
        printf("%12s %10s %12s %12s\n", "bytes", "ms/op", "algbw MB/s", "busbw MB/s");
    for (size_t n = 256; n <= max_elems; n *= 4) {
        int reps = n >= (1u << 22) ? (iters + 3) / 4 : iters;
        if (c->allreduce_sum_f32(c, buf, n) < 0 || c->barrier(c) < 0) /* warm-up */
            return 1;
        double t0 = now_s();
        for (int k = 0; k < reps; k++)
            if (c->allreduce_sum_f32(c, buf, n) < 0)
                return 1;
        double dt = (now_s() - t0) / reps;
        /* the slowest rank decides */
        if (c->allreduce_sum_f64(c, &dt, 1) < 0)
            return 1;
        dt /= world;
        double bytes = (double)n * sizeof(float);
        if (rank == 0)
            printf("%12.0f %10.3f %12.1f %12.1f\n", bytes, dt * 1e3, bytes / dt / 1e6,
                   bytes / dt / 1e6 * 2.0 * (world - 1) / world);
        fflush(stdout);
    }
    coll_destroy(&c);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int world = (int)arg_long(argc, argv, "--ranks", 2, 2, 64);
    long max_mib = arg_long(argc, argv, "--max-mib", 64, 1, 4096);
    int iters = (int)arg_long(argc, argv, "--iters", 20, 1, 100000);
    char dir[] = "/tmp/ft-coll-bench-XXXXXX";
    ft_log_init("coll_bench", FT_LOG_WARN);
    if (!mkdtemp(dir)) {
        perror("coll_bench: mkdtemp");
        return 1;
    }
    printf("ring all-reduce, %d ranks on loopback, f32\n", world);
    fflush(stdout);
    pid_t pids[64];
    for (int r = 0; r < world; r++) {
        pids[r] = fork();
        if (pids[r] == 0)
            _exit(rank_main(r, world, (size_t)max_mib << 18, iters, dir));
    }
    int rc = 0;
    for (int r = 0; r < world; r++) {
        int st = 0;
        waitpid(pids[r], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            rc = 1;
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "coll_bench: could not remove %s\n", dir);
    return rc;
}
