/*
 * client/agent.c: `ftctl agent`, a per-user process that holds one
 * authenticated connection to ftsched (like ssh's ControlMaster), and the
 * client side that finds it. ftctl processes send it their requests over a
 * Unix stream socket (client/frame.h); it relays them on its DEALER socket
 * and routes each reply back by its "re" to the client that sent that "id".
 *
 * Invariants: one agent per (endpoint, client key, server key); its socket
 * is 0600 in a 0700 directory owned by the user, and it closes any
 * connection whose peer (SO_PEERCRED) is another uid. ftctl uses an agent
 * only after checking the directory and the peer the same way. The agent
 * never alters a request: ftsched authenticates the user's key as before.
 * The in-flight table is bounded (AGENT_MAX_FLIGHTS) and forgets a client's
 * entries when it leaves; one id in flight from two clients is refused.
 * Single-threaded: one poll(2) loop over the listening socket, the clients,
 * and the ZMQ_FD of the DEALER and its handshake monitor, waking at least
 * every second.
 *
 * Cost: per relayed request one frame read, one JSON parse (for "id" and
 * "type"), one zmq_send; per reply one parse (for "re"), a scan of the
 * in-flight table (AGENT_MAX_FLIGHTS entries at most) and one send(2).
 * ftctl's side: a stat, a socket, a connect and a getsockopt per process.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "ft/auth.h"
#include "ft/json.h"
#include "frame.h"
#include "ftctl.h"

#define AGENT_MAX_CLIENTS 256                         /* connected ftctl processes */
#define AGENT_MAX_FLIGHTS 4096                        /* requests relayed and not yet answered */
#define AGENT_TX_MAX (2 * FTCTL_REPLY_MAX_BYTES + 64) /* bytes queued to one slow client */
#define AGENT_ID_MAX 64           /* bytes of a request id (the protocol's bound) */
#define AGENT_DEALER_BATCH 256    /* replies taken from the DEALER per loop turn */
#define AGENT_START_WAIT_MS 10000 /* `agent start` waits this long for the agent to listen */

/* ---- paths and checks, shared by both sides ---- */

/* 64-bit FNV-1a, continued from h. */
static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* The agent's directory and socket path for c's endpoint and keys. */
static int agent_paths(ftctl_t *c, char *dir, size_t dlen, char *path, size_t plen, ft_err_t *err)
{
    struct sockaddr_un sa;

    if (c->agent_socket[0]) {
        ft_strlcpy(path, c->agent_socket, plen);
        ft_strlcpy(dir, c->agent_socket, dlen);
        char *slash = strrchr(dir, '/');
        if (!slash)
            ft_strlcpy(dir, ".", dlen);
        else if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
    } else {
        if (ftctl_keys(c, err) < 0)
            return -1;
        bool on = c->curve_on;
        uint64_t h = fnv1a(0xcbf29ce484222325ULL, c->endpoint);
        h = fnv1a(h, "\n");
        h = fnv1a(h, on ? c->keys.pub : "");
        h = fnv1a(h, "\n");
        h = fnv1a(h, on ? c->server_pub : "");
        const char *xdg = getenv("XDG_RUNTIME_DIR");
        if (xdg && xdg[0] == '/')
            snprintf(dir, dlen, "%s/ft", xdg);
        else
            snprintf(dir, dlen, "/tmp/ft-%u", (unsigned)getuid());
        snprintf(path, plen, "%s/agent-%016llx.sock", dir, (unsigned long long)h);
    }
    if (strlen(path) >= sizeof(sa.sun_path)) {
        ft_err_set(err, FT_EBADFIELD, "agent socket path '%s' is longer than %zu bytes",
                   ft_sanitize(path, 64), sizeof(sa.sun_path) - 1);
        return -1;
    }
    return 0;
}

/* 0 when dir is a directory (not a link) of ours that group and others
 * cannot enter; 1 when it does not exist; -1 with err otherwise. */
