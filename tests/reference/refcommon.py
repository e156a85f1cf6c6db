"""refcommon.py: what the reference checks share: running ft-train, writing a
tiny model, a tokenized JSONL data set and a lora job spec, loading the model
in Hugging Face transformers + PEFT, and comparing tensors with a printed worst
difference.

Runs inside the environment made by setup-python.sh (torch, transformers,
peft, safetensors). Everything is float64 on the reference side unless a
check says otherwise, so that the tolerance measures ft-train's float32 error
and not the reference's.
"""
import json
import os
import random
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # never reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)   # tests run two at a time on two cores

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ATTN = {"q_proj", "k_proj", "v_proj", "o_proj"}


class CheckFailed(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def run_ft(ft_train, args, timeout=600, stdout_path=None):
    """Runs ft-train with args; returns its stdout (str). Fails loudly with
    its stderr when it exits non-zero."""
    cmd = [ft_train] + [str(a) for a in args]
    log("$ " + " ".join(cmd))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise CheckFailed("'%s' exited with %d" % (" ".join(cmd[:2]), p.returncode))
    if stdout_path:
        with open(stdout_path, "w") as f:
            f.write(p.stdout)
    return p.stdout


def make_tiny_model(ft_train, out_dir, hidden=64, layers=2, heads=4, kv_heads=2,
                    intermediate=96, vocab=264, max_pos=256, dtype="f32", seed=7,
                    tie=False):
    args = ["make-tiny-model", out_dir, "--hidden", hidden, "--layers", layers,
            "--heads", heads, "--kv-heads", kv_heads, "--intermediate", intermediate,
            "--vocab", vocab, "--max-pos", max_pos, "--dtype", dtype, "--seed", seed]
    if tie:
        args.append("--tie")
    run_ft(ft_train, args)
    with open(os.path.join(out_dir, "config.json")) as f:
        return json.load(f)


def set_llama3_rope(model_dir, factor=8.0, low=1.0, high=4.0, original_max=64):
    """Adds llama3 rope scaling to a model's config.json (weights unchanged).
    original_max is small so that, with a tiny head_dim, the frequencies fall
    into all three bands (kept, scaled by 1/factor, smoothly mixed)."""
    path = os.path.join(model_dir, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg.pop("rope_parameters", None)
    cfg["rope_scaling"] = {"rope_type": "llama3", "factor": factor,
                           "low_freq_factor": low, "high_freq_factor": high,
                           "original_max_position_embeddings": original_max}
    cfg.setdefault("rope_theta", 10000.0)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    return cfg


def write_tokenized_jsonl(path, n_records, vocab, seed, min_len=6, max_len=40,
                          prompt_frac=0.3):
    """Pre-tokenized records {"input_ids", "labels"}; the first ~30% of each
    record's labels are -100 (a prompt without loss), so masking is tested."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n_records):
            n = rng.randint(min_len, max_len)
            ids = [rng.randrange(3, vocab) for _ in range(n)]
            k = int(n * prompt_frac)
            labels = [-100] * k + ids[k:]
            f.write(json.dumps({"input_ids": ids, "labels": labels}) + "\n")


def write_spec(path, name, model_dir, train_path, output_dir, eval_path=None, **train):
    t = {
        "base_model": model_dir,
        "datasets": [{"path": train_path, "type": "tokenized"}],
        "output_dir": output_dir,
        "target_modules": list(TARGETS),
    }
    if eval_path:
        t["eval_path"] = eval_path
    t.update(train)
    spec = {"name": name, "kind": "lora", "gpus": 1, "device": "any", "train": t}
    with open(path, "w") as f:
        json.dump(spec, f, indent=2)
    return spec


def load_hf_model(model_dir, dtype=torch.float32):
    """LlamaForCausalLM from our folder; fails when transformers reports
    missing, unexpected or mismatched weights (our writer must be complete)."""
    from transformers import LlamaForCausalLM
    model, info = LlamaForCausalLM.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys",
                                                    "mismatched_keys") and v}
    log("transformers loaded %s: missing %s, unexpected %s, mismatched %s" % (
        model_dir, list(info.get("missing_keys", [])), list(info.get("unexpected_keys", [])),
        list(info.get("mismatched_keys", []))))
    if bad:
        raise CheckFailed("transformers reports problems loading '%s': %s" % (model_dir, bad))
    model.eval()   # no dropout anywhere (Llama has none, PEFT's is forced to 0)
    return model


def peft_name(module_key):
    """'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' ->
    the PEFT parameter name with the adapter name 'default' inserted."""
    return module_key.replace(".lora_A.weight", ".lora_A.default.weight").replace(
        ".lora_B.weight", ".lora_B.default.weight")


def lora_keys(n_layers, targets=TARGETS):
    keys = []
    for i in range(n_layers):
        for t in targets:
            part = "self_attn" if t in ATTN else "mlp"
            for ab in ("lora_A", "lora_B"):
                keys.append("base_model.model.model.layers.%d.%s.%s.%s.weight" % (i, part, t, ab))
    return keys


def token_loss_sum(logits, targets):
    """Sum of natural-log cross-entropy over targets != -100, and their count."""
    v = logits.shape[-1]
    flat_t = targets.reshape(-1).long()
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, v), flat_t,
                                             ignore_index=-100, reduction="sum")
    return loss, int((flat_t != -100).sum())


def compare(name, got, ref):
    """Worst |got - ref| over a tensor, relative to max|ref| over the same
    tensor: the tensor's own scale is the absolute floor, so entries near zero
    do not blow the ratio up. Returns (relative, absolute, scale)."""
    got = got.detach().double().reshape(-1)
    ref = ref.detach().double().reshape(-1)
    if got.shape != ref.shape:
        raise CheckFailed("%s: %d values against %d in the reference" % (
            name, got.numel(), ref.numel()))
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    diff = float((got - ref).abs().max()) if ref.numel() else 0.0
    rel = diff / scale if scale > 0 else diff
    return rel, diff, scale


def ft_train_path(argv):
    if len(argv) < 2:
        sys.stderr.write("usage: %s FT_TRAIN WORKDIR\n" % argv[0])
        sys.exit(2)
    path = argv[1]
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        sys.stderr.write("'%s' is not an executable ft-train\n" % path)
        sys.exit(1)
    return os.path.abspath(path)


def main_wrapper(fn):
    try:
        fn()
    except CheckFailed as e:
        log("FAIL: %s" % e)
        sys.exit(1)
