/*
 * data.c: JSONL training data into rows of T+1 tokens (see data.h; the
 * formats, the chat template and the masking rules are in docs/job-spec.md).
 *
 * Pipeline: every line of every dataset is parsed (blank lines skipped) and
 * becomes one record: token ids plus labels (the id itself where the token is
 * learnt, -100 where it is not). Text formats get BOS first and EOS last; the
 * BOS label is always -100. Eval records come from eval_path, or from a
 * seeded split of val_set_size of the training records. Records become rows:
 * packed (records concatenated in file order, cut into consecutive rows of
 * T+1 tokens; a final partial row is padded) or padded (one record per row,
 * cut at T+1 tokens, padded with the pad id and -100 labels). Attention is not
 * blocked between records that share a packed row. Rows without a target are
 * dropped. A record's parts (prompt, response, chat turns) are tokenized in
 * turn, the later ones with tokenizer_encode_cont, so masks fall on token
 * boundaries.
 *
 * Order: epoch e visits the training rows in the Fisher-Yates permutation
 * drawn from xoshiro256** seeded by splitmix64 of (seed + e); the global batch
 * is the next B*world rows of that order (continuing into the next epoch's
 * order at the boundary); rank r takes rows r*B .. r*B+B-1 of it.
 *
 * Costs: loading is O(bytes of data); rows take 2 * 4 * (T+1) bytes each;
 * data_next_batch is O(B*world) plus an O(rows) permutation once per epoch.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "ft/json.h"
#include "llama.h"
#include "rng.h"
#include "tokenizer.h"

#define LINE_MAX_BYTES (64 * 1024 * 1024)

/* ---- PRNG: xoshiro256** seeded by splitmix64 (rng.h) ---- */

/* Uniform in [0, n) without modulo bias (rejection). */
static uint64_t rng_below(rng_t *r, uint64_t n)
{
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = rng_next(r);
    while (x >= lim);
    return x % n;
}

