//! IPv6 multihoming in the lab (SPEC 32, 33) with real peers: the LAN host's own SLAAC takes an
//! address in each provider prefix from the router's RAs; `ping -6` and `iperf3 -6` from each
//! address leave through that prefix's ISP (tcpdump on each PE link), and the PEs drop any
//! other source (BCP 38, scripts/lab.sh); a fault on ISP A deprecates A's prefix on the host
//! and new connections take B's; a reduced uplink MTU gives packet-too-big to `tracepath -6`; a
//! download arriving segment by segment reaches the host merged into TCPv6 super-frames.

mod common;

use std::time::Duration;

use common::*;

const SERVER6: &str = "2001:db8:18::6";

/// scripts/lab.toml (dual stack) with probes every second and tracks that change after 2 s.
fn config(extra_uplink: &str) -> String {
    std::fs::read_to_string(repo().join("scripts/lab.toml"))
        .expect("scripts/lab.toml")
        .replace("interval = \"3s\"", "interval = \"1s\"")
        .replace("timeout = \"1s\"", "timeout = \"500ms\"")
        .replace("delay_down = \"10s\"", "delay_down = \"2s\"")
        .replace("delay_up = \"20s\"", "delay_up = \"2s\"")
        .replace(
            "address6 = \"2001:db8:ffa::1/64\"\n",
            &format!("address6 = \"2001:db8:ffa::1/64\"\n{extra_uplink}"),
        )
}

/// The LAN host's global address in `prefix` (e.g. "2001:db8:a:1:") and its `ip -6 addr` line
/// pair, once SLAAC has made one.
fn host_addr(lab: &Lab, prefix: &str) -> Option<(String, String)> {
    let out = lab.ok("lan", &["ip", "-6", "addr", "show", "dev", "eth0"]);
    let lines: Vec<&str> = out.lines().collect();
    lines.windows(2).find_map(|w| {
        let addr = w[0].trim().strip_prefix("inet6 ")?.split('/').next()?;
        (addr.starts_with(prefix) && !w[0].contains("tentative")).then(|| {
            (
                addr.to_string(),
                format!("{}\n{}", w[0].trim(), w[1].trim()),
            )
        })
    })
}

fn wait_addr(lab: &Lab, prefix: &str) -> String {
    let mut found = None;
    lab.wait_for(
        &format!("a SLAAC address in {prefix}:/64"),
        Duration::from_secs(30),
        || {
            found = host_addr(lab, prefix);
            found.is_some()
        },
    );
    found.unwrap().0
}

/// The preferred lifetime `ip -6 addr` shows for the host's address in `prefix`.
fn preferred_lft(lab: &Lab, prefix: &str) -> Option<String> {
    let (_, lines) = host_addr(lab, prefix)?;
    let lft = lines.split("preferred_lft ").nth(1)?;
    Some(lft.split_whitespace().next()?.to_string())
}

/// Starts the router and waits for both uplinks' tracks to be up and both addresses on the host.
fn start(lab: &Lab, cfg: &str) -> (String, String) {
    lab.start_router(cfg);
    let a = wait_addr(lab, "2001:db8:a:1:");
    let b = wait_addr(lab, "2001:db8:b:1:");
    lab.wait_for("both prefixes preferred", Duration::from_secs(30), || {
        let v = lab.ctl_json(&["show", "ipv6"]);
        v["prefixes"]
            .as_array()
            .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["state"] == "preferred"))
    });
    // Until the tracks come up the RAs deprecate both prefixes and give no default router;
    // the burst that follows reaches the host within seconds.
    lab.wait_for(
        "both addresses preferred and a default route on the host",
        Duration::from_secs(30),
        || {
            let route = lab.ok("lan", &["ip", "-6", "route", "show", "default"]);
            ["2001:db8:a:1:", "2001:db8:b:1:"]
                .iter()
                .all(|p| preferred_lft(lab, p).is_some_and(|l| l != "0sec"))
                && route.contains("proto ra")
        },
    );
    (a, b)
}

/// True when some line of a tcpdump capture comes from `src` to the server.
fn seen_from(capture: &str, src: &str) -> bool {
    capture
        .lines()
        .any(|l| l.contains(&format!("{src} > {SERVER6}")) || l.contains(&format!("{src}.")))
}

