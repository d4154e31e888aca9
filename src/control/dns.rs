//! The DNS forwarder as the control thread runs it (SPEC 30): frames in, frames out, around
//! the `dns` engine. Queries arrive punted from the LAN (UDP to the LAN address, port 53);
//! upstream queries leave from the active uplink's address, port 53, to its resolvers, and
//! their answers are punted back by the fast path (UDP from port 53 to port 53 with no NAT
//! session). DNS over TCP goes to `dns::tcp`: connections to the LAN address, port 53, and
//! from a resolver's port 53 to one of `TCP_PORTS` on the active uplink's address (punted by the
//! fast path like the UDP answers). Outputs carry the next hop the frame goes to, which the ARP
//! engine resolves. Over IPv6, UDP queries to the router's LAN addresses (one per LAN prefix)
//! and TCP connections to them are answered from the address asked (`handle_frame6`,
//! `poll_outgoing6`, which neighbour discovery resolves); upstream stays IPv4, through the
//! active uplink.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use super::{Addressing, Outgoing};
use crate::Iface;
use crate::UplinkId;
use crate::clock::Instant;
use crate::config::DnsConfig;
use crate::counters::DropReason;
use crate::dns::tcp::{TCP_PORTS, TcpRelay, TcpTransmit, TcpUpstream};
use crate::dns::{Client, Forwarder, PORT, Transmit as DnsTransmit};
use crate::prefix6::Ipv6Prefix;
use crate::wire::ethernet::MacAddr;
use crate::wire::frame::IP_OFFSET;
use crate::wire::ipv4::{self, Ipv4Packet, OwnHeader, proto};
use crate::wire::ipv6::{self as wire6, Ipv6Packet, next_header};
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::{self, UdpPacket};
use crate::wire::vnet::VnetHdr;

pub struct DnsService {
    forwarder: Forwarder,
    relay: TcpRelay,
    addressing: Addressing,
    /// The uplink carrying the default route and its next hop.
    gateway: Option<(UplinkId, Ipv4Addr)>,
    resolvers: Vec<Ipv4Addr>,
    out: VecDeque<Outgoing>,
    /// IPv6 frames for LAN clients, complete but for the MAC of the client (the next hop).
    out6: VecDeque<(Vec<u8>, Ipv6Addr)>,
}

impl DnsService {
    /// `lan6`: the router's IPv6 LAN addresses with their prefix lengths, where DNS over TCP
    /// is served too. `seed` drives the upstream query ids, TCP ports and sequence numbers.
    pub fn new(
        cfg: DnsConfig,
        addressing: Addressing,
        lan6: &[Ipv6Prefix],
        seed: u64,
        now: Instant,
    ) -> DnsService {
        DnsService {
            relay: TcpRelay::new(&cfg, addressing.lan.prefix, lan6, !seed, now),
            forwarder: Forwarder::new(cfg, seed),
            addressing,
            gateway: None,
            resolvers: Vec::new(),
            out: VecDeque::new(),
            out6: VecDeque::new(),
        }
    }

    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    pub fn relay(&self) -> &TcpRelay {
        &self.relay
    }

    /// The router's addresses changed (an uplink renumbered by DHCP).
    pub fn reconfigure(&mut self, addressing: Addressing, now: Instant) {
        self.addressing = addressing;
        self.relay.set_upstream(self.tcp_upstream(), now);
        self.drain();
    }

