/*
 * test_adapter.c: the PEFT adapter writer (adapter_config.json keys, tensor
 * names and shapes), reading it back, its error cases, and checkpoints: round
 * trip of weights, Adam moments and state, keep-last pruning, a crashed
 * (half-written) checkpoint being ignored, and the spec hash.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adapter.h"
#include "ft/json.h"
#include "testutil.h"
#include "tinymodel.h"

static char dir[256];

/* An adapter over freshly allocated buffers with values v(l, m, i). */
typedef struct {
    adapter_t ad;
    float *mem;
    adapter_module_t mods[16 * FT_N_TARGET_MODULES];
} test_adapter_t;

static void make_adapter(test_adapter_t *t, const llama_config_t *c, int r, uint32_t mask,
                         float salt)
{
    memset(t, 0, sizeof *t);
    int64_t n = adapter_n_params(c, r, mask);
    t->mem = malloc((size_t)n * sizeof(float));
    float *p = t->mem;
    for (int l = 0; l < c->n_layers; l++)
        for (int m = 0; m < FT_N_TARGET_MODULES; m++) {
            if (!(mask & (1u << m)))
                continue;
            int in, out;
            adapter_module_dims(c, m, &in, &out);
            adapter_module_t *md = &t->mods[l * FT_N_TARGET_MODULES + m];
            md->a = p;
            p += r * in;
            md->b = p;
            p += r * out;
        }
    for (int64_t i = 0; i < n; i++)
        t->mem[i] = salt + (float)sin((double)i * 0.37) * 0.1f;
    t->ad.cfg = c;
    t->ad.r = r;
    t->ad.lora_alpha = 16;
    t->ad.lora_dropout = 0.05;
    t->ad.use_rslora = false;
    t->ad.target_mask = mask;
    ft_strlcpy(t->ad.base_model, "/models/tiny", sizeof t->ad.base_model);
    t->ad.mods = t->mods;
}

