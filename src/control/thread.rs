//! The control thread (docs/architecture.md): owns the LAN and uplink send sockets, the clock and the
//! control-socket requests, and dispatches to the engines (ARP, echo, failover). It feeds the
//! probe thread's results to the tracks, rebuilds and publishes the route table when anything
//! changes, expires NAT sessions, and answers the control socket.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender};

use super::arp::{ArpEngine, ArpEvent};
use super::dhcp::DhcpService;
use super::dns::DnsService;
use super::failover::{Action, Failover};
use super::icmp::EchoResponder;
use super::inputs::{addressing, next_hops, restart_needed, track_defs};
use super::probe_thread::ProbeReport;
use super::socket::{Pending, Request, View};
use super::uplink_dhcp::{ClientOutput, UplinkDhcp};
use super::vrrp::{Vrrp, VrrpEvent};
use super::{Addressing, Transmit};
use crate::clock::Instant;
use crate::config::{Config, ProbeConfig, TrackSource};
use crate::counters::{Counters, DropReason, Totals, bump};
use crate::dhcp::client::{self, Client, ClientOptions};
use crate::dhcp::leases::{self, Clocks};
use crate::dhcp::server::{Lease, Server};
use crate::hooks::{self, HookEvent};
use crate::io::packet::PacketSocket;
use crate::io::tap::TapQueue;
use crate::metrics;
use crate::neigh::NeighParams;
use crate::route::{FlowTuple, RouteTable};
use crate::shared::{Punt, PuntReceiver, Shared, build_neighbours, build_snapshot};
use crate::systemd;
use crate::track::{TrackEvent, TrackSet, TrackState};
use crate::views;
use crate::wire::ethernet::{self, EthernetFrame, MacAddr};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::ipv4::{Ipv4Packet, OwnHeader};
use crate::wire::tcp::{self, TcpRepr};
use crate::wire::vnet::VnetHdr;
use crate::wire::vrrp;
use crate::{Iface, UplinkId};
use ipv6::lan6;

mod addressing;
mod ipv6;
mod pd;
mod requests;

/// Room for the IPv4 packets the control thread builds (RSTs).
const PACKET_ROOM: usize = 1600;

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
    /// The running configuration: `base_cfg` with the uplinks' DHCP leases and delegated
    /// prefixes applied.
    cfg: Config,
    /// The configuration as read from the file.
    base_cfg: Config,
    /// Per uplink: its DHCP client (`address = "dhcp"`) and the lease it holds.
    uplink_dhcp: Vec<Option<UplinkDhcp>>,
    uplink_leases: Vec<Option<client::Lease>>,
    config_path: PathBuf,
    shared: Arc<Shared>,
    arp_punts: PuntReceiver,
    punts: PuntReceiver,
    requests: Receiver<Pending>,
    tap: Arc<TapQueue>,
    lan_mac: MacAddr,
    uplinks: Vec<UplinkIo>,
    carrier: Vec<bool>,
    arp: ArpEngine,
    echo: EchoResponder,
    vrrp: Vrrp,
    /// Neighbour discovery, RAs and echo for IPv6, when `[lan] ipv6` is on.
    ipv6: Option<ipv6::Ipv6Plane>,
    /// The LAN's DHCP server, when configured.
    dhcp: Option<DhcpService>,
    /// The DNS forwarder on the LAN address, when configured.
    dns: Option<DnsService>,
    tracks: TrackSet,
    /// Results from the probe thread, and where its new definitions go on reload.
    probe_reports: Receiver<ProbeReport>,
    probe_configs: Sender<Vec<ProbeConfig>>,
    /// The control thread's own drops (ARP, local traffic, resolution).
    counters: Arc<Counters>,
    workers: Vec<Arc<Counters>>,
    next_nat_expire: Instant,
    failover: Failover,
    /// Set when something the route snapshot depends on changed.
    dirty: bool,
    /// Set when a neighbour was learned or removed.
    neighbours_dirty: bool,
    /// `clear counters`: the totals `show` counts from.
    counters_cleared: Totals,
    /// Whether the last load of the configuration (start or reload) succeeded, and when the
    /// last one that did was applied, for the metrics.
    last_load: (bool, SystemTime),
}

