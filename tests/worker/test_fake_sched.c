/*
 * tests/worker/test_fake_sched.c: a fake ftsched (a ZeroMQ ROUTER written
 * here) drives a real ftworker process through the protocol:
 *   hello and heartbeats; an exec job that prints and exits 3; its log read
 *   back; a command that does not exist (launch_failed, never started);
 *   progress lines on $FT_EVENT_FD (one garbage, one unterminated); stop of a
 *   rank that ignores SIGTERM (SIGKILL after grace) and of one that does not;
 *   a rank killed from outside ("killed"); a bad spec and a busy device;
 *   the scheduler going away and coming back on the same endpoint (the
 *   worker re-hellos with the rank that still runs and resends the
 *   rank_exited of the one that ended meanwhile); not_registered; and
 *   SIGTERM to ftworker (ranks stopped and reported, exit 0).
 * With --hung-exec: an exec held back 3 s (hung_exec_scenario) while the
 * worker goes on. With --lora: the real ft-train.
 * Every message from the worker is also checked with ft_proto_validate.
 * Usage: test_fake_sched PATH-TO-FTWORKER [--spawn MODE | --hung-exec | --lora FT_TRAIN]
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "check.h"
#include "ft/json.h"
#include "ft/proto.h"

#define BACKLOG_MAX 256

static void *zctx, *router;
static char endpoint[128];
static char tmpdir[] = "/tmp/ft-test-worker-XXXXXX";
static char worker_log[300];
static pid_t worker_pid = -1;
static cJSON *backlog[BACKLOG_MAX]; /* received, not yet consumed */
static int nbacklog;
static int invalid_msgs; /* worker messages the validator rejected */
static int relay_seq = 100;
static bool registered;         /* like ftsched: hello_reply sent on this router */
static int not_registered_sent; /* errors sent to a worker we did not know */
static int heartbeats_seen;     /* heartbeats from the worker that wait_for dropped */
static int rehellos;            /* hellos that came while waiting for something else */

static void send_msg(cJSON *m);
static void send_hello_reply(int hb, int liveness);
static const char *mtype(const cJSON *m);

static void router_open(void)
{
    int one = 1, linger = 0;
    router = zmq_socket(zctx, ZMQ_ROUTER);
    zmq_setsockopt(router, ZMQ_ROUTER_HANDOVER, &one, sizeof(one));
    zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof(linger));
    const char *ep = endpoint[0] ? endpoint : "tcp://127.0.0.1:*";
    int rc = -1;
    for (int i = 0; i < 50 && rc < 0; i++) { /* the port may linger a moment */
        rc = zmq_bind(router, ep);
        if (rc < 0)
            usleep(100000);
    }
    if (rc < 0) {
        printf("FAIL cannot bind '%s': %s\n", ep, zmq_strerror(errno));
        exit(1);
    }
    size_t len = sizeof(endpoint);
    zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &len);
    registered = false; /* a new scheduler knows no worker */
}

static void router_close(void)
{
    zmq_close(router);
    router = NULL;
}

/* Receives one message (routing id + payload) within timeout_ms; NULL on
 * timeout. Checks the routing id and validates the payload. */
static cJSON *recv_one(int timeout_ms)
{
    zmq_pollitem_t it = {router, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return NULL;
    char id[256], buf[1 << 20];
    int idn = zmq_recv(router, id, sizeof(id) - 1, 0);
    int n = zmq_recv(router, buf, sizeof(buf) - 1, 0);
    if (idn < 0 || n < 0)
        return NULL;
    id[idn] = '\0';
    ft_err_t err = {0};
    ft_msg_type_t type;
    cJSON *m = ft_proto_decode(buf, (size_t)n, &type, NULL, 0, &err);
    if (!m || strcmp(id, "w/t1") != 0) {
        invalid_msgs++;
        buf[n < 300 ? n : 300] = '\0';
        printf("# invalid message from '%s': %s: %s\n", id, err.msg, buf);
        cJSON_Delete(m);
        return NULL;
    }
    if (!registered && strcmp(mtype(m), "hello") != 0) {
        cJSON *e = ft_proto_new(FT_MSG_ERROR, NULL);
        cJSON_AddStringToObject(e, "code", "not_registered");
        cJSON_AddStringToObject(e, "message", "send hello first");
        send_msg(e);
        not_registered_sent++;
    }
    return m;
}

static const char *mtype(const cJSON *m)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "type");
    return cJSON_IsString(t) ? t->valuestring : "";
}

static int64_t geti(const cJSON *m, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -999;
}

static const char *gets(const cJSON *m, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Like a scheduler: a heartbeat to the worker every 150 ms while we wait. */
static void maybe_heartbeat(void)
{
    static int64_t last;
    if (!router || !registered || ft_mono_ms() - last < 150)
        return;
    last = ft_mono_ms();
    send_msg(ft_proto_new(FT_MSG_HEARTBEAT, NULL));
}

static void backlog_drop(const char *type)
{
    int j = 0;
    for (int i = 0; i < nbacklog; i++) {
        if (strcmp(mtype(backlog[i]), type) == 0)
            cJSON_Delete(backlog[i]);
        else
            backlog[j++] = backlog[i];
    }
    nbacklog = j;
}

/* Waits for a message of type (and job_id, when >= 0): first in the backlog,
 * then from the socket; heartbeats are dropped, others kept for later.
 * Caller deletes the result. */
static cJSON *wait_for(const char *type, int64_t job_id, int timeout_ms)
{
    for (int i = 0; i < nbacklog; i++) {
        cJSON *m = backlog[i];
        if (strcmp(mtype(m), type) == 0 && (job_id < 0 || geti(m, "job_id") == job_id)) {
            memmove(&backlog[i], &backlog[i + 1], (size_t)(nbacklog - i - 1) * sizeof(cJSON *));
            nbacklog--;
            return m;
        }
    }
    int64_t deadline = ft_mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - ft_mono_ms();
        if (left <= 0) {
            if (timeout_ms <= 0)
                return NULL;
            printf("# no '%s' for job %lld within %d ms; waiting:", type, (long long)job_id,
                   timeout_ms);
            for (int i = 0; i < nbacklog; i++) {
                char *txt = cJSON_PrintUnformatted(backlog[i]);
                printf(" %s", txt ? txt : "?");
                free(txt);
            }
            printf("\n");
            return NULL;
        }
        maybe_heartbeat();
        cJSON *m = recv_one(left < 100 ? (int)left : 100);
        if (!m)
            continue;
        if (strcmp(mtype(m), type) == 0 && (job_id < 0 || geti(m, "job_id") == job_id))
            return m;
        if (strcmp(mtype(m), "hello") == 0 && strcmp(type, "hello") != 0) {
            /* This process was starved past the worker's 1 s liveness window
             * (a loaded machine) and the worker re-registered: answer as
             * ftsched would, so its held events follow. */
            printf("# an unexpected hello while waiting for '%s': the worker re-registered "
                   "(this test was starved?); answered\n",
                   type);
            cJSON_Delete(m);
            send_hello_reply(200, 5);
            rehellos++;
            continue;
        }
        heartbeats_seen += strcmp(mtype(m), "heartbeat") == 0;
        if (strcmp(mtype(m), "heartbeat") == 0 || nbacklog == BACKLOG_MAX) {
            cJSON_Delete(m);
            continue;
        }
        backlog[nbacklog++] = m;
    }
}

