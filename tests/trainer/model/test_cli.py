#!/usr/bin/env python3
"""ft-train's command line: exit codes of bad usage and bad specs (2, with a
message naming the problem), `check` output (every PEFT key with its shape,
gradients present and non-zero, loss and scaling; a bad dtype in the spec
or on `bench`), `run` then `eval` of the
written adapter (same eval loss, bit for bit, as the run's done event) and
`eval --dump-rows` (rows whose target count equals eval_tokens).

usage: test_cli.py FT_TRAIN
"""
import json
import math
import re
import os
import sys
import tempfile

from ft_train_testlib import Checks, read_safetensors, runner

FT = sys.argv[1]
check = Checks()
ft = runner(FT)


def main():
    tmp = tempfile.mkdtemp(prefix="ft-test-cli-")
    model = os.path.join(tmp, "model")
    p = ft("make-tiny-model", model, "--hidden", "32", "--layers", "2", "--heads", "4",
           "--kv-heads", "2", "--intermediate", "64", "--seed", "3")
    check(p.returncode == 0, "make-tiny-model exits 0" + ("" if p.returncode == 0 else ": " + p.stderr[-200:]))
    with open(os.path.join(tmp, "data.jsonl"), "w") as f:
        for i in range(30):
            f.write(json.dumps({"prompt": "count %d:" % i, "completion": " " + " ".join(str(i + k) for k in range(4))}) + "\n")

    def spec(**over):
        t = {"base_model": model, "datasets": [{"path": os.path.join(tmp, "data.jsonl")}],
             "val_set_size": 0.2, "output_dir": os.path.join(tmp, "out"), "lora_r": 4,
             "lora_alpha": 12, "sequence_len": 24, "micro_batch_size": 3, "max_steps": 6,
             "learning_rate": 0.01, "seed": 4, "threads": 1, "target_modules": ["q_proj", "v_proj", "down_proj"]}
        t.update(over)
        path = os.path.join(tmp, "spec-%d.json" % len(os.listdir(tmp)))
        with open(path, "w") as f:
            json.dump({"name": "cli", "kind": "lora", "train": t}, f)
        return path

    # usage and spec errors
    check(ft().returncode == 2, "no subcommand: exit 2")
    p = ft("-h")
    check(p.returncode == 0 and "ft-train run --spec" in p.stdout, "-h: usage on stdout, exit 0")
    p = ft("frobnicate")
    check(p.returncode == 2 and "'frobnicate' is not a subcommand" in p.stderr, "unknown subcommand: exit 2 naming it")
    p = ft("run")
    check(p.returncode == 2 and "'--spec' is required" in p.stderr, "run without --spec: exit 2")
    p = ft("run", "--spec", os.path.join(tmp, "missing.json"))
    check(p.returncode == 2 and "missing.json" in p.stderr, "missing spec file: exit 2 naming it")
    p = ft("run", "--spec", spec(lora_rank=8))
    check(p.returncode == 2 and "lora_rank" in p.stderr, "unknown train key: exit 2 naming it: " + p.stderr.strip()[-120:])
    p = ft("run", "--spec", spec(dtype="fp16"))
    check(p.returncode == 2 and "spec.train.dtype" in p.stderr,
          "bad dtype: exit 2 naming the key: " + p.stderr.strip()[-120:])
    p = ft("bench", "--dtype", "half")
    check(p.returncode == 2 and "'--dtype'" in p.stderr, "bench --dtype half: exit 2 naming the option")
    p = ft("run", "--spec", spec(), "--event-fd", "77")
    check(p.returncode == 2 and "--event-fd" in p.stderr, "closed --event-fd: exit 2")
    p = ft("run", "--spec", spec(), "--rank", "3", "--world-size", "2")
    check(p.returncode == 2, "rank >= world: exit 2")
    p = ft("bench", "--layers", "zero")
    check(p.returncode == 2 and "--layers" in p.stderr, "bench with a bad number: exit 2 naming the flag")
    p = ft("make-tiny-model", os.path.join(tmp, "m2"), "--dtype", "f8")
    check(p.returncode == 2 and "--dtype" in p.stderr, "make-tiny-model bad dtype: exit 2")
    p = ft("run", "--spec", spec(base_model=os.path.join(tmp, "nope")))
    check(p.returncode == 1 and "nope" in p.stderr, "missing base model: exit 1 naming it")

    # check
    out = os.path.join(tmp, "check.safetensors")
    p = ft("check", "--spec", spec(lora_dropout=0.3), "--out", out)
    check(p.returncode == 0, "check exits 0" + ("" if p.returncode == 0 else ": " + p.stderr[-200:]))
    st = read_safetensors(out) if p.returncode == 0 else {}
    dims = {"q_proj": (32, 32), "v_proj": (32, 16), "down_proj": (64, 32)}  # (in, out)
    ok_names = True
    nonzero = True
    for l in range(2):
        for mod, (i, o) in dims.items():
            part = "mlp" if mod == "down_proj" else "self_attn"
            base = "base_model.model.model.layers.%d.%s.%s" % (l, part, mod)
            for which, shape in (("lora_A", [4, i]), ("lora_B", [o, 4])):
                for suf in ("", ".grad"):
                    key = base + "." + which + ".weight" + suf
                    ok_names &= key in st and st[key][1] == shape and st[key][0] == "F32"
                    if suf and key in st:
                        nonzero &= any(v != 0.0 for v in st[key][2])
    check(ok_names, "check writes A [r,in], B [out,r] and their .grad for the 3 targeted modules x 2 layers")
    check(nonzero, "every gradient tensor is non-zero (B ~ N(0, 0.02) at check)")
    others = [k for k in st if "k_proj" in k or "o_proj" in k or "gate_proj" in k]
    check(not others, "untargeted modules are absent")
    check(st.get("inputs", ("", None))[1] == [3, 24] and st.get("targets", ("", None))[1] == [3, 24],
          "inputs/targets are I32 (B, T) = (3, 24)")
    loss = st.get("loss", ("", [], [float("nan")]))[2][0]
    check(st.get("loss", ("", None))[1] == [1] and 0 < loss < 10, "loss F32 [1] = %.5f" % loss)
    check(abs(st.get("scaling", ("", [], [0]))[2][0] - 3.0) < 1e-7, "scaling = alpha / r = 3")
    tg = st.get("targets", ("", [], []))[2]
    check(any(t == -100 for t in tg) and any(t >= 0 for t in tg), "targets mix ignored (-100) prompt and learnt tokens")

    # run, then eval of the written adapter
    sp = spec(eval_steps=0)
    p = ft("run", "--spec", sp)
    events = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    done = [e for e in events if e["event"] == "done"]
    check(p.returncode == 0 and len(done) == 1, "run exits 0 with one done event")
    rows = os.path.join(tmp, "rows.safetensors")
    p = ft("eval", "--spec", sp, "--adapter", os.path.join(tmp, "out"), "--dump-rows", rows)
    check(p.returncode == 0, "eval exits 0" + ("" if p.returncode == 0 else ": " + p.stderr[-200:]))
    res = json.loads(p.stdout) if p.returncode == 0 else {}
    check(done and res.get("eval_loss") == done[0]["eval_loss"],
          "eval of the adapter == the run's final eval loss, bit for bit (%s vs %s)" % (res.get("eval_loss"), done[0]["eval_loss"] if done else None))
    dump = read_safetensors(rows) if os.path.exists(rows) else {}
    n_t = sum(1 for t in dump.get("targets", ("", [], []))[2] if t != -100)
    check(dump and dump["inputs"][1][1] == 24 and n_t == res.get("eval_tokens"),
          "dumped rows (N, 24) hold eval_tokens = %s targets (counted %d)" % (res.get("eval_tokens"), n_t))
    # num_epochs instead of max_steps: steps = ceil(epochs * floor(rows / (B * GA)))
    p = ft("run", "--spec", spec(max_steps=0, num_epochs=2.5, gradient_accumulation_steps=2,
                                 output_dir=os.path.join(tmp, "out-epochs")))
    m = re.search(r"(\d+) train rows", p.stderr)
    prog = [json.loads(l) for l in p.stdout.splitlines() if '"progress"' in l]
    rows = int(m.group(1)) if m else -1
    want = math.ceil(2.5 * max(1, rows // 6))
    check(p.returncode == 0 and prog and prog[-1]["total_steps"] == want == prog[-1]["step"],
          "num_epochs 2.5 over %d rows, 3 x 2 per step: %s steps (want %d)" % (rows, prog[-1]["total_steps"] if prog else None, want))
    check(prog and 2.0 <= prog[-1]["epoch"] <= 2.6, "final epoch figure %.3f is about 2.5" % (prog[-1]["epoch"] if prog else -1))
    lrs = [e["lr"] for e in prog]
    check(len(lrs) > 2 and lrs[0] == 0.01 and all(a >= b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 0.01 * 0.2,
          "default cosine schedule, no warmup: lr falls from 0.01 to %.2e" % (lrs[-1] if lrs else -1))

    p = ft("eval", "--spec", sp, "--adapter", os.path.join(tmp, "nowhere"))
    check(p.returncode == 1 and "nowhere" in p.stderr, "eval of a missing adapter: exit 1 naming it")

    return check.finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
