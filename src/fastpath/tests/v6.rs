//! IPv6 through the fast path (SPEC 32, 33): the lab's two provider prefixes, egress by source,
//! the ICMPv6 errors, neighbour discovery punted; and properties over valid IPv6 frames with
//! random fields, with `every_v6_outcome_is_reached` showing the generator reaches them all.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use super::*;
use crate::fastpath::valid_frames::B_MAC;
use crate::fastpath::valid_frames::v6::{A, B, PE_B, host_a, host_b};
use crate::wire::icmpv6::{self, Icmpv6Packet};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::ndisc::{self, Message, NdOption, NdRepr};
use crate::wire::vnet::{VnetHdr, gso};

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn host_unresolved() -> Ipv6Addr {
    a6("2001:db8:a:1::20")
}
pub(super) fn server() -> Ipv6Addr {
    a6("2001:db8:18::6")
}

pub(super) fn eth6(dst: MacAddr, src: MacAddr, ip_packet: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; vnet::LEN];
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(ip_packet);
    f
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind6 {
    Tcp,
    Udp,
    Echo,
}

pub(super) fn packet6(
    kind: Kind6,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    payload: &[u8],
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), hop_limit);
    let mut out = Vec::new();
    match kind {
        Kind6::Tcp => {
            let t = b.tcp(40000, 443, 1000, 64000).ack(5000);
            t.write(&mut out, payload).unwrap();
        }
        Kind6::Udp => b.udp(5353, 53).write(&mut out, payload).unwrap(),
        Kind6::Echo => b
            .icmpv6_echo_request(7, 1)
            .write(&mut out, payload)
            .unwrap(),
    }
    out
}

/// A neighbour solicitation from `src` for `target`, to its solicited-node group.
fn solicitation(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let group = ndisc::solicited_node(target);
    let mut ip = vec![0u8; 80];
    let n = ndisc::build(
        &mut ip,
        &NdRepr {
            src,
            dst: group,
            message: Message::NeighborSolicit { target },
            options: &[NdOption::SourceLinkAddr(HOST_MAC)],
        },
    )
    .unwrap();
    ip.truncate(n);
    eth6(ndisc::multicast_mac(group), HOST_MAC, &ip)
}

fn run6(w: &World, frame: &mut [u8], ingress: Iface) -> (Verdict, Vec<u8>) {
    run(w, frame, ingress)
}

fn from_lan(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, len: usize) -> Vec<u8> {
    eth6(
        LAN_MAC,
        HOST_MAC,
        &packet6(Kind6::Udp, src, dst, hop_limit, &vec![7u8; len]),
    )
}

#[test]
fn each_source_leaves_through_its_own_uplink() {
    let w = world(1500);
    for (src, egress, mac) in [(host_a(), A, PE_A), (host_b(), B, PE_B)] {
        let mut f = from_lan(src, server(), 64, 100);
        let before = f.clone();
        let (v, _) = run6(&w, &mut f, Iface::Lan);
        assert_eq!(v, Verdict::Forward { egress }, "{src}");
        let e = EthernetFrame::new_unchecked(&f[ETH_OFFSET..]);
        assert_eq!((e.dst(), Some(e.src())), (mac, w.snap.iface_mac(egress)));
        let ip = Ipv6Packet::new_checked(&f[IP_OFFSET..]).unwrap();
        assert_eq!(ip.hop_limit(), 63);
        assert_eq!(
            f[IP_OFFSET + 8..],
            before[IP_OFFSET + 8..],
            "only the hop limit changes"
        );
    }
}

