/*
 * safetensors.h: the Hugging Face safetensors format: a strict reader over a
 * read-only mmap and an atomic writer.
 *
 * Layout: [u64 little-endian N][N bytes of JSON header][data]. The header maps
 * tensor names to {dtype, shape, data_offsets} plus an optional
 * "__metadata__" string->string map. The reader accepts a file only when the
 * header is at most 100 MB and fits the file, is strict JSON without duplicate
 * keys, each entry's byte span matches prod(shape) * dtype size, the spans
 * tile the data area from 0 with no gaps or overlaps, and the last one ends at
 * the end of the file.
 *
 * Costs: st_open is O(header) plus one mmap (pages come in on first touch);
 * st_find is O(log n); conversions are O(numel). The writer sorts tensors by
 * descending dtype alignment then name (as the Rust writer does), pads the
 * header with spaces to a multiple of 8 and writes path.tmp.PID, fsyncs it,
 * renames it over path and fsyncs the folder.
 */
#ifndef FT_SAFETENSORS_H
#define FT_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ft/common.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100 * 1000 * 1000)

typedef enum {
    ST_BOOL = 0,
    ST_U8,
    ST_I8,
    ST_F8_E5M2,
    ST_F8_E4M3,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_DTYPE__COUNT
} st_dtype_t;

/* "F32", ...; NULL for an invalid value. */
const char *st_dtype_name(st_dtype_t d);
/* Bytes per element; 0 for an invalid value. */
size_t st_dtype_size(st_dtype_t d);
/* ST_DTYPE__COUNT for an unknown name. */
st_dtype_t st_dtype_from_name(const char *name);

typedef struct {
    const char *name;           /* tensor name, owned by the file */
    st_dtype_t dtype;           /* element type */
    int ndim;                   /* 0 (scalar) .. ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS]; /* elements per dimension */
    int64_t numel;              /* product of shape (1 for a scalar) */
    const void *data;           /* first byte inside the mapping (little-endian) */
    size_t nbytes;              /* numel * dtype size */
} st_tensor_t;

typedef struct st_file st_file_t;

/* Opens and validates path. NULL with err naming the file and the reason. */
st_file_t *st_open(const char *path, ft_err_t *err);
void st_close(st_file_t **f);
const char *st_path(const st_file_t *f);
int st_count(const st_file_t *f);
/* Tensors sorted by name; i in [0, st_count). */
const st_tensor_t *st_tensor_at(const st_file_t *f, int i);
/* NULL when absent. */
const st_tensor_t *st_find(const st_file_t *f, const char *name);
/* A "__metadata__" value, NULL when absent. */
const char *st_metadata(const st_file_t *f, const char *key);

/* Converts t (F32, F16, BF16 or F64) to numel floats in out. */
int st_to_f32(const st_tensor_t *t, float *out, ft_err_t *err);
/* Finds name, checks its shape equals shape[0..ndim) (error names the file,
 * the tensor, both shapes), converts into out. */
int st_read_f32(const st_file_t *f, const char *name, int ndim, const int64_t *shape, float *out,
                ft_err_t *err);
/* Same for integer tensors (I32 or I64, values must fit int32). */
int st_read_i32(const st_file_t *f, const char *name, int ndim, const int64_t *shape, int32_t *out,
                ft_err_t *err);

/* Scalar conversions. f32 -> 16 bits rounds to nearest even; NaN stays NaN. */
float st_bf16_to_f32(uint16_t h);
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f);
uint16_t st_f32_to_f16(float f);

/* ---- writer ---- */
typedef struct st_writer st_writer_t;

st_writer_t *st_writer_new(void);
void st_writer_destroy(st_writer_t **w);
/* Adds a tensor whose bytes (numel * dtype size, little-endian) stay owned by
 * the caller and must stay valid until st_writer_save returns. Names must be
 * unique and not "__metadata__". */
int st_writer_add(st_writer_t *w, const char *name, st_dtype_t dtype, int ndim,
                  const int64_t *shape, const void *data, ft_err_t *err);
/* Adds floats stored as dtype (F32, F16 or BF16): converted now into a copy
 * that the writer owns. */
int st_writer_add_f32(st_writer_t *w, const char *name, st_dtype_t dtype, int ndim,
                      const int64_t *shape, const float *src, ft_err_t *err);
/* Sets a "__metadata__" entry ({"format": "pt"} is always written). */
int st_writer_set_metadata(st_writer_t *w, const char *key, const char *value, ft_err_t *err);
/* Writes the file atomically (see top). */
int st_writer_save(st_writer_t *w, const char *path, ft_err_t *err);

#endif
