//! ARP engine (SPEC 2): answers requests for the router's own addresses, announces them, keeps
//! every uplink's next hop resolved, and resolves next hops for frames the fast path could not
//! send, holding them (bounded, in the neighbour cache) until the answer comes or it gives up.
//! Pure: frames and the clock come in, frames to send and events come out.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use super::{Addressing, Transmit};
use crate::clock::Instant;
use crate::counters::DropReason;
use crate::neigh::{NeighParams, NeighTable, Resolve};
use crate::wire::arp::{self, ArpPacket};
use crate::wire::ethernet::MacAddr;
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::vnet::VnetHdr;
use crate::{Iface, UplinkId};

/// How often the cache is polled for retries, refreshes and expiry.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What the engine reports besides frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArpEvent {
    /// `ip` is at a new `mac` on `iface`: the published neighbours are stale.
    Learned {
        iface: Iface,
        ip: Ipv4Addr,
        mac: MacAddr,
    },
    /// Entries expired or were given up on: the published neighbours are stale.
    Removed,
    /// A frame was dropped (bad ARP packet, a held frame whose neighbour never answered, or no
    /// room to hold it).
    Dropped(DropReason),
}

/// An uplink's next hop, wanted resolved whenever the uplink has carrier.
#[derive(Debug, Clone, Copy)]
pub struct NextHop {
    pub addr: Ipv4Addr,
    pub carrier: bool,
}

pub struct ArpEngine {
    addressing: Addressing,
    /// LAN addresses answered with a virtual MAC: those of the VRRP groups this router is
    /// master of (SPEC 29).
    virtual_addrs: Vec<(Ipv4Addr, MacAddr)>,
    next_hops: Vec<NextHop>,
    neigh: NeighTable,
    next_poll: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ArpEvent>,
}

impl ArpEngine {
    pub fn new(
        addressing: Addressing,
        next_hops: Vec<NextHop>,
        params: NeighParams,
        now: Instant,
    ) -> ArpEngine {
        ArpEngine {
            addressing,
            virtual_addrs: Vec::new(),
            next_hops,
            neigh: NeighTable::new(params),
            next_poll: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// A reload: addresses and next hops may have changed; learned neighbours are kept.
    pub fn reconfigure(&mut self, addressing: Addressing, next_hops: Vec<NextHop>) {
        self.addressing = addressing;
        self.next_hops = next_hops;
    }

    /// The virtual addresses (and their MACs) to answer for on the LAN from now on.
    pub fn set_virtual(&mut self, addrs: Vec<(Ipv4Addr, MacAddr)>) {
        self.virtual_addrs = addrs;
    }

    /// Gratuitous ARP on every interface, and a request for each uplink's next hop (SPEC 2).
    pub fn announce(&mut self, now: Instant) {
        self.gratuitous(Iface::Lan);
        for u in 0..self.next_hops.len() {
            self.announce_uplink(UplinkId(u as u8), now);
        }
    }

    /// The uplink's carrier changed; coming up, it announces itself and asks for its next hop.
    pub fn set_carrier(&mut self, uplink: UplinkId, carrier: bool, now: Instant) {
        if let Some(nh) = self.next_hops.get_mut(usize::from(uplink.0)) {
            nh.carrier = carrier;
            if carrier {
                self.announce_uplink(uplink, now);
            }
        }
    }

    fn announce_uplink(&mut self, uplink: UplinkId, now: Instant) {
        let iface = Iface::Uplink(uplink);
        self.gratuitous(iface);
        self.want_next_hop(uplink, now);
    }

    /// An ARP frame (vnet header, Ethernet, ARP) that arrived on `ingress`.
    pub fn handle_frame(&mut self, ingress: Iface, frame: &[u8], now: Instant) {
        let Ok(a) = ArpPacket::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[])) else {
            self.events
                .push_back(ArpEvent::Dropped(DropReason::BadL4Header));
            return;
        };
        let Some(me) = self.addressing.get(ingress) else {
            return;
        };
        let my_ip = me.prefix.addr();
        let (sip, smac) = (a.sender_ip(), a.sender_mac());
        let is_request = a.operation() == arp::op::REQUEST;
        let virtual_mac = match ingress {
            Iface::Lan => self
                .virtual_addrs
                .iter()
                .find(|(ip, _)| *ip == a.target_ip())
                .map(|&(_, mac)| mac),
            Iface::Uplink(_) => None,
        };
        let request_for_us = is_request && (a.target_ip() == my_ip || virtual_mac.is_some());
        // Learn only plausible neighbours: on-link senders with a unicast MAC.
        if me.prefix.contains(sip) && sip != my_ip && smac.is_unicast() {
            let Ok((changed, held)) = self.neigh.learn(ingress, sip, smac, request_for_us, now)
            else {
                // No room on that side: still answered, not remembered.
                self.events
                    .push_back(ArpEvent::Dropped(DropReason::NeighbourTableFull));
                if request_for_us {
                    self.send_arp(ingress, smac, arp::op::REPLY, smac, sip);
                }
                return;
            };
            if changed {
                self.events.push_back(ArpEvent::Learned {
                    iface: ingress,
                    ip: sip,
                    mac: smac,
                });
            }
            for f in held {
                self.transmits
                    .push_back(Transmit::resolved(ingress, f, smac));
            }
        }
        match virtual_mac {
            Some(vmac) if is_request => {
                self.send_arp_as(
                    ingress,
                    smac,
                    arp::op::REPLY,
                    (vmac, a.target_ip()),
                    (smac, sip),
                );
            }
            _ if request_for_us => self.send_arp(ingress, smac, arp::op::REPLY, smac, sip),
            _ => {}
        }
    }

