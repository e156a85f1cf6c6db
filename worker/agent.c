/*
 * worker/agent.c: the ftworker reactor (see agent.h).
 *
 * Connection states: WAIT (no socket; reconnect at reconnect_at_ms) -> HELLO
 * (socket open, hello sent) -> READY (hello_reply heard). Silence longer than
 * heartbeat_ms * liveness in HELLO or READY closes the socket and waits
 * 1 s, 2 s, ... 32 s before the next try (Paranoid Pirate); hello_reply resets
 * the wait to 1 s. Inbound messages go through ft_proto_decode and then a
 * handler table; outbound ones are sent with ZMQ_DONTWAIT and never block.
 * Progress lines faster than one per PROGRESS_MIN_INTERVAL_MS per rank are
 * merged (the newest wins) so that a trainer logging every few milliseconds
 * does not turn into as many scheduler writes; eval, checkpoint and done
 * events are always sent.
 * Costs: O(ranks) per loop turn; O(outbox) per confirmation.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "agent.h"
#include "ft/curve.h"
#include "event.h"
#include "logread.h"
#include "rank.h"
#include "wrdv.h"
#include "ft/json.h"
#include "ft/jobspec.h"
#include "ft/proto.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 32000
#define POWER_SAMPLE_MS 500     /* power sampling period for GPUs without an energy counter */
#define OUTBOX_MAX 4096         /* unconfirmed rank_exited kept at most */
#define EVENT_READS_PER_TURN 16 /* 4 KiB reads per rank per loop turn */
#define BAD_LINE_WARNINGS 5     /* per rank, then debug level */
#define POLL_MAX_MS 1000
#define PROGRESS_MIN_INTERVAL_MS 200 /* per rank; faster progress lines are merged */
#define SEND_WARN_EVERY_MS 5000      /* at most one send-failure warning per window */

typedef enum { CONN_WAIT = 0, CONN_HELLO, CONN_READY } conn_state_t;

static const char *const conn_names[] = {"waiting", "hello sent", "ready"};

typedef struct {
    cJSON *msg;       /* the rank_exited message */
    bool sent;        /* sent at least once */
    uint64_t session; /* socket it was last sent on */
    int64_t sent_ms;  /* monotonic ms of the last send */
} outbox_entry_t;

struct agent {
    agent_opts_t o;                    /* options; strings owned by the caller */
    char routing_id[80];               /* "w/NAME" */
    wdev_set_t *devs;                  /* owned */
    void *zctx;                        /* ZeroMQ context */
    void *sock;                        /* DEALER, NULL in CONN_WAIT */
    conn_state_t conn;                 /* see the banner */
    uint64_t session;                  /* incremented for every new socket */
    int64_t last_heard_ms;             /* monotonic ms of the last inbound frame (or connect) */
    int64_t last_sent_ms;              /* monotonic ms of the last outbound frame */
    int64_t last_send_warn_ms;         /* monotonic ms of the last send-failure warning */
    int64_t last_hello_ms;             /* monotonic ms of the last hello */
    int64_t reconnect_at_ms;           /* CONN_WAIT: when to open the next socket */
    int backoff_ms;                    /* next wait after a lost connection */
    int heartbeat_ms;                  /* from hello_reply */
    int liveness;                      /* from hello_reply */
    rank_t *ranks[WDEV_MAX];           /* running ranks (not yet reaped) */
    int slot_fds[WDEV_MAX];            /* per device: its pid slot (rank_slot_open), or -1
                                          until a rank first runs there */
    int nranks;                        /* entries in ranks */
    outbox_entry_t outbox[OUTBOX_MAX]; /* unconfirmed rank_exited, oldest first */
    int nout;                          /* entries in outbox */
    int sigfd;                         /* signalfd for SIGCHLD, SIGTERM, SIGINT */
    sigset_t old_mask;                 /* mask to restore in agent_destroy */
    bool stopping;                     /* SIGTERM/SIGINT seen: stop ranks, then exit */
    int stop_signals;                  /* how many SIGTERM/SIGINT arrived */
};

/* ---- sending ---- */

static int send_msg(agent_t *a, const cJSON *m)
{
    if (!a->sock)
        return -1;
    char *text = ft_json_print(m);
    if (!text) {
        ft_error("cannot print an outbound message");
        return -1;
    }
    size_t len = strlen(text);
    int rc = zmq_send(a->sock, text, len, ZMQ_DONTWAIT);
    int64_t now = ft_mono_ms();
    if (rc < 0) {
        /* one warning per window: a full queue would otherwise flood the log */
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "type");
        bool warn = now - a->last_send_warn_ms >= SEND_WARN_EVERY_MS;
        ft_log(warn ? FT_LOG_WARN : FT_LOG_DEBUG, "cannot send '%s' to the scheduler: %s",
               cJSON_IsString(t) ? t->valuestring : "?", zmq_strerror(errno));
        if (warn)
            a->last_send_warn_ms = now;
    }
    /* a failed send counts too, so that a full queue does not make the
     * heartbeat timer fire on every loop turn */
    a->last_sent_ms = now;
    free(text);
    return rc < 0 ? -1 : 0;
}

/* Sends and deletes m. */
static void send_and_free(agent_t *a, cJSON *m)
{
    if (m)
        send_msg(a, m);
    cJSON_Delete(m);
}

static void send_error(agent_t *a, const char *re, const ft_err_t *err)
{
    send_and_free(a, ft_proto_error(re, err));
}

