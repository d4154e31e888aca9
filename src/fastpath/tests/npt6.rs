//! NPTv6 through the fast path (SPEC 33): the LAN's internal prefix leaves by the first uplink
//! that is up, its source translated into that uplink's LAN /64 with every checksum still
//! valid; the way back translates the destination; ICMPv6 errors have the address they quote
//! translated too; what cannot be translated is dropped and counted.

use std::net::Ipv6Addr;

use super::v6::{Kind6, eth6, packet6, server};
use super::*;
use crate::fastpath::valid_frames::B_MAC;
use crate::fastpath::valid_frames::v6::{A, B, PE_B};
use crate::nat::npt6::Npt6;
use crate::wire::icmpv6::{self, Icmpv6Packet};
use crate::wire::ipv6::Ipv6Packet;

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn ula_host() -> Ipv6Addr {
    a6("fd00:db8:1::5054:ff:fe12:3456")
}

fn npt(external: &str) -> Npt6 {
    Npt6::new(
        "fd00:db8:1::/64".parse().unwrap(),
        external.parse().unwrap(),
    )
    .unwrap()
}

/// The lab with `[lan] npt6_prefix = "fd00:db8:1::/64"`: the ULA host is resolved on the LAN.
fn world_npt6() -> World {
    let mut w = world(1500);
    let v6 = w.snap.ipv6.as_mut().unwrap();
    v6.lan_prefixes = vec!["fd00:db8:1::/64".parse().unwrap()];
    // The router's LAN address is the internal prefix's ::1.
    v6.local
        .retain(|&(i, a)| i != Iface::Lan || a.is_unicast_link_local());
    v6.local.push((Iface::Lan, a6("fd00:db8:1::1")));
    for u in &mut v6.uplinks {
        u.translates = true;
    }
    v6.npt6 = vec![
        Some(npt("2001:db8:a:1::/64")),
        Some(npt("2001:db8:b:1::/64")),
    ];
    let mut resolved = crate::fastpath::valid_frames::v6::neighbours();
    resolved.insert((Iface::Lan, ula_host()), HOST_MAC);
    w.neighbours = std::mem::replace(&mut w.neighbours, Neighbours::new(HashMap::new(), vec![]))
        .with_v6(resolved);
    w
}

/// The upper-layer checksum (TCP, UDP, ICMPv6: no extension headers here) of an IPv6 packet is
/// what its addresses and payload give.
fn l4_checksum_ok(ip_packet: &[u8]) -> bool {
    let ip = Ipv6Packet::new_checked(ip_packet).unwrap();
    checksum::fold(checksum::add(
        checksum::pseudo_header_sum_v6(
            ip.src(),
            ip.dst(),
            ip.next_header(),
            ip.payload().len() as u32,
        ),
        checksum::sum(ip.payload()),
    )) == 0xffff
}

fn tcp(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8) -> Vec<u8> {
    packet6(Kind6::Tcp, src, dst, hop_limit, b"nptv6")
}

#[test]
fn the_lan_prefix_leaves_by_the_first_up_uplink_translated() {
    let mut w = world_npt6();
    for (egress, external, pe) in [
        (A, "2001:db8:a:1::/64", PE_A),
        (B, "2001:db8:b:1::/64", PE_B),
    ] {
        let mut f = eth6(LAN_MAC, HOST_MAC, &tcp(ula_host(), server(), 64));
        let (v, _) = run(&w, &mut f, Iface::Lan);
        assert_eq!(v, Verdict::Forward { egress });
        assert_eq!(EthernetFrame::new_unchecked(&f[ETH_OFFSET..]).dst(), pe);
        let ip = Ipv6Packet::new_checked(&f[IP_OFFSET..]).unwrap();
        let expected: crate::prefix6::Ipv6Prefix = external.parse().unwrap();
        assert!(expected.contains(ip.src()), "{}", ip.src());
        assert_eq!((ip.dst(), ip.hop_limit()), (server(), 63));
        assert!(l4_checksum_ok(&f[IP_OFFSET..]), "checksum-neutral");
        // A fails: the next packet of the same flow leaves by B, from B's prefix.
        w.snap.ipv6.as_mut().unwrap().uplinks[0].up = false;
    }
}

