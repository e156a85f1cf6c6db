/*
 * test_llama_load.c: config.json parsing (defaults, both RoPE forms, llama3
 * scaling, eos lists, every rejected architecture), the tiny model writer
 * (F32, BF16, tied) read back through llama_weights_load, and sharded loading
 * through model.safetensors.index.json (with its error cases).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "llama.h"
#include "safetensors.h"
#include "testutil.h"
#include "tinymodel.h"

static char dir[256];

static int load_cfg_text(const char *json, llama_config_t *c, ft_err_t *err)
{
    char d[300], p[320];
    snprintf(d, sizeof d, "%s/cfg", dir);
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/config.json", d);
    test_write_text(p, json);
    return llama_config_load(d, c, err);
}

static void expect_cfg_error(const char *what, const char *json, const char *want)
{
    llama_config_t c;
    ft_err_t err = {0};
    int rc = load_cfg_text(json, &c, &err);
    CHECK(rc < 0 && strstr(err.msg, want), "%s: rejected with '%s' (got '%s')", what, want,
          err.msg);
}

static void test_config(void)
{
    llama_config_t c;
    ft_err_t err = {0};
    /* Llama-3.1-8B's config, abridged */
    const char *l31 =
        "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,"
        "\"bos_token_id\":128000,\"eos_token_id\":[128001,128008,128009],"
        "\"hidden_act\":\"silu\",\"hidden_size\":4096,\"intermediate_size\":14336,"
        "\"max_position_embeddings\":131072,\"mlp_bias\":false,\"model_type\":\"llama\","
        "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":8,"
        "\"pretraining_tp\":1,\"rms_norm_eps\":1e-05,\"rope_scaling\":{\"factor\":8.0,"
        "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
        "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},"
        "\"rope_theta\":500000.0,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\","
        "\"vocab_size\":128256}";
    CHECK(load_cfg_text(l31, &c, &err) == 0, "llama 3.1 config loads: %s", err.msg);
    CHECK(c.vocab_size == 128256 && c.hidden_size == 4096 && c.intermediate_size == 14336 &&
              c.n_layers == 32 && c.n_heads == 32 && c.n_kv_heads == 8 && c.head_dim == 128,
          "llama 3.1 sizes");
    CHECK(c.rope_type == LLAMA_ROPE_LLAMA3 && c.rope_factor == 8.0 &&
              c.rope_low_freq_factor == 1.0 && c.rope_high_freq_factor == 4.0 &&
              c.rope_original_max_position == 8192 && c.rope_theta == 500000.0,
          "llama3 rope scaling read");
    CHECK(c.bos_token_id == 128000 && c.eos_token_id == 128001 && c.pad_token_id == -1,
          "bos, first of the eos list, no pad");
    CHECK(fabs(c.rms_norm_eps - 1e-5) < 1e-12 && !c.tie_word_embeddings, "eps and untied");

    /* newest transformers: rope_parameters */
    const char *rp =
        "{\"model_type\":\"llama\",\"hidden_size\":2048,\"intermediate_size\":8192,"
        "\"num_attention_heads\":32,\"num_hidden_layers\":16,\"num_key_value_heads\":8,"
        "\"vocab_size\":128256,\"tie_word_embeddings\":true,\"head_dim\":64,"
        "\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":500000.0,\"factor\":32.0,"
        "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
        "\"original_max_position_embeddings\":8192}}";
    CHECK(load_cfg_text(rp, &c, &err) == 0, "rope_parameters config loads: %s", err.msg);
    CHECK(c.rope_type == LLAMA_ROPE_LLAMA3 && c.rope_factor == 32.0 && c.rope_theta == 500000.0 &&
              c.tie_word_embeddings && c.head_dim == 64,
          "rope_parameters read (theta inside, factor 32, tied)");

    /* defaults of transformers' LlamaConfig */
    CHECK(load_cfg_text("{\"model_type\":\"llama\"}", &c, &err) == 0, "minimal config");
    CHECK(c.vocab_size == 32000 && c.hidden_size == 4096 && c.intermediate_size == 11008 &&
              c.n_layers == 32 && c.n_heads == 32 && c.n_kv_heads == 32 &&
              c.max_position_embeddings == 2048 && fabs(c.rms_norm_eps - 1e-6) < 1e-15 &&
              c.bos_token_id == 1 && c.eos_token_id == 2 && c.rope_theta == 10000.0 &&
              c.rope_type == LLAMA_ROPE_DEFAULT,
          "HF defaults applied");
    CHECK(load_cfg_text("{\"model_type\":\"llama\",\"rope_scaling\":{\"type\":\"default\"},"
                        "\"pad_token_id\":null,\"head_dim\":null}",
                        &c, &err) == 0 &&
              c.rope_type == LLAMA_ROPE_DEFAULT && c.pad_token_id == -1 && c.head_dim == 128,
          "rope type default via old 'type' key, nulls accepted");

    expect_cfg_error("attention_bias", "{\"model_type\":\"llama\",\"attention_bias\":true}",
                     "attention_bias true is not supported");
    expect_cfg_error("mlp_bias", "{\"model_type\":\"llama\",\"mlp_bias\":true}",
                     "mlp_bias true is not supported");
    expect_cfg_error("gelu", "{\"model_type\":\"llama\",\"hidden_act\":\"gelu\"}",
                     "hidden_act 'gelu' is not supported");
    expect_cfg_error("yarn",
                     "{\"model_type\":\"llama\",\"rope_scaling\":{\"rope_type\":"
                     "\"yarn\",\"factor\":4}}",
                     "rope type 'yarn' is not supported");
    expect_cfg_error("linear rope",
                     "{\"model_type\":\"llama\",\"rope_scaling\":{\"type\":"
                     "\"linear\",\"factor\":2}}",
                     "rope type 'linear' is not supported");
    expect_cfg_error("llama3 incomplete",
                     "{\"model_type\":\"llama\",\"rope_scaling\":"
                     "{\"rope_type\":\"llama3\",\"factor\":8}}",
                     "llama3 rope needs 'low_freq_factor'");
    expect_cfg_error("gqa divisibility",
                     "{\"model_type\":\"llama\",\"num_attention_heads\":32,"
                     "\"num_key_value_heads\":5}",
                     "not divisible by num_key_value_heads 5");
    expect_cfg_error("hidden divisibility",
                     "{\"model_type\":\"llama\",\"hidden_size\":100,"
                     "\"num_attention_heads\":3}",
                     "hidden_size 100 is not divisible");
    expect_cfg_error("odd head_dim",
                     "{\"model_type\":\"llama\",\"hidden_size\":96,"
                     "\"num_attention_heads\":32,\"num_key_value_heads\":32}",
                     "must be even");
    expect_cfg_error("model_type", "{\"model_type\":\"gpt2\"}",
                     "model_type 'gpt2' is not supported");
    expect_cfg_error("no model_type", "{\"hidden_size\":64}", "field 'model_type' is missing");
    expect_cfg_error("mistral window",
                     "{\"model_type\":\"mistral\",\"sliding_window\":4096,"
                     "\"max_position_embeddings\":32768}",
                     "sliding window attention is not supported");
    expect_cfg_error("bad type", "{\"model_type\":\"llama\",\"hidden_size\":\"64\"}",
                     "field 'hidden_size': expected an integer");
    expect_cfg_error("eos out of vocab",
                     "{\"model_type\":\"llama\",\"vocab_size\":100,"
                     "\"eos_token_id\":[100]}",
                     "field 'eos_token_id': expected a token id in [0, 100)");
    expect_cfg_error("not json", "{\"model_type\":", "config.json");
    CHECK(load_cfg_text("{\"model_type\":\"mistral\",\"sliding_window\":null}", &c, &err) == 0,
          "mistral without a sliding window accepted");
    CHECK(llama_config_load("/nonexistent-model", &c, &err) < 0 &&
              strstr(err.msg, "/nonexistent-model/config.json"),
          "missing folder: %s", err.msg);
}

