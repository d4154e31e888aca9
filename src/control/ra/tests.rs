use super::*;
use crate::wire::ethernet::{EthernetFrame, ethertype};
use crate::wire::frame::ETH_OFFSET;
use proptest::prelude::*;

const LAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
const HOST_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const A: UplinkId = UplinkId(0);
const B: UplinkId = UplinkId(1);
const DNS: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn secs(s: u64) -> Instant {
    Instant::from_millis(s * 1000)
}

/// The lab's LAN: the first /64 of ISP A's 2001:db8:a::/48 and of ISP B's 2001:db8:b::/48.
fn config() -> RaConfig {
    RaConfig {
        lan_mac: LAN_MAC,
        prefixes: vec![
            LanPrefix {
                uplink: Some(A),
                prefix: "2001:db8:a::/64".parse().unwrap(),
            },
            LanPrefix {
                uplink: Some(B),
                prefix: "2001:db8:b::/64".parse().unwrap(),
            },
        ],
        dns: vec![DNS],
        params: RaParams::default(),
    }
}

/// An engine started at t(0), nothing up yet.
fn started(seed: u64) -> RaEngine {
    let mut e = RaEngine::new(config(), seed, t(0));
    e.start(t(0));
    e
}

/// An engine with both uplinks up whose start-up RAs have all been sent by `at`.
fn steady(seed: u64) -> (RaEngine, Instant) {
    let mut e = started(seed);
    e.set_uplink(A, true, t(0));
    e.set_uplink(B, true, t(0));
    let mut now = t(0);
    for _ in 0..3 {
        now = e.poll_timeout().unwrap();
        e.handle_timeout(now);
    }
    drain(&mut e);
    (e, now)
}

/// What one sent RA says, as a host reads it.
#[derive(Debug, PartialEq)]
struct Seen {
    router_lifetime: u16,
    /// (prefix, valid, preferred) for each prefix option.
    prefixes: Vec<(String, u32, u32)>,
    dns: Vec<Ipv6Addr>,
}

fn drain(e: &mut RaEngine) -> Vec<Seen> {
    std::iter::from_fn(|| e.poll_transmit())
        .map(|tx| {
            assert_eq!(tx.iface, Iface::Lan);
            let eth = EthernetFrame::new_checked(&tx.frame[ETH_OFFSET..]).unwrap();
            assert_eq!(
                (eth.ethertype(), eth.src(), eth.dst()),
                (ethertype::IPV6, LAN_MAC, MacAddr([0x33, 0x33, 0, 0, 0, 1]))
            );
            let ip = Ipv6Packet::new_checked(&tx.frame[IP_OFFSET..]).unwrap();
            let nd = NdPacket::parse(&ip).expect("a valid RA");
            assert_eq!(
                (nd.src, nd.dst),
                (ndisc::link_local(LAN_MAC), ndisc::ALL_NODES)
            );
            assert_eq!(nd.link_addr(), Some(LAN_MAC));
            let Message::RouterAdvert(ra) = nd.message else {
                panic!("not an RA: {:?}", nd.message)
            };
            let mut seen = Seen {
                router_lifetime: ra.router_lifetime,
                prefixes: Vec::new(),
                dns: Vec::new(),
            };
            for o in nd.options() {
                match o {
                    NdOption::PrefixInfo(p) => {
                        assert!(p.on_link && p.autonomous && p.prefix_len == 64);
                        seen.prefixes.push((
                            p.prefix.to_string(),
                            p.valid_lifetime,
                            p.preferred_lifetime,
                        ));
                    }
                    NdOption::Rdnss(r) => {
                        assert_eq!(r.lifetime, 1800, "3 × MaxRtrAdvInterval");
                        seen.dns.extend(r.servers());
                    }
                    _ => {}
                }
            }
            seen
        })
        .collect()
}

fn seen(router_lifetime: u16, a_preferred: u32, b_preferred: u32) -> Seen {
    Seen {
        router_lifetime,
        prefixes: vec![
            ("2001:db8:a::".into(), 5400, a_preferred),
            ("2001:db8:b::".into(), 5400, b_preferred),
        ],
        dns: vec![DNS],
    }
}

/// Runs the engine until `end` and returns when each RA went out and what it said.
fn run_until(e: &mut RaEngine, end: Instant) -> Vec<(Instant, Seen)> {
    let mut out = Vec::new();
    while let Some(at) = e.poll_timeout().filter(|&at| at <= end) {
        e.handle_timeout(at);
        out.extend(drain(e).into_iter().map(|s| (at, s)));
    }
    out
}

