//! The `show` and `explain` views of the control socket: the router's state rendered as text
//! for people and as JSON with a stable schema (README "JSON views"). Pure: the control thread
//! hands over a `State` and gets a string back. Each view is built as typed rows that serialize
//! to the JSON and display as the text, so both forms come from the same values.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

mod explain;
mod explain6;
mod forwards;
mod ipv6;
mod routes6;

use crate::clock::Instant;
use crate::config::{Config, TrackSource};
use crate::control::socket::View;
use crate::control::vrrp::GroupStatus;
use crate::counters::Totals;
use crate::dhcp::client::Client;
use crate::dhcp::server::{LeaseState, Server};
use crate::nat::NatTable;
use crate::neigh::NeighTable;
use crate::probe::schedule::ProbeStatus;
use crate::probe::stats::ProbeStatsView;
use crate::route;
use crate::snapshot::Snapshot;
use crate::track::{TrackSet, TrackState};
use crate::wire::ipv4::proto;
use crate::{Iface, UplinkId};

mod vrrp;

pub use explain::explain;
pub use explain6::explain6;
pub use ipv6::{Ipv6Info, PdInfo};

/// Everything a view reads.
pub struct State<'a> {
    pub cfg: &'a Config,
    pub snap: std::sync::Arc<Snapshot>,
    pub carrier: &'a [bool],
    pub totals: Totals,
    pub nat: &'a NatTable,
    pub probes: std::sync::Arc<Vec<ProbeStatus>>,
    pub tracks: &'a TrackSet,
    pub neigh: &'a NeighTable,
    pub vrrp: Vec<GroupStatus>,
    /// The LAN's DHCP server, when configured.
    pub dhcp: Option<&'a Server>,
    /// Per uplink, its DHCP client (`address = "dhcp"`).
    pub uplink_dhcp: Vec<Option<&'a Client>>,
    /// IPv6 prefixes and neighbours, when IPv6 is on.
    pub ipv6: Option<Ipv6Info>,
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
                to_json(&RouteView {
                    gateway_of_last_resort: snap.routes.gateway_of_last_resort().map(
                        |(next_hop, egress)| Gateway {
                            next_hop,
                            uplink: Some(iface_name(st.cfg, egress)),
                        },
                    ),
                    routes: snap.routes.entries(),
                    routes6: routes6::rows(st),
                    policies6: routes6::policy_rows(&st.cfg.policies6),
                })
            } else {
                let v6 =
                    routes6::render(&routes6::rows(st), &routes6::policy_rows(&st.cfg.policies6));
                snap.routes.render(&st.tracks.names()) + &v6
            }
        }
        View::Uplinks => {
            let by_uplink = st.nat.len_by_uplink();
            let rows: Vec<UplinkRow> = st
                .cfg
                .uplinks
                .iter()
                .enumerate()
                .map(|(u, c)| {
                    let id = UplinkId(u as u8);
                    let s = &snap.uplinks[u];
                    let t = st.totals.ifaces.get(1 + u).cloned().unwrap_or_default();
                    UplinkRow {
                        name: c.name.clone(),
                        interface: c.interface.clone(),
                        address: c.address.to_string(),
                        next_hop: c.next_hop,
                        next_hop_mac: st
                            .neigh
                            .lookup(Iface::Uplink(id), c.next_hop)
                            .map(|m| m.to_string()),
                        mac: s.mac.to_string(),
                        mtu: s.mtu,
                        carrier: st.carrier[u],
                        usable: snap.routes.uplink_usable(id),
                        nat: c.nat,
                        nat_sessions: by_uplink.get(u).copied().unwrap_or(0),
                        rx_packets: t.rx_packets,
                        rx_bytes: t.rx_bytes,
                        rx_dropped: t.rx_dropped,
                        tx_packets: t.tx_packets,
                        tx_bytes: t.tx_bytes,
                        dhcp: st.uplink_dhcp.get(u).copied().flatten().map(|c| {
                            let secs = |t: Instant| t.saturating_since(now).as_secs();
                            let l = c.lease();
                            DhcpClientRow {
                                state: c.state().name(),
                                server: l.map(|l| l.server),
                                lease_s: l.map(|l| l.lease_time.as_secs()),
                                renew_in_s: l.map(|l| secs(l.renew_at())),
                                rebind_in_s: l.map(|l| secs(l.rebind_at())),
                                expires_in_s: l.map(|l| secs(l.expires_at())),
                            }
                        }),
                    }
                })
                .collect();
            rows_view("uplinks", &rows, json)
        }
        View::Probes => {
            let rows: Vec<ProbeRow> = st
                .probes
                .iter()
                .map(|p| ProbeRow {
                    name: p.def.name.clone(),
                    kind: p.def.kind.name(),
                    uplink: p.def.uplink.clone(),
                    target: p.def.target,
                    interval_ms: p.def.interval.as_millis() as u64,
                    timeout_ms: p.def.timeout.as_millis() as u64,
                    threshold_ms: p.def.threshold.as_millis() as u64,
                    stats: p.stats.view(),
                })
                .collect();
            rows_view("probes", &rows, json)
        }
        View::Tracks => {
            let rows: Vec<TrackRow> = (0..st.tracks.len())
                .map(|t| {
                    let cfg = st.cfg.tracks.get(t);
                    TrackRow {
                        name: st.tracks.name(t).to_string(),
                        state: st.tracks.state(t),
                        changes: st.tracks.change_count(t),
                        source: cfg.map(|c| describe_source(&c.source)),
                        delay_down_ms: cfg.map(|c| c.delay_down.as_millis() as u64),
                        delay_up_ms: cfg.map(|c| c.delay_up.as_millis() as u64),
                        pending: st.tracks.pending(t, now).map(|(to, left)| PendingChange {
                            to,
                            left_ms: left.as_millis() as u64,
                        }),
                    }
                })
                .collect();
            rows_view("tracks", &rows, json)
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
            let sessions: Vec<SessionRow> = rows
                .into_iter()
                .map(|s| SessionRow {
                    uplink: st
                        .cfg
                        .uplinks
                        .get(s.translation.uplink.0 as usize)
                        .map(|u| u.name.clone()),
                    protocol: proto_name(s.key.proto),
                    inside: format!("{}:{}", s.key.inside, s.key.inside_port),
                    outside: format!("{}:{}", s.translation.outside, s.translation.outside_port),
                    remote: format!("{}:{}", s.key.remote, s.key.remote_port),
                    state: s.state,
                    forward: s
                        .forward
                        .and_then(|i| st.nat.forwards().get(i))
                        .map(|f| f.name.clone()),
                    idle_ms: s.idle.as_millis() as u64,
                    expires_in_ms: s.expires_in.as_millis() as u64,
                })
                .collect();
            let c = st.nat.counters();
            let totals = NatTotals {
                sessions: st.nat.len(),
                matched,
                shown: sessions.len(),
                created: c.created,
                expired: c.expired,
                flushed: c.flushed,
                table_full: c.table_full,
                ports_exhausted: c.ports_exhausted,
            };
            if json {
                return to_json(&NatView { sessions, totals });
            }
            let mut s = format!(
                "{:<6} {:<8} {:<21} {:<21} {:<21} {:<12} {:<8} {}\n",
                "Pro",
                "Uplink",
                "Inside local",
                "Inside global",
                "Outside",
                "State",
                "Expires",
                "Forward"
            );
            for r in &sessions {
                s += &r.to_string();
            }
            s + &totals.to_string()
        }
        View::Forwards => forwards::show(st, json),
        View::Arp => {
            let rows: Vec<ArpRow> = st
                .neigh
                .view(now)
                .into_iter()
                .map(|n| ArpRow {
                    interface: iface_name(st.cfg, n.iface),
                    address: n.ip,
                    mac: n.mac,
                    age_ms: n.age_ms,
                    queued: n.queued,
                })
                .collect();
            if json {
                return rows_view("arp", &rows, true);
            }
            format!(
                "{:<10} {:<16} {:<18} {}\n",
                "Interface", "Address", "Hardware Addr", "Age (s)"
            ) + &rows_view("arp", &rows, false)
        }
        View::DhcpLeases => {
            let rows: Vec<LeaseRow> = st
                .dhcp
                .map(Server::leases)
                .unwrap_or_default()
                .into_iter()
                .map(|l| LeaseRow {
                    address: l.ip,
                    mac: l.mac.to_string(),
                    state: match l.state {
                        LeaseState::Probing => "probing",
                        LeaseState::Offered => "offered",
                        LeaseState::Bound => "bound",
                    },
                    expires_in_s: l.expires.saturating_since(now).as_secs(),
                    hostname: l.hostname,
                })
                .collect();
            if json {
                return rows_view("leases", &rows, true);
            }
            if st.dhcp.is_none() {
                return "no [dhcp_server] configured\n".to_string();
            }
            format!(
                "{:<16} {:<18} {:<8} {:>10}  {}\n",
                "Address", "Hardware Addr", "State", "Expires (s)", "Hostname"
            ) + &rows_view("leases", &rows, false)
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
            s += &format!("neighbour changes {}\n", t.neighbour_changes);
            s += &format!("mld messages {}\n", t.mld);
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
        View::Vrrp => rows_view("vrrp", &vrrp::rows(st), json),
        View::Ipv6 => ipv6::show(st, json),
    }
}