#[test]
fn slaac_in_both_prefixes_and_each_source_leaves_through_its_own_isp() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("v61-");
    let (a, b) = start(&lab, &config(""));
    println!(
        "LAN host:\n{}",
        lab.ok("lan", &["ip", "-6", "addr", "show", "dev", "eth0"])
    );
    for (src, mine, other) in [(&a, "ispa", "ispb"), (&b, "ispb", "ispa")] {
        let filter = format!("ip6 and host {SERVER6}");
        let cap_mine = Capture::start(&lab, mine, "rtr0", &filter);
        let cap_other = Capture::start(&lab, other, "rtr0", &filter);
        let ping = lab.exec(
            "lan",
            &["ping", "-6", "-c", "3", "-W", "2", "-I", src, SERVER6],
        );
        assert!(
            ping.status.success(),
            "ping -6 from {src}:\n{}",
            text(&ping)
        );
        let iperf = lab.ok(
            "lan",
            &["iperf3", "-6", "-c", SERVER6, "-B", src, "-t", "1", "-J"],
        );
        let v: serde_json::Value = serde_json::from_str(&iperf).expect("iperf3 -J");
        let bytes = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
        assert!(bytes > 0, "iperf3 -6 from {src} moved nothing: {iperf}");
        println!(
            "iperf3 -6 from {src}: {:.2} Gbit/s",
            v["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .unwrap_or(0.0)
                / 1e9
        );
        let (mine_seen, other_seen) = (cap_mine.stop(), cap_other.stop());
        println!(
            "capture on {mine}/rtr0 (first lines):\n{}",
            mine_seen.lines().take(4).collect::<Vec<_>>().join("\n")
        );
        assert!(
            seen_from(&mine_seen, src),
            "{src} did not leave through {mine}:\n{mine_seen}"
        );
        assert!(
            !other_seen.contains(src.as_str()),
            "{src} leaked to {other}:\n{other_seen}"
        );
    }
    // The router answers pings to its own addresses: its link-local on the LAN, and its
    // address on ISP A's link from the central site.
    let route = lab.ok("lan", &["ip", "-6", "route", "show", "default"]);
    let router_ll = route.split_whitespace().nth(2).expect("default via ROUTER");
    let ll = format!("{router_ll}%eth0");
    assert!(
        lab.exec("lan", &["ping", "-6", "-c", "1", "-W", "2", &ll])
            .status
            .success(),
        "the router's link-local address does not answer"
    );
    assert_eq!(lab.ctl_json(&["show", "ipv6"])["router_lifetime_s"], 1800);
    assert!(
        lab.exec(
            "net",
            &["ping", "-6", "-c", "1", "-W", "2", "2001:db8:ffa::1"]
        )
        .status
        .success(),
        "the router's address on ISP A's link does not answer"
    );
    let neighbours = lab.ctl(&["show", "ipv6"]);
    assert!(
        neighbours.contains(&a) && neighbours.contains("2001:db8:ffa::2"),
        "show ipv6 lacks the resolved neighbours:\n{neighbours}"
    );
}

