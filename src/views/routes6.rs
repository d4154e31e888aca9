//! The IPv6 routes and policies in `show route` (SPEC 34), after the IPv4 table: each route
//! with its state. They steer only sources their uplink can carry; otherwise the egress by
//! source decides (SPEC 32).

use std::fmt;
use std::fmt::Write as _;
use std::net::Ipv6Addr;

use serde::Serialize;

use super::State;
use crate::config::{Policy6Config, PolicyFallback};
use crate::route::table6;

#[derive(Serialize)]
pub(super) struct Route6Row {
    name: String,
    prefix: String,
    uplink: String,
    next_hop: Option<Ipv6Addr>,
    distance: u8,
    track: Option<String>,
    eligible: bool,
    /// The lowest eligible distance for its prefix.
    installed: bool,
    /// "installed", "standby" (eligible, a lower distance is installed), "no carrier" or
    /// "track down".
    reason: &'static str,
}

impl fmt::Display for Route6Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = match (self.installed, self.prefix.ends_with("/0")) {
            (true, true) => "S*",
            (true, false) => "S",
            (false, _) => self.reason,
        };
        let via = self
            .next_hop
            .map_or_else(|| "?".to_string(), |nh| nh.to_string());
        let mut details = self.name.clone();
        if let Some(t) = &self.track {
            let state = if self.reason == "track down" {
                "down"
            } else {
                "up"
            };
            let _ = write!(details, ", track {t} {state}");
        }
        writeln!(
            f,
            "{code:<12}{} [{}/0] via {via}, {} ({details})",
            self.prefix, self.distance, self.uplink
        )
    }
}

pub(super) fn rows(st: &State) -> Vec<Route6Row> {
    let Some(v6) = st.snap.ipv6.as_ref() else {
        return Vec::new();
    };
    v6.routes
        .iter()
        .filter_map(|r| {
            let c = st.cfg.routes6.get(r.index)?;
            let carrier = st
                .carrier
                .get(usize::from(r.uplink.0))
                .copied()
                .unwrap_or(false);
            let installed = table6::installed(&v6.routes, r);
            let reason = match (installed, r.eligible, carrier) {
                (true, ..) => "installed",
                (false, true, _) => "standby",
                (false, false, false) => "no carrier",
                (false, false, true) => "track down",
            };
            Some(Route6Row {
                name: c.name.clone(),
                prefix: c.prefix.to_string(),
                uplink: c.uplink.clone(),
                next_hop: v6.next_hop(r.uplink),
                distance: c.distance,
                track: c.track.clone(),
                eligible: r.eligible,
                installed,
                reason,
            })
        })
        .collect()
}

/// One IPv6 policy in `show route`.
#[derive(Serialize)]
pub(super) struct Policy6Row {
    name: String,
    source: Option<String>,
    destination: Option<String>,
    protocol: Option<u8>,
    ports: Option<String>,
    uplinks: Vec<String>,
    /// "table" or "unreachable".
    fallback: &'static str,
}

impl fmt::Display for Policy6Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.name)?;
        if let Some(s) = &self.source {
            write!(f, " from {s}")?;
        }
        if let Some(d) = &self.destination {
            write!(f, " to {d}")?;
        }
        if let Some(p) = self.protocol {
            write!(f, " proto {p}")?;
        }
        if let Some(p) = &self.ports {
            write!(f, " ports {p}")?;
        }
        write!(f, " -> {}; else {}", self.uplinks.join(", "), self.fallback)
    }
}

pub(super) fn policy_rows(policies: &[Policy6Config]) -> Vec<Policy6Row> {
    policies
        .iter()
        .map(|p| Policy6Row {
            name: p.name.clone(),
            source: p.source.map(|s| s.to_string()),
            destination: p.destination.map(|d| d.to_string()),
            protocol: p.protocol,
            ports: p.port.map(|r| format!("{}-{}", r.first, r.last)),
            uplinks: p.uplinks.clone(),
            fallback: match p.fallback {
                PolicyFallback::Table => "table",
                PolicyFallback::Unreachable => "unreachable",
            },
        })
        .collect()
}

/// The text sections, empty without IPv6 routes and policies.
pub(super) fn render(rows: &[Route6Row], policies: &[Policy6Row]) -> String {
    let mut out = String::new();
    if !rows.is_empty() {
        out += "\nIPv6 routes (each steers the sources its uplink can carry; else by source prefix):\n";
        for r in rows {
            out += &r.to_string();
        }
    }
    if !policies.is_empty() {
        out += "\nIPv6 policies (checked in order before the IPv6 routes):\n";
        for (i, p) in policies.iter().enumerate() {
            let _ = writeln!(out, "  {} {p}", i + 1);
        }
    }
    out
}
