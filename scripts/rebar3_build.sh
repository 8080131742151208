#!/bin/sh
# rebar3 post-compile hook (see rebar.config): builds with Mix, then copies the compiled
# Elixir modules next to the rebar3-built wasmex.app. priv/ (the port program) is
# linked by rebar3 itself.
set -e
MIX_ENV=prod mix compile
for dir in "$REBAR_CHECKOUTS_OUT_DIR/wasmex" "$REBAR_DEPS_DIR/wasmex"; do
  if [ -f "$dir/ebin/wasmex.app" ]; then
    cp _build/prod/lib/wasmex/ebin/*.beam "$dir/ebin/"
    exit 0
  fi
done
echo "rebar3_build.sh: cannot find where rebar3 built wasmex" >&2
exit 1
