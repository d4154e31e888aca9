//! IPv6 headers (RFC 8200): the fixed header and a bounded walk over the extension headers.
//!
//! The fixed header has no checksum, so the hop-limit decrement and address setters are plain
//! stores; the upper-layer checksums cover the pseudo-header of `checksum::pseudo_header_sum_v6`.

use core::ops::Range;
use std::net::Ipv6Addr;

use super::field::{
    bytes_at, set_bytes, set_u8, set_u16, set_u32, slice, slice_mut, u8_at, u16_at, u32_at,
};
use super::{Result, WireError};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

/// The minimum link MTU every IPv6 link carries (RFC 8200 §5): the size of the router's ICMPv6
/// errors and the floor of a packet-too-big MTU.
pub const MIN_MTU: usize = 1280;

/// At most this many extension headers are walked; a chain longer than that is refused
/// (RFC 8200 allows each at most once or twice, so no honest packet comes close).
pub const MAX_EXT_HEADERS: usize = 8;

/// Next-header values the router looks at.
pub mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating Security Payload: opaque, the walk stops there.
    pub const ESP: u8 = 50;
    pub const ICMPV6: u8 = 58;
    /// "No next header": nothing follows.
    pub const NO_NEXT: u8 = 59;
    pub const DEST_OPTS: u8 = 60;
}

mod offset {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// A view of an IPv6 packet starting at its fixed header. The buffer may extend past the
/// payload length (Ethernet padding); [`payload`](Self::payload) stops at it. Jumbograms
/// (payload length 0 with a jumbo option) are not supported: a zero length means no payload.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Checks version 6 and that the buffer holds the header and the payload length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_quoted(buffer)?;
        if HEADER_LEN + packet.payload_len() > packet.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    /// For the packet quoted inside an ICMPv6 error: the header checks of
    /// [`new_checked`](Self::new_checked), but the buffer may end before the payload does
    /// (RFC 4443 quotes only what fits in 1280 bytes); [`payload`](Self::payload) is then what
    /// is present.
    pub fn new_quoted(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let packet = Self { buffer };
        if packet.version() != 6 {
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

    pub fn version(&self) -> u8 {
        u8_at(self.buffer.as_ref(), offset::VER_TC_FLOW) >> 4
    }

    /// The 8-bit traffic class: DSCP in the upper six bits, ECN in the lower two.
    pub fn traffic_class(&self) -> u8 {
        (u16_at(self.buffer.as_ref(), offset::VER_TC_FLOW) >> 4) as u8
    }

    /// The 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        u32_at(self.buffer.as_ref(), offset::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Bytes after the fixed header, extension headers included.
    pub fn payload_len(&self) -> usize {
        usize::from(u16_at(self.buffer.as_ref(), offset::PAYLOAD_LEN))
    }

    /// The type of the first header after the fixed one.
    pub fn next_header(&self) -> u8 {
        u8_at(self.buffer.as_ref(), offset::NEXT_HEADER)
    }

    pub fn hop_limit(&self) -> u8 {
        u8_at(self.buffer.as_ref(), offset::HOP_LIMIT)
    }

    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(bytes_at::<16>(self.buffer.as_ref(), offset::SRC))
    }

    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(bytes_at::<16>(self.buffer.as_ref(), offset::DST))
    }

    /// From the end of the fixed header up to the payload length (or the end of a quoted
    /// buffer).
    pub fn payload(&self) -> &[u8] {
        slice(self.buffer.as_ref(), self.payload_range())
    }

    fn payload_range(&self) -> Range<usize> {
        let end = (HEADER_LEN + self.payload_len()).min(self.buffer.as_ref().len());
        HEADER_LEN..end.max(HEADER_LEN)
    }

