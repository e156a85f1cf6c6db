/*
 * safetensors.c: strict reader (read-only mmap) and atomic writer of the
 * safetensors format; the rules are listed in safetensors.h.
 *
 * Invariants of an open st_file_t: tensors[] is sorted by name with unique
 * names; every tensor's data lies inside the mapping; the spans tile
 * [8 + N, file size) exactly. Errors name the file and, where there is one,
 * the tensor.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bf16.h"
#include "ft/json.h"
#include "safetensors.h"

/* dtype table: name, element size, in ST_* order. */
static const struct {
    const char *name; /* as written in headers */
    size_t size;      /* bytes per element */
} dtypes[ST_DTYPE__COUNT] = {
    [ST_BOOL] = {"BOOL", 1},       [ST_U8] = {"U8", 1},           [ST_I8] = {"I8", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_I16] = {"I16", 2},
    [ST_U16] = {"U16", 2},         [ST_F16] = {"F16", 2},         [ST_BF16] = {"BF16", 2},
    [ST_I32] = {"I32", 4},         [ST_U32] = {"U32", 4},         [ST_F32] = {"F32", 4},
    [ST_F64] = {"F64", 8},         [ST_I64] = {"I64", 8},         [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(st_dtype_t d)
{
    return (unsigned)d < ST_DTYPE__COUNT ? dtypes[d].name : NULL;
}

size_t st_dtype_size(st_dtype_t d)
{
    return (unsigned)d < ST_DTYPE__COUNT ? dtypes[d].size : 0;
}

st_dtype_t st_dtype_from_name(const char *name)
{
    for (int i = 0; i < ST_DTYPE__COUNT; i++)
        if (strcmp(dtypes[i].name, name) == 0)
            return (st_dtype_t)i;
    return ST_DTYPE__COUNT;
}

/* ---- scalar conversions ---- */

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float st_bf16_to_f32(uint16_t h)
{
    return ft_bf16_widen(h);
}

uint16_t st_f32_to_bf16(float f)
{
    return ft_bf16_round(f);
}

float st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) /* inf or nan */
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero or subnormal: man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t st_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
    if (a >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below the smallest normal 2^-14: subnormal or zero */
        /* value * 2^24 rounded to nearest even gives the subnormal mantissa */
        float v = bits_f32(a) * 16777216.0f;
        float r = nearbyintf(v); /* default rounding mode: nearest even */
        return (uint16_t)(sign | (uint16_t)r);
    }
    uint32_t m = a + 0xfffu + ((a >> 13) & 1u); /* round to nearest even at bit 13 */
    return (uint16_t)(sign | (uint16_t)(((m >> 13) - (112u << 10))));
}

/* ---- reader ---- */

struct st_file {
    char *path;           /* as opened, for messages */
    void *map;            /* whole file, read-only; NULL when size is 0 */
    size_t size;          /* bytes in the file */
    size_t data_start;    /* 8 + N */
    st_tensor_t *tensors; /* [n], sorted by name */
    int n;
    char **meta_keys; /* [n_meta] */
    char **meta_vals; /* [n_meta] */
    int n_meta;
};

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const st_tensor_t *)a)->name, ((const st_tensor_t *)b)->name);
}

typedef struct {
    size_t begin, end; /* data_offsets */
    int idx;           /* tensor index */
} span_t;

static int cmp_span(const void *a, const void *b)
{
    const span_t *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* A JSON number that is a non-negative integer up to 2^53. */
static int json_u53(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d != floor(d) || d > 9007199254740992.0)
        return -1;
    *out = (uint64_t)d;
    return 0;
}

static void fmt_shape(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < len)
        snprintf(buf + o, len - o, "]");
}

