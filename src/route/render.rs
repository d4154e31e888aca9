//! Views of a [`RouteTable`]: `show route` text, the JSON entries, and log lines of a change.

use super::{Policy, PolicyFallback, PrefixKey, RouteState, RouteTable, StaticRoute, key};
use crate::prefix::Ipv4Prefix;
use crate::{Iface, UplinkId};
use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::net::Ipv4Addr;

/// One route (connected or static) for the JSON status view (SPEC 26).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RouteEntryView {
    /// "connected" or "static".
    pub kind: &'static str,
    /// The route's name; for a connected prefix, its interface's name.
    pub name: String,
    pub prefix: String,
    pub distance: u8,
    pub weight: u8,
    /// Interface name: an uplink's name, or "lan".
    pub uplink: String,
    /// `None` for a connected prefix.
    pub next_hop: Option<Ipv4Addr>,
    pub track: Option<usize>,
    pub eligible: bool,
    pub installed: bool,
    /// "installed", "backup", "track down" or "no carrier".
    pub reason: &'static str,
}

const LAN_NAME: &str = "lan";
/// Width of the IOS code column ("S*    ").
const CODE_WIDTH: usize = 6;

/// A connected prefix with the router's address in it.
struct ConnectedRow {
    prefix: Ipv4Prefix,
    local: Ipv4Addr,
    iface: String,
    up: bool,
}

/// One member of an installed set, as `diff` compares and prints it.
#[derive(PartialEq, Eq)]
struct Via {
    uplink: String,
    next_hop: Option<Ipv4Addr>,
    distance: u8,
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.next_hop {
            None => write!(f, "{} (connected)", self.uplink),
            Some(_) => write!(f, "{} [{}]", self.uplink, self.distance),
        }
    }
}

impl RouteTable {
    /// `show route`, IOS-like. Layout:
    ///
    /// ```text
    /// Codes: C - connected, L - local, S - static, * - candidate default
    ///
    /// Gateway of last resort is 172.16.1.2 to network 0.0.0.0
    ///
    /// S*    0.0.0.0/0 [10/0] via 172.16.1.2, isp-a (a-e2e-tier, track a-e2e up)
    /// S     10.0.0.0/8 [5/0] via 172.16.1.2, isp-a (lb-a, weight 1)
    ///                  [5/0] via 172.17.3.2, isp-b (lb-b, weight 3)
    /// C     172.16.1.0/30 is directly connected, isp-a
    /// L     172.16.1.1/32 is directly connected, isp-a
    /// C     192.168.0.0/24 is directly connected, lan
    /// L     192.168.0.1/32 is directly connected, lan
    ///
    /// Not installed:
    ///   backup      0.0.0.0/0 [11/0] via 172.17.3.2, isp-b (b-e2e-tier, track b-e2e up)
    ///   track down  0.0.0.0/0 [250/0] via 172.16.1.2, isp-a (a-nh-tier, track a-nh down)
    ///   no carrier  172.17.3.0/30 is directly connected, isp-b
    ///
    /// Policies (checked in order before the table):
    ///   1 voip: from 192.168.0.50/32 proto 17 ports 5060-5061 -> isp-b, isp-a; else table
    /// ```
    ///
    /// Installed entries are sorted by network then length, as IOS does; `[distance/metric]`
    /// with metric always 0; load-shared members of one prefix are continuation lines aligned
    /// under the first `[`, each with its weight. The parenthesis holds the route's name and
    /// its track (by name from `track_names`, else by index). Candidates that are not installed
    /// follow with their state in a column: "backup" (eligible, a lower distance wins),
    /// "track down", "no carrier" (also a connected prefix whose uplink lost carrier). Local
    /// `L` lines stay while the carrier is down, because the router still owns the address.
    /// The "Not installed" and "Policies" sections appear only when non-empty.
    pub fn render(&self, track_names: &[String]) -> String {
        let mut installed: Vec<(PrefixKey, String)> = Vec::new();
        let mut candidates: Vec<((PrefixKey, u8), String)> = Vec::new();

        for row in self.connected_rows() {
            let line = format!("{} is directly connected, {}", row.prefix, row.iface);
            if row.up {
                installed.push((key(&row.prefix), format!("{:CODE_WIDTH$}{line}", "C")));
            } else {
                candidates.push(((key(&row.prefix), 0), state_line("no carrier", &line)));
            }
            let host = Ipv4Prefix::new(row.local, 32);
            if let Ok(host) = host {
                let line = format!("{host} is directly connected, {}", row.iface);
                installed.push((key(&host), format!("{:CODE_WIDTH$}{line}", "L")));
            }
        }

        for group in self.installed_groups().values() {
            let Some(first) = group.first() else {
                continue;
            };
            let code = if first.prefix.prefix_len() == 0 {
                "S*"
            } else {
                "S"
            };
            let head = format!("{code:CODE_WIDTH$}{} ", first.prefix.network());
            let shared = group.len() > 1;
            let mut text = String::new();
            for (n, route) in group.iter().enumerate() {
                let indent = if n == 0 {
                    head.clone()
                } else {
                    " ".repeat(head.len())
                };
                let via = self.via_text(route, shared, track_names);
                let sep = if n == 0 { "" } else { "\n" };
                let _ = write!(text, "{sep}{indent}{via}");
            }
            installed.push((key(&first.prefix), text));
        }

        for (route, state) in self.routes.iter().zip(&self.states) {
            if *state != RouteState::Installed {
                let via = self.via_text(route, false, track_names);
                let line = format!("{} {via}", route.prefix.network());
                let order = (key(&route.prefix), route.distance);
                candidates.push((order, state_line(state.as_str(), &line)));
            }
        }

        installed.sort_by_key(|(k, _)| *k);
        candidates.sort_by_key(|(k, _)| *k);

        let mut out =
            String::from("Codes: C - connected, L - local, S - static, * - candidate default\n\n");
        match self.gateway_of_last_resort() {
            Some((next_hop, _)) => {
                let _ = writeln!(
                    out,
                    "Gateway of last resort is {next_hop} to network 0.0.0.0"
                );
            }
            None => out.push_str("Gateway of last resort is not set\n"),
        }
        out.push('\n');
        for (_, line) in &installed {
            out.push_str(line);
            out.push('\n');
        }
        if !candidates.is_empty() {
            out.push_str("\nNot installed:\n");
            for (_, line) in &candidates {
                out.push_str(line);
                out.push('\n');
            }
        }
        if !self.policies.is_empty() {
            out.push_str("\nPolicies (checked in order before the table):\n");
            for (i, policy) in self.policies.iter().enumerate() {
                let _ = writeln!(out, "  {} {}", i + 1, self.policy_text(policy));
            }
        }
        out
    }

