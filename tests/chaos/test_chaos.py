#!/usr/bin/env python3
"""Chaos: kill ftsched or a worker at random moments, or cut a worker off
(SIGSTOP past the liveness window, then SIGCONT), while multi-rank jobs run.
Seeded (argv[1] or $FT_CHAOS_SEED) and bounded ($FT_CHAOS_CYCLES, default 24).

After each ftsched kill and restart: no job was requeued (ranks kept
running, workers reported them, the scheduler adopted them).
At the end, with everything healthy again:
- every submitted job exists once (submits retried through a scheduler kill
  carry one request id) and has COMPLETED;
- no device was allocated twice: per (node, device) the allocation intervals
  never overlap, and none is left open;
- PRAGMA integrity_check is ok, the journal is WAL;
- the GPU-seconds `ftctl usage --by job` bills equal the allocations' sums;
- no rank of an attempt that moved elsewhere is still alive.
Prints the figures: cycles survived, detection time of a lost worker, work
lost per failure (steps run again after a requeue), jobs and requeues.

Python standard library only; runs the real programs through ftcluster.
"""
import json
import os
import random
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from ftcluster import Cluster, SkipTest, TestFailure, check  # noqa: E402

HB_MS, LIVENESS = 200, 5          # a worker is lost after 1 s of silence
STEPS, STEP_S, CKPT_EVERY = 24, 0.25, 4
NODES = ["c1", "c2", "c3"]         # 2 emulated GPUs each

# One rank: resume from its checkpoint, run the remaining steps, checkpoint
# every CKPT_EVERY steps; every step run is logged so re-done work is counted.
RANK_SH = (
    'c="$CHAOS_DIR/ckpt-$FT_JOB_ID-$FT_RANK"; s=$(cat "$c" 2>/dev/null || echo 0); '
    f'while [ "$s" -lt {STEPS} ]; do sleep {STEP_S}; s=$((s+1)); '
    'echo "$FT_ATTEMPT $s" >> "$CHAOS_DIR/work-$FT_JOB_ID-$FT_RANK"; '
    f'if [ $((s % {CKPT_EVERY})) -eq 0 ]; then echo $s > "$c.tmp.$$" && mv "$c.tmp.$$" "$c"; fi; '
    'done')


def write_spec(c, i, gpus, per_node):
    spec = {"name": f"chaos{i}", "kind": "exec", "gpus": gpus, "device": "gpu",
            "command": ["sh", "-c", f'CHAOS_DIR="{c.dir}"; ' + RANK_SH], "max_retries": 100,
            "time_limit_s": 600}
    if per_node:
        spec["gpus_per_node"] = per_node
    p = os.path.join(c.dir, f"spec{i}.json")
    with open(p, "w") as f:
        json.dump(spec, f)
    return p


def submit(c, rng, i, submitted):
    gpus, per_node = rng.choice([(2, 1), (2, 2), (1, 0), (3, 1), (4, 2)])
    r = c.ftctl("--timeout", "2", "submit", write_spec(c, i, gpus, per_node), timeout=60)
    if r.returncode == 0 and r.stdout.strip().isdigit():
        submitted.append(int(r.stdout.strip()))
        return
    raise TestFailure(f"submit {i} failed: {r.returncode} {r.stderr.strip()}")


def node_state(c, name):
    r = c.ftctl("--timeout", "0.5", "-o", "json", "nodes")
    if r.returncode != 0:
        return None
    for n in json.loads(r.stdout)["nodes"]:
        if n["name"] == name:
            return n["state"]
    return None


def wait_lost(c, name, t0, limit=10):
    while time.monotonic() - t0 < limit:
        if node_state(c, name) == "lost":
            return time.monotonic() - t0
        time.sleep(0.05)
    raise TestFailure(f"worker {name} not declared lost within {limit} s")


def attempts(c):
    r = c.ftctl("-o", "json", "ls", "--all")
    if r.returncode != 0:
        raise TestFailure(f"ls failed: {r.stderr.strip()}")
    return {j["job_id"]: j["attempt"] for j in json.loads(r.stdout)["jobs"]}


def start_worker(c, name):
    c.start_worker(name, gpus=2)