static int parse_entry(st_file_t *f, const cJSON *e, st_tensor_t *t, span_t *sp, ft_err_t *err)
{
    static const char *const keys[] = {"dtype", "shape", "data_offsets", NULL};
    char nm[96]; /* ft_sanitize's buffer is reused by the next call */
    const cJSON *c;
    ft_strlcpy(nm, ft_sanitize(e->string, 80), sizeof nm);
    if (!cJSON_IsObject(e)) {
        ft_err_set(err, FT_EBADFIELD, "'%s': tensor '%s': expected an object", f->path, nm);
        return -1;
    }
    for (c = e->child; c; c = c->next) {
        bool ok = false;
        for (int i = 0; keys[i]; i++)
            ok = ok || strcmp(c->string, keys[i]) == 0;
        if (!ok) {
            ft_err_set(err, FT_EBADFIELD, "'%s': tensor '%s': unknown key '%s'", f->path, nm,
                       ft_sanitize(c->string, 40));
            return -1;
        }
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt || !sh || !of) {
        ft_err_set(err, FT_EMISSING, "'%s': tensor '%s': missing '%s'", f->path, nm,
                   !dt   ? "dtype"
                   : !sh ? "shape"
                         : "data_offsets");
        return -1;
    }
    if (!cJSON_IsString(dt) ||
        (t->dtype = st_dtype_from_name(dt->valuestring)) == ST_DTYPE__COUNT) {
        ft_err_set(err, FT_EBADFIELD, "'%s': tensor '%s': unknown dtype '%s'", f->path, nm,
                   cJSON_IsString(dt) ? ft_sanitize(dt->valuestring, 20) : "(not a string)");
        return -1;
    }
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > ST_MAX_DIMS) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': tensor '%s': shape must be an array of at most %d "
                   "integers",
                   f->path, nm, ST_MAX_DIMS);
        return -1;
    }
    t->ndim = 0;
    uint64_t numel = 1;
    bool overflow = false;
    cJSON_ArrayForEach(c, sh)
    {
        uint64_t d;
        if (json_u53(c, &d) < 0) {
            ft_err_set(err, FT_EBADFIELD,
                       "'%s': tensor '%s': shape entries must be "
                       "non-negative integers",
                       f->path, nm);
            return -1;
        }
        t->shape[t->ndim++] = (int64_t)d;
        if (d != 0 && numel > (UINT64_MAX / 16) / d)
            overflow = true;
        numel *= d;
    }
    uint64_t b, en;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 ||
        json_u53(cJSON_GetArrayItem(of, 0), &b) < 0 ||
        json_u53(cJSON_GetArrayItem(of, 1), &en) < 0 || en < b) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': tensor '%s': data_offsets must be [begin, end] "
                   "with 0 <= begin <= end",
                   f->path, nm);
        return -1;
    }
    uint64_t want = overflow ? UINT64_MAX : numel * dtypes[t->dtype].size;
    if (en - b != want) {
        char s[160];
        fmt_shape(s, sizeof s, t->ndim, t->shape);
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': tensor '%s': data_offsets [%llu, %llu] do not "
                   "match shape %s of %s (%llu bytes)",
                   f->path, nm, (unsigned long long)b, (unsigned long long)en, s,
                   dtypes[t->dtype].name, (unsigned long long)want);
        return -1;
    }
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)want;
    sp->begin = (size_t)b;
    sp->end = (size_t)en;
    return 0;
}

