/*
 * model.c: Llama + LoRA forward and backward over (B, T) tokens, llm.c style:
 * one activation buffer carved by a sizes table, one *_forward / *_backward
 * pass over the layers, every projection one GEMM over the N = B*T rows.
 *
 * Invariants: base weights are read only; LoRA gradients accumulate (+=)
 * across calls until model_zero_grad; activations of the last train call are
 * valid until the next call. Backward needs the forward activations of the
 * same call, so model_step does both in one go.
 * Cost per step: about 4 * N * (base matmul params) flops for forward + dX,
 * plus attention 12 * N * T * Hq per layer, plus the LoRA terms.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

/* Optional time per op family (model_profile_*), for the benchmark. */
enum { PF_PROJ, PF_PROJ_DX, PF_LORA, PF_LORA_BWD, PF_ATTN, PF_ATTN_BWD, PF_XENT, PF_NORM,
       PF_ROPE, PF_SWIGLU, PF_COPY, PF__COUNT };
static const char *const pf_names[PF__COUNT] = {
    "proj_fwd", "proj_dx", "lora_fwd", "lora_bwd", "attn_fwd",  "attn_bwd",
    "lm_head_xent", "rmsnorm", "rope", "swiglu", "copy_embed"};
static bool pf_on;                 /* profiling enabled */
static double pf_sec[PF__COUNT];   /* seconds per family */

static double pf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A device backend queues work: when profiling, wait for it (be->sync) on
 * both sides so that the time lands in the right family. */
#define PF_SYNC() ((void)(be->sync ? be->sync() : 0))
#define PF(cat, stmt)                                                                         \
    do {                                                                                      \
        double pf_t0_ = pf_on ? (PF_SYNC(), pf_now()) : 0.0;                                  \
        stmt;                                                                                 \
        if (pf_on) {                                                                          \
            PF_SYNC();                                                                        \
            pf_sec[cat] += pf_now() - pf_t0_;                                                 \
        }                                                                                     \
    } while (0)

/* Turning profiling on starts the totals from zero; turning it off keeps
 * them for model_profile_report. */
void model_profile_enable(bool on)
{
    if (on && !pf_on)
        memset(pf_sec, 0, sizeof(pf_sec));
    pf_on = on;
}

int model_profile_report(char *buf, size_t len)
{
    size_t off = 0;
    for (int i = 0; i < PF__COUNT && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s\"%s_s\": %.4f", i ? ", " : "",
                                pf_names[i], pf_sec[i]);
    return (int)off;
}

/* Activations kept for backward, per layer unless marked; [act] ones hold
 * the backend's activation type (backend.h), the rest fp32. */
enum {
    ACT_RES,      /* (L+1, N, C) residual stream entering each layer; [L] = final */
    ACT_RES_MID,  /* (L, N, C) residual after attention */
    ACT_LN1,      /* (L, N, C) [act] */
    ACT_RSTD1,    /* (L, N) */
    ACT_Q,        /* (L, N, Hq) [act] after RoPE */
    ACT_K,        /* (L, N, Hkv) [act] after RoPE */
    ACT_V,        /* (L, N, Hkv) [act] */
    ACT_ATT,      /* (L, B, nh, T, T) softmax probabilities, or attention_plan's bytes */
    ACT_Y,        /* (L, N, Hq) [act] attention output before o_proj */
    ACT_LN2,      /* (L, N, C) [act] */
    ACT_RSTD2,    /* (L, N) */
    ACT_G,        /* (L, N, I) [act] gate_proj output */
    ACT_U,        /* (L, N, I) [act] up_proj output */
    ACT_H,        /* (L, N, I) [act] silu(g) * u */
    ACT_LORA_U,   /* (L, N, lora_u_width) [act] LoRA A outputs, group after group */
    ACT_LNF,      /* (N, C) [act] final norm output */
    ACT_RSTDF,    /* (N) */
    /* scratch for backward, not per layer */
    ACT_DRES,     /* (N, C) gradient of the residual stream */
    ACT_DLN,      /* (N, C) */
    ACT_DY,       /* (N, Hq) */
    ACT_DQ,       /* (N, Hq) */
    ACT_DK,       /* (N, Hkv) */
    ACT_DV,       /* (N, Hkv) */
    ACT_DH,       /* (N, I) */
    ACT_DG,       /* (N, I) */
    ACT_DU,       /* (N, I) */
    ACT_ATT_SCR,  /* (T, T) */
    ACT_XD,       /* (N, maxin) [act] dropout scratch */
    ACT_DXD,      /* (N, maxin) */
    ACT_LDU,      /* (N, 3r) LoRA du of a group */
    ACT_LOGITS,   /* (chunk, V) */
    ACT__COUNT
};