static void permute(int64_t *perm, int64_t n, uint64_t seed)
{
    rng_t r;
    rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* ---- growable token/label streams and record spans ---- */
typedef struct {
    int32_t *tok;   /* token ids */
    int32_t *lab;   /* label per token: the id, or FT_IGNORE_INDEX */
    int64_t n, cap; /* used, allocated entries */
} tokbuf_t;

typedef struct {
    int64_t start, len; /* span in the tokbuf */
} rec_t;

typedef struct {
    rec_t *r;
    int64_t n, cap;
} reclist_t;

static int tb_reserve(tokbuf_t *b, int64_t extra)
{
    if (b->n + extra <= b->cap)
        return 0;
    int64_t nc = b->cap ? b->cap : 4096;
    while (nc < b->n + extra)
        nc *= 2;
    int32_t *t = realloc(b->tok, (size_t)nc * sizeof *t);
    if (!t)
        return -1;
    b->tok = t;
    int32_t *l = realloc(b->lab, (size_t)nc * sizeof *l);
    if (!l)
        return -1;
    b->lab = l;
    b->cap = nc;
    return 0;
}

static int tb_push(tokbuf_t *b, int32_t tok, int32_t lab)
{
    if (tb_reserve(b, 1) < 0)
        return -1;
    b->tok[b->n] = tok;
    b->lab[b->n++] = lab;
    return 0;
}

static int rl_push(reclist_t *l, rec_t r)
{
    if (l->n == l->cap) {
        int64_t nc = l->cap ? 2 * l->cap : 256;
        rec_t *nr = realloc(l->r, (size_t)nc * sizeof *nr);
        if (!nr)
            return -1;
        l->r = nr;
        l->cap = nc;
    }
    l->r[l->n++] = r;
    return 0;
}

/* ---- the data set ---- */
typedef struct {
    int32_t *tok; /* (n, T+1) */
    int32_t *lab; /* (n, T+1) */
    int64_t n;    /* rows */
} rows_t;

struct data {
    int T;              /* inputs per row; rows hold T+1 tokens */
    rows_t train, eval; /* built rows */
    uint64_t seed;      /* spec seed */
    int64_t *perm;      /* [train.n] order of perm_epoch */
    int64_t perm_epoch; /* epoch perm was drawn for; -1 none */
};

/* What a record parser needs to know. */
typedef struct {
    const tokenizer_t *tok; /* NULL: only pre-tokenized records */
    int vocab;              /* ids must be < vocab */
    bool train_on_inputs;   /* learn the prompt too */
    const char *file;       /* for messages */
    int64_t line;           /* 1-based */
    ft_err_t *err;
} rctx_t;

#define REC_ERR(c, ...)                                                                            \
    do {                                                                                           \
        char m_[560];                                                                              \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                                      \
        ft_err_set((c)->err, FT_EBADFIELD, "'%s':%lld: %s", (c)->file, (long long)(c)->line, m_);  \
    } while (0)

/* Appends the encoded text with label = id when learn, else -100. cont: the
 * text continues the record's previous text (tokenizer_encode_cont). */
static int push_text(const rctx_t *c, tokbuf_t *b, const char *s, bool learn, bool cont)
{
    size_t len = strlen(s);
    /* a tokenizer gives at most 2 * bytes + 1 ids (tokenizer.c) */
    if (tb_reserve(b, 2 * (int64_t)len + 2) < 0)
        goto oom;
    int64_t k = cont ? tokenizer_encode_cont(c->tok, s, len, b->tok + b->n, b->cap - b->n)
                     : tokenizer_encode(c->tok, s, len, b->tok + b->n, b->cap - b->n);
    if (k < 0)
        goto oom;
    for (int64_t i = 0; i < k; i++)
        b->lab[b->n + i] = learn ? b->tok[b->n + i] : FT_IGNORE_INDEX;
    b->n += k;
    return 0;
oom:
    ft_err_set(c->err, FT_EINTERNAL, "'%s':%lld: out of memory", c->file, (long long)c->line);
    return -1;
}

static const char *get_string(const rctx_t *c, const cJSON *o, const char *name, bool required,
                              int *rc)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    *rc = 0;
    if (!v || (cJSON_IsNull(v) && !required)) {
        if (required) {
            REC_ERR(c, "field '%s' is missing", name);
            *rc = -1;
        }
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        REC_ERR(c, "field '%s': expected a string", name);
        *rc = -1;
        return NULL;
    }
    return v->valuestring;
}

static const char alpaca_with_input[] =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n";
static const char alpaca_no_input[] =
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n%s\n\n### Response:\n";

/* prompt (masked unless train_on_inputs) + response + EOS (learnt). */
static int prompt_response(const rctx_t *c, tokbuf_t *b, const char *prompt, const char *resp)
{
    if (tb_push(b, tokenizer_bos(c->tok), FT_IGNORE_INDEX) < 0 ||
        push_text(c, b, prompt, c->train_on_inputs, false) < 0 ||
        push_text(c, b, resp, true, true) < 0 ||
        tb_push(b, tokenizer_eos(c->tok), tokenizer_eos(c->tok)) < 0)
        return -1;
    return 0;
}

static int rec_text(const rctx_t *c, const cJSON *o, tokbuf_t *b)
{
    int rc;
    const char *t = get_string(c, o, "text", true, &rc);
    if (rc < 0)
        return -1;
    if (tb_push(b, tokenizer_bos(c->tok), FT_IGNORE_INDEX) < 0 ||
        push_text(c, b, t, true, false) < 0 ||
        tb_push(b, tokenizer_eos(c->tok), tokenizer_eos(c->tok)) < 0)
        return -1;
    return 0;
}

static int rec_completion(const rctx_t *c, const cJSON *o, tokbuf_t *b)
{
    int rc;
    const char *p = get_string(c, o, "prompt", true, &rc);
    if (rc < 0)
        return -1;
    const char *r = get_string(c, o, "completion", true, &rc);
    if (rc < 0)
        return -1;
    return prompt_response(c, b, p, r);
}