    /// Structured view of the same for JSON: connected prefixes (LAN, then uplinks), then static
    /// routes in configuration order.
    pub fn entries(&self) -> Vec<RouteEntryView> {
        let connected = self.connected_rows().into_iter().map(|row| {
            let state = if row.up {
                RouteState::Installed
            } else {
                RouteState::NoCarrier
            };
            RouteEntryView {
                kind: "connected",
                name: row.iface.clone(),
                prefix: row.prefix.to_string(),
                distance: 0,
                weight: 0,
                uplink: row.iface,
                next_hop: None,
                track: None,
                eligible: row.up,
                installed: row.up,
                reason: state.as_str(),
            }
        });
        let statics = self
            .routes
            .iter()
            .zip(&self.states)
            .map(|(route, state)| RouteEntryView {
                kind: "static",
                name: route.name.clone(),
                prefix: route.prefix.network().to_string(),
                distance: route.distance,
                weight: route.weight,
                uplink: self.egress_name(route.egress),
                next_hop: Some(route.next_hop),
                track: route.track,
                eligible: state.eligible(),
                installed: *state == RouteState::Installed,
                reason: state.as_str(),
            });
        connected.chain(statics).collect()
    }

    /// One log line per prefix whose installed set changed between `old` and `new`, e.g.
    /// "route 0.0.0.0/0 via isp-a [10] withdrawn; now via isp-b [251]". Forms: "installed via
    /// X" (new prefix), "via X withdrawn" (nothing left for the prefix), "via X withdrawn; now
    /// via Y" (nothing in common), "via X changed; now via Y" (a load-sharing member came or
    /// went). Connected prefixes appear as "isp-a (connected)".
    pub fn diff(old: &RouteTable, new: &RouteTable) -> Vec<String> {
        let before = old.installed_sets();
        let after = new.installed_sets();
        let mut keys: Vec<&PrefixKey> = before.keys().chain(after.keys()).collect();
        keys.sort();
        keys.dedup();
        let empty = (None, Vec::new());
        keys.into_iter()
            .filter_map(|k| {
                let (p_old, a) = before.get(k).unwrap_or(&empty);
                let (p_new, b) = after.get(k).unwrap_or(&empty);
                if a == b {
                    return None;
                }
                let prefix = p_old.or(*p_new)?;
                let line = if a.is_empty() {
                    format!("route {prefix} installed via {}", list(b))
                } else if b.is_empty() {
                    format!("route {prefix} via {} withdrawn", list(a))
                } else if a.iter().all(|v| !b.contains(v)) {
                    // A lower distance taking over is a preference, not a loss (SPEC 22).
                    let verb = match (a.first(), b.first()) {
                        (Some(x), Some(y)) if y.distance < x.distance => "preempted",
                        _ => "withdrawn",
                    };
                    format!("route {prefix} via {} {verb}; now via {}", list(a), list(b))
                } else {
                    format!(
                        "route {prefix} via {} changed; now via {}",
                        list(a),
                        list(b)
                    )
                };
                Some(line)
            })
            .collect()
    }

