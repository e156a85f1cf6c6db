/*
 * worker/event.c: event-line parser and its translation to `progress`.
 *
 * Two tables drive it: the event kinds (name, whether total_steps and
 * eval_loss are required) and the optional numeric fields (name, bounds).
 * Costs: O(line length).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "event.h"
#include "logread.h"
#include "ft/json.h"
#include "ft/proto.h"

static const struct {
    const char *name;    /* value of "event" */
    bool need_total;     /* total_steps required */
    bool need_eval_loss; /* eval_loss required */
} kinds[] = {
    [EVENT_PROGRESS] = {"progress", true, false},
    [EVENT_EVAL] = {"eval", false, true},
    [EVENT_CHECKPOINT] = {"checkpoint", false, false},
    [EVENT_DONE] = {"done", false, false},
};
#define N_KINDS (sizeof(kinds) / sizeof(kinds[0]))

static const struct {
    const char *name; /* JSON key, same in the event and in `progress` */
    double min, max;  /* inclusive bounds */
} nums[EVENT_NUM__COUNT] = {
    [EVENT_LOSS] = {"loss", -1e30, 1e30},
    [EVENT_LR] = {"lr", 0, 1e6},
    [EVENT_TOKENS_PER_S] = {"tokens_per_s", 0, 1e15},
    [EVENT_EVAL_LOSS] = {"eval_loss", -1e30, 1e30},
    [EVENT_GRAD_NORM] = {"grad_norm", 0, 1e30},
    [EVENT_EPOCH] = {"epoch", 0, 1e9},
    [EVENT_ELAPSED_S] = {"elapsed_s", 0, 1e11},
    [EVENT_ETA_S] = {"eta_s", 0, 1e11},
};

/* Keys that are not numbers in nums[]. */
static const char *const other_keys[] = {
    "event", "step", "total_steps", "peak_mem_mb", "message", "path", "adapter", NULL,
};

static bool known_key(const char *k)
{
    for (int i = 0; other_keys[i]; i++)
        if (strcmp(k, other_keys[i]) == 0)
            return true;
    for (int i = 0; i < EVENT_NUM__COUNT; i++)
        if (strcmp(k, nums[i].name) == 0)
            return true;
    return false;
}

/* The field, or NULL when absent or null. */
static const cJSON *field(const cJSON *o, const char *name)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    return (f && !cJSON_IsNull(f)) ? f : NULL;
}

char *event_clean_text(char *dst, size_t cap, const char *src)
{
    if (cap == 0)
        return dst;
    size_t len = strlen(src);
    /* UTF-8 output is at most its escaped size, so escaped_max bounds bytes */
    char tmp[3 * (EVENT_LINE_MAX + 16) + 1];
    if (len > EVENT_LINE_MAX + 16)
        len = EVENT_LINE_MAX + 16;
    size_t out_len = 0;
    logread_sanitize((const unsigned char *)src, len, len, false, cap - 1, tmp, &out_len);
    for (size_t i = 0; i < out_len; i++)
        if ((unsigned char)tmp[i] < 0x20 || tmp[i] == 0x7f)
            tmp[i] = ' ';
    memcpy(dst, tmp, out_len + 1);
    return dst;
}

