//! VRRP version 3 advertisements for IPv4 (RFC 5798 §5): the only message VRRP has.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                        IPv4 Address(es)                       |
//! ```
//!
//! The checksum covers the IPv4 pseudo header (source, destination, protocol 112, VRRP length)
//! and the message (RFC 5798 §5.2.8), as keepalived and Linux compute it for IPv4.

use std::net::Ipv4Addr;

use super::checksum;
use super::ethernet::{self, EthernetFrame, MacAddr};
use super::field::{ipv4_at, set_ipv4, set_u8, set_u16, u8_at, u16_at};
use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::{Result, WireError};

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// Advertisements go to this link-local group (RFC 5798 §5.1.1.2).
pub const MULTICAST_ADDR: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Its Ethernet group address (RFC 1112 mapping of 224.0.0.18).
pub const MULTICAST_MAC: MacAddr = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x12]);
/// Sent with TTL 255; receivers drop anything else, so an advertisement never crossed a router.
pub const TTL: u8 = 255;
/// DSCP CS6 (network control), as keepalived sends it.
const DSCP_CS6: u8 = 48;
/// Version 3, type 1 (advertisement).
const VERSION: u8 = 3;
const TYPE_ADVERTISEMENT: u8 = 1;
/// Version, type, VRID, priority, count, interval and checksum.
pub const HEADER_LEN: usize = 8;
/// The advertisement interval is a 12-bit count of centiseconds.
pub const MAX_INTERVAL_CS: u16 = 0x0fff;

/// The virtual router's MAC address, 00-00-5E-00-01-{VRID} (RFC 5798 §7.3).
pub fn virtual_mac(vrid: u8) -> MacAddr {
    MacAddr([0x00, 0x00, 0x5e, 0x00, 0x01, vrid])
}

mod offset {
    pub const VERSION_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    pub const INTERVAL: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const ADDRS: usize = 8;
}

/// A view of a VRRPv3 advertisement (the IPv4 payload). The buffer may extend past the
/// addresses; the message stops after `addr_count` of them.
#[derive(Debug, Clone)]
pub struct VrrpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VrrpPacket<T> {
    /// Err(Truncated) below the header or the addresses it counts; Err(Unsupported) for another
    /// version (VRRPv2 speakers); Err(Malformed) for a type other than advertisement.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let buf = buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let packet = Self { buffer };
        if packet.version() != VERSION {
            return Err(WireError::Unsupported);
        }
        if packet.kind() != TYPE_ADVERTISEMENT {
            return Err(WireError::Malformed);
        }
        if packet.message_len() > packet.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    /// Views `buffer` without checking; accessors of missing fields read as zero.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn version(&self) -> u8 {
        u8_at(self.buffer.as_ref(), offset::VERSION_TYPE) >> 4
    }

    /// The packet type; 1 is the only one defined.
    pub fn kind(&self) -> u8 {
        u8_at(self.buffer.as_ref(), offset::VERSION_TYPE) & 0x0f
    }

    pub fn vrid(&self) -> u8 {
        u8_at(self.buffer.as_ref(), offset::VRID)
    }

    /// 255: the address owner; 0: the master is leaving.
    pub fn priority(&self) -> u8 {
        u8_at(self.buffer.as_ref(), offset::PRIORITY)
    }

    pub fn addr_count(&self) -> usize {
        usize::from(u8_at(self.buffer.as_ref(), offset::COUNT))
    }

    /// Max Adver Int in centiseconds (the low 12 bits; the top 4 are reserved).
    pub fn max_adver_int(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::INTERVAL) & MAX_INTERVAL_CS
    }

    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::CHECKSUM)
    }

    /// Header plus the counted addresses.
    pub fn message_len(&self) -> usize {
        HEADER_LEN + 4 * self.addr_count()
    }

    /// The counted addresses, in order.
    pub fn addrs(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let buf = self.buffer.as_ref();
        (0..self.addr_count()).map(move |i| ipv4_at(buf, offset::ADDRS + 4 * i))
    }

    /// The checksum over the IPv4 pseudo header and the message verifies.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.buffer
            .as_ref()
            .get(..self.message_len())
            .is_some_and(|message| checksum::l4_checksum(src, dst, PROTOCOL, message) == Some(0))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VrrpPacket<T> {
    fn set_version_type(&mut self) {
        set_u8(
            self.buffer.as_mut(),
            offset::VERSION_TYPE,
            (VERSION << 4) | TYPE_ADVERTISEMENT,
        );
    }

    pub fn set_vrid(&mut self, vrid: u8) {
        set_u8(self.buffer.as_mut(), offset::VRID, vrid);
    }

    pub fn set_priority(&mut self, priority: u8) {
        set_u8(self.buffer.as_mut(), offset::PRIORITY, priority);
    }

    fn set_addr_count(&mut self, count: u8) {
        set_u8(self.buffer.as_mut(), offset::COUNT, count);
    }

    /// Writes address number `index` (the count is not changed).
    pub fn set_addr(&mut self, index: usize, addr: Ipv4Addr) {
        set_ipv4(self.buffer.as_mut(), offset::ADDRS + 4 * index, addr);
    }

    /// Writes the interval with the reserved bits zero; values above 4095 are cut to 12 bits.
    pub fn set_max_adver_int(&mut self, centis: u16) {
        set_u16(
            self.buffer.as_mut(),
            offset::INTERVAL,
            centis & MAX_INTERVAL_CS,
        );
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        set_u16(self.buffer.as_mut(), offset::CHECKSUM, checksum);
    }

    /// Computes and writes the checksum over the pseudo header and the message.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = self.message_len();
        let sum = self
            .buffer
            .as_ref()
            .get(..len)
            .and_then(|message| checksum::l4_checksum(src, dst, PROTOCOL, message))
            .unwrap_or(0);
        self.set_checksum(sum);
    }
}

