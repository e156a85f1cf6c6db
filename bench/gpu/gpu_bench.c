/*
 * gpu_bench.c (ft-gpu-bench): one LoRA training step of a Llama shape on the
 * CUDA backend, timed: tokens/s, the step split (forward + backward, then
 * clip + AdamW), the time per op family of one profiled step, peak device
 * memory and the model's own buffers (bf16 activations: the backend's
 * act_bytes), the attention path the backend planned, and MFU against a
 * stated peak (989 TFLOP/s: H100/H200 SXM bf16 dense). Default shape: about
 * 1B parameters (hidden 2048, 16 layers, 32 heads, 8 kv heads, intermediate
 * 8192, vocab 128256 as Llama 3.2 1B), sequence 2048, micro-batch 4, LoRA
 * r 16 on all seven projections, the fused attention.
 *
 * MFU counts the FLOPs of model_train_flops (the useful ones: forward, the
 * input gradients through the frozen weights, LoRA forward and backward,
 * causal attention as the CPU blocks it), not the work a kernel may waste.
 * The weights are random (uniform, std 0.02): speed does not depend on them.
 * Output: readable lines, then one JSON line (the last line) for scripts.
 * Exit 77 when no CUDA device is visible, 2 on bad flags, 1 on failure.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_backend.h"
#include "ft/common.h"
#include "model.h"
#include "optim.h"
#include "tinymodel.h"

typedef struct {
    const char *name; /* flag without "--" */
    int *dst;         /* where the value goes */
    int lo, hi;       /* accepted range */
} int_flag_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* uniform(-a, a) with std 0.02, fast enough for a billion floats */
static void fill_uniform(float *x, size_t n, uint64_t seed)
{
    const float a = 0.02f * 1.7320508f; /* std of U(-a, a) is a / sqrt(3) */
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = a * ((float)(s >> 40) * (2.0f / 16777216.0f) - 1.0f);
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ft-gpu-bench [--hidden 2048] [--layers 16] [--heads 32] [--kv-heads 8]\n"
               "                    [--intermediate 8192] [--vocab 128256] [--seq 2048]\n"
               "                    [--batch 4] [--r 16] [--steps 8] [--warmup 2] [--device 0]\n"
               "                    [--peak-tflops 989] [--attn flash|materialised]\n"
               "  --attn flash (default): the fused kernels where the shape allows\n");
}