#[test]
fn the_way_back_translates_the_destination() {
    let w = world_npt6();
    let outside = npt("2001:db8:a:1::/64").to_external(ula_host()).unwrap();
    let mut f = eth6(A_MAC, PE_A, &tcp(server(), outside, 60));
    let (v, _) = run(&w, &mut f, A);
    assert_eq!(v, Verdict::Forward { egress: Iface::Lan });
    let ip = Ipv6Packet::new_checked(&f[IP_OFFSET..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (server(), ula_host()));
    assert!(l4_checksum_ok(&f[IP_OFFSET..]));
    // B's prefix maps to the same host, whichever uplink it comes in on.
    let outside_b = npt("2001:db8:b:1::/64").to_external(ula_host()).unwrap();
    let mut f = eth6(B_MAC, PE_B, &tcp(server(), outside_b, 60));
    assert_eq!(
        run(&w, &mut f, B).0,
        Verdict::Forward { egress: Iface::Lan }
    );
    // The rest of A's provider prefix is still nowhere.
    let mut f = eth6(A_MAC, PE_A, &tcp(server(), a6("2001:db8:a:2::1"), 60));
    assert!(matches!(
        run(&w, &mut f, A).0,
        Verdict::Reply {
            reason: DropReason::NoRoute,
            ..
        }
    ));
}

#[test]
fn addresses_without_a_word_to_adjust_are_dropped_and_counted() {
    let w = world_npt6();
    let mut f = eth6(
        LAN_MAC,
        HOST_MAC,
        &tcp(a6("fd00:db8:1::ffff:ffff:ffff:ffff"), server(), 64),
    );
    assert_eq!(
        run(&w, &mut f, Iface::Lan).0,
        Verdict::Drop(DropReason::Npt6Untranslatable)
    );
    let mut f = eth6(
        A_MAC,
        PE_A,
        &tcp(server(), a6("2001:db8:a:1:ffff:ffff:ffff:ffff"), 64),
    );
    assert_eq!(
        run(&w, &mut f, A).0,
        Verdict::Drop(DropReason::Npt6Untranslatable)
    );
}

/// An ICMPv6 error from the Internet about the host's translated packet reaches the host
/// quoting the packet it sent (so path MTU discovery works), with a valid checksum.
#[test]
fn an_icmpv6_error_coming_in_quotes_the_internal_source() {
    let w = world_npt6();
    let outside = npt("2001:db8:a:1::/64").to_external(ula_host()).unwrap();
    let sent = tcp(outside, server(), 60);
    let mut ip = vec![0u8; 1280];
    let n = icmpv6::build_error(
        &mut ip,
        &icmpv6::ErrorRepr {
            src: a6("2001:db8:fa1::2"),
            dst: outside,
            msg_type: icmpv6::types::PACKET_TOO_BIG,
            code: 0,
            rest_of_header: 1400,
        },
        &sent,
    )
    .unwrap();
    let mut f = eth6(A_MAC, PE_A, &ip[..n]);
    assert_eq!(
        run(&w, &mut f, A).0,
        Verdict::Forward { egress: Iface::Lan }
    );
    let ip = Ipv6Packet::new_checked(&f[IP_OFFSET..]).unwrap();
    assert_eq!(ip.dst(), ula_host());
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(ip.src(), ip.dst()));
    let quoted = Ipv6Packet::new_quoted(&ip.payload()[8..]).unwrap();
    assert_eq!((quoted.src(), quoted.dst()), (ula_host(), server()));
}

/// The other way: the host's error about a packet that came in quotes it with the external
/// destination the far end used.
#[test]
fn an_icmpv6_error_going_out_quotes_the_external_destination() {
    let w = world_npt6();
    let outside = npt("2001:db8:a:1::/64").to_external(ula_host()).unwrap();
    let received = tcp(server(), ula_host(), 59);
    let mut ip = vec![0u8; 1280];
    let n = icmpv6::build_error(
        &mut ip,
        &icmpv6::ErrorRepr {
            src: ula_host(),
            dst: server(),
            msg_type: icmpv6::types::DEST_UNREACH,
            code: icmpv6::codes::PORT_UNREACH,
            rest_of_header: 0,
        },
        &received,
    )
    .unwrap();
    let mut f = eth6(LAN_MAC, HOST_MAC, &ip[..n]);
    assert_eq!(
        run(&w, &mut f, Iface::Lan).0,
        Verdict::Forward { egress: A }
    );
    let ip = Ipv6Packet::new_checked(&f[IP_OFFSET..]).unwrap();
    assert_eq!(ip.src(), outside);
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(ip.src(), ip.dst()));
    let quoted = Ipv6Packet::new_quoted(&ip.payload()[8..]).unwrap();
    assert_eq!((quoted.src(), quoted.dst()), (server(), outside));
}

