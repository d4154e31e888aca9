//! Probes to IPv6 targets (SPEC 34) on a simulated clock: an ICMPv6 echo from the uplink's
//! `address6` to its `next_hop6`'s MAC on its own uplink, and only the genuine reply (or an
//! ICMPv6 error quoting the outstanding request) counts.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use super::*;
use crate::control::fixtures::*;
use crate::probe::stats::ProbeResult;
use crate::wire::ethernet::{self, EthernetFrame};
use crate::wire::frame::ETH_OFFSET;
use crate::wire::icmpv6::{self, EchoRepr, ErrorRepr, Icmpv6Packet, types};
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::tcp;

const TARGET6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 6);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffa, 0, 0, 0, 0, 2);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffb, 0, 0, 0, 0, 2);
const PE_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffa, 0, 0, 0, 0, 1);
const PE_A6_MAC: MacAddr = MacAddr([2, 0, 0, 0, 6, 0xa]);
const PE_B6_MAC: MacAddr = MacAddr([2, 0, 0, 0, 6, 0xb]);

fn probe6(name: &str, uplink: &str, dscp: u8) -> ProbeConfig {
    ProbeConfig {
        name: name.into(),
        kind: ProbeKind::IcmpEcho { payload_size: 16 },
        uplink: uplink.into(),
        target: IpAddr::V6(TARGET6),
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        threshold: Duration::from_millis(200),
        dscp,
    }
}

/// Both uplinks dual-stack; IPv4 next hops resolved too (an IPv6 probe must not use them).
fn uplinks() -> Vec<ProbeUplink> {
    let up = |addr, mac, nh4, addr6, nh6| ProbeUplink {
        addr,
        mac,
        next_hop_mac: Some(nh4),
        carrier: true,
        v6: Some(ProbeUplink6 {
            addr: addr6,
            next_hop_mac: Some(nh6),
        }),
    };
    vec![
        up(A_IP, A_MAC, PE_A_MAC, A6, PE_A6_MAC),
        up(B_IP, B_MAC, MacAddr([2, 0, 0, 0, 1, 0xb]), B6, PE_B6_MAC),
    ]
}

fn engine(defs: Vec<ProbeConfig>, ups: Vec<ProbeUplink>) -> ProbeEngine {
    let mut e = ProbeEngine::new(defs, |n| usize::from(n == "isp-b"), 0, t(0));
    e.set_uplinks(ups);
    e
}

fn first_attempt(e: &mut ProbeEngine) -> (Transmit, Instant) {
    let due = e.poll_timeout().expect("a probe is scheduled");
    e.handle_timeout(due);
    (e.poll_transmit().expect("a probe frame"), due)
}

/// (ident, seq) of an ICMPv6 echo request from `src` to the target, after checking it.
fn request_ids(t: &Transmit, src: Ipv6Addr) -> (u16, u16) {
    let ip = Ipv6Packet::new_checked(&t.frame[IP_OFFSET..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (src, TARGET6));
    let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(m.verify_checksum(ip.src(), ip.dst()), "ICMPv6 checksum");
    assert_eq!(m.msg_type(), types::ECHO_REQUEST);
    (m.ident(), m.seq_no())
}

fn ipv6_frame(packet: &[u8]) -> Vec<u8> {
    frame(A_MAC, PE_A6_MAC, ethernet::ethertype::IPV6, packet)
}

/// An ICMPv6 echo message from `src` to `dst` (checksum filled).
fn echo6(src: Ipv6Addr, dst: Ipv6Addr, msg_type: u8, ident: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 100];
    let echo = EchoRepr {
        msg_type,
        ident,
        seq,
    };
    let ip = ipv6::OwnHeader::new(src, dst);
    let n = icmpv6::build_echo(&mut p, &ip, &echo, &[0; 16]).unwrap();
    ipv6_frame(&p[..n])
}

fn reply(ident: u16, seq: u16) -> Vec<u8> {
    echo6(TARGET6, A6, types::ECHO_REPLY, ident, seq)
}

