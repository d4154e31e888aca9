//! The TOML document as written: serde structs whose fields keep their byte spans, so that
//! validation can point at the offending line. Unknown keys and wrong types are rejected here
//! by serde/toml, which carry the span themselves.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};
use toml::Spanned;

use super::{PolicyFallback, TrackMode};

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub router: RawRouter,
    pub lan: RawLan,
    #[serde(default)]
    pub uplink: Vec<RawUplink>,
    #[serde(default)]
    pub nat: RawNat,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    #[serde(default)]
    pub policy: Vec<RawPolicy>,
    #[serde(default)]
    pub probe: Vec<RawProbe>,
    #[serde(default)]
    pub track: Vec<RawTrack>,
    #[serde(default)]
    pub failover: RawFailover,
    #[serde(default)]
    pub vrrp: Vec<RawVrrp>,
    pub dhcp_server: Option<RawDhcpServer>,
    pub dns: Option<RawDns>,
    #[serde(default)]
    pub forward: Vec<RawForward>,
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub arp_per_second: Option<S<i64>>,
    pub probe_replies_per_second: Option<S<i64>>,
    pub punts_per_second: Option<S<i64>>,
    pub arp_queue_bytes: Option<S<i64>>,
    pub probe_queue_bytes: Option<S<i64>>,
    pub punt_queue_bytes: Option<S<i64>>,
    pub lan_neighbours: Option<S<i64>>,
    pub uplink_neighbours: Option<S<i64>>,
    pub held_bytes_per_neighbour: Option<S<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouter {
    pub workers: Option<S<i64>>,
    pub control_socket: Option<S<String>>,
    pub control_group: Option<S<String>>,
    pub metrics_listen: Option<S<String>>,
    pub offload: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLan {
    pub tap: Option<S<String>>,
    pub bridge: Option<S<String>>,
    pub address: S<String>,
    pub mac: Option<S<String>>,
    pub mtu: Option<S<i64>>,
    pub ipv6: Option<S<bool>>,
    pub npt6_prefix: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUplink {
    pub name: S<String>,
    pub interface: S<String>,
    pub address: S<String>,
    pub next_hop: Option<S<String>>,
    pub mtu: Option<S<i64>>,
    pub mss_clamp: Option<S<i64>>,
    pub nat: Option<S<bool>>,
    pub nat_sources: Option<S<Vec<S<String>>>>,
    pub dns_servers: Option<Vec<S<String>>>,
    pub dhcp_client_id: Option<S<String>>,
    pub dhcp_hostname: Option<S<String>>,
    pub dhcp_vendor_class: Option<S<String>>,
    pub dhcp_distance: Option<S<i64>>,
    pub prefix6: Option<S<String>>,
    pub subnet_id: Option<S<i64>>,
    pub lan_prefix6: Option<S<String>>,
    pub address6: Option<S<String>>,
    pub next_hop6: Option<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNat {
    pub max_entries: Option<S<i64>>,
    pub max_sessions_per_host: Option<S<i64>>,
    pub port_min: Option<S<i64>>,
    pub port_max: Option<S<i64>>,
    pub tcp_syn: Option<S<Scalar>>,
    pub tcp_established: Option<S<Scalar>>,
    pub tcp_closing: Option<S<Scalar>>,
    pub udp: Option<S<Scalar>>,
    pub udp_unreplied: Option<S<Scalar>>,
    pub icmp: Option<S<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub name: S<String>,
    pub prefix: S<String>,
    pub uplink: S<String>,
    pub next_hop: Option<S<String>>,
    pub distance: Option<S<i64>>,
    pub weight: Option<S<i64>>,
    pub track: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub name: S<String>,
    pub source: Option<S<String>>,
    pub destination: Option<S<String>>,
    pub protocol: Option<S<Scalar>>,
    pub port: Option<S<Scalar>>,
    pub uplinks: S<Vec<S<String>>>,
    pub fallback: Option<PolicyFallback>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForward {
    pub name: S<String>,
    /// A list of uplink names, or "all".
    pub uplinks: S<RawUplinkSet>,
    pub protocol: S<String>,
    pub port: S<Scalar>,
    pub to: S<String>,
    pub allow: Option<S<Vec<S<String>>>>,
}

/// `uplinks = ["isp-a", "isp-b"]` or `uplinks = "all"`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawUplinkSet {
    Named(Vec<String>),
    Keyword(String),
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawProbeType {
    IcmpEcho,
    Tcp,
    Dns,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    pub name: S<String>,
    #[serde(rename = "type")]
    pub kind: RawProbeType,
    pub uplink: S<String>,
    pub target: S<String>,
    pub port: Option<S<i64>>,
    pub query: Option<S<String>>,
    pub interval: Option<S<Scalar>>,
    pub timeout: Option<S<Scalar>>,
    pub threshold: Option<S<Scalar>>,
    pub payload_size: Option<S<i64>>,
    pub dscp: Option<S<i64>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawListOp {
    All,
    Any,
    AtLeast,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrack {
    pub name: S<String>,
    pub probe: Option<S<String>>,
    pub uplink: Option<S<String>>,
    pub list: Option<S<Vec<S<String>>>>,
    pub mode: Option<S<TrackMode>>,
    pub op: Option<S<RawListOp>>,
    pub at_least: Option<S<i64>>,
    pub delay_down: Option<S<Scalar>>,
    pub delay_up: Option<S<Scalar>>,
    pub on_up: Option<RawHook>,
    pub on_down: Option<RawHook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHook {
    pub log: Option<String>,
    pub command: Option<S<String>>,
    pub timeout: Option<S<Scalar>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawFailback {
    Stay,
    Move,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFailover {
    pub reset_tcp: Option<bool>,
    pub failback: Option<RawFailback>,
    pub failback_grace: Option<S<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVrrp {
    pub vrid: S<i64>,
    pub addresses: S<Vec<S<String>>>,
    pub priority: Option<S<i64>>,
    pub advert_interval: Option<S<Scalar>>,
    pub preempt: Option<bool>,
    pub preempt_delay: Option<S<Scalar>>,
    #[serde(default)]
    pub track: Vec<RawVrrpTrack>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVrrpTrack {
    pub track: S<String>,
    pub decrement: S<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDhcpServer {
    pub pool: S<Vec<S<String>>>,
    pub exclude: Option<Vec<S<String>>>,
    pub router: Option<S<String>>,
    pub dns_servers: Option<S<Vec<S<String>>>>,
    pub domain: Option<S<String>>,
    pub lease_time: Option<S<Scalar>>,
    pub mtu: Option<S<i64>>,
    pub routes: Option<Vec<RawClientRoute>>,
    pub lease_file: Option<S<String>>,
    pub max_leases: Option<S<i64>>,
    pub max_per_mac: Option<S<i64>>,
    #[serde(rename = "static", default)]
    pub static_leases: Vec<RawStaticLease>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientRoute {
    pub prefix: S<String>,
    pub next_hop: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStaticLease {
    pub mac: S<String>,
    pub address: S<String>,
    pub hostname: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    pub enable: Option<bool>,
    pub cache_entries: Option<S<i64>>,
    pub cache_bytes: Option<S<i64>>,
    pub rate: Option<S<i64>>,
    pub burst: Option<S<i64>>,
    pub timeout: Option<S<Scalar>>,
}

/// A value that may be written either as a string or as an integer (durations, protocols,
/// ports); validation decides what each form means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Scalar {
    Int(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom(format!("integer {v} is too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_string()))
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}
