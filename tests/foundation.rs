//! Issue 2: the router comes up in a real lab (SPEC 1–3): pings to each of its addresses, ARP
//! for both next hops, carrier tracking, garbage frames dropped and counted, clean shutdown.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn router_answers_arp_and_ping_and_counts_garbage() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fd1-");
    lab.start_router(&static_config(""));

    // SPEC 3: echo reply from each of the router's addresses, on its own interface.
    assert!(
        lab.ping("lan", "192.168.0.1"),
        "LAN host cannot ping 192.168.0.1"
    );
    assert!(
        lab.ping("ispa", "172.16.1.1"),
        "PE_A cannot ping 172.16.1.1"
    );
    assert!(
        lab.ping("ispb", "172.17.3.1"),
        "PE_B cannot ping 172.17.3.1"
    );

    // SPEC 2: the router resolved both next hops, and the PEs learned the router's MAC.
    let arp = lab.ctl_json(&["show", "arp"]);
    let rows = arp["arp"].as_array().expect("arp rows");
    for nh in ["172.16.1.2", "172.17.3.2"] {
        let row = rows
            .iter()
            .find(|r| r["address"] == nh)
            .unwrap_or_else(|| panic!("no ARP entry for {nh}: {arp}"));
        assert!(row["mac"].is_string(), "{nh} unresolved: {row}");
    }
    let wan_a = mac_of(&lab, "rtr", "wan-a");
    let neigh = lab.ok("ispa", &["ip", "neigh", "show", "172.16.1.1"]);
    let mac = wan_a
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(
        neigh.contains(&mac),
        "PE_A's ARP entry for the router is {neigh}, want {mac}"
    );
    // Learned entries are counted (their log line is debug: a flapping MAC must not flood
    // the journal).
    let changes = lab.ctl_json(&["show", "counters"])["neighbour_changes"]
        .as_u64()
        .unwrap_or(0);
    assert!(changes >= 1, "no neighbour change counted");
    assert!(
        !lab.log().contains("arp: 172.16.1.2 is-at"),
        "ARP changes are logged at info"
    );

    // Garbage at the router from PE_A: each kind lands in its own counter, and nothing panics.
    let pe_a = mac_of(&lab, "ispa", "rtr0");
    let eth = |ethertype: u16, payload: &[u8]| {
        let mut f = wan_a.to_vec();
        f.extend_from_slice(&pe_a);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let good_ip = {
        let mut p = vec![0u8; 28];
        let b = etherparse::PacketBuilder::ipv4([172, 18, 0, 6], [172, 16, 1, 1], 64).udp(53, 1000);
        p.clear();
        b.write(&mut p, &[]).unwrap();
        p
    };
    let mut bad_csum = good_ip.clone();
    bad_csum[10] ^= 0xff;
    let mut bad_len = good_ip.clone();
    bad_len[2] = 0xff; // total length beyond the frame
    let mut bad_version = good_ip.clone();
    bad_version[0] = 0x65;
    let before = lab.ctl_json(&["show", "counters"]);
    let count = |v: &serde_json::Value, name: &str| {
        v["drops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d[0] == name)
            .unwrap()[1]
            .as_u64()
            .unwrap()
    };
    let frames = vec![
        eth(0x0800, &bad_csum),
        eth(0x0800, &bad_csum),
        eth(0x0800, &bad_len),
        eth(0x0800, &bad_version),
        eth(0x0800, &good_ip[..10]),
        eth(0x86dd, &[0x60; 40]),
        eth(0x0806, &[1, 2, 3]),
    ];
    send_raw(&format!("{}ispa", lab.prefix), "rtr0", frames);
    lab.settled_drops("bad_ip_checksum", count(&before, "bad_ip_checksum"));
    let after = lab.ctl_json(&["show", "counters"]);
    let delta = |name: &str| count(&after, name) - count(&before, name);
    assert_eq!(delta("bad_ip_checksum"), 2, "{after}");
    assert_eq!(
        delta("truncated"),
        2,
        "bad length and a cut header are truncated: {after}"
    );
    assert_eq!(delta("bad_ip_header"), 1, "{after}");
    assert_eq!(delta("not_ipv4"), 1, "{after}");
    assert_eq!(delta("bad_l4_header"), 1, "malformed ARP: {after}");
    println!(
        "counters after garbage:\n{}",
        lab.ctl(&["show", "counters"])
    );
    // Still alive and answering.
    assert!(lab.ping("ispa", "172.16.1.1"));
}

#[test]
fn carrier_loss_is_seen_and_shutdown_leaves_nothing() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fd2-");
    lab.start_router(&static_config(""));
    let carrier = |lab: &Lab| lab.ctl_json(&["show", "uplinks"])["uplinks"][0]["carrier"].as_bool();
    assert_eq!(carrier(&lab), Some(true));
    let o = lab.sh(&["fault", "a", "link"]);
    assert!(o.status.success(), "{}", text(&o));
    lab.wait_for("carrier down on isp-a", Duration::from_secs(5), || {
        carrier(&lab) == Some(false)
    });
    assert!(
        lab.log().contains("uplink isp-a: carrier down"),
        "{}",
        lab.log()
    );
    lab.sh(&["heal", "a"]);
    lab.wait_for("carrier up on isp-a", Duration::from_secs(5), || {
        carrier(&lab) == Some(true)
    });

    // SIGTERM: the router exits, its TAP and control socket disappear.
    let pid = lab.router_pid().expect("router pid");
    assert!(lab.ok("rtr", &["ip", "link", "show"]).contains("mhr-lan"));
    // SAFETY: signals the router we started, by its recorded pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    lab.wait_for("router exit", Duration::from_secs(5), || {
        // The sandbox's init may not reap: a zombie counts as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(true)
    });
    assert!(
        !lab.ok("rtr", &["ip", "link", "show"]).contains("mhr-lan"),
        "TAP left behind"
    );
    assert!(
        !lab.state_dir().join("ctl.sock").exists(),
        "control socket left behind"
    );
    assert!(lab.log().contains("mhrouter stopped"), "{}", lab.log());
}

