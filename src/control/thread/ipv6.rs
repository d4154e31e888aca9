//! The control thread's IPv6 (SPEC 32, 33): neighbour discovery on every interface (DAD for the
//! router's addresses, answers, next hops and LAN hosts resolved for the fast path), Router
//! Advertisements on the LAN whose prefixes follow the uplinks' health, echo replies for the
//! router's addresses, DNS queries to its LAN addresses handed to the forwarder, and the
//! uplinks' DHCPv6 prefix delegation clients. The engines are `ndp`, `ra` and `dhcp::pd`;
//! this only feeds them.
//!
//! The router has an address in each LAN prefix (::1, `ProviderPrefix::lan_address`), which it
//! uses once DAD has passed; a delegated prefix's comes and goes with the delegation. The RAs list all of them as DNS servers (RFC 8106), in the
//! configuration's order and whatever the uplinks' health: a LAN address stays reachable on the
//! link when its uplink's prefix is deprecated (only its SLAAC addresses stop being chosen as
//! sources), so a host's DNS keeps working through a failover. RAs start once the LAN
//! link-local address has passed DAD and the uplinks' health is measured (every track watching
//! an uplink has seen its first probe or carrier state, as IPv4 routes wait for it), or at the
//! latest `MAX_START_WAIT` after start.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::time::Duration;

use super::*;
use crate::config::{Ipv6Config, ProviderPrefix};
use crate::control::ndp::{DadParams, NdpEngine, NdpEvent};
use crate::control::ra::{LanPrefix, RaConfig, RaEngine, RaParams};
use crate::control::unreachable6::address_unreachable;
use crate::control::uplink_pd::UplinkPd;
use crate::dhcp::pd;
use crate::fastpath::ERRORS_PER_SECOND;
use crate::fastpath::ratelimit::RateLimit;
use crate::prefix6::Ipv6Prefix;
use crate::route::source6::UplinkPrefix;
use crate::shared::ipv6_up;
use crate::snapshot::Ipv6State;
use crate::wire::icmpv6::{self, EchoRepr, Icmpv6Packet, types};
use crate::wire::ipv6::{self as wire6, Ipv6Packet, next_header};
use crate::wire::ndisc;

/// Room for an echo reply: as large as any request the LAN or an uplink can carry.
const ECHO_ROOM: usize = 9000;
/// The longest the first RA waits for the uplinks' health to be measured.
const MAX_START_WAIT: Duration = Duration::from_secs(10);

pub(super) struct Ipv6Plane {
    ndp: NdpEngine,
    ra: RaEngine,
    /// Per uplink: its DHCPv6 prefix delegation client (`prefix6 = "dhcpv6-pd"`).
    pd: Vec<Option<UplinkPd>>,
    /// The DNS forwarder runs: the RAs name the router's LAN addresses.
    dns: bool,
    /// NPTv6: the LAN has the internal prefix only, whatever the uplinks' prefixes.
    npt6: bool,
    /// Per uplink: the router's address in its LAN prefix, while it has one (none with NPTv6).
    lan_addrs: Vec<Option<Ipv6Addr>>,
    /// Per uplink: its next hop, if it has IPv6 (kept resolved).
    next_hops: Vec<Option<Ipv6Addr>>,
    /// Per uplink: whether it carries IPv6 now, as last told to the RAs.
    up: Vec<bool>,
    /// Whether every uplink's health has been measured once.
    measured: bool,
    /// RAs start by then even if it has not been.
    start_by: Instant,
    /// The router's addresses, by interface.
    local: Vec<(Iface, Ipv6Addr)>,
    macs: HashMap<Iface, MacAddr>,
    /// ICMPv6 errors this thread sends (address unreachable).
    errors: RateLimit,
}

