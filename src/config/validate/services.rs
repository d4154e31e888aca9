//! `[dhcp_server]` and `[dns]`: what the router serves on the LAN (SPEC 27, 30).

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use super::super::raw::{RawClientRoute, RawDhcpServer, RawDns};
use super::super::values;
use super::super::{AddrRange, ClientRoute, DhcpServerConfig, DnsConfig, LanConfig, StaticLease};
use super::{Ctx, MTU_RANGE, Result, S};
use crate::wire::ethernet::MacAddr;

/// Most addresses the DHCP pools may hold together (the engine scans them).
const MAX_POOL: u64 = 65_536;

pub(super) fn dhcp_server(
    cx: &Ctx,
    r: &RawDhcpServer,
    lan: &LanConfig,
    dns_enabled: bool,
) -> Result<DhcpServerConfig> {
    let net = lan.address.network();
    let in_lan = |v: &S<String>, ip: Ipv4Addr, key: &str| -> Result<()> {
        if !net.contains(ip) || ip == net.addr() || ip == lan.address.broadcast() {
            return Err(cx.err(
                v.span(),
                format!("{key} {ip} is not a host address of the LAN prefix {net}"),
            ));
        }
        Ok(())
    };
    if r.pool.get_ref().is_empty() {
        return Err(cx.err(r.pool.span(), "pool is empty"));
    }
    let mut pools: Vec<AddrRange> = Vec::new();
    for v in r.pool.get_ref() {
        let range = cx.range(v, "pool")?;
        in_lan(v, range.first, "pool")?;
        in_lan(v, range.last, "pool")?;
        if range.contains(lan.address.addr()) {
            return Err(cx.err(
                v.span(),
                format!(
                    "pool {} holds the router's LAN address",
                    v.get_ref().escape_debug()
                ),
            ));
        }
        if pools
            .iter()
            .any(|p| p.contains(range.first) || range.contains(p.first))
        {
            return Err(cx.err(v.span(), "pool ranges overlap"));
        }
        pools.push(range);
    }
    if pools.iter().map(AddrRange::size).sum::<u64>() > MAX_POOL {
        return Err(cx.err(
            r.pool.span(),
            format!("pools hold more than {MAX_POOL} addresses"),
        ));
    }
    let exclude = r
        .exclude
        .iter()
        .flatten()
        .map(|v| cx.range(v, "exclude"))
        .collect::<Result<Vec<_>>>()?;
    let router = match &r.router {
        Some(v) => {
            let ip = cx.addr(v, "router")?;
            in_lan(v, ip, "router")?;
            ip
        }
        None => lan.address.addr(),
    };
    let dns_servers = match &r.dns_servers {
        Some(list) => resolvers(cx, list.get_ref(), "dns_servers")?,
        None if dns_enabled => vec![lan.address.addr()],
        None => {
            let span = r.pool.span();
            return Err(cx.err(
                span,
                "dns_servers is required when [dns] is not enabled (clients would be told to ask the router)",
            ));
        }
    };
    let domain = match &r.domain {
        Some(d) => {
            values::dns_name(d.get_ref()).map_err(|m| cx.err(d.span(), format!("domain: {m}")))?;
            Some(d.get_ref().trim_end_matches('.').to_string())
        }
        None => None,
    };
    let lease_time = cx.duration_or(&r.lease_time, "lease_time", Duration::from_secs(12 * 3600))?;
    if let Some(v) = &r.lease_time
        && !(Duration::from_secs(60)..=Duration::from_secs(u64::from(u32::MAX)))
            .contains(&lease_time)
    {
        return Err(cx.err(v.span(), "lease_time must be between 60s and 136 years"));
    }
    let mtu = match &r.mtu {
        Some(m) => Some(cx.int(m, "mtu", MTU_RANGE)?),
        None => None,
    };
    let routes = r
        .routes
        .iter()
        .flatten()
        .map(|rt: &RawClientRoute| {
            let prefix = cx.network(&rt.prefix, "routes prefix")?;
            let next_hop = cx.addr(&rt.next_hop, "routes next_hop")?;
            in_lan(&rt.next_hop, next_hop, "routes next_hop")?;
            Ok(ClientRoute { prefix, next_hop })
        })
        .collect::<Result<Vec<_>>>()?;
    let lease_file = match &r.lease_file {
        Some(f) if f.get_ref().is_empty() => return Err(cx.err(f.span(), "lease_file is empty")),
        Some(f) => Some(PathBuf::from(f.get_ref())),
        None => None,
    };
    let max_leases = match &r.max_leases {
        Some(v) => cx.int(v, "max_leases", 1..=MAX_POOL as i64)?,
        None => 1024,
    };
    let max_per_mac = match &r.max_per_mac {
        Some(v) => cx.int(v, "max_per_mac", 1..=64)?,
        None => 2,
    };
    let mut static_leases: Vec<StaticLease> = Vec::new();
    for s in &r.static_leases {
        let mac = MacAddr(
            values::mac(s.mac.get_ref()).map_err(|m| cx.err(s.mac.span(), format!("mac: {m}")))?,
        );
        let address = cx.addr(&s.address, "address")?;
        in_lan(&s.address, address, "address")?;
        if address == lan.address.addr() {
            return Err(cx.err(s.address.span(), "address is the router's LAN address"));
        }
        if let Some(o) = static_leases.iter().find(|o| o.mac == mac) {
            return Err(cx.err(
                s.mac.span(),
                format!("mac {mac} already has a static lease ({})", o.address),
            ));
        }
        if static_leases.iter().any(|o| o.address == address) {
            return Err(cx.err(
                s.address.span(),
                format!("address {address} is already a static lease"),
            ));
        }
        let hostname = match &s.hostname {
            Some(h) => {
                values::name(h.get_ref())
                    .map_err(|m| cx.err(h.span(), format!("hostname: {m}")))?;
                Some(h.get_ref().clone())
            }
            None => None,
        };
        static_leases.push(StaticLease {
            mac,
            address,
            hostname,
        });
    }
    Ok(DhcpServerConfig {
        pools,
        exclude,
        static_leases,
        router,
        dns_servers,
        domain,
        lease_time,
        mtu,
        routes,
        lease_file,
        max_leases,
        max_per_mac,
    })
}

