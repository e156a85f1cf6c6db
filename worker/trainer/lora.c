/*
 * lora.c: LoRA parameter layout (one buffer, sizes table), PEFT-style
 * initialisation, and the LoRA branch of a group of projections.
 *
 * Without dropout the A products of a group run as one GEMM of width g*r
 * over the shared input; with dropout each module draws its own mask (as
 * PEFT's per-module nn.Dropout does) and runs its own GEMM. The masks are
 * regenerated in backward from the same key instead of being stored.
 * The inputs x, the u products and the outputs of the q,k,v and gate,up
 * groups are [act] tensors (backend.h: bf16 on CUDA), addressed in bytes and
 * multiplied through backend_gemm with their types declared; parameters,
 * gradients and the du scratch are fp32 on every backend.
 * Costs per group: 2*N*in*g*r + 2*N*r*sum(out) flops forward, about twice
 * that backward.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"
#include "rng.h"

const lora_group_t lora_groups[LORA_N_GROUPS] = {
    {FT_TM_Q, 3, true, false},     /* input: ln1; out: q, k, v */
    {FT_TM_O, 1, false, false},    /* input: attention output; out: the residual */
    {FT_TM_GATE, 2, true, true},   /* input: ln2; out: gate, up (their gradients [act]) */
    {FT_TM_DOWN, 1, false, false}, /* input: silu(gate) * up; out: the residual */
};

int lora_layout_init(lora_layout_t *lay, const llama_config_t *cfg, int r, double alpha,
                     bool use_rslora, uint32_t mask)
{
    memset(lay, 0, sizeof(*lay));
    if (r < 1 || cfg->n_layers < 1)
        return -1;
    int C = cfg->hidden_size, I = cfg->intermediate_size;
    int Hq = cfg->n_heads * cfg->head_dim, Hkv = cfg->n_kv_heads * cfg->head_dim;
    const int in[FT_N_TARGET_MODULES] = {C, C, C, Hq, C, C, I};
    const int out[FT_N_TARGET_MODULES] = {Hq, Hkv, Hkv, C, I, I, C};
    lay->n_layers = cfg->n_layers;
    lay->r = r;
    lay->scaling = (float)(use_rslora ? alpha / sqrt((double)r) : alpha / (double)r);
    lay->mask = mask & ((1u << FT_N_TARGET_MODULES) - 1);
    memcpy(lay->in_dim, in, sizeof(in));
    memcpy(lay->out_dim, out, sizeof(out));
    size_t n = (size_t)cfg->n_layers * FT_N_TARGET_MODULES;
    lay->a_off = malloc(n * sizeof(size_t));
    lay->b_off = malloc(n * sizeof(size_t));
    if (!lay->a_off || !lay->b_off) {
        lora_layout_free(lay);
        return -1;
    }
    size_t off = 0;
    for (int l = 0; l < cfg->n_layers; l++) {
        for (int m = 0; m < FT_N_TARGET_MODULES; m++) {
            size_t i = (size_t)l * FT_N_TARGET_MODULES + m;
            lay->a_off[i] = LORA_NONE;
            if (lora_targeted(lay, m)) {
                lay->a_off[i] = off;
                off += (size_t)r * in[m];
            }
        }
        for (int m = 0; m < FT_N_TARGET_MODULES; m++) {
            size_t i = (size_t)l * FT_N_TARGET_MODULES + m;
            lay->b_off[i] = LORA_NONE;
            if (lora_targeted(lay, m)) {
                lay->b_off[i] = off;
                off += (size_t)out[m] * r;
            }
        }
    }
    lay->n_params = off;
    return 0;
}

void lora_layout_free(lora_layout_t *lay)
{
    free(lay->a_off);
    free(lay->b_off);
    lay->a_off = lay->b_off = NULL;
}

/* xoshiro256** seeded through splitmix64 (rng.h): uniform in [0, 1). */
static double rng_uniform(rng_t *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

void lora_init_params(const lora_layout_t *lay, float *params, uint64_t seed, double b_std)
{
    rng_t rng;
    rng_seed(&rng, seed ^ 0x4C6F5241ull /* "LoRA" */);
    for (int l = 0; l < lay->n_layers; l++) {
        for (int m = 0; m < FT_N_TARGET_MODULES; m++) {
            if (!lora_targeted(lay, m))
                continue;
            size_t i = (size_t)l * FT_N_TARGET_MODULES + m;
            float *A = params + lay->a_off[i];
            float *B = params + lay->b_off[i];
            size_t na = (size_t)lay->r * lay->in_dim[m], nb = (size_t)lay->out_dim[m] * lay->r;
            double bound = 1.0 / sqrt((double)lay->in_dim[m]);
            for (size_t k = 0; k < na; k++)
                A[k] = (float)((2.0 * rng_uniform(&rng) - 1.0) * bound);
            for (size_t k = 0; k < nb; k++) {
                if (b_std > 0.0) {
                    /* Box-Muller; one normal per two uniforms keeps it simple */
                    double u1 = rng_uniform(&rng), u2 = rng_uniform(&rng);
                    B[k] = (float)(b_std * sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2));
                } else {
                    B[k] = 0.0f;
                }
            }
        }
    }
}

int lora_group_width(const lora_layout_t *lay, const lora_group_t *g)
{
    int n = 0;
    for (int m = g->first; m < g->first + g->count; m++)
        n += lora_targeted(lay, m);
    return n * lay->r;
}