/* How each tensor is stored: slices (1 for scratch, L per layer, L+1 for
 * the residual stream) of one element type. Every slice starts on an
 * ACT_ALIGN boundary (bf16 vector loads, tensor-core GEMMs). */
enum { AK_F32, AK_ACT, AK_ATT };  /* fp32, [act], attention_plan's bytes */
enum { AS_ONE, AS_LAYERS, AS_LAYERS_1 };
static const struct {
    unsigned char type;    /* AK_* */
    unsigned char slices;  /* AS_* */
} act_kind[ACT__COUNT] = {
    [ACT_RES] = {AK_F32, AS_LAYERS_1},  [ACT_RES_MID] = {AK_F32, AS_LAYERS},
    [ACT_LN1] = {AK_ACT, AS_LAYERS},    [ACT_RSTD1] = {AK_F32, AS_LAYERS},
    [ACT_Q] = {AK_ACT, AS_LAYERS},      [ACT_K] = {AK_ACT, AS_LAYERS},
    [ACT_V] = {AK_ACT, AS_LAYERS},      [ACT_ATT] = {AK_ATT, AS_LAYERS},
    [ACT_Y] = {AK_ACT, AS_LAYERS},      [ACT_LN2] = {AK_ACT, AS_LAYERS},
    [ACT_RSTD2] = {AK_F32, AS_LAYERS},  [ACT_G] = {AK_ACT, AS_LAYERS},
    [ACT_U] = {AK_ACT, AS_LAYERS},      [ACT_H] = {AK_ACT, AS_LAYERS},
    [ACT_LORA_U] = {AK_ACT, AS_LAYERS}, [ACT_LNF] = {AK_ACT, AS_ONE},
    [ACT_RSTDF] = {AK_F32, AS_ONE},     [ACT_DRES] = {AK_F32, AS_ONE},
    [ACT_DLN] = {AK_F32, AS_ONE},       [ACT_DY] = {AK_F32, AS_ONE},
    [ACT_DQ] = {AK_F32, AS_ONE},        [ACT_DK] = {AK_F32, AS_ONE},
    [ACT_DV] = {AK_F32, AS_ONE},        [ACT_DH] = {AK_F32, AS_ONE},
    [ACT_DG] = {AK_ACT, AS_ONE},        [ACT_DU] = {AK_ACT, AS_ONE},
    [ACT_ATT_SCR] = {AK_F32, AS_ONE},   [ACT_XD] = {AK_ACT, AS_ONE},
    [ACT_DXD] = {AK_F32, AS_ONE},       [ACT_LDU] = {AK_F32, AS_ONE},
    [ACT_LOGITS] = {AK_F32, AS_ONE},
};
#define ACT_ALIGN ((size_t)256)

struct model {
    llama_config_t cfg;            /* copy of the base config */
    const llama_weights_t *w;      /* frozen base weights: borrowed, or &wdev */
    llama_weights_t wdev;          /* backend copy (be->weights_upload), else unused */
    bool w_uploaded;               /* wdev holds a backend copy to free */
    const backend_t *be;           /* compute */
    lora_layout_t lay;             /* where each adapter lives */
    float *params;                 /* (lay.n_params) LoRA A/B values */
    float *grads;                  /* (lay.n_params) their gradients */
    float dropout;                 /* LoRA input dropout probability */
    int B, T, N;                   /* rows, tokens per row, B*T */
    int C, I, V, Hq, Hkv;          /* widths */
    int chunk;                     /* lm_head rows per chunk */
    size_t u_width;                /* per-row floats of LoRA u per layer */
    size_t u_group_off[LORA_N_GROUPS]; /* offset of each group's u in a layer's block */
    attn_shape_t att_shape;        /* attention shape, with the backend's plan */
    size_t act_stride[ACT__COUNT]; /* bytes per slice (layer) of each tensor, aligned */
    void *act_mem;                 /* one buffer for all of them */
    void *act[ACT__COUNT];         /* carved pointers: fp32 or [act] per act_kind */
    float *rope_cos, *rope_sin;    /* (T, hd/2) */
    size_t bytes;                  /* total allocation */
};

