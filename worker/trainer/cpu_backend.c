/*
 * cpu_backend.c: the CPU implementation of backend.h. GEMMs go to OpenBLAS
 * cblas_sgemm (its own threads, set by set_threads); the element-wise ops are
 * plain single-threaded loops, which stay a few percent of a step because
 * every projection is one large GEMM over the B*T rows.
 *
 * Attention runs one GEMM pair per (batch row, head) on the full (T, T) score
 * matrix; the masked upper triangle is computed and discarded, which costs
 * T*T*hd extra flops per head but keeps the work inside sgemm.
 * Reductions that decide a loss or a norm accumulate in double.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

/* OpenBLAS extension, declared in its cblas.h; repeated for other builds. */
void openblas_set_num_threads(int num_threads);

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

static void cpu_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C,
                     int ldc)
{
    if (M == 0 || N == 0)
        return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
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

static void cpu_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w,
                                int N, int C, float eps)
{
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C;
        float *oi = out + (size_t)i * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++)
            ss += xi[c] * xi[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        rstd[i] = r;
        for (int c = 0; c < C; c++)
            oi[c] = w[c] * (xi[c] * r);
    }
}

/* y = w * x * r with r = (mean(x^2) + eps)^-1/2:
 * dx = r * (w*dy) - x * r^3 / C * sum(w*dy*x). */
static void cpu_rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w,
                                 const float *rstd, int N, int C)
{
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C;
        const float *gi = dout + (size_t)i * C;
        float *di = dx + (size_t)i * C;
        float r = rstd[i];
        float dot = 0.0f;
        for (int c = 0; c < C; c++)
            dot += w[c] * gi[c] * xi[c];
        float k = dot * r * r * r / (float)C;
        for (int c = 0; c < C; c++)
            di[c] += r * w[c] * gi[c] - k * xi[c];
    }
}

/* rotate_half: for i < hd/2, (x_i, x_{i+hd/2}) -> (x_i cos - x_{i+h} sin,
 * x_{i+h} cos + x_i sin). sign = -1 applies the inverse (the transpose). */
static void rope_apply(float *x, const float *cos_t, const float *sin_t, int B, int T, int nh,
                       int hd, float sign)
{
    int half = hd / 2;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *ct = cos_t + (size_t)t * half;
            const float *st = sin_t + (size_t)t * half;
            float *row = x + ((size_t)b * T + t) * (size_t)nh * hd;
            for (int h = 0; h < nh; h++) {
                float *xh = row + (size_t)h * hd;
                for (int i = 0; i < half; i++) {
                    float a = xh[i], c = xh[i + half];
                    float s = sign * st[i];
                    xh[i] = a * ct[i] - c * s;
                    xh[i + half] = c * ct[i] + a * s;
                }
            }
        }
    }
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

static void cpu_attention_forward(float *y, float *att, const float *q, const float *k,
                                  const float *v, const attn_shape_t *s)
{
    int T = s->T, hd = s->hd, nh = s->n_heads, group = s->n_heads / s->n_kv;
    int ldq = nh * hd, ldk = s->n_kv * hd;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < s->B; b++) {
        for (int h = 0; h < nh; h++) {
            int kvh = h / group;
            const float *qb = q + (size_t)b * T * ldq + (size_t)h * hd;
            const float *kb = k + (size_t)b * T * ldk + (size_t)kvh * hd;
            const float *vb = v + (size_t)b * T * ldk + (size_t)kvh * hd;
            float *P = att + ((size_t)b * nh + h) * (size_t)T * T;
            /* S (T,T) = scale * Q (T,hd) K^T */
            cpu_gemm(false, true, T, T, hd, scale, qb, ldq, kb, ldk, 0.0f, P, T);
            for (int i = 0; i < T; i++) {
                float *row = P + (size_t)i * T;
                float mx = row[0];
                for (int j = 1; j <= i; j++)
                    mx = row[j] > mx ? row[j] : mx;
                float sum = 0.0f;
                for (int j = 0; j <= i; j++) {
                    row[j] = expf(row[j] - mx);
                    sum += row[j];
                }
                float inv = 1.0f / sum;
                for (int j = 0; j <= i; j++)
                    row[j] *= inv;
                for (int j = i + 1; j < T; j++)
                    row[j] = 0.0f;
            }
            /* Y (T,hd) = P (T,T) V (T,hd) */
            cpu_gemm(false, false, T, hd, T, 1.0f, P, T, vb, ldk, 0.0f,
                     y + (size_t)b * T * ldq + (size_t)h * hd, ldq);
        }
    }
}

