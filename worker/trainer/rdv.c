/*
 * rdv.c: the rank side of the rendezvous (rdv.h). Over the worker, the
 * request and the reply are single JSON lines on the event socket; the reply
 * is read with poll() against one deadline, so a scheduler that never answers
 * (a rank of the gang failed to start) ends in an error, not a hang. Over a
 * directory, blobs are files written atomically and polled every 20 ms.
 * Invariant: a returned blob list always has world entries, each valid
 * base64 of at most FT_RDV_BLOB_MAX bytes.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ft/json.h"
#include "ft/jobspec.h"
#include "ft/proto.h"
#include "rdv.h"

#define RDV_REPLY_MAX (FT_MSG_MAX_BYTES + 4096) /* longest reply line, bytes */
#define RDV_DIR_POLL_MS 20

struct rdv {
    int fd;                  /* event socket (worker transport), -1 with dir */
    char dir[FT_PATH_MAX];   /* $FT_RDV_DIR, "" = worker transport */
    int rank, world;         /* this rank, ranks in the attempt */
    int64_t attempt, job;    /* FT_ATTEMPT, FT_JOB_ID; 0 = unset */
    int timeout_ms;          /* whole exchange, milliseconds */
    char *rbuf;              /* reply line being read (worker transport) */
    size_t rlen, rcap;       /* bytes in rbuf / allocated */
};

static const char b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

long rdv_b64_encode(const void *src, size_t n, char *dst, size_t cap)
{
    const unsigned char *s = src;
    size_t need = (n + 2) / 3 * 4;
    if (need + 1 > cap)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        dst[o++] = b64_chars[(v >> 18) & 63];
        dst[o++] = b64_chars[(v >> 12) & 63];
        dst[o++] = i + 1 < n ? b64_chars[(v >> 6) & 63] : '=';
        dst[o++] = i + 2 < n ? b64_chars[v & 63] : '=';
    }
    dst[o] = '\0';
    return (long)o;
}

static int b64_val(char c)
{
    const char *p = c ? strchr(b64_chars, c) : NULL;
    return p ? (int)(p - b64_chars) : -1;
}

long rdv_b64_decode(const char *src, void *dst, size_t cap)
{
    unsigned char *d = dst;
    size_t len = strlen(src), o = 0;
    if (len % 4 != 0)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (src[i + k] == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad)
                return -1; /* data after '=' */
            v[k] = b64_val(src[i + k]);
            if (v[k] < 0)
                return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        unsigned char b[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8), (unsigned char)w};
        for (int k = 0; k < 3 - pad; k++) {
            if (o == cap)
                return -1;
            d[o++] = b[k];
        }
    }
    return (long)o;
}

static bool blob_ok(const char *b)
{
    size_t n = strlen(b);
    if (n > FT_RDV_BLOB_MAX || n % 4 != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (b64_val(b[i]) < 0 && !(b[i] == '=' && i + 2 >= n))
            return false;
    return true;
}

static int env_int(const char *name, int64_t lo, int64_t hi, int64_t def, int64_t *out,
                   ft_err_t *err)
{
    const char *v = getenv(name);
    *out = def;
    if (!v || !*v)
        return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || x < lo || x > hi) {
        ft_err_set(err, FT_EBADFIELD, "environment '%s': expected an integer in [%lld, %lld], got '%s'",
                   name, (long long)lo, (long long)hi, ft_sanitize(v, 32));
        return -1;
    }
    *out = x;
    return 0;
}

rdv_t *rdv_new(int event_fd, int rank, int world, ft_err_t *err)
{
    rdv_t *r = calloc(1, sizeof(*r));
    int64_t tmo = 0;
    if (!r) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return NULL;
    }
    r->fd = -1;
    r->rank = rank;
    r->world = world;
    if (env_int("FT_ATTEMPT", 1, 1000000, 0, &r->attempt, err) < 0 ||
        env_int("FT_JOB_ID", 1, INT64_MAX, 0, &r->job, err) < 0 ||
        env_int("FT_RDV_TIMEOUT_S", 1, 86400, RDV_DEFAULT_TIMEOUT_S, &tmo, err) < 0)
        goto fail;
    r->timeout_ms = (int)(tmo * 1000);
    /* ftworker's event socket wins: an FT_RDV_DIR left in the worker's
     * environment must not make every job share one directory */
    int type = 0;
    socklen_t tl = sizeof(type);
    if (event_fd >= 0 && getsockopt(event_fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 &&
        type == SOCK_STREAM) {
        r->fd = event_fd;
        return r;
    }
    const char *dir = getenv("FT_RDV_DIR");
    if (dir && *dir) {
        if (strlen(dir) + 32 >= sizeof(r->dir)) {
            ft_err_set(err, FT_EBADFIELD, "environment 'FT_RDV_DIR': path too long");
            goto fail;
        }
        ft_strlcpy(r->dir, dir, sizeof(r->dir));
        return r;
    }
    ft_err_set(err, FT_EBADFIELD,
               "event fd %d is not a stream socket: a multi-rank run needs ftworker's event "
               "socket or 'FT_RDV_DIR'",
               event_fd);
fail:
    free(r);
    return NULL;
}