static bool backlog_has(const char *type, int64_t job_id)
{
    for (int i = 0; i < nbacklog; i++)
        if (strcmp(mtype(backlog[i]), type) == 0 && geti(backlog[i], "job_id") == job_id)
            return true;
    return false;
}

static void send_msg(cJSON *m)
{
    char *s = cJSON_PrintUnformatted(m);
    zmq_send(router, "w/t1", 4, ZMQ_SNDMORE);
    zmq_send(router, s, strlen(s), 0);
    cJSON_free(s);
    cJSON_Delete(m);
}

static void send_hello_reply(int hb, int liveness)
{
    cJSON *m = ft_proto_new(FT_MSG_HELLO_REPLY, NULL);
    cJSON_AddNumberToObject(m, "heartbeat_ms", hb);
    cJSON_AddNumberToObject(m, "liveness", liveness);
    send_msg(m);
    registered = true;
}

/* start of a job with one rank, given its spec as JSON text. */
static void send_start_spec(int64_t job, int device, const char *kind, const char *spec)
{
    cJSON *m = ft_proto_new(FT_MSG_START, NULL);
    cJSON *sp = cJSON_Parse(spec);
    if (!sp)
        printf("# test bug: bad spec %s\n", spec);
    cJSON_AddNumberToObject(m, "job_id", (double)job);
    cJSON_AddNumberToObject(m, "attempt", 1);
    cJSON_AddStringToObject(m, "kind", kind);
    cJSON_AddItemToObject(m, "spec", sp);
    cJSON_AddStringToObject(m, "user", "alice");
    cJSON_AddStringToObject(m, "team", "default");
    cJSON_AddNumberToObject(m, "world_size", 1);
    cJSON *ranks = cJSON_AddArrayToObject(m, "ranks");
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "rank", 0);
    cJSON_AddNumberToObject(r, "local_rank", 0);
    cJSON_AddNumberToObject(r, "device", device);
    cJSON_AddItemToArray(ranks, r);
    send_msg(m);
}

/* start of an exec job with one rank; spec_extra is raw JSON members or "". */
static void send_start(int64_t job, int device, const char *command_json, const char *spec_extra)
{
    char spec[4096];
    snprintf(spec, sizeof(spec), "{\"kind\":\"exec\",\"command\":%s%s%s}", command_json,
             spec_extra[0] ? "," : "", spec_extra);
    send_start_spec(job, device, "exec", spec);
}

static void send_stop(int64_t job, int grace_ms)
{
    cJSON *m = ft_proto_new(FT_MSG_STOP, NULL);
    cJSON_AddNumberToObject(m, "job_id", (double)job);
    cJSON_AddNumberToObject(m, "attempt", 1);
    cJSON_AddStringToObject(m, "reason", "test");
    cJSON_AddNumberToObject(m, "grace_ms", grace_ms);
    send_msg(m);
}

static cJSON *log_read(int64_t job, int64_t offset, int64_t max)
{
    int relay = ++relay_seq;
    cJSON *m = ft_proto_new(FT_MSG_LOG_READ, NULL);
    cJSON_AddNumberToObject(m, "relay", relay);
    cJSON_AddNumberToObject(m, "job_id", (double)job);
    cJSON_AddNumberToObject(m, "rank", 0);
    cJSON_AddNumberToObject(m, "offset", (double)offset);
    cJSON_AddNumberToObject(m, "max_bytes", (double)max);
    send_msg(m);
    cJSON *r = wait_for("log_data", -1, 3000);
    if (r && geti(r, "relay") != relay) {
        printf("# log_data for relay %lld, expected %d\n", (long long)geti(r, "relay"), relay);
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

static bool is_true(const cJSON *m, const char *k)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, k));
}

/* A stand-in for ft-train: checks its command line and the spec file the
 * worker wrote, then reports on the event fd like the real trainer. */
static const char fake_trainer[] =
    "#!/bin/sh\n"
    "echo \"args: $*\"\n"
    "spec=; fd=\n"
    "while [ $# -gt 0 ]; do\n"
    "  case \"$1\" in --spec) spec=$2; shift;; --event-fd) fd=$2; shift;; esac; shift\n"
    "done\n"
    "grep -q '\"base_model\"' \"$spec\" || { echo \"no spec at '$spec'\"; exit 9; }\n"
    "[ \"$fd\" = 3 ] || { echo \"event fd '$fd'\"; exit 8; }\n"
    "echo '{\"event\":\"eval\",\"step\":3,\"total_steps\":6,\"eval_loss\":1.5}' >&3\n"
    "echo '{\"event\":\"checkpoint\",\"step\":3,\"path\":\"out/checkpoint-3\"}' >&3\n"
    "echo \"cwd: $(pwd)\"\n";

