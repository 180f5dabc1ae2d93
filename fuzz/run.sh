#!/usr/bin/env bash
# Builds and runs rootbox's fuzz targets (libFuzzer, through libfuzzer-sys) on stable Rust:
# the same instrumentation `cargo fuzz` adds (SanitizerCoverage: inline 8-bit counters, PC
# table, compare tracing), without AddressSanitizer (safe Rust; overflow checks and debug
# assertions are on). See README.md.
#
#   fuzz/run.sh build                    build every target
#   fuzz/run.sh TARGET|all [SECONDS]     build, then run TARGET (or each in turn) for SECONDS
#                                        (default 60) from its seeds and saved corpus
#   fuzz/run.sh --no-build TARGET|all [SECONDS]   run what was built (e.g. staged elsewhere)
#   fuzz/run.sh list                     the targets
#
# Environment:
#   FUZZ_PROFILE  release (default: optimised) or quick (a shorter build: `make test`)
#   FUZZ_BIN      directory of the built targets (default: this crate's target dir)
#   FUZZ_WORK     where corpora and crash artifacts go (default: fuzz/, i.e. fuzz/corpus/TARGET
#                 and fuzz/artifacts/TARGET)
#   FUZZ_JOBS     libFuzzer -fork=N worker processes per target (default 1: in-process)
#   TMPDIR        where the targets make their temporary trees (default /dev/shm, else /tmp)
#   FUZZ_ARGS     extra libFuzzer arguments (e.g. -max_len=65536 -dict=...)
#   CARGO         cargo binary (default cargo)
# Exit status: 0 when no target crashed; else 1, and each crash input is in
# $FUZZ_WORK/artifacts/TARGET/ (reproduce: the target binary with that file as argument).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TARGETS=(reference dockerfile size oci_config unpack)
CARGO=${CARGO:-cargo}
PROFILE=${FUZZ_PROFILE:-release}

triple() { rustc -vV | sed -n 's/^host: //p'; }

build() {
    local t
    t=$(triple)
    # --target: the flags apply to the fuzzed code only, not to build scripts and proc macros.
    # `--cfg fuzzing` as cargo-fuzz sets it.
    RUSTFLAGS="${RUSTFLAGS:-} -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
        "$CARGO" build --manifest-path "$HERE/Cargo.toml" --profile "$PROFILE" --target "$t" --bins
}

bin_dir() {
    if [ -n "${FUZZ_BIN:-}" ]; then
        echo "$FUZZ_BIN"
    else
        echo "$HERE/target/$(triple)/$PROFILE"
    fi
}

run_one() { # TARGET SECONDS
    local target=$1 secs=$2 bin work corpus artifacts seeds rc=0 extra=()
    bin=$(bin_dir)/$target
    [ -x "$bin" ] || { echo "run.sh: $bin is not built (fuzz/run.sh build)" >&2; return 2; }
    work=${FUZZ_WORK:-$HERE}
    corpus=$work/corpus/$target
    artifacts=$work/artifacts/$target
    seeds=$HERE/seeds/$target
    mkdir -p "$corpus" "$artifacts"
    [ -d "$seeds" ] || seeds=
    [ -f "$HERE/dict/$target.dict" ] && extra+=("-dict=$HERE/dict/$target.dict")
    read -r -a user_args <<<"${FUZZ_ARGS:-}"
    # Temporary files of the targets (bundles, unpack sandboxes) in one place, removed after.
    # (On a tmpfs when there is one: the unpack target makes and removes a tree per input.)
    local tmp tmpbase=${TMPDIR:-/tmp}
    [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] && tmpbase=/dev/shm
    tmp=$(mktemp -d "$tmpbase/rbfuzz-$target-XXXXXX")
    echo "== fuzz $target for ${secs}s (corpus $corpus)"
    [ "${FUZZ_JOBS:-1}" -gt 1 ] && extra+=("-fork=$FUZZ_JOBS")
    ROOTBOX_FUZZ_TMP=$tmp "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=16384 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" "${extra[@]}" "${user_args[@]}" "$corpus" ${seeds:+"$seeds"} \
        >"$work/artifacts/$target.log" 2>&1 || rc=$?
    rm -rf "$tmp" 2>/dev/null || { chmod -R u+rwx "$tmp" 2>/dev/null; rm -rf "$tmp"; }
    grep -E '^(stat::number_of_executed_runs|stat::new_units_added|#[0-9]+[[:space:]]+DONE)' "$work/artifacts/$target.log" | tr '\n' ' '
    echo
    if [ "$rc" -ne 0 ]; then
        echo "run.sh: $target FAILED (exit $rc); log: $work/artifacts/$target.log; crash inputs:" >&2
        ls -1 "$artifacts" >&2 || true
        tail -n 40 "$work/artifacts/$target.log" >&2
    fi
    return "$rc"
}

do_build=1
if [ "${1:-}" = --no-build ]; then
    do_build=0
    shift
fi
what=${1:-}
secs=${2:-60}
case $what in
    list) printf '%s\n' "${TARGETS[@]}"; exit 0 ;;
    build) build; exit 0 ;;
    "") sed -n '2,22p' "$0" >&2; exit 2 ;;
esac
if [ "$what" = all ]; then
    run=("${TARGETS[@]}")
else
    printf '%s\n' "${TARGETS[@]}" | grep -qx -- "$what" || { echo "run.sh: unknown target $what (fuzz/run.sh list)" >&2; exit 2; }
    run=("$what")
fi
[ "$do_build" = 1 ] && build
failed=0
for t in "${run[@]}"; do
    run_one "$t" "$secs" || failed=1
done
exit "$failed"
