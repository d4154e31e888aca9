//! ICMPv4 messages (RFC 792) and the router's ICMP errors (RFC 1812 4.3.2).

use std::net::Ipv4Addr;

use super::checksum::{self, L4Checksum};
use super::field::{set_u8, set_u16, set_u32, slice, slice_mut, try_u16_at, u8_at, u16_at, u32_at};
use super::ipv4::{self, Ipv4Packet, OwnHeader, proto};
use super::{Result, WireError};

/// Length of the ICMP header (type, code, checksum, 4 bytes of rest-of-header).
pub const HEADER_LEN: usize = 8;

/// RFC 1812 4.3.2.3: an ICMP error should be at most 576 bytes including the IP header.
pub const MAX_ERROR_LEN: usize = 576;

/// ICMP message types.
pub mod types {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACH: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
}

/// ICMP codes (destination-unreachable unless noted).
pub mod codes {
    pub const NET_UNREACH: u8 = 0;
    pub const HOST_UNREACH: u8 = 1;
    pub const PROTO_UNREACH: u8 = 2;
    pub const PORT_UNREACH: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
    pub const ADMIN_PROHIBITED: u8 = 13;
    /// Time exceeded: TTL exceeded in transit.
    pub const TTL_EXCEEDED: u8 = 0;
}

/// True for error messages (dest-unreach, source-quench, redirect, time-exceeded,
/// param-problem), which quote an offending packet and must never trigger another error.
pub fn is_error(msg_type: u8) -> bool {
    matches!(msg_type, 3 | 4 | 5 | 11 | 12)
}

mod offset {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const IDENT: usize = 4;
    pub const SEQ_NO: usize = 6;
    pub const REST: usize = 4;
}

/// A view of an ICMP message: the whole IPv4 payload.
#[derive(Debug, Clone)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Err(Truncated) below 8 bytes.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self { buffer })
    }

    /// Views `buffer` without checking; accessors of missing fields read as zero.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> u8 {
        u8_at(self.buffer.as_ref(), offset::TYPE)
    }

    pub fn code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), offset::CODE)
    }

    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::CHECKSUM)
    }

    /// Echo identifier (bytes 4..6).
    pub fn ident(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::IDENT)
    }

    /// Echo sequence number (bytes 6..8).
    pub fn seq_no(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::SEQ_NO)
    }

    /// Bytes 4..8 as one value (e.g. the next-hop MTU of frag-needed in its low 16 bits).
    pub fn rest_of_header(&self) -> u32 {
        u32_at(self.buffer.as_ref(), offset::REST)
    }

    /// Everything after the 8-byte header: echo data, or the quoted packet of an error.
    pub fn payload(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        slice(buf, HEADER_LEN..buf.len())
    }

    /// The checksum over the whole buffer verifies.
    pub fn verify_checksum(&self) -> bool {
        let buf = self.buffer.as_ref();
        buf.len() >= HEADER_LEN && checksum::checksum(buf) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    pub fn set_msg_type(&mut self, msg_type: u8) {
        set_u8(self.buffer.as_mut(), offset::TYPE, msg_type);
    }

    pub fn set_code(&mut self, code: u8) {
        set_u8(self.buffer.as_mut(), offset::CODE, code);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        set_u16(self.buffer.as_mut(), offset::CHECKSUM, checksum);
    }

    pub fn set_ident(&mut self, ident: u16) {
        set_u16(self.buffer.as_mut(), offset::IDENT, ident);
    }

    pub fn set_seq_no(&mut self, seq_no: u16) {
        set_u16(self.buffer.as_mut(), offset::SEQ_NO, seq_no);
    }

    pub fn set_rest_of_header(&mut self, rest: u32) {
        set_u32(self.buffer.as_mut(), offset::REST, rest);
    }

    /// NAT of an echo: sets the identifier and, when `held` is full, updates the checksum
    /// incrementally. A buffer too short for the identifier is left alone.
    #[inline]
    pub fn rewrite_ident(&mut self, ident: u16, held: L4Checksum) {
        let buf = self.buffer.as_mut();
        let Some(old) = try_u16_at(buf, offset::IDENT) else {
            return;
        };
        set_u16(buf, offset::IDENT, ident);
        if held == L4Checksum::Full
            && let Some(c) = try_u16_at(buf, offset::CHECKSUM)
        {
            set_u16(buf, offset::CHECKSUM, checksum::update16(c, old, ident));
        }
    }

    /// Recomputes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let checksum = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(checksum);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let buf = self.buffer.as_mut();
        let len = buf.len();
        slice_mut(buf, HEADER_LEN..len)
    }
}

