/*
 * mtest.h: helpers shared by the model tests: a seeded generator, random
 * buffers, a hand-built random Llama (no files), and the gradient comparison
 * that every finite-difference check prints, and the check that a backend's
 * results do not depend on its thread count.
 *
 * The comparison metric is max_i |analytic_i - numeric_i| / max_i |numeric_i|
 * (error relative to the gradient's scale), so tiny entries do not blow up a
 * per-element ratio; each test states its tolerance.
 */
#ifndef FT_MTEST_H
#define FT_MTEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "llama.h"
#include "lora.h"
#include "model.h"

static int mt_failures;

#define MT_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            mt_failures++;                                                                         \
        }                                                                                          \
    } while (0)

static uint64_t mt_state = 0x1234567ull;

static inline uint64_t mt_next(void)
{
    uint64_t z = (mt_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline double mt_uniform(void)
{
    return (double)(mt_next() >> 11) * (1.0 / 9007199254740992.0);
}

static inline double mt_normal(void)
{
    double u1 = mt_uniform(), u2 = mt_uniform();
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

static inline void mt_fill(float *x, size_t n, double std)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(std * mt_normal());
}

/* worst |a - n| / max|n|; prints it with the label and returns it */
static inline double mt_compare(const char *label, const float *analytic, const double *numeric,
                                size_t n, double tol)
{
    double scale = 0.0, worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        scale = fabs(numeric[i]) > scale ? fabs(numeric[i]) : scale;
    if (scale == 0.0)
        scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)analytic[i] - numeric[i]) / scale;
        if (e > worst) {
            worst = e;
            at = i;
        }
    }
    printf("%-34s n=%-6zu grad scale %.3e worst rel err %.3e (at %zu: %.6e vs %.6e) tol %.0e %s\n",
           label, n, scale, worst, at, n ? (double)analytic[at] : 0.0, n ? numeric[at] : 0.0, tol,
           worst <= tol ? "ok" : "FAIL");
    if (!(worst <= tol))
        mt_failures++;
    return worst;
}

/* A random Llama held in one buffer, in the layout of llama.h. */
static inline int mt_random_model(const llama_config_t *cfg, llama_weights_t *w, double std)
{
    size_t C = cfg->hidden_size, I = cfg->intermediate_size, V = cfg->vocab_size;
    size_t Hq = (size_t)cfg->n_heads * cfg->head_dim, Hkv = (size_t)cfg->n_kv_heads * cfg->head_dim;
    size_t per_layer = 2 * C + Hq * C + 2 * Hkv * C + C * Hq + 3 * I * C;
    size_t n = V * C + C + (cfg->tie_word_embeddings ? 0 : V * C) + cfg->n_layers * per_layer;
    memset(w, 0, sizeof(*w));
    w->mem = malloc(n * sizeof(float));
    w->layers = calloc(cfg->n_layers, sizeof(*w->layers));
    if (!w->mem || !w->layers)
        return -1;
    w->n_floats = n;
    float *p = w->mem;
#define TAKE(dst, cnt)                                                                             \
    do {                                                                                           \
        dst = p;                                                                                   \
        p += (cnt);                                                                                \
    } while (0)
    TAKE(w->embed, V * C);
    mt_fill(w->embed, V * C, std);
    TAKE(w->final_norm, C);
    for (size_t i = 0; i < C; i++)
        w->final_norm[i] = (float)(1.0 + 0.1 * mt_normal());
    if (cfg->tie_word_embeddings) {
        w->lm_head = w->embed;
    } else {
        TAKE(w->lm_head, V * C);
        mt_fill(w->lm_head, V * C, std);
    }
    for (int l = 0; l < cfg->n_layers; l++) {
        llama_layer_weights_t *lw = &w->layers[l];
        TAKE(lw->attn_norm, C);
        TAKE(lw->mlp_norm, C);
        for (size_t i = 0; i < C; i++) {
            lw->attn_norm[i] = (float)(1.0 + 0.1 * mt_normal());
            lw->mlp_norm[i] = (float)(1.0 + 0.1 * mt_normal());
        }
        TAKE(lw->q, Hq * C);
        mt_fill(lw->q, Hq * C, std);
        TAKE(lw->k, Hkv * C);
        mt_fill(lw->k, Hkv * C, std);
        TAKE(lw->v, Hkv * C);
        mt_fill(lw->v, Hkv * C, std);
        TAKE(lw->o, C * Hq);
        mt_fill(lw->o, C * Hq, std);
        TAKE(lw->gate, I * C);
        mt_fill(lw->gate, I * C, std);
        TAKE(lw->up, I * C);
        mt_fill(lw->up, I * C, std);
        TAKE(lw->down, C * I);
        mt_fill(lw->down, C * I, std);
    }
#undef TAKE
    return 0;
}

