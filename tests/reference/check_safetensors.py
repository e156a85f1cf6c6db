"""check_safetensors.py: Hugging Face's safetensors library reads the files
ft-train writes: tiny models in F32, BF16 and F16, a `check` output and a
trained adapter.

  check_safetensors.py FT_TRAIN WORKDIR

For each file, printed: safe_open parses the header (the library rejects
holes, overlaps, bad offsets and a bad header length), every tensor has the
name, dtype and shape expected from config.json, values are finite, and the
16-bit models equal the F32 model rounded to that dtype (same seed) when
ft-train's writer rounds to nearest even as torch does; a mismatch there is
reported with the worst difference and fails.
"""
import json
import os
import sys

import torch
from safetensors import safe_open

import refcommon as rc

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def expected_model_tensors(cfg):
    c, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or c // cfg["num_attention_heads"]
    hq, hkv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    t = {"model.embed_tokens.weight": (v, c), "model.norm.weight": (c,)}
    if not cfg.get("tie_word_embeddings"):
        t["lm_head.weight"] = (v, c)
    for layer in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % layer
        t.update({p + "input_layernorm.weight": (c,), p + "post_attention_layernorm.weight": (c,),
                  p + "self_attn.q_proj.weight": (hq, c), p + "self_attn.k_proj.weight": (hkv, c),
                  p + "self_attn.v_proj.weight": (hkv, c), p + "self_attn.o_proj.weight": (c, hq),
                  p + "mlp.gate_proj.weight": (i, c), p + "mlp.up_proj.weight": (i, c),
                  p + "mlp.down_proj.weight": (c, i)})
    return t


def read_all(path):
    """Every tensor of a file through safe_open (framework pt), plus metadata."""
    out = {}
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        for k in f.keys():
            out[k] = f.get_tensor(k)
    return out, meta


def check_file(path, expected, dtype):
    tensors, meta = read_all(path)
    size = os.path.getsize(path)
    rc.log("%s: %d tensors, %d bytes, metadata %s" % (os.path.basename(path), len(tensors), size,
                                                      meta))
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise rc.CheckFailed("%s: missing %s, unexpected %s" % (path, missing[:4], extra[:4]))
    for k, shape in expected.items():
        t = tensors[k]
        if tuple(t.shape) != tuple(shape):
            raise rc.CheckFailed("%s: '%s' has shape %s, expected %s" % (path, k, tuple(t.shape),
                                                                        shape))
        if dtype is not None and t.dtype != dtype:
            raise rc.CheckFailed("%s: '%s' is %s, expected %s" % (path, k, t.dtype, dtype))
        if t.is_floating_point() and not bool(torch.isfinite(t.float()).all()):
            raise rc.CheckFailed("%s: '%s' has non-finite values" % (path, k))
    # Reading through the numpy API too (independent of torch's storage path;
    # numpy has no bfloat16, so BF16 files are read through torch only).
    with safe_open(path, framework="np") as f:
        for k in ([] if dtype == torch.bfloat16 else list(expected)[:3]):
            a = f.get_tensor(k)
            if tuple(a.shape) != tuple(expected[k]):
                raise rc.CheckFailed("%s: numpy reader shape mismatch for '%s'" % (path, k))
    return tensors