st_file_t *st_open(const char *path, ft_err_t *err)
{
    st_file_t *f = calloc(1, sizeof *f);
    cJSON *root = NULL;
    span_t *spans = NULL;
    int fd = -1;
    struct stat stt;

    if (!f || !(f->path = strdup(path))) {
        ft_err_set(err, FT_EINTERNAL, "'%s': out of memory", path);
        goto fail;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &stt) < 0) {
        ft_err_set(err, FT_ENOTFOUND, "cannot open '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(stt.st_mode)) {
        ft_err_set(err, FT_EBADFIELD, "'%s': not a regular file", path);
        goto fail;
    }
    f->size = (size_t)stt.st_size;
    if (f->size < 8) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': truncated: %zu bytes, the 8-byte header length "
                   "is missing",
                   path, f->size);
        goto fail;
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        ft_err_set(err, FT_EINTERNAL, "cannot map '%s': %s", path, strerror(errno));
        goto fail;
    }
    const unsigned char *p = f->map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | p[i];
    if (n > ST_MAX_HEADER) {
        ft_err_set(err, FT_ETOOLARGE, "'%s': header length %llu is over the %d-byte limit", path,
                   (unsigned long long)n, ST_MAX_HEADER);
        goto fail;
    }
    if (n > f->size - 8) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s': truncated: header length %llu but only %zu bytes "
                   "follow",
                   path, (unsigned long long)n, f->size - 8);
        goto fail;
    }
    f->data_start = 8 + (size_t)n;
    ft_err_t jerr = {0};
    root = ft_json_parse((const char *)p + 8, (size_t)n, &jerr);
    if (!root) {
        ft_err_set(err, FT_EBADJSON, "'%s': bad header: %s", path, jerr.msg);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        ft_err_set(err, FT_EBADJSON, "'%s': bad header: expected a JSON object", path);
        goto fail;
    }
    int cap = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)cap + 1, sizeof *f->tensors);
    spans = calloc((size_t)cap + 1, sizeof *spans);
    if (!f->tensors || !spans) {
        ft_err_set(err, FT_EINTERNAL, "'%s': out of memory", path);
        goto fail;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        if (strcmp(e->string, "__metadata__") == 0) {
            const cJSON *m;
            int nm = cJSON_GetArraySize(e);
            if (!cJSON_IsObject(e)) {
                ft_err_set(err, FT_EBADFIELD, "'%s': __metadata__ must be an object", path);
                goto fail;
            }
            f->meta_keys = calloc((size_t)nm + 1, sizeof(char *));
            f->meta_vals = calloc((size_t)nm + 1, sizeof(char *));
            if (!f->meta_keys || !f->meta_vals) {
                ft_err_set(err, FT_EINTERNAL, "'%s': out of memory", path);
                goto fail;
            }
            cJSON_ArrayForEach(m, e)
            {
                if (!cJSON_IsString(m)) {
                    ft_err_set(err, FT_EBADFIELD,
                               "'%s': __metadata__ '%s': expected a string "
                               "value",
                               path, ft_sanitize(m->string, 60));
                    goto fail;
                }
                f->meta_keys[f->n_meta] = strdup(m->string);
                f->meta_vals[f->n_meta] = strdup(m->valuestring);
                if (!f->meta_keys[f->n_meta++] || !f->meta_vals[f->n_meta - 1]) {
                    ft_err_set(err, FT_EINTERNAL, "'%s': out of memory", path);
                    goto fail;
                }
            }
            continue;
        }
        st_tensor_t *t = &f->tensors[f->n];
        if (parse_entry(f, e, t, &spans[f->n], err) < 0)
            goto fail;
        if (!(t->name = strdup(e->string))) {
            ft_err_set(err, FT_EINTERNAL, "'%s': out of memory", path);
            goto fail;
        }
        spans[f->n].idx = f->n;
        f->n++;
    }
    /* The spans must tile the data area from 0 with no gap and no overlap. */
    qsort(spans, (size_t)f->n, sizeof *spans, cmp_span);
    size_t at = 0;
    for (int i = 0; i < f->n; i++) {
        const st_tensor_t *t = &f->tensors[spans[i].idx];
        if (spans[i].begin != at) {
            ft_err_set(err, FT_EBADFIELD,
                       "'%s': tensor '%s': data_offsets [%zu, %zu] %s "
                       "(expected begin %zu)",
                       path, ft_sanitize(t->name, 80), spans[i].begin, spans[i].end,
                       spans[i].begin < at ? "overlap the previous tensor" : "leave a gap", at);
            goto fail;
        }
        at = spans[i].end;
    }
    if (at != f->size - f->data_start) {
        if (at > f->size - f->data_start)
            ft_err_set(err, FT_EBADFIELD,
                       "'%s': truncated: tensors need %zu data bytes but "
                       "the file has %zu",
                       path, at, f->size - f->data_start);
        else
            ft_err_set(err, FT_EBADFIELD, "'%s': %zu trailing bytes after the last tensor", path,
                       f->size - f->data_start - at);
        goto fail;
    }
    for (int i = 0; i < f->n; i++)
        f->tensors[spans[i].idx].data = p + f->data_start + spans[i].begin;
    qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_name);
    cJSON_Delete(root);
    free(spans);
    close(fd);
    return f;