static cJSON *rank_msg(ft_msg_type_t type, int64_t job_id, int64_t attempt, int rank)
{
    cJSON *m = ft_proto_new(type, NULL);
    if (!m || !cJSON_AddNumberToObject(m, "job_id", (double)job_id) ||
        !cJSON_AddNumberToObject(m, "attempt", (double)attempt) ||
        !cJSON_AddNumberToObject(m, "rank", rank)) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

static void send_rank_started(agent_t *a, const rank_t *r)
{
    cJSON *m = rank_msg(FT_MSG_RANK_STARTED, r->job_id, r->attempt, r->rank);
    if (m && !cJSON_AddNumberToObject(m, "pid", r->pid)) {
        cJSON_Delete(m);
        m = NULL;
    }
    send_and_free(a, m);
}

/* ---- outbox of rank_exited ---- */

static void outbox_send(agent_t *a, outbox_entry_t *e)
{
    if (send_msg(a, e->msg) == 0) {
        e->sent = true;
        e->session = a->session;
        e->sent_ms = ft_mono_ms();
    }
}

static void outbox_push(agent_t *a, cJSON *m)
{
    if (!m) {
        ft_error("out of memory building rank_exited");
        return;
    }
    if (a->nout == OUTBOX_MAX) {
        ft_warn("outbox full: dropping the oldest unconfirmed rank_exited");
        cJSON_Delete(a->outbox[0].msg);
        memmove(&a->outbox[0], &a->outbox[1], (size_t)(OUTBOX_MAX - 1) * sizeof(a->outbox[0]));
        a->nout--;
    }
    outbox_entry_t *e = &a->outbox[a->nout++];
    memset(e, 0, sizeof(*e));
    e->msg = m;
    if (a->sock)
        outbox_send(a, e);
}

/* The scheduler spoke (not an error) on this socket: what we sent on it at
 * least one heartbeat interval ago has reached a scheduler that knows us. */
static void outbox_confirm(agent_t *a, int64_t now)
{
    int j = 0;
    for (int i = 0; i < a->nout; i++) {
        outbox_entry_t *e = &a->outbox[i];
        if (e->sent && e->session == a->session && now - e->sent_ms >= a->heartbeat_ms) {
            cJSON_Delete(e->msg);
            continue;
        }
        a->outbox[j++] = *e;
    }
    a->nout = j;
}

/* ---- connection ---- */

static int send_hello(agent_t *a)
{
    cJSON *m = ft_proto_new(FT_MSG_HELLO, NULL);
    cJSON *running = cJSON_CreateArray();
    cJSON *devices = wdev_to_json(a->devs);
    int rc = -1;
    bool built = false;
    if (!m || !running || !devices)
        goto out;
    for (int i = 0; i < a->nranks; i++) {
        const rank_t *r = a->ranks[i];
        if (r->launch_failed)
            continue;
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(running, o) ||
            !cJSON_AddNumberToObject(o, "job_id", (double)r->job_id) ||
            !cJSON_AddNumberToObject(o, "attempt", (double)r->attempt) ||
            !cJSON_AddNumberToObject(o, "rank", r->rank) ||
            !cJSON_AddNumberToObject(o, "pid", r->pid))
            goto out;
    }
    if (!cJSON_AddStringToObject(m, "name", a->o.name) ||
        !cJSON_AddStringToObject(m, "hostname", a->o.hostname) ||
        !cJSON_AddNumberToObject(m, "pid", getpid()) ||
        !cJSON_AddStringToObject(m, "version", FT_VERSION_STRING) ||
        !cJSON_AddItemToObject(m, "devices", devices))
        goto out;
    devices = NULL;
    if (!cJSON_AddItemToObject(m, "running", running))
        goto out;
    running = NULL;
    built = true;
    rc = send_msg(a, m);
    a->last_hello_ms = ft_mono_ms();
    ft_info("hello sent to '%s' (%d device(s), %d running rank(s))", a->o.endpoint,
            wdev_count(a->devs), a->nranks);
out:
    if (!built)
        ft_error("out of memory building hello");
    cJSON_Delete(devices);
    cJSON_Delete(running);
    cJSON_Delete(m);
    return rc;
}

static void conn_close(agent_t *a, const char *why)
{
    if (a->sock) {
        int linger = 0;
        zmq_setsockopt(a->sock, ZMQ_LINGER, &linger, sizeof(linger));
        zmq_close(a->sock);
        a->sock = NULL;
    }
    a->conn = CONN_WAIT;
    a->reconnect_at_ms = ft_mono_ms() + a->backoff_ms;
    ft_warn("%s; reconnecting in %d ms", why, a->backoff_ms);
    a->backoff_ms = a->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : a->backoff_ms * 2;
}

