//! Issue 4: the site fails over and back by itself (SPEC 14–25), in the real lab with a fast
//! timing profile: every scenario of SPEC 23, the timing of SPEC 20, the seed's oscillation
//! (SPEC 15), RSTs on a dead uplink (SPEC 21), calm under loss with quorum tracks (SPEC 17).

mod common;

use std::time::Duration;

use common::*;

const INTERVAL_MS: u64 = 200;
const TIMEOUT_MS: u64 = 150;
const DOWN_MS: u64 = 600;
const UP_MS: u64 = 3000;

fn fast_site(extra: &str) -> String {
    site_config(
        &format!("{INTERVAL_MS}ms"),
        &format!("{TIMEOUT_MS}ms"),
        &format!("{DOWN_MS}ms"),
        &format!("{UP_MS}ms"),
        extra,
    )
}

fn wait_installed(lab: &Lab, uplink: &str, distance: u64, within: Duration) {
    lab.wait_for(
        &format!("default via {uplink} [{distance}]"),
        within,
        || installed(lab) == Some((uplink.to_string(), distance)),
    );
}

/// Milliseconds between the first log line containing `from` at or after `since` and the
/// first line containing `to` after it, from the router's own timestamps.
fn logged_gap(lab: &Lab, since: u64, from: &str, to: &str) -> (u64, u64) {
    let t0 = lab.log_time_after(from, since);
    let t1 = lab.log_time_after(to, t0);
    (t0, t1 - t0)
}

/// Asserts `ms` lies in `range`, naming what was measured.
fn within(what: &str, ms: u64, range: std::ops::RangeInclusive<u64>, lab: &Lab) {
    println!("{what}: {ms} ms (expected {range:?} ms)");
    assert!(
        range.contains(&ms),
        "{what}: {ms} ms, expected {range:?} ms (from the configured timers)\n{}",
        lab.log()
    );
}

/// Log lines are stamped when written, in whole milliseconds, a little after the instant the
/// engine scheduled from: a gap between two lines may read this much short of the timer.
const LOG_SLACK_MS: u64 = 3;

/// Timestamps of the echo replies from the central site seen in a capture.
fn reply_times(capture: &str) -> Vec<u64> {
    capture
        .lines()
        .filter(|l| l.contains("172.18.0.6 > ") && l.contains("echo reply"))
        .filter_map(capture_line_ms)
        .collect()
}

fn all_tracks_up(lab: &Lab) -> bool {
    let v = lab.ctl_json(&["show", "tracks"]);
    v["tracks"]
        .as_array()
        .is_some_and(|t| t.iter().all(|t| t["state"] == "up"))
}

fn fault(lab: &Lab, args: &[&str]) {
    let mut a = vec!["fault"];
    a.extend_from_slice(args);
    let o = lab.sh(&a);
    assert!(o.status.success(), "fault {args:?}: {}", text(&o));
}

fn heal(lab: &Lab, side: &str) {
    let o = lab.sh(&["heal", side]);
    assert!(o.status.success(), "heal {side}: {}", text(&o));
}

/// Source address the central site sees for a fresh ping from the LAN host. The ping has a
/// payload size no probe uses (IP length 127), so the captures pick it out whatever ICMP ids
/// the router's probes use.
fn seen_source(lab: &Lab) -> String {
    const FILTER: &str = "icmp and dst host 172.18.0.6 and ip[2:2] = 127";
    let cap_a = Capture::start(lab, "net", "isp-a", FILTER);
    let cap_b = Capture::start(lab, "net", "isp-b", FILTER);
    let ok = (0..3).any(|_| {
        lab.exec(
            "lan",
            &["ping", "-c", "1", "-W", "2", "-s", "99", "172.18.0.6"],
        )
        .status
        .success()
    });
    let (a, b) = (cap_a.stop(), cap_b.stop());
    assert!(
        ok,
        "LAN host cannot reach the central site\n{}",
        lab.diagnose()
    );
    let sources: Vec<&str> = a
        .lines()
        .chain(b.lines())
        .filter_map(|l| l.split(" IP ").nth(1)?.split(" > ").next())
        .collect();
    match sources.as_slice() {
        [first, rest @ ..] if rest.iter().all(|s| s == first) => {
            let on_a = a.contains(first);
            let src = first.to_string();
            assert_eq!(
                on_a,
                src == "172.16.1.1",
                "{src} seen on the wrong link\nA:\n{a}\nB:\n{b}"
            );
            src
        }
        _ => panic!("LAN ping sources {sources:?}\nA:\n{a}\nB:\n{b}"),
    }
}

