//! Issue 5: operating the router: every `show` view in text and JSON, `explain` agreeing with
//! real traffic, live reload (ctl and SIGHUP) that keeps flows, a rejected reload that keeps
//! the running config, and a control socket that shrugs off garbage.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;

fn fast(extra: &str) -> String {
    site_config("200ms", "150ms", "600ms", "2s", extra)
}

fn wait_primary(lab: &Lab) {
    lab.wait_for("default via isp-a [10]", Duration::from_secs(10), || {
        lab.ctl(&["show", "route"])
            .contains("S*    0.0.0.0/0 [10/0] via 172.16.1.2, isp-a")
    });
}

#[test]
fn every_view_in_text_and_json() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("op1-");
    lab.start_router(&fast("").replace(
        "workers = 2\n",
        "workers = 2\nmetrics_listen = \"127.0.0.1:9580\"\n",
    ));
    wait_primary(&lab);
    // The views below show B's tier as a tracked backup: wait for its track too (its delay-up
    // can end after A's under load).
    lab.wait_for("track b-e2e up", Duration::from_secs(10), || {
        lab.ctl(&["show", "route"])
            .contains("(b-e2e-tier, track b-e2e up)")
    });
    assert!(lab.ping("lan", "172.18.0.6"));

    let route = lab.ctl(&["show", "route"]);
    assert!(
        route.contains("Gateway of last resort is 172.16.1.2 to network 0.0.0.0"),
        "{route}"
    );
    assert!(
        route.contains("[11/0] via 172.17.3.2, isp-b (b-e2e-tier, track b-e2e up)"),
        "{route}"
    );
    let j = lab.ctl_json(&["show", "route"]);
    assert_eq!(j["gateway_of_last_resort"]["next_hop"], "172.16.1.2");
    assert_eq!(j["gateway_of_last_resort"]["uplink"], "isp-a");
    assert!(
        j["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "a-e2e-tier" && r["installed"] == true)
    );

    let up = lab.ctl(&["show", "uplinks"]);
    assert!(
        up.contains("isp-a (wan-a): 172.16.1.1/30 next hop 172.16.1.2"),
        "{up}"
    );
    let j = lab.ctl_json(&["show", "uplinks"]);
    assert_eq!(j["uplinks"][0]["carrier"], true);
    assert!(j["uplinks"][0]["tx_packets"].as_u64().unwrap() > 0);
    assert!(j["uplinks"][1]["next_hop_mac"].is_string());

    let probes = lab.ctl(&["show", "probes"]);
    assert!(
        probes.contains("IP SLA a-e2e (icmp-echo to 172.18.0.6 via isp-a)"),
        "{probes}"
    );
    let j = lab.ctl_json(&["show", "probes"]);
    let p = &j["probes"][0]["stats"];
    assert!(
        p["ok"].as_u64().unwrap() > 0 && p["avg_rtt_ms"].as_f64().unwrap() > 0.0,
        "{j}"
    );

    let tracks = lab.ctl(&["show", "tracks"]);
    assert!(
        tracks.contains("Track a-e2e") && tracks.contains("State is up"),
        "{tracks}"
    );
    let j = lab.ctl_json(&["show", "tracks"]);
    assert_eq!(j["tracks"][0]["state"], "up");
    assert_eq!(j["tracks"][0]["changes"], 1);

    let nat = lab.ctl(&["show", "nat"]);
    assert!(
        nat.contains("192.168.0.10:") && nat.contains("172.16.1.1:"),
        "{nat}"
    );
    let j = lab.ctl_json(&["show", "nat", "address", "192.168.0.10"]);
    assert!(j["totals"]["shown"].as_u64().unwrap() >= 1, "{j}");
    let j = lab.ctl_json(&["show", "nat", "uplink", "isp-b"]);
    assert_eq!(j["totals"]["shown"], 0, "{j}");

    let arp = lab.ctl(&["show", "arp"]);
    assert!(
        arp.contains("192.168.0.10") && arp.contains("172.17.3.2"),
        "{arp}"
    );
    let counters = lab.ctl(&["show", "counters"]);
    assert!(
        counters.contains("nat_unsolicited") && counters.contains("forwarded"),
        "{counters}"
    );
    assert!(
        lab.ctl_json(&["show", "counters"])["forwarded"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn explain_agrees_with_real_traffic() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("op2-");
    lab.start_router(&static_config(""));
    let j = lab.ctl_json(&[
        "explain",
        "192.168.0.10",
        "172.18.0.6",
        "udp",
        "40000",
        "53",
    ]);
    assert_eq!(j["egress"], "isp-a", "{j}");
    assert_eq!(j["decided_by"], "route via-a", "{j}");
    let cap = Capture::start(&lab, "net", "isp-a", "icmp");
    assert!(lab.ping("lan", "172.18.0.6"));
    assert!(cap.stop().contains("172.16.1.1 > 172.18.0.6"));

    lab.sh(&["fault", "a", "link"]);
    lab.wait_for("explain says isp-b", Duration::from_secs(5), || {
        lab.ctl_json(&["explain", "192.168.0.10", "172.18.0.6", "icmp"])["egress"] == "isp-b"
    });
    let cap = Capture::start(&lab, "net", "isp-b", "icmp");
    assert!(lab.ping("lan", "172.18.0.6"));
    assert!(cap.stop().contains("172.17.3.1 > 172.18.0.6"));
    let text = lab.ctl(&[
        "explain",
        "192.168.0.10",
        "172.18.0.6",
        "tcp",
        "40000",
        "443",
    ]);
    assert!(text.contains("egress: isp-b via 172.17.3.2"), "{text}");
    let j = lab.ctl_json(&["explain", "192.168.0.10", "10.255.1.1", "tcp", "1", "2"]);
    assert_eq!(j["egress"], "isp-b", "{j}");
    let j = lab.ctl_json(&["explain", "192.168.0.10", "192.168.0.20", "icmp"]);
    assert_eq!(j["egress"], "lan", "{j}");
}

#[test]
fn reload_applies_live_keeps_flows_and_rejects_bad_config() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("op3-");
    let cfg = fast("");
    lab.start_router(&cfg);
    wait_primary(&lab);
    let running = lab.state_dir().join("router.toml");

    // A TCP flow that must survive the reload untouched.
    let mut iperf = lab.spawn(
        "lan",
        &["iperf3", "-c", "172.18.0.6", "-t", "6", "-b", "200M", "-J"],
    );
    lab.wait_for("TCP flow on A", Duration::from_secs(5), || {
        lab.ctl_json(&["show", "nat", "uplink", "isp-a"])["sessions"]
            .as_array()
            .is_some_and(|s| {
                s.iter()
                    .any(|s| s["protocol"] == "tcp" && s["state"] == "established")
            })
    });

    // Add a probe and make B preferred.
    let extra = "\n[[probe]]\nname = \"a-extra\"\ntype = \"icmp-echo\"\nuplink = \"isp-a\"\ntarget = \"172.16.1.2\"\ninterval = \"500ms\"\ntimeout = \"200ms\"\n";
    let new = fast(extra).replace("distance = 11\n", "distance = 5\n");
    std::fs::write(&running, &new).unwrap();
    let out = lab.ctl(&["reload"]);
    assert!(out.contains("applied"), "{out}");
    assert!(
        lab.ctl(&["show", "route"])
            .contains("S*    0.0.0.0/0 [5/0] via 172.17.3.2, isp-b")
    );
    lab.wait_for("new probe runs", Duration::from_secs(3), || {
        lab.ctl_json(&["show", "probes"])["probes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "a-extra" && p["stats"]["ok"].as_u64().unwrap_or(0) > 0)
    });
    // Existing flows stay where they are (SPEC 22): the iperf3 session is still on A.
    let nat = lab.ctl_json(&["show", "nat", "uplink", "isp-a"]);
    assert!(
        nat["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["protocol"] == "tcp"),
        "{nat}"
    );

    // A bad config is rejected with file:line and the running one stays.
    std::fs::write(&running, new.replace("[lan]\n", "[lan]\nbogus = 1\n")).unwrap();
    let o = lab.sh(&["ctl", "reload"]);
    assert!(!o.status.success());
    let err = text(&o);
    assert!(
        err.contains("router.toml:") && err.contains("bogus"),
        "{err}"
    );
    assert!(
        lab.log()
            .contains("reload rejected, running configuration kept"),
        "{}",
        lab.log()
    );
    assert!(
        lab.ctl(&["show", "route"])
            .contains("[5/0] via 172.17.3.2, isp-b")
    );

    // SIGHUP reloads too: back to A preferred.
    std::fs::write(&running, &cfg).unwrap();
    // SAFETY: signals the router we started, by its recorded pid.
    unsafe { libc::kill(lab.router_pid().unwrap(), libc::SIGHUP) };
    wait_primary(&lab);

    let mut out = String::new();
    iperf
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        iperf.0.wait().unwrap().success(),
        "iperf3 died across the reloads:\n{out}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let sent = v["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0);
    // The receiver stops counting when the test ends: the last bytes in flight miss.
    assert!(
        got > 0 && got >= sent / 10 * 9,
        "sent {sent}, received {got}"
    );
    let intervals = v["intervals"].as_array().unwrap();
    assert!(
        intervals
            .iter()
            .all(|i| i["sum"]["bytes"].as_u64().unwrap_or(0) > 0),
        "the flow stalled during a reload: {intervals:?}"
    );
}

#[test]
fn control_socket_rejects_garbage_and_keeps_forwarding() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("op4-");
    lab.start_router(&static_config(""));
    let sock = lab.state_dir().join("ctl.sock");
    let ask = |req: &[u8]| {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(req);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    assert!(ask(b"rm -rf /\n").starts_with("error: unknown command"));
    assert!(ask(b"\xff\xfe\x00garbage\n").starts_with("error:"));
    assert!(ask(&vec![b'a'; 100_000]).starts_with("error: request longer than"));
    assert!(ask(b"show nat uplink\n").starts_with("error:"));
    assert!(ask(b"show route\n").starts_with("ok\n"));
    let mode = std::fs::metadata(&sock)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .unwrap();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        lab.ping("lan", "172.18.0.6"),
        "forwarding disturbed\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        text(&lab.exec("lan", &["ip", "neigh"])),
        text(&lab.exec("rtr", &["bridge", "fdb", "show", "br", "br-lan"])),
        text(&lab.exec("rtr", &["ip", "-s", "link"])),
        lab.ctl(&["show", "counters"]),
        lab.ctl(&["show", "arp"]),
        lab.ctl(&["show", "nat"]),
        lab.log()
    );
}

/// `GET path` on the metrics listener inside the router's namespace, over plain TCP.
fn http_get(lab: &Lab, path: &str) -> String {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/9580 && printf 'GET {path} HTTP/1.1\\r\\nHost: lab\\r\\nConnection: close\\r\\n\\r\\n' >&3 && cat <&3"
    );
    lab.ok("rtr", &["bash", "-c", &script])
}

