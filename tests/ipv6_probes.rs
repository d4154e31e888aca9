//! IPv6 probes, tracks, routes and policies in the lab (SPEC 34) with real peers: an ICMPv6
//! echo probe on each uplink to the central site leaves through that uplink's PE from its
//! `address6`, and TCP and DNS probes over IPv6 on B (tcpdump on each PE link); `show probes`,
//! `show tracks`, `show route` and the metrics carry them; an IPv6 policy makes pings from A's
//! prefix unreachable; the IPv6 probe alone decides the uplink's IPv6 health: `lab.sh fault a
//! nexthop` makes A's fail, its track goes down (log line), A's prefix is deprecated on the LAN
//! host (`ip -6 addr`: preferred_lft 0sec) while B's stays preferred, A's tracked IPv6 default
//! route is withdrawn (log line) and `explain` of a flow from A's prefix says code 5; `heal`
//! brings all back.

mod common;

use std::time::Duration;

use common::*;

const SERVER6: &str = "2001:db8:18::6";

/// The lab's dual-stack site with IPv6 probes only: nothing but the ICMPv6 probe of an uplink
/// watches it, so its prefix follows that probe (the IPv4 default routes are untracked). IPv6
/// default routes via A (distance 10) and B (20), each tracked by its uplink's probe.
fn config() -> String {
    let uplink = |name: &str, wan: &str, v4: &str, hop: &str, isp: char, distance6: u8| {
        format!(
            "[[uplink]]\nname = \"{name}\"\ninterface = \"{wan}\"\naddress = \"{v4}\"\nnext_hop = \"{hop}\"\n\
             prefix6 = \"2001:db8:{isp}::/48\"\nsubnet_id = 1\naddress6 = \"2001:db8:ff{isp}::1/64\"\n\
             next_hop6 = \"2001:db8:ff{isp}::2\"\n\n\
             [[route]]\nname = \"{name}-default\"\nprefix = \"0.0.0.0/0\"\nuplink = \"{name}\"\ndistance = 10\n\n\
             [[route]]\nname = \"{isp}6-default\"\nprefix = \"::/0\"\nuplink = \"{name}\"\ndistance = {distance6}\ntrack = \"{isp}6-e2e\"\n\n\
             [[probe]]\nname = \"{isp}6-e2e\"\ntype = \"icmp-echo\"\nuplink = \"{name}\"\ntarget = \"{SERVER6}\"\n\
             interval = \"500ms\"\ntimeout = \"400ms\"\n\n\
             [[track]]\nname = \"{isp}6-e2e\"\nprobe = \"{isp}6-e2e\"\ndelay_down = \"1500ms\"\ndelay_up = \"2s\"\n\n"
        )
    };
    format!(
        "[router]\nmetrics_listen = \"127.0.0.1:9580\"\n\n\
         [lan]\ntap = \"mhr-lan\"\nbridge = \"br-lan\"\naddress = \"192.168.0.1/24\"\nipv6 = true\n\n{}{}",
        uplink("isp-a", "wan-a", "172.16.1.1/30", "172.16.1.2", 'a', 10),
        uplink("isp-b", "wan-b", "172.17.3.1/30", "172.17.3.2", 'b', 20),
    ) + POLICY
        + PROBES_B
}

/// Pings from A's LAN prefix may only leave by B, which cannot carry that source (BCP 38, no
/// NPTv6): unreachable.
const POLICY: &str = "[[policy]]\nname = \"a-icmp-via-b\"\nsource = \"2001:db8:a:1::/64\"\n\
protocol = \"icmp\"\nuplinks = [\"isp-b\"]\nfallback = \"unreachable\"\n";