void model_rope_tables(const llama_config_t *cfg, int T, float *cos_t, float *sin_t)
{
    int hd = cfg->head_dim, half = hd / 2;
    for (int i = 0; i < half; i++) {
        float inv = 1.0f / powf((float)cfg->rope_theta, (float)(2 * i) / (float)hd);
        if (cfg->rope_type == LLAMA_ROPE_LLAMA3) {
            double factor = cfg->rope_factor, lo = cfg->rope_low_freq_factor,
                   hi = cfg->rope_high_freq_factor, old = cfg->rope_original_max_position;
            double wavelen = 2.0 * M_PI / (double)inv;
            if (wavelen > old / lo) {
                inv = (float)(inv / factor);
            } else if (wavelen >= old / hi) {
                double smooth = (old / wavelen - lo) / (hi - lo);
                inv = (float)((1.0 - smooth) * inv / factor + smooth * inv);
            }
        }
        for (int t = 0; t < T; t++) {
            float ang = (float)t * inv;
            cos_t[(size_t)t * half + i] = (float)cos((double)ang);
            sin_t[(size_t)t * half + i] = (float)sin((double)ang);
        }
    }
}

/* slice l of tensor a: fp32 or [act] by act_kind, so returned untyped */
static void *layer_act(const model_t *m, int a, int l)
{
    return (char *)m->act[a] + m->act_stride[a] * (size_t)l;
}