/// The value of the sample `series` (name with its labels, as written) in a Prometheus text.
fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no sample {series} in:\n{body}"))
}

#[test]
fn metrics_endpoint_is_scraped_over_http() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("op5-");
    lab.start_router(&fast("").replace(
        "workers = 2\n",
        "workers = 2\nmetrics_listen = \"127.0.0.1:9580\"\n",
    ));
    wait_primary(&lab);
    lab.sh(&["fault", "b", "link"]);
    lab.wait_for("B's carrier and track down", Duration::from_secs(5), || {
        lab.ctl_json(&["show", "uplinks"])["uplinks"][1]["carrier"] == false
            && lab.ctl_json(&["show", "tracks"])["tracks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "b-e2e" && t["state"] == "down")
    });
    assert!(lab.ping("lan", "172.18.0.6"));
    let forwarded_before = lab.ctl_json(&["show", "counters"])["forwarded"]
        .as_u64()
        .unwrap() as f64;
    let resp = http_get(&lab, "/metrics");
    let forwarded_after = lab.ctl_json(&["show", "counters"])["forwarded"]
        .as_u64()
        .unwrap() as f64;
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    // The scrape reports the router's live state, the same the control socket shows.
    let fwd = sample(body, "mhrouter_packets_forwarded_total");
    assert!(
        (forwarded_before..=forwarded_after).contains(&fwd),
        "forwarded {fwd}, control socket {forwarded_before}..{forwarded_after}"
    );
    assert_eq!(
        sample(body, "mhrouter_uplink_carrier{uplink=\"isp-a\"}"),
        1.0
    );
    assert_eq!(
        sample(body, "mhrouter_uplink_carrier{uplink=\"isp-b\"}"),
        0.0
    );
    assert_eq!(sample(body, "mhrouter_track_up{track=\"a-e2e\"}"), 1.0);
    assert_eq!(sample(body, "mhrouter_track_up{track=\"b-e2e\"}"), 0.0);
    assert!(
        sample(body, "mhrouter_nat_entries") >= 1.0,
        "the ping's session"
    );
    let other = http_get(&lab, "/nothing");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
}

