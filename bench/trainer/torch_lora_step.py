"""torch_lora_step.py: the PyTorch side of the trainer benchmark: the same
LoRA training step ft-train bench times, in transformers + PEFT, eager mode.

Builds LlamaForCausalLM from a LlamaConfig (random init, float32), wraps it
with PEFT LoRA on all seven projections, draws random tokens, and times
`steps` optimiser steps (forward, cross-entropy over B*T pre-shifted targets,
backward, AdamW on the LoRA parameters) after `warmup` untimed ones. Also
measures torch's own float32 GEMM rate (a square n x n matmul, same threads)
so that the runner can tell framework overhead from BLAS speed.

--dtype picks the precision, as a PyTorch user would set it up:
  fp32      the model in float32 (the default)
  bf16      the base model cast to bfloat16 (`model.to(torch.bfloat16)`, as
            `from_pretrained(torch_dtype=torch.bfloat16)` gives), then PEFT,
            whose `autocast_adapter_dtype` keeps the LoRA A/B in float32:
            frozen weights and activations bf16, adapters and AdamW fp32
  autocast  the model in float32 under `torch.autocast("cpu", torch.bfloat16)`
            for forward and loss (what HF Trainer's `bf16=True` does on CPU):
            the linear layers run in bf16, weights cast on every call
The GEMM rate is then measured in that dtype too (bf16 for bf16/autocast).

Prints one JSON line on stdout:
  {"tokens_per_s", "step_ms", "gemm_gflops", "torch", "threads", "attn", "blas", ...}
Runs in the environment of tests/reference/setup-python.sh.
"""
import argparse
import json
import os
import sys
import time

from bench_args import MODEL_FLAGS, positive

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in MODEL_FLAGS:
        p.add_argument("--" + name, type=positive, default=default)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--steps", type=positive, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=positive, default=2)
    p.add_argument("--attn", choices=["eager", "sdpa"], default="sdpa",
                   help="transformers attention implementation (default sdpa, its default)")
    p.add_argument("--gemm-n", type=positive, default=2048)
    p.add_argument("--dtype", choices=["fp32", "bf16", "autocast"], default="fp32",
                   help="precision set-up (see the module docstring)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.hidden % a.heads or a.heads % a.kv_heads:
        p.error("--hidden must be a multiple of --heads, and --heads of --kv-heads")
    if a.warmup < 0:
        p.error("--warmup must be >= 0")
    return a


def gemm_gflops(torch, n, dtype, reps=5):
    a = torch.randn(n, n, dtype=torch.float32).to(dtype)
    b = torch.randn(n, n, dtype=torch.float32).to(dtype)
    torch.mm(a, b)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    dt = time.perf_counter() - t0
    return 2.0 * n * n * n * reps / dt / 1e9


def blas_info():
    try:
        from threadpoolctl import threadpool_info
        return [{k: d.get(k) for k in ("internal_api", "version", "num_threads",
                                       "threading_layer", "architecture")}
                for d in threadpool_info()]
    except Exception as e:  # informational only
        return "threadpoolctl unavailable: %s" % e


def main(argv):
    a = parse_args(argv)
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads,
                      num_key_value_heads=a.kv_heads, max_position_embeddings=max(a.seq, 2048),
                      tie_word_embeddings=False, attn_implementation=a.attn)
    base = LlamaForCausalLM(cfg).to(torch.bfloat16 if a.dtype == "bf16" else torch.float32)
    model = get_peft_model(base, LoraConfig(
        r=a.r, lora_alpha=a.alpha, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"]))
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    gen = torch.Generator().manual_seed(a.seed + 1)
    rows = torch.randint(0, a.vocab, (a.batch, a.seq + 1), generator=gen)
    inputs, targets = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()

    autocast = a.dtype == "autocast"

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=inputs).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, a.vocab).float(),
                                                     targets.reshape(-1))
        loss.backward()
        opt.step()
        return float(loss.detach())

    for _ in range(a.warmup):
        step()
    times = []
    loss = None
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    total = sum(times)
    tokens = a.batch * a.seq * a.steps
    res = {
        "tokens_per_s": tokens / total,
        "step_ms": 1000.0 * total / a.steps,
        "step_ms_min": 1000.0 * min(times),
        "steps": a.steps,
        "loss": loss,
        "gemm_gflops": gemm_gflops(torch, a.gemm_n,
                                   torch.float32 if a.dtype == "fp32" else torch.bfloat16),
        "dtype": a.dtype,
        "trainable_params": sum(p.numel() for p in trainable),
        "trainable_dtypes": sorted({str(p.dtype) for p in trainable}),
        "frozen_dtypes": sorted({str(p.dtype) for p in model.parameters()
                                 if not p.requires_grad}),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "attn": a.attn,
        "blas": blas_info(),
    }
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
