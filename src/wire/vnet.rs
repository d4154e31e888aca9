//! `struct virtio_net_hdr`: the 10-byte header in front of every frame on a TAP with
//! IFF_VNET_HDR and an AF_PACKET socket with PACKET_VNET_HDR. Its fields are in the host's
//! native order, which on the little-endian machines this router runs on is little-endian.

use super::{Result, WireError};

/// Length of the header (without the `num_buffers` of the mergeable-buffers variant).
pub const LEN: usize = 10;

/// `flags` bits.
pub mod flags {
    /// The L4 checksum field holds the pseudo-header sum; sum from `csum_start` and store the
    /// result at `csum_start + csum_offset`.
    pub const NEEDS_CSUM: u8 = 1;
    /// The checksum was already verified.
    pub const DATA_VALID: u8 = 2;
}

/// `gso_type` values.
pub mod gso {
    pub const NONE: u8 = 0;
    pub const TCPV4: u8 = 1;
    pub const UDP: u8 = 3;
    pub const TCPV6: u8 = 4;
    pub const UDP_L4: u8 = 5;
    /// Flag bit: the TCP segments carry ECN (CWR must be set on the first only).
    pub const ECN: u8 = 0x80;
}

/// A parsed `virtio_net_hdr`. `csum_start` counts from the start of the Ethernet header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the first 10 bytes of `buf`; Err(Truncated) if there are fewer.
    pub fn parse(buf: &[u8]) -> Result<VnetHdr> {
        let bytes: &[u8; LEN] = buf.first_chunk().ok_or(WireError::Truncated)?;
        let [flags, gso_type, h0, h1, s0, s1, c0, c1, o0, o1] = *bytes;
        Ok(VnetHdr {
            flags,
            gso_type,
            hdr_len: u16::from_le_bytes([h0, h1]),
            gso_size: u16::from_le_bytes([s0, s1]),
            csum_start: u16::from_le_bytes([c0, c1]),
            csum_offset: u16::from_le_bytes([o0, o1]),
        })
    }

    /// Writes the header into the first 10 bytes of `out`; Err(Truncated) if there are fewer.
    pub fn write(&self, out: &mut [u8]) -> Result<()> {
        let bytes: &mut [u8; LEN] = out.first_chunk_mut().ok_or(WireError::Truncated)?;
        let [h0, h1] = self.hdr_len.to_le_bytes();
        let [s0, s1] = self.gso_size.to_le_bytes();
        let [c0, c1] = self.csum_start.to_le_bytes();
        let [o0, o1] = self.csum_offset.to_le_bytes();
        *bytes = [self.flags, self.gso_type, h0, h1, s0, s1, c0, c1, o0, o1];
        Ok(())
    }

    /// The L4 checksum field is partial (see [`flags::NEEDS_CSUM`]).
    pub fn needs_csum(&self) -> bool {
        self.flags & flags::NEEDS_CSUM != 0
    }

    /// The frame is a GSO super-frame to be segmented by `gso_size`.
    pub fn is_gso(&self) -> bool {
        self.gso_type & !gso::ECN != gso::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_known_bytes() {
        // A TSO frame as the kernel hands it over: NEEDS_CSUM, TCPV4, hdr_len 66, gso_size
        // 1448, csum_start 34 (14 + 20), csum_offset 16 (TCP checksum).
        let bytes = [1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, 0xee];
        let hdr = VnetHdr::parse(&bytes).unwrap();
        assert_eq!(
            hdr,
            VnetHdr {
                flags: flags::NEEDS_CSUM,
                gso_type: gso::TCPV4,
                hdr_len: 66,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16
            }
        );
        assert!(hdr.needs_csum() && hdr.is_gso());
        let mut out = [0u8; LEN];
        hdr.write(&mut out).unwrap();
        assert_eq!(out[..], bytes[..LEN]);
    }

    #[test]
    fn plain_frames_and_ecn_flag() {
        let plain = VnetHdr::default();
        assert!(!plain.needs_csum() && !plain.is_gso());
        let ecn_only = VnetHdr {
            gso_type: gso::ECN,
            ..plain
        };
        assert!(!ecn_only.is_gso());
        let tso_ecn = VnetHdr {
            gso_type: gso::TCPV4 | gso::ECN,
            flags: flags::DATA_VALID,
            ..plain
        };
        assert!(tso_ecn.is_gso() && !tso_ecn.needs_csum());
    }

    #[test]
    fn short_buffers() {
        assert_eq!(VnetHdr::parse(&[0; 9]), Err(WireError::Truncated));
        assert_eq!(
            VnetHdr::default().write(&mut [0; 9]),
            Err(WireError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            match VnetHdr::parse(&bytes) {
                Ok(hdr) => {
                    let mut out = [0u8; LEN];
                    hdr.write(&mut out).unwrap();
                    prop_assert_eq!(&out[..], &bytes[..LEN]);
                }
                Err(e) => prop_assert!(bytes.len() < LEN && e == WireError::Truncated),
            }
        }
    }
}