/// `{ "<key>": [rows] }` as JSON, or the rows' text one after the other.
fn rows_view<R: Serialize + fmt::Display>(key: &str, rows: &[R], json: bool) -> String {
    if json {
        return to_json(&BTreeMap::from([(key, rows)]));
    }
    rows.iter().map(R::to_string).collect()
}

#[derive(Serialize)]
struct RouteView {
    gateway_of_last_resort: Option<Gateway>,
    routes: Vec<route::RouteEntryView>,
    /// The IPv6 routes (SPEC 34), in configuration order.
    routes6: Vec<routes6::Route6Row>,
    policies6: Vec<routes6::Policy6Row>,
}

#[derive(Serialize)]
struct Gateway {
    next_hop: Ipv4Addr,
    uplink: Option<String>,
}

/// One uplink in `show uplinks`.
#[derive(Serialize)]
struct UplinkRow {
    name: String,
    interface: String,
    address: String,
    next_hop: Ipv4Addr,
    next_hop_mac: Option<String>,
    mac: String,
    mtu: usize,
    carrier: bool,
    usable: bool,
    nat: bool,
    nat_sessions: usize,
    rx_packets: u64,
    rx_bytes: u64,
    rx_dropped: u64,
    tx_packets: u64,
    tx_bytes: u64,
    /// With `address = "dhcp"`: the client's state and its lease's timers.
    dhcp: Option<DhcpClientRow>,
}

