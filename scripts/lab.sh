#!/usr/bin/env bash
# The mhrouter lab: five network namespaces wired as the reference site, with reversible faults.
# Users, tests and benchmarks all drive the router through this one script (docs/lab.md).
# Everything it creates lives inside its own namespaces; the root namespace is never touched, and
# every process it starts is recorded by pid in the state dir and stopped by that pid.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$SCRIPT_DIR")
ROLES=(lan rtr ispa ispb net)
# `up --redundant`: a second router namespace; `down` removes whichever exist.
REDUNDANT_ROLES=(lan rtr rtr2 ispa ispb net)
ALL_ROLES=(lan rtr rtr2 ispa ispb net)
SERVER_IP=172.18.0.6
SERVER_IP6=2001:db8:18::6
# IPv6 (docs/lab.md): each ISP delegates a /48 and drops sources outside it.
ISPA_PREFIX6=2001:db8:a::/48
ISPB_PREFIX6=2001:db8:b::/48
STOP_TIMEOUT_S=5
SOCKET_TIMEOUT_S=10
DELAY_MARK=0x6d686c62 # "mhlb": frames lab_delay.py sends back out, past its own diversion

usage() {
    cat <<'EOF'
Usage: lab.sh [--prefix P] VERB [ARGS...]

Builds the mhrouter reference site in five network namespaces named <P>lan, <P>rtr, <P>ispa,
<P>ispb and <P>net. P comes from --prefix, else $MH_LAB_PREFIX, else "mh-"; it may hold only
[a-z0-9-], at most 8 characters, so parallel labs (tests) never collide.
State (pid files, router.toml, router.log, ctl.sock, faults) lives in
${MH_LAB_STATE:-/run/mhlab}/<P>/.

  <P>lan   LAN host: eth0 192.168.0.10/24, default via 192.168.0.1 (the router)
  <P>rtr   router: br-lan (LAN bridge, no IP), wan-a and wan-b (no kernel IP), ip_forward=0
  <P>ispa  PE_A: rtr0 172.16.1.2/30 (peer of wan-a), net0 10.255.1.1/30 to <P>net
  <P>ispb  PE_B: rtr0 172.17.3.2/30 (peer of wan-b), net0 10.255.2.1/30 to <P>net
  <P>net   central site: 172.18.0.6 (iperf3 on 5201, DNS on 53: probe.lab -> 172.18.0.6,
                     big.lab TXT of 2000 bytes, too big for UDP)
Nothing routes to 192.168.0.0/24: only NAT reaches it.
IPv6 (dual stack): ISP A delegates 2001:db8:a::/48, ISP B 2001:db8:b::/48, and each PE drops
sources outside its own prefix. PE links 2001:db8:ffa::/64 (PE_A ::2, router ::1) and
2001:db8:ffb::/64 (PE_B ::2, router ::1); the central site answers at 2001:db8:18::6 (iperf3,
DNS) through both. The LAN host takes its addresses by SLAAC from the router's RAs. IPv6 stays
disabled in the kernel of the router namespaces (the router speaks it in userspace) and of
extra hosts (host add).

The redundant topology (`up --redundant`, SPEC 29) adds <P>rtr2 and splits the ISPs:
  <P>rtr   router 1: br-lan and wan-a (ISP A); LAN address 192.168.0.2
  <P>rtr2  router 2: its own br-lan, joined to <P>rtr's by a veth (lan1 -- lan2), and wan-b
           (ISP B); LAN address 192.168.0.3
The LAN host's gateway 192.168.0.1 is the VRRP virtual address (VRID 1) the routers share;
the default configs (scripts/lab-redundant-1.toml, -2.toml) make router 1 master.

Verbs:
  up [--redundant | --dhcp b]
                     Create the lab and start the servers in <P>net. Idempotent: on an existing
                     lab it checks every piece, repairs what is missing and keeps the rest.
                     A lab up in the other topology must be taken down first.
                     --dhcp b: PE_B is an ISP that hands out the uplink address by DHCP
                     (dnsmasq in <P>ispb on rtr0: 172.17.3.1/30, router 172.17.3.2, DNS
                     172.18.0.6, lease 2m; leases in STATE/ispb-dhcp.leases). The router then
                     needs `address = "dhcp"` on isp-b (scripts/lab-dhcp-b.toml).
  down               Stop every recorded process (routers, fault loops, servers), delete the
                     namespaces of both topologies and the state dir. Harmless when the lab does
                     not exist.
  status             Namespaces and their addresses, router and servers alive or not, active
                     faults. Exit status 0 if all five namespaces exist, 1 otherwise.
  router start [N] [--config FILE] [-- EXTRA...]
                     Router N (1 or 2, default 1; 2 only in the redundant topology). Below,
                     router 2 uses router2.toml, router2.log, ctl2.sock and <P>rtr2, and its
                     default FILE is scripts/lab-redundant-2.toml (router 1's is
                     scripts/lab-redundant-1.toml in the redundant topology).
                     Copy FILE (default scripts/lab.toml) to STATE/router.toml and run
                     `mhrouter run --config STATE/router.toml --socket STATE/ctl.sock EXTRA...`
                     in <P>rtr, in the background, RUST_LOG=${RUST_LOG:-info}, output to
                     STATE/router.log. Waits up to 10 s for the control socket; on failure prints
                     the log tail, stops the router and exits non-zero.
                     Binary: $MHROUTER_BIN, else target/release/mhrouter, else target/debug.
  router stop [N]    SIGTERM the recorded router N, SIGKILL after 5 s; remove its pid file.
  router log [N]     Print router N's log.
  fault SIDE KIND    Inject a fault on uplink SIDE (a or b); each kind is undone by `heal`:
      link           carrier down: rtr0 down in the PE, so wan-x loses carrier
      nexthop        the PE silently drops everything from the router (ARP included), carrier up
      upstream       the PE still answers the router, but forwards nothing (path to net cut)
      loss PCT       lose PCT% (0-100, decimals allowed) of the frames in each direction
      delay MS       delay frames by MS ms each way (the round trip grows by 2 x MS)
      flap [PERIOD_MS]
                     a loop in the PE toggles rtr0 down/up every PERIOD_MS (default 2000)
                     loss and delay combine; repeating a kind replaces its previous value.
                     They use netem on the PE's rtr0 and the router's wan-x; on kernels without
                     sch_netem, nftables in the PE (loss) and scripts/lab_delay.py in the PE
                     (delay, 2 x MS on the PE-to-router direction only).
  heal SIDE          Undo every fault on SIDE (idempotent).
  isp-dhcp b SERVER [--lease S] [--renumber] [--moved]
                     Replace PE_B's DHCP server (started by `up --dhcp b`, or none) with SERVER:
                     dnsmasq, or kea (kea-dhcp4; its files in STATE/ispb-kea), serving
                     172.17.3.1/30 (router 172.17.3.2, DNS 172.18.0.6), lease S seconds
                     (default 120, dnsmasq's shortest). Each keeps its own lease file.
                     --renumber: hand out 172.17.3.5/30 instead (router 172.17.3.6).
                     --moved (kea): the server answers at 172.17.3.6 only, so unicast to
                     172.17.3.2 goes unanswered. Both options give PE_B 172.17.3.6/30 on rtr0
                     and the central site a route back to 172.17.3.4/30.
  isp-dhcp b stop    Stop PE_B's DHCP server.
  isp-dhcp6 b kea [--lease S] [--renumber]
                     Run kea-dhcp6 in <P>ispb on rtr0 (its files in STATE/ispb-kea6), delegating
                     ISP B's 2001:db8:b::/48 by DHCPv6-PD (whole, delegated length 48): valid and
                     preferred lifetime S seconds (default 3600), T1 S/2, T2 4S/5. Replaces a
                     running one, keeping its lease file. The router then needs
                     `prefix6 = "dhcpv6-pd"` on isp-b (scripts/lab-pd-b.toml).
                     --renumber: delegate 2001:db8:bb::/48 instead; PE_B and the central site
                     route it to the router and PE_B's source filter lets it through.
  isp-dhcp6 b stop   Stop PE_B's DHCPv6 server.
  host add N         Plug one more host into the LAN bridge: namespace <P>hN (N 1..9) with eth0
                     and no address (for DHCP clients); `down` removes it too. It gets its own
                     /etc/netns/<P>hN/resolv.conf, which `ip netns exec` shows as
                     /etc/resolv.conf, so a DHCP client's script never writes the machine's.
  exec NS CMD...     Run CMD in <P>NS (NS: lan rtr rtr2 ispa ispb net h1..h9).
  ctl [N] ARGS...    Run `mhrouter --socket STATE/ctl.sock ARGS...` in <P>rtr (router N: 1 or
                     2, default 1; router 2: STATE/ctl2.sock in <P>rtr2).
  help, --help, -h   This text.

Example: lab.sh --prefix t1- up; lab.sh --prefix t1- router start;
         lab.sh --prefix t1- fault a nexthop;
         lab.sh --prefix t1- ctl ...; lab.sh --prefix t1- heal a; lab.sh --prefix t1- down
EOF
}

die() {
    echo "lab.sh: $*" >&2
    exit 1
}

warn() {
    echo "lab.sh: warning: $*" >&2
}

# --- names and predicates ----------------------------------------------------------------------

ns() { echo "${PREFIX}$1"; }

ns_exists() {
    local names
    # Captured first: with pipefail, grep -q closing the pipe early could fail the pipeline.
    # stderr: `ip netns list` complains about namespaces another lab is creating right now.
    names=$(ip netns list 2>/dev/null | awk '{print $1}')
    grep -qxF -- "$1" <<<"$names"
}

# "redundant" or "default": what `up` built, recorded in the state dir.
topology() {
    if [[ $(cat "$STATE/topology" 2>/dev/null) == redundant ]]; then
        echo redundant
    else
        echo default
    fi
}

roles() {
    if [[ $(topology) == redundant ]]; then
        echo "${REDUNDANT_ROLES[@]}"
    else
        echo "${ROLES[@]}"
    fi
}

lab_exists() {
    local role
    for role in $(roles); do
        ns_exists "$(ns "$role")" || return 1
    done
}

# The namespace of the router that has uplink SIDE's wan-SIDE.
side_router() { # side
    if [[ $1 == b && $(topology) == redundant ]]; then
        echo rtr2
    else
        echo rtr
    fi
}

require_lab() {
    lab_exists || die "lab '${PREFIX}' is not up (run: lab.sh --prefix ${PREFIX} up)"
}

link_exists() { # role ifname
    ip -n "$(ns "$1")" link show dev "$2" >/dev/null 2>&1
}

in_ns() { # role cmd...
    local role=$1
    shift
    ip netns exec "$(ns "$role")" "$@"
}

# --- processes: started detached, recorded by pid, stopped by that pid -------------------------

# A process is known by its pid plus its start time (kept beside the pid file), so a recycled
# pid is never taken for ours, whatever the process has exec'd into since.
start_time() { # pid
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    # Fields counted after the ")" that closes the command name, which may hold spaces: state
    # (field 3; a zombie has exited already) and start time (field 22).
    awk '$1 == "Z" {exit 1} {print $20}' <<<"${stat##*) }"
}

record_start() { # pidfile
    local pid
    pid=$(head -n1 "$1")
    start_time "$pid" >"$1.start" || rm -f "$1.start"
}

# Prints the recorded pid if that very process is still alive.
live_pid() { # pidfile
    local pid recorded now
    [[ -s $1 && -s $1.start ]] || return 1
    pid=$(head -n1 "$1")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    recorded=$(cat "$1.start")
    now=$(start_time "$pid") || return 1
    [[ $now == "$recorded" ]] || return 1
    echo "$pid"
}

# Runs CMD in its own session, detached from the caller's stdio (so a caller reading our output
# is not kept waiting by it), and records its pid. The child writes its own pid before exec'ing,
# so the record is right however setsid and `ip netns exec` fork.
spawn() { # pidfile logfile cmd...
    local pidfile=$1 log=$2 i
    shift 2
    rm -f "$pidfile" "$pidfile.start"
    # shellcheck disable=SC2016 # $$ and $@ belong to the child shell
    setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
        </dev/null >>"$log" 2>&1 &
    for ((i = 0; i < 50; i++)); do
        if [[ -s $pidfile ]]; then
            record_start "$pidfile"
            return 0
        fi
        sleep 0.1
    done
    die "could not start: $*"
}

# SIGTERM, up to STOP_TIMEOUT_S, then SIGKILL. With "group", the whole process group the recorded
# pid leads is signalled (a shell loop's sleeping child goes with it).
stop_pidfile() { # pidfile [group]
    local pidfile=$1 group=${2:-} pid started target i pgid
    if pid=$(live_pid "$pidfile"); then
        # Polled by pid and start time, not through the file: some daemons delete it as they exit.
        started=$(cat "$pidfile.start")
        target=$pid
        if [[ $group == group ]]; then
            pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
            [[ $pgid == "$pid" ]] && target=-$pid
        fi
        kill -TERM -- "$target" 2>/dev/null || true
        for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do
            [[ $(start_time "$pid") == "$started" ]] || break
            sleep 0.1
        done
        if [[ $(start_time "$pid") == "$started" ]]; then
            warn "pid $pid ignored SIGTERM for ${STOP_TIMEOUT_S}s; sending SIGKILL"
            kill -KILL -- "$target" 2>/dev/null || true
            for ((i = 0; i < 20; i++)); do
                [[ $(start_time "$pid") == "$started" ]] || break
                sleep 0.1
            done
        fi
    fi
    rm -f "$pidfile" "$pidfile.start"
}

# --- up ----------------------------------------------------------------------------------------

ensure_ns() { # role
    local name off=1
    name=$(ns "$1")
    ns_exists "$name" || ip netns add "$name"
    # Before any interface is created, so every interface is born with IPv6 on or off. The
    # dual-stack roles (LAN host, PEs, central site) have it; the routers' namespaces never do
    # (the router speaks IPv6 itself, and the kernel must not answer for it), nor do extra hosts,
    # so the wire carries only what the tests send.
    case $1 in
    lan | ispa | ispb | net) off=0 ;;
    esac
    if [[ -d /proc/sys/net/ipv6 ]]; then
        in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=$off \
            net.ipv6.conf.default.disable_ipv6=$off
    fi
    ip -n "$name" link set lo up
}

