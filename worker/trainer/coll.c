/*
 * coll.c: the world-of-one collective (coll.h). With one rank a sum is the
 * value itself and a broadcast from rank 0 is a no-op, so every call returns
 * at once; anything else is a programmer error reported as -1.
 */
#include <stdlib.h>

#include "coll.h"

static int single_allreduce_f32(coll_t *c, float *buf, size_t n)
{
    (void)buf;
    (void)n;
    return c->world == 1 ? 0 : -1;
}

static int single_allreduce_f64(coll_t *c, double *buf, size_t n)
{
    (void)buf;
    (void)n;
    return c->world == 1 ? 0 : -1;
}

static int single_broadcast(coll_t *c, void *buf, size_t bytes, int root)
{
    (void)buf;
    (void)bytes;
    return root == 0 && c->world == 1 ? 0 : -1;
}

static int single_barrier(coll_t *c)
{
    return c->world == 1 ? 0 : -1;
}

static void single_destroy(coll_t *c)
{
    free(c);
}

coll_t *coll_single(void)
{
    coll_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->name = "single";
    c->rank = 0;
    c->world = 1;
    c->allreduce_sum_f32 = single_allreduce_f32;
    c->allreduce_sum_f64 = single_allreduce_f64;
    c->broadcast = single_broadcast;
    c->barrier = single_barrier;
    c->destroy = single_destroy;
    return c;
}

void coll_destroy(coll_t **pc)
{
    if (*pc) {
        (*pc)->destroy(*pc);
        *pc = NULL;
    }
}