    /// A frame rewritten completely but for its destination MAC, to go to `next_hop` on
    /// `egress`: sent at once if the neighbour is known (learned after the worker loaded its
    /// neighbours), else held while it is resolved.
    pub fn send_via(&mut self, egress: Iface, next_hop: Ipv4Addr, frame: Vec<u8>, now: Instant) {
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
                .push_back(ArpEvent::Dropped(DropReason::NoNeighbour)),
        }
    }

    /// Retries, refreshes and expiry of the cache, and the next hops kept resolved.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_poll {
            return;
        }
        self.next_poll = now + POLL_INTERVAL;
        let out = self.neigh.poll(now);
        for (iface, ip) in out.requests {
            self.request(iface, ip);
        }
        for _ in &out.dropped_frames {
            self.events
                .push_back(ArpEvent::Dropped(DropReason::NoNeighbour));
        }
        if !out.removed.is_empty() {
            self.events.push_back(ArpEvent::Removed);
        }
        // Next hops are always wanted, so a dead one keeps being asked for.
        for u in 0..self.next_hops.len() {
            if self.next_hops[u].carrier {
                self.want_next_hop(UplinkId(u as u8), now);
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_poll)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ArpEvent> {
        self.events.pop_front()
    }

    pub fn lookup(&self, iface: Iface, ip: Ipv4Addr) -> Option<MacAddr> {
        self.neigh.lookup(iface, ip)
    }

    /// Resolved neighbours, for publishing to the workers.
    pub fn resolved(&self) -> HashMap<(Iface, Ipv4Addr), MacAddr> {
        self.neigh.resolved()
    }

    pub fn table(&self) -> &NeighTable {
        &self.neigh
    }

    fn want_next_hop(&mut self, uplink: UplinkId, now: Instant) {
        let Some(nh) = self.next_hops.get(usize::from(uplink.0)) else {
            return;
        };
        let (iface, addr) = (Iface::Uplink(uplink), nh.addr);
        if self.neigh.resolve(iface, addr, None, now) == Resolve::Request {
            self.request(iface, addr);
        }
    }

    fn gratuitous(&mut self, iface: Iface) {
        if let Some(me) = self.addressing.addr(iface) {
            self.send_arp(
                iface,
                MacAddr::BROADCAST,
                arp::op::REQUEST,
                MacAddr::ZERO,
                me,
            );
        }
    }

    fn request(&mut self, iface: Iface, ip: Ipv4Addr) {
        self.send_arp(
            iface,
            MacAddr::BROADCAST,
            arp::op::REQUEST,
            MacAddr::ZERO,
            ip,
        );
    }

    fn send_arp(&mut self, iface: Iface, eth_dst: MacAddr, op: u16, tmac: MacAddr, tip: Ipv4Addr) {
        let Some(me) = self.addressing.get(iface) else {
            return;
        };
        self.send_arp_as(iface, eth_dst, op, (me.mac, me.prefix.addr()), (tmac, tip));
    }

    /// An ARP frame from `sender` (MAC, address) to `target`.
    fn send_arp_as(
        &mut self,
        iface: Iface,
        eth_dst: MacAddr,
        op: u16,
        sender: (MacAddr, Ipv4Addr),
        target: (MacAddr, Ipv4Addr),
    ) {
        let mut frame = vec![0u8; ETH_OFFSET + arp::MIN_FRAME_LEN];
        let built = arp::build_frame(
            &mut frame[ETH_OFFSET..],
            eth_dst,
            op,
            sender.0,
            sender.1,
            target.0,
            target.1,
        );
        if built.is_ok() && VnetHdr::default().write(&mut frame).is_ok() {
            self.transmits.push_back(Transmit { iface, frame });
        }
    }
}

#[cfg(test)]
mod tests;