static inline void mt_free_model(llama_weights_t *w)
{
    free(w->mem);
    free(w->layers);
    memset(w, 0, sizeof(*w));
}

static inline void mt_tiny_config(llama_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->vocab_size = 40;
    c->hidden_size = 32;
    c->intermediate_size = 48;
    c->n_layers = 2;
    c->n_heads = 4;
    c->n_kv_heads = 2;
    c->head_dim = 8;
    c->max_position_embeddings = 64;
    c->rms_norm_eps = 1e-5;
    c->rope_theta = 10000.0;
    c->rope_type = LLAMA_ROPE_DEFAULT;
    c->bos_token_id = 1;
    c->eos_token_id = 2;
    c->pad_token_id = -1;
    strcpy(c->model_type, "llama");
}

/* One training step of a small random model (B rows of T tokens) on backend
 * be with 1 thread and again with 2: the pool splits GEMMs, heads and rows,
 * and loss and every LoRA gradient must come out the same to the bit. */
static inline void mt_threads_check(const backend_t *be, int B, int T, const char *label)
{
    llama_config_t cfg;
    mt_tiny_config(&cfg);
    cfg.hidden_size = 64;
    cfg.intermediate_size = 176;
    cfg.head_dim = 16;
    cfg.vocab_size = 264;
    llama_weights_t w;
    if (mt_random_model(&cfg, &w, 0.1) < 0)
        return;
    model_opts_t o = {.r = 8, .alpha = 16.0, .mask = 0x7f, .dropout = 0.1, .B = B, .T = T};
    ft_err_t err;
    model_t *m = model_new(&cfg, &w, be, &o, &err);
    int32_t *in = malloc((size_t)B * T * sizeof(int32_t));
    int32_t *tg = malloc((size_t)B * T * sizeof(int32_t));
    float *g1 = NULL;
    if (!m || !in || !tg) {
        MT_CHECK(0, "model_new: %s", m ? "out of memory" : err.msg);
        goto out;
    }
    const lora_layout_t *lay = model_lora_layout(m);
    lora_init_params(lay, model_lora_params(m), 2, 0.05);
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)(mt_next() % 264);
        tg[i] = i % 7 == 0 ? -100 : (int32_t)(mt_next() % 264);
    }
    g1 = malloc(lay->n_params * sizeof(float));
    double s1 = 0, s2 = 0;
    int64_t n;
    be->set_threads(1);
    model_zero_grad(m);
    model_step(m, in, tg, true, 0.01f, 42, &s1, &n, &err);
    memcpy(g1, model_lora_grads(m), lay->n_params * sizeof(float));
    be->set_threads(2);
    model_zero_grad(m);
    model_step(m, in, tg, true, 0.01f, 42, &s2, &n, &err);
    double worst = 0.0;
    for (size_t i = 0; i < lay->n_params; i++) {
        double d = fabs((double)g1[i] - model_lora_grads(m)[i]);
        worst = d > worst ? d : worst;
    }
    printf("%-34s loss %.17g vs %.17g, worst grad diff %.3e %s\n", label, s1, s2, worst,
           s1 == s2 && worst == 0.0 ? "ok" : "FAIL");
    MT_CHECK(s1 == s2 && worst == 0.0, "%s: the thread count changes results", label);
    be->set_threads(1);
out:
    free(g1);
    free(in);
    free(tg);
    model_destroy(&m);
    mt_free_model(&w);
}

#endif
