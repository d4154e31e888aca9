//! Port forwards (SPEC 13, 31) as the NAT table applies them: which (uplink, protocol, port)
//! goes to which LAN host and port, who may use it, and how often it was used. A forwarded
//! session is an ordinary session of its uplink whose outside port is the forward's, so replies,
//! timeouts and the flush of a dead uplink treat it like any other.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    Creation, Direction, Endpoint, ForwardStats, InboundKey, NatError, NatTable, OutKey, Session,
    State, Tick, Translation, increment,
};
use crate::UplinkId;
use crate::clock::Instant;
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

/// The table's side of port forwards: the forwards it knows, and the inbound sessions they open.
impl NatTable {
    /// The table with these port forwards (SPEC 13): their ports leave the NAT pools of their
    /// uplinks, so an outbound mapping never takes one.
    pub fn with_forwards(mut self, forwards: Vec<Forward>) -> NatTable {
        for f in &forwards {
            for up in f
                .uplinks
                .iter()
                .filter_map(|u| self.uplinks.get(usize::from(u.0)))
            {
                for &proto in &f.protocols {
                    up.pool(proto).lock().reserve(f.first, f.last);
                }
            }
        }
        self.forwards = Forwards::new(forwards);
        self
    }

    pub fn forwards(&self) -> &[Forward] {
        &self.forwards.list
    }

    /// The forward publishing (`uplink`, `proto`, `port`), by index into `forwards()`.
    pub fn find_forward(&self, uplink: UplinkId, proto: u8, port: u16) -> Option<usize> {
        self.forwards.find(uplink, proto, port)
    }

    /// True if forward `index` accepts a new connection from `src`; a refusal is counted.
    pub fn forward_admits(&self, index: usize, src: Ipv4Addr) -> bool {
        let ok = self.forwards.list.get(index).is_some_and(|f| f.allows(src));
        if !ok {
            self.forwards.refuse(index);
        }
        ok
    }

    /// Use of every forward: counters, and the sessions open now (one pass over the table).
    pub fn forward_stats(&self) -> Vec<ForwardStats> {
        let mut stats: Vec<ForwardStats> = (0..self.forwards.list.len())
            .map(|i| {
                let (hits, refused) = self.forwards.stats(i);
                ForwardStats {
                    hits,
                    refused,
                    active: 0,
                }
            })
            .collect();
        for shard in &self.shards {
            let shard = shard.lock();
            for (key, s) in shard.sessions() {
                if let Some(i) = self.forwards.find(s.uplink, key.proto, s.outside_port)
                    && let Some(st) = stats.get_mut(i)
                {
                    st.active += 1;
                }
            }
        }
        stats
    }

    /// SPEC 13: a new connection to forward `forward` arriving as `key` (which no session
    /// expects): opens a session on the key's uplink whose outside port is the forwarded port
    /// and whose inside is the forward's LAN host. If a session of that flow exists already
    /// (another thread, or the LAN host's own flow), that one is returned, whatever its uplink.
    pub fn create_inbound(
        &self,
        key: &InboundKey,
        forward: usize,
        now: Instant,
        tcp_flags: u8,
    ) -> Result<Translation, NatError> {
        let f = self.forwards.list.get(forward).ok_or(NatError::NoAddress)?;
        let (up, outside) = self.uplink_with_slot(key.uplink)?;
        let (ip, port) = f.target(key.outside_port);
        let inside = Endpoint { ip, port };
        let okey = OutKey::new(key.proto, inside, key.remote, key.remote_port);
        let outcome = {
            let mut shard = self.shard(key.proto, key.remote, key.remote_port).lock();
            if let Some(existing) = shard.session_mut(&okey) {
                existing.touch(Tick::of(now), Direction::Inbound, tcp_flags, None);
                self.translation(okey, existing)
                    .map_or(Creation::AddressChanged, Creation::Raced)
            } else if up.addr() != Some(outside) {
                Creation::AddressChanged
            } else {
                let session = Session {
                    last_seen: Tick::of(now),
                    inside_ack: 0,
                    outside_port: key.outside_port,
                    uplink: key.uplink,
                    state: State::initial(key.proto, tcp_flags),
                    ack_seen: false,
                };
                shard.insert(okey, session);
                Creation::Created(session.translation(okey, outside))
            }
        };
        match outcome {
            Creation::Created(t) => {
                up.sessions.fetch_add(1, Ordering::Relaxed);
                increment(&self.counters.created);
                self.forwards.hit(forward);
                Ok(t)
            }
            Creation::Raced(t) => {
                self.count.fetch_sub(1, Ordering::AcqRel);
                Ok(t)
            }
            Creation::AddressChanged => {
                self.count.fetch_sub(1, Ordering::AcqRel);
                Err(NatError::NoAddress)
            }
        }
    }
}
