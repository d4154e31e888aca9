//! From the raw document to a typed `Config`: defaults, every semantic check, and the
//! `FILE:LINE: message` errors.
//!
//! Here: the walk over the sections in dependency order (`parse`), the span-to-line context and
//! name tables every section uses, and the small sections (`[router]`, `[lan]`, `[nat]`,
//! `[failover]`). `interfaces` checks uplinks, routes and policies; `health` checks probes,
//! tracks and hooks; `vrrp` checks the VRRP groups; `forwards` checks port forwards; `ipv6` the
//! IPv6 keys of `[lan]` and the uplinks, `npt6` the NPTv6 prefix.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{
    RawConfig, RawFailback, RawFailover, RawLan, RawLimits, RawNat, RawRouter, Scalar,
};
use super::values;
use super::{
    AddrRange, Config, ConfigError, Failback, FailoverConfig, LanConfig, LimitsConfig, NatConfig,
    RouterConfig,
};
use crate::dns::tcp::TCP_PORTS;
use crate::prefix::Ipv4Prefix;
use crate::probe::PROBE_PORTS;

mod forwards;
mod health;
mod interfaces;
mod ipv6;
mod npt6;
mod routes6;
mod services;
mod vrrp;

use forwards::{check_relay_ports, forwards};
use health::{ipv6_probes, probes, tracks};
use interfaces::{policies, routes, uplinks};
use services::{dhcp_server, dns};

