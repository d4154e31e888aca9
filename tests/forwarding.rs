//! Issue 3: traffic flows LAN ⇄ Internet through the router (SPEC 3–13), seen from inside the
//! lab's namespaces: ping, TCP and UDP both ways, the translated source at the server, failover
//! of the source address, traceroute, frag-needed, the stateful filter, and checksums verified
//! by the kernel with offloads off.

mod common;

use std::time::Duration;

use common::*;

fn iperf(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let mut cmd = vec!["iperf3", "-c", "172.18.0.6", "-t", "2", "-J"];
    cmd.extend_from_slice(args);
    let out = lab.exec("lan", &cmd);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3 {args:?}: {e}\n{}", text(&out)));
    assert!(
        out.status.success() && v.get("error").is_none(),
        "iperf3 {args:?} failed: {v}"
    );
    v
}

/// Bytes the receiving end of an iperf3 TCP test got.
fn tcp_received(v: &serde_json::Value) -> u64 {
    v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0)
}

fn udp_received(v: &serde_json::Value) -> (u64, u64) {
    let s = &v["end"]["sum"];
    let total = s["packets"].as_u64().unwrap_or(0);
    let lost = s["lost_packets"].as_u64().unwrap_or(0);
    (total, lost)
}

/// TCP and UDP both directions pass with real payload; TCP's whole stream arrives (what was
/// sent was received). Speed is measured in bench/, not asserted here.
fn traffic_flows(lab: &Lab) {
    for args in [&[][..], &["-R"][..]] {
        let v = iperf(lab, args);
        let (got, sent) = (
            tcp_received(&v),
            v["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0),
        );
        // The receiver stops counting when the test ends: the last bytes in flight miss.
        assert!(
            got > 0 && got >= sent / 10 * 9,
            "TCP {args:?}: sent {sent}, received {got}"
        );
    }
    for dir in [&["-u", "-b", "20M"][..], &["-u", "-b", "20M", "-R"][..]] {
        let (total, lost) = udp_received(&iperf(lab, dir));
        assert!(total > 1000, "UDP {dir:?}: only {total} datagrams");
        assert!(lost * 20 < total, "UDP {dir:?}: {lost}/{total} lost");
    }
}

#[test]
fn lan_reaches_the_internet_through_nat_and_fails_over() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fw1-");
    lab.start_router(&static_config(""));
    assert!(
        lab.ping("lan", "172.18.0.6"),
        "LAN host cannot reach the central site"
    );

    // SPEC 9: the server sees uplink A's address while A is preferred.
    let cap = Capture::start(&lab, "net", "isp-a", "icmp and host 172.18.0.6");
    assert!(lab.ping("lan", "172.18.0.6"));
    let seen = cap.stop();
    assert!(
        seen.contains("172.16.1.1 > 172.18.0.6"),
        "server did not see A's address:\n{seen}"
    );
    assert!(
        !seen.contains("192.168.0.10"),
        "private address leaked:\n{seen}"
    );

    traffic_flows(&lab);

    // A's route made ineligible (carrier down, SPEC 5): new traffic leaves through B.
    lab.sh(&["fault", "a", "link"]);
    lab.wait_for("route via isp-b", Duration::from_secs(5), || {
        lab.ctl(&["show", "route"])
            .contains("[20/0] via 172.17.3.2, isp-b")
    });
    let cap = Capture::start(&lab, "net", "isp-b", "icmp and host 172.18.0.6");
    assert!(lab.ping("lan", "172.18.0.6"), "no connectivity over B");
    let seen = cap.stop();
    assert!(
        seen.contains("172.17.3.1 > 172.18.0.6"),
        "server did not see B's address:\n{seen}"
    );
    traffic_flows(&lab);
    let nat = lab.ctl_json(&["show", "nat", "uplink", "isp-b"]);
    assert!(nat["totals"]["created"].as_u64().unwrap() > 0, "{nat}");
}

