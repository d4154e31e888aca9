//! IPv4 headers (RFC 791).

use core::ops::Range;
use std::net::Ipv4Addr;

use super::checksum;
use super::field::{
    ipv4_at, set_ipv4, set_u8, set_u16, set_u32, slice, slice_mut, try_u16_at, try_u32_at, u8_at,
    u16_at,
};
use super::{Result, Side, WireError};

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// IP protocol numbers the router looks at.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

mod offset {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet starting at its header. The buffer may extend past `total_len`
/// (Ethernet padding); [`payload`](Self::payload) stops at `total_len`.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks version 4, `5 <= ihl`, `header_len <= total_len <= buffer length`. Does not verify
    /// the checksum ([`verify_checksum`](Self::verify_checksum) does).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_quoted(buffer)?;
        if packet.total_len() > packet.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    /// For the packet quoted inside an ICMP error: the header checks of
    /// [`new_checked`](Self::new_checked), but the buffer may end before `total_len` (RFC 792
    /// quotes only the header and 8 bytes); [`payload`](Self::payload) is then what is present.
    pub fn new_quoted(buffer: T) -> Result<Self> {
        let len = buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let packet = Self { buffer };
        let version = u8_at(packet.buffer.as_ref(), offset::VER_IHL) >> 4;
        if version != 4 || packet.header_len() < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if packet.header_len() > len {
            return Err(WireError::Truncated);
        }
        if packet.total_len() < packet.header_len() {
            return Err(WireError::Malformed);
        }
        Ok(packet)
    }

    /// Views `buffer` without checking; accessors of missing fields read as zero.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(u8_at(self.buffer.as_ref(), offset::VER_IHL) & 0x0f) * 4
    }

    pub fn total_len(&self) -> usize {
        usize::from(u16_at(self.buffer.as_ref(), offset::TOTAL_LEN))
    }

    /// The whole second byte: DSCP in the upper six bits, ECN in the lower two.
    pub fn dscp_ecn(&self) -> u8 {
        u8_at(self.buffer.as_ref(), offset::DSCP_ECN)
    }

    pub fn ident(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::IDENT)
    }

    fn flags_frag(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::FLAGS_FRAG)
    }

    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.flags_frag() & FRAG_OFFSET_MASK) * 8
    }

    /// True for any fragment of a larger datagram: MF set or a nonzero offset.
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    pub fn ttl(&self) -> u8 {
        u8_at(self.buffer.as_ref(), offset::TTL)
    }

    pub fn protocol(&self) -> u8 {
        u8_at(self.buffer.as_ref(), offset::PROTOCOL)
    }

    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::CHECKSUM)
    }

    pub fn src(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), offset::SRC)
    }

    pub fn dst(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), offset::DST)
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        slice(self.buffer.as_ref(), 0..self.header_len())
    }

    /// From the end of the header up to `total_len` (or the end of a quoted buffer).
    pub fn payload(&self) -> &[u8] {
        slice(self.buffer.as_ref(), self.payload_range())
    }

    fn payload_range(&self) -> Range<usize> {
        self.header_len()..self.total_len().min(self.buffer.as_ref().len())
    }

    pub fn verify_checksum(&self) -> bool {
        let header = self.header();
        header.len() >= MIN_HEADER_LEN && checksum::checksum(header) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn set_ttl(&mut self, ttl: u8) {
        set_u8(self.buffer.as_mut(), offset::TTL, ttl);
    }

    pub fn set_src(&mut self, addr: Ipv4Addr) {
        set_ipv4(self.buffer.as_mut(), offset::SRC, addr);
    }

    pub fn set_dst(&mut self, addr: Ipv4Addr) {
        set_ipv4(self.buffer.as_mut(), offset::DST, addr);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        set_u16(self.buffer.as_mut(), offset::CHECKSUM, checksum);
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let checksum = checksum::checksum(self.header());
        self.set_checksum(checksum);
    }

    pub fn set_total_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), offset::TOTAL_LEN, len);
    }

    pub fn set_ident(&mut self, ident: u16) {
        set_u16(self.buffer.as_mut(), offset::IDENT, ident);
    }

    pub fn set_dscp_ecn(&mut self, dscp_ecn: u8) {
        set_u8(self.buffer.as_mut(), offset::DSCP_ECN, dscp_ecn);
    }

    /// From the end of the header up to `total_len` (or the end of a quoted buffer).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        slice_mut(self.buffer.as_mut(), range)
    }

    /// Sets the address on `side` and updates the header checksum incrementally (RFC 1624);
    /// returns the address it replaced (for the L4 pseudo-header update).
    #[inline]
    pub fn rewrite_addr(&mut self, side: Side, addr: Ipv4Addr) -> Ipv4Addr {
        let at = side.pick(offset::SRC, offset::DST);
        let buf = self.buffer.as_mut();
        let old = try_u32_at(buf, at).unwrap_or(0);
        let new = addr.to_bits();
        set_u32(buf, at, new);
        if let Some(c) = try_u16_at(buf, offset::CHECKSUM) {
            set_u16(buf, offset::CHECKSUM, checksum::update32(c, old, new));
        }
        Ipv4Addr::from_bits(old)
    }

    /// Lowers the TTL by one (wrapping; callers check it first) and updates the header checksum
    /// incrementally over the TTL/protocol word.
    #[inline]
    pub fn decrement_ttl(&mut self) {
        let buf = self.buffer.as_mut();
        if let (Some(word), Some(c)) = (
            try_u16_at(buf, offset::TTL),
            try_u16_at(buf, offset::CHECKSUM),
        ) {
            let new = word.wrapping_sub(0x0100);
            set_u16(buf, offset::TTL, new);
            set_u16(buf, offset::CHECKSUM, checksum::update16(c, word, new));
        }
    }
}

