//! Wire formats: typed, zero-copy views over packet bytes, checksum arithmetic and frame builders.
//!
//! Every view follows one pattern: `new_checked` validates the lengths once, after which the
//! accessors read fixed offsets; setters exist when the buffer is mutable. The `rewrite_*`
//! setters (and `decrement_ttl`, `clamp_mss`) are what the fast path rewrites with: they update
//! the checksums incrementally, or keep a partial (NEEDS_CSUM) one partial. Builders take a Repr
//! struct (`Ipv4Repr`, `OwnHeader`, `TcpRepr`, `EchoRepr`, `ErrorRepr`). Nothing here panics on
//! any input, not even after `new_unchecked` on a short buffer (see `field.rs`), and nothing
//! allocates: builders write into a caller-provided buffer and return the length written.
//! `frame.rs` has the layout of a frame buffer (virtio_net_hdr, Ethernet, IPv4).

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub(crate) mod field;
pub mod frame;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod ndisc;
pub mod tcp;
pub mod udp;
pub mod vnet;
pub mod vrrp;

/// Which end of a packet a rewrite touches: its source or its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

impl Side {
    /// `src` or `dst`, whichever is this side's (a field offset, typically).
    pub(crate) fn pick<T>(self, src: T, dst: T) -> T {
        match self {
            Side::Src => src,
            Side::Dst => dst,
        }
    }
}

/// Why a buffer could not be viewed or built as the requested format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header or the length it declares.
    #[error("truncated")]
    Truncated,
    /// A header field has a value the format does not allow.
    #[error("malformed header")]
    Malformed,
    /// The checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// Well-formed, but a variant this router does not handle.
    #[error("unsupported")]
    Unsupported,
}

/// Result of wire parsing and building.
pub type Result<T> = core::result::Result<T, WireError>;
