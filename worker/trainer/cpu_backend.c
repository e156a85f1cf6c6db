/*
 * cpu_backend.c: the CPU implementation of backend.h. GEMMs go to OpenBLAS
 * cblas_sgemm (its own threads, set by set_threads); the element-wise ops are
 * plain single-threaded loops, which stay a few percent of a step because
 * every projection is one large GEMM over the B*T rows.
 *
 * Attention runs GEMMs per (batch row, head) over blocks of 64 query rows,
 * each against the keys up to its last row, so only the diagonal blocks
 * compute masked entries; heads run in parallel on the pool with OpenBLAS
 * single-threaded meanwhile.
 *
 * The loops are written to vectorise: reductions keep VL independent partial
 * sums (a fixed order, so results do not depend on the machine), exp is a
 * branch-free Cephes-style polynomial (within 2 ulp of expf on the range
 * used), and the hot functions are compiled for AVX-512F, AVX2 and
 * baseline x86-64 with the best one chosen at load time (GCC target_clones).
 * The build uses ISO C mode, where GCC does not contract a*b+c into FMA, so
 * every clone rounds identically.
 *
 * Two tables share all of this: "cpu" (fp32 base weights) and "cpu-bf16"
 * (at the end of the file: the frozen matrices packed to bf16 for
 * bf16gemm.h, the embedding as bf16 rows; only the ops that read base
 * weights differ).
 */
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "bf16.h"
#include "bf16gemm.h"

/* OpenBLAS extension, declared in its cblas.h; repeated for other builds. */
void openblas_set_num_threads(int num_threads);

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT
#endif

#define VL 16  /* partial sums per reduction */

/* exp(x) for float: 2^n * p(r), r = x - n ln2 in [-ln2/2, ln2/2], p of
 * degree 7 (Cephes expf coefficients). x is clamped to [-87.3, 88.7], so
 * results stay normal floats; callers only feed it values <= 0 or moderate
 * gate activations. */
static inline float fexp(float x)
{
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.7f ? 88.7f : x;
    /* n = round(x / ln2) by the 1.5 * 2^23 trick (|x / ln2| < 2^22 here),
     * which vectorises where floorf may not */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } sc;
    sc.i = ((int32_t)n + 127) << 23;
    return p * sc.f;
}

/* sum of a[i]*b[i] with VL partial sums */
static inline float dot_f(const float *restrict a, const float *restrict b, int n)
{
    float acc[VL] = {0};
    int i = 0;
    for (; i + VL <= n; i += VL)
        for (int k = 0; k < VL; k++)
            acc[k] += a[i + k] * b[i + k];
    float s = 0.0f;
    for (int k = 0; k < VL; k++)
        s += acc[k];
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static inline float max_f(const float *restrict a, int n)
{
    float acc[VL];
    int i = 0;
    float m = a[0];
    for (int k = 0; k < VL; k++)
        acc[k] = a[0];
    for (; i + VL <= n; i += VL)
        for (int k = 0; k < VL; k++)
            acc[k] = a[i + k] > acc[k] ? a[i + k] : acc[k];
    for (int k = 0; k < VL; k++)
        m = acc[k] > m ? acc[k] : m;
    for (; i < n; i++)
        m = a[i] > m ? a[i] : m;
    return m;
}

/* a[i] = exp(a[i] - mx) in place; returns the sum of the results */
static inline float exp_sum_f(float *restrict a, int n, float mx)
{
    float acc[VL] = {0};
    int i = 0;
    for (; i + VL <= n; i += VL)
        for (int k = 0; k < VL; k++) {
            float e = fexp(a[i + k] - mx);
            a[i + k] = e;
            acc[k] += e;
        }
    float s = 0.0f;
    for (int k = 0; k < VL; k++)
        s += acc[k];
    for (; i < n; i++) {
        a[i] = fexp(a[i] - mx);
        s += a[i];
    }
    return s;
}

static void *cpu_alloc(size_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    return calloc(1, bytes);
}

static void cpu_free(void *p)
{
    free(p);
}

/* ---- a small fork-join pool: GEMM slices, rows, attention heads ----
 * n_workers threads plus the caller take contiguous pieces of a range in
 * turn (about four per thread), so a thread the OS delays holds up little.
 * OpenBLAS itself runs single-threaded: large GEMMs are cut into one slice
 * of rows (or columns) per thread here, so OpenBLAS's own worker threads,
 * which spin for a long time after each call, never compete with ours.
 * Results never depend on the split: every item is computed by the same code
 * on its own, and reductions across items are done by the caller in order.
 * Workers spin briefly (about 100 us) for the next job, then sleep on a
 * condition variable; a call costs well under a microsecond when they spin. */
#define POOL_MAX 64
#define POOL_SPIN 2000

typedef void (*range_fn)(void *ctx, int64_t lo, int64_t hi, int tid);

typedef struct {
    pthread_t th[POOL_MAX];   /* workers */
    int n_workers;            /* threads besides the caller */
    pthread_mutex_t mu;       /* for sleeping only */
    pthread_cond_t wake;      /* a new job or stop */
    atomic_uint_fast64_t gen; /* job generation; bumped to publish a job */
    atomic_int pending;       /* workers still running the job */
    atomic_int sleepers;      /* workers blocked on wake */
    atomic_bool stop;         /* workers exit */
    uint_fast64_t start_gen;  /* gen when the workers were created: a job
                                 published before a worker first runs is
                                 still seen as new */
    range_fn fn;              /* the job (published by gen) */
    void *ctx;
    int64_t n;                /* items in the job */
    int64_t n_chunks;         /* pieces the items are cut into */
    atomic_int_fast64_t next; /* next piece to take */
} pool_t;

static pool_t pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};
static _Thread_local bool in_worker_job; /* inside a job: nested calls run inline */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* chunk w of n items split into parts pieces */
static void chunk(int64_t n, int64_t parts, int64_t w, int64_t *lo, int64_t *hi)
{
    *lo = n * w / parts;
    *hi = n * (w + 1) / parts;
}

/* takes pieces of the published job until none is left */
static void pool_work(int tid)
{
    for (;;) {
        int64_t c = atomic_fetch_add(&pool.next, 1);
        if (c >= pool.n_chunks)
            break;
        int64_t lo, hi;
        chunk(pool.n, pool.n_chunks, c, &lo, &hi);
        if (lo < hi)
            pool.fn(pool.ctx, lo, hi, tid);
    }
}

