/*
 * coll_nccl.h: the NCCL implementation of coll.h for ranks that each own one
 * CUDA device. Rank 0 makes a unique id (coll_nccl_make_id), which reaches
 * the other ranks through the scheduler's rendezvous as 256 hex characters;
 * every rank then calls coll_nccl_new with it.
 *
 * The collectives run on the cuda backend's training stream, so a gradient
 * all-reduce is ordered after the backward pass without a host round trip.
 * Buffers may be device memory (gradients) or host memory (losses, token
 * counts): host buffers are staged through a device buffer.
 * Fail-fast: communicators are non-blocking; every call waits through
 * nccl_wait (async error polling with a deadline), and an error or a
 * time-out aborts the communicator (ncclCommAbort). After that every call
 * returns -1 at once, so the rank exits with an error instead of hanging.
 */
#ifndef FT_COLL_NCCL_H
#define FT_COLL_NCCL_H

#include <stdbool.h>
#include <stddef.h>

#include "coll.h"
#include "ft/common.h"

#define COLL_NCCL_ID_HEX 256 /* hex characters of an ncclUniqueId (128 bytes) */

typedef struct {
    int rank;           /* 0 .. world-1 */
    int world;          /* ranks in the job */
    int device;         /* CUDA device index of this rank (visible devices) */
    const char *id_hex; /* rank 0's unique id, COLL_NCCL_ID_HEX hex characters */
    double timeout_s;   /* deadline of init and of every collective; <= 0: none */
} coll_nccl_opts_t;

/* Writes a new unique id as hex into buf (len > COLL_NCCL_ID_HEX); rank 0
 * only. 0 or -1 with err. */
int coll_nccl_make_id(char *buf, size_t len, ft_err_t *err);

/* Joins the communicator (blocks until every rank joined or the deadline).
 * NULL with err on a bad option, an NCCL error or a time-out. */
coll_t *coll_nccl_new(const coll_nccl_opts_t *o, ft_err_t *err);

/* The last error of c's collectives ("" when none). */
const char *coll_nccl_error(const coll_t *c);

/* true when c is an NCCL collective that was aborted (a peer failed or hung):
 * the rank should exit as "peer lost", not as a training error */
bool coll_nccl_broken(const coll_t *c);

#define COLL_NCCL_DEFAULT_TIMEOUT_S 600 /* per operation; FT_NCCL_TIMEOUT_S overrides */

/* The collective of a CUDA rank in ft-train run: coll_single() for a world of
 * one; otherwise the rendezvous (rdv.h, over event_fd or $FT_RDV_DIR) carries
 * rank 0's unique id, as base64 of its 128 bytes (the other ranks hand in
 * "AA==", one placeholder byte), then coll_nccl_new on `device`. NULL with err. */
coll_t *coll_nccl_open(int event_fd, int rank, int world, int device, ft_err_t *err);

#endif
