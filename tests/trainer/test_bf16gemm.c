/*
 * test_bf16gemm.c: the bf16 GEMM kernels (bf16gemm.h) against a double
 * precision reference computed from the bf16-rounded inputs, and the
 * rounding helpers against round-to-nearest-even worked out independently.
 *
 * Every kernel the CPU offers is run over awkward shapes (1, 17, 33, 513,
 * K beyond one 512 chunk, N beyond one 1024-column panel), lda/ldc wider than
 * the matrices, sub-ranges of output columns, alpha/beta incl. beta 0 over a
 * C full of NaN. Tolerance: |C - ref| <= 1e-5 * (|alpha| * sum_k |a_k w_k| +
 * |beta c|), the fp32 accumulation error allowed; the worst ratio is printed.
 * Columns outside [n0, n1) and the padding beyond the width must not change.
 * Against an identity W each kernel's own rounding of A must equal
 * ft_bf16_round to the bit; splitting a product by columns or rows must not
 * change a bit. A kernel the CPU lacks prints a skip line.
 *
 * `test_bf16gemm --print-kernel` prints the kernel in use (the selection
 * check runs itself with FT_BF16_KERNEL set).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../worker/trainer/bf16.h"
#include "../../worker/trainer/bf16gemm.h"
#include "testutil.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static float rng_uniform(void) { return (float)((double)rng_u32() / 4294967296.0 * 2.0 - 1.0); }

static float f32_of(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof(x));
    return x;
}

/* Round-to-nearest-even worked out on the value: the two bf16 neighbours of
 * x and the distance to each in double. */
static uint16_t rne_reference(uint32_t u)
{
    uint32_t lo = u & 0xffff0000u;
    double x = (double)f32_of(u);
    double dlo = fabs(x - (double)f32_of(lo));
    if ((lo & 0x7fffffffu) == 0x7f7f0000u) {
        /* above the largest finite bf16: halfway to 2^128 rounds to Inf */
        double next = ldexp(1.0, 128) * (lo & 0x80000000u ? -1.0 : 1.0);
        double dhi = fabs(x - next);
        return (uint16_t)(dlo < dhi || (dlo == dhi && !((lo >> 16) & 1)) ? lo >> 16 : (lo >> 16) + 1);
    }
    uint32_t hi = lo + 0x10000u;
    double dhi = fabs(x - (double)f32_of(hi));
    if (dlo < dhi || (dlo == dhi && !((lo >> 16) & 1)))
        return (uint16_t)(lo >> 16);
    return (uint16_t)(hi >> 16);
}

static void test_rounding(void)
{
    static const struct {
        uint32_t in;
        uint16_t want;
        const char *what;
    } cases[] = {
        {0x3f800000u, 0x3f80, "1.0 exact"},
        {0x3f808000u, 0x3f80, "tie to even (down)"},
        {0x3f818000u, 0x3f82, "tie to even (up)"},
        {0x3f808001u, 0x3f81, "just above a tie"},
        {0x3f807fffu, 0x3f80, "just below a tie"},
        {0xbf808000u, 0xbf80, "negative tie to even"},
        {0x00000000u, 0x0000, "+0"},
        {0x80000000u, 0x8000, "-0"},
        {0x00008000u, 0x0000, "subnormal tie to even"},
        {0x00018000u, 0x0002, "subnormal tie up to even"},
        {0x7f7fffffu, 0x7f80, "FLT_MAX rounds to Inf"},
        {0x7f7f7fffu, 0x7f7f, "largest below the Inf tie"},
        {0x7f800000u, 0x7f80, "+Inf"},
        {0xff800000u, 0xff80, "-Inf"},
        {0x7fc00000u, 0x7fc0, "quiet NaN"},
        {0x7f800001u, 0x7fc0, "NaN with payload only in the low bits"},
        {0xff800001u, 0xffc0, "negative NaN keeps its sign"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint16_t got = ft_bf16_round(f32_of(cases[i].in));
        CHECK(got == cases[i].want, "ft_bf16_round(0x%08x) = 0x%04x, want 0x%04x (%s)",
              (unsigned)cases[i].in, got, cases[i].want, cases[i].what);
    }
    int bad = 0;
    for (int n = 0; n < 1000000; n++) {
        uint32_t u = rng_u32() ^ (rng_u32() << 21);
        if ((u & 0x7f800000u) == 0x7f800000u)
            continue; /* Inf and NaN are the table's */
        if (ft_bf16_round(f32_of(u)) != rne_reference(u))
            bad++;
    }
    CHECK(bad == 0, "1e6 random finite fp32: ft_bf16_round matches nearest-even by distance (%d differ)",
          bad);
    int round_trip_bad = 0, nan_bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float x = ft_bf16_widen((uint16_t)h);
        if (isnan(x))
            nan_bad += !isnan(ft_bf16_widen(ft_bf16_round(x)));
        else
            round_trip_bad += ft_bf16_round(x) != h;
    }
    CHECK(round_trip_bad == 0 && nan_bad == 0,
          "all 65536 bf16: to_f32 then from_f32 is the identity (%d differ), NaN stays NaN (%d not)",
          round_trip_bad, nan_bad);
}