#[test]
fn a_fault_on_a_deprecates_its_prefix_and_new_connections_use_b() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("v62-");
    let (a, b) = start(&lab, &config(""));
    let before = lab.ok("lan", &["ip", "-6", "addr", "show", "dev", "eth0"]);
    println!("before the fault:\n{before}");
    assert_ne!(
        preferred_lft(&lab, "2001:db8:a:1:").as_deref(),
        Some("0sec")
    );
    let o = lab.sh(&["fault", "a", "nexthop"]);
    assert!(o.status.success(), "{}", text(&o));
    lab.wait_for(
        "A's prefix deprecated on the LAN host (preferred_lft 0)",
        Duration::from_secs(30),
        || preferred_lft(&lab, "2001:db8:a:1:").as_deref() == Some("0sec"),
    );
    let after = lab.ok("lan", &["ip", "-6", "addr", "show", "dev", "eth0"]);
    println!("after the fault on A:\n{after}");
    assert!(after.contains("deprecated"), "{after}");
    let shown = lab.ctl_json(&["show", "ipv6"]);
    assert_eq!(shown["prefixes"][0]["state"], "deprecated", "{shown}");
    assert_eq!(shown["prefixes"][1]["state"], "preferred", "{shown}");
    assert_ne!(
        preferred_lft(&lab, "2001:db8:b:1:").as_deref(),
        Some("0sec"),
        "B's prefix stays preferred"
    );
    // A new connection, its source chosen by the host (RFC 6724 avoids deprecated addresses),
    // leaves through B.
    let cap_b = Capture::start(&lab, "ispb", "rtr0", &format!("ip6 and host {SERVER6}"));
    let iperf = lab.ok("lan", &["iperf3", "-6", "-c", SERVER6, "-t", "1", "-J"]);
    let v: serde_json::Value = serde_json::from_str(&iperf).expect("iperf3 -J");
    assert_eq!(
        v["start"]["connected"][0]["local_host"].as_str(),
        Some(b.as_str()),
        "the new connection's source: {iperf}"
    );
    assert!(seen_from(&cap_b.stop(), &b), "not through ISP B");
    // A flow still sourced from A's prefix is told at once: destination unreachable, code 5.
    let drops = lab.drops("source_policy_failed");
    let ping = lab.exec(
        "lan",
        &["ping", "-6", "-c", "1", "-W", "2", "-I", &a, SERVER6],
    );
    assert!(!ping.status.success(), "{}", text(&ping));
    assert!(
        lab.drops("source_policy_failed") > drops,
        "no code 5 counted: {}",
        text(&ping)
    );
    println!("ping from A's address during the fault:\n{}", text(&ping));
    // Healed: A's prefix is preferred again.
    let o = lab.sh(&["heal", "a"]);
    assert!(o.status.success(), "{}", text(&o));
    lab.wait_for(
        "A's prefix preferred again",
        Duration::from_secs(30),
        || preferred_lft(&lab, "2001:db8:a:1:").is_some_and(|l| l != "0sec"),
    );
    let ping = lab.exec(
        "lan",
        &["ping", "-6", "-c", "1", "-W", "2", "-I", &a, SERVER6],
    );
    assert!(ping.status.success(), "{}", text(&ping));
}

#[test]
fn a_reduced_uplink_mtu_yields_packet_too_big() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("v63-");
    // Both uplinks at 1400, so whichever source the host picks meets the smaller MTU.
    let cfg = config("mtu = 1400\n").replace(
        "address6 = \"2001:db8:ffb::1/64\"\n",
        "address6 = \"2001:db8:ffb::1/64\"\nmtu = 1400\n",
    );
    start(&lab, &cfg);
    let drops = lab.drops("packet_too_big");
    let out = lab.ok("lan", &["tracepath", "-6", "-n", SERVER6]);
    println!("tracepath -6:\n{out}");
    assert!(out.contains("pmtu 1400"), "no packet too big seen:\n{out}");
    assert!(lab.drops("packet_too_big") > drops);
    // The host keeps the path MTU and the next large ping gets through in pieces of 1400.
    let ping = lab.exec("lan", &["ping", "-6", "-c", "2", "-s", "1400", SERVER6]);
    assert!(ping.status.success(), "{}", text(&ping));
}

/// `len` bytes (a multiple of 8) in which each 8-byte word holds its own offset, so that a lost,
/// repeated or misplaced segment shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64 / 8)
        .flat_map(|w| (w * 8).to_be_bytes())
        .collect()
}

/// Sends `data` from the central site's SERVER6 to the LAN host over one TCP connection, the
/// host's kernel choosing the source; returns what the host read up to the server's close, or
/// up to two minutes if it never comes (a download that crawls must fail, not hang).
fn download6(lab: &Lab, data: Vec<u8>) -> Vec<u8> {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{Ipv6Addr, TcpListener, TcpStream};
    let server: Ipv6Addr = SERVER6.parse().unwrap();
    // A socket stays in the namespace it was made in, whichever thread uses it.
    let listener = in_netns(&format!("{}net", lab.prefix), move || {
        TcpListener::bind((server, 0)).expect("listen on the central site")
    });
    let port = listener.local_addr().unwrap().port();
    let sender = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        // Fails only when the receiver gave up, which its caller reports.
        let _ = conn.write_all(&data);
    });
    let received = in_netns(&format!("{}lan", lab.prefix), move || {
        let mut conn = TcpStream::connect((server, port)).expect("connect from the LAN host");
        conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while std::time::Instant::now() < deadline {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("receive: {e}"),
            }
        }
        got
    });
    sender.join().expect("sender");
    received
}

