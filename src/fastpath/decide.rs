//! The decisions: which side a packet came from and what that allows, the NAT session it
//! belongs to (or opens), the route it takes, and the common forwarding steps (TTL, MTU, NAT
//! commit) before the rewrite.

use std::net::{IpAddr, Ipv4Addr};

use super::parse::{L4, frag_key, outbound_key, quoted};
use super::reply::ErrorMsg;
use super::rewrite::{self, Endpoint, clear_needs_csum};
use super::{Env, FastPath, Frame, PuntClass, Verdict};
use crate::counters::DropReason;
use crate::dns::tcp::TCP_PORTS;
use crate::nat::{FlowKey, InboundKey, NatError, Translation};
use crate::route::{Decision, FlowTuple};
use crate::snapshot::Snapshot;
use crate::wire::Side;
use crate::wire::checksum::L4Checksum;
use crate::wire::ethernet::{self, EthernetFrame};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::ipv4::{Ipv4Packet, proto};
use crate::wire::{tcp, udp};
use crate::{Iface, UplinkId};

/// How a forwarded packet is translated.
#[derive(Clone, Copy)]
enum Nat {
    None,
    /// Outbound with an existing session, or a new one to create on commit.
    Source(Translation),
    Create(FlowKey, UplinkId),
    /// Inbound: restore the inside endpoint.
    Dest(Translation),
    /// Hairpin (SPEC 31): out through an uplink by the first session (source), straight back
    /// in to a port forward by the second (destination).
    Hairpin(Translation, Translation),
    /// ICMP errors: translate the quoted packet too.
    ErrorOut(Translation),
    ErrorIn(Translation),
}

/// Where a packet goes once decided: out of `egress` toward `next_hop`, translated by `nat`.
#[derive(Clone, Copy)]
struct Hop {
    egress: Iface,
    next_hop: Ipv4Addr,
    nat: Nat,
}

impl Hop {
    /// Inbound to the inside host of session `t`, translated by `nat`.
    fn to_inside(nat: Nat, t: Translation) -> Hop {
        Hop {
            egress: Iface::Lan,
            next_hop: t.inside,
            nat,
        }
    }
}

impl FastPath {
    /// From the LAN: anti-spoofing, then the packet's NAT session if it has one, else the route
    /// table (and a session to open if the route's uplink translates).
    pub(super) fn lan_ingress(&mut self, env: &Env, f: &mut Frame) -> Result<Verdict, DropReason> {
        let snap = env.snap;
        let ip = f.ip;
        let lan = snap.lan.address;
        if !lan.contains(ip.src) || ip.src == lan.broadcast() || ip.src == lan.network().addr() {
            return Err(DropReason::Spoofed);
        }
        if ip.dst == lan.broadcast() {
            return Err(DropReason::Broadcast);
        }
        if snap.is_local(ip.dst) {
            return self.addressed_to_router(env, f);
        }
        let key = outbound_key(ip, f.l4);
        let (flags, ack) = f.l4.tcp_state();
        // One lookup per packet of an established flow: it also refreshes the session.
        if let Some(key) = key
            && let Some(t) = env.nat.lookup_outbound(&key, env.now, flags, ack)
        {
            let up = snap.uplink(t.uplink).ok_or(DropReason::NoRoute)?;
            if up.carrier {
                let hop = Hop {
                    egress: Iface::Uplink(t.uplink),
                    next_hop: up.next_hop,
                    nat: Nat::Source(t),
                };
                return self.forward(env, f, hop);
            }
        }
        let (sport, dport) = match f.l4 {
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
            Decision::Local => self.punt_other(env.now),
            Decision::Lan => {
                let hop = Hop {
                    egress: Iface::Lan,
                    next_hop: ip.dst,
                    nat: Nat::None,
                };
                self.forward(env, f, hop)
            }
            // A router on the LAN (the VRRP peer) translates: forwarded as it came (SPEC 29).
            Decision::Peer { next_hop, .. } => {
                let hop = Hop {
                    egress: Iface::Lan,
                    next_hop,
                    nat: Nat::None,
                };
                self.forward(env, f, hop)
            }
            Decision::Unreachable => self.icmp_error(env, f, ErrorMsg::NET_UNREACH),
            Decision::Uplink {
                uplink, next_hop, ..
            } => {
                let up = snap.uplink(uplink).ok_or(DropReason::NoRoute)?;
                let nat = if !up.translates(ip.src) {
                    Nat::None
                } else {
                    match (f.l4, key) {
                        (L4::IcmpError, _) => Nat::ErrorOut(error_out_session(env, f)?),
                        (L4::Fragment, _) => Nat::Source(
                            env.frags
                                .lookup(&frag_key(ip), env.now)
                                .ok_or(DropReason::FragmentWithoutState)?,
                        ),
                        (_, Some(key)) => Nat::Create(key, uplink),
                        (_, None) => return Err(DropReason::NatUnsupported),
                    }
                };
                let egress = match nat {
                    Nat::ErrorOut(t) => Iface::Uplink(t.uplink),
                    _ => Iface::Uplink(uplink),
                };
                let hop = Hop {
                    egress,
                    next_hop,
                    nat,
                };
                self.forward(env, f, hop)
            }
        }
    }

