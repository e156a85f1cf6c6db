/*
 * test_cuda_ops.c: every op of the CUDA backend against the CPU backend on
 * random inputs of awkward sizes (not multiples of 32, leading dimensions
 * wider than the rows, GQA, T not a multiple of the CPU's attention block),
 * so that a failure of the model test can be traced to one kernel. Tensors
 * marked [act] in backend.h are bf16 on the device: the test uploads them
 * rounded to bf16 and gives the CPU the same rounded values, so what differs
 * is the device's arithmetic and the rounding of its bf16 outputs. The bf16
 * weight ops (embedding_forward, xent) are covered by test_cuda_model.c.
 * Attention runs on both device paths (materialised with bf16
 * probabilities, and the fused "flash" kernels), chosen by attention_plan.
 *
 * Bounds (max|d| / max|cpu|): fp32 GEMM (TF32 tensor cores, 10-bit
 * significand) 5e-3; gemm_typed 2e-2 (fp32 inputs rounded to bf16, 8-bit
 * significand) or 5e-3 where the bf16 operand is widened exactly; attention
 * 3e-2 on both paths (bf16 inputs and probabilities or tiles); ops with a
 * bf16 output 4e-3 (one rounding, 2^-9 relative); fp32 element-wise and row
 * kernels <= 1e-5 (only the order of float sums and expf differ); dropout
 * masks must match exactly; AdamW <= 1e-5; sumsq (double accumulation)
 * relative <= 1e-9. Skips (77) without a CUDA device.
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

/* h rounded to bf16 in place, and a bf16 device copy of it */
static float *dev_bf(float *h, size_t n)
{
    uint16_t *st = malloc(n * sizeof(uint16_t));
    float *d = cu->alloc(n * sizeof(uint16_t));
    if (!st || !d) {
        printf("FAIL host/device alloc of %zu bf16\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        st[i] = gt_to_bf16(h[i]);
        h[i] = gt_from_bf16(st[i]);
    }
    if (cu->upload(d, st, n * sizeof(uint16_t)) < 0) {
        printf("FAIL device upload of %zu bf16: %s\n", n, cuda_backend_error());
        exit(1);
    }
    free(st);
    return d;
}

/* downloads n bf16 of d into a new host fp32 array */
static float *back_bf(const float *d, size_t n)
{
    uint16_t *st = malloc(n * sizeof(uint16_t));
    float *h = malloc(n * sizeof(float));
    if (!st || !h || cu->sync() < 0 || cu->download(st, d, n * sizeof(uint16_t)) < 0) {
        printf("FAIL device sync/download: %s\n", cuda_backend_error());
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        h[i] = gt_from_bf16(st[i]);
    free(st);
    return h;
}

static void expect_dev_bf(const char *what, const float *d, const float *ref, size_t n,
                          double max_rel)
{
    float *h = back_bf(d, n);
    gt_expect(what, h, ref, n, max_rel, 1.0 - fmax(max_rel, 1e-9));
    free(h);
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

/* gemm_typed on the operand types the model uses: each [act] operand is
 * bf16 on the device (rounded on the host for the CPU too), base weights
 * too; the bound follows cu_gemm_typed's choice: a product that rounds an
 * fp32 input to bf16 gets 2e-2, one that widens the bf16 side exactly 5e-3 */
static void test_gemm_typed(void)
{
    static const struct {
        backend_dtype_t at, bt, ct; /* operand types */
        bool ta, tb;                /* transposes */
        int M, N, K;                /* shape */
        double tol;                 /* bound */
        const char *what;           /* the model's use */
    } cases[] = {
        {BACKEND_ACT, BACKEND_W, BACKEND_ACT, false, true, 70, 45, 37, 4e-3, "proj: act W^T = act"},
        {BACKEND_ACT, BACKEND_W, BACKEND_F32, false, true, 70, 45, 37, 5e-3, "proj: act W^T + f32"},
        {BACKEND_F32, BACKEND_W, BACKEND_F32, false, false, 70, 45, 37, 2e-2, "proj_dx: f32 x W"},
        {BACKEND_ACT, BACKEND_F32, BACKEND_ACT, false, true, 70, 5, 37, 2e-2, "lora u: act x A^T"},
        {BACKEND_ACT, BACKEND_F32, BACKEND_ACT, false, true, 70, 45, 5, 2e-2, "lora: u B^T += act"},
        {BACKEND_F32, BACKEND_ACT, BACKEND_F32, true, false, 45, 5, 70, 5e-3, "lora dB: f32^T x u"},
        {BACKEND_F32, BACKEND_ACT, BACKEND_F32, true, false, 5, 45, 70, 2e-2, "lora dA: du^T act"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int M = cases[c].M, N = cases[c].N, K = cases[c].K, pad = 3;
        bool ta = cases[c].ta, tb = cases[c].tb;
        int ra = ta ? K : M, ca = ta ? M : K, rb = tb ? N : K, cb = tb ? K : N;
        int lda = ca + pad, ldb = cb + pad, ldc = N + pad;
        size_t na = (size_t)ra * lda, nb = (size_t)rb * ldb, nc = (size_t)M * ldc;
        float *A = hrand(na, 1.0), *Bm = hrand(nb, 1.0), *C = hrand(nc, 1.0);
        bool a_bf = cases[c].at != BACKEND_F32, b_bf = cases[c].bt != BACKEND_F32;
        bool c_bf = cases[c].ct != BACKEND_F32;
        float *dA = a_bf ? dev_bf(A, na) : dev(A, na), *dB = b_bf ? dev_bf(Bm, nb) : dev(Bm, nb);
        float *dC = c_bf ? dev_bf(C, nc) : dev(C, nc);
        float beta = c_bf && c == 0 ? 0.0f : 1.0f;
        cpu->gemm(ta, tb, M, N, K, 0.7f, A, lda, Bm, ldb, beta, C, ldc);
        cu->gemm_typed(ta, tb, M, N, K, 0.7f, dA, cases[c].at, lda, dB, cases[c].bt, ldb, beta, dC,
                       cases[c].ct, ldc);
        char what[96];
        snprintf(what, sizeof(what), "gemm_typed %s", cases[c].what);
        if (c_bf)
            expect_dev_bf(what, dC, C, nc, cases[c].tol);
        else
            expect_dev(what, dC, C, nc, cases[c].tol);
        free(A), free(Bm), free(C);
        cu->free(dA), cu->free(dB), cu->free(dC);
    }
}

/* C 300: rows move as float4; C 302: element by element */
static void test_rmsnorm(int C)
{
    int N = 19;
    char what[96];
    size_t n = (size_t)N * C;
    float *x = hrand(n, 1.5), *w = hrand(C, 1.0), *dy = hrand(n, 1.0), *dx = hrand(n, 1.0);
    float *out = calloc(n, sizeof(float)), *rstd = calloc(N, sizeof(float));
    float *dx_d = dev(dx, n), *x_d = dev(x, n), *w_d = dev(w, C), *dy_d = dev(dy, n);
    float *out_d = cu->alloc(n * sizeof(uint16_t)), *rstd_d = cu->alloc(N * sizeof(float));
    cpu->rmsnorm_forward(out, rstd, x, w, N, C, 1e-5f);
    cu->rmsnorm_forward(out_d, rstd_d, x_d, w_d, N, C, 1e-5f);
    snprintf(what, sizeof(what), "rmsnorm_forward C %d out (bf16)", C);
    expect_dev_bf(what, out_d, out, n, 4e-3);
    snprintf(what, sizeof(what), "rmsnorm_forward C %d rstd", C);
    expect_dev(what, rstd_d, rstd, N, 1e-5);
    cpu->rmsnorm_backward(dx, dy, x, w, rstd, N, C);
    cu->rmsnorm_backward(dx_d, dy_d, x_d, w_d, rstd_d, N, C);
    snprintf(what, sizeof(what), "rmsnorm_backward C %d dx (adds)", C);
    expect_dev(what, dx_d, dx, n, 1e-5);
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
    /* forward on the bf16 q/k, backward on an fp32 gradient */
    float *dx = hrand(n, 1.0);
    float *x_d = dev_bf(x, n), *dx_d = dev(dx, n), *ct_d = dev(ct, nt), *st_d = dev(st, nt);
    cpu->rope_forward(x, ct, st, B, T, nh, hd);
    cu->rope_forward(x_d, ct_d, st_d, B, T, nh, hd);
    expect_dev_bf("rope_forward (bf16)", x_d, x, n, 4e-3);
    cpu->rope_backward(dx, ct, st, B, T, nh, hd);
    cu->rope_backward(dx_d, ct_d, st_d, B, T, nh, hd);
    expect_dev("rope_backward", dx_d, dx, n, 1e-5);
    free(x), free(dx), free(ct), free(st);
    cu->free(x_d), cu->free(dx_d), cu->free(ct_d), cu->free(st_d);
}

/* attention on shape s with the device's mode `mode` against the CPU; the
 * plan must pick the fused path exactly when `fused` (-1: either, as the
 * device's shared memory allows); the probabilities are compared only on
 * the materialised path (the fused one keeps the log-sum-exp in att) */
static void test_attention(attn_shape_t s, const char *mode, int fused, double tol)
{
    if (cuda_backend_set_attention(mode) < 0) {
        printf("FAIL attention mode '%s' unknown\n", mode);
        gt_failures++;
        return;
    }
    attn_shape_t ps = s;
    size_t att_bytes = cu->attention_plan(&ps);
    size_t rows = (size_t)s.B * s.n_heads * s.T;
    size_t need = ps.path ? rows * 4 + rows * (size_t)s.hd * 2 : rows * (size_t)s.T * 2;
    printf("%-4s attention plan B%d T%d h%d/%d hd%d %s: path %s, %zu bytes of att (>= %zu)\n",
           (fused < 0 || ps.path == fused) && att_bytes >= need ? "ok" : "FAIL", s.B, s.T,
           s.n_heads, s.n_kv, s.hd, mode, ps.path ? "fused" : "materialised", att_bytes, need);
    GT_CHECK(fused < 0 || ps.path == fused, "attention plan: path %d, expected %d", ps.path, fused);
    GT_CHECK(att_bytes >= need, "attention plan: %zu bytes < %zu", att_bytes, need);
    size_t nq = (size_t)s.B * s.T * s.n_heads * s.hd, nk = (size_t)s.B * s.T * s.n_kv * s.hd;
    size_t na = (size_t)s.B * s.n_heads * s.T * s.T;
    float *q = hrand(nq, 1.0), *k = hrand(nk, 1.0), *v = hrand(nk, 1.0), *dy = hrand(nq, 1.0);
    float *y = calloc(nq, sizeof(float)), *att = calloc(na, sizeof(float));
    float *dq = calloc(nq, sizeof(float)), *dk = calloc(nk, sizeof(float));
    float *dv = calloc(nk, sizeof(float)), *scr = calloc((size_t)s.T * s.T, sizeof(float));
    /* garbage in the outputs (every op here writes, none adds), copied from
     * the fp32 inputs before these are rounded */
    float *dq_d = dev(q, nq), *dk_d = dev(k, nk), *dv_d = dev(v, nk);
    float *y_d = dev(dy, (nq + 1) / 2), *att_d = cu->alloc(att_bytes);
    float *q_d = dev_bf(q, nq), *k_d = dev_bf(k, nk), *v_d = dev_bf(v, nk), *dy_d = dev(dy, nq);
    char what[96];
    cpu->attention_forward(y, att, q, k, v, &s);
    cu->attention_forward(y_d, att_d, q_d, k_d, v_d, &ps);
#define ATT_WHAT(name)                                                                             \
    snprintf(what, sizeof(what), "attention %s B%d T%d h%d/%d hd%d %s", name, s.B, s.T, s.n_heads, \
             s.n_kv, s.hd, mode)
    if (ps.path == 0) {
        ATT_WHAT("probabilities (bf16)");
        expect_dev_bf(what, att_d, att, na, 4e-3);
    }
    ATT_WHAT("y (bf16)");
    expect_dev_bf(what, y_d, y, nq, tol);
    cpu->attention_backward(dq, dk, dv, dy, att, q, k, v, scr, &s);
    cu->attention_backward(dq_d, dk_d, dv_d, dy_d, att_d, q_d, k_d, v_d, NULL, &ps);
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
    cuda_backend_set_attention("flash");
}

static void test_elementwise(void)
{
    int64_t n = 100003;
    float *g = hrand(n, 2.0), *u = hrand(n, 1.0), *dh = hrand(n, 1.0);
    float *h = calloc(n, sizeof(float)), *dg = calloc(n, sizeof(float));
    float *du = calloc(n, sizeof(float));
    /* bf16 g, u for SwiGLU (rounding the host copies), fp32 copies of the
     * same values for the fp32 ops below */
    float *gb_d = dev_bf(g, n), *ub_d = dev_bf(u, n);
    float *g_d = dev(g, n), *u_d = dev(u, n), *dh_d = dev(dh, n);
    float *hb_d = cu->alloc(n * sizeof(uint16_t));
    float *h_d = cu->alloc(n * sizeof(float)), *dg_d = cu->alloc(n * sizeof(float));
    float *du_d = cu->alloc(n * sizeof(float));
    cpu->swiglu_forward(h, g, u, n);
    cu->swiglu_forward(hb_d, gb_d, ub_d, n);
    expect_dev_bf("swiglu_forward (bf16)", hb_d, h, n, 4e-3);
    cpu->swiglu_backward(dg, du, dh, g, u, n);
    cu->swiglu_backward(dg_d, du_d, dh_d, gb_d, ub_d, n);
    expect_dev_bf("swiglu_backward dg (bf16)", dg_d, dg, n, 4e-3);
    expect_dev_bf("swiglu_backward du (bf16)", du_d, du, n, 4e-3);

    /* dropout: the same hash, so the same zeros, on fp32 and on bf16 */
    cpu->dropout_forward(h, g, n, 0.3f, 12345);
    cu->dropout_forward(h_d, g_d, n, 0.3f, 12345);
    cu->dropout_act(hb_d, gb_d, n, 0.3f, 12345);
    float *hh = back(h_d, n), *hb = back_bf(hb_d, n);
    int64_t mism = 0, mism_bf = 0, zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        mism += (hh[i] == 0.0f) != (h[i] == 0.0f);
        mism_bf += (hb[i] == 0.0f) != (h[i] == 0.0f);
        zeros += h[i] == 0.0f;
    }
    printf("%-4s dropout p 0.3: %lld of %lld dropped, %lld masks differ (fp32), %lld (bf16)\n",
           mism == 0 && mism_bf == 0 ? "ok" : "FAIL", (long long)zeros, (long long)n,
           (long long)mism, (long long)mism_bf);
    GT_CHECK(mism == 0 && mism_bf == 0, "dropout masks differ");
    GT_CHECK(fabs((double)zeros / n - 0.3) < 0.01, "dropout rate %.4f", (double)zeros / n);
    gt_expect("dropout values", hh, h, n, 1e-6, 0.999999);
    gt_expect("dropout_act values (bf16)", hb, h, n, 4e-3, 0.9999);
    free(hh);
    free(hb);

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
    cu->free(gb_d), cu->free(ub_d), cu->free(hb_d);
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
    test_gemm_typed();
    test_rmsnorm(300);
    test_rmsnorm(302);
    test_rope();
    /* bf16 inputs (a relative step of 2^-8) on both paths; hd 16 is never
     * fused, so "flash" (the default) must plan the materialised path */
    attn_shape_t small = {.B = 2, .T = 80, .n_heads = 4, .n_kv = 2, .hd = 16};
    test_attention(small, "materialised", 0, 3e-2);
    test_attention(small, "flash", 0, 3e-2);
    /* fused: T not a multiple of the 64-row tile, T < 64, T not a multiple
     * of 4 (lse and D rows then load through registers), GQA 4/2, 2/1 and
     * 4/1; hd 128 is fused where the device grants the shared memory (not
     * A100) */
    attn_shape_t h64 = {.B = 2, .T = 160, .n_heads = 4, .n_kv = 2, .hd = 64};
    attn_shape_t h64s = {.B = 3, .T = 40, .n_heads = 2, .n_kv = 1, .hd = 64};
    attn_shape_t h64o = {.B = 2, .T = 99, .n_heads = 4, .n_kv = 1, .hd = 64};
    attn_shape_t h128 = {.B = 1, .T = 300, .n_heads = 2, .n_kv = 1, .hd = 128};
    test_attention(h64, "materialised", 0, 3e-2);
    test_attention(h64, "flash", 1, 3e-2);
    test_attention(h64s, "flash", 1, 3e-2);
    test_attention(h64o, "flash", 1, 3e-2);
    test_attention(h128, "flash", -1, 3e-2);
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
