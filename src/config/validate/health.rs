//! The health sections: `[[probe]]`, `[[track]]` (with the list-cycle check) and hooks.

use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use super::super::raw::{RawHook, RawListOp, RawProbe, RawProbeType, RawTrack, Scalar};
use super::super::values;
use super::super::{
    Hook, Ipv6Config, ListOp, ProbeConfig, ProbeKind, TrackConfig, TrackSource, UplinkConfig,
};
use super::{Ctx, Names, Result, S};

pub(super) fn probes<'a>(
    cx: &Ctx,
    raw: &'a [RawProbe],
    uplinks: &Names,
) -> Result<(Vec<ProbeConfig>, Names<'a>)> {
    let mut names = Names::new("probe");
    let mut out = Vec::with_capacity(raw.len());
    for p in raw {
        out.push(probe(cx, p, &mut names, uplinks)?);
    }
    Ok((out, names))
}

pub(super) fn probe<'a>(
    cx: &Ctx,
    p: &'a RawProbe,
    names: &mut Names<'a>,
    uplinks: &Names,
) -> Result<ProbeConfig> {
    let name = names.define(cx, &p.name)?;
    let uplink = uplinks.resolve(cx, &p.uplink)?;
    let target: IpAddr = p.target.get_ref().parse().map_err(|_| {
        let s = p.target.get_ref().escape_debug();
        cx.err(
            p.target.span(),
            format!("target: '{s}' is not an IP address"),
        )
    })?;
    let type_name = match p.kind {
        RawProbeType::IcmpEcho => "icmp-echo",
        RawProbeType::Tcp => "tcp",
        RawProbeType::Dns => "dns",
    };
    let only = |key: &str, span: Range<usize>, valid: &str| {
        cx.err(
            span,
            format!("{key} is not allowed for {type_name} probes ({valid} only)"),
        )
    };
    if let (Some(q), false) = (&p.query, p.kind == RawProbeType::Dns) {
        return Err(only("query", q.span(), "dns"));
    }
    if let (Some(s), false) = (&p.payload_size, p.kind == RawProbeType::IcmpEcho) {
        return Err(only("payload_size", s.span(), "icmp-echo"));
    }
    let port = p.port.as_ref().map(|v| cx.int::<u16>(v, "port", 1..=65535));
    let kind = match p.kind {
        RawProbeType::IcmpEcho => {
            if let Some(v) = &p.port {
                return Err(only("port", v.span(), "tcp and dns"));
            }
            let payload_size = match &p.payload_size {
                Some(s) => cx.int(s, "payload_size", 0..=1472)?,
                None => 56,
            };
            ProbeKind::IcmpEcho { payload_size }
        }
        RawProbeType::Tcp => ProbeKind::Tcp {
            port: port.ok_or_else(|| {
                cx.err(p.name.span(), format!("tcp probe '{name}' needs a port"))
            })??,
        },
        RawProbeType::Dns => {
            let query = match &p.query {
                Some(q) => {
                    values::dns_name(q.get_ref())
                        .map_err(|m| cx.err(q.span(), format!("query: {m}")))?;
                    q.get_ref().clone()
                }
                None => ".".to_string(),
            };
            ProbeKind::Dns {
                port: port.unwrap_or(Ok(53))?,
                query,
            }
        }
    };

    let interval = cx.duration_or(&p.interval, "interval", Duration::from_secs(5))?;
    if let Some(v) = &p.interval
        && interval < Duration::from_millis(10)
    {
        return Err(cx.err(
            v.span(),
            format!("interval {interval:?} is shorter than 10ms"),
        ));
    }
    // A fast profile (interval < 1s) gets a timeout that fits inside its interval.
    let timeout = cx.duration_or(&p.timeout, "timeout", Duration::from_secs(1).min(interval))?;
    if let Some(v) = &p.timeout
        && timeout > interval
    {
        return Err(cx.err(
            v.span(),
            format!("timeout {timeout:?} is longer than interval {interval:?}"),
        ));
    }
    let threshold = cx.duration_or(&p.threshold, "threshold", timeout)?;
    if let Some(v) = &p.threshold
        && threshold > timeout
    {
        return Err(cx.err(
            v.span(),
            format!("threshold {threshold:?} is longer than timeout {timeout:?}"),
        ));
    }
    let dscp = match &p.dscp {
        Some(d) => cx.int(d, "dscp", 0..=63)?,
        None => 0,
    };
    Ok(ProbeConfig {
        name,
        kind,
        uplink,
        target,
        interval,
        timeout,
        threshold,
        dscp,
    })
}

/// The largest ICMPv6 echo payload in a 1500-byte packet (40 bytes of IPv6, 8 of ICMPv6).
const MAX_PAYLOAD6: u16 = 1452;

