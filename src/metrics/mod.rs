//! Prometheus metrics (SPEC 26): what a scrape shows ([`MetricsInput`], gathered by the control
//! thread with [`collect`]), its text form ([`render`]) and the HTTP listener ([`serve`]) that
//! asks the control thread for it.

pub(crate) mod http;
mod render;

pub use http::{MAX_HEAD, serve};
pub use render::render;

use std::net::IpAddr;
use std::time::SystemTime;

use crate::UplinkId;
use crate::config::Config;
use crate::control::vrrp::GroupStatus;
use crate::counters::{IfaceTotals, Totals};
use crate::dhcp::server::{Drop, LeaseState, Server, ServerCounters};
use crate::dns::tcp::TcpCounters;
use crate::dns::{DnsCounters, Forwarder};
use crate::nat::{ForwardStats, NatCounters, NatTable};
use crate::probe::schedule::ProbeStatus;
use crate::probe::stats::ProbeStatsView;
use crate::route::RouteTable;
use crate::route::table6::{self, Route6};
use crate::track::{TrackSet, TrackState};

/// Everything one scrape reports, as plain data.
#[derive(Debug, Clone, Default)]
pub struct MetricsInput {
    /// The LAN ("lan") first, then the uplinks by name.
    pub interfaces: Vec<InterfaceMetrics>,
    /// Drops by reason (`DropReason::name`), every reason present.
    pub drops: Vec<(String, u64)>,
    pub forwarded: u64,
    pub punted: u64,
    pub icmp_errors_sent: u64,
    /// Worker receive batches and the packets in them: their ratio is the mean batch size.
    pub batches: u64,
    pub batch_packets: u64,
    /// GSO super-frames GRO built for the LAN and the segments they carried.
    pub gro_frames: u64,
    pub gro_segments: u64,
    pub neighbour_changes: u64,
    /// MLD messages from the LAN, taken without action.
    pub mld: u64,
    pub uplinks: Vec<UplinkMetrics>,
    pub probes: Vec<ProbeMetrics>,
    pub tracks: Vec<TrackMetrics>,
    pub nat: NatMetrics,
    /// Static routes, in configuration order.
    pub routes: Vec<RouteMetrics>,
    pub config: ConfigMetrics,
    pub vrrp: Vec<GroupStatus>,
    /// DHCP server (SPEC 27): leases by state, messages by kind, drops by reason.
    pub dhcp_leases: Vec<(&'static str, usize)>,
    pub dhcp_messages: Vec<(&'static str, u64)>,
    pub dhcp_dropped: Vec<(&'static str, u64)>,
    /// DNS forwarder (SPEC 30) events by name.
    pub dns_events: Vec<(&'static str, u64)>,
    pub forwards: Vec<ForwardMetrics>,
    /// IPv6 (SPEC 32, 33): each LAN prefix as the RAs carry it, and the neighbours resolved.
    pub ipv6_prefixes: Vec<Ipv6PrefixMetrics>,
    pub ipv6_neighbours: usize,
    /// DHCPv6 prefix delegation clients (SPEC 32), one per delegated uplink.
    pub ipv6_pd: Vec<PdMetrics>,
}

#[derive(Debug, Clone, Default)]
pub struct PdMetrics {
    pub uplink: String,
    /// Whether the uplink holds a delegated prefix now.
    pub delegated: bool,
    pub sent: u64,
    /// Advertises and Replies taken.
    pub received: u64,
    /// Messages ignored: malformed, not ours, unusable.
    pub ignored: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Ipv6PrefixMetrics {
    pub uplink: String,
    /// The LAN /64.
    pub prefix: String,
    /// The preferred lifetime advertised: 0 while the uplink is down (deprecated).
    pub preferred_lifetime: u32,
}

#[derive(Debug, Clone, Default)]
pub struct RouteMetrics {
    pub name: String,
    pub prefix: String,
    pub uplink: String,
    pub distance: u8,
    /// In the forwarding table now (the lowest eligible distance for its prefix).
    pub installed: bool,
}

/// The outcome of the last configuration load (start or reload).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigMetrics {
    pub last_load_ok: bool,
    /// When the last successful load was applied, in seconds since the Unix epoch.
    pub last_success_unix_seconds: f64,
}

#[derive(Debug, Clone, Default)]
pub struct InterfaceMetrics {
    pub name: String,
    pub traffic: IfaceTotals,
}

#[derive(Debug, Clone, Default)]
pub struct UplinkMetrics {
    pub name: String,
    pub carrier: bool,
    /// Carrier up and something may still be routed through it (`RouteTable::uplink_usable`).
    pub usable: bool,
    pub nat_sessions: usize,
}

#[derive(Debug, Clone)]
pub struct ProbeMetrics {
    pub name: String,
    pub uplink: String,
    pub target: IpAddr,
    /// "icmp-echo", "tcp" or "dns" (`ProbeKind::name`).
    pub kind: &'static str,
    /// Times in milliseconds, as in `show probes`; the renderer converts them to seconds.
    pub stats: ProbeStatsView,
}

#[derive(Debug, Clone, Default)]
pub struct TrackMetrics {
    pub name: String,
    pub up: bool,
    /// Committed state changes since start.
    pub changes: u64,
}

/// A port forward's use (SPEC 13).
#[derive(Debug, Clone, Default)]
pub struct ForwardMetrics {
    pub name: String,
    pub stats: ForwardStats,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct NatMetrics {
    pub entries: usize,
    pub max_entries: usize,
    pub counters: NatCounters,
}

/// What the control thread holds, lent to [`collect`] for one scrape.
pub struct Sources<'a> {
    pub cfg: &'a Config,
    pub totals: Totals,
    /// Per uplink, by index.
    pub carrier: &'a [bool],
    pub routes: &'a RouteTable,
    /// The IPv6 routes as the snapshot has them (SPEC 34).
    pub routes6: &'a [Route6],
    pub nat: &'a NatTable,
    pub probes: &'a [ProbeStatus],
    pub tracks: &'a TrackSet,
    /// Whether the last load succeeded, and when the last successful one was applied.
    pub last_load: (bool, SystemTime),
    pub vrrp: Vec<GroupStatus>,
    pub dhcp: Option<&'a Server>,
    /// The DNS forwarder and its TCP relay.
    pub dns: Option<(&'a Forwarder, &'a TcpCounters)>,
    pub ipv6_prefixes: Vec<Ipv6PrefixMetrics>,
    pub ipv6_neighbours: usize,
    pub ipv6_pd: Vec<PdMetrics>,
}

/// Gathers a scrape from the control thread's state; keeps that glue out of the control thread.
pub fn collect(s: Sources<'_>) -> MetricsInput {
    let Totals {
        drops,
        ifaces,
        forwarded,
        punted,
        icmp_errors_sent,
        batches,
        batch_packets,
        gro_frames,
        gro_segments,
        neighbour_changes,
        mld,
    } = s.totals;
    let names = std::iter::once("lan").chain(s.cfg.uplinks.iter().map(|u| u.name.as_str()));
    let interfaces = names
        .zip(ifaces)
        .map(|(name, traffic)| InterfaceMetrics {
            name: name.to_string(),
            traffic,
        })
        .collect();
    let sessions = s.nat.len_by_uplink();
    let uplinks = s
        .cfg
        .uplinks
        .iter()
        .enumerate()
        .map(|(u, c)| UplinkMetrics {
            name: c.name.clone(),
            carrier: s.carrier.get(u).copied().unwrap_or(false),
            usable: u8::try_from(u).is_ok_and(|id| s.routes.uplink_usable(UplinkId(id))),
            nat_sessions: sessions.get(u).copied().unwrap_or(0),
        })
        .collect();
    let probes = s
        .probes
        .iter()
        .map(|p| ProbeMetrics {
            name: p.def.name.clone(),
            uplink: p.def.uplink.clone(),
            target: p.def.target,
            kind: p.def.kind.name(),
            stats: p.stats.view(),
        })
        .collect();
    let tracks = (0..s.tracks.len())
        .map(|t| TrackMetrics {
            name: s.tracks.name(t).to_string(),
            up: s.tracks.state(t) == TrackState::Up,
            changes: s.tracks.change_count(t),
        })
        .collect();
    let routes = s
        .routes
        .entries()
        .into_iter()
        .filter(|r| r.kind == "static")
        .map(|r| RouteMetrics {
            name: r.name,
            prefix: r.prefix,
            uplink: r.uplink,
            distance: r.distance,
            installed: r.installed,
        })
        .chain(s.routes6.iter().filter_map(|r| {
            let c = s.cfg.routes6.get(r.index)?;
            Some(RouteMetrics {
                name: c.name.clone(),
                prefix: c.prefix.to_string(),
                uplink: c.uplink.clone(),
                distance: c.distance,
                installed: table6::installed(s.routes6, r),
            })
        }))
        .collect();
    let (last_load_ok, last_success) = s.last_load;
    MetricsInput {
        routes,
        config: ConfigMetrics {
            last_load_ok,
            last_success_unix_seconds: last_success
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        },
        interfaces,
        drops,
        forwarded,
        punted,
        icmp_errors_sent,
        batches,
        batch_packets,
        gro_frames,
        gro_segments,
        neighbour_changes,
        mld,
        uplinks,
        probes,
        tracks,
        nat: NatMetrics {
            entries: s.nat.len(),
            max_entries: s.cfg.nat.max_entries,
            counters: s.nat.counters(),
        },
        vrrp: s.vrrp,
        dhcp_leases: s.dhcp.map(dhcp_leases).unwrap_or_default(),
        dhcp_messages: s
            .dhcp
            .map(|d| dhcp_messages(d.counters()))
            .unwrap_or_default(),
        dhcp_dropped: s
            .dhcp
            .map(|d| {
                Drop::ALL
                    .map(|r| (r.name(), d.counters().dropped(r)))
                    .to_vec()
            })
            .unwrap_or_default(),
        dns_events: s
            .dns
            .map(|(d, tcp)| dns_events(d.counters(), tcp))
            .unwrap_or_default(),
        forwards: s
            .nat
            .forwards()
            .iter()
            .zip(s.nat.forward_stats())
            .map(|(f, stats)| ForwardMetrics {
                name: f.name.clone(),
                stats,
            })
            .collect(),
        ipv6_prefixes: s.ipv6_prefixes,
        ipv6_neighbours: s.ipv6_neighbours,
        ipv6_pd: s.ipv6_pd,
    }
}

fn dhcp_leases(d: &Server) -> Vec<(&'static str, usize)> {
    let leases = d.leases();
    let count = |st| leases.iter().filter(|l| l.state == st).count();
    vec![
        ("bound", count(LeaseState::Bound)),
        ("offered", count(LeaseState::Offered)),
        ("probing", count(LeaseState::Probing)),
    ]
}

fn dhcp_messages(c: &ServerCounters) -> Vec<(&'static str, u64)> {
    vec![
        ("received", c.received),
        ("offer", c.offers),
        ("ack", c.acks),
        ("nak", c.naks),
        ("inform", c.informs),
        ("decline", c.declines),
        ("release", c.releases),
        ("arp_probe", c.probes),
        ("conflict", c.conflicts),
        ("expired", c.expired),
    ]
}

/// The forwarder's events, then the TCP relay's (`tcp_*`).
fn dns_events(c: &DnsCounters, t: &TcpCounters) -> Vec<(&'static str, u64)> {
    vec![
        ("query", c.queries),
        ("cache_hit", c.cache_hits),
        ("forwarded", c.forwarded),
        ("answered", c.answered),
        ("truncated", c.truncated),
        ("timeout", c.timeouts),
        ("no_upstream", c.no_upstream),
        ("rate_limited", c.rate_limited),
        ("malformed", c.malformed),
        ("pending_full", c.pending_full),
        ("unmatched", c.unmatched),
        ("tcp_accepted", t.accepted),
        ("tcp_refused_total", t.refused_total),
        ("tcp_refused_per_client", t.refused_per_client),
        ("tcp_query", t.queries),
        ("tcp_answer", t.answers),
        ("tcp_rate_limited", t.rate_limited),
        ("tcp_malformed", t.malformed),
        ("tcp_no_upstream", t.no_upstream),
        ("tcp_upstream_retry", t.upstream_retries),
        ("tcp_upstream_failed", t.upstream_failed),
        ("tcp_unmatched", t.unmatched),
        ("tcp_handshake_timeout", t.handshake_timeouts),
        ("tcp_idle_closed", t.idle_closed),
        ("tcp_lifetime_exceeded", t.lifetime_exceeded),
        ("tcp_closing_evicted", t.closing_evicted),
        ("tcp_stale", t.stale),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::Instant;
    use crate::counters::{Counters, DropReason};
    use crate::nat::{NatParams, NatTable};
    use crate::probe::schedule::ProbeSet;
    use crate::probe::stats::ProbeResult;
    use crate::route::{Health, Interfaces, UplinkIf};
    use crate::track::{TrackDef, TrackInput};

    const CONFIG: &str = r#"
[lan]
tap = "t0"
address = "192.168.0.1/24"

[[uplink]]
name = "isp-a"
interface = "wan-a"
address = "172.16.1.1/30"
next_hop = "172.16.1.2"

[[uplink]]
name = "isp-b"
interface = "wan-b"
address = "172.17.3.1/30"
next_hop = "172.17.3.2"

[[probe]]
name = "b-e2e"
type = "tcp"
port = 80
uplink = "isp-b"
target = "172.18.0.6"
"#;

    #[test]
    fn collect_names_and_indexes_line_up() {
        let cfg = Config::parse(CONFIG, "test.toml").expect("test config is valid");
        let now = Instant::from_millis(0);
        let counters = Counters::new(3);
        counters.rx(2, 1500);
        counters.dropped(DropReason::NoRoute);
        let ifaces = Interfaces {
            lan: cfg.lan.address,
            uplinks: cfg
                .uplinks
                .iter()
                .map(|u| UplinkIf {
                    name: u.name.clone(),
                    address: u.address,
                    next_hop: u.next_hop,
                })
                .collect(),
        };
        let carrier = [false, true];
        let health = Health {
            carrier: carrier.to_vec(),
            tracks: vec![],
        };
        let routes = RouteTable::build(ifaces, vec![], vec![], &health);
        let nat = NatTable::new(
            NatParams::default(),
            &[Some(cfg.uplinks[0].address.addr()), None],
        );
        let mut probes = ProbeSet::new(
            cfg.probes.clone(),
            |n| cfg.uplink_index(n).unwrap_or(0),
            0,
            now,
        );
        probes.probes[0]
            .stats
            .record(ProbeResult::Ok(Duration::from_millis(4)));
        let tracks = TrackSet::new(
            vec![TrackDef {
                name: "b-carrier".into(),
                input: TrackInput::Carrier { uplink: 1 },
                delay_down: Duration::ZERO,
                delay_up: Duration::ZERO,
            }],
            now,
        );
        let m = collect(Sources {
            cfg: &cfg,
            totals: Totals::sum([&counters]),
            carrier: &carrier,
            routes: &routes,
            routes6: &[],
            nat: &nat,
            dhcp: None,
            dns: None,
            probes: &probes.probes.iter().map(|p| p.status()).collect::<Vec<_>>(),
            tracks: &tracks,
            last_load: (false, SystemTime::UNIX_EPOCH + Duration::from_secs(1000)),
            vrrp: Vec::new(),
            ipv6_prefixes: Vec::new(),
            ipv6_neighbours: 0,
            ipv6_pd: Vec::new(),
        });
        let names: Vec<_> = m.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lan", "isp-a", "isp-b"]);
        assert_eq!(m.interfaces[2].traffic.rx_bytes, 1500);
        assert_eq!(m.interfaces[1].traffic.rx_bytes, 0);
        assert_eq!(
            m.drops.iter().find(|(n, _)| n == "no_route").map(|d| d.1),
            Some(1)
        );
        assert_eq!(m.uplinks[0].name, "isp-a");
        assert!(!m.uplinks[0].carrier && !m.uplinks[0].usable);
        assert!(m.uplinks[1].carrier && m.uplinks[1].usable);
        assert_eq!(m.probes[0].kind, "tcp");
        assert_eq!(m.probes[0].uplink, "isp-b");
        assert_eq!(m.probes[0].stats.ok, 1);
        assert_eq!(m.tracks[0].name, "b-carrier");
        assert_eq!(m.nat.max_entries, cfg.nat.max_entries);
        assert!(render(&m).contains("mhrouter_uplink_usable{uplink=\"isp-b\"} 1\n"));
        assert!(!m.config.last_load_ok);
        assert_eq!(m.config.last_success_unix_seconds, 1000.0);
        assert!(
            m.routes.is_empty(),
            "connected prefixes are not routes here"
        );
    }
}
