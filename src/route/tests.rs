use super::fixtures::*;
use super::*;
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestRng};

const FAR: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 6);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn healthy(tracks: usize) -> Health {
    Health {
        carrier: vec![true, true],
        tracks: vec![true; tracks],
    }
}

fn flow_to(dst: Ipv4Addr) -> FlowTuple {
    FlowTuple {
        src: ip("192.168.0.10"),
        dst,
        proto: 6,
        src_port: 40000,
        dst_port: 443,
    }
}

fn uplink_of(d: Decision) -> Option<UplinkId> {
    match d {
        Decision::Uplink { uplink, .. } => Some(uplink),
        _ => None,
    }
}

/// Tracks: 0 a-e2e, 1 b-e2e, 2 a-nh, 3 b-nh (SPEC 6).
fn six_tier() -> Vec<StaticRoute> {
    vec![
        route("a-e2e-tier", "0.0.0.0/0", A, 10, Some(0)),
        route("b-e2e-tier", "0.0.0.0/0", B, 11, Some(1)),
        route("a-nh-tier", "0.0.0.0/0", A, 250, Some(2)),
        route("b-nh-tier", "0.0.0.0/0", B, 251, Some(3)),
        route("a-static-tier", "0.0.0.0/0", A, 252, None),
        route("b-static-tier", "0.0.0.0/0", B, 253, None),
    ]
}

fn track_names() -> Vec<String> {
    ["a-e2e", "b-e2e", "a-nh", "b-nh"]
        .map(String::from)
        .to_vec()
}

fn table(routes: Vec<StaticRoute>, policies: Vec<Policy>, health: &Health) -> RouteTable {
    RouteTable::build(ifaces(), routes, policies, health)
}

#[test]
fn longest_prefix_beats_distance() {
    let routes = vec![
        route("default-a", "0.0.0.0/0", A, 1, None),
        route("ten-b", "10.0.0.0/8", B, 250, None),
    ];
    let t = table(routes, vec![], &healthy(0));
    assert_eq!(
        t.lookup(&flow_to(ip("10.1.2.3"))),
        Decision::Uplink {
            uplink: B,
            next_hop: NH_B,
            route: RouteRef::Static(1)
        }
    );
    assert_eq!(uplink_of(t.lookup(&flow_to(ip("11.1.2.3")))), Some(A));
}

#[test]
fn lowest_distance_eligible_wins() {
    let routes = vec![
        route("b", "0.0.0.0/0", B, 20, None),
        route("a", "0.0.0.0/0", A, 10, None),
    ];
    let t = table(routes, vec![], &healthy(0));
    assert_eq!(
        t.lookup(&flow_to(FAR)),
        Decision::Uplink {
            uplink: A,
            next_hop: NH_A,
            route: RouteRef::Static(1)
        }
    );
    assert_eq!(t.route(0).map(|r| r.1), Some(RouteState::Backup));
    assert_eq!(t.route(1).map(|r| r.1), Some(RouteState::Installed));
}

#[test]
fn carrier_down_makes_untracked_route_ineligible() {
    let routes = vec![
        route("a", "0.0.0.0/0", A, 10, None),
        route("b", "0.0.0.0/0", B, 20, None),
    ];
    let health = Health {
        carrier: vec![false, true],
        tracks: vec![],
    };
    let t = table(routes, vec![], &health);
    assert_eq!(uplink_of(t.lookup(&flow_to(FAR))), Some(B));
    assert_eq!(t.route(0).map(|r| r.1), Some(RouteState::NoCarrier));
    assert!(!t.uplink_usable(A));
    assert!(t.uplink_usable(B));
}

#[test]
fn track_down_makes_route_ineligible() {
    let routes = vec![
        route("a", "0.0.0.0/0", A, 10, Some(0)),
        route("b", "0.0.0.0/0", B, 20, None),
    ];
    let health = Health {
        carrier: vec![true, true],
        tracks: vec![false],
    };
    let t = table(routes, vec![], &health);
    assert_eq!(uplink_of(t.lookup(&flow_to(FAR))), Some(B));
    assert_eq!(t.route(0).map(|r| r.1), Some(RouteState::TrackDown));
    // Carrier is up and A has its connected prefix: still usable, but nothing routes via it.
    assert!(t.uplink_usable(A));
    assert!(!t.uplink_has_eligible_route(A));
}

