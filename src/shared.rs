//! What the threads share: the published forwarding state (the route snapshot and, separately,
//! the neighbours, so an ARP change does not rebuild the route table), the NAT and fragment
//! tables, the punt queues and the probe health table; and how the control thread builds the
//! snapshot from the configuration.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::clock::Instant;
use crate::config::{Config, PolicyFallback, ProbeKind, TrackSource};
use crate::control::UplinkIo;
use crate::io::poll::Waker;
use crate::nat::npt6::Npt6;
use crate::nat::{FragTable, NatTable};
use crate::probe::probe_port;
use crate::probe::schedule::ProbeStatus;
use crate::route::egress6::Policy6;
use crate::route::source6::UplinkPrefix;
use crate::route::{self, Health, RouteTable};
use crate::snapshot::{Ipv6State, LanState, Neighbours, ProbeFlow, Snapshot, UplinkState};
use crate::wire::ethernet::MacAddr;
use crate::wire::ipv4::proto;
use crate::wire::ipv6::next_header;
use crate::wire::ndisc;
use crate::{Iface, UplinkId};

/// A frame for the control plane, with its virtio_net_hdr.
pub struct Punt {
    pub ingress: Iface,
    /// When the worker took it: probe round trips are timed from this, not from when the
    /// probe thread gets to it.
    pub received: Instant,
    /// Set when the frame is ready to go out but its next hop's MAC is unknown.
    pub resolve: Option<(Iface, IpAddr)>,
    pub frame: Vec<u8>,
}

/// The sending end of a punt queue, bounded in frames and in bytes: frames are up to 64 KiB,
/// so a bound in frames alone lets a flood pin GBs.
pub struct PuntSender {
    tx: Sender<Punt>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The receiving end of a punt queue.
pub struct PuntReceiver {
    rx: Receiver<Punt>,
    bytes: Arc<AtomicUsize>,
}

/// A punt queue of at most `frames` frames and `max_bytes` bytes of them.
pub fn punt_queue(frames: usize, max_bytes: usize) -> (PuntSender, PuntReceiver) {
    let (tx, rx) = bounded(frames);
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        PuntSender {
            tx,
            bytes: bytes.clone(),
            max_bytes,
        },
        PuntReceiver { rx, bytes },
    )
}