#[test]
fn advertises_both_prefixes_rdnss_and_the_router() {
    let (mut e, now) = steady(1);
    let sent = run_until(&mut e, now + Duration::from_secs(600));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, seen(1800, 2700, 2700));
}

#[test]
fn startup_sends_three_fast_adverts_then_slow_ones() {
    for seed in 0..20 {
        let mut e = started(seed);
        let sent = run_until(&mut e, secs(3000));
        let at: Vec<_> = sent.iter().map(|(at, _)| *at).collect();
        assert_eq!(at[0], t(0), "the first RA at once");
        for (i, pair) in at.windows(2).enumerate() {
            let gap = pair[1] - pair[0];
            if i < 2 {
                assert!(
                    gap >= Duration::from_secs(3) && gap <= Duration::from_secs(16),
                    "{gap:?}"
                );
            } else {
                assert!(
                    gap >= Duration::from_secs(200) && gap <= Duration::from_secs(600),
                    "{gap:?}"
                );
            }
        }
        assert!(at.len() >= 7, "seed {seed}: {} RAs in 3000 s", at.len());
        // Nothing is up yet: not a default router, every prefix deprecated but valid.
        assert!(sent.iter().all(|(_, s)| *s == seen(0, 0, 0)));
    }
}

#[test]
fn jitter_comes_from_the_seed() {
    let schedule = |seed| {
        let (mut e, now) = steady(seed);
        run_until(&mut e, now + Duration::from_secs(5000))
            .into_iter()
            .map(|(at, _)| at)
            .collect::<Vec<_>>()
    };
    assert_eq!(schedule(7), schedule(7));
    assert_ne!(schedule(7), schedule(8));
}

#[test]
fn a_dead_uplink_deprecates_its_prefix_at_once_and_is_restored() {
    let (mut e, now) = steady(3);
    let fault = now + Duration::from_secs(100);
    e.set_uplink(A, false, fault);
    assert_eq!(e.poll_timeout(), Some(fault), "announced at once");
    let burst = run_until(&mut e, fault + Duration::from_secs(6));
    assert_eq!(
        burst,
        [
            (fault, seen(1800, 0, 2700)),
            (fault + Duration::from_secs(3), seen(1800, 0, 2700)),
            (fault + Duration::from_secs(6), seen(1800, 0, 2700)),
        ],
        "a burst of three, 3 s apart; A valid but not preferred (RFC 8475 §3)"
    );
    let next = e.poll_timeout().unwrap();
    assert!(
        next >= fault + Duration::from_secs(206),
        "back to the slow pace"
    );

    let back = fault + Duration::from_secs(60);
    e.set_uplink(A, true, back);
    assert_eq!(run_until(&mut e, back)[0], (back, seen(1800, 2700, 2700)));
    assert_eq!(run_until(&mut e, back + Duration::from_secs(6)).len(), 2);
    // A repeated state is no change: no burst.
    let next = e.poll_timeout();
    e.set_uplink(A, true, back + Duration::from_secs(10));
    assert_eq!(e.poll_timeout(), next);
}

#[test]
fn no_uplink_up_means_router_lifetime_zero() {
    let (mut e, now) = steady(4);
    e.set_uplink(A, false, now + Duration::from_secs(100));
    e.set_uplink(B, false, now + Duration::from_secs(101));
    let sent = run_until(&mut e, now + Duration::from_secs(110));
    assert_eq!(sent.last().unwrap().1, seen(0, 0, 0));
    e.set_uplink(B, true, now + Duration::from_secs(200));
    let sent = run_until(&mut e, now + Duration::from_secs(200));
    assert_eq!(sent[0].1, seen(1800, 0, 2700));
}

/// NPTv6 (SPEC 33): the one internal prefix stays preferred while any uplink is up.
#[test]
fn the_npt6_prefix_is_preferred_while_any_uplink_is_up() {
    let cfg = RaConfig {
        prefixes: vec![LanPrefix {
            uplink: None,
            prefix: "fd00:db8:1::/64".parse().unwrap(),
        }],
        ..config()
    };
    let mut e = RaEngine::new(cfg, 5, t(0));
    let preferred = |e: &RaEngine| e.advert().1[0].preferred_lifetime;
    assert_eq!(preferred(&e), 0);
    e.set_uplink(A, true, t(0));
    e.set_uplink(B, true, t(0));
    assert_eq!(preferred(&e), 2700);
    e.set_uplink(A, false, t(0));
    assert_eq!(preferred(&e), 2700, "B carries it");
    e.set_uplink(B, false, t(0));
    assert_eq!((preferred(&e), e.advert().0.router_lifetime), (0, 0));
}