fail:
    cJSON_Delete(root);
    free(spans);
    if (fd >= 0)
        close(fd);
    st_close(&f);
    return NULL;
}

void st_close(st_file_t **pf)
{
    st_file_t *f = pf ? *pf : NULL;
    if (!f)
        return;
    if (f->map)
        munmap(f->map, f->size);
    if (f->tensors)
        for (int i = 0; i < f->n; i++)
            free((char *)f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->path);
    free(f);
    *pf = NULL;
}

const char *st_path(const st_file_t *f)
{
    return f->path;
}

int st_count(const st_file_t *f)
{
    return f->n;
}

const st_tensor_t *st_tensor_at(const st_file_t *f, int i)
{
    return i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

const st_tensor_t *st_find(const st_file_t *f, const char *name)
{
    st_tensor_t key = {.name = name};
    return bsearch(&key, f->tensors, (size_t)f->n, sizeof key, cmp_name);
}

const char *st_metadata(const st_file_t *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_vals[i];
    return NULL;
}

int st_to_f32(const st_tensor_t *t, float *out, ft_err_t *err)
{
    const unsigned char *p = t->data;
    int64_t n = t->numel;
    switch (t->dtype) {
    case ST_F32:
        memcpy(out, p, (size_t)n * 4);
        return 0;
    case ST_F16:
    case ST_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            out[i] = t->dtype == ST_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
        }
        return 0;
    case ST_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        }
        return 0;
    default:
        ft_err_set(err, FT_EBADFIELD, "tensor '%s': dtype %s cannot be read as floats",
                   ft_sanitize(t->name, 80), dtypes[t->dtype].name);
        return -1;
    }
}

static const st_tensor_t *find_shaped(const st_file_t *f, const char *name, int ndim,
                                      const int64_t *shape, ft_err_t *err)
{
    const st_tensor_t *t = st_find(f, name);
    if (!t) {
        ft_err_set(err, FT_ENOTFOUND, "'%s': tensor '%s' is missing", f->path,
                   ft_sanitize(name, 80));
        return NULL;
    }
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char a[160], b[160];
        fmt_shape(a, sizeof a, t->ndim, t->shape);
        fmt_shape(b, sizeof b, ndim, shape);
        ft_err_set(err, FT_EBADFIELD, "'%s': tensor '%s' has shape %s, expected %s", f->path,
                   ft_sanitize(name, 80), a, b);
        return NULL;
    }
    return t;
}

int st_read_f32(const st_file_t *f, const char *name, int ndim, const int64_t *shape, float *out,
                ft_err_t *err)
{
    const st_tensor_t *t = find_shaped(f, name, ndim, shape, err);
    if (!t)
        return -1;
    if (st_to_f32(t, out, err) < 0) {
        char m[sizeof err->msg];
        ft_strlcpy(m, err->msg, sizeof m);
        ft_err_set(err, FT_EBADFIELD, "'%s': %s", f->path, m);
        return -1;
    }
    return 0;
}

int st_read_i32(const st_file_t *f, const char *name, int ndim, const int64_t *shape, int32_t *out,
                ft_err_t *err)
{
    const st_tensor_t *t = find_shaped(f, name, ndim, shape, err);
    if (!t)
        return -1;
    const unsigned char *p = t->data;
    if (t->dtype == ST_I32) {
        memcpy(out, p, t->nbytes);
        return 0;
    }
    if (t->dtype == ST_I64) {
        for (int64_t i = 0; i < t->numel; i++) {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            if (v < INT32_MIN || v > INT32_MAX) {
                ft_err_set(err, FT_EBADFIELD,
                           "'%s': tensor '%s': value %lld at %lld does not "
                           "fit 32 bits",
                           f->path, ft_sanitize(name, 80), (long long)v, (long long)i);
                return -1;
            }
            out[i] = (int32_t)v;
        }
        return 0;
    }
    ft_err_set(err, FT_EBADFIELD, "'%s': tensor '%s': dtype %s is not an integer type", f->path,
               ft_sanitize(name, 80), dtypes[t->dtype].name);
    return -1;
}

