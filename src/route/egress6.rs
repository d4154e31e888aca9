//! The egress of an IPv6 packet from the LAN (SPEC 32, 34), as the fast path takes it and
//! `explain` tells it: the first `[[policy]]` that matches the flow takes the first of its
//! uplinks that can carry the source (else its fallback: the table, or unreachable); then the
//! eligible route for the destination steers (`table6`); the egress by source decides the rest
//! (`source6`).

use std::net::Ipv6Addr;

use super::source6::{SourceRoute, UplinkPrefix, can_carry, route_by_source};
use super::table6::{self, Route6};
use crate::UplinkId;
use crate::prefix6::Ipv6Prefix;

/// The fields of an IPv6 flow that its egress depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTuple6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The upper-layer protocol (next header after the extension headers).
    pub proto: u8,
    pub src_port: u16,
    /// 0 when the packet has no ports (or they are not in this fragment).
    pub dst_port: u16,
}

/// An IPv6 policy as the fast path matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy6 {
    /// Index in `Config::policies6`, for the views.
    pub index: usize,
    pub source: Option<Ipv6Prefix>,
    pub destination: Option<Ipv6Prefix>,
    pub protocol: Option<u8>,
    /// Inclusive destination port range.
    pub ports: Option<(u16, u16)>,
    pub uplinks: Vec<UplinkId>,
    /// With no listed uplink able to carry the source: unreachable, not the table.
    pub unreachable: bool,
}

impl Policy6 {
    pub fn matches(&self, flow: &FlowTuple6) -> bool {
        self.source.is_none_or(|p| p.contains(flow.src))
            && self.destination.is_none_or(|p| p.contains(flow.dst))
            && self.protocol.is_none_or(|p| p == flow.proto)
            && self
                .ports
                .is_none_or(|(lo, hi)| (lo..=hi).contains(&flow.dst_port))
    }
}

/// What chose an IPv6 packet's egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chooser6 {
    /// `Config::policies6[i]`.
    Policy(usize),
    /// `Config::routes6[i]`.
    Route(usize),
    /// The source's prefix (or the first translating uplink).
    Source,
}

/// The egress of `flow` and what chose it; `None`: a policy with fallback unreachable whose
/// uplinks cannot carry the source.
pub fn decide(
    flow: &FlowTuple6,
    uplinks: &[UplinkPrefix],
    routes: &[Route6],
    policies: &[Policy6],
) -> (Option<SourceRoute>, Chooser6) {
    if let Some(p) = policies.iter().find(|p| p.matches(flow)) {
        if let Some(&u) = p.uplinks.iter().find(|&&u| can_carry(flow.src, uplinks, u)) {
            return (Some(SourceRoute::Via(u)), Chooser6::Policy(p.index));
        }
        if p.unreachable {
            return (None, Chooser6::Policy(p.index));
        }
    }
    let best = table6::best(routes, flow.dst);
    let route = route_by_source(flow.src, uplinks, best.map(|r| r.uplink));
    let by = match (route, best) {
        (SourceRoute::Via(u), Some(b)) if b.uplink == u => Chooser6::Route(b.index),
        _ => Chooser6::Source,
    };
    (Some(route), by)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: UplinkId = UplinkId(0);
    const B: UplinkId = UplinkId(1);

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// The lab's two prefixes, both up; `translates` as with NPTv6 on both.
    fn uplinks(translates: bool) -> Vec<UplinkPrefix> {
        [(A, "2001:db8:a::/48"), (B, "2001:db8:b::/48")]
            .into_iter()
            .map(|(uplink, p)| UplinkPrefix {
                uplink,
                prefix: p.parse().unwrap(),
                up: true,
                translates,
            })
            .collect()
    }

    fn flow(src: &str, proto: u8, dst_port: u16) -> FlowTuple6 {
        FlowTuple6 {
            src: addr(src),
            dst: addr("2001:db8:18::6"),
            proto,
            src_port: 40000,
            dst_port,
        }
    }

    fn voip(uplinks: Vec<UplinkId>, unreachable: bool) -> Policy6 {
        Policy6 {
            index: 0,
            source: Some("2001:db8:a:1::/64".parse().unwrap()),
            destination: None,
            protocol: Some(17),
            ports: Some((5060, 5061)),
            uplinks,
            unreachable,
        }
    }

    fn default_via_b() -> Vec<Route6> {
        vec![Route6 {
            index: 0,
            prefix: "::/0".parse().unwrap(),
            uplink: B,
            distance: 10,
            eligible: true,
        }]
    }

    #[test]
    fn a_matching_policy_takes_its_first_uplink_that_can_carry_the_source() {
        let host_a = "2001:db8:a:1::10";
        let p = [voip(vec![B, A], false)];
        // Without translation B cannot carry A's source: A, still by the policy.
        assert_eq!(
            decide(&flow(host_a, 17, 5060), &uplinks(false), &[], &p),
            (Some(SourceRoute::Via(A)), Chooser6::Policy(0))
        );
        assert_eq!(
            decide(&flow(host_a, 17, 5060), &uplinks(true), &[], &p),
            (Some(SourceRoute::Via(B)), Chooser6::Policy(0))
        );
        // Another port, protocol or source: not the policy's.
        for f in [
            flow(host_a, 17, 53),
            flow(host_a, 6, 5060),
            flow("2001:db8:a:2::10", 17, 5060),
        ] {
            assert_eq!(
                decide(&f, &uplinks(true), &[], &p),
                (Some(SourceRoute::Via(A)), Chooser6::Source)
            );
        }
    }

    #[test]
    fn a_policy_falls_back_to_the_table_or_to_unreachable() {
        let host_a = "2001:db8:a:1::10";
        let f = flow(host_a, 17, 5060);
        // Only B listed, B cannot carry A's source.
        assert_eq!(
            decide(
                &f,
                &uplinks(false),
                &default_via_b(),
                &[voip(vec![B], false)]
            ),
            (Some(SourceRoute::Via(A)), Chooser6::Source),
            "the table: B's route cannot carry it either, so by source"
        );
        assert_eq!(
            decide(&f, &uplinks(false), &[], &[voip(vec![B], true)]),
            (None, Chooser6::Policy(0))
        );
    }

    #[test]
    fn without_a_policy_the_route_steers() {
        let f = flow("2001:db8:a:1::10", 6, 443);
        assert_eq!(
            decide(&f, &uplinks(true), &default_via_b(), &[]),
            (Some(SourceRoute::Via(B)), Chooser6::Route(0))
        );
        assert_eq!(
            decide(&f, &uplinks(false), &default_via_b(), &[]),
            (Some(SourceRoute::Via(A)), Chooser6::Source)
        );
    }
}