/// Everything the control thread is handed at start.
pub struct ControlParts {
    pub cfg: Config,
    /// Where `reload` reads the configuration again.
    pub config_path: PathBuf,
    pub shared: Arc<Shared>,
    /// ARP, served before `punts` (SPEC 35).
    pub arp_punts: PuntReceiver,
    pub punts: PuntReceiver,
    pub requests: Receiver<Pending>,
    pub tap: Arc<TapQueue>,
    pub lan_mac: MacAddr,
    pub uplinks: Vec<UplinkIo>,
    pub carrier: Vec<bool>,
    /// Counters of the workers and the probe thread, summed with the control thread's own.
    pub workers: Vec<Arc<Counters>>,
    pub probe_reports: Receiver<ProbeReport>,
    pub probe_configs: Sender<Vec<ProbeConfig>>,
    /// The DHCP server's lease file as read at start.
    pub dhcp_leases: Vec<Lease>,
}

impl Control {
    pub fn new(p: ControlParts) -> Control {
        let now = Instant::now();
        let tracks = TrackSet::new(track_defs(&p.cfg), now);
        let cfg = p.cfg;
        let ifaces = 1 + cfg.uplinks.len();
        let macs: Vec<MacAddr> = p.uplinks.iter().map(|u| u.mac).collect();
        let addressing = addressing(&cfg, p.lan_mac, &macs);
        let neigh_params = NeighParams {
            max_lan: cfg.limits.lan_neighbours,
            max_uplinks: cfg.limits.uplink_neighbours,
            queue_bytes: cfg.limits.held_bytes_per_neighbour,
            ..NeighParams::default()
        };
        let ipv6 = cfg.ipv6.as_ref().map(|v6| {
            ipv6::Ipv6Plane::new(
                v6,
                cfg.dns.is_some(),
                neigh_params.clone(),
                p.lan_mac,
                &macs,
                now,
            )
        });
        let arp = ArpEngine::new(
            addressing.clone(),
            next_hops(&cfg, &p.carrier),
            neigh_params,
            now,
        );
        let uplink_dhcp = cfg
            .uplinks
            .iter()
            .zip(&p.uplinks)
            .enumerate()
            .map(|(u, (c, io))| {
                let d = c.dhcp.as_ref()?;
                let opts = ClientOptions {
                    mac: io.mac,
                    client_id: d.client_id.clone(),
                    hostname: d.hostname.clone(),
                    vendor_class: d.vendor_class.clone(),
                };
                let client = Client::new(opts, now.as_nanos() ^ u as u64, now);
                Some(UplinkDhcp::new(UplinkId(u as u8), io.mac, client))
            })
            .collect();
        let mut c = Control {
            base_cfg: cfg.clone(),
            uplink_leases: vec![None; cfg.uplinks.len()],
            uplink_dhcp,
            shared: p.shared,
            arp_punts: p.arp_punts,
            punts: p.punts,
            requests: p.requests,
            tap: p.tap,
            lan_mac: p.lan_mac,
            uplinks: p.uplinks,
            carrier: p.carrier,
            arp,
            ipv6,
            dhcp: cfg.dhcp_server.clone().map(|d| {
                let mut server = Server::new(d, addressing.lan.prefix);
                for l in server.restore(p.dhcp_leases, now) {
                    log::warn!(
                        "dhcp: lease of {} for {} from the lease file dropped: no longer fits the configuration",
                        l.ip, l.mac
                    );
                }
                DhcpService::new(server, addressing.lan)
            }),
            dns: cfg
                .dns
                .clone()
                .map(|d| DnsService::new(d, addressing.clone(), &lan6(&cfg), now.as_nanos(), now)),
            echo: EchoResponder::new(addressing),
            vrrp: Vrrp::new(cfg.vrrp.clone(), cfg.lan.address.addr()),
            tracks,
            probe_reports: p.probe_reports,
            probe_configs: p.probe_configs,
            counters: Arc::new(Counters::new(ifaces)),
            workers: p.workers,
            next_nat_expire: now,
            failover: Failover::new(cfg.failover.clone()),
            dirty: true,
            neighbours_dirty: true,
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
        c.ipv6_health(now);
        c.arp.announce(now);
        c.vrrp_priority(now);
        c.vrrp.startup(now);
        c.drain_engines();
        c
    }

    /// The router is stopping: a VRRP master hands over at once (priority 0, RFC 5798 §6.4.3).
    pub fn shutdown(&mut self) {
        self.vrrp.shutdown(Instant::now());
        self.drain_engines();
    }

    /// VRRP priorities follow the tracks that are down.
    fn vrrp_priority(&mut self, now: Instant) {
        let (cfg, tracks) = (&self.cfg, &self.tracks);
        let is_down = |name: &str| {
            cfg.track_index(name)
                .is_some_and(|t| tracks.state(t) == TrackState::Down)
        };
        self.vrrp.set_down_tracks(is_down, now);
    }

    /// Time until the control thread must act again, at most `cap`.
    pub fn timeout(&self, now: Instant, cap: Duration) -> Duration {
        let mut next = now + cap;
        for t in [
            self.tracks.next_deadline(),
            Some(self.next_nat_expire),
            self.arp.poll_timeout(),
            self.failover.poll_timeout(),
            self.vrrp.poll_timeout(),
            self.dhcp.as_ref().and_then(DhcpService::poll_timeout),
            self.dns.as_ref().and_then(DnsService::poll_timeout),
            self.ipv6.as_ref().and_then(ipv6::Ipv6Plane::poll_timeout),
        ]
        .into_iter()
        .chain(
            self.uplink_dhcp
                .iter()
                .flatten()
                .map(UplinkDhcp::poll_timeout),
        )
        .flatten()
        {
            next = next.min(t);
        }
        next.saturating_since(now)
    }

    /// One round of work: queued punts, control requests, timers, then publication.
    pub fn run_once(&mut self) {
        let now = Instant::now();
        // ARP first: a flood of the rest never delays resolving a next hop.
        for _ in 0..4096 {
            let Some(p) = self.arp_punts.try_recv().or_else(|| self.punts.try_recv()) else {
                break;
            };
            self.handle_punt(p, now);
            self.drain_engines();
        }
        while let Ok(p) = self.requests.try_recv() {
            let answer = self.answer(p.request, now);
            let _ = p.reply.send(answer);
        }
        self.probe_reports(now);
        self.timers(now);
        self.ipv6_health(now);
        self.vrrp_priority(now);
        self.drain_engines();
        if self.neighbours_dirty {
            self.publish_neighbours();
        }
        if self.dirty {
            self.publish(now);
        }
        self.dns_upstream(now);
        self.drain_engines();
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
        self.arp.set_carrier(UplinkId(u as u8), carrier, now);
        self.ipv6_health(now);
        self.vrrp_priority(now);
        self.drain_engines();
        self.dirty = true;
    }

    fn timers(&mut self, now: Instant) {
        let events = self.tracks.poll(now);
        self.track_events(events);
        self.arp.handle_timeout(now);
        if let Some(v6) = &mut self.ipv6 {
            v6.handle_timeout(now);
        }
        self.vrrp.handle_timeout(now);
        if let Some(d) = &mut self.dhcp {
            d.handle_timeout(now);
        }
        if let Some(d) = &mut self.dns {
            d.handle_timeout(now);
        }
        for d in self.uplink_dhcp.iter_mut().flatten() {
            d.handle_timeout(now);
        }
        self.lease_events(now);
        self.pd_events(now);
        let actions = self.failover.handle_timeout(
            now,
            &self.shared.snapshot.load().routes,
            &self.shared.nat.len_by_uplink(),
        );
        self.failover_actions(actions);
        if now >= self.next_nat_expire {
            self.next_nat_expire = now + Duration::from_secs(1);
            self.shared.nat.expire(now);
            self.shared.frags.expire(now);
        }
    }

    /// Results the probe thread reported, in order.
    fn probe_reports(&mut self, now: Instant) {
        while let Ok(r) = self.probe_reports.try_recv() {
            let Some(i) = self.cfg.probe_index(&r.name) else {
                continue;
            };
            let events = self.tracks.on_probe(i, &r.name, &r.stats, now);
            self.track_events(events);
        }
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
            TrackSource::Probe { name, .. } => self
                .cfg
                .probes
                .iter()
                .find(|p| &p.name == name)
                .map(|p| p.uplink.clone()),
            TrackSource::Carrier { uplink } => Some(uplink.clone()),
            TrackSource::List { .. } => None,
        }
    }

