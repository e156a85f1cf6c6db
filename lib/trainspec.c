/*
 * trainspec.c: the "train" section of a lora job spec (ft_trainspec_t in
 * include/ft/jobspec.h; every key documented in docs/job-spec.md).
 *
 * Invariants after a successful ft_trainspec_parse: every number lies within
 * the bounds of its row in train_keys, base_model / output_dir are non-empty,
 * there is at least one dataset, target_mask is non-zero, and either max_steps
 * > 0 or num_epochs > 0. Unknown keys are errors that name the key.
 * Cost: O(size of the section); no file is touched (paths are checked by the
 * trainer when it opens them).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "ft/jobspec.h"
#include "ft/json.h"

#define CTX "spec.train"

const char *const ft_target_module_names[FT_N_TARGET_MODULES] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};

/* Indexed by ft_data_format_t; NULL-terminated for lookups. */
const char *const ft_data_format_names[] = {
    "auto", "text", "completion", "alpaca", "chat", "tokenized", NULL,
};

static const char *const lr_sched_names[] = {"constant", "linear", "cosine", NULL};

/* Indexed by ft_dtype_t; NULL-terminated for lookups. */
const char *const ft_dtype_names[] = {"auto", "fp32", "bf16", NULL};

/* Key kinds of the train section. */
typedef enum {
    TK_STR,     /* fixed char[FT_PATH_MAX] field */
    TK_INT,     /* int field */
    TK_INT64,   /* int64_t field */
    TK_NUM,     /* double field */
    TK_BOOL,    /* bool field */
    TK_SPECIAL, /* parsed by its own code below */
} tkind_t;

typedef struct {
    const char *name; /* key in the spec */
    tkind_t kind;     /* how it is read */
    size_t off;       /* offsetof into ft_trainspec_t */
    bool required;    /* absent is an error */
    double min, max;  /* inclusive bounds for numbers */
} tkey_t;

#define OFF(f) offsetof(ft_trainspec_t, f)

/* One row per key; the order is the order of ft_trainspec_to_json. */
static const tkey_t train_keys[] = {
    {"base_model", TK_STR, OFF(base_model), true, 0, 0},
    {"datasets", TK_SPECIAL, 0, true, 0, 0},
    {"eval_path", TK_STR, OFF(eval_path), false, 0, 0},
    {"val_set_size", TK_NUM, OFF(val_set_size), false, 0.0, 0.5},
    {"output_dir", TK_STR, OFF(output_dir), true, 0, 0},
    {"lora_r", TK_INT, OFF(lora_r), false, 1, 1024},
    {"lora_alpha", TK_NUM, OFF(lora_alpha), false, 1e-6, 1e6},
    {"lora_dropout", TK_NUM, OFF(lora_dropout), false, 0.0, 0.9},
    {"use_rslora", TK_BOOL, OFF(use_rslora), false, 0, 0},
    {"target_modules", TK_SPECIAL, 0, false, 0, 0},
    {"sequence_len", TK_INT, OFF(sequence_len), false, 8, 131072},
    {"micro_batch_size", TK_INT, OFF(micro_batch_size), false, 1, 4096},
    {"gradient_accumulation_steps", TK_INT, OFF(gradient_accumulation_steps), false, 1, 65536},
    {"max_steps", TK_INT64, OFF(max_steps), false, 0, 1e9},
    {"num_epochs", TK_NUM, OFF(num_epochs), false, 0.0, 1000.0},
    {"sample_packing", TK_BOOL, OFF(sample_packing), false, 0, 0},
    {"train_on_inputs", TK_BOOL, OFF(train_on_inputs), false, 0, 0},
    {"learning_rate", TK_NUM, OFF(learning_rate), false, 0.0, 10.0},
    {"lr_scheduler", TK_SPECIAL, 0, false, 0, 0},
    {"warmup_steps", TK_INT64, OFF(warmup_steps), false, 0, 1e9},
    {"warmup_ratio", TK_NUM, OFF(warmup_ratio), false, 0.0, 1.0},
    {"weight_decay", TK_NUM, OFF(weight_decay), false, 0.0, 10.0},
    {"adam_beta1", TK_NUM, OFF(adam_beta1), false, 0.0, 0.9999},
    {"adam_beta2", TK_NUM, OFF(adam_beta2), false, 0.0, 0.999999},
    {"adam_epsilon", TK_NUM, OFF(adam_epsilon), false, 1e-12, 1.0},
    {"max_grad_norm", TK_NUM, OFF(max_grad_norm), false, 0.0, 1e6},
    {"seed", TK_SPECIAL, 0, false, 0, 0},
    {"eval_steps", TK_INT64, OFF(eval_steps), false, 0, 1e9},
    {"save_steps", TK_INT64, OFF(save_steps), false, 0, 1e9},
    {"logging_steps", TK_INT64, OFF(logging_steps), false, 1, 1e9},
    {"threads", TK_INT, OFF(threads), false, 0, 1024},
    {"dtype", TK_SPECIAL, 0, false, 0, 0},
};
#define N_TRAIN_KEYS (sizeof train_keys / sizeof train_keys[0])

