/*
 * llama_load.c: reads a Hugging Face Llama folder: config.json into
 * llama_config_t, and the weights (model.safetensors, or the shards named by
 * model.safetensors.index.json) into one float32 buffer.
 *
 * Invariants after llama_config_load: every size is positive, n_kv_heads
 * divides n_heads, head_dim is even, and the architecture is one the trainer
 * computes exactly (silu, no biases, default or llama3 RoPE). After
 * llama_weights_load every tensor of llama_weights_t holds the file's values
 * converted from F32/BF16/F16 (checked name by name, shape by shape).
 * Cost: config O(size of config.json); weights O(parameters) conversion, with
 * the files mapped read-only so that only one f32 copy stays resident.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ft/json.h"
#include "llama.h"
#include "safetensors.h"

#define CONFIG_MAX_BYTES (4 * 1024 * 1024)
#define INDEX_MAX_BYTES (64 * 1024 * 1024)

/* An optional field where JSON null means absent (HF writes nulls freely).
 * Returns 0 (set), 1 (absent or null), -1 (err set). */
static int opt_int(const cJSON *o, const char *file, const char *name, int64_t min, int64_t max,
                   int64_t *out, ft_err_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v))
        return 1;
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || !isfinite(d) || d != floor(d) || d < (double)min || d > (double)max) {
        ft_err_set(err, FT_EBADFIELD, "'%s': field '%s': expected an integer in [%lld, %lld]", file,
                   name, (long long)min, (long long)max);
        return -1;
    }
    *out = (int64_t)d;
    return 0;
}

static int opt_num(const cJSON *o, const char *file, const char *name, double min, double max,
                   double *out, ft_err_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v))
        return 1;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < min ||
        v->valuedouble > max) {
        ft_err_set(err, FT_EBADFIELD, "'%s': field '%s': expected a number in [%g, %g]", file, name,
                   min, max);
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}

static int opt_bool(const cJSON *o, const char *file, const char *name, bool *out, ft_err_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v))
        return 1;
    if (!cJSON_IsBool(v)) {
        ft_err_set(err, FT_EBADFIELD, "'%s': field '%s': expected true or false", file, name);
        return -1;
    }
    *out = cJSON_IsTrue(v);
    return 0;
}

static int opt_str(const cJSON *o, const char *file, const char *name, const char **out,
                   ft_err_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v))
        return 1;
    if (!cJSON_IsString(v)) {
        ft_err_set(err, FT_EBADFIELD, "'%s': field '%s': expected a string", file, name);
        return -1;
    }
    *out = v->valuestring;
    return 0;
}

/* Integer fields of config.json: name, offset into llama_config_t, bounds,
 * HF default (used when absent). */
typedef struct {
    const char *name; /* key in config.json */
    size_t off;       /* offsetof(llama_config_t, field), an int */
    int64_t min, max; /* accepted range */
    int64_t def;      /* transformers' default */
} int_field_t;

static const int_field_t int_fields[] = {
    {"vocab_size", offsetof(llama_config_t, vocab_size), 1, 1 << 24, 32000},
    {"hidden_size", offsetof(llama_config_t, hidden_size), 1, 1 << 16, 4096},
    {"intermediate_size", offsetof(llama_config_t, intermediate_size), 1, 1 << 18, 11008},
    {"num_hidden_layers", offsetof(llama_config_t, n_layers), 1, 1024, 32},
    {"num_attention_heads", offsetof(llama_config_t, n_heads), 1, 1024, 32},
    {"max_position_embeddings", offsetof(llama_config_t, max_position_embeddings), 1, 1 << 24,
     2048},
};

/* Reads the RoPE settings from either form: top-level rope_theta +
 * rope_scaling, or rope_parameters {rope_type, rope_theta, ...}. */
