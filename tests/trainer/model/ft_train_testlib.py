"""What the Python tests of ft-train share (test_cli.py, test_resume.py,
tests/gpu/test_ft_train_cuda.py): the ok/FAIL check printer with its failure
count, running ft-train, and reading a safetensors file of F32/I32 tensors.
stdlib only.
"""
import json
import shutil
import struct
import subprocess


class Checks:
    """check(cond, what) prints 'ok   what' or 'FAIL what'; failures counts the latter."""

    def __init__(self):
        self.failures = 0

    def __call__(self, cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            self.failures += 1

    def finish(self, tmp):
        """Removes tmp when all passed (else says it is kept), prints PASS or
        the failure count, and returns the exit status."""
        if self.failures == 0:
            shutil.rmtree(tmp)
        else:
            print("kept", tmp)
        print("PASS" if self.failures == 0 else "FAIL: %d failure(s)" % self.failures)
        return 1 if self.failures else 0


def runner(ft_train):
    """A function running ft_train with the given arguments (text output captured)."""
    def ft(*args):
        return subprocess.run([ft_train] + list(args), capture_output=True, text=True)
    return ft


def read_safetensors(path):
    """{name: (dtype, shape, values)} of every F32/I32 tensor in path."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    fmt = {"F32": "f", "I32": "i"}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        data = raw[8 + n + b:8 + n + e]
        vals = struct.unpack("<%d%s" % (len(data) // 4, fmt[info["dtype"]]), data)
        out[name] = (info["dtype"], info["shape"], vals)
    return out
