//! TCP segments (RFC 9293): the fields NAT, MSS clamping, RSTs and SYN probes need.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum::{self, L4Checksum};
use super::field::{set_u8, set_u16, set_u32, slice, try_u16_at, u8_at, u16_at, u32_at};
use super::ipv4::{self, OwnHeader, proto};
use super::ipv6;
use super::{Result, Side, WireError};

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// Flag bits of byte 13.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

mod offset {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
}

mod option {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const MSS_LEN: usize = 4;
}

/// A view of a TCP segment: the whole IPv4 payload (TCP has no length field of its own, so the
/// buffer's length is the segment length used by the checksum).
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Err(Truncated) below 20 bytes or when the header is longer than the buffer;
    /// Err(Malformed) for a data offset below 5.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let len = buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let packet = Self { buffer };
        if packet.header_len() < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if packet.header_len() > len {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    /// Views `buffer` without checking; accessors of missing fields read as zero (e.g. the 8
    /// bytes of a segment quoted in an ICMP error: ports and sequence number only).
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

    pub fn seq(&self) -> u32 {
        u32_at(self.buffer.as_ref(), offset::SEQ)
    }

    pub fn ack(&self) -> u32 {
        u32_at(self.buffer.as_ref(), offset::ACK)
    }

    /// Header length in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(u8_at(self.buffer.as_ref(), offset::DATA_OFFSET) >> 4) * 4
    }

    /// Byte 13: see [`flags`].
    pub fn flags(&self) -> u8 {
        u8_at(self.buffer.as_ref(), offset::FLAGS)
    }

    pub fn window(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::CHECKSUM)
    }

    pub fn payload(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        slice(buf, self.header_len()..buf.len())
    }

    /// Offset (from the start of the TCP header) of the 2-byte value of the MSS option, if the
    /// option list has a well-formed one. Walks EOL/NOP/length-prefixed options; any malformed
    /// option (length < 2, running past the header, or an MSS whose length is not 4) gives None.
    pub fn mss_offset(&self) -> Option<usize> {
        let buf = self.buffer.as_ref();
        let end = self.header_len().min(buf.len());
        let mut at = MIN_HEADER_LEN;
        while at < end {
            match u8_at(buf, at) {
                option::EOL => return None,
                option::NOP => at += 1,
                kind => {
                    let len = usize::from(*buf.get(at + 1)?);
                    if len < 2 || at + len > end {
                        return None;
                    }
                    if kind == option::MSS {
                        return (len == option::MSS_LEN).then_some(at + 2);
                    }
                    at += len;
                }
            }
        }
        None
    }

    /// The checksum over the pseudo header and the whole buffer verifies.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::l4_checksum(src, dst, proto::TCP, self.buffer.as_ref()) == Some(0)
    }

    /// The same over the IPv6 pseudo header.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let tcp = super::ipv6::next_header::TCP;
        checksum::l4_checksum_v6(src, dst, tcp, self.buffer.as_ref()) == Some(0)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), offset::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), offset::DST_PORT, port);
    }

    pub fn set_seq(&mut self, seq: u32) {
        set_u32(self.buffer.as_mut(), offset::SEQ, seq);
    }

    pub fn set_ack(&mut self, ack: u32) {
        set_u32(self.buffer.as_mut(), offset::ACK, ack);
    }

    /// Sets the data offset from a length in bytes (a multiple of 4, 20..=60); the reserved
    /// bits are cleared.
    pub fn set_header_len(&mut self, len: usize) {
        set_u8(
            self.buffer.as_mut(),
            offset::DATA_OFFSET,
            ((len / 4) as u8 & 0x0f) << 4,
        );
    }

    pub fn set_flags(&mut self, flags: u8) {
        set_u8(self.buffer.as_mut(), offset::FLAGS, flags);
    }

    pub fn set_window(&mut self, window: u16) {
        set_u16(self.buffer.as_mut(), offset::WINDOW, window);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        set_u16(self.buffer.as_mut(), offset::CHECKSUM, checksum);
    }

    /// Full checksum over the pseudo header and the whole buffer. A buffer longer than IPv4
    /// can carry has no correct checksum and is left unchanged.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        if let Some(checksum) = checksum::l4_checksum(src, dst, proto::TCP, self.buffer.as_ref()) {
            self.set_checksum(checksum);
        }
    }

    /// The same over the IPv6 pseudo header.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let tcp = super::ipv6::next_header::TCP;
        if let Some(checksum) = checksum::l4_checksum_v6(src, dst, tcp, self.buffer.as_ref()) {
            self.set_checksum(checksum);
        }
    }

    /// NAT: sets the port on `side` and updates the checksum for it and for that side's
    /// address having changed from `old_addr` to `new_addr` in the pseudo-header (see
    /// `checksum::rewrite_endpoint_at`).
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
        checksum::rewrite_endpoint_at(self.buffer.as_mut(), at, addr, port, held, false);
    }

    /// Lowers the MSS option to `max` if it is above it (Cisco "ip tcp adjust-mss"); a partial
    /// checksum covers no option, so only a full one is updated.
    pub fn clamp_mss(&mut self, max: u16, held: L4Checksum) {
        let Some(at) = self.mss_offset() else {
            return;
        };
        let buf = self.buffer.as_mut();
        let Some(mss) = try_u16_at(buf, at) else {
            return;
        };
        if mss <= max {
            return;
        }
        set_u16(buf, at, max);
        if held == L4Checksum::Full
            && let Some(c) = try_u16_at(buf, offset::CHECKSUM)
        {
            set_u16(buf, offset::CHECKSUM, checksum::update16(c, mss, max));
        }
    }
}