static void test_adapter_files(const llama_config_t *c)
{
    char d[300], p[400];
    ft_err_t err = {0};
    uint32_t mask = (1u << FT_TM_Q) | (1u << FT_TM_V) | (1u << FT_TM_DOWN);
    test_adapter_t t;
    make_adapter(&t, c, 4, mask, 0.0f);
    snprintf(d, sizeof d, "%s/adapter", dir);
    CHECK(adapter_write(d, &t.ad, &err) == 0, "adapter written: %s", err.msg);

    /* adapter_config.json: exactly the long-standing keys */
    snprintf(p, sizeof p, "%s/adapter_config.json", d);
    size_t len;
    char *txt = ft_read_file(p, 1 << 20, &len, &err);
    cJSON *j = ft_json_parse(txt, len, &err);
    static const char *const keys[] = {
        "alpha_pattern",
        "base_model_name_or_path",
        "bias",
        "fan_in_fan_out",
        "inference_mode",
        "init_lora_weights",
        "layers_pattern",
        "layers_to_transform",
        "lora_alpha",
        "lora_dropout",
        "modules_to_save",
        "peft_type",
        "r",
        "rank_pattern",
        "revision",
        "target_modules",
        "task_type",
        "use_rslora",
        NULL,
    };
    CHECK(j && ft_json_check_keys(j, "adapter_config", keys, &err) == 0,
          "adapter_config.json has only long-standing PEFT keys");
    int nkeys = cJSON_GetArraySize(j);
    CHECK(nkeys == 18, "all 18 keys present (%d)", nkeys);
    CHECK(strcmp(cJSON_GetObjectItem(j, "peft_type")->valuestring, "LORA") == 0 &&
              strcmp(cJSON_GetObjectItem(j, "task_type")->valuestring, "CAUSAL_LM") == 0 &&
              strcmp(cJSON_GetObjectItem(j, "bias")->valuestring, "none") == 0 &&
              cJSON_GetObjectItem(j, "r")->valueint == 4 &&
              cJSON_GetObjectItem(j, "lora_alpha")->valuedouble == 16 &&
              cJSON_IsTrue(cJSON_GetObjectItem(j, "inference_mode")) &&
              cJSON_IsFalse(cJSON_GetObjectItem(j, "fan_in_fan_out")) &&
              cJSON_IsNull(cJSON_GetObjectItem(j, "modules_to_save")) &&
              cJSON_IsObject(cJSON_GetObjectItem(j, "rank_pattern")),
          "adapter_config values");
    char *tm = ft_json_print(cJSON_GetObjectItem(j, "target_modules"));
    CHECK(strcmp(tm, "[\"q_proj\",\"v_proj\",\"down_proj\"]") == 0, "target_modules %s", tm);
    free(tm);
    cJSON_Delete(j);
    free(txt);

    /* tensor names and shapes */
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", d);
    st_file_t *f = st_open(p, &err);
    CHECK(f && st_count(f) == c->n_layers * 3 * 2, "%d tensors (layers x 3 modules x A,B)",
          f ? st_count(f) : -1);
    const st_tensor_t *ta =
        st_find(f, "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
    const st_tensor_t *tb =
        st_find(f, "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
    const st_tensor_t *td =
        st_find(f, "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight");
    const st_tensor_t *tdb =
        st_find(f, "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
    int Hkv = c->n_kv_heads * c->head_dim;
    CHECK(ta && ta->dtype == ST_F32 && ta->shape[0] == 4 && ta->shape[1] == c->hidden_size,
          "q_proj.lora_A is F32 [r, hidden]");
    CHECK(tb && tb->shape[0] == Hkv && tb->shape[1] == 4, "v_proj.lora_B is [kv_dim %d, r]", Hkv);
    CHECK(td && td->shape[0] == 4 && td->shape[1] == c->intermediate_size,
          "down_proj.lora_A is [r, intermediate]");
    CHECK(tdb && tdb->shape[0] == c->hidden_size && tdb->shape[1] == 4,
          "down_proj.lora_B is [hidden, r]");
    CHECK(!st_find(f, "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"),
          "untargeted k_proj absent");
    CHECK(ta && memcmp(ta->data, t.mods[1 * 7 + FT_TM_Q].a, ta->nbytes) == 0,
          "q_proj.lora_A bytes equal the source");
    st_close(&f);

    /* read back */
    adapter_loaded_t la;
    CHECK(adapter_load(d, c, &la, &err) == 0, "adapter loads: %s", err.msg);
    CHECK(la.ad.r == 4 && la.ad.target_mask == mask && la.ad.lora_alpha == 16 &&
              fabs(la.ad.lora_dropout - 0.05) < 1e-12 && !la.ad.use_rslora &&
              strcmp(la.ad.base_model, "/models/tiny") == 0,
          "loaded config");
    int64_t n = adapter_n_params(c, 4, mask);
    CHECK(memcmp(la.mem, t.mem, (size_t)n * sizeof(float)) == 0, "loaded %lld floats equal",
          (long long)n);
    adapter_loaded_free(&la);

    /* errors: a tensor too many, wrong peft type, foreign module */
    st_writer_t *w = st_writer_new();
    adapter_add_tensors(w, &t.ad, "", &err);
    float extra[4] = {0};
    int64_t s4[1] = {4};
    st_writer_add(w, "base_model.model.lm_head.lora_A.weight", ST_F32, 1, s4, extra, &err);
    st_writer_save(w, p, &err);
    st_writer_destroy(&w);
    CHECK(adapter_load(d, c, &la, &err) < 0 &&
              strstr(err.msg, "tensor 'base_model.model.lm_head.lora_A.weight' does not belong"),
          "extra tensor refused: %s", err.msg);
    snprintf(p, sizeof p, "%s/adapter_config.json", d);
    test_write_text(p, "{\"peft_type\":\"IA3\",\"r\":4,\"target_modules\":[\"q_proj\"]}");
    CHECK(adapter_load(d, c, &la, &err) < 0 && strstr(err.msg, "peft_type 'IA3' is not LORA"),
          "other peft type refused: %s", err.msg);
    test_write_text(p, "{\"peft_type\":\"LORA\",\"r\":4,\"target_modules\":[\"q_proj\","
                       "\"lm_head\"]}");
    CHECK(adapter_load(d, c, &la, &err) < 0 && strstr(err.msg, "'lm_head' is not one of"),
          "foreign module refused: %s", err.msg);
    test_write_text(p, "{\"peft_type\":\"LORA\",\"r\":4,\"target_modules\":\"all-linear\"}");
    CHECK(adapter_load(d, c, &la, &err) < 0 && strstr(err.msg, "k_proj.lora_A.weight"),
          "all-linear expects every module: %s", err.msg);
    free(t.mem);
}

static void test_checkpoints(const llama_config_t *c)
{
    char out[300], p[400], got[600];
    ft_err_t err = {0};
    uint32_t mask = (1u << FT_N_TARGET_MODULES) - 1;
    int r = 2;
    size_t n = (size_t)adapter_n_params(c, r, mask);
    float *m = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float));
    test_adapter_t t;
    snprintf(out, sizeof out, "%s/run", dir);

    /* nothing yet */
    make_adapter(&t, c, r, mask, 0.0f);
    checkpoint_state_t st;
    CHECK(checkpoint_load_latest(out, &t.ad, m, v, n, 0, &st, NULL, 0, &err) == 0,
          "no output_dir: no checkpoint");
    free(t.mem);

    for (int step = 1; step <= 3; step++) {
        make_adapter(&t, c, r, mask, (float)step);
        for (size_t i = 0; i < n; i++) {
            m[i] = (float)step * 1e-3f + (float)i;
            v[i] = (float)step * 1e-6f * (float)i;
        }
        double losses[3] = {5.5, 4.25, 3.0 + 1.0 / 3.0};
        checkpoint_state_t s = {
            .step = step * 10,
            .pos = {.epoch = step / 2, .index = step * 7},
            .rng = {0xffffffffffffffffull, 12345678901234567890ull, (uint64_t)step},
            .n_rng = 3,
            .spec_hash = 0xdeadbeefcafef00dull,
            .loss_history = losses,
            .n_loss = step,
        };
        CHECK(checkpoint_save(out, &t.ad, m, v, n, &s, 2, got, sizeof got, &err) == 0,
              "checkpoint %d saved: %s", step * 10, err.msg);
        free(t.mem);
    }
    snprintf(p, sizeof p, "%s/checkpoint-30", out);
    CHECK(strcmp(got, p) == 0, "path reported: %s", got);
    struct stat sb;
    snprintf(p, sizeof p, "%s/checkpoint-10", out);
    CHECK(stat(p, &sb) < 0, "oldest checkpoint pruned (keep 2)");
    snprintf(p, sizeof p, "%s/checkpoint-20/adapter_model.safetensors", out);
    CHECK(stat(p, &sb) == 0, "checkpoint-20 kept");
    snprintf(p, sizeof p, "%s/checkpoint-30/adapter_config.json", out);
    CHECK(stat(p, &sb) == 0, "checkpoint-30 has the adapter config");

    /* a crash while writing checkpoint 40 leaves only its temporary folder,
     * and a stray file named like a checkpoint is not a folder */
    snprintf(p, sizeof p, "%s/.tmp-checkpoint-40", out);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/.tmp-checkpoint-40/trainer_state.json", out);
    test_write_text(p, "{\"format\":");
    snprintf(p, sizeof p, "%s/checkpoint-50", out);
    test_write_text(p, "not a folder");
    snprintf(p, sizeof p, "%s/checkpoint-x9", out);
    mkdir(p, 0755);

    make_adapter(&t, c, r, mask, -100.0f);
    memset(m, 0, n * sizeof(float));
    memset(v, 0, n * sizeof(float));
    int rc = checkpoint_load_latest(out, &t.ad, m, v, n, 0xdeadbeefcafef00dull, &st, got,
                                    sizeof got, &err);
    CHECK(rc == 1, "latest checkpoint found: %s", err.msg);
    CHECK(strstr(got, "checkpoint-30") != NULL, "it is checkpoint-30 (tmp-40, file 50 ignored)");
    CHECK(st.step == 30 && st.pos.epoch == 1 && st.pos.index == 21, "step 30, position (1, 21)");
    CHECK(st.n_rng == 3 && st.rng[0] == 0xffffffffffffffffull &&
              st.rng[1] == 12345678901234567890ull && st.rng[2] == 3,
          "rng words exact (uint64)");
    CHECK(st.n_loss == 3 && st.loss_history[2] == 3.0 + 1.0 / 3.0, "loss history exact");
    test_adapter_t want;
    make_adapter(&want, c, r, mask, 3.0f);
    CHECK(memcmp(t.mem, want.mem, n * sizeof(float)) == 0, "LoRA weights restored bit-exact");
    bool mv_ok = true;
    for (size_t i = 0; i < n; i++)
        mv_ok = mv_ok && m[i] == 3e-3f + (float)i && v[i] == 3e-6f * (float)i;
    CHECK(mv_ok, "Adam m and v restored bit-exact");
    checkpoint_state_free(&st);
    CHECK(st.loss_history == NULL, "state free clears");

    CHECK(checkpoint_load_latest(out, &t.ad, m, v, n, 42, &st, NULL, 0, &err) < 0 &&
              strstr(err.msg, "was written for another spec"),
          "spec hash mismatch: %s", err.msg);
    test_adapter_t other;
    make_adapter(&other, c, 3, mask, 0.0f);
    size_t n3 = (size_t)adapter_n_params(c, 3, mask);
    float *m3 = malloc(n3 * sizeof(float)), *v3 = malloc(n3 * sizeof(float));
    CHECK(checkpoint_load_latest(out, &other.ad, m3, v3, n3, 0, &st, NULL, 0, &err) < 0 &&
              strstr(err.msg, "adapter has r 2"),
          "other rank refused: %s", err.msg);
    free(m3);
    free(v3);
    free(other.mem);

    /* next save removes the stale temporary folder of the same step */
    checkpoint_state_t s40 = {.step = 40, .n_rng = 0, .spec_hash = 1};
    CHECK(checkpoint_save(out, &want.ad, m, v, n, &s40, 2, NULL, 0, &err) == 0,
          "checkpoint 40 saved over the crashed attempt: %s", err.msg);
    snprintf(p, sizeof p, "%s/.tmp-checkpoint-40", out);
    CHECK(stat(p, &sb) < 0, "temporary folder gone");
    /* saving the same step again replaces it */
    CHECK(checkpoint_save(out, &want.ad, m, v, n, &s40, 2, NULL, 0, &err) == 0,
          "checkpoint 40 saved again (replace): %s", err.msg);
    snprintf(p, sizeof p, "%s/checkpoint-20", out);
    CHECK(stat(p, &sb) < 0, "checkpoint-20 pruned, 30 and 40 kept");

    /* corrupt state is an error, not silently skipped */
    snprintf(p, sizeof p, "%s/checkpoint-40/trainer_state.json", out);
    test_write_text(p, "{\"format\":\"ft-checkpoint-1\",\"step\":41,\"epoch\":0,\"index\":0,"
                       "\"rng\":[],\"spec_hash\":\"1\"}");
    CHECK(checkpoint_load_latest(out, &want.ad, m, v, n, 0, &st, NULL, 0, &err) < 0 &&
              strstr(err.msg, "step 41 does not match its folder name"),
          "renamed checkpoint: %s", err.msg);
    test_write_text(p, "{\"format\":\"ft-checkpoint-1\",\"step\":40,\"epoch\":0,\"index\":0,"
                       "\"rng\":[\"-1\"],\"spec_hash\":\"1\"}");
    CHECK(checkpoint_load_latest(out, &want.ad, m, v, n, 0, &st, NULL, 0, &err) < 0 &&
              strstr(err.msg, "rng[0]"),
          "bad rng word: %s", err.msg);
    free(want.mem);
    free(t.mem);
    free(m);
    free(v);
}

static void test_spec_hash(void)
{
    ft_trainspec_t a, b;
    ft_trainspec_defaults(&a);
    ft_strlcpy(a.base_model, "/m", sizeof a.base_model);
    ft_strlcpy(a.output_dir, "/o", sizeof a.output_dir);
    a.n_datasets = 1;
    ft_strlcpy(a.datasets[0].path, "/d.jsonl", sizeof a.datasets[0].path);
    b = a;
    b.max_steps = 20;
    b.save_steps = 5;
    b.threads = 2;
    ft_strlcpy(b.output_dir, "/elsewhere", sizeof b.output_dir);
    CHECK(checkpoint_spec_hash(&a) == checkpoint_spec_hash(&b),
          "hash ignores max_steps, save_steps, threads, output_dir");
    b = a;
    b.lora_r = 16;
    CHECK(checkpoint_spec_hash(&a) != checkpoint_spec_hash(&b), "hash changes with lora_r");
    b = a;
    b.seed = 43;
    CHECK(checkpoint_spec_hash(&a) != checkpoint_spec_hash(&b), "hash changes with seed");
    b = a;
    b.dtype = FT_DTYPE_BF16;
    ft_trainspec_t c = a;
    c.dtype = FT_DTYPE_FP32;
    CHECK(checkpoint_spec_hash(&a) != checkpoint_spec_hash(&b) &&
              checkpoint_spec_hash(&b) != checkpoint_spec_hash(&c),
          "hash changes with dtype (auto, bf16, fp32 all differ)");
}

int main(void)
{
    llama_config_t c;
    tinymodel_opts_t o;
    ft_err_t err = {0};
    test_tmpdir(dir, sizeof dir, "adapter");
    tinymodel_defaults(&o);
    if (tinymodel_config(&o, &c, &err) < 0) {
        printf("tiny config: %s\n", err.msg);
        return 1;
    }
    test_adapter_files(&c);
    test_checkpoints(&c);
    test_spec_hash();
    return test_finish(dir);
}