#[test]
fn a_source_in_a_dead_uplinks_prefix_gets_code_5() {
    let mut w = world(1500);
    w.snap.ipv6.as_mut().unwrap().uplinks[0].up = false;
    let mut f = from_lan(host_a(), server(), 64, 100);
    let (v, scratch) = run6(&w, &mut f, Iface::Lan);
    let Verdict::Reply {
        egress,
        len,
        reason,
    } = v
    else {
        panic!("{v:?}");
    };
    assert_eq!(
        (egress, reason),
        (Iface::Lan, DropReason::SourcePolicyFailed)
    );
    let ip = Ipv6Packet::new_checked(&scratch[IP_OFFSET..len]).unwrap();
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        (icmp.msg_type(), icmp.code()),
        (icmpv6::types::DEST_UNREACH, 5)
    );
    assert_eq!(ip.dst(), host_a());
    assert!(icmp.verify_checksum(ip.src(), ip.dst()));
    // B's sources still go out through B.
    let mut f = from_lan(host_b(), server(), 64, 100);
    assert_eq!(
        run6(&w, &mut f, Iface::Lan).0,
        Verdict::Forward { egress: B }
    );
}

#[test]
fn hop_limit_and_mtu_give_icmpv6_errors() {
    let w = world(1400);
    let mut f = from_lan(host_a(), server(), 1, 100);
    let (v, scratch) = run6(&w, &mut f, Iface::Lan);
    let Verdict::Reply { len, reason, .. } = v else {
        panic!("{v:?}");
    };
    assert_eq!(reason, DropReason::TtlExceeded);
    let ip = Ipv6Packet::new_checked(&scratch[IP_OFFSET..len]).unwrap();
    assert_eq!(ip.payload()[0], icmpv6::types::TIME_EXCEEDED);
    // 1400 bytes of IPv6 fit uplink A's MTU of 1400; one more does not.
    let mut fits = from_lan(host_a(), server(), 64, 1400 - 48);
    assert_eq!(
        run6(&w, &mut fits, Iface::Lan).0,
        Verdict::Forward { egress: A }
    );
    let mut f = from_lan(host_a(), server(), 64, 1400 - 47);
    let (v, scratch) = run6(&w, &mut f, Iface::Lan);
    let Verdict::Reply { len, reason, .. } = v else {
        panic!("{v:?}");
    };
    assert_eq!(reason, DropReason::PacketTooBig);
    let ip = Ipv6Packet::new_checked(&scratch[IP_OFFSET..len]).unwrap();
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        (icmp.msg_type(), icmp.rest_of_header()),
        (icmpv6::types::PACKET_TOO_BIG, 1400)
    );
    assert!(
        len - IP_OFFSET <= 1280,
        "an ICMPv6 error fits the minimum MTU"
    );
}

#[test]
fn a_gso_frame_is_judged_by_its_segments_and_passes_untouched() {
    let w = world(1400);
    let mut f = eth6(
        LAN_MAC,
        HOST_MAC,
        &packet6(Kind6::Tcp, host_a(), server(), 64, &[1u8; 8000]),
    );
    let vh = VnetHdr {
        flags: vnet::flags::NEEDS_CSUM,
        gso_type: gso::TCPV6,
        hdr_len: 14 + 40 + 20,
        gso_size: 1340,
        csum_start: 14 + 40,
        csum_offset: 16,
    };
    vh.write(&mut f).unwrap();
    let mut too_big = f.clone();
    let (v, _) = run6(&w, &mut f, Iface::Lan);
    assert_eq!(v, Verdict::Forward { egress: A });
    assert_eq!(VnetHdr::parse(&f).unwrap(), vh);
    VnetHdr {
        gso_size: 1341,
        ..vh
    }
    .write(&mut too_big)
    .unwrap();
    let (v, _) = run6(&w, &mut too_big, Iface::Lan);
    assert!(
        matches!(
            v,
            Verdict::Reply {
                reason: DropReason::PacketTooBig,
                ..
            }
        ),
        "{v:?}"
    );
}

