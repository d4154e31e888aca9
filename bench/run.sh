#!/usr/bin/env bash
# The lab benchmark (issue 6): the same iperf3 traffic through the kernel (ip_forward + nftables
# masquerade), through the I/O floor (bench/null_forward.rs, issue 16) and through mhrouter, in
# labs built one after the other in this run, and a table of mhrouter/kernel ratios. Results go to results/<timestamp>/ (results.md, results.json, flows.dat and flows.svg, raw/).
# Options add a NAT table size sweep (nat_size.dat/.svg), perf counts of the 64-byte UDP case
# (perf.jsonl) and a callgrind count (callgrind.json): see usage below.
#
# CPU seconds per GB (method also in README.md, "CPU seconds per GB"). GB = bytes iperf3's receiver got. Samples
# are taken just before and after each iperf3 run, in clock ticks:
#   busy   the machine's busy time from /proc/stat: user+nice+system+irq+softirq (idle, iowait
#          and steal excluded);
#   others utime+stime+cutime+cstime (from /proc/<pid>/stat) of every user-space process that is
#          not the lab's (other users' builds on a shared machine); kernel threads (PF_KTHREAD)
#          are never subtracted, ksoftirqd does forwarding work;
#   lab    the same for the iperf3 server, dnsmasq and this script (which reaps the iperf3
#          client, so cutime holds it);
#   router the same for the mhrouter process (all its threads).
# Figures:
#   process  (mhrouter) router: the router process alone.
#   system   busy - others - lab: "the machine minus iperf3", the only figure the kernel router
#            has, since it forwards in softirq. But with tick accounting (this kernel:
#            CONFIG_TICK_CPU_ACCOUNTING, no IRQ_TIME_ACCOUNTING) a tick in softirq is charged to
#            the task it interrupted too, and veth runs the forwarding softirq in the sending
#            iperf3's context, so most of the kernel's forwarding lands in iperf3's time and is
#            subtracted: for the kernel this is a lower bound, often near zero.
#   path     busy - others: router + both hosts' stacks + the PEs, the same work on both sides
#            but the router: the like-for-like comparison (mhrouter/kernel ratio of this one).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$SCRIPT_DIR")
LAB=$REPO_DIR/scripts/lab.sh
SERVER=172.18.0.6
SERVER6=2001:db8:18::6
# ISP A's LAN /64 (docs/lab.md); the kernel router gives the LAN host ::100 in it.
LAN_PREFIX6=2001:db8:a:1:
UDP_LEN=64
CPS_PORT=7000
CPS_CONCURRENCY=16
ROUTE_TIMEOUT_S=60
# Issue 6: one TCP stream must reach these fractions of the kernel, both directions.
TARGET_ON=0.9
TARGET_OFF=0.75