#[test]
fn traceroute_frag_needed_and_unsolicited_inbound() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fw2-");
    lab.start_router(&static_config("mtu = 1400"));

    // SPEC 3: traceroute shows the router, then PE_A (its time-exceeded translated back).
    // (Once the LAN host reaches the router: traceroute's timeouts are shorter than an ARP retry.)
    assert!(lab.ping("lan", "192.168.0.1"));
    let tr = lab.ok(
        "lan",
        &["traceroute", "-n", "-w", "1", "-q", "1", "172.18.0.6"],
    );
    let hops: Vec<&str> = tr.lines().skip(1).collect();
    assert!(
        hops.first().is_some_and(|h| h.contains("192.168.0.1")),
        "{tr}"
    );
    assert!(
        hops.get(1).is_some_and(|h| h.contains("172.16.1.2")),
        "{tr}"
    );
    assert!(hops.iter().any(|h| h.contains("172.18.0.6")), "{tr}");

    // Before any frag-needed teaches the LAN host the path MTU (it would then fragment itself):
    // without DF a packet above the MTU is fragmented on the way out, as the kernel would: every
    // fragment PE_A receives fits the configured 1400 (the lab's links carry 1500, so only a
    // capture tells whether the router honoured its MTU).
    let cap = Capture::start(&lab, "ispa", "rtr0", "-v icmp and src host 172.16.1.1");
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
            "1450",
            "172.18.0.6",
        ],
    );
    let seen = cap.stop();
    assert!(o.status.success(), "fragmented ping failed:\n{}", text(&o));
    let lengths = ip_lengths(&seen);
    assert!(
        lengths.len() >= 2 && lengths.iter().sum::<usize>() > 1450,
        "the 1478-byte datagram did not leave as fragments:\n{seen}"
    );
    assert!(
        lengths.iter().all(|&l| l <= 1400),
        "a fragment exceeds the configured MTU 1400: {lengths:?}\n{seen}"
    );

    // SPEC 3: a DF packet above the egress MTU gets frag-needed with the MTU.
    let before = lab.drops("frag_needed");
    let o = lab.exec(
        "lan",
        &[
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "-M",
            "do",
            "-s",
            "1450",
            "172.18.0.6",
        ],
    );
    let t = text(&o);
    assert!(
        t.contains("mtu = 1400"),
        "no frag-needed seen by the host:\n{t}"
    );
    assert_eq!(lab.drops("frag_needed"), before + 1);
    assert!(lab.ping("lan", "172.18.0.6"), "small packets still pass");
    let o = lab.exec(
        "lan",
        &[
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "-M",
            "do",
            "-s",
            "1372",
            "172.18.0.6",
        ],
    );
    assert!(
        o.status.success(),
        "a packet of exactly the MTU must pass:\n{}",
        text(&o)
    );

    unsolicited_inbound_is_filtered(&lab);
}

/// IP total lengths of the packets in a `tcpdump -v` capture ("..., length 1396)").
fn ip_lengths(capture: &str) -> Vec<usize> {
    capture
        .lines()
        .filter_map(|l| l.split("proto ").nth(1)?.split("length ").nth(1))
        .filter_map(|l| l.trim_end_matches(')').parse().ok())
        .collect()
}

/// SPEC 11: a mapping opened by a LAN host lets in its remote's replies and nothing else: not
/// another port of the same remote, not another remote, not a port nobody opened.
fn unsolicited_inbound_is_filtered(lab: &Lab) {
    udp_send(lab, "lan", "192.168.0.10", 40123, "172.18.0.6", 7000);
    let outside_port = outside_port(lab, "isp-a", "192.168.0.10:40123");
    let before = lab.drops("nat_unsolicited");
    let cap = Capture::start(lab, "lan", "eth0", "udp");
    udp_send(lab, "net", "172.18.0.6", 7001, "172.16.1.1", outside_port);
    udp_send(lab, "net", "10.255.1.2", 7000, "172.16.1.1", outside_port);
    udp_send(
        lab,
        "net",
        "172.18.0.6",
        7000,
        "172.16.1.1",
        outside_port ^ 1,
    );
    // The remote the mapping was opened to gets through: the capture and mapping work.
    udp_send(lab, "net", "172.18.0.6", 7000, "172.16.1.1", outside_port);
    lab.wait_for(
        "three unsolicited datagrams counted",
        Duration::from_secs(5),
        || lab.drops("nat_unsolicited") >= before + 3,
    );
    let seen = cap.stop();
    let arrived: Vec<&str> = seen.lines().filter(|l| l.contains(" IP ")).collect();
    assert!(
        arrived.len() == 1 && arrived[0].contains("172.18.0.6.7000 > 192.168.0.10.40123"),
        "the LAN host must get exactly its remote's reply:\n{seen}"
    );
}

