//! UDP datagrams (RFC 768), over IPv4 and over IPv6 (where the checksum is mandatory,
//! RFC 8200 §8.1).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum::{self, L4Checksum};
use super::field::{set_u16, slice, slice_mut, u16_at};
use super::ipv4::{self, OwnHeader, proto};
use super::ipv6::{self, next_header};
use super::{Result, Side, WireError};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod offset {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A view of a UDP datagram. The buffer may extend past the length field; the datagram (and
/// its checksum) stop at that length.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Err(Truncated) below 8 bytes or when the length field exceeds the buffer;
    /// Err(Malformed) for a length field below 8.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let packet = Self { buffer };
        if packet.len() < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if packet.len() > len {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    /// Views `buffer` without checking; accessors of missing fields read as zero (e.g. the 8
    /// bytes of a datagram quoted in an ICMP error, whose length field exceeds them).
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::DST_PORT)
    }

    /// The length field: header plus payload, in bytes.
    #[allow(clippy::len_without_is_empty)] // a datagram is never empty: the header counts
    pub fn len(&self) -> usize {
        usize::from(u16_at(self.buffer.as_ref(), offset::LENGTH))
    }

    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::CHECKSUM)
    }

    /// Bytes 8 up to the length field.
    pub fn payload(&self) -> &[u8] {
        slice(self.buffer.as_ref(), HEADER_LEN..self.len())
    }

    /// A zero checksum means "none" (RFC 768) and verifies; otherwise the checksum over the
    /// pseudo header and the datagram (up to the length field) must verify.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0
            || self.datagram().is_some_and(|datagram| {
                checksum::l4_checksum(src, dst, proto::UDP, datagram) == Some(0)
            })
    }

    /// Over IPv6 the checksum is mandatory (RFC 8200 §8.1): a zero one does not verify.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        self.checksum() != 0
            && self.datagram().is_some_and(|datagram| {
                checksum::l4_checksum_v6(src, dst, next_header::UDP, datagram) == Some(0)
            })
    }

    fn datagram(&self) -> Option<&[u8]> {
        self.buffer.as_ref().get(..self.len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), offset::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), offset::DST_PORT, port);
    }

    pub fn set_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), offset::LENGTH, len);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        set_u16(self.buffer.as_mut(), offset::CHECKSUM, checksum);
    }

    /// Bytes 8 up to the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = HEADER_LEN..self.len();
        slice_mut(self.buffer.as_mut(), range)
    }

    /// NAT: sets the port on `side` and updates the checksum for it and for that side's
    /// address having changed from `old_addr` to `new_addr` in the pseudo-header (see
    /// `checksum::rewrite_endpoint_at` for the zero checksum).
    #[inline]
    pub fn rewrite_endpoint(
        &mut self,
        side: Side,
        old_addr: Ipv4Addr,
        new_addr: Ipv4Addr,
        port: u16,
        held: L4Checksum,
    ) {
        let at = (
            side.pick(offset::SRC_PORT, offset::DST_PORT),
            offset::CHECKSUM,
        );
        let addr = (old_addr.to_bits(), new_addr.to_bits());
        checksum::rewrite_endpoint_at(self.buffer.as_mut(), at, addr, port, held, true);
    }

    /// Full checksum over the pseudo header and the datagram; a computed 0 is sent as 0xffff
    /// (RFC 768: 0 means no checksum). Left unchanged if the length field exceeds the buffer.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let computed = self
            .datagram()
            .and_then(|datagram| checksum::l4_checksum(src, dst, proto::UDP, datagram));
        if let Some(checksum) = computed {
            self.set_checksum(if checksum == 0 { 0xffff } else { checksum });
        }
    }
}

/// Builds an IPv4+UDP datagram from `sport` to `dport` carrying `payload`, checksums filled
/// (DNS probes, DHCP). Err(Truncated) if `out` is too small, Err(Malformed) if the payload
/// cannot fit in IPv4.
pub fn build_datagram(
    out: &mut [u8],
    ip: &OwnHeader,
    (sport, dport): (u16, u16),
    payload: &[u8],
) -> Result<usize> {
    let udp_len = HEADER_LEN + payload.len();
    let len = ipv4::MIN_HEADER_LEN + udp_len;
    let packet = out.get_mut(..len).ok_or(WireError::Truncated)?;
    ipv4::write_header(packet, &ip.repr(proto::UDP, udp_len))?;
    // write_header has checked that udp_len fits in 16 bits.
    let udp_len = u16::try_from(udp_len).map_err(|_| WireError::Malformed)?;
    let mut udp = UdpPacket::new_unchecked(slice_mut(packet, ipv4::MIN_HEADER_LEN..len));
    udp.set_src_port(sport);
    udp.set_dst_port(dport);
    udp.set_len(udp_len);
    udp.payload_mut().copy_from_slice(payload);
    udp.fill_checksum(ip.src, ip.dst);
    Ok(len)
}