#[test]
fn multicast_adverts_are_at_least_3_s_apart_even_on_flapping() {
    let (mut e, now) = steady(5);
    let mut at = now + Duration::from_secs(10);
    let mut times = Vec::new();
    for i in 0..11 {
        e.set_uplink(A, i % 2 == 1, at);
        times.extend(run_until(&mut e, at).into_iter().map(|(t, _)| t));
        at = at + Duration::from_millis(700);
    }
    times.extend(
        run_until(&mut e, at + Duration::from_secs(30))
            .into_iter()
            .map(|(t, _)| t),
    );
    assert!(times.len() >= 4, "{times:?}");
    assert!(
        times
            .windows(2)
            .all(|w| w[1] - w[0] >= Duration::from_secs(3)),
        "{times:?}"
    );
}

/// RFC 8106 §5.1 on the wire: type 25, length in 8-octet units (1 + 2 per server), two
/// reserved bytes, the lifetime, then the servers in the configured order.
#[test]
fn rdnss_option_bytes_list_every_router_lan_address() {
    let b = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 1);
    let mut e = RaEngine::new(
        RaConfig {
            dns: vec![DNS, b],
            ..config()
        },
        1,
        t(0),
    );
    e.start(t(0));
    e.handle_timeout(t(0));
    let tx = e.poll_transmit().unwrap();
    let icmp = &tx.frame[IP_OFFSET + 40..];
    // RA header (16), source link-layer (8), two prefix options (32 each).
    let opt = &icmp[16 + 8 + 64..];
    let mut want = vec![25, 5, 0, 0];
    want.extend(1800u32.to_be_bytes());
    want.extend(DNS.octets());
    want.extend(b.octets());
    assert_eq!(opt, &want[..]);
    // No servers: no option at all.
    let mut e = RaEngine::new(
        RaConfig {
            dns: Vec::new(),
            ..config()
        },
        1,
        t(0),
    );
    e.start(t(0));
    e.handle_timeout(t(0));
    let tx = e.poll_transmit().unwrap();
    assert_eq!(tx.frame.len(), IP_OFFSET + 40 + 16 + 8 + 64);
}

/// RFC 4861 §6.2.2: nothing goes out before `start` (the link-local address still in DAD,
/// the uplinks not measured), whatever the clock, the uplinks and the hosts do; then the first
/// RA goes out at once and already carries the uplinks' states.
#[test]
fn nothing_is_advertised_before_start_then_the_known_states_at_once() {
    let mut e = RaEngine::new(config(), 5, t(0));
    assert_eq!(e.poll_timeout(), None);
    e.set_uplink(A, true, t(100));
    let host = ndisc::link_local(HOST_MAC);
    assert!(e.handle_frame(&rs(host, Some(HOST_MAC), 255), t(200)));
    e.handle_timeout(t(900));
    assert_eq!(e.poll_timeout(), None);
    assert!(drain(&mut e).is_empty());
    e.start(t(1_000));
    let sent = run_until(&mut e, t(1_000));
    assert_eq!(sent, vec![(t(1_000), seen(1800, 2700, 0))]);
    // Start-up RAs follow (16 s apart at most), not a change burst.
    let next = e.poll_timeout().unwrap();
    assert!(next >= t(4_000) && next <= t(17_000), "{next:?}");
    e.start(t(2_000));
    assert_eq!(
        e.poll_timeout(),
        Some(next),
        "a second start changes nothing"
    );
}

fn rs(src: Ipv6Addr, lladdr: Option<MacAddr>, hop_limit: u8) -> Vec<u8> {
    let options: Vec<_> = lladdr.map(NdOption::SourceLinkAddr).into_iter().collect();
    let repr = NdRepr {
        src,
        dst: ndisc::ALL_ROUTERS,
        message: Message::RouterSolicit,
        options: &options,
    };
    let mut frame = Transmit::ipv6(
        Iface::Lan,
        HOST_MAC,
        MacAddr([0x33, 0x33, 0, 0, 0, 2]),
        100,
        |b| ndisc::build(b, &repr).ok(),
    )
    .unwrap()
    .frame;
    frame[IP_OFFSET + 7] = hop_limit;
    frame
}

#[test]
fn solicitations_are_answered_within_500_ms() {
    let host = ndisc::link_local(HOST_MAC);
    for seed in 0..20 {
        let (mut e, now) = steady(seed);
        let asked = now + Duration::from_secs(60);
        assert!(e.handle_frame(&rs(host, Some(HOST_MAC), 255), asked));
        let answer = e.poll_timeout().unwrap();
        assert!(
            answer >= asked && answer <= asked + Duration::from_millis(500),
            "{answer:?}"
        );
        assert_eq!(run_until(&mut e, answer).len(), 1);
    }
}