#[test]
fn checksums_verified_by_the_kernel_with_offloads_off() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fw3-");
    // Offloads off on the router's veths and the hosts: every checksum the router touched is
    // completed in software and verified by the receiving host's stack.
    for (ns, dev) in [
        ("rtr", "wan-a"),
        ("rtr", "lan0"),
        ("lan", "eth0"),
        ("net", "isp-a"),
        ("ispa", "rtr0"),
    ] {
        lab.ok(
            ns,
            &[
                "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off",
            ],
        );
    }
    lab.start_router(&static_config(""));
    assert!(lab.ping("lan", "172.18.0.6"));
    let csum_errors = || lab.nstat("lan", "TcpInCsumErrors");
    let errors_before = csum_errors();
    traffic_flows(&lab);
    // The download went through GRO (super-frames segmented again by the kernel because lan0
    // has no TSO) and every segment's checksum verified on the LAN host.
    let gro = lab.ctl_json(&["show", "counters"])["gro_segments"]
        .as_u64()
        .unwrap_or(0);
    assert!(gro > 0, "no segment was merged");
    assert_eq!(
        csum_errors(),
        errors_before,
        "bad TCP checksums on the LAN host"
    );
}

#[test]
fn tcp_without_a_flow_is_reset_not_blackholed() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fw4-");
    lab.start_router(&static_config(""));
    // A bare ACK for a connection the router never saw (its flow died with an uplink) is answered
    // with a RST to the LAN host, which the capture on the host sees.
    let before = lab.drops("nat_no_flow");
    let cap = Capture::start(&lab, "lan", "eth0", "tcp");
    let lan_mac = mac_of(&lab, "lan", "eth0");
    let rmac = router_lan_mac(&lab);
    let mut frame = rmac.clone();
    frame.extend_from_slice(&lan_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    etherparse::PacketBuilder::ipv4([192, 168, 0, 10], [172, 18, 0, 6], 64)
        .tcp(40000, 5201, 1000, 64000)
        .ack(777_000)
        .write(&mut frame, &[])
        .unwrap();
    send_raw(&format!("{}lan", lab.prefix), "eth0", vec![frame]);
    let rst = "172.18.0.6.5201 > 192.168.0.10.40000: Flags [R], seq 777000";
    lab.wait_for("the RST on the LAN host", Duration::from_secs(5), || {
        cap.so_far().contains(rst)
    });
    cap.stop();
    assert_eq!(lab.settled_drops("nat_no_flow", before), before + 1);
}

/// Routes the LAN prefix to the router over uplink A in PE_A and the central site, as an ISP
/// does for a customer whose addresses it routes (no NAT needed).
fn route_lan_over_a(lab: &Lab) {
    lab.ok(
        "ispa",
        &[
            "ip",
            "route",
            "replace",
            "192.168.0.0/24",
            "via",
            "172.16.1.1",
            "dev",
            "rtr0",
        ],
    );
    lab.ok(
        "net",
        &[
            "ip",
            "route",
            "replace",
            "192.168.0.0/24",
            "via",
            "10.255.1.1",
            "dev",
            "isp-a",
        ],
    );
}

