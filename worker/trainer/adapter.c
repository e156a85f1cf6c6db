/*
 * adapter.c: PEFT adapter folders and training checkpoints (adapter.h has the
 * layout of both and the atomicity rule).
 *
 * Invariants: adapter_config.json carries only keys that every PEFT release
 * since 0.6 understands (unknown keys make older releases raise TypeError);
 * tensors are F32 with PEFT's names and shapes (A (r, in), B (out, r)). A
 * checkpoint folder named checkpoint-N is complete: it only ever appears by
 * rename(2) of a fully written and fsynced temporary folder.
 * Cost: O(LoRA parameters) for every write and read; pruning is O(entries of
 * output_dir).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter.h"
#include "ft/json.h"

#define STATE_NAME "trainer_state.json"
#define OPTIM_NAME "optimizer.safetensors"
#define STATE_FORMAT "ft-checkpoint-1"
#define JSON_MAX_BYTES (256 * 1024 * 1024)

/* Module path of each projection inside a layer, in ft_target_module_t order. */
static const char *const module_paths[FT_N_TARGET_MODULES] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

void adapter_module_dims(const llama_config_t *c, int m, int *in, int *out)
{
    int C = c->hidden_size, I = c->intermediate_size;
    int Hq = c->n_heads * c->head_dim, Hkv = c->n_kv_heads * c->head_dim;
    /* in, out per module, in ft_target_module_t order */
    const int dims[FT_N_TARGET_MODULES][2] = {
        {C, Hq}, {C, Hkv}, {C, Hkv}, {Hq, C}, {C, I}, {C, I}, {I, C},
    };
    *in = dims[m][0];
    *out = dims[m][1];
}

void adapter_tensor_name(char *buf, size_t len, int l, int m, char which, const char *suffix)
{
    snprintf(buf, len, "base_model.model.model.layers.%d.%s.lora_%c.weight%s", l, module_paths[m],
             which, suffix ? suffix : "");
}

int64_t adapter_n_params(const llama_config_t *cfg, int r, uint32_t target_mask)
{
    int64_t n = 0;
    for (int m = 0; m < FT_N_TARGET_MODULES; m++) {
        if (!(target_mask & (1u << m)))
            continue;
        int in, out;
        adapter_module_dims(cfg, m, &in, &out);
        n += (int64_t)r * (in + out);
    }
    return n * cfg->n_layers;
}

int adapter_add_tensors(st_writer_t *w, const adapter_t *ad, const char *suffix, ft_err_t *err)
{
    for (int l = 0; l < ad->cfg->n_layers; l++) {
        for (int m = 0; m < FT_N_TARGET_MODULES; m++) {
            if (!(ad->target_mask & (1u << m)))
                continue;
            const adapter_module_t *mod = &ad->mods[l * FT_N_TARGET_MODULES + m];
            if (!mod->a || !mod->b) {
                ft_err_set(err, FT_EINTERNAL,
                           "adapter: layer %d %s is targeted but has no "
                           "weights",
                           l, module_paths[m]);
                return -1;
            }
            int in, out;
            char name[160];
            adapter_module_dims(ad->cfg, m, &in, &out);
            int64_t sa[2] = {ad->r, in}, sb[2] = {out, ad->r};
            adapter_tensor_name(name, sizeof name, l, m, 'A', suffix);
            if (st_writer_add(w, name, ST_F32, 2, sa, mod->a, err) < 0)
                return -1;
            adapter_tensor_name(name, sizeof name, l, m, 'B', suffix);
            if (st_writer_add(w, name, ST_F32, 2, sb, mod->b, err) < 0)
                return -1;
        }
    }
    return 0;
}