static int rec_alpaca(const rctx_t *c, const cJSON *o, tokbuf_t *b)
{
    int rc;
    const char *ins = get_string(c, o, "instruction", true, &rc);
    if (rc < 0)
        return -1;
    const char *in = get_string(c, o, "input", false, &rc);
    if (rc < 0)
        return -1;
    const char *out = get_string(c, o, "output", true, &rc);
    if (rc < 0)
        return -1;
    char *prompt =
        in && in[0] ? ft_asprintf(alpaca_with_input, ins, in) : ft_asprintf(alpaca_no_input, ins);
    if (!prompt) {
        ft_err_set(c->err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    rc = prompt_response(c, b, prompt, out);
    free(prompt);
    return rc;
}

/* The two chat record shapes: OpenAI "messages" [{role, content}] and
 * ShareGPT "conversations" [{from, value}]. Role names map to the canonical
 * roles system (0), user (1), assistant (2), tool (3). */
typedef struct {
    const char *name; /* as written in records */
    int role;         /* canonical role */
} role_name_t;

static const char *const canon_roles[] = {"system", "user", "assistant", "tool"};
static const role_name_t openai_roles[] = {
    {"system", 0}, {"user", 1}, {"assistant", 2}, {"tool", 3}, {NULL, 0}};
static const role_name_t sharegpt_roles[] = {
    {"system", 0}, {"human", 1}, {"user", 1}, {"gpt", 2}, {"assistant", 2}, {"tool", 3}, {NULL, 0}};
static const struct {
    const char *list, *role, *content; /* field names */
    const role_name_t *roles;          /* accepted role names */
    const char *role_help;             /* for messages */
} chat_shapes[] = {
    {"messages", "role", "content", openai_roles, "system, user, assistant or tool"},
    {"conversations", "from", "value", sharegpt_roles, "system, human, gpt or tool"},
};

/* Chat: BOS, then per message "<|role|>\n" content "\n", then EOS. Learnt:
 * assistant contents, and the EOS when the last message is the assistant's
 * (everything but BOS with train_on_inputs). */
static int rec_chat(const rctx_t *c, const cJSON *o, tokbuf_t *b)
{
    int sh = cJSON_GetObjectItemCaseSensitive(o, "messages")        ? 0
             : cJSON_GetObjectItemCaseSensitive(o, "conversations") ? 1
                                                                    : 0;
    const char *lf = chat_shapes[sh].list, *rf = chat_shapes[sh].role,
               *cf = chat_shapes[sh].content;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, lf);
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        REC_ERR(c, "field '%s': expected a non-empty array", lf);
        return -1;
    }
    if (tb_push(b, tokenizer_bos(c->tok), FT_IGNORE_INDEX) < 0)
        goto oom;
    int i = 0;
    bool any_assistant = false, last_assistant = false;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, rf);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, cf);
        if (!cJSON_IsObject(m)) {
            REC_ERR(c, "field '%s[%d]': expected an object", lf, i);
            return -1;
        }
        if (!cJSON_IsString(role)) {
            REC_ERR(c, "field '%s[%d].%s': expected a string", lf, i, rf);
            return -1;
        }
        const role_name_t *rn = chat_shapes[sh].roles;
        while (rn->name && strcmp(rn->name, role->valuestring) != 0)
            rn++;
        if (!rn->name) {
            REC_ERR(c, "field '%s[%d].%s': unknown role '%s' (%s)", lf, i, rf,
                    ft_sanitize(role->valuestring, 32), chat_shapes[sh].role_help);
            return -1;
        }
        int k = rn->role;
        if (!cJSON_IsString(content)) {
            REC_ERR(c, "field '%s[%d].%s': expected a string", lf, i, cf);
            return -1;
        }
        bool asst = k == 2;
        char head[32];
        snprintf(head, sizeof head, "<|%s|>\n", canon_roles[k]);
        if (push_text(c, b, head, c->train_on_inputs, i > 0) < 0 ||
            push_text(c, b, content->valuestring, asst || c->train_on_inputs, true) < 0 ||
            push_text(c, b, "\n", c->train_on_inputs, true) < 0)
            return -1;
        any_assistant = any_assistant || asst;
        last_assistant = asst;
        i++;
    }
    if (!any_assistant && !c->train_on_inputs) {
        REC_ERR(c, "field '%s': no assistant message, nothing to learn", lf);
        return -1;
    }
    int eos = tokenizer_eos(c->tok);
    if (tb_push(b, eos, last_assistant || c->train_on_inputs ? eos : FT_IGNORE_INDEX) < 0)
        goto oom;
    return 0;
