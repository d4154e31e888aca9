use super::*;
use crate::UplinkId;
use crate::wire::ethernet::ethertype;

const LAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
const WAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0xa, 1]);
const HOST_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const PE_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0xa, 0xfe]);
const WAN_A: Iface = Iface::Uplink(UplinkId(0));
/// The router's address in ISP A's LAN /64.
const LAN_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
const HOST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0x5054, 0xff, 0xfe12, 0x3456);
/// ISP A's PE on the PE link 2001:db8:ffa::/64.
const PE_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffa, 0, 0, 0, 0, 1);
const WAN_ADDR_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffa, 0, 0, 0, 0, 2);

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// An engine with the LAN (link-local and LAN_A) and uplink A (link-local and WAN_ADDR_A)
/// whose addresses have all passed DAD, and nothing queued.
fn ready() -> NdpEngine {
    let mut e = NdpEngine::new(NeighParams::default(), DadParams::default(), t(0));
    e.add_interface(Iface::Lan, LAN_MAC, t(0));
    e.add_address(Iface::Lan, LAN_A, t(0));
    e.add_interface(WAN_A, WAN_MAC, t(0));
    e.add_address(WAN_A, WAN_ADDR_A, t(0));
    e.handle_timeout(t(1000));
    drain(&mut e);
    while e.poll_event().is_some() {}
    e
}

fn frame(src_mac: MacAddr, dst_mac: MacAddr, repr: &NdRepr) -> Vec<u8> {
    Transmit::ipv6(Iface::Lan, src_mac, dst_mac, 200, |b| {
        ndisc::build(b, repr).ok()
    })
    .unwrap()
    .frame
}

fn ns(src: Ipv6Addr, target: Ipv6Addr, lladdr: Option<MacAddr>) -> Vec<u8> {
    let options: Vec<_> = lladdr.map(NdOption::SourceLinkAddr).into_iter().collect();
    frame(
        HOST_MAC,
        ndisc::multicast_mac(ndisc::solicited_node(target)),
        &NdRepr {
            src,
            dst: ndisc::solicited_node(target),
            message: Message::NeighborSolicit { target },
            options: &options,
        },
    )
}

fn na(src_mac: MacAddr, target: Ipv6Addr, dst: Ipv6Addr, solicited: bool) -> Vec<u8> {
    let flags = NaFlags {
        router: false,
        solicited,
        override_: true,
    };
    frame(
        src_mac,
        LAN_MAC,
        &NdRepr {
            src: target,
            dst,
            message: Message::NeighborAdvert { flags, target },
            options: &[NdOption::TargetLinkAddr(src_mac)],
        },
    )
}

/// (iface, eth dst, ip src, ip dst, message, link-layer option) of each frame sent.
type Sent = (Iface, MacAddr, Ipv6Addr, Ipv6Addr, Message, Option<MacAddr>);

fn drain(e: &mut NdpEngine) -> Vec<Sent> {
    std::iter::from_fn(|| e.poll_transmit())
        .map(|t| {
            let eth = EthernetFrame::new_checked(&t.frame[ETH_OFFSET..]).unwrap();
            assert_eq!(eth.ethertype(), ethertype::IPV6);
            let ip = Ipv6Packet::new_checked(&t.frame[IP_OFFSET..]).unwrap();
            let nd = NdPacket::parse(&ip).expect("a valid ND packet");
            (
                t.iface,
                eth.dst(),
                nd.src,
                nd.dst,
                nd.message,
                nd.link_addr(),
            )
        })
        .collect()
}

fn events(e: &mut NdpEngine) -> Vec<NdpEvent> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

