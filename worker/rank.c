/*
 * worker/rank.c: launching, signalling and accounting for rank processes.
 *
 * Everything the child needs (argv, envp, fds) is prepared before fork, so the
 * child only calls async-signal-safe functions (libzmq runs threads in this
 * process). A rank starts with fds 0, 1, 2 and 3 (the event socket) only. The child reports a
 * failed chdir or exec through a close-on-exec pipe: EOF on it means the exec succeeded. Costs:
 * O(environment size) to build envp, one fork per rank, or one clone from the spawner
 * thread (ctx.vfork, below) and a copy of argv and envp for it. Inode creations are what a rank
 * costs most on ext4 besides the fork (each scans the inode bitmap past recently deleted
 * inodes; a folder's far more than a file's), so a rank creates only its log (and its
 * own folder for lora): the logs lie flat in jobs/, its pid goes into the device's slot
 * file, rewritten in place, and its start time comes from CLOCK_BOOTTIME, not from
 * reading /proc.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rank.h"
#include "ft/json.h"

/* The children of the spawner run on a stack of their own (spawner_main) that
 * AddressSanitizer does not know: their functions are not instrumented, and that
 * stack's shadow is cleared before each clone, or ASan would report its own
 * bookkeeping there (stale redzones of the previous child) as overflows. */
#if defined(__SANITIZE_ADDRESS__)
#define RANK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RANK_ASAN 1
#endif
#endif
#ifdef RANK_ASAN
#include <sanitizer/asan_interface.h>
#define NO_ASAN __attribute__((no_sanitize("address")))
#define STACK_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define NO_ASAN
#define STACK_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

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
    int n = snprintf(buf, len, "%s/jobs/%lld.rank-%d.log", state_dir, (long long)job_id, rank);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

int rank_log_path_old(const char *state_dir, int64_t job_id, int rank, char *buf, size_t len)
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

/* What child_exec needs: prepared before the fork or clone, so that the child
 * allocates nothing. */
typedef struct {
    pid_t parent;      /* our pid: the child stops if its parent changed */
    int report_fd;     /* write end of the exec report pipe */
    int log_fd;        /* the rank's log: fds 1 and 2 */
    int null_fd;       /* /dev/null: fd 0 */
    int event_w;       /* the child's end of the event socket: fd 3 */
    int64_t delay_ms;  /* test hook: ms to sleep before the exec (FT_TEST_EXEC_DELAY_MS) */
    const char *cwd;   /* working directory */
    char *const *argv; /* NULL-terminated */
    char *const *envp; /* NULL-terminated */
} child_args_t;

/* Never returns. Only async-signal-safe calls. */
NO_ASAN static void child_exec(const child_args_t *c)
{
    child_report_t rep = {STAGE_FDS, 0};
    int report_fd = c->report_fd;
    /* keep the report pipe clear of fd RANK_EVENT_FD, which the event pipe takes */
    int high = fcntl(report_fd, F_DUPFD_CLOEXEC, 10);
    if (high >= 0)
        report_fd = high;
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);
    setpgid(0, 0);
    /* a rank must not outlive its worker: the node would be rescheduled under it
     * (the signal comes when the *thread* that forked or cloned us ends: the main
     * thread, or the spawner thread, which never ends before the process does) */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != c->parent)
        _exit(127);
    if (chdir(c->cwd) < 0) {
        rep.stage = STAGE_CHDIR;
        goto fail;
    }
    if (dup2(c->null_fd, 0) < 0 || dup2(c->log_fd, 1) < 0 || dup2(c->log_fd, 2) < 0)
        goto fail;
    if (c->event_w == RANK_EVENT_FD ? fcntl(c->event_w, F_SETFD, 0) < 0
                                    : dup2(c->event_w, RANK_EVENT_FD) < 0)
        goto fail;
    /* descriptors ftworker inherited from whoever started it end here too */
    if (close_range(RANK_EVENT_FD + 1, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = RANK_EVENT_FD + 1; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
            fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    }
    /* test hook: an exec that hangs, as one on a dead network mount would */
    struct timespec delay = {(time_t)(c->delay_ms / 1000), (long)(c->delay_ms % 1000) * 1000000L};
    while (c->delay_ms > 0 && nanosleep(&delay, &delay) < 0 && errno == EINTR)
        ;
    execvpe(c->argv[0], c->argv, c->envp);
    rep.stage = STAGE_EXEC;
fail:
    rep.err = errno;
    if (write(report_fd, &rep, sizeof(rep)) < 0)
        _exit(126);
    _exit(127);
}

