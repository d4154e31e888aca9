//! The router's IPv6 LAN services in the lab (SPEC 30, 32, 33) with real peers: the router's
//! address in each LAN /64 answers ping, its RAs name those addresses as DNS servers (RFC 8106,
//! read on the LAN host by rdisc6), dig asks them for AAAA over IPv6 (UDP and TCP); `curl -6` to an HTTP
//! server at the central site keeps working across a fault on ISP A, the new connection leaving
//! by PE B from the host's B address (tcpdump); the LAN host's MLD reports are counted as
//! `mld`, not as `broadcast` drops.

mod common;

use std::time::Duration;

use common::*;

const SERVER6: &str = "2001:db8:18::6";
/// The router's addresses on the LAN: ::1 of each LAN /64 (subnet 1 of each ISP's /48).
const ROUTER_A: &str = "2001:db8:a:1::1";
const ROUTER_B: &str = "2001:db8:b:1::1";
/// The HTTP server this binary starts at the central site.
const HTTP_PORT: &str = "8080";

/// scripts/lab.toml (dual stack, DNS forwarder on) with probes every second and tracks that
/// change after 2 s.
fn config() -> String {
    std::fs::read_to_string(repo().join("scripts/lab.toml"))
        .expect("scripts/lab.toml")
        .replace("interval = \"3s\"", "interval = \"1s\"")
        .replace("timeout = \"1s\"", "timeout = \"500ms\"")
        .replace("delay_down = \"10s\"", "delay_down = \"2s\"")
        .replace("delay_up = \"20s\"", "delay_up = \"2s\"")
}

/// The LAN host's global address in `prefix` (e.g. "2001:db8:a:1:") with its `ip -6 addr`
/// lines, once SLAAC has made one.
fn host_addr(lab: &Lab, prefix: &str) -> Option<(String, String)> {
    let out = lab.ok("lan", &["ip", "-6", "addr", "show", "dev", "eth0"]);
    let lines: Vec<&str> = out.lines().collect();
    lines.windows(2).find_map(|w| {
        let addr = w[0].trim().strip_prefix("inet6 ")?.split('/').next()?;
        (addr.starts_with(prefix) && !w[0].contains("tentative") && !addr.ends_with("::99")).then(
            || {
                (
                    addr.to_string(),
                    format!("{}\n{}", w[0].trim(), w[1].trim()),
                )
            },
        )
    })
}

/// The preferred lifetime `ip -6 addr` shows for the host's address in `prefix`.
fn preferred_lft(lab: &Lab, prefix: &str) -> Option<String> {
    let (_, lines) = host_addr(lab, prefix)?;
    let lft = lines.split("preferred_lft ").nth(1)?;
    Some(lft.split_whitespace().next()?.to_string())
}

/// Starts the router; returns the host's A and B addresses once both are preferred.
fn start(lab: &Lab) -> (String, String) {
    lab.start_router(&config());
    lab.wait_for(
        "SLAAC addresses in both prefixes, preferred, and a default route on the host",
        Duration::from_secs(30),
        || {
            let route = lab.ok("lan", &["ip", "-6", "route", "show", "default"]);
            ["2001:db8:a:1:", "2001:db8:b:1:"]
                .iter()
                .all(|p| preferred_lft(lab, p).is_some_and(|l| l != "0sec"))
                && route.contains("proto ra")
        },
    );
    let a = host_addr(lab, "2001:db8:a:1:").unwrap().0;
    let b = host_addr(lab, "2001:db8:b:1:").unwrap().0;
    (a, b)
}

