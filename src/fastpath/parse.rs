//! Reading a frame: the IPv4 header (checksum verified), the martian filter, the transport
//! header as far as routing and NAT care, and the packet an ICMP error quotes.

use std::net::Ipv4Addr;

use crate::Iface;
use crate::counters::DropReason;
use crate::nat::{FlowKey, FragKey};
use crate::wire::WireError;
use crate::wire::frame::IP_OFFSET;
use crate::wire::icmp::{self, IcmpPacket, types};
use crate::wire::ipv4::{Ipv4Packet, proto};
use crate::wire::tcp::{self, TcpPacket};
use crate::wire::udp::{self, UdpPacket};

/// The IPv4 header fields the decisions need, read once.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ip {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub hlen: usize,
    pub total: usize,
    pub df: bool,
    pub more_frags: bool,
    pub first_frag: bool,
    pub ident: u16,
}

/// The transport header, as far as routing and NAT care.
#[derive(Debug, Clone, Copy)]
pub(super) enum L4 {
    /// TCP or UDP; `hlen` is the transport header length.
    Ports {
        sport: u16,
        dport: u16,
        flags: u8,
        ack: Option<u32>,
        hlen: usize,
    },
    /// ICMP echo request or reply.
    Echo { request: bool, ident: u16 },
    /// ICMP error quoting a packet.
    IcmpError,
    /// A non-first fragment: no transport header.
    Fragment,
    /// Any other protocol or ICMP type.
    Other,
}

impl L4 {
    /// TCP flags and acknowledgement number (zero and None for anything but TCP).
    #[inline]
    pub(super) fn tcp_state(self) -> (u8, Option<u32>) {
        match self {
            L4::Ports { flags, ack, .. } => (flags, ack),
            _ => (0, None),
        }
    }
}

#[inline]
pub(super) fn parse_ip(buf: &[u8]) -> Result<Ip, DropReason> {
    let p = Ipv4Packet::new_checked(buf).map_err(|e| match e {
        WireError::Truncated => DropReason::Truncated,
        _ => DropReason::BadIpHeader,
    })?;
    if !p.verify_checksum() {
        return Err(DropReason::BadIpChecksum);
    }
    Ok(Ip {
        src: p.src(),
        dst: p.dst(),
        proto: p.protocol(),
        ttl: p.ttl(),
        hlen: p.header_len(),
        total: p.total_len(),
        df: p.dont_frag(),
        more_frags: p.more_frags(),
        first_frag: p.frag_offset() == 0,
        ident: p.ident(),
    })
}

#[inline]
/// An unfragmented IPv4 UDP datagram for the router's DHCP server (port 67, on the LAN) or
/// an uplink's client (from port 67 to port 68).
pub(super) fn is_dhcp(frame: &[u8], ingress: Iface) -> bool {
    let Ok(ip) = parse_ip(&frame[IP_OFFSET..]) else {
        return false;
    };
    let pkt = &frame[IP_OFFSET..IP_OFFSET + ip.total];
    let ports = match parse_l4(pkt, &ip) {
        Ok(L4::Ports { sport, dport, .. }) if ip.proto == proto::UDP => (sport, dport),
        _ => return false,
    };
    match ingress {
        Iface::Lan => ports.1 == 67,
        Iface::Uplink(_) => ports == (67, 68),
    }
}

pub(super) fn check_martian(ip: &Ip) -> Result<(), DropReason> {
    let s = ip.src.octets();
    let bad_src = s[0] == 0 || s[0] == 127 || s[0] >= 224;
    let d = ip.dst.octets();
    // Class E (240/4) includes 255/8; of it only the limited broadcast is not martian.
    let bad_dst = d[0] == 0 || d[0] == 127 || (d[0] >= 240 && !ip.dst.is_broadcast());
    if bad_src || bad_dst {
        return Err(DropReason::Martian);
    }
    if ip.dst.is_multicast() || ip.dst.is_broadcast() {
        return Err(DropReason::Broadcast);
    }
    Ok(())
}

