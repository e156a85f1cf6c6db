/*
 * test_model.c: the whole model's LoRA gradients on a tiny random Llama
 * (2 layers, GQA 4/2 heads, all seven projections, some ignored targets)
 * against central finite differences of the mean loss, for untied and tied
 * embeddings, llama3 RoPE, and with LoRA dropout (masks fixed by the key).
 * Also: gradient accumulation over two micro-batches equals the gradient of
 * the combined batch, and eval mode gives the same loss as train mode
 * without dropout.
 * Numeric gradient: Richardson extrapolation of central differences with
 * h = 2e-2 and 1e-2 (error O(h^4) plus float rounding of the forward).
 * Tolerance: worst |analytic - numeric| / max |numeric| <= 2e-3.
 */
#include "backend.h"
#include "ft/jobspec.h"
#include "lora.h"
#include "model.h"
#include "mtest.h"

enum { B = 2, T = 6 };

static double mean_loss(model_t *m, const int32_t *in, const int32_t *tg, bool train)
{
    double sum = 0.0;
    int64_t n = 0;
    ft_err_t err;
    /* train with dscale 0 applies dropout but adds nothing to the gradients */
    if (model_step(m, in, tg, train, 0.0f, 99, &sum, &n, &err) < 0) {
        printf("model_step: %s\n", err.msg);
        exit(1);
    }
    return sum / (double)n;
}

static void grad_check(const char *label, llama_config_t *cfg, double dropout, bool tie)
{
    cfg->tie_word_embeddings = tie;
    llama_weights_t w;
    if (mt_random_model(cfg, &w, 0.3) < 0) {
        MT_CHECK(0, "model alloc");
        return;
    }
    model_opts_t o = {.r = 4,
                      .alpha = 8.0,
                      .use_rslora = false,
                      .mask = 0x7f,
                      .dropout = dropout,
                      .B = B,
                      .T = T};
    ft_err_t err;
    model_t *m = model_new(cfg, &w, backend_cpu(), &o, &err);
    if (!m) {
        MT_CHECK(0, "model_new: %s", err.msg);
        mt_free_model(&w);
        return;
    }
    const lora_layout_t *lay = model_lora_layout(m);
    float *params = model_lora_params(m);
    lora_init_params(lay, params, 3, 0.3);
    int32_t in[B * T], tg[B * T];
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)(mt_next() % (uint64_t)cfg->vocab_size);
        tg[i] = (int32_t)(mt_next() % (uint64_t)cfg->vocab_size);
    }
    tg[0] = tg[5] = tg[7] = -100;
    int64_t n_tok = 0;
    double sum = 0.0;
    model_zero_grad(m);
    model_step(m, in, tg, true, 1.0f / 9.0f, 99, &sum, &n_tok, &err);
    MT_CHECK(n_tok == 9, "tokens counted %lld, want 9", (long long)n_tok);
    size_t np = lay->n_params;
    double *num = malloc(np * sizeof(double));
    for (size_t i = 0; i < np; i++) {
        /* Richardson: (4 D(h/2) - D(h)) / 3 cancels the h^2 term of the
         * central difference D(h) */
        double d[2];
        const double hs[2] = {2e-2, 1e-2};
        float s = params[i];
        for (int k = 0; k < 2; k++) {
            params[i] = (float)(s + hs[k]);
            double lp = mean_loss(m, in, tg, true);
            params[i] = (float)(s - hs[k]);
            double lm = mean_loss(m, in, tg, true);
            d[k] = (lp - lm) / (((double)(float)(s + hs[k])) - (double)(float)(s - hs[k]));
        }
        params[i] = s;
        num[i] = (4.0 * d[1] - d[0]) / 3.0;
    }
    mt_compare(label, model_lora_grads(m), num, np, 2e-3);
    free(num);
    model_destroy(&m);
    mt_free_model(&w);
}

/* accumulation: rows {0,1} as one micro-batch == rows 0 and 1 as two micro-batches
 * of one row each, both scaled by 1 / (tokens of the whole batch) */
