/*
 * train.c: the training loop of one rank (train.h). Order of one optimiser
 * step: fetch the GA micro-batches of this rank, count their targets, sum the
 * counts across ranks, run forward+backward of each micro-batch scaled by
 * 1/total (gradients accumulate in the model), sum gradients and losses
 * across ranks, clip the global norm, take the LR of this step from the
 * schedule, AdamW, then events / eval / checkpoint as due.
 *
 * Invariants: every rank holds identical LoRA weights and Adam moments after
 * each step (same init seed, same summed gradients); only rank 0 writes
 * checkpoints, the adapter and events of eval/checkpoint/done.
 * Cost per step: GA * (forward + backward of B rows) + O(LoRA params).
 */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "adapter.h"
#include "bf16gemm.h"
#include "data.h"
#include "ft/json.h"
#include "llama.h"
#include "model.h"
#include "optim.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "train.h"
#ifdef FT_HAVE_CUDA
#include "cuda_backend.h"
#endif

#define KEEP_CHECKPOINTS 2

struct trainer {
    ft_trainspec_t spec;          /* copy of the train section */
    trainer_opts_t opts;          /* how this trainer was asked to run */
    coll_t *coll;                 /* borrowed */
    const backend_t *be;          /* compute */
    llama_config_t cfg;           /* base model config */
    llama_weights_t w;            /* frozen base weights */
    bool w_loaded;                /* w must be freed */
    tokenizer_t *tok;             /* NULL when data is pre-tokenized */
    data_t *data;                 /* rows, order, eval split */
    model_t *model;               /* forward/backward + LoRA buffers */
    adamw_t *opt;                 /* Adam moments */
    adapter_module_t *mods;       /* [L*7] views of the LoRA params */
    adapter_module_t *gmods;      /* [L*7] views of the LoRA grads */
    adapter_t ad;                 /* adapter over params */
    adapter_t gad;                /* adapter over grads */
    int B, T, GA;                 /* micro-batch rows, tokens per row, accumulation */
    int32_t *inputs;              /* (GA, B, T) */
    int32_t *targets;             /* (GA, B, T) */
    int64_t step;                 /* optimiser steps done */
    int64_t total_steps;          /* steps this job runs to */
    int64_t warmup;               /* warmup steps */
    int64_t steps_per_epoch;      /* for the epoch figure */
    data_pos_t pos;               /* next batch */
    double *loss_hist;            /* one mean loss per step done */
    int64_t n_loss, cap_loss;     /* entries, capacity */
    uint64_t spec_hash;           /* checkpoint_spec_hash(spec) */
    double t_start;               /* run start, monotonic seconds */
    /* host mirrors of the device buffers (device backends only, else NULL):
     * what checkpoints, adapters and the ring collective read and write */
    float *h_params, *h_grads;    /* (n_params) LoRA values, gradients */
    float *h_m, *h_v;             /* (n_params) Adam moments */
};

void trainer_opts_defaults(trainer_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->event_fd = -1;
    o->dropout = -1.0;
}

/* ---- events ---- */

/* One event line being built. Numbers are printed with %.17g so that they
 * read back bit for bit (cJSON's printer may drop the last digits), which
 * the resume test relies on. */
typedef struct {
    char buf[2048];  /* the JSON object so far */
    size_t len;      /* bytes used */
} event_t;

static void ev_raw(event_t *e, const char *s)
{
    size_t n = strlen(s);
    if (e->len + n < sizeof(e->buf)) {
        memcpy(e->buf + e->len, s, n + 1);
        e->len += n;
    }
}

static void ev_key(event_t *e, const char *key)
{
    ev_raw(e, e->len > 1 ? ",\"" : "\"");
    ev_raw(e, key);
    ev_raw(e, "\":");
}

static void ev_num(event_t *e, const char *key, double v)
{
    char tmp[40];
    ev_key(e, key);
    if (isfinite(v))
        snprintf(tmp, sizeof(tmp), "%.17g", v);
    else
        snprintf(tmp, sizeof(tmp), "null");
    ev_raw(e, tmp);
}

static void ev_int(event_t *e, const char *key, int64_t v)
{
    char tmp[32];
    ev_key(e, key);
    snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    ev_raw(e, tmp);
}