static void *pool_main(void *arg)
{
    int wid = (int)(intptr_t)arg;   /* 1 .. n_workers */
    uint_fast64_t seen = pool.start_gen;
    in_worker_job = true;
    for (;;) {
        uint_fast64_t g;
        int spins = 0;
        while ((g = atomic_load(&pool.gen)) == seen) {
            if (++spins < POOL_SPIN) {
                cpu_relax();
                continue;
            }
            /* Dekker with par_range: sleepers++ then re-check gen here,
             * gen++ then read sleepers there (both sequentially consistent) */
            pthread_mutex_lock(&pool.mu);
            atomic_fetch_add(&pool.sleepers, 1);
            while (atomic_load(&pool.gen) == seen)
                pthread_cond_wait(&pool.wake, &pool.mu);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.mu);
        }
        seen = g;
        if (atomic_load(&pool.stop))
            break;
        pool_work(wid);
        atomic_fetch_sub(&pool.pending, 1);
    }
    return NULL;
}

static void pool_publish(void)
{
    atomic_fetch_add(&pool.gen, 1);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.mu);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.mu);
    }
}

static void pool_resize(int n_workers)
{
    if (n_workers > POOL_MAX)
        n_workers = POOL_MAX;
    if (n_workers == pool.n_workers)
        return;
    if (pool.n_workers > 0) {
        atomic_store(&pool.stop, true);
        pool_publish();
        for (int i = 0; i < pool.n_workers; i++)
            pthread_join(pool.th[i], NULL);
    }
    pool.n_workers = 0;
    atomic_store(&pool.stop, false);
    pool.start_gen = atomic_load(&pool.gen);
    for (int i = 0; i < n_workers; i++) {
        if (pthread_create(&pool.th[i], NULL, pool_main, (void *)(intptr_t)(i + 1)) != 0)
            break;  /* fewer workers: the work still gets done */
        pool.n_workers = i + 1;
    }
}

/* Runs fn over [0, n) on the pool when n >= min_par, else inline. Not
 * reentrant: a job never starts another one (it runs inline instead). */
static void par_range(int64_t n, int64_t min_par, range_fn fn, void *ctx)
{
    if (pool.n_workers == 0 || n < min_par || n < 2 || in_worker_job) {
        fn(ctx, 0, n, 0);
        return;
    }
    int64_t pieces = 4 * (int64_t)(pool.n_workers + 1);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.n_chunks = n < pieces ? n : pieces;
    atomic_store(&pool.next, 0);
    atomic_store(&pool.pending, pool.n_workers);
    pool_publish();
    in_worker_job = true;
    pool_work(0);
    in_worker_job = false;
    /* spin while the others finish; yield once that takes long, so that a
     * worker the OS has descheduled (a busy machine) gets the core back */
    for (int spins = 0; atomic_load(&pool.pending) > 0; spins++) {
        if (spins < POOL_SPIN)
            cpu_relax();
        else
            sched_yield();
    }
}

/* Per-thread scratch that grows on demand (attention backward). */
static float *tls_scratch[POOL_MAX + 1];
static size_t tls_scratch_n[POOL_MAX + 1];

static float *scratch_for(int tid, size_t n)
{
    if (tls_scratch_n[tid] < n) {
        float *p = realloc(tls_scratch[tid], n * sizeof(float));
        if (!p)
            return NULL;
        tls_scratch[tid] = p;
        tls_scratch_n[tid] = n;
    }
    return tls_scratch[tid];
}

/* one single-threaded OpenBLAS call */
static void gemm1(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M == 0 || N == 0)
        return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

typedef struct {
    bool ta, tb, split_m;       /* transposes; slice rows of C (else columns) */
    int M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int parts;                  /* slices */
} gemm_ctx;

static void gemm_range(void *p, int64_t lo, int64_t hi, int tid)
{
    gemm_ctx *g = p;
    (void)tid;
    for (int64_t part = lo; part < hi; part++) {
        int64_t a, b;
        chunk(g->split_m ? g->M : g->N, g->parts, (int)part, &a, &b);
        if (a == b)
            continue;
        if (g->split_m) {
            /* rows [a, b) of C come from rows [a, b) of op(A) */
            const float *A = g->ta ? g->A + a : g->A + (size_t)a * g->lda;
            gemm1(g->ta, g->tb, (int)(b - a), g->N, g->K, g->alpha, A, g->lda, g->B, g->ldb,
                  g->beta, g->C + (size_t)a * g->ldc, g->ldc);
        } else {
            /* columns [a, b) of C come from columns [a, b) of op(B) */
            const float *B = g->tb ? g->B + (size_t)a * g->ldb : g->B + a;
            gemm1(g->ta, g->tb, g->M, (int)(b - a), g->K, g->alpha, g->A, g->lda, B, g->ldb,
                  g->beta, g->C + a, g->ldc);
        }
    }
}

/* Splits GEMMs over 1 MFLOP into one slice per thread along the longer side of C
 * (so the operand packed again by every slice is the smaller one). */
