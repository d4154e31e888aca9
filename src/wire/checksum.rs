//! Internet checksum (RFC 1071) arithmetic and incremental updates (RFC 1624).
//!
//! Values are the host-order numbers of big-endian 16-bit words. A "sum" is an unfolded `u32`
//! accumulation; [`fold`] reduces it to 16 bits and a finished checksum field is its complement.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::field::{set_u16, try_u16_at};

/// One's-complement accumulation of `data` as big-endian 16-bit words, an odd trailing byte
/// padded with zero. Not folded: for any IPv4-sized buffer (< 128 KiB) this is the plain sum; a
/// larger buffer has its carries folded back in only as far as needed to fit a `u32`.
pub fn sum(data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    let mut acc: u64 = chunks
        .by_ref()
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    // 2^32 ≡ 1 (mod 0xffff), so adding the high half back in preserves the one's-complement value.
    while acc > u64::from(u32::MAX) {
        acc = (acc & u64::from(u32::MAX)) + (acc >> 32);
    }
    acc as u32
}

/// One's-complement addition of two sums; unlike `+` it cannot overflow.
pub fn add(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    // On overflow s <= u32::MAX - 1, so the end-around carry cannot overflow again.
    s + u32::from(carry)
}

/// Folds the carries of `sum` into 16 bits. Not complemented.
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The finished checksum of `data`: `!fold(sum(data))`.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Sum of the TCP/UDP pseudo header (RFC 793 / RFC 768): addresses, protocol, L4 length.
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u32 {
    let [s0, s1] = split32(src.to_bits());
    let [d0, d1] = split32(dst.to_bits());
    s0 + s1 + d0 + d1 + u32::from(protocol) + u32::from(len)
}

/// The finished checksum of an L4 segment over the IPv4 pseudo header, or `None` when the
/// segment is longer than an IPv4 datagram can carry (there is then no correct value).
pub(super) fn l4_checksum(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    segment: &[u8],
) -> Option<u16> {
    let len = u16::try_from(segment.len()).ok()?;
    Some(!fold(add(
        pseudo_header_sum(src, dst, protocol, len),
        sum(segment),
    )))
}

/// Sum of the IPv6 pseudo header (RFC 8200 §8.1) that ICMPv6, TCP and UDP checksums cover:
/// addresses, the upper-layer length and the next-header value of the upper layer (not of an
/// extension header before it).
pub fn pseudo_header_sum_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let words = |a: Ipv6Addr| a.segments().into_iter().map(u32::from).sum::<u32>();
    let [l0, l1] = split32(len);
    words(src) + words(dst) + l0 + l1 + u32::from(next_header)
}

/// The finished checksum of an upper-layer segment over the IPv6 pseudo header, or `None`
/// when the segment is longer than the pseudo header's 32-bit length can say.
pub fn l4_checksum_v6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    segment: &[u8],
) -> Option<u16> {
    let len = u32::try_from(segment.len()).ok()?;
    Some(!fold(add(
        pseudo_header_sum_v6(src, dst, next_header, len),
        sum(segment),
    )))
}

/// RFC 1624 eqn. 3 update of a finished (complemented) checksum field after a 16-bit word of
/// the covered data changed from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
///
/// UDP callers: leave a zero field alone (no checksum) and write `0xffff` if this returns 0.
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

/// [`update16`] for a 32-bit value (an address) spanning two aligned words.
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    !fold(u32::from(!check) + diff32(old, new))
}

/// Update of a PARTIAL checksum field (virtio_net_hdr `NEEDS_CSUM`): the field holds the folded,
/// uncomplemented pseudo-header sum and the NIC (or kernel) adds the segment and complements
/// later. This is the kernel's `inet_proto_csum_replace4` under `CHECKSUM_PARTIAL`:
/// `fold(check + ~old + new)`. Only pseudo-header fields (addresses) need it; a port lives in
/// the segment the NIC sums itself, so a port rewrite leaves a partial field unchanged.
pub fn update_partial32(check: u16, old: u32, new: u32) -> u16 {
    fold(u32::from(check) + diff32(old, new))
}

/// What a TCP/UDP/ICMP checksum field holds, which decides how a rewrite updates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Checksum {
    /// The finished checksum.
    Full,
    /// The folded, uncomplemented pseudo-header sum of a virtio `NEEDS_CSUM` frame: the kernel
    /// or NIC sums the segment later, so only pseudo-header (address) changes enter the field.
    Partial,
}

/// The checksum field of a TCP/UDP segment after NAT moved one endpoint: its address (in the
/// pseudo-header) from `addr.0` to `addr.1` and its port from `port.0` to `port.1`.
/// UDP callers handle the zero field as [`update16`] says.
#[inline]
pub fn update_endpoint(check: u16, addr: (u32, u32), port: (u16, u16), held: L4Checksum) -> u16 {
    match held {
        L4Checksum::Partial => update_partial32(check, addr.0, addr.1),
        L4Checksum::Full => update16(update32(check, addr.0, addr.1), port.0, port.1),
    }
}