model_t *model_new(const llama_config_t *cfg, const llama_weights_t *w, const backend_t *be,
                   const model_opts_t *o, ft_err_t *err)
{
    model_t *m = calloc(1, sizeof(*m));
    if (!m) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return NULL;
    }
    if (o->B < 1 || o->T < 1 || cfg->head_dim % 2 != 0 || cfg->n_kv_heads < 1 ||
        cfg->n_heads % cfg->n_kv_heads != 0) {
        ft_err_set(err, FT_EBADFIELD, "bad model shape (B %d, T %d, head_dim %d, heads %d/%d)",
                   o->B, o->T, cfg->head_dim, cfg->n_heads, cfg->n_kv_heads);
        goto fail;
    }
    if (o->dropout < 0.0 || o->dropout >= 1.0) {
        ft_err_set(err, FT_EBADFIELD, "'lora_dropout': expected a value in [0, 1)");
        goto fail;
    }
    m->cfg = *cfg;
    m->w = w;
    m->be = be;
    m->dropout = (float)o->dropout;
    m->B = o->B;
    m->T = o->T;
    m->N = o->B * o->T;
    m->C = cfg->hidden_size;
    m->I = cfg->intermediate_size;
    m->V = cfg->vocab_size;
    m->Hq = cfg->n_heads * cfg->head_dim;
    m->Hkv = cfg->n_kv_heads * cfg->head_dim;
    m->chunk = backend_xent_chunk(m->N, m->V);
    if (lora_layout_init(&m->lay, cfg, o->r, o->alpha, o->use_rslora, o->mask) < 0) {
        ft_err_set(err, FT_EBADFIELD, "bad LoRA layout (r %d)", o->r);
        goto fail;
    }
    size_t uw = 0;
    for (int g = 0; g < LORA_N_GROUPS; g++) {
        m->u_group_off[g] = uw;
        uw += (size_t)lora_group_width(&m->lay, &lora_groups[g]);
    }
    m->u_width = uw;

    size_t L = (size_t)cfg->n_layers, N = (size_t)m->N, C = (size_t)m->C, I = (size_t)m->I;
    size_t Hq = (size_t)m->Hq, Hkv = (size_t)m->Hkv, T = (size_t)m->T;
    size_t maxin = C > I ? C : I;
    maxin = maxin > Hq ? maxin : Hq;
    attn_shape_t as = {m->B, m->T, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim, 0};
    size_t att_bytes = be->attention_plan ? be->attention_plan(&as)
                                          : (size_t)m->B * as.n_heads * T * T * sizeof(float);
    m->att_shape = as;
    size_t s[ACT__COUNT];  /* elements of one slice */
    s[ACT_RES] = N * C;
    s[ACT_RES_MID] = N * C;
    s[ACT_LN1] = N * C;
    s[ACT_RSTD1] = N;
    s[ACT_Q] = N * Hq;
    s[ACT_K] = N * Hkv;
    s[ACT_V] = N * Hkv;
    s[ACT_ATT] = 0;  /* att_bytes */
    s[ACT_Y] = N * Hq;
    s[ACT_LN2] = N * C;
    s[ACT_RSTD2] = N;
    s[ACT_G] = N * I;
    s[ACT_U] = N * I;
    s[ACT_H] = N * I;
    s[ACT_LORA_U] = N * uw;
    s[ACT_LNF] = N * C;
    s[ACT_RSTDF] = N;
    s[ACT_DRES] = N * C;
    s[ACT_DLN] = N * C;
    s[ACT_DY] = N * Hq;
    s[ACT_DQ] = N * Hq;
    s[ACT_DK] = N * Hkv;
    s[ACT_DV] = N * Hkv;
    s[ACT_DH] = N * I;
    s[ACT_DG] = N * I;
    s[ACT_DU] = N * I;
    s[ACT_ATT_SCR] = T * T;
    s[ACT_XD] = m->dropout > 0.0f ? N * maxin : 0;
    s[ACT_DXD] = m->dropout > 0.0f ? N * maxin : 0;
    s[ACT_LDU] = N * 3 * (size_t)o->r;
    s[ACT_LOGITS] = (size_t)m->chunk * (size_t)m->V;
    const size_t elem[3] = {[AK_F32] = sizeof(float), [AK_ACT] = backend_act_bytes(be),
                            [AK_ATT] = 0};
    const size_t n_slices[3] = {[AS_ONE] = 1, [AS_LAYERS] = L, [AS_LAYERS_1] = L + 1};
    size_t total = 0;
    for (int a = 0; a < ACT__COUNT; a++) {
        size_t b = act_kind[a].type == AK_ATT ? att_bytes : s[a] * elem[act_kind[a].type];
        m->act_stride[a] = (b + ACT_ALIGN - 1) / ACT_ALIGN * ACT_ALIGN;
        total += m->act_stride[a] * n_slices[act_kind[a].slices];
    }
    m->act_mem = be->alloc(total);
    m->params = be->alloc(m->lay.n_params * sizeof(float));
    m->grads = be->alloc(m->lay.n_params * sizeof(float));
    m->rope_cos = be->alloc(T * (size_t)(cfg->head_dim / 2) * sizeof(float));
    m->rope_sin = be->alloc(T * (size_t)(cfg->head_dim / 2) * sizeof(float));
    if (!m->act_mem || !m->params || !m->grads || !m->rope_cos || !m->rope_sin) {
        ft_err_set(err, FT_EINTERNAL, "out of memory for the model (%zu MiB of activations)",
                   total >> 20);
        goto fail;
    }
    char *p = m->act_mem;
    for (int a = 0; a < ACT__COUNT; a++) {
        m->act[a] = p;
        p += m->act_stride[a] * n_slices[act_kind[a].slices];
    }
    m->bytes = total + 2 * m->lay.n_params * sizeof(float);
    if (be->upload) {
        /* device backend: tables built on the host, then copied over */
        size_t tb = T * (size_t)(cfg->head_dim / 2) * sizeof(float);
        float *hc = malloc(tb), *hs = malloc(tb);
        int rc = -1;
        if (hc && hs) {
            model_rope_tables(cfg, m->T, hc, hs);
            rc = be->upload(m->rope_cos, hc, tb) < 0 || be->upload(m->rope_sin, hs, tb) < 0
                     ? -1 : 0;
        }
        free(hc);
        free(hs);
        if (rc < 0) {
            ft_err_set(err, FT_EINTERNAL, "cannot copy the rope tables to the '%s' backend",
                       be->name);
            goto fail;
        }
    } else {
        model_rope_tables(cfg, m->T, m->rope_cos, m->rope_sin);
    }
    if (be->weights_upload) {
        if (be->weights_upload(cfg, w, &m->wdev) < 0) {
            ft_err_set(err, FT_EINTERNAL, "cannot copy the base weights to the '%s' backend",
                       be->name);
            goto fail;
        }
        m->w_uploaded = true;
        m->w = &m->wdev;
    }
    return m;