static int check_dir(const char *dir, ft_err_t *err)
{
    struct stat st;

    if (lstat(dir, &st) < 0) {
        if (errno == ENOENT)
            return 1;
        ft_err_set(err, FT_EINTERNAL, "cannot stat '%s': %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        ft_err_set(err, FT_EBADFIELD, "'%s' is not a directory", dir);
        return -1;
    }
    if (st.st_uid != getuid()) {
        ft_err_set(err, FT_EFORBIDDEN, "directory '%s' belongs to uid %u, not to uid %u", dir,
                   (unsigned)st.st_uid, (unsigned)getuid());
        return -1;
    }
    if (st.st_mode & 077) {
        ft_err_set(err, FT_EFORBIDDEN,
                   "directory '%s' has mode %04o: group and others must have no access", dir,
                   (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

/* The uid at the other end of a Unix socket, or -1. */
static long peer_uid(int fd)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
        return -1;
    return (long)cr.uid;
}

/* A non-blocking connection to path, or -1 with errno (ENOENT: nothing
 * there; ECONNREFUSED: a stale socket; EAGAIN: its backlog is full). */
static int connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    ft_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void warn_once(ftctl_t *c, const char *why)
{
    if (c->agent_warned)
        return;
    c->agent_warned = true;
    ftctl_die_msg("warning: not using the agent: %s; talking to the scheduler directly", why);
}

static int agent_spawn(ftctl_t *c, int persist_s, const char *log_path, const char *path,
                       bool quiet);

/* The client-side checks: an agent for us, run by us. 0 with *fd set, 1 when
 * none listens (errno says why), -1 when one must not be used (err). */
static int open_checked(const ftctl_t *c, const char *dir, const char *path, int *fd, ft_err_t *err)
{
    (void)c;
    *fd = -1;
    int d = check_dir(dir, err);
    if (d < 0)
        return -1;
    if (d == 1) {
        errno = ENOENT;
        return 1;
    }
    int s = connect_unix(path);
    if (s < 0)
        return 1;
    long uid = peer_uid(s);
    if (uid != (long)getuid()) {
        ft_err_set(err, FT_EFORBIDDEN, "the process on '%s' runs as uid %ld, not as uid %u", path,
                   uid, (unsigned)getuid());
        close(s);
        return -1;
    }
    *fd = s;
    return 0;
}

int ftctl_agent_connect(ftctl_t *c)
{
    char dir[FT_PATH_MAX], path[FT_PATH_MAX];
    ft_err_t err;
    int fd = -1;

    if (c->agent_fd >= 0)
        return 0;
    if (c->agent_state == FTCTL_AGENT_DIRECT)
        return -1;
    c->agent_state = FTCTL_AGENT_DIRECT; /* unless the checks below pass */
    if (c->agent == FTCTL_AGENT_OFF)
        goto direct;
    ft_err_clear(&err);
    /* A key setting the direct path will refuse with its own message. */
    if (agent_paths(c, dir, sizeof(dir), path, sizeof(path), &err) < 0)
        goto direct;
    int r = open_checked(c, dir, path, &fd, &err);
    if (r == 1 && c->agent == FTCTL_AGENT_PERSIST && (errno == ENOENT || errno == ECONNREFUSED)) {
        ftctl_trace("agent-spawn");
        if (agent_spawn(c, FTCTL_AGENT_PERSIST_S, NULL, path, true) == 0)
            r = open_checked(c, dir, path, &fd, &err);
    }
    if (r < 0) {
        warn_once(c, err.msg);
        goto direct;
    }
    if (r > 0)
        goto direct;
    c->agent_fd = fd;
    c->agent_state = FTCTL_AGENT_USED;
    ftctl_trace("agent-conn");
    return 0;
direct:
    ftctl_trace("path-direct");
    return -1;
}

void ftctl_agent_disconnect(ftctl_t *c)
{
    if (c->agent_fd >= 0) {
        close(c->agent_fd);
        c->agent_fd = -1;
        if (c->agent_state == FTCTL_AGENT_USED)
            c->agent_state = FTCTL_AGENT_UNTRIED;
    }
}

/* ---- the agent ---- */

/* One connected ftctl process. */
typedef struct {
    int fd;              /* -1 = free slot */
    uint32_t gen;        /* bumped when the slot is reused, so old flights never match */
    ftctl_frame_rx_t rx; /* the request being read */
    ftctl_frame_tx_t tx; /* replies waiting for the socket */
    bool closing;        /* close once tx has drained (after an error frame) */
} agent_client_t;

/* One request relayed and not answered yet. */
typedef struct {
    char id[AGENT_ID_MAX + 1]; /* the request's "id"; "" = free entry */
    int slot;                  /* index into clients */
    uint32_t gen;              /* that client's generation */
} agent_flight_t;

typedef struct {
    ftctl_t *c;                                /* settings, DEALER socket and monitor (rpc.c) */
    int lfd;                                   /* listening Unix socket */
    char path[FT_PATH_MAX];                    /* its path */
    ino_t ino;                                 /* its inode, so that exit unlinks only our own */
    agent_client_t clients[AGENT_MAX_CLIENTS]; /* connected ftctl processes */
    int n_clients;                             /* slots in use */
    agent_flight_t flights[AGENT_MAX_FLIGHTS]; /* relayed requests */
    int n_flights;                             /* entries in use */
    int persist_s;                             /* exit after this many idle seconds; 0 = never */
    int64_t start_ms;                          /* monotonic ms at start */
    int64_t idle_since_ms;                     /* monotonic ms when the last client left */
    uint64_t relayed;                          /* requests sent to the scheduler */
    uint64_t replies;                          /* replies routed back to a client */
    uint64_t dropped;                          /* replies nobody waited for any more */
    uint64_t refused_peers;                    /* connections closed for another uid */
    uint64_t bad_frames;                       /* clients closed for a bad frame */
    bool refused;   /* the last handshake was refused for good; no reply since */
    bool stop;      /* agent_stop received */
    bool reopen;    /* a handshake failed: the next request opens a new connection */
    bool zmq_check; /* read the DEALER's ZMQ_EVENTS before sleeping */
    bool mon_check; /* read the monitor's ZMQ_EVENTS before sleeping */
    int dealer_fd;  /* the DEALER's ZMQ_FD, -1 without one */
    int mon_fd;     /* the monitor's ZMQ_FD, -1 without one */
} agent_t;

/* (Re)reads the ZMQ_FD of the DEALER and its monitor; 0 or -1 with err. */
static int agent_zmq_fds(agent_t *a, ft_err_t *err)
{
    size_t len = sizeof(int);

    a->dealer_fd = a->mon_fd = -1;
    if ((a->c->sock && zmq_getsockopt(a->c->sock, ZMQ_FD, &a->dealer_fd, &len) < 0) ||
        (a->c->mon && zmq_getsockopt(a->c->mon, ZMQ_FD, &a->mon_fd, &len) < 0)) {
        ft_err_set(err, FT_EINTERNAL, "cannot get the ZeroMQ sockets' descriptors: %s",
                   zmq_strerror(errno));
        a->dealer_fd = a->mon_fd = -1;
        return -1;
    }
    a->zmq_check = a->mon_check = true;
    return 0;
}

/* A new DEALER (and monitor) in place of one whose handshake failed. libzmq
 * does not retry a connection that failed its handshake (a refused key): a
 * request queued on it would only wait for the client's time-out. So the
 * request after such a failure makes a new connection, as the direct path
 * makes one per process: refused again, the monitor answers that client at
 * once; accepted (the key has been added since), the agent serves again.
 * 0, or -1 with err and no socket (the next request tries again). */
static int agent_reopen(agent_t *a, ft_err_t *err)
{
    ftctl_close_socket(a->c);
    a->dealer_fd = a->mon_fd = -1;
    if (ftctl_open_socket(a->c) < 0) { /* it closes what it opened */
        ft_err_set(err, FT_EUNAVAIL, "the agent cannot connect to '%s' again: see its log",
                   ft_sanitize(a->c->endpoint, 64));
        return -1;
    }
    if (agent_zmq_fds(a, err) < 0) {
        ftctl_close_socket(a->c);
        return -1;
    }
    a->reopen = a->refused = false;
    return 0;
}

static volatile sig_atomic_t agent_signal; /* SIGTERM or SIGINT received */

static void on_signal(int sig)
{
    agent_signal = sig;
}

static void client_close(agent_t *a, int slot)
{
    agent_client_t *cl = &a->clients[slot];
    if (cl->fd < 0)
        return;
    close(cl->fd);
    cl->fd = -1;
    cl->gen++;
    cl->closing = false;
    ftctl_frame_rx_free(&cl->rx);
    ftctl_frame_tx_free(&cl->tx);
    for (int i = 0; i < AGENT_MAX_FLIGHTS && a->n_flights; i++)
        if (a->flights[i].id[0] && a->flights[i].slot == slot) {
            a->flights[i].id[0] = '\0';
            a->n_flights--;
        }
    if (--a->n_clients == 0)
        a->idle_since_ms = ft_mono_ms();
}

/* Queues msg (not owned) to a client and writes what the socket takes. */
static void client_send(agent_t *a, int slot, const char *msg, size_t len)
{
    agent_client_t *cl = &a->clients[slot];
    ft_err_t err;
    ft_err_clear(&err);
    if (ftctl_frame_push(&cl->tx, msg, len, &err) < 0 ||
        ftctl_frame_flush(&cl->tx, cl->fd, &err) == FTCTL_FRAME_ERROR) {
        ft_warn("client %d: %s", slot, err.msg);
        client_close(a, slot);
    }
}

/* Sends the agent's own error (marked "agent": kind) to a client; with
 * fatal, the client is closed once it has been written. */
static void client_error(agent_t *a, int slot, const char *re, const char *kind,
                         const ft_err_t *err, bool fatal)
{
    cJSON *m = ft_proto_error(re, err);
    char *text = NULL;
    if (m && cJSON_AddStringToObject(m, "agent", kind))
        text = ft_json_print(m);
    cJSON_Delete(m);
    if (text)
        client_send(a, slot, text, strlen(text));
    free(text);
    if (fatal && a->clients[slot].fd >= 0) {
        a->bad_frames++;
        if (ftctl_frame_pending(&a->clients[slot].tx) == 0)
            client_close(a, slot);
        else
            a->clients[slot].closing = true;
    }
}

/* Entries fill the table from the front (flight_free takes the first free
 * one), so a scan that stops after n_flights entries in use is short. */
static agent_flight_t *flight_find(agent_t *a, const char *id)
{
    for (int i = 0, seen = 0; i < AGENT_MAX_FLIGHTS && seen < a->n_flights; i++) {
        if (!a->flights[i].id[0])
            continue;
        seen++;
        if (strcmp(a->flights[i].id, id) == 0)
            return &a->flights[i];
    }
    return NULL;
}

static agent_flight_t *flight_free(agent_t *a)
{
    if (a->n_flights >= AGENT_MAX_FLIGHTS)
        return NULL;
    for (int i = 0; i < AGENT_MAX_FLIGHTS; i++)
        if (!a->flights[i].id[0])
            return &a->flights[i];
    return NULL;
}

/* Answers agent_status: what `ftctl agent status` prints. */
static void reply_status(agent_t *a, int slot, const char *re, const char *type)
{
    ftctl_t *c = a->c;
    cJSON *m = cJSON_CreateObject();
    char *text = NULL;
    if (m && cJSON_AddNumberToObject(m, "v", FT_PROTO_VERSION) &&
        cJSON_AddStringToObject(m, "type", type) && cJSON_AddStringToObject(m, "re", re) &&
        cJSON_AddNumberToObject(m, "pid", (double)getpid()) &&
        cJSON_AddNumberToObject(m, "uid", (double)getuid()) &&
        cJSON_AddStringToObject(m, "socket", a->path) &&
        cJSON_AddStringToObject(m, "endpoint", c->endpoint) &&
        cJSON_AddNumberToObject(m, "uptime_s", (double)(ft_mono_ms() - a->start_ms) / 1000.0) &&
        cJSON_AddNumberToObject(m, "persist_s", a->persist_s) &&
        cJSON_AddNumberToObject(m, "relayed", (double)a->relayed) &&
        cJSON_AddNumberToObject(m, "replies", (double)a->replies) &&
        cJSON_AddNumberToObject(m, "dropped", (double)a->dropped) &&
        cJSON_AddNumberToObject(m, "clients", a->n_clients) &&
        cJSON_AddNumberToObject(m, "in_flight", a->n_flights) &&
        cJSON_AddNumberToObject(m, "refused_peers", (double)a->refused_peers) &&
        cJSON_AddNumberToObject(m, "bad_frames", (double)a->bad_frames) &&
        cJSON_AddStringToObject(m, "handshake", c->handshake))
        text = ft_json_print(m);
    cJSON_Delete(m);
    if (text)
        client_send(a, slot, text, strlen(text));
    free(text);
}

/* One complete frame from a client (owned body). */
static void handle_request(agent_t *a, int slot, char *body, size_t len)
{
    ft_err_t err;
    cJSON *m = NULL;
    const cJSON *id, *type;
    ft_msg_type_t t;

    ft_err_clear(&err);
    m = ft_json_parse(body, len, &err);
    if (!m) {
        client_error(a, slot, NULL, "request", &err, true);
        goto out;
    }
    if (!cJSON_IsObject(m)) {
        ft_err_set(&err, FT_EBADJSON, "a request must be a JSON object");
        client_error(a, slot, NULL, "request", &err, true);
        goto out;
    }
    id = cJSON_GetObjectItemCaseSensitive(m, "id");
    type = cJSON_GetObjectItemCaseSensitive(m, "type");
    if (!cJSON_IsString(id) || !id->valuestring[0] || strlen(id->valuestring) > AGENT_ID_MAX) {
        ft_err_set(&err, id ? FT_EBADFIELD : FT_EMISSING,
                   "field 'id': a string of 1..%d bytes is required", AGENT_ID_MAX);
        client_error(a, slot, NULL, "request", &err, true);
        goto out;
    }
    if (!cJSON_IsString(type)) {
        ft_err_set(&err, type ? FT_EBADFIELD : FT_EMISSING, "field 'type': a string is required");
        client_error(a, slot, id->valuestring, "request", &err, true);
        goto out;
    }
    if (strcmp(type->valuestring, "agent_status") == 0) {
        reply_status(a, slot, id->valuestring, "agent_status_reply");
        goto out;
    }
    if (strcmp(type->valuestring, "agent_stop") == 0) {
        reply_status(a, slot, id->valuestring, "agent_stop_reply");
        ft_info("stop requested");
        a->stop = true;
        goto out;
    }
    t = ft_msg_from_name(type->valuestring);
    if (t == FT_MSG__COUNT || !(ft_msg_senders(t) & FT_FROM_CLIENT)) {
        ft_err_set(&err, FT_EUNKNOWNTYPE, "type '%s' is not a client request the agent relays",
                   ft_sanitize(type->valuestring, 32));
        client_error(a, slot, id->valuestring, "request", &err, false);
        goto out;
    }
    agent_flight_t *f = flight_find(a, id->valuestring);
    if (f && (f->slot != slot || f->gen != a->clients[slot].gen)) {
        ft_err_set(&err, FT_ESTATE, "request id '%s' is already in flight from another client",
                   ft_sanitize(id->valuestring, AGENT_ID_MAX));
        client_error(a, slot, id->valuestring, "request", &err, false);
        goto out;
    }
    if (!f && !(f = flight_free(a))) {
        ft_err_set(&err, FT_EUNAVAIL, "the agent has %d requests in flight; try again later",
                   AGENT_MAX_FLIGHTS);
        client_error(a, slot, id->valuestring, "request", &err, false);
        goto out;
    }
    if ((a->reopen || !a->c->sock) && agent_reopen(a, &err) < 0) {
        client_error(a, slot, id->valuestring, "handshake", &err, false);
        goto out;
    }
    if (zmq_send(a->c->sock, body, len, ZMQ_DONTWAIT) < 0) {
        /* No connection to send on: after a refused handshake, say so at
         * once; else (the queue to an absent scheduler is full) the client's
         * time-out and resend, then its unreachable message, take over. */
        if (a->refused) {
            ft_err_set(&err, FT_EUNAVAIL, "%s", a->c->handshake);
            client_error(a, slot, id->valuestring, "handshake", &err, false);
        } else {
            ft_warn("cannot relay request '%s': %s", ft_sanitize(id->valuestring, AGENT_ID_MAX),
                    zmq_strerror(errno));
        }
        goto out;
    }
    a->zmq_check = true; /* a send may take the DEALER's wake-up: see agent_serve */
    if (!f->id[0]) {
        ft_strlcpy(f->id, id->valuestring, sizeof(f->id));
        f->slot = slot;
        f->gen = a->clients[slot].gen;
        a->n_flights++;
    }
    a->relayed++;
out:
    cJSON_Delete(m);
    free(body);
}

static void client_readable(agent_t *a, int slot)
{
    agent_client_t *cl = &a->clients[slot];
    ft_err_t err;

    for (int n = 0; n < 64 && cl->fd >= 0 && !cl->closing; n++) {
        ft_err_clear(&err);
        ftctl_frame_rc_t r = ftctl_frame_read(&cl->rx, cl->fd, &err);
        if (r == FTCTL_FRAME_AGAIN)
            return;
        if (r == FTCTL_FRAME_EOF) {
            client_close(a, slot);
            return;
        }
        if (r == FTCTL_FRAME_ERROR) {
            if (err.code == FT_EINTERNAL && strstr(err.msg, "cannot read")) {
                client_close(a, slot);
                return;
            }
            ft_warn("client %d: %s", slot, err.msg);
            client_error(a, slot, NULL, "request", &err, true);
            return;
        }
        size_t len;
        char *body = ftctl_frame_take(&cl->rx, &len);
        handle_request(a, slot, body, len);
    }
}

static void accept_clients(agent_t *a)
{
    for (;;) {
        int fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                ft_warn("accept on '%s': %s", a->path, strerror(errno));
            return;
        }
        long uid = peer_uid(fd);
        if (uid != (long)getuid()) {
            a->refused_peers++;
            ft_warn("refused a connection from uid %ld: only uid %u may use this agent", uid,
                    (unsigned)getuid());
            close(fd);
            continue;
        }
        int slot = -1;
        for (int i = 0; i < AGENT_MAX_CLIENTS && slot < 0; i++)
            if (a->clients[i].fd < 0)
                slot = i;
        if (slot < 0) {
            ft_warn("%d clients connected already; closing a new one", AGENT_MAX_CLIENTS);
            close(fd);
            continue;
        }
        agent_client_t *cl = &a->clients[slot];
        cl->fd = fd;
        cl->closing = false;
        ftctl_frame_rx_init(&cl->rx, FT_MSG_MAX_BYTES);
        ftctl_frame_tx_init(&cl->tx, AGENT_TX_MAX);
        a->n_clients++;
    }
}

/* Replies from the scheduler, routed by "re": until none is left (false),
 * or AGENT_DEALER_BATCH of them (true: more may wait). */
static bool dealer_readable(agent_t *a)
{
    for (int n = 0; n < AGENT_DEALER_BATCH; n++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, a->c->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return false;
        }
        if (zmq_msg_more(&msg)) { /* one frame per message: drop the rest */
            zmq_msg_close(&msg);
            ft_warn("dropped a reply of more than one frame");
            continue;
        }
        const char *data = zmq_msg_data(&msg);
        size_t size = zmq_msg_size(&msg);
        cJSON *m = cJSON_ParseWithLength(data, size);
        const cJSON *re = m ? cJSON_GetObjectItemCaseSensitive(m, "re") : NULL;
        agent_flight_t *f = cJSON_IsString(re) ? flight_find(a, re->valuestring) : NULL;
        a->refused = false; /* the scheduler answers: the handshake passed */
        if (f) {
            int slot = f->slot;
            f->id[0] = '\0';
            a->n_flights--;
            a->replies++;
            client_send(a, slot, data, size);
        } else {
            a->dropped++;
        }
        cJSON_Delete(m);
        zmq_msg_close(&msg);
    }
    return true;
}

/* ZMQ_EVENTS of a ZeroMQ socket (0 when it cannot be read). */
static int zmq_events(void *sock)
{
    int ev = 0;
    size_t sz = sizeof(ev);

    if (!sock || zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &sz) < 0)
        return 0;
    return ev;
}

/* A handshake the scheduler will never accept: every waiting client hears
 * why at once, as the direct path would have. Reads one monitor event. */
static void monitor_readable(agent_t *a)
{
    bool fatal = ftctl_read_monitor_event(a->c);

    a->reopen = true; /* the monitor reports failed handshakes only: this connection is over */
    if (!fatal)
        return;
    if (!a->refused)
        ft_warn("%s", a->c->handshake);
    a->refused = true;
    ft_err_t err;
    ft_err_set(&err, FT_EUNAVAIL, "%s", a->c->handshake);
    for (int i = 0; i < AGENT_MAX_FLIGHTS && a->n_flights; i++) {
        agent_flight_t *f = &a->flights[i];
        if (!f->id[0])
            continue;
        int slot = f->slot;
        char id[AGENT_ID_MAX + 1];
        ft_strlcpy(id, f->id, sizeof(id));
        f->id[0] = '\0';
        a->n_flights--;
        client_error(a, slot, id, "handshake", &err, false);
    }
}

/* Binds path, replacing a stale socket; 0, 1 when a live agent already
 * listens there, -1 with err. */
static int agent_bind(agent_t *a, ft_err_t *err);

static int agent_listen(agent_t *a, const char *dir, ft_err_t *err)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        ft_err_set(err, FT_EINTERNAL, "cannot create '%s': %s", dir, strerror(errno));
        return -1;
    }
    if (check_dir(dir, err) != 0) {
        if (err->code == FT_OK)
            ft_err_set(err, FT_EINTERNAL, "directory '%s' vanished", dir);
        return -1;
    }
    /* Two agents starting at once (two ftctl with the persist setting) must
     * not both take a stale socket away: the probe, unlink and bind below
     * run under a lock on PATH.lock, so the second one finds the first. */
    char lock_path[FT_PATH_MAX + 8];
    snprintf(lock_path, sizeof(lock_path), "%s.lock", a->path);
    int lk = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lk < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot open '%s': %s", lock_path, strerror(errno));
        return -1;
    }
    while (flock(lk, LOCK_EX) < 0 && errno == EINTR)
        ;
    int rc = agent_bind(a, err);
    close(lk); /* releases the lock */
    return rc;
}