static cJSON *adapter_config_json(const adapter_t *ad)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *tm = cJSON_CreateArray();
    if (!j || !tm) {
        cJSON_Delete(j);
        cJSON_Delete(tm);
        return NULL;
    }
    cJSON_AddItemToObject(j, "alpha_pattern", cJSON_CreateObject());
    cJSON_AddStringToObject(j, "base_model_name_or_path", ad->base_model);
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", false);
    cJSON_AddBoolToObject(j, "inference_mode", true);
    cJSON_AddBoolToObject(j, "init_lora_weights", true);
    cJSON_AddNullToObject(j, "layers_pattern");
    cJSON_AddNullToObject(j, "layers_to_transform");
    cJSON_AddNumberToObject(j, "lora_alpha", ad->lora_alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", ad->lora_dropout);
    cJSON_AddNullToObject(j, "modules_to_save");
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddNumberToObject(j, "r", ad->r);
    cJSON_AddItemToObject(j, "rank_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(j, "revision");
    for (int m = 0; m < FT_N_TARGET_MODULES; m++)
        if (ad->target_mask & (1u << m))
            cJSON_AddItemToArray(tm, cJSON_CreateString(ft_target_module_names[m]));
    cJSON_AddItemToObject(j, "target_modules", tm);
    cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    cJSON_AddBoolToObject(j, "use_rslora", ad->use_rslora);
    return j;
}

int adapter_write(const char *dir, const adapter_t *ad, ft_err_t *err)
{
    int rc = -1;
    st_writer_t *w = NULL;
    cJSON *cfg = NULL;
    char *path = NULL;

    if (ad->r < 1 || ad->target_mask == 0 || !ad->mods) {
        ft_err_set(err, FT_EINTERNAL, "adapter: nothing to write (r %d, mask %#x)", ad->r,
                   ad->target_mask);
        return -1;
    }
    if (ft_mkdir_p(dir, err) < 0)
        return -1;
    w = st_writer_new();
    path = ft_asprintf("%s/%s", dir, ADAPTER_WEIGHTS_NAME);
    cfg = adapter_config_json(ad);
    if (!w || !path || !cfg) {
        ft_err_set(err, FT_EINTERNAL, "out of memory writing the adapter in '%s'", dir);
        goto out;
    }
    if (adapter_add_tensors(w, ad, "", err) < 0 || st_writer_save(w, path, err) < 0)
        goto out;
    if (ft_json_write_file(dir, ADAPTER_CONFIG_NAME, cfg, false, err) < 0)
        goto out;
    rc = 0;
out:
    cJSON_Delete(cfg);
    free(path);
    st_writer_destroy(&w);
    return rc;
}

static cJSON *read_json(const char *path, ft_err_t *err)
{
    size_t len = 0;
    ft_err_t e2 = {0};
    char *buf = ft_read_file(path, JSON_MAX_BYTES, &len, &e2);
    if (!buf) {
        ft_err_set(err, e2.code ? e2.code : FT_ENOTFOUND, "%s", e2.msg);
        return NULL;
    }
    cJSON *root = ft_json_parse(buf, len, &e2);
    free(buf);
    if (!root) {
        ft_err_set(err, FT_EBADJSON, "'%s': %s", path, e2.msg);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        ft_err_set(err, FT_EBADJSON, "'%s': expected a JSON object", path);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* target_modules of an adapter_config.json: a list of our seven names (in
 * any order) or "all-linear". */
static int parse_adapter_targets(const cJSON *v, const char *path, uint32_t *mask, ft_err_t *err)
{
    *mask = 0;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "all-linear") == 0) {
        *mask = (1u << FT_N_TARGET_MODULES) - 1;
        return 0;
    }
    if (!cJSON_IsArray(v)) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': field 'target_modules': expected a list of module "
                   "names (regular expressions are not supported)",
                   path);
        return -1;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        int m = -1;
        for (int k = 0; cJSON_IsString(e) && k < FT_N_TARGET_MODULES; k++)
            if (strcmp(e->valuestring, ft_target_module_names[k]) == 0)
                m = k;
        if (m < 0) {
            ft_err_set(err, FT_EBADFIELD,
                       "'%s': field 'target_modules': '%s' is not one of "
                       "the seven Llama projections",
                       path,
                       cJSON_IsString(e) ? ft_sanitize(e->valuestring, 40) : "(not a string)");
            return -1;
        }
        *mask |= 1u << m;
    }
    if (!*mask) {
        ft_err_set(err, FT_EBADFIELD, "'%s': field 'target_modules' is empty", path);
        return -1;
    }
    return 0;
}

