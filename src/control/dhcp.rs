//! The LAN's DHCP server as the control thread runs it (SPEC 27): frames in, frames out,
//! around the `dhcp::server` engine. Requests arrive punted from the fast path (broadcasts to
//! UDP port 67 and unicasts to the LAN address); replies leave from the LAN address, port 67.
//! ARP seen on the LAN feeds the engine's conflict check, and its probes go out as RFC 5227
//! ARP probes (sender address 0.0.0.0, so no host learns anything from them).

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use super::{IfAddr, Transmit};
use crate::Iface;
use crate::clock::Instant;
use crate::counters::DropReason;
use crate::dhcp::server::{Output, Server};
use crate::dhcp::{CLIENT_PORT, SERVER_PORT};
use crate::wire::arp::{self, ArpPacket};
use crate::wire::ethernet::{EthernetFrame, MacAddr};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::ipv4::{self, Ipv4Packet, OwnHeader, proto};
use crate::wire::udp::{self, UdpPacket};
use crate::wire::vnet::VnetHdr;

pub struct DhcpService {
    server: Server,
    lan: IfAddr,
    transmits: VecDeque<Transmit>,
}

impl DhcpService {
    pub fn new(server: Server, lan: IfAddr) -> DhcpService {
        DhcpService {
            server,
            lan,
            transmits: VecDeque::new(),
        }
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    pub fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }

    /// True for an IPv4 frame to UDP port 67: the server's, whatever else it is.
    pub fn is_request(frame: &[u8]) -> bool {
        Ipv4Packet::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[])).is_ok_and(|ip| {
            ip.protocol() == proto::UDP
                && !ip.is_fragment()
                && UdpPacket::new_checked(ip.payload()).is_ok_and(|u| u.dst_port() == SERVER_PORT)
        })
    }

    /// A frame from the LAN to UDP port 67.
    pub fn handle_frame(&mut self, frame: &[u8], now: Instant) -> Result<(), DropReason> {
        let eth = EthernetFrame::new_checked(frame.get(ETH_OFFSET..).unwrap_or(&[]))
            .map_err(|_| DropReason::Truncated)?;
        let ip = Ipv4Packet::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[]))
            .map_err(|_| DropReason::BadIpHeader)?;
        let udp = UdpPacket::new_checked(ip.payload()).map_err(|_| DropReason::BadL4Header)?;
        // A client's UDP socket hands the checksum to the NIC (renewals): then it is partial.
        let partial = VnetHdr::parse(frame).is_ok_and(|h| h.needs_csum());
        if !partial && udp.checksum() != 0 && !udp.verify_checksum(ip.src(), ip.dst()) {
            return Err(DropReason::BadL4Header);
        }
        self.server.handle_packet(udp.payload(), eth.src(), now);
        self.drain();
        Ok(())
    }

    /// An ARP frame seen on the LAN: its sender claims an address.
    pub fn handle_arp(&mut self, frame: &[u8], now: Instant) {
        if let Ok(a) = ArpPacket::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[]))
            && !a.sender_ip().is_unspecified()
        {
            self.server.handle_arp(a.sender_ip(), a.sender_mac(), now);
            self.drain();
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.server.handle_timeout(now);
        self.drain();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.server.poll_timeout()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn drain(&mut self) {
        let me = self.lan;
        while let Some(out) = self.server.poll_output() {
            let t = match out {
                Output::Reply(r) => {
                    let capacity = ipv4::MIN_HEADER_LEN + udp::HEADER_LEN + r.payload.len();
                    Transmit::ipv4(Iface::Lan, me.mac, r.dst_mac, capacity, |out| {
                        udp::build_datagram(
                            out,
                            &OwnHeader::new(me.prefix.addr(), r.dst_ip),
                            (SERVER_PORT, CLIENT_PORT),
                            &r.payload,
                        )
                        .ok()
                    })
                }
                Output::ArpProbe { target } => arp_probe(me.mac, target),
            };
            self.transmits.extend(t);
        }
    }
}

fn arp_probe(mac: MacAddr, target: Ipv4Addr) -> Option<Transmit> {
    let mut frame = vec![0u8; ETH_OFFSET + arp::MIN_FRAME_LEN];
    arp::build_frame(
        &mut frame[ETH_OFFSET..],
        MacAddr::BROADCAST,
        arp::op::REQUEST,
        mac,
        Ipv4Addr::UNSPECIFIED,
        MacAddr::ZERO,
        target,
    )
    .ok()?;
    VnetHdr::default().write(&mut frame).ok()?;
    Some(Transmit {
        iface: Iface::Lan,
        frame,
    })
}

#[cfg(test)]
mod tests;