ensure_veth() { # role1 if1 role2 if2
    if link_exists "$1" "$2" && link_exists "$3" "$4"; then
        return 0
    fi
    # A half-built pair (one end missing) is rebuilt from scratch.
    ip -n "$(ns "$1")" link del "$2" 2>/dev/null || true
    ip -n "$(ns "$3")" link del "$4" 2>/dev/null || true
    ip -n "$(ns "$1")" link add "$2" type veth peer name "$4" netns "$(ns "$3")"
}

ensure_link() { # role ifname type
    link_exists "$1" "$2" || ip -n "$(ns "$1")" link add "$2" type "$3"
}

# srv0 carries the central site's address. A dummy interface where the kernel has one; kernels
# built without CONFIG_DUMMY (the Firecracker VMs here) get a veth whose peer stays in <P>net.
ensure_server_link() {
    link_exists net srv0 && return 0
    ip -n "$(ns net)" link add srv0 type dummy 2>/dev/null && return 0
    ip -n "$(ns net)" link del srv0-peer 2>/dev/null || true
    ip -n "$(ns net)" link add srv0 type veth peer name srv0-peer
}

links_up() { # role ifname...
    local role=$1 dev
    shift
    for dev in "$@"; do
        ip -n "$(ns "$role")" link set "$dev" up
    done
}