/// The header fields of a segment the router originates (no options, no payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
}

impl TcpRepr {
    /// A RST without ACK and with sequence number `seq`: RFC 793's answer to a segment that
    /// acknowledged `seq`, and how the router ends a connection it will no longer carry.
    pub fn rst(sport: u16, dport: u16, seq: u32) -> TcpRepr {
        TcpRepr {
            sport,
            dport,
            seq,
            ack: 0,
            flags: flags::RST,
            window: 0,
        }
    }
}

/// Builds an IPv4+TCP segment, checksums filled: RSTs toward LAN hosts and SYN probes.
/// Err(Truncated) if `out` is shorter than 40 bytes.
pub fn build_segment(out: &mut [u8], ip: &OwnHeader, repr: &TcpRepr) -> Result<usize> {
    let len = ipv4::MIN_HEADER_LEN + MIN_HEADER_LEN;
    let packet = out.get_mut(..len).ok_or(WireError::Truncated)?;
    ipv4::write_header(packet, &ip.repr(proto::TCP, MIN_HEADER_LEN))?;
    let segment = packet
        .get_mut(ipv4::MIN_HEADER_LEN..)
        .ok_or(WireError::Truncated)?;
    segment.fill(0);
    let mut tcp = TcpPacket::new_unchecked(segment);
    write_repr(&mut tcp, repr);
    tcp.fill_checksum(ip.src, ip.dst);
    Ok(len)
}

/// [`build_segment`] over IPv6: a SYN probe to an IPv6 target, or its RST.
pub fn build_segment_v6(out: &mut [u8], ip: &ipv6::OwnHeader, repr: &TcpRepr) -> Result<usize> {
    let len = ipv6::HEADER_LEN + MIN_HEADER_LEN;
    let packet = out.get_mut(..len).ok_or(WireError::Truncated)?;
    ipv6::write_header(packet, &ip.repr(ipv6::next_header::TCP, MIN_HEADER_LEN))?;
    let segment = packet
        .get_mut(ipv6::HEADER_LEN..)
        .ok_or(WireError::Truncated)?;
    segment.fill(0);
    let mut tcp = TcpPacket::new_unchecked(segment);
    write_repr(&mut tcp, repr);
    tcp.fill_checksum_v6(ip.src, ip.dst);
    Ok(len)
}

