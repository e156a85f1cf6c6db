/*
 * test_cuda_ops.c: every fp32 op of the CUDA backend against the CPU
 * backend on random inputs of awkward sizes (not multiples of 32, leading
 * dimensions wider than the rows, GQA, T not a multiple of the CPU's
 * attention block), so that a failure of the model test can be traced to
 * one kernel. The bf16 weight ops (gemm_w, embedding_forward, xent) are
 * covered by test_cuda_model.c. Attention runs on both device paths
 * (materialised, and the fused "flash" kernels with bf16 tensor cores).
 *
 * Bounds: GEMM-based ops (TF32 tensor cores, 10-bit significand) max|d| /
 * max|cpu| <= 5e-3; fused attention (bf16 inputs, 8-bit significand) 3e-2;
 * element-wise and row kernels <= 1e-5 (only the order of
 * float sums and expf differ); dropout masks must match exactly; AdamW
 * <= 1e-5; sumsq (double accumulation) relative <= 1e-9.
 * Skips (77) without a CUDA device.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "gtest.h"

static const backend_t *cu, *cpu;

static float *hrand(size_t n, double std)
{
    float *x = malloc(n * sizeof(float));
    if (!x) {
        printf("out of memory\n");
        exit(1);
    }
    gt_fill(x, n, std);
    return x;
}

static float *dev(const float *h, size_t n)
{
    float *d = cu->alloc(n * sizeof(float));
    if (!d || cu->upload(d, h, n * sizeof(float)) < 0) {
        printf("FAIL device alloc/upload of %zu floats: %s\n", n, cuda_backend_error());
        exit(1);
    }
    return d;
}

/* downloads d into a new host array */
static float *back(const float *d, size_t n)
{
    float *h = malloc(n * sizeof(float));
    if (!h || cu->sync() < 0 || cu->download(h, d, n * sizeof(float)) < 0) {
        printf("FAIL device sync/download: %s\n", cuda_backend_error());
        exit(1);
    }
    return h;
}

static void expect_dev(const char *what, const float *d, const float *ref, size_t n, double max_rel)
{
    float *h = back(d, n);
    gt_expect(what, h, ref, n, max_rel, 1.0 - fmax(max_rel, 1e-9));
    free(h);
}

static void test_gemm(void)
{
    int M = 37, N = 45, K = 70, pad = 3;
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            int ra = ta ? K : M, ca = ta ? M : K, rb = tb ? N : K, cb = tb ? K : N;
            int lda = ca + pad, ldb = cb + pad, ldc = N + pad;
            size_t na = (size_t)ra * lda, nb = (size_t)rb * ldb, nc = (size_t)M * ldc;
            float *A = hrand(na, 1.0), *Bm = hrand(nb, 1.0), *C = hrand(nc, 1.0);
            float *dA = dev(A, na), *dB = dev(Bm, nb), *dC = dev(C, nc);
            cpu->gemm(ta, tb, M, N, K, 0.7f, A, lda, Bm, ldb, 1.0f, C, ldc);
            cu->gemm(ta, tb, M, N, K, 0.7f, dA, lda, dB, ldb, 1.0f, dC, ldc);
            char what[64];
            snprintf(what, sizeof(what), "gemm ta %d tb %d beta 1", ta, tb);
            expect_dev(what, dC, C, nc, 5e-3);
            free(A), free(Bm), free(C);
            cu->free(dA), cu->free(dB), cu->free(dC);
        }
    }
}