/// TCP and DNS over IPv6 on B, watched by no track: the central site's iperf3 port and resolver.
const PROBES_B: &str = "[[probe]]\nname = \"b6-tcp\"\ntype = \"tcp\"\nuplink = \"isp-b\"\n\
target = \"2001:db8:18::6\"\nport = 5201\ninterval = \"500ms\"\ntimeout = \"400ms\"\n\n\
[[probe]]\nname = \"b6-dns\"\ntype = \"dns\"\nuplink = \"isp-b\"\ntarget = \"2001:db8:18::6\"\n\
query = \"probe.lab\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\n";

/// The preferred lifetime `ip -6 addr` shows for the LAN host's SLAAC address in `prefix`.
fn preferred_lft(lab: &Lab, prefix: &str) -> Option<String> {
    let out = lab.ok("lan", &["ip", "-6", "addr", "show", "dev", "eth0"]);
    let lines: Vec<&str> = out.lines().collect();
    lines.windows(2).find_map(|w| {
        let addr = w[0].trim().strip_prefix("inet6 ")?;
        if !addr.starts_with(prefix) || w[0].contains("tentative") {
            return None;
        }
        let lft = w[1].split("preferred_lft ").nth(1)?;
        Some(lft.split_whitespace().next()?.to_string())
    })
}

fn preferred(lab: &Lab, prefix: &str) -> bool {
    preferred_lft(lab, prefix).is_some_and(|l| l != "0sec")
}

