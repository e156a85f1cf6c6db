/*
 * curve.h: the client side of CURVE for ftctl and ftworker, as one inline
 * call (the shared library does not link ZeroMQ). Settings come from
 * $FT_KEY and $FT_SERVER_KEY (ft_curve_client_env); with neither set the
 * socket stays plain and a secure ftsched will not complete its handshake.
 */
#ifndef FT_CURVE_H
#define FT_CURVE_H

#include <string.h>
#include <zmq.h>

#include "ft/auth.h"

/* Sets keys already read (ft_curve_client_env) on sock; nothing when on is
 * false. Call after zmq_socket and before zmq_connect. 0, or -1 with err set. */
static inline int ft_curve_client_set(void *sock, const ft_keypair_t *kp, const char *server_pub,
                                      bool on, ft_err_t *err)
{
    if (on && (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_pub, FT_Z85_KEY_LEN) < 0 ||
               zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, kp->pub, FT_Z85_KEY_LEN) < 0 ||
               zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp->secret, FT_Z85_KEY_LEN) < 0)) {
        ft_err_set(err, FT_EINTERNAL, "cannot set CURVE keys: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

/* Reads the keys from the environment and sets them on sock. 0, or -1 with
 * err set. */
static inline int ft_curve_client_apply(void *sock, ft_err_t *err)
{
    ft_keypair_t kp;
    char server_pub[FT_Z85_KEY_LEN + 1];
    bool on = false;

    if (ft_curve_client_env(&kp, server_pub, &on, err) < 0)
        return -1;
    int rc = ft_curve_client_set(sock, &kp, server_pub, on, err);
    memset(&kp, 0, sizeof(kp));
    return rc;
}

#endif