/* ---- the spawner thread (ctx.vfork) ----
 * A child cloned with CLONE_VM | CLONE_VFORK shares our memory until its exec, so
 * nothing is copied (no page tables, no copy-on-write faults afterwards), and the
 * kernel suspends the calling *thread* until that exec completes or the child
 * exits. That thread is this one, started on first use: the main loop hands it a
 * request and waits only until the child's pid comes back on the pid pipe (the
 * child's first action), never for the exec itself, which on a hung network mount
 * could take forever.
 * Invariants: the spawner never exits (its children get PR_SET_PDEATHSIG, which
 * fires when the thread that created them ends) and blocks every signal, so no
 * handler runs in a child on our memory before that child has reset its mask; it
 * calls no logging and touches nothing but the state below and its request. At
 * most one request is out at a time (busy); while the spawner is busy for longer
 * than SPAWN_IDLE_WAIT_MS, i.e. inside an exec that does not end, ranks start by
 * fork. rank_launch is called from one thread only (the main loop).
 * Costs per launch: one allocation (the request: argv, envp, cwd copied, since the
 * child reads them until its exec, possibly after rank_launch has returned), a
 * condition variable signal, a poll and a read of 16 bytes on the main thread. */

/* The clone child's stack: it runs on it only until its exec, while the spawner
 * waits (CLONE_VFORK), so one, made once, serves every launch. */
#define SPAWN_STACK_BYTES (256 * 1024)
/* How long a launch waits for the spawner to finish the previous one's exec (the
 * ranks of a gang start back to back), before it forks instead. */
#define SPAWN_IDLE_WAIT_MS 50
/* How long a launch waits for the child's pid; after that it starts by fork (the
 * child, if it ever runs, exits without exec: see spawn_claim). Well under the
 * scheduler's liveness window (5 heartbeats of 1 s by default). */
#define SPAWN_PID_WAIT_MS 1000

/* One record on the pid pipe: the child's pid, or why clone failed. */
typedef struct {
    uint64_t seq; /* the request it answers */
    int64_t pid;  /* > 0: the child; < 0: -errno of the clone */
} spawn_rec_t;

/* A launch handed to the spawner, in one allocation: argv and envp (pointer
 * arrays, then their strings) and cwd follow the struct. Owned by the spawner
 * once taken. */
typedef struct {
    uint64_t seq;   /* launch number, echoed on the pid pipe */
    child_args_t a; /* pointing into this allocation */
} spawn_req_t;

/* Who settles a handed-over launch: the child (it wrote its pid and goes on to
 * exec) or the main thread (it gave up waiting and forks instead; the child,
 * should it run later, exits). Reset before each hand-over, while no child of
 * the spawner is before its exec. */
enum { CLAIM_OPEN = 0, CLAIM_CHILD, CLAIM_GIVEN_UP };
static atomic_int spawn_claim;

static struct {
    pthread_mutex_t mu;  /* guards req, busy */
    pthread_cond_t wake; /* to the spawner: req was set */
    pthread_cond_t idle; /* to the main thread: busy went false (CLOCK_MONOTONIC) */
    spawn_req_t *req;    /* handed over, not taken yet, or NULL */
    bool busy;           /* a request was handed over and its clone has not returned */
    /* the rest only the main thread writes (the pipe and stack before the thread starts) */
    int state;                  /* 0 not started, 1 running, -1 could not start: always fork */
    int pid_r, pid_w;           /* the pid pipe (read end non-blocking; both close-on-exec) */
    void *stack;                /* SPAWN_STACK_BYTES for the clone child */
    uint64_t seq;               /* last launch number handed over */
    bool stuck;                 /* launches fork because the spawner is busy (warned) */
    int64_t stuck_ms;           /* monotonic ms when that started */
    rank_spawn_counts_t counts; /* what rank_spawn_counts reports */
} sp = {.mu = PTHREAD_MUTEX_INITIALIZER, .pid_r = -1, .pid_w = -1};