static void ev_str(event_t *e, const char *key, const char *s)
{
    ev_key(e, key);
    ev_raw(e, "\"");
    for (; *s; s++) {
        char tmp[8];
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            snprintf(tmp, sizeof(tmp), "\\%c", ch);
        else if (ch < 0x20)
            snprintf(tmp, sizeof(tmp), "\\u%04x", ch);
        else
            snprintf(tmp, sizeof(tmp), "%c", ch);
        ev_raw(e, tmp);
    }
    ev_raw(e, "\"");
}

static void ev_begin(event_t *e, const char *name, int64_t step, int64_t total)
{
    e->len = 0;
    e->buf[0] = 0;
    ev_raw(e, "{");
    ev_str(e, "event", name);
    ev_int(e, "step", step);
    if (total >= 0)
        ev_int(e, "total_steps", total);
}

static void emit(const trainer_t *t, event_t *e)
{
    ev_raw(e, "}\n");
    if (t->opts.event_fd < 0)
        return;
    size_t off = 0;
    while (off < e->len) {
        ssize_t n = write(t->opts.event_fd, e->buf + off, e->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ft_warn("cannot write an event to fd %d: %s", t->opts.event_fd, strerror(errno));
            break;
        }
        off += (size_t)n;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* device backends report their own high-water mark (device memory) */
static double peak_mem_mb(const backend_t *be)
{
    if (be->peak_bytes)
        return (double)be->peak_bytes() / 1048576.0;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return 0.0;
    return (double)ru.ru_maxrss / 1024.0;
}

/* ---- backend and host mirrors ---- */

int trainer_backend_parse(const char *s)
{
    static const char *const names[] = {"auto", "cpu", "cuda"};  /* trainer_backend_t order */
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

int trainer_backend_resolve(int requested, ft_err_t *err)
{
#ifdef FT_HAVE_CUDA
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    if (requested == TRAINER_BACKEND_CUDA ||
        (requested == TRAINER_BACKEND_AUTO && (!cvd || cvd[0] != '\0') &&
         cuda_backend_device_count() > 0))
        return TRAINER_BACKEND_CUDA;
#else
    if (requested == TRAINER_BACKEND_CUDA) {
        ft_err_set(err, FT_EBADFIELD, "'--backend cuda': ft-train was built without CUDA");
        return -1;
    }
#endif
    return TRAINER_BACKEND_CPU;
}

int trainer_dtype_resolve(int backend, ft_dtype_t dtype, ft_err_t *err)
{
    if (backend == TRAINER_BACKEND_CUDA) {
        if (dtype == FT_DTYPE_FP32) {
            ft_err_set(err, FT_EBADFIELD, "spec.train.dtype: \"fp32\" is not available on the "
                       "cuda backend, which holds the base weights in bf16 (use \"bf16\" or "
                       "\"auto\", or \"device\": \"cpu\" for fp32)");
            return -1;
        }
        return FT_DTYPE_BF16;
    }
    return dtype == FT_DTYPE_BF16 ? FT_DTYPE_BF16 : FT_DTYPE_FP32;
}

const backend_t *trainer_backend_open(int backend, ft_dtype_t dtype, ft_err_t *err)
{
    int d = trainer_dtype_resolve(backend, dtype, err);
    if (d < 0)
        return NULL;
#ifdef FT_HAVE_CUDA
    if (backend == TRAINER_BACKEND_CUDA) {
        /* device 0 of the visible ones: ftworker hands each rank its GPU alone */
        const backend_t *be = backend_cuda(0, err);
        if (be)
            ft_info("compute: cuda backend (bf16 base weights)");
        return be;
    }
#endif
    if (d == FT_DTYPE_BF16) {
        ft_info("compute: cpu-bf16 backend (bf16 base weights, %s kernel)", bf16_gemm_kernel());
        return backend_cpu_bf16();
    }
    ft_info("compute: cpu backend (fp32 base weights, OpenBLAS sgemm)");
    return backend_cpu();
}

static const backend_t *pick_backend(int which, ft_dtype_t dtype, ft_err_t *err)
{
    int b = trainer_backend_resolve(which, err);
    return b < 0 ? NULL : trainer_backend_open(b, dtype, err);
}

/* where checkpoints and adapters read the LoRA values and Adam moments */
static float *host_params(trainer_t *t)
{
    return t->h_params ? t->h_params : model_lora_params(t->model);
}

static float *host_m(trainer_t *t)
{
    return t->h_m ? t->h_m : t->opt->m;
}

static float *host_v(trainer_t *t)
{
    return t->h_v ? t->h_v : t->opt->v;
}

/* device -> host mirrors (params, grads, moments); no-op on the cpu backend */
static int mirror_down(trainer_t *t, ft_err_t *err)
{
    if (!t->h_params)
        return 0;
    size_t b = model_lora_layout(t->model)->n_params * sizeof(float);
    if (t->be->sync() < 0 || t->be->download(t->h_params, model_lora_params(t->model), b) < 0 ||
        t->be->download(t->h_grads, model_lora_grads(t->model), b) < 0 ||
        t->be->download(t->h_m, t->opt->m, b) < 0 || t->be->download(t->h_v, t->opt->v, b) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot copy the LoRA state from the '%s' backend",
                   t->be->name);
        return -1;
    }
    return 0;
}

/* host mirrors -> device (params, moments) */
static int mirror_up(trainer_t *t, ft_err_t *err)
{
    if (!t->h_params)
        return 0;
    size_t b = model_lora_layout(t->model)->n_params * sizeof(float);
    if (t->be->upload(model_lora_params(t->model), t->h_params, b) < 0 ||
        t->be->upload(t->opt->m, t->h_m, b) < 0 || t->be->upload(t->opt->v, t->h_v, b) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot copy the LoRA state to the '%s' backend",
                   t->be->name);
        return -1;
    }
    return 0;
}

/* ---- set-up ---- */

static int fill_adapter(trainer_t *t, adapter_t *ad, adapter_module_t *mods, float *base)
{
    const lora_layout_t *lay = model_lora_layout(t->model);
    for (int l = 0; l < t->cfg.n_layers; l++) {
        for (int m = 0; m < FT_N_TARGET_MODULES; m++) {
            size_t i = (size_t)l * FT_N_TARGET_MODULES + m;
            mods[i].a = lay->a_off[i] == LORA_NONE ? NULL : base + lay->a_off[i];
            mods[i].b = lay->b_off[i] == LORA_NONE ? NULL : base + lay->b_off[i];
        }
    }
    memset(ad, 0, sizeof(*ad));
    ad->cfg = &t->cfg;
    ad->r = lay->r;
    ad->lora_alpha = t->opts.adapter_r > 0 ? t->opts.adapter_alpha : t->spec.lora_alpha;
    ad->lora_dropout = t->spec.lora_dropout;
    ad->use_rslora = t->opts.adapter_r > 0 ? t->opts.adapter_rslora : t->spec.use_rslora;
    ad->target_mask = lay->mask;
    ft_strlcpy(ad->base_model, t->spec.base_model, sizeof(ad->base_model));
    ad->mods = mods;
    return 0;
}

trainer_t *trainer_new(const ft_trainspec_t *spec, coll_t *coll, const trainer_opts_t *o,
                       ft_err_t *err)
{
    trainer_t *t = calloc(1, sizeof(*t));
    if (!t) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return NULL;
    }
    t->spec = *spec;
    t->opts = *o;
    t->coll = coll;
    t->be = pick_backend(o->backend, spec->dtype, err);
    if (!t->be)
        goto fail;
    t->B = spec->micro_batch_size;
    t->T = spec->sequence_len;
    t->GA = spec->gradient_accumulation_steps;
    if (t->B < 1 || t->T < 1 || t->GA < 1) {
        ft_err_set(err, FT_EBADFIELD, "spec.train: micro_batch_size, sequence_len and "
                   "gradient_accumulation_steps must be positive");
        goto fail;
    }
    if (coll->rank < 0 || coll->rank >= coll->world) {
        ft_err_set(err, FT_EBADFIELD, "rank %d outside world %d", coll->rank, coll->world);
        goto fail;
    }
    int threads = spec->threads;
    if (threads <= 0) {
        /* the CPUs this rank may run on (the worker may pin ranks) */
        cpu_set_t set;
        threads = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
        if (threads <= 0) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            threads = n > 0 ? (int)n : 1;
        }
    }
    t->be->set_threads(threads);

    if (llama_config_load(spec->base_model, &t->cfg, err) < 0)
        goto fail;
    if (llama_weights_load(spec->base_model, &t->cfg, &t->w, err) < 0)
        goto fail;
    t->w_loaded = true;
    if (t->T > t->cfg.max_position_embeddings)
        ft_warn("sequence_len %d exceeds max_position_embeddings %d of '%s'", t->T,
                t->cfg.max_position_embeddings, spec->base_model);
    ft_err_t terr;
    ft_err_clear(&terr);
    t->tok = tokenizer_load(spec->base_model, &terr);
    if (!t->tok)
        ft_info("no tokenizer for '%s' (%s): data must be pre-tokenized", spec->base_model,
                terr.msg);
    t->data = data_open(spec, t->tok, t->T, err);
    if (!t->data)
        goto fail;

    model_opts_t mo = {
        .r = spec->lora_r, .alpha = spec->lora_alpha, .use_rslora = spec->use_rslora,
        .mask = spec->target_mask, .dropout = o->dropout >= 0.0 ? o->dropout : spec->lora_dropout,
        .B = t->B, .T = t->T,
    };
    if (o->adapter_r > 0) {
        mo.r = o->adapter_r;
        mo.alpha = o->adapter_alpha;
        mo.use_rslora = o->adapter_rslora;
        mo.mask = o->adapter_mask;
    }
    t->model = model_new(&t->cfg, &t->w, t->be, &mo, err);
    if (!t->model)
        goto fail;
    if (t->be->weights_upload) {
        /* the model holds its own device copy: the host one is not read again */
        llama_weights_free(&t->w);
        t->w_loaded = false;
    }
    const lora_layout_t *lay = model_lora_layout(t->model);
    t->opt = adamw_new(t->be, lay->n_params, spec->adam_beta1, spec->adam_beta2,
                       spec->adam_epsilon, spec->weight_decay);
    if (t->be->download) {
        t->h_params = calloc(lay->n_params, sizeof(float));
        t->h_grads = calloc(lay->n_params, sizeof(float));
        t->h_m = calloc(lay->n_params, sizeof(float));
        t->h_v = calloc(lay->n_params, sizeof(float));
        if (!t->h_params || !t->h_grads || !t->h_m || !t->h_v) {
            ft_err_set(err, FT_EINTERNAL, "out of memory");
            goto fail;
        }
    }
    lora_init_params(lay, host_params(t), spec->seed, o->init_b_std);
    if (t->opt && mirror_up(t, err) < 0)
        goto fail;
    size_t nm = (size_t)t->cfg.n_layers * FT_N_TARGET_MODULES;
    t->mods = calloc(nm, sizeof(*t->mods));
    t->gmods = calloc(nm, sizeof(*t->gmods));
    size_t rows = (size_t)t->GA * t->B * t->T;
    t->inputs = malloc(rows * sizeof(int32_t));
    t->targets = malloc(rows * sizeof(int32_t));
    if (!t->opt || !t->mods || !t->gmods || !t->inputs || !t->targets) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto fail;
    }
    fill_adapter(t, &t->ad, t->mods, host_params(t));
    fill_adapter(t, &t->gad, t->gmods, t->h_grads ? t->h_grads : model_lora_grads(t->model));

    int64_t n_rows = data_n_train_rows(t->data);
    if (n_rows == 0) {
        ft_err_set(err, FT_EMISSING, "spec.train.datasets: no training rows (every record "
                   "empty, masked or moved to the eval split)");
        goto fail;
    }
    int64_t per_step = (int64_t)t->B * coll->world * t->GA;
    t->steps_per_epoch = n_rows / per_step > 0 ? n_rows / per_step : 1;
    if (spec->max_steps > 0)
        t->total_steps = spec->max_steps;
    else
        t->total_steps = (int64_t)ceil(spec->num_epochs * (double)t->steps_per_epoch);
    if (t->total_steps < 1)
        t->total_steps = 1;
    t->warmup = lr_warmup_steps(spec, t->total_steps);
    t->spec_hash = checkpoint_spec_hash(spec);
    ft_info("model '%s': %d layers, hidden %d, vocab %d; LoRA r %d on mask %#x: %zu "
            "parameters; %lld train rows, %lld eval rows; %lld steps (%lld per epoch), "
            "%d threads",
            spec->base_model, t->cfg.n_layers, t->cfg.hidden_size, t->cfg.vocab_size, lay->r,
            (unsigned)lay->mask, lay->n_params, (long long)n_rows,
            (long long)data_n_eval_rows(t->data), (long long)t->total_steps,
            (long long)t->steps_per_epoch, threads);
    return t;
