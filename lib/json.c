/*
 * json.c: strict JSON parsing on top of cJSON, and typed getters whose error
 * messages name the field ("spec.gpus: expected an integer in [1, 1024]").
 *
 * Strictness is enforced by a grammar pass over the raw bytes before cJSON
 * sees them (RFC 8259 grammar, valid UTF-8 in strings, nesting <= 64), so
 * that cJSON's leniencies (leading zeros, "1.", trailing bytes, unbounded
 * depth) never reach a handler; duplicate keys are found afterwards by sorting
 * each object's keys. Costs: O(n) scan, O(k log k) per object of k keys.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft/json.h"

/* ---- the grammar pass ---- */

typedef struct {
    const unsigned char *p;   /* next byte */
    const unsigned char *end; /* one past the last byte */
    const char *why;          /* reason of the first failure */
} jscan_t;

static void js_ws(jscan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int js_fail(jscan_t *s, const char *why)
{
    if (!s->why)
        s->why = why;
    return -1;
}

static int js_hex4(jscan_t *s, unsigned *out)
{
    unsigned v = 0;

    if (s->end - s->p < 4)
        return js_fail(s, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        unsigned char c = s->p[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return js_fail(s, "bad \\u escape");
    }
    s->p += 4;
    *out = v;
    return 0;
}

/* One UTF-8 sequence starting at s->p (first byte >= 0x80). */
static int js_utf8(jscan_t *s)
{
    unsigned char c = *s->p;
    int n;
    unsigned cp, min;

    if (c >= 0xC2 && c <= 0xDF) {
        n = 1;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return js_fail(s, "invalid UTF-8 in a string");
    }
    if (s->end - s->p <= n)
        return js_fail(s, "invalid UTF-8 in a string");
    for (int i = 1; i <= n; i++) {
        if ((s->p[i] & 0xC0) != 0x80)
            return js_fail(s, "invalid UTF-8 in a string");
        cp = (cp << 6) | (s->p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return js_fail(s, "invalid UTF-8 in a string");
    s->p += n + 1;
    return 0;
}

static int js_string(jscan_t *s)
{
    s->p++; /* opening quote */
    while (s->p < s->end) {
        unsigned char c = *s->p;

        if (c == '"') {
            s->p++;
            return 0;
        }
        if (c < 0x20)
            return js_fail(s, "control character in a string");
        if (c == '\\') {
            s->p++;
            if (s->p >= s->end)
                break;
            c = *s->p++;
            if (c == 'u') {
                unsigned u, lo;

                if (js_hex4(s, &u) < 0)
                    return -1;
                if (u == 0)
                    return js_fail(s, "\\u0000 in a string");
                if (u >= 0xDC00 && u <= 0xDFFF)
                    return js_fail(s, "lone low surrogate in a string");
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u')
                        return js_fail(s, "lone high surrogate in a string");
                    s->p += 2;
                    if (js_hex4(s, &lo) < 0)
                        return -1;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return js_fail(s, "bad surrogate pair in a string");
                }
            } else if (!strchr("\"\\/bfnrt", c) || c == '\0') {
                return js_fail(s, "bad escape in a string");
            }
            continue;
        }
        if (c >= 0x80) {
            if (js_utf8(s) < 0)
                return -1;
            continue;
        }
        s->p++;
    }
    return js_fail(s, "unterminated string");
}

static int js_digits(jscan_t *s)
{
    const unsigned char *start = s->p;

    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > start ? 0 : js_fail(s, "bad number");
}

static int js_number(jscan_t *s)
{
    if (*s->p == '-')
        s->p++;
    if (s->p >= s->end)
        return js_fail(s, "bad number");
    if (*s->p == '0') {
        s->p++;
        if (s->p < s->end && *s->p >= '0' && *s->p <= '9')
            return js_fail(s, "number with a leading zero");
    } else if (js_digits(s) < 0) {
        return -1;
    }
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (js_digits(s) < 0)
            return -1;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (js_digits(s) < 0)
            return -1;
    }
    return 0;
}

static int js_literal(jscan_t *s, const char *lit)
{
    size_t n = strlen(lit);

    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return js_fail(s, "unexpected character");
    s->p += n;
    return 0;
}

static int js_value(jscan_t *s, int depth)
{
    js_ws(s);
    if (s->p >= s->end)
        return js_fail(s, "unexpected end of input");
    switch (*s->p) {
    case '{':
    case '[': {
        unsigned char close = *s->p == '{' ? '}' : ']';
        bool obj = close == '}';

        if (depth >= FT_JSON_MAX_DEPTH)
            return js_fail(s, "nesting deeper than 64");
        s->p++;
        js_ws(s);
        if (s->p < s->end && *s->p == close) {
            s->p++;
            return 0;
        }
        for (;;) {
            if (obj) {
                js_ws(s);
                if (s->p >= s->end || *s->p != '"')
                    return js_fail(s, "expected a string key");
                if (js_string(s) < 0)
                    return -1;
                js_ws(s);
                if (s->p >= s->end || *s->p != ':')
                    return js_fail(s, "expected ':'");
                s->p++;
            }
            if (js_value(s, depth + 1) < 0)
                return -1;
            js_ws(s);
            if (s->p >= s->end)
                return js_fail(s, "unexpected end of input");
            if (*s->p == ',') {
                s->p++;
                continue;
            }
            if (*s->p == close) {
                s->p++;
                return 0;
            }
            return js_fail(s, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    case '"':
        return js_string(s);
    case 't':
        return js_literal(s, "true");
    case 'f':
        return js_literal(s, "false");
    case 'n':
        return js_literal(s, "null");
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
            return js_number(s);
        return js_fail(s, "unexpected character");
    }
}

/* ---- duplicates ---- */

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends ".key" to path (bounded); returns the previous length to restore. */
static size_t path_push(char *path, size_t cap, const char *key)
{
    size_t n = strlen(path);

    snprintf(path + n, cap - n, "%s%s", n ? "." : "", key ? key : "[]");
    return n;
}

static int find_dup(const cJSON *node, char *path, size_t cap)
{
    if (cJSON_IsObject(node)) {
        size_t k = 0, i;
        const cJSON *c;
        const char **keys;

        for (c = node->child; c; c = c->next)
            k++;
        if (k > 1) {
            keys = malloc(k * sizeof(*keys));
            if (!keys)
                return -1;
            i = 0;
            for (c = node->child; c; c = c->next)
                keys[i++] = c->string ? c->string : "";
            qsort(keys, k, sizeof(*keys), cmp_keys);
            for (i = 1; i < k; i++) {
                if (strcmp(keys[i - 1], keys[i]) == 0) {
                    path_push(path, cap, keys[i]);
                    free(keys);
                    return 1;
                }
            }
            free(keys);
        }
        for (c = node->child; c; c = c->next) {
            size_t n = path_push(path, cap, c->string);

            if (find_dup(c, path, cap))
                return 1;
            path[n] = '\0';
        }
    } else if (cJSON_IsArray(node)) {
        const cJSON *c;

        for (c = node->child; c; c = c->next)
            if (find_dup(c, path, cap))
                return 1;
    }
    return 0;
}

const char *ft_json_find_duplicate(const cJSON *obj)
{
    static _Thread_local char path[512];

    path[0] = '\0';
    if (!obj)
        return NULL;
    if (find_dup(obj, path, sizeof(path)) != 0)
        return path;
    return NULL;
}

cJSON *ft_json_parse(const char *buf, size_t len, ft_err_t *err)
{
    jscan_t s = {(const unsigned char *)buf, (const unsigned char *)buf + len, NULL};
    char *copy = NULL;
    cJSON *root = NULL;
    const char *dup;

    if (!buf) {
        ft_err_set(err, FT_EBADJSON, "no input");
        return NULL;
    }
    if (js_value(&s, 0) < 0)
        goto bad;
    js_ws(&s);
    if (s.p != s.end) {
        js_fail(&s, "trailing data after the JSON value");
        goto bad;
    }
    /* cJSON needs a NUL-terminated copy; the scan above rejected raw NULs
     * (they are control characters inside strings and invalid outside). */
    copy = malloc(len + 1);
    if (!copy) {
        ft_err_set(err, FT_EINTERNAL, "out of memory parsing JSON");
        return NULL;
    }
    memcpy(copy, buf, len);
    copy[len] = '\0';
    root = cJSON_ParseWithOpts(copy, NULL, true);
    free(copy);
    if (!root) {
        ft_err_set(err, FT_EBADJSON, "invalid JSON");
        return NULL;
    }
    dup = ft_json_find_duplicate(root);
    if (dup) {
        ft_err_set(err, FT_EBADJSON, "duplicate key '%s'", ft_sanitize(dup, 64));
        cJSON_Delete(root);
        return NULL;
    }
    return root;
bad:
    ft_err_set(err, FT_EBADJSON, "invalid JSON at byte %zu: %s",
               (size_t)(s.p - (const unsigned char *)buf), s.why ? s.why : "syntax error");
    return NULL;
}

/* ---- typed getters ---- */

/* "spec.gpus" or "field 'gpus'" into buf, for messages. */
static const char *fname(char *buf, size_t len, const char *ctx, const char *name)
{
    if (ctx && *ctx)
        snprintf(buf, len, "%s.%s", ctx, name);
    else
        snprintf(buf, len, "field '%s'", name);
    return buf;
}

/* Shared front half of every getter: 1 absent-optional, -1 missing, 0 found. */
static int lookup(const cJSON *obj, const char *ctx, const char *name, bool required,
                  const cJSON **item, ft_err_t *err)
{
    char fb[160];

    *item = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
    if (!*item) {
        if (!required)
            return 1;
        ft_err_set(err, FT_EMISSING, "%s: required field missing",
                   fname(fb, sizeof(fb), ctx, name));
        return -1;
    }
    return 0;
}

int ft_json_get_int(const cJSON *obj, const char *ctx, const char *name, bool required, int64_t min,
                    int64_t max, int64_t *out, ft_err_t *err)
{
    const cJSON *it;
    char fb[160];
    double v;
    int rc = lookup(obj, ctx, name, required, &it, err);

    if (rc != 0)
        return rc;
    v = it->valuedouble;
    if (!cJSON_IsNumber(it) || !isfinite(v) || v != floor(v) || v < -9007199254740992.0 ||
        v > 9007199254740992.0 || (int64_t)v < min || (int64_t)v > max) {
        ft_err_set(err, FT_EBADFIELD, "%s: expected an integer in [%lld, %lld]",
                   fname(fb, sizeof(fb), ctx, name), (long long)min, (long long)max);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

int ft_json_get_num(const cJSON *obj, const char *ctx, const char *name, bool required, double min,
                    double max, double *out, ft_err_t *err)
{
    const cJSON *it;
    char fb[160];
    int rc = lookup(obj, ctx, name, required, &it, err);

    if (rc != 0)
        return rc;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < min ||
        it->valuedouble > max) {
        ft_err_set(err, FT_EBADFIELD, "%s: expected a number in [%g, %g]",
                   fname(fb, sizeof(fb), ctx, name), min, max);
        return -1;
    }
    *out = it->valuedouble;
    return 0;
}

int ft_json_get_bool(const cJSON *obj, const char *ctx, const char *name, bool required, bool *out,
                     ft_err_t *err)
{
    const cJSON *it;
    char fb[160];
    int rc = lookup(obj, ctx, name, required, &it, err);

    if (rc != 0)
        return rc;
    if (!cJSON_IsBool(it)) {
        ft_err_set(err, FT_EBADFIELD, "%s: expected true or false",
                   fname(fb, sizeof(fb), ctx, name));
        return -1;
    }
    *out = cJSON_IsTrue(it);
    return 0;
}

int ft_json_get_str(const cJSON *obj, const char *ctx, const char *name, bool required,
                    size_t max_len, const char **out, ft_err_t *err)
{
    const cJSON *it;
    char fb[160];
    int rc = lookup(obj, ctx, name, required, &it, err);

    if (rc != 0)
        return rc;
    if (!cJSON_IsString(it) || !it->valuestring) {
        ft_err_set(err, FT_EBADFIELD, "%s: expected a string", fname(fb, sizeof(fb), ctx, name));
        return -1;
    }
    if (strlen(it->valuestring) > max_len) {
        ft_err_set(err, FT_ETOOLARGE, "%s: longer than %zu bytes", fname(fb, sizeof(fb), ctx, name),
                   max_len);
        return -1;
    }
    *out = it->valuestring;
    return 0;
}

int ft_json_check_keys(const cJSON *obj, const char *ctx, const char *const *allowed, ft_err_t *err)
{
    const cJSON *c;

    if (!cJSON_IsObject(obj)) {
        ft_err_set(err, FT_EBADFIELD, "%s: expected an object", ctx && *ctx ? ctx : "message");
        return -1;
    }
    for (c = obj->child; c; c = c->next) {
        bool ok = false;

        for (const char *const *a = allowed; a && *a; a++) {
            if (c->string && strcmp(*a, c->string) == 0) {
                ok = true;
                break;
            }
        }
        if (!ok) {
            if (ctx && *ctx)
                ft_err_set(err, FT_EBADFIELD, "%s.%s: unknown key", ctx,
                           ft_sanitize(c->string ? c->string : "", 64));
            else
                ft_err_set(err, FT_EBADFIELD, "unknown field '%s'",
                           ft_sanitize(c->string ? c->string : "", 64));
            return -1;
        }
    }
    return 0;
}

char *ft_json_print(const cJSON *obj)
{
    return obj ? cJSON_PrintUnformatted(obj) : NULL;
}

int ft_json_write_file(const char *dir, const char *name, const cJSON *obj, bool newline,
                       ft_err_t *err)
{
    int rc = -1;
    char *path = ft_asprintf("%s/%s", dir, name);
    char *text = obj ? cJSON_Print(obj) : NULL;
    size_t n;

    if (!path || !text) {
        ft_err_set(err, FT_EINTERNAL, "out of memory writing '%s/%s'", dir, name);
        goto out;
    }
    n = strlen(text);
    if (newline) {
        char *nl = realloc(text, n + 2);

        if (!nl) {
            ft_err_set(err, FT_EINTERNAL, "out of memory writing '%s'", path);
            goto out;
        }
        text = nl;
        text[n++] = '\n';
        text[n] = '\0';
    }
    rc = ft_write_file_atomic(path, text, n, err);
out:
    free(path);
    free(text);
    return rc;
}
