/*
 * test_ops.c: every layer op of the CPU backend, forward against a direct
 * double-precision formula and backward against central finite differences
 * of the scalar L = sum(out * R) (R random), with step h = 1e-2 in float and
 * L accumulated in double. Tolerance: worst |analytic - numeric| / max
 * |numeric| <= 2e-3 (truncation ~h^2 plus float rounding of the forward).
 */
#include "backend.h"
#include "ft/jobspec.h"
#include "lora.h"
#include "model.h"
#include "mtest.h"

static const double H = 1e-2;
static const double TOL = 2e-3;

static double dot_d(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* numeric gradient of f over the n entries of x (x restored afterwards) */
typedef double (*loss_fn)(void *ctx);
static void numeric_grad(float *x, size_t n, loss_fn f, void *ctx, double *out)
{
    for (size_t i = 0; i < n; i++) {
        float save = x[i];
        x[i] = (float)(save + H);
        double lp = f(ctx);
        x[i] = (float)(save - H);
        double lm = f(ctx);
        x[i] = save;
        out[i] = (lp - lm) / (2.0 * H);
    }
}

/* ---- rmsnorm ---- */
typedef struct {
    const backend_t *be;
    float *x, *w, *out, *rstd, *R;
    int N, C;
} rms_ctx;

static double rms_loss(void *p)
{
    rms_ctx *c = p;
    c->be->rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->N, c->C, 1e-5f);
    return dot_d(c->out, c->R, (size_t)c->N * c->C);
}

static void test_rmsnorm(const backend_t *be)
{
    enum { N = 3, C = 16 };
    float x[N * C], w[C], out[N * C], rstd[N], R[N * C], dx[N * C] = {0};
    double num[N * C];
    mt_fill(x, N * C, 1.0);
    mt_fill(R, N * C, 1.0);
    for (int i = 0; i < C; i++)
        w[i] = (float)(1.0 + 0.3 * mt_normal());
    rms_ctx c = {be, x, w, out, rstd, R, N, C};
    rms_loss(&c);
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        double ss = 0.0;
        for (int j = 0; j < C; j++)
            ss += (double)x[i * C + j] * x[i * C + j];
        double r = 1.0 / sqrt(ss / C + 1e-5);
        for (int j = 0; j < C; j++) {
            double ref = x[i * C + j] * r * w[j];
            double e = fabs(ref - out[i * C + j]);
            worst = e > worst ? e : worst;
        }
    }
    printf("%-34s worst abs err vs double %.3e tol 1e-5 %s\n", "rmsnorm forward", worst,
           worst <= 1e-5 ? "ok" : "FAIL");
    MT_CHECK(worst <= 1e-5, "rmsnorm forward");
    be->rmsnorm_backward(dx, R, x, w, rstd, N, C);
    numeric_grad(x, N * C, rms_loss, &c, num);
    mt_compare("rmsnorm backward dx", dx, num, N * C, TOL);
}

/* ---- rope ---- */
typedef struct {
    const backend_t *be;
    float *x, *tmp, *R, *cs, *sn;
    int B, T, nh, hd;
} rope_ctx;

static double rope_loss(void *p)
{
    rope_ctx *c = p;
    size_t n = (size_t)c->B * c->T * c->nh * c->hd;
    memcpy(c->tmp, c->x, n * sizeof(float));
    c->be->rope_forward(c->tmp, c->cs, c->sn, c->B, c->T, c->nh, c->hd);
    return dot_d(c->tmp, c->R, n);
}

