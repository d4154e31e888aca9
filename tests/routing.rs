//! Routing decisions end to end (SPEC 4–8): ICMP unreachable when nothing is eligible, a
//! policy's `fallback = "unreachable"`, `explain` for policies and existing sessions agreeing
//! with the fast path, and weighted sharing of flows among routes of equal distance.

mod common;

use std::time::Duration;

use common::*;

const POLICY: &str = r#"
[[policy]]
name = "udp-7000-via-b"
protocol = "udp"
port = 7000
uplinks = ["isp-b"]
fallback = "unreachable"
"#;

fn explain(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["explain", "192.168.0.10", "172.18.0.6"];
    a.extend_from_slice(args);
    lab.ctl_json(&a)
}

/// Sends one UDP datagram to the central site's port 7000 from a connected socket and reports
/// what the LAN host's stack made of the answer: "errno N" for an ICMP error (IP_RECVERR, so
/// soft errors such as net unreachable are reported too), else "silence".
fn udp_answer(lab: &Lab, sport: u16) -> String {
    let py = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.IPPROTO_IP, 11, 1)\n\
         s.bind(('192.168.0.10', {sport}))\ns.connect(('172.18.0.6', 7000))\ns.settimeout(3)\n\
         s.send(b'x')\ntry:\n    s.recv(16)\n    print('answer')\n\
         except socket.timeout:\n    print('silence')\nexcept OSError as e:\n    print('errno', e.errno)\n"
    );
    lab.ok("lan", &["python3", "-c", &py]).trim().to_string()
}

#[test]
fn policy_fallback_and_no_eligible_route_answer_unreachable() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("rt1-");
    lab.start_router(&(static_config("") + POLICY));

    // The policy pins UDP to port 7000 to B while A is preferred: explain says so, and the
    // datagram leaves through B; once it has, explain shows the session.
    let e = explain(&lab, &["udp", "40000", "7000"]);
    assert_eq!(e["egress"], "isp-b", "{e}");
    assert_eq!(e["decided_by"], "policy udp-7000-via-b", "{e}");
    assert_eq!(e["session_uplink"], serde_json::Value::Null, "{e}");
    let cap = Capture::start(&lab, "net", "isp-b", "udp port 7000");
    udp_send(&lab, "lan", "192.168.0.10", 40000, "172.18.0.6", 7000);
    lab.wait_for("the policy flow on B", Duration::from_secs(5), || {
        cap.so_far().contains("172.17.3.1.")
    });
    cap.stop();
    let e = explain(&lab, &["udp", "40000", "7000"]);
    assert_eq!(e["session_uplink"], "isp-b", "{e}");
    let port = outside_port(&lab, "isp-b", "192.168.0.10:40000");
    assert_eq!(
        e["nat"],
        format!("existing session on isp-b: 192.168.0.10:40000 -> 172.17.3.1:{port}"),
        "{e}"
    );
    let e = explain(&lab, &["udp", "40000", "53"]);
    assert_eq!(e["egress"], "isp-a", "other UDP follows the table: {e}");

    // B's carrier lost: the policy's flows get ICMP unreachable instead of the table's A...
    lab.sh(&["fault", "b", "link"]);
    lab.wait_for("explain: unreachable", Duration::from_secs(5), || {
        explain(&lab, &["udp", "40001", "7000"])["egress"] == "none"
    });
    let cap = Capture::start(&lab, "lan", "eth0", "icmp");
    let no_route = lab.drops("no_route");
    assert_eq!(
        udp_answer(&lab, 40001),
        "errno 101",
        "ENETUNREACH for the policy's flow"
    );
    let seen = cap.stop();
    assert!(
        seen.contains("192.168.0.1 > 192.168.0.10: ICMP net 172.18.0.6 unreachable"),
        "{seen}"
    );
    assert!(lab.drops("no_route") > no_route);
    // ...while everything else still leaves through A.
    assert!(
        lab.ping("lan", "172.18.0.6"),
        "traffic outside the policy stopped"
    );

    // Both carriers lost: no route is eligible, every new flow gets net unreachable.
    lab.sh(&["fault", "a", "link"]);
    lab.wait_for("explain: no route", Duration::from_secs(5), || {
        explain(&lab, &["icmp"])["decided_by"] == "no eligible route: ICMP unreachable"
    });
    let o = lab.exec("lan", &["ping", "-c", "1", "-W", "2", "172.18.0.6"]);
    let t = text(&o);
    assert!(
        t.contains("From 192.168.0.1 icmp_seq=1 Destination Net Unreachable"),
        "{t}"
    );
}

#[test]
fn weighted_routes_share_flows_through_the_fast_path() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("rt2-");
    // A and B at the same distance, weights 1 and 3 (SPEC 7).
    let cfg = static_config("").replace("distance = 20\n", "distance = 10\nweight = 3\n");
    assert!(cfg.contains("weight = 3"), "{cfg}");
    lab.start_router(&cfg);
    const FLOWS: u16 = 400;
    let py = format!(
        "import socket\nfor p in range(42000, 42000 + {FLOWS}):\n\
         \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         \x20   s.bind(('192.168.0.10', p))\n    s.sendto(b'x', ('172.18.0.6', 7000))\n    s.close()\n"
    );
    lab.ok("lan", &["python3", "-c", &py]);
    let sessions = |uplink: &str| {
        lab.ctl_json(&["show", "nat", "uplink", uplink])["sessions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    lab.wait_for("every flow has a session", Duration::from_secs(10), || {
        sessions("isp-a").len() + sessions("isp-b").len() == FLOWS as usize
    });
    let on_a = sessions("isp-a");
    let share = on_a.len() as f64 / f64::from(FLOWS);
    // Binomial with p = 1/4 over 400 flows: 3.5 standard deviations either side.
    assert!((0.17..=0.33).contains(&share), "share of A {share}");
    // explain predicts each flow's uplink as the fast path chose it.
    for s in on_a.iter().take(20) {
        let sport = s["inside"].as_str().unwrap().split(':').nth(1).unwrap();
        let e = explain(&lab, &["udp", sport, "7000"]);
        assert_eq!(e["session_uplink"], "isp-a", "{e}");
        assert_eq!(
            e["egress"], "isp-a",
            "explain disagrees with the fast path: {e}"
        );
    }
}
