use super::*;

/// The reference site, as shipped.
const SITE: &str = include_str!("../../../scripts/example.toml");

fn config(text: &str) -> Config {
    Config::parse(text, "test.toml").expect("valid test config")
}

#[test]
fn live_changes_need_no_restart() {
    let old = config(SITE);
    let new = config(
        &SITE
            .replace("distance = 10", "distance = 20")
            .replace("address = \"172.17.3.1/30\"", "address = \"172.17.3.3/29\""),
    );
    assert_eq!(restart_needed(&old, &new), None);
}

#[test]
fn sockets_interfaces_and_the_lan_need_a_restart() {
    let old = config(SITE);
    for (from, to, what) in [
        ("tap = \"mhr-lan\"", "tap = \"mhr-lan2\"", "LAN"),
        ("interface = \"wan-b\"", "interface = \"wan-c\"", "uplinks"),
        (
            "/run/mhrouter/mhrouter.sock",
            "/run/other.sock",
            "control_socket",
        ),
    ] {
        let why = restart_needed(&old, &config(&SITE.replace(from, to)))
            .unwrap_or_else(|| panic!("changing {from} needs a restart"));
        assert!(why.contains(what), "{why}");
    }
}

#[test]
fn addressing_pairs_each_uplink_with_its_nic_mac() {
    let cfg = config(SITE);
    let lan = MacAddr([2, 0, 0, 0, 0, 1]);
    let macs = [MacAddr([2, 0, 0, 0, 0, 0xa]), MacAddr([2, 0, 0, 0, 0, 0xb])];
    let a = addressing(&cfg, lan, &macs);
    assert_eq!(a.lan.mac, lan);
    assert_eq!(a.uplinks[1].mac, macs[1]);
    assert_eq!(a.uplinks[1].prefix.to_string(), "172.17.3.1/30");
    assert!(a.is_local("172.16.1.1".parse().unwrap()));
    assert!(!a.is_local("172.16.1.2".parse().unwrap()));
    let nh = next_hops(&cfg, &[true, false]);
    assert_eq!(
        nh.iter()
            .map(|n| (n.addr.to_string(), n.carrier))
            .collect::<Vec<_>>(),
        [
            ("172.16.1.2".to_string(), true),
            ("172.17.3.2".to_string(), false)
        ]
    );
}

fn lease(mtu: Option<u16>, routes: &[(&str, &str)]) -> client::Lease {
    client::Lease {
        address: "172.17.3.1/30".parse().unwrap(),
        router: Some("172.17.3.2".parse().unwrap()),
        dns_servers: Vec::new(),
        mtu,
        routes: routes
            .iter()
            .map(|(prefix, gw)| crate::config::ClientRoute {
                prefix: prefix.parse().unwrap(),
                next_hop: gw.parse().unwrap(),
            })
            .collect(),
        server: "172.17.3.2".parse().unwrap(),
        lease_time: std::time::Duration::from_secs(120),
        t1: std::time::Duration::from_secs(60),
        t2: std::time::Duration::from_secs(105),
        acquired: crate::clock::Instant::ZERO,
    }
}

#[test]
fn a_lease_brings_its_mtu_and_classless_routes() {
    let base = config(include_str!("../../../scripts/lab-dhcp-b.toml"));
    let b = base.uplinks.iter().position(|u| u.dhcp.is_some()).unwrap();
    let mut leases = vec![None; base.uplinks.len()];
    leases[b] = Some(lease(
        Some(1400),
        &[
            ("10.0.0.0/8", "172.17.3.2"),
            ("198.18.0.0/15", "192.0.2.1"),
            ("198.51.100.0/24", "0.0.0.0"),
        ],
    ));
    let cfg = with_leases(&base, &leases);
    let u = &cfg.uplinks[b];
    assert_eq!(u.mtu, Some(1400));
    assert_eq!(u.next_hop.to_string(), "172.17.3.2");
    let added: Vec<_> = cfg
        .routes
        .iter()
        .filter(|r| r.name.starts_with(&format!("dhcp:{}:", u.name)))
        .map(|r| (r.prefix.to_string(), r.next_hop.to_string(), r.distance))
        .collect();
    // Off-subnet and on-link gateways cannot be next hops.
    assert_eq!(
        added,
        [("10.0.0.0/8".to_string(), "172.17.3.2".to_string(), 254)]
    );

    // A configured MTU wins; a lease's absurd one is ignored; no lease, nothing added.
    let mut fixed = base.clone();
    fixed.uplinks[b].mtu = Some(1280);
    assert_eq!(with_leases(&fixed, &leases).uplinks[b].mtu, Some(1280));
    leases[b] = Some(lease(Some(68), &[]));
    assert_eq!(with_leases(&base, &leases).uplinks[b].mtu, None);
    let none = with_leases(&base, &vec![None; base.uplinks.len()]);
    assert_eq!(none.routes.len(), base.routes.len());
}

/// The lab's dual-stack site with ISP B's prefix delegated (scripts/lab-pd-b.toml).
const PD_SITE: &str = include_str!("../../../scripts/lab-pd-b.toml");

#[test]
fn a_delegation_becomes_the_provider_prefix_and_its_lan_64() {
    let base = config(PD_SITE);
    let b = |c: &Config| {
        c.ipv6.as_ref().unwrap().uplinks[1]
            .as_ref()
            .unwrap()
            .provider
    };
    assert_eq!(b(&base), None);
    let p6 = |s: &str| -> Ipv6Prefix { s.parse().unwrap() };
    let run = with_delegations(base.clone(), &[None, Some(p6("2001:db8:b::/48"))]);
    let got = b(&run).expect("delegated");
    assert_eq!(
        (got.prefix, got.lan_prefix),
        (p6("2001:db8:b::/48"), p6("2001:db8:b:1::/64")),
        "subnet 1, as the static prefixes give the LAN"
    );
    assert!(unusable_delegations(&run, &[None, Some(p6("2001:db8:b::/48"))]).is_empty());
    // A /64 has no /64 number 1; ISP A's prefix is not ISP B's to give.
    for bad in ["2001:db8:b::/64", "2001:db8:a::/56"] {
        let delegated = [None, Some(p6(bad))];
        let run = with_delegations(base.clone(), &delegated);
        assert_eq!(b(&run), None, "{bad}");
        assert_eq!(unusable_delegations(&run, &delegated), vec![(1, p6(bad))]);
    }
    // Uplink A's static prefix is untouched; without a delegation B has none again.
    assert_eq!(with_delegations(run.clone(), &[None, None]).ipv6, base.ipv6);
    assert_eq!(restart_needed(&base, &config(PD_SITE)), None);
}