/// Parses the transport header of the IP packet `pkt` (header included, padding excluded).
#[inline]
pub(super) fn parse_l4(pkt: &[u8], ip: &Ip) -> Result<L4, DropReason> {
    if !ip.first_frag {
        return Ok(L4::Fragment);
    }
    let payload = &pkt[ip.hlen..];
    match ip.proto {
        proto::TCP => {
            let t = TcpPacket::new_checked(payload).map_err(|_| DropReason::BadL4Header)?;
            Ok(L4::Ports {
                sport: t.src_port(),
                dport: t.dst_port(),
                flags: t.flags(),
                ack: (t.flags() & tcp::flags::ACK != 0).then(|| t.ack()),
                hlen: t.header_len(),
            })
        }
        proto::UDP => {
            // A first fragment carries only part of the datagram: check the header alone.
            let u = if ip.more_frags {
                if payload.len() < udp::HEADER_LEN {
                    return Err(DropReason::BadL4Header);
                }
                UdpPacket::new_unchecked(payload)
            } else {
                UdpPacket::new_checked(payload).map_err(|_| DropReason::BadL4Header)?
            };
            Ok(L4::Ports {
                sport: u.src_port(),
                dport: u.dst_port(),
                flags: 0,
                ack: None,
                hlen: udp::HEADER_LEN,
            })
        }
        proto::ICMP => {
            let i = IcmpPacket::new_checked(payload).map_err(|_| DropReason::BadL4Header)?;
            Ok(match i.msg_type() {
                types::ECHO_REQUEST => L4::Echo {
                    request: true,
                    ident: i.ident(),
                },
                types::ECHO_REPLY => L4::Echo {
                    request: false,
                    ident: i.ident(),
                },
                t if icmp::is_error(t) => L4::IcmpError,
                _ => L4::Other,
            })
        }
        _ => Ok(L4::Other),
    }
}

/// Kind of transport content of the packet in a full frame buffer (for "never answer an error").
pub(super) fn parse_l4_kind(frame: &[u8], ip: &Ip) -> L4 {
    frame
        .get(IP_OFFSET..IP_OFFSET + ip.total)
        .and_then(|p| parse_l4(p, ip).ok())
        .unwrap_or(L4::Other)
}

/// The session key of an outbound packet that can open one (TCP, UDP, echo request).
#[inline]
pub(super) fn outbound_key(ip: &Ip, l4: L4) -> Option<FlowKey> {
    let (inside_port, remote_port) = match l4 {
        L4::Ports { sport, dport, .. } => (sport, dport),
        L4::Echo {
            request: true,
            ident,
        } => (ident, 0),
        _ => return None,
    };
    Some(FlowKey {
        proto: ip.proto,
        inside: ip.src,
        inside_port,
        remote: ip.dst,
        remote_port,
    })
}

#[inline]
pub(super) fn frag_key(ip: &Ip) -> FragKey {
    FragKey {
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        ident: ip.ident,
    }
}

/// The packet quoted by an ICMP error: (proto, src, src port or echo id, dst, dst port).
pub(super) struct Quoted {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

/// Reads the packet quoted by the ICMP error message `icmp_msg` (from its ICMP header on):
/// None unless its IPv4 header and the ports (or echo id) it needs are present.
pub(super) fn quoted(icmp_msg: &[u8]) -> Option<Quoted> {
    let inner = icmp_msg.get(icmp::HEADER_LEN..)?;
    let p = Ipv4Packet::new_quoted(inner).ok()?;
    let l4 = inner.get(p.header_len()..)?;
    let (sport, dport) = match p.protocol() {
        // RFC 792 quotes at least 8 bytes, but check: the ports must be there.
        proto::TCP if l4.len() >= 4 => {
            let t = TcpPacket::new_unchecked(l4);
            (t.src_port(), t.dst_port())
        }
        proto::UDP if l4.len() >= 4 => {
            let u = UdpPacket::new_unchecked(l4);
            (u.src_port(), u.dst_port())
        }
        // The echo identifier is the sender's "port" in a request, the receiver's in a reply
        // (NAT keys both by the inside host's id).
        proto::ICMP if l4.len() >= 6 => {
            let m = IcmpPacket::new_unchecked(l4);
            if m.msg_type() == icmp::types::ECHO_REPLY {
                (0, m.ident())
            } else {
                (m.ident(), 0)
            }
        }
        _ => return None,
    };
    Some(Quoted {
        proto: p.protocol(),
        src: p.src(),
        sport,
        dst: p.dst(),
        dport,
    })
}
