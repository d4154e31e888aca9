//! Probe engine: sends each probe as a complete frame pinned to its uplink (SPEC 15) and matches
//! the replies the workers received, timed by when they received them. Pure: the probe thread
//! gives it the uplinks' state, the replies and the clock, and sends what it queues. A probe to
//! an IPv6 target leaves from the uplink's `address6` to its `next_hop6` (SPEC 34).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Transmit;
use crate::clock::Instant;
use crate::config::{ProbeConfig, ProbeKind};
use crate::probe::schedule::{Probe, ProbeSet, Source, TcpReset};
use crate::wire::ethernet::MacAddr;
use crate::wire::frame::IP_OFFSET;
use crate::wire::ipv4::OwnHeader;
use crate::wire::ipv6;
use crate::wire::tcp::{self, TcpRepr};
use crate::{Iface, UplinkId};

/// Room for a probe packet: the largest ICMP payload a probe may carry, plus headers.
const PACKET_ROOM: usize = 1600;

/// What a probe needs from its uplink to go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeUplink {
    pub addr: Ipv4Addr,
    pub mac: MacAddr,
    /// `None` while the next hop is unresolved.
    pub next_hop_mac: Option<MacAddr>,
    pub carrier: bool,
    /// The uplink's IPv6, when it has an `address6` to send probes from.
    pub v6: Option<ProbeUplink6>,
}

/// What a probe to an IPv6 target needs from its uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeUplink6 {
    pub addr: Ipv6Addr,
    /// The MAC of `next_hop6`; `None` while neighbour discovery has not resolved it.
    pub next_hop_mac: Option<MacAddr>,
}

pub struct ProbeEngine {
    set: ProbeSet,
    port_base: u16,
    uplinks: Vec<ProbeUplink>,
    transmits: VecDeque<Transmit>,
    /// Probes that recorded a result (reply or timeout), in order.
    results: VecDeque<usize>,
}

impl ProbeEngine {
    /// `uplink_of` maps an uplink name to its index; `port_base` places the probes' ports
    /// (`probe_port`).
    pub fn new(
        defs: Vec<ProbeConfig>,
        uplink_of: impl Fn(&str) -> usize,
        port_base: u16,
        now: Instant,
    ) -> ProbeEngine {
        ProbeEngine {
            set: ProbeSet::new(defs, uplink_of, port_base, now),
            port_base,
            uplinks: Vec::new(),
            transmits: VecDeque::new(),
            results: VecDeque::new(),
        }
    }

    /// A reload: probes whose name survives keep their statistics and identifiers.
    pub fn reconfigure(
        &mut self,
        defs: Vec<ProbeConfig>,
        uplink_of: impl Fn(&str) -> usize,
        now: Instant,
    ) {
        let mut set = ProbeSet::new(defs, uplink_of, self.port_base, now);
        set.carry_over(std::mem::replace(
            &mut self.set,
            ProbeSet::new(Vec::new(), |_| 0, 0, now),
        ));
        self.set = set;
        self.results.clear();
    }

    /// The uplinks' current state, by index.
    pub fn set_uplinks(&mut self, uplinks: Vec<ProbeUplink>) {
        self.uplinks = uplinks;
    }

    /// A frame from one of the probes' targets that arrived on `uplink` at `received`. Returns
    /// false when it answers no outstanding probe.
    pub fn handle_reply(&mut self, uplink: UplinkId, frame: &[u8], received: Instant) -> bool {
        let Some(packet) = frame.get(IP_OFFSET..) else {
            return false;
        };
        let Some((outcome, reset)) = self
            .set
            .match_reply(usize::from(uplink.0), packet, received)
        else {
            return false;
        };
        if let Some(r) = reset {
            self.reset(uplink, r);
        }
        self.results.push_back(outcome.probe);
        true
    }

