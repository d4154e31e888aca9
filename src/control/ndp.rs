//! IPv6 neighbour discovery engine (RFC 4861, RFC 4862 §5.4; SPEC 32): the IPv6 counterpart of
//! `arp.rs`. It answers neighbour solicitations for the router's own addresses, runs duplicate
//! address detection on each own address before it answers for it, and resolves next hops for
//! frames that could not be sent, holding them (bounded, in the neighbour cache) until the
//! advertisement comes or it gives up. Router solicitations and advertisements are `ra.rs`'s.
//! Pure: frames and the clock come in, frames to send and events come out.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv6Addr;
use std::time::Duration;

use super::Transmit;
use crate::Iface;
use crate::clock::Instant;
use crate::counters::DropReason;
use crate::neigh::{NeighParams, NeighTable, Resolve};
use crate::wire::ethernet::{EthernetFrame, MacAddr};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::ndisc::{self, Message, NaFlags, NdOption, NdPacket, NdRepr};

/// How often the cache is polled for retries, refreshes and expiry.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Room for any frame this engine builds (an NS or NA with one link-layer option).
const ND_CAPACITY: usize = 40 + 24 + 8;

/// Duplicate address detection (RFC 4862 §5.4): how many solicitations, how far apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DadParams {
    /// DupAddrDetectTransmits; 0 turns DAD off (the address is usable at once).
    pub transmits: u32,
    /// RetransTimer: the wait after each solicitation.
    pub retrans: Duration,
}

impl Default for DadParams {
    /// The RFC defaults: one solicitation, one second.
    fn default() -> Self {
        DadParams {
            transmits: 1,
            retrans: Duration::from_secs(1),
        }
    }
}

/// What the engine reports besides frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NdpEvent {
    /// `ip` is at a new `mac` on `iface`: the published neighbours are stale.
    Learned {
        iface: Iface,
        ip: Ipv6Addr,
        mac: MacAddr,
    },
    /// Entries expired or were given up on: the published neighbours are stale.
    Removed,
    /// An own address passed DAD and is in use from now on.
    AddressReady { iface: Iface, addr: Ipv6Addr },
    /// Another node uses (or is claiming) an own address: it is not used (RFC 4862 §5.4.5).
    Duplicate { iface: Iface, addr: Ipv6Addr },
    /// A frame was dropped (bad ND packet, or no room to hold it).
    Dropped(DropReason),
    /// A held frame was dropped: its neighbour on `iface` never answered (counted as
    /// `no_neighbour`; its sender may be told, ICMPv6 address unreachable).
    Unresolved { iface: Iface, frame: Vec<u8> },
}

/// Where an own address is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddrState {
    /// DAD running: `sent` solicitations so far, the next step due at `next`.
    Tentative {
        sent: u32,
        next: Instant,
    },
    Preferred,
    Duplicate,
}

#[derive(Debug, Clone, Copy)]
struct OwnAddr {
    iface: Iface,
    addr: Ipv6Addr,
    state: AddrState,
}

pub struct NdpEngine {
    /// The router's MAC on each interface it speaks IPv6 on.
    macs: HashMap<Iface, MacAddr>,
    own: Vec<OwnAddr>,
    dad: DadParams,
    neigh: NeighTable<Ipv6Addr>,
    next_poll: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<NdpEvent>,
}

