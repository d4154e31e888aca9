//! The router's TOML configuration: typed structs with defaults, validated completely. Every
//! error names the file and the 1-based line of the offending key, value or table
//! ("lab.toml:12: uplink 'isp-c' is not defined"). The schema is documented in
//! README-config.md.

mod raw;
mod validate;
mod values;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::prefix::Ipv4Prefix;
use crate::prefix6::Ipv6Prefix;
use crate::wire::ethernet::MacAddr;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub router: RouterConfig,
    pub lan: LanConfig,
    /// At least one; the index is the uplink's `UplinkId`.
    pub uplinks: Vec<UplinkConfig>,
    pub nat: NatConfig,
    pub routes: Vec<RouteConfig>,
    /// `[[route]]`s with an IPv6 prefix (SPEC 34), in configuration order.
    pub routes6: Vec<Route6Config>,
    pub policies: Vec<PolicyConfig>,
    /// `[[policy]]`s with an IPv6 source or destination (SPEC 34), in order.
    pub policies6: Vec<Policy6Config>,
    pub probes: Vec<ProbeConfig>,
    pub tracks: Vec<TrackConfig>,
    pub failover: FailoverConfig,
    /// VRRP groups on the LAN, distinct VRIDs (SPEC 29).
    pub vrrp: Vec<VrrpConfig>,
    /// DHCP server on the LAN (SPEC 27); None: no `[dhcp_server]` section.
    pub dhcp_server: Option<DhcpServerConfig>,
    /// DNS forwarder on the LAN address (SPEC 30); None: `[dns]` absent or disabled.
    pub dns: Option<DnsConfig>,
    pub forwards: Vec<ForwardConfig>,
    /// IPv6 (SPEC 32): None unless `[lan] ipv6 = true`.
    pub ipv6: Option<Ipv6Config>,
    pub limits: LimitsConfig,
}

/// What any one host, or a flood, may take of the control plane and the tables (SPEC 35).
/// Rates are per worker thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// ARP frames handed to the control thread per second.
    pub arp_per_second: u32,
    /// Frames to a probe's port from its target (or ICMP errors quoting a probe) per second.
    pub probe_replies_per_second: u32,
    /// Everything else for the control thread (the router's own traffic, frames waiting for
    /// ARP) per second.
    pub punts_per_second: u32,
    /// Bytes of frames each queue holds at most.
    pub arp_queue_bytes: usize,
    pub probe_queue_bytes: usize,
    pub punt_queue_bytes: usize,
    /// Neighbour entries on the LAN, and on all uplinks together: a LAN scan cannot take the
    /// uplinks' (next hops) room.
    pub lan_neighbours: usize,
    pub uplink_neighbours: usize,
    /// Bytes of frames held for one unresolved neighbour.
    pub held_bytes_per_neighbour: usize,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            arp_per_second: 500,
            probe_replies_per_second: 1000,
            punts_per_second: 2000,
            arp_queue_bytes: 256 << 10,
            probe_queue_bytes: 256 << 10,
            punt_queue_bytes: 4 << 20,
            lan_neighbours: 4096,
            uplink_neighbours: 256,
            held_bytes_per_neighbour: 64 << 10,
        }
    }
}

/// Where `run` and `check-config` read the configuration when not given `--config`.
pub const DEFAULT_PATH: &str = "/etc/mhrouter/mhrouter.toml";

#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    /// Data-plane worker threads, 1..=256 (a TAP device has at most 256 queues).
    pub workers: usize,
    pub control_socket: PathBuf,
    /// Group whose members may use the read-only commands (`show`, `explain`) on the control
    /// socket (mode 0660); without it the socket is the router user's alone (0600).
    pub control_group: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
    /// Pass GSO super-frames and partial checksums through (virtio-net header offloads).
    pub offload: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LanConfig {
    /// TAP device the router creates.
    pub tap: String,
    /// Existing bridge to enslave the TAP to.
    pub bridge: Option<String>,
    /// The router's LAN address with the LAN prefix length.
    pub address: Ipv4Prefix,
    /// None: the router derives one.
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UplinkConfig {
    pub name: String,
    pub interface: String,
    /// The router's address on the uplink, with the link's prefix length; 0.0.0.0/32 (no
    /// address) with `dhcp`, until a lease gives one.
    pub address: Ipv4Prefix,
    /// 0.0.0.0 with `dhcp`, until a lease gives one.
    pub next_hop: Ipv4Addr,
    /// None: use the NIC's MTU.
    pub mtu: Option<u32>,
    pub mss_clamp: Option<u16>,
    /// Outside interface: NAPT to `address` (SPEC 9).
    pub nat: bool,
    /// Inside sources that are translated; None: every LAN source.
    pub nat_sources: Option<Vec<Ipv4Prefix>>,
    /// `address = "dhcp"`: the address, next hop and default route come from a lease (SPEC 28).
    pub dhcp: Option<DhcpClientConfig>,
    /// Resolvers the DNS forwarder uses while this uplink carries the default route (SPEC 30).
    pub dns_servers: Vec<Ipv4Addr>,
}

/// The DHCP client of an uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpClientConfig {
    /// Option 61; hardware type and MAC unless set.
    pub client_id: Option<Vec<u8>>,
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 60.
    pub vendor_class: Option<String>,
    /// Distance of the default route through the lease's router.
    pub distance: u8,
}

