#!/usr/bin/env python3
"""Scheduler throughput benchmark.

Starts ftsched (temp database) and one ftworker with 8 emulated GPUs on
loopback, submits K one-GPU exec jobs running `true` one after another with
`ftctl submit` from a /bin/sh loop (one process per job, as a user's script would), and reports:

- submit rate: K / (time from the first submit to the last submit's return),
- drain rate: K / (time from the first submit until every job has ended),
- the cost of ftctl itself: process start alone (`ftctl --version`) and one
  round trip (`ftctl ping`), to tell the scheduler's cost from the client's,
- the scheduler's own drain rate, free of the client: all GPUs are held by
  `sleep` jobs while K more jobs queue up; the holders are cancelled and the
  time until the queue is empty is measured,
- bulk: the same K jobs as job arrays (`ftctl submit --array B`, B = --batch,
  default 1000), K/B processes: submit rate and drain rate,
- concurrent: the same K jobs, still one `ftctl submit` process each, from N
  shell loops at once (N = --submitters, default 4: several users or scripts
  submitting together): submit rate and drain rate.

The sequential drain can never pass the sequential submit rate (a job cannot
end before it is submitted, and the queue empties right after the last
submit); the drain target is the scheduler and worker's rate, which the
queued, bulk and concurrent parts measure.

Each of these runs once per ftsched --db-sync mode given (default: full, then
normal) and per client path (--path, default direct, then agent), each
against a fresh scheduler. On the agent path an `ftctl agent` started before
the figures holds one CURVE connection and every ftctl process of the loops
talks to it over its Unix socket (docs/operations.md); the direct path sets
FT_AGENT=off, so each process makes its own connection.

Targets (the brief): submit >= 400 jobs/s, drain >= 500 jobs/s.

Usage: sched_bench.py [--jobs K] [--batch B] [--submitters N]
                      [--db-sync full,normal] [--path direct,agent] [--insecure]
(K default 2000, or $FT_BENCH_JOBS). Program paths come from $FTSCHED,
$FTWORKER, $FTCTL (meson sets them). Python standard library only.
"""
import argparse
import contextlib
import json
import os
import platform
import pwd
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
from ftcluster import Cluster, TestFailure, run_main  # noqa: E402


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"load average {load} at the start")


def sh_quote(argv):
    return " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)


def loop_script(argv, n):
    """A /bin/sh script running argv n times, stopping at the first failure."""
    return f'i=0; while [ $i -lt {n} ]; do {sh_quote(argv)} || exit 1; i=$((i+1)); done'


def sh_loop(argv, n, env, cwd, out_path=None):
    """Runs argv n times from a /bin/sh loop (cheaper to start processes from
    than Python, like a user's script); returns the wall time in s. stdout
    goes to out_path (or nowhere); the loop stops at the first failure."""
    script = loop_script(argv, n)
    out = open(out_path, "w") if out_path else subprocess.DEVNULL
    try:
        t0 = time.perf_counter()
        r = subprocess.run(["/bin/sh", "-c", script], stdout=out, stderr=subprocess.PIPE,
                           text=True, env=env, cwd=cwd)
        dt = time.perf_counter() - t0
    finally:
        if out_path:
            out.close()
    if r.returncode != 0:
        raise TestFailure(f"{' '.join(argv)} failed in the loop: {r.stderr.strip()[-500:]}")
    return dt