static int conn_open(agent_t *a)
{
    int linger = 0;
    int64_t maxmsg = FT_MSG_MAX_BYTES;
    ft_err_t cerr = {0};
    a->sock = zmq_socket(a->zctx, ZMQ_DEALER);
    if (!a->sock ||
        zmq_setsockopt(a->sock, ZMQ_ROUTING_ID, a->routing_id, strlen(a->routing_id)) < 0 ||
        zmq_setsockopt(a->sock, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
        zmq_setsockopt(a->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) < 0 ||
        ft_curve_client_apply(a->sock, &cerr) < 0 || zmq_connect(a->sock, a->o.endpoint) < 0) {
        ft_error("cannot connect to '%s': %s", a->o.endpoint,
                 cerr.msg[0] ? cerr.msg : zmq_strerror(errno));
        if (a->sock)
            zmq_close(a->sock);
        a->sock = NULL;
        return -1;
    }
    a->session++;
    a->conn = CONN_HELLO;
    a->last_heard_ms = ft_mono_ms();
    send_hello(a);
    return 0;
}

/* ---- ranks ---- */

static rank_t *find_rank(agent_t *a, int64_t job_id, int64_t attempt, int rank)
{
    for (int i = 0; i < a->nranks; i++) {
        rank_t *r = a->ranks[i];
        if (r->job_id == job_id && r->attempt == attempt && r->rank == rank)
            return r;
    }
    return NULL;
}

static void request_stop(rank_t *r, int64_t grace_ms)
{
    int64_t deadline = ft_mono_ms() + grace_ms;
    if (!r->stop_requested) {
        r->stop_requested = true;
        rank_signal(r, SIGTERM);
    }
    if (r->kill_at_ms == 0 || deadline < r->kill_at_ms)
        r->kill_at_ms = deadline;
}

/* Sends the rank's coalesced progress, if any. */
static void flush_progress(agent_t *a, rank_t *r)
{
    if (!r->pending_progress)
        return;
    send_and_free(a, r->pending_progress);
    r->pending_progress = NULL;
    r->progress_sent_ms = ft_mono_ms();
}

static void handle_event_line(agent_t *a, rank_t *r, char *line, size_t len)
{
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (len == 0)
        return;
    event_t ev;
    ft_err_t err = {0};
    char blob[FT_RDV_BLOB_MAX + 1];
    int rdv = wrdv_event(line, len, blob, sizeof(blob), &err);
    if (rdv > 0) {
        /* stamped with the rank's own job, attempt and rank (wrdv.h); kept
         * until answered, so that a reconnect (or a restarted scheduler,
         * which forgot the exchange) gets it again */
        free(r->rdv_blob);
        r->rdv_blob = strdup(blob);
        send_and_free(a, wrdv_request(r->job_id, r->attempt, r->rank, blob));
        return;
    }
    if (rdv < 0 || event_parse_line(line, len, &ev, &err) < 0) {
        r->bad_lines++;
        ft_log(r->bad_lines <= BAD_LINE_WARNINGS ? FT_LOG_WARN : FT_LOG_DEBUG,
               "job %lld rank %d: dropping event line: %s", (long long)r->job_id, r->rank, err.msg);
        return;
    }
    if (ev.unknown_key[0] && !r->warned_unknown) {
        r->warned_unknown = true;
        ft_warn("job %lld rank %d: event key '%s' is not known; ignored", (long long)r->job_id,
                r->rank, ev.unknown_key);
    }
    cJSON *m = event_to_progress(&ev, r->job_id, r->attempt, r->rank, r->last_total);
    if (ev.has_total)
        r->last_total = ev.total_steps;
    if (!m) {
        ft_error("out of memory building progress");
        return;
    }
    int64_t now = ft_mono_ms();
    if (ev.kind == EVENT_PROGRESS && now - r->progress_sent_ms < PROGRESS_MIN_INTERVAL_MS) {
        /* too soon after the last one: keep only the newest, cron sends it */
        cJSON_Delete(r->pending_progress);
        r->pending_progress = m;
        return;
    }
    /* eval, checkpoint and done are never merged away; an older pending
     * progress goes first so that the order of steps holds */
    if (ev.kind == EVENT_PROGRESS) {
        cJSON_Delete(r->pending_progress);
        r->pending_progress = NULL;
    }
    flush_progress(a, r);
    send_and_free(a, m);
    r->progress_sent_ms = now;
}

static void feed_events(agent_t *a, rank_t *r, const char *buf, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(buf + i, '\n', n - i);
        size_t seg = nl ? (size_t)(nl - (buf + i)) : n - i;
        if (!r->ev_skipping) {
            if (r->evlen + seg > EVENT_LINE_MAX) {
                ft_warn("job %lld rank %d: dropping an event line longer than %d bytes",
                        (long long)r->job_id, r->rank, EVENT_LINE_MAX);
                r->ev_skipping = true;
                r->evlen = 0;
            } else {
                memcpy(r->evbuf + r->evlen, buf + i, seg);
                r->evlen += seg;
            }
        }
        i += seg;
        if (nl) {
            if (!r->ev_skipping)
                handle_event_line(a, r, r->evbuf, r->evlen);
            r->evlen = 0;
            r->ev_skipping = false;
            i++;
        }
    }
}

/* Reads what the event pipe holds now. final: the rank has exited, so an
 * unterminated last line counts too. */
static void read_events(agent_t *a, rank_t *r, bool final)
{
    char buf[4096];
    for (int turn = 0; r->event_fd >= 0 && turn < (final ? 256 : EVENT_READS_PER_TURN); turn++) {
        ssize_t n = read(r->event_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            if (n < 0)
                ft_warn("job %lld rank %d: event pipe: %s", (long long)r->job_id, r->rank,
                        strerror(errno));
            close(r->event_fd);
            r->event_fd = -1;
            break;
        }
        feed_events(a, r, buf, (size_t)n);
    }
    if ((final || r->event_fd < 0) && r->evlen > 0 && !r->ev_skipping) {
        handle_event_line(a, r, r->evbuf, r->evlen);
        r->evlen = 0;
    }
}

static void launch_failed(agent_t *a, int64_t job_id, int64_t attempt, int rank, const char *why)
{
    char reason[257];
    char full[600];
    snprintf(full, sizeof(full), "launch_failed: %s", why);
    event_clean_text(reason, sizeof(reason), full);
    ft_warn("job %lld attempt %lld rank %d: %s", (long long)job_id, (long long)attempt, rank,
            reason);
    cJSON *m = rank_msg(FT_MSG_RANK_EXITED, job_id, attempt, rank);
    if (m &&
        (!cJSON_AddNumberToObject(m, "exit_code", -1) || !cJSON_AddNumberToObject(m, "signal", 0) ||
         !cJSON_AddStringToObject(m, "reason", reason))) {
        cJSON_Delete(m);
        m = NULL;
    }
    outbox_push(a, m);
}

/* Reports how a rank's exec went, once its report pipe says so. A failed
 * exec is reported by rank_finished, once the child is reaped: until then
 * the rank still holds its device, and a scheduler told earlier could send
 * the next rank to a device this worker still calls busy. */
static void settle_exec(agent_t *a, rank_t *r)
{
    ft_err_t err = {0};
    int rc = rank_check_exec(r, &err);
    if (rc > 0) {
        ft_info("job %lld attempt %lld rank %d started: pid %d on device %d", (long long)r->job_id,
                (long long)r->attempt, r->rank, (int)r->pid, r->device);
        send_rank_started(a, r);
    } else if (rc < 0) {
        snprintf(r->launch_why, sizeof(r->launch_why), "%s", err.msg);
    }
}

/* Adds the energy since the last power sample (trapezoid) and takes a new
 * sample; a failed read ends the integration (the ledger then estimates). */