fn track_state(lab: &Lab, name: &str) -> String {
    let v = lab.ctl_json(&["show", "tracks"]);
    v["tracks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == name))
        .map(|t| t["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// The LAN host's SLAAC address in `prefix`.
fn host_addr(lab: &Lab, prefix: &str) -> String {
    let out = lab.ok("lan", &["ip", "-6", "addr", "show", "dev", "eth0"]);
    out.lines()
        .find_map(|l| {
            let a = l.trim().strip_prefix("inet6 ")?.split('/').next()?;
            a.starts_with(prefix).then(|| a.to_string())
        })
        .unwrap_or_else(|| panic!("no address in {prefix}: {out}"))
}

fn explain(lab: &Lab, src: &str) -> serde_json::Value {
    lab.ctl_json(&["explain", src, SERVER6, "tcp", "40000", "443"])
}

/// The central site's echo requests in a capture: (source, count).
fn requests_from(capture: &str, src: &str) -> usize {
    capture
        .lines()
        .filter(|l| l.contains(&format!("{src} > {SERVER6}")) && l.contains("echo request"))
        .count()
}

#[test]
fn icmpv6_probes_drive_tracks_routes_and_prefix_deprecation() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("p6-");
    let filter = format!("ip6 and host {SERVER6}");
    let cap_a = Capture::start(&lab, "ispa", "rtr0", &filter);
    let cap_b = Capture::start(&lab, "ispb", "rtr0", &filter);
    lab.start_router(&config());
    lab.wait_for("both IPv6 tracks up", Duration::from_secs(20), || {
        track_state(&lab, "a6-e2e") == "up" && track_state(&lab, "b6-e2e") == "up"
    });
    let (seen_a, seen_b) = (cap_a.stop(), cap_b.stop());
    println!(
        "PE_A link:\n{}\nPE_B link:\n{}",
        seen_a.lines().take(4).collect::<Vec<_>>().join("\n"),
        seen_b.lines().take(4).collect::<Vec<_>>().join("\n")
    );
    // Each probe from its uplink's address6, through its own PE only, and answered there.
    assert!(requests_from(&seen_a, "2001:db8:ffa::1") > 0, "{seen_a}");
    assert!(requests_from(&seen_b, "2001:db8:ffb::1") > 0, "{seen_b}");
    assert!(
        !seen_a.contains("2001:db8:ffb::1"),
        "B's probe via A:\n{seen_a}"
    );
    assert!(
        !seen_b.contains("2001:db8:ffa::1"),
        "A's probe via B:\n{seen_b}"
    );
    assert!(
        seen_a.contains(&format!("{SERVER6} > 2001:db8:ffa::1: ICMP6, echo reply")),
        "{seen_a}"
    );
    // TCP and DNS probes over IPv6 leave B from its address6 too, and are answered.
    assert!(
        seen_b.contains(&format!(" > {SERVER6}.5201: Flags [S]")) && seen_b.contains(".53: "),
        "{seen_b}"
    );
    lab.wait_for(
        "the TCP and DNS probes over IPv6 answered",
        Duration::from_secs(10),
        || {
            let probes = lab.ctl_json(&["show", "probes"]);
            ["b6-tcp", "b6-dns"].iter().all(|name| {
                probes["probes"]
                    .as_array()
                    .and_then(|p| p.iter().find(|p| p["name"] == *name))
                    .is_some_and(|p| p["stats"]["ok"].as_u64() > Some(0))
            })
        },
    );

    // The views and the metrics carry the IPv6 probes.
    let probes = lab.ctl_json(&["show", "probes"]);
    let a6 = probes["probes"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "a6-e2e"))
        .unwrap_or_else(|| panic!("no a6-e2e in {probes}"));
    assert_eq!(a6["target"], SERVER6, "{probes}");
    assert_eq!(a6["uplink"], "isp-a", "{probes}");
    assert!(a6["stats"]["ok"].as_u64() > Some(0), "{probes}");
    let shown = lab.ctl(&["show", "probes"]);
    assert!(
        shown.contains(&format!("IP SLA a6-e2e (icmp-echo to {SERVER6} via isp-a)")),
        "{shown}"
    );
    let metrics = lab.ok("rtr", &["curl", "-sS", "http://127.0.0.1:9580/metrics"]);
    let series = format!(
        "mhrouter_probe_sent_total{{probe=\"a6-e2e\",uplink=\"isp-a\",target=\"{SERVER6}\""
    );
    assert!(metrics.contains(&series), "no {series} in:\n{metrics}");

    lab.wait_for(
        "both prefixes preferred on the LAN host",
        Duration::from_secs(30),
        || preferred(&lab, "2001:db8:a:1:") && preferred(&lab, "2001:db8:b:1:"),
    );
    // The IPv6 routes: A's installed, B's standing by; each source leaves by its own prefix.
    let routes = lab.ctl(&["show", "route"]);
    println!("{routes}");
    assert!(
        routes.contains(
            "S*          ::/0 [10/0] via 2001:db8:ffa::2, isp-a (a6-default, track a6-e2e up)"
        ),
        "{routes}"
    );
    assert!(
        routes.contains("standby     ::/0 [20/0] via 2001:db8:ffb::2, isp-b (b6-default"),
        "{routes}"
    );
    let json = lab.ctl_json(&["show", "route"]);
    assert_eq!(json["routes6"][0]["installed"], true, "{json}");
    assert_eq!(json["routes6"][1]["reason"], "standby", "{json}");
    let metrics = lab.ok("rtr", &["curl", "-sS", "http://127.0.0.1:9580/metrics"]);
    assert!(
        metrics.contains(
            "mhrouter_route_installed{route=\"a6-default\",prefix=\"::/0\",uplink=\"isp-a\",distance=\"10\"} 1"
        ),
        "{metrics}"
    );
    let (host_a, host_b) = (
        host_addr(&lab, "2001:db8:a:1:"),
        host_addr(&lab, "2001:db8:b:1:"),
    );
    let e = explain(&lab, &host_a);
    assert_eq!(e["egress"], "isp-a", "{e}");
    assert_eq!(e["next_hop"], "2001:db8:ffa::2", "{e}");
    assert!(
        e["decided_by"]
            .as_str()
            .unwrap_or("")
            .starts_with("route a6-default"),
        "{e}"
    );
    // The IPv6 policy: pings from A's prefix are unreachable (ICMPv6 from the router), B's go.
    assert!(
        routes.contains("IPv6 policies (checked in order before the IPv6 routes):\n  1 a-icmp-via-b: from 2001:db8:a:1::/64 proto 58 -> isp-b; else unreachable"),
        "{routes}"
    );
    let drops = lab.drops("no_route");
    let ping = lab.exec(
        "lan",
        &["ping", "-6", "-c", "1", "-W", "2", "-I", &host_a, SERVER6],
    );
    assert!(!ping.status.success(), "{}", text(&ping));
    assert!(
        text(&ping).contains("Destination unreachable"),
        "{}",
        text(&ping)
    );
    assert!(lab.drops("no_route") > drops);
    let ping = lab.exec(
        "lan",
        &["ping", "-6", "-c", "1", "-W", "2", "-I", &host_b, SERVER6],
    );
    assert!(ping.status.success(), "{}", text(&ping));
    let e = lab.ctl_json(&["explain", &host_a, SERVER6, "icmp"]);
    assert_eq!(
        e["decided_by"],
        "policy a-icmp-via-b: none of its uplinks can carry the source: ICMPv6 unreachable",
        "{e}"
    );
    let e = explain(&lab, &host_b);
    assert_eq!(e["egress"], "isp-b", "{e}");
    assert_eq!(
        e["decided_by"], "source prefix 2001:db8:b::/48 of isp-b",
        "A's route cannot carry B's source: {e}"
    );

    let o = lab.sh(&["fault", "a", "nexthop"]);
    assert!(o.status.success(), "{}", text(&o));
    lab.wait_for(
        "A's prefix deprecated on the LAN host (preferred_lft 0sec)",
        Duration::from_secs(20),
        || preferred_lft(&lab, "2001:db8:a:1:").as_deref() == Some("0sec"),
    );
    assert!(
        lab.log()
            .contains("track a6-e2e: change #2 up -> down (probe a6-e2e:"),
        "no log line for the IPv6 track going down:\n{}",
        lab.log()
    );
    assert!(
        lab.log()
            .contains("route ::/0 via isp-a [10] withdrawn; now via isp-b [20]"),
        "no log line for the IPv6 route change:\n{}",
        lab.log()
    );
    assert_eq!(track_state(&lab, "b6-e2e"), "up");
    assert!(
        preferred(&lab, "2001:db8:b:1:"),
        "B's prefix stays preferred"
    );
    let shown = lab.ctl_json(&["show", "ipv6"]);
    assert_eq!(shown["prefixes"][0]["state"], "deprecated", "{shown}");
    let json = lab.ctl_json(&["show", "route"]);
    assert_eq!(json["routes6"][0]["reason"], "track down", "{json}");
    assert_eq!(json["routes6"][1]["installed"], true, "{json}");
    let e = explain(&lab, &host_a);
    assert_eq!(e["egress"], "none", "{e}");
    assert_eq!(
        e["decided_by"], "source in the prefix of isp-a, which is down: ICMPv6 unreachable code 5",
        "{e}"
    );
    let e = explain(&lab, &host_b);
    assert!(
        e["decided_by"]
            .as_str()
            .unwrap_or("")
            .starts_with("route b6-default"),
        "{e}"
    );
    println!(
        "{}",
        lab.ctl(&["explain", &host_a, SERVER6, "tcp", "40000", "443"])
    );
    println!(
        "LAN host during the fault on A:\n{}",
        lab.ok("lan", &["ip", "-6", "addr", "show", "dev", "eth0"])
    );

    let o = lab.sh(&["heal", "a"]);
    assert!(o.status.success(), "{}", text(&o));
    lab.wait_for(
        "A's prefix preferred again",
        Duration::from_secs(20),
        || preferred(&lab, "2001:db8:a:1:"),
    );
    assert!(
        lab.log()
            .contains("track a6-e2e: change #3 down -> up (probe a6-e2e: ok"),
        "no log line for the IPv6 track coming back:\n{}",
        lab.log()
    );
    assert!(
        lab.log()
            .contains("route ::/0 via isp-b [20] preempted; now via isp-a [10]"),
        "{}",
        lab.log()
    );
}