type S<T> = Spanned<T>;
type Result<T> = std::result::Result<T, ConfigError>;

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
    let (routes, routes6) = routes(&cx, &raw.route, &uplink_names, &uplinks, &lan, &track_names)?;
    let (policies, policies6) = policies(&cx, &raw.policy, &uplink_names)?;
    let failover = failover(&cx, &raw.failover)?;
    let vrrp = vrrp::groups(&cx, &raw.vrrp, &lan, &track_names)?;
    let dns = match &raw.dns {
        Some(d) => dns(&cx, d)?,
        None => None,
    };
    if dns.is_some() && nat.port_min <= crate::dns::PORT {
        let span = raw.nat.port_min.as_ref().map_or(0..0, |p| p.span());
        return Err(cx.err(
            span,
            "port_min must be above 53 while [dns] is enabled (the forwarder's queries leave from port 53)",
        ));
    }
    let dhcp_server = match &raw.dhcp_server {
        Some(d) => Some(dhcp_server(&cx, d, &lan, dns.is_some())?),
        None => None,
    };
    let forwards = forwards(
        &cx,
        &raw.forward,
        &uplink_names,
        &uplinks,
        &lan,
        &nat,
        &probes,
    )?;
    if dns.is_some() {
        check_relay_ports(&cx, &raw.forward, &forwards)?;
    }
    let ipv6 = ipv6::ipv6(&cx, &raw.lan, &raw.uplink, &uplinks)?;
    ipv6_probes(&cx, &raw.probe, &probes, &uplinks, ipv6.as_ref())?;
    routes6::check(&cx, &raw.route, &routes6, &uplinks, ipv6.as_ref())?;
    routes6::check_policies(&cx, &raw.policy, &policies6, &uplinks, ipv6.as_ref())?;
    let limits = limits(&cx, &raw.limits)?;
    Ok(Config {
        router,
        lan,
        uplinks,
        nat,
        routes,
        routes6,
        policies,
        policies6,
        probes,
        tracks,
        failover,
        vrrp,
        dhcp_server,
        dns,
        forwards,
        ipv6,
        limits,
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

    /// "192.168.0.100-192.168.0.199" or one address.
    fn range(&self, v: &S<String>, key: &str) -> Result<AddrRange> {
        let text = v.get_ref();
        let (a, b) = text.split_once('-').unwrap_or((text, text));
        let parse = |s: &str| s.trim().parse::<Ipv4Addr>().ok();
        match (parse(a), parse(b)) {
            (Some(first), Some(last)) if first <= last => Ok(AddrRange { first, last }),
            (Some(first), Some(last)) => {
                Err(self.err(v.span(), format!("{key}: {first} comes after {last}")))
            }
            _ => Err(self.err(
                v.span(),
                format!(
                    "{key}: '{}' is not an address range (expected a.b.c.d-e.f.g.h or one address)",
                    text.escape_debug()
                ),
            )),
        }
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
        None => PathBuf::from(crate::control::socket::DEFAULT_SOCKET),
    };
    let control_group = match &r.control_group {
        Some(g) => {
            values::name(g.get_ref())
                .map_err(|m| cx.err(g.span(), format!("control_group: {m}")))?;
            Some(g.get_ref().clone())
        }
        None => None,
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
        control_group,
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

fn nat(cx: &Ctx, r: &RawNat) -> Result<NatConfig> {
    let max_entries = match &r.max_entries {
        Some(m) => cx.int(m, "max_entries", 1..=i64::from(u32::MAX))?,
        None => 262_144,
    };
    let max_sessions_per_host = match &r.max_sessions_per_host {
        Some(m) => cx.int(m, "max_sessions_per_host", 1..=i64::from(u32::MAX))?,
        None => (max_entries / 4).max(1),
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
    // The DNS relay's ports lie just below the probes': together one reserved range.
    let reserved = *TCP_PORTS.start()..=*PROBE_PORTS.end();
    if reserved.contains(&port_min) && reserved.contains(&port_max) {
        let span = r
            .port_min
            .as_ref()
            .or(r.port_max.as_ref())
            .map_or(0..0, |s| s.span());
        return Err(cx.err(
            span,
            format!(
                "port_min {port_min} to port_max {port_max} leaves no port for NAT: {}-{} are reserved for the DNS relay and probes",
                reserved.start(),
                reserved.end()
            ),
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
        max_sessions_per_host,
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

fn limits(cx: &Ctx, r: &RawLimits) -> Result<LimitsConfig> {
    let d = LimitsConfig::default();
    let rate = |v: &Option<S<i64>>, key: &str, default: u32| match v {
        Some(v) => cx.int(v, key, 1..=10_000_000),
        None => Ok(default),
    };
    // At least one frame of the largest size a worker receives (64 KiB), at most 1 GiB.
    let bytes = |v: &Option<S<i64>>, key: &str, default: usize| match v {
        Some(v) => cx.int(v, key, 65_536..=1 << 30),
        None => Ok(default),
    };
    let count = |v: &Option<S<i64>>, key: &str, default: usize| match v {
        Some(v) => cx.int(v, key, 1..=1 << 20),
        None => Ok(default),
    };
    Ok(LimitsConfig {
        arp_per_second: rate(&r.arp_per_second, "arp_per_second", d.arp_per_second)?,
        probe_replies_per_second: rate(
            &r.probe_replies_per_second,
            "probe_replies_per_second",
            d.probe_replies_per_second,
        )?,
        punts_per_second: rate(&r.punts_per_second, "punts_per_second", d.punts_per_second)?,
        arp_queue_bytes: bytes(&r.arp_queue_bytes, "arp_queue_bytes", d.arp_queue_bytes)?,
        probe_queue_bytes: bytes(
            &r.probe_queue_bytes,
            "probe_queue_bytes",
            d.probe_queue_bytes,
        )?,
        punt_queue_bytes: bytes(&r.punt_queue_bytes, "punt_queue_bytes", d.punt_queue_bytes)?,
        lan_neighbours: count(&r.lan_neighbours, "lan_neighbours", d.lan_neighbours)?,
        uplink_neighbours: count(
            &r.uplink_neighbours,
            "uplink_neighbours",
            d.uplink_neighbours,
        )?,
        held_bytes_per_neighbour: bytes(
            &r.held_bytes_per_neighbour,
            "held_bytes_per_neighbour",
            d.held_bytes_per_neighbour,
        )?,
    })
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
