//! DNS over TCP through the router (SPEC 30) against real peers: dig on the LAN host, the
//! central site's dnsmasq as both ISPs' resolver serving `big.lab`, a TXT answer too big for
//! UDP. The router relays the TCP query from the active uplink's address; after a failover a
//! new one leaves through the other uplink.

mod common;

use std::time::Duration;

use common::{Capture, Lab, require_root, static_config};

/// The TXT strings of big.lab in the lab's dnsmasq (scripts/lab.sh).
fn big_parts() -> Vec<String> {
    (1..=8)
        .map(|i| format!("part{i}-{}", "0".repeat(244)))
        .collect()
}

/// dig through the router for big.lab TXT with `opts`; its whole output.
fn dig(lab: &Lab, opts: &[&str]) -> String {
    let mut cmd = vec![
        "dig",
        "+time=3",
        "+tries=1",
        "@192.168.0.1",
        "big.lab",
        "TXT",
    ];
    cmd.extend_from_slice(opts);
    lab.ok("lan", &cmd)
}

/// Asserts that dig's output holds the whole answer: every string, in order.
#[track_caller]
fn assert_whole_answer(out: &str) {
    let answer: String = out
        .lines()
        .filter(|l| l.starts_with("big.lab.") && l.contains("TXT"))
        .collect();
    let quoted: Vec<String> = big_parts().iter().map(|p| format!("\"{p}\"")).collect();
    assert!(answer.contains(&quoted.join(" ")), "the whole TXT:\n{out}");
}

/// The SYNs of TCP connections from `from` to the resolver's port 53, as tcpdump printed them;
/// with their source port.
fn tcp_syns(capture: &str, from: &str) -> Vec<(u16, String)> {
    let prefix = format!("IP {from}.");
    capture
        .lines()
        .filter(|l| l.contains("> 172.18.0.6.53: Flags [S]"))
        .filter_map(|l| {
            let rest = &l[l.find(&prefix)? + prefix.len()..];
            let port = rest.split_whitespace().next()?.parse().ok()?;
            Some((port, l.to_string()))
        })
        .collect()
}

#[test]
fn a_truncated_answer_is_fetched_over_tcp_through_the_active_uplink_before_and_after_failover() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("dtcp");
    let cfg = static_config("dns_servers = [\"172.18.0.6\"]").replace(
        "next_hop = \"172.17.3.2\"\n",
        "next_hop = \"172.17.3.2\"\ndns_servers = [\"172.18.0.6\"]\n",
    ) + "\n[dns]\n";
    lab.start_router(&cfg);
    let cap_a = Capture::start(&lab, "ispa", "rtr0", "port 53");
    let cap_b = Capture::start(&lab, "ispb", "rtr0", "port 53");

    // Over UDP alone the answer comes back truncated (TC), as the resolver sent it.
    let udp = dig(&lab, &["+ignore"]);
    let flags = udp
        .lines()
        .find(|l| l.starts_with(";; flags:"))
        .unwrap_or_default();
    assert!(
        flags.split([' ', ';']).any(|f| f == "tc"),
        "TC over UDP:\n{udp}"
    );
    // dig's own retry over TCP gets the whole answer through the router.
    let retried = dig(&lab, &[]);
    assert!(
        retried.contains("Truncated, retrying in TCP mode"),
        "{retried}"
    );
    assert_whole_answer(&retried);
    lab.wait_for(
        "the TCP query in the capture on PE_A",
        Duration::from_secs(5),
        || !tcp_syns(&cap_a.so_far(), "172.16.1.1").is_empty(),
    );
    let before = cap_a.so_far();
    let syns_a = tcp_syns(&before, "172.16.1.1");
    assert_eq!(syns_a.len(), 1, "one TCP query through A:\n{before}");
    assert!(
        (65024..=65279).contains(&syns_a[0].0),
        "from the relay's ports: {}",
        syns_a[0].1
    );

    assert!(lab.sh(&["fault", "a", "link"]).status.success());
    lab.wait_for(
        "the default route on isp-b",
        Duration::from_secs(10),
        || lab.ctl_json(&["show", "route"])["gateway_of_last_resort"]["uplink"] == "isp-b",
    );
    lab.wait_for(
        "the DNS forwarder on isp-b",
        Duration::from_secs(10),
        || {
            lab.log()
                .contains("dns: forwarding to [172.18.0.6] through uplink isp-b")
        },
    );
    assert_whole_answer(&dig(&lab, &["+tcp"]));
    let (a, b) = (cap_a.stop(), cap_b.stop());
    eprintln!("PE_A:\n{a}PE_B:\n{b}");
    assert_eq!(
        tcp_syns(&a, "172.16.1.1").len(),
        1,
        "none more through A:\n{a}"
    );
    let syns_b = tcp_syns(&b, "172.17.3.1");
    assert_eq!(syns_b.len(), 1, "the +tcp query through B:\n{b}");
    assert!((65024..=65279).contains(&syns_b[0].0), "{}", syns_b[0].1);
    assert!(
        !b.contains("172.16.1.1"),
        "nothing from A's address through B:\n{b}"
    );
}
