//! Prometheus text exposition format 0.0.4. Every family gets a HELP and a TYPE line, even with
//! no samples, so the set of names does not depend on the configuration. Names carry their unit
//! (`_bytes`, `_seconds`, `_ratio`) and counters end in `_total`.

use std::fmt::{self, Write};

use super::{ForwardMetrics, MetricsInput, ProbeMetrics, UplinkMetrics};
use crate::control::vrrp::{GroupStatus, VrrpState};
use crate::counters::IfaceTotals;
use crate::probe::stats::{ProbeStatsView, RTT_BUCKETS};

/// The text a scrape returns.
pub fn render(m: &MetricsInput) -> String {
    let mut e = Exposition::default();

    e.gauge(
        "mhrouter_build_info",
        "Always 1; the labels say which build is running.",
    )
    .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1u64);
    e.gauge(
        "mhrouter_config_last_reload_successful",
        "1 when the last configuration load (start or reload) succeeded, 0 when it was rejected.",
    )
    .sample(&[], m.config.last_load_ok);
    e.gauge(
        "mhrouter_config_last_reload_success_timestamp_seconds",
        "When the running configuration was applied, in seconds since the Unix epoch.",
    )
    .sample(&[], m.config.last_success_unix_seconds);

    let traffic: [Getter<IfaceTotals, u64>; 5] = [
        (
            "mhrouter_interface_receive_packets_total",
            "Packets received on the interface (lan or an uplink).",
            |t| t.rx_packets,
        ),
        (
            "mhrouter_interface_receive_bytes_total",
            "Bytes received on the interface (lan or an uplink).",
            |t| t.rx_bytes,
        ),
        (
            "mhrouter_interface_receive_dropped_total",
            "Packets received on the interface and dropped (reasons: mhrouter_packets_dropped_total).",
            |t| t.rx_dropped,
        ),
        (
            "mhrouter_interface_transmit_packets_total",
            "Packets sent on the interface (lan or an uplink).",
            |t| t.tx_packets,
        ),
        (
            "mhrouter_interface_transmit_bytes_total",
            "Bytes sent on the interface (lan or an uplink).",
            |t| t.tx_bytes,
        ),
    ];
    for (name, help, get) in traffic {
        let mut f = e.counter(name, help);
        for i in &m.interfaces {
            f.sample(&[("interface", &i.name)], get(&i.traffic));
        }
    }
    let mut f = e.counter(
        "mhrouter_packets_dropped_total",
        "Packets dropped, by reason.",
    );
    for (reason, n) in &m.drops {
        f.sample(&[("reason", reason)], *n);
    }
    let totals = [
        (
            "mhrouter_packets_forwarded_total",
            "Packets forwarded by the workers.",
            m.forwarded,
        ),
        (
            "mhrouter_packets_punted_total",
            "Packets handed to the control thread.",
            m.punted,
        ),
        (
            "mhrouter_icmp_errors_sent_total",
            "ICMP errors the router sent.",
            m.icmp_errors_sent,
        ),
        (
            "mhrouter_worker_batches_total",
            "Receive batches processed by the workers.",
            m.batches,
        ),
        (
            "mhrouter_worker_batch_packets_total",
            "Packets in the workers' receive batches (divided by batches: the mean batch size).",
            m.batch_packets,
        ),
        (
            "mhrouter_gro_frames_total",
            "GSO super-frames built from TCP segments bound for the LAN.",
            m.gro_frames,
        ),
        (
            "mhrouter_gro_segments_total",
            "TCP segments merged into those super-frames.",
            m.gro_segments,
        ),
        (
            "mhrouter_neighbour_changes_total",
            "Neighbour (ARP) entries learned or changed.",
            m.neighbour_changes,
        ),
        (
            "mhrouter_mld_messages_total",
            "MLD messages from LAN hosts, taken without action (no multicast routing).",
            m.mld,
        ),
    ];
    for (name, help, v) in totals {
        e.counter(name, help).sample(&[], v);
    }

    let uplink: [Getter<UplinkMetrics, Value>; 3] = [
        (
            "mhrouter_uplink_carrier",
            "1 when the uplink's NIC has carrier.",
            |u| u.carrier.into(),
        ),
        (
            "mhrouter_uplink_usable",
            "1 when the uplink has carrier and may carry traffic.",
            |u| u.usable.into(),
        ),
        (
            "mhrouter_uplink_nat_sessions",
            "NAT sessions on the uplink.",
            |u| u.nat_sessions.into(),
        ),
    ];
    for (name, help, get) in uplink {
        let mut f = e.gauge(name, help);
        for u in &m.uplinks {
            f.sample(&[("uplink", &u.name)], get(u));
        }
    }

    let targets: Vec<String> = m.probes.iter().map(|p| p.target.to_string()).collect();
    let probes = || m.probes.iter().zip(&targets);
    let mut f = e.counter("mhrouter_probe_sent_total", "Probe attempts.");
    for (p, t) in probes() {
        f.sample(&probe_labels(p, t), p.stats.sent);
    }
    let mut f = e.counter(
        "mhrouter_probe_results_total",
        "Ended probe attempts by result: ok, over_threshold (reply slower than the threshold) or timeout.",
    );
    for (p, t) in probes() {
        let [a, b, c, d] = probe_labels(p, t);
        let s = &p.stats;
        for (result, n) in [
            ("ok", s.ok),
            ("over_threshold", s.over_threshold),
            ("timeout", s.timeouts),
        ] {
            f.sample(&[a, b, c, d, ("result", result)], n);
        }
    }
    let rtt: [Getter<ProbeStatsView, Option<f64>>; 5] = [
        (
            "mhrouter_probe_rtt_last_seconds",
            "Round-trip time of the latest reply.",
            |s| s.last_rtt_ms,
        ),
        (
            "mhrouter_probe_rtt_average_seconds",
            "Mean round-trip time of all replies.",
            |s| s.avg_rtt_ms,
        ),
        (
            "mhrouter_probe_rtt_min_seconds",
            "Shortest round-trip time of all replies.",
            |s| s.min_rtt_ms,
        ),
        (
            "mhrouter_probe_rtt_max_seconds",
            "Longest round-trip time of all replies.",
            |s| s.max_rtt_ms,
        ),
        (
            "mhrouter_probe_jitter_seconds",
            "Smoothed RTT variation between consecutive replies (RFC 3550).",
            |s| s.jitter_ms,
        ),
    ];
    // A probe without replies has no RTT: its series is absent rather than a made-up zero.
    for (name, help, get) in rtt {
        let mut f = e.gauge(name, help);
        for (p, t) in probes() {
            if let Some(ms) = get(&p.stats) {
                f.sample(&probe_labels(p, t), ms / 1000.0);
            }
        }
    }
    let mut f = e.histogram(
        "mhrouter_probe_rtt_seconds",
        "Round-trip times of the probe's replies (timeouts have none).",
    );
    for (p, t) in probes() {
        let [a, b, c, d] = probe_labels(p, t);
        let h = &p.stats.rtt_histogram;
        for (le, n) in RTT_BUCKETS.iter().zip(h.buckets) {
            f.sample_of("_bucket", &[a, b, c, d, ("le", &le.to_string())], n);
        }
        f.sample_of("_bucket", &[a, b, c, d, ("le", "+Inf")], h.count);
        f.sample_of("_sum", &[a, b, c, d], h.sum_seconds);
        f.sample_of("_count", &[a, b, c, d], h.count);
    }
    let mut f = e.gauge(
        "mhrouter_probe_loss_ratio",
        "Share of the recent attempts (the loss window) that timed out, 0 to 1.",
    );
    for (p, t) in probes() {
        let s = &p.stats;
        if s.window_attempts > 0 {
            f.sample(
                &probe_labels(p, t),
                s.window_lost as f64 / s.window_attempts as f64,
            );
        }
    }

    let mut f = e.gauge(
        "mhrouter_track_up",
        "1 when the track's committed state is up.",
    );
    for t in &m.tracks {
        f.sample(&[("track", &t.name)], t.up);
    }
    let mut f = e.counter(
        "mhrouter_track_changes_total",
        "Committed state changes of the track.",
    );
    for t in &m.tracks {
        f.sample(&[("track", &t.name)], t.changes);
    }

    let mut f = e.gauge(
        "mhrouter_route_installed",
        "1 when the static route is in the forwarding table (lowest eligible distance), else 0.",
    );
    for r in &m.routes {
        let distance = r.distance.to_string();
        f.sample(
            &[
                ("route", &r.name),
                ("prefix", &r.prefix),
                ("uplink", &r.uplink),
                ("distance", &distance),
            ],
            r.installed,
        );
    }
    let vrid = |g: &GroupStatus| g.vrid.to_string();
    let mut f = e.gauge(
        "mhrouter_vrrp_master",
        "1 while the router is master of the VRRP group (SPEC 29).",
    );
    for g in &m.vrrp {
        f.sample(&[("vrid", &vrid(g))], g.state == VrrpState::Master);
    }
    let mut f = e.gauge(
        "mhrouter_vrrp_priority",
        "Effective VRRP priority: configured minus the decrements of the tracks down.",
    );
    for g in &m.vrrp {
        f.sample(&[("vrid", &vrid(g))], u64::from(g.priority));
    }
    let mut f = e.counter(
        "mhrouter_vrrp_transitions_total",
        "VRRP state changes of the group.",
    );
    for g in &m.vrrp {
        f.sample(&[("vrid", &vrid(g))], g.transitions);
    }
    let mut f = e.counter(
        "mhrouter_vrrp_adverts_sent_total",
        "VRRP advertisements sent for the group.",
    );
    for g in &m.vrrp {
        f.sample(&[("vrid", &vrid(g))], g.adverts_sent);
    }
    let mut f = e.counter(
        "mhrouter_vrrp_adverts_received_total",
        "VRRP advertisements received and used for the group.",
    );
    for g in &m.vrrp {
        f.sample(&[("vrid", &vrid(g))], g.adverts_received);
    }

    let n = &m.nat;
    e.gauge(
        "mhrouter_nat_entries",
        "NAT sessions in the table, all uplinks.",
    )
    .sample(&[], n.entries);
    e.gauge(
        "mhrouter_nat_max_entries",
        "Configured size limit of the NAT table.",
    )
    .sample(&[], n.max_entries);
    let c = &n.counters;
    let nat = [
        (
            "mhrouter_nat_sessions_created_total",
            "NAT sessions created.",
            c.created,
        ),
        (
            "mhrouter_nat_sessions_expired_total",
            "NAT sessions removed when idle.",
            c.expired,
        ),
        (
            "mhrouter_nat_sessions_flushed_total",
            "NAT sessions removed because their uplink went away.",
            c.flushed,
        ),
        (
            "mhrouter_nat_table_full_total",
            "New flows refused because the NAT table was full.",
            c.table_full,
        ),
        (
            "mhrouter_nat_ports_exhausted_total",
            "New flows refused because the uplink had no free outside port.",
            c.ports_exhausted,
        ),
    ];
    for (name, help, v) in nat {
        e.counter(name, help).sample(&[], v);
    }

    let mut f = e.gauge(
        "mhrouter_dhcp_leases",
        "DHCP server addresses by state (bound, offered, probing).",
    );
    for &(state, n) in &m.dhcp_leases {
        f.sample(&[("state", state)], n);
    }
    let mut f = e.counter(
        "mhrouter_dhcp_messages_total",
        "DHCP server messages received and sent, ARP probes, conflicts and expiries, by kind.",
    );
    for &(kind, n) in &m.dhcp_messages {
        f.sample(&[("kind", kind)], n);
    }
    let mut f = e.counter(
        "mhrouter_dhcp_dropped_total",
        "DHCP requests dropped or refused, by reason.",
    );
    for &(reason, n) in &m.dhcp_dropped {
        f.sample(&[("reason", reason)], n);
    }
    let mut f = e.counter(
        "mhrouter_dns_events_total",
        "DNS forwarder queries, answers, cache hits and failures, by event.",
    );
    for &(event, n) in &m.dns_events {
        f.sample(&[("event", event)], n);
    }
    let forwards: [Getter<ForwardMetrics, u64>; 2] = [
        (
            "mhrouter_forward_hits_total",
            "Connections a port forward opened (its sessions created).",
            |f| f.stats.hits,
        ),
        (
            "mhrouter_forward_refused_total",
            "New connections a port forward's allow list refused.",
            |f| f.stats.refused,
        ),
    ];
    for (name, help, get) in forwards {
        let mut fam = e.counter(name, help);
        for f in &m.forwards {
            fam.sample(&[("forward", &f.name)], get(f));
        }
    }
    let mut fam = e.gauge(
        "mhrouter_forward_sessions",
        "NAT sessions a port forward holds open now.",
    );
    for f in &m.forwards {
        fam.sample(&[("forward", &f.name)], f.stats.active);
    }
    let mut fam = e.gauge(
        "mhrouter_ipv6_prefix_preferred_lifetime_seconds",
        "Preferred lifetime the LAN's Router Advertisements give each uplink's prefix; 0 while the uplink is down (deprecated).",
    );
    for p in &m.ipv6_prefixes {
        fam.sample(
            &[("uplink", &p.uplink), ("prefix", &p.prefix)],
            u64::from(p.preferred_lifetime),
        );
    }
    e.gauge(
        "mhrouter_ipv6_neighbours",
        "IPv6 neighbours resolved by neighbour discovery.",
    )
    .sample(&[], m.ipv6_neighbours as u64);
    let mut fam = e.gauge(
        "mhrouter_dhcpv6_pd_delegated",
        "1 while the uplink holds a prefix delegated by DHCPv6.",
    );
    for p in &m.ipv6_pd {
        fam.sample(&[("uplink", &p.uplink)], u64::from(p.delegated));
    }
    let mut fam = e.counter(
        "mhrouter_dhcpv6_pd_messages_total",
        "DHCPv6 prefix delegation messages: sent, received (Advertises and Replies taken), ignored (malformed, not ours, unusable).",
    );
    for p in &m.ipv6_pd {
        for (kind, n) in [
            ("sent", p.sent),
            ("received", p.received),
            ("ignored", p.ignored),
        ] {
            fam.sample(&[("uplink", &p.uplink), ("kind", kind)], n);
        }
    }
    e.out
}