fn results(e: &mut ProbeEngine) -> Vec<(usize, Option<ProbeResult>)> {
    let done: Vec<usize> = std::iter::from_fn(|| e.poll_result()).collect();
    done.into_iter()
        .map(|i| (i, e.probes()[i].stats.last()))
        .collect()
}

#[test]
fn an_ipv6_probe_leaves_its_uplink_from_address6_to_next_hop6() {
    let mut e = engine(vec![probe6("a6", "isp-a", 46)], uplinks());
    let (tx, _) = first_attempt(&mut e);
    assert_eq!(tx.iface, A);
    let eth = EthernetFrame::new_checked(&tx.frame[ETH_OFFSET..]).unwrap();
    assert_eq!((eth.src(), eth.dst()), (A_MAC, PE_A6_MAC));
    assert_eq!(eth.ethertype(), ethernet::ethertype::IPV6);
    request_ids(&tx, A6);
    let ip = Ipv6Packet::new_checked(&tx.frame[IP_OFFSET..]).unwrap();
    assert_eq!(ip.traffic_class(), 46 << 2, "DSCP EF in the traffic class");
    assert_eq!(ip.payload_len(), icmpv6::HEADER_LEN + 16);

    let mut e = engine(vec![probe6("b6", "isp-b", 0)], uplinks());
    let (tx, _) = first_attempt(&mut e);
    assert_eq!(tx.iface, B);
    let eth = EthernetFrame::new_checked(&tx.frame[ETH_OFFSET..]).unwrap();
    assert_eq!((eth.src(), eth.dst()), (B_MAC, PE_B6_MAC));
    request_ids(&tx, B6);
}

#[test]
fn the_genuine_reply_counts_timed_at_receipt_and_only_once() {
    let mut e = engine(vec![probe6("a6", "isp-a", 0)], uplinks());
    let (tx, sent) = first_attempt(&mut e);
    let (ident, seq) = request_ids(&tx, A6);
    let received = sent + Duration::from_millis(37);
    assert!(e.handle_reply(UplinkId(0), &reply(ident, seq), received));
    assert_eq!(
        results(&mut e),
        vec![(0, Some(ProbeResult::Ok(Duration::from_millis(37))))]
    );
    assert!(
        !e.handle_reply(UplinkId(0), &reply(ident, seq), received),
        "a duplicate"
    );
}

#[test]
fn forged_and_misdirected_ipv6_replies_are_ignored() {
    let mut e = engine(vec![probe6("a6", "isp-a", 0)], uplinks());
    let (tx, sent) = first_attempt(&mut e);
    let (ident, seq) = request_ids(&tx, A6);
    let at = sent + Duration::from_millis(10);
    let elsewhere = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 9);
    let mut bad_sum = reply(ident, seq);
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 1;
    for (uplink, frame, what) in [
        (1, reply(ident, seq), "another uplink"),
        (0, reply(ident ^ 1, seq), "another id"),
        (0, reply(ident, seq.wrapping_sub(1)), "another sequence"),
        (
            0,
            echo6(elsewhere, A6, types::ECHO_REPLY, ident, seq),
            "another source",
        ),
        (
            0,
            echo6(TARGET6, B6, types::ECHO_REPLY, ident, seq),
            "to another address",
        ),
        (
            0,
            echo6(TARGET6, A6, types::ECHO_REQUEST, ident, seq),
            "a request",
        ),
        (0, bad_sum, "a bad checksum"),
        (0, ipv6_frame(&[0x60, 0, 0, 0]), "truncated"),
    ] {
        assert!(!e.handle_reply(UplinkId(uplink), &frame, at), "{what}");
    }
    assert_eq!(results(&mut e), vec![]);
    assert!(e.handle_reply(UplinkId(0), &reply(ident, seq), at));
}