#[test]
fn unknown_track_or_uplink_counts_as_down() {
    let routes = vec![
        route("a", "0.0.0.0/0", A, 10, Some(7)),
        route("ghost", "0.0.0.0/0", UplinkId(9), 11, None),
    ];
    let t = table(routes, vec![], &healthy(1));
    assert_eq!(t.lookup(&flow_to(FAR)), Decision::Unreachable);
    assert_eq!(t.route(0).map(|r| r.1), Some(RouteState::TrackDown));
    assert_eq!(t.route(1).map(|r| r.1), Some(RouteState::NoCarrier));
}

#[test]
fn withdrawn_prefix_falls_through_to_shorter() {
    let routes = vec![
        route("default-b", "0.0.0.0/0", B, 10, None),
        route("far-a", "172.18.0.0/16", A, 1, Some(0)),
    ];
    let health = Health {
        carrier: vec![true, true],
        tracks: vec![false],
    };
    let t = table(routes, vec![], &health);
    assert_eq!(
        t.lookup(&flow_to(FAR)),
        Decision::Uplink {
            uplink: B,
            next_hop: NH_B,
            route: RouteRef::Static(0)
        }
    );
}

/// Name, carrier (a, b), tracks (a-e2e, b-e2e, a-nh, b-nh), index of the installed route.
type Scenario = (&'static str, [bool; 2], [bool; 4], Option<usize>);

/// The lab scenarios of SPEC 23 on the six tiers (SPEC 6): (carrier a, carrier b, tracks
/// a-e2e, b-e2e, a-nh, b-nh) → installed route.
#[test]
fn six_tiers_named_scenarios() {
    let cases: [Scenario; 8] = [
        ("both healthy", [true, true], [true; 4], Some(0)),
        (
            "A next hop dead",
            [true, true],
            [false, true, false, true],
            Some(1),
        ),
        (
            "central site lost via both",
            [true, true],
            [false, false, true, true],
            Some(2),
        ),
        ("A carrier down", [false, true], [true; 4], Some(1)),
        (
            "A carrier down, B next hop dead",
            [false, true],
            [true, false, true, false],
            Some(5),
        ),
        ("all probes fail", [true, true], [false; 4], Some(4)),
        (
            "A dead, B far side lost",
            [true, true],
            [false, false, false, true],
            Some(3),
        ),
        ("both carriers down", [false, false], [true; 4], None),
    ];
    for (name, carrier, tracks, expected) in cases {
        let health = Health {
            carrier: carrier.to_vec(),
            tracks: tracks.to_vec(),
        };
        let t = table(six_tier(), vec![], &health);
        let got = match t.lookup(&flow_to(FAR)) {
            Decision::Uplink {
                route: RouteRef::Static(i),
                ..
            } => Some(i),
            Decision::Unreachable => None,
            other => panic!("{name}: unexpected {other:?}"),
        };
        assert_eq!(got, expected, "{name}");
    }
}

/// Every combination of the six failure inputs against the definition: lowest distance among
/// the routes whose carrier and track are up.
#[test]
fn six_tiers_every_combination() {
    let routes = six_tier();
    for bits in 0u32..64 {
        let bit = |n: u32| bits & (1 << n) == 0;
        let health = Health {
            carrier: vec![bit(0), bit(1)],
            tracks: vec![bit(2), bit(3), bit(4), bit(5)],
        };
        let expected = routes
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                health.carrier[usize::from(route_uplink(r).0)]
                    && r.track.is_none_or(|t| health.tracks[t])
            })
            .min_by_key(|(_, r)| r.distance)
            .map(|(i, r)| Decision::Uplink {
                uplink: route_uplink(r),
                next_hop: r.next_hop,
                route: RouteRef::Static(i),
            })
            .unwrap_or(Decision::Unreachable);
        let t = table(routes.clone(), vec![], &health);
        assert_eq!(t.lookup(&flow_to(FAR)), expected, "health {health:?}");
    }
}

