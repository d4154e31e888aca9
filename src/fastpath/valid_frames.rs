//! Structurally valid frames with random fields, shared by the fast path's property tests
//! (`tests/valid_frames.rs`) and its fuzz targets (through `crate::fuzz`). Every frame carries
//! right IPv4 and transport checksums, most carry the ingress interface's MAC, and the NAT and
//! fragment tables hold flows the frames can hit, so cases get past parsing into the decisions
//! and the rewrite. [`check`] says what each outcome must satisfy, [`outcomes`] names it.
//!
//! Compiled for tests and with `--cfg fuzzing` only; etherparse builds the packets, an
//! implementation independent of the one under test.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::{Env, FastPath, SCRATCH_LEN, Verdict};
use crate::clock::Instant;
use crate::counters::{Counters, DropReason, Totals};
use crate::nat::{FlowKey, FragKey, FragTable, InboundKey, NatParams, NatTable, Translation};
use crate::prefix::Ipv4Prefix;
use crate::route::{Health, Interfaces, RouteTable, StaticRoute, UplinkIf};
use crate::snapshot::{LanState, Neighbours, ProbeFlow, Snapshot, UplinkState};
use crate::wire::checksum;
use crate::wire::ethernet::{self, EthernetFrame, MacAddr};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{Ipv4Packet, proto};
use crate::wire::tcp::{self, TcpPacket};
use crate::wire::udp::UdpPacket;
use crate::wire::vnet::{self, VnetHdr};
use crate::{Iface, UplinkId};

/// Returns an error naming the check unless `cond` holds (`check` runs outside proptest too).
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Returns an error with both values unless they are equal.
macro_rules! ensure_eq {
    ($a:expr, $b:expr, $($msg:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err(format!("{}: {:?} != {:?}", format!($($msg)+), a, b));
        }
    }};
}

pub const LAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
pub const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
pub const B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
pub const PE_A: MacAddr = MacAddr([2, 0, 0, 0, 1, 0xa]);
pub const HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 9, 9]);
pub const HOST: [u8; 4] = [192, 168, 0, 10];
/// A second LAN host, translated by uplink B too.
pub const HOST2: [u8; 4] = [192, 168, 0, 20];
pub const SERVER: [u8; 4] = [172, 18, 0, 6];
/// Uplink A's address, and uplink B's.
pub const OUTSIDE: [u8; 4] = [172, 16, 1, 1];
pub const OUTSIDE_B: [u8; 4] = [172, 17, 3, 1];
/// ISP A's router: the next hop and a probe target.
pub const PE_A_IP: [u8; 4] = [172, 16, 1, 2];
pub const LAN_ROUTER: [u8; 4] = [192, 168, 0, 1];
/// The ICMP id of the probe to PE_A.
pub const PROBE_ID: u16 = 65300;
/// Idents of the fragmented datagrams the fragment table knows, outbound and inbound.
pub const FRAG_OUT: u16 = 0x4242;
pub const FRAG_IN: u16 = 0x4343;

pub fn p(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

/// What the fast path reads: a LAN 192.168.0.0/24 with HOST resolved, uplinks A and B (both
/// with carrier, next hops resolved, MSS clamp 1400), everything routed through A, an ICMP
/// probe to PE_A on A.
pub struct World {
    pub snap: Snapshot,
    pub neighbours: Neighbours,
    pub nat: NatTable,
    pub frags: FragTable,
}

/// The world with uplink A's MTU at `mtu_a`.
pub fn world(mtu_a: usize) -> World {
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
        egress: Iface::Uplink(UplinkId(0)),
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
                virtual_macs: vec![],
                vrrp: false,
            },
            uplinks: vec![
                uplink("isp-a", "172.16.1.1/30", [172, 16, 1, 2], A_MAC, mtu_a),
                uplink("isp-b", "172.17.3.1/30", [172, 17, 3, 2], B_MAC, 1500),
            ],
            probes: vec![ProbeFlow {
                uplink: UplinkId(0),
                proto: proto::ICMP,
                target: PE_A_IP.into(),
                port: PROBE_ID,
            }],
        },
        neighbours: Neighbours::new(
            HashMap::from([((Iface::Lan, Ipv4Addr::from(HOST)), HOST_MAC)]),
            vec![(Ipv4Addr::new(172, 16, 1, 2), Some(PE_A)); 2],
        ),
        nat: NatTable::new(
            NatParams::default(),
            &[Some(OUTSIDE.into()), Some(OUTSIDE_B.into())],
        ),
        frags: FragTable::default(),
    }
}

