/*
 * llama.h: the Llama-family model as the trainer holds it: the configuration
 * read from a Hugging Face config.json, and the frozen base weights in one
 * contiguous float32 buffer (converted from F32/BF16/F16 on load).
 *
 * Shapes follow Hugging Face (nn.Linear weights are (out, in), row-major).
 * C = hidden_size, I = intermediate_size, V = vocab_size,
 * Hq = n_heads * head_dim, Hkv = n_kv_heads * head_dim.
 */
#ifndef FT_LLAMA_H
#define FT_LLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include "ft/common.h"

typedef enum { LLAMA_ROPE_DEFAULT = 0, LLAMA_ROPE_LLAMA3 = 1 } llama_rope_type_t;

typedef struct {
    int vocab_size;           /* V */
    int hidden_size;          /* C */
    int intermediate_size;    /* I */
    int n_layers;             /* L */
    int n_heads;              /* query heads */
    int n_kv_heads;           /* key/value heads (GQA); divides n_heads */
    int head_dim;             /* default C / n_heads */
    int max_position_embeddings;
    double rms_norm_eps;
    double rope_theta;
    llama_rope_type_t rope_type;
    double rope_factor;               /* llama3: factor */
    double rope_low_freq_factor;      /* llama3 */
    double rope_high_freq_factor;     /* llama3 */
    int rope_original_max_position;   /* llama3: original_max_position_embeddings */
    bool tie_word_embeddings;
    int bos_token_id;         /* -1 when absent */
    int eos_token_id;         /* first one when a list; -1 when absent */
    int pad_token_id;         /* -1 when absent */
    char model_type[32];      /* "llama" (also accepted: "mistral" with no sliding window) */
} llama_config_t;

typedef struct {
    float *attn_norm;  /* (C) input_layernorm */
    float *q;          /* (Hq, C) */
    float *k;          /* (Hkv, C) */
    float *v;          /* (Hkv, C) */
    float *o;          /* (C, Hq) */
    float *mlp_norm;   /* (C) post_attention_layernorm */
    float *gate;       /* (I, C) */
    float *up;         /* (I, C) */
    float *down;       /* (C, I) */
} llama_layer_weights_t;

typedef struct {
    float *mem;                      /* one allocation holding every tensor */
    size_t n_floats;                 /* floats in mem */
    float *embed;                    /* (V, C) model.embed_tokens.weight */
    float *final_norm;               /* (C) model.norm.weight */
    float *lm_head;                  /* (V, C); == embed when tied */
    llama_layer_weights_t *layers;   /* [n_layers] */
} llama_weights_t;

/* Parses config.json in dir (both rope_theta/rope_scaling and the newer
 * rope_parameters forms). Unsupported architectures or values are errors. */
int llama_config_load(const char *dir, llama_config_t *cfg, ft_err_t *err);
/* Loads model.safetensors or the sharded form named by
 * model.safetensors.index.json, checking every expected tensor's presence and
 * shape; unknown extra tensors (rotary_emb.inv_freq) are ignored. */
int llama_weights_load(const char *dir, const llama_config_t *cfg, llama_weights_t *w,
                       ft_err_t *err);
/* Allocates w for cfg with every tensor zero (used by the writer of tiny models). */
int llama_weights_alloc(const llama_config_t *cfg, llama_weights_t *w);
void llama_weights_free(llama_weights_t *w);

#endif
