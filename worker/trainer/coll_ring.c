/*
 * coll_ring.c: the TCP ring collective (coll_ring.h).
 *
 * Each rank holds two connections: next_fd (to rank+1, only sent on) and
 * prev_fd (from rank-1, only received on). Both are non-blocking after the
 * handshake; xfer() moves one outgoing and one incoming buffer at the same
 * time under poll(), so two ranks sending large chunks to each other never
 * deadlock on full socket buffers.
 * Invariants: every rank runs the same sequence of operations with the same
 * sizes (the trainer's loop guarantees it); after an error the ring is
 * unusable and every later call fails at once.
 * Cost: all-reduce of n elements: 2 (W-1) steps of n/W elements each;
 * broadcast: W-1 hops of the whole buffer.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "coll_ring.h"
#include "ft/proto.h"

#define RING_MAGIC "FTRING01" /* data connection */
#define HB_MAGIC "FTRINGHB"   /* heartbeat connection */
#define HDR_BYTES 32          /* magic 8, job 8, attempt 8, rank 4, world 4 */
#define HB_EVERY_MS 500       /* heartbeat byte period */
#define COLL_RING_DEFAULT_HEARTBEAT_S 10

typedef struct {
    int next_fd;           /* connection to rank+1 (we send), -1 when closed */
    int prev_fd;           /* connection from rank-1 (we receive), -1 when closed */
    int hb_next, hb_prev;  /* heartbeat connections, same directions; -1 when closed */
    int timeout_ms;        /* per operation */
    int hb_timeout_ms;     /* silence of the predecessor's heartbeat that breaks the ring */
    bool broken;           /* an operation failed: later ones fail at once */
    char *tmp;             /* receive buffer for reduce-scatter chunks */
    size_t tmp_cap;        /* bytes allocated in tmp */
    double comm_s;         /* seconds spent in operations since the last take */
    pthread_t hb_thread;   /* sends and watches heartbeats */
    bool hb_running;       /* hb_thread was started */
    atomic_int hb_stop;    /* 1: hb_thread should return */
    atomic_int hb_dead;    /* 1: predecessor silent, 2: its heartbeat connection closed */
    int prev_rank;         /* for messages */
} ring_t;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void make_hdr(unsigned char *h, const char *magic, int64_t job, int64_t attempt, int rank,
                     int world)
{
    memcpy(h, magic, 8);
    put64(h + 8, (uint64_t)job);
    put64(h + 16, (uint64_t)attempt);
    put64(h + 24, (uint64_t)(uint32_t)rank | (uint64_t)(uint32_t)world << 32);
}

/* ---- byte moves with a deadline ---- */

static int wait_fd(int fd, short ev, int64_t deadline)
{
    int64_t left = deadline - ft_mono_ms();
    if (left <= 0)
        return 0;
    struct pollfd p = {fd, ev, 0};
    int r = poll(&p, 1, (int)(left > INT_MAX ? INT_MAX : left));
    return r < 0 && errno == EINTR ? 1 : r;
}

/* Sends sbuf on sfd while receiving rbuf from rfd (either may be empty). */
static int xfer(ring_t *g, int sfd, const char *sbuf, size_t slen, int rfd, char *rbuf, size_t rlen,
                int64_t deadline, const coll_t *c, ft_err_t *err)
{
    int prev = (c->rank + c->world - 1) % c->world, next = (c->rank + 1) % c->world;
    while (slen > 0 || rlen > 0) {
        struct pollfd p[2];
        int np = 0, si = -1, ri = -1;
        if (slen > 0) {
            p[np] = (struct pollfd){sfd, POLLOUT, 0};
            si = np++;
        }
        if (rlen > 0) {
            p[np] = (struct pollfd){rfd, POLLIN, 0};
            ri = np++;
        }
        int64_t left = deadline - ft_mono_ms();
        if (left <= 0) {
            ft_err_set(err, FT_EUNAVAIL, "collective timed out after %d s waiting for rank %d",
                       g->timeout_ms / 1000, rlen > 0 ? prev : next);
            return -1;
        }
        int r = poll(p, (nfds_t)np, (int)(left > INT_MAX ? INT_MAX : left));
        if (r < 0 && errno != EINTR) {
            ft_err_set(err, FT_EINTERNAL, "collective: poll: %s", strerror(errno));
            return -1;
        }
        if (r <= 0)
            continue;
        if (si >= 0 && p[si].revents) {
            ssize_t n = send(sfd, sbuf, slen, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                ft_err_set(err, FT_EUNAVAIL, "collective: cannot send to rank %d: %s", next,
                           strerror(errno));
                return -1;
            }
            if (n > 0) {
                sbuf += n;
                slen -= (size_t)n;
            }
        }
        if (ri >= 0 && p[ri].revents) {
            ssize_t n = recv(rfd, rbuf, rlen, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                if (atomic_load(&g->hb_dead))
                    ft_err_set(err, FT_EUNAVAIL, "collective: rank %d %s", prev,
                               atomic_load(&g->hb_dead) == 1
                                   ? "sent no heartbeat in time (hung, stopped or cut off)"
                                   : "closed its heartbeat connection (it died)");
                else
                    ft_err_set(err, FT_EUNAVAIL, "collective: rank %d %s", prev,
                               n == 0 ? "closed its connection (it died or gave up)"
                                      : strerror(errno));
                return -1;
            }
            if (n > 0) {
                rbuf += n;
                rlen -= (size_t)n;
            }
        }
    }
    return 0;
}