static void sample_power(agent_t *a, rank_t *r, int64_t now)
{
    uint64_t mw = 0;
    ft_err_t err = {0};

    if (!r->power_ok)
        return;
    if (wdev_power_mw(a->devs, r->device, &mw, &err) != 0) {
        r->power_ok = false;
        return;
    }
    /* mW x ms = uJ */
    r->power_mj +=
        (double)(r->power_last_mw + mw) / 2.0 * (double)(now - r->power_last_ms) / 1000.0;
    r->power_last_mw = mw;
    r->power_last_ms = now;
}

static void rank_finished(agent_t *a, int idx, int status)
{
    rank_t *r = a->ranks[idx];
    if (r->report_fd >= 0) /* the child is gone, so its report is complete */
        settle_exec(a, r);
    if (r->launch_failed) { /* its exec failed: report that, not an exit */
        launch_failed(a, r->job_id, r->attempt, r->rank,
                      r->launch_why[0] ? r->launch_why : "the exec failed");
        rank_forget(r);
        rank_destroy(&a->ranks[idx]);
        a->ranks[idx] = a->ranks[--a->nranks];
        a->ranks[a->nranks] = NULL;
        return;
    }
    read_events(a, r, true);
    flush_progress(a, r);    /* progress always arrives before rank_exited */
    rank_signal(r, SIGKILL); /* whatever the rank left behind in its group */
    int code, sig;
    const char *reason;
    rank_exit_fields(r, status, &code, &sig, &reason);
    ft_info("job %lld attempt %lld rank %d (pid %d) ended: %s, exit code %d, signal %d, "
            "after %.1f s",
            (long long)r->job_id, (long long)r->attempt, r->rank, (int)r->pid, reason, code, sig,
            (double)(ft_mono_ms() - r->started_ms) / 1000.0);
    cJSON *m = rank_msg(FT_MSG_RANK_EXITED, r->job_id, r->attempt, r->rank);
    uint64_t e1 = 0;
    ft_err_t eerr = {0};
    /* energy_mj only when both readings worked and the counter did not restart */
    bool energy =
        r->energy_ok && wdev_energy_mj(a->devs, r->device, &e1, &eerr) == 0 && e1 >= r->energy0_mj;
    sample_power(a, r, ft_mono_ms());
    if (!energy && r->power_ok) {
        energy = true;
        e1 = (uint64_t)r->power_mj;
        r->energy0_mj = 0;
    }
    if (m && (!cJSON_AddNumberToObject(m, "exit_code", code) ||
              !cJSON_AddNumberToObject(m, "signal", sig) ||
              !cJSON_AddStringToObject(m, "reason", reason) ||
              (energy && !cJSON_AddNumberToObject(m, "energy_mj", (double)(e1 - r->energy0_mj))))) {
        cJSON_Delete(m);
        m = NULL;
    }
    outbox_push(a, m);
    rank_forget(r);
    rank_destroy(&a->ranks[idx]);
    a->ranks[idx] = a->ranks[--a->nranks];
    a->ranks[a->nranks] = NULL;
}

static void reap_children(agent_t *a)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            break;
        int i = 0;
        while (i < a->nranks && a->ranks[i]->pid != pid)
            i++;
        if (i == a->nranks)
            ft_debug("reaped unknown child %d", (int)pid);
        else
            rank_finished(a, i, status);
    }
}

/* ---- handlers for scheduler messages ---- */

static void on_hello_reply(agent_t *a, const cJSON *m, const char *re)
{
    int64_t hb = FT_HEARTBEAT_MS, live = FT_LIVENESS;
    ft_err_t err = {0};
    ft_json_get_int(m, NULL, "heartbeat_ms", true, 1, 3600000, &hb, &err);
    ft_json_get_int(m, NULL, "liveness", true, 1, 1000, &live, &err);
    /* bounds that keep the loop sane whatever the scheduler says */
    a->heartbeat_ms = (int)(hb < 10 ? 10 : hb > 600000 ? 600000 : hb);
    a->liveness = (int)(live < 2 ? 2 : live > 1000 ? 1000 : live);
    a->conn = CONN_READY;
    a->backoff_ms = BACKOFF_MIN_MS;
    ft_info("registered with the scheduler as '%s' (heartbeat %d ms, liveness %d)", a->routing_id,
            a->heartbeat_ms, a->liveness);
    for (int i = 0; i < a->nout; i++)
        outbox_send(a, &a->outbox[i]);
    for (int i = 0; i < a->nranks; i++) {
        rank_t *r = a->ranks[i];
        if (r->rdv_blob)
            send_and_free(a, wrdv_request(r->job_id, r->attempt, r->rank, r->rdv_blob));
    }
}

static void on_heartbeat(agent_t *a, const cJSON *m, const char *re)
{
}