/* agent_listen's part under the lock. */
static int agent_bind(agent_t *a, ft_err_t *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;

    ft_strlcpy(sa.sun_path, a->path, sizeof(sa.sun_path));
    a->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a->lfd < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot create a Unix socket: %s", strerror(errno));
        return -1;
    }
    mode_t old = umask(0177);
    int r = bind(a->lfd, (struct sockaddr *)&sa, sizeof(sa));
    if (r < 0 && errno == EADDRINUSE) {
        int probe = connect_unix(a->path);
        if (probe >= 0 || errno == EAGAIN) {
            if (probe >= 0)
                close(probe);
            umask(old);
            return 1;
        }
        ft_info("replacing the stale socket '%s'", a->path);
        unlink(a->path);
        r = bind(a->lfd, (struct sockaddr *)&sa, sizeof(sa));
    }
    umask(old);
    if (r < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot bind '%s': %s", a->path, strerror(errno));
        return -1;
    }
    if (chmod(a->path, 0600) < 0 || stat(a->path, &st) < 0 || listen(a->lfd, 512) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot listen on '%s': %s", a->path, strerror(errno));
        unlink(a->path);
        return -1;
    }
    a->ino = st.st_ino;
    return 0;
}

/* Runs the agent until a signal, agent_stop, or persist_s idle seconds.
 * ready_fd (or -1): receives "ok\n", "already\n" or "fail\n" once the agent
 * listens and its socket to the scheduler is set up, or failed to; from then
 * on stderr is err_fd (when >= 0). Returns an exit code. */
