/*
 * ft/jobspec.h: the job spec users submit (JSON, documented key by key in
 * docs/job-spec.md), parsed and validated once, by ft_jobspec_parse, in the
 * client (early error), the scheduler (the authority) and the trainer.
 *
 * Unknown keys, wrong types and out-of-range values are errors that name the
 * key ("spec.train.lora_r: expected an integer in [1, 1024]").
 * Parsing is O(size of the spec); specs are bounded by FT_SPEC_MAX_BYTES.
 */
#ifndef FT_JOBSPEC_H
#define FT_JOBSPEC_H

#include <stdbool.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "ft/common.h"

#define FT_SPEC_MAX_BYTES (64 * 1024)
#define FT_NAME_MAX 64             /* job names, user, team, node names */
#define FT_PATH_MAX 1024
#define FT_MAX_GPUS_PER_JOB 1024
#define FT_MAX_ARGV 256
#define FT_MAX_ENV 128
#define FT_MAX_DATASETS 16
#define FT_N_TARGET_MODULES 7

typedef enum { FT_KIND_EXEC = 0, FT_KIND_LORA = 1 } ft_job_kind_t;

/* Which devices a job's ranks may run on. */
typedef enum {
    FT_DEV_ANY = 0,  /* any device: a GPU, an emulated GPU or a CPU device */
    FT_DEV_GPU = 1,  /* real or emulated GPUs only */
    FT_DEV_CPU = 2,  /* CPU devices only */
} ft_devclass_t;

/* The seven Llama projections, in this order everywhere (bit i of a mask). */
typedef enum {
    FT_TM_Q = 0, FT_TM_K, FT_TM_V, FT_TM_O, FT_TM_GATE, FT_TM_UP, FT_TM_DOWN
} ft_target_module_t;
extern const char *const ft_target_module_names[FT_N_TARGET_MODULES]; /* "q_proj".. */

typedef enum { FT_DATA_AUTO = 0, FT_DATA_TEXT, FT_DATA_COMPLETION, FT_DATA_ALPACA,
               FT_DATA_CHAT, FT_DATA_TOKENIZED } ft_data_format_t;
extern const char *const ft_data_format_names[]; /* "auto", "text", ... */

typedef enum { FT_LR_CONSTANT = 0, FT_LR_LINEAR, FT_LR_COSINE } ft_lr_sched_t;

/* Storage precision of the frozen base weights and of the inputs of their
 * GEMMs ("dtype" in the spec). LoRA weights, gradients, optimiser state and
 * the other activations stay fp32 whatever it says. */
typedef enum {
    FT_DTYPE_AUTO = 0,  /* what the backend does best: fp32 on CPU, bf16 on CUDA */
    FT_DTYPE_FP32 = 1,  /* fp32 weights, fp32 GEMMs (CPU only) */
    FT_DTYPE_BF16 = 2,  /* bf16 weights, bf16 x bf16 GEMMs with fp32 accumulation */
} ft_dtype_t;
extern const char *const ft_dtype_names[]; /* "auto", "fp32", "bf16", NULL */

typedef struct {
    char path[FT_PATH_MAX];      /* JSONL file */
    ft_data_format_t format;     /* "type" in the spec; "auto" detects it per record */
} ft_dataset_t;

/* The "train" section of a lora job. Defaults are set by ft_trainspec_defaults. */
typedef struct {
    char base_model[FT_PATH_MAX];   /* HF model folder (config.json + safetensors) */
    ft_dataset_t datasets[FT_MAX_DATASETS];
    int n_datasets;
    char eval_path[FT_PATH_MAX];    /* "" = split val_set_size off the training data */
    double val_set_size;            /* fraction in [0, 0.5]; default 0.0 */
    char output_dir[FT_PATH_MAX];   /* adapter + checkpoints go here */

    int lora_r;                     /* default 8 */
    double lora_alpha;              /* default 16 */
    double lora_dropout;            /* default 0.0, on the LoRA branch only */
    bool use_rslora;                /* scaling alpha/sqrt(r) instead of alpha/r */
    uint32_t target_mask;           /* bit ft_target_module_t; default all seven */

    int sequence_len;               /* tokens per row; default 256 */
    int micro_batch_size;           /* rows per rank per micro-step; default 4 */
    int gradient_accumulation_steps;/* micro-steps per optimiser step; default 1 */
    int64_t max_steps;              /* optimiser steps; 0 = from num_epochs */
    double num_epochs;              /* used when max_steps == 0; default 1 */
    bool sample_packing;            /* pack records into rows (default true) or pad */
    bool train_on_inputs;           /* default false: loss on the response only */

    double learning_rate;           /* default 2e-4 */
    ft_lr_sched_t lr_scheduler;     /* default cosine */
    int64_t warmup_steps;           /* default 0 */
    double warmup_ratio;            /* used when warmup_steps == 0; default 0 */
    double weight_decay;            /* AdamW, default 0.0 */
    double adam_beta1, adam_beta2, adam_epsilon; /* 0.9, 0.999, 1e-8 */
    double max_grad_norm;           /* default 1.0; 0 disables clipping */
    uint64_t seed;                  /* default 42 */

    int64_t eval_steps;             /* evaluate every N steps; 0 = only at the end */
    int64_t save_steps;             /* checkpoint every N steps; 0 = only at the end */
    int64_t logging_steps;          /* progress event every N steps; default 1 */
    int threads;                    /* CPU threads per rank; 0 = automatic */
    ft_dtype_t dtype;               /* base weight precision; default auto */
} ft_trainspec_t;

typedef struct {
    char name[FT_NAME_MAX + 1];     /* default: first word of the command or "lora" */
    ft_job_kind_t kind;
    int priority;                   /* higher runs first; [-1000, 1000], default 0 */

    /* resources */
    int gpus;                       /* ranks, one device each; default 1 */
    int gpus_per_node;              /* 0 = any packing */
    int nodes;                      /* 0 = any */
    ft_devclass_t device;           /* default any */
    char gpu_model[FT_NAME_MAX + 1];/* "" = any; else substring match of the model */
    double gpu_mem_gb;              /* minimum memory per device; 0 = any */
    int64_t time_limit_s;           /* 0 = none */
    int max_retries;                /* requeues after infrastructure failures; default 3 */
    bool requeue_on_failure;        /* also requeue a non-zero exit (counted); default false */

    /* kind == exec */
    char **argv;                    /* NULL-terminated; owned */
    int argc;
    char **env;                     /* "K=V", NULL-terminated; owned */
    int envc;
    char cwd[FT_PATH_MAX];          /* "" = the worker's working directory */

    /* kind == lora */
    ft_trainspec_t train;
} ft_jobspec_t;

/* Parses and validates a spec object. On failure returns -1 with err naming
 * the field. Caller frees with ft_jobspec_free (safe on a failed parse). */
int ft_jobspec_parse(const cJSON *spec, ft_jobspec_t *out, ft_err_t *err);
void ft_jobspec_free(ft_jobspec_t *spec);

/* The train section alone (lib/trainspec.c); ctx is "spec.train". */
void ft_trainspec_defaults(ft_trainspec_t *t);
int ft_trainspec_parse(const cJSON *train, ft_trainspec_t *out, ft_err_t *err);
/* Back to JSON with every key, defaults filled in (what ran, for the record). */
cJSON *ft_trainspec_to_json(const ft_trainspec_t *t);

#endif
