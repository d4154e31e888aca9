//! Port forwards (SPEC 13, 31): a connection in on an uplink reaches the LAN server and its
//! replies leave by that uplink whatever the route table prefers; `allow` lists; hairpin NAT.
//! The test site routes everything through A, so replies by B show the session deciding.

use super::*;
use crate::nat::Forward;
use crate::wire::ipv4::proto;

const B: UplinkId = UplinkId(1);
const OUTSIDE_B: [u8; 4] = [172, 17, 3, 1];
/// A client on the Internet.
const CLIENT: [u8; 4] = [203, 0, 113, 5];
/// A second LAN host, the hairpin client.
const HOST2: [u8; 4] = [192, 168, 0, 20];
const HOST2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 9, 0x20]);

/// TCP 8080 and UDP 5353 (to 53) on both uplinks, like the lab; TCP 2222 on B for the
/// 198.51.100.0/24 office only.
fn forwards() -> Vec<Forward> {
    let fwd =
        |name: &str, proto: u8, port: u16, to_port: u16, uplinks: Vec<UplinkId>, allow| Forward {
            name: name.into(),
            uplinks,
            protocols: vec![proto],
            first: port,
            last: port,
            to: HOST.into(),
            to_port,
            allow,
        };
    let both = vec![UplinkId(0), B];
    vec![
        fwd("web", proto::TCP, 8080, 8080, both.clone(), vec![]),
        fwd("dns", proto::UDP, 5353, 53, both, vec![]),
        fwd(
            "ssh",
            proto::TCP,
            2222,
            22,
            vec![B],
            vec![p("198.51.100.0/24")],
        ),
    ]
}

fn forward_world(routes: bool) -> World {
    let mut w = world(1500);
    if !routes {
        // Every default route withdrawn (its track down): only sessions still decide.
        w.snap.routes = RouteTable::build(
            Interfaces {
                lan: p("192.168.0.1/24"),
                uplinks: vec![],
            },
            vec![],
            vec![],
            &Health {
                carrier: vec![true, true],
                tracks: vec![],
            },
        );
    }
    w.neighbours = Neighbours::new(
        HashMap::from([
            ((Iface::Lan, HOST.into()), HOST_MAC),
            ((Iface::Lan, HOST2.into()), HOST2_MAC),
        ]),
        vec![
            (PE_A_IP.into(), Some(PE_A)),
            (Ipv4Addr::new(172, 17, 3, 2), Some(PE_A)),
        ],
    );
    w.nat = NatTable::new(
        NatParams::default(),
        &[Some(OUTSIDE.into()), Some(OUTSIDE_B.into())],
    )
    .with_forwards(forwards());
    w
}

/// A connection's first segment: SYN alone (`packet` sets ACK on its SYNs).
fn syn((src, sport): ([u8; 4], u16), (dst, dport): ([u8; 4], u16)) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ipv4(src, dst, 64)
        .tcp(sport, dport, 1000, 64000)
        .syn()
        .write(&mut out, &[])
        .unwrap();
    out
}

fn from_uplink(w: &World, u: UplinkId, ip_packet: &[u8]) -> (Verdict, Vec<u8>) {
    let mut f = eth(w.snap.uplinks[usize::from(u.0)].mac, PE_A, ip_packet);
    let v = run(w, &mut f, Iface::Uplink(u)).0;
    (v, f)
}

fn from_lan(w: &World, mac: MacAddr, ip_packet: Vec<u8>) -> (Verdict, Vec<u8>) {
    lan_frame(w, eth(LAN_MAC, mac, &ip_packet))
}

fn lan_frame(w: &World, mut f: Vec<u8>) -> (Verdict, Vec<u8>) {
    let v = run(w, &mut f, Iface::Lan).0;
    (v, f)
}

/// What a frame carries, checksums verified: ((src, sport), (dst, dport)).
fn endpoints(frame: &[u8]) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
    let pkt = verify(frame);
    let ((s, d), (sp, dp)) = (addrs(&pkt), ports(&pkt));
    ((s, sp), (d, dp))
}

fn ep(a: [u8; 4], port: u16) -> (Ipv4Addr, u16) {
    (a.into(), port)
}