fn start(prefix: &str, extra: &str) -> Lab {
    let lab = Lab::up(prefix);
    lab.start_router(&fast_site(extra));
    lab.wait_for("all tracks up", Duration::from_secs(10), || {
        all_tracks_up(&lab)
    });
    wait_installed(&lab, "isp-a", 10, Duration::from_secs(5));
    lab
}

#[test]
fn nexthop_dead_fails_over_in_time_and_fails_back_after_delay_up() {
    if !require_root() {
        return;
    }
    // A slow hook on the down change (SPEC 25): it records its environment, then hangs; it is
    // killed after its timeout and never delays the failover.
    let lab = Lab::up("fo1-");
    let hook = lab.state_dir().join("hook.sh");
    let env_file = lab.state_dir().join("hook.env");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nenv | grep ^MHROUTER_ > {}\nsleep 30\n",
            env_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg = fast_site("").replace(
        &format!("name = \"a-e2e\"\nprobe = \"a-e2e\"\ndelay_down = \"{DOWN_MS}ms\"\ndelay_up = \"{UP_MS}ms\"\n"),
        &format!(
            "name = \"a-e2e\"\nprobe = \"a-e2e\"\ndelay_down = \"{DOWN_MS}ms\"\ndelay_up = \"{UP_MS}ms\"\non_down = {{ log = \"ISP A lost\", command = \"{}\", timeout = \"1s\" }}\non_up = {{ command = \"/bin/false\" }}\n",
            hook.display()
        ),
    );
    assert!(cfg.contains("on_down"), "hook not configured");
    lab.start_router(&cfg);
    lab.wait_for("all tracks up", Duration::from_secs(10), || {
        all_tracks_up(&lab)
    });
    wait_installed(&lab, "isp-a", 10, Duration::from_secs(5));
    assert_eq!(seen_source(&lab), "172.16.1.1", "both healthy: A (SPEC 23)");

    // A's next hop silently dead, carrier up → B. Timed from capture and log timestamps, not
    // by polling: the first lost probe is noticed one interval plus one timeout after the last
    // reply the router got, and the route moves exactly delay-down after that.
    let cap = Capture::start(&lab, "rtr", "wan-a", "icmp and src host 172.18.0.6");
    lab.wait_for("a probe reply on wan-a", Duration::from_secs(5), || {
        !reply_times(&cap.so_far()).is_empty()
    });
    let fault_at = now_ms();
    fault(&lab, &["a", "nexthop"]);
    wait_installed(&lab, "isp-b", 11, Duration::from_secs(10));
    let last_reply = *reply_times(&cap.stop())
        .last()
        .expect("no probe reply on wan-a before the fault");
    let (noticed, delayed) = logged_gap(
        &lab,
        fault_at,
        "track a-e2e: down change delayed",
        "route 0.0.0.0/0 via isp-a [10] withdrawn; now via isp-b [11]",
    );
    within(
        "last reply to first timeout",
        noticed.saturating_sub(last_reply),
        TIMEOUT_MS..=INTERVAL_MS + TIMEOUT_MS + INTERVAL_MS / 2,
        &lab,
    );
    within(
        "delay-down",
        delayed,
        DOWN_MS - LOG_SLACK_MS..=DOWN_MS + INTERVAL_MS,
        &lab,
    );
    assert_eq!(seen_source(&lab), "172.17.3.1");

    // The hook ran with the event in its environment, and was killed after its timeout.
    lab.wait_for("hook killed", Duration::from_secs(3), || {
        lab.log().contains("killed after 1000 ms")
    });
    let env = std::fs::read_to_string(&env_file).unwrap_or_default();
    for want in [
        "MHROUTER_TRACK=a-e2e",
        "MHROUTER_OLD=up",
        "MHROUTER_NEW=down",
        "MHROUTER_UPLINK=isp-a",
        "MHROUTER_REASON=probe a-e2e",
        "MHROUTER_CHANGE=2",
    ] {
        assert!(env.contains(want), "hook environment lacks {want}:\n{env}");
    }
    assert!(
        lab.log().contains("track a-e2e: ISP A lost"),
        "{}",
        lab.log()
    );

    // Healing fails back after delay-up, counted from the first good probe (log timestamps).
    let heal_at = now_ms();
    heal(&lab, "a");
    wait_installed(&lab, "isp-a", 10, Duration::from_millis(UP_MS + 5000));
    let (_, delayed) = logged_gap(
        &lab,
        heal_at,
        "track a-e2e: up change delayed",
        "route 0.0.0.0/0 via isp-b [11] preempted; now via isp-a [10]",
    );
    within(
        "delay-up",
        delayed,
        UP_MS - LOG_SLACK_MS..=UP_MS + INTERVAL_MS,
        &lab,
    );
    assert_eq!(seen_source(&lab), "172.16.1.1");
    assert!(
        lab.log().contains("track a-e2e: change #3 down -> up"),
        "{}",
        lab.log()
    );
    // A failing hook command is logged, and changes nothing else.
    lab.wait_for("the failing hook logged", Duration::from_secs(3), || {
        lab.log()
            .contains("track a-e2e: hook /bin/false failed: exit status: 1")
    });
}

