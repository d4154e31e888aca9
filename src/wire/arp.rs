//! ARP for Ethernet/IPv4 (RFC 826): the only combination the router speaks.

use std::net::Ipv4Addr;

use super::ethernet::{self, EthernetFrame, MacAddr};
use super::field::{bytes_at, ipv4_at, set_bytes, set_ipv4, set_u16, u8_at, u16_at};
use super::{Result, WireError};

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// Ethernet frames shorter than this (without FCS) must be padded.
pub const MIN_FRAME_LEN: usize = 60;

/// ARP operation codes.
pub mod op {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

const HTYPE_ETHERNET: u16 = 1;

mod offset {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
}

/// A view of an Ethernet/IPv4 ARP packet (the Ethernet payload).
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Err(Truncated) below 28 bytes; Err(Malformed) unless htype 1, ptype IPv4, hlen 6, plen 4.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let buf = buffer.as_ref();
        if buf.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if u16_at(buf, offset::HTYPE) != HTYPE_ETHERNET
            || u16_at(buf, offset::PTYPE) != ethernet::ethertype::IPV4
            || u8_at(buf, offset::HLEN) != 6
            || u8_at(buf, offset::PLEN) != 4
        {
            return Err(WireError::Malformed);
        }
        Ok(Self { buffer })
    }

    /// Views `buffer` without checking; accessors of missing fields read as zero.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn operation(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::OPER)
    }

    pub fn sender_mac(&self) -> MacAddr {
        MacAddr(bytes_at(self.buffer.as_ref(), offset::SHA))
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), offset::SPA)
    }

    pub fn target_mac(&self) -> MacAddr {
        MacAddr(bytes_at(self.buffer.as_ref(), offset::THA))
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), offset::TPA)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed Ethernet/IPv4 hardware and protocol fields.
    pub fn set_ethernet_ipv4(&mut self) {
        let buf = self.buffer.as_mut();
        set_u16(buf, offset::HTYPE, HTYPE_ETHERNET);
        set_u16(buf, offset::PTYPE, ethernet::ethertype::IPV4);
        set_bytes(buf, offset::HLEN, [6, 4]);
    }

    pub fn set_operation(&mut self, op: u16) {
        set_u16(self.buffer.as_mut(), offset::OPER, op);
    }

    pub fn set_sender_mac(&mut self, mac: MacAddr) {
        set_bytes(self.buffer.as_mut(), offset::SHA, mac.0);
    }

    pub fn set_sender_ip(&mut self, ip: Ipv4Addr) {
        set_ipv4(self.buffer.as_mut(), offset::SPA, ip);
    }

    pub fn set_target_mac(&mut self, mac: MacAddr) {
        set_bytes(self.buffer.as_mut(), offset::THA, mac.0);
    }

    pub fn set_target_ip(&mut self, ip: Ipv4Addr) {
        set_ipv4(self.buffer.as_mut(), offset::TPA, ip);
    }
}

/// Writes a complete Ethernet+ARP frame (padded to the 60-byte Ethernet minimum) into `out`;
/// returns its length, or Err(Truncated) if `out` is too small. The Ethernet source is
/// `sender_mac`.
pub fn build_frame(
    out: &mut [u8],
    eth_dst: MacAddr,
    op: u16,
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_mac: MacAddr,
    target_ip: Ipv4Addr,
) -> Result<usize> {
    let frame = out.get_mut(..MIN_FRAME_LEN).ok_or(WireError::Truncated)?;
    frame.fill(0);
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    eth.set_dst(eth_dst);
    eth.set_src(sender_mac);
    eth.set_ethertype(ethernet::ethertype::ARP);
    let mut arp = ArpPacket::new_unchecked(eth.payload_mut());
    arp.set_ethernet_ipv4();
    arp.set_operation(op);
    arp.set_sender_mac(sender_mac);
    arp.set_sender_ip(sender_ip);
    arp.set_target_mac(target_mac);
    arp.set_target_ip(target_ip);
    Ok(MIN_FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ROUTER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
    const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);
    const PE_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 2);

    #[test]
    fn build_request_and_parse_back() {
        let mut out = [0xaau8; 64];
        let len = build_frame(
            &mut out,
            MacAddr::BROADCAST,
            op::REQUEST,
            ROUTER,
            ROUTER_IP,
            MacAddr::ZERO,
            PE_IP,
        )
        .unwrap();
        assert_eq!(len, 60);
        // Padding is zeroed, not left over from the buffer.
        assert!(out[14 + PACKET_LEN..60].iter().all(|&b| b == 0));
        assert_eq!(out[60], 0xaa);
        let eth = EthernetFrame::new_checked(&out[..len]).unwrap();
        assert_eq!(
            (eth.dst(), eth.src(), eth.ethertype()),
            (MacAddr::BROADCAST, ROUTER, ethernet::ethertype::ARP)
        );
        let arp = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(arp.operation(), op::REQUEST);
        assert_eq!((arp.sender_mac(), arp.sender_ip()), (ROUTER, ROUTER_IP));
        assert_eq!((arp.target_mac(), arp.target_ip()), (MacAddr::ZERO, PE_IP));
        // Byte layout from RFC 826: htype 1, ptype 0x0800, hlen 6, plen 4, op 1.
        assert_eq!(&out[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
    }

    #[test]
    fn build_needs_sixty_bytes() {
        let mut out = [0u8; 59];
        let r = build_frame(
            &mut out,
            MacAddr::BROADCAST,
            op::REPLY,
            ROUTER,
            ROUTER_IP,
            ROUTER,
            PE_IP,
        );
        assert_eq!(r, Err(WireError::Truncated));
    }

    #[test]
    fn rejects_other_hardware_or_protocols() {
        let mut out = [0u8; 60];
        build_frame(
            &mut out,
            MacAddr::BROADCAST,
            op::REQUEST,
            ROUTER,
            ROUTER_IP,
            MacAddr::ZERO,
            PE_IP,
        )
        .unwrap();
        let arp = &out[14..14 + PACKET_LEN];
        assert!(ArpPacket::new_checked(arp).is_ok());
        assert_eq!(
            ArpPacket::new_checked(&arp[..27]).err(),
            Some(WireError::Truncated)
        );
        for (at, value) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut bad = arp.to_vec();
            bad[at] = value;
            assert_eq!(
                ArpPacket::new_checked(&bad[..]).err(),
                Some(WireError::Malformed),
                "byte {at}"
            );
        }
    }

    #[test]
    fn setters_rewrite_request_into_reply() {
        let mut out = [0u8; 60];
        build_frame(
            &mut out,
            MacAddr::BROADCAST,
            op::REQUEST,
            ROUTER,
            ROUTER_IP,
            MacAddr::ZERO,
            PE_IP,
        )
        .unwrap();
        let pe = MacAddr([0x52, 0x54, 0, 0, 0, 2]);
        let mut arp = ArpPacket::new_checked(&mut out[14..]).unwrap();
        arp.set_operation(op::REPLY);
        arp.set_target_mac(pe);
        assert_eq!((arp.operation(), arp.target_mac()), (op::REPLY, pe));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(arp) = ArpPacket::new_checked(&bytes[..]) {
                let _ = (arp.operation(), arp.sender_mac(), arp.sender_ip(), arp.target_mac(), arp.target_ip());
            }
            let mut copy = bytes.clone();
            let mut arp = ArpPacket::new_unchecked(&mut copy[..]);
            arp.set_ethernet_ipv4();
            arp.set_target_ip(PE_IP);
            let _ = (arp.target_ip(), arp.sender_mac());
        }
    }
}
