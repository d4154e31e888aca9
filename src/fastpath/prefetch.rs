//! The first pass over a received batch: for each frame, the NAT key it will be looked up by,
//! read cheaply (no checksum, no validation beyond the lengths it reads), and a prefetch of the
//! table slots that key lives in. By the time `process` reaches the frame, the lookup finds
//! them in cache instead of waiting for DRAM (the table of a million sessions is far larger
//! than the caches). A wrong key costs a useless prefetch, nothing else: `process` decides.

use std::net::Ipv4Addr;

use super::Env;
use crate::Iface;
use crate::nat::{FlowKey, InboundKey};
use crate::wire::ethernet::{EthernetFrame, ethertype};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::icmp::{IcmpPacket, types};
use crate::wire::ipv4::{Ipv4Packet, proto};
use crate::wire::udp::UdpPacket;

/// Prefetches the NAT entry `frame` (virtio_net_hdr, Ethernet, IPv4) will be looked up by, if
/// it is a TCP or UDP segment or an ICMP echo (request from the LAN, reply from an uplink).
#[inline]
pub fn prefetch_session(env: &Env, frame: &[u8], ingress: Iface) {
    let Some((proto, src, dst, sport, dport)) = nat_ports(frame, ingress) else {
        return;
    };
    match ingress {
        Iface::Lan => env.nat.prefetch_outbound(&FlowKey {
            proto,
            inside: src,
            inside_port: sport,
            remote: dst,
            remote_port: dport,
        }),
        Iface::Uplink(uplink) => env.nat.prefetch_inbound(&InboundKey {
            uplink,
            proto,
            outside_port: dport,
            remote: src,
            remote_port: sport,
        }),
    }
}

/// (proto, source, destination, source port, destination port) as NAT keys the frame; for an
/// echo the identifier is the inside host's port, the remote's is 0.
#[inline]
fn nat_ports(frame: &[u8], ingress: Iface) -> Option<(u8, Ipv4Addr, Ipv4Addr, u16, u16)> {
    let eth = EthernetFrame::new_unchecked(frame.get(ETH_OFFSET..IP_OFFSET)?);
    if eth.ethertype() != ethertype::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_quoted(&frame[IP_OFFSET..]).ok()?;
    if ip.frag_offset() != 0 {
        return None;
    }
    // The ports, or the echo type and identifier: the first 8 bytes.
    let l4 = ip.payload().get(..8)?;
    let (sport, dport) = match (ip.protocol(), ingress) {
        (proto::TCP | proto::UDP, _) => {
            let ports = UdpPacket::new_unchecked(l4);
            (ports.src_port(), ports.dst_port())
        }
        (proto::ICMP, Iface::Lan) => {
            let icmp = IcmpPacket::new_unchecked(l4);
            (icmp.msg_type() == types::ECHO_REQUEST).then(|| (icmp.ident(), 0))?
        }
        (proto::ICMP, Iface::Uplink(_)) => {
            let icmp = IcmpPacket::new_unchecked(l4);
            (icmp.msg_type() == types::ECHO_REPLY).then(|| (0, icmp.ident()))?
        }
        _ => return None,
    };
    Some((ip.protocol(), ip.src(), ip.dst(), sport, dport))
}