/* Largest seed a JSON number carries exactly (2^53 - 1). */
#define SEED_MAX 9007199254740991LL

void ft_trainspec_defaults(ft_trainspec_t *t)
{
    memset(t, 0, sizeof *t);
    t->val_set_size = 0.0;
    t->lora_r = 8;
    t->lora_alpha = 16.0;
    t->lora_dropout = 0.0;
    t->use_rslora = false;
    t->target_mask = (1u << FT_N_TARGET_MODULES) - 1;
    t->sequence_len = 256;
    t->micro_batch_size = 4;
    t->gradient_accumulation_steps = 1;
    t->max_steps = 0;
    t->num_epochs = 1.0;
    t->sample_packing = true;
    t->train_on_inputs = false;
    t->learning_rate = 2e-4;
    t->lr_scheduler = FT_LR_COSINE;
    t->warmup_steps = 0;
    t->warmup_ratio = 0.0;
    t->weight_decay = 0.0;
    t->adam_beta1 = 0.9;
    t->adam_beta2 = 0.999;
    t->adam_epsilon = 1e-8;
    t->max_grad_norm = 1.0;
    t->seed = 42;
    t->eval_steps = 0;
    t->save_steps = 0;
    t->logging_steps = 1;
    t->threads = 0;
    t->dtype = FT_DTYPE_AUTO;
}