/* One product checked: op 'T' = nt (C(M, rows) = A(M, cols) W^T), 'N' = nn. */
typedef struct {
    int M, rows, cols; /* shapes */
    char op;           /* 'T' or 'N' */
    float alpha, beta; /* scales */
    int n0, n1;        /* output columns; n1 < 0 means the whole width */
    int split;         /* > 0: two calls [n0, split) and [split, n1) */
} gcase_t;

#define SENTINEL 12345.0f

/* Runs one case and returns the worst error ratio, or INFINITY on a
 * changed column outside the range or a non-finite result. */
static double run_case(const gcase_t *g, const bf16_mat_t *mat, const float *W)
{
    int K = g->op == 'T' ? g->cols : g->rows;
    int N = g->op == 'T' ? g->rows : g->cols;
    int n0 = g->n0, n1 = g->n1 < 0 ? N : g->n1;
    int lda = K + 3, ldc = N + 5;
    float *A = malloc(sizeof(float) * (size_t)g->M * (size_t)lda);
    float *C = malloc(sizeof(float) * (size_t)g->M * (size_t)ldc);
    float *C0 = malloc(sizeof(float) * (size_t)g->M * (size_t)ldc);
    for (size_t i = 0; i < (size_t)g->M * (size_t)lda; i++)
        A[i] = rng_uniform();
    for (int m = 0; m < g->M; m++)
        for (int c = 0; c < ldc; c++) {
            int inside = c >= n0 && c < n1;
            C[(size_t)m * ldc + c] = !inside ? SENTINEL : g->beta == 0.0f ? NAN : rng_uniform();
        }
    memcpy(C0, C, sizeof(float) * (size_t)g->M * (size_t)ldc);
    if (g->split > 0) {
        (g->op == 'T' ? bf16_gemm_nt : bf16_gemm_nn)(g->M, A, lda, mat, g->alpha, g->beta, C, ldc,
                                                    n0, g->split);
        (g->op == 'T' ? bf16_gemm_nt : bf16_gemm_nn)(g->M, A, lda, mat, g->alpha, g->beta, C, ldc,
                                                    g->split, n1);
    } else {
        (g->op == 'T' ? bf16_gemm_nt : bf16_gemm_nn)(g->M, A, lda, mat, g->alpha, g->beta, C, ldc,
                                                    n0, n1);
    }
    double worst = 0.0;
    for (int m = 0; m < g->M && worst < INFINITY; m++) {
        for (int c = 0; c < ldc; c++) {
            float got = C[(size_t)m * ldc + c];
            if (c < n0 || c >= n1) {
                if (got != SENTINEL)
                    worst = INFINITY;
                continue;
            }
            double sum = 0.0, mag = 0.0;
            for (int k = 0; k < K; k++) {
                double a = ft_bf16_widen(ft_bf16_round(A[(size_t)m * lda + k]));
                float wf = g->op == 'T' ? W[(size_t)c * g->cols + k] : W[(size_t)k * g->cols + c];
                double w = ft_bf16_widen(ft_bf16_round(wf));
                sum += a * w;
                mag += fabs(a * w);
            }
            double ref = g->alpha * sum, scale = fabs(g->alpha) * mag;
            if (g->beta != 0.0f) {
                ref += g->beta * (double)C0[(size_t)m * ldc + c];
                scale += fabs(g->beta * (double)C0[(size_t)m * ldc + c]);
            }
            double err = fabs((double)got - ref);
            if (!isfinite(got))
                worst = INFINITY;
            else if (err > 0.0)
                worst = fmax(worst, err / (1e-5 * scale + 1e-30));
        }
    }
    free(A);
    free(C);
    free(C0);
    return worst;
}

