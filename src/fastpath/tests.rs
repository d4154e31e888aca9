use std::collections::HashMap;
use std::net::Ipv4Addr;

use proptest::prelude::*;

mod forwards;
mod npt6;
mod probes6;
mod routes6;
mod v6;
mod valid_frames;

use super::*;
use crate::UplinkId;
use crate::config::LimitsConfig;
use crate::fastpath::valid_frames::{
    A_MAC, HOST, HOST_MAC, LAN_MAC, OUTSIDE, PE_A, PE_A_IP, PROBE_ID, SERVER, World, eth, p, run,
    world,
};
use crate::nat::NatParams;
use crate::probe::PROBE_PORTS;
use crate::route::{Health, Interfaces, RouteTable, StaticRoute};
use crate::wire::checksum;
use crate::wire::ethernet::MacAddr;
use crate::wire::icmp::{codes, types};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::vnet;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tcp,
    Udp,
    Echo,
}

/// An IPv4 packet from (address, port) to (address, port); for echo the ports are the id of a
/// request (source) or reply (destination). TCP: a SYN with MSS 1460, or with `reply` a bare ACK.
fn packet(
    kind: Kind,
    (src, sport): ([u8; 4], u16),
    (dst, dport): ([u8; 4], u16),
    ttl: u8,
    payload: &[u8],
    reply: bool,
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src, dst, ttl);
    let mut out = Vec::new();
    match kind {
        Kind::Tcp => {
            let t = b.tcp(sport, dport, 1000, 64000).ack(5000);
            let t = if reply {
                t
            } else {
                t.syn()
                    .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
                    .unwrap()
            };
            t.write(&mut out, payload).unwrap()
        }
        Kind::Udp => b.udp(sport, dport).write(&mut out, payload).unwrap(),
        Kind::Echo if reply => b
            .icmpv4_echo_reply(dport, 7)
            .write(&mut out, payload)
            .unwrap(),
        Kind::Echo => b
            .icmpv4_echo_request(sport, 7)
            .write(&mut out, payload)
            .unwrap(),
    }
    out
}

/// Parses the IP packet of a frame with etherparse and checks every checksum.
fn verify(frame: &[u8]) -> etherparse::SlicedPacket<'_> {
    let pkt = etherparse::SlicedPacket::from_ethernet(&frame[ETH_OFFSET..]).expect("valid frame");
    let ip = match &pkt.net {
        Some(etherparse::NetSlice::Ipv4(ip)) => ip.clone(),
        other => panic!("not IPv4: {other:?}"),
    };
    let h = ip.header().to_header();
    assert_eq!(
        h.calc_header_checksum(),
        h.header_checksum,
        "IP header checksum"
    );
    let payload = ip.payload().payload;
    match &pkt.transport {
        Some(etherparse::TransportSlice::Tcp(t)) => {
            let c = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(c, t.checksum(), "TCP checksum");
        }
        Some(etherparse::TransportSlice::Udp(u)) => {
            let c = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
            assert_eq!(c, u.checksum(), "UDP checksum");
        }
        Some(etherparse::TransportSlice::Icmpv4(_)) => {
            assert_eq!(checksum::checksum(payload), 0, "ICMP checksum");
        }
        other => panic!("transport {other:?}"),
    }
    pkt
}

