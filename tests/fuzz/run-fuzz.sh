#!/bin/sh
# run-fuzz.sh SRC BUILD MODE: runs each libFuzzer target for a bounded time
# ($FT_FUZZ_SECONDS, default 20) over its committed corpus and prints the
# executions. MODE 'here': BUILD is a -Dfuzz=true clang build; 'own': make
# (once) a clang build with ASan/UBSan in BUILD/fuzz-clang and build only the
# targets there. Exit 77 (skipped) without clang.
set -u
src=$1 build=$2 mode=$3
secs=${FT_FUZZ_SECONDS:-20}
if [ "$mode" = own ]; then
    command -v clang >/dev/null 2>&1 || { echo "skip: no clang"; exit 77; }
    dir=$build/fuzz-clang
    if [ ! -f "$dir/build.ninja" ]; then
        echo "configuring $dir (clang, -Dfuzz=true, ASan+UBSan)"
        CC=clang meson setup "$dir" "$src" -Dfuzz=true -Dcuda=disabled \
            -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debugoptimized \
            >"$build/fuzz-clang-setup.log" 2>&1 || { cat "$build/fuzz-clang-setup.log"; exit 1; }
    fi
    ninja -C "$dir" tests/fuzz/fuzz_proto tests/fuzz/fuzz_jobspec tests/fuzz/fuzz_keys || exit 1
else
    dir=$build
fi
rc=0
for t in proto jobspec keys; do
    work=$(mktemp -d)
    # new inputs land in $work (first dir); the repo corpus is only read
    out=$(UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$dir/tests/fuzz/fuzz_$t" \
        -artifact_prefix="$build/fuzz-crash-$t-" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 "$work" "$src/tests/fuzz/corpus/$t" 2>&1)
    r=$?
    execs=$(printf '%s\n' "$out" | sed -n 's/^stat::number_of_executed_units: *//p')
    cov=$(printf '%s\n' "$out" | grep -o 'cov: [0-9]*' | tail -1)
    seeds=$(ls "$src/tests/fuzz/corpus/$t" | wc -l)
    if [ $r -eq 0 ]; then
        echo "ok: fuzz_$t: ${execs:-?} executions in ${secs}s, $cov, $seeds seeds, $(ls "$work" | wc -l) new inputs"
    else
        echo "FAIL: fuzz_$t exited $r"
        printf '%s\n' "$out" | tail -40
        echo "the failing input is kept as $build/fuzz-crash-$t-*; add it to tests/fuzz/corpus/$t once fixed"
        rc=1
    fi
    rm -rf "$work"
done
exit $rc
