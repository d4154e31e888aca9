//! Packet counters. Each worker owns one `Counters` (only it writes, so no cache line is shared
//! between writers); readers sum them for `show counters` and the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a packet was dropped. Every drop in the router has exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Frame shorter than its headers say, or cut by the socket (MSG_TRUNC).
    Truncated,
    /// The 10-byte virtio_net_hdr in front of the frame is malformed.
    BadVnetHeader,
    /// Not IPv4 or ARP, nor IPv6 while IPv6 is on (VLAN tags, LLDP …).
    NotIpv4,
    /// Unicast frame for another MAC address (flooded by the bridge).
    NotOurMac,
    /// IPv4 header with a bad version, header length or total length.
    BadIpHeader,
    BadIpChecksum,
    /// TCP/UDP/ICMP header missing or shorter than required.
    BadL4Header,
    /// Source or destination that must never be forwarded (0/8, 127/8, class E, multicast source).
    Martian,
    /// Broadcast or multicast IPv4 packet: the router forwards neither.
    Broadcast,
    /// LAN packet whose source is not in the LAN prefix (anti-spoofing).
    Spoofed,
    /// Packet from an uplink to an address that is not the router's: never forwarded between uplinks.
    UplinkTransit,
    TtlExceeded,
    /// No eligible route (an ICMP unreachable was sent).
    NoRoute,
    /// DF packet larger than the egress MTU (an ICMP frag-needed was sent).
    FragNeeded,
    /// Packet without DF larger than the egress MTU that could not be fragmented (an MTU too
    /// small for 8 bytes of data, or a GSO frame).
    TooBig,
    NatTableFull,
    NatPortsExhausted,
    /// Inbound packet on an uplink that matches no NAT session (stateful filter) nor opens a
    /// port forward's.
    NatUnsolicited,
    /// New connection to a port forward from a source its `allow` list leaves out.
    ForwardRefused,
    /// Non-first IP fragment whose first fragment was not seen.
    FragmentWithoutState,
    /// A protocol the NAT cannot translate (not TCP, UDP or ICMP query/error).
    NatUnsupported,
    /// TCP segment without SYN that belongs to no NAT flow (its flow was removed, e.g. with a
    /// dead uplink): answered with a RST so the LAN host gives up at once.
    NatNoFlow,
    /// Next hop could not be resolved by ARP (queue full or no answer).
    NoNeighbour,
    /// The control plane's queue was full.
    PuntQueueFull,
    /// Pings to the router beyond the per-worker rate (200/s).
    PingRateLimited,
    /// Packet for the router itself that it does not serve (unknown protocol, closed port).
    LocalUnhandled,
    /// The kernel refused to send the frame.
    TxError,
    /// VRRP packet not used: TTL not 255, malformed, bad checksum, unknown VRID or other
    /// virtual addresses (RFC 5798 §7.1).
    BadVrrp,
    /// A frame that looked like a probe's reply (from its target to a probe port, or an ICMP
    /// error quoting a probe) but answers no outstanding attempt (SPEC 35).
    ProbeUnmatched,
    /// Admission to the control plane (`[limits]`, SPEC 35): over the class's rate...
    ArpRateLimited,
    ProbeRateLimited,
    PuntRateLimited,
    /// ...or its queue full (frames or bytes); `PuntQueueFull` is the other class's.
    ArpQueueFull,
    ProbeQueueFull,
    /// New flow refused: its inside host holds `nat.max_sessions_per_host` sessions.
    NatHostQuota,
    /// A neighbour not remembered: its side (LAN, uplinks) holds its most entries (`[limits]`).
    NeighbourTableFull,
    /// IPv6 packet larger than the egress MTU (an ICMPv6 packet-too-big was sent; routers never
    /// fragment IPv6).
    PacketTooBig,
    /// IPv6 packet from a source in the prefix of an uplink that is down, which no other uplink
    /// can carry (an ICMPv6 "source address failed ingress/egress policy" was sent, SPEC 33).
    SourcePolicyFailed,
    /// IPv6 packet NPTv6 cannot translate: its interface identifier has no word that is not
    /// 0xFFFF to keep the checksum neutral (RFC 6296 §3.5, SPEC 33).
    Npt6Untranslatable,
    /// Frames the kernel dropped before the router read them: an uplink socket's receive
    /// buffer was full (`PACKET_STATISTICS`, read every 100 ms by each worker).
    RxQueueFull,
}

