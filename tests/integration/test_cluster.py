#!/usr/bin/env python3
"""End-to-end tests: the real ftsched and ftworker on loopback, driven only
through ftctl, with faults injected on purpose (a failing command, a cancel, a
worker and the scheduler killed with SIGKILL, bad input).

Run one test: test_cluster.py NAME (meson registers each NAME separately).
Exit 0 pass, 1 fail, 77 skip (the daemons are not built).
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ftcluster import (Cluster, SkipTest, TestFailure, check, free_port, pid_alive,  # noqa: E402
                       run_tests)

PY = sys.executable


def submit_complete():
    """submit -> run -> COMPLETED; logs show the output; ls, show, nodes work."""
    with Cluster("submit") as c:
        c.start_sched()
        c.start_worker("n1", gpus=2)
        nodes = c.wait_nodes_ready(["n1"])
        # CURVE settings from flags and from the config file, not only $FT_KEY
        kf, sp = c.key_env().get("FT_KEY"), c.key_env().get("FT_SERVER_KEY")
        if kf:
            no_env = {"FT_KEY": "", "FT_SERVER_KEY": ""}
            r = c.ftctl("--key", kf, "--server-key", sp, "ping", env=no_env)
            check(r.returncode == 0, "--key and --server-key flags reach the scheduler",
                  r.stdout + r.stderr)
            r = c.ftctl("ping", env=no_env)
            check(r.returncode == 3, "without any key a secure scheduler is unreachable (3)",
                  f"{r.returncode} {r.stderr}")
            conf = os.path.join(c.dir, "ftctl.conf")
            with open(conf, "w") as f:
                f.write(f"key = {kf}\nserver_key = {sp}\n")
            r = c.ftctl("ping", env=dict(no_env, FT_CONFIG=conf))
            check(r.returncode == 0, "config keys 'key' and 'server_key' work",
                  r.stdout + r.stderr)
        n1 = [n for n in nodes["nodes"] if n["name"] == "n1"][0]
        ndev = len(n1["devices"])
        if any(d["kind"] == "gpu" for d in n1["devices"]):
            print(f"   real GPUs found ({ndev}): ftworker ignores --emulate-gpus")
        else:
            check(ndev == 2 and all(d["kind"] == "emulated" for d in n1["devices"]),
                  "node n1 reports 2 emulated devices", json.dumps(n1))

        a = c.submit("--", "true")
        b = c.submit("--name", "hello", "--", "sh", "-c", "echo hi; echo there >&2")
        r = c.ftctl("wait", str(a), str(b), timeout=60)
        check(r.returncode == 0, "wait on two good jobs exits 0",
              f"rc={r.returncode} out={r.stdout} err={r.stderr}")
        check(f"job {a} COMPLETED" in r.stdout and f"job {b} COMPLETED" in r.stdout,
              "wait prints both jobs COMPLETED", r.stdout)

        ja = c.job(a)
        check(ja["state"] == "COMPLETED" and ja["exit_code"] == 0 and ja["attempt"] == 1,
              f"job {a} COMPLETED, exit code 0, attempt 1", json.dumps(ja)[:800])
        check(ja["spec"]["command"] == ["true"] and ja["kind"] == "exec",
              "the spec is kept as submitted (exec, command ['true'])", json.dumps(ja["spec"]))
        check(ja["nodes"] == ["n1"], "the job ran on n1", str(ja["nodes"]))

        logs = c.ftctl_ok("logs", str(b)).stdout
        check("hi" in logs.split(), "logs of the echo job contain 'hi'", repr(logs))
        check("there" in logs.split(), "stderr goes to the same log", repr(logs))
        lj = c.ftctl_json("logs", str(b))
        check(lj["eof"] is True and "hi" in lj["data"], "logs -o json: data and eof", str(lj))
        # -f on a finished rank ends by itself at eof
        r = c.ftctl("logs", "-f", str(b), timeout=15)
        check(r.returncode == 0 and "hi" in r.stdout, "logs -f on an ended rank returns", r.stderr)

        # follow a rank that is still writing
        d = c.submit("--", "sh", "-c", "echo first; sleep 1; echo second")
        r = c.ftctl("logs", "-f", str(d), timeout=30)
        check(r.returncode == 0 and r.stdout.split() == ["first", "second"],
              "logs -f streams until the rank ends", f"{r.stdout!r} {r.stderr!r}")

        ls = c.ftctl_ok("ls").stdout
        check(ls.splitlines()[0].split()[:5] == ["ID", "NAME", "USER", "TEAM", "STATE"],
              "ls prints a header", ls)
        check(any(line.split()[:2] == [str(b), "hello"] for line in ls.splitlines()),
              "ls lists the named job", ls)
        lsj = c.ftctl_json("ls", "--all")
        check({a, b, d} <= {j["job_id"] for j in lsj["jobs"]}, "ls --all -o json lists every job",
              str(lsj)[:500])
        lsr = c.ftctl_json("ls", "--state", "running")
        check(lsr["jobs"] == [], "ls --state running is empty once all ended", str(lsr)[:500])
        show = c.ftctl_ok("show", str(b)).stdout
        check("COMPLETED" in show and "command:" in show, "show prints state and command", show)
        nodes_txt = c.ftctl_ok("nodes").stdout
        check("n1" in nodes_txt and f"{ndev}/{ndev}" in nodes_txt,
              f"nodes shows n1 with {ndev}/{ndev} free", nodes_txt)
        r = c.ftctl_ok("nodes", "-o", "json")
        check(json.loads(r.stdout)["nodes"][0]["name"] == "n1",
              "-o json may follow the subcommand (ftctl nodes -o json)", r.stdout[:300])
        p = c.ftctl_json("ping")
        check(p["proto"] == 1 and p["nodes_ready"] == 1, "ping: protocol 1, one node ready",
              str(p))


def failing_job():
    """A command exiting 3 -> FAILED with a reason; wait exits 4."""
    with Cluster("fail") as c:
        c.start_sched()
        c.start_worker("n1", gpus=1)
        c.wait_nodes_ready(["n1"])
        j = c.submit("--", "sh", "-c", "echo about to fail; exit 3")
        r = c.ftctl("wait", str(j), timeout=60)
        check(r.returncode == 4, "wait on a failing job exits 4",
              f"rc={r.returncode} {r.stdout} {r.stderr}")
        check("FAILED" in r.stderr, "wait says the job FAILED", r.stderr)
        job = c.job(j)
        check(job["state"] == "FAILED", "job state FAILED", job["state"])
        check(job["exit_code"] == 3, "exit code 3 recorded", str(job["exit_code"]))
        check(bool(job["reason"]), "a reason is recorded", repr(job["reason"]))
        check(job["attempt"] == 1, "not requeued (requeue_on_failure is off)", str(job["attempt"]))
        r = c.ftctl("watch", str(j), timeout=30)
        check(r.returncode == 4 and "FAILED" in r.stdout, "watch of a failed job exits 4",
              f"{r.returncode} {r.stdout}")
        # a missing program fails at launch, with the reason saying so
        k = c.submit("--", "/nonexistent/program")
        r = c.ftctl("wait", str(k), timeout=60)
        job = c.job(k)
        check(r.returncode == 4 and job["state"] == "FAILED",
              "a job whose program does not exist FAILED", json.dumps(job)[:600])
        check(job["attempt"] == 1 and "cannot run" in job["reason"],
              "a missing program is the job's fault: no retries", json.dumps(job)[:600])
        print(f"   reason: {job['reason']!r}")
        # a time limit ends a job that runs too long
        spec = os.path.join(c.dir, "limit.json")
        with open(spec, "w") as f:
            json.dump({"kind": "exec", "command": ["sleep", "60"], "time_limit_s": 1,
                       "max_retries": 0}, f)
        t0 = time.monotonic()
        k = c.submit(spec)
        r = c.ftctl("wait", "--timeout", "30", str(k), timeout=60)
        job = c.job(k)
        dt = time.monotonic() - t0
        check(r.returncode == 4 and job["state"] == "FAILED" and dt < 20,
              f"time_limit_s 1 stops a 'sleep 60' ({dt:.1f} s, FAILED)",
              json.dumps(job)[:800])
        print(f"   reason: {job['reason']!r}")


def cancel_running():
    """cancel of a running `sleep 600` -> CANCELLED and its process gone."""
    with Cluster("cancel") as c:
        c.start_sched()
        c.start_worker("n1", gpus=1)
        c.wait_nodes_ready(["n1"])
        j = c.submit("--", "sleep", "600")
        job = c.wait_state(j, ["RUNNING"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (job["ranks"] and job["ranks"][0]["pid"]):
            time.sleep(0.1)
            job = c.job(j)
        pid = job["ranks"][0]["pid"]
        check(pid_alive(pid), f"rank 0 runs as pid {pid}")
        queued = c.submit("--", "true")  # waits for the one device
        # logs -f of a job that is cancelled before it starts must not wait for ever
        p2 = c.submit("--", "true")
        env = dict(os.environ, FT_SCHEDULER=c.endpoint, FT_CONFIG=os.devnull, **c.key_env())
        follower = subprocess.Popen([c.ftctl_path, "logs", "-f", str(p2)], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        c.ftctl_ok("cancel", str(p2))
        try:
            out, err = follower.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            follower.kill()
            follower.communicate()
            raise TestFailure("logs -f of a job cancelled while pending did not return")
        check(follower.returncode == 1 and "bad_state" in err,
              "logs -f of a job cancelled while pending ends with bad_state",
              f"{follower.returncode} {err}")
        r = c.ftctl("cancel", str(j))
        check(r.returncode == 0 and "CANCELLED" in r.stdout, "cancel exits 0, says CANCELLED",
              f"{r.returncode} {r.stdout} {r.stderr}")
        check(c.job(j)["state"] == "CANCELLED", "the job is CANCELLED at once")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        check(not pid_alive(pid), f"the sleep process {pid} is gone")
        r = c.ftctl("wait", str(j))
        check(r.returncode == 4, "wait on a cancelled job exits 4", str(r.returncode))
        r = c.ftctl("wait", "--timeout", "30", str(queued))
        check(r.returncode == 0, "the device is free again: the next job completes",
              f"{r.returncode} {r.stderr}")
        r = c.ftctl("cancel", str(j))
        check(r.returncode == 1 and r.stderr.strip(),
              "cancelling a finished job again is an error (exit 1)",
              f"{r.returncode} {r.stderr}")


def requeue_worker_killed():
    """2 workers; the one running the job is SIGKILLed; the job is requeued on
    the other, attempt 2, and completes."""
    with Cluster("requeue") as c:
        c.start_sched()
        c.start_worker("n1", gpus=1)
        c.start_worker("n2", gpus=1)
        c.wait_nodes_ready(["n1", "n2"])
        j = c.submit("--", "sleep", "3")
        job = c.wait_state(j, ["RUNNING"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (job["ranks"] and job["ranks"][0]["pid"]):
            time.sleep(0.05)
            job = c.job(j)
        pid = job["ranks"][0]["pid"]
        first = job["nodes"][0]
        other = "n2" if first == "n1" else "n1"
        print(f"   job {j} runs on {first} as pid {pid}; killing that worker")
        c.kill(c.workers[first], signal.SIGKILL)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5 and pid_alive(pid):
            time.sleep(0.05)
        check(not pid_alive(pid), "the rank dies with its worker (no orphan keeps the device)")
        job = c.wait_state(j, ["COMPLETED", "FAILED", "CANCELLED"], timeout=45)
        print(f"   ended {time.monotonic() - t0:.1f} s after the kill")
        check(job["state"] == "COMPLETED", "the job completed after the requeue",
              json.dumps(job)[:1500])
        check(job["attempt"] == 2, "attempt 2", str(job["attempt"]))
        check(job["nodes"] == [other], f"the second attempt ran on {other}", str(job["nodes"]))
        attempts = sorted({a["attempt"] for a in job["allocations"]})
        check(attempts == [1, 2], "allocations exist for attempts 1 and 2",
              json.dumps(job["allocations"]))
        check(all(a["end"] is not None for a in job["allocations"]),
              "every allocation is closed", json.dumps(job["allocations"]))
        nodes = c.ftctl_json("nodes")["nodes"]
        state = {n["name"]: n["state"] for n in nodes}
        check(state.get(first) == "lost", f"{first} is marked lost", str(state))
        c.start_worker(first, gpus=1)
        c.wait_nodes_ready([first, other])
        print(f"   {first} restarted and is ready again")
        k = c.submit("--gpus", "2", "--", "true")
        r = c.ftctl("wait", "--timeout", "30", str(k))
        check(r.returncode == 0, "a 2-GPU job uses both nodes again", r.stderr)


def scheduler_restart():
    """ftsched SIGKILLed and restarted mid-job: the job keeps running and
    completes once; no second run, no second attempt."""
    with Cluster("restart") as c:
        c.start_sched()
        c.start_worker("n1", gpus=1)
        c.wait_nodes_ready(["n1"])
        marker = os.path.join(c.dir, "runs.txt")
        j = c.submit("--", "sh", "-c", f"echo run >> {marker}; sleep 5")
        job = c.wait_state(j, ["RUNNING"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not os.path.exists(marker):
            time.sleep(0.05)
        env = dict(os.environ, FT_SCHEDULER=c.endpoint, FT_CONFIG=os.devnull, **c.key_env())
        waiter = subprocess.Popen([c.ftctl_path, "wait", str(j)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        c.kill(c.sched, signal.SIGKILL)
        check(c.sched.returncode == -signal.SIGKILL, "ftsched killed with SIGKILL")
        t0 = time.monotonic()
        r = c.ftctl("--timeout", "1", "ls", timeout=20)
        dt = time.monotonic() - t0
        check(r.returncode == 3 and dt < 3, f"while it is down ftctl exits 3 ({dt:.1f} s)",
              f"{r.returncode} {r.stderr}")
        c.start_sched()
        print("   ftsched restarted on the same database and port")
        j2 = c.job(j)
        check(j2["state"] in ("RUNNING", "COMPLETED"), "after the restart the job is still known "
              "and not requeued", j2["state"])
        job = c.wait_state(j, ["COMPLETED", "FAILED", "CANCELLED"], timeout=45)
        check(job["state"] == "COMPLETED", "the job completed", json.dumps(job)[:1500])
        check(job["attempt"] == 1, "still attempt 1 (not run twice)", str(job["attempt"]))
        try:
            out, err = waiter.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            waiter.kill()
            out, err = waiter.communicate()
        check(waiter.returncode == 0 and f"job {j} COMPLETED" in out,
              "an 'ftctl wait' started before the kill rode out the restart",
              f"{waiter.returncode} {out} {err}")
        with open(marker) as f:
            runs = f.read().split()
        check(runs == ["run"], "the command ran exactly once", str(runs))
        check(len(job["allocations"]) == 1 and job["allocations"][0]["end"] is not None,
              "one allocation, closed", json.dumps(job["allocations"]))
        k = c.submit("--", "true")
        r = c.ftctl("wait", "--timeout", "30", str(k))
        check(r.returncode == 0, "a new job after the restart completes", r.stderr)


def gang_two_nodes():
    """A 2-GPU job on two 1-GPU workers: one gang, one rank per node, each rank
    told its rank and the world size; logs of rank 1 come from the other node."""
    with Cluster("gang") as c:
        c.start_sched()
        c.start_worker("n1", gpus=1)
        c.start_worker("n2", gpus=1)
        c.wait_nodes_ready(["n1", "n2"])
        j = c.submit("--gpus", "2", "--", "sh", "-c",
                     'echo "rank=$FT_RANK world=$FT_WORLD_SIZE job=$FT_JOB_ID '
                     'attempt=$FT_ATTEMPT"')
        r = c.ftctl("wait", "--timeout", "30", str(j))
        check(r.returncode == 0, "the 2-rank job completes", f"{r.returncode} {r.stderr}")
        job = c.job(j)
        check(sorted(job["nodes"]) == ["n1", "n2"], "the gang spans n1 and n2", str(job["nodes"]))
        ranks = sorted((x["rank"], x["node"]) for x in job["ranks"])
        check([x[0] for x in ranks] == [0, 1] and ranks[0][1] != ranks[1][1],
              "ranks 0 and 1 on different nodes", str(ranks))
        for rank in (0, 1):
            out = c.ftctl_ok("logs", "--rank", str(rank), str(j)).stdout.strip()
            check(out == f"rank={rank} world=2 job={j} attempt=1",
                  f"rank {rank} saw FT_RANK={rank}, FT_WORLD_SIZE=2, its job id and attempt",
                  repr(out))
        check(len(job["allocations"]) == 2, "two allocations, one per rank",
              json.dumps(job["allocations"]))
        r = c.ftctl("submit", "--gpus", "3", "--", "true")
        check(r.returncode == 1 and "unsatisfiable" in r.stderr,
              "3 GPUs on a 2-GPU cluster: unsatisfiable", r.stderr)


def priority_order():
    """With the only device busy, a later job of higher priority starts before
    an earlier one of lower priority."""
    with Cluster("prio") as c:
        c.start_sched()
        c.start_worker("n1", gpus=1)
        c.wait_nodes_ready(["n1"])
        order = os.path.join(c.dir, "order.txt")
        hold = c.submit("--", "sleep", "600")
        c.wait_state(hold, ["RUNNING"])
        low = c.submit("--priority", "-5", "--name", "low", "--", "sh", "-c",
                       f"echo low >> {order}")
        mid = c.submit("--name", "mid", "--", "sh", "-c", f"echo mid >> {order}")
        high = c.submit("--priority", "10", "--name", "high", "--", "sh", "-c",
                        f"echo high >> {order}")
        pend = c.ftctl_json("ls", "--state", "pending")["jobs"]
        check(sorted(j["job_id"] for j in pend) == [low, mid, high],
              "three jobs wait for the busy device", str(pend)[:500])
        c.ftctl_ok("cancel", str(hold))
        r = c.ftctl("wait", "--timeout", "30", str(low), str(mid), str(high))
        check(r.returncode == 0, "all three complete", f"{r.returncode} {r.stderr}")
        with open(order) as f:
            ran = f.read().split()
        check(ran == ["high", "mid", "low"], "they ran by priority: high, mid, low", str(ran))
        prios = {j["job_id"]: j["priority"] for j in c.ftctl_json("ls", "--all")["jobs"]}
        check(prios[low] == -5 and prios[high] == 10, "priorities recorded as submitted",
              str(prios))


def bad_inputs():
    """Malformed specs, unknown keys, unsatisfiable requests, unknown ids and an
    unreachable scheduler get clear errors; the daemons keep running."""
    with Cluster("bad") as c:
        c.start_sched()
        c.start_worker("n1", gpus=2)
        c.wait_nodes_ready(["n1"])

        bad = os.path.join(c.dir, "bad.json")
        with open(bad, "w") as f:
            f.write('{"kind": "exec", "command": ["true"],')
        r = c.ftctl("submit", bad)
        check(r.returncode == 1 and "bad_json" in r.stderr, "malformed JSON: exit 1, bad_json",
              f"{r.returncode} {r.stderr}")
        dup = os.path.join(c.dir, "dup.json")
        with open(dup, "w") as f:
            f.write('{"kind": "exec", "command": ["true"], "gpus": 1, "gpus": 2}')
        r = c.ftctl("submit", dup)
        check(r.returncode == 1 and "bad_json" in r.stderr, "a repeated key: exit 1, bad_json",
              f"{r.returncode} {r.stderr}")
        unk = os.path.join(c.dir, "unknown.json")
        with open(unk, "w") as f:
            json.dump({"kind": "exec", "command": ["true"], "gpuz": 1}, f)
        r = c.ftctl("submit", unk)
        check(r.returncode == 1 and "gpuz" in r.stderr, "unknown spec key named in the error",
              f"{r.returncode} {r.stderr}")
        print(f"   {r.stderr.strip()}")
        r = c.ftctl("submit", os.path.join(c.dir, "missing.json"))
        check(r.returncode == 1 and "missing.json" in r.stderr, "missing file named",
              f"{r.returncode} {r.stderr}")
        r = c.ftctl("submit", "--gpus", "64", "--", "true")
        check(r.returncode == 1 and "unsatisfiable" in r.stderr,
              "more GPUs than the cluster has: unsatisfiable", f"{r.returncode} {r.stderr}")
        print(f"   {r.stderr.strip()}")
        r = c.ftctl("submit", "--cpu", "--", "true")
        check(r.returncode == 1 and "unsatisfiable" in r.stderr,
              "CPU devices on a GPU-only cluster: unsatisfiable", f"{r.returncode} {r.stderr}")
        for args in (["show", "99999"], ["logs", "99999"], ["cancel", "99999"]):
            r = c.ftctl(*args)
            check(r.returncode == 1 and ("not_found" in r.stderr or "99999" in r.stderr),
                  f"{' '.join(args)}: exit 1, not found", f"{r.returncode} {r.stderr}")
        r = c.ftctl("wait", "99999")
        check(r.returncode == 1 and "not_found" in r.stderr, "wait 99999: exit 1, not_found",
              f"{r.returncode} {r.stderr}")

        # usage errors: exit 2, nothing sent
        for args in (["bogus"], ["w", "1"], ["ls", "--state", "DONE"], ["show"], ["show", "x1"],
                     ["submit"], ["submit", "--gpus", "0", "--", "true"],
                     ["usage", "--by", "planet"], ["-o", "yaml", "ls"], ["--timeout", "0", "ping"],
                     ["wait"], ["submit", "a.json", "b.json"]):
            r = c.ftctl(*args)
            check(r.returncode == 2 and r.stderr and not r.stdout,
                  f"ftctl {' '.join(args)}: usage error, exit 2", f"{r.returncode} {r.stderr}")
        r = c.ftctl("-h")
        check(r.returncode == 0 and "exit codes" in r.stdout and not r.stderr,
              "ftctl -h: help on stdout, exit 0")
        r = c.ftctl("help", "wait")
        check(r.returncode == 0 and r.stdout.startswith("usage: ftctl wait"),
              "ftctl help wait", r.stdout)
        cfg = os.path.join(c.dir, "ftctl.conf")
        with open(cfg, "w") as f:
            f.write("# test config\nscheduler = tcp://127.0.0.1:1\ncolour = blue\n")
        r = c.ftctl("ping", env={"FT_CONFIG": cfg})
        check(r.returncode == 2 and "colour" in r.stderr and ":3:" in r.stderr,
              "config file: unknown key named with its line", r.stderr)
        with open(cfg, "w") as f:
            f.write(f"scheduler = {c.endpoint}\nuser = cfg-user\n")
        env = {"FT_CONFIG": cfg, "FT_SCHEDULER": ""}
        j = c.submit("--", "true", env=env)
        check(c.job(j)["user"] == "cfg-user", "config file: scheduler and user are used")
        with open(cfg, "w") as f:
            f.write(f"scheduler = {c.endpoint}\nteam = cfg-team\noutput = json\n")
        r = c.ftctl("ping", env={"FT_CONFIG": cfg, "FT_SCHEDULER": ""})
        check(r.returncode == 0 and json.loads(r.stdout)["proto"] == 1,
              "config file: output = json", r.stdout)
        j = c.submit("-o", "table", "--", "true", env={"FT_CONFIG": cfg, "FT_TEAM": "env-team"})
        check(c.job(j)["team"] == "env-team", "$FT_TEAM wins over the config file's team")
        j = c.submit("--team", "flag-team", "--", "true", env={"FT_TEAM": "env-team"})
        check(c.job(j)["team"] == "flag-team", "--team wins over $FT_TEAM")
        j = c.submit("-o", "table", "--", "true", env={"FT_CONFIG": cfg, "FT_SCHEDULER": ""})
        check(c.job(j)["team"] == "cfg-team", "the config file's team is used when nothing "
              "else says")

        # unreachable scheduler: exit 3 within the time-out, never a hang
        dead = f"tcp://127.0.0.1:{free_port()}"
        t0 = time.monotonic()
        r = c.ftctl("--scheduler", dead, "--timeout", "1", "ping", timeout=20)
        dt = time.monotonic() - t0
        check(r.returncode == 3 and dt < 3, f"unreachable (--timeout 1): exit 3 in {dt:.1f} s",
              f"{r.returncode} {r.stderr}")
        t0 = time.monotonic()
        r = c.ftctl("--scheduler", dead, "--timeout", "1", "submit", "--", "true", timeout=20)
        dt = time.monotonic() - t0
        check(r.returncode == 3 and dt < 4, f"unreachable submit (one retry): exit 3 in {dt:.1f} s",
              f"{r.returncode} {r.stderr}")
        t0 = time.monotonic()
        r = c.ftctl("--scheduler", dead, "ls", timeout=20)
        dt = time.monotonic() - t0
        check(r.returncode == 3 and dt < 8, f"unreachable, default time-out: exit 3 in {dt:.1f} s",
              f"{r.returncode} {r.stderr}")

        # wrong security settings are named, not reported as plain silence
        if not c.insecure:
            t0 = time.monotonic()
            r = c.ftctl("ping", env={"FT_KEY": "", "FT_SERVER_KEY": ""})
            dt = time.monotonic() - t0
            check(r.returncode == 3 and "FT_KEY" in r.stderr and dt < 4,
                  f"no CURVE keys: exit 3 in {dt:.1f} s, saying to set FT_KEY", r.stderr)
            stranger = os.path.join(c.dir, "stranger.key")
            subprocess.run([c.ftctl_path, "keygen", stranger], capture_output=True, check=True)
            r = c.ftctl("ping", env={"FT_KEY": stranger})
            check(r.returncode == 3 and "refused this key" in r.stderr,
                  "a key not in the keys file: exit 3, 'refused this key'", r.stderr)

        # and the daemons are still fine
        check(c.sched.poll() is None and c.workers["n1"].poll() is None,
              "ftsched and ftworker still running")
        j = c.submit("--", "true")
        r = c.ftctl("wait", "--timeout", "30", str(j))
        check(r.returncode == 0, "a good job still completes", r.stderr)


WATCH_SCRIPT = r"""
import json, os, time
fd = int(os.environ["FT_EVENT_FD"])
for i in range(1, 6):
    line = {"event": "progress", "step": i, "total_steps": 5, "loss": 2.0 / i,
            "tokens_per_s": 1000.0 + i, "eta_s": float(5 - i)}
    os.write(fd, (json.dumps(line) + "\n").encode())
    time.sleep(0.6)
