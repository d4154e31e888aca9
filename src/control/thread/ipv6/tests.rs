//! The IPv6 plane on a simulated clock: DAD before the first RA (RFC 4861 §6.2.2), the RA's
//! start waiting for measured health, RDNSS naming the router's LAN addresses, and echo on
//! those addresses once DAD has passed.

use super::*;
use crate::config::{PdConfig, ProviderPrefix, Uplink6Config};
use crate::control::fixtures::{A_MAC, B_MAC, HOST_MAC, LAN_MAC, frame, t};
use crate::wire::ethernet::ethertype;
use crate::wire::ndisc::{Message, NdOption, NdPacket};

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The lab's IPv6: subnet 0 of ISP A's and ISP B's /48 on the LAN.
fn config() -> Ipv6Config {
    let uplink = |p: &str, lan: &str, addr: &str, nh: &str| {
        Some(Uplink6Config {
            provider: Some(ProviderPrefix {
                prefix: p.parse().unwrap(),
                lan_prefix: lan.parse().unwrap(),
            }),
            pd: None,
            address: Some(addr.parse().unwrap()),
            next_hop: a6(nh),
        })
    };
    Ipv6Config {
        uplinks: vec![
            uplink(
                "2001:db8:a::/48",
                "2001:db8:a::/64",
                "2001:db8:ffa::1/64",
                "2001:db8:ffa::2",
            ),
            uplink(
                "2001:db8:b::/48",
                "2001:db8:b::/64",
                "2001:db8:ffb::1/64",
                "2001:db8:ffb::2",
            ),
        ],
        npt6_prefix: None,
    }
}

fn plane(dns: bool) -> Ipv6Plane {
    Ipv6Plane::new(
        &config(),
        dns,
        NeighParams::default(),
        LAN_MAC,
        &[A_MAC, B_MAC],
        t(0),
    )
}

/// What went out on the LAN up to `end`, driving the plane at each time it asks for: (when,
/// ICMPv6 type, target or RDNSS servers).
#[derive(Debug, PartialEq)]
enum Sent {
    /// A DAD probe (from ::) for this target.
    Dad(Ipv6Addr),
    /// An RA: router lifetime, the preferred lifetimes of A's and B's prefixes, its servers.
    Ra(u16, Vec<u32>, Vec<Ipv6Addr>),
}

fn run(p: &mut Ipv6Plane, from: Instant, end: Instant) -> Vec<(Instant, Sent)> {
    let mut out = Vec::new();
    let mut now = from;
    loop {
        p.handle_timeout(now);
        while let Some(tx) = p.poll_transmit() {
            if tx.iface != Iface::Lan {
                continue;
            }
            let ip = Ipv6Packet::new_checked(&tx.frame[IP_OFFSET..]).unwrap();
            let nd = NdPacket::parse(&ip).unwrap();
            match nd.message {
                Message::NeighborSolicit { target } if nd.src.is_unspecified() => {
                    out.push((now, Sent::Dad(target)))
                }
                Message::RouterAdvert(ra) => {
                    let mut preferred = Vec::new();
                    let mut dns = Vec::new();
                    for o in nd.options() {
                        match o {
                            NdOption::PrefixInfo(p) => preferred.push(p.preferred_lifetime),
                            NdOption::Rdnss(r) => dns.extend(r.servers()),
                            _ => {}
                        }
                    }
                    out.push((now, Sent::Ra(ra.router_lifetime, preferred, dns)));
                }
                _ => {}
            }
        }
        match p.poll_timeout() {
            Some(next) if next <= end => now = next.max(now),
            _ => return out,
        }
    }
}

fn ras(sent: &[(Instant, Sent)]) -> Vec<(Instant, &Sent)> {
    sent.iter()
        .filter(|(_, s)| matches!(s, Sent::Ra(..)))
        .map(|(at, s)| (*at, s))
        .collect()
}

#[test]
fn the_first_ra_waits_for_the_link_local_dad_and_lists_the_lan_addresses_as_dns() {
    let mut p = plane(true);
    // Health is known at once (as when the first probes answered before DAD ended).
    p.set_health(&[true, false], true, t(0));
    let sent = run(&mut p, t(0), t(3_500));
    let ll = ndisc::link_local(LAN_MAC);
    let dad = sent
        .iter()
        .find(|(_, s)| *s == Sent::Dad(ll))
        .expect("DAD for the LAN link-local address");
    assert_eq!(dad.0, t(0));
    for a in ["2001:db8:a::1", "2001:db8:b::1"] {
        assert!(sent.contains(&(t(0), Sent::Dad(a6(a)))), "DAD for {a}");
    }
    let r = ras(&sent);
    // RFC 4862 §5.4: one probe, RetransTimer (1 s) without an answer: usable then, not before.
    assert_eq!(r[0].0, t(1_000), "{sent:?}");
    assert_eq!(
        r[0].1,
        &Sent::Ra(
            1800,
            vec![2700, 0],
            vec![a6("2001:db8:a::1"), a6("2001:db8:b::1")]
        )
    );
}

/// NPTv6 (SPEC 33): the RAs carry the internal prefix alone, preferred while either uplink is
/// up, and the router's one LAN address is its ::1 (DAD'd, the DNS server).
#[test]
fn with_npt6_the_lan_sees_only_the_internal_prefix() {
    let cfg = Ipv6Config {
        npt6_prefix: Some("fd00:db8:1::/64".parse().unwrap()),
        ..config()
    };
    let mut p = Ipv6Plane::new(
        &cfg,
        true,
        NeighParams::default(),
        LAN_MAC,
        &[A_MAC, B_MAC],
        t(0),
    );
    p.set_health(&[false, true], true, t(0));
    let sent = run(&mut p, t(0), t(1_000));
    let ula_router = a6("fd00:db8:1::1");
    assert!(sent.contains(&(t(0), Sent::Dad(ula_router))), "{sent:?}");
    assert!(!sent.contains(&(t(0), Sent::Dad(a6("2001:db8:a::1")))));
    assert_eq!(
        ras(&sent)[0].1,
        &Sent::Ra(1800, vec![2700], vec![ula_router])
    );
}

