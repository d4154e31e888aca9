//! The `show` and `explain` views of the control socket: the router's state rendered as text
//! for people and as JSON with a stable schema (README "JSON views"). Pure: the control thread
//! hands over a `State` and gets a string back.

use crate::clock::Instant;
use crate::config::{Config, TrackSource as CfgTrackSource};
use crate::counters::Totals;
use crate::ctl::View;
use crate::nat::NatTable;
use crate::neigh::NeighTable;
use crate::probe::schedule::Probe;
use crate::route::{self, FlowTuple};
use crate::snapshot::Snapshot;
use crate::track::TrackSet;
use crate::wire::ipv4::proto;
use crate::{Iface, UplinkId};

/// Everything a view reads.
pub struct State<'a> {
    pub cfg: &'a Config,
    pub snap: std::sync::Arc<Snapshot>,
    pub carrier: &'a [bool],
    pub totals: Totals,
    pub nat: &'a NatTable,
    pub probes: &'a [Probe],
    pub tracks: &'a TrackSet,
    pub neigh: &'a NeighTable,
    pub now: Instant,
}

/// An interface's name as the views show it: "lan" or the uplink's name.
pub fn iface_name(cfg: &Config, iface: Iface) -> String {
    match iface {
        Iface::Lan => "lan".to_string(),
        Iface::Uplink(u) => cfg
            .uplinks
            .get(u.0 as usize)
            .map_or_else(|| format!("uplink{}", u.0), |u| u.name.clone()),
    }
}

