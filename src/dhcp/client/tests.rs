use dhcproto::v4::Decodable;
use proptest::prelude::*;

use super::*;
use crate::config::{AddrRange, DhcpServerConfig};
use crate::dhcp::server::{self, Server};

const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);
const SERVER: Ipv4Addr = Ipv4Addr::new(100, 64, 2, 1);
const OTHER_SERVER: Ipv4Addr = Ipv4Addr::new(100, 64, 2, 2);
const ADDR: Ipv4Addr = Ipv4Addr::new(100, 64, 2, 50);

fn client(seed: u64) -> Client {
    let opts = ClientOptions {
        mac: MAC,
        client_id: None,
        hostname: Some("mhrouter".into()),
        vendor_class: Some("mhrouter-test".into()),
    };
    Client::new(opts, seed, Instant::ZERO)
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn sent(c: &mut Client) -> Vec<(Message, Transmit)> {
    let mut v = Vec::new();
    while let Some(tx) = c.poll_transmit() {
        v.push((Message::from_bytes(&tx.payload).unwrap(), tx));
    }
    v
}

fn events(c: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Fires the client's timer; returns when it fired.
fn fire(c: &mut Client) -> Instant {
    let at = c.poll_timeout().expect("a timer");
    c.handle_timeout(at);
    at
}

/// A server reply to `req` (same xid and chaddr).
fn reply(req: &Message, kind: MessageType, yiaddr: Ipv4Addr, server: Ipv4Addr) -> Vec<u8> {
    let mut m = Message::new_with_id(
        req.xid(),
        req.ciaddr(),
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        req.chaddr(),
    );
    m.set_opcode(Opcode::BootReply);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ServerIdentifier(server));
    if kind != MessageType::Nak {
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![SERVER]));
        o.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            100, 64, 2, 53,
        )]));
        o.insert(DhcpOption::InterfaceMtu(1492));
        o.insert(DhcpOption::AddressLeaseTime(1000));
        o.insert(DhcpOption::Renewal(500));
        o.insert(DhcpOption::Rebinding(875));
    }
    m.to_vec().unwrap()
}

/// From a new client to BOUND at about 1 s; returns the client and the lease.
fn bound(seed: u64) -> (Client, Lease) {
    let mut c = client(seed);
    let at = fire(&mut c);
    let d = sent(&mut c).remove(0).0;
    c.handle_packet(&reply(&d, MessageType::Offer, ADDR, SERVER), at);
    let r = sent(&mut c).remove(0).0;
    c.handle_packet(&reply(&r, MessageType::Ack, ADDR, SERVER), at);
    let [Event::Bound(lease)] = &events(&mut c)[..] else {
        panic!("not bound")
    };
    (c, lease.clone())
}

#[test]
fn init_sends_a_broadcast_discover_and_backs_off_with_jitter() {
    let mut c = client(7);
    assert_eq!(c.state(), State::Init);
    let first = fire(&mut c);
    assert!(first <= Instant::ZERO + INIT_DELAY);
    assert_eq!(c.state(), State::Selecting);
    let (m, tx) = sent(&mut c).remove(0);
    let xid = m.xid();
    assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
    assert_eq!(
        (tx.src, tx.dst),
        (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)
    );
    assert_eq!(m.chaddr(), &MAC.0);
    assert!(
        m.flags().broadcast(),
        "no address yet: replies must be broadcast"
    );
    assert_eq!(
        m.opts().get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("mhrouter".into()))
    );
    assert_eq!(
        m.opts().get(OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"mhrouter-test".to_vec()))
    );
    let mut prev = first;
    let mut gaps = Vec::new();
    for _ in 0..7 {
        let at = fire(&mut c);
        let m = sent(&mut c).remove(0).0;
        assert_eq!(m.xid(), xid, "retransmissions keep the xid");
        gaps.push(at - prev);
        prev = at;
    }
    for (gap, base) in gaps.iter().zip([4, 8, 16, 32, 64, 64, 64]) {
        assert!(
            *gap >= secs(base - 1) && *gap < secs(base + 1),
            "{gaps:?}: 4, 8 .. 64 s each ±1 s"
        );
    }
    // The same seed gives the same schedule; another seed another one.
    let replay = |seed| {
        let mut c = client(seed);
        (0..5).map(|_| fire(&mut c)).collect::<Vec<_>>()
    };
    assert_eq!(replay(7), replay(7));
    assert_ne!(replay(7), replay(8));
}

