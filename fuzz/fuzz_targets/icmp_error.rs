//! ICMP errors (`wire::icmp::build_error`, the fast path's replies and its translation of
//! errors quoting a NATed packet). Three kinds of input:
//! - any bytes as the offending packet, with any message and buffer size: an error fits 576
//!   bytes (and its buffer), verifies, and quotes a prefix of the packet, at least its header
//!   and 8 bytes when there are that many; a 576-byte buffer always holds one;
//! - a valid frame made to expire (TTL 1) or to be too big with DF: the router's time exceeded,
//!   unreachable or fragmentation needed is all of the above, from the router's address on the
//!   ingress, with the type, code and next-hop MTU of its reason;
//! - an error quoting a packet of a seeded session, from the LAN or from the Internet: it is
//!   forwarded, and the header it quotes is translated to match the session.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mhrouter::Iface;
use mhrouter::counters::DropReason;
use mhrouter::fastpath::Verdict;
use mhrouter::fuzz::{Bytes, valid_frames, with_seeded};
use mhrouter::wire::frame::IP_OFFSET;
use mhrouter::wire::icmp::{self, ErrorRepr, IcmpPacket, MAX_ERROR_LEN, codes, types};
use mhrouter::wire::ipv4::Ipv4Packet;
use mhrouter::wire::vnet::gso;
use std::net::Ipv4Addr;
use valid_frames::Frag;

/// An ICMP error of `len` bytes that must verify and quote a prefix of `offending`: checked
/// and returned as (type, code, rest of header, quoted length).
fn verify_error(error: &[u8], src: Ipv4Addr, dst: Ipv4Addr, offending: &[u8]) -> (u8, u8, u32) {
    assert!(
        error.len() <= MAX_ERROR_LEN,
        "error of {} bytes",
        error.len()
    );
    let ip = Ipv4Packet::new_checked(error).expect("the error parses");
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    assert_eq!(ip.total_len(), error.len());
    assert_eq!((ip.src(), ip.dst(), ip.protocol()), (src, dst, 1));
    let msg = IcmpPacket::new_checked(ip.payload()).expect("ICMP header");
    assert!(msg.verify_checksum(), "ICMP checksum");
    let quote = msg.payload();
    assert_eq!(quote, &offending[..quote.len()], "quotes a prefix");
    let (available, must) = match Ipv4Packet::new_quoted(offending) {
        Ok(p) => (p.total_len().min(offending.len()), p.header_len() + 8),
        Err(_) => (offending.len(), 28),
    };
    assert!(quote.len() >= must.min(available), "quotes too little");
    assert!(quote.len() <= available, "quotes past the packet");
    (msg.msg_type(), msg.code(), msg.rest_of_header())
}

fn built(b: &mut Bytes) {
    let repr = ErrorRepr {
        src: b.addr().into(),
        dst: b.addr().into(),
        msg_type: b.pick(&[
            types::DEST_UNREACH,
            types::TIME_EXCEEDED,
            types::PARAM_PROBLEM,
        ]),
        code: b.u8(),
        rest_of_header: u32::from(b.u16()) << 16 | u32::from(b.u16()),
    };
    let room = usize::from(b.u16() % 700);
    let offending = b.take(usize::MAX);
    let mut out = vec![0u8; room];
    match icmp::build_error(&mut out, &repr, offending) {
        Ok(len) => {
            assert!(len <= room);
            let got = verify_error(&out[..len], repr.src, repr.dst, offending);
            assert_eq!(got, (repr.msg_type, repr.code, repr.rest_of_header));
        }
        Err(_) => {
            let mut full = [0u8; MAX_ERROR_LEN];
            icmp::build_error(&mut full, &repr, offending).expect("576 bytes hold any error");
        }
    }
}