pub fn show(st: &State, view: View, json: bool) -> String {
    let now = st.now;
    let snap = &st.snap;
    match view {
        View::Route => {
            if json {
                to_json(&serde_json::json!({
                    "gateway_of_last_resort": snap.routes.gateway_of_last_resort().map(|(ip, u)| serde_json::json!({"next_hop": ip, "uplink": st.cfg.uplinks.get(u.0 as usize).map(|x| x.name.clone())})),
                    "routes": snap.routes.entries(),
                }))
            } else {
                snap.routes.render(&st.tracks.names())
            }
        }
        View::Uplinks => {
            let totals = st.totals.clone();
            let by_uplink = st.nat.len_by_uplink();
            let rows: Vec<serde_json::Value> = st
                .cfg
                .uplinks
                .iter()
                .enumerate()
                .map(|(u, c)| {
                    let s = &snap.uplinks[u];
                    let t = totals.ifaces.get(1 + u).cloned().unwrap_or_default();
                    serde_json::json!({
                        "name": c.name,
                        "interface": c.interface,
                        "address": c.address.to_string(),
                        "next_hop": c.next_hop,
                        "next_hop_mac": s.next_hop_mac.map(|m| m.to_string()),
                        "mac": s.mac.to_string(),
                        "mtu": s.mtu,
                        "carrier": st.carrier[u],
                        "usable": snap.routes.uplink_usable(UplinkId(u as u8)),
                        "nat": c.nat,
                        "nat_sessions": by_uplink.get(u).copied().unwrap_or(0),
                        "rx_packets": t.rx_packets, "rx_bytes": t.rx_bytes, "rx_dropped": t.rx_dropped,
                        "tx_packets": t.tx_packets, "tx_bytes": t.tx_bytes,
                    })
                })
                .collect();
            if json {
                return to_json(&serde_json::json!({ "uplinks": rows }));
            }
            let mut s = String::new();
            for r in &rows {
                s += &format!(
                    "{} ({}): {} next hop {} [{}], carrier {}, {}\n  mac {} mtu {}, NAT {} ({} sessions)\n  rx {} packets {} bytes ({} dropped), tx {} packets {} bytes\n",
                    r["name"].as_str().unwrap_or(""),
                    r["interface"].as_str().unwrap_or(""),
                    r["address"].as_str().unwrap_or(""),
                    r["next_hop"].as_str().unwrap_or(""),
                    r["next_hop_mac"].as_str().unwrap_or("unresolved"),
                    if r["carrier"] == true { "up" } else { "down" },
                    if r["usable"] == true {
                        "usable"
                    } else {
                        "not usable"
                    },
                    r["mac"].as_str().unwrap_or(""),
                    r["mtu"],
                    if r["nat"] == true { "on" } else { "off" },
                    r["nat_sessions"],
                    r["rx_packets"],
                    r["rx_bytes"],
                    r["rx_dropped"],
                    r["tx_packets"],
                    r["tx_bytes"],
                );
            }
            s
        }
        View::Probes => {
            let rows: Vec<serde_json::Value> = st
                .probes
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "name": p.def.name,
                        "type": p.def.kind.name(),
                        "uplink": p.def.uplink,
                        "target": p.def.target,
                        "interval_ms": p.def.interval.as_millis() as u64,
                        "timeout_ms": p.def.timeout.as_millis() as u64,
                        "threshold_ms": p.def.threshold.as_millis() as u64,
                        "stats": p.stats.view(),
                    })
                })
                .collect();
            if json {
                return to_json(&serde_json::json!({ "probes": rows }));
            }
            let mut s = String::new();
            for r in &rows {
                let st = &r["stats"];
                s += &format!(
                    "IP SLA {} ({} to {} via {}), interval {} ms, timeout {} ms, threshold {} ms\n  latest: {}, last rtt {} ms; avg/min/max {}/{}/{} ms, jitter {} ms\n  sent {}, ok {}, over threshold {}, timeouts {}; loss {}/{} ({:.1}%)\n",
                    r["name"].as_str().unwrap_or(""),
                    r["type"].as_str().unwrap_or(""),
                    r["target"].as_str().unwrap_or(""),
                    r["uplink"].as_str().unwrap_or(""),
                    r["interval_ms"],
                    r["timeout_ms"],
                    r["threshold_ms"],
                    st["last"].as_str().unwrap_or("none"),
                    num(&st["last_rtt_ms"]),
                    num(&st["avg_rtt_ms"]),
                    num(&st["min_rtt_ms"]),
                    num(&st["max_rtt_ms"]),
                    num(&st["jitter_ms"]),
                    st["sent"],
                    st["ok"],
                    st["over_threshold"],
                    st["timeouts"],
                    st["window_lost"],
                    st["window_attempts"],
                    st["loss_percent"].as_f64().unwrap_or(0.0),
                );
            }
            s
        }
        View::Tracks => {
            let rows: Vec<serde_json::Value> = (0..st.tracks.len())
                .map(|t| {
                    let pending = st.tracks.pending(t, now);
                    serde_json::json!({
                        "name": st.tracks.name(t),
                        "state": st.tracks.state(t),
                        "changes": st.tracks.change_count(t),
                        "source": st.cfg.tracks.get(t).map(|c| describe_source(&c.source)),
                        "delay_down_ms": st.cfg.tracks.get(t).map(|c| c.delay_down.as_millis() as u64),
                        "delay_up_ms": st.cfg.tracks.get(t).map(|c| c.delay_up.as_millis() as u64),
                        "pending": pending.map(|(to, left)| serde_json::json!({"to": to, "left_ms": left.as_millis() as u64})),
                    })
                })
                .collect();
            if json {
                return to_json(&serde_json::json!({ "tracks": rows }));
            }
            let mut s = String::new();
            for r in &rows {
                s += &format!(
                    "Track {}\n  {}\n  State is {}, {} changes\n  Delay up {} ms, down {} ms\n",
                    r["name"].as_str().unwrap_or(""),
                    r["source"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    r["changes"],
                    r["delay_up_ms"],
                    r["delay_down_ms"],
                );
                if let Some(p) = r["pending"].as_object() {
                    s += &format!(
                        "  Change to {} pending, {} ms left\n",
                        p["to"].as_str().unwrap_or(""),
                        p["left_ms"]
                    );
                }
            }
            s
        }
        View::Nat {
            uplink,
            address,
            limit,
        } => {
            // The control thread answers an unknown uplink with an error before we get here.
            let filter = uplink
                .as_deref()
                .and_then(|n| st.cfg.uplink_index(n))
                .map(|u| UplinkId(u as u8));
            let (rows, matched) = st.nat.sessions_matching(filter, address, limit, now);
            let sessions: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|s| {
                    serde_json::json!({
                        "uplink": st.cfg.uplinks.get(s.translation.uplink.0 as usize).map(|u| u.name.clone()),
                        "protocol": proto_name(s.key.proto),
                        "inside": format!("{}:{}", s.key.inside, s.key.inside_port),
                        "outside": format!("{}:{}", s.translation.outside, s.translation.outside_port),
                        "remote": format!("{}:{}", s.key.remote, s.key.remote_port),
                        "state": s.state,
                        "idle_ms": s.idle.as_millis() as u64,
                        "expires_in_ms": s.expires_in.as_millis() as u64,
                    })
                })
                .collect();
            let c = st.nat.counters();
            let totals = serde_json::json!({
                "sessions": st.nat.len(),
                "matched": matched,
                "shown": sessions.len(),
                "created": c.created, "expired": c.expired, "flushed": c.flushed,
                "table_full": c.table_full, "ports_exhausted": c.ports_exhausted,
            });
            if json {
                return to_json(&serde_json::json!({ "sessions": sessions, "totals": totals }));
            }
            let mut s = format!(
                "{:<6} {:<8} {:<21} {:<21} {:<21} {:<12} {}\n",
                "Pro", "Uplink", "Inside local", "Inside global", "Outside", "State", "Expires"
            );
            for r in &sessions {
                s += &format!(
                    "{:<6} {:<8} {:<21} {:<21} {:<21} {:<12} {} s\n",
                    r["protocol"].as_str().unwrap_or(""),
                    r["uplink"].as_str().unwrap_or(""),
                    r["inside"].as_str().unwrap_or(""),
                    r["outside"].as_str().unwrap_or(""),
                    r["remote"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    r["expires_in_ms"].as_u64().unwrap_or(0) / 1000,
                );
            }
            s += &format!(
                "Total sessions: {} ({} matched, shown {}); created {}, expired {}, flushed {}, table full {}, ports exhausted {}\n",
                totals["sessions"],
                totals["matched"],
                totals["shown"],
                totals["created"],
                totals["expired"],
                totals["flushed"],
                totals["table_full"],
                totals["ports_exhausted"]
            );
            s
        }
        View::Arp => {
            let v = st.neigh.view(now);
            if json {
                let rows: Vec<serde_json::Value> = v.iter().map(|n| serde_json::json!({
                    "interface": iface_name(st.cfg, n.iface), "address": n.ip, "mac": n.mac, "age_ms": n.age_ms, "queued": n.queued,
                })).collect();
                return to_json(&serde_json::json!({ "arp": rows }));
            }
            let mut s = format!(
                "{:<10} {:<16} {:<18} {}\n",
                "Interface", "Address", "Hardware Addr", "Age (s)"
            );
            for n in &v {
                s += &format!(
                    "{:<10} {:<16} {:<18} {}\n",
                    iface_name(st.cfg, n.iface),
                    n.ip.to_string(),
                    n.mac.as_deref().unwrap_or("incomplete"),
                    n.age_ms / 1000
                );
            }
            s
        }
        View::Counters => {
            let t = st.totals.clone();
            if json {
                return to_json(&t);
            }
            let mut s = format!(
                "forwarded {}, punted {}, icmp errors sent {}, batches {} (avg {:.1} packets)\n",
                t.forwarded,
                t.punted,
                t.icmp_errors_sent,
                t.batches,
                if t.batches > 0 {
                    t.batch_packets as f64 / t.batches as f64
                } else {
                    0.0
                }
            );
            if t.gro_frames > 0 {
                s += &format!(
                    "gro: {} segments merged into {} frames for the LAN\n",
                    t.gro_segments, t.gro_frames
                );
            }
            s += "drops:\n";
            for (name, n) in &t.drops {
                s += &format!("  {name:<24} {n}\n");
            }
            s += "interfaces:\n";
            for (i, c) in t.ifaces.iter().enumerate() {
                let name = if i == 0 {
                    "lan".to_string()
                } else {
                    iface_name(st.cfg, Iface::Uplink(UplinkId(i as u8 - 1)))
                };
                s += &format!(
                    "  {name:<10} rx {} packets {} bytes, tx {} packets {} bytes\n",
                    c.rx_packets, c.rx_bytes, c.tx_packets, c.tx_bytes
                );
            }
            s
        }
    }
}