void rdv_destroy(rdv_t **pr)
{
    if (!pr || !*pr)
        return;
    free((*pr)->rbuf);
    free(*pr);
    *pr = NULL;
}

int64_t rdv_attempt(const rdv_t *r)
{
    return r->attempt;
}

int64_t rdv_job(const rdv_t *r)
{
    return r->job;
}

void rdv_blobs_free(char ***pb, int n)
{
    if (!pb || !*pb)
        return;
    for (int i = 0; i < n; i++)
        free((*pb)[i]);
    free(*pb);
    *pb = NULL;
}

static int write_all(int fd, const char *p, size_t n, ft_err_t *err)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL); /* a gone worker is an error, not SIGPIPE */
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            ft_err_set(err, FT_EINTERNAL, "rendezvous: cannot write to the event socket: %s",
                       strerror(errno));
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one '\n'-terminated line into r->rbuf (NUL-terminated, without the
 * newline) before deadline; bytes after it stay in the buffer. */
static int read_line(rdv_t *r, int64_t deadline, size_t *line_len, ft_err_t *err)
{
    for (;;) {
        char *nl = r->rlen ? memchr(r->rbuf, '\n', r->rlen) : NULL;
        if (nl) {
            *nl = '\0';
            *line_len = (size_t)(nl - r->rbuf);
            return 0;
        }
        if (r->rlen >= RDV_REPLY_MAX) {
            ft_err_set(err, FT_ETOOLARGE, "rendezvous: reply line longer than %d bytes",
                       RDV_REPLY_MAX);
            return -1;
        }
        int64_t left = deadline - ft_mono_ms();
        if (left <= 0) {
            ft_err_set(err, FT_EUNAVAIL,
                       "rendezvous: no reply within %d s (did every rank of the gang start?)",
                       r->timeout_ms / 1000);
            return -1;
        }
        struct pollfd p = {r->fd, POLLIN, 0};
        int pr = poll(&p, 1, (int)(left > INT_MAX ? INT_MAX : left));
        if (pr < 0 && errno != EINTR) {
            ft_err_set(err, FT_EINTERNAL, "rendezvous: poll: %s", strerror(errno));
            return -1;
        }
        if (pr <= 0)
            continue;
        if (r->rcap - r->rlen < 65536) {
            size_t cap = r->rcap ? r->rcap * 2 : 65536 * 2;
            char *nb = realloc(r->rbuf, cap + 1);
            if (!nb) {
                ft_err_set(err, FT_EINTERNAL, "out of memory");
                return -1;
            }
            r->rbuf = nb;
            r->rcap = cap;
        }
        ssize_t n = read(r->fd, r->rbuf + r->rlen, r->rcap - r->rlen);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            ft_err_set(err, FT_EUNAVAIL, "rendezvous: event socket %s",
                       n == 0 ? "closed by the worker" : strerror(errno));
            return -1;
        }
        r->rlen += (size_t)n;
    }
}

/* Fills *blobs from a rendezvous_reply line; 1 when the line is for an
 * older attempt (skip it), 0 done, -1 bad. */