impl DropReason {
    pub const ALL: [DropReason; 40] = [
        DropReason::Truncated,
        DropReason::BadVnetHeader,
        DropReason::NotIpv4,
        DropReason::NotOurMac,
        DropReason::BadIpHeader,
        DropReason::BadIpChecksum,
        DropReason::BadL4Header,
        DropReason::Martian,
        DropReason::Broadcast,
        DropReason::Spoofed,
        DropReason::UplinkTransit,
        DropReason::TtlExceeded,
        DropReason::NoRoute,
        DropReason::FragNeeded,
        DropReason::TooBig,
        DropReason::NatTableFull,
        DropReason::NatPortsExhausted,
        DropReason::NatUnsolicited,
        DropReason::ForwardRefused,
        DropReason::FragmentWithoutState,
        DropReason::NatUnsupported,
        DropReason::NatNoFlow,
        DropReason::NoNeighbour,
        DropReason::PuntQueueFull,
        DropReason::PingRateLimited,
        DropReason::LocalUnhandled,
        DropReason::TxError,
        DropReason::BadVrrp,
        DropReason::ProbeUnmatched,
        DropReason::ArpRateLimited,
        DropReason::ProbeRateLimited,
        DropReason::PuntRateLimited,
        DropReason::ArpQueueFull,
        DropReason::ProbeQueueFull,
        DropReason::NatHostQuota,
        DropReason::NeighbourTableFull,
        DropReason::PacketTooBig,
        DropReason::SourcePolicyFailed,
        DropReason::Npt6Untranslatable,
        DropReason::RxQueueFull,
    ];

    /// Stable snake_case name used in `show counters`, JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadVnetHeader => "bad_vnet_header",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::NotOurMac => "not_our_mac",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::BadL4Header => "bad_l4_header",
            DropReason::Martian => "martian",
            DropReason::Broadcast => "broadcast",
            DropReason::Spoofed => "spoofed_source",
            DropReason::UplinkTransit => "uplink_transit",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::NoRoute => "no_route",
            DropReason::FragNeeded => "frag_needed",
            DropReason::TooBig => "too_big_no_df",
            DropReason::NatTableFull => "nat_table_full",
            DropReason::NatPortsExhausted => "nat_ports_exhausted",
            DropReason::NatUnsolicited => "nat_unsolicited",
            DropReason::ForwardRefused => "forward_refused",
            DropReason::FragmentWithoutState => "fragment_without_state",
            DropReason::NatUnsupported => "nat_unsupported",
            DropReason::NatNoFlow => "nat_no_flow",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::PuntQueueFull => "punt_queue_full",
            DropReason::PingRateLimited => "ping_rate_limited",
            DropReason::LocalUnhandled => "local_unhandled",
            DropReason::TxError => "tx_error",
            DropReason::BadVrrp => "bad_vrrp",
            DropReason::ProbeUnmatched => "probe_unmatched",
            DropReason::ArpRateLimited => "arp_rate_limited",
            DropReason::ProbeRateLimited => "probe_rate_limited",
            DropReason::PuntRateLimited => "punt_rate_limited",
            DropReason::ArpQueueFull => "arp_queue_full",
            DropReason::ProbeQueueFull => "probe_queue_full",
            DropReason::NatHostQuota => "nat_host_quota",
            DropReason::NeighbourTableFull => "neighbour_table_full",
            DropReason::PacketTooBig => "packet_too_big",
            DropReason::SourcePolicyFailed => "source_policy_failed",
            DropReason::Npt6Untranslatable => "npt6_untranslatable",
            DropReason::RxQueueFull => "rx_queue_full",
        }
    }
}

