#!/usr/bin/env bash
# gpu-check.sh: the whole GPU check of the CUDA backend in one go, for a
# machine with one NVIDIA GPU (written for an H200; about 3-5 minutes):
#   1. versions (driver, nvcc, meson, compiler) and nvidia-smi;
#   2. the programs: built there into build-gpu with -Dcuda=enabled (sm_90 +
#      sm_80 code, compute_90 PTX) when the machine has the project's
#      libraries (libzmq, sqlite3, cJSON, OpenBLAS through pkg-config);
#      otherwise the prebuilt ones of .gpucarry/gpu-prebuilt.tar.xz (see
#      --pack below), run with the shared libraries packed beside them;
#   3. the gpu tests (meson test --suite gpu where it built; CUDA ops and the whole model against the CPU backend,
#      both attention paths, a short training run, NCCL incl. its fail-fast
#      deadline, ft-train check/run/eval/resume on --backend cuda) and the
#      unit test of the NCCL wait state machine; a skipped GPU test counts as
#      a failure here, since this script only runs where a GPU should be;
#   4. ft-gpu-bench on the ~1B Llama shape (hidden 2048, 16 layers, 32/8
#      heads, intermediate 8192, seq 2048, LoRA r 16 on all seven
#      projections): tokens/s, step split, peak memory, MFU of 989 TFLOP/s;
#      once with the fused attention (the default), once materialised.
# Every step runs even when an earlier one failed (the point is to learn as
# much as possible from one run); the exit status is 1 when any failed.
# Logs (build.txt, tests.txt, bench.txt) go to $OUT/gpu-check-logs when OUT
# is set (the device runner's folder), else to build-gpu/gpu-check-logs.
#
# Usage, on the GPU machine:  bench/gpu-check.sh [extra ft-gpu-bench flags]
#     (FT_GPU_CHECK_PREBUILT=1 takes the carried programs even where it could build)
# Usage, on a build machine with the libraries (no GPU needed), to prepare
# the prebuilt programs for a GPU machine that lacks them:
#     bench/gpu-check.sh --pack     (writes .gpucarry/gpu-prebuilt.tar.xz,
#                                    ignored by git; carry .gpucarry along)
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:${PATH}"
BUILD=build-gpu
PREBUILT=.gpucarry/gpu-prebuilt.tar.xz
LOG=${OUT:-$BUILD}/gpu-check-logs
status=0
t_start=$SECONDS

step() { printf '\n== %s (t+%ds)\n' "$1" $((SECONDS - t_start)); }
fail() { echo "gpu-check: FAILED: $1"; status=1; }

have_libs() {
    command -v pkg-config >/dev/null 2>&1 &&
        pkg-config --exists libzmq sqlite3 libcjson openblas
}

# NCCL may live in the toolkit, the system, or only in a Python package
# (nvidia-nccl-cu13): make it visible to the linker, the compiler and ld.so.
nccl_setup() {
    local d="" py
    for cand in /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu; do
        if [ -e "$cand/libnccl.so.2" ]; then d=$cand; break; fi
    done
    if [ -z "$d" ]; then
        py=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null || true)
        if [ -n "$py" ] && [ -e "$py/lib/libnccl.so.2" ]; then d=$py/lib; fi
    fi
    if [ -z "$d" ]; then
        d=$(find / -xdev -name 'libnccl.so.2' -print -quit 2>/dev/null | xargs -r dirname)
    fi
    if [ -n "$d" ]; then
        echo "NCCL: $d"
        [ -e "$d/libnccl.so" ] || ln -sf libnccl.so.2 "$d/libnccl.so" 2>/dev/null || true
        export LD_LIBRARY_PATH="$d:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
        export LIBRARY_PATH="$d:${LIBRARY_PATH:-}"
        [ -d "$d/../include" ] && export CPATH="$d/../include:${CPATH:-}"
    else
        echo "NCCL: libnccl.so.2 not found"
    fi
    export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
}

