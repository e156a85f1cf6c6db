/*
 * keys_init.h: key generation for 'ftsched init' (and the tests).
 */
#ifndef FT_SCHED_KEYS_INIT_H
#define FT_SCHED_KEYS_INIT_H

#include "ft/auth.h"

/* A fresh CURVE key pair (zmq_curve_keypair). */
int sched_keygen(ft_keypair_t *kp, ft_err_t *err);
/* Creates DIR/server.key, server.pub, admin.key and keys (admin listed as
 * user admin of team). Refuses to overwrite any of them. */
int sched_keys_init(const char *dir, const char *admin, const char *team, ft_err_t *err);

#endif
