/*
 * ft/json.h: strict JSON on top of cJSON, and typed field access that produces
 * the errors every input path needs ("field 'x': expected an integer").
 *
 * Strict means: the whole buffer is one JSON value (trailing garbage is an
 * error), no object anywhere holds the same key twice, nesting is bounded.
 */
#ifndef FT_JSON_H
#define FT_JSON_H

#include <cjson/cJSON.h>
#include "ft/common.h"

#define FT_JSON_MAX_DEPTH 64

/* Parses len bytes of buf strictly. NULL with err set (FT_EBADJSON) on failure. */
cJSON *ft_json_parse(const char *buf, size_t len, ft_err_t *err);
/* Returns the first duplicate key found below obj (as "a.b.key"), or NULL. */
const char *ft_json_find_duplicate(const cJSON *obj);

/* Typed getters. Each returns 0 on success; 1 when the field is absent and
 * not required (out left unchanged); -1 with err set (FT_EMISSING or
 * FT_EBADFIELD, naming ctx.name) otherwise. ctx is a prefix like "spec.train"
 * used in messages; NULL for top level. */
int ft_json_get_int(const cJSON *obj, const char *ctx, const char *name, bool required, int64_t min,
                    int64_t max, int64_t *out, ft_err_t *err);
int ft_json_get_num(const cJSON *obj, const char *ctx, const char *name, bool required, double min,
                    double max, double *out, ft_err_t *err);
int ft_json_get_bool(const cJSON *obj, const char *ctx, const char *name, bool required, bool *out,
                     ft_err_t *err);
/* *out points into obj (not copied); max_len bounds strlen. */
int ft_json_get_str(const cJSON *obj, const char *ctx, const char *name, bool required,
                    size_t max_len, const char **out, ft_err_t *err);
/* Fails naming the first key of obj not in the NULL-terminated allowed list. */
int ft_json_check_keys(const cJSON *obj, const char *ctx, const char *const *allowed,
                       ft_err_t *err);

/* Prints compactly into a malloc'd string (cJSON_PrintUnformatted). */
char *ft_json_print(const cJSON *obj);
/* Writes obj, printed formatted (plus a final newline when newline), to the
 * file dir/name atomically; 0, or -1 with err set (a NULL obj counts as out
 * of memory, so a failed build can be passed straight in). */
int ft_json_write_file(const char *dir, const char *name, const cJSON *obj, bool newline,
                       ft_err_t *err);

#endif