static void test_kernel_shapes(void)
{
    static const int shapes[][3] = {
        /* M, rows, cols */
        {1, 1, 1},     {17, 33, 513}, {33, 17, 1},   {513, 40, 70}, {16, 16, 32},
        {64, 48, 96},  {5, 100, 33},  {3, 1100, 40}, {40, 37, 1100}, {31, 600, 24},
    };
    static const float scales[][2] = {{1.0f, 0.0f}, {0.5f, -2.0f}, {1.0f, 1.0f}, {-1.5f, 0.0f}};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int M = shapes[s][0], rows = shapes[s][1], cols = shapes[s][2];
        float *W = malloc(sizeof(float) * (size_t)rows * (size_t)cols);
        for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++)
            W[i] = rng_uniform();
        bf16_mat_t *mat = bf16_mat_new(W, rows, cols);
        CHECK(mat && bf16_mat_rows(mat) == rows && bf16_mat_cols(mat) == cols &&
                  bf16_mat_bytes(mat) >= (size_t)rows * cols * 4,
              "%s: packed %dx%d, %zu bytes", bf16_gemm_kernel(), rows, cols, bf16_mat_bytes(mat));
        for (int op = 0; op < 2 && mat; op++) {
            int N = op == 0 ? rows : cols;
            double worst = 0.0;
            int ncase = 0;
            for (size_t sc = 0; sc < sizeof(scales) / sizeof(scales[0]); sc++) {
                /* whole width, an inner range, two calls split inside a block, empty */
                gcase_t variants[] = {
                    {M, rows, cols, op ? 'N' : 'T', scales[sc][0], scales[sc][1], 0, -1, 0},
                    {M, rows, cols, op ? 'N' : 'T', scales[sc][0], scales[sc][1], N > 5 ? 3 : 0,
                     N > 5 ? N - 2 : N, 0},
                    {M, rows, cols, op ? 'N' : 'T', scales[sc][0], scales[sc][1], 0, -1,
                     N > 1 ? N / 2 + (N > 20 ? 1 : 0) : 0},
                    {M, rows, cols, op ? 'N' : 'T', scales[sc][0], scales[sc][1], N / 2, N / 2, 0},
                };
                for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
                    worst = fmax(worst, run_case(&variants[v], mat, W));
                    ncase++;
                }
            }
            CHECK(worst <= 1.0,
                  "%s %s M=%d rows=%d cols=%d: %d alpha/beta/range cases, worst error %.3g of the "
                  "tolerance",
                  bf16_gemm_kernel(), op ? "nn" : "nt", M, rows, cols, ncase, worst);
        }
        bf16_mat_destroy(&mat);
        CHECK(mat == NULL, "bf16_mat_destroy nulls the pointer");
        free(W);
    }
}

/* The kernels' own rounding of A: against an identity W every output is
 * one input rounded to bf16, which must be ft_bf16_round's to the bit
 * (normal values incl. ties; the CPU's conversion flushes subnormals, see
 * bf16gemm.h). A NaN in a row makes that row NaN (NaN * 0 stays NaN). */