/* ---- operations ---- */

typedef void (*add_fn)(void *dst, const void *src, size_t n);

static void add_f32(void *dst, const void *src, size_t n)
{
    float *d = dst;
    const float *s = src;
    for (size_t i = 0; i < n; i++)
        d[i] += s[i];
}

static void add_f64(void *dst, const void *src, size_t n)
{
    double *d = dst;
    const double *s = src;
    for (size_t i = 0; i < n; i++)
        d[i] += s[i];
}

static void report(coll_t *c, const char *op, const ft_err_t *e)
{
    ft_error("rank %d: %s: %s", c->rank, op, e->msg);
}

static int allreduce(coll_t *c, void *vbuf, size_t n, size_t es, add_fn add)
{
    ring_t *g = c->impl;
    char *buf = vbuf;
    int W = c->world, r = c->rank;
    ft_err_t err = {0};
    if (g->broken)
        return -1;
    if (n == 0)
        return 0;
    double t0 = mono_s();
    int64_t deadline = ft_mono_ms() + g->timeout_ms;
    size_t maxc = (n + (size_t)W - 1) / (size_t)W * es;
    if (maxc > g->tmp_cap) {
        char *t = realloc(g->tmp, maxc);
        if (!t) {
            ft_err_set(&err, FT_EINTERNAL, "out of memory");
            goto fail;
        }
        g->tmp = t;
        g->tmp_cap = maxc;
    }
#define LO(i) ((size_t)(i) * n / (size_t)W)
#define HI(i) ((size_t)((i) + 1) * n / (size_t)W)
    /* reduce-scatter: after W-1 steps rank r holds the full sum of chunk r+1 */
    for (int s = 0; s < W - 1; s++) {
        int sc = ((r - s) % W + W) % W, rc = ((r - s - 1) % W + W) % W;
        if (xfer(g, g->next_fd, buf + LO(sc) * es, (HI(sc) - LO(sc)) * es, g->prev_fd, g->tmp,
                 (HI(rc) - LO(rc)) * es, deadline, c, &err) < 0)
            goto fail;
        add(buf + LO(rc) * es, g->tmp, HI(rc) - LO(rc));
    }
    /* all-gather: pass the finished chunks around */
    for (int s = 0; s < W - 1; s++) {
        int sc = ((r + 1 - s) % W + W) % W, rc = ((r - s) % W + W) % W;
        if (xfer(g, g->next_fd, buf + LO(sc) * es, (HI(sc) - LO(sc)) * es, g->prev_fd,
                 buf + LO(rc) * es, (HI(rc) - LO(rc)) * es, deadline, c, &err) < 0)
            goto fail;
    }
#undef LO
#undef HI
    g->comm_s += mono_s() - t0;
    return 0;
fail:
    g->broken = true;
    g->comm_s += mono_s() - t0;
    report(c, "all-reduce", &err);
    return -1;
}

static int ring_allreduce_f32(coll_t *c, float *buf, size_t n)
{
    return allreduce(c, buf, n, sizeof(float), add_f32);
}

static int ring_allreduce_f64(coll_t *c, double *buf, size_t n)
{
    return allreduce(c, buf, n, sizeof(double), add_f64);
}