/// A parsed advertisement: what the state machine reads and what it asks to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpRepr {
    pub vrid: u8,
    pub priority: u8,
    /// Centiseconds, 1..=4095.
    pub max_adver_int: u16,
    /// At most 255.
    pub addrs: Vec<Ipv4Addr>,
}

impl VrrpRepr {
    /// Reads a checked view; Err(BadChecksum) unless the checksum verifies for `src`/`dst`.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &VrrpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<VrrpRepr> {
        if !packet.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        Ok(VrrpRepr {
            vrid: packet.vrid(),
            priority: packet.priority(),
            max_adver_int: packet.max_adver_int(),
            addrs: packet.addrs().collect(),
        })
    }

    /// Length of the message this emits.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + 4 * self.addrs.len()
    }

    /// Writes the message with its checksum for `src`/`dst`; Err(Truncated) if `out` is shorter
    /// than `buffer_len()`, Err(Malformed) with more than 255 addresses or an interval that
    /// does not fit 12 bits.
    pub fn emit(&self, out: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<()> {
        let count = u8::try_from(self.addrs.len()).map_err(|_| WireError::Malformed)?;
        if self.max_adver_int > MAX_INTERVAL_CS {
            return Err(WireError::Malformed);
        }
        let message = out
            .get_mut(..self.buffer_len())
            .ok_or(WireError::Truncated)?;
        let mut packet = VrrpPacket::new_unchecked(message);
        packet.set_version_type();
        packet.set_vrid(self.vrid);
        packet.set_priority(self.priority);
        packet.set_addr_count(count);
        packet.set_max_adver_int(self.max_adver_int);
        for (i, addr) in self.addrs.iter().enumerate() {
            packet.set_addr(i, *addr);
        }
        packet.fill_checksum(src, dst);
        Ok(())
    }

    /// Length of the Ethernet frame `build_frame` writes.
    pub fn frame_len(&self) -> usize {
        ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + self.buffer_len()
    }

    /// Writes the whole advertisement frame into `out`: from the virtual MAC to the VRRP group,
    /// IPv4 from `src` to 224.0.0.18 with TTL 255. Returns its length.
    pub fn build_frame(&self, out: &mut [u8], src: Ipv4Addr) -> Result<usize> {
        let len = self.frame_len();
        let frame = out.get_mut(..len).ok_or(WireError::Truncated)?;
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst(MULTICAST_MAC);
        eth.set_src(virtual_mac(self.vrid));
        eth.set_ethertype(ethernet::ethertype::IPV4);
        let ip = eth.payload_mut();
        let header = Ipv4Repr {
            src,
            dst: MULTICAST_ADDR,
            protocol: PROTOCOL,
            ttl: TTL,
            dscp: DSCP_CS6,
            ident: 0,
            dont_frag: false,
            payload_len: self.buffer_len(),
        };
        ipv4::write_header(ip, &header)?;
        let mut packet = Ipv4Packet::new_unchecked(&mut *ip);
        self.emit(packet.payload_mut(), src, MULTICAST_ADDR)?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An advertisement keepalived 2.2 (Debian 12) sent for `virtual_router_id 51`,
    /// `priority 150`, `advert_int 1`, two virtual addresses, from 192.168.0.3 (captured with
    /// tcpdump in a namespace; tshark shows "Checksum: 0x14d7 [correct]").
    const KEEPALIVED_FRAME: [u8; 50] = [
        0x01, 0x00, 0x5e, 0x00, 0x00, 0x12, 0x00, 0x00, 0x5e, 0x00, 0x01, 0x33, 0x08, 0x00, 0x45,
        0xc0, 0x00, 0x24, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x19, 0xeb, 0xc0, 0xa8, 0x00, 0x03,
        0xe0, 0x00, 0x00, 0x12, 0x31, 0x33, 0x96, 0x02, 0x00, 0x64, 0x14, 0xd7, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xfe,
    ];
    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 3);

    fn keepalived_repr() -> VrrpRepr {
        VrrpRepr {
            vrid: 51,
            priority: 150,
            max_adver_int: 100,
            addrs: vec![
                Ipv4Addr::new(192, 168, 0, 1),
                Ipv4Addr::new(192, 168, 0, 254),
            ],
        }
    }

    #[test]
    fn parses_keepalived_advertisement() {
        let eth = EthernetFrame::new_checked(&KEEPALIVED_FRAME[..]).unwrap();
        assert_eq!(eth.src(), virtual_mac(51));
        assert_eq!(eth.dst(), MULTICAST_MAC);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(
            (ip.protocol(), ip.ttl(), ip.dst()),
            (PROTOCOL, TTL, MULTICAST_ADDR)
        );
        let packet = VrrpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((packet.version(), packet.kind()), (3, 1));
        assert_eq!(packet.checksum(), 0x14d7);
        let repr = VrrpRepr::parse(&packet, ip.src(), ip.dst()).unwrap();
        assert_eq!(repr, keepalived_repr());
    }

    #[test]
    fn builds_the_frame_keepalived_sends() {
        let repr = keepalived_repr();
        let mut out = [0xaau8; 64];
        let len = repr.build_frame(&mut out, SRC).unwrap();
        assert_eq!(len, repr.frame_len());
        // keepalived numbers its IP ident from 1; ours is always 0, the rest is byte-identical.
        let mut expected = KEEPALIVED_FRAME;
        expected[19] = 0;
        let mut ip = Ipv4Packet::new_unchecked(&mut expected[14..]);
        ip.fill_checksum();
        assert_eq!(&out[..len], &expected[..]);
        assert_eq!(out[len], 0xaa);
    }

    #[test]
    fn checksum_covers_the_pseudo_header() {
        let packet = VrrpPacket::new_checked(&KEEPALIVED_FRAME[34..]).unwrap();
        assert!(packet.verify_checksum(SRC, MULTICAST_ADDR));
        // Another source address, another protocol's pseudo header: no longer verifies.
        assert!(!packet.verify_checksum(Ipv4Addr::new(192, 168, 0, 2), MULTICAST_ADDR));
        assert_eq!(
            VrrpRepr::parse(&packet, Ipv4Addr::new(192, 168, 0, 2), MULTICAST_ADDR),
            Err(WireError::BadChecksum)
        );
        let mut flipped = KEEPALIVED_FRAME;
        flipped[36] ^= 0x01; // priority
        let packet = VrrpPacket::new_checked(&flipped[34..]).unwrap();
        assert!(!packet.verify_checksum(SRC, MULTICAST_ADDR));
    }

    #[test]
    fn lengths_are_checked_once() {
        let message = &KEEPALIVED_FRAME[34..];
        assert_eq!(
            VrrpPacket::new_checked(&message[..7]).err(),
            Some(WireError::Truncated)
        );
        // Two addresses counted, one and a half present.
        assert_eq!(
            VrrpPacket::new_checked(&message[..14]).err(),
            Some(WireError::Truncated)
        );
        // Trailing bytes (Ethernet padding) are not part of the message.
        let mut padded = message.to_vec();
        padded.extend_from_slice(&[0; 10]);
        let packet = VrrpPacket::new_checked(&padded[..]).unwrap();
        assert_eq!(packet.message_len(), 16);
        assert!(packet.verify_checksum(SRC, MULTICAST_ADDR));
    }

    #[test]
    fn rejects_other_versions_and_types() {
        let mut v2 = KEEPALIVED_FRAME[34..].to_vec();
        v2[0] = 0x21;
        assert_eq!(
            VrrpPacket::new_checked(&v2[..]).err(),
            Some(WireError::Unsupported)
        );
        let mut other_type = KEEPALIVED_FRAME[34..].to_vec();
        other_type[0] = 0x32;
        assert_eq!(
            VrrpPacket::new_checked(&other_type[..]).err(),
            Some(WireError::Malformed)
        );
    }

    #[test]
    fn interval_reserved_bits_are_ignored_and_never_written() {
        let mut message = KEEPALIVED_FRAME[34..].to_vec();
        message[4] |= 0xf0;
        let packet = VrrpPacket::new_checked(&message[..]).unwrap();
        assert_eq!(packet.max_adver_int(), 100);
        let mut repr = keepalived_repr();
        repr.max_adver_int = 4096;
        let mut out = [0u8; 16];
        assert_eq!(
            repr.emit(&mut out, SRC, MULTICAST_ADDR),
            Err(WireError::Malformed)
        );
        repr.max_adver_int = MAX_INTERVAL_CS;
        repr.emit(&mut out, SRC, MULTICAST_ADDR).unwrap();
        assert_eq!(&out[4..6], &[0x0f, 0xff]);
    }

    #[test]
    fn emit_checks_room_and_count() {
        let repr = keepalived_repr();
        let mut short = [0u8; 15];
        assert_eq!(
            repr.emit(&mut short, SRC, MULTICAST_ADDR),
            Err(WireError::Truncated)
        );
        let mut frame = [0u8; 49];
        assert_eq!(repr.build_frame(&mut frame, SRC), Err(WireError::Truncated));
        let many = VrrpRepr {
            addrs: vec![Ipv4Addr::LOCALHOST; 256],
            ..keepalived_repr()
        };
        let mut big = vec![0u8; many.buffer_len()];
        assert_eq!(
            many.emit(&mut big, SRC, MULTICAST_ADDR),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn virtual_mac_carries_the_vrid() {
        assert_eq!(virtual_mac(1).to_string(), "00:00:5e:00:01:01");
        assert_eq!(virtual_mac(255).0[5], 255);
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(
            vrid in any::<u8>(),
            priority in any::<u8>(),
            interval in 1u16..=MAX_INTERVAL_CS,
            addrs in proptest::collection::vec(any::<u32>().prop_map(Ipv4Addr::from), 0..20),
        ) {
            let repr = VrrpRepr { vrid, priority, max_adver_int: interval, addrs };
            let mut out = vec![0u8; repr.frame_len()];
            repr.build_frame(&mut out, SRC).unwrap();
            let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
            prop_assert!(ip.verify_checksum());
            let packet = VrrpPacket::new_checked(ip.payload()).unwrap();
            prop_assert_eq!(VrrpRepr::parse(&packet, SRC, MULTICAST_ADDR).unwrap(), repr);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = VrrpPacket::new_checked(&bytes[..]) {
                let _ = (p.vrid(), p.priority(), p.max_adver_int(), p.addrs().count());
                let _ = VrrpRepr::parse(&p, SRC, MULTICAST_ADDR);
            }
            let p = VrrpPacket::new_unchecked(&bytes[..]);
            let _ = (p.addrs().count(), p.verify_checksum(SRC, MULTICAST_ADDR));
        }
    }
}