/// The clock of every case.
pub fn now() -> Instant {
    Instant::from_millis(1000)
}

/// Runs one frame through a fresh fast path at `now()`: the verdict and the scratch buffer.
pub fn run(w: &World, frame: &mut [u8], ingress: Iface) -> (Verdict, Vec<u8>) {
    let env = Env {
        snap: &w.snap,
        neighbours: &w.neighbours,
        nat: &w.nat,
        frags: &w.frags,
        now: now(),
    };
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let v = FastPath::default().process(&env, frame, ingress, &mut scratch);
    (v, scratch)
}

/// A zero virtio_net_hdr and an Ethernet header (IPv4) in front of `ip_packet`.
pub fn eth(dst: MacAddr, src: MacAddr, ip_packet: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; vnet::LEN];
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(ip_packet);
    f
}

/// (proto, inside, inside port, remote, remote port, uplink).
type Flow = (u8, [u8; 4], u16, [u8; 4], u16, u8);

/// The NAT sessions seeded before each case. HOST2 has no neighbour entry, so replies to it
/// wait for ARP.
pub const FLOWS: [Flow; 5] = [
    (proto::TCP, HOST, 40000, SERVER, 80, 0),
    (proto::UDP, HOST, 5353, SERVER, 53, 0),
    (proto::ICMP, HOST, 777, SERVER, 0, 0),
    (proto::UDP, HOST2, 6000, [172, 19, 0, 9], 123, 1),
    (proto::TCP, HOST2, 41000, SERVER, 443, 1),
];

pub struct Seeded {
    pub world: World,
    pub flows: Vec<(FlowKey, Translation)>,
}

/// A world with uplink A's MTU at 1400 (so large packets fragment or get "fragmentation
/// needed"), uplink B not translating HOST, the sessions of `FLOWS` and a fragmented UDP
/// datagram each way.
pub fn seeded() -> Seeded {
    let mut world = world(1400);
    // Uplink B translates HOST2 but not HOST, whose replies it routes as they are (SPEC 10).
    world.snap.uplinks[1].nat_sources = vec![p("192.168.0.16/28")];
    let flows = seed(&world);
    Seeded { world, flows }
}

/// Opens the sessions of `FLOWS` and records a fragmented datagram each way.
fn seed(world: &World) -> Vec<(FlowKey, Translation)> {
    let flows: Vec<_> = FLOWS
        .iter()
        .map(
            |&(proto, inside, inside_port, remote, remote_port, uplink)| {
                let key = FlowKey {
                    proto,
                    inside: inside.into(),
                    inside_port,
                    remote: remote.into(),
                    remote_port,
                };
                let t = world
                    .nat
                    .create_outbound(&key, UplinkId(uplink), now(), tcp::flags::SYN, None)
                    .unwrap();
                (key, t)
            },
        )
        .collect();
    let udp = flows[1].1;
    let frag = |src: [u8; 4], dst: [u8; 4], ident| FragKey {
        src: src.into(),
        dst: dst.into(),
        proto: proto::UDP,
        ident,
    };
    world.frags.insert(frag(HOST, SERVER, FRAG_OUT), udp, now());
    world
        .frags
        .insert(frag(SERVER, OUTSIDE, FRAG_IN), udp, now());
    flows
}

