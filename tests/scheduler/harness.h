/*
 * harness.h: drives the scheduler core in-process for unit tests: frames in
 * through sched_handle, the outbox captured and parsed after each call, a
 * fake clock. Header-only; each test is one program.
 */
#ifndef FT_TEST_HARNESS_H
#define FT_TEST_HARNESS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ft/json.h"
#include "ft/proto.h"
#include "../lib/check.h"
#include "sched_int.h"

#define H_MAX_OUT 4096

typedef struct {
    char peer[257]; /* routing id as text */
    cJSON *msg;     /* parsed message */
} h_out_t;

static h_out_t h_out[H_MAX_OUT]; /* messages of the last call */
static int h_nout;               /* entries used in h_out */

static inline void h_drop(void)
{
    for (int i = 0; i < h_nout; i++)
        cJSON_Delete(h_out[i].msg);
    h_nout = 0;
}

/* Moves the outbox into h_out (replacing the previous batch), after
 * sched_sync, as the server sends it. */
static inline void h_collect(sched_t *s)
{
    ft_err_t err;

    if (sched_sync(s, &err) < 0) {
        printf("FAIL sched_sync: %s\n", err.msg);
        exit(1);
    }
    h_drop();
    for (int i = 0; i < sched_outbox_count(s) && h_nout < H_MAX_OUT; i++) {
        const sched_msg_t *m = sched_outbox_get(s, i);
        h_out_t *o = &h_out[h_nout++];

        memcpy(o->peer, m->peer, m->peer_len);
        o->peer[m->peer_len] = '\0';
        o->msg = cJSON_Parse(m->payload);
    }
    sched_outbox_clear(s);
}

/* Sends text from peer and collects what came out. */
static inline void h_send(sched_t *s, const char *peer, const char *text)
{
    sched_handle(s, peer, strlen(peer), text, strlen(text));
    h_collect(s);
}

static inline const char *h_type(const cJSON *m)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "type");
    return cJSON_IsString(t) ? t->valuestring : "";
}

/* The i-th message (0 = first) of type to peer (NULL = any) in the batch. */
static inline cJSON *h_find(const char *peer, const char *type, int nth)
{
    for (int i = 0; i < h_nout; i++)
        if ((!peer || strcmp(h_out[i].peer, peer) == 0) &&
            strcmp(h_type(h_out[i].msg), type) == 0 && nth-- == 0)
            return h_out[i].msg;
    return NULL;
}

static inline int h_count(const char *peer, const char *type)
{
    int n = 0;

    for (int i = 0; i < h_nout; i++)
        if ((!peer || strcmp(h_out[i].peer, peer) == 0) && strcmp(h_type(h_out[i].msg), type) == 0)
            n++;
    return n;
}

static inline double h_num(const cJSON *m, const char *field)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(m, field);
    return cJSON_IsNumber(f) ? f->valuedouble : -9999;
}

static inline const char *h_str(const cJSON *m, const char *field)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(m, field);
    return cJSON_IsString(f) ? f->valuestring : "";
}

/* The reply to a client request (first message to peer). */
static inline cJSON *h_reply(const char *peer)
{
    for (int i = 0; i < h_nout; i++)
        if (strcmp(h_out[i].peer, peer) == 0)
            return h_out[i].msg;
    return NULL;
}

static inline sched_t *h_new(const char *db_path, int64_t t0)
{
    sched_config_t cfg;
    ft_err_t err;
    sched_t *s;

    sched_config_defaults(&cfg);
    ft_strlcpy(cfg.db_path, db_path, sizeof(cfg.db_path));
    s = sched_new(&cfg, &err);
    if (!s) {
        printf("FAIL cannot create the scheduler: %s\n", err.msg);
        exit(1);
    }
    sched_set_fake_time(s, t0);
    return s;
}

/* A temporary database path (removed with its -wal/-shm by h_rm): a new,
 * empty file (SQLite opens it as an empty database). Made by mkstemp, not
 * from the pid: pids come round again (pid_max is 32768 on many machines),
 * and a database that a killed test left behind under the same name was
 * opened with its old rows. */
static inline char *h_tmpdb(void)
{
    const char *dir = getenv("TMPDIR");
    char *p = ft_asprintf("%s/ft-test-sched-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = p ? mkstemp(p) : -1;

    if (fd < 0) {
        fprintf(stderr, "cannot create a temporary database file: %s\n", strerror(errno));
        exit(1);
    }
    close(fd);
    return p;
}

static inline void h_rm(const char *path)
{
    char *w = ft_asprintf("%s-wal", path), *m = ft_asprintf("%s-shm", path);
    unlink(path);
    unlink(w);
    unlink(m);
    free(w);
    free(m);
}

/* A worker hello with ndev devices of model/kind/memory. */
static inline void h_hello(sched_t *s, const char *name, int ndev, const char *model,
                           const char *kind, int mem_mb, const char *running)
{
    char peer[80], buf[16384];
    size_t n;

    snprintf(peer, sizeof(peer), "w/%s", name);
    n = (size_t)snprintf(
        buf, sizeof(buf),
        "{\"v\":1,\"type\":\"hello\",\"name\":\"%s\",\"hostname\":\"h-%s\",\"pid\":100,"
        "\"version\":\"0.1.0\",\"devices\":[",
        name, name);
    for (int i = 0; i < ndev; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                              "%s{\"index\":%d,\"uuid\":\"%s-%s-%d\",\"model\":\"%s\",\"memory_"
                              "mb\":%d,\"kind\":\"%s\"}",
                              i ? "," : "", i, kind, name, i, model, mem_mb, kind);
    snprintf(buf + n, sizeof(buf) - n, "],\"running\":%s}", running ? running : "[]");
    h_send(s, peer, buf);
}

/* Submits spec as user; returns the job id or -1 (the reply stays in h_out). */
static inline int64_t h_submit(sched_t *s, const char *spec, const char *user, const char *extra)
{
    char buf[8192];
    cJSON *r;

    snprintf(buf, sizeof(buf),
             "{\"v\":1,\"type\":\"submit\",\"id\":\"s\",\"user\":\"%s\",\"spec\":%s%s}", user, spec,
             extra ? extra : "");
    h_send(s, "client1", buf);
    r = h_reply("client1");
    if (!r || strcmp(h_type(r), "submit_reply") != 0)
        return -1;
    return (int64_t)h_num(r, "job_id");
}

/* Reads one job column as text (state, reason...). */
static char h_colbuf[1024];
static inline const char *h_job_col(sched_t *s, int64_t id, const char *col)
{
    char *sql = ft_asprintf("SELECT %s FROM jobs WHERE id = %lld", col, (long long)id);
    sqlite3_stmt *st;

    h_colbuf[0] = '\0';
    if (sqlite3_prepare_v2(s->db->conn, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            ft_strlcpy(h_colbuf, (const char *)sqlite3_column_text(st, 0), sizeof(h_colbuf));
        sqlite3_finalize(st);
    }
    free(sql);
    return h_colbuf;
}

/* One integer from a query. */
static inline int64_t h_query_int(sched_t *s, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;

    if (sqlite3_prepare_v2(s->db->conn, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    return v;
}

#endif