fail:
    trainer_destroy(&t);
    return NULL;
}

void trainer_destroy(trainer_t **pt)
{
    trainer_t *t = *pt;
    if (!t)
        return;
    model_destroy(&t->model);
    adamw_destroy(&t->opt);
    data_destroy(&t->data);
    tokenizer_destroy(&t->tok);
    if (t->w_loaded)
        llama_weights_free(&t->w);
    free(t->mods);
    free(t->gmods);
    free(t->inputs);
    free(t->targets);
    free(t->loss_hist);
    free(t->h_params);
    free(t->h_grads);
    free(t->h_m);
    free(t->h_v);
    free(t);
    *pt = NULL;
}

/* ---- the loop ---- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t dropout_key(const trainer_t *t, int64_t step, int micro)
{
    uint64_t k = mix64(t->spec.seed ^ 0x44524F50ull /* "DROP" */);
    k = mix64(k + (uint64_t)step);
    k = mix64(k + (uint64_t)micro * 0x9E3779B97F4A7C15ull);
    return mix64(k + (uint64_t)t->coll->rank);
}

static int push_loss(trainer_t *t, double loss)
{
    if (t->n_loss == t->cap_loss) {
        int64_t cap = t->cap_loss ? t->cap_loss * 2 : 256;
        double *p = realloc(t->loss_hist, (size_t)cap * sizeof(double));
        if (!p)
            return -1;
        t->loss_hist = p;
        t->cap_loss = cap;
    }
    t->loss_hist[t->n_loss++] = loss;
    return 0;
}