static void test_rope(const backend_t *be, bool llama3)
{
    enum { B = 2, T = 7, NH = 2, HD = 8, NX = B * T * NH * HD };
    llama_config_t cfg;
    mt_tiny_config(&cfg);
    cfg.head_dim = HD;
    if (llama3) {
        /* small original context so the three frequency bands all occur */
        cfg.rope_type = LLAMA_ROPE_LLAMA3;
        cfg.rope_theta = 500000.0;
        cfg.rope_factor = 8.0;
        cfg.rope_low_freq_factor = 1.0;
        cfg.rope_high_freq_factor = 4.0;
        cfg.rope_original_max_position = 64;
    }
    float cs[T * HD / 2], sn[T * HD / 2], x[NX], tmp[NX], R[NX], dx[NX];
    double num[NX];
    model_rope_tables(&cfg, T, cs, sn);
    /* table against the closed form in double */
    double worst = 0.0;
    for (int i = 0; i < HD / 2; i++) {
        double inv = 1.0 / pow(cfg.rope_theta, 2.0 * i / HD);
        if (llama3) {
            double wl = 2 * M_PI / inv, old = 64, lo = 1, hi = 4, f = 8;
            if (wl > old / lo)
                inv = inv / f;
            else if (wl >= old / hi) {
                double s = (old / wl - lo) / (hi - lo);
                inv = (1 - s) * inv / f + s * inv;
            }
        }
        for (int t = 0; t < T; t++) {
            double e1 = fabs(cos(t * inv) - cs[t * HD / 2 + i]);
            double e2 = fabs(sin(t * inv) - sn[t * HD / 2 + i]);
            worst = e1 > worst ? e1 : worst;
            worst = e2 > worst ? e2 : worst;
        }
    }
    printf("%-34s worst abs err vs double %.3e tol 1e-5 %s\n",
           llama3 ? "rope table (llama3 scaling)" : "rope table", worst,
           worst <= 1e-5 ? "ok" : "FAIL");
    MT_CHECK(worst <= 1e-5, "rope table");
    mt_fill(x, NX, 1.0);
    mt_fill(R, NX, 1.0);
    rope_ctx c = {be, x, tmp, R, cs, sn, B, T, NH, HD};
    rope_loss(&c);
    /* rotate_half: pair (i, i + hd/2) */
    worst = 0.0;
    for (int r = 0; r < B * T; r++) {
        int t = r % T;
        for (int h = 0; h < NH; h++) {
            for (int i = 0; i < HD / 2; i++) {
                size_t o = ((size_t)r * NH + h) * HD;
                double a = x[o + i], b = x[o + i + HD / 2];
                double cc = cs[t * HD / 2 + i], ss = sn[t * HD / 2 + i];
                double e1 = fabs(a * cc - b * ss - tmp[o + i]);
                double e2 = fabs(b * cc + a * ss - tmp[o + i + HD / 2]);
                worst = e1 > worst ? e1 : worst;
                worst = e2 > worst ? e2 : worst;
            }
        }
    }
    printf("%-34s worst abs err vs double %.3e tol 1e-5 %s\n", "rope forward (rotate_half)", worst,
           worst <= 1e-5 ? "ok" : "FAIL");
    MT_CHECK(worst <= 1e-5, "rope forward");
    memcpy(dx, R, sizeof(R));
    be->rope_backward(dx, cs, sn, B, T, NH, HD);
    numeric_grad(x, NX, rope_loss, &c, num);
    mt_compare(llama3 ? "rope backward (llama3)" : "rope backward", dx, num, NX, TOL);
}

/* ---- attention ---- */
typedef struct {
    const backend_t *be;
    float *q, *k, *v, *y, *att, *R;
    attn_shape_t s;
} att_ctx;

static double att_loss(void *p)
{
    att_ctx *c = p;
    c->be->attention_forward(c->y, c->att, c->q, c->k, c->v, &c->s);
    return dot_d(c->y, c->R, (size_t)c->s.B * c->s.T * c->s.n_heads * c->s.hd);
}

static void test_attention(const backend_t *be)
{
    enum { B = 2, T = 6, NH = 4, NKV = 2, HD = 4 };
    enum { NQ = B * T * NH * HD, NK = B * T * NKV * HD };
    float q[NQ], k[NK], v[NK], y[NQ], att[B * NH * T * T], R[NQ], scr[T * T];
    float dq[NQ], dk[NK], dv[NK];
    double num[NQ];
    mt_fill(q, NQ, 1.0);
    mt_fill(k, NK, 1.0);
    mt_fill(v, NK, 1.0);
    mt_fill(R, NQ, 1.0);
    att_ctx c = {be, q, k, v, y, att, R, {B, T, NH, NKV, HD, 0}};
    att_loss(&c);
    /* forward against a naive double implementation with repeat_kv */
    double worst = 0.0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int kh = h / (NH / NKV);
            for (int i = 0; i < T; i++) {
                double sc[T], mx = -1e300, sum = 0.0;
                for (int j = 0; j <= i; j++) {
                    double d = 0.0;
                    for (int e = 0; e < HD; e++)
                        d += (double)q[((b * T + i) * NH + h) * HD + e] *
                             k[((b * T + j) * NKV + kh) * HD + e];
                    sc[j] = d / sqrt((double)HD);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int j = 0; j <= i; j++)
                    sum += (sc[j] = exp(sc[j] - mx));
                for (int e = 0; e < HD; e++) {
                    double o = 0.0;
                    for (int j = 0; j <= i; j++)
                        o += sc[j] / sum * v[((b * T + j) * NKV + kh) * HD + e];
                    double err = fabs(o - y[((b * T + i) * NH + h) * HD + e]);
                    worst = err > worst ? err : worst;
                }
            }
        }
    printf("%-34s worst abs err vs double %.3e tol 1e-5 %s\n", "attention forward (GQA, causal)",
           worst, worst <= 1e-5 ? "ok" : "FAIL");
    MT_CHECK(worst <= 1e-5, "attention forward");
    be->attention_backward(dq, dk, dv, R, att, q, k, v, scr, &c.s);
    numeric_grad(q, NQ, att_loss, &c, num);
    mt_compare("attention backward dq", dq, num, NQ, TOL);
    numeric_grad(k, NK, att_loss, &c, num);
    mt_compare("attention backward dk (GQA sum)", dk, num, NK, TOL);
    numeric_grad(v, NK, att_loss, &c, num);
    mt_compare("attention backward dv (GQA sum)", dv, num, NK, TOL);
}