/* The clone child: pid first, then claim the launch, then the usual exec. */
NO_ASAN static int spawn_child(void *p)
{
    const spawn_req_t *q = p;
    spawn_rec_t rec = {q->seq, (int64_t)getpid()};
    if (write(sp.pid_w, &rec, sizeof(rec)) != (ssize_t)sizeof(rec) ||
        atomic_exchange(&spawn_claim, CLAIM_CHILD) == CLAIM_GIVEN_UP)
        _exit(127); /* the main thread started this rank by fork */
    child_exec(&q->a);
    return 127;
}

static void *spawner_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&sp.mu);
    for (;;) {
        while (!sp.req)
            pthread_cond_wait(&sp.wake, &sp.mu);
        spawn_req_t *q = sp.req;
        sp.req = NULL;
        pthread_mutex_unlock(&sp.mu);
        STACK_UNPOISON(sp.stack, SPAWN_STACK_BYTES);
        /* returns once the child has exec'd or exited: until then it reads q */
        pid_t pid = clone(spawn_child, (char *)sp.stack + SPAWN_STACK_BYTES,
                          CLONE_VM | CLONE_VFORK | SIGCHLD, q);
        if (pid < 0) {
            spawn_rec_t rec = {q->seq, -(int64_t)errno};
            /* should this write fail, the main thread stops waiting after
             * SPAWN_PID_WAIT_MS and forks */
            ssize_t w = write(sp.pid_w, &rec, sizeof(rec));
            (void)w;
        }
        free(q);
        pthread_mutex_lock(&sp.mu);
        sp.busy = false;
        pthread_cond_signal(&sp.idle);
    }
    return NULL;
}

/* Starts the spawner once. 0, or -1 (logged once; every launch then forks). */
static int spawner_start(void)
{
    if (sp.state != 0)
        return sp.state > 0 ? 0 : -1;
    int p[2] = {-1, -1}, e = 0;
    pthread_condattr_t ca;
    pthread_attr_t ta;
    pthread_t th;
    sigset_t all, old;
    const char *what = "pipe2";
    sp.state = -1;
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
        e = errno;
        goto out;
    }
    /* only the read end is non-blocking: a child's record is never lost */
    fcntl(p[1], F_SETFL, 0);
    what = "mmap";
    sp.stack = mmap(NULL, SPAWN_STACK_BYTES, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (sp.stack == MAP_FAILED) {
        e = errno;
        sp.stack = NULL;
        goto out;
    }
    sp.pid_r = p[0];
    sp.pid_w = p[1];
    p[0] = p[1] = -1;
    what = "pthread_create";
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sp.idle, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&sp.wake, NULL);
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    /* the thread starts with every signal blocked (the mask is inherited) */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    e = pthread_create(&th, &ta, spawner_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&ta);
    if (e == 0)
        sp.state = 1;
out:
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    if (sp.state < 0)
        ft_warn("cannot start the rank spawner thread (%s: %s); ranks start by fork", what,
                strerror(e));
    return sp.state > 0 ? 0 : -1;
}

/* A copy of c with argv, envp and cwd in the same allocation, or NULL. */
static spawn_req_t *spawn_req_new(const child_args_t *c)
{
    size_t na = 0, ne = 0, bytes = strlen(c->cwd) + 1;
    for (; c->argv[na]; na++)
        bytes += strlen(c->argv[na]) + 1;
    for (; c->envp[ne]; ne++)
        bytes += strlen(c->envp[ne]) + 1;
    size_t ptrs = (na + 1 + ne + 1) * sizeof(char *);
    spawn_req_t *q = malloc(sizeof(*q) + ptrs + bytes);
    if (!q)
        return NULL;
    char **argv = (char **)(q + 1), **envp = argv + na + 1;
    char *str = (char *)(envp + ne + 1);
    q->a = *c;
    for (size_t i = 0; i <= na + ne; i++) { /* argv, cwd, envp */
        const char *src = i < na ? c->argv[i] : i > na ? c->envp[i - na - 1] : c->cwd;
        size_t len = strlen(src) + 1;
        memcpy(str, src, len);
        if (i < na)
            argv[i] = str;
        else if (i > na)
            envp[i - na - 1] = str;
        else
            q->a.cwd = str;
        str += len;
    }
    argv[na] = NULL;
    envp[ne] = NULL;
    q->a.argv = argv;
    q->a.envp = envp;
    return q;
}

