//! The control thread (DESIGN "Shape"): everything that is not per-packet. It answers ARP and
//! pings for the router's addresses, resolves next hops, runs the probes and tracks, rebuilds
//! the route table when anything changes, removes NAT flows of a dead uplink (SPEC 21), expires
//! NAT sessions, answers the control socket, and publishes the forwarding snapshot.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Receiver;

use crate::clock::Instant;
use crate::config::{Config, Failback, TrackSource as CfgTrackSource};
use crate::counters::{Counters, DropReason, Totals};
use crate::ctl::{Pending, Request, View};
use crate::dataplane::{Punt, Shared};
use crate::hooks::{self, HookEvent};
use crate::io::MAX_FRAME;
use crate::io::packet::PacketSocket;
use crate::io::tap::TapQueue;
use crate::metrics;
use crate::neigh::{NeighParams, NeighTable, Resolve};
use crate::prefix::Ipv4Prefix;
use crate::probe::schedule::{ProbeSet, Source};
use crate::route::{self, FlowTuple, Health, RouteTable};
use crate::snapshot::{LanState, Snapshot, UplinkState};
use crate::systemd;
use crate::track::{TrackDef, TrackEvent, TrackSet, TrackSource, TrackState};
use crate::views;
use crate::wire::arp::{self, ArpPacket};
use crate::wire::ethernet::{self, EthernetFrame, MacAddr};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::icmp::{self, EchoRepr, IcmpPacket, types};
use crate::wire::ipv4::{Ipv4Packet, OwnHeader, proto};
use crate::wire::tcp::{self, TcpRepr};
use crate::wire::vnet::VnetHdr;
use crate::{Iface, UplinkId};

/// The pieces of an uplink the control thread needs besides its config.
pub struct UplinkIo {
    pub mac: MacAddr,
    /// The NIC's own MTU, used when the config sets none.
    pub nic_mtu: u32,
    pub ifindex: u32,
    /// Send-only socket on the uplink's NIC.
    pub tx: PacketSocket,
}

pub struct Control {
    cfg: Config,
    config_path: PathBuf,
    shared: Arc<Shared>,
    punts: Receiver<Punt>,
    requests: Receiver<Pending>,
    tap: Arc<TapQueue>,
    lan_mac: MacAddr,
    uplinks: Vec<UplinkIo>,
    carrier: Vec<bool>,
    neigh: NeighTable,
    tracks: TrackSet,
    probes: ProbeSet,
    /// The control thread's own drops (ARP, local traffic, resolution).
    counters: Arc<Counters>,
    workers: Vec<Arc<Counters>>,
    buf: Vec<u8>,
    next_nat_expire: Instant,
    next_neigh_poll: Instant,
    /// With `failback = "move"`: when flows left on backup uplinks are moved (SPEC 22).
    failback_due: Option<Instant>,
    /// Set when something the snapshot depends on changed.
    dirty: bool,
    /// `clear counters`: the totals `show` counts from.
    counters_cleared: Totals,
    /// Whether the last load of the configuration (start or reload) succeeded, and when the
    /// last one that did was applied, for the metrics.
    last_load: (bool, SystemTime),
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
            uplink: uplink(&r.uplink),
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

fn track_defs(cfg: &Config) -> Vec<TrackDef> {
    cfg.tracks
        .iter()
        .map(|t| TrackDef {
            name: t.name.clone(),
            source: match &t.source {
                CfgTrackSource::Probe { name, mode } => TrackSource::Probe {
                    probe: cfg.probe_index(name).unwrap_or(usize::MAX),
                    mode: *mode,
                },
                CfgTrackSource::Carrier { uplink } => TrackSource::Carrier {
                    uplink: cfg.uplink_index(uplink).unwrap_or(usize::MAX),
                },
                CfgTrackSource::List { members, op } => TrackSource::List {
                    members: members.iter().filter_map(|m| cfg.track_index(m)).collect(),
                    op: *op,
                },
            },
            delay_down: t.delay_down,
            delay_up: t.delay_up,
        })
        .collect()
}

/// Everything the control thread is handed at start.
pub struct ControlParts {
    pub cfg: Config,
    /// Where `reload` reads the configuration again.
    pub config_path: PathBuf,
    pub shared: Arc<Shared>,
    pub punts: Receiver<Punt>,
    pub requests: Receiver<Pending>,
    pub tap: Arc<TapQueue>,
    pub lan_mac: MacAddr,
    pub uplinks: Vec<UplinkIo>,
    pub carrier: Vec<bool>,
    pub workers: Vec<Arc<Counters>>,
}

/// The forwarding snapshot for these inputs, before neighbours are filled in.
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
                next_hop_mac: None,
                mtu: u.mtu.unwrap_or(io.nic_mtu) as usize,
                mss_clamp: u.mss_clamp,
                nat: u.nat,
                nat_sources: u.nat_sources.clone().unwrap_or_default(),
                carrier: c,
            })
            .collect(),
        neighbours: HashMap::new(),
        probe_targets: cfg
            .probes
            .iter()
            .filter_map(|p| Some((UplinkId(cfg.uplink_index(&p.uplink)? as u8), p.target)))
            .collect(),
    }
}

