//! An uplink's DHCPv6 prefix delegation client as the control thread runs it (SPEC 32): frames
//! in, frames out, around the `dhcp::pd` engine. Everything goes from the uplink's link-local
//! address to All_DHCP_Relay_Agents_and_Servers (ff02::1:2, no neighbour discovery needed);
//! servers answer to the link-local address, which the fast path punts as the router's own.

use crate::clock::Instant;
use crate::control::Transmit;
use crate::counters::DropReason;
use crate::dhcp::pd::{ALL_SERVERS, CLIENT_PORT, Event, PdClient, SERVER_PORT};
use crate::wire::ethernet::MacAddr;
use crate::wire::frame::IP_OFFSET;
use crate::wire::ipv6::{self, Ipv6Packet, OwnHeader, next_header};
use crate::wire::ndisc;
use crate::wire::udp::{self, UdpPacket};
use crate::wire::vnet::VnetHdr;
use crate::{Iface, UplinkId};

pub struct UplinkPd {
    uplink: UplinkId,
    mac: MacAddr,
    client: PdClient,
}

impl UplinkPd {
    pub fn new(uplink: UplinkId, mac: MacAddr, now: Instant) -> UplinkPd {
        let seed = now.as_nanos() ^ u64::from(uplink.0);
        UplinkPd {
            uplink,
            mac,
            client: PdClient::new(mac, seed, now),
        }
    }

    pub fn client(&self) -> &PdClient {
        &self.client
    }

    /// True for an unfragmented UDP datagram from port 547 to port 546.
    pub fn is_reply(frame: &[u8]) -> bool {
        let Ok(ip) = Ipv6Packet::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[])) else {
            return false;
        };
        ip.upper_layer().is_ok_and(|up| {
            up.protocol == next_header::UDP
                && up.fragment.is_none()
                && ip.payload().get(up.offset..).is_some_and(|l4| {
                    UdpPacket::new_checked(l4)
                        .is_ok_and(|u| (u.src_port(), u.dst_port()) == (SERVER_PORT, CLIENT_PORT))
                })
        })
    }

    /// A DHCPv6 reply punted on the uplink (`is_reply`); its checksum must verify unless the
    /// kernel left it partial.
    pub fn handle_frame(&mut self, frame: &[u8], now: Instant) -> Result<(), DropReason> {
        let ip = Ipv6Packet::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[]))
            .map_err(|_| DropReason::BadIpHeader)?;
        let up = ip.upper_layer().map_err(|_| DropReason::BadIpHeader)?;
        let udp = UdpPacket::new_checked(ip.payload().get(up.offset..).unwrap_or(&[]))
            .map_err(|_| DropReason::BadL4Header)?;
        let partial = VnetHdr::parse(frame).is_ok_and(|h| h.needs_csum());
        if !partial && !udp.verify_checksum_v6(ip.src(), ip.dst()) {
            return Err(DropReason::BadL4Header);
        }
        self.client.handle_packet(udp.payload(), ip.src(), now);
        Ok(())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.client.handle_timeout(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.client.poll_timeout()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.client.poll_event()
    }

    /// The next message as a frame to ff02::1:2 from the uplink's link-local address.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        loop {
            let payload = self.client.poll_transmit()?;
            let ip = OwnHeader::new(ndisc::link_local(self.mac), ALL_SERVERS);
            let capacity = ipv6::HEADER_LEN + udp::HEADER_LEN + payload.len();
            let frame = Transmit::ipv6(
                Iface::Uplink(self.uplink),
                self.mac,
                ndisc::multicast_mac(ALL_SERVERS),
                capacity,
                |out| udp::build_datagram_v6(out, &ip, (CLIENT_PORT, SERVER_PORT), &payload).ok(),
            );
            if frame.is_some() {
                return frame;
            }
        }
    }
}