static int ring_broadcast(coll_t *c, void *buf, size_t bytes, int root)
{
    ring_t *g = c->impl;
    ft_err_t err = {0};
    if (g->broken)
        return -1;
    if (root < 0 || root >= c->world) {
        ft_error("broadcast: root %d outside world %d", root, c->world);
        return -1;
    }
    double t0 = mono_s();
    int64_t deadline = ft_mono_ms() + g->timeout_ms;
    int next = (c->rank + 1) % c->world;
    if (c->rank != root &&
        xfer(g, -1, NULL, 0, g->prev_fd, buf, bytes, deadline, c, &err) < 0)
        goto fail;
    if (next != root && xfer(g, g->next_fd, buf, bytes, -1, NULL, 0, deadline, c, &err) < 0)
        goto fail;
    g->comm_s += mono_s() - t0;
    return 0;
fail:
    g->broken = true;
    g->comm_s += mono_s() - t0;
    report(c, "broadcast", &err);
    return -1;
}

static int ring_barrier(coll_t *c)
{
    double one = 1;
    if (ring_allreduce_f64(c, &one, 1) < 0)
        return -1;
    if (one != (double)c->world) {
        ft_error("barrier: %g ranks took part, expected %d", one, c->world);
        return -1;
    }
    return 0;
}

static void ring_destroy(coll_t *c)
{
    ring_t *g = c->impl;
    if (g) {
        if (g->hb_running) {
            atomic_store(&g->hb_stop, 1);
            pthread_join(g->hb_thread, NULL);
        }
        int fds[] = {g->next_fd, g->prev_fd, g->hb_next, g->hb_prev};
        for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
            if (fds[i] >= 0)
                close(fds[i]);
        free(g->tmp);
        free(g);
    }
    free(c);
}

double coll_ring_take_comm_s(coll_t *c)
{
    if (!c || strcmp(c->name, "ring") != 0)
        return 0;
    ring_t *g = c->impl;
    double s = g->comm_s;
    g->comm_s = 0;
    return s;
}

bool coll_ring_broken(const coll_t *c)
{
    return c && strcmp(c->name, "ring") == 0 && ((const ring_t *)c->impl)->broken;
}

/* ---- heartbeat ---- */

/* Sends a byte to the successor every HB_EVERY_MS and watches the
 * predecessor's: a process that is stopped, frozen or cut off goes silent
 * even while its peers would wait out a long compute step. On silence the
 * data sockets are shut down, so a collective in progress returns at once
 * with the reason (hb_dead). */
static void *hb_main(void *arg)
{
    ring_t *g = arg;
    int64_t last_heard = ft_mono_ms(), last_sent = 0;
    while (!atomic_load(&g->hb_stop)) {
        int64_t now = ft_mono_ms();
        if (now - last_sent >= HB_EVERY_MS) {
            char b = 'h';
            if (send(g->hb_next, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1 || errno == EAGAIN)
                last_sent = now;
        }
        struct pollfd p = {g->hb_prev, POLLIN, 0};
        int r = poll(&p, 1, HB_EVERY_MS / 2);
        now = ft_mono_ms();
        int dead = 0;
        if (r > 0) {
            char buf[64];
            ssize_t n = recv(g->hb_prev, buf, sizeof(buf), MSG_DONTWAIT);
            if (n > 0)
                last_heard = now;
            else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                dead = 2;
        }
        if (!dead && now - last_heard > g->hb_timeout_ms)
            dead = 1;
        if (dead) {
            atomic_store(&g->hb_dead, dead);
            /* only silence needs the data sockets cut: a peer that closed its
             * heartbeat (it died, or ended normally after its last operation)
             * closes its data connection too, and data it sent before that
             * must stay readable */
            if (dead == 1) {
                shutdown(g->prev_fd, SHUT_RDWR);
                shutdown(g->next_fd, SHUT_RDWR);
            }
            return NULL;
        }
    }
    return NULL;
}

/* ---- set-up ---- */

static void pick_host(const char *host, char *out, size_t cap)
{
    const char *env = getenv("FT_COLL_HOST");
    if (host && *host) {
        ft_strlcpy(out, host, cap);
        return;
    }
    if (env && *env) {
        ft_strlcpy(out, env, cap);
        return;
    }
    ft_strlcpy(out, "127.0.0.1", cap);
    char name[256];
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (gethostname(name, sizeof(name)) == 0 && getaddrinfo(name, NULL, &hints, &ai) == 0 && ai) {
        char ip[INET_ADDRSTRLEN];
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)ai->ai_addr;
        if (inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip)))
            ft_strlcpy(out, ip, cap);
    }
    if (ai)
        freeaddrinfo(ai);
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Parses a decoded blob "host:port". */
static int parse_addr(const char *blob, int rank, char *host, size_t hcap, char *port, size_t pcap,
                      ft_err_t *err)
{
    char text[FT_RDV_BLOB_MAX];
    long n = rdv_b64_decode(blob, text, sizeof(text) - 1);
    const char *colon = NULL;
    if (n > 0) {
        text[n] = '\0';
        colon = strrchr(text, ':');
    }
    if (!colon || strlen(text) != (size_t)n || colon == text || (size_t)(colon - text) >= hcap ||
        !colon[1] || strlen(colon + 1) >= pcap ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
        ft_err_set(err, FT_EBADFIELD, "rendezvous: blob of rank %d is not base64 of 'host:port'",
                   rank);
        return -1;
    }
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    ft_strlcpy(port, colon + 1, pcap);
    return 0;
}

