//! The DNS forwarder as the control thread runs it (SPEC 30): frames in, frames out, around
//! the `dns` engine. Queries arrive punted from the LAN (UDP to the LAN address, port 53);
//! upstream queries leave from the active uplink's address, port 53, to its resolvers, and
//! their answers are punted back by the fast path (UDP from port 53 to port 53 with no NAT
//! session). Outputs carry the next hop the frame goes to, which the ARP engine resolves.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::{Addressing, Outgoing};
use crate::Iface;
use crate::UplinkId;
use crate::clock::Instant;
use crate::counters::DropReason;
use crate::dns::{Forwarder, PORT, Transmit as DnsTransmit};
use crate::wire::ethernet::MacAddr;
use crate::wire::frame::IP_OFFSET;
use crate::wire::ipv4::{self, Ipv4Packet, OwnHeader, proto};
use crate::wire::udp::{self, UdpPacket};
use crate::wire::vnet::VnetHdr;

pub struct DnsService {
    forwarder: Forwarder,
    addressing: Addressing,
    /// The uplink carrying the default route and its next hop.
    gateway: Option<(UplinkId, Ipv4Addr)>,
    out: VecDeque<Outgoing>,
}

impl DnsService {
    pub fn new(forwarder: Forwarder, addressing: Addressing) -> DnsService {
        DnsService {
            forwarder,
            addressing,
            gateway: None,
            out: VecDeque::new(),
        }
    }

    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// The router's addresses changed (an uplink renumbered by DHCP).
    pub fn reconfigure(&mut self, addressing: Addressing) {
        self.addressing = addressing;
    }

    pub fn gateway(&self) -> Option<(UplinkId, Ipv4Addr)> {
        self.gateway
    }

    /// The uplink that now carries the default route (its next hop), and its resolvers.
    pub fn set_upstream(
        &mut self,
        gateway: Option<(UplinkId, Ipv4Addr)>,
        resolvers: Vec<Ipv4Addr>,
        now: Instant,
    ) {
        self.gateway = gateway;
        self.forwarder
            .set_upstream(gateway.map(|(u, _)| (u, resolvers)), now);
        self.drain();
    }

    /// The UDP datagram to port 53 in `frame`, if it is one (not a fragment).
    fn udp53(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u16, &[u8])> {
        let ip = Ipv4Packet::new_checked(frame.get(IP_OFFSET..)?).ok()?;
        if ip.protocol() != proto::UDP || ip.is_fragment() {
            return None;
        }
        let (src, dst) = (ip.src(), ip.dst());
        let payload = &frame[IP_OFFSET + ip.header_len()..IP_OFFSET + ip.total_len()];
        let u = UdpPacket::new_checked(payload).ok()?;
        let partial = VnetHdr::parse(frame).is_ok_and(|h| h.needs_csum());
        if u.dst_port() != PORT || (!partial && u.checksum() != 0 && !u.verify_checksum(src, dst)) {
            return None;
        }
        let sport = u.src_port();
        let data = &payload[udp::HEADER_LEN..u.len()];
        Some((src, dst, sport, data))
    }

    /// True for a frame this service takes: a query to the LAN address, or an answer from
    /// port 53 on an uplink.
    pub fn wants(&self, ingress: Iface, frame: &[u8]) -> bool {
        Self::udp53(frame).is_some_and(|(_, dst, sport, _)| match ingress {
            Iface::Lan => Some(dst) == self.addressing.addr(Iface::Lan),
            Iface::Uplink(_) => sport == PORT && Some(dst) == self.addressing.addr(ingress),
        })
    }

    pub fn handle_frame(
        &mut self,
        ingress: Iface,
        frame: &[u8],
        now: Instant,
    ) -> Result<(), DropReason> {
        let (src, _, sport, data) = Self::udp53(frame).ok_or(DropReason::LocalUnhandled)?;
        match ingress {
            Iface::Lan => self
                .forwarder
                .handle_query(SocketAddrV4::new(src, sport), data, now),
            Iface::Uplink(u) => self.forwarder.handle_response(u, src, data, now),
        }
        self.drain();
        Ok(())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.forwarder.handle_timeout(now);
        self.drain();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.forwarder.poll_timeout()
    }

    pub fn poll_outgoing(&mut self) -> Option<Outgoing> {
        self.out.pop_front()
    }

    fn drain(&mut self) {
        while let Some(t) = self.forwarder.poll_transmit() {
            let (iface, next_hop, dst, sport, dport, payload) = match t {
                DnsTransmit::Client { dst, payload } => {
                    (Iface::Lan, *dst.ip(), *dst.ip(), PORT, dst.port(), payload)
                }
                DnsTransmit::Upstream {
                    uplink,
                    server,
                    payload,
                } => match self.gateway {
                    Some((u, hop)) if u == uplink => {
                        (Iface::Uplink(u), hop, server, PORT, PORT, payload)
                    }
                    _ => continue,
                },
            };
            let Some(me) = self.addressing.get(iface) else {
                continue;
            };
            let capacity = ipv4::MIN_HEADER_LEN + udp::HEADER_LEN + payload.len();
            let built = super::Transmit::ipv4(iface, me.mac, MacAddr::ZERO, capacity, |out| {
                udp::build_datagram(
                    out,
                    &OwnHeader::new(me.prefix.addr(), dst),
                    (sport, dport),
                    &payload,
                )
                .ok()
            });
            if let Some(t) = built {
                self.out.push_back(Outgoing {
                    iface,
                    next_hop,
                    frame: t.frame,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
