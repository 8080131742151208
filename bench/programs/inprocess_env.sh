#!/usr/bin/env bash
# Makes the Python environment that bench/programs/inprocess.py runs in: a venv with
# wasmtime-py from PyPI, pinned by version and checked by sha256, in the programs' cache
# (never committed). Prints the path of its python.
#
#     bench/programs/inprocess_env.sh    # into ${WASMEX_BENCH_PROGRAMS:-~/.cache/wasmex_bench_programs}
set -euo pipefail

CACHE="${WASMEX_BENCH_PROGRAMS:-$HOME/.cache/wasmex_bench_programs}"
WHEEL=wasmtime-51.0.0-py3-none-manylinux1_x86_64.whl
WHEEL_SHA256=cb4a48bae3de3c0ca99a67e05debbe4bfe48bea7f25ac71ee42fb3fd681ef93c
VENV="$CACHE/venv-wasmtime-51"

if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import wasmtime" 2>/dev/null; then
  mkdir -p "$CACHE"
  if ! [ -f "$CACHE/$WHEEL" ]; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
      --dest "$CACHE" "wasmtime==51.0.0"
  fi
  got=$(sha256sum "$CACHE/$WHEEL" | cut -d' ' -f1)
  if [ "$got" != "$WHEEL_SHA256" ]; then
    echo "inprocess_env.sh: $WHEEL: sha256 $got, expected $WHEEL_SHA256" >&2
    rm -f "$CACHE/$WHEEL"
    exit 1
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --no-deps "$CACHE/$WHEEL" >&2
fi

echo "$VENV/bin/python"
