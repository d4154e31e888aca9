#!/usr/bin/env bash
# Failover drill (issue 4): in a lab of its own, measures the time from injecting a fault on
# uplink A to the first packet of an ongoing flow crossing the backup uplink B, and from healing
# to the first new flow crossing A again (failback), and prints both beside what SPEC 20 expects
# from the profile's timers. Every wait has a deadline; everything started is stopped by its pid.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_SH=$SCRIPT_DIR/lab.sh
SERVER_IP=172.18.0.6
ADDR_A=172.16.1.1 # uplink A's address: every NATed packet via A carries it (SPEC 11)
ADDR_B=172.17.3.1
# The ongoing flow is one UDP socket (fixed source port) to ONGOING_PORT; fresh flows each use
# the next source port of FRESH_PORTS, to FRESH_PORT. The destination port tells them apart at
# the central site whatever source port NAT picks.
ONGOING_SPORT=40000
ONGOING_PORT=9
FRESH_PORT=7
FRESH_PORTS=(10000 39999)
SEND_PERIOD_MS=10
READY_TIMEOUT_S=30
# Waits for a figure last the expected maximum plus this, so a broken router fails the drill
# instead of hanging it.
MARGIN_MS=10000
# Timer and scheduling jitter allowed on either side of an expected range.
SLACK_MS=50

usage() {
    cat <<'EOF'
Usage: drill.sh [--prefix P] [--profile seed|fast|FILE.toml] [--fault nexthop|link|upstream]
                [--keep]

Failover drill: brings up a lab with scripts/lab.sh (prefix P, default "dr-"; the lab must not
exist yet), starts the router with the profile's config (seed: scripts/lab.toml, fast:
scripts/lab-fast.toml, or any FILE.toml of the reference site), waits for the default route via
isp-a [10] and all tracks up, then from the LAN host sends, every 10 ms, one UDP datagram of an
ongoing flow (fixed source port, to 172.18.0.6:9) and one of a fresh flow (new source port each
time, to 172.18.0.6:7), captured as they arrive at the central site on its links isp-a / isp-b.

  failover  fault injected on A (lab.sh fault a KIND) -> first packet of the ongoing flow from
            172.17.3.1 (B); its NAT flow on A is removed when A is withdrawn (SPEC 21)
  failback  A healed (lab.sh heal a) -> first fresh flow from 172.16.1.1 (A): new flows use the
            preferred uplink again while the ongoing flow stays on B (SPEC 22), which is checked

Both are printed with the range SPEC 20 expects from the primary route's probe and track as
the profile file sets them (not as the router reports them)
(nexthop/upstream: delay_down + timeout + up to one interval; link: at once, on carrier loss;
failback: delay_up + up to one interval; plus the time lab.sh took to apply the change), and
with the router's log lines from the fault on.

  --prefix P     lab prefix ([a-z0-9-], at most 8 characters; default dr-)
  --profile X    seed (default), fast, or a router config file
  --fault KIND   nexthop (default), link or upstream
  --keep         leave the lab, the router and the captures in place for inspection

Exit status: 0 both figures measured and within the expected ranges, 1 error or a figure not
measured in time, 2 usage, 3 measured but outside an expected range.
Needs root, python3 and tcpdump. Seed profile: about 1 minute; fast: about 15 s.
EOF
}

die() {
    echo "drill: $*" >&2
    exit 1
}

note() {
    echo "drill: $*" >&2
}

usage_error() {
    echo "drill: $*" >&2
    usage >&2
    exit 2
}

lab() {
    "$LAB_SH" --prefix "$PREFIX" "$@"
}

now_us() {
    echo "${EPOCHREALTIME/./}"
}

# Seconds (decimal string) from microseconds, for printing and awk.
us_to_s() {
    printf '%d.%06d' $(($1 / 1000000)) $(($1 % 1000000))
}

# --- JSON views and the capture, read by small python/awk filters ------------------------------

# The primary default route (installed, lowest distance; from the router's JSON views) with its
# track, probe and timers (from the profile file), or readiness facts.
read -r -d '' PY_VIEWS <<'EOF' || true
import json, sys

what, route_f, tracks_f, probes_f = sys.argv[1:5]
route = json.load(open(route_f))
tracks = json.load(open(tracks_f))["tracks"]
probes = json.load(open(probes_f))["probes"]
default = sorted(
    (e for e in route["routes"] if e["kind"] == "static" and e["prefix"] == "0.0.0.0/0"
     and e["installed"]),
    key=lambda e: e["distance"])
