use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

use super::*;
use crate::config::DnsConfig;
use crate::control::Outgoing;
use crate::control::fixtures::*;
use crate::wire::ethernet::EthernetFrame;
use crate::wire::frame::ETH_OFFSET;
use crate::wire::ipv4::OwnHeader;

const RESOLVER: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 6);
const A_ID: UplinkId = UplinkId(0);
const B_ID: UplinkId = UplinkId(1);

fn service() -> DnsService {
    let cfg = DnsConfig {
        cache_entries: 16,
        cache_bytes: 4096,
        rate: 100,
        burst: 100,
        timeout: Duration::from_secs(2),
    };
    let mut s = DnsService::new(cfg, addressing(), &[], 5, t(0));
    s.set_upstream(Some((A_ID, NH_A)), vec![RESOLVER], t(0));
    s
}

fn udp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 28 + payload.len()];
    let n =
        udp::build_datagram(&mut p, &OwnHeader::new(src, dst), (sport, dport), payload).unwrap();
    p.truncate(n);
    ipv4_frame(LAN_MAC, HOST_MAC, &p)
}

fn query() -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("probe.lab.").unwrap(),
        RecordType::A,
    ));
    m.to_vec().unwrap()
}

/// (iface, next hop, IP src, IP dst, UDP sport, dport, payload) of an outgoing frame.
fn parse(o: &Outgoing) -> (Iface, Ipv4Addr, Ipv4Addr, Ipv4Addr, u16, u16, Vec<u8>) {
    let ip = Ipv4Packet::new_checked(&o.frame[IP_OFFSET..]).unwrap();
    assert!(ip.verify_checksum());
    let u = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(u.verify_checksum(ip.src(), ip.dst()));
    let eth = EthernetFrame::new_checked(&o.frame[ETH_OFFSET..]).unwrap();
    let me = addressing().get(o.iface).unwrap();
    assert_eq!(eth.src(), me.mac);
    (
        o.iface,
        o.next_hop,
        ip.src(),
        ip.dst(),
        u.src_port(),
        u.dst_port(),
        u.payload().to_vec(),
    )
}

#[test]
fn a_lan_query_leaves_through_the_active_uplink_and_the_answer_comes_back() {
    let mut s = service();
    let q = udp_frame(HOST, LAN_IP, 40000, PORT, &query());
    assert!(s.wants(LAN, &q));
    s.handle_frame(LAN, &q, t(1)).unwrap();
    let up = s.poll_outgoing().expect("an upstream query");
    let (iface, hop, src, dst, sport, dport, payload) = parse(&up);
    assert_eq!(
        (iface, hop, src, dst, sport, dport),
        (A, NH_A, A_IP, RESOLVER, PORT, PORT)
    );
    // The resolver answers the rewritten id.
    let mut answer = Message::from_vec(&payload).unwrap();
    answer.metadata.message_type = MessageType::Response;
    let a = udp_frame(RESOLVER, A_IP, PORT, PORT, &answer.to_vec().unwrap());
    assert!(s.wants(A, &a));
    s.handle_frame(A, &a, t(2)).unwrap();
    let back = s.poll_outgoing().expect("the answer");
    let (iface, hop, src, dst, sport, dport, payload) = parse(&back);
    assert_eq!(
        (iface, hop, src, dst, sport, dport),
        (LAN, HOST, LAN_IP, HOST, PORT, 40000)
    );
    assert_eq!(Message::from_vec(&payload).unwrap().metadata.id, 0x4242);
}

/// A UDP query over IPv6 to one of the router's LAN addresses.
fn udp6_frame(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 48 + payload.len()];
    let ip = wire6::OwnHeader::new(src, dst);
    let n = udp::build_datagram_v6(&mut p, &ip, (sport, PORT), payload).unwrap();
    p.truncate(n);
    frame(
        LAN_MAC,
        HOST_MAC,
        crate::wire::ethernet::ethertype::IPV6,
        &p,
    )
}

