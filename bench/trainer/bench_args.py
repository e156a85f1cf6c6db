"""What the trainer benchmark's two sides share (run.py, torch_lora_step.py):
the model-shape flags with their defaults, in the order both accept them, and
the positive-integer argument type. stdlib only; runs under either Python.
"""
import argparse

# (flag without "--", default): the shape both sides build and time
MODEL_FLAGS = (("hidden", 512), ("layers", 8), ("heads", 8), ("kv-heads", 8),
               ("intermediate", 1376), ("vocab", 8192), ("seq", 256), ("batch", 4), ("r", 16))


def positive(s):
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError("expected a positive integer, got '%s'" % s)
    return v
