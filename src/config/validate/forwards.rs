//! The `[[forward]]` section: port forwards (SPEC 13, 31), and what they may not overlap — each
//! other, the whole NAT port pool, and the source ports of the uplink's TCP and DNS probes.
//!
//! Overlap with the NAT pool is not an error: the pool of each uplink named by a forward leaves
//! the forwarded ports out, as IOS reserves the port of `ip nat inside source static tcp`. Only a
//! forward that leaves the pool no port at all is refused.

use std::net::Ipv4Addr;

use super::super::raw::{RawForward, RawUplinkSet, Scalar};
use super::super::values::{self, PROTO_TCP, PROTO_UDP};
use super::super::{
    ForwardConfig, LanConfig, NatConfig, PortRange, ProbeConfig, ProbeKind, UplinkConfig,
};
use super::{Ctx, Names, Result, S};
use crate::dns::tcp::TCP_PORTS;
use crate::probe::PROBE_PORTS;

pub(super) fn forwards(
    cx: &Ctx,
    raw: &[RawForward],
    uplink_names: &Names,
    uplinks: &[UplinkConfig],
    lan: &LanConfig,
    nat: &NatConfig,
    probes: &[ProbeConfig],
) -> Result<Vec<ForwardConfig>> {
    let mut names = Names::new("forward");
    let mut out: Vec<ForwardConfig> = Vec::with_capacity(raw.len());
    // The line of each accepted forward, to name it in overlap errors.
    let mut lines: Vec<usize> = Vec::with_capacity(raw.len());
    for f in raw {
        let name = names.define(cx, &f.name)?;
        let chosen = forward_uplinks(cx, &f.uplinks, uplink_names, uplinks)?;
        let protocols = match f.protocol.get_ref().as_str() {
            "tcp" => vec![PROTO_TCP],
            "udp" => vec![PROTO_UDP],
            "both" => vec![PROTO_TCP, PROTO_UDP],
            other => {
                return Err(cx.err(
                    f.protocol.span(),
                    format!(
                        "protocol '{}' is not \"tcp\", \"udp\" or \"both\"",
                        other.escape_debug()
                    ),
                ));
            }
        };
        let port = values::port_range(f.port.get_ref()).map_err(|m| cx.err(f.port.span(), m))?;
        let (to, to_port) = target(cx, &f.to, port, lan)?;
        let allow = match &f.allow {
            Some(list) if list.get_ref().is_empty() => {
                return Err(cx.err(
                    list.span(),
                    "allow is empty (leave it out to allow any source)",
                ));
            }
            Some(list) => list
                .get_ref()
                .iter()
                .map(|p| cx.network(p, "allow"))
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let fwd = ForwardConfig {
            name,
            uplinks: chosen,
            protocols,
            port,
            to,
            to_port,
            allow,
        };
        let line = cx.line(f.name.span().start);
        if let Some((other, uplink, proto)) = out.iter().zip(&lines).find_map(|(o, &l)| {
            let (u, p) = shared_uplink_proto(o, &fwd)?;
            overlaps(o.port, fwd.port).then_some(((o, l), u, p))
        }) {
            return Err(cx.err(
                f.port.span(),
                format!(
                    "{} {} on uplink '{uplink}' is already forwarded by '{}' (line {})",
                    proto_name(proto),
                    range_text(fwd.port),
                    other.0.name,
                    other.1
                ),
            ));
        }
        for uplink in &fwd.uplinks {
            check_probes(cx, f, &fwd, uplink, probes)?;
        }
        out.push(fwd);
        lines.push(line);
        check_pool_left(cx, f, &out, nat)?;
    }
    Ok(out)
}

/// The uplinks a forward is published on: a list of defined NAT uplinks, or "all" of them.
fn forward_uplinks(
    cx: &Ctx,
    v: &S<RawUplinkSet>,
    names: &Names,
    uplinks: &[UplinkConfig],
) -> Result<Vec<String>> {
    let span = v.span();
    match v.get_ref() {
        RawUplinkSet::Keyword(k) if k == "all" => {
            let all: Vec<String> = uplinks
                .iter()
                .filter(|u| u.nat)
                .map(|u| u.name.clone())
                .collect();
            if all.is_empty() {
                return Err(cx.err(span, "uplinks = \"all\": no uplink has nat = true"));
            }
            Ok(all)
        }
        RawUplinkSet::Keyword(k) => Err(cx.err(
            span,
            format!(
                "uplinks '{}' is neither a list of uplinks nor \"all\"",
                k.escape_debug()
            ),
        )),
        RawUplinkSet::Named(list) if list.is_empty() => Err(cx.err(span, "uplinks is empty")),
        RawUplinkSet::Named(list) => {
            let mut chosen: Vec<String> = Vec::with_capacity(list.len());
            for name in list {
                let spanned = S::new(span.clone(), name.clone());
                let index = names.index(cx, &spanned)?;
                if chosen.contains(name) {
                    return Err(cx.err(
                        span.clone(),
                        format!("uplink '{name}' appears twice in uplinks"),
                    ));
                }
                if !uplinks[index].nat {
                    return Err(cx.err(
                        span.clone(),
                        format!("uplink '{name}' has nat = false: a forward needs its NAT"),
                    ));
                }
                chosen.push(name.clone());
            }
            Ok(chosen)
        }
    }
}

/// `to = "host"` (same ports), `"host:port"` (first internal port) or `"host:first-last"` (as
/// many ports as the external range).
fn target(cx: &Ctx, v: &S<String>, port: PortRange, lan: &LanConfig) -> Result<(Ipv4Addr, u16)> {
    let text = v.get_ref();
    let err = |m: String| cx.err(v.span(), m);
    let (host, ports) = match text.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (text.as_str(), None),
    };
    let to: Ipv4Addr = host.parse().map_err(|_| {
        err(format!(
            "to: '{}' is not host or host:port (an IPv4 address)",
            text.escape_debug()
        ))
    })?;
    let net = lan.address;
    let lan_host =
        net.contains(to) && to != net.addr() && to != net.network().addr() && to != net.broadcast();
    if !lan_host {
        return Err(err(format!(
            "to: {to} is not a host of the LAN {}",
            net.network()
        )));
    }
    let width = port.last - port.first;
    let to_port = match ports {
        None => port.first,
        Some(p) => {
            let r = values::port_range(&Scalar::Text(p.to_string()))
                .map_err(|m| err(format!("to: {m}")))?;
            if r.first != r.last && r.last - r.first != width {
                return Err(err(format!(
                    "to: port range {} has {} ports, port {} has {}",
                    range_text(r),
                    u32::from(r.last - r.first) + 1,
                    range_text(port),
                    u32::from(width) + 1
                )));
            }
            r.first
        }
    };
    if u32::from(to_port) + u32::from(width) > 65535 {
        return Err(err(format!(
            "to: ports from {to_port} for {} ports run past 65535",
            u32::from(width) + 1
        )));
    }
    Ok((to, to_port))
}

