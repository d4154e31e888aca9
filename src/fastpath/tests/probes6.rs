//! ICMPv6 probe replies on an uplink (SPEC 34, 35): told by (uplink, target, id) before
//! anything else and handed to the probe thread; errors only when they quote a request that
//! left from the router's address to the probe's target with a probe's id.

use std::net::Ipv6Addr;

use super::*;
use crate::fastpath::valid_frames::B_MAC;
use crate::fastpath::valid_frames::v6::{A, B, PE_B};
use crate::snapshot::ProbeFlow;
use crate::wire::icmpv6::{self, EchoRepr, ErrorRepr, types};
use crate::wire::ipv6::{self, next_header};

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The router's `address6` on A in the fast path's world, and the probe's target.
fn me_a() -> Ipv6Addr {
    a6("2001:db8:ffa::1")
}
fn target() -> Ipv6Addr {
    a6("2001:db8:18::6")
}

/// The lab world with an ICMPv6 probe of uplink A to `target()`, id `PROBE_ID`.
fn probe_world() -> World {
    let mut w = world(1500);
    w.snap.probes.push(ProbeFlow {
        uplink: UplinkId(0),
        proto: next_header::ICMPV6,
        target: target().into(),
        port: PROBE_ID,
    });
    w
}

fn eth6(dst: MacAddr, src: MacAddr, ip_packet: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; vnet::LEN];
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(ip_packet);
    f
}

fn echo(src: Ipv6Addr, dst: Ipv6Addr, msg_type: u8, ident: u16) -> Vec<u8> {
    let mut p = vec![0u8; 100];
    let echo = EchoRepr {
        msg_type,
        ident,
        seq: 9,
    };
    let n = icmpv6::build_echo(&mut p, &ipv6::OwnHeader::new(src, dst), &echo, &[1; 8]).unwrap();
    p.truncate(n);
    p
}

fn error_quoting(dst: Ipv6Addr, quoted: &[u8]) -> Vec<u8> {
    let repr = ErrorRepr {
        src: a6("2001:db8:ffa::2"),
        dst,
        msg_type: types::DEST_UNREACH,
        code: 0,
        rest_of_header: 0,
    };
    let mut p = vec![0u8; 600];
    let n = icmpv6::build_error(&mut p, &repr, quoted).unwrap();
    p.truncate(n);
    p
}

#[test]
fn an_icmpv6_probe_reply_goes_to_the_probes() {
    let w = probe_world();
    let mut reply = eth6(
        A_MAC,
        PE_A,
        &echo(target(), me_a(), types::ECHO_REPLY, PROBE_ID),
    );
    assert_eq!(run(&w, &mut reply, A).0, Verdict::Punt(PuntClass::Probe));
    let other = a6("2001:db8:99::9");
    let me_b = a6("2001:db8:ffb::1");
    for (iface, mac, packet, what) in [
        (
            A,
            A_MAC,
            echo(target(), me_a(), types::ECHO_REPLY, PROBE_ID + 1),
            "another id",
        ),
        (
            A,
            A_MAC,
            echo(other, me_a(), types::ECHO_REPLY, PROBE_ID),
            "another source",
        ),
        (
            B,
            B_MAC,
            echo(target(), me_b, types::ECHO_REPLY, PROBE_ID),
            "another uplink",
        ),
    ] {
        let mut f = eth6(mac, PE_B, &packet);
        assert_eq!(
            run(&w, &mut f, iface).0,
            Verdict::Drop(DropReason::LocalUnhandled),
            "{what}"
        );
    }
    // Without the probe, the same reply is nothing the router expects.
    let mut reply = eth6(
        A_MAC,
        PE_A,
        &echo(target(), me_a(), types::ECHO_REPLY, PROBE_ID),
    );
    assert_eq!(
        run(&world(1500), &mut reply, A).0,
        Verdict::Drop(DropReason::LocalUnhandled)
    );
}

#[test]
fn an_icmpv6_error_goes_to_the_probes_only_when_it_quotes_a_probe() {
    let w = probe_world();
    let request = echo(me_a(), target(), types::ECHO_REQUEST, PROBE_ID);
    let mut err = eth6(A_MAC, PE_A, &error_quoting(me_a(), &request));
    assert_eq!(run(&w, &mut err, A).0, Verdict::Punt(PuntClass::Probe));
    let other = a6("2001:db8:99::9");
    for (quoted, what) in [
        (
            echo(me_a(), target(), types::ECHO_REQUEST, PROBE_ID + 1),
            "another id",
        ),
        (
            echo(me_a(), other, types::ECHO_REQUEST, PROBE_ID),
            "another target",
        ),
        (
            echo(other, target(), types::ECHO_REQUEST, PROBE_ID),
            "did not leave from the router",
        ),
    ] {
        let mut f = eth6(A_MAC, PE_A, &error_quoting(me_a(), &quoted));
        assert_eq!(
            run(&w, &mut f, A).0,
            Verdict::Drop(DropReason::LocalUnhandled),
            "{what}"
        );
    }
}

/// A TCP probe's SYN-ACK over IPv6 (SPEC 34, 35): told by (uplink, TCP, target, port) before
/// anything else; an error quoting its SYN too.
#[test]
fn a_tcp_probe_reply_over_ipv6_goes_to_the_probes() {
    let mut w = world(1500);
    w.snap.probes.push(ProbeFlow {
        uplink: UplinkId(0),
        proto: next_header::TCP,
        target: target().into(),
        port: PROBE_ID,
    });
    let segment = |src: Ipv6Addr, dst: Ipv6Addr, sport, dport| {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), 64)
            .tcp(sport, dport, 7, 1000)
            .syn()
            .ack(1)
            .write(&mut out, &[])
            .unwrap();
        out
    };
    let mut reply = eth6(A_MAC, PE_A, &segment(target(), me_a(), 5201, PROBE_ID));
    assert_eq!(run(&w, &mut reply, A).0, Verdict::Punt(PuntClass::Probe));
    let mut other = eth6(A_MAC, PE_A, &segment(target(), me_a(), 5201, PROBE_ID + 1));
    assert_eq!(
        run(&w, &mut other, A).0,
        Verdict::Drop(DropReason::LocalUnhandled)
    );
    let syn = segment(me_a(), target(), PROBE_ID, 5201);
    let mut err = eth6(A_MAC, PE_A, &error_quoting(me_a(), &syn));
    assert_eq!(run(&w, &mut err, A).0, Verdict::Punt(PuntClass::Probe));
}
