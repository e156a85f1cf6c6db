/*
 * test_jobspec.c: parsing and validating job specs (top level and exec).
 */
#include <stdlib.h>
#include <string.h>

#include "ft/jobspec.h"
#include "ft/json.h"
#include "check.h"

static int parse(const char *text, ft_jobspec_t *s, ft_err_t *err)
{
    cJSON *j = ft_json_parse(text, strlen(text), err);
    int rc;

    if (!j) {
        memset(s, 0, sizeof(*s));
        return -1;
    }
    rc = ft_jobspec_parse(j, s, err);
    cJSON_Delete(j);
    return rc;
}

static void bad(const char *text, ft_errcode_t code, const char *want_msg)
{
    ft_jobspec_t s;
    ft_err_t err = {0};
    int rc = parse(text, &s, &err);

    CHECK(rc < 0 && err.code == code && strstr(err.msg, want_msg) != NULL, "refuse %s: %s '%s'",
          text, ft_errcode_name(err.code), err.msg);
    ft_jobspec_free(&s);
}

static void test_exec(void)
{
    ft_jobspec_t s;
    ft_err_t err = {0};
    int rc = parse(
        "{\"kind\":\"exec\",\"command\":[\"/bin/echo\",\"hi\"],\"gpus\":4,\"gpus_per_node\":2,"
        "\"nodes\":2,\"priority\":5,\"device\":\"gpu\",\"gpu_model\":\"H100\",\"gpu_mem_gb\":40,"
        "\"time_limit_s\":3600,\"max_retries\":1,\"requeue_on_failure\":true,"
        "\"env\":{\"A\":\"1\",\"B_2\":\"x=y\"},\"cwd\":\"/tmp\"}",
        &s, &err);

    CHECK(rc == 0, "parse a full exec spec%s%s", rc ? ": " : "", rc ? err.msg : "");
    CHECK(s.kind == FT_KIND_EXEC && s.argc == 2 && strcmp(s.argv[1], "hi") == 0 &&
              s.argv[2] == NULL,
          "argv copied and NULL-terminated");
    CHECK(strcmp(s.name, "echo") == 0, "default name is the program's basename: '%s'", s.name);
    CHECK(s.gpus == 4 && s.gpus_per_node == 2 && s.nodes == 2 && s.priority == 5, "resources read");
    CHECK(s.device == FT_DEV_GPU && strcmp(s.gpu_model, "H100") == 0 && s.gpu_mem_gb == 40,
          "device constraints read");
    CHECK(s.time_limit_s == 3600 && s.max_retries == 1 && s.requeue_on_failure, "limits read");
    CHECK(s.envc == 2 && strcmp(s.env[0], "A=1") == 0 && strcmp(s.env[1], "B_2=x=y") == 0,
          "env as K=V");
    CHECK(strcmp(s.cwd, "/tmp") == 0, "cwd read");
    ft_jobspec_free(&s);
    ft_jobspec_free(&s);
    CHECK(s.argv == NULL, "ft_jobspec_free is idempotent");

    rc = parse("{\"command\":[\"true\"]}", &s, &err);
    CHECK(rc == 0 && s.kind == FT_KIND_EXEC && s.gpus == 1 && s.max_retries == 3 &&
              s.device == FT_DEV_ANY && !s.requeue_on_failure && strcmp(s.name, "true") == 0,
          "defaults: kind inferred exec, 1 gpu, 3 retries, device any");
    ft_jobspec_free(&s);
}

static void test_lora(void)
{
    ft_jobspec_t s;
    ft_err_t err = {0};
    int rc =
        parse("{\"kind\":\"lora\",\"name\":\"tune\",\"gpus\":2,\"train\":{\"base_model\":\"/m\","
              "\"datasets\":[\"/d.jsonl\"],\"output_dir\":\"/o\",\"lora_r\":16}}",
              &s, &err);

    CHECK(rc == 0 && s.kind == FT_KIND_LORA && s.train.lora_r == 16 && strcmp(s.name, "tune") == 0,
          "lora spec with a train section%s%s", rc ? ": " : "", rc ? err.msg : "");
    ft_jobspec_free(&s);
    bad("{\"kind\":\"lora\"}", FT_EMISSING, "spec.train: required for kind 'lora'");
    bad("{\"kind\":\"lora\",\"command\":[\"x\"],\"train\":{}}", FT_EBADFIELD,
        "spec.command: not allowed");
    bad("{\"kind\":\"lora\",\"train\":{\"base_model\":\"/m\",\"datasets\":[\"/"
        "d\"],\"output_dir\":\"/o\",\"lora_r\":0}}",
        FT_EBADFIELD, "spec.train.lora_r");
}