static int name_index(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

static int parse_format(const cJSON *v, const char *ctx, ft_data_format_t *out, ft_err_t *err)
{
    if (!cJSON_IsString(v)) {
        ft_err_set(err, FT_EBADFIELD, "%s.type: expected a string", ctx);
        return -1;
    }
    int i = name_index(ft_data_format_names, v->valuestring);
    if (i < 0) {
        ft_err_set(err, FT_EBADFIELD,
                   "%s.type: unknown format '%s' (expected auto, text, completion, alpaca, "
                   "chat or tokenized)",
                   ctx, ft_sanitize(v->valuestring, 40));
        return -1;
    }
    *out = (ft_data_format_t)i;
    return 0;
}

static int parse_path(const char *s, const char *what, char *dst, ft_err_t *err)
{
    if (s[0] == '\0') {
        ft_err_set(err, FT_EBADFIELD, "%s: must not be empty", what);
        return -1;
    }
    if (strlen(s) >= FT_PATH_MAX) {
        ft_err_set(err, FT_ETOOLARGE, "%s: longer than %d bytes", what, FT_PATH_MAX - 1);
        return -1;
    }
    ft_strlcpy(dst, s, FT_PATH_MAX);
    return 0;
}

static int parse_datasets(const cJSON *v, ft_trainspec_t *t, ft_err_t *err)
{
    static const char *const ds_keys[] = {"path", "type", NULL};
    if (!cJSON_IsArray(v)) {
        ft_err_set(err, FT_EBADFIELD,
                   CTX ".datasets: expected an array of {path, type} "
                       "objects or paths");
        return -1;
    }
    int n = cJSON_GetArraySize(v);
    if (n < 1) {
        ft_err_set(err, FT_EBADFIELD, CTX ".datasets: expected at least one dataset");
        return -1;
    }
    if (n > FT_MAX_DATASETS) {
        ft_err_set(err, FT_ETOOLARGE, CTX ".datasets: %d datasets, at most %d allowed", n,
                   FT_MAX_DATASETS);
        return -1;
    }
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        char ctx[64];
        snprintf(ctx, sizeof ctx, CTX ".datasets[%d]", i);
        ft_dataset_t *ds = &t->datasets[i];
        ds->format = FT_DATA_AUTO;
        if (cJSON_IsString(e)) {
            if (parse_path(e->valuestring, ctx, ds->path, err) < 0)
                return -1;
        } else if (cJSON_IsObject(e)) {
            const char *path = NULL;
            char pctx[80];
            if (ft_json_check_keys(e, ctx, ds_keys, err) < 0)
                return -1;
            if (ft_json_get_str(e, ctx, "path", true, FT_PATH_MAX - 1, &path, err) < 0)
                return -1;
            snprintf(pctx, sizeof pctx, "%s.path", ctx);
            if (parse_path(path, pctx, ds->path, err) < 0)
                return -1;
            const cJSON *ty = cJSON_GetObjectItemCaseSensitive(e, "type");
            if (ty && parse_format(ty, ctx, &ds->format, err) < 0)
                return -1;
        } else {
            ft_err_set(err, FT_EBADFIELD, "%s: expected a path or a {path, type} object", ctx);
            return -1;
        }
        i++;
    }
    t->n_datasets = n;
    return 0;
}

static int parse_targets(const cJSON *v, ft_trainspec_t *t, ft_err_t *err)
{
    if (cJSON_IsString(v)) {
        if (strcmp(v->valuestring, "all-linear") != 0) {
            ft_err_set(err, FT_EBADFIELD,
                       CTX ".target_modules: expected \"all-linear\" or a "
                           "list of module names, got '%s'",
                       ft_sanitize(v->valuestring, 40));
            return -1;
        }
        t->target_mask = (1u << FT_N_TARGET_MODULES) - 1;
        return 0;
    }
    if (!cJSON_IsArray(v)) {
        ft_err_set(err, FT_EBADFIELD,
                   CTX ".target_modules: expected \"all-linear\" or a list of module names");
        return -1;
    }
    uint32_t mask = 0;
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsString(e)) {
            ft_err_set(err, FT_EBADFIELD, CTX ".target_modules[%d]: expected a string", i);
            return -1;
        }
        int m = -1;
        for (int k = 0; k < FT_N_TARGET_MODULES; k++)
            if (strcmp(e->valuestring, ft_target_module_names[k]) == 0)
                m = k;
        if (m < 0) {
            ft_err_set(err, FT_EBADFIELD,
                       CTX ".target_modules[%d]: unknown module '%s' (expected q_proj, k_proj, "
                           "v_proj, o_proj, gate_proj, up_proj or down_proj)",
                       i, ft_sanitize(e->valuestring, 40));
            return -1;
        }
        if (mask & (1u << m)) {
            ft_err_set(err, FT_EBADFIELD, CTX ".target_modules[%d]: '%s' listed twice", i,
                       ft_target_module_names[m]);
            return -1;
        }
        mask |= 1u << m;
        i++;
    }
    if (mask == 0) {
        ft_err_set(err, FT_EBADFIELD, CTX ".target_modules: expected at least one module");
        return -1;
    }
    t->target_mask = mask;
    return 0;
}