/// The fields of `repr` into a zeroed minimal header.
fn write_repr(tcp: &mut TcpPacket<&mut [u8]>, repr: &TcpRepr) {
    tcp.set_src_port(repr.sport);
    tcp.set_dst_port(repr.dport);
    tcp.set_seq(repr.seq);
    tcp.set_ack(repr.ack);
    tcp.set_header_len(MIN_HEADER_LEN);
    tcp.set_flags(repr.flags);
    tcp.set_window(repr.window);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Packet;
    use etherparse::{PacketBuilder, TcpOptionElement};
    use proptest::prelude::*;

    const LAN_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
    const FAR: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 6);
    const UPLINK_A: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);

    fn syn_with_options(options: &[TcpOptionElement], payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        PacketBuilder::ipv4(LAN_HOST.octets(), FAR.octets(), 64)
            .tcp(40000, 443, 0x0102_0304, 64240)
            .syn()
            .options(options)
            .unwrap()
            .write(&mut bytes, payload)
            .unwrap();
        bytes
    }

    fn segment_of(packet: &[u8]) -> &[u8] {
        &packet[ipv4::MIN_HEADER_LEN..]
    }

    #[test]
    fn parses_etherparse_syn() {
        let options = [
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(1, 2),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ];
        let packet = syn_with_options(&options, b"data");
        let tcp = TcpPacket::new_checked(segment_of(&packet)).unwrap();
        assert_eq!(
            (tcp.src_port(), tcp.dst_port(), tcp.seq(), tcp.ack()),
            (40000, 443, 0x0102_0304, 0)
        );
        assert_eq!(
            (tcp.flags(), tcp.window(), tcp.header_len()),
            (flags::SYN, 64240, 40)
        );
        assert_eq!(tcp.payload(), b"data");
        assert_eq!(tcp.mss_offset(), Some(22));
        assert!(tcp.verify_checksum(LAN_HOST, FAR));
        assert!(!tcp.verify_checksum(UPLINK_A, FAR));
    }

    #[test]
    fn mss_after_other_options_and_absent() {
        let packet = syn_with_options(
            &[
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(2),
                TcpOptionElement::MaximumSegmentSize(1400),
            ],
            &[],
        );
        let tcp = TcpPacket::new_checked(segment_of(&packet)).unwrap();
        let at = tcp.mss_offset().unwrap();
        assert_eq!(
            u16::from_be_bytes([segment_of(&packet)[at], segment_of(&packet)[at + 1]]),
            1400
        );
        let packet = syn_with_options(&[TcpOptionElement::WindowScale(2)], &[]);
        assert_eq!(
            TcpPacket::new_checked(segment_of(&packet))
                .unwrap()
                .mss_offset(),
            None
        );
        let packet = syn_with_options(&[], &[]);
        assert_eq!(
            TcpPacket::new_checked(segment_of(&packet))
                .unwrap()
                .mss_offset(),
            None
        );
    }

    #[test]
    fn malformed_options_give_none() {
        let with_options = |options: [u8; 8]| {
            let mut seg = [0u8; 28];
            seg[12] = 0x70;
            seg[20..].copy_from_slice(&options);
            TcpPacket::new_checked(seg).unwrap().mss_offset()
        };
        assert_eq!(with_options([1, 1, 2, 4, 5, 0xb4, 0, 0]), Some(24));
        assert_eq!(with_options([0, 1, 2, 4, 5, 0xb4, 0, 0]), None, "after EOL");
        assert_eq!(
            with_options([3, 0, 2, 4, 5, 0xb4, 0, 0]),
            None,
            "zero length"
        );
        assert_eq!(with_options([3, 1, 2, 4, 5, 0xb4, 0, 0]), None, "length 1");
        assert_eq!(
            with_options([3, 9, 2, 4, 5, 0xb4, 0, 0]),
            None,
            "past the header"
        );
        assert_eq!(
            with_options([2, 3, 5, 1, 1, 1, 1, 1]),
            None,
            "MSS of length 3"
        );
        assert_eq!(
            with_options([1, 1, 1, 1, 1, 1, 2, 4]),
            None,
            "MSS cut off by the header end"
        );
        assert_eq!(
            with_options([1, 1, 1, 1, 1, 1, 1, 8]),
            None,
            "kind without its length byte"
        );
    }

    #[test]
    fn new_checked_errors() {
        let mut seg = [0u8; 24];
        assert_eq!(
            TcpPacket::new_checked(&seg[..19]).err(),
            Some(WireError::Truncated)
        );
        seg[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&seg[..]).err(),
            Some(WireError::Malformed)
        );
        seg[12] = 0x70;
        assert_eq!(
            TcpPacket::new_checked(&seg[..]).err(),
            Some(WireError::Truncated)
        );
        seg[12] = 0x60;
        assert_eq!(
            TcpPacket::new_checked(&seg[..]).unwrap().payload(),
            &[] as &[u8]
        );
    }

    #[test]
    fn rst_and_syn_match_etherparse() {
        let mut ours = [0u8; 64];
        let ip = |src, dst| OwnHeader {
            src,
            dst,
            ttl: 64,
            dscp: 0,
        };
        let rst = TcpRepr {
            sport: 443,
            dport: 40000,
            seq: 7,
            ack: 99,
            flags: flags::RST | flags::ACK,
            window: 0,
        };
        let len = build_segment(&mut ours, &ip(FAR, LAN_HOST), &rst).unwrap();
        let mut theirs = Vec::new();
        PacketBuilder::ipv4(FAR.octets(), LAN_HOST.octets(), 64)
            .tcp(443, 40000, 7, 0)
            .rst()
            .ack(99)
            .write(&mut theirs, &[])
            .unwrap();
        assert_eq!(&ours[..len], &theirs[..]);

        let syn = TcpRepr {
            sport: 50000,
            dport: 80,
            seq: 1,
            ack: 0,
            flags: flags::SYN,
            window: 1024,
        };
        let len = build_segment(&mut ours, &ip(UPLINK_A, FAR), &syn).unwrap();
        theirs.clear();
        PacketBuilder::ipv4(UPLINK_A.octets(), FAR.octets(), 64)
            .tcp(50000, 80, 1, 1024)
            .syn()
            .write(&mut theirs, &[])
            .unwrap();
        assert_eq!(&ours[..len], &theirs[..]);
        assert_eq!(
            build_segment(&mut ours[..39], &ip(UPLINK_A, FAR), &syn),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn nat_rewrite_with_incremental_updates_verifies() {
        let mut packet = syn_with_options(&[TcpOptionElement::MaximumSegmentSize(1460)], b"hello");
        assert!(Ipv4Packet::new_checked(&packet[..]).is_ok());
        // Header and segment borrowed at once: the header slice alone is shorter than total_len.
        let (ip_bytes, seg) = packet.split_at_mut(ipv4::MIN_HEADER_LEN);
        let mut ip = Ipv4Packet::new_unchecked(ip_bytes);
        let mut tcp = TcpPacket::new_checked(seg).unwrap();
        let old_src = ip.rewrite_addr(Side::Src, UPLINK_A);
        assert_eq!(old_src, LAN_HOST);
        tcp.rewrite_endpoint(Side::Src, old_src, UPLINK_A, 61000, L4Checksum::Full);
        tcp.clamp_mss(1400, L4Checksum::Full);
        assert!(ip.verify_checksum());
        assert!(tcp.verify_checksum(UPLINK_A, FAR));
        assert_eq!(tcp.src_port(), 61000);
        let mss = tcp.mss_offset().unwrap();
        assert_eq!(&tcp.into_inner()[mss..mss + 2], &1400u16.to_be_bytes());
    }

    #[test]
    fn setters_round_trip() {
        let mut seg = [0u8; 20];
        let mut tcp = TcpPacket::new_unchecked(&mut seg[..]);
        tcp.set_header_len(20);
        tcp.set_seq(u32::MAX);
        tcp.set_ack(5);
        tcp.set_flags(flags::FIN | flags::PSH | flags::URG);
        tcp.set_dst_port(22);
        tcp.fill_checksum(LAN_HOST, FAR);
        assert!(tcp.verify_checksum(LAN_HOST, FAR));
        assert_eq!(
            (
                tcp.seq(),
                tcp.ack(),
                tcp.flags(),
                tcp.dst_port(),
                tcp.header_len()
            ),
            (u32::MAX, 5, 0x29, 22, 20)
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(tcp) = TcpPacket::new_checked(&bytes[..]) {
                prop_assert_eq!(tcp.header_len() + tcp.payload().len(), bytes.len());
                if let Some(at) = tcp.mss_offset() {
                    prop_assert!(at + 2 <= tcp.header_len());
                }
                let _ = (tcp.seq(), tcp.ack(), tcp.flags(), tcp.window(), tcp.verify_checksum(LAN_HOST, FAR));
            }
            let mut copy = bytes.clone();
            let mut tcp = TcpPacket::new_unchecked(&mut copy[..]);
            let _ = (tcp.mss_offset(), tcp.payload().len(), tcp.src_port());
            tcp.fill_checksum(LAN_HOST, FAR);
            tcp.set_ack(1);
        }

        /// What a NAT does to a NEEDS_CSUM frame: the field holds the folded pseudo-header sum,
        /// the router rewrites an address (and a port, which needs no update), then the NIC
        /// finishes the checksum over the segment. The result must verify with the new address.
        #[test]
        fn partial_checksum_survives_address_rewrite(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            old_src in any::<u32>(),
            new_src in any::<u32>(),
            new_dst in any::<u32>(),
            new_port in any::<u16>(),
        ) {
            let (old_src, new_src, new_dst) = (Ipv4Addr::from_bits(old_src), Ipv4Addr::from_bits(new_src), Ipv4Addr::from_bits(new_dst));
            let mut seg = vec![0u8; MIN_HEADER_LEN + payload.len()];
            seg[MIN_HEADER_LEN..].copy_from_slice(&payload);
            let len = seg.len() as u16;
            let mut tcp = TcpPacket::new_unchecked(&mut seg[..]);
            tcp.set_header_len(MIN_HEADER_LEN);
            tcp.set_src_port(40000);
            tcp.set_flags(flags::ACK);
            tcp.set_checksum(checksum::fold(checksum::pseudo_header_sum(old_src, FAR, proto::TCP, len)));

            let partial = checksum::update_partial32(tcp.checksum(), old_src.to_bits(), new_src.to_bits());
            let partial = checksum::update_partial32(partial, FAR.to_bits(), new_dst.to_bits());
            tcp.set_checksum(partial);
            tcp.set_src_port(new_port);

            let finished = checksum::checksum(tcp.into_inner());
            let mut tcp = TcpPacket::new_unchecked(&mut seg[..]);
            tcp.set_checksum(finished);
            prop_assert!(tcp.verify_checksum(new_src, new_dst));
        }
    }
}
