/*
 * lora.h: where the LoRA parameters live and how a LoRA-wrapped projection
 * runs. All adapters of the model are carved from ONE float buffer (and the
 * gradients, Adam m and v each from one more buffer with the same layout) by
 * a sizes table: per layer, the A matrices of the targeted modules in the
 * order q, k, v, o, gate, up, down, then their B matrices in the same order.
 * Modules sharing an input (q,k,v on ln1; gate,up on ln2) therefore have
 * their A matrices adjacent, so the A products of a group are one GEMM.
 *
 * y = W x + s * B (A dropout(x)), A (r, in), B (out, r), s = alpha / r, or
 * alpha / sqrt(r) with rsLoRA.
 */
#ifndef FT_LORA_H
#define FT_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "ft/jobspec.h"
#include "llama.h"

#define LORA_NONE ((size_t)-1)

typedef struct {
    int n_layers;                      /* L */
    int r;                             /* rank */
    float scaling;                     /* s */
    uint32_t mask;                     /* bit ft_target_module_t */
    int in_dim[FT_N_TARGET_MODULES];   /* input features per module */
    int out_dim[FT_N_TARGET_MODULES];  /* output features per module */
    size_t *a_off;                     /* [L*7] float offset of A, or LORA_NONE */
    size_t *b_off;                     /* [L*7] float offset of B, or LORA_NONE */
    size_t n_params;                   /* floats in the whole buffer */
} lora_layout_t;

/* One group of projections sharing an input: modules [first, first+count). */
typedef struct {
    int first;      /* ft_target_module_t */
    int count;      /* 1..3 */
    bool out_act;   /* outputs are [act] tensors (q,k,v; gate,up), else the fp32 residual */
    bool dout_act;  /* backward's output gradients are [act] (gate, up), else fp32 */
} lora_group_t;
#define LORA_N_GROUPS 4
extern const lora_group_t lora_groups[LORA_N_GROUPS]; /* qkv, o, gate+up, down */

int lora_layout_init(lora_layout_t *lay, const llama_config_t *cfg, int r, double alpha,
                     bool use_rslora, uint32_t mask);
void lora_layout_free(lora_layout_t *lay);
static inline bool lora_targeted(const lora_layout_t *lay, int mod)
{
    return (lay->mask >> mod) & 1u;
}

/* PEFT's initialisation: A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in),
 * 1/sqrt(in)); B = 0, or N(0, b_std) when b_std > 0 (for gradient checks).
 * Deterministic from seed (xoshiro256** seeded by splitmix64). */
void lora_init_params(const lora_layout_t *lay, float *params, uint64_t seed, double b_std);

/* Work buffers one group call needs. */
typedef struct {
    float *xd;    /* [act] (N, max in) dropout scratch */
    float *dxd;   /* (N, max in) dropout backward scratch, fp32 */
    float *du;    /* (N, 3r) fp32 */
} lora_scratch_t;

/* Forward of the LoRA branch of a group (the base GEMMs are done by the
 * caller): u [act] (N, g*r) = dropout(x) A^T per module; out[j] (N, out_j)
 * += s * u_j B_j^T, [act] when g->out_act, else fp32. x [act] (N, in).
 * p = dropout probability, key seeds its masks (module m uses key ^ m).
 * params is the LoRA buffer of the model (fp32, as are grads below). The
 * [act] tensors are backend.h's: float * here, addressed in bytes. */
void lora_group_forward(const backend_t *be, const lora_layout_t *lay, const float *params,
                        int l, const lora_group_t *g, float *const *out, const float *x,
                        float *u, int N, float p, uint64_t key, lora_scratch_t *sc);
/* Backward of the LoRA branch: given dout[j] (N, out_j; [act] where the
 * group's dout_act says so, else fp32), adds dA, dB
 * into grads and s * (B A)^T terms into dx (N, in, fp32); x and u [act] as
 * forward left them. */
void lora_group_backward(const backend_t *be, const lora_layout_t *lay, const float *params,
                         float *grads, int l, const lora_group_t *g,
                         const float *const *dout, const float *x, const float *u, float *dx,
                         int N, float p, uint64_t key, lora_scratch_t *sc);

/* Number of targeted modules in a group, and their total u width (g*r). */
int lora_group_width(const lora_layout_t *lay, const lora_group_t *g);

#endif