    fn tcp_upstream(&self) -> Option<TcpUpstream> {
        let (uplink, _) = self.gateway?;
        Some(TcpUpstream {
            uplink,
            addr: self.addressing.addr(Iface::Uplink(uplink))?,
            resolvers: self.resolvers.clone(),
        })
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
        self.resolvers = resolvers.clone();
        self.forwarder
            .set_upstream(gateway.map(|(u, _)| (u, resolvers)), now);
        self.relay.set_upstream(self.tcp_upstream(), now);
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

    /// The IPv4 packet in `frame` if it is a TCP segment (not a fragment) for the relay: to
    /// the LAN address port 53, or from port 53 to one of `TCP_PORTS` on the uplink's address.
    /// A checksum left partial by the sender's offload is completed, since smoltcp checks it.
    fn tcp53(&self, ingress: Iface, frame: &[u8]) -> Option<Vec<u8>> {
        let ip = Ipv4Packet::new_checked(frame.get(IP_OFFSET..)?).ok()?;
        if ip.protocol() != proto::TCP || ip.is_fragment() {
            return None;
        }
        let (src, dst) = (ip.src(), ip.dst());
        let t = TcpPacket::new_checked(ip.payload()).ok()?;
        let ours = match ingress {
            Iface::Lan => t.dst_port() == PORT,
            Iface::Uplink(_) => t.src_port() == PORT && TCP_PORTS.contains(&t.dst_port()),
        };
        if !ours || Some(dst) != self.addressing.addr(ingress) {
            return None;
        }
        let mut packet = frame[IP_OFFSET..IP_OFFSET + ip.total_len()].to_vec();
        if VnetHdr::parse(frame).is_ok_and(|h| h.needs_csum()) {
            let header_len = ip.header_len();
            TcpPacket::new_unchecked(&mut packet[header_len..]).fill_checksum(src, dst);
        }
        Some(packet)
    }

    /// True for a frame this service takes: a query to the LAN address, or an answer from
    /// port 53 on an uplink, over UDP or TCP.
    pub fn wants(&self, ingress: Iface, frame: &[u8]) -> bool {
        let udp = Self::udp53(frame).is_some_and(|(_, dst, sport, _)| match ingress {
            Iface::Lan => Some(dst) == self.addressing.addr(Iface::Lan),
            Iface::Uplink(_) => sport == PORT && Some(dst) == self.addressing.addr(ingress),
        });
        udp || self.tcp53(ingress, frame).is_some()
    }

    pub fn handle_frame(
        &mut self,
        ingress: Iface,
        frame: &[u8],
        now: Instant,
    ) -> Result<(), DropReason> {
        if let Some(packet) = self.tcp53(ingress, frame) {
            self.relay.handle_packet(ingress, &packet, now);
            self.drain();
            return Ok(());
        }
        let (src, dst, sport, data) = Self::udp53(frame).ok_or(DropReason::LocalUnhandled)?;
        match ingress {
            Iface::Lan => {
                let client = Client {
                    addr: SocketAddr::V4(SocketAddrV4::new(src, sport)),
                    server: dst.into(),
                };
                self.forwarder.handle_query(client, data, now)
            }
            Iface::Uplink(u) => self.forwarder.handle_response(u, src, data, now),
        }
        self.drain();
        Ok(())
    }

    /// The UDP datagram to port 53 in the IPv6 `frame`, if it is one (whole, checksum right).
    fn udp53_v6(frame: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, u16, &[u8])> {
        let ip = Ipv6Packet::new_checked(frame.get(IP_OFFSET..)?).ok()?;
        let upper = ip.upper_layer().ok()?;
        if upper.protocol != next_header::UDP || upper.fragment.is_some() {
            return None;
        }
        let (src, dst) = (ip.src(), ip.dst());
        let u = UdpPacket::new_checked(ip.payload().get(upper.offset..)?).ok()?;
        let partial = VnetHdr::parse(frame).is_ok_and(|h| h.needs_csum());
        if u.dst_port() != PORT || (!partial && !u.verify_checksum_v6(src, dst)) {
            return None;
        }
        let start = IP_OFFSET + wire6::HEADER_LEN + upper.offset + udp::HEADER_LEN;
        let data = frame.get(start..start + u.len().checked_sub(udp::HEADER_LEN)?)?;
        Some((src, dst, u.src_port(), data))
    }

    /// The IPv6 packet in `frame` if it carries TCP to port 53 (whole, the headers right
    /// after the fixed one, as hosts send it); a checksum left partial by the sender's offload
    /// is completed, since smoltcp checks it.
    fn tcp53_v6(frame: &[u8]) -> Option<Vec<u8>> {
        let ip = Ipv6Packet::new_checked(frame.get(IP_OFFSET..)?).ok()?;
        if ip.next_header() != next_header::TCP {
            return None;
        }
        let t = TcpPacket::new_checked(ip.payload()).ok()?;
        if t.dst_port() != PORT {
            return None;
        }
        let (src, dst) = (ip.src(), ip.dst());
        let mut packet =
            frame[IP_OFFSET..IP_OFFSET + wire6::HEADER_LEN + ip.payload_len()].to_vec();
        if VnetHdr::parse(frame).is_ok_and(|h| h.needs_csum()) {
            TcpPacket::new_unchecked(&mut packet[wire6::HEADER_LEN..]).fill_checksum_v6(src, dst);
        }
        Some(packet)
    }

    /// An IPv6 frame from the LAN to one of the router's LAN addresses (the caller checked
    /// that it is one in use): a UDP query or a TCP segment to port 53 is taken; anything else
    /// is not served.
    pub fn handle_frame6(&mut self, frame: &[u8], now: Instant) -> Result<(), DropReason> {
        if let Some(packet) = Self::tcp53_v6(frame) {
            self.relay.handle_packet(Iface::Lan, &packet, now);
            self.drain();
            return Ok(());
        }
        let (src, dst, sport, data) = Self::udp53_v6(frame).ok_or(DropReason::LocalUnhandled)?;
        let client = Client {
            addr: SocketAddr::new(src.into(), sport),
            server: dst.into(),
        };
        self.forwarder.handle_query(client, data, now);
        self.drain();
        Ok(())
    }

    /// An answer for an IPv6 client and the client's address (its next hop on the LAN).
    pub fn poll_outgoing6(&mut self) -> Option<(Vec<u8>, Ipv6Addr)> {
        self.out6.pop_front()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.forwarder.handle_timeout(now);
        self.relay.handle_timeout(now);
        self.drain();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.forwarder.poll_timeout(), self.relay.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_outgoing(&mut self) -> Option<Outgoing> {
        self.out.pop_front()
    }

    fn drain(&mut self) {
        while let Some(t) = self.forwarder.poll_transmit() {
            let (iface, next_hop, dst, sport, dport, payload) = match t {
                DnsTransmit::Client { dst, payload } => match dst.addr {
                    SocketAddr::V4(a) => (Iface::Lan, *a.ip(), *a.ip(), PORT, a.port(), payload),
                    SocketAddr::V6(a) => {
                        self.push6(dst, *a.ip(), a.port(), &payload);
                        continue;
                    }
                },
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
            self.push(iface, next_hop, capacity, |out| {
                udp::build_datagram(
                    out,
                    &OwnHeader::new(me.prefix.addr(), dst),
                    (sport, dport),
                    &payload,
                )
                .ok()
            });
        }
        while let Some(TcpTransmit { iface, packet }) = self.relay.poll_transmit() {
            if iface == Iface::Lan
                && let Ok(ip) = Ipv6Packet::new_checked(&packet[..])
                && ip.version() == 6
            {
                let client = ip.dst();
                self.push6_packet(client, &packet);
                continue;
            }
            let next_hop = match (iface, self.gateway) {
                (Iface::Lan, _) => match Ipv4Packet::new_checked(&packet[..]) {
                    Ok(ip) => ip.dst(),
                    Err(_) => continue,
                },
                (Iface::Uplink(u), Some((g, hop))) if u == g => hop,
                _ => continue,
            };
            self.push(iface, next_hop, packet.len(), |out| {
                out.get_mut(..packet.len())?.copy_from_slice(&packet);
                Some(packet.len())
            });
        }
    }

    /// Queues an answer to the IPv6 client `to`, from the router's address it asked.
    fn push6(&mut self, to: Client, client: Ipv6Addr, port: u16, payload: &[u8]) {
        let (IpAddr::V6(server), Some(me)) = (to.server, self.addressing.get(Iface::Lan)) else {
            return;
        };
        let capacity = wire6::HEADER_LEN + udp::HEADER_LEN + payload.len();
        let built = super::Transmit::ipv6(Iface::Lan, me.mac, MacAddr::ZERO, capacity, |out| {
            let ip = wire6::OwnHeader::new(server, client);
            udp::build_datagram_v6(out, &ip, (PORT, port), payload).ok()
        });
        if let Some(t) = built {
            self.out6.push_back((t.frame, client));
        }
    }

    /// Queues an IPv6 packet the TCP relay sent to a LAN client.
    fn push6_packet(&mut self, client: Ipv6Addr, packet: &[u8]) {
        let Some(me) = self.addressing.get(Iface::Lan) else {
            return;
        };
        let built = super::Transmit::ipv6(Iface::Lan, me.mac, MacAddr::ZERO, packet.len(), |out| {
            out.get_mut(..packet.len())?.copy_from_slice(packet);
            Some(packet.len())
        });
        if let Some(t) = built {
            self.out6.push_back((t.frame, client));
        }
    }

    /// Queues the IPv4 packet `build` writes, in a frame from `iface`'s MAC.
    fn push(
        &mut self,
        iface: Iface,
        next_hop: Ipv4Addr,
        capacity: usize,
        build: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) {
        let Some(me) = self.addressing.get(iface) else {
            return;
        };
        if let Some(t) = super::Transmit::ipv4(iface, me.mac, MacAddr::ZERO, capacity, build) {
            self.out.push_back(Outgoing {
                iface,
                next_hop,
                frame: t.frame,
            });
        }
    }
}

#[cfg(test)]
mod tests;