# A new veth's carrier reaches its operstate (and its queueing discipline) through the kernel's
# linkwatch, up to a second later; frames sent before that are lost. Wait for every link of the
# lab to be operationally up, so the first ARP of a fresh lab is not one of them.
wait_links_up() {
    local deadline=$((SECONDS + 3)) spec role dev state
    local -a specs=(lan:eth0 rtr:lan0 rtr:wan-a rtr:wan-b ispa:rtr0 ispa:net0 ispb:rtr0 ispb:net0
        net:isp-a net:isp-b)
    if [[ $(topology) == redundant ]]; then
        specs=(lan:eth0 rtr:lan0 rtr:lan2 rtr:wan-a rtr2:lan1 rtr2:wan-b ispa:rtr0 ispa:net0
            ispb:rtr0 ispb:net0 net:isp-a net:isp-b)
    fi
    for spec in "${specs[@]}"; do
        role=${spec%%:*}
        dev=${spec#*:}
        while :; do
            state=$(in_ns "$role" cat "/sys/class/net/$dev/operstate" 2>/dev/null || echo unknown)
            [[ $state == up ]] && break
            if ((SECONDS >= deadline)); then
                warn "$(ns "$role")/$dev is still '$state' after 3 s"
                break
            fi
            sleep 0.05
        done
    done
}

start_servers() {
    local dnsmasq_bin
    if ! live_pid "$STATE/iperf3.pid" >/dev/null; then
        rm -f "$STATE/iperf3.pid" "$STATE/iperf3.pid.start"
        in_ns net iperf3 -s -B "$SERVER_IP" -D --pidfile "$STATE/iperf3.pid"
        local i
        for ((i = 0; i < 50; i++)); do
            [[ -s $STATE/iperf3.pid ]] && break
            sleep 0.1
        done
        record_start "$STATE/iperf3.pid"
        live_pid "$STATE/iperf3.pid" >/dev/null || die "iperf3 server did not start"
    fi
    if ! live_pid "$STATE/iperf3-6.pid" >/dev/null; then
        rm -f "$STATE/iperf3-6.pid" "$STATE/iperf3-6.pid.start"
        in_ns net iperf3 -s -B "$SERVER_IP6" -D --pidfile "$STATE/iperf3-6.pid"
        local j
        for ((j = 0; j < 50; j++)); do
            [[ -s $STATE/iperf3-6.pid ]] && break
            sleep 0.1
        done
        record_start "$STATE/iperf3-6.pid"
        live_pid "$STATE/iperf3-6.pid" >/dev/null || die "iperf3 server (IPv6) did not start"
    fi
    if ! dnsmasq_bin=$(command -v dnsmasq); then
        warn "dnsmasq is not installed: no DNS responder on $SERVER_IP:53 (apt-get install dnsmasq)"
        return 0
    fi
    if ! live_pid "$STATE/dnsmasq.pid" >/dev/null; then
        # big.lab: a TXT answer too big for UDP (8 strings of 250 bytes), so clients retry
        # over TCP (SPEC 30).
        local big="" i
        for ((i = 1; i <= 8; i++)); do
            big+=",part$i-$(printf '%0244d' 0)"
        done
        # --conf-file=/dev/null: the host's /etc/dnsmasq.conf must not change the lab.
        spawn "$STATE/dnsmasq.pid" "$STATE/dnsmasq.log" \
            ip netns exec "$(ns net)" "$dnsmasq_bin" --no-daemon --conf-file=/dev/null \
            --no-resolv --no-hosts --listen-address="$SERVER_IP" \
            --listen-address="$SERVER_IP6" --bind-interfaces --address=/probe.lab/"$SERVER_IP" \
            --address=/probe.lab/"$SERVER_IP6" --txt-record=big.lab"$big" \
            --pid-file="$STATE/dnsmasq.pid"
        sleep 0.2
        live_pid "$STATE/dnsmasq.pid" >/dev/null ||
            die "dnsmasq did not start; see $STATE/dnsmasq.log"
    fi
}

# PE_B as a DHCP ISP: dnsmasq serving the router's side of 172.17.3.0/30 on rtr0 (DHCP only,
# port=0 turns its DNS off).
start_isp_dhcp() {
    live_pid "$STATE/ispb-dhcp.pid" >/dev/null && return 0
    start_dnsmasq_isp 172.17.3.1 172.17.3.2 2m
}

start_dnsmasq_isp() { # address router lease
    local dnsmasq_bin
    dnsmasq_bin=$(command -v dnsmasq) || die "--dhcp needs dnsmasq (apt-get install dnsmasq-base)"
    echo dnsmasq >"$STATE/ispb-dhcp.server"
    spawn "$STATE/ispb-dhcp.pid" "$STATE/ispb-dhcp.log" \
        ip netns exec "$(ns ispb)" "$dnsmasq_bin" --no-daemon --conf-file=/dev/null \
        --no-resolv --no-hosts --port=0 --interface=rtr0 --bind-interfaces \
        --dhcp-range="$1,$1,255.255.255.252,$3" --dhcp-authoritative \
        --dhcp-option=option:router,"$2" --dhcp-option=option:dns-server,"$SERVER_IP" \
        --dhcp-leasefile="$STATE/ispb-dhcp.leases" --pid-file="$STATE/ispb-dhcp.pid"
    sleep 0.2
    live_pid "$STATE/ispb-dhcp.pid" >/dev/null ||
        die "dnsmasq (DHCP on PE_B) did not start; see $STATE/ispb-dhcp.log"
}

# Kea on PE_B, its config, lease file, log, pid and lock files in STATE/ispb-kea (nothing in
# /etc or /run/kea; no control socket). Kea takes leases shorter than dnsmasq's 2-minute
# minimum, for the timer tests.
start_kea_isp() { # address router lease [listen-address]
    local kea_bin dir=$STATE/ispb-kea subnet i
    kea_bin=$(PATH="$PATH:/usr/sbin" command -v kea-dhcp4) ||
        die "isp-dhcp kea needs kea-dhcp4 (apt-get install kea-dhcp4-server)"
    mkdir -p "$dir"
    subnet=${1%.*}.$((${1##*.} & ~3))/30
    cat >"$dir/kea-dhcp4.conf" <<EOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "rtr0${4:+/$4}" ], "dhcp-socket-type": "raw" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$dir/leases.csv",
                        "lfc-interval": 0 },
    "authoritative": true,
    "valid-lifetime": $3, "renew-timer": $(($3 / 2)), "rebind-timer": $(($3 * 7 / 8)),
    "subnet4": [ { "id": 1, "subnet": "$subnet", "interface": "rtr0",
                   "pools": [ { "pool": "$1 - $1" } ],
                   "option-data": [ { "name": "routers", "data": "$2" },
                                    { "name": "domain-name-servers", "data": "$SERVER_IP" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "severity": "INFO",
                   "output_options": [ { "output": "stdout" } ] } ]
} }
EOF
    echo kea >"$STATE/ispb-dhcp.server"
    : >"$dir/kea.log"
    KEA_PIDFILE_DIR=$dir KEA_LOCKFILE_DIR=$dir spawn "$STATE/ispb-dhcp.pid" "$dir/kea.log" \
        ip netns exec "$(ns ispb)" "$kea_bin" -c "$dir/kea-dhcp4.conf"
    # Ready once its sockets are open: it logs DHCP4_STARTED.
    for ((i = 0; i < 50; i++)); do
        grep -q DHCP4_STARTED "$dir/kea.log" && return 0
        live_pid "$STATE/ispb-dhcp.pid" >/dev/null || break
        sleep 0.1
    done
    die "kea-dhcp4 (DHCP on PE_B) did not start; see $dir/kea.log"
}

# `isp-dhcp b SERVER|stop [--lease S] [--renumber] [--moved]`: PE_B's DHCP server replaced.
cmd_isp_dhcp() {
    (($# >= 2)) || die "isp-dhcp: expected b and dnsmasq, kea or stop"
    [[ $1 == b ]] || die "isp-dhcp: only side b serves DHCP, not '$1'"
    local server=$2 lease=120 address=172.17.3.1 router=172.17.3.2 listen=
    shift 2
    [[ $(topology) == default ]] || die "isp-dhcp: needs the default topology (lab.sh up --dhcp b)"
    require_lab
    case $server in
    dnsmasq | kea | stop) ;;
    *) die "isp-dhcp: server must be dnsmasq, kea or stop, not '$server'" ;;
    esac
    [[ $server != stop || $# == 0 ]] || die "isp-dhcp stop takes no options"
    while (($#)); do
        case $1 in
        --lease)
            [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "isp-dhcp: --lease needs whole seconds"
            lease=$2
            shift 2
            ;;
        --renumber)
            address=172.17.3.5 router=172.17.3.6
            shift
            ;;
        --moved)
            listen=172.17.3.6
            shift
            ;;
        *) die "isp-dhcp: unexpected argument '$1' (--lease S, --renumber, --moved)" ;;
        esac
    done
    [[ -z $listen || $server == kea ]] || die "isp-dhcp: --moved needs kea (dnsmasq answers on every address of rtr0)"
    ((lease >= 120)) || [[ $server != dnsmasq ]] || die "isp-dhcp: dnsmasq's shortest lease is 120 s"
    stop_pidfile "$STATE/ispb-dhcp.pid"
    rm -f "$STATE/ispb-dhcp.server"
    if [[ $server == stop ]]; then
        echo "DHCP on PE_B stopped"
        return 0
    fi
    if [[ $address != 172.17.3.1 || -n $listen ]]; then
        # PE_B's second subnet, 172.17.3.4/30, and the central site's way back to it.
        ip -n "$(ns ispb)" addr replace 172.17.3.6/30 dev rtr0
        ip -n "$(ns net)" route replace 172.17.3.4/30 via 10.255.2.1 dev isp-b
    fi
    if [[ $server == dnsmasq ]]; then
        start_dnsmasq_isp "$address" "$router" "${lease}s"
    else
        start_kea_isp "$address" "$router" "$lease" "$listen"
    fi
    echo "DHCP on PE_B: $server hands out $address/30 (router $router, lease $lease s)${listen:+, answering at $listen only}"
}

cmd_up() {
    local role want=default dhcp=
    case ${1:-} in
    "") ;;
    --redundant) want=redundant ;;
    --dhcp)
        [[ ${2:-} == b ]] || die "up --dhcp: only side b can serve DHCP"
        dhcp=b
        ;;
    *) die "up: unexpected argument '$1' (--redundant or --dhcp b)" ;;
    esac
    if ns_exists "$(ns rtr)" && [[ $(topology) != "$want" ]]; then
        die "lab '${PREFIX}' is up in the $(topology) topology; run: lab.sh --prefix ${PREFIX} down"
    fi
    mkdir -p "$STATE"
    echo "$want" >"$STATE/topology"
    for role in $(roles); do
        ensure_ns "$role"
    done

    ensure_veth lan eth0 rtr lan0
    ensure_veth rtr wan-a ispa rtr0
    if [[ $want == redundant ]]; then
        ensure_veth rtr2 wan-b ispb rtr0
        # The two routers' bridges form one LAN segment.
        ensure_veth rtr lan2 rtr2 lan1
        ensure_link rtr2 br-lan bridge
    else
        ensure_veth rtr wan-b ispb rtr0
    fi
    ensure_veth ispa net0 net isp-a
    ensure_veth ispb net0 net isp-b
    ensure_link rtr br-lan bridge
    ensure_server_link
    ip -n "$(ns rtr)" link set lan0 master br-lan

    links_up lan eth0
    if [[ $want == redundant ]]; then
        ip -n "$(ns rtr)" link set lan2 master br-lan
        ip -n "$(ns rtr2)" link set lan1 master br-lan
        links_up rtr lan0 lan2 br-lan wan-a
        links_up rtr2 lan1 br-lan wan-b
        in_ns rtr2 sysctl -qw net.ipv4.ip_forward=0
    else
        links_up rtr lan0 br-lan wan-a wan-b
    fi
    # A physical NIC has GRO on by default, a veth has not: turn it on for the router's LAN
    # port so the lab behaves like a real box (the kernel baseline of bench/ gets the same).
    in_ns rtr ethtool -K lan0 gro on >/dev/null 2>&1 || true
    links_up ispa rtr0 net0
    links_up ispb rtr0 net0
    links_up net isp-a isp-b srv0
    if link_exists net srv0-peer; then
        links_up net srv0-peer
    fi

    in_ns lan sysctl -qw net.ipv4.ip_forward=0
    in_ns rtr sysctl -qw net.ipv4.ip_forward=0
    in_ns ispa sysctl -qw net.ipv4.ip_forward=1
    in_ns ispb sysctl -qw net.ipv4.ip_forward=1
    in_ns net sysctl -qw net.ipv4.ip_forward=0

    ip -n "$(ns lan)" addr replace 192.168.0.10/24 dev eth0
    ip -n "$(ns ispa)" addr replace 172.16.1.2/30 dev rtr0
    ip -n "$(ns ispa)" addr replace 10.255.1.1/30 dev net0
    ip -n "$(ns ispb)" addr replace 172.17.3.2/30 dev rtr0
    ip -n "$(ns ispb)" addr replace 10.255.2.1/30 dev net0
    ip -n "$(ns net)" addr replace 10.255.1.2/30 dev isp-a
    ip -n "$(ns net)" addr replace 10.255.2.2/30 dev isp-b
    ip -n "$(ns net)" addr replace "$SERVER_IP/24" dev srv0

    ip -n "$(ns lan)" route replace default via 192.168.0.1 dev eth0
    setup_ipv6
    ip -n "$(ns ispa)" route replace 172.18.0.0/24 via 10.255.1.2 dev net0
    ip -n "$(ns ispb)" route replace 172.18.0.0/24 via 10.255.2.2 dev net0
    ip -n "$(ns net)" route replace 172.16.1.0/30 via 10.255.1.1 dev isp-a
    ip -n "$(ns net)" route replace 172.17.3.0/30 via 10.255.2.1 dev isp-b

    wait_links_up
    start_servers
    [[ -z $dhcp ]] || start_isp_dhcp
    echo "lab '${PREFIX}' is up (state: $STATE)"
}