fail:
    model_destroy(&m);
    return NULL;
}

void model_destroy(model_t **pm)
{
    model_t *m = *pm;
    if (!m)
        return;
    if (m->be) {
        m->be->free(m->act_mem);
        m->be->free(m->params);
        m->be->free(m->grads);
        m->be->free(m->rope_cos);
        m->be->free(m->rope_sin);
        if (m->w_uploaded)
            m->be->weights_free(&m->wdev);
    }
    lora_layout_free(&m->lay);
    free(m);
    *pm = NULL;
}

const lora_layout_t *model_lora_layout(const model_t *m)
{
    return &m->lay;
}

float *model_lora_params(model_t *m)
{
    return m->params;
}

float *model_lora_grads(model_t *m)
{
    return m->grads;
}

/* dst = src / x = 0 on n floats of backend memory */
static void be_copy(const backend_t *be, float *dst, const float *src, size_t n)
{
    if (be->copy)
        be->copy(dst, src, (int64_t)n);
    else
        memcpy(dst, src, n * sizeof(float));
}

static void be_zero(const backend_t *be, float *x, size_t n)
{
    if (be->zero)
        be->zero(x, (int64_t)n);
    else
        memset(x, 0, n * sizeof(float));
}

void model_zero_grad(model_t *m)
{
    be_zero(m->be, m->grads, m->lay.n_params);
}

size_t model_bytes(const model_t *m)
{
    return m->bytes;
}

static uint64_t layer_key(uint64_t key, int l)
{
    return key ^ ((uint64_t)(l + 1) * 0xD1B54A32D192ED03ull);
}

/* out (N, o) = x [act] (N, in) W^T (W is (o, in)), beta 0 or 1 (accumulate);
 * out is [act] (q, k, v, gate, up) or the fp32 residual (o, down): ot */
static void proj(const model_t *m, void *out, backend_dtype_t ot, const act_t *x, const float *W,
                 int in, int o, float beta)
{
    backend_gemm(m->be, false, true, m->N, o, in, 1.0f, x, BACKEND_ACT, in, W, BACKEND_W, in,
                 beta, out, ot, o);
}

/* dx (N, in) (+)= dy (N, o) W (o, in); dx fp32, dy of type dt */
static void proj_dx(const model_t *m, float *dx, const void *dy, backend_dtype_t dt,
                    const float *W, int in, int o, float beta)
{
    backend_gemm(m->be, false, false, m->N, in, o, 1.0f, dy, dt, o, W, BACKEND_W, in, beta, dx,
                 BACKEND_F32, in);
}

