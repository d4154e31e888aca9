use super::*;
use crate::control::fixtures::*;
use crate::wire::ethernet::{EthernetFrame, ethertype};

fn engine() -> ArpEngine {
    let next_hops = vec![
        NextHop {
            addr: NH_A,
            carrier: true,
        },
        NextHop {
            addr: NH_B,
            carrier: false,
        },
    ];
    ArpEngine::new(addressing(), next_hops, NeighParams::default(), t(0))
}

fn arp_in(op: u16, smac: MacAddr, sip: Ipv4Addr, tip: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; ETH_OFFSET + arp::MIN_FRAME_LEN];
    let dst = if op == arp::op::REQUEST {
        MacAddr::BROADCAST
    } else {
        LAN_MAC
    };
    arp::build_frame(&mut f[ETH_OFFSET..], dst, op, smac, sip, MacAddr::ZERO, tip).unwrap();
    f
}

/// (iface, eth dst, op, sender mac, sender ip, target mac, target ip) of a sent ARP frame.
type Sent = (Iface, MacAddr, u16, MacAddr, Ipv4Addr, MacAddr, Ipv4Addr);

fn sent_arp(e: &mut ArpEngine) -> Vec<Sent> {
    std::iter::from_fn(|| e.poll_transmit())
        .map(|t| {
            let eth = EthernetFrame::new_checked(&t.frame[ETH_OFFSET..]).unwrap();
            assert_eq!(eth.ethertype(), ethertype::ARP);
            let a = ArpPacket::new_checked(&t.frame[IP_OFFSET..]).unwrap();
            assert_eq!(eth.src(), a.sender_mac());
            (
                t.iface,
                eth.dst(),
                a.operation(),
                a.sender_mac(),
                a.sender_ip(),
                a.target_mac(),
                a.target_ip(),
            )
        })
        .collect()
}

fn events(e: &mut ArpEngine) -> Vec<ArpEvent> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

/// A frame as the fast path hands it over: complete but for the destination MAC.
fn held_frame(tag: u8) -> Vec<u8> {
    ipv4_frame(MacAddr::ZERO, LAN_MAC, &[0x45, tag])
}

#[test]
fn request_for_own_address_is_answered() {
    let mut e = engine();
    e.handle_frame(LAN, &arp_in(arp::op::REQUEST, HOST_MAC, HOST, LAN_IP), t(5));
    assert_eq!(
        sent_arp(&mut e),
        vec![(
            LAN,
            HOST_MAC,
            arp::op::REPLY,
            LAN_MAC,
            LAN_IP,
            HOST_MAC,
            HOST
        )]
    );
    // RFC 826 merge: the asker is learned.
    assert_eq!(e.lookup(LAN, HOST), Some(HOST_MAC));
    assert_eq!(
        events(&mut e),
        vec![ArpEvent::Learned {
            iface: LAN,
            ip: HOST,
            mac: HOST_MAC
        }]
    );
}

#[test]
fn requests_for_other_addresses_are_not_answered() {
    let mut e = engine();
    let other = Ipv4Addr::new(192, 168, 0, 7);
    e.handle_frame(LAN, &arp_in(arp::op::REQUEST, HOST_MAC, HOST, other), t(0));
    // The uplink's address asked on the LAN is not the LAN's address.
    e.handle_frame(LAN, &arp_in(arp::op::REQUEST, HOST_MAC, HOST, A_IP), t(0));
    assert_eq!(sent_arp(&mut e), vec![]);
    assert_eq!(e.lookup(LAN, HOST), None);
    assert_eq!(events(&mut e), vec![]);
}

