/*
 * worker/logread.h: reads a chunk of a rank's log file for `log_read`, as a
 * string that is safe to put in a JSON message.
 *
 * Invariants: the returned data is valid UTF-8 with no NUL byte; every invalid
 * byte (and NUL) became U+FFFD; a character is never split across two chunks
 * (a chunk stops before an incomplete sequence unless the file ends there);
 * the JSON-escaped size of data stays under LOGREAD_ESCAPED_MAX so that the
 * log_data frame stays well below FT_MSG_MAX_BYTES.
 * Costs: one open, fstat and pread of at most max_bytes + 3; O(bytes) scan.
 */
#ifndef FT_WORKER_LOGREAD_H
#define FT_WORKER_LOGREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ft/common.h"

#define LOGREAD_ESCAPED_MAX (768 * 1024) /* bytes of JSON string body per chunk */

typedef struct {
    char *data;          /* malloc'd, NUL-terminated, valid UTF-8 */
    size_t len;          /* strlen(data) */
    int64_t next_offset; /* file offset where the next read starts */
    bool at_end;         /* next_offset reached the file size seen by this read */
} logread_chunk_t;

/* Reads at most max_bytes of path from offset. -1 with err set when the file
 * cannot be opened or read, or offset lies beyond its end. */
int logread_read(const char *path, int64_t offset, int64_t max_bytes, logread_chunk_t *out,
                 ft_err_t *err);
void logread_chunk_free(logread_chunk_t *c);

/* The scanner behind logread_read, exposed for tests. Converts in[0..len) to
 * UTF-8 in out (capacity at least 3 * len + 1), consuming at most limit input
 * bytes (the first character may exceed it, so that a read always advances)
 * and producing at most escaped_max JSON-escaped bytes. more_follows says the
 * input continues after len, so an incomplete final sequence is left for the
 * next chunk. Returns the bytes consumed; *out_len gets the output length. */
size_t logread_sanitize(const unsigned char *in, size_t len, size_t limit, bool more_follows,
                        size_t escaped_max, char *out, size_t *out_len);

#endif