/// A connection from the client's `port` in by `u` to the web forward, and the server's reply.
fn connect_through(w: &World, u: UplinkId, outside: [u8; 4], port: u16) {
    let (v, f) = from_uplink(w, u, &syn((CLIENT, port), (outside, 8080)));
    assert_eq!(v, Verdict::Forward { egress: Iface::Lan });
    assert_eq!(endpoints(&f), (ep(CLIENT, port), ep(HOST, 8080)));

    let reply = packet(Kind::Tcp, (HOST, 8080), (CLIENT, port), 64, &[1; 10], true);
    let (v, f) = from_lan(w, HOST_MAC, reply);
    assert_eq!(
        v,
        Verdict::Forward {
            egress: Iface::Uplink(u)
        }
    );
    assert_eq!(endpoints(&f), (ep(outside, 8080), ep(CLIENT, port)));
}

#[test]
fn replies_leave_by_the_uplink_the_connection_came_in_on() {
    let w = forward_world(true);
    connect_through(&w, B, OUTSIDE_B, 40000);
    connect_through(&w, UplinkId(0), OUTSIDE, 40001);
    // The same client endpoint by the other uplink is the same flow to the server: refused
    // while the first lives.
    let again = syn((CLIENT, 40000), (OUTSIDE, 8080));
    assert_eq!(
        from_uplink(&w, UplinkId(0), &again).0,
        Verdict::Drop(DropReason::NatUnsolicited)
    );
    let sessions = w.nat.sessions(None, Instant::from_millis(1000));
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|s| s.forward == Some(0)));
    let stats = w.nat.forward_stats();
    assert_eq!((stats[0].hits, stats[0].active), (2, 2));
}

#[test]
fn replies_leave_by_their_uplink_while_its_routes_are_withdrawn() {
    connect_through(&forward_world(false), UplinkId(0), OUTSIDE, 40000);
}

#[test]
fn a_port_range_maps_to_the_internal_port() {
    let w = forward_world(true);
    let q = packet(
        Kind::Udp,
        (CLIENT, 33000),
        (OUTSIDE_B, 5353),
        64,
        b"query",
        false,
    );
    let (v, f) = from_uplink(&w, B, &q);
    assert_eq!(v, Verdict::Forward { egress: Iface::Lan });
    assert_eq!(endpoints(&f), (ep(CLIENT, 33000), ep(HOST, 53)));
    let a = packet(Kind::Udp, (HOST, 53), (CLIENT, 33000), 64, b"answer", false);
    let (v, f) = from_lan(&w, HOST_MAC, a);
    assert_eq!(
        v,
        Verdict::Forward {
            egress: Iface::Uplink(B)
        }
    );
    assert_eq!(endpoints(&f), (ep(OUTSIDE_B, 5353), ep(CLIENT, 33000)));
}

#[test]
fn allow_list_refuses_other_sources_and_counts_them() {
    let w = forward_world(true);
    let office = |src| syn((src, 40000), (OUTSIDE_B, 2222));
    assert_eq!(
        from_uplink(&w, B, &office(CLIENT)).0,
        Verdict::Drop(DropReason::ForwardRefused)
    );
    let (v, f) = from_uplink(&w, B, &office([198, 51, 100, 7]));
    assert_eq!(v, Verdict::Forward { egress: Iface::Lan });
    assert_eq!(endpoints(&f).1, ep(HOST, 22));
    let stats = w.nat.forward_stats();
    assert_eq!((stats[2].hits, stats[2].refused), (1, 1));
    // Published on B only.
    let on_a = syn(([198, 51, 100, 7], 1), (OUTSIDE, 2222));
    assert_eq!(
        from_uplink(&w, UplinkId(0), &on_a).0,
        Verdict::Drop(DropReason::NatUnsolicited)
    );
}

#[test]
fn unforwarded_ports_and_stray_segments_stay_unsolicited() {
    let w = forward_world(true);
    for pkt in [
        syn((CLIENT, 40000), (OUTSIDE_B, 8081)),
        packet(
            Kind::Udp,
            (CLIENT, 40000),
            (OUTSIDE_B, 8080),
            64,
            &[],
            false,
        ),
        // Not a connection's first segment: nothing to open.
        packet(Kind::Tcp, (CLIENT, 40000), (OUTSIDE_B, 8080), 64, &[], true),
        packet(
            Kind::Tcp,
            (CLIENT, 40000),
            (OUTSIDE_B, 8080),
            64,
            &[],
            false,
        ),
    ] {
        assert_eq!(
            from_uplink(&w, B, &pkt).0,
            Verdict::Drop(DropReason::NatUnsolicited)
        );
    }
    assert!(w.nat.is_empty());
}

