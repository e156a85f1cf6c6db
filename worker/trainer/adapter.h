/*
 * adapter.h: the trainer's outputs: a PEFT LoRA adapter folder
 * (adapter_config.json + adapter_model.safetensors, loadable by
 * peft.PeftModel.from_pretrained) and training checkpoints that resume exactly.
 *
 * The LoRA weights are described, not owned: an adapter_t holds for every
 * layer and each of the seven projections (ft_target_module_t order) pointers
 * to A (r, in) and B (out, r) row-major floats, NULL when the projection is
 * not targeted. The trainer fills one adapter_t over its own buffers (and a
 * second one over the gradients when it dumps them). Tensor names are PEFT's:
 * base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight
 * base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight
 *
 * Checkpoints: OUTPUT_DIR/checkpoint-STEP/ holds the adapter files plus
 * optimizer.safetensors (F32 "adam_m", "adam_v", each [n]) and
 * trainer_state.json ({"format":"ft-checkpoint-1", "step", "epoch", "index",
 * "rng": ["<u64>", ...], "spec_hash": "<u64>", "loss_history": [...]};
 * uint64s as decimal strings so JSON doubles cannot round them). A checkpoint
 * is written into OUTPUT_DIR/.tmp-checkpoint-STEP, every file fsynced, then
 * renamed into place and OUTPUT_DIR fsynced: a crash leaves either the whole
 * checkpoint or none. Older checkpoints beyond keep_last are then removed.
 * Cost: O(LoRA parameters) bytes written.
 */
#ifndef FT_ADAPTER_H
#define FT_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ft/common.h"
#include "ft/jobspec.h"
#include "llama.h"
#include "data.h"
#include "safetensors.h"

#define ADAPTER_CONFIG_NAME "adapter_config.json"
#define ADAPTER_WEIGHTS_NAME "adapter_model.safetensors"
#define CHECKPOINT_MAX_RNG 8

typedef struct {
    float *a; /* (r, in) row-major; NULL when the module is not targeted */
    float *b; /* (out, r) row-major; NULL iff a is NULL */
} adapter_module_t;

typedef struct {
    const llama_config_t *cfg; /* gives in/out of each projection */
    int r;                     /* LoRA rank */
    double lora_alpha;         /* scaling = alpha / r (or / sqrt(r) with use_rslora) */
    double lora_dropout;       /* recorded in adapter_config.json */
    bool use_rslora;
    uint32_t target_mask;         /* bit ft_target_module_t; says which mods are set */
    char base_model[FT_PATH_MAX]; /* base_model_name_or_path in adapter_config.json */
    adapter_module_t *mods;       /* [cfg->n_layers * FT_N_TARGET_MODULES], index l*7 + m */
} adapter_t;

/* in/out features of projection m (ft_target_module_t) of cfg's layers. */
void adapter_module_dims(const llama_config_t *cfg, int m, int *in, int *out);
/* PEFT key of A (which = 'A') or B ('B') of layer l, module m, plus suffix
 * ("" or ".grad"). */
void adapter_tensor_name(char *buf, size_t len, int l, int m, char which, const char *suffix);
/* LoRA parameters of one layer / the whole model for r and target_mask. */
int64_t adapter_n_params(const llama_config_t *cfg, int r, uint32_t target_mask);

/* Adds every targeted A and B of ad (F32, names + suffix) to w (borrowed:
 * keep ad's buffers alive until st_writer_save). */
int adapter_add_tensors(st_writer_t *w, const adapter_t *ad, const char *suffix, ft_err_t *err);
/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (dir is
 * created when missing). */
int adapter_write(const char *dir, const adapter_t *ad, ft_err_t *err);

/* An adapter read back from a folder; owns its floats. */
typedef struct {
    adapter_t ad; /* ad.mods point into mem */
    float *mem;   /* every A and B */
} adapter_loaded_t;

/* Reads dir/adapter_config.json (peft_type LORA, r, lora_alpha, use_rslora,
 * target_modules) and every expected tensor with its exact shape (F32, F16 or
 * BF16). Errors name the file and the key. */
int adapter_load(const char *dir, const llama_config_t *cfg, adapter_loaded_t *out, ft_err_t *err);
void adapter_loaded_free(adapter_loaded_t *a);

/* ---- checkpoints ---- */
typedef struct {
    int64_t step;                     /* optimiser steps done */
    data_pos_t pos;                   /* where the next batch starts */
    uint64_t rng[CHECKPOINT_MAX_RNG]; /* trainer RNG state words */
    int n_rng;                        /* words used in rng */
    uint64_t spec_hash;               /* checkpoint_spec_hash of the spec */
    double *loss_history;             /* one loss per step done; may be NULL */
    int64_t n_loss;                   /* entries in loss_history */
} checkpoint_state_t;

/* FNV-1a over the spec's JSON without the keys that may change between a run
 * and its resumption (max_steps, num_epochs, save_steps, eval_steps,
 * logging_steps, threads, output_dir). */
uint64_t checkpoint_spec_hash(const ft_trainspec_t *t);

/* Writes output_dir/checkpoint-STEP (STEP = st->step) atomically with the
 * adapter, n floats of adam_m and adam_v, and st; then removes all but the
 * newest keep_last checkpoints (keep_last <= 0 keeps all). path_out (may be
 * NULL) receives the checkpoint folder. */
int checkpoint_save(const char *output_dir, const adapter_t *ad, const float *adam_m,
                    const float *adam_v, size_t n, const checkpoint_state_t *st, int keep_last,
                    char *path_out, size_t path_len, ft_err_t *err);

/* Finds the checkpoint with the highest step in output_dir. Returns 1 and
 * fills ad's buffers (shapes must match), adam_m, adam_v (n floats each) and
 * st (loss_history malloc'd; free with checkpoint_state_free) when one
 * exists; 0 when there is none; -1 with err when one exists but cannot be
 * used (corrupt, other shapes, spec_hash != expect_hash when expect_hash != 0). */
int checkpoint_load_latest(const char *output_dir, const adapter_t *ad, float *adam_m,
                           float *adam_v, size_t n, uint64_t expect_hash, checkpoint_state_t *st,
                           char *path_out, size_t path_len, ft_err_t *err);
void checkpoint_state_free(checkpoint_state_t *st);

#endif
