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
