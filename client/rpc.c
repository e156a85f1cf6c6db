/*
 * client/rpc.c: one request, one reply, over a ZeroMQ DEALER socket, as a Lazy
 * Pirate client: send, poll with a time-out, and on silence close the socket
 * (ZMQ_LINGER 0, so nothing lingers), open a fresh one and resend, a bounded
 * number of times, then report the scheduler unreachable.
 *
 * The same call goes through the per-user agent (client/agent.c) when one
 * runs for this endpoint and key: one length-prefixed frame on a Unix socket
 * each way, with the same time-outs and resends (each on a fresh connection).
 * If the agent is gone or refuses mid-call, that call and the rest of the
 * process go direct; the ZeroMQ context is only created for the direct path.
 *
 * Invariants: a reply is accepted only if it passes the protocol validator, its
 * "re" equals the "id" we sent and its type is the reply type of the request (or
 * "error"); anything else arriving on the socket is dropped. No call waits longer
 * than timeout_ms per attempt.
 *
 * Cost: one round trip per call; the socket is kept open between the calls of a
 * polling loop (wait, watch, logs -f).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "ft/curve.h"
#include "ft/json.h"
#include "frame.h"
#include "ftctl.h"

/* Request type -> the reply type that answers it. */
static const struct {
    ft_msg_type_t req;   /* client request */
    ft_msg_type_t reply; /* its successful reply */
} reply_types[] = {
    {FT_MSG_PING, FT_MSG_PING_REPLY},     {FT_MSG_SUBMIT, FT_MSG_SUBMIT_REPLY},
    {FT_MSG_JOBS, FT_MSG_JOBS_REPLY},     {FT_MSG_JOB, FT_MSG_JOB_REPLY},
    {FT_MSG_CANCEL, FT_MSG_CANCEL_REPLY}, {FT_MSG_LOGS, FT_MSG_LOGS_REPLY},
    {FT_MSG_NODES, FT_MSG_NODES_REPLY},   {FT_MSG_USAGE, FT_MSG_USAGE_REPLY},
    {FT_MSG_REPORT, FT_MSG_REPORT_REPLY},
};

static ft_msg_type_t reply_type_of(const cJSON *req)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, "type");
    if (!cJSON_IsString(t))
        return FT_MSG__COUNT;
    ft_msg_type_t rt = ft_msg_from_name(t->valuestring);
    for (size_t i = 0; i < sizeof(reply_types) / sizeof(reply_types[0]); i++)
        if (reply_types[i].req == rt)
            return reply_types[i].reply;
    return FT_MSG__COUNT;
}

/* Closes the data socket and its monitor (both have ZMQ_LINGER 0). */
void ftctl_close_socket(ftctl_t *c)
{
    if (c->sock) {
        if (c->mon)
            zmq_socket_monitor(c->sock, NULL, 0);
        zmq_close(c->sock);
        c->sock = NULL;
    }
    if (c->mon) {
        zmq_close(c->mon);
        c->mon = NULL;
    }
}

void ftctl_close(ftctl_t *c)
{
    ftctl_agent_disconnect(c);
    ftctl_close_socket(c);
    if (c->zctx) {
        ftctl_trace("socket-closed");
        zmq_ctx_term(c->zctx);
        c->zctx = NULL;
    }
    memset(&c->keys, 0, sizeof(c->keys));
    c->keys_state = 0;
}

int ftctl_keys(ftctl_t *c, ft_err_t *err)
{
    if (c->keys_state == 0) {
        ft_err_clear(&c->keys_err);
        c->keys_state = ft_curve_client_env(&c->keys, c->server_pub, &c->curve_on,
                                            &c->keys_err) < 0 ? -1 : 1;
    }
    if (c->keys_state < 0) {
        *err = c->keys_err;
        return -1;
    }
    return 0;
}

/* Watches the data socket's handshakes, so that a refused key or a CURVE
 * mismatch is reported as such instead of as silence. Best effort: without a
 * monitor the messages are only less precise. */
