//! Parsing the example and the defaults; one test per validation error, each checking the
//! message and the line (the line marked `# <-` in the test's text); a fuzz property.

use std::net::Ipv4Addr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

mod ipv6;
mod npt6;
mod probes6;
mod routes6;

const EXAMPLE: &str = include_str!("../../scripts/example.toml");

/// LAN and one uplink: the smallest valid configuration.
const BASE: &str = r#"
[lan]
address = "192.168.0.1/24"

[[uplink]]
name = "isp-a"
interface = "wan-a"
address = "172.16.1.1/30"
next_hop = "172.16.1.2"
"#;

fn base(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn ok(text: &str) -> Config {
    match Config::parse(text, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// Asserts that `text` fails with exactly `message` on the line marked `# <-`.
#[track_caller]
fn check(text: &str, message: &str) {
    let marked = text
        .lines()
        .position(|l| l.contains("# <-"))
        .map(|i| i + 1)
        .expect("test text has a '# <-' marker");
    match Config::parse(text, "t.toml") {
        Err(ConfigError::Invalid {
            origin,
            line,
            message: m,
        }) => {
            assert_eq!(origin, "t.toml");
            assert_eq!(m, message);
            assert_eq!(line, marked, "line of: {m}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn prefix(s: &str) -> Ipv4Prefix {
    s.parse().expect("test prefix")
}

#[test]
fn example_parses_into_the_reference_site() {
    let c = ok(EXAMPLE);
    assert_eq!(c.router.workers, 2);
    assert_eq!(
        c.router.metrics_listen,
        Some("127.0.0.1:9580".parse().unwrap())
    );
    assert_eq!(c.lan.address, prefix("192.168.0.1/24"));
    assert_eq!(c.lan.bridge.as_deref(), Some("br-lan"));
    assert_eq!(c.lan.mac, Some([2, 0, 0, 0, 0, 1]));
    let names: Vec<_> = c.uplinks.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["isp-a", "isp-b"]);
    assert_eq!(c.uplinks[1].next_hop, Ipv4Addr::new(172, 17, 3, 2));
    assert_eq!(c.uplinks[0].mss_clamp, Some(1452));
    assert_eq!(
        c.uplinks[0].nat_sources,
        Some(vec![prefix("192.168.0.0/24")])
    );
    assert_eq!(c.uplinks[1].nat_sources, None);
    let tiers: Vec<_> = c
        .routes
        .iter()
        .map(|r| (r.uplink.as_str(), r.distance, r.track.as_deref()))
        .collect();
    assert_eq!(
        tiers,
        [
            ("isp-a", 10, Some("a-e2e")),
            ("isp-b", 11, Some("b-e2e")),
            ("isp-a", 250, Some("a-nh")),
            ("isp-b", 251, Some("b-nh")),
            ("isp-a", 252, None),
            ("isp-b", 253, None),
        ]
    );
    assert!(c.routes.iter().all(|r| r.prefix == prefix("0.0.0.0/0")));
    assert_eq!(c.routes[1].next_hop, Ipv4Addr::new(172, 17, 3, 2));
    assert_eq!(c.probes[0].target, Ipv4Addr::new(172, 18, 0, 6));
    assert_eq!(c.probes[0].threshold, Duration::from_millis(500));
    assert_eq!(c.probes[0].kind, ProbeKind::IcmpEcho { payload_size: 56 });
    assert_eq!(c.probes[2].target, Ipv4Addr::new(172, 16, 1, 2));
    let t = &c.tracks[0];
    assert_eq!((t.delay_down, t.delay_up), (secs(10), secs(20)));
    assert_eq!(
        t.source,
        TrackSource::Probe {
            name: "a-e2e".into(),
            mode: TrackMode::Reachability
        }
    );
    assert_eq!(
        t.on_down.as_ref().and_then(|h| h.log.as_deref()),
        Some("ISP A: central site unreachable, failing over")
    );
    let p = &c.policies[0];
    assert_eq!(p.protocol, Some(17));
    assert_eq!(
        p.port,
        Some(PortRange {
            first: 5060,
            last: 5060
        })
    );
    assert_eq!(p.uplinks, ["isp-b", "isp-a"]);
    assert_eq!(c.nat.tcp_established, secs(7200));
    assert_eq!(c.failover.failback, Failback::Stay);
    assert_eq!(c.uplink_index("isp-b"), Some(1));
    assert_eq!(c.probe_index("b-nh"), Some(3));
    assert_eq!(c.track_index("b-e2e"), Some(1));
    assert_eq!(c.track_index("nope"), None);
}

#[test]
fn readme_examples_parse() {
    let readme = include_str!("../../README.md");
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert_eq!(blocks.len(), 3);
    assert_eq!(
        blocks[0], EXAMPLE,
        "README's complete example is example.toml"
    );
    let c = ok(&format!("{EXAMPLE}{}", blocks[1]));
    let quorum = &c.tracks[c.track_index("central").expect("central")];
    assert_eq!(quorum.delay_down, secs(5));
    assert!(matches!(
        quorum.source,
        TrackSource::List {
            op: ListOp::AtLeast(2),
            ..
        }
    ));
    let carrier = &c.tracks[c.track_index("a-carrier").expect("a-carrier")].source;
    assert_eq!(
        *carrier,
        TrackSource::Carrier {
            uplink: "isp-a".into()
        }
    );
    // The VRRP example is for a router whose own LAN address is not the virtual one.
    let site = EXAMPLE.replace("\"192.168.0.1/24\"", "\"192.168.0.2/24\"");
    let c = ok(&format!("{site}{}", blocks[2]));
    assert_eq!(
        (c.vrrp[0].priority, c.vrrp[0].advert_interval_cs),
        (150, 10)
    );
}

#[test]
fn defaults() {
    let c = ok(BASE);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(c.router.workers, workers.min(256));
    assert_eq!(
        c.router.control_socket,
        PathBuf::from("/run/mhrouter/mhrouter.sock")
    );
    assert_eq!(c.router.metrics_listen, None);
    assert!(c.router.offload);
    assert_eq!(c.lan.tap, "mhr-lan");
    assert_eq!(
        (c.lan.bridge.clone(), c.lan.mac, c.lan.mtu),
        (None, None, 1500)
    );
    let u = &c.uplinks[0];
    assert_eq!((u.mtu, u.mss_clamp, u.nat), (None, None, true));
    let n = &c.nat;
    assert_eq!(
        (n.max_entries, n.port_min, n.port_max),
        (262_144, 1024, 65535)
    );
    assert_eq!(
        [
            n.tcp_syn,
            n.tcp_established,
            n.tcp_closing,
            n.udp,
            n.udp_unreplied,
            n.icmp
        ],
        [
            secs(30),
            secs(7200),
            secs(10),
            secs(300),
            secs(30),
            secs(60)
        ]
    );
    assert!(c.routes.is_empty() && c.policies.is_empty() && c.probes.is_empty());
    assert!(c.failover.reset_tcp);
    assert_eq!(c.failover.failback, Failback::Stay);
}

#[test]
fn object_defaults() {
    let c = ok(&base(
        r#"
[[route]]
name = "r"
prefix = "10.0.0.0/8"
uplink = "isp-a"
[[policy]]
name = "p"
uplinks = ["isp-a"]
[[probe]]
name = "p"
type = "dns"
uplink = "isp-a"
target = "172.18.0.6"
[[probe]]
name = "fast"
type = "tcp"
uplink = "isp-a"
target = "172.18.0.6"
port = 443
interval = "300ms"
[[track]]
name = "t"
probe = "p"
on_up = { command = "/bin/true" }
[[track]]
name = "down-only"
probe = "fast"
delay_down = "1s"
[[track]]
name = "carrier"
uplink = "isp-a"
[[track]]
name = "quorum"
list = ["t", "carrier", "down-only"]
op = "at-least"
at_least = 2
[failover]
failback = "move"
"#,
    ));
    let r = &c.routes[0];
    assert_eq!(
        (r.next_hop, r.distance, r.weight),
        (Ipv4Addr::new(172, 16, 1, 2), 1, 1)
    );
    let p = &c.policies[0];
    assert_eq!((p.source, p.protocol, p.port), (None, None, None));
    assert_eq!(p.fallback, PolicyFallback::Table);
    let dns = &c.probes[0];
    assert_eq!(
        dns.kind,
        ProbeKind::Dns {
            port: 53,
            query: ".".into()
        }
    );
    assert_eq!(
        (dns.interval, dns.timeout, dns.threshold, dns.dscp),
        (secs(5), secs(1), secs(1), 0)
    );
    // A sub-second interval gets a timeout that fits in it.
    let fast = &c.probes[1];
    assert_eq!(fast.kind, ProbeKind::Tcp { port: 443 });
    assert_eq!(
        (fast.timeout, fast.threshold),
        (Duration::from_millis(300), Duration::from_millis(300))
    );
    // SPEC 19: 3 x interval down, 2 x down up.
    let t = &c.tracks[0];
    assert_eq!((t.delay_down, t.delay_up), (secs(15), secs(30)));
    let hook = t.on_up.as_ref().expect("hook");
    assert_eq!((hook.log.as_deref(), hook.timeout), (None, secs(10)));
    assert_eq!(hook.command, Some(PathBuf::from("/bin/true")));
    assert_eq!(
        (c.tracks[1].delay_down, c.tracks[1].delay_up),
        (secs(1), secs(2))
    );
    let carrier = &c.tracks[2];
    assert_eq!(
        carrier.source,
        TrackSource::Carrier {
            uplink: "isp-a".into()
        }
    );
    assert_eq!(
        (carrier.delay_down, carrier.delay_up),
        (Duration::ZERO, Duration::ZERO)
    );
    assert_eq!(
        c.tracks[3].source,
        TrackSource::List {
            members: vec!["t".into(), "carrier".into(), "down-only".into()],
            op: ListOp::AtLeast(2)
        }
    );
    assert_eq!(c.failover.failback, Failback::Move { grace: secs(30) });
}

#[test]
fn dotted_keys_and_integer_seconds() {
    let c = ok(&format!(
        "nat.udp = 90\nnat.port_min = 2000\nrouter.workers = 3\n{BASE}"
    ));
    assert_eq!(
        (c.nat.udp, c.nat.port_min, c.router.workers),
        (secs(90), 2000, 3)
    );
}

#[test]
fn error_display_is_file_line_message() {
    let e = Config::parse(
        &base("[[route]]\nname = \"r\"\nprefix = \"0.0.0.0/0\"\nuplink = \"isp-c\"\n"),
        "lab.toml",
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "lab.toml:13: uplink 'isp-c' is not defined");
}

#[test]
fn from_file_reads_and_reports_io_errors() {
    let path =
        std::env::temp_dir().join(format!("mhrouter-config-test-{}.toml", std::process::id()));
    std::fs::write(&path, "[lan]\naddress = \"192.168.0.1/24\"\n").unwrap();
    let e = Config::from_file(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        e.to_string(),
        format!("{}:1: at least one [[uplink]] is required", path.display())
    );
    let missing = Config::from_file(&path).unwrap_err();
    assert!(matches!(missing, ConfigError::Io { .. }), "{missing}");
}

// --- syntax, unknown keys, types ---

#[test]
fn toml_syntax_error() {
    check(
        "[lan]\naddress = \"192.168.0.1/24  # <-\nmtu = 1\n",
        "invalid basic string",
    );
}

#[test]
fn unknown_top_level_key() {
    let text = base("[routes]  # <-\n");
    let (line, msg) = err(&text);
    assert!(
        msg.starts_with("unknown field `routes`, expected one of"),
        "{msg}"
    );
    assert_eq!(line, BASE.lines().count() + 1);
}

#[test]
fn unknown_key_in_table() {
    let text = base("nxt_hop = \"172.16.1.2\"  # <-\n");
    let (line, msg) = err(&text);
    assert!(
        msg.starts_with("unknown field `nxt_hop`, expected one of"),
        "{msg}"
    );
    assert_eq!(line, BASE.lines().count() + 1);
}

#[test]
fn unknown_key_in_hook() {
    check(
        &base(
            "[[track]]\nname = \"t\"\nuplink = \"isp-a\"\non_up = { log = \"x\", cmd = \"y\" }  # <-\n",
        ),
        "unknown field `cmd`, expected one of `log`, `command`, `timeout`",
    );
}

#[test]
fn wrong_type() {
    check(
        "[lan]\naddress = \"192.168.0.1/24\"\nmtu = \"1500\"  # <-\n",
        "invalid type: string \"1500\", expected i64",
    );
}

#[test]
fn missing_lan() {
    check("# <-\n[router]\nworkers = 1\n", "missing field `lan`");
}

#[test]
fn missing_required_key() {
    check(
        &base(
            "[[uplink]]  # <-\nname = \"isp-b\"\naddress = \"172.17.3.1/30\"\nnext_hop = \"172.17.3.2\"\n",
        ),
        "missing field `interface`",
    );
}

#[test]
fn bad_enum_value() {
    check(
        &base("[failover]\nfailback = \"back\"  # <-\n"),
        "unknown variant `back`, expected `stay` or `move`",
    );
}

/// (line, message) of a failing parse.
fn err(text: &str) -> (usize, String) {
    match Config::parse(text, "t.toml") {
        Err(ConfigError::Invalid { line, message, .. }) => (line, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

// --- [router] ---

#[test]
fn workers_out_of_range() {
    check(
        &base("[router]\nworkers = 0  # <-\n"),
        "workers 0 is out of range 1..=256",
    );
}

#[test]
fn bad_metrics_listen() {
    check(
        &base("[router]\nmetrics_listen = \"127.0.0.1\"  # <-\n"),
        "metrics_listen: '127.0.0.1' is not a socket address (expected ip:port)",
    );
}

#[test]
fn control_group() {
    let c = ok(&base("[router]\ncontrol_group = \"mhrouter\"\n"));
    assert_eq!(c.router.control_group.as_deref(), Some("mhrouter"));
    check(
        &base("[router]\ncontrol_group = \"ops team\"  # <-\n"),
        "control_group: 'ops team' is not a valid name (1 to 32 of A-Z a-z 0-9 _ . -)",
    );
}

#[test]
fn empty_control_socket() {
    check(
        &base("[router]\ncontrol_socket = \"\"  # <-\n"),
        "control_socket is empty",
    );
}

// --- [lan] ---

fn lan(lines: &str) -> String {
    format!(
        "[lan]\n{lines}\n[[uplink]]\nname = \"a\"\ninterface = \"wan-a\"\naddress = \"172.16.1.1/30\"\nnext_hop = \"172.16.1.2\"\n"
    )
}

#[test]
fn lan_bad_prefix() {
    check(
        &lan("address = \"192.168.0.1/33\"  # <-"),
        "address: prefix length 33 is larger than 32",
    );
    check(
        &lan("address = \"192.168.0.1\"  # <-"),
        "address: '192.168.0.1' is not an IPv4 prefix (expected a.b.c.d/len)",
    );
}

#[test]
fn lan_network_or_broadcast_address() {
    check(
        &lan("address = \"192.168.0.0/24\"  # <-"),
        "address 192.168.0.0 is the network address of 192.168.0.0/24",
    );
    check(
        &lan("address = \"192.168.0.255/24\"  # <-"),
        "address 192.168.0.255 is the broadcast address of 192.168.0.0/24",
    );
    check(
        &lan("address = \"192.168.0.1/31\"  # <-"),
        "LAN prefix /31 is too long (at most /30)",
    );
}

#[test]
fn lan_bad_tap_and_bridge() {
    check(
        &lan("address = \"192.168.0.1/24\"\ntap = \"lan tap\"  # <-"),
        "tap: 'lan tap' is not a valid interface name (contains ' ')",
    );
    check(
        &lan("address = \"192.168.0.1/24\"\nbridge = \"a-very-long-bridge\"  # <-"),
        "bridge: 'a-very-long-bridge' is not a valid interface name (1 to 15 characters)",
    );
    check(
        &lan("address = \"192.168.0.1/24\"\nbridge = \"mhr-lan\"  # <-"),
        "bridge 'mhr-lan' is the TAP device itself",
    );
}

#[test]
fn lan_bad_mac() {
    check(
        &lan("address = \"192.168.0.1/24\"\nmac = \"02:00:00:00:01\"  # <-"),
        "mac: '02:00:00:00:01' is not a MAC address (expected xx:xx:xx:xx:xx:xx)",
    );
    check(
        &lan("address = \"192.168.0.1/24\"\nmac = \"01:00:5e:00:00:01\"  # <-"),
        "mac: MAC address 01:00:5e:00:00:01 is a multicast address",
    );
}

#[test]
fn lan_mtu_out_of_range() {
    check(
        &lan("address = \"192.168.0.1/24\"\nmtu = 575  # <-"),
        "mtu 575 is out of range 576..=65535",
    );
}

// --- [[uplink]] ---

const UPLINK_B: &str = "[[uplink]]\nname = \"isp-b\"\ninterface = \"wan-b\"\n";

#[test]
fn no_uplinks() {
    check(
        "[lan]  # <-\naddress = \"192.168.0.1/24\"\n",
        "at least one [[uplink]] is required",
    );
}

#[test]
fn duplicate_uplink_name() {
    check(
        &base(
            "[[uplink]]\nname = \"isp-a\"  # <-\ninterface = \"wan-b\"\naddress = \"172.17.3.1/30\"\nnext_hop = \"172.17.3.2\"\n",
        ),
        "uplink 'isp-a' is defined twice (first at line 6)",
    );
}

#[test]
fn invalid_uplink_name() {
    check(
        &base(
            "[[uplink]]\nname = \"isp b\"  # <-\ninterface = \"wan-b\"\naddress = \"172.17.3.1/30\"\nnext_hop = \"172.17.3.2\"\n",
        ),
        "uplink name: 'isp b' is not a valid name (1 to 32 of A-Z a-z 0-9 _ . -)",
    );
}

#[test]
fn interface_used_twice() {
    check(
        &base(
            "[[uplink]]\nname = \"isp-b\"\ninterface = \"wan-a\"  # <-\naddress = \"172.17.3.1/30\"\nnext_hop = \"172.17.3.2\"\n",
        ),
        "interface 'wan-a' is already used by uplink 'isp-a'",
    );
    check(
        &base(
            "[[uplink]]\nname = \"isp-b\"\ninterface = \"mhr-lan\"  # <-\naddress = \"172.17.3.1/30\"\nnext_hop = \"172.17.3.2\"\n",
        ),
        "interface 'mhr-lan' is used by the LAN",
    );
}

#[test]
fn uplink_bad_interface_name() {
    check(
        &base(
            "[[uplink]]\nname = \"isp-b\"\ninterface = \"wan:b\"  # <-\naddress = \"172.17.3.1/30\"\nnext_hop = \"172.17.3.2\"\n",
        ),
        "interface: 'wan:b' is not a valid interface name (contains ':')",
    );
}

#[test]
fn uplink_overlaps_lan() {
    check(
        &base(&format!(
            "{UPLINK_B}address = \"192.168.0.129/25\"  # <-\nnext_hop = \"192.168.0.130\"\n"
        )),
        "uplink prefix 192.168.0.128/25 overlaps the LAN prefix 192.168.0.0/24",
    );
}

#[test]
fn uplinks_overlap() {
    check(
        &base(&format!(
            "{UPLINK_B}address = \"172.16.0.1/16\"  # <-\nnext_hop = \"172.16.0.2\"\n"
        )),
        "uplink prefix 172.16.0.0/16 overlaps prefix 172.16.1.0/30 of uplink 'isp-a'",
    );
}

#[test]
fn uplink_bad_address() {
    check(
        &base(&format!(
            "{UPLINK_B}address = \"172.17.3.1/40\"  # <-\nnext_hop = \"172.17.3.2\"\n"
        )),
        "address: prefix length 40 is larger than 32",
    );
    check(
        &base(&format!(
            "{UPLINK_B}address = \"172.17.3.3/30\"  # <-\nnext_hop = \"172.17.3.2\"\n"
        )),
        "address 172.17.3.3 is the broadcast address of 172.17.3.0/30",
    );
}

#[test]
fn next_hop_outside_prefix() {
    check(
        &base(&format!(
            "{UPLINK_B}address = \"172.17.3.1/30\"\nnext_hop = \"172.17.3.6\"  # <-\n"
        )),
        "next_hop 172.17.3.6 is outside the uplink prefix 172.17.3.0/30",
    );
}

#[test]
fn next_hop_is_own_address() {
    check(
        &base(&format!(
            "{UPLINK_B}address = \"172.17.3.1/30\"\nnext_hop = \"172.17.3.1\"  # <-\n"
        )),
        "next_hop 172.17.3.1 is the uplink's own address",
    );
    check(
        &base(&format!(
            "{UPLINK_B}address = \"172.17.3.1/30\"\nnext_hop = \"172.17.3.0\"  # <-\n"
        )),
        "next_hop 172.17.3.0 is the network or broadcast address of 172.17.3.0/30",
    );
}

#[test]
fn next_hop_not_an_address() {
    check(
        &base(&format!(
            "{UPLINK_B}address = \"172.17.3.1/30\"\nnext_hop = \"pe-b\"  # <-\n"
        )),
        "next_hop: 'pe-b' is not an IPv4 address",
    );
}

#[test]
fn point_to_point_uplink_is_accepted() {
    let c = ok(&base(&format!(
        "{UPLINK_B}address = \"172.17.3.0/31\"\nnext_hop = \"172.17.3.1\"\n"
    )));
    assert_eq!(c.uplinks[1].address, prefix("172.17.3.0/31"));
}

#[test]
fn uplink_numbers_out_of_range() {
    check(
        &base("mss_clamp = 100  # <-\n"),
        "mss_clamp 100 is out of range 536..=65495",
    );
    check(
        &base("mtu = 70000  # <-\n"),
        "mtu 70000 is out of range 576..=65535",
    );
}

#[test]
fn nat_sources_checks() {
    check(
        &base("nat = false\nnat_sources = [\"192.168.0.0/24\"]  # <-\n"),
        "nat_sources needs nat = true",
    );
    check(
        &base("nat_sources = []  # <-\n"),
        "nat_sources is empty (use nat = false to translate nothing)",
    );
    check(
        &base("nat_sources = [\"192.168.0.0/24\",\n  \"192.168.0.1/25\"]  # <-\n"),
        "nat_sources 192.168.0.1/25 has host bits set (did you mean 192.168.0.0/25?)",
    );
}

// --- [nat] ---

#[test]
fn nat_numbers() {
    check(
        &base("[nat]\nmax_entries = 0  # <-\n"),
        "max_entries 0 is out of range 1..=4294967295",
    );
    check(
        &base("[nat]\nport_min = 0  # <-\n"),
        "port_min 0 is out of range 1..=65535",
    );
    check(
        &base("[nat]\nport_max = 2000\nport_min = 3000  # <-\n").replace(
            "port_max = 2000\nport_min = 3000  # <-",
            "port_min = 3000\nport_max = 2000  # <-",
        ),
        "port_min 3000 is larger than port_max 2000",
    );
    check(
        &base("[nat]\nport_min = 65300  # <-\n"),
        "port_min 65300 to port_max 65535 leaves no port for NAT: 65024-65535 are reserved for the DNS relay and probes",
    );
}

#[test]
fn nat_durations() {
    check(
        &base("[nat]\nudp = \"0s\"  # <-\n"),
        "udp must be longer than 0",
    );
    check(
        &base("[nat]\ntcp_syn = \"30 s\"  # <-\n"),
        "tcp_syn: '30 s' is not a duration (expected e.g. \"200ms\", \"3s\", \"5m\", \"2h\" or an integer number of seconds)",
    );
    check(
        &base("[nat]\nicmp = -5  # <-\n"),
        "icmp: duration -5 is negative",
    );
    check(
        &base("[nat]\nicmp = 1.5  # <-\n"),
        "invalid type: floating point `1.5`, expected a string or an integer",
    );
}

// --- [[route]] ---

fn route(lines: &str) -> String {
    base(&format!("[[route]]\nname = \"r\"\n{lines}\n"))
}

#[test]
fn duplicate_route_name() {
    check(
        &route(
            "prefix = \"0.0.0.0/0\"\nuplink = \"isp-a\"\n[[route]]\nname = \"r\"  # <-\nprefix = \"0.0.0.0/0\"\nuplink = \"isp-a\"",
        ),
        "route 'r' is defined twice (first at line 11)",
    );
}

#[test]
fn route_prefix_with_host_bits() {
    check(
        &route("prefix = \"10.1.2.3/8\"  # <-\nuplink = \"isp-a\""),
        "prefix 10.1.2.3/8 has host bits set (did you mean 10.0.0.0/8?)",
    );
}

#[test]
fn route_undefined_uplink() {
    check(
        &route("prefix = \"0.0.0.0/0\"\nuplink = \"isp-c\"  # <-"),
        "uplink 'isp-c' is not defined",
    );
}

#[test]
fn route_next_hop_outside_uplink() {
    check(
        &route("prefix = \"0.0.0.0/0\"\nuplink = \"isp-a\"\nnext_hop = \"172.17.3.2\"  # <-"),
        "next_hop 172.17.3.2 is outside the uplink prefix 172.16.1.0/30",
    );
    check(
        &route("prefix = \"0.0.0.0/0\"\nuplink = \"isp-a\"\nnext_hop = \"172.16.1.1\"  # <-"),
        "next_hop 172.16.1.1 is the uplink's own address",
    );
}

#[test]
fn route_via_the_lan() {
    let c = ok(&route(
        "prefix = \"0.0.0.0/0\"\nuplink = \"lan\"\nnext_hop = \"192.168.0.3\"\ndistance = 200",
    ));
    let r = &c.routes[0];
    assert_eq!(
        (r.uplink.as_str(), r.next_hop, r.distance),
        ("lan", Ipv4Addr::new(192, 168, 0, 3), 200)
    );
    check(
        &route("prefix = \"0.0.0.0/0\"\nuplink = \"lan\"  # <-"),
        "route 'r' via the LAN needs a next_hop",
    );
    check(
        &route("prefix = \"0.0.0.0/0\"\nuplink = \"lan\"\nnext_hop = \"192.168.0.1\"  # <-"),
        "next_hop 192.168.0.1 is the LAN's own address",
    );
    for bad in ["172.16.1.2", "192.168.0.255", "192.168.0.0"] {
        check(
            &route(&format!(
                "prefix = \"0.0.0.0/0\"\nuplink = \"lan\"\nnext_hop = \"{bad}\"  # <-"
            )),
            &format!("next_hop {bad} is not a host of the LAN prefix 192.168.0.0/24"),
        );
    }
    check(
        &base(
            "[[uplink]]\nname = \"lan\"  # <-\ninterface = \"wan-b\"\naddress = \"172.17.3.1/30\"\nnext_hop = \"172.17.3.2\"\n",
        ),
        "uplink name 'lan' is reserved for routes via the LAN",
    );
}

#[test]
fn route_numbers_out_of_range() {
    check(
        &route("prefix = \"0.0.0.0/0\"\nuplink = \"isp-a\"\ndistance = 0  # <-"),
        "distance 0 is out of range 1..=255",
    );
    check(
        &route("prefix = \"0.0.0.0/0\"\nuplink = \"isp-a\"\nweight = 256  # <-"),
        "weight 256 is out of range 1..=255",
    );
}

#[test]
fn route_undefined_track() {
    check(
        &route("prefix = \"0.0.0.0/0\"\nuplink = \"isp-a\"\ntrack = \"a-e2e\"  # <-"),
        "track 'a-e2e' is not defined",
    );
}

// --- [[policy]] ---

fn policy(lines: &str) -> String {
    base(&format!("[[policy]]\nname = \"p\"\n{lines}\n"))
}

#[test]
fn duplicate_policy_name() {
    check(
        &policy("uplinks = [\"isp-a\"]\n[[policy]]\nname = \"p\"  # <-\nuplinks = [\"isp-a\"]"),
        "policy 'p' is defined twice (first at line 11)",
    );
}

#[test]
fn policy_bad_prefixes() {
    check(
        &policy("source = \"192.168.0.1/25\"  # <-\nuplinks = [\"isp-a\"]"),
        "source 192.168.0.1/25 has host bits set (did you mean 192.168.0.0/25?)",
    );
    check(
        &policy("destination = \"172.18.0.0\"  # <-\nuplinks = [\"isp-a\"]"),
        "destination: '172.18.0.0' is not an IPv4 prefix (expected a.b.c.d/len)",
    );
}

#[test]
fn policy_bad_protocol() {
    check(
        &policy("protocol = \"sctp\"  # <-\nuplinks = [\"isp-a\"]"),
        "protocol 'sctp' is not \"tcp\", \"udp\", \"icmp\" or a number 0..=255",
    );
    check(
        &policy("protocol = 300  # <-\nuplinks = [\"isp-a\"]"),
        "protocol 300 is not \"tcp\", \"udp\", \"icmp\" or a number 0..=255",
    );
}

#[test]
fn policy_port_needs_tcp_or_udp() {
    check(
        &policy("protocol = \"icmp\"\nport = \"5060\"  # <-\nuplinks = [\"isp-a\"]"),
        "port needs protocol = \"tcp\" or \"udp\"",
    );
    check(
        &policy("port = 5060  # <-\nuplinks = [\"isp-a\"]"),
        "port needs protocol = \"tcp\" or \"udp\"",
    );
}

#[test]
fn policy_bad_port() {
    check(
        &policy("protocol = 6\nport = \"2000-1000\"  # <-\nuplinks = [\"isp-a\"]"),
        "port range 2000-1000 is empty (low > high)",
    );
    check(
        &policy("protocol = \"tcp\"\nport = \"http\"  # <-\nuplinks = [\"isp-a\"]"),
        "port 'http' is not a number 1..=65535",
    );
}

#[test]
fn policy_uplinks_checks() {
    check(&policy("uplinks = []  # <-"), "uplinks is empty");
    check(
        &policy("uplinks = [\"isp-a\", \"isp-c\"]  # <-"),
        "uplink 'isp-c' is not defined",
    );
    check(
        &policy("uplinks = [\"isp-a\",\n\"isp-a\"]  # <-"),
        "uplink 'isp-a' appears twice in uplinks",
    );
}

#[test]
fn policy_port_range_parses() {
    let c = ok(&policy(
        "protocol = \"tcp\"\nport = \"10000-20000\"\nuplinks = [\"isp-a\"]\nfallback = \"unreachable\"",
    ));
    assert_eq!(
        c.policies[0].port,
        Some(PortRange {
            first: 10000,
            last: 20000
        })
    );
    assert_eq!(c.policies[0].fallback, PolicyFallback::Unreachable);
}

// --- [[probe]] ---

fn probe(kind: &str, lines: &str) -> String {
    base(&format!(
        "[[probe]]\nname = \"p\"\ntype = \"{kind}\"\nuplink = \"isp-a\"\ntarget = \"172.18.0.6\"\n{lines}\n"
    ))
}

#[test]
fn duplicate_probe_name() {
    check(
        &probe(
            "icmp-echo",
            "[[probe]]\nname = \"p\"  # <-\ntype = \"icmp-echo\"\nuplink = \"isp-a\"\ntarget = \"172.18.0.6\"",
        ),
        "probe 'p' is defined twice (first at line 11)",
    );
}

#[test]
fn probe_bad_type() {
    check(
        &base(
            "[[probe]]\nname = \"p\"\ntype = \"http\"  # <-\nuplink = \"isp-a\"\ntarget = \"172.18.0.6\"\n",
        ),
        "unknown variant `http`, expected one of `icmp-echo`, `tcp`, `dns`",
    );
}

#[test]
fn probe_undefined_uplink() {
    check(
        &base(
            "[[probe]]\nname = \"p\"\ntype = \"tcp\"\nuplink = \"isp-b\"  # <-\ntarget = \"172.18.0.6\"\nport = 80\n",
        ),
        "uplink 'isp-b' is not defined",
    );
}

#[test]
fn probe_bad_target() {
    check(
        &base(
            "[[probe]]\nname = \"p\"\ntype = \"tcp\"\nuplink = \"isp-a\"\ntarget = \"172.18.0.256\"  # <-\nport = 80\n",
        ),
        "target: '172.18.0.256' is not an IP address",
    );
}

#[test]
fn tcp_probe_needs_port() {
    let text = probe("tcp", "");
    let text = text.replace(
        "name = \"p\"\ntype = \"tcp\"",
        "name = \"p\"  # <-\ntype = \"tcp\"",
    );
    check(&text, "tcp probe 'p' needs a port");
}

#[test]
fn probe_keys_for_other_kinds() {
    check(
        &probe("icmp-echo", "port = 80  # <-"),
        "port is not allowed for icmp-echo probes (tcp and dns only)",
    );
    check(
        &probe("tcp", "port = 80\nquery = \"x.lab\"  # <-"),
        "query is not allowed for tcp probes (dns only)",
    );
    check(
        &probe("dns", "payload_size = 100  # <-"),
        "payload_size is not allowed for dns probes (icmp-echo only)",
    );
}

#[test]
fn probe_numbers_out_of_range() {
    check(
        &probe("icmp-echo", "payload_size = 1473  # <-"),
        "payload_size 1473 is out of range 0..=1472",
    );
    check(
        &probe("icmp-echo", "dscp = 64  # <-"),
        "dscp 64 is out of range 0..=63",
    );
    check(
        &probe("tcp", "port = 0  # <-"),
        "port 0 is out of range 1..=65535",
    );
}

#[test]
fn probe_bad_query() {
    check(
        &probe("dns", "query = \"a..b\"  # <-"),
        "query: 'a..b' is not a valid DNS name",
    );
}

#[test]
fn probe_interval_too_short() {
    check(
        &probe("icmp-echo", "interval = \"5ms\"  # <-"),
        "interval 5ms is shorter than 10ms",
    );
}

#[test]
fn probe_timeout_longer_than_interval() {
    check(
        &probe("icmp-echo", "interval = \"1s\"\ntimeout = \"2s\"  # <-"),
        "timeout 2s is longer than interval 1s",
    );
}

#[test]
fn probe_threshold_longer_than_timeout() {
    check(
        &probe(
            "icmp-echo",
            "timeout = \"1s\"\nthreshold = \"1500ms\"  # <-",
        ),
        "threshold 1.5s is longer than timeout 1s",
    );
}

// --- [[track]] ---

/// BASE plus one probe "p"; tracks are appended.
fn tracks(text: &str) -> String {
    base(&format!(
        "[[probe]]\nname = \"p\"\ntype = \"icmp-echo\"\nuplink = \"isp-a\"\ntarget = \"172.18.0.6\"\n{text}\n"
    ))
}

#[test]
fn duplicate_track_name() {
    check(
        &tracks(
            "[[track]]\nname = \"t\"\nprobe = \"p\"\n[[track]]\nname = \"t\"  # <-\nuplink = \"isp-a\"",
        ),
        "track 't' is defined twice (first at line 16)",
    );
}

#[test]
fn track_without_source() {
    check(
        &tracks("[[track]]\nname = \"t\"  # <-\ndelay_down = \"1s\""),
        "track 't' needs one of probe, uplink or list",
    );
}

#[test]
fn track_with_two_sources() {
    check(
        &tracks("[[track]]\nname = \"t\"\nprobe = \"p\"\nuplink = \"isp-a\"  # <-"),
        "track 't' has both probe and uplink (exactly one is allowed)",
    );
}

#[test]
fn track_undefined_references() {
    check(
        &tracks("[[track]]\nname = \"t\"\nprobe = \"q\"  # <-"),
        "probe 'q' is not defined",
    );
    check(
        &tracks("[[track]]\nname = \"t\"\nuplink = \"isp-b\"  # <-"),
        "uplink 'isp-b' is not defined",
    );
    check(
        &tracks("[[track]]\nname = \"t\"\nlist = [\"u\"]  # <-"),
        "track 'u' is not defined",
    );
}

#[test]
fn track_list_empty_or_duplicated() {
    check(
        &tracks("[[track]]\nname = \"t\"\nlist = []  # <-"),
        "track 't' has an empty list",
    );
    check(
        &tracks(
            "[[track]]\nname = \"c\"\nuplink = \"isp-a\"\n[[track]]\nname = \"t\"\nlist = [\"c\",\n\"c\"]  # <-",
        ),
        "track 'c' appears twice in the list",
    );
}

#[test]
fn track_list_cycles() {
    check(
        &tracks("[[track]]\nname = \"t\"\nlist = [\"t\"]  # <-"),
        "track list cycle: t -> t",
    );
    check(
        &tracks(
            "[[track]]\nname = \"a\"\nlist = [\"b\"]\n[[track]]\nname = \"b\"\nlist = [\"c\", \"p\"]\n\
             [[track]]\nname = \"c\"\nlist = [\"a\"]  # <-\n[[track]]\nname = \"p\"\nprobe = \"p\"",
        ),
        "track list cycle: a -> b -> c -> a",
    );
}

#[test]
fn track_keys_for_other_sources() {
    check(
        &tracks("[[track]]\nname = \"t\"\nuplink = \"isp-a\"\nmode = \"state\"  # <-"),
        "mode is only valid with probe",
    );
    check(
        &tracks("[[track]]\nname = \"t\"\nprobe = \"p\"\nop = \"any\"  # <-"),
        "op is only valid with list",
    );
    check(
        &tracks("[[track]]\nname = \"t\"\nprobe = \"p\"\nat_least = 1  # <-"),
        "at_least is only valid with list",
    );
}

#[test]
fn track_at_least_checks() {
    let two =
        "[[track]]\nname = \"x\"\nuplink = \"isp-a\"\n[[track]]\nname = \"y\"\nprobe = \"p\"\n";
    check(
        &tracks(&format!(
            "{two}[[track]]\nname = \"t\"\nlist = [\"x\", \"y\"]\nop = \"at-least\"  # <-"
        )),
        "op = \"at-least\" needs at_least",
    );
    check(
        &tracks(&format!(
            "{two}[[track]]\nname = \"t\"\nlist = [\"x\", \"y\"]\nat_least = 1  # <-"
        )),
        "at_least is only valid with op = \"at-least\"",
    );
    check(
        &tracks(&format!(
            "{two}[[track]]\nname = \"t\"\nlist = [\"x\", \"y\"]\nop = \"at-least\"\nat_least = 3  # <-"
        )),
        "at_least 3 is out of range 1..=2",
    );
}

#[test]
fn track_bad_mode() {
    check(
        &tracks("[[track]]\nname = \"t\"\nprobe = \"p\"\nmode = \"latency\"  # <-"),
        "unknown variant `latency`, expected `reachability` or `state`",
    );
}

#[test]
fn track_bad_delay() {
    check(
        &tracks("[[track]]\nname = \"t\"\nprobe = \"p\"\ndelay_up = \"10x\"  # <-"),
        "delay_up: '10x' is not a duration (expected e.g. \"200ms\", \"3s\", \"5m\", \"2h\" or an integer number of seconds)",
    );
}

#[test]
fn track_bad_hooks() {
    check(
        &tracks("[[track]]\nname = \"t\"\nprobe = \"p\"\non_up = { command = \"\" }  # <-"),
        "on_up.command is empty",
    );
    check(
        &tracks(
            "[[track]]\nname = \"t\"\nprobe = \"p\"\n[track.on_down]\nlog = \"down\"\ntimeout = \"0s\"  # <-",
        ),
        "on_down.timeout must be longer than 0",
    );
}

// --- [failover] ---

#[test]
fn failback_grace_needs_move() {
    check(
        &base("[failover]\nfailback_grace = \"10s\"  # <-\n"),
        "failback_grace is only valid with failback = \"move\"",
    );
    let c = ok(&base(
        "[failover]\nfailback = \"move\"\nfailback_grace = \"10s\"\nreset_tcp = false\n",
    ));
    assert_eq!(c.failover.failback, Failback::Move { grace: secs(10) });
    assert!(!c.failover.reset_tcp);
}

// --- robustness ---

/// Lines that reach the validation paths when dropped into the example.
const FUZZ_LINES: &[&str] = &[
    "[[uplink]]",
    "[[route]]",
    "[[track]]",
    "[[probe]]",
    "[[policy]]",
    "[nat]",
    "[router]",
    "name = \"isp-a\"",
    "name = \"t\"",
    "uplink = \"isp-b\"",
    "list = [\"a-e2e\", \"t\"]",
    "list = []",
    "op = \"at-least\"",
    "at_least = 9",
    "probe = \"a-nh\"",
    "type = \"tcp\"",
    "port = 70000",
    "port = \"1-\"",
    "interval = \"1ms\"",
    "timeout = \"9h\"",
    "address = \"1.2.3.4/0\"",
    "next_hop = \"0.0.0.0\"",
    "prefix = \"0.0.0.0/33\"",
    "distance = -1",
    "mtu = 1e9",
    "delay_down = 99999999999999999999",
    "track = \"a-e2e\"",
    "interface = \"wan-a\"",
    "protocol = \"udp\"",
    "uplinks = [\"isp-a\", \"isp-a\"]",
    "workers = 9223372036854775807",
    "on_up = { timeout = \"1h\" }",
    "x = {",
    "\"\\u0000\" = 1",
    "mac = \"ff:ff:ff:ff:ff:ff\"",
];

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*") {
        let _ = Config::parse(&text, "fuzz.toml");
    }

    #[test]
    fn edited_example_never_panics_and_errors_point_inside_the_file(
        edits in proptest::collection::vec((0usize..200, 0..FUZZ_LINES.len()), 1..6)
    ) {
        let mut lines: Vec<&str> = EXAMPLE.lines().collect();
        for (at, which) in edits {
            let at = at.min(lines.len());
            lines.insert(at, FUZZ_LINES[which]);
        }
        let text = lines.join("\n");
        if let Err(ConfigError::Invalid { line, .. }) = Config::parse(&text, "fuzz.toml") {
            prop_assert!(line >= 1 && line <= text.lines().count().max(1));
        }
    }
}

#[test]
fn nat_timeouts_are_bounded() {
    let text = format!("{BASE}\n[nat]\ntcp_established = \"500h\"\n");
    let line = text
        .lines()
        .position(|l| l.starts_with("tcp_established"))
        .unwrap()
        + 1;
    match Config::parse(&text, "t.toml") {
        Err(ConfigError::Invalid {
            line: l, message, ..
        }) => {
            assert_eq!(l, line);
            assert!(message.contains("at most 20 days"), "{message}");
        }
        other => panic!("accepted: {other:?}"),
    }
}

// --- [[vrrp]] ---

/// BASE (LAN address 192.168.0.1) plus a probe track "a-e2e"; groups are appended.
fn vrrp(text: &str) -> String {
    tracks(&format!(
        "[[track]]\nname = \"a-e2e\"\nprobe = \"p\"\n{text}"
    ))
}

#[test]
fn vrrp_group_parses() {
    let c = ok(&vrrp(
        "[[vrrp]]\nvrid = 51\naddresses = [\"192.168.0.254\", \"192.168.0.253\"]\npriority = 150\n\
         advert_interval = \"100ms\"\npreempt = false\npreempt_delay = \"5s\"\n\
         track = [{ track = \"a-e2e\", decrement = 60 }]\n",
    ));
    assert_eq!(
        c.vrrp,
        vec![VrrpConfig {
            vrid: 51,
            addresses: vec![
                Ipv4Addr::new(192, 168, 0, 254),
                Ipv4Addr::new(192, 168, 0, 253)
            ],
            priority: 150,
            advert_interval_cs: 10,
            preempt: false,
            preempt_delay: secs(5),
            tracks: vec![VrrpTrack {
                track: "a-e2e".into(),
                decrement: 60
            }],
        }]
    );
}

#[test]
fn vrrp_defaults() {
    assert!(ok(BASE).vrrp.is_empty());
    let c = ok(&vrrp(
        "[[vrrp]]\nvrid = 1\naddresses = [\"192.168.0.254\"]\n",
    ));
    let g = &c.vrrp[0];
    assert_eq!(
        (g.priority, g.advert_interval_cs, g.preempt, g.preempt_delay),
        (100, 100, true, Duration::ZERO)
    );
    assert!(g.tracks.is_empty());
    // The LAN address among the virtual addresses: the owner, priority 255.
    let c = ok(&vrrp("[[vrrp]]\nvrid = 2\naddresses = [\"192.168.0.1\"]\n"));
    assert_eq!(c.vrrp[0].priority, VRRP_OWNER_PRIORITY);
    let c = ok(&vrrp(
        "[[vrrp]]\nvrid = 2\naddresses = [\"192.168.0.1\"]\npriority = 255\n",
    ));
    assert_eq!(c.vrrp[0].priority, 255);
    let c = ok(&vrrp(
        "[[vrrp]]\nvrid = 2\naddresses = [\"192.168.0.9\"]\nadvert_interval = \"40950ms\"\n",
    ));
    assert_eq!(c.vrrp[0].advert_interval_cs, 4095);
}

#[test]
fn vrrp_vrid_checks() {
    check(
        &vrrp("[[vrrp]]\nvrid = 0  # <-\naddresses = [\"192.168.0.254\"]"),
        "vrid 0 is out of range 1..=255",
    );
    check(
        &vrrp(
            "[[vrrp]]\nvrid = 7\naddresses = [\"192.168.0.254\"]\n\
             [[vrrp]]\nvrid = 7  # <-\naddresses = [\"192.168.0.253\"]",
        ),
        "vrrp vrid 7 is defined twice (first at line 19)",
    );
}

#[test]
fn vrrp_address_checks() {
    let group = |addrs: &str| vrrp(&format!("[[vrrp]]\nvrid = 1\naddresses = {addrs}  # <-"));
    check(&group("[]"), "addresses is empty");
    check(
        &group("[\"10.0.0.1\"]"),
        "address 10.0.0.1 is outside the LAN prefix 192.168.0.0/24",
    );
    check(
        &group("[\"192.168.0.255\"]"),
        "address 192.168.0.255 is the network or broadcast address of 192.168.0.0/24",
    );
    check(
        &group("[\"192.168.0.0\"]"),
        "address 192.168.0.0 is the network or broadcast address of 192.168.0.0/24",
    );
    check(
        &group("[\"192.168.0.9\", \"192.168.0.9\"]"),
        "address 192.168.0.9 appears twice",
    );
    check(
        &group("[\"gateway\"]"),
        "addresses: 'gateway' is not an IPv4 address",
    );
    check(
        &vrrp(
            "[[vrrp]]\nvrid = 1\naddresses = [\"192.168.0.9\"]\n\
             [[vrrp]]\nvrid = 2\naddresses = [\"192.168.0.9\"]  # <-",
        ),
        "address 192.168.0.9 is already in vrrp 1",
    );
}

#[test]
fn vrrp_priority_checks() {
    let group = |addr: &str, priority: &str| {
        vrrp(&format!(
            "[[vrrp]]\nvrid = 1\naddresses = [\"{addr}\"]\npriority = {priority}  # <-"
        ))
    };
    check(
        &group("192.168.0.254", "255"),
        "priority 255 is for the owner of the virtual addresses (the LAN address is not one of them)",
    );
    check(
        &group("192.168.0.254", "0"),
        "priority 0 is out of range 1..=254",
    );
    check(
        &group("192.168.0.1", "200"),
        "priority must be 255: the LAN address 192.168.0.1 is a virtual address (owner)",
    );
}

#[test]
fn vrrp_interval_checks() {
    let group = |interval: &str| {
        vrrp(&format!(
            "[[vrrp]]\nvrid = 1\naddresses = [\"192.168.0.254\"]\nadvert_interval = {interval}  # <-"
        ))
    };
    for bad in ["\"50ms\"", "\"105ms\"", "41", "\"0s\""] {
        let text = group(bad);
        let (line, message) = err(&text);
        assert_eq!(line, 21, "{bad}");
        assert!(
            message.starts_with("advert_interval ")
                && message.ends_with("is not a whole number of centiseconds from 100ms to 40.95s"),
            "{bad}: {message}"
        );
    }
    check(
        &group("\"soon\""),
        "advert_interval: 'soon' is not a duration (expected e.g. \"200ms\", \"3s\", \"5m\", \"2h\" or an integer number of seconds)",
    );
}

#[test]
fn vrrp_track_checks() {
    let group = |tracks: &str| {
        vrrp(&format!(
            "[[vrrp]]\nvrid = 1\naddresses = [\"192.168.0.254\"]\ntrack = [{tracks}]  # <-"
        ))
    };
    check(
        &group("{ track = \"b-e2e\", decrement = 20 }"),
        "track 'b-e2e' is not defined",
    );
    check(
        &group("{ track = \"a-e2e\", decrement = 20 }, { track = \"a-e2e\", decrement = 5 }"),
        "track 'a-e2e' appears twice in vrrp 1",
    );
    check(
        &group("{ track = \"a-e2e\", decrement = 255 }"),
        "decrement 255 is out of range 1..=254",
    );
    check(
        &vrrp(
            "[[vrrp]]\nvrid = 1\naddresses = [\"192.168.0.1\"]\n\
             track = [{ track = \"a-e2e\", decrement = 20 }]  # <-",
        ),
        "track cannot lower the owner's priority 255",
    );
    let (line, message) = err(&vrrp(
        "[[vrrp]]\nvrid = 1\naddresses = [\"192.168.0.254\"]\nweight = 3\n",
    ));
    assert_eq!(line, 21);
    assert!(message.starts_with("unknown field `weight`"), "{message}");
}

#[test]
fn redundant_lab_configs_make_router_1_master() {
    let one = ok(include_str!("../../scripts/lab-redundant-1.toml"));
    let two = ok(include_str!("../../scripts/lab-redundant-2.toml"));
    let gateway = vec![Ipv4Addr::new(192, 168, 0, 1)];
    assert_eq!((one.vrrp[0].vrid, two.vrrp[0].vrid), (1, 1));
    assert_eq!(
        (&one.vrrp[0].addresses, &two.vrrp[0].addresses),
        (&gateway, &gateway)
    );
    assert!(one.vrrp[0].priority > two.vrrp[0].priority);
    // Router 1 with its track down falls below router 2.
    let decrement = one.vrrp[0].tracks[0].decrement;
    assert!(one.vrrp[0].priority - decrement < two.vrrp[0].priority);
    assert_eq!(one.lan.address.addr(), Ipv4Addr::new(192, 168, 0, 2));
    assert_eq!(two.lan.address.addr(), Ipv4Addr::new(192, 168, 0, 3));
}

#[test]
fn dhcp_server_and_dns_sections() {
    let c = ok(&base(
        r#"
[dhcp_server]
pool = ["192.168.0.100-192.168.0.199", "192.168.0.210"]
exclude = ["192.168.0.150-192.168.0.155"]
domain = "lan."
lease_time = "2h"
mtu = 1400
routes = [{ prefix = "10.0.0.0/8", next_hop = "192.168.0.254" }]
lease_file = "/var/lib/mhrouter/dhcp.leases"
max_per_mac = 3

[[dhcp_server.static]]
mac = "02:00:00:00:00:50"
address = "192.168.0.50"
hostname = "printer"

[dns]
cache_entries = 100
rate = 5
"#,
    ));
    let d = c.dhcp_server.expect("dhcp_server");
    assert_eq!(d.pools.len(), 2);
    assert_eq!(d.pools[1].size(), 1);
    assert_eq!(d.exclude[0].last, Ipv4Addr::new(192, 168, 0, 155));
    assert_eq!(d.router, Ipv4Addr::new(192, 168, 0, 1), "the LAN address");
    assert_eq!(d.dns_servers, vec![Ipv4Addr::new(192, 168, 0, 1)]);
    assert_eq!(d.domain.as_deref(), Some("lan"));
    assert_eq!((d.lease_time, d.mtu), (secs(7200), Some(1400)));
    assert_eq!(d.routes[0].next_hop, Ipv4Addr::new(192, 168, 0, 254));
    assert_eq!((d.max_leases, d.max_per_mac), (1024, 3));
    assert_eq!(d.static_leases[0].hostname.as_deref(), Some("printer"));
    let dns = c.dns.expect("dns");
    assert_eq!((dns.cache_entries, dns.cache_bytes), (100, 1 << 20));
    assert_eq!((dns.rate, dns.burst, dns.timeout), (5, 100, secs(2)));
    let off = ok(&base("[dns]\nenable = false\n"));
    assert_eq!((off.dns, off.dhcp_server), (None, None));
}

#[test]
fn uplink_dns_servers() {
    let c = ok(&base("dns_servers = [\"100.64.0.53\", \"100.64.1.53\"]\n"));
    assert_eq!(c.uplinks[0].dns_servers.len(), 2);
    check(
        &base("dns_servers = [\"224.0.0.1\"] # <-\n"),
        "dns_servers: 224.0.0.1 is not a unicast address",
    );
}

#[test]
fn dhcp_server_errors() {
    let dns = "[dns]\n";
    for (section, message) in [
        (
            "pool = [\"192.168.1.10-192.168.1.20\"] # <-",
            "pool 192.168.1.10 is not a host address of the LAN prefix 192.168.0.0/24",
        ),
        (
            "pool = [\"192.168.0.1-192.168.0.20\"] # <-",
            "pool 192.168.0.1-192.168.0.20 holds the router's LAN address",
        ),
        (
            "pool = [\"192.168.0.20-192.168.0.10\"] # <-",
            "pool: 192.168.0.20 comes after 192.168.0.10",
        ),
        (
            "pool = [\"192.168.0.10-192.168.0.20\",\n\"192.168.0.15\"] # <-",
            "pool ranges overlap",
        ),
        ("pool = [] # <-", "pool is empty"),
        (
            "pool = [\"192.168.0.x\"] # <-",
            "pool: '192.168.0.x' is not an address range (expected a.b.c.d-e.f.g.h or one address)",
        ),
        (
            "pool = [\"192.168.0.10\"]\nrouter = \"10.0.0.1\" # <-",
            "router 10.0.0.1 is not a host address of the LAN prefix 192.168.0.0/24",
        ),
        (
            "pool = [\"192.168.0.10\"]\nlease_time = \"30s\" # <-",
            "lease_time must be between 60s and 136 years",
        ),
        (
            "pool = [\"192.168.0.10\"]\nroutes = [{ prefix = \"10.0.0.1/8\", next_hop = \"192.168.0.9\" }] # <-",
            "routes prefix 10.0.0.1/8 has host bits set (did you mean 10.0.0.0/8?)",
        ),
        (
            "pool = [\"192.168.0.10\"]\nmax_per_mac = 0 # <-",
            "max_per_mac 0 is out of range 1..=64",
        ),
        (
            "pool = [\"192.168.0.10\"]\n[[dhcp_server.static]]\nmac = \"02:00:00:00:00:50\"\naddress = \"192.168.0.50\"\n[[dhcp_server.static]]\nmac = \"02:00:00:00:00:51\"\naddress = \"192.168.0.50\" # <-",
            "address 192.168.0.50 is already a static lease",
        ),
        (
            "pool = [\"192.168.0.10\"]\n[[dhcp_server.static]]\nmac = \"02:00:00:00:00:50\"\naddress = \"192.168.0.1\" # <-",
            "address is the router's LAN address",
        ),
    ] {
        check(&base(&format!("{dns}[dhcp_server]\n{section}\n")), message);
    }
    check(
        &base("[dhcp_server]\npool = [\"192.168.0.10\"] # <-\n"),
        "dns_servers is required when [dns] is not enabled (clients would be told to ask the router)",
    );
    check(
        &base("[dns]\ntimeout = \"1m\" # <-\n"),
        "timeout: at most 30s",
    );
}

#[test]
fn dhcp_uplinks() {
    let text = r#"
[lan]
address = "192.168.0.1/24"

[[uplink]]
name = "isp-a"
interface = "wan-a"
address = "dhcp"
dhcp_client_id = "01:02:00:00:00:00:0a"
dhcp_hostname = "site-1"
dhcp_vendor_class = "mhrouter"

[[uplink]]
name = "isp-b"
interface = "wan-b"
address = "dhcp"
dhcp_distance = 20
dhcp_client_id = "site-1-b"

[[route]]
name = "b-default"
prefix = "0.0.0.0/0"
uplink = "isp-b"
distance = 5
"#;
    let c = ok(text);
    let a = &c.uplinks[0];
    assert_eq!(a.address, prefix("0.0.0.0/32"));
    assert_eq!(a.next_hop, Ipv4Addr::UNSPECIFIED);
    let d = a.dhcp.as_ref().expect("dhcp");
    assert_eq!(d.client_id.as_deref(), Some(&[1, 2, 0, 0, 0, 0, 10][..]));
    assert_eq!(d.hostname.as_deref(), Some("site-1"));
    assert_eq!(d.distance, 254);
    let b = c.uplinks[1].dhcp.as_ref().expect("dhcp");
    assert_eq!(b.client_id.as_deref(), Some(&b"site-1-b"[..]));
    // isp-a gets the implicit default route; isp-b has its own.
    let names: Vec<_> = c
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.distance))
        .collect();
    assert_eq!(names, [("b-default", 5), ("dhcp:isp-a", 254)]);
    assert_eq!(c.routes[0].next_hop, Ipv4Addr::UNSPECIFIED);

    let dhcp_uplink = "[[uplink]]\nname = \"isp-b\"\ninterface = \"wan-b\"\naddress = \"dhcp\"\n";
    check(
        &base(&format!("{dhcp_uplink}next_hop = \"172.17.3.2\" # <-\n")),
        "next_hop comes from the DHCP lease (address = \"dhcp\")",
    );
    check(
        &base("dhcp_hostname = \"x\" # <-\n"),
        "dhcp_* keys need address = \"dhcp\"",
    );
    check(
        &base(&format!(
            "{dhcp_uplink}[[route]]\nname = \"r\"\nprefix = \"10.0.0.0/8\"\nuplink = \"isp-b\"\nnext_hop = \"10.1.1.1\" # <-\n"
        )),
        "next_hop cannot be set on uplink 'isp-b': it comes from the DHCP lease",
    );
    check(
        "[lan]\naddress = \"192.168.0.1/24\"\n[[uplink]]\nname = \"isp-a\" # <-\ninterface = \"wan-a\"\naddress = \"172.16.1.1/30\"\n",
        "next_hop is required (or address = \"dhcp\")",
    );
}

#[test]
fn lab_dhcp_config_parses() {
    let c = ok(include_str!("../../scripts/lab-dhcp-b.toml"));
    assert!(c.uplinks[1].dhcp.is_some());
    assert_eq!(c.uplinks[1].dns_servers, vec![Ipv4Addr::new(172, 18, 0, 6)]);
    assert!(
        c.routes
            .iter()
            .all(|r| r.uplink != "isp-b" || r.next_hop.is_unspecified())
    );
}

/// A second uplink (B) and a DNS probe on A, for the forward tests.
const TWO_UPLINKS: &str = r#"
[[uplink]]
name = "isp-b"
interface = "wan-b"
address = "172.17.3.1/30"
next_hop = "172.17.3.2"

[[probe]]
name = "a-dns"
type = "dns"
uplink = "isp-a"
target = "172.18.0.6"
"#;

fn forwards(extra: &str) -> String {
    format!("{BASE}{TWO_UPLINKS}{extra}")
}

#[test]
fn forwards_parse_with_their_defaults() {
    let c = ok(&forwards(
        r#"
[[forward]]
name = "web"
uplinks = "all"
protocol = "tcp"
port = 8080
to = "192.168.0.10"

[[forward]]
name = "dns"
uplinks = ["isp-b"]
protocol = "both"
port = "5353-5354"
to = "192.168.0.10:53"
allow = ["198.51.100.0/24"]
"#,
    ));
    assert_eq!(c.forwards.len(), 2);
    let web = &c.forwards[0];
    assert_eq!(web.uplinks, ["isp-a", "isp-b"]);
    assert_eq!((web.protocols.as_slice(), web.to_port), (&[6u8][..], 8080));
    assert!(web.allow.is_empty());
    let dns = &c.forwards[1];
    assert_eq!(dns.protocols, [6, 17]);
    assert_eq!(
        (dns.port.first, dns.port.last, dns.to_port),
        (5353, 5354, 53)
    );
    assert_eq!(dns.to, Ipv4Addr::new(192, 168, 0, 10));
    assert_eq!(dns.allow, [prefix("198.51.100.0/24")]);
}

#[test]
fn forward_errors() {
    let fwd = |uplinks: &str, protocol: &str, port: &str, to: &str, marked: &str| {
        let mark = |key: &str| if key == marked { " # <-" } else { "" };
        forwards(&format!(
            "\n[[forward]]\nname = \"f\"\nuplinks = {uplinks}{}\nprotocol = \"{protocol}\"{}\nport = {port}{}\nto = \"{to}\"{}\n",
            mark("uplinks"),
            mark("protocol"),
            mark("port"),
            mark("to"),
        ))
    };
    let cases = [
        (
            r#""some""#,
            "tcp",
            "80",
            "192.168.0.10",
            "uplinks",
            "uplinks 'some' is neither a list of uplinks nor \"all\"",
        ),
        (
            "[]",
            "tcp",
            "80",
            "192.168.0.10",
            "uplinks",
            "uplinks is empty",
        ),
        (
            r#"["isp-c"]"#,
            "tcp",
            "80",
            "192.168.0.10",
            "uplinks",
            "uplink 'isp-c' is not defined",
        ),
        (
            r#"["isp-a", "isp-a"]"#,
            "tcp",
            "80",
            "192.168.0.10",
            "uplinks",
            "uplink 'isp-a' appears twice in uplinks",
        ),
        (
            r#""all""#,
            "icmp",
            "80",
            "192.168.0.10",
            "protocol",
            "protocol 'icmp' is not \"tcp\", \"udp\" or \"both\"",
        ),
        (
            r#""all""#,
            "tcp",
            "0",
            "192.168.0.10",
            "port",
            "port '0' is not a number 1..=65535",
        ),
        (
            r#""all""#,
            "tcp",
            "80",
            "10.0.0.1",
            "to",
            "to: 10.0.0.1 is not a host of the LAN 192.168.0.0/24",
        ),
        (
            r#""all""#,
            "tcp",
            "80",
            "192.168.0.1",
            "to",
            "to: 192.168.0.1 is not a host of the LAN 192.168.0.0/24",
        ),
        (
            r#""all""#,
            "tcp",
            "80",
            "host:80",
            "to",
            "to: 'host:80' is not host or host:port (an IPv4 address)",
        ),
        (
            r#""all""#,
            "tcp",
            r#""80-81""#,
            "192.168.0.10:90-92",
            "to",
            "to: port range 90-92 has 3 ports, port 80-81 has 2",
        ),
        (
            r#""all""#,
            "tcp",
            r#""80-81""#,
            "192.168.0.10:65535",
            "to",
            "to: ports from 65535 for 2 ports run past 65535",
        ),
        // The DNS probe on A sends from the probes' reserved ports.
        (
            r#"["isp-a"]"#,
            "udp",
            "65300",
            "192.168.0.10",
            "port",
            "udp 65300 on uplink 'isp-a' overlaps the source ports 65280-65535 of probe 'a-dns'",
        ),
    ];
    for (uplinks, protocol, port, to, marked, message) in cases {
        check(&fwd(uplinks, protocol, port, to, marked), message);
    }
    // TCP on the probe's ports is fine (a DNS probe sends UDP), and so is B.
    ok(&fwd(r#"["isp-a"]"#, "tcp", "65300", "192.168.0.10", ""));
    ok(&fwd(r#"["isp-b"]"#, "udp", "65300", "192.168.0.10", ""));
    ok(&fwd(r#"["isp-a"]"#, "udp", "50000", "192.168.0.10", ""));
}

#[test]
fn forwards_may_not_overlap() {
    check(
        &forwards(
            r#"
[[forward]]
name = "web"
uplinks = ["isp-b"]
protocol = "both"
port = "8000-8080"
to = "192.168.0.10"

[[forward]]
name = "other"
uplinks = "all"
protocol = "tcp"
port = 8080 # <-
to = "192.168.0.11"
"#,
        ),
        "tcp 8080 on uplink 'isp-b' is already forwarded by 'web' (line 24)",
    );
    // Same port on another uplink or protocol is another forward.
    ok(&forwards(
        r#"
[[forward]]
name = "a"
uplinks = ["isp-a"]
protocol = "tcp"
port = 8080
to = "192.168.0.10"

[[forward]]
name = "b"
uplinks = ["isp-b"]
protocol = "tcp"
port = 8080
to = "192.168.0.11"

[[forward]]
name = "u"
uplinks = "all"
protocol = "udp"
port = 8080
to = "192.168.0.11"
"#,
    ));
}

#[test]
fn forwards_leave_the_nat_pool_a_port() {
    let text = |last: u16| {
        forwards(&format!(
            "\n[nat]\nport_min = 2000\nport_max = 2009\n\n[[forward]]\nname = \"f\"\nuplinks = [\"isp-b\"]\nprotocol = \"tcp\"\nport = \"1990-{last}\" # <-\nto = \"192.168.0.10\"\n"
        ))
    };
    ok(&text(2008));
    check(
        &text(2009),
        "forwards take every NAT port (2000-2009) of tcp on uplink 'isp-b'",
    );
}

#[test]
fn forwards_need_a_nat_uplink() {
    let text = format!(
        "{BASE}nat = false\n\n[[forward]]\nname = \"f\"\nuplinks = [\"isp-a\"] # <-\nprotocol = \"tcp\"\nport = 80\nto = \"192.168.0.10\"\n"
    );
    check(
        &text,
        "uplink 'isp-a' has nat = false: a forward needs its NAT",
    );
    let all = text.replace(r#"["isp-a"]"#, r#""all""#);
    check(&all, "uplinks = \"all\": no uplink has nat = true");
}

#[test]
fn a_tcp_forward_may_not_take_the_dns_relays_ports_while_dns_is_enabled() {
    let forward = |protocol: &str| {
        format!(
            "[[forward]]\nname = \"x\"\nuplinks = \"all\"\nprotocol = \"{protocol}\"\nport = \"65000-65100\" # <-\nto = \"192.168.0.10\"\n"
        )
    };
    check(
        &forwards(&format!("[dns]\n{}", forward("tcp"))),
        "tcp 65000-65100 overlaps the ports 65024-65279 of the DNS relay's upstream connections ([dns] is enabled)",
    );
    ok(&forwards(&format!("[dns]\n{}", forward("udp"))));
    ok(&forwards(&forward("tcp")));
}