impl NdpEngine {
    pub fn new(params: NeighParams, dad: DadParams, now: Instant) -> NdpEngine {
        NdpEngine {
            macs: HashMap::new(),
            own: Vec::new(),
            dad,
            neigh: NeighTable::new(params),
            next_poll: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Brings IPv6 up on `iface` with the router's `mac` there: its link-local address
    /// (modified EUI-64) starts DAD like any other own address.
    pub fn add_interface(&mut self, iface: Iface, mac: MacAddr, now: Instant) {
        self.macs.insert(iface, mac);
        self.add_address(iface, ndisc::link_local(mac), now);
    }

    /// Adds an own address on `iface` (an interface added before) and starts DAD on it: the
    /// address is answered for and used only once DAD has passed (`AddressReady`). Adding an
    /// address again restarts nothing.
    pub fn add_address(&mut self, iface: Iface, addr: Ipv6Addr, now: Instant) {
        if !self.macs.contains_key(&iface)
            || self.own.iter().any(|o| o.iface == iface && o.addr == addr)
        {
            return;
        }
        let state = if self.dad.transmits == 0 {
            self.events
                .push_back(NdpEvent::AddressReady { iface, addr });
            AddrState::Preferred
        } else {
            AddrState::Tentative { sent: 0, next: now }
        };
        self.own.push(OwnAddr { iface, addr, state });
        self.run_dad(now);
    }

    /// Removes an own address (a prefix withdrawn); it is no longer answered for.
    pub fn remove_address(&mut self, iface: Iface, addr: Ipv6Addr) {
        self.own.retain(|o| !(o.iface == iface && o.addr == addr));
    }

    /// True when `addr` is an own address on `iface` that passed DAD.
    pub fn is_usable(&self, iface: Iface, addr: Ipv6Addr) -> bool {
        self.state(iface, addr) == Some(AddrState::Preferred)
    }

    fn state(&self, iface: Iface, addr: Ipv6Addr) -> Option<AddrState> {
        self.own
            .iter()
            .find(|o| o.iface == iface && o.addr == addr)
            .map(|o| o.state)
    }

    /// The source for solicitations on `iface`: its link-local address once usable, else any
    /// usable own address there.
    fn source(&self, iface: Iface) -> Option<Ipv6Addr> {
        let mac = self.macs.get(&iface)?;
        let ll = ndisc::link_local(*mac);
        if self.is_usable(iface, ll) {
            return Some(ll);
        }
        self.own
            .iter()
            .find(|o| o.iface == iface && o.state == AddrState::Preferred)
            .map(|o| o.addr)
    }

    /// An IPv6 frame (vnet header, Ethernet, IPv6) carrying neighbour discovery that arrived on
    /// `ingress`. Anything that does not pass RFC 4861's checks is dropped and counted.
    pub fn handle_frame(&mut self, ingress: Iface, frame: &[u8], now: Instant) {
        let Some(&my_mac) = self.macs.get(&ingress) else {
            return;
        };
        let eth = EthernetFrame::new_unchecked(frame.get(ETH_OFFSET..).unwrap_or(&[]));
        let Ok(ip) = Ipv6Packet::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[])) else {
            self.drop_bad();
            return;
        };
        let Ok(nd) = NdPacket::parse(&ip) else {
            self.drop_bad();
            return;
        };
        let lladdr = nd.link_addr();
        match nd.message {
            Message::NeighborSolicit { target } => {
                // RFC 4861 §7.1.1: DAD probes come from :: to the solicited-node group and
                // carry no source link-layer address.
                if nd.src.is_unspecified()
                    && (nd.dst != ndisc::solicited_node(target) || lladdr.is_some())
                {
                    self.drop_bad();
                    return;
                }
                match self.state(ingress, target) {
                    Some(AddrState::Tentative { .. }) if nd.src.is_unspecified() => {
                        self.duplicate(ingress, target);
                    }
                    Some(AddrState::Preferred) => {
                        if !nd.src.is_unspecified()
                            && let Some(mac) = lladdr
                        {
                            self.learn(ingress, nd.src, mac, true, now);
                        }
                        self.advertise(ingress, my_mac, target, &nd, eth.src());
                    }
                    _ => {}
                }
            }
            Message::NeighborAdvert { flags, target } => {
                // RFC 4861 §7.1.2: a solicited advertisement to a multicast group is invalid.
                if flags.solicited && nd.dst.is_multicast() {
                    self.drop_bad();
                    return;
                }
                match self.state(ingress, target) {
                    Some(AddrState::Tentative { .. }) => self.duplicate(ingress, target),
                    // Someone else claims an address in use: RFC 4862 §5.4.4 leaves it to
                    // the administrator; the router keeps it and defends it with its answers.
                    Some(_) => {}
                    None => {
                        if let Some(mac) = lladdr.filter(|m| m.is_unicast()) {
                            self.learn(ingress, target, mac, false, now);
                        }
                    }
                }
            }
            Message::RouterSolicit | Message::RouterAdvert(_) => {}
        }
    }

    fn drop_bad(&mut self) {
        self.events
            .push_back(NdpEvent::Dropped(DropReason::BadL4Header));
    }

    fn learn(&mut self, iface: Iface, ip: Ipv6Addr, mac: MacAddr, create: bool, now: Instant) {
        let Ok((changed, held)) = self.neigh.learn(iface, ip, mac, create, now) else {
            // No room on that side: not remembered.
            self.events
                .push_back(NdpEvent::Dropped(DropReason::NeighbourTableFull));
            return;
        };
        if changed {
            self.events.push_back(NdpEvent::Learned { iface, ip, mac });
        }
        for f in held {
            self.transmits.push_back(Transmit::resolved(iface, f, mac));
        }
    }

    fn duplicate(&mut self, iface: Iface, addr: Ipv6Addr) {
        if let Some(o) = self
            .own
            .iter_mut()
            .find(|o| o.iface == iface && o.addr == addr)
        {
            o.state = AddrState::Duplicate;
            self.events.push_back(NdpEvent::Duplicate { iface, addr });
        }
    }

