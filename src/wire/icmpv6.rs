//! ICMPv6 messages (RFC 4443): the view, echo, and the router's errors (time exceeded, packet
//! too big, destination unreachable). Neighbour discovery messages are ICMPv6 too; their bodies
//! and options are in `ndisc.rs`.

use std::net::Ipv6Addr;

use super::checksum;
use super::field::{set_u8, set_u16, set_u32, slice, slice_mut, u8_at, u16_at, u32_at};
use super::ipv6::{self, Ipv6Packet, OwnHeader, next_header};
use super::{Result, WireError};

/// Length of the ICMPv6 header (type, code, checksum, 4 bytes of message body).
pub const HEADER_LEN: usize = 8;

/// ICMPv6 message types.
pub mod types {
    pub const DEST_UNREACH: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// Multicast listener discovery (RFC 2710, RFC 3810): query, v1 report, done, v2 report.
    pub const MLD_QUERY: u8 = 130;
    pub const MLD_REPORT: u8 = 131;
    pub const MLD_DONE: u8 = 132;
    pub const MLD2_REPORT: u8 = 143;
}

/// True for an MLD message type.
pub fn is_mld(msg_type: u8) -> bool {
    matches!(
        msg_type,
        types::MLD_QUERY | types::MLD_REPORT | types::MLD_DONE | types::MLD2_REPORT
    )
}

/// ICMPv6 codes (destination-unreachable unless noted).
pub mod codes {
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const ADDR_UNREACH: u8 = 3;
    pub const PORT_UNREACH: u8 = 4;
    /// "Source address failed ingress/egress policy": a source in a prefix the router will not
    /// forward (SPEC 33: the prefix of a dead uplink), so the host tries its other address.
    pub const SOURCE_POLICY_FAILED: u8 = 5;
    pub const REJECT_ROUTE: u8 = 6;
    /// Time exceeded: hop limit exceeded in transit.
    pub const HOP_LIMIT_EXCEEDED: u8 = 0;
}

/// True for error messages (types 0–127, RFC 4443 §2.1), which quote an offending packet and
/// must never trigger another error.
pub fn is_error(msg_type: u8) -> bool {
    msg_type < 128
}

mod offset {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const IDENT: usize = 4;
    pub const SEQ_NO: usize = 6;
    pub const REST: usize = 4;
}

/// A view of an ICMPv6 message: the upper-layer payload of an IPv6 packet. The checksum covers
/// the IPv6 pseudo header, so verifying and filling it take the packet's addresses.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
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

    /// Bytes 4..8 as one value (the MTU of packet-too-big, the pointer of parameter-problem).
    pub fn rest_of_header(&self) -> u32 {
        u32_at(self.buffer.as_ref(), offset::REST)
    }

    /// The whole message: neighbour discovery reads its body from here.
    pub fn message(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Everything after the 8-byte header: echo data, or the quoted packet of an error.
    pub fn payload(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        slice(buf, HEADER_LEN..buf.len())
    }

    /// The checksum over the pseudo header of `src`→`dst` and the whole buffer verifies.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let buf = self.buffer.as_ref();
        buf.len() >= HEADER_LEN
            && checksum::l4_checksum_v6(src, dst, next_header::ICMPV6, buf) == Some(0)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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

    /// Recomputes the checksum over the pseudo header of `src`→`dst` and the whole buffer.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let c = checksum::l4_checksum_v6(src, dst, next_header::ICMPV6, self.buffer.as_ref());
        self.set_checksum(c.unwrap_or(0));
    }

    pub fn message_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let buf = self.buffer.as_mut();
        let len = buf.len();
        slice_mut(buf, HEADER_LEN..len)
    }
}

/// Not one host: an address no error may be sent to (RFC 4443 §2.4 e.6).
fn is_not_one_host(addr: Ipv6Addr) -> bool {
    addr.is_unspecified() || addr.is_loopback() || addr.is_multicast()
}

/// RFC 4443 §2.4 (e): whether an ICMPv6 error of `msg_type` may be sent about `offending` (an
/// IPv6 packet from its fixed header). No for unparseable packets, packets whose source is not
/// one host, ICMPv6 errors (or ICMPv6 whose type byte is missing), and packets sent to a
/// multicast address unless the error is a packet-too-big (which must reach multicast senders
/// for path MTU discovery; parameter-problem code 2 is the other exception, never sent here).
/// A chain of extension headers the walk refuses is no proof of a non-error, so stay silent.
pub fn may_send_error_about(msg_type: u8, offending: &[u8]) -> bool {
    let Ok(packet) = Ipv6Packet::new_quoted(offending) else {
        return false;
    };
    if is_not_one_host(packet.src())
        || (packet.dst().is_multicast() && msg_type != types::PACKET_TOO_BIG)
    {
        return false;
    }
    let Ok(upper) = packet.upper_layer() else {
        return false;
    };
    if upper.protocol != next_header::ICMPV6 {
        return true;
    }
    upper.fragment.is_some_and(|f| f.is_non_initial())
        || packet
            .payload()
            .get(upper.offset)
            .is_some_and(|&t| !is_error(t))
}

