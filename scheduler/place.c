/*
 * place.c: gang placement onto the fewest nodes, all or nothing.
 *
 * Policy, for a request of G devices:
 *  - gpus_per_node P given: G/P nodes each with >= P usable devices, chosen
 *    best-fit (fewest usable first) to keep large nodes whole for large jobs;
 *  - nodes N given (no P): the N nodes with the most usable devices, one
 *    device each first, then filling the largest;
 *  - neither: one node if any can hold G (best fit), else the largest nodes
 *    first until G is reached (fewest nodes).
 * Ties break by node name; ranks are then numbered in node-name order and
 * device-index order, so the same view always gives the same ranks.
 * Cost: O(n log n + devices) for n nodes.
 */
#include <stdlib.h>
#include <string.h>

#include "place.h"

typedef struct {
    int node;   /* index into nodes */
    int usable; /* devices usable for this request */
    int take;   /* devices chosen on this node */
} cand_t;

bool place_dev_matches(const view_dev_t *d, const place_req_t *req)
{
    bool is_cpu = strcmp(d->kind, "cpu") == 0;

    if (req->device == FT_DEV_GPU && is_cpu)
        return false;
    if (req->device == FT_DEV_CPU && !is_cpu)
        return false;
    if (req->gpu_model && req->gpu_model[0] && !strcasestr(d->model, req->gpu_model))
        return false;
    if (req->gpu_mem_mb > 0 && d->memory_mb < req->gpu_mem_mb)
        return false;
    return true;
}

/* Fewest usable first, then name order (node index). */
static int by_fit(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;

    if (x->usable != y->usable)
        return x->usable < y->usable ? -1 : 1;
    return x->node - y->node;
}

/* Most usable first, then name order. */
static int by_size(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;

    if (x->usable != y->usable)
        return x->usable > y->usable ? -1 : 1;
    return x->node - y->node;
}

static int by_node(const void *a, const void *b)
{
    return ((const cand_t *)a)->node - ((const cand_t *)b)->node;
}

int place_find(const view_node_t *nodes, int nnodes, const place_req_t *req, place_mode_t mode,
               place_slot_t *out)
{
    cand_t *c = NULL;
    int nc = 0, chosen = 0, need = req->gpus, r = 0, rc = -1;

    if (need < 1 || nnodes <= 0)
        return -1;
    c = calloc((size_t)nnodes, sizeof(*c));
    if (!c)
        return -1;
    for (int i = 0; i < nnodes; i++) {
        int usable = 0;

        if (mode != PLACE_EVER && !(nodes[i].ready && nodes[i].connected))
            continue;
        for (int k = 0; k < nodes[i].ndevs; k++)
            if ((mode != PLACE_NOW || nodes[i].devs[k].job_id == 0) &&
                place_dev_matches(&nodes[i].devs[k], req))
                usable++;
        if (usable > 0)
            c[nc++] = (cand_t){i, usable, 0};
    }

    if (req->gpus_per_node > 0) {
        int per = req->gpus_per_node, k = need / per, m = 0;

        if (need % per != 0)
            goto out;
        qsort(c, (size_t)nc, sizeof(*c), by_fit);
        for (int i = 0; i < nc && m < k; i++) {
            if (c[i].usable >= per) {
                c[i].take = per;
                c[m++] = c[i];
            }
        }
        if (m < k)
            goto out;
        chosen = m;
    } else if (req->nodes > 0) {
        int k = req->nodes, sum = 0, left;

        if (nc < k || need < k)
            goto out;
        qsort(c, (size_t)nc, sizeof(*c), by_size);
        for (int i = 0; i < k; i++)
            sum += c[i].usable;
        if (sum < need)
            goto out;
        for (int i = 0; i < k; i++)
            c[i].take = 1;
        left = need - k;
        for (int i = 0; i < k && left > 0; i++) {
            int more = c[i].usable - 1 < left ? c[i].usable - 1 : left;

            c[i].take += more;
            left -= more;
        }
        chosen = k;
    } else {
        int best = -1, sum = 0;

        for (int i = 0; i < nc; i++)
            if (c[i].usable >= need && (best < 0 || c[i].usable < c[best].usable))
                best = i; /* c is in node order here: the first of equals wins */
        if (best >= 0) {
            c[0] = c[best];
            c[0].take = need;
            chosen = 1;
        } else {
            qsort(c, (size_t)nc, sizeof(*c), by_size);
            for (int i = 0; i < nc && sum < need; i++) {
                c[i].take = c[i].usable < need - sum ? c[i].usable : need - sum;
                sum += c[i].take;
                chosen = i + 1;
            }
            if (sum < need)
                goto out;
        }
    }

    /* Number ranks node by node in name order, devices in index order. */
    qsort(c, (size_t)chosen, sizeof(*c), by_node);
    for (int i = 0; i < chosen; i++) {
        const view_node_t *n = &nodes[c[i].node];
        int got = 0;

        for (int k = 0; k < n->ndevs && got < c[i].take; k++) {
            if ((mode != PLACE_NOW || n->devs[k].job_id == 0) &&
                place_dev_matches(&n->devs[k], req)) {
                out[r++] = (place_slot_t){c[i].node, k};
                got++;
            }
        }
    }
    rc = r == need ? 0 : -1;
out:
    free(c);
    return rc;
}
