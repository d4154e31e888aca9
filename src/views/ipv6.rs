//! `show ipv6` (SPEC 32, 33): each uplink's prefix as the LAN's Router Advertisements carry it
//! now (preferred, or deprecated while the uplink is down) with the router's address in it, the
//! DNS servers the RAs name (RDNSS), whether RAs are sent yet, the DHCPv6 prefix delegation
//! clients (state, prefix, server, timers, messages), and the IPv6 neighbours the fast path
//! uses.

use std::fmt;
use std::net::Ipv6Addr;

use serde::Serialize;

use super::{State, iface_name, to_json};
use crate::Iface;
use crate::clock::Instant;
use crate::config::Config;
use crate::dhcp::pd;
use crate::metrics::{Ipv6PrefixMetrics, PdMetrics};
use crate::wire::ethernet::MacAddr;
use crate::wire::ndisc::PrefixInfo;

/// What the control thread knows of IPv6 for the views.
pub struct Ipv6Info {
    /// The router lifetime the RAs carry now (0: no uplink carries IPv6).
    pub router_lifetime: u16,
    pub prefixes: Vec<PrefixInfo>,
    /// The router's LAN addresses and whether each is in use (DAD passed).
    pub lan_addresses: Vec<(Ipv6Addr, bool)>,
    /// The DNS servers the RAs name (RFC 8106).
    pub rdnss: Vec<Ipv6Addr>,
    /// False until the first RA (DAD of the link-local address, the uplinks' health measured).
    pub advertising: bool,
    pub neighbours: Vec<(Iface, Ipv6Addr, MacAddr)>,
    pub pd: Vec<PdInfo>,
}

/// One uplink's DHCPv6 prefix delegation client, its timers counted from now.
pub struct PdInfo {
    pub uplink: usize,
    pub state: pd::State,
    pub delegation: Option<pd::Delegation>,
    pub counters: pd::PdCounters,
    pub now: Instant,
}

#[derive(Serialize)]
struct PdRow {
    uplink: String,
    state: &'static str,
    prefix: Option<String>,
    server: Option<Ipv6Addr>,
    renew_in_s: Option<u64>,
    rebind_in_s: Option<u64>,
    expires_in_s: Option<u64>,
    sent: u64,
    received: u64,
    ignored: u64,
}

impl PdRow {
    fn new(p: &PdInfo, cfg: &Config) -> PdRow {
        let d = p.delegation.as_ref();
        let left =
            |at: fn(&pd::Delegation) -> Instant| d.map(|d| at(d).saturating_since(p.now).as_secs());
        PdRow {
            uplink: cfg
                .uplinks
                .get(p.uplink)
                .map_or_else(String::new, |u| u.name.clone()),
            state: p.state.name(),
            prefix: d.map(|d| d.prefix.to_string()),
            server: d.map(|d| d.server_addr),
            renew_in_s: left(pd::Delegation::renew_at),
            rebind_in_s: left(pd::Delegation::rebind_at),
            expires_in_s: left(pd::Delegation::expires_at),
            sent: p.counters.sent(),
            received: p.counters.received(),
            ignored: p.counters.ignored(),
        }
    }
}

impl fmt::Display for PdRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |s: Option<u64>| s.map_or("-".to_string(), |s| s.to_string());
        writeln!(
            f,
            "{:<10} {:<11} {:<20} {:<26} {:>6} {:>6} {:>7} {:>5}/{}/{}",
            self.uplink,
            self.state,
            self.prefix.as_deref().unwrap_or("-"),
            self.server.map_or("-".to_string(), |s| s.to_string()),
            secs(self.renew_in_s),
            secs(self.rebind_in_s),
            secs(self.expires_in_s),
            self.sent,
            self.received,
            self.ignored
        )
    }
}

#[derive(Serialize)]
struct Ipv6View {
    router_lifetime_s: u16,
    advertising: bool,
    rdnss: Vec<Ipv6Addr>,
    prefixes: Vec<PrefixRow>,
    prefix_delegation: Vec<PdRow>,
    neighbours: Vec<NeighbourRow>,
}