/// The ICMPv6 error to build: from `src` (the router) to `dst` (the offending packet's source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorRepr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub msg_type: u8,
    pub code: u8,
    /// The 32 bits after the checksum: the MTU of packet-too-big, the pointer of
    /// parameter-problem, zero otherwise.
    pub rest_of_header: u32,
}

/// Builds a complete IPv6+ICMPv6 error quoting `offending` (the offending IPv6 packet, from its
/// fixed header): as much of it as fits in 1280 bytes in all (RFC 4443 §2.4 c), never past its
/// payload length (so Ethernet padding is not quoted). Hop limit 64, checksum filled. Returns
/// the length written; Err(Truncated) if `out` cannot hold the 48 bytes of headers plus the
/// offending fixed header and 8 bytes after it (or all of `offending`, if shorter).
pub fn build_error(out: &mut [u8], repr: &ErrorRepr, offending: &[u8]) -> Result<usize> {
    let available = match Ipv6Packet::new_quoted(offending) {
        Ok(packet) => (ipv6::HEADER_LEN + packet.payload_len()).min(offending.len()),
        Err(_) => offending.len(),
    };
    let must_quote = available.min(ipv6::HEADER_LEN + 8);
    let headers = ipv6::HEADER_LEN + HEADER_LEN;
    let room = out.len().saturating_sub(headers);
    if room < must_quote {
        return Err(WireError::Truncated);
    }
    let quote_len = available.min(ipv6::MIN_MTU - headers).min(room);
    let quote = offending.get(..quote_len).ok_or(WireError::Truncated)?;
    let len = headers + quote_len;
    let packet = out.get_mut(..len).ok_or(WireError::Truncated)?;
    let ip = OwnHeader::new(repr.src, repr.dst);
    ipv6::write_header(
        packet,
        &ip.repr(next_header::ICMPV6, HEADER_LEN + quote_len),
    )?;
    let mut icmp = Icmpv6Packet::new_unchecked(slice_mut(packet, ipv6::HEADER_LEN..len));
    icmp.set_msg_type(repr.msg_type);
    icmp.set_code(repr.code);
    icmp.set_rest_of_header(repr.rest_of_header);
    icmp.payload_mut().copy_from_slice(quote);
    icmp.fill_checksum(repr.src, repr.dst);
    Ok(len)
}

/// An echo request or reply: type, identifier and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoRepr {
    pub msg_type: u8,
    pub ident: u16,
    pub seq: u16,
}

