/*
 * tokenizer.h: text to token ids. The byte-level tokenizer of the bundled
 * tiny model maps each UTF-8 byte b to id b + 3 (0 = pad, 1 = bos, 2 = eos),
 * vocabulary 259 and up. BPE tokenizers in tokenizer.json are read too:
 * byte-level (GPT-2, Llama 3 and kin) and SentencePiece-style (Llama 2,
 * Mistral); see tokenizer.c for exactly what is accepted. Models with any
 * other tokenizer take pre-tokenized data.
 */
#ifndef FT_TOKENIZER_H
#define FT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "ft/common.h"

typedef struct tokenizer tokenizer_t;

/* Loads the tokenizer of a model folder: "byte" when tokenizer_config.json
 * says "tokenizer_class": "FtByteTokenizer", else byte-level BPE from
 * tokenizer.json (BOS/EOS ids from config.json); NULL with err naming the
 * reason for anything else (data must then be pre-tokenized). */
tokenizer_t *tokenizer_load(const char *model_dir, ft_err_t *err);
void tokenizer_destroy(tokenizer_t **t);
/* Appends the ids of text to out (capacity cap); returns the count written or
 * -1 when cap is too small (2 * len + 1 is always enough) or memory runs out. */
int64_t tokenizer_encode(const tokenizer_t *t, const char *text, size_t len, int32_t *out,
                         int64_t cap);
/* The same for text that continues the previous call's text in one record
 * (a response after its prompt): SentencePiece-style tokenizers then do not
 * start it with a word mark "▁", as if both had been encoded as one string.
 * Identical to tokenizer_encode for the other kinds. */
int64_t tokenizer_encode_cont(const tokenizer_t *t, const char *text, size_t len, int32_t *out,
                              int64_t cap);
int tokenizer_bos(const tokenizer_t *t);
int tokenizer_eos(const tokenizer_t *t);
int tokenizer_vocab_size(const tokenizer_t *t);

#endif