def restart_sched(c):
    c.start_sched(extra=["--heartbeat-ms", str(HB_MS), "--liveness", str(LIVENESS)])


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("FT_CHAOS_SEED", "7"))
    cycles = int(os.environ.get("FT_CHAOS_CYCLES", "24"))
    rng = random.Random(seed)
    print(f"chaos: seed {seed}, {cycles} cycles", flush=True)
    figures = {"sched_kills": 0, "worker_kills": 0, "partitions": 0, "detect": []}
    with Cluster("chaos") as c:
        # the rank's checkpoints and logs live in the cluster dir (no path roots)
        restart_sched(c)
        for n in NODES:
            start_worker(c, n)
        c.wait_nodes_ready(NODES)
        submitted = []
        n_sub = 0
        for _ in range(4):
            submit(c, rng, n_sub, submitted)
            n_sub += 1
        done_cycles = 0
        for cyc in range(cycles):
            time.sleep(rng.uniform(0.5, 2.0))
            action = rng.choice(["sched", "sched", "worker", "worker", "partition"])
            if action == "sched":
                figures["sched_kills"] += 1
                before = attempts(c)
                c.kill(c.sched, signal.SIGKILL)
                time.sleep(rng.uniform(0, 1.0))
                restart_sched(c)
                time.sleep(1.0)  # workers reconnect and report their ranks
                after = attempts(c)
                moved = [j for j in before if after.get(j, 0) != before[j]]
                check(not moved, f"cycle {cyc}: ranks kept running through the ftsched kill "
                      f"(no job requeued)", str(moved))
                # a submit right after the restart: the retry must not duplicate
                submit(c, rng, n_sub, submitted)
                n_sub += 1
                print(f"cycle {cyc}: ftsched SIGKILLed and restarted", flush=True)
            elif action == "worker":
                name = rng.choice(NODES)
                figures["worker_kills"] += 1
                t0 = time.monotonic()
                c.kill(c.workers[name], signal.SIGKILL)
                d = wait_lost(c, name, t0)
                figures["detect"].append(d)
                start_worker(c, name)
                c.wait_nodes_ready([name], timeout=20)
                print(f"cycle {cyc}: worker {name} SIGKILLed, lost after {d:.2f} s, back", flush=True)
            else:
                name = rng.choice(NODES)
                figures["partitions"] += 1
                p = c.workers[name]
                t0 = time.monotonic()
                p.send_signal(signal.SIGSTOP)
                d = wait_lost(c, name, t0)
                figures["detect"].append(d)
                time.sleep(rng.uniform(0, 1.0))
                p.send_signal(signal.SIGCONT)
                c.wait_nodes_ready([name], timeout=20)
                print(f"cycle {cyc}: worker {name} cut off, lost after {d:.2f} s, reconnected",
                      flush=True)
            if rng.random() < 0.4:
                submit(c, rng, n_sub, submitted)
                n_sub += 1
            done_cycles += 1

        # healthy again: every job must finish
        deadline = time.monotonic() + 120
        states = {}
        while time.monotonic() < deadline:
            r = c.ftctl("-o", "json", "ls", "--all")
            if r.returncode == 0:
                states = {j["job_id"]: j["state"] for j in json.loads(r.stdout)["jobs"]}
                if states and all(s in ("COMPLETED", "FAILED", "CANCELLED") for s in states.values()):
                    break
            time.sleep(0.5)
        check(sorted(states) == sorted(submitted),
              f"{len(submitted)} submits made exactly {len(states)} jobs, the same ids",
              f"{sorted(submitted)} vs {sorted(states)}")
        bad = {j: s for j, s in states.items() if s != "COMPLETED"}
        check(not bad, "every job COMPLETED", str(bad))

        usage = json.loads(c.ftctl_ok("-o", "json", "usage", "--by", "job", "--since", "0").stdout)
        c.stop_all()

        db = sqlite3.connect(c.db)
        check(db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "PRAGMA integrity_check ok")
        check(db.execute("PRAGMA journal_mode").fetchone()[0] == "wal", "journal mode is WAL")
        rows = db.execute("SELECT node, device_index, start_ms, end_ms, job_id, attempt "
                          "FROM allocations ORDER BY node, device_index, start_ms").fetchall()
        check(all(r[3] is not None for r in rows), f"all {len(rows)} allocations are closed")
        overlaps = []
        for a, b in zip(rows, rows[1:]):
            if a[:2] == b[:2] and b[2] < a[3]:
                overlaps.append((a, b))
        check(not overlaps, "no device was allocated twice at once", str(overlaps[:3]))
        alloc_s = {}
        for r in rows:
            alloc_s[r[4]] = alloc_s.get(r[4], 0) + (r[3] - r[2]) / 1000.0
        billed = {int(row["key"]): row["gpu_seconds"] for row in usage["rows"]}
        diff = max((abs(billed.get(j, 0) - s) for j, s in alloc_s.items()), default=0)
        check(set(billed) == set(alloc_s) and diff < 0.01,
              f"billed GPU-seconds match the allocations (worst difference {diff:.4f} s, "
              f"total {sum(alloc_s.values()):.1f} s)", f"{billed} vs {alloc_s}")
        live = db.execute("SELECT COUNT(*) FROM ranks WHERE state IN ('starting','running')").fetchone()[0]
        check(live == 0, "no rank is left running in the database", str(live))
        requeues = db.execute("SELECT COALESCE(SUM(attempt - 1), 0) FROM jobs").fetchone()[0]

        # work lost: steps run beyond the STEPS each rank needed
        extra, ranks = 0, 0
        for f in os.listdir(c.dir):
            if f.startswith("work-"):
                n = sum(1 for _ in open(os.path.join(c.dir, f)))
                extra += n - STEPS
                ranks += 1
        check(ranks > 0, f"{ranks} ranks logged their work")
        # stale ranks still writing after the end would show up here
        sizes = {f: os.path.getsize(os.path.join(c.dir, f)) for f in os.listdir(c.dir)
                 if f.startswith("work-")}
        time.sleep(1.0)
        grew = [f for f in sizes if os.path.getsize(os.path.join(c.dir, f)) != sizes[f]]
        check(not grew, "no rank of a moved or finished job is still running", str(grew))
        det = figures["detect"]
        failures = max(1, requeues)
        print(f"figures: cycles survived {done_cycles}/{cycles} (ftsched SIGKILL "
              f"{figures['sched_kills']}, worker SIGKILL {figures['worker_kills']}, partitions "
              f"{figures['partitions']}); jobs {len(submitted)}, requeues {requeues}; detection of a "
              f"lost worker: mean {sum(det) / max(1, len(det)):.2f} s, max {max(det, default=0):.2f} s "
              f"(window {HB_MS * LIVENESS / 1000:.1f} s); work lost: {extra} steps of {STEP_S} s in "
              f"{failures} requeues = {extra * STEP_S / failures:.2f} s per requeue "
              f"(checkpoint every {CKPT_EVERY * STEP_S:.1f} s)", flush=True)
        c.ok = True
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SkipTest as e:
        print(f"skip: {e}", flush=True)
        sys.exit(77)
    except TestFailure as e:
        print(f"FAIL: {e}", flush=True)
        sys.exit(1)