/* Whether name is the A or B of a targeted module of a layer of ad. */
static bool is_expected(const char *name, const adapter_t *ad)
{
    const char *pre = "base_model.model.model.layers.";
    if (strncmp(name, pre, strlen(pre)) != 0)
        return false;
    char *end = NULL;
    const char *num = name + strlen(pre);
    if (num[0] < '0' || num[0] > '9' || (num[0] == '0' && num[1] != '.'))
        return false;
    long l = strtol(num, &end, 10);
    if (end == name + strlen(pre) || *end != '.' || l < 0 || l >= ad->cfg->n_layers)
        return false;
    for (int m = 0; m < FT_N_TARGET_MODULES; m++) {
        char a[96], b[96];
        if (!(ad->target_mask & (1u << m)))
            continue;
        snprintf(a, sizeof a, ".%s.lora_A.weight", module_paths[m]);
        snprintf(b, sizeof b, ".%s.lora_B.weight", module_paths[m]);
        if (strcmp(end, a) == 0 || strcmp(end, b) == 0)
            return true;
    }
    return false;
}

int adapter_load(const char *dir, const llama_config_t *cfg, adapter_loaded_t *out, ft_err_t *err)
{
    int rc = -1;
    cJSON *root = NULL;
    st_file_t *f = NULL;
    char *cpath = ft_asprintf("%s/%s", dir, ADAPTER_CONFIG_NAME);
    char *wpath = ft_asprintf("%s/%s", dir, ADAPTER_WEIGHTS_NAME);
    adapter_t *ad = &out->ad;

    memset(out, 0, sizeof *out);
    if (!cpath || !wpath) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    if (!(root = read_json(cpath, err)))
        goto out;
    const char *pt = NULL, *bias = NULL, *base = NULL;
    int64_t r = 0;
    bool fifo = false;
    char ctx[FT_PATH_MAX + 8];
    snprintf(ctx, sizeof ctx, "'%s'", cpath);
    if (ft_json_get_str(root, ctx, "peft_type", true, 32, &pt, err) < 0)
        goto out;
    if (strcmp(pt, "LORA") != 0) {
        ft_err_set(err, FT_EBADFIELD, "'%s': peft_type '%s' is not LORA", cpath,
                   ft_sanitize(pt, 32));
        goto out;
    }
    ad->lora_alpha = 8.0; /* PEFT's default */
    if (ft_json_get_int(root, ctx, "r", true, 1, 4096, &r, err) < 0 ||
        ft_json_get_num(root, ctx, "lora_alpha", false, 1e-9, 1e9, &ad->lora_alpha, err) < 0 ||
        ft_json_get_num(root, ctx, "lora_dropout", false, 0, 1, &ad->lora_dropout, err) < 0 ||
        ft_json_get_bool(root, ctx, "use_rslora", false, &ad->use_rslora, err) < 0 ||
        ft_json_get_bool(root, ctx, "fan_in_fan_out", false, &fifo, err) < 0 ||
        ft_json_get_str(root, ctx, "bias", false, 32, &bias, err) < 0)
        goto out;
    if (fifo || (bias && strcmp(bias, "none") != 0)) {
        ft_err_set(err, FT_EBADFIELD, "'%s': %s is not supported", cpath,
                   fifo ? "fan_in_fan_out true" : "bias other than \"none\"");
        goto out;
    }
    const cJSON *bm = cJSON_GetObjectItemCaseSensitive(root, "base_model_name_or_path");
    if (cJSON_IsString(bm))
        base = bm->valuestring;
    ft_strlcpy(ad->base_model, base ? base : "", sizeof ad->base_model);
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    if (!tm) {
        ft_err_set(err, FT_EMISSING, "'%s': field 'target_modules' is missing", cpath);
        goto out;
    }
    if (parse_adapter_targets(tm, cpath, &ad->target_mask, err) < 0)
        goto out;
    ad->r = (int)r;
    ad->cfg = cfg;

    int64_t total = adapter_n_params(cfg, ad->r, ad->target_mask);
    out->mem = malloc((size_t)total * sizeof(float));
    ad->mods = calloc((size_t)cfg->n_layers * FT_N_TARGET_MODULES, sizeof *ad->mods);
    if (!out->mem || !ad->mods) {
        ft_err_set(err, FT_EINTERNAL, "out of memory loading the adapter in '%s'", dir);
        goto out;
    }
    if (!(f = st_open(wpath, err)))
        goto out;
    float *p = out->mem;
    int n_expected = 0;
    for (int l = 0; l < cfg->n_layers; l++) {
        for (int m = 0; m < FT_N_TARGET_MODULES; m++) {
            if (!(ad->target_mask & (1u << m)))
                continue;
            adapter_module_t *mod = &ad->mods[l * FT_N_TARGET_MODULES + m];
            int in, o;
            char name[160];
            adapter_module_dims(cfg, m, &in, &o);
            int64_t sa[2] = {r, in}, sb[2] = {o, r};
            mod->a = p;
            p += r * in;
            mod->b = p;
            p += r * o;
            adapter_tensor_name(name, sizeof name, l, m, 'A', "");
            if (st_read_f32(f, name, 2, sa, mod->a, err) < 0)
                goto out;
            adapter_tensor_name(name, sizeof name, l, m, 'B', "");
            if (st_read_f32(f, name, 2, sb, mod->b, err) < 0)
                goto out;
            n_expected += 2;
        }
    }
    if (st_count(f) != n_expected) {
        /* name the first tensor we would silently drop */
        for (int i = 0; i < st_count(f); i++) {
            const st_tensor_t *t = st_tensor_at(f, i);
            if (!is_expected(t->name, ad)) {
                ft_err_set(err, FT_EBADFIELD,
                           "'%s': tensor '%s' does not belong to the "
                           "adapter described by %s",
                           wpath, ft_sanitize(t->name, 120), ADAPTER_CONFIG_NAME);
                goto out;
            }
        }
        ft_err_set(err, FT_EBADFIELD, "'%s': %d tensors, the adapter has %d", wpath, st_count(f),
                   n_expected);
        goto out;
    }
    rc = 0;
out:
    st_close(&f);
    cJSON_Delete(root);
    free(cpath);
    free(wpath);
    if (rc < 0)
        adapter_loaded_free(out);
    return rc;
}