int trainer_eval(trainer_t *t, double *loss, int64_t *n_tok, ft_err_t *err)
{
    int64_t n_rows = data_n_eval_rows(t->data);
    if (n_rows == 0) {
        ft_err_set(err, FT_EMISSING, "no eval rows (set 'eval_path' or 'val_set_size')");
        return -1;
    }
    int B = t->B, T = t->T, rank = t->coll->rank, world = t->coll->world;
    double acc[2] = {0.0, 0.0};  /* loss sum, tokens */
    /* rank r evaluates rows r, r + world, ... in batches of B (padding rows
     * have no targets) */
    int64_t i = rank;
    while (i < n_rows) {
        int filled = 0;
        for (; filled < B && i < n_rows; filled++, i += world)
            data_eval_row(t->data, i, t->inputs + (size_t)filled * T,
                          t->targets + (size_t)filled * T);
        for (int r = filled; r < B; r++) {
            for (int k = 0; k < T; k++) {
                t->inputs[(size_t)r * T + k] = 0;
                t->targets[(size_t)r * T + k] = FT_IGNORE_INDEX;
            }
        }
        double s;
        int64_t n;
        if (model_step(t->model, t->inputs, t->targets, false, 0.0f, 0, &s, &n, err) < 0)
            return -1;
        acc[0] += s;
        acc[1] += (double)n;
    }
    if (t->coll->allreduce_sum_f64(t->coll, acc, 2) < 0) {
        ft_err_set(err, FT_EINTERNAL, "all-reduce of the eval loss failed");
        return -1;
    }
    *n_tok = (int64_t)acc[1];
    if (acc[1] == 0) {
        ft_err_set(err, FT_EMISSING, "the eval rows hold no target tokens");
        return -1;
    }
    *loss = acc[0] / acc[1];
    return 0;
}