/* ---- swiglu ---- */
typedef struct {
    const backend_t *be;
    float *g, *u, *h, *R;
    int n;
} swi_ctx;

static double swi_loss(void *p)
{
    swi_ctx *c = p;
    c->be->swiglu_forward(c->h, c->g, c->u, c->n);
    return dot_d(c->h, c->R, (size_t)c->n);
}

static void test_swiglu(const backend_t *be)
{
    enum { N = 40 };
    float g[N], u[N], h[N], R[N], dg[N], du[N];
    double num[N];
    mt_fill(g, N, 2.0);
    mt_fill(u, N, 1.0);
    mt_fill(R, N, 1.0);
    swi_ctx c = {be, g, u, h, R, N};
    swi_loss(&c);
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        double ref = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        worst = fabs(ref - h[i]) > worst ? fabs(ref - h[i]) : worst;
    }
    printf("%-34s worst abs err vs double %.3e tol 1e-5 %s\n", "swiglu forward", worst,
           worst <= 1e-5 ? "ok" : "FAIL");
    MT_CHECK(worst <= 1e-5, "swiglu forward");
    be->swiglu_backward(dg, du, R, g, u, N);
    numeric_grad(g, N, swi_loss, &c, num);
    mt_compare("swiglu backward dgate", dg, num, N, TOL);
    numeric_grad(u, N, swi_loss, &c, num);
    mt_compare("swiglu backward dup", du, num, N, TOL);
}

/* ---- cross-entropy with lm_head, chunked ---- */
typedef struct {
    const backend_t *be;
    float *x, *W, *logits;
    int32_t *tg;
    int N, C, V;
} ce_ctx;

static double ce_loss(void *p)
{
    ce_ctx *c = p;
    int64_t n;
    return c->be->xent_forward_backward(NULL, c->x, c->W, c->tg, c->N, c->C, c->V, c->logits, 4,
                                        1.0f, &n);
}

static void test_xent(const backend_t *be)
{
    enum { N = 10, C = 8, V = 11 };
    float x[N * C], W[V * C], logits[4 * V], dx[N * C];
    int32_t tg[N] = {3, -100, 0, 10, 5, -100, -100, 7, 1, 2};
    double num[N * C];
    mt_fill(x, N * C, 1.0);
    mt_fill(W, V * C, 1.0);
    ce_ctx c = {be, x, W, logits, tg, N, C, V};
    int64_t n_tok = 0;
    double sum = be->xent_forward_backward(dx, x, W, tg, N, C, V, logits, 4, 1.0f / 7, &n_tok);
    double ref = 0.0;
    for (int i = 0; i < N; i++) {
        if (tg[i] < 0)
            continue;
        double l[V], mx = -1e300, s = 0.0;
        for (int v = 0; v < V; v++) {
            l[v] = dot_d(x + i * C, W + v * C, C);
            mx = l[v] > mx ? l[v] : mx;
        }
        for (int v = 0; v < V; v++)
            s += exp(l[v] - mx);
        ref += log(s) + mx - l[tg[i]];
    }
    double e = fabs(sum - ref) / fabs(ref);
    printf("%-34s sum %.9g ref %.9g rel err %.3e tokens %lld (want 7) tol 1e-6 %s\n",
           "cross-entropy forward", sum, ref, e, (long long)n_tok,
           e <= 1e-6 && n_tok == 7 ? "ok" : "FAIL");
    MT_CHECK(e <= 1e-6 && n_tok == 7, "cross-entropy forward");
    numeric_grad(x, N * C, ce_loss, &c, num);
    for (int i = 0; i < N * C; i++)
        num[i] /= 7.0;
    mt_compare("cross-entropy backward dx (chunks)", dx, num, N * C, TOL);
}