    /// From the LAN to one of the router's addresses: hairpin NAT when it is an uplink's address
    /// and a forwarded port (SPEC 31), else the router's own business. A hairpin flow is two
    /// ordinary sessions of that uplink: the LAN client's outbound one, translating its source to
    /// the uplink's address, and the forward's inbound one from that address. The server's
    /// replies find them the other way round, so they need no state of their own.
    fn addressed_to_router(&mut self, env: &Env, f: &mut Frame) -> Result<Verdict, DropReason> {
        let ip = f.ip;
        let L4::Ports {
            sport,
            dport,
            flags,
            ..
        } = f.l4
        else {
            return self.punt_other(env.now);
        };
        let Some(u) = env.snap.uplink_with_addr(ip.dst) else {
            return self.punt_other(env.now);
        };
        let key = FlowKey {
            proto: ip.proto,
            inside: ip.src,
            inside_port: sport,
            remote: ip.dst,
            remote_port: dport,
        };
        let (_, ack) = f.l4.tcp_state();
        let back_in = |out: &Translation| InboundKey {
            uplink: out.uplink,
            proto: ip.proto,
            outside_port: dport,
            remote: out.outside,
            remote_port: out.outside_port,
        };
        if let Some(out) = env.nat.lookup_outbound(&key, env.now, flags, ack) {
            let back = env
                .nat
                .lookup_inbound(&back_in(&out), env.now, flags)
                .ok_or(DropReason::NatUnsolicited)?;
            return self.forward(env, f, Hop::to_inside(Nat::Hairpin(out, back), back));
        }
        let Some(fwd) = env.nat.find_forward(u, ip.proto, dport) else {
            return self.punt_other(env.now);
        };
        if ip.proto == proto::TCP && flags & tcp::flags::SYN == 0 {
            return self.tcp_reset(env, f);
        }
        if !env.nat.forward_admits(fwd, ip.src) {
            return Err(DropReason::ForwardRefused);
        }
        let out = env
            .nat
            .create_outbound(&key, u, env.now, flags, ack)
            .map_err(nat_drop)?;
        if out.uplink != u {
            return Err(DropReason::NoRoute);
        }
        let back = open_forward(env, &back_in(&out), fwd, flags)?;
        self.forward(env, f, Hop::to_inside(Nat::Hairpin(out, back), back))
    }

