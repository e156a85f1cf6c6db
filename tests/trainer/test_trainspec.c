/*
 * test_trainspec.c: the "train" section of lora job specs: defaults, every
 * key read, the error for each kind of bad input (unknown key, bounds,
 * types, required keys, cross-field rules) and the JSON round trip.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft/jobspec.h"
#include "ft/json.h"
#include "testutil.h"

static int parse_text(const char *text, ft_trainspec_t *t, ft_err_t *err)
{
    cJSON *j = ft_json_parse(text, strlen(text), err);
    if (!j)
        return -2;
    int rc = ft_trainspec_parse(j, t, err);
    cJSON_Delete(j);
    return rc;
}

#define BASE "\"base_model\":\"/m\",\"datasets\":[\"/d.jsonl\"],\"output_dir\":\"/o\""

static void expect_err(const char *what, const char *extra, const char *want)
{
    char text[2048];
    ft_trainspec_t t;
    ft_err_t err = {0};
    snprintf(text, sizeof text, "{%s%s%s}", BASE, extra[0] ? "," : "", extra);
    int rc = parse_text(text, &t, &err);
    CHECK(rc == -1 && strstr(err.msg, want), "%s: '%s' (want '%s')", what, err.msg, want);
}

static void test_defaults_and_full(void)
{
    ft_trainspec_t t;
    ft_err_t err = {0};
    CHECK(parse_text("{" BASE "}", &t, &err) == 0, "minimal train section parses: %s", err.msg);
    CHECK(strcmp(t.base_model, "/m") == 0 && t.n_datasets == 1 &&
              strcmp(t.datasets[0].path, "/d.jsonl") == 0 && t.datasets[0].format == FT_DATA_AUTO &&
              strcmp(t.output_dir, "/o") == 0,
          "required keys read");
    CHECK(t.lora_r == 8 && t.lora_alpha == 16 && t.lora_dropout == 0 && !t.use_rslora &&
              t.target_mask == 0x7f && t.sequence_len == 256 && t.micro_batch_size == 4 &&
              t.gradient_accumulation_steps == 1 && t.max_steps == 0 && t.num_epochs == 1 &&
              t.sample_packing && !t.train_on_inputs && t.learning_rate == 2e-4 &&
              t.lr_scheduler == FT_LR_COSINE && t.warmup_steps == 0 && t.warmup_ratio == 0 &&
              t.weight_decay == 0 && t.adam_beta1 == 0.9 && t.adam_beta2 == 0.999 &&
              t.adam_epsilon == 1e-8 && t.max_grad_norm == 1.0 && t.seed == 42 &&
              t.eval_steps == 0 && t.save_steps == 0 && t.logging_steps == 1 && t.threads == 0 &&
              t.dtype == FT_DTYPE_AUTO && t.eval_path[0] == '\0' && t.val_set_size == 0,
          "defaults as documented");

    const char *full =
        "{\"base_model\":\"/models/llama\",\"datasets\":[{\"path\":\"/a.jsonl\",\"type\":"
        "\"alpaca\"},\"/b.jsonl\",{\"path\":\"/c.jsonl\"}],\"eval_path\":\"/e.jsonl\","
        "\"output_dir\":\"/out\",\"lora_r\":16,\"lora_alpha\":32,\"lora_dropout\":0.05,"
        "\"use_rslora\":true,\"target_modules\":[\"q_proj\",\"v_proj\",\"down_proj\"],"
        "\"sequence_len\":512,\"micro_batch_size\":2,\"gradient_accumulation_steps\":4,"
        "\"max_steps\":100,\"num_epochs\":3,\"sample_packing\":false,\"train_on_inputs\":true,"
        "\"learning_rate\":0.0001,\"lr_scheduler\":\"linear\",\"warmup_steps\":10,"
        "\"warmup_ratio\":0.1,\"weight_decay\":0.01,\"adam_beta1\":0.8,\"adam_beta2\":0.99,"
        "\"adam_epsilon\":1e-6,\"max_grad_norm\":0,\"seed\":3407,\"eval_steps\":20,"
        "\"save_steps\":50,\"logging_steps\":5,\"threads\":2,\"dtype\":\"bf16\"}";
    CHECK(parse_text(full, &t, &err) == 0, "every key parses: %s", err.msg);
    CHECK(t.n_datasets == 3 && t.datasets[0].format == FT_DATA_ALPACA &&
              strcmp(t.datasets[1].path, "/b.jsonl") == 0 && t.datasets[1].format == FT_DATA_AUTO &&
              strcmp(t.datasets[2].path, "/c.jsonl") == 0,
          "datasets in both forms");
    CHECK(t.lora_r == 16 && t.lora_alpha == 32 && t.lora_dropout == 0.05 && t.use_rslora &&
              t.target_mask == ((1u << FT_TM_Q) | (1u << FT_TM_V) | (1u << FT_TM_DOWN)),
          "LoRA keys");
    CHECK(t.sequence_len == 512 && t.micro_batch_size == 2 && t.gradient_accumulation_steps == 4 &&
              t.max_steps == 100 && t.num_epochs == 3 && !t.sample_packing && t.train_on_inputs,
          "batching keys");
    CHECK(t.learning_rate == 1e-4 && t.lr_scheduler == FT_LR_LINEAR && t.warmup_steps == 10 &&
              t.warmup_ratio == 0.1 && t.weight_decay == 0.01 && t.adam_beta1 == 0.8 &&
              t.adam_beta2 == 0.99 && t.adam_epsilon == 1e-6 && t.max_grad_norm == 0 &&
              t.seed == 3407 && t.eval_steps == 20 && t.save_steps == 50 && t.logging_steps == 5 &&
              t.threads == 2 && strcmp(t.eval_path, "/e.jsonl") == 0,
          "optimiser and cadence keys");
    CHECK(t.dtype == FT_DTYPE_BF16, "dtype \"bf16\" read (%d)", (int)t.dtype);

    /* to_json then parse gives the same struct */
    cJSON *j = ft_trainspec_to_json(&t);
    ft_trainspec_t back;
    CHECK(j && ft_trainspec_parse(j, &back, &err) == 0, "to_json output parses: %s", err.msg);
    CHECK(memcmp(&t, &back, sizeof t) == 0, "round trip is exact");
    CHECK(cJSON_GetArraySize(j) == 32, "to_json writes all 32 keys (%d)", cJSON_GetArraySize(j));
    char *s = ft_json_print(cJSON_GetObjectItem(j, "datasets"));
    CHECK(strstr(s, "{\"path\":\"/b.jsonl\",\"type\":\"auto\"}") != NULL, "datasets as objects: %s",
          s);
    free(s);
    cJSON_Delete(j);
    CHECK(parse_text("{" BASE ",\"target_modules\":\"all-linear\",\"seed\":9007199254740991}", &t,
                     &err) == 0 &&
              t.target_mask == 0x7f && t.seed == 9007199254740991ull,
          "all-linear and the largest exact seed");
}

