/*
 * tinymodel.c: writes a small random Llama folder in the Hugging Face layout
 * (see tinymodel.h for the files, the byte tokenizer's ids and the order in
 * which the random values are drawn).
 *
 * The random stream is splitmix64 (Steele, Lea, Flood 2014: state += golden
 * gamma, then two xor-shift-multiply rounds); normals come from Box-Muller on
 * pairs of 53-bit uniforms in (0, 1]. Same seed, same bytes, on any machine.
 * Cost: O(parameters) time and two copies of the parameters in memory.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft/json.h"
#include "rng.h"
#include "tinymodel.h"

#define BYTE_VOCAB 259 /* 3 specials + 256 bytes */

void tinymodel_defaults(tinymodel_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->hidden = 64;
    o->layers = 2;
    o->heads = 4;
    o->kv_heads = 2;
    o->intermediate = 176;
    o->vocab = 264;
    o->max_pos = 512;
    o->rope_theta = 10000.0;
    o->rms_norm_eps = 1e-5;
    o->tie = false;
    o->dtype = ST_F32;
    o->seed = 0;
    o->init_std = 0.02;
}

int tinymodel_config(const tinymodel_opts_t *o, llama_config_t *cfg, ft_err_t *err)
{
    /* Bounds per option: name as on the command line, value, range. */
    const struct {
        const char *name; /* option */
        long long v;      /* given value */
        long long lo, hi; /* accepted range */
    } b[] = {
        {"hidden", o->hidden, 8, 16384},
        {"layers", o->layers, 1, 256},
        {"heads", o->heads, 1, 256},
        {"kv-heads", o->kv_heads, 1, 256},
        {"intermediate", o->intermediate, 1, 65536},
        {"vocab", o->vocab, BYTE_VOCAB, 1 << 20},
        {"max-pos", o->max_pos, 8, 1 << 20},
    };
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        if (b[i].v < b[i].lo || b[i].v > b[i].hi) {
            ft_err_set(err, FT_EBADFIELD,
                       "tiny model: '%s' is %lld, expected an integer in "
                       "[%lld, %lld]",
                       b[i].name, b[i].v, b[i].lo, b[i].hi);
            return -1;
        }
    }
    if (o->hidden % o->heads != 0 || (o->hidden / o->heads) % 2 != 0) {
        ft_err_set(err, FT_EBADFIELD,
                   "tiny model: 'hidden' %d must be a multiple of 2 * "
                   "'heads' (%d) so that head_dim is even",
                   o->hidden, o->heads);
        return -1;
    }
    if (o->heads % o->kv_heads != 0) {
        ft_err_set(err, FT_EBADFIELD, "tiny model: 'heads' %d is not divisible by 'kv-heads' %d",
                   o->heads, o->kv_heads);
        return -1;
    }
    if (o->dtype != ST_F32 && o->dtype != ST_BF16 && o->dtype != ST_F16) {
        ft_err_set(err, FT_EBADFIELD, "tiny model: 'dtype' must be f32, bf16 or f16");
        return -1;
    }
    if (!(o->rope_theta >= 1.0) || !(o->rms_norm_eps > 0 && o->rms_norm_eps < 1) ||
        !(o->init_std >= 0 && o->init_std <= 1)) {
        ft_err_set(err, FT_EBADFIELD,
                   "tiny model: rope_theta, rms_norm_eps or init_std out "
                   "of range");
        return -1;
    }
    cfg->vocab_size = o->vocab;
    cfg->hidden_size = o->hidden;
    cfg->intermediate_size = o->intermediate;
    cfg->n_layers = o->layers;
    cfg->n_heads = o->heads;
    cfg->n_kv_heads = o->kv_heads;
    cfg->head_dim = o->hidden / o->heads;
    cfg->max_position_embeddings = o->max_pos;
    cfg->rms_norm_eps = o->rms_norm_eps;
    cfg->rope_theta = o->rope_theta;
    cfg->rope_type = LLAMA_ROPE_DEFAULT;
    cfg->tie_word_embeddings = o->tie;
    cfg->bos_token_id = 1;
    cfg->eos_token_id = 2;
    cfg->pad_token_id = 0;
    ft_strlcpy(cfg->model_type, "llama", sizeof cfg->model_type);
    return 0;
}

