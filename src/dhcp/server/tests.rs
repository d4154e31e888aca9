use std::collections::HashSet;

use dhcproto::v4::{Decodable, Flags};
use proptest::prelude::*;

use super::*;
use crate::config::{AddrRange, ClientRoute, StaticLease};

const LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 0, last)
}

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

fn config() -> DhcpServerConfig {
    DhcpServerConfig {
        pools: vec![AddrRange {
            first: ip(100),
            last: ip(109),
        }],
        exclude: vec![AddrRange {
            first: ip(102),
            last: ip(104),
        }],
        static_leases: vec![StaticLease {
            mac: mac(0x50),
            address: ip(50),
            hostname: None,
        }],
        router: LAN,
        dns_servers: vec![LAN],
        domain: Some("lan".into()),
        lease_time: Duration::from_secs(3600),
        mtu: Some(1400),
        routes: vec![ClientRoute {
            prefix: "10.0.0.0/8".parse().unwrap(),
            next_hop: ip(254),
        }],
        lease_file: None,
        max_leases: 64,
        max_per_mac: 2,
    }
}

fn server() -> Server {
    Server::new(config(), "192.168.0.1/24".parse().unwrap())
}

fn t(secs: u64) -> Instant {
    Instant::from_millis(secs * 1000)
}

/// A client request as dhclient sends it.
fn request(kind: MessageType, client: MacAddr, xid: u32) -> Message {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &client.0,
    );
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::ClasslessStaticRoute,
    ]));
    m
}

fn with(mut m: Message, opt: DhcpOption) -> Message {
    m.opts_mut().insert(opt);
    m
}

fn bytes(m: &Message) -> Vec<u8> {
    m.to_vec().unwrap()
}

fn replies(s: &mut Server) -> Vec<(Message, Reply)> {
    let mut v = Vec::new();
    while let Some(o) = s.poll_output() {
        if let Output::Reply(r) = o {
            v.push((Message::from_bytes(&r.payload).unwrap(), r));
        }
    }
    v
}

fn probes(s: &mut Server) -> Vec<Ipv4Addr> {
    let mut v = Vec::new();
    while let Some(o) = s.poll_output() {
        match o {
            Output::ArpProbe { target } => v.push(target),
            Output::Reply(_) => panic!("reply where a probe was expected"),
        }
    }
    v
}

/// DISCOVER, probe timeout, OFFER; returns the offered address.
fn discover(s: &mut Server, c: MacAddr, now: Instant) -> Ipv4Addr {
    s.handle_packet(&bytes(&request(MessageType::Discover, c, 1)), c, now);
    let p = probes(s);
    assert_eq!(p.len(), 1, "one probe per discover");
    s.handle_timeout(now + PROBE_TIMEOUT);
    let r = replies(s);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(r[0].0.yiaddr(), p[0]);
    p[0]
}

fn select(s: &mut Server, c: MacAddr, addr: Ipv4Addr, now: Instant) -> Message {
    let m = request(MessageType::Request, c, 2);
    let m = with(m, DhcpOption::ServerIdentifier(LAN));
    let m = with(m, DhcpOption::RequestedIpAddress(addr));
    s.handle_packet(&bytes(&m), c, now);
    let mut r = replies(s);
    assert_eq!(r.len(), 1);
    r.remove(0).0
}

fn lease(s: &mut Server, c: MacAddr, now: Instant) -> Ipv4Addr {
    let a = discover(s, c, now);
    let ack = select(s, c, a, now + PROBE_TIMEOUT);
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    a
}

#[test]
fn dora_gives_the_first_free_pool_address_with_the_options() {
    let mut s = server();
    let a = discover(&mut s, mac(1), t(0));
    assert_eq!(a, ip(100));
    let ack = select(&mut s, mac(1), a, t(1));
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), ip(100));
    let o = ack.opts();
    assert_eq!(
        o.get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(LAN))
    );
    assert_eq!(
        o.get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        o.get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![LAN]))
    );
    assert_eq!(
        o.get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![LAN]))
    );
    assert_eq!(
        o.get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("lan".into()))
    );
    assert_eq!(
        o.get(OptionCode::InterfaceMtu),
        Some(&DhcpOption::InterfaceMtu(1400))
    );
    assert_eq!(
        o.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
    let Some(DhcpOption::ClasslessStaticRoute(routes)) = o.get(OptionCode::ClasslessStaticRoute)
    else {
        panic!("no option 121")
    };
    assert_eq!(
        routes.len(),
        2,
        "the configured route and the default: {routes:?}"
    );
    assert!(
        routes
            .iter()
            .any(|(n, gw)| n.prefix_len() == 0 && *gw == LAN)
    );
    assert_eq!(s.leases()[0].state, LeaseState::Bound);
    assert!(s.take_changed());
    assert!(!s.take_changed());
}