/// What the router answers a frame that expired or was too big with.
fn router_error(b: &mut Bytes) {
    let side = b.u8() % 3;
    let expire = b.bool();
    let mut case = b.case(side);
    if expire {
        case.ttl = 1;
    } else {
        case.df = true;
        case.frag = Frag::Whole;
        case.gso = (gso::NONE, 0);
        case.payload = vec![0x5a; 1400 + usize::from(b.u8() % 80)];
    }
    with_seeded(|s| {
        let (ingress, before) = valid_frames::build(&case, s);
        let mut after = before.clone();
        let (verdict, scratch) = valid_frames::run(&s.world, &mut after, ingress);
        valid_frames::check(s, ingress, &before, &after, verdict, &scratch)
            .unwrap_or_else(|e| panic!("{verdict:?}: {e}"));
        let Verdict::Reply { len, reason, .. } = verdict else {
            return;
        };
        let offending = &before[IP_OFFSET..];
        let old = Ipv4Packet::new_checked(offending).unwrap();
        let offending = &offending[..old.total_len()];
        let router = s.world.snap.iface_addr(ingress).unwrap();
        let (t, code, rest) = verify_error(&scratch[IP_OFFSET..len], router, old.src(), offending);
        match reason {
            DropReason::TtlExceeded => {
                assert_eq!(
                    (t, code, rest),
                    (types::TIME_EXCEEDED, codes::TTL_EXCEEDED, 0)
                )
            }
            DropReason::FragNeeded => {
                assert_eq!((t, code), (types::DEST_UNREACH, codes::FRAG_NEEDED));
                let mtu = rest as usize & 0xffff;
                assert!(
                    [1400, 1500].contains(&mtu) && mtu < old.total_len(),
                    "MTU {mtu}"
                );
            }
            DropReason::NoRoute => {
                assert_eq!(
                    (t, code, rest),
                    (types::DEST_UNREACH, codes::NET_UNREACH, 0)
                )
            }
            // TCP resets are the fast path's other reply.
            DropReason::NatNoFlow => assert_eq!(old.protocol(), 6),
            other => panic!("a reply for {other:?}"),
        }
    });
}

/// An error about a packet of a seeded session, from the LAN or from the Internet.
fn translated_error(b: &mut Bytes) {
    let side = b.u8() % 3;
    let mut case = b.case(side);
    let flow = usize::from(b.u8()) % valid_frames::FLOWS.len();
    case.flow = Some(flow);
    case.transport = b.error();
    case.ttl = case.ttl.max(2);
    case.frag = Frag::Whole;
    with_seeded(|s| {
        let (key, t) = s.flows[flow];
        let (ingress, before) = valid_frames::build(&case, s);
        let mut after = before.clone();
        let (verdict, scratch) = valid_frames::run(&s.world, &mut after, ingress);
        valid_frames::check(s, ingress, &before, &after, verdict, &scratch)
            .unwrap_or_else(|e| panic!("{verdict:?}: {e}"));
        let egress = match verdict {
            Verdict::Forward { egress } | Verdict::NeedsNeighbour { egress, .. } => egress,
            // Nothing else may stop an error of a session that arrives where it should.
            _ if case.our_mac && case.gso.0 == gso::NONE => {
                panic!("{verdict:?} for an error about {key:?} on {ingress:?}")
            }
            _ => return,
        };
        let new = Ipv4Packet::new_checked(&after[IP_OFFSET..]).unwrap();
        let msg = IcmpPacket::new_checked(new.payload()).unwrap();
        let quoted = Ipv4Packet::new_quoted(msg.payload()).expect("quoted packet");
        assert!(quoted.verify_checksum(), "quoted header checksum");
        let ports = valid_frames::nat_ports(&quoted).expect("quoted ports");
        let (inside, outside, remote) = (
            (key.inside, key.inside_port),
            (t.outside, t.outside_port),
            (key.remote, key.remote_port),
        );
        let q = |(a, pa): (Ipv4Addr, u16), (b, pb): (Ipv4Addr, u16)| (a, pa, b, pb);
        let quoted_ends = q((quoted.src(), ports.0), (quoted.dst(), ports.1));
        match egress {
            // From the LAN host, about a packet the remote sent it: as sent to the outside.
            Iface::Uplink(u) => {
                assert_eq!(u, t.uplink, "leaves by the session's uplink");
                assert_eq!(new.src(), t.outside);
                assert_eq!(quoted_ends, q(remote, outside), "quoted header");
            }
            // From the Internet, about a packet the host sent: as the host sent it.
            Iface::Lan => {
                assert_eq!(ingress, Iface::Uplink(t.uplink));
                assert_eq!(new.dst(), key.inside);
                assert_eq!(quoted_ends, q(inside, remote), "quoted header");
            }
        }
    });
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    match b.u8() % 3 {
        0 => built(&mut b),
        1 => router_error(&mut b),
        _ => translated_error(&mut b),
    }
});