fn random_flows(n: usize) -> Vec<FlowTuple> {
    let mut rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    (0..n)
        .map(|_| FlowTuple {
            src: Ipv4Addr::from(rng.next_u32()),
            dst: Ipv4Addr::from(rng.next_u32()),
            proto: 17,
            src_port: rng.next_u32() as u16,
            dst_port: rng.next_u32() as u16,
        })
        .collect()
}

/// Sequential source ports from a few LAN hosts to one server: the common, structured case.
fn sequential_flows(n: u16) -> Vec<FlowTuple> {
    (0..n)
        .map(|i| FlowTuple {
            src: Ipv4Addr::new(192, 168, 0, 10 + (i % 8) as u8),
            dst: FAR,
            proto: 6,
            src_port: 40000 + i / 8,
            dst_port: 443,
        })
        .collect()
}

fn weighted_table(weight_a: u8, weight_b: u8) -> RouteTable {
    let mut a = route("lb-a", "0.0.0.0/0", A, 10, None);
    let mut b = route("lb-b", "0.0.0.0/0", B, 10, None);
    a.weight = weight_a;
    b.weight = weight_b;
    table(vec![a, b], vec![], &healthy(0))
}

fn share_of_a(t: &RouteTable, flows: &[FlowTuple]) -> f64 {
    let on_a = flows
        .iter()
        .filter(|f| uplink_of(t.lookup(f)) == Some(A))
        .count();
    on_a as f64 / flows.len() as f64
}

#[test]
fn equal_distance_shares_by_weight() {
    let t = weighted_table(1, 3);
    for flows in [random_flows(10_000), sequential_flows(10_000)] {
        let share = share_of_a(&t, &flows);
        assert!((0.22..=0.28).contains(&share), "share of A {share}");
    }
    let even = share_of_a(&weighted_table(1, 1), &random_flows(10_000));
    assert!((0.47..=0.53).contains(&even), "share of A {even}");
    assert_eq!(t.route(0).map(|r| r.1), Some(RouteState::Installed));
    assert_eq!(t.route(1).map(|r| r.1), Some(RouteState::Installed));
}

#[test]
fn zero_weight_drains_unless_all_zero() {
    let flows = random_flows(1000);
    assert_eq!(share_of_a(&weighted_table(0, 1), &flows), 0.0);
    let all_zero = share_of_a(&weighted_table(0, 0), &flows);
    assert!((0.4..=0.6).contains(&all_zero), "share of A {all_zero}");
}

#[test]
fn same_flow_same_uplink() {
    let t = weighted_table(1, 3);
    let again = weighted_table(1, 3);
    for f in random_flows(500) {
        let d = uplink_of(t.lookup(&f));
        assert_eq!(
            uplink_of(again.lookup(&f)),
            d,
            "a rebuilt table maps the flow the same way"
        );
    }
}

#[test]
fn flow_hash_is_deterministic_and_mixes() {
    let f = flow_to(FAR);
    // A known answer: no per-process seed, so workers, restarts and rebuilt tables agree.
    assert_eq!(flow_hash(&f), 1_685_854_633);
    // One bit of input flips about half the output bits.
    let g = FlowTuple {
        src_port: f.src_port ^ 1,
        ..f
    };
    let flipped = (flow_hash(&f) ^ flow_hash(&g)).count_ones();
    assert!((6..=26).contains(&flipped), "{flipped} bits flipped");
}

fn policy(name: &str, uplinks: Vec<UplinkId>, fallback: PolicyFallback) -> Policy {
    Policy {
        name: name.into(),
        source: None,
        destination: None,
        protocol: None,
        ports: None,
        uplinks,
        fallback,
    }
}

fn two_defaults() -> Vec<StaticRoute> {
    vec![
        route("a", "0.0.0.0/0", A, 10, Some(0)),
        route("b", "0.0.0.0/0", B, 20, Some(1)),
    ]
}