#[test]
fn replies_go_where_rfc_2131_says() {
    let mut s = server();
    // No broadcast flag, no ciaddr: unicast to yiaddr at chaddr.
    s.handle_packet(
        &bytes(&request(MessageType::Discover, mac(1), 1)),
        mac(1),
        t(0),
    );
    probes(&mut s);
    s.handle_timeout(t(1));
    let r = replies(&mut s);
    assert_eq!((r[0].1.dst_mac, r[0].1.dst_ip), (mac(1), ip(100)));
    // Broadcast flag: broadcast.
    let mut m = request(MessageType::Discover, mac(2), 1);
    m.set_flags(Flags::default().set_broadcast());
    s.handle_packet(&bytes(&m), mac(2), t(2));
    probes(&mut s);
    s.handle_timeout(t(3));
    let r = replies(&mut s);
    assert_eq!(
        (r[0].1.dst_mac, r[0].1.dst_ip),
        (MacAddr::BROADCAST, Ipv4Addr::BROADCAST)
    );
    // NAK: broadcast.
    let m = with(
        request(MessageType::Request, mac(3), 1),
        DhcpOption::RequestedIpAddress(ip(7)),
    );
    s.handle_packet(&bytes(&m), mac(3), t(4));
    let r = replies(&mut s);
    assert_eq!(r[0].0.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(r[0].1.dst_ip, Ipv4Addr::BROADCAST);
}

#[test]
fn two_clients_never_get_the_same_address() {
    let mut s = server();
    let mut seen = HashSet::new();
    for n in 1..=7 {
        // The pool has 10 addresses, 3 excluded: 7 leases.
        assert!(
            seen.insert(lease(&mut s, mac(n), t(n.into()))),
            "duplicate address"
        );
    }
    assert!(
        seen.iter().all(|a| !(ip(102)..=ip(104)).contains(a)),
        "{seen:?}"
    );
    s.handle_packet(
        &bytes(&request(MessageType::Discover, mac(8), 1)),
        mac(8),
        t(9),
    );
    assert!(probes(&mut s).is_empty());
    assert_eq!(s.counters().dropped(Drop::PoolExhausted), 1);
}

#[test]
fn offers_are_held_briefly_then_freed() {
    let mut s = server();
    let a = discover(&mut s, mac(1), t(0));
    // Another client during the hold gets another address.
    let b = discover(&mut s, mac(2), t(1));
    assert_ne!(a, b);
    // After the hold, the first offer is gone and its address free again.
    s.handle_timeout(t(0) + PROBE_TIMEOUT + OFFER_HOLD);
    assert_eq!(s.leases().len(), 1);
    assert_eq!(discover(&mut s, mac(3), t(40)), a);
    // A late REQUEST for the lost offer is refused.
    let r = select(&mut s, mac(1), a, t(41));
    assert_eq!(r.opts().msg_type(), Some(MessageType::Nak));
}

#[test]
fn leases_expire_and_renewals_extend_them() {
    let mut s = server();
    let a = lease(&mut s, mac(1), t(0));
    assert_eq!(
        s.poll_timeout(),
        Some(t(0) + PROBE_TIMEOUT + Duration::from_secs(3600))
    );
    // Renewal at T1: unicast REQUEST with ciaddr, no server id or requested address.
    let mut renew = request(MessageType::Request, mac(1), 3);
    renew.set_ciaddr(a);
    s.handle_packet(&bytes(&renew), mac(1), t(1800));
    let r = replies(&mut s);
    assert_eq!(r[0].0.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(
        (r[0].1.dst_mac, r[0].1.dst_ip),
        (mac(1), a),
        "unicast to ciaddr"
    );
    s.handle_timeout(t(3601));
    assert_eq!(s.leases().len(), 1, "renewed at 1800 s: still bound");
    s.handle_timeout(t(1800 + 3600));
    assert!(s.leases().is_empty());
    assert_eq!(s.counters().expired, 1);
}

#[test]
fn requests_for_another_clients_address_are_refused_and_counted() {
    let mut s = server();
    let a = lease(&mut s, mac(1), t(0));
    // INIT-REBOOT of a second client claiming the first one's address.
    let m = with(
        request(MessageType::Request, mac(2), 9),
        DhcpOption::RequestedIpAddress(a),
    );
    s.handle_packet(&bytes(&m), mac(2), t(5));
    assert_eq!(
        replies(&mut s)[0].0.opts().msg_type(),
        Some(MessageType::Nak)
    );
    // Renewing with someone else's ciaddr.
    let mut m = request(MessageType::Request, mac(3), 9);
    m.set_ciaddr(a);
    s.handle_packet(&bytes(&m), mac(3), t(6));
    assert_eq!(
        replies(&mut s)[0].0.opts().msg_type(),
        Some(MessageType::Nak)
    );
    assert_eq!(s.counters().dropped(Drop::AddressTaken), 2);
    assert_eq!(s.leases()[0].mac, mac(1), "the lease stays with its owner");
    // Releasing someone else's address is ignored too.
    let mut m = request(MessageType::Release, mac(3), 9);
    m.set_ciaddr(a);
    s.handle_packet(&bytes(&m), mac(3), t(7));
    assert_eq!(s.leases().len(), 1);
    assert_eq!(s.counters().dropped(Drop::NotHeld), 1);
}

#[test]
fn a_probe_answer_moves_the_offer_to_another_address() {
    let mut s = server();
    s.handle_packet(
        &bytes(&request(MessageType::Discover, mac(1), 1)),
        mac(1),
        t(0),
    );
    assert_eq!(probes(&mut s), vec![ip(100)]);
    // A host with a static address answers.
    s.handle_arp(ip(100), mac(0x99), t(0));
    assert_eq!(
        probes(&mut s),
        vec![ip(101)],
        "the next candidate is probed"
    );
    s.handle_timeout(t(1));
    let r = replies(&mut s);
    assert_eq!(r[0].0.yiaddr(), ip(101));
    assert_eq!(s.counters().conflicts, 1);
    // The address in use stays out of the pool for a while.
    assert_eq!(discover(&mut s, mac(2), t(2)), ip(105));
}

#[test]
fn decline_quarantines_and_release_frees() {
    let mut s = server();
    let a = lease(&mut s, mac(1), t(0));
    let m = with(
        request(MessageType::Decline, mac(1), 4),
        DhcpOption::RequestedIpAddress(a),
    );
    s.handle_packet(&bytes(&m), mac(1), t(1));
    assert!(s.leases().is_empty());
    assert_eq!(s.counters().declines, 1);
    let b = lease(&mut s, mac(1), t(2));
    assert_ne!(a, b, "a declined address is not offered again at once");
    let mut m = request(MessageType::Release, mac(1), 5);
    m.set_ciaddr(b);
    s.handle_packet(&bytes(&m), mac(1), t(3));
    assert!(s.leases().is_empty());
    assert_eq!(s.counters().releases, 1);
    s.handle_timeout(t(1) + QUARANTINE);
    assert_eq!(discover(&mut s, mac(2), t(700)), a, "quarantine over");
}

#[test]
fn inform_gets_parameters_without_a_lease() {
    let mut s = server();
    let mut m = request(MessageType::Inform, mac(9), 6);
    m.set_ciaddr(ip(20));
    s.handle_packet(&bytes(&m), mac(9), t(0));
    let r = replies(&mut s);
    assert_eq!(r[0].0.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(r[0].0.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(r[0].0.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert_eq!(r[0].1.dst_ip, ip(20));
    assert!(s.leases().is_empty());
}

#[test]
fn static_leases_are_offered_without_probe_and_reserved() {
    let mut s = server();
    s.handle_packet(
        &bytes(&request(MessageType::Discover, mac(0x50), 1)),
        mac(0x50),
        t(0),
    );
    let r = replies(&mut s);
    assert_eq!(r[0].0.yiaddr(), ip(50));
    // Nobody else may claim it, even by INIT-REBOOT.
    let m = with(
        request(MessageType::Request, mac(2), 9),
        DhcpOption::RequestedIpAddress(ip(50)),
    );
    s.handle_packet(&bytes(&m), mac(2), t(1));
    assert_eq!(
        replies(&mut s)[0].0.opts().msg_type(),
        Some(MessageType::Nak)
    );
}

#[test]
fn one_mac_flooding_discovers_holds_at_most_its_bound() {
    let mut s = server();
    // dhcpstarv-style: one Ethernet source, a new chaddr per DISCOVER.
    for n in 1..=50 {
        s.handle_packet(
            &bytes(&request(MessageType::Discover, mac(n), 1)),
            mac(0xee),
            t(0),
        );
    }
    assert_eq!(s.leases().len(), 2, "max_per_mac");
    assert_eq!(s.counters().dropped(Drop::PerMacLimit), 48);
    assert_eq!(probes(&mut s).len(), 2);
    s.handle_timeout(t(0) + PROBE_TIMEOUT);
    assert_eq!(replies(&mut s).len(), 2);
    // Others still get addresses.
    assert_eq!(lease(&mut s, mac(0x60), t(1)), ip(105));
}

#[test]
fn a_flood_from_many_macs_stops_at_the_total_bound() {
    let mut cfg = config();
    cfg.pools[0].last = ip(250);
    cfg.max_leases = 20;
    let mut s = Server::new(cfg, "192.168.0.1/24".parse().unwrap());
    for n in 1..=200 {
        s.handle_packet(
            &bytes(&request(MessageType::Discover, mac(n), 1)),
            mac(n),
            t(0),
        );
    }
    assert_eq!(s.leases().len(), 20);
    assert_eq!(s.counters().dropped(Drop::TotalLimit), 180);
    // The offers lapse and the pool is whole again.
    s.handle_timeout(t(0) + PROBE_TIMEOUT);
    s.handle_timeout(t(0) + PROBE_TIMEOUT + OFFER_HOLD);
    assert!(s.leases().is_empty());
}

#[test]
fn hostile_messages_are_counted_drops() {
    let mut s = server();
    let good = bytes(&request(MessageType::Discover, mac(1), 1));
    let mut long = good.clone();
    long.resize(2000, 0);
    let mut hw = good.clone();
    hw[2] = 200; // hlen past chaddr's 16 bytes
    let mut cookie = good.clone();
    cookie[236] = 0;
    let mut reply = good.clone();
    reply[0] = 2;
    let mut many = request(MessageType::Discover, mac(1), 1);
    for code in 160..=250u8 {
        many.opts_mut()
            .insert(DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
                OptionCode::from(code),
                vec![0],
            )));
    }
    let mut bad_len = good.clone();
    let opt53 = bad_len[240..].iter().position(|&b| b == 53).unwrap() + 240;
    bad_len[opt53 + 1] = 2; // message type with two bytes
    let mut relayed = request(MessageType::Discover, mac(1), 1);
    relayed.set_giaddr(ip(9));
    for (payload, reason) in [
        (good[..100].to_vec(), Drop::Malformed),
        (long, Drop::Oversize),
        (hw, Drop::BadHardware),
        (cookie, Drop::NotDhcp),
        (reply, Drop::NotRequest),
        (bytes(&many), Drop::TooManyOptions),
        (bad_len, Drop::BadLength),
        (bytes(&relayed), Drop::Relayed),
        (
            bytes(&request(MessageType::Offer, mac(1), 1)),
            Drop::UnexpectedType,
        ),
    ] {
        s.handle_packet(&payload, mac(1), t(0));
        assert_eq!(s.counters().dropped(reason), 1, "{reason:?}");
        assert!(s.poll_output().is_none(), "{reason:?}");
    }
    assert!(s.leases().is_empty());
}

#[test]
fn restored_leases_are_kept_and_clashing_ones_returned() {
    let mut s = server();
    let a = lease(&mut s, mac(1), t(0));
    let b = lease(&mut s, mac(2), t(0));
    let saved = s.leases();
    let mut s2 = server();
    let mut clash = saved[0].clone();
    clash.mac = mac(0x50); // the static MAC, with a pool address
    let rejected = s2.restore([saved.clone(), vec![clash.clone()]].concat(), t(10));
    assert_eq!(rejected, vec![clash]);
    assert_eq!(s2.leases(), saved);
    // The restored owner renews; a newcomer gets neither address.
    let c = lease(&mut s2, mac(3), t(11));
    assert!(c != a && c != b);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_or_grow_state(
        packets in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..600), any::<u8>()), 1..40),
    ) {
        let mut s = server();
        let header = bytes(&request(MessageType::Discover, mac(1), 1));
        for (i, (mut p, src)) in packets.into_iter().enumerate() {
            // Half the inputs keep a valid header so the engine goes past the first checks.
            if i % 2 == 0 && p.len() >= 8 {
                let tail = p.split_off(p.len() / 2);
                p = [header[..240].to_vec(), tail].concat();
                p[28..34].copy_from_slice(&[2, 0, 0, 0, 0, src]);
            }
            s.handle_packet(&p, mac(src), t(i as u64));
            s.handle_arp(ip(src), mac(src), t(i as u64));
            while s.poll_output().is_some() {}
            prop_assert!(s.leases().len() <= 64);
            prop_assert!(s.per_mac.values().all(|&n| n <= 2));
            prop_assert_eq!(s.bindings.len(), s.by_client.len());
        }
    }
}