#[test]
fn dad_probes_then_marks_addresses_ready() {
    let mut e = NdpEngine::new(NeighParams::default(), DadParams::default(), t(0));
    e.add_interface(Iface::Lan, LAN_MAC, t(0));
    e.add_address(Iface::Lan, LAN_A, t(0));
    let ll = ndisc::link_local(LAN_MAC);
    let sent = drain(&mut e);
    assert_eq!(sent.len(), 2);
    for (s, target) in sent.iter().zip([ll, LAN_A]) {
        assert_eq!(
            (s.2, s.3, s.4, s.5),
            (
                Ipv6Addr::UNSPECIFIED,
                ndisc::solicited_node(target),
                Message::NeighborSolicit { target },
                None
            ),
            "RFC 4862 §5.4.2: from ::, to the solicited-node group, no lladdr"
        );
        assert_eq!(s.1, ndisc::multicast_mac(ndisc::solicited_node(target)));
    }
    assert!(!e.is_usable(Iface::Lan, LAN_A));
    assert_eq!(e.poll_timeout(), Some(t(0)), "the cache poll is due first");
    e.handle_timeout(t(999));
    assert!(!e.is_usable(Iface::Lan, LAN_A) && events(&mut e).is_empty());
    // Not answered for while tentative.
    e.handle_frame(Iface::Lan, &ns(HOST, LAN_A, Some(HOST_MAC)), t(999));
    assert!(drain(&mut e).is_empty());
    e.handle_timeout(t(1000));
    assert!(e.is_usable(Iface::Lan, LAN_A) && e.is_usable(Iface::Lan, ll));
    assert_eq!(
        events(&mut e),
        [
            NdpEvent::AddressReady {
                iface: Iface::Lan,
                addr: ll
            },
            NdpEvent::AddressReady {
                iface: Iface::Lan,
                addr: LAN_A
            }
        ]
    );
    assert!(drain(&mut e).is_empty(), "one probe each by default");
}

#[test]
fn dad_transmits_and_zero() {
    let dad = DadParams {
        transmits: 3,
        retrans: Duration::from_millis(500),
    };
    let mut e = NdpEngine::new(NeighParams::default(), dad, t(0));
    e.add_interface(Iface::Lan, LAN_MAC, t(0));
    assert_eq!(drain(&mut e).len(), 1);
    e.handle_timeout(t(500));
    e.handle_timeout(t(1000));
    assert_eq!(drain(&mut e).len(), 2);
    assert!(!e.is_usable(Iface::Lan, ndisc::link_local(LAN_MAC)));
    e.handle_timeout(t(1500));
    assert!(e.is_usable(Iface::Lan, ndisc::link_local(LAN_MAC)));

    let off = DadParams {
        transmits: 0,
        retrans: Duration::from_secs(1),
    };
    let mut e = NdpEngine::new(NeighParams::default(), off, t(0));
    e.add_interface(Iface::Lan, LAN_MAC, t(0));
    assert!(drain(&mut e).is_empty());
    assert!(e.is_usable(Iface::Lan, ndisc::link_local(LAN_MAC)));
}

#[test]
fn dad_fails_on_a_probe_or_an_advert_for_the_address() {
    for conflict in [
        ns(Ipv6Addr::UNSPECIFIED, LAN_A, None),
        na(HOST_MAC, LAN_A, ndisc::ALL_NODES, false),
    ] {
        let mut e = NdpEngine::new(NeighParams::default(), DadParams::default(), t(0));
        e.add_interface(Iface::Lan, LAN_MAC, t(0));
        e.add_address(Iface::Lan, LAN_A, t(0));
        drain(&mut e);
        e.handle_frame(Iface::Lan, &conflict, t(300));
        assert_eq!(
            events(&mut e),
            [NdpEvent::Duplicate {
                iface: Iface::Lan,
                addr: LAN_A
            }]
        );
        e.handle_timeout(t(2000));
        assert!(!e.is_usable(Iface::Lan, LAN_A), "a duplicate is never used");
        assert!(e.is_usable(Iface::Lan, ndisc::link_local(LAN_MAC)));
        e.handle_frame(Iface::Lan, &ns(HOST, LAN_A, Some(HOST_MAC)), t(2000));
        assert!(drain(&mut e).is_empty(), "a duplicate is not answered for");
    }
}

