//! `[[route]]`s with an IPv6 prefix and `[[policy]]`s with an IPv6 source or destination
//! (SPEC 34): through uplinks with IPv6 (to their `next_hop6`), with a distance and a track like
//! IPv4 routes; no next hop of their own, no load sharing yet.

use super::super::raw::{RawPolicy, RawRoute};
use super::super::{Ipv6Config, LAN_EGRESS, Policy6Config, Route6Config, UplinkConfig};
use super::{Ctx, Names, Result, S};
use crate::prefix6::Ipv6Prefix;

/// ICMPv6's next header: "icmp" in an IPv6 policy.
const ICMPV6: u8 = 58;

/// An IPv6 policy: its source or destination is IPv6.
pub(super) fn is_ipv6_policy(p: &RawPolicy) -> bool {
    [&p.source, &p.destination]
        .into_iter()
        .flatten()
        .any(|v| v.get_ref().contains(':'))
}

/// An IPv6 policy's protocol: "icmp" (1) is ICMPv6 there.
pub(super) fn next_header(protocol: u8) -> u8 {
    if protocol == 1 { ICMPV6 } else { protocol }
}

/// An IPv6 prefix without host bits.
pub(super) fn network6(cx: &Ctx, v: &S<String>, key: &str) -> Result<Ipv6Prefix> {
    let prefix: Ipv6Prefix = v
        .get_ref()
        .parse()
        .map_err(|e| cx.err(v.span(), format!("{key}: {e}")))?;
    if prefix.has_host_bits() {
        return Err(cx.err(
            v.span(),
            format!(
                "{key} {prefix} has host bits set (did you mean {}?)",
                prefix.network()
            ),
        ));
    }
    Ok(prefix)
}

/// An IPv6 route: its prefix is IPv6 (IPv4 prefixes never hold a ':').
pub(super) fn is_ipv6(r: &RawRoute) -> bool {
    r.prefix.get_ref().contains(':')
}

pub(super) fn route6(
    cx: &Ctx,
    r: &RawRoute,
    name: String,
    uplink_names: &Names,
    tracks: &Names,
) -> Result<Route6Config> {
    let prefix = network6(cx, &r.prefix, "prefix")?;
    if r.uplink.get_ref() == LAN_EGRESS {
        return Err(cx.err(
            r.uplink.span(),
            format!("IPv6 route '{name}' must leave through an uplink, not the LAN"),
        ));
    }
    let uplink = uplink_names.resolve(cx, &r.uplink)?;
    if let Some(v) = &r.next_hop {
        return Err(cx.err(
            v.span(),
            "next_hop is not allowed on an IPv6 route (it leaves to its uplink's next_hop6)",
        ));
    }
    if let Some(v) = &r.weight {
        return Err(cx.err(
            v.span(),
            "weight is not supported on IPv6 routes yet (no load sharing over IPv6)",
        ));
    }
    Ok(Route6Config {
        name,
        prefix,
        uplink,
        distance: r
            .distance
            .as_ref()
            .map_or(Ok(1), |v| cx.int(v, "distance", 1..=255))?,
        track: r
            .track
            .as_ref()
            .map(|t| tracks.resolve(cx, t))
            .transpose()?,
    })
}

/// Once `[lan] ipv6` and the uplinks' IPv6 are known: each IPv6 route's uplink has IPv6.
pub(super) fn check(
    cx: &Ctx,
    raw: &[RawRoute],
    routes: &[Route6Config],
    uplinks: &[UplinkConfig],
    ipv6: Option<&Ipv6Config>,
) -> Result<()> {
    for (r, route) in raw.iter().filter(|r| is_ipv6(r)).zip(routes) {
        let Some(v6) = ipv6 else {
            return Err(cx.err(
                r.prefix.span(),
                format!("IPv6 route '{}' needs [lan] ipv6 = true", route.name),
            ));
        };
        let has_v6 = uplinks
            .iter()
            .position(|u| u.name == route.uplink)
            .and_then(|u| v6.uplinks.get(u))
            .is_some_and(Option::is_some);
        if !has_v6 {
            return Err(cx.err(
                r.uplink.span(),
                format!(
                    "IPv6 route '{}' via uplink '{}', which has no IPv6 (prefix6)",
                    route.name, route.uplink
                ),
            ));
        }
    }
    Ok(())
}

/// Once `[lan] ipv6` and the uplinks' IPv6 are known: each IPv6 policy's uplinks have IPv6.
pub(super) fn check_policies(
    cx: &Ctx,
    raw: &[RawPolicy],
    policies: &[Policy6Config],
    uplinks: &[UplinkConfig],
    ipv6: Option<&Ipv6Config>,
) -> Result<()> {
    for (r, p) in raw.iter().filter(|r| is_ipv6_policy(r)).zip(policies) {
        let Some(v6) = ipv6 else {
            return Err(cx.err(
                r.name.span(),
                format!("IPv6 policy '{}' needs [lan] ipv6 = true", p.name),
            ));
        };
        if let Some(u) = p.uplinks.iter().find(|name| {
            !uplinks
                .iter()
                .position(|u| &u.name == *name)
                .and_then(|u| v6.uplinks.get(u))
                .is_some_and(Option::is_some)
        }) {
            return Err(cx.err(
                r.uplinks.span(),
                format!(
                    "IPv6 policy '{}' lists uplink '{u}', which has no IPv6 (prefix6)",
                    p.name
                ),
            ));
        }
    }
    Ok(())
}
