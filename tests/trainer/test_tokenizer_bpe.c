/*
 * test_tokenizer_bpe.c: ft's byte-level BPE tokenizer against Hugging Face
 * `tokenizers`: for each fixture folder (tests/trainer/data/bpe-*, made by
 * make_bpe_fixtures.py: a Llama-3-style and a GPT-2-style tokenizer.json and
 * the ids the reference library gives for 338 texts; and two SentencePiece-style
 * ones as Llama 2 and Mistral ship them), every text must encode
 * to exactly the reference ids. Then the refusals: tokenizer.json features
 * ft does not implement must fail loading with a reason, never encode
 * differently.
 * Usage: test_tokenizer_bpe DATA_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft/json.h"
#include "testutil.h"
#include "tokenizer.h"

static void check_fixture(const char *dir)
{
    ft_err_t err = {0};
    char path[600];
    size_t clen;
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *ctext = ft_read_file(path, 1 << 20, &clen, &err);
    cJSON *cfg = ctext ? ft_json_parse(ctext, clen, &err) : NULL;
    int want_vocab = cJSON_GetObjectItem(cfg, "vocab_size")->valueint;
    int want_bos = cJSON_GetObjectItem(cfg, "bos_token_id")->valueint;
    int want_eos = cJSON_GetObjectItem(cfg, "eos_token_id")->valueint;
    cJSON_Delete(cfg);
    free(ctext);
    tokenizer_t *t = tokenizer_load(dir, &err);
    CHECK(t != NULL, "'%s' loads: %s", dir, err.msg);
    if (!t)
        return;
    CHECK(tokenizer_vocab_size(t) == want_vocab && tokenizer_bos(t) == want_bos &&
              tokenizer_eos(t) == want_eos,
          "vocab %d (want %d), bos %d and eos %d from config.json", tokenizer_vocab_size(t),
          want_vocab, tokenizer_bos(t), tokenizer_eos(t));
    snprintf(path, sizeof path, "%s/cases.jsonl", dir);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cases read");
    if (!f) {
        tokenizer_destroy(&t);
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int n = 0, bad = 0, tokens = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        cJSON *j = ft_json_parse(line, (size_t)len, &err);
        const cJSON *text = cJSON_GetObjectItem(j, "text"), *ids = cJSON_GetObjectItem(j, "ids");
        size_t tl = strlen(text->valuestring);
        int32_t *out = malloc((2 * tl + 2) * sizeof *out);
        int64_t k = tokenizer_encode(t, text->valuestring, tl, out, 2 * (int64_t)tl + 2);
        bool same = k == cJSON_GetArraySize(ids);
        for (int64_t i = 0; same && i < k; i++)
            same = out[i] == cJSON_GetArrayItem(ids, (int)i)->valueint;
        if (!same && bad++ < 5) {
            char *want = ft_json_print(ids), *txt = ft_json_print(text);
            printf("  mismatch on %s\n  want %s\n  got ", txt, want);
            free(txt);
            for (int64_t i = 0; i < k; i++)
                printf("%s%d", i ? "," : "[", out[i]);
            printf("]\n");
            fflush(stdout);
            free(want);
        }
        tokens += (int)k;
        n++;
        free(out);
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    CHECK(n > 300 && bad == 0, "%d texts (%d tokens): %d differ from Hugging Face tokenizers", n,
          tokens, bad);
    /* continuation: the same ids for byte-level; no leading word mark for
     * SentencePiece style */
    int32_t a[8], b[8];
    int64_t na = tokenizer_encode(t, "x", 1, a, 8), nb = tokenizer_encode_cont(t, "x", 1, b, 8);
    if (strstr(dir, "bpe-sp"))
        CHECK(na == 2 && nb == 1 && b[0] == a[1], "encode(\"x\") is [mark, x], encode_cont is [x]");
    else
        CHECK(na == nb && na >= 1 && a[0] == b[0], "encode_cont equals encode for byte-level");
    /* capacity too small is an error, never an overflow */
    int32_t small[1];
    CHECK(tokenizer_encode(t, "abc xyz", 7, small, 1) == -1, "capacity too small: -1");
    tokenizer_destroy(&t);
}

/* Copies the fixture with one change made by edit, expects a load error. */
static void expect_refusal(const char *src, const char *tmp, const char *what,
                           void (*edit)(cJSON *), const char *want)
{
    ft_err_t err = {0};
    char p[700];
    size_t len;
    snprintf(p, sizeof p, "%s/tokenizer.json", src);
    char *buf = ft_read_file(p, 1 << 24, &len, &err);
    cJSON *j = ft_json_parse(buf, len, &err);
    edit(j);
    char *out = cJSON_PrintUnformatted(j);
    snprintf(p, sizeof p, "%s/tokenizer.json", tmp);
    test_write_text(p, out);
    snprintf(p, sizeof p, "%s/config.json", src);
    char *cfg = ft_read_file(p, 1 << 20, &len, &err);
    snprintf(p, sizeof p, "%s/config.json", tmp);
    test_write_text(p, cfg);
    tokenizer_t *t = tokenizer_load(tmp, &err);
    CHECK(!t && strstr(err.msg, want) && strstr(err.msg, "pre-tokenized"), "%s refused: %s", what,
          err.msg);
    tokenizer_destroy(&t);
    free(cfg);
    free(out);
    cJSON_Delete(j);
    free(buf);
}