#[test]
fn policy_pins_to_backup_uplink() {
    let mut voip = policy("voip", vec![B, A], PolicyFallback::Table);
    voip.source = Some(p("192.168.0.50/32"));
    voip.protocol = Some(17);
    voip.ports = Some((5060, 5061));
    let t = table(two_defaults(), vec![voip], &healthy(2));
    let sip = FlowTuple {
        src: ip("192.168.0.50"),
        dst: FAR,
        proto: 17,
        src_port: 5060,
        dst_port: 5061,
    };
    assert_eq!(
        t.lookup(&sip),
        Decision::Uplink {
            uplink: B,
            next_hop: NH_B,
            route: RouteRef::Policy {
                policy: 0,
                route: Some(1)
            }
        }
    );
    // Any field that does not match leaves the flow to the table (A).
    let others = [
        FlowTuple {
            src: ip("192.168.0.51"),
            ..sip
        },
        FlowTuple { proto: 6, ..sip },
        FlowTuple {
            dst_port: 5062,
            ..sip
        },
    ];
    for f in others {
        assert_eq!(uplink_of(t.lookup(&f)), Some(A), "{f:?}");
    }
}

#[test]
fn policy_ports_never_match_portless_protocols() {
    let mut web = policy("web", vec![B], PolicyFallback::Unreachable);
    web.ports = Some((0, u16::MAX));
    let t = table(two_defaults(), vec![web], &healthy(2));
    let icmp = FlowTuple {
        proto: 1,
        ..flow_to(FAR)
    };
    assert_eq!(uplink_of(t.lookup(&icmp)), Some(A));
    assert_eq!(uplink_of(t.lookup(&flow_to(FAR))), Some(B));
}

#[test]
fn policy_uses_next_uplink_in_order() {
    let pin = policy("pin", vec![B, A], PolicyFallback::Unreachable);
    let health = Health {
        carrier: vec![true, true],
        tracks: vec![true, false],
    };
    let t = table(two_defaults(), vec![pin], &health);
    assert_eq!(
        t.lookup(&flow_to(FAR)),
        Decision::Uplink {
            uplink: A,
            next_hop: NH_A,
            route: RouteRef::Policy {
                policy: 0,
                route: Some(0)
            }
        }
    );
}

#[test]
fn policy_skips_unknown_uplinks() {
    let t = table(
        two_defaults(),
        vec![policy(
            "odd",
            vec![UplinkId(9), B],
            PolicyFallback::Unreachable,
        )],
        &healthy(2),
    );
    assert_eq!(uplink_of(t.lookup(&flow_to(FAR))), Some(B));
    let t = table(
        two_defaults(),
        vec![policy(
            "odd",
            vec![UplinkId(9)],
            PolicyFallback::Unreachable,
        )],
        &healthy(2),
    );
    assert_eq!(t.lookup(&flow_to(FAR)), Decision::Unreachable);
}

#[test]
fn policy_fallback_both_ways() {
    let health = Health {
        carrier: vec![true, false],
        tracks: vec![true, true],
    };
    let to_table = table(
        two_defaults(),
        vec![policy("b-only", vec![B], PolicyFallback::Table)],
        &health,
    );
    assert_eq!(
        to_table.lookup(&flow_to(FAR)),
        Decision::Uplink {
            uplink: A,
            next_hop: NH_A,
            route: RouteRef::Static(0)
        }
    );
    let strict = table(
        two_defaults(),
        vec![policy("b-only", vec![B], PolicyFallback::Unreachable)],
        &health,
    );
    assert_eq!(strict.lookup(&flow_to(FAR)), Decision::Unreachable);
}

#[test]
fn first_matching_policy_decides() {
    let mut first = policy("first", vec![B], PolicyFallback::Unreachable);
    first.destination = Some(p("172.18.0.0/16"));
    let second = policy("second", vec![A], PolicyFallback::Table);
    let health = Health {
        carrier: vec![true, true],
        tracks: vec![true, false],
    };
    let t = table(two_defaults(), vec![first, second], &health);
    // B has no eligible route: the first policy's strict fallback wins over the second policy.
    assert_eq!(t.lookup(&flow_to(FAR)), Decision::Unreachable);
    assert_eq!(
        t.lookup(&flow_to(ip("8.8.8.8"))),
        Decision::Uplink {
            uplink: A,
            next_hop: NH_A,
            route: RouteRef::Policy {
                policy: 1,
                route: Some(0)
            }
        }
    );
}