fn ports(pkt: &etherparse::SlicedPacket<'_>) -> (u16, u16) {
    match &pkt.transport {
        Some(etherparse::TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(etherparse::TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        Some(etherparse::TransportSlice::Icmpv4(i)) => match i.icmp_type() {
            etherparse::Icmpv4Type::EchoRequest(e) | etherparse::Icmpv4Type::EchoReply(e) => {
                (e.id, e.id)
            }
            t => panic!("icmp {t:?}"),
        },
        other => panic!("transport {other:?}"),
    }
}

fn addrs(pkt: &etherparse::SlicedPacket<'_>) -> (Ipv4Addr, Ipv4Addr) {
    match &pkt.net {
        Some(etherparse::NetSlice::Ipv4(ip)) => {
            (ip.header().source_addr(), ip.header().destination_addr())
        }
        _ => panic!("not IPv4"),
    }
}

/// Out through NAT and back: checksums verify both ways and the reply restores the inside
/// endpoint exactly (translate then un-translate is the identity).
fn round_trip(kind: Kind, sport: u16, dport: u16, payload: &[u8]) {
    let w = world(1500);
    let mut out = eth(
        LAN_MAC,
        HOST_MAC,
        &packet(kind, (HOST, sport), (SERVER, dport), 64, payload, false),
    );
    let (v, _) = run(&w, &mut out, Iface::Lan);
    assert_eq!(
        v,
        Verdict::Forward {
            egress: Iface::Uplink(UplinkId(0))
        }
    );
    let pkt = verify(&out);
    assert_eq!(
        addrs(&pkt),
        (Ipv4Addr::from(OUTSIDE), Ipv4Addr::from(SERVER))
    );
    let (osport, _) = ports(&pkt);
    let e = EthernetFrame::new_unchecked(&out[ETH_OFFSET..]);
    assert_eq!((e.dst(), e.src()), (PE_A, A_MAC));
    assert_eq!(Ipv4Packet::new_unchecked(&out[IP_OFFSET..]).ttl(), 63);

    let back = match kind {
        Kind::Echo => packet(kind, (SERVER, 0), (OUTSIDE, osport), 60, payload, true),
        _ => packet(kind, (SERVER, dport), (OUTSIDE, osport), 60, payload, true),
    };
    let mut back = eth(A_MAC, PE_A, &back);
    let (v, _) = run(&w, &mut back, Iface::Uplink(UplinkId(0)));
    assert_eq!(v, Verdict::Forward { egress: Iface::Lan });
    let pkt = verify(&back);
    assert_eq!(addrs(&pkt), (Ipv4Addr::from(SERVER), Ipv4Addr::from(HOST)));
    let (rs, rd) = ports(&pkt);
    match kind {
        Kind::Echo => assert_eq!(rd, sport),
        _ => assert_eq!((rs, rd), (dport, sport)),
    }
    assert_eq!(
        EthernetFrame::new_unchecked(&back[ETH_OFFSET..]).dst(),
        HOST_MAC
    );
}

#[test]
fn tcp_udp_icmp_round_trips() {
    round_trip(Kind::Tcp, 40000, 80, b"hello");
    round_trip(Kind::Udp, 5353, 53, b"query");
    round_trip(Kind::Echo, 777, 0, &[0xab; 56]);
}

#[test]
fn mss_is_clamped_on_syn() {
    let w = world(1500);
    let mut f = eth(
        LAN_MAC,
        HOST_MAC,
        &packet(Kind::Tcp, (HOST, 40000), (SERVER, 80), 64, &[], false),
    );
    run(&w, &mut f, Iface::Lan);
    let pkt = verify(&f);
    let Some(etherparse::TransportSlice::Tcp(t)) = &pkt.transport else {
        panic!()
    };
    let mss = t.options_iterator().find_map(|o| match o {
        Ok(etherparse::TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
        _ => None,
    });
    assert_eq!(mss, Some(1400));
}

/// The folded pseudo-header sum of a TCP segment of `len` bytes: what a partial
/// (NEEDS_CSUM) checksum field holds.
fn tcp_pseudo(src: [u8; 4], dst: [u8; 4], len: usize) -> u16 {
    checksum::fold(checksum::pseudo_header_sum(
        src.into(),
        dst.into(),
        6,
        len as u16,
    ))
}

/// A frame from the LAN host as a TAP gives it when the host offloads checksums: the TCP
/// packet `ip` (HOST to SERVER) with its checksum field partial and NEEDS_CSUM set.
fn partial_frame(mut ip: Vec<u8>) -> Vec<u8> {
    let pseudo = tcp_pseudo(HOST, SERVER, ip.len() - 20);
    ip[20 + 16..20 + 18].copy_from_slice(&pseudo.to_be_bytes());
    let mut f = eth(LAN_MAC, HOST_MAC, &ip);
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

#[test]
fn partial_checksum_follows_the_pseudo_header() {
    let w = world(1500);
    let ip = packet(Kind::Tcp, (HOST, 40000), (SERVER, 80), 64, &[7; 100], false);
    let tcp_len = ip.len() - 20;
    let mut f = partial_frame(ip);
    assert_eq!(
        run(&w, &mut f, Iface::Lan).0,
        Verdict::Forward {
            egress: Iface::Uplink(UplinkId(0))
        }
    );
    let field = u16::from_be_bytes([f[IP_OFFSET + 36], f[IP_OFFSET + 37]]);
    assert_eq!(field, tcp_pseudo(OUTSIDE, SERVER, tcp_len));
}

#[test]
fn ttl_expiry_answers_time_exceeded() {
    let w = world(1500);
    let mut f = eth(
        LAN_MAC,
        HOST_MAC,
        &packet(
            Kind::Udp,
            (HOST, 33434),
            (SERVER, 33435),
            1,
            &[0; 32],
            false,
        ),
    );
    let orig = f.clone();
    let (v, scratch) = run(&w, &mut f, Iface::Lan);
    let Verdict::Reply {
        egress: Iface::Lan,
        len,
        reason: DropReason::TtlExceeded,
    } = v
    else {
        panic!("{v:?}")
    };
    let pkt = verify(&scratch[..len]);
    assert_eq!(
        addrs(&pkt),
        (Ipv4Addr::new(192, 168, 0, 1), Ipv4Addr::from(HOST))
    );
    let icmp = &scratch[IP_OFFSET + 20..len];
    assert_eq!((icmp[0], icmp[1]), (types::TIME_EXCEEDED, 0));
    assert_eq!(
        &icmp[8..36],
        &orig[IP_OFFSET..IP_OFFSET + 28],
        "quotes the original header and 8 bytes"
    );
    assert!(w.nat.is_empty(), "no NAT session for an expired packet");
}

#[test]
fn df_over_mtu_answers_frag_needed() {
    let w = world(1400);
    let mut f = eth(
        LAN_MAC,
        HOST_MAC,
        &packet(Kind::Udp, (HOST, 1), (SERVER, 2), 64, &[0; 1400], false),
    );
    f[IP_OFFSET + 6] |= 0x40;
    let c = checksum::checksum(&{
        let mut h = f[IP_OFFSET..IP_OFFSET + 20].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    f[IP_OFFSET + 10..IP_OFFSET + 12].copy_from_slice(&c.to_be_bytes());
    let (v, scratch) = run(&w, &mut f, Iface::Lan);
    let Verdict::Reply {
        len,
        reason: DropReason::FragNeeded,
        ..
    } = v
    else {
        panic!("{v:?}")
    };
    let icmp = &scratch[IP_OFFSET + 20..len];
    assert_eq!(
        (icmp[0], icmp[1]),
        (types::DEST_UNREACH, codes::FRAG_NEEDED)
    );
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1400);
}

#[test]
fn without_df_over_mtu_is_fragmented() {
    let w = world(1400);
    let mut f = eth(
        LAN_MAC,
        HOST_MAC,
        &packet(Kind::Udp, (HOST, 1), (SERVER, 2), 64, &[0; 1400], false),
    );
    f[IP_OFFSET + 6] &= !0x40;
    Ipv4Packet::new_unchecked(&mut f[IP_OFFSET..]).fill_checksum();
    let (v, _) = run(&w, &mut f, Iface::Lan);
    assert_eq!(
        v,
        Verdict::Fragment {
            egress: Iface::Uplink(UplinkId(0)),
            mtu: 1400
        }
    );
    verify(&f);
}

#[test]
fn complete_checksum_finishes_a_partial_one() {
    let good = packet(Kind::Tcp, (HOST, 40000), (SERVER, 80), 64, &[7; 100], false);
    let mut f = partial_frame(good.clone());
    complete_checksum(&mut f);
    assert_eq!(&f[IP_OFFSET..], &good[..]);
    assert!(!VnetHdr::parse(&f).unwrap().needs_csum());
}

/// The verdict on `ip_packet` arriving on `ingress` from its usual neighbour: the LAN host, or
/// ISP A's router.
fn verdict(w: &World, ingress: Iface, ip_packet: &[u8]) -> Verdict {
    let mut f = match ingress {
        Iface::Lan => eth(LAN_MAC, HOST_MAC, ip_packet),
        Iface::Uplink(_) => eth(A_MAC, PE_A, ip_packet),
    };
    run(w, &mut f, ingress).0
}

#[test]
fn filters_spoofed_unsolicited_and_transit() {
    let w = world(1500);
    let a = Iface::Uplink(UplinkId(0));
    let spoofed = packet(Kind::Udp, ([10, 0, 0, 1], 1), (SERVER, 2), 64, &[], false);
    assert_eq!(
        verdict(&w, Iface::Lan, &spoofed),
        Verdict::Drop(DropReason::Spoofed)
    );
    let unsolicited = packet(Kind::Tcp, (SERVER, 80), (OUTSIDE, 40000), 64, &[], false);
    assert_eq!(
        verdict(&w, a, &unsolicited),
        Verdict::Drop(DropReason::NatUnsolicited),
        "unsolicited from a non-target is dropped in the fast path"
    );
    let from_target = packet(Kind::Tcp, (PE_A_IP, 80), (OUTSIDE, 40000), 64, &[], true);
    assert_eq!(
        verdict(&w, a, &from_target),
        Verdict::Drop(DropReason::NatUnsolicited),
        "from a probe target but not to a probe's port: unsolicited"
    );
    let ping = packet(Kind::Echo, (SERVER, 9), (OUTSIDE, 0), 64, &[], false);
    assert_eq!(
        verdict(&w, a, &ping),
        Verdict::Punt(PuntClass::Other),
        "pings to the router are answered"
    );
    let transit = packet(Kind::Udp, (SERVER, 1), (HOST, 2), 64, &[], false);
    assert_eq!(
        verdict(&w, a, &transit),
        Verdict::Drop(DropReason::UplinkTransit)
    );
    let mut f = eth(
        LAN_MAC,
        HOST_MAC,
        &packet(Kind::Tcp, (HOST, 40000), (SERVER, 80), 64, &[], true),
    );
    let (v, scratch) = run(&w, &mut f, Iface::Lan);
    let Verdict::Reply {
        len,
        reason: DropReason::NatNoFlow,
        ..
    } = v
    else {
        panic!("{v:?}")
    };
    let pkt = verify(&scratch[..len]);
    let Some(etherparse::TransportSlice::Tcp(t)) = &pkt.transport else {
        panic!()
    };
    assert!(
        t.rst() && t.sequence_number() == 5000,
        "RST with seq = the segment's ACK"
    );
}

#[test]
fn icmp_error_from_the_internet_is_translated_back() {
    let w = world(1500);
    let mut out = eth(
        LAN_MAC,
        HOST_MAC,
        &packet(Kind::Udp, (HOST, 33434), (SERVER, 33435), 5, &[0; 8], false),
    );
    run(&w, &mut out, Iface::Lan);
    let quoted = out[IP_OFFSET..IP_OFFSET + 36].to_vec();
    let mut err = Vec::new();
    etherparse::PacketBuilder::ipv4([172, 16, 1, 2], OUTSIDE, 64)
        .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
        ))
        .write(&mut err, &quoted)
        .unwrap();
    let mut f = eth(A_MAC, PE_A, &err);
    assert_eq!(
        run(&w, &mut f, Iface::Uplink(UplinkId(0))).0,
        Verdict::Forward { egress: Iface::Lan }
    );
    let pkt = verify(&f);
    assert_eq!(addrs(&pkt).1, Ipv4Addr::from(HOST));
    let inner = &f[IP_OFFSET + 28..];
    assert_eq!(&inner[12..16], &HOST, "quoted source restored");
    assert_eq!(
        u16::from_be_bytes([inner[20], inner[21]]),
        33434,
        "quoted port restored"
    );
}

/// An error from a LAN host about an echo reply it received (found by the fuzz target
/// `icmp_error`): the quoted reply's identifier is the host's, which the session maps, so the
/// error goes out translated instead of being dropped as unsolicited.
#[test]
fn icmp_error_from_the_lan_about_an_echo_reply_is_translated() {
    let w = world(1500);
    let mut out = eth(
        LAN_MAC,
        HOST_MAC,
        &packet(Kind::Echo, (HOST, 777), (SERVER, 0), 64, &[0; 8], false),
    );
    run(&w, &mut out, Iface::Lan);
    let outside_id = u16::from_be_bytes([out[IP_OFFSET + 24], out[IP_OFFSET + 25]]);
    let reply = packet(Kind::Echo, (SERVER, 0), (HOST, 777), 60, &[0; 8], true);
    let mut err = Vec::new();
    etherparse::PacketBuilder::ipv4(HOST, SERVER, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut err, &reply[..28])
        .unwrap();
    let mut f = eth(LAN_MAC, HOST_MAC, &err);
    assert_eq!(
        run(&w, &mut f, Iface::Lan).0,
        Verdict::Forward {
            egress: Iface::Uplink(UplinkId(0))
        }
    );
    let pkt = verify(&f);
    assert_eq!(addrs(&pkt).0, Ipv4Addr::from(OUTSIDE));
    let inner = &f[IP_OFFSET + 28..];
    assert_eq!(&inner[16..20], &OUTSIDE, "quoted destination translated");
    assert_eq!(
        u16::from_be_bytes([inner[24], inner[25]]),
        outside_id,
        "quoted id translated"
    );
}

/// SPEC 29: frames to the virtual MAC of a group this router is master of are forwarded like
/// frames to its own MAC; other groups' are not; VRRP advertisements go to the control plane
/// when VRRP is configured, from the LAN only.
#[test]
fn virtual_mac_is_ours_while_master_and_adverts_are_punted() {
    let mut w = world(1500);
    let syn = packet(Kind::Tcp, (HOST, 40000), (SERVER, 80), 64, &[], false);
    let vmac = crate::wire::vrrp::virtual_mac(1);
    let advert = {
        let repr = crate::wire::vrrp::VrrpRepr {
            vrid: 1,
            priority: 100,
            max_adver_int: 100,
            addrs: vec![Ipv4Addr::new(192, 168, 0, 1)],
        };
        let mut f = vec![0u8; ETH_OFFSET + repr.frame_len()];
        repr.build_frame(&mut f[ETH_OFFSET..], Ipv4Addr::new(192, 168, 0, 3))
            .unwrap();
        f
    };
    let mut f = eth(vmac, HOST_MAC, &syn);
    assert_eq!(
        run(&w, &mut f, Iface::Lan).0,
        Verdict::Drop(DropReason::NotOurMac)
    );
    assert_eq!(
        run(&w, &mut advert.clone(), Iface::Lan).0,
        Verdict::Drop(DropReason::Broadcast)
    );
    w.snap.lan.virtual_macs = vec![vmac];
    w.snap.lan.vrrp = true;
    let mut f = eth(vmac, HOST_MAC, &syn);
    assert_eq!(
        run(&w, &mut f, Iface::Lan).0,
        Verdict::Forward {
            egress: Iface::Uplink(UplinkId(0))
        }
    );
    let mut f = eth(crate::wire::vrrp::virtual_mac(2), HOST_MAC, &syn);
    assert_eq!(
        run(&w, &mut f, Iface::Lan).0,
        Verdict::Drop(DropReason::NotOurMac)
    );
    assert_eq!(
        run(&w, &mut advert.clone(), Iface::Lan).0,
        Verdict::Punt(PuntClass::Other)
    );
    assert_ne!(
        run(&w, &mut advert.clone(), Iface::Uplink(UplinkId(0))).0,
        Verdict::Punt(PuntClass::Other)
    );
    // The virtual MAC is the LAN's only: not accepted on an uplink.
    let mut f = eth(
        vmac,
        PE_A,
        &packet(Kind::Tcp, (SERVER, 80), (OUTSIDE, 1024), 64, &[], true),
    );
    assert_eq!(
        run(&w, &mut f, Iface::Uplink(UplinkId(0))).0,
        Verdict::Drop(DropReason::NotOurMac)
    );
}

/// SPEC 29: a route to a router on the LAN forwards back onto the LAN, untranslated, to the
/// peer's MAC; the peer translates.
#[test]
fn route_via_the_peer_forwards_on_the_lan_untranslated() {
    let mut w = world(1500);
    let peer = Ipv4Addr::new(192, 168, 0, 3);
    let peer_mac = MacAddr([2, 0, 0, 0, 0, 3]);
    let ifaces = Interfaces {
        lan: p("192.168.0.1/24"),
        uplinks: vec![],
    };
    let via_peer = StaticRoute {
        name: "via-peer".into(),
        prefix: p("0.0.0.0/0"),
        egress: Iface::Lan,
        next_hop: peer,
        distance: 200,
        weight: 1,
        track: None,
    };
    let health = Health {
        carrier: vec![],
        tracks: vec![],
    };
    w.snap.routes = RouteTable::build(ifaces, vec![via_peer], vec![], &health);
    let mut f = eth(
        LAN_MAC,
        HOST_MAC,
        &packet(Kind::Tcp, (HOST, 40000), (SERVER, 80), 64, &[], false),
    );
    assert_eq!(
        run(&w, &mut f.clone(), Iface::Lan).0,
        Verdict::NeedsNeighbour {
            egress: Iface::Lan,
            next_hop: peer.into()
        }
    );
    w.neighbours = Neighbours::new(HashMap::from([((Iface::Lan, peer), peer_mac)]), vec![]);
    assert_eq!(
        run(&w, &mut f, Iface::Lan).0,
        Verdict::Forward { egress: Iface::Lan }
    );
    let e = EthernetFrame::new_checked(&f[ETH_OFFSET..]).unwrap();
    assert_eq!((e.dst(), e.src()), (peer_mac, LAN_MAC));
    let pkt = verify(&f);
    assert_eq!(addrs(&pkt), (Ipv4Addr::from(HOST), Ipv4Addr::from(SERVER)));
    assert_eq!(ports(&pkt), (40000, 80));
    assert_eq!(w.nat.len(), 0);
}

/// An ARP request from `sender` (broadcast), as a frame with its vnet header.
fn arp_from(sender: [u8; 4], mac: MacAddr) -> Vec<u8> {
    let mut a = vec![0u8; crate::wire::arp::PACKET_LEN];
    let mut p = crate::wire::arp::ArpPacket::new_unchecked(&mut a[..]);
    p.set_ethernet_ipv4();
    p.set_operation(crate::wire::arp::op::REQUEST);
    p.set_sender_mac(mac);
    p.set_sender_ip(sender.into());
    let mut f = eth(MacAddr([0xff; 6]), mac, &a);
    f[vnet::LEN + 12..vnet::LEN + 14].copy_from_slice(&[0x08, 0x06]);
    f
}

/// SPEC 35: each class of frame for the control plane has its own bucket, per worker: a flood
/// of ARP from the LAN leaves the next hop's ARP, the probes' replies and the router's own
/// traffic their tokens, and a flood of ICMP errors quoting a probe leaves the replies theirs.
#[test]
fn control_plane_admission_is_per_class() {
    let w = world(1500);
    let a = Iface::Uplink(UplinkId(0));
    let limits = LimitsConfig {
        arp_per_second: 5,
        probe_replies_per_second: 5,
        punts_per_second: 5,
        ..LimitsConfig::default()
    };
    let mut fp = FastPath::new(&limits);
    let env = Env {
        snap: &w.snap,
        neighbours: &w.neighbours,
        nat: &w.nat,
        frags: &w.frags,
        now: Instant::from_millis(1000),
    };
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let mut verdict = |fp: &mut FastPath, ingress: Iface, frame: &[u8]| {
        fp.process(&env, &mut frame.to_vec(), ingress, &mut scratch)
    };
    let lan_arp = arp_from([192, 168, 0, 77], MacAddr([2, 0, 0, 0, 7, 7]));
    let punted = (0..100)
        .filter(|_| verdict(&mut fp, Iface::Lan, &lan_arp) == Verdict::Punt(PuntClass::Arp))
        .count();
    assert_eq!(punted, 5, "the LAN's ARP beyond its rate");
    assert_eq!(
        verdict(&mut fp, Iface::Lan, &lan_arp),
        Verdict::Drop(DropReason::ArpRateLimited)
    );
    let next_hop_arp = arp_from(PE_A_IP, PE_A);
    assert_eq!(
        verdict(&mut fp, a, &next_hop_arp),
        Verdict::Punt(PuntClass::Arp),
        "the next hop's ARP has its own bucket"
    );
    let quoted = packet(
        Kind::Echo,
        (OUTSIDE, PROBE_ID),
        (PE_A_IP, 0),
        64,
        &[],
        false,
    );
    let mut err = Vec::new();
    etherparse::PacketBuilder::ipv4(SERVER, OUTSIDE, 64)
        .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
        ))
        .write(&mut err, &quoted[..28])
        .unwrap();
    let err = eth(A_MAC, PE_A, &err);
    let errors = (0..1000)
        .filter(|_| verdict(&mut fp, a, &err) == Verdict::Punt(PuntClass::Probe))
        .count();
    assert!(errors < 1000, "errors about probes are limited");
    let reply = eth(
        A_MAC,
        PE_A,
        &packet(Kind::Echo, (PE_A_IP, 0), (OUTSIDE, PROBE_ID), 64, &[], true),
    );
    assert_eq!(
        verdict(&mut fp, a, &reply),
        Verdict::Punt(PuntClass::Probe),
        "the probe's reply after a flood of errors about it"
    );
    let local = eth(
        LAN_MAC,
        HOST_MAC,
        &packet(
            Kind::Udp,
            (HOST, 1000),
            ([192, 168, 0, 1], 9),
            64,
            &[],
            false,
        ),
    );
    assert_eq!(
        verdict(&mut fp, Iface::Lan, &local),
        Verdict::Punt(PuntClass::Other),
        "the router's own traffic after a flood of ARP"
    );
}

#[test]
fn class_e_and_255_slash_8_are_martian_the_limited_broadcast_is_not() {
    let w = world(1500);
    for (dst, want) in [
        ([240, 0, 0, 1], DropReason::Martian),
        ([254, 1, 2, 3], DropReason::Martian),
        ([255, 1, 2, 3], DropReason::Martian),
        ([255, 255, 255, 254], DropReason::Martian),
        ([255, 255, 255, 255], DropReason::Broadcast),
    ] {
        let pkt = packet(Kind::Udp, (HOST, 1000), (dst, 53), 64, &[], false);
        assert_eq!(
            verdict(&w, Iface::Lan, &pkt),
            Verdict::Drop(want),
            "{dst:?}"
        );
    }
}

/// SPEC 35: whatever ids a LAN host pings a probe's target with, none maps to a probe's id (the
/// session that would own it cannot be created), so the target's replies to the probes' ids go
/// to the probe thread, before any NAT lookup.
#[test]
fn a_lan_id_sweep_cannot_own_a_probe_id() {
    let w = world(1500);
    let a = Iface::Uplink(UplinkId(0));
    for id in (1..=u16::MAX).step_by(7).chain(PROBE_PORTS) {
        let req = packet(Kind::Echo, (HOST, id), (PE_A_IP, 0), 64, &[], false);
        let mut f = eth(LAN_MAC, HOST_MAC, &req);
        assert_eq!(
            run(&w, &mut f, Iface::Lan).0,
            Verdict::Forward { egress: a }
        );
        let (outside_id, _) = ports(&verify(&f));
        assert!(
            !PROBE_PORTS.contains(&outside_id),
            "id {id} went out as the probes' {outside_id}"
        );
    }
    for id in PROBE_PORTS {
        let reply = packet(Kind::Echo, (PE_A_IP, 0), (OUTSIDE, id), 64, &[], true);
        let want = if id == PROBE_ID {
            Verdict::Punt(PuntClass::Probe)
        } else {
            // Another probe port nobody uses: no probe, and no session either.
            Verdict::Drop(DropReason::NatUnsolicited)
        };
        assert_eq!(verdict(&w, a, &reply), want, "id {id}");
    }
    let id = PROBE_ID;
    let from_elsewhere = packet(Kind::Echo, (SERVER, 0), (OUTSIDE, id), 64, &[], true);
    assert_eq!(
        verdict(&w, a, &from_elsewhere),
        Verdict::Drop(DropReason::NatUnsolicited),
        "not from the probe's target"
    );
}

/// An ICMP error goes to the probe thread only when it quotes a packet a probe sent (from the
/// uplink's address, to the probe's target, with a probe's id); other unmatched errors are
/// dropped in the fast path.
#[test]
fn icmp_errors_quoting_a_probe_go_to_the_probes() {
    let w = world(1500);
    let a = Iface::Uplink(UplinkId(0));
    let error_quoting = |src: [u8; 4], id: u16| {
        let q = packet(Kind::Echo, (src, id), (PE_A_IP, 0), 64, &[], false);
        let mut err = Vec::new();
        etherparse::PacketBuilder::ipv4(SERVER, OUTSIDE, 64)
            .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
                etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
            ))
            .write(&mut err, &q[..28])
            .unwrap();
        err
    };
    let id = PROBE_ID;
    assert_eq!(
        verdict(&w, a, &error_quoting(OUTSIDE, id)),
        Verdict::Punt(PuntClass::Probe)
    );
    for (src, id, why) in [
        (OUTSIDE, id + 1, "not the probe's id"),
        (OUTSIDE, 1024, "not a probe's id"),
        ([172, 16, 1, 3], id, "not sent from the uplink's address"),
    ] {
        assert_eq!(
            verdict(&w, a, &error_quoting(src, id)),
            Verdict::Drop(DropReason::NatUnsolicited),
            "{why}"
        );
    }
}

