#!/usr/bin/env python3
"""run.py: the trainer benchmark: ft-train bench against the same LoRA step in
PyTorch (transformers + PEFT, eager), same configuration, same thread count.

  run.py --ft-train PATH [--python PY] [--steps N] [--threads T] [model flags]

Model flags (defaults: the benchmark configuration): --hidden 512 --layers 8
--heads 8 --kv-heads 8 --intermediate 1376 --vocab 8192 --seq 256 --batch 4
--r 16. The PyTorch side runs in the environment of
tests/reference/setup-python.sh (made when missing) unless --python names one.

Prints both results, then the ratios:
  ft/torch tokens/s      (> 1: ft-train is faster), over the mean step and
                         over each side's fastest step (steadier when the
                         machine is shared)
  ft gflops / ft gemm    (the share of OpenBLAS's square-GEMM rate the whole
                          training step reaches; the same for torch, with the
                          same FLOP count, against torch's own GEMM rate)
and, last, one JSON line with everything.

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: some machines set these because older
OpenBLAS builds misbehave on their processor; they slow a current OpenBLAS.
When set, both programs run with the two unset (this run only, the caller's
environment is unchanged) and the report says so, with the OpenBLAS kernel
the system library picks with and without them. Standard library only.
"""
import argparse
import ctypes
import ctypes.util
import json
import os
import subprocess
import sys

from bench_args import MODEL_FLAGS, positive

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SETUP = os.path.join(ROOT, "tests", "reference", "setup-python.sh")
TORCH_SCRIPT = os.path.join(HERE, "torch_lora_step.py")
BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def parse_args(argv):
    p = argparse.ArgumentParser(description="ft-train bench against PyTorch + PEFT")
    p.add_argument("--ft-train", required=True, help="path of the ft-train program")
    p.add_argument("--python", help="interpreter with torch, transformers, peft")
    p.add_argument("--steps", type=positive, default=5)
    p.add_argument("--threads", type=positive, default=2)
    p.add_argument("--timeout", type=positive, default=1200, help="seconds per side")
    p.add_argument("--repeat", type=positive, default=1,
                   help="run both sides this many times, alternating, and keep each "
                        "side's best (fastest) run; helps on a shared, busy machine")
    for name, default in MODEL_FLAGS:
        p.add_argument("--" + name, type=positive, default=default)
    a = p.parse_args(argv)
    if not (os.path.isfile(a.ft_train) and os.access(a.ft_train, os.X_OK)):
        p.error("--ft-train: '%s' is not an executable file" % a.ft_train)
    return a


def openblas_core(env):
    """The kernel the system OpenBLAS picks under env (None when unknown)."""
    lib = ctypes.util.find_library("openblas")
    if not lib:
        return None
    code = ("import ctypes; l = ctypes.CDLL(%r); l.openblas_get_corename.restype = "
            "ctypes.c_char_p; print(l.openblas_get_corename().decode())" % lib)
    try:
        p = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() or None


def last_json(text, who):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    raise SystemExit("run.py: %s printed no JSON result line; its output ends with:\n%s" % (
        who, text[-2000:]))


def run(cmd, env, timeout, who):
    print("$ " + " ".join(cmd), flush=True)
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit("run.py: %s took longer than %d s" % (who, timeout))
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-3000:])
        raise SystemExit("run.py: %s exited with %d" % (who, p.returncode))
    return last_json(p.stdout, who)


