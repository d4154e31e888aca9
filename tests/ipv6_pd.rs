//! DHCPv6 prefix delegation on an uplink (SPEC 32) against a real server: Kea in PE_B
//! (`lab.sh isp-dhcp6 b kea`, 20 s lifetimes, T1 10 s, T2 16 s) delegates 2001:db8:b::/48;
//! the LAN host's own SLAAC takes an address in 2001:db8:b:1::/64 from the router's RAs and
//! its pings leave by PE_B. The router renews at T1; Kea renumbering to 2001:db8:bb::/48
//! withdraws the old /64 (RA lifetimes 0, the host's address deprecated, code 5 for flows from
//! it) and advertises the new one; with the server gone it rebinds at T2 and the prefix is
//! withdrawn at expiry. Timings are read from the router's log and the captures.

mod common;

use std::time::Duration;

use common::{Capture, Lab, capture_line_ms, repo, require_root, text};

const SERVER6: &str = "2001:db8:18::6";
const T1_MS: u64 = 10_000;
const T2_MS: u64 = 16_000;
const VALID_MS: u64 = 20_000;
/// How late after its due time a timer may fire and be logged: the control thread's wake-up
/// and the exchange with the server, on a loaded machine.
const LATE_MS: u64 = 600;
const DELEGATED: &str = "%DHCPV6-6-PREFIX_DELEGATED: Interface wan-b delegated 2001:db8:b::/48, valid 20 s, preferred 20 s (T1 10 s, T2 16 s) from fe80::";

/// scripts/lab-pd-b.toml with probes every second and tracks that change after 2 s.
fn config() -> String {
    std::fs::read_to_string(repo().join("scripts/lab-pd-b.toml"))
        .expect("scripts/lab-pd-b.toml")
        .replace("interval = \"3s\"", "interval = \"1s\"")
        .replace("timeout = \"1s\"", "timeout = \"500ms\"")
        .replace("delay_down = \"10s\"", "delay_down = \"2s\"")
        .replace("delay_up = \"20s\"", "delay_up = \"2s\"")
}

fn isp_dhcp6(lab: &Lab, args: &[&str]) {
    let a = [&["isp-dhcp6", "b"], args].concat();
    let o = lab.sh(&a);
    assert!(o.status.success(), "{a:?}:\n{}", text(&o));
}

/// A lab whose PE_B delegates by Kea (20 s) and whose router runs lab-pd-b.toml; returns it
/// with a capture of the DHCPv6 exchange on PE_B's side of the link, started first.
fn pd_lab(prefix: &str) -> (Lab, Capture) {
    let lab = Lab::up(prefix);
    let dhcp = Capture::start(&lab, "ispb", "rtr0", "udp port 547");
    isp_dhcp6(&lab, &["kea", "--lease", "20"]);
    lab.start_router(&config());
    (lab, dhcp)
}

