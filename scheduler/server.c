/*
 * server.c: ftsched's reactor: one ROUTER socket, one zmq_poll loop with a
 * bounded timeout, sched_cron on every turn. No threads.
 *
 * Every inbound message must be exactly [routing id][one frame]; the frame
 * goes to sched_handle. What is waiting is handled as one batch (group
 * commit, sched_batch_begin): each message's transaction is a savepoint of
 * the batch's one COMMIT, and the scheduling pass those messages call for
 * runs inside the same batch. Before the outbox is flushed, sched_sync syncs
 * the WAL if a commit since the last sync changed state (db_sync full), so
 * no reply or command leaves before the commits that back it are on disk; a
 * burst of N worker events or submits, and the starts they lead to, cost one
 * sync, and a commit that sends nothing (a rank's exit with nothing queued)
 * joins the next one's sync, at most SCHED_SYNC_AFTER_MS later. A sync that
 * fails stops the daemon (exit 1) with nothing of that turn sent: after a
 * failed fsync the kernel may have dropped the pages, and no retry would
 * tell. Sends never block: a peer that is gone
 * (EHOSTUNREACH with ROUTER_MANDATORY) or full (EAGAIN) loses that message
 * and is logged; liveness and client retries take it from there.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ft/proto.h"
#include "sched_int.h"
#include "server.h"
#include "zap.h"

/* A draft option in libzmq 4.3 (no header entry unless built with drafts). */
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

static volatile sig_atomic_t stop_requested; /* set by SIGTERM/SIGINT */

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Sends the outbox, once what its messages may promise is on disk
 * (sched_sync). 0, or -1 with err when the WAL cannot be synced: then
 * nothing is sent and the daemon stops, since it could promise nothing. */
static int flush_outbox(sched_t *s, void *sock, ft_err_t *err)
{
    if (sched_sync(s, err) < 0)
        return -1;
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
    return 0;
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

/* CURVE server side (zap.c admits the keys) or, by explicit choice only,
 * none. 0, or -1 with err set: no keys and no --insecure is refused. */
static int setup_security(sched_t *s, void *ctx, void *sock, zap_t **zap, ft_err_t *err)
{
    ft_keypair_t kp;
    int one = 1;

    if (s->cfg.insecure || (!s->cfg.keys_file[0] && getenv("FT_INSECURE") &&
                            strcmp(getenv("FT_INSECURE"), "1") == 0)) {
        ft_warn("*** INSECURE MODE: no CURVE encryption, no authentication; any process that "
                "reaches %s can submit, cancel and pose as a worker ***", s->cfg.listen);
        return 0;
    }
    if (!s->cfg.keys_file[0] || !s->cfg.server_key[0]) {
        ft_err_set(err, FT_EMISSING,
                   "no keys: pass --keys FILE and --server-key FILE (see 'ftsched init'), "
                   "or --insecure to run without authentication");
        return -1;
    }
    if (ft_keypair_load(s->cfg.server_key, true, &kp, err) < 0)
        return -1;
    if (!(*zap = zap_new(ctx, s->cfg.keys_file, err)))
        return -1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) < 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp.secret, FT_Z85_KEY_LEN) < 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "ft", 2) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot set up CURVE: %s", zmq_strerror(zmq_errno()));
        memset(&kp, 0, sizeof(kp));
        return -1;
    }
    /* A libzmq without draft options refuses this one; the handler checks
     * the domain itself, and with a handler bound every CURVE handshake
     * goes through it, so nothing is admitted unchecked either way. */
    if (zmq_setsockopt(sock, ZMQ_ZAP_ENFORCE_DOMAIN, &one, sizeof(one)) < 0)
        ft_debug("ZMQ_ZAP_ENFORCE_DOMAIN not supported by this libzmq: the ZAP handler checks the domain");
    memset(&kp, 0, sizeof(kp));
    return 0;
}

