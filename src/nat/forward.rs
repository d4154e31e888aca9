//! Port forwards (SPEC 13, 31) as the NAT table applies them: which (uplink, protocol, port)
//! goes to which LAN host and port, who may use it, and how often it was used. A forwarded
//! session is an ordinary session of its uplink whose outside port is the forward's, so replies,
//! timeouts and the flush of a dead uplink treat it like any other.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::UplinkId;
use crate::config::Config;
use crate::prefix::Ipv4Prefix;

/// One configured forward, with uplinks by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub name: String,
    pub uplinks: Vec<UplinkId>,
    /// IP protocol numbers (TCP, UDP).
    pub protocols: Vec<u8>,
    /// External ports, inclusive.
    pub first: u16,
    pub last: u16,
    pub to: Ipv4Addr,
    /// Internal port of `first`; the range maps 1:1.
    pub to_port: u16,
    /// Sources allowed; empty: any.
    pub allow: Vec<Ipv4Prefix>,
}

impl Forward {
    /// The forwards of a validated configuration.
    pub fn from_config(cfg: &Config) -> Vec<Forward> {
        cfg.forwards
            .iter()
            .map(|f| Forward {
                name: f.name.clone(),
                uplinks: f
                    .uplinks
                    .iter()
                    .filter_map(|u| Some(UplinkId(u8::try_from(cfg.uplink_index(u)?).ok()?)))
                    .collect(),
                protocols: f.protocols.clone(),
                first: f.port.first,
                last: f.port.last,
                to: f.to,
                to_port: f.to_port,
                allow: f.allow.clone(),
            })
            .collect()
    }

    pub fn matches(&self, uplink: UplinkId, proto: u8, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
            && self.protocols.contains(&proto)
            && self.uplinks.contains(&uplink)
    }

    pub fn allows(&self, src: Ipv4Addr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|p| p.contains(src))
    }

    /// The LAN endpoint external `port` (inside the forward's range) goes to.
    pub fn target(&self, port: u16) -> (Ipv4Addr, u16) {
        (
            self.to,
            self.to_port.wrapping_add(port.wrapping_sub(self.first)),
        )
    }
}

/// The forwards with their live counters.
#[derive(Default)]
pub(super) struct Forwards {
    pub(super) list: Vec<Forward>,
    /// Sessions opened, per forward.
    hits: Box<[AtomicU64]>,
    /// New connections refused by `allow`, per forward.
    refused: Box<[AtomicU64]>,
}

impl Forwards {
    pub(super) fn new(list: Vec<Forward>) -> Forwards {
        let counters = || list.iter().map(|_| AtomicU64::new(0)).collect();
        Forwards {
            hits: counters(),
            refused: counters(),
            list,
        }
    }

    /// The forward of (uplink, proto, port), by index.
    pub(super) fn find(&self, uplink: UplinkId, proto: u8, port: u16) -> Option<usize> {
        self.list
            .iter()
            .position(|f| f.matches(uplink, proto, port))
    }

    pub(super) fn hit(&self, index: usize) {
        if let Some(c) = self.hits.get(index) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn refuse(&self, index: usize) {
        if let Some(c) = self.refused.get(index) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn stats(&self, index: usize) -> (u64, u64) {
        let get = |c: &[AtomicU64]| c.get(index).map_or(0, |c| c.load(Ordering::Relaxed));
        (get(&self.hits), get(&self.refused))
    }
}