static int do_eval(trainer_t *t, double *out, ft_err_t *err)
{
    int64_t n;
    if (trainer_eval(t, out, &n, err) < 0)
        return -1;
    ft_info("step %lld: eval loss %.6f over %lld tokens", (long long)t->step, *out,
            (long long)n);
    if (t->coll->rank == 0) {
        event_t ev;
        ev_begin(&ev, "eval", t->step, t->total_steps);
        ev_num(&ev, "eval_loss", *out);
        emit(t, &ev);
    }
    return 0;
}

/* 1 when this step is the last before a requested stop. A stop seen by any
 * rank counts for all: ranks get their SIGTERM at slightly different moments,
 * and one rank stopping alone would leave the others waiting in the next
 * all-reduce (and rank 0, which saves, might be one of them). -1 when the
 * collective fails. */
static int stop_agreed(trainer_t *t)
{
    double f = t->opts.stop && *t->opts.stop ? 1.0 : 0.0;
    if (t->coll->world > 1 && t->coll->allreduce_sum_f64(t->coll, &f, 1) < 0)
        return -1;
    return f > 0;
}

static int do_checkpoint(trainer_t *t, ft_err_t *err)
{
    if (t->coll->rank != 0)
        return 0;
    checkpoint_state_t st;
    memset(&st, 0, sizeof(st));
    st.step = t->step;
    st.pos = t->pos;
    st.rng[0] = t->spec.seed;
    st.n_rng = 1;
    st.spec_hash = t->spec_hash;
    st.loss_history = t->loss_hist;
    st.n_loss = t->n_loss;
    char path[FT_PATH_MAX + 64];
    if (mirror_down(t, err) < 0)
        return -1;
    if (checkpoint_save(t->spec.output_dir, &t->ad, host_m(t), host_v(t), t->opt->n, &st,
                        KEEP_CHECKPOINTS, path, sizeof(path), err) < 0)
        return -1;
    ft_info("step %lld: checkpoint '%s'", (long long)t->step, path);
    event_t ev;
    ev_begin(&ev, "checkpoint", t->step, -1);
    ev_str(&ev, "path", path);
    emit(t, &ev);
    return 0;
}