# The IPv6 half of the dual stack (docs/lab.md). Addresses without DAD, so they are usable at once.
setup_ipv6() {
    local side pe_link net_link prefix
    # The bridge floods all multicast: the router sends no MLD reports, so snooping would keep
    # neighbour solicitations for its addresses from it.
    ip -n "$(ns rtr)" link set br-lan type bridge mcast_snooping 0
    # The LAN host forwards nothing and takes router advertisements (SLAAC).
    in_ns lan sysctl -qw net.ipv6.conf.eth0.accept_ra=1 net.ipv6.conf.eth0.autoconf=1
    ip -n "$(ns net)" addr replace "$SERVER_IP6/64" dev srv0 nodad
    for side in a b; do
        pe_link=2001:db8:ff$side
        net_link=2001:db8:f${side}1
        if [[ $side == a ]]; then prefix=$ISPA_PREFIX6; else prefix=$ISPB_PREFIX6; fi
        in_ns "isp$side" sysctl -qw net.ipv6.conf.all.forwarding=1
        ip -n "$(ns "isp$side")" addr replace "$pe_link::2/64" dev rtr0 nodad
        ip -n "$(ns "isp$side")" addr replace "$net_link::1/64" dev net0 nodad
        ip -n "$(ns net)" addr replace "$net_link::2/64" dev "isp-$side" nodad
        ip -n "$(ns "isp$side")" -6 route replace 2001:db8:18::/64 via "$net_link::2" dev net0
        # The delegated prefix lives behind the router.
        ip -n "$(ns "isp$side")" -6 route replace "$prefix" via "$pe_link::1" dev rtr0
        ip -n "$(ns net)" -6 route replace "$prefix" via "$net_link::1" dev "isp-$side"
        ip -n "$(ns net)" -6 route replace "$pe_link::/64" via "$net_link::1" dev "isp-$side"
        # BCP 38: the ISP forwards from the router only sources in the prefix it delegated (and
        # the router's own link address), which is what makes source routing necessary.
        in_ns "isp$side" nft -f - <<EOF
table ip6 mhlab-bcp38 {}
delete table ip6 mhlab-bcp38
table ip6 mhlab-bcp38 {
    chain forward {
        type filter hook forward priority -10; policy accept;
        iifname "rtr0" ip6 saddr != { $prefix, $pe_link::/64 } counter drop
    }
}
EOF
    done
}

