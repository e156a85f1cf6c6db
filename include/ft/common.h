/*
 * ft/common.h: what every ft program shares: error codes that cross the wire,
 * logging, time, strings and safe file writes.
 *
 * Conventions: functions return 0 on success and -1 on failure (or a small enum);
 * failure messages go into a caller-owned ft_err_t so that the caller decides
 * whether to log them, reply with them or print them.
 */
#ifndef FT_COMMON_H
#define FT_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FT_VERSION_STRING "0.1.0"

/* Stable error codes. Their names (ft_errcode_name) travel on the wire and are
 * documented in docs/protocol.md; never renumber or rename one. */
typedef enum {
    FT_OK = 0,
    FT_EBADJSON,     /* "bad_json": not parseable JSON, or duplicate keys */
    FT_EVERSION,     /* "bad_version": protocol version missing or unsupported */
    FT_EUNKNOWNTYPE, /* "unknown_type": message type not in the table */
    FT_EMISSING,     /* "missing_field": a required field is absent */
    FT_EBADFIELD,    /* "bad_field": wrong type, out of bounds, unknown field */
    FT_ETOOLARGE,    /* "too_large": message, spec or field over its size limit */
    FT_ENOTFOUND,    /* "not_found": unknown job id, node, rank */
    FT_EUNSAT,       /* "unsatisfiable": request can never fit the cluster */
    FT_EFORBIDDEN,   /* "forbidden": authenticated but not allowed */
    FT_ESTATE,       /* "bad_state": the object is in a state that forbids this */
    FT_EUNAVAIL,     /* "unavailable": a node needed for this is not connected */
    FT_ENOTREG,      /* "not_registered": worker must send hello first */
    FT_EINTERNAL,    /* "internal": a bug or a storage failure on the server */
    FT_ERR__COUNT
} ft_errcode_t;

const char *ft_errcode_name(ft_errcode_t code);
/* Returns FT_ERR__COUNT for an unknown name. */
ft_errcode_t ft_errcode_from_name(const char *name);

/* An error with a code and a message for people (git style: lower case, no
 * final full stop, quoted subject). */
typedef struct {
    ft_errcode_t code; /* FT_OK when no error */
    char msg[512];     /* human-readable, NUL-terminated */
} ft_err_t;

void ft_err_set(ft_err_t *err, ft_errcode_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ft_err_clear(ft_err_t *err);

/* ---- logging ---- */
typedef enum { FT_LOG_DEBUG, FT_LOG_INFO, FT_LOG_WARN, FT_LOG_ERROR } ft_log_level_t;
void ft_log_init(const char *progname, ft_log_level_t min_level);
void ft_log(ft_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define ft_debug(...) ft_log(FT_LOG_DEBUG, __VA_ARGS__)
#define ft_info(...) ft_log(FT_LOG_INFO, __VA_ARGS__)
#define ft_warn(...) ft_log(FT_LOG_WARN, __VA_ARGS__)
#define ft_error(...) ft_log(FT_LOG_ERROR, __VA_ARGS__)

/* ---- time ---- */
int64_t ft_now_ms(void);  /* CLOCK_REALTIME, milliseconds since the epoch */
int64_t ft_mono_ms(void); /* CLOCK_MONOTONIC, milliseconds */
double ft_now_s(void);    /* CLOCK_REALTIME, seconds with fraction */
/* ISO 8601 UTC ("2026-11-30T06:15:11Z") into buf (at least 21 bytes). */
void ft_fmt_time(int64_t unix_s, char *buf, size_t len);
/* Parses "2026-11-30", "2026-11-30T06:15:11Z", "now", "-7d", "-12h" or a unix
 * time in seconds; returns 0 and sets *out, or -1. */
int ft_parse_time(const char *s, int64_t now_s, int64_t *out);

/* ---- strings ---- */
/* Copies at most len-1 bytes and always terminates; returns strlen(src). */
size_t ft_strlcpy(char *dst, const char *src, size_t len);
/* Trims leading and trailing isspace() characters of s in place; returns the
 * first kept character. */
char *ft_trim(char *s);
/* Copy of s cut to max bytes (ending "..." if cut) with control characters
 * replaced by '?', for echoing untrusted input in error messages. Returns one of
 * FT_SANITIZE_SLOTS static buffers per thread, used in turn: valid until that
 * many more calls (so one message may sanitize up to that many arguments). */
#define FT_SANITIZE_SLOTS 4
const char *ft_sanitize(const char *s, size_t max);
/* Heap printf; NULL on allocation failure. */
char *ft_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- files ---- */
/* Writes data to path atomically: path.tmp.PID, fsync, rename, fsync(dir). */
int ft_write_file_atomic(const char *path, const void *data, size_t len, ft_err_t *err);
/* Reads a whole file (at most max bytes, else FT_ETOOLARGE) into a malloc'd,
 * NUL-terminated buffer. */
char *ft_read_file(const char *path, size_t max, size_t *len_out, ft_err_t *err);
/* mkdir -p with mode 0755. */
int ft_mkdir_p(const char *path, ft_err_t *err);

#endif