/// An IPv4 probe and an IPv6 probe of one uplink with the same id and sequence do not answer
/// each other: the family is part of the match.
#[test]
fn an_ipv4_reply_does_not_answer_an_ipv6_probe() {
    let mut e = engine(vec![probe6("a6", "isp-a", 0)], uplinks());
    let (tx, sent) = first_attempt(&mut e);
    let (ident, seq) = request_ids(&tx, A6);
    let mut p = vec![0u8; 64];
    let echo = crate::wire::icmp::EchoRepr {
        msg_type: crate::wire::icmp::types::ECHO_REPLY,
        ident,
        seq,
    };
    let ip = crate::wire::ipv4::OwnHeader::new(NH_A, A_IP);
    let n = crate::wire::icmp::build_echo(&mut p, &ip, &echo, &[]).unwrap();
    let v4 = ipv4_frame(A_MAC, PE_A_MAC, &p[..n]);
    assert!(!e.handle_reply(UplinkId(0), &v4, sent + Duration::from_millis(3)));
}

fn error_quoting(request: &[u8], msg_type: u8) -> Vec<u8> {
    let repr = ErrorRepr {
        src: PE_A6,
        dst: A6,
        msg_type,
        code: 0,
        rest_of_header: 0,
    };
    let mut out = vec![0u8; 1280];
    let n = icmpv6::build_error(&mut out, &repr, request).unwrap();
    ipv6_frame(&out[..n])
}

/// SPEC 35: an ICMPv6 error is accepted only when it quotes the outstanding request; the
/// attempt still ends by its timeout, not as a success.
#[test]
fn icmpv6_errors_count_only_when_they_quote_the_outstanding_request() {
    let mut e = engine(vec![probe6("a6", "isp-a", 0)], uplinks());
    let (tx, sent) = first_attempt(&mut e);
    let request = &tx.frame[IP_OFFSET..];
    let unreachable = error_quoting(request, types::DEST_UNREACH);
    assert!(e.is_error_about_probe(UplinkId(0), &unreachable));
    assert!(
        !e.handle_reply(UplinkId(0), &unreachable, sent),
        "not a reply"
    );
    assert!(
        !e.is_error_about_probe(UplinkId(1), &unreachable),
        "another uplink"
    );
    let mut other_seq = request.to_vec();
    other_seq[ipv6::HEADER_LEN + 7] ^= 1;
    assert!(!e.is_error_about_probe(UplinkId(0), &error_quoting(&other_seq, types::DEST_UNREACH)));
    let mut other_src = request.to_vec();
    other_src[8 + 15] ^= 1;
    assert!(
        !e.is_error_about_probe(
            UplinkId(0),
            &error_quoting(&other_src, types::TIME_EXCEEDED)
        ),
        "quotes a packet that did not leave from here"
    );
    e.handle_timeout(sent + Duration::from_millis(500));
    assert_eq!(results(&mut e), vec![(0, Some(ProbeResult::Timeout))]);
    assert!(
        !e.is_error_about_probe(UplinkId(0), &unreachable),
        "no attempt outstanding"
    );
}

/// Without `address6` or a resolved `next_hop6` (or carrier) the attempt is not sent, and
/// times out: the track sees the uplink's IPv6 as down. The IPv4 next hop is never used.
#[test]
fn without_address6_or_next_hop6_the_attempt_times_out() {
    let missing: [fn(&mut ProbeUplink); 3] = [
        |u| u.v6 = None,
        |u| u.v6.as_mut().unwrap().next_hop_mac = None,
        |u| u.carrier = false,
    ];
    for change in missing {
        let mut ups = uplinks();
        change(&mut ups[0]);
        let mut e = engine(vec![probe6("a6", "isp-a", 0)], ups);
        let due = e.poll_timeout().unwrap();
        e.handle_timeout(due);
        assert_eq!(e.poll_transmit(), None);
        e.handle_timeout(due + Duration::from_millis(500));
        assert_eq!(results(&mut e), vec![(0, Some(ProbeResult::Timeout))]);
    }
}

fn probe6_kind(kind: ProbeKind) -> ProbeConfig {
    ProbeConfig {
        kind,
        ..probe6("a6", "isp-a", 0)
    }
}

/// A TCP segment from the target to A's address6, checksum filled.
fn tcp6(sport: u16, dport: u16, ack: u32, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 100];
    let repr = crate::wire::tcp::TcpRepr {
        sport,
        dport,
        seq: 7000,
        ack,
        flags,
        window: 65535,
    };
    let n = tcp::build_segment_v6(&mut p, &ipv6::OwnHeader::new(TARGET6, A6), &repr).unwrap();
    ipv6_frame(&p[..n])
}