/// Which rule, route and uplink a flow would take now, and its NAT entry.
pub fn explain(st: &State, flow: FlowTuple, json: bool) -> String {
    let snap = &st.snap;
    let decision = snap.routes.lookup(&flow);
    let key = crate::nat::FlowKey {
        proto: flow.proto,
        inside: flow.src,
        inside_port: flow.src_port,
        remote: flow.dst,
        remote_port: flow.dst_port,
    };
    let existing = st.nat.peek_outbound(&key);
    let (egress, via, rule) = match decision {
        route::Decision::Local => ("router".to_string(), None, "local address".to_string()),
        route::Decision::Lan => ("lan".to_string(), None, "connected LAN".to_string()),
        route::Decision::Unreachable => (
            "none".to_string(),
            None,
            "no eligible route: ICMP unreachable".to_string(),
        ),
        route::Decision::Uplink {
            uplink,
            next_hop,
            route: r,
        } => (
            iface_name(st.cfg, Iface::Uplink(uplink)),
            Some(next_hop),
            match r {
                route::RouteRef::Connected => "connected uplink prefix".to_string(),
                route::RouteRef::Static(i) => format!(
                    "route {}",
                    st.cfg.routes.get(i).map_or("?", |r| r.name.as_str())
                ),
                route::RouteRef::Policy { policy, .. } => format!(
                    "policy {}",
                    st.cfg.policies.get(policy).map_or("?", |p| p.name.as_str())
                ),
            },
        ),
    };
    let nat = match (existing, decision) {
        (Some(t), _) => format!(
            "existing session on {}: {}:{} -> {}:{}",
            iface_name(st.cfg, Iface::Uplink(t.uplink)),
            flow.src,
            flow.src_port,
            t.outside,
            t.outside_port
        ),
        (None, route::Decision::Uplink { uplink, .. }) => match snap.uplink(uplink) {
            Some(u) if u.nat => format!(
                "new session: source {} translated to {} (port from the NAT range)",
                flow.src,
                u.address.addr()
            ),
            _ => "not translated (uplink without NAT)".to_string(),
        },
        _ => "not translated".to_string(),
    };
    let session_uplink = existing.map(|t| iface_name(st.cfg, Iface::Uplink(t.uplink)));
    if json {
        return to_json(&serde_json::json!({
            "egress": egress, "next_hop": via, "decided_by": rule, "nat": nat, "session_uplink": session_uplink,
        }));
    }
    let mut s = format!(
        "flow {} {}:{} -> {}:{}\n",
        proto_name(flow.proto),
        flow.src,
        flow.src_port,
        flow.dst,
        flow.dst_port
    );
    s += &format!("  decided by: {rule}\n  egress: {egress}");
    if let Some(nh) = via {
        s += &format!(" via {nh}");
    }
    s += &format!("\n  nat: {nat}\n");
    if let Some(u) = session_uplink {
        s += &format!("  (an existing flow stays on {u} for its life)\n");
    }
    s
}

fn describe_source(s: &CfgTrackSource) -> String {
    match s {
        CfgTrackSource::Probe { name, mode } => format!(
            "IP SLA {name} {}",
            match mode {
                crate::config::TrackMode::Reachability => "reachability",
                crate::config::TrackMode::State => "state",
            }
        ),
        CfgTrackSource::Carrier { uplink } => format!("Interface {uplink} line-protocol"),
        CfgTrackSource::List { members, op } => format!("List {op} of {}", members.join(", ")),
    }
}

fn proto_name(p: u8) -> String {
    match p {
        proto::TCP => "tcp".into(),
        proto::UDP => "udp".into(),
        proto::ICMP => "icmp".into(),
        n => n.to_string(),
    }
}

fn num(v: &serde_json::Value) -> String {
    v.as_f64().map_or("-".to_string(), |f| format!("{f:.2}"))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}