#[test]
fn a_normal_solicitation_during_dad_is_not_a_conflict() {
    let mut e = NdpEngine::new(NeighParams::default(), DadParams::default(), t(0));
    e.add_interface(Iface::Lan, LAN_MAC, t(0));
    e.add_address(Iface::Lan, LAN_A, t(0));
    drain(&mut e);
    e.handle_frame(Iface::Lan, &ns(HOST, LAN_A, Some(HOST_MAC)), t(100));
    e.handle_timeout(t(1000));
    assert!(e.is_usable(Iface::Lan, LAN_A));
}

#[test]
fn answers_solicitations_for_own_addresses_and_learns_the_solicitor() {
    let mut e = ready();
    e.handle_frame(Iface::Lan, &ns(HOST, LAN_A, Some(HOST_MAC)), t(2000));
    let flags = NaFlags {
        router: true,
        solicited: true,
        override_: true,
    };
    assert_eq!(
        drain(&mut e),
        [(
            Iface::Lan,
            HOST_MAC,
            LAN_A,
            HOST,
            Message::NeighborAdvert {
                flags,
                target: LAN_A
            },
            Some(LAN_MAC)
        )]
    );
    assert_eq!(e.lookup(Iface::Lan, HOST), Some(HOST_MAC));
    assert_eq!(
        events(&mut e),
        [NdpEvent::Learned {
            iface: Iface::Lan,
            ip: HOST,
            mac: HOST_MAC
        }]
    );
    // Another host's DAD probe for one of our addresses: defended to all nodes, S clear.
    e.handle_frame(Iface::Lan, &ns(Ipv6Addr::UNSPECIFIED, LAN_A, None), t(2000));
    let sent = drain(&mut e);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].1, sent[0].3),
        (ndisc::multicast_mac(ndisc::ALL_NODES), ndisc::ALL_NODES)
    );
    assert!(matches!(sent[0].4, Message::NeighborAdvert { flags, .. } if !flags.solicited));
    // Not ours, or asked on the wrong interface: silence.
    e.handle_frame(Iface::Lan, &ns(HOST, PE_A, Some(HOST_MAC)), t(2000));
    e.handle_frame(WAN_A, &ns(HOST, LAN_A, Some(HOST_MAC)), t(2000));
    assert!(drain(&mut e).is_empty());
}

#[test]
fn invalid_packets_are_dropped_and_counted() {
    let mut e = ready();
    let mut bad_hop = ns(HOST, LAN_A, Some(HOST_MAC));
    bad_hop[IP_OFFSET + 7] = 64;
    // DAD probe with a link-layer option (RFC 4861 §7.1.1).
    let with_lladdr = ns(Ipv6Addr::UNSPECIFIED, LAN_A, Some(HOST_MAC));
    let solicited_to_group = na(HOST_MAC, HOST, ndisc::ALL_NODES, true);
    for bad in [bad_hop, with_lladdr, solicited_to_group, vec![0u8; 30]] {
        e.handle_frame(Iface::Lan, &bad, t(2000));
        assert_eq!(events(&mut e), [NdpEvent::Dropped(DropReason::BadL4Header)]);
    }
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.lookup(Iface::Lan, HOST), None);
}

