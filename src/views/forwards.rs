//! `show forwards` and what `explain` says of an inbound flow to a port forward (SPEC 13, 31).

use serde::Serialize;

use super::{State, proto_name, to_json};
use crate::nat::Forward;
use crate::route::FlowTuple;

#[derive(Serialize)]
struct Row {
    name: String,
    /// "isp-a 172.16.1.1", one per uplink.
    uplinks: Vec<String>,
    protocols: Vec<String>,
    /// "8080" or "8000-8010".
    port: String,
    /// "192.168.0.10:8080" or "192.168.0.10:8000-8010".
    to: String,
    /// Allowed source prefixes; empty: any.
    allow: Vec<String>,
    hits: u64,
    refused: u64,
    active_sessions: usize,
}

fn ports(first: u16, last: u16) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

fn target(f: &Forward) -> String {
    let last = f.to_port.wrapping_add(f.last - f.first);
    format!("{}:{}", f.to, ports(f.to_port, last))
}

pub(super) fn show(st: &State, json: bool) -> String {
    let rows: Vec<Row> = st
        .nat
        .forwards()
        .iter()
        .zip(st.nat.forward_stats())
        .map(|(f, stats)| Row {
            name: f.name.clone(),
            uplinks: f
                .uplinks
                .iter()
                .filter_map(|u| st.cfg.uplinks.get(usize::from(u.0)))
                .map(|u| format!("{} {}", u.name, u.address.addr()))
                .collect(),
            protocols: f.protocols.iter().map(|&p| proto_name(p)).collect(),
            port: ports(f.first, f.last),
            to: target(f),
            allow: f.allow.iter().map(|p| p.to_string()).collect(),
            hits: stats.hits,
            refused: stats.refused,
            active_sessions: stats.active,
        })
        .collect();
    if json {
        return to_json(&serde_json::json!({ "forwards": rows }));
    }
    let mut s = format!(
        "{:<12} {:<8} {:<12} {:<24} {:<18} {:>8} {:>8} {:>7}  {}\n",
        "Name", "Proto", "Port", "To", "Allow", "Hits", "Refused", "Active", "Uplinks"
    );
    for r in &rows {
        let allow = if r.allow.is_empty() {
            "any".to_string()
        } else {
            r.allow.join(",")
        };
        s += &format!(
            "{:<12} {:<8} {:<12} {:<24} {:<18} {:>8} {:>8} {:>7}  {}\n",
            r.name,
            r.protocols.join("+"),
            r.port,
            r.to,
            allow,
            r.hits,
            r.refused,
            r.active_sessions,
            r.uplinks.join(", ")
        );
    }
    if rows.is_empty() {
        s += "no port forwards configured\n";
    }
    s
}

/// For a flow to an uplink's address: the forward it matches and what becomes of it. From a LAN
/// host that is hairpin NAT.
pub(super) fn explain(st: &State, flow: &FlowTuple) -> Option<String> {
    let uplink = st.snap.uplink_with_addr(flow.dst)?;
    let index = st.nat.find_forward(uplink, flow.proto, flow.dst_port)?;
    let f = st.nat.forwards().get(index)?;
    let (to, to_port) = f.target(flow.dst_port);
    let hairpin = st.snap.is_lan_host(flow.src);
    Some(if !f.allows(flow.src) {
        format!(
            "forward {}: refused, {} is not in its allow list",
            f.name, flow.src
        )
    } else if hairpin {
        format!(
            "forward {} (hairpin): to {to}:{to_port}, source translated to {} so replies come back through the router",
            f.name, flow.dst
        )
    } else {
        format!(
            "forward {}: to {to}:{to_port}; replies leave by {}",
            f.name,
            st.cfg
                .uplinks
                .get(usize::from(uplink.0))
                .map_or("?", |u| u.name.as_str())
        )
    })
}