/// The LAN host's global address in `lan_prefix` ("2001:db8:b:1:") with its preferred
/// lifetime in seconds, from `ip -j -6 addr`.
fn host_addr(lab: &Lab, lan_prefix: &str) -> Option<(String, u64)> {
    let out = lab.ok("lan", &["ip", "-j", "-6", "addr", "show", "dev", "eth0"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
    v[0]["addr_info"].as_array()?.iter().find_map(|a| {
        let local = a["local"].as_str()?;
        (local.starts_with(lan_prefix) && a["tentative"] != true).then(|| {
            (
                local.to_string(),
                a["preferred_life_time"].as_u64().unwrap_or(0),
            )
        })
    })
}

fn wait_host_addr(lab: &Lab, lan_prefix: &str) -> String {
    let mut found = None;
    lab.wait_for(
        &format!("a SLAAC address in {lan_prefix}:/64 on the LAN host"),
        Duration::from_secs(20),
        || {
            found = host_addr(lab, lan_prefix);
            found.is_some()
        },
    );
    found.unwrap().0
}

/// The time the first delegation was logged; on a timeout, what the server and the wire saw.
fn delegation(lab: &Lab, dhcp: &Capture) -> u64 {
    for _ in 0..200 {
        if let Some(&t) = lab.log_times(DELEGATED).first() {
            return t;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let kea =
        std::fs::read_to_string(lab.state_dir().join("ispb-kea6/kea.log")).unwrap_or_default();
    panic!(
        "no delegation in 20 s\nrouter log:\n{}\ncapture:\n{}\nkea log (tail):\n{}",
        lab.log(),
        dhcp.so_far(),
        kea.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
}

fn logged(lab: &Lab, line: &str, timeout: Duration) -> u64 {
    lab.wait_for(line, timeout, || lab.log().contains(line));
    lab.log_times(line)[0]
}

fn within(what: &str, ms: u64, due: u64, lab: &Lab) {
    assert!(
        (due.saturating_sub(100)..=due + LATE_MS).contains(&ms),
        "{what}: {ms} ms, due at {due} ms\n{}",
        lab.log()
    );
}

/// The time of the first captured message of `kind` ("request", "renew", ...) at or after
/// `since`.
fn sent_at(capture: &str, kind: &str, since: u64) -> u64 {
    capture
        .lines()
        .filter(|l| l.contains(&format!("dhcp6 {kind}")))
        .filter_map(capture_line_ms)
        .find(|&t| t >= since)
        .unwrap_or_else(|| panic!("no dhcp6 {kind} captured:\n{capture}"))
}

/// The `show ipv6` row of the prefix delegation client on isp-b.
fn pd_row(lab: &Lab) -> serde_json::Value {
    let v = lab.ctl_json(&["show", "ipv6"]);
    v["prefix_delegation"][0].clone()
}

/// The LAN prefix the RAs give isp-b now, and its state, if any.
fn lan_prefix_b(lab: &Lab) -> Option<(String, String)> {
    let v = lab.ctl_json(&["show", "ipv6"]);
    v["prefixes"].as_array()?.iter().find_map(|p| {
        (p["uplink"] == "isp-b").then(|| {
            (
                p["lan_prefix"].as_str().unwrap_or("").to_string(),
                p["state"].as_str().unwrap_or("").to_string(),
            )
        })
    })
}

/// A ping from `src` answered, having gone through PE_B (seen on its link to the central
/// site; its link to the router holds the DHCPv6 capture).
fn pings_through_b(lab: &Lab, src: &str) {
    let cap = Capture::start(lab, "ispb", "net0", &format!("ip6 and host {SERVER6}"));
    let ping = lab.exec(
        "lan",
        &["ping", "-6", "-c", "2", "-W", "2", "-I", src, SERVER6],
    );
    assert!(
        ping.status.success(),
        "ping -6 from {src}:\n{}",
        text(&ping)
    );
    let seen = cap.stop();
    assert!(
        seen.lines()
            .any(|l| l.contains(&format!("{src} > {SERVER6}"))),
        "not through ISP B:\n{seen}"
    );
}

/// The router answers a ping to its address `addr` (after its DAD).
fn router_answers(lab: &Lab, addr: &str) {
    lab.wait_for(
        &format!("the router answering at {addr}"),
        Duration::from_secs(5),
        || {
            lab.exec("lan", &["ping", "-6", "-c", "1", "-W", "1", addr])
                .status
                .success()
        },
    );
}

/// A ping from `src` refused by the router with code 5 (counted), not forwarded.
fn refused_with_code_5(lab: &Lab, src: &str) {
    let before = lab.drops("source_policy_failed");
    let ping = lab.exec(
        "lan",
        &["ping", "-6", "-c", "1", "-W", "2", "-I", src, SERVER6],
    );
    assert!(!ping.status.success(), "{}", text(&ping));
    assert!(
        text(&ping).contains("Destination unreachable"),
        "no ICMPv6 error: {}",
        text(&ping)
    );
    assert!(
        lab.drops("source_policy_failed") > before,
        "no code 5 counted: {}",
        text(&ping)
    );
}

#[test]
fn delegated_prefix_reaches_the_lan_renews_at_t1_and_renumbers() {
    if !require_root() {
        return;
    }
    let (lab, dhcp) = pd_lab("pd1-");
    let delegated = delegation(&lab, &dhcp);
    let old = wait_host_addr(&lab, "2001:db8:b:1:");
    let row = pd_row(&lab);
    assert_eq!(row["state"], "bound", "{row}");
    assert_eq!(row["prefix"], "2001:db8:b::/48", "{row}");
    assert!(row["renew_in_s"].as_u64().unwrap() <= 10, "{row}");
    lab.wait_for(
        "isp-b's LAN prefix preferred",
        Duration::from_secs(20),
        || lan_prefix_b(&lab) == Some(("2001:db8:b:1::/64".into(), "preferred".into())),
    );
    pings_through_b(&lab, &old);
    // The router's own address in the delegated LAN prefix (::1) answers once DAD passed.
    router_answers(&lab, "2001:db8:b:1::1");

    // RENEW at T1, counted from the REQUEST that got the delegation.
    let renewed = logged(
        &lab,
        "dhcpv6: wan-b renewed 2001:db8:b::/48 from fe80::",
        Duration::from_secs(15),
    );
    within("renewed (log)", renewed - delegated, T1_MS, &lab);
    let seen = dhcp.so_far();
    let requested = sent_at(&seen, "request", 0);
    let renew = sent_at(&seen, "renew", requested);
    within("RENEW on the wire", renew - requested, T1_MS, &lab);

    // Kea renumbers: the next Renew's Reply carries 2001:db8:bb::/48 (and the old prefix with
    // lifetimes 0). The RAs withdraw 2001:db8:b:1::/64 and advertise 2001:db8:bb:1::/64.
    let ra = Capture::start(&lab, "lan", "eth0", "-v icmp6 and ip6[40] == 134");
    isp_dhcp6(&lab, &["kea", "--lease", "20", "--renumber"]);
    logged(
        &lab,
        "%DHCPV6-4-PREFIX_RENUMBERED: Interface wan-b LAN prefix 2001:db8:b:1::/64 -> 2001:db8:bb:1::/64",
        Duration::from_secs(15),
    );
    assert!(
        lab.log().contains(
            "%DHCPV6-4-PREFIX_LOST: Interface wan-b lost delegated prefix 2001:db8:b::/48"
        ),
        "{}",
        lab.log()
    );
    let new = wait_host_addr(&lab, "2001:db8:bb:1:");
    lab.wait_for(
        "the old address deprecated on the host",
        Duration::from_secs(10),
        || host_addr(&lab, "2001:db8:b:1:").is_some_and(|(_, preferred)| preferred == 0),
    );
    let adverts = ra.stop();
    assert!(
        adverts.lines().any(|l| l.contains("2001:db8:b:1::/64")
            && l.contains("valid time 0s")
            && l.contains("pref. time 0s")),
        "no RA withdrawing 2001:db8:b:1::/64:\n{adverts}"
    );
    println!(
        "LAN host after renumbering:\n{}",
        lab.ok("lan", &["ip", "-6", "addr", "show", "dev", "eth0"])
    );
    assert_eq!(pd_row(&lab)["prefix"], "2001:db8:bb::/48");
    lab.wait_for(
        "the new LAN prefix preferred",
        Duration::from_secs(10),
        || lan_prefix_b(&lab) == Some(("2001:db8:bb:1::/64".into(), "preferred".into())),
    );
    pings_through_b(&lab, &new);
    router_answers(&lab, "2001:db8:bb:1::1");
    refused_with_code_5(&lab, &old);
    dhcp.stop();
}

#[test]
fn without_the_server_it_rebinds_at_t2_and_the_prefix_is_withdrawn_at_expiry() {
    if !require_root() {
        return;
    }
    let (lab, dhcp) = pd_lab("pd2-");
    let delegated = delegation(&lab, &dhcp);
    isp_dhcp6(&lab, &["stop"]);
    let addr = wait_host_addr(&lab, "2001:db8:b:1:");

    let rebinding = logged(
        &lab,
        "dhcpv6: wan-b rebinding 2001:db8:b::/48",
        Duration::from_secs(20),
    );
    within("rebinding", rebinding - delegated, T2_MS, &lab);
    let lost = logged(
        &lab,
        "%DHCPV6-4-PREFIX_LOST: Interface wan-b lost delegated prefix 2001:db8:b::/48",
        Duration::from_secs(10),
    );
    within("lost at expiry", lost - delegated, VALID_MS, &lab);
    let seen = dhcp.stop();
    let requested = sent_at(&seen, "request", 0);
    within(
        "RENEW on the wire",
        sent_at(&seen, "renew", requested) - requested,
        T1_MS,
        &lab,
    );
    within(
        "REBIND on the wire",
        sent_at(&seen, "rebind", requested) - requested,
        T2_MS,
        &lab,
    );
    // Soliciting again after the loss.
    sent_at(&seen, "solicit", lost.saturating_sub(100));

    assert_eq!(lan_prefix_b(&lab), None, "isp-b's prefix still shown");
    let row = pd_row(&lab);
    assert_eq!(row["state"], "soliciting", "{row}");
    assert!(row["prefix"].is_null(), "{row}");
    assert!(row["sent"].as_u64().unwrap() >= 4, "{row}");
    assert_eq!(row["received"], 2, "an Advertise and a Reply: {row}");
    lab.wait_for(
        "the address deprecated on the host",
        Duration::from_secs(10),
        || host_addr(&lab, "2001:db8:b:1:").is_some_and(|(_, preferred)| preferred == 0),
    );
    refused_with_code_5(&lab, &addr);
}
