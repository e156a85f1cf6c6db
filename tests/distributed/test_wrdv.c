/*
 * test_wrdv.c: ftworker's half of the rendezvous (worker/wrdv.h): which event
 * lines are rendezvous requests, what is refused (with the field named), the
 * message built for the scheduler, the reply line for the ranks, and the
 * bounded write of that line to a rank that does not read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wrdv.h"
#include "ft/json.h"
#include "ft/proto.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        printf("%s", (cond) ? "ok: " : "FAIL: ");                                                  \
        if (!(cond))                                                                               \
            failures++;                                                                            \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
    } while (0)

static int ev(const char *line, char *blob, ft_err_t *err)
{
    memset(err, 0, sizeof(*err));
    return wrdv_event(line, strlen(line), blob, FT_RDV_BLOB_MAX + 1, err);
}

int main(void)
{
    char blob[FT_RDV_BLOB_MAX + 1];
    ft_err_t err;
    int rc;

    rc = ev("{\"event\":\"progress\",\"step\":1,\"total_steps\":2}", blob, &err);
    CHECK(rc == 0, "a progress line is not a rendezvous line (rc %d)", rc);
    rc = ev("{\"event\":\"progress\",\"step\":1,\"total_steps\":2,\"message\":\"rendezvous\"}",
            blob, &err);
    CHECK(rc == 0, "a progress line that mentions \"rendezvous\" in a message is still progress");
    rc = ev("{\"event\":\"rendezvous\",\"blob\":\"MTI3LjAuMC4xOjQ0Mw==\"}", blob, &err);
    CHECK(rc == 1 && strcmp(blob, "MTI3LjAuMC4xOjQ0Mw==") == 0, "a rendezvous line gives its blob");
    rc = ev("{\"event\":\"rendezvous\",\"blob\":\"\"}", blob, &err);
    CHECK(rc == 1 && blob[0] == '\0', "an empty blob is allowed (ranks without an address)");
    rc = ev("{\"event\":\"rendezvous\",\"blob\":\"a b\\n\"}", blob, &err);
    CHECK(rc < 0 && strstr(err.msg, "'blob'"), "a blob that is not base64 is refused: '%s'",
          err.msg);
    rc = ev("{\"event\":\"rendezvous\"}", blob, &err);
    CHECK(rc < 0 && strstr(err.msg, "blob"), "a missing blob is refused: '%s'", err.msg);
    rc = ev("{\"event\":\"rendezvous\",\"blob\":\"AA==\",\"rank\":3}", blob, &err);
    CHECK(rc < 0 && strstr(err.msg, "rank"),
          "a rank cannot claim a rank (unknown key refused): '%s'", err.msg);
    {
        char *big = malloc(FT_RDV_BLOB_MAX + 64);
        char *line = malloc(FT_RDV_BLOB_MAX + 128);
        memset(big, 'A', FT_RDV_BLOB_MAX + 4);
        big[FT_RDV_BLOB_MAX + 4] = '\0';
        snprintf(line, FT_RDV_BLOB_MAX + 128, "{\"event\":\"rendezvous\",\"blob\":\"%s\"}", big);
        rc = ev(line, blob, &err);
        CHECK(rc < 0, "a blob over %d bytes is refused: '%s'", FT_RDV_BLOB_MAX, err.msg);
        free(big);
        free(line);
    }
    rc = ev("{\"event\":\"rendezvous\",\"blob\":", blob, &err);
    CHECK(rc < 0, "broken JSON mentioning rendezvous is refused: '%s'", err.msg);

    cJSON *m = wrdv_request(7, 2, 1, "QUFB");
    char *t = m ? ft_json_print(m) : NULL;
    ft_msg_type_t ty;
    cJSON *back = t ? ft_proto_decode(t, strlen(t), &ty, NULL, 0, &err) : NULL;
    CHECK(back && ty == FT_MSG_RENDEZVOUS, "the request passes the protocol validator: %s",
          t ? t : "(null)");
    cJSON_Delete(back);
    free(t);
    cJSON_Delete(m);

    const char *reply = "{\"v\":1,\"type\":\"rendezvous_reply\",\"job_id\":7,\"attempt\":2,"
                        "\"blobs\":[\"QUFB\",\"\"]}";
    m = ft_proto_decode(reply, strlen(reply), &ty, NULL, 0, &err);
    char *line = m ? wrdv_reply_line(m, &err) : NULL;
    CHECK(line && strcmp(line, "{\"event\":\"rendezvous_reply\",\"attempt\":2,\"blobs\":"
                               "[\"QUFB\",\"\"]}\n") == 0,
          "the reply line for the ranks: %s", line ? line : err.msg);
    cJSON_Delete(m);
    const char *bad = "{\"v\":1,\"type\":\"rendezvous_reply\",\"job_id\":7,\"attempt\":2,"
                      "\"blobs\":[\"QUFB\",\"$$\"]}";
    m = ft_proto_decode(bad, strlen(bad), &ty, NULL, 0, &err);
    char *none = m ? wrdv_reply_line(m, &err) : NULL;
    CHECK(m && !none && strstr(err.msg, "blobs[1]"),
          "a reply with a bad blob is not passed on: '%s'", err.msg);
    cJSON_Delete(m);

    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0)
        return 1;
    rc = wrdv_deliver(sp[0], line, strlen(line), 500, &err);
    char buf[256] = "";
    ssize_t n = read(sp[1], buf, sizeof(buf) - 1);
    CHECK(rc == 0 && n == (ssize_t)strlen(line) && strcmp(buf, line) == 0,
          "the line reaches the rank's end of the socket");
    int small = 4096;
    setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    size_t big = 4 << 20;
    char *huge = malloc(big);
    memset(huge, 'x', big);
    int64_t t0 = ft_mono_ms();
    rc = wrdv_deliver(sp[0], huge, big, 300, &err);
    int64_t took = ft_mono_ms() - t0;
    CHECK(rc < 0 && took >= 250 && took < 3000 && strstr(err.msg, "did not read"),
          "a rank that does not read gives up after 300 ms (%lld ms): '%s'", (long long)took,
          err.msg);
    free(huge);
    free(line);
    close(sp[0]);
    close(sp[1]);
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