/// NAT of one endpoint of the TCP or UDP header in `segment`: the port at `port_at` becomes
/// `port`, and the checksum at `csum_at` follows it and the address change `addr` (old, new)
/// in the pseudo-header. `udp`: a zero full checksum means none and stays zero, and a computed
/// zero is sent as 0xffff. Works on a quoted header too: a missing port leaves the segment
/// alone, a missing checksum is skipped.
#[inline]
pub(super) fn rewrite_endpoint_at(
    segment: &mut [u8],
    (port_at, csum_at): (usize, usize),
    addr: (u32, u32),
    port: u16,
    held: L4Checksum,
    udp: bool,
) {
    let Some(old_port) = try_u16_at(segment, port_at) else {
        return;
    };
    set_u16(segment, port_at, port);
    let Some(c) = try_u16_at(segment, csum_at) else {
        return;
    };
    let full = held == L4Checksum::Full;
    if udp && full && c == 0 {
        return;
    }
    let mut c = update_endpoint(c, addr, (old_port, port), held);
    if udp && full && c == 0 {
        c = 0xffff;
    }
    set_u16(segment, csum_at, c);
}

fn split32(value: u32) -> [u32; 2] {
    [value >> 16, value & 0xffff]
}

/// `~old + new` over the two 16-bit halves of each value.
fn diff32(old: u32, new: u32) -> u32 {
    let [o0, o1] = split32(!old);
    let [n0, n1] = split32(new);
    o0 + o1 + n0 + n1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to 0x2ddf0, folded 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0x2_ddf0);
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_trailing_byte_is_padded_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // Wikipedia's IPv4 header checksum example: the field is 0xb861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&hdr), 0);
    }

    #[test]
    fn add_carries_end_around() {
        assert_eq!(add(u32::MAX, 2), 2);
        // 2^32 ≡ 1 in one's-complement arithmetic.
        assert_eq!(add(0xffff_0000, 0x0001_0000), 1);
    }

    #[test]
    fn huge_buffers_do_not_overflow() {
        let data = vec![0xff; 1 << 20];
        assert_eq!(fold(sum(&data)), 0xffff);
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let src = Ipv4Addr::new(192, 168, 0, 10);
        let dst = Ipv4Addr::new(172, 18, 0, 6);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&[0, 6, 0x05, 0xdc]);
        assert_eq!(pseudo_header_sum(src, dst, 6, 1500), sum(&bytes));
    }

    #[test]
    fn pseudo_header_v6_matches_bytes_and_etherparse() {
        let src: Ipv6Addr = "2001:db8:a::10".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8:18::6".parse().unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&[0, 0, 0x05, 0xdc, 0, 0, 0, 17]);
        assert_eq!(
            fold(pseudo_header_sum_v6(src, dst, 17, 1500)),
            fold(sum(&bytes))
        );
        let ip = etherparse::Ipv6Header {
            source: src.octets(),
            destination: dst.octets(),
            ..Default::default()
        };
        let udp = etherparse::UdpHeader::with_ipv6_checksum(4000, 53, &ip, b"abc").unwrap();
        let mut segment = udp.to_bytes().to_vec();
        segment[6..8].copy_from_slice(&[0, 0]);
        segment.extend_from_slice(b"abc");
        assert_eq!(l4_checksum_v6(src, dst, 17, &segment), Some(udp.checksum));
    }

    #[test]
    fn l4_checksum_rejects_oversized_segments() {
        let addr = Ipv4Addr::LOCALHOST;
        assert_eq!(l4_checksum(addr, addr, 17, &vec![0; 70_000]), None);
    }

    /// Random even-length data, the word index of a checksum field and of a `width`-word value
    /// that does not overlap it. The first word is nonzero and never rewritten (real headers
    /// always have one; an all-zero buffer is the one case where -0 and +0 representations differ).
    fn data_and_field(width: usize) -> impl Strategy<Value = (Vec<u8>, usize, usize)> {
        (4usize..64)
            .prop_flat_map(move |words| {
                (
                    proptest::collection::vec(any::<u8>(), words * 2),
                    1..words,
                    1..=words - width,
                )
            })
            .prop_filter("fields overlap", move |(_, c, w)| {
                !(*w..*w + width).contains(c)
            })
            .prop_map(|(mut data, c, w)| {
                data[0] |= 0x40;
                (data, c * 2, w * 2)
            })
    }

    fn with_checksum(mut data: Vec<u8>, at: usize) -> Vec<u8> {
        data[at..at + 2].copy_from_slice(&[0, 0]);
        let c = checksum(&data);
        data[at..at + 2].copy_from_slice(&c.to_be_bytes());
        data
    }

    fn field(data: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([data[at], data[at + 1]])
    }

    proptest! {
        #[test]
        fn update16_matches_recompute((data, c, w) in data_and_field(1), new in any::<u16>()) {
            let data = with_checksum(data, c);
            let mut changed = data.clone();
            changed[w..w + 2].copy_from_slice(&new.to_be_bytes());
            let recomputed = with_checksum(changed, c);
            prop_assert_eq!(update16(field(&data, c), field(&data, w), new), field(&recomputed, c));
        }

        #[test]
        fn update32_matches_recompute((data, c, w) in data_and_field(2), new in any::<u32>()) {
            let data = with_checksum(data, c);
            let old = u32::from_be_bytes([data[w], data[w + 1], data[w + 2], data[w + 3]]);
            let mut changed = data.clone();
            changed[w..w + 4].copy_from_slice(&new.to_be_bytes());
            let recomputed = with_checksum(changed, c);
            prop_assert_eq!(update32(field(&data, c), old, new), field(&recomputed, c));
        }

        #[test]
        fn sum_is_order_independent_over_words(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (a, b) = data.split_at((data.len() / 2) & !1);
            prop_assert_eq!(fold(sum(&data)), fold(add(sum(a), sum(b))));
        }
    }
}
