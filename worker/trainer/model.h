/*
 * model.h: the Llama model with LoRA adapters, forward and backward, written
 * once against backend.h. Hugging Face Llama numerics: RMSNorm in fp32,
 * rotate_half RoPE (llama3 frequency scaling when configured), GQA, causal
 * softmax attention scaled by 1/sqrt(head_dim), SwiGLU MLP, final norm,
 * lm_head (tied or not).
 *
 * Memory: the base weights are borrowed (frozen, never differentiated); the
 * LoRA parameters and gradients are one buffer each (lora.h layout); the
 * activations kept for backward are one buffer carved by a sizes table for a
 * fixed (B, T): per layer B*T*(2C + 2Hq + 2Hkv + 3I + LoRA u) elements of the
 * backend's activation type (backend.h [act]: fp32 on the CPU, bf16 on CUDA),
 * B*T*(2C + 2) floats of residual stream and rstd, and the attention buffer
 * (the backend's attention_plan, else B*nh*T*T floats); the lm_head and
 * cross-entropy run in row chunks so logits never take (B*T, V).
 */
#ifndef FT_MODEL_H
#define FT_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "ft/common.h"
#include "llama.h"
#include "lora.h"

typedef struct model model_t;

typedef struct {
    int r;              /* LoRA rank */
    double alpha;       /* lora_alpha */
    bool use_rslora;    /* s = alpha / sqrt(r) */
    uint32_t mask;      /* targeted modules, bit ft_target_module_t */
    double dropout;     /* on the LoRA branch input, training only */
    int B;              /* rows per micro-batch */
    int T;              /* tokens per row */
} model_opts_t;

/* NULL with err on bad shapes or memory exhaustion. w must outlive the model. */
model_t *model_new(const llama_config_t *cfg, const llama_weights_t *w, const backend_t *be,
                   const model_opts_t *o, ft_err_t *err);
void model_destroy(model_t **m);

const lora_layout_t *model_lora_layout(const model_t *m);
float *model_lora_params(model_t *m);   /* lora layout, n_params floats */
float *model_lora_grads(model_t *m);    /* same layout */
void model_zero_grad(model_t *m);
/* bytes held by the model (activations, LoRA, scratch), for memory reports */
size_t model_bytes(const model_t *m);

/* Runs the B rows inputs (B, T). Returns the SUM over targets != -100 of the
 * cross-entropy (natural log) in *loss_sum and their count in *n_tok.
 * When train: dropout is applied with masks from dropout_key, and the
 * gradient of dscale * loss_sum w.r.t. the LoRA parameters is ADDED to the
 * gradient buffer (so micro-batches accumulate). Token ids outside the
 * vocabulary are an error. */
int model_step(model_t *m, const int32_t *inputs, const int32_t *targets, bool train,
               float dscale, uint64_t dropout_key, double *loss_sum, int64_t *n_tok,
               ft_err_t *err);

/* cos/sin tables (T, hd/2) of HF's rotary embedding for cfg (llama3 scaling
 * included), computed in fp32 like transformers. */
void model_rope_tables(const llama_config_t *cfg, int T, float *cos_t, float *sin_t);

/* Matmul FLOPs of one training step (forward + backward) on (B, T), as the
 * model runs them (block-causal attention, see BACKEND_ATT_BLOCK). */
double model_train_flops(const llama_config_t *cfg, int r, uint32_t mask, int B, int T);

/* Per-op-family timing of model_step (process-wide; for benchmarks): enable
 * (resets the totals), then report as JSON members "proj_fwd_s": .., .. */
void model_profile_enable(bool on);
int model_profile_report(char *buf, size_t len);

#endif
