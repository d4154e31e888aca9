//! IPv6 routes in the fast path (SPEC 34): the eligible route for the destination steers a LAN
//! packet to its uplink when that uplink can carry the source (here, both uplinks translate,
//! as with NPTv6); otherwise the source's own uplink, as without routes (SPEC 32).

use std::net::Ipv6Addr;

use super::*;
use crate::fastpath::valid_frames::v6::{A, B, host_a};
use crate::route::table6::Route6;

fn server() -> Ipv6Addr {
    "2001:db8:18::6".parse().unwrap()
}

/// The lab world with both uplinks translating and a default route via B (distance 10, then A
/// at 20); `b_eligible` as if B's track were up or down.
fn routed_world(b_eligible: bool) -> World {
    let mut w = world(1500);
    let v6 = w.snap.ipv6.as_mut().unwrap();
    for u in &mut v6.uplinks {
        u.translates = true;
    }
    v6.routes = vec![
        Route6 {
            index: 0,
            prefix: "::/0".parse().unwrap(),
            uplink: UplinkId(1),
            distance: 10,
            eligible: b_eligible,
        },
        Route6 {
            index: 1,
            prefix: "::/0".parse().unwrap(),
            uplink: UplinkId(0),
            distance: 20,
            eligible: true,
        },
    ];
    w
}

fn egress_of(w: &World, src: Ipv6Addr) -> Verdict {
    let packet = etherparse::PacketBuilder::ipv6(src.octets(), server().octets(), 64).udp(5353, 53);
    let mut ip = Vec::new();
    packet.write(&mut ip, &[7; 20]).unwrap();
    let mut f = vec![0u8; vnet::LEN];
    f.extend_from_slice(&LAN_MAC.0);
    f.extend_from_slice(&HOST_MAC.0);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&ip);
    run(w, &mut f, Iface::Lan).0
}

#[test]
fn the_eligible_route_steers_and_a_withdrawn_one_falls_back() {
    assert_eq!(
        egress_of(&routed_world(true), host_a()),
        Verdict::Forward { egress: B },
        "the distance-10 route via B"
    );
    assert_eq!(
        egress_of(&routed_world(false), host_a()),
        Verdict::Forward { egress: A },
        "B's route withdrawn: the distance-20 route via A"
    );
    // No route: the source's own uplink.
    let mut w = routed_world(true);
    w.snap.ipv6.as_mut().unwrap().routes.clear();
    assert_eq!(egress_of(&w, host_a()), Verdict::Forward { egress: A });
}

/// Without translation a route cannot take a source to another ISP (it would drop it): the
/// source's own uplink, whatever the routes say.
#[test]
fn a_route_never_takes_a_source_to_an_isp_that_cannot_carry_it() {
    let mut w = routed_world(true);
    for u in &mut w.snap.ipv6.as_mut().unwrap().uplinks {
        u.translates = false;
    }
    assert_eq!(egress_of(&w, host_a()), Verdict::Forward { egress: A });
}

/// An IPv6 policy (SPEC 34): its first uplink that can carry the source, before the routes;
/// with none and fallback unreachable, ICMPv6 destination unreachable back to the host.
#[test]
fn a_policy_steers_before_the_routes_or_makes_the_flow_unreachable() {
    use crate::route::egress6::Policy6;
    let policy = |uplinks: Vec<UplinkId>, unreachable| Policy6 {
        index: 0,
        source: Some("2001:db8:a:1::/64".parse().unwrap()),
        destination: None,
        protocol: Some(17),
        ports: Some((53, 53)),
        uplinks,
        unreachable,
    };
    let mut w = routed_world(true);
    w.snap.ipv6.as_mut().unwrap().policies = vec![policy(vec![UplinkId(0)], false)];
    assert_eq!(
        egress_of(&w, host_a()),
        Verdict::Forward { egress: A },
        "the policy's A before the route's B"
    );
    let v6 = w.snap.ipv6.as_mut().unwrap();
    for u in &mut v6.uplinks {
        u.translates = false;
    }
    v6.policies = vec![policy(vec![UplinkId(1)], true)];
    let Verdict::Reply { egress, reason, .. } = egress_of(&w, host_a()) else {
        panic!("no ICMPv6 error");
    };
    assert_eq!((egress, reason), (Iface::Lan, DropReason::NoRoute));
}
