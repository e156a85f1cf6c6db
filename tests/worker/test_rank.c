/*
 * tests/worker/test_rank.c: the rank launcher on its own, without a
 * scheduler: a rank's environment, log file, event pipe on fd 3, process
 * group, exit fields; launch failures (missing command, bad cwd) with their
 * reason in the log; the per-device pid slots and the clean-up of leftovers
 * (through the slots, and through the pid files of workers before them);
 * the same launches through the spawner thread (ctx.vfork), and an exec held
 * back by the test hook (ctx.exec_delay_ms, what FT_TEST_EXEC_DELAY_MS sets in
 * ftworker): the next rank starts by fork meanwhile, the first one after.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "rank.h"

static char tmpdir[] = "/tmp/ft-test-rank-XXXXXX";

static char *read_all(const char *path)
{
    ft_err_t err = {0};
    return ft_read_file(path, 1 << 20, NULL, &err);
}

/* An exec spec with argv; envs are "K=V" strings. */
static void make_spec(ft_jobspec_t *spec, char **argv, char **env, const char *cwd)
{
    memset(spec, 0, sizeof(*spec));
    spec->kind = FT_KIND_EXEC;
    spec->argv = argv;
    for (spec->argc = 0; argv[spec->argc]; spec->argc++)
        ;
    spec->env = env;
    for (spec->envc = 0; env && env[spec->envc]; spec->envc++)
        ;
    ft_strlcpy(spec->cwd, cwd ? cwd : "", sizeof(spec->cwd));
}

/* Waits until the rank's exec is settled: 1 started, -1 failed. */
static int settle(rank_t *r, ft_err_t *err)
{
    int rc = 0;
    for (int i = 0; i < 500 && (rc = rank_check_exec(r, err)) == 0; i++)
        usleep(10000);
    return rc;
}

/* Field 22 of /proc/PID/stat: the start time in clock ticks since boot. */
static unsigned long long proc_start(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *st = read_all(path), *p = st ? strrchr(st, ')') : NULL;
    unsigned long long v = 0;
    if (!p || sscanf(p + 1,
                     " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
                     "%*d %*d %*d %llu",
                     &v) != 1)
        v = 0;
    free(st);
    return v;
}