static uint64_t module_key(uint64_t key, int m)
{
    return key + (uint64_t)(m + 1) * 0x632BE59BD9B4E019ull;
}

void lora_group_forward(const backend_t *be, const lora_layout_t *lay, const float *params,
                        int l, const lora_group_t *g, float *const *out, const float *x,
                        float *u, int N, float p, uint64_t key, lora_scratch_t *sc)
{
    int w = lora_group_width(lay, g), r = lay->r;
    if (w == 0)
        return;
    const size_t *aoff = lay->a_off + (size_t)l * FT_N_TARGET_MODULES;
    const size_t *boff = lay->b_off + (size_t)l * FT_N_TARGET_MODULES;
    int in = lay->in_dim[g->first];
    if (p <= 0.0f) {
        /* first targeted A starts the group's contiguous (w, in) block */
        size_t a0 = LORA_NONE;
        for (int m = g->first; m < g->first + g->count && a0 == LORA_NONE; m++)
            a0 = aoff[m];
        /* u (N, w) = x (N, in) A_group^T */
        backend_gemm(be, false, true, N, w, in, 1.0f, x, BACKEND_ACT, in, params + a0,
                     BACKEND_F32, in, 0.0f, u, BACKEND_ACT, w);
    }
    backend_dtype_t ot = g->out_act ? BACKEND_ACT : BACKEND_F32;
    int j = 0;
    for (int m = g->first; m < g->first + g->count; m++) {
        if (!lora_targeted(lay, m))
            continue;
        act_t *uj = backend_act_at(be, u, (size_t)j * r);
        if (p > 0.0f) {
            backend_dropout_act(be, sc->xd, x, (int64_t)N * in, p, module_key(key, m));
            backend_gemm(be, false, true, N, r, in, 1.0f, sc->xd, BACKEND_ACT, in,
                         params + aoff[m], BACKEND_F32, in, 0.0f, uj, BACKEND_ACT, w);
        }
        int o = lay->out_dim[m];
        /* out (N, o) += s * u_j (N, r) B^T (r, o) */
        backend_gemm(be, false, true, N, o, r, lay->scaling, uj, BACKEND_ACT, w,
                     params + boff[m], BACKEND_F32, r, 1.0f, out[m - g->first], ot, o);
        j++;
    }
}

void lora_group_backward(const backend_t *be, const lora_layout_t *lay, const float *params,
                         float *grads, int l, const lora_group_t *g,
                         const float *const *dout, const float *x, const float *u, float *dx,
                         int N, float p, uint64_t key, lora_scratch_t *sc)
{
    int w = lora_group_width(lay, g), r = lay->r;
    if (w == 0)
        return;
    const size_t *aoff = lay->a_off + (size_t)l * FT_N_TARGET_MODULES;
    const size_t *boff = lay->b_off + (size_t)l * FT_N_TARGET_MODULES;
    int in = lay->in_dim[g->first];
    float s = lay->scaling;
    backend_dtype_t dt = g->dout_act ? BACKEND_ACT : BACKEND_F32;
    int j = 0;
    size_t a0 = LORA_NONE;
    for (int m = g->first; m < g->first + g->count; m++) {
        if (!lora_targeted(lay, m))
            continue;
        if (a0 == LORA_NONE)
            a0 = aoff[m];
        int o = lay->out_dim[m];
        const float *dy = dout[m - g->first];
        /* du_j (N, r) = s * dy (N, o) B (o, r) */
        backend_gemm(be, false, false, N, r, o, s, dy, dt, o, params + boff[m], BACKEND_F32, r,
                     0.0f, sc->du + (size_t)j * r, BACKEND_F32, w);
        /* dB (o, r) += s * dy^T (o, N) u_j (N, r) */
        backend_gemm(be, true, false, o, r, N, s, dy, dt, o,
                     backend_act_at(be, u, (size_t)j * r), BACKEND_ACT, w, 1.0f, grads + boff[m],
                     BACKEND_F32, r);
        j++;
    }
    if (p <= 0.0f) {
        /* dA_group (w, in) += du^T (w, N) x (N, in); dx (N, in) += du A_group */
        backend_gemm(be, true, false, w, in, N, 1.0f, sc->du, BACKEND_F32, w, x, BACKEND_ACT, in,
                     1.0f, grads + a0, BACKEND_F32, in);
        be->gemm(false, false, N, in, w, 1.0f, sc->du, w, params + a0, in, 1.0f, dx, in);
        return;
    }
    j = 0;
    for (int m = g->first; m < g->first + g->count; m++) {
        if (!lora_targeted(lay, m))
            continue;
        uint64_t k = module_key(key, m);
        backend_dropout_act(be, sc->xd, x, (int64_t)N * in, p, k);
        backend_gemm(be, true, false, r, in, N, 1.0f, sc->du + (size_t)j * r, BACKEND_F32, w,
                     sc->xd, BACKEND_ACT, in, 1.0f, grads + aoff[m], BACKEND_F32, in);
        be->gemm(false, false, N, in, r, 1.0f, sc->du + (size_t)j * r, w, params + aoff[m], in,
                 0.0f, sc->dxd, in);
        /* the dropout mask is linear: apply it to the gradient the same way */
        be->dropout_forward(sc->dxd, sc->dxd, (int64_t)N * in, p, k);
        be->add(dx, sc->dxd, (int64_t)N * in);
        j++;
    }
}
