/*
 * tinymodel.h: writes a small random Llama in exactly the Hugging Face folder
 * layout (config.json, model.safetensors, generation_config.json) with the
 * files of the byte tokenizer (tokenizer_config.json with
 * "tokenizer_class": "FtByteTokenizer", special_tokens_map.json), so that
 * tests and demos need no download and transformers can load the same folder.
 *
 * Byte tokenizer ids: 0 = pad "<pad>", 1 = bos "<s>", 2 = eos "</s>",
 * byte b -> b + 3; 259 ids used, vocab_size 264 by default (a multiple of 8,
 * the ids 259..263 are never produced).
 *
 * Weights are deterministic from the seed: each tensor, in the order
 * embed_tokens, then per layer q, k, v, o, gate, up, down, then lm_head (when
 * untied), draws normal(0, init_std) values (as HF's _init_weights does) from
 * a splitmix64 stream seeded with seed; RMSNorm weights are 1.
 * Cost: O(parameters) time and memory (the tensors are built in memory).
 */
#ifndef FT_TINYMODEL_H
#define FT_TINYMODEL_H

#include <stdbool.h>
#include <stdint.h>
#include "ft/common.h"
#include "llama.h"
#include "safetensors.h"

typedef struct {
    int hidden;          /* hidden_size; default 64 */
    int layers;          /* num_hidden_layers; default 2 */
    int heads;           /* num_attention_heads; default 4 */
    int kv_heads;        /* num_key_value_heads; default 2 */
    int intermediate;    /* intermediate_size; default 176 */
    int vocab;           /* vocab_size; default 264 (>= 259 for the byte tokenizer) */
    int max_pos;         /* max_position_embeddings; default 512 */
    double rope_theta;   /* default 10000 */
    double rms_norm_eps; /* default 1e-5 */
    bool tie;            /* tie_word_embeddings; default false */
    st_dtype_t dtype;    /* ST_F32 (default), ST_BF16 or ST_F16; torch_dtype follows */
    uint64_t seed;       /* default 0 */
    double init_std;     /* default 0.02 */
} tinymodel_opts_t;

void tinymodel_defaults(tinymodel_opts_t *o);
/* Checks o (every field named on error) and fills the config it describes. */
int tinymodel_config(const tinymodel_opts_t *o, llama_config_t *cfg, ft_err_t *err);
/* A bare Llama config of this shape for benchmarks (no checks): head_dim
 * hidden/heads, max_position_embeddings seq, rms_norm_eps 1e-5, no special
 * tokens (ids -1), untied, model_type "llama". */
void tinymodel_bench_config(llama_config_t *cfg, int vocab, int hidden, int inter, int layers,
                            int heads, int kv_heads, int seq, double rope_theta);
/* Fills w (allocated for cfg) with the deterministic random weights. */
void tinymodel_fill(const llama_config_t *cfg, llama_weights_t *w, uint64_t seed, double init_std);
/* Writes the model folder dir (created when missing; files replaced atomically). */
int tinymodel_write(const char *dir, const tinymodel_opts_t *o, ft_err_t *err);

#endif
