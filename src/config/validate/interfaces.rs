//! The interfaces and forwarding sections: `[[uplink]]` (addresses, next hops, MTU, NAT),
//! `[[route]]` and `[[policy]]`.

use std::net::Ipv4Addr;

use super::super::raw::{RawPolicy, RawRoute, RawUplink};
use super::super::values::{self, PROTO_TCP, PROTO_UDP};
use super::super::{
    DhcpClientConfig, LAN_EGRESS, LanConfig, Policy6Config, PolicyConfig, Route6Config,
    RouteConfig, UplinkConfig,
};
use super::routes6;
use super::services::resolvers;
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

        let dhcp_keys = [&u.dhcp_client_id, &u.dhcp_hostname, &u.dhcp_vendor_class];
        let (address, next_hop, dhcp) = if u.address.get_ref() == "dhcp" {
            if let Some(hop) = &u.next_hop {
                return Err(cx.err(
                    hop.span(),
                    "next_hop comes from the DHCP lease (address = \"dhcp\")",
                ));
            }
            let text = |v: &Option<S<String>>, key: &str| -> Result<Option<String>> {
                match v {
                    Some(v) if v.get_ref().is_empty() || v.get_ref().len() > 255 => {
                        Err(cx.err(v.span(), format!("{key} must be 1 to 255 characters")))
                    }
                    Some(v) => Ok(Some(v.get_ref().clone())),
                    None => Ok(None),
                }
            };
            let dhcp = DhcpClientConfig {
                client_id: text(&u.dhcp_client_id, "dhcp_client_id")?.map(|s| client_id(&s)),
                hostname: text(&u.dhcp_hostname, "dhcp_hostname")?,
                vendor_class: text(&u.dhcp_vendor_class, "dhcp_vendor_class")?,
                distance: match &u.dhcp_distance {
                    Some(d) => cx.int(d, "dhcp_distance", 1..=255)?,
                    None => 254,
                },
            };
            (
                Ipv4Prefix::new(Ipv4Addr::UNSPECIFIED, 32).expect("/32"),
                Ipv4Addr::UNSPECIFIED,
                Some(dhcp),
            )
        } else {
            if let Some(v) = dhcp_keys.into_iter().flatten().next() {
                return Err(cx.err(v.span(), "dhcp_* keys need address = \"dhcp\""));
            }
            if let Some(d) = &u.dhcp_distance {
                return Err(cx.err(d.span(), "dhcp_* keys need address = \"dhcp\""));
            }
            let (address, next_hop) = static_address(cx, u, lan, &out)?;
            (address, next_hop, None)
        };

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
            dhcp,
            dns_servers: match &u.dns_servers {
                Some(list) => resolvers(cx, list, "dns_servers")?,
                None => Vec::new(),
            },
        });
    }
    if out.is_empty() {
        return Err(cx.err(0..0, "at least one [[uplink]] is required"));
    }
    Ok((out, names))
}

/// The address and next hop of an uplink with a static address.
fn static_address(
    cx: &Ctx,
    u: &RawUplink,
    lan: &LanConfig,
    out: &[UplinkConfig],
) -> Result<(Ipv4Prefix, Ipv4Addr)> {
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
    if let Some(other) = out
        .iter()
        .find(|o| o.dhcp.is_none() && o.address.overlaps(&address))
    {
        return Err(cx.err(
            aspan,
            format!(
                "uplink prefix {net} overlaps prefix {} of uplink '{}'",
                other.address.network(),
                other.name
            ),
        ));
    }

    let Some(hop) = &u.next_hop else {
        return Err(cx.err(
            u.name.span(),
            "next_hop is required (or address = \"dhcp\")",
        ));
    };
    let next_hop = cx.addr(hop, "next_hop")?;
    check_next_hop(cx, hop, next_hop, &address)?;
    Ok((address, next_hop))
}

/// `dhcp_client_id`: colon-separated hex octets ("01:02:00:00:00:00:01") are the bytes of
/// option 61; any other text is sent as it is.
fn client_id(s: &str) -> Vec<u8> {
    let hex: Option<Vec<u8>> = s
        .split(':')
        .map(|b| {
            (b.len() == 2)
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect();
    match hex {
        Some(bytes) if s.contains(':') => bytes,
        _ => s.as_bytes().to_vec(),
    }
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
) -> Result<(Vec<RouteConfig>, Vec<Route6Config>)> {
    let mut names = Names::new("route");
    let mut out = Vec::with_capacity(raw.len());
    let mut out6 = Vec::new();
    for r in raw {
        let name = names.define(cx, &r.name)?;
        if routes6::is_ipv6(r) {
            out6.push(routes6::route6(cx, r, name, uplink_names, tracks)?);
            continue;
        }
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
    // A DHCP uplink without a configured default route gets one through the lease's router.
    // ':' cannot appear in a configured name, so this one never clashes.
    for u in uplinks {
        let Some(dhcp) = &u.dhcp else { continue };
        if !out
            .iter()
            .any(|r| r.uplink == u.name && r.prefix.prefix_len() == 0)
        {
            out.push(RouteConfig {
                name: format!("dhcp:{}", u.name),
                prefix: Ipv4Prefix::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0"),
                uplink: u.name.clone(),
                next_hop: Ipv4Addr::UNSPECIFIED,
                distance: dhcp.distance,
                weight: 1,
                track: None,
            });
        }
    }
    Ok((out, out6))
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
        Some(v) if uplink.dhcp.is_some() => {
            return Err(cx.err(
                v.span(),
                format!(
                    "next_hop cannot be set on uplink '{}': it comes from the DHCP lease",
                    uplink.name
                ),
            ));
        }
        Some(v) => {
            let hop = cx.addr(v, "next_hop")?;
            check_next_hop(cx, v, hop, &uplink.address)?;
            hop
        }
        None => uplink.next_hop,
    };
    Ok((uplink.name.clone(), next_hop))
}

pub(super) fn policies(
    cx: &Ctx,
    raw: &[RawPolicy],
    uplinks: &Names,
) -> Result<(Vec<PolicyConfig>, Vec<Policy6Config>)> {
    let mut names = Names::new("policy");
    let mut out = Vec::with_capacity(raw.len());
    let mut out6 = Vec::new();
    for p in raw {
        let name = names.define(cx, &p.name)?;
        let prefix =
            |v: &Option<S<String>>, key| v.as_ref().map(|v| cx.network(v, key)).transpose();
        let prefix6 = |v: &Option<S<String>>, key| {
            v.as_ref()
                .map(|v| routes6::network6(cx, v, key))
                .transpose()
        };
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
        let fallback = p.fallback.unwrap_or_default();
        if routes6::is_ipv6_policy(p) {
            out6.push(Policy6Config {
                name,
                source: prefix6(&p.source, "source")?,
                destination: prefix6(&p.destination, "destination")?,
                protocol: protocol.map(routes6::next_header),
                port,
                uplinks: chosen,
                fallback,
            });
            continue;
        }
        out.push(PolicyConfig {
            name,
            source: prefix(&p.source, "source")?,
            destination: prefix(&p.destination, "destination")?,
            protocol,
            port,
            uplinks: chosen,
            fallback,
        });
    }
    Ok((out, out6))
}