/// Builds IPv6+ICMPv6 echo request/reply carrying `payload` (the router's echo replies and
/// ICMPv6 probes). Err(Truncated) if `out` is too small, Err(Malformed) if the payload cannot
/// fit in an IPv6 packet.
pub fn build_echo(
    out: &mut [u8],
    ip: &OwnHeader,
    echo: &EchoRepr,
    payload: &[u8],
) -> Result<usize> {
    let icmp_len = HEADER_LEN + payload.len();
    let len = ipv6::HEADER_LEN + icmp_len;
    let packet = out.get_mut(..len).ok_or(WireError::Truncated)?;
    ipv6::write_header(packet, &ip.repr(next_header::ICMPV6, icmp_len))?;
    let mut icmp = Icmpv6Packet::new_unchecked(slice_mut(packet, ipv6::HEADER_LEN..len));
    icmp.set_msg_type(echo.msg_type);
    icmp.set_code(0);
    icmp.set_ident(echo.ident);
    icmp.set_seq_no(echo.seq);
    icmp.payload_mut().copy_from_slice(payload);
    icmp.fill_checksum(ip.src, ip.dst);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv6Slice, Icmpv6Type, PacketBuilder};
    use proptest::prelude::*;

    const LAN_HOST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 0x10);
    const ROUTER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
    const FAR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 6);

    fn error(msg_type: u8, code: u8, rest_of_header: u32) -> ErrorRepr {
        ErrorRepr {
            src: ROUTER,
            dst: LAN_HOST,
            msg_type,
            code,
            rest_of_header,
        }
    }

    /// A UDP packet from the LAN host to the far target, as etherparse builds it.
    fn offending(payload_len: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        PacketBuilder::ipv6(LAN_HOST.octets(), FAR.octets(), 1)
            .udp(40000, 53)
            .write(&mut bytes, &vec![0x5a; payload_len])
            .unwrap();
        bytes
    }

    /// The ICMPv6 message of a packet we built, as etherparse reads it (checksum verified).
    fn parse_theirs(packet: &[u8]) -> (etherparse::Ipv6Header, Icmpv6Type, Vec<u8>) {
        let (ip, rest) = etherparse::Ipv6Header::from_slice(packet).unwrap();
        let icmp = Icmpv6Slice::from_slice(rest).unwrap();
        let mut header = icmp.header();
        header
            .update_checksum(ip.source, ip.destination, icmp.payload())
            .unwrap();
        assert_eq!(header.checksum, icmp.checksum(), "checksum");
        (ip, icmp.icmp_type(), icmp.payload().to_vec())
    }

    #[test]
    fn error_types() {
        assert!([1, 2, 3, 4, 127].into_iter().all(is_error));
        assert!(![128, 129, 133, 136].into_iter().any(is_error));
    }

    #[test]
    fn echo_matches_etherparse() {
        let mut ours = [0u8; 128];
        let echo = EchoRepr {
            msg_type: types::ECHO_REPLY,
            ident: 0x1234,
            seq: 9,
        };
        let len = build_echo(
            &mut ours,
            &OwnHeader::new(ROUTER, LAN_HOST),
            &echo,
            b"abcdefg",
        )
        .unwrap();
        let mut theirs = Vec::new();
        PacketBuilder::ipv6(ROUTER.octets(), LAN_HOST.octets(), 64)
            .icmpv6_echo_reply(0x1234, 9)
            .write(&mut theirs, b"abcdefg")
            .unwrap();
        assert_eq!(&ours[..len], &theirs[..]);
        let icmp = Icmpv6Packet::new_checked(&ours[40..len]).unwrap();
        assert!(icmp.verify_checksum(ROUTER, LAN_HOST));
        assert!(
            !icmp.verify_checksum(ROUTER, FAR),
            "the pseudo header counts"
        );
        assert_eq!(
            (icmp.ident(), icmp.seq_no(), icmp.payload()),
            (0x1234, 9, &b"abcdefg"[..])
        );
        assert_eq!(
            build_echo(
                &mut ours[..len - 1],
                &OwnHeader::new(ROUTER, LAN_HOST),
                &echo,
                b"abcdefg"
            ),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn time_exceeded_quotes_the_packet() {
        let bad = offending(30);
        let mut out = [0u8; 1500];
        let len = build_error(
            &mut out,
            &error(types::TIME_EXCEEDED, codes::HOP_LIMIT_EXCEEDED, 0),
            &bad,
        )
        .unwrap();
        assert_eq!(len, 48 + bad.len());
        let (ip, ty, quote) = parse_theirs(&out[..len]);
        assert_eq!(
            (ip.hop_limit, ip.source, ip.destination),
            (64, ROUTER.octets(), LAN_HOST.octets())
        );
        assert_eq!(
            ty,
            Icmpv6Type::TimeExceeded(etherparse::icmpv6::TimeExceededCode::HopLimitExceeded)
        );
        assert_eq!(quote, bad);
    }

    #[test]
    fn packet_too_big_carries_mtu_and_caps_at_1280() {
        let mut bad = offending(1400);
        bad.extend_from_slice(&[0xee; 10]);
        let mut out = [0u8; 1500];
        let len = build_error(&mut out, &error(types::PACKET_TOO_BIG, 0, 1400), &bad).unwrap();
        assert_eq!(len, 1280);
        let (_, ty, quote) = parse_theirs(&out[..len]);
        assert_eq!(ty, Icmpv6Type::PacketTooBig { mtu: 1400 });
        assert_eq!(quote, &bad[..1232]);
    }

    #[test]
    fn source_policy_failed_is_dest_unreach_code_5() {
        let bad = offending(8);
        let mut out = [0u8; 200];
        let len = build_error(
            &mut out,
            &error(types::DEST_UNREACH, codes::SOURCE_POLICY_FAILED, 0),
            &bad,
        )
        .unwrap();
        let (_, ty, _) = parse_theirs(&out[..len]);
        assert_eq!(
            ty,
            Icmpv6Type::DestinationUnreachable(
                etherparse::icmpv6::DestUnreachableCode::SourceAddressFailedPolicy
            )
        );
        let padded_quote_excluded = {
            let mut padded = bad.clone();
            padded.extend_from_slice(&[0; 20]);
            build_error(&mut out, &error(1, 5, 0), &padded).unwrap()
        };
        assert_eq!(padded_quote_excluded, 48 + bad.len());
    }

    #[test]
    fn error_into_small_buffers() {
        let bad = offending(100);
        let mut out = [0u8; 48 + 48];
        assert_eq!(build_error(&mut out, &error(1, 0, 0), &bad), Ok(96));
        assert_eq!(
            build_error(&mut out[..95], &error(1, 0, 0), &bad),
            Err(WireError::Truncated)
        );
        assert_eq!(
            build_error(&mut out[..60], &error(1, 0, 0), &[0x60; 12]),
            Ok(60)
        );
    }

    #[test]
    fn when_errors_may_be_sent() {
        let ok = offending(8);
        assert!(may_send_error_about(types::DEST_UNREACH, &ok));
        assert!(!may_send_error_about(types::DEST_UNREACH, &ok[..39]));
        let with = |msg_type: u8, f: &dyn Fn(&mut Ipv6Packet<&mut [u8]>)| {
            let mut copy = ok.clone();
            f(&mut Ipv6Packet::new_unchecked(&mut copy[..]));
            may_send_error_about(msg_type, &copy)
        };
        assert!(!with(1, &|p| p.set_src(Ipv6Addr::UNSPECIFIED)));
        assert!(!with(1, &|p| p.set_src(Ipv6Addr::LOCALHOST)));
        assert!(!with(1, &|p| p.set_src("ff02::1".parse().unwrap())));
        assert!(!with(3, &|p| p.set_dst("ff0e::1".parse().unwrap())));
        assert!(
            with(2, &|p| p.set_dst("ff0e::1".parse().unwrap())),
            "PTB to multicast"
        );

        let mut out = [0u8; 200];
        let echo = EchoRepr {
            msg_type: types::ECHO_REQUEST,
            ident: 1,
            seq: 1,
        };
        let len = build_echo(&mut out, &OwnHeader::new(LAN_HOST, FAR), &echo, &[]).unwrap();
        assert!(may_send_error_about(3, &out[..len]));
        let mut built = [0u8; 200];
        let len = build_error(&mut built, &error(3, 0, 0), &ok).unwrap();
        assert!(!may_send_error_about(3, &built[..len]));
        assert!(
            !may_send_error_about(3, &built[..40]),
            "ICMPv6 without a type byte"
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80), out_len in 0usize..120, ty in any::<u8>()) {
            if let Ok(icmp) = Icmpv6Packet::new_checked(&bytes[..]) {
                prop_assert_eq!(icmp.payload().len(), bytes.len() - HEADER_LEN);
                let _ = (icmp.msg_type(), icmp.code(), icmp.rest_of_header(), icmp.verify_checksum(ROUTER, FAR));
            }
            let mut copy = bytes.clone();
            let mut icmp = Icmpv6Packet::new_unchecked(&mut copy[..]);
            icmp.fill_checksum(ROUTER, FAR);
            icmp.set_seq_no(1);
            let _ = (icmp.seq_no(), icmp.payload_mut().len(), may_send_error_about(ty, &bytes));
            let mut out = vec![0u8; out_len];
            let _ = build_error(&mut out, &error(ty, 0, 0), &bytes);
        }

        #[test]
        fn error_quotes_the_right_bytes(
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
            padding in 0usize..20,
            out_len in 0usize..1400,
            rest in any::<u32>(),
        ) {
            let mut bad = offending(payload.len());
            bad[48..].copy_from_slice(&payload);
            let total = bad.len();
            bad.extend(std::iter::repeat_n(0xee, padding));
            let mut out = vec![0u8; out_len];
            let must_quote = total.min(48);
            match build_error(&mut out, &error(types::PACKET_TOO_BIG, 0, rest), &bad) {
                Ok(len) => {
                    let quote_len = total.min(1232).min(out_len - 48);
                    prop_assert!(quote_len >= must_quote);
                    prop_assert_eq!(len, 48 + quote_len);
                    let ip = Ipv6Packet::new_checked(&out[..len]).unwrap();
                    prop_assert_eq!((ip.payload_len(), ip.hop_limit(), ip.next_header()), (len - 40, 64, next_header::ICMPV6));
                    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
                    prop_assert!(icmp.verify_checksum(ROUTER, LAN_HOST));
                    prop_assert_eq!((icmp.msg_type(), icmp.rest_of_header()), (types::PACKET_TOO_BIG, rest));
                    prop_assert_eq!(icmp.payload(), &bad[..quote_len]);
                }
                Err(e) => {
                    prop_assert_eq!(e, WireError::Truncated);
                    prop_assert!(out_len < 48 + must_quote);
                }
            }
        }
    }
}