#[test]
fn from_an_uplink_only_the_lan_prefixes() {
    let w = world(1500);
    let inbound = |dst| {
        eth6(
            A_MAC,
            PE_A,
            &packet6(Kind6::Udp, server(), dst, 60, &[0; 20]),
        )
    };
    let mut f = inbound(host_b());
    assert_eq!(
        run6(&w, &mut f, A).0,
        Verdict::Forward { egress: Iface::Lan }
    );
    assert_eq!(
        EthernetFrame::new_unchecked(&f[ETH_OFFSET..]).dst(),
        HOST_MAC
    );
    let mut f = inbound(host_unresolved());
    assert_eq!(
        run6(&w, &mut f, A).0,
        Verdict::NeedsNeighbour {
            egress: Iface::Lan,
            next_hop: host_unresolved().into()
        }
    );
    let mut f = inbound(a6("2001:db8:c::1"));
    assert_eq!(
        run6(&w, &mut f, A).0,
        Verdict::Drop(DropReason::UplinkTransit)
    );
    // The rest of a provider prefix is nowhere: destination unreachable, from either side.
    for (ingress, mut f) in [
        (A, inbound(a6("2001:db8:b:2::1"))),
        (
            Iface::Lan,
            from_lan(host_a(), a6("2001:db8:a:2::1"), 64, 10),
        ),
    ] {
        let (v, scratch) = run6(&w, &mut f, ingress);
        let Verdict::Reply {
            egress,
            len,
            reason,
        } = v
        else {
            panic!("{v:?}");
        };
        assert_eq!((egress, reason), (ingress, DropReason::NoRoute));
        let ip = Ipv6Packet::new_checked(&scratch[IP_OFFSET..len]).unwrap();
        assert_eq!(&ip.payload()[..2], [icmpv6::types::DEST_UNREACH, 0]);
    }
}

#[test]
fn neighbour_discovery_and_pings_to_the_router_are_punted() {
    let w = world(1500);
    let mut ns = solicitation(host_a(), ndisc::link_local(LAN_MAC));
    assert_eq!(
        run6(&w, &mut ns, Iface::Lan).0,
        Verdict::Punt(PuntClass::Arp)
    );
    let mut dad = solicitation(Ipv6Addr::UNSPECIFIED, host_a());
    assert_eq!(
        run6(&w, &mut dad, Iface::Lan).0,
        Verdict::Punt(PuntClass::Arp)
    );
    let router = ndisc::link_local(LAN_MAC);
    let mut ping = eth6(
        LAN_MAC,
        HOST_MAC,
        &packet6(Kind6::Echo, host_a(), router, 64, &[0; 8]),
    );
    assert_eq!(
        run6(&w, &mut ping, Iface::Lan).0,
        Verdict::Punt(PuntClass::Other)
    );
    let mut udp = from_lan(host_a(), router, 64, 8);
    assert_eq!(
        run6(&w, &mut udp, Iface::Lan).0,
        Verdict::Drop(DropReason::LocalUnhandled)
    );
    // The router's address in a LAN prefix serves DNS (SPEC 30), UDP and TCP.
    let lan_router = a6("2001:db8:a:1::1");
    let mut dns = from_lan(host_a(), lan_router, 64, 8);
    assert_eq!(
        run6(&w, &mut dns, Iface::Lan).0,
        Verdict::Punt(PuntClass::Other)
    );
    let mut ping = eth6(
        LAN_MAC,
        HOST_MAC,
        &packet6(Kind6::Echo, host_a(), lan_router, 64, &[0; 8]),
    );
    assert_eq!(
        run6(&w, &mut ping, Iface::Lan).0,
        Verdict::Punt(PuntClass::Other)
    );
}

/// An MLD message from `src` as Linux sends it: a hop-by-hop header with the router alert
/// option, then ICMPv6 `msg_type` (the rest zero), to `group`'s MAC.
fn mld(src: Ipv6Addr, group: Ipv6Addr, msg_type: u8) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0, 0, 8 + 8, 0, 1];
    ip.extend(src.octets());
    ip.extend(group.octets());
    ip.extend([crate::wire::ipv6::next_header::ICMPV6, 0, 5, 2, 0, 0, 1, 0]);
    ip.extend([msg_type, 0, 0, 0, 0, 0, 0, 0]);
    eth6(ndisc::multicast_mac(group), HOST_MAC, &ip)
}

