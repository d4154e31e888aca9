#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets in fuzz/ (cargo-fuzz, libFuzzer) for a given time each
# and prints one line per target: executions, crashes, corpus size, seconds. Exits non-zero if
# any target crashed; the crashing input is kept in fuzz/artifacts/TARGET/ (reproduce with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...` in fuzz/).
#
# cargo-fuzz needs nightly compiler flags (-Z sanitizer); stable Rust accepts them with
# RUSTC_BOOTSTRAP=1, which is what this script sets. See docs/fuzzing.md.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/fuzz.sh [--time SECONDS] [--runs N] [--sanitizer none|address] [TARGET...]

  --time SECONDS   how long each target runs (default 60)
  --runs N         also stop each target after N executions (default: time only)
  --sanitizer S    none (default) or address; builds always have overflow checks and debug
                   assertions on (see docs/fuzzing.md for why)
  TARGET           one or more of the targets in fuzz/Cargo.toml (default: all)

New corpus entries are added to fuzz/corpus/TARGET/ (commit the ones worth keeping).
USAGE
}

seconds=60
runs=-1
sanitizer=none
targets=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --time) seconds="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --sanitizer) sanitizer="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done

cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked --quiet
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi
# -a: overflow checks and debug assertions, so wrapping arithmetic panics instead of hiding.
build=(-O -a -s "$sanitizer")
cargo fuzz build "${build[@]}"

failed=0
printf '%-16s %12s %8s %8s %8s\n' target execs crashes corpus seconds
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log=$(mktemp)
    status=0
    start=$SECONDS
    cargo fuzz run "${build[@]}" "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -runs="$runs" -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || status=$?
    execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log")
    crashes=$(find "artifacts/$t" -type f | wc -l)
    printf '%-16s %12s %8s %8s %8s\n' "$t" "${execs:-?}" "$crashes" \
        "$(find "corpus/$t" -type f | wc -l)" "$((SECONDS - start))"
    if [[ $status -ne 0 || $crashes -ne 0 ]]; then
        failed=1
        grep -E "panicked|ERROR|SUMMARY" "$log" | head -5 >&2 || true
    fi
    rm -f "$log"
done
exit "$failed"
