/*
 * worker/wrdv.h: ftworker's half of the rendezvous relay (docs/protocol.md,
 * "Rendezvous"). A rank writes {"event":"rendezvous","blob":B} on its event
 * socket; the worker turns it into a `rendezvous` message stamped with the
 * rank's job, attempt and rank (the rank cannot claim another's), and writes
 * the scheduler's `rendezvous_reply` back to every rank of that job and
 * attempt on this node as one line
 * {"event":"rendezvous_reply","attempt":A,"blobs":[...]}.
 * Costs: one JSON parse of lines that mention "rendezvous"; the reply is
 * written with a bounded wait (it is at most one protocol frame long).
 */
#ifndef FT_WORKER_WRDV_H
#define FT_WORKER_WRDV_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "ft/common.h"

#define WRDV_WRITE_TIMEOUT_MS 2000 /* a rank that does not read its reply is stopped */

/* 0: not a rendezvous line (parse it as an event); 1: a rendezvous line,
 * blob (cap bytes) filled; -1: a malformed rendezvous line, err says why. */
int wrdv_event(const char *line, size_t len, char *blob, size_t cap, ft_err_t *err);

/* The `rendezvous` message for the scheduler; NULL on out of memory. */
cJSON *wrdv_request(int64_t job_id, int64_t attempt, int rank, const char *blob);

/* The line (with '\n', malloc'd) for the ranks from a validated
 * rendezvous_reply; NULL with err when a blob is not base64 of at most
 * FT_RDV_BLOB_MAX bytes. */
char *wrdv_reply_line(const cJSON *msg, ft_err_t *err);

/* Writes the whole line to fd, waiting at most timeout_ms for room. */
int wrdv_deliver(int fd, const char *line, size_t len, int timeout_ms, ft_err_t *err);

#endif