static int resume(trainer_t *t, ft_err_t *err)
{
    checkpoint_state_t st;
    memset(&st, 0, sizeof(st));
    char path[FT_PATH_MAX + 64];
    int rc = checkpoint_load_latest(t->spec.output_dir, &t->ad, host_m(t), host_v(t),
                                    t->opt->n, t->spec_hash, &st, path, sizeof(path), err);
    if (rc <= 0)
        return rc;
    if (mirror_up(t, err) < 0) {
        checkpoint_state_free(&st);
        return -1;
    }
    t->step = st.step;
    t->opt->t = st.step;
    t->pos = st.pos;
    t->n_loss = 0;
    for (int64_t i = 0; i < st.n_loss; i++) {
        if (push_loss(t, st.loss_history[i]) < 0) {
            checkpoint_state_free(&st);
            ft_err_set(err, FT_EINTERNAL, "out of memory");
            return -1;
        }
    }
    checkpoint_state_free(&st);
    ft_info("resumed from '%s' at step %lld (epoch %lld, row %lld)", path, (long long)t->step,
            (long long)t->pos.epoch, (long long)t->pos.index);
    return 1;
}

static int train_step(trainer_t *t, double *loss_out, double *gnorm_out, double *lr_out,
                      ft_err_t *err)
{
    coll_t *c = t->coll;
    size_t per = (size_t)t->B * t->T;
    double local[2] = {0.0, 0.0};  /* loss sum, target count */
    for (int k = 0; k < t->GA; k++) {
        data_next_batch(t->data, &t->pos, t->B, c->rank, c->world, t->inputs + k * per,
                        t->targets + k * per);
        local[1] += (double)data_count_targets(t->targets + k * per, (int64_t)per);
    }
    double total = local[1];
    if (c->allreduce_sum_f64(c, &total, 1) < 0) {
        ft_err_set(err, FT_EINTERNAL, "all-reduce of the token count failed");
        return -1;
    }
    float dscale = total > 0 ? (float)(1.0 / total) : 0.0f;
    model_zero_grad(t->model);
    for (int k = 0; k < t->GA; k++) {
        double s;
        int64_t n;
        if (model_step(t->model, t->inputs + k * per, t->targets + k * per, true, dscale,
                       dropout_key(t, t->step, k), &s, &n, err) < 0)
            return -1;
        local[0] += s;
    }
    const lora_layout_t *lay = model_lora_layout(t->model);
    float *grads = model_lora_grads(t->model);
    /* a host collective (ring) on a device backend goes through the mirror */
    bool staged = t->h_grads && c->world > 1 && strcmp(c->name, "nccl") != 0;
    if ((staged && t->be->download(t->h_grads, grads, lay->n_params * sizeof(float)) < 0) ||
        c->allreduce_sum_f32(c, staged ? t->h_grads : grads, lay->n_params) < 0 ||
        (staged && t->be->upload(grads, t->h_grads, lay->n_params * sizeof(float)) < 0) ||
        c->allreduce_sum_f64(c, local, 1) < 0) {
        ft_err_set(err, FT_EINTERNAL, "all-reduce of the gradients failed");
        return -1;
    }
    double lr = t->spec.learning_rate *
                lr_lambda(t->spec.lr_scheduler, t->step, t->warmup, t->total_steps);
    double gnorm = clip_grad_norm(t->be, grads, lay->n_params, t->spec.max_grad_norm);
    if (total > 0) {
        adamw_step(t->opt, model_lora_params(t->model), grads, lr);
    } else {
        /* nothing to learn from: keep Adam's step count in line with t->step */
        t->opt->t++;
        ft_warn("step %lld: the global batch has no target tokens; no update",
                (long long)t->step);
    }
    if (!isfinite(local[0])) {
        ft_err_set(err, FT_EINTERNAL, "step %lld: loss is not finite", (long long)t->step);
        return -1;
    }
    *loss_out = total > 0 ? local[0] / total : 0.0;
    *gnorm_out = gnorm;
    *lr_out = lr;
    return 0;
}

