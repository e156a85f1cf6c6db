/*
 * coll_ring.h: the CPU collective backend (coll.h), a ring over TCP between
 * the rank processes of one attempt.
 *
 * Set-up: every rank listens on an ephemeral port, publishes "host:port"
 * through the rendezvous (rdv.h), connects to its successor and accepts its
 * predecessor. Both ends of a connection first swap a header (magic, job,
 * attempt, rank, world), so a stale rank of an earlier attempt, or any
 * stranger on the port, is turned away.
 * All-reduce: reduce-scatter then all-gather over W chunks; every chunk is
 * summed on one rank in a fixed order and copied to the others, so every
 * rank ends with the same bits. Broadcast: relayed along the ring.
 * Time-outs: each operation has one deadline (FT_COLL_TIMEOUT_S, default
 * 1800 s from the operation's start: long enough for the slowest rank to
 * load a large model or write a checkpoint); a dead peer (EOF, reset) fails the
 * operation at once. A second connection per neighbour carries a heartbeat
 * byte every 0.5 s from a thread of its own; a predecessor silent for
 * FT_COLL_HEARTBEAT_S (default 10 s: stopped, frozen, cut off) breaks the
 * ring at once, even while waiting out a slow peer's compute.
 * Cost: all-reduce of n elements sends 2 (W-1)/W n elements per rank.
 */
#ifndef FT_COLL_RING_H
#define FT_COLL_RING_H

#include <stdbool.h>

#include "coll.h"
#include "ft/common.h"
#include "rdv.h"

#define COLL_RING_DEFAULT_TIMEOUT_S 1800

/* Time spent in collectives since the last call (seconds), for the split
 * of a step into compute and communication; 0 for other backends. */
double coll_ring_take_comm_s(coll_t *c);

/* True when a ring operation failed (a peer died, hung or sent garbage):
 * the rank should exit FT_EXIT_PEER_LOST (ft/dist.h). False for others. */
bool coll_ring_broken(const coll_t *c);

/* Connects rank (of world) to its ring neighbours through rdv. host: the
 * address peers reach this rank at ($FT_COLL_HOST, else the first IPv4
 * address of this host's name, else 127.0.0.1 when NULL). NULL with err. */
coll_t *coll_ring_new(rdv_t *rdv, int rank, int world, const char *host, ft_err_t *err);

/* The collective for a rank: coll_single() for a world of one, else the
 * ring over a rendezvous on event_fd (rdv_new). NULL with err. */
coll_t *coll_open(int event_fd, int rank, int world, ft_err_t *err);

#endif