static int parse_rope(const cJSON *root, const char *file, llama_config_t *cfg, ft_err_t *err)
{
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    const cJSON *sc = NULL;
    const char *where = "rope_scaling";
    cfg->rope_theta = 10000.0;
    cfg->rope_type = LLAMA_ROPE_DEFAULT;
    if (opt_num(root, file, "rope_theta", 1.0, 1e12, &cfg->rope_theta, err) < 0)
        return -1;
    if (rp && !cJSON_IsNull(rp)) {
        if (!cJSON_IsObject(rp)) {
            ft_err_set(err, FT_EBADFIELD, "'%s': field 'rope_parameters': expected an object",
                       file);
            return -1;
        }
        if (opt_num(rp, file, "rope_theta", 1.0, 1e12, &cfg->rope_theta, err) < 0)
            return -1;
        sc = rp;
        where = "rope_parameters";
    } else if (rs && !cJSON_IsNull(rs)) {
        if (!cJSON_IsObject(rs)) {
            ft_err_set(err, FT_EBADFIELD,
                       "'%s': field 'rope_scaling': expected an object or "
                       "null",
                       file);
            return -1;
        }
        sc = rs;
    }
    if (!sc)
        return 0;
    const char *type = NULL;
    if (opt_str(sc, file, "rope_type", &type, err) < 0)
        return -1;
    if (!type && opt_str(sc, file, "type", &type, err) < 0)
        return -1;
    if (!type || strcmp(type, "default") == 0)
        return 0;
    if (strcmp(type, "llama3") != 0) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': %s: rope type '%s' is not supported (default or "
                   "llama3)",
                   file, where, ft_sanitize(type, 32));
        return -1;
    }
    cfg->rope_type = LLAMA_ROPE_LLAMA3;
    static const char *const need[] = {"factor", "low_freq_factor", "high_freq_factor"};
    double *dst[] = {&cfg->rope_factor, &cfg->rope_low_freq_factor, &cfg->rope_high_freq_factor};
    for (int i = 0; i < 3; i++) {
        int rc = opt_num(sc, file, need[i], 1e-6, 1e6, dst[i], err);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            ft_err_set(err, FT_EMISSING, "'%s': %s: llama3 rope needs '%s'", file, where, need[i]);
            return -1;
        }
    }
    int64_t omp = 0;
    int rc = opt_int(sc, file, "original_max_position_embeddings", 1, 1 << 24, &omp, err);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        ft_err_set(err, FT_EMISSING,
                   "'%s': %s: llama3 rope needs "
                   "'original_max_position_embeddings'",
                   file, where);
        return -1;
    }
    cfg->rope_original_max_position = (int)omp;
    if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor)) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': %s: high_freq_factor must be greater than "
                   "low_freq_factor",
                   file, where);
        return -1;
    }
    return 0;
}

/* bos/eos/pad: an integer, null, or (eos) a list whose first entry counts. */
static int parse_token_id(const cJSON *root, const char *file, const char *name, int vocab, int def,
                          int *out, ft_err_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    *out = def;
    if (!v)
        return 0;
    if (cJSON_IsNull(v)) {
        *out = -1;
        return 0;
    }
    if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) == 0) {
            *out = -1;
            return 0;
        }
        v = cJSON_GetArrayItem(v, 0);
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (!cJSON_IsNumber(v) || d != floor(d) || d < 0 || d >= vocab) {
        ft_err_set(err, FT_EBADFIELD, "'%s': field '%s': expected a token id in [0, %d)", file,
                   name, vocab);
        return -1;
    }
    *out = (int)d;
    return 0;
}