proptest! {
    #[test]
    fn nat_round_trip_is_identity(kind in 0..3u8, sport in 1..u16::MAX, dport in 1..u16::MAX, payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        let kind = [Kind::Tcp, Kind::Udp, Kind::Echo][kind as usize];
        round_trip(kind, sport, dport, &payload);
    }

    #[test]
    fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200), uplink in any::<bool>()) {
        let w = world(1500);
        let mut f = bytes.clone();
        let ingress = if uplink { Iface::Uplink(UplinkId(0)) } else { Iface::Lan };
        run(&w, &mut f, ingress);
    }
}

#[test]
fn dhcp_broadcasts_and_dns_answers_go_to_the_control_plane() {
    let w = world(1500);
    let up = Iface::Uplink(UplinkId(0));
    let dhcp = |sport, dport| {
        let p = packet(
            Kind::Udp,
            ([0, 0, 0, 0], sport),
            ([255; 4], dport),
            64,
            &[],
            false,
        );
        eth(MacAddr::BROADCAST, HOST_MAC, &p)
    };
    assert_eq!(
        run(&w, &mut dhcp(68, 67), Iface::Lan).0,
        Verdict::Punt(PuntClass::Other)
    );
    assert_eq!(
        run(&w, &mut dhcp(68, 69), Iface::Lan).0,
        Verdict::Drop(DropReason::Broadcast),
        "other broadcasts are still dropped"
    );
    assert_eq!(
        run(&w, &mut dhcp(68, 67), up).0,
        Verdict::Drop(DropReason::Broadcast),
        "the server serves the LAN only"
    );
    assert_eq!(
        run(&w, &mut dhcp(67, 68), up).0,
        Verdict::Punt(PuntClass::Other),
        "an ISP's answer"
    );
    let unicast = |sport, dport| {
        let p = packet(Kind::Udp, (SERVER, sport), (OUTSIDE, dport), 64, &[], false);
        eth(A_MAC, PE_A, &p)
    };
    assert_eq!(
        run(&w, &mut unicast(53, 53), up).0,
        Verdict::Punt(PuntClass::Other)
    );
    assert_eq!(
        run(&w, &mut unicast(67, 68), up).0,
        Verdict::Punt(PuntClass::Other),
        "a renewal's answer"
    );
    // Kea answers a client without an address at the IP broadcast but at the client's MAC.
    let to_our_mac = |sport, dport| {
        let p = packet(
            Kind::Udp,
            (SERVER, sport),
            ([255; 4], dport),
            64,
            &[],
            false,
        );
        eth(A_MAC, PE_A, &p)
    };
    assert_eq!(
        run(&w, &mut to_our_mac(67, 68), up).0,
        Verdict::Punt(PuntClass::Other),
        "an answer at the IP broadcast to our MAC"
    );
    assert_eq!(
        run(&w, &mut to_our_mac(67, 69), up).0,
        Verdict::Drop(DropReason::Broadcast),
        "other datagrams to the IP broadcast are not"
    );
    assert_eq!(
        run(&w, &mut unicast(53, 40000), up).0,
        Verdict::Drop(DropReason::NatUnsolicited)
    );
    // The DNS relay's TCP connections to resolvers (SPEC 30): from port 53 to its ports only.
    let tcp = |sport, dport| {
        let p = packet(Kind::Tcp, (SERVER, sport), (OUTSIDE, dport), 64, &[], true);
        eth(A_MAC, PE_A, &p)
    };
    let relay_port = *crate::dns::tcp::TCP_PORTS.start();
    assert_eq!(
        run(&w, &mut tcp(53, relay_port), up).0,
        Verdict::Punt(PuntClass::Other)
    );
    assert_eq!(
        run(&w, &mut tcp(53, relay_port - 1), up).0,
        Verdict::Drop(DropReason::NatUnsolicited)
    );
    assert_eq!(
        run(&w, &mut tcp(80, relay_port), up).0,
        Verdict::Drop(DropReason::NatUnsolicited)
    );
}
