//! The fast path's inbound filter for traffic an uplink does not translate (SPEC 10), through
//! the real `FastPath::process` on a built snapshot: replies to untranslated LAN hosts are
//! forwarded, everything else arriving on an uplink for someone other than the router stays
//! dropped. The lab test of the same behaviour is in tests/forwarding.rs.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use mhrouter::clock::Instant;
use mhrouter::counters::DropReason;
use mhrouter::fastpath::{Env, FastPath, SCRATCH_LEN, Verdict};
use mhrouter::nat::{FragTable, NatParams, NatTable};
use mhrouter::prefix::Ipv4Prefix;
use mhrouter::route::{Health, Interfaces, RouteTable, StaticRoute, UplinkIf};
use mhrouter::snapshot::{LanState, Neighbours, Snapshot, UplinkState};
use mhrouter::wire::ethernet::MacAddr;
use mhrouter::wire::vnet::{self, VnetHdr};
use mhrouter::{Iface, UplinkId};

const LAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const PE_A: MacAddr = MacAddr([2, 0, 0, 0, 1, 0xa]);
const HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 9, 9]);
const HOST: [u8; 4] = [192, 168, 0, 10];
const HIGH_HOST: [u8; 4] = [192, 168, 0, 200];
const SERVER: [u8; 4] = [172, 18, 0, 6];

fn p(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

/// The reference site with uplink A configured as `nat`/`nat_sources`.
fn snapshot(nat: bool, nat_sources: &[&str]) -> Snapshot {
    let ifaces = Interfaces {
        lan: p("192.168.0.1/24"),
        uplinks: vec![UplinkIf {
            name: "isp-a".into(),
            address: p("172.16.1.1/30"),
            next_hop: Ipv4Addr::new(172, 16, 1, 2),
        }],
    };
    let routes = vec![StaticRoute {
        name: "default".into(),
        prefix: p("0.0.0.0/0"),
        egress: Iface::Uplink(UplinkId(0)),
        next_hop: Ipv4Addr::new(172, 16, 1, 2),
        distance: 10,
        weight: 1,
        track: None,
    }];
    let health = Health {
        carrier: vec![true],
        tracks: vec![],
    };
    Snapshot {
        routes: RouteTable::build(ifaces, routes, vec![], &health),
        lan: LanState {
            address: p("192.168.0.1/24"),
            mac: LAN_MAC,
            mtu: 1500,
            virtual_macs: vec![],
            vrrp: false,
        },
        uplinks: vec![UplinkState {
            name: "isp-a".into(),
            address: p("172.16.1.1/30"),
            mac: A_MAC,
            next_hop: Ipv4Addr::new(172, 16, 1, 2),
            mtu: 1500,
            mss_clamp: None,
            nat,
            nat_sources: nat_sources.iter().map(|s| p(s)).collect(),
            carrier: true,
        }],
        ipv6: None,
        probes: vec![],
    }
}

/// Both LAN hosts and A's next hop resolved.
fn neighbours() -> Neighbours {
    Neighbours::new(
        HashMap::from([
            ((Iface::Lan, Ipv4Addr::from(HOST)), HOST_MAC),
            (
                (Iface::Lan, Ipv4Addr::from(HIGH_HOST)),
                MacAddr([2, 0, 0, 0, 9, 0xa]),
            ),
        ]),
        vec![(Ipv4Addr::new(172, 16, 1, 2), Some(PE_A))],
    )
}

/// A UDP datagram from the server to `dst` as it arrives on uplink A.
fn inbound(dst: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; vnet::LEN];
    VnetHdr::default().write(&mut f).unwrap();
    f.extend_from_slice(&A_MAC.0);
    f.extend_from_slice(&PE_A.0);
    f.extend_from_slice(&[0x08, 0x00]);
    etherparse::PacketBuilder::ipv4(SERVER, dst, 64)
        .udp(53, 40000)
        .write(&mut f, b"reply")
        .unwrap();
    f
}

/// The verdict for `frame` arriving on uplink A, the frame as rewritten, and NAT sessions left.
fn run(snap: &Snapshot, mut frame: Vec<u8>) -> (Verdict, Vec<u8>, usize) {
    let nat = NatTable::new(NatParams::default(), &[Some(Ipv4Addr::new(172, 16, 1, 1))]);
    let frags = FragTable::default();
    let neighbours = neighbours();
    let env = Env {
        snap,
        neighbours: &neighbours,
        nat: &nat,
        frags: &frags,
        now: Instant::from_millis(1000),
    };
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let v = FastPath::default().process(&env, &mut frame, Iface::Uplink(UplinkId(0)), &mut scratch);
    (v, frame, nat.len())
}

#[test]
fn replies_to_untranslated_hosts_are_forwarded_unchanged_but_routed() {
    for snap in [snapshot(false, &[]), snapshot(true, &["192.168.0.128/25"])] {
        let (v, frame, sessions) = run(&snap, inbound(HOST));
        assert_eq!(v, Verdict::Forward { egress: Iface::Lan });
        assert_eq!(sessions, 0, "nothing is translated, so no session");
        let pkt = etherparse::SlicedPacket::from_ethernet(&frame[vnet::LEN..]).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &pkt.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().destination(), HOST, "destination untouched");
        assert_eq!(ip.header().source(), SERVER, "source untouched");
        assert_eq!(ip.header().ttl(), 63, "routed: TTL decremented");
        assert_eq!(
            &frame[vnet::LEN..vnet::LEN + 12],
            &[HOST_MAC.0, LAN_MAC.0].concat()[..]
        );
        assert_eq!(
            ip.header().to_header().calc_header_checksum(),
            ip.header().header_checksum(),
            "IP checksum updated with the TTL"
        );
    }
}

#[test]
fn everything_else_for_the_lan_stays_dropped() {
    let drop = Verdict::Drop(DropReason::UplinkTransit);
    // A translating uplink: the LAN is reachable only through NAT sessions.
    assert_eq!(run(&snapshot(true, &[]), inbound(HOST)).0, drop);
    // nat_sources: a listed (translated) host is not routed in.
    assert_eq!(
        run(&snapshot(true, &["192.168.0.128/25"]), inbound(HIGH_HOST)).0,
        drop
    );
    // Without NAT, still only LAN hosts: not the router's LAN address, not the prefix's network
    // or broadcast address, not another network (transit between uplinks).
    let open = snapshot(false, &[]);
    for dst in [
        [192, 168, 0, 1],
        [192, 168, 0, 0],
        [10, 1, 2, 3],
        [172, 17, 3, 2],
    ] {
        assert_eq!(run(&open, inbound(dst)).0, drop, "{dst:?}");
    }
    assert_eq!(
        run(&open, inbound([192, 168, 0, 255])).0,
        drop,
        "directed broadcast into the LAN"
    );
}
