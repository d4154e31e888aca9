//! In-place rewriting of a forwarded packet through the wire views' typed setters: a NAT
//! endpoint (address and port, incremental checksums), the packet quoted by an ICMP error, the
//! TTL, the MSS of a SYN, and the virtio_net_hdr checksum-offload state.

use std::net::Ipv4Addr;

use super::parse::{Ip, L4};
use crate::nat::Translation;
use crate::wire::Side;
use crate::wire::checksum::{self, L4Checksum};
use crate::wire::field::set_u16;
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{Ipv4Packet, proto};
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;
use crate::wire::vnet::{self, VnetHdr};

/// The address and port (or echo id) one side of a packet is given by NAT.
#[derive(Debug, Clone, Copy)]
pub(super) struct Endpoint {
    pub addr: Ipv4Addr,
    pub port: u16,
}

impl Endpoint {
    /// The session's face on its uplink: what outbound packets are given.
    pub(super) fn outside(t: &Translation) -> Endpoint {
        Endpoint {
            addr: t.outside,
            port: t.outside_port,
        }
    }

    /// The inside host's endpoint: what inbound packets are given back.
    pub(super) fn inside(t: &Translation) -> Endpoint {
        Endpoint {
            addr: t.inside,
            port: t.inside_port,
        }
    }
}

/// Rewrites the endpoint on `side` of the IP packet `ipb` (header to `total_len`) with
/// incremental checksum updates (RFC 1624). With a partial (NEEDS_CSUM) L4 checksum only the
/// address enters it, as the kernel does.
#[inline]
pub(super) fn rewrite_endpoint(
    ipb: &mut [u8],
    ip: &Ip,
    l4: L4,
    side: Side,
    to: Endpoint,
    held: L4Checksum,
) {
    let old = Ipv4Packet::new_unchecked(&mut *ipb).rewrite_addr(side, to.addr);
    let Some(l4b) = ipb.get_mut(ip.hlen..) else {
        return;
    };
    match (ip.proto, l4) {
        (proto::TCP, L4::Ports { .. }) => {
            TcpPacket::new_unchecked(l4b).rewrite_endpoint(side, old, to.addr, to.port, held)
        }
        (proto::UDP, L4::Ports { .. }) => {
            UdpPacket::new_unchecked(l4b).rewrite_endpoint(side, old, to.addr, to.port, held)
        }
        (proto::ICMP, L4::Echo { .. }) => {
            IcmpPacket::new_unchecked(l4b).rewrite_ident(to.port, held)
        }
        // Non-first fragments: the transport header (and its checksum) is in the first one.
        _ => {}
    }
}

/// Translates an ICMP error: the outer address on `outer`, and the quoted packet's endpoint on
/// `inner` (address and port/echo id), then recomputes the ICMP checksum whole.
pub(super) fn translate_error(ipb: &mut [u8], ip: &Ip, outer: Side, inner: Side, to: Endpoint) {
    Ipv4Packet::new_unchecked(&mut *ipb).rewrite_addr(outer, to.addr);
    let Some(msg) = ipb.get_mut(ip.hlen..) else {
        return;
    };
    if let Some(quoted) = msg.get_mut(icmp::HEADER_LEN..)
        && let Ok(mut q) = Ipv4Packet::new_quoted(quoted)
    {
        let (hlen, quoted_proto) = (q.header_len(), q.protocol());
        let old = q.rewrite_addr(inner, to.addr);
        if let Some(ql4) = q.into_inner().get_mut(hlen..) {
            let full = L4Checksum::Full;
            match quoted_proto {
                proto::TCP => TcpPacket::new_unchecked(ql4)
                    .rewrite_endpoint(inner, old, to.addr, to.port, full),
                proto::UDP => UdpPacket::new_unchecked(ql4)
                    .rewrite_endpoint(inner, old, to.addr, to.port, full),
                proto::ICMP => IcmpPacket::new_unchecked(ql4).set_ident(to.port),
                _ => {}
            }
        }
    }
    IcmpPacket::new_unchecked(msg).fill_checksum();
}

/// Lowers the MSS option of the SYN whose TCP header is `tcp_hdr` to `clamp`.
pub(super) fn clamp_mss(tcp_hdr: &mut [u8], clamp: u16, held: L4Checksum) {
    if let Ok(mut t) = TcpPacket::new_checked(tcp_hdr) {
        t.clamp_mss(clamp, held);
    }
}

/// Completes a partial (NEEDS_CSUM) L4 checksum in software, as a NIC would, and clears the
/// flag: fragments cannot carry a partial checksum.
pub fn complete_checksum(frame: &mut [u8]) {
    let Ok(vh) = VnetHdr::parse(frame) else {
        return;
    };
    if !vh.needs_csum() {
        return;
    }
    let start = ETH_OFFSET + vh.csum_start as usize;
    let field = start + vh.csum_offset as usize;
    let end = IP_OFFSET
        + frame
            .get(IP_OFFSET..)
            .and_then(|b| Ipv4Packet::new_checked(b).ok())
            .map_or(0, |p| p.total_len());
    if field + 2 > end || end > frame.len() {
        return;
    }
    let c = checksum::checksum(&frame[start..end]);
    set_u16(frame, field, c);
    clear_needs_csum(frame, &vh);
}

/// After a full checksum recompute the kernel must not "complete" it again.
#[inline]
pub(super) fn clear_needs_csum(frame: &mut [u8], vh: &VnetHdr) {
    if vh.needs_csum() {
        let mut h = *vh;
        h.flags &= !vnet::flags::NEEDS_CSUM;
        // The header was parsed from this buffer, so it fits.
        let _ = h.write(frame);
    }
}
