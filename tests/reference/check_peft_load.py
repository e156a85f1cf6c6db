"""check_peft_load.py: an adapter trained by `ft-train run` loads as is in
PEFT (PeftModel.from_pretrained), and ft-train's eval loss equals the one
transformers+PEFT compute over the same eval rows.

  check_peft_load.py FT_TRAIN WORKDIR

Checks, each printed:
  - adapter_config.json says what the spec asked (LORA, r, alpha, targets,
    use_rslora) and PEFT parses it;
  - PeftModel.from_pretrained warns of no missing or unexpected keys and every
    loaded LoRA weight equals the file's bit for bit; B is non-zero (trained);
  - `ft-train eval` eval_loss (token-weighted mean over every non-ignored
    target of every eval row, rows from --dump-rows) matches the float64
    reference within 1e-4 relative, and eval_tokens matches the count;
  - the `done` event's eval_loss matches `ft-train eval` (same adapter) within
    1e-4 relative.
"""
import json
import logging
import math
import os
import sys
import warnings

import torch
from safetensors.torch import load_file

import refcommon as rc

EVAL_TOL = 1e-4
R, ALPHA = 4, 8.0


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


def parse_events(text):
    events = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            raise rc.CheckFailed("ft-train run printed a line that is not JSON: %r" % line[:200])
    return events


