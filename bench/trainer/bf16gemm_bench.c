/*
 * bf16gemm_bench.c: GFLOP/s of the bf16 GEMM kernels (bf16gemm.h) on the
 * frozen-weight products of the trainer benchmark configuration (M = 1024
 * rows = seq 256 x micro-batch 4; W = q/k/v/o 512x512, gate/up 1376x512,
 * down 512x1376, lm_head 8192x512), forward (nt) and backward (nn), on 1 and
 * 2 threads, beside OpenBLAS cblas_sgemm on the same fp32 shapes.
 *
 * Threads split the output columns (or the rows) at a multiple of 32; the
 * helper thread spins between calls so that a call costs no wake-up. Each
 * figure is the median of the repetitions of one call (at least --reps, and
 * at least 0.2 s of them), after one warm-up call. The
 * diff column is the largest |bf16 - sgemm| relative to max |sgemm| (the
 * bf16 rounding of the inputs, about 1e-2), a sanity check only. The row
 * split (2t-rows) is measured too: each thread then converts only its rows
 * of A, where a column split converts all of A in both threads.
 *
 * Usage: bf16gemm_bench [--kernels amx,avx512bf16,generic] [--reps N]
 */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bf16gemm.h"

void openblas_set_num_threads(int num_threads); /* OpenBLAS extension */

typedef struct {
    int op;               /* 0: nt (forward), 1: nn (backward) */
    const bf16_mat_t *W;  /* packed weight */
    const float *A;       /* (M, K) */
    float *C;             /* (M, N) */
    int M, K, N;          /* shapes */
    int n0, n1;           /* this thread's columns */
} slice_t;

/* The helper thread of a 2-thread measurement (none exists otherwise, so
 * that 1-thread figures do not share a core with its spinning): runs
 * helper_job whenever helper_gen moves, then sets helper_done to it. */
static slice_t helper_job;
static atomic_int helper_gen, helper_done, helper_quit;

static void run_slice(const slice_t *s)
{
    if (s->op == 0)
        bf16_gemm_nt(s->M, s->A, s->K, s->W, 1.0f, 0.0f, s->C, s->N, s->n0, s->n1);
    else
        bf16_gemm_nn(s->M, s->A, s->K, s->W, 1.0f, 0.0f, s->C, s->N, s->n0, s->n1);
}

static void *helper_main(void *start_gen)
{
    int seen = *(const int *)start_gen;
    while (!atomic_load(&helper_quit)) {
        int g = atomic_load(&helper_gen);
        if (g == seen) {
            __builtin_ia32_pause();
            continue;
        }
        seen = g;
        run_slice(&helper_job);
        atomic_store(&helper_done, g);
    }
    return NULL;
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }

/* The load average over the last minute, or -1. */
static double load1(void)
{
    double l = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1.0;
        fclose(f);
    }
    return l;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double median, best; /* wall seconds per call */
    double cpu;          /* median CPU seconds of the calling thread per call */
} timing_t;

/* One product (kind NULL: cblas_sgemm with its own threads) on 1 thread or
 * 2: split 'c' gives each thread a range of output columns, 'r' a range of
 * rows of A and C (every column). */
static timing_t time_call(const char *kind, int threads, char split, int op, const bf16_mat_t *Wb,
                          const float *W, int rows, int cols, const float *A, float *C, int M,
                          int min_reps)
{
    int K = op == 0 ? cols : rows, N = op == 0 ? rows : cols;
    int half_n = (N / 2 + 16) / 32 * 32, half_m = (M / 2 + 16) / 32 * 32;
    slice_t mine = {op, Wb, A, C, M, K, N, 0, N}, other = mine;
    if (threads == 2 && split == 'c') {
        mine.n1 = half_n;
        other.n0 = half_n;
    } else if (threads == 2) {
        mine.M = half_m;
        other.M = M - half_m;
        other.A = A + (size_t)half_m * (size_t)K;
        other.C = C + (size_t)half_m * (size_t)N;
    }
    pthread_t helper;
    int start_gen = atomic_load(&helper_gen);
    if (kind && threads == 2) {
        atomic_store(&helper_quit, 0);
        if (pthread_create(&helper, NULL, helper_main, &start_gen) != 0) {
            fprintf(stderr, "bf16gemm_bench: cannot start the helper thread\n");
            exit(1);
        }
    }
    double t[200], cpu[200];
    int n = 0;
    double start = now_s();
    for (int rep = -1; rep < 200; rep++) {
        double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        double t0 = now_s();
        if (!kind) {
            if (op == 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, W, K, 0.0f,
                            C, N);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, W, N,
                            0.0f, C, N);
        } else if (threads == 2) {
            helper_job = other;
            int g = atomic_load(&helper_gen) + 1;
            atomic_store(&helper_gen, g);
            run_slice(&mine);
            while (atomic_load(&helper_done) != g)
                __builtin_ia32_pause();
        } else {
            run_slice(&mine);
        }
        double t1 = now_s();
        if (rep >= 0) {
            cpu[n] = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
            t[n++] = t1 - t0;
        }
        if (n >= min_reps && t1 - start > 0.2)
            break;
    }
    if (kind && threads == 2) {
        atomic_store(&helper_quit, 1);
        pthread_join(helper, NULL);
    }
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    qsort(cpu, (size_t)n, sizeof(double), cmp_double);
    return (timing_t){t[n / 2], t[0], cpu[n / 2]};
}

