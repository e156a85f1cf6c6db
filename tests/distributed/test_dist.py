"""Distributed jobs (issue 4) on a throw-away loopback cluster: the real
ftsched, ftworker and ft-train, driven through ftctl (tests/integration's
ftcluster). Python standard library only.

  equivalence      1 rank vs 2 ranks on 2 workers, same global batch: same
                   loss curve (1e-5 relative) and the same adapter
  sigstop_resume   the same with rank 1 SIGSTOPped (a hang): caught by the
                   ring's heartbeat within seconds
  sigkill_resume   rank 1 SIGKILLed mid-training: the gang is torn down, the
                   job requeues, resumes from its checkpoint and completes;
                   each attempt's GPU-seconds are in the allocations
  gang_contention  many multi-GPU jobs on a small emulated cluster, one node
                   killed and restarted under them: never a partial gang, never
                   a device held twice, lost gangs requeued and released
  repeated_failure a gang failing the same way in every attempt ends FAILED
                   with the reason after max_retries, not in a loop
  stop_together    SIGTERM to one rank: the whole gang stops after the same
                   step and rank 0 saves it
  rendezvous_sched_restart  the exchange survives an ftsched restart
  rendezvous_exec  two exec ranks swap blobs over $FT_EVENT_FD through the
                   scheduler; a malformed blob is refused naming the field
"""
import json
import os
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from ftcluster import Cluster, SkipTest, TestFailure, check, pid_alive, run_tests  # noqa: E402


def trainer_path():
    t = os.environ.get("FTTRAIN", "")
    if not t or not os.access(t, os.X_OK):
        raise SkipTest(f"FTTRAIN={t!r} is not built")
    return t