/// With `[dns]` the relay's upstream TCP connections leave from `TCP_PORTS` on every uplink; a
/// TCP forward there would take their answers. `forwards` are `raw`'s, in order.
pub(super) fn check_relay_ports(
    cx: &Ctx,
    raw: &[RawForward],
    forwards: &[ForwardConfig],
) -> Result<()> {
    let relay_ports = PortRange {
        first: *TCP_PORTS.start(),
        last: *TCP_PORTS.end(),
    };
    for (f, fwd) in raw.iter().zip(forwards) {
        if fwd.protocols.contains(&PROTO_TCP) && overlaps(fwd.port, relay_ports) {
            return Err(cx.err(
                f.port.span(),
                format!(
                    "tcp {} overlaps the ports {} of the DNS relay's upstream connections ([dns] is enabled)",
                    range_text(fwd.port),
                    range_text(relay_ports)
                ),
            ));
        }
    }
    Ok(())
}

/// A TCP or DNS probe on `uplink` sends from a port of `PROBE_PORTS`; a forward there must not
/// take its replies (they are told apart first, but the forward would lose those ports).
fn check_probes(
    cx: &Ctx,
    f: &RawForward,
    fwd: &ForwardConfig,
    uplink: &str,
    probes: &[ProbeConfig],
) -> Result<()> {
    let probe_ports = PortRange {
        first: *PROBE_PORTS.start(),
        last: *PROBE_PORTS.end(),
    };
    for p in probes.iter().filter(|p| p.uplink == uplink) {
        let proto = match p.kind {
            ProbeKind::Tcp { .. } => PROTO_TCP,
            ProbeKind::Dns { .. } => PROTO_UDP,
            ProbeKind::IcmpEcho { .. } => continue,
        };
        if fwd.protocols.contains(&proto) && overlaps(fwd.port, probe_ports) {
            return Err(cx.err(
                f.port.span(),
                format!(
                    "{} {} on uplink '{uplink}' overlaps the source ports {} of probe '{}'",
                    proto_name(proto),
                    range_text(fwd.port),
                    range_text(probe_ports),
                    p.name
                ),
            ));
        }
    }
    Ok(())
}

/// The forwards in `all` (the last one just added) must leave each uplink's NAT pool a port.
fn check_pool_left(cx: &Ctx, f: &RawForward, all: &[ForwardConfig], nat: &NatConfig) -> Result<()> {
    let Some(last) = all.last() else {
        return Ok(());
    };
    let pool = PortRange {
        first: nat.port_min,
        last: nat.port_max,
    };
    let size = u32::from(pool.last - pool.first) + 1;
    for uplink in &last.uplinks {
        for &proto in &last.protocols {
            // Forwards never overlap each other, so their parts of the pool add up.
            let taken: u32 = all
                .iter()
                .filter(|o| o.uplinks.contains(uplink) && o.protocols.contains(&proto))
                .map(|o| intersection(o.port, pool))
                .sum();
            if taken >= size {
                return Err(cx.err(
                    f.port.span(),
                    format!(
                        "forwards take every NAT port ({}) of {} on uplink '{uplink}'",
                        range_text(pool),
                        proto_name(proto)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// An uplink and protocol both forwards are published on, if any.
fn shared_uplink_proto<'a>(a: &'a ForwardConfig, b: &ForwardConfig) -> Option<(&'a str, u8)> {
    let uplink = a.uplinks.iter().find(|u| b.uplinks.contains(u))?;
    let proto = a.protocols.iter().find(|p| b.protocols.contains(p))?;
    Some((uplink, *proto))
}

fn overlaps(a: PortRange, b: PortRange) -> bool {
    a.first <= b.last && b.first <= a.last
}

fn intersection(a: PortRange, b: PortRange) -> u32 {
    let (first, last) = (a.first.max(b.first), a.last.min(b.last));
    if first <= last {
        u32::from(last - first) + 1
    } else {
        0
    }
}

fn proto_name(proto: u8) -> &'static str {
    if proto == PROTO_TCP { "tcp" } else { "udp" }
}

fn range_text(r: PortRange) -> String {
    if r.first == r.last {
        r.first.to_string()
    } else {
        format!("{}-{}", r.first, r.last)
    }
}