oom:
    ft_err_set(c->err, FT_EINTERNAL, "out of memory");
    return -1;
}

static int rec_tokenized(const rctx_t *c, const cJSON *o, tokbuf_t *b)
{
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "input_ids");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(o, "labels");
    if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) == 0) {
        REC_ERR(c, "field 'input_ids': expected a non-empty array of token ids");
        return -1;
    }
    int n = cJSON_GetArraySize(ids);
    if (labels && !cJSON_IsNull(labels) &&
        (!cJSON_IsArray(labels) || cJSON_GetArraySize(labels) != n)) {
        REC_ERR(c, "field 'labels': expected an array as long as 'input_ids' (%d)", n);
        return -1;
    }
    if (labels && cJSON_IsNull(labels))
        labels = NULL;
    if (tb_reserve(b, n) < 0) {
        ft_err_set(c->err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    const cJSON *e, *l = labels ? labels->child : NULL;
    int i = 0;
    cJSON_ArrayForEach(e, ids)
    {
        double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!cJSON_IsNumber(e) || d != (double)(int64_t)d || d < 0 || d >= c->vocab) {
            REC_ERR(c, "field 'input_ids[%d]': expected a token id in [0, %d)", i, c->vocab);
            return -1;
        }
        int32_t lab = (int32_t)d;
        if (l) {
            double ld = cJSON_IsNumber(l) ? l->valuedouble : -1;
            if (!cJSON_IsNumber(l) || ld != (double)(int64_t)ld ||
                (ld != FT_IGNORE_INDEX && (ld < 0 || ld >= c->vocab))) {
                REC_ERR(c, "field 'labels[%d]': expected -100 or a token id in [0, %d)", i,
                        c->vocab);
                return -1;
            }
            lab = (int32_t)ld;
            l = l->next;
        }
        b->tok[b->n] = (int32_t)d;
        b->lab[b->n++] = lab;
        i++;
    }
    return 0;
}

typedef int (*rec_fn)(const rctx_t *, const cJSON *, tokbuf_t *);

/* One row per format, in ft_data_format_t order: the key that identifies it
 * (for auto-detection) and its parser. */
static const struct {
    ft_data_format_t fmt; /* format */
    const char *key;      /* field whose presence selects it under "auto" */
    rec_fn parse;         /* record -> tokens */
    bool needs_tokenizer; /* text formats */
} formats[] = {
    {FT_DATA_TOKENIZED, "input_ids", rec_tokenized, false},
    {FT_DATA_CHAT, "messages", rec_chat, true},
    {FT_DATA_CHAT, "conversations", rec_chat, true},
    {FT_DATA_ALPACA, "instruction", rec_alpaca, true},
    {FT_DATA_COMPLETION, "prompt", rec_completion, true},
    {FT_DATA_TEXT, "text", rec_text, true},
};
#define N_FORMATS (sizeof formats / sizeof formats[0])

