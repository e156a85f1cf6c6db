/*
 * zap.h: ftsched's security layer around the core: the ZAP handler that
 * admits only listed CURVE keys, and the per-request authorisation that runs
 * before sched_handle (who may send what, on which jobs) and after it (what
 * a reply may show).
 */
#ifndef FT_SCHED_ZAP_H
#define FT_SCHED_ZAP_H

#include <stdbool.h>

#include "ft/auth.h"
#include "sched.h"

typedef struct zap zap_t;

/* Binds the ZAP handler (inproc://zeromq.zap.01) in ctx and loads the keys
 * file. NULL with err set on failure. */
zap_t *zap_new(void *ctx, const char *keys_file, ft_err_t *err);
void zap_destroy(zap_t **z);
/* The REP socket to poll for ZMQ_POLLIN. */
void *zap_socket(zap_t *z);
/* Answers every waiting ZAP request. */
void zap_serve(zap_t *z);
/* Reloads the keys file when it changed (checked at most once a second); a
 * file that no longer parses keeps the old table and logs why. */
void zap_maybe_reload(zap_t *z);
/* The identity of an admitted Z85 public key, or NULL (key since removed). */
const ft_identity_t *zap_identity(const zap_t *z, const char *pub);

/* Before sched_handle: 0 = go on with (*frame, *len), possibly replaced by a
 * rewritten copy in *owned (caller frees); -1 = refused, err set and *re the
 * request id for the error reply. */
int authz_request(sched_t *s, const ft_identity_t *who, bool worker_peer, const char *node,
                  const void **frame, size_t *len, char **owned, char *re, size_t relen,
                  ft_err_t *err);
/* After sched_handle: trims replies queued from outbox index `from` on to
 * what who may see (job lists, usage rows). */
void authz_filter_replies(sched_t *s, const ft_identity_t *who, int from);

#endif