static void open_monitor(ftctl_t *c)
{
    static unsigned n_monitors;
    char ep[64];
    int linger = 0;

    snprintf(ep, sizeof(ep), "inproc://ftctl-monitor-%u", ++n_monitors);
    if (zmq_socket_monitor(c->sock, ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0)
        return;
    c->mon = zmq_socket(c->zctx, ZMQ_PAIR);
    if (c->mon && (zmq_setsockopt(c->mon, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
                   zmq_connect(c->mon, ep) != 0)) {
        zmq_close(c->mon);
        c->mon = NULL;
    }
    if (!c->mon)
        zmq_socket_monitor(c->sock, NULL, 0);
}

/* Reads one monitor event into c->handshake. Returns true when it means the
 * scheduler will never accept this connection as configured (a refused key,
 * CURVE on one side only), false for a failure that may pass. */
bool ftctl_read_monitor_event(ftctl_t *c)
{
    zmq_msg_t m;
    uint16_t event = 0;
    uint32_t value = 0;
    bool fatal = false;

    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return false;
    }
    if (zmq_msg_size(&m) >= 6) {
        memcpy(&event, zmq_msg_data(&m), 2);
        memcpy(&value, (char *)zmq_msg_data(&m) + 2, 4);
    }
    while (zmq_msg_more(&m)) { /* the second frame: the endpoint */
        zmq_msg_close(&m);
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0)
            break;
    }
    zmq_msg_close(&m);
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        snprintf(c->handshake, sizeof(c->handshake),
                 "the scheduler refused this key (ZAP status %u): is its public key in "
                 "ftsched's keys file, and FT_KEY the right file?",
                 (unsigned)value);
        fatal = value != 300; /* 300: temporary */
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
               value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
        snprintf(c->handshake, sizeof(c->handshake),
                 "security mismatch: set FT_KEY and FT_SERVER_KEY for a scheduler with CURVE, "
                 "neither for an --insecure one");
        fatal = true;
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
        snprintf(c->handshake, sizeof(c->handshake),
                 "the CURVE handshake failed (protocol error 0x%08x): is FT_SERVER_KEY the "
                 "scheduler's public key?",
                 (unsigned)value);
        fatal = (value & 0xff000000u) == 0x11000000u; /* cryptographic */
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
        snprintf(c->handshake, sizeof(c->handshake),
                 "the handshake failed: is FT_SERVER_KEY the scheduler's public key?");
    }
    return fatal;
}

int ftctl_open_socket(ftctl_t *c)
{
    if (!c->zctx) {
        c->zctx = zmq_ctx_new();
        if (!c->zctx) {
            ftctl_die_msg("cannot create a ZeroMQ context: %s", zmq_strerror(errno));
            return -1;
        }
        ftctl_trace("zmq-context");
    }
    c->sock = zmq_socket(c->zctx, ZMQ_DEALER);
    if (!c->sock) {
        ftctl_die_msg("cannot create a ZeroMQ socket: %s", zmq_strerror(errno));
        return -1;
    }
    int linger = 0;
    int64_t maxmsg = FTCTL_REPLY_MAX_BYTES;
    if (zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
        zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) != 0) {
        ftctl_die_msg("cannot set socket options: %s", zmq_strerror(errno));
        goto fail;
    }
    {
        ft_err_t cerr = {0};

        if (ftctl_keys(c, &cerr) < 0 ||
            ft_curve_client_set(c->sock, &c->keys, c->server_pub, c->curve_on, &cerr) < 0) {
            ftctl_die_msg("%s", cerr.msg);
            goto fail;
        }
        ftctl_trace("socket+keys");
    }
    open_monitor(c);
    ftctl_trace("monitor");
    if (zmq_connect(c->sock, c->endpoint) != 0) {
        ftctl_die_msg("cannot connect to '%s': %s", ft_sanitize(c->endpoint, 64),
                      zmq_strerror(errno));
        goto fail;
    }
    ftctl_trace("connect");
    return 0;
fail:
    ftctl_close_socket(c);
    return -1;
}

/* Waits for events on the socket until deadline (monotonic ms); 1 when ready,
 * 0 on time-out or when the handshake was refused (c->refused), -1 on error. */
static int wait_socket(ftctl_t *c, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - ft_mono_ms();
        if (left <= 0)
            return 0;
        zmq_pollitem_t it[2] = {{.socket = c->sock, .events = events},
                                {.socket = c->mon, .events = ZMQ_POLLIN}};
        int n = zmq_poll(it, c->mon ? 2 : 1, (long)left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (c->mon && (it[1].revents & ZMQ_POLLIN) && ftctl_read_monitor_event(c)) {
            c->refused = true;
            return 0;
        }
        if (it[0].revents & events)
            return 1;
    }
}