#[test]
fn a_tcp_probe_over_ipv6_matches_its_syn_ack_and_resets_it_on_its_uplink() {
    let mut e = engine(vec![probe6_kind(ProbeKind::Tcp { port: 5201 })], uplinks());
    let (syn, sent) = first_attempt(&mut e);
    assert_eq!(syn.iface, A);
    let ip = Ipv6Packet::new_checked(&syn.frame[IP_OFFSET..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (A6, TARGET6));
    let t = crate::wire::tcp::TcpPacket::new_checked(ip.payload()).unwrap();
    let (sport, isn) = (t.src_port(), t.seq());
    assert_eq!(t.flags(), tcp::flags::SYN);
    let syn_ack = tcp::flags::SYN | tcp::flags::ACK;
    let at = sent + Duration::from_millis(4);
    for (frame, what) in [
        (
            tcp6(5201, sport, isn, syn_ack),
            "acknowledges another sequence",
        ),
        (tcp6(80, sport, isn + 1, syn_ack), "from another port"),
        (tcp6(5201, sport ^ 1, isn + 1, syn_ack), "to another port"),
    ] {
        assert!(!e.handle_reply(UplinkId(0), &frame, at), "{what}");
    }
    assert!(e.handle_reply(UplinkId(0), &tcp6(5201, sport, isn + 1, syn_ack), at));
    assert_eq!(
        results(&mut e),
        vec![(0, Some(ProbeResult::Ok(Duration::from_millis(4))))]
    );
    let rst = e.poll_transmit().expect("the RST");
    assert_eq!(rst.iface, A);
    let eth = EthernetFrame::new_checked(&rst.frame[ETH_OFFSET..]).unwrap();
    assert_eq!(eth.dst(), PE_A6_MAC);
    let ip = Ipv6Packet::new_checked(&rst.frame[IP_OFFSET..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (A6, TARGET6));
    let r = crate::wire::tcp::TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(
        (r.src_port(), r.dst_port(), r.seq()),
        (sport, 5201, isn + 1)
    );
    assert_eq!(r.flags(), tcp::flags::RST);
    // An ICMPv6 error quoting the next SYN is about the probe.
    e.handle_timeout(sent + Duration::from_secs(1));
    let syn = e.poll_transmit().expect("the next SYN");
    let err = error_quoting(&syn.frame[IP_OFFSET..], types::DEST_UNREACH);
    assert!(e.is_error_about_probe(UplinkId(0), &err));
}

#[test]
fn a_dns_probe_over_ipv6_needs_its_id_and_port() {
    let mut e = engine(
        vec![probe6_kind(ProbeKind::Dns {
            port: 53,
            query: "probe.lab".into(),
        })],
        uplinks(),
    );
    let (q, sent) = first_attempt(&mut e);
    let ip = Ipv6Packet::new_checked(&q.frame[IP_OFFSET..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (A6, TARGET6));
    let u = crate::wire::udp::UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(u.verify_checksum_v6(A6, TARGET6));
    let (sport, query) = (u.src_port(), u.payload().to_vec());
    let answer = |id_xor: u16, from: u16| {
        let mut d = query.clone();
        let id = u16::from_be_bytes([d[0], d[1]]) ^ id_xor;
        d[..2].copy_from_slice(&id.to_be_bytes());
        d[2] = 0x81;
        let mut p = vec![0u8; 200];
        let ip = ipv6::OwnHeader::new(TARGET6, A6);
        let n = crate::wire::udp::build_datagram_v6(&mut p, &ip, (from, sport), &d).unwrap();
        ipv6_frame(&p[..n])
    };
    let at = sent + Duration::from_millis(2);
    assert!(
        !e.handle_reply(UplinkId(0), &answer(1, 53), at),
        "another id"
    );
    assert!(
        !e.handle_reply(UplinkId(0), &answer(0, 5353), at),
        "another port"
    );
    assert!(e.handle_reply(UplinkId(0), &answer(0, 53), at));
}