    /// Rebuilds the route table and snapshot; on an uplink losing all its installed routes,
    /// removes its NAT flows and resets their TCP connections (SPEC 21).
    fn publish(&mut self, now: Instant) {
        self.dirty = false;
        let mut snap = build_snapshot(
            &self.cfg,
            self.shared.probe_port_base,
            self.lan_mac,
            &self.uplinks,
            &self.carrier,
            self.tracks.states(),
        );
        let old = self.shared.snapshot.load_full();
        for line in RouteTable::diff(&old.routes, &snap.routes) {
            log::warn!("{line}");
        }
        self.log_ipv6_routes(&old, &snap);
        let actions = self
            .failover
            .on_routes_changed(&old.routes, &snap.routes, now);
        snap.lan.virtual_macs = self.vrrp.mastered().map(|(mac, _)| mac).collect();
        if let (Some(s), Some(v6)) = (&mut snap.ipv6, &self.ipv6) {
            v6.add_withdrawn(s);
        }
        self.shared.snapshot.store(Arc::new(snap));
        self.failover_actions(actions);
    }

    fn publish_neighbours(&mut self) {
        self.neighbours_dirty = false;
        let resolved6 = self
            .ipv6
            .as_ref()
            .map(ipv6::Ipv6Plane::resolved)
            .unwrap_or_default();
        let neighbours = build_neighbours(&self.cfg, self.arp.resolved(), resolved6);
        self.shared.neighbours.store(Arc::new(neighbours));
    }