/* Reads one JSONL file, appending its records. */
static int load_file(const char *path, ft_data_format_t fmt, rctx_t *c, tokbuf_t *b,
                     reclist_t *recs)
{
    int rc = -1;
    char *line = NULL;
    size_t cap = 0;
    FILE *f = fopen(path, "r");
    c->file = path;
    c->line = 0;
    if (!f) {
        ft_err_set(c->err, FT_ENOTFOUND, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    ssize_t len;
    int64_t n_before = recs->n;
    while ((len = getline(&line, &cap, f)) >= 0) {
        c->line++;
        if (len > LINE_MAX_BYTES) {
            REC_ERR(c, "line longer than %d bytes", LINE_MAX_BYTES);
            goto out;
        }
        size_t k = 0;
        while (k < (size_t)len &&
               (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' || line[k] == '\n'))
            k++;
        if (k == (size_t)len)
            continue; /* blank line */
        ft_err_t jerr = {0};
        cJSON *o = ft_json_parse(line, (size_t)len, &jerr);
        if (!o) {
            REC_ERR(c, "bad JSON: %s", jerr.msg);
            goto out;
        }
        if (!cJSON_IsObject(o)) {
            REC_ERR(c, "expected a JSON object");
            cJSON_Delete(o);
            goto out;
        }
        size_t fi = N_FORMATS;
        for (size_t i = 0; i < N_FORMATS; i++) {
            if (fmt == FT_DATA_AUTO ? cJSON_GetObjectItemCaseSensitive(o, formats[i].key) != NULL
                                    : fmt == formats[i].fmt) {
                fi = i;
                break;
            }
        }
        if (fi == N_FORMATS) {
            REC_ERR(c, "cannot tell the record's format: expected a field 'text', 'prompt' + "
                       "'completion', 'instruction' + 'output', 'messages' or 'input_ids'");
            cJSON_Delete(o);
            goto out;
        }
        if (formats[fi].needs_tokenizer && !c->tok) {
            REC_ERR(c,
                    "%s records need a tokenizer and the model has none that ft reads; "
                    "give input_ids instead",
                    ft_data_format_names[formats[fi].fmt]);
            cJSON_Delete(o);
            goto out;
        }
        int64_t start = b->n;
        int prc = formats[fi].parse(c, o, b);
        cJSON_Delete(o);
        if (prc < 0)
            goto out;
        if (rl_push(recs, (rec_t){start, b->n - start}) < 0) {
            ft_err_set(c->err, FT_EINTERNAL, "out of memory reading '%s'", path);
            goto out;
        }
    }
    if (ferror(f)) {
        ft_err_set(c->err, FT_EINTERNAL, "cannot read '%s': %s", path, strerror(errno));
        goto out;
    }
    if (recs->n == n_before) {
        ft_err_set(c->err, FT_EBADFIELD, "'%s': no records", path);
        goto out;
    }
    rc = 0;
out:
    free(line);
    fclose(f);
    return rc;
}

static int rows_grow(rows_t *r, int64_t *cap, int T1)
{
    if (r->n < *cap)
        return 0;
    int64_t nc = *cap ? 2 * *cap : 64;
    int32_t *t = realloc(r->tok, (size_t)nc * (size_t)T1 * sizeof *t);
    if (!t)
        return -1;
    r->tok = t;
    int32_t *l = realloc(r->lab, (size_t)nc * (size_t)T1 * sizeof *l);
    if (!l)
        return -1;
    r->lab = l;
    *cap = nc;
    return 0;
}

/* Whether row r (T+1 labels) has a target: a label at positions 1..T. */
static bool row_has_target(const rows_t *r, int64_t i, int T)
{
    const int32_t *l = r->lab + i * (T + 1);
    for (int j = 1; j <= T; j++)
        if (l[j] != FT_IGNORE_INDEX)
            return true;
    return false;
}

/* Builds rows from the records idx[0..n) of b (in that order). Rows without
 * any target (a record whose labels are all -100, or that only its cut-off
 * part would have) are dropped: they cost compute and carry no loss. */
static int build_rows(const tokbuf_t *b, const reclist_t *recs, const int64_t *idx, int64_t n,
                      bool packing, int T, int32_t pad, rows_t *out)
{
    int T1 = T + 1;
    int64_t cap = 0, fill = 0;
    memset(out, 0, sizeof *out);
    for (int64_t i = 0; i < n; i++) {
        const rec_t *r = &recs->r[idx[i]];
        if (!packing) {
            if (rows_grow(out, &cap, T1) < 0)
                return -1;
            int32_t *t = out->tok + out->n * T1, *l = out->lab + out->n * T1;
            int64_t k = r->len < T1 ? r->len : T1;
            memcpy(t, b->tok + r->start, (size_t)k * sizeof *t);
            memcpy(l, b->lab + r->start, (size_t)k * sizeof *l);
            for (int64_t j = k; j < T1; j++) {
                t[j] = pad;
                l[j] = FT_IGNORE_INDEX;
            }
            if (row_has_target(out, out->n, T))
                out->n++;
            continue;
        }
        for (int64_t j = 0; j < r->len; j++) {
            if (fill == 0 && rows_grow(out, &cap, T1) < 0)
                return -1;
            out->tok[out->n * T1 + fill] = b->tok[r->start + j];
            out->lab[out->n * T1 + fill] = b->lab[r->start + j];
            if (++fill == T1) {
                if (row_has_target(out, out->n, T))
                    out->n++;
                fill = 0;
            }
        }
    }
    if (packing && fill > 0) {
        /* the last, partial row, padded */
        for (int64_t j = fill; j < T1; j++) {
            out->tok[out->n * T1 + j] = pad;
            out->lab[out->n * T1 + j] = FT_IGNORE_INDEX;
        }
        if (row_has_target(out, out->n, T))
            out->n++;
    }
    return 0;
}

static void rows_free(rows_t *r)
{
    free(r->tok);
    free(r->lab);
    memset(r, 0, sizeof *r);
}

data_t *data_open(const ft_trainspec_t *spec, const tokenizer_t *tok, int T, ft_err_t *err)
{
    data_t *d = NULL;
    tokbuf_t tb = {0}, eb = {0};
    reclist_t tr = {0}, er = {0};
    int64_t *idx = NULL, *eidx = NULL;
    llama_config_t cfg;
    bool ok = false; /* every step done: keep d */

    if (T < 1 || T > (1 << 24)) {
        ft_err_set(err, FT_EBADFIELD, "sequence length %d out of range", T);
        return NULL;
    }
    if (llama_config_load(spec->base_model, &cfg, err) < 0)
        return NULL;
    if (T > cfg.max_position_embeddings) {
        ft_err_set(err, FT_EBADFIELD,
                   "spec.train.sequence_len: %d is more than the "
                   "max_position_embeddings (%d) of '%s'",
                   T, cfg.max_position_embeddings, spec->base_model);
        return NULL;
    }
    rctx_t c = {
        .tok = tok, .vocab = cfg.vocab_size, .train_on_inputs = spec->train_on_inputs, .err = err};
    if (tok && tokenizer_vocab_size(tok) > cfg.vocab_size) {
        ft_err_set(err, FT_EBADFIELD,
                   "the tokenizer of '%s' has %d ids but the model's "
                   "vocab_size is %d",
                   spec->base_model, tokenizer_vocab_size(tok), cfg.vocab_size);
        return NULL;
    }
    int32_t pad = cfg.pad_token_id >= 0   ? cfg.pad_token_id
                  : cfg.eos_token_id >= 0 ? cfg.eos_token_id
                                          : 0;

    if (spec->n_datasets < 1) {
        ft_err_set(err, FT_EMISSING, "spec.train.datasets: no dataset");
        return NULL;
    }
    for (int i = 0; i < spec->n_datasets; i++)
        if (load_file(spec->datasets[i].path, spec->datasets[i].format, &c, &tb, &tr) < 0)
            goto fail;
    if (spec->eval_path[0] && load_file(spec->eval_path, FT_DATA_AUTO, &c, &eb, &er) < 0)
        goto fail;

    d = calloc(1, sizeof *d);
    idx = malloc((size_t)tr.n * sizeof *idx);
    if (!d || !idx)
        goto oom;
    d->T = T;
    d->seed = spec->seed;
    d->perm_epoch = -1;

    /* Split: a seeded choice of records goes to eval, the rest keep file order. */
    int64_t n_eval = 0;
    if (!spec->eval_path[0] && spec->val_set_size > 0) {
        n_eval = (int64_t)(spec->val_set_size * (double)tr.n + 0.5);
        if (n_eval < 1)
            n_eval = 1;
        if (n_eval >= tr.n) {
            ft_err_set(err, FT_EBADFIELD,
                       "spec.train.val_set_size: %g of %lld records leaves "
                       "no training records",
                       spec->val_set_size, (long long)tr.n);
            goto fail;
        }
        int64_t *perm = malloc((size_t)tr.n * sizeof *perm);
        char *is_eval = calloc((size_t)tr.n, 1);
        eidx = malloc((size_t)n_eval * sizeof *eidx);
        if (!perm || !is_eval || !eidx) {
            free(perm);
            free(is_eval);
            goto oom;
        }
        permute(perm, tr.n, spec->seed ^ 0x5eed0fe7a1ull);
        for (int64_t i = 0; i < n_eval; i++)
            is_eval[perm[i]] = 1;
        int64_t ne = 0, nt = 0;
        for (int64_t i = 0; i < tr.n; i++) {
            if (is_eval[i])
                eidx[ne++] = i;
            else
                idx[nt++] = i;
        }
        free(perm);
        free(is_eval);
        if (build_rows(&tb, &tr, idx, nt, spec->sample_packing, T, pad, &d->train) < 0 ||
            build_rows(&tb, &tr, eidx, ne, spec->sample_packing, T, pad, &d->eval) < 0)
            goto oom;
    } else {
        for (int64_t i = 0; i < tr.n; i++)
            idx[i] = i;
        if (build_rows(&tb, &tr, idx, tr.n, spec->sample_packing, T, pad, &d->train) < 0)
            goto oom;
        if (er.n > 0) {
            eidx = malloc((size_t)er.n * sizeof *eidx);
            if (!eidx)
                goto oom;
            for (int64_t i = 0; i < er.n; i++)
                eidx[i] = i;
            if (build_rows(&eb, &er, eidx, er.n, spec->sample_packing, T, pad, &d->eval) < 0)
                goto oom;
        }
    }
    if (d->train.n == 0) {
        ft_err_set(err, FT_EBADFIELD,
                   "the training data gives no row of %d tokens with a target (%lld "
                   "tokens in %lld records)",
                   T + 1, (long long)tb.n, (long long)tr.n);
        goto fail;
    }
    d->perm = malloc((size_t)d->train.n * sizeof *d->perm);
    if (!d->perm)
        goto oom;
    ok = true;
    goto out;
oom:
    ft_err_set(err, FT_EINTERNAL, "out of memory building the training rows");
fail:
out:
    free(idx);
    free(eidx);
    free(tb.tok);
    free(tb.lab);
    free(eb.tok);
    free(eb.lab);
    free(tr.r);
    free(er.r);
    if (!ok)
        data_destroy(&d);
    return d;
}

void data_destroy(data_t **pd)
{
    data_t *d = pd ? *pd : NULL;
    if (!d)
        return;
    rows_free(&d->train);
    rows_free(&d->eval);
    free(d->perm);
    free(d);
    *pd = NULL;
}

int64_t data_n_train_rows(const data_t *d)
{
    return d->train.n;
}

int64_t data_n_eval_rows(const data_t *d)
{
    return d->eval.n;
}

static void row_out(const rows_t *r, int64_t i, int T, int32_t *inputs, int32_t *targets)
{
    const int32_t *t = r->tok + i * (T + 1), *l = r->lab + i * (T + 1);
    memcpy(inputs, t, (size_t)T * sizeof *inputs);
    memcpy(targets, l + 1, (size_t)T * sizeof *targets);
}

void data_next_batch(data_t *d, data_pos_t *pos, int B, int rank, int world, int32_t *inputs,
                     int32_t *targets)
{
    int64_t n = d->train.n;
    for (int k = 0; k < B * world; k++) {
        if (pos->index >= n) {
            pos->epoch++;
            pos->index = 0;
        }
        if (d->perm_epoch != pos->epoch) {
            permute(d->perm, n, d->seed + (uint64_t)pos->epoch);
            d->perm_epoch = pos->epoch;
        }
        int64_t row = d->perm[pos->index++];
        if (k / B == rank) {
            int j = k % B;
            row_out(&d->train, row, d->T, inputs + (int64_t)j * d->T, targets + (int64_t)j * d->T);
        }
    }
    if (pos->index >= n) {
        pos->epoch++;
        pos->index = 0;
    }
}

void data_eval_row(const data_t *d, int64_t i, int32_t *inputs, int32_t *targets)
{
    row_out(&d->eval, i, d->T, inputs, targets);
}

int64_t data_count_targets(const int32_t *targets, int64_t n)
{
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        c += targets[i] != FT_IGNORE_INDEX;
    return c;
}
