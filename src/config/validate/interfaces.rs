//! The interfaces and forwarding sections: `[[uplink]]` (addresses, next hops, MTU, NAT),
//! `[[route]]` and `[[policy]]`.

use std::net::Ipv4Addr;

use super::super::raw::{RawPolicy, RawRoute, RawUplink};
use super::super::values::{self, PROTO_TCP, PROTO_UDP};
use super::super::{LAN_EGRESS, LanConfig, PolicyConfig, RouteConfig, UplinkConfig};
use super::{Ctx, MAX_UPLINKS, MTU_RANGE, Names, Result, S};
use crate::prefix::Ipv4Prefix;

pub(super) fn uplinks<'a>(
    cx: &Ctx,
    raw: &'a [RawUplink],
    lan: &LanConfig,
) -> Result<(Vec<UplinkConfig>, Names<'a>)> {
    let mut names = Names::new("uplink");
    let mut out: Vec<UplinkConfig> = Vec::with_capacity(raw.len());
    for u in raw {
        if out.len() == MAX_UPLINKS {
            return Err(cx.err(
                u.name.span(),
                format!("too many uplinks (at most {MAX_UPLINKS})"),
            ));
        }
        let name = names.define(cx, &u.name)?;
        if name == LAN_EGRESS {
            return Err(cx.err(
                u.name.span(),
                format!("uplink name '{LAN_EGRESS}' is reserved for routes via the LAN"),
            ));
        }
        let interface = cx.ifname(&u.interface, "interface")?;
        let ispan = u.interface.span();
        if interface == lan.tap || lan.bridge.as_deref() == Some(interface.as_str()) {
            return Err(cx.err(ispan, format!("interface '{interface}' is used by the LAN")));
        }
        if let Some(other) = out.iter().find(|o| o.interface == interface) {
            return Err(cx.err(
                ispan,
                format!(
                    "interface '{interface}' is already used by uplink '{}'",
                    other.name
                ),
            ));
        }

        let address = cx.prefix(&u.address, "address")?;
        let aspan = u.address.span();
        let net = address.network();
        if address.prefix_len() <= 30 && address.addr() == net.addr() {
            return Err(cx.err(
                aspan,
                format!("address {} is the network address of {net}", address.addr()),
            ));
        }
        if address.prefix_len() <= 30 && address.addr() == address.broadcast() {
            return Err(cx.err(
                aspan,
                format!(
                    "address {} is the broadcast address of {net}",
                    address.addr()
                ),
            ));
        }
        if address.overlaps(&lan.address) {
            return Err(cx.err(
                aspan,
                format!(
                    "uplink prefix {net} overlaps the LAN prefix {}",
                    lan.address.network()
                ),
            ));
        }
        if let Some(other) = out.iter().find(|o| o.address.overlaps(&address)) {
            return Err(cx.err(
                aspan,
                format!(
                    "uplink prefix {net} overlaps prefix {} of uplink '{}'",
                    other.address.network(),
                    other.name
                ),
            ));
        }

        let next_hop = cx.addr(&u.next_hop, "next_hop")?;
        check_next_hop(cx, &u.next_hop, next_hop, &address)?;

        let mtu = match &u.mtu {
            Some(m) => Some(cx.int(m, "mtu", MTU_RANGE)?),
            None => None,
        };
        let mss_clamp = match &u.mss_clamp {
            Some(m) => Some(cx.int(m, "mss_clamp", 536..=65495)?),
            None => None,
        };
        let nat = u.nat.as_ref().is_none_or(|n| *n.get_ref());
        let nat_sources = match &u.nat_sources {
            Some(list) if !nat => {
                return Err(cx.err(list.span(), "nat_sources needs nat = true"));
            }
            Some(list) if list.get_ref().is_empty() => {
                return Err(cx.err(
                    list.span(),
                    "nat_sources is empty (use nat = false to translate nothing)",
                ));
            }
            Some(list) => Some(
                list.get_ref()
                    .iter()
                    .map(|p| cx.network(p, "nat_sources"))
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        out.push(UplinkConfig {
            name,
            interface,
            address,
            next_hop,
            mtu,
            mss_clamp,
            nat,
            nat_sources,
        });
    }
    if out.is_empty() {
        return Err(cx.err(0..0, "at least one [[uplink]] is required"));
    }
    Ok((out, names))
}

/// A next hop must be a neighbour on the uplink's link, and not the router itself.
pub(super) fn check_next_hop(
    cx: &Ctx,
    v: &S<String>,
    hop: Ipv4Addr,
    uplink: &Ipv4Prefix,
) -> Result<()> {
    let net = uplink.network();
    if hop == uplink.addr() {
        return Err(cx.err(
            v.span(),
            format!("next_hop {hop} is the uplink's own address"),
        ));
    }
    if !uplink.contains(hop) {
        return Err(cx.err(
            v.span(),
            format!("next_hop {hop} is outside the uplink prefix {net}"),
        ));
    }
    if uplink.prefix_len() <= 30 && (hop == net.addr() || hop == uplink.broadcast()) {
        return Err(cx.err(
            v.span(),
            format!("next_hop {hop} is the network or broadcast address of {net}"),
        ));
    }
    Ok(())
}

pub(super) fn routes(
    cx: &Ctx,
    raw: &[RawRoute],
    uplink_names: &Names,
    uplinks: &[UplinkConfig],
    lan: &LanConfig,
    tracks: &Names,
) -> Result<Vec<RouteConfig>> {
    let mut names = Names::new("route");
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let name = names.define(cx, &r.name)?;
        let prefix = cx.network(&r.prefix, "prefix")?;
        let (uplink, next_hop) = if r.uplink.get_ref() == LAN_EGRESS {
            (LAN_EGRESS.to_string(), lan_next_hop(cx, r, lan)?)
        } else {
            uplink_next_hop(cx, r, uplink_names, uplinks)?
        };
        let small = |v: &Option<S<i64>>, key| v.as_ref().map_or(Ok(1), |v| cx.int(v, key, 1..=255));
        out.push(RouteConfig {
            name,
            prefix,
            uplink,
            next_hop,
            distance: small(&r.distance, "distance")?,
            weight: small(&r.weight, "weight")?,
            track: r
                .track
                .as_ref()
                .map(|t| tracks.resolve(cx, t))
                .transpose()?,
        });
    }
    Ok(out)
}

/// A route via the LAN goes to another router there (SPEC 29): its next hop is required.
fn lan_next_hop(cx: &Ctx, r: &RawRoute, lan: &LanConfig) -> Result<Ipv4Addr> {
    let Some(v) = &r.next_hop else {
        return Err(cx.err(
            r.uplink.span(),
            format!("route '{}' via the LAN needs a next_hop", r.name.get_ref()),
        ));
    };
    let hop = cx.addr(v, "next_hop")?;
    let net = lan.address.network();
    if hop == lan.address.addr() {
        return Err(cx.err(v.span(), format!("next_hop {hop} is the LAN's own address")));
    }
    if !lan.address.contains(hop) || hop == net.addr() || hop == lan.address.broadcast() {
        return Err(cx.err(
            v.span(),
            format!("next_hop {hop} is not a host of the LAN prefix {net}"),
        ));
    }
    Ok(hop)
}

/// (uplink name, next hop) of a route via an uplink.
fn uplink_next_hop(
    cx: &Ctx,
    r: &RawRoute,
    uplink_names: &Names,
    uplinks: &[UplinkConfig],
) -> Result<(String, Ipv4Addr)> {
    let index = uplink_names.index(cx, &r.uplink)?;
    let Some(uplink) = uplinks.get(index) else {
        return Err(cx.err(r.uplink.span(), "uplink is not defined"));
    };
    let next_hop = match &r.next_hop {
        Some(v) => {
            let hop = cx.addr(v, "next_hop")?;
            check_next_hop(cx, v, hop, &uplink.address)?;
            hop
        }
        None => uplink.next_hop,
    };
    Ok((uplink.name.clone(), next_hop))
}

pub(super) fn policies(cx: &Ctx, raw: &[RawPolicy], uplinks: &Names) -> Result<Vec<PolicyConfig>> {
    let mut names = Names::new("policy");
    let mut out = Vec::with_capacity(raw.len());
    for p in raw {
        let name = names.define(cx, &p.name)?;
        let prefix =
            |v: &Option<S<String>>, key| v.as_ref().map(|v| cx.network(v, key)).transpose();
        let protocol = match &p.protocol {
            Some(v) => Some(values::protocol(v.get_ref()).map_err(|m| cx.err(v.span(), m))?),
            None => None,
        };
        let port = match &p.port {
            Some(v) if !matches!(protocol, Some(PROTO_TCP | PROTO_UDP)) => {
                return Err(cx.err(v.span(), "port needs protocol = \"tcp\" or \"udp\""));
            }
            Some(v) => Some(values::port_range(v.get_ref()).map_err(|m| cx.err(v.span(), m))?),
            None => None,
        };
        let list = p.uplinks.get_ref();
        if list.is_empty() {
            return Err(cx.err(p.uplinks.span(), "uplinks is empty"));
        }
        let mut chosen: Vec<String> = Vec::with_capacity(list.len());
        for u in list {
            let uplink = uplinks.resolve(cx, u)?;
            if chosen.contains(&uplink) {
                return Err(cx.err(
                    u.span(),
                    format!("uplink '{uplink}' appears twice in uplinks"),
                ));
            }
            chosen.push(uplink);
        }
        out.push(PolicyConfig {
            name,
            source: prefix(&p.source, "source")?,
            destination: prefix(&p.destination, "destination")?,
            protocol,
            port,
            uplinks: chosen,
            fallback: p.fallback.unwrap_or_default(),
        });
    }
    Ok(out)
}
