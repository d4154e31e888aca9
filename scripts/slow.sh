#!/usr/bin/env bash
# The slow tier (CI runs it after scripts/test.sh; run it by hand before a release): every fuzz
# target for a short while, the tests that need the release build's capacity or wait out long
# timers (#[ignore] in the default tier), then a soak of the lab router under traffic, floods,
# faults and reloads. Needs root (the soak and the lab tests build network namespaces).
#   scripts/slow.sh [--fuzz-time SECONDS] [--soak SECONDS]     defaults: 30 and 300
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fuzz_time=30
soak=300
while [[ $# -gt 0 ]]; do
    case "$1" in
        --fuzz-time) fuzz_time="$2"; shift 2 ;;
        --soak) soak="$2"; shift 2 ;;
        -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "slow.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
cd "$here/.."
echo "== fuzzing, ${fuzz_time} s per target"
"$here/fuzz.sh" --time "$fuzz_time"
echo "== capacity tests (release build): the line-rate flood at the control plane"
cargo test --release --test hostile -- --ignored
echo "== lab tests that wait out dnsmasq's 2-minute leases"
cargo test --test uplink_dhcp -- --ignored
echo "== soak, ${soak} s (release build)"
cargo build --release --quiet
MHROUTER_BIN="$PWD/target/release/mhrouter" "$here/soak.sh" --duration "$soak"