#[derive(Serialize)]
struct DhcpClientRow {
    state: &'static str,
    server: Option<Ipv4Addr>,
    lease_s: Option<u64>,
    renew_in_s: Option<u64>,
    rebind_in_s: Option<u64>,
    expires_in_s: Option<u64>,
}

impl fmt::Display for UplinkRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({}): {} next hop {} [{}], carrier {}, {}",
            self.name,
            self.interface,
            self.address,
            self.next_hop,
            self.next_hop_mac.as_deref().unwrap_or("unresolved"),
            if self.carrier { "up" } else { "down" },
            if self.usable { "usable" } else { "not usable" },
        )?;
        writeln!(
            f,
            "  mac {} mtu {}, NAT {} ({} sessions)",
            self.mac,
            self.mtu,
            if self.nat { "on" } else { "off" },
            self.nat_sessions
        )?;
        writeln!(
            f,
            "  rx {} packets {} bytes ({} dropped), tx {} packets {} bytes",
            self.rx_packets, self.rx_bytes, self.rx_dropped, self.tx_packets, self.tx_bytes
        )?;
        match &self.dhcp {
            Some(DhcpClientRow {
                state,
                server: Some(server),
                lease_s: Some(lease),
                renew_in_s: Some(t1),
                rebind_in_s: Some(t2),
                expires_in_s: Some(exp),
            }) => writeln!(
                f,
                "  DHCP {state} from {server}: lease {lease} s, renew in {t1} s, rebind in {t2} s, expires in {exp} s"
            ),
            Some(d) => writeln!(f, "  DHCP {}, no lease", d.state),
            None => Ok(()),
        }
    }
}