static int parse_reply(rdv_t *r, const char *line, size_t len, char ***blobs, ft_err_t *err)
{
    int rc = -1;
    cJSON *o = ft_json_parse(line, len, err);
    const char *ev = NULL;
    int64_t attempt = 0;
    if (!o)
        goto out;
    if (ft_json_get_str(o, "rendezvous reply", "event", true, 32, &ev, err) < 0)
        goto out;
    if (strcmp(ev, "rendezvous_reply") != 0) {
        ft_err_set(err, FT_EBADFIELD, "rendezvous reply: field 'event': expected "
                   "\"rendezvous_reply\", got '%s'", ft_sanitize(ev, 32));
        goto out;
    }
    if (ft_json_get_int(o, "rendezvous reply", "attempt", true, 1, 1000000, &attempt, err) < 0)
        goto out;
    if (r->attempt && attempt != r->attempt) {
        rc = attempt < r->attempt ? 1 : -1;
        if (rc < 0)
            ft_err_set(err, FT_EBADFIELD, "rendezvous reply: field 'attempt': %lld is not this "
                       "rank's attempt %lld", (long long)attempt, (long long)r->attempt);
        goto out;
    }
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "blobs");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != r->world) {
        ft_err_set(err, FT_EBADFIELD, "rendezvous reply: field 'blobs': expected an array of %d "
                   "strings", r->world);
        goto out;
    }
    *blobs = calloc((size_t)r->world, sizeof(char *));
    if (!*blobs) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    int i = 0;
    const cJSON *b;
    cJSON_ArrayForEach(b, arr)
    {
        if (!cJSON_IsString(b) || !blob_ok(b->valuestring)) {
            ft_err_set(err, FT_EBADFIELD, "rendezvous reply: field 'blobs[%d]': expected base64 "
                       "of at most %d bytes", i, FT_RDV_BLOB_MAX);
            rdv_blobs_free(blobs, r->world);
            goto out;
        }
        (*blobs)[i] = strdup(b->valuestring);
        if (!(*blobs)[i]) {
            ft_err_set(err, FT_EINTERNAL, "out of memory");
            rdv_blobs_free(blobs, r->world);
            goto out;
        }
        i++;
    }
    rc = 0;
out:
    cJSON_Delete(o);
    return rc;
}

static int exchange_worker(rdv_t *r, const char *blob, char ***blobs, ft_err_t *err)
{
    int64_t deadline = ft_mono_ms() + r->timeout_ms;
    char *line = ft_asprintf("{\"event\":\"rendezvous\",\"blob\":\"%s\"}\n", blob);
    if (!line) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    int rc = write_all(r->fd, line, strlen(line), err);
    free(line);
    while (rc == 0) {
        size_t len = 0;
        if (read_line(r, deadline, &len, err) < 0)
            return -1;
        rc = parse_reply(r, r->rbuf, len, blobs, err);
        /* drop the line, keep what followed it */
        memmove(r->rbuf, r->rbuf + len + 1, r->rlen - len - 1);
        r->rlen -= len + 1;
        if (rc == 1) {
            ft_warn("rendezvous: ignoring a reply for an earlier attempt");
            rc = 0;
            continue;
        }
        return rc;
    }
    return -1;
}

static int exchange_dir(rdv_t *r, const char *blob, char ***blobs, ft_err_t *err)
{
    char path[FT_PATH_MAX + 64];
    int64_t deadline = ft_mono_ms() + r->timeout_ms;
    snprintf(path, sizeof(path), "%s/blob-%d", r->dir, r->rank);
    if (ft_mkdir_p(r->dir, err) < 0 || ft_write_file_atomic(path, blob, strlen(blob), err) < 0)
        return -1;
    *blobs = calloc((size_t)r->world, sizeof(char *));
    if (!*blobs) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        return -1;
    }
    for (int i = 0; i < r->world;) {
        snprintf(path, sizeof(path), "%s/blob-%d", r->dir, i);
        ft_err_t e2 = {0};
        size_t len = 0;
        char *b = ft_read_file(path, FT_RDV_BLOB_MAX, &len, &e2);
        if (!b) {
            if (ft_mono_ms() >= deadline) {
                ft_err_set(err, FT_EUNAVAIL, "rendezvous: no blob from rank %d in '%s' within %d s",
                           i, r->dir, r->timeout_ms / 1000);
                rdv_blobs_free(blobs, r->world);
                return -1;
            }
            usleep(RDV_DIR_POLL_MS * 1000);
            continue;
        }
        if (!blob_ok(b)) {
            ft_err_set(err, FT_EBADFIELD, "rendezvous: '%s': not base64 of at most %d bytes",
                       path, FT_RDV_BLOB_MAX);
            free(b);
            rdv_blobs_free(blobs, r->world);
            return -1;
        }
        (*blobs)[i++] = b;
    }
    return 0;
}

int rdv_exchange(rdv_t *r, const char *my_blob, char ***blobs, ft_err_t *err)
{
    *blobs = NULL;
    if (!blob_ok(my_blob)) {
        ft_err_set(err, FT_EBADFIELD, "rendezvous: own blob is not base64 of at most %d bytes",
                   FT_RDV_BLOB_MAX);
        return -1;
    }
    return r->dir[0] ? exchange_dir(r, my_blob, blobs, err)
                     : exchange_worker(r, my_blob, blobs, err);
}