int llama_config_load(const char *dir, llama_config_t *cfg, ft_err_t *err)
{
    int rc = -1;
    char *buf = NULL;
    cJSON *root = NULL;
    char *file = ft_asprintf("%s/config.json", dir);
    size_t len = 0;
    ft_err_t e2 = {0};

    memset(cfg, 0, sizeof *cfg);
    if (!file) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    buf = ft_read_file(file, CONFIG_MAX_BYTES, &len, &e2);
    if (!buf) {
        ft_err_set(err, e2.code ? e2.code : FT_ENOTFOUND, "%s", e2.msg);
        goto out;
    }
    root = ft_json_parse(buf, len, &e2);
    if (!root) {
        ft_err_set(err, FT_EBADJSON, "'%s': %s", file, e2.msg);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        ft_err_set(err, FT_EBADJSON, "'%s': expected a JSON object", file);
        goto out;
    }
    const char *mt = NULL;
    if (opt_str(root, file, "model_type", &mt, err) < 0)
        goto out;
    if (!mt) {
        ft_err_set(err, FT_EMISSING, "'%s': field 'model_type' is missing", file);
        goto out;
    }
    if (strcmp(mt, "llama") != 0 && strcmp(mt, "mistral") != 0) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': model_type '%s' is not supported (llama, or "
                   "mistral without a sliding window)",
                   file, ft_sanitize(mt, 32));
        goto out;
    }
    ft_strlcpy(cfg->model_type, mt, sizeof cfg->model_type);
    if (strcmp(mt, "mistral") == 0) {
        int64_t sw = 0;
        int r = opt_int(root, file, "sliding_window", 0, INT64_MAX / 2, &sw, err);
        if (r < 0)
            goto out;
        if (r == 0 && sw > 0 && sw < (int64_t)1 << 24) {
            /* a window only matters when shorter than every sequence we train on;
             * we do not implement it, so refuse rather than compute something else */
            int64_t mp = 0;
            if (opt_int(root, file, "max_position_embeddings", 1, 1 << 24, &mp, err) < 0)
                goto out;
            if (sw < mp) {
                ft_err_set(err, FT_EBADFIELD,
                           "'%s': field 'sliding_window' (%lld): sliding "
                           "window attention is not supported",
                           file, (long long)sw);
                goto out;
            }
        }
    }

    for (size_t i = 0; i < sizeof int_fields / sizeof int_fields[0]; i++) {
        const int_field_t *f = &int_fields[i];
        int64_t v = f->def;
        if (opt_int(root, file, f->name, f->min, f->max, &v, err) < 0)
            goto out;
        *(int *)(void *)((char *)cfg + f->off) = (int)v;
    }
    int64_t kv = cfg->n_heads, hd = 0;
    if (opt_int(root, file, "num_key_value_heads", 1, 1024, &kv, err) < 0)
        goto out;
    cfg->n_kv_heads = (int)kv;
    int r = opt_int(root, file, "head_dim", 1, 4096, &hd, err);
    if (r < 0)
        goto out;
    if (r == 1) {
        if (cfg->hidden_size % cfg->n_heads != 0) {
            ft_err_set(err, FT_EBADFIELD,
                       "'%s': hidden_size %d is not divisible by "
                       "num_attention_heads %d",
                       file, cfg->hidden_size, cfg->n_heads);
            goto out;
        }
        hd = cfg->hidden_size / cfg->n_heads;
    }
    cfg->head_dim = (int)hd;
    if (cfg->n_heads % cfg->n_kv_heads != 0) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': num_attention_heads %d is not divisible by "
                   "num_key_value_heads %d",
                   file, cfg->n_heads, cfg->n_kv_heads);
        goto out;
    }
    if (cfg->head_dim % 2 != 0) {
        ft_err_set(err, FT_EBADFIELD, "'%s': head_dim %d must be even for rotary embeddings", file,
                   cfg->head_dim);
        goto out;
    }
    cfg->rms_norm_eps = 1e-6;
    if (opt_num(root, file, "rms_norm_eps", 0.0, 1.0, &cfg->rms_norm_eps, err) < 0)
        goto out;
    const char *act = "silu";
    if (opt_str(root, file, "hidden_act", &act, err) < 0)
        goto out;
    if (strcmp(act, "silu") != 0) {
        ft_err_set(err, FT_EBADFIELD, "'%s': hidden_act '%s' is not supported (only silu)", file,
                   ft_sanitize(act, 32));
        goto out;
    }
    static const char *const no_bias[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        bool b = false;
        if (opt_bool(root, file, no_bias[i], &b, err) < 0)
            goto out;
        if (b) {
            ft_err_set(err, FT_EBADFIELD,
                       "'%s': %s true is not supported (Llama has no "
                       "biases)",
                       file, no_bias[i]);
            goto out;
        }
    }
    cfg->tie_word_embeddings = false;
    if (opt_bool(root, file, "tie_word_embeddings", &cfg->tie_word_embeddings, err) < 0)
        goto out;
    if (parse_rope(root, file, cfg, err) < 0)
        goto out;
    if (parse_token_id(root, file, "bos_token_id", cfg->vocab_size, 1, &cfg->bos_token_id, err) <
            0 ||
        parse_token_id(root, file, "eos_token_id", cfg->vocab_size, 2, &cfg->eos_token_id, err) <
            0 ||
        parse_token_id(root, file, "pad_token_id", cfg->vocab_size, -1, &cfg->pad_token_id, err) <
            0)
        goto out;
    rc = 0;
out:
    if (rc < 0)
        memset(cfg, 0, sizeof *cfg);
    cJSON_Delete(root);
    free(buf);
    free(file);
    return rc;
}

/* ---- weights ---- */

/* Sizes (floats) of the tensor families, carved from one allocation in this
 * order: embed, final_norm, lm_head (unless tied), then per layer the nine
 * tensors of llama_layer_weights_t. */
typedef struct {
    size_t embed, norm, lm_head;                            /* model-level */
    size_t attn_norm, q, k, v, o, mlp_norm, gate, up, down; /* per layer */
} wsizes_t;