/// The recursive DNS servers the router's RA names, as rdisc6 on the LAN host reads them
/// (it solicits one RA and prints its options).
fn rdnss(lab: &Lab) -> Vec<String> {
    let out = lab.ok("lan", &["rdisc6", "-1", "-n", "-w", "2000", "eth0"]);
    // "Recursive DNS server     : 2001:db8:a:1::1"
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Recursive DNS server"))
        .filter_map(|l| l.split_once(':'))
        .map(|(_, addr)| addr.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

/// `dig AAAA name @server` over IPv6 (UDP, or TCP if `tcp`) from the LAN host: the
/// addresses answered.
fn dig_aaaa(lab: &Lab, server: &str, name: &str, tcp: bool) -> Vec<String> {
    let at = format!("@{server}");
    let transport = if tcp { "+tcp" } else { "+notcp" };
    let out = lab.ok(
        "lan",
        &[
            "dig", "-6", transport, "+short", "+tries=2", "+time=2", "AAAA", name, &at,
        ],
    );
    out.lines().map(|l| l.trim().to_string()).collect()
}

/// The router's first RA (RFC 4861 §6.2.2) leaves only once DAD of its link-local source has
/// run its course (one solicitation from ::, then RetransTimer, 1 s, without an answer), and
/// already carries what the first probes measured: a default router, both prefixes preferred.
fn first_ra_after_dad_with_measured_health(capture: &str) {
    // tcpdump -vv: a line per packet starting with its time, the options indented below.
    let mut packets: Vec<(f64, String)> = Vec::new();
    for line in capture.lines() {
        match line
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<f64>().ok())
        {
            Some(t) if !line.starts_with(char::is_whitespace) => {
                packets.push((t, line.to_string()))
            }
            _ => {
                if let Some(p) = packets.last_mut() {
                    p.1 += &format!("\n{line}");
                }
            }
        }
    }
    let (ra_at, ra) = packets
        .iter()
        .find(|(_, p)| p.contains("router advertisement"))
        .unwrap_or_else(|| panic!("no RA captured:\n{capture}"));
    // "... IP6 (hlim 255, ...) fe80::... > ff02::1: ..."
    let src = ra
        .split(" > ")
        .next()
        .and_then(|head| head.split_whitespace().last())
        .expect("the RA's source");
    assert!(src.starts_with("fe80::"), "{ra}");
    let dad = packets
        .iter()
        .find(|(_, p)| p.contains(":: > ") && p.contains(&format!("who has {src}")))
        .unwrap_or_else(|| panic!("no DAD solicitation for {src} before its RA:\n{capture}"));
    println!(
        "DAD for {src} at {:.3}, first RA at {ra_at:.3}:\n{ra}",
        dad.0
    );
    // Capture stamps against the configured RetransTimer (1 s), a little slack for stamping.
    assert!(
        ra_at - dad.0 >= 0.99,
        "RA {:.3} s after the DAD probe",
        ra_at - dad.0
    );
    assert!(ra.contains("router lifetime 1800s"), "first RA:\n{ra}");
    assert_eq!(ra.matches("pref. time 2700s").count(), 2, "first RA:\n{ra}");
}

#[test]
fn rdnss_names_the_router_which_answers_ping_and_aaaa_and_mld_is_no_drop() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("l61-");
    // Everything the LAN host hears of neighbour discovery from the router's first frame on.
    let nd = Capture::start(
        &lab,
        "lan",
        "eth0",
        "-vv icmp6 and (ip6[40] == 134 or ip6[40] == 135)",
    );
    start(&lab);
    let nd = nd.stop();
    first_ra_after_dad_with_measured_health(&nd);
    let servers = rdnss(&lab);
    println!("RDNSS in the router's RA: {servers:?}");
    assert_eq!(servers, [ROUTER_A, ROUTER_B], "RDNSS");
    let shown = lab.ctl_json(&["show", "ipv6"]);
    assert_eq!(
        shown["rdnss"],
        serde_json::json!([ROUTER_A, ROUTER_B]),
        "{shown}"
    );
    for (i, router) in [ROUTER_A, ROUTER_B].iter().enumerate() {
        assert_eq!(shown["prefixes"][i]["router_address"], *router, "{shown}");
        assert_eq!(
            shown["prefixes"][i]["router_address_in_use"], true,
            "{shown}"
        );
    }
    println!("{}", lab.ctl(&["show", "ipv6"]));
    for router in [ROUTER_A, ROUTER_B] {
        assert!(
            lab.exec("lan", &["ping", "-6", "-c", "1", "-W", "2", router])
                .status
                .success(),
            "the router's LAN address {router} does not answer ping"
        );
        for tcp in [false, true] {
            let got = dig_aaaa(&lab, router, "probe.lab", tcp);
            assert_eq!(got, [SERVER6], "AAAA @{router} (tcp: {tcp})");
        }
    }

    // MLD: the host joins a new solicited-node group (an address without DAD): its MLDv2
    // reports are counted as mld, and no broadcast drop comes with them.
    let counters = |lab: &Lab| {
        let v = lab.ctl_json(&["show", "counters"]);
        (
            v["mld"].as_u64().expect("mld counter"),
            lab.drops("broadcast"),
        )
    };
    let (mld_before, broadcast_before) = counters(&lab);
    let o = lab.exec(
        "lan",
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:a:1::99/64",
            "dev",
            "eth0",
            "nodad",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    lab.wait_for(
        "the host's MLD report counted",
        Duration::from_secs(10),
        || counters(&lab).0 > mld_before,
    );
    // Linux repeats an unsolicited report (robustness 2, within 1 s): let them all arrive.
    std::thread::sleep(Duration::from_millis(1500));
    let (mld_after, broadcast_after) = counters(&lab);
    println!(
        "mld {mld_before} -> {mld_after}, broadcast drops {broadcast_before} -> {broadcast_after}"
    );
    assert_eq!(
        broadcast_after, broadcast_before,
        "MLD counted as a broadcast drop"
    );
}

/// Without probes the uplinks' health is known at once (their carrier), so only DAD holds the
/// first RA back: it still leaves a RetransTimer after the link-local address's probe.
#[test]
fn without_probes_the_first_ra_still_waits_for_the_link_local_dad() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("l63-");
    let full = std::fs::read_to_string(repo().join("scripts/lab.toml")).expect("lab.toml");
    let uplinks_only = full
        .split("[[probe]]")
        .next()
        .expect("the LAN and uplinks")
        .to_string();
    let nd = Capture::start(
        &lab,
        "lan",
        "eth0",
        "-vv icmp6 and (ip6[40] == 134 or ip6[40] == 135)",
    );
    lab.start_router(&uplinks_only);
    lab.wait_for("the first RA", Duration::from_secs(20), || {
        nd.so_far().contains("router advertisement")
    });
    first_ra_after_dad_with_measured_health(&nd.stop());
}

