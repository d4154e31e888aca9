//! The per-packet path: parse → route → NAT → rewrite, in place. No I/O, no allocation, no
//! panic on any input: every frame ends as exactly one `Verdict`.

use std::net::Ipv4Addr;

use crate::clock::Instant;
use crate::counters::DropReason;
use crate::nat::{FlowKey, FragKey, FragTable, NatError, NatTable, Translation};
use crate::route::{Decision, FlowTuple};
use crate::snapshot::Snapshot;
use crate::wire::checksum;
use crate::wire::ethernet::{self, EthernetFrame};
use crate::wire::field::{set_u16, set_u32, try_u16_at, try_u32_at};
use crate::wire::icmp::{self, codes, types};
use crate::wire::ipv4::{self, Ipv4Packet, proto};
use crate::wire::tcp::{self, TcpPacket};
use crate::wire::udp::{self, UdpPacket};
use crate::wire::vnet::{self, VnetHdr};
use crate::{Iface, UplinkId};

/// Offset of the Ethernet header in a frame buffer (after the virtio_net_hdr).
pub const ETH_OFFSET: usize = vnet::LEN;
/// Offset of the IPv4 header in a frame buffer.
pub const IP_OFFSET: usize = vnet::LEN + ethernet::HEADER_LEN;
/// Size of the scratch buffer `process` may write an ICMP error into.
pub const SCRATCH_LEN: usize = IP_OFFSET + 576;

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the frame, rewritten in place, on `egress`.
    Forward {
        egress: Iface,
    },
    /// Like `Forward`, but the packet (DF clear) is larger than the egress `mtu`: send it as
    /// IPv4 fragments.
    Fragment {
        egress: Iface,
        mtu: usize,
    },
    /// Drop the frame for `reason` and send the ICMP error written to `scratch[..len]` on `egress`.
    Reply {
        egress: Iface,
        len: usize,
        reason: DropReason,
    },
    /// Hand the frame to the control plane (ARP, the router's own traffic, probe replies).
    Punt,
    /// Rewritten except its destination MAC: the control plane resolves `next_hop` and sends it.
    Resolve {
        egress: Iface,
        next_hop: Ipv4Addr,
    },
    Drop(DropReason),
}

/// Everything the fast path reads, loaded once per batch.
pub struct Env<'a> {
    pub snap: &'a Snapshot,
    pub nat: &'a NatTable,
    pub frags: &'a FragTable,
    pub now: Instant,
}

/// Per-worker state of the fast path: its rate limiters.
pub struct FastPath {
    /// ICMP errors (and RSTs) the router generates, like the kernel's icmp_msgs_per_sec.
    errors: RateLimit,
    /// Pings to the router from the Internet handed to the control plane.
    pings: RateLimit,
}

impl Default for FastPath {
    fn default() -> Self {
        FastPath {
            errors: RateLimit::per_second(1000),
            pings: RateLimit::per_second(200),
        }
    }
}

/// At most `per_sec` events per second, refilled whole once a second (burst as large).
struct RateLimit {
    per_sec: u32,
    tokens: u32,
    refill: Instant,
}