int main(int argc, char **argv)
{
    const char *kernel_list = "amx,avx512bf16,generic";
    int min_reps = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--kernels") == 0 && i + 1 < argc) {
            kernel_list = argv[++i];
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 100) {
                fprintf(stderr, "bf16gemm_bench: --reps '%s': want a whole number from 1 to 100\n",
                        argv[i]);
                return 2;
            }
            min_reps = (int)v;
        } else {
            fprintf(stderr, "usage: bf16gemm_bench [--kernels amx,avx512bf16,generic] [--reps N]\n");
            return 2;
        }
    }
    static const char *all[] = {"amx", "avx512bf16", "generic"};
    const char *kinds[3];
    int nk = 0;
    for (int i = 0; i < 3; i++) {
        if (!strstr(kernel_list, all[i]))
            continue;
        if (bf16_gemm_use_kernel(all[i]) != 0) {
            printf("kernel %s: not available on this CPU, skipped\n", all[i]);
            continue;
        }
        kinds[nk++] = all[i];
    }
    static const struct {
        const char *name;
        int rows, cols;
    } shapes[] = {{"q/k/v/o", 512, 512}, {"gate/up", 1376, 512}, {"down", 512, 1376},
                  {"lm_head", 8192, 512}};
    const int M = 1024;
    printf("GFLOP/s, M = %d, median (best) of >= %d calls and >= 0.2 s, wall clock; cpu: 1 thread\n"
           "by its own CPU time (what a core gives when others load the machine); 2t-cols: 2\n"
           "threads on column ranges, 2t-rows: on row ranges; sgemm 2t: OpenBLAS's own threads.\n"
           "load average at start %.2f\n",
           M, min_reps, load1());
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int rows = shapes[s].rows, cols = shapes[s].cols;
        size_t nw = (size_t)rows * (size_t)cols, na = (size_t)M * (size_t)(rows > cols ? rows : cols);
        float *W = malloc(nw * sizeof(float)), *A = malloc(na * sizeof(float));
        float *C = malloc(na * sizeof(float)), *Cref = malloc(na * sizeof(float));
        if (!W || !A || !C || !Cref) {
            fprintf(stderr, "bf16gemm_bench: out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < nw; i++)
            W[i] = (float)((double)((i * 2654435761u) % 65536) / 65536.0 - 0.5) * 0.1f;
        for (size_t i = 0; i < na; i++)
            A[i] = (float)((double)((i * 40503u + 17) % 65536) / 65536.0 - 0.5);
        bf16_mat_t *Wb = bf16_mat_new(W, rows, cols);
        if (!Wb) {
            fprintf(stderr, "bf16gemm_bench: cannot pack %dx%d\n", rows, cols);
            return 1;
        }
        for (int op = 0; op < 2; op++) {
            int K = op == 0 ? cols : rows, N = op == 0 ? rows : cols;
            double gf = 2.0 * M * (double)N * (double)K * 1e-9;
            char what[64];
            snprintf(what, sizeof(what), "%-7s %s %4dx%4dx%4d", shapes[s].name, op ? "nn" : "nt", M,
                     N, K);
            double ref_max = 0.0;
            openblas_set_num_threads(1);
            timing_t s1 = time_call(NULL, 1, 'c', op, NULL, W, rows, cols, A, Cref, M, min_reps);
            openblas_set_num_threads(2);
            timing_t s2 = time_call(NULL, 2, 'c', op, NULL, W, rows, cols, A, Cref, M, min_reps);
            for (size_t i = 0; i < (size_t)M * N; i++)
                ref_max = fmax(ref_max, fabs(Cref[i]));
            printf("%s %-10s 1t %5.0f (%5.0f) cpu %5.0f  2t      %5.0f (%5.0f)\n", what, "sgemm",
                   gf / s1.median, gf / s1.best, gf / s1.cpu, gf / s2.median, gf / s2.best);
            for (int k = 0; k < nk; k++) {
                bf16_gemm_use_kernel(kinds[k]);
                timing_t t1 = time_call(kinds[k], 1, 'c', op, Wb, W, rows, cols, A, C, M, min_reps);
                timing_t tc = time_call(kinds[k], 2, 'c', op, Wb, W, rows, cols, A, C, M, min_reps);
                timing_t tr = time_call(kinds[k], 2, 'r', op, Wb, W, rows, cols, A, C, M, min_reps);
                double worst = 0.0;
                for (size_t i = 0; i < (size_t)M * N; i++)
                    worst = fmax(worst, fabs(C[i] - Cref[i]));
                printf("%s %-10s 1t %5.0f (%5.0f) cpu %5.0f  2t-cols %5.0f (%5.0f)  2t-rows %5.0f "
                       "(%5.0f)  diff %.0e\n",
                       what, kinds[k], gf / t1.median, gf / t1.best, gf / t1.cpu, gf / tc.median,
                       gf / tc.best, gf / tr.median, gf / tr.best, worst / ref_max);
            }
            fflush(stdout);
        }
        bf16_mat_destroy(&Wb);
        free(W);
        free(A);
        free(C);
        free(Cref);
    }
    printf("load average at end %.2f\n", load1());
    return 0;
}