static void on_error(agent_t *a, const cJSON *m, const char *re)
{
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(m, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(m, "message");
    const char *c = cJSON_IsString(code) ? code->valuestring : "?";
    char cbuf[64]; /* ft_sanitize's buffer is shared by both arguments */
    ft_strlcpy(cbuf, ft_sanitize(c, 32), sizeof(cbuf));
    ft_warn("scheduler error '%s': %s", cbuf,
            ft_sanitize(cJSON_IsString(msg) ? msg->valuestring : "", 200));
    if (strcmp(c, ft_errcode_name(FT_ENOTREG)) == 0 &&
        (a->conn != CONN_HELLO || ft_mono_ms() - a->last_hello_ms >= 1000)) {
        a->conn = CONN_HELLO;
        send_hello(a);
    }
}

/* One entry of start.ranks, checked. */
static int parse_rank_entry(agent_t *a, const cJSON *o, int world_size, int *rank, int *local,
                            int *dev, ft_err_t *err)
{
    static const char *const keys[] = {"rank", "local_rank", "device", NULL};
    int64_t r, l, d;
    if (!cJSON_IsObject(o)) {
        ft_err_set(err, FT_EBADFIELD, "ranks: expected objects");
        return -1;
    }
    if (ft_json_check_keys(o, "ranks[]", keys, err) < 0 ||
        ft_json_get_int(o, "ranks[]", "rank", true, 0, world_size - 1, &r, err) < 0)
        return -1;
    *rank = (int)r;
    if (ft_json_get_int(o, "ranks[]", "local_rank", true, 0, 1023, &l, err) < 0 ||
        ft_json_get_int(o, "ranks[]", "device", true, 0, wdev_count(a->devs) - 1, &d, err) < 0)
        return -1;
    *local = (int)l;
    *dev = (int)d;
    return 0;
}

static void on_start(agent_t *a, const cJSON *m, const char *re)
{
    int64_t job_id = 0, attempt = 0, world = 0, array_job_id = 0, array_index = 0;
    const char *kind = NULL;
    ft_err_t err = {0}, spec_err = {0};
    ft_jobspec_t spec;
    memset(&spec, 0, sizeof(spec));
    if (ft_json_get_int(m, NULL, "job_id", true, 1, INT64_MAX, &job_id, &err) < 0 ||
        ft_json_get_int(m, NULL, "attempt", true, 1, INT64_MAX, &attempt, &err) < 0 ||
        ft_json_get_int(m, NULL, "world_size", true, 1, 1024, &world, &err) < 0 ||
        ft_json_get_str(m, NULL, "kind", true, 16, &kind, &err) < 0 ||
        ft_json_get_int(m, NULL, "array_job_id", false, 1, INT64_MAX, &array_job_id, &err) < 0 ||
        ft_json_get_int(m, NULL, "array_index", false, 0, FT_ARRAY_MAX - 1, &array_index, &err) <
            0) {
        send_error(a, re, &err);
        return;
    }
    const cJSON *spec_json = cJSON_GetObjectItemCaseSensitive(m, "spec");
    const cJSON *ranks = cJSON_GetObjectItemCaseSensitive(m, "ranks");
    int spec_ok = ft_jobspec_parse(spec_json, &spec, &spec_err);
    if (spec_ok == 0) {
        const char *spec_kind = spec.kind == FT_KIND_LORA ? "lora" : "exec";
        if (strcmp(kind, spec_kind) != 0) {
            ft_err_set(&spec_err, FT_EBADFIELD, "kind '%s' does not match the spec's kind '%s'",
                       ft_sanitize(kind, 16), spec_kind);
            spec_ok = -1;
        }
    }
    ft_info("start job %lld attempt %lld (%s, world size %lld, %d rank(s) here)", (long long)job_id,
            (long long)attempt, ft_sanitize(kind, 16), (long long)world, cJSON_GetArraySize(ranks));
    const cJSON *entry;
    cJSON_ArrayForEach(entry, ranks)
    {
        int rank = -1, local = 0, dev = 0;
        char why[600];
        if (parse_rank_entry(a, entry, (int)world, &rank, &local, &dev, &err) < 0) {
            if (rank >= 0) {
                launch_failed(a, job_id, attempt, rank, err.msg);
            } else {
                ft_warn("start job %lld: %s", (long long)job_id, err.msg);
                send_error(a, re, &err);
            }
            continue;
        }
        if (spec_ok < 0) {
            snprintf(why, sizeof(why), "bad spec: %s", spec_err.msg);
            launch_failed(a, job_id, attempt, rank, why);
            continue;
        }
        if (a->stopping) {
            launch_failed(a, job_id, attempt, rank, "the worker is shutting down");
            continue;
        }
        rank_t *same = find_rank(a, job_id, attempt, rank);
        if (same) { /* a repeated start: answer as before (or soon, once it has exec'd) */
            if (same->started)
                send_rank_started(a, same);
            continue;
        }
        rank_t *busy = NULL;
        for (int i = 0; i < a->nranks && !busy; i++)
            if (a->ranks[i]->device == dev)
                busy = a->ranks[i];
        if (busy) {
            snprintf(why, sizeof(why), "device %d is busy with job %lld rank %d", dev,
                     (long long)busy->job_id, busy->rank);
            launch_failed(a, job_id, attempt, rank, why);
            continue;
        }
        ft_err_t serr = {0};
        if (a->slot_fds[dev] < 0 &&
            (a->slot_fds[dev] = rank_slot_open(a->o.state_dir, dev, &serr)) < 0)
            ft_warn("device %d: %s; a restarted worker will not find this rank", dev, serr.msg);
        rank_ctx_t ctx = {a->o.state_dir,   a->o.trainer,     a->o.name,
                          a->slot_fds[dev], a->o.spawn_vfork, a->o.exec_delay_ms};
        rank_req_t req = {
            job_id, attempt,   rank,         local,      (int)world, wdev_get(a->devs, dev),
            &spec,  spec_json, array_job_id, array_index};
        rank_t *r = NULL;
        ft_err_t lerr = {0};
        if (rank_launch(&ctx, &req, &r, &lerr) < 0) {
            launch_failed(a, job_id, attempt, rank, lerr.msg);
            continue;
        }
        /* Billing: the device's energy counter at launch (NVML or RAPL); none
         * for emulated GPUs, and then the ledger estimates. */
        r->energy_ok = wdev_energy_mj(a->devs, dev, &r->energy0_mj, &lerr) == 0;
        /* no counter: integrate NVML power samples (every POWER_SAMPLE_MS) */
        r->power_ok = !r->energy_ok && wdev_power_mw(a->devs, dev, &r->power_last_mw, &lerr) == 0;
        r->power_last_ms = ft_mono_ms();
        a->ranks[a->nranks++] = r; /* rank_started once its exec is confirmed */
    }
    ft_jobspec_free(&spec);
}

static void on_stop(agent_t *a, const cJSON *m, const char *re)
{
    int64_t job_id = 0, attempt = 0, grace = 0;
    const char *reason = "";
    ft_err_t err = {0};
    if (ft_json_get_int(m, NULL, "job_id", true, 1, INT64_MAX, &job_id, &err) < 0 ||
        ft_json_get_int(m, NULL, "attempt", true, 1, INT64_MAX, &attempt, &err) < 0 ||
        ft_json_get_int(m, NULL, "grace_ms", true, 0, 3600000, &grace, &err) < 0 ||
        ft_json_get_str(m, NULL, "reason", true, 256, &reason, &err) < 0) {
        send_error(a, re, &err);
        return;
    }
    int n = 0;
    for (int i = 0; i < a->nranks; i++) {
        rank_t *r = a->ranks[i];
        if (r->job_id == job_id && r->attempt == attempt) {
            request_stop(r, grace);
            n++;
        }
    }
    ft_log(n ? FT_LOG_INFO : FT_LOG_DEBUG, "stop job %lld attempt %lld (%s): %d rank(s) here",
           (long long)job_id, (long long)attempt, ft_sanitize(reason, 64), n);
}

static void on_log_read(agent_t *a, const cJSON *m, const char *re)
{
    int64_t relay = 0, job_id = 0, rank = 0, offset = 0, max_bytes = 0;
    ft_err_t err = {0};
    if (ft_json_get_int(m, NULL, "relay", true, 1, INT64_MAX, &relay, &err) < 0 ||
        ft_json_get_int(m, NULL, "job_id", true, 1, INT64_MAX, &job_id, &err) < 0 ||
        ft_json_get_int(m, NULL, "rank", true, 0, 1023, &rank, &err) < 0 ||
        ft_json_get_int(m, NULL, "offset", true, 0, INT64_MAX, &offset, &err) < 0 ||
        ft_json_get_int(m, NULL, "max_bytes", true, 1, FT_LOG_CHUNK_MAX, &max_bytes, &err) < 0) {
        send_error(a, re, &err);
        return;
    }
    bool running = false;
    for (int i = 0; i < a->nranks; i++)
        if (a->ranks[i]->job_id == job_id && a->ranks[i]->rank == rank)
            running = true;
    char path[4200];
    logread_chunk_t c = {0};
    cJSON *reply = ft_proto_new(FT_MSG_LOG_DATA, re);
    bool ok = reply && cJSON_AddNumberToObject(reply, "relay", (double)relay);
    int rc = -1;
    if (rank_log_path(a->o.state_dir, job_id, (int)rank, path, sizeof(path)) < 0) {
        ft_err_set(&err, FT_EINTERNAL, "log path too long");
    } else {
        rc = logread_read(path, offset, max_bytes, &c, &err);
        /* a job that ran under a worker from before the flat layout */
        if (rc < 0 && err.code == FT_ENOTFOUND &&
            rank_log_path_old(a->o.state_dir, job_id, (int)rank, path, sizeof(path)) == 0) {
            ft_err_clear(&err);
            rc = logread_read(path, offset, max_bytes, &c, &err);
        }
    }
    if (rc == 0) {
        ok = ok && cJSON_AddStringToObject(reply, "data", c.data) &&
             cJSON_AddNumberToObject(reply, "offset", (double)c.next_offset) &&
             cJSON_AddBoolToObject(reply, "eof", c.at_end && !running);
        logread_chunk_free(&c);
        goto send;
    }
    if (err.code == FT_ENOTFOUND)
        ft_err_set(&err, FT_ENOTFOUND, "no log for job %lld rank %lld on node '%s'",
                   (long long)job_id, (long long)rank, a->o.name);
    char msg[257];
    event_clean_text(msg, sizeof(msg), err.msg);
    ok = ok && cJSON_AddStringToObject(reply, "error", msg) &&
         cJSON_AddNumberToObject(reply, "offset", (double)offset) &&
         cJSON_AddBoolToObject(reply, "eof", !running);
send:
    if (!ok) {
        ft_error("out of memory building log_data");
        cJSON_Delete(reply);
        return;
    }
    send_and_free(a, reply);
}

/* Every blob of a gang's rendezvous: to each of its ranks here (wrdv.h); a
 * rank that cannot take it is stopped, which fails the attempt quickly. */
static void on_rendezvous_reply(agent_t *a, const cJSON *m, const char *re)
{
    int64_t job = 0, attempt = 0;
    ft_err_t err = {0};
    ft_json_get_int(m, NULL, "job_id", true, 1, INT64_MAX, &job, &err);
    ft_json_get_int(m, NULL, "attempt", true, 1, INT64_MAX, &attempt, &err);
    char *line = wrdv_reply_line(m, &err);
    if (!line) {
        ft_warn("job %lld attempt %lld: %s", (long long)job, (long long)attempt, err.msg);
        send_error(a, re, &err);
        return;
    }
    int n = 0;
    for (int i = 0; i < a->nranks; i++) {
        rank_t *r = a->ranks[i];
        if (r->job_id != job || r->attempt != attempt || r->event_fd < 0)
            continue;
        n++;
        free(r->rdv_blob);
        r->rdv_blob = NULL;
        if (wrdv_deliver(r->event_fd, line, strlen(line), WRDV_WRITE_TIMEOUT_MS, &err) < 0) {
            ft_warn("job %lld rank %d: %s; stopping it", (long long)job, r->rank, err.msg);
            request_stop(r, 0);
        }
    }
    ft_debug("job %lld attempt %lld: rendezvous reply to %d ranks", (long long)job,
             (long long)attempt, n);
    free(line);
}

typedef void (*handler_fn)(agent_t *a, const cJSON *m, const char *re);

static const struct {
    ft_msg_type_t type;    /* message type the scheduler sends */
    handler_fn fn;         /* its handler */
    bool shows_registered; /* only a scheduler that knows us sends it */
} handlers[] = {
    {FT_MSG_HELLO_REPLY, on_hello_reply, false},
    {FT_MSG_HEARTBEAT, on_heartbeat, true},
    {FT_MSG_START, on_start, true},
    {FT_MSG_STOP, on_stop, true},
    {FT_MSG_LOG_READ, on_log_read, true},
    {FT_MSG_RENDEZVOUS_REPLY, on_rendezvous_reply, true},
    {FT_MSG_ERROR, on_error, false},
};

static void dispatch(agent_t *a, const void *buf, size_t len)
{
    ft_msg_type_t type = FT_MSG__COUNT;
    char req_id[80] = "";
    ft_err_t err = {0};
    int64_t now = ft_mono_ms();
    a->last_heard_ms = now;
    cJSON *m = ft_proto_decode(buf, len, &type, req_id, sizeof(req_id), &err);
    if (!m) {
        ft_warn("bad message from the scheduler: %s", err.msg);
        if (type != FT_MSG_ERROR)
            send_error(a, req_id[0] ? req_id : NULL, &err);
        return;
    }
    size_t i = 0;
    while (i < sizeof(handlers) / sizeof(handlers[0]) && handlers[i].type != type)
        i++;
    if (i == sizeof(handlers) / sizeof(handlers[0]) || !(ft_msg_senders(type) & FT_FROM_SCHED)) {
        ft_err_set(&err, FT_EUNKNOWNTYPE, "a worker does not accept '%s'", ft_msg_name(type));
        ft_warn("%s", err.msg);
        send_error(a, req_id[0] ? req_id : NULL, &err);
        goto out;
    }
    ft_debug("received '%s'", ft_msg_name(type));
    if (handlers[i].shows_registered)
        outbox_confirm(a, now);
    handlers[i].fn(a, m, req_id[0] ? req_id : NULL);
out:
    cJSON_Delete(m);
}

static void receive_all(agent_t *a)
{
    while (a->sock) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        int n = zmq_msg_recv(&msg, a->sock, ZMQ_DONTWAIT);
        if (n < 0) {
            zmq_msg_close(&msg);
            if (errno != EAGAIN && errno != EINTR)
                ft_warn("receive from the scheduler: %s", zmq_strerror(errno));
            return;
        }
        bool more = zmq_msg_more(&msg);
        if (more) {
            ft_warn("dropping a multi-part message from the scheduler");
            while (more) {
                zmq_msg_close(&msg);
                zmq_msg_init(&msg);
                if (zmq_msg_recv(&msg, a->sock, ZMQ_DONTWAIT) < 0)
                    break;
                more = zmq_msg_more(&msg);
            }
            zmq_msg_close(&msg);
            continue;
        }
        dispatch(a, zmq_msg_data(&msg), zmq_msg_size(&msg));
        zmq_msg_close(&msg);
    }
}