#[test]
fn resolves_next_hops_holding_frames_until_the_advert() {
    let mut e = ready();
    e.send_via(WAN_A, PE_A, vec![0xab; 80], t(2000));
    e.send_via(WAN_A, PE_A, vec![0xcd; 80], t(2000));
    let wan_ll = ndisc::link_local(WAN_MAC);
    assert_eq!(
        drain(&mut e),
        [(
            WAN_A,
            ndisc::multicast_mac(ndisc::solicited_node(PE_A)),
            wan_ll,
            ndisc::solicited_node(PE_A),
            Message::NeighborSolicit { target: PE_A },
            Some(WAN_MAC)
        )],
        "one solicitation from the link-local address, however many frames wait"
    );
    e.handle_frame(WAN_A, &na(PE_MAC, PE_A, wan_ll, true), t(2010));
    let released: Vec<_> = std::iter::from_fn(|| e.poll_transmit()).collect();
    assert_eq!(released.len(), 2);
    for (t, fill) in released.iter().zip([0xab, 0xcd]) {
        assert_eq!(t.iface, WAN_A);
        assert_eq!(
            EthernetFrame::new_unchecked(&t.frame[ETH_OFFSET..]).dst(),
            PE_MAC
        );
        assert_eq!(t.frame[IP_OFFSET], fill);
    }
    assert_eq!(e.lookup(WAN_A, PE_A), Some(PE_MAC));
    assert_eq!(e.resolved().get(&(WAN_A, PE_A)), Some(&PE_MAC));
    e.send_via(WAN_A, PE_A, vec![1; 80], t(2020));
    assert_eq!(drain_frames(&mut e), 1, "known: sent at once");
}

fn drain_frames(e: &mut NdpEngine) -> usize {
    std::iter::from_fn(|| e.poll_transmit()).count()
}

#[test]
fn unsolicited_adverts_do_not_create_entries() {
    let mut e = ready();
    e.handle_frame(
        Iface::Lan,
        &na(HOST_MAC, HOST, ndisc::ALL_NODES, false),
        t(2000),
    );
    assert_eq!(e.lookup(Iface::Lan, HOST), None);
}

#[test]
fn gives_up_and_drops_held_frames() {
    let mut e = ready();
    e.send_via(WAN_A, PE_A, vec![0; 60], t(2000));
    assert_eq!(drain_frames(&mut e), 1);
    for ms in (2250..=6000).step_by(250) {
        e.handle_timeout(t(ms));
    }
    assert_eq!(drain_frames(&mut e), 2, "retried up to max_requests");
    assert_eq!(
        events(&mut e),
        [
            NdpEvent::Unresolved {
                iface: WAN_A,
                frame: vec![0; 60]
            },
            NdpEvent::Removed
        ]
    );
}

#[test]
fn bounded_queue() {
    let params = NeighParams {
        queue_len: 2,
        ..NeighParams::default()
    };
    let mut e = NdpEngine::new(params, DadParams::default(), t(0));
    e.add_interface(WAN_A, WAN_MAC, t(0));
    e.handle_timeout(t(1000));
    while e.poll_event().is_some() {}
    for _ in 0..3 {
        e.send_via(WAN_A, PE_A, vec![0; 60], t(1000));
    }
    assert_eq!(events(&mut e), [NdpEvent::Dropped(DropReason::NoNeighbour)]);
}

#[test]
fn no_solicitation_before_a_usable_source() {
    let mut e = NdpEngine::new(NeighParams::default(), DadParams::default(), t(0));
    e.add_interface(WAN_A, WAN_MAC, t(0));
    drain(&mut e);
    e.want(WAN_A, PE_A, t(10));
    assert!(
        drain(&mut e).is_empty(),
        "tentative addresses are not sources"
    );
    e.handle_timeout(t(1000));
    assert!(drain(&mut e).is_empty(), "the retry is not due yet");
    e.handle_timeout(t(1250));
    let sent = drain(&mut e);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2, ndisc::link_local(WAN_MAC));
}

#[test]
fn removed_addresses_are_not_answered() {
    let mut e = ready();
    e.remove_address(Iface::Lan, LAN_A);
    e.handle_frame(Iface::Lan, &ns(HOST, LAN_A, Some(HOST_MAC)), t(2000));
    assert!(drain(&mut e).is_empty());
    assert!(!e.is_usable(Iface::Lan, LAN_A));
}
