/*
 * optim.h: what changes the LoRA parameters: AdamW with PyTorch semantics,
 * the learning-rate schedules of Hugging Face's get_*_schedule_with_warmup,
 * and global gradient-norm clipping like torch.nn.utils.clip_grad_norm_.
 *
 * The optimiser state (m, v) is two buffers with the LoRA layout; the step
 * counter is the number of updates done. Cost: O(parameters) per step.
 */
#ifndef FT_OPTIM_H
#define FT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "ft/jobspec.h"

typedef struct {
    const backend_t *be;   /* where m, v live */
    float *m;              /* (n) first moment */
    float *v;              /* (n) second moment */
    size_t n;              /* parameters */
    int64_t t;             /* updates done */
    double beta1, beta2, eps, weight_decay; /* torch.optim.AdamW arguments */
} adamw_t;

/* NULL on out of memory; moments start at zero. */
adamw_t *adamw_new(const backend_t *be, size_t n, double beta1, double beta2, double eps,
                   double weight_decay);
void adamw_destroy(adamw_t **a);
/* One update of params with grads at learning rate lr (t becomes t + 1). */
void adamw_step(adamw_t *a, float *params, const float *grads, double lr);

/* Multiplier of the peak learning rate at update `step` (0-based, the value
 * the step-th update uses, as HF's LambdaLR gives it):
 *  warmup (step < warmup): step / max(1, warmup), for every schedule;
 *  constant: 1 (HF constant_with_warmup; with warmup 0 it is plain constant);
 *  linear: max(0, (total - step) / max(1, total - warmup));
 *  cosine: max(0, 0.5 * (1 + cos(pi * progress))) with progress =
 *          (step - warmup) / max(1, total - warmup) (num_cycles 0.5). */
double lr_lambda(ft_lr_sched_t kind, int64_t step, int64_t warmup, int64_t total);
/* Warmup steps of a spec: warmup_steps, else ceil(warmup_ratio * total). */
int64_t lr_warmup_steps(const ft_trainspec_t *t, int64_t total);

/* Global L2 norm of grads (n floats); when max_norm > 0 and the norm exceeds
 * it, scales grads by max_norm / (norm + 1e-6) (torch's clip_grad_norm_).
 * Returns the norm before clipping. */
double clip_grad_norm(const backend_t *be, float *grads, size_t n, double max_norm);

#endif