static void weight_sizes(const llama_config_t *c, wsizes_t *s)
{
    size_t C = (size_t)c->hidden_size, V = (size_t)c->vocab_size, I = (size_t)c->intermediate_size;
    size_t Hq = (size_t)c->n_heads * (size_t)c->head_dim;
    size_t Hkv = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    s->embed = V * C;
    s->norm = C;
    s->lm_head = c->tie_word_embeddings ? 0 : V * C;
    s->attn_norm = C;
    s->q = Hq * C;
    s->k = Hkv * C;
    s->v = Hkv * C;
    s->o = C * Hq;
    s->mlp_norm = C;
    s->gate = I * C;
    s->up = I * C;
    s->down = C * I;
}

int llama_weights_alloc(const llama_config_t *cfg, llama_weights_t *w)
{
    wsizes_t s;
    memset(w, 0, sizeof *w);
    if (cfg->n_layers <= 0 || cfg->hidden_size <= 0)
        return -1;
    weight_sizes(cfg, &s);
    size_t per_layer = s.attn_norm + s.q + s.k + s.v + s.o + s.mlp_norm + s.gate + s.up + s.down;
    size_t total = s.embed + s.norm + s.lm_head + per_layer * (size_t)cfg->n_layers;
    if (total > SIZE_MAX / sizeof(float) / 2)
        return -1;
    w->layers = calloc((size_t)cfg->n_layers, sizeof *w->layers);
    void *mem = NULL;
    if (!w->layers || posix_memalign(&mem, 64, total * sizeof(float)) != 0) {
        free(w->layers);
        w->layers = NULL;
        return -1;
    }
    memset(mem, 0, total * sizeof(float));
    w->mem = mem;
    w->n_floats = total;
    float *p = w->mem;
    w->embed = p;
    p += s.embed;
    w->final_norm = p;
    p += s.norm;
    if (cfg->tie_word_embeddings) {
        w->lm_head = w->embed;
    } else {
        w->lm_head = p;
        p += s.lm_head;
    }
    for (int l = 0; l < cfg->n_layers; l++) {
        llama_layer_weights_t *L = &w->layers[l];
        L->attn_norm = p;
        p += s.attn_norm;
        L->q = p;
        p += s.q;
        L->k = p;
        p += s.k;
        L->v = p;
        p += s.v;
        L->o = p;
        p += s.o;
        L->mlp_norm = p;
        p += s.mlp_norm;
        L->gate = p;
        p += s.gate;
        L->up = p;
        p += s.up;
        L->down = p;
        p += s.down;
    }
    return 0;
}

void llama_weights_free(llama_weights_t *w)
{
    if (!w)
        return;
    free(w->mem);
    free(w->layers);
    memset(w, 0, sizeof *w);
}

/* One expected tensor: HF name, destination, shape. */
typedef struct {
    char name[96];    /* HF tensor name */
    float *dst;       /* where its floats go */
    int ndim;         /* 1 or 2 */
    int64_t shape[2]; /* HF shape */
} want_t;

/* Fills list (capacity 3 + 9 * n_layers) with every expected tensor. */
static int expected_tensors(const llama_config_t *c, const llama_weights_t *w, want_t *list)
{
    int n = 0;
    int64_t C = c->hidden_size, V = c->vocab_size, I = c->intermediate_size;
    int64_t Hq = (int64_t)c->n_heads * c->head_dim, Hkv = (int64_t)c->n_kv_heads * c->head_dim;
#define WANT(nm, p, d, s0, s1)                                                                     \
    do {                                                                                           \
        snprintf(list[n].name, sizeof list[n].name, "%s", nm);                                     \
        list[n].dst = (p);                                                                         \
        list[n].ndim = (d);                                                                        \
        list[n].shape[0] = (s0);                                                                   \
        list[n].shape[1] = (s1);                                                                   \
        n++;                                                                                       \
    } while (0)
    WANT("model.embed_tokens.weight", w->embed, 2, V, C);
    WANT("model.norm.weight", w->final_norm, 1, C, 0);
    if (!c->tie_word_embeddings)
        WANT("lm_head.weight", w->lm_head, 2, V, C);
    static const char *const names[9] = {
        "input_layernorm",  "self_attn.q_proj", "self_attn.k_proj",
        "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm",
        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
    };
    for (int l = 0; l < c->n_layers; l++) {
        const llama_layer_weights_t *L = &w->layers[l];
        float *dst[9] = {L->attn_norm, L->q,    L->k,  L->v,   L->o,
                         L->mlp_norm,  L->gate, L->up, L->down};
        int64_t sh[9][2] = {{C, 0}, {Hq, C}, {Hkv, C}, {Hkv, C}, {C, Hq},
                            {C, 0}, {I, C},  {I, C},   {C, I}};
        for (int i = 0; i < 9; i++) {
            char nm[96];
            snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, names[i]);
            WANT(nm, dst[i], sh[i][1] ? 2 : 1, sh[i][0], sh[i][1]);
        }
    }