static char trainer_path[300];

/* Starts ftworker; with trainer NULL, the stand-in above is written and used. */
/* ftworker --spawn: fork or vfork, from the command line; NULL: none given (its
 * default, vfork) */
static const char *spawn_mode;

static void spawn_worker(const char *path, const char *trainer)
{
    char state[300];
    if (trainer) {
        ft_strlcpy(trainer_path, trainer, sizeof(trainer_path));
    } else {
        snprintf(trainer_path, sizeof(trainer_path), "%s/fake-ft-train", tmpdir);
        FILE *f = fopen(trainer_path, "w");
        if (f) {
            fputs(fake_trainer, f);
            fclose(f);
        }
        chmod(trainer_path, 0755);
    }
    snprintf(state, sizeof(state), "%s/state", tmpdir);
    snprintf(worker_log, sizeof(worker_log), "%s/worker.log", tmpdir);
    worker_pid = fork();
    if (worker_pid == 0) {
        int fd = open(worker_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        dup2(fd, 1);
        if (fd > 2)
            close(fd);
        setenv("FT_NVML_LIBRARY", "", 1);
        char *args[24] = {(char *)path, "--scheduler",     endpoint,    "--name",
                          "t1",         "--state-dir",     state,       "--emulate-gpus",
                          "2",          "--gpu-model",     "TestGPU",   "--gpu-mem-gb",
                          "16",         "--stop-grace-ms", "3000",      "--log-level",
                          "debug",      "--trainer",       trainer_path};
        if (spawn_mode) { /* else ftworker's default */
            args[19] = "--spawn";
            args[20] = (char *)spawn_mode;
        }
        execv(path, args);
        _exit(127);
    }
}

static bool file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return found;
}

static void dump_worker_log(void)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "tail -n 60 '%s' | sed 's/^/# worker: /'", worker_log);
    if (system(cmd) != 0)
        printf("# (no worker log)\n");
}

/* Waits up to timeout_ms for ftworker to exit; kills it after that. */
static bool worker_exit_ok(int timeout_ms)
{
    int status = -1;
    int64_t ts = ft_mono_ms();
    pid_t w = 0;
    while (ft_mono_ms() - ts < timeout_ms && (w = waitpid(worker_pid, &status, WNOHANG)) == 0)
        usleep(20000);
    if (w != worker_pid) {
        kill(worker_pid, SIGKILL);
        waitpid(worker_pid, &status, 0);
        return false;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Registers the freshly started worker: hello, then hello_reply. Returns the
 * number of running ranks in its hello, -1 when no hello came. */
static int register_worker(void)
{
    cJSON *m = wait_for("hello", -1, 5000);
    if (!m)
        return -1;
    int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "running"));
    cJSON_Delete(m);
    send_hello_reply(200, 5);
    return n;
}

/* A process that exists and is not a zombie. */
static bool alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static bool wait_dead(pid_t pid, int timeout_ms)
{
    int64_t ts = ft_mono_ms();
    while (alive(pid) && ft_mono_ms() - ts < timeout_ms)
        usleep(20000);
    return !alive(pid);
}

/* The real ft-train under the real ftworker: a tiny model, a few steps. */
static int lora_scenario(const char *ftworker, const char *trainer)
{
    char cmd[1200], dir[400];
    if (access(trainer, X_OK) != 0) {
        printf("# no ft-train at '%s': skipped\n", trainer);
        return 77;
    }
    snprintf(dir, sizeof(dir), "%s/lora", tmpdir);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && '%s' make-tiny-model '%s/model' >/dev/null 2>&1",
             dir, trainer, dir);
    if (system(cmd) != 0) {
        printf("# ft-train make-tiny-model failed: skipped\n");
        return 77;
    }
    char data[500];
    snprintf(data, sizeof(data), "%s/train.jsonl", dir);
    FILE *f = fopen(data, "w");
    for (int i = 0; f && i < 64; i++)
        fprintf(f, "{\"prompt\": \"%d plus one:\", \"completion\": \" %d\"}\n", i, i + 1);
    if (f)
        fclose(f);
    spawn_worker(ftworker, trainer);
    CHECK(register_worker() == 0, "ftworker registered");
    char spec[2048];
    snprintf(spec, sizeof(spec),
             "{\"kind\":\"lora\",\"train\":{\"base_model\":\"%s/model\","
             "\"datasets\":[{\"path\":\"%s\",\"type\":\"completion\"}],"
             "\"val_set_size\":0.25,\"output_dir\":\"%s/out\",\"sequence_len\":32,"
             "\"micro_batch_size\":4,\"max_steps\":6,\"eval_steps\":3,\"save_steps\":3,"
             "\"learning_rate\":0.003}}",
             dir, data, dir);
    send_start_spec(1, 0, "lora", spec);
    cJSON *m = wait_for("rank_started", 1, 5000);
    CHECK(m != NULL, "lora job: rank_started");
    cJSON_Delete(m);
    m = wait_for("rank_exited", 1, 120000);
    CHECK(m && geti(m, "exit_code") == 0 && strcmp(gets(m, "reason"), "exited") == 0,
          "lora job: ft-train exited 0 (exit code %lld)",
          m ? (long long)geti(m, "exit_code") : -1LL);
    cJSON_Delete(m);
    int steps = 0, with_loss = 0, with_eval = 0, done = 0, bad = 0;
    int64_t last_step = -1, last_loss_step = -1;
    for (cJSON *p; (p = wait_for("progress", 1, 0)) != NULL; cJSON_Delete(p)) {
        const cJSON *loss = cJSON_GetObjectItemCaseSensitive(p, "loss");
        const char *msg = gets(p, "message");
        if (geti(p, "total_steps") != 6 || geti(p, "step") < last_step)
            bad++;
        last_step = geti(p, "step");
        steps++;
        if (loss && loss->valuedouble > 0 && loss->valuedouble < 100) {
            with_loss++;
            last_loss_step = geti(p, "step");
        }
        with_eval += cJSON_GetObjectItemCaseSensitive(p, "eval_loss") != NULL;
        done += msg && strncmp(msg, "done", 4) == 0;
    }
    /* fast progress lines are merged, but the last step's always arrives */
    CHECK(with_loss >= 1 && last_loss_step == 6 && with_eval >= 1 && done == 1 && bad == 0,
          "lora job: %d progress messages, %d with a loss (last at step %lld), %d with "
          "eval_loss, %d done, %d out of order or with a wrong total",
          steps, with_loss, (long long)last_loss_step, with_eval, done, bad);
    char adapter[600];
    snprintf(adapter, sizeof(adapter), "%s/out/adapter_model.safetensors", dir);
    CHECK(access(adapter, R_OK) == 0, "lora job: adapter written to %s", adapter);
    kill(worker_pid, SIGTERM);
    CHECK(worker_exit_ok(5000), "ftworker exited with status 0");
    CHECK(invalid_msgs == 0, "every worker message passed the protocol validator");
    return check_exit();
}