static int connect_next(const char *blob, int next, int64_t deadline, ft_err_t *err)
{
    char host[256], port[16];
    struct addrinfo hints = {0}, *ai = NULL;
    if (parse_addr(blob, next, host, sizeof(host), port, sizeof(port), err) < 0)
        return -1;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0) {
        ft_err_set(err, FT_EUNAVAIL, "cannot resolve '%s' of rank %d: %s", ft_sanitize(host, 64),
                   next, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    while (fd < 0) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        int e = errno;
        if (fd >= 0)
            close(fd);
        fd = -1;
        if (ft_mono_ms() >= deadline) {
            ft_err_set(err, FT_EUNAVAIL, "cannot connect to rank %d at '%s:%s': %s", next,
                       ft_sanitize(host, 64), port, strerror(e));
            break;
        }
        usleep(50 * 1000);
    }
    freeaddrinfo(ai);
    return fd;
}

static int read_hdr(int fd, unsigned char *h, int64_t deadline)
{
    size_t got = 0;
    while (got < HDR_BYTES) {
        if (wait_fd(fd, POLLIN, deadline) <= 0)
            return -1;
        ssize_t n = recv(fd, h + got, HDR_BYTES - got, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return -1;
        if (n > 0)
            got += (size_t)n;
    }
    return 0;
}

static int write_all_fd(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One connection each way with the ring neighbours, of the kind magic names:
 * connect and greet the successor, accept the predecessor of this job and
 * attempt (turning others away), answer it, check the successor's answer. */
static int link_pair(int lfd, char **blobs, const char *magic, const rdv_t *rdv, int rank,
                     int world, int64_t deadline, int *next_fd, int *prev_fd, ft_err_t *err)
{
    int next = (rank + 1) % world, prev = (rank + world - 1) % world;
    int64_t job = rdv_job(rdv), att = rdv_attempt(rdv);
    unsigned char mine[HDR_BYTES], theirs[HDR_BYTES], want[HDR_BYTES];
    make_hdr(mine, magic, job, att, rank, world);
    *next_fd = connect_next(blobs[next], next, deadline, err);
    if (*next_fd < 0)
        return -1;
    if (write_all_fd(*next_fd, mine, HDR_BYTES) < 0) {
        ft_err_set(err, FT_EUNAVAIL, "ring: cannot greet rank %d: %s", next, strerror(errno));
        return -1;
    }
    make_hdr(want, magic, job, att, prev, world);
    while (*prev_fd < 0) {
        if (wait_fd(lfd, POLLIN, deadline) <= 0) {
            ft_err_set(err, FT_EUNAVAIL, "ring: rank %d did not connect within %lld s", prev,
                       (long long)(deadline - ft_mono_ms() + 999) / 1000);
            return -1;
        }
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        if (read_hdr(fd, theirs, deadline) < 0 || memcmp(theirs, want, HDR_BYTES) != 0) {
            ft_warn("rank %d: turned away a ring connection that is not rank %d of this attempt",
                    rank, prev);
            close(fd);
            continue;
        }
        *prev_fd = fd;
    }
    /* the answer tells our successor it reached the right rank */
    if (write_all_fd(*prev_fd, mine, HDR_BYTES) < 0) {
        ft_err_set(err, FT_EUNAVAIL, "ring: cannot answer rank %d: %s", prev, strerror(errno));
        return -1;
    }
    make_hdr(want, magic, job, att, next, world);
    if (read_hdr(*next_fd, theirs, deadline) < 0 || memcmp(theirs, want, HDR_BYTES) != 0) {
        ft_err_set(err, FT_EUNAVAIL, "ring: the peer at rank %d's address is not rank %d of this "
                   "attempt", next, next);
        return -1;
    }
    return 0;
}

coll_t *coll_ring_new(rdv_t *rdv, int rank, int world, const char *host, ft_err_t *err)
{
    coll_t *c = calloc(1, sizeof(*c));
    ring_t *g = calloc(1, sizeof(*g));
    int lfd = -1;
    char **blobs = NULL;
    int64_t tmo = COLL_RING_DEFAULT_TIMEOUT_S;
    if (!c || !g) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto fail;
    }
    g->next_fd = g->prev_fd = g->hb_next = g->hb_prev = -1;
    c->name = "ring";
    c->rank = rank;
    c->world = world;
    c->impl = g;
    c->allreduce_sum_f32 = ring_allreduce_f32;
    c->allreduce_sum_f64 = ring_allreduce_f64;
    c->broadcast = ring_broadcast;
    c->barrier = ring_barrier;
    c->destroy = ring_destroy;
    const char *tv = getenv("FT_COLL_TIMEOUT_S");
    if (tv && *tv) {
        char *end;
        tmo = strtol(tv, &end, 10);
        if (*end || tmo < 1 || tmo > 86400) {
            ft_err_set(err, FT_EBADFIELD, "environment 'FT_COLL_TIMEOUT_S': expected seconds in "
                       "[1, 86400], got '%s'", ft_sanitize(tv, 32));
            goto fail;
        }
    }
    g->timeout_ms = (int)(tmo * 1000);
    const char *hv = getenv("FT_COLL_HEARTBEAT_S");
    int64_t hb = COLL_RING_DEFAULT_HEARTBEAT_S;
    if (hv && *hv) {
        char *end;
        hb = strtol(hv, &end, 10);
        if (*end || hb < 1 || hb > 86400) {
            ft_err_set(err, FT_EBADFIELD, "environment 'FT_COLL_HEARTBEAT_S': expected seconds "
                       "in [1, 86400], got '%s'", ft_sanitize(hv, 32));
            goto fail;
        }
    }
    g->hb_timeout_ms = (int)(hb * 1000);
    if (rank < 0 || world < 2 || rank >= world) {
        ft_err_set(err, FT_EBADFIELD, "ring: rank %d of world %d (a ring needs 2 or more ranks)",
                   rank, world);
        goto fail;
    }

    /* listen on every address, ephemeral port */
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof(sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
        ft_err_set(err, FT_EINTERNAL, "ring: cannot listen: %s", strerror(errno));
        goto fail;
    }
    char me[300], blob[FT_RDV_BLOB_MAX + 1], h[256];
    pick_host(host, h, sizeof(h));
    snprintf(me, sizeof(me), "%s:%u", h, (unsigned)ntohs(sa.sin_port));
    if (rdv_b64_encode(me, strlen(me), blob, sizeof(blob)) < 0) {
        ft_err_set(err, FT_EBADFIELD, "ring: address '%s' too long", ft_sanitize(me, 64));
        goto fail;
    }
    ft_info("rank %d: ring listens at %s", rank, me);
    if (rdv_exchange(rdv, blob, &blobs, err) < 0)
        goto fail;

    int64_t deadline = ft_mono_ms() + g->timeout_ms;
    g->prev_rank = (rank + world - 1) % world;
    if (link_pair(lfd, blobs, RING_MAGIC, rdv, rank, world, deadline, &g->next_fd, &g->prev_fd,
                  err) < 0 ||
        link_pair(lfd, blobs, HB_MAGIC, rdv, rank, world, deadline, &g->hb_next, &g->hb_prev,
                  err) < 0)
        goto fail;
    if (set_nonblock(g->next_fd) < 0 || set_nonblock(g->prev_fd) < 0) {
        ft_err_set(err, FT_EINTERNAL, "ring: cannot make sockets non-blocking: %s",
                   strerror(errno));
        goto fail;
    }
    if (pthread_create(&g->hb_thread, NULL, hb_main, g) != 0) {
        ft_err_set(err, FT_EINTERNAL, "ring: cannot start the heartbeat thread");
        goto fail;
    }
    g->hb_running = true;
    close(lfd);
    rdv_blobs_free(&blobs, world);
    return c;
fail:
    if (lfd >= 0)
        close(lfd);
    rdv_blobs_free(&blobs, world);
    if (c && g)
        ring_destroy(c);
    else {
        free(g);
        free(c);
    }
    return NULL;
}

coll_t *coll_open(int event_fd, int rank, int world, ft_err_t *err)
{
    if (world == 1) {
        coll_t *c = coll_single();
        if (!c)
            ft_err_set(err, FT_EINTERNAL, "out of memory");
        return c;
    }
    rdv_t *r = rdv_new(event_fd, rank, world, err);
    if (!r)
        return NULL;
    coll_t *c = coll_ring_new(r, rank, world, NULL, err);
    rdv_destroy(&r);
    return c;
}

