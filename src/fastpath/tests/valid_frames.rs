//! Property tests over structurally valid frames with random fields. Every frame carries right
//! IPv4 and transport checksums, most carry the ingress interface's MAC, and the NAT and
//! fragment tables hold flows the frames can hit, so cases get past parsing into the decisions
//! and the rewrite. `outcomes_keep_frames_valid` checks what each outcome must satisfy;
//! `every_outcome_is_reached` shows that the generator reaches all of them.

use std::collections::BTreeMap;

use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use super::*;
use crate::nat::{FlowKey, FragKey, Translation};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::proto;
use crate::wire::tcp::{self, TcpPacket};
use crate::wire::udp::UdpPacket;
use crate::wire::vnet::gso;

const HOST2: [u8; 4] = [192, 168, 0, 20];
const OUTSIDE_B: [u8; 4] = [172, 17, 3, 1];

const LAN_ROUTER: [u8; 4] = [192, 168, 0, 1];
const B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
/// Idents of the fragmented datagrams the fragment table knows, outbound and inbound.
const FRAG_OUT: u16 = 0x4242;
const FRAG_IN: u16 = 0x4343;

/// (proto, inside, inside port, remote, remote port, uplink).
type Flow = (u8, [u8; 4], u16, [u8; 4], u16, u8);

/// The NAT sessions seeded before each case. HOST2 has no neighbour entry, so replies to it
/// wait for ARP.
const FLOWS: [Flow; 5] = [
    (proto::TCP, HOST, 40000, SERVER, 80, 0),
    (proto::UDP, HOST, 5353, SERVER, 53, 0),
    (proto::ICMP, HOST, 777, SERVER, 0, 0),
    (proto::UDP, HOST2, 6000, [172, 19, 0, 9], 123, 1),
    (proto::TCP, HOST2, 41000, SERVER, 443, 1),
];

fn now() -> Instant {
    Instant::from_millis(1000)
}

struct Seeded {
    world: World,
    flows: Vec<(FlowKey, Translation)>,
}

/// A world with uplink A's MTU at 1400 (so large packets fragment or get "fragmentation
/// needed"), uplink B not translating HOST, the sessions of `FLOWS` and a fragmented UDP
/// datagram each way.
fn seeded() -> Seeded {
    let mut world = world(1400);
    // Uplink B translates HOST2 but not HOST, whose replies it routes as they are (SPEC 10).
    world.snap.uplinks[1].nat_sources = vec![p("192.168.0.16/28")];
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
    Seeded { world, flows }
}

