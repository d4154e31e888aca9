//! What the control plane derives from the configuration, at start and on every reload: the
//! tracks' inputs, the router's addresses, the next hops to keep resolved, what a reload may
//! not change, and the running configuration: the file's with the uplinks' DHCP leases and
//! delegated prefixes applied. Pure.

use std::net::Ipv4Addr;

use super::arp::NextHop;
use super::{Addressing, IfAddr};
use crate::config::{Config, RouteConfig, TrackSource};
use crate::dhcp::client;
use crate::prefix6::Ipv6Prefix;
use crate::track::{TrackDef, TrackInput};
use crate::wire::ethernet::MacAddr;

/// The tracks' definitions, names resolved to indices.
pub fn track_defs(cfg: &Config) -> Vec<TrackDef> {
    cfg.tracks
        .iter()
        .map(|t| TrackDef {
            name: t.name.clone(),
            input: match &t.source {
                TrackSource::Probe { name, mode } => TrackInput::Probe {
                    probe: cfg.probe_index(name).unwrap_or(usize::MAX),
                    mode: *mode,
                },
                TrackSource::Carrier { uplink } => TrackInput::Carrier {
                    uplink: cfg.uplink_index(uplink).unwrap_or(usize::MAX),
                },
                TrackSource::List { members, op } => TrackInput::List {
                    members: members.iter().filter_map(|m| cfg.track_index(m)).collect(),
                    op: *op,
                },
            },
            delay_down: t.delay_down,
            delay_up: t.delay_up,
        })
        .collect()
}

/// What a reload cannot change without a restart (sockets, threads, the TAP, the NAT table).
pub fn restart_needed(old: &Config, new: &Config) -> Option<String> {
    let why =
        if old.router.workers != new.router.workers || old.router.offload != new.router.offload {
            "router.workers and router.offload"
        } else if old.router.control_socket != new.router.control_socket
            || old.router.metrics_listen != new.router.metrics_listen
        {
            "router.control_socket and router.metrics_listen"
        } else if old.lan.tap != new.lan.tap
            || old.lan.bridge != new.lan.bridge
            || old.lan.address != new.lan.address
            || old.lan.mac != new.lan.mac
        {
            "the LAN's tap, bridge, address and mac"
        } else if old.uplinks.len() != new.uplinks.len()
            || old
                .uplinks
                .iter()
                .zip(&new.uplinks)
                .any(|(a, b)| a.name != b.name || a.interface != b.interface)
        {
            "the set of uplinks (names, interfaces, order)"
        } else if old.nat != new.nat || old.forwards != new.forwards {
            "the [nat] table settings and the [[forward]]s (they reserve NAT ports)"
        } else if old.vrrp != new.vrrp {
            "the [[vrrp]] groups"
        } else if old.dhcp_server != new.dhcp_server {
            "[dhcp_server]"
        } else if old.limits != new.limits {
            "the [limits] settings"
        } else if old.ipv6 != new.ipv6 {
            "IPv6 ([lan] ipv6 and npt6_prefix, the uplinks' prefix6, address6, next_hop6)"
        } else {
            return None;
        };
    Some(format!("changing {why} needs a restart"))
}

/// The router's addresses and MACs, from the configuration and the NICs.
pub fn addressing(cfg: &Config, lan_mac: MacAddr, uplink_macs: &[MacAddr]) -> Addressing {
    Addressing {
        lan: IfAddr {
            prefix: cfg.lan.address,
            mac: lan_mac,
        },
        uplinks: cfg
            .uplinks
            .iter()
            .zip(uplink_macs)
            .map(|(u, &mac)| IfAddr {
                prefix: u.address,
                mac,
            })
            .collect(),
    }
}

/// Every uplink's next hop, with the uplink's carrier.
pub fn next_hops(cfg: &Config, carrier: &[bool]) -> Vec<NextHop> {
    cfg.uplinks
        .iter()
        .zip(carrier)
        .map(|(u, &carrier)| NextHop {
            addr: u.next_hop,
            // A DHCP uplink without a lease has no next hop to resolve.
            carrier: carrier && !u.next_hop.is_unspecified(),
        })
        .collect()
}