def main(argv):
    a = parse_args(argv)
    env = dict(os.environ)
    notes = []
    set_vars = {k: env[k] for k in BLAS_VARS if k in env}
    if set_vars:
        core_with = openblas_core(env)
        for k in BLAS_VARS:
            env.pop(k, None)
        core_without = openblas_core(env)
        notes.append("%s set here; both sides run with %s unset (system OpenBLAS kernel %s "
                     "with them, %s without)" % (
                         ", ".join("%s=%s" % kv for kv in set_vars.items()),
                         " and ".join(BLAS_VARS), core_with, core_without))
    else:
        notes.append("OPENBLAS_CORETYPE not set; system OpenBLAS kernel %s" % openblas_core(env))

    py = a.python
    if not py:
        p = subprocess.run([SETUP, "--print-python"], stdout=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise SystemExit("run.py: %s failed (%d): no PyTorch to compare with" % (
                SETUP, p.returncode))
        py = p.stdout.strip()

    flags = []
    for name, _ in MODEL_FLAGS:
        flags += ["--" + name, str(getattr(a, name.replace("-", "_")))]
    common = flags + ["--steps", str(a.steps), "--threads", str(a.threads)]
    load_before = os.getloadavg()[0]
    ft = th = None
    for _ in range(a.repeat):
        f = run([os.path.abspath(a.ft_train), "bench"] + common, env, a.timeout,
                "ft-train bench")
        t = run([py, TORCH_SCRIPT] + common, env, a.timeout, "torch_lora_step.py")
        if ft is None or f.get("tokens_per_s", 0) > ft.get("tokens_per_s", 0):
            ft = f
        if th is None or t["tokens_per_s"] > th["tokens_per_s"]:
            th = t
    load_after = os.getloadavg()[0]
    notes.append("1-minute load average %.2f before, %.2f after (%d cores)%s" % (
        load_before, load_after, os.cpu_count() or 0,
        "; the machine was busy with other work, so the figures are noisy"
        if load_before > 0.5 else ""))
    if a.repeat > 1:
        notes.append("best of %d alternating runs per side" % a.repeat)

    for key in ("tokens_per_s", "gflops", "flops_per_step", "gemm_gflops"):
        if not isinstance(ft.get(key), (int, float)) or ft[key] <= 0:
            raise SystemExit("run.py: ft-train bench result lacks a positive '%s': %s" % (
                key, json.dumps(ft)))
    torch_gflops = ft["flops_per_step"] / (th["step_ms"] / 1000.0) / 1e9
    # The fastest single step of each side: much less sensitive than the mean
    # to other work on a shared machine (a busy neighbour slows some steps).
    best = None
    if isinstance(ft.get("step_ms_min"), (int, float)) and ft["step_ms_min"] > 0:
        best = th["step_ms_min"] / ft["step_ms_min"]
    res = {
        "config": dict(flags=" ".join(common)),
        "ft": ft,
        "torch": th,
        "torch_gflops_same_flop_count": torch_gflops,
        "ratio_ft_over_torch_tokens_per_s": ft["tokens_per_s"] / th["tokens_per_s"],
        "ratio_ft_over_torch_best_step": best,
        "ratio_ft_gflops_over_ft_gemm": ft["gflops"] / ft["gemm_gflops"],
        "ratio_torch_gflops_over_torch_gemm": torch_gflops / th["gemm_gflops"],
        "notes": notes,
    }
    print("configuration: %s" % " ".join(common))
    print("ft-train : %8.1f tokens/s  %8.1f ms/step  %6.1f GFLOP/s of %6.1f GEMM GFLOP/s" % (
        ft["tokens_per_s"], ft.get("step_ms", float("nan")), ft["gflops"], ft["gemm_gflops"]))
    print("torch    : %8.1f tokens/s  %8.1f ms/step  %6.1f GFLOP/s of %6.1f GEMM GFLOP/s "
          "(torch %s, attention %s)" % (th["tokens_per_s"], th["step_ms"], torch_gflops,
                                        th["gemm_gflops"], th.get("torch"), th.get("attn")))
    print("ratio ft/torch tokens/s: %.3f (mean step); %s (fastest step: ft %s ms, torch %.1f ms)"
          % (res["ratio_ft_over_torch_tokens_per_s"],
             "%.3f" % best if best else "n/a", ft.get("step_ms_min"), th["step_ms_min"]))
    print("ratio ft gflops / ft gemm gflops: %.3f (torch: %.3f)" % (
        res["ratio_ft_gflops_over_ft_gemm"], res["ratio_torch_gflops_over_torch_gemm"]))
    for n in notes:
        print("note: " + n)
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