#[test]
fn off_link_or_multicast_senders_are_not_learned() {
    let mut e = engine();
    let far = Ipv4Addr::new(10, 0, 0, 1);
    e.handle_frame(LAN, &arp_in(arp::op::REQUEST, HOST_MAC, far, LAN_IP), t(0));
    let multicast = MacAddr([1, 0, 0x5e, 0, 0, 1]);
    e.handle_frame(
        LAN,
        &arp_in(arp::op::REQUEST, multicast, HOST, LAN_IP),
        t(0),
    );
    assert_eq!(e.lookup(LAN, far), None);
    assert_eq!(e.lookup(LAN, HOST), None);
}

#[test]
fn truncated_arp_is_counted() {
    let mut e = engine();
    let f = arp_in(arp::op::REQUEST, HOST_MAC, HOST, LAN_IP);
    e.handle_frame(LAN, &f[..IP_OFFSET + 20], t(0));
    assert_eq!(
        events(&mut e),
        vec![ArpEvent::Dropped(DropReason::BadL4Header)]
    );
    assert_eq!(sent_arp(&mut e), vec![]);
}

#[test]
fn held_frames_go_out_when_the_reply_comes() {
    let mut e = engine();
    e.send_via(LAN, HOST, held_frame(1), t(0));
    e.send_via(LAN, HOST, held_frame(2), t(1));
    // One request for both.
    assert_eq!(
        sent_arp(&mut e),
        vec![(
            LAN,
            MacAddr::BROADCAST,
            arp::op::REQUEST,
            LAN_MAC,
            LAN_IP,
            MacAddr::ZERO,
            HOST
        )]
    );
    e.handle_frame(LAN, &arp_in(arp::op::REPLY, HOST_MAC, HOST, LAN_IP), t(2));
    let out: Vec<Transmit> = std::iter::from_fn(|| e.poll_transmit()).collect();
    assert_eq!(out.len(), 2);
    for (i, tx) in out.iter().enumerate() {
        assert_eq!(tx.iface, LAN);
        let eth = EthernetFrame::new_checked(&tx.frame[ETH_OFFSET..]).unwrap();
        assert_eq!(eth.dst(), HOST_MAC);
        assert_eq!(tx.frame[IP_OFFSET + 1], i as u8 + 1);
    }
    // Known now: the next one goes straight out.
    e.send_via(LAN, HOST, held_frame(3), t(3));
    assert_eq!(e.poll_transmit().map(|t| t.frame[IP_OFFSET + 1]), Some(3));
}

#[test]
fn resolution_retries_then_gives_up_and_drops_held_frames() {
    let mut e = engine();
    e.handle_timeout(t(0));
    sent_arp(&mut e);
    e.send_via(LAN, HOST, held_frame(1), t(0));
    e.send_via(LAN, HOST, held_frame(2), t(0));
    assert_eq!(sent_arp(&mut e).len(), 1);
    let asks = |e: &mut ArpEngine| {
        sent_arp(e)
            .into_iter()
            .filter(|s| s.0 == LAN && s.6 == HOST)
            .count()
    };
    e.handle_timeout(t(500));
    assert_eq!(asks(&mut e), 0, "retry comes after a second");
    e.handle_timeout(t(1000));
    assert_eq!(asks(&mut e), 1);
    e.handle_timeout(t(2000));
    assert_eq!(asks(&mut e), 1);
    assert_eq!(events(&mut e), vec![]);
    e.handle_timeout(t(3000));
    assert_eq!(asks(&mut e), 0);
    assert_eq!(
        events(&mut e),
        vec![
            ArpEvent::Dropped(DropReason::NoNeighbour),
            ArpEvent::Dropped(DropReason::NoNeighbour),
            ArpEvent::Removed
        ]
    );
    // Nothing held is left to send if the reply comes late.
    e.handle_frame(
        LAN,
        &arp_in(arp::op::REPLY, HOST_MAC, HOST, LAN_IP),
        t(3100),
    );
    assert_eq!(e.poll_transmit(), None);
}