static void set_normalizer(cJSON *j)
{
    cJSON *n = cJSON_CreateObject();
    cJSON_AddStringToObject(n, "type", "NFC");
    cJSON_ReplaceItemInObject(j, "normalizer", n);
}

static void set_byte_fallback(cJSON *j)
{
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "model"), "byte_fallback", cJSON_CreateTrue());
}

static void set_prefix_space(cJSON *j)
{
    cJSON *pre = cJSON_GetObjectItem(j, "pre_tokenizer");
    cJSON_ReplaceItemInObject(pre, "add_prefix_space", cJSON_CreateTrue());
}

static void set_other_regex(cJSON *j)
{
    cJSON *sp = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "pre_tokenizer"), "pretokenizers"), 0);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(sp, "pattern"), "Regex",
                              cJSON_CreateString("\\w+|\\s+"));
}

static void drop_byte(cJSON *j)
{
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "vocab"), "!");
}

static void set_lstrip(cJSON *j)
{
    cJSON_ReplaceItemInObject(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "added_tokens"), 0),
                              "lstrip", cJSON_CreateTrue());
}

/* Single-byte corruptions of a fixture's tokenizer.json: loading either fails
 * with a message or gives a tokenizer whose ids stay below its vocabulary
 * (run under the sanitizer build to catch memory errors). */
static void test_mutations(const char *src, const char *tmp)
{
    ft_err_t err = {0};
    char p[700];
    size_t len, clen;
    snprintf(p, sizeof p, "%s/tokenizer.json", src);
    char *orig = ft_read_file(p, 1 << 24, &len, &err);
    snprintf(p, sizeof p, "%s/config.json", src);
    char *cfg = ft_read_file(p, 1 << 20, &clen, &err);
    snprintf(p, sizeof p, "%s/config.json", tmp);
    test_write_text(p, cfg);
    char *buf = malloc(len + 1);
    uint64_t x = 7;
    int loaded = 0, refused = 0, bad = 0;
    for (int it = 0; it < 150; it++) {
        memcpy(buf, orig, len + 1);
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const char *rep = "0123456789\"{}[],: -.aZ\\u";
        buf[(x >> 20) % len] = rep[(x >> 50) % strlen(rep)];
        snprintf(p, sizeof p, "%s/tokenizer.json", tmp);
        test_write_text(p, buf);
        tokenizer_t *t = tokenizer_load(tmp, &err);
        if (!t) {
            refused++;
            bad += err.msg[0] == '\0';
            continue;
        }
        loaded++;
        int32_t out[128];
        int64_t n = tokenizer_encode(t, "Hello world <tool> \xc3\xa9 \n\n 123", 26, out, 128);
        for (int64_t i = 0; i < n; i++)
            bad += out[i] < 0 || out[i] >= tokenizer_vocab_size(t);
        tokenizer_destroy(&t);
    }
    CHECK(bad == 0, "150 corrupted copies of '%s': %d loaded, %d refused with a message", src,
          loaded, refused);
    free(buf);
    free(cfg);
    free(orig);
}

int main(int argc, char **argv)
{
    char a[600], b[600], c[600], tmp[300];
    ft_err_t err = {0};
    if (argc != 2) {
        fprintf(stderr, "usage: test_tokenizer_bpe DATA_DIR\n");
        return 2;
    }
    snprintf(a, sizeof a, "%s/bpe-llama3", argv[1]);
    snprintf(b, sizeof b, "%s/bpe-gpt2", argv[1]);
    snprintf(c, sizeof c, "%s/bpe-sp-norm", argv[1]);
    check_fixture(a);
    check_fixture(b);
    check_fixture(c);
    snprintf(c, sizeof c, "%s/bpe-sp-meta", argv[1]);
    check_fixture(c);
    test_tmpdir(tmp, sizeof tmp, "bpe");
    expect_refusal(a, tmp, "a normalizer", set_normalizer, "normalizer is not supported");
    expect_refusal(a, tmp, "byte_fallback with a byte-level pre-tokenizer", set_byte_fallback,
                   "SentencePiece-style BPE (byte_fallback) is supported with");
    expect_refusal(b, tmp, "add_prefix_space", set_prefix_space, "add_prefix_space");
    expect_refusal(a, tmp, "another regex", set_other_regex, "neither the GPT-2 nor the Llama-3");
    expect_refusal(a, tmp, "a byte missing", drop_byte, "no token for byte 0x21");
    expect_refusal(a, tmp, "lstrip", set_lstrip, "lstrip is not supported");
    test_mutations(a, tmp);
    snprintf(c, sizeof c, "%s/bpe-sp-norm", argv[1]);
    test_mutations(c, tmp);
    (void)err;
    return test_finish(tmp);
}