static int parse_special(const cJSON *train, const tkey_t *k, ft_trainspec_t *t, ft_err_t *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(train, k->name);
    if (!v) {
        if (k->required) {
            ft_err_set(err, FT_EMISSING, CTX ".%s: required field missing", k->name);
            return -1;
        }
        return 0;
    }
    if (strcmp(k->name, "datasets") == 0)
        return parse_datasets(v, t, err);
    if (strcmp(k->name, "target_modules") == 0)
        return parse_targets(v, t, err);
    if (strcmp(k->name, "lr_scheduler") == 0) {
        int i = cJSON_IsString(v) ? name_index(lr_sched_names, v->valuestring) : -1;
        if (i < 0) {
            ft_err_set(err, FT_EBADFIELD,
                       CTX ".lr_scheduler: expected \"constant\", \"linear\" or \"cosine\"");
            return -1;
        }
        t->lr_scheduler = (ft_lr_sched_t)i;
        return 0;
    }
    if (strcmp(k->name, "dtype") == 0) {
        int i = cJSON_IsString(v) ? name_index(ft_dtype_names, v->valuestring) : -1;
        if (i < 0) {
            ft_err_set(err, FT_EBADFIELD,
                       CTX ".dtype: expected \"auto\", \"fp32\" or \"bf16\"%s%s%s",
                       cJSON_IsString(v) ? ", got '" : "",
                       cJSON_IsString(v) ? ft_sanitize(v->valuestring, 40) : "",
                       cJSON_IsString(v) ? "'" : "");
            return -1;
        }
        t->dtype = (ft_dtype_t)i;
        return 0;
    }
    if (strcmp(k->name, "seed") == 0) {
        int64_t s = 0;
        if (ft_json_get_int(train, CTX, "seed", false, 0, SEED_MAX, &s, err) < 0)
            return -1;
        t->seed = (uint64_t)s;
        return 0;
    }
    ft_err_set(err, FT_EINTERNAL, CTX ".%s: no parser", k->name);
    return -1;
}

int ft_trainspec_parse(const cJSON *train, ft_trainspec_t *out, ft_err_t *err)
{
    const char *allowed[N_TRAIN_KEYS + 1];
    ft_trainspec_t t;
    ft_trainspec_defaults(&t);

    if (!cJSON_IsObject(train)) {
        ft_err_set(err, FT_EBADFIELD, CTX ": expected an object");
        return -1;
    }
    for (size_t i = 0; i < N_TRAIN_KEYS; i++)
        allowed[i] = train_keys[i].name;
    allowed[N_TRAIN_KEYS] = NULL;
    if (ft_json_check_keys(train, CTX, allowed, err) < 0)
        return -1;

    for (size_t i = 0; i < N_TRAIN_KEYS; i++) {
        const tkey_t *k = &train_keys[i];
        char *base = (char *)&t;
        int rc = 0;
        switch (k->kind) {
        case TK_STR: {
            const char *s = NULL;
            char what[64];
            rc = ft_json_get_str(train, CTX, k->name, k->required, FT_PATH_MAX - 1, &s, err);
            snprintf(what, sizeof what, CTX ".%s", k->name);
            if (rc == 0 && parse_path(s, what, base + k->off, err) < 0)
                rc = -1;
            break;
        }
        case TK_INT: {
            int64_t x = 0;
            rc = ft_json_get_int(train, CTX, k->name, k->required, (int64_t)k->min, (int64_t)k->max,
                                 &x, err);
            if (rc == 0)
                *(int *)(void *)(base + k->off) = (int)x;
            break;
        }
        case TK_INT64: {
            int64_t x = 0;
            rc = ft_json_get_int(train, CTX, k->name, k->required, (int64_t)k->min, (int64_t)k->max,
                                 &x, err);
            if (rc == 0)
                *(int64_t *)(void *)(base + k->off) = x;
            break;
        }
        case TK_NUM: {
            double x = 0;
            rc = ft_json_get_num(train, CTX, k->name, k->required, k->min, k->max, &x, err);
            if (rc == 0)
                *(double *)(void *)(base + k->off) = x;
            break;
        }
        case TK_BOOL: {
            bool x = false;
            rc = ft_json_get_bool(train, CTX, k->name, k->required, &x, err);
            if (rc == 0)
                *(bool *)(base + k->off) = x;
            break;
        }
        case TK_SPECIAL:
            rc = parse_special(train, k, &t, err);
            break;
        }
        if (rc < 0)
            return -1;
    }

    /* Cross-field rules. */
    if (t.eval_path[0] && t.val_set_size > 0) {
        ft_err_set(err, FT_EBADFIELD,
                   CTX ".val_set_size: cannot be used together with "
                       "'eval_path' (choose one source of eval data)");
        return -1;
    }
    if (t.max_steps == 0 && !(t.num_epochs > 0)) {
        ft_err_set(err, FT_EBADFIELD, CTX ".num_epochs: must be > 0 when 'max_steps' is 0");
        return -1;
    }
    *out = t;
    return 0;
}