impl Ipv6Plane {
    /// `dns`: the DNS forwarder runs, so the RAs advertise the router's LAN addresses.
    pub(super) fn new(
        v6: &Ipv6Config,
        dns: bool,
        params: NeighParams,
        lan_mac: MacAddr,
        uplink_macs: &[MacAddr],
        now: Instant,
    ) -> Ipv6Plane {
        let mut ndp = NdpEngine::new(params, DadParams::default(), now);
        let mut macs = HashMap::from([(Iface::Lan, lan_mac)]);
        ndp.add_interface(Iface::Lan, lan_mac, now);
        let mut local = vec![(Iface::Lan, ndisc::link_local(lan_mac))];
        let mut prefixes = Vec::new();
        let mut lan_addrs = vec![None; v6.uplinks.len()];
        let mut pd = Vec::new();
        for (u, c) in v6.uplinks.iter().enumerate() {
            let client = match (c, uplink_macs.get(u)) {
                (Some(c), Some(&mac)) if c.pd.is_some() => {
                    Some(UplinkPd::new(UplinkId(u as u8), mac, now))
                }
                _ => None,
            };
            pd.push(client);
            let (Some(c), Some(&mac)) = (c, uplink_macs.get(u)) else {
                continue;
            };
            let id = UplinkId(u as u8);
            let iface = Iface::Uplink(id);
            macs.insert(iface, mac);
            ndp.add_interface(iface, mac, now);
            local.push((iface, ndisc::link_local(mac)));
            if let Some(a) = c.address {
                ndp.add_address(iface, a.addr(), now);
                local.push((iface, a.addr()));
            }
            if v6.npt6_prefix.is_none() {
                prefixes.extend(c.provider.map(|p| LanPrefix {
                    uplink: Some(id),
                    prefix: p.lan_prefix,
                }));
                lan_addrs[u] = c.provider.map(|p| p.lan_prefix.host(1));
            }
        }
        // NPTv6: the LAN sees only the internal prefix (SPEC 33).
        prefixes.extend(v6.npt6_prefix.map(|prefix| LanPrefix {
            uplink: None,
            prefix,
        }));
        for a in v6.lan_addresses() {
            ndp.add_address(Iface::Lan, a.addr(), now);
            local.push((Iface::Lan, a.addr()));
        }
        let ra = RaEngine::new(
            RaConfig {
                lan_mac,
                prefixes,
                dns: if dns {
                    v6.lan_addresses().iter().map(|a| a.addr()).collect()
                } else {
                    Vec::new()
                },
                params: RaParams::default(),
            },
            now.as_nanos(),
            now,
        );
        Ipv6Plane {
            ndp,
            ra,
            pd,
            dns,
            npt6: v6.npt6_prefix.is_some(),
            lan_addrs,
            next_hops: v6
                .uplinks
                .iter()
                .map(|c| c.as_ref().map(|c| c.next_hop))
                .collect(),
            up: vec![false; v6.uplinks.len()],
            measured: false,
            start_by: now + MAX_START_WAIT,
            local,
            macs,
            errors: RateLimit::per_second(ERRORS_PER_SECOND),
        }
    }

    /// The uplinks' health changed (or may have): each uplink whose IPv6 state changed has its
    /// prefix deprecated or restored in the RAs (SPEC 33). `measured`: every uplink's health
    /// has been observed once.
    pub(super) fn set_health(&mut self, up: &[bool], measured: bool, now: Instant) {
        for (u, (&new, old)) in up.iter().zip(self.up.iter_mut()).enumerate() {
            if new != *old {
                *old = new;
                self.ra.set_uplink(UplinkId(u as u8), new, now);
            }
        }
        self.measured |= measured;
        self.start_ra(now);
    }

    /// Starts the RAs when the router may send them (RFC 4861 §6.2.2: from a link-local
    /// address that passed DAD) and they can say which prefixes are usable.
    fn start_ra(&mut self, now: Instant) {
        if !self.ra.is_started()
            && self.ndp.is_usable(Iface::Lan, self.ra.source())
            && (self.measured || now >= self.start_by)
        {
            self.ra.start(now);
        }
    }

    /// True for one of the router's addresses on `iface` that is in use (DAD passed).
    pub(super) fn is_usable(&self, iface: Iface, addr: Ipv6Addr) -> bool {
        self.local.contains(&(iface, addr)) && self.ndp.is_usable(iface, addr)
    }

