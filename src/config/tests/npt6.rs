//! `[lan] npt6_prefix` (SPEC 33): the internal /64 and its mapping per uplink, and each error
//! on its line.

use super::ipv6::DUAL;
use super::*;

fn with_npt6(value: &str) -> String {
    DUAL.replace(
        "ipv6 = true\n",
        &format!("ipv6 = true\nnpt6_prefix = \"{value}\" # <-\n"),
    )
}

#[test]
fn the_internal_prefix_is_kept() {
    let c = ok(&with_npt6("fd00:db8:1::/64"));
    let v6 = c.ipv6.unwrap();
    assert_eq!(v6.npt6_prefix, Some("fd00:db8:1::/64".parse().unwrap()));
    assert_eq!(ok(DUAL).ipv6.unwrap().npt6_prefix, None);
}

#[test]
fn errors() {
    for (value, message) in [
        (
            "fd00:db8:1::/48",
            "npt6_prefix fd00:db8:1::/48 is not a /64 prefix (each uplink's LAN /64 is its translation)",
        ),
        (
            "fd00:db8:1::5/64",
            "npt6_prefix fd00:db8:1::5/64 is not a /64 prefix (each uplink's LAN /64 is its translation)",
        ),
        (
            "fe80::/64",
            "npt6_prefix fe80::/64 is not a unicast prefix (use a ULA, fd00::/8)",
        ),
        (
            "2001:db8:b:7::/64",
            "npt6_prefix 2001:db8:b:7::/64 overlaps prefix6 2001:db8:b::/48 of uplink 'isp-b'",
        ),
        (
            "2001:db8:ffa::/64",
            "npt6_prefix 2001:db8:ffa::/64 overlaps address6 2001:db8:ffa::/64 of uplink 'isp-a'",
        ),
        (
            "fd00",
            "npt6_prefix: 'fd00' is not an IPv6 prefix (expected like 2001:db8:a::/48)",
        ),
    ] {
        check(&with_npt6(value), message);
    }
    let off = with_npt6("fd00:db8:1::/64").replace("ipv6 = true\n", "");
    check(&off, "npt6_prefix needs ipv6 = true");
}