    fn failover_actions(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Flush {
                    uplink,
                    reset_tcp,
                    forwarded,
                    reason,
                } => {
                    self.flush_uplink(uplink, reset_tcp, forwarded, &reason.to_string());
                }
                Action::FailbackScheduled { grace } => log::warn!(
                    "failback: flows on backup uplinks move in {} s",
                    grace.as_secs_f64()
                ),
            }
        }
    }

    /// Removes the uplink's NAT flows (with `forwarded`, those of its port forwards too),
    /// resetting their TCP ends (with `reset_tcp`); returns how many were removed.
    fn flush_uplink(&mut self, u: UplinkId, reset_tcp: bool, forwarded: bool, why: &str) -> usize {
        let (removed, flushed) = if forwarded {
            self.shared.nat.flush_uplink(u)
        } else {
            self.shared.nat.flush_outbound(u)
        };
        let name = self.cfg.uplinks[u.0 as usize].name.clone();
        let mut resets = 0;
        if reset_tcp {
            let lan_mac = self.lan_mac;
            for f in &flushed {
                let Some(mac) = self.arp.lookup(Iface::Lan, f.key.inside) else {
                    continue;
                };
                let rst = Transmit::ipv4(Iface::Lan, lan_mac, mac, PACKET_ROOM, |out| {
                    let ip = OwnHeader::new(f.key.remote, f.key.inside);
                    let rst = TcpRepr::rst(f.key.remote_port, f.key.inside_port, f.inside_ack);
                    tcp::build_segment(out, &ip, &rst).ok()
                });
                if let Some(t) = rst {
                    self.send(t);
                    resets += 1;
                }
            }
        }
        log::warn!(
            "uplink {name}: {why}; {removed} NAT flows removed, {resets} TCP resets sent to the LAN"
        );
        removed
    }

    fn handle_punt(&mut self, p: Punt, now: Instant) {
        match (p.resolve, &mut self.ipv6) {
            (Some((egress, IpAddr::V4(nh))), _) => {
                self.arp.send_via(egress, nh, p.frame, now);
                return;
            }
            (Some((egress, IpAddr::V6(nh))), Some(v6)) => {
                v6.send_via(egress, nh, p.frame, now);
                return;
            }
            (Some(_), None) => {
                self.counters.dropped(DropReason::NotIpv4);
                return;
            }
            (None, _) => {}
        }
        let Ok(eth) = EthernetFrame::new_checked(p.frame.get(ETH_OFFSET..).unwrap_or(&[])) else {
            self.counters.dropped(DropReason::Truncated);
            return;
        };
        match eth.ethertype() {
            ethernet::ethertype::ARP => {
                if let (Iface::Lan, Some(d)) = (p.ingress, &mut self.dhcp) {
                    d.handle_arp(&p.frame, now);
                }
                self.arp.handle_frame(p.ingress, &p.frame, now)
            }
            ethernet::ethertype::IPV4 if is_vrrp(p.ingress, &p.frame) => self
                .vrrp
                .handle_packet(p.frame.get(IP_OFFSET..).unwrap_or(&[]), now),
            ethernet::ethertype::IPV4 => self.handle_local(p.ingress, &p.frame, now),
            ethernet::ethertype::IPV6 if self.ipv6.is_some() => {
                self.handle_local6(p.ingress, &p.frame, now)
            }
            _ => self.counters.dropped(DropReason::NotIpv4),
        }
    }

    /// Sends what the engines queued and acts on what they report.
    fn drain_engines(&mut self) {
        let now = Instant::now();
        while let Some(o) = self.dns.as_mut().and_then(DnsService::poll_outgoing) {
            self.arp.send_via(o.iface, o.next_hop, o.frame, now);
        }
        for u in 0..self.uplink_dhcp.len() {
            while let Some(o) = self.uplink_dhcp[u]
                .as_mut()
                .and_then(UplinkDhcp::poll_output)
            {
                match o {
                    ClientOutput::Broadcast(t) => self.send(t),
                    ClientOutput::Unicast(o) => {
                        self.arp.send_via(o.iface, o.next_hop, o.frame, now)
                    }
                }
            }
        }
        while let Some(t) = self.arp.poll_transmit() {
            self.send(t);
        }
        while let Some(t) = self.echo.poll_transmit() {
            self.send(t);
        }
        self.drain_ipv6(now);
        while let Some(eth) = self.vrrp.poll_transmit() {
            let mut frame = vec![0u8; ETH_OFFSET];
            if VnetHdr::default().write(&mut frame).is_ok() {
                frame.extend_from_slice(&eth);
                self.send(Transmit {
                    iface: Iface::Lan,
                    frame,
                });
            }
        }
        while let Some(ev) = self.vrrp.poll_event() {
            match ev {
                VrrpEvent::Dropped(_) => self.counters.dropped(DropReason::BadVrrp),
                VrrpEvent::StateChange { .. } => {
                    log::warn!("{}", ev.log_line());
                    // Answer ARP for, and forward frames to, the virtual MACs we are master of.
                    let mastered = self
                        .vrrp
                        .mastered()
                        .flat_map(|(mac, addrs)| addrs.iter().map(move |&a| (a, mac)))
                        .collect();
                    self.arp.set_virtual(mastered);
                    self.dirty = true;
                }
                VrrpEvent::PriorityChange { .. } => log::warn!("{}", ev.log_line()),
            }
        }
        while let Some(t) = self.dhcp.as_mut().and_then(DhcpService::poll_transmit) {
            self.send(t);
        }
        self.save_leases();
        while let Some(ev) = self.arp.poll_event() {
            match ev {
                ArpEvent::Learned { iface, ip, mac } => {
                    log::debug!("arp: {ip} is-at {mac} on {}", self.iface_name(iface));
                    bump(&self.counters.neighbour_changes, 1);
                    self.neighbours_dirty = true;
                }
                ArpEvent::Removed => self.neighbours_dirty = true,
                ArpEvent::Dropped(reason) => self.counters.dropped(reason),
            }
        }
    }

    /// Packets for the router itself: DHCP requests go to the server, pings are answered; the
    /// rest is counted and dropped.
    fn handle_local(&mut self, ingress: Iface, frame: &[u8], now: Instant) {
        if let Iface::Uplink(u) = ingress
            && let Some(Some(d)) = self.uplink_dhcp.get_mut(usize::from(u.0))
            && UplinkDhcp::is_reply(frame)
        {
            if let Err(reason) = d.handle_frame(frame, now) {
                self.counters.dropped(reason);
            }
            self.lease_events(now);
            return;
        }
        let r = match (&mut self.dhcp, &mut self.dns, ingress) {
            (_, Some(d), _) if d.wants(ingress, frame) => d.handle_frame(ingress, frame, now),
            (Some(d), _, Iface::Lan) if DhcpService::is_request(frame) => {
                d.handle_frame(frame, now)
            }
            _ => self.echo.handle_frame(ingress, frame),
        };
        if let Err(reason) = r {
            self.counters.dropped(reason);
        }
    }

    /// The one send path of the control thread.
    fn send(&self, t: Transmit) {
        let r = match t.iface {
            Iface::Lan => self.tap.write(&t.frame),
            Iface::Uplink(u) => match self.uplinks.get(u.0 as usize) {
                Some(io) => io.tx.send(&t.frame),
                None => return,
            },
        };
        match r {
            Ok(()) => self.counters.tx(t.iface.index(), t.frame.len()),
            Err(e) => {
                log::debug!("send on {} failed: {e}", self.iface_name(t.iface));
                self.counters.dropped(DropReason::TxError);
            }
        }
    }

    fn addressing(&self) -> Addressing {
        let macs: Vec<MacAddr> = self.uplinks.iter().map(|u| u.mac).collect();
        addressing(&self.cfg, self.lan_mac, &macs)
    }

    fn iface_name(&self, iface: Iface) -> String {
        views::iface_name(&self.cfg, iface)
    }

    /// Stops the data plane: workers see the flag at their next wakeup.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// A VRRP advertisement (or anything else sent to the VRRP protocol) received on the LAN.
fn is_vrrp(ingress: Iface, frame: &[u8]) -> bool {
    ingress == Iface::Lan
        && frame
            .get(IP_OFFSET..)
            .is_some_and(|ip| Ipv4Packet::new_unchecked(ip).protocol() == vrrp::PROTOCOL)
}
