//! What the threads share: the published forwarding state (the route snapshot and, separately,
//! the neighbours, so an ARP change does not rebuild the route table), the NAT and fragment
//! tables, the punt queues and the probe health table; and how the control thread builds the
//! snapshot from the configuration.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use crossbeam_channel::Sender;

use crate::clock::Instant;
use crate::config::Config;
use crate::control::UplinkIo;
use crate::io::poll::Waker;
use crate::nat::{FragTable, NatTable};
use crate::probe::schedule::ProbeStatus;
use crate::route::{self, Health, RouteTable};
use crate::snapshot::{LanState, Neighbours, Snapshot, UplinkState};
use crate::wire::ethernet::MacAddr;
use crate::{Iface, UplinkId};

/// A frame for the control plane, with its virtio_net_hdr.
pub struct Punt {
    pub ingress: Iface,
    /// When the worker took it: probe round trips are timed from this, not from when the
    /// probe thread gets to it.
    pub received: Instant,
    /// Set when the frame is ready to go out but its next hop's MAC is unknown.
    pub resolve: Option<(Iface, Ipv4Addr)>,
    pub frame: Vec<u8>,
}

/// State shared by the workers, the control thread and the probe thread.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    /// Published apart from the snapshot: a learned MAC does not rebuild the route table.
    pub neighbours: ArcSwap<Neighbours>,
    pub nat: NatTable,
    pub frags: FragTable,
    pub stop: AtomicBool,
    pub punt: Sender<Punt>,
    /// Wakes the control thread when punts are queued.
    pub control_waker: Waker,
    /// Frames from probe targets, for the probe thread: a queue of their own so nothing the
    /// control thread does can delay a probe reply.
    pub probe_punt: Sender<Punt>,
    pub probe_waker: Waker,
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
    Snapshot {
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
                mtu: u.mtu.unwrap_or(io.nic_mtu) as usize,
                mss_clamp: u.mss_clamp,
                nat: u.nat,
                nat_sources: u.nat_sources.clone().unwrap_or_default(),
                carrier: c,
            })
            .collect(),
        probe_targets: cfg
            .probes
            .iter()
            .filter_map(|p| Some((UplinkId(cfg.uplink_index(&p.uplink)? as u8), p.target)))
            .collect(),
    }
}

/// The neighbours to publish: every resolved entry, and each uplink's next hop looked up once.
pub fn build_neighbours(cfg: &Config, resolved: HashMap<(Iface, Ipv4Addr), MacAddr>) -> Neighbours {
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
    Neighbours::new(resolved, next_hops)
}
