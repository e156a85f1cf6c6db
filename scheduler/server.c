/*
 * server.c: ftsched's reactor: one ROUTER socket, one zmq_poll loop with a
 * bounded timeout, sched_cron on every turn. No threads.
 *
 * Every inbound message must be exactly [routing id][one frame]; the frame
 * goes to sched_handle, and the outbox is flushed after it returns (i.e.
 * after its transaction committed). Sends never block: a peer that is gone
 * (EHOSTUNREACH with ROUTER_MANDATORY) or full (EAGAIN) loses that message
 * and is logged; liveness and client retries take it from there.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ft/proto.h"
#include "server.h"

static volatile sig_atomic_t stop_requested; /* set by SIGTERM/SIGINT */

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void flush_outbox(sched_t *s, void *sock)
{
    for (int i = 0; i < sched_outbox_count(s); i++) {
        const sched_msg_t *m = sched_outbox_get(s, i);

        if (zmq_send(sock, m->peer, m->peer_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
            zmq_send(sock, m->payload, strlen(m->payload), ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            bool worker = m->peer_len > 2 && memcmp(m->peer, "w/", 2) == 0;

            /* A dead worker is found by liveness; one line per lost
             * heartbeat would only bury the line that matters. */
            if (worker && !strstr(m->payload, "\"type\":\"heartbeat\""))
                ft_warn("cannot send to worker '%.*s': %s", (int)m->peer_len - 2,
                        (const char *)m->peer + 2, zmq_strerror(e));
            else
                ft_debug("cannot send to %s: %s", worker ? "a worker" : "a client",
                         zmq_strerror(e));
        }
    }
    sched_outbox_clear(s);
}

/* Receives one whole message; returns 0 with peer and frame filled (frame
 * NULL when the message had other than exactly two parts), 1 when nothing
 * is waiting, -1 on a socket error. */
static int recv_one(void *sock, zmq_msg_t *peer, zmq_msg_t *frame, bool *bad_shape)
{
    int more = 0, parts = 1;
    size_t sz = sizeof(more);

    *bad_shape = false;
    if (zmq_msg_recv(peer, sock, ZMQ_DONTWAIT) < 0)
        return zmq_errno() == EAGAIN ? 1 : -1;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
    if (!more) {
        *bad_shape = true;
        return 0;
    }
    if (zmq_msg_recv(frame, sock, 0) < 0)
        return -1;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
    while (more) {
        zmq_msg_t extra;

        zmq_msg_init(&extra);
        zmq_msg_recv(&extra, sock, 0);
        zmq_msg_close(&extra);
        parts++;
        zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
    }
    if (parts > 1)
        *bad_shape = true;
    return 0;
}

int server_run(sched_t *s, const char *endpoint, ft_err_t *err)
{
    void *ctx = zmq_ctx_new(), *sock = NULL;
    int one = 1, linger = 200, rc = -1, hwm = 10000;
    int64_t maxmsg = FT_MSG_MAX_BYTES;
    struct sigaction sa;

    if (!ctx) {
        ft_err_set(err, FT_EINTERNAL, "cannot create a ZeroMQ context: %s", zmq_strerror(errno));
        return -1;
    }
    sock = zmq_socket(ctx, ZMQ_ROUTER);
    if (!sock || zmq_setsockopt(sock, ZMQ_ROUTER_MANDATORY, &one, sizeof(one)) < 0 ||
        /* A restarted worker reconnects with the same "w/NAME": let it take
         * over the stale pipe instead of being refused. */
        zmq_setsockopt(sock, ZMQ_ROUTER_HANDOVER, &one, sizeof(one)) < 0 ||
        zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) < 0 ||
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof(hwm)) < 0 ||
        zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(hwm)) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot set up the ROUTER socket: %s",
                   zmq_strerror(zmq_errno()));
        goto out;
    }
    if (zmq_bind(sock, endpoint) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot listen on '%s': %s", endpoint,
                   zmq_strerror(zmq_errno()));
        goto out;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    ft_info("listening on %s", endpoint);

    while (!stop_requested) {
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&item, 1, sched_next_timeout_ms(s));

        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            ft_err_set(err, FT_EINTERNAL, "poll failed: %s", zmq_strerror(zmq_errno()));
            goto out;
        }
        /* Drain what is waiting, in bounded batches so cron keeps its pace. */
        for (int batch = 0; n > 0 && batch < 1000 && !stop_requested; batch++) {
            zmq_msg_t peer, frame;
            bool bad = false;
            int r;

            zmq_msg_init(&peer);
            zmq_msg_init(&frame);
            r = recv_one(sock, &peer, &frame, &bad);
            if (r == 0) {
                if (bad) {
                    static const char msg[] =
                        "{\"v\":1,\"type\":\"error\",\"code\":\"bad_json\","
                        "\"message\":\"a message must be exactly one frame\"}";
                    zmq_send(sock, zmq_msg_data(&peer), zmq_msg_size(&peer),
                             ZMQ_SNDMORE | ZMQ_DONTWAIT);
                    zmq_send(sock, msg, sizeof(msg) - 1, ZMQ_DONTWAIT);
                } else {
                    sched_handle(s, zmq_msg_data(&peer), zmq_msg_size(&peer), zmq_msg_data(&frame),
                                 zmq_msg_size(&frame));
                    flush_outbox(s, sock);
                }
            }
            zmq_msg_close(&peer);
            zmq_msg_close(&frame);
            if (r != 0)
                break;
        }
        sched_cron(s);
        flush_outbox(s, sock);
    }
    ft_info("shutting down");
    rc = 0;
out:
    if (sock)
        zmq_close(sock);
    zmq_ctx_term(ctx);
    return rc;
}
