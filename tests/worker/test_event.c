/*
 * tests/worker/test_event.c: the event-line parser: each event kind, bounds,
 * garbage, unknown events and keys, and the progress message it becomes
 * (which must pass the protocol validator).
 */
#include <string.h>

#include "check.h"
#include "event.h"
#include "ft/proto.h"

static int parse(const char *line, event_t *ev, ft_err_t *err)
{
    ft_err_clear(err);
    return event_parse_line(line, strlen(line), ev, err);
}

/* The progress message for ev is accepted by the central validator. */
static bool valid_progress(const event_t *ev, int64_t last_total, char *printed, size_t cap)
{
    cJSON *m = event_to_progress(ev, 7, 2, 1, last_total);
    ft_msg_type_t t;
    ft_err_t err = {0};
    bool ok = m && ft_proto_validate(m, &t, &err) == 0 && t == FT_MSG_PROGRESS;
    char *s = m ? cJSON_PrintUnformatted(m) : NULL;
    snprintf(printed, cap, "%s%s%s", s ? s : "(null)", ok ? "" : " -> ", ok ? "" : err.msg);
    cJSON_free(s);
    cJSON_Delete(m);
    return ok;
}

int main(void)
{
    ft_log_init("test_event", FT_LOG_WARN);
    event_t ev;
    ft_err_t err = {0};
    char p[2048];

    CHECK(parse("{\"event\":\"progress\",\"step\":10,\"total_steps\":100,\"loss\":1.25,"
                "\"lr\":0.0002,\"tokens_per_s\":1500.5,\"grad_norm\":0.7,\"epoch\":0.1,"
                "\"elapsed_s\":12,\"eta_s\":108,\"peak_mem_mb\":2048,\"message\":\"warm\"}",
                &ev, &err) == 0 &&
              ev.kind == EVENT_PROGRESS && ev.step == 10 && ev.total_steps == 100 &&
              ev.num[EVENT_LOSS] == 1.25 && ev.peak_mem_mb == 2048 &&
              strcmp(ev.message, "warm") == 0 && ev.unknown_key[0] == '\0',
          "full progress line parsed (%s)", err.msg);
    CHECK(valid_progress(&ev, -1, p, sizeof(p)) && strstr(p, "\"job_id\":7") &&
              strstr(p, "\"attempt\":2") && strstr(p, "\"rank\":1") && strstr(p, "\"loss\":1.25"),
          "progress message validates: %s", p);

    CHECK(parse("{\"event\":\"progress\",\"step\":1,\"total_steps\":2,\"peak_mem_mb\":812.6}", &ev,
                &err) == 0 &&
              ev.has_peak_mem && ev.peak_mem_mb == 813,
          "a fractional peak_mem_mb (as ft-train writes it) is rounded: %lld",
          (long long)ev.peak_mem_mb);
    CHECK(parse("{\"event\":\"progress\",\"step\":1,\"total_steps\":2,\"eval_loss\":null}", &ev,
                &err) == 0 &&
              !(ev.has_num & (1u << EVENT_EVAL_LOSS)),
          "null counts as absent");
    CHECK(parse("{\"event\":\"eval\",\"step\":5,\"total_steps\":10,\"eval_loss\":2.5}", &ev,
                &err) == 0 &&
              ev.kind == EVENT_EVAL && ev.num[EVENT_EVAL_LOSS] == 2.5,
          "eval event parsed");
    CHECK(valid_progress(&ev, -1, p, sizeof(p)) && strstr(p, "\"eval_loss\":2.5"),
          "eval becomes progress with eval_loss: %s", p);
    CHECK(parse("{\"event\":\"checkpoint\",\"step\":50,\"path\":\"out/checkpoint-50\"}", &ev,
                &err) == 0 &&
              strcmp(ev.message, "checkpoint at step 50: out/checkpoint-50") == 0 && !ev.has_total,
          "checkpoint event becomes a message: '%s'", ev.message);
    CHECK(valid_progress(&ev, 100, p, sizeof(p)) && strstr(p, "\"total_steps\":100"),
          "checkpoint progress uses the last known total_steps: %s", p);
    CHECK(parse("{\"event\":\"done\",\"step\":100,\"adapter\":\"out/adapter\",\"eval_loss\":1.1}",
                &ev, &err) == 0 &&
              strcmp(ev.message, "done: adapter in out/adapter") == 0,
          "done event: '%s'", ev.message);
    CHECK(valid_progress(&ev, -1, p, sizeof(p)) && strstr(p, "\"total_steps\":100"),
          "done without any total uses its step: %s", p);
    CHECK(parse("{\"event\":\"progress\",\"step\":1,\"total_steps\":2,\"tokens\":5}", &ev, &err) ==
                  0 &&
              strcmp(ev.unknown_key, "tokens") == 0,
          "unknown key reported, line kept");

    /* a long message is cut to 256 bytes on a character boundary, controls removed */
    char line[EVENT_LINE_MAX + 100];
    char msg[600] = "";
    for (int i = 0; i < 150; i++)
        strcat(msg, "\xC3\xA9"); /* 300 bytes of é */
    snprintf(line, sizeof(line),
             "{\"event\":\"progress\",\"step\":1,\"total_steps\":1,"
             "\"message\":\"a\\u0001b%s\"}",
             msg);
    CHECK(parse(line, &ev, &err) == 0 && strlen(ev.message) <= 256 &&
              strncmp(ev.message, "a b\xC3\xA9", 5) == 0 && (strlen(ev.message) - 3) % 2 == 0,
          "message cut to %zu bytes without splitting a character, control byte made a space",
          strlen(ev.message));
    CHECK(valid_progress(&ev, -1, p, sizeof(p)), "cut message still validates");

    static const struct {
        const char *line;
        const char *needle;
    } bad[] = {
        {"not json", ""},
        {"[1,2]", "not a JSON object"},
        {"{\"step\":1,\"total_steps\":2}", "event"},
        {"{\"event\":\"bogus\",\"step\":1}", "unknown event"},
        {"{\"event\":\"progress\",\"total_steps\":2}", "step"},
        {"{\"event\":\"progress\",\"step\":1}", "total_steps"},
        {"{\"event\":\"progress\",\"step\":-1,\"total_steps\":2}", "step"},
        {"{\"event\":\"progress\",\"step\":1.5,\"total_steps\":2}", "step"},
        {"{\"event\":\"progress\",\"step\":1,\"total_steps\":2,\"loss\":\"x\"}", "loss"},
        {"{\"event\":\"progress\",\"step\":1,\"total_steps\":2,\"loss\":1e999}", "loss"},
        {"{\"event\":\"progress\",\"step\":1,\"total_steps\":2,\"lr\":-1}", "lr"},
        {"{\"event\":\"progress\",\"step\":1,\"total_steps\":2,\"peak_mem_mb\":-1}", "peak_mem_mb"},
        {"{\"event\":\"progress\",\"step\":1,\"step\":2,\"total_steps\":2}", ""},
        {"{\"event\":\"eval\",\"step\":1}", "eval_loss"},
        {"{\"event\":\"progress\",\"step\":1,\"total_steps\":2} trailing", ""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i].line, &ev, &err);
        CHECK(rc == -1 && err.msg[0] && strstr(err.msg, bad[i].needle), "rejected: %s -> %s",
              bad[i].line, err.msg);
    }
    memset(line, ' ', sizeof(line));
    CHECK(event_parse_line(line, EVENT_LINE_MAX + 1, &ev, &err) == -1 && err.code == FT_ETOOLARGE,
          "over-long line rejected: %s", err.msg);
    return check_exit();
}