static int agent_serve(ftctl_t *c, int persist_s, int ready_fd, int err_fd)
{
    static agent_t a; /* large (the tables); one per process */
    char dir[FT_PATH_MAX];
    ft_err_t err;
    int rc = FTCTL_EXIT_FAILED, r;
    struct pollfd *items = NULL;
    const char *ready = "fail\n";

    memset(&a, 0, sizeof(a));
    a.c = c;
    a.lfd = -1;
    a.persist_s = persist_s;
    a.start_ms = a.idle_since_ms = ft_mono_ms();
    for (int i = 0; i < AGENT_MAX_CLIENTS; i++)
        a.clients[i].fd = -1;
    ft_err_clear(&err);
    c->agent = FTCTL_AGENT_OFF; /* the agent itself always talks directly */
    if (agent_paths(c, dir, sizeof(dir), a.path, sizeof(a.path), &err) < 0) {
        ftctl_die_msg("%s", err.msg);
        goto out;
    }
    r = agent_listen(&a, dir, &err);
    if (r == 1) {
        ready = "already\n";
        if (ready_fd < 0) /* agent run: say so; agent start says it itself */
            ftctl_die_msg("an agent already listens on '%s'", a.path);
        rc = ready_fd < 0 ? FTCTL_EXIT_FAILED : FTCTL_EXIT_OK;
        goto out;
    }
    if (r < 0) {
        ftctl_die_msg("%s", err.msg);
        goto out;
    }
    if (ftctl_open_socket(c) < 0) /* reads the key files: before the chdir below */
        goto out_unlink;
    if (ready_fd >= 0 && chdir("/") < 0) { /* detached: hold no directory busy */
        ftctl_die_msg("cannot change to '/': %s", strerror(errno));
        goto out_unlink;
    }
    items = calloc(AGENT_MAX_CLIENTS + 3, sizeof(*items));
    if (!items) {
        ftctl_die_msg("out of memory");
        goto out_unlink;
    }
    if (agent_zmq_fds(&a, &err) < 0) {
        ftctl_die_msg("%s", err.msg);
        goto out_unlink;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    if (ready_fd >= 0) {
        ssize_t w = write(ready_fd, "ok\n", 3);
        (void)w;
        close(ready_fd);
        ready_fd = -1;
        if (err_fd >= 0)
            dup2(err_fd, STDERR_FILENO);
    }
    ft_info("listening on '%s' for '%s' (pid %ld, persist %d s)", a.path,
            ft_sanitize(c->endpoint, 64), (long)getpid(), persist_s);
    /* One poll(2) over the listening socket, the clients and the ZMQ_FD of
     * the DEALER and its monitor. A ZMQ_FD only says that the socket's state
     * may have changed (it is edge-triggered, and a zmq_send or zmq_recv on
     * the socket may consume its wake-up), so the loop reads ZMQ_EVENTS and
     * drains a socket before it sleeps whenever its descriptor fired or the
     * loop sent on it (a.zmq_check, a.mon_check). zmq_poll read ZMQ_EVENTS
     * of both sockets twice on every turn, two system calls each. */
    while (!agent_signal && !a.stop) {
        int n = 0, map[AGENT_MAX_CLIENTS];
        if (a.mon_check) {
            a.mon_check = false;
            while (c->mon && (zmq_events(c->mon) & ZMQ_POLLIN))
                monitor_readable(&a);
        }
        if (a.zmq_check) {
            a.zmq_check = false;
            if ((zmq_events(c->sock) & ZMQ_POLLIN) && dealer_readable(&a))
                a.zmq_check = true; /* a full batch: more may wait */
        }
        items[n++] = (struct pollfd){.fd = a.lfd, .events = POLLIN};
        items[n++] = (struct pollfd){.fd = a.dealer_fd, .events = POLLIN}; /* -1: ignored */
        items[n++] = (struct pollfd){.fd = a.mon_fd, .events = POLLIN};
        for (int i = 0; i < AGENT_MAX_CLIENTS; i++) {
            agent_client_t *cl = &a.clients[i];
            if (cl->fd < 0)
                continue;
            map[n - 3] = i;
            items[n++] =
                (struct pollfd){.fd = cl->fd,
                                .events = (short)((cl->closing ? 0 : POLLIN) |
                                                  (ftctl_frame_pending(&cl->tx) ? POLLOUT : 0))};
        }
        long wait_ms = 1000;
        if (a.persist_s > 0 && a.n_clients == 0) {
            int64_t left = a.idle_since_ms + (int64_t)a.persist_s * 1000 - ft_mono_ms();
            if (left <= 0) {
                ft_info("no client for %d s: exiting", a.persist_s);
                break;
            }
            if (left < wait_ms)
                wait_ms = (long)left;
        }
        if (a.zmq_check || a.mon_check)
            wait_ms = 0;
        if (poll(items, (nfds_t)n, (int)wait_ms) < 0) {
            if (errno == EINTR)
                continue;
            ft_error("poll: %s", strerror(errno));
            goto out_unlink;
        }
        if (items[1].revents & (POLLIN | POLLERR))
            a.zmq_check = true;
        if (items[2].revents & (POLLIN | POLLERR))
            a.mon_check = true;
        for (int k = 3; k < n; k++) {
            int i = map[k - 3];
            agent_client_t *cl = &a.clients[i];
            if (cl->fd != items[k].fd)
                continue; /* closed and maybe reused during this turn */
            if ((items[k].revents & (POLLOUT | POLLERR | POLLHUP)) &&
                ftctl_frame_pending(&cl->tx)) {
                ft_err_clear(&err);
                if (ftctl_frame_flush(&cl->tx, cl->fd, &err) == FTCTL_FRAME_ERROR) {
                    client_close(&a, i);
                    continue;
                }
            }
            if (cl->closing && ftctl_frame_pending(&cl->tx) == 0) {
                client_close(&a, i);
                continue;
            }
            if (items[k].revents & (POLLIN | POLLERR | POLLHUP))
                client_readable(&a, i);
        }
        if (items[0].revents & POLLIN)
            accept_clients(&a);
    }
    if (agent_signal)
        ft_info("signal %d: exiting", (int)agent_signal);
    /* Flush what agent_stop answered (bounded: the sockets are non-blocking). */
    for (int i = 0; i < AGENT_MAX_CLIENTS; i++)
        if (a.clients[i].fd >= 0)
            ftctl_frame_flush(&a.clients[i].tx, a.clients[i].fd, &err);
    rc = FTCTL_EXIT_OK;
out_unlink : {
    struct stat st;
    if (stat(a.path, &st) == 0 && st.st_ino == a.ino)
        unlink(a.path);
}
out:
    if (ready_fd >= 0) {
        ssize_t w = write(ready_fd, ready, strlen(ready));
        (void)w;
        close(ready_fd);
    }
    for (int i = 0; i < AGENT_MAX_CLIENTS; i++)
        client_close(&a, i);
    if (a.lfd >= 0)
        close(a.lfd);
    free(items);
    ftctl_close(c);
    return rc;
}

/* Starts the agent in the background (double fork, setsid, stdio on
 * /dev/null or log_path) and waits until it listens. Its stderr stays the
 * caller's until then, so that a set-up error reaches the person who asked.
 * quiet: print nothing on success (the persist setting). 0 or -1. */
static int agent_spawn(ftctl_t *c, int persist_s, const char *log_path, const char *path,
                       bool quiet)
{
    int pfd[2];
    char buf[32] = "";
    size_t got = 0;

    if (pipe2(pfd, O_CLOEXEC) < 0) {
        ftctl_die_msg("cannot start the agent: pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        ftctl_die_msg("cannot start the agent: fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        close(pfd[0]);
        if (setsid() < 0)
            _exit(1);
        pid_t p2 = fork();
        if (p2 != 0)
            _exit(p2 < 0 ? 1 : 0);
        /* The agent: none of the caller's descriptors but stderr (until
         * ready) and the pipe; no ZeroMQ state from before the fork. */
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        int logfd = -1;
        if (log_path)
            logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (null < 0 || (log_path && logfd < 0)) {
            ftctl_die_msg("cannot open '%s': %s", log_path ? log_path : "/dev/null",
                          strerror(errno));
            _exit(1);
        }
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        int keep[3] = {null, logfd, pfd[1]};
        for (int fd = 3; fd < 1024; fd++)
            if (fd != keep[0] && fd != keep[1] && fd != keep[2])
                close(fd);
        c->agent_fd = -1;
        c->zctx = c->sock = c->mon = NULL;
        unsetenv("FTCTL_TRACE"); /* the caller's trace is about the caller */
        ftctl_trace_init();
        umask(077);
        ft_log_init("ftctl agent", FT_LOG_INFO);
        int rc = agent_serve(c, persist_s, pfd[1], logfd >= 0 ? logfd : null);
        _exit(rc);
    }
    close(pfd[1]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    int64_t deadline = ft_mono_ms() + AGENT_START_WAIT_MS;
    for (;;) {
        int64_t left = deadline - ft_mono_ms();
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (left <= 0)
            break;
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        ssize_t r = read(pfd[0], buf + got, sizeof(buf) - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (memchr(buf, '\n', got) || got == sizeof(buf) - 1)
            break;
    }
    close(pfd[0]);
    buf[got] = '\0';
    if (strcmp(buf, "ok\n") == 0) {
        if (!quiet)
            printf("%s\n", path);
        return 0;
    }
    if (strcmp(buf, "already\n") == 0) {
        if (!quiet) {
            ftctl_die_msg("an agent already listens on '%s'", path);
            printf("%s\n", path);
        }
        return 0;
    }
    if (!got)
        ftctl_die_msg("the agent did not start within %d s", AGENT_START_WAIT_MS / 1000);
    return -1;
}

/* ---- ftctl agent start|run|stop|status ---- */

/* Sends one message to the agent on fd and reads one frame back within
 * timeout_ms: the parsed reply, or NULL after saying why. */
static cJSON *agent_exchange(int fd, const cJSON *msg, int timeout_ms)
{
    int64_t deadline = ft_mono_ms() + timeout_ms;
    ftctl_frame_tx_t tx;
    ftctl_frame_rx_t rx;
    ft_err_t err;
    cJSON *reply = NULL;
    char *text = ft_json_print(msg);

    ft_err_clear(&err);
    ftctl_frame_tx_init(&tx, 1 << 16);
    ftctl_frame_rx_init(&rx, FTCTL_REPLY_MAX_BYTES);
    if (!text || ftctl_frame_push(&tx, text, strlen(text), &err) < 0) {
        ftctl_die_msg("cannot frame the request: %s", text ? err.msg : "out of memory");
        goto out;
    }
    for (;;) {
        ftctl_frame_rc_t r = ftctl_frame_flush(&tx, fd, &err);
        if (r == FTCTL_FRAME_DONE)
            break;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int64_t left = deadline - ft_mono_ms();
        if (r == FTCTL_FRAME_ERROR || left <= 0 || poll(&p, 1, (int)left) < 0)
            goto broken;
    }
    for (;;) {
        ftctl_frame_rc_t r = ftctl_frame_read(&rx, fd, &err);
        if (r == FTCTL_FRAME_DONE)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - ft_mono_ms();
        if (r != FTCTL_FRAME_AGAIN || left <= 0)
            goto broken;
        if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
            goto broken;
    }
    reply = ft_json_parse(rx.body, rx.len, &err);
    if (!reply)
        ftctl_die_msg("invalid reply from the agent: %s", err.msg);
    goto out;
broken:
    ftctl_die_msg("no reply from the agent within %.1f s%s%s", timeout_ms / 1000.0,
                  err.msg[0] ? ": " : "", err.msg);
out:
    free(text);
    ftctl_frame_tx_free(&tx);
    ftctl_frame_rx_free(&rx);
    return reply;
}

/* Asks this endpoint's agent (type agent_status or agent_stop). 0 with
 * *reply; 1 when none listens (a stale socket is removed when remove_stale);
 * else an exit code after saying why. */
static int agent_ask(ftctl_t *c, const char *type, bool remove_stale, char *path, size_t plen,
                     cJSON **reply)
{
    char dir[FT_PATH_MAX];
    ft_err_t err;
    int fd = -1, rc = FTCTL_EXIT_FAILED;
    cJSON *req = NULL;

    *reply = NULL;
    ft_err_clear(&err);
    if (agent_paths(c, dir, sizeof(dir), path, plen, &err) < 0) {
        ftctl_die_msg("%s", err.msg);
        return FTCTL_EXIT_USAGE;
    }
    int r = open_checked(c, dir, path, &fd, &err);
    if (r < 0) {
        ftctl_die_msg("not using the agent: %s", err.msg);
        return FTCTL_EXIT_FAILED;
    }
    if (r == 1) {
        if (errno == ECONNREFUSED && remove_stale && unlink(path) == 0)
            ftctl_die_msg("removed the stale socket '%s'", path);
        return 1;
    }
    char id[48];
    snprintf(id, sizeof(id), "%ld-agent", (long)getpid());
    req = cJSON_CreateObject();
    if (!req || !cJSON_AddNumberToObject(req, "v", FT_PROTO_VERSION) ||
        !cJSON_AddStringToObject(req, "type", type) || !cJSON_AddStringToObject(req, "id", id)) {
        ftctl_die_msg("out of memory");
        goto out;
    }
    *reply = agent_exchange(fd, req, c->timeout_ms);
    if (*reply)
        rc = 0;
out:
    cJSON_Delete(req);
    close(fd);
    return rc;
}

/* --persist S: whole seconds, 0 (never) up to a year. */
static int parse_persist(const char *cmd, const char *v, int *out)
{
    char *end;
    errno = 0;
    long s = strtol(v, &end, 10);
    if (errno || end == v || *end || s < 0 || s > 366L * 86400) {
        ftctl_usage_error(cmd, "bad --persist '%s': expected whole seconds, 0 (never) to %ld",
                          ft_sanitize(v, 32), 366L * 86400);
        return -1;
    }
    *out = (int)s;
    return 0;
}

static int agent_start(ftctl_t *c, int argc, char **argv, bool foreground)
{
    static const struct option opts[] = {
        {"persist", required_argument, NULL, 'p'},
        {"log", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int persist_s = FTCTL_AGENT_PERSIST_S, opt;
    const char *log_path = NULL;
    char dir[FT_PATH_MAX], path[FT_PATH_MAX];
    ft_err_t err;

    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'p':
            if (parse_persist("agent", optarg, &persist_s) < 0)
                return FTCTL_EXIT_USAGE;
            break;
        case 'l':
            if (foreground)
                return ftctl_usage_error("agent",
                                         "--log is for 'agent start' (run logs to stderr)");
            log_path = optarg;
            break;
        case 'h':
            ftctl_usage("agent", 0);
            return FTCTL_EXIT_OK;
        case ':':
            return ftctl_usage_error("agent", "option '%s' needs a value", argv[optind - 1]);
        default:
            return ftctl_usage_error("agent", "unknown option '%s'",
                                     ft_sanitize(argv[optind - 1], 64));
        }
    }
    if (optind < argc)
        return ftctl_usage_error("agent", "unexpected argument '%s'",
                                 ft_sanitize(argv[optind], 64));
    ft_err_clear(&err);
    if (agent_paths(c, dir, sizeof(dir), path, sizeof(path), &err) < 0) {
        ftctl_die_msg("%s", err.msg);
        return FTCTL_EXIT_USAGE;
    }
    if (foreground) {
        ft_log_init("ftctl agent", FT_LOG_INFO);
        return agent_serve(c, persist_s, -1, -1);
    }
    return agent_spawn(c, persist_s, log_path, path, false) == 0 ? FTCTL_EXIT_OK
                                                                 : FTCTL_EXIT_FAILED;
}

static int agent_cmd_start(ftctl_t *c, int argc, char **argv)
{
    return agent_start(c, argc, argv, false);
}

static int agent_cmd_run(ftctl_t *c, int argc, char **argv)
{
    return agent_start(c, argc, argv, true);
}

/* What `agent stop` and `agent status` share: no option but --help, then
 * agent_ask (stop: the agent_stop request, and a stale socket is removed).
 * True with *reply; false with *rc the exit code, after saying why ("no agent
 * listens" is success for stop, a failure for status). */
static bool agent_subcmd_ask(ftctl_t *c, int argc, char **argv, bool stop, char *path, size_t plen,
                             cJSON **reply, int *rc)
{
    *rc = ftctl_only_help_opt("agent", argc, argv);
    if (*rc != FTCTL_EXIT_OK) {
        *rc = *rc < 0 ? FTCTL_EXIT_OK : *rc;
        return false;
    }
    *rc = agent_ask(c, stop ? "agent_stop" : "agent_status", stop, path, plen, reply);
    if (*rc == 1) {
        ftctl_die_msg("no agent listens on '%s'", path);
        *rc = stop ? FTCTL_EXIT_OK : FTCTL_EXIT_FAILED;
    }
    return *rc == 0;
}

static int agent_cmd_stop(ftctl_t *c, int argc, char **argv)
{
    char path[FT_PATH_MAX];
    cJSON *reply = NULL;
    int rc;
    if (!agent_subcmd_ask(c, argc, argv, true, path, sizeof(path), &reply, &rc))
        return rc;
    /* It unlinks its socket on the way out: wait for that, briefly. */
    int64_t deadline = ft_mono_ms() + c->timeout_ms;
    struct stat st;
    while (stat(path, &st) == 0 && ft_mono_ms() < deadline)
        usleep(10000);
    printf("agent stopped (pid %lld)\n", (long long)ftctl_get_int(reply, "pid", 0));
    cJSON_Delete(reply);
    return FTCTL_EXIT_OK;
}

static int agent_cmd_status(ftctl_t *c, int argc, char **argv)
{
    char path[FT_PATH_MAX], up[32];
    cJSON *reply = NULL;
    int rc;
    if (!agent_subcmd_ask(c, argc, argv, false, path, sizeof(path), &reply, &rc))
        return rc;
    if (c->output == FTCTL_OUT_JSON) {
        ftctl_print_payload(reply);
    } else {
        ftctl_fmt_duration((int64_t)ftctl_get_num(reply, "uptime_s", 0), up, sizeof(up));
        printf("socket:     %s\n", ftctl_get_str(reply, "socket", "?"));
        printf("pid:        %lld\n", (long long)ftctl_get_int(reply, "pid", 0));
        printf("scheduler:  %s\n", ft_sanitize(ftctl_get_str(reply, "endpoint", "?"), 200));
        printf("relayed:    %lld requests, %lld replies routed, %lld dropped\n",
               (long long)ftctl_get_int(reply, "relayed", 0),
               (long long)ftctl_get_int(reply, "replies", 0),
               (long long)ftctl_get_int(reply, "dropped", 0));
        printf("clients:    %lld connected, %lld requests in flight\n",
               (long long)ftctl_get_int(reply, "clients", 0),
               (long long)ftctl_get_int(reply, "in_flight", 0));
        printf("uptime:     %s (exits after %lld s without a client; 0 = never)\n", up,
               (long long)ftctl_get_int(reply, "persist_s", 0));
        const char *hs = ftctl_get_str(reply, "handshake", "");
        if (*hs)
            printf("handshake:  %s\n", ft_sanitize(hs, 200));
    }
    cJSON_Delete(reply);
    return FTCTL_EXIT_OK;
}

/* The agent's verbs: one row each. */
static const struct {
    const char *name;                              /* word after `agent` */
    int (*run)(ftctl_t *c, int argc, char **argv); /* argv[0] is the word */
} agent_verbs[] = {
    {"start", agent_cmd_start},
    {"run", agent_cmd_run},
    {"stop", agent_cmd_stop},
    {"status", agent_cmd_status},
};

int ftctl_cmd_agent(ftctl_t *c, int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
        return ftctl_usage("agent", 0);
    if (argc < 2)
        return ftctl_usage_error("agent", "expected start, run, stop or status");
    for (size_t i = 0; i < sizeof(agent_verbs) / sizeof(agent_verbs[0]); i++)
        if (strcmp(agent_verbs[i].name, argv[1]) == 0)
            return agent_verbs[i].run(c, argc - 1, argv + 1);
    return ftctl_usage_error("agent", "unknown action '%s': expected start, run, stop or status",
                             ft_sanitize(argv[1], 32));
}