static void test_tiny(st_dtype_t dt, bool tie)
{
    char d[300];
    ft_err_t err = {0};
    tinymodel_opts_t o;
    tinymodel_defaults(&o);
    o.dtype = dt;
    o.tie = tie;
    o.seed = 7;
    snprintf(d, sizeof d, "%s/tiny-%s%s", dir, st_dtype_name(dt), tie ? "-tied" : "");
    CHECK(tinymodel_write(d, &o, &err) == 0, "tiny model %s%s written: %s", st_dtype_name(dt),
          tie ? " tied" : "", err.msg);
    llama_config_t c;
    CHECK(llama_config_load(d, &c, &err) == 0, "its config loads: %s", err.msg);
    CHECK(c.hidden_size == 64 && c.n_layers == 2 && c.n_heads == 4 && c.n_kv_heads == 2 &&
              c.intermediate_size == 176 && c.vocab_size == 264 &&
              c.max_position_embeddings == 512 && c.head_dim == 16 &&
              c.tie_word_embeddings == tie && c.pad_token_id == 0,
          "default tiny shape");
    llama_weights_t w, ref;
    CHECK(llama_weights_load(d, &c, &w, &err) == 0, "weights load: %s", err.msg);
    CHECK(llama_weights_alloc(&c, &ref) == 0, "reference allocated");
    tinymodel_fill(&c, &ref, 7, 0.02);
    CHECK(w.n_floats == ref.n_floats, "same float count %zu", w.n_floats);
    double worst = 0, sum2 = 0;
    for (size_t i = 0; i < w.n_floats; i++) {
        float want = ref.mem[i];
        if (dt == ST_BF16)
            want = st_bf16_to_f32(st_f32_to_bf16(want));
        else if (dt == ST_F16)
            want = st_f16_to_f32(st_f32_to_f16(want));
        worst = fmax(worst, fabs((double)w.mem[i] - want));
    }
    for (size_t i = 0; i < (size_t)c.vocab_size * 64; i++)
        sum2 += (double)ref.embed[i] * ref.embed[i];
    CHECK(worst == 0, "loaded values equal the %s-rounded generated ones (worst diff %g)",
          st_dtype_name(dt), worst);
    CHECK(tie ? w.lm_head == w.embed : w.lm_head != w.embed, "lm_head %s embed",
          tie ? "is" : "is not");
    CHECK(w.layers[1].attn_norm[5] == 1.0f && w.final_norm[63] == 1.0f, "norm weights are 1");
    double std = sqrt(sum2 / ((double)c.vocab_size * 64));
    CHECK(fabs(std - 0.02) < 0.0005, "embedding init std %.5f close to 0.02", std);
    llama_weights_free(&w);
    llama_weights_free(&ref);
    CHECK(w.mem == NULL, "free clears");
}