static void cpu_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C,
                     int ldc)
{
    int threads = pool.n_workers + 1;
    double flops = 2.0 * M * (double)N * K;
    int side = M >= N ? M : N;
    if (threads == 1 || flops < 1e6 || side < 2 * threads || in_worker_job) {
        gemm1(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* one slice per thread: each slice packs all of the other operand
     * again, so more slices would cost more packing than they save in
     * balance */
    int parts = threads;
    gemm_ctx g = {trans_a, trans_b, M >= N, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C, parts};
    par_range(parts, 2, gemm_range, &g);
}

static void cpu_embedding_forward(float *out, const int32_t *tokens, const float *emb, int N,
                                  int C)
{
    for (int i = 0; i < N; i++)
        memcpy(out + (size_t)i * C, emb + (size_t)tokens[i] * C, sizeof(float) * C);
}

static void cpu_embedding_backward(float *demb, const int32_t *tokens, const float *dout,
                                   int N, int C)
{
    for (int i = 0; i < N; i++) {
        float *d = demb + (size_t)tokens[i] * C;
        const float *g = dout + (size_t)i * C;
        for (int c = 0; c < C; c++)
            d[c] += g[c];
    }
}

typedef struct {
    float *out, *rstd, *dx;            /* outputs (per op) */
    const float *x, *w, *dout, *rs;    /* inputs (per op) */
    int C;                             /* row width */
    float eps;
} norm_ctx;

HOT static void rmsnorm_fwd_rows(float *out, float *rstd, const float *x, const float *w,
                                 int64_t lo, int64_t hi, int C, float eps)
{
    for (int64_t i = lo; i < hi; i++) {
        const float *restrict xi = x + (size_t)i * C;
        float *restrict oi = out + (size_t)i * C;
        float r = 1.0f / sqrtf(dot_f(xi, xi, C) / (float)C + eps);
        rstd[i] = r;
        for (int c = 0; c < C; c++)
            oi[c] = w[c] * (xi[c] * r);
    }
}

/* y = w * x * r with r = (mean(x^2) + eps)^-1/2:
 * dx = r * (w*dy) - x * r^3 / C * sum(w*dy*x). */
HOT static void rmsnorm_bwd_rows(float *dx, const float *dout, const float *x,
                                 const float *w, const float *rstd, int64_t lo, int64_t hi,
                                 int C)
{
    for (int64_t i = lo; i < hi; i++) {
        const float *restrict xi = x + (size_t)i * C;
        const float *restrict gi = dout + (size_t)i * C;
        float *restrict di = dx + (size_t)i * C;
        float r = rstd[i];
        float acc[VL] = {0};
        int c = 0;
        for (; c + VL <= C; c += VL)
            for (int k = 0; k < VL; k++)
                acc[k] += w[c + k] * gi[c + k] * xi[c + k];
        float dot = 0.0f;
        for (int k = 0; k < VL; k++)
            dot += acc[k];
        for (; c < C; c++)
            dot += w[c] * gi[c] * xi[c];
        float kk = dot * r * r * r / (float)C;
        for (c = 0; c < C; c++)
            di[c] += r * w[c] * gi[c] - kk * xi[c];
    }
}

/* rows of work worth a thread hand-off: about 64K floats */
static int64_t rows_min_par(int C)
{
    return C > 0 ? 65536 / C + 1 : 1;
}

static void rmsnorm_fwd_range(void *p, int64_t lo, int64_t hi, int tid)
{
    norm_ctx *c = p;
    rmsnorm_fwd_rows(c->out, c->rstd, c->x, c->w, lo, hi, c->C, c->eps);
    (void)tid;
}

static void rmsnorm_bwd_range(void *p, int64_t lo, int64_t hi, int tid)
{
    norm_ctx *c = p;
    rmsnorm_bwd_rows(c->dx, c->dout, c->x, c->w, c->rs, lo, hi, c->C);
    (void)tid;
}

static void cpu_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N,
                                int C, float eps)
{
    norm_ctx c = {.out = out, .rstd = rstd, .x = x, .w = w, .C = C, .eps = eps};
    par_range(N, rows_min_par(C), rmsnorm_fwd_range, &c);
}

static void cpu_rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w,
                                 const float *rstd, int N, int C)
{
    norm_ctx c = {.dx = dx, .dout = dout, .x = x, .w = w, .rs = rstd, .C = C};
    par_range(N, rows_min_par(C), rmsnorm_bwd_range, &c);
}

/* rotate_half: for i < hd/2, (x_i, x_{i+hd/2}) -> (x_i cos - x_{i+h} sin,
 * x_{i+h} cos + x_i sin). sign = -1 applies the inverse (the transpose). */
HOT static void rope_rows(float *x, const float *cos_t, const float *sin_t, int64_t lo,
                          int64_t hi, int T, int nh, int hd, float sign)
{
    int half = hd / 2;
    for (int64_t bt = lo; bt < hi; bt++) {
        int64_t t = bt % T;
        const float *restrict ct = cos_t + (size_t)t * half;
        const float *restrict st = sin_t + (size_t)t * half;
        float *row = x + (size_t)bt * (size_t)nh * hd;
        for (int h = 0; h < nh; h++) {
            float *restrict x1 = row + (size_t)h * hd;   /* first half */
            float *restrict x2 = x1 + half;              /* second half */
            for (int i = 0; i < half; i++) {
                float a = x1[i], c = x2[i];
                float sn = sign * st[i];
                x1[i] = a * ct[i] - c * sn;
                x2[i] = c * ct[i] + a * sn;
            }
        }
    }
}

typedef struct {
    float *x;                        /* (B*T, nh*hd) in place */
    const float *cos_t, *sin_t;      /* (T, hd/2) */
    int T, nh, hd;
    float sign;                      /* +1 forward, -1 the transpose */
} rope_ctx;

static void rope_range(void *p, int64_t lo, int64_t hi, int tid)
{
    rope_ctx *c = p;
    rope_rows(c->x, c->cos_t, c->sin_t, lo, hi, c->T, c->nh, c->hd, c->sign);
    (void)tid;
}

static void rope_apply(float *x, const float *cos_t, const float *sin_t, int B, int T, int nh,
                       int hd, float sign)
{
    rope_ctx c = {x, cos_t, sin_t, T, nh, hd, sign};
    par_range((int64_t)B * T, rows_min_par(nh * hd), rope_range, &c);
}

static void cpu_rope_forward(float *x, const float *cos_t, const float *sin_t, int B, int T,
                             int nh, int hd)
{
    rope_apply(x, cos_t, sin_t, B, T, nh, hd, 1.0f);
}

static void cpu_rope_backward(float *dx, const float *cos_t, const float *sin_t, int B, int T,
                              int nh, int hd)
{
    rope_apply(dx, cos_t, sin_t, B, T, nh, hd, -1.0f);
}

/* Query rows per block: block [i0, i1) only meets keys [0, i1), so the GEMMs
 * skip the masked upper blocks (5/8 of the full square at T = 4 blocks,
 * tending to 1/2). */
#define ATT_BLOCK BACKEND_ATT_BLOCK

typedef struct {
    float *y, *att;             /* outputs */
    const float *q, *k, *v;     /* inputs */
    const attn_shape_t *s;
} att_fwd_ctx;

