#!/usr/bin/env python3
"""ft-train on the CUDA backend through the real program, against the CPU
backend: `check --backend cuda` vs `--backend cpu` (same LoRA init exactly,
loss within 5e-3, every gradient tensor within 1.5e-1 of its largest entry
with cosine >= 0.995: bf16 activations, docs/gpu.md "Precision"), `run --backend
cuda` vs `--backend cpu` (progress losses within 0.03 + 2 % of the band the
CPU losses span over the step and its neighbours, as test_cuda_model.c does,
peak_mem_mb reported, the adapter written),
`eval --backend cuda` of that adapter (equal to the run's final eval loss
within 1e-6 relative: same backend), and a resume from the CUDA run's
checkpoint (the host mirrors of the device LoRA state and Adam moments go
through the checkpoint and back). Exit 77 when no CUDA device is visible.

usage: test_ft_train_cuda.py FT_TRAIN
"""
import json
import math
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "trainer", "model"))
from ft_train_testlib import Checks, read_safetensors, runner  # noqa: E402

FT = sys.argv[1]
check = Checks()
ft = runner(FT)


def band_distance(cpu, k, g):
    """how far g lies outside the range of cpu[k-1..k+1]: where the loss falls
    steeply, bf16 rounding shifts the curve along the step axis"""
    near = cpu[max(k - 1, 0):k + 2]
    lo, hi = min(near), max(near)
    return lo - g if g < lo else g - hi if g > hi else 0.0


def compare(gpu, cpu):
    """max |g - c| / max |c| and the cosine"""
    md = max(abs(a - b) for a, b in zip(gpu, cpu))
    ref = max(abs(b) for b in cpu)
    ab = sum(a * b for a, b in zip(gpu, cpu))
    aa = math.sqrt(sum(a * a for a in gpu))
    bb = math.sqrt(sum(b * b for b in cpu))
    cos = 1.0 if aa == 0 and bb == 0 else ab / (aa * bb + 1e-300)
    return (md / ref if ref > 0 else md), cos