/* Takes a validated message m (owned): true with *rc (and *reply) set when it
 * answers id; false when it is a late answer to an earlier request (dropped). */
static bool accept_reply(cJSON *m, ft_msg_type_t type, const char *id, ft_msg_type_t want,
                         cJSON **reply, ftctl_rpc_t *rc)
{
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(m, "re");
    if (!cJSON_IsString(re) || strcmp(re->valuestring, id) != 0) {
        cJSON_Delete(m);
        return false;
    }
    if (type == FT_MSG_ERROR) {
        *reply = m;
        *rc = FTCTL_RPC_ERROR;
        return true;
    }
    if (type != want) {
        ftctl_die_msg("invalid reply from the scheduler: type '%s', expected '%s'",
                      ft_msg_name(type), ft_msg_name(want));
        cJSON_Delete(m);
        *rc = FTCTL_RPC_BROKEN;
        return true;
    }
    *reply = m;
    *rc = FTCTL_RPC_OK;
    return true;
}

/* One attempt: send buf, wait for the reply to id. Returns FTCTL_RPC_OK /
 * FTCTL_RPC_ERROR with *reply, FTCTL_RPC_TIMEOUT, or FTCTL_RPC_BROKEN. */
static ftctl_rpc_t attempt(ftctl_t *c, const char *buf, size_t len, const char *id,
                           ft_msg_type_t want, cJSON **reply)
{
    int64_t deadline = ft_mono_ms() + c->timeout_ms;
    if (!c->sock && ftctl_open_socket(c) < 0)
        return FTCTL_RPC_BROKEN;
    int w = wait_socket(c, ZMQ_POLLOUT, deadline);
    if (w <= 0)
        return w == 0 ? FTCTL_RPC_TIMEOUT : FTCTL_RPC_BROKEN;
    if (zmq_send(c->sock, buf, len, ZMQ_DONTWAIT) < 0) {
        if (errno == EAGAIN)
            return FTCTL_RPC_TIMEOUT;
        ftctl_die_msg("cannot send to '%s': %s", ft_sanitize(c->endpoint, 64), zmq_strerror(errno));
        return FTCTL_RPC_BROKEN;
    }
    ftctl_trace("sent");
    for (;;) {
        w = wait_socket(c, ZMQ_POLLIN, deadline);
        if (w <= 0)
            return w == 0 ? FTCTL_RPC_TIMEOUT : FTCTL_RPC_BROKEN;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, c->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            if (errno == EAGAIN || errno == EINTR)
                continue;
            ftctl_die_msg("cannot receive from '%s': %s", ft_sanitize(c->endpoint, 64),
                          zmq_strerror(errno));
            return FTCTL_RPC_BROKEN;
        }
        ftctl_trace("reply");
        bool more = zmq_msg_more(&msg);
        ft_msg_type_t type = FT_MSG__COUNT;
        ft_err_t err;
        ft_err_clear(&err);
        cJSON *m = ft_proto_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &type, NULL, 0, &err);
        zmq_msg_close(&msg);
        if (more) {
            /* The protocol is one frame per message; drain and drop the rest. */
            cJSON_Delete(m);
            int64_t rcvmore = 1;
            size_t sz = sizeof(rcvmore);
            while (rcvmore && zmq_getsockopt(c->sock, ZMQ_RCVMORE, &rcvmore, &sz) == 0 && rcvmore) {
                zmq_msg_init(&msg);
                zmq_msg_recv(&msg, c->sock, ZMQ_DONTWAIT);
                zmq_msg_close(&msg);
            }
            ftctl_die_msg("invalid reply from the scheduler: more than one frame");
            return FTCTL_RPC_BROKEN;
        }
        if (!m) {
            ftctl_die_msg("invalid reply from the scheduler: %s: %s", ft_errcode_name(err.code),
                          err.msg);
            return FTCTL_RPC_BROKEN;
        }
        ftctl_rpc_t rc;
        if (accept_reply(m, type, id, want, reply, &rc))
            return rc;
    }
}

/* Waits until fd is ready for events or deadline (monotonic ms) passes:
 * 1 ready, 0 time-out, -1 error or hang-up. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - ft_mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (p.revents & events)
            return 1;
        if (p.revents & (POLLERR | POLLHUP | POLLNVAL))
            return -1;
    }
}

/* Decodes one frame from the agent (owned body): the scheduler's reply as it
 * sent it, or the agent's own error, marked "agent": "request" (an error
 * reply like any other) or "handshake" (the scheduler refused our key, which
 * is reported as the direct path reports it). Same return as accept_reply. */