static void test_rmsnorm(void)
{
    int N = 19, C = 300;
    size_t n = (size_t)N * C;
    float *x = hrand(n, 1.5), *w = hrand(C, 1.0), *dy = hrand(n, 1.0), *dx = hrand(n, 1.0);
    float *out = calloc(n, sizeof(float)), *rstd = calloc(N, sizeof(float));
    float *dx_d = dev(dx, n), *x_d = dev(x, n), *w_d = dev(w, C), *dy_d = dev(dy, n);
    float *out_d = cu->alloc(n * sizeof(float)), *rstd_d = cu->alloc(N * sizeof(float));
    cpu->rmsnorm_forward(out, rstd, x, w, N, C, 1e-5f);
    cu->rmsnorm_forward(out_d, rstd_d, x_d, w_d, N, C, 1e-5f);
    expect_dev("rmsnorm_forward out", out_d, out, n, 1e-5);
    expect_dev("rmsnorm_forward rstd", rstd_d, rstd, N, 1e-5);
    cpu->rmsnorm_backward(dx, dy, x, w, rstd, N, C);
    cu->rmsnorm_backward(dx_d, dy_d, x_d, w_d, rstd_d, N, C);
    expect_dev("rmsnorm_backward dx (adds)", dx_d, dx, n, 1e-5);
    free(x), free(w), free(dy), free(dx), free(out), free(rstd);
    cu->free(dx_d), cu->free(x_d), cu->free(w_d), cu->free(dy_d), cu->free(out_d), cu->free(rstd_d);
}

static void test_rope(void)
{
    int B = 2, T = 33, nh = 3, hd = 24, half = hd / 2;
    size_t n = (size_t)B * T * nh * hd, nt = (size_t)T * half;
    float *x = hrand(n, 1.0), *ct = malloc(nt * sizeof(float)), *st = malloc(nt * sizeof(float));
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double ang = t * pow(10000.0, -2.0 * i / hd);
            ct[(size_t)t * half + i] = (float)cos(ang);
            st[(size_t)t * half + i] = (float)sin(ang);
        }
    float *x_d = dev(x, n), *ct_d = dev(ct, nt), *st_d = dev(st, nt);
    cpu->rope_forward(x, ct, st, B, T, nh, hd);
    cu->rope_forward(x_d, ct_d, st_d, B, T, nh, hd);
    expect_dev("rope_forward", x_d, x, n, 1e-5);
    cpu->rope_backward(x, ct, st, B, T, nh, hd);
    cu->rope_backward(x_d, ct_d, st_d, B, T, nh, hd);
    expect_dev("rope_backward", x_d, x, n, 1e-5);
    free(x), free(ct), free(st);
    cu->free(x_d), cu->free(ct_d), cu->free(st_d);
}

/* attention on shape s with the device's path `mode` against the CPU; the
 * probabilities are compared only on the materialised path (the fused one
 * keeps the log-sum-exp in att instead) */
static void test_attention(attn_shape_t s, const char *mode, double tol)
{
    if (cuda_backend_set_attention(mode) < 0) {
        printf("FAIL attention mode '%s' unknown\n", mode);
        gt_failures++;
        return;
    }
    size_t nq = (size_t)s.B * s.T * s.n_heads * s.hd, nk = (size_t)s.B * s.T * s.n_kv * s.hd;
    size_t na = (size_t)s.B * s.n_heads * s.T * s.T;
    float *q = hrand(nq, 1.0), *k = hrand(nk, 1.0), *v = hrand(nk, 1.0), *dy = hrand(nq, 1.0);
    float *y = calloc(nq, sizeof(float)), *att = calloc(na, sizeof(float));
    float *dq = calloc(nq, sizeof(float)), *dk = calloc(nk, sizeof(float));
    float *dv = calloc(nk, sizeof(float)), *scr = calloc((size_t)s.T * s.T, sizeof(float));
    float *q_d = dev(q, nq), *k_d = dev(k, nk), *v_d = dev(v, nk), *dy_d = dev(dy, nq);
    /* garbage in the outputs: every op here writes, none adds */
    float *y_d = dev(dy, nq), *att_d = cu->alloc(na * sizeof(float));
    float *dq_d = dev(q, nq), *dk_d = dev(k, nk), *dv_d = dev(v, nk);
    char what[96];
    cpu->attention_forward(y, att, q, k, v, &s);
    cu->attention_forward(y_d, att_d, q_d, k_d, v_d, &s);
#define ATT_WHAT(name)                                                                             \
    snprintf(what, sizeof(what), "attention %s B%d T%d h%d/%d hd%d %s", name, s.B, s.T, s.n_heads, \
             s.n_kv, s.hd, mode)
    if (strcmp(mode, "materialised") == 0) {
        ATT_WHAT("probabilities");
        expect_dev(what, att_d, att, na, tol);
    }
    ATT_WHAT("y");
    expect_dev(what, y_d, y, nq, tol);
    cpu->attention_backward(dq, dk, dv, dy, att, q, k, v, scr, &s);
    cu->attention_backward(dq_d, dk_d, dv_d, dy_d, att_d, q_d, k_d, v_d, NULL, &s);
    ATT_WHAT("dq");
    expect_dev(what, dq_d, dq, nq, tol);
    ATT_WHAT("dk");
    expect_dev(what, dk_d, dk, nk, tol);
    ATT_WHAT("dv");
    expect_dev(what, dv_d, dv, nk, tol);
#undef ATT_WHAT
    free(q), free(k), free(v), free(dy), free(y), free(att), free(dq), free(dk), free(dv),
        free(scr);
    cu->free(q_d), cu->free(k_d), cu->free(v_d), cu->free(dy_d), cu->free(y_d), cu->free(att_d),
        cu->free(dq_d), cu->free(dk_d), cu->free(dv_d);
    cuda_backend_set_attention("materialised");
}