/* ---- writer ---- */

typedef struct {
    char *name;       /* unique */
    st_dtype_t dtype; /* element type */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;    /* numel * dtype size */
    const void *data; /* borrowed, or owned below */
    void *owned;      /* converted copy, freed with the writer */
} wt_t;

struct st_writer {
    wt_t *t; /* [n] */
    int n, cap;
    cJSON *meta; /* "__metadata__" object */
};

st_writer_t *st_writer_new(void)
{
    st_writer_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->meta = cJSON_CreateObject();
    if (!w->meta || !cJSON_AddStringToObject(w->meta, "format", "pt")) {
        cJSON_Delete(w->meta);
        free(w);
        return NULL;
    }
    return w;
}

void st_writer_destroy(st_writer_t **pw)
{
    st_writer_t *w = pw ? *pw : NULL;
    if (!w)
        return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].owned);
    }
    free(w->t);
    cJSON_Delete(w->meta);
    free(w);
    *pw = NULL;
}

static wt_t *writer_push(st_writer_t *w, const char *name, st_dtype_t dtype, int ndim,
                         const int64_t *shape, ft_err_t *err)
{
    if ((unsigned)dtype >= ST_DTYPE__COUNT || ndim < 0 || ndim > ST_MAX_DIMS) {
        ft_err_set(err, FT_EINTERNAL, "tensor '%s': bad dtype or rank", name);
        return NULL;
    }
    if (strcmp(name, "__metadata__") == 0 || name[0] == '\0') {
        ft_err_set(err, FT_EBADFIELD, "tensor name '%s' is reserved or empty", name);
        return NULL;
    }
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) {
            ft_err_set(err, FT_EBADFIELD, "tensor '%s' added twice", name);
            return NULL;
        }
    if (w->n == w->cap) {
        int nc = w->cap ? 2 * w->cap : 16;
        wt_t *nt = realloc(w->t, (size_t)nc * sizeof *nt);
        if (!nt) {
            ft_err_set(err, FT_EINTERNAL, "out of memory");
            return NULL;
        }
        w->t = nt;
        w->cap = nc;
    }
    wt_t *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return NULL;
    }
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            free(t->name);
            ft_err_set(err, FT_EINTERNAL, "tensor '%s': negative dimension", name);
            return NULL;
        }
        t->shape[i] = shape[i];
        numel *= (size_t)shape[i];
    }
    t->dtype = dtype;
    t->ndim = ndim;
    t->nbytes = numel * dtypes[dtype].size;
    w->n++;
    return t;
}

int st_writer_add(st_writer_t *w, const char *name, st_dtype_t dtype, int ndim,
                  const int64_t *shape, const void *data, ft_err_t *err)
{
    wt_t *t = writer_push(w, name, dtype, ndim, shape, err);
    if (!t)
        return -1;
    t->data = data;
    return 0;
}

int st_writer_add_f32(st_writer_t *w, const char *name, st_dtype_t dtype, int ndim,
                      const int64_t *shape, const float *src, ft_err_t *err)
{
    if (dtype != ST_F32 && dtype != ST_F16 && dtype != ST_BF16) {
        ft_err_set(err, FT_EINTERNAL, "tensor '%s': floats cannot be stored as %s", name,
                   st_dtype_name(dtype));
        return -1;
    }
    wt_t *t = writer_push(w, name, dtype, ndim, shape, err);
    if (!t)
        return -1;
    t->owned = malloc(t->nbytes ? t->nbytes : 1);
    if (!t->owned) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    size_t n = t->nbytes / dtypes[dtype].size;
    if (dtype == ST_F32) {
        memcpy(t->owned, src, t->nbytes);
    } else {
        unsigned char *o = t->owned;
        for (size_t i = 0; i < n; i++) {
            uint16_t h = dtype == ST_F16 ? st_f32_to_f16(src[i]) : st_f32_to_bf16(src[i]);
            o[2 * i] = (unsigned char)(h & 0xff);
            o[2 * i + 1] = (unsigned char)(h >> 8);
        }
    }
    t->data = t->owned;
    return 0;
}