    /// Per prefix, what is installed, as `diff` compares it.
    fn installed_sets(&self) -> BTreeMap<PrefixKey, (Option<Ipv4Prefix>, Vec<Via>)> {
        let mut sets: BTreeMap<PrefixKey, (Option<Ipv4Prefix>, Vec<Via>)> = BTreeMap::new();
        for row in self.connected_rows().into_iter().filter(|r| r.up) {
            let via = Via {
                uplink: row.iface,
                next_hop: None,
                distance: 0,
            };
            sets.insert(key(&row.prefix), (Some(row.prefix), vec![via]));
        }
        for (k, group) in self.installed_groups() {
            let Some(first) = group.first() else {
                continue;
            };
            let vias = group
                .iter()
                .map(|r| Via {
                    uplink: self.egress_name(r.egress),
                    next_hop: Some(r.next_hop),
                    distance: r.distance,
                })
                .collect();
            sets.insert(k, (Some(first.prefix.network()), vias));
        }
        sets
    }

    /// Installed static routes grouped by prefix, in configuration order within a prefix.
    fn installed_groups(&self) -> BTreeMap<PrefixKey, Vec<&StaticRoute>> {
        let mut groups: BTreeMap<PrefixKey, Vec<&StaticRoute>> = BTreeMap::new();
        for (route, state) in self.routes.iter().zip(&self.states) {
            if *state == RouteState::Installed {
                groups.entry(key(&route.prefix)).or_default().push(route);
            }
        }
        groups
    }

    /// The LAN, then the uplinks that have an address.
    fn connected_rows(&self) -> Vec<ConnectedRow> {
        let lan = ConnectedRow {
            prefix: self.ifaces.lan.network(),
            local: self.ifaces.lan.addr(),
            iface: LAN_NAME.to_string(),
            up: true,
        };
        let uplinks = self
            .ifaces
            .uplinks
            .iter()
            .zip(&self.carrier)
            .filter(|(u, _)| !u.address.addr().is_unspecified())
            .map(|(u, &up)| ConnectedRow {
                prefix: u.address.network(),
                local: u.address.addr(),
                iface: u.name.clone(),
                up,
            });
        std::iter::once(lan).chain(uplinks).collect()
    }

    /// "[10/0] via 172.16.1.2, isp-a (name, weight 3, track a-e2e up)".
    fn via_text(&self, route: &StaticRoute, shared: bool, track_names: &[String]) -> String {
        let mut details = route.name.clone();
        if shared {
            let _ = write!(details, ", weight {}", route.weight);
        }
        if let Some(t) = route.track {
            let name = track_names.get(t).cloned().unwrap_or_else(|| t.to_string());
            let up = self.tracks.get(t).copied().unwrap_or(false);
            let _ = write!(details, ", track {name} {}", if up { "up" } else { "down" });
        }
        format!(
            "[{}/0] via {}, {} ({details})",
            route.distance,
            route.next_hop,
            self.egress_name(route.egress)
        )
    }

    /// "voip: from 192.168.0.50/32 proto 17 ports 5060-5061 -> isp-b, isp-a; else table".
    fn policy_text(&self, p: &Policy) -> String {
        let mut text = format!("{}:", p.name);
        if let Some(src) = p.source {
            let _ = write!(text, " from {src}");
        }
        if let Some(dst) = p.destination {
            let _ = write!(text, " to {dst}");
        }
        if let Some(proto) = p.protocol {
            let _ = write!(text, " proto {proto}");
        }
        if let Some((lo, hi)) = p.ports {
            let _ = write!(text, " ports {lo}-{hi}");
        }
        if p.source.is_none()
            && p.destination.is_none()
            && p.protocol.is_none()
            && p.ports.is_none()
        {
            text.push_str(" any");
        }
        let uplinks: Vec<String> = p.uplinks.iter().map(|&u| self.uplink_name(u)).collect();
        let fallback = match p.fallback {
            PolicyFallback::Table => "table",
            PolicyFallback::Unreachable => "unreachable",
        };
        let _ = write!(text, " -> {}; else {fallback}", uplinks.join(", "));
        text
    }

    /// "lan", or the uplink's name.
    fn egress_name(&self, egress: Iface) -> String {
        match egress {
            Iface::Lan => "lan".to_string(),
            Iface::Uplink(u) => self.uplink_name(u),
        }
    }

    fn uplink_name(&self, uplink: UplinkId) -> String {
        self.ifaces
            .uplinks
            .get(usize::from(uplink.0))
            .map_or_else(|| format!("uplink{}", uplink.0), |u| u.name.clone())
    }
}

fn state_line(state: &str, line: &str) -> String {
    format!("  {state:<12}{line}")
}

fn list(vias: &[Via]) -> String {
    let parts: Vec<String> = vias.iter().map(Via::to_string).collect();
    parts.join(", ")
}
