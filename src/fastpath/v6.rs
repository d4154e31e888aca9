//! IPv6 frames (SPEC 32, 33). Neighbour discovery goes to the control plane within the ARP
//! class's rate, and pings to the router within the ping rate; MLD is taken and counted, not
//! dropped (`Verdict::Mld`); UDP and TCP from the LAN to the router's addresses (DNS on its LAN
//! addresses) go to the control plane like pings, and DHCPv6 answers to an uplink's prefix
//! delegation client within the punt rate too; from the LAN a packet leaves through the
//! uplink whose prefix holds its source (`route::source6`), or gets "source address failed
//! ingress/egress policy" (type 1 code 5) when that uplink is down; from an uplink only the LAN
//! prefixes are reachable, and the rest of a provider prefix is destination unreachable (no
//! route) either way. A matching IPv6 policy, else the eligible IPv6 route for the
//! destination, may steer a LAN packet to another uplink that can carry its source
//! (`route::egress6`, SPEC 34). Then the common steps: hop limit (time exceeded), egress MTU
//! (packet too big: routers never fragment IPv6), next hop's MAC from the published neighbours.
//! On an uplink, probe replies (and errors quoting a probe) to the router go to the probe
//! thread before anything else (SPEC 34, 35).
//!
//! With NPTv6 (SPEC 33) the LAN has one internal prefix: a packet from it leaves by the first
//! uplink that is up with its source translated into that uplink's LAN /64, and a packet to an
//! uplink's LAN /64 has its destination translated back (`nat::npt6`). The decisions are taken
//! on the internal addresses, and the address is rewritten last, so an ICMPv6 error the router
//! sends quotes the packet as its sender sent it. An ICMPv6 error passing through has the
//! address it quotes translated the same way, so the host (or the far end) recognises its own
//! packet in it.
//!
//! GSO frames and partial checksums pass as they are: nothing the checksums cover changes (the
//! translation is checksum-neutral).

use std::net::{IpAddr, Ipv6Addr};

use super::{Env, FastPath, PuntClass, Verdict};
use crate::Iface;
use crate::counters::DropReason;
use crate::dhcp::pd;
use crate::route::egress6::{self, FlowTuple6};
use crate::route::source6::SourceRoute;
use crate::snapshot::Ipv6State;
use crate::wire::WireError;
use crate::wire::ethernet::{self, EthernetFrame};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::icmpv6::{self, codes, types};
use crate::wire::ipv6::{self, Ipv6Packet, next_header};
use crate::wire::ndisc;
use crate::wire::tcp::TcpPacket;
use crate::wire::udp;
use crate::wire::vnet::VnetHdr;

/// The fields of an IPv6 packet the decisions need, read once.
#[derive(Debug, Clone, Copy)]
struct Ip6 {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    /// Fixed header plus payload length.
    total: usize,
    /// Length of the fixed and extension headers: where the upper layer starts.
    hlen: usize,
    /// The ICMPv6 type, when the upper layer is ICMPv6 and its header is in this packet.
    icmp_type: Option<u8>,
    /// The upper layer's protocol (after the extension headers).
    proto: u8,
    /// TCP or UDP header length, for the wire size of a GSO frame.
    l4_hlen: usize,
    /// For TCP and UDP with their header here, the ports (0 otherwise): with `proto`, what
    /// IPv6 policies match (SPEC 34).
    ports: (u16, u16),
}

fn parse(buf: &[u8]) -> Result<Ip6, DropReason> {
    let wire = |e| match e {
        WireError::Truncated => DropReason::Truncated,
        _ => DropReason::BadIpHeader,
    };
    let p = Ipv6Packet::new_checked(buf).map_err(wire)?;
    let upper = p.upper_layer().map_err(wire)?;
    let whole = !upper.fragment.is_some_and(|f| f.is_non_initial());
    let l4 = p.payload().get(upper.offset..).unwrap_or(&[]);
    let icmp_type = (whole && upper.protocol == next_header::ICMPV6)
        .then(|| l4.first().copied())
        .flatten();
    let l4_hlen = match upper.protocol {
        next_header::TCP if whole => TcpPacket::new_checked(l4)
            .map_err(|_| DropReason::BadL4Header)?
            .header_len(),
        _ => udp::HEADER_LEN,
    };
    let ports = match upper.protocol {
        next_header::TCP | next_header::UDP if whole && l4.len() >= 4 => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        _ => (0, 0),
    };
    Ok(Ip6 {
        src: p.src(),
        dst: p.dst(),
        hop_limit: p.hop_limit(),
        total: ipv6::HEADER_LEN + p.payload_len(),
        hlen: ipv6::HEADER_LEN + upper.offset,
        icmp_type,
        proto: upper.protocol,
        l4_hlen,
        ports,
    })
}