void adapter_loaded_free(adapter_loaded_t *a)
{
    if (!a)
        return;
    free(a->mem);
    free(a->ad.mods);
    memset(a, 0, sizeof *a);
}

/* ---- checkpoints ---- */

uint64_t checkpoint_spec_hash(const ft_trainspec_t *t)
{
    static const char *const volatile_keys[] = {
        "max_steps",     "num_epochs", "save_steps", "eval_steps",
        "logging_steps", "threads",    "output_dir",
    };
    cJSON *j = ft_trainspec_to_json(t);
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis */
    if (!j)
        return 0;
    for (size_t i = 0; i < sizeof volatile_keys / sizeof volatile_keys[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(j, volatile_keys[i]);
    /* "dtype" came later: its default stays out so older checkpoints resume */
    if (t->dtype == FT_DTYPE_AUTO)
        cJSON_DeleteItemFromObjectCaseSensitive(j, "dtype");
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s)
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull; /* FNV-1a 64 prime */
    }
    free(s);
    return h ? h : 1;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int rm_rf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) < 0)
        return errno == ENOENT ? 0 : -1;
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* STEP of a "checkpoint-STEP" name (digits only, no sign, no leading junk); -1 otherwise. */
static int64_t checkpoint_step_of(const char *name)
{
    const char *p = name + strlen("checkpoint-");
    if (strncmp(name, "checkpoint-", strlen("checkpoint-")) != 0 || !*p || strlen(p) > 15)
        return -1;
    int64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Steps of every checkpoint-N folder in dir, ascending, malloc'd. */
static int list_checkpoints(const char *dir, int64_t **steps, int *n, ft_err_t *err)
{
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        ft_err_set(err, FT_EINTERNAL, "cannot read '%s': %s", dir, strerror(errno));
        return -1;
    }
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t s = checkpoint_step_of(e->d_name);
        if (s < 0)
            continue;
        char *p = ft_asprintf("%s/%s", dir, e->d_name);
        struct stat sb;
        bool isdir = p && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
        free(p);
        if (!isdir)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *ns = realloc(*steps, (size_t)cap * sizeof *ns);
            if (!ns) {
                closedir(d);
                ft_err_set(err, FT_EINTERNAL, "out of memory");
                return -1;
            }
            *steps = ns;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    qsort(*steps, (size_t)*n, sizeof **steps, cmp_i64);
    return 0;
}

