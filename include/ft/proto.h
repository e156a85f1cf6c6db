/*
 * ft/proto.h: the wire protocol between ftctl, ftworker and ftsched.
 *
 * Transport: ZeroMQ. ftsched binds one ROUTER socket; clients and workers
 * connect DEALER sockets. Every message is exactly one frame holding one JSON
 * object (the ROUTER adds and strips the peer's routing id). docs/protocol.md
 * documents every message and field; this header and lib/proto.c are the one
 * table that both sides validate against.
 *
 * Every message has "v" (FT_PROTO_VERSION) and "type"; requests may carry
 * "id" (string, echoed back as "re" in the reply).
 */
#ifndef FT_PROTO_H
#define FT_PROTO_H

#include <cjson/cJSON.h>
#include "ft/common.h"

#define FT_PROTO_VERSION 1
#define FT_MSG_MAX_BYTES (1024 * 1024) /* ZMQ_MAXMSGSIZE on the ROUTER */
#define FT_LOG_CHUNK_MAX (256 * 1024)  /* largest logs/log_read chunk */
#define FT_DEFAULT_ENDPOINT "tcp://127.0.0.1:7461"
#define FT_HEARTBEAT_MS 1000 /* default heartbeat interval */
#define FT_LIVENESS 5        /* missed heartbeats before "lost" */
#define FT_RDV_BLOB_MAX 4000 /* bytes of one rendezvous blob (base64 text) */
#define FT_ARRAY_MAX 1000    /* jobs in one array submit (one transaction, one reply) */

typedef enum {
    /* client -> scheduler (requests; each gets one reply or an error) */
    FT_MSG_PING,
    FT_MSG_SUBMIT,
    FT_MSG_JOBS,
    FT_MSG_JOB,
    FT_MSG_CANCEL,
    FT_MSG_LOGS,
    FT_MSG_NODES,
    FT_MSG_USAGE,
    FT_MSG_REPORT, /* the team leads' report (utilisation, break-even, series) */
    /* scheduler -> client replies */
    FT_MSG_PING_REPLY,
    FT_MSG_SUBMIT_REPLY,
    FT_MSG_JOBS_REPLY,
    FT_MSG_JOB_REPLY,
    FT_MSG_CANCEL_REPLY,
    FT_MSG_LOGS_REPLY,
    FT_MSG_NODES_REPLY,
    FT_MSG_USAGE_REPLY,
    FT_MSG_REPORT_REPLY,
    /* worker -> scheduler */
    FT_MSG_HELLO,
    FT_MSG_HEARTBEAT, /* both directions */
    FT_MSG_RANK_STARTED,
    FT_MSG_PROGRESS,
    FT_MSG_RANK_EXITED,
    FT_MSG_LOG_DATA,
    FT_MSG_RENDEZVOUS, /* one rank's blob for its gang's exchange */
    /* scheduler -> worker */
    FT_MSG_HELLO_REPLY,
    FT_MSG_START,
    FT_MSG_STOP,
    FT_MSG_LOG_READ,
    FT_MSG_RENDEZVOUS_REPLY, /* every rank's blob, once all are in */
    /* either direction */
    FT_MSG_ERROR,
    FT_MSG__COUNT
} ft_msg_type_t;

/* Who may send a message type (checked by the validator's caller). */
enum { FT_FROM_CLIENT = 1, FT_FROM_WORKER = 2, FT_FROM_SCHED = 4 };

const char *ft_msg_name(ft_msg_type_t t);
/* FT_MSG__COUNT for an unknown name. */
ft_msg_type_t ft_msg_from_name(const char *name);
int ft_msg_senders(ft_msg_type_t t); /* FT_FROM_* mask */

/* Parses one frame and validates it against the message table: JSON, size,
 * "v", known "type", required fields present with the right JSON types and
 * within bounds, no unknown top-level fields. On success returns the parsed
 * object (caller cJSON_Delete's) and sets *type. On failure returns NULL with
 * err set; *type is set when the type was known, else FT_MSG__COUNT, and
 * *req_id (if non-NULL) receives a copy of "id" when it could be read, so that
 * the error reply can carry "re". */
cJSON *ft_proto_decode(const void *buf, size_t len, ft_msg_type_t *type, char *req_id,
                       size_t req_id_len, ft_err_t *err);

/* Validates an already-parsed object (the second half of ft_proto_decode). */
int ft_proto_validate(const cJSON *msg, ft_msg_type_t *type, ft_err_t *err);

/* A new message object with "v" and "type" set, and "re" when re != NULL. */
cJSON *ft_proto_new(ft_msg_type_t type, const char *re);
/* An error message {"v","type":"error","re","code","message"}. */
cJSON *ft_proto_error(const char *re, const ft_err_t *err);

#endif