int event_parse_line(const char *line, size_t len, event_t *ev, ft_err_t *err)
{
    int rc = -1;
    cJSON *o = NULL;
    memset(ev, 0, sizeof(*ev));
    if (len > EVENT_LINE_MAX) {
        ft_err_set(err, FT_ETOOLARGE, "event line longer than %d bytes", EVENT_LINE_MAX);
        goto out;
    }
    o = ft_json_parse(line, len, err);
    if (!o)
        goto out;
    if (!cJSON_IsObject(o)) {
        ft_err_set(err, FT_EBADJSON, "event line is not a JSON object");
        goto out;
    }
    const char *kind = NULL;
    if (ft_json_get_str(o, NULL, "event", true, 32, &kind, err) < 0)
        goto out;
    size_t k = 0;
    while (k < N_KINDS && strcmp(kinds[k].name, kind) != 0)
        k++;
    if (k == N_KINDS) {
        ft_err_set(err, FT_EBADFIELD, "event: unknown event '%s'", ft_sanitize(kind, 32));
        goto out;
    }
    ev->kind = (event_kind_t)k;
    if (ft_json_get_int(o, NULL, "step", true, 0, EVENT_STEP_MAX, &ev->step, err) < 0)
        goto out;
    if (field(o, "total_steps") || kinds[k].need_total) {
        if (ft_json_get_int(o, NULL, "total_steps", true, 0, EVENT_STEP_MAX, &ev->total_steps,
                            err) < 0)
            goto out;
        ev->has_total = true;
    }
    for (int i = 0; i < EVENT_NUM__COUNT; i++) {
        bool need = i == EVENT_EVAL_LOSS && kinds[k].need_eval_loss;
        if (!field(o, nums[i].name) && !need)
            continue;
        if (ft_json_get_num(o, NULL, nums[i].name, true, nums[i].min, nums[i].max, &ev->num[i],
                            err) < 0)
            goto out;
        if (!isfinite(ev->num[i])) {
            ft_err_set(err, FT_EBADFIELD, "%s: not a finite number", nums[i].name);
            goto out;
        }
        ev->has_num |= 1u << i;
    }
    if (field(o, "peak_mem_mb")) {
        /* a fraction is fine (ft-train reports MiB as a float); the wire wants an integer */
        double mb = 0;
        if (ft_json_get_num(o, NULL, "peak_mem_mb", true, 0, 1099511627776.0, &mb, err) < 0)
            goto out;
        ev->peak_mem_mb = llround(mb);
        ev->has_peak_mem = true;
    }
    const char *msg = NULL, *path = NULL;
    if (field(o, "message") &&
        ft_json_get_str(o, NULL, "message", true, EVENT_LINE_MAX, &msg, err) < 0)
        goto out;
    const char *path_key = ev->kind == EVENT_DONE ? "adapter" : "path";
    if ((ev->kind == EVENT_CHECKPOINT || ev->kind == EVENT_DONE) && field(o, path_key) &&
        ft_json_get_str(o, NULL, path_key, true, EVENT_LINE_MAX, &path, err) < 0)
        goto out;
    char text[EVENT_LINE_MAX + 64];
    if (ev->kind == EVENT_CHECKPOINT)
        snprintf(text, sizeof(text), "checkpoint at step %lld%s%s%s%s", (long long)ev->step,
                 path ? ": " : "", path ? path : "", msg ? ": " : "", msg ? msg : "");
    else if (ev->kind == EVENT_DONE)
        snprintf(text, sizeof(text), "done%s%s%s%s", path ? ": adapter in " : "", path ? path : "",
                 msg ? ": " : "", msg ? msg : "");
    else
        snprintf(text, sizeof(text), "%s", msg ? msg : "");
    event_clean_text(ev->message, sizeof(ev->message), text);
    for (const cJSON *it = o->child; it; it = it->next) {
        if (!known_key(it->string)) {
            ft_strlcpy(ev->unknown_key, ft_sanitize(it->string, 48), sizeof(ev->unknown_key));
            break;
        }
    }
    rc = 0;
out:
    cJSON_Delete(o);
    return rc;
}

cJSON *event_to_progress(const event_t *ev, int64_t job_id, int64_t attempt, int rank,
                         int64_t last_total)
{
    cJSON *m = ft_proto_new(FT_MSG_PROGRESS, NULL);
    if (!m)
        return NULL;
    int64_t total = ev->has_total ? ev->total_steps : last_total >= 0 ? last_total : ev->step;
    bool ok = cJSON_AddNumberToObject(m, "job_id", (double)job_id) &&
              cJSON_AddNumberToObject(m, "attempt", (double)attempt) &&
              cJSON_AddNumberToObject(m, "rank", rank) &&
              cJSON_AddNumberToObject(m, "step", (double)ev->step) &&
              cJSON_AddNumberToObject(m, "total_steps", (double)total);
    for (int i = 0; ok && i < EVENT_NUM__COUNT; i++)
        if (ev->has_num & (1u << i))
            ok = cJSON_AddNumberToObject(m, nums[i].name, ev->num[i]) != NULL;
    if (ok && ev->has_peak_mem)
        ok = cJSON_AddNumberToObject(m, "peak_mem_mb", (double)ev->peak_mem_mb) != NULL;
    if (ok && ev->message[0])
        ok = cJSON_AddStringToObject(m, "message", ev->message) != NULL;
    if (!ok) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}