static bool agent_reply(ftctl_t *c, char *body, size_t len, const char *id, ft_msg_type_t want,
                        cJSON **reply, ftctl_rpc_t *rc)
{
    ft_err_t err;
    ft_msg_type_t type = FT_MSG__COUNT;
    cJSON *m = NULL, *mark = NULL;

    ft_err_clear(&err);
    if (len > FT_MSG_MAX_BYTES) {
        ft_err_set(&err, FT_ETOOLARGE, "message of %zu bytes is over the limit of %d", len,
                   FT_MSG_MAX_BYTES);
        goto bad;
    }
    m = ft_json_parse(body, len, &err);
    if (!m)
        goto bad;
    mark = cJSON_DetachItemFromObjectCaseSensitive(m, "agent");
    if (ft_proto_validate(m, &type, &err) < 0)
        goto bad;
    if (mark && type == FT_MSG_ERROR && cJSON_IsString(mark) &&
        strcmp(mark->valuestring, "handshake") == 0) {
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(m, "re");
        if (!cJSON_IsString(re) || strcmp(re->valuestring, id) != 0) {
            cJSON_Delete(m);
            cJSON_Delete(mark);
            return false;
        }
        ft_strlcpy(c->handshake, ftctl_get_str(m, "message", "the handshake failed"),
                   sizeof(c->handshake));
        c->refused = true;
        cJSON_Delete(m);
        cJSON_Delete(mark);
        *rc = FTCTL_RPC_TIMEOUT;
        return true;
    }
    cJSON_Delete(mark);
    return accept_reply(m, type, id, want, reply, rc);
bad:
    cJSON_Delete(m);
    cJSON_Delete(mark);
    ftctl_die_msg("invalid reply through the agent: %s: %s", ft_errcode_name(err.code), err.msg);
    *rc = FTCTL_RPC_BROKEN;
    return true;
}

/* One attempt through the agent; like attempt(), and *gone when the agent
 * closed the connection or failed (the caller then goes direct). */
static ftctl_rpc_t agent_attempt(ftctl_t *c, const char *buf, size_t len, const char *id,
                                 ft_msg_type_t want, cJSON **reply, bool *gone)
{
    int64_t deadline = ft_mono_ms() + c->timeout_ms;
    ftctl_frame_tx_t tx;
    ftctl_frame_rx_t rx;
    ft_err_t err;
    ftctl_rpc_t rc = FTCTL_RPC_TIMEOUT;
    int w;

    *gone = false;
    ft_err_clear(&err);
    ftctl_frame_tx_init(&tx, len + FTCTL_FRAME_HDR);
    ftctl_frame_rx_init(&rx, FTCTL_REPLY_MAX_BYTES);
    if (ftctl_frame_push(&tx, buf, len, &err) < 0) {
        ftctl_die_msg("%s", err.msg);
        rc = FTCTL_RPC_BROKEN;
        goto out;
    }
    for (;;) {
        ftctl_frame_rc_t f = ftctl_frame_flush(&tx, c->agent_fd, &err);
        if (f == FTCTL_FRAME_DONE)
            break;
        if (f == FTCTL_FRAME_ERROR)
            goto gone;
        if ((w = wait_fd(c->agent_fd, POLLOUT, deadline)) <= 0) {
            if (w < 0)
                goto gone;
            goto out;
        }
    }
    ftctl_trace("agent-sent");
    for (;;) {
        ftctl_frame_rc_t f = ftctl_frame_read(&rx, c->agent_fd, &err);
        if (f == FTCTL_FRAME_AGAIN) {
            if ((w = wait_fd(c->agent_fd, POLLIN, deadline)) <= 0) {
                if (w < 0)
                    goto gone;
                goto out;
            }
            continue;
        }
        if (f == FTCTL_FRAME_ERROR && err.code == FT_ETOOLARGE) {
            ftctl_die_msg("invalid reply through the agent: %s", err.msg);
            rc = FTCTL_RPC_BROKEN;
            goto out;
        }
        if (f != FTCTL_FRAME_DONE)
            goto gone;
        size_t blen;
        char *body = ftctl_frame_take(&rx, &blen);
        bool done = agent_reply(c, body, blen, id, want, reply, &rc);
        free(body);
        if (done) {
            ftctl_trace("agent-reply");
            goto out;
        }
    }
gone:
    *gone = true;
    rc = FTCTL_RPC_BROKEN;
out:
    ftctl_frame_tx_free(&tx);
    ftctl_frame_rx_free(&rx);
    return rc;
}

