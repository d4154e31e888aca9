//! From the raw document to a typed `Config`: defaults, every semantic check, and the
//! `FILE:LINE: message` errors.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{
    RawConfig, RawFailback, RawFailover, RawHook, RawLan, RawListOp, RawNat, RawPolicy, RawProbe,
    RawProbeType, RawRoute, RawRouter, RawTrack, RawUplink, Scalar,
};
use super::values::{self, PROTO_TCP, PROTO_UDP};
use super::{
    Config, ConfigError, Failback, FailoverConfig, Hook, LanConfig, ListOp, NatConfig,
    PolicyConfig, ProbeConfig, ProbeKind, RouteConfig, RouterConfig, TrackConfig, TrackSource,
    UplinkConfig,
};
use crate::prefix::Ipv4Prefix;

type S<T> = Spanned<T>;
type Result<T> = std::result::Result<T, ConfigError>;

const DEFAULT_CONTROL_SOCKET: &str = "/run/mhrouter/mhrouter.sock";
/// A TAP device has at most 256 queues, one per worker.
const MAX_WORKERS: i64 = 256;
/// Uplinks are numbered by `UplinkId(u8)`.
const MAX_UPLINKS: usize = 256;
const MTU_RANGE: RangeInclusive<i64> = 576..=65535;

pub(super) fn parse(text: &str, origin: &str, default_workers: usize) -> Result<Config> {
    let cx = Ctx { text, origin };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        // toml's messages may span several lines ("invalid inline table\nexpected `}`").
        let message = e.message().trim().lines().collect::<Vec<_>>().join(", ");
        cx.err(e.span().unwrap_or(0..0), message)
    })?;
    let router = router(&cx, &raw.router, default_workers)?;
    let lan = lan(&cx, &raw.lan)?;
    let (uplinks, uplink_names) = uplinks(&cx, &raw.uplink, &lan)?;
    let nat = nat(&cx, &raw.nat)?;
    let (probes, probe_names) = probes(&cx, &raw.probe, &uplink_names)?;
    let (tracks, track_names) = tracks(&cx, &raw.track, &uplink_names, &probe_names, &probes)?;
    let routes = routes(&cx, &raw.route, &uplink_names, &uplinks, &track_names)?;
    let policies = policies(&cx, &raw.policy, &uplink_names)?;
    let failover = failover(&cx, &raw.failover)?;
    Ok(Config {
        router,
        lan,
        uplinks,
        nat,
        routes,
        policies,
        probes,
        tracks,
        failover,
    })
}

