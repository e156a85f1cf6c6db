/*
 * test_spec_docs.c: keeps the examples and the documentation honest: every
 * jobs/lora-*.json parses as a job spec, the complete example in
 * docs/job-spec.md parses, and every key of the train section (as
 * ft_trainspec_to_json writes them) has a row in the docs' tables.
 * Usage: test_spec_docs SOURCE_ROOT
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft/jobspec.h"
#include "ft/json.h"
#include "testutil.h"

static void parse_spec_file(const char *path)
{
    ft_err_t err = {0};
    size_t len = 0;
    char *buf = ft_read_file(path, FT_SPEC_MAX_BYTES, &len, &err);
    cJSON *j = buf ? ft_json_parse(buf, len, &err) : NULL;
    ft_jobspec_t s;
    memset(&s, 0, sizeof s);
    int rc = j ? ft_jobspec_parse(j, &s, &err) : -1;
    CHECK(rc == 0 && s.kind == FT_KIND_LORA, "'%s' is a valid lora spec%s%s", path, rc ? ": " : "",
          rc ? err.msg : "");
    ft_jobspec_free(&s);
    cJSON_Delete(j);
    free(buf);
}

int main(int argc, char **argv)
{
    char pat[1200], doc[1200];
    ft_err_t err = {0};
    if (argc != 2) {
        fprintf(stderr, "usage: test_spec_docs SOURCE_ROOT\n");
        return 2;
    }
    snprintf(pat, sizeof pat, "%s/jobs/lora-*.json", argv[1]);
    glob_t g;
    int grc = glob(pat, 0, NULL, &g);
    CHECK(grc == 0 && g.gl_pathc >= 3, "found %zu example lora specs", grc ? 0 : g.gl_pathc);
    for (size_t i = 0; grc == 0 && i < g.gl_pathc; i++)
        parse_spec_file(g.gl_pathv[i]);
    if (grc == 0)
        globfree(&g);

    snprintf(doc, sizeof doc, "%s/docs/job-spec.md", argv[1]);
    size_t len = 0;
    char *text = ft_read_file(doc, 1 << 20, &len, &err);
    CHECK(text != NULL, "docs/job-spec.md read: %s", err.msg);
    if (!text)
        return test_finish(NULL);

    /* the complete example: the last ```json block */
    char *start = NULL, *p = text;
    while ((p = strstr(p, "```json\n")))
        start = p++ + strlen("```json\n");
    char *end = start ? strstr(start, "\n```") : NULL;
    CHECK(start && end, "docs have a json example");
    if (start && end) {
        cJSON *j = ft_json_parse(start, (size_t)(end - start), &err);
        ft_jobspec_t s;
        memset(&s, 0, sizeof s);
        int rc = j ? ft_jobspec_parse(j, &s, &err) : -1;
        CHECK(rc == 0, "the docs' complete example is a valid spec%s%s", rc ? ": " : "",
              rc ? err.msg : "");
        ft_jobspec_free(&s);
        cJSON_Delete(j);
    }

    /* every train key documented */
    ft_trainspec_t t;
    ft_trainspec_defaults(&t);
    t.n_datasets = 1;
    cJSON *keys = ft_trainspec_to_json(&t);
    int missing = 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, keys)
    {
        char row[96];
        snprintf(row, sizeof row, "| `%s` |", k->string);
        if (!strstr(text, row)) {
            printf("  not documented: %s\n", k->string);
            missing++;
        }
    }
    CHECK(missing == 0, "all %d train keys have a row in docs/job-spec.md",
          cJSON_GetArraySize(keys));
    cJSON_Delete(keys);
    /* and the top-level keys of include/ft/jobspec.h */
    static const char *const top[] = {
        "kind",
        "name",
        "priority",
        "gpus",
        "gpus_per_node",
        "nodes",
        "device",
        "gpu_model",
        "gpu_mem_gb",
        "time_limit_s",
        "max_retries",
        "requeue_on_failure",
        "command",
        "env",
        "cwd",
        "train",
        NULL,
    };
    missing = 0;
    for (int i = 0; top[i]; i++) {
        char row[96];
        snprintf(row, sizeof row, "| `%s` |", top[i]);
        if (!strstr(text, row)) {
            printf("  not documented: %s\n", top[i]);
            missing++;
        }
    }
    CHECK(missing == 0, "all top-level keys have a row in docs/job-spec.md");
    free(text);
    return test_finish(NULL);
}
