"""check_grad.py: ft-train's forward loss and LoRA gradients against Hugging
Face transformers (LlamaForCausalLM) wrapped by PEFT (get_peft_model).

  check_grad.py FT_TRAIN WORKDIR CASE
  CASE plain:         2 layers, GQA 4/2 heads, untied, all seven modules,
                      r 4, alpha 8 (scaling alpha/r)
  CASE rslora-llama3: the same with use_rslora (alpha/sqrt(r)), llama3 rope
                      scaling in config.json, tied embeddings
  CASE bf16-mqa:      plain, but the model file in BF16 (both sides widen it
                      exactly) and one key/value head for four query heads
  CASE bf16-weights:  plain (F32 file), but ft-train runs with "dtype": "bf16"
                      (the cpu-bf16 backend: base weights and the inputs of
                      their GEMMs rounded to bf16, fp32 accumulation) against
                      the same float64 reference of the F32 model

ft-train check writes the batch it used (inputs, targets), the LoRA A/B values
and loss and gradients; the same A/B go into the PEFT model, which is run in
float64 (the reference) and in float32 (to show the float32 noise floor).

Tolerances (ft-train computes in float32):
  loss: |ft - ref| / |ref| <= 1e-4
  each gradient tensor: max|ft - ref| / max|ref| <= 1e-3
and the check proves it can see an error: the reference recomputed with every
lora_B 1% off must move each lora_A gradient by more than that tolerance.
bf16-weights: loss 2e-3, gradients 3e-2 (bf16 keeps 8 significant bits:
about 4e-3 relative per rounding), the error it must see is lora_B 10% off,
and the log shows transformers' own bfloat16 run (the whole PEFT model cast)
against the same float64 reference for comparison.
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file

import refcommon as rc

LOSS_TOL = 1e-4
GRAD_TOL = 1e-3
R, ALPHA = 4, 8.0
# dtype: the model file's; ft: spec.train.dtype; tolerances and the lora_B
# error the gradient tolerance must be able to see
CASES = {
    "plain": {"kv_heads": 2, "dtype": "f32", "ft": "fp32", "loss_tol": LOSS_TOL,
              "grad_tol": GRAD_TOL, "b_off": 1.01},
    "rslora-llama3": {"kv_heads": 2, "dtype": "f32", "ft": "fp32", "loss_tol": LOSS_TOL,
                      "grad_tol": GRAD_TOL, "b_off": 1.01},
    "bf16-mqa": {"kv_heads": 1, "dtype": "bf16", "ft": "fp32", "loss_tol": LOSS_TOL,
                 "grad_tol": GRAD_TOL, "b_off": 1.01},
    "bf16-weights": {"kv_heads": 2, "dtype": "f32", "ft": "bf16", "loss_tol": 2e-3,
                     "grad_tol": 3e-2, "b_off": 1.10},
}


def reference(model_dir, check, n_layers, use_rslora, dtype, b_scale=1.0):
    from peft import LoraConfig, get_peft_model
    base = rc.load_hf_model(model_dir, dtype=torch.float32)
    base = base.to(dtype)
    cfg = LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=list(rc.TARGETS),
                     use_rslora=use_rslora, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    model.eval()

    # Copy ft-train's A/B values in, checking both directions: every LoRA
    # parameter of the PEFT model gets a value, every value in the file is used.
    params = dict(model.named_parameters())
    lora_params = {n: p for n, p in params.items() if "lora_" in n}
    used = set()
    with torch.no_grad():
        for key in rc.lora_keys(n_layers):
            if key not in check:
                raise rc.CheckFailed("check file lacks '%s'" % key)
            name = rc.peft_name(key)
            if name not in lora_params:
                raise rc.CheckFailed("PEFT model has no parameter '%s'" % name)
            p = lora_params[name]
            if tuple(p.shape) != tuple(check[key].shape):
                raise rc.CheckFailed("%s: shape %s in the file, PEFT expects %s" % (
                    key, tuple(check[key].shape), tuple(p.shape)))
            p.copy_(check[key].to(dtype) * (b_scale if ".lora_B." in key else 1.0))
            used.add(name)
    unused = sorted(set(lora_params) - used)
    if unused:
        raise rc.CheckFailed("PEFT LoRA parameters without a value in the file: %s" % unused[:4])

    mod = model.base_model.model.model.layers[0].self_attn.q_proj
    scaling = float(mod.scaling["default"])

    inputs = check["inputs"].long()
    targets = check["targets"].long()
    logits = model(input_ids=inputs).logits
    total, count = rc.token_loss_sum(logits, targets)
    loss = total / count
    loss.backward()
    grads = {}
    for key in rc.lora_keys(n_layers):
        g = lora_params[rc.peft_name(key)].grad
        if g is None:
            raise rc.CheckFailed("no reference gradient for '%s'" % key)
        grads[key] = g.detach().clone()
    return float(loss.detach()), grads, scaling, count


def main():
    ft_train = rc.ft_train_path(sys.argv)
    if len(sys.argv) != 4 or sys.argv[3] not in CASES:
        sys.stderr.write("usage: check_grad.py FT_TRAIN WORKDIR %s\n" % "|".join(CASES))
        sys.exit(2)
    work, case = sys.argv[2], sys.argv[3]
    c = CASES[case]
    loss_tol, grad_tol = c["loss_tol"], c["grad_tol"]
    use_rslora = case == "rslora-llama3"
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(0)

    model_dir = os.path.join(work, "model")
    cfg = rc.make_tiny_model(ft_train, model_dir, hidden=64, layers=2, heads=4,
                             kv_heads=CASES[case]["kv_heads"], intermediate=96, vocab=264,
                             max_pos=256, dtype=CASES[case]["dtype"], seed=11,
                             tie=use_rslora)
    if use_rslora:
        cfg = rc.set_llama3_rope(model_dir)
        if not cfg.get("tie_word_embeddings"):
            raise rc.CheckFailed("make-tiny-model --tie did not set tie_word_embeddings")
    n_layers = cfg["num_hidden_layers"]
    log_cfg = {k: cfg.get(k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                       "num_key_value_heads", "intermediate_size", "vocab_size",
                                       "tie_word_embeddings", "rope_theta", "rope_scaling")}
    rc.log("case %s: model %s" % (case, json.dumps(log_cfg)))

    data = os.path.join(work, "train.jsonl")
    rc.write_tokenized_jsonl(data, 60, cfg["vocab_size"], seed=5)
    spec = os.path.join(work, "spec.json")
    rc.write_spec(spec, "ref-grad-" + case, model_dir, data, os.path.join(work, "out"),
                  lora_r=R, lora_alpha=ALPHA, use_rslora=use_rslora, sequence_len=32,
                  micro_batch_size=4, max_steps=1, seed=3, threads=1, dtype=c["ft"])
    out = os.path.join(work, "check.safetensors")
    rc.run_ft(ft_train, ["check", "--spec", spec, "--out", out])
    rc.log("ft-train check ran with \"dtype\": \"%s\"" % c["ft"])
    check = load_file(out)
    for k in ("inputs", "targets", "loss", "scaling"):
        if k not in check:
            raise rc.CheckFailed("check file lacks '%s'" % k)
    b, t = check["inputs"].shape
    rc.log("batch: %d rows x %d tokens, %d targets with a loss" % (
        b, t, int((check["targets"] != -100).sum())))
    if (b, t) != (4, 32):
        raise rc.CheckFailed("inputs shape %s, expected (4, 32) from the spec" % ((b, t),))

    want_scaling = ALPHA / math.sqrt(R) if use_rslora else ALPHA / R
    ft_scaling = float(check["scaling"].reshape(-1)[0])
    loss64, grads64, peft_scaling, count = reference(model_dir, check, n_layers, use_rslora,
                                                     torch.float64)
    rc.log("scaling: ft-train %.6g, PEFT %.6g, expected %.6g" % (ft_scaling, peft_scaling,
                                                                 want_scaling))
    if abs(ft_scaling - want_scaling) > 1e-6 * want_scaling or \
            abs(peft_scaling - want_scaling) > 1e-9 * want_scaling:
        raise rc.CheckFailed("scaling differs")
    loss32, grads32, _, _ = reference(model_dir, check, n_layers, use_rslora, torch.float32)
    # Sensitivity: the same reference with every lora_B 1% larger must fall
    # outside the gradient tolerance, or the check could not see such an error.
    _, grads_off, _, _ = reference(model_dir, check, n_layers, use_rslora, torch.float64,
                                   b_scale=c["b_off"])
    sens = min(rc.compare(k, grads_off[k], grads64[k])[0] for k in grads64 if ".lora_A." in k)
    off_pct = round((c["b_off"] - 1.0) * 100)
    rc.log("sensitivity: lora_B off by %d%% moves every lora_A gradient by >= %.2e relative "
           "(must exceed the tolerance %.0e)" % (off_pct, sens, grad_tol))
    if not sens > grad_tol:
        raise rc.CheckFailed("the gradient tolerance cannot see a %d%% error in lora_B" % off_pct)
    bf16_note = ""
    if c["ft"] == "bf16":
        # for scale: transformers with the whole PEFT model in bfloat16
        lossb, gradsb, _, _ = reference(model_dir, check, n_layers, use_rslora, torch.bfloat16)
        worstb = max(rc.compare(k, gradsb[k], grads64[k])[0] for k in grads64)
        bf16_note = "; transformers bfloat16: loss %.2e, gradients worst %.2e" % (
            abs(lossb - loss64) / abs(loss64), worstb)

    ft_loss = float(check["loss"].reshape(-1)[0])
    loss_rel = abs(ft_loss - loss64) / abs(loss64)
    rc.log("loss: ft-train %.8f, reference float64 %.8f (float32 %.8f), relative diff %.2e "
           "(tolerance %.0e)" % (ft_loss, loss64, loss32, loss_rel, loss_tol))

    worst = (0.0, "")
    worst32 = 0.0
    failed = []
    for key in rc.lora_keys(n_layers):
        gk = key + ".grad"
        if gk not in check:
            raise rc.CheckFailed("check file lacks '%s'" % gk)
        rel, diff, scale = rc.compare(gk, check[gk], grads64[key])
        rel32, _, _ = rc.compare(gk, grads32[key], grads64[key])
        worst32 = max(worst32, rel32)
        short = key.replace("base_model.model.model.", "")
        rc.log("  %-40s max|ref| %.3e  worst abs %.3e  rel %.2e  (torch f32 %.1e)%s" % (
            short + ".grad", scale, diff, rel, rel32, "  FAIL" if rel > grad_tol else ""))
        if scale == 0.0:
            failed.append(short + " (reference gradient is all zero: the check cannot tell)")
        if rel > grad_tol or not math.isfinite(rel):
            failed.append(short)
        if rel > worst[0]:
            worst = (rel, short)
    rc.log("gradients: worst relative diff %.2e in %s (tolerance %.0e); torch float32 vs "
           "float64 worst %.2e%s" % (worst[0], worst[1], grad_tol, worst32, bf16_note))
    if not loss_rel <= loss_tol:
        raise rc.CheckFailed("loss differs by %.2e relative (tolerance %.0e)" % (
            loss_rel, loss_tol))
    if failed:
        raise rc.CheckFailed("gradients out of tolerance: %s" % ", ".join(failed))
    rc.log("PASS: %s loss and %d LoRA gradients match transformers+PEFT" % (
        case, len(rc.lora_keys(n_layers))))


if __name__ == "__main__":
    rc.main_wrapper(main)