#[test]
fn policy_needs_a_route_covering_dst() {
    // B only reaches 10/8: a policy to B for another destination falls back.
    let routes = vec![
        route("a", "0.0.0.0/0", A, 10, None),
        route("b-ten", "10.0.0.0/8", B, 10, None),
    ];
    let t = table(
        routes,
        vec![policy("b", vec![B], PolicyFallback::Table)],
        &healthy(0),
    );
    assert_eq!(uplink_of(t.lookup(&flow_to(FAR))), Some(A));
    assert_eq!(uplink_of(t.lookup(&flow_to(ip("10.9.9.9")))), Some(B));
}

#[test]
fn connected_prefixes_and_own_addresses() {
    let strict_b = policy("all-b", vec![B], PolicyFallback::Unreachable);
    let t = table(two_defaults(), vec![strict_b], &healthy(2));
    for own in ["192.168.0.1", "172.16.1.1", "172.17.3.1"] {
        assert_eq!(t.lookup(&flow_to(ip(own))), Decision::Local, "{own}");
    }
    assert_eq!(t.lookup(&flow_to(ip("192.168.0.77"))), Decision::Lan);
    // Connected destinations are not policy-routed: PE_A is reached directly on A.
    assert_eq!(
        t.lookup(&flow_to(NH_A)),
        Decision::Uplink {
            uplink: A,
            next_hop: NH_A,
            route: RouteRef::Connected
        }
    );
}

#[test]
fn connected_uplink_prefix_needs_carrier() {
    let health = Health {
        carrier: vec![false, true],
        tracks: vec![true, true],
    };
    let t = table(two_defaults(), vec![], &health);
    assert_eq!(uplink_of(t.lookup(&flow_to(NH_A))), Some(B));
    assert_eq!(t.lookup(&flow_to(ip("172.16.1.1"))), Decision::Local);
}

#[test]
fn uplink_without_address_has_no_connected_prefix() {
    let mut ifs = ifaces();
    ifs.uplinks[1].address = p("0.0.0.0/32");
    let t = RouteTable::build(ifs, vec![], vec![], &healthy(0));
    assert!(!t.uplink_usable(B));
    assert!(t.uplink_usable(A));
    assert_eq!(t.lookup(&flow_to(ip("0.0.0.0"))), Decision::Unreachable);
}

/// The uplink of a route the tests built via an uplink.
fn route_uplink(r: &StaticRoute) -> UplinkId {
    match r.egress {
        Iface::Uplink(u) => u,
        Iface::Lan => panic!("route {} is via the LAN", r.name),
    }
}

/// SPEC 29: a default route to a router on the LAN (distance 200) takes over when every uplink
/// route is withdrawn, and counts for no uplink.
#[test]
fn route_via_a_lan_peer_backs_up_the_uplinks() {
    let peer = Ipv4Addr::new(192, 168, 0, 3);
    let mut routes = six_tier();
    routes.push(StaticRoute {
        name: "via-peer".into(),
        prefix: p("0.0.0.0/0"),
        egress: Iface::Lan,
        next_hop: peer,
        distance: 200,
        weight: 1,
        track: None,
    });
    let flow = FlowTuple {
        src: Ipv4Addr::new(192, 168, 0, 10),
        dst: Ipv4Addr::new(172, 18, 0, 6),
        proto: 6,
        src_port: 40000,
        dst_port: 80,
    };
    let t = table(routes.clone(), vec![], &healthy(4));
    assert!(matches!(t.lookup(&flow), Decision::Uplink { .. }));
    let no_carrier = Health {
        carrier: vec![false, false],
        tracks: vec![true; 4],
    };
    let t = table(routes.clone(), vec![], &no_carrier);
    assert_eq!(
        t.lookup(&flow),
        Decision::Peer {
            next_hop: peer,
            route: RouteRef::Static(routes.len() - 1),
        }
    );
    assert_eq!(t.gateway_of_last_resort(), Some((peer, Iface::Lan)));
    assert!(!t.uplink_installed(A) && !t.uplink_installed(B));
    assert!(
        t.render(&[]).contains("via 192.168.0.3, lan"),
        "{}",
        t.render(&[])
    );
}