/// The router's own errors quote the packet as the host sent it (not yet translated), and a
/// LAN source with no uplink up gets "no route".
#[test]
fn errors_to_the_host_quote_its_own_packet() {
    let mut w = world_npt6();
    let sent = tcp(ula_host(), server(), 1);
    let mut f = eth6(LAN_MAC, HOST_MAC, &sent);
    let (v, scratch) = run(&w, &mut f, Iface::Lan);
    let Verdict::Reply { len, reason, .. } = v else {
        panic!("{v:?}");
    };
    assert_eq!(reason, DropReason::TtlExceeded);
    let ip = Ipv6Packet::new_checked(&scratch[IP_OFFSET..len]).unwrap();
    assert_eq!(&ip.payload()[8..8 + sent.len()], &sent[..]);
    for u in &mut w.snap.ipv6.as_mut().unwrap().uplinks {
        u.up = false;
    }
    let mut f = eth6(LAN_MAC, HOST_MAC, &tcp(ula_host(), server(), 64));
    assert!(matches!(
        run(&w, &mut f, Iface::Lan).0,
        Verdict::Reply {
            reason: DropReason::NoRoute,
            egress: Iface::Lan,
            ..
        }
    ));
}

proptest! {
    /// Any TCP, UDP or echo packet from any LAN address to any remote: it leaves by the first
    /// uplink that is up, from that uplink's /64 with a valid checksum, and the answer to that
    /// address comes back to the host it came from, valid too; an address with no word to
    /// adjust is dropped and counted instead.
    #[test]
    fn out_and_back_through_any_uplink(
        kind in prop_oneof![Just(Kind6::Tcp), Just(Kind6::Udp), Just(Kind6::Echo)],
        iid in prop_oneof![any::<u64>(), Just(u64::MAX), Just(0xffff_ffff_ffff_0000)],
        remote in any::<u64>(),
        a_up in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut w = world_npt6();
        w.snap.ipv6.as_mut().unwrap().uplinks[0].up = a_up;
        let host = Ipv6Addr::from_bits(0xfd00_0db8_0001_0000 << 64 | u128::from(iid));
        let remote = Ipv6Addr::from_bits(0x2001_0db8_0018_0000 << 64 | u128::from(remote));
        let (egress, mac) = if a_up { (A, PE_A) } else { (B, PE_B) };
        let mut f = eth6(LAN_MAC, HOST_MAC, &packet6(kind, host, remote, 64, &payload));
        let (v, _) = run(&w, &mut f, Iface::Lan);
        if iid == u64::MAX {
            prop_assert_eq!(v, Verdict::Drop(DropReason::Npt6Untranslatable));
            return Ok(());
        }
        prop_assert_eq!(v, Verdict::Forward { egress });
        let out = Ipv6Packet::new_checked(&f[IP_OFFSET..]).unwrap().src();
        let external = w.snap.ipv6.as_ref().unwrap().npt6(match egress {
            Iface::Uplink(u) => u,
            Iface::Lan => unreachable!(),
        }).unwrap().external();
        prop_assert!(external.contains(out));
        prop_assert!(l4_checksum_ok(&f[IP_OFFSET..]));
        let router_mac = w.snap.iface_mac(egress).unwrap();
        let mut back = eth6(router_mac, mac, &packet6(kind, remote, out, 60, &payload));
        let (v, _) = run(&w, &mut back, egress);
        let resolved = v == Verdict::Forward { egress: Iface::Lan };
        let held = v == Verdict::NeedsNeighbour { egress: Iface::Lan, next_hop: host.into() };
        prop_assert!(resolved || held, "{:?}", v);
        let ip = Ipv6Packet::new_checked(&back[IP_OFFSET..]).unwrap();
        prop_assert_eq!(ip.dst(), host);
        prop_assert!(l4_checksum_ok(&back[IP_OFFSET..]));
    }
}