static void test_sharded(void)
{
    char d[300], p[400];
    ft_err_t err = {0};
    tinymodel_opts_t o;
    tinymodel_defaults(&o);
    o.layers = 3;
    o.seed = 11;
    snprintf(d, sizeof d, "%s/sharded", dir);
    CHECK(tinymodel_write(d, &o, &err) == 0, "3-layer model written");
    llama_config_t c;
    llama_weights_t single, sharded;
    CHECK(llama_config_load(d, &c, &err) == 0, "config");
    CHECK(llama_weights_load(d, &c, &single, &err) == 0, "single-file load");

    /* split into two shards, add an inv_freq buffer that must be ignored */
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    st_file_t *f = st_open(p, &err);
    st_writer_t *w1 = st_writer_new(), *w2 = st_writer_new();
    FILE *idx;
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    idx = fopen(p, "w");
    fprintf(idx, "{\"metadata\":{\"total_size\":1},\"weight_map\":{");
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor_t *t = st_tensor_at(f, i);
        bool second = strstr(t->name, "layers.2.") || strstr(t->name, "lm_head");
        st_writer_add(second ? w2 : w1, t->name, t->dtype, t->ndim, t->shape, t->data, &err);
        fprintf(idx, "%s\"%s\":\"model-0000%d-of-00002.safetensors\"", i ? "," : "", t->name,
                second ? 2 : 1);
    }
    float inv[8] = {0};
    int64_t s8[1] = {8};
    st_writer_add(w1, "model.layers.0.self_attn.rotary_emb.inv_freq", ST_F32, 1, s8, inv, &err);
    fprintf(idx, ",\"model.layers.0.self_attn.rotary_emb.inv_freq\":"
                 "\"model-00001-of-00002.safetensors\"}}");
    fclose(idx);
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", d);
    CHECK(st_writer_save(w1, p, &err) == 0, "shard 1 written");
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", d);
    CHECK(st_writer_save(w2, p, &err) == 0, "shard 2 written");
    st_writer_destroy(&w1);
    st_writer_destroy(&w2);
    st_close(&f);
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    unlink(p);

    CHECK(llama_weights_load(d, &c, &sharded, &err) == 0, "sharded load: %s", err.msg);
    CHECK(sharded.n_floats == single.n_floats &&
              memcmp(sharded.mem, single.mem, single.n_floats * sizeof(float)) == 0,
          "sharded weights equal the single-file ones (inv_freq ignored)");
    llama_weights_free(&sharded);

    /* index names a tensor in a file that lacks it / misses a tensor / escapes the folder */
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    test_write_text(p, "{\"weight_map\":{\"model.embed_tokens.weight\":"
                       "\"model-00002-of-00002.safetensors\"}}");
    CHECK(llama_weights_load(d, &c, &sharded, &err) < 0 &&
              strstr(err.msg, "tensor 'model.embed_tokens.weight' is missing"),
          "tensor absent from its shard: %s", err.msg);
    test_write_text(p, "{\"weight_map\":{\"model.embed_tokens.weight\":"
                       "\"model-00001-of-00002.safetensors\"}}");
    CHECK(llama_weights_load(d, &c, &sharded, &err) < 0 &&
              strstr(err.msg, "weight_map has no 'model.norm.weight'"),
          "weight_map incomplete: %s", err.msg);
    test_write_text(p, "{\"weight_map\":{\"model.embed_tokens.weight\":\"../x.safetensors\"}}");
    CHECK(llama_weights_load(d, &c, &sharded, &err) < 0 &&
              strstr(err.msg, "expected a file name in the model folder"),
          "path escape refused: %s", err.msg);

    /* a config that disagrees with the weights */
    unlink(p);
    tinymodel_opts_t o2;
    tinymodel_defaults(&o2);
    snprintf(d, sizeof d, "%s/shape", dir);
    tinymodel_write(d, &o2, &err);
    llama_config_t c2;
    llama_config_load(d, &c2, &err);
    c2.intermediate_size = 177;
    CHECK(llama_weights_load(d, &c2, &sharded, &err) < 0 &&
              strstr(err.msg, "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [176, 64], "
                              "expected [177, 64]"),
          "shape mismatch named: %s", err.msg);
    llama_weights_free(&single);
}

static void test_tiny_opts(void)
{
    tinymodel_opts_t o;
    llama_config_t c;
    ft_err_t err = {0};
    tinymodel_defaults(&o);
    o.vocab = 100;
    CHECK(tinymodel_config(&o, &c, &err) < 0 && strstr(err.msg, "'vocab' is 100"),
          "vocab below the byte tokenizer refused: %s", err.msg);
    tinymodel_defaults(&o);
    o.kv_heads = 3;
    CHECK(tinymodel_config(&o, &c, &err) < 0 && strstr(err.msg, "not divisible by 'kv-heads'"),
          "kv-heads must divide heads: %s", err.msg);
    tinymodel_defaults(&o);
    o.dtype = ST_I32;
    CHECK(tinymodel_config(&o, &c, &err) < 0 && strstr(err.msg, "'dtype'"), "dtype checked");
}

int main(void)
{
    test_tmpdir(dir, sizeof dir, "llama");
    test_config();
    test_tiny(ST_F32, false);
    test_tiny(ST_BF16, false);
    test_tiny(ST_F16, true);
    test_sharded();
    test_tiny_opts();
    return test_finish(dir);
}