def cpu_ms(pid):
    """User + system CPU ms of pid (its threads, not its children), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def wait_drained(ftctl, env, timeout=600):
    """Polls ping until nothing is pending or running; returns perf_counter()."""
    deadline = time.monotonic() + timeout
    while True:
        r = subprocess.run([ftctl, "-o", "json", "ping"], capture_output=True, text=True,
                           env=env)
        if r.returncode == 0:
            p = json.loads(r.stdout)
            if p["jobs_pending"] == 0 and p["jobs_running"] == 0:
                return time.perf_counter()
        if time.monotonic() > deadline:
            raise TestFailure(f"the queue did not drain within {timeout} s")
        time.sleep(0.01)


def submit_many(c, env, k):
    """k sequential `ftctl submit -- true` from a shell loop; returns the ids."""
    path = os.path.join(c.dir, "ids.txt")
    sh_loop([c.ftctl_path, "submit", "--", "true"], k, env, c.dir, path)
    with open(path) as f:
        ids = [int(x) for x in f.read().split()]
    if len(ids) != k:
        raise TestFailure(f"{k} submits printed {len(ids)} ids")
    return ids


def submit_concurrent(c, env, k, n):
    """k `ftctl submit -- true`, one process each, from n shell loops started
    together (the first k % n loops run one more); returns (ids, the wall time
    until the last loop ended)."""
    procs, outs = [], []
    t0 = time.perf_counter()
    try:
        for j in range(n):
            m = k // n + (1 if j < k % n else 0)
            script = loop_script([c.ftctl_path, "submit", "--", "true"], m)
            out = open(os.path.join(c.dir, f"ids-concurrent-{j}.txt"), "w+")
            outs.append(out)
            procs.append(subprocess.Popen(["/bin/sh", "-c", script], stdout=out,
                                          stderr=subprocess.PIPE, text=True, env=env, cwd=c.dir))
        errs = [p.communicate()[1] for p in procs]
        dt = time.perf_counter() - t0
        ids = []
        for p, err, out in zip(procs, errs, outs):
            if p.returncode != 0:
                raise TestFailure(f"a concurrent submit loop failed: {err.strip()[-500:]}")
            out.seek(0)
            ids += [int(x) for x in out.read().split()]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for out in outs:
            out.close()
    if len(ids) != k or len(set(ids)) != k:
        raise TestFailure(f"{k} concurrent submits printed {len(ids)} ids "
                          f"({len(set(ids))} distinct)")
    return ids, dt


def submit_arrays(c, env, k, batch):
    """k jobs as ceil(k / batch) sequential `ftctl submit --array` calls from a
    shell loop; returns the ids."""
    path = os.path.join(c.dir, "ids-bulk.txt")
    quoted = sh_quote([c.ftctl_path])
    script = "; ".join(f"{quoted} submit --array {min(batch, k - i)} -- true || exit 1"
                       for i in range(0, k, batch))
    with open(path, "w") as out:
        r = subprocess.run(["/bin/sh", "-c", script], stdout=out, stderr=subprocess.PIPE,
                           text=True, env=env, cwd=c.dir)
    if r.returncode != 0:
        raise TestFailure(f"submit --array failed: {r.stderr.strip()[-500:]}")
    with open(path) as f:
        ids = [int(x) for x in f.read().split()]
    if len(ids) != k or len(set(ids)) != k:
        raise TestFailure(f"{k} jobs in arrays printed {len(ids)} ids ({len(set(ids))} distinct)")
    return ids


def check_completed(c, ids):
    jobs = c.ftctl_json("ls", "--all")["jobs"]
    want = set(ids)
    done = sum(1 for j in jobs if j["job_id"] in want and j["state"] == "COMPLETED")
    if len(want) != len(ids) or done != len(ids):
        raise TestFailure(f"{len(want)} distinct ids, {done} of {len(ids)} COMPLETED")


def start_agent(c, env):
    """Starts an ftctl agent for this cluster under env's XDG_RUNTIME_DIR;
    returns its pid."""
    r = subprocess.run([c.ftctl_path, "agent", "start", "--persist", "0"], capture_output=True,
                       text=True, env=env)
    if r.returncode != 0:
        raise TestFailure(f"ftctl agent start failed: {r.stderr}")
    return agent_status(c, env)["pid"]


def kill_agent(pid):
    """Ends an agent a failed run left behind (a no-op when it is gone)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def agent_status(c, env):
    r = subprocess.run([c.ftctl_path, "-o", "json", "agent", "status"], capture_output=True,
                       text=True, env=env)
    if r.returncode != 0:
        raise TestFailure(f"ftctl agent status failed: {r.stderr}")
    return json.loads(r.stdout)


