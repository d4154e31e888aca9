//! NPTv6 (RFC 6296; SPEC 33): stateless, checksum-neutral translation between the LAN's
//! internal prefix (a ULA) and one uplink's external prefix of the same length. Only the
//! prefix bits are replaced, and one 16-bit word is adjusted so that the one's-complement sum
//! of the whole address is unchanged: every checksum covering the address (TCP, UDP and
//! ICMPv6 pseudo headers, a partial checksum the NIC will finish, the header an ICMPv6 error
//! quotes) stays valid without being touched.
//!
//! Which word (§3.2, §3.6): bits 48–63 (the subnet) for prefixes of /48 or shorter; for longer
//! prefixes (the LAN's /64s) the first word of the interface identifier that is not 0xFFFF.
//! One's-complement arithmetic has two zeros, so a result of 0xFFFF is written as 0x0000
//! (§3.5), and a word that is 0xFFFF is never adjusted (its reverse would come back as 0x0000).
//! An address with no word to adjust (subnet 0xFFFF under a /48, an interface identifier all
//! 0xFFFF under a longer prefix) cannot be translated: the caller drops the packet and counts
//! it.
//!
//! Pure: addresses in, addresses out.

use std::net::Ipv6Addr;

use crate::prefix6::Ipv6Prefix;

/// Why a pair of prefixes cannot be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Npt6Error {
    #[error("the prefixes differ in length (/{0} and /{1})")]
    Lengths(u8, u8),
    #[error(
        "prefix length /{0} is longer than /64: no word of the subnet or interface identifier is left to adjust"
    )]
    TooLong(u8),
}

/// One checksum-neutral mapping between an internal and an external prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Npt6 {
    internal: Ipv6Prefix,
    external: Ipv6Prefix,
    /// Added to the adjusted word going out, subtracted coming in: the one's-complement sum
    /// of the internal prefix minus the external one's.
    adjustment: u16,
}