#[test]
fn short_outages_and_flaps_are_cancelled_and_move_nothing() {
    if !require_root() {
        return;
    }
    let lab = start("fo2-", "");
    // An outage shorter than delay-down: logged as delayed then cancelled; no change.
    fault(&lab, &["a", "nexthop"]);
    lab.wait_for("down change delayed", Duration::from_secs(2), || {
        lab.log().contains("track a-e2e: down change delayed")
    });
    heal(&lab, "a");
    lab.wait_for("delay cancelled", Duration::from_secs(2), || {
        lab.log()
            .contains("track a-e2e: down change delay cancelled")
    });
    let (started, cancelled) = logged_gap(
        &lab,
        0,
        "track a-e2e: down change delayed",
        "track a-e2e: down change delay cancelled",
    );
    assert!(
        cancelled < DOWN_MS,
        "the outage lasted {cancelled} ms, not shorter than delay-down: nothing tested"
    );
    // Past the moment the change would have been committed (router clock = ours).
    wait_until_ms(started + DOWN_MS + INTERVAL_MS);
    assert_eq!(installed(&lab), Some(("isp-a".into(), 10)));
    assert!(
        !lab.log().contains("via isp-a [10] withdrawn"),
        "{}",
        lab.log()
    );

    // After a real failover, a recovery shorter than delay-up is cancelled: stays on B.
    fault(&lab, &["a", "nexthop"]);
    wait_installed(&lab, "isp-b", 11, Duration::from_secs(3));
    heal(&lab, "a");
    lab.wait_for("up change delayed", Duration::from_secs(2), || {
        lab.log().contains("track a-e2e: up change delayed")
    });
    std::thread::sleep(Duration::from_millis(UP_MS / 3));
    fault(&lab, &["a", "nexthop"]);
    lab.wait_for("up delay cancelled", Duration::from_secs(2), || {
        lab.log().contains("track a-e2e: up change delay cancelled")
    });
    let (started, cancelled) = logged_gap(
        &lab,
        0,
        "track a-e2e: up change delayed",
        "track a-e2e: up change delay cancelled",
    );
    assert!(
        cancelled < UP_MS,
        "the recovery lasted {cancelled} ms, not shorter than delay-up: nothing tested"
    );
    wait_until_ms(started + UP_MS + INTERVAL_MS);
    assert_eq!(
        installed(&lab),
        Some(("isp-b".into(), 11)),
        "a short recovery moved traffic"
    );
    let withdrawals = lab.log().matches("via isp-a [10] withdrawn").count();
    assert_eq!(withdrawals, 1, "{}", lab.log());
}