    /// From uplink `u`: replies to LAN hosts the uplink does not translate, and of what is
    /// addressed to the uplink's own address only probe replies, what a NAT session (or a
    /// fragment of one) expects and rate-limited pings.
    pub(super) fn uplink_ingress(
        &mut self,
        env: &Env,
        f: &mut Frame,
        u: UplinkId,
    ) -> Result<Verdict, DropReason> {
        let ip = f.ip;
        let up = env.snap.uplink(u).ok_or(DropReason::UplinkTransit)?;
        if ip.dst != up.address.addr() {
            // Replies to what this uplink does not translate (and anything else for those
            // hosts, as a router does) go to the LAN untranslated; no other transit (SPEC 10).
            if env.snap.is_lan_host(ip.dst) && !up.translates(ip.dst) {
                let hop = Hop {
                    egress: Iface::Lan,
                    next_hop: ip.dst,
                    nat: Nat::None,
                };
                return self.forward(env, f, hop);
            }
            return Err(if ip.dst == up.address.broadcast() {
                DropReason::Broadcast
            } else {
                DropReason::UplinkTransit
            });
        }
        // Probe replies before NAT (SPEC 35): their ports are reserved out of every NAT pool,
        // so no session can hold one, and what is sent to one goes to the probe thread alone.
        let probe_port = match f.l4 {
            L4::Ports { dport, .. } => Some((ip.proto, ip.src, dport)),
            L4::Echo {
                request: false,
                ident,
            } => Some((proto::ICMP, ip.src, ident)),
            // An error about a probe: the quoted packet left from here to the probe's target.
            L4::IcmpError => quoted(icmp_message(f))
                .filter(|q| q.src == up.address.addr())
                .map(|q| (q.proto, q.dst, q.sport)),
            _ => None,
        };
        if let Some((proto, remote, port)) = probe_port
            && env.snap.is_probe_reply(u, proto, IpAddr::V4(remote), port)
        {
            return self.punt_probe(env.now, matches!(f.l4, L4::IcmpError));
        }
        // To (our address, outside port) from (the sender, remote port).
        let inbound = |proto, outside_port, remote_port| InboundKey {
            uplink: u,
            proto,
            outside_port,
            remote: ip.src,
            remote_port,
        };
        let t = match f.l4 {
            L4::Ports {
                sport,
                dport,
                flags,
                ..
            } => env
                .nat
                .lookup_inbound(&inbound(ip.proto, dport, sport), env.now, flags),
            L4::Echo {
                request: false,
                ident,
            } => env
                .nat
                .lookup_inbound(&inbound(proto::ICMP, ident, 0), env.now, 0),
            L4::IcmpError => {
                return match error_in_session(env, f, u) {
                    Some(t) => self.forward(env, f, Hop::to_inside(Nat::ErrorIn(t), t)),
                    None => Err(DropReason::NatUnsolicited),
                };
            }
            L4::Fragment => Some(
                env.frags
                    .lookup(&frag_key(ip), env.now)
                    .ok_or(DropReason::FragmentWithoutState)?,
            ),
            L4::Echo { request: true, .. } | L4::Other => None,
        };
        match t {
            Some(t) => self.forward(env, f, Hop::to_inside(Nat::Dest(t), t)),
            // Pings to the router (rate limited) go to the control plane; the rest is
            // unsolicited. Filtering here keeps a scan or flood from filling the punt queue.
            None if matches!(f.l4, L4::Echo { request: true, .. }) => {
                if self.pings.take(env.now) {
                    Ok(Verdict::Punt(PuntClass::Other))
                } else {
                    Err(DropReason::PingRateLimited)
                }
            }
            // A new connection to a port forward (SPEC 13). Probes never use a forwarded
            // port as their source (configuration), so this takes no probe reply.
            None if let L4::Ports {
                sport,
                dport,
                flags,
                ..
            } = f.l4
                && let Some(fwd) = env.nat.find_forward(u, ip.proto, dport) =>
            {
                if ip.proto == proto::TCP
                    && flags & (tcp::flags::SYN | tcp::flags::ACK) != tcp::flags::SYN
                {
                    return Err(DropReason::NatUnsolicited);
                }
                if !env.nat.forward_admits(fwd, ip.src) {
                    return Err(DropReason::ForwardRefused);
                }
                let t = open_forward(env, &inbound(ip.proto, dport, sport), fwd, flags)?;
                self.forward(env, f, Hop::to_inside(Nat::Dest(t), t))
            }
            // An uplink's DHCP client renewing by unicast (SPEC 28), and answers to the DNS
            // forwarder's queries, which leave from port 53 (SPEC 30).
            None if ip.proto == proto::UDP
                && matches!(
                    f.l4,
                    L4::Ports {
                        sport: 67,
                        dport: 68,
                        ..
                    } | L4::Ports {
                        sport: 53,
                        dport: 53,
                        ..
                    }
                ) =>
            {
                self.punt_other(env.now)
            }
            // The DNS relay's connections to resolvers, from ports no NAT session holds.
            None if ip.proto == proto::TCP
                && let L4::Ports {
                    sport: 53, dport, ..
                } = f.l4
                && TCP_PORTS.contains(&dport) =>
            {
                self.punt_other(env.now)
            }
            None => Err(DropReason::NatUnsolicited),
        }
    }