/* ---- signals ---- */

static void begin_shutdown(agent_t *a)
{
    a->stop_signals++;
    if (a->stop_signals == 1) {
        a->stopping = true;
        ft_info("stopping: %d rank(s) get SIGTERM, SIGKILL after %d ms", a->nranks,
                a->o.shutdown_grace_ms);
        for (int i = 0; i < a->nranks; i++)
            request_stop(a->ranks[i], a->o.shutdown_grace_ms);
    } else {
        ft_warn("second stop signal: killing %d rank(s) now", a->nranks);
        for (int i = 0; i < a->nranks; i++)
            request_stop(a->ranks[i], 0);
    }
}

static void read_signals(agent_t *a)
{
    struct signalfd_siginfo si;
    bool child = false;
    for (;;) {
        ssize_t n = read(a->sigfd, &si, sizeof(si));
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof(si))
            break;
        if (si.ssi_signo == SIGCHLD)
            child = true;
        else
            begin_shutdown(a);
    }
    if (child)
        reap_children(a);
}

/* ---- the loop ---- */

static int64_t min64(int64_t x, int64_t y)
{
    return x < y ? x : y;
}

/* Periodic work; returns the poll timeout until the next deadline. */
static long cron(agent_t *a)
{
    int64_t now = ft_mono_ms();
    int64_t next = now + POLL_MAX_MS;
    if (a->conn == CONN_WAIT) {
        if (now >= a->reconnect_at_ms) {
            if (conn_open(a) < 0)
                conn_close(a, "connect failed");
        }
        if (a->conn == CONN_WAIT)
            next = min64(next, a->reconnect_at_ms);
    }
    if (a->conn != CONN_WAIT) {
        int64_t window = (int64_t)a->heartbeat_ms * a->liveness;
        if (now - a->last_heard_ms > window) {
            char why[160];
            snprintf(why, sizeof(why), "no word from the scheduler for %lld ms (%s)",
                     (long long)(now - a->last_heard_ms), conn_names[a->conn]);
            conn_close(a, why);
            next = min64(next, a->reconnect_at_ms);
        } else {
            next = min64(next, a->last_heard_ms + window + 1);
        }
    }
    if (a->conn == CONN_READY) {
        if (now - a->last_sent_ms >= a->heartbeat_ms) {
            cJSON *hb = ft_proto_new(FT_MSG_HEARTBEAT, NULL);
            send_and_free(a, hb);
        }
        next = min64(next, a->last_sent_ms + a->heartbeat_ms);
    }
    for (int i = 0; i < a->nranks; i++) {
        rank_t *r = a->ranks[i];
        if (r->pending_progress) {
            if (now - r->progress_sent_ms >= PROGRESS_MIN_INTERVAL_MS)
                flush_progress(a, r);
            else
                next = min64(next, r->progress_sent_ms + PROGRESS_MIN_INTERVAL_MS);
        }
        if (r->power_ok) {
            if (now - r->power_last_ms >= POWER_SAMPLE_MS)
                sample_power(a, r, now);
            next = min64(next, r->power_last_ms + POWER_SAMPLE_MS);
        }
        if (r->kill_at_ms == 0 || r->kill_sent)
            continue;
        if (now >= r->kill_at_ms) {
            ft_info("job %lld rank %d: grace over, SIGKILL to process group %d",
                    (long long)r->job_id, r->rank, (int)r->pid);
            rank_signal(r, SIGKILL);
            r->kill_sent = true;
        } else {
            next = min64(next, r->kill_at_ms);
        }
    }
    int64_t t = next - ft_mono_ms();
    return t < 0 ? 0 : (long)t;
}