#[test]
fn upstream_loss_moves_to_b_while_a_probes_stay_on_a() {
    if !require_root() {
        return;
    }
    let lab = start("fo3-", "");
    fault(&lab, &["a", "upstream"]);
    wait_installed(&lab, "isp-b", 11, Duration::from_secs(3));
    // SPEC 15: A's end-to-end probe keeps leaving through A with A's address, so it keeps
    // failing and A stays withdrawn: the seed's oscillation does not happen.
    let cap = Capture::start(&lab, "rtr", "wan-a", "icmp and dst host 172.18.0.6");
    std::thread::sleep(Duration::from_millis(UP_MS + 1000));
    let seen = cap.stop();
    assert!(
        seen.contains("172.16.1.1 > 172.18.0.6: ICMP echo request"),
        "no A probe on wan-a:\n{seen}"
    );
    assert_eq!(
        installed(&lab),
        Some(("isp-b".into(), 11)),
        "oscillated:\n{}",
        lab.log()
    );
    assert_eq!(
        lab.log().matches("via isp-a [10] withdrawn").count(),
        1,
        "{}",
        lab.log()
    );
    // A [10] was installed once, at start, and never came back.
    assert_eq!(
        lab.log().matches("now via isp-a [10]").count(),
        1,
        "{}",
        lab.log()
    );

    // Central site unreachable via both → stay on A's lower tier (next hop still answers).
    fault(&lab, &["b", "upstream"]);
    wait_installed(&lab, "isp-a", 250, Duration::from_secs(3));
    heal(&lab, "b");
    wait_installed(&lab, "isp-b", 11, Duration::from_millis(UP_MS + 2000));
}