#undef WANT
    return n;
}

/* A shard file name from the index must stay inside the model folder. */
static bool safe_shard_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 256 && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

int llama_weights_load(const char *dir, const llama_config_t *cfg, llama_weights_t *w,
                       ft_err_t *err)
{
    int rc = -1, n_want = 0, n_files = 0;
    want_t *want = NULL;
    char *index_path = ft_asprintf("%s/model.safetensors.index.json", dir);
    char *buf = NULL;
    cJSON *index = NULL;
    st_file_t **files = NULL;
    char **file_names = NULL;
    struct stat sb;

    memset(w, 0, sizeof *w);
    if (!index_path)
        goto oom;
    if (llama_weights_alloc(cfg, w) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot allocate the weights of '%s'", dir);
        goto out;
    }
    want = calloc(3 + 9 * (size_t)cfg->n_layers, sizeof *want);
    if (!want)
        goto oom;
    n_want = expected_tensors(cfg, w, want);
    files = calloc((size_t)n_want + 1, sizeof *files);
    file_names = calloc((size_t)n_want + 1, sizeof *file_names);
    if (!files || !file_names)
        goto oom;

    if (stat(index_path, &sb) == 0) {
        size_t len = 0;
        ft_err_t e2 = {0};
        buf = ft_read_file(index_path, INDEX_MAX_BYTES, &len, &e2);
        if (!buf) {
            ft_err_set(err, e2.code, "%s", e2.msg);
            goto out;
        }
        index = ft_json_parse(buf, len, &e2);
        if (!index) {
            ft_err_set(err, FT_EBADJSON, "'%s': %s", index_path, e2.msg);
            goto out;
        }
        const cJSON *map = cJSON_GetObjectItemCaseSensitive(index, "weight_map");
        if (!cJSON_IsObject(map)) {
            ft_err_set(err, FT_EBADFIELD, "'%s': field 'weight_map': expected an object",
                       index_path);
            goto out;
        }
        for (int i = 0; i < n_want; i++) {
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(map, want[i].name);
            if (!fn) {
                ft_err_set(err, FT_ENOTFOUND, "'%s': weight_map has no '%s'", index_path,
                           want[i].name);
                goto out;
            }
            if (!cJSON_IsString(fn) || !safe_shard_name(fn->valuestring)) {
                ft_err_set(err, FT_EBADFIELD,
                           "'%s': weight_map '%s': expected a file name in "
                           "the model folder",
                           index_path, want[i].name);
                goto out;
            }
            int k = 0;
            while (k < n_files && strcmp(file_names[k], fn->valuestring) != 0)
                k++;
            if (k == n_files) {
                char *p = ft_asprintf("%s/%s", dir, fn->valuestring);
                if (!p)
                    goto oom;
                files[k] = st_open(p, err);
                free(p);
                if (!files[k])
                    goto out;
                file_names[k] = fn->valuestring;
                n_files++;
            }
            if (st_read_f32(files[k], want[i].name, want[i].ndim, want[i].shape, want[i].dst, err) <
                0)
                goto out;
        }
    } else {
        char *p = ft_asprintf("%s/model.safetensors", dir);
        if (!p)
            goto oom;
        files[0] = st_open(p, err);
        free(p);
        if (!files[0])
            goto out;
        n_files = 1;
        for (int i = 0; i < n_want; i++)
            if (st_read_f32(files[0], want[i].name, want[i].ndim, want[i].shape, want[i].dst, err) <
                0)
                goto out;
    }
    rc = 0;
    goto out;
oom:
    ft_err_set(err, FT_EINTERNAL, "out of memory loading '%s'", dir);
out:
    for (int i = 0; files && i < n_files; i++)
        st_close(&files[i]);
    free(files);
    free(file_names);
    free(want);
    cJSON_Delete(index);
    free(buf);
    free(index_path);
    if (rc < 0)
        llama_weights_free(w);
    return rc;
}
