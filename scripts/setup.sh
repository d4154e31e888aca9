#!/usr/bin/env bash
# Provisioning for the lab, the demo and the tests: checks the Rust toolchain against
# Cargo.toml's rust-version and every tool the lab needs, and on Debian installs (apt-get, as
# root) only the packages whose tools are missing. Idempotent: with everything present it
# installs nothing and prints one line.
#
#   scripts/setup.sh              check Rust, install missing lab tools
#   scripts/setup.sh --rust-only  check Rust only (for unprivileged test runs, which need no lab)
#
# Elsewhere than Debian it names the missing tools on one line and exits 1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# tool:package[+package]. dnsmasq comes from dnsmasq-base: the binary without the system-wide
# service, which would otherwise start and hold port 53 on the host. cc is the linker rustc
# needs (rustup does not bring one); c++ builds libFuzzer for the fuzz targets (scripts/fuzz.sh).
# keepalived and tshark are the VRRP peer and dissector of tests/vrrp.rs; dhclient, udhcpc,
# dhcpcd and dig the real clients of the DHCP server and DNS forwarder tests; curl and dig the
# clients of tests/forwards.rs; kea-dhcp4 the ISP's server with short leases in
# tests/uplink_dhcp.rs, kea-dhcp6 the ISP's prefix delegation server in tests/ipv6_pd.rs
# (lab.sh runs them in a lab namespace; Debian's packages also install system services whose
# default configs listen on no interface); rdisc6 (ndisc6) reads the router's RAs on the LAN
# host in tests/ipv6_lan.rs (its RDNSS option); gnuplot draws bench/run.sh's plots, perf
# (linux-perf) counts its 64-byte UDP case and valgrind runs the router under callgrind for
# --callgrind.
TOOLS="cc:gcc+libc6-dev c++:g++ ip:iproute2 ss:iproute2 bridge:iproute2 tc:iproute2 iperf3:iperf3 nft:nftables
ethtool:ethtool tcpdump:tcpdump dnsmasq:dnsmasq-base ping:iputils-ping traceroute:traceroute
python3:python3 setpriv:util-linux sysctl:procps timeout:coreutils jq:jq keepalived:keepalived
tshark:tshark dhclient:isc-dhcp-client udhcpc:udhcpc dhcpcd:dhcpcd-base dig:bind9-dnsutils
curl:curl setsid:util-linux kea-dhcp4:kea-dhcp4-server kea-dhcp6:kea-dhcp6-server
tracepath:iputils-tracepath rdisc6:ndisc6 gnuplot:gnuplot-nox
perf:linux-perf callgrind_control:valgrind"

say() { echo "mhrouter setup: $*"; }

# Root's tools live in sbin, which an unprivileged PATH may lack.
have() { PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }

check_rust() {
    local want have_v
    want=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$here/../Cargo.toml")
    if ! have cargo || ! have rustc; then
        say "Rust is missing: install it with rustup (https://rustup.rs), version $want or later"
        exit 1
    fi
    have_v=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n%s\n' "$want" "$have_v" | sort -V | head -1)" != "$want" ]; then
        say "rustc $have_v is older than the $want this crate needs: rustup update stable"
        exit 1
    fi
}

missing_tools() {
    local pair
    for pair in $TOOLS; do
        have "${pair%%:*}" || printf '%s ' "$pair"
    done
}

check_rust
if [ "${1:-}" = --rust-only ]; then
    have cc || { say "no C linker (cc) for rustc: apt-get install gcc libc6-dev"; exit 1; }
    exit 0
fi

missing=$(missing_tools)
if [ -z "$missing" ]; then
    say "ok (rustc $(rustc --version | awk '{print $2}'), all lab tools present)"
    exit 0
fi
names=$(for p in $missing; do printf '%s ' "${p%%:*}"; done)
packages=$(for p in $missing; do echo "${p#*:}" | tr '+' '\n'; done | sort -u | tr '\n' ' ')
if ! have apt-get; then
    say "missing tools: ${names% } (not a Debian host: install them with your package manager)"
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    say "missing tools: ${names% } (as root: apt-get install ${packages% })"
    exit 1
fi
say "installing ${packages% } (for ${names% })"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
# shellcheck disable=SC2086 # one word per package
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $packages; } >"$log" 2>&1; then
    cat "$log"
    rm -f "$log"
    say "apt-get failed (its output is above)"
    exit 1
fi
rm -f "$log"
missing=$(missing_tools)
if [ -n "$missing" ]; then
    say "still missing after apt-get: $missing"
    exit 1
fi
say "ok (installed ${packages% })"