#[test]
fn hairpin_reaches_the_server_and_its_replies_come_back_through_the_router() {
    let w = forward_world(true);
    // To B's address, though the route table prefers A: the address names the forward.
    let (v, f) = from_lan(&w, HOST2_MAC, syn((HOST2, 5555), (OUTSIDE_B, 8080)));
    assert_eq!(v, Verdict::Forward { egress: Iface::Lan });
    let ((src, port), dst) = endpoints(&f);
    assert_eq!((src, dst), (OUTSIDE_B.into(), ep(HOST, 8080)));
    assert_eq!(
        EthernetFrame::new_unchecked(&f[ETH_OFFSET..]).dst(),
        HOST_MAC
    );

    let reply = packet(
        Kind::Tcp,
        (HOST, 8080),
        (OUTSIDE_B, port),
        64,
        &[2; 20],
        true,
    );
    let (v, f) = from_lan(&w, HOST_MAC, reply);
    assert_eq!(v, Verdict::Forward { egress: Iface::Lan });
    assert_eq!(endpoints(&f), (ep(OUTSIDE_B, 8080), ep(HOST2, 5555)));
    assert_eq!(
        EthernetFrame::new_unchecked(&f[ETH_OFFSET..]).dst(),
        HOST2_MAC
    );

    let more = packet(
        Kind::Tcp,
        (HOST2, 5555),
        (OUTSIDE_B, 8080),
        64,
        &[3; 20],
        true,
    );
    let (v, f) = from_lan(&w, HOST2_MAC, more);
    assert_eq!(v, Verdict::Forward { egress: Iface::Lan });
    assert_eq!(endpoints(&f), (ep(OUTSIDE_B, port), ep(HOST, 8080)));
    // Two sessions of B: the client's, and the forward's.
    let sessions = w.nat.sessions(Some(B), Instant::from_millis(1000));
    assert_eq!(sessions.len(), 2);
    assert_eq!(w.nat.forward_stats()[0].hits, 1);
}

#[test]
fn the_router_keeps_its_own_ports_on_an_uplink_address() {
    let w = forward_world(true);
    let ssh = syn((HOST2, 5555), (OUTSIDE_B, 22));
    assert_eq!(
        from_lan(&w, HOST2_MAC, ssh).0,
        Verdict::Punt(PuntClass::Other)
    );
    assert!(w.nat.is_empty());
}

/// A TCP segment from `src` to `dst` as a TAP hands it over when the sender offloads its
/// checksum: the field holds the pseudo-header sum, NEEDS_CSUM is set.
fn partial(src: ([u8; 4], u16), dst: ([u8; 4], u16), syn: bool, mac: MacAddr) -> Vec<u8> {
    let mut ip = packet(Kind::Tcp, src, dst, 64, &[9; 100], !syn);
    let hlen = 20;
    let pseudo = tcp_pseudo(src.0, dst.0, ip.len() - hlen);
    ip[hlen + 16..hlen + 18].copy_from_slice(&pseudo.to_be_bytes());
    let mut f = eth(LAN_MAC, mac, &ip);
    VnetHdr {
        flags: vnet::flags::NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..VnetHdr::default()
    }
    .write(&mut f)
    .unwrap();
    f
}

fn checksum_field(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[IP_OFFSET + 36], f[IP_OFFSET + 37]])
}

#[test]
fn partial_checksums_follow_both_rewrites() {
    let w = forward_world(true);
    from_uplink(&w, B, &syn((CLIENT, 40000), (OUTSIDE_B, 8080)));
    let reply = partial((HOST, 8080), (CLIENT, 40000), false, HOST_MAC);
    let len = reply.len() - IP_OFFSET - 20;
    let (v, f) = lan_frame(&w, reply);
    assert_eq!(
        v,
        Verdict::Forward {
            egress: Iface::Uplink(B)
        }
    );
    assert_eq!(checksum_field(&f), tcp_pseudo(OUTSIDE_B, CLIENT, len));

    let hairpin = partial((HOST2, 5555), (OUTSIDE, 8080), true, HOST2_MAC);
    let len = hairpin.len() - IP_OFFSET - 20;
    let (v, f) = lan_frame(&w, hairpin);
    assert_eq!(v, Verdict::Forward { egress: Iface::Lan });
    assert_eq!(checksum_field(&f), tcp_pseudo(OUTSIDE, HOST, len));
}
