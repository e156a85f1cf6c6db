#!/usr/bin/env python3
"""run.py: the trainer benchmark: ft-train bench against the same LoRA step in
PyTorch (transformers + PEFT, eager), same configuration, same thread count,
each side in fp32 and with bf16 frozen base weights.

  run.py --ft-train PATH [--python PY] [--steps N] [--threads T] [--repeat K]
         [--autocast] [model flags]

Model flags (defaults: the benchmark configuration): --hidden 512 --layers 8
--heads 8 --kv-heads 8 --intermediate 1376 --vocab 8192 --seq 256 --batch 4
--r 16. The PyTorch side runs in the environment of
tests/reference/setup-python.sh (made when missing) unless --python names one.

Four runs (five with --autocast):
  ft-fp32     ft-train bench --dtype fp32 (OpenBLAS sgemm)
  ft-bf16     ft-train bench --dtype bf16 (the cpu-bf16 backend; its kernel
              is printed: amx, avx512bf16 or generic)
  torch-fp32  torch_lora_step.py --dtype fp32
  torch-bf16  torch_lora_step.py --dtype bf16: the base model cast to
              bfloat16 before PEFT (PEFT keeps the adapters fp32), what a
              user loading with torch_dtype=torch.bfloat16 runs
  torch-autocast (--autocast) the fp32 model under torch.autocast("cpu",
              bfloat16), HF Trainer's bf16=True on CPU
Prints each run's tokens/s, step time and GFLOP/s against its own GEMM rate
(ft-fp32: OpenBLAS sgemm; ft-bf16: the bf16 kernel's square-GEMM rate, and
the sgemm rate beside it; torch: its fp32 or bf16 matmul rate), then the
ratios ft-bf16/torch-fp32 (the issue's target: >= 2), ft-bf16/torch-bf16
and ft-fp32/torch-fp32, over the mean step and over each side's fastest
step (steadier when the machine is shared), and, last, one JSON line with
everything (the fields of earlier versions kept: "ft" and "torch" are the
fp32 runs).

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
                   help="run every side this many times, alternating, and keep each "
                        "side's best (fastest) run; helps on a shared, busy machine")
    p.add_argument("--autocast", action="store_true",
                   help="also time torch under torch.autocast(\"cpu\", bfloat16)")
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
    ftp = os.path.abspath(a.ft_train)
    sides = [
        ("ft-fp32", [ftp, "bench"] + common + ["--dtype", "fp32"], "ft-train bench"),
        ("ft-bf16", [ftp, "bench"] + common + ["--dtype", "bf16"], "ft-train bench"),
        ("torch-fp32", [py, TORCH_SCRIPT] + common + ["--dtype", "fp32"], "torch_lora_step.py"),
        ("torch-bf16", [py, TORCH_SCRIPT] + common + ["--dtype", "bf16"], "torch_lora_step.py"),
    ]
    if a.autocast:
        sides.append(("torch-autocast", [py, TORCH_SCRIPT] + common + ["--dtype", "autocast"],
                      "torch_lora_step.py"))
    load_before = os.getloadavg()[0]
    best_run = {}
    for _ in range(a.repeat):
        for name, cmd, who in sides:
            r = run(cmd, env, a.timeout, who)
            if name not in best_run or r.get("tokens_per_s", 0) > best_run[name]["tokens_per_s"]:
                best_run[name] = r
    load_after = os.getloadavg()[0]
    notes.append("1-minute load average %.2f before, %.2f after (%d cores)%s" % (
        load_before, load_after, os.cpu_count() or 0,
        "; the machine was busy with other work, so the figures are noisy"
        if max(load_before, load_after) > 0.5 else ""))
    if a.repeat > 1:
        notes.append("best of %d alternating runs per side" % a.repeat)

    for name in ("ft-fp32", "ft-bf16"):
        for key in ("tokens_per_s", "gflops", "flops_per_step", "gemm_gflops", "gemm_w_gflops"):
            v = best_run[name].get(key)
            if not isinstance(v, (int, float)) or v <= 0:
                raise SystemExit("run.py: %s result lacks a positive '%s': %s" % (
                    name, key, json.dumps(best_run[name])))
    flop = best_run["ft-fp32"]["flops_per_step"]
    # the same FLOP count for every side: torch's GFLOP/s over its own step time
    for name, r in best_run.items():
        if name.startswith("torch"):
            r["gflops_same_flop_count"] = flop / (r["step_ms"] / 1000.0) / 1e9

    def ratio(x, y):
        return best_run[x]["tokens_per_s"] / best_run[y]["tokens_per_s"]

    def ratio_best(x, y):
        fx, fy = best_run[x].get("step_ms_min"), best_run[y].get("step_ms_min")
        return fy / fx if fx and fy else None

    pairs = [("ft-bf16", "torch-fp32"), ("ft-bf16", "torch-bf16"), ("ft-fp32", "torch-fp32")]
    ft, th = best_run["ft-fp32"], best_run["torch-fp32"]
    res = {
        "config": dict(flags=" ".join(common)),
        "runs": best_run,
        "ratios_tokens_per_s": {"%s/%s" % p: ratio(*p) for p in pairs},
        "ratios_best_step": {"%s/%s" % p: ratio_best(*p) for p in pairs},
        "bf16_kernel": best_run["ft-bf16"].get("kernel"),
        "ratio_ft_bf16_gflops_over_bf16_gemm": best_run["ft-bf16"]["gflops"] /
                                               best_run["ft-bf16"]["gemm_w_gflops"],
        "ratio_ft_bf16_gflops_over_sgemm": best_run["ft-bf16"]["gflops"] /
                                           best_run["ft-bf16"]["gemm_gflops"],
        # the fields of the fp32-only report, unchanged
        "ft": ft,
        "torch": th,
        "torch_gflops_same_flop_count": th["gflops_same_flop_count"],
        "ratio_ft_over_torch_tokens_per_s": ratio("ft-fp32", "torch-fp32"),
        "ratio_ft_over_torch_best_step": ratio_best("ft-fp32", "torch-fp32"),
        "ratio_ft_gflops_over_ft_gemm": ft["gflops"] / ft["gemm_gflops"],
        "ratio_torch_gflops_over_torch_gemm": th["gflops_same_flop_count"] / th["gemm_gflops"],
        "notes": notes,
    }
    print("configuration: %s" % " ".join(common))
    print("%-15s %9s %9s %9s %8s  %s" % ("run", "tokens/s", "ms/step", "best ms", "GFLOP/s",
                                          "of GEMM GFLOP/s"))
    for name, _, _ in sides:
        r = best_run[name]
        gf = r.get("gflops", r.get("gflops_same_flop_count"))
        if name == "ft-bf16":
            gemm = "%.1f bf16 %s kernel (%.0f%%), %.1f sgemm (%.0f%%)" % (
                r["gemm_w_gflops"], r.get("kernel"), 100 * gf / r["gemm_w_gflops"],
                r["gemm_gflops"], 100 * gf / r["gemm_gflops"])
        else:
            gemm = "%.1f %s (%.0f%%)" % (r["gemm_gflops"], "sgemm" if name == "ft-fp32" else
                                         "torch %s matmul" % ("fp32" if name == "torch-fp32"
                                                              else "bf16"),
                                         100 * gf / r["gemm_gflops"])
        print("%-15s %9.1f %9.1f %9.1f %8.1f  %s" % (name, r["tokens_per_s"], r["step_ms"],
                                                     r.get("step_ms_min", float("nan")), gf,
                                                     gemm))
    for p in pairs:
        rb = ratio_best(*p)
        print("ratio %-22s tokens/s %.3f (mean step), %s (fastest step)" % (
            "%s/%s" % p, ratio(*p), "%.3f" % rb if rb else "n/a"))
    if "torch-autocast" in best_run:
        print("ratio %-22s tokens/s %.3f" % ("ft-bf16/torch-autocast",
                                             ratio("ft-bf16", "torch-autocast")))
    th_info = best_run["torch-fp32"]
    notes.append("torch %s, attention %s" % (th_info.get("torch"), th_info.get("attn")))
    for n in notes:
        print("note: " + n)
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