#[test]
fn carrier_loss_fails_over_and_resets_tcp_at_once() {
    if !require_root() {
        return;
    }
    let lab = start("fo4-", "");
    // A long TCP flow through A.
    let mut child = lab.spawn(
        "lan",
        &["iperf3", "-c", "172.18.0.6", "-t", "30", "-b", "10M"],
    );
    lab.wait_for("TCP flow on A", Duration::from_secs(5), || {
        lab.ctl_json(&["show", "nat", "uplink", "isp-a"])["sessions"]
            .as_array()
            .is_some_and(|s| {
                s.iter()
                    .any(|s| s["protocol"] == "tcp" && s["state"] == "established")
            })
    });
    let cap = Capture::start(&lab, "lan", "eth0", "tcp[tcpflags] & tcp-rst != 0");
    let fault_at = now_ms();
    fault(&lab, &["a", "link"]);
    wait_installed(&lab, "isp-b", 11, Duration::from_secs(5));
    // The client learns at once: it exits with an error instead of hanging for minutes.
    lab.wait_for("iperf3 exits", Duration::from_secs(10), || {
        matches!(child.0.try_wait(), Ok(Some(_)))
    });
    let seen = cap.stop();
    let rst = seen
        .lines()
        .find(|l| l.contains("172.18.0.6.5201 > 192.168.0.10"))
        .and_then(capture_line_ms)
        .unwrap_or_else(|| panic!("no RST toward the LAN host:\n{seen}"));
    // Carrier loss needs no probe: the route goes with the carrier, the RST with the route.
    let (_, withdrawn) = logged_gap(
        &lab,
        fault_at,
        "uplink isp-a: carrier down",
        "route 0.0.0.0/0 via isp-a [10] withdrawn",
    );
    within(
        "carrier down to withdrawal",
        withdrawn,
        0..=INTERVAL_MS,
        &lab,
    );
    let flushed = lab.log_time_after("TCP resets sent to the LAN", fault_at);
    within(
        "flows removed to RST on the LAN",
        rst.saturating_sub(flushed),
        0..=INTERVAL_MS,
        &lab,
    );
    assert!(
        lab.log().contains("TCP resets sent to the LAN"),
        "{}",
        lab.log()
    );
    // New connections work right away through B.
    let o = lab.exec(
        "lan",
        &[
            "timeout",
            "2",
            "bash",
            "-c",
            "echo > /dev/tcp/172.18.0.6/5201",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn loss_on_a_with_quorum_tracks_causes_no_failover() {
    if !require_root() {
        return;
    }
    // The end-to-end tier follows a quorum: at least 2 of 3 different probes to the central site
    // (ICMP, TCP to iperf3's port, DNS) must fail for 1 s before A is given up.
    let quorum = r#"
[[probe]]
name = "a-tcp"
type = "tcp"
uplink = "isp-a"
target = "172.18.0.6"
port = 5201
interval = "200ms"
timeout = "150ms"

[[probe]]
name = "a-dns"
type = "dns"
uplink = "isp-a"
target = "172.18.0.6"
query = "probe.lab"
interval = "200ms"
timeout = "150ms"

[[track]]
name = "a-tcp"
probe = "a-tcp"
delay_down = "1s"
delay_up = "3s"

[[track]]
name = "a-dns"
probe = "a-dns"
delay_down = "1s"
delay_up = "3s"

[[track]]
name = "a-quorum"
list = ["a-e2e", "a-tcp", "a-dns"]
op = "at-least"
at_least = 2
"#;
    let cfg = fast_site(quorum)
        .replace(
            "distance = 10\ntrack = \"a-e2e\"",
            "distance = 10\ntrack = \"a-quorum\"",
        )
        .replace(
            "name = \"a-e2e\"\nprobe = \"a-e2e\"\ndelay_down = \"600ms\"",
            "name = \"a-e2e\"\nprobe = \"a-e2e\"\ndelay_down = \"1s\"",
        );
    let lab = Lab::up("fo5-");
    lab.start_router(&cfg);
    lab.wait_for("all tracks up", Duration::from_secs(10), || {
        all_tracks_up(&lab)
    });
    wait_installed(&lab, "isp-a", 10, Duration::from_secs(5));
    fault(&lab, &["a", "loss", "10"]);
    // 30 s of 10% loss; any failover, even one undone since, is in the log checked below.
    std::thread::sleep(Duration::from_secs(30));
    assert_eq!(installed(&lab), Some(("isp-a".into(), 10)));
    heal(&lab, "a");
    let probes = lab.ctl_json(&["show", "probes"]);
    let lost: u64 = probes["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["uplink"] == "isp-a")
        .map(|p| p["stats"]["timeouts"].as_u64().unwrap_or(0))
        .sum();
    assert!(lost > 0, "the loss fault lost no probe: {probes}");
    assert!(
        !lab.log().contains("via isp-a [10] withdrawn"),
        "{}",
        lab.log()
    );
}

#[test]
fn failback_move_brings_flows_home_after_the_grace() {
    if !require_root() {
        return;
    }
    let lab = start(
        "fo6-",
        "\n[failover]\nfailback = \"move\"\nfailback_grace = \"1s\"\n",
    );
    fault(&lab, &["a", "nexthop"]);
    wait_installed(&lab, "isp-b", 11, Duration::from_secs(3));
    // One long-lived ICMP flow (one echo id) established on B.
    let _pinger = lab.spawn(
        "lan",
        &["ping", "-i", "0.1", "-c", "150", "-s", "99", "172.18.0.6"],
    );
    let on = |uplink: &str| {
        lab.ctl_json(&["show", "nat", "uplink", uplink])["sessions"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["protocol"] == "icmp"))
    };
    lab.wait_for("ping flow on B", Duration::from_secs(3), || on("isp-b"));
    // Captures on both links show when the ping flow really moved, against the grace period
    // measured from the router's own log.
    let filter = "icmp and dst host 172.18.0.6 and ip[2:2] = 127";
    let (cap_a, cap_b) = (
        Capture::start(&lab, "net", "isp-a", filter),
        Capture::start(&lab, "net", "isp-b", filter),
    );
    let heal_at = now_ms();
    heal(&lab, "a");
    wait_installed(&lab, "isp-a", 10, Duration::from_millis(UP_MS + 5000));
    lab.wait_for("ping flow moved to A", Duration::from_secs(5), || {
        on("isp-a") && !on("isp-b")
    });
    std::thread::sleep(Duration::from_millis(300));
    let (a, b) = (cap_a.stop(), cap_b.stop());
    let (back, grace) = logged_gap(
        &lab,
        heal_at,
        "failback: flows on backup uplinks move in 1 s",
        "uplink isp-b: failback grace over",
    );
    within(
        "failback grace",
        grace,
        1000 - LOG_SLACK_MS..=1000 + INTERVAL_MS,
        &lab,
    );
    let moved = back + grace;
    let times = |c: &str| c.lines().filter_map(capture_line_ms).collect::<Vec<_>>();
    let (on_a, on_b) = (times(&a), times(&b));
    // With "stay" the flow would remain on B; with "move" it stays there through the grace...
    assert!(
        on_b.iter().any(|&t| t > back + 500 && t < moved),
        "the flow left B before the grace was over (failback at {back}, grace over at {moved}):\nB:\n{b}"
    );
    // ...and every packet after it goes through A.
    assert!(
        on_a.first().is_some_and(|&t| t >= back) && on_b.iter().all(|&t| t <= moved + 50),
        "moved at the wrong time (failback at {back}, grace over at {moved}):\nA:\n{a}\nB:\n{b}"
    );
}

#[test]
fn a_flood_of_unsolicited_traffic_does_not_starve_the_probes() {
    if !require_root() {
        return;
    }
    let lab = start("fo7-", "");
    // 60000 UDP datagrams from a scanner on the Internet (not a probe target) at A's address.
    let wan_a = mac_of(&lab, "rtr", "wan-a");
    let pe_a = mac_of(&lab, "ispa", "rtr0");
    let frames: Vec<Vec<u8>> = (0..60_000u32)
        .map(|i| {
            let mut f = wan_a.to_vec();
            f.extend_from_slice(&pe_a);
            f.extend_from_slice(&[0x08, 0x00]);
            etherparse::PacketBuilder::ipv4([10, 99, 0, 1], [172, 16, 1, 1], 60)
                .udp(1000 + (i % 50_000) as u16, 1024 + (i % 60_000) as u16)
                .write(&mut f, &[0u8; 32])
                .unwrap();
            f
        })
        .collect();
    let before = lab.drops("nat_unsolicited");
    send_raw(&format!("{}ispa", lab.prefix), "rtr0", frames);
    let dropped = lab.settled_drops("nat_unsolicited", before) - before;
    assert!(
        dropped > 50_000,
        "only {dropped} of 60000 counted as unsolicited"
    );
    assert_eq!(
        lab.drops("punt_queue_full"),
        0,
        "the flood reached the control plane"
    );
    assert_eq!(installed(&lab), Some(("isp-a".into(), 10)));
    assert!(
        !lab.log().contains("down change delayed"),
        "a probe was lost:\n{}",
        lab.log()
    );
}

/// Seconds-long idle TCP connection from the LAN host to iperf3's port: a flow that sends
/// nothing, so any RST the host gets was sent by the router on its own.
fn idle_tcp(lab: &Lab) -> Background {
    lab.spawn(
        "lan",
        &["bash", "-c", "exec 3<>/dev/tcp/172.18.0.6/5201; sleep 60"],
    )
}

fn tcp_sessions(lab: &Lab, uplink: &str) -> Vec<String> {
    lab.ctl_json(&["show", "nat", "uplink", uplink])["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["protocol"] == "tcp")
        .map(|s| format!("{} {}", s["inside"], s["outside"]))
        .collect()
}

#[test]
fn flows_stay_while_no_uplink_is_usable_and_reset_tcp_false_sends_none() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fo8-");
    lab.start_router(&(static_config("") + "\n[failover]\nreset_tcp = false\n"));
    wait_installed(&lab, "isp-a", 10, Duration::from_secs(5));

    // reset_tcp = false: A's flows are removed when B takes over, but no RST is sent.
    let _conn = idle_tcp(&lab);
    lab.wait_for("the idle flow on A", Duration::from_secs(5), || {
        !tcp_sessions(&lab, "isp-a").is_empty()
    });
    let cap = Capture::start(&lab, "lan", "eth0", "tcp[tcpflags] & tcp-rst != 0");
    fault(&lab, &["a", "link"]);
    lab.wait_for("A's flows removed", Duration::from_secs(5), || {
        lab.log().contains(
            "uplink isp-a: no installed route left; 1 NAT flows removed, 0 TCP resets sent to the LAN",
        )
    });
    let flushed = lab.log_time_after("uplink isp-a: no installed route left", 0);
    // Past the moment the RSTs would have gone out with the flush.
    wait_until_ms(flushed + 500);
    let seen = cap.stop();
    assert!(
        !seen.contains(" IP "),
        "RST sent although reset_tcp = false:\n{seen}"
    );
    heal(&lab, "a");
    wait_installed(&lab, "isp-a", 10, Duration::from_secs(5));

    // SPEC 21: with no other uplink usable, A's flows are kept through the outage, so they
    // continue when it returns.
    let _conn = idle_tcp(&lab);
    lab.wait_for("a new idle flow on A", Duration::from_secs(5), || {
        !tcp_sessions(&lab, "isp-a").is_empty()
    });
    let kept = tcp_sessions(&lab, "isp-a");
    fault(&lab, &["b", "link"]);
    lab.wait_for("B's carrier down", Duration::from_secs(5), || {
        lab.log().contains("uplink isp-b: carrier down")
    });
    let outage = now_ms();
    fault(&lab, &["a", "link"]);
    lab.wait_for("no route left", Duration::from_secs(5), || {
        installed(&lab).is_none()
    });
    let withdrawn = lab.log_time_after("route 0.0.0.0/0 via isp-a [10] withdrawn", outage);
    wait_until_ms(withdrawn + 500);
    assert_eq!(
        tcp_sessions(&lab, "isp-a"),
        kept,
        "flows removed with no uplink usable"
    );
    heal(&lab, "a");
    wait_installed(&lab, "isp-a", 10, Duration::from_secs(5));
    assert_eq!(
        tcp_sessions(&lab, "isp-a"),
        kept,
        "the flow did not survive the outage"
    );
    assert_eq!(
        lab.log()
            .matches("uplink isp-a: no installed route left")
            .count(),
        1,
        "{}",
        lab.log()
    );
}

/// A burst of ARP at the control thread (requests for the router's LAN address from many
/// senders, more than the punt queue holds) does not delay the probes: their replies have their
/// own queue and thread, and ARP beyond its rate is dropped in the workers (SPEC 35).
#[test]
fn a_burst_of_arp_at_the_control_thread_does_not_delay_the_probes() {
    if !require_root() {
        return;
    }
    let lab = start("fo8-", "");
    let frames: Vec<Vec<u8>> = (0..200_000u32)
        .map(|i| {
            let mac = [0x02, 0xaa, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            let sender = [192, 168, 0, 2 + (i % 250) as u8];
            let mut f = vec![0xff; 6];
            f.extend_from_slice(&mac);
            f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
            f.extend_from_slice(&mac);
            f.extend_from_slice(&sender);
            f.extend_from_slice(&[0; 6]);
            f.extend_from_slice(&[192, 168, 0, 1]);
            f.resize(60, 0);
            f
        })
        .collect();
    let punted = |lab: &Lab| {
        lab.ctl_json(&["show", "counters"])["punted"]
            .as_u64()
            .unwrap()
    };
    let before = punted(&lab);
    let limited_before = lab.drops("arp_rate_limited");
    send_raw(&format!("{}lan", lab.prefix), "eth0", frames);
    std::thread::sleep(Duration::from_millis(DOWN_MS + 2 * INTERVAL_MS));
    let reached = punted(&lab) - before;
    let limited = lab.drops("arp_rate_limited") - limited_before;
    assert!(
        reached + limited > 20_000,
        "only {reached} ARP frames reached the router ({limited} over the rate)"
    );
    eprintln!(
        "{reached} ARP frames punted, {limited} over the rate, {} dropped for a full ARP queue",
        lab.drops("arp_queue_full")
    );
    assert_eq!(installed(&lab), Some(("isp-a".into(), 10)));
    assert!(
        !lab.log().contains("down change delayed"),
        "a probe was lost:\n{}",
        lab.log()
    );
}