/* rows [i0, i1) of P (T, T): softmax over j <= i, zero above the diagonal */
HOT static void softmax_causal_rows(float *P, int i0, int i1, int T)
{
    for (int i = i0; i < i1; i++) {
        float *restrict row = P + (size_t)i * T;
        float mx = max_f(row, i + 1);
        float inv = 1.0f / exp_sum_f(row, i + 1, mx);
        for (int j = 0; j <= i; j++)
            row[j] *= inv;
        for (int j = i + 1; j < T; j++)
            row[j] = 0.0f;
    }
}

/* items are (b, h) pairs */
static void att_fwd_range(void *p, int64_t lo, int64_t hi, int tid)
{
    att_fwd_ctx *c = p;
    const attn_shape_t *s = c->s;
    int T = s->T, hd = s->hd, nh = s->n_heads, group = s->n_heads / s->n_kv;
    int ldq = nh * hd, ldk = s->n_kv * hd;
    float scale = 1.0f / sqrtf((float)hd);
    for (int64_t it = lo; it < hi; it++) {
        int b = (int)(it / nh), h = (int)(it % nh), kvh = h / group;
        const float *qb = c->q + (size_t)b * T * ldq + (size_t)h * hd;
        const float *kb = c->k + (size_t)b * T * ldk + (size_t)kvh * hd;
        const float *vb = c->v + (size_t)b * T * ldk + (size_t)kvh * hd;
        float *yb = c->y + (size_t)b * T * ldq + (size_t)h * hd;
        float *P = c->att + ((size_t)b * nh + h) * (size_t)T * T;
        for (int i0 = 0; i0 < T; i0 += ATT_BLOCK) {
            int i1 = i0 + ATT_BLOCK < T ? i0 + ATT_BLOCK : T, bq = i1 - i0;
            float *Pb = P + (size_t)i0 * T;
            /* S (bq, i1) = scale * Q[i0:i1] (bq, hd) K[0:i1]^T */
            gemm1(false, true, bq, i1, hd, scale, qb + (size_t)i0 * ldq, ldq, kb, ldk, 0.0f,
                     Pb, T);
            softmax_causal_rows(P, i0, i1, T);
            /* Y[i0:i1] (bq, hd) = P[i0:i1, 0:i1] V[0:i1] */
            gemm1(false, false, bq, hd, i1, 1.0f, Pb, T, vb, ldk, 0.0f,
                     yb + (size_t)i0 * ldq, ldq);
        }
    }
    (void)tid;
}

static void cpu_attention_forward(float *y, float *att, const float *q, const float *k,
                                  const float *v, const attn_shape_t *s)
{
    att_fwd_ctx c = {y, att, q, k, v, s};
    par_range((int64_t)s->B * s->n_heads, 2, att_fwd_range, &c);
}

typedef struct {
    float *dq, *dk, *dv;                            /* outputs */
    const float *dy, *att, *q, *k, *v;              /* inputs */
    float *scratch0;                                /* (T, T) for thread 0 */
    const attn_shape_t *s;
} att_bwd_ctx;

/* rows [i0, i1) of dS = P * (dP - rowsum(P * dP)) * scale in place of dP
 * (row stride T, only j < i1 meaningful), zero above the diagonal */
HOT static void softmax_causal_backward_rows(float *dP, const float *P, int i0, int i1, int T,
                                             float scale)
{
    for (int i = i0; i < i1; i++) {
        const float *restrict pr = P + (size_t)i * T;
        float *restrict dr = dP + (size_t)(i - i0) * T;
        float dot = dot_f(pr, dr, i + 1);
        for (int j = 0; j <= i; j++)
            dr[j] = pr[j] * (dr[j] - dot) * scale;
        for (int j = i + 1; j < i1; j++)
            dr[j] = 0.0f;
    }
}

/* items are (b, kv head) pairs, so that the dK, dV sums over the query heads
 * of a group stay in one thread and in a fixed order */
static void att_bwd_range(void *p, int64_t lo, int64_t hi, int tid)
{
    att_bwd_ctx *c = p;
    const attn_shape_t *s = c->s;
    int T = s->T, hd = s->hd, nh = s->n_heads, nkv = s->n_kv, group = nh / nkv;
    int ldq = nh * hd, ldk = nkv * hd;
    float scale = 1.0f / sqrtf((float)hd);
    float *dP = tid == 0 ? c->scratch0 : tls_scratch[tid];
    for (int64_t it = lo; it < hi; it++) {
        int b = (int)(it / nkv), kvh = (int)(it % nkv);
        size_t koff = (size_t)b * T * ldk + (size_t)kvh * hd;
        for (int t = 0; t < T; t++) {
            memset(c->dk + koff + (size_t)t * ldk, 0, sizeof(float) * hd);
            memset(c->dv + koff + (size_t)t * ldk, 0, sizeof(float) * hd);
        }
        for (int h = kvh * group; h < (kvh + 1) * group; h++) {
            size_t qoff = (size_t)b * T * ldq + (size_t)h * hd;
            const float *P = c->att + ((size_t)b * nh + h) * (size_t)T * T;
            for (int i0 = 0; i0 < T; i0 += ATT_BLOCK) {
                int i1 = i0 + ATT_BLOCK < T ? i0 + ATT_BLOCK : T, bq = i1 - i0;
                const float *Pb = P + (size_t)i0 * T;
                const float *dyb = c->dy + qoff + (size_t)i0 * ldq;
                /* dP (bq, i1) = dY[i0:i1] V[0:i1]^T */
                gemm1(false, true, bq, i1, hd, 1.0f, dyb, ldq, c->v + koff, ldk, 0.0f, dP, T);
                /* dV[0:i1] (i1, hd) += P[i0:i1, 0:i1]^T dY[i0:i1] */
                gemm1(true, false, i1, hd, bq, 1.0f, Pb, T, dyb, ldq, 1.0f, c->dv + koff, ldk);
                softmax_causal_backward_rows(dP, P, i0, i1, T, scale);
                /* dQ[i0:i1] = dS K[0:i1] ; dK[0:i1] += dS^T Q[i0:i1] */
                gemm1(false, false, bq, hd, i1, 1.0f, dP, T, c->k + koff, ldk, 0.0f,
                         c->dq + qoff + (size_t)i0 * ldq, ldq);
                gemm1(true, false, i1, hd, bq, 1.0f, dP, T, c->q + qoff + (size_t)i0 * ldq,
                         ldq, 1.0f, c->dk + koff, ldk);
            }
        }
    }
}

