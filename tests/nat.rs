//! NAT in the lab beyond the basics of tests/forwarding.rs (SPEC 9–12): fragments both ways,
//! a full table, ICMP errors from the LAN, and anti-spoofing on the LAN side.

mod common;

use std::time::Duration;

use common::*;

/// IP header lines of a `tcpdump -v` capture whose source is `src`.
fn ip_headers_from<'a>(capture: &'a str, src: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = capture.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].contains(" IP (") && w[1].trim_start().starts_with(&format!("{src} >")))
        .map(|w| w[0])
        .collect()
}

#[test]
fn fragments_are_translated_both_ways() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("nt1-");
    lab.start_router(&static_config(""));
    assert!(lab.ping("lan", "172.18.0.6"));
    // The LAN host fragments its requests, the server its replies (routes with MTU 1000): every
    // fragment must be translated, or the other end cannot reassemble and the ping fails.
    lab.ok(
        "lan",
        &[
            "ip",
            "route",
            "replace",
            "172.18.0.6",
            "via",
            "192.168.0.1",
            "dev",
            "eth0",
            "mtu",
            "1000",
        ],
    );
    lab.ok(
        "net",
        &[
            "ip",
            "route",
            "replace",
            "172.16.1.0/30",
            "via",
            "10.255.1.1",
            "dev",
            "isp-a",
            "mtu",
            "1000",
        ],
    );
    let at_server = Capture::start(&lab, "net", "isp-a", "-v icmp");
    let at_host = Capture::start(&lab, "lan", "eth0", "-v icmp");
    let o = lab.exec(
        "lan",
        &[
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "dont",
            "-s",
            "2500",
            "172.18.0.6",
        ],
    );
    let (server, host) = (at_server.stop(), at_host.stop());
    assert!(
        o.status.success(),
        "fragmented ping failed:\n{}\nserver:\n{server}\nhost:\n{host}",
        text(&o)
    );
    let out = ip_headers_from(&server, "172.16.1.1");
    assert!(
        out.len() >= 3 && out.iter().any(|l| l.contains("flags [+]")),
        "the request did not reach the server as translated fragments:\n{server}"
    );
    assert!(
        !server.contains("192.168.0.10"),
        "an untranslated fragment leaked:\n{server}"
    );
    let back = ip_headers_from(&host, "172.18.0.6");
    assert!(
        back.len() >= 3 && back.iter().any(|l| l.contains("flags [+]")),
        "the reply did not reach the host as fragments:\n{host}"
    );
    assert_eq!(lab.drops("fragment_without_state"), 0);
}

#[test]
fn a_full_table_drops_new_flows_and_counts_them() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("nt2-");
    // One host, so its quota is the table (SPEC 35 bounds a host by default to a quarter).
    lab.start_router(
        &(static_config("") + "\n[nat]\nmax_entries = 4\nmax_sessions_per_host = 4\n"),
    );
    let before = lab.drops("nat_table_full");
    for port in 41000..41010 {
        udp_send(&lab, "lan", "192.168.0.10", port, "172.18.0.6", 7000);
    }
    let full = lab.settled_drops("nat_table_full", before) - before;
    let nat = lab.ctl_json(&["show", "nat"]);
    assert_eq!(nat["totals"]["sessions"].as_u64(), Some(4), "{nat}");
    assert_eq!(
        full, 6,
        "ten flows into a table of four: six dropped\n{nat}"
    );
    assert_eq!(nat["totals"]["table_full"].as_u64(), Some(6), "{nat}");
    // The flows that got in keep working: the server's reply reaches the LAN host.
    let port = outside_port(&lab, "isp-a", "192.168.0.10:41000");
    let cap = Capture::start(&lab, "lan", "eth0", "udp");
    udp_send(&lab, "net", "172.18.0.6", 7000, "172.16.1.1", port);
    lab.wait_for("the reply on the LAN", Duration::from_secs(5), || {
        cap.so_far()
            .contains("172.18.0.6.7000 > 192.168.0.10.41000")
    });
    cap.stop();
}

#[test]
fn icmp_errors_from_the_lan_are_translated_on_the_way_out() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("nt3-");
    lab.start_router(&static_config(""));
    // A flow whose LAN end has gone: the server's next datagram draws a port unreachable from
    // the LAN host, which must leave with A's address outside and inside the quoted header.
    udp_send(&lab, "lan", "192.168.0.10", 40500, "172.18.0.6", 7100);
    let port = outside_port(&lab, "isp-a", "192.168.0.10:40500");
    let cap = Capture::start(&lab, "net", "isp-a", "icmp");
    udp_send(&lab, "net", "172.18.0.6", 7100, "172.16.1.1", port);
    let want = format!("172.16.1.1 > 172.18.0.6: ICMP 172.16.1.1 udp port {port} unreachable");
    lab.wait_for(
        "the translated port unreachable",
        Duration::from_secs(5),
        || cap.so_far().contains(&want),
    );
    let seen = cap.stop();
    assert!(
        !seen.contains("192.168.0.10"),
        "the inside address leaked:\n{seen}"
    );
}

#[test]
fn spoofed_lan_sources_are_dropped_and_counted() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("nt4-");
    lab.start_router(&static_config(""));
    let rmac = router_lan_mac(&lab);
    let lan_mac = mac_of(&lab, "lan", "eth0");
    let frame = |src: [u8; 4]| {
        let mut f = rmac.clone();
        f.extend_from_slice(&lan_mac);
        f.extend_from_slice(&[0x08, 0x00]);
        etherparse::PacketBuilder::ipv4(src, [172, 18, 0, 6], 64)
            .udp(40000, 9999)
            .write(&mut f, b"spoof")
            .unwrap();
        f
    };
    // Outside the LAN prefix, the prefix's network and broadcast addresses, the router's own
    // uplink address, the central site itself: none is a LAN host.
    let spoofed = [
        [10, 0, 0, 1],
        [192, 168, 1, 5],
        [192, 168, 0, 0],
        [192, 168, 0, 255],
        [172, 16, 1, 1],
        [172, 18, 0, 6],
    ];
    let before = lab.drops("spoofed_source");
    let cap_a = Capture::start(&lab, "net", "isp-a", "udp port 9999");
    let cap_b = Capture::start(&lab, "net", "isp-b", "udp port 9999");
    let mut frames: Vec<Vec<u8>> = spoofed.iter().map(|&s| frame(s)).collect();
    // A genuine LAN source last: it must arrive, so the captures are known to work.
    frames.push(frame([192, 168, 0, 10]));
    send_raw(&format!("{}lan", lab.prefix), "eth0", frames);
    lab.wait_for(
        "the genuine datagram at the server",
        Duration::from_secs(5),
        || cap_a.so_far().contains("172.16.1.1."),
    );
    let counted = lab.settled_drops("spoofed_source", before) - before;
    let (a, b) = (cap_a.stop(), cap_b.stop());
    assert_eq!(counted, spoofed.len() as u64, "spoofed sources counted");
    let arrived: Vec<&str> = a
        .lines()
        .chain(b.lines())
        .filter(|l| l.contains(" IP "))
        .collect();
    assert_eq!(
        arrived.len(),
        1,
        "only the genuine datagram may leave:\n{a}\n{b}"
    );
}