#[test]
fn gateway_of_last_resort_follows_installed_default() {
    let t = table(six_tier(), vec![], &healthy(4));
    assert_eq!(t.gateway_of_last_resort(), Some((NH_A, Iface::Uplink(A))));
    let a_down = Health {
        carrier: vec![false, true],
        tracks: vec![true; 4],
    };
    let t = table(six_tier(), vec![], &a_down);
    assert_eq!(t.gateway_of_last_resort(), Some((NH_B, Iface::Uplink(B))));
    let t = table(
        vec![route("ten", "10.0.0.0/8", A, 1, None)],
        vec![],
        &healthy(0),
    );
    assert_eq!(t.gateway_of_last_resort(), None);
}

#[test]
fn render_six_tiers() {
    let health = Health {
        carrier: vec![true, false],
        tracks: vec![true, true, false, true],
    };
    let t = table(six_tier(), vec![], &health);
    let expected = "\
Codes: C - connected, L - local, S - static, * - candidate default

Gateway of last resort is 172.16.1.2 to network 0.0.0.0

S*    0.0.0.0/0 [10/0] via 172.16.1.2, isp-a (a-e2e-tier, track a-e2e up)
C     172.16.1.0/30 is directly connected, isp-a
L     172.16.1.1/32 is directly connected, isp-a
L     172.17.3.1/32 is directly connected, isp-b
C     192.168.0.0/24 is directly connected, lan
L     192.168.0.1/32 is directly connected, lan

Not installed:
  no carrier  0.0.0.0/0 [11/0] via 172.17.3.2, isp-b (b-e2e-tier, track b-e2e up)
  track down  0.0.0.0/0 [250/0] via 172.16.1.2, isp-a (a-nh-tier, track a-nh down)
  no carrier  0.0.0.0/0 [251/0] via 172.17.3.2, isp-b (b-nh-tier, track b-nh up)
  backup      0.0.0.0/0 [252/0] via 172.16.1.2, isp-a (a-static-tier)
  no carrier  0.0.0.0/0 [253/0] via 172.17.3.2, isp-b (b-static-tier)
  no carrier  172.17.3.0/30 is directly connected, isp-b
";
    assert_eq!(t.render(&track_names()), expected);
}

#[test]
fn render_load_sharing_and_policies() {
    let mut a = route("lb-a", "10.0.0.0/8", A, 5, None);
    let mut b = route("lb-b", "10.0.0.0/8", B, 5, Some(0));
    a.weight = 1;
    b.weight = 3;
    let mut voip = policy("voip", vec![B, A], PolicyFallback::Table);
    voip.source = Some(p("192.168.0.50/32"));
    voip.protocol = Some(17);
    voip.ports = Some((5060, 5061));
    let t = table(vec![a, b], vec![voip], &healthy(1));
    let expected = "\
Codes: C - connected, L - local, S - static, * - candidate default

Gateway of last resort is not set

S     10.0.0.0/8 [5/0] via 172.16.1.2, isp-a (lb-a, weight 1)
                 [5/0] via 172.17.3.2, isp-b (lb-b, weight 3, track 0 up)
C     172.16.1.0/30 is directly connected, isp-a
L     172.16.1.1/32 is directly connected, isp-a
C     172.17.3.0/30 is directly connected, isp-b
L     172.17.3.1/32 is directly connected, isp-b
C     192.168.0.0/24 is directly connected, lan
L     192.168.0.1/32 is directly connected, lan

Policies (checked in order before the table):
  1 voip: from 192.168.0.50/32 proto 17 ports 5060-5061 -> isp-b, isp-a; else table
";
    assert_eq!(t.render(&[]), expected);
}

#[test]
fn entries_show_state_and_reason() {
    let health = Health {
        carrier: vec![true, true],
        tracks: vec![false, true, true, true],
    };
    let t = table(six_tier(), vec![], &health);
    let entries = t.entries();
    assert_eq!(entries.len(), 3 + 6);
    let b = &entries[4];
    assert_eq!(
        (b.name.as_str(), b.installed, b.eligible, b.reason),
        ("b-e2e-tier", true, true, "installed")
    );
    let a = &entries[3];
    assert_eq!(
        (a.installed, a.eligible, a.reason),
        (false, false, "track down")
    );
    assert_eq!(entries[5].reason, "backup");
    let json = serde_json::to_value(&entries[3]).unwrap();
    assert_eq!(json["prefix"], "0.0.0.0/0");
    assert_eq!(json["next_hop"], "172.16.1.2");
    assert_eq!(json["uplink"], "isp-a");
    assert_eq!(json["track"], 0);
    assert_eq!(entries[0].kind, "connected");
    assert_eq!(entries[0].uplink, "lan");
}

