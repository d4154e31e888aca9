//! Source-address-dependent routing for IPv6 (SPEC 32, 33; RFC 8678 §5): with one provider
//! prefix per uplink and ISPs that drop sources outside the prefix they delegated (BCP 38), a
//! packet from the LAN must leave through the uplink whose prefix holds its source. A policy
//! may still steer it to another uplink, but only to one that can carry that source: the
//! owner itself, or an uplink that translates LAN sources into its own prefix (NPTv6,
//! RFC 6296). When the owner is down and nothing else can carry the source, the answer is an
//! ICMPv6 "source address failed ingress/egress policy" (type 1 code 5), so the host retries
//! at once from its address in the other prefix (which the RAs have made the preferred one).
//!
//! Pure: the caller passes the uplinks' prefixes and states and the policy's choice.

use std::net::Ipv6Addr;

use crate::UplinkId;
use crate::prefix6::Ipv6Prefix;

/// What the routing decision knows about one uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkPrefix {
    pub uplink: UplinkId,
    /// The provider prefix (static or delegated), e.g. 2001:db8:a::/48.
    pub prefix: Ipv6Prefix,
    /// The uplink's default route is eligible (carrier and tracks up).
    pub up: bool,
    /// The uplink translates any LAN source into its prefix (NPTv6), so it can carry packets
    /// from the other prefixes too.
    pub translates: bool,
}

/// Where a packet from the LAN goes, given its source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRoute {
    /// Leave through this uplink.
    Via(UplinkId),
    /// The source is in the prefix of this uplink, which is down, and no up uplink can carry
    /// it: answer ICMPv6 destination unreachable code 5 (rate limited, and only where
    /// `icmpv6::may_send_error_about` allows).
    SourcePolicyFailed(UplinkId),
    /// The source is in no uplink's prefix (link-local, unspecified, multicast, a foreign or
    /// withdrawn prefix) and no up uplink translates: never forwarded.
    Foreign,
}

/// The egress of a packet from `src` (SPEC 32). `steer` is the uplink a policy rule chose, if
/// any: taken when it is up and can carry the source. Otherwise the uplink whose prefix holds
/// the source (the longest, should prefixes nest), if it is up; otherwise the first up uplink
/// that translates; otherwise code 5 for a source in a dead uplink's prefix, or `Foreign`.
pub fn route_by_source(
    src: Ipv6Addr,
    uplinks: &[UplinkPrefix],
    steer: Option<UplinkId>,
) -> SourceRoute {
    let forwardable = is_forwardable(src);
    let owner = owner(src, uplinks);
    if let Some(s) = steer
        && can_carry(src, uplinks, s)
    {
        return SourceRoute::Via(s);
    }
    if let Some(o) = owner.filter(|o| o.up) {
        return SourceRoute::Via(o.uplink);
    }
    if forwardable && let Some(t) = uplinks.iter().find(|u| u.up && u.translates) {
        return SourceRoute::Via(t.uplink);
    }
    match owner {
        Some(o) => SourceRoute::SourcePolicyFailed(o.uplink),
        None => SourceRoute::Foreign,
    }
}

/// A source the router may forward at all (not unspecified, loopback, multicast, link-local).
fn is_forwardable(src: Ipv6Addr) -> bool {
    !(src.is_unspecified()
        || src.is_loopback()
        || src.is_multicast()
        || src.is_unicast_link_local())
}

/// The uplink whose prefix holds `src` (the longest, should prefixes nest).
fn owner(src: Ipv6Addr, uplinks: &[UplinkPrefix]) -> Option<&UplinkPrefix> {
    uplinks
        .iter()
        .filter(|u| is_forwardable(src) && u.prefix.contains(src))
        .max_by_key(|u| u.prefix.prefix_len())
}