    /// An IPv6 frame punted to the control thread: a DHCPv6 answer to an uplink's prefix
    /// delegation client, neighbour discovery, else an echo request to one of the router's
    /// addresses.
    pub(super) fn handle_frame(
        &mut self,
        ingress: Iface,
        frame: &[u8],
        now: Instant,
    ) -> Result<(), DropReason> {
        if let Iface::Uplink(u) = ingress
            && let Some(Some(c)) = self.pd.get_mut(usize::from(u.0))
            && UplinkPd::is_reply(frame)
        {
            return c.handle_frame(frame, now);
        }
        let ip = Ipv6Packet::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[]))
            .map_err(|_| DropReason::BadIpHeader)?;
        let upper = ip.upper_layer().map_err(|_| DropReason::BadIpHeader)?;
        let icmp = ip.payload().get(upper.offset..).unwrap_or(&[]);
        if upper.protocol != next_header::ICMPV6 || upper.fragment.is_some() {
            return Err(DropReason::LocalUnhandled);
        }
        let msg_type = icmp.first().copied().unwrap_or(0);
        if ndisc::is_ndisc(msg_type) {
            if ingress == Iface::Lan && msg_type == types::ROUTER_SOLICIT {
                self.ra.handle_frame(frame, now);
            }
            self.ndp.handle_frame(ingress, frame, now);
            return Ok(());
        }
        if msg_type != types::ECHO_REQUEST || !self.is_usable(ingress, ip.dst()) {
            return Err(DropReason::LocalUnhandled);
        }
        let req = Icmpv6Packet::new_checked(icmp).map_err(|_| DropReason::BadL4Header)?;
        if !req.verify_checksum(ip.src(), ip.dst()) {
            return Err(DropReason::BadL4Header);
        }
        let (src, dst) = (ip.dst(), ip.src());
        let my_mac = *self.macs.get(&ingress).ok_or(DropReason::LocalUnhandled)?;
        let echo = EchoRepr {
            msg_type: types::ECHO_REPLY,
            ident: req.ident(),
            seq: req.seq_no(),
        };
        let reply = Transmit::ipv6(ingress, my_mac, MacAddr::ZERO, ECHO_ROOM, |out| {
            icmpv6::build_echo(out, &wire6::OwnHeader::new(src, dst), &echo, req.payload()).ok()
        })
        .ok_or(DropReason::LocalUnhandled)?;
        // On an uplink only the link is direct; the rest is behind the next hop.
        let next_hop = match ingress {
            Iface::Uplink(u) if !dst.is_unicast_link_local() => self
                .next_hops
                .get(usize::from(u.0))
                .copied()
                .flatten()
                .unwrap_or(dst),
            _ => dst,
        };
        self.ndp.send_via(ingress, next_hop, reply.frame, now);
        Ok(())
    }

    /// A frame the fast path completed but for its next hop's MAC.
    pub(super) fn send_via(
        &mut self,
        egress: Iface,
        next_hop: Ipv6Addr,
        frame: Vec<u8>,
        now: Instant,
    ) {
        self.ndp.send_via(egress, next_hop, frame, now);
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        self.ndp.handle_timeout(now);
        self.start_ra(now);
        self.ra.handle_timeout(now);
        for c in self.pd.iter_mut().flatten() {
            c.handle_timeout(now);
        }
        for (u, nh) in self.next_hops.iter().enumerate() {
            if let Some(nh) = nh {
                self.ndp.want(Iface::Uplink(UplinkId(u as u8)), *nh, now);
            }
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let start = (!self.ra.is_started()).then_some(self.start_by);
        [self.ndp.poll_timeout(), self.ra.poll_timeout(), start]
            .into_iter()
            .chain(self.pd.iter().flatten().map(UplinkPd::poll_timeout))
            .flatten()
            .min()
    }

    pub(super) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ndp
            .poll_transmit()
            .or_else(|| self.ra.poll_transmit())
            .or_else(|| {
                self.pd
                    .iter_mut()
                    .flatten()
                    .find_map(UplinkPd::poll_transmit)
            })
    }

    /// The next event of a prefix delegation client, with its uplink.
    pub(super) fn poll_pd_event(&mut self) -> Option<(usize, pd::Event)> {
        self.pd
            .iter_mut()
            .enumerate()
            .find_map(|(u, c)| Some((u, c.as_mut()?.poll_event()?)))
    }

    /// Per uplink: the prefix delegated to it now.
    pub(super) fn delegated(&self) -> Vec<Option<Ipv6Prefix>> {
        self.pd
            .iter()
            .map(|c| Some(c.as_ref()?.client().delegation()?.prefix))
            .collect()
    }

    /// The prefix delegation clients, for `show ipv6` and the metrics.
    pub(super) fn pd_info(&self, now: Instant) -> Vec<views::PdInfo> {
        self.pd
            .iter()
            .enumerate()
            .filter_map(|(uplink, c)| {
                let c = c.as_ref()?.client();
                Some(views::PdInfo {
                    uplink,
                    state: c.state(),
                    delegation: c.delegation().cloned(),
                    counters: c.counters().clone(),
                    now,
                })
            })
            .collect()
    }

    /// Uplink `u`'s prefixes changed with its delegation: the router's LAN address moves to
    /// the new LAN prefix (DAD first), the RAs name it as DNS server and withdraw the old prefix.
    /// With NPTv6 nothing on the LAN changes: only the translation (in the snapshot) does.
    pub(super) fn set_lan_prefix(&mut self, u: UplinkId, p: Option<ProviderPrefix>, now: Instant) {
        if self.npt6 {
            return;
        }
        let new = p.map(|p| p.lan_prefix.host(1));
        if let Some(slot) = self.lan_addrs.get_mut(usize::from(u.0))
            && *slot != new
        {
            if let Some(old) = slot.take() {
                self.ndp.remove_address(Iface::Lan, old);
                self.local.retain(|&l| l != (Iface::Lan, old));
            }
            if let Some(a) = new {
                self.ndp.add_address(Iface::Lan, a, now);
                self.local.push((Iface::Lan, a));
            }
            *slot = new;
            if self.dns {
                self.ra
                    .set_dns(self.lan_addrs.iter().flatten().copied().collect());
            }
        }
        self.ra.set_prefix(u, p.map(|p| p.lan_prefix), now);
    }

    /// The fast path's view of withdrawn LAN prefixes: still the LAN's, owned by a dead uplink,
    /// so a flow from one gets code 5 at once (as from a dead uplink's prefix) rather than
    /// silence.
    pub(super) fn add_withdrawn(&self, state: &mut Ipv6State) {
        for (w, uplink) in self.ra.withdrawn().filter_map(|w| Some((w, w.uplink?))) {
            state.lan_prefixes.push(w.prefix);
            state.uplinks.push(UplinkPrefix {
                uplink,
                prefix: w.prefix,
                up: false,
                translates: false,
            });
        }
    }

    pub(super) fn poll_event(&mut self) -> Option<NdpEvent> {
        self.ndp.poll_event()
    }

    pub(super) fn resolved(&self) -> HashMap<(Iface, Ipv6Addr), MacAddr> {
        self.ndp.resolved()
    }

    /// The router's LAN addresses (one per LAN prefix) and whether each is in use, for `show`.
    pub(super) fn lan_addresses(&self) -> Vec<(Ipv6Addr, bool)> {
        self.local
            .iter()
            .filter(|(i, a)| *i == Iface::Lan && !a.is_unicast_link_local())
            .map(|&(i, a)| (a, self.ndp.is_usable(i, a)))
            .collect()
    }

    /// The DNS servers the RAs name, for `show`.
    pub(super) fn rdnss(&self) -> &[Ipv6Addr] {
        self.ra.dns()
    }

    /// Whether RAs are sent yet, for `show`.
    pub(super) fn advertising(&self) -> bool {
        self.ra.is_started()
    }

    /// What the RAs say now, for `show`.
    pub(super) fn advert(&self) -> (ndisc::RouterAdvert, Vec<ndisc::PrefixInfo>) {
        self.ra.advert()
    }
}