/// MLD (every host joins its solicited-node groups with it) is taken and counted as what it
/// is, not as a broadcast drop; other multicast still is one.
#[test]
fn mld_is_counted_as_mld_not_dropped() {
    let w = world(1500);
    let mld2_routers = a6("ff02::16");
    for (src, msg_type) in [
        (ndisc::link_local(HOST_MAC), icmpv6::types::MLD2_REPORT),
        (Ipv6Addr::UNSPECIFIED, icmpv6::types::MLD2_REPORT),
        (ndisc::link_local(HOST_MAC), icmpv6::types::MLD_REPORT),
        (ndisc::link_local(HOST_MAC), icmpv6::types::MLD_DONE),
        (ndisc::link_local(HOST_MAC), icmpv6::types::MLD_QUERY),
    ] {
        let mut f = mld(src, mld2_routers, msg_type);
        assert_eq!(run6(&w, &mut f, Iface::Lan).0, Verdict::Mld, "{msg_type}");
    }
    let mut other = mld(host_a(), mld2_routers, icmpv6::types::ECHO_REQUEST);
    assert_eq!(
        run6(&w, &mut other, Iface::Lan).0,
        Verdict::Drop(DropReason::Broadcast)
    );
}

#[test]
fn dhcpv6_answers_to_an_uplinks_link_local_address_are_punted() {
    let w = world(1500);
    let router = ndisc::link_local(B_MAC);
    let server = ndisc::link_local(PE_B);
    let udp = |ports: (u16, u16)| {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv6(server.octets(), router.octets(), 64)
            .udp(ports.0, ports.1)
            .write(&mut out, &[7; 40])
            .unwrap();
        eth6(B_MAC, PE_B, &out)
    };
    assert_eq!(
        run6(&w, &mut udp((547, 546)), B).0,
        Verdict::Punt(PuntClass::Other)
    );
    // Other ports, or the same ports from the LAN: nothing asked for them.
    assert_eq!(
        run6(&w, &mut udp((546, 547)), B).0,
        Verdict::Drop(DropReason::LocalUnhandled)
    );
    let mut from_lan = eth6(
        LAN_MAC,
        HOST_MAC,
        &packet6(
            Kind6::Udp,
            host_a(),
            ndisc::link_local(LAN_MAC),
            64,
            &[0; 8],
        ),
    );
    let ip = IP_OFFSET;
    from_lan[ip + 40..ip + 44].copy_from_slice(&[2, 0x23, 2, 0x22]);
    assert_eq!(
        run6(&w, &mut from_lan, Iface::Lan).0,
        Verdict::Drop(DropReason::LocalUnhandled)
    );
}

#[test]
fn spoofed_and_martian_sources_are_dropped() {
    let w = world(1500);
    for (src, reason) in [
        (a6("2001:db8:c::1"), DropReason::Spoofed),
        (a6("2001:db8:a:2::1"), DropReason::Spoofed),
        (a6("fe80::1"), DropReason::Martian),
    ] {
        let mut f = from_lan(src, server(), 64, 10);
        assert_eq!(
            run6(&w, &mut f, Iface::Lan).0,
            Verdict::Drop(reason),
            "{src}"
        );
    }
}

#[test]
fn without_ipv6_configured_ipv6_is_not_ipv4() {
    let mut w = world(1500);
    w.snap.ipv6 = None;
    let mut f = from_lan(host_a(), server(), 64, 10);
    assert_eq!(
        run6(&w, &mut f, Iface::Lan).0,
        Verdict::Drop(DropReason::NotIpv4)
    );
}

/// One random but valid IPv6 frame.
#[derive(Debug, Clone)]
struct Case6 {
    ingress: u8,
    src: u8,
    dst: u8,
    kind: u8,
    hop_limit: u8,
    len: usize,
    gso: bool,
    a_up: bool,
}