#[test]
fn diff_reports_changed_prefixes() {
    let names = six_tier();
    let healthy_t = table(names.clone(), vec![], &healthy(4));
    let a_dead = Health {
        carrier: vec![false, true],
        tracks: vec![true; 4],
    };
    let failed = table(names.clone(), vec![], &a_dead);
    assert_eq!(
        RouteTable::diff(&healthy_t, &failed),
        vec![
            "route 0.0.0.0/0 via isp-a [10] withdrawn; now via isp-b [11]".to_string(),
            "route 172.16.1.0/30 via isp-a (connected) withdrawn".to_string(),
        ]
    );
    assert_eq!(
        RouteTable::diff(&failed, &healthy_t),
        vec![
            "route 0.0.0.0/0 via isp-b [11] preempted; now via isp-a [10]".to_string(),
            "route 172.16.1.0/30 installed via isp-a (connected)".to_string(),
        ]
    );
    assert!(RouteTable::diff(&healthy_t, &healthy_t).is_empty());
    let shared = weighted_table(1, 1);
    let single = table(
        vec![route("lb-a", "0.0.0.0/0", A, 10, None)],
        vec![],
        &healthy(0),
    );
    assert_eq!(
        RouteTable::diff(&shared, &single),
        vec!["route 0.0.0.0/0 via isp-a [10], isp-b [10] changed; now via isp-a [10]".to_string()]
    );
}

#[test]
fn table_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<RouteTable>();
}

fn arb_prefix() -> impl Strategy<Value = Ipv4Prefix> {
    prop_oneof![
        Just(p("0.0.0.0/0")),
        Just(p("10.0.0.0/8")),
        Just(p("172.18.0.0/16")),
        Just(p("172.16.1.0/30")),
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| Ipv4Prefix::new(Ipv4Addr::from(a), l).unwrap().network()),
    ]
}

fn arb_dst() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        any::<u32>().prop_map(Ipv4Addr::from),
        (0u32..256).prop_map(|x| Ipv4Addr::from(0x0a00_0000 | x)),
        Just(FAR),
        Just(NH_A),
        Just(ip("192.168.0.20")),
    ]
}

fn arb_route() -> impl Strategy<Value = StaticRoute> {
    (
        arb_prefix(),
        0u8..3,
        any::<u8>(),
        0u8..4,
        proptest::option::of(0usize..5),
    )
        .prop_map(|(prefix, uplink, distance, weight, track)| StaticRoute {
            name: "r".into(),
            prefix,
            egress: Iface::Uplink(UplinkId(uplink)),
            next_hop: Ipv4Addr::from(0x0101_0101 * u32::from(uplink + 1)),
            distance,
            weight,
            track,
        })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        proptest::option::of(arb_prefix()),
        proptest::collection::vec((0u8..3).prop_map(UplinkId), 0..3),
        any::<bool>(),
    )
        .prop_map(|(destination, uplinks, strict)| Policy {
            destination,
            ..policy(
                "p",
                uplinks,
                if strict {
                    PolicyFallback::Unreachable
                } else {
                    PolicyFallback::Table
                },
            )
        })
}

fn arb_health() -> impl Strategy<Value = Health> {
    (
        proptest::collection::vec(any::<bool>(), 3),
        proptest::collection::vec(any::<bool>(), 4),
    )
        .prop_map(|(carrier, tracks)| Health { carrier, tracks })
}

fn three_uplinks() -> Interfaces {
    let mut ifs = ifaces();
    ifs.uplinks.push(UplinkIf {
        name: "isp-c".into(),
        address: p("100.64.0.1/29"),
        next_hop: ip("100.64.0.2"),
    });
    ifs
}

fn eligible(r: &StaticRoute, h: &Health) -> bool {
    h.carrier
        .get(usize::from(route_uplink(r).0))
        .copied()
        .unwrap_or(false)
        && r.track
            .is_none_or(|t| h.tracks.get(t).copied().unwrap_or(false))
}