/// One probe in `show probes`.
#[derive(Serialize)]
struct ProbeRow {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    uplink: String,
    target: IpAddr,
    interval_ms: u64,
    timeout_ms: u64,
    threshold_ms: u64,
    stats: ProbeStatsView,
}

impl fmt::Display for ProbeRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = &self.stats;
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        writeln!(
            f,
            "IP SLA {} ({} to {} via {}), interval {} ms, timeout {} ms, threshold {} ms",
            self.name,
            self.kind,
            self.target,
            self.uplink,
            self.interval_ms,
            self.timeout_ms,
            self.threshold_ms
        )?;
        writeln!(
            f,
            "  latest: {}, last rtt {} ms; avg/min/max {}/{}/{} ms, jitter {} ms",
            st.last.unwrap_or("none"),
            ms(st.last_rtt_ms),
            ms(st.avg_rtt_ms),
            ms(st.min_rtt_ms),
            ms(st.max_rtt_ms),
            ms(st.jitter_ms),
        )?;
        writeln!(
            f,
            "  sent {}, ok {}, over threshold {}, timeouts {}; loss {}/{} ({:.1}%)",
            st.sent,
            st.ok,
            st.over_threshold,
            st.timeouts,
            st.window_lost,
            st.window_attempts,
            st.loss_percent,
        )
    }
}

/// One track in `show tracks`.
#[derive(Serialize)]
struct TrackRow {
    name: String,
    state: TrackState,
    changes: u64,
    source: Option<String>,
    delay_down_ms: Option<u64>,
    delay_up_ms: Option<u64>,
    pending: Option<PendingChange>,
}

#[derive(Serialize)]
struct PendingChange {
    to: TrackState,
    left_ms: u64,
}

impl fmt::Display for TrackRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        writeln!(
            f,
            "Track {}\n  {}\n  State is {}, {} changes\n  Delay up {} ms, down {} ms",
            self.name,
            self.source.as_deref().unwrap_or(""),
            self.state,
            self.changes,
            ms(self.delay_up_ms),
            ms(self.delay_down_ms),
        )?;
        if let Some(p) = &self.pending {
            writeln!(f, "  Change to {} pending, {} ms left", p.to, p.left_ms)?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct NatView {
    sessions: Vec<SessionRow>,
    totals: NatTotals,
}

/// One NAT session in `show nat`.
#[derive(Serialize)]
struct SessionRow {
    uplink: Option<String>,
    protocol: String,
    inside: String,
    outside: String,
    remote: String,
    state: &'static str,
    /// The port forward that opened the session.
    forward: Option<String>,
    idle_ms: u64,
    expires_in_ms: u64,
}

impl fmt::Display for SessionRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<6} {:<8} {:<21} {:<21} {:<21} {:<12} {:<8} {}",
            self.protocol,
            self.uplink.as_deref().unwrap_or(""),
            self.inside,
            self.outside,
            self.remote,
            self.state,
            format!("{} s", self.expires_in_ms / 1000),
            self.forward.as_deref().unwrap_or(""),
        )
    }
}

#[derive(Serialize)]
struct NatTotals {
    sessions: usize,
    matched: usize,
    shown: usize,
    created: u64,
    expired: u64,
    flushed: u64,
    table_full: u64,
    ports_exhausted: u64,
}

impl fmt::Display for NatTotals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Total sessions: {} ({} matched, shown {}); created {}, expired {}, flushed {}, table full {}, ports exhausted {}",
            self.sessions,
            self.matched,
            self.shown,
            self.created,
            self.expired,
            self.flushed,
            self.table_full,
            self.ports_exhausted
        )
    }
}

/// One lease (or offer) in `show dhcp leases`.
#[derive(Serialize)]
struct LeaseRow {
    address: Ipv4Addr,
    mac: String,
    state: &'static str,
    expires_in_s: u64,
    hostname: Option<String>,
}

impl fmt::Display for LeaseRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:<18} {:<8} {:>10}  {}",
            self.address,
            self.mac,
            self.state,
            self.expires_in_s,
            self.hostname.as_deref().unwrap_or("-")
        )
    }
}