/// The fields of a header without options, for [`write_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    /// The 6-bit DSCP (ECN is written zero).
    pub dscp: u8,
    pub ident: u16,
    pub dont_frag: bool,
    /// Bytes after the header: `total_len` is `20 + payload_len`.
    pub payload_len: usize,
}

/// The header of a packet the router originates (echo, TCP, UDP): addresses, TTL and 6-bit
/// DSCP; the builders add DF set and ident 0 (RFC 6864 allows any ident on atomic datagrams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnHeader {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub dscp: u8,
}

impl OwnHeader {
    /// TTL 64 and DSCP 0: the header of the router's answers (echo replies, RSTs).
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> OwnHeader {
        OwnHeader {
            src,
            dst,
            ttl: 64,
            dscp: 0,
        }
    }

    pub(super) fn repr(&self, protocol: u8, payload_len: usize) -> Ipv4Repr {
        Ipv4Repr {
            src: self.src,
            dst: self.dst,
            protocol,
            ttl: self.ttl,
            dscp: self.dscp,
            ident: 0,
            dont_frag: true,
            payload_len,
        }
    }
}

/// Writes a 20-byte header (no options) with a correct checksum into the start of `out`.
/// Err(Malformed) if `20 + payload_len` exceeds 65535, Err(Truncated) if `out` is shorter than
/// 20 bytes (the payload itself is not written).
pub fn write_header(out: &mut [u8], repr: &Ipv4Repr) -> Result<()> {
    let total_len = MIN_HEADER_LEN
        .checked_add(repr.payload_len)
        .and_then(|len| u16::try_from(len).ok())
        .ok_or(WireError::Malformed)?;
    let header = out.get_mut(..MIN_HEADER_LEN).ok_or(WireError::Truncated)?;
    header.fill(0);
    set_u8(header, offset::VER_IHL, 0x45);
    set_u16(
        header,
        offset::FLAGS_FRAG,
        if repr.dont_frag { FLAG_DF } else { 0 },
    );
    set_u8(header, offset::PROTOCOL, repr.protocol);
    let mut packet = Ipv4Packet::new_unchecked(header);
    packet.set_dscp_ecn((repr.dscp & 0x3f) << 2);
    packet.set_total_len(total_len);
    packet.set_ident(repr.ident);
    packet.set_ttl(repr.ttl);
    packet.set_src(repr.src);
    packet.set_dst(repr.dst);
    packet.fill_checksum();
    Ok(())
}