#[test]
fn a_solicitation_right_after_an_advert_waits_3_s() {
    let (mut e, now) = steady(6);
    let asked = now + Duration::from_millis(100);
    assert!(e.handle_frame(&rs(Ipv6Addr::UNSPECIFIED, None, 255), asked));
    assert_eq!(e.poll_timeout(), Some(now + Duration::from_secs(3)));
}

#[test]
fn invalid_solicitations_are_ignored() {
    let (mut e, now) = steady(7);
    let next = e.poll_timeout();
    let asked = now + Duration::from_secs(60);
    let host = ndisc::link_local(HOST_MAC);
    assert!(
        !e.handle_frame(&rs(host, Some(HOST_MAC), 64), asked),
        "hop limit"
    );
    assert!(
        !e.handle_frame(&rs(Ipv6Addr::UNSPECIFIED, Some(HOST_MAC), 255), asked),
        "unspecified source with a link-layer option (RFC 4861 §6.1.1)"
    );
    assert!(!e.handle_frame(&[0u8; 20], asked));
    assert_eq!(e.poll_timeout(), next);
}

proptest! {
    /// Whatever the uplinks do and the hosts ask, multicast RAs stay 3 s apart, every RA says
    /// what the uplink states say at that moment, and the engine never stops advertising.
    #[test]
    fn lifetimes_follow_health(
        seed in any::<u64>(),
        steps in proptest::collection::vec((0u64..20_000, 0u8..3, any::<bool>()), 1..30),
    ) {
        let mut e = started(seed);
        let mut up = [false, false];
        let mut now = t(0);
        let mut last: Option<Instant> = None;
        for (dt, what, state) in steps {
            let end = now + Duration::from_millis(dt);
            for (at, s) in run_until(&mut e, end) {
                prop_assert!(last.is_none_or(|l| at - l >= Duration::from_secs(3)));
                last = Some(at);
                let expect = seen(
                    if up[0] || up[1] { 1800 } else { 0 },
                    if up[0] { 2700 } else { 0 },
                    if up[1] { 2700 } else { 0 },
                );
                prop_assert_eq!(s, expect);
            }
            now = end;
            match what {
                0 | 1 => {
                    up[usize::from(what)] = state;
                    e.set_uplink(UplinkId(what), state, now);
                }
                _ => {
                    e.handle_frame(&rs(ndisc::link_local(HOST_MAC), Some(HOST_MAC), 255), now);
                }
            }
            prop_assert!(e.poll_timeout().unwrap() <= now + Duration::from_secs(600));
        }
    }
}

#[test]
fn a_renumbered_prefix_is_withdrawn_with_lifetimes_zero() {
    let (mut e, start) = steady(3);
    let now = start + Duration::from_secs(100);
    let new: Ipv6Prefix = "2001:db8:bb::/64".parse().unwrap();
    e.set_prefix(B, Some(new), now);
    assert_eq!(e.poll_timeout(), Some(now), "announced at once");
    let sent = run_until(&mut e, now + Duration::from_secs(6));
    assert_eq!(sent.len(), 3, "a burst 3 s apart: {sent:?}");
    for (_, s) in &sent {
        assert_eq!(
            s.prefixes,
            vec![
                ("2001:db8:a::".into(), 5400, 2700),
                ("2001:db8:bb::".into(), 5400, 2700),
                ("2001:db8:b::".into(), 0, 0),
            ]
        );
    }
    assert_eq!(
        e.withdrawn().collect::<Vec<_>>(),
        vec![LanPrefix {
            uplink: Some(B),
            prefix: "2001:db8:b::/64".parse().unwrap()
        }]
    );
    // Setting the same prefix again changes nothing; the withdrawn one goes after its valid
    // lifetime.
    e.set_prefix(B, Some(new), now);
    let later = run_until(&mut e, now + Duration::from_secs(5400 + 700));
    let (_, last) = later.last().unwrap();
    assert_eq!(last.prefixes.len(), 2, "{last:?}");
    assert_eq!(e.withdrawn().count(), 0);
}

#[test]
fn a_lost_delegation_leaves_only_the_withdrawal() {
    let (mut e, start) = steady(4);
    let now = start + Duration::from_secs(100);
    e.set_prefix(B, None, now);
    let sent = run_until(&mut e, now);
    assert_eq!(
        sent[0].1.prefixes,
        vec![
            ("2001:db8:a::".into(), 5400, 2700),
            ("2001:db8:b::".into(), 0, 0),
        ]
    );
    // The delegation comes back: advertised again, no longer withdrawn.
    e.set_prefix(B, Some("2001:db8:b::/64".parse().unwrap()), now);
    assert_eq!(e.withdrawn().count(), 0);
}
