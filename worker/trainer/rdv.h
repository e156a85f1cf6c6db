/*
 * rdv.h: the rendezvous of one attempt's ranks. Each rank hands in one
 * opaque blob (base64 text, at most FT_RDV_BLOB_MAX bytes: rank 0's NCCL
 * unique id, or a rank's TCP address for the ring) and gets back the blobs
 * of all ranks, in rank order. Collective backends call rdv_exchange once
 * when they connect; it blocks until every rank of the attempt took part or
 * the deadline passes.
 *
 * Two transports:
 *  - the worker (default): the event fd given by ftworker is a socket; the
 *    rank writes {"event":"rendezvous","blob":B} on it, ftworker relays it to
 *    ftsched, which answers every rank of the gang with one line
 *    {"event":"rendezvous_reply","attempt":A,"blobs":[...]} on the same fd
 *    (docs/protocol.md, "Rendezvous"). The scheduler scopes the exchange to
 *    (job, attempt), so a stale rank never joins a newer attempt.
 *  - a directory ($FT_RDV_DIR, for runs without a scheduler: benchmarks,
 *    tests), used only when the event fd is not a socket: rank R writes
 *    DIR/blob-R atomically and waits for all the others. The directory must
 *    be fresh for every run.
 * Settings from the environment: FT_ATTEMPT (checked against the reply),
 * FT_RDV_TIMEOUT_S (default 120 s).
 * Cost: one line out and one line of O(world x blob) bytes in.
 */
#ifndef FT_RDV_H
#define FT_RDV_H

#include <stddef.h>
#include <stdint.h>

#include "ft/common.h"

#define RDV_DEFAULT_TIMEOUT_S 120

typedef struct rdv rdv_t;

/* A rendezvous for rank of world over event_fd when it is a stream socket,
 * else through $FT_RDV_DIR.
 * NULL with err when neither transport is usable (the fd is not a socket
 * and no directory is given) or a setting is malformed. */
rdv_t *rdv_new(int event_fd, int rank, int world, ft_err_t *err);
void rdv_destroy(rdv_t **r);

/* Sends my_blob and fills *blobs with world malloc'd strings (rank order;
 * free with rdv_blobs_free). -1 with err on a time-out, a closed fd, a
 * malformed or stale reply, or a blob that is not base64 of the right size. */
int rdv_exchange(rdv_t *r, const char *my_blob, char ***blobs, ft_err_t *err);
void rdv_blobs_free(char ***blobs, int n);

/* The attempt the rendezvous is scoped to (FT_ATTEMPT, 0 when unset) and
 * the job (FT_JOB_ID, 0 when unset): the ring tags its connections with them. */
int64_t rdv_attempt(const rdv_t *r);
int64_t rdv_job(const rdv_t *r);

/* Standard base64 with padding. encode: bytes written without the NUL, or
 * -1 when cap is too small. decode: bytes decoded, -1 on a character that
 * is not base64, bad padding or more than cap bytes. */
long rdv_b64_encode(const void *src, size_t n, char *dst, size_t cap);
long rdv_b64_decode(const char *src, void *dst, size_t cap);

#endif