/// Probes to IPv6 targets (SPEC 34): from the uplink's `address6` to its `next_hop6`, so the
/// uplink needs both (checked once `[lan] ipv6` and the uplinks' IPv6 are
/// known).
pub(super) fn ipv6_probes(
    cx: &Ctx,
    raw: &[RawProbe],
    probes: &[ProbeConfig],
    uplinks: &[UplinkConfig],
    ipv6: Option<&Ipv6Config>,
) -> Result<()> {
    for (r, p) in raw.iter().zip(probes) {
        let IpAddr::V6(target) = p.target else {
            continue;
        };
        let at = |m: String| cx.err(r.target.span(), m);
        if target.is_unspecified()
            || target.is_loopback()
            || target.is_multicast()
            || target.is_unicast_link_local()
        {
            return Err(at(format!(
                "target {target} is not a unicast address beyond the uplink's link"
            )));
        }
        if let (ProbeKind::IcmpEcho { payload_size }, Some(v)) = (p.kind.clone(), &r.payload_size)
            && payload_size > MAX_PAYLOAD6
        {
            return Err(cx.err(
                v.span(),
                format!(
                    "payload_size {payload_size} does not fit one IPv6 packet on a 1500-byte link (at most {MAX_PAYLOAD6})"
                ),
            ));
        }
        let Some(v6) = ipv6 else {
            return Err(at(format!(
                "probe '{}' has an IPv6 target but [lan] ipv6 is not on",
                p.name
            )));
        };
        let u = uplinks.iter().position(|u| u.name == p.uplink);
        let Some(u6) = u.and_then(|u| v6.uplinks.get(u)).and_then(Option::as_ref) else {
            return Err(at(format!(
                "probe '{}' has an IPv6 target but uplink '{}' has no prefix6",
                p.name, p.uplink
            )));
        };
        if u6.address.is_none() {
            return Err(at(format!(
                "probe '{}' has an IPv6 target but uplink '{}' has no address6 to send it from",
                p.name, p.uplink
            )));
        }
    }
    Ok(())
}