# `isp-dhcp6 b kea|stop [--lease S] [--renumber]`: Kea delegating ISP B's prefix by DHCPv6-PD,
# its config, lease file, log, pid and lock files in STATE/ispb-kea6. A fixed server DUID (not
# persisted in Kea's data directory) stays the same across restarts, as a real ISP's does.
cmd_isp_dhcp6() {
    (($# >= 2)) || die "isp-dhcp6: expected b and kea or stop"
    [[ $1 == b ]] || die "isp-dhcp6: only side b delegates by DHCPv6, not '$1'"
    local server=$2 lease=3600 prefix=$ISPB_PREFIX6 kea_bin dir=$STATE/ispb-kea6 i
    shift 2
    [[ $(topology) == default ]] || die "isp-dhcp6: needs the default topology"
    require_lab
    case $server in
    kea | stop) ;;
    *) die "isp-dhcp6: server must be kea or stop, not '$server'" ;;
    esac
    [[ $server != stop || $# == 0 ]] || die "isp-dhcp6 stop takes no options"
    while (($#)); do
        case $1 in
        --lease)
            [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "isp-dhcp6: --lease needs whole seconds"
            lease=$2
            shift 2
            ;;
        --renumber)
            prefix=2001:db8:bb::/48
            shift
            ;;
        *) die "isp-dhcp6: unexpected argument '$1' (--lease S, --renumber)" ;;
        esac
    done
    stop_pidfile "$STATE/ispb-dhcp6.pid"
    if [[ $server == stop ]]; then
        echo "DHCPv6 on PE_B stopped"
        return 0
    fi
    kea_bin=$(PATH="$PATH:/usr/sbin" command -v kea-dhcp6) ||
        die "isp-dhcp6 kea needs kea-dhcp6 (apt-get install kea-dhcp6-server)"
    if [[ $prefix != "$ISPB_PREFIX6" ]]; then
        # The second prefix lives behind the router too, and PE_B forwards its sources.
        ip -n "$(ns ispb)" -6 route replace "$prefix" via 2001:db8:ffb::1 dev rtr0
        ip -n "$(ns net)" -6 route replace "$prefix" via 2001:db8:fb1::1 dev isp-b
        in_ns ispb nft -f - <<EOF
table ip6 mhlab-bcp38 {}
delete table ip6 mhlab-bcp38
table ip6 mhlab-bcp38 {
    chain forward {
        type filter hook forward priority -10; policy accept;
        iifname "rtr0" ip6 saddr != { $ISPB_PREFIX6, $prefix, 2001:db8:ffb::/64 } counter drop
    }
}
EOF
    fi
    # Kea binds to rtr0's link-local address, which a fresh lab may still be checking (DAD).
    for ((i = 0; i < 50; i++)); do
        ip -n "$(ns ispb)" -6 addr show dev rtr0 scope link | grep -q inet6 &&
            [[ -z $(ip -n "$(ns ispb)" -6 addr show dev rtr0 scope link tentative) ]] && break
        sleep 0.1
    done
    mkdir -p "$dir"
    cat >"$dir/kea-dhcp6.conf" <<EOF
{ "Dhcp6": {
    "interfaces-config": { "interfaces": [ "rtr0" ] },
    "server-id": { "type": "EN", "enterprise-id": 2495, "identifier": "6d686c6162",
                   "persist": false },
    "lease-database": { "type": "memfile", "persist": true, "name": "$dir/leases6.csv",
                        "lfc-interval": 0 },
    "preferred-lifetime": $lease, "valid-lifetime": $lease,
    "renew-timer": $((lease / 2)), "rebind-timer": $((lease * 4 / 5)),
    "subnet6": [ { "id": 1, "subnet": "2001:db8:ffb::/64", "interface": "rtr0",
                   "pd-pools": [ { "prefix": "${prefix%/*}", "prefix-len": 48,
                                   "delegated-len": 48 } ] } ],
    "loggers": [ { "name": "kea-dhcp6", "severity": "DEBUG", "debuglevel": 40,
                   "output_options": [ { "output": "stdout" } ] } ]
} }
EOF
    : >"$dir/kea.log"
    KEA_PIDFILE_DIR=$dir KEA_LOCKFILE_DIR=$dir spawn "$STATE/ispb-dhcp6.pid" "$dir/kea.log" \
        ip netns exec "$(ns ispb)" "$kea_bin" -c "$dir/kea-dhcp6.conf"
    # Ready once its sockets are open: it logs DHCP6_STARTED.
    for ((i = 0; i < 50; i++)); do
        if grep -q DHCP6_STARTED "$dir/kea.log"; then
            echo "DHCPv6 on PE_B: kea delegates $prefix (valid $lease s)"
            return 0
        fi
        live_pid "$STATE/ispb-dhcp6.pid" >/dev/null || break
        sleep 0.1
    done
    die "kea-dhcp6 (DHCPv6-PD on PE_B) did not start; see $dir/kea.log"
}

# --- down --------------------------------------------------------------------------------------

cmd_down() {
    local role name side pids
    stop_router 1
    stop_router 2
    for side in a b; do
        stop_pidfile "$STATE/flap-$side.pid" group
        stop_pidfile "$STATE/delay-$side.pid"
    done
    stop_pidfile "$STATE/dnsmasq.pid"
    stop_pidfile "$STATE/ispb-dhcp.pid"
    stop_pidfile "$STATE/ispb-dhcp6.pid"
    stop_pidfile "$STATE/iperf3.pid"
    stop_pidfile "$STATE/iperf3-6.pid"
    for role in "${ALL_ROLES[@]}" h1 h2 h3 h4 h5 h6 h7 h8 h9; do
        name=$(ns "$role")
        ns_exists "$name" || continue
        pids=$(ip netns pids "$name" 2>/dev/null | tr '\n' ' ')
        # Not ours to kill: the namespace lives on until they exit.
        [[ -z $pids ]] || warn "processes not started by lab.sh still run in $name: $pids"
        ip netns del "$name"
    done
    for role in h1 h2 h3 h4 h5 h6 h7 h8 h9; do
        rm -rf "/etc/netns/$(ns "$role")"
    done
    rm -rf "$STATE"
    echo "lab '${PREFIX}' is down"
}

# --- status ------------------------------------------------------------------------------------

print_pid_state() { # label pidfile
    local pid
    if pid=$(live_pid "$2"); then
        printf '  %-8s running (pid %s)\n' "$1" "$pid"
    elif [[ -e $2 ]]; then
        printf '  %-8s dead (stale pid file)\n' "$1"
    else
        printf '  %-8s not running\n' "$1"
    fi
}

cmd_status() {
    local role name side up=0
    echo "lab '${PREFIX}' (state: $STATE, $(topology) topology)"
    echo "namespaces:"
    for role in $(roles); do
        name=$(ns "$role")
        if ns_exists "$name"; then
            printf '  %s\n' "$name"
            ip -n "$name" -br addr show | grep -v '^lo ' | sed 's/^/      /' || true
        else
            printf '  %s (missing)\n' "$name"
            up=1
        fi
    done
    echo "processes:"
    print_pid_state router "$STATE/router.pid"
    if [[ $(topology) == redundant ]]; then
        print_pid_state router2 "$STATE/router2.pid"
    fi
    print_pid_state iperf3 "$STATE/iperf3.pid"
    print_pid_state iperf3-6 "$STATE/iperf3-6.pid"
    print_pid_state dnsmasq "$STATE/dnsmasq.pid"
    [[ ! -e $STATE/ispb-dhcp.pid ]] ||
        print_pid_state "$(cat "$STATE/ispb-dhcp.server" 2>/dev/null || echo dnsmasq) (DHCP on PE_B)" \
            "$STATE/ispb-dhcp.pid"
    [[ ! -e $STATE/ispb-dhcp6.pid ]] ||
        print_pid_state "kea (DHCPv6-PD on PE_B)" "$STATE/ispb-dhcp6.pid"
    echo "faults:"
    for side in a b; do
        if [[ -s $STATE/faults-$side ]]; then
            printf '  %s: %s\n' "$side" "$(paste -sd, "$STATE/faults-$side" | sed 's/,/, /g')"
        else
            printf '  %s: none\n' "$side"
        fi
    done
    return "$up"
}

# --- router ------------------------------------------------------------------------------------

router_bin() {
    if [[ -n ${MHROUTER_BIN:-} ]]; then
        [[ -x $MHROUTER_BIN ]] || die "MHROUTER_BIN=$MHROUTER_BIN is not an executable file"
        realpath "$MHROUTER_BIN"
    elif [[ -x $REPO_DIR/target/release/mhrouter ]]; then
        echo "$REPO_DIR/target/release/mhrouter"
    elif [[ -x $REPO_DIR/target/debug/mhrouter ]]; then
        echo "$REPO_DIR/target/debug/mhrouter"
    else
        die "no mhrouter binary: set MHROUTER_BIN or run cargo build --release in $REPO_DIR"
    fi
}

# Router N's files and namespace: router 1 keeps the names of the default topology.
router_suffix() { # n
    if [[ $1 != 1 ]]; then
        echo "$1"
    fi
}

# Consumes an optional router number; sets ROUTER_N (1 or 2) and ROUTER_SFX.
router_number() { # first-arg
    ROUTER_N=1
    if [[ ${1:-} =~ ^[0-9]+$ ]]; then
        [[ $1 == 1 || $1 == 2 ]] || die "router number must be 1 or 2, not '$1'"
        ROUTER_N=$1
    fi
    if [[ $ROUTER_N == 2 && $(topology) != redundant ]]; then
        die "router 2 exists only in the redundant topology (lab.sh up --redundant)"
    fi
    ROUTER_SFX=$(router_suffix "$ROUTER_N")
}

stop_router() { # n
    local sfx
    sfx=$(router_suffix "$1")
    stop_pidfile "$STATE/router$sfx.pid"
    # A router killed hard leaves its socket behind; nothing else may be listening on it.
    rm -f "$STATE/ctl$sfx.sock"
}

cmd_router_start() {
    local config=$SCRIPT_DIR/lab.toml bin pid deadline sfx=$ROUTER_SFX
    local -a extra=()
    if [[ $(topology) == redundant ]]; then
        config=$SCRIPT_DIR/lab-redundant-$ROUTER_N.toml
    fi
    while (($#)); do
        case $1 in
        --config)
            (($# >= 2)) || die "router start: --config needs a file"
            config=$2
            shift 2
            ;;
        --config=*)
            config=${1#--config=}
            shift
            ;;
        --)
            shift
            extra=("$@")
            break
            ;;
        *) die "router start: unexpected argument '$1' (extra router arguments go after --)" ;;
        esac
    done
    require_lab
    [[ -r $config ]] || die "router start: cannot read config $config"
    bin=$(router_bin)
    if pid=$(live_pid "$STATE/router$sfx.pid"); then
        die "router $ROUTER_N already running (pid $pid); run: lab.sh --prefix ${PREFIX} router stop $ROUTER_N"
    fi
    rm -f "$STATE/router$sfx.pid" "$STATE/ctl$sfx.sock"
    cp -- "$config" "$STATE/router$sfx.toml"
    : >"$STATE/router$sfx.log"
    RUST_LOG=${RUST_LOG:-info} spawn "$STATE/router$sfx.pid" "$STATE/router$sfx.log" \
        ip netns exec "$(ns "rtr$sfx")" "$bin" run --config "$STATE/router$sfx.toml" \
        --socket "$STATE/ctl$sfx.sock" "${extra[@]}"
    pid=$(head -n1 "$STATE/router$sfx.pid")
    deadline=$((${EPOCHREALTIME/./} + SOCKET_TIMEOUT_S * 1000000))
    while ((${EPOCHREALTIME/./} < deadline)); do
        if [[ -S $STATE/ctl$sfx.sock ]]; then
            echo "router running (pid $pid), log: $STATE/router$sfx.log"
            return 0
        fi
        live_pid "$STATE/router$sfx.pid" >/dev/null || break
        sleep 0.1
    done
    if live_pid "$STATE/router$sfx.pid" >/dev/null; then
        echo "lab.sh: router gave no control socket within ${SOCKET_TIMEOUT_S}s; log tail:" >&2
    else
        echo "lab.sh: router exited before its control socket appeared; log tail:" >&2
    fi
    tail -n 30 "$STATE/router$sfx.log" >&2 || true
    stop_router "$ROUTER_N"
    exit 1
}

cmd_router() {
    (($#)) || die "router: expected start, stop or log"
    local sub=$1
    shift
    router_number "${1:-}"
    if [[ ${1:-} =~ ^[0-9]+$ ]]; then
        shift
    fi
    case $sub in
    start) cmd_router_start "$@" ;;
    stop)
        (($# == 0)) || die "router stop: unexpected argument '$1'"
        stop_router "$ROUTER_N"
        echo "router stopped"
        ;;
    log)
        (($# == 0)) || die "router log: unexpected argument '$1'"
        [[ -e $STATE/router$ROUTER_SFX.log ]] || die "no router log at $STATE/router$ROUTER_SFX.log"
        cat "$STATE/router$ROUTER_SFX.log"
        ;;
    *) die "router: unknown sub-command '$sub' (start, stop, log)" ;;
    esac
}

# --- faults ------------------------------------------------------------------------------------

# The fault file of a side holds one active fault per line ("link", "loss 10", ...).
record_fault() { # side kind [value]
    local file=$STATE/faults-$1
    touch "$file"
    grep -v -e "^$2\$" -e "^$2 " "$file" >"$file.tmp" || true
    echo "${*:2}" >>"$file.tmp"
    mv "$file.tmp" "$file"
}

fault_value() { # side kind
    awk -v k="$2" '$1 == k {print $2}' "$STATE/faults-$1" 2>/dev/null || true
}

# loss and delay use netem on both ends of the link, as one qdisc rebuilt from the recorded
# values. Kernels built without sch_netem (the Firecracker VMs here) get the same faults from
# nftables in the PE instead: loss drops at random on rtr0's ingress and egress, and delay diverts
# rtr0's egress through lab_delay.py, which holds each frame 2 x MS (one direction carries the
# whole round-trip delay; the router's own egress is left alone).
apply_impairment() { # side
    local side=$1 loss delay
    loss=$(fault_value "$side" loss)
    delay=$(fault_value "$side" delay)
    if have_netem "$side"; then
        local -a args=(limit 10000)
        [[ -z $loss ]] || args+=(loss "$loss%")
        [[ -z $delay ]] || args+=(delay "${delay}ms")
        in_ns "isp$side" tc qdisc replace dev rtr0 root netem "${args[@]}"
        in_ns "$(side_router "$side")" tc qdisc replace dev "wan-$side" root netem "${args[@]}"
        return 0
    fi
    if [[ -n $loss ]]; then
        nft_loss "$side" "$(awk -v p="$loss" 'BEGIN {printf "%d", p * 100 + 0.5}')"
    fi
    if [[ -n $delay ]]; then
        start_delay_line "$side" $((10#$delay * 2))
    fi
}

have_netem() { # side
    in_ns "isp$1" tc qdisc add dev lo root netem delay 0ms 2>/dev/null || return 1
    in_ns "isp$1" tc qdisc del dev lo root 2>/dev/null || true
}

nft_loss() { # side drop-per-10000
    local rule="numgen random mod 10000 < $2 drop"
    # numgen's range ends at 9999: total loss is a plain drop.
    (($2 < 10000)) || rule=drop
    # Declaring the table first lets the delete succeed on the first run; nft -f is atomic.
    in_ns "isp$1" nft -f - <<EOF
table netdev mhlab-loss {}
delete table netdev mhlab-loss
table netdev mhlab-loss {
    chain ingress {
        type filter hook ingress device "rtr0" priority -10;
        $rule
    }
    chain egress {
        type filter hook egress device "rtr0" priority -10;
        meta mark $DELAY_MARK accept
        $rule
    }
}
EOF
}

start_delay_line() { # side ms
    local side=$1 ms=$2 pe python log i
    log=$STATE/delay-$side.log
    pe=$(ns "isp$side")
    python=$(command -v python3) || die "fault delay: needs sch_netem or python3"
    # Frames pass undelayed while the line restarts, rather than vanish into a dead one.
    in_ns "isp$side" nft delete table netdev mhlab-delay 2>/dev/null || true
    stop_pidfile "$STATE/delay-$side.pid"
    if ! link_exists "isp$side" dly0; then
        ip -n "$pe" link add dly0 type veth peer name dly1
        # Checksums finished and GSO segmented before the frame reaches the delay line.
        in_ns "isp$side" ethtool -K dly0 tx off >/dev/null
        ip -n "$pe" link set dly1 arp off
        links_up "isp$side" dly0 dly1
    fi
    : >"$log"
    spawn "$STATE/delay-$side.pid" "$log" ip netns exec "$pe" "$python" \
        "$SCRIPT_DIR/lab_delay.py" dly1 rtr0 "$ms" "$DELAY_MARK"
    for ((i = 0; i < 50; i++)); do
        grep -qx ready "$log" && break
        sleep 0.1
    done
    grep -qx ready "$log" || die "delay line did not start; see $log"
    in_ns "isp$side" nft -f - <<EOF
table netdev mhlab-delay {
    chain egress {
        type filter hook egress device "rtr0" priority 0;
        meta mark != $DELAY_MARK fwd to "dly0"
    }
}
EOF
}

cmd_fault() {
    (($# >= 2)) || die "fault: expected SIDE (a|b) and KIND"
    local side=$1 kind=$2 pe period secs
    [[ $side == a || $side == b ]] || die "fault: side must be a or b, not '$side'"
    require_lab
    pe=$(ns "isp$side")
    case $kind in
    link)
        (($# == 2)) || die "fault link takes no value"
        ip -n "$pe" link set rtr0 down
        record_fault "$side" link
        ;;
    nexthop)
        (($# == 2)) || die "fault nexthop takes no value"
        # Ingress of the netdev family sees every frame before ARP and IP do.
        ip netns exec "$pe" nft list table netdev mhlab-nexthop >/dev/null 2>&1 ||
            ip netns exec "$pe" nft -f - <<'EOF'
table netdev mhlab-nexthop {
    chain ingress {
        type filter hook ingress device "rtr0" priority 0; policy drop;
    }
}
EOF
        record_fault "$side" nexthop
        ;;
    upstream)
        (($# == 2)) || die "fault upstream takes no value"
        ip netns exec "$pe" nft list table inet mhlab-upstream >/dev/null 2>&1 ||
            ip netns exec "$pe" nft -f - <<'EOF'
table inet mhlab-upstream {
    chain forward {
        type filter hook forward priority 0; policy drop;
    }
}
EOF
        record_fault "$side" upstream
        ;;
    loss)
        (($# == 3)) || die "fault loss needs PCT"
        if ! [[ $3 =~ ^[0-9]+(\.[0-9]+)?$ ]] || ! awk -v p="$3" 'BEGIN {exit !(p <= 100)}'; then
            die "fault loss: PCT must be a number from 0 to 100, not '$3'"
        fi
        record_fault "$side" loss "$3"
        apply_impairment "$side"
        ;;
    delay)
        (($# == 3)) || die "fault delay needs MS"
        [[ $3 =~ ^[0-9]+$ ]] || die "fault delay: MS must be a whole number, not '$3'"
        record_fault "$side" delay "$3"
        apply_impairment "$side"
        ;;
    flap)
        (($# <= 3)) || die "fault flap takes at most PERIOD_MS"
        period=${3:-2000}
        if ! [[ $period =~ ^[0-9]+$ ]] || ((10#$period < 10)); then
            die "fault flap: PERIOD_MS must be a whole number >= 10, not '$period'"
        fi
        secs=$(printf '%d.%03d' $((10#$period / 1000)) $((10#$period % 1000)))
        stop_pidfile "$STATE/flap-$side.pid" group
        # shellcheck disable=SC2016 # $1 belongs to the loop's shell
        spawn "$STATE/flap-$side.pid" /dev/null ip netns exec "$pe" bash -c \
            'while :; do ip link set rtr0 down; sleep "$1"; ip link set rtr0 up; sleep "$1"; done' \
            "$STATE/flap-$side.pid" "$secs"
        record_fault "$side" flap "$period"
        ;;
    *) die "fault: unknown kind '$kind' (link nexthop upstream loss delay flap)" ;;
    esac
    echo "fault on $side: ${*:2}"
}

cmd_heal() {
    (($# == 1)) || die "heal: expected SIDE (a|b)"
    local side=$1 pe table
    [[ $side == a || $side == b ]] || die "heal: side must be a or b, not '$side'"
    require_lab
    pe=$(ns "isp$side")
    stop_pidfile "$STATE/flap-$side.pid" group
    stop_pidfile "$STATE/delay-$side.pid"
    for table in "netdev mhlab-nexthop" "inet mhlab-upstream" "netdev mhlab-loss" \
        "netdev mhlab-delay"; do
        # shellcheck disable=SC2086 # family and name are two words
        ip netns exec "$pe" nft delete table $table 2>/dev/null || true
    done
    ip -n "$pe" link del dly0 2>/dev/null || true
    ip netns exec "$pe" tc qdisc del dev rtr0 root 2>/dev/null || true
    ip netns exec "$(ns "$(side_router "$side")")" tc qdisc del dev "wan-$side" root 2>/dev/null ||
        true
    ip -n "$pe" link set rtr0 up
    rm -f "$STATE/faults-$side"
    echo "side $side healed"
}

# --- extra LAN hosts ---------------------------------------------------------------------------

cmd_host() {
    [[ ${1:-} == add && ${2:-} =~ ^[1-9]$ ]] || die "usage: host add N (N 1..9)"
    local n=$2
    require_lab
    ensure_ns "h$n"
    mkdir -p "/etc/netns/$(ns "h$n")"
    touch "/etc/netns/$(ns "h$n")/resolv.conf"
    ensure_veth "h$n" eth0 rtr "lanh$n"
    ip -n "$(ns rtr)" link set "lanh$n" master br-lan
    links_up "h$n" eth0
    links_up rtr "lanh$n"
    echo "host $(ns "h$n") is on the LAN (eth0, no address)"
}

# --- exec / ctl --------------------------------------------------------------------------------

cmd_exec() {
    (($# >= 2)) || die "exec: expected NS and a command"
    local role=$1
    shift
    case $role in
    lan | rtr | rtr2 | ispa | ispb | net | h[1-9]) ;;
    *) die "exec: namespace must be one of ${ALL_ROLES[*]} h1..h9, not '$role'" ;;
    esac
    ns_exists "$(ns "$role")" || die "namespace $(ns "$role") does not exist"
    exec ip netns exec "$(ns "$role")" "$@"
}

cmd_ctl() {
    local bin
    require_lab
    router_number "${1:-}"
    if [[ ${1:-} =~ ^[0-9]+$ ]]; then
        shift
    fi
    bin=$(router_bin)
    exec ip netns exec "$(ns "rtr$ROUTER_SFX")" "$bin" --socket "$STATE/ctl$ROUTER_SFX.sock" "$@"
}

# --- main --------------------------------------------------------------------------------------

PREFIX=${MH_LAB_PREFIX:-mh-}
while (($#)); do
    case $1 in
    --prefix)
        (($# >= 2)) || die "--prefix needs a value"
        PREFIX=$2
        shift 2
        ;;
    --prefix=*)
        PREFIX=${1#--prefix=}
        shift
        ;;
    -h | --help | help)
        usage
        exit 0
        ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) break ;;
    esac
done
[[ $PREFIX =~ ^[a-z0-9-]{1,8}$ ]] ||
    die "prefix '$PREFIX' must be 1 to 8 characters of [a-z0-9-]"
STATE=${MH_LAB_STATE:-/run/mhlab}/$PREFIX

(($#)) || {
    usage >&2
    exit 2
}
[[ $EUID -eq 0 ]] || die "must run as root (network namespaces)"
verb=$1
shift
case $verb in
down | status) (($# == 0)) || die "$verb takes no arguments" ;;
up) (($# <= 2)) || die "up takes --redundant or --dhcp b" ;;
esac
case $verb in
up) cmd_up "$@" ;;
down) cmd_down ;;
status) cmd_status ;;
router) cmd_router "$@" ;;
fault) cmd_fault "$@" ;;
heal) cmd_heal "$@" ;;
exec) cmd_exec "$@" ;;
host) cmd_host "$@" ;;
isp-dhcp) cmd_isp_dhcp "$@" ;;
isp-dhcp6) cmd_isp_dhcp6 "$@" ;;
ctl) cmd_ctl "$@" ;;
*) die "unknown verb '$verb' (see --help)" ;;
esac