def main():
    ft_train = rc.ft_train_path(sys.argv)
    work = sys.argv[2]
    os.makedirs(work, exist_ok=True)
    model_dir = os.path.join(work, "model")
    cfg = rc.make_tiny_model(ft_train, model_dir, hidden=64, layers=2, heads=4, kv_heads=2,
                             intermediate=96, vocab=264, max_pos=256, seed=21)
    n_layers = cfg["num_hidden_layers"]
    train = os.path.join(work, "train.jsonl")
    evalp = os.path.join(work, "eval.jsonl")
    rc.write_tokenized_jsonl(train, 80, cfg["vocab_size"], seed=1)
    rc.write_tokenized_jsonl(evalp, 12, cfg["vocab_size"], seed=2)
    out_dir = os.path.join(work, "out")
    spec = os.path.join(work, "spec.json")
    rc.write_spec(spec, "ref-peft-load", model_dir, train, out_dir, eval_path=evalp,
                  lora_r=R, lora_alpha=ALPHA, sequence_len=32, micro_batch_size=4, max_steps=6,
                  learning_rate=0.01, lr_scheduler="constant", seed=4, threads=1)

    events = parse_events(rc.run_ft(ft_train, ["run", "--spec", spec]))
    kinds = [e.get("event") for e in events]
    rc.log("ft-train run events: %s" % ", ".join("%s x%d" % (k, kinds.count(k))
                                               for k in dict.fromkeys(kinds)))
    done = [e for e in events if e.get("event") == "done"]
    if len(done) != 1:
        raise rc.CheckFailed("expected one 'done' event, got %d" % len(done))
    adapter_dir = done[0].get("adapter") or out_dir
    rc.log("adapter folder: %s (%s)" % (adapter_dir, ", ".join(sorted(os.listdir(adapter_dir)))))

    # adapter_config.json as written, and as PEFT reads it.
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        acfg = json.load(f)
    want = {"peft_type": "LORA", "r": R, "lora_alpha": ALPHA, "use_rslora": False}
    for k, v in want.items():
        if acfg.get(k) != v:
            raise rc.CheckFailed("adapter_config.json %s = %r, expected %r" % (k, acfg.get(k), v))
    if sorted(acfg.get("target_modules") or []) != sorted(rc.TARGETS):
        raise rc.CheckFailed("adapter_config.json target_modules = %r" % acfg.get("target_modules"))
    from peft import PeftConfig, PeftModel
    pcfg = PeftConfig.from_pretrained(adapter_dir)
    rc.log("adapter_config.json: peft_type %s, r %s, lora_alpha %s, targets %s (PEFT parses it)"
           % (pcfg.peft_type, pcfg.r, pcfg.lora_alpha, sorted(pcfg.target_modules)))

    # Load with PEFT, capturing every warning it or transformers emits.
    file_w = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    expected = set(rc.lora_keys(n_layers))
    if set(file_w) != expected:
        raise rc.CheckFailed("adapter_model.safetensors keys differ from PEFT's: missing %s, "
                             "extra %s" % (sorted(expected - set(file_w))[:4],
                                           sorted(set(file_w) - expected)[:4]))
    base = rc.load_hf_model(model_dir, dtype=torch.float32)
    cap = _Capture()
    loggers = [logging.getLogger(n) for n in ("peft", "transformers", "")]
    for lg in loggers:
        lg.addHandler(cap)
    with warnings.catch_warnings(record=True) as wlist:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, adapter_dir)
    for lg in loggers:
        lg.removeHandler(cap)
    msgs = [str(w.message) for w in wlist] + cap.records
    key_msgs = [m for m in msgs if any(s in m.lower() for s in ("missing", "unexpected"))]
    rc.log("PeftModel.from_pretrained: %d warnings, %d about missing/unexpected keys" % (
        len(msgs), len(key_msgs)))
    for m in msgs:
        rc.log("  warning: %s" % m[:300])
    if key_msgs:
        raise rc.CheckFailed("PEFT reports missing or unexpected keys")
    params = dict(model.named_parameters())
    n_b_nonzero = 0
    for key in sorted(expected):
        p = params.get(rc.peft_name(key))
        if p is None:
            raise rc.CheckFailed("PEFT model has no parameter for '%s'" % key)
        if not torch.equal(p.detach().float(), file_w[key].float()):
            raise rc.CheckFailed("'%s' loaded by PEFT differs from the file" % key)
        if ".lora_B." in key and bool(file_w[key].abs().sum() > 0):
            n_b_nonzero += 1
    rc.log("every one of %d LoRA tensors loaded by PEFT equals the file; %d of %d lora_B are "
           "non-zero" % (len(expected), n_b_nonzero, len(expected) // 2))
    if n_b_nonzero == 0:
        raise rc.CheckFailed("all lora_B are zero: the run did not train, eval would not tell")

    # Eval loss: ft-train eval against the reference over the dumped rows.
    rows = os.path.join(work, "eval-rows.safetensors")
    res = json.loads(rc.run_ft(ft_train, ["eval", "--spec", spec, "--adapter", adapter_dir,
                                          "--dump-rows", rows]).strip().splitlines()[-1])
    ev = load_file(rows)
    inputs, targets = ev["inputs"].long(), ev["targets"].long()
    rc.log("eval rows: %d x %d, ft-train eval: %s" % (inputs.shape[0], inputs.shape[1],
                                                     json.dumps(res)))
    model = model.to(torch.float64)
    model.eval()
    total, count = torch.zeros((), dtype=torch.float64), 0
    with torch.no_grad():
        for i in range(0, inputs.shape[0], 8):
            logits = model(input_ids=inputs[i:i + 8]).logits
            s, c = rc.token_loss_sum(logits, targets[i:i + 8])
            total += s
            count += c
    ref = float(total) / count
    ft_loss = float(res["eval_loss"])
    rel = abs(ft_loss - ref) / abs(ref)
    rc.log("eval_loss: ft-train %.8f over %s tokens, reference float64 %.8f over %d tokens, "
           "relative diff %.2e (tolerance %.0e)" % (ft_loss, res.get("eval_tokens"), ref, count,
                                                     rel, EVAL_TOL))
    if int(res.get("eval_tokens", -1)) != count:
        raise rc.CheckFailed("eval_tokens %s, reference counts %d" % (res.get("eval_tokens"), count))
    if not rel <= EVAL_TOL:
        raise rc.CheckFailed("eval_loss differs by %.2e relative" % rel)
    if done[0].get("eval_loss") is not None:
        d = float(done[0]["eval_loss"])
        drel = abs(d - ft_loss) / abs(ft_loss)
        rc.log("done event eval_loss %.8f vs ft-train eval %.8f: relative diff %.2e" % (
            d, ft_loss, drel))
        if not drel <= EVAL_TOL:
            raise rc.CheckFailed("the done event's eval_loss differs from ft-train eval")
    if not math.isfinite(ft_loss):
        raise rc.CheckFailed("eval_loss is not finite")
    rc.log("PASS: PEFT loads the adapter as written and agrees on the eval loss")


if __name__ == "__main__":
    rc.main_wrapper(main)