    /// Walks the extension headers to the upper layer; see [`walk`].
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        walk(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6 with the given traffic class and flow label (the first 32-bit word).
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let word = (6 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        set_u32(self.buffer.as_mut(), offset::VER_TC_FLOW, word);
    }

    pub fn set_payload_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), offset::PAYLOAD_LEN, len);
    }

    pub fn set_next_header(&mut self, next_header: u8) {
        set_u8(self.buffer.as_mut(), offset::NEXT_HEADER, next_header);
    }

    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        set_u8(self.buffer.as_mut(), offset::HOP_LIMIT, hop_limit);
    }

    pub fn set_src(&mut self, addr: Ipv6Addr) {
        set_bytes(self.buffer.as_mut(), offset::SRC, addr.octets());
    }

    pub fn set_dst(&mut self, addr: Ipv6Addr) {
        set_bytes(self.buffer.as_mut(), offset::DST, addr.octets());
    }

    /// Lowers the hop limit by one (wrapping; callers check it first). IPv6 has no header
    /// checksum to update.
    #[inline]
    pub fn decrement_hop_limit(&mut self) {
        let hop_limit = self.hop_limit();
        self.set_hop_limit(hop_limit.wrapping_sub(1));
    }

    /// From the end of the fixed header up to the payload length (or the end of the buffer).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        slice_mut(self.buffer.as_mut(), range)
    }
}

/// The fields of a Fragment header (RFC 8200 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader {
    /// Offset of this fragment's data in the original packet, in bytes.
    pub offset: usize,
    pub more: bool,
    pub ident: u32,
}

impl FragmentHeader {
    /// True for a fragment that does not start the original packet: the upper-layer header
    /// is not in it.
    pub fn is_non_initial(&self) -> bool {
        self.offset != 0
    }
}

/// Where the extension-header walk stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The next-header value of the last header walked: TCP, UDP, ICMPv6, ESP, "no next
    /// header", or any protocol the walk does not know.
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 payload.
    pub offset: usize,
    /// The Fragment header, if the packet has one. For a non-initial fragment the walk stops
    /// there and `offset` points at fragment data, not at an upper-layer header.
    pub fragment: Option<FragmentHeader>,
}

/// Walks the extension headers of an IPv6 payload whose first header is `first` (hop-by-hop
/// options, routing, fragment, destination options) to the upper-layer protocol. Stops at any
/// other value (a transport, ESP, "no next header", or one it does not know) and after a
/// non-initial fragment. Err(Truncated) when a header runs past `payload`, Err(Malformed) for a
/// hop-by-hop header anywhere but first (RFC 8200 §4.1), Err(Unsupported) past
/// [`MAX_EXT_HEADERS`]. Reads at most that many headers, so it is bounded on any input.
pub fn walk(first: u8, payload: &[u8]) -> Result<UpperLayer> {
    let mut protocol = first;
    let mut at = 0usize;
    let mut fragment = None;
    for index in 0..=MAX_EXT_HEADERS {
        let len = match protocol {
            next_header::HOP_BY_HOP if index != 0 => return Err(WireError::Malformed),
            next_header::HOP_BY_HOP | next_header::ROUTING | next_header::DEST_OPTS => {
                // Length in 8-octet units, not counting the first 8.
                let units = payload.get(at + 1).ok_or(WireError::Truncated)?;
                8 + usize::from(*units) * 8
            }
            next_header::FRAGMENT => 8,
            _ => {
                return Ok(UpperLayer {
                    protocol,
                    offset: at,
                    fragment,
                });
            }
        };
        if index == MAX_EXT_HEADERS {
            return Err(WireError::Unsupported);
        }
        let header = payload.get(at..at + len).ok_or(WireError::Truncated)?;
        let next = header[0];
        if protocol == next_header::FRAGMENT {
            let field = u16::from_be_bytes([header[2], header[3]]);
            let frag = FragmentHeader {
                offset: usize::from(field & 0xfff8),
                more: field & 1 != 0,
                ident: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
            };
            fragment = Some(frag);
            if frag.is_non_initial() {
                return Ok(UpperLayer {
                    protocol: next,
                    offset: at + len,
                    fragment,
                });
            }
        }
        protocol = next;
        at += len;
    }
    Err(WireError::Unsupported)
}