#[derive(Debug, Clone, Copy)]
enum Transport {
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
enum Frag {
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
struct Ends {
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
}

#[derive(Debug, Clone)]
struct Case {
    /// 0 = LAN, 1 = uplink A, 2 = uplink B (a seeded flow arrives on its own uplink).
    side: u8,
    /// A seeded flow whose endpoints the packet takes (for an ICMP error: the packet it quotes).
    flow: Option<usize>,
    transport: Transport,
    ends: Ends,
    ttl: u8,
    df: bool,
    frag: Frag,
    ident: u16,
    payload: Vec<u8>,
    /// NEEDS_CSUM with a partial checksum, as the kernel may hand a whole packet to a TAP.
    partial: bool,
    gso: (u8, u16),
    our_mac: bool,
}

fn addr() -> impl Strategy<Value = [u8; 4]> {
    prop_oneof![
        Just(HOST),
        Just(HOST2),
        Just(SERVER),
        Just(OUTSIDE),
        Just(OUTSIDE_B),
        Just(PE_A_IP),
        Just(LAN_ROUTER),
        any::<[u8; 4]>(),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![Just(80u16), Just(53), Just(40000), any::<u16>()]
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        3 => (any::<u8>(), any::<bool>()).prop_map(|(flags, mss)| Transport::Tcp {
            flags: flags & 0x3f,
            mss
        }),
        2 => Just(Transport::Udp),
        1 => Just(Transport::EchoRequest),
        1 => Just(Transport::EchoReply),
        2 => prop_oneof![Just((3u8, 3u8)), Just((3, 4)), Just((3, 1)), Just((11, 0))]
            .prop_map(|(msg_type, code)| Transport::Error { msg_type, code }),
        1 => Just(Transport::Other),
    ]
}

fn frag() -> impl Strategy<Value = Frag> {
    prop_oneof![
        6 => Just(Frag::Whole),
        1 => Just(Frag::First),
        1 => (any::<bool>(), 1..200u16).prop_map(|(seeded, offset)| Frag::Later { seeded, offset }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let ends = (addr(), port(), addr(), port()).prop_map(|(src, sport, dst, dport)| Ends {
        src,
        sport,
        dst,
        dport,
    });
    let ip = (
        prop_oneof![Just(1u8), Just(2), Just(64), any::<u8>()],
        any::<bool>(),
        frag(),
        any::<u16>(),
    );
    let payload = prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 1300..1480),
    ];
    let vnet = (
        any::<bool>(),
        prop_oneof![
            3 => Just((gso::NONE, 0u16)),
            1 => (Just(gso::TCPV4), 0..2000u16),
            1 => (Just(gso::UDP), 0..2000u16),
        ],
        proptest::bool::weighted(0.95),
    );
    (
        0..3u8,
        proptest::option::weighted(0.6, 0..FLOWS.len()),
        transport(),
        ends,
        ip,
        payload,
        vnet,
    )
        .prop_map(
            |(side, flow, transport, ends, (ttl, df, frag, ident), payload, vnet)| Case {
                side,
                flow,
                transport,
                ends,
                ttl,
                df,
                frag,
                ident,
                payload,
                partial: vnet.0,
                gso: vnet.1,
                our_mac: vnet.2,
            },
        )
}

fn proto_of(t: Transport) -> u8 {
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
fn ip_packet(t: Transport, e: Ends, ttl: u8, payload: &[u8]) -> Vec<u8> {
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
fn build(c: &Case, s: &Seeded) -> (Iface, Vec<u8>) {
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
fn l4_checksum_ok(ip: &[u8], partial: Option<usize>) -> Result<(), TestCaseError> {
    let p = Ipv4Packet::new_checked(ip).unwrap();
    let (src, dst, protocol) = (p.src(), p.dst(), p.protocol());
    let mut seg = p.payload().to_vec();
    if let Some(at) = partial {
        let c = checksum::checksum(&seg);
        seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let pseudo = checksum::pseudo_header_sum(src, dst, protocol, seg.len() as u16);
    match protocol {
        proto::TCP => {
            let total = checksum::add(pseudo, checksum::sum(&seg));
            prop_assert_eq!(checksum::fold(total), 0xffff, "TCP checksum");
        }
        // Zero: the sender computed no checksum.
        proto::UDP if field(&seg, 6) != 0 => {
            let total = checksum::add(pseudo, checksum::sum(&seg));
            prop_assert_eq!(checksum::fold(total), 0xffff, "UDP checksum");
        }
        proto::ICMP => prop_assert_eq!(checksum::checksum(&seg), 0, "ICMP checksum"),
        _ => {}
    }
    Ok(())
}

/// What the outcome of each case must satisfy.
fn check(
    s: &Seeded,
    ingress: Iface,
    before: &[u8],
    after: &[u8],
    verdict: Verdict,
    scratch: &[u8],
) -> Result<(), TestCaseError> {
    let snap = &s.world.snap;
    let egress = match verdict {
        Verdict::Forward { egress }
        | Verdict::Fragment { egress, .. }
        | Verdict::NeedsNeighbour { egress, .. } => egress,
        Verdict::Reply { len, .. } => {
            let old = Ipv4Packet::new_checked(&before[IP_OFFSET..]).unwrap();
            let reply = Ipv4Packet::new_checked(&scratch[IP_OFFSET..len]).unwrap();
            prop_assert!(reply.verify_checksum(), "reply IP checksum");
            prop_assert_eq!(reply.dst(), old.src(), "reply goes back to the sender");
            prop_assert_eq!(reply.total_len(), len - IP_OFFSET);
            l4_checksum_ok(&scratch[IP_OFFSET..len], None)?;
            let e = EthernetFrame::new_unchecked(&scratch[ETH_OFFSET..]);
            prop_assert_eq!(
                e.dst(),
                EthernetFrame::new_unchecked(&before[ETH_OFFSET..]).src()
            );
            prop_assert_eq!(after, before, "a reply leaves the frame alone");
            return Ok(());
        }
        Verdict::Punt(_) | Verdict::Drop(_) => {
            prop_assert_eq!(after, before, "punted or dropped frames are not modified");
            return Ok(());
        }
    };
    prop_assert_eq!(after.len(), before.len());
    let old = Ipv4Packet::new_checked(&before[IP_OFFSET..]).unwrap();
    let new = Ipv4Packet::new_checked(&after[IP_OFFSET..]).unwrap();
    prop_assert!(new.verify_checksum(), "IPv4 header checksum");
    prop_assert_eq!(new.ttl(), old.ttl() - 1, "TTL");
    prop_assert_eq!(
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
    prop_assert_eq!(
        (new.dont_frag(), new.more_frags(), new.frag_offset()),
        (old.dont_frag(), old.more_frags(), old.frag_offset())
    );
    match egress {
        // Nothing leaves with a LAN address the uplink translates (a session may translate
        // one it does not).
        Iface::Uplink(u) => {
            let up = snap.uplink(u).unwrap();
            let translated = new.src() == up.address.addr();
            prop_assert!(
                translated || (new.src() == old.src() && !up.translates(old.src())),
                "{} left {:?} untranslated",
                old.src(),
                u
            );
        }
        Iface::Lan => prop_assert!(snap.lan.address.contains(new.dst())),
    }
    // Inbound to a LAN address unchanged: only what the uplink does not translate (SPEC 10).
    if let Iface::Uplink(u) = ingress
        && new.dst() == old.dst()
    {
        let up = snap.uplink(u).unwrap();
        prop_assert!(
            !up.translates(old.dst()),
            "transit to {} via {:?}",
            old.dst(),
            u
        );
    }
    let vh_in = VnetHdr::parse(before).unwrap();
    let vh = VnetHdr::parse(after).unwrap();
    prop_assert_eq!((vh.gso_type, vh.gso_size), (vh_in.gso_type, vh_in.gso_size));
    if !old.is_fragment() {
        let partial = (vh.needs_csum() && vh.csum_start as usize == ethernet::HEADER_LEN + 20)
            .then_some(vh.csum_offset as usize);
        l4_checksum_ok(&after[IP_OFFSET..], partial)?;
        if new.protocol() == proto::UDP {
            let udp = UdpPacket::new_checked(new.payload()).unwrap();
            prop_assert_eq!(udp.len(), new.payload().len(), "UDP length");
        }
        if let Ok(icmp) = IcmpPacket::new_checked(new.payload())
            && new.protocol() == proto::ICMP
            && icmp::is_error(icmp.msg_type())
        {
            let quoted = Ipv4Packet::new_quoted(icmp.payload()).unwrap();
            prop_assert!(quoted.verify_checksum(), "quoted IPv4 header checksum");
            // The quoted packet is translated like the error: it reads as sent by (to the
            // LAN) or to (to an uplink) the endpoint the error now goes to or comes from.
            match egress {
                Iface::Lan => prop_assert_eq!(quoted.src(), new.dst(), "quoted source"),
                Iface::Uplink(_) => prop_assert_eq!(quoted.dst(), new.src(), "quoted destination"),
            }
        }
    }
    let e = EthernetFrame::new_unchecked(&after[ETH_OFFSET..]);
    prop_assert_eq!(e.src(), snap.iface_mac(egress).unwrap());
    if let Verdict::Fragment { mtu, .. } = verdict {
        prop_assert!(!new.dont_frag() && new.total_len() > mtu);
    }
    Ok(())
}

/// Names of what `verdict` and the rewrite did, for `every_outcome_is_reached`.
fn outcomes(ingress: Iface, before: &[u8], after: &[u8], verdict: Verdict) -> Vec<&'static str> {
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

fn run_case(c: &Case) -> Result<Vec<&'static str>, TestCaseError> {
    let s = seeded();
    let (ingress, before) = build(c, &s);
    let mut after = before.clone();
    let (verdict, scratch) = run(&s.world, &mut after, ingress);
    check(&s, ingress, &before, &after, verdict, &scratch)?;
    Ok(outcomes(ingress, &before, &after, verdict))
}

proptest! {
    #[test]
    fn outcomes_keep_frames_valid(c in case()) {
        run_case(&c)?;
    }
}

#[test]
fn every_outcome_is_reached() {
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..2000 {
        let c = strategy.new_tree(&mut runner).unwrap().current();
        for o in run_case(&c).unwrap_or_else(|e| panic!("{c:?}: {e}")) {
            *seen.entry(o).or_default() += 1;
        }
    }
    // Shown with --nocapture: how the cases spread over the outcomes.
    println!("{seen:#?}");
    let all = [
        "forward to the LAN",
        "untranslated to the LAN",
        "forward to an uplink",
        "fragment",
        "TCP reset",
        "ICMP error",
        "punt",
        "needs neighbour",
        "drop",
        "source translated",
        "destination translated",
        "fragment translated",
        "ICMP error translated",
        "partial checksum kept",
        "MSS clamped",
    ];
    for o in all {
        assert!(
            seen.contains_key(o),
            "never reached: {o}; reached: {seen:?}"
        );
    }
    assert!(
        seen["drop"] * 10 < 2000 * 6,
        "most cases should get past the filters: {seen:?}"
    );
}