impl Control {
    pub fn new(p: ControlParts) -> Control {
        let now = Instant::now();
        let tracks = TrackSet::new(track_defs(&p.cfg), now);
        let cfg = p.cfg;
        let probes = ProbeSet::new(
            cfg.probes.clone(),
            |n| cfg.uplink_index(n).unwrap_or(0),
            now,
        );
        let ifaces = 1 + cfg.uplinks.len();
        let mut c = Control {
            shared: p.shared,
            punts: p.punts,
            requests: p.requests,
            tap: p.tap,
            lan_mac: p.lan_mac,
            uplinks: p.uplinks,
            carrier: p.carrier,
            neigh: NeighTable::new(NeighParams::default()),
            tracks,
            probes,
            counters: Arc::new(Counters::new(ifaces)),
            workers: p.workers,
            buf: vec![0u8; MAX_FRAME],
            next_nat_expire: now,
            next_neigh_poll: now,
            failback_due: None,
            dirty: true,
            counters_cleared: Totals::default(),
            last_load: (true, SystemTime::now()),
            config_path: p.config_path,
            cfg,
        };
        for u in 0..c.carrier.len() {
            let up = c.carrier[u];
            let events = c.tracks.on_carrier(u, up, now);
            c.track_events(events);
        }
        c.announce(now);
        c
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Gratuitous ARP on every interface, and a request for each uplink's next hop (SPEC 2).
    fn announce(&mut self, now: Instant) {
        let lan = self.cfg.lan.address.addr();
        self.send_arp(
            Iface::Lan,
            MacAddr::BROADCAST,
            arp::op::REQUEST,
            lan,
            MacAddr::ZERO,
            lan,
        );
        for u in 0..self.cfg.uplinks.len() {
            self.announce_uplink(u, now);
        }
    }

    fn announce_uplink(&mut self, u: usize, now: Instant) {
        let up = &self.cfg.uplinks[u];
        let (addr, nh) = (up.address.addr(), up.next_hop);
        let iface = Iface::Uplink(UplinkId(u as u8));
        self.send_arp(
            iface,
            MacAddr::BROADCAST,
            arp::op::REQUEST,
            addr,
            MacAddr::ZERO,
            addr,
        );
        if self.neigh.resolve(iface, nh, None, now) == Resolve::Request {
            self.send_arp(
                iface,
                MacAddr::BROADCAST,
                arp::op::REQUEST,
                addr,
                MacAddr::ZERO,
                nh,
            );
        }
    }

    /// Time until the control thread must act again, at most `cap`.
    pub fn timeout(&self, now: Instant, cap: Duration) -> Duration {
        let mut next = now + cap;
        for t in [
            self.probes.next_deadline(),
            self.tracks.next_deadline(),
            Some(self.next_nat_expire),
            Some(self.next_neigh_poll),
            self.failback_due,
        ]
        .into_iter()
        .flatten()
        {
            next = next.min(t);
        }
        next.saturating_since(now)
    }

    /// One round of work: queued punts, control requests, timers, then publication.
    pub fn run_once(&mut self) {
        let now = Instant::now();
        for _ in 0..4096 {
            match self.punts.try_recv() {
                Ok(p) => self.handle_punt(p, now),
                Err(_) => break,
            }
        }
        while let Ok(p) = self.requests.try_recv() {
            let answer = self.answer(p.request, now);
            let _ = p.reply.send(answer);
        }
        self.timers(now);
        if self.dirty {
            self.publish(now);
        }
    }

    pub fn link_changed(&mut self, ifindex: u32, carrier: bool) {
        let now = Instant::now();
        let Some(u) = self.uplinks.iter().position(|io| io.ifindex == ifindex) else {
            return;
        };
        if self.carrier[u] == carrier {
            return;
        }
        self.carrier[u] = carrier;
        log::warn!(
            "uplink {}: carrier {}",
            self.cfg.uplinks[u].name,
            if carrier { "up" } else { "down" }
        );
        let events = self.tracks.on_carrier(u, carrier, now);
        self.track_events(events);
        if carrier {
            self.announce_uplink(u, now);
        }
        self.dirty = true;
    }

    fn timers(&mut self, now: Instant) {
        for o in self.probes.expire(now) {
            self.probe_result(o.probe, now);
        }
        for i in self.probes.due(now) {
            self.send_probe(i, now);
        }
        let events = self.tracks.poll(now);
        self.track_events(events);
        if now >= self.next_neigh_poll {
            self.next_neigh_poll = now + Duration::from_millis(250);
            let out = self.neigh.poll(now);
            for (iface, ip) in out.requests {
                if let Some(src) = self.iface_addr(iface) {
                    self.send_arp(
                        iface,
                        MacAddr::BROADCAST,
                        arp::op::REQUEST,
                        src,
                        MacAddr::ZERO,
                        ip,
                    );
                }
            }
            for _ in 0..out.dropped_frames {
                self.counters.dropped(DropReason::NoNeighbour);
            }
            if !out.removed.is_empty() {
                self.dirty = true;
            }
            // Next hops are always wanted, so a dead one keeps being asked for.
            for u in 0..self.cfg.uplinks.len() {
                if self.carrier[u] {
                    let iface = Iface::Uplink(UplinkId(u as u8));
                    let nh = self.cfg.uplinks[u].next_hop;
                    if self.neigh.resolve(iface, nh, None, now) == Resolve::Request {
                        let src = self.cfg.uplinks[u].address.addr();
                        self.send_arp(
                            iface,
                            MacAddr::BROADCAST,
                            arp::op::REQUEST,
                            src,
                            MacAddr::ZERO,
                            nh,
                        );
                    }
                }
            }
        }
        if self.failback_due.is_some_and(|t| now >= t) {
            self.failback_due = None;
            self.move_flows_home();
        }
        if now >= self.next_nat_expire {
            self.next_nat_expire = now + Duration::from_secs(1);
            self.shared.nat.expire(now);
            self.shared.frags.expire(now);
        }
    }

    fn send_probe(&mut self, i: usize, now: Instant) {
        let u = self.probes.probes[i].uplink;
        let Some(cfg) = self.cfg.uplinks.get(u) else {
            return;
        };
        let (addr, nh) = (cfg.address.addr(), cfg.next_hop);
        let iface = Iface::Uplink(UplinkId(u as u8));
        let mut frame = std::mem::take(&mut self.buf);
        let built = self
            .probes
            .build(i, Source { addr }, &mut frame[IP_OFFSET..], now);
        // Without carrier or next hop the attempt still counts: it will time out.
        if let Some(n) = built
            && self.carrier[u]
            && let Some(mac) = self.neigh.lookup(iface, nh)
        {
            self.write_l2(&mut frame, iface, mac);
            self.send(iface, &frame[..IP_OFFSET + n]);
        }
        self.buf = frame;
    }

    fn probe_result(&mut self, i: usize, now: Instant) {
        let p = &self.probes.probes[i];
        log::debug!("probe {}: {:?}", p.def.name, p.stats.last());
        let events = self
            .tracks
            .on_probe(i, &p.def.name.clone(), &p.stats.clone(), now);
        self.track_events(events);
    }

    fn track_events(&mut self, events: Vec<TrackEvent>) {
        if events.is_empty() {
            return;
        }
        let names = self.tracks.names();
        for ev in &events {
            log::warn!("{}", ev.log_line(&names));
            if let TrackEvent::Changed {
                track,
                from,
                to,
                change_no,
                reason,
            } = ev
            {
                self.dirty = true;
                let Some(tc) = self.cfg.tracks.get(*track) else {
                    continue;
                };
                let hook = match to {
                    TrackState::Up => &tc.on_up,
                    TrackState::Down => &tc.on_down,
                };
                if let Some(hook) = hook {
                    let uplink = self.track_uplink(*track).unwrap_or_default();
                    hooks::run(
                        hook,
                        &HookEvent {
                            track: &tc.name,
                            old: &from.to_string(),
                            new: &to.to_string(),
                            uplink: &uplink,
                            reason,
                            change: *change_no,
                        },
                    );
                }
            }
        }
    }

    /// The uplink a track watches, for hooks: its probe's or carrier's uplink.
    fn track_uplink(&self, track: usize) -> Option<String> {
        match &self.cfg.tracks.get(track)?.source {
            CfgTrackSource::Probe { name, .. } => self
                .cfg
                .probes
                .iter()
                .find(|p| &p.name == name)
                .map(|p| p.uplink.clone()),
            CfgTrackSource::Carrier { uplink } => Some(uplink.clone()),
            CfgTrackSource::List { .. } => None,
        }
    }

    /// Rebuilds the route table and snapshot; on an uplink losing all its installed routes,
    /// removes its NAT flows and resets their TCP connections (SPEC 21).
    fn publish(&mut self, now: Instant) {
        self.dirty = false;
        let mut snap = build_snapshot(
            &self.cfg,
            self.lan_mac,
            &self.uplinks,
            &self.carrier,
            self.tracks.states(),
        );
        let old = self.shared.snapshot.load_full();
        for line in RouteTable::diff(&old.routes, &snap.routes) {
            log::warn!("{line}");
        }
        let names: Vec<String> = self.cfg.uplinks.iter().map(|u| u.name.clone()).collect();
        let withdrawn = withdrawn_uplinks(&old.routes, &snap.routes, &names);
        let left = any_installed(&snap.routes);
        // With failback "move", a preferred uplink coming back starts the grace period.
        let move_after = match self.cfg.failover.failback {
            Failback::Move { grace }
                if installed_uplinks(&old.routes, &names)
                    .iter()
                    .zip(installed_uplinks(&snap.routes, &names))
                    .any(|(was, is)| !was && is) =>
            {
                Some(grace)
            }
            _ => None,
        };
        snap.neighbours = self.neigh.resolved();
        for (u, s) in snap.uplinks.iter_mut().enumerate() {
            s.next_hop_mac = self
                .neigh
                .lookup(Iface::Uplink(UplinkId(u as u8)), s.next_hop);
        }
        self.shared.snapshot.store(Arc::new(snap));
        if let Some(grace) = move_after {
            self.failback_due = Some(now + grace);
            log::warn!(
                "failback: flows on backup uplinks move in {} s",
                grace.as_secs_f64()
            );
        }
        // Never strand flows when no uplink is left to carry new ones.
        if left {
            for (u, _) in withdrawn.iter().enumerate().filter(|(_, w)| **w) {
                self.flush_uplink(UplinkId(u as u8), "no installed route left");
            }
        }
    }

    /// `failback = "move"`: flows still on uplinks that carry no installed route are removed
    /// (their TCP ends reset) so they reconnect through the preferred uplink.
    fn move_flows_home(&mut self) {
        let names: Vec<String> = self.cfg.uplinks.iter().map(|u| u.name.clone()).collect();
        let installed = installed_uplinks(&self.shared.snapshot.load().routes, &names);
        if !installed.iter().any(|&i| i) {
            return;
        }
        let counts = self.shared.nat.len_by_uplink();
        for (u, _) in installed
            .iter()
            .enumerate()
            .filter(|(u, i)| !**i && counts.get(*u).is_some_and(|&n| n > 0))
        {
            self.flush_uplink(UplinkId(u as u8), "failback grace over");
        }
    }

    /// Removes the uplink's NAT flows, resetting their TCP ends (with `reset_tcp`); returns
    /// how many were removed.
    fn flush_uplink(&mut self, u: UplinkId, why: &str) -> usize {
        let (removed, flushed) = self.shared.nat.flush_uplink(u);
        let name = self.cfg.uplinks[u.0 as usize].name.clone();
        let mut resets = 0;
        if self.cfg.failover.reset_tcp {
            for f in &flushed {
                let Some(mac) = self.neigh.lookup(Iface::Lan, f.key.inside) else {
                    continue;
                };
                let sent = self.send_ip(Iface::Lan, mac, |out| {
                    let ip = OwnHeader::new(f.key.remote, f.key.inside);
                    let rst = TcpRepr::rst(f.key.remote_port, f.key.inside_port, f.inside_ack);
                    tcp::build_segment(out, &ip, &rst).ok()
                });
                resets += usize::from(sent);
            }
        }
        log::warn!(
            "uplink {name}: {why}; {removed} NAT flows removed, {resets} TCP resets sent to the LAN"
        );
        removed
    }

    fn handle_punt(&mut self, p: Punt, now: Instant) {
        if let Some((egress, nh)) = p.resolve {
            self.resolve_and_send(egress, nh, p.frame, now);
            return;
        }
        let Ok(eth) = EthernetFrame::new_checked(p.frame.get(ETH_OFFSET..).unwrap_or(&[])) else {
            self.counters.dropped(DropReason::Truncated);
            return;
        };
        match eth.ethertype() {
            ethernet::ethertype::ARP => self.handle_arp(p.ingress, &p.frame, now),
            ethernet::ethertype::IPV4 => self.handle_local(p.ingress, &p.frame, now),
            _ => self.counters.dropped(DropReason::NotIpv4),
        }
    }

    fn resolve_and_send(&mut self, egress: Iface, nh: Ipv4Addr, mut frame: Vec<u8>, now: Instant) {
        if let Some(mac) = self.neigh.lookup(egress, nh) {
            // Learned after the worker loaded its snapshot.
            set_dst_mac(&mut frame, mac);
            self.send(egress, &frame);
            return;
        }
        match self.neigh.resolve(egress, nh, Some(frame), now) {
            Resolve::Known(_) => {}
            Resolve::Request => {
                if let Some(src) = self.iface_addr(egress) {
                    self.send_arp(
                        egress,
                        MacAddr::BROADCAST,
                        arp::op::REQUEST,
                        src,
                        MacAddr::ZERO,
                        nh,
                    );
                }
            }
            Resolve::Pending => {}
            Resolve::Dropped => self.counters.dropped(DropReason::NoNeighbour),
        }
    }

    fn handle_arp(&mut self, ingress: Iface, frame: &[u8], now: Instant) {
        let Ok(a) = ArpPacket::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[])) else {
            self.counters.dropped(DropReason::BadL4Header);
            return;
        };
        let (Some(my_ip), Some(prefix)) = (self.iface_addr(ingress), self.iface_prefix(ingress))
        else {
            return;
        };
        let (sip, smac) = (a.sender_ip(), a.sender_mac());
        let for_us = a.target_ip() == my_ip;
        // Learn only plausible neighbours: on-link senders with a unicast MAC.
        if prefix.contains(sip) && sip != my_ip && smac.is_unicast() {
            let create = for_us && a.operation() == arp::op::REQUEST;
            let (changed, queued) = self.neigh.learn(ingress, sip, smac, create, now);
            if changed {
                log::info!("arp: {sip} is-at {smac} on {}", self.iface_name(ingress));
                self.dirty = true;
            }
            // Frames the fast path rewrote completely but for the destination MAC.
            for mut f in queued {
                set_dst_mac(&mut f, smac);
                self.send(ingress, &f);
            }
        }
        if for_us && a.operation() == arp::op::REQUEST {
            self.send_arp(ingress, smac, arp::op::REPLY, my_ip, smac, sip);
        }
    }

    /// Packets for the router itself: probe replies, pings; the rest is counted and dropped.
    fn handle_local(&mut self, ingress: Iface, frame: &[u8], now: Instant) {
        let Some(ipb) = frame.get(IP_OFFSET..) else {
            return;
        };
        if let Iface::Uplink(u) = ingress
            && let Some((outcome, reset)) = self.probes.match_reply(u.0 as usize, ipb, now)
        {
            if let Some(r) = reset {
                self.send_probe_reset(u, r.probe, r.sport, r.seq);
            }
            self.probe_result(outcome.probe, now);
            return;
        }
        let Ok(ip) = Ipv4Packet::new_checked(ipb) else {
            self.counters.dropped(DropReason::BadIpHeader);
            return;
        };
        let (src, dst) = (ip.src(), ip.dst());
        let answers = match ingress {
            Iface::Lan => self.is_local(dst),
            Iface::Uplink(_) => self.iface_addr(ingress) == Some(dst),
        };
        let echo = ip.protocol() == proto::ICMP
            && !ip.is_fragment()
            && IcmpPacket::new_checked(ip.payload()).is_ok_and(|m| {
                m.msg_type() == types::ECHO_REQUEST && m.code() == 0 && m.verify_checksum()
            });
        if !(answers && echo) {
            self.counters.dropped(match ingress {
                Iface::Uplink(_) => DropReason::NatUnsolicited,
                Iface::Lan => DropReason::LocalUnhandled,
            });
            return;
        }
        let Ok(m) = IcmpPacket::new_checked(ip.payload()) else {
            return;
        };
        let (ident, seq) = (m.ident(), m.seq_no());
        let payload = m.payload().to_vec();
        let Some(peer_mac) = EthernetFrame::new_checked(&frame[ETH_OFFSET..])
            .ok()
            .map(|e| e.src())
        else {
            return;
        };
        self.send_ip(ingress, peer_mac, |out| {
            let ip = OwnHeader::new(dst, src);
            let echo = EchoRepr {
                msg_type: types::ECHO_REPLY,
                ident,
                seq,
            };
            icmp::build_echo(out, &ip, &echo, &payload).ok()
        });
    }

    fn send_probe_reset(&mut self, u: UplinkId, probe: usize, sport: u16, seq: u32) {
        let p = &self.probes.probes[probe];
        let (target, tcp_port) = (
            p.def.target,
            match p.def.kind {
                crate::config::ProbeKind::Tcp { port } => port,
                _ => return,
            },
        );
        let up = &self.cfg.uplinks[u.0 as usize];
        let (addr, nh) = (up.address.addr(), up.next_hop);
        let iface = Iface::Uplink(u);
        let Some(mac) = self.neigh.lookup(iface, nh) else {
            return;
        };
        self.send_ip(iface, mac, |out| {
            let rst = TcpRepr::rst(sport, tcp_port, seq);
            tcp::build_segment(out, &OwnHeader::new(addr, target), &rst).ok()
        });
    }

    fn send_arp(
        &mut self,
        iface: Iface,
        eth_dst: MacAddr,
        op: u16,
        sip: Ipv4Addr,
        tmac: MacAddr,
        tip: Ipv4Addr,
    ) {
        let Some(my_mac) = self.iface_mac(iface) else {
            return;
        };
        let mut out = [0u8; ETH_OFFSET + 60];
        if arp::build_frame(&mut out[ETH_OFFSET..], eth_dst, op, my_mac, sip, tmac, tip).is_ok()
            && VnetHdr::default().write(&mut out).is_ok()
        {
            self.send(iface, &out);
        }
    }

    /// Sends an IPv4 packet that `build` writes into the scratch buffer (returning its length),
    /// behind a fresh vnet and Ethernet header addressed to `dst`. Returns whether it was built.
    fn send_ip(
        &mut self,
        iface: Iface,
        dst: MacAddr,
        build: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let mut frame = std::mem::take(&mut self.buf);
        let built = build(&mut frame[IP_OFFSET..]);
        if let Some(n) = built {
            self.write_l2(&mut frame, iface, dst);
            self.send(iface, &frame[..IP_OFFSET + n]);
        }
        self.buf = frame;
        built.is_some()
    }

    /// Fills the vnet header (no offload) and the Ethernet header of a frame built at IP_OFFSET.
    fn write_l2(&self, frame: &mut [u8], iface: Iface, dst: MacAddr) {
        let Some(src) = self.iface_mac(iface) else {
            return;
        };
        if VnetHdr::default().write(frame).is_err() || frame.len() < IP_OFFSET {
            return;
        }
        let mut eth = EthernetFrame::new_unchecked(&mut frame[ETH_OFFSET..]);
        eth.set_dst(dst);
        eth.set_src(src);
        eth.set_ethertype(ethernet::ethertype::IPV4);
    }

    fn send(&self, iface: Iface, frame: &[u8]) {
        let r = match iface {
            Iface::Lan => self.tap.write(frame),
            Iface::Uplink(u) => match self.uplinks.get(u.0 as usize) {
                Some(io) => io.tx.send(frame),
                None => return,
            },
        };
        match r {
            Ok(()) => self.counters.tx(iface.index(), frame.len()),
            Err(e) => {
                log::debug!("send on {} failed: {e}", self.iface_name(iface));
                self.counters.dropped(DropReason::TxError);
            }
        }
    }

    // The interface facts come from the published snapshot, built from this thread's config.
    fn iface_addr(&self, iface: Iface) -> Option<Ipv4Addr> {
        self.shared.snapshot.load().iface_addr(iface)
    }

    fn iface_prefix(&self, iface: Iface) -> Option<Ipv4Prefix> {
        self.shared.snapshot.load().iface_prefix(iface)
    }

    fn iface_mac(&self, iface: Iface) -> Option<MacAddr> {
        self.shared.snapshot.load().iface_mac(iface)
    }

    fn iface_name(&self, iface: Iface) -> String {
        views::iface_name(&self.cfg, iface)
    }

    fn view_state(&self, now: Instant) -> views::State<'_> {
        views::State {
            cfg: &self.cfg,
            snap: self.shared.snapshot.load_full(),
            carrier: &self.carrier,
            totals: self.totals().since(&self.counters_cleared),
            nat: &self.shared.nat,
            probes: &self.probes.probes,
            tracks: &self.tracks,
            neigh: &self.neigh,
            now,
        }
    }

    fn is_local(&self, ip: Ipv4Addr) -> bool {
        self.shared.snapshot.load().is_local(ip)
    }

    /// Reads the configuration file again and applies it (SIGHUP, `mhrouter reload`). A config
    /// that does not validate, or that changes what only a restart can change, is rejected and
    /// the running one stays. NAT flows are kept: routes, policies, probes, tracks, failover and
    /// per-uplink forwarding settings change live.
    pub fn reload(&mut self) -> Result<String, String> {
        systemd::notify(&systemd::reloading());
        let result = self.apply_config_file();
        self.last_load = match result {
            Ok(_) => (true, SystemTime::now()),
            Err(_) => (false, self.last_load.1),
        };
        systemd::notify(systemd::READY);
        result
    }

    fn apply_config_file(&mut self) -> Result<String, String> {
        let now = Instant::now();
        let result = Config::from_file(&self.config_path)
            .map_err(|e| e.to_string())
            .and_then(|new| restart_needed(&self.cfg, &new).map_or(Ok(new), Err));
        let new = match result {
            Ok(new) => new,
            Err(e) => {
                let msg = format!("reload rejected, running configuration kept: {e}");
                log::error!("{msg}");
                return Err(msg);
            }
        };
        for (u, (old, new)) in self.cfg.uplinks.iter().zip(&new.uplinks).enumerate() {
            if old.address != new.address || old.nat != new.nat {
                // Flows translated to the old address cannot continue.
                self.shared
                    .nat
                    .set_uplink_addr(UplinkId(u as u8), new.nat.then(|| new.address.addr()));
            }
        }
        self.tracks.reconfigure(track_defs(&new), now);
        let mut probes = ProbeSet::new(
            new.probes.clone(),
            |n| new.uplink_index(n).unwrap_or(0),
            now,
        );
        probes.carry_over(std::mem::replace(
            &mut self.probes,
            ProbeSet::new(Vec::new(), |_| 0, now),
        ));
        self.probes = probes;
        self.cfg = new;
        for u in 0..self.carrier.len() {
            let events = self.tracks.on_carrier(u, self.carrier[u], now);
            self.track_events(events);
        }
        let events = self.tracks.poll(now);
        self.track_events(events);
        self.publish(now);
        let msg = format!(
            "reload: {} applied ({} routes, {} policies, {} probes, {} tracks)",
            self.config_path.display(),
            self.cfg.routes.len(),
            self.cfg.policies.len(),
            self.cfg.probes.len(),
            self.cfg.tracks.len()
        );
        log::warn!("{msg}");
        Ok(msg + "\n")
    }

    /// Stops the data plane: workers see the flag at their next wakeup.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }

    fn totals(&self) -> Totals {
        Totals::sum(
            self.workers
                .iter()
                .map(|c| &**c)
                .chain(std::iter::once(&*self.counters)),
        )
    }

    /// Answers a control-socket request.
    fn answer(&mut self, req: Request, now: Instant) -> Result<String, String> {
        match req {
            Request::Show {
                view: View::Nat {
                    uplink: Some(name), ..
                },
                ..
            }
            | Request::ClearNat { uplink: Some(name) }
                if self.cfg.uplink_index(&name).is_none() =>
            {
                Err(format!("no uplink named '{name}'"))
            }
            Request::Show { view, json } => Ok(views::show(&self.view_state(now), view, json)),
            Request::ClearCounters => {
                self.counters_cleared = self.totals();
                log::info!("counters cleared");
                Ok("counters cleared\n".into())
            }
            Request::ClearNat { uplink } => {
                let uplinks = match uplink.and_then(|n| self.cfg.uplink_index(&n)) {
                    Some(u) => u..u + 1,
                    None => 0..self.cfg.uplinks.len(),
                };
                let removed: usize = uplinks
                    .map(|u| self.flush_uplink(UplinkId(u as u8), "NAT cleared by the operator"))
                    .sum();
                Ok(format!("{removed} NAT flows removed\n"))
            }
            Request::Explain {
                src,
                dst,
                proto,
                sport,
                dport,
                json,
            } => Ok(views::explain(
                &self.view_state(now),
                FlowTuple {
                    src,
                    dst,
                    proto,
                    src_port: sport,
                    dst_port: dport,
                },
                json,
            )),
            Request::Reload => self.reload(),
            Request::Metrics => Ok(metrics::render(&metrics::collect(metrics::Sources {
                cfg: &self.cfg,
                totals: self.totals(),
                carrier: &self.carrier,
                routes: &self.shared.snapshot.load().routes,
                nat: &self.shared.nat,
                probes: &self.probes.probes,
                tracks: &self.tracks,
                last_load: self.last_load,
            }))),
        }
    }
}