/* Waits (with the lock held) until the spawner is idle, up to SPAWN_IDLE_WAIT_MS;
 * not at all while it is known to be stuck. True when it is idle. */
static bool spawner_wait_idle(void)
{
    if (!sp.busy || sp.stuck)
        return !sp.busy;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += SPAWN_IDLE_WAIT_MS * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    while (sp.busy && pthread_cond_timedwait(&sp.idle, &sp.mu, &ts) != ETIMEDOUT)
        ;
    return !sp.busy;
}

/* The record for launch seq from the pid pipe, waiting until deadline (monotonic
 * ms); records of launches given up earlier are dropped. 0, or -1 on timeout.
 * Polls first: the child has rarely written when this starts. */
static int spawner_read_pid(uint64_t seq, int64_t deadline, spawn_rec_t *rec)
{
    for (;;) {
        int64_t left = deadline - ft_mono_ms();
        struct pollfd pfd = {sp.pid_r, POLLIN, 0};
        if (poll(&pfd, 1, left > 0 ? (int)left : 0) < 0 && errno != EINTR)
            return -1;
        ssize_t n = read(sp.pid_r, rec, sizeof(*rec));
        if (n == (ssize_t)sizeof(*rec) && rec->seq == seq)
            return 0;
        if (n == (ssize_t)sizeof(*rec)) {
            ft_debug("dropping the pid record of abandoned launch %llu (pid %lld)",
                     (unsigned long long)rec->seq, (long long)rec->pid);
            continue;
        }
        if (n > 0) { /* records are written whole (16 bytes < PIPE_BUF): cannot happen */
            ft_warn("short record on the rank spawner's pid pipe (%zd bytes)", n);
            continue;
        }
        if ((n < 0 && errno != EAGAIN && errno != EINTR) || left <= 0)
            return -1;
    }
}

/* Starts c through the spawner. 0: *pid is the child (pid known, exec maybe not
 * done yet); -1: not started, the caller forks instead (why logged). */
static int spawner_launch(const child_args_t *c, const rank_req_t *r, pid_t *pid)
{
    if (spawner_start() < 0)
        return -1;
    spawn_req_t *q = spawn_req_new(c);
    if (!q) {
        ft_debug("job %lld rank %d: no memory for a spawn request; forking", (long long)r->job_id,
                 r->rank);
        return -1;
    }
    pthread_mutex_lock(&sp.mu);
    if (!spawner_wait_idle()) {
        pthread_mutex_unlock(&sp.mu);
        free(q);
        if (!sp.stuck) {
            sp.stuck = true;
            sp.stuck_ms = ft_mono_ms();
            ft_warn("the rank spawner has been inside one exec for over %d ms (a program or "
                    "cwd on a hung mount?); ranks start by fork until it returns",
                    SPAWN_IDLE_WAIT_MS);
        }
        ft_debug("job %lld rank %d: the rank spawner is busy; forking", (long long)r->job_id,
                 r->rank);
        return -1;
    }
    if (sp.stuck) {
        sp.stuck = false;
        ft_info("the rank spawner is free again after %.1f s; ranks start through it",
                (double)(ft_mono_ms() - sp.stuck_ms) / 1000.0);
    }
    uint64_t seq = q->seq = ++sp.seq;
    atomic_store(&spawn_claim, CLAIM_OPEN);
    sp.req = q;
    sp.busy = true;
    pthread_cond_signal(&sp.wake);
    pthread_mutex_unlock(&sp.mu);
    /* from here on q may be freed by the spawner: only seq is ours */

    spawn_rec_t rec;
    if (spawner_read_pid(seq, ft_mono_ms() + SPAWN_PID_WAIT_MS, &rec) < 0) {
        bool taken_back = false;
        pthread_mutex_lock(&sp.mu);
        if (sp.req == q) { /* never taken: the spawner is idle again */
            sp.req = NULL;
            sp.busy = false;
            taken_back = true;
        }
        pthread_mutex_unlock(&sp.mu);
        if (taken_back) {
            free(q);
        } else if (atomic_exchange(&spawn_claim, CLAIM_GIVEN_UP) == CLAIM_CHILD) {
            /* the child claimed it just now, and wrote its pid before: it is there */
            if (spawner_read_pid(seq, ft_mono_ms() + SPAWN_PID_WAIT_MS, &rec) == 0)
                goto got;
        }
        ft_warn("job %lld rank %d: the rank spawner gave no pid within %d ms; forking",
                (long long)r->job_id, r->rank, SPAWN_PID_WAIT_MS);
        return -1;
    }
got:
    if (rec.pid <= 0) {
        ft_warn("job %lld rank %d: cannot clone: %s; forking", (long long)r->job_id, r->rank,
                strerror((int)-rec.pid));
        return -1;
    }
    *pid = (pid_t)rec.pid;
    return 0;
}

