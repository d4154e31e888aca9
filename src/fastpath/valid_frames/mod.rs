//! Structurally valid frames with random fields, shared by the fast path's property tests
//! (`tests/valid_frames.rs`) and its fuzz targets (through `crate::fuzz`). Every frame carries
//! right IPv4 and transport checksums, most carry the ingress interface's MAC, and the NAT and
//! fragment tables hold flows the frames can hit, so cases get past parsing into the decisions
//! and the rewrite. `check` says what each outcome must satisfy, `outcomes` names it.
//!
//! Compiled for tests and with `--cfg fuzzing` only; etherparse builds the packets, an
//! implementation independent of the one under test.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::{Env, FastPath, SCRATCH_LEN, Verdict, prefetch_inbound_session, prefetch_session};
use crate::clock::Instant;
use crate::nat::{FlowKey, FragKey, FragTable, NatParams, NatTable, Translation};
use crate::prefix::Ipv4Prefix;
use crate::route::{Health, Interfaces, RouteTable, StaticRoute, UplinkIf};
use crate::snapshot::{LanState, Neighbours, ProbeFlow, Snapshot, UplinkState};
use crate::wire::checksum;
use crate::wire::ethernet::{self, MacAddr};
use crate::wire::ipv4::{Ipv4Packet, proto};
use crate::wire::tcp::{self};
use crate::wire::vnet::{self, VnetHdr};
use crate::{Iface, UplinkId};

mod check;
pub mod v6;
pub use check::{check, frame_valid, nat_ports, outcomes};

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
            ipv6: Some(v6::state()),
        },
        neighbours: Neighbours::new(
            HashMap::from([((Iface::Lan, Ipv4Addr::from(HOST)), HOST_MAC)]),
            vec![(Ipv4Addr::new(172, 16, 1, 2), Some(PE_A)); 2],
        )
        .with_v6(v6::neighbours()),
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

/// Runs one frame through a fresh fast path at `now()` as a worker with a large NAT table does
/// (the prefetch passes, then `process`): the verdict and the scratch buffer.
pub fn run(w: &World, frame: &mut [u8], ingress: Iface) -> (Verdict, Vec<u8>) {
    let env = Env {
        snap: &w.snap,
        neighbours: &w.neighbours,
        nat: &w.nat,
        frags: &w.frags,
        now: now(),
    };
    let mut scratch = vec![0u8; SCRATCH_LEN];
    prefetch_session(&env, frame, ingress);
    prefetch_inbound_session(&env, frame, ingress);
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