static void accumulation_check(llama_config_t *cfg)
{
    cfg->tie_word_embeddings = false;
    llama_weights_t w;
    if (mt_random_model(cfg, &w, 0.3) < 0)
        return;
    ft_err_t err;
    model_opts_t o2 = {.r = 4, .alpha = 8.0, .mask = 0x7f, .B = 2, .T = T};
    model_opts_t o1 = o2;
    o1.B = 1;
    model_t *m2 = model_new(cfg, &w, backend_cpu(), &o2, &err);
    model_t *m1 = model_new(cfg, &w, backend_cpu(), &o1, &err);
    if (!m1 || !m2) {
        MT_CHECK(0, "model_new");
        return;
    }
    const lora_layout_t *lay = model_lora_layout(m2);
    lora_init_params(lay, model_lora_params(m2), 8, 0.3);
    memcpy(model_lora_params(m1), model_lora_params(m2), lay->n_params * sizeof(float));
    int32_t in[2 * T], tg[2 * T];
    for (int i = 0; i < 2 * T; i++) {
        in[i] = (int32_t)(mt_next() % (uint64_t)cfg->vocab_size);
        tg[i] = i < 4 ? -100 : (int32_t)(mt_next() % (uint64_t)cfg->vocab_size);
    }
    int64_t n = 0;
    for (int i = 0; i < 2 * T; i++)
        n += tg[i] != -100;
    float ds = 1.0f / (float)n;
    double s2, s1a, s1b;
    int64_t n2, n1a, n1b;
    model_zero_grad(m2);
    model_zero_grad(m1);
    model_step(m2, in, tg, true, ds, 1, &s2, &n2, &err);
    model_step(m1, in, tg, true, ds, 1, &s1a, &n1a, &err);
    model_step(m1, in + T, tg + T, true, ds, 1, &s1b, &n1b, &err);
    double worst = 0.0, scale = 0.0;
    const float *g2 = model_lora_grads(m2), *g1 = model_lora_grads(m1);
    for (size_t i = 0; i < lay->n_params; i++) {
        double d = fabs((double)g2[i] - g1[i]);
        worst = d > worst ? d : worst;
        scale = fabs(g2[i]) > scale ? fabs(g2[i]) : scale;
    }
    double lerr = fabs((s1a + s1b) - s2) / s2;
    printf("%-34s tokens %lld+%lld=%lld loss rel err %.2e grad worst rel err %.3e tol 1e-5 %s\n",
           "grad accumulation (2 x B=1 vs B=2)", (long long)n1a, (long long)n1b, (long long)n2,
           lerr, worst / scale, worst / scale <= 1e-5 && lerr <= 1e-6 ? "ok" : "FAIL");
    MT_CHECK(worst / scale <= 1e-5 && lerr <= 1e-6 && n1a + n1b == n2, "accumulation");
    /* eval mode: same loss as train without dropout */
    double se;
    int64_t ne;
    model_step(m2, in, tg, false, 0.0f, 0, &se, &ne, &err);
    printf("%-34s train %.9g eval %.9g %s\n", "eval loss == train loss (p=0)", s2, se,
           se == s2 && ne == n2 ? "ok" : "FAIL");
    MT_CHECK(se == s2 && ne == n2, "eval loss");
    /* token outside the vocabulary is an error naming it */
    in[3] = cfg->vocab_size;
    int rc = model_step(m2, in, tg, false, 0.0f, 0, &se, &ne, &err);
    printf("%-34s rc %d: %s %s\n", "out-of-vocabulary input", rc, rc < 0 ? err.msg : "",
           rc < 0 ? "ok" : "FAIL");
    MT_CHECK(rc < 0, "oov accepted");
    model_destroy(&m1);
    model_destroy(&m2);
    mt_free_model(&w);
}

int main(void)
{
    backend_cpu()->set_threads(1);
    llama_config_t cfg;
    mt_tiny_config(&cfg);
    grad_check("model LoRA grads (untied)", &cfg, 0.0, false);
    grad_check("model LoRA grads (tied)", &cfg, 0.0, true);
    grad_check("model LoRA grads (dropout 0.25)", &cfg, 0.25, false);
    cfg.rope_type = LLAMA_ROPE_LLAMA3;
    cfg.rope_factor = 8.0;
    cfg.rope_low_freq_factor = 1.0;
    cfg.rope_high_freq_factor = 4.0;
    cfg.rope_original_max_position = 16;
    grad_check("model LoRA grads (llama3 rope)", &cfg, 0.0, false);
    mt_tiny_config(&cfg);
    accumulation_check(&cfg);
    mt_threads_check(backend_cpu(), 4, 64, "1 thread == 2 threads (bitwise)");
    printf("%s: %d failure(s)\n", mt_failures ? "FAIL" : "PASS", mt_failures);
    return mt_failures ? 1 : 0;
}