proptest! {
    #[test]
    fn never_routes_over_a_dead_uplink_or_track(
        routes in proptest::collection::vec(arb_route(), 0..10),
        policies in proptest::collection::vec(arb_policy(), 0..3),
        health in arb_health(),
        dsts in proptest::collection::vec(arb_dst(), 1..20),
        sport in any::<u16>(),
    ) {
        let t = RouteTable::build(three_uplinks(), routes.clone(), policies, &health);
        for dst in dsts {
            let f = FlowTuple { src: ip("192.168.0.10"), dst, proto: 6, src_port: sport, dst_port: 443 };
            if let Decision::Uplink { uplink, route, .. } = t.lookup(&f) {
                prop_assert!(health.carrier[usize::from(uplink.0)]);
                let used = match route {
                    RouteRef::Static(i) | RouteRef::Policy { route: Some(i), .. } => Some(i),
                    RouteRef::Connected | RouteRef::Policy { route: None, .. } => None,
                };
                if let Some(i) = used {
                    let r = &routes[i];
                    prop_assert_eq!(r.egress, Iface::Uplink(uplink));
                    prop_assert!(eligible(r, &health));
                    prop_assert!(r.prefix.contains(dst));
                }
            }
        }
    }

    #[test]
    fn an_eligible_default_always_routes(
        routes in proptest::collection::vec(arb_route(), 0..10),
        policies in proptest::collection::vec(arb_policy(), 0..3),
        health in arb_health(),
        dst in arb_dst(),
    ) {
        let policies: Vec<Policy> = policies
            .into_iter()
            .map(|p| Policy { fallback: PolicyFallback::Table, ..p })
            .collect();
        let t = RouteTable::build(three_uplinks(), routes.clone(), policies, &health);
        let has_default = routes.iter().any(|r| r.prefix.prefix_len() == 0 && eligible(r, &health));
        if has_default {
            prop_assert_ne!(t.lookup(&flow_to(dst)), Decision::Unreachable);
        }
    }

    /// Without policies the decision is the textbook one: the longest prefix with an eligible
    /// route (connected ones count as distance 0), then the lowest distance.
    #[test]
    fn lookup_matches_brute_force_lpm(
        routes in proptest::collection::vec(arb_route(), 0..10),
        health in arb_health(),
        dst in arb_dst(),
    ) {
        let ifs = three_uplinks();
        let t = RouteTable::build(ifs.clone(), routes.clone(), vec![], &health);
        let d = t.lookup(&flow_to(dst));
        let is_local = dst == ifs.lan.addr() || ifs.uplinks.iter().any(|u| u.address.addr() == dst);
        let connected_len = std::iter::once((ifs.lan, true))
            .chain(ifs.uplinks.iter().enumerate().map(|(i, u)| (u.address, health.carrier[i])))
            .filter(|(pfx, up)| *up && pfx.contains(dst))
            .map(|(pfx, _)| pfx.prefix_len())
            .max();
        let static_best = routes
            .iter()
            .filter(|r| eligible(r, &health) && r.prefix.contains(dst))
            .map(|r| (r.prefix.prefix_len(), std::cmp::Reverse(r.distance)))
            .max();
        match d {
            Decision::Local => prop_assert!(is_local),
            Decision::Lan | Decision::Uplink { route: RouteRef::Connected, .. } => {
                prop_assert!(connected_len.is_some());
                prop_assert!(static_best.is_none_or(|(len, _)| Some(len) <= connected_len));
            }
            Decision::Uplink { route: RouteRef::Static(i), .. } => {
                let r = &routes[i];
                prop_assert_eq!(Some((r.prefix.prefix_len(), std::cmp::Reverse(r.distance))), static_best);
                prop_assert!(connected_len.is_none_or(|len| len < r.prefix.prefix_len()));
            }
            Decision::Uplink { route: RouteRef::Policy { .. }, .. } => prop_assert!(false, "no policies"),
            Decision::Peer { .. } => prop_assert!(false, "no routes via the LAN"),
            Decision::Unreachable => {
                prop_assert!(!is_local && connected_len.is_none() && static_best.is_none());
            }
        }
    }
}