/// True when uplink `u` is up and can carry a packet from `src`: it owns the source's prefix,
/// or it translates (NPTv6). What a route or policy may steer to.
pub fn can_carry(src: Ipv6Addr, uplinks: &[UplinkPrefix], u: UplinkId) -> bool {
    let Some(chosen) = uplinks.iter().find(|p| p.uplink == u) else {
        return false;
    };
    is_forwardable(src)
        && chosen.up
        && (chosen.translates || owner(src, uplinks).is_some_and(|o| o.uplink == u))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: UplinkId = UplinkId(0);
    const B: UplinkId = UplinkId(1);

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// The lab: ISP A delegates 2001:db8:a::/48, ISP B 2001:db8:b::/48.
    fn lab(a_up: bool, b_up: bool) -> Vec<UplinkPrefix> {
        vec![
            UplinkPrefix {
                uplink: A,
                prefix: "2001:db8:a::/48".parse().unwrap(),
                up: a_up,
                translates: false,
            },
            UplinkPrefix {
                uplink: B,
                prefix: "2001:db8:b::/48".parse().unwrap(),
                up: b_up,
                translates: false,
            },
        ]
    }

    #[test]
    fn the_source_prefix_picks_the_uplink() {
        let host_a = addr("2001:db8:a::5054:ff:fe12:3456");
        let host_b = addr("2001:db8:b::5054:ff:fe12:3456");
        assert_eq!(
            route_by_source(host_a, &lab(true, true), None),
            SourceRoute::Via(A)
        );
        assert_eq!(
            route_by_source(host_b, &lab(true, true), None),
            SourceRoute::Via(B)
        );
    }

    #[test]
    fn a_source_in_a_dead_prefix_gets_code_5() {
        let host_a = addr("2001:db8:a::10");
        assert_eq!(
            route_by_source(host_a, &lab(false, true), None),
            SourceRoute::SourcePolicyFailed(A),
            "never out through B: ISP B drops A's sources"
        );
        assert_eq!(
            route_by_source(addr("2001:db8:b::10"), &lab(false, true), None),
            SourceRoute::Via(B)
        );
    }

    #[test]
    fn foreign_and_unforwardable_sources() {
        for src in [
            "2001:db8:c::1",
            "fd00::1",
            "fe80::1",
            "::",
            "::1",
            "ff02::1",
        ] {
            assert_eq!(
                route_by_source(addr(src), &lab(true, true), Some(A)),
                SourceRoute::Foreign,
                "{src}"
            );
        }
    }

    #[test]
    fn policy_steers_only_where_the_source_can_go() {
        let host_a = addr("2001:db8:a::10");
        assert_eq!(
            route_by_source(host_a, &lab(true, true), Some(B)),
            SourceRoute::Via(A)
        );
        assert_eq!(
            route_by_source(host_a, &lab(true, true), Some(A)),
            SourceRoute::Via(A)
        );
        let mut nptv6 = lab(true, true);
        nptv6[1].translates = true;
        assert_eq!(
            route_by_source(host_a, &nptv6, Some(B)),
            SourceRoute::Via(B)
        );
        nptv6[1].up = false;
        assert_eq!(
            route_by_source(host_a, &nptv6, Some(B)),
            SourceRoute::Via(A)
        );
        assert_eq!(
            route_by_source(host_a, &nptv6, Some(UplinkId(9))),
            SourceRoute::Via(A)
        );
    }

    #[test]
    fn a_translating_uplink_carries_sources_whose_uplink_is_dead() {
        let mut nptv6 = lab(false, true);
        nptv6[1].translates = true;
        assert_eq!(
            route_by_source(addr("2001:db8:a::10"), &nptv6, None),
            SourceRoute::Via(B)
        );
        assert_eq!(
            route_by_source(addr("fd00::10"), &nptv6, None),
            SourceRoute::Via(B)
        );
        assert_eq!(
            route_by_source(addr("fe80::10"), &nptv6, None),
            SourceRoute::Foreign
        );
    }

    #[test]
    fn nested_prefixes_take_the_longest() {
        let mut nested = lab(true, true);
        nested[1].prefix = "2001:db8:a:8000::/49".parse().unwrap();
        assert_eq!(
            route_by_source(addr("2001:db8:a:8000::1"), &nested, None),
            SourceRoute::Via(B)
        );
        assert_eq!(
            route_by_source(addr("2001:db8:a:1::1"), &nested, None),
            SourceRoute::Via(A)
        );
    }

    proptest! {
        /// The rules that keep IPv6 working through ISPs that filter sources: never out
        /// through a down uplink, never out through an uplink that cannot carry the source,
        /// and code 5 exactly when the source's own uplink is down and nothing can carry it.
        #[test]
        fn never_leaks_a_source_to_the_wrong_isp(
            iid in any::<u64>(),
            which in 0u8..4,
            a in any::<(bool, bool)>(),
            b in any::<(bool, bool)>(),
            steer in proptest::option::of(0u8..3),
        ) {
            let mut ups = lab(a.0, b.0);
            ups[0].translates = a.1;
            ups[1].translates = b.1;
            let net: u128 = match which {
                0 => 0x2001_0db8_000a_0000,
                1 => 0x2001_0db8_000b_0000,
                2 => 0x2001_0db8_000c_0000,
                _ => 0xfe80_0000_0000_0000,
            };
            let src = Ipv6Addr::from_bits(net << 64 | u128::from(iid));
            let owner = ups.iter().find(|u| u.prefix.contains(src)).copied();
            match route_by_source(src, &ups, steer.map(UplinkId)) {
                SourceRoute::Via(u) => {
                    let via = ups.iter().find(|x| x.uplink == u).unwrap();
                    prop_assert!(via.up);
                    prop_assert!(via.translates || owner.is_some_and(|o| o.uplink == u));
                    prop_assert!(which != 3, "link-local is never forwarded");
                    if via.translates && owner.is_some_and(|o| o.uplink != u && o.up) {
                        prop_assert_eq!(steer, Some(u.0), "only a policy moves a source off its own live uplink");
                    }
                }
                SourceRoute::SourcePolicyFailed(u) => {
                    let o = owner.unwrap();
                    prop_assert_eq!(o.uplink, u);
                    prop_assert!(!o.up && !ups.iter().any(|x| x.up && x.translates));
                }
                SourceRoute::Foreign => {
                    prop_assert!(owner.is_none());
                    prop_assert!(which == 3 || !ups.iter().any(|x| x.up && x.translates));
                }
            }
        }
    }
}