impl Control {
    /// Logs each IPv6 route change between two snapshots (SPEC 24, 34).
    pub(super) fn log_ipv6_routes(
        &self,
        old: &crate::snapshot::Snapshot,
        new: &crate::snapshot::Snapshot,
    ) {
        let (Some(o), Some(n)) = (&old.ipv6, &new.ipv6) else {
            return;
        };
        let name = |u| self.iface_name(Iface::Uplink(u));
        for line in crate::route::table6::diff(&o.routes, &n.routes, name) {
            log::warn!("{line}");
        }
    }

    /// Tells the RAs which uplinks carry IPv6 now (carrier and tracks), and whether that is
    /// measured yet: an uplink without carrier is, one with carrier once every track watching
    /// it has seen its first observation.
    pub(super) fn ipv6_health(&mut self, now: Instant) {
        let mut up = ipv6_up(&self.cfg, &self.carrier, &self.tracks.states());
        // A delegated uplink carries IPv6 only while it holds a prefix.
        if let Some(v6) = &self.cfg.ipv6 {
            for (up, c) in up.iter_mut().zip(&v6.uplinks) {
                *up &= c.as_ref().is_none_or(|c| c.provider.is_some());
            }
        }
        let all_carrier = vec![true; self.carrier.len()];
        let settled = ipv6_up(&self.cfg, &all_carrier, &self.tracks.settled());
        let measured = self.carrier.iter().zip(&settled).all(|(&c, &s)| !c || s);
        if let Some(v6) = &mut self.ipv6 {
            v6.set_health(&up, measured, now);
        }
    }