/// `base` with each DHCP uplink's lease applied (SPEC 28): its address and next hop, and the
/// next hop of the routes through it (which take theirs from the lease); the lease's MTU
/// (option 26) unless one is configured; the routes of option 121 (RFC 3442) at the uplink's
/// DHCP distance, but those whose gateway is not on the leased subnet (0.0.0.0, "on-link", among
/// them: a route here needs a next hop). Without a lease: no address.
pub fn with_leases(base: &Config, leases: &[Option<client::Lease>]) -> Config {
    let mut cfg = base.clone();
    for (u, lease) in cfg.uplinks.iter_mut().zip(leases) {
        let Some(dhcp) = &u.dhcp else {
            continue;
        };
        if let Some(l) = lease {
            u.address = l.address;
            u.next_hop = l.router.unwrap_or(Ipv4Addr::UNSPECIFIED);
            if u.mtu.is_none() {
                u.mtu = l.mtu.map(u32::from).filter(|m| LEASE_MTU.contains(m));
            }
        }
        for r in cfg.routes.iter_mut().filter(|r| r.uplink == u.name) {
            r.next_hop = u.next_hop;
        }
        let Some(l) = lease else { continue };
        for route in &l.routes {
            if !l.address.contains(route.next_hop) || route.next_hop == l.address.addr() {
                continue;
            }
            cfg.routes.push(RouteConfig {
                // ':' cannot appear in a configured name, so this one never clashes.
                name: format!("dhcp:{}:{}", u.name, route.prefix),
                prefix: route.prefix,
                uplink: u.name.clone(),
                next_hop: route.next_hop,
                distance: dhcp.distance,
                weight: 1,
                track: None,
            });
        }
    }
    cfg
}

/// `cfg` with each `dhcpv6-pd` uplink's delegated prefix (by uplink index) as its provider
/// prefix, the LAN's /64 numbered by its `subnet_id`. A delegation without that /64, or
/// overlapping another uplink's prefix or the NPTv6 prefix, is not used
/// (`unusable_delegations` names it).
pub fn with_delegations(cfg: Config, delegated: &[Option<Ipv6Prefix>]) -> Config {
    let mut cfg = cfg;
    let Some(v6) = &mut cfg.ipv6 else {
        return cfg;
    };
    for u in 0..v6.uplinks.len() {
        let Some(pd) = v6.uplinks[u].as_ref().and_then(|c| c.pd) else {
            continue;
        };
        let provider = delegated
            .get(u)
            .copied()
            .flatten()
            .and_then(|p| pd.provider(p))
            .filter(|p| {
                !v6.npt6_prefix.is_some_and(|n| n.overlaps(&p.prefix))
                    && !v6.uplinks.iter().enumerate().any(|(o, c)| {
                        o != u
                            && c.as_ref()
                                .and_then(|c| c.provider)
                                .is_some_and(|c| c.prefix.overlaps(&p.prefix))
                    })
            });
        if let Some(c) = &mut v6.uplinks[u] {
            c.provider = provider;
        }
    }
    cfg
}

/// The delegations `with_delegations` could not use, by uplink index.
pub fn unusable_delegations(
    cfg: &Config,
    delegated: &[Option<Ipv6Prefix>],
) -> Vec<(usize, Ipv6Prefix)> {
    let Some(v6) = &cfg.ipv6 else {
        return Vec::new();
    };
    v6.uplinks
        .iter()
        .zip(delegated)
        .enumerate()
        .filter_map(|(u, (c, d))| {
            let (c, d) = (c.as_ref()?, (*d)?);
            (c.pd.is_some() && c.provider.is_none_or(|p| p.prefix != d)).then_some((u, d))
        })
        .collect()
}

/// MTUs a lease may set (RFC 2132 allows down to 68; IPv4 hosts must take 576).
const LEASE_MTU: std::ops::RangeInclusive<u32> = 576..=65535;

#[cfg(test)]
mod tests;