static void layer_forward(model_t *m, int l, float p, uint64_t key)
{
    const backend_t *be = m->be;
    const llama_layer_weights_t *lw = &m->w->layers[l];
    int N = m->N, C = m->C, I = m->I, Hq = m->Hq, Hkv = m->Hkv;
    float eps = (float)m->cfg.rms_norm_eps;
    float *res = layer_act(m, ACT_RES, l), *res_out = layer_act(m, ACT_RES, l + 1);
    float *res_mid = layer_act(m, ACT_RES_MID, l);
    act_t *ln1 = layer_act(m, ACT_LN1, l), *ln2 = layer_act(m, ACT_LN2, l);
    act_t *q = layer_act(m, ACT_Q, l), *k = layer_act(m, ACT_K, l), *v = layer_act(m, ACT_V, l);
    act_t *y = layer_act(m, ACT_Y, l), *att = layer_act(m, ACT_ATT, l);
    act_t *g = layer_act(m, ACT_G, l), *u = layer_act(m, ACT_U, l), *h = layer_act(m, ACT_H, l);
    act_t *lu = layer_act(m, ACT_LORA_U, l);
    lora_scratch_t sc = {m->act[ACT_XD], m->act[ACT_DXD], m->act[ACT_LDU]};
    uint64_t lk = layer_key(key, l);
    const attn_shape_t *as = &m->att_shape;

    /* attention block */
    PF(PF_NORM, be->rmsnorm_forward(ln1, layer_act(m, ACT_RSTD1, l), res, lw->attn_norm, N, C, eps));
    PF(PF_PROJ, proj(m, q, BACKEND_ACT, ln1, lw->q, C, Hq, 0.0f));
    PF(PF_PROJ, proj(m, k, BACKEND_ACT, ln1, lw->k, C, Hkv, 0.0f));
    PF(PF_PROJ, proj(m, v, BACKEND_ACT, ln1, lw->v, C, Hkv, 0.0f));
    float *qkv[3] = {q, k, v};
    PF(PF_LORA, lora_group_forward(be, &m->lay, m->params, l, &lora_groups[0], qkv, ln1,
                       backend_act_at(be, lu, m->u_group_off[0] * N), N, p, lk, &sc));
    PF(PF_ROPE, be->rope_forward(q, m->rope_cos, m->rope_sin, m->B, m->T, m->cfg.n_heads, m->cfg.head_dim));
    PF(PF_ROPE, be->rope_forward(k, m->rope_cos, m->rope_sin, m->B, m->T, m->cfg.n_kv_heads,
                     m->cfg.head_dim));
    PF(PF_ATTN, be->attention_forward(y, att, q, k, v, as));
    PF(PF_COPY, be_copy(be, res_mid, res, (size_t)N * C));
    PF(PF_PROJ, proj(m, res_mid, BACKEND_F32, y, lw->o, Hq, C, 1.0f));
    float *o_out[1] = {res_mid};
    PF(PF_LORA, lora_group_forward(be, &m->lay, m->params, l, &lora_groups[1], o_out, y,
                       backend_act_at(be, lu, m->u_group_off[1] * N), N, p, lk, &sc));

    /* MLP block */
    PF(PF_NORM, be->rmsnorm_forward(ln2, layer_act(m, ACT_RSTD2, l), res_mid, lw->mlp_norm, N, C, eps));
    PF(PF_PROJ, proj(m, g, BACKEND_ACT, ln2, lw->gate, C, I, 0.0f));
    PF(PF_PROJ, proj(m, u, BACKEND_ACT, ln2, lw->up, C, I, 0.0f));
    float *gu[2] = {g, u};
    PF(PF_LORA, lora_group_forward(be, &m->lay, m->params, l, &lora_groups[2], gu, ln2,
                       backend_act_at(be, lu, m->u_group_off[2] * N), N, p, lk, &sc));
    PF(PF_SWIGLU, be->swiglu_forward(h, g, u, (int64_t)N * I));
    PF(PF_COPY, be_copy(be, res_out, res_mid, (size_t)N * C));
    PF(PF_PROJ, proj(m, res_out, BACKEND_F32, h, lw->down, I, C, 1.0f));
    float *d_out[1] = {res_out};
    PF(PF_LORA, lora_group_forward(be, &m->lay, m->params, l, &lora_groups[3], d_out, h,
                       backend_act_at(be, lu, m->u_group_off[3] * N), N, p, lk, &sc));
}

