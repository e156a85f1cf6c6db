#!/usr/bin/env python3
"""Exact resume of `ft-train run`: a straight 20-step run and a 10-step run
resumed to 20 steps (same spec, max_steps raised, same output_dir) must give
bit-identical losses, grad norms, learning rates and eval losses at every
step, and byte-identical adapters. The spec uses gradient accumulation,
LoRA dropout, a data set small enough to wrap epochs, periodic checkpoints,
and a constant schedule with warmup (a cosine or linear schedule depends on
max_steps, so runs with different max_steps would differ by design).
Also: SIGTERM mid-run checkpoints and dies of SIGTERM, and the rerun matches
the straight run; a changed spec (lora_r) refuses to resume from that
output_dir.
With DTYPE (fp32 or bf16) every run's spec says "dtype": DTYPE, and the
runs must say in their log that they used that backend (bf16: cpu-bf16 and
its kernel): resume is as exact with bf16 base weights; and a checkpoint
written at one dtype does not resume at the other.

usage: test_resume.py FT_TRAIN [DTYPE]
"""
import json
import os
import subprocess
import sys
import tempfile

from ft_train_testlib import Checks

FT = sys.argv[1]
DTYPE = sys.argv[2] if len(sys.argv) > 2 else None
check = Checks()


def run(spec, path):
    with open(path, "w") as f:
        json.dump(spec, f)
    p = subprocess.run([FT, "run", "--spec", path], capture_output=True, text=True)
    events = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    return p.returncode, events, p.stderr