/// Builds an IPv6+UDP datagram from `sport` to `dport` carrying `payload`, checksum filled
/// (the DNS forwarder's answers). Err(Truncated) if `out` is too small, Err(Malformed) if the
/// payload cannot fit in one IPv6 packet.
pub fn build_datagram_v6(
    out: &mut [u8],
    ip: &ipv6::OwnHeader,
    (sport, dport): (u16, u16),
    payload: &[u8],
) -> Result<usize> {
    let udp_len = HEADER_LEN + payload.len();
    let len = ipv6::HEADER_LEN + udp_len;
    let packet = out.get_mut(..len).ok_or(WireError::Truncated)?;
    ipv6::write_header(packet, &ip.repr(next_header::UDP, udp_len))?;
    let udp_len = u16::try_from(udp_len).map_err(|_| WireError::Malformed)?;
    let mut udp = UdpPacket::new_unchecked(slice_mut(packet, ipv6::HEADER_LEN..len));
    udp.set_src_port(sport);
    udp.set_dst_port(dport);
    udp.set_len(udp_len);
    udp.payload_mut().copy_from_slice(payload);
    udp.set_checksum(0);
    let datagram = udp.datagram().ok_or(WireError::Truncated)?;
    let computed = checksum::l4_checksum_v6(ip.src, ip.dst, next_header::UDP, datagram)
        .ok_or(WireError::Malformed)?;
    // RFC 8200 §8.1: a computed 0 is sent as 0xffff, 0 meaning none (invalid over IPv6).
    udp.set_checksum(if computed == 0 { 0xffff } else { computed });
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Side;
    use etherparse::{IpHeaders, Ipv4Header, PacketBuilder};
    use proptest::prelude::*;

    const UPLINK_B: Ipv4Addr = Ipv4Addr::new(172, 17, 3, 1);
    const FAR: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 6);

    fn own(ttl: u8, dscp: u8) -> OwnHeader {
        OwnHeader {
            src: UPLINK_B,
            dst: FAR,
            ttl,
            dscp,
        }
    }

    #[test]
    fn datagram_matches_etherparse() {
        let mut ours = [0u8; 128];
        let len = build_datagram(&mut ours, &own(64, 0), (53000, 53), b"query").unwrap();
        let mut theirs = Vec::new();
        PacketBuilder::ipv4(UPLINK_B.octets(), FAR.octets(), 64)
            .udp(53000, 53)
            .write(&mut theirs, b"query")
            .unwrap();
        assert_eq!(&ours[..len], &theirs[..]);
        assert_eq!(
            build_datagram(&mut ours[..len - 1], &own(64, 0), (1, 2), b"query"),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn datagram_v6_matches_etherparse_and_verifies() {
        let (src, dst): (Ipv6Addr, Ipv6Addr) =
            ("fe80::1".parse().unwrap(), "ff02::1:2".parse().unwrap());
        let mut ours = [0u8; 128];
        let ip = ipv6::OwnHeader::new(src, dst);
        let len = build_datagram_v6(&mut ours, &ip, (546, 547), b"solicit").unwrap();
        let mut theirs = Vec::new();
        PacketBuilder::ipv6(src.octets(), dst.octets(), 64)
            .udp(546, 547)
            .write(&mut theirs, b"solicit")
            .unwrap();
        assert_eq!(&ours[..len], &theirs[..]);
        let udp = UdpPacket::new_checked(&ours[ipv6::HEADER_LEN..len]).unwrap();
        assert!(udp.verify_checksum_v6(src, dst));
        let mut bad = ours;
        bad[len - 1] ^= 1;
        let udp = UdpPacket::new_checked(&bad[ipv6::HEADER_LEN..len]).unwrap();
        assert!(!udp.verify_checksum_v6(src, dst));
        assert_eq!(
            build_datagram_v6(&mut ours[..len - 1], &ip, (1, 2), b"solicit"),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn datagram_with_dscp_matches_etherparse() {
        let mut ours = [0u8; 64];
        let len = build_datagram(&mut ours, &own(9, 10), (1, 2), b"x").unwrap();
        let mut header = Ipv4Header::new(
            0,
            9,
            etherparse::IpNumber::UDP,
            UPLINK_B.octets(),
            FAR.octets(),
        )
        .unwrap();
        header.dscp = etherparse::Ipv4Dscp::try_new(10).unwrap();
        let mut theirs = Vec::new();
        PacketBuilder::ip(IpHeaders::Ipv4(header, Default::default()))
            .udp(1, 2)
            .write(&mut theirs, b"x")
            .unwrap();
        assert_eq!(&ours[..len], &theirs[..]);
    }

    #[test]
    fn parses_etherparse_with_padding() {
        let mut packet = Vec::new();
        PacketBuilder::ipv4(FAR.octets(), UPLINK_B.octets(), 64)
            .udp(53, 53000)
            .write(&mut packet, b"answer")
            .unwrap();
        let mut seg = packet[20..].to_vec();
        seg.extend_from_slice(&[0xee; 6]);
        let udp = UdpPacket::new_checked(&seg[..]).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (53, 53000, 14));
        assert_eq!(udp.payload(), b"answer");
        assert!(udp.verify_checksum(FAR, UPLINK_B));
        assert!(!udp.verify_checksum(FAR, FAR));
    }

    #[test]
    fn new_checked_errors() {
        let mut seg = [0u8; 12];
        assert_eq!(
            UdpPacket::new_checked(&seg[..7]).err(),
            Some(WireError::Truncated)
        );
        seg[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&seg[..]).err(),
            Some(WireError::Malformed)
        );
        seg[5] = 13;
        assert_eq!(
            UdpPacket::new_checked(&seg[..]).err(),
            Some(WireError::Truncated)
        );
        seg[5] = 12;
        assert_eq!(UdpPacket::new_checked(&seg[..]).unwrap().payload().len(), 4);
    }

    #[test]
    fn zero_checksum_means_none_and_computed_zero_is_sent_as_ffff() {
        let mut seg = [0u8; 10];
        let mut udp = UdpPacket::new_unchecked(&mut seg[..]);
        udp.set_len(10);
        udp.set_src_port(1);
        assert!(udp.verify_checksum(UPLINK_B, FAR), "no checksum");
        udp.fill_checksum(UPLINK_B, FAR);
        // Choose the payload word so that the data sums to -0: the computed checksum is 0.
        let word = udp.checksum();
        udp.payload_mut().copy_from_slice(&word.to_be_bytes());
        udp.fill_checksum(UPLINK_B, FAR);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum(UPLINK_B, FAR));
        udp.set_dst_port(9);
        assert!(!udp.verify_checksum(UPLINK_B, FAR));
    }

    #[test]
    fn nat_rewrite_keeps_zero_and_never_computes_zero() {
        let full = L4Checksum::Full;
        let mut seg = [0u8; 10];
        let mut udp = UdpPacket::new_unchecked(&mut seg[..]);
        udp.set_len(10);
        udp.rewrite_endpoint(Side::Src, UPLINK_B, FAR, 7, full);
        assert_eq!(
            (udp.src_port(), udp.checksum()),
            (7, 0),
            "no checksum stays none"
        );
        udp.fill_checksum(UPLINK_B, FAR);
        // The one new port for which the incremental update comes out as 0.
        let c = udp.checksum();
        let zero_port = (0..=u16::MAX)
            .find(|&p| checksum::update_endpoint(c, (0, 0), (7, p), full) == 0)
            .unwrap();
        udp.rewrite_endpoint(Side::Src, UPLINK_B, UPLINK_B, zero_port, full);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum(UPLINK_B, FAR));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(udp) = UdpPacket::new_checked(&bytes[..]) {
                prop_assert_eq!(udp.payload().len(), udp.len() - HEADER_LEN);
                let _ = (udp.src_port(), udp.dst_port(), udp.verify_checksum(FAR, FAR));
            }
            let mut copy = bytes.clone();
            let mut udp = UdpPacket::new_unchecked(&mut copy[..]);
            let _ = (udp.payload().len(), udp.payload_mut().len(), udp.verify_checksum(FAR, FAR));
            udp.fill_checksum(FAR, FAR);
            udp.set_len(u16::MAX);
            let _ = udp.payload();
        }

        #[test]
        fn built_datagrams_verify(payload in proptest::collection::vec(any::<u8>(), 0..600), sport in any::<u16>(), dscp in 0u8..64) {
            let mut out = [0u8; 700];
            let len = build_datagram(&mut out, &own(64, dscp), (sport, 53), &payload).unwrap();
            let ip = crate::wire::ipv4::Ipv4Packet::new_checked(&out[..len]).unwrap();
            prop_assert!(ip.verify_checksum());
            prop_assert_eq!(ip.dscp_ecn() >> 2, dscp);
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            prop_assert!(udp.verify_checksum(UPLINK_B, FAR));
            prop_assert_eq!(udp.payload(), &payload[..]);
            let (theirs, _) = etherparse::UdpHeader::from_slice(ip.payload()).unwrap();
            prop_assert_eq!(theirs.calc_checksum_ipv4_raw(UPLINK_B.octets(), FAR.octets(), &payload).unwrap(), udp.checksum());
        }
    }
}
