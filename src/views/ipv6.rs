//! `show ipv6` (SPEC 32, 33): each uplink's prefix as the LAN's Router Advertisements carry it
//! now (preferred, or deprecated while the uplink is down), and the IPv6 neighbours the fast
//! path uses.

use std::fmt;
use std::net::Ipv6Addr;

use serde::Serialize;

use super::{State, iface_name, to_json};
use crate::Iface;
use crate::config::Config;
use crate::metrics::Ipv6PrefixMetrics;
use crate::wire::ethernet::MacAddr;
use crate::wire::ndisc::PrefixInfo;

/// What the control thread knows of IPv6 for the views.
pub struct Ipv6Info {
    /// The router lifetime the RAs carry now (0: no uplink carries IPv6).
    pub router_lifetime: u16,
    pub prefixes: Vec<PrefixInfo>,
    pub neighbours: Vec<(Iface, Ipv6Addr, MacAddr)>,
}

#[derive(Serialize)]
struct Ipv6View {
    router_lifetime_s: u16,
    prefixes: Vec<PrefixRow>,
    neighbours: Vec<NeighbourRow>,
}

#[derive(Serialize)]
struct PrefixRow {
    uplink: String,
    prefix: String,
    lan_prefix: String,
    /// "preferred", or "deprecated" (preferred lifetime 0) while the uplink is down.
    state: &'static str,
    preferred_lifetime_s: u32,
    valid_lifetime_s: u32,
}

impl fmt::Display for PrefixRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:<20} {:<22} {:<11} {:>9} {:>9}",
            self.uplink,
            self.prefix,
            self.lan_prefix,
            self.state,
            self.preferred_lifetime_s,
            self.valid_lifetime_s
        )
    }
}

#[derive(Serialize)]
struct NeighbourRow {
    interface: String,
    address: Ipv6Addr,
    mac: String,
}

impl fmt::Display for NeighbourRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:<40} {}",
            self.interface, self.address, self.mac
        )
    }
}

impl Ipv6Info {
    /// Each LAN prefix with its uplink and advertised preferred lifetime, for the metrics.
    pub fn prefix_metrics(&self, cfg: &Config) -> Vec<Ipv6PrefixMetrics> {
        prefix_rows(self, cfg)
            .into_iter()
            .map(|r| Ipv6PrefixMetrics {
                uplink: r.uplink,
                prefix: r.lan_prefix,
                preferred_lifetime: r.preferred_lifetime_s,
            })
            .collect()
    }
}

/// One row per uplink with IPv6, its lifetimes as the RAs carry them.
fn prefix_rows(info: &Ipv6Info, cfg: &Config) -> Vec<PrefixRow> {
    let Some(v6) = &cfg.ipv6 else {
        return Vec::new();
    };
    v6.uplinks
        .iter()
        .enumerate()
        .filter_map(|(u, c)| {
            let c = c.as_ref()?;
            let pi = info
                .prefixes
                .iter()
                .find(|p| p.prefix == c.lan_prefix.network().addr())?;
            Some(PrefixRow {
                uplink: cfg.uplinks.get(u)?.name.clone(),
                prefix: c.prefix.to_string(),
                lan_prefix: c.lan_prefix.to_string(),
                state: if pi.preferred_lifetime == 0 {
                    "deprecated"
                } else {
                    "preferred"
                },
                preferred_lifetime_s: pi.preferred_lifetime,
                valid_lifetime_s: pi.valid_lifetime,
            })
        })
        .collect()
}

pub(super) fn show(st: &State, json: bool) -> String {
    let Some(info) = &st.ipv6 else {
        return if json {
            to_json(&serde_json::json!({ "ipv6": null }))
        } else {
            "IPv6 is off ([lan] ipv6)\n".into()
        };
    };
    let prefixes = prefix_rows(info, st.cfg);
    let mut neighbours: Vec<NeighbourRow> = info
        .neighbours
        .iter()
        .map(|&(i, address, mac)| NeighbourRow {
            interface: iface_name(st.cfg, i),
            address,
            mac: mac.to_string(),
        })
        .collect();
    neighbours.sort_by(|a, b| (&a.interface, a.address).cmp(&(&b.interface, b.address)));
    if json {
        return to_json(&Ipv6View {
            router_lifetime_s: info.router_lifetime,
            prefixes,
            neighbours,
        });
    }
    let mut s = format!(
        "Router lifetime {} s\n{:<10} {:<20} {:<22} {:<11} {:>9} {:>9}\n",
        info.router_lifetime, "Uplink", "Prefix", "LAN prefix", "State", "Preferred", "Valid"
    );
    s.extend(prefixes.iter().map(PrefixRow::to_string));
    s += &format!(
        "\n{:<10} {:<40} {}\n",
        "Interface", "Neighbour", "Hardware Addr"
    );
    s.extend(neighbours.iter().map(NeighbourRow::to_string));
    s
}
