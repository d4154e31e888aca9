//! The IPv6 keys (SPEC 32): the lab's dual-stack addressing parses, and each error names its
//! line.

use super::*;
use crate::prefix6::Ipv6Prefix;

/// The lab's IPv6 addressing: ISP A delegates 2001:db8:a::/48 and ISP B 2001:db8:b::/48, the
/// PE links are 2001:db8:ffa::/64 and 2001:db8:ffb::/64.
pub(super) const DUAL: &str = r#"
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
subnet_id = 5
next_hop6 = "fe80::1"
"#;

fn p6(s: &str) -> Ipv6Prefix {
    s.parse().unwrap()
}

#[test]
fn lab_addressing_parses() {
    let c = ok(DUAL);
    let v6 = c.ipv6.expect("ipv6 on");
    let a = v6.uplinks[0].as_ref().unwrap();
    assert_eq!(a.pd, None);
    let pa = a.provider.unwrap();
    assert_eq!(pa.prefix, p6("2001:db8:a::/48"));
    assert_eq!(
        pa.lan_prefix,
        p6("2001:db8:a::/64"),
        "the first /64 by default"
    );
    assert_eq!(a.address, Some(p6("2001:db8:ffa::2/64")));
    assert_eq!(
        a.next_hop,
        "2001:db8:ffa::1".parse::<std::net::Ipv6Addr>().unwrap()
    );
    let b = v6.uplinks[1].as_ref().unwrap();
    assert_eq!(b.provider.unwrap().lan_prefix, p6("2001:db8:b:5::/64"));
    assert_eq!(
        (b.address, b.next_hop.to_string()),
        (None, "fe80::1".to_string())
    );
}

#[test]
fn ipv6_is_off_by_default_and_uplinks_may_be_ipv4_only() {
    assert_eq!(ok(BASE).ipv6, None);
    let text = DUAL.replace(
        "prefix6 = \"2001:db8:b::/48\"\nsubnet_id = 5\nnext_hop6 = \"fe80::1\"\n",
        "",
    );
    let v6 = ok(&text).ipv6.unwrap();
    assert!(v6.uplinks[0].is_some() && v6.uplinks[1].is_none());
}

#[test]
fn explicit_lan_prefix() {
    let text = DUAL.replace("subnet_id = 5", "lan_prefix6 = \"2001:db8:b:ff::/64\"");
    let c = ok(&text);
    assert_eq!(
        c.ipv6.unwrap().uplinks[1]
            .as_ref()
            .unwrap()
            .provider
            .unwrap()
            .lan_prefix,
        p6("2001:db8:b:ff::/64")
    );
}