/// One's-complement addition of two 16-bit words.
fn add(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// The one's-complement sum of an address's 16-bit words.
fn sum(a: Ipv6Addr) -> u16 {
    a.segments().into_iter().fold(0, add)
}

impl Npt6 {
    /// The mapping of `internal` to `external`, both given as networks of the same length.
    pub fn new(internal: Ipv6Prefix, external: Ipv6Prefix) -> Result<Npt6, Npt6Error> {
        let (i, e) = (internal.network(), external.network());
        if i.prefix_len() != e.prefix_len() {
            return Err(Npt6Error::Lengths(i.prefix_len(), e.prefix_len()));
        }
        if i.prefix_len() > 64 {
            return Err(Npt6Error::TooLong(i.prefix_len()));
        }
        Ok(Npt6 {
            internal: i,
            external: e,
            adjustment: add(sum(i.addr()), !sum(e.addr())),
        })
    }

    pub fn internal(&self) -> Ipv6Prefix {
        self.internal
    }

    pub fn external(&self) -> Ipv6Prefix {
        self.external
    }

    /// The external address of the internal `a` (a LAN source going out); None when `a` is
    /// outside the internal prefix or cannot be translated.
    pub fn to_external(&self, a: Ipv6Addr) -> Option<Ipv6Addr> {
        self.map(a, self.internal, self.external, self.adjustment)
    }

    /// The internal address of the external `a` (a destination coming in); None when `a` is
    /// outside the external prefix or cannot be translated.
    pub fn to_internal(&self, a: Ipv6Addr) -> Option<Ipv6Addr> {
        self.map(a, self.external, self.internal, !self.adjustment)
    }

    fn map(&self, a: Ipv6Addr, from: Ipv6Prefix, to: Ipv6Prefix, adj: u16) -> Option<Ipv6Addr> {
        if !from.contains(a) {
            return None;
        }
        let mut words = to.host(a.to_bits()).segments();
        let at = if to.prefix_len() <= 48 {
            Some(3).filter(|_| words[3] != 0xffff)?
        } else {
            (4..8).find(|&i| words[i] != 0xffff)?
        };
        words[at] = match add(words[at], adj) {
            0xffff => 0,
            w => w,
        };
        Some(Ipv6Addr::from(words))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;
    use crate::wire::ipv6::next_header;
    use proptest::prelude::*;

    fn p(s: &str) -> Ipv6Prefix {
        s.parse().unwrap()
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// RFC 6296 Appendix B: FD01:0203:0405:/48 ⇄ 2001:0DB8:0001:/48, the host
    /// FD01:0203:0405:0001::1234 is 2001:0DB8:0001:D550::1234 outside.
    #[test]
    fn rfc6296_appendix_b() {
        let npt = Npt6::new(p("fd01:203:405::/48"), p("2001:db8:1::/48")).unwrap();
        assert_eq!(
            npt.to_external(a("fd01:203:405:1::1234")),
            Some(a("2001:db8:1:d550::1234"))
        );
        assert_eq!(
            npt.to_internal(a("2001:db8:1:d550::1234")),
            Some(a("fd01:203:405:1::1234"))
        );
    }

    /// The lab's mapping: a ULA /64 to ISP A's LAN /64; the adjustment lands in the first
    /// interface-identifier word, and the sum of the address is unchanged.
    #[test]
    fn a_64_adjusts_the_interface_identifier() {
        let npt = Npt6::new(p("fd00:db8:1::/64"), p("2001:db8:a:1::/64")).unwrap();
        let host = a("fd00:db8:1:0:5054:ff:fe12:3456");
        let out = npt.to_external(host).unwrap();
        assert!(p("2001:db8:a:1::/64").contains(out));
        assert_eq!(out.segments()[5..], host.segments()[5..]);
        assert_ne!(out.segments()[4], host.segments()[4]);
        assert_eq!(checksum::fold(sum(out).into()), sum(host));
        assert_eq!(npt.to_internal(out), Some(host));
    }

    #[test]
    fn words_of_all_ones_are_skipped_and_an_all_ones_identifier_is_refused() {
        let npt = Npt6::new(p("fd00:db8:1::/64"), p("2001:db8:a:1::/64")).unwrap();
        let host = a("fd00:db8:1:0:ffff:ffff:1:2");
        let out = npt.to_external(host).unwrap();
        assert_eq!(out.segments()[4..6], [0xffff, 0xffff]);
        assert_ne!(out.segments()[6], 1);
        assert_eq!(npt.to_internal(out), Some(host));
        assert_eq!(npt.to_external(a("fd00:db8:1:0:ffff:ffff:ffff:ffff")), None);
        assert_eq!(npt.to_internal(a("2001:db8:a:1:ffff:ffff:ffff:ffff")), None);
    }

    /// RFC 6296 §3.5: 0xFFFF and 0x0000 are the same one's-complement number; writing 0x0000
    /// keeps the word adjustable on the way back.
    #[test]
    fn a_result_of_all_ones_is_written_as_zero() {
        let npt = Npt6::new(p("fd00:db8:1::/64"), p("2001:db8:a:1::/64")).unwrap();
        let host = Ipv6Addr::new(0xfd00, 0xdb8, 1, 0, !npt.adjustment, 0, 0, 1);
        let out = npt.to_external(host).unwrap();
        assert_eq!(out.segments()[4], 0);
        assert_eq!(npt.to_internal(out), Some(host));
    }

    #[test]
    fn outside_the_prefix_is_not_translated() {
        let npt = Npt6::new(p("fd00:db8:1::/64"), p("2001:db8:a:1::/64")).unwrap();
        assert_eq!(npt.to_external(a("fd00:db8:2::1")), None);
        assert_eq!(npt.to_internal(a("2001:db8:b:1::1")), None);
        assert_eq!(npt.to_internal(a("fd00:db8:1::1")), None);
    }

    #[test]
    fn prefixes_must_match_in_length_and_leave_a_word() {
        assert_eq!(
            Npt6::new(p("fd00::/48"), p("2001:db8:a:1::/64")),
            Err(Npt6Error::Lengths(48, 64))
        );
        assert_eq!(
            Npt6::new(p("fd00::/80"), p("2001:db8:a:1::/80")),
            Err(Npt6Error::TooLong(80))
        );
    }

    /// A TCP segment's checksum over the IPv6 pseudo header.
    fn tcp_checksum(src: Ipv6Addr, dst: Ipv6Addr, segment: &[u8]) -> u16 {
        checksum::l4_checksum_v6(src, dst, next_header::TCP, segment).unwrap()
    }

    proptest! {
        /// Out then back is the identity; the translated address is in the other prefix; and
        /// a TCP checksum computed before translation is the one recomputed after, so nothing
        /// but the address needs rewriting.
        #[test]
        fn round_trip_keeps_address_and_checksum(
            ula in any::<u64>(),
            ext in any::<u64>(),
            len in prop_oneof![Just(48u8), Just(56), Just(64), 1u8..=64],
            iid in any::<u128>(),
            all_ones in any::<bool>(),
            remote in any::<u128>(),
            segment in proptest::collection::vec(any::<u8>(), 20..80),
        ) {
            let internal = Ipv6Prefix::new(Ipv6Addr::from_bits(u128::from(ula) << 64), len).unwrap();
            let external = Ipv6Prefix::new(Ipv6Addr::from_bits(u128::from(ext) << 64), len).unwrap();
            let npt = Npt6::new(internal, external).unwrap();
            // Words of all ones are where the edge cases are.
            let iid = if all_ones { iid | 0xffff_ffff_ffff_0000_0000 } else { iid };
            let host = internal.network().host(iid);
            let remote = Ipv6Addr::from_bits(remote);
            match npt.to_external(host) {
                Some(out) => {
                    prop_assert!(external.contains(out));
                    prop_assert_eq!(npt.to_internal(out), Some(host));
                    prop_assert_eq!(tcp_checksum(host, remote, &segment), tcp_checksum(out, remote, &segment));
                }
                None if len <= 48 => prop_assert_eq!(host.segments()[3], 0xffff),
                None => prop_assert_eq!(&host.segments()[4..], &[0xffff; 4]),
            }
        }
    }
}
