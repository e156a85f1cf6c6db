/*
 * worker/rank.c: launching, signalling and accounting for rank processes.
 *
 * Everything the child needs (argv, envp, fds) is prepared before fork, so the
 * child only calls async-signal-safe functions (libzmq runs threads in this
 * process). A rank starts with fds 0, 1, 2 and 3 (the event socket) only. The child reports a failed
 * chdir or exec through a close-on-exec pipe: EOF on it means the exec succeeded. Costs:
 * O(environment size) to build envp, one fork per rank.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rank.h"
#include "ft/json.h"

extern char **environ;

/* What the child reports when it cannot exec. */
typedef struct {
    int stage; /* child_stage_t */
    int err;   /* errno */
} child_report_t;

typedef enum { STAGE_CHDIR = 0, STAGE_FDS, STAGE_EXEC } child_stage_t;

/* ---- environment: a growable list of "K=V" where later sets replace ---- */
typedef struct {
    char **v; /* NULL-terminated; entries malloc'd */
    int n;    /* entries used */
    int cap;  /* entries allocated, including the NULL */
} envlist_t;

static int env_set(envlist_t *e, const char *kv)
{
    const char *eq = strchr(kv, '=');
    size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
    char *copy = strdup(kv);
    if (!copy)
        return -1;
    for (int i = 0; i < e->n; i++) {
        if (strncmp(e->v[i], kv, klen) == 0 && e->v[i][klen] == '=') {
            free(e->v[i]);
            e->v[i] = copy;
            return 0;
        }
    }
    if (e->n + 1 >= e->cap) {
        int cap = e->cap ? e->cap * 2 : 64;
        char **v = realloc(e->v, (size_t)cap * sizeof(*v));
        if (!v) {
            free(copy);
            return -1;
        }
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = copy;
    e->v[e->n] = NULL;
    return 0;
}

static int env_setf(envlist_t *e, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int env_setf(envlist_t *e, const char *key, const char *fmt, ...)
{
    char val[FT_PATH_MAX], kv[FT_PATH_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    snprintf(kv, sizeof(kv), "%s=%s", key, val);
    return env_set(e, kv);
}

static void env_free(envlist_t *e)
{
    for (int i = 0; i < e->n; i++)
        free(e->v[i]);
    free(e->v);
    memset(e, 0, sizeof(*e));
}

int rank_log_path(const char *state_dir, int64_t job_id, int rank, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/jobs/%lld/rank-%d.log", state_dir, (long long)job_id, rank);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

/* The process environment, then the spec's env, then ours (ours win). */
static int build_env(const rank_req_t *q, int event_fd, envlist_t *e)
{
    for (char **p = environ; p && *p; p++) {
        /* The node's CURVE key is the worker's, not the job's to know of. */
        if (strncmp(*p, "FT_KEY=", 7) == 0 || strncmp(*p, "FT_SERVER_KEY=", 14) == 0)
            continue;
        if (env_set(e, *p) < 0)
            return -1;
    }
    for (int i = 0; i < q->spec->envc; i++)
        if (env_set(e, q->spec->env[i]) < 0)
            return -1;
    const char *cvd = "";
    char idx[16];
    if (q->dev->kind == WDEV_GPU) {
        cvd = q->dev->uuid;
    } else if (q->dev->kind == WDEV_EMULATED) {
        snprintf(idx, sizeof(idx), "%d", q->dev->kind_index);
        cvd = idx;
    }
    if (env_setf(e, "FT_JOB_ID", "%lld", (long long)q->job_id) < 0 ||
        env_setf(e, "FT_ATTEMPT", "%lld", (long long)q->attempt) < 0 ||
        env_setf(e, "FT_RANK", "%d", q->rank) < 0 ||
        env_setf(e, "FT_WORLD_SIZE", "%d", q->world_size) < 0 ||
        env_setf(e, "FT_LOCAL_RANK", "%d", q->local_rank) < 0 ||
        env_setf(e, "FT_DEVICE_KIND", "%s", wdev_kind_name(q->dev->kind)) < 0 ||
        env_setf(e, "FT_EVENT_FD", "%d", event_fd) < 0 ||
        env_setf(e, "CUDA_VISIBLE_DEVICES", "%s", cvd) < 0)
        return -1;
    if (q->array_job_id > 0 &&
        (env_setf(e, "FT_ARRAY_JOB_ID", "%lld", (long long)q->array_job_id) < 0 ||
         env_setf(e, "FT_ARRAY_INDEX", "%lld", (long long)q->array_index) < 0))
        return -1;
    return 0;
}

/* Appends a line saying why the rank did not start, so `ftctl logs` shows it. */
static void log_failure(int log_fd, const char *why)
{
    if (log_fd < 0)
        return;
    char line[700];
    int n = snprintf(line, sizeof(line), "ft: launch failed: %s\n", why);
    if (n > 0 && write(log_fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1) < 0)
        ft_debug("cannot append to a rank log: %s", strerror(errno));
}

/* Never returns. Only async-signal-safe calls. */
static void child_exec(pid_t parent, int report_fd, int log_fd, int null_fd, int event_w,
                       const char *cwd, char *const *argv, char *const *envp)
{
    child_report_t rep = {STAGE_FDS, 0};
    /* keep the report pipe clear of fd RANK_EVENT_FD, which the event pipe takes */
    int high = fcntl(report_fd, F_DUPFD_CLOEXEC, 10);
    if (high >= 0)
        report_fd = high;
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);
    setpgid(0, 0);
    /* a rank must not outlive its worker: the node would be rescheduled under it */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    if (chdir(cwd) < 0) {
        rep.stage = STAGE_CHDIR;
        goto fail;
    }
    if (dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
        goto fail;
    if (event_w == RANK_EVENT_FD ? fcntl(event_w, F_SETFD, 0) < 0
                                 : dup2(event_w, RANK_EVENT_FD) < 0)
        goto fail;
    /* descriptors ftworker inherited from whoever started it end here too */
    if (close_range(RANK_EVENT_FD + 1, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = RANK_EVENT_FD + 1; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
            fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    }
    execvpe(argv[0], argv, envp);
    rep.stage = STAGE_EXEC;
fail:
    rep.err = errno;
    if (write(report_fd, &rep, sizeof(rep)) < 0)
        _exit(126);
    _exit(127);
}

/* Process group and start time (clock ticks since boot) of pid from
 * /proc/PID/stat. The command name may hold spaces and parentheses, so the
 * fields are counted from the last ')'. */
static int proc_stat(pid_t pid, pid_t *pgrp, unsigned long long *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    int pg = 0;
    unsigned long long st = 0;
    /* after ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt
     * cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime */
    if (sscanf(p + 1,
               " %*c %*d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d "
               "%*d %llu",
               &pg, &st) != 2)
        return -1;
    *pgrp = pg;
    *start = st;
    return 0;
}

/* jobs/J/rank-R.pid: "PID STARTTIME", so that a restarted worker can find
 * ranks of its previous life (see rank_kill_leftovers). */
static void write_pid_file(rank_t *r, const char *state_dir)
{
    pid_t pg;
    unsigned long long start = 0;
    int n = snprintf(r->pid_path, sizeof(r->pid_path), "%s/jobs/%lld/rank-%d.pid", state_dir,
                     (long long)r->job_id, r->rank);
    if (n < 0 || (size_t)n >= sizeof(r->pid_path) || proc_stat(r->pid, &pg, &start) < 0) {
        r->pid_path[0] = '\0';
        return;
    }
    char line[64];
    n = snprintf(line, sizeof(line), "%d %llu\n", (int)r->pid, start);
    int fd = open(r->pid_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0 || write(fd, line, (size_t)n) != n) {
        ft_warn("cannot write '%s': %s", r->pid_path, strerror(errno));
        r->pid_path[0] = '\0';
    }
    if (fd >= 0)
        close(fd);
}

/* Kills every process of group pgid that started no earlier than its leader
 * did (start): those are the rank's, even when the leader itself is gone. */
/* True when pid's environment holds exactly "FT_JOB_ID=<job>": what every
 * rank process inherits from the worker. Guards against a recycled pid. */
static bool has_job_env(pid_t pid, const char *job)
{
    char path[64], want[96];
    static char env[64 * 1024]; /* one process's environment, cut at 64 KiB */
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    int wlen = snprintf(want, sizeof(want), "FT_JOB_ID=%s", job);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || wlen <= 0 || (size_t)wlen >= sizeof(want)) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    ssize_t n = read(fd, env, sizeof(env) - 1);
    close(fd);
    for (ssize_t i = 0; n > 0 && i < n;) {
        size_t len = strnlen(env + i, (size_t)(n - i));
        if (len == (size_t)wlen && memcmp(env + i, want, len) == 0)
            return true;
        i += (ssize_t)len + 1;
    }
    return false;
}

static int kill_group_since(pid_t pgid, unsigned long long start, const char *job)
{
    DIR *d = opendir("/proc");
    int killed = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        pid_t pg;
        unsigned long long st;
        if (*end || pid <= 1 || proc_stat((pid_t)pid, &pg, &st) < 0)
            continue;
        if (pg == pgid && st >= start && has_job_env((pid_t)pid, job) &&
            kill((pid_t)pid, SIGKILL) == 0)
            killed++;
    }
    if (d)
        closedir(d);
    return killed;
}

int rank_kill_leftovers(const char *state_dir)
{
    char path[PATH_MAX];
    int killed = 0;
    snprintf(path, sizeof(path), "%s/jobs", state_dir);
    DIR *jobs = opendir(path);
    struct dirent *je;
    while (jobs && (je = readdir(jobs)) != NULL) {
        if (je->d_name[0] == '.')
            continue;
        char jdir[PATH_MAX + 300];
        snprintf(jdir, sizeof(jdir), "%s/%s", path, je->d_name);
        DIR *jd = opendir(jdir);
        struct dirent *re;
        while (jd && (re = readdir(jd)) != NULL) {
            size_t len = strlen(re->d_name);
            if (strncmp(re->d_name, "rank-", 5) != 0 || len < 5 ||
                strcmp(re->d_name + len - 4, ".pid") != 0)
                continue;
            char pf[PATH_MAX + 600];
            snprintf(pf, sizeof(pf), "%s/%s", jdir, re->d_name);
            FILE *f = fopen(pf, "re");
            int pid = 0;
            unsigned long long start = 0;
            if (f && fscanf(f, "%d %llu", &pid, &start) == 2 && pid > 1) {
                int n = kill_group_since((pid_t)pid, start, je->d_name);
                if (n > 0)
                    ft_warn("killed %d leftover process(es) of job %s %.*s (process group %d) "
                            "from an earlier ftworker",
                            n, je->d_name, (int)(len - 4), re->d_name, pid);
                killed += n;
            }
            if (f)
                fclose(f);
            unlink(pf);
        }
        if (jd)
            closedir(jd);
    }
    if (jobs)
        closedir(jobs);
    return killed;
}

void rank_forget(rank_t *r)
{
    if (r->pid_path[0] && unlink(r->pid_path) < 0 && errno != ENOENT)
        ft_warn("cannot remove '%s': %s", r->pid_path, strerror(errno));
    r->pid_path[0] = '\0';
}

int rank_launch(const rank_ctx_t *ctx, const rank_req_t *q, rank_t **out, ft_err_t *err)
{
    int rc = -1, log_fd = -1, null_fd = -1, ev[2] = {-1, -1}, rep[2] = {-1, -1};
    char dir[PATH_MAX], log_path[PATH_MAX], spec_path[PATH_MAX];
    char rank_s[16], world_s[16], evfd_s[16];
    envlist_t env = {0};
    rank_t *r = NULL;
    char *spec_text = NULL;
    char *lora_argv[12];
    char *const *argv = NULL;
    const char *cwd = ctx->state_dir;
    *out = NULL;

    int n = snprintf(dir, sizeof(dir), "%s/jobs/%lld/rank-%d", ctx->state_dir, (long long)q->job_id,
                     q->rank);
    if (n < 0 || (size_t)n >= sizeof(dir) ||
        rank_log_path(ctx->state_dir, q->job_id, q->rank, log_path, sizeof(log_path)) < 0) {
        ft_err_set(err, FT_EINTERNAL, "state dir path too long");
        goto out;
    }
    if (ft_mkdir_p(dir, err) < 0)
        goto out;
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (log_fd < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot open '%s': %s", log_path, strerror(errno));
        goto out;
    }
    null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* the event channel is a socket pair so that the rendezvous reply can come
     * back on it (wrdv.h); a rank that only writes sees no difference */
    if (null_fd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ev) < 0 ||
        pipe2(rep, O_CLOEXEC) < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot create pipes: %s", strerror(errno));
        goto out;
    }
    if (build_env(q, RANK_EVENT_FD, &env) < 0) {
        ft_err_set(err, FT_EINTERNAL, "out of memory building the environment");
        goto out;
    }
    if (q->spec->kind == FT_KIND_LORA) {
        n = snprintf(spec_path, sizeof(spec_path), "%s/spec.json", dir);
        spec_text = cJSON_Print(q->spec_json);
        if (!spec_text || n < 0 || (size_t)n >= sizeof(spec_path)) {
            ft_err_set(err, FT_EINTERNAL, "cannot print the job spec");
            goto out;
        }
        if (ft_write_file_atomic(spec_path, spec_text, strlen(spec_text), err) < 0)
            goto out;
        snprintf(rank_s, sizeof(rank_s), "%d", q->rank);
        snprintf(world_s, sizeof(world_s), "%d", q->world_size);
        snprintf(evfd_s, sizeof(evfd_s), "%d", RANK_EVENT_FD);
        char *v[] = {(char *)ctx->trainer, "run",   "--spec",     spec_path, "--rank", rank_s,
                     "--world-size",       world_s, "--event-fd", evfd_s,    NULL};
        memcpy(lora_argv, v, sizeof(v));
        argv = lora_argv;
    } else {
        if (!q->spec->argv || !q->spec->argv[0]) {
            ft_err_set(err, FT_EBADFIELD, "spec.command: empty");
            goto out;
        }
        argv = q->spec->argv;
        if (q->spec->cwd[0])
            cwd = q->spec->cwd;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    r->report_fd = r->log_fd = r->event_fd = -1;
    pid_t self = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0)
        child_exec(self, rep[1], log_fd, null_fd, ev[1], cwd, argv, env.v);
    setpgid(pid, pid); /* also in the child: whichever runs first wins the race */
    close(rep[1]);
    rep[1] = -1;
    r->report_fd = rep[0];
    rep[0] = -1;
    r->log_fd = log_fd;
    log_fd = -1;
    r->argv0 = strdup(argv[0]);
    r->cwd = strdup(cwd);
    if (fcntl(r->report_fd, F_SETFL, O_NONBLOCK) < 0)
        ft_warn("cannot make a report pipe non-blocking: %s", strerror(errno));
    r->job_id = q->job_id;
    r->attempt = q->attempt;
    r->rank = q->rank;
    r->local_rank = q->local_rank;
    r->world_size = q->world_size;
    r->device = q->dev->index;
    r->pid = pid;
    r->event_fd = ev[0];
    ev[0] = -1;
    r->last_total = -1;
    r->started_ms = ft_mono_ms();
    write_pid_file(r, ctx->state_dir);
    if (fcntl(r->event_fd, F_SETFL, O_NONBLOCK) < 0)
        ft_warn("cannot make the event pipe of job %lld rank %d non-blocking: %s",
                (long long)r->job_id, r->rank, strerror(errno));
    *out = r;
    r = NULL;
    rc = 0;
out:
    if (rc < 0)
        log_failure(log_fd, err->msg);
    rank_destroy(&r);
    free(spec_text);
    env_free(&env);
    int fds[] = {log_fd, null_fd, ev[0], ev[1], rep[0], rep[1]};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return rc;
}

int rank_check_exec(rank_t *r, ft_err_t *err)
{
    if (r->report_fd < 0)
        return r->launch_failed ? -1 : 1;
    child_report_t rep;
    ssize_t n = read(r->report_fd, &rep, sizeof(rep));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    close(r->report_fd);
    r->report_fd = -1;
    int rc = 1;
    if (n == (ssize_t)sizeof(rep)) {
        const char *a0 = r->argv0 ? r->argv0 : "?", *cwd = r->cwd ? r->cwd : "?";
        if (rep.stage == STAGE_CHDIR)
            ft_err_set(err, FT_EBADFIELD, "cannot change directory to '%s': %s", cwd,
                       strerror(rep.err));
        else if (rep.stage == STAGE_EXEC)
            ft_err_set(err, FT_EBADFIELD, "cannot run '%s': %s", a0, strerror(rep.err));
        else
            ft_err_set(err, FT_EINTERNAL, "cannot set up the child's files: %s", strerror(rep.err));
        log_failure(r->log_fd, err->msg);
        r->launch_failed = true;
        rc = -1;
    } else if (n != 0) {
        ft_warn("job %lld rank %d: unreadable exec report (%zd bytes); assuming it started",
                (long long)r->job_id, r->rank, n);
    }
    if (rc > 0)
        r->started = true;
    if (r->log_fd >= 0)
        close(r->log_fd);
    r->log_fd = -1;
    return rc;
}

void rank_signal(rank_t *r, int sig)
{
    if (r->pid > 0 && kill(-r->pid, sig) < 0 && errno != ESRCH)
        ft_warn("cannot signal job %lld rank %d (pgid %d): %s", (long long)r->job_id, r->rank,
                (int)r->pid, strerror(errno));
}

void rank_exit_fields(const rank_t *r, int status, int *exit_code, int *sig, const char **reason)
{
    if (WIFSIGNALED(status)) {
        *exit_code = -1;
        *sig = WTERMSIG(status);
        *reason = r->stop_requested ? "stopped" : "killed";
    } else {
        *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        *sig = 0;
        *reason = r->stop_requested ? "stopped" : "exited";
    }
}

void rank_destroy(rank_t **pr)
{
    if (!pr || !*pr)
        return;
    if ((*pr)->event_fd >= 0)
        close((*pr)->event_fd);
    cJSON_Delete((*pr)->pending_progress);
    if ((*pr)->report_fd >= 0)
        close((*pr)->report_fd);
    if ((*pr)->log_fd >= 0)
        close((*pr)->log_fd);
    free((*pr)->argv0);
    free((*pr)->cwd);
    free((*pr)->rdv_blob);
    free(*pr);
    *pr = NULL;
}