static int wait_rank(rank_t *r)
{
    int status = -1;
    while (waitpid(r->pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

int main(void)
{
    ft_log_init("test_rank", FT_LOG_WARN);
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    ft_err_t err = {0};
    wdev_opts_t dopts = {
        .node_name = "n1", .cpu_devices = 1, .emulate_gpus = 2, .nvml_library = ""};
    wdev_set_t *devs = wdev_set_new(&dopts, &err);
    int slots[3];
    for (int d = 0; d < 3; d++)
        slots[d] = rank_slot_open(tmpdir, d, &err);
    CHECK(slots[0] >= 0 && slots[1] >= 0 && slots[2] >= 0, "a pid slot per device opens: %s",
          err.msg);
    rank_ctx_t ctx = {tmpdir, "/nonexistent/ft-train", "n1", slots[1], false, 0};
    ft_jobspec_t spec;
    char slot_path[512];
    snprintf(slot_path, sizeof(slot_path), "%s/ranks/device-1.pid", tmpdir);

    /* a rank on emulated GPU 1: environment, output, event pipe, own group */
    char *argv1[] = {"sh", "-c",
                     "echo \"$FT_JOB_ID $FT_ATTEMPT $FT_RANK/$FT_WORLD_SIZE $FT_LOCAL_RANK "
                     "cvd=$CUDA_VISIBLE_DEVICES kind=$FT_DEVICE_KIND fd=$FT_EVENT_FD y=$Y "
                     "array=$FT_ARRAY_JOB_ID/$FT_ARRAY_INDEX\"; "
                     "echo event >&3; ps -o pgid= -p $$ | tr -d ' '; exit 5",
                     NULL};
    char *env1[] = {"Y=spec", "FT_RANK=99", "FT_ARRAY_INDEX=7", NULL};
    make_spec(&spec, argv1, env1, NULL);
    /* element 2 of array job 40 */
    rank_req_t req = {42, 2, 1, 0, 4, wdev_get(devs, 1), &spec, NULL, 40, 2};
    rank_t *r = NULL;
    CHECK(rank_launch(&ctx, &req, &r, &err) == 0 && r && r->pid > 0 && r->event_fd >= 0 &&
              r->report_fd >= 0,
          "launch job 42 attempt 2 rank 1: forked, exec not yet settled (%s)", err.msg);
    CHECK(r && settle(r, &err) == 1 && r->started && r->report_fd < 0 && r->log_fd < 0,
          "the exec is confirmed through the report pipe (EOF)");
    char buf[64] = "";
    ssize_t n = 0;
    int status = r ? wait_rank(r) : -1;
    if (r)
        n = read(r->event_fd, buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    CHECK(strcmp(buf, "event\n") == 0, "the rank's fd 3 reaches the event pipe: '%s'", buf);
    int code = 0, sig = 0;
    const char *reason = "";
    if (r)
        rank_exit_fields(r, status, &code, &sig, &reason);
    CHECK(code == 5 && sig == 0 && strcmp(reason, "exited") == 0,
          "exit fields: code %d, signal %d, reason '%s'", code, sig, reason);
    char path[512], want[256];
    rank_log_path(tmpdir, 42, 1, path, sizeof(path));
    char *log = read_all(path);
    snprintf(want, sizeof(want), "42 2 1/4 0 cvd=1 kind=emulated fd=3 y=spec array=40/2\n%d\n",
             r ? (int)r->pid : -1);
    CHECK(log && strcmp(log, want) == 0,
          "log has the environment (ours win over the spec's FT_RANK and FT_ARRAY_INDEX) and "
          "pgid == pid: '%s'",
          log ? log : "(none)");
    free(log);
    char *slot = read_all(slot_path);
    int spid = 0, srank = -1;
    long long sjob = 0;
    unsigned long long sstart = 0;
    CHECK(slot && sscanf(slot, "%d %llu %lld %d", &spid, &sstart, &sjob, &srank) == 4 && r &&
              spid == r->pid && sjob == 42 && srank == 1,
          "device 1's slot holds 'PID STARTTIME JOBID RANK' while the rank is known: '%s'",
          slot ? slot : "(none)");
    free(slot);
    if (r)
        rank_forget(r);
    slot = read_all(slot_path);
    CHECK(slot && slot[0] == '\0' && r && r->slot_fd == -1, "rank_forget empties the slot");
    free(slot);
    rank_destroy(&r);
    snprintf(path, sizeof(path), "%s/jobs/42", tmpdir);
    CHECK(access(path, F_OK) != 0 && errno == ENOENT,
          "an exec rank makes no folder (only lora keeps its spec in jobs/J/rank-R/)");
    rank_log_path(tmpdir, 42, 1, path, sizeof(path));
    CHECK(strcmp(path + strlen(tmpdir), "/jobs/42.rank-1.log") == 0, "its log is '%s'",
          path + strlen(tmpdir));
    CHECK(r == NULL, "rank_destroy nulls the pointer");

    /* a stop: SIGTERM to the group, reason "stopped" */
    char *argv2[] = {"sleep", "30", NULL};
    make_spec(&spec, argv2, NULL, NULL);
    rank_req_t req2 = {43, 1, 0, 0, 1, wdev_get(devs, 2), &spec, NULL, 0, 0};
    ctx.slot_fd = slots[2];
    CHECK(rank_launch(&ctx, &req2, &r, &err) == 0 && settle(r, &err) == 1,
          "launch 'sleep 30' on the cpu device");
    snprintf(slot_path, sizeof(slot_path), "%s/ranks/device-2.pid", tmpdir);
    slot = read_all(slot_path);
    unsigned long long pstart = r ? proc_start(r->pid) : 0;
    CHECK(slot && sscanf(slot, "%d %llu", &spid, &sstart) == 2 && pstart > 0 && sstart <= pstart &&
              pstart - sstart <= 100,
          "the slot's start time (%llu) bounds /proc's (%llu) from below, within 100 ticks", sstart,
          pstart);
    free(slot);
    if (r) {
        r->stop_requested = true;
        rank_signal(r, SIGTERM);
        status = wait_rank(r);
        rank_exit_fields(r, status, &code, &sig, &reason);
        rank_forget(r);
    }
    CHECK(code == -1 && sig == SIGTERM && strcmp(reason, "stopped") == 0,
          "stopped rank: code %d, signal %d, reason '%s'", code, sig, reason);
    rank_destroy(&r);

    /* launch failures: never started, reason in err and in the log */
    char *argv3[] = {"/nonexistent/cmd", NULL};
    make_spec(&spec, argv3, NULL, NULL);
    rank_req_t req3 = {44, 1, 0, 0, 1, wdev_get(devs, 0), &spec, NULL, 0, 0};
    ctx.slot_fd = slots[0];
    ft_err_clear(&err);
    int rc = rank_launch(&ctx, &req3, &r, &err);
    CHECK(rc == 0 && settle(r, &err) == -1 && r->launch_failed && !r->started &&
              strcmp(err.msg, "cannot run '/nonexistent/cmd': No such file or directory") == 0,
          "missing command: forked, then the report says '%s'", err.msg);
    if (r) {
        status = wait_rank(r);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 127, "the failed child exits 127");
        rank_forget(r);
        rank_destroy(&r);
    }
    rank_log_path(tmpdir, 44, 0, path, sizeof(path));
    log = read_all(path);
    CHECK(log && strstr(log, "ft: launch failed: cannot run '/nonexistent/cmd'"),
          "the failure is appended to the rank's log");
    free(log);
    char *argv4[] = {"true", NULL};
    make_spec(&spec, argv4, NULL, "/nonexistent/dir");
    ft_err_clear(&err);
    rc = rank_launch(&ctx, &req3, &r, &err);
    CHECK(rc == 0 && settle(r, &err) == -1 &&
              strstr(err.msg, "cannot change directory to '/nonexistent/dir'"),
          "bad cwd: '%s'", err.msg);
    if (r) {
        wait_rank(r);
        rank_forget(r);
        rank_destroy(&r);
    }
    spec.kind = FT_KIND_LORA;
    cJSON *sj = cJSON_Parse("{\"kind\":\"lora\"}");
    req3.spec_json = sj;
    ft_err_clear(&err);
    rc = rank_launch(&ctx, &req3, &r, &err);
    CHECK(rc == 0 && settle(r, &err) == -1 && strstr(err.msg, "cannot run '/nonexistent/ft-train'"),
          "lora without a trainer: '%s'", err.msg);
    if (r) {
        wait_rank(r);
        rank_forget(r);
        rank_destroy(&r);
    }
    snprintf(path, sizeof(path), "%s/jobs/44/rank-0/spec.json", tmpdir);
    log = read_all(path);
    CHECK(log && strstr(log, "\"lora\""), "the lora spec was written to the rank's dir");
    free(log);
    cJSON_Delete(sj);
    char longcwd[5000];
    memset(longcwd, 'a', sizeof(longcwd) - 1);
    longcwd[sizeof(longcwd) - 1] = '\0';
    rank_ctx_t badctx = {longcwd, "ft-train", "n1", -1, false, 0};
    ft_err_clear(&err);
    CHECK(rank_launch(&badctx, &req3, &r, &err) == -1 && !r && strstr(err.msg, "too long"),
          "a state dir path too long fails before forking: '%s'", err.msg);

    /* leftovers: a rank whose worker vanished, and its background child */
    char bgfile[300], script[600];
    snprintf(bgfile, sizeof(bgfile), "%s/noenv.pid", tmpdir);
    snprintf(script, sizeof(script),
             "sleep 30 & env -u FT_JOB_ID sleep 31 & echo $! > %s; sleep 30", bgfile);
    char *argv5[] = {"sh", "-c", script, NULL};
    make_spec(&spec, argv5, NULL, NULL);
    rank_req_t req5 = {45, 1, 0, 0, 1, wdev_get(devs, 0), &spec, NULL, 0, 0};
    CHECK(rank_launch(&ctx, &req5, &r, &err) == 0 && settle(r, &err) == 1,
          "launch a rank with a background child");
    usleep(300000);
    int killed = rank_kill_leftovers(tmpdir);
    CHECK(killed >= 2, "rank_kill_leftovers killed the rank and its child(ren): %d", killed);
    FILE *bf = fopen(bgfile, "r");
    int noenv = 0;
    if (!bf || fscanf(bf, "%d", &noenv) != 1)
        noenv = 0;
    if (bf)
        fclose(bf);
    CHECK(noenv > 0 && kill(noenv, 0) == 0,
          "a process of the group without the job's FT_JOB_ID (pid %d) was spared", noenv);
    if (noenv > 0)
        kill(noenv, SIGKILL);
    if (r) {
        status = wait_rank(r);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the rank died of SIGKILL");
    }
    snprintf(slot_path, sizeof(slot_path), "%s/ranks/device-0.pid", tmpdir);
    slot = read_all(slot_path);
    CHECK(slot && slot[0] == '\0', "its slot is empty afterwards: '%s'", slot ? slot : "(none)");
    free(slot);
    CHECK(rank_kill_leftovers(tmpdir) == 0, "a second pass finds nothing");
    rank_destroy(&r);

    /* a worker from before the slots wrote jobs/J/rank-R.pid: still found */
    char *argv6[] = {"sleep", "30", NULL};
    make_spec(&spec, argv6, NULL, NULL);
    rank_req_t req6 = {46, 1, 0, 0, 1, wdev_get(devs, 1), &spec, NULL, 0, 0};
    ctx.slot_fd = -1;
    CHECK(rank_launch(&ctx, &req6, &r, &err) == 0 && settle(r, &err) == 1 && r->slot_fd == -1,
          "launch a rank without a slot");
    snprintf(path, sizeof(path), "%s/jobs/46", tmpdir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/jobs/46/rank-0.pid", tmpdir);
    FILE *pf = fopen(path, "w");
    if (pf) {
        fprintf(pf, "%d %llu\n", r ? (int)r->pid : 0, r ? proc_start(r->pid) : 0);
        fclose(pf);
    }
    CHECK(pf && rank_kill_leftovers(tmpdir) == 1 && access(path, F_OK) != 0,
          "an old-style pid file: its rank is killed and the file removed");
    if (r) {
        status = wait_rank(r);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "that rank died of SIGKILL");
    }
    rank_destroy(&r);

    /* the same launches through the CLONE_VM spawn (ftworker --spawn vfork) */
    ctx.vfork = true;
    ctx.slot_fd = slots[1];
    make_spec(&spec, argv1, env1, NULL);
    rank_req_t reqv = {50, 2, 1, 0, 4, wdev_get(devs, 1), &spec, NULL, 40, 2};
    ft_err_clear(&err);
    CHECK(rank_launch(&ctx, &reqv, &r, &err) == 0 && r && r->pid > 0 && settle(r, &err) == 1,
          "vfork: launch job 50, the exec is confirmed (%s)", err.msg);
    status = r ? wait_rank(r) : -1;
    n = r ? read(r->event_fd, buf, sizeof(buf) - 1) : 0;
    buf[n > 0 ? n : 0] = '\0';
    code = sig = 0;
    if (r)
        rank_exit_fields(r, status, &code, &sig, &reason);
    CHECK(strcmp(buf, "event\n") == 0 && code == 5 && sig == 0,
          "vfork: fd 3 reaches the event socket ('%s'), exit code %d propagates", buf, code);
    rank_log_path(tmpdir, 50, 1, path, sizeof(path));
    log = read_all(path);
    snprintf(want, sizeof(want), "50 2 1/4 0 cvd=1 kind=emulated fd=3 y=spec array=40/2\n%d\n",
             r ? (int)r->pid : -1);
    CHECK(log && strcmp(log, want) == 0,
          "vfork: environment, CUDA_VISIBLE_DEVICES and pgid == pid as with fork: '%s'",
          log ? log : "(none)");
    free(log);
    if (r)
        rank_forget(r);
    rank_destroy(&r);
    make_spec(&spec, argv3, NULL, NULL);
    rank_req_t reqv2 = {51, 1, 0, 0, 1, wdev_get(devs, 1), &spec, NULL, 0, 0};
    ft_err_clear(&err);
    rc = rank_launch(&ctx, &reqv2, &r, &err);
    CHECK(rc == 0 && settle(r, &err) == -1 &&
              strcmp(err.msg, "cannot run '/nonexistent/cmd': No such file or directory") == 0,
          "vfork: a missing command is reported by name: '%s'", err.msg);
    if (r) {
        status = wait_rank(r);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 127, "vfork: the failed child exits 127");
        rank_forget(r);
        rank_destroy(&r);
    }
    make_spec(&spec, argv4, NULL, "/nonexistent/dir");
    ft_err_clear(&err);
    rc = rank_launch(&ctx, &reqv2, &r, &err);
    CHECK(rc == 0 && settle(r, &err) == -1 &&
              strstr(err.msg, "cannot change directory to '/nonexistent/dir'"),
          "vfork: bad cwd: '%s'", err.msg);
    if (r) {
        wait_rank(r);
        rank_forget(r);
        rank_destroy(&r);
    }
    make_spec(&spec, argv2, NULL, "/");
    ft_err_clear(&err);
    rc = rank_launch(&ctx, &reqv2, &r, &err);
    CHECK(rc == 0 && settle(r, &err) == 1, "vfork: 'sleep 30' in '/' started");
    if (r) {
        char cwdlink[64], cwdbuf[64] = "";
        snprintf(cwdlink, sizeof(cwdlink), "/proc/%d/cwd", (int)r->pid);
        ssize_t cl = readlink(cwdlink, cwdbuf, sizeof(cwdbuf) - 1);
        cwdbuf[cl > 0 ? cl : 0] = '\0';
        CHECK(strcmp(cwdbuf, "/") == 0, "vfork: the rank runs in its spec's cwd: '%s'", cwdbuf);
        r->stop_requested = true;
        rank_signal(r, SIGTERM);
        status = wait_rank(r);
        rank_exit_fields(r, status, &code, &sig, &reason);
        CHECK(sig == SIGTERM && strcmp(reason, "stopped") == 0,
              "vfork: SIGTERM to its process group stops it: signal %d, '%s'", sig, reason);
        rank_forget(r);
        rank_destroy(&r);
    }
    rank_spawn_counts_t c0, c1;
    rank_spawn_counts(&c0);
    CHECK(c0.spawned == 4 && c0.forked == 0,
          "vfork: the 4 launches went through the spawner thread (spawned %llu, forked %llu)",
          (unsigned long long)c0.spawned, (unsigned long long)c0.forked);

    /* An exec that hangs (a program on a dead mount), through the test hook
     * that FT_TEST_EXEC_DELAY_MS sets in ftworker: the spawner's child sleeps
     * 1.5 s before its exec. The next rank must not wait for it: it starts by
     * fork, and A starts once its delay has passed. */
    ctx.exec_delay_ms = 1500;
    ctx.slot_fd = -1;
    char *argv7[] = {"sh", "-c", "echo \"$FT_JOB_ID started\"", NULL};
    make_spec(&spec, argv7, NULL, NULL);
    rank_req_t reqa = {52, 1, 0, 0, 1, wdev_get(devs, 1), &spec, NULL, 0, 0};
    rank_req_t reqb = {53, 1, 0, 0, 1, wdev_get(devs, 2), &spec, NULL, 0, 0};
    rank_t *ra = NULL, *rb = NULL;
    ft_err_clear(&err);
    int64_t ta = ft_mono_ms();
    rc = rank_launch(&ctx, &reqa, &ra, &err);
    CHECK(rc == 0 && ra && ra->pid > 0 && rank_check_exec(ra, &err) == 0,
          "hung exec: rank A (job 52) has its pid, its exec is held back (%s)", err.msg);
    rc = rank_launch(&ctx, &reqb, &rb, &err);
    int sb = rc == 0 ? settle(rb, &err) : 0;
    int sa = ra ? rank_check_exec(ra, &err) : 0;
    rank_spawn_counts(&c1);
    CHECK(rc == 0 && sb == 1 && sa == 0 && c1.spawned == c0.spawned + 1 &&
              c1.forked == c0.forked + 1,
          "hung exec: rank B (job 53) started by fork (forked %llu -> %llu) while A's exec was "
          "still held back (A: %d)",
          (unsigned long long)c0.forked, (unsigned long long)c1.forked, sa);
    sa = ra ? settle(ra, &err) : 0;
    int64_t took = ft_mono_ms() - ta;
    CHECK(sa == 1 && took >= 1450,
          "hung exec: A started once its delay had passed, %lld ms after its launch",
          (long long)took);
    int sta = ra ? wait_rank(ra) : -1, stb = rb ? wait_rank(rb) : -1;
    CHECK(WIFEXITED(sta) && WEXITSTATUS(sta) == 0 && WIFEXITED(stb) && WEXITSTATUS(stb) == 0,
          "hung exec: both ranks exited 0");
    char *loga = NULL, *logb = NULL;
    rank_log_path(tmpdir, 52, 0, path, sizeof(path));
    loga = read_all(path);
    rank_log_path(tmpdir, 53, 0, path, sizeof(path));
    logb = read_all(path);
    CHECK(loga && logb && strcmp(loga, "52 started\n") == 0 && strcmp(logb, "53 started\n") == 0,
          "hung exec: each rank ran its own command: '%s', '%s'", loga ? loga : "(none)",
          logb ? logb : "(none)");
    free(loga);
    free(logb);
    rank_destroy(&ra);
    rank_destroy(&rb);
    /* the spawner is free again: the next rank goes through it */
    ctx.exec_delay_ms = 0;
    rank_req_t reqc = {54, 1, 0, 0, 1, wdev_get(devs, 0), &spec, NULL, 0, 0};
    rc = rank_launch(&ctx, &reqc, &r, &err);
    rank_spawn_counts(&c0);
    CHECK(rc == 0 && settle(r, &err) == 1 && c0.spawned == c1.spawned + 1 && c0.forked == c1.forked,
          "after the hung exec: the next rank (job 54) started through the spawner again "
          "(spawned %llu, forked %llu)",
          (unsigned long long)c0.spawned, (unsigned long long)c0.forked);
    if (r) {
        wait_rank(r);
        rank_destroy(&r);
    }
    for (int d = 0; d < 3; d++)
        if (slots[d] >= 0)
            close(slots[d]);

    wdev_set_destroy(&devs);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (!check_failures && system(cmd) != 0)
        printf("# could not remove %s\n", tmpdir);
    return check_exit();
}