/// RFC 1812 4.3.2.7: whether an ICMP error may be sent about `offending` (an IPv4 packet from
/// its header). No for unparseable packets, ICMP errors, non-initial fragments, and packets
/// whose source is not one host (unspecified, loopback, limited broadcast, multicast, class E)
/// or whose destination is limited broadcast or multicast. Directed broadcasts and link-layer
/// broadcast/multicast frames need knowledge the caller has and this function does not.
pub fn may_send_error_about(offending: &[u8]) -> bool {
    let Ok(packet) = Ipv4Packet::new_quoted(offending) else {
        return false;
    };
    if packet.frag_offset() != 0 {
        return false;
    }
    let not_one_host = |a: Ipv4Addr| {
        a.is_unspecified()
            || a.is_loopback()
            || a.is_broadcast()
            || a.is_multicast()
            || a.octets()[0] >= 240
    };
    if not_one_host(packet.src()) || packet.dst().is_broadcast() || packet.dst().is_multicast() {
        return false;
    }
    // A first fragment or whole packet of ICMP: its type decides. A missing type byte is no
    // proof of a query, so stay silent.
    packet.protocol() != proto::ICMP
        || packet
            .payload()
            .first()
            .is_some_and(|&msg_type| !is_error(msg_type))
}

/// The ICMP error to build: from `src` (the router) to `dst` (the offending packet's source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorRepr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub msg_type: u8,
    pub code: u8,
    /// The 32 bits after the checksum (the next-hop MTU of "fragmentation needed").
    pub rest_of_header: u32,
}

/// Builds a complete IPv4+ICMP error quoting `offending` (the offending IPv4 packet, from its IP
/// header): as much of it as fits in 576 bytes in all (RFC 1812 4.3.2.3), never past its
/// `total_len` (so Ethernet padding is not quoted). TTL 64, DF clear, ident 0, checksums filled.
/// Returns the length written; Err(Truncated) if `out` cannot hold the 28 bytes of headers plus
/// the offending header and 8 bytes of its payload (or all of `offending`, if shorter).
pub fn build_error(out: &mut [u8], repr: &ErrorRepr, offending: &[u8]) -> Result<usize> {
    let (available, must_quote) = match Ipv4Packet::new_quoted(offending) {
        Ok(packet) => (
            packet.total_len().min(offending.len()),
            packet.header_len() + 8,
        ),
        Err(_) => (offending.len(), ipv4::MIN_HEADER_LEN + 8),
    };
    let headers = ipv4::MIN_HEADER_LEN + HEADER_LEN;
    let room = out.len().saturating_sub(headers);
    if room < must_quote.min(available) {
        return Err(WireError::Truncated);
    }
    let quote_len = available.min(MAX_ERROR_LEN - headers).min(room);
    let quote = offending.get(..quote_len).ok_or(WireError::Truncated)?;
    let len = headers + quote_len;
    let packet = out.get_mut(..len).ok_or(WireError::Truncated)?;
    let ip = ipv4::Ipv4Repr {
        src: repr.src,
        dst: repr.dst,
        protocol: proto::ICMP,
        ttl: 64,
        dscp: 0,
        ident: 0,
        dont_frag: false,
        payload_len: HEADER_LEN + quote_len,
    };
    ipv4::write_header(packet, &ip)?;
    let mut icmp = IcmpPacket::new_unchecked(slice_mut(packet, ipv4::MIN_HEADER_LEN..len));
    icmp.set_msg_type(repr.msg_type);
    icmp.set_code(repr.code);
    icmp.set_rest_of_header(repr.rest_of_header);
    icmp.payload_mut().copy_from_slice(quote);
    icmp.fill_checksum();
    Ok(len)
}

/// An echo request or reply: type, identifier and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoRepr {
    pub msg_type: u8,
    pub ident: u16,
    pub seq: u16,
}