/// Resolver addresses: unicast, at least one.
pub(super) fn resolvers(cx: &Ctx, list: &[S<String>], key: &str) -> Result<Vec<Ipv4Addr>> {
    list.iter()
        .map(|v| {
            let ip = cx.addr(v, key)?;
            if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
                return Err(cx.err(v.span(), format!("{key}: {ip} is not a unicast address")));
            }
            Ok(ip)
        })
        .collect()
}

/// `[dns]`; None when `enable = false`.
pub(super) fn dns(cx: &Ctx, r: &RawDns) -> Result<Option<DnsConfig>> {
    if r.enable == Some(false) {
        return Ok(None);
    }
    fn int<T: TryFrom<i64>>(
        cx: &Ctx,
        v: &Option<S<i64>>,
        key: &str,
        range: RangeInclusive<i64>,
        default: T,
    ) -> Result<T> {
        v.as_ref().map_or(Ok(default), |v| cx.int(v, key, range))
    }
    let timeout = cx.duration_or(&r.timeout, "timeout", Duration::from_secs(2))?;
    if let Some(v) = &r.timeout
        && timeout > Duration::from_secs(30)
    {
        return Err(cx.err(v.span(), "timeout: at most 30s"));
    }
    Ok(Some(DnsConfig {
        cache_entries: int(cx, &r.cache_entries, "cache_entries", 0..=1_000_000, 1024)?,
        cache_bytes: int(cx, &r.cache_bytes, "cache_bytes", 0..=(256 << 20), 1 << 20)?,
        rate: int(cx, &r.rate, "rate", 1..=1_000_000, 20)?,
        burst: int(cx, &r.burst, "burst", 1..=1_000_000, 100)?,
        timeout,
    }))
}