/// Writes fragment number `index` of the IPv4 packet `packet` (header first; DF clear) into
/// `out`, each fragment at most `mtu` bytes (RFC 791: data in multiples of 8 bytes, MF on all
/// but the last, which keeps the packet's own MF; offsets continue the packet's own offset, so
/// a fragment can be fragmented again). The header, options included, is copied into every
/// fragment. Returns the fragment's length, or None when `index` is past the last fragment or
/// the packet cannot be split (malformed, DF set, or an MTU too small for 8 bytes of data).
pub fn fragment(packet: &[u8], mtu: usize, index: usize, out: &mut [u8]) -> Option<usize> {
    let p = Ipv4Packet::new_checked(packet).ok()?;
    let hlen = p.header_len();
    let data = p.payload();
    let step = mtu.checked_sub(hlen)? & !7;
    // A fragment of a fragment whose end lies past 64 KiB has no encodable offset (13 bits of
    // 8-byte units) and could never be reassembled: nothing is produced, so nothing partial
    // is sent.
    if p.dont_frag() || step == 0 || hlen + p.frag_offset() + data.len() > usize::from(u16::MAX) {
        return None;
    }
    let start = index.checked_mul(step)?;
    if start >= data.len() && !(index == 0 && data.is_empty()) {
        return None;
    }
    let end = (start + step).min(data.len());
    let last = end == data.len();
    let len = hlen + end - start;
    let frag = out.get_mut(..len)?;
    frag[..hlen].copy_from_slice(p.header());
    frag[hlen..].copy_from_slice(&data[start..end]);
    let offset = (p.frag_offset() + start) / 8;
    let mf = !last || p.more_frags();
    set_u16(
        frag,
        offset::FLAGS_FRAG,
        (offset as u16 & FRAG_OFFSET_MASK) | if mf { FLAG_MF } else { 0 },
    );
    let mut f = Ipv4Packet::new_unchecked(frag);
    f.set_total_len(len as u16);
    f.fill_checksum();
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
    const DST: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 6);

    fn repr(protocol: u8, ident: u16, dont_frag: bool, payload_len: usize) -> Ipv4Repr {
        Ipv4Repr {
            src: SRC,
            dst: DST,
            protocol,
            ttl: 64,
            dscp: 0,
            ident,
            dont_frag,
            payload_len,
        }
    }

    fn header(payload_len: usize) -> Vec<u8> {
        let mut out = vec![0u8; MIN_HEADER_LEN + payload_len];
        write_header(&mut out, &repr(proto::UDP, 0x1234, true, payload_len)).unwrap();
        out
    }

    #[test]
    fn write_header_fields() {
        let out = header(8);
        let p = Ipv4Packet::new_checked(&out[..]).unwrap();
        assert_eq!(
            (p.header_len(), p.total_len(), p.ttl(), p.protocol()),
            (20, 28, 64, proto::UDP)
        );
        assert_eq!(
            (p.ident(), p.dont_frag(), p.more_frags(), p.frag_offset()),
            (0x1234, true, false, 0)
        );
        assert_eq!((p.src(), p.dst(), p.dscp_ecn()), (SRC, DST, 0));
        assert!(!p.is_fragment());
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn write_header_limits() {
        let mut out = [0u8; 19];
        assert_eq!(
            write_header(&mut out, &repr(1, 0, false, 0)),
            Err(WireError::Truncated)
        );
        let mut out = [0u8; 20];
        assert_eq!(
            write_header(&mut out, &repr(1, 0, false, 65_516)),
            Err(WireError::Malformed)
        );
        assert_eq!(write_header(&mut out, &repr(1, 0, false, 65_515)), Ok(()));
        assert_eq!(Ipv4Packet::new_unchecked(&out[..]).total_len(), 65_535);
    }

    #[test]
    fn own_header_sets_dscp_and_df() {
        let mut out = [0u8; 20];
        let own = OwnHeader {
            src: SRC,
            dst: DST,
            ttl: 61,
            dscp: 46,
        };
        write_header(&mut out, &own.repr(proto::TCP, 0)).unwrap();
        let p = Ipv4Packet::new_checked(&out[..]).unwrap();
        assert_eq!((p.dscp_ecn(), p.dont_frag(), p.ttl()), (46 << 2, true, 61));
        assert!(p.verify_checksum());
    }

    #[test]
    fn new_checked_order_of_errors() {
        let good = header(4);
        assert_eq!(
            Ipv4Packet::new_checked(&good[..19]).err(),
            Some(WireError::Truncated)
        );
        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).err(),
            Some(WireError::Malformed)
        );
        let mut short_ihl = good.clone();
        short_ihl[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&short_ihl[..]).err(),
            Some(WireError::Malformed)
        );
        let mut long_ihl = good.clone();
        long_ihl[0] = 0x47; // 28-byte header in a 24-byte buffer
        assert_eq!(
            Ipv4Packet::new_checked(&long_ihl[..]).err(),
            Some(WireError::Truncated)
        );
        let mut small_total = good.clone();
        small_total[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&small_total[..]).err(),
            Some(WireError::Malformed)
        );
        assert_eq!(
            Ipv4Packet::new_checked(&good[..23]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn padding_is_not_payload() {
        let mut frame = header(4);
        frame[20..24].copy_from_slice(&[1, 2, 3, 4]);
        frame.extend_from_slice(&[0xee; 18]);
        let mut p = Ipv4Packet::new_checked(&mut frame[..]).unwrap();
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert_eq!(p.payload_mut().len(), 4);
    }

    #[test]
    fn quoted_packets_may_be_short() {
        let full = header(100);
        assert_eq!(
            Ipv4Packet::new_checked(&full[..28]).err(),
            Some(WireError::Truncated)
        );
        let quoted = Ipv4Packet::new_quoted(&full[..28]).unwrap();
        assert_eq!((quoted.total_len(), quoted.payload().len()), (120, 8));
        assert_eq!(
            Ipv4Packet::new_quoted(&full[..]).unwrap().payload().len(),
            100
        );
        assert_eq!(
            Ipv4Packet::new_quoted(&full[..19]).err(),
            Some(WireError::Truncated)
        );
        let mut long_ihl = full[..22].to_vec();
        long_ihl[0] = 0x46;
        assert_eq!(
            Ipv4Packet::new_quoted(&long_ihl[..]).err(),
            Some(WireError::Truncated)
        );
        let mut bad = full.clone();
        bad[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_quoted(&bad[..]).err(),
            Some(WireError::Malformed)
        );
    }

    #[test]
    fn fragments() {
        let mut out = header(8);
        out[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        let p = Ipv4Packet::new_checked(&out[..]).unwrap();
        assert!(p.more_frags() && p.is_fragment() && !p.dont_frag());
        out[6..8].copy_from_slice(&0x00b9u16.to_be_bytes());
        let p = Ipv4Packet::new_checked(&out[..]).unwrap();
        assert_eq!(p.frag_offset(), 0xb9 * 8);
        assert!(p.is_fragment() && !p.more_frags());
    }

    #[test]
    fn setters_and_checksum() {
        let mut out = header(0);
        let mut p = Ipv4Packet::new_checked(&mut out[..]).unwrap();
        let before = p.checksum();
        p.set_ttl(63);
        assert!(!p.verify_checksum());
        p.set_checksum(checksum::update16(
            before,
            0x4000 | u16::from(proto::UDP),
            0x3f00 | u16::from(proto::UDP),
        ));
        assert!(p.verify_checksum());
        p.set_src(Ipv4Addr::new(172, 16, 1, 1));
        p.set_dst(SRC);
        p.set_ident(7);
        p.set_dscp_ecn(0xb8);
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(
            (p.src(), p.dst(), p.ident(), p.dscp_ecn(), p.ttl()),
            (Ipv4Addr::new(172, 16, 1, 1), SRC, 7, 0xb8, 63)
        );
    }

    #[test]
    fn etherparse_parses_ours() {
        let out = header(0);
        let (theirs, _) = etherparse::Ipv4Header::from_slice(&out).unwrap();
        assert_eq!(theirs.source, SRC.octets());
        assert_eq!(theirs.destination, DST.octets());
        assert_eq!(theirs.identification, 0x1234);
        assert!(theirs.dont_fragment);
        assert_eq!(theirs.header_checksum, theirs.calc_header_checksum());
    }

    #[test]
    fn we_parse_etherparse_with_options() {
        let mut theirs = etherparse::Ipv4Header::new(
            12,
            9,
            etherparse::IpNumber::TCP,
            SRC.octets(),
            DST.octets(),
        )
        .unwrap();
        theirs.options = [1u8, 1, 1, 0].into();
        theirs.set_payload_len(12).unwrap();
        theirs.more_fragments = true;
        theirs.fragment_offset = etherparse::IpFragOffset::try_new(3).unwrap();
        theirs.header_checksum = theirs.calc_header_checksum();
        let mut bytes = theirs.to_bytes().to_vec();
        bytes.extend_from_slice(&[0; 12]);
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            (p.header_len(), p.total_len(), p.ttl(), p.protocol()),
            (24, 36, 9, proto::TCP)
        );
        assert_eq!((p.frag_offset(), p.more_frags()), (24, true));
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), theirs.header_checksum);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Ipv4Packet::new_checked(&bytes[..]) {
                prop_assert!(p.header_len() + p.payload().len() == p.total_len());
                let _ = (p.header(), p.verify_checksum(), p.is_fragment(), p.frag_offset(), p.src(), p.dst());
            }
            if let Ok(p) = Ipv4Packet::new_quoted(&bytes[..]) {
                prop_assert!(p.header_len() + p.payload().len() <= p.total_len());
            }
            let mut copy = bytes.clone();
            let mut p = Ipv4Packet::new_unchecked(&mut copy[..]);
            let _ = (p.header().len(), p.payload().len(), p.verify_checksum(), p.payload_mut().len());
            p.fill_checksum();
            p.set_total_len(9000);
            p.set_dst(DST);
        }
    }

    #[test]
    fn fragments_reassemble_to_the_original() {
        let mut pkt = Vec::new();
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        etherparse::PacketBuilder::ipv4([192, 168, 0, 10], [172, 18, 0, 6], 64)
            .udp(1000, 2000)
            .write(&mut pkt, &payload)
            .unwrap();
        pkt[6] &= !0x40; // DF off
        Ipv4Packet::new_unchecked(&mut pkt[..]).fill_checksum();
        let mut out = [0u8; 2000];
        let mut data = Vec::new();
        let mut n = 0;
        while let Some(len) = fragment(&pkt, 1400, n, &mut out) {
            let f = Ipv4Packet::new_checked(&out[..len]).unwrap();
            assert!(len <= 1400 && f.verify_checksum());
            assert_eq!(f.frag_offset(), data.len());
            assert_eq!(
                f.more_frags(),
                len == 1396 || f.frag_offset() + f.payload().len() < pkt.len() - 20
            );
            assert_eq!(
                (f.ident(), f.src(), f.protocol()),
                (0, Ipv4Addr::new(192, 168, 0, 10), 17)
            );
            data.extend_from_slice(f.payload());
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(&data[..], &pkt[20..]);
        let mut df = pkt.clone();
        df[6] |= 0x40;
        assert_eq!(
            fragment(&df, 1400, 0, &mut out),
            None,
            "DF packets are not split"
        );
        assert_eq!(
            fragment(&pkt, 27, 0, &mut out),
            None,
            "no room for 8 bytes of data"
        );
        let mut far = pkt.clone();
        far[6..8].copy_from_slice(&(0x2000u16 | (64000 / 8)).to_be_bytes());
        Ipv4Packet::new_unchecked(&mut far[..]).fill_checksum();
        assert_eq!(
            fragment(&far, 1400, 0, &mut out),
            None,
            "offsets past 64 KiB would wrap the 13-bit field"
        );
    }
}