/* On entry ACT_DRES holds dL/d(res[l+1]); on exit dL/d(res[l]). */
static void layer_backward(model_t *m, int l, float p, uint64_t key)
{
    const backend_t *be = m->be;
    const llama_layer_weights_t *lw = &m->w->layers[l];
    int N = m->N, C = m->C, I = m->I, Hq = m->Hq, Hkv = m->Hkv;
    float *res = layer_act(m, ACT_RES, l), *res_mid = layer_act(m, ACT_RES_MID, l);
    act_t *ln1 = layer_act(m, ACT_LN1, l), *ln2 = layer_act(m, ACT_LN2, l);
    act_t *q = layer_act(m, ACT_Q, l), *k = layer_act(m, ACT_K, l), *v = layer_act(m, ACT_V, l);
    act_t *y = layer_act(m, ACT_Y, l), *att = layer_act(m, ACT_ATT, l);
    act_t *g = layer_act(m, ACT_G, l), *u = layer_act(m, ACT_U, l), *h = layer_act(m, ACT_H, l);
    act_t *lu = layer_act(m, ACT_LORA_U, l);
    float *dres = m->act[ACT_DRES], *dln = m->act[ACT_DLN], *dy = m->act[ACT_DY];
    float *dq = m->act[ACT_DQ], *dk = m->act[ACT_DK], *dv = m->act[ACT_DV];
    float *dh = m->act[ACT_DH];
    act_t *dg = m->act[ACT_DG], *du = m->act[ACT_DU];
    lora_scratch_t sc = {m->act[ACT_XD], m->act[ACT_DXD], m->act[ACT_LDU]};
    uint64_t lk = layer_key(key, l);
    const attn_shape_t *as = &m->att_shape;

    /* MLP block: res_out = res_mid + down(h) */
    PF(PF_PROJ_DX, proj_dx(m, dh, dres, BACKEND_F32, lw->down, I, C, 0.0f));
    const float *d_out[1] = {dres};
    PF(PF_LORA_BWD, lora_group_backward(be, &m->lay, m->params, m->grads, l, &lora_groups[3], d_out, h,
                        backend_act_at(be, lu, m->u_group_off[3] * N), dh, N, p, lk, &sc));
    PF(PF_SWIGLU, be->swiglu_backward(dg, du, dh, g, u, (int64_t)N * I));
    PF(PF_PROJ_DX, proj_dx(m, dln, dg, BACKEND_ACT, lw->gate, C, I, 0.0f));
    PF(PF_PROJ_DX, proj_dx(m, dln, du, BACKEND_ACT, lw->up, C, I, 1.0f));
    const float *dgu[2] = {dg, du};
    PF(PF_LORA_BWD, lora_group_backward(be, &m->lay, m->params, m->grads, l, &lora_groups[2], dgu, ln2,
                        backend_act_at(be, lu, m->u_group_off[2] * N), dln, N, p, lk, &sc));
    PF(PF_NORM, be->rmsnorm_backward(dres, dln, res_mid, lw->mlp_norm, layer_act(m, ACT_RSTD2, l), N, C));

    /* attention block: res_mid = res + o(attn(rope(q), rope(k), v)) */
    PF(PF_PROJ_DX, proj_dx(m, dy, dres, BACKEND_F32, lw->o, Hq, C, 0.0f));
    const float *o_out[1] = {dres};
    PF(PF_LORA_BWD, lora_group_backward(be, &m->lay, m->params, m->grads, l, &lora_groups[1], o_out, y,
                        backend_act_at(be, lu, m->u_group_off[1] * N), dy, N, p, lk, &sc));
    PF(PF_ATTN_BWD, be->attention_backward(dq, dk, dv, dy, att, q, k, v, m->act[ACT_ATT_SCR], as));
    PF(PF_ROPE, be->rope_backward(dq, m->rope_cos, m->rope_sin, m->B, m->T, m->cfg.n_heads,
                      m->cfg.head_dim));
    PF(PF_ROPE, be->rope_backward(dk, m->rope_cos, m->rope_sin, m->B, m->T, m->cfg.n_kv_heads,
                      m->cfg.head_dim));
    PF(PF_PROJ_DX, proj_dx(m, dln, dq, BACKEND_F32, lw->q, C, Hq, 0.0f));
    PF(PF_PROJ_DX, proj_dx(m, dln, dk, BACKEND_F32, lw->k, C, Hkv, 1.0f));
    PF(PF_PROJ_DX, proj_dx(m, dln, dv, BACKEND_F32, lw->v, C, Hkv, 1.0f));
    const float *dqkv[3] = {dq, dk, dv};
    PF(PF_LORA_BWD, lora_group_backward(be, &m->lay, m->params, m->grads, l, &lora_groups[0], dqkv, ln1,
                        backend_act_at(be, lu, m->u_group_off[0] * N), dln, N, p, lk, &sc));
    PF(PF_NORM, be->rmsnorm_backward(dres, dln, res, lw->attn_norm, layer_act(m, ACT_RSTD1, l), N, C));
}

