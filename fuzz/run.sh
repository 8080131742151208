#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS (default 60), one after the other.
#
#   fuzz/run.sh [SECONDS] [TARGET...]        targets: frame_decode dispatch term_values
#
# Before fuzzing a target it replays fuzz/regressions/<target>/*: each reproducer of a
# crash found before must now run clean. Prints, per target, the executions run and
# whether a crash was found; exits non-zero if a regression still crashes or a run left
# a crash artifact (in fuzz/artifacts/<target>/).
#
# Works on stable Rust: the build uses `--sanitizer none` (AddressSanitizer needs
# nightly; this code has no unsafe of its own to check). New corpus entries go to
# fuzz/work/corpus/<target> (not committed); the committed seeds in fuzz/corpus/<target>
# are only read. Environment:
#   WASMEX_FUZZ_SKIP_KNOWN=1  skip inputs that hit the crashes already reported (see
#                             docs/fuzzing.md), to look for new ones past them
#   FUZZ_ARGS="..."           more libFuzzer flags (e.g. -jobs=2 -workers=2, -seed=1)
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

seconds="${1:-60}"
shift || true
case "$seconds" in
'' | *[!0-9]*)
    echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac
all_targets=(frame_decode dispatch term_values)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked || exit 1
fi

# Same flags for every build, so they share fuzz/target and rebuild nothing.
build_flags=(--sanitizer none --codegen-units 16)
echo "== building ${targets[*]} (cargo fuzz build ${build_flags[*]})"
for t in "${targets[@]}"; do
    cargo fuzz build "${build_flags[@]}" "$t" || exit 1
done
bin_dir="$here/target/x86_64-unknown-linux-gnu/release"

# libFuzzer flags: see docs/fuzzing.md for why each.
flags=(
    -print_final_stats=1
    -dict="$here/etf.dict"
    -max_len=16384
    -timeout=60
    -rss_limit_mb=4096
    -malloc_limit_mb=4096
)
read -r -a extra <<<"${FUZZ_ARGS:-}"

status=0
summary=()
for t in "${targets[@]}"; do
    bin="$bin_dir/$t"
    work="$here/work/corpus/$t"
    artifacts="$here/artifacts/$t"
    log="$here/work/$t.log"
    mkdir -p "$work" "$artifacts"

    replay="none"
    if compgen -G "$here/regressions/$t/*" >/dev/null; then
        replay="ok"
        for r in "$here"/regressions/"$t"/*; do
            "$bin" -runs=1 "$r" >"$here/work/$t.replay.log" 2>&1
            rc=$?
            if [ $rc -ne 0 ]; then
                echo "!! $t: regression $(basename "$r") still crashes (exit $rc):"
                grep -A1 -E "panicked at|memory allocation|overflowed|out-of-memory" \
                    "$here/work/$t.replay.log" | grep -v -E "^(--|stack backtrace)" | head -2 | sed 's/^/   /'
                replay="FAILED"
                status=1
            fi
        done
    fi

    before=$(find "$artifacts" -type f | wc -l)
    echo "== fuzzing $t for ${seconds}s (log: fuzz/work/$t.log)"
    start=$(date +%s)
    "$bin" "${flags[@]}" -max_total_time="$seconds" -artifact_prefix="$artifacts/" \
        "${extra[@]}" "$work" "$here/corpus/$t" >"$log" 2>&1
    code=$?
    took=$(($(date +%s) - start))
    after=$(find "$artifacts" -type f | wc -l)
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    [ -z "$execs" ] && execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    corpus=$(find "$work" -type f | wc -l)
    if [ "$code" -ne 0 ] || [ "$after" -gt "$before" ]; then
        result="CRASH (exit $code, $((after - before)) new artifact(s) in fuzz/artifacts/$t/)"
        grep -A1 -E "panicked at|memory allocation|overflowed|out-of-memory|Test unit written" "$log" |
            grep -v -E "^(--|stack backtrace|Base64)" | head -4 | sed 's/^/   /'
        status=1
    else
        result="no crash"
    fi
    summary+=("$(printf '%-13s %6ss %10s execs %7s/s  corpus %5s  regressions %-6s %s' \
        "$t" "$took" "${execs:-?}" "$(( ${execs:-0} / (took > 0 ? took : 1) ))" "$corpus" "$replay" "$result")")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