ftctl_rpc_t ftctl_call(ftctl_t *c, cJSON *req, int retries, cJSON **reply)
{
    *reply = NULL;
    ftctl_rpc_t rc = FTCTL_RPC_BROKEN;
    char *buf = NULL;
    ft_msg_type_t want = reply_type_of(req);
    if (want == FT_MSG__COUNT) {
        ftctl_die_msg("internal: request without a known type");
        goto out;
    }
    char id[48];
    snprintf(id, sizeof(id), "%ld-%llu", (long)getpid(), (unsigned long long)++c->seq);
    cJSON_DeleteItemFromObjectCaseSensitive(req, "id");
    if (!cJSON_AddStringToObject(req, "id", id))
        goto oom;
    buf = ft_json_print(req);
    if (!buf)
        goto oom;
    size_t len = strlen(buf);
    if (len > FT_MSG_MAX_BYTES) {
        ftctl_die_msg("request too large: %zu bytes, the limit is %d", len, FT_MSG_MAX_BYTES);
        goto out;
    }
    for (int i = 0; i <= retries; i++) {
        c->tries = i + 1;
        if (ftctl_agent_connect(c) == 0) {
            bool gone = false;
            rc = agent_attempt(c, buf, len, id, want, reply, &gone);
            if (!gone) {
                if (rc != FTCTL_RPC_TIMEOUT)
                    goto out;
                /* Lazy Pirate through the agent: resend on a fresh connection. */
                ftctl_agent_disconnect(c);
                if (c->refused)
                    break;
                continue;
            }
            /* The agent went away or refused us mid-call: this call (the same
             * id, so a submit stays idempotent) and the next go direct. */
            ftctl_agent_disconnect(c);
            c->agent_state = FTCTL_AGENT_DIRECT;
            ftctl_trace("agent-gone");
        }
        rc = attempt(c, buf, len, id, want, reply);
        if (rc != FTCTL_RPC_TIMEOUT)
            goto out;
        /* Lazy Pirate: the old socket may hold a half-sent request; drop it. */
        ftctl_close_socket(c);
        if (c->refused)
            break; /* resending cannot help */
    }
    goto out;
oom:
    ftctl_die_msg("out of memory");
    rc = FTCTL_RPC_BROKEN;
out:
    free(buf);
    cJSON_Delete(req);
    return rc;
}

int ftctl_print_error_reply(const cJSON *reply)
{
    ftctl_die_msg("%s: %s", ftctl_get_str(reply, "code", "internal"),
                  ftctl_get_str(reply, "message", "(no message)"));
    return FTCTL_EXIT_FAILED;
}

int ftctl_print_unreachable(const ftctl_t *c)
{
    if (c->refused)
        ftctl_die_msg("scheduler unreachable: '%s': %s", ft_sanitize(c->endpoint, 64),
                      c->handshake);
    else if (c->tries > 1)
        ftctl_die_msg("scheduler unreachable: no reply from '%s' within %.1f s, %d tries%s%s",
                      ft_sanitize(c->endpoint, 64), c->timeout_ms / 1000.0, c->tries,
                      *c->handshake ? "; " : "", c->handshake);
    else
        ftctl_die_msg("scheduler unreachable: no reply from '%s' within %.1f s%s%s",
                      ft_sanitize(c->endpoint, 64), c->timeout_ms / 1000.0,
                      *c->handshake ? "; " : "", c->handshake);
    return FTCTL_EXIT_UNREACHABLE;
}

int ftctl_request(ftctl_t *c, cJSON *req, int retries, cJSON **reply)
{
    ftctl_rpc_t rc = ftctl_call(c, req, retries, reply);
    switch (rc) {
    case FTCTL_RPC_OK:
        return FTCTL_EXIT_OK;
    case FTCTL_RPC_ERROR: {
        int ec = ftctl_print_error_reply(*reply);
        cJSON_Delete(*reply);
        *reply = NULL;
        return ec;
    }
    case FTCTL_RPC_TIMEOUT:
        return ftctl_print_unreachable(c);
    case FTCTL_RPC_BROKEN:
        break;
    }
    return FTCTL_EXIT_FAILED;
}
