//! NPTv6 in the lab (SPEC 33) with real peers: with `[lan] npt6_prefix` the LAN host's own
//! SLAAC takes a ULA from the router's RAs (and no provider address); `ping -6` and TCP to the
//! central site work, leaving through ISP A with the source translated into 2001:db8:a:1::/64
//! (tcpdump on PE A's link shows the address RFC 6296 gives, and every TCP checksum correct
//! with offloads off on the path); after A's carrier fails, new connections leave through B
//! translated into 2001:db8:b:1::/64, and a TCP flow that was going out through A is reset by
//! the far end, which sees its segments come from a new address. Also ICMPv6 "address
//! unreachable" (type 1 code 3) for a LAN address that does not answer neighbour discovery.

mod common;

use std::net::Ipv6Addr;
use std::time::Duration;

use common::*;
use mhrouter::nat::npt6::Npt6;

const SERVER6: &str = "2001:db8:18::6";
const ULA: &str = "fd00:db8:1::/64";

/// scripts/lab.toml (dual stack) with probes every second and tracks that change after 2 s;
/// `lan_extra` is added to `[lan]`.
fn config(lan_extra: &str) -> String {
    std::fs::read_to_string(repo().join("scripts/lab.toml"))
        .expect("scripts/lab.toml")
        .replace("interval = \"3s\"", "interval = \"1s\"")
        .replace("timeout = \"1s\"", "timeout = \"500ms\"")
        .replace("delay_down = \"10s\"", "delay_down = \"2s\"")
        .replace("delay_up = \"20s\"", "delay_up = \"2s\"")
        .replace("ipv6 = true\n", &format!("ipv6 = true\n{lan_extra}"))
}

/// The LAN host's usable global addresses (`ip -6 -o addr`, tentative ones left out).
fn host_addrs(lab: &Lab) -> Vec<Ipv6Addr> {
    lab.ok(
        "lan",
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global",
        ],
    )
    .lines()
    .filter(|l| !l.contains("tentative"))
    .filter_map(|l| l.split_whitespace().nth(3)?.split('/').next()?.parse().ok())
    .collect()
}

/// Waits until the host has an address in `prefix` and a default route from the RAs.
fn wait_slaac(lab: &Lab, prefix: &str) -> Ipv6Addr {
    let prefix: mhrouter::prefix6::Ipv6Prefix = prefix.parse().unwrap();
    let mut found = None;
    lab.wait_for(
        &format!("a SLAAC address in {prefix} and a default route"),
        Duration::from_secs(30),
        || {
            found = host_addrs(lab).into_iter().find(|a| prefix.contains(*a));
            let route = lab.ok("lan", &["ip", "-6", "route", "show", "default"]);
            found.is_some() && route.contains("proto ra")
        },
    );
    found.unwrap()
}

fn mapping(external: &str) -> Npt6 {
    Npt6::new(ULA.parse().unwrap(), external.parse().unwrap()).unwrap()
}

/// Offloads off on every interface between the LAN host and the central site, so each
/// checksum is complete on the wire (tcpdump checks it) and verified by the receiving stack.
fn offloads_off(lab: &Lab) {
    for (ns, dev) in [
        ("lan", "eth0"),
        ("rtr", "lan0"),
        ("rtr", "wan-a"),
        ("rtr", "wan-b"),
        ("ispa", "rtr0"),
        ("ispb", "rtr0"),
        ("net", "isp-a"),
        ("net", "isp-b"),
    ] {
        lab.ok(
            ns,
            &[
                "ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off",
            ],
        );
    }
}

/// The central site's count of TCP segments with a bad checksum.
fn csum_errors(lab: &Lab) -> u64 {
    lab.nstat("net", "TcpInCsumErrors")
}

/// Lines of a `tcpdump -v` capture (two lines per IPv6 packet, joined) from `src`.
fn lines_from(capture: &str, src: Ipv6Addr) -> Vec<String> {
    let mut packets = Vec::new();
    for l in capture.lines() {
        if l.starts_with(' ') {
            if let Some(last) = packets.last_mut() {
                *last += l;
            }
        } else {
            packets.push(l.to_string());
        }
    }
    packets
        .into_iter()
        .filter(|p| p.contains(&format!(" {src}.")) || p.contains(&format!(" {src} >")))
        .collect()
}