def main():
    ft_train = rc.ft_train_path(sys.argv)
    work = sys.argv[2]
    os.makedirs(work, exist_ok=True)

    models = {}
    for name, dt in DTYPES.items():
        d = os.path.join(work, "model-" + name)
        cfg = rc.make_tiny_model(ft_train, d, hidden=32, layers=2, heads=4, kv_heads=2,
                                 intermediate=48, vocab=264, max_pos=128, dtype=name, seed=3)
        files = [f for f in os.listdir(d) if f.endswith(".safetensors")]
        if files != ["model.safetensors"]:
            raise rc.CheckFailed("%s: expected one model.safetensors, found %s" % (d, files))
        models[name] = check_file(os.path.join(d, "model.safetensors"),
                                  expected_model_tensors(cfg), dt)
        rc.log("  %s model: names, dtypes and shapes as config.json says" % name)
    ref = models["f32"]
    for name in ("bf16", "f16"):
        worst = 0.0
        for k, t in models[name].items():
            want = ref[k].to(DTYPES[name])
            if not torch.equal(t, want):
                worst = max(worst, float((t.float() - want.float()).abs().max()))
        rc.log("  %s model vs F32 model rounded to %s: worst difference %.3g" % (name, name,
                                                                               worst))
        if worst != 0.0:
            raise rc.CheckFailed("the %s model is not the F32 model rounded to nearest even" %
                                 name)

    tied = os.path.join(work, "model-tied")
    cfg = rc.make_tiny_model(ft_train, tied, hidden=32, layers=1, heads=4, kv_heads=4,
                             intermediate=48, vocab=264, max_pos=128, seed=3, tie=True)
    check_file(os.path.join(tied, "model.safetensors"), expected_model_tensors(cfg),
               torch.float32)
    rc.log("  tied model: no lm_head.weight, as transformers expects")

    # A check file and a trained adapter from the F32 model.
    model_dir = os.path.join(work, "model-f32")
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    data = os.path.join(work, "train.jsonl")
    rc.write_tokenized_jsonl(data, 40, cfg["vocab_size"], seed=9)
    spec = os.path.join(work, "spec.json")
    out_dir = os.path.join(work, "out")
    rc.write_spec(spec, "ref-safetensors", model_dir, data, out_dir, lora_r=2, lora_alpha=4,
                  sequence_len=16, micro_batch_size=2, max_steps=2, seed=1, threads=1)
    chk = os.path.join(work, "check.safetensors")
    rc.run_ft(ft_train, ["check", "--spec", spec, "--out", chk])
    lk = rc.lora_keys(cfg["num_hidden_layers"])
    tensors, _ = read_all(chk)
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    exp = {"inputs": (2, 16), "targets": (2, 16), "loss": (1,), "scaling": (1,)}
    for k in lk:
        exp[k] = shapes.get(k, ("missing",))
        exp[k + ".grad"] = exp[k]
    check_file(chk, exp, None)
    if tensors["inputs"].dtype != torch.int32 or tensors["loss"].dtype != torch.float32:
        raise rc.CheckFailed("check file: inputs must be I32 and loss F32")
    rc.log("  check file: inputs/targets I32, loss/scaling F32, %d LoRA tensors and their "
           "gradients" % len(lk))

    rc.run_ft(ft_train, ["run", "--spec", spec])
    adapter = os.path.join(out_dir, "adapter_model.safetensors")
    c, i = cfg["hidden_size"], cfg["intermediate_size"]
    hd = c // cfg["num_attention_heads"]
    dims = {"q_proj": (c, cfg["num_attention_heads"] * hd),
            "k_proj": (c, cfg["num_key_value_heads"] * hd),
            "v_proj": (c, cfg["num_key_value_heads"] * hd),
            "o_proj": (cfg["num_attention_heads"] * hd, c),
            "gate_proj": (c, i), "up_proj": (c, i), "down_proj": (i, c)}
    exp = {}
    for k in lk:
        mod = k.split(".")[-3]
        fan_in, fan_out = dims[mod]
        exp[k] = (2, fan_in) if ".lora_A." in k else (fan_out, 2)
    check_file(adapter, exp, None)
    rc.log("  adapter: PEFT key names, A (r, in) and B (out, r)")
    # Checkpoints (adapter + optimiser state) are safetensors too: all must parse.
    others = []
    for dirpath, _, names in os.walk(out_dir):
        for n in sorted(names):
            path = os.path.join(dirpath, n)
            if n.endswith(".safetensors") and path != adapter:
                others.append(path)
    if not others:
        raise rc.CheckFailed("no checkpoint safetensors under '%s'" % out_dir)
    for path in others:
        tensors, meta = read_all(path)
        bad = [k for k, t in tensors.items()
               if t.is_floating_point() and not bool(torch.isfinite(t.float()).all())]
        if bad:
            raise rc.CheckFailed("%s: non-finite values in %s" % (path, bad[:3]))
        rc.log("  %s: %d tensors parse, all finite" % (os.path.relpath(path, out_dir),
                                                      len(tensors)))
    rc.log("PASS: safetensors reads every file ft-train writes")


if __name__ == "__main__":
    rc.main_wrapper(main)
