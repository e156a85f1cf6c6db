"""Data-parallel speed-up of a LoRA job: the same job (same global batch) with
1 rank on 1 worker and with 2 ranks on 2 workers, on a loopback cluster of the
real ftsched / ftworker / ft-train (tests/integration/ftcluster.py).

Prints, per run: tokens/s (median over the steps after the first few, from
rank 0's log), the step time and its split into compute and communication
(the ring's time in collectives, which ft-train logs per rank at the end),
and the speed-up of 2 ranks over 1. Python standard library only.

Settings (environment): FT_BENCH_STEPS (default 30), FT_BENCH_THREADS (CPU
threads per rank, default 1, so that 2 ranks use the 2 cores 1 rank x 2
threads would), FT_BENCH_HIDDEN (default 256), FT_BENCH_LAYERS (default 4),
FT_BENCH_REPEAT (runs of each, alternated, the best kept; default 2).
"""
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from ftcluster import Cluster, SkipTest  # noqa: E402

STEP_RE = re.compile(r"step (\d+)/\d+ loss \S+ lr \S+ grad_norm \S+ (\d+) tok/s")
COMM_RE = re.compile(r"rank (\d+): ([0-9.]+) s in collectives")
TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)", re.M)


def env_int(name, default):
    v = os.environ.get(name, "")
    if not v:
        return default
    if not v.isdigit() or int(v) < 1:
        sys.exit(f"dp_bench: environment '{name}': expected a positive integer, got '{v}'")
    return int(v)


def run(c, trainer, model, ranks, steps, threads, global_batch, seq, k):
    with open(os.path.join(ROOT, "jobs", "demo-lora.json.in")) as f:
        spec = json.loads(f.read().replace("@RUN@", c.dir).replace("@ROOT@", ROOT))
    spec["gpus"] = ranks
    spec["name"] = f"dp{ranks}-{k}"
    spec["train"].update({"base_model": model, "max_steps": steps, "eval_steps": 0,
                          "save_steps": 0, "warmup_steps": 1, "sequence_len": seq,
                          "micro_batch_size": global_batch // ranks, "threads": threads,
                          "output_dir": os.path.join(c.dir, f"out-{ranks}-{k}")})
    path = os.path.join(c.dir, f"dp{ranks}-{k}.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    j = c.submit(path)
    t0 = time.monotonic()
    r = c.ftctl("wait", "--timeout", "1200", str(j), timeout=1300)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        print(c.ftctl("logs", str(j)).stdout[-3000:])
        raise SystemExit(f"dp_bench: the {ranks}-rank job did not complete: {r.stderr}")
    log0 = c.ftctl_ok("logs", "--rank", "0", str(j)).stdout
    rates = [int(m.group(2)) for m in STEP_RE.finditer(log0)]
    skip = min(3, max(0, len(rates) - 3))
    tok_s = statistics.median(rates[skip:]) if rates else float("nan")
    comm = 0.0
    for rank in range(ranks):
        log = c.ftctl_ok("logs", "--rank", str(rank), str(j)).stdout
        m = COMM_RE.findall(log)
        if m:
            comm = max(comm, float(m[-1][1]))
    tokens_per_step = global_batch * seq
    step_s = tokens_per_step / tok_s
    return {"ranks": ranks, "tokens_per_s": tok_s, "step_s": step_s,
            "comm_per_step_s": comm / steps, "compute_per_step_s": step_s - comm / steps,
            "job_wall_s": wall}


def main():
    trainer = os.environ.get("FTTRAIN", "")
    if not trainer or not os.access(trainer, os.X_OK):
        print(f"skip: FTTRAIN={trainer!r} is not built")
        return 77
    steps = env_int("FT_BENCH_STEPS", 30)
    threads = env_int("FT_BENCH_THREADS", 1)
    hidden = env_int("FT_BENCH_HIDDEN", 256)
    layers = env_int("FT_BENCH_LAYERS", 4)
    repeat = env_int("FT_BENCH_REPEAT", 2)
    seq, global_batch = 128, 8
    try:
        with Cluster("dp-bench") as c:
            model = os.path.join(c.dir, "model")
            subprocess.run([trainer, "make-tiny-model", model, "--hidden", str(hidden),
                            "--layers", str(layers), "--heads", "4", "--kv-heads", "4",
                            "--intermediate", str(hidden * 8 // 3), "--seed", "1"],
                           check=True, stdout=subprocess.DEVNULL)
            c.start_sched()
            for n in ("n1", "n2"):
                c.start_worker(n, cpus=1, extra=["--trainer", trainer])
            c.wait_nodes_ready(["n1", "n2"])
            print(f"model: hidden {hidden}, {layers} layers; seq {seq}, global batch "
                  f"{global_batch} rows, {steps} steps, {threads} thread(s) per rank, "
                  f"best of {repeat}; "
                  f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
            # alternate 1 and 2 ranks and keep each one's best run: on a shared
            # machine the load changes between runs
            best = {}
            for k in range(repeat):
                for r in (1, 2):
                    x = run(c, trainer, model, r, steps, threads, global_batch, seq, k)
                    if r not in best or x["tokens_per_s"] > best[r]["tokens_per_s"]:
                        best[r] = x
            res = [best[1], best[2]]
    except SkipTest as e:
        print(f"skip: {e}")
        return 77
    print(f"{'ranks':>5} {'tokens/s':>10} {'step ms':>9} {'compute ms':>11} {'comm ms':>8} "
          f"{'job wall s':>10}")
    for x in res:
        print(f"{x['ranks']:>5} {x['tokens_per_s']:>10.0f} {x['step_s'] * 1e3:>9.1f} "
              f"{x['compute_per_step_s'] * 1e3:>11.1f} {x['comm_per_step_s'] * 1e3:>8.1f} "
              f"{x['job_wall_s']:>10.1f}")
    print(f"speed-up, 2 ranks on 2 workers over 1: "
          f"{res[1]['tokens_per_s'] / res[0]['tokens_per_s']:.2f}x")
    print(json.dumps({"bench": "data_parallel", "runs": res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
