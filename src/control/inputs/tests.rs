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