#[derive(Serialize)]
struct PrefixRow {
    uplink: String,
    prefix: String,
    lan_prefix: String,
    /// With NPTv6 (SPEC 33): the internal prefix the LAN uses, translated to `lan_prefix`
    /// on this uplink; `state` and the lifetimes are then the internal prefix's.
    npt6_prefix: Option<String>,
    /// "preferred", or "deprecated" (preferred lifetime 0) while the uplink is down.
    state: &'static str,
    preferred_lifetime_s: u32,
    valid_lifetime_s: u32,
    /// The router's address in the LAN prefix (in the NPTv6 prefix with NPTv6), and whether
    /// it is in use (DAD passed).
    router_address: Ipv6Addr,
    router_address_in_use: bool,
}

impl fmt::Display for PrefixRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:<20} {:<22} {:<11} {:>9} {:>9}  {}{}",
            self.uplink,
            self.prefix,
            self.lan_prefix,
            self.state,
            self.preferred_lifetime_s,
            self.valid_lifetime_s,
            self.router_address,
            if self.router_address_in_use {
                ""
            } else {
                " (tentative)"
            }
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

impl Ipv6Info {
    /// Each prefix delegation client's messages and whether it holds a prefix.
    pub fn pd_metrics(&self, cfg: &Config) -> Vec<PdMetrics> {
        self.pd
            .iter()
            .map(|p| PdMetrics {
                uplink: cfg
                    .uplinks
                    .get(p.uplink)
                    .map_or_else(String::new, |u| u.name.clone()),
                delegated: p.delegation.is_some(),
                sent: p.counters.sent(),
                received: p.counters.received(),
                ignored: p.counters.ignored(),
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
            let c = c.as_ref()?.provider?;
            let advertised = v6.npt6_prefix.unwrap_or(c.lan_prefix);
            let pi = info
                .prefixes
                .iter()
                .find(|p| p.prefix == advertised.network().addr())?;
            Some(PrefixRow {
                uplink: cfg.uplinks.get(u)?.name.clone(),
                prefix: c.prefix.to_string(),
                lan_prefix: c.lan_prefix.to_string(),
                npt6_prefix: v6.npt6_prefix.map(|p| p.to_string()),
                state: if pi.preferred_lifetime == 0 {
                    "deprecated"
                } else {
                    "preferred"
                },
                preferred_lifetime_s: pi.preferred_lifetime,
                valid_lifetime_s: pi.valid_lifetime,
                router_address: advertised.host(1),
                router_address_in_use: info.lan_addresses.contains(&(advertised.host(1), true)),
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
    let pd: Vec<PdRow> = info.pd.iter().map(|p| PdRow::new(p, st.cfg)).collect();
    if json {
        return to_json(&Ipv6View {
            router_lifetime_s: info.router_lifetime,
            advertising: info.advertising,
            rdnss: info.rdnss.clone(),
            prefixes,
            prefix_delegation: pd,
            neighbours,
        });
    }
    let rdnss: Vec<String> = info.rdnss.iter().map(Ipv6Addr::to_string).collect();
    let mut s = format!(
        "Router lifetime {} s{}; DNS servers advertised (RDNSS): {}\n",
        info.router_lifetime,
        if info.advertising {
            ""
        } else {
            " (no RA yet: DAD or the uplinks' health pending)"
        },
        if rdnss.is_empty() {
            "none".to_string()
        } else {
            rdnss.join(", ")
        }
    );
    if let Some(p) = st.cfg.ipv6.as_ref().and_then(|v6| v6.npt6_prefix) {
        s += &format!(
            "NPTv6: the LAN uses {p}, translated to the LAN prefix of the egress uplink\n"
        );
    }
    s += &format!(
        "{:<10} {:<20} {:<22} {:<11} {:>9} {:>9}  {}\n",
        "Uplink", "Prefix", "LAN prefix", "State", "Preferred", "Valid", "Router address"
    );
    s.extend(prefixes.iter().map(PrefixRow::to_string));
    if !pd.is_empty() {
        s += &format!(
            "\nDHCPv6 prefix delegation\n{:<10} {:<11} {:<20} {:<26} {:>6} {:>6} {:>7} {}\n",
            "Uplink", "State", "Prefix", "Server", "T1 in", "T2 in", "Expires", "Sent/rcvd/ignored"
        );
        s.extend(pd.iter().map(PdRow::to_string));
    }
    s += &format!(
        "\n{:<10} {:<40} {}\n",
        "Interface", "Neighbour", "Hardware Addr"
    );
    s.extend(neighbours.iter().map(NeighbourRow::to_string));
    s
}
