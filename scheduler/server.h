/*
 * server.h: the ZeroMQ reactor around the scheduler core.
 */
#ifndef FT_SCHED_SERVER_H
#define FT_SCHED_SERVER_H

#include "sched.h"

/* Binds endpoint and serves until SIGTERM or SIGINT. 0 on a clean stop. */
int server_run(sched_t *s, const char *endpoint, ft_err_t *err);

#endif