/* An exec that hangs, with ftworker's default --spawn (vfork): the test hook
 * FT_TEST_EXEC_DELAY_MS=3000 (for tests only: ftworker's rank spawner thread
 * lets its children sleep that long before their exec, as if the program lay
 * on a dead network mount). Rank A's exec is held back 3 s; rank B, started
 * right after it, must start meanwhile (by fork, since the spawner is busy),
 * the worker must keep answering and sending heartbeats (the node is not
 * lost), and A must start once its delay has passed. */
static int hung_exec_scenario(const char *ftworker)
{
    char cmd[900], out[400];
    snprintf(out, sizeof(out), "%s/usage.txt", tmpdir);
    snprintf(cmd, sizeof(cmd), "FT_TEST_EXEC_DELAY_MS=3s '%s' --name t1 >'%s' 2>&1", ftworker,
             out);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2 &&
              file_has(out, "ftworker: FT_TEST_EXEC_DELAY_MS: '3s' is not an integer in [0, "
                            "600000]"),
          "FT_TEST_EXEC_DELAY_MS=3s: usage error naming the variable, exit 2");
    snprintf(cmd, sizeof(cmd), "'%s' --help >'%s' 2>&1", ftworker, out);
    st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && file_has(out, "(default vfork)"),
          "ftworker --help gives vfork as --spawn's default");
    setenv("FT_TEST_EXEC_DELAY_MS", "3000", 1);
    spawn_worker(ftworker, NULL);
    CHECK(register_worker() == 0, "ftworker registered (no --spawn: its default)");
    int64_t t0 = ft_mono_ms();
    int hb0 = heartbeats_seen;
    send_start(21, 0, "[\"sh\",\"-c\",\"echo A\"]", "");
    send_start(22, 1, "[\"sh\",\"-c\",\"echo B\"]", "");
    cJSON *m = wait_for("rank_started", 22, 2500);
    int64_t tb = ft_mono_ms() - t0;
    CHECK(m && !backlog_has("rank_started", 21),
          "job 22 (B): rank_started %lld ms after the starts, job 21 (A)'s exec still held back",
          (long long)tb);
    cJSON_Delete(m);
    m = wait_for("rank_exited", 22, 2500);
    CHECK(m && geti(m, "exit_code") == 0 && !backlog_has("rank_started", 21),
          "job 22 (B): rank_exited 0 before A started");
    cJSON_Delete(m);
    m = log_read(22, 0, 100);
    const char *data = m ? gets(m, "data") : NULL;
    CHECK(data && strcmp(data, "B\n") == 0 && !backlog_has("rank_started", 21),
          "the worker answers a log_read meanwhile: '%s'", data ? data : "(none)");
    cJSON_Delete(m);
    m = wait_for("rank_started", 21, 6000);
    int64_t ta = ft_mono_ms() - t0;
    CHECK(m && ta >= 2900,
          "job 21 (A): rank_started once its delay had passed, %lld ms after the start",
          (long long)ta);
    cJSON_Delete(m);
    int hbs = heartbeats_seen - hb0;
    CHECK(hbs >= (int)(ta / 200) / 2 && rehellos == 0,
          "heartbeats kept coming while A's exec was held back: %d in %lld ms (heartbeat_ms "
          "200), no re-registration (%d)",
          hbs, (long long)ta, rehellos);
    m = wait_for("rank_exited", 21, 3000);
    CHECK(m && geti(m, "exit_code") == 0, "job 21 (A): rank_exited 0");
    cJSON_Delete(m);
    m = log_read(21, 0, 100);
    data = m ? gets(m, "data") : NULL;
    CHECK(data && strcmp(data, "A\n") == 0, "job 21 (A): its output: '%s'", data ? data : "(none)");
    cJSON_Delete(m);
    CHECK(file_has(worker_log, "ranks start by fork until it returns"),
          "the worker log warns that ranks start by fork while the spawner is busy");
    kill(worker_pid, SIGTERM);
    CHECK(worker_exit_ok(5000), "ftworker exited with status 0");
    CHECK(file_has(worker_log, "ranks started by the spawner: 1, by fork while it was busy: 1"),
          "its last words count one rank through the spawner, one by fork");
    CHECK(invalid_msgs == 0, "every worker message passed the protocol validator");
    return check_exit();
}

