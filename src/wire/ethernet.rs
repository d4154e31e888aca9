//! Ethernet II frames and MAC addresses.

use core::fmt;
use core::str::FromStr;

use super::field::{bytes_at, set_bytes, set_u16, slice, slice_mut, u16_at};
use super::{Result, WireError};

/// Length of an Ethernet II header (no VLAN tag).
pub const HEADER_LEN: usize = 14;

/// EtherType values the router looks at.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
}

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group bit set (broadcast included).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not six two-digit hex octets separated by `:` (or `-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address (expected aa:bb:cc:dd:ee:ff)")]
pub struct ParseMacError;

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let mut octets = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for octet in &mut octets {
            let part = parts.next().ok_or(ParseMacError)?;
            // from_str_radix alone would also take a sign ("+1").
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseMacError);
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| ParseMacError)?;
        }
        match parts.next() {
            None => Ok(MacAddr(octets)),
            Some(_) => Err(ParseMacError),
        }
    }
}

mod offset {
    pub const DST: usize = 0;
    pub const SRC: usize = 6;
    pub const ETHERTYPE: usize = 12;
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Views `buffer` as a frame; Err(Truncated) if it cannot hold the header.
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

    pub fn dst(&self) -> MacAddr {
        MacAddr(bytes_at(self.buffer.as_ref(), offset::DST))
    }

    pub fn src(&self) -> MacAddr {
        MacAddr(bytes_at(self.buffer.as_ref(), offset::SRC))
    }

    pub fn ethertype(&self) -> u16 {
        u16_at(self.buffer.as_ref(), offset::ETHERTYPE)
    }

    /// Everything after the header, Ethernet padding included.
    pub fn payload(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        slice(buf, HEADER_LEN..buf.len())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, mac: MacAddr) {
        set_bytes(self.buffer.as_mut(), offset::DST, mac.0);
    }

    pub fn set_src(&mut self, mac: MacAddr) {
        set_bytes(self.buffer.as_mut(), offset::SRC, mac.0);
    }

    pub fn set_ethertype(&mut self, ethertype: u16) {
        set_u16(self.buffer.as_mut(), offset::ETHERTYPE, ethertype);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let buf = self.buffer.as_mut();
        let len = buf.len();
        slice_mut(buf, HEADER_LEN..len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]);
    const B: MacAddr = MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);

    #[test]
    fn mac_classes() {
        assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
        assert!(A.is_unicast() && !A.is_broadcast());
        assert_eq!(MacAddr::default(), MacAddr::ZERO);
    }

    #[test]
    fn mac_display_and_parse_round_trip() {
        assert_eq!(B.to_string(), "52:54:00:ab:cd:ef");
        assert_eq!(format!("{B:?}"), "52:54:00:ab:cd:ef");
        assert_eq!("52:54:00:AB:cd:ef".parse::<MacAddr>(), Ok(B));
        assert_eq!("52-54-00-ab-cd-ef".parse::<MacAddr>(), Ok(B));
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:01",
            "5:54:00:ab:cd:ef",
            "zz:54:00:ab:cd:ef",
            "+1:54:00:ab:cd:ef",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(ParseMacError), "{bad}");
        }
    }

    #[test]
    fn frame_fields_and_setters() {
        let mut buf = [0u8; 20];
        let mut frame = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        frame.set_dst(A);
        frame.set_src(B);
        frame.set_ethertype(ethertype::ARP);
        frame.payload_mut().copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(&buf[..6], &A.0);
        assert_eq!(&buf[12..14], &[0x08, 0x06]);
        let frame = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(
            (frame.dst(), frame.src(), frame.ethertype()),
            (A, B, ethertype::ARP)
        );
        assert_eq!(frame.payload(), &[1, 2, 3, 4, 5, 6]);
        assert_eq!(frame.into_inner().len(), 20);
    }

    #[test]
    fn short_buffers_are_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&[0u8; 13][..]).err(),
            Some(WireError::Truncated)
        );
        let unchecked = EthernetFrame::new_unchecked(&[0xffu8; 3][..]);
        assert_eq!(
            (unchecked.dst(), unchecked.ethertype(), unchecked.payload()),
            (MacAddr::ZERO, 0, &[][..])
        );
    }

    #[test]
    fn agrees_with_etherparse() {
        let builder = etherparse::PacketBuilder::ethernet2(B.0, A.0)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2);
        let mut bytes = Vec::new();
        builder.write(&mut bytes, &[9; 4]).unwrap();
        let ours = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let theirs = etherparse::Ethernet2Header::from_slice(&bytes).unwrap().0;
        assert_eq!(ours.src().0, theirs.source);
        assert_eq!(ours.dst().0, theirs.destination);
        assert_eq!(ours.ethertype(), theirs.ether_type.0);
        assert_eq!(ours.payload().len(), bytes.len() - theirs.header_len());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(frame) = EthernetFrame::new_checked(&bytes[..]) {
                prop_assert_eq!(frame.payload().len(), bytes.len() - HEADER_LEN);
                let _ = (frame.dst(), frame.src(), frame.ethertype());
            }
            let mut copy = bytes.clone();
            let mut frame = EthernetFrame::new_unchecked(&mut copy[..]);
            frame.set_dst(A);
            frame.set_ethertype(1);
            let _ = (frame.dst(), frame.payload_mut().len());
        }

        #[test]
        fn mac_parse_round_trips(octets in any::<[u8; 6]>()) {
            prop_assert_eq!(MacAddr(octets).to_string().parse::<MacAddr>(), Ok(MacAddr(octets)));
        }
    }
}