static void test_exact_rounding(void)
{
    enum { M = 3, K = 40 };
    static const uint32_t edges[] = {0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu, 0xbf808000u,
                                     0x7f7f7fffu, 0x00800000u, 0x80800000u, 0x00000000u, 0x80000000u};
    float W[K * K], A[M * K], C[M * K];
    for (int i = 0; i < K * K; i++)
        W[i] = i / K == i % K ? 1.0f : 0.0f;
    for (int i = 0; i < M * K; i++) {
        uint32_t u = (uint32_t)i < sizeof(edges) / sizeof(edges[0])
                         ? edges[i]
                         : ((rng_u32() & 0x8000ffffu) | ((64u + rng_u32() % 128u) << 23));
        A[i] = f32_of(u);
    }
    bf16_mat_t *eye = bf16_mat_new(W, K, K);
    for (int op = 0; op < 2; op++) {
        (op ? bf16_gemm_nn : bf16_gemm_nt)(M, A, K, eye, 1.0f, 0.0f, C, K, 0, K);
        int bad = 0;
        for (int i = 0; i < M * K; i++) {
            float want = ft_bf16_widen(ft_bf16_round(A[i]));
            bad += memcmp(&C[i], &want, sizeof(float)) != 0 && !(C[i] == 0.0f && want == 0.0f);
        }
        CHECK(bad == 0, "%s %s: A times the identity is ft_bf16_round(A) to the bit, ties included "
              "(%d of %d differ)", bf16_gemm_kernel(), op ? "nn" : "nt", bad, M * K);
    }
    A[5] = NAN;
    bf16_gemm_nt(M, A, K, eye, 1.0f, 0.0f, C, K, 0, K);
    int nan_row = 0, clean = 0;
    for (int c = 0; c < K; c++) {
        nan_row += isnan(C[c]) != 0;
        clean += !isnan(C[K + c]);
    }
    CHECK(nan_row == K && clean == K, "%s: a NaN in row 0 of A makes all %d outputs of row 0 NaN "
          "(%d are) and leaves row 1 alone (%d clean)", bf16_gemm_kernel(), K, nan_row, clean);
    bf16_mat_destroy(&eye);
}

/* Splitting a product must not change a bit: two threads on disjoint
 * column ranges, ranges that cut a 32-column block, and ranges of rows all
 * give what one call gives (the CPU backend relies on it: results do not
 * depend on its thread count). */
typedef struct {
    const bf16_mat_t *mat;
    const float *A;    /* (M, K) */
    float *C;          /* (M, N) */
    int M, K, N;       /* shapes */
    int n0, n1;        /* columns */
    float beta;        /* alpha is 1 */
    char op;           /* 'T' or 'N' */
} thread_arg_t;

static void *thread_body(void *p)
{
    thread_arg_t *t = p;
    (t->op == 'T' ? bf16_gemm_nt : bf16_gemm_nn)(t->M, t->A, t->K, t->mat, 1.0f, t->beta, t->C, t->N,
                                                t->n0, t->n1);
    return NULL;
}

static void test_splits(void)
{
    int M = 100, rows = 200, cols = 600; /* nt has K = 600: two K chunks */
    float *W = malloc(sizeof(float) * rows * cols);
    for (int i = 0; i < rows * cols; i++)
        W[i] = rng_uniform();
    bf16_mat_t *mat = bf16_mat_new(W, rows, cols);
    for (int op = 0; op < 2; op++) {
        for (int bi = 0; bi < 2; bi++) {
            float beta = bi ? 1.0f : 0.0f;
            int K = op ? rows : cols, N = op ? cols : rows;
            char o = op ? 'N' : 'T';
            float *A = malloc(sizeof(float) * M * K), *C0 = malloc(sizeof(float) * M * N);
            float *one = malloc(sizeof(float) * M * N), *got = malloc(sizeof(float) * M * N);
            for (int i = 0; i < M * K; i++)
                A[i] = rng_uniform();
            for (int i = 0; i < M * N; i++)
                C0[i] = rng_uniform();
            memcpy(one, C0, sizeof(float) * M * N);
            thread_arg_t whole = {mat, A, one, M, K, N, 0, N, beta, o};
            thread_body(&whole);

            memcpy(got, C0, sizeof(float) * M * N);
            pthread_t th[2];
            thread_arg_t halves[2] = {{mat, A, got, M, K, N, 0, 64, beta, o},
                                      {mat, A, got, M, K, N, 64, N, beta, o}};
            for (int t = 0; t < 2; t++)
                pthread_create(&th[t], NULL, thread_body, &halves[t]);
            for (int t = 0; t < 2; t++)
                pthread_join(th[t], NULL);
            CHECK(memcmp(one, got, sizeof(float) * M * N) == 0,
                  "%s %s beta %g: two threads on columns [0, 64) and [64, %d) give the bits of one "
                  "call", bf16_gemm_kernel(), op ? "nn" : "nt", beta, N);

            memcpy(got, C0, sizeof(float) * M * N);
            thread_arg_t odd[2] = {{mat, A, got, M, K, N, 0, 48, beta, o},
                                   {mat, A, got, M, K, N, 48, N, beta, o}};
            thread_body(&odd[0]);
            thread_body(&odd[1]);
            CHECK(memcmp(one, got, sizeof(float) * M * N) == 0,
                  "%s %s beta %g: columns [0, 48) then [48, %d) give the bits of one call",
                  bf16_gemm_kernel(), op ? "nn" : "nt", beta, N);

            memcpy(got, C0, sizeof(float) * M * N);
            thread_arg_t top = {mat, A, got, 37, K, N, 0, N, beta, o};
            thread_arg_t rest = {mat, A + 37 * K, got + 37 * N, M - 37, K, N, 0, N, beta, o};
            thread_body(&top);
            thread_body(&rest);
            CHECK(memcmp(one, got, sizeof(float) * M * N) == 0,
                  "%s %s beta %g: rows [0, 37) then [37, %d) give the bits of one call",
                  bf16_gemm_kernel(), op ? "nn" : "nt", beta, M);
            free(A);
            free(C0);
            free(one);
            free(got);
        }
    }
    bf16_mat_destroy(&mat);
    free(W);
}

