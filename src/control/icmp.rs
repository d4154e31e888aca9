//! Echo responder: answers pings to the router's own addresses (any of them from the LAN, the
//! uplink's own from outside). Everything else addressed to the router is counted and dropped.
//! Pure: a frame comes in, the reply to send comes out.

use std::collections::VecDeque;

use super::{Addressing, Transmit};
use crate::Iface;
use crate::counters::DropReason;
use crate::wire::ethernet::EthernetFrame;
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::icmp::{self, EchoRepr, IcmpPacket, types};
use crate::wire::ipv4::{self, Ipv4Packet, OwnHeader, proto};

pub struct EchoResponder {
    addressing: Addressing,
    transmits: VecDeque<Transmit>,
}

impl EchoResponder {
    pub fn new(addressing: Addressing) -> EchoResponder {
        EchoResponder {
            addressing,
            transmits: VecDeque::new(),
        }
    }

    pub fn reconfigure(&mut self, addressing: Addressing) {
        self.addressing = addressing;
    }

    /// An IPv4 frame for the router that arrived on `ingress`: an echo request to one of its
    /// addresses is answered; anything else is dropped for the reason returned.
    pub fn handle_frame(&mut self, ingress: Iface, frame: &[u8]) -> Result<(), DropReason> {
        let ip = Ipv4Packet::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[]))
            .map_err(|_| DropReason::BadIpHeader)?;
        let eth =
            EthernetFrame::new_checked(&frame[ETH_OFFSET..]).map_err(|_| DropReason::Truncated)?;
        let unhandled = match ingress {
            Iface::Uplink(_) => DropReason::NatUnsolicited,
            Iface::Lan => DropReason::LocalUnhandled,
        };
        let (src, dst) = (ip.src(), ip.dst());
        let answers = match ingress {
            Iface::Lan => self.addressing.is_local(dst),
            Iface::Uplink(_) => self.addressing.addr(ingress) == Some(dst),
        };
        if !answers || ip.protocol() != proto::ICMP || ip.is_fragment() {
            return Err(unhandled);
        }
        let m = IcmpPacket::new_checked(ip.payload()).map_err(|_| unhandled)?;
        if m.msg_type() != types::ECHO_REQUEST || m.code() != 0 || !m.verify_checksum() {
            return Err(unhandled);
        }
        let me = self.addressing.get(ingress).ok_or(unhandled)?;
        let capacity = ipv4::MIN_HEADER_LEN + icmp::HEADER_LEN + m.payload().len();
        let reply = Transmit::ipv4(ingress, me.mac, eth.src(), capacity, |out| {
            let echo = EchoRepr {
                msg_type: types::ECHO_REPLY,
                ident: m.ident(),
                seq: m.seq_no(),
            };
            icmp::build_echo(out, &OwnHeader::new(dst, src), &echo, m.payload()).ok()
        })
        .ok_or(unhandled)?;
        self.transmits.push_back(reply);
        Ok(())
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }
}

#[cfg(test)]
mod tests;