    /// Whether `frame`, arrived on `uplink`, is an ICMP error quoting an outstanding attempt:
    /// accepted, and the attempt runs on to its timeout.
    pub fn is_error_about_probe(&self, uplink: UplinkId, frame: &[u8]) -> bool {
        frame
            .get(IP_OFFSET..)
            .is_some_and(|p| self.set.match_error(usize::from(uplink.0), p).is_some())
    }

    /// Attempts that timed out by `now`, then probes due to send.
    pub fn handle_timeout(&mut self, now: Instant) {
        for o in self.set.expire(now) {
            self.results.push_back(o.probe);
        }
        for i in self.set.due(now) {
            self.send(i, now);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.set.next_deadline()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next probe that recorded a result (its statistics are in [`ProbeEngine::probes`]).
    pub fn poll_result(&mut self) -> Option<usize> {
        self.results.pop_front()
    }

    pub fn probes(&self) -> &[Probe] {
        &self.set.probes
    }

    fn send(&mut self, i: usize, now: Instant) {
        let u = self.set.probes[i].uplink;
        // An uplink not known yet is down: the attempt still starts, and will time out.
        let up = self.uplinks.get(u).copied().unwrap_or(ProbeUplink {
            addr: Ipv4Addr::UNSPECIFIED,
            mac: MacAddr::ZERO,
            next_hop_mac: None,
            carrier: false,
            v6: None,
        });
        let iface = Iface::Uplink(UplinkId(u as u8));
        let set = &mut self.set;
        // Without an address, carrier or next hop the attempt still counts: it will time out.
        let (built, next_hop_mac) = match set.probes[i].def.target {
            IpAddr::V4(_) => {
                let dst = up.next_hop_mac.unwrap_or(MacAddr::ZERO);
                let src = Source {
                    addr: IpAddr::V4(up.addr),
                };
                let t = Transmit::ipv4(iface, up.mac, dst, PACKET_ROOM, |out| {
                    set.build(i, src, out, now)
                });
                (t, up.next_hop_mac)
            }
            IpAddr::V6(_) => {
                let v6 = up.v6.unwrap_or(ProbeUplink6 {
                    addr: Ipv6Addr::UNSPECIFIED,
                    next_hop_mac: None,
                });
                let dst = v6.next_hop_mac.unwrap_or(MacAddr::ZERO);
                let src = Source {
                    addr: IpAddr::V6(v6.addr),
                };
                let t = Transmit::ipv6(iface, up.mac, dst, PACKET_ROOM, |out| {
                    set.build(i, src, out, now)
                });
                (t, up.v6.and_then(|v6| v6.next_hop_mac))
            }
        };
        if let Some(t) = built
            && up.carrier
            && next_hop_mac.is_some()
        {
            self.transmits.push_back(t);
        }
    }

    /// After a TCP probe's SYN-ACK, the RST that closes the half-open connection.
    fn reset(&mut self, uplink: UplinkId, r: TcpReset) {
        let p = &self.set.probes[r.probe];
        let ProbeKind::Tcp { port } = p.def.kind else {
            return;
        };
        let Some(up) = self.uplinks.get(usize::from(uplink.0)).copied() else {
            return;
        };
        let iface = Iface::Uplink(uplink);
        let rst = TcpRepr::rst(r.sport, port, r.seq);
        let frame = match p.def.target {
            IpAddr::V4(target) => up.next_hop_mac.and_then(|mac| {
                Transmit::ipv4(iface, up.mac, mac, PACKET_ROOM, |out| {
                    tcp::build_segment(out, &OwnHeader::new(up.addr, target), &rst).ok()
                })
            }),
            IpAddr::V6(target) => up.v6.and_then(|v6| {
                let mac = v6.next_hop_mac?;
                Transmit::ipv6(iface, up.mac, mac, PACKET_ROOM, |out| {
                    let ip = ipv6::OwnHeader::new(v6.addr, target);
                    tcp::build_segment_v6(out, &ip, &rst).ok()
                })
            }),
        };
        self.transmits.extend(frame);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests6;
