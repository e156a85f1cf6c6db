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

#include <stddef.h>

#include "coll.h"
#include "ft/common.h"

#define COLL_NCCL_ID_HEX 256  /* hex characters of an ncclUniqueId (128 bytes) */

typedef struct {
    int rank;            /* 0 .. world-1 */
    int world;           /* ranks in the job */
    int device;          /* CUDA device index of this rank (visible devices) */
    const char *id_hex;  /* rank 0's unique id, COLL_NCCL_ID_HEX hex characters */
    double timeout_s;    /* deadline of init and of every collective; <= 0: none */
} coll_nccl_opts_t;

/* Writes a new unique id as hex into buf (len > COLL_NCCL_ID_HEX); rank 0
 * only. 0 or -1 with err. */
int coll_nccl_make_id(char *buf, size_t len, ft_err_t *err);

/* Joins the communicator (blocks until every rank joined or the deadline).
 * NULL with err on a bad option, an NCCL error or a time-out. */
coll_t *coll_nccl_new(const coll_nccl_opts_t *o, ft_err_t *err);

/* The last error of c's collectives ("" when none). */
const char *coll_nccl_error(const coll_t *c);

#endif
