//! Probes to IPv6 targets (SPEC 34): ICMPv6 echo, TCP and DNS need their uplink's `address6`
//! and `next_hop6`; each error names the probe's line.

use super::*;

/// Dual-stack isp-a (with `address6`), isp-b with a prefix but only its link-local address.
const DUAL: &str = r#"
[lan]
address = "192.168.0.1/24"
ipv6 = true

[[uplink]]
name = "isp-a"
interface = "wan-a"
address = "172.16.1.1/30"
next_hop = "172.16.1.2"
prefix6 = "2001:db8:a::/48"
address6 = "2001:db8:ffa::2/64"
next_hop6 = "2001:db8:ffa::1"

[[uplink]]
name = "isp-b"
interface = "wan-b"
address = "172.17.3.1/30"
next_hop = "172.17.3.2"
prefix6 = "2001:db8:b::/48"
next_hop6 = "fe80::1"

[[uplink]]
name = "isp-c"
interface = "wan-c"
address = "172.19.0.1/30"
next_hop = "172.19.0.2"
"#;

fn probe6(uplink: &str, kind: &str, target: &str, extra: &str) -> String {
    format!(
        "{DUAL}\n[[probe]]\nname = \"p6\"\ntype = \"{kind}\"\nuplink = \"{uplink}\"\ntarget = \"{target}\"  # <-\n{extra}"
    )
}

#[test]
fn an_icmpv6_probe_on_a_dual_stack_uplink() {
    let c = ok(&probe6("isp-a", "icmp-echo", "2001:db8:18::6", ""));
    assert_eq!(
        c.probes[0].target,
        "2001:db8:18::6".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(c.probes[0].kind, ProbeKind::IcmpEcho { payload_size: 56 });
}

#[test]
fn an_ipv6_probe_needs_address6_on_its_uplink() {
    check(
        &probe6("isp-b", "icmp-echo", "2001:db8:18::6", ""),
        "probe 'p6' has an IPv6 target but uplink 'isp-b' has no address6 to send it from",
    );
}

#[test]
fn an_ipv6_probe_needs_prefix6_on_its_uplink() {
    check(
        &probe6("isp-c", "icmp-echo", "2001:db8:18::6", ""),
        "probe 'p6' has an IPv6 target but uplink 'isp-c' has no prefix6",
    );
}

#[test]
fn an_ipv6_probe_needs_ipv6_on() {
    let text = base(
        "[[probe]]\nname = \"p6\"\ntype = \"icmp-echo\"\nuplink = \"isp-a\"\ntarget = \"2001:db8:18::6\"  # <-\n",
    );
    check(
        &text,
        "probe 'p6' has an IPv6 target but [lan] ipv6 is not on",
    );
}

#[test]
fn tcp_and_dns_probes_over_ipv6() {
    let c = ok(&probe6("isp-a", "tcp", "2001:db8:18::6", "port = 5201\n"));
    assert_eq!(c.probes[0].kind, ProbeKind::Tcp { port: 5201 });
    let c = ok(&probe6(
        "isp-a",
        "dns",
        "2001:db8:18::6",
        "query = \"probe.lab\"\n",
    ));
    assert_eq!(c.probes[0].kind.name(), "dns");
}

#[test]
fn an_ipv6_target_beyond_the_link() {
    for target in ["fe80::1", "ff02::1", "::1", "::"] {
        check(
            &probe6("isp-a", "icmp-echo", target, ""),
            &format!("target {target} is not a unicast address beyond the uplink's link"),
        );
    }
}

#[test]
fn an_ipv6_payload_fits_one_packet() {
    let text = probe6(
        "isp-a",
        "icmp-echo",
        "2001:db8:18::6",
        "payload_size = 1453\n",
    )
    .replace("  # <-", "")
    .replace("payload_size = 1453", "payload_size = 1453  # <-");
    check(
        &text,
        "payload_size 1453 does not fit one IPv6 packet on a 1500-byte link (at most 1452)",
    );
    ok(&probe6(
        "isp-a",
        "icmp-echo",
        "2001:db8:18::6",
        "payload_size = 1452\n",
    ));
}