/* ---- embedding ---- */
static void test_embedding(const backend_t *be)
{
    enum { N = 6, C = 5, V = 4 };
    float emb[V * C], out[N * C], R[N * C], demb[V * C] = {0};
    double num[V * C];
    int32_t tok[N] = {1, 3, 1, 0, 3, 3};
    mt_fill(emb, V * C, 1.0);
    mt_fill(R, N * C, 1.0);
    be->embedding_forward(out, tok, emb, N, C);
    int same = 1;
    for (int i = 0; i < N; i++)
        same &= memcmp(out + i * C, emb + tok[i] * C, C * sizeof(float)) == 0;
    printf("%-34s rows equal the table rows: %s\n", "embedding forward", same ? "ok" : "FAIL");
    MT_CHECK(same, "embedding forward");
    be->embedding_backward(demb, tok, R, N, C);
    /* L = sum(out * R) is linear in emb: numeric gradient by central difference */
    for (int i = 0; i < V * C; i++) {
        float s = emb[i];
        emb[i] = (float)(s + H);
        be->embedding_forward(out, tok, emb, N, C);
        double lp = dot_d(out, R, N * C);
        emb[i] = (float)(s - H);
        be->embedding_forward(out, tok, emb, N, C);
        double lm = dot_d(out, R, N * C);
        emb[i] = s;
        num[i] = (lp - lm) / (2 * H);
    }
    mt_compare("embedding backward (repeated ids)", demb, num, V * C, TOL);
}

/* ---- LoRA branch of the q,k,v group ---- */
typedef struct {
    const backend_t *be;
    const lora_layout_t *lay;
    float *params, *x, *u, *out[3], *R[3];
    int N;
    float p;
    lora_scratch_t *sc;
} lora_ctx;

static double lora_loss(void *pp)
{
    lora_ctx *c = pp;
    double s = 0.0;
    for (int j = 0; j < 3; j++)
        memset(c->out[j], 0, sizeof(float) * (size_t)c->N * c->lay->out_dim[j]);
    lora_group_forward(c->be, c->lay, c->params, 1, &lora_groups[0], c->out, c->x, c->u, c->N, c->p,
                       77, c->sc);
    for (int j = 0; j < 3; j++)
        s += dot_d(c->out[j], c->R[j], (size_t)c->N * c->lay->out_dim[j]);
    return s;
}

static void test_lora(const backend_t *be, float p, uint32_t mask)
{
    llama_config_t cfg;
    mt_tiny_config(&cfg);
    cfg.hidden_size = 12;
    cfg.n_heads = 2;
    cfg.n_kv_heads = 1;
    cfg.head_dim = 6;
    lora_layout_t lay;
    if (lora_layout_init(&lay, &cfg, 3, 6.0, false, mask) < 0) {
        MT_CHECK(0, "lora layout");
        return;
    }
    int N = 5, C = 12;
    size_t np = lay.n_params;
    float *params = malloc(np * sizeof(float)), *grads = calloc(np, sizeof(float));
    double *num = malloc(np * sizeof(double) + N * C * sizeof(double));
    float x[5 * 12], u[5 * 9], dx[5 * 12] = {0}, xd[5 * 12], dxd[5 * 12], du[5 * 9];
    float o0[5 * 12], o1[5 * 6], o2[5 * 6], r0[5 * 12], r1[5 * 6], r2[5 * 6];
    lora_init_params(&lay, params, 5, 0.5);
    mt_fill(x, N * C, 1.0);
    mt_fill(r0, 60, 1.0);
    mt_fill(r1, 30, 1.0);
    mt_fill(r2, 30, 1.0);
    lora_scratch_t sc = {xd, dxd, du};
    lora_ctx c = {be, &lay, params, x, u, {o0, o1, o2}, {r0, r1, r2}, N, p, &sc};
    lora_loss(&c);
    const float *dout[3] = {r0, r1, r2};
    lora_group_backward(be, &lay, params, grads, 1, &lora_groups[0], dout, x, u, dx, N, p, 77, &sc);
    char label[64];
    /* only layer 1's parameters matter; check all of them (layer 0 grads stay 0) */
    numeric_grad(params, np, lora_loss, &c, num);
    snprintf(label, sizeof label, "lora qkv dA,dB (p=%.1f, mask %#x)", p, (unsigned)mask);
    mt_compare(label, grads, num, np, TOL);
    numeric_grad(x, (size_t)N * C, lora_loss, &c, num);
    snprintf(label, sizeof label, "lora qkv dx (p=%.1f, mask %#x)", p, (unsigned)mask);
    mt_compare(label, dx, num, (size_t)N * C, TOL);
    free(params);
    free(grads);
    free(num);
    lora_layout_free(&lay);
}

int main(void)
{
    const backend_t *be = backend_cpu();
    be->set_threads(1);
    test_rmsnorm(be);
    test_rope(be, false);
    test_rope(be, true);
    test_attention(be);
    test_swiglu(be);
    test_xent(be);
    test_embedding(be);
    test_lora(be, 0.0f, 0x7f);
    test_lora(be, 0.0f, (1u << FT_TM_Q) | (1u << FT_TM_V));
    test_lora(be, 0.3f, 0x7f);
    printf("%s: %d failure(s)\n", mt_failures ? "FAIL" : "PASS", mt_failures);
    return mt_failures ? 1 : 0;
}