usage() {
    cat <<'EOF'
Usage: bench/run.sh [--quick] [--time S] [--prefix P] [--floor LIST] [--rx-paths N]
                    [--nat-sweep | --nat-sweep-only] [--nat-sizes N,N,...] [--callgrind]

Builds target/release/mhrouter, then measures with iperf3 from the LAN host to 172.18.0.6:
first with the kernel routing in <P>rtr (ip_forward=1, nftables masquerade on wan-a), then with
mhrouter (scripts/lab.sh router start, scripts/lab.toml), each in a freshly built lab.
Cases: TCP 1 stream up/down, TCP 4 streams up/down, with the hosts' offloads on and off
(ethtool -K tso/gso/gro/tx on eth0 in <P>lan and isp-a in <P>net), TCP 16 and 64 streams down
(the senders' retransmissions compared), UDP 64-byte packets (iperf3 -u -l 64 -b 0, receiver
pps), new TCP connections per second (bench/cps.rs: connect, one byte each way, close; 16 in
flight), and TCP 1 stream up/down over IPv6 to 2001:db8:18::6 from the LAN host's address in
ISP A's prefix (the kernel router forwards IPv6 untranslated, as mhrouter does). With gnuplot
installed, flows.svg plots throughput against the number of download streams (1, 4, 16, 64). Prints mhrouter/kernel ratios and CPU seconds per GB and
writes them to results/<UTC timestamp>/results.{md,json}, iperf3 output to raw/.

  --quick      under 2 minutes in all (builds included): 1-second iperf3 runs and offloads on
               only: tcp1-up, tcp1-down, tcp4-down, tcp16-down, udp64-up and cps (it leaves out
               offloads off, tcp4-up, tcp64-down and IPv6)
  --time S     S-second iperf3 runs (default 5)
  --prefix P   lab namespace prefix (default hx-bn-); must not be in use
  --floor LIST the I/O floor runs, between the kernel and mhrouter (comma-separated; default
               mmsg,ring, with --quick mmsg; none skips them): the null forwarder bench/null_forward.rs (the
               router's TAP/AF_PACKET I/O, batching, vnet headers and GRO; no parsing, routing or
               NAT) reading the uplink with recvmmsg (mmsg, the router's path) or a TPACKET_V3
               ring (ring), each in its own lab. IPv4 cases only: without NAT or neighbour
               discovery the IPv6 cases cannot run through it. results.md gets a floor table
               (kernel / floor / mhrouter, mhrouter/floor against the 0.95 goal)
  --rx-paths N only the floor comparison, instead of everything else: one lab, the null
               forwarder reading the uplink with recvmmsg, then with the TPACKET_V3 ring, then
               mhrouter, N rounds interleaved (so drift on a shared machine hits all alike) of
               the downloads tcp1/tcp4/tcp16-down (offloads on); medians in rx_paths.md and
               rx_paths.json
  --nat-sweep  after the two routers, the NAT table size sweep (mhrouter only, one more lab):
               bench/fill_sessions.rs fills the table with idle UDP sessions from the LAN host
               (to 198.18.0.0/15, blackholed by PE_A), the run fails unless the router counts
               >= 95 % of them, then TCP 1 stream up and down and UDP 64-byte at each size
               (1 k, 100 k, 1 M), with the ratio to the first size: nat_size.dat/.svg and a
               section of results.md/json. About 75 s more with 5-second runs (filling
               1 M sessions takes ~10 s), 35 s with --quick.
  --nat-sweep-only   the sweep alone (no kernel run)
  --nat-sizes L      comma-separated session counts for the sweep (default 1000,100000,1000000)
  --callgrind  at the end, one more lab: mhrouter under valgrind's callgrind, 64-byte UDP at
               10 Mbit/s: user-space instructions per forwarded packet (instructions, not
               time: a busy machine hardly moves them); about 30 s more
EOF
}

die() {
    echo "bench: $*" >&2
    exit 1
}

PREFIX=hx-bn-
DURATION=5
# Empty until --floor or --quick sets it: then both receive paths.
FLOOR_RX=
RX_ROUNDS=0
QUICK=false
# NAT sweep: none, also (after the two routers) or only.
NAT_SWEEP=none
NAT_SIZES=1000,100000,1000000
CALLGRIND=false
while (($#)); do
    case $1 in
    --quick)
        DURATION=1
        QUICK=true
        FLOOR_RX=${FLOOR_RX:-mmsg}
        ;;
    --nat-sweep) NAT_SWEEP=also ;;
    --nat-sweep-only) NAT_SWEEP=only ;;
    --callgrind) CALLGRIND=true ;;
    --nat-sizes)
        (($# >= 2)) || die "--nat-sizes needs a list"
        NAT_SIZES=$2
        shift
        ;;
    --time)
        (($# >= 2)) || die "--time needs seconds"
        DURATION=$2
        shift
        ;;
    --prefix)
        (($# >= 2)) || die "--prefix needs a value"
        PREFIX=$2
        shift
        ;;
    --floor)
        (($# >= 2)) || die "--floor needs a list (mmsg,ring or none)"
        FLOOR_RX=$2
        shift
        ;;
    --rx-paths)
        (($# >= 2)) || die "--rx-paths needs a number of rounds"
        RX_ROUNDS=$2
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "--time must be a whole number of seconds"
FLOOR_RX=${FLOOR_RX:-mmsg,ring}
[[ $FLOOR_RX =~ ^(none|(mmsg|ring)(,(mmsg|ring))*)$ ]] || die "--floor takes mmsg, ring, both (mmsg,ring) or none"
[[ $RX_ROUNDS =~ ^[0-9]+$ ]] || die "--rx-paths takes a number of rounds"
[[ $NAT_SIZES =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--nat-sizes must be counts separated by commas"
[[ $EUID -eq 0 ]] || die "must run as root (network namespaces)"
for tool in iperf3 jq ethtool nft cargo; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

STATE=${MH_LAB_STATE:-/run/mhlab}/$PREFIX
OUT=$REPO_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)
RECORDS=$OUT/records.jsonl
HZ=$(getconf CLK_TCK)
CLIENT_PID=
CPS_SERVER_PID=
FLOOR_PID=
PERF_PIDS=
ROUTER_PID=0

lab() { "$LAB" --prefix "$PREFIX" "$@"; }

# Only our own prefix is ever torn down, and only if this run built it.
LAB_OURS=false
cleanup() {
    local pid
    for pid in $CLIENT_PID $CPS_SERVER_PID $FLOOR_PID $PERF_PIDS; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if $LAB_OURS; then
        lab down >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- CPU accounting (method in the header) -----------------------------------------------------

# Prints "busy others router lab" in clock ticks: the machine's busy time; user-space processes
# that are not the lab's (other users', builds); the router process; the lab's iperf3 client
# (reaped by this shell, so in its cumulative children) and servers. Cumulative children count
# for every process, so processes that exit during the run are not lost.
cpu_sample() {
    local busy lab_pids
    busy=$(awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat)
    lab_pids=" $$ $(cat "$STATE/iperf3.pid" "$STATE/iperf3-6.pid" "$STATE/dnsmasq.pid" 2>/dev/null | tr '\n' ' ')"
    # Processes come and go while cat reads: a vanished one is not an error.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v router="$ROUTER_PID" -v lab="$lab_pids" -v busy="$busy" '
        {
            pid = $1
            rest = $0
            sub(/^.*\) /, "", rest)
            split(rest, f, " ")
            # Fields after the ")" closing the command name: field k of stat(5) is f[k-2].
            if (int(f[7] / 2097152) % 2 == 1) next # PF_KTHREAD (0x00200000): kernel work
            if (pid == router) r += f[12] + f[13] + f[14] + f[15]
            else if (index(lab, " " pid " ")) l += f[12] + f[13] + f[14] + f[15]
            else o += f[12] + f[13] + f[14] + f[15]
        }
        END { printf "%d %d %d %d\n", busy, o, r, l }'
}

# --- one measurement ---------------------------------------------------------------------------

# Runs iperf3 from the LAN host and appends one JSON record to $RECORDS. The arguments name the
# server (-c) and, for IPv6, the source (-B).
run_case() { # router case offloads iperf3-args...
    local router=$1 name=$2 offloads=$3 raw try s0 s1
    shift 3
    raw=$OUT/raw/$router-$name-offloads-$offloads.json
    for try in 1 2; do
        s0=$(cpu_sample)
        # lab.sh exec and ip netns exec both exec: $! is iperf3 itself.
        "$LAB" --prefix "$PREFIX" exec lan iperf3 -t "$DURATION" -J "$@" >"$raw" 2>&1 &
        CLIENT_PID=$!
        if wait "$CLIENT_PID"; then
            CLIENT_PID=
            s1=$(cpu_sample)
            break
        fi
        CLIENT_PID=
        # The server may still be finishing the previous test ("server is busy").
        echo "bench: $router $name (offloads $offloads) failed (try $try): $(jq -r '.error // empty' "$raw" 2>/dev/null)" >&2
        ((try < 2)) || die "iperf3 failed twice; see $raw"
        sleep 2
    done
    jq -c --arg router "$router" --arg case "$name" --arg offloads "$offloads" \
        --argjson hz "$HZ" --argjson udp_len "$UDP_LEN" \
        --argjson s0 "[${s0// /,}]" --argjson s1 "[${s1// /,}]" '
        .end.sum_received as $r
        | [range(4) as $i | ($s1[$i] - $s0[$i]) / $hz] as [$busy, $others, $router_s, $lab_s]
        | {router: $router, case: $case, offloads: $offloads,
           bytes: $r.bytes, seconds: $r.seconds, gbps: ($r.bits_per_second / 1e9),
           retransmits: .end.sum_sent.retransmits,
           pps: (if .start.test_start.protocol == "UDP" then $r.bytes / $udp_len / $r.seconds
                 else null end),
           cpu_path_s: ($busy - $others),
           cpu_system_s: ($busy - $others - $lab_s),
           cpu_process_s: (if $router == "kernel" then null else $router_s end)}
        ' "$raw" >>"$RECORDS"
    jq -r 'def r2: . * 100 | round / 100;
        select(.router == $r and .case == $c and .offloads == $o)
        | "  \(.router) \(.case) offloads \(.offloads): \(.gbps * 1000 | round / 1000) Gbit/s"
          + (if .pps then ", \(.pps | round) pps" else "" end)
          + (if .retransmits then ", \(.retransmits) retransmits" else "" end)
          + ", CPU s: path \(.cpu_path_s | r2), system \(.cpu_system_s | r2)"
          + (if .cpu_process_s then ", process \(.cpu_process_s | r2)" else "" end)' \
        --arg r "$router" --arg c "$name" --arg o "$offloads" "$RECORDS"
    sleep 1
}

# New connections per second from the LAN host to the central site; appends one record.
run_cps() { # router
    local raw=$OUT/raw/$1-cps.json s0 s1
    "$LAB" --prefix "$PREFIX" exec net "$CPS_BIN" server "$SERVER:$CPS_PORT" &
    CPS_SERVER_PID=$!
    # TIME_WAITs must not limit the client (bench/cps.rs): the same settings for both routers.
    lab exec lan sysctl -qw net.ipv4.tcp_tw_reuse=1 "net.ipv4.ip_local_port_range=1024 65535"
    sleep 0.5
    s0=$(cpu_sample)
    lab exec lan "$CPS_BIN" client "$SERVER:$CPS_PORT" "$DURATION" "$CPS_CONCURRENCY" >"$raw"
    s1=$(cpu_sample)
    kill -TERM "$CPS_SERVER_PID" 2>/dev/null || true
    wait "$CPS_SERVER_PID" 2>/dev/null || true
    CPS_SERVER_PID=
    jq -c --arg router "$1" --argjson hz "$HZ" \
        --argjson s0 "[${s0// /,}]" --argjson s1 "[${s1// /,}]" '
        [range(4) as $i | ($s1[$i] - $s0[$i]) / $hz] as [$busy, $others, $router_s, $lab_s]
        | {router: $router, case: "cps", offloads: "on", cps, failed: .failed,
           connections, seconds,
           cpu_path_s: ($busy - $others),
           cpu_process_s: (if $router == "kernel" then null else $router_s end)}
        ' "$raw" >>"$RECORDS"
    jq -r --arg r "$1" 'select(.router == $r and .case == "cps")
        | "  \(.router) cps: \(.cps | round) connections/s (\(.failed) failed)"' "$RECORDS"
    sleep 1
}

# --- CPU per packet: perf stat over the 64-byte UDP case ---------------------------------------

# One perf stat CSV (-x,) as JSON: {"cycles": n, "instructions": n, "task-clock": ms}, null for
# a counter perf could not read ("<not supported>": no hardware PMU, as in many VMs).
perf_json() { # csv-file
    awk -F, '$3 != "" && $1 !~ /^#/ {
            v = ($1 ~ /^[0-9.]+$/) ? $1 : "null"
            printf "%s\"%s\": %s", (n++ ? ", " : "{"), $3, v
        }
        END { print (n ? "}" : "{}") }' "$1"
}

# The 64-byte UDP case under `perf stat`: the router's process (-p, all threads: cycles,
# instructions, task-clock) and the whole machine (-a: cycles, instructions; senders, router and
# receivers, so both routers compare like for like), both over the iperf3 run and the second
# after it. One line per router in perf.jsonl; without perf, the case runs alone.
run_udp64_perf() { # router
    local router=$1 raw=$OUT/raw/perf-$1-udp64 all_pid='' proc_pid=''
    if command -v perf >/dev/null; then
        perf stat -a -x, -e cycles,instructions -o "$raw-machine.csv" &
        all_pid=$!
        # Any router with a process (not the kernel's).
        if ((ROUTER_PID > 0)); then
            perf stat -p "$ROUTER_PID" -x, -e cycles,instructions,task-clock -o "$raw-process.csv" &
            proc_pid=$!
        fi
        PERF_PIDS="$all_pid $proc_pid"
        sleep 0.2
    fi
    run_case "$router" udp64-up on -c "$SERVER" -u -l "$UDP_LEN" -b 0
    [[ -n $all_pid ]] || return 0
    # perf stat prints its counts on SIGINT (its own handler, so not ignored in the background).
    kill -INT $all_pid $proc_pid 2>/dev/null || true
    wait $all_pid $proc_pid 2>/dev/null || true
    PERF_PIDS=
    jq -c -n --arg router "$router" --argjson machine "$(perf_json "$raw-machine.csv")" \
        --argjson process "$([[ -n $proc_pid ]] && perf_json "$raw-process.csv" || echo null)" \
        --slurpfile records "$RECORDS" '
        ($records | map(select(.router == $router and .case == "udp64-up")) | last) as $r
        | {router: $router, case: "udp64-up", packets: ($r.pps * $r.seconds | round),
           machine: $machine, process: $process}' >>"$OUT/perf.jsonl"
}

# "on" is the veth defaults of a fresh lab (tx, tso, gso on; gro off); "off" turns them all off
# on the two hosts' interfaces that carry the traffic. The state is saved to raw/.
set_offloads() { # on|off
    if [[ $1 == off ]]; then
        lab exec lan ethtool -K eth0 tx off tso off gso off gro off >/dev/null
        lab exec net ethtool -K isp-a tx off tso off gso off gro off >/dev/null
    fi
    {
        echo "== lan eth0"
        lab exec lan ethtool -k eth0
        echo "== net isp-a"
        lab exec net ethtool -k isp-a
    } >"$OUT/raw/ethtool-$1.txt" 2>&1
}

measure() { # router
    local offloads src6 modes=(on off)
    # --quick: offloads on only, and one case per kind (see --help).
    ! $QUICK || modes=(on)
    lab exec lan ping -c 3 -i 0.2 -W 1 "$SERVER" >/dev/null || die "$1: no path from the LAN host to $SERVER"
    for offloads in "${modes[@]}"; do
        set_offloads "$offloads"
        run_case "$1" tcp1-up "$offloads" -c "$SERVER"
        run_case "$1" tcp1-down "$offloads" -c "$SERVER" -R
        $QUICK || run_case "$1" tcp4-up "$offloads" -c "$SERVER" -P 4
        run_case "$1" tcp4-down "$offloads" -c "$SERVER" -P 4 -R
        # Many streams, 64-byte packets, connection setup and IPv6: once is enough (offloads on).
        if [[ $offloads == on ]]; then
            run_case "$1" tcp16-down "$offloads" -c "$SERVER" -P 16 -R
            $QUICK || run_case "$1" tcp64-down "$offloads" -c "$SERVER" -P 64 -R
            run_udp64_perf "$1"
            run_cps "$1"
            if [[ $1 == floor* ]]; then
                echo "  $1: IPv6 cases skipped (the null forwarder has no NAT and no neighbour discovery)"
                continue
            fi
            ! $QUICK || continue
            src6=$(lan_address6)
            run_case "$1" tcp1-up-v6 "$offloads" -c "$SERVER6" -B "$src6"
            run_case "$1" tcp1-down-v6 "$offloads" -c "$SERVER6" -B "$src6" -R
        fi
    done
}

# The LAN host's address in ISP A's LAN prefix (static with the kernel router, SLAAC from
# mhrouter's advertisements), once it answers: both routers send it out through ISP A.
lan_address6() {
    local i addr
    for ((i = 0; i < ROUTE_TIMEOUT_S * 2; i++)); do
        addr=$(lab exec lan ip -6 -o addr show dev eth0 scope global -tentative |
            awk '{sub(/\/.*/, "", $4); print $4}' | grep -m1 "^${LAN_PREFIX6}" || true)
        if [[ -n $addr ]] && lab exec lan ping -6 -c 1 -W 1 -I "$addr" "$SERVER6" >/dev/null 2>&1; then
            echo "$addr"
            return 0
        fi
        sleep 0.5
    done
    die "no IPv6 path from the LAN host's ${LAN_PREFIX6}/64 address to $SERVER6"
}

# --- the two labs ------------------------------------------------------------------------------

lab_up() {
    LAB_OURS=true
    lab up >/dev/null
}

lab_down() {
    lab down >/dev/null
    LAB_OURS=false
}

kernel_router() {
    lab exec rtr ip addr add 192.168.0.1/24 dev br-lan
    lab exec rtr ip addr add 172.16.1.1/30 dev wan-a
    lab exec rtr ip addr add 172.17.3.1/30 dev wan-b
    lab exec rtr sysctl -qw net.ipv4.ip_forward=1
    lab exec rtr ip route add default via 172.16.1.2 dev wan-a
    # IPv6 as mhrouter routes it, without translation: the LAN's ISP A /64 out through ISP A.
    # The lab creates the router's namespace with IPv6 off; the kernel router needs it on.
    lab exec rtr sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.br-lan.disable_ipv6=0 \
        net.ipv6.conf.wan-a.disable_ipv6=0 net.ipv6.conf.all.forwarding=1
    lab exec rtr ip -6 addr add "${LAN_PREFIX6}:1/64" dev br-lan nodad
    lab exec rtr ip -6 addr add 2001:db8:ffa::1/64 dev wan-a nodad
    lab exec rtr ip -6 route add default via 2001:db8:ffa::2 dev wan-a
    lab exec lan ip -6 addr add "${LAN_PREFIX6}:100/64" dev eth0 nodad
    lab exec lan ip -6 route replace default via "${LAN_PREFIX6}:1" dev eth0
    lab exec rtr nft -f - <<'EOF'
table ip bench-nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan-a" masquerade
    }
}
EOF
}

mhrouter_router() { # [lab.sh router start arguments]
    local i
    lab router start "$@" >/dev/null
    ROUTER_PID=$(head -n1 "$STATE/router.pid")
    [[ $(cat "/proc/$ROUTER_PID/comm" 2>/dev/null) == @(mhrouter|callgrind-amd64) ]] ||
        die "pid $ROUTER_PID from $STATE/router.pid is not mhrouter"
    # The route via isp-a at distance 10 is tracked end to end: measure once it is installed.
    for ((i = 0; i < ROUTE_TIMEOUT_S * 2; i++)); do
        if lab ctl show route | grep -qE '^S\*.*\[10/0\] via 172\.16\.1\.2, isp-a'; then
            return 0
        fi
        sleep 0.5
    done
    lab ctl show route >&2 || true
    die "mhrouter: no default via isp-a [10] after ${ROUTE_TIMEOUT_S}s"
}

# --- the I/O floor: the null forwarder ---------------------------------------------------------

# The gateway MAC the LAN host is given for 192.168.0.1: mhrouter's own default for that address.
FLOOR_LAN_MAC=02:6d:68:a8:00:01

floor_name() { # mmsg|ring: the router name in the records
    if [[ $1 == mmsg ]]; then echo floor; else echo "floor-$1"; fi
}

mac_of() { # role interface
    lab exec "$1" ip -j link show dev "$2" | jq -r '.[0].address'
}

# bench/null_forward.rs in <P>rtr between the TAP mhr-lan on br-lan and wan-a, as mhrouter sits.
# It answers no ARP and translates nothing, so the hosts get static neighbours and the far side
# routes the LAN back toward wan-a (only inside the lab's namespaces).
floor_router() { # mmsg|ring
    local wan_mac i
    wan_mac=$(mac_of rtr wan-a)
    lab exec lan ip neigh replace 192.168.0.1 lladdr "$FLOOR_LAN_MAC" dev eth0 nud permanent
    lab exec ispa ip neigh replace 172.16.1.1 lladdr "$wan_mac" dev rtr0 nud permanent
    lab exec ispa ip route replace 192.168.0.0/24 via 172.16.1.1 dev rtr0
    lab exec net ip route replace 192.168.0.0/24 via 10.255.1.1 dev isp-a
    # lab.sh exec execs: $! is the forwarder itself.
    "$LAB" --prefix "$PREFIX" exec rtr "$NULL_BIN" --tap mhr-lan --bridge br-lan --uplink wan-a \
        --lan-mac "$FLOOR_LAN_MAC" --host-mac "$(mac_of lan eth0)" --peer-mac "$(mac_of ispa rtr0)" \
        --rx "$1" 2>"$OUT/raw/$(floor_name "$1").log" &
    FLOOR_PID=$!
    ROUTER_PID=$FLOOR_PID
    for ((i = 0; i < 20; i++)); do
        if lab exec lan ping -c 1 -W 1 "$SERVER" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$FLOOR_PID" 2>/dev/null || break
        sleep 0.5
    done
    cat "$OUT/raw/$(floor_name "$1").log" >&2
    die "null forwarder (rx $1): no path from the LAN host to $SERVER"
}

# Stops the forwarder, which must still be running, and shows its totals; fails the bench unless
# frames went both ways (the floor's smoke check).
floor_stop() { # mmsg|ring
    local log
    log=$OUT/raw/$(floor_name "$1").log
    kill -0 "$FLOOR_PID" 2>/dev/null || die "null forwarder (rx $1) exited during the run: $(cat "$log")"
    kill -TERM "$FLOOR_PID"
    wait "$FLOOR_PID" || die "null forwarder (rx $1) failed: $(cat "$log")"
    FLOOR_PID=
    ROUTER_PID=0
    echo "  $(tail -n1 "$log")"
    grep -qE ': [1-9][0-9]* frames to the uplink, [1-9][0-9]* to the LAN' "$log" ||
        die "null forwarder (rx $1) passed no traffic: $(cat "$log")"
}

# --rx-paths: recvmmsg against the ring, and mhrouter against both, interleaved in one lab (the
# floor's neighbours and routes stay; mhrouter uses the same MACs and ignores the routes). Case
# names carry the round (tcp1-down#2); the report takes medians over the rounds.
rx_paths() {
    local round rx name
    echo "bench: the floor (mmsg, ring) and mhrouter interleaved, $RX_ROUNDS rounds (lab $PREFIX)"
    lab_up
    for ((round = 1; round <= RX_ROUNDS; round++)); do
        for rx in mmsg ring mhrouter; do
            if [[ $rx == mhrouter ]]; then
                name=mhrouter
                mhrouter_router
            else
                name=$(floor_name "$rx")
                floor_router "$rx"
            fi
            run_case "$name" "tcp1-down#$round" on -c "$SERVER" -R
            run_case "$name" "tcp4-down#$round" on -c "$SERVER" -P 4 -R
            run_case "$name" "tcp16-down#$round" on -c "$SERVER" -P 16 -R
            if [[ $rx == mhrouter ]]; then
                lab router stop >/dev/null
                ROUTER_PID=0
            else
                floor_stop "$rx"
            fi
        done
    done
    lab_down
    # shellcheck disable=SC2016 # jq program: $names are jq's
    jq -s 'def r3: . * 1000 | round / 1000;
        def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
        map(. + {base: (.case | sub("#.*"; ""))})
        | group_by(.base)
        | map(. as $g | def of($r): $g | map(select(.router == $r));
              def stats($r): of($r) | {gbps: (map(.gbps) | median | r3),
                  process_s_per_gb: (map(.cpu_process_s / (.bytes / 1e9)) | median | r3),
                  path_s_per_gb: (map(.cpu_path_s / (.bytes / 1e9)) | median | r3),
                  retransmits: (map(.retransmits) | add), rounds: length};
              {case: $g[0].base, mmsg: stats("floor"), ring: stats("floor-ring"),
               mhrouter: stats("mhrouter")}
              | .ring_vs_mmsg_gbps = (.ring.gbps / .mmsg.gbps | r3)
              | .mhrouter_vs_floor_gbps = (.mhrouter.gbps / .mmsg.gbps | r3)
              | .ring_vs_mmsg_process_cpu = (.ring.process_s_per_gb / .mmsg.process_s_per_gb | r3))' \
        "$RECORDS" >"$OUT/rx_paths.json"
    {
        echo "# The floor with recvmmsg and with a TPACKET_V3 ring, and mhrouter ($(basename "$OUT"))"
        echo
        echo "\`$COMMAND\` — $(nproc) cores, kernel $(uname -r), iperf3 ${DURATION}s per run, load"
        echo "average at start $LOAD_START. Medians over $RX_ROUNDS interleaved rounds, offloads on;"
        echo "CPU seconds per GB of the process (forwarder or mhrouter) and of the whole path;"
        echo "retransmits summed. mhrouter/floor is against the floor with recvmmsg (goal >= 0.95)."
        echo
        echo "| case | floor mmsg Gbit/s | ring | mhrouter | ring/mmsg | mhrouter/floor | process CPU s/GB mmsg | ring | mhrouter | ring/mmsg | path CPU s/GB mmsg | ring | mhrouter | retransmits mmsg | ring | mhrouter |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        jq -r '.[] | "| \(.case) | \(.mmsg.gbps) | \(.ring.gbps) | \(.mhrouter.gbps) | \(.ring_vs_mmsg_gbps) | \(.mhrouter_vs_floor_gbps) | \(.mmsg.process_s_per_gb) | \(.ring.process_s_per_gb) | \(.mhrouter.process_s_per_gb) | \(.ring_vs_mmsg_process_cpu) | \(.mmsg.path_s_per_gb) | \(.ring.path_s_per_gb) | \(.mhrouter.path_s_per_gb) | \(.mmsg.retransmits) | \(.ring.retransmits) | \(.mhrouter.retransmits) |"' \
            "$OUT/rx_paths.json"
    } >"$OUT/rx_paths.md"
    echo
    cat "$OUT/rx_paths.md"
    echo
    echo "results: $OUT"
}

# --- NAT table size sweep (mhrouter only) ------------------------------------------------------

# Idle sessions go to this benchmarking range (RFC 2544), blackholed in PE_A: nothing answers.
NAT_FILL_NET=198.18.0.0/15
# Datagrams per second of the filler: what the router's LAN queue takes without dropping many on
# two shared cores (1 M sessions in ~10 s); what it drops is sent again.
NAT_FILL_RATE=100000
# Issue 16: TCP through a 1 M-session table at >= 0.9 of the smallest table's figure.
NAT_TARGET=0.9

# Sessions in the router's NAT table (all uplinks), from its own count.
nat_sessions() {
    lab ctl show uplinks --json | jq '[.uplinks[].nat_sessions // 0] | add'
}

# Sends the first n sessions of bench/fill_sessions.rs (those of a smaller fill are already
# there and are only refreshed) until the router holds >= 99 % of n, at most three passes; dies
# if it then holds less than 95 %.
fill_table() { # n
    local n=$1 try held=0
    for try in 1 2 3; do
        lab exec lan "$FILL_BIN" "$n" "$NAT_FILL_RATE" >"$OUT/raw/fill-$n-$try.json"
        sleep 0.5
        held=$(nat_sessions)
        echo "  fill $n sessions, pass $try: $(jq -r .seconds "$OUT/raw/fill-$n-$try.json") s; the router holds $held"
        ((held * 100 < n * 99)) || break
    done
    ((held * 100 >= n * 95)) ||
        die "NAT table did not fill: the router holds $held sessions, wanted at least 95 % of $n"
    NAT_HELD=$held
}

# One more lab: mhrouter with a table big enough for the largest size and UDP timeouts longer
# than the sweep, filled size by size (ascending) before each set of cases. Records go to
# nat_records.jsonl, case names carry the size (tcp1-up-nat100000).
nat_sweep() {
    local n max room config=$OUT/nat-sweep.toml main_records=$RECORDS
    max=$(tr , '\n' <<<"$NAT_SIZES" | sort -n | tail -n1)
    room=$((max + max / 2 + 4096))
    {
        cat "$REPO_DIR/scripts/lab.toml"
        printf '\n# bench/run.sh --nat-sweep: room for %s idle sessions from one host.\n' "$max"
        printf '[nat]\nmax_entries = %d\nmax_sessions_per_host = %d\n' "$room" "$room"
        printf 'udp = "1h"\nudp_unreplied = "1h"\n'
    } >"$config"
    echo "bench: NAT table size sweep, mhrouter (lab $PREFIX; sizes $NAT_SIZES)"
    lab_up
    lab exec ispa ip route add blackhole "$NAT_FILL_NET"
    mhrouter_router --config "$config"
    lab exec lan ping -c 3 -i 0.2 -W 1 "$SERVER" >/dev/null || die "nat sweep: no path from the LAN host to $SERVER"
    # Unrecorded warm-up, so the first size does not pay for a cold lab.
    lab exec lan iperf3 -c "$SERVER" -t 1 >/dev/null
    sleep 1
    RECORDS=$OUT/nat_records.jsonl
    : >"$RECORDS"
    : >"$OUT/nat_held.jsonl"
    for n in $(tr , '\n' <<<"$NAT_SIZES" | sort -n); do
        fill_table "$n"
        run_case mhrouter "tcp1-up-nat$n" on -c "$SERVER"
        run_case mhrouter "tcp1-down-nat$n" on -c "$SERVER" -R
        run_case mhrouter "udp64-up-nat$n" on -c "$SERVER" -u -l "$UDP_LEN" -b 0
        jq -c -n --argjson n "$n" --argjson before "$NAT_HELD" --argjson after "$(nat_sessions)" \
            '{sessions: $n, held_before: $before, held_after: $after}' >>"$OUT/nat_held.jsonl"
    done
    RECORDS=$main_records
    cp "$STATE/router.log" "$OUT/raw/router-nat-sweep.log" 2>/dev/null || true
    ROUTER_PID=0
    lab_down
}

# shellcheck disable=SC2016 # jq program: $names are jq's
NAT_JQ='
def r3: if . == null then null else . * 1000 | round / 1000 end;
def fig: if .kind | startswith("udp") then .pps else .gbps end;
map(. + {kind: (.case | sub("-nat[0-9]+$"; "")),
         sessions: (.case | capture("-nat(?<n>[0-9]+)$").n | tonumber)}) as $r
| ($r | map(.sessions) | min) as $n0
| ($r | map(select(.sessions == $n0) | {key: .kind, value: fig}) | from_entries) as $base
| [$r | group_by(.sessions)[] | . as $g
   | ($held | map(select(.sessions == $g[0].sessions))[0]) as $h
   | def at($k): $g | map(select(.kind == $k))[0];
     def ratio($k): (at($k) | fig) as $v
                    | if $v == null or ($base[$k] // 0) == 0 then null else $v / $base[$k] | r3 end;
     {sessions: $g[0].sessions, held_before: $h.held_before, held_after: $h.held_after,
      tcp1_up_gbps: (at("tcp1-up").gbps | r3), tcp1_up_ratio: ratio("tcp1-up"),
      tcp1_down_gbps: (at("tcp1-down").gbps | r3), tcp1_down_ratio: ratio("tcp1-down"),
      udp64_up_pps: (at("udp64-up").pps | if . then round else null end),
      udp64_up_ratio: ratio("udp64-up"),
      cpu_process_s_per_gb_up: (at("tcp1-up")
                                | if .bytes > 0 then .cpu_process_s / (.bytes / 1e9) | r3 else null end)}
   | .target_met = (if .sessions < 1000000 or .tcp1_up_ratio == null then null
                    else .tcp1_up_ratio >= $target and .tcp1_down_ratio >= $target end)]
'

# The sweep's table into results.json (nat_sweep) and results.md, nat_size.dat and, with
# gnuplot, nat_size.svg.
nat_report() {
    local table
    table=$(jq -s --slurpfile held "$OUT/nat_held.jsonl" --argjson target "$NAT_TARGET" "$NAT_JQ" \
        "$OUT/nat_records.jsonl")
    if [[ -s $OUT/results.json ]]; then
        jq --argjson t "$table" '. + {nat_sweep: $t}' "$OUT/results.json" >"$OUT/results.json.new"
        mv "$OUT/results.json.new" "$OUT/results.json"
    else
        jq -n --argjson t "$table" --arg command "$COMMAND" --arg load "$LOAD_START" \
            '{meta: {command: $command, loadavg_start: $load}, nat_sweep: $t}' >"$OUT/results.json"
    fi
    {
        echo
        echo "## NAT table size (mhrouter; \`$COMMAND\`)"
        echo
        echo "The table is filled with idle UDP sessions (bench/fill_sessions.rs) before each size;"
        echo "held = the router's session count before and after the size's runs. Ratios are to the"
        echo "smallest size; target: TCP at 1 M sessions >= $NAT_TARGET of it."
        echo
        # shellcheck disable=SC2016
        jq -r "$JQ_CELL"'
            "| sessions | held before / after | tcp1-up Gbit/s | ratio | tcp1-down Gbit/s | ratio | udp64-up pps | ratio | process CPU s/GB up | met |",
            "|---|---|---|---|---|---|---|---|---|---|",
            (.[] | "| \(.sessions) | \(.held_before) / \(.held_after) | \(.tcp1_up_gbps | cell) | \(.tcp1_up_ratio | cell) | \(.tcp1_down_gbps | cell) | \(.tcp1_down_ratio | cell) | \(.udp64_up_pps | cell) | \(.udp64_up_ratio | cell) | \(.cpu_process_s_per_gb_up | cell) | \(.target_met | cell) |")' \
            <<<"$table"
    } >>"$OUT/results.md"
    jq -r '.[] | [.sessions, .tcp1_up_gbps, .tcp1_down_gbps, (.udp64_up_pps // 0) / 1000] | @tsv' \
        <<<"$table" >"$OUT/nat_size.dat"
    command -v gnuplot >/dev/null || return 0
    gnuplot <<EOF
set terminal svg size 640,400
set output "$OUT/nat_size.svg"
set title "mhrouter throughput vs NAT table size ($(basename "$OUT"))"
set xlabel "idle NAT sessions"
set ylabel "TCP, 1 stream: Gbit/s"
set y2label "UDP 64 B: kpps"
set logscale x 10
set xrange [500:2000000]
set xtics ("1 k" 1000, "10 k" 10000, "100 k" 100000, "1 M" 1000000)
set yrange [0:*]
set y2range [0:*]
set ytics nomirror
set y2tics
set key bottom left
plot "$OUT/nat_size.dat" using 1:2 with linespoints title "tcp1-up", \\
     "$OUT/nat_size.dat" using 1:3 with linespoints title "tcp1-down", \\
     "$OUT/nat_size.dat" using 1:4 axes x1y2 with linespoints title "udp64-up (kpps)"
EOF
}

# CPU per forwarded packet of the 64-byte UDP case from perf.jsonl: results.json (cpu_per_packet)
# and results.md.
perf_report() {
    local table
    [[ -s $OUT/perf.jsonl ]] || return 0
    # shellcheck disable=SC2016 # jq program: $names are jq's
    table=$(jq -s 'def per($x; $n): if $x == null or ($n // 0) == 0 then null
                                    else $x / $n | . * 10 | round / 10 end;
        map({router, packets,
             machine_cycles_per_packet: per(.machine.cycles; .packets),
             machine_instructions_per_packet: per(.machine.instructions; .packets),
             process_cycles_per_packet: per(.process.cycles; .packets),
             process_instructions_per_packet: per(.process.instructions; .packets),
             process_ns_per_packet: per(.process["task-clock"] | if . == null then null else . * 1e6 end;
                                        .packets)})' "$OUT/perf.jsonl")
    jq --argjson t "$table" '. + {cpu_per_packet: $t}' "$OUT/results.json" >"$OUT/results.json.new"
    mv "$OUT/results.json.new" "$OUT/results.json"
    {
        echo
        echo "udp64-up, perf stat per forwarded packet (machine = perf stat -a, the whole path;"
        echo "process = mhrouter, all threads; – = counter not readable here, e.g. no PMU in a VM):"
        echo
        echo "| router | packets | machine cycles/pkt | machine instr/pkt | process cycles/pkt | process instr/pkt | process ns/pkt (task-clock) |"
        echo "|---|---|---|---|---|---|---|"
        # shellcheck disable=SC2016
        jq -r '.[] | "| \(.router) | \(.packets) | \(.machine_cycles_per_packet // "–") | \(.machine_instructions_per_packet // "–") | \(.process_cycles_per_packet // "–") | \(.process_instructions_per_packet // "–") | \(.process_ns_per_packet // "–") |"' <<<"$table"
    } | tee -a "$OUT/results.md"
}

# --- instructions per packet: mhrouter under callgrind ------------------------------------------

# 64-byte UDP at a fixed rate that valgrind keeps up with (it runs the router's threads one at a
# time, ~50x slower): the count per packet is of a router that sees few packets per batch.
CALLGRIND_RATE=10M

# One more lab: mhrouter under `valgrind --tool=callgrind` (user-space instructions of every
# thread: a count, not a time, so a busy machine hardly moves it), 64-byte UDP up for DURATION seconds after an
# unrecorded second; instructions per packet the router forwarded (its own counter) go to
# callgrind.json and a line of results.md. The kernel's instructions would need a hardware PMU
# (perf stat, see perf.jsonl), so this figure stands alone: it tracks the router's own cost.
callgrind_udp64() {
    local wrapper=$OUT/raw/callgrind-mhrouter.sh dump=$OUT/raw/callgrind.out f0 f1 ir
    command -v valgrind >/dev/null || die "--callgrind needs valgrind"
    # The router (`mhrouter run`) under callgrind; `lab ctl`'s clients as they are.
    # shellcheck disable=SC2016 # "$1" and "$@" are the wrapper's
    printf '#!/bin/sh\n[ "$1" = run ] || exec %s "$@"\nexec valgrind --tool=callgrind --callgrind-out-file=%s %s "$@"\n' \
        "$MHROUTER_BIN" "$dump" "$MHROUTER_BIN" >"$wrapper"
    chmod +x "$wrapper"
    echo "bench: mhrouter under callgrind (lab $PREFIX)"
    lab_up
    MHROUTER_BIN=$wrapper mhrouter_router
    lab exec lan iperf3 -c "$SERVER" -t 1 -u -l "$UDP_LEN" -b "$CALLGRIND_RATE" >/dev/null
    callgrind_control -z "$ROUTER_PID" >/dev/null 2>&1
    f0=$(lab ctl show counters --json | jq .forwarded)
    lab exec lan iperf3 -c "$SERVER" -t "$DURATION" -u -l "$UDP_LEN" -b "$CALLGRIND_RATE" -J \
        >"$OUT/raw/callgrind-udp64.json"
    f1=$(lab ctl show counters --json | jq .forwarded)
    callgrind_control -d "$ROUTER_PID" >/dev/null 2>&1
    # The dump is written asynchronously, as <dump>.1.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        ir=$(awk '$1 == "summary:" {print $2}' "$dump.1" 2>/dev/null)
        [[ -z $ir ]] || break
        sleep 0.5
    done
    [[ -n $ir ]] || die "callgrind wrote no dump to $dump.1"
    jq -n --argjson ir "$ir" --argjson forwarded $((f1 - f0)) --arg rate "$CALLGRIND_RATE" '
        {case: "udp64-up", rate: $rate, instructions: $ir, forwarded: $forwarded,
         instructions_per_packet: (if $forwarded > 0 then $ir / $forwarded | round else null end)}' \
        >"$OUT/callgrind.json"
    ROUTER_PID=0
    lab_down
    jq -r '"mhrouter under callgrind, udp64-up at \(.rate)bit/s: \(.instructions_per_packet) user-space instructions per forwarded packet (\(.instructions) over \(.forwarded) packets, all threads)."' \
        "$OUT/callgrind.json" | tee -a "$OUT/results.md"
}

# --- report ------------------------------------------------------------------------------------

# One row per (case, offloads): kernel and mhrouter side by side, and the ratios.
# shellcheck disable=SC2016 # jq programs: $names are jq's
TABLE_JQ='
def r3: if . == null then null else . * 1000 | round / 1000 end;
def ratio($a; $b): if $a == null or $b == null or $b == 0 then null else $a / $b | r3 end;
def per_gb(f): if . == null or (.bytes // 0) == 0 or f == null then null else f / (.bytes / 1e9) | r3 end;
def per_mpkt(f): if . == null or .pps == null or f == null then null
                 else f / (.pps * .seconds / 1e6) | r3 end;
group_by(.case + " " + .offloads)
| map((map(select(.router == "kernel"))[0]) as $k
      | (map(select(.router == "mhrouter"))[0]) as $m
      | {case: .[0].case, offloads: .[0].offloads,
         kernel_gbps: ($k.gbps | r3), mhrouter_gbps: ($m.gbps | r3),
         floor_gbps: (map(select(.router == "floor"))[0].gbps | r3),
         ratio_gbps: ratio($m.gbps; $k.gbps),
         kernel_pps: ($k.pps | if . then round else null end),
         mhrouter_pps: ($m.pps | if . then round else null end),
         ratio_pps: ratio($m.pps; $k.pps),
         kernel_retransmits: $k.retransmits, mhrouter_retransmits: $m.retransmits,
         kernel_cps: ($k.cps | if . then round else null end),
         mhrouter_cps: ($m.cps | if . then round else null end),
         ratio_cps: ratio($m.cps; $k.cps),
         cpu_s_per_gb: {
           kernel_system: ($k | per_gb(.cpu_system_s)),
           mhrouter_process: ($m | per_gb(.cpu_process_s)),
           mhrouter_system: ($m | per_gb(.cpu_system_s)),
           kernel_path: ($k | per_gb(.cpu_path_s)),
           mhrouter_path: ($m | per_gb(.cpu_path_s))},
         cpu_s_per_mpkt: (if $k.pps == null then null else {
           kernel_path: ($k | per_mpkt(.cpu_path_s)),
           mhrouter_path: ($m | per_mpkt(.cpu_path_s)),
           mhrouter_process: ($m | per_mpkt(.cpu_process_s))} end)}
      | .ratio_cpu_path = ratio(.cpu_s_per_gb.mhrouter_path; .cpu_s_per_gb.kernel_path)
      | .target = (if .case | startswith("tcp1-") then
                     (if .offloads == "on" then $on else $off end) else null end)
      | .target_met = (if .target == null or .ratio_gbps == null then null
                       else .ratio_gbps >= .target end))
| sort_by(.offloads != "on", .case)
'

# A table cell in the markdown reports: – for no figure, yes / **no** for a goal.
JQ_CELL='def cell: if . == null then "–" elif . == true then "yes" elif . == false then "**no**"
          else tostring end;'

# shellcheck disable=SC2016
MD_JQ=$JQ_CELL'
"| case | offloads | kernel Gbit/s | mhrouter Gbit/s | ratio | kernel pps/cps | mhrouter pps/cps | ratio pps/cps | retransmits kernel | mhrouter | target | met | CPU s/GB path kernel | path mhrouter | path ratio | mhrouter process | mhrouter system | kernel system |",
"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
(.[] | .cpu_s_per_gb as $c
 | "| \(.case) | \(.offloads) | \(.kernel_gbps | cell) | \(.mhrouter_gbps | cell) | \(.ratio_gbps | cell) | \(.kernel_pps // .kernel_cps | cell) | \(.mhrouter_pps // .mhrouter_cps | cell) | \(.ratio_pps // .ratio_cps | cell) | \(.kernel_retransmits | cell) | \(.mhrouter_retransmits | cell) | \(if .target then "≥ \(.target)" else "–" end) | \(.target_met | cell) | \($c.kernel_path | cell) | \($c.mhrouter_path | cell) | \(.ratio_cpu_path | cell) | \($c.mhrouter_process | cell) | \($c.mhrouter_system | cell) | \($c.kernel_system | cell) |"),
(.[] | select(.cpu_s_per_mpkt != null) | .cpu_s_per_mpkt as $p
 | "", "\(.case): CPU seconds per million packets: path kernel \($p.kernel_path | cell), path mhrouter \($p.mhrouter_path | cell), mhrouter process \($p.mhrouter_process | cell).")
'

# Throughput against the number of download streams (offloads on), both routers and the I/O floor
# (recvmmsg; NaN when it did not run): flows.dat and, with gnuplot, flows.svg.
plot_flows() { # table-json
    jq -r '.[] | select(.offloads == "on" and (.case | test("^tcp[0-9]+-down$")))
        | [(.case | ltrimstr("tcp") | rtrimstr("-down") | tonumber), .kernel_gbps, .mhrouter_gbps,
           (.floor_gbps // "NaN")]
        | @tsv' <<<"$1" | sort -n >"$OUT/flows.dat"
    command -v gnuplot >/dev/null || return 0
    gnuplot <<EOF
set terminal svg size 640,400
set output "$OUT/flows.svg"
set title "TCP download through the router, offloads on ($(basename "$OUT"))"
set xlabel "streams (iperf3 -P)"
set ylabel "Gbit/s"
set logscale x 2
set xtics (1, 4, 16, 64)
set yrange [0:*]
set key bottom right
plot "$OUT/flows.dat" using 1:2 with linespoints title "kernel + nft masquerade", \\
     "$OUT/flows.dat" using 1:3 with linespoints title "mhrouter", \\
     "$OUT/flows.dat" using 1:4 with linespoints title "I/O floor (null forwarder)"
EOF
}

report() {
    local table meta
    table=$(jq -s --argjson on "$TARGET_ON" --argjson off "$TARGET_OFF" "$TABLE_JQ" "$RECORDS")
    meta=$(jq -n --arg cores "$(nproc)" --arg kernel "$(uname -r)" \
        --arg iperf3 "$(iperf3 --version | head -n1)" --arg load "$LOAD_START" \
        --arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" --arg others "$OTHER_LABS" \
        --argjson duration "$DURATION" --arg command "$COMMAND" --arg hz "$HZ" \
        '{command: $command, cores: ($cores | tonumber), kernel: $kernel, iperf3: $iperf3,
          iperf3_seconds: $duration, clk_tck: ($hz | tonumber), loadavg_start: $load,
          loadavg_end: $load_end, other_lab_namespaces: $others}')
    jq -n --argjson meta "$meta" --argjson table "$table" --slurpfile records "$RECORDS" \
        '{meta: $meta, table: $table, records: $records}' >"$OUT/results.json"
    {
        echo "# mhrouter vs kernel forwarding ($(basename "$OUT"))"
        echo
        echo "\`$COMMAND\` — $(nproc) cores, kernel $(uname -r), iperf3 ${DURATION}s per run," \
            "load average at start $LOAD_START, other labs running: ${OTHER_LABS:-none}."
        echo "Ratios are mhrouter/kernel (throughput: higher is better; CPU: lower is better)."
        echo "CPU seconds per GB received: path = whole machine minus other users' processes"
        echo "(like for like); process = the mhrouter process; system = path minus iperf3 (a lower"
        echo "bound for the kernel, whose forwarding is charged to iperf3). See README.md (CPU seconds per GB)."
        echo
        jq -r "$MD_JQ" <<<"$table"
    } >"$OUT/results.md"
    plot_flows "$table"
    echo
    cat "$OUT/results.md"
    echo
    echo "results: $OUT"
}

# The floor table: kernel / floor (each receive path) / mhrouter per IPv4 case, mhrouter/kernel,
# mhrouter/floor (goal >= $goal) and ring/mmsg; CPU seconds per GB (per million packets for UDP):
# the forwarder's or mhrouter's process, and the whole path.
# shellcheck disable=SC2016 # jq program: $names are jq's
FLOOR_JQ='
def r3: if . == null then null else . * 1000 | round / 1000 end;
def ratio($a; $b): if $a == null or $b == null or $b == 0 then null else $a / $b | r3 end;
def fig: if . == null then null else .cps // .pps // .gbps end;
def cpu(f): if . == null or f == null then null
            elif .pps != null then f / (.pps * .seconds / 1e6) | r3
            elif (.bytes // 0) > 0 then f / (.bytes / 1e9) | r3 else null end;
group_by(.case + " " + .offloads)
| map(select(any(.[]; .router | startswith("floor")))
      | def by($r): map(select(.router == $r))[0];
        by("kernel") as $k | by("floor") as $f | by("floor-ring") as $g | by("mhrouter") as $m
      | {case: .[0].case, offloads: .[0].offloads,
         unit: (if $k.cps != null then "cps" elif $k.pps != null then "pps" else "Gbit/s" end),
         kernel: ($k | fig | r3), floor: ($f | fig | r3), floor_ring: ($g | fig | r3),
         mhrouter: ($m | fig | r3),
         mhrouter_vs_kernel: ratio($m | fig; $k | fig),
         mhrouter_vs_floor: ratio($m | fig; $f | fig),
         ring_vs_mmsg: ratio($g | fig; $f | fig),
         retransmits: {kernel: $k.retransmits, floor: $f.retransmits,
                       floor_ring: $g.retransmits, mhrouter: $m.retransmits},
         cpu_process: {floor: ($f | cpu(.cpu_process_s)), floor_ring: ($g | cpu(.cpu_process_s)),
                       mhrouter: ($m | cpu(.cpu_process_s))},
         cpu_path: {kernel: ($k | cpu(.cpu_path_s)), floor: ($f | cpu(.cpu_path_s)),
                    floor_ring: ($g | cpu(.cpu_path_s)), mhrouter: ($m | cpu(.cpu_path_s))}}
      | .goal_met = (if .mhrouter_vs_floor == null then null else .mhrouter_vs_floor >= $goal end))
| sort_by(.offloads != "on", .case)
'

# The floor section of results.json (floor) and results.md, when the floor ran.
floor_report() {
    local table
    [[ $FLOOR_RX != none ]] || return 0
    table=$(jq -s --argjson goal 0.95 "$FLOOR_JQ" "$RECORDS")
    jq --argjson t "$table" '. + {floor: $t}' "$OUT/results.json" >"$OUT/results.json.new"
    mv "$OUT/results.json.new" "$OUT/results.json"
    {
        echo
        echo "## The I/O floor"
        echo
        echo "floor = bench/null_forward.rs: the router's own TAP/AF_PACKET I/O (batches, vnet headers,"
        echo "GRO toward the LAN, same workers) copying frames with only the MACs rewritten; mmsg reads"
        echo "the uplink with recvmmsg as mhrouter does, ring with a TPACKET_V3 ring. IPv4 only."
        echo "CPU: seconds per GB (per million packets for udp64) of the process and of the whole path."
        echo "Goal: mhrouter/floor >= 0.95."
        echo
        # shellcheck disable=SC2016
        jq -r "$JQ_CELL"'
            "| case | offloads | unit | kernel | floor mmsg | floor ring | mhrouter | mhrouter/kernel | mhrouter/floor | met | ring/mmsg | retransmits k / f / ring / m | CPU process floor / ring / mhrouter | CPU path kernel / floor / ring / mhrouter |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            (.[] | .retransmits as $r | .cpu_process as $p | .cpu_path as $c
             | "| \(.case) | \(.offloads) | \(.unit) | \(.kernel | cell) | \(.floor | cell) | \(.floor_ring | cell) | \(.mhrouter | cell) | \(.mhrouter_vs_kernel | cell) | \(.mhrouter_vs_floor | cell) | \(.goal_met | cell) | \(.ring_vs_mmsg | cell) | \($r.kernel | cell) / \($r.floor | cell) / \($r.floor_ring | cell) / \($r.mhrouter | cell) | \($p.floor | cell) / \($p.floor_ring | cell) / \($p.mhrouter | cell) | \($c.kernel | cell) / \($c.floor | cell) / \($c.floor_ring | cell) / \($c.mhrouter | cell) |")' \
            <<<"$table"
    } | tee -a "$OUT/results.md"
}

# --- main --------------------------------------------------------------------------------------

COMMAND="bench/run.sh"
if $QUICK; then
    COMMAND+=" --quick"
elif ((DURATION != 5)); then
    COMMAND+=" --time $DURATION"
fi
case $NAT_SWEEP in
also) COMMAND+=" --nat-sweep" ;;
only) COMMAND+=" --nat-sweep-only" ;;
esac
[[ $NAT_SIZES == 1000,100000,1000000 ]] || COMMAND+=" --nat-sizes $NAT_SIZES"
! $CALLGRIND || COMMAND+=" --callgrind"
[[ $PREFIX == hx-bn- ]] || COMMAND+=" --prefix $PREFIX"
[[ $FLOOR_RX == mmsg,ring ]] || [[ $FLOOR_RX == mmsg && $DURATION == 2 ]] || COMMAND+=" --floor $FLOOR_RX"
((RX_ROUNDS == 0)) || COMMAND+=" --rx-paths $RX_ROUNDS"

if lab status >/dev/null 2>&1 || ip netns list 2>/dev/null | grep -q "^${PREFIX}"; then
    die "a lab with prefix '$PREFIX' exists already: pick another --prefix (or lab.sh --prefix $PREFIX down if it is yours)"
fi
mkdir -p "$OUT/raw"
: >"$RECORDS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
OTHER_LABS=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -v "^${PREFIX}" | paste -sd' ' || true)
echo "bench: $(nproc) cores; load average $LOAD_START; other namespaces: ${OTHER_LABS:-none}"

echo "bench: building the release binary and the connection-rate tool"
(cd "$REPO_DIR" && cargo build --release --bin mhrouter --quiet)
export MHROUTER_BIN=${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/mhrouter
CPS_BIN=$(cd "$REPO_DIR" && cargo bench --bench cps --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.executable != null and .target.name == "cps") | .executable')
[[ -x $CPS_BIN ]] || die "could not build bench/cps.rs"
if { [[ $FLOOR_RX != none ]] && [[ $NAT_SWEEP != only ]]; } || ((RX_ROUNDS > 0)); then
    (cd "$REPO_DIR" && cargo build --release --example null_forward --quiet)
    NULL_BIN=${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/examples/null_forward
fi
if ((RX_ROUNDS > 0)); then
    rx_paths
    exit 0
fi
if [[ $NAT_SWEEP != none ]]; then
    (cd "$REPO_DIR" && cargo build --release --example fill_sessions --quiet)
    FILL_BIN=${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/examples/fill_sessions
fi

if [[ $NAT_SWEEP != only ]]; then
    echo "bench: kernel forwarding (lab $PREFIX)"
    lab_up
    kernel_router
    measure kernel
    lab_down

    for rx in ${FLOOR_RX//,/ }; do
        [[ $rx != none ]] || continue
        echo "bench: the I/O floor, null forwarder reading the uplink with $rx (lab $PREFIX)"
        lab_up
        floor_router "$rx"
        measure "$(floor_name "$rx")"
        floor_stop "$rx"
        lab_down
    done

    echo "bench: mhrouter (lab $PREFIX)"
    lab_up
    mhrouter_router
    measure mhrouter
    cp "$STATE/router.log" "$OUT/raw/router.log" 2>/dev/null || true
    ROUTER_PID=0
    lab_down

    report
    floor_report
    perf_report
fi
if [[ $NAT_SWEEP != none ]]; then
    nat_sweep
    nat_report
    echo
    sed -n '/^## NAT table size/,$p' "$OUT/results.md"
    echo
    echo "results: $OUT"
fi
if $CALLGRIND; then
    callgrind_udp64
fi
echo "bench: done in ${SECONDS} s"