static void test_errors(void)
{
    char big_argv[4000], *p;

    bad("[]", FT_EBADFIELD, "spec: expected an object");
    bad("{\"command\":[\"x\"],\"foo\":1}", FT_EBADFIELD, "spec.foo: unknown key");
    bad("{}", FT_EMISSING, "spec.kind");
    bad("{\"kind\":\"batch\",\"command\":[\"x\"]}", FT_EBADFIELD,
        "spec.kind: 'batch' is not one of 'exec', 'lora'");
    bad("{\"kind\":\"exec\"}", FT_EMISSING, "spec.command: required for kind 'exec'");
    bad("{\"kind\":\"exec\",\"command\":[]}", FT_EBADFIELD, "spec.command: expected 1 to 256");
    bad("{\"kind\":\"exec\",\"command\":\"ls\"}", FT_EBADFIELD, "spec.command: expected an array");
    bad("{\"kind\":\"exec\",\"command\":[\"ls\",3]}", FT_EBADFIELD,
        "spec.command[1]: expected a string");
    bad("{\"kind\":\"exec\",\"command\":[\"\"]}", FT_EBADFIELD, "spec.command[0]");
    bad("{\"kind\":\"exec\",\"command\":[\"x\"],\"train\":{}}", FT_EBADFIELD,
        "spec.train: not allowed for kind 'exec'");
    bad("{\"command\":[\"x\"],\"gpus\":0}", FT_EBADFIELD,
        "spec.gpus: expected an integer in [1, 1024]");
    bad("{\"command\":[\"x\"],\"gpus\":2000}", FT_EBADFIELD, "spec.gpus");
    bad("{\"command\":[\"x\"],\"gpus\":1.5}", FT_EBADFIELD, "spec.gpus");
    bad("{\"command\":[\"x\"],\"priority\":1001}", FT_EBADFIELD, "spec.priority");
    bad("{\"command\":[\"x\"],\"max_retries\":-1}", FT_EBADFIELD, "spec.max_retries");
    bad("{\"command\":[\"x\"],\"time_limit_s\":-5}", FT_EBADFIELD, "spec.time_limit_s");
    bad("{\"command\":[\"x\"],\"gpu_mem_gb\":-1}", FT_EBADFIELD, "spec.gpu_mem_gb");
    bad("{\"command\":[\"x\"],\"requeue_on_failure\":1}", FT_EBADFIELD,
        "spec.requeue_on_failure: expected true or false");
    bad("{\"command\":[\"x\"],\"device\":\"tpu\"}", FT_EBADFIELD,
        "spec.device: 'tpu' is not one of");
    bad("{\"command\":[\"x\"],\"device\":\"cpu\",\"gpu_model\":\"A100\"}", FT_EBADFIELD,
        "spec.gpu_model: not allowed with device 'cpu'");
    bad("{\"command\":[\"x\"],\"name\":\"\"}", FT_EBADFIELD, "spec.name");
    bad("{\"command\":[\"x\"],\"name\":\"a\\nb\"}", FT_EBADFIELD, "spec.name");
    bad("{\"command\":[\"x\"],\"name\":"
        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
        FT_ETOOLARGE, "spec.name");
    bad("{\"command\":[\"x\"],\"env\":[]}", FT_EBADFIELD, "spec.env: expected an object");
    bad("{\"command\":[\"x\"],\"env\":{\"1A\":\"x\"}}", FT_EBADFIELD,
        "'1A' is not a variable name");
    bad("{\"command\":[\"x\"],\"env\":{\"A\":1}}", FT_EBADFIELD, "spec.env.A: expected a string");
    bad("{\"command\":[\"x\"],\"env\":{\"FT_RANK\":\"1\"}}", FT_EBADFIELD,
        "spec.env.FT_RANK: reserved");
    bad("{\"command\":[\"x\"],\"env\":{\"CUDA_VISIBLE_DEVICES\":\"0\"}}", FT_EBADFIELD, "reserved");
    bad("{\"command\":[\"x\"],\"cwd\":\"rel/dir\"}", FT_EBADFIELD,
        "spec.cwd: expected an absolute path");
    bad("{\"command\":[\"x\"],\"gpus\":3,\"gpus_per_node\":2}", FT_EBADFIELD,
        "not a multiple of gpus_per_node");
    bad("{\"command\":[\"x\"],\"gpus\":2,\"nodes\":3}", FT_EBADFIELD,
        "spec.nodes: 3 nodes for 2 gpus");
    bad("{\"command\":[\"x\"],\"gpus\":6,\"gpus_per_node\":2,\"nodes\":2}", FT_EBADFIELD,
        "nodes x gpus_per_node");
    bad("{\"command\":[\"x\"],\"gpus\":2,\"gpus_per_node\":4}", FT_EBADFIELD, "spec.gpus_per_node");
    /* 300 arguments: over FT_MAX_ARGV. */
    p = big_argv;
    p += sprintf(p, "{\"command\":[");
    for (int i = 0; i < 300; i++)
        p += sprintf(p, "%s\"a\"", i ? "," : "");
    sprintf(p, "]}");
    bad(big_argv, FT_ETOOLARGE, "spec.command: expected 1 to 256 strings, got 300");
}

int main(void)
{
    test_exec();
    test_lora();
    test_errors();
    return check_done("test_jobspec");
}