int agent_run(agent_t *a)
{
    zmq_pollitem_t items[2 + 2 * WDEV_MAX];
    rank_t *polled[2 * WDEV_MAX]; /* rank of items[first + i] */
    bool is_report[2 * WDEV_MAX]; /* that item is its exec report pipe */
    while (!(a->stopping && a->nranks == 0)) {
        long timeout = cron(a);
        int n = 0, np = 0;
        if (a->sock)
            items[n++] = (zmq_pollitem_t){a->sock, 0, ZMQ_POLLIN, 0};
        int sig_item = n;
        items[n++] = (zmq_pollitem_t){NULL, a->sigfd, ZMQ_POLLIN, 0};
        for (int i = 0; i < a->nranks; i++) {
            rank_t *r = a->ranks[i];
            if (r->report_fd >= 0) {
                polled[np] = r;
                is_report[np++] = true;
                items[n++] = (zmq_pollitem_t){NULL, r->report_fd, ZMQ_POLLIN, 0};
            }
            if (r->event_fd >= 0) {
                polled[np] = r;
                is_report[np++] = false;
                items[n++] = (zmq_pollitem_t){NULL, r->event_fd, ZMQ_POLLIN, 0};
            }
        }
        int rc = zmq_poll(items, n, timeout);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            ft_error("zmq_poll: %s", zmq_strerror(errno));
            return -1;
        }
        if (rc == 0)
            continue;
        if (a->sock && sig_item == 1 && items[0].revents)
            receive_all(a);
        /* pipes before reaping: reaping frees ranks; an exec report before
         * the events of the same rank, so that rank_started comes first */
        for (int i = 0; i < np; i++) {
            rank_t *r = polled[i];
            if (!items[sig_item + 1 + i].revents)
                continue;
            if (is_report[i] && r->report_fd >= 0)
                settle_exec(a, r);
            else if (!is_report[i] && r->event_fd >= 0 && !r->launch_failed) {
                if (r->report_fd >= 0)
                    settle_exec(a, r);
                read_events(a, r, false);
            }
        }
        if (items[sig_item].revents)
            read_signals(a);
    }
    ft_info("all ranks are gone; exiting");
    if (a->sock) {
        int linger = 2000; /* let the last rank_exited leave */
        zmq_setsockopt(a->sock, ZMQ_LINGER, &linger, sizeof(linger));
        if (a->nout > 0 && a->conn != CONN_READY)
            ft_warn("%d rank_exited could not be confirmed by the scheduler", a->nout);
    } else if (a->nout > 0) {
        ft_warn("%d rank_exited not delivered: the scheduler is unreachable", a->nout);
    }
    return 0;
}

