#!/usr/bin/env bash
# The lab demo: installs what the lab needs (scripts/setup.sh), builds the release binary, brings up the reference-site lab (prefix mh-),
# starts the router with scripts/lab.toml, then shows it working. The lab stays up for you to
# explore; `scripts/demo.sh down` removes it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lab() { "$here/lab.sh" --prefix "${MH_LAB_PREFIX:-mh-}" "$@"; }
if [ "$(id -u)" != 0 ]; then
    echo "mhrouter demo: run it as root (it builds network namespaces)" >&2
    exit 1
fi

if [ "${1:-}" = down ]; then
    lab router stop || true
    lab down
    exit 0
fi

"$here/setup.sh"
(cd "$here/.." && cargo build --release)
export MHROUTER_BIN="${CARGO_TARGET_DIR:-$here/../target}/release/mhrouter"
lab up
lab router start
echo "== waiting for the probes to bring the primary route up (tracks: delay up 20 s)"
for _ in $(seq 1 200); do
    lab ctl show route | grep -q '\[10/0\]' && break
    sleep 0.2
done
lab ctl show route
echo "== LAN host pings the central site through the router"
lab exec lan ping -c 3 172.18.0.6
echo "== traceroute from the LAN host"
lab exec lan traceroute -n -w 1 -q 1 172.18.0.6
echo "== iperf3 through the router (3 s each way)"
lab exec lan iperf3 -c 172.18.0.6 -t 3 | tail -3
lab exec lan iperf3 -c 172.18.0.6 -t 3 -R | tail -3
lab ctl show tracks
lab ctl show counters | head -3
cat <<EOT

The lab is up. Try:
  scripts/lab.sh fault a nexthop      # A's next hop dies silently; watch the log:
  scripts/lab.sh router log
  scripts/lab.sh ctl show route
  scripts/lab.sh heal a
  scripts/demo.sh down                # remove the lab
EOT
