/*
 * optim.c: AdamW, learning-rate schedules and gradient clipping (optim.h).
 * The update itself is the backend's adamw op so that it runs where the
 * parameters live; this file owns the state and the scalar arithmetic.
 */
#include <math.h>
#include <stdlib.h>

#include "optim.h"

adamw_t *adamw_new(const backend_t *be, size_t n, double beta1, double beta2, double eps,
                   double weight_decay)
{
    adamw_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->be = be;
    a->n = n;
    a->beta1 = beta1;
    a->beta2 = beta2;
    a->eps = eps;
    a->weight_decay = weight_decay;
    a->m = be->alloc(n * sizeof(float));
    a->v = be->alloc(n * sizeof(float));
    if (!a->m || !a->v)
        adamw_destroy(&a);
    return a;
}

void adamw_destroy(adamw_t **pa)
{
    adamw_t *a = *pa;
    if (!a)
        return;
    a->be->free(a->m);
    a->be->free(a->v);
    free(a);
    *pa = NULL;
}

void adamw_step(adamw_t *a, float *params, const float *grads, double lr)
{
    a->t++;
    a->be->adamw(params, grads, a->m, a->v, (int64_t)a->n, lr, a->beta1, a->beta2, a->eps,
                 a->weight_decay, a->t);
}

double lr_lambda(ft_lr_sched_t kind, int64_t step, int64_t warmup, int64_t total)
{
    if (step < warmup)
        return (double)step / (double)(warmup > 1 ? warmup : 1);
    double span = (double)(total - warmup > 1 ? total - warmup : 1);
    switch (kind) {
    case FT_LR_CONSTANT:
        return 1.0;
    case FT_LR_LINEAR: {
        double f = (double)(total - step) / span;
        return f > 0.0 ? f : 0.0;
    }
    case FT_LR_COSINE: {
        double progress = (double)(step - warmup) / span;
        double f = 0.5 * (1.0 + cos(M_PI * 2.0 * 0.5 * progress));
        return f > 0.0 ? f : 0.0;
    }
    }
    return 1.0;
}

int64_t lr_warmup_steps(const ft_trainspec_t *t, int64_t total)
{
    if (t->warmup_steps > 0)
        return t->warmup_steps;
    return (int64_t)ceil(t->warmup_ratio * (double)total);
}

double clip_grad_norm(const backend_t *be, float *grads, size_t n, double max_norm)
{
    double norm = sqrt(be->sumsq(grads, (int64_t)n));
    if (max_norm > 0.0) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0)
            be->scale(grads, (int64_t)n, (float)coef);
    }
    return norm;
}
