use std::time::Duration;

use super::*;
use crate::control::fixtures::*;
use crate::probe::stats::ProbeResult;
use crate::wire::checksum;
use crate::wire::ethernet::EthernetFrame;
use crate::wire::icmp::{self, EchoRepr, IcmpPacket, types};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::tcp::TcpPacket;

const TARGET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PE_B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 0xb]);

fn probe(name: &str, uplink: &str, kind: ProbeKind) -> ProbeConfig {
    ProbeConfig {
        name: name.into(),
        kind,
        uplink: uplink.into(),
        target: TARGET.into(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        threshold: Duration::from_millis(200),
        dscp: 0,
    }
}

fn icmp_probe() -> ProbeConfig {
    probe("a-ping", "isp-a", ProbeKind::IcmpEcho { payload_size: 16 })
}

fn uplink_of(name: &str) -> usize {
    usize::from(name == "isp-b")
}

fn uplinks() -> Vec<ProbeUplink> {
    vec![
        ProbeUplink {
            addr: A_IP,
            mac: A_MAC,
            next_hop_mac: Some(PE_A_MAC),
            carrier: true,
            v6: None,
        },
        ProbeUplink {
            addr: B_IP,
            mac: B_MAC,
            next_hop_mac: Some(PE_B_MAC),
            carrier: true,
            v6: None,
        },
    ]
}

fn engine(defs: Vec<ProbeConfig>) -> ProbeEngine {
    let mut e = ProbeEngine::new(defs, uplink_of, 0, t(0));
    e.set_uplinks(uplinks());
    e
}

/// Sends the first attempt; returns the frame and when it was sent.
fn first_attempt(e: &mut ProbeEngine) -> (Transmit, Instant) {
    let due = e.poll_timeout().expect("a probe is scheduled");
    e.handle_timeout(due);
    (e.poll_transmit().expect("a probe frame"), due)
}

/// (ident, seq) of an echo request frame, after checking its headers and checksums.
fn echo_ids(t: &Transmit) -> (u16, u16) {
    let eth = EthernetFrame::new_checked(&t.frame[crate::wire::frame::ETH_OFFSET..]).unwrap();
    assert_eq!((eth.src(), eth.dst()), (A_MAC, PE_A_MAC));
    let ip = Ipv4Packet::new_checked(&t.frame[IP_OFFSET..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src(), ip.dst()), (A_IP, TARGET));
    assert_eq!(checksum::checksum(ip.payload()), 0, "ICMP checksum");
    let m = IcmpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(m.msg_type(), types::ECHO_REQUEST);
    (m.ident(), m.seq_no())
}

fn echo_reply(src: Ipv4Addr, ident: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 64];
    let ip = OwnHeader {
        ttl: 60,
        ..OwnHeader::new(src, A_IP)
    };
    let echo = EchoRepr {
        msg_type: types::ECHO_REPLY,
        ident,
        seq,
    };
    let n = icmp::build_echo(&mut p, &ip, &echo, &[0; 16]).unwrap();
    ipv4_frame(A_MAC, PE_A_MAC, &p[..n])
}

fn results(e: &mut ProbeEngine) -> Vec<(usize, Option<ProbeResult>)> {
    let done: Vec<usize> = std::iter::from_fn(|| e.poll_result()).collect();
    done.into_iter()
        .map(|i| (i, e.probes()[i].stats.last()))
        .collect()
}

#[test]
fn probe_goes_out_as_a_complete_frame_on_its_own_uplink() {
    let mut e = engine(vec![icmp_probe()]);
    let (tx, _) = first_attempt(&mut e);
    assert_eq!(tx.iface, A);
    echo_ids(&tx);
    assert_eq!(e.poll_transmit(), None);
}

#[test]
fn reply_is_matched_by_uplink_id_and_sequence_and_timed_at_receipt() {
    let mut e = engine(vec![icmp_probe()]);
    let (tx, sent) = first_attempt(&mut e);
    let (ident, seq) = echo_ids(&tx);
    let received = sent + Duration::from_millis(42);
    // Handled later than received (a busy thread): the RTT is still the receive time's.
    assert!(e.handle_reply(UplinkId(0), &echo_reply(TARGET, ident, seq), received));
    assert_eq!(
        results(&mut e),
        vec![(0, Some(ProbeResult::Ok(Duration::from_millis(42))))]
    );
    // The attempt is closed: a duplicate is not a second success.
    assert!(!e.handle_reply(UplinkId(0), &echo_reply(TARGET, ident, seq), received));
}

#[test]
fn forged_and_misdirected_replies_are_rejected() {
    let mut e = engine(vec![icmp_probe()]);
    let (tx, sent) = first_attempt(&mut e);
    let (ident, seq) = echo_ids(&tx);
    let at = sent + Duration::from_millis(10);
    let other = Ipv4Addr::new(198, 51, 100, 99);
    assert!(
        !e.handle_reply(UplinkId(1), &echo_reply(TARGET, ident, seq), at),
        "wrong uplink"
    );
    assert!(
        !e.handle_reply(UplinkId(0), &echo_reply(other, ident, seq), at),
        "wrong source"
    );
    assert!(
        !e.handle_reply(UplinkId(0), &echo_reply(TARGET, ident ^ 1, seq), at),
        "wrong id"
    );
    assert!(!e.handle_reply(
        UplinkId(0),
        &echo_reply(TARGET, ident, seq.wrapping_sub(1)),
        at
    ));
    assert!(!e.handle_reply(UplinkId(0), &[0u8; 20], at), "truncated");
    assert_eq!(results(&mut e), vec![]);
    assert!(e.handle_reply(UplinkId(0), &echo_reply(TARGET, ident, seq), at));
}