if what == "state":
    # "UPLINK DISTANCE TRACKS_UP TRACKS_PENDING TRACK_COUNT"
    top = default[0] if default else {"uplink": "-", "distance": -1}
    up = sum(1 for t in tracks if t["state"] == "up")
    pending = sum(1 for t in tracks if t["pending"])
    print(top["uplink"], top["distance"], up, pending, len(tracks))
elif what == "primary":
    # "ROUTE DISTANCE TRACK PROBE INTERVAL_MS TIMEOUT_MS DOWN_MS UP_MS". Which route is primary
    # comes from the router; its timers from the profile file (with the README's defaults), so
    # a timer the router mis-parsed cannot check out against itself.
    import re, tomllib

    def ms(v):
        if isinstance(v, int):
            return v * 1000
        m = re.fullmatch(r"(\d+)(ms|s|m|h)", v)
        if not m:
            sys.exit(f"profile: '{v}' is not a duration")
        return int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60000, "h": 3600000}[m.group(2)]

    if not default:
        sys.exit("no installed default route")
    top = default[0]
    cfg = tomllib.load(open(sys.argv[5], "rb"))
    by_name = lambda kind, name: next((x for x in cfg.get(kind, []) if x["name"] == name), None)
    route_cfg = by_name("route", top["name"])
    if route_cfg is None or "track" not in route_cfg:
        sys.exit(f"the primary default route {top['name']} has no track in the profile")
    track = by_name("track", route_cfg["track"])
    if track is None or "probe" not in track:
        sys.exit(f"track {route_cfg['track']} does not follow one probe")
    probe = by_name("probe", track["probe"])
    if probe is None:
        sys.exit(f"probe {track['probe']} not found in the profile")
    interval = ms(probe.get("interval", "5s"))
    timeout = ms(probe.get("timeout", "1s")) if "timeout" in probe else min(1000, interval)
    down = ms(track["delay_down"]) if "delay_down" in track else 3 * interval
    up = ms(track["delay_up"]) if "delay_up" in track else 2 * down
    print(top["name"], top["distance"], track["name"], probe["name"], interval, timeout, down, up)
elif what == "track":
    # "STATE PENDING" of the track named in argv[5]
    t = next(t for t in tracks if t["name"] == sys.argv[5])
    print(t["state"], "pending" if t["pending"] else "settled")
EOF

# The LAN host's traffic: every period, one datagram of the ongoing flow and one fresh flow.
# Unconnected sockets, so ICMP errors never stop the sender.
read -r -d '' PY_SENDER <<'EOF' || true
import socket, sys, time

dst, ongoing_sport, ongoing_port, fresh_port, lo, hi, period_ms = sys.argv[1:8]
lo, hi, period = int(lo), int(hi), int(period_ms) / 1000
ongoing = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ongoing.bind(("0.0.0.0", int(ongoing_sport)))
port, seq, deadline = lo, 0, time.monotonic()
while True:
    payload = b"drill %d" % seq
    try:
        ongoing.sendto(payload, (dst, int(ongoing_port)))
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("0.0.0.0", port))
            s.sendto(payload, (dst, int(fresh_port)))
        except OSError:
            pass
    port = lo if port >= hi else port + 1
    seq += 1
    deadline += period
    time.sleep(max(0.0, deadline - time.monotonic()))
EOF

# Router log lines from the fault on, each with its time relative to the fault.
read -r -d '' PY_LOG <<'EOF' || true
import datetime, re, sys

log_f, t0, skip = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
stamp = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")
for n, line in enumerate(open(log_f, errors="replace")):
    if n < skip:
        continue
    m = stamp.match(line)
    if m:
        t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc)
        print(f"  {t.timestamp() - t0:+9.3f} s  {line.rstrip()}")
    else:
        print(f"  {'':>11}  {line.rstrip()}")
EOF

views() { # what [args...]
    local dir=$WORK/views
    mkdir -p "$dir"
    lab ctl show route --json >"$dir/route.json" 2>/dev/null || return 1
    lab ctl show tracks --json >"$dir/tracks.json" 2>/dev/null || return 1
    lab ctl show probes --json >"$dir/probes.json" 2>/dev/null || return 1
    python3 -c "$PY_VIEWS" "$1" "$dir/route.json" "$dir/tracks.json" "$dir/probes.json" "${@:2}"
}

# tcpdump -tt -n lines: "TS IP SRC.SPORT > DST.DPORT: UDP, length N".
# Prints the time (µs) of the first packet after T0_US from SRC to DPORT.
first_packet() { # capture t0_us src dport
    awk -v t0="$(us_to_s "$2")" -v src="$3" -v dport="$4" '
        $2 == "IP" && $1 + 0 > t0 + 0 {
            s = $3; sub(/\.[0-9]+$/, "", s)
            d = $5; sub(/:$/, "", d); sub(/^.*\./, "", d)
            if (s == src && d == dport) { sub(/\./, "", $1); print $1; exit }
        }' "$1"
}