/// The TCP payload length tcpdump reports for a segment (its last "length N").
fn segment_len(line: &str) -> usize {
    line.rsplit("length ")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_lan_ula_leaves_translated_into_each_isps_prefix() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("np1-");
    offloads_off(&lab);
    lab.start_router(&config(&format!("npt6_prefix = \"{ULA}\"\n")));
    let host = wait_slaac(&lab, ULA);
    let addrs = host_addrs(&lab);
    println!("LAN host: {addrs:?}");
    assert!(
        !addrs.iter().any(|a| a.segments()[..2] == [0x2001, 0xdb8]),
        "the RAs carry only the ULA: {addrs:?}"
    );
    let shown = lab.ctl_json(&["show", "ipv6"]);
    for (row, lan_prefix) in [(0, "2001:db8:a:1::/64"), (1, "2001:db8:b:1::/64")] {
        let p = &shown["prefixes"][row];
        assert_eq!(
            (&p["npt6_prefix"], &p["lan_prefix"]),
            (&ULA.into(), &lan_prefix.into()),
            "{shown}"
        );
    }
    let via_a = mapping("2001:db8:a:1::/64").to_external(host).unwrap();
    let via_b = mapping("2001:db8:b:1::/64").to_external(host).unwrap();
    let filter = format!("-v ip6 and host {SERVER6}");
    lab.wait_for("A carries IPv6", Duration::from_secs(30), || {
        lab.exec("lan", &["ping", "-6", "-c", "1", "-W", "1", SERVER6])
            .status
            .success()
    });

    // Through A: ping and TCP, the source translated as RFC 6296 says, checksums correct.
    let errors = csum_errors(&lab);
    let cap_a = Capture::start(&lab, "ispa", "rtr0", &filter);
    let cap_b = Capture::start(&lab, "ispb", "rtr0", &filter);
    let ping = lab.exec("lan", &["ping", "-6", "-c", "2", "-W", "2", SERVER6]);
    assert!(ping.status.success(), "ping -6:\n{}", text(&ping));
    let iperf = lab.ok("lan", &["iperf3", "-6", "-c", SERVER6, "-t", "1", "-J"]);
    let v: serde_json::Value = serde_json::from_str(&iperf).expect("iperf3 -J");
    assert!(
        v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0) > 0,
        "iperf3 -6 moved nothing: {iperf}"
    );
    let (seen_a, seen_b) = (cap_a.stop(), cap_b.stop());
    let out_a = lines_from(&seen_a, via_a);
    println!(
        "PE A sees {host} as {via_a}:\n{}",
        out_a.iter().take(3).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(
        out_a.iter().any(|l| l.contains("ICMP6, echo request")),
        "no translated ping on PE A:\n{seen_a}"
    );
    let tcp: Vec<_> = out_a.iter().filter(|l| l.contains("Flags [")).collect();
    assert!(!tcp.is_empty(), "no translated TCP on PE A:\n{seen_a}");
    assert!(
        tcp.iter().all(|l| l.contains("(correct)")),
        "TCP checksums not all correct on PE A:\n{tcp:#?}"
    );
    assert!(
        !seen_a.contains(&host.to_string()) && !seen_b.contains(&host.to_string()),
        "the ULA leaked to an ISP"
    );
    assert!(
        lines_from(&seen_b, via_a).is_empty() && lines_from(&seen_b, via_b).is_empty(),
        "the host's traffic through B:\n{seen_b}"
    );
    assert_eq!(
        csum_errors(&lab),
        errors,
        "bad TCP checksums at the central site"
    );

    // A long upload through A, then A's carrier fails: the flow's segments now leave through
    // B from another address, and the far end answers them with a RST.
    let cap_a = Capture::start(&lab, "ispa", "rtr0", &filter);
    let cap_b = Capture::start(&lab, "ispb", "rtr0", &filter);
    let mut upload = lab.spawn("lan", &["iperf3", "-6", "-c", SERVER6, "-t", "60", "-J"]);
    lab.wait_for(
        "the upload under way through A",
        Duration::from_secs(10),
        || {
            lines_from(&cap_a.so_far(), via_a)
                .iter()
                .any(|l| segment_len(l) > 500)
        },
    );
    cap_a.stop();
    let o = lab.sh(&["fault", "a", "link"]);
    assert!(o.status.success(), "{}", text(&o));
    lab.wait_for("the moved upload to end", Duration::from_secs(20), || {
        upload.0.try_wait().unwrap().is_some()
    });
    let mut upload_out = String::new();
    std::io::Read::read_to_string(&mut upload.0.stdout.take().unwrap(), &mut upload_out).unwrap();
    assert!(
        upload_out.contains("reset"),
        "the moved upload was not reset: {upload_out}"
    );
    let ping = lab.exec("lan", &["ping", "-6", "-c", "2", "-W", "2", SERVER6]);
    assert!(
        ping.status.success(),
        "ping -6 after the fault:\n{}",
        text(&ping)
    );
    let dig = lab.ok(
        "lan",
        &[
            "dig",
            "+tcp",
            "+short",
            "+tries=1",
            "@2001:db8:18::6",
            "probe.lab",
        ],
    );
    assert!(
        dig.contains("172.18.0.6"),
        "DNS over TCP after the fault: {dig}"
    );
    let seen_b = cap_b.stop();
    let out_b = lines_from(&seen_b, via_b);
    println!(
        "after the fault, PE B sees {host} as {via_b}:\n{}",
        out_b.iter().take(3).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(
        out_b
            .iter()
            .any(|l| l.contains(".53: Flags [S]") && l.contains("(correct)")),
        "no new TCP connection from {via_b} through B:\n{seen_b}"
    );
    assert!(
        seen_b
            .lines()
            .any(|l| l.contains(&format!("{SERVER6}.5201 > {via_b}.")) && l.contains("Flags [R")),
        "no RST from the far end for the moved flow:\n{seen_b}"
    );
    assert_eq!(
        csum_errors(&lab),
        errors,
        "bad TCP checksums at the central site"
    );
}

/// A ping from the central site to a LAN address nobody holds: the router's neighbour
/// discovery gives up and answers ICMPv6 destination unreachable, code 3.
#[test]
fn an_unused_lan_address_is_address_unreachable() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("np2-");
    lab.start_router(&config(""));
    wait_slaac(&lab, "2001:db8:a:1::/64");
    let drops = lab.drops("no_neighbour");
    let ping = lab.exec(
        "net",
        &["ping", "-6", "-c", "1", "-W", "8", "2001:db8:a:1::dead"],
    );
    let out = text(&ping);
    println!("{out}");
    assert!(!ping.status.success());
    assert!(
        out.contains("Address unreachable"),
        "no ICMPv6 address unreachable:\n{out}"
    );
    assert!(lab.drops("no_neighbour") > drops);
}