static cJSON *state_json(const checkpoint_state_t *st)
{
    char b[32];
    cJSON *j = cJSON_CreateObject();
    cJSON *rng = cJSON_CreateArray();
    cJSON *lh = cJSON_CreateArray();
    if (!j || !rng || !lh) {
        cJSON_Delete(j);
        cJSON_Delete(rng);
        cJSON_Delete(lh);
        return NULL;
    }
    cJSON_AddStringToObject(j, "format", STATE_FORMAT);
    cJSON_AddNumberToObject(j, "step", (double)st->step);
    cJSON_AddNumberToObject(j, "epoch", (double)st->pos.epoch);
    cJSON_AddNumberToObject(j, "index", (double)st->pos.index);
    for (int i = 0; i < st->n_rng && i < CHECKPOINT_MAX_RNG; i++) {
        snprintf(b, sizeof b, "%llu", (unsigned long long)st->rng[i]);
        cJSON_AddItemToArray(rng, cJSON_CreateString(b));
    }
    cJSON_AddItemToObject(j, "rng", rng);
    snprintf(b, sizeof b, "%llu", (unsigned long long)st->spec_hash);
    cJSON_AddStringToObject(j, "spec_hash", b);
    for (int64_t i = 0; st->loss_history && i < st->n_loss; i++)
        cJSON_AddItemToArray(lh, cJSON_CreateNumber(st->loss_history[i]));
    cJSON_AddItemToObject(j, "loss_history", lh);
    return j;
}

int checkpoint_save(const char *output_dir, const adapter_t *ad, const float *adam_m,
                    const float *adam_v, size_t n, const checkpoint_state_t *st, int keep_last,
                    char *path_out, size_t path_len, ft_err_t *err)
{
    int rc = -1;
    char *final = NULL, *tmp = NULL, *old = NULL, *opath = NULL;
    st_writer_t *w = NULL;
    cJSON *sj = NULL;
    int64_t *steps = NULL;
    int n_steps = 0;

    if (st->step < 0 || st->n_rng < 0 || st->n_rng > CHECKPOINT_MAX_RNG) {
        ft_err_set(err, FT_EINTERNAL, "checkpoint: bad state (step %lld, %d rng words)",
                   (long long)st->step, st->n_rng);
        return -1;
    }
    if (ft_mkdir_p(output_dir, err) < 0)
        return -1;
    final = ft_asprintf("%s/checkpoint-%lld", output_dir, (long long)st->step);
    tmp = ft_asprintf("%s/.tmp-checkpoint-%lld", output_dir, (long long)st->step);
    old = ft_asprintf("%s/.old-checkpoint-%lld", output_dir, (long long)st->step);
    if (!final || !tmp || !old)
        goto oom;
    if (rm_rf(tmp) < 0 || rm_rf(old) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot remove a stale '%s': %s", tmp, strerror(errno));
        goto out;
    }
    if (mkdir(tmp, 0755) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot create '%s': %s", tmp, strerror(errno));
        goto out;
    }
    if (adapter_write(tmp, ad, err) < 0)
        goto out;
    w = st_writer_new();
    opath = ft_asprintf("%s/%s", tmp, OPTIM_NAME);
    if (!w || !opath)
        goto oom;
    int64_t sn[1] = {(int64_t)n};
    if (st_writer_add(w, "adam_m", ST_F32, 1, sn, adam_m, err) < 0 ||
        st_writer_add(w, "adam_v", ST_F32, 1, sn, adam_v, err) < 0 ||
        st_writer_save(w, opath, err) < 0)
        goto out;
    if (!(sj = state_json(st)))
        goto oom;
    if (ft_json_write_file(tmp, STATE_NAME, sj, false, err) < 0)
        goto out;
    if (fsync_path(tmp) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot sync '%s': %s", tmp, strerror(errno));
        goto out;
    }
    /* Replacing a checkpoint of the same step: move the old one aside first
     * (rename cannot replace a non-empty folder). */
    struct stat sb;
    bool had_old = stat(final, &sb) == 0;
    if (had_old && rename(final, old) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot move '%s' aside: %s", final, strerror(errno));
        goto out;
    }
    if (rename(tmp, final) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot rename '%s' to '%s': %s", tmp, final,
                   strerror(errno));
        goto out;
    }
    if (fsync_path(output_dir) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot sync '%s': %s", output_dir, strerror(errno));
        goto out;
    }
    if (had_old)
        rm_rf(old);
    if (path_out)
        ft_strlcpy(path_out, final, path_len);
    /* Prune: keep the newest keep_last. A failure here loses nothing. */
    if (keep_last > 0 && list_checkpoints(output_dir, &steps, &n_steps, err) == 0) {
        for (int i = 0; i < n_steps - keep_last; i++) {
            char *p = ft_asprintf("%s/checkpoint-%lld", output_dir, (long long)steps[i]);
            if (p && rm_rf(p) < 0)
                ft_warn("cannot remove the old checkpoint '%s': %s", p, strerror(errno));
            free(p);
        }
    }
    rc = 0;
    goto out;