/// The fields of a fixed header, for [`write_header`] (no extension headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
    /// Bytes after the fixed header.
    pub payload_len: usize,
}

/// The header of a packet the router originates (echo replies, errors, neighbour discovery):
/// addresses and hop limit; traffic class and flow label are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnHeader {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
}

impl OwnHeader {
    /// Hop limit 64: the header of the router's answers and errors.
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr) -> OwnHeader {
        OwnHeader {
            src,
            dst,
            hop_limit: 64,
        }
    }

    pub(super) fn repr(&self, next_header: u8, payload_len: usize) -> Ipv6Repr {
        Ipv6Repr {
            src: self.src,
            dst: self.dst,
            next_header,
            hop_limit: self.hop_limit,
            traffic_class: 0,
            flow_label: 0,
            payload_len,
        }
    }
}

/// Writes the 40-byte fixed header into the start of `out`. Err(Malformed) if `payload_len`
/// exceeds 65535 (no jumbograms), Err(Truncated) if `out` is shorter than 40 bytes.
pub fn write_header(out: &mut [u8], repr: &Ipv6Repr) -> Result<()> {
    let payload_len = u16::try_from(repr.payload_len).map_err(|_| WireError::Malformed)?;
    let header = out.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
    let mut packet = Ipv6Packet::new_unchecked(header);
    packet.set_version_tc_flow(repr.traffic_class, repr.flow_label);
    packet.set_payload_len(payload_len);
    packet.set_next_header(repr.next_header);
    packet.set_hop_limit(repr.hop_limit);
    packet.set_src(repr.src);
    packet.set_dst(repr.dst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv6Header, PacketBuilder};
    use proptest::prelude::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 0x10);
    const DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 6);

    fn udp_packet(payload_len: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        PacketBuilder::ipv6(SRC.octets(), DST.octets(), 64)
            .udp(40000, 53)
            .write(&mut bytes, &vec![0x5a; payload_len])
            .unwrap();
        bytes
    }

    /// A packet whose payload is `exts` (each: its type, then its bytes with the next header
    /// filled in by this function) followed by 8 bytes of UDP header.
    fn with_exts(exts: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (i, (_, bytes)) in exts.iter().enumerate() {
            let mut bytes = bytes.clone();
            bytes[0] = exts.get(i + 1).map_or(next_header::UDP, |e| e.0);
            payload.extend_from_slice(&bytes);
        }
        payload.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 8, 0, 0]);
        let mut out = vec![0u8; HEADER_LEN];
        write_header(
            &mut out,
            &Ipv6Repr {
                src: SRC,
                dst: DST,
                next_header: exts.first().map_or(next_header::UDP, |e| e.0),
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                payload_len: payload.len(),
            },
        )
        .unwrap();
        out.extend_from_slice(&payload);
        out
    }

    fn options(units: u8) -> Vec<u8> {
        let mut h = vec![0u8; 8 + usize::from(units) * 8];
        h[1] = units;
        // PadN over the rest keeps the options well formed (the walk does not read them).
        h[2] = 1;
        h[3] = (h.len() - 4) as u8;
        h
    }

    fn fragment(offset: u16, more: bool, ident: u32) -> Vec<u8> {
        let mut h = vec![0u8; 8];
        h[2..4].copy_from_slice(&(offset | u16::from(more)).to_be_bytes());
        h[4..8].copy_from_slice(&ident.to_be_bytes());
        h
    }

    #[test]
    fn fixed_header_fields() {
        let bytes = udp_packet(4);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            (p.version(), p.payload_len(), p.next_header(), p.hop_limit()),
            (6, 12, next_header::UDP, 64)
        );
        assert_eq!((p.src(), p.dst()), (SRC, DST));
        assert_eq!((p.traffic_class(), p.flow_label()), (0, 0));
        assert_eq!(p.payload().len(), 12);
        assert_eq!(
            p.upper_layer(),
            Ok(UpperLayer {
                protocol: next_header::UDP,
                offset: 0,
                fragment: None
            })
        );
    }

    #[test]
    fn write_header_matches_etherparse() {
        let mut ours = [0u8; HEADER_LEN];
        write_header(
            &mut ours,
            &Ipv6Repr {
                src: SRC,
                dst: DST,
                next_header: next_header::ICMPV6,
                hop_limit: 255,
                traffic_class: 0xb8,
                flow_label: 0x12345,
                payload_len: 32,
            },
        )
        .unwrap();
        let theirs = Ipv6Header {
            traffic_class: 0xb8,
            flow_label: etherparse::Ipv6FlowLabel::try_new(0x12345).unwrap(),
            payload_length: 32,
            next_header: IpNumber::IPV6_ICMP,
            hop_limit: 255,
            source: SRC.octets(),
            destination: DST.octets(),
        };
        assert_eq!(&ours[..], &theirs.to_bytes()[..]);
        let p = Ipv6Packet::new_unchecked(&ours[..]);
        assert_eq!((p.traffic_class(), p.flow_label()), (0xb8, 0x12345));
        assert_eq!(
            write_header(&mut ours[..39], &OwnHeader::new(SRC, DST).repr(58, 0)),
            Err(WireError::Truncated)
        );
        assert_eq!(
            write_header(&mut ours, &OwnHeader::new(SRC, DST).repr(58, 65_536)),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn new_checked_errors_and_padding() {
        let mut bytes = udp_packet(4);
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..39]).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..51]).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(
            Ipv6Packet::new_quoted(&bytes[..44])
                .unwrap()
                .payload()
                .len(),
            4
        );
        bytes.extend_from_slice(&[0xee; 6]);
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap().payload().len(),
            12
        );
        bytes[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).err(),
            Some(WireError::Malformed)
        );
    }

    #[test]
    fn hop_limit_and_setters() {
        let mut bytes = udp_packet(0);
        let mut p = Ipv6Packet::new_checked(&mut bytes[..]).unwrap();
        p.decrement_hop_limit();
        assert_eq!(p.hop_limit(), 63);
        p.set_hop_limit(0);
        p.decrement_hop_limit();
        assert_eq!(p.hop_limit(), 255);
        p.set_src(DST);
        p.set_dst(SRC);
        assert_eq!((p.src(), p.dst()), (DST, SRC));
        p.payload_mut()[0] = 0x12;
        assert_eq!(bytes[40], 0x12);
    }

    #[test]
    fn walk_over_every_extension_header() {
        let bytes = with_exts(&[
            (next_header::HOP_BY_HOP, options(0)),
            (next_header::DEST_OPTS, options(1)),
            (next_header::ROUTING, options(2)),
            (next_header::FRAGMENT, fragment(0, true, 0xdead_beef)),
            (next_header::DEST_OPTS, options(0)),
        ]);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let upper = p.upper_layer().unwrap();
        assert_eq!(upper.protocol, next_header::UDP);
        assert_eq!(upper.offset, 8 + 16 + 24 + 8 + 8);
        assert_eq!(
            upper.fragment,
            Some(FragmentHeader {
                offset: 0,
                more: true,
                ident: 0xdead_beef
            })
        );
        assert_eq!(&p.payload()[upper.offset + 2..upper.offset + 4], &[0, 53]);
    }

    #[test]
    fn walk_agrees_with_etherparse() {
        let bytes = with_exts(&[
            (next_header::HOP_BY_HOP, options(1)),
            (next_header::ROUTING, options(0)),
            (next_header::FRAGMENT, fragment(0, false, 7)),
        ]);
        let theirs = etherparse::SlicedPacket::from_ip(&bytes).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = theirs.net else {
            panic!("not IPv6");
        };
        let upper = walk(bytes[6], &bytes[HEADER_LEN..]).unwrap();
        assert_eq!(upper.protocol, ip.payload().ip_number.0);
        assert_eq!(
            upper.offset,
            bytes.len() - HEADER_LEN - ip.payload().payload.len()
        );
    }

    #[test]
    fn walk_stops_at_non_initial_fragments_esp_and_unknown() {
        let bytes = with_exts(&[(next_header::FRAGMENT, fragment(1448, true, 1))]);
        let upper = Ipv6Packet::new_checked(&bytes[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!((upper.protocol, upper.offset), (next_header::UDP, 8));
        assert!(upper.fragment.unwrap().is_non_initial());
        for stop in [
            next_header::ESP,
            next_header::NO_NEXT,
            135,
            253,
            next_header::ICMPV6,
        ] {
            assert_eq!(
                walk(stop, &[]),
                Ok(UpperLayer {
                    protocol: stop,
                    offset: 0,
                    fragment: None
                })
            );
        }
    }

    #[test]
    fn walk_refuses_bad_chains() {
        let truncated = with_exts(&[(next_header::ROUTING, options(3))]);
        assert_eq!(
            walk(
                next_header::ROUTING,
                &truncated[HEADER_LEN..HEADER_LEN + 20]
            ),
            Err(WireError::Truncated)
        );
        assert_eq!(walk(next_header::DEST_OPTS, &[]), Err(WireError::Truncated));
        assert_eq!(
            walk(next_header::FRAGMENT, &[17, 0, 0]),
            Err(WireError::Truncated)
        );
        let late_hbh = with_exts(&[
            (next_header::DEST_OPTS, options(0)),
            (next_header::HOP_BY_HOP, options(0)),
        ]);
        assert_eq!(
            Ipv6Packet::new_checked(&late_hbh[..])
                .unwrap()
                .upper_layer(),
            Err(WireError::Malformed)
        );
        let eight: Vec<_> = (0..MAX_EXT_HEADERS)
            .map(|_| (next_header::DEST_OPTS, options(0)))
            .collect();
        assert!(
            Ipv6Packet::new_checked(&with_exts(&eight)[..])
                .unwrap()
                .upper_layer()
                .is_ok()
        );
        let nine: Vec<_> = (0..=MAX_EXT_HEADERS)
            .map(|_| (next_header::DEST_OPTS, options(0)))
            .collect();
        assert_eq!(
            Ipv6Packet::new_checked(&with_exts(&nine)[..])
                .unwrap()
                .upper_layer(),
            Err(WireError::Unsupported)
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(p) = Ipv6Packet::new_checked(&bytes[..]) {
                prop_assert_eq!(p.payload().len(), p.payload_len());
                if let Ok(upper) = p.upper_layer() {
                    prop_assert!(upper.offset <= p.payload().len());
                }
            }
            if let Ok(p) = Ipv6Packet::new_quoted(&bytes[..]) {
                prop_assert!(p.payload().len() <= p.payload_len());
            }
            let mut copy = bytes.clone();
            let mut p = Ipv6Packet::new_unchecked(&mut copy[..]);
            let _ = (p.payload().len(), p.upper_layer(), p.src(), p.flow_label(), p.payload_mut().len());
            p.decrement_hop_limit();
            p.set_payload_len(9000);
            p.set_dst(DST);
            let _ = walk(bytes.first().copied().unwrap_or(0), bytes.get(1..).unwrap_or(&[]));
        }

        #[test]
        fn walk_ends_within_random_chains(
            kinds in proptest::collection::vec(prop_oneof![Just(next_header::DEST_OPTS), Just(next_header::ROUTING), Just(next_header::FRAGMENT)], 0..8),
            units in proptest::collection::vec(0u8..4, 8),
        ) {
            let exts: Vec<_> = kinds.iter().zip(&units).map(|(&k, &u)| {
                (k, if k == next_header::FRAGMENT { fragment(0, true, 1) } else { options(u) })
            }).collect();
            let bytes = with_exts(&exts);
            let upper = Ipv6Packet::new_checked(&bytes[..]).unwrap().upper_layer().unwrap();
            prop_assert_eq!(upper.protocol, next_header::UDP);
            prop_assert_eq!(upper.offset, bytes.len() - HEADER_LEN - 8);
        }
    }
}