def main():
    tmp = tempfile.mkdtemp(prefix="ft-test-resume-")
    model = os.path.join(tmp, "model")
    subprocess.run([FT, "make-tiny-model", model, "--seed", "7"], check=True)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    with open(os.path.join(tmp, "train.jsonl"), "w") as f:
        for i in range(40):
            f.write(json.dumps({"text": " ".join(words[(i + k) % 8] for k in range(3 + i % 5))}) + "\n")
    with open(os.path.join(tmp, "eval.jsonl"), "w") as f:
        for i in range(6):
            f.write(json.dumps({"prompt": words[i] + " after", "completion": " " + words[(i + 1) % 8]}) + "\n")

    def spec(out, steps, r=4):
        s = {"name": "resume", "kind": "lora", "train": {
            "base_model": model,
            "datasets": [{"path": os.path.join(tmp, "train.jsonl"), "type": "text"}],
            "eval_path": os.path.join(tmp, "eval.jsonl"),
            "output_dir": os.path.join(tmp, out),
            "lora_r": r, "lora_alpha": 8, "lora_dropout": 0.1,
            "sequence_len": 32, "micro_batch_size": 2, "gradient_accumulation_steps": 2,
            "max_steps": steps, "learning_rate": 0.005, "lr_scheduler": "constant",
            "warmup_steps": 3, "weight_decay": 0.01, "max_grad_norm": 0.5,
            "eval_steps": 5, "save_steps": 4, "seed": 9, "threads": 2}}
        if DTYPE:
            s["train"]["dtype"] = DTYPE
        return s

    rc, straight, err = run(spec("a", 20), os.path.join(tmp, "a.json"))
    check(rc == 0, "straight 20-step run exits 0" + ("" if rc == 0 else ": " + err[-500:]))
    rc1, first, err1 = run(spec("b", 10), os.path.join(tmp, "b1.json"))
    check(rc1 == 0, "10-step run exits 0" + ("" if rc1 == 0 else ": " + err1[-500:]))
    rc2, second, err2 = run(spec("b", 20), os.path.join(tmp, "b2.json"))
    check(rc2 == 0, "resumed run to 20 steps exits 0" + ("" if rc2 == 0 else ": " + err2[-500:]))
    check("resumed from" in err2, "the second run says it resumed")
    if DTYPE:
        want = "compute: cpu-bf16 backend" if DTYPE == "bf16" else "compute: cpu backend (fp32"
        line = [l for l in err.splitlines() if "compute:" in l]
        check(want in err, "the runs use dtype %s: %s" % (DTYPE, line[0].split("info: ")[-1] if line else "no compute line"))

    def prog(evs):
        return [e for e in evs if e["event"] == "progress"]

    p2 = prog(second)
    check(bool(p2) and p2[0]["step"] == 11, "the resumed run starts at step 11 (got %s)" % (p2[0]["step"] if p2 else None))
    a = [(e["step"], e["loss"], e["grad_norm"], e["lr"]) for e in prog(straight)]
    b = [(e["step"], e["loss"], e["grad_norm"], e["lr"]) for e in prog(first) + p2]
    check(len(a) == 20 and len(b) == 20, "20 progress events each (%d, %d)" % (len(a), len(b)))
    diff = [(x, y) for x, y in zip(a, b) if x != y]
    for x, y in diff[:3]:
        print("   straight", x, "\n   resumed ", y)
    check(not diff, "losses, grad norms and lrs bit-identical at all %d steps" % len(a))
    print("   losses: step 1 %.6f, step 10 %.6f, step 20 %.6f" % (a[0][1], a[9][1], a[-1][1]) if len(a) == 20 else "")
    ea = [(e["step"], e["eval_loss"]) for e in straight if e["event"] == "eval"]
    eb = [(e["step"], e["eval_loss"]) for e in first + second if e["event"] == "eval"]
    check(ea == eb and len(ea) == 4, "eval losses identical at steps 5, 10, 15, 20: %s" % ea)
    da = [e for e in straight if e["event"] == "done"]
    check(len(da) == 1 and da[0]["step"] == 20, "done event at step 20")
    with open(os.path.join(tmp, "a", "adapter_model.safetensors"), "rb") as f:
        ad_a = f.read()
    with open(os.path.join(tmp, "b", "adapter_model.safetensors"), "rb") as f:
        ad_b = f.read()
    check(ad_a == ad_b, "final adapters byte-identical (%d bytes)" % len(ad_a))
    cks = [e["step"] for e in straight if e["event"] == "checkpoint"]
    check(cks == [4, 8, 12, 16, 20], "checkpoints at 4, 8, 12, 16 and the end: %s" % cks)

    # SIGTERM in the middle: the step finishes, a checkpoint is saved, the
    # process dies of SIGTERM; running the same spec again completes the job
    # with the same losses as the straight run
    path = os.path.join(tmp, "c.json")
    with open(path, "w") as f:
        json.dump(spec("c", 20), f)
    p = subprocess.Popen([FT, "run", "--spec", path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    stopped = []
    for line in p.stdout:
        ev = json.loads(line)
        stopped.append(ev)
        if ev["event"] == "progress" and ev["step"] == 2:
            p.send_signal(15)
    p.wait()
    p.stderr.close()
    ck = [e["step"] for e in stopped if e["event"] == "checkpoint"]
    last = max([e["step"] for e in stopped if e["event"] == "progress"] or [0])
    check(p.returncode == -15 and ck and ck[-1] == last and last < 20,
          "SIGTERM at step 2: exit by SIGTERM (%s) after checkpoint %s at the last step %d" % (p.returncode, ck, last))
    rc4, rest, err4 = run(spec("c", 20), path)
    c = [(e["step"], e["loss"], e["grad_norm"], e["lr"]) for e in prog(stopped) + prog(rest)]
    check(rc4 == 0 and c == a, "stopped + resumed run has the straight run's %d losses bit for bit" % len(c))

    rc3, _, err3 = run(spec("b", 30, r=8), os.path.join(tmp, "b3.json"))
    check(rc3 == 1, "a changed spec (lora_r) does not resume: exit %d, %s" % (rc3, err3.strip().splitlines()[-1] if err3.strip() else ""))

    if DTYPE:
        other = spec("b", 30)
        other["train"]["dtype"] = "fp32" if DTYPE == "bf16" else "bf16"
        rc5, _, err5 = run(other, os.path.join(tmp, "b5.json"))
        check(rc5 == 1 and "another spec" in err5,
              "a changed dtype (%s) does not resume: exit %d" % (other["train"]["dtype"], rc5))

    return check.finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
