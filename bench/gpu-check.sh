#!/usr/bin/env bash
# gpu-check.sh: the whole GPU check of the CUDA backend in one go, for a
# machine with one NVIDIA GPU (written for an H200; about 3-5 minutes):
#   1. versions (driver, nvcc, meson, compiler) and nvidia-smi;
#   2. build into build-gpu with -Dcuda=enabled (sm_90 + sm_80 code, compute_90 PTX);
#   3. meson test --suite gpu (CUDA ops and the whole model against the CPU
#      backend, a short training run, NCCL incl. its fail-fast deadline) plus
#      the unit test of the NCCL wait state machine; a skipped GPU test counts
#      as a failure here, since this script only runs where a GPU should be;
#   4. ft-gpu-bench on the ~1B Llama shape (hidden 2048, 16 layers, 32/8
#      heads, intermediate 8192, seq 2048, LoRA r 16 on all seven
#      projections): tokens/s, step split, peak memory, MFU of 989 TFLOP/s;
#      once with the materialised attention, once with the fused kernels.
# Every step runs even when an earlier one failed (the point is to learn as
# much as possible from one run); the exit status is 1 when any failed.
# Logs are also copied to $OUT when that is set (the device runner's folder).
# Usage: bench/gpu-check.sh [extra ft-gpu-bench flags, e.g. --batch 2]
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:${PATH}"
BUILD=build-gpu
LOG=${OUT:-$BUILD}/gpu-check-logs
mkdir -p "$LOG"
status=0
t_start=$SECONDS

step() { printf '\n== %s (t+%ds)\n' "$1" $((SECONDS - t_start)); }
fail() { echo "gpu-check: FAILED: $1"; status=1; }

step "versions"
date -u
uname -srm
nvcc --version | tail -n 2 || fail "nvcc not found"
echo "meson $(meson --version), ninja $(ninja --version), $(gcc --version | head -n 1)"
nproc

step "nvidia-smi"
if ! nvidia-smi; then
    echo "gpu-check: nvidia-smi failed: no usable GPU here"
    exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || true

step "build ($BUILD, -Dcuda=enabled)"
if [ -f "$BUILD/build.ninja" ]; then
    meson setup --reconfigure "$BUILD" -Dcuda=enabled >"$LOG/setup.txt" 2>&1 ||
        { cat "$LOG/setup.txt"; fail "meson setup"; }
else
    meson setup "$BUILD" -Dcuda=enabled >"$LOG/setup.txt" 2>&1 ||
        { cat "$LOG/setup.txt"; fail "meson setup"; }
fi
grep -E "CUDA backend|Cuda compiler" "$LOG/setup.txt" || true
if ! ninja -C "$BUILD" -j "$(nproc)" >"$LOG/build.txt" 2>&1; then
    tail -n 60 "$LOG/build.txt"
    fail "build"
    exit 1
fi
tail -n 1 "$LOG/build.txt"

step "gpu tests"
if ! meson test -C "$BUILD" --no-rebuild --suite gpu --print-errorlogs -v \
        >"$LOG/tests.txt" 2>&1; then
    fail "meson test --suite gpu"
fi
meson test -C "$BUILD" --no-rebuild nccl_wait >>"$LOG/tests.txt" 2>&1 || fail "nccl_wait"
cat "$LOG/tests.txt"
if grep -E "^ *[0-9]+/[0-9]+ .*gpu / .* SKIP" "$LOG/tests.txt"; then
    fail "a gpu test was skipped: no CUDA device seen by the tests"
fi
cp "$BUILD/meson-logs/testlog.txt" "$LOG/testlog.txt" 2>/dev/null || true

step "benchmark (ft-gpu-bench $*)"
bench_rc=0
timeout 240 "$BUILD/bench/gpu/ft-gpu-bench" "$@" 2>&1 | tee "$LOG/bench.txt" ||
    bench_rc=${PIPESTATUS[0]}
if [ "$bench_rc" -ne 0 ]; then
    fail "ft-gpu-bench exited $bench_rc"
    if [ $# -eq 0 ] && [ "$bench_rc" -ne 77 ] && [ "$bench_rc" -ne 124 ]; then
        step "benchmark again with --batch 1 (after a failure at the default batch)"
        timeout 120 "$BUILD/bench/gpu/ft-gpu-bench" --batch 1 2>&1 | tee "$LOG/bench-b1.txt" ||
            fail "ft-gpu-bench --batch 1"
    fi
fi

step "benchmark with fused attention (ft-gpu-bench --attn flash $*)"
timeout 240 "$BUILD/bench/gpu/ft-gpu-bench" --attn flash "$@" 2>&1 | tee "$LOG/bench-flash.txt" ||
    fail "ft-gpu-bench --attn flash"

step "done"
nvidia-smi --query-gpu=memory.used,temperature.gpu,power.draw --format=csv || true
if [ "$status" -eq 0 ]; then
    echo "gpu-check: all passed in $((SECONDS - t_start)) s"
else
    echo "gpu-check: some steps FAILED (see above and $LOG) after $((SECONDS - t_start)) s"
fi
exit "$status"