void rank_spawn_counts(rank_spawn_counts_t *out)
{
    *out = sp.counts;
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

/* A lower bound of the start time that /proc/PID/stat shows for a process
 * forked after this call: clock ticks since boot, rounded down. The kernel
 * counts a process's start on CLOCK_BOOTTIME too (time namespaces included). */
static unsigned long long boot_ticks_now(void)
{
    struct timespec ts;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0 || hz > 1000000000L || clock_gettime(CLOCK_BOOTTIME, &ts) < 0)
        return 0; /* no bound: the FT_JOB_ID check alone then guards */
    return (unsigned long long)ts.tv_sec * (unsigned long long)hz +
           (unsigned long long)ts.tv_nsec / (1000000000ULL / (unsigned long long)hz);
}

int rank_slot_open(const char *state_dir, int device, ft_err_t *err)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/ranks", state_dir);
    if (n < 0 || (size_t)n >= sizeof(path) - 32) {
        ft_err_set(err, FT_EINTERNAL, "state dir path too long");
        return -1;
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        ft_err_set(err, FT_EINTERNAL, "cannot create directory '%s': %s", path, strerror(errno));
        return -1;
    }
    snprintf(path + n, sizeof(path) - (size_t)n, "/device-%d.pid", device);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        ft_err_set(err, FT_EINTERNAL, "cannot open '%s': %s", path, strerror(errno));
    return fd;
}

/* "PID STARTTIME JOBID RANK" into the device's slot (empty before: rank_forget
 * truncates it), so that a restarted worker finds the rank (rank_kill_leftovers). */
static void slot_write(rank_t *r, int slot_fd, unsigned long long start)
{
    char line[96];
    if (slot_fd < 0)
        return;
    int n = snprintf(line, sizeof(line), "%d %llu %lld %d\n", (int)r->pid, start,
                     (long long)r->job_id, r->rank);
    if (pwrite(slot_fd, line, (size_t)n, 0) != n) {
        ft_warn("cannot write the pid slot of device %d: %s", r->device, strerror(errno));
        return;
    }
    r->slot_fd = slot_fd;
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

/* Kills what the rank recorded in slot file path left running, then empties
 * the slot. Returns the number of processes killed. */
static int kill_slot(const char *path, const char *name)
{
    char line[128], job[32];
    int pid = 0, rank = 0, killed = 0;
    unsigned long long start = 0;
    long long job_id = 0;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, line, sizeof(line) - 1);
    line[n > 0 ? n : 0] = '\0';
    if (sscanf(line, "%d %llu %lld %d", &pid, &start, &job_id, &rank) == 4 && pid > 1 &&
        job_id > 0) {
        snprintf(job, sizeof(job), "%lld", job_id);
        killed = kill_group_since((pid_t)pid, start, job);
        if (killed > 0)
            ft_warn("killed %d leftover process(es) of job %lld rank %d (process group %d, %s) "
                    "from an earlier ftworker",
                    killed, job_id, rank, pid, name);
    }
    if (n > 0 && ftruncate(fd, 0) < 0)
        ft_warn("cannot empty '%s': %s", path, strerror(errno));
    close(fd);
    return killed;
}