#[test]
fn timeout_comes_exactly_at_the_deadline_and_late_replies_do_not_count() {
    let mut e = engine(vec![icmp_probe()]);
    let (tx, sent) = first_attempt(&mut e);
    let (ident, seq) = echo_ids(&tx);
    let deadline = sent + Duration::from_millis(500);
    assert_eq!(e.poll_timeout(), Some(deadline));
    e.handle_timeout(sent + Duration::from_nanos(499_999_999));
    assert_eq!(results(&mut e), vec![]);
    e.handle_timeout(deadline);
    assert_eq!(results(&mut e), vec![(0, Some(ProbeResult::Timeout))]);
    // Next attempt one interval after the first, not after the timeout.
    assert_eq!(e.poll_timeout(), Some(sent + Duration::from_secs(1)));
    let late = deadline + Duration::from_millis(1);
    assert!(!e.handle_reply(UplinkId(0), &echo_reply(TARGET, ident, seq), late));
    assert_eq!(e.probes()[0].stats.timeouts(), 1);
}

#[test]
fn slow_reply_is_over_threshold() {
    let mut e = engine(vec![icmp_probe()]);
    let (tx, sent) = first_attempt(&mut e);
    let (ident, seq) = echo_ids(&tx);
    let at = sent + Duration::from_millis(300);
    assert!(e.handle_reply(UplinkId(0), &echo_reply(TARGET, ident, seq), at));
    assert_eq!(
        results(&mut e),
        vec![(
            0,
            Some(ProbeResult::OverThreshold(Duration::from_millis(300)))
        )]
    );
}

#[test]
fn without_next_hop_or_carrier_nothing_is_sent_and_the_attempt_times_out() {
    for (next_hop_mac, carrier) in [(None, true), (Some(PE_A_MAC), false)] {
        let mut e = engine(vec![icmp_probe()]);
        let mut ups = uplinks();
        ups[0].next_hop_mac = next_hop_mac;
        ups[0].carrier = carrier;
        e.set_uplinks(ups);
        let due = e.poll_timeout().unwrap();
        e.handle_timeout(due);
        assert_eq!(e.poll_transmit(), None);
        e.handle_timeout(due + Duration::from_millis(500));
        assert_eq!(results(&mut e), vec![(0, Some(ProbeResult::Timeout))]);
    }
}

#[test]
fn tcp_syn_ack_is_a_success_and_is_reset_on_the_same_uplink() {
    let mut e = engine(vec![probe("b-tcp", "isp-b", ProbeKind::Tcp { port: 443 })]);
    let (syn, sent) = first_attempt(&mut e);
    assert_eq!(syn.iface, B);
    let ip = Ipv4Packet::new_checked(&syn.frame[IP_OFFSET..]).unwrap();
    assert_eq!(ip.src(), B_IP);
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    let (sport, isn) = (t.src_port(), t.seq());
    let mut p = vec![0u8; 64];
    let syn_ack = TcpRepr {
        sport: 443,
        dport: sport,
        seq: 7000,
        ack: isn.wrapping_add(1),
        flags: tcp::flags::SYN | tcp::flags::ACK,
        window: 65535,
    };
    let n = tcp::build_segment(&mut p, &OwnHeader::new(TARGET, B_IP), &syn_ack).unwrap();
    let reply = ipv4_frame(B_MAC, PE_B_MAC, &p[..n]);
    assert!(e.handle_reply(UplinkId(1), &reply, sent + Duration::from_millis(5)));
    let rst = e.poll_transmit().expect("a RST");
    assert_eq!(rst.iface, B);
    let ip = Ipv4Packet::new_checked(&rst.frame[IP_OFFSET..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (B_IP, TARGET));
    let r = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((r.src_port(), r.dst_port()), (sport, 443));
    assert_eq!(r.flags() & tcp::flags::RST, tcp::flags::RST);
    assert_eq!(r.seq(), isn.wrapping_add(1));
}

#[test]
fn reconfigure_keeps_statistics_of_probes_that_survive() {
    let mut e = engine(vec![icmp_probe()]);
    let (_, sent) = first_attempt(&mut e);
    e.handle_timeout(sent + Duration::from_millis(500));
    let now = sent + Duration::from_secs(2);
    e.reconfigure(
        vec![
            probe("b-ping", "isp-b", ProbeKind::IcmpEcho { payload_size: 8 }),
            icmp_probe(),
        ],
        uplink_of,
        now,
    );
    assert_eq!(e.probes()[1].def.name, "a-ping");
    assert_eq!(e.probes()[1].stats.timeouts(), 1);
    assert_eq!(e.probes()[0].stats.sent(), 0);
}