/// Builds IPv4+ICMP echo request/reply carrying `payload` (the router's echo replies and ICMP
/// probes). Err(Truncated) if `out` is too small, Err(Malformed) if the payload cannot fit in
/// IPv4.
pub fn build_echo(
    out: &mut [u8],
    ip: &OwnHeader,
    echo: &EchoRepr,
    payload: &[u8],
) -> Result<usize> {
    let icmp_len = HEADER_LEN + payload.len();
    let len = ipv4::MIN_HEADER_LEN + icmp_len;
    let packet = out.get_mut(..len).ok_or(WireError::Truncated)?;
    ipv4::write_header(packet, &ip.repr(proto::ICMP, icmp_len))?;
    let mut icmp = IcmpPacket::new_unchecked(slice_mut(packet, ipv4::MIN_HEADER_LEN..len));
    icmp.set_msg_type(echo.msg_type);
    icmp.set_code(0);
    icmp.set_ident(echo.ident);
    icmp.set_seq_no(echo.seq);
    icmp.payload_mut().copy_from_slice(payload);
    icmp.fill_checksum();
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpHeaders, Ipv4Header, PacketBuilder};
    use proptest::prelude::*;

    const LAN_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
    const FAR: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 6);

    /// An error from the router to the LAN host.
    fn error(msg_type: u8, code: u8, rest_of_header: u32) -> ErrorRepr {
        ErrorRepr {
            src: ROUTER,
            dst: LAN_HOST,
            msg_type,
            code,
            rest_of_header,
        }
    }

    fn own(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, dscp: u8) -> OwnHeader {
        OwnHeader {
            src,
            dst,
            ttl,
            dscp,
        }
    }

    fn echo(msg_type: u8, ident: u16, seq: u16) -> EchoRepr {
        EchoRepr {
            msg_type,
            ident,
            seq,
        }
    }

    /// A UDP packet from the LAN host to the far target, as etherparse builds it.
    fn offending(payload_len: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        PacketBuilder::ipv4(LAN_HOST.octets(), FAR.octets(), 1)
            .udp(40000, 53)
            .write(&mut bytes, &vec![0x5a; payload_len])
            .unwrap();
        bytes
    }

    #[test]
    fn error_types() {
        assert!([3, 4, 5, 11, 12].into_iter().all(is_error));
        assert!(![0, 8, 13, 14].into_iter().any(is_error));
    }

    #[test]
    fn view_fields_and_checksum() {
        let mut buf = [0u8; 12];
        let mut icmp = IcmpPacket::new_checked(&mut buf[..]).unwrap();
        icmp.set_msg_type(types::ECHO_REQUEST);
        icmp.set_code(0);
        icmp.set_ident(0xbeef);
        icmp.set_seq_no(7);
        icmp.payload_mut().copy_from_slice(b"ping");
        icmp.fill_checksum();
        assert!(icmp.verify_checksum());
        assert_eq!(
            (icmp.msg_type(), icmp.code(), icmp.ident(), icmp.seq_no()),
            (8, 0, 0xbeef, 7)
        );
        assert_eq!(icmp.rest_of_header(), 0xbeef_0007);
        assert_eq!(icmp.payload(), b"ping");
        // Echo reply = request with the type changed: one incremental update keeps it valid.
        let check = icmp.checksum();
        icmp.set_msg_type(types::ECHO_REPLY);
        icmp.set_checksum(checksum::update16(check, 0x0800, 0x0000));
        assert!(icmp.verify_checksum());
        icmp.set_rest_of_header(1500);
        assert_eq!((icmp.ident(), icmp.seq_no()), (0, 1500));
        assert!(!icmp.verify_checksum());
        assert_eq!(
            IcmpPacket::new_checked(&buf[..7]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn echo_matches_etherparse() {
        let mut ours = [0u8; 128];
        let len = build_echo(
            &mut ours,
            &own(ROUTER, LAN_HOST, 64, 0),
            &echo(types::ECHO_REPLY, 0x1234, 9),
            b"abcdefg",
        )
        .unwrap();
        let mut theirs = Vec::new();
        PacketBuilder::ipv4(ROUTER.octets(), LAN_HOST.octets(), 64)
            .icmpv4_echo_reply(0x1234, 9)
            .write(&mut theirs, b"abcdefg")
            .unwrap();
        assert_eq!(&ours[..len], &theirs[..]);
        assert_eq!(
            build_echo(
                &mut ours[..len - 1],
                &own(ROUTER, LAN_HOST, 64, 0),
                &echo(0, 1, 1),
                b"abcdefg"
            ),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn echo_with_dscp_matches_etherparse() {
        let mut ours = [0u8; 64];
        let len = build_echo(
            &mut ours,
            &own(ROUTER, FAR, 30, 46),
            &echo(types::ECHO_REQUEST, 1, 2),
            &[],
        )
        .unwrap();
        let mut header = Ipv4Header::new(
            0,
            30,
            etherparse::IpNumber::ICMP,
            ROUTER.octets(),
            FAR.octets(),
        )
        .unwrap();
        header.dscp = etherparse::Ipv4Dscp::try_new(46).unwrap();
        let mut theirs = Vec::new();
        PacketBuilder::ip(IpHeaders::Ipv4(header, Default::default()))
            .icmpv4_echo_request(1, 2)
            .write(&mut theirs, &[])
            .unwrap();
        assert_eq!(&ours[..len], &theirs[..]);
    }

    #[test]
    fn time_exceeded_quotes_header_and_payload() {
        let bad = offending(30);
        let mut out = [0u8; 1500];
        let len = build_error(
            &mut out,
            &error(types::TIME_EXCEEDED, codes::TTL_EXCEEDED, 0),
            &bad,
        )
        .unwrap();
        assert_eq!(len, 28 + bad.len());
        let ip = etherparse::Ipv4Slice::from_slice(&out[..len]).unwrap();
        let header = ip.header().to_header();
        assert_eq!((header.time_to_live, header.dont_fragment), (64, false));
        assert_eq!(header.header_checksum, header.calc_header_checksum());
        let icmp = etherparse::Icmpv4Slice::from_slice(ip.payload().payload).unwrap();
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv4Type::TimeExceeded(
                etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit
            )
        );
        assert_eq!(icmp.payload(), &bad[..]);
        let mut recomputed = icmp.header();
        recomputed.update_checksum(icmp.payload());
        assert_eq!(recomputed.checksum, icmp.checksum());
    }

    #[test]
    fn frag_needed_carries_mtu_and_caps_at_576() {
        let mut bad = offending(1400);
        bad.extend_from_slice(&[0xee; 10]); // trailing bytes past total_len are never quoted
        let mut out = [0u8; 1500];
        let len = build_error(
            &mut out,
            &error(types::DEST_UNREACH, codes::FRAG_NEEDED, 1400),
            &bad,
        )
        .unwrap();
        assert_eq!(len, 576);
        let ip = etherparse::Ipv4Slice::from_slice(&out[..len]).unwrap();
        let icmp = etherparse::Icmpv4Slice::from_slice(ip.payload().payload).unwrap();
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1400
                }
            )
        );
        assert_eq!(icmp.payload(), &bad[..548]);
    }

    #[test]
    fn error_into_small_buffers() {
        let bad = offending(100);
        let mut out = [0u8; 28 + 28];
        assert_eq!(build_error(&mut out, &error(3, 1, 0), &bad), Ok(56));
        assert_eq!(
            build_error(&mut out[..55], &error(3, 1, 0), &bad),
            Err(WireError::Truncated)
        );
        // An offending packet shorter than header + 8 is quoted whole.
        assert_eq!(
            build_error(&mut out[..40], &error(3, 1, 0), &[0x45; 12]),
            Ok(40)
        );
    }

    #[test]
    fn when_errors_may_be_sent() {
        let ok = offending(8);
        assert!(may_send_error_about(&ok));
        assert!(!may_send_error_about(&ok[..10]));
        let with = |f: &dyn Fn(&mut Ipv4Packet<&mut [u8]>)| {
            let mut copy = ok.clone();
            f(&mut Ipv4Packet::new_unchecked(&mut copy[..]));
            may_send_error_about(&copy)
        };
        assert!(!with(&|p| p.set_src(Ipv4Addr::UNSPECIFIED)));
        assert!(!with(&|p| p.set_src(Ipv4Addr::new(127, 0, 0, 1))));
        assert!(!with(&|p| p.set_src(Ipv4Addr::new(240, 0, 0, 1))));
        assert!(!with(&|p| p.set_dst(Ipv4Addr::BROADCAST)));
        assert!(!with(&|p| p.set_dst(Ipv4Addr::new(239, 1, 2, 3))));
        let mut non_initial = ok.clone();
        non_initial[6..8].copy_from_slice(&0x0001u16.to_be_bytes());
        assert!(!may_send_error_about(&non_initial));

        let mut out = [0u8; 200];
        let len = build_echo(
            &mut out,
            &own(LAN_HOST, FAR, 1, 0),
            &echo(types::ECHO_REQUEST, 1, 1),
            &[],
        )
        .unwrap();
        assert!(may_send_error_about(&out[..len]));
        let mut built = [0u8; 200];
        let len = build_error(&mut built, &error(11, 0, 0), &ok).unwrap();
        assert!(!may_send_error_about(&built[..len]));
        assert!(
            !may_send_error_about(&built[..20]),
            "ICMP without a type byte"
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40), out_len in 0usize..100) {
            if let Ok(icmp) = IcmpPacket::new_checked(&bytes[..]) {
                prop_assert_eq!(icmp.payload().len(), bytes.len() - HEADER_LEN);
                let _ = (icmp.msg_type(), icmp.code(), icmp.rest_of_header(), icmp.verify_checksum());
            }
            let mut copy = bytes.clone();
            let mut icmp = IcmpPacket::new_unchecked(&mut copy[..]);
            icmp.fill_checksum();
            icmp.set_seq_no(1);
            let _ = (icmp.seq_no(), icmp.payload_mut().len(), may_send_error_about(&bytes));
            let mut out = vec![0u8; out_len];
            let _ = build_error(&mut out, &error(3, 3, 0), &bytes);
        }

        #[test]
        fn error_quotes_the_right_bytes(
            options_words in 0usize..=10,
            options in proptest::collection::vec(any::<u8>(), 40),
            payload in proptest::collection::vec(any::<u8>(), 0..1400),
            padding in 0usize..20,
            out_len in 0usize..700,
            rest in any::<u32>(),
        ) {
            let header_len = 20 + options_words * 4;
            let mut bad = vec![0u8; header_len];
            ipv4::write_header(&mut bad, &ipv4::Ipv4Repr { src: LAN_HOST, dst: FAR, protocol: proto::UDP, ttl: 1, dscp: 0, ident: 77, dont_frag: true, payload_len: header_len - 20 + payload.len() }).unwrap();
            bad[0] = 0x40 | (header_len / 4) as u8;
            bad[20..].copy_from_slice(&options[..header_len - 20]);
            bad.extend_from_slice(&payload);
            let total_len = bad.len();
            bad.extend(std::iter::repeat_n(0xee, padding));

            let mut out = vec![0u8; out_len];
            let must_quote = total_len.min(header_len + 8);
            match build_error(&mut out, &error(types::DEST_UNREACH, codes::HOST_UNREACH, rest), &bad) {
                Ok(len) => {
                    let quote_len = total_len.min(548).min(out_len - 28);
                    prop_assert!(quote_len >= must_quote);
                    prop_assert_eq!(len, 28 + quote_len);
                    let ip = Ipv4Packet::new_checked(&out[..len]).unwrap();
                    prop_assert!(ip.verify_checksum());
                    prop_assert_eq!((ip.total_len(), ip.ttl(), ip.dont_frag(), ip.protocol()), (len, 64, false, proto::ICMP));
                    prop_assert_eq!((ip.src(), ip.dst()), (ROUTER, LAN_HOST));
                    let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
                    prop_assert!(icmp.verify_checksum());
                    prop_assert_eq!((icmp.msg_type(), icmp.code(), icmp.rest_of_header()), (3, 1, rest));
                    prop_assert_eq!(icmp.payload(), &bad[..quote_len]);
                }
                Err(e) => {
                    prop_assert_eq!(e, WireError::Truncated);
                    prop_assert!(out_len < 28 + must_quote);
                }
            }
        }
    }
}