static void test_errors(void)
{
    ft_trainspec_t t;
    ft_err_t err = {0};
    expect_err("unknown key", "\"lora_rank\":8", "spec.train.lora_rank: unknown key");
    CHECK(parse_text("{\"datasets\":[\"/d\"],\"output_dir\":\"/o\"}", &t, &err) == -1 &&
              strstr(err.msg, "base_model"),
          "base_model required: %s", err.msg);
    CHECK(parse_text("{\"base_model\":\"/m\",\"output_dir\":\"/o\"}", &t, &err) == -1 &&
              strstr(err.msg, "datasets"),
          "datasets required: %s", err.msg);
    CHECK(parse_text("{\"base_model\":\"/m\",\"datasets\":[\"/d\"]}", &t, &err) == -1 &&
              strstr(err.msg, "output_dir"),
          "output_dir required: %s", err.msg);
    CHECK(parse_text("[]", &t, &err) == -1 && strstr(err.msg, "spec.train: expected an object"),
          "not an object: %s", err.msg);
    CHECK(parse_text("{\"base_model\":\"\",\"datasets\":[\"/d\"],\"output_dir\":\"/o\"}", &t,
                     &err) == -1 &&
              strstr(err.msg, "spec.train.base_model: must not be empty"),
          "empty path: %s", err.msg);
    CHECK(parse_text("{\"base_model\":\"/m\",\"datasets\":[],\"output_dir\":\"/o\"}", &t, &err) ==
                  -1 &&
              strstr(err.msg, "at least one dataset"),
          "empty datasets: %s", err.msg);
    CHECK(parse_text("{\"base_model\":\"/m\",\"datasets\":\"/d\",\"output_dir\":\"/o\"}", &t,
                     &err) == -1 &&
              strstr(err.msg, "spec.train.datasets: expected an array"),
          "datasets not an array: %s", err.msg);
    CHECK(parse_text("{\"base_model\":\"/m\",\"datasets\":[{\"path\":\"/d\",\"type\":\"csv\"}],"
                     "\"output_dir\":\"/o\"}",
                     &t, &err) == -1 &&
              strstr(err.msg, "spec.train.datasets[0].type: unknown format 'csv'"),
          "bad dataset type: %s", err.msg);
    CHECK(parse_text("{\"base_model\":\"/m\",\"datasets\":[{\"file\":\"/d\"}],"
                     "\"output_dir\":\"/o\"}",
                     &t, &err) == -1 &&
              strstr(err.msg, "spec.train.datasets[0].file: unknown key"),
          "unknown dataset key: %s", err.msg);
    CHECK(parse_text("{\"base_model\":\"/m\",\"datasets\":[\"/d\",7],\"output_dir\":\"/o\"}", &t,
                     &err) == -1 &&
              strstr(err.msg, "spec.train.datasets[1]: expected a path"),
          "dataset of the wrong type: %s", err.msg);
    expect_err("lora_r 0", "\"lora_r\":0", "spec.train.lora_r: expected an integer in [1, 1024]");
    expect_err("lora_r too big", "\"lora_r\":2048", "spec.train.lora_r");
    expect_err("lora_r fractional", "\"lora_r\":8.5", "spec.train.lora_r");
    expect_err("lora_r string", "\"lora_r\":\"8\"", "spec.train.lora_r");
    expect_err("dropout", "\"lora_dropout\":0.95", "spec.train.lora_dropout");
    expect_err("sequence_len", "\"sequence_len\":4", "spec.train.sequence_len");
    expect_err("val_set_size", "\"val_set_size\":0.6", "spec.train.val_set_size");
    expect_err("learning_rate", "\"learning_rate\":-1", "spec.train.learning_rate");
    expect_err("beta2", "\"adam_beta2\":1", "spec.train.adam_beta2");
    expect_err("epsilon 0", "\"adam_epsilon\":0", "spec.train.adam_epsilon");
    expect_err("logging 0", "\"logging_steps\":0", "spec.train.logging_steps");
    expect_err("threads", "\"threads\":-1", "spec.train.threads");
    expect_err("seed negative", "\"seed\":-1", "spec.train.seed");
    expect_err("bool", "\"sample_packing\":1", "spec.train.sample_packing");
    expect_err("scheduler", "\"lr_scheduler\":\"step\"",
               "spec.train.lr_scheduler: expected \"constant\", \"linear\" or \"cosine\"");
    expect_err("dtype unknown", "\"dtype\":\"fp16\"",
               "spec.train.dtype: expected \"auto\", \"fp32\" or \"bf16\", got 'fp16'");
    expect_err("dtype not a string", "\"dtype\":16",
               "spec.train.dtype: expected \"auto\", \"fp32\" or \"bf16\"");
    expect_err("target unknown", "\"target_modules\":[\"q_proj\",\"lm_head\"]",
               "spec.train.target_modules[1]: unknown module 'lm_head'");
    expect_err("target twice", "\"target_modules\":[\"q_proj\",\"q_proj\"]",
               "spec.train.target_modules[1]: 'q_proj' listed twice");
    expect_err("target empty", "\"target_modules\":[]", "expected at least one module");
    expect_err("target regex", "\"target_modules\":\".*proj\"", "expected \"all-linear\"");
    expect_err("eval twice", "\"eval_path\":\"/e\",\"val_set_size\":0.1",
               "cannot be used together with 'eval_path'");
    expect_err("no length", "\"num_epochs\":0", "spec.train.num_epochs: must be > 0");
    char big[1200 + sizeof BASE];
    memset(big, 'x', sizeof big);
    memcpy(big, "\"eval_path\":\"", 13);
    big[1100] = '"';
    big[1101] = '\0';
    expect_err("path too long", big, "spec.train.eval_path");
}

static void test_through_jobspec(void)
{
    const char *job = "{\"kind\":\"lora\",\"train\":{" BASE ",\"lora_r\":4}}";
    ft_err_t err = {0};
    cJSON *j = ft_json_parse(job, strlen(job), &err);
    ft_jobspec_t s;
    memset(&s, 0, sizeof s);
    int rc = ft_jobspec_parse(j, &s, &err);
    CHECK(rc == 0 && s.kind == FT_KIND_LORA && s.train.lora_r == 4,
          "a lora job spec carries the parsed train section: %s", err.msg);
    ft_jobspec_free(&s);
    cJSON_Delete(j);
    job = "{\"kind\":\"lora\",\"train\":{" BASE ",\"lora_rank\":4}}";
    j = ft_json_parse(job, strlen(job), &err);
    memset(&s, 0, sizeof s);
    rc = ft_jobspec_parse(j, &s, &err);
    CHECK(rc < 0 && strstr(err.msg, "spec.train.lora_rank: unknown key"),
          "job spec errors name the train key: %s", err.msg);
    ft_jobspec_free(&s);
    cJSON_Delete(j);
}

int main(void)
{
    test_defaults_and_full();
    test_errors();
    test_through_jobspec();
    return test_finish(NULL);
}
