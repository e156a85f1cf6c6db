/*
 * rendezvous.h: ftsched as the meeting point of a gang's ranks
 * (docs/protocol.md, "Rendezvous"). Each rank of an attempt hands in one
 * blob through its worker; when all world_size blobs of the attempt are in,
 * every worker of the gang gets one `rendezvous_reply` with all of them.
 *
 * Invariants: an exchange is keyed by (job, attempt) and accepted only from
 * the node that runs that rank of the job's current attempt, so a stale rank
 * of an earlier attempt never reaches a newer one (its worker is told to stop
 * it instead). State is in memory only: a scheduler restart mid-exchange
 * leaves the ranks to time out, which fails and requeues the attempt.
 * Costs: O(open exchanges) to find one, O(world) memory of blobs each; the
 * entry is freed as soon as the reply is queued.
 */
#ifndef FT_SCHED_RENDEZVOUS_H
#define FT_SCHED_RENDEZVOUS_H

#include <cjson/cJSON.h>

#include "sched_int.h"

/* Handles a validated `rendezvous` from worker node. 0: taken (and the
 * reply queued when it completed the set); 1: stale or foreign (the caller
 * stops that rank), err says why; -1: storage failure. */
int sched_rdv_handle(sched_t *s, const char *node, const cJSON *msg, ft_err_t *err);

/* Exchanges open for s (tests and `ftsched` diagnostics). */
int sched_rdv_open_count(const sched_t *s);

#endif
