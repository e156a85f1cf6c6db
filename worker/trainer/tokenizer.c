/*
 * tokenizer.c: the byte-level tokenizer of ft's tiny models (tokenizer.h):
 * id = byte + 3, with 0 = pad, 1 = bos, 2 = eos. It never adds specials by
 * itself; data.c places BOS and EOS.
 *
 * Invariant: every id produced is in [3, 259). Cost: O(bytes) encoding, no
 * allocation.
 */
#include <stdlib.h>
#include <string.h>

#include "ft/json.h"
#include "tokenizer.h"

#define BYTE_OFFSET 3
#define BYTE_VOCAB 259
#define TOKCFG_MAX_BYTES (16 * 1024 * 1024)

typedef enum { TOK_BYTE = 1 } tok_kind_t;

struct tokenizer {
    tok_kind_t kind; /* only byte-level so far */
    int vocab;       /* ids this tokenizer can produce: 259 */
};

tokenizer_t *tokenizer_load(const char *model_dir, ft_err_t *err)
{
    tokenizer_t *t = NULL;
    cJSON *root = NULL;
    size_t len = 0;
    ft_err_t e2 = {0};
    char *path = ft_asprintf("%s/tokenizer_config.json", model_dir);
    char *buf = path ? ft_read_file(path, TOKCFG_MAX_BYTES, &len, &e2) : NULL;

    if (!path) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    if (!buf) {
        ft_err_set(err, e2.code ? e2.code : FT_ENOTFOUND,
                   "%s (no tokenizer: data must be "
                   "pre-tokenized, with input_ids)",
                   e2.msg);
        goto out;
    }
    root = ft_json_parse(buf, len, &e2);
    if (!root || !cJSON_IsObject(root)) {
        ft_err_set(err, FT_EBADJSON, "'%s': %s", path, root ? "expected an object" : e2.msg);
        goto out;
    }
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "tokenizer_class");
    if (!cJSON_IsString(cls)) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': field 'tokenizer_class' is missing or not a "
                   "string (data must be pre-tokenized, with input_ids)",
                   path);
        goto out;
    }
    if (strcmp(cls->valuestring, "FtByteTokenizer") != 0) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': tokenizer_class '%s' is not supported yet (only "
                   "FtByteTokenizer); give the data pre-tokenized, with input_ids",
                   path, ft_sanitize(cls->valuestring, 48));
        goto out;
    }
    t = calloc(1, sizeof *t);
    if (!t) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    t->kind = TOK_BYTE;
    t->vocab = BYTE_VOCAB;
out:
    cJSON_Delete(root);
    free(buf);
    free(path);
    return t;
}

void tokenizer_destroy(tokenizer_t **pt)
{
    if (!pt || !*pt)
        return;
    free(*pt);
    *pt = NULL;
}

int64_t tokenizer_encode(const tokenizer_t *t, const char *text, size_t len, int32_t *out,
                         int64_t cap)
{
    (void)t;
    if ((int64_t)len > cap)
        return -1;
    const unsigned char *p = (const unsigned char *)text;
    for (size_t i = 0; i < len; i++)
        out[i] = (int32_t)p[i] + BYTE_OFFSET;
    return (int64_t)len;
}

int tokenizer_bos(const tokenizer_t *t)
{
    (void)t;
    return 1;
}

int tokenizer_eos(const tokenizer_t *t)
{
    (void)t;
    return 2;
}

int tokenizer_vocab_size(const tokenizer_t *t)
{
    return t->vocab;
}
