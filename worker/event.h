/*
 * worker/event.h: the event lines a rank writes to its event pipe (the
 * trainer's --event-fd, or $FT_EVENT_FD for exec jobs), parsed, bounded and
 * turned into `progress` messages.
 *
 * A line is one JSON object: {"event":"progress"|"eval"|"checkpoint"|"done",
 * "step":N, ...}. Fields are checked against a table of names and bounds;
 * null counts as absent; an unknown key is reported (the caller warns) but
 * does not drop the line; a bad line is dropped by the caller with a warning.
 * Costs: one strict JSON parse per line (lines are at most EVENT_LINE_MAX).
 */
#ifndef FT_WORKER_EVENT_H
#define FT_WORKER_EVENT_H

#include <stdbool.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "ft/common.h"

#define EVENT_LINE_MAX 4096            /* longest accepted line, bytes, without '\n' */
#define EVENT_MESSAGE_MAX 256          /* progress.message bound from docs/protocol.md */
#define EVENT_STEP_MAX 1000000000000LL /* steps and total_steps upper bound */

typedef enum { EVENT_PROGRESS = 0, EVENT_EVAL, EVENT_CHECKPOINT, EVENT_DONE } event_kind_t;

/* Optional numbers of a progress message, in docs/protocol.md order. */
typedef enum {
    EVENT_LOSS = 0,
    EVENT_LR,
    EVENT_TOKENS_PER_S,
    EVENT_EVAL_LOSS,
    EVENT_GRAD_NORM,
    EVENT_EPOCH,
    EVENT_ELAPSED_S,
    EVENT_ETA_S,
    EVENT_NUM__COUNT
} event_num_t;

typedef struct {
    event_kind_t kind;                   /* the "event" field */
    int64_t step;                        /* optimiser step, >= 0 */
    int64_t total_steps;                 /* valid when has_total */
    bool has_total;                      /* "total_steps" was given */
    double num[EVENT_NUM__COUNT];        /* valid where has_num bit i is set */
    uint32_t has_num;                    /* bit event_num_t */
    int64_t peak_mem_mb;                 /* valid when has_peak_mem */
    bool has_peak_mem;                   /* "peak_mem_mb" was given */
    char message[EVENT_MESSAGE_MAX + 1]; /* UTF-8, no control bytes; "" = none */
    char unknown_key[64];                /* first key not in the table; "" = none */
} event_t;

/* Parses one line (without its '\n'). -1 with err naming the field on
 * garbage, a missing or out-of-bounds field, or an unknown event. */
int event_parse_line(const char *line, size_t len, event_t *ev, ft_err_t *err);

/* The `progress` message for ev. last_total is used when the event has no
 * total_steps (checkpoint, done); the step itself when last_total < 0.
 * NULL on allocation failure. */
cJSON *event_to_progress(const event_t *ev, int64_t job_id, int64_t attempt, int rank,
                         int64_t last_total);

/* Copies src into dst (size cap) as valid UTF-8 with control bytes made
 * spaces, cut at a character boundary; returns dst. */
char *event_clean_text(char *dst, size_t cap, const char *src);

#endif