    /// The answer to a solicitation for `target` (RFC 4861 §7.2.4): unicast to the solicitor,
    /// or to all nodes with S clear when it solicited from :: (DAD).
    fn advertise(
        &mut self,
        iface: Iface,
        my_mac: MacAddr,
        target: Ipv6Addr,
        ns: &NdPacket,
        eth_src: MacAddr,
    ) {
        let (dst, dst_mac, solicited) = if ns.src.is_unspecified() {
            (
                ndisc::ALL_NODES,
                ndisc::multicast_mac(ndisc::ALL_NODES),
                false,
            )
        } else {
            (ns.src, ns.link_addr().unwrap_or(eth_src), true)
        };
        let flags = NaFlags {
            router: true,
            solicited,
            override_: true,
        };
        let repr = NdRepr {
            src: target,
            dst,
            message: Message::NeighborAdvert { flags, target },
            options: &[NdOption::TargetLinkAddr(my_mac)],
        };
        self.send(iface, my_mac, dst_mac, &repr);
    }

    fn send(&mut self, iface: Iface, src_mac: MacAddr, dst_mac: MacAddr, repr: &NdRepr) {
        if let Some(t) = Transmit::ipv6(iface, src_mac, dst_mac, ND_CAPACITY, |buf| {
            ndisc::build(buf, repr).ok()
        }) {
            self.transmits.push_back(t);
        }
    }

    /// A multicast solicitation for `target` from `src` (:: for DAD, without the source
    /// link-layer option then).
    fn solicit(&mut self, iface: Iface, src: Ipv6Addr, target: Ipv6Addr) {
        let Some(&mac) = self.macs.get(&iface) else {
            return;
        };
        let group = ndisc::solicited_node(target);
        let with_lladdr = [NdOption::SourceLinkAddr(mac)];
        let repr = NdRepr {
            src,
            dst: group,
            message: Message::NeighborSolicit { target },
            options: if src.is_unspecified() {
                &[]
            } else {
                &with_lladdr
            },
        };
        self.send(iface, mac, ndisc::multicast_mac(group), &repr);
    }

    /// A frame rewritten completely but for its destination MAC, to go to `next_hop` on
    /// `egress`: sent at once if the neighbour is known, else held while it is resolved.
    pub fn send_via(&mut self, egress: Iface, next_hop: Ipv6Addr, frame: Vec<u8>, now: Instant) {
        if let Some(mac) = self.neigh.lookup(egress, next_hop) {
            self.transmits
                .push_back(Transmit::resolved(egress, frame, mac));
            return;
        }
        match self.neigh.resolve(egress, next_hop, Some(frame), now) {
            Resolve::Request => self.request(egress, next_hop),
            Resolve::Known(_) | Resolve::Pending => {}
            Resolve::Dropped => self
                .events
                .push_back(NdpEvent::Dropped(DropReason::NoNeighbour)),
        }
    }

    /// Asks for `next_hop` on `egress` without a frame to hold (an uplink's next hop, kept
    /// resolved).
    pub fn want(&mut self, egress: Iface, next_hop: Ipv6Addr, now: Instant) {
        if self.neigh.resolve(egress, next_hop, None, now) == Resolve::Request {
            self.request(egress, next_hop);
        }
    }

    fn request(&mut self, iface: Iface, target: Ipv6Addr) {
        // No usable source yet (DAD still running): the cache's retry asks again later.
        if let Some(src) = self.source(iface) {
            self.solicit(iface, src, target);
        }
    }

    fn run_dad(&mut self, now: Instant) {
        let mut probes = Vec::new();
        for o in &mut self.own {
            let AddrState::Tentative { sent, next } = o.state else {
                continue;
            };
            if now < next {
                continue;
            }
            if sent >= self.dad.transmits {
                o.state = AddrState::Preferred;
                self.events.push_back(NdpEvent::AddressReady {
                    iface: o.iface,
                    addr: o.addr,
                });
            } else {
                o.state = AddrState::Tentative {
                    sent: sent + 1,
                    next: now + self.dad.retrans,
                };
                probes.push((o.iface, o.addr));
            }
        }
        for (iface, addr) in probes {
            self.solicit(iface, Ipv6Addr::UNSPECIFIED, addr);
        }
    }

    /// DAD steps, and retries, refreshes and expiry of the cache.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.run_dad(now);
        if now < self.next_poll {
            return;
        }
        self.next_poll = now + POLL_INTERVAL;
        let out = self.neigh.poll(now);
        for (iface, ip) in out.requests {
            self.request(iface, ip);
        }
        for (iface, frame) in out.dropped_frames {
            self.events.push_back(NdpEvent::Unresolved { iface, frame });
        }
        if !out.removed.is_empty() {
            self.events.push_back(NdpEvent::Removed);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let dad = self.own.iter().filter_map(|o| match o.state {
            AddrState::Tentative { next, .. } => Some(next),
            _ => None,
        });
        dad.chain([self.next_poll]).min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<NdpEvent> {
        self.events.pop_front()
    }

    pub fn lookup(&self, iface: Iface, ip: Ipv6Addr) -> Option<MacAddr> {
        self.neigh.lookup(iface, ip)
    }

    /// Resolved neighbours, for publishing to the workers.
    pub fn resolved(&self) -> HashMap<(Iface, Ipv6Addr), MacAddr> {
        self.neigh.resolved()
    }
}

#[cfg(test)]
mod tests;