/* Uniform in (0, 1]. */
static double uniform01(uint64_t *s)
{
    return ((double)(rng_splitmix64(s) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

static void fill_normal(float *x, size_t n, double std, uint64_t *s)
{
    for (size_t i = 0; i < n; i += 2) {
        double u1 = uniform01(s), u2 = uniform01(s);
        double r = sqrt(-2.0 * log(u1)) * std;
        x[i] = (float)(r * cos(2.0 * M_PI * u2));
        if (i + 1 < n)
            x[i + 1] = (float)(r * sin(2.0 * M_PI * u2));
    }
}

void tinymodel_bench_config(llama_config_t *cfg, int vocab, int hidden, int inter, int layers,
                            int heads, int kv_heads, int seq, double rope_theta)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->vocab_size = vocab;
    cfg->hidden_size = hidden;
    cfg->intermediate_size = inter;
    cfg->n_layers = layers;
    cfg->n_heads = heads;
    cfg->n_kv_heads = kv_heads;
    cfg->head_dim = hidden / heads;
    cfg->max_position_embeddings = seq;
    cfg->rms_norm_eps = 1e-5;
    cfg->rope_theta = rope_theta;
    cfg->bos_token_id = cfg->eos_token_id = cfg->pad_token_id = -1;
    ft_strlcpy(cfg->model_type, "llama", sizeof(cfg->model_type));
}

void tinymodel_fill(const llama_config_t *c, llama_weights_t *w, uint64_t seed, double init_std)
{
    uint64_t s = seed;
    size_t C = (size_t)c->hidden_size, V = (size_t)c->vocab_size, I = (size_t)c->intermediate_size;
    size_t Hq = (size_t)c->n_heads * (size_t)c->head_dim;
    size_t Hkv = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    fill_normal(w->embed, V * C, init_std, &s);
    for (size_t i = 0; i < C; i++)
        w->final_norm[i] = 1.0f;
    for (int l = 0; l < c->n_layers; l++) {
        llama_layer_weights_t *L = &w->layers[l];
        for (size_t i = 0; i < C; i++)
            L->attn_norm[i] = L->mlp_norm[i] = 1.0f;
        fill_normal(L->q, Hq * C, init_std, &s);
        fill_normal(L->k, Hkv * C, init_std, &s);
        fill_normal(L->v, Hkv * C, init_std, &s);
        fill_normal(L->o, C * Hq, init_std, &s);
        fill_normal(L->gate, I * C, init_std, &s);
        fill_normal(L->up, I * C, init_std, &s);
        fill_normal(L->down, C * I, init_std, &s);
    }
    if (!c->tie_word_embeddings)
        fill_normal(w->lm_head, V * C, init_std, &s);
}

static const char *torch_dtype(st_dtype_t d)
{
    return d == ST_BF16 ? "bfloat16" : d == ST_F16 ? "float16" : "float32";
}

static cJSON *config_json(const tinymodel_opts_t *o, const llama_config_t *c)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_CreateArray();
    if (!j || !arch) {
        cJSON_Delete(j);
        cJSON_Delete(arch);
        return NULL;
    }
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddItemToObject(j, "architectures", arch);
    cJSON_AddBoolToObject(j, "attention_bias", false);
    cJSON_AddNumberToObject(j, "attention_dropout", 0.0);
    cJSON_AddNumberToObject(j, "bos_token_id", c->bos_token_id);
    cJSON_AddNumberToObject(j, "eos_token_id", c->eos_token_id);
    cJSON_AddNumberToObject(j, "head_dim", c->head_dim);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddNumberToObject(j, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(j, "initializer_range", o->init_std);
    cJSON_AddNumberToObject(j, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_position_embeddings);
    cJSON_AddBoolToObject(j, "mlp_bias", false);
    cJSON_AddStringToObject(j, "model_type", "llama");
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(j, "pad_token_id", c->pad_token_id);
    cJSON_AddNumberToObject(j, "pretraining_tp", 1);
    cJSON_AddNumberToObject(j, "rms_norm_eps", c->rms_norm_eps);
    cJSON_AddNullToObject(j, "rope_scaling");
    cJSON_AddNumberToObject(j, "rope_theta", c->rope_theta);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddStringToObject(j, "torch_dtype", torch_dtype(o->dtype));
    cJSON_AddBoolToObject(j, "use_cache", true);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    return j;
}

static int write_tokenizer_files(const char *dir, const tinymodel_opts_t *o, ft_err_t *err)
{
    int rc = -1;
    cJSON *tc = cJSON_CreateObject(), *sm = cJSON_CreateObject(), *gc = cJSON_CreateObject();
    if (!tc || !sm || !gc) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    cJSON_AddStringToObject(tc, "tokenizer_class", "FtByteTokenizer");
    cJSON_AddStringToObject(tc, "bos_token", "<s>");
    cJSON_AddStringToObject(tc, "eos_token", "</s>");
    cJSON_AddStringToObject(tc, "pad_token", "<pad>");
    cJSON_AddNumberToObject(tc, "model_max_length", o->max_pos);
    cJSON_AddNumberToObject(tc, "ft_byte_offset", 3);
    cJSON_AddStringToObject(tc, "ft_note", "byte b has id b + 3; 0 <pad>, 1 <s>, 2 </s>");
    cJSON_AddStringToObject(sm, "bos_token", "<s>");
    cJSON_AddStringToObject(sm, "eos_token", "</s>");
    cJSON_AddStringToObject(sm, "pad_token", "<pad>");
    cJSON_AddNumberToObject(gc, "bos_token_id", 1);
    cJSON_AddNumberToObject(gc, "eos_token_id", 2);
    cJSON_AddNumberToObject(gc, "pad_token_id", 0);
    if (ft_json_write_file(dir, "tokenizer_config.json", tc, true, err) < 0 ||
        ft_json_write_file(dir, "special_tokens_map.json", sm, true, err) < 0 ||
        ft_json_write_file(dir, "generation_config.json", gc, true, err) < 0)
        goto out;
    rc = 0;
out:
    cJSON_Delete(tc);
    cJSON_Delete(sm);
    cJSON_Delete(gc);
    return rc;
}

int tinymodel_write(const char *dir, const tinymodel_opts_t *o, ft_err_t *err)
{
    int rc = -1;
    llama_config_t c;
    llama_weights_t w = {0};
    st_writer_t *sw = NULL;
    cJSON *cj = NULL;
    char *path = NULL;

    if (tinymodel_config(o, &c, err) < 0)
        return -1;
    if (ft_mkdir_p(dir, err) < 0)
        return -1;
    if (llama_weights_alloc(&c, &w) < 0) {
        ft_err_set(err, FT_EINTERNAL, "tiny model: cannot allocate %d layers of hidden %d",
                   c.n_layers, c.hidden_size);
        return -1;
    }
    tinymodel_fill(&c, &w, o->seed, o->init_std);
    sw = st_writer_new();
    if (!sw) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    int64_t C = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
    int64_t Hq = (int64_t)c.n_heads * c.head_dim, Hkv = (int64_t)c.n_kv_heads * c.head_dim;
    int64_t s_vc[2] = {V, C}, s_c[1] = {C};
    if (st_writer_add_f32(sw, "model.embed_tokens.weight", o->dtype, 2, s_vc, w.embed, err) < 0 ||
        st_writer_add_f32(sw, "model.norm.weight", o->dtype, 1, s_c, w.final_norm, err) < 0)
        goto out;
    if (!c.tie_word_embeddings &&
        st_writer_add_f32(sw, "lm_head.weight", o->dtype, 2, s_vc, w.lm_head, err) < 0)
        goto out;
    for (int l = 0; l < c.n_layers; l++) {
        const llama_layer_weights_t *L = &w.layers[l];
        const struct {
            const char *name; /* HF module path inside the layer */
            const float *src; /* values */
            int64_t s0, s1;   /* shape; s1 == 0 for a vector */
        } t[9] = {
            {"input_layernorm", L->attn_norm, C, 0},
            {"self_attn.q_proj", L->q, Hq, C},
            {"self_attn.k_proj", L->k, Hkv, C},
            {"self_attn.v_proj", L->v, Hkv, C},
            {"self_attn.o_proj", L->o, C, Hq},
            {"post_attention_layernorm", L->mlp_norm, C, 0},
            {"mlp.gate_proj", L->gate, I, C},
            {"mlp.up_proj", L->up, I, C},
            {"mlp.down_proj", L->down, C, I},
        };
        for (int i = 0; i < 9; i++) {
            char nm[128];
            int64_t sh[2] = {t[i].s0, t[i].s1};
            snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, t[i].name);
            if (st_writer_add_f32(sw, nm, o->dtype, t[i].s1 ? 2 : 1, sh, t[i].src, err) < 0)
                goto out;
        }
    }
    path = ft_asprintf("%s/model.safetensors", dir);
    if (!path) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    if (st_writer_save(sw, path, err) < 0)
        goto out;
    cj = config_json(o, &c);
    if (ft_json_write_file(dir, "config.json", cj, true, err) < 0)
        goto out;
    if (write_tokenizer_files(dir, o, err) < 0)
        goto out;
    rc = 0;
out:
    free(path);
    cJSON_Delete(cj);
    st_writer_destroy(&sw);
    llama_weights_free(&w);
    return rc;
}