static void cpu_attention_backward(float *dq, float *dk, float *dv, const float *dy,
                                   const float *att, const float *q, const float *k,
                                   const float *v, float *scratch, const attn_shape_t *s)
{
    att_bwd_ctx c = {dq, dk, dv, dy, att, q, k, v, scratch, s};
    int64_t items = (int64_t)s->B * s->n_kv;
    bool ok = true;
    for (int t = 1; t <= pool.n_workers; t++)
        ok = ok && scratch_for(t, (size_t)s->T * s->T) != NULL;
    if (ok)
        par_range(items, 2, att_bwd_range, &c);
    else
        att_bwd_range(&c, 0, items, 0);  /* out of memory for scratch: one thread */
}

typedef struct {
    float *h, *dg, *du;              /* outputs (per op) */
    const float *g, *u, *dh;         /* inputs (per op) */
} swiglu_ctx;

HOT static void swiglu_fwd_range(void *p, int64_t lo, int64_t hi, int tid)
{
    swiglu_ctx *c = p;
    float *restrict ho = c->h;
    const float *restrict gi = c->g, *restrict ui = c->u;
    (void)tid;
    for (int64_t i = lo; i < hi; i++) {
        float x = gi[i];
        ho[i] = x / (1.0f + fexp(-x)) * ui[i];
    }
}

HOT static void swiglu_bwd_range(void *p, int64_t lo, int64_t hi, int tid)
{
    swiglu_ctx *c = p;
    float *restrict dgo = c->dg, *restrict duo = c->du;
    const float *restrict dhi = c->dh, *restrict gi = c->g, *restrict ui = c->u;
    (void)tid;
    for (int64_t i = lo; i < hi; i++) {
        float x = gi[i];
        float sig = 1.0f / (1.0f + fexp(-x));
        float silu = x * sig;
        duo[i] = dhi[i] * silu;
        dgo[i] = dhi[i] * ui[i] * sig * (1.0f + x * (1.0f - sig));
    }
}

static void cpu_swiglu_forward(float *h, const float *g, const float *u, int64_t n)
{
    swiglu_ctx c = {.h = h, .g = g, .u = u};
    par_range(n, 65536, swiglu_fwd_range, &c);
}

static void cpu_swiglu_backward(float *dg, float *du, const float *dh, const float *g,
                                const float *u, int64_t n)
{
    swiglu_ctx c = {.dg = dg, .du = du, .dh = dh, .g = g, .u = u};
    par_range(n, 65536, swiglu_bwd_range, &c);
}

/* a[i] = exp(a[i] - mx) in place; returns their sum accumulated in double */
HOT static double exp_sum_d(float *restrict a, int n, float mx)
{
    double acc[VL] = {0};
    int i = 0;
    for (; i + VL <= n; i += VL)
        for (int k = 0; k < VL; k++) {
            float e = fexp(a[i + k] - mx);
            a[i + k] = e;
            acc[k] += (double)e;
        }
    double s = 0.0;
    for (int k = 0; k < VL; k++)
        s += acc[k];
    for (; i < n; i++) {
        a[i] = fexp(a[i] - mx);
        s += (double)a[i];
    }
    return s;
}

HOT static void cpu_scale(float *x, int64_t n, float a)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= a;
}

/* The two lm_head products of the cross-entropy, one pair per weight
 * format (fp32 matrices here, bf16 ones in the cpu-bf16 backend below). */
typedef struct {
    /* logits (n, V) = x (n, C) W^T */
    void (*logits)(int n, int V, int C, const float *x, const float *W, float *logits);
    /* dx (n, C) = g (n, V) W */
    void (*dx)(int n, int V, int C, const float *g, const float *W, float *dx);
    /* true: the target term goes into the row before the dx product
     * (g = dscale * (softmax - onehot)), for a W whose rows cannot be read;
     * false: g holds the exps, scale and target row come after on (n, C) */
    bool fold_target;
} xent_w_t;

typedef struct {
    float *logits;              /* (n, V) in: logits; out: exp(logit - max) (0 rows ignored),
                                   or the row's gradient when fold */
    const int32_t *targets;     /* (n) */
    double *row_loss;           /* (n) out: -log p(target), 0 for ignored rows */
    float *row_k;               /* (n) out: dscale / sum of the row's exps, 0 when ignored */
    int V;
    float dscale;
    bool grad;                  /* leave the exps (or the gradient) for the dx GEMM */
    bool fold;                  /* xent_w_t.fold_target */
} xent_ctx;

static void xent_rows(void *p, int64_t lo, int64_t hi, int tid)
{
    xent_ctx *c = p;
    int V = c->V;
    (void)tid;
    for (int64_t i = lo; i < hi; i++) {
        float *row = c->logits + (size_t)i * V;
        int tgt = c->targets[i];
        c->row_loss[i] = 0.0;
        c->row_k[i] = 0.0f;
        if (tgt < 0) {
            if (c->grad)
                memset(row, 0, sizeof(float) * V);
            continue;
        }
        float mx = max_f(row, V);
        float lt = row[tgt];
        double sum = exp_sum_d(row, V, mx);
        c->row_loss[i] = log(sum) - (double)(lt - mx);
        c->row_k[i] = (float)(c->dscale / sum);
        if (c->grad && c->fold) {
            cpu_scale(row, V, c->row_k[i]);
            row[tgt] -= c->dscale;
        }
    }
}

static void xent_logits_f32(int n, int V, int C, const float *x, const float *W, float *logits)
{
    cpu_gemm(false, true, n, V, C, 1.0f, x, C, W, C, 0.0f, logits, V);
}

static void xent_dx_f32(int n, int V, int C, const float *g, const float *W, float *dx)
{
    cpu_gemm(false, false, n, C, V, 1.0f, g, V, W, C, 0.0f, dx, C);
}

static const xent_w_t xent_f32 = {xent_logits_f32, xent_dx_f32, false};

/* The gradient of row i is dscale * (softmax_i - onehot(t_i)) W
 * = k_i * (e_i W) - dscale * W[t_i], with e_i the row's exps and
 * k_i = dscale / sum(e_i): unless fold, the GEMM runs on the exps and the
 * per-row scale and the target row come after, on (n, C) instead of (n, V). */