    /// An IPv6 frame for the router itself: DNS to one of its LAN addresses in use goes to
    /// the forwarder; the rest is the IPv6 plane's.
    pub(super) fn handle_local6(&mut self, ingress: Iface, frame: &[u8], now: Instant) {
        let Some(v6) = &mut self.ipv6 else {
            return self.counters.dropped(DropReason::NotIpv4);
        };
        let dst = Ipv6Packet::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[])).map(|p| p.dst());
        let r = match (&mut self.dns, dst) {
            (Some(d), Ok(dst))
                if ingress == Iface::Lan
                    && v6.is_usable(ingress, dst)
                    && !dst.is_unicast_link_local()
                    && is_udp_or_tcp(frame) =>
            {
                d.handle_frame6(frame, now)
            }
            _ => v6.handle_frame(ingress, frame, now),
        };
        if let Err(reason) = r {
            self.counters.dropped(reason);
        }
    }

    /// Acts on what neighbour discovery reports and sends what the IPv6 engines queued.
    pub(super) fn drain_ipv6(&mut self, now: Instant) {
        let Some(v6) = &mut self.ipv6 else {
            return;
        };
        while let Some((frame, client)) = self.dns.as_mut().and_then(DnsService::poll_outgoing6) {
            v6.send_via(Iface::Lan, client, frame, now);
        }
        let mut events = Vec::new();
        while let Some(ev) = v6.poll_event() {
            events.push(ev);
        }
        for ev in events {
            match ev {
                NdpEvent::Learned { iface, ip, mac } => {
                    log::debug!("ndp: {ip} is-at {mac} on {}", self.iface_name(iface));
                    bump(&self.counters.neighbour_changes, 1);
                    self.neighbours_dirty = true;
                }
                NdpEvent::Removed => self.neighbours_dirty = true,
                NdpEvent::AddressReady { iface, addr } => {
                    log::info!("ipv6: {addr} on {} is in use", self.iface_name(iface));
                }
                NdpEvent::Duplicate { iface, addr } => log::warn!(
                    "ipv6: {addr} on {} is used by another node (duplicate address detection); not used",
                    self.iface_name(iface)
                ),
                NdpEvent::Dropped(reason) => self.counters.dropped(reason),
                NdpEvent::Unresolved { iface, frame } => self.unresolved(iface, frame, now),
            }
        }
        let Some(v6) = &mut self.ipv6 else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = v6.poll_transmit() {
            out.push(t);
        }
        for t in out {
            self.send(t);
        }
    }

    /// A held frame whose neighbour never answered: counted, and for a LAN address its sender
    /// gets ICMPv6 address unreachable (SPEC 34), within the error rate.
    fn unresolved(&mut self, iface: Iface, mut frame: Vec<u8>, now: Instant) {
        self.counters.dropped(DropReason::NoNeighbour);
        let Some(v6) = &mut self.ipv6 else {
            return;
        };
        if iface != Iface::Lan || !v6.errors.take(now) {
            return;
        }
        if let Some(u) = address_unreachable(&self.shared.snapshot.load(), &mut frame) {
            bump(&self.counters.icmp_errors_sent, 1);
            v6.send_via(u.transmit.iface, u.next_hop, u.transmit.frame, now);
        }
    }
}

/// The router's IPv6 LAN addresses (::1 of each LAN prefix) with their prefix lengths.
pub(super) fn lan6(cfg: &Config) -> Vec<Ipv6Prefix> {
    cfg.ipv6
        .iter()
        .flat_map(Ipv6Config::lan_addresses)
        .collect()
}

/// True for an IPv6 packet whose upper layer is UDP or TCP.
fn is_udp_or_tcp(frame: &[u8]) -> bool {
    Ipv6Packet::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[]))
        .and_then(|p| p.upper_layer())
        .is_ok_and(|u| matches!(u.protocol, next_header::UDP | next_header::TCP))
}

#[cfg(test)]
mod tests;