# Number of packets after T0_US from SRC to DPORT, and the time (µs) of the last one.
count_packets() { # capture t0_us src dport
    awk -v t0="$(us_to_s "$2")" -v src="$3" -v dport="$4" '
        $2 == "IP" && $1 + 0 > t0 + 0 {
            s = $3; sub(/\.[0-9]+$/, "", s)
            d = $5; sub(/:$/, "", d); sub(/^.*\./, "", d)
            if (s == src && d == dport) { n++; last = $1 }
        }
        END { sub(/\./, "", last); print n + 0, (n ? last : 0) }' "$1"
}

# The last packet at or before T_US from SRC to DPORT (µs), or 0.
last_packet_before() { # capture t_us src dport
    awk -v t="$(us_to_s "$2")" -v src="$3" -v dport="$4" '
        $2 == "IP" && $1 + 0 <= t + 0 {
            s = $3; sub(/\.[0-9]+$/, "", s)
            d = $5; sub(/:$/, "", d); sub(/^.*\./, "", d)
            if (s == src && d == dport) last = $1
        }
        END { if (last == "") print 0; else { sub(/\./, "", last); print last } }' "$1"
}

# --- processes and clean-up --------------------------------------------------------------------

PIDS=()
LIFETIME_S=0
LAB_OWNED=0
KEEP=0
WORK=

# Starts CMD in <P>NS in the background, output to LOG, and records its pid. A background
# external command is exec'd by its subshell, and `lab.sh exec` and `ip netns exec` exec too, so
# $! is the pid of `timeout` itself, which passes SIGTERM on to CMD. LIFETIME_S bounds CMD even
# if the drill is killed before its clean-up runs.
start_bg() { # log ns cmd...
    local log=$1 role=$2
    shift 2
    "$LAB_SH" --prefix "$PREFIX" exec "$role" timeout -k 2 "$LIFETIME_S" "$@" \
        </dev/null >"$log" 2>&1 &
    PIDS+=("$!")
}

stop_bg() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_bg
    if ((LAB_OWNED)); then
        if ((KEEP)); then
            note "kept: lab '$PREFIX' with its router, captures in $WORK" \
                "(tear down: $LAB_SH --prefix $PREFIX down; rm -r $WORK)"
        else
            lab router stop >/dev/null 2>&1 || true
            lab down >/dev/null 2>&1 || note "lab down failed: run $LAB_SH --prefix $PREFIX down"
        fi
    fi
    if ((!KEEP)) && [[ -n $WORK ]]; then
        rm -rf -- "$WORK"
    fi
    exit "$rc"
}

# Polls CMD every 50 ms until it succeeds; false after TIMEOUT_MS.
wait_for() { # timeout_ms cmd...
    local deadline=$(($(now_us) + $1 * 1000))
    shift
    while (($(now_us) < deadline)); do
        "$@" && return 0
        sleep 0.05
    done
    return 1
}

# --- steps -------------------------------------------------------------------------------------

is_ready() {
    local uplink distance up pending count
    read -r uplink distance up pending count < <(views state) || return 1
    [[ $uplink == isp-a && $distance == 10 && $up == "$count" && $pending == 0 ]]
}

track_is() { # state
    local state pending
    read -r state pending < <(views track "$PRIMARY_TRACK") || return 1
    [[ $state == "$1" && $pending == settled ]]
}

# Sets FOUND_US to the first packet after T0_US from SRC to DPORT on CAPTURE.
seen() { # capture t0_us src dport
    FOUND_US=$(first_packet "$@")
    [[ -n $FOUND_US ]]
}

start_capture() { # interface
    local out=$WORK/cap-$1.txt
    start_bg "$out" net tcpdump -i "$1" -tt -n -l --immediate-mode -Q in \
        "udp and dst host $SERVER_IP and (dst port $ONGOING_PORT or dst port $FRESH_PORT)"
    # tcpdump says so on stderr (in the same file) once the socket is open.
    wait_for 5000 grep -q "listening on $1" "$out" || die "tcpdump on $1 did not start: $(cat "$out")"
}

fmt_ms() { # µs -> "12.345 s"
    printf '%d.%03d s' $(($1 / 1000000)) $(($1 % 1000000 / 1000))
}

