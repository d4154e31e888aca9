//! An uplink's DHCP client as the control thread runs it (SPEC 28): frames in, frames out,
//! around the `dhcp::client` engine. Without an address the client asks for broadcast replies,
//! which the fast path punts (UDP from port 67 to port 68); renewals are unicast to the server
//! through the ARP engine, and their answers come to the leased address.

use std::collections::VecDeque;

use super::{Outgoing, Transmit};
use crate::clock::Instant;
use crate::counters::DropReason;
use crate::dhcp::client::{Client, Event};
use crate::dhcp::{CLIENT_PORT, SERVER_PORT};
use crate::wire::ethernet::MacAddr;
use crate::wire::frame::IP_OFFSET;
use crate::wire::ipv4::{self, Ipv4Packet, OwnHeader, proto};
use crate::wire::udp::{self, UdpPacket};
use crate::wire::vnet::VnetHdr;
use crate::{Iface, UplinkId};

/// What the client wants sent: a broadcast frame, or a unicast the ARP engine resolves.
pub enum ClientOutput {
    Broadcast(Transmit),
    Unicast(Outgoing),
}

pub struct UplinkDhcp {
    uplink: UplinkId,
    mac: MacAddr,
    client: Client,
    out: VecDeque<ClientOutput>,
}

impl UplinkDhcp {
    pub fn new(uplink: UplinkId, mac: MacAddr, client: Client) -> UplinkDhcp {
        UplinkDhcp {
            uplink,
            mac,
            client,
            out: VecDeque::new(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// True for a UDP datagram from port 67 to port 68.
    pub fn is_reply(frame: &[u8]) -> bool {
        Ipv4Packet::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[])).is_ok_and(|ip| {
            ip.protocol() == proto::UDP
                && !ip.is_fragment()
                && UdpPacket::new_checked(ip.payload())
                    .is_ok_and(|u| (u.src_port(), u.dst_port()) == (SERVER_PORT, CLIENT_PORT))
        })
    }

    pub fn handle_frame(&mut self, frame: &[u8], now: Instant) -> Result<(), DropReason> {
        let ip = Ipv4Packet::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[]))
            .map_err(|_| DropReason::BadIpHeader)?;
        let udp = UdpPacket::new_checked(ip.payload()).map_err(|_| DropReason::BadL4Header)?;
        let partial = VnetHdr::parse(frame).is_ok_and(|h| h.needs_csum());
        if !partial && udp.checksum() != 0 && !udp.verify_checksum(ip.src(), ip.dst()) {
            return Err(DropReason::BadL4Header);
        }
        self.client.handle_packet(udp.payload(), now);
        self.drain();
        Ok(())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.client.handle_timeout(now);
        self.drain();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.client.poll_timeout()
    }

    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.client.poll_event()
    }

    fn drain(&mut self) {
        let iface = Iface::Uplink(self.uplink);
        while let Some(t) = self.client.poll_transmit() {
            let broadcast = t.dst.is_broadcast();
            let dst_mac = if broadcast {
                MacAddr::BROADCAST
            } else {
                MacAddr::ZERO
            };
            let capacity = ipv4::MIN_HEADER_LEN + udp::HEADER_LEN + t.payload.len();
            let Some(frame) = Transmit::ipv4(iface, self.mac, dst_mac, capacity, |out| {
                udp::build_datagram(
                    out,
                    &OwnHeader::new(t.src, t.dst),
                    (CLIENT_PORT, SERVER_PORT),
                    &t.payload,
                )
                .ok()
            }) else {
                continue;
            };
            self.out.push_back(if broadcast {
                ClientOutput::Broadcast(frame)
            } else {
                ClientOutput::Unicast(Outgoing {
                    iface,
                    next_hop: t.dst,
                    frame: frame.frame,
                })
            });
        }
    }
}