/// A carrier change whose netlink event is lost in a socket overrun is still seen: the router,
/// told of the overrun, re-reads every uplink's carrier. The router is stopped while a dummy
/// veth pair of its namespace flaps 5000 times (its events fill the socket) and uplink A then
/// loses its link, so A's event is the one the kernel drops.
#[test]
fn carrier_change_lost_in_a_netlink_overrun_is_still_seen() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fd4-");
    lab.start_router(&static_config(""));
    let carrier = |lab: &Lab| lab.ctl_json(&["show", "uplinks"])["uplinks"][0]["carrier"].as_bool();
    assert_eq!(carrier(&lab), Some(true));
    lab.ok(
        "rtr",
        &[
            "ip", "link", "add", "flap0", "type", "veth", "peer", "name", "flap1",
        ],
    );
    lab.ok("rtr", &["ip", "link", "set", "flap0", "up"]);
    let batch = std::env::temp_dir().join(format!("mh-fd4-{}.batch", std::process::id()));
    let lines: String = (0..5000)
        .map(|i| {
            format!(
                "link set flap1 {}\n",
                if i % 2 == 0 { "up" } else { "down" }
            )
        })
        .collect();
    std::fs::write(&batch, lines).unwrap();
    let pid = lab.router_pid().expect("router pid");
    // SAFETY: signals the router we started, by its recorded pid.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    lab.ok("rtr", &["ip", "-batch", batch.to_str().unwrap()]);
    let o = lab.sh(&["fault", "a", "link"]);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let _ = std::fs::remove_file(&batch);
    assert!(o.status.success(), "{}", text(&o));
    lab.wait_for("carrier down on isp-a", Duration::from_secs(5), || {
        carrier(&lab) == Some(false)
    });
    assert!(
        lab.log().contains("link events lost (socket overrun)"),
        "the flaps did not overrun the socket, so this test shows nothing:\n{}",
        lab.log()
    );
    assert!(
        lab.log().contains("uplink isp-a: carrier down"),
        "{}",
        lab.log()
    );
}

#[test]
fn check_config_reports_file_and_line() {
    let dir = std::env::temp_dir().join(format!("mh-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    let good = static_config("");
    std::fs::write(
        &path,
        good.replace(
            "uplink = \"isp-b\"\ndistance = 20",
            "uplink = \"isp-c\"\ndistance = 20",
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mhrouter"))
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("{}:", path.display())), "{err}");
    assert!(err.contains("isp-c"), "{err}");
    // The error names the line of the bad reference.
    let want = good.replace(
        "uplink = \"isp-b\"\ndistance = 20",
        "uplink = \"isp-c\"\ndistance = 20",
    );
    let n = want.lines().position(|l| l.contains("isp-c")).unwrap() + 1;
    assert!(err.contains(&format!(":{n}:")), "want line {n}: {err}");

    std::fs::write(&path, good).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mhrouter"))
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_config_error_touches_nothing() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fd3-");
    // The uplink NIC does not exist: startup must fail before the TAP is created.
    let cfg = static_config("").replace("interface = \"wan-b\"", "interface = \"wan-z\"");
    let path = lab.state_dir().join("bad.toml");
    std::fs::write(&path, cfg).unwrap();
    let o = lab.sh(&["router", "start", "--config", path.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("wan-z"), "{}", text(&o));
    assert!(
        !lab.ok("rtr", &["ip", "link", "show"]).contains("mhr-lan"),
        "TAP created anyway"
    );
}

/// Frames the kernel drops because an uplink socket's buffer is full are counted: the router is
/// stopped while PE_A sends 20,000 datagrams of 1,000 bytes to its address (several times what
/// the socket holds), and once it resumes `rx_queue_full` and isp-a's `rx_dropped` show the loss.
#[test]
fn frames_lost_in_a_full_uplink_socket_are_counted() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fd5-");
    lab.start_router(&static_config(""));
    assert_eq!(lab.drops("rx_queue_full"), 0);
    let pid = lab.router_pid().expect("router pid");
    // SAFETY: signals the router we started, by its recorded pid.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let flood = lab.exec(
        "ispa",
        &[
            "python3",
            "-c",
            "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for _ in range(20000): s.sendto(b'x' * 1000, ('172.16.1.1', 9))",
        ],
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(flood.status.success(), "{}", text(&flood));
    lab.wait_for("rx_queue_full counted", Duration::from_secs(5), || {
        lab.drops("rx_queue_full") > 0
    });
    let lost = lab.drops("rx_queue_full");
    let counters = lab.ctl_json(&["show", "counters"]);
    let isp_a_dropped = counters["ifaces"][1]["rx_dropped"].as_u64().unwrap();
    assert!(
        lost > 1000 && isp_a_dropped >= lost,
        "{lost} lost, isp-a rx_dropped {isp_a_dropped}"
    );
    lab.ok("lan", &["ping", "-c", "1", "-W", "2", "172.18.0.6"]);
}