# Prints "FIGURE (expected LO–HI) VERDICT" and returns 1 when outside.
verdict() { # measured_us lo_ms hi_ms
    local lo=$(($2 * 1000)) hi=$(($3 * 1000))
    printf '%s  (expected %s – %s)' "$(fmt_ms "$1")" "$(fmt_ms "$lo")" "$(fmt_ms "$hi")"
    if (($1 >= lo && $1 <= hi)); then
        echo "  ok"
    else
        echo "  OUTSIDE"
        return 1
    fi
}

main() {
    PREFIX=dr-
    local profile=seed fault=nexthop config
    while (($#)); do
        case $1 in
        --prefix)
            (($# >= 2)) || usage_error "--prefix needs a value"
            PREFIX=$2
            shift 2
            ;;
        --profile)
            (($# >= 2)) || usage_error "--profile needs a value"
            profile=$2
            shift 2
            ;;
        --fault)
            (($# >= 2)) || usage_error "--fault needs a value"
            fault=$2
            shift 2
            ;;
        --keep)
            KEEP=1
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) usage_error "unexpected argument '$1'" ;;
        esac
    done
    [[ $PREFIX =~ ^[a-z0-9-]{1,8}$ ]] || usage_error "prefix '$PREFIX': 1 to 8 of [a-z0-9-]"
    case $profile in
    seed) config=$SCRIPT_DIR/lab.toml ;;
    fast) config=$SCRIPT_DIR/lab-fast.toml ;;
    *) config=$profile ;;
    esac
    [[ -r $config ]] || usage_error "cannot read profile config '$config'"
    case $fault in
    nexthop | link | upstream) ;;
    *) usage_error "fault must be nexthop, link or upstream, not '$fault'" ;;
    esac
    [[ $EUID -eq 0 ]] || die "must run as root (network namespaces)"
    command -v python3 >/dev/null || die "needs python3"
    command -v tcpdump >/dev/null || die "needs tcpdump"
    # Not ours to tear down: a lab left by someone else (or by --keep) under this prefix.
    if lab status >/dev/null 2>&1; then
        die "lab '$PREFIX' exists already: use another --prefix or run $LAB_SH --prefix $PREFIX down"
    fi

    WORK=$(mktemp -d /tmp/drill.XXXXXX)
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    LAB_OWNED=1
    lab up >/dev/null
    lab router start --config "$config" >/dev/null
    note "lab '$PREFIX' up, router started with $config"
    wait_for $((READY_TIMEOUT_S * 1000)) is_ready ||
        die "no default via isp-a [10] with all tracks up within ${READY_TIMEOUT_S}s:" \
            "$(lab ctl show route 2>&1)"
    local route distance interval timeout down_ms up_ms
    read -r route distance PRIMARY_TRACK PROBE interval timeout down_ms up_ms \
        < <(views primary "$config") || die "cannot read the primary route's timers"
    local settle_ms=$((down_ms + timeout + interval + MARGIN_MS))
    # Captures and sender outlive no drill: steady state, failover, settling, failback, margins.
    LIFETIME_S=$(((2 * down_ms + 3 * timeout + 3 * interval + up_ms + 3 * MARGIN_MS) / 1000 + 10))

    # The central site keeps quiet: no ICMP port-unreachable goes back through the NAT flows.
    lab exec net nft -f - <<EOF
