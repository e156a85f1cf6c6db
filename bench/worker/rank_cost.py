#!/usr/bin/env python3
"""ftworker's cost per rank during a queued drain.

Starts ftsched and one ftworker with 8 emulated GPUs (tests/integration/ftcluster.py),
holds every GPU with `sleep` jobs, queues K one-GPU exec jobs running `true` as job
arrays, releases the GPUs and times the drain. Prints, per run: the drain rate, the
CPU time (user + system, from /proc/PID/stat) that ftworker and ftsched spent per
rank during the drain, and the load average (1 min) at its start; then the medians.
With --strace, one more drain runs under `strace -c` (ftworker's main thread) and
the system calls per rank are printed by name; its times are not figures.

Usage: rank_cost.py [--jobs K] [--runs N] [--spawn fork,vfork] [--strace]
Program paths come from $FTSCHED, $FTWORKER, $FTCTL. Python standard library only.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "sched"))
from ftcluster import Cluster, run_main  # noqa: E402
import sched_bench  # noqa: E402


def drain_once(k, spawn, strace_out=None):
    with Cluster("ft-rank-cost") as c:
        c.start_sched(["--db-sync", "normal"])
        w = c.start_worker("n", gpus=8, extra=["--spawn", spawn])
        c.wait_nodes_ready(["n"])
        env = dict(os.environ, FT_SCHEDULER=c.endpoint, FT_CONFIG=os.devnull, **c.key_env())
        holders = [c.submit("--name", "holder", "--", "sleep", "1000") for _ in range(8)]
        for h in holders:
            c.wait_state(h, ["RUNNING"])
        ids = sched_bench.submit_arrays(c, env, k, 1000)
        tracer = None
        if strace_out:
            tracer = subprocess.Popen(["strace", "-c", "-p", str(w.pid), "-o", strace_out],
                                      stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        load = os.getloadavg()[0]
        w0, s0 = sched_bench.cpu_ms(w.pid), sched_bench.cpu_ms(c.sched.pid)
        t0 = time.perf_counter()
        c.ftctl_ok("cancel", *map(str, holders))
        t1 = sched_bench.wait_drained(c.ftctl_path, env)
        w1, s1 = sched_bench.cpu_ms(w.pid), sched_bench.cpu_ms(c.sched.pid)
        if tracer:
            tracer.send_signal(2)
            tracer.wait()
        sched_bench.check_completed(c, ids)
        return {"load": load, "rate": k / (t1 - t0), "worker_us": 1000 * (w1 - w0) / k,
                "sched_us": 1000 * (s1 - s0) / k}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2000, help="queued jobs per drain (default 2000)")
    ap.add_argument("--runs", type=int, default=3, help="drains to take the median of (default 3)")
    ap.add_argument("--spawn", default="fork,vfork",
                    help="ftworker --spawn modes, comma-separated, taken in turn (default fork,vfork)")
    ap.add_argument("--strace", action="store_true", help="also count system calls per rank")
    args = ap.parse_args()
    if args.jobs < 1 or args.runs < 1:
        ap.error("--jobs and --runs must be at least 1")
    modes = [m.strip() for m in args.spawn.split(",") if m.strip()]
    if not modes or any(m not in ("fork", "vfork") for m in modes):
        ap.error("--spawn takes fork, vfork or both, comma-separated")
    runs = {m: [] for m in modes}
    for i in range(args.runs):
        for m in modes:  # interleaved, so that both see the same moments
            f = drain_once(args.jobs, m)
            runs[m].append(f)
            print(f"run {i + 1}, --spawn {m}: load {f['load']:.1f}, drain {f['rate']:.0f} jobs/s, "
                  f"ftworker {f['worker_us']:.0f} us CPU per rank, ftsched {f['sched_us']:.0f} us",
                  flush=True)
    for m in modes:
        med = {k: statistics.median(r[k] for r in runs[m]) for k in runs[m][0]}
        print(f"--spawn {m}, median of {args.runs} (K = {args.jobs}): drain {med['rate']:.0f} "
              f"jobs/s, ftworker {med['worker_us']:.0f} us CPU per rank, ftsched "
              f"{med['sched_us']:.0f} us")
    if args.strace and not shutil.which("strace"):
        print("strace is not installed: system calls per rank not counted")
    elif args.strace:
        with tempfile.NamedTemporaryFile(suffix=".strace") as t:
            drain_once(args.jobs, modes[0], t.name)
            calls = {}
            for line in open(t.name):
                p = line.split()
                if len(p) >= 5 and p[0][0].isdigit() and p[-1] != "total":
                    calls[p[-1]] = int(p[3])
        per = sorted(((n / args.jobs, name) for name, n in calls.items()), reverse=True)
        print(f"system calls per rank (ftworker's main thread, --spawn {modes[0]}): {sum(n for n, _ in per):.1f}: " +
              ", ".join(f"{name} {n:.1f}" for n, name in per if n >= 0.05))
    return 0


if __name__ == "__main__":
    run_main(main)