/// The document being validated, to turn spans into `origin:line:` errors.
struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            line: self.line(span.start),
            message: message.into(),
        }
    }

    fn line(&self, offset: usize) -> usize {
        self.text
            .as_bytes()
            .iter()
            .take(offset)
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn int<T: TryFrom<i64>>(&self, v: &S<i64>, key: &str, range: RangeInclusive<i64>) -> Result<T> {
        let n = *v.get_ref();
        match T::try_from(n) {
            Ok(t) if range.contains(&n) => Ok(t),
            _ => Err(self.err(
                v.span(),
                format!(
                    "{key} {n} is out of range {}..={}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    fn duration(&self, v: &S<Scalar>, key: &str) -> Result<Duration> {
        values::duration(v.get_ref()).map_err(|m| self.err(v.span(), format!("{key}: {m}")))
    }

    fn positive_duration(&self, v: &S<Scalar>, key: &str) -> Result<Duration> {
        let d = self.duration(v, key)?;
        if d.is_zero() {
            return Err(self.err(v.span(), format!("{key} must be longer than 0")));
        }
        Ok(d)
    }

    fn duration_or(&self, v: &Option<S<Scalar>>, key: &str, default: Duration) -> Result<Duration> {
        v.as_ref()
            .map_or(Ok(default), |v| self.positive_duration(v, key))
    }

    fn addr(&self, v: &S<String>, key: &str) -> Result<Ipv4Addr> {
        v.get_ref().parse().map_err(|_| {
            let s = v.get_ref().escape_debug();
            self.err(v.span(), format!("{key}: '{s}' is not an IPv4 address"))
        })
    }

    /// An address with a prefix length ("192.168.0.1/24").
    fn prefix(&self, v: &S<String>, key: &str) -> Result<Ipv4Prefix> {
        v.get_ref()
            .parse()
            .map_err(|e| self.err(v.span(), format!("{key}: {e}")))
    }

    /// A prefix proper: no host bits set.
    fn network(&self, v: &S<String>, key: &str) -> Result<Ipv4Prefix> {
        let p = self.prefix(v, key)?;
        if p.has_host_bits() {
            return Err(self.err(
                v.span(),
                format!(
                    "{key} {p} has host bits set (did you mean {}?)",
                    p.network()
                ),
            ));
        }
        Ok(p)
    }

    fn ifname(&self, v: &S<String>, key: &str) -> Result<String> {
        values::ifname(v.get_ref()).map_err(|m| self.err(v.span(), format!("{key}: {m}")))?;
        Ok(v.get_ref().clone())
    }
}

/// The names of one kind of object, to catch duplicates and resolve references.
struct Names<'a> {
    kind: &'static str,
    /// name -> (index, line of its definition)
    map: HashMap<&'a str, (usize, usize)>,
}

impl<'a> Names<'a> {
    fn new(kind: &'static str) -> Self {
        Names {
            kind,
            map: HashMap::new(),
        }
    }

    fn define(&mut self, cx: &Ctx, name: &'a S<String>) -> Result<String> {
        let kind = self.kind;
        values::name(name.get_ref())
            .map_err(|m| cx.err(name.span(), format!("{kind} name: {m}")))?;
        let line = cx.line(name.span().start);
        let index = self.map.len();
        match self.map.entry(name.get_ref()) {
            Entry::Occupied(first) => Err(cx.err(
                name.span(),
                format!(
                    "{kind} '{}' is defined twice (first at line {})",
                    name.get_ref(),
                    first.get().1
                ),
            )),
            Entry::Vacant(slot) => {
                slot.insert((index, line));
                Ok(name.get_ref().clone())
            }
        }
    }

    fn index(&self, cx: &Ctx, name: &S<String>) -> Result<usize> {
        self.map
            .get(name.get_ref().as_str())
            .map(|&(index, _)| index)
            .ok_or_else(|| {
                let n = name.get_ref().escape_debug();
                cx.err(name.span(), format!("{} '{n}' is not defined", self.kind))
            })
    }

    /// Resolves a reference and returns the name itself.
    fn resolve(&self, cx: &Ctx, name: &S<String>) -> Result<String> {
        self.index(cx, name)?;
        Ok(name.get_ref().clone())
    }
}

fn router(cx: &Ctx, r: &RawRouter, default_workers: usize) -> Result<RouterConfig> {
    let workers = match &r.workers {
        Some(w) => cx.int(w, "workers", 1..=MAX_WORKERS)?,
        None => default_workers.clamp(1, MAX_WORKERS as usize),
    };
    let control_socket = match &r.control_socket {
        Some(s) if s.get_ref().is_empty() => {
            return Err(cx.err(s.span(), "control_socket is empty"));
        }
        Some(s) => PathBuf::from(s.get_ref()),
        None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
    };
    let metrics_listen = match &r.metrics_listen {
        Some(s) => Some(s.get_ref().parse::<SocketAddr>().map_err(|_| {
            let v = s.get_ref().escape_debug();
            cx.err(
                s.span(),
                format!("metrics_listen: '{v}' is not a socket address (expected ip:port)"),
            )
        })?),
        None => None,
    };
    Ok(RouterConfig {
        workers,
        control_socket,
        metrics_listen,
        offload: r.offload.unwrap_or(true),
    })
}

fn lan(cx: &Ctx, r: &RawLan) -> Result<LanConfig> {
    let tap = match &r.tap {
        Some(t) => cx.ifname(t, "tap")?,
        None => "mhr-lan".to_string(),
    };
    let bridge = match &r.bridge {
        Some(b) if *b.get_ref() == tap => {
            return Err(cx.err(b.span(), format!("bridge '{tap}' is the TAP device itself")));
        }
        Some(b) => Some(cx.ifname(b, "bridge")?),
        None => None,
    };
    let address = cx.prefix(&r.address, "address")?;
    let span = r.address.span();
    if address.prefix_len() > 30 {
        return Err(cx.err(
            span,
            format!(
                "LAN prefix /{} is too long (at most /30)",
                address.prefix_len()
            ),
        ));
    }
    let net = address.network();
    if address.addr() == net.addr() {
        return Err(cx.err(
            span,
            format!("address {} is the network address of {net}", address.addr()),
        ));
    }
    if address.addr() == address.broadcast() {
        return Err(cx.err(
            span,
            format!(
                "address {} is the broadcast address of {net}",
                address.addr()
            ),
        ));
    }
    let mac = match &r.mac {
        Some(m) => {
            Some(values::mac(m.get_ref()).map_err(|e| cx.err(m.span(), format!("mac: {e}")))?)
        }
        None => None,
    };
    let mtu = match &r.mtu {
        Some(m) => cx.int(m, "mtu", MTU_RANGE)?,
        None => 1500,
    };
    Ok(LanConfig {
        tap,
        bridge,
        address,
        mac,
        mtu,
    })
}

fn uplinks<'a>(
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
fn check_next_hop(cx: &Ctx, v: &S<String>, hop: Ipv4Addr, uplink: &Ipv4Prefix) -> Result<()> {
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

fn nat(cx: &Ctx, r: &RawNat) -> Result<NatConfig> {
    let max_entries = match &r.max_entries {
        Some(m) => cx.int(m, "max_entries", 1..=i64::from(u32::MAX))?,
        None => 262_144,
    };
    let port = |v: &Option<S<i64>>, key, default| match v {
        Some(p) => cx.int(p, key, 1..=65535),
        None => Ok(default),
    };
    let port_min: u16 = port(&r.port_min, "port_min", 1024)?;
    let port_max: u16 = port(&r.port_max, "port_max", 65535)?;
    if port_min > port_max {
        let span = r
            .port_max
            .as_ref()
            .or(r.port_min.as_ref())
            .map_or(0..0, |s| s.span());
        return Err(cx.err(
            span,
            format!("port_min {port_min} is larger than port_max {port_max}"),
        ));
    }
    let secs = Duration::from_secs;
    // The NAT table keeps session times in 32-bit milliseconds (small entries): 20 days at most.
    let timeout = |v: &Option<S<Scalar>>, key: &str, default: Duration| {
        let d = cx.duration_or(v, key, default)?;
        match v {
            Some(v) if d > secs(20 * 24 * 3600) => {
                Err(cx.err(v.span(), format!("{key}: at most 20 days (480h)")))
            }
            _ => Ok(d),
        }
    };
    Ok(NatConfig {
        max_entries,
        port_min,
        port_max,
        tcp_syn: timeout(&r.tcp_syn, "tcp_syn", secs(30))?,
        tcp_established: timeout(&r.tcp_established, "tcp_established", secs(7200))?,
        tcp_closing: timeout(&r.tcp_closing, "tcp_closing", secs(10))?,
        udp: timeout(&r.udp, "udp", secs(300))?,
        udp_unreplied: timeout(&r.udp_unreplied, "udp_unreplied", secs(30))?,
        icmp: timeout(&r.icmp, "icmp", secs(60))?,
    })
}

fn probes<'a>(
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

fn probe<'a>(
    cx: &Ctx,
    p: &'a RawProbe,
    names: &mut Names<'a>,
    uplinks: &Names,
) -> Result<ProbeConfig> {
    let name = names.define(cx, &p.name)?;
    let uplink = uplinks.resolve(cx, &p.uplink)?;
    let target = cx.addr(&p.target, "target")?;
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

fn tracks<'a>(
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
fn track(
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

fn hook(cx: &Ctx, h: &RawHook, key: &str) -> Result<Hook> {
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
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
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

fn routes(
    cx: &Ctx,
    raw: &[RawRoute],
    uplink_names: &Names,
    uplinks: &[UplinkConfig],
    tracks: &Names,
) -> Result<Vec<RouteConfig>> {
    let mut names = Names::new("route");
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let name = names.define(cx, &r.name)?;
        let prefix = cx.network(&r.prefix, "prefix")?;
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
        let small = |v: &Option<S<i64>>, key| v.as_ref().map_or(Ok(1), |v| cx.int(v, key, 1..=255));
        out.push(RouteConfig {
            name,
            prefix,
            uplink: uplink.name.clone(),
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

fn policies(cx: &Ctx, raw: &[RawPolicy], uplinks: &Names) -> Result<Vec<PolicyConfig>> {
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

fn failover(cx: &Ctx, r: &RawFailover) -> Result<FailoverConfig> {
    let failback = match (r.failback, &r.failback_grace) {
        (Some(RawFailback::Move), grace) => Failback::Move {
            grace: match grace {
                Some(g) => cx.duration(g, "failback_grace")?,
                None => Duration::from_secs(30),
            },
        },
        (_, Some(g)) => {
            return Err(cx.err(
                g.span(),
                "failback_grace is only valid with failback = \"move\"",
            ));
        }
        (Some(RawFailback::Stay) | None, None) => Failback::Stay,
    };
    Ok(FailoverConfig {
        reset_tcp: r.reset_tcp.unwrap_or(true),
        failback,
    })
}
