/*
 * place.h: gang placement. Given the view and a resource request, choose
 * exactly `gpus` devices or none at all.
 */
#ifndef FT_SCHED_PLACE_H
#define FT_SCHED_PLACE_H

#include "view.h"

typedef struct {
    int gpus;              /* ranks, one device each */
    int gpus_per_node;     /* 0 = any */
    int nodes;             /* 0 = any */
    ft_devclass_t device;  /* which device kinds qualify */
    const char *gpu_model; /* "" or NULL = any; else case-insensitive substring */
    int64_t gpu_mem_mb;    /* minimum device memory in MiB; 0 = any */
} place_req_t;

typedef struct {
    int node; /* index into the nodes array */
    int dev;  /* index into that node's devs array */
} place_slot_t;

/* Which devices placement may use. */
typedef enum {
    PLACE_NOW = 0,     /* free devices of ready, connected nodes: can it start now? */
    PLACE_EVER = 1,    /* every device of every known node: can it ever fit? */
    PLACE_DRAINED = 2, /* every device of ready, connected nodes: would it fit once
                        * the running jobs end? */
} place_mode_t;

/* Whether device d satisfies the request's device constraints. */
bool place_dev_matches(const view_dev_t *d, const place_req_t *req);

/* Chooses req->gpus devices: out[r] is rank r's device. Ranks are numbered
 * node by node (nodes in name order) then by device index. mode says which
 * devices count (place_mode_t). Returns 0 when placed, -1 when it does not
 * fit (out undefined). */
int place_find(const view_node_t *nodes, int nnodes, const place_req_t *req, place_mode_t mode,
               place_slot_t *out);

#endif