#[test]
fn offer_request_ack_binds_with_the_lease_parameters() {
    let mut c = client(1);
    let at = fire(&mut c);
    let d = sent(&mut c).remove(0).0;
    c.handle_packet(&reply(&d, MessageType::Offer, ADDR, SERVER), at + secs(1));
    assert_eq!(c.state(), State::Requesting);
    let (r, tx) = sent(&mut c).remove(0);
    assert_eq!(r.opts().msg_type(), Some(MessageType::Request));
    assert_eq!(r.xid(), d.xid());
    assert_eq!(tx.dst, Ipv4Addr::BROADCAST);
    assert_eq!(
        r.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(ADDR))
    );
    assert_eq!(
        r.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    c.handle_packet(&reply(&r, MessageType::Ack, ADDR, SERVER), at + secs(2));
    assert_eq!(c.state(), State::Bound);
    let [Event::Bound(l)] = &events(&mut c)[..] else {
        panic!()
    };
    assert_eq!(l.address, "100.64.2.50/24".parse().unwrap());
    assert_eq!(l.router, Some(SERVER));
    assert_eq!(l.dns_servers, vec![Ipv4Addr::new(100, 64, 2, 53)]);
    assert_eq!(l.mtu, Some(1492));
    assert_eq!(
        (l.lease_time, l.t1, l.t2),
        (secs(1000), secs(500), secs(875))
    );
    // Timers count from the REQUEST (RFC 2131 4.4.1), not from the DISCOVER.
    assert_eq!(l.acquired, at + secs(1));
    assert_eq!(c.poll_timeout(), Some(at + secs(501)));
}

#[test]
fn renewing_at_t1_is_unicast_and_an_ack_renews() {
    let (mut c, lease) = bound(2);
    let t1 = fire(&mut c);
    assert_eq!(t1, lease.renew_at());
    assert_eq!(c.state(), State::Renewing);
    let (r, tx) = sent(&mut c).remove(0);
    assert_eq!(
        (tx.src, tx.dst),
        (ADDR, SERVER),
        "unicast from the leased address"
    );
    assert_eq!(r.ciaddr(), ADDR);
    assert!(!r.flags().broadcast());
    assert!(r.opts().get(OptionCode::ServerIdentifier).is_none());
    assert!(r.opts().get(OptionCode::RequestedIpAddress).is_none());
    c.handle_packet(&reply(&r, MessageType::Ack, ADDR, SERVER), t1 + secs(1));
    let [Event::Renewed(l)] = &events(&mut c)[..] else {
        panic!()
    };
    assert_eq!(l.acquired, t1);
    assert_eq!(c.state(), State::Bound);
    assert_eq!(c.poll_timeout(), Some(t1 + secs(500)));
}

