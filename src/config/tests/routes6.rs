//! `[[route]]`s with an IPv6 prefix (SPEC 34): through an uplink with IPv6, a distance and a
//! track; each error names its line.

use super::*;

/// isp-a with IPv6, isp-c IPv4 only, and a track to name.
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
address6 = "2001:db8:ffa::1/64"
next_hop6 = "2001:db8:ffa::2"

[[uplink]]
name = "isp-c"
interface = "wan-c"
address = "172.19.0.1/30"
next_hop = "172.19.0.2"

[[track]]
name = "a-carrier"
uplink = "isp-a"
"#;

fn route(body: &str) -> String {
    format!("{DUAL}\n[[route]]\nname = \"a6\"\n{body}")
}

#[test]
fn an_ipv6_default_route_with_distance_and_track() {
    let c = ok(&route(
        "prefix = \"::/0\"\nuplink = \"isp-a\"\ndistance = 20\ntrack = \"a-carrier\"\n",
    ));
    assert!(c.routes.is_empty(), "not an IPv4 route");
    assert_eq!(
        c.routes6,
        vec![Route6Config {
            name: "a6".into(),
            prefix: "::/0".parse().unwrap(),
            uplink: "isp-a".into(),
            distance: 20,
            track: Some("a-carrier".into()),
        }]
    );
}

#[test]
fn ipv6_route_errors() {
    for (body, message) in [
        (
            "prefix = \"::/0\"\nuplink = \"isp-c\"  # <-\n",
            "IPv6 route 'a6' via uplink 'isp-c', which has no IPv6 (prefix6)",
        ),
        (
            "prefix = \"2001:db8:18::1/48\"  # <-\nuplink = \"isp-a\"\n",
            "prefix 2001:db8:18::1/48 has host bits set (did you mean 2001:db8:18::/48?)",
        ),
        (
            "prefix = \"::/0\"\nuplink = \"lan\"  # <-\n",
            "IPv6 route 'a6' must leave through an uplink, not the LAN",
        ),
        (
            "prefix = \"::/0\"\nuplink = \"isp-a\"\nnext_hop = \"2001:db8:ffa::2\"  # <-\n",
            "next_hop is not allowed on an IPv6 route (it leaves to its uplink's next_hop6)",
        ),
        (
            "prefix = \"::/0\"\nuplink = \"isp-a\"\nweight = 2  # <-\n",
            "weight is not supported on IPv6 routes yet (no load sharing over IPv6)",
        ),
        (
            "prefix = \"::/0\"\nuplink = \"isp-a\"\ntrack = \"nope\"  # <-\n",
            "track 'nope' is not defined",
        ),
    ] {
        check(&route(body), message);
    }
}

#[test]
fn an_ipv6_route_needs_ipv6_on() {
    check(
        &base("[[route]]\nname = \"a6\"\nprefix = \"::/0\"  # <-\nuplink = \"isp-a\"\n"),
        "IPv6 route 'a6' needs [lan] ipv6 = true",
    );
}

fn policy(body: &str) -> String {
    format!("{DUAL}\n[[policy]]\nname = \"p6\"\n{body}")
}

#[test]
fn an_ipv6_policy() {
    let c = ok(&policy(
        "source = \"2001:db8:a:1::/64\"\nprotocol = \"icmp\"\nuplinks = [\"isp-a\"]\nfallback = \"unreachable\"\n",
    ));
    assert!(c.policies.is_empty(), "not an IPv4 policy");
    assert_eq!(
        c.policies6,
        vec![Policy6Config {
            name: "p6".into(),
            source: Some("2001:db8:a:1::/64".parse().unwrap()),
            destination: None,
            protocol: Some(58),
            port: None,
            uplinks: vec!["isp-a".into()],
            fallback: PolicyFallback::Unreachable,
        }],
        "icmp in an IPv6 policy is ICMPv6"
    );
}

#[test]
fn ipv6_policy_errors() {
    for (body, message) in [
        (
            "source = \"2001:db8:a:1::/64\"\nuplinks = [\"isp-a\", \"isp-c\"]  # <-\n",
            "IPv6 policy 'p6' lists uplink 'isp-c', which has no IPv6 (prefix6)",
        ),
        (
            "source = \"2001:db8:a:1::/64\"\ndestination = \"172.18.0.0/16\"  # <-\nuplinks = [\"isp-a\"]\n",
            "destination: '172.18.0.0/16' is not an IPv6 prefix (expected like 2001:db8:a::/48)",
        ),
        (
            "destination = \"2001:db8:18::1/48\"  # <-\nuplinks = [\"isp-a\"]\n",
            "destination 2001:db8:18::1/48 has host bits set (did you mean 2001:db8:18::/48?)",
        ),
    ] {
        check(&policy(body), message);
    }
    check(
        &base(
            "[[policy]]\nname = \"p6\"  # <-\nsource = \"2001:db8:a:1::/64\"\nuplinks = [\"isp-a\"]\n",
        ),
        "IPv6 policy 'p6' needs [lan] ipv6 = true",
    );
}
