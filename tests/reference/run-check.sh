#!/usr/bin/env bash
# run-check.sh: runs one reference check (a Python script beside this file)
# in the environment that setup-python.sh makes or finds ready.
#
#   run-check.sh FT_TRAIN CHECK.py WORKDIR [ARGS...]
#
# WORKDIR is emptied first. Exit: the check's own status; 77 (skipped) only
# when setup-python.sh says the package index cannot be reached from here;
# 1 when the environment cannot be set up for any other reason.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -lt 3 ]; then
    echo "usage: run-check.sh FT_TRAIN CHECK.py WORKDIR [ARGS...]" >&2
    exit 2
fi
ft_train="$1" check="$2" work="$3"
shift 3
py="$("$HERE/setup-python.sh" --print-python)"
rc=$?
if [ $rc -eq 77 ]; then
    echo "SKIP: no Python environment for the reference checks (package index unreachable)"
    exit 77
elif [ $rc -ne 0 ] || [ -z "$py" ]; then
    echo "FAIL: tests/reference/setup-python.sh failed with status $rc"
    exit 1
fi
rm -rf "$work" && mkdir -p "$work" || { echo "FAIL: cannot make '$work'"; exit 1; }
echo "python: $py"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
exec "$py" "$check" "$ft_train" "$work" "$@"