/// One neighbour in `show arp`.
#[derive(Serialize)]
struct ArpRow {
    interface: String,
    address: Ipv4Addr,
    mac: Option<String>,
    age_ms: u64,
    queued: usize,
}

impl fmt::Display for ArpRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:<16} {:<18} {}",
            self.interface,
            self.address.to_string(),
            self.mac.as_deref().unwrap_or("incomplete"),
            self.age_ms / 1000
        )
    }
}

fn describe_source(s: &TrackSource) -> String {
    match s {
        TrackSource::Probe { name, mode } => format!(
            "IP SLA {name} {}",
            match mode {
                crate::config::TrackMode::Reachability => "reachability",
                crate::config::TrackMode::State => "state",
            }
        ),
        TrackSource::Carrier { uplink } => format!("Interface {uplink} line-protocol"),
        TrackSource::List { members, op } => format!("List {op} of {}", members.join(", ")),
    }
}

fn proto_name(p: u8) -> String {
    match p {
        proto::TCP => "tcp".into(),
        proto::UDP => "udp".into(),
        proto::ICMP => "icmp".into(),
        crate::wire::ipv6::next_header::ICMPV6 => "icmpv6".into(),
        n => n.to_string(),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::probe::stats::{ProbeResult, ProbeStats};

    fn json(v: &impl Serialize) -> serde_json::Value {
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn probe_row_text_and_json_come_from_the_same_values() {
        let mut stats = ProbeStats::new(20);
        stats.record(ProbeResult::Ok(Duration::from_millis(4)));
        let row = ProbeRow {
            name: "a-ping".into(),
            kind: "icmp-echo",
            uplink: "isp-a".into(),
            target: Ipv4Addr::new(198, 51, 100, 1).into(),
            interval_ms: 1000,
            timeout_ms: 500,
            threshold_ms: 200,
            stats: stats.view(),
        };
        let j = json(&row);
        assert_eq!(j["type"], "icmp-echo");
        assert_eq!(j["target"], "198.51.100.1");
        assert_eq!(j["stats"]["last"], "ok");
        assert_eq!(j["stats"]["last_rtt_ms"], 4.0);
        assert_eq!(
            row.to_string(),
            "IP SLA a-ping (icmp-echo to 198.51.100.1 via isp-a), interval 1000 ms, timeout 500 ms, threshold 200 ms\n  latest: ok, last rtt 4.00 ms; avg/min/max 4.00/4.00/4.00 ms, jitter - ms\n  sent 1, ok 1, over threshold 0, timeouts 0; loss 0/1 (0.0%)\n"
        );
    }

    #[test]
    fn track_row_shows_a_pending_change() {
        let row = TrackRow {
            name: "a-e2e".into(),
            state: TrackState::Up,
            changes: 3,
            source: Some("IP SLA a-ping reachability".into()),
            delay_down_ms: Some(2000),
            delay_up_ms: Some(5000),
            pending: Some(PendingChange {
                to: TrackState::Down,
                left_ms: 1500,
            }),
        };
        let j = json(&row);
        assert_eq!(j["state"], "up");
        assert_eq!(j["pending"]["to"], "down");
        assert_eq!(
            row.to_string(),
            "Track a-e2e\n  IP SLA a-ping reachability\n  State is up, 3 changes\n  Delay up 5000 ms, down 2000 ms\n  Change to down pending, 1500 ms left\n"
        );
    }

    #[test]
    fn rows_view_wraps_json_rows_under_their_key() {
        let rows = vec![ArpRow {
            interface: "lan".into(),
            address: Ipv4Addr::new(192, 168, 0, 10),
            mac: None,
            age_ms: 2500,
            queued: 1,
        }];
        let j: serde_json::Value = serde_json::from_str(&rows_view("arp", &rows, true)).unwrap();
        assert_eq!(j["arp"][0]["address"], "192.168.0.10");
        assert_eq!(j["arp"][0]["mac"], serde_json::Value::Null);
        assert_eq!(
            rows_view("arp", &rows, false),
            "lan        192.168.0.10     incomplete         2\n"
        );
    }
}