int rank_kill_leftovers(const char *state_dir)
{
    char path[PATH_MAX];
    int killed = 0;
    snprintf(path, sizeof(path), "%s/ranks", state_dir);
    DIR *slots = opendir(path);
    struct dirent *se;
    while (slots && (se = readdir(slots)) != NULL) {
        size_t len = strlen(se->d_name);
        if (strncmp(se->d_name, "device-", 7) != 0 || len < 11 ||
            strcmp(se->d_name + len - 4, ".pid") != 0)
            continue;
        char sf[PATH_MAX + 300];
        snprintf(sf, sizeof(sf), "%s/%s", path, se->d_name);
        killed += kill_slot(sf, se->d_name);
    }
    if (slots)
        closedir(slots);
    /* jobs/J/rank-R.pid: what workers before the slots left */
    snprintf(path, sizeof(path), "%s/jobs", state_dir);
    DIR *jobs = opendir(path);
    struct dirent *je;
    while (jobs && (je = readdir(jobs)) != NULL) {
        /* old-style pid files lie in the jobs' folders, not among the flat logs */
        if (je->d_name[0] == '.' || je->d_type == DT_REG || strchr(je->d_name, '.'))
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
    if (r->slot_fd >= 0 && ftruncate(r->slot_fd, 0) < 0)
        ft_warn("cannot empty the pid slot of device %d: %s", r->device, strerror(errno));
    r->slot_fd = -1;
}

/* mkdir of path whose parents exist (the usual case: one system call), or
 * of all its components when they do not. */
static int make_dir(const char *path, ft_err_t *err)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0; /* a file in its place makes the open inside it fail, and say so */
    if (errno == ENOENT)
        return ft_mkdir_p(path, err);
    ft_err_set(err, FT_EINTERNAL, "cannot create directory '%s': %s", path, strerror(errno));
    return -1;
}

/* /dev/null for the ranks' stdin, opened once (close-on-exec: a rank gets it
 * as fd 0 only). */
static int dev_null(void)
{
    static int fd = -1;
    if (fd < 0)
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd;
}

int rank_launch(const rank_ctx_t *ctx, const rank_req_t *q, rank_t **out, ft_err_t *err)
{
    int rc = -1, log_fd = -1, null_fd = dev_null(), ev[2] = {-1, -1}, rep[2] = {-1, -1};
    char jobs_dir[PATH_MAX], dir[PATH_MAX], log_path[PATH_MAX], spec_path[PATH_MAX];
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
    int nj = snprintf(jobs_dir, sizeof(jobs_dir), "%s/jobs", ctx->state_dir);
    if (n < 0 || (size_t)n >= sizeof(dir) || nj < 0 || (size_t)nj >= sizeof(jobs_dir) ||
        rank_log_path(ctx->state_dir, q->job_id, q->rank, log_path, sizeof(log_path)) < 0) {
        ft_err_set(err, FT_EINTERNAL, "state dir path too long");
        goto out;
    }
    /* the rank's own folder only holds lora's spec.json: an exec rank makes none */
    if (q->spec->kind == FT_KIND_LORA && make_dir(dir, err) < 0)
        goto out;
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (log_fd < 0 && errno == ENOENT) { /* the first rank on this state dir */
        if (ft_mkdir_p(jobs_dir, err) < 0)
            goto out;
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    }
    if (log_fd < 0) {
        ft_err_set(err, FT_EINTERNAL, "cannot open '%s': %s", log_path, strerror(errno));
        goto out;
    }
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
    r->report_fd = r->log_fd = r->event_fd = r->slot_fd = -1;
    pid_t self = getpid();
    unsigned long long start = boot_ticks_now();
    child_args_t ca = {self, rep[1], log_fd, null_fd, ev[1], ctx->exec_delay_ms, cwd, argv, env.v};
    pid_t pid = -1;
    if (ctx->vfork && spawner_launch(&ca, q, &pid) == 0) {
        sp.counts.spawned++;
    } else {
        if (ctx->vfork)
            sp.counts.forked++;
        ca.delay_ms = 0; /* the test hook delays the spawner's children only */
        pid = fork();
        if (pid < 0) {
            ft_err_set(err, FT_EINTERNAL, "cannot fork: %s", strerror(errno));
            goto out;
        }
        if (pid == 0)
            child_exec(&ca);
    }
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
    slot_write(r, ctx->slot_fd, start);
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
    int fds[] = {log_fd, ev[0], ev[1], rep[0], rep[1]};
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