/// A family (name, help) whose samples read one field of each row.
type Getter<Row, V> = (&'static str, &'static str, fn(&Row) -> V);

fn probe_labels<'a>(p: &'a ProbeMetrics, target: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("probe", &p.name),
        ("uplink", &p.uplink),
        ("target", target),
        ("type", p.kind),
    ]
}

/// A sample value: counts print exactly, measurements as floats.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Count(u64),
    Real(f64),
}

impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Count(n)
    }
}

impl From<usize> for Value {
    fn from(n: usize) -> Value {
        Value::Count(n as u64)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Count(u64::from(b))
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::Real(x)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Count(n) => write!(f, "{n}"),
            // Go's spelling, which Prometheus parses; Rust would print "NaN"/"inf".
            Value::Real(x) if x.is_nan() => f.write_str("NaN"),
            Value::Real(x) if x.is_infinite() => f.write_str(if x > 0.0 { "+Inf" } else { "-Inf" }),
            Value::Real(x) => write!(f, "{x}"),
        }
    }
}

#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn counter(&mut self, name: &'static str, help: &str) -> Family<'_> {
        self.family(name, "counter", help)
    }

    fn gauge(&mut self, name: &'static str, help: &str) -> Family<'_> {
        self.family(name, "gauge", help)
    }

    /// Samples go through [`Family::sample_of`] with `_bucket`, `_sum` and `_count`.
    fn histogram(&mut self, name: &'static str, help: &str) -> Family<'_> {
        self.family(name, "histogram", help)
    }

    fn family(&mut self, name: &'static str, kind: &str, help: &str) -> Family<'_> {
        let help = Escaped {
            s: help,
            quote: false,
        };
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Family {
            out: &mut self.out,
            name,
        }
    }
}

/// Samples of the family just declared: the name is fixed, so no sample goes undeclared.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.sample_of("", labels, value);
    }

    /// A sample of one of the family's series, `name` + `suffix` (a histogram's `_bucket`...).
    fn sample_of(&mut self, suffix: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.out.push_str(self.name);
        self.out.push_str(suffix);
        for (i, (k, v)) in labels.iter().enumerate() {
            let open = if i == 0 { '{' } else { ',' };
            let v = Escaped { s: v, quote: true };
            let _ = write!(self.out, "{open}{k}=\"{v}\"");
        }
        if !labels.is_empty() {
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", value.into());
    }
}

/// Escaping of the format: backslash and newline everywhere, the double quote in label values.
struct Escaped<'a> {
    s: &'a str,
    quote: bool,
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.s.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '"' if self.quote => f.write_str("\\\"")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::net::Ipv4Addr;

    use super::*;
    use crate::counters::DropReason;
    use crate::metrics::{ConfigMetrics, InterfaceMetrics, NatMetrics, RouteMetrics, TrackMetrics};
    use crate::nat::NatCounters;
    use crate::probe::stats::RttHistogram;

    fn traffic(rx_packets: u64, rx_bytes: u64, tx_packets: u64, tx_bytes: u64) -> IfaceTotals {
        IfaceTotals {
            rx_packets,
            rx_bytes,
            rx_dropped: 0,
            tx_packets,
            tx_bytes,
        }
    }

    fn stats(sent: u64, ok: u64, over: u64, timeouts: u64) -> ProbeStatsView {
        ProbeStatsView {
            sent,
            ok,
            over_threshold: over,
            timeouts,
            last: None,
            last_rtt_ms: None,
            avg_rtt_ms: None,
            min_rtt_ms: None,
            max_rtt_ms: None,
            jitter_ms: None,
            window: 20,
            window_lost: 0,
            window_attempts: 0,
            loss_percent: 0.0,
            consecutive_timeouts: 0,
            consecutive_replies: 0,
            rtt_histogram: RttHistogram::default(),
        }
    }

    /// Roughly the lab after a while: isp-a healthy, isp-b losing a quarter of its probes.
    fn filled() -> MetricsInput {
        let mut a = stats(10, 9, 1, 0);
        a.last_rtt_ms = Some(1.5);
        a.avg_rtt_ms = Some(2.0);
        a.min_rtt_ms = Some(0.25);
        a.max_rtt_ms = Some(12.0);
        a.jitter_ms = Some(0.5);
        a.window_attempts = 10;
        // Ten replies: eight up to 2.5 ms, one up to 5 ms, the over-threshold one at 12 ms.
        let mut buckets = [10; RTT_BUCKETS.len()];
        buckets[..4].copy_from_slice(&[1, 4, 8, 9]);
        a.rtt_histogram = RttHistogram {
            buckets,
            sum_seconds: 0.02,
            count: 10,
        };
        let mut b = stats(8, 6, 0, 2);
        b.window_attempts = 8;
        b.window_lost = 2;
        b.last_rtt_ms = Some(3.0);
        MetricsInput {
            interfaces: vec![
                InterfaceMetrics {
                    name: "lan".into(),
                    traffic: traffic(100, 150_000, 90, 120_000),
                },
                InterfaceMetrics {
                    name: "isp-a".into(),
                    traffic: traffic(80, 110_000, 95, 140_000),
                },
                InterfaceMetrics {
                    name: "isp-b".into(),
                    traffic: traffic(3, 180, 4, 240),
                },
            ],
            drops: DropReason::ALL
                .iter()
                .map(|d| {
                    (
                        d.name().to_string(),
                        if *d == DropReason::NoRoute { 7 } else { 0 },
                    )
                })
                .collect(),
            forwarded: 170,
            punted: 13,
            icmp_errors_sent: 7,
            batches: 40,
            batch_packets: 183,
            gro_frames: 2,
            gro_segments: 61,
            neighbour_changes: 3,
            mld: 4,
            uplinks: vec![
                UplinkMetrics {
                    name: "isp-a".into(),
                    carrier: true,
                    usable: true,
                    nat_sessions: 5,
                },
                UplinkMetrics {
                    name: "isp-b".into(),
                    carrier: true,
                    usable: false,
                    nat_sessions: 0,
                },
            ],
            probes: vec![
                ProbeMetrics {
                    name: "a-e2e".into(),
                    uplink: "isp-a".into(),
                    target: Ipv4Addr::new(172, 18, 0, 6).into(),
                    kind: "icmp-echo",
                    stats: a,
                },
                ProbeMetrics {
                    name: "b-e2e".into(),
                    uplink: "isp-b".into(),
                    target: Ipv4Addr::new(172, 18, 0, 6).into(),
                    kind: "tcp",
                    stats: b,
                },
            ],
            tracks: vec![
                TrackMetrics {
                    name: "a-e2e".into(),
                    up: true,
                    changes: 1,
                },
                TrackMetrics {
                    name: "b-e2e".into(),
                    up: false,
                    changes: 3,
                },
            ],
            nat: NatMetrics {
                entries: 5,
                max_entries: 262_144,
                counters: NatCounters {
                    created: 12,
                    expired: 6,
                    flushed: 1,
                    table_full: 0,
                    ports_exhausted: 2,
                },
            },
            routes: vec![
                RouteMetrics {
                    name: "a-e2e".into(),
                    prefix: "0.0.0.0/0".into(),
                    uplink: "isp-a".into(),
                    distance: 10,
                    installed: true,
                },
                RouteMetrics {
                    name: "b-e2e".into(),
                    prefix: "0.0.0.0/0".into(),
                    uplink: "isp-b".into(),
                    distance: 11,
                    installed: false,
                },
            ],
            config: ConfigMetrics {
                last_load_ok: true,
                last_success_unix_seconds: 1_790_000_000.5,
            },
            vrrp: vec![GroupStatus {
                vrid: 1,
                state: VrrpState::Master,
                priority: 90,
                configured_priority: 150,
                addresses: vec![Ipv4Addr::new(192, 168, 0, 1)],
                advert_interval_cs: 10,
                preempt: true,
                preempt_delay_ms: 3000,
                master: Some(Ipv4Addr::new(192, 168, 0, 2)),
                master_priority: Some(90),
                master_adver_interval_cs: 10,
                master_down_interval_ms: 341,
                transitions: 2,
                adverts_sent: 40,
                adverts_received: 3,
            }],
            dhcp_leases: vec![("bound", 3), ("offered", 1), ("probing", 0)],
            dhcp_messages: vec![("received", 9), ("ack", 3)],
            dhcp_dropped: vec![("per_mac_limit", 4)],
            dns_events: vec![("query", 20), ("timeout", 1)],
            forwards: vec![ForwardMetrics {
                name: "web".into(),
                stats: crate::nat::ForwardStats {
                    hits: 7,
                    refused: 2,
                    active: 1,
                },
            }],
            ipv6_prefixes: vec![super::super::Ipv6PrefixMetrics {
                uplink: "isp-a".into(),
                prefix: "2001:db8:a:1::/64".into(),
                preferred_lifetime: 0,
            }],
            ipv6_neighbours: 2,
            ipv6_pd: vec![super::super::PdMetrics {
                uplink: "isp-b".into(),
                delegated: true,
                sent: 4,
                received: 2,
                ignored: 1,
            }],
        }
    }

    /// A strict reading of the 0.0.4 line grammar (prometheus-parse accepts almost anything, in
    /// particular it does not check escapes): HELP then TYPE before each family's samples, each
    /// family once, valid names and label syntax, every sample belonging to the family declared
    /// last. Returns the families in order.
    fn strict_check(text: &str) -> Result<Vec<(String, String)>, String> {
        fn name_ok(n: &str) -> bool {
            let mut cs = n.chars();
            cs.next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        }
        fn label_value(s: &str) -> Result<&str, String> {
            let mut it = s.char_indices();
            while let Some((i, c)) = it.next() {
                match c {
                    '"' => return Ok(&s[i + 1..]),
                    '\\' => match it.next() {
                        Some((_, '\\' | '"' | 'n')) => {}
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    '\n' => return Err("raw newline in a label value".into()),
                    _ => {}
                }
            }
            Err("unterminated label value".into())
        }
        if !text.ends_with('\n') {
            return Err("the text must end with a newline".into());
        }
        let mut families: Vec<(String, String)> = Vec::new();
        let mut help_for: Option<String> = None;
        for line in text.lines() {
            let err = |m: &str| Err(format!("{m}: {line:?}"));
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                if !name_ok(name) || families.iter().any(|(n, _)| n == name) {
                    return err("bad or repeated family");
                }
                if help.replace("\\\\", "").replace("\\n", "").contains('\\') {
                    return err("bad escape in HELP");
                }
                help_for = Some(name.to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                if help_for.as_deref() != Some(name) {
                    return err("TYPE without HELP just before");
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return err("bad type");
                }
                families.push((name.to_string(), kind.to_string()));
                help_for = None;
            } else {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                let (name, mut rest) = line.split_at(end);
                match families.last() {
                    Some((f, _)) if f == name => {}
                    Some((f, kind))
                        if kind == "histogram"
                            && ["_bucket", "_sum", "_count"]
                                .iter()
                                .any(|s| name.strip_suffix(s) == Some(f.as_str())) => {}
                    _ => return err("sample outside its family"),
                }
                if let Some(labels) = rest.strip_prefix('{') {
                    rest = labels;
                    let mut seen = HashSet::new();
                    loop {
                        let (k, after) = rest
                            .split_once("=\"")
                            .ok_or_else(|| format!("bad label: {line:?}"))?;
                        if !name_ok(k) || k.starts_with("__") || !seen.insert(k) {
                            return err("bad label name");
                        }
                        rest = label_value(after)?;
                        if let Some(r) = rest.strip_prefix(',') {
                            rest = r;
                        } else if let Some(r) = rest.strip_prefix('}') {
                            rest = r;
                            break;
                        } else {
                            return err("expected , or }");
                        }
                    }
                }
                let value = rest
                    .strip_prefix(' ')
                    .ok_or_else(|| format!("no value: {line:?}"))?;
                if !matches!(value, "NaN" | "+Inf" | "-Inf") && value.parse::<f64>().is_err() {
                    return err("bad value");
                }
            }
        }
        if help_for.is_some() {
            return Err("HELP without TYPE at the end".into());
        }
        Ok(families)
    }

    #[test]
    fn output_is_strictly_valid_and_named_by_convention() {
        for m in [filled(), MetricsInput::default()] {
            let text = render(&m);
            let families = strict_check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(families.len(), 56, "{families:?}");
            for (name, kind) in &families {
                assert!(name.starts_with("mhrouter_"), "{name}");
                assert_eq!(
                    kind == "counter",
                    name.ends_with("_total"),
                    "{name} is a {kind}"
                );
            }
        }
    }

    #[test]
    fn vrrp_groups_by_vrid() {
        let text = render(&filled());
        for line in [
            "mhrouter_vrrp_master{vrid=\"1\"} 1\n",
            "mhrouter_vrrp_priority{vrid=\"1\"} 90\n",
            "mhrouter_vrrp_transitions_total{vrid=\"1\"} 2\n",
            "mhrouter_vrrp_adverts_sent_total{vrid=\"1\"} 40\n",
            "mhrouter_vrrp_adverts_received_total{vrid=\"1\"} 3\n",
        ] {
            assert!(text.contains(line), "{line}{text}");
        }
    }

    #[test]
    fn escapes_label_values_and_help() {
        let mut m = filled();
        m.tracks[0].name = "a\\b\"c\nd".into();
        let text = render(&m);
        assert!(
            text.contains("mhrouter_track_up{track=\"a\\\\b\\\"c\\nd\"} 1\n"),
            "{text}"
        );
        strict_check(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut e = Exposition::default();
        e.gauge("x", "back\\slash \"quoted\"\nnext")
            .sample(&[], 1u64);
        assert_eq!(
            e.out,
            "# HELP x back\\\\slash \"quoted\"\\nnext\n# TYPE x gauge\nx 1\n"
        );
    }

    #[test]
    fn values_use_the_formats_spelling() {
        assert_eq!(Value::from(f64::NAN).to_string(), "NaN");
        assert_eq!(Value::from(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Value::from(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(Value::from(0.0015).to_string(), "0.0015");
        assert_eq!(Value::from(u64::MAX).to_string(), "18446744073709551615");
        assert_eq!(Value::from(true).to_string(), "1");
    }

    #[test]
    fn a_real_parser_reads_the_samples() {
        use prometheus_parse::{Scrape, Value as V};
        let text = render(&filled());
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
        let get = |metric: &str, labels: &[(&str, &str)]| -> Vec<V> {
            scrape
                .samples
                .iter()
                .filter(|s| {
                    s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                })
                .map(|s| s.value.clone())
                .collect()
        };
        assert_eq!(
            get(
                "mhrouter_interface_receive_bytes_total",
                &[("interface", "isp-a")]
            ),
            [V::Counter(110_000.0)]
        );
        assert_eq!(
            get(
                "mhrouter_interface_transmit_packets_total",
                &[("interface", "lan")]
            ),
            [V::Counter(90.0)]
        );
        assert_eq!(
            get("mhrouter_packets_dropped_total", &[("reason", "no_route")]),
            [V::Counter(7.0)]
        );
        assert_eq!(
            get("mhrouter_packets_dropped_total", &[]).len(),
            DropReason::ALL.len()
        );
        assert_eq!(
            get("mhrouter_worker_batch_packets_total", &[]),
            [V::Counter(183.0)]
        );
        assert_eq!(get("mhrouter_gro_segments_total", &[]), [V::Counter(61.0)]);
        assert_eq!(
            get("mhrouter_neighbour_changes_total", &[]),
            [V::Counter(3.0)]
        );
        assert_eq!(get("mhrouter_mld_messages_total", &[]), [V::Counter(4.0)]);
        assert_eq!(
            get("mhrouter_uplink_usable", &[("uplink", "isp-b")]),
            [V::Gauge(0.0)]
        );
        assert_eq!(
            get("mhrouter_uplink_nat_sessions", &[("uplink", "isp-a")]),
            [V::Gauge(5.0)]
        );
        let web = [("forward", "web")];
        assert_eq!(get("mhrouter_forward_hits_total", &web), [V::Counter(7.0)]);
        assert_eq!(
            get("mhrouter_forward_refused_total", &web),
            [V::Counter(2.0)]
        );
        assert_eq!(get("mhrouter_forward_sessions", &web), [V::Gauge(1.0)]);
        assert_eq!(
            get(
                "mhrouter_ipv6_prefix_preferred_lifetime_seconds",
                &[("uplink", "isp-a"), ("prefix", "2001:db8:a:1::/64")]
            ),
            [V::Gauge(0.0)]
        );
        assert_eq!(get("mhrouter_ipv6_neighbours", &[]), [V::Gauge(2.0)]);
        assert_eq!(
            get("mhrouter_dhcpv6_pd_delegated", &[("uplink", "isp-b")]),
            [V::Gauge(1.0)]
        );
        assert_eq!(
            get(
                "mhrouter_dhcpv6_pd_messages_total",
                &[("uplink", "isp-b"), ("kind", "ignored")]
            ),
            [V::Counter(1.0)]
        );
        let a = [
            ("probe", "a-e2e"),
            ("uplink", "isp-a"),
            ("target", "172.18.0.6"),
            ("type", "icmp-echo"),
        ];
        assert_eq!(get("mhrouter_probe_sent_total", &a), [V::Counter(10.0)]);
        let V::Histogram(h) = &get("mhrouter_probe_rtt_seconds", &a)[0] else {
            panic!("the RTT is a histogram");
        };
        let le = |bound: f64| h.iter().find(|c| c.less_than == bound).map(|c| c.count);
        assert_eq!(le(0.0005), Some(1.0));
        assert_eq!(le(0.005), Some(9.0));
        assert_eq!(le(2.5), Some(10.0));
        assert_eq!(le(f64::INFINITY), Some(10.0));
        let text_a = "{probe=\"a-e2e\",uplink=\"isp-a\",target=\"172.18.0.6\",type=\"icmp-echo\"}";
        assert!(text.contains(&format!("mhrouter_probe_rtt_seconds_count{text_a} 10\n")));
        assert!(text.contains(&format!("mhrouter_probe_rtt_seconds_sum{text_a} 0.02\n")));
        assert_eq!(
            get(
                "mhrouter_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            [V::Gauge(1.0)]
        );
        assert_eq!(
            get("mhrouter_config_last_reload_successful", &[]),
            [V::Gauge(1.0)]
        );
        assert_eq!(
            get("mhrouter_config_last_reload_success_timestamp_seconds", &[]),
            [V::Gauge(1_790_000_000.5)]
        );
        assert_eq!(
            get(
                "mhrouter_route_installed",
                &[("route", "b-e2e"), ("uplink", "isp-b"), ("distance", "11")]
            ),
            [V::Gauge(0.0)]
        );
        assert_eq!(
            get("mhrouter_route_installed", &[("route", "a-e2e")]),
            [V::Gauge(1.0)]
        );
        assert_eq!(
            get("mhrouter_dhcp_leases", &[("state", "bound")]),
            [V::Gauge(3.0)]
        );
        assert_eq!(
            get(
                "mhrouter_dhcp_dropped_total",
                &[("reason", "per_mac_limit")]
            ),
            [V::Counter(4.0)]
        );
        assert_eq!(
            get("mhrouter_dns_events_total", &[("event", "timeout")]),
            [V::Counter(1.0)]
        );
        assert_eq!(
            get("mhrouter_probe_rtt_last_seconds", &a),
            [V::Gauge(0.0015)]
        );
        assert_eq!(
            get("mhrouter_probe_rtt_min_seconds", &a),
            [V::Gauge(0.00025)]
        );
        assert_eq!(get("mhrouter_probe_rtt_max_seconds", &a), [V::Gauge(0.012)]);
        assert_eq!(get("mhrouter_probe_jitter_seconds", &a), [V::Gauge(0.0005)]);
        assert_eq!(get("mhrouter_probe_loss_ratio", &a), [V::Gauge(0.0)]);
        assert_eq!(
            get(
                "mhrouter_probe_results_total",
                &[("probe", "a-e2e"), ("result", "over_threshold")]
            ),
            [V::Counter(1.0)]
        );
        assert_eq!(
            get(
                "mhrouter_probe_results_total",
                &[("probe", "b-e2e"), ("result", "timeout"), ("type", "tcp")]
            ),
            [V::Counter(2.0)]
        );
        assert_eq!(
            get("mhrouter_probe_loss_ratio", &[("probe", "b-e2e")]),
            [V::Gauge(0.25)]
        );
        // No reply statistics yet: absent, not zero.
        assert!(get("mhrouter_probe_jitter_seconds", &[("probe", "b-e2e")]).is_empty());
        assert_eq!(
            get("mhrouter_track_up", &[("track", "b-e2e")]),
            [V::Gauge(0.0)]
        );
        assert_eq!(
            get("mhrouter_track_changes_total", &[("track", "b-e2e")]),
            [V::Counter(3.0)]
        );
        assert_eq!(get("mhrouter_nat_entries", &[]), [V::Gauge(5.0)]);
        assert_eq!(
            get("mhrouter_nat_ports_exhausted_total", &[]),
            [V::Counter(2.0)]
        );
        // Every sample's family was declared with HELP.
        let families: HashMap<_, _> = scrape.docs.iter().collect();
        for s in &scrape.samples {
            // The parser reports a histogram's _sum and _count as untyped samples of their own.
            let family = ["_sum", "_count"]
                .iter()
                .find_map(|x| s.metric.strip_suffix(x))
                .filter(|f| families.contains_key(&f.to_string()))
                .unwrap_or(&s.metric);
            assert!(
                families.contains_key(&family.to_string()),
                "{} has no HELP",
                s.metric
            );
            assert!(
                family != s.metric || !matches!(s.value, V::Untyped(_)),
                "{} has no TYPE",
                s.metric
            );
        }
    }

    /// Every expression string of the dashboard (panel targets and template queries).
    fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match v {
                        serde_json::Value::String(s) if k == "expr" || k == "query" => {
                            out.push(s.clone())
                        }
                        _ => dashboard_exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_grafana_dashboard_uses_only_exported_metrics() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../scripts/grafana-dashboard.json"))
                .expect("the dashboard is JSON");
        let mut exprs = Vec::new();
        dashboard_exprs(&dashboard, &mut exprs);
        let families = strict_check(&render(&filled())).expect("valid exposition");
        let exported = |name: &str| {
            families.iter().any(|(f, kind)| {
                f == name
                    || kind == "histogram"
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|x| name.strip_suffix(x) == Some(f.as_str()))
            })
        };
        let mut used = HashSet::new();
        for e in &exprs {
            for (i, _) in e.match_indices("mhrouter_") {
                let name: String = e[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    exported(&name),
                    "the dashboard queries {name}, which is not exported: {e}"
                );
                used.insert(name);
            }
        }
        // At a glance: uplinks, the installed route, probe RTT and loss, track changes.
        for needed in [
            "mhrouter_uplink_usable",
            "mhrouter_route_installed",
            "mhrouter_probe_rtt_seconds_bucket",
            "mhrouter_probe_loss_ratio",
            "mhrouter_track_changes_total",
        ] {
            assert!(
                used.contains(needed),
                "the dashboard does not show {needed}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_names_render_valid_text(name in "\\PC{0,12}", extra in "[\\\\\"\n a-z]{0,12}") {
            let mut m = filled();
            m.interfaces[0].name = name.clone() + &extra;
            m.tracks[1].name = extra;
            m.probes[0].uplink = name;
            let text = render(&m);
            proptest::prop_assert!(strict_check(&text).is_ok(), "{:?}", strict_check(&text));
        }
    }
}