impl PuntSender {
    /// Queues `p`; false (and `p` dropped) when the queue is full in frames or bytes.
    pub fn send(&self, p: Punt) -> bool {
        let len = p.frame.len();
        // Reserve first, so concurrent workers together never pass the bound.
        if self.bytes.fetch_add(len, Ordering::Relaxed) + len > self.max_bytes {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        if self.tx.try_send(p).is_err() {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl PuntReceiver {
    pub fn try_recv(&self) -> Option<Punt> {
        let p = self.rx.try_recv().ok()?;
        self.bytes.fetch_sub(p.frame.len(), Ordering::Relaxed);
        Some(p)
    }
}

/// State shared by the workers, the control thread and the probe thread.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    /// Published apart from the snapshot: a learned MAC does not rebuild the route table.
    pub neighbours: ArcSwap<Neighbours>,
    pub nat: NatTable,
    pub frags: FragTable,
    pub stop: AtomicBool,
    /// The control thread's queues: ARP first, then the rest (the router's own traffic and
    /// frames waiting for ARP).
    pub arp_punt: PuntSender,
    pub punt: PuntSender,
    /// Wakes the control thread when punts are queued.
    pub control_waker: Waker,
    /// Probe replies (and ICMP errors about probes), for the probe thread: a queue of their
    /// own so nothing the control thread does can delay a probe reply.
    pub probe_punt: PuntSender,
    pub probe_waker: Waker,
    /// Places the probes' ports in `PROBE_PORTS` (`probe_port`), random per run: the probe
    /// thread sends from them and the snapshot tells the fast path.
    pub probe_port_base: u16,
    /// Every probe's definition and statistics, published by the probe thread.
    pub probe_health: ArcSwap<Vec<ProbeStatus>>,
}

/// Route inputs derived from the configuration.
fn route_inputs(
    cfg: &Config,
) -> (
    route::Interfaces,
    Vec<route::StaticRoute>,
    Vec<route::Policy>,
) {
    let uplink = |name: &str| UplinkId(cfg.uplink_index(name).unwrap_or(0) as u8);
    let ifaces = route::Interfaces {
        lan: cfg.lan.address,
        uplinks: cfg
            .uplinks
            .iter()
            .map(|u| route::UplinkIf {
                name: u.name.clone(),
                address: u.address,
                next_hop: u.next_hop,
            })
            .collect(),
    };
    let routes = cfg
        .routes
        .iter()
        .map(|r| route::StaticRoute {
            name: r.name.clone(),
            prefix: r.prefix,
            egress: if r.uplink == crate::config::LAN_EGRESS {
                Iface::Lan
            } else {
                Iface::Uplink(uplink(&r.uplink))
            },
            next_hop: r.next_hop,
            distance: r.distance,
            weight: r.weight,
            track: r.track.as_deref().and_then(|t| cfg.track_index(t)),
        })
        .collect();
    let policies = cfg
        .policies
        .iter()
        .map(|p| route::Policy {
            name: p.name.clone(),
            source: p.source,
            destination: p.destination,
            protocol: p.protocol,
            ports: p.port.map(|r| (r.first, r.last)),
            uplinks: p.uplinks.iter().map(|u| uplink(u)).collect(),
            fallback: p.fallback,
        })
        .collect();
    (ifaces, routes, policies)
}

/// The forwarding snapshot for these inputs.
pub fn build_snapshot(
    cfg: &Config,
    probe_port_base: u16,
    lan_mac: MacAddr,
    uplinks: &[UplinkIo],
    carrier: &[bool],
    tracks: Vec<bool>,
) -> Snapshot {
    let (ifaces, routes, policies) = route_inputs(cfg);
    let health = Health {
        carrier: carrier.to_vec(),
        tracks,
    };
    let ipv6 = ipv6_state(
        cfg,
        lan_mac,
        uplinks,
        &ipv6_up(cfg, carrier, &health.tracks),
    )
    .map(|v6| Ipv6State {
        routes: routes6(cfg, &health),
        policies: policies6(cfg),
        ..v6
    });
    Snapshot {
        ipv6,
        routes: RouteTable::build(ifaces, routes, policies, &health),
        lan: LanState {
            address: cfg.lan.address,
            mac: lan_mac,
            mtu: cfg.lan.mtu as usize,
            virtual_macs: Vec::new(),
            vrrp: !cfg.vrrp.is_empty(),
        },
        uplinks: cfg
            .uplinks
            .iter()
            .zip(uplinks)
            .zip(carrier)
            .map(|((u, io), &c)| UplinkState {
                name: u.name.clone(),
                address: u.address,
                mac: io.mac,
                next_hop: u.next_hop,
                // A configured or leased MTU only ever lowers the NIC's: frames larger than
                // the NIC takes would be refused by the kernel.
                mtu: u.mtu.map_or(io.nic_mtu, |m| m.min(io.nic_mtu)) as usize,
                mss_clamp: u.mss_clamp,
                nat: u.nat,
                nat_sources: u.nat_sources.clone().unwrap_or_default(),
                carrier: c,
            })
            .collect(),
        probes: cfg
            .probes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                Some(ProbeFlow {
                    uplink: UplinkId(cfg.uplink_index(&p.uplink)? as u8),
                    proto: match p.kind {
                        ProbeKind::IcmpEcho { .. } if p.target.is_ipv6() => next_header::ICMPV6,
                        ProbeKind::IcmpEcho { .. } => proto::ICMP,
                        ProbeKind::Tcp { .. } => proto::TCP,
                        ProbeKind::Dns { .. } => proto::UDP,
                    },
                    target: p.target,
                    port: probe_port(probe_port_base.wrapping_add(i as u16)),
                })
            })
            .collect(),
    }
}

/// Per uplink: whether it carries IPv6 now (SPEC 33): its carrier is up and no track watching it
/// (one of its probes', or its carrier's) is down. `tracks` is indexed like `cfg.tracks`.
pub fn ipv6_up(cfg: &Config, carrier: &[bool], tracks: &[bool]) -> Vec<bool> {
    let watches = |t: &TrackSource, uplink: &str| match t {
        TrackSource::Probe { name, .. } => cfg
            .probes
            .iter()
            .any(|p| &p.name == name && p.uplink == uplink),
        TrackSource::Carrier { uplink: u } => u == uplink,
        TrackSource::List { .. } => false,
    };
    cfg.uplinks
        .iter()
        .zip(carrier)
        .map(|(u, &c)| {
            c && cfg
                .tracks
                .iter()
                .zip(tracks)
                .all(|(t, &up)| up || !watches(&t.source, &u.name))
        })
        .collect()
}

/// The IPv6 part of the snapshot, when IPv6 is on.
fn ipv6_state(cfg: &Config, lan_mac: MacAddr, io: &[UplinkIo], up: &[bool]) -> Option<Ipv6State> {
    let v6 = cfg.ipv6.as_ref()?;
    let mut state = Ipv6State {
        local: vec![(Iface::Lan, ndisc::link_local(lan_mac))],
        lan_prefixes: v6.lan_prefixes(),
        ..Ipv6State::default()
    };
    for (u, c) in v6.uplinks.iter().enumerate() {
        let iface = Iface::Uplink(UplinkId(u as u8));
        state.next_hops.push(c.as_ref().map(|c| c.next_hop));
        let npt6 = c
            .as_ref()
            .and_then(|c| c.provider)
            .zip(v6.npt6_prefix)
            .and_then(|(p, internal)| {
                // Both /64s, checked by the config.
                Npt6::new(internal, p.lan_prefix).ok()
            });
        state.npt6.push(npt6);
        let Some(c) = c else { continue };
        if let Some(p) = c.provider {
            state.uplinks.push(UplinkPrefix {
                uplink: UplinkId(u as u8),
                prefix: p.prefix,
                up: up.get(u).copied().unwrap_or(false),
                translates: npt6.is_some(),
            });
        }
        if let Some(mac) = io.get(u).map(|io| io.mac) {
            state.local.push((iface, ndisc::link_local(mac)));
        }
        if let Some(a) = c.address {
            state.local.push((iface, a.addr()));
        }
    }
    let lan = v6.lan_addresses();
    state
        .local
        .extend(lan.iter().map(|a| (Iface::Lan, a.addr())));
    Some(state)
}

/// The IPv6 routes with their eligibility: carrier, and the track if any (SPEC 5, 34).
fn routes6(cfg: &Config, health: &Health) -> Vec<route::table6::Route6> {
    cfg.routes6
        .iter()
        .enumerate()
        .filter_map(|(index, r)| {
            let u = cfg.uplink_index(&r.uplink)?;
            let track_up = r.track.as_deref().is_none_or(|t| {
                cfg.track_index(t)
                    .is_some_and(|i| health.tracks.get(i) == Some(&true))
            });
            Some(route::table6::Route6 {
                index,
                prefix: r.prefix,
                uplink: UplinkId(u as u8),
                distance: r.distance,
                eligible: health.carrier.get(u) == Some(&true) && track_up,
            })
        })
        .collect()
}

/// The IPv6 policies as the fast path matches them.
fn policies6(cfg: &Config) -> Vec<Policy6> {
    cfg.policies6
        .iter()
        .enumerate()
        .map(|(index, p)| Policy6 {
            index,
            source: p.source,
            destination: p.destination,
            protocol: p.protocol,
            ports: p.port.map(|r| (r.first, r.last)),
            uplinks: p
                .uplinks
                .iter()
                .filter_map(|u| Some(UplinkId(cfg.uplink_index(u)? as u8)))
                .collect(),
            unreachable: p.fallback == PolicyFallback::Unreachable,
        })
        .collect()
}

/// The neighbours to publish: every resolved entry, and each uplink's next hop looked up once.
pub fn build_neighbours(
    cfg: &Config,
    resolved: HashMap<(Iface, Ipv4Addr), MacAddr>,
    resolved6: HashMap<(Iface, Ipv6Addr), MacAddr>,
) -> Neighbours {
    let next_hops = cfg
        .uplinks
        .iter()
        .enumerate()
        .map(|(u, up)| {
            let mac = resolved
                .get(&(Iface::Uplink(UplinkId(u as u8)), up.next_hop))
                .copied();
            (up.next_hop, mac)
        })
        .collect();
    Neighbours::new(resolved, next_hops).with_v6(resolved6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn punt(len: usize) -> Punt {
        Punt {
            ingress: Iface::Lan,
            received: Instant::ZERO,
            resolve: None,
            frame: vec![0; len],
        }
    }

    #[test]
    fn ipv6_follows_carrier_and_every_track_watching_the_uplink() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab.toml"))
                .unwrap();
        let cfg = Config::parse(&text, "lab.toml").unwrap();
        let names: Vec<&str> = cfg.tracks.iter().map(|t| t.name.as_str()).collect();
        let tracks = |down: &str| names.iter().map(|n| *n != down).collect::<Vec<_>>();
        assert_eq!(ipv6_up(&cfg, &[true, true], &tracks("")), [true, true]);
        assert_eq!(
            ipv6_up(&cfg, &[true, true], &tracks("a-e2e")),
            [false, true]
        );
        assert_eq!(
            ipv6_up(&cfg, &[true, true], &tracks("b-nexthop")),
            [true, false]
        );
        assert_eq!(ipv6_up(&cfg, &[false, true], &tracks("")), [false, true]);
    }

    #[test]
    fn punt_queues_are_bounded_in_bytes_and_frames() {
        let (tx, rx) = punt_queue(3, 100_000);
        assert!(tx.send(punt(65_536)));
        assert!(
            !tx.send(punt(65_536)),
            "two 64 KiB frames are over 100 000 bytes"
        );
        assert!(tx.send(punt(100)) && tx.send(punt(100)));
        assert!(!tx.send(punt(1)), "three frames at most");
        assert_eq!(rx.try_recv().map(|p| p.frame.len()), Some(65_536));
        assert!(tx.send(punt(65_536)), "room again once taken");
    }
}