static void cpu_attention_backward(float *dq, float *dk, float *dv, const float *dy,
                                   const float *att, const float *q, const float *k,
                                   const float *v, float *scratch, const attn_shape_t *s)
{
    int T = s->T, hd = s->hd, nh = s->n_heads, group = s->n_heads / s->n_kv;
    int ldq = nh * hd, ldk = s->n_kv * hd;
    float scale = 1.0f / sqrtf((float)hd);
    memset(dk, 0, sizeof(float) * (size_t)s->B * T * ldk);
    memset(dv, 0, sizeof(float) * (size_t)s->B * T * ldk);
    for (int b = 0; b < s->B; b++) {
        for (int h = 0; h < nh; h++) {
            int kvh = h / group;
            size_t qoff = (size_t)b * T * ldq + (size_t)h * hd;
            size_t koff = (size_t)b * T * ldk + (size_t)kvh * hd;
            const float *P = att + ((size_t)b * nh + h) * (size_t)T * T;
            float *dP = scratch;
            /* dP (T,T) = dY (T,hd) V^T */
            cpu_gemm(false, true, T, T, hd, 1.0f, dy + qoff, ldq, v + koff, ldk, 0.0f, dP, T);
            /* dV (T,hd) += P^T dY */
            cpu_gemm(true, false, T, hd, T, 1.0f, P, T, dy + qoff, ldq, 1.0f, dv + koff, ldk);
            /* dS = P * (dP - sum_j P dP) * scale, zero above the diagonal */
            for (int i = 0; i < T; i++) {
                const float *pr = P + (size_t)i * T;
                float *dr = dP + (size_t)i * T;
                float dot = 0.0f;
                for (int j = 0; j <= i; j++)
                    dot += pr[j] * dr[j];
                for (int j = 0; j <= i; j++)
                    dr[j] = pr[j] * (dr[j] - dot) * scale;
                for (int j = i + 1; j < T; j++)
                    dr[j] = 0.0f;
            }
            /* dQ (T,hd) = dS K ; dK (T,hd) += dS^T Q */
            cpu_gemm(false, false, T, hd, T, 1.0f, dP, T, k + koff, ldk, 0.0f, dq + qoff, ldq);
            cpu_gemm(true, false, T, hd, T, 1.0f, dP, T, q + qoff, ldq, 1.0f, dk + koff, ldk);
        }
    }
}

static void cpu_swiglu_forward(float *h, const float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float x = g[i];
        h[i] = x / (1.0f + expf(-x)) * u[i];
    }
}

static void cpu_swiglu_backward(float *dg, float *du, const float *dh, const float *g,
                                const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float x = g[i];
        float sig = 1.0f / (1.0f + expf(-x));
        float silu = x * sig;
        du[i] = dh[i] * silu;
        dg[i] = dh[i] * u[i] * sig * (1.0f + x * (1.0f - sig));
    }
}

static double cpu_xent(float *dx, const float *x, const float *W, const int32_t *targets, int N,
                       int C, int V, float *logits, int chunk, float dscale, int64_t *n_tok)
{
    double total = 0.0;
    int64_t count = 0;
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
        cpu_gemm(false, true, n, V, C, 1.0f, x + (size_t)r0 * C, C, W, C, 0.0f, logits, V);
        for (int i = 0; i < n; i++) {
            float *row = logits + (size_t)i * V;
            int tgt = targets[r0 + i];
            if (tgt < 0) {
                if (dx)
                    memset(row, 0, sizeof(float) * V);
                continue;
            }
            float mx = row[0];
            for (int j = 1; j < V; j++)
                mx = row[j] > mx ? row[j] : mx;
            float lt = row[tgt];
            double sum = 0.0;
            for (int j = 0; j < V; j++) {
                float e = expf(row[j] - mx);
                sum += e;
                if (dx)
                    row[j] = e;
            }
            total += log(sum) - (double)(lt - mx);
            if (dx) {
                float k = (float)(dscale / sum);
                for (int j = 0; j < V; j++)
                    row[j] *= k;
                row[tgt] -= dscale;
            }
            count++;
        }
        /* dx (n,C) = dlogits (n,V) W (V,C) */
        if (dx)
            cpu_gemm(false, false, n, C, V, 1.0f, logits, V, W, C, 0.0f, dx + (size_t)r0 * C,
                     C);
    }
    *n_tok = count;
    return total;
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
static void cpu_adamw(float *p, const float *g, float *m, float *v, int64_t n, double lr,
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

static void cpu_scale(float *x, int64_t n, float a)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= a;
}

static void cpu_add(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

static void cpu_set_threads(int n)
{
    openblas_set_num_threads(n > 0 ? n : 1);
}

static const backend_t cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .gemm = cpu_gemm,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .rmsnorm_forward = cpu_rmsnorm_forward,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .rope_forward = cpu_rope_forward,
    .rope_backward = cpu_rope_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .swiglu_forward = cpu_swiglu_forward,
    .swiglu_backward = cpu_swiglu_backward,
    .xent_forward_backward = cpu_xent,
    .dropout_forward = cpu_dropout_forward,
    .adamw = cpu_adamw,
    .sumsq = cpu_sumsq,
    .scale = cpu_scale,
    .add = cpu_add,
    .set_threads = cpu_set_threads,
};

const backend_t *backend_cpu(void)
{
    return &cpu_backend;
}