agent_t *agent_new(const agent_opts_t *opts, wdev_set_t *devs, ft_err_t *err)
{
    agent_t *a = calloc(1, sizeof(*a));
    if (!a) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return NULL;
    }
    a->o = *opts;
    a->devs = devs;
    a->sigfd = -1;
    for (int i = 0; i < WDEV_MAX; i++)
        a->slot_fds[i] = -1;
    a->heartbeat_ms = FT_HEARTBEAT_MS;
    a->liveness = FT_LIVENESS;
    a->backoff_ms = BACKOFF_MIN_MS;
    snprintf(a->routing_id, sizeof(a->routing_id), "w/%s", opts->name);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    /* block before creating ZeroMQ threads so that they inherit the mask */
    if (sigprocmask(SIG_BLOCK, &mask, &a->old_mask) < 0 ||
        (a->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot set up signals: %s", strerror(errno));
        goto fail;
    }
    signal(SIGPIPE, SIG_IGN);
    a->zctx = zmq_ctx_new();
    if (!a->zctx) {
        ft_err_set(err, FT_EINTERNAL, "cannot create a ZeroMQ context: %s", zmq_strerror(errno));
        goto fail;
    }
    /* a bad endpoint is a usage error: find it now, not in the loop */
    void *probe = zmq_socket(a->zctx, ZMQ_DEALER);
    int linger = 0;
    if (!probe || zmq_setsockopt(probe, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
        zmq_connect(probe, opts->endpoint) < 0) {
        ft_err_set(err, FT_EBADFIELD, "--scheduler: cannot use '%s': %s",
                   ft_sanitize(opts->endpoint, 128), zmq_strerror(errno));
        if (probe)
            zmq_close(probe);
        goto fail;
    }
    zmq_close(probe);
    /* Key files are checked at start, not on every reconnection. */
    probe = zmq_socket(a->zctx, ZMQ_DEALER);
    if (probe && ft_curve_client_apply(probe, err) < 0) {
        zmq_close(probe);
        goto fail;
    }
    if (probe)
        zmq_close(probe);
    a->conn = CONN_WAIT;
    a->reconnect_at_ms = 0; /* connect on the first turn */
    return a;
fail:
    a->devs = NULL; /* the caller still owns devs on failure */
    agent_destroy(&a);
    return NULL;
}

void agent_destroy(agent_t **pa)
{
    if (!pa || !*pa)
        return;
    agent_t *a = *pa;
    if (a->sock)
        zmq_close(a->sock);
    if (a->zctx)
        zmq_ctx_term(a->zctx);
    for (int i = 0; i < a->nranks; i++)
        rank_destroy(&a->ranks[i]);
    for (int i = 0; i < WDEV_MAX; i++)
        if (a->slot_fds[i] >= 0)
            close(a->slot_fds[i]);
    for (int i = 0; i < a->nout; i++)
        cJSON_Delete(a->outbox[i].msg);
    if (a->sigfd >= 0) {
        close(a->sigfd);
        sigprocmask(SIG_SETMASK, &a->old_mask, NULL);
    }
    wdev_set_destroy(&a->devs);
    free(a);
    *pa = NULL;
}