static void test_elementwise(void)
{
    int64_t n = 100003;
    float *g = hrand(n, 2.0), *u = hrand(n, 1.0), *dh = hrand(n, 1.0);
    float *h = calloc(n, sizeof(float)), *dg = calloc(n, sizeof(float));
    float *du = calloc(n, sizeof(float));
    float *g_d = dev(g, n), *u_d = dev(u, n), *dh_d = dev(dh, n);
    float *h_d = cu->alloc(n * sizeof(float)), *dg_d = cu->alloc(n * sizeof(float));
    float *du_d = cu->alloc(n * sizeof(float));
    cpu->swiglu_forward(h, g, u, n);
    cu->swiglu_forward(h_d, g_d, u_d, n);
    expect_dev("swiglu_forward", h_d, h, n, 1e-5);
    cpu->swiglu_backward(dg, du, dh, g, u, n);
    cu->swiglu_backward(dg_d, du_d, dh_d, g_d, u_d, n);
    expect_dev("swiglu_backward dg", dg_d, dg, n, 1e-5);
    expect_dev("swiglu_backward du", du_d, du, n, 1e-5);

    /* dropout: the same hash, so the same zeros */
    cpu->dropout_forward(h, g, n, 0.3f, 12345);
    cu->dropout_forward(h_d, g_d, n, 0.3f, 12345);
    float *hh = back(h_d, n);
    int64_t mism = 0, zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        mism += (hh[i] == 0.0f) != (h[i] == 0.0f);
        zeros += h[i] == 0.0f;
    }
    printf("%-4s dropout p 0.3: %lld of %lld dropped, %lld masks differ\n",
           mism == 0 ? "ok" : "FAIL", (long long)zeros, (long long)n, (long long)mism);
    GT_CHECK(mism == 0, "dropout masks differ");
    GT_CHECK(fabs((double)zeros / n - 0.3) < 0.01, "dropout rate %.4f", (double)zeros / n);
    gt_expect("dropout values", hh, h, n, 1e-6, 0.999999);
    free(hh);

    /* scale, add, sumsq, copy, zero */
    cpu->scale(g, n, 0.37f);
    cu->scale(g_d, n, 0.37f);
    expect_dev("scale", g_d, g, n, 1e-6);
    cpu->add(g, u, n);
    cu->add(g_d, u_d, n);
    expect_dev("add", g_d, g, n, 1e-6);
    double s_cpu = cpu->sumsq(g, n), s_gpu = cu->sumsq(g_d, n);
    double rel = fabs(s_gpu - s_cpu) / s_cpu;
    printf("%-4s sumsq cpu %.10g gpu %.10g rel %.2e (<= 1e-9)\n", rel <= 1e-9 ? "ok" : "FAIL",
           s_cpu, s_gpu, rel);
    GT_CHECK(rel <= 1e-9, "sumsq differs");
    cu->copy(h_d, g_d, n);
    expect_dev("copy", h_d, g, n, 0.0);
    cu->zero(h_d, n);
    float *z = back(h_d, n), zmax = 0.0f;
    for (int64_t i = 0; i < n; i++)
        zmax = fmaxf(zmax, fabsf(z[i]));
    GT_CHECK(zmax == 0.0f, "zero left %g", (double)zmax);
    printf("%-4s zero\n", zmax == 0.0f ? "ok" : "FAIL");
    free(z);
    free(g), free(u), free(dh), free(h), free(dg), free(du);
    cu->free(g_d), cu->free(u_d), cu->free(dh_d), cu->free(h_d), cu->free(dg_d), cu->free(du_d);
}