    /// Common forwarding steps once the egress is known: TTL, MTU, NAT commit, rewrite.
    fn forward(&mut self, env: &Env, f: &mut Frame, hop: Hop) -> Result<Verdict, DropReason> {
        let snap = env.snap;
        let (ip, l4, vh) = (f.ip, f.l4, f.vh);
        let Hop {
            egress, next_hop, ..
        } = hop;
        if ip.ttl <= 1 {
            return self.icmp_error(env, f, ErrorMsg::TTL_EXCEEDED);
        }
        let mtu = snap.iface_mtu(egress);
        let wire_size = if vh.is_gso() {
            let l4h = match l4 {
                L4::Ports { hlen, .. } => hlen,
                // GSO is TCP or UDP; anything else is counted as an 8-byte header.
                _ => udp::HEADER_LEN,
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
            return self.icmp_error(env, f, ErrorMsg::frag_needed(mtu));
        }
        // A frame for a neighbour not resolved yet is held by the control thread while it
        // resolves: admitted like its other work, before anything (a NAT session) is committed.
        let neighbour = env.neighbours.lookup(egress, next_hop);
        if neighbour.is_none() {
            self.punt_other(env.now)?;
        }
        let (flags, ack) = l4.tcp_state();
        let nat = match hop.nat {
            Nat::Create(_, _) if ip.proto == proto::TCP && flags & tcp::flags::SYN == 0 => {
                return self.tcp_reset(env, f);
            }
            Nat::Create(key, uplink) => {
                let t = env
                    .nat
                    .create_outbound(&key, uplink, env.now, flags, ack)
                    .map_err(nat_drop)?;
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
            env.frags.insert(frag_key(ip), t, env.now);
        }
        let held = if vh.needs_csum() && vh.csum_start as usize == ethernet::HEADER_LEN + ip.hlen {
            L4Checksum::Partial
        } else {
            L4Checksum::Full
        };
        let ipb = &mut f.buf[IP_OFFSET..IP_OFFSET + ip.total];
        match nat {
            Nat::None | Nat::Create(..) => {}
            Nat::Source(t) => {
                rewrite::rewrite_endpoint(ipb, ip, l4, Side::Src, Endpoint::outside(&t), held)
            }
            Nat::Dest(t) => {
                rewrite::rewrite_endpoint(ipb, ip, l4, Side::Dst, Endpoint::inside(&t), held)
            }
            Nat::Hairpin(out, back) => {
                rewrite::rewrite_endpoint(ipb, ip, l4, Side::Src, Endpoint::outside(&out), held);
                rewrite::rewrite_endpoint(ipb, ip, l4, Side::Dst, Endpoint::inside(&back), held);
            }
            Nat::ErrorOut(t) => {
                rewrite::translate_error(ipb, ip, Side::Src, Side::Dst, Endpoint::outside(&t));
                clear_needs_csum(f.buf, vh);
            }
            Nat::ErrorIn(t) => {
                rewrite::translate_error(ipb, ip, Side::Dst, Side::Src, Endpoint::inside(&t));
                clear_needs_csum(f.buf, vh);
            }
        }
        let ipb = &mut f.buf[IP_OFFSET..IP_OFFSET + ip.total];
        Ipv4Packet::new_unchecked(&mut *ipb).decrement_ttl();
        if let L4::Ports { flags, hlen, .. } = l4
            && ip.proto == proto::TCP
            && flags & tcp::flags::SYN != 0
            && let Some(clamp) = mss_clamp(snap, f.ingress, egress)
        {
            rewrite::clamp_mss(&mut ipb[ip.hlen..ip.hlen + hlen], clamp, held);
        }
        let src_mac = snap.iface_mac(egress).ok_or(DropReason::NoRoute)?;
        let mut eth = EthernetFrame::new_unchecked(&mut f.buf[ETH_OFFSET..]);
        eth.set_src(src_mac);
        match neighbour {
            Some(mac) => {
                eth.set_dst(mac);
                Ok(if fragment {
                    Verdict::Fragment { egress, mtu }
                } else {
                    Verdict::Forward { egress }
                })
            }
            None => Ok(Verdict::NeedsNeighbour {
                egress,
                next_hop: next_hop.into(),
            }),
        }
    }
}

/// Why a session could not be created.
fn nat_drop(e: NatError) -> DropReason {
    match e {
        NatError::TableFull => DropReason::NatTableFull,
        NatError::HostQuota => DropReason::NatHostQuota,
        NatError::PortsExhausted | NatError::NoAddress => DropReason::NatPortsExhausted,
    }
}

/// Opens the session of a new connection to forward `fwd` arriving as `key`. A session of the
/// same flow on another uplink (the LAN host's own) must not take the packet there.
fn open_forward(
    env: &Env,
    key: &InboundKey,
    fwd: usize,
    flags: u8,
) -> Result<Translation, DropReason> {
    let t = env
        .nat
        .create_inbound(key, fwd, env.now, flags)
        .map_err(nat_drop)?;
    if t.uplink != key.uplink {
        return Err(DropReason::NatUnsolicited);
    }
    Ok(t)
}

/// The ICMP message (header on) of the ICMP packet in `f`.
#[inline]
fn icmp_message<'a>(f: &'a Frame) -> &'a [u8] {
    &f.buf[IP_OFFSET + f.ip.hlen..IP_OFFSET + f.ip.total]
}

/// An ICMP error from the LAN about an inbound packet of a session (e.g. port unreachable).
fn error_out_session(env: &Env, f: &Frame) -> Result<Translation, DropReason> {
    let q = quoted(icmp_message(f)).ok_or(DropReason::BadL4Header)?;
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
fn error_in_session(env: &Env, f: &Frame, u: UplinkId) -> Option<Translation> {
    let q = quoted(icmp_message(f))?;
    // The quoted packet went out: its source is the session's outside endpoint.
    env.nat.peek_inbound(&InboundKey {
        uplink: u,
        proto: q.proto,
        outside_port: q.sport,
        remote: q.dst,
        remote_port: q.dport,
    })
}

/// The MSS clamp for a SYN crossing from `ingress` to `egress`: the lower of the two sides'.
#[inline]
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
