/*
 * worker/wrdv.c: the rendezvous relay of ftworker (wrdv.h). It checks what
 * it forwards in both directions: a blob is base64 text of at most
 * FT_RDV_BLOB_MAX bytes, so neither a confused rank nor a confused scheduler
 * can put control characters or unbounded data on the other side.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wrdv.h"
#include "ft/json.h"
#include "ft/proto.h"

static bool blob_ok(const char *b)
{
    static const char ok[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(b);
    if (n > FT_RDV_BLOB_MAX || n % 4 != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr(ok, b[i]) && !(b[i] == '=' && i + 2 >= n && b[i] != '\0'))
            return false;
    return true;
}

int wrdv_event(const char *line, size_t len, char *blob, size_t cap, ft_err_t *err)
{
    static const char *const keys[] = {"event", "blob", NULL};
    if (!memmem(line, len, "\"rendezvous\"", 12))
        return 0;
    int rc = -1;
    const char *ev = NULL, *b = NULL;
    cJSON *o = ft_json_parse(line, len, err);
    if (!o)
        goto out;
    if (!cJSON_IsObject(o) ||
        ft_json_get_str(o, "event line", "event", true, 32, &ev, err) < 0) {
        if (cJSON_IsObject(o))
            goto out;
        ft_err_set(err, FT_EBADJSON, "event line is not a JSON object");
        goto out;
    }
    if (strcmp(ev, "rendezvous") != 0) {
        rc = 0;
        goto out;
    }
    if (ft_json_check_keys(o, "rendezvous event", keys, err) < 0 ||
        ft_json_get_str(o, "rendezvous event", "blob", true, FT_RDV_BLOB_MAX, &b, err) < 0)
        goto out;
    if (!blob_ok(b) || strlen(b) >= cap) {
        ft_err_set(err, FT_EBADFIELD, "rendezvous event: field 'blob': expected base64 of at "
                   "most %d bytes", FT_RDV_BLOB_MAX);
        goto out;
    }
    ft_strlcpy(blob, b, cap);
    rc = 1;
out:
    cJSON_Delete(o);
    return rc;
}

cJSON *wrdv_request(int64_t job_id, int64_t attempt, int rank, const char *blob)
{
    cJSON *m = ft_proto_new(FT_MSG_RENDEZVOUS, NULL);
    if (!m || !cJSON_AddNumberToObject(m, "job_id", (double)job_id) ||
        !cJSON_AddNumberToObject(m, "attempt", (double)attempt) ||
        !cJSON_AddNumberToObject(m, "rank", rank) || !cJSON_AddStringToObject(m, "blob", blob)) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

char *wrdv_reply_line(const cJSON *msg, ft_err_t *err)
{
    const cJSON *blobs = cJSON_GetObjectItemCaseSensitive(msg, "blobs");
    const cJSON *att = cJSON_GetObjectItemCaseSensitive(msg, "attempt");
    const cJSON *b;
    int i = 0;
    cJSON_ArrayForEach(b, blobs)
    {
        if (!cJSON_IsString(b) || !blob_ok(b->valuestring)) {
            ft_err_set(err, FT_EBADFIELD, "rendezvous_reply: field 'blobs[%d]': expected base64 "
                       "of at most %d bytes", i, FT_RDV_BLOB_MAX);
            return NULL;
        }
        i++;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *copy = cJSON_Duplicate(blobs, true);
    char *text = NULL, *line = NULL;
    if (!o || !copy || !cJSON_AddStringToObject(o, "event", "rendezvous_reply") ||
        !cJSON_AddNumberToObject(o, "attempt", cJSON_IsNumber(att) ? att->valuedouble : 0) ||
        !cJSON_AddItemToObject(o, "blobs", copy)) {
        if (!o || !cJSON_GetObjectItemCaseSensitive(o, "blobs"))
            cJSON_Delete(copy);
        goto oom;
    }
    text = cJSON_PrintUnformatted(o);
    if (!text)
        goto oom;
    line = ft_asprintf("%s\n", text);
    if (!line)
        goto oom;
    free(text);
    cJSON_Delete(o);
    return line;
oom:
    free(text);
    cJSON_Delete(o);
    ft_err_set(err, FT_EINTERNAL, "out of memory building the rendezvous reply");
    return NULL;
}

int wrdv_deliver(int fd, const char *line, size_t len, int timeout_ms, ft_err_t *err)
{
    int64_t deadline = ft_mono_ms() + timeout_ms;
    while (len > 0) {
        ssize_t n = send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            line += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            ft_err_set(err, FT_EUNAVAIL, "cannot write the rendezvous reply: %s", strerror(errno));
            return -1;
        }
        int64_t left = deadline - ft_mono_ms();
        struct pollfd p = {fd, POLLOUT, 0};
        if (left <= 0 || poll(&p, 1, (int)left) == 0) {
            ft_err_set(err, FT_EUNAVAIL, "the rank did not read its rendezvous reply within %d ms",
                       timeout_ms);
            return -1;
        }
    }
    return 0;
}