static void test_adamw(void)
{
    int64_t n = 5001;
    float *p = hrand(n, 0.1), *gr = hrand(n, 0.01), *m = calloc(n, sizeof(float));
    float *v = calloc(n, sizeof(float));
    float *p_d = dev(p, n), *g_d = dev(gr, n), *m_d = dev(m, n), *v_d = dev(v, n);
    for (int t = 1; t <= 3; t++) {
        cpu->adamw(p, gr, m, v, n, 1e-3, 0.9, 0.999, 1e-8, 0.01, t);
        cu->adamw(p_d, g_d, m_d, v_d, n, 1e-3, 0.9, 0.999, 1e-8, 0.01, t);
    }
    expect_dev("adamw params after 3 steps", p_d, p, n, 1e-5);
    expect_dev("adamw m", m_d, m, n, 1e-5);
    expect_dev("adamw v", v_d, v, n, 1e-5);
    free(p), free(gr), free(m), free(v);
    cu->free(p_d), cu->free(g_d), cu->free(m_d), cu->free(v_d);
}

static void test_embedding_backward(void)
{
    int N = 50, C = 40, V = 17;
    int32_t tok[50];
    for (int i = 0; i < N; i++)
        tok[i] = (int32_t)(gt_next() % V);
    float *dout = hrand((size_t)N * C, 1.0), *demb = hrand((size_t)V * C, 1.0);
    float *dout_d = dev(dout, (size_t)N * C), *demb_d = dev(demb, (size_t)V * C);
    cpu->embedding_backward(demb, tok, dout, N, C);
    cu->embedding_backward(demb_d, tok, dout_d, N, C);
    expect_dev("embedding_backward (adds)", demb_d, demb, (size_t)V * C, 1e-5);
    free(dout), free(demb);
    cu->free(dout_d), cu->free(demb_d);
}

int main(void)
{
    int open_rc = gt_open_cuda(&cu);
    if (open_rc)
        return open_rc;
    cpu = backend_cpu();
    cpu->set_threads(2);
    char name[128];
    int major = 0, minor = 0;
    if (cuda_backend_device_name(name, sizeof(name), &major, &minor) == 0)
        printf("device: %s (sm_%d%d)\n", name, major, minor);
    test_gemm();
    test_rmsnorm();
    test_rope();
    /* materialised: TF32; hd 16 is never fused, so "flash" must fall back */
    attn_shape_t small = {.B = 2, .T = 80, .n_heads = 4, .n_kv = 2, .hd = 16};
    test_attention(small, "materialised", 5e-3);
    test_attention(small, "flash", 5e-3);
    /* fused: bf16 inputs to the tensor cores (a relative step of 2^-8), T not
     * a multiple of the 64-row tile, GQA 4/2 and 2/1 */
    attn_shape_t h64 = {.B = 2, .T = 160, .n_heads = 4, .n_kv = 2, .hd = 64};
    attn_shape_t h128 = {.B = 1, .T = 300, .n_heads = 2, .n_kv = 1, .hd = 128};
    test_attention(h64, "materialised", 5e-3);
    test_attention(h64, "flash", 3e-2);
    test_attention(h128, "flash", 3e-2);
    test_elementwise();
    test_adamw();
    test_embedding_backward();
    GT_CHECK(cu->sync() == 0, "device error: %s", cuda_backend_error());
    if (gt_failures) {
        printf("%d check(s) failed\n", gt_failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