table inet drill {
    chain input {
        type filter hook input priority 0;
        udp dport { $ONGOING_PORT, $FRESH_PORT } drop
    }
}
EOF
    start_capture isp-a
    start_capture isp-b
    start_bg "$WORK/sender.log" lan python3 -c "$PY_SENDER" "$SERVER_IP" \
        "$ONGOING_SPORT" "$ONGOING_PORT" "$FRESH_PORT" "${FRESH_PORTS[@]}" "$SEND_PERIOD_MS"
    local t_start
    t_start=$(now_us)
    wait_for 5000 seen "$WORK/cap-isp-a.txt" "$t_start" "$ADDR_A" "$ONGOING_PORT" ||
        die "the ongoing flow does not reach the central site via isp-a"
    # A second of steady state before the fault, so the ongoing flow's NAT entry is established.
    sleep 1

    # --- failover
    local log_mark t_fault t_fault_done fault_lat lo_over hi_over t_over=0 failover_us=0
    log_mark=$(lab router log | wc -l)
    t_fault=$(now_us)
    lab fault a "$fault" >/dev/null
    t_fault_done=$(now_us)
    fault_lat=$(((t_fault_done - t_fault + 999) / 1000))
    if [[ $fault == link ]]; then
        # Carrier loss withdraws the uplink's routes at once, without delay (SPEC 5, 23).
        lo_over=0
        hi_over=$((fault_lat + SLACK_MS))
    else
        lo_over=$((down_ms + timeout - SLACK_MS))
        hi_over=$((down_ms + timeout + interval + fault_lat + SLACK_MS))
    fi
    if wait_for $((hi_over + MARGIN_MS)) seen "$WORK/cap-isp-b.txt" "$t_fault" "$ADDR_B" \
        "$ONGOING_PORT"; then
        t_over=$FOUND_US
        failover_us=$((t_over - t_fault))
    fi
    # The failback must start from the track settled down: a link fault withdraws the route
    # before its track has gone down.
    wait_for "$settle_ms" track_is down || note "track $PRIMARY_TRACK not down within ${settle_ms}ms"

    # --- failback
    local t_heal t_heal_done heal_lat lo_back hi_back t_back=0 failback_us=0
    t_heal=$(now_us)
    lab heal a >/dev/null
    t_heal_done=$(now_us)
    heal_lat=$(((t_heal_done - t_heal + 999) / 1000))
    lo_back=$((up_ms - SLACK_MS))
    hi_back=$((up_ms + interval + heal_lat + SLACK_MS))
    if wait_for $((hi_back + MARGIN_MS)) seen "$WORK/cap-isp-a.txt" "$t_heal" "$ADDR_A" \
        "$FRESH_PORT"; then
        t_back=$FOUND_US
        failback_us=$((t_back - t_heal))
    fi
    # Half a second more of traffic shows where the ongoing flow stays.
    sleep 0.5
    stop_bg

    # --- report
    local rc=0 last_a ongoing_a ongoing_b n_a n_b _
    last_a=$(last_packet_before "$WORK/cap-isp-a.txt" "$t_over" "$ADDR_A" "$ONGOING_PORT")
    read -r n_a _ < <(count_packets "$WORK/cap-isp-a.txt" "$t_heal" "$ADDR_A" "$ONGOING_PORT")
    read -r n_b _ < <(count_packets "$WORK/cap-isp-b.txt" "$t_heal" "$ADDR_B" "$ONGOING_PORT")
    # Misrouted: a packet with one uplink's address arriving over the other ISP.
    ongoing_a=$(count_packets "$WORK/cap-isp-a.txt" "$t_start" "$ADDR_B" "$ONGOING_PORT")
    ongoing_b=$(count_packets "$WORK/cap-isp-b.txt" "$t_start" "$ADDR_A" "$ONGOING_PORT")

    echo
    echo "drill: profile $profile ($config), fault '$fault' on isp-a"
    echo "  primary: $route [$distance] via isp-a, track $PRIMARY_TRACK <- probe $PROBE:" \
        "interval ${interval} ms, timeout ${timeout} ms, delay down ${down_ms} ms, up ${up_ms} ms"
    echo "  fault applied in ${fault_lat} ms, heal in ${heal_lat} ms (counted in the figures)"
    if ((t_over)); then
        printf '  failover: '
        verdict "$failover_us" "$lo_over" "$hi_over" || rc=3
    else
        echo "  failover: NOT SEEN within $(((hi_over + MARGIN_MS) / 1000)) s"
        rc=1
    fi
    if ((t_back)); then
        printf '  failback: '
        verdict "$failback_us" "$lo_back" "$hi_back" || rc=3
    else
        echo "  failback: NOT SEEN within $(((hi_back + MARGIN_MS) / 1000)) s"
        rc=1
    fi
    if ((t_over && last_a)); then
        echo "  ongoing flow: last packet via isp-a at $(fmt_ms $((last_a - t_fault))) after the" \
            "fault, first via isp-b at $(fmt_ms "$failover_us") (outage $(fmt_ms $((t_over - last_a))))"
    fi
    if ((n_a == 0 && n_b > 0)); then
        echo "  ongoing flow after healing: stays on isp-b ($n_b packets, none via isp-a; SPEC 22)"
    else
        echo "  ongoing flow after healing: $n_a packets via isp-a, $n_b via isp-b" \
            "(SPEC 22 expects it to stay on isp-b)"
        ((rc)) || rc=3
    fi
    if [[ ${ongoing_a%% *} != 0 || ${ongoing_b%% *} != 0 ]]; then
        echo "  MISROUTED: ${ongoing_a%% *} packets from $ADDR_B on isp-a," \
            "${ongoing_b%% *} from $ADDR_A on isp-b"
        ((rc)) || rc=3
    fi
    echo "router log from the fault on (time relative to the fault):"
    python3 -c "$PY_LOG" <(lab router log) "$(us_to_s "$t_fault")" "$log_mark" |
        grep -v ' arp: ' || true
    return "$rc"
}

main "$@"
