/*
 * ft/dist.h: what the trainer and the scheduler agree on for distributed
 * (multi-rank) jobs beyond the wire protocol.
 */
#ifndef FT_DIST_H
#define FT_DIST_H

/* Exit code of a rank whose gang broke under it: a peer died or hung (a
 * collective failed or timed out) or the rendezvous never completed. The
 * scheduler counts it as an infrastructure failure of the attempt (requeue
 * within max_retries), because the rank itself did nothing wrong; the rank
 * that did (a crash, a kill) reports its own reason. */
#define FT_EXIT_PEER_LOST 75

#endif