#[test]
fn reload_rejects_restart_only_changes_and_keeps_probe_stats_and_tracks() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("op6-");
    let cfg = fast("");
    lab.start_router(&cfg);
    wait_primary(&lab);
    let running = lab.state_dir().join("router.toml");
    // B's tracks go down, so there is state to keep.
    lab.sh(&["fault", "b", "nexthop"]);
    let track = |name: &str| {
        lab.ctl_json(&["show", "tracks"])["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap()
    };
    lab.wait_for("b-e2e down", Duration::from_secs(5), || {
        track("b-e2e")["state"] == "down"
    });
    let sent = |name: &str| {
        lab.ctl_json(&["show", "probes"])["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["stats"]["sent"]
            .as_u64()
            .unwrap()
    };

    // Each of these needs a restart: rejected, logged, and the running config stays.
    for (change, why) in [
        (
            cfg.replace("workers = 2\n", "workers = 1\n"),
            "router.workers",
        ),
        (
            cfg.replace("192.168.0.1/24", "192.168.0.2/24"),
            "the LAN's tap, bridge, address and mac",
        ),
        (
            cfg.clone() + "\n[nat]\nmax_entries = 1000\n",
            "the [nat] table",
        ),
        (
            cfg.replace("name = \"isp-b\"", "name = \"isp-c\"")
                .replace("uplink = \"isp-b\"", "uplink = \"isp-c\""),
            "the set of uplinks",
        ),
    ] {
        std::fs::write(&running, &change).unwrap();
        let o = lab.sh(&["ctl", "reload"]);
        let out = text(&o);
        assert!(!o.status.success(), "accepted a change of {why}:\n{out}");
        assert!(
            out.contains(why) && out.contains("needs a restart"),
            "{out}"
        );
    }
    assert_eq!(
        lab.log()
            .matches("reload rejected, running configuration kept")
            .count(),
        4,
        "{}",
        lab.log()
    );
    assert!(
        lab.ping("lan", "192.168.0.1"),
        "the LAN address changed anyway"
    );

    // An accepted reload carries probe statistics and track states over by name.
    let (a_sent, b_track) = (sent("a-e2e"), track("b-e2e"));
    let changes_logged = lab.log().matches("track b-e2e: change").count();
    std::fs::write(&running, cfg.replace("distance = 253", "distance = 254")).unwrap();
    assert!(lab.ctl(&["reload"]).contains("applied"));
    assert!(
        sent("a-e2e") >= a_sent,
        "probe statistics restarted from zero"
    );
    let after = track("b-e2e");
    assert_eq!(after["state"], "down", "track state not kept: {after}");
    assert_eq!(after["changes"], b_track["changes"], "{after}");
    assert_eq!(
        lab.log().matches("track b-e2e: change").count(),
        changes_logged,
        "the reload re-ran track b-e2e's transitions:\n{}",
        lab.log()
    );
}

#[test]
fn gratuitous_arp_at_start_and_ping_rate_limit() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("op7-");
    // SPEC 2: the router announces itself when it starts (captured before it runs).
    let on_a = Capture::start(&lab, "ispa", "rtr0", "arp");
    let on_lan = Capture::start(&lab, "lan", "eth0", "arp");
    lab.start_router(&static_config(""));
    lab.wait_for(
        "gratuitous ARP on A and the LAN",
        Duration::from_secs(5),
        || {
            on_a.so_far()
                .contains("Request who-has 172.16.1.1 tell 172.16.1.1")
                && on_lan
                    .so_far()
                    .contains("Request who-has 192.168.0.1 tell 192.168.0.1")
        },
    );
    on_a.stop();
    on_lan.stop();

    // Pings to the router from the Internet: answered up to the limit, the rest counted.
    let wan_a = mac_of(&lab, "rtr", "wan-a");
    let pe_a = mac_of(&lab, "ispa", "rtr0");
    const PINGS: u16 = 1000;
    let frames: Vec<Vec<u8>> = (0..PINGS)
        .map(|seq| {
            let mut f = wan_a.to_vec();
            f.extend_from_slice(&pe_a);
            f.extend_from_slice(&[0x08, 0x00]);
            etherparse::PacketBuilder::ipv4([172, 16, 1, 2], [172, 16, 1, 1], 64)
                .icmpv4_echo_request(0x4d48, seq)
                .write(&mut f, &[0u8; 16])
                .unwrap();
            f
        })
        .collect();
    // Replies counted by PE_A's kernel (a capture of a 200-reply burst may miss some).
    let echo_replies = || lab.nstat("ispa", "IcmpInEchoReps");
    let before = lab.drops("ping_rate_limited");
    let replies_before = echo_replies();
    let t0 = std::time::Instant::now();
    send_raw(&format!("{}ispa", lab.prefix), "rtr0", frames);
    let seconds = t0.elapsed().as_secs() + 1;
    let limited = lab.settled_drops("ping_rate_limited", before) - before;
    let mut answered = echo_replies() - replies_before;
    lab.wait_for("the replies settle", Duration::from_secs(5), || {
        let now = echo_replies() - replies_before;
        std::mem::replace(&mut answered, now) == now && now + limited >= u64::from(PINGS)
    });
    // 200 per second, refilled once a second: the send spanned at most `seconds` refills.
    assert!(
        answered >= 1 && answered <= 200 * (seconds + 1),
        "{answered} answered in {seconds} s"
    );
    assert_eq!(
        answered + limited,
        u64::from(PINGS),
        "every ping answered ({answered}) or counted ({limited})\n{}",
        lab.ctl(&["show", "counters"])
    );
}