#[test]
fn unanswered_renewal_rebinds_at_t2_and_another_server_can_answer() {
    let (mut c, lease) = bound(3);
    fire(&mut c);
    sent(&mut c);
    // T1 at 500 s, T2 at 875 s: half of 375 s is 187.5 s.
    let retry = fire(&mut c);
    // Then half the time left, at least 60 s, never past T2: 781.25, 841.25, then T2 (875).
    let mut times = vec![retry];
    let mut last = sent(&mut c);
    assert_eq!(last[0].1.dst, SERVER);
    // Bounded, so a schedule that never reaches T2 fails instead of looping.
    for _ in 0..10 {
        if c.state() != State::Renewing {
            break;
        }
        times.push(fire(&mut c));
        last = sent(&mut c);
    }
    let after_t1: Vec<u64> = times
        .iter()
        .map(|&x| (x - lease.renew_at()).as_millis() as u64)
        .collect();
    assert_eq!(after_t1, vec![187_500, 281_250, 341_250, 375_000]);
    let t2 = *times.last().unwrap();
    assert_eq!(t2, lease.rebind_at());
    assert_eq!(c.state(), State::Rebinding);
    assert_eq!(
        events(&mut c),
        vec![Event::Rebinding {
            address: lease.address,
            server: SERVER
        }],
        "the renewals went unanswered, the address stays"
    );
    let (r, tx) = last.remove(0);
    assert_eq!((tx.src, tx.dst), (ADDR, Ipv4Addr::BROADCAST));
    c.handle_packet(
        &reply(&r, MessageType::Ack, ADDR, OTHER_SERVER),
        t2 + secs(1),
    );
    let [Event::Renewed(l)] = &events(&mut c)[..] else {
        panic!()
    };
    assert_eq!(
        l.server, OTHER_SERVER,
        "renewals now go to the server that answered"
    );
}

#[test]
fn the_lease_is_lost_at_expiry_and_discovery_starts_again() {
    let (mut c, lease) = bound(4);
    let mut last = Instant::ZERO;
    for _ in 0..20 {
        if c.state() == State::Selecting {
            break;
        }
        last = fire(&mut c);
        sent(&mut c);
        assert!(last <= lease.expires_at());
    }
    assert_eq!(last, lease.expires_at());
    assert_eq!(
        events(&mut c),
        vec![
            Event::Rebinding {
                address: lease.address,
                server: SERVER
            },
            Event::Lost {
                address: lease.address
            }
        ]
    );
    assert!(c.lease().is_none());
}

#[test]
fn a_nak_loses_the_lease_and_a_new_address_is_a_change() {
    let (mut c, lease) = bound(5);
    let t1 = fire(&mut c);
    let r = sent(&mut c).remove(0).0;
    c.handle_packet(
        &reply(&r, MessageType::Nak, Ipv4Addr::UNSPECIFIED, SERVER),
        t1,
    );
    assert_eq!(
        events(&mut c),
        vec![Event::Lost {
            address: lease.address
        }]
    );
    assert_eq!(c.state(), State::Init);
    let at = fire(&mut c);
    assert!(at - t1 <= INIT_DELAY);
    let d = sent(&mut c).remove(0).0;
    let new = Ipv4Addr::new(100, 64, 2, 77);
    c.handle_packet(&reply(&d, MessageType::Offer, new, SERVER), at);
    let r = sent(&mut c).remove(0).0;
    c.handle_packet(&reply(&r, MessageType::Ack, new, SERVER), at);
    let [Event::Bound(l)] = &events(&mut c)[..] else {
        panic!()
    };
    assert_eq!(l.address.addr(), new);
}

#[test]
fn an_unanswered_request_starts_over_after_four_tries() {
    let mut c = client(6);
    let at = fire(&mut c);
    let d = sent(&mut c).remove(0).0;
    c.handle_packet(&reply(&d, MessageType::Offer, ADDR, SERVER), at);
    assert_eq!(sent(&mut c).len(), 1);
    for _ in 1..REQUEST_ATTEMPTS {
        fire(&mut c);
        assert_eq!(
            sent(&mut c)[0].0.opts().msg_type(),
            Some(MessageType::Request)
        );
    }
    fire(&mut c);
    let (m, _) = sent(&mut c).remove(0);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
    assert_ne!(m.xid(), d.xid(), "a new transaction");
    assert_eq!(c.state(), State::Selecting);
}