#[test]
fn held_frames_are_bounded_per_neighbour() {
    let mut e = engine();
    let bound = NeighParams::default().queue_len;
    for i in 0..bound + 3 {
        e.send_via(LAN, HOST, held_frame(i as u8), t(0));
    }
    assert_eq!(
        events(&mut e),
        vec![ArpEvent::Dropped(DropReason::NoNeighbour); 3]
    );
    sent_arp(&mut e);
    e.handle_frame(LAN, &arp_in(arp::op::REPLY, HOST_MAC, HOST, LAN_IP), t(1));
    assert_eq!(std::iter::from_fn(|| e.poll_transmit()).count(), bound);
}

#[test]
fn announce_is_gratuitous_everywhere_and_asks_for_next_hops() {
    let mut e = engine();
    e.announce(t(0));
    let (bc, req, z) = (MacAddr::BROADCAST, arp::op::REQUEST, MacAddr::ZERO);
    assert_eq!(
        sent_arp(&mut e),
        vec![
            (LAN, bc, req, LAN_MAC, LAN_IP, z, LAN_IP),
            (A, bc, req, A_MAC, A_IP, z, A_IP),
            (A, bc, req, A_MAC, A_IP, z, NH_A),
            (B, bc, req, B_MAC, B_IP, z, B_IP),
            (B, bc, req, B_MAC, B_IP, z, NH_B),
        ]
    );
}

#[test]
fn next_hops_are_kept_resolved_only_with_carrier() {
    let mut e = engine();
    e.handle_timeout(t(0));
    let asked =
        |e: &mut ArpEngine| -> Vec<Ipv4Addr> { sent_arp(e).into_iter().map(|s| s.6).collect() };
    assert_eq!(asked(&mut e), vec![NH_A]);
    assert_eq!(e.poll_timeout(), Some(t(250)));
    // B comes up: announced, and its next hop asked for.
    e.set_carrier(UplinkId(1), true, t(100));
    assert_eq!(asked(&mut e), vec![B_IP, NH_B]);
    e.handle_frame(A, &arp_in(arp::op::REPLY, PE_A_MAC, NH_A, A_IP), t(200));
    assert_eq!(e.lookup(A, NH_A), Some(PE_A_MAC));
    assert_eq!(
        events(&mut e),
        vec![ArpEvent::Learned {
            iface: A,
            ip: NH_A,
            mac: PE_A_MAC
        }]
    );
}

#[test]
fn virtual_addresses_are_answered_with_their_mac_only_while_set() {
    let mut e = engine();
    let vip = Ipv4Addr::new(192, 168, 0, 254);
    let vmac = crate::wire::vrrp::virtual_mac(1);
    // Backup: not ours to answer.
    e.handle_frame(LAN, &arp_in(arp::op::REQUEST, HOST_MAC, HOST, vip), t(0));
    assert_eq!(sent_arp(&mut e), vec![]);
    // Master: answered from the virtual MAC.
    e.set_virtual(vec![(vip, vmac)]);
    e.handle_frame(LAN, &arp_in(arp::op::REQUEST, HOST_MAC, HOST, vip), t(1));
    assert_eq!(
        sent_arp(&mut e),
        vec![(LAN, HOST_MAC, arp::op::REPLY, vmac, vip, HOST_MAC, HOST)]
    );
    // Only on the LAN; the router's own address keeps the real MAC.
    e.handle_frame(A, &arp_in(arp::op::REQUEST, PE_A_MAC, NH_A, vip), t(2));
    e.handle_frame(LAN, &arp_in(arp::op::REQUEST, HOST_MAC, HOST, LAN_IP), t(3));
    assert_eq!(
        sent_arp(&mut e),
        vec![(
            LAN,
            HOST_MAC,
            arp::op::REPLY,
            LAN_MAC,
            LAN_IP,
            HOST_MAC,
            HOST
        )]
    );
    e.set_virtual(vec![]);
    e.handle_frame(LAN, &arp_in(arp::op::REQUEST, HOST_MAC, HOST, vip), t(4));
    assert_eq!(sent_arp(&mut e), vec![]);
}