/// What a reload cannot change without a restart (sockets, threads, the TAP, the NAT table).
fn restart_needed(old: &Config, new: &Config) -> Option<String> {
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
        } else if old.nat != new.nat {
            "the [nat] table settings"
        } else {
            return None;
        };
    Some(format!("changing {why} needs a restart"))
}

fn set_dst_mac(frame: &mut [u8], mac: MacAddr) {
    if let Some(eth) = frame.get_mut(ETH_OFFSET..) {
        EthernetFrame::new_unchecked(eth).set_dst(mac);
    }
}

/// Uplinks whose installed routes were all withdrawn for loss of eligibility (track down or no
/// carrier) and that carry none now. An uplink merely displaced by a preferred one keeps its
/// flows (SPEC 22).
fn withdrawn_uplinks(old: &RouteTable, new: &RouteTable, names: &[String]) -> Vec<bool> {
    let (before, after) = (old.entries(), new.entries());
    names
        .iter()
        .map(|n| {
            let on = |e: &&crate::route::RouteEntryView| e.kind == "static" && &e.uplink == n;
            let was: Vec<_> = before.iter().filter(on).filter(|e| e.installed).collect();
            !was.is_empty()
                && !after.iter().filter(on).any(|e| e.installed)
                && was.iter().all(|w| {
                    after
                        .iter()
                        .filter(on)
                        .any(|e| e.name == w.name && !e.eligible)
                })
        })
        .collect()
}

/// Which uplinks carry at least one installed static route.
fn installed_uplinks(t: &RouteTable, names: &[String]) -> Vec<bool> {
    let entries = t.entries();
    names
        .iter()
        .map(|n| {
            entries
                .iter()
                .any(|e| e.installed && e.kind == "static" && &e.uplink == n)
        })
        .collect()
}

/// True when some static route is installed (an uplink is left to carry new flows).
fn any_installed(t: &RouteTable) -> bool {
    t.entries()
        .iter()
        .any(|e| e.installed && e.kind == "static")
}