/* A message from an authenticated peer: authorise, handle, trim replies. */
static void handle_secure(sched_t *s, zap_t *zap, zmq_msg_t *peer, zmq_msg_t *frame)
{
    const char *uid = zmq_msg_gets(frame, "User-Id");
    const ft_identity_t *who = uid ? zap_identity(zap, uid) : NULL;
    const void *data = zmq_msg_data(frame);
    size_t len = zmq_msg_size(frame), plen = zmq_msg_size(peer);
    const char *pd = zmq_msg_data(peer);
    bool worker = plen > 2 && memcmp(pd, "w/", 2) == 0;
    char node[FT_NAME_MAX + 1] = "", re[65] = "";
    char *owned = NULL;
    ft_err_t err = {0};
    int mark;

    if (worker && plen - 2 <= FT_NAME_MAX) {
        memcpy(node, pd + 2, plen - 2);
        node[plen - 2] = '\0';
    }
    if (!who)
        ft_err_set(&err, FT_EFORBIDDEN, "this key is no longer listed");
    if (!who || authz_request(s, who, worker, node, &data, &len, &owned, re, sizeof(re), &err) < 0) {
        ft_info("refused a request from %s: %s", who ? who->user : "an unlisted key", err.msg);
        sched_send(s, pd, plen, ft_proto_error(re[0] ? re : NULL, &err));
        return;
    }
    mark = sched_outbox_count(s);
    sched_handle(s, pd, plen, data, len);
    authz_filter_replies(s, who, mark);
    free(owned);
}

int server_run(sched_t *s, const char *endpoint, ft_err_t *err)
{
    void *ctx = zmq_ctx_new(), *sock = NULL;
    zap_t *zap = NULL;
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
    if (setup_security(s, ctx, sock, &zap, err) < 0)
        goto out;
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
        zmq_pollitem_t items[2] = {{sock, 0, ZMQ_POLLIN, 0},
                                   {zap ? zap_socket(zap) : NULL, 0, ZMQ_POLLIN, 0}};
        int timeout = sched_next_timeout_ms(s);
        int n = zmq_poll(items, zap ? 2 : 1, zap && timeout > 1000 ? 1000 : timeout);

        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            ft_err_set(err, FT_EINTERNAL, "poll failed: %s", zmq_strerror(zmq_errno()));
            goto out;
        }
        if (zap) {
            if (items[1].revents & ZMQ_POLLIN)
                zap_serve(zap);
            zap_maybe_reload(zap);
            n = items[0].revents & ZMQ_POLLIN ? n : 0;
        }
        /* Drain what is waiting, in bounded batches so cron keeps its pace;
         * one batch is one group commit. */
        bool batched = n > 0 && sched_batch_begin(s) == 0;
        int handled = 0;

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
                } else if (zap) {
                    handle_secure(s, zap, &peer, &frame);
                } else {
                    sched_handle(s, zmq_msg_data(&peer), zmq_msg_size(&peer), zmq_msg_data(&frame),
                                 zmq_msg_size(&frame));
                }
                handled++;
            }
            zmq_msg_close(&peer);
            zmq_msg_close(&frame);
            if (r != 0)
                break;
        }
        if (batched) {
            /* The pass that places what these messages queued or freed
             * joins their commit: a submit and its start cost one sync. */
            sched_schedule_due(s);
            sched_batch_end(s);
            if (handled > 0)
                ft_debug("group commit of %d message%s: %.3f ms", handled, handled == 1 ? "" : "s",
                         sched_last_commit_ms(s));
        }
        if (flush_outbox(s, sock, err) < 0)
            goto out;
        sched_cron(s);
        if (flush_outbox(s, sock, err) < 0)
            goto out;
    }
    ft_info("shutting down");
    rc = 0;
out:
    if (sock)
        zmq_close(sock);
    zap_destroy(&zap);
    zmq_ctx_term(ctx);
    return rc;
}
