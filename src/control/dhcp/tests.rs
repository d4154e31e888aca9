use std::time::Duration;

use dhcproto::v4::{Decodable, DhcpOption, Encodable, Message, MessageType};

use super::*;
use crate::config::{AddrRange, DhcpServerConfig};
use crate::control::fixtures::*;
use crate::dhcp::server;
use crate::wire::ipv4::OwnHeader;

const CLIENT: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x33]);

fn service() -> DhcpService {
    let cfg = DhcpServerConfig {
        pools: vec![AddrRange {
            first: Ipv4Addr::new(192, 168, 0, 100),
            last: Ipv4Addr::new(192, 168, 0, 110),
        }],
        exclude: vec![],
        static_leases: vec![],
        router: LAN_IP,
        dns_servers: vec![LAN_IP],
        domain: None,
        lease_time: Duration::from_secs(600),
        mtu: None,
        routes: vec![],
        lease_file: None,
        max_leases: 16,
        max_per_mac: 2,
    };
    let lan = addressing().lan;
    DhcpService::new(Server::new(cfg, lan.prefix), lan)
}

/// A DISCOVER as a client without an address broadcasts it.
fn discover_frame() -> Vec<u8> {
    let mut m = Message::new_with_id(
        7,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &CLIENT.0,
    );
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    let payload = m.to_vec().unwrap();
    let mut p = vec![0u8; 28 + payload.len()];
    let n = udp::build_datagram(
        &mut p,
        &OwnHeader::new(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST),
        (CLIENT_PORT, SERVER_PORT),
        &payload,
    )
    .unwrap();
    p.truncate(n);
    ipv4_frame(MacAddr::BROADCAST, CLIENT, &p)
}

#[test]
fn a_broadcast_discover_is_probed_then_offered_from_port_67() {
    let mut s = service();
    let f = discover_frame();
    assert!(DhcpService::is_request(&f));
    s.handle_frame(&f, t(0)).unwrap();
    // First the RFC 5227 probe of the candidate.
    let probe = s.poll_transmit().expect("an ARP probe");
    let a = ArpPacket::new_checked(&probe.frame[IP_OFFSET..]).unwrap();
    assert_eq!(a.operation(), arp::op::REQUEST);
    assert_eq!(a.sender_ip(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(a.target_ip(), Ipv4Addr::new(192, 168, 0, 100));
    assert!(s.poll_transmit().is_none());
    // Nobody answers: the offer goes to the client's MAC and the offered address.
    s.handle_timeout(t(0) + server::PROBE_TIMEOUT);
    let offer = s.poll_transmit().expect("an offer");
    let eth = EthernetFrame::new_checked(&offer.frame[ETH_OFFSET..]).unwrap();
    assert_eq!((eth.src(), eth.dst()), (LAN_MAC, CLIENT));
    let ip = Ipv4Packet::new_checked(&offer.frame[IP_OFFSET..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(
        (ip.src(), ip.dst()),
        (LAN_IP, Ipv4Addr::new(192, 168, 0, 100))
    );
    let u = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(u.verify_checksum(ip.src(), ip.dst()));
    assert_eq!((u.src_port(), u.dst_port()), (SERVER_PORT, CLIENT_PORT));
    let m = Message::from_bytes(u.payload()).unwrap();
    assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
}

#[test]
fn an_arp_answer_for_the_candidate_moves_the_offer() {
    let mut s = service();
    s.handle_frame(&discover_frame(), t(0)).unwrap();
    s.poll_transmit();
    let mut reply = vec![0u8; arp::MIN_FRAME_LEN];
    arp::build_frame(
        &mut reply,
        LAN_MAC,
        arp::op::REPLY,
        HOST_MAC,
        Ipv4Addr::new(192, 168, 0, 100),
        LAN_MAC,
        Ipv4Addr::UNSPECIFIED,
    )
    .unwrap();
    let mut f = vec![0u8; ETH_OFFSET];
    f.extend_from_slice(&reply);
    s.handle_arp(&f, t(10));
    let probe = s.poll_transmit().expect("the next candidate's probe");
    let a = ArpPacket::new_checked(&probe.frame[IP_OFFSET..]).unwrap();
    assert_eq!(a.target_ip(), Ipv4Addr::new(192, 168, 0, 101));
    assert_eq!(s.server().counters().conflicts, 1);
}

#[test]
fn other_frames_are_not_requests_and_bad_checksums_are_dropped() {
    let mut f = discover_frame();
    let udp_dport = IP_OFFSET + 20 + 2;
    f[udp_dport + 1] = 68;
    assert!(!DhcpService::is_request(&f), "to port 68");
    let mut bad = discover_frame();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(
        service().handle_frame(&bad, t(0)),
        Err(DropReason::BadL4Header)
    );
}