/// `curl -6` from the LAN host (from `source` if given, else the address the host picks) to
/// the central site's HTTP server at `addr`: (local address, HTTP status).
fn curl6(lab: &Lab, addr: &str, source: Option<&str>) -> (String, String) {
    let url = format!("http://[{addr}]:{HTTP_PORT}/");
    let mut cmd = vec![
        "curl",
        "-6",
        "-s",
        "-o",
        "/dev/null",
        "--max-time",
        "5",
        "-w",
        "%{local_ip} %{http_code}",
        &url,
    ];
    if let Some(s) = source {
        cmd.extend(["--interface", s]);
    }
    let o = lab.exec("lan", &cmd);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "curl -6 {url}: {}", text(&o));
    let mut w = out.split_whitespace();
    (
        w.next().unwrap_or_default().to_string(),
        w.next().unwrap_or_default().to_string(),
    )
}

#[test]
fn curl6_by_name_through_the_router_keeps_working_across_a_failover() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("l62-");
    // The central site's HTTP server on its IPv6 address, stopped (by pid) when this ends.
    let _http = lab.spawn(
        "net",
        &["python3", "-m", "http.server", "--bind", SERVER6, HTTP_PORT],
    );
    let (a, b) = start(&lab);
    lab.wait_for("the HTTP server listening", Duration::from_secs(10), || {
        lab.ok("net", &["ss", "-ltnH"])
            .contains(&format!("[{SERVER6}]:{HTTP_PORT}"))
    });
    let resolve = |lab: &Lab| {
        let server = rdnss(lab).into_iter().next().expect("an RDNSS server");
        let addrs = dig_aaaa(lab, &server, "probe.lab", false);
        assert_eq!(
            addrs,
            [SERVER6],
            "probe.lab AAAA through the router at {server}"
        );
        addrs[0].clone()
    };
    // Before the fault, from the host's A address: out by PE A.
    let filter = format!("ip6 and host {SERVER6} and tcp port {HTTP_PORT}");
    let cap_a = Capture::start(&lab, "ispa", "rtr0", &filter);
    let (local, code) = curl6(&lab, &resolve(&lab), Some(&a));
    println!("before the fault: curl -6 from {local}: HTTP {code}");
    assert_eq!((local.as_str(), code.as_str()), (a.as_str(), "200"));
    let seen_a = cap_a.stop();
    assert!(seen_a.contains(&format!("{a}.")), "not by PE A:\n{seen_a}");

    let o = lab.sh(&["fault", "a", "nexthop"]);
    assert!(o.status.success(), "{}", text(&o));
    lab.wait_for(
        "A's prefix deprecated on the LAN host (preferred_lft 0)",
        Duration::from_secs(30),
        || preferred_lft(&lab, "2001:db8:a:1:").as_deref() == Some("0sec"),
    );
    println!(
        "after the fault on A:\n{}",
        lab.ok("lan", &["ip", "-6", "addr", "show", "dev", "eth0"])
    );
    // DNS through the router still works (its LAN addresses do not depend on an uplink), and
    // the new connection takes the host's B address, out by PE B.
    let cap_b = Capture::start(&lab, "ispb", "rtr0", &filter);
    let cap_a = Capture::start(&lab, "ispa", "rtr0", &filter);
    let (local, code) = curl6(&lab, &resolve(&lab), None);
    println!("during the fault: curl -6 from {local}: HTTP {code}");
    assert_eq!((local.as_str(), code.as_str()), (b.as_str(), "200"));
    let (seen_b, seen_a) = (cap_b.stop(), cap_a.stop());
    println!(
        "capture on ispb/rtr0 (first lines):\n{}",
        seen_b.lines().take(3).collect::<Vec<_>>().join("\n")
    );
    assert!(
        seen_b.contains(&format!("{b}.")) && seen_b.contains(&format!("{SERVER6}.{HTTP_PORT}")),
        "the connection did not leave by PE B from {b}:\n{seen_b}"
    );
    assert!(
        seen_a.trim().is_empty(),
        "traffic by PE A during its fault:\n{seen_a}"
    );

    let o = lab.sh(&["heal", "a"]);
    assert!(o.status.success(), "{}", text(&o));
    lab.wait_for(
        "A's prefix preferred again",
        Duration::from_secs(30),
        || preferred_lft(&lab, "2001:db8:a:1:").is_some_and(|l| l != "0sec"),
    );
    assert_eq!(
        curl6(&lab, SERVER6, Some(&a)).1,
        "200",
        "from A's address after healing"
    );
}
