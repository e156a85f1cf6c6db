/*
 * test_proto.c: the protocol table and validator. Every error code the
 * validator can produce is provoked, and every message type has a happy path
 * built the way a sender builds it (ft_proto_new + fields) and decoded back.
 */
#include <stdlib.h>
#include <string.h>

#include "ft/json.h"
#include "ft/proto.h"
#include "check.h"

static ft_errcode_t decode_code(const char *text, char *id, size_t idlen, ft_msg_type_t *type,
                                char *msg, size_t msglen)
{
    ft_err_t err = {0};
    cJSON *m = ft_proto_decode(text, strlen(text), type, id, idlen, &err);

    if (m) {
        cJSON_Delete(m);
        return FT_OK;
    }
    ft_strlcpy(msg, err.msg, msglen);
    return err.code;
}

static void expect(const char *text, ft_errcode_t want, const char *what)
{
    char id[65], msg[512] = "";
    ft_msg_type_t t;
    ft_errcode_t got = decode_code(text, id, sizeof(id), &t, msg, sizeof(msg));

    CHECK(got == want, "%s -> %s (got %s: '%s')", what, ft_errcode_name(want), ft_errcode_name(got),
          msg);
}

static void test_errors(void)
{
    char *big;
    char id[65], msg[512];
    ft_msg_type_t t;

    expect("{\"v\":1,\"type\":\"ping\"", FT_EBADJSON, "truncated JSON");
    expect("[1,2]", FT_EBADJSON, "an array instead of an object");
    expect("{\"v\":1,\"type\":\"ping\",\"v\":1}", FT_EBADJSON, "duplicate key");
    expect("{\"type\":\"ping\"}", FT_EVERSION, "missing v");
    expect("{\"v\":2,\"type\":\"ping\"}", FT_EVERSION, "v = 2");
    expect("{\"v\":\"1\",\"type\":\"ping\"}", FT_EVERSION, "v as a string");
    expect("{\"v\":1}", FT_EUNKNOWNTYPE, "missing type");
    expect("{\"v\":1,\"type\":7}", FT_EUNKNOWNTYPE, "type not a string");
    expect("{\"v\":1,\"type\":\"frobnicate\"}", FT_EUNKNOWNTYPE, "unknown type");
    expect("{\"v\":1,\"type\":\"job\"}", FT_EMISSING, "job without job_id");
    expect("{\"v\":1,\"type\":\"job\",\"job_id\":\"3\"}", FT_EBADFIELD, "job_id as a string");
    expect("{\"v\":1,\"type\":\"job\",\"job_id\":0}", FT_EBADFIELD, "job_id 0 out of bounds");
    expect("{\"v\":1,\"type\":\"job\",\"job_id\":1.5}", FT_EBADFIELD, "job_id fractional");
    expect("{\"v\":1,\"type\":\"job\",\"job_id\":1,\"jobid\":2}", FT_EBADFIELD, "unknown field");
    expect("{\"v\":1,\"type\":\"ping\",\"id\":5}", FT_EBADFIELD, "id not a string");
    expect("{\"v\":1,\"type\":\"cancel\",\"job_ids\":[]}", FT_EBADFIELD, "empty job_ids");
    expect("{\"v\":1,\"type\":\"cancel\",\"job_ids\":[1,\"x\"]}", FT_EBADFIELD,
           "job_ids element not an integer");
    expect("{\"v\":1,\"type\":\"logs\",\"job_id\":1,\"max_bytes\":300000}", FT_EBADFIELD,
           "max_bytes over the chunk limit");
    expect("{\"v\":1,\"type\":\"submit\",\"spec\":[],\"user\":\"a\"}", FT_EBADFIELD,
           "spec not an object");
    expect("{\"v\":1,\"type\":\"submit\",\"spec\":{},\"user\":\"a\",\"array\":0}", FT_EBADFIELD,
           "array of 0 jobs");
    expect("{\"v\":1,\"type\":\"submit\",\"spec\":{},\"user\":\"a\",\"array\":1001}",
           FT_EBADFIELD, "array over FT_ARRAY_MAX");
    expect("{\"v\":1,\"type\":\"submit_reply\",\"job_id\":1,\"duplicate\":false,"
           "\"state\":\"PENDING\",\"job_ids\":[1,\"2\"]}",
           FT_EBADFIELD, "job_ids element not an integer");
    expect("{\"v\":1,\"type\":\"start\",\"job_id\":1,\"attempt\":1,\"kind\":\"exec\","
           "\"spec\":{},\"user\":\"u\",\"team\":\"t\",\"world_size\":1,\"ranks\":[{}],"
           "\"array_job_id\":1,\"array_index\":1000}",
           FT_EBADFIELD, "start's array_index over 999");
    expect(
        "{\"v\":1,\"type\":\"submit\",\"spec\":{},\"user\":"
        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
        FT_ETOOLARGE, "user over 64 bytes");
    expect("{\"v\":1,\"type\":\"rank_exited\",\"job_id\":1,\"attempt\":1,\"rank\":0,\"exit_code\":"
           "0,\"signal\":0,\"reason\":true}",
           FT_EBADFIELD, "reason not a string");
    expect("{\"v\":1,\"type\":\"heartbeat\",\"extra\":null}", FT_EBADFIELD,
           "heartbeat with a field");

    /* A spec over 64 KiB printed. */
    big = malloc(70 * 1024);
    strcpy(big, "{\"v\":1,\"type\":\"submit\",\"user\":\"u\",\"spec\":{\"name\":\"");
    memset(big + strlen(big), 'x', 66 * 1024);
    strcpy(big + strlen("{\"v\":1,\"type\":\"submit\",\"user\":\"u\",\"spec\":{\"name\":\"") +
               66 * 1024,
           "\"}}");
    expect(big, FT_ETOOLARGE, "spec over 64 KiB");
    free(big);

    /* A frame over FT_MSG_MAX_BYTES is refused before parsing. */
    {
        ft_err_t err;
        size_t n = FT_MSG_MAX_BYTES + 1;
        char *huge = malloc(n);
        memset(huge, ' ', n);
        cJSON *m = ft_proto_decode(huge, n, &t, id, sizeof(id), &err);
        CHECK(!m && err.code == FT_ETOOLARGE, "frame over 1 MiB is too_large: '%s'", err.msg);
        free(huge);
    }
    /* The request id survives a validation failure so the error can carry "re". */
    CHECK(decode_code("{\"v\":1,\"type\":\"job\",\"id\":\"abc\"}", id, sizeof(id), &t, msg,
                      sizeof(msg)) == FT_EMISSING &&
              strcmp(id, "abc") == 0 && t == FT_MSG_JOB,
          "id 'abc' and type recovered from a failing message");
    CHECK(decode_code("{\"v\":1,\"type\":\"nope\",\"id\":\"q\"}", id, sizeof(id), &t, msg,
                      sizeof(msg)) == FT_EUNKNOWNTYPE &&
              t == FT_MSG__COUNT && strcmp(id, "q") == 0,
          "unknown type leaves type FT_MSG__COUNT, id still read");
}