oom:
    ft_err_set(err, FT_EINTERNAL, "out of memory writing a checkpoint in '%s'", output_dir);
out:
    if (rc < 0 && tmp)
        rm_rf(tmp);
    free(steps);
    cJSON_Delete(sj);
    st_writer_destroy(&w);
    free(opath);
    free(final);
    free(tmp);
    free(old);
    return rc;
}

/* A uint64 written as a decimal string. */
static int parse_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) > 20)
        return -1;
    uint64_t x = 0;
    for (const char *p = v->valuestring; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

static int load_state(const char *path, int64_t want_step, checkpoint_state_t *st, ft_err_t *err)
{
    int rc = -1;
    cJSON *j = read_json(path, err);
    char ctx[FT_PATH_MAX + 8];
    const char *fmt = NULL;
    memset(st, 0, sizeof *st);
    if (!j)
        return -1;
    snprintf(ctx, sizeof ctx, "'%s'", path);
    if (ft_json_get_str(j, ctx, "format", true, 64, &fmt, err) < 0)
        goto out;
    if (strcmp(fmt, STATE_FORMAT) != 0) {
        ft_err_set(err, FT_EBADFIELD, "'%s': format '%s' is not %s", path, ft_sanitize(fmt, 32),
                   STATE_FORMAT);
        goto out;
    }
    if (ft_json_get_int(j, ctx, "step", true, 0, INT64_C(1) << 53, &st->step, err) < 0 ||
        ft_json_get_int(j, ctx, "epoch", true, 0, INT64_C(1) << 53, &st->pos.epoch, err) < 0 ||
        ft_json_get_int(j, ctx, "index", true, 0, INT64_C(1) << 53, &st->pos.index, err) < 0)
        goto out;
    if (st->step != want_step) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': step %lld does not match its folder name "
                   "(checkpoint-%lld)",
                   path, (long long)st->step, (long long)want_step);
        goto out;
    }
    const cJSON *rng = cJSON_GetObjectItemCaseSensitive(j, "rng");
    if (!cJSON_IsArray(rng) || cJSON_GetArraySize(rng) > CHECKPOINT_MAX_RNG) {
        ft_err_set(err, FT_EBADFIELD, "'%s': field 'rng': expected at most %d decimal strings",
                   path, CHECKPOINT_MAX_RNG);
        goto out;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, rng)
    {
        if (parse_u64(e, &st->rng[st->n_rng]) < 0) {
            ft_err_set(err, FT_EBADFIELD,
                       "'%s': field 'rng[%d]': expected a uint64 as a "
                       "decimal string",
                       path, st->n_rng);
            goto out;
        }
        st->n_rng++;
    }
    if (parse_u64(cJSON_GetObjectItemCaseSensitive(j, "spec_hash"), &st->spec_hash) < 0) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': field 'spec_hash': expected a uint64 as a decimal "
                   "string",
                   path);
        goto out;
    }
    const cJSON *lh = cJSON_GetObjectItemCaseSensitive(j, "loss_history");
    if (lh && !cJSON_IsArray(lh)) {
        ft_err_set(err, FT_EBADFIELD, "'%s': field 'loss_history': expected an array", path);
        goto out;
    }
    int nl = lh ? cJSON_GetArraySize(lh) : 0;
    if (nl > 0) {
        st->loss_history = malloc((size_t)nl * sizeof(double));
        if (!st->loss_history) {
            ft_err_set(err, FT_EINTERNAL, "out of memory");
            goto out;
        }
        cJSON_ArrayForEach(e, lh)
        {
            if (!cJSON_IsNumber(e) && !cJSON_IsNull(e)) {
                ft_err_set(err, FT_EBADFIELD,
                           "'%s': field 'loss_history[%lld]': expected a "
                           "number",
                           path, (long long)st->n_loss);
                goto out;
            }
            st->loss_history[st->n_loss++] = cJSON_IsNumber(e) ? e->valuedouble : NAN;
        }
    }
    rc = 0;