int main(int argc, char **argv)
{
    int hidden = 2048, layers = 16, heads = 32, kv = 8, inter = 8192, vocab = 128256;
    int seq = 2048, batch = 4, r = 16, steps = 8, warmup = 2, device = 0, peak_tflops = 989;
    const int_flag_t flags[] = {
        {"hidden", &hidden, 2, 65536},
        {"layers", &layers, 1, 1024},
        {"heads", &heads, 1, 1024},
        {"kv-heads", &kv, 1, 1024},
        {"intermediate", &inter, 1, 1 << 20},
        {"vocab", &vocab, 2, 1 << 22},
        {"seq", &seq, 1, 1 << 16},
        {"batch", &batch, 1, 4096},
        {"r", &r, 1, 1024},
        {"steps", &steps, 1, 100000},
        {"warmup", &warmup, 0, 1000},
        {"device", &device, 0, 1024},
        {"peak-tflops", &peak_tflops, 1, 1000000},
    };
    const char *attn = "flash";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--attn") == 0) {
            if (i + 1 >= argc ||
                (strcmp(argv[i + 1], "materialised") != 0 && strcmp(argv[i + 1], "flash") != 0)) {
                fprintf(stderr, "ft-gpu-bench: '--attn': expected materialised or flash\n");
                return 2;
            }
            attn = argv[++i];
            continue;
        }
        const int_flag_t *f = NULL;
        for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
            if (strncmp(argv[i], "--", 2) == 0 && strcmp(argv[i] + 2, flags[k].name) == 0)
                f = &flags[k];
        if (!f) {
            fprintf(stderr, "ft-gpu-bench: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ft-gpu-bench: '--%s' needs a value\n", f->name);
            return 2;
        }
        char *end;
        long v = strtol(argv[++i], &end, 10);
        if (*argv[i] == '\0' || *end != '\0' || v < f->lo || v > f->hi) {
            fprintf(stderr, "ft-gpu-bench: '--%s': expected an integer in [%d, %d], got '%s'\n",
                    f->name, f->lo, f->hi, argv[i]);
            return 2;
        }
        *f->dst = (int)v;
    }
    if (hidden % heads != 0 || heads % kv != 0 || (hidden / heads) % 2 != 0) {
        fprintf(stderr, "ft-gpu-bench: '--hidden' must be a multiple of '--heads' with an even "
                        "head size, and '--heads' a multiple of '--kv-heads'\n");
        return 2;
    }
    if (cuda_backend_device_count() < 1) {
        printf("ft-gpu-bench: no CUDA device visible: skipped\n");
        return 77;
    }
    ft_err_t err;
    ft_err_clear(&err);
    const backend_t *be = backend_cuda(device, &err);
    if (!be) {
        fprintf(stderr, "ft-gpu-bench: %s\n", err.msg);
        return 1;
    }
    cuda_backend_set_attention(attn);
    char dname[128] = "?";
    int major = 0, minor = 0;
    cuda_backend_device_name(dname, sizeof(dname), &major, &minor);

    llama_config_t cfg;
    tinymodel_bench_config(&cfg, vocab, hidden, inter, layers, heads, kv, seq, 500000.0);
    llama_weights_t w;
    double t_init = now_s();
    if (llama_weights_alloc(&cfg, &w) < 0) {
        fprintf(stderr, "ft-gpu-bench: out of host memory for the weights\n");
        return 1;
    }
    fill_uniform(w.mem, w.n_floats, 1);
    for (int l = 0; l < layers; l++) {
        for (int c = 0; c < hidden; c++)
            w.layers[l].attn_norm[c] = w.layers[l].mlp_norm[c] = 1.0f;
    }
    for (int c = 0; c < hidden; c++)
        w.final_norm[c] = 1.0f;
    uint32_t mask = (1u << FT_N_TARGET_MODULES) - 1;
    model_opts_t mo = {.r = r, .alpha = 2.0 * r, .mask = mask, .B = batch, .T = seq};
    model_t *m = model_new(&cfg, &w, be, &mo, &err);
    int rc = 1;
    adamw_t *opt = NULL;
    float *hp = NULL;
    size_t n = (size_t)batch * seq;
    int32_t *in = malloc(n * sizeof(int32_t)), *tg = malloc(n * sizeof(int32_t));
    double *step_s = calloc((size_t)steps, sizeof(double));
    double *fb_s = calloc((size_t)steps, sizeof(double));
    if (!m) {
        fprintf(stderr, "ft-gpu-bench: %s (%s)\n", err.msg, cuda_backend_error());
        goto out;
    }
    const lora_layout_t *lay = model_lora_layout(m);
    attn_shape_t as = {batch, seq, heads, kv, hidden / heads, 0};
    be->attention_plan(&as); /* the same choice model_new made */
    const char *attn_path = as.path ? "fused" : "materialised";
    double model_mb = (double)model_bytes(m) / 1048576.0;
    opt = adamw_new(be, lay->n_params, 0.9, 0.999, 1e-8, 0.0);
    hp = malloc(lay->n_params * sizeof(float));
    if (!opt || !hp || !in || !tg || !step_s || !fb_s) {
        fprintf(stderr, "ft-gpu-bench: out of memory (%s)\n", cuda_backend_error());
        goto out;
    }
    lora_init_params(lay, hp, 1, 0.0);
    if (be->upload(model_lora_params(m), hp, lay->n_params * sizeof(float)) < 0)
        goto out;
    uint64_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        in[i] = (int32_t)((s >> 33) % (uint64_t)vocab);
    }
    int64_t ntok = 0;
    for (size_t i = 0; i < n; i++) {
        tg[i] = (i + 1) % (size_t)seq == 0 ? -100 : in[i + 1];
        ntok += tg[i] >= 0;
    }
    printf("device: %s (sm_%d%d); set-up %.1f s\n", dname, major, minor, now_s() - t_init);
    printf("shape: hidden %d, layers %d, heads %d/%d, intermediate %d, vocab %d, seq %d, "
           "batch %d; LoRA r %d on all 7 projections (%zu parameters); attention %s (%s "
           "path)\n",
           hidden, layers, heads, kv, inter, vocab, seq, batch, r, lay->n_params, attn,
           attn_path);
    printf("model buffers: %.0f MiB (activations with %zu-byte [act] elements, LoRA params and "
           "grads)\n",
           model_mb, backend_act_bytes(be));

    double loss = 0.0;
    for (int k = 0; k < warmup + steps; k++) {
        double t0 = now_s();
        int64_t nt;
        model_zero_grad(m);
        if (model_step(m, in, tg, true, 1.0f / (float)ntok, (uint64_t)k, &loss, &nt, &err) < 0 ||
            be->sync() < 0) {
            fprintf(stderr, "ft-gpu-bench: step %d: %s %s\n", k, err.msg, cuda_backend_error());
            goto out;
        }
        double t1 = now_s();
        clip_grad_norm(be, model_lora_grads(m), lay->n_params, 1.0);
        adamw_step(opt, model_lora_params(m), model_lora_grads(m), 1e-4);
        if (be->sync() < 0) {
            fprintf(stderr, "ft-gpu-bench: optimiser: %s\n", cuda_backend_error());
            goto out;
        }
        double t2 = now_s();
        if (k >= warmup) {
            step_s[k - warmup] = t2 - t0;
            fb_s[k - warmup] = t1 - t0;
        }
        printf("step %d: %.1f ms (forward + backward %.1f ms), loss %.4f%s\n", k, (t2 - t0) * 1e3,
               (t1 - t0) * 1e3, loss / (double)ntok, k < warmup ? " (warm-up)" : "");
    }
    /* one more step with per-family timing (synchronising: slower overall) */
    model_profile_enable(true);
    cuda_backend_gemm_profile(true);
    {
        int64_t nt;
        model_zero_grad(m);
        if (model_step(m, in, tg, true, 1.0f / (float)ntok, 999, &loss, &nt, &err) < 0 ||
            be->sync() < 0) {
            fprintf(stderr, "ft-gpu-bench: profiled step: %s\n", err.msg);
            goto out;
        }
    }
    model_profile_enable(false);
    cuda_backend_gemm_profile(false);
    char prof[1024];
    model_profile_report(prof, sizeof(prof));

    double sum = 0.0, fb = 0.0;
    for (int k = 0; k < steps; k++) {
        sum += step_s[k];
        fb += fb_s[k];
    }
    double mean = sum / steps, fb_mean = fb / steps;
    qsort(step_s, (size_t)steps, sizeof(double), cmp_double);
    double median = step_s[steps / 2];
    double flops = model_train_flops(&cfg, r, mask, batch, seq);
    double tps = (double)n / median;
    double mfu = flops / median / ((double)peak_tflops * 1e12);
    double peak_mb = (double)be->peak_bytes() / 1048576.0;
    size_t fr = 0, tot = 0;
    cuda_backend_mem_info(&fr, &tot);
    printf("step: median %.1f ms, mean %.1f ms (forward + backward %.1f ms, clip + AdamW "
           "%.1f ms)\n",
           median * 1e3, mean * 1e3, fb_mean * 1e3, (mean - fb_mean) * 1e3);
    printf("tokens/s %.0f; %.2f TFLOP per step; %.1f TFLOP/s; MFU %.1f%% of %d TFLOP/s "
           "(target 40%%)\n",
           tps, flops / 1e12, flops / median / 1e12, 100.0 * mfu, peak_tflops);
    printf("device memory: peak %.0f MiB held by the backend (model buffers %.0f MiB); %.0f of "
           "%.0f MiB in use on the device now\n",
           peak_mb, model_mb, (double)(tot - fr) / 1048576.0, (double)tot / 1048576.0);
    printf("profiled step, seconds per op family: %s\n", prof);
    cuda_backend_gemm_report(stdout);
    printf("{\"device\": \"%s\", \"attn\": \"%s\", \"attn_path\": \"%s\", \"act_bytes\": %zu, "
           "\"hidden\": %d, \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, "
           "\"intermediate\": %d, \"vocab\": %d, \"seq\": %d, \"batch\": %d, \"r\": %d, "
           "\"step_ms\": %.2f, \"fwd_bwd_ms\": %.2f, \"optim_ms\": %.2f, \"tokens_per_s\": %.0f, "
           "\"tflop_per_step\": %.4f, \"mfu\": %.4f, \"peak_tflops\": %d, \"peak_mem_mb\": %.0f, "
           "\"model_mb\": %.0f, \"profile\": {%s}}\n",
           dname, attn, attn_path, backend_act_bytes(be), hidden, layers, heads, kv, inter, vocab,
           seq, batch, r, median * 1e3, fb_mean * 1e3, (mean - fb_mean) * 1e3, tps, flops / 1e12,
           mfu, peak_tflops, peak_mb, model_mb, prof);
    rc = isfinite(loss) ? 0 : 1;
    if (rc)
        fprintf(stderr, "ft-gpu-bench: the loss is not finite\n");
out:
    free(in);
    free(tg);
    free(hp);
    free(step_s);
    free(fb_s);
    if (opt)
        adamw_destroy(&opt);
    model_destroy(&m);
    llama_weights_free(&w);
    return rc;
}
