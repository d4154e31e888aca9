#!/usr/bin/env bash
# Soak: runs the lab router for a given time under a mix of everything at once — a long
# download/upload, a flood of new UDP sessions from the LAN host, faults cycling on uplink B
# (flap, loss, delay, heal), and a config reload every 45 s — and samples the router's memory and
# counters every 10 s. Fails if the router dies, if memory keeps growing, or if the healthy
# uplink A ever loses its primary route (faults only ever touch B).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/soak.sh [--prefix P] [--duration SECONDS] [--config FILE] [--out DIR] [--keep]

  --prefix P          lab prefix (default sk-), so a soak runs beside other labs
  --duration SECONDS  how long to soak (default 3600)
  --config FILE       router config (default scripts/lab-fast.toml: fast probes, most churn)
  --out DIR           where the samples go (default results/soak-<UTC time>)
  --keep              leave the lab up afterwards

Writes DIR/memory.csv (seconds, RSS KiB, NAT sessions) and DIR/router.log, prints the memory
curve, and exits non-zero with one line per failed check.
USAGE
}

here=$(cd "$(dirname "$0")" && pwd)
prefix=sk-
duration=3600
config="$here/lab-fast.toml"
out=""
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --config) config="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "soak.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $duration =~ ^[0-9]+$ && $duration -ge 60 ]] || { echo "soak.sh: --duration must be >= 60 s" >&2; exit 2; }
out=${out:-"$here/../results/soak-$(date -u +%Y%m%dT%H%M%SZ)"}
mkdir -p "$out"
lab() { "$here/lab.sh" --prefix "$prefix" "$@"; }
state="${MH_LAB_STATE:-/run/mhlab}/$prefix"

# Background jobs get a process group each (job control on), so stopping one by its recorded
# pid also stops what it started (the iperf3 of the traffic loop).
set -m
bg_pids=()
cleanup() {
    for p in "${bg_pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done
    for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    cp "$state/router.log" "$out/router.log" 2>/dev/null || true
    if [[ $keep -eq 0 ]]; then
        lab router stop >/dev/null 2>&1 || true
        lab down >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

lab up >/dev/null
lab router start --config "$config" >/dev/null
router_pid=$(head -n1 "$state/router.pid")
for _ in $(seq 1 100); do
    lab ctl show route | grep -q '\[10/0\]' && break
    sleep 0.1
done
lab ctl show route | grep -q '\[10/0\]' || { echo "soak: the primary route never came up" >&2; exit 1; }

# Traffic: one long TCP transfer at a time (the central site's iperf3 serves one client),
# alternating directions; and a stream of new UDP sessions (a new source port per datagram).
(
    while :; do
        lab exec lan iperf3 -c 172.18.0.6 -t 20 >/dev/null 2>&1 || sleep 1
        lab exec lan iperf3 -c 172.18.0.6 -t 20 -R >/dev/null 2>&1 || sleep 1
    done
) &
bg_pids+=($!)
lab exec lan python3 -c '
import socket, time
end = time.time() + '"$duration"'
while time.time() < end:
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.sendto(b"soak", ("172.18.0.6", 9))
        except OSError:
            pass
        s.close()
    time.sleep(0.1)
' &
bg_pids+=($!)

faults=("flap 1500" "loss 10" "delay 40" "")
echo "seconds,rss_kib,nat_sessions" >"$out/memory.csv"
start=$(date +%s)
next_sample=0
next_fault=30
next_reload=45
phase=0
while :; do
    now=$(( $(date +%s) - start ))
    (( now >= duration )) && break
    if ! kill -0 "$router_pid" 2>/dev/null; then
        echo "soak: the router died at ${now} s" >&2
        exit 1
    fi
    if (( now >= next_sample )); then
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$router_pid/status")
        nat=$(lab ctl show uplinks | grep -o '([0-9]* sessions)' | tr -dc '0-9\n' | awk '{ n += $1 } END { print n + 0 }')
        echo "$now,$rss,$nat" >>"$out/memory.csv"
        next_sample=$(( now + 10 ))
    fi
    if (( now >= next_fault )); then
        lab heal b >/dev/null
        f=${faults[$(( phase % ${#faults[@]} ))]}
        # shellcheck disable=SC2086 # the fault's words are meant to split
        [[ -n $f ]] && lab fault b $f >/dev/null
        phase=$(( phase + 1 ))
        next_fault=$(( now + 30 ))
    fi
    if (( now >= next_reload )); then
        lab ctl reload >/dev/null || { echo "soak: reload failed at ${now} s" >&2; exit 1; }
        next_reload=$(( now + 45 ))
    fi
    sleep 1
done
lab heal b >/dev/null

failed=0
# Memory: the highest sample of the last quarter may exceed the highest of the second quarter
# by at most 10 % + 8 MiB (tables fill during the first half and are bounded after that).
read -r q2 q4 < <(awk -F, -v d="$duration" 'NR > 1 {
        if ($1 >= d / 4 && $1 < d / 2 && $2 > a) a = $2
        if ($1 >= 3 * d / 4 && $2 > b) b = $2
    } END { print a + 0, b + 0 }' "$out/memory.csv")
if (( q4 > q2 * 110 / 100 + 8192 )); then
    echo "soak: memory grew: max RSS ${q2} KiB in the second quarter, ${q4} KiB in the last" >&2
    failed=1
fi
cp "$state/router.log" "$out/router.log"
if grep -q 'via isp-a \[10\] withdrawn' "$out/router.log"; then
    echo "soak: the healthy uplink A lost its primary route:" >&2
    grep 'via isp-a \[10\] withdrawn' "$out/router.log" | head -3 >&2
    failed=1
fi
echo "memory curve (seconds, RSS KiB, NAT sessions) in $out/memory.csv:"
awk -F, 'NR > 1 && (NR % 6 == 2) { printf "  %6s s  %8s KiB  %7s sessions\n", $1, $2, $3 }' "$out/memory.csv"
echo "B track changes: $(grep -c 'track b-e2e: change' "$out/router.log" || true), reloads: $(grep -c 'reload' "$out/router.log" || true)"
if (( failed )); then exit 1; fi
echo "soak passed: ${duration} s, max RSS ${q4} KiB in the last quarter"