int main(int argc, char **argv)
{
    bool lora = argc == 4 && strcmp(argv[2], "--lora") == 0;
    bool spawn = argc == 4 && strcmp(argv[2], "--spawn") == 0;
    bool hung = argc == 3 && strcmp(argv[2], "--hung-exec") == 0;
    if (argc != 2 && !lora && !spawn && !hung) {
        fprintf(stderr, "usage: test_fake_sched FTWORKER [--lora FT_TRAIN | --spawn MODE | "
                        "--hung-exec]\n");
        return 2;
    }
    if (spawn)
        spawn_mode = argv[3];
    printf("# ftworker --spawn %s\n", spawn_mode ? spawn_mode : "(not given: the default)");
    ft_log_init("test_fake_sched", FT_LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    zctx = zmq_ctx_new();
    router_open();
    printf("# fake scheduler on %s, state in %s\n", endpoint, tmpdir);
    if (lora || hung) {
        int rc = lora ? lora_scenario(argv[1], argv[3]) : hung_exec_scenario(argv[1]);
        if (rc == 1)
            dump_worker_log();
        router_close();
        zmq_ctx_term(zctx);
        if (rc != 1) {
            char cmd[400];
            snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
            if (system(cmd) != 0)
                printf("# could not remove %s\n", tmpdir);
        }
        return rc;
    }
    spawn_worker(argv[1], NULL);

    /* ---- hello, heartbeats ---- */
    cJSON *m = wait_for("hello", -1, 5000);
    const cJSON *devs = m ? cJSON_GetObjectItemCaseSensitive(m, "devices") : NULL;
    const cJSON *d1 = devs ? cJSON_GetArrayItem(devs, 1) : NULL;
    CHECK(m && cJSON_GetArraySize(devs) == 2 && d1 && strcmp(gets(d1, "kind"), "emulated") == 0 &&
              strcmp(gets(d1, "uuid"), "emu-t1-1") == 0 &&
              strcmp(gets(d1, "model"), "TestGPU") == 0 && geti(d1, "memory_mb") == 16384 &&
              cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "running")) == 0 &&
              strcmp(gets(m, "name"), "t1") == 0 && geti(m, "pid") == worker_pid,
          "hello from routing id 'w/t1' with 2 emulated devices, no running ranks");
    cJSON_Delete(m);
    if (!m) {
        dump_worker_log();
        return 1;
    }
    send_hello_reply(200, 5);
    int64_t t0 = ft_mono_ms();
    zmq_pollitem_t it = {router, 0, ZMQ_POLLIN, 0};
    cJSON *hb = NULL;
    while (!hb && ft_mono_ms() - t0 < 2000 && zmq_poll(&it, 1, 2000) > 0) {
        hb = recv_one(0);
        if (hb && strcmp(mtype(hb), "heartbeat") != 0) {
            backlog[nbacklog++] = hb;
            hb = NULL;
        }
    }
    int64_t hb_ms = ft_mono_ms() - t0;
    CHECK(hb && hb_ms >= 150 && hb_ms < 2000,
          "heartbeat after %lld ms of silence (heartbeat_ms 200)", (long long)hb_ms);
    cJSON_Delete(hb);

    /* ---- exec job: output, environment, exit code ---- */
    send_start(1, 1,
               "[\"sh\",\"-c\",\"echo hi; echo FT_RANK=$FT_RANK CVD=$CUDA_VISIBLE_DEVICES "
               "WS=$FT_WORLD_SIZE JOB=$FT_JOB_ID X=$X; exit 3\"]",
               "\"env\":{\"X\":\"from-spec\"}");
    m = wait_for("rank_started", 1, 3000);
    CHECK(m && geti(m, "pid") > 0 && geti(m, "attempt") == 1 && geti(m, "rank") == 0,
          "job 1: rank_started with pid %lld", m ? (long long)geti(m, "pid") : -1LL);
    cJSON_Delete(m);
    m = wait_for("rank_exited", 1, 3000);
    CHECK(m && geti(m, "exit_code") == 3 && geti(m, "signal") == 0 &&
              strcmp(gets(m, "reason"), "exited") == 0,
          "job 1: rank_exited exit_code 3, signal 0, reason 'exited'");
    cJSON_Delete(m);

    m = log_read(1, 0, 65536);
    const char *data = m ? gets(m, "data") : NULL;
    CHECK(data && strcmp(data, "hi\nFT_RANK=0 CVD=1 WS=1 JOB=1 X=from-spec\n") == 0 &&
              geti(m, "offset") == (int64_t)strlen(data) && is_true(m, "eof"),
          "job 1: log_data has the output, env (CUDA_VISIBLE_DEVICES=1 for emulated GPU 1, "
          "spec env), next offset, eof: '%s'",
          data ? data : "(none)");
    cJSON_Delete(m);
    m = log_read(1, 3, 6);
    data = m ? gets(m, "data") : NULL;
    CHECK(data && strcmp(data, "FT_RAN") == 0 && geti(m, "offset") == 9 && !is_true(m, "eof"),
          "job 1: log_read offset 3 max 6 gives 'FT_RAN', offset 9, not eof");
    cJSON_Delete(m);
    /* a log an older worker left in jobs/JOB/rank-R.log is still served */
    char old_log[400];
    snprintf(old_log, sizeof(old_log), "%s/state/jobs/998", tmpdir);
    mkdir(old_log, 0755);
    strcat(old_log, "/rank-0.log");
    FILE *of = fopen(old_log, "w");
    if (of) {
        fputs("old layout\n", of);
        fclose(of);
    }
    m = log_read(998, 0, 100);
    data = m ? gets(m, "data") : NULL;
    CHECK(of && data && strcmp(data, "old layout\n") == 0,
          "log_read finds a log in the old layout jobs/998/rank-0.log: '%s'",
          data ? data : "(none)");
    cJSON_Delete(m);
    m = log_read(999, 0, 100);
    CHECK(m && gets(m, "error") && !gets(m, "data") && strstr(gets(m, "error"), "no log"),
          "log_read of an unknown job: log_data with error '%s'",
          m && gets(m, "error") ? gets(m, "error") : "(none)");
    cJSON_Delete(m);

    /* ---- launch failure ---- */
    send_start(2, 0, "[\"/nonexistent/ft-no-such-cmd\"]", "");
    m = wait_for("rank_exited", 2, 3000);
    const char *reason = m ? gets(m, "reason") : NULL;
    CHECK(reason && strncmp(reason, "launch_failed: ", 15) == 0 && strstr(reason, "No such file") &&
              !backlog_has("rank_started", 2),
          "job 2: nonexistent command -> '%s', never rank_started", reason ? reason : "(none)");
    cJSON_Delete(m);
    m = log_read(2, 0, 1000);
    CHECK(m && gets(m, "data") && strstr(gets(m, "data"), "launch failed"),
          "job 2: the launch failure is in the rank log too");
    cJSON_Delete(m);

    /* ---- progress on FT_EVENT_FD ---- */
    send_start(3, 0,
               "[\"sh\",\"-c\",\"printf '%s\\\\n' '{\\\"event\\\":\\\"progress\\\",\\\"step\\\":1,"
               "\\\"total_steps\\\":4,\\\"loss\\\":2.5}' >&$FT_EVENT_FD; "
               "echo garbage >&$FT_EVENT_FD; "
               "printf '%s' '{\\\"event\\\":\\\"progress\\\",\\\"step\\\":2,"
               "\\\"total_steps\\\":4,\\\"loss\\\":2.0,\\\"message\\\":\\\"half\\\"}' "
               ">&$FT_EVENT_FD\"]",
               "");
    cJSON *p1 = wait_for("progress", 3, 3000);
    cJSON *p2 = wait_for("progress", 3, 3000);
    m = wait_for("rank_exited", 3, 3000);
    CHECK(p1 && geti(p1, "step") == 1 && geti(p1, "total_steps") == 4 &&
              cJSON_GetObjectItemCaseSensitive(p1, "loss")->valuedouble == 2.5 &&
              geti(p1, "attempt") == 1 && geti(p1, "rank") == 0,
          "job 3: progress step 1/4 loss 2.5");
    CHECK(p2 && geti(p2, "step") == 2 && gets(p2, "message") &&
              strcmp(gets(p2, "message"), "half") == 0,
          "job 3: the garbage line was dropped; the unterminated last line still counts");
    CHECK(m && geti(m, "exit_code") == 0, "job 3: exited 0 after its progress");
    cJSON_Delete(p1);
    cJSON_Delete(p2);
    cJSON_Delete(m);

    /* ---- a lora job runs the trainer with the spec file and fd 3 ---- */
    send_start_spec(11, 1, "lora",
                    "{\"kind\":\"lora\",\"train\":{\"base_model\":\"models/m\","
                    "\"datasets\":[{\"path\":\"d.jsonl\"}],\"output_dir\":\"out\"}}");
    p1 = wait_for("progress", 11, 3000);
    p2 = wait_for("progress", 11, 3000);
    m = wait_for("rank_exited", 11, 3000);
    CHECK(p1 && geti(p1, "step") == 3 && geti(p1, "total_steps") == 6 &&
              cJSON_GetObjectItemCaseSensitive(p1, "eval_loss") &&
              cJSON_GetObjectItemCaseSensitive(p1, "eval_loss")->valuedouble == 1.5,
          "job 11 (lora): eval event forwarded as progress with eval_loss 1.5");
    CHECK(p2 && gets(p2, "message") &&
              strcmp(gets(p2, "message"), "checkpoint at step 3: out/checkpoint-3") == 0 &&
              geti(p2, "total_steps") == 6,
          "job 11 (lora): checkpoint event forwarded as a progress message, total from before");
    CHECK(m && geti(m, "exit_code") == 0, "job 11 (lora): trainer exited 0 (%lld)",
          m ? (long long)geti(m, "exit_code") : -1LL);
    cJSON_Delete(p1);
    cJSON_Delete(p2);
    cJSON_Delete(m);
    m = log_read(11, 0, 4096);
    data = m ? gets(m, "data") : NULL;
    char want[600];
    snprintf(want, sizeof(want),
             "args: run --spec %s/state/jobs/11/rank-0/spec.json --rank 0 --world-size 1 "
             "--event-fd 3\ncwd: %s/state\n",
             tmpdir, tmpdir);
    CHECK(data && strcmp(data, want) == 0, "job 11 (lora): trainer command line and cwd: %s",
          data ? data : "(none)");
    cJSON_Delete(m);

    /* ---- an over-long event line is skipped up to its newline, the next one counts ---- */
    send_start(15, 0,
               "[\"sh\",\"-c\",\"head -c 10000 /dev/zero | tr '\\\\000' x >&3; echo >&3; "
               "echo '{\\\"event\\\":\\\"progress\\\",\\\"step\\\":7,"
               "\\\"total_steps\\\":8}' >&3\"]",
               "");
    p1 = wait_for("progress", 15, 3000);
    m = wait_for("rank_exited", 15, 3000);
    CHECK(p1 && geti(p1, "step") == 7 && m && geti(m, "exit_code") == 0 &&
              !backlog_has("progress", 15) &&
              file_has(worker_log, "dropping an event line longer than 4096 bytes"),
          "job 15: a 10000-byte line was dropped, the line after it forwarded (step 7)");
    cJSON_Delete(p1);
    cJSON_Delete(m);

    /* ---- a flood of progress lines is merged; the last one always arrives ---- */
    send_start(16, 0,
               "[\"sh\",\"-c\",\"i=1; while [ $i -le 300 ]; do "
               "echo \\\"{\\\\\\\"event\\\\\\\":\\\\\\\"progress\\\\\\\",\\\\\\\"step\\\\\\\":$i,"
               "\\\\\\\"total_steps\\\\\\\":300}\\\" >&3; i=$((i+1)); done\"]",
               "");
    m = wait_for("rank_exited", 16, 5000);
    int nprog = 0;
    int64_t prev = -1, last16 = -1;
    bool order = true;
    for (cJSON *p; (p = wait_for("progress", 16, 0)) != NULL; cJSON_Delete(p)) {
        nprog++;
        order = order && geti(p, "step") > prev;
        prev = last16 = geti(p, "step");
    }
    CHECK(m && geti(m, "exit_code") == 0 && nprog >= 1 && nprog < 300 && last16 == 300 && order,
          "job 16: 300 progress lines in a burst became %d messages, in order, the last at "
          "step %lld",
          nprog, (long long)last16);
    cJSON_Delete(m);

    /* ---- stop: SIGTERM ignored -> SIGKILL after grace; SIGTERM obeyed ---- */
    send_start(4, 0, "[\"sh\",\"-c\",\"trap '' TERM; echo ready; sleep 30; echo survived\"]", "");
    m = wait_for("rank_started", 4, 3000);
    cJSON_Delete(m);
    usleep(300000); /* let sh install its trap */
    int64_t ts = ft_mono_ms();
    send_stop(4, 400);
    m = wait_for("rank_exited", 4, 5000);
    int64_t took = ft_mono_ms() - ts;
    CHECK(m && strcmp(gets(m, "reason"), "stopped") == 0 && geti(m, "signal") == 9 &&
              geti(m, "exit_code") == -1 && took >= 380 && took < 3000,
          "job 4: TERM ignored, SIGKILL after grace 400 ms -> stopped, signal 9 (%lld ms)",
          (long long)took);
    cJSON_Delete(m);

    send_start(5, 0, "[\"sleep\",\"30\"]", "");
    m = wait_for("rank_started", 5, 3000);
    cJSON_Delete(m);
    ts = ft_mono_ms();
    send_stop(5, 5000);
    m = wait_for("rank_exited", 5, 5000);
    took = ft_mono_ms() - ts;
    CHECK(m && strcmp(gets(m, "reason"), "stopped") == 0 && geti(m, "signal") == 15 && took < 3000,
          "job 5: SIGTERM obeyed at once -> stopped, signal 15 (%lld ms)", (long long)took);
    cJSON_Delete(m);

    /* ---- killed from elsewhere ---- */
    send_start(6, 0, "[\"sleep\",\"30\"]", "");
    m = wait_for("rank_started", 6, 3000);
    pid_t pid6 = m ? (pid_t)geti(m, "pid") : -1;
    cJSON_Delete(m);
    if (pid6 > 0)
        kill(pid6, SIGKILL);
    m = wait_for("rank_exited", 6, 3000);
    CHECK(m && strcmp(gets(m, "reason"), "killed") == 0 && geti(m, "signal") == 9,
          "job 6: SIGKILL from outside -> reason 'killed', signal 9");
    cJSON_Delete(m);

    /* ---- bad spec, busy device ---- */
    send_start(7, 0, "[\"true\"]", "\"bogus_key\":1");
    m = wait_for("rank_exited", 7, 3000);
    reason = m ? gets(m, "reason") : NULL;
    CHECK(reason && strstr(reason, "launch_failed: bad spec") && strstr(reason, "bogus_key"),
          "job 7: unknown spec key -> '%s'", reason ? reason : "(none)");
    cJSON_Delete(m);

    send_start(8, 0, "[\"sleep\",\"30\"]", "");
    m = wait_for("rank_started", 8, 3000);
    pid_t pid8 = m ? (pid_t)geti(m, "pid") : -1;
    cJSON_Delete(m);
    send_start(9, 0, "[\"true\"]", "");
    m = wait_for("rank_exited", 9, 3000);
    reason = m ? gets(m, "reason") : NULL;
    CHECK(reason && strstr(reason, "device 0 is busy with job 8"), "job 9: '%s'",
          reason ? reason : "(none)");
    cJSON_Delete(m);
    m = log_read(8, 0, 100);
    CHECK(m && !is_true(m, "eof"), "job 8: log of a running rank is not eof");
    cJSON_Delete(m);

    /* ---- the scheduler goes away and comes back ---- */
    send_start(10, 1, "[\"sleep\",\"30\"]", "");
    m = wait_for("rank_started", 10, 3000);
    pid_t pid10 = m ? (pid_t)geti(m, "pid") : -1;
    cJSON_Delete(m);
    router_close();
    usleep(200000);
    if (pid10 > 0)
        kill(pid10, SIGKILL); /* ends while the scheduler is away */
    /* longer than heartbeat_ms * liveness = 1 s: the worker drops its socket
     * (and the rank_exited queued on it) and reconnects after 1 s */
    usleep(1400000);
    backlog_drop("hello");
    router_open();
    ts = ft_mono_ms();
    m = wait_for("hello", -1, 12000);
    const cJSON *running = m ? cJSON_GetObjectItemCaseSensitive(m, "running") : NULL;
    const cJSON *r0 = running ? cJSON_GetArrayItem(running, 0) : NULL;
    CHECK(m && cJSON_GetArraySize(running) == 1 && geti(r0, "job_id") == 8 &&
              geti(r0, "pid") == pid8 && geti(r0, "attempt") == 1 && geti(r0, "rank") == 0,
          "re-hello after the outage (%lld ms, %d not_registered sent) lists job 8 (still "
          "running), not job 10",
          (long long)(ft_mono_ms() - ts), not_registered_sent);
    cJSON_Delete(m);
    CHECK(file_has(worker_log, "no word from the scheduler") &&
              file_has(worker_log, "reconnecting in 1000 ms"),
          "the worker noticed the silence and reconnected with a new socket after 1 s");
    send_hello_reply(200, 5);
    m = wait_for("rank_exited", 10, 3000);
    CHECK(m && strcmp(gets(m, "reason"), "killed") == 0,
          "job 10: rank_exited that happened during the outage is delivered after hello_reply");
    cJSON_Delete(m);

    /* ---- not_registered makes the worker say hello again ---- */
    cJSON *e = ft_proto_new(FT_MSG_ERROR, NULL);
    cJSON_AddStringToObject(e, "code", "not_registered");
    cJSON_AddStringToObject(e, "message", "who are you");
    send_msg(e);
    m = wait_for("hello", -1, 3000);
    CHECK(m != NULL, "error not_registered -> hello again");
    cJSON_Delete(m);
    send_hello_reply(200, 5);

    /* ---- a malformed message gets an error back, the worker lives on ---- */
    zmq_send(router, "w/t1", 4, ZMQ_SNDMORE);
    const char *bad_stop = "{\"v\":1,\"type\":\"stop\"}";
    zmq_send(router, bad_stop, strlen(bad_stop), 0);
    m = wait_for("error", -1, 3000);
    CHECK(m && strcmp(gets(m, "code"), "missing_field") == 0, "stop without fields -> error '%s'",
          m ? gets(m, "code") : "(none)");
    cJSON_Delete(m);

    /* ---- more bad frames: each gets the right error code, nothing else happens ---- */
    static const struct {
        const char *frame;
        const char *code;
    } bad[] = {
        {"not json", "bad_json"},
        {"{\"v\":2,\"type\":\"heartbeat\"}", "bad_version"},
        {"{\"v\":1,\"type\":\"ping\"}", "unknown_type"},
        {"{\"v\":1,\"type\":\"log_read\",\"relay\":1,\"job_id\":1,\"rank\":0,"
         "\"offset\":0,\"max_bytes\":999999999}",
         "bad_field"},
        {"{\"v\":1,\"type\":\"stop\",\"job_id\":1,\"attempt\":1,\"reason\":\"x\","
         "\"grace_ms\":1,\"extra\":1}",
         "bad_field"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        zmq_send(router, "w/t1", 4, ZMQ_SNDMORE);
        zmq_send(router, bad[i].frame, strlen(bad[i].frame), 0);
        m = wait_for("error", -1, 3000);
        CHECK(m && strcmp(gets(m, "code"), bad[i].code) == 0, "%s -> error '%s'", bad[i].frame,
              m ? gets(m, "code") : "(none)");
        cJSON_Delete(m);
    }
    send_start(12, 7, "[\"true\"]", "");
    m = wait_for("rank_exited", 12, 3000);
    reason = m ? gets(m, "reason") : NULL;
    CHECK(reason && strstr(reason, "launch_failed: ") && strstr(reason, "device"),
          "start on device 7 of 2 -> '%s'", reason ? reason : "(none)");
    cJSON_Delete(m);
    m = log_read(8, 0, 100);
    CHECK(m && gets(m, "data"), "the worker still answers after the bad frames");
    cJSON_Delete(m);

    /* ---- a rank inherits no descriptor but 0, 1, 2 and the event pipe ---- */
    send_start(13, 1, "[\"ls\",\"/proc/self/fd\"]", "");
    m = wait_for("rank_exited", 13, 3000);
    cJSON_Delete(m);
    m = log_read(13, 0, 1000);
    data = m ? gets(m, "data") : NULL;
    CHECK(data && strcmp(data, "0\n1\n2\n3\n4\n") == 0,
          "job 13: the rank's open fds are 0 1 2 3 (+ 4, ls's own directory): '%s'",
          data ? data : "(none)");
    cJSON_Delete(m);

    /* ---- SIGTERM to ftworker: ranks stopped and reported, exit 0 ---- */
    kill(worker_pid, SIGTERM);
    m = wait_for("rank_exited", 8, 5000);
    CHECK(m && strcmp(gets(m, "reason"), "stopped") == 0 && geti(m, "signal") == 15,
          "SIGTERM to ftworker: job 8 reported stopped by signal 15");
    cJSON_Delete(m);
    CHECK(worker_exit_ok(5000), "ftworker exited with status 0");
    CHECK(pid8 <= 0 || !alive(pid8), "job 8's process is gone");

    /* ---- ftworker killed with SIGKILL: its ranks die with it, and the next
     *      ftworker on the same state dir kills what they left behind ---- */
    spawn_worker(argv[1], NULL);
    CHECK(register_worker() == 0, "a second ftworker on the same state dir registered");
    char bgfile[300], cmd14[600];
    snprintf(bgfile, sizeof(bgfile), "%s/bg.pid", tmpdir);
    snprintf(cmd14, sizeof(cmd14), "[\"sh\",\"-c\",\"sleep 30 & echo $! > %s; wait\"]", bgfile);
    send_start(14, 0, cmd14, "");
    m = wait_for("rank_started", 14, 3000);
    pid_t pid14 = m ? (pid_t)geti(m, "pid") : -1;
    cJSON_Delete(m);
    int bg = 0;
    for (int i = 0; i < 100 && bg <= 0; i++) {
        FILE *f = fopen(bgfile, "r");
        if (!f || fscanf(f, "%d", &bg) != 1)
            bg = 0;
        if (f)
            fclose(f);
        usleep(20000);
    }
    char slotfile[400], slot[128] = "";
    snprintf(slotfile, sizeof(slotfile), "%s/state/ranks/device-0.pid", tmpdir);
    FILE *sf = fopen(slotfile, "r");
    int slot_pid = 0;
    long long slot_job = 0;
    if (!sf || !fgets(slot, sizeof(slot), sf) ||
        sscanf(slot, "%d %*u %lld", &slot_pid, &slot_job) != 2)
        slot_pid = 0;
    if (sf)
        fclose(sf);
    CHECK(slot_pid > 0 && slot_pid == pid14 && slot_job == 14,
          "device 0's pid slot names job 14's rank (pid %d): '%.60s'", (int)pid14, slot);
    kill(worker_pid, SIGKILL);
    waitpid(worker_pid, NULL, 0);
    CHECK(pid14 > 0 && bg > 0 && wait_dead(pid14, 2000) && alive(bg),
          "SIGKILL to ftworker: the rank's process %d died with it, its background child %d "
          "lived on",
          (int)pid14, bg);
    spawn_worker(argv[1], NULL);
    CHECK(register_worker() == 0, "a third ftworker registered with no running ranks");
    struct stat sst;
    CHECK(bg > 0 && wait_dead(bg, 2000) && stat(slotfile, &sst) == 0 && sst.st_size == 0,
          "the new ftworker killed the leftover %d and emptied the slot", bg);
    kill(worker_pid, SIGTERM);
    CHECK(worker_exit_ok(5000), "the third ftworker exited with status 0");
    CHECK(invalid_msgs == 0, "every worker message passed the protocol validator (%d did not)",
          invalid_msgs);

    if (check_failures)
        dump_worker_log();
    for (int i = 0; i < nbacklog; i++)
        cJSON_Delete(backlog[i]);
    router_close();
    zmq_ctx_term(zctx);
    if (!check_failures) {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            printf("# could not remove %s\n", tmpdir);
    }
    return check_exit();
}