/// Pings `dst` from the LAN host with source `src` while capturing on the server's side of
/// PE_A; returns whether the ping succeeded and the capture.
fn ping_from(lab: &Lab, src: &str, dst: &str) -> (bool, String) {
    let cap = Capture::start(lab, "net", "isp-a", "icmp");
    let ok = (0..3).any(|_| {
        lab.exec("lan", &["ping", "-c", "1", "-W", "2", "-I", src, dst])
            .status
            .success()
    });
    (ok, cap.stop())
}

#[test]
fn uplink_without_nat_forwards_untranslated_both_ways() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fw5-");
    route_lan_over_a(&lab);
    lab.start_router(&static_config("nat = false"));

    // SPEC 10: the server sees the LAN host's own address, and its replies reach the host.
    let transit = lab.drops("uplink_transit");
    let (ok, seen) = ping_from(&lab, "192.168.0.10", "172.18.0.6");
    assert!(
        seen.contains("192.168.0.10 > 172.18.0.6: ICMP echo request"),
        "the request did not leave untranslated:\n{seen}"
    );
    assert!(
        ok,
        "replies to an untranslated ping were not forwarded to the LAN (uplink_transit {} -> {})\n{}",
        transit,
        lab.drops("uplink_transit"),
        lab.diagnose()
    );
    assert_eq!(lab.drops("uplink_transit"), transit);
    let nat = lab.ctl_json(&["show", "nat", "uplink", "isp-a"]);
    assert_eq!(nat["totals"]["created"].as_u64(), Some(0), "{nat}");

    // Only the LAN prefix is routed inbound: PE_A sending to anything else through the router
    // (transit between uplinks) is still dropped.
    lab.ok(
        "ispa",
        &[
            "ip",
            "route",
            "replace",
            "172.17.3.0/30",
            "via",
            "172.16.1.1",
            "dev",
            "rtr0",
        ],
    );
    let o = lab.exec(
        "ispa",
        &["ping", "-c", "2", "-i", "0.2", "-W", "1", "172.17.3.2"],
    );
    assert!(
        !o.status.success(),
        "transit between uplinks passed:\n{}",
        text(&o)
    );
    lab.wait_for("uplink_transit counted", Duration::from_secs(5), || {
        lab.drops("uplink_transit") >= transit + 2
    });
}

#[test]
fn nat_sources_exclusions_leave_untranslated_and_come_back() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fw6-");
    route_lan_over_a(&lab);
    lab.ok(
        "lan",
        &["ip", "addr", "add", "192.168.0.200/24", "dev", "eth0"],
    );
    lab.start_router(&static_config("nat_sources = [\"192.168.0.128/25\"]"));

    // 192.168.0.10 is not in nat_sources: routed as is, replies forwarded (SPEC 10).
    let (ok, seen) = ping_from(&lab, "192.168.0.10", "172.18.0.6");
    assert!(
        seen.contains("192.168.0.10 > 172.18.0.6: ICMP echo request"),
        "an excluded source was translated:\n{seen}"
    );
    assert!(
        ok,
        "replies to an excluded source were dropped\n{}",
        lab.diagnose()
    );

    // 192.168.0.200 is in nat_sources: translated to A's address (SPEC 9).
    let (ok, seen) = ping_from(&lab, "192.168.0.200", "172.18.0.6");
    assert!(ok, "translated ping failed\n{}", lab.diagnose());
    assert!(
        seen.contains("172.16.1.1 > 172.18.0.6: ICMP echo request")
            && !seen.contains("192.168.0.200"),
        "a listed source left untranslated:\n{seen}"
    );

    // A translated source is not reachable unsolicited: only excluded sources are routed in.
    let unsolicited = lab.drops("uplink_transit");
    let o = lab.exec(
        "net",
        &["ping", "-c", "2", "-i", "0.2", "-W", "1", "192.168.0.200"],
    );
    assert!(
        !o.status.success(),
        "a translated host was reachable from outside:\n{}",
        text(&o)
    );
    lab.wait_for(
        "inbound to a translated source counted",
        Duration::from_secs(5),
        || lab.drops("uplink_transit") >= unsolicited + 2,
    );
}