int model_step(model_t *m, const int32_t *inputs, const int32_t *targets, bool train,
               float dscale, uint64_t dropout_key, double *loss_sum, int64_t *n_tok,
               ft_err_t *err)
{
    const backend_t *be = m->be;
    int N = m->N, C = m->C, V = m->V, L = m->cfg.n_layers;
    for (int i = 0; i < N; i++) {
        if (inputs[i] < 0 || inputs[i] >= V) {
            ft_err_set(err, FT_EBADFIELD, "input token %d at position %d is outside the "
                       "vocabulary (%d)", inputs[i], i, V);
            return -1;
        }
        if (targets[i] != -100 && (targets[i] < 0 || targets[i] >= V)) {
            ft_err_set(err, FT_EBADFIELD, "target token %d at position %d is outside the "
                       "vocabulary (%d)", targets[i], i, V);
            return -1;
        }
    }
    float p = train ? m->dropout : 0.0f;
    if (be->params_cache) /* the optimiser may have moved them since the last step */
        be->params_cache(m->params, m->lay.n_params);
    PF(PF_COPY, be->embedding_forward(m->act[ACT_RES], inputs, m->w->embed, N, C));
    for (int l = 0; l < L; l++)
        layer_forward(m, l, p, dropout_key);
    float *resL = layer_act(m, ACT_RES, L);
    PF(PF_NORM, be->rmsnorm_forward(m->act[ACT_LNF], m->act[ACT_RSTDF], resL, m->w->final_norm, N, C,
                        (float)m->cfg.rms_norm_eps));
    PF(PF_XENT, *loss_sum = be->xent_forward_backward(train ? m->act[ACT_DLN] : NULL, m->act[ACT_LNF],
                                          m->w->lm_head, targets, N, C, V, m->act[ACT_LOGITS],
                                          m->chunk, dscale, n_tok));
    if (!train)
        return 0;
    float *dres = m->act[ACT_DRES];
    be_zero(be, dres, (size_t)N * C);
    PF(PF_NORM, be->rmsnorm_backward(dres, m->act[ACT_DLN], resL, m->w->final_norm, m->act[ACT_RSTDF], N,
                         C));
    for (int l = L - 1; l >= 0; l--)
        layer_backward(m, l, p, dropout_key);
    return 0;
}

double model_train_flops(const llama_config_t *cfg, int r, uint32_t mask, int B, int T)
{
    /* Per token: forward base projections 2*(C*Hq + 2*C*Hkv + Hq*C + 3*C*I) per
     * layer plus lm_head 2*C*V; backward computes only dX through them, the
     * same again. LoRA module (in, out): forward 2*r*(in+out), backward
     * 4*r*(in+out). Attention per (row, head), blocked causally as the
     * backend runs it (query block [i0, i1) against keys [0, i1)):
     * forward 4*hd*sum(bq*i1) (scores, P*V), backward 8*hd*sum(bq*i1). */
    double C = cfg->hidden_size, I = cfg->intermediate_size, V = cfg->vocab_size;
    double Hq = (double)cfg->n_heads * cfg->head_dim, Hkv = (double)cfg->n_kv_heads * cfg->head_dim;
    double base = 2.0 * (C * Hq + 2.0 * C * Hkv + Hq * C + 3.0 * C * I);
    const double in[FT_N_TARGET_MODULES] = {C, C, C, Hq, C, C, I};
    const double out[FT_N_TARGET_MODULES] = {Hq, Hkv, Hkv, C, I, I, C};
    double lora = 0.0;
    for (int mo = 0; mo < FT_N_TARGET_MODULES; mo++)
        if ((mask >> mo) & 1u)
            lora += 6.0 * r * (in[mo] + out[mo]);
    double blocks = 0.0;  /* sum over query blocks of bq * i1 */
    for (int i0 = 0; i0 < T; i0 += BACKEND_ATT_BLOCK) {
        int i1 = i0 + BACKEND_ATT_BLOCK < T ? i0 + BACKEND_ATT_BLOCK : T;
        blocks += (double)(i1 - i0) * i1;
    }
    double attn = 12.0 * cfg->head_dim * blocks * cfg->n_heads * B;  /* per layer */
    double per_tok = cfg->n_layers * (2.0 * base + lora) + 2.0 * (2.0 * C * V);
    return per_tok * (double)B * T + cfg->n_layers * attn;
}