static double xent_run(float *dx, const float *x, const float *W, const int32_t *targets, int N,
                       int C, int V, float *logits, int chunk, float dscale, int64_t *n_tok,
                       const xent_w_t *wp)
{
    double total = 0.0;
    int64_t count = 0;
    size_t nrow = (size_t)(chunk > 0 ? chunk : 1);
    double *row_loss = malloc(sizeof(double) * nrow);
    float *row_k = malloc(sizeof(float) * nrow);
    if (!row_loss || !row_k) {
        /* out of memory for two small arrays: use a chunk of one row */
        free(row_loss);
        free(row_k);
        double one_loss;
        float one_k;
        row_loss = &one_loss;
        row_k = &one_k;
        chunk = 1;
        total = 0.0;
        for (int r0 = 0; r0 < N; r0++) {
            wp->logits(1, V, C, x + (size_t)r0 * C, W, logits);
            xent_ctx c = {logits, targets + r0, row_loss, row_k, V, dscale, dx != NULL,
                          wp->fold_target};
            xent_rows(&c, 0, 1, 0);
            total += one_loss;
            count += targets[r0] >= 0;
            if (dx) {
                wp->dx(1, V, C, logits, W, dx + (size_t)r0 * C);
                for (int j = 0; j < C && targets[r0] >= 0 && !wp->fold_target; j++)
                    dx[(size_t)r0 * C + j] = one_k * dx[(size_t)r0 * C + j] -
                                             dscale * W[(size_t)targets[r0] * C + j];
            }
        }
        *n_tok = count;
        return total;
    }
    for (int r0 = 0; r0 < N; r0 += chunk) {
        int n = N - r0 < chunk ? N - r0 : chunk;
        int live = 0;
        for (int i = 0; i < n; i++)
            live += targets[r0 + i] >= 0;
        if (live == 0) {
            if (dx)
                memset(dx + (size_t)r0 * C, 0, sizeof(float) * (size_t)n * C);
            continue;
        }
        /* logits (n,V) = x (n,C) W^T */
        wp->logits(n, V, C, x + (size_t)r0 * C, W, logits);
        xent_ctx c = {logits, targets + r0, row_loss, row_k, V, dscale, dx != NULL,
                      wp->fold_target};
        par_range(n, 4, xent_rows, &c);
        for (int i = 0; i < n; i++) {
            if (targets[r0 + i] >= 0) {
                count++;
                total += row_loss[i];  /* in row order: independent of threads */
            }
        }
        if (!dx)
            continue;
        /* dx (n,C) = exps (n,V) W (V,C), then row i: k_i * dx_i - dscale * W[t_i]
         * (fold: the rows already hold the gradient) */
        float *d = dx + (size_t)r0 * C;
        wp->dx(n, V, C, logits, W, d);
        for (int i = 0; i < n && !wp->fold_target; i++) {
            int tgt = targets[r0 + i];
            float *di = d + (size_t)i * C;
            if (tgt < 0)
                continue;  /* its exps were zeroed: di is 0 */
            const float *wt = W + (size_t)tgt * C;
            float k = row_k[i];
            for (int j = 0; j < C; j++)
                di[j] = k * di[j] - dscale * wt[j];
        }
    }
    free(row_loss);
    free(row_k);
    *n_tok = count;
    return total;
}

static double cpu_xent(float *dx, const float *x, const float *W, const int32_t *targets, int N,
                       int C, int V, float *logits, int chunk, float dscale, int64_t *n_tok)
{
    return xent_run(dx, x, W, targets, N, C, V, logits, chunk, dscale, n_tok, &xent_f32);
}

static void cpu_dropout_forward(float *out, const float *x, int64_t n, float p, uint64_t key)
{
    float keep_scale = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < n; i++)
        out[i] = backend_hash_uniform(key, (uint64_t)i) < (double)p ? 0.0f : x[i] * keep_scale;
}

/* Follows torch.optim.AdamW (foreach=False) operation by operation: the
 * scalars (1 - lr*wd, 1 - beta, lr / bc1, sqrt(bc2)) are computed in double
 * and rounded to float once, as PyTorch does with its Python-float arguments. */
HOT static void cpu_adamw(float *p, const float *g, float *m, float *v, int64_t n, double lr,
                      double beta1, double beta2, double eps, double wd, int64_t t)
{
    float step_size = (float)(lr / (1.0 - pow(beta1, (double)t)));
    float bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)t));
    float decay = (float)(1.0 - lr * wd);
    float w1 = (float)(1.0 - beta1), b2 = (float)beta2, w2 = (float)(1.0 - beta2);
    float e = (float)eps;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        p[i] *= decay;
        m[i] += w1 * (gi - m[i]);
        v[i] = v[i] * b2 + w2 * gi * gi;
        float denom = sqrtf(v[i]) / bc2_sqrt + e;
        p[i] -= step_size * (m[i] / denom);
    }
}

static double cpu_sumsq(const float *x, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return s;
}

