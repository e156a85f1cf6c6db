/*
 * view.h: the scheduler's in-memory view of the cluster: known nodes, their
 * devices, and which job holds each device. It is a cache of the database
 * (nodes, devices, open allocations), rebuilt from it at start and after any
 * failed transaction; placement reads it, transactions update it after their
 * rows are written.
 *
 * Invariant: nodes sorted by name, each node's devices sorted by index, so
 * that placement (and hence rank order) is deterministic.
 */
#ifndef FT_SCHED_VIEW_H
#define FT_SCHED_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "ft/jobspec.h"

#define VIEW_MAX_DEVS 64 /* devices per node (hello allows 0..64) */

typedef struct {
    int index;         /* device index on its node */
    char uuid[129];    /* stable id ("GPU-..."), given to CUDA_VISIBLE_DEVICES */
    char model[129];   /* "NVIDIA H100 80GB HBM3", "cpu", ... */
    int64_t memory_mb; /* device memory in MiB */
    char kind[16];     /* "gpu", "emulated" or "cpu" */
    int64_t job_id;    /* job holding an open allocation on it; 0 = free */
} view_dev_t;

typedef struct {
    char name[FT_NAME_MAX + 1];     /* node name (routing id is "w/" + name) */
    char hostname[256];             /* as reported in hello */
    bool ready;                     /* state 'ready' in the database */
    bool connected;                 /* sent hello to this process, not lost since */
    int64_t last_recv;              /* monotonic ms of the last message from it */
    int64_t last_send;              /* monotonic ms of the last message to it */
    int ndevs;                      /* entries used in devs */
    view_dev_t devs[VIEW_MAX_DEVS]; /* sorted by index */
} view_node_t;

#endif