int st_writer_set_metadata(st_writer_t *w, const char *key, const char *value, ft_err_t *err)
{
    cJSON *s = cJSON_CreateString(value);
    if (!s) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    if (cJSON_GetObjectItemCaseSensitive(w->meta, key))
        cJSON_ReplaceItemInObjectCaseSensitive(w->meta, key, s);
    else
        cJSON_AddItemToObject(w->meta, key, s);
    return 0;
}

/* Descending alignment (element size), then name: the order of the Rust writer. */
static int cmp_wt(const void *a, const void *b)
{
    const wt_t *x = a, *y = b;
    size_t sx = dtypes[x->dtype].size, sy = dtypes[y->dtype].size;
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t k = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char *d = strdup(path);
    if (!d)
        return -1;
    char *slash = strrchr(d, '/');
    const char *dir = ".";
    if (slash == d)
        dir = "/";
    else if (slash) {
        *slash = '\0';
        dir = d;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = -1;
    if (fd >= 0) {
        rc = fsync(fd);
        close(fd);
    }
    free(d);
    return rc;
}

int st_writer_save(st_writer_t *w, const char *path, ft_err_t *err)
{
    int rc = -1, fd = -1;
    char *hdr = NULL, *tmp = NULL, *padded = NULL;
    cJSON *root = NULL;

    if (w->n > 1)
        qsort(w->t, (size_t)w->n, sizeof *w->t, cmp_wt);
    root = cJSON_CreateObject();
    if (!root)
        goto oom;
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        wt_t *t = &w->t[i];
        cJSON *e = cJSON_CreateObject();
        cJSON *sh = cJSON_CreateArray();
        cJSON *of = cJSON_CreateArray();
        if (!e || !sh || !of) {
            cJSON_Delete(e);
            cJSON_Delete(sh);
            cJSON_Delete(of);
            goto oom;
        }
        cJSON_AddItemToObject(root, t->name, e);
        cJSON_AddStringToObject(e, "dtype", dtypes[t->dtype].name);
        for (int k = 0; k < t->ndim; k++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[k]));
        cJSON_AddItemToObject(e, "shape", sh);
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + t->nbytes)));
        cJSON_AddItemToObject(e, "data_offsets", of);
        off += t->nbytes;
    }
    cJSON *meta = cJSON_Duplicate(w->meta, true);
    if (!meta)
        goto oom;
    cJSON_AddItemToObject(root, "__metadata__", meta);
    hdr = cJSON_PrintUnformatted(root);
    if (!hdr)
        goto oom;
    size_t hl = strlen(hdr), pl = (hl + 7) / 8 * 8;
    padded = malloc(8 + pl);
    if (!padded)
        goto oom;
    for (int i = 0; i < 8; i++)
        padded[i] = (char)(((uint64_t)pl >> (8 * i)) & 0xff);
    memcpy(padded + 8, hdr, hl);
    memset(padded + 8 + hl, ' ', pl - hl);

    tmp = ft_asprintf("%s.tmp.%d", path, (int)getpid());
    if (!tmp)
        goto oom;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot create '%s': %s", tmp, strerror(errno));
        goto out;
    }
    if (write_all(fd, padded, 8 + pl) < 0)
        goto ioerr;
    for (int i = 0; i < w->n; i++)
        if (w->t[i].nbytes && write_all(fd, w->t[i].data, w->t[i].nbytes) < 0)
            goto ioerr;
    if (fsync(fd) < 0)
        goto ioerr;
    if (close(fd) < 0) {
        fd = -1;
        goto ioerr;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        goto out;
    }
    if (fsync_dir_of(path) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot sync the folder of '%s': %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
    goto out;
ioerr:
    ft_err_set(err, FT_EINTERNAL, "cannot write '%s': %s", tmp, strerror(errno));
    goto out;
oom:
    ft_err_set(err, FT_EINTERNAL, "out of memory writing '%s'", path);
out:
    if (fd >= 0)
        close(fd);
    if (rc < 0 && tmp)
        unlink(tmp);
    free(tmp);
    free(hdr);
    free(padded);
    cJSON_Delete(root);
    return rc;
}