out:
    cJSON_Delete(j);
    if (rc < 0)
        checkpoint_state_free(st);
    return rc;
}

int checkpoint_load_latest(const char *output_dir, const adapter_t *ad, float *adam_m,
                           float *adam_v, size_t n, uint64_t expect_hash, checkpoint_state_t *st,
                           char *path_out, size_t path_len, ft_err_t *err)
{
    int rc = -1;
    int64_t *steps = NULL;
    int n_steps = 0;
    char *dir = NULL, *spath = NULL, *opath = NULL;
    adapter_loaded_t la = {0};
    st_file_t *f = NULL;

    memset(st, 0, sizeof *st);
    if (list_checkpoints(output_dir, &steps, &n_steps, err) < 0)
        return -1;
    if (n_steps == 0) {
        free(steps);
        return 0;
    }
    int64_t step = steps[n_steps - 1];
    dir = ft_asprintf("%s/checkpoint-%lld", output_dir, (long long)step);
    spath = dir ? ft_asprintf("%s/%s", dir, STATE_NAME) : NULL;
    opath = dir ? ft_asprintf("%s/%s", dir, OPTIM_NAME) : NULL;
    if (!dir || !spath || !opath) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    if (load_state(spath, step, st, err) < 0)
        goto out;
    if (expect_hash && st->spec_hash != expect_hash) {
        ft_err_set(err, FT_EBADFIELD,
                   "checkpoint '%s' was written for another spec (spec_hash "
                   "%llu, this spec %llu); use a new output_dir or remove the checkpoints",
                   dir, (unsigned long long)st->spec_hash, (unsigned long long)expect_hash);
        goto out;
    }
    if (adapter_load(dir, ad->cfg, &la, err) < 0)
        goto out;
    if (la.ad.r != ad->r || la.ad.target_mask != ad->target_mask) {
        ft_err_set(err, FT_EBADFIELD,
                   "checkpoint '%s': adapter has r %d and modules %#x, the "
                   "run wants r %d and modules %#x",
                   dir, la.ad.r, la.ad.target_mask, ad->r, ad->target_mask);
        goto out;
    }
    if (!(f = st_open(opath, err)))
        goto out;
    int64_t sn[1] = {(int64_t)n};
    if (st_read_f32(f, "adam_m", 1, sn, adam_m, err) < 0 ||
        st_read_f32(f, "adam_v", 1, sn, adam_v, err) < 0)
        goto out;
    for (int l = 0; l < ad->cfg->n_layers; l++) {
        for (int m = 0; m < FT_N_TARGET_MODULES; m++) {
            if (!(ad->target_mask & (1u << m)))
                continue;
            int in, o;
            adapter_module_dims(ad->cfg, m, &in, &o);
            const adapter_module_t *src = &la.ad.mods[l * FT_N_TARGET_MODULES + m];
            const adapter_module_t *dst = &ad->mods[l * FT_N_TARGET_MODULES + m];
            memcpy(dst->a, src->a, (size_t)ad->r * (size_t)in * sizeof(float));
            memcpy(dst->b, src->b, (size_t)ad->r * (size_t)o * sizeof(float));
        }
    }
    if (path_out)
        ft_strlcpy(path_out, dir, path_len);
    rc = 1;
out:
    if (rc < 0)
        checkpoint_state_free(st);
    st_close(&f);
    adapter_loaded_free(&la);
    free(steps);
    free(dir);
    free(spath);
    free(opath);
    return rc;
}

void checkpoint_state_free(checkpoint_state_t *st)
{
    if (!st)
        return;
    free(st->loss_history);
    st->loss_history = NULL;
    st->n_loss = 0;
}