/// Per-interface traffic counters.
#[derive(Default)]
pub struct IfaceCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Frames received here and dropped (for any reason; `drops` has the reasons).
    pub rx_dropped: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
}

/// One writer's counters: drops by reason, traffic per interface (index 0 = LAN, 1.. = uplinks),
/// and batch statistics.
pub struct Counters {
    drops: [AtomicU64; DropReason::ALL.len()],
    pub ifaces: Vec<IfaceCounters>,
    pub forwarded: AtomicU64,
    pub punted: AtomicU64,
    pub icmp_errors_sent: AtomicU64,
    pub batches: AtomicU64,
    pub batch_packets: AtomicU64,
    /// GSO super-frames built by GRO for the LAN, and the segments they carried.
    pub gro_frames: AtomicU64,
    pub gro_segments: AtomicU64,
    /// Neighbour (ARP) entries learned or changed: logged at debug only, so a flapping MAC
    /// cannot flood the journal.
    pub neighbour_changes: AtomicU64,
    /// MLD messages from the LAN's hosts, taken and not acted on (no multicast routing).
    pub mld: AtomicU64,
}

impl Counters {
    pub fn new(ifaces: usize) -> Counters {
        Counters {
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            ifaces: (0..ifaces).map(|_| IfaceCounters::default()).collect(),
            forwarded: AtomicU64::new(0),
            punted: AtomicU64::new(0),
            icmp_errors_sent: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batch_packets: AtomicU64::new(0),
            gro_frames: AtomicU64::new(0),
            gro_segments: AtomicU64::new(0),
            neighbour_changes: AtomicU64::new(0),
            mld: AtomicU64::new(0),
        }
    }

    pub fn dropped(&self, reason: DropReason) {
        bump(&self.drops[reason as usize], 1);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Ordering::Relaxed)
    }

    pub fn rx(&self, iface: usize, bytes: usize) {
        if let Some(c) = self.ifaces.get(iface) {
            bump(&c.rx_packets, 1);
            bump(&c.rx_bytes, bytes as u64);
        }
    }

    /// A frame received on `iface` was dropped for `reason`.
    pub fn rx_dropped(&self, iface: usize, reason: DropReason) {
        self.rx_dropped_n(iface, reason, 1);
    }

    /// `n` frames of `iface` were dropped for `reason`.
    pub fn rx_dropped_n(&self, iface: usize, reason: DropReason, n: u64) {
        bump(&self.drops[reason as usize], n);
        if let Some(c) = self.ifaces.get(iface) {
            bump(&c.rx_dropped, n);
        }
    }

    pub fn tx(&self, iface: usize, bytes: usize) {
        if let Some(c) = self.ifaces.get(iface) {
            bump(&c.tx_packets, 1);
            bump(&c.tx_bytes, bytes as u64);
        }
    }
}