def events_of(p):
    out = []
    for line in p.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="ft-test-cuda-")
    model = os.path.join(tmp, "model")
    p = ft("make-tiny-model", model, "--hidden", "64", "--layers", "2", "--heads", "4",
           "--kv-heads", "2", "--intermediate", "128", "--seed", "3")
    check(p.returncode == 0, "make-tiny-model exits 0")
    with open(os.path.join(tmp, "data.jsonl"), "w") as f:
        for i in range(60):
            f.write(json.dumps({"text": "abcdefgh" * (3 + i % 4) + " %d" % i}) + "\n")

    def spec(out, **over):
        t = {"base_model": model, "datasets": [{"path": os.path.join(tmp, "data.jsonl")}],
             "val_set_size": 0.1, "output_dir": os.path.join(tmp, out), "lora_r": 4,
             "lora_alpha": 8, "sequence_len": 48, "micro_batch_size": 4, "max_steps": 8,
             "learning_rate": 0.01, "seed": 4, "threads": 2,
             "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                "up_proj", "down_proj"]}
        t.update(over)
        path = os.path.join(tmp, "spec-%s-%d.json" % (out, len(os.listdir(tmp))))
        with open(path, "w") as f:
            json.dump({"name": "cuda", "kind": "lora", "train": t}, f)
        return path

    # skip where there is no device
    sp = spec("check")
    p = ft("check", "--spec", sp, "--out", os.path.join(tmp, "gpu.safetensors"),
           "--backend", "cuda")
    if p.returncode != 0 and ("no CUDA device" in p.stderr or "without CUDA" in p.stderr):
        print("no CUDA device (or a build without CUDA): skipped")
        shutil.rmtree(tmp, ignore_errors=True)
        return 77
    check(p.returncode == 0, "check --backend cuda exits 0" +
          ("" if p.returncode == 0 else ": " + p.stderr[-300:]))
    q = ft("check", "--spec", sp, "--out", os.path.join(tmp, "cpu.safetensors"),
           "--backend", "cpu")
    check(q.returncode == 0, "check --backend cpu exits 0")
    if p.returncode == 0 and q.returncode == 0:
        g = {k: v[2] for k, v in read_safetensors(os.path.join(tmp, "gpu.safetensors")).items()}
        c = {k: v[2] for k, v in read_safetensors(os.path.join(tmp, "cpu.safetensors")).items()}
        lg, lc = g["loss"][0], c["loss"][0]
        check(abs(lg - lc) / abs(lc) <= 5e-3, "check loss cpu %.6f gpu %.6f (rel <= 5e-3)" % (lc, lg))
        worst, worst_cos, n_grads, n_same, n_vals = 0.0, 1.0, 0, 0, 0
        for name in sorted(c):
            if name.endswith(".grad"):
                rel, cos = compare(g[name], c[name])
                n_grads += 1
                worst, worst_cos = max(worst, rel), min(worst_cos, cos)
                if rel > 1.5e-1 or cos < 0.995:
                    check(False, "%s: rel_max %.3e cos %.6f" % (name, rel, cos))
            elif name.endswith(".weight"):
                n_vals += 1
                n_same += g[name] == c[name]
        check(n_vals == 28 and n_same == n_vals,
              "same initial LoRA values on both backends (%d of %d tensors)" % (n_same, n_vals))
        check(n_grads == 2 * 7 * 2, "%d gradient tensors compared (2 layers x 7 modules x A, B)" % n_grads)
        check(worst <= 1.5e-1 and worst_cos >= 0.995,
              "every gradient: worst rel_max %.3e (<= 1.5e-1), worst cosine %.6f (>= 0.995)" % (worst, worst_cos))

    # run on both backends
    runs = {}
    for be in ("cpu", "cuda"):
        p = ft("run", "--spec", spec("out-" + be, eval_steps=0), "--backend", be)
        ev = events_of(p)
        runs[be] = (p, ev)
        check(p.returncode == 0, "run --backend %s exits 0" % be +
              ("" if p.returncode == 0 else ": " + p.stderr[-300:]))
    lc = [e["loss"] for e in runs["cpu"][1] if e["event"] == "progress"]
    lg = [e["loss"] for e in runs["cuda"][1] if e["event"] == "progress"]
    check(len(lc) == 8 and len(lg) == 8, "8 progress events on each backend")
    for k, (a, b) in enumerate(zip(lc, lg)):
        bound, d = 0.03 + 0.02 * a, band_distance(lc, k, b)
        check(d <= bound, "step %d loss cpu %.5f gpu %.5f, outside the cpu band by %.2e (<= %.2e)" %
              (k + 1, a, b, d, bound))
    mem = [e.get("peak_mem_mb") for e in runs["cuda"][1] if e["event"] == "progress"]
    check(mem and all(isinstance(m, (int, float)) and m > 0 for m in mem),
          "cuda progress events report peak_mem_mb (%s MiB)" % (mem[-1] if mem else None))
    out_g = os.path.join(tmp, "out-cuda")
    check(os.path.exists(os.path.join(out_g, "adapter_model.safetensors")), "cuda run wrote the adapter")

    # eval of the written adapter on the device
    done = [e for e in runs["cuda"][1] if e["event"] == "done"]
    p = ft("eval", "--spec", spec("out-cuda"), "--adapter", out_g, "--backend", "cuda")
    check(p.returncode == 0, "eval --backend cuda exits 0" + ("" if p.returncode == 0 else ": " + p.stderr[-300:]))
    if p.returncode == 0 and done and done[0].get("eval_loss") is not None:
        res = json.loads(p.stdout)
        a, b = res.get("eval_loss"), done[0]["eval_loss"]
        check(a is not None and abs(a - b) <= 1e-6 * abs(b),
              "eval of the adapter %.8f == the run's final eval loss %.8f" % (a, b))

    # resume from the cuda run's checkpoint to 12 steps
    p = ft("run", "--spec", spec("out-cuda", eval_steps=0, max_steps=12), "--backend", "cuda")
    ev = events_of(p)
    steps = [e["step"] for e in ev if e["event"] == "progress"]
    check(p.returncode == 0 and steps and steps[0] == 9 and steps[-1] == 12,
          "resumed cuda run continues at step 9 and ends at 12 (steps %s)" % steps)
    p = ft("run", "--spec", spec("out-cpu", eval_steps=0, max_steps=12), "--backend", "cpu")
    lc2 = [e["loss"] for e in events_of(p) if e["event"] == "progress"]
    lg2 = [e["loss"] for e in ev if e["event"] == "progress"]
    for k, (a, b) in enumerate(zip(lc2, lg2)):
        bound, d = 0.03 + 0.02 * a, band_distance(lc2, k, b)
        check(d <= bound, "resumed step %d loss cpu %.5f gpu %.5f, outside the cpu band by %.2e (<= %.2e)" %
              (9 + k, a, b, d, bound))

    shutil.rmtree(tmp, ignore_errors=True)
    print("all checks passed" if check.failures == 0 else "%d check(s) failed" % check.failures)
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