int trainer_run(trainer_t *t, ft_err_t *err)
{
    t->t_start = now_s();
    int resumed = resume(t, err);
    if (resumed < 0)
        return -1;
    int64_t first_step = t->step;
    int64_t tok_per_step = (int64_t)t->B * t->T * t->GA * t->coll->world;
    double eval_loss = NAN;
    bool saved_last = false, evaluated_last = false;
    bool have_eval = false;
    for (int64_t i = 0; i < data_n_eval_rows(t->data) && !have_eval; i++) {
        data_eval_row(t->data, i, t->inputs, t->targets);
        have_eval = data_count_targets(t->targets, t->T) > 0;
    }
    if (data_n_eval_rows(t->data) > 0 && !have_eval)
        ft_warn("the eval rows hold no target tokens: no eval loss");
    while (t->step < t->total_steps) {
        double t0 = now_s();
        double loss, gnorm, lr;
        if (train_step(t, &loss, &gnorm, &lr, err) < 0)
            return -1;
        t->step++;
        if (push_loss(t, loss) < 0) {
            ft_err_set(err, FT_EINTERNAL, "out of memory");
            return -1;
        }
        saved_last = evaluated_last = false;
        double dt = now_s() - t0;
        double elapsed = now_s() - t->t_start;
        double per = elapsed / (double)(t->step - first_step);
        double epoch = (double)t->pos.epoch +
                       (double)t->pos.index / (double)data_n_train_rows(t->data);
        int64_t every = t->spec.logging_steps > 0 ? t->spec.logging_steps : 1;
        if (t->step % every == 0 || t->step == t->total_steps || t->step == first_step + 1) {
            ft_info("step %lld/%lld loss %.6f lr %.3e grad_norm %.4f %.0f tok/s",
                    (long long)t->step, (long long)t->total_steps, loss, lr, gnorm,
                    dt > 0 ? (double)tok_per_step / dt : 0.0);
            if (t->coll->rank == 0) {
                event_t ev;
                ev_begin(&ev, "progress", t->step, t->total_steps);
                ev_num(&ev, "loss", loss);
                ev_num(&ev, "lr", lr);
                ev_num(&ev, "tokens_per_s", dt > 0 ? (double)tok_per_step / dt : 0.0);
                ev_num(&ev, "grad_norm", gnorm);
                ev_num(&ev, "epoch", epoch);
                ev_num(&ev, "elapsed_s", elapsed);
                ev_num(&ev, "eta_s", per * (double)(t->total_steps - t->step));
                ev_num(&ev, "peak_mem_mb", peak_mem_mb(t->be));
                emit(t, &ev);
            }
        }
        if (have_eval && t->spec.eval_steps > 0 && t->step % t->spec.eval_steps == 0) {
            if (do_eval(t, &eval_loss, err) < 0)
                return -1;
            evaluated_last = true;
        }
        if (t->spec.save_steps > 0 && t->step % t->spec.save_steps == 0 &&
            t->step < t->total_steps) {
            if (do_checkpoint(t, err) < 0)
                return -1;
            saved_last = true;
        }
        int stop = stop_agreed(t);
        if (stop < 0) {
            ft_err_set(err, FT_EINTERNAL, "all-reduce of the stop flag failed");
            return -1;
        }
        if (stop && t->step < t->total_steps) {
            ft_info("step %lld: stop requested; saving a checkpoint", (long long)t->step);
            if (!saved_last && do_checkpoint(t, err) < 0)
                return -1;
            return TRAINER_STOPPED;
        }
    }
    if (have_eval && !evaluated_last && do_eval(t, &eval_loss, err) < 0)
        return -1;
    /* a resumed job with nothing left to run already has this checkpoint */
    bool ran = t->step > first_step;
    if (!saved_last && (ran || !resumed) && do_checkpoint(t, err) < 0)
        return -1;
    if (t->coll->rank == 0) {
        if (mirror_down(t, err) < 0 || adapter_write(t->spec.output_dir, &t->ad, err) < 0)
            return -1;
        ft_info("adapter written to '%s'", t->spec.output_dir);
        event_t ev;
        ev_begin(&ev, "done", t->step, -1);
        ev_str(&ev, "adapter", t->spec.output_dir);
        ev_num(&ev, "eval_loss", eval_loss);  /* null when there are no eval rows */
        emit(t, &ev);
    }
    return 0;
}

/* ---- check, eval of a saved adapter, eval row dump ---- */