/// A host asks B's router address from its A address (a deprecated prefix's address is still
/// a source for on-link destinations): upstream over IPv4 through the active uplink, and the
/// answer comes back from the address asked, to the host's, checksum right.
#[test]
fn an_ipv6_query_is_answered_from_the_address_asked() {
    let mut s = service();
    let host: Ipv6Addr = "2001:db8:a::10".parse().unwrap();
    let router: Ipv6Addr = "2001:db8:b::1".parse().unwrap();
    s.handle_frame6(&udp6_frame(host, router, 40001, &query()), t(1))
        .unwrap();
    let (iface, hop, src, dst, _, _, payload) = parse(&s.poll_outgoing().unwrap());
    assert_eq!((iface, hop, src, dst), (A, NH_A, A_IP, RESOLVER));
    let mut answer = Message::from_vec(&payload).unwrap();
    answer.metadata.message_type = MessageType::Response;
    let a = udp_frame(RESOLVER, A_IP, PORT, PORT, &answer.to_vec().unwrap());
    s.handle_frame(A, &a, t(2)).unwrap();
    assert!(s.poll_outgoing().is_none(), "nothing for IPv4");
    let (frame, next_hop) = s.poll_outgoing6().expect("the answer");
    assert_eq!(next_hop, host);
    let eth = EthernetFrame::new_checked(&frame[ETH_OFFSET..]).unwrap();
    assert_eq!(eth.src(), LAN_MAC);
    let ip = Ipv6Packet::new_checked(&frame[IP_OFFSET..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (router, host));
    let u = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(u.verify_checksum_v6(router, host));
    assert_eq!((u.src_port(), u.dst_port()), (PORT, 40001));
    assert_eq!(Message::from_vec(u.payload()).unwrap().metadata.id, 0x4242);
    // A bad checksum, or another port, is not a query.
    let mut bad = udp6_frame(host, router, 40001, &query());
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(s.handle_frame6(&bad, t(3)), Err(DropReason::LocalUnhandled));
    assert_eq!(s.forwarder().counters().queries, 1);
}

#[test]
fn after_failover_queries_leave_through_the_new_uplink() {
    let mut s = service();
    s.set_upstream(Some((B_ID, NH_B)), vec![RESOLVER], t(1));
    s.handle_frame(LAN, &udp_frame(HOST, LAN_IP, 40000, PORT, &query()), t(2))
        .unwrap();
    let (iface, hop, src, ..) = parse(&s.poll_outgoing().unwrap());
    assert_eq!((iface, hop, src), (B, NH_B, B_IP));
}

#[test]
fn frames_that_are_not_dns_for_the_router_are_not_taken() {
    let s = service();
    assert!(!s.wants(LAN, &udp_frame(HOST, LAN_IP, 40000, 54, &query())));
    assert!(!s.wants(
        LAN,
        &udp_frame(HOST, Ipv4Addr::new(8, 8, 8, 8), 40000, PORT, &query())
    ));
    // On an uplink, only answers from port 53 to the uplink's own address.
    assert!(!s.wants(A, &udp_frame(RESOLVER, A_IP, 5353, PORT, &query())));
    assert!(!s.wants(A, &udp_frame(RESOLVER, B_IP, PORT, PORT, &query())));
}

/// A TCP segment from `src:sport` to `dst:dport` with `flags`, in a frame.
fn tcp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    let repr = crate::wire::tcp::TcpRepr {
        sport,
        dport,
        seq: 1,
        ack: 0,
        flags,
        window: 1000,
    };
    crate::wire::tcp::build_segment(&mut p, &OwnHeader::new(src, dst), &repr).unwrap();
    ipv4_frame(LAN_MAC, HOST_MAC, &p)
}

#[test]
fn tcp_to_the_lan_address_port_53_is_taken_and_answered_on_the_lan() {
    use crate::wire::tcp::flags::{ACK, SYN};
    let mut s = service();
    let syn = tcp_frame(HOST, LAN_IP, 40000, PORT, SYN);
    assert!(s.wants(LAN, &syn));
    assert!(!s.wants(LAN, &tcp_frame(HOST, LAN_IP, 40000, 22, SYN)));
    s.handle_frame(LAN, &syn, t(1)).unwrap();
    let o = s.poll_outgoing().expect("a SYN-ACK");
    assert_eq!((o.iface, o.next_hop), (LAN, HOST));
    let ip = Ipv4Packet::new_checked(&o.frame[IP_OFFSET..]).unwrap();
    let seg = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(
        (ip.src(), seg.src_port(), seg.flags()),
        (LAN_IP, PORT, SYN | ACK)
    );
    assert!(seg.verify_checksum(ip.src(), ip.dst()));
    assert_eq!(s.relay().counters().accepted, 1);
    // From a resolver: port 53 to one of the relay's ports on the uplink's address only.
    let relay_port = *TCP_PORTS.start();
    assert!(s.wants(A, &tcp_frame(RESOLVER, A_IP, PORT, relay_port, ACK)));
    assert!(!s.wants(A, &tcp_frame(RESOLVER, A_IP, PORT, 40000, ACK)));
    assert!(!s.wants(A, &tcp_frame(RESOLVER, B_IP, PORT, relay_port, ACK)));
}
