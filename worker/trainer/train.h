/*
 * train.h: one rank of a LoRA fine-tuning job: loads the base model, the
 * tokenizer and the data of a train spec, builds the model and the optimiser,
 * and runs the loop (gradient accumulation, all-reduce through coll_t, grad
 * clipping, AdamW, LR schedule, eval, checkpoints, exact resume, adapter
 * output), emitting one JSON event per line on an fd.
 *
 * Loss normalisation (documented in docs/job-spec.md by the I/O helper): the
 * gradient of an optimiser step is the gradient of the MEAN cross-entropy
 * over every non-ignored target of the global batch (all micro-batches of
 * all ranks). Each rank counts the targets of its micro-batches before
 * running them, the counts are summed across ranks, every micro-batch is
 * scaled by 1 / that total, and the gradients are then SUMMED across ranks.
 * This equals HF Trainer with num_items_in_batch (transformers >= 4.46) and
 * differs from averaging per-micro-batch means when micro-batches hold
 * different numbers of targets.
 *
 * Determinism: LoRA init from spec.seed; dropout masks from a counter-based
 * hash of (seed, step, micro-batch, rank, layer, module), so the only state
 * a resume needs is the step, the data position, the LoRA weights and Adam's
 * moments: resuming gives bit-identical losses.
 */
#ifndef FT_TRAIN_H
#define FT_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "backend.h"
#include "coll.h"
#include "ft/common.h"
#include "ft/jobspec.h"

typedef struct trainer trainer_t;

typedef struct {
    int event_fd;          /* JSON event lines go here; -1 = none */
    double dropout;        /* < 0: the spec's lora_dropout; else this value */
    double init_b_std;     /* LoRA B init N(0, std) when > 0 (checks); 0 = zeros */
    int adapter_r;         /* > 0: model built for an adapter of this rank... */
    double adapter_alpha;  /* ...alpha... */
    bool adapter_rslora;   /* ...rsLoRA flag... */
    uint32_t adapter_mask; /* ...and targets (used by eval of a saved adapter) */
    volatile sig_atomic_t *stop; /* when it becomes non-zero (a signal handler), the
                              run saves a checkpoint after the current step and
                              returns TRAINER_STOPPED; NULL = never */
    int backend;           /* trainer_backend_t: where the model runs */
} trainer_opts_t;

/* Compute backend of a trainer. AUTO picks CUDA when ft-train was built with
 * it, CUDA_VISIBLE_DEVICES is unset or not empty (the worker sets it empty
 * for CPU ranks) and a device is found; CPU otherwise. */
typedef enum {
    TRAINER_BACKEND_AUTO = 0,
    TRAINER_BACKEND_CPU = 1,
    TRAINER_BACKEND_CUDA = 2,
} trainer_backend_t;

/* "auto", "cpu", "cuda" -> the enum; -1 for anything else. */
int trainer_backend_parse(const char *s);
/* What AUTO/CPU/CUDA comes to on this process: TRAINER_BACKEND_CPU or
 * TRAINER_BACKEND_CUDA (chosen before the collective, which depends on it);
 * -1 with err for CUDA on a build without it. */
int trainer_backend_resolve(int requested, ft_err_t *err);

/* The base weight precision a job gets on a resolved backend
 * (TRAINER_BACKEND_CPU or _CUDA): FT_DTYPE_FP32 or FT_DTYPE_BF16 ("auto":
 * fp32 on CPU, bf16 on CUDA); -1 with err naming spec.train.dtype for fp32
 * on CUDA, which holds its base weights in bf16 only. */
int trainer_dtype_resolve(int backend, ft_dtype_t dtype, ft_err_t *err);
/* The compute backend for a resolved backend and precision (cpu, cpu-bf16,
 * cuda); NULL with err when it cannot be had. Logs which one, with the bf16
 * kernel's name. */
const backend_t *trainer_backend_open(int backend, ft_dtype_t dtype, ft_err_t *err);

#define TRAINER_STOPPED 1  /* trainer_run: stopped early on request, checkpoint saved */

void trainer_opts_defaults(trainer_opts_t *o);

/* Loads everything for spec on this rank. NULL with err on failure. The
 * trainer borrows coll. */
trainer_t *trainer_new(const ft_trainspec_t *spec, coll_t *coll, const trainer_opts_t *o,
                       ft_err_t *err);
void trainer_destroy(trainer_t **t);

/* The whole job: resume from the newest checkpoint in output_dir when there
 * is one, train to the last step, eval, save, write the adapter. Returns 0,
 * TRAINER_STOPPED (see trainer_opts_t.stop) or -1 with err. */
int trainer_run(trainer_t *t, ft_err_t *err);

/* Token-weighted mean cross-entropy over every eval row (sharded across
 * ranks, summed through coll). -1 with err when there are no eval rows. */
int trainer_eval(trainer_t *t, double *loss, int64_t *n_tok, ft_err_t *err);

/* ft-train check: first training batch (rank 0, epoch 0), one forward +
 * backward of the mean loss, written to out_path (see the contract). */
int trainer_check(trainer_t *t, const char *out_path, ft_err_t *err);

/* Loads the adapter folder dir into the LoRA parameters (the trainer must
 * have been built with the adapter's r/alpha/targets, see trainer_opts_t). */
int trainer_load_adapter(trainer_t *t, const char *dir, ft_err_t *err);

/* Writes the eval rows as I32 "inputs" and "targets" (N, T) to path. */
int trainer_dump_eval_rows(trainer_t *t, const char *path, ft_err_t *err);

#endif