HOT static void cpu_add(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

static void cpu_set_threads(int n)
{
    openblas_set_num_threads(1);  /* threads are ours: see the pool above */
    pool_resize((n > 0 ? n : 1) - 1);
}

/* The members both CPU tables share (everything that does not read the
 * frozen base weights). */
#define CPU_SHARED_OPS \
    .alloc = cpu_alloc, \
    .free = cpu_free, \
    .gemm = cpu_gemm, \
    .embedding_backward = cpu_embedding_backward, \
    .rmsnorm_forward = cpu_rmsnorm_forward, \
    .rmsnorm_backward = cpu_rmsnorm_backward, \
    .rope_forward = cpu_rope_forward, \
    .rope_backward = cpu_rope_backward, \
    .attention_forward = cpu_attention_forward, \
    .attention_backward = cpu_attention_backward, \
    .swiglu_forward = cpu_swiglu_forward, \
    .swiglu_backward = cpu_swiglu_backward, \
    .dropout_forward = cpu_dropout_forward, \
    .adamw = cpu_adamw, \
    .sumsq = cpu_sumsq, \
    .scale = cpu_scale, \
    .add = cpu_add, \
    .set_threads = cpu_set_threads,

static const backend_t cpu_backend = {
    .name = "cpu",
    CPU_SHARED_OPS
    .embedding_forward = cpu_embedding_forward,
    .xent_forward_backward = cpu_xent,
};

const backend_t *backend_cpu(void)
{
    return &cpu_backend;
}

/* ---- cpu-bf16: the frozen base matrices in bf16 (bf16gemm.h) ----
 * Everything is the cpu backend's except the four members that read base
 * weights. weights_upload packs q .. down and lm_head into bf16_mat_t (two
 * VNNI layouts each: as many bytes as fp32) and the embedding into plain bf16
 * rows (half of fp32); the norm vectors stay fp32 copies. The opaque float *
 * slots of the uploaded llama_weights_t hold those pointers: only gemm_w,
 * embedding_forward and xent_forward_backward of this table read them, and
 * mem holds the bf16_weights_t that owns them all.
 * The weight GEMMs split over the pool one range per thread, by rows of A
 * and C in blocks of 32 when there are enough (each thread then converts
 * only its rows of A to bf16 and reads all of the packed W, which stays in
 * its L2 for every matrix but lm_head), else by output columns in blocks of
 * 32 (bf16gemm.h; every range converts all of A). More ranges than threads
 * would convert or read more for little balance. An element of C is
 * computed by the same code whatever the split (tests/trainer/model/
 * test_bf16.c checks 1 thread == 2 threads bit for bit, tails included), so
 * results do not depend on the thread count. */

#define BF16_COLS 32  /* column block of a split (bf16gemm.h) */
#define BF16_ROWS 32  /* row block of a split */

typedef struct {
    bf16_mat_t **mats;   /* [n_mats] every packed matrix, freed with the set */
    int n_mats;          /* matrices packed so far */
    uint16_t *embed;     /* (V, C) bf16 rows */
    float *norms;        /* ((2L + 1) * C) fp32 copies of the norm vectors */
    size_t bytes;        /* memory held, all of the above */
} bf16_weights_t;

#define SLOT(p) ((float *)(void *)(p))
#define AS_MAT(p) ((const bf16_mat_t *)(const void *)(p))

typedef struct {
    bool nt;                 /* bf16_gemm_nt, else bf16_gemm_nn */
    int M, N;                /* rows of A and C; columns of C */
    const float *A;          /* (M, K), fp32 */
    int lda, ldc;
    const bf16_mat_t *W;
    float alpha, beta;
    float *C;                /* (M, N) */
    int64_t blocks;          /* BF16_COLS-column (or BF16_ROWS-row) blocks of C */
    int64_t parts;           /* ranges the blocks are cut into */
    bool split_m;            /* blocks are rows of C (and A), else columns */
} bgemm_ctx;

static void bgemm_cols(const bgemm_ctx *g, int n0, int n1)
{
    if (g->nt)
        bf16_gemm_nt(g->M, g->A, g->lda, g->W, g->alpha, g->beta, g->C, g->ldc, n0, n1);
    else
        bf16_gemm_nn(g->M, g->A, g->lda, g->W, g->alpha, g->beta, g->C, g->ldc, n0, n1);
}

/* items are ranges; contiguous ranges [lo, hi) make one call */
static void bgemm_range(void *p, int64_t lo, int64_t hi, int tid)
{
    const bgemm_ctx *g = p;
    int64_t a, b, unused;
    (void)tid;
    chunk(g->blocks, g->parts, lo, &a, &unused);
    chunk(g->blocks, g->parts, hi - 1, &unused, &b);
    if (g->split_m) {
        int m0 = (int)(a * BF16_ROWS), m1 = (int)(b * BF16_ROWS < g->M ? b * BF16_ROWS : g->M);
        if (m0 >= m1)
            return;
        bgemm_ctx r = *g;
        r.M = m1 - m0;
        r.A = g->A + (size_t)m0 * g->lda;
        r.C = g->C + (size_t)m0 * g->ldc;
        bgemm_cols(&r, 0, g->N);
        return;
    }
    int n0 = (int)(a * BF16_COLS), n1 = (int)(b * BF16_COLS < g->N ? b * BF16_COLS : g->N);
    if (n0 < n1)
        bgemm_cols(g, n0, n1);
}

/* C (M, N) = alpha * A W^T + beta * C (nt, W (N, K)) or alpha * A W + beta * C
 * (W (K, N)), split over the pool by rows when M is large enough, else by
 * columns (see above). */
static void bf16_par(bool nt, int M, int N, int K, float alpha, const float *A, int lda,
                     const bf16_mat_t *W, float beta, float *C, int ldc)
{
    if (M == 0 || N == 0)
        return;
    int threads = pool.n_workers + 1;
    int64_t blocks = (N + BF16_COLS - 1) / BF16_COLS;
    bgemm_ctx g = {nt, M, N, A, lda, ldc, W, alpha, beta, C, blocks, 1, false};
    double flops = 2.0 * M * (double)N * K;
    if (M >= 2 * BF16_ROWS * threads) {
        g.split_m = true;
        g.blocks = blocks = (M + BF16_ROWS - 1) / BF16_ROWS;
    }
    if (threads == 1 || flops < 1e6 || blocks < 2 || in_worker_job) {
        bgemm_cols(&g, 0, N);
        return;
    }
    g.parts = blocks < threads ? blocks : threads;
    par_range(g.parts, 2, bgemm_range, &g);
}

/* gemm_w: the model calls (false, true) forward and (false, false) backward */
static void bf16_gemm_w(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *W, int ldw, float beta, float *C,
                        int ldc)
{
    const bf16_mat_t *w = AS_MAT(W);
    (void)ldw;  /* packed: W carries its own layout */
    assert(!trans_a);
    assert(trans_b ? bf16_mat_rows(w) == N && bf16_mat_cols(w) == K
                   : bf16_mat_rows(w) == K && bf16_mat_cols(w) == N);
    bf16_par(trans_b, M, N, K, alpha, A, lda, w, beta, C, ldc);
}

static void bf16_embedding_forward(float *out, const int32_t *tokens, const float *emb, int N,
                                   int C)
{
    const uint16_t *e = (const uint16_t *)(const void *)emb;
    for (int i = 0; i < N; i++) {
        const uint16_t *src = e + (size_t)tokens[i] * C;
        float *dst = out + (size_t)i * C;
        for (int c = 0; c < C; c++)
            dst[c] = ft_bf16_widen(src[c]);
    }
}

static void xent_logits_bf16(int n, int V, int C, const float *x, const float *W, float *logits)
{
    bf16_par(true, n, V, C, 1.0f, x, C, AS_MAT(W), 0.0f, logits, V);
}

static void xent_dx_bf16(int n, int V, int C, const float *g, const float *W, float *dx)
{
    bf16_par(false, n, C, V, 1.0f, g, V, AS_MAT(W), 0.0f, dx, C);
}

/* fold: the packed W has no fp32 rows to subtract, and dscale * (p - onehot)
 * rounds to bf16 relative to the gradient itself (the exps form would lose
 * the difference of two near-equal terms when p(target) nears 1) */
static const xent_w_t xent_bf16 = {xent_logits_bf16, xent_dx_bf16, true};

static double bf16_xent(float *dx, const float *x, const float *W, const int32_t *targets,
                        int N, int C, int V, float *logits, int chunk, float dscale,
                        int64_t *n_tok)
{
    return xent_run(dx, x, W, targets, N, C, V, logits, chunk, dscale, n_tok, &xent_bf16);
}

static void bf16_weights_free(llama_weights_t *dev)
{
    bf16_weights_t *h = (bf16_weights_t *)(void *)dev->mem;
    if (h) {
        for (int i = 0; i < h->n_mats; i++)
            bf16_mat_destroy(&h->mats[i]);
        free(h->mats);
        free(h->embed);
        free(h->norms);
        free(h);
    }
    free(dev->layers);
    memset(dev, 0, sizeof(*dev));
}

/* packs W (rows, cols) into the set; NULL when out of memory */
static float *bf16_pack(bf16_weights_t *h, const float *W, int rows, int cols)
{
    bf16_mat_t *m = bf16_mat_new(W, rows, cols);
    if (!m)
        return NULL;
    h->mats[h->n_mats++] = m;
    h->bytes += bf16_mat_bytes(m);
    return SLOT(m);
}

static int bf16_weights_upload(const llama_config_t *cfg, const llama_weights_t *host,
                               llama_weights_t *dev)
{
    int L = cfg->n_layers, C = cfg->hidden_size, inter = cfg->intermediate_size;
    int V = cfg->vocab_size, Hq = cfg->n_heads * cfg->head_dim;
    int Hkv = cfg->n_kv_heads * cfg->head_dim;
    size_t nv = (size_t)V * C, nn = (size_t)(2 * L + 1) * C;
    memset(dev, 0, sizeof(*dev));
    bf16_weights_t *h = calloc(1, sizeof(*h));
    if (!h)
        return -1;
    dev->mem = SLOT(h);  /* from here on bf16_weights_free cleans up */
    dev->layers = calloc((size_t)L, sizeof(*dev->layers));
    h->mats = calloc((size_t)L * 7 + 1, sizeof(*h->mats));
    h->embed = malloc(nv * sizeof(uint16_t));
    h->norms = malloc(nn * sizeof(float));
    if (!dev->layers || !h->mats || !h->embed || !h->norms)
        goto fail;
    h->bytes = sizeof(*h) + nv * sizeof(uint16_t) + nn * sizeof(float);
    for (size_t i = 0; i < nv; i++)
        h->embed[i] = ft_bf16_round(host->embed[i]);
    dev->embed = SLOT(h->embed);
    float *nrm = h->norms;
    memcpy(nrm, host->final_norm, sizeof(float) * C);
    dev->final_norm = nrm;
    nrm += C;
    /* tied: lm_head is the embedding's matrix, packed once more for the GEMMs */
    if (!(dev->lm_head = bf16_pack(h, host->lm_head, V, C)))
        goto fail;
    for (int l = 0; l < L; l++) {
        const llama_layer_weights_t *hl = &host->layers[l];
        llama_layer_weights_t *dl = &dev->layers[l];
        memcpy(nrm, hl->attn_norm, sizeof(float) * C);
        dl->attn_norm = nrm;
        nrm += C;
        memcpy(nrm, hl->mlp_norm, sizeof(float) * C);
        dl->mlp_norm = nrm;
        nrm += C;
        if (!(dl->q = bf16_pack(h, hl->q, Hq, C)) || !(dl->k = bf16_pack(h, hl->k, Hkv, C)) ||
            !(dl->v = bf16_pack(h, hl->v, Hkv, C)) || !(dl->o = bf16_pack(h, hl->o, C, Hq)) ||
            !(dl->gate = bf16_pack(h, hl->gate, inter, C)) ||
            !(dl->up = bf16_pack(h, hl->up, inter, C)) ||
            !(dl->down = bf16_pack(h, hl->down, C, inter)))
            goto fail;
    }
    return 0;
fail:
    bf16_weights_free(dev);
    return -1;
}

size_t backend_cpu_bf16_weights_bytes(const llama_weights_t *dev)
{
    const bf16_weights_t *h = (const bf16_weights_t *)(const void *)dev->mem;
    return h ? h->bytes : 0;
}

double backend_cpu_gemm_rate(bool bf16, int n)
{
    size_t sz = (size_t)n * n;
    float *a = malloc(sz * sizeof(float)), *b = malloc(sz * sizeof(float)),
          *c = malloc(sz * sizeof(float));
    bf16_mat_t *w = NULL;
    double best = 0.0;
    if (a && b && c) {
        for (size_t i = 0; i < sz; i++) {
            a[i] = (float)(i % 7) * 0.01f;
            b[i] = (float)(i % 5) * 0.01f;
        }
        w = bf16 ? bf16_mat_new(b, n, n) : NULL;
    }
    for (int k = 0; a && b && c && (w || !bf16) && k < 4; k++) { /* the first one warms up */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (bf16)
            bf16_par(true, n, n, n, 1.0f, a, n, w, 0.0f, c, n);
        else
            cpu_gemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        double r = s > 0 ? 2.0 * n * (double)n * n / s / 1e9 : 0.0;
        best = k > 0 && r > best ? r : best;
    }
    bf16_mat_destroy(&w);
    free(a);
    free(b);
    free(c);
    return best;
}

static const backend_t cpu_bf16_backend = {
    .name = "cpu-bf16",
    CPU_SHARED_OPS
    .embedding_forward = bf16_embedding_forward,
    .xent_forward_backward = bf16_xent,
    .weights_upload = bf16_weights_upload,
    .weights_free = bf16_weights_free,
    .gemm_w = bf16_gemm_w,
};

const backend_t *backend_cpu_bf16(void)
{
    return &cpu_bf16_backend;
}