#[test]
fn no_rdnss_without_the_dns_forwarder() {
    let mut p = plane(false);
    p.set_health(&[true, true], true, t(0));
    let sent = run(&mut p, t(0), t(1_000));
    assert_eq!(ras(&sent)[0].1, &Sent::Ra(1800, vec![2700, 2700], vec![]));
}

#[test]
fn the_first_ra_waits_for_measured_health_at_most_max_start_wait() {
    // Measured at 4 s: the first RA then, with what was measured.
    let mut p = plane(true);
    let mut sent = run(&mut p, t(0), t(4_000));
    assert!(ras(&sent).is_empty(), "{sent:?}");
    p.set_health(&[false, true], true, t(4_000));
    sent = run(&mut p, t(4_000), t(4_000));
    let r = ras(&sent);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, t(4_000));
    assert!(matches!(r[0].1, Sent::Ra(1800, pref, _) if *pref == vec![0, 2700]));

    // Never measured (a probe that neither answers nor times out): at MAX_START_WAIT anyway.
    let mut p = plane(true);
    let sent = run(&mut p, t(0), t(20_000));
    let r = ras(&sent);
    assert_eq!(r[0].0, t(0) + MAX_START_WAIT);
    assert!(matches!(r[0].1, Sent::Ra(0, pref, _) if *pref == vec![0, 0]));
}

/// An echo request from the LAN host to `dst`.
fn ping(dst: Ipv6Addr) -> Vec<u8> {
    let src = a6("2001:db8:a::10");
    let mut p = vec![0u8; 40 + 8 + 4];
    let echo = EchoRepr {
        msg_type: types::ECHO_REQUEST,
        ident: 7,
        seq: 1,
    };
    let n = icmpv6::build_echo(&mut p, &wire6::OwnHeader::new(src, dst), &echo, b"ping").unwrap();
    p.truncate(n);
    frame(LAN_MAC, HOST_MAC, ethertype::IPV6, &p)
}

#[test]
fn the_lan_addresses_answer_echo_once_dad_has_passed() {
    let mut p = plane(true);
    let router = a6("2001:db8:b::1");
    run(&mut p, t(0), t(500));
    assert_eq!(
        p.handle_frame(Iface::Lan, &ping(router), t(500)),
        Err(DropReason::LocalUnhandled),
        "tentative: not answered"
    );
    assert!(!p.is_usable(Iface::Lan, router));
    run(&mut p, t(500), t(1_000));
    assert!(p.is_usable(Iface::Lan, router));
    assert_eq!(p.handle_frame(Iface::Lan, &ping(router), t(1_000)), Ok(()));
}

#[test]
fn a_delegation_moves_the_routers_lan_address_and_the_rdnss() {
    // B's prefix is delegated: nothing of it at start.
    let mut cfg = config();
    let b = cfg.uplinks[1].as_mut().unwrap();
    b.provider = None;
    b.pd = Some(PdConfig { subnet_id: 0 });
    let mut p = Ipv6Plane::new(
        &cfg,
        true,
        NeighParams::default(),
        LAN_MAC,
        &[A_MAC, B_MAC],
        t(0),
    );
    p.set_health(&[true, true], true, t(0));
    let sent = run(&mut p, t(0), t(1_000));
    assert!(
        !sent.contains(&(t(0), Sent::Dad(a6("2001:db8:b::1")))),
        "{sent:?}"
    );
    assert_eq!(
        ras(&sent)[0].1,
        &Sent::Ra(1800, vec![2700], vec![a6("2001:db8:a::1")])
    );
    let delegated = |lan: &str| ProviderPrefix {
        prefix: "2001:db8:b::/48".parse().unwrap(),
        lan_prefix: lan.parse().unwrap(),
    };
    // Delegated: DAD for its ::1, announced at once, named as DNS server.
    p.set_lan_prefix(UplinkId(1), Some(delegated("2001:db8:b::/64")), t(10_000));
    let sent = run(&mut p, t(10_000), t(10_000));
    assert!(
        sent.contains(&(t(10_000), Sent::Dad(a6("2001:db8:b::1")))),
        "{sent:?}"
    );
    assert_eq!(
        ras(&sent)[0].1,
        &Sent::Ra(
            1800,
            vec![2700, 2700],
            vec![a6("2001:db8:a::1"), a6("2001:db8:b::1")]
        )
    );
    // Renumbered: the old address goes, the new one is checked, the old prefix withdrawn.
    p.set_lan_prefix(UplinkId(1), Some(delegated("2001:db8:b:1::/64")), t(20_000));
    let sent = run(&mut p, t(20_000), t(20_000));
    assert!(
        sent.contains(&(t(20_000), Sent::Dad(a6("2001:db8:b:1::1")))),
        "{sent:?}"
    );
    assert!(
        !p.lan_addresses()
            .iter()
            .any(|(a, _)| *a == a6("2001:db8:b::1"))
    );
    assert_eq!(
        ras(&sent)[0].1,
        &Sent::Ra(
            1800,
            vec![2700, 2700, 0],
            vec![a6("2001:db8:a::1"), a6("2001:db8:b:1::1")]
        )
    );
}