impl Seeded {
    /// Back to what `seeded` returns: the fuzz targets reuse one world, as building it per case
    /// would take most of their time.
    pub fn reset(&mut self) {
        let w = &self.world;
        for u in 0..w.snap.uplinks.len() {
            w.nat.flush_uplink(UplinkId(u as u8));
        }
        w.frags.expire(now() + Duration::from_secs(24 * 3600));
        assert!(w.nat.is_empty() && w.frags.is_empty(), "a reset left state");
        self.flows = seed(w);
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Tcp {
        flags: u8,
        mss: bool,
    },
    Udp,
    EchoRequest,
    EchoReply,
    Error {
        msg_type: u8,
        code: u8,
    },
    /// GRE: a protocol the router neither parses nor translates.
    Other,
}

#[derive(Debug, Clone, Copy)]
pub enum Frag {
    Whole,
    /// MF set, offset 0.
    First,
    /// A later fragment (offset in 8-byte units); `seeded` takes a datagram the fragment table
    /// knows.
    Later {
        seeded: bool,
        offset: u16,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Ends {
    pub src: [u8; 4],
    pub sport: u16,
    pub dst: [u8; 4],
    pub dport: u16,
}

#[derive(Debug, Clone)]
pub struct Case {
    /// 0 = LAN, 1 = uplink A, 2 = uplink B (a seeded flow arrives on its own uplink).
    pub side: u8,
    /// A seeded flow whose endpoints the packet takes (for an ICMP error: the packet it quotes).
    pub flow: Option<usize>,
    pub transport: Transport,
    pub ends: Ends,
    pub ttl: u8,
    pub df: bool,
    pub frag: Frag,
    pub ident: u16,
    pub payload: Vec<u8>,
    /// NEEDS_CSUM with a partial checksum, as the kernel may hand a whole packet to a TAP.
    pub partial: bool,
    pub gso: (u8, u16),
    pub our_mac: bool,
}

pub fn proto_of(t: Transport) -> u8 {
    match t {
        Transport::Tcp { .. } => proto::TCP,
        Transport::Udp => proto::UDP,
        Transport::EchoRequest | Transport::EchoReply | Transport::Error { .. } => proto::ICMP,
        Transport::Other => 47,
    }
}

/// A whole IPv4 packet (DF clear, ident 0) with every checksum right, built by etherparse.
/// For an echo the ports are the identifier: the source one of a request, the destination one
/// of a reply. An error's payload is the packet it quotes.
pub fn ip_packet(t: Transport, e: Ends, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(e.src, e.dst, ttl);
    let mut out = Vec::new();
    match t {
        Transport::Tcp { flags, mss } => {
            let mut s = b.tcp(e.sport, e.dport, 1000, 64000);
            if flags & tcp::flags::SYN != 0 {
                s = s.syn();
                if mss {
                    s = s
                        .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
                        .unwrap();
                }
            }
            if flags & tcp::flags::ACK != 0 {
                s = s.ack(5000);
            }
            if flags & tcp::flags::RST != 0 {
                s = s.rst();
            }
            if flags & tcp::flags::FIN != 0 {
                s = s.fin();
            }
            s.write(&mut out, payload).unwrap()
        }
        Transport::Udp => b.udp(e.sport, e.dport).write(&mut out, payload).unwrap(),
        Transport::EchoRequest => b
            .icmpv4_echo_request(e.sport, 7)
            .write(&mut out, payload)
            .unwrap(),
        Transport::EchoReply => b
            .icmpv4_echo_reply(e.dport, 7)
            .write(&mut out, payload)
            .unwrap(),
        Transport::Error { msg_type, code } => b
            .icmpv4_raw(msg_type, code, [0, 0, 5, 0x78])
            .write(&mut out, payload)
            .unwrap(),
        Transport::Other => b
            .write(&mut out, etherparse::IpNumber(47), payload)
            .unwrap(),
    }
    out
}

/// The transport of the seeded flow with protocol `proto`, as sent from `lan` or to it.
fn flow_transport(proto: u8, wanted: Transport, lan: bool) -> Transport {
    match (proto, wanted) {
        (proto::TCP, t @ Transport::Tcp { .. }) => t,
        (proto::TCP, _) => Transport::Tcp {
            flags: tcp::flags::ACK,
            mss: false,
        },
        (proto::UDP, _) => Transport::Udp,
        _ if lan => Transport::EchoRequest,
        _ => Transport::EchoReply,
    }
}

/// The ingress interface and the frame (virtio_net_hdr on) of `c`.
pub fn build(c: &Case, s: &Seeded) -> (Iface, Vec<u8>) {
    let lan = c.side == 0;
    let mut ingress = if lan {
        Iface::Lan
    } else {
        Iface::Uplink(UplinkId(c.side - 1))
    };
    let (mut transport, mut e, mut ident) = (c.transport, c.ends, c.ident);
    let mut payload = c.payload.clone();
    if let Some((k, t)) = c.flow.map(|i| s.flows[i]) {
        // The flow as the LAN host sees it, and as the Internet sees it.
        let inside = Ends {
            src: k.inside.octets(),
            sport: k.inside_port,
            dst: k.remote.octets(),
            dport: k.remote_port,
        };
        let outside = Ends {
            src: k.remote.octets(),
            sport: k.remote_port,
            dst: t.outside.octets(),
            dport: t.outside_port,
        };
        if !lan {
            ingress = Iface::Uplink(t.uplink);
        }
        let flow_proto = flow_transport(k.proto, c.transport, lan);
        match c.transport {
            Transport::Error { .. } => {
                // From the LAN about an inbound packet of the flow (translated back); from the
                // Internet, by the remote or a router on the way, about an outbound one.
                let (outer, quoted, q_transport) = if lan {
                    let q = Ends {
                        src: k.remote.octets(),
                        sport: k.remote_port,
                        dst: k.inside.octets(),
                        dport: k.inside_port,
                    };
                    (
                        (inside.src, inside.dst),
                        q,
                        flow_transport(k.proto, c.transport, false),
                    )
                } else {
                    let from = if c.ends.sport & 1 == 0 {
                        k.remote.octets()
                    } else {
                        PE_A_IP
                    };
                    let q = Ends {
                        src: t.outside.octets(),
                        sport: t.outside_port,
                        dst: k.remote.octets(),
                        dport: k.remote_port,
                    };
                    (
                        (from, t.outside.octets()),
                        q,
                        flow_transport(k.proto, c.transport, true),
                    )
                };
                let mut q = ip_packet(q_transport, quoted, 1, &c.payload);
                q.truncate(28.max(q.len().min(20 + 8 + (c.ident as usize % 40))));
                payload = q;
                e = Ends {
                    src: outer.0,
                    sport: 0,
                    dst: outer.1,
                    dport: 0,
                };
            }
            _ => {
                transport = flow_proto;
                e = if lan { inside } else { outside };
            }
        }
    } else if let Transport::Error { .. } = transport {
        // An error quoting a random packet (most likely of no session).
        let q = Ends {
            src: e.dst,
            sport: e.dport,
            dst: e.src,
            dport: e.sport,
        };
        let mut q = ip_packet(Transport::Udp, q, 1, &c.payload);
        q.truncate(28);
        payload = q;
    }
    if let Frag::Later { seeded: true, .. } = c.frag {
        transport = Transport::Udp;
        (e, ident, ingress) = if lan {
            (
                Ends {
                    src: HOST,
                    dst: SERVER,
                    ..e
                },
                FRAG_OUT,
                Iface::Lan,
            )
        } else {
            (
                Ends {
                    src: SERVER,
                    dst: OUTSIDE,
                    ..e
                },
                FRAG_IN,
                Iface::Uplink(UplinkId(0)),
            )
        };
    }
    let mut ip = match c.frag {
        // A later fragment carries data only: no transport header.
        Frag::Later { .. } => ip_packet(Transport::Other, e, c.ttl, &payload),
        _ => ip_packet(transport, e, c.ttl, &payload),
    };
    let protocol = proto_of(transport);
    let (mf, offset) = match c.frag {
        Frag::Whole => (false, 0),
        Frag::First => (true, 0),
        Frag::Later { offset, .. } => (false, offset),
    };
    {
        let mut p = Ipv4Packet::new_unchecked(&mut ip[..]);
        p.set_ident(ident);
    }
    ip[9] = protocol;
    let flags = u16::from(c.df) << 14 | u16::from(mf) << 13 | offset;
    ip[6..8].copy_from_slice(&flags.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();

    let csum_offset = match protocol {
        proto::TCP => Some(16),
        proto::UDP => Some(6),
        proto::ICMP => Some(2),
        _ => None,
    };
    let mut vh = VnetHdr {
        gso_type: c.gso.0,
        gso_size: c.gso.1,
        hdr_len: (ethernet::HEADER_LEN + 40) as u16,
        ..VnetHdr::default()
    };
    if c.partial
        && matches!(c.frag, Frag::Whole)
        && let Some(offset) = csum_offset
    {
        // The partial field: the pseudo-header sum (TCP, UDP) or zero (ICMP has none).
        let partial = if protocol == proto::ICMP {
            0
        } else {
            let l4_len = (ip.len() - 20) as u16;
            checksum::fold(checksum::pseudo_header_sum(
                e.src.into(),
                e.dst.into(),
                protocol,
                l4_len,
            ))
        };
        ip[20 + offset..20 + offset + 2].copy_from_slice(&partial.to_be_bytes());
        vh.flags = vnet::flags::NEEDS_CSUM;
        vh.csum_start = (ethernet::HEADER_LEN + 20) as u16;
        vh.csum_offset = offset as u16;
    }
    let dst_mac = match (c.our_mac, ingress) {
        (false, _) => MacAddr([2, 9, 9, 9, 9, 9]),
        (true, Iface::Lan) => LAN_MAC,
        (true, Iface::Uplink(UplinkId(0))) => A_MAC,
        (true, Iface::Uplink(_)) => B_MAC,
    };
    let src_mac = if ingress == Iface::Lan {
        HOST_MAC
    } else {
        PE_A
    };
    let mut frame = eth(dst_mac, src_mac, &ip);
    vh.write(&mut frame).unwrap();
    (ingress, frame)
}

fn field(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The transport checksum of the IPv4 packet `ip` is right. With `partial` (the offset of a
/// NEEDS_CSUM field in the segment) it is right once completed as the kernel or NIC would:
/// the segment summed with the field as it is, the complement written to the field.
fn l4_checksum_ok(ip: &[u8], partial: Option<usize>) -> Result<(), String> {
    let p = Ipv4Packet::new_checked(ip).map_err(|e| format!("IPv4: {e}"))?;
    let (src, dst, protocol) = (p.src(), p.dst(), p.protocol());
    let mut seg = p.payload().to_vec();
    if let Some(at) = partial {
        ensure!(
            at + 2 <= seg.len(),
            "partial checksum field past the segment"
        );
        let c = checksum::checksum(&seg);
        seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let pseudo = checksum::pseudo_header_sum(src, dst, protocol, seg.len() as u16);
    match protocol {
        proto::TCP => {
            let total = checksum::add(pseudo, checksum::sum(&seg));
            ensure_eq!(checksum::fold(total), 0xffff, "TCP checksum");
        }
        // Zero: the sender computed no checksum.
        proto::UDP if seg.len() >= 8 && field(&seg, 6) != 0 => {
            let total = checksum::add(pseudo, checksum::sum(&seg));
            ensure_eq!(checksum::fold(total), 0xffff, "UDP checksum");
        }
        proto::ICMP => ensure_eq!(checksum::checksum(&seg), 0, "ICMP checksum"),
        _ => {}
    }
    Ok(())
}

/// The offset in the segment of the frame's NEEDS_CSUM field, if it has one the fast path keeps
/// partial (its checksum starts at the transport header).
fn partial_field(frame: &[u8], ip_hlen: usize) -> Option<usize> {
    let vh = VnetHdr::parse(frame).ok()?;
    (vh.needs_csum() && vh.csum_start as usize == ethernet::HEADER_LEN + ip_hlen)
        .then_some(vh.csum_offset as usize)
}

/// A frame the generator built is valid: its IPv4 header checksum, and its transport checksum
/// (completed first if partial) unless it is a later fragment.
pub fn frame_valid(frame: &[u8]) -> Result<(), String> {
    let ip = Ipv4Packet::new_checked(&frame[IP_OFFSET..]).map_err(|e| format!("IPv4: {e}"))?;
    ensure!(ip.verify_checksum(), "IPv4 header checksum");
    if ip.frag_offset() == 0 {
        l4_checksum_ok(&frame[IP_OFFSET..], partial_field(frame, ip.header_len()))?;
    }
    Ok(())
}

/// What the outcome of each case must satisfy. `before` may be any frame (the fuzz targets
/// also feed garbage): what the fast path cannot vouch for (a transport checksum) must only be
/// as right after as it was before.
pub fn check(
    s: &Seeded,
    ingress: Iface,
    before: &[u8],
    after: &[u8],
    verdict: Verdict,
    scratch: &[u8],
) -> Result<(), String> {
    let snap = &s.world.snap;
    let egress = match verdict {
        Verdict::Forward { egress }
        | Verdict::Fragment { egress, .. }
        | Verdict::NeedsNeighbour { egress, .. } => egress,
        Verdict::Reply { len, reason, .. } => {
            counted(ingress, reason)?;
            let old = Ipv4Packet::new_checked(&before[IP_OFFSET..]).unwrap();
            let reply = Ipv4Packet::new_checked(&scratch[IP_OFFSET..len]).unwrap();
            ensure!(reply.verify_checksum(), "reply IP checksum");
            ensure_eq!(reply.dst(), old.src(), "reply goes back to the sender");
            ensure_eq!(reply.total_len(), len - IP_OFFSET, "reply length");
            ensure!(
                reply.total_len() <= icmp::MAX_ERROR_LEN,
                "reply over 576 bytes"
            );
            l4_checksum_ok(&scratch[IP_OFFSET..len], None)?;
            let e = EthernetFrame::new_unchecked(&scratch[ETH_OFFSET..]);
            ensure_eq!(
                e.dst(),
                EthernetFrame::new_unchecked(&before[ETH_OFFSET..]).src(),
                "reply to the sender's MAC"
            );
            ensure_eq!(after, before, "a reply leaves the frame alone");
            return Ok(());
        }
        Verdict::Drop(reason) => {
            counted(ingress, reason)?;
            ensure_eq!(after, before, "dropped frames are not modified");
            return Ok(());
        }
        Verdict::Punt(_) => {
            ensure_eq!(after, before, "punted frames are not modified");
            return Ok(());
        }
    };
    ensure_eq!(after.len(), before.len(), "frame length");
    let old = Ipv4Packet::new_checked(&before[IP_OFFSET..]).unwrap();
    let new = Ipv4Packet::new_checked(&after[IP_OFFSET..]).unwrap();
    ensure!(new.verify_checksum(), "IPv4 header checksum");
    ensure_eq!(new.ttl(), old.ttl() - 1, "TTL");
    ensure_eq!(
        (
            new.total_len(),
            new.header_len(),
            new.protocol(),
            new.ident()
        ),
        (
            old.total_len(),
            old.header_len(),
            old.protocol(),
            old.ident()
        ),
        "lengths and identity"
    );
    ensure_eq!(
        (new.dont_frag(), new.more_frags(), new.frag_offset()),
        (old.dont_frag(), old.more_frags(), old.frag_offset()),
        "fragmentation fields"
    );
    match egress {
        // Nothing leaves with a LAN address the uplink translates (a session may translate
        // one it does not).
        Iface::Uplink(u) => {
            let up = snap.uplink(u).unwrap();
            let translated = new.src() == up.address.addr();
            ensure!(
                translated || (new.src() == old.src() && !up.translates(old.src())),
                "{} left {:?} untranslated",
                old.src(),
                u
            );
        }
        Iface::Lan => ensure!(
            snap.lan.address.contains(new.dst()),
            "{} is not on the LAN",
            new.dst()
        ),
    }
    // Inbound to a LAN address unchanged: only what the uplink does not translate (SPEC 10).
    if let Iface::Uplink(u) = ingress
        && new.dst() == old.dst()
    {
        let up = snap.uplink(u).unwrap();
        ensure!(
            !up.translates(old.dst()),
            "transit to {} via {:?}",
            old.dst(),
            u
        );
    }
    let vh_in = VnetHdr::parse(before).unwrap();
    let vh = VnetHdr::parse(after).unwrap();
    ensure_eq!(
        (vh.gso_type, vh.gso_size),
        (vh_in.gso_type, vh_in.gso_size),
        "GSO fields"
    );
    if !old.is_fragment() {
        let valid = l4_checksum_ok(
            &before[IP_OFFSET..],
            partial_field(before, old.header_len()),
        );
        if valid.is_ok() {
            l4_checksum_ok(&after[IP_OFFSET..], partial_field(after, new.header_len()))?;
        }
        if new.protocol() == proto::UDP
            && let (Ok(a), Ok(b)) = (
                UdpPacket::new_checked(new.payload()),
                UdpPacket::new_checked(old.payload()),
            )
        {
            ensure_eq!(a.len(), b.len(), "UDP length");
        }
        if let Ok(icmp) = IcmpPacket::new_checked(new.payload())
            && new.protocol() == proto::ICMP
            && icmp::is_error(icmp.msg_type())
        {
            check_quoted(egress, &old, &new, icmp.payload())?;
        }
    }
    check_session(&s.world.nat, &old, &new)?;
    let e = EthernetFrame::new_unchecked(&after[ETH_OFFSET..]);
    ensure_eq!(e.src(), snap.iface_mac(egress).unwrap(), "source MAC");
    if let Verdict::Fragment { mtu, .. } = verdict {
        ensure!(
            !new.dont_frag() && new.total_len() > mtu,
            "fragmented without need"
        );
    }
    Ok(())
}

/// The packet quoted by a forwarded ICMP error. One translated (the error was) is translated
/// like the error: it reads as sent by (to the LAN) or to (to an uplink) the endpoint the error
/// now goes to or comes from, with a right header checksum. An untranslated error may quote
/// anything.
fn check_quoted(
    egress: Iface,
    old: &Ipv4Packet<&[u8]>,
    new: &Ipv4Packet<&[u8]>,
    quote: &[u8],
) -> Result<(), String> {
    if (old.src(), old.dst()) == (new.src(), new.dst()) {
        return Ok(());
    }
    let quoted = Ipv4Packet::new_quoted(quote).map_err(|e| format!("quoted packet: {e}"))?;
    ensure!(quoted.verify_checksum(), "quoted IPv4 header checksum");
    match egress {
        Iface::Lan => ensure_eq!(quoted.src(), new.dst(), "quoted source"),
        Iface::Uplink(_) => ensure_eq!(quoted.dst(), new.src(), "quoted destination"),
    }
    Ok(())
}

/// The ports NAT keys a packet by (for an echo, its identifier as the source port of a request
/// and the destination port of a reply); none for errors, other protocols and later fragments.
pub fn nat_ports(p: &Ipv4Packet<&[u8]>) -> Option<(u16, u16)> {
    if p.frag_offset() != 0 {
        return None;
    }
    let l4 = p.payload();
    let at = |i: usize| Some(u16::from_be_bytes([*l4.get(i)?, *l4.get(i + 1)?]));
    match (p.protocol(), l4.first()) {
        (proto::TCP | proto::UDP, _) => Some((at(0)?, at(2)?)),
        (proto::ICMP, Some(&icmp::types::ECHO_REQUEST)) => Some((at(4)?, 0)),
        (proto::ICMP, Some(&icmp::types::ECHO_REPLY)) => Some((0, at(4)?)),
        _ => None,
    }
}

/// A translated packet belongs to a session: the one of its inside endpoint maps it to what it
/// now carries, and the lookup its reply will make finds that same session.
fn check_session(
    nat: &NatTable,
    old: &Ipv4Packet<&[u8]>,
    new: &Ipv4Packet<&[u8]>,
) -> Result<(), String> {
    let (Some((os, od)), Some((ns, nd))) = (nat_ports(old), nat_ports(new)) else {
        return Ok(());
    };
    let proto = old.protocol();
    // Source translated: from (inside) to (outside); destination translated: the other way.
    let mut sides = Vec::new();
    if (new.src(), ns) != (old.src(), os) {
        sides.push(((old.src(), os), (new.src(), ns), (old.dst(), od)));
    }
    if (new.dst(), nd) != (old.dst(), od) {
        sides.push(((new.dst(), nd), (old.dst(), od), (new.src(), ns)));
    }
    for ((inside, inside_port), outside, (remote, remote_port)) in sides {
        let key = FlowKey {
            proto,
            inside,
            inside_port,
            remote,
            remote_port,
        };
        let t = nat
            .peek_outbound(&key)
            .ok_or_else(|| format!("translated without a session: {key:?}"))?;
        ensure_eq!(
            (t.outside, t.outside_port),
            outside,
            "the session's outside"
        );
        let back = InboundKey {
            uplink: t.uplink,
            proto,
            outside_port: t.outside_port,
            remote,
            remote_port,
        };
        ensure_eq!(nat.peek_inbound(&back), Some(t), "the reverse lookup");
    }
    Ok(())
}

/// A drop for `reason` on `ingress`, counted as the workers count it, moves the counter of that
/// reason (shown by name) and the interface's dropped count.
fn counted(ingress: Iface, reason: DropReason) -> Result<(), String> {
    let c = Counters::new(3);
    c.rx_dropped(ingress.index(), reason);
    let t = Totals::sum([&c]);
    ensure_eq!(
        t.drop_count(reason.name()),
        1,
        "drop counter {}",
        reason.name()
    );
    ensure_eq!(t.ifaces[ingress.index()].rx_dropped, 1, "rx_dropped");
    Ok(())
}

/// Names of what `verdict` and the rewrite did, for `every_outcome_is_reached`.
pub fn outcomes(
    ingress: Iface,
    before: &[u8],
    after: &[u8],
    verdict: Verdict,
) -> Vec<&'static str> {
    let mut out = vec![match verdict {
        Verdict::Forward { egress: Iface::Lan }
            if ingress != Iface::Lan && same_ends(before, after) =>
        {
            "untranslated to the LAN"
        }
        Verdict::Forward { egress: Iface::Lan } => "forward to the LAN",
        Verdict::Forward { .. } => "forward to an uplink",
        Verdict::Fragment { .. } => "fragment",
        Verdict::Reply {
            reason: DropReason::NatNoFlow,
            ..
        } => "TCP reset",
        Verdict::Reply { .. } => "ICMP error",
        Verdict::Punt(_) => "punt",
        Verdict::NeedsNeighbour { .. } => "needs neighbour",
        Verdict::Drop(_) => "drop",
    }];
    if !matches!(
        verdict,
        Verdict::Forward { .. } | Verdict::Fragment { .. } | Verdict::NeedsNeighbour { .. }
    ) {
        return out;
    }
    let old = Ipv4Packet::new_checked(&before[IP_OFFSET..]).unwrap();
    let new = Ipv4Packet::new_checked(&after[IP_OFFSET..]).unwrap();
    if new.src() != old.src() {
        out.push("source translated");
    }
    if new.dst() != old.dst() {
        out.push("destination translated");
    }
    if new.is_fragment() {
        out.push("fragment translated");
    }
    if new.protocol() == proto::ICMP
        && let Ok(i) = IcmpPacket::new_checked(new.payload())
        && icmp::is_error(i.msg_type())
    {
        out.push("ICMP error translated");
    }
    if VnetHdr::parse(after).unwrap().needs_csum() {
        out.push("partial checksum kept");
    }
    if new.protocol() == proto::TCP
        && !new.is_fragment()
        && let Some(at) = TcpPacket::new_checked(old.payload())
            .ok()
            .and_then(|t| t.mss_offset())
        && old.payload()[at..at + 2] != new.payload()[at..at + 2]
    {
        out.push("MSS clamped");
    }
    out
}

/// Source and destination addresses unchanged.
fn same_ends(before: &[u8], after: &[u8]) -> bool {
    let old = Ipv4Packet::new_checked(&before[IP_OFFSET..]).unwrap();
    let new = Ipv4Packet::new_checked(&after[IP_OFFSET..]).unwrap();
    (old.src(), old.dst()) == (new.src(), new.dst())
}