int trainer_check(trainer_t *t, const char *out_path, ft_err_t *err)
{
    int rc = -1;
    st_writer_t *w = NULL;
    data_pos_t pos = {0, 0};
    size_t per = (size_t)t->B * t->T;
    data_next_batch(t->data, &pos, t->B, 0, 1, t->inputs, t->targets);
    int64_t n = data_count_targets(t->targets, (int64_t)per);
    if (n == 0) {
        ft_err_set(err, FT_EMISSING, "the first batch has no target tokens");
        return -1;
    }
    double s;
    int64_t n2;
    model_zero_grad(t->model);
    if (model_step(t->model, t->inputs, t->targets, true, (float)(1.0 / (double)n), 0, &s, &n2,
                   err) < 0)
        return -1;
    float loss = (float)(s / (double)n);
    float scaling = model_lora_layout(t->model)->scaling;
    if (mirror_down(t, err) < 0)
        return -1;
    int64_t shape2[2] = {t->B, t->T}, shape1[1] = {1};
    w = st_writer_new();
    if (!w) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    if (st_writer_add(w, "inputs", ST_I32, 2, shape2, t->inputs, err) < 0 ||
        st_writer_add(w, "targets", ST_I32, 2, shape2, t->targets, err) < 0 ||
        st_writer_add(w, "loss", ST_F32, 1, shape1, &loss, err) < 0 ||
        st_writer_add(w, "scaling", ST_F32, 1, shape1, &scaling, err) < 0 ||
        adapter_add_tensors(w, &t->ad, "", err) < 0 ||
        adapter_add_tensors(w, &t->gad, ".grad", err) < 0 ||
        st_writer_save(w, out_path, err) < 0)
        goto out;
    ft_info("check: loss %.6f over %lld targets written to '%s'", (double)loss, (long long)n,
            out_path);
    rc = 0;
out:
    st_writer_destroy(&w);
    return rc;
}

int trainer_load_adapter(trainer_t *t, const char *dir, ft_err_t *err)
{
    adapter_loaded_t a;
    memset(&a, 0, sizeof(a));
    if (adapter_load(dir, &t->cfg, &a, err) < 0)
        return -1;
    int rc = -1;
    const lora_layout_t *lay = model_lora_layout(t->model);
    if (a.ad.r != lay->r || a.ad.target_mask != lay->mask) {
        ft_err_set(err, FT_EBADFIELD, "adapter '%s': r %d / targets %#x do not match the "
                   "model built for r %d / targets %#x", dir, a.ad.r,
                   (unsigned)a.ad.target_mask, lay->r, (unsigned)lay->mask);
        goto out;
    }
    for (int l = 0; l < t->cfg.n_layers; l++) {
        for (int m = 0; m < FT_N_TARGET_MODULES; m++) {
            size_t i = (size_t)l * FT_N_TARGET_MODULES + m;
            if (!t->mods[i].a)
                continue;
            int in, o;
            adapter_module_dims(&t->cfg, m, &in, &o);
            memcpy(t->mods[i].a, a.ad.mods[i].a, sizeof(float) * (size_t)lay->r * in);
            memcpy(t->mods[i].b, a.ad.mods[i].b, sizeof(float) * (size_t)lay->r * o);
        }
    }
    if (mirror_up(t, err) < 0)
        goto out;
    rc = 0;
out:
    adapter_loaded_free(&a);
    return rc;
}

int trainer_dump_eval_rows(trainer_t *t, const char *path, ft_err_t *err)
{
    int64_t n = data_n_eval_rows(t->data);
    int rc = -1;
    st_writer_t *w = NULL;
    size_t cnt = (size_t)(n > 0 ? n : 1) * (size_t)t->T;
    int32_t *in = malloc(cnt * sizeof(int32_t)), *tg = malloc(cnt * sizeof(int32_t));
    if (!in || !tg) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    for (int64_t i = 0; i < n; i++)
        data_eval_row(t->data, i, in + (size_t)i * t->T, tg + (size_t)i * t->T);
    int64_t shape[2] = {n, t->T};
    w = st_writer_new();
    if (!w || st_writer_add(w, "inputs", ST_I32, 2, shape, in, err) < 0 ||
        st_writer_add(w, "targets", ST_I32, 2, shape, tg, err) < 0 ||
        st_writer_save(w, path, err) < 0) {
        if (!w)
            ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    rc = 0;
out:
    st_writer_destroy(&w);
    free(in);
    free(tg);
    return rc;
}