/// Single-writer increment: a load and a store, cheaper than an atomic read-modify-write.
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Totals over several writers, for display.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Totals {
    pub drops: Vec<(String, u64)>,
    pub ifaces: Vec<IfaceTotals>,
    pub forwarded: u64,
    pub punted: u64,
    pub icmp_errors_sent: u64,
    pub batches: u64,
    pub batch_packets: u64,
    pub gro_frames: u64,
    pub gro_segments: u64,
    pub neighbour_changes: u64,
    pub mld: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IfaceTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl Totals {
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Counters>) -> Totals {
        let mut t = Totals {
            drops: DropReason::ALL
                .iter()
                .map(|d| (d.name().to_string(), 0))
                .collect(),
            ..Totals::default()
        };
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for c in all {
            for (i, d) in DropReason::ALL.iter().enumerate() {
                t.drops[i].1 += c.drops(*d);
            }
            if t.ifaces.len() < c.ifaces.len() {
                t.ifaces.resize(c.ifaces.len(), IfaceTotals::default());
            }
            for (ti, ci) in t.ifaces.iter_mut().zip(&c.ifaces) {
                ti.rx_packets += ld(&ci.rx_packets);
                ti.rx_bytes += ld(&ci.rx_bytes);
                ti.rx_dropped += ld(&ci.rx_dropped);
                ti.tx_packets += ld(&ci.tx_packets);
                ti.tx_bytes += ld(&ci.tx_bytes);
            }
            t.forwarded += ld(&c.forwarded);
            t.punted += ld(&c.punted);
            t.icmp_errors_sent += ld(&c.icmp_errors_sent);
            t.batches += ld(&c.batches);
            t.batch_packets += ld(&c.batch_packets);
            t.gro_frames += ld(&c.gro_frames);
            t.gro_segments += ld(&c.gro_segments);
            t.neighbour_changes += ld(&c.neighbour_changes);
            t.mld += ld(&c.mld);
        }
        t
    }

    /// What was counted since `base` (an earlier sum of the same counters: `clear counters`).
    pub fn since(&self, base: &Totals) -> Totals {
        let mut t = self.clone();
        for ((_, n), (_, b)) in t.drops.iter_mut().zip(&base.drops) {
            *n = n.saturating_sub(*b);
        }
        for (i, b) in t.ifaces.iter_mut().zip(&base.ifaces) {
            i.rx_packets = i.rx_packets.saturating_sub(b.rx_packets);
            i.rx_bytes = i.rx_bytes.saturating_sub(b.rx_bytes);
            i.rx_dropped = i.rx_dropped.saturating_sub(b.rx_dropped);
            i.tx_packets = i.tx_packets.saturating_sub(b.tx_packets);
            i.tx_bytes = i.tx_bytes.saturating_sub(b.tx_bytes);
        }
        t.forwarded = t.forwarded.saturating_sub(base.forwarded);
        t.punted = t.punted.saturating_sub(base.punted);
        t.icmp_errors_sent = t.icmp_errors_sent.saturating_sub(base.icmp_errors_sent);
        t.batches = t.batches.saturating_sub(base.batches);
        t.batch_packets = t.batch_packets.saturating_sub(base.batch_packets);
        t.gro_frames = t.gro_frames.saturating_sub(base.gro_frames);
        t.gro_segments = t.gro_segments.saturating_sub(base.gro_segments);
        t.neighbour_changes = t.neighbour_changes.saturating_sub(base.neighbour_changes);
        t.mld = t.mld.saturating_sub(base.mld);
        t
    }

    pub fn drop_count(&self, name: &str) -> u64 {
        self.drops
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indices_match() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|d| d.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
        for (i, d) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i);
        }
    }

    #[test]
    fn totals_add_up_over_writers() {
        let a = Counters::new(3);
        let b = Counters::new(3);
        a.dropped(DropReason::BadIpChecksum);
        b.dropped(DropReason::BadIpChecksum);
        b.rx(2, 100);
        let t = Totals::sum([&a, &b]);
        assert_eq!(t.drop_count("bad_ip_checksum"), 2);
        assert_eq!(t.ifaces[2].rx_bytes, 100);
        assert_eq!(t.drop_count("truncated"), 0);
    }

    #[test]
    fn since_counts_from_a_clear() {
        let c = Counters::new(2);
        c.dropped(DropReason::NoRoute);
        c.rx(1, 100);
        bump(&c.forwarded, 3);
        let cleared = Totals::sum([&c]);
        c.dropped(DropReason::NoRoute);
        c.rx(1, 40);
        let t = Totals::sum([&c]).since(&cleared);
        assert_eq!(t.drop_count("no_route"), 1);
        assert_eq!(t.ifaces[1].rx_packets, 1);
        assert_eq!(t.ifaces[1].rx_bytes, 40);
        assert_eq!(t.forwarded, 0);
        // Nothing cleared: the totals themselves.
        assert_eq!(
            Totals::sum([&c])
                .since(&Totals::default())
                .drop_count("no_route"),
            2
        );
    }
}