/// A download over IPv6 whose segments reach the router one by one (the far side segments in
/// software, as from an uplink without GRO) reaches the LAN host merged into TCPv6 super-frames:
/// the router's GRO counters move by most of the segments, the host reads every byte sent in
/// order, and with lan0 cutting the super-frames back into segments in software the host's
/// kernel verifies every TCP checksum completed from the router's pseudo-header seed.
#[test]
fn a_download_reaches_the_lan_host_merged_into_tcpv6_super_frames() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("v65-");
    start(&lab, &config(""));
    for (ns, dev) in [
        ("net", "isp-a"),
        ("net", "isp-b"),
        ("ispa", "rtr0"),
        ("ispb", "rtr0"),
        ("rtr", "lan0"),
    ] {
        lab.ok(
            ns,
            &[
                "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off",
            ],
        );
    }
    let gro = || {
        let v = lab.ctl_json(&["show", "counters"]);
        (
            v["gro_frames"].as_u64().unwrap_or(0),
            v["gro_segments"].as_u64().unwrap_or(0),
        )
    };
    let (frames_before, segments_before) = gro();
    let errors_before = lab.nstat("lan", "TcpInCsumErrors");
    let sent = pattern(64 << 20);
    let received = download6(&lab, sent.clone());
    assert_eq!(
        lab.nstat("lan", "TcpInCsumErrors"),
        errors_before,
        "bad TCP checksums on the LAN host"
    );
    assert_eq!(received.len(), sent.len(), "bytes received");
    assert!(
        received == sent,
        "the bytes received differ from those sent"
    );
    let (frames, segments) = gro();
    let (frames, segments) = (frames - frames_before, segments - segments_before);
    println!("{segments} segments merged into {frames} super-frames");
    // 64 MiB are ~47,000 segments of 1428 bytes; nothing else bound for the LAN is TCP.
    assert!(
        segments > 20_000 && frames > 0 && segments > 4 * frames,
        "IPv6 segments not merged: {segments} in {frames} super-frames"
    );
}

/// The lab's ISPs filter sources (BCP 38), which is what makes the egress by source necessary:
/// PE_B forwards a packet from B's prefix toward the central site and drops one from A's.
#[test]
fn the_lab_isps_drop_sources_outside_their_prefix() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("v64-");
    let pe_b = mac_of(&lab, "ispb", "rtr0");
    let wan_b = mac_of(&lab, "rtr", "wan-b");
    let frame = |src: [u8; 16]| {
        let server: std::net::Ipv6Addr = SERVER6.parse().unwrap();
        let mut f = pe_b.to_vec();
        f.extend_from_slice(&wan_b);
        f.extend_from_slice(&[0x86, 0xdd]);
        etherparse::PacketBuilder::ipv6(src, server.octets(), 64)
            .udp(40000, 9)
            .write(&mut f, b"bcp38")
            .unwrap();
        f
    };
    let from = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let at_server = Capture::start(&lab, "net", "isp-b", "ip6 and udp port 9");
    // Both, again until B's has crossed (the PE resolves the server's side first): by then A's
    // has had every chance to cross too.
    lab.wait_for(
        "B's source forwarded by PE_B",
        Duration::from_secs(10),
        || {
            send_raw(
                &format!("{}rtr", lab.prefix),
                "wan-b",
                vec![
                    frame(from("2001:db8:a:1::10")),
                    frame(from("2001:db8:b:1::10")),
                ],
            );
            std::thread::sleep(Duration::from_millis(200));
            at_server.so_far().contains("2001:db8:b:1::10.")
        },
    );
    let seen = at_server.stop();
    assert!(
        seen.contains("2001:db8:b:1::10."),
        "B's source not forwarded:\n{seen}"
    );
    assert!(
        !seen.contains("2001:db8:a:1::10."),
        "A's source leaked through B:\n{seen}"
    );
}