/// DUAL with the line containing `find` replaced by `with` (marked `# <-`).
fn dual_with(find: &str, with: &str) -> String {
    DUAL.lines()
        .map(|l| {
            if l.contains(find) {
                format!("{with} # <-")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn errors() {
    let cases = [
        ("ipv6 = true", "ipv6 = false", None),
        (
            "prefix6 = \"2001:db8:a::/48\"",
            "prefix6 = \"dhcpv6\"",
            Some(
                "prefix6: 'dhcpv6' is not an IPv6 prefix (expected like 2001:db8:a::/48), or \"dhcpv6-pd\"",
            ),
        ),
        (
            "prefix6 = \"2001:db8:a::/48\"",
            "prefix6 = \"2001:db8:a::1/48\"",
            Some("prefix6 2001:db8:a::1/48 has host bits set (did you mean 2001:db8:a::/48?)"),
        ),
        (
            "prefix6 = \"2001:db8:a::/48\"",
            "prefix6 = \"2001:db8:a::/80\"",
            Some("prefix6 2001:db8:a::/80 is longer than /64: the LAN needs a /64 of it"),
        ),
        (
            "prefix6 = \"2001:db8:a::/48\"",
            "prefix6 = \"fe80::/64\"",
            Some("prefix6 fe80::/64 is not a routable unicast prefix"),
        ),
        (
            "prefix6 = \"2001:db8:a::/48\"",
            "prefix6 = \"2001:db8:a::\"",
            Some(
                "prefix6: '2001:db8:a::' is not an IPv6 prefix (expected like 2001:db8:a::/48), or \"dhcpv6-pd\"",
            ),
        ),
        (
            "prefix6 = \"2001:db8:b::/48\"",
            "prefix6 = \"2001:db8::/32\"",
            Some("prefix6 2001:db8::/32 overlaps prefix6 2001:db8:a::/48 of uplink 'isp-a'"),
        ),
        (
            "subnet_id = 5",
            "subnet_id = 65536",
            Some("subnet_id 65536 is out of range 0..=65535 for prefix6 2001:db8:b::/48"),
        ),
        (
            "subnet_id = 5",
            "subnet_id = -1",
            Some("subnet_id -1 is out of range 0..=65535 for prefix6 2001:db8:b::/48"),
        ),
        (
            "subnet_id = 5",
            "lan_prefix6 = \"2001:db8:c::/64\"",
            Some("lan_prefix6 2001:db8:c::/64 is outside prefix6 2001:db8:b::/48"),
        ),
        (
            "subnet_id = 5",
            "lan_prefix6 = \"2001:db8:b::/56\"",
            Some("lan_prefix6 2001:db8:b::/56 is not a /64 prefix"),
        ),
        (
            "address6 = ",
            "address6 = \"2001:db8:ffa::/64\"",
            Some(
                "address6 2001:db8:ffa:: is the subnet-router anycast address of 2001:db8:ffa::/64",
            ),
        ),
        (
            "address6 = ",
            "address6 = \"2001:db8:b:1::2/64\"",
            Some("address6 2001:db8:b:1::2 is inside prefix6 2001:db8:b::/48"),
        ),
        (
            "next_hop6 = \"2001:db8:ffa::1\"",
            "next_hop6 = \"2001:db8:ffb::1\"",
            Some("next_hop6 2001:db8:ffb::1 is outside the uplink's prefix 2001:db8:ffa::/64"),
        ),
        (
            "next_hop6 = \"2001:db8:ffa::1\"",
            "next_hop6 = \"2001:db8:ffa::2\"",
            Some("next_hop6 2001:db8:ffa::2 is the uplink's own address6"),
        ),
        (
            "next_hop6 = \"fe80::1\"",
            "next_hop6 = \"2001:db8:ffb::1\"",
            Some(
                "next_hop6 2001:db8:ffb::1 is not link-local (fe80::/10) and the uplink has no address6",
            ),
        ),
        (
            "next_hop6 = \"fe80::1\"",
            "next_hop6 = \"isp\"",
            Some("next_hop6: 'isp' is not an IPv6 address"),
        ),
    ];
    for (find, with, message) in cases {
        // A link-local next hop, so that only the key under test can be wrong.
        let text = dual_with(find, with).replace(
            "next_hop6 = \"2001:db8:ffa::1\"\n",
            "next_hop6 = \"fe80::1\"\n",
        );
        let text = if find.starts_with("next_hop6") {
            dual_with(find, with)
        } else {
            text
        };
        match message {
            Some(m) => check(&text, m),
            // ipv6 = false with prefixes configured: the first prefix6 is the error.
            None => {
                let text = text.replace(" # <-", "").replacen(
                    "prefix6 = \"2001:db8:a::/48\"",
                    "prefix6 = \"2001:db8:a::/48\" # <-",
                    1,
                );
                check(&text, "prefix6 needs [lan] ipv6 = true");
            }
        }
    }
}

#[test]
fn keys_that_need_others() {
    let no_hop = DUAL.replace("next_hop6 = \"fe80::1\"\n", "").replace(
        "prefix6 = \"2001:db8:b::/48\"",
        "prefix6 = \"2001:db8:b::/48\" # <-",
    );
    check(&no_hop, "uplink 'isp-b' has prefix6 but no next_hop6");
    let both = DUAL.replace(
        "subnet_id = 5",
        "lan_prefix6 = \"2001:db8:b:5::/64\"\nsubnet_id = 5 # <-",
    );
    check(&both, "give lan_prefix6 or subnet_id, not both");
    let stray = base("next_hop6 = \"fe80::1\" # <-\n");
    check(&stray, "address6, next_hop6 and lan_prefix6 need prefix6");
    let stray_id = base("subnet_id = 1 # <-\n");
    check(&stray_id, "subnet_id needs prefix6");
    let lonely = BASE.replace(
        "address = \"192.168.0.1/24\"",
        "address = \"192.168.0.1/24\"\nipv6 = true # <-",
    );
    check(
        &lonely,
        "ipv6 = true needs at least one uplink with prefix6",
    );
}

#[test]
fn delegated_prefix() {
    let text = DUAL.replace("prefix6 = \"2001:db8:b::/48\"", "prefix6 = \"dhcpv6-pd\"");
    let v6 = ok(&text).ipv6.unwrap();
    let b = v6.uplinks[1].as_ref().unwrap();
    assert_eq!(b.provider, None, "known once delegated");
    let pd = b.pd.expect("delegated");
    assert_eq!(pd.subnet_id, 5);
    assert_eq!(
        pd.provider(p6("2001:db8:b::/48")).unwrap().lan_prefix,
        p6("2001:db8:b:5::/64")
    );
    assert_eq!(
        pd.provider(p6("2001:db8:b::/64")),
        None,
        "no /64 number 5 in a /64"
    );
    let default = ok(&text.replace("subnet_id = 5\n", "")).ipv6.unwrap();
    assert_eq!(
        default.uplinks[1].as_ref().unwrap().pd.unwrap().subnet_id,
        0
    );
    // Both uplinks delegated: nothing static needed.
    let both = text.replace("prefix6 = \"2001:db8:a::/48\"", "prefix6 = \"dhcpv6-pd\"");
    assert!(
        ok(&both)
            .ipv6
            .unwrap()
            .uplinks
            .iter()
            .all(|u| u.as_ref().unwrap().pd.is_some())
    );
    let with_lan = text.replace("subnet_id = 5", "lan_prefix6 = \"2001:db8:b:5::/64\" # <-");
    check(
        &with_lan,
        "lan_prefix6 cannot be used with prefix6 = \"dhcpv6-pd\": give subnet_id",
    );
    let negative = text.replace("subnet_id = 5", "subnet_id = -1 # <-");
    check(&negative, "subnet_id -1 is negative");
}