def lora_spec(c, trainer, name, gpus, micro, steps, save, extra=None):
    """A spec for the tiny model and the bundled numbers data."""
    model = os.path.join(c.dir, "tiny-llama")
    if not os.path.isdir(model):
        subprocess.run([trainer, "make-tiny-model", model, "--seed", "1"], check=True,
                       stdout=subprocess.DEVNULL)
    with open(os.path.join(ROOT, "jobs", "demo-lora.json.in")) as f:
        spec = json.loads(f.read().replace("@RUN@", c.dir).replace("@ROOT@", ROOT))
    spec["gpus"] = gpus
    spec["name"] = name
    spec["train"].update({"max_steps": steps, "eval_steps": 0, "save_steps": save,
                          "warmup_steps": 1, "micro_batch_size": micro,
                          "output_dir": os.path.join(c.dir, "out-" + name)})
    spec.update(extra or {})
    path = os.path.join(c.dir, name + ".json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path, spec["train"]["output_dir"]


STEP_RE = re.compile(r"step (\d+)/\d+ loss ([0-9.eE+-]+)")


def losses(c, j):
    out = c.ftctl_ok("logs", "--rank", "0", str(j)).stdout
    return {int(m.group(1)): float(m.group(2)) for m in STEP_RE.finditer(out)}, out


def read_safetensors(path):
    """{name: list of floats} for F32 tensors (the adapter's dtype)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            raise TestFailure(f"{path}: tensor {name} is {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        out[name] = struct.unpack(f"<{(b - a) // 4}f", data[base + a:base + b])
    return out


def equivalence():
    trainer = trainer_path()
    with Cluster("dist-eq") as c:
        c.start_sched()
        for n in ("n1", "n2"):
            c.start_worker(n, cpus=1, extra=["--trainer", trainer])
        c.wait_nodes_ready(["n1", "n2"])
        steps = 8
        one, out1 = lora_spec(c, trainer, "one", 1, 8, steps, 4)
        two, out2 = lora_spec(c, trainer, "two", 2, 4, steps, 4)
        j1 = c.submit(one)
        r = c.ftctl("wait", "--timeout", "90", str(j1), timeout=120)
        check(r.returncode == 0, "the 1-rank job completed", r.stdout + r.stderr)
        j2 = c.submit(two)
        r = c.ftctl("wait", "--timeout", "90", str(j2), timeout=120)
        if r.returncode != 0:
            print(c.ftctl("logs", "--rank", "1", str(j2)).stdout[-3000:])
        check(r.returncode == 0, "the 2-rank job completed", r.stdout + r.stderr)
        job = c.job(j2)
        nodes = sorted(x["node"] for x in job["ranks"])
        check(nodes == ["n1", "n2"], "its ranks ran on n1 and n2", str(nodes))
        l1, _ = losses(c, j1)
        l2, text2 = losses(c, j2)
        check(sorted(l1) == list(range(1, steps + 1)) and sorted(l2) == sorted(l1),
              f"both runs logged the loss of steps 1..{steps}", f"{sorted(l1)} {sorted(l2)}")
        worst = max(abs(l1[k] - l2[k]) / abs(l1[k]) for k in l1)
        print(f"   losses 1 rank : {[l1[k] for k in sorted(l1)]}")
        print(f"   losses 2 ranks: {[l2[k] for k in sorted(l2)]}")
        check(worst <= 1e-5, f"same loss curve within 1e-5 relative (worst {worst:.2e})")
        log1 = c.ftctl_ok("logs", "--rank", "1", str(j2)).stdout
        check("ring listens at" in text2 and "ring listens at" in log1,
              "both ranks joined the TCP ring", log1[-500:])
        a1 = read_safetensors(os.path.join(out1, "adapter_model.safetensors"))
        a2 = read_safetensors(os.path.join(out2, "adapter_model.safetensors"))
        check(sorted(a1) == sorted(a2) and a1, f"the same {len(a1)} adapter tensors")
        scale = max(max(abs(x) for x in v) for v in a1.values())
        diff = max(max(abs(x - y) for x, y in zip(a1[k], a2[k])) for k in a1)
        check(diff <= 1e-4 * scale + 1e-7,
              f"same adapter: worst difference {diff:.2e} (largest weight {scale:.3e})")
        # the same global batch as 2 ranks x 2 rows x 2 accumulation steps
        ga, out3 = lora_spec(c, trainer, "two-ga", 2, 2, steps, 4)
        with open(ga) as f:
            spec = json.load(f)
        spec["train"]["gradient_accumulation_steps"] = 2
        with open(ga, "w") as f:
            json.dump(spec, f)
        j3 = c.submit(ga)
        r = c.ftctl("wait", "--timeout", "90", str(j3), timeout=120)
        check(r.returncode == 0, "the 2-rank job with gradient accumulation 2 completed",
              r.stdout + r.stderr)
        l3, _ = losses(c, j3)
        worst = max(abs(l1[k] - l3.get(k, float("inf"))) / abs(l1[k]) for k in l1)
        check(worst <= 1e-5, f"2 ranks x 2 rows x 2 micro-steps: same loss curve (worst "
              f"{worst:.2e})")
        a3 = read_safetensors(os.path.join(out3, "adapter_model.safetensors"))
        diff = max(max(abs(x - y) for x, y in zip(a1[k], a3[k])) for k in a1)
        check(diff <= 1e-4 * scale + 1e-7, f"and the same adapter (worst difference {diff:.2e})")


def alloc_rows(db, job):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT attempt, rank, node, start_ms, end_ms FROM allocations "
                           "WHERE job_id = ? ORDER BY attempt, rank", (job,)).fetchall()
    finally:
        con.close()


def sigkill_resume():
    kill_resume(signal.SIGKILL)


def sigstop_resume():
    kill_resume(signal.SIGSTOP)


def kill_resume(sig):
    """Rank 1 of a 2-rank LoRA job gets sig mid-training (SIGKILL: it dies;
    SIGSTOP: it hangs, caught by the ring's heartbeat, set to 2 s here)."""
    trainer = trainer_path()
    name = signal.Signals(sig).name
    # FT_* names are the worker's to set: the ranks inherit it from ftworker
    os.environ["FT_COLL_HEARTBEAT_S"] = "2"
    with Cluster("dist-" + name.lower()) as c:
        c.start_sched()
        for n in ("n1", "n2"):
            c.start_worker(n, cpus=1, extra=["--trainer", trainer])
        c.wait_nodes_ready(["n1", "n2"])
        steps, save = 800, 100
        spec, out = lora_spec(c, trainer, "kill", 2, 4, steps, save, {"max_retries": 2})
        j = c.submit(spec)
        job = c.wait_state(j, ["RUNNING"], timeout=30)
        deadline = time.monotonic() + 60
        step = 0
        while time.monotonic() < deadline:
            job = c.job(j)
            p = job.get("progress") or {}
            step = p.get("step", 0)
            if step >= 2 * save + 20 or job["state"] != "RUNNING":
                break
            time.sleep(0.05)
        check(job["state"] == "RUNNING" and step >= 2 * save,
              f"training passed its second checkpoint (step {step})", json.dumps(job)[:800])
        pids = {x["rank"]: x["pid"] for x in job["ranks"]}
        print(f"   at step {step}: sending {name} to rank 1 (pid {pids[1]})")
        t0 = time.monotonic()
        os.kill(pids[1], sig)
        while time.monotonic() - t0 < 15 and pid_alive(pids[0]):
            time.sleep(0.05)
        gone = time.monotonic() - t0
        check(not pid_alive(pids[0]), f"rank 0 of the broken gang ended {gone:.1f} s after {name}")
        if sig == signal.SIGSTOP:
            log0 = c.ftctl_ok("logs", "--rank", "0", str(j)).stdout
            check("sent no heartbeat" in log0, "rank 0 says its peer stopped sending heartbeats",
                  log0[-600:])
            while time.monotonic() - t0 < 15 and pid_alive(pids[1]):
                time.sleep(0.05)
            check(not pid_alive(pids[1]), "the stopped rank was killed by its worker")
        job = c.wait_state(j, ["COMPLETED", "FAILED", "CANCELLED"], timeout=90)
        check(job["state"] == "COMPLETED", "the job completed after the requeue",
              json.dumps(job)[:1500])
        check(job["attempt"] == 2, "in attempt 2", str(job["attempt"]))
        log0 = c.ftctl_ok("logs", "--rank", "0", str(j)).stdout
        m = re.findall(r"resumed from '[^']*checkpoint-(\d+)'", log0)
        check(m and int(m[-1]) >= 2 * save and int(m[-1]) % save == 0,
              f"attempt 2 resumed from checkpoint {m[-1] if m else None}", log0[-1500:])
        log1 = c.ftctl_ok("logs", "--rank", "1", str(j)).stdout
        check(len(re.findall(r"resumed from '[^']*checkpoint-", log1)) == 1 and
              re.findall(r"resumed from '[^']*checkpoint-(\d+)'", log1)[-1] == m[-1],
              "rank 1 resumed from the same checkpoint", log1[-800:])
        check(os.path.exists(os.path.join(out, "adapter_model.safetensors")),
              "the adapter was written")
        rows = alloc_rows(c.db, j)
        per = {}
        for att, rank, node, s, e in rows:
            check(e is not None and e >= s, f"allocation attempt {att} rank {rank} is closed")
            per.setdefault(att, []).append((e - s) / 1000.0)
        for att in sorted(per):
            print(f"   attempt {att}: {len(per[att])} GPUs, {sum(per[att]):.2f} GPU-seconds")
        check(sorted(per) == [1, 2] and all(len(v) == 2 for v in per.values()) and
              all(sum(v) > 0 for v in per.values()),
              "two ranks accounted for each of attempts 1 and 2", str(per))
        ev = " ".join(e.get("message", "") for e in job.get("events", []))
        check("requeued after attempt 1" in ev, "the requeue is in the job's events", ev[-600:])


def gang_contention():
    with Cluster("dist-gang") as c:
        c.start_sched()
        names = ["n1", "n2", "n3"]
        for n in names:
            c.start_worker(n, gpus=2)
        c.wait_nodes_ready(names)
        shapes = [2, 3, 4, 6, 2, 5, 3, 4, 2, 6, 3, 2, 4, 5, 2, 3, 6, 2, 4, 3]
        jobs = {}
        for i, g in enumerate(shapes):
            spec = {"command": ["sleep", "1"], "gpus": g}
            if g % 2 == 0 and i % 3 == 0:
                spec["gpus_per_node"] = 2
            path = os.path.join(c.dir, f"gang-{i}.json")
            with open(path, "w") as f:
                json.dump(spec, f)
            jobs[c.submit(path)] = g
        r = c.ftctl("submit", "--gpus", "7", "--", "true")
        check(r.returncode != 0 and "unsatisfiable" in r.stderr,
              "7 GPUs on a 6-GPU cluster are refused at submit", r.stderr)
        seen = 0
        deadline = time.monotonic() + 120
        t_start = time.monotonic()
        killed = restarted = n3_busy = False
        while time.monotonic() < deadline:
            # a node vanishes under running gangs, and comes back
            if not killed and n3_busy and time.monotonic() - t_start > 0.5:
                print("   killing worker n3 (SIGKILL) under running gangs")
                c.kill(c.workers["n3"])
                killed, t_kill, kill_ms = True, time.monotonic(), time.time() * 1000
            if killed and not restarted and time.monotonic() - t_kill > 7.0:
                print("   restarting worker n3")
                c.start_worker("n3", gpus=2)
                restarted, back_ms = True, time.time() * 1000
            con = sqlite3.connect(f"file:{c.db}?mode=ro", uri=True, timeout=5)
            try:
                rows = con.execute("SELECT job_id, attempt, node, device_index, start_ms, end_ms"
                                   " FROM allocations").fetchall()
                states = dict(con.execute("SELECT id, state FROM jobs").fetchall())
            finally:
                con.close()
            held = {}
            by_attempt = {}
            for jid, att, node, dev, s, e in rows:
                by_attempt.setdefault((jid, att), []).append(s)
                if e is None:
                    key = (node, dev)
                    if key in held:
                        raise TestFailure(f"device {key} held by {held[key]} and {(jid, att)}")
                    held[key] = (jid, att)
            for (jid, att), starts in by_attempt.items():
                if jid in jobs and len(starts) != jobs[jid]:
                    raise TestFailure(f"job {jid} attempt {att} has {len(starts)} of "
                                      f"{jobs[jid]} allocations: a partial gang")
            seen += 1
            n3_busy = any(node == "n3" for node, _ in held)
            if restarted and all(states.get(j) in ("COMPLETED", "FAILED", "CANCELLED")
                                 for j in jobs):
                break
            time.sleep(0.02)
        check(seen > 5, f"{seen} snapshots of the allocations: never a device held twice, "
              "never a partial gang")
        done = [c.job(j) for j in jobs]
        check(all(j["state"] == "COMPLETED" for j in done), f"all {len(jobs)} jobs completed",
              str([(j["job_id"], j["state"]) for j in done if j["state"] != "COMPLETED"]))
        requeued = [j["job_id"] for j in done if j["attempt"] > 1]
        check(requeued, f"jobs {requeued} were requeued when n3 vanished")
        open_left = [a for j in done for a in j["allocations"] if a["end"] is None]
        check(not open_left, "no allocation is left open (the lost gangs released every GPU)",
              str(open_left))
        # packing: at the moment a gang started, could fewer nodes have held it?
        # Gangs started in the same pass count as busy, so the bound is safe.
        con = sqlite3.connect(f"file:{c.db}?mode=ro", uri=True, timeout=5)
        rows = con.execute("SELECT job_id, attempt, node, device_index, start_ms, end_ms"
                           " FROM allocations").fetchall()
        con.close()
        gangs = {}
        for jid, att, node, dev, st, en in rows:
            gangs.setdefault((jid, att), []).append((node, dev, st, en))
        checked = 0
        for (jid, att), members in gangs.items():
            t = min(m[2] for m in members)
            mine = {(m[0], m[1]) for m in members}
            free = {n: 2 for n in names}
            if kill_ms - 1000 <= t <= back_ms + 5000:
                free["n3"] = 0  # gone (or not yet known back): no room to count on
            for ojid, oatt, node, dev, st, en in rows:
                if (ojid, oatt) != (jid, att) and st <= t and (en is None or en > t) and \
                        (node, dev) not in mine:
                    free[node] -= 1
            caps = sorted(free.values(), reverse=True)
            need, k = jobs[jid], 0
            while need > 0 and k < len(caps):
                need -= caps[k]
                k += 1
            used = len({m[0] for m in members})
            if need <= 0 and used > k:
                raise TestFailure(f"job {jid} ({jobs[jid]} GPUs) spread over {used} nodes when "
                                  f"{k} had room: {free}")
            checked += 1
        check(checked == len(gangs), f"{checked} gangs each packed onto as few nodes as had room")


def rendezvous_exec():
    """An exec job plays the ranks by hand over $FT_EVENT_FD: each writes a
    rendezvous line and reads the reply line back from the same fd."""
    with Cluster("dist-rdv") as c:
        c.start_sched()
        c.start_worker("n1", gpus=2)
        c.wait_nodes_ready(["n1"])
        j = c.submit("--gpus", "2", "--", sys.executable, "-c", RDV_SCRIPT)
        r = c.ftctl("wait", "--timeout", "30", str(j))
        check(r.returncode == 0, "the 2-rank exchange completed", r.stdout + r.stderr)
        for rank in (0, 1):
            out = c.ftctl_ok("logs", "--rank", str(rank), str(j)).stdout.strip()
            check(out == "reply 1 ['rank0', 'rank1']",
                  f"rank {rank} got every blob in rank order for attempt 1", repr(out))
        bad = ('import os,time\n'
               'fd=int(os.environ["FT_EVENT_FD"])\n'
               'os.write(fd,b\'{"event":"rendezvous","blob":"not base64!"}\\n\')\n'
               'time.sleep(1)\n')
        k = c.submit("--", sys.executable, "-c", bad)
        c.ftctl("wait", "--timeout", "30", str(k))
        wlog = open(os.path.join(c.dir, "ftworker-n1.log")).read()
        check("field 'blob': expected base64" in wlog,
              "a malformed blob is refused by the worker with the field named")


RDV_SCRIPT = (
    'import os,sys,json,base64,time\n'
    'fd=int(os.environ["FT_EVENT_FD"]); r=os.environ["FT_RANK"]\n'
    'time.sleep(float(os.environ.get("DELAY_" + r, "0")))\n'
    'b=base64.b64encode(("rank"+r).encode()).decode()\n'
    'os.write(fd,(json.dumps({"event":"rendezvous","blob":b})+"\\n").encode())\n'
    'buf=b""\n'
    'while not buf.endswith(b"\\n"):\n'
    '    d=os.read(fd,65536)\n'
    '    if not d: sys.exit(3)\n'
    '    buf+=d\n'
    'm=json.loads(buf)\n'
    'print("reply",m["attempt"],[base64.b64decode(x).decode() for x in m["blobs"]])\n')


def rendezvous_sched_restart():
    """ftsched SIGKILLed and restarted in the middle of an exchange: rank 0's
    blob was in (and is forgotten), rank 1's comes while the scheduler is
    down; the workers send both again after their new hello, and both ranks
    get the full set in the same attempt."""
    with Cluster("dist-rdv-restart") as c:
        c.start_sched()
        c.start_worker("n1", gpus=1)
        c.start_worker("n2", gpus=1)
        c.wait_nodes_ready(["n1", "n2"])
        spec = {"command": [sys.executable, "-c", RDV_SCRIPT], "gpus": 2,
                "env": {"DELAY_1": "2"}}
        path = os.path.join(c.dir, "rdv.json")
        with open(path, "w") as f:
            json.dump(spec, f)
        j = c.submit(path)
        c.wait_state(j, ["RUNNING"])
        time.sleep(0.5)
        c.kill(c.sched, signal.SIGKILL)
        print("   ftsched killed with rank 0's blob in and rank 1's not yet sent")
        time.sleep(2.5)
        c.start_sched()
        print("   ftsched restarted")
        job = c.wait_state(j, ["COMPLETED", "FAILED", "CANCELLED"], timeout=60)
        check(job["state"] == "COMPLETED" and job["attempt"] == 1,
              "the job completed in attempt 1", json.dumps(job)[:1200])
        for rank in (0, 1):
            out = c.ftctl_ok("logs", "--rank", str(rank), str(j)).stdout.strip()
            check(out == "reply 1 ['rank0', 'rank1']",
                  f"rank {rank} got both blobs after the restart", repr(out))


def repeated_failure():
    """A 2-rank gang whose rank 1 is SIGKILLed in every attempt: each attempt
    stops rank 0 at once and requeues, and after max_retries the job ends
    FAILED with the reason instead of looping."""
    with Cluster("dist-repeat") as c:
        c.start_sched()
        c.start_worker("n1", gpus=1)
        c.start_worker("n2", gpus=1)
        c.wait_nodes_ready(["n1", "n2"])
        spec = {"command": ["sh", "-c", 'if [ "$FT_RANK" = 1 ]; then sleep 0.5; kill -9 $$; fi; '
                            'exec sleep 60'], "gpus": 2, "max_retries": 2}
        path = os.path.join(c.dir, "repeat.json")
        with open(path, "w") as f:
            json.dump(spec, f)
        t0 = time.monotonic()
        j = c.submit(path)
        job = c.wait_state(j, ["FAILED", "COMPLETED", "CANCELLED"], timeout=60)
        took = time.monotonic() - t0
        check(job["state"] == "FAILED", f"the job ended FAILED after {took:.1f} s",
              json.dumps(job)[:1000])
        check(job["attempt"] == 3, "after 3 attempts (max_retries 2)", str(job["attempt"]))
        reason = job.get("reason") or ""
        check("killed by signal 9" in reason and "no retries left" in reason,
              f"the reason says why: '{reason}'")
        rows = alloc_rows(c.db, j)
        check(len(rows) == 6 and all(r[4] is not None for r in rows),
              "6 allocations (2 ranks x 3 attempts), all closed", str(rows))
        check(took < 40, "rank 0 (sleeping 60 s) was stopped each time, not waited for")


def stop_together():
    """Two ft-train ranks by hand (rendezvous through FT_RDV_DIR); SIGTERM to
    rank 1 only: both stop after the same step, rank 0 saves that step's
    checkpoint and exits 75 (stopped with its gang), rank 1 dies of SIGTERM."""
    trainer = trainer_path()
    d = tempfile.mkdtemp(prefix="dist-stop-")
    class C:  # what lora_spec needs of a cluster
        dir = d
    spec, out = lora_spec(C, trainer, "stop", 2, 4, 100000, 0)
    env = dict(os.environ, FT_RDV_DIR=os.path.join(d, "rdv"), FT_COLL_TIMEOUT_S="30")
    logs = [open(os.path.join(d, f"rank{r}.log"), "w+") for r in (0, 1)]
    procs = [subprocess.Popen([trainer, "run", "--spec", spec, "--rank", str(r),
                               "--world-size", "2", "--event-fd", "2"],
                              stdout=subprocess.DEVNULL, stderr=logs[r], env=env)
             for r in (0, 1)]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            logs[0].seek(0)
            if len(STEP_RE.findall(logs[0].read())) >= 20:
                break
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGTERM)
        rc = [p.wait(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    text = []
    for f in logs:
        f.seek(0)
        text.append(f.read())
        f.close()
    check(rc[1] == -signal.SIGTERM, f"rank 1 died of its SIGTERM (status {rc[1]})", text[1][-800:])
    check(rc[0] == 75, f"rank 0 exited 75, stopped with its gang (status {rc[0]})", text[0][-800:])
    s0 = re.findall(r"step (\d+): stop requested", text[0])
    s1 = re.findall(r"step (\d+): stop requested", text[1])
    check(s0 and s1 and s0 == s1, f"both ranks stopped after step {s0[-1] if s0 else None}",
          f"{s0} {s1}")
    check(os.path.isdir(os.path.join(out, f"checkpoint-{s0[-1]}")),
          f"rank 0 saved checkpoint-{s0[-1]}", str(os.listdir(out) if os.path.isdir(out) else ""))
    shutil.rmtree(d, ignore_errors=True)


TESTS = {
    "equivalence": equivalence,
    "sigkill_resume": sigkill_resume,
    "sigstop_resume": sigstop_resume,
    "gang_contention": gang_contention,
    "rendezvous_exec": rendezvous_exec,
    "repeated_failure": repeated_failure,
    "stop_together": stop_together,
    "rendezvous_sched_restart": rendezvous_sched_restart,
}

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