/* Builds a message of type t with the given extra fields (a JSON object
 * text), prints it, decodes it and checks it comes back as type t. */
static void roundtrip(ft_msg_type_t t, const char *fields_json)
{
    ft_err_t err = {0};
    cJSON *m = ft_proto_new(t, "r1");
    cJSON *extra = ft_json_parse(fields_json, strlen(fields_json), &err);
    cJSON *c, *back;
    char *text;
    ft_msg_type_t got = FT_MSG__COUNT;
    char id[65];

    if (!m || !extra) {
        CHECK(0, "build %s: %s", ft_msg_name(t), err.msg);
        cJSON_Delete(m);
        cJSON_Delete(extra);
        return;
    }
    while ((c = extra->child)) {
        cJSON_DetachItemViaPointer(extra, c);
        cJSON_AddItemToObject(m, c->string, c);
    }
    cJSON_Delete(extra);
    text = ft_json_print(m);
    back = ft_proto_decode(text, strlen(text), &got, id, sizeof(id), &err);
    CHECK(back && got == t, "happy path '%s'%s%s", ft_msg_name(t), back ? "" : ": ",
          back ? "" : err.msg);
    cJSON_Delete(back);
    free(text);
    cJSON_Delete(m);
}

static void test_happy(void)
{
    static const struct {
        ft_msg_type_t t; /* message type */
        const char *f;   /* its fields */
    } cases[] = {
        {FT_MSG_PING, "{}"},
        {FT_MSG_SUBMIT, "{\"spec\":{\"command\":[\"true\"]},\"user\":\"ann\",\"team\":\"nlp\","
                        "\"request_id\":\"r-1\"}"},
        {FT_MSG_JOBS, "{\"states\":[\"PENDING\"],\"user\":\"ann\",\"limit\":10}"},
        {FT_MSG_JOB, "{\"job_id\":3}"},
        {FT_MSG_CANCEL, "{\"job_ids\":[1,2],\"reason\":\"oops\"}"},
        {FT_MSG_LOGS, "{\"job_id\":3,\"rank\":1,\"offset\":0,\"max_bytes\":4096}"},
        {FT_MSG_NODES, "{}"},
        {FT_MSG_USAGE, "{\"group_by\":\"team\",\"since\":0,\"until\":100}"},
        {FT_MSG_PING_REPLY, "{\"version\":\"0.1.0\",\"proto\":1,\"time\":1,\"jobs_pending\":0,"
                            "\"jobs_running\":0,\"nodes_ready\":0}"},
        {FT_MSG_SUBMIT_REPLY, "{\"job_id\":1,\"duplicate\":false,\"state\":\"PENDING\"}"},
        {FT_MSG_JOBS_REPLY, "{\"jobs\":[{\"job_id\":1}]}"},
        {FT_MSG_JOB_REPLY, "{\"job\":{\"job_id\":1}}"},
        {FT_MSG_CANCEL_REPLY,
         "{\"results\":[{\"job_id\":1,\"state\":\"CANCELLED\",\"error\":null}]}"},
        {FT_MSG_LOGS_REPLY, "{\"data\":\"hello\\n\",\"offset\":6,\"eof\":true}"},
        {FT_MSG_NODES_REPLY, "{\"nodes\":[]}"},
        {FT_MSG_USAGE_REPLY, "{\"rows\":[],\"since\":0,\"until\":10}"},
        {FT_MSG_HELLO, "{\"name\":\"n1\",\"hostname\":\"h\",\"pid\":10,\"version\":\"0.1.0\","
                       "\"devices\":[{\"index\":0}],\"running\":[]}"},
        {FT_MSG_HEARTBEAT, "{}"},
        {FT_MSG_RANK_STARTED, "{\"job_id\":1,\"attempt\":1,\"rank\":0,\"pid\":99}"},
        {FT_MSG_PROGRESS, "{\"job_id\":1,\"attempt\":1,\"rank\":0,\"step\":3,\"total_steps\":10,"
                          "\"loss\":1.5,\"peak_mem_mb\":100,\"message\":\"hi\"}"},
        {FT_MSG_RANK_EXITED, "{\"job_id\":1,\"attempt\":1,\"rank\":0,\"exit_code\":-1,\"signal\":9,"
                             "\"reason\":\"killed\"}"},
        {FT_MSG_LOG_DATA, "{\"relay\":4,\"data\":\"x\",\"offset\":1,\"eof\":false}"},
        {FT_MSG_RENDEZVOUS, "{\"job_id\":1,\"attempt\":2,\"rank\":1,\"blob\":\"MTI3LjAuMC4xOjk=\"}"},
        {FT_MSG_HELLO_REPLY, "{\"heartbeat_ms\":1000,\"liveness\":5}"},
        {FT_MSG_START,
         "{\"job_id\":1,\"attempt\":1,\"kind\":\"exec\",\"spec\":{},\"user\":\"u\",\"team\":\"t\","
         "\"world_size\":2,\"ranks\":[{\"rank\":0,\"local_rank\":0,\"device\":0}]}"},
        {FT_MSG_STOP, "{\"job_id\":1,\"attempt\":1,\"reason\":\"cancelled\",\"grace_ms\":5000}"},
        {FT_MSG_LOG_READ, "{\"relay\":4,\"job_id\":1,\"rank\":0,\"offset\":0,\"max_bytes\":100}"},
        {FT_MSG_RENDEZVOUS_REPLY, "{\"job_id\":1,\"attempt\":2,\"blobs\":[\"YQ==\",\"Yg==\"]}"},
        {FT_MSG_ERROR, "{\"code\":\"not_found\",\"message\":\"no job 4\"}"},
        {FT_MSG_REPORT, "{\"since\":0,\"until\":86400}"},
        {FT_MSG_REPORT_REPLY,
         "{\"currency\":\"USD\",\"since\":0,\"until\":86400,\"totals\":{},\"utilisation\":{},"
         "\"break_even\":[],\"days\":[],\"team_days\":[],\"teams\":[],\"top_jobs\":[],"
         "\"budgets\":[]}"},
    };
    int seen[FT_MSG__COUNT] = {0};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        roundtrip(cases[i].t, cases[i].f);
        seen[cases[i].t] = 1;
    }
    for (int t = 0; t < FT_MSG__COUNT; t++)
        CHECK(seen[t], "message type '%s' has a happy-path case", ft_msg_name((ft_msg_type_t)t));
}