def run_once(args, db_sync, path, where, dirs):
    """The whole benchmark against one fresh ftsched --db-sync db_sync, the
    ftctl processes going direct or through an agent (path); prints its figures
    and returns them. A run that succeeds appends its directory to dirs, for
    the caller to remove once every run is done."""
    k = args.jobs
    with Cluster("ft-bench", insecure=args.insecure, keep=True) as c, \
            contextlib.ExitStack() as cleanup:
        c.start_sched(["--db-sync", db_sync])
        c.start_worker("bench-node", gpus=args.gpus, extra=os.environ.get("FT_BENCH_WORKER_ARGS", "").split())
        c.wait_nodes_ready(["bench-node"])
        env = dict(os.environ, FT_SCHEDULER=c.endpoint, FT_CONFIG=os.devnull, FT_AGENT="off",
                   **c.key_env())
        env.pop("FT_AGENT_SOCKET", None)
        # A login shell's environment has USER; without it (a bare container)
        # every ftctl would look the name up through NSS instead.
        if not env.get("USER"):
            env["USER"] = pwd.getpwuid(os.getuid()).pw_name
        if path == "agent":
            xdg = os.path.join(c.dir, "xdg")
            os.mkdir(xdg, 0o700)
            env.update(FT_AGENT="auto", XDG_RUNTIME_DIR=xdg)
            cleanup.callback(kill_agent, start_agent(c, env))
        ftctl = c.ftctl_path
        daemons = {"ftsched": c.sched.pid, "ftworker": c.workers["bench-node"].pid}
        if path == "agent":
            daemons["agent"] = agent_status(c, env)["pid"]

        start_ms = sh_loop([ftctl, "--version"], 200, env, c.dir) * 1000 / 200
        ping_ms = sh_loop([ftctl, "ping"], 200, env, c.dir) * 1000 / 200
        true_ms = sh_loop(["/bin/true"], 200, env, c.dir) * 1000 / 200

        cpu0 = {n: cpu_ms(p) for n, p in daemons.items()}
        t_first = time.perf_counter()
        ids = submit_many(c, env, k)
        t_submitted = time.perf_counter()
        t_drained = wait_drained(ftctl, env)
        cpu1 = {n: cpu_ms(p) for n, p in daemons.items()}
        check_completed(c, ids)

        # The scheduler alone: hold every GPU, queue k jobs, release, time it.
        holders = [c.submit("--name", "holder", "--", "sleep", "1000")
                   for _ in range(args.gpus)]
        for h in holders:
            c.wait_state(h, ["RUNNING"])
        t_q0 = time.perf_counter()
        ids2 = submit_many(c, env, k)
        t_release = time.perf_counter()
        c.ftctl_ok("cancel", *map(str, holders))
        t_drained2 = wait_drained(ftctl, env)
        check_completed(c, ids2)

        # Bulk: the same k jobs as arrays of --batch.
        t_b0 = time.perf_counter()
        ids3 = submit_arrays(c, env, k, args.batch)
        t_b1 = time.perf_counter()
        t_b2 = wait_drained(ftctl, env)
        check_completed(c, ids3)

        # Concurrent: the same k jobs, one ftctl each, from --submitters loops.
        t_c0 = time.perf_counter()
        ids4, csubmit_s = submit_concurrent(c, env, k, args.submitters)
        t_c2 = wait_drained(ftctl, env)
        check_completed(c, ids4)

        if path == "agent":
            st = agent_status(c, env)
            if st["relayed"] < 3 * k:
                raise TestFailure(f"the agent relayed {st['relayed']} requests, fewer than "
                                  f"the {3 * k} single submits: the agent path was not taken")
            subprocess.run([ftctl, "agent", "stop"], capture_output=True, env=env)

        submit_s = t_submitted - t_first
        drain_s = t_drained - t_first
        f = {"db_sync": db_sync, "path": path, "version_ms": start_ms, "ping_ms": ping_ms,
             "true_ms": true_ms,
             "submit": k / submit_s, "drain": k / drain_s, "submit_queued": k / (t_release - t_q0),
             "queued_drain": k / (t_drained2 - t_release), "bulk_submit": k / (t_b1 - t_b0),
             "bulk_drain": k / (t_b2 - t_b0), "conc_submit": k / csubmit_s,
             "conc_drain": k / (t_c2 - t_c0)}
        print(f"machine:        {where}")
        print(f"jobs (K):       {k} one-GPU exec jobs running 'true', 1 worker with "
              f"{args.gpus} emulated GPUs, {'no CURVE' if args.insecure else 'CURVE on'}, "
              f"ftsched --db-sync {db_sync}, ftctl {path}"
              f"{' (through one ftctl agent)' if path == 'agent' else ' (FT_AGENT=off)'}")
        print(f"process start:  {true_ms:.2f} ms for /bin/true, {start_ms:.2f} ms for "
              f"ftctl --version (libzmq and its libraries loaded), from a sh loop")
        print(f"ftctl ping:     {ping_ms:.2f} ms per process incl. one round trip")
        print(f"submit:         {submit_s:.2f} s, {k / submit_s:.0f} jobs/s "
              f"({1000 * submit_s / k:.2f} ms per ftctl submit; target >= 400 jobs/s)")
        print(f"drain:          {drain_s:.2f} s from first submit to empty queue, "
              f"{k / drain_s:.0f} jobs/s (target >= 500 jobs/s)")
        print(f"after submits:  {t_drained - t_submitted:.2f} s until the queue was empty")
        per_job = ", ".join(f"{n} {(cpu1[n] - cpu0[n]) * 1000 / k:.0f}" for n in daemons)
        print(f"daemon CPU:     {per_job} us per job in the submit and drain "
              f"(all threads; /proc, 10 ms ticks)")
        print(f"submit, queued: {k / (t_release - t_q0):.0f} jobs/s while every GPU was held "
              f"(no jobs running meanwhile)")
        print(f"queued drain:   {t_drained2 - t_release:.2f} s for {k} queued jobs after the "
              f"GPUs were released, {k / (t_drained2 - t_release):.0f} jobs/s (the scheduler "
              f"and worker alone)")
        print(f"bulk submit:    {t_b1 - t_b0:.3f} s for {k} jobs as "
              f"{(k + args.batch - 1) // args.batch} 'ftctl submit --array' of <= {args.batch}, "
              f"{f['bulk_submit']:.0f} jobs/s")
        print(f"bulk drain:     {t_b2 - t_b0:.2f} s from the first array submit to empty queue, "
              f"{f['bulk_drain']:.0f} jobs/s")
        print(f"concurrent:     {args.submitters} sh loops at once, one 'ftctl submit' per job: "
              f"submit {f['conc_submit']:.0f} jobs/s, drain {t_c2 - t_c0:.2f} s from the first "
              f"submit to empty queue, {f['conc_drain']:.0f} jobs/s")
        print(f"all {4 * k} jobs COMPLETED", flush=True)
        dirs.append(c.dir)  # a failed run's directory stays, with its logs
        return f


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("FT_BENCH_JOBS", "2000")),
                    help="jobs to submit (default 2000)")
    ap.add_argument("--gpus", type=int, default=8, help="emulated GPUs on the worker (default 8)")
    ap.add_argument("--batch", type=int, default=1000,
                    help="jobs per 'submit --array' in the bulk part (1..1000, default 1000)")
    ap.add_argument("--submitters", type=int, default=4,
                    help="shell loops submitting at once in the concurrent part (default 4)")
    ap.add_argument("--db-sync", default="full,normal",
                    help="ftsched --db-sync modes to run, comma-separated (default full,normal)")
    ap.add_argument("--path", default="direct,agent",
                    help="how ftctl reaches ftsched: direct, agent or both, comma-separated "
                         "(default direct,agent)")
    ap.add_argument("--insecure", action="store_true",
                    help="run without CURVE (to see what the handshake costs per ftctl)")
    args = ap.parse_args()
    if args.jobs < 1 or args.gpus < 1:
        ap.error("--jobs and --gpus must be at least 1")
    if not 1 <= args.submitters <= min(64, args.jobs):
        ap.error("--submitters must be in 1..64 and at most --jobs")
    if not 1 <= args.batch <= 1000:
        ap.error("--batch must be in 1..1000")
    modes = [m.strip() for m in args.db_sync.split(",") if m.strip()]
    if not modes or any(m not in ("full", "normal") for m in modes):
        ap.error("--db-sync takes full, normal or both, comma-separated")
    paths = [p.strip() for p in args.path.split(",") if p.strip()]
    if not paths or any(p not in ("direct", "agent") for p in paths):
        ap.error("--path takes direct, agent or both, comma-separated")

    where = machine()
    figures = []
    # Each run leaves 3K rank logs (and its database) behind. They are removed
    # only after the last run: on ext4 without a journal (this VM's root) a
    # new inode is not taken from the ones freed in the last 60 to 360 s, and
    # each file the next run's worker creates walked past the thousands just
    # deleted (`recently_deleted` in a profile), which cost the runs after the
    # first 8 to 15 % of their submit and drain rates.
    dirs = []
    try:
        for m in modes:
            for p in paths:
                figures.append(run_once(args, m, p, where, dirs))
                print()
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    if len(figures) > 1:
        keys = ["submit", "drain", "submit_queued", "queued_drain", "bulk_submit", "bulk_drain",
                "conc_submit", "conc_drain"]
        print("jobs/s                  " + "".join(f"{k:>14}" for k in keys))
        for f in figures:
            print(f"db_sync {f['db_sync']:<7}{f['path']:<9}" +
                  "".join(f"{f[k]:>14.0f}" for k in keys))
    return 0


if __name__ == "__main__":
    run_main(main)
