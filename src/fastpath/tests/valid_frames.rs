//! Property tests over the structurally valid frames of `fastpath::valid_frames`.
//! `outcomes_keep_frames_valid` checks what each outcome must satisfy; `every_outcome_is_reached`
//! shows that the generator reaches all of them.

use std::collections::BTreeMap;

use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use super::*;
use crate::fastpath::valid_frames::{
    Case, Ends, FLOWS, Frag, HOST2, LAN_ROUTER, OUTSIDE_B, Transport, build, check, frame_valid,
    outcomes, seeded,
};
use crate::wire::vnet::gso;

fn addr() -> impl Strategy<Value = [u8; 4]> {
    prop_oneof![
        Just(HOST),
        Just(HOST2),
        Just(SERVER),
        Just(OUTSIDE),
        Just(OUTSIDE_B),
        Just(PE_A_IP),
        Just(LAN_ROUTER),
        any::<[u8; 4]>(),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![Just(80u16), Just(53), Just(40000), any::<u16>()]
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        3 => (any::<u8>(), any::<bool>()).prop_map(|(flags, mss)| Transport::Tcp {
            flags: flags & 0x3f,
            mss
        }),
        2 => Just(Transport::Udp),
        1 => Just(Transport::EchoRequest),
        1 => Just(Transport::EchoReply),
        2 => prop_oneof![Just((3u8, 3u8)), Just((3, 4)), Just((3, 1)), Just((11, 0))]
            .prop_map(|(msg_type, code)| Transport::Error { msg_type, code }),
        1 => Just(Transport::Other),
    ]
}

fn frag() -> impl Strategy<Value = Frag> {
    prop_oneof![
        6 => Just(Frag::Whole),
        1 => Just(Frag::First),
        1 => (any::<bool>(), 1..200u16).prop_map(|(seeded, offset)| Frag::Later { seeded, offset }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let ends = (addr(), port(), addr(), port()).prop_map(|(src, sport, dst, dport)| Ends {
        src,
        sport,
        dst,
        dport,
    });
    let ip = (
        prop_oneof![Just(1u8), Just(2), Just(64), any::<u8>()],
        any::<bool>(),
        frag(),
        any::<u16>(),
    );
    let payload = prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 1300..1480),
    ];
    let vnet = (
        any::<bool>(),
        prop_oneof![
            3 => Just((gso::NONE, 0u16)),
            1 => (Just(gso::TCPV4), 0..2000u16),
            1 => (Just(gso::UDP), 0..2000u16),
        ],
        proptest::bool::weighted(0.95),
    );
    (
        0..3u8,
        proptest::option::weighted(0.6, 0..FLOWS.len()),
        transport(),
        ends,
        ip,
        payload,
        vnet,
    )
        .prop_map(
            |(side, flow, transport, ends, (ttl, df, frag, ident), payload, vnet)| Case {
                side,
                flow,
                transport,
                ends,
                ttl,
                df,
                frag,
                ident,
                payload,
                partial: vnet.0,
                gso: vnet.1,
                our_mac: vnet.2,
            },
        )
}

fn run_case(c: &Case) -> Result<Vec<&'static str>, TestCaseError> {
    let s = seeded();
    let (ingress, before) = build(c, &s);
    let mut after = before.clone();
    let (verdict, scratch) = run(&s.world, &mut after, ingress);
    frame_valid(&before).map_err(TestCaseError::fail)?;
    check(&s, ingress, &before, &after, verdict, &scratch).map_err(TestCaseError::fail)?;
    Ok(outcomes(ingress, &before, &after, verdict))
}

proptest! {
    #[test]
    fn outcomes_keep_frames_valid(c in case()) {
        run_case(&c)?;
    }
}

#[test]
fn every_outcome_is_reached() {
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..2000 {
        let c = strategy.new_tree(&mut runner).unwrap().current();
        for o in run_case(&c).unwrap_or_else(|e| panic!("{c:?}: {e}")) {
            *seen.entry(o).or_default() += 1;
        }
    }
    // Shown with --nocapture: how the cases spread over the outcomes.
    println!("{seen:#?}");
    let all = [
        "forward to the LAN",
        "untranslated to the LAN",
        "forward to an uplink",
        "fragment",
        "TCP reset",
        "ICMP error",
        "punt",
        "needs neighbour",
        "drop",
        "source translated",
        "destination translated",
        "fragment translated",
        "ICMP error translated",
        "partial checksum kept",
        "MSS clamped",
    ];
    for o in all {
        assert!(
            seen.contains_key(o),
            "never reached: {o}; reached: {seen:?}"
        );
    }
    assert!(
        seen["drop"] * 10 < 2000 * 6,
        "most cases should get past the filters: {seen:?}"
    );
}
