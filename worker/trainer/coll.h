/*
 * coll.h: the collective operations the training loop needs across ranks of
 * one data-parallel job, behind a table of function pointers so that a TCP
 * ring (CPU) or NCCL (CUDA) backend slots in later. Every rank calls the same
 * operations in the same order with the same sizes; the calls block until all
 * ranks took part.
 *
 * coll_single() is the world-of-one implementation: every operation is the
 * identity (sum over one rank), so the loop runs unchanged on one rank.
 * Cost: O(n) per call for a ring, O(1) for single.
 */
#ifndef FT_COLL_H
#define FT_COLL_H

#include <stddef.h>

typedef struct coll coll_t;

struct coll {
    const char *name;   /* "single", "ring", "nccl" */
    int rank;           /* this process, 0 .. world-1 */
    int world;          /* ranks in the job */
    /* buf (n) = sum over ranks of buf; 0 or -1 on a transport failure */
    int (*allreduce_sum_f32)(coll_t *c, float *buf, size_t n);
    /* the same for doubles (losses, token counts: exact below 2^53) */
    int (*allreduce_sum_f64)(coll_t *c, double *buf, size_t n);
    /* buf (bytes) of rank root copied to every rank */
    int (*broadcast)(coll_t *c, void *buf, size_t bytes, int root);
    int (*barrier)(coll_t *c);
    void (*destroy)(coll_t *c);
    void *impl;         /* backend state */
};

/* The world-of-one collective; NULL on out of memory. */
coll_t *coll_single(void);
/* Calls c->destroy and nulls *c. */
void coll_destroy(coll_t **c);

#endif