fn case6() -> impl Strategy<Value = Case6> {
    (
        // Mostly from the LAN to the central site: where the egress by source is decided.
        prop_oneof![2 => Just(0u8), 1 => 1u8..3],
        0u8..7,
        prop_oneof![1 => Just(3u8), 1 => 0u8..7],
        0u8..4,
        prop_oneof![Just(0u8), Just(1), Just(2), Just(64), Just(255)],
        prop_oneof![3 => 0usize..200, 1 => 1300usize..1480],
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.8),
    )
        .prop_map(
            |(ingress, src, dst, kind, hop_limit, len, gso, a_up)| Case6 {
                ingress,
                src,
                dst,
                kind,
                hop_limit,
                len,
                gso,
                a_up,
            },
        )
}

fn pick(i: u8) -> Ipv6Addr {
    match i {
        0 => host_a(),
        1 => host_b(),
        2 => host_unresolved(),
        3 => server(),
        4 => a6("fe80::99"),
        5 => a6("2001:db8:b:2::1"),
        _ => ndisc::link_local(LAN_MAC),
    }
}

fn frame6(c: &Case6) -> (Iface, Vec<u8>) {
    let ingress = [Iface::Lan, A, B][usize::from(c.ingress)];
    let (dst_mac, src_mac) = match ingress {
        Iface::Lan => (LAN_MAC, HOST_MAC),
        Iface::Uplink(UplinkId(0)) => (A_MAC, PE_A),
        _ => (B_MAC, PE_B),
    };
    let (src, dst) = (pick(c.src), pick(c.dst));
    if c.kind == 3 {
        return (ingress, solicitation(src, dst));
    }
    let kind = [Kind6::Tcp, Kind6::Udp, Kind6::Echo][usize::from(c.kind)];
    let mut f = eth6(
        dst_mac,
        src_mac,
        &packet6(kind, src, dst, c.hop_limit, &vec![0x5a; c.len]),
    );
    if c.gso && matches!(kind, Kind6::Tcp) {
        VnetHdr {
            flags: vnet::flags::NEEDS_CSUM,
            gso_type: gso::TCPV6,
            hdr_len: 14 + 40 + 20,
            gso_size: 1200,
            csum_start: 14 + 40,
            csum_offset: 16,
        }
        .write(&mut f)
        .unwrap();
    }
    (ingress, f)
}

