use std::net::Ipv4Addr;

use super::*;
use crate::control::fixtures::*;
use crate::wire::checksum;
use crate::wire::ethernet::MacAddr;

const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn echo(src: Ipv4Addr, dst: Ipv4Addr, msg_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 28 + payload.len()];
    let echo = EchoRepr {
        msg_type,
        ident: 0x1234,
        seq: 7,
    };
    let n = icmp::build_echo(&mut p, &OwnHeader::new(src, dst), &echo, payload).unwrap();
    p.truncate(n);
    p
}

fn responder() -> EchoResponder {
    EchoResponder::new(addressing())
}

/// Checks the reply's IP and ICMP checksums with etherparse and returns (eth src, eth dst,
/// IP src, IP dst, ident, seq, payload).
fn parse_reply(t: &Transmit) -> (MacAddr, MacAddr, Ipv4Addr, Ipv4Addr, u16, u16, Vec<u8>) {
    let pkt = etherparse::SlicedPacket::from_ethernet(&t.frame[ETH_OFFSET..]).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &pkt.net else {
        panic!("not IPv4");
    };
    let h = ip.header().to_header();
    assert_eq!(h.calc_header_checksum(), h.header_checksum, "IP checksum");
    assert_eq!(checksum::checksum(ip.payload().payload), 0, "ICMP checksum");
    let eth = EthernetFrame::new_checked(&t.frame[ETH_OFFSET..]).unwrap();
    let m = IcmpPacket::new_checked(ip.payload().payload).unwrap();
    assert_eq!((m.msg_type(), m.code()), (types::ECHO_REPLY, 0));
    (
        eth.src(),
        eth.dst(),
        h.source.into(),
        h.destination.into(),
        m.ident(),
        m.seq_no(),
        m.payload().to_vec(),
    )
}

#[test]
fn echo_to_own_address_is_answered_with_correct_checksums() {
    let mut r = responder();
    let req = echo(HOST, LAN_IP, types::ECHO_REQUEST, b"abcdefgh0123");
    assert_eq!(
        r.handle_frame(LAN, &ipv4_frame(LAN_MAC, HOST_MAC, &req)),
        Ok(())
    );
    let reply = r.poll_transmit().expect("a reply");
    assert_eq!(reply.iface, LAN);
    assert_eq!(
        parse_reply(&reply),
        (
            LAN_MAC,
            HOST_MAC,
            LAN_IP,
            HOST,
            0x1234,
            7,
            b"abcdefgh0123".to_vec()
        )
    );
    assert_eq!(r.poll_transmit(), None);
}

#[test]
fn lan_hosts_may_ping_the_uplink_address() {
    let mut r = responder();
    let req = echo(HOST, A_IP, types::ECHO_REQUEST, b"x");
    assert_eq!(
        r.handle_frame(LAN, &ipv4_frame(LAN_MAC, HOST_MAC, &req)),
        Ok(())
    );
    let (.., src, dst, _, _, _) = parse_reply(&r.poll_transmit().unwrap());
    assert_eq!((src, dst), (A_IP, HOST));
}

#[test]
fn outside_pings_are_answered_only_for_the_uplinks_own_address() {
    let mut r = responder();
    let to_a = echo(REMOTE, A_IP, types::ECHO_REQUEST, b"x");
    assert_eq!(
        r.handle_frame(A, &ipv4_frame(A_MAC, PE_A_MAC, &to_a)),
        Ok(())
    );
    let (esrc, edst, src, dst, ..) = parse_reply(&r.poll_transmit().unwrap());
    assert_eq!((esrc, edst, src, dst), (A_MAC, PE_A_MAC, A_IP, REMOTE));
    for dst in [B_IP, LAN_IP] {
        let req = echo(REMOTE, dst, types::ECHO_REQUEST, b"x");
        assert_eq!(
            r.handle_frame(A, &ipv4_frame(A_MAC, PE_A_MAC, &req)),
            Err(DropReason::NatUnsolicited)
        );
    }
    assert_eq!(r.poll_transmit(), None);
}

#[test]
fn foreign_addresses_and_other_messages_are_not_answered() {
    let mut r = responder();
    let cases = [
        echo(
            HOST,
            Ipv4Addr::new(192, 168, 0, 99),
            types::ECHO_REQUEST,
            b"x",
        ),
        echo(HOST, LAN_IP, types::ECHO_REPLY, b"x"),
    ];
    for req in cases {
        assert_eq!(
            r.handle_frame(LAN, &ipv4_frame(LAN_MAC, HOST_MAC, &req)),
            Err(DropReason::LocalUnhandled)
        );
    }
    let mut bad_sum = echo(HOST, LAN_IP, types::ECHO_REQUEST, b"x");
    bad_sum[22] ^= 0xff;
    assert_eq!(
        r.handle_frame(LAN, &ipv4_frame(LAN_MAC, HOST_MAC, &bad_sum)),
        Err(DropReason::LocalUnhandled)
    );
    let mut bad_ip = echo(HOST, LAN_IP, types::ECHO_REQUEST, b"x");
    bad_ip[0] = 0x65;
    assert_eq!(
        r.handle_frame(LAN, &ipv4_frame(LAN_MAC, HOST_MAC, &bad_ip)),
        Err(DropReason::BadIpHeader)
    );
    assert_eq!(r.poll_transmit(), None);
}