/// An inclusive range of addresses, `first <= last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl AddrRange {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.first <= ip && ip <= self.last
    }

    /// Number of addresses in the range.
    pub fn size(&self) -> u64 {
        u64::from(u32::from(self.last) - u32::from(self.first)) + 1
    }
}

/// An address the DHCP server always gives to one MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticLease {
    pub mac: MacAddr,
    /// Inside the LAN prefix, not the router's address; unique.
    pub address: Ipv4Addr,
    pub hostname: Option<String>,
}

/// A classless static route handed to clients (DHCP option 121).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRoute {
    /// Has no host bits set.
    pub prefix: Ipv4Prefix,
    pub next_hop: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DhcpServerConfig {
    /// Inside the LAN prefix; non-empty; pairwise disjoint.
    pub pools: Vec<AddrRange>,
    /// Addresses of the pools never handed out dynamically.
    pub exclude: Vec<AddrRange>,
    pub static_leases: Vec<StaticLease>,
    /// Default gateway given to clients (option 3); the LAN address unless set.
    pub router: Ipv4Addr,
    /// Option 6; the LAN address unless set.
    pub dns_servers: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_time: Duration,
    /// Option 26, only when set.
    pub mtu: Option<u16>,
    /// Option 121, sent to clients that ask for it.
    pub routes: Vec<ClientRoute>,
    /// Where leases are kept across restarts; None: in memory only.
    pub lease_file: Option<PathBuf>,
    /// Bound on offers, conflict checks and leases together.
    pub max_leases: usize,
    /// Bound on what one source MAC holds (offers and leases), against pool exhaustion.
    pub max_per_mac: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// Cached answers, at most this many...
    pub cache_entries: usize,
    /// ...and at most this many bytes of answers.
    pub cache_bytes: usize,
    /// Per-client token bucket: queries per second and burst.
    pub rate: u32,
    pub burst: u32,
    /// How long to wait for one upstream answer before trying the next resolver.
    pub timeout: Duration,
}

/// IPv6 on the LAN and the uplinks (SPEC 32).
#[derive(Debug, Clone, PartialEq)]
pub struct Ipv6Config {
    /// Indexed like `Config::uplinks`; None for an uplink without IPv6.
    pub uplinks: Vec<Option<Uplink6Config>>,
    /// NPTv6 (`[lan] npt6_prefix`, SPEC 33): the LAN's one internal /64, advertised instead of
    /// the uplinks' LAN /64s and translated to the `lan_prefix` of the uplink a packet leaves
    /// by; None: the provider prefixes are on the LAN themselves.
    pub npt6_prefix: Option<Ipv6Prefix>,
}

impl Ipv6Config {
    /// The /64s on the LAN: the NPTv6 prefix alone, else each uplink's LAN prefix.
    pub fn lan_prefixes(&self) -> Vec<Ipv6Prefix> {
        match self.npt6_prefix {
            Some(p) => vec![p],
            None => self
                .uplinks
                .iter()
                .flatten()
                .filter_map(|c| c.provider)
                .map(|p| p.lan_prefix)
                .collect(),
        }
    }

    /// The router's own LAN addresses, ::1 of each LAN /64, with the prefix length: what LAN
    /// hosts ping and what the RAs advertise as their DNS servers (RFC 8106).
    pub fn lan_addresses(&self) -> Vec<Ipv6Prefix> {
        self.lan_prefixes()
            .into_iter()
            .filter_map(|p| Ipv6Prefix::new(p.host(1), p.prefix_len()).ok())
            .collect()
    }
}