build() {
    local setup=(meson setup "$BUILD" -Dcuda=enabled)
    [ -f "$BUILD/build.ninja" ] && setup=(meson setup --reconfigure "$BUILD" -Dcuda=enabled)
    if ! "${setup[@]}" >"$LOG/build.txt" 2>&1; then
        cat "$LOG/build.txt"
        return 1
    fi
    grep -E "CUDA backend|Cuda compiler" "$LOG/build.txt" || true
    if ! ninja -C "$BUILD" -j "$(nproc)" >>"$LOG/build.txt" 2>&1; then
        tail -n 60 "$LOG/build.txt"
        return 1
    fi
    tail -n 1 "$LOG/build.txt"
}

if [ "${1:-}" = "--pack" ]; then
    LOG=$BUILD/gpu-check-logs
    mkdir -p "$LOG"
    have_libs || { echo "gpu-check --pack: needs libzmq, sqlite3, cJSON, OpenBLAS"; exit 1; }
    build || { echo "gpu-check --pack: build failed"; exit 1; }
    stage=$(mktemp -d)
    mkdir -p "$stage/bin" "$stage/lib" "$stage/tests"
    cp "$BUILD"/tests/gpu/test_cuda_ops "$BUILD"/tests/gpu/test_cuda_model \
        "$BUILD"/tests/gpu/test_nccl "$BUILD"/tests/gpu/test_nccl_wait \
        "$BUILD"/bench/gpu/ft-gpu-bench "$BUILD"/worker/trainer/ft-train "$stage/bin/"
    cp tests/gpu/test_ft_train_cuda.py "$stage/tests/"
    # the test finds its helpers at ../trainer/model, as in the source tree
    mkdir -p "$stage/trainer/model"
    cp tests/trainer/model/ft_train_testlib.py "$stage/trainer/model/"
    # the shared libraries they need beyond the C runtime and CUDA's own
    for b in "$stage"/bin/*; do ldd "$b" | awk '/=> \// {print $3}'; done | sort -u |
        grep -v -E '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*)\.so' |
        grep -v -E 'libcudart|libcublas|libnccl|libcuda\.' |
        while read -r l; do cp -L "$l" "$stage/lib/"; done
    git rev-parse HEAD >"$stage/COMMIT" 2>/dev/null || true
    mkdir -p .gpucarry
    tar -cf - -C "$stage" . | xz -T0 -6 >"$PREBUILT"
    rm -rf "$stage"
    if [ -d .git ] && ! grep -qx '/.gpucarry/' .git/info/exclude 2>/dev/null; then
        echo '/.gpucarry/' >>.git/info/exclude
    fi
    ls -la "$PREBUILT"
    echo "gpu-check --pack: done; on the GPU machine run bench/gpu-check.sh with .gpucarry carried"
    exit 0
fi

mkdir -p "$LOG"

step "versions"
date -u
uname -srm
nvcc --version | tail -n 2 || echo "nvcc not found"
echo "meson $(meson --version 2>/dev/null || echo none), ninja $(ninja --version 2>/dev/null || echo none)," \
    "$(gcc --version 2>/dev/null | head -n 1 || echo no gcc)"
nproc

step "nvidia-smi"
if ! nvidia-smi; then
    echo "gpu-check: nvidia-smi failed: no usable GPU here"
    exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || true
nccl_setup

# the programs: name -> path
declare -A P
if have_libs && [ -z "${FT_GPU_CHECK_PREBUILT:-}" ]; then
    step "build ($BUILD, -Dcuda=enabled)"
    build || { fail "build"; exit 1; }
    built=1
    P[cuda_ops]=$BUILD/tests/gpu/test_cuda_ops
    P[cuda_model]=$BUILD/tests/gpu/test_cuda_model
    P[nccl]=$BUILD/tests/gpu/test_nccl
    P[nccl_wait]=$BUILD/tests/gpu/test_nccl_wait
    P[ft_train]=$BUILD/worker/trainer/ft-train
    P[bench]=$BUILD/bench/gpu/ft-gpu-bench
    P[pytest]=tests/gpu/test_ft_train_cuda.py
elif [ -f "$PREBUILT" ]; then
    step "prebuilt programs ($PREBUILT: this machine lacks the project's libraries)"
    pb=/tmp/ft-gpu-prebuilt
    rm -rf "$pb"
    mkdir -p "$pb"
    xz -dc "$PREBUILT" | tar -xf - -C "$pb"
    echo "built from commit $(cat "$pb/COMMIT" 2>/dev/null || echo '?'); this tree is at" \
        "$(git rev-parse HEAD 2>/dev/null || echo '?')"
    export LD_LIBRARY_PATH="$pb/lib:${LD_LIBRARY_PATH:-}"
    P[cuda_ops]=$pb/bin/test_cuda_ops
    P[cuda_model]=$pb/bin/test_cuda_model
    P[nccl]=$pb/bin/test_nccl
    P[nccl_wait]=$pb/bin/test_nccl_wait
    P[ft_train]=$pb/bin/ft-train
    P[bench]=$pb/bin/ft-gpu-bench
    P[pytest]=$pb/tests/test_ft_train_cuda.py
    ldd "${P[cuda_model]}" | grep -E "not found|cuda|nccl|cublas" || true
else
    echo "gpu-check: this machine lacks libzmq/sqlite3/cJSON/OpenBLAS (pkg-config) and no"
    echo "prebuilt programs were carried: run 'bench/gpu-check.sh --pack' on a build machine"
    echo "first and carry .gpucarry along"
    exit 1
fi

# runs one test program; 77 (skipped) is a failure on a GPU machine
run_test() {
    local name=$1 rc=0
    shift
    echo "--- $name"
    timeout 300 "$@" >"$LOG/test-one.txt" 2>&1 || rc=$?
    cat "$LOG/test-one.txt"
    { echo "--- $name (exit $rc)"; cat "$LOG/test-one.txt"; } >>"$LOG/tests.txt"
    rm -f "$LOG/test-one.txt"
    case $rc in
    0) echo "--- $name: OK" ;;
    77) fail "$name was skipped: no CUDA device seen" ;;
    *) fail "$name exited $rc" ;;
    esac
}

step "gpu tests"
: >"$LOG/tests.txt"
if [ -n "${built:-}" ]; then
    meson test -C "$BUILD" --no-rebuild --suite gpu --print-errorlogs -v >>"$LOG/tests.txt" 2>&1 ||
        fail "meson test --suite gpu"
    meson test -C "$BUILD" --no-rebuild nccl_wait >>"$LOG/tests.txt" 2>&1 || fail "nccl_wait"
    cat "$LOG/tests.txt"
    if grep -E "^ *[0-9]+/[0-9]+ .*gpu / .* SKIP" "$LOG/tests.txt"; then
        fail "a gpu test was skipped: no CUDA device seen by the tests"
    fi
else
    run_test nccl_wait "${P[nccl_wait]}"
    run_test cuda_ops "${P[cuda_ops]}"
    run_test cuda_model "${P[cuda_model]}"
    run_test nccl "${P[nccl]}"
    run_test ft_train_cuda python3 "${P[pytest]}" "${P[ft_train]}"
fi

step "benchmark (ft-gpu-bench $*)"
bench_rc=0
timeout 240 "${P[bench]}" "$@" 2>&1 | tee "$LOG/bench.txt" || bench_rc=${PIPESTATUS[0]}
if [ "$bench_rc" -ne 0 ]; then
    fail "ft-gpu-bench exited $bench_rc"
    if [ $# -eq 0 ] && [ "$bench_rc" -ne 77 ] && [ "$bench_rc" -ne 124 ]; then
        step "benchmark again with --batch 1 (after a failure at the default batch)"
        timeout 120 "${P[bench]}" --batch 1 2>&1 | tee -a "$LOG/bench.txt" ||
            fail "ft-gpu-bench --batch 1"
    fi
fi

step "benchmark with materialised attention (ft-gpu-bench --attn materialised $*)"
timeout 240 "${P[bench]}" --attn materialised "$@" 2>&1 | tee -a "$LOG/bench.txt" ||
    fail "ft-gpu-bench --attn materialised"

step "done"
nvidia-smi --query-gpu=memory.used,temperature.gpu,power.draw --format=csv || true
if [ "$status" -eq 0 ]; then
    echo "gpu-check: all passed in $((SECONDS - t_start)) s"
else
    echo "gpu-check: some steps FAILED (see above and $LOG) after $((SECONDS - t_start)) s"
fi
exit "$status"
