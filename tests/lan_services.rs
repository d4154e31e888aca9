//! What the router serves on the LAN, against real peers: the DHCP server (SPEC 27) with ISC
//! dhclient, busybox udhcpc and dhcpcd, each in its own namespace on the lab's LAN bridge
//! (`lab.sh host add`); the DNS forwarder (SPEC 30) with dig, before and after a failover.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{Background, Capture, Lab, require_root, static_config};

/// The pool starts at the static LAN host's address (192.168.0.10), so the first candidate is
/// in use: only the ARP conflict check keeps it from being offered.
const DHCP: &str = r#"
[dhcp_server]
pool = ["192.168.0.10-192.168.0.19"]
dns_servers = ["172.18.0.6"]
domain = "lab"
lease_time = "60s"
lease_file = "LEASE_FILE"
"#;

fn config(lab: &Lab) -> String {
    let file = lab.state_dir().join("dhcp.leases");
    static_config("") + &DHCP.replace("LEASE_FILE", file.to_str().unwrap())
}

/// The IPv4 address on eth0 of host `ns`, if any.
fn address(lab: &Lab, ns: &str) -> Option<Ipv4Addr> {
    let out = lab.ok(ns, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    let word = out.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
    word.split('/').next()?.parse().ok()
}

fn default_route(lab: &Lab, ns: &str) -> String {
    lab.ok(ns, &["ip", "-4", "route", "show", "default"])
}

/// The resolv.conf the client's script wrote for host `ns` (lab.sh gives each its own).
fn resolv_conf(lab: &Lab, ns: &str) -> String {
    std::fs::read_to_string(format!("/etc/netns/{}{ns}/resolv.conf", lab.prefix))
        .unwrap_or_default()
}

/// `show dhcp leases --json` as (address, state, seconds left).
fn leases(lab: &Lab) -> Vec<(Ipv4Addr, String, u64)> {
    let j = lab.ctl_json(&["show", "dhcp", "leases"]);
    j["leases"]
        .as_array()
        .expect("leases array")
        .iter()
        .map(|l| {
            (
                l["address"].as_str().unwrap().parse().unwrap(),
                l["state"].as_str().unwrap().to_string(),
                l["expires_in_s"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A DHCP client in host `ns`, in a session of its own so that `stop` reaches everything it
/// forks (dhcpcd's privilege-separated helpers outlive a killed parent).
fn client(lab: &Lab, ns: &str, cmd: &[&str]) -> Client {
    let mut args = vec!["setsid"];
    args.extend_from_slice(cmd);
    Client(lab.spawn(ns, &args))
}

struct Client(Background);

/// SIGTERM to the client's whole session, SIGKILL after 5 s; also when a test fails.
impl Drop for Client {
    fn drop(&mut self) {
        let b = &mut self.0;
        let pgid = b.0.id() as i32;
        // SAFETY: kill has no memory preconditions; the group is the one setsid made for `b`.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let start = Instant::now();
        while b.0.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// Starts the three clients, one per host; each stays in the foreground.
fn start_clients(lab: &Lab) -> Vec<Client> {
    let state = lab.state_dir();
    let pid = state.join("h1-dhclient.pid");
    let lease = state.join("h1-dhclient.leases");
    vec![
        client(
            lab,
            "h1",
            &[
                "dhclient",
                "-d",
                "-pf",
                pid.to_str().unwrap(),
                "-lf",
                lease.to_str().unwrap(),
                "eth0",
            ],
        ),
        client(
            lab,
            "h2",
            &["udhcpc", "-f", "-i", "eth0", "-t", "20", "-T", "1"],
        ),
        // dhcpcd keeps its state in /run/dhcpcd and /var/lib/dhcpcd: tmpfs here, so nothing of
        // it reaches the machine (ip netns exec gives the command its own mount namespace).
        client(
            lab,
            "h3",
            &[
                "sh",
                "-c",
                "mkdir -p /run/dhcpcd /var/lib/dhcpcd && mount -t tmpfs tmpfs /run/dhcpcd && \
                 mount -t tmpfs tmpfs /var/lib/dhcpcd && exec dhcpcd -4 -B eth0",
            ],
        ),
    ]
}

#[test]
fn real_clients_get_leases_renew_them_keep_them_across_a_restart_and_release() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("dhc");
    lab.start_router(&config(&lab));
    let hosts = ["h1", "h2", "h3"];
    for n in ["1", "2", "3"] {
        assert!(lab.sh(&["host", "add", n]).status.success());
    }
    let clients = start_clients(&lab);
    lab.wait_for("three leases", Duration::from_secs(30), || {
        hosts.iter().all(|h| address(&lab, h).is_some())
    });
    let bound = Instant::now();
    let addrs: Vec<Ipv4Addr> = hosts.iter().map(|h| address(&lab, h).unwrap()).collect();
    eprintln!(
        "leases: {addrs:?}\n{}",
        lab.ctl(&["show", "dhcp", "leases"])
    );
    for (h, a) in hosts.iter().zip(&addrs) {
        assert!(
            (Ipv4Addr::new(192, 168, 0, 11)..=Ipv4Addr::new(192, 168, 0, 19)).contains(a),
            "{h}: {a} is not in the pool past the address in use (192.168.0.10)"
        );
        assert!(
            default_route(&lab, h).contains("via 192.168.0.1"),
            "{h}: {}",
            default_route(&lab, h)
        );
        assert!(
            resolv_conf(&lab, h).contains("172.18.0.6"),
            "{h}: resolv.conf:\n{}",
            resolv_conf(&lab, h)
        );
    }
    let mut unique = addrs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "two clients share an address: {addrs:?}");
    assert!(
        lab.ping("h1", "172.18.0.6"),
        "a leased host reaches the Internet side"
    );

    // T1 is 30 s: by 45 s every client has renewed, so each lease has well over 15 s left.
    std::thread::sleep(Duration::from_secs(45).saturating_sub(bound.elapsed()));
    lab.wait_for("renewals", Duration::from_secs(10), || {
        let l = leases(&lab);
        l.len() == 3
            && l.iter()
                .all(|(_, state, left)| state == "bound" && *left > 20)
    });

    // A restarted router knows the leases from its file and keeps renewing them.
    assert!(lab.sh(&["router", "stop"]).status.success());
    lab.start_router(&config(&lab));
    let after: Vec<Ipv4Addr> = leases(&lab).into_iter().map(|l| l.0).collect();
    assert_eq!(after, unique, "leases after the restart");
    // A newcomer gets none of them.
    assert!(lab.sh(&["host", "add", "4"]).status.success());
    let newcomer = client(
        &lab,
        "h4",
        &["udhcpc", "-f", "-i", "eth0", "-t", "20", "-T", "1"],
    );
    lab.wait_for("a fourth lease", Duration::from_secs(20), || {
        address(&lab, "h4").is_some()
    });
    assert!(!unique.contains(&address(&lab, "h4").unwrap()));

    // dhclient -r sends a RELEASE (and stops the running dhclient): the lease is gone.
    let state = lab.state_dir();
    let o = lab.exec(
        "h1",
        &[
            "dhclient",
            "-r",
            "-pf",
            state.join("h1-dhclient.pid").to_str().unwrap(),
            "-lf",
            state.join("h1-dhclient.leases").to_str().unwrap(),
            "eth0",
        ],
    );
    assert!(o.status.success(), "{}", common::text(&o));
    lab.wait_for("the release", Duration::from_secs(10), || {
        !leases(&lab).iter().any(|l| l.0 == addrs[0])
    });
    drop((clients, newcomer));
}

/// One query with dig through the router; its answer (short form).
fn dig(lab: &Lab, name: &str) -> String {
    let out = lab.ok(
        "lan",
        &["dig", "+short", "+time=3", "+tries=1", "@192.168.0.1", name],
    );
    out.trim().to_string()
}

/// The lines of a tcpdump capture that are queries from the router to the resolver.
fn queries(capture: &str, from: &str) -> Vec<String> {
    capture
        .lines()
        .filter(|l| l.contains(&format!("{from}.53 > 172.18.0.6.53:")))
        .map(str::to_string)
        .collect()
}

#[test]
fn dns_resolves_through_the_uplink_that_carries_the_default_route_before_and_after_failover() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("dns");
    // Both ISPs' resolver is the central site's dnsmasq (probe.lab -> 172.18.0.6, TTL 0, so
    // every query goes upstream).
    let cfg = static_config("dns_servers = [\"172.18.0.6\"]").replace(
        "next_hop = \"172.17.3.2\"\n",
        "next_hop = \"172.17.3.2\"\ndns_servers = [\"172.18.0.6\"]\n",
    ) + "\n[dns]\n";
    lab.start_router(&cfg);
    let cap_a = Capture::start(&lab, "ispa", "rtr0", "udp port 53");
    let cap_b = Capture::start(&lab, "ispb", "rtr0", "udp port 53");
    assert_eq!(dig(&lab, "probe.lab"), "172.18.0.6");

    assert!(lab.sh(&["fault", "a", "link"]).status.success());
    lab.wait_for(
        "the default route on isp-b",
        Duration::from_secs(10),
        || lab.ctl_json(&["show", "route"])["gateway_of_last_resort"]["uplink"] == "isp-b",
    );
    assert_eq!(dig(&lab, "probe.lab"), "172.18.0.6");
    let (a, b) = (cap_a.stop(), cap_b.stop());
    eprintln!("PE_A:\n{a}PE_B:\n{b}");
    assert_eq!(
        queries(&a, "172.16.1.1").len(),
        1,
        "one query through A before:\n{a}"
    );
    assert_eq!(
        queries(&b, "172.17.3.1").len(),
        1,
        "one query through B after:\n{b}"
    );
    assert!(
        lab.log()
            .contains("dns: forwarding to [172.18.0.6] through uplink isp-b")
    );
}