#[test]
fn mss_clamp_from_config_and_reload() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("op8-");
    let cfg = static_config("mss_clamp = 1300");
    lab.start_router(&cfg);
    // The SYN the server gets and the SYN-ACK the host gets, for one connection to iperf3's port
    // (it succeeding also means the checksums the clamp touched, partial ones included, hold).
    let mss_seen = |lab: &Lab| {
        let at_server = Capture::start(lab, "net", "isp-a", "tcp[tcpflags] & tcp-syn != 0");
        let at_host = Capture::start(lab, "lan", "eth0", "tcp[tcpflags] & tcp-syn != 0");
        let o = lab.exec(
            "lan",
            &[
                "timeout",
                "5",
                "bash",
                "-c",
                "echo > /dev/tcp/172.18.0.6/5201",
            ],
        );
        assert!(o.status.success(), "connect failed:\n{}", text(&o));
        let (s, h) = (at_server.stop(), at_host.stop());
        let mss = |cap: &str, dir: &str| -> u16 {
            cap.lines()
                .find(|l| l.contains(dir) && l.contains("Flags [S"))
                .and_then(|l| {
                    l.split("mss ")
                        .nth(1)?
                        .split([',', ']'])
                        .next()?
                        .parse()
                        .ok()
                })
                .unwrap_or_else(|| panic!("no SYN {dir} with an MSS in:\n{cap}"))
        };
        (mss(&s, "> 172.18.0.6.5201"), mss(&h, "172.18.0.6.5201 >"))
    };
    assert_eq!(
        mss_seen(&lab),
        (1300, 1300),
        "SYN and SYN-ACK clamped to 1300"
    );

    // An MSS already below the clamp is left alone.
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
            "advmss",
            "1200",
        ],
    );
    assert_eq!(mss_seen(&lab).0, 1200, "a smaller MSS was raised");
    lab.ok("lan", &["ip", "route", "del", "172.18.0.6"]);

    // A reload changes the clamp at once.
    let running = lab.state_dir().join("router.toml");
    std::fs::write(
        &running,
        cfg.replace("mss_clamp = 1300", "mss_clamp = 1100"),
    )
    .unwrap();
    assert!(lab.ctl(&["reload"]).contains("applied"));
    assert_eq!(mss_seen(&lab), (1100, 1100), "the reloaded clamp");
}