print("script done", flush=True)
"""


def watch_progress():
    """An exec job writes progress lines to $FT_EVENT_FD; watch (not a tty)
    prints plain lines, one per new step, and exits 0 at COMPLETED."""
    with Cluster("watch") as c:
        c.start_sched()
        c.start_worker("n1", cpus=1)
        c.wait_nodes_ready(["n1"])
        j = c.submit("--cpu", "--name", "progress", "--", PY, "-c", WATCH_SCRIPT)
        r = c.ftctl("watch", str(j), timeout=60)
        print("   watch output:\n" + "\n".join("   | " + x for x in r.stdout.splitlines()))
        check(r.returncode == 0, "watch exits 0 when the job completes",
              f"{r.returncode} {r.stderr}")
        lines = r.stdout.splitlines()
        steps = [x for x in lines if x.startswith("step ")]
        check(len(steps) >= 3, "watch printed at least 3 step lines", r.stdout)
        check(all("\r" not in x and "\033" not in x for x in lines),
              "no terminal control sequences when stdout is not a tty", repr(r.stdout))
        check(any(x.startswith("step 5/5") for x in steps), "the last step 5/5 is shown",
              r.stdout)
        seen = [int(x.split()[1].split("/")[0]) for x in steps]
        check(seen == sorted(set(seen)), "one line per new step, in order", str(seen))
        check("loss" in steps[-1] and "tokens/s" in steps[-1], "lines carry loss and tokens/s",
              steps[-1])
        bad_eta = [x for x in steps if f"eta {5 - int(x.split()[1].split('/')[0])}s" not in x]
        check(not bad_eta, "each line's eta is the rank's eta_s in seconds (step N/5: 5-N s)",
              "\n".join(bad_eta))
        check(lines[-1].startswith(f"job {j} COMPLETED"), "the last line is the final state",
              lines[-1])
        job = c.job(j)
        check(job["progress"] is not None and job["progress"]["step"] == 5,
              "show: latest progress is step 5", json.dumps(job["progress"]))
        check(job["allocations"][0]["device_model"] is not None, "allocation names the device")
        # on a terminal: a bar redrawn in place (script(1) gives ftctl a pty)
        j2 = c.submit("--cpu", "--team", "ml", "--", PY, "-c", WATCH_SCRIPT)
        env = dict(os.environ, FT_SCHEDULER=c.endpoint, FT_CONFIG=os.devnull, **c.key_env())
        cmd = f"{c.ftctl_path} watch {j2}"
        r = subprocess.run(["script", "-qefc", cmd, "/dev/null"], capture_output=True,
                           env=env, timeout=60)  # bytes: text mode would turn \r into \n
        out = r.stdout.decode("utf-8", "replace")
        check(r.returncode == 0, "watch on a tty exits 0", f"{r.returncode} {out!r}")
        check("\r" in out and "\033[K" in out and "[" in out and "ETA" in out,
              "on a tty the progress bar is redrawn in place (\\r, erase line, ETA)",
              repr(out[-600:]))
        check(f"job {j2} COMPLETED" in out, "and it ends with the final state", repr(out[-300:]))
        u = c.ftctl_json("usage", "--by", "team")
        teams = {row["key"]: row for row in u["rows"]}
        check("ml" in teams and "default" in teams and teams["ml"]["jobs"] == 1,
              "usage --by team: 'ml' (1 job) and 'default'", json.dumps(u))
        u = c.ftctl_json("usage", "--by", "user")
        check(len(u["rows"]) >= 1 and u["rows"][0]["gpu_seconds"] > 0,
              "usage: the job's device time is in the ledger", json.dumps(u))
        txt = c.ftctl_ok("usage", "--by", "job").stdout
        check("GPU_HOURS" in txt and "TOTAL" in txt, "usage table has a header and a total", txt)


def lora_tiny():
    """A LoRA job end to end: a tiny random Llama written by ft-train, the
    bundled numbers data, a few steps on a CPU device through ftworker; watch
    shows the steps with a loss and the adapter lands in output_dir."""
    trainer = os.environ.get("FTTRAIN", "")
    if not trainer or not os.access(trainer, os.X_OK):
        raise SkipTest(f"FTTRAIN={trainer!r} is not built")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with Cluster("lora") as c:
        model = os.path.join(c.dir, "tiny-llama")
        subprocess.run([trainer, "make-tiny-model", model, "--seed", "1"], check=True,
                       stdout=subprocess.DEVNULL)
        with open(os.path.join(root, "jobs", "demo-lora.json.in")) as f:
            spec = json.loads(f.read().replace("@RUN@", c.dir).replace("@ROOT@", root))
        out_dir = os.path.join(c.dir, "out")
        spec["gpus"] = 1  # the demo runs 2 ranks on 2 workers; here one CPU device
        spec["train"].update({"max_steps": 40, "eval_steps": 20, "save_steps": 20,
                              "warmup_steps": 1, "output_dir": out_dir})
        spec_path = os.path.join(c.dir, "job.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        c.start_sched()
        c.start_worker("n1", cpus=1, extra=["--trainer", trainer])
        c.wait_nodes_ready(["n1"])
        j = c.submit(spec_path)
        r = c.ftctl("watch", str(j), timeout=300)
        print("   watch output:\n" + "\n".join("   | " + x for x in r.stdout.splitlines()))
        job = c.job(j)
        if r.returncode != 0:
            print(c.ftctl("logs", str(j)).stdout[-3000:])
        check(r.returncode == 0 and job["state"] == "COMPLETED", "the LoRA job completed",
              f"{r.returncode} {json.dumps(job)[:1500]}")
        check(job["kind"] == "lora", "kind lora", job["kind"])
        p = job["progress"]
        check(p is not None and p["step"] == 40 and p["total_steps"] == 40,
              "latest progress is step 40 of 40", json.dumps(p))
        check(isinstance(p.get("eval_loss"), float) and 0 < p["eval_loss"] < 20,
              "the last progress carries the final eval loss", json.dumps(p))
        check(isinstance(p.get("loss"), float) and isinstance(p.get("tokens_per_s"), float),
              "and still the last training loss and speed (progress merges within an attempt)",
              json.dumps(p))
        steps = [x for x in r.stdout.splitlines() if x.startswith("step ")]
        check(any("  loss " in x for x in steps), "watch showed the training loss",
              r.stdout)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            check(os.path.exists(os.path.join(out_dir, name)), f"output_dir has {name}",
                  str(os.listdir(out_dir) if os.path.isdir(out_dir) else "no output_dir"))


def array_submit():
    """submit --array N: one request, N jobs with their own ids, FT_ARRAY_INDEX in
    each rank's environment, all or nothing, `show` names the array."""
    with Cluster("array") as c:
        c.start_sched()
        c.start_worker("n1", gpus=2)
        c.wait_nodes_ready(["n1"])
        script = 'echo "idx=${FT_ARRAY_INDEX-unset} arr=${FT_ARRAY_JOB_ID-unset} id=$FT_JOB_ID"'
        r = c.ftctl_ok("submit", "--array", "5", "--name", "arr", "--", "sh", "-c", script)
        ids = [int(x) for x in r.stdout.split()]
        check(len(ids) == 5 and len(set(ids)) == 5, "submit --array 5 prints 5 distinct ids",
              r.stdout)
        single = c.submit("--", "sh", "-c", script)
        r = c.ftctl("wait", *map(str, ids + [single]), timeout=60)
        check(r.returncode == 0, "all five elements and the single job COMPLETED", r.stdout)
        for i, jid in enumerate(ids):
            out = c.ftctl_ok("logs", str(jid)).stdout.strip()
            check(out == f"idx={i} arr={ids[0]} id={jid}",
                  f"element {i} (job {jid}) sees FT_ARRAY_INDEX={i}, FT_ARRAY_JOB_ID={ids[0]}",
                  out)
        out = c.ftctl_ok("logs", str(single)).stdout.strip()
        check(out == f"idx=unset arr=unset id={single}",
              "a job submitted alone has no FT_ARRAY_INDEX", out)
        j = c.job(ids[3])
        check(j["array_job_id"] == ids[0] and j["array_index"] == 3,
              "show -o json: array_job_id and array_index", json.dumps(j)[:300])
        check(c.job(single)["array_index"] is None, "a single job's array_index is null")
        show = c.ftctl_ok("show", str(ids[3])).stdout
        check(f"array:      job {ids[0]}, index 3" in show, "show prints the array line", show)

        js = c.ftctl_json("submit", "--array", "3", "--", "true")
        check(len(js["job_ids"]) == 3 and js["job_id"] == js["job_ids"][0] and
              js["duplicate"] is False, "-o json: job_id is the first of job_ids", str(js))

        before = len(c.ftctl_json("ls", "--all")["jobs"])
        for bad, code, what in ((["--array", "0"], 2, "bad --array '0'"),
                                (["--array", "1001"], 2, "expected 1..1000"),
                                (["--array", "x"], 2, "bad --array 'x'"),
                                (["--array", "4", "--gpus", "3"], 1, "unsatisfiable")):
            r = c.ftctl("submit", *bad, "--", "true")
            check(r.returncode == code and what in r.stderr,
                  f"submit {' '.join(bad)}: exit {code}, '{what}'",
                  f"rc={r.returncode} {r.stderr}")
        spec = os.path.join(c.dir, "bad.json")
        with open(spec, "w") as f:
            f.write('{"kind": "exec", "command": ["true"], "gpuz": 1}')
        r = c.ftctl("submit", "--array", "10", spec)
        check(r.returncode == 1 and "gpuz" in r.stderr, "a bad spec file: exit 1 naming the key",
              r.stderr)
        after = len(c.ftctl_json("ls", "--all")["jobs"])
        check(after == before, f"no job was created by the refused arrays ({before} -> {after})")

        # The largest array is one request and one commit.
        t0 = time.monotonic()
        r = c.ftctl_ok("submit", "--array", "1000", "--", "true")
        dt = time.monotonic() - t0
        n = len(r.stdout.split())
        check(n == 1000, f"submit --array 1000 prints 1000 ids ({dt * 1000:.0f} ms)", str(n))
        c.ftctl("cancel", *r.stdout.split())  # some may have COMPLETED already: exit 1 is fine


TESTS = {
    "submit_complete": submit_complete,
    "failing_job": failing_job,
    "cancel_running": cancel_running,
    "requeue_worker_killed": requeue_worker_killed,
    "scheduler_restart": scheduler_restart,
    "gang_two_nodes": gang_two_nodes,
    "priority_order": priority_order,
    "bad_inputs": bad_inputs,
    "watch_progress": watch_progress,
    "lora_tiny": lora_tiny,
    "array_submit": array_submit,
}

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