cJSON *ft_trainspec_to_json(const ft_trainspec_t *t)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    const char *base = (const char *)t;
    for (size_t i = 0; i < N_TRAIN_KEYS; i++) {
        const tkey_t *k = &train_keys[i];
        cJSON *v = NULL;
        switch (k->kind) {
        case TK_STR:
            v = cJSON_CreateString(base + k->off);
            break;
        case TK_INT:
            v = cJSON_CreateNumber(*(const int *)(const void *)(base + k->off));
            break;
        case TK_INT64:
            v = cJSON_CreateNumber((double)*(const int64_t *)(const void *)(base + k->off));
            break;
        case TK_NUM:
            v = cJSON_CreateNumber(*(const double *)(const void *)(base + k->off));
            break;
        case TK_BOOL:
            v = cJSON_CreateBool(*(const bool *)(base + k->off));
            break;
        case TK_SPECIAL:
            if (strcmp(k->name, "datasets") == 0) {
                v = cJSON_CreateArray();
                for (int d = 0; v && d < t->n_datasets && d < FT_MAX_DATASETS; d++) {
                    cJSON *ds = cJSON_CreateObject();
                    if (!ds) {
                        cJSON_Delete(v);
                        v = NULL;
                        break;
                    }
                    cJSON_AddItemToArray(v, ds);
                    int f = (int)t->datasets[d].format;
                    if (f < 0 || f > FT_DATA_TOKENIZED)
                        f = FT_DATA_AUTO;
                    if (!cJSON_AddStringToObject(ds, "path", t->datasets[d].path) ||
                        !cJSON_AddStringToObject(ds, "type", ft_data_format_names[f])) {
                        cJSON_Delete(v);
                        v = NULL;
                    }
                }
            } else if (strcmp(k->name, "target_modules") == 0) {
                v = cJSON_CreateArray();
                for (int m = 0; v && m < FT_N_TARGET_MODULES; m++) {
                    if (!(t->target_mask & (1u << m)))
                        continue;
                    cJSON *s = cJSON_CreateString(ft_target_module_names[m]);
                    if (!s) {
                        cJSON_Delete(v);
                        v = NULL;
                        break;
                    }
                    cJSON_AddItemToArray(v, s);
                }
            } else if (strcmp(k->name, "lr_scheduler") == 0) {
                int s = (int)t->lr_scheduler;
                v = cJSON_CreateString(lr_sched_names[s >= 0 && s <= FT_LR_COSINE ? s : 0]);
            } else if (strcmp(k->name, "seed") == 0) {
                v = cJSON_CreateNumber((double)t->seed);
            } else if (strcmp(k->name, "dtype") == 0) {
                int d = (int)t->dtype;
                v = cJSON_CreateString(ft_dtype_names[d >= 0 && d <= FT_DTYPE_BF16 ? d : 0]);
            }
            break;
        }
        if (!v) {
            cJSON_Delete(o);
            return NULL;
        }
        cJSON_AddItemToObject(o, k->name, v);
    }
    return o;
}