static void test_table(void)
{
    ft_err_t err;
    cJSON *e;
    char *s;

    for (int t = 0; t < FT_MSG__COUNT; t++)
        CHECK(ft_msg_from_name(ft_msg_name((ft_msg_type_t)t)) == (ft_msg_type_t)t &&
                  ft_msg_senders((ft_msg_type_t)t) != 0,
              "type %d '%s' round-trips and has senders", t, ft_msg_name((ft_msg_type_t)t));
    CHECK(ft_msg_senders(FT_MSG_SUBMIT) == FT_FROM_CLIENT, "only clients submit");
    CHECK(ft_msg_senders(FT_MSG_HEARTBEAT) == (FT_FROM_WORKER | FT_FROM_SCHED),
          "heartbeats go both ways");
    CHECK(ft_msg_senders(FT_MSG_START) == FT_FROM_SCHED, "only the scheduler starts ranks");
    ft_err_set(&err, FT_ENOTFOUND, "no job %d", 4);
    e = ft_proto_error("7", &err);
    s = ft_json_print(e);
    CHECK(s && strcmp(s, "{\"v\":1,\"type\":\"error\",\"re\":\"7\",\"code\":\"not_found\","
                         "\"message\":\"no job 4\"}") == 0,
          "ft_proto_error builds %s", s ? s : "(null)");
    free(s);
    cJSON_Delete(e);
}

int main(void)
{
    test_table();
    test_errors();
    test_happy();
    return check_done("test_proto");
}