/// What tells a probe's reply to the router's address `ip.dst` apart (SPEC 35): protocol, the
/// remote end and the router's port (ICMPv6 echo id, TCP/UDP destination port).
struct ProbeKey {
    proto: u8,
    remote: Ipv6Addr,
    port: u16,
    /// An ICMPv6 error quoting what left from `ip.dst`: the key is the quoted packet's.
    error: bool,
}

/// The probe key of a packet to the router on an uplink: an echo reply's (source, id), a TCP
/// or UDP packet's (source, destination port), or for an ICMPv6 error quoting a packet that
/// left from `ip.dst`, that packet's (destination, id or source port). The probe thread
/// matches the rest (sequence, checksum).
fn probe_key(packet: &[u8], ip: &Ip6) -> Option<ProbeKey> {
    let key = |proto, remote, port, error| ProbeKey {
        proto,
        remote,
        port,
        error,
    };
    if matches!(ip.proto, next_header::TCP | next_header::UDP) {
        return Some(key(ip.proto, ip.src, ip.ports.1, false));
    }
    // Set only for a whole ICMPv6 message: never a non-initial fragment's data.
    ip.icmp_type?;
    let icmp = packet.get(ip.hlen..ip.total)?;
    let m = icmpv6::Icmpv6Packet::new_checked(icmp).ok()?;
    match m.msg_type() {
        types::ECHO_REPLY => Some(key(next_header::ICMPV6, ip.src, m.ident(), false)),
        t if icmpv6::is_error(t) => {
            let q = Ipv6Packet::new_quoted(m.payload()).ok()?;
            let upper = q.upper_layer().ok()?;
            let l4 = q.payload().get(upper.offset..)?;
            if q.src() != ip.dst || upper.fragment.is_some() {
                return None;
            }
            match upper.protocol {
                next_header::ICMPV6 if l4.len() >= icmpv6::HEADER_LEN => {
                    let e = icmpv6::Icmpv6Packet::new_unchecked(l4);
                    (e.msg_type() == types::ECHO_REQUEST)
                        .then(|| key(next_header::ICMPV6, q.dst(), e.ident(), true))
                }
                p @ (next_header::TCP | next_header::UDP) if l4.len() >= 2 => {
                    Some(key(p, q.dst(), u16::from_be_bytes([l4[0], l4[1]]), true))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Where a packet from the LAN leaves: policies, routes, then its source (SPEC 32, 34); `None`
/// for a policy that makes it unreachable.
fn egress(v6: &Ipv6State, ip: &Ip6) -> Option<SourceRoute> {
    let flow = FlowTuple6 {
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        src_port: ip.ports.0,
        dst_port: ip.ports.1,
    };
    egress6::decide(&flow, &v6.uplinks, &v6.routes, &v6.policies).0
}

/// Never routed: unspecified, loopback, link-local (only ever for the router itself).
fn is_martian(ip: Ipv6Addr) -> bool {
    ip.is_unspecified() || ip.is_loopback() || ip.is_unicast_link_local()
}

/// Which address of the header an ICMPv6 error quotes.
#[derive(Clone, Copy)]
enum Quoted {
    Source,
    Destination,
}

/// In an ICMPv6 error passing NPTv6, the `which` address of the header it quotes, translated
/// by `map`: the error is about a packet that was translated the other way. Checksum-neutral
/// like the outer address, so the ICMPv6 checksum stays valid; an address that does not map
/// is left alone.
fn translate_quoted(
    packet: &mut Ipv6Packet<&mut [u8]>,
    ip: &Ip6,
    which: Quoted,
    map: impl Fn(Ipv6Addr) -> Option<Ipv6Addr>,
) {
    if !ip.icmp_type.is_some_and(icmpv6::is_error) {
        return;
    }
    // The quoted header starts after the error's own 8-byte header.
    let start = ip.hlen - ipv6::HEADER_LEN + icmpv6::HEADER_LEN;
    let Some(quoted) = packet
        .payload_mut()
        .get_mut(start..start + ipv6::HEADER_LEN)
    else {
        return;
    };
    let mut quoted = Ipv6Packet::new_unchecked(quoted);
    match which {
        Quoted::Source => {
            if let Some(a) = map(quoted.src()) {
                quoted.set_src(a);
            }
        }
        Quoted::Destination => {
            if let Some(a) = map(quoted.dst()) {
                quoted.set_dst(a);
            }
        }
    }
}

/// An ICMPv6 error to send about a dropped packet, and the drop it stands for.
struct ErrorMsg6 {
    msg_type: u8,
    code: u8,
    rest: u32,
    reason: DropReason,
}

impl ErrorMsg6 {
    const NO_ROUTE: ErrorMsg6 = ErrorMsg6 {
        msg_type: types::DEST_UNREACH,
        code: codes::NO_ROUTE,
        rest: 0,
        reason: DropReason::NoRoute,
    };
}

impl FastPath {
    /// An IPv6 frame (vnet header first) while IPv6 is on.
    pub(super) fn ipv6(
        &mut self,
        env: &Env,
        v6: &Ipv6State,
        buf: &mut [u8],
        ingress: Iface,
        scratch: &mut [u8],
        vh: &VnetHdr,
    ) -> Result<Verdict, DropReason> {
        let ip = parse(&buf[IP_OFFSET..])?;
        let dst_mac = EthernetFrame::new_unchecked(&buf[ETH_OFFSET..]).dst();
        let nd = ip.icmp_type.is_some_and(ndisc::is_ndisc);
        if ip.dst.is_multicast() || dst_mac.is_multicast() {
            // Solicitations, and advertisements answering DAD, to multicast groups; the rest
            // (MLD, mDNS, ...) is not routed.
            if nd && ip.dst.is_multicast() && dst_mac.is_multicast() {
                return self.punt_nd(env, v6, ingress, ip.src);
            }
            if ip.icmp_type.is_some_and(icmpv6::is_mld) {
                return Ok(Verdict::Mld);
            }
            return Err(DropReason::Broadcast);
        }
        let ours = match ingress {
            Iface::Lan => env.snap.lan.accepts(dst_mac),
            Iface::Uplink(_) => env.snap.iface_mac(ingress) == Some(dst_mac),
        };
        if !ours {
            return Err(DropReason::NotOurMac);
        }
        if v6.is_local(ip.dst) {
            if let Iface::Uplink(u) = ingress
                && let Some(k) = probe_key(&buf[IP_OFFSET..], &ip)
                && env
                    .snap
                    .is_probe_reply(u, k.proto, IpAddr::V6(k.remote), k.port)
            {
                return self.punt_probe(env.now, k.error);
            }
            return match ip.icmp_type {
                _ if nd => self.punt_nd(env, v6, ingress, ip.src),
                Some(types::ECHO_REQUEST) if self.pings.take(env.now) => {
                    Ok(Verdict::Punt(PuntClass::Other))
                }
                Some(types::ECHO_REQUEST) => Err(DropReason::PingRateLimited),
                // The DNS forwarder on the LAN addresses (SPEC 30); the control plane answers
                // or counts the rest, as for IPv4.
                None if ingress == Iface::Lan
                    && !ip.dst.is_unicast_link_local()
                    && matches!(ip.proto, next_header::UDP | next_header::TCP) =>
                {
                    self.punt_other(env.now)
                }
                // A DHCPv6 server's answer to an uplink's prefix delegation client.
                None if ingress != Iface::Lan
                    && ip.proto == next_header::UDP
                    && ip.ports == (pd::SERVER_PORT, pd::CLIENT_PORT) =>
                {
                    self.punt_other(env.now)
                }
                _ => Err(DropReason::LocalUnhandled),
            };
        }
        // NPTv6 inbound: decided on the internal destination, rewritten at the end.
        let inbound = match ingress {
            Iface::Uplink(_) => v6.npt6_inbound(ip.dst),
            Iface::Lan => None,
        };
        let dst = match inbound {
            Some(n) => n
                .to_internal(ip.dst)
                .ok_or(DropReason::Npt6Untranslatable)?,
            None => ip.dst,
        };
        if is_martian(ip.src) || is_martian(dst) {
            return Err(DropReason::Martian);
        }
        if !v6.is_lan(dst) && v6.uplinks.iter().any(|p| p.prefix.contains(dst)) {
            // Inside a provider prefix but in none of the LAN's /64s: nowhere, here or at
            // the ISP (which routes the whole prefix back to us).
            return self.error6(env, v6, buf, ingress, scratch, &ip, ErrorMsg6::NO_ROUTE);
        }
        let (egress, next_hop) = match ingress {
            _ if v6.is_lan(dst) => (Iface::Lan, dst),
            Iface::Uplink(_) => return Err(DropReason::UplinkTransit),
            Iface::Lan if !v6.is_lan(ip.src) => return Err(DropReason::Spoofed),
            Iface::Lan => match egress(v6, &ip) {
                // No uplink up, or a LAN source no uplink owns (the NPTv6 prefix while no
                // uplink is up).
                None | Some(SourceRoute::Foreign) => {
                    return self.error6(env, v6, buf, ingress, scratch, &ip, ErrorMsg6::NO_ROUTE);
                }
                Some(SourceRoute::Via(u)) => {
                    (Iface::Uplink(u), v6.next_hop(u).ok_or(DropReason::NoRoute)?)
                }
                Some(SourceRoute::SourcePolicyFailed(_)) => {
                    let msg = ErrorMsg6 {
                        msg_type: types::DEST_UNREACH,
                        code: codes::SOURCE_POLICY_FAILED,
                        rest: 0,
                        reason: DropReason::SourcePolicyFailed,
                    };
                    return self.error6(env, v6, buf, ingress, scratch, &ip, msg);
                }
            },
        };
        // NPTv6 outbound: the source's address in the egress uplink's prefix.
        let outbound = match egress {
            Iface::Uplink(u) => v6.npt6(u),
            Iface::Lan => None,
        };
        let src = match outbound {
            Some(n) => n
                .to_external(ip.src)
                .ok_or(DropReason::Npt6Untranslatable)?,
            None => ip.src,
        };
        if ip.hop_limit <= 1 {
            let msg = ErrorMsg6 {
                msg_type: types::TIME_EXCEEDED,
                code: codes::HOP_LIMIT_EXCEEDED,
                rest: 0,
                reason: DropReason::TtlExceeded,
            };
            return self.error6(env, v6, buf, ingress, scratch, &ip, msg);
        }
        let mtu = env.snap.iface_mtu(egress);
        let wire_size = if vh.is_gso() {
            ip.hlen + ip.l4_hlen + usize::from(vh.gso_size)
        } else {
            ip.total
        };
        if wire_size > mtu {
            let msg = ErrorMsg6 {
                msg_type: types::PACKET_TOO_BIG,
                code: 0,
                rest: mtu as u32,
                reason: DropReason::PacketTooBig,
            };
            return self.error6(env, v6, buf, ingress, scratch, &ip, msg);
        }
        let neighbour = env.neighbours.lookup6(egress, next_hop);
        if neighbour.is_none() {
            // Held by the control thread while neighbour discovery resolves it.
            self.punt_other(env.now)?;
        }
        let src_mac = env.snap.iface_mac(egress).ok_or(DropReason::NoRoute)?;
        let mut packet = Ipv6Packet::new_unchecked(&mut buf[IP_OFFSET..IP_OFFSET + ip.total]);
        packet.decrement_hop_limit();
        if let Some(n) = outbound {
            packet.set_src(src);
            translate_quoted(&mut packet, &ip, Quoted::Destination, |a| n.to_external(a));
        }
        if let Some(n) = inbound {
            packet.set_dst(dst);
            translate_quoted(&mut packet, &ip, Quoted::Source, |a| n.to_internal(a));
        }
        let mut eth = EthernetFrame::new_unchecked(&mut buf[ETH_OFFSET..]);
        eth.set_src(src_mac);
        match neighbour {
            Some(mac) => {
                eth.set_dst(mac);
                Ok(Verdict::Forward { egress })
            }
            None => Ok(Verdict::NeedsNeighbour {
                egress,
                next_hop: IpAddr::V6(next_hop),
            }),
        }
    }

    /// Writes an ICMPv6 error about the packet in `buf` into `scratch`, back to its sender
    /// through the interface it came from, where RFC 4443 §2.4 (e) allows one, rate limited.
    #[allow(clippy::too_many_arguments)]
    fn error6(
        &mut self,
        env: &Env,
        v6: &Ipv6State,
        buf: &[u8],
        ingress: Iface,
        scratch: &mut [u8],
        ip: &Ip6,
        msg: ErrorMsg6,
    ) -> Result<Verdict, DropReason> {
        let reason = msg.reason;
        let offending = &buf[IP_OFFSET..IP_OFFSET + ip.total];
        if !icmpv6::may_send_error_about(msg.msg_type, offending) || !self.errors.take(env.now) {
            return Err(reason);
        }
        let (Some(src), Some(my_mac)) = (v6.iface_addr(ingress), env.snap.iface_mac(ingress))
        else {
            return Err(reason);
        };
        let repr = icmpv6::ErrorRepr {
            src,
            dst: ip.src,
            msg_type: msg.msg_type,
            code: msg.code,
            rest_of_header: msg.rest,
        };
        let Ok(n) = icmpv6::build_error(&mut scratch[IP_OFFSET..], &repr, offending) else {
            return Err(reason);
        };
        if VnetHdr::default().write(scratch).is_err() {
            return Err(reason);
        }
        let sender_mac = EthernetFrame::new_unchecked(&buf[ETH_OFFSET..]).src();
        let mut eth = EthernetFrame::new_unchecked(&mut scratch[ETH_OFFSET..]);
        eth.set_dst(sender_mac);
        eth.set_src(my_mac);
        eth.set_ethertype(ethernet::ethertype::IPV6);
        Ok(Verdict::Reply {
            egress: ingress,
            len: IP_OFFSET + n,
            reason,
        })
    }
}