/// Runs one case, checks what its outcome must satisfy, and names the outcome.
fn run_case6(c: &Case6) -> Result<&'static str, TestCaseError> {
    let mut w = world(1400);
    w.snap.ipv6.as_mut().unwrap().uplinks[0].up = c.a_up;
    let (ingress, mut f) = frame6(c);
    let before = f.clone();
    let (v, scratch) = run6(&w, &mut f, ingress);
    let old = Ipv6Packet::new_checked(&before[IP_OFFSET..]).unwrap();
    let v6 = w.snap.ipv6.as_ref().unwrap();
    let egress = match v {
        Verdict::Forward { egress } | Verdict::NeedsNeighbour { egress, .. } => egress,
        Verdict::Reply { len, egress, .. } => {
            prop_assert_eq!(egress, ingress, "errors go back where the packet came from");
            let reply = Ipv6Packet::new_checked(&scratch[IP_OFFSET..len]).unwrap();
            let icmp = Icmpv6Packet::new_checked(reply.payload()).unwrap();
            prop_assert!(icmpv6::is_error(icmp.msg_type()));
            prop_assert!(icmp.verify_checksum(reply.src(), reply.dst()));
            prop_assert_eq!(reply.dst(), old.src());
            prop_assert!(len - IP_OFFSET <= 1280);
            prop_assert_eq!(&f, &before, "a reply leaves the frame alone");
            return Ok(match icmp.msg_type() {
                icmpv6::types::PACKET_TOO_BIG => "packet too big",
                icmpv6::types::TIME_EXCEEDED => "time exceeded",
                icmpv6::types::DEST_UNREACH if icmp.code() == 5 => "source policy failed",
                _ => "no route",
            });
        }
        Verdict::Punt(_) => {
            prop_assert_eq!(&f, &before);
            return Ok("punt");
        }
        Verdict::Drop(_) => {
            prop_assert_eq!(&f, &before);
            return Ok("drop");
        }
        Verdict::Mld => {
            prop_assert_eq!(&f, &before);
            return Ok("mld");
        }
        Verdict::Fragment { .. } => {
            prop_assert!(false, "IPv6 is never fragmented by a router");
            unreachable!()
        }
    };
    let new = Ipv6Packet::new_checked(&f[IP_OFFSET..]).unwrap();
    prop_assert_eq!(new.hop_limit(), old.hop_limit() - 1);
    prop_assert_eq!(&f[IP_OFFSET + 8..], &before[IP_OFFSET + 8..]);
    prop_assert_eq!(
        VnetHdr::parse(&f).unwrap(),
        VnetHdr::parse(&before).unwrap()
    );
    match egress {
        // Never out through an uplink that is down or does not own the source.
        Iface::Uplink(u) => {
            let owner = v6.uplinks.iter().find(|p| p.prefix.contains(new.src()));
            prop_assert!(owner.is_some_and(|o| o.uplink == u && o.up));
        }
        Iface::Lan => prop_assert!(v6.is_lan(new.dst())),
    }
    Ok(match (v, egress) {
        (Verdict::NeedsNeighbour { .. }, _) => "needs neighbour",
        (_, Iface::Lan) => "forward to the LAN",
        _ if VnetHdr::parse(&f).unwrap().is_gso() => "GSO to an uplink",
        _ => "forward to an uplink",
    })
}

proptest! {
    #[test]
    fn v6_outcomes_keep_frames_valid(c in case6()) {
        run_case6(&c)?;
    }
}

#[test]
fn every_v6_outcome_is_reached() {
    let mut runner = TestRunner::deterministic();
    let strategy = case6();
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..3000 {
        let c = strategy.new_tree(&mut runner).unwrap().current();
        let o = run_case6(&c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        *seen.entry(o).or_default() += 1;
    }
    println!("{seen:#?}");
    for o in [
        "forward to the LAN",
        "forward to an uplink",
        "GSO to an uplink",
        "needs neighbour",
        "packet too big",
        "time exceeded",
        "source policy failed",
        "no route",
        "punt",
        "drop",
    ] {
        assert!(
            seen.contains_key(o),
            "never reached: {o}; reached: {seen:?}"
        );
    }
}

proptest! {
    /// Any bytes behind an IPv6 Ethernet header, to the router's MAC or a multicast one, on
    /// either side: a verdict, never a panic, and a drop leaves the frame as it was.
    #[test]
    fn never_panics_on_ipv6_garbage(
        mut ip in proptest::collection::vec(any::<u8>(), 0..300),
        ingress in 0u8..2,
        multicast in any::<bool>(),
        valid_header in any::<bool>(),
    ) {
        if valid_header && ip.len() >= 40 {
            ip[0] = 0x60;
            let len = (ip.len() - 40) as u16;
            ip[4..6].copy_from_slice(&len.to_be_bytes());
        }
        let (iface, dst) = if ingress == 0 { (Iface::Lan, LAN_MAC) } else { (A, A_MAC) };
        let dst = if multicast { MacAddr([0x33, 0x33, 0, 0, 0, 1]) } else { dst };
        let mut f = eth6(dst, HOST_MAC, &ip);
        let before = f.clone();
        let (v, _) = run6(&world(1400), &mut f, iface);
        if matches!(v, Verdict::Drop(_) | Verdict::Punt(_) | Verdict::Reply { .. }) {
            prop_assert_eq!(f, before);
        }
    }
}
