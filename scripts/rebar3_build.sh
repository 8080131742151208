#!/bin/sh
# rebar3 post-compile hook (see rebar.config), run in this library's source directory.
# Builds the Elixir modules, src/*.erl and the port program with Mix, then puts them where
# rebar3 built this application: the modules and Mix's wasmex.app (which lists every
# module, so an embedded-mode release loads them all) into ebin/, and priv/wasmex_port.
set -e
if ! command -v mix >/dev/null 2>&1; then
  echo "wasmex: mix (Elixir) is not on the PATH; install Elixir, e.g. apt-get install elixir" >&2
  exit 1
fi
MIX_ENV=prod mix compile
for dir in "$REBAR_CHECKOUTS_OUT_DIR/wasmex" "$REBAR_DEPS_DIR/wasmex"; do
  if [ -f "$dir/ebin/wasmex.app" ]; then
    cp _build/prod/lib/wasmex/ebin/*.beam _build/prod/lib/wasmex/ebin/wasmex.app "$dir/ebin/"
    # rebar3 links or copies priv/ only if it existed before this hook built the binary.
    if [ ! -x "$dir/priv/wasmex_port" ]; then
      rm -rf "$dir/priv"
      ln -s "$(pwd -P)/priv" "$dir/priv"
    fi
    exit 0
  fi
done
echo "rebar3_build.sh: cannot find where rebar3 built wasmex" >&2
exit 1
