//! An uplink's DHCP client (SPEC 28) against dnsmasq as the ISP's server
//! (`lab.sh up --dhcp b`): bound with the lease's address and router, the uplink carries
//! traffic and DNS after a failover, renewed at T1.

mod common;

use std::time::Duration;

use common::{Lab, repo, require_root};

const ASSIGNED: &str = "%DHCP-6-ADDRESS_ASSIGN: Interface wan-b assigned DHCP address 172.17.3.1, mask 255.255.255.252, router 172.17.3.2, lease 120 s (T1 60 s, T2 105 s)";

#[test]
fn the_uplink_gets_its_address_from_the_isp_carries_traffic_and_renews_at_t1() {
    if !require_root() {
        return;
    }
    let lab = Lab::up_with("udh", &["--dhcp", "b"]);
    let cfg = std::fs::read_to_string(repo().join("scripts/lab-dhcp-b.toml")).unwrap();
    lab.start_router(&cfg);
    lab.wait_for("the lease", Duration::from_secs(15), || {
        lab.log().contains(ASSIGNED)
    });
    let bound = lab.log_times(ASSIGNED)[0];
    let up = &lab.ctl_json(&["show", "uplinks"])["uplinks"][1];
    assert_eq!(up["address"], "172.17.3.1/30");
    assert_eq!(up["dhcp"]["state"], "bound");
    assert_eq!(up["dhcp"]["server"], "172.17.3.2");
    assert!(up["dhcp"]["renew_in_s"].as_u64().unwrap() <= 60);
    // The routes through isp-b follow the lease's router.
    let routes = lab.ctl_json(&["show", "route"]);
    let via_b: Vec<_> = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["uplink"] == "isp-b" && r["kind"] == "static")
        .collect();
    assert!(!via_b.is_empty());
    assert!(
        via_b.iter().all(|r| r["next_hop"] == "172.17.3.2"),
        "{via_b:?}"
    );

    // With A's carrier gone, the LAN reaches the central site and resolves through B.
    assert!(lab.sh(&["fault", "a", "link"]).status.success());
    lab.wait_for(
        "the default route on isp-b",
        Duration::from_secs(10),
        || lab.ctl_json(&["show", "route"])["gateway_of_last_resort"]["uplink"] == "isp-b",
    );
    assert!(lab.ping("lan", "172.18.0.6"));
    let dig = lab.ok(
        "lan",
        &[
            "dig",
            "+short",
            "+time=3",
            "+tries=1",
            "@192.168.0.1",
            "probe.lab",
        ],
    );
    assert_eq!(dig.trim(), "172.18.0.6");

    // T1 is 60 s after the REQUEST that got the lease, a few ms before it was logged.
    lab.wait_for("the renewal", Duration::from_secs(75), || {
        lab.log()
            .contains("dhcp: wan-b renewed 172.17.3.1/30 from 172.17.3.2")
    });
    let renewed = lab.log_times("dhcp: wan-b renewed")[0];
    let t1 = renewed - bound;
    assert!(
        (59_000..=60_500).contains(&t1),
        "renewed {t1} ms after the lease (T1 60 s)"
    );
    assert!(!lab.log().contains("%DHCP-4-ADDRESS_LOST"), "{}", lab.log());
}