impl RateLimit {
    fn per_second(per_sec: u32) -> RateLimit {
        RateLimit {
            per_sec,
            tokens: per_sec,
            refill: Instant::ZERO,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        if now.saturating_since(self.refill).as_secs() >= 1 {
            self.tokens = self.per_sec;
            self.refill = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// The IPv4 header fields the decisions need, read once.
#[derive(Clone, Copy)]
struct Ip {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    hlen: usize,
    total: usize,
    df: bool,
    more_frags: bool,
    first_frag: bool,
    ident: u16,
}

/// The transport header, as far as routing and NAT care.
#[derive(Clone, Copy)]
enum L4 {
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

/// How a forwarded packet is translated.
#[derive(Clone, Copy)]
enum Nat {
    None,
    /// Outbound with an existing session, or a new one to create on commit.
    Source(Translation),
    Create(FlowKey, UplinkId),
    /// Inbound: restore the inside endpoint.
    Dest(Translation),
    /// ICMP errors: translate the quoted packet too.
    ErrorOut(Translation),
    ErrorIn(Translation),
}

impl FastPath {
    /// Decides and rewrites one frame: `frame` is a virtio_net_hdr followed by an Ethernet frame.
    pub fn process(
        &mut self,
        env: &Env,
        frame: &mut [u8],
        ingress: Iface,
        scratch: &mut [u8],
    ) -> Verdict {
        match self.decide(env, frame, ingress, scratch) {
            Ok(v) => v,
            Err(d) => Verdict::Drop(d),
        }
    }

    fn decide(
        &mut self,
        env: &Env,
        frame: &mut [u8],
        ingress: Iface,
        scratch: &mut [u8],
    ) -> Result<Verdict, DropReason> {
        if frame.len() < IP_OFFSET {
            return Err(DropReason::Truncated);
        }
        let vh = VnetHdr::parse(frame).map_err(|_| DropReason::BadVnetHeader)?;
        let snap = env.snap;
        let my_mac = snap.iface_mac(ingress).ok_or(DropReason::NotOurMac)?;
        let eth = EthernetFrame::new_unchecked(&frame[ETH_OFFSET..]);
        if eth.ethertype() == ethernet::ethertype::ARP {
            return Ok(Verdict::Punt);
        }
        let dst_mac = eth.dst();
        if dst_mac != my_mac {
            return Err(if dst_mac.is_multicast() {
                DropReason::Broadcast
            } else {
                DropReason::NotOurMac
            });
        }
        if eth.ethertype() != ethernet::ethertype::IPV4 {
            return Err(DropReason::NotIpv4);
        }
        let ip = parse_ip(&frame[IP_OFFSET..])?;
        check_martian(&ip)?;
        let l4 = parse_l4(&frame[IP_OFFSET..IP_OFFSET + ip.total], &ip)?;
        match ingress {
            Iface::Lan => self.lan_ingress(env, frame, &vh, &ip, l4, scratch),
            Iface::Uplink(u) => self.uplink_ingress(env, frame, &vh, &ip, l4, u, scratch),
        }
    }

    fn lan_ingress(
        &mut self,
        env: &Env,
        frame: &mut [u8],
        vh: &VnetHdr,
        ip: &Ip,
        l4: L4,
        scratch: &mut [u8],
    ) -> Result<Verdict, DropReason> {
        let snap = env.snap;
        let lan = snap.lan.address;
        if !lan.contains(ip.src) || ip.src == lan.broadcast() || ip.src == lan.network().addr() {
            return Err(DropReason::Spoofed);
        }
        if ip.dst == lan.broadcast() {
            return Err(DropReason::Broadcast);
        }
        if snap.is_local(ip.dst) {
            return Ok(Verdict::Punt);
        }
        let key = outbound_key(ip, l4);
        let (flags, ack) = match l4 {
            L4::Ports { flags, ack, .. } => (flags, ack),
            _ => (0, None),
        };
        // One lookup per packet of an established flow: it also refreshes the session.
        if let Some(key) = key
            && let Some(t) = env.nat.lookup_outbound(&key, env.now, flags, ack)
        {
            let up = snap.uplink(t.uplink).ok_or(DropReason::NoRoute)?;
            if up.carrier {
                let nh = up.next_hop;
                return self.forward(
                    env,
                    frame,
                    vh,
                    ip,
                    l4,
                    Iface::Lan,
                    Iface::Uplink(t.uplink),
                    nh,
                    Nat::Source(t),
                    scratch,
                );
            }
        }
        let (sport, dport) = match l4 {
            L4::Ports { sport, dport, .. } => (sport, dport),
            L4::Echo { ident, .. } => (ident, 0),
            _ => (0, 0),
        };
        let flow = FlowTuple {
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            src_port: sport,
            dst_port: dport,
        };
        match snap.routes.lookup(&flow) {
            Decision::Local => Ok(Verdict::Punt),
            Decision::Lan => self.forward(
                env,
                frame,
                vh,
                ip,
                l4,
                Iface::Lan,
                Iface::Lan,
                ip.dst,
                Nat::None,
                scratch,
            ),
            Decision::Unreachable => self.icmp_error(
                env,
                frame,
                ip,
                Iface::Lan,
                types::DEST_UNREACH,
                codes::NET_UNREACH,
                0,
                DropReason::NoRoute,
                scratch,
            ),
            Decision::Uplink {
                uplink, next_hop, ..
            } => {
                let up = snap.uplink(uplink).ok_or(DropReason::NoRoute)?;
                let nat = if !up.translates(ip.src) {
                    Nat::None
                } else {
                    match (l4, key) {
                        (L4::IcmpError, _) => Nat::ErrorOut(error_out_session(env, frame, ip)?),
                        (L4::Fragment, _) => {
                            let fk = frag_key(ip.src, ip.dst, ip);
                            Nat::Source(
                                env.frags
                                    .lookup(&fk, env.now)
                                    .ok_or(DropReason::FragmentWithoutState)?,
                            )
                        }
                        (_, Some(key)) => Nat::Create(key, uplink),
                        (_, None) => return Err(DropReason::NatUnsupported),
                    }
                };
                let egress = match nat {
                    Nat::ErrorOut(t) => Iface::Uplink(t.uplink),
                    _ => Iface::Uplink(uplink),
                };
                self.forward(
                    env,
                    frame,
                    vh,
                    ip,
                    l4,
                    Iface::Lan,
                    egress,
                    next_hop,
                    nat,
                    scratch,
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn uplink_ingress(
        &mut self,
        env: &Env,
        frame: &mut [u8],
        vh: &VnetHdr,
        ip: &Ip,
        l4: L4,
        u: UplinkId,
        scratch: &mut [u8],
    ) -> Result<Verdict, DropReason> {
        let up = env.snap.uplink(u).ok_or(DropReason::UplinkTransit)?;
        if ip.dst != up.address.addr() {
            // Replies to what this uplink does not translate (and anything else for those
            // hosts, as a router does) go to the LAN untranslated; no other transit (SPEC 10).
            if env.snap.is_lan_host(ip.dst) && !up.translates(ip.dst) {
                return self.forward(
                    env,
                    frame,
                    vh,
                    ip,
                    l4,
                    Iface::Uplink(u),
                    Iface::Lan,
                    ip.dst,
                    Nat::None,
                    scratch,
                );
            }
            return Err(if ip.dst == up.address.broadcast() {
                DropReason::Broadcast
            } else {
                DropReason::UplinkTransit
            });
        }
        let nat = env.nat;
        let t = match l4 {
            L4::Ports {
                sport,
                dport,
                flags,
                ..
            } => nat.lookup_inbound(u, ip.proto, dport, ip.src, sport, env.now, flags),
            L4::Echo {
                request: false,
                ident,
            } => nat.lookup_inbound(u, proto::ICMP, ident, ip.src, 0, env.now, 0),
            L4::IcmpError => {
                match error_in_session(env, frame, ip, u) {
                    Some(t) => {
                        return self.forward(
                            env,
                            frame,
                            vh,
                            ip,
                            l4,
                            Iface::Uplink(u),
                            Iface::Lan,
                            t.inside,
                            Nat::ErrorIn(t),
                            scratch,
                        );
                    }
                    // An error about one of the router's own packets (a probe), or unsolicited.
                    None => {
                        let about_probe = quoted(&frame[IP_OFFSET + ip.hlen..IP_OFFSET + ip.total])
                            .is_some_and(|q| env.snap.is_probe_target(u, q.dst));
                        return if about_probe {
                            Ok(Verdict::Punt)
                        } else {
                            Err(DropReason::NatUnsolicited)
                        };
                    }
                }
            }
            L4::Fragment => {
                let fk = frag_key(ip.src, ip.dst, ip);
                Some(
                    env.frags
                        .lookup(&fk, env.now)
                        .ok_or(DropReason::FragmentWithoutState)?,
                )
            }
            L4::Echo { request: true, .. } | L4::Other => None,
        };
        match t {
            Some(t) => self.forward(
                env,
                frame,
                vh,
                ip,
                l4,
                Iface::Uplink(u),
                Iface::Lan,
                t.inside,
                Nat::Dest(t),
                scratch,
            ),
            // Pings to the router (rate limited) and what may answer a probe (it comes from a
            // probe's target) go to the control plane; the rest is unsolicited. Filtering here
            // keeps a scan or flood from filling the punt queue and starving probe replies.
            None if matches!(l4, L4::Echo { request: true, .. }) => {
                if self.pings.take(env.now) {
                    Ok(Verdict::Punt)
                } else {
                    Err(DropReason::PingRateLimited)
                }
            }
            None if env.snap.is_probe_target(u, ip.src) => Ok(Verdict::Punt),
            None => Err(DropReason::NatUnsolicited),
        }
    }

    /// Common forwarding steps once the egress is known: TTL, MTU, NAT commit, rewrite.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        env: &Env,
        frame: &mut [u8],
        vh: &VnetHdr,
        ip: &Ip,
        l4: L4,
        ingress: Iface,
        egress: Iface,
        next_hop: Ipv4Addr,
        nat: Nat,
        scratch: &mut [u8],
    ) -> Result<Verdict, DropReason> {
        let snap = env.snap;
        if ip.ttl <= 1 {
            return self.icmp_error(
                env,
                frame,
                ip,
                ingress,
                types::TIME_EXCEEDED,
                codes::TTL_EXCEEDED,
                0,
                DropReason::TtlExceeded,
                scratch,
            );
        }
        let mtu = snap.iface_mtu(egress);
        let wire_size = if vh.is_gso() {
            let l4h = match l4 {
                L4::Ports { hlen, .. } => hlen,
                _ => 8,
            };
            ip.hlen + l4h + vh.gso_size as usize
        } else {
            ip.total
        };
        // Without DF (and not a GSO frame, which the kernel segments) the packet is
        // fragmented on the way out, as the kernel would.
        let fragment = wire_size > mtu && !ip.df && !vh.is_gso();
        if wire_size > mtu && !fragment {
            if !ip.df {
                return Err(DropReason::TooBig);
            }
            return self.icmp_error(
                env,
                frame,
                ip,
                ingress,
                types::DEST_UNREACH,
                codes::FRAG_NEEDED,
                mtu as u32 & 0xffff,
                DropReason::FragNeeded,
                scratch,
            );
        }
        let (flags, ack) = match l4 {
            L4::Ports { flags, ack, .. } => (flags, ack),
            _ => (0, None),
        };
        let nat = match nat {
            Nat::Create(_, _) if ip.proto == proto::TCP && flags & tcp::flags::SYN == 0 => {
                return self.tcp_reset(env, frame, ip, l4, scratch);
            }
            Nat::Create(key, uplink) => {
                let t = env
                    .nat
                    .create_outbound(&key, uplink, env.now, flags, ack)
                    .map_err(|e| match e {
                        NatError::TableFull => DropReason::NatTableFull,
                        NatError::PortsExhausted | NatError::NoAddress => {
                            DropReason::NatPortsExhausted
                        }
                    })?;
                // A session that raced in on another uplink (its uplink going down) must not
                // leave here with that uplink's address.
                if t.uplink != uplink {
                    return Err(DropReason::NoRoute);
                }
                Nat::Source(t)
            }
            other => other,
        };
        // The first fragment of a translated datagram tells the rest how to follow.
        if ip.more_frags
            && ip.first_frag
            && let Nat::Source(t) | Nat::Dest(t) = nat
        {
            env.frags.insert(frag_key(ip.src, ip.dst, ip), t, env.now);
        }
        let partial = vh.needs_csum() && vh.csum_start as usize == ethernet::HEADER_LEN + ip.hlen;
        let ipb = &mut frame[IP_OFFSET..IP_OFFSET + ip.total];
        match nat {
            Nat::None | Nat::Create(..) => {}
            Nat::Source(t) => {
                rewrite_endpoint(ipb, ip, l4, Side::Src, t.outside, t.outside_port, partial)
            }
            Nat::Dest(t) => {
                rewrite_endpoint(ipb, ip, l4, Side::Dst, t.inside, t.inside_port, partial)
            }
            Nat::ErrorOut(t) => {
                translate_error(ipb, ip, Side::Src, t.outside, Side::Dst, t.outside_port);
                clear_needs_csum(frame, vh);
            }
            Nat::ErrorIn(t) => {
                translate_error(ipb, ip, Side::Dst, t.inside, Side::Src, t.inside_port);
                clear_needs_csum(frame, vh);
            }
        }
        let ipb = &mut frame[IP_OFFSET..IP_OFFSET + ip.total];
        decrement_ttl(ipb);
        if let L4::Ports { flags, hlen, .. } = l4
            && ip.proto == proto::TCP
            && flags & tcp::flags::SYN != 0
            && let Some(clamp) = mss_clamp(snap, ingress, egress)
        {
            clamp_mss(&mut ipb[ip.hlen..ip.hlen + hlen], clamp, partial);
        }
        let src_mac = snap.iface_mac(egress).ok_or(DropReason::NoRoute)?;
        let mut eth = EthernetFrame::new_unchecked(&mut frame[ETH_OFFSET..]);
        eth.set_src(src_mac);
        match snap.neighbour(egress, next_hop) {
            Some(mac) => {
                eth.set_dst(mac);
                Ok(if fragment {
                    Verdict::Fragment { egress, mtu }
                } else {
                    Verdict::Forward { egress }
                })
            }
            None => Ok(Verdict::Resolve { egress, next_hop }),
        }
    }

    /// Writes an ICMP error about the packet in `frame` into `scratch`, addressed back to its
    /// sender through the interface it came from, rate limited.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        env: &Env,
        frame: &[u8],
        ip: &Ip,
        ingress: Iface,
        msg_type: u8,
        code: u8,
        rest: u32,
        reason: DropReason,
        scratch: &mut [u8],
    ) -> Result<Verdict, DropReason> {
        // Never answer an ICMP error with an error, nor a non-first fragment (RFC 1812 4.3.2.7).
        if matches!(parse_l4_kind(frame, ip), L4::IcmpError | L4::Fragment)
            || !self.errors.take(env.now)
        {
            return Err(reason);
        }
        let Some(src) = env.snap.iface_addr(ingress) else {
            return Err(reason);
        };
        let offending = &frame[IP_OFFSET..IP_OFFSET + ip.total];
        let Ok(n) = icmp::build_error(
            &mut scratch[IP_OFFSET..],
            src,
            ip.src,
            msg_type,
            code,
            rest,
            offending,
        ) else {
            return Err(reason);
        };
        self.reply_frame(env, frame, ingress, n, reason, scratch)
    }

    /// Answers a TCP segment of no known flow with a RST from its destination (RFC 793: seq =
    /// the segment's ACK), so the LAN host drops a connection whose uplink died instead of
    /// retransmitting into the void. Segments without ACK, and RSTs, are just dropped.
    fn tcp_reset(
        &mut self,
        env: &Env,
        frame: &[u8],
        ip: &Ip,
        l4: L4,
        scratch: &mut [u8],
    ) -> Result<Verdict, DropReason> {
        let reason = DropReason::NatNoFlow;
        let L4::Ports {
            sport,
            dport,
            flags,
            ack: Some(ack),
            ..
        } = l4
        else {
            return Err(reason);
        };
        if flags & tcp::flags::RST != 0 || !self.errors.take(env.now) {
            return Err(reason);
        }
        let Ok(n) = tcp::build_segment(
            &mut scratch[IP_OFFSET..],
            ip.dst,
            ip.src,
            dport,
            sport,
            ack,
            0,
            tcp::flags::RST,
            0,
            64,
            0,
        ) else {
            return Err(reason);
        };
        self.reply_frame(env, frame, Iface::Lan, n, reason, scratch)
    }

    /// Completes a reply built at `scratch[IP_OFFSET..IP_OFFSET + n]`: zero vnet header and an
    /// Ethernet header back to the sender of `frame`.
    fn reply_frame(
        &mut self,
        env: &Env,
        frame: &[u8],
        ingress: Iface,
        n: usize,
        reason: DropReason,
        scratch: &mut [u8],
    ) -> Result<Verdict, DropReason> {
        let Some(my_mac) = env.snap.iface_mac(ingress) else {
            return Err(reason);
        };
        if VnetHdr::default().write(scratch).is_err() {
            return Err(reason);
        }
        let sender_mac = EthernetFrame::new_unchecked(&frame[ETH_OFFSET..]).src();
        let mut eth = EthernetFrame::new_unchecked(&mut scratch[ETH_OFFSET..]);
        eth.set_dst(sender_mac);
        eth.set_src(my_mac);
        eth.set_ethertype(ethernet::ethertype::IPV4);
        Ok(Verdict::Reply {
            egress: ingress,
            len: IP_OFFSET + n,
            reason,
        })
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

#[inline]
fn parse_ip(buf: &[u8]) -> Result<Ip, DropReason> {
    let p = Ipv4Packet::new_checked(buf).map_err(|e| match e {
        crate::wire::WireError::Truncated => DropReason::Truncated,
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

fn check_martian(ip: &Ip) -> Result<(), DropReason> {
    let s = ip.src.octets();
    let bad_src = s[0] == 0 || s[0] == 127 || s[0] >= 224;
    let d = ip.dst.octets();
    if bad_src || d[0] == 0 || d[0] == 127 || (240..255).contains(&d[0]) {
        return Err(DropReason::Martian);
    }
    if ip.dst.is_multicast() || ip.dst.is_broadcast() {
        return Err(DropReason::Broadcast);
    }
    Ok(())
}

/// Parses the transport header of the IP packet `pkt` (header included, padding excluded).
#[inline]
fn parse_l4(pkt: &[u8], ip: &Ip) -> Result<L4, DropReason> {
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
                hlen: 8,
            })
        }
        proto::ICMP => {
            let i = icmp::IcmpPacket::new_checked(payload).map_err(|_| DropReason::BadL4Header)?;
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
fn parse_l4_kind(frame: &[u8], ip: &Ip) -> L4 {
    frame
        .get(IP_OFFSET..IP_OFFSET + ip.total)
        .and_then(|p| parse_l4(p, ip).ok())
        .unwrap_or(L4::Other)
}

fn outbound_key(ip: &Ip, l4: L4) -> Option<FlowKey> {
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

fn frag_key(src: Ipv4Addr, dst: Ipv4Addr, ip: &Ip) -> FragKey {
    FragKey {
        src,
        dst,
        proto: ip.proto,
        ident: ip.ident,
    }
}

/// The packet quoted by an ICMP error: (proto, src, src port or echo id, dst, dst port).
struct Quoted {
    proto: u8,
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
}

fn quoted(icmp_msg: &[u8]) -> Option<Quoted> {
    let inner = icmp_msg.get(8..)?;
    let p = Ipv4Packet::new_quoted(inner).ok()?;
    let l4 = inner.get(p.header_len()..)?;
    let (sport, dport) = match p.protocol() {
        proto::TCP | proto::UDP => (try_u16_at(l4, 0)?, try_u16_at(l4, 2)?),
        proto::ICMP => (try_u16_at(l4, 4)?, 0),
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

/// An ICMP error from the LAN about an inbound packet of a session (e.g. port unreachable).
fn error_out_session(env: &Env, frame: &[u8], ip: &Ip) -> Result<Translation, DropReason> {
    let msg = &frame[IP_OFFSET + ip.hlen..IP_OFFSET + ip.total];
    let q = quoted(msg).ok_or(DropReason::BadL4Header)?;
    let key = FlowKey {
        proto: q.proto,
        inside: q.dst,
        inside_port: q.dport,
        remote: q.src,
        remote_port: q.sport,
    };
    env.nat
        .peek_outbound(&key)
        .ok_or(DropReason::NatUnsolicited)
}

/// An ICMP error from the Internet about an outbound packet of a session.
fn error_in_session(env: &Env, frame: &[u8], ip: &Ip, u: UplinkId) -> Option<Translation> {
    let msg = &frame[IP_OFFSET + ip.hlen..IP_OFFSET + ip.total];
    let q = quoted(msg)?;
    env.nat.peek_inbound(u, q.proto, q.sport, q.dst, q.dport)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

impl Side {
    fn addr_offset(self) -> usize {
        match self {
            Side::Src => 12,
            Side::Dst => 16,
        }
    }
    fn port_offset(self) -> usize {
        match self {
            Side::Src => 0,
            Side::Dst => 2,
        }
    }
}

/// Rewrites one endpoint (address and port or echo id) of the IP packet `ipb` with incremental
/// checksum updates (RFC 1624). With `partial`, the L4 checksum field holds the uncomplemented
/// pseudo-header sum (virtio NEEDS_CSUM): only the address enters it, as the kernel does.
fn rewrite_endpoint(
    ipb: &mut [u8],
    ip: &Ip,
    l4: L4,
    side: Side,
    addr: Ipv4Addr,
    port: u16,
    partial: bool,
) {
    let old = set_addr(ipb, side.addr_offset(), addr);
    let new = u32::from(addr);
    let l4b = &mut ipb[ip.hlen..];
    match (ip.proto, l4) {
        (proto::TCP, L4::Ports { .. }) => {
            update_l4(l4b, 16, side.port_offset(), old, new, port, partial, false)
        }
        (proto::UDP, L4::Ports { .. }) => {
            update_l4(l4b, 6, side.port_offset(), old, new, port, partial, true)
        }
        (proto::ICMP, L4::Echo { .. }) => {
            if let Some(old_id) = try_u16_at(l4b, 4) {
                set_u16(l4b, 4, port);
                if !partial && let Some(c) = try_u16_at(l4b, 2) {
                    set_u16(l4b, 2, checksum::update16(c, old_id, port));
                }
            }
        }
        // Non-first fragments: the transport header (and its checksum) is in the first one.
        _ => {}
    }
}

/// Sets the address at `off` in the IPv4 header and fixes the header checksum; returns the old one.
fn set_addr(ipb: &mut [u8], off: usize, addr: Ipv4Addr) -> u32 {
    let old = try_u32_at(ipb, off).unwrap_or(0);
    let new = u32::from(addr);
    set_u32(ipb, off, new);
    if let Some(c) = try_u16_at(ipb, 10) {
        set_u16(ipb, 10, checksum::update32(c, old, new));
    }
    old
}

#[allow(clippy::too_many_arguments)]
fn update_l4(
    l4b: &mut [u8],
    csum_off: usize,
    port_off: usize,
    old_addr: u32,
    new_addr: u32,
    port: u16,
    partial: bool,
    udp: bool,
) {
    let Some(old_port) = try_u16_at(l4b, port_off) else {
        return;
    };
    set_u16(l4b, port_off, port);
    let Some(c) = try_u16_at(l4b, csum_off) else {
        return;
    };
    if partial {
        set_u16(
            l4b,
            csum_off,
            checksum::update_partial32(c, old_addr, new_addr),
        );
        return;
    }
    if udp && c == 0 {
        // No UDP checksum: stays absent.
        return;
    }
    let mut c = checksum::update32(c, old_addr, new_addr);
    c = checksum::update16(c, old_port, port);
    if udp && c == 0 {
        c = 0xffff;
    }
    set_u16(l4b, csum_off, c);
}

/// Translates an ICMP error: the outer address on `outer`, and the quoted packet's matching
/// endpoint on `inner` (address and port/echo id), then recomputes the ICMP checksum whole.
fn translate_error(ipb: &mut [u8], ip: &Ip, outer: Side, addr: Ipv4Addr, inner: Side, port: u16) {
    set_addr(ipb, outer.addr_offset(), addr);
    let msg = &mut ipb[ip.hlen..];
    if let Some(inner_ip) = msg.get_mut(8..)
        && let Some(ihl) = inner_ip.first().map(|b| ((b & 0x0f) as usize) * 4)
        && ihl >= ipv4::MIN_HEADER_LEN
        && inner_ip.len() >= ihl
    {
        let inner_proto = inner_ip[9];
        let old = set_addr(inner_ip, inner.addr_offset(), addr);
        let new = u32::from(addr);
        let q = &mut inner_ip[ihl..];
        match inner_proto {
            proto::TCP => update_l4(q, 16, inner.port_offset(), old, new, port, false, false),
            proto::UDP => update_l4(q, 6, inner.port_offset(), old, new, port, false, true),
            proto::ICMP => set_u16(q, 4, port),
            _ => {}
        }
    }
    set_u16(msg, 2, 0);
    let c = checksum::checksum(msg);
    set_u16(msg, 2, c);
}

/// After a full checksum recompute the kernel must not "complete" it again.
fn clear_needs_csum(frame: &mut [u8], vh: &VnetHdr) {
    if vh.needs_csum() {
        let mut h = *vh;
        h.flags &= !vnet::flags::NEEDS_CSUM;
        // The header was parsed from this buffer, so it fits.
        let _ = h.write(frame);
    }
}

fn decrement_ttl(ipb: &mut [u8]) {
    if let (Some(word), Some(c)) = (try_u16_at(ipb, 8), try_u16_at(ipb, 10)) {
        let new = word.wrapping_sub(0x0100);
        set_u16(ipb, 8, new);
        set_u16(ipb, 10, checksum::update16(c, word, new));
    }
}

fn mss_clamp(snap: &Snapshot, ingress: Iface, egress: Iface) -> Option<u16> {
    let clamp_of = |i: Iface| match i {
        Iface::Uplink(u) => snap.uplink(u).and_then(|u| u.mss_clamp),
        Iface::Lan => None,
    };
    match (clamp_of(ingress), clamp_of(egress)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Lowers the MSS option of a SYN to `clamp` (Cisco "ip tcp adjust-mss").
fn clamp_mss(tcp_hdr: &mut [u8], clamp: u16, partial: bool) {
    let Some(off) = TcpPacket::new_checked(&*tcp_hdr)
        .ok()
        .and_then(|t| t.mss_offset())
    else {
        return;
    };
    let Some(mss) = try_u16_at(tcp_hdr, off) else {
        return;
    };
    if mss <= clamp {
        return;
    }
    set_u16(tcp_hdr, off, clamp);
    if !partial && let Some(c) = try_u16_at(tcp_hdr, 16) {
        set_u16(tcp_hdr, 16, checksum::update16(c, mss, clamp));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::nat::NatParams;
    use crate::prefix::Ipv4Prefix;
    use crate::route::{Health, Interfaces, RouteTable, StaticRoute, UplinkIf};
    use crate::snapshot::{LanState, UplinkState};
    use crate::wire::ethernet::MacAddr;

    const LAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const PE_A: MacAddr = MacAddr([2, 0, 0, 0, 1, 0xa]);
    const HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 9, 9]);
    const HOST: [u8; 4] = [192, 168, 0, 10];
    const SERVER: [u8; 4] = [172, 18, 0, 6];
    const OUTSIDE: [u8; 4] = [172, 16, 1, 1];

    fn p(s: &str) -> Ipv4Prefix {
        s.parse().unwrap()
    }

    struct World {
        snap: Snapshot,
        nat: NatTable,
        frags: FragTable,
    }

    fn world(mtu_a: usize) -> World {
        let ifaces = Interfaces {
            lan: p("192.168.0.1/24"),
            uplinks: vec![
                UplinkIf {
                    name: "isp-a".into(),
                    address: p("172.16.1.1/30"),
                    next_hop: Ipv4Addr::new(172, 16, 1, 2),
                },
                UplinkIf {
                    name: "isp-b".into(),
                    address: p("172.17.3.1/30"),
                    next_hop: Ipv4Addr::new(172, 17, 3, 2),
                },
            ],
        };
        let routes = vec![StaticRoute {
            name: "default".into(),
            prefix: p("0.0.0.0/0"),
            uplink: UplinkId(0),
            next_hop: Ipv4Addr::new(172, 16, 1, 2),
            distance: 10,
            weight: 1,
            track: None,
        }];
        let health = Health {
            carrier: vec![true, true],
            tracks: vec![],
        };
        let uplink = |name: &str, addr: &str, nh: [u8; 4], mac: MacAddr, mtu: usize| UplinkState {
            name: name.into(),
            address: p(addr),
            mac,
            next_hop: nh.into(),
            next_hop_mac: Some(PE_A),
            mtu,
            mss_clamp: Some(1400),
            nat: true,
            nat_sources: vec![],
            carrier: true,
        };
        World {
            snap: Snapshot {
                routes: RouteTable::build(ifaces, routes, vec![], &health),
                lan: LanState {
                    address: p("192.168.0.1/24"),
                    mac: LAN_MAC,
                    mtu: 1500,
                },
                uplinks: vec![
                    uplink("isp-a", "172.16.1.1/30", [172, 16, 1, 2], A_MAC, mtu_a),
                    uplink(
                        "isp-b",
                        "172.17.3.1/30",
                        [172, 17, 3, 2],
                        MacAddr([2, 0, 0, 0, 0, 0xb]),
                        1500,
                    ),
                ],
                neighbours: HashMap::from([((Iface::Lan, Ipv4Addr::from(HOST)), HOST_MAC)]),
                probe_targets: vec![(UplinkId(0), Ipv4Addr::new(172, 16, 1, 2))],
            },
            nat: NatTable::new(
                NatParams::default(),
                &[Some(OUTSIDE.into()), Some([172, 17, 3, 1].into())],
            ),
            frags: FragTable::default(),
        }
    }

    fn run(w: &World, frame: &mut [u8], ingress: Iface) -> (Verdict, Vec<u8>) {
        let env = Env {
            snap: &w.snap,
            nat: &w.nat,
            frags: &w.frags,
            now: Instant::from_millis(1000),
        };
        let mut scratch = vec![0u8; SCRATCH_LEN];
        let v = FastPath::default().process(&env, frame, ingress, &mut scratch);
        (v, scratch)
    }

    fn eth(dst: MacAddr, src: MacAddr, ip_packet: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; vnet::LEN];
        f.extend_from_slice(&dst.0);
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(ip_packet);
        f
    }

    #[derive(Debug, Clone, Copy)]
    enum Kind {
        Tcp,
        Udp,
        Echo,
    }

    #[allow(clippy::too_many_arguments)]
    fn packet(
        kind: Kind,
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        ttl: u8,
        payload: &[u8],
        reply: bool,
    ) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv4(src, dst, ttl);
        let mut out = Vec::new();
        match kind {
            Kind::Tcp => {
                let t = b.tcp(sport, dport, 1000, 64000).ack(5000);
                let t = if reply {
                    t
                } else {
                    t.syn()
                        .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
                        .unwrap()
                };
                t.write(&mut out, payload).unwrap()
            }
            Kind::Udp => b.udp(sport, dport).write(&mut out, payload).unwrap(),
            Kind::Echo if reply => b
                .icmpv4_echo_reply(dport, 7)
                .write(&mut out, payload)
                .unwrap(),
            Kind::Echo => b
                .icmpv4_echo_request(sport, 7)
                .write(&mut out, payload)
                .unwrap(),
        }
        out
    }

    /// Parses the IP packet of a frame with etherparse and checks every checksum.
    fn verify(frame: &[u8]) -> etherparse::SlicedPacket<'_> {
        let pkt =
            etherparse::SlicedPacket::from_ethernet(&frame[ETH_OFFSET..]).expect("valid frame");
        let ip = match &pkt.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => ip.clone(),
            other => panic!("not IPv4: {other:?}"),
        };
        let h = ip.header().to_header();
        assert_eq!(
            h.calc_header_checksum(),
            h.header_checksum,
            "IP header checksum"
        );
        let payload = ip.payload().payload;
        match &pkt.transport {
            Some(etherparse::TransportSlice::Tcp(t)) => {
                let c = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
                assert_eq!(c, t.checksum(), "TCP checksum");
            }
            Some(etherparse::TransportSlice::Udp(u)) => {
                let c = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
                assert_eq!(c, u.checksum(), "UDP checksum");
            }
            Some(etherparse::TransportSlice::Icmpv4(_)) => {
                assert_eq!(checksum::checksum(payload), 0, "ICMP checksum");
            }
            other => panic!("transport {other:?}"),
        }
        pkt
    }

    fn ports(pkt: &etherparse::SlicedPacket<'_>) -> (u16, u16) {
        match &pkt.transport {
            Some(etherparse::TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
            Some(etherparse::TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
            Some(etherparse::TransportSlice::Icmpv4(i)) => match i.icmp_type() {
                etherparse::Icmpv4Type::EchoRequest(e) | etherparse::Icmpv4Type::EchoReply(e) => {
                    (e.id, e.id)
                }
                t => panic!("icmp {t:?}"),
            },
            other => panic!("transport {other:?}"),
        }
    }

    fn addrs(pkt: &etherparse::SlicedPacket<'_>) -> (Ipv4Addr, Ipv4Addr) {
        match &pkt.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                (ip.header().source_addr(), ip.header().destination_addr())
            }
            _ => panic!("not IPv4"),
        }
    }

    /// Out through NAT and back: checksums verify both ways and the reply restores the inside
    /// endpoint exactly (translate then un-translate is the identity).
    fn round_trip(kind: Kind, sport: u16, dport: u16, payload: &[u8]) {
        let w = world(1500);
        let mut out = eth(
            LAN_MAC,
            HOST_MAC,
            &packet(kind, HOST, SERVER, sport, dport, 64, payload, false),
        );
        let (v, _) = run(&w, &mut out, Iface::Lan);
        assert_eq!(
            v,
            Verdict::Forward {
                egress: Iface::Uplink(UplinkId(0))
            }
        );
        let pkt = verify(&out);
        assert_eq!(
            addrs(&pkt),
            (Ipv4Addr::from(OUTSIDE), Ipv4Addr::from(SERVER))
        );
        let (osport, _) = ports(&pkt);
        let e = EthernetFrame::new_unchecked(&out[ETH_OFFSET..]);
        assert_eq!((e.dst(), e.src()), (PE_A, A_MAC));
        assert_eq!(Ipv4Packet::new_unchecked(&out[IP_OFFSET..]).ttl(), 63);

        let back = match kind {
            Kind::Echo => packet(kind, SERVER, OUTSIDE, 0, osport, 60, payload, true),
            _ => packet(kind, SERVER, OUTSIDE, dport, osport, 60, payload, true),
        };
        let mut back = eth(A_MAC, PE_A, &back);
        let (v, _) = run(&w, &mut back, Iface::Uplink(UplinkId(0)));
        assert_eq!(v, Verdict::Forward { egress: Iface::Lan });
        let pkt = verify(&back);
        assert_eq!(addrs(&pkt), (Ipv4Addr::from(SERVER), Ipv4Addr::from(HOST)));
        let (rs, rd) = ports(&pkt);
        match kind {
            Kind::Echo => assert_eq!(rd, sport),
            _ => assert_eq!((rs, rd), (dport, sport)),
        }
        assert_eq!(
            EthernetFrame::new_unchecked(&back[ETH_OFFSET..]).dst(),
            HOST_MAC
        );
    }

    #[test]
    fn tcp_udp_icmp_round_trips() {
        round_trip(Kind::Tcp, 40000, 80, b"hello");
        round_trip(Kind::Udp, 5353, 53, b"query");
        round_trip(Kind::Echo, 777, 0, &[0xab; 56]);
    }

    #[test]
    fn mss_is_clamped_on_syn() {
        let w = world(1500);
        let mut f = eth(
            LAN_MAC,
            HOST_MAC,
            &packet(Kind::Tcp, HOST, SERVER, 40000, 80, 64, &[], false),
        );
        run(&w, &mut f, Iface::Lan);
        let pkt = verify(&f);
        let Some(etherparse::TransportSlice::Tcp(t)) = &pkt.transport else {
            panic!()
        };
        let mss = t.options_iterator().find_map(|o| match o {
            Ok(etherparse::TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
            _ => None,
        });
        assert_eq!(mss, Some(1400));
    }

    #[test]
    fn partial_checksum_follows_the_pseudo_header() {
        // A GSO/NEEDS_CSUM frame from the TAP: the TCP field holds the folded pseudo-header sum.
        let w = world(1500);
        let mut ip = packet(Kind::Tcp, HOST, SERVER, 40000, 80, 64, &[7; 100], false);
        let tcp_len = (ip.len() - 20) as u16;
        let pseudo = |src: [u8; 4], dst: [u8; 4]| {
            checksum::fold(checksum::pseudo_header_sum(
                src.into(),
                dst.into(),
                6,
                tcp_len,
            ))
        };
        ip[20 + 16..20 + 18].copy_from_slice(&pseudo(HOST, SERVER).to_be_bytes());
        let mut f = eth(LAN_MAC, HOST_MAC, &ip);
        VnetHdr {
            flags: vnet::flags::NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..VnetHdr::default()
        }
        .write(&mut f)
        .unwrap();
        assert_eq!(
            run(&w, &mut f, Iface::Lan).0,
            Verdict::Forward {
                egress: Iface::Uplink(UplinkId(0))
            }
        );
        let field = u16::from_be_bytes([f[IP_OFFSET + 36], f[IP_OFFSET + 37]]);
        assert_eq!(field, pseudo(OUTSIDE, SERVER));
    }

    #[test]
    fn ttl_expiry_answers_time_exceeded() {
        let w = world(1500);
        let mut f = eth(
            LAN_MAC,
            HOST_MAC,
            &packet(Kind::Udp, HOST, SERVER, 33434, 33435, 1, &[0; 32], false),
        );
        let orig = f.clone();
        let (v, scratch) = run(&w, &mut f, Iface::Lan);
        let Verdict::Reply {
            egress: Iface::Lan,
            len,
            reason: DropReason::TtlExceeded,
        } = v
        else {
            panic!("{v:?}")
        };
        let pkt = verify(&scratch[..len]);
        assert_eq!(
            addrs(&pkt),
            (Ipv4Addr::new(192, 168, 0, 1), Ipv4Addr::from(HOST))
        );
        let icmp = &scratch[IP_OFFSET + 20..len];
        assert_eq!((icmp[0], icmp[1]), (types::TIME_EXCEEDED, 0));
        assert_eq!(
            &icmp[8..36],
            &orig[IP_OFFSET..IP_OFFSET + 28],
            "quotes the original header and 8 bytes"
        );
        assert!(w.nat.is_empty(), "no NAT session for an expired packet");
    }

    #[test]
    fn df_over_mtu_answers_frag_needed() {
        let w = world(1400);
        let mut f = eth(
            LAN_MAC,
            HOST_MAC,
            &packet(Kind::Udp, HOST, SERVER, 1, 2, 64, &[0; 1400], false),
        );
        f[IP_OFFSET + 6] |= 0x40;
        let c = checksum::checksum(&{
            let mut h = f[IP_OFFSET..IP_OFFSET + 20].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        f[IP_OFFSET + 10..IP_OFFSET + 12].copy_from_slice(&c.to_be_bytes());
        let (v, scratch) = run(&w, &mut f, Iface::Lan);
        let Verdict::Reply {
            len,
            reason: DropReason::FragNeeded,
            ..
        } = v
        else {
            panic!("{v:?}")
        };
        let icmp = &scratch[IP_OFFSET + 20..len];
        assert_eq!(
            (icmp[0], icmp[1]),
            (types::DEST_UNREACH, codes::FRAG_NEEDED)
        );
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1400);
    }

    #[test]
    fn without_df_over_mtu_is_fragmented() {
        let w = world(1400);
        let mut f = eth(
            LAN_MAC,
            HOST_MAC,
            &packet(Kind::Udp, HOST, SERVER, 1, 2, 64, &[0; 1400], false),
        );
        f[IP_OFFSET + 6] &= !0x40;
        Ipv4Packet::new_unchecked(&mut f[IP_OFFSET..]).fill_checksum();
        let (v, _) = run(&w, &mut f, Iface::Lan);
        assert_eq!(
            v,
            Verdict::Fragment {
                egress: Iface::Uplink(UplinkId(0)),
                mtu: 1400
            }
        );
        verify(&f);
    }

    #[test]
    fn complete_checksum_finishes_a_partial_one() {
        let mut ip = packet(Kind::Tcp, HOST, SERVER, 40000, 80, 64, &[7; 100], false);
        let good = ip.clone();
        let pseudo = checksum::fold(checksum::pseudo_header_sum(
            HOST.into(),
            SERVER.into(),
            6,
            (ip.len() - 20) as u16,
        ));
        ip[20 + 16..20 + 18].copy_from_slice(&pseudo.to_be_bytes());
        let mut f = eth(LAN_MAC, HOST_MAC, &ip);
        VnetHdr {
            flags: vnet::flags::NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..VnetHdr::default()
        }
        .write(&mut f)
        .unwrap();
        complete_checksum(&mut f);
        assert_eq!(&f[IP_OFFSET..], &good[..]);
        assert!(!VnetHdr::parse(&f).unwrap().needs_csum());
    }

    #[test]
    fn filters_spoofed_unsolicited_and_transit() {
        let w = world(1500);
        let mut f = eth(
            LAN_MAC,
            HOST_MAC,
            &packet(Kind::Udp, [10, 0, 0, 1], SERVER, 1, 2, 64, &[], false),
        );
        assert_eq!(
            run(&w, &mut f, Iface::Lan).0,
            Verdict::Drop(DropReason::Spoofed)
        );
        let mut f = eth(
            A_MAC,
            PE_A,
            &packet(Kind::Tcp, SERVER, OUTSIDE, 80, 40000, 64, &[], false),
        );
        assert_eq!(
            run(&w, &mut f, Iface::Uplink(UplinkId(0))).0,
            Verdict::Drop(DropReason::NatUnsolicited),
            "unsolicited from a non-target is dropped in the fast path"
        );
        let mut f = eth(
            A_MAC,
            PE_A,
            &packet(
                Kind::Tcp,
                [172, 16, 1, 2],
                OUTSIDE,
                80,
                40000,
                64,
                &[],
                true,
            ),
        );
        assert_eq!(
            run(&w, &mut f, Iface::Uplink(UplinkId(0))).0,
            Verdict::Punt,
            "from a probe target: maybe a probe reply"
        );
        let mut f = eth(
            A_MAC,
            PE_A,
            &packet(Kind::Echo, SERVER, OUTSIDE, 9, 0, 64, &[], false),
        );
        assert_eq!(
            run(&w, &mut f, Iface::Uplink(UplinkId(0))).0,
            Verdict::Punt,
            "pings to the router are answered"
        );
        let mut f = eth(
            A_MAC,
            PE_A,
            &packet(Kind::Udp, SERVER, HOST, 1, 2, 64, &[], false),
        );
        assert_eq!(
            run(&w, &mut f, Iface::Uplink(UplinkId(0))).0,
            Verdict::Drop(DropReason::UplinkTransit)
        );
        let mut f = eth(
            LAN_MAC,
            HOST_MAC,
            &packet(Kind::Tcp, HOST, SERVER, 40000, 80, 64, &[], true),
        );
        let (v, scratch) = run(&w, &mut f, Iface::Lan);
        let Verdict::Reply {
            len,
            reason: DropReason::NatNoFlow,
            ..
        } = v
        else {
            panic!("{v:?}")
        };
        let pkt = verify(&scratch[..len]);
        let Some(etherparse::TransportSlice::Tcp(t)) = &pkt.transport else {
            panic!()
        };
        assert!(
            t.rst() && t.sequence_number() == 5000,
            "RST with seq = the segment's ACK"
        );
    }

    #[test]
    fn icmp_error_from_the_internet_is_translated_back() {
        let w = world(1500);
        let mut out = eth(
            LAN_MAC,
            HOST_MAC,
            &packet(Kind::Udp, HOST, SERVER, 33434, 33435, 5, &[0; 8], false),
        );
        run(&w, &mut out, Iface::Lan);
        let quoted = out[IP_OFFSET..IP_OFFSET + 36].to_vec();
        let mut err = Vec::new();
        etherparse::PacketBuilder::ipv4([172, 16, 1, 2], OUTSIDE, 64)
            .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
                etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
            ))
            .write(&mut err, &quoted)
            .unwrap();
        let mut f = eth(A_MAC, PE_A, &err);
        assert_eq!(
            run(&w, &mut f, Iface::Uplink(UplinkId(0))).0,
            Verdict::Forward { egress: Iface::Lan }
        );
        let pkt = verify(&f);
        assert_eq!(addrs(&pkt).1, Ipv4Addr::from(HOST));
        let inner = &f[IP_OFFSET + 28..];
        assert_eq!(&inner[12..16], &HOST, "quoted source restored");
        assert_eq!(
            u16::from_be_bytes([inner[20], inner[21]]),
            33434,
            "quoted port restored"
        );
    }

    proptest! {
        #[test]
        fn nat_round_trip_is_identity(kind in 0..3u8, sport in 1..u16::MAX, dport in 1..u16::MAX, payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let kind = [Kind::Tcp, Kind::Udp, Kind::Echo][kind as usize];
            round_trip(kind, sport, dport, &payload);
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200), uplink in any::<bool>()) {
            let w = world(1500);
            let mut f = bytes.clone();
            let ingress = if uplink { Iface::Uplink(UplinkId(0)) } else { Iface::Lan };
            run(&w, &mut f, ingress);
            // Also with a valid Ethernet/IPv4 prefix so the deeper parsers see the garbage.
            let mut f = eth(LAN_MAC, HOST_MAC, &[&[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 192, 168, 0, 10, 172, 18, 0, 6][..], &bytes].concat());
            run(&w, &mut f, ingress);
        }
    }
}