pub(super) fn tracks<'a>(
    cx: &Ctx,
    raw: &'a [RawTrack],
    uplinks: &Names,
    probe_names: &Names,
    probes: &[ProbeConfig],
) -> Result<(Vec<TrackConfig>, Names<'a>)> {
    // All names first: a list may name a track defined further down.
    let mut names = Names::new("track");
    for t in raw {
        names.define(cx, &t.name)?;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut members_of: Vec<Vec<usize>> = Vec::with_capacity(raw.len());
    for t in raw {
        let (track, members) = track(cx, t, uplinks, probe_names, probes, &names)?;
        out.push(track);
        members_of.push(members);
    }
    if let Some(cycle) = find_cycle(&members_of) {
        let path: Vec<&str> = cycle
            .iter()
            .filter_map(|&i| out.get(i))
            .map(|t| t.name.as_str())
            .collect();
        // The last track on the path is the one whose list closes the cycle.
        let closing = cycle.len().saturating_sub(2);
        let span = cycle
            .get(closing)
            .and_then(|&i| raw.get(i))
            .and_then(|t| t.list.as_ref())
            .map_or(0..0, |l| l.span());
        return Err(cx.err(span, format!("track list cycle: {}", path.join(" -> "))));
    }
    Ok((out, names))
}

/// One track, and the indices of the tracks it lists (for the cycle check).
pub(super) fn track(
    cx: &Ctx,
    t: &RawTrack,
    uplinks: &Names,
    probe_names: &Names,
    probes: &[ProbeConfig],
    tracks: &Names,
) -> Result<(TrackConfig, Vec<usize>)> {
    let name = t.name.get_ref().clone();
    let mut given: Vec<(&str, Range<usize>)> = [
        t.probe.as_ref().map(|v| ("probe", v.span())),
        t.uplink.as_ref().map(|v| ("uplink", v.span())),
        t.list.as_ref().map(|v| ("list", v.span())),
    ]
    .into_iter()
    .flatten()
    .collect();
    given.sort_by_key(|(_, span)| span.start);
    if let [(first, _), (second, span), ..] = given.as_slice() {
        return Err(cx.err(
            span.clone(),
            format!("track '{name}' has both {first} and {second} (exactly one is allowed)"),
        ));
    }
    let not_with = |key: &str, span: Range<usize>, with: &str| {
        cx.err(span, format!("{key} is only valid with {with}"))
    };
    if let (Some(m), None) = (&t.mode, &t.probe) {
        return Err(not_with("mode", m.span(), "probe"));
    }
    if let (Some(o), None) = (&t.op, &t.list) {
        return Err(not_with("op", o.span(), "list"));
    }
    if let (Some(a), None) = (&t.at_least, &t.list) {
        return Err(not_with("at_least", a.span(), "list"));
    }

    let mut members_idx = Vec::new();
    let mut probe_interval = None;
    let source = match (&t.probe, &t.uplink, &t.list) {
        (Some(p), _, _) => {
            let index = probe_names.index(cx, p)?;
            probe_interval = probes.get(index).map(|p| p.interval);
            TrackSource::Probe {
                name: p.get_ref().clone(),
                mode: t.mode.as_ref().map(|m| *m.get_ref()).unwrap_or_default(),
            }
        }
        (None, Some(u), _) => TrackSource::Carrier {
            uplink: uplinks.resolve(cx, u)?,
        },
        (None, None, Some(list)) => {
            let items = list.get_ref();
            if items.is_empty() {
                return Err(cx.err(list.span(), format!("track '{name}' has an empty list")));
            }
            let mut members = Vec::with_capacity(items.len());
            for m in items {
                let index = tracks.index(cx, m)?;
                if members_idx.contains(&index) {
                    return Err(cx.err(
                        m.span(),
                        format!("track '{}' appears twice in the list", m.get_ref()),
                    ));
                }
                members_idx.push(index);
                members.push(m.get_ref().clone());
            }
            let op = match (t.op.as_ref().map(|o| (*o.get_ref(), o.span())), &t.at_least) {
                (Some((RawListOp::AtLeast, _)), Some(n)) => {
                    ListOp::AtLeast(cx.int(n, "at_least", 1..=members.len() as i64)?)
                }
                (Some((RawListOp::AtLeast, span)), None) => {
                    return Err(cx.err(span, "op = \"at-least\" needs at_least"));
                }
                (_, Some(n)) => {
                    return Err(not_with("at_least", n.span(), "op = \"at-least\""));
                }
                (Some((RawListOp::Any, _)), None) => ListOp::Any,
                (Some((RawListOp::All, _)) | None, None) => ListOp::All,
            };
            TrackSource::List { members, op }
        }
        (None, None, None) => {
            return Err(cx.err(
                t.name.span(),
                format!("track '{name}' needs one of probe, uplink or list"),
            ));
        }
    };

    // SPEC 19: a probe track waits 3 probe intervals before going down, and longer than that
    // before coming back up; other tracks follow their inputs at once.
    let delay = |v: &Option<S<Scalar>>, key, default| {
        v.as_ref().map_or(Ok(default), |v| cx.duration(v, key))
    };
    let default_down = probe_interval.map_or(Duration::ZERO, |i| i.saturating_mul(3));
    let delay_down = delay(&t.delay_down, "delay_down", default_down)?;
    let default_up = if probe_interval.is_some() {
        delay_down.saturating_mul(2)
    } else {
        Duration::ZERO
    };
    let delay_up = delay(&t.delay_up, "delay_up", default_up)?;
    let on_up = t.on_up.as_ref().map(|h| hook(cx, h, "on_up")).transpose()?;
    let on_down = t
        .on_down
        .as_ref()
        .map(|h| hook(cx, h, "on_down"))
        .transpose()?;
    Ok((
        TrackConfig {
            name,
            source,
            delay_down,
            delay_up,
            on_up,
            on_down,
        },
        members_idx,
    ))
}

pub(super) fn hook(cx: &Ctx, h: &RawHook, key: &str) -> Result<Hook> {
    let command = match &h.command {
        Some(c) if c.get_ref().is_empty() => {
            return Err(cx.err(c.span(), format!("{key}.command is empty")));
        }
        Some(c) => Some(PathBuf::from(c.get_ref())),
        None => None,
    };
    Ok(Hook {
        log: h.log.clone(),
        command,
        timeout: cx.duration_or(
            &h.timeout,
            &format!("{key}.timeout"),
            Duration::from_secs(10),
        )?,
    })
}

/// A path of track indices `a -> b -> ... -> a` if the list graph has a cycle. Iterative, so
/// a long chain of lists cannot overflow the stack.
pub(super) fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; edges.len()];
    for start in 0..edges.len() {
        if mark[start] != Mark::New {
            continue;
        }
        mark[start] = Mark::OnPath;
        // (node, index of its next edge to follow)
        let mut path = vec![(start, 0usize)];
        while let Some((node, next)) = path.last_mut() {
            let node = *node;
            let Some(&child) = edges[node].get(*next) else {
                mark[node] = Mark::Done;
                path.pop();
                continue;
            };
            *next += 1;
            match mark[child] {
                Mark::New => {
                    mark[child] = Mark::OnPath;
                    path.push((child, 0));
                }
                Mark::OnPath => {
                    let from = path.iter().position(|&(n, _)| n == child).unwrap_or(0);
                    let mut cycle: Vec<usize> = path[from..].iter().map(|&(n, _)| n).collect();
                    cycle.push(child);
                    return Some(cycle);
                }
                Mark::Done => {}
            }
        }
    }
    None
}
