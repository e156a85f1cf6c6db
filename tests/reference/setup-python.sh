#!/usr/bin/env bash
# setup-python.sh: creates (once) the Python virtual environment that the
# reference checks (tests/reference) and the PyTorch side of the trainer
# benchmark (bench/trainer) run in: torch, transformers, peft, safetensors as
# pinned in requirements.txt beside this script.
#
# Idempotent: the environment lives outside the repository (default
# ${XDG_CACHE_HOME:-~/.cache}/ft/reference-venv, or $FT_REFERENCE_VENV) and
# carries a stamp (requirements hash + interpreter version); when the stamp
# matches and the packages import, nothing is done. Otherwise it is removed
# and created from scratch. Concurrent callers (tests run in parallel) are
# serialised with flock; the second one finds the environment ready.
#
# Cost: from scratch about 1-2 minutes and ~5.5 GB on disk (torch from the
# package index is the CUDA build and pulls the NVIDIA runtime wheels);
# a ready environment is checked in about 3 s.
#
# Usage: setup-python.sh [--print-python]
#   --print-python   print only the environment's interpreter path on stdout
#                    (progress goes to stderr either way)
# Exit: 0 ready; 1 could not install (reason on stderr); 77 the package index
# cannot be reached from here (callers treat that as "skip").
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQ="$HERE/requirements.txt"
VENV="${FT_REFERENCE_VENV:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/ft/reference-venv}"
BASE_PY="${FT_PYTHON:-python3}"
PRINT_PYTHON=0

say() { printf 'setup-python: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

case "${1:-}" in
"") ;;
--print-python) PRINT_PYTHON=1 ;;
-h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
*) say "unknown argument '$1' (try --help)"; exit 2 ;;
esac

[ -r "$REQ" ] || die "cannot read '$REQ'"
command -v "$BASE_PY" >/dev/null 2>&1 || die "no Python interpreter '$BASE_PY' (set FT_PYTHON)"
"$BASE_PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
    die "'$BASE_PY' is $("$BASE_PY" -V 2>&1); Python 3.10 or newer is needed"

py_version="$("$BASE_PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
stamp="$(sha256sum "$REQ" | cut -d' ' -f1) python-$py_version"
VPY="$VENV/bin/python"

# True when the environment exists, was finished for these requirements and imports.
ready() {
    [ -x "$VPY" ] && [ -f "$VENV/.ft-stamp" ] && [ "$(cat "$VENV/.ft-stamp")" = "$stamp" ] &&
        "$VPY" -c 'import torch, transformers, peft, safetensors, numpy' >/dev/null 2>&1
}

finish() {
    if [ "$PRINT_PYTHON" -eq 1 ]; then
        echo "$VPY"
    fi
    exit 0
}

if ready; then
    say "environment ready at $VENV"
    finish
fi

mkdir -p "$(dirname "$VENV")" || die "cannot create '$(dirname "$VENV")'"
exec 9>"$VENV.lock" || die "cannot open lock file '$VENV.lock'"
say "waiting for the lock on $VENV.lock"
flock 9
if ready; then   # another caller finished it while we waited
    say "environment ready at $VENV (made by another caller)"
    finish
fi

start=$(date +%s)
if [ -e "$VENV" ]; then
    say "removing the stale or unfinished environment at $VENV"
    rm -rf "$VENV"
fi

if ! "$BASE_PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    # Debian's own python3 ships venv/ensurepip separately.
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing Debian package python3-venv"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3-venv >&2 || die "apt-get could not install python3-venv"
    else
        die "'$BASE_PY' has no venv/ensurepip module (install python3-venv)"
    fi
fi

say "creating $VENV with $BASE_PY ($py_version)"
"$BASE_PY" -m venv "$VENV" >&2 || die "'$BASE_PY -m venv $VENV' failed"

log="$VENV/pip-install.log"
say "installing $(grep -Ev '^\s*(#|$)' "$REQ" | tr '\n' ' ')(log: $log)"
if ! "$VPY" -m pip install --no-cache-dir --disable-pip-version-check -q -r "$REQ" \
        >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    if grep -Eq 'NewConnectionError|Network is unreachable|Temporary failure in name resolution|Name or service not known|ConnectTimeout|Connection refused' "$log"; then
        say "the package index cannot be reached from here: the reference checks cannot run"
        rm -rf "$VENV"
        exit 77
    fi
    rm -rf "$VENV"
    die "pip could not install the requirements (see the lines above)"
fi

"$VPY" -c 'import torch, transformers, peft, safetensors, numpy' >&2 ||
    die "the installed packages do not import (see the lines above)"
echo "$stamp" >"$VENV/.ft-stamp"
versions="$("$VPY" -c 'import torch, transformers, peft, safetensors
print("torch", torch.__version__, "transformers", transformers.__version__,
      "peft", peft.__version__, "safetensors", safetensors.__version__)')"
say "ready in $(( $(date +%s) - start )) s: $versions ($(du -sh "$VENV" | cut -f1) at $VENV)"
finish
