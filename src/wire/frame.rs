//! Layout of a frame buffer as the TAP devices exchange it (IFF_VNET_HDR): a virtio_net_hdr,
//! then the Ethernet frame. Every module that indexes a frame buffer takes its offsets here.

use super::{ethernet, vnet};

/// Offset of the Ethernet header in a frame buffer (after the virtio_net_hdr).
pub const ETH_OFFSET: usize = vnet::LEN;
/// Offset of the IPv4 header in a frame buffer.
pub const IP_OFFSET: usize = ETH_OFFSET + ethernet::HEADER_LEN;