#[test]
fn stray_and_broken_replies_are_ignored_and_counted() {
    let mut c = client(8);
    let at = fire(&mut c);
    let d = sent(&mut c).remove(0).0;
    let mut other_xid = d.clone();
    other_xid.set_xid(d.xid() ^ 1);
    let mut other_mac = d.clone();
    other_mac.set_chaddr(&[2, 0, 0, 0, 0, 0x0c]);
    let mut no_server = Message::from_bytes(&reply(&d, MessageType::Offer, ADDR, SERVER)).unwrap();
    no_server.opts_mut().remove(OptionCode::ServerIdentifier);
    for payload in [
        reply(&other_xid, MessageType::Offer, ADDR, SERVER),
        reply(&other_mac, MessageType::Offer, ADDR, SERVER),
        reply(&d, MessageType::Ack, ADDR, SERVER),
        reply(&d, MessageType::Offer, Ipv4Addr::BROADCAST, SERVER),
        no_server.to_vec().unwrap(),
        vec![2; 100],
    ] {
        c.handle_packet(&payload, at);
    }
    assert_eq!(c.state(), State::Selecting);
    assert!(sent(&mut c).is_empty());
    let k = c.counters();
    assert_eq!((k.not_ours, k.unusable, k.malformed), (3, 2, 1));
}

#[test]
fn option_121_gives_the_router_and_routes() {
    let mut c = client(9);
    let at = fire(&mut c);
    let d = sent(&mut c).remove(0).0;
    c.handle_packet(&reply(&d, MessageType::Offer, ADDR, SERVER), at);
    let r = sent(&mut c).remove(0).0;
    let mut ack = Message::from_bytes(&reply(&r, MessageType::Ack, ADDR, SERVER)).unwrap();
    let gw = Ipv4Addr::new(100, 64, 2, 254);
    ack.opts_mut().insert(DhcpOption::ClasslessStaticRoute(vec![
        ("10.0.0.0/8".parse().unwrap(), SERVER),
        ("0.0.0.0/0".parse().unwrap(), gw),
    ]));
    c.handle_packet(&ack.to_vec().unwrap(), at);
    let [Event::Bound(l)] = &events(&mut c)[..] else {
        panic!()
    };
    assert_eq!(
        l.router,
        Some(gw),
        "RFC 3442: option 121 overrides option 3"
    );
    assert_eq!(l.routes.len(), 1);
    assert_eq!(l.routes[0].prefix, "10.0.0.0/8".parse().unwrap());
}

#[test]
fn the_client_gets_and_renews_a_lease_from_the_server_engine() {
    let cfg = DhcpServerConfig {
        pools: vec![AddrRange {
            first: ADDR,
            last: ADDR,
        }],
        exclude: vec![],
        static_leases: vec![],
        router: SERVER,
        dns_servers: vec![SERVER],
        domain: None,
        lease_time: secs(600),
        mtu: None,
        routes: vec![],
        lease_file: None,
        max_leases: 8,
        max_per_mac: 1,
    };
    let mut s = Server::new(cfg, "100.64.2.1/24".parse().unwrap());
    let mut c = client(10);
    let mut now = fire(&mut c);
    // Shuttle datagrams both ways until the client is bound, then through one renewal.
    let mut renewed = false;
    for _ in 0..20 {
        while let Some(tx) = c.poll_transmit() {
            s.handle_packet(&tx.payload, MAC, now);
        }
        now = now + server::PROBE_TIMEOUT;
        s.handle_timeout(now);
        while let Some(o) = s.poll_output() {
            if let server::Output::Reply(r) = o {
                c.handle_packet(&r.payload, now);
            }
        }
        for e in events(&mut c) {
            renewed |= matches!(e, Event::Renewed(_));
        }
        if renewed {
            break;
        }
        if c.state() == State::Bound {
            now = fire(&mut c);
        }
    }
    assert!(renewed);
    assert_eq!(c.lease().unwrap().address.addr(), ADDR);
    assert_eq!(s.leases()[0].mac, MAC);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(payloads in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..600), 1..20)) {
        let (mut c, _) = bound(11);
        for p in payloads {
            c.handle_packet(&p, t(2000));
        }
        prop_assert_eq!(c.state(), State::Bound);
    }
}