/// One uplink's IPv6: its provider prefix and what the LAN and the link get from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplink6Config {
    /// The provider prefix and the LAN's /64 of it: static, or (in the running configuration)
    /// the delegation held now; None while a `dhcpv6-pd` uplink holds none.
    pub provider: Option<ProviderPrefix>,
    /// `prefix6 = "dhcpv6-pd"`: the prefix comes from DHCPv6 prefix delegation on the uplink.
    pub pd: Option<PdConfig>,
    /// The router's address on the uplink's link, with the link's prefix length; None: only
    /// its link-local address.
    pub address: Option<Ipv6Prefix>,
    /// The PE: link-local, or inside `address`'s prefix.
    pub next_hop: Ipv6Addr,
}

/// A provider prefix and the /64 of it advertised on the LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderPrefix {
    pub prefix: Ipv6Prefix,
    pub lan_prefix: Ipv6Prefix,
}

/// DHCPv6 prefix delegation on an uplink (SPEC 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdConfig {
    /// Which /64 of the delegated prefix the LAN gets (`subnet_id`, default 0).
    pub subnet_id: u128,
}

impl PdConfig {
    /// The prefixes a delegation gives: None when the delegated prefix has no /64 number
    /// `subnet_id`.
    pub fn provider(&self, delegated: Ipv6Prefix) -> Option<ProviderPrefix> {
        Some(ProviderPrefix {
            prefix: delegated,
            lan_prefix: delegated.subnet(64, self.subnet_id)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NatConfig {
    pub max_entries: usize,
    /// Sessions one inside host may hold (SPEC 35); default a quarter of `max_entries`.
    pub max_sessions_per_host: usize,
    pub port_min: u16,
    pub port_max: u16,
    pub tcp_syn: Duration,
    pub tcp_established: Duration,
    pub tcp_closing: Duration,
    pub udp: Duration,
    pub udp_unreplied: Duration,
    pub icmp: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    /// Has no host bits set.
    pub prefix: Ipv4Prefix,
    /// Name of a defined uplink, or [`LAN_EGRESS`].
    pub uplink: String,
    /// The uplink's next hop unless configured; always inside the uplink's prefix (the LAN's
    /// for a route via the LAN, where it is required).
    pub next_hop: Ipv4Addr,
    pub distance: u8,
    pub weight: u8,
    /// Name of a defined track.
    pub track: Option<String>,
}

/// A `[[route]]` with an IPv6 prefix (SPEC 34): it leaves to its uplink's `next_hop6`. With
/// egress by source (SPEC 32) it chooses among the uplinks that can carry a packet's source.
#[derive(Debug, Clone, PartialEq)]
pub struct Route6Config {
    pub name: String,
    /// Has no host bits set.
    pub prefix: Ipv6Prefix,
    /// Name of an uplink with IPv6 (`prefix6`).
    pub uplink: String,
    pub distance: u8,
    /// Name of a defined track.
    pub track: Option<String>,
}

/// Inclusive destination port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// A port forward (static inbound NAT, SPEC 13 and 31): `port` on each uplink's address goes
/// to `to`:`to_port`, a range mapping 1:1 onto `to_port`.. . The NAT port pools of those uplinks
/// leave the forwarded ports out, as IOS reserves the port of a static entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardConfig {
    pub name: String,
    /// Defined uplinks with `nat = true`, non-empty, no duplicates ("all": every NAT uplink).
    pub uplinks: Vec<String>,
    /// IP protocol numbers: 6, 17 or both.
    pub protocols: Vec<u8>,
    pub port: PortRange,
    /// A LAN host (not the router, the network or broadcast address).
    pub to: Ipv4Addr,
    /// First internal port; `to_port + (port.last - port.first)` fits in 1..=65535.
    pub to_port: u16,
    /// Sources allowed to use the forward; empty: any.
    pub allow: Vec<Ipv4Prefix>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub name: String,
    pub source: Option<Ipv4Prefix>,
    pub destination: Option<Ipv4Prefix>,
    /// IP protocol number ("tcp" = 6, "udp" = 17, "icmp" = 1).
    pub protocol: Option<u8>,
    /// Only with protocol 6 or 17.
    pub port: Option<PortRange>,
    /// Defined uplinks in order of preference, non-empty, no duplicates.
    pub uplinks: Vec<String>,
    pub fallback: PolicyFallback,
}

/// A `[[policy]]` with an IPv6 source or destination (SPEC 34): like [`PolicyConfig`], its
/// uplinks taken only when they can carry the packet's source (SPEC 32).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy6Config {
    pub name: String,
    pub source: Option<Ipv6Prefix>,
    pub destination: Option<Ipv6Prefix>,
    /// IPv6 next header ("tcp" = 6, "udp" = 17, "icmp" = 58, ICMPv6).
    pub protocol: Option<u8>,
    /// Only with protocol 6 or 17.
    pub port: Option<PortRange>,
    /// Defined uplinks with IPv6, in order of preference, non-empty, no duplicates.
    pub uplinks: Vec<String>,
    pub fallback: PolicyFallback,
}

/// What a policy does when none of its uplinks is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyFallback {
    /// Use the routing table.
    #[default]
    Table,
    /// Drop and answer ICMP destination-unreachable.
    Unreachable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    IcmpEcho {
        payload_size: u16,
    },
    /// TCP SYN reachability: a SYN-ACK or a RST counts as an answer.
    Tcp {
        port: u16,
    },
    Dns {
        port: u16,
        query: String,
    },
}

impl ProbeKind {
    /// The configuration's `type` value, as status views and metrics show it.
    pub fn name(&self) -> &'static str {
        match self {
            ProbeKind::IcmpEcho { .. } => "icmp-echo",
            ProbeKind::Tcp { .. } => "tcp",
            ProbeKind::Dns { .. } => "dns",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    pub name: String,
    pub kind: ProbeKind,
    /// Name of a defined uplink; the probe always leaves through it (SPEC 15).
    pub uplink: String,
    /// IPv4, or IPv6 (SPEC 34: from the uplink's `address6` to its `next_hop6`).
    pub target: IpAddr,
    pub interval: Duration,
    /// <= interval.
    pub timeout: Duration,
    /// Latency threshold; <= timeout.
    pub threshold: Duration,
    pub dscp: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrackMode {
    /// Up on ok or over-threshold.
    #[default]
    Reachability,
    /// Up only on ok.
    State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOp {
    All,
    Any,
    /// 1..=number of members.
    AtLeast(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackSource {
    Probe {
        name: String,
        mode: TrackMode,
    },
    /// The uplink's carrier.
    Carrier {
        uplink: String,
    },
    /// Names of other tracks; the dependency graph is acyclic.
    List {
        members: Vec<String>,
        op: ListOp,
    },
}

/// Action run on a track change (SPEC 25).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub log: Option<String>,
    pub command: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrackConfig {
    pub name: String,
    pub source: TrackSource,
    pub delay_down: Duration,
    pub delay_up: Duration,
    pub on_up: Option<Hook>,
    pub on_down: Option<Hook>,
}

/// What flows on a backup uplink do when the preferred uplink returns (SPEC 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failback {
    Stay,
    Move { grace: Duration },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailoverConfig {
    /// Send RSTs to the LAN ends of TCP flows on a dead uplink (SPEC 21).
    pub reset_tcp: bool,
    pub failback: Failback,
}

/// The `uplink` of a route whose next hop is a router on the LAN (SPEC 29); no uplink may have
/// this name.
pub const LAN_EGRESS: &str = "lan";

/// The priority of the router that owns the virtual addresses (RFC 5798 §5.2.4).
pub const VRRP_OWNER_PRIORITY: u8 = 255;

/// One VRRPv3 virtual router on the LAN (SPEC 29, RFC 5798).
#[derive(Debug, Clone, PartialEq)]
pub struct VrrpConfig {
    /// 1..=255.
    pub vrid: u8,
    /// Non-empty, distinct, inside the LAN prefix, none the LAN's network or broadcast address.
    pub addresses: Vec<Ipv4Addr>,
    /// 1..=254; 255 exactly when the LAN address is one of `addresses` (the owner).
    pub priority: u8,
    /// Advertisement interval in centiseconds, 10..=4095.
    pub advert_interval_cs: u16,
    pub preempt: bool,
    /// How long a lower-priority master is tolerated before a preempting backup takes over.
    pub preempt_delay: Duration,
    /// Tracks that lower the priority while they are down; names of defined tracks, distinct.
    pub tracks: Vec<VrrpTrack>,
}

/// `standby track N decrement D`: while `track` is down the priority is `decrement` lower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpTrack {
    pub track: String,
    /// 1..=254.
    pub decrement: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}:{line}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        message: String,
    },
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `origin` names it in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let default_workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        validate::parse(text, origin, default_workers)
    }

    pub fn uplink_index(&self, name: &str) -> Option<usize> {
        self.uplinks.iter().position(|u| u.name == name)
    }

    pub fn probe_index(&self, name: &str) -> Option<usize> {
        self.probes.iter().position(|p| p.name == name)
    }

    pub fn track_index(&self, name: &str) -> Option<usize> {
        self.tracks.iter().position(|t| t.name == name)
    }
}