/* Runs this program with FT_BF16_KERNEL=env: its exit status is 0 and its
 * stdout + stderr contain want_out, or want_alt when that is not NULL. */
static void check_child(const char *self, const char *env, const char *want_out,
                        const char *want_alt)
{
    char cmd[1200], out[2000] = "";
    snprintf(cmd, sizeof(cmd), "FT_BF16_KERNEL=%s '%s' --print-kernel 2>&1", env, self);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
    out[n] = '\0';
    int rc = p ? pclose(p) : -1;
    int found = strstr(out, want_out) || (want_alt && strstr(out, want_alt));
    CHECK(rc == 0 && found, "FT_BF16_KERNEL=%s: runs and says \"%s\"%s%s%s (got \"%.*s\")", env,
          want_out, want_alt ? " or \"" : "", want_alt ? want_alt : "", want_alt ? "\"" : "",
          (int)strcspn(out, "\n"), out);
}

/* FT_BF16_KERNEL is read once per process: run this program again with it.
 * A kernel the CPU lacks gives a message and a fallback, never a crash
 * (which of the two happens is the child's CPU's call: under valgrind the
 * child runs natively). */
static void test_selection(const char *self)
{
    check_child(self, "generic", "kernel generic", NULL);
    check_child(self, "bogus", "unknown FT_BF16_KERNEL 'bogus'", NULL);
    static const char *names[] = {"avx512bf16", "amx"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char runs[64], lacks[128];
        snprintf(runs, sizeof(runs), "kernel %s", names[i]);
        snprintf(lacks, sizeof(lacks), "FT_BF16_KERNEL '%s' is not supported on this CPU; using",
                 names[i]);
        check_child(self, names[i], runs, lacks);
    }
    CHECK(bf16_gemm_use_kernel("bogus") == -1, "bf16_gemm_use_kernel refuses an unknown name");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--print-kernel") == 0) {
        printf("kernel %s\n", bf16_gemm_kernel());
        return 0;
    }
    printf("default kernel: %s\n", bf16_gemm_kernel());
    test_rounding();
    CHECK(bf16_mat_new(NULL, 1, 1) == NULL, "bf16_mat_new refuses a NULL matrix");
    float one = 1.0f;
    CHECK(bf16_mat_new(&one, 0, 1) == NULL && bf16_mat_new(&one, 1, -1) == NULL,
          "bf16_mat_new refuses rows or cols below 1");
    static const char *names[] = {"generic", "avx512bf16", "amx"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (bf16_gemm_use_kernel(names[i]) != 0) {
            printf("skip: kernel %s is not available on this CPU\n", names[i]);
            continue;
        }
        test_exact_rounding();
        test_kernel_shapes();
        test_splits();
    }
    char self[1024];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[len > 0 ? len : 0] = '\0';
    test_selection(self);
    return test_finish(NULL);
}
