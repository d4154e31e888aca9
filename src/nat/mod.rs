//! The NAT table (SPEC 9–13, 21): NAPT ("overload") per uplink with endpoint-independent mapping
//! and address-and-port-dependent filtering (RFC 4787), and port forwards (`forward.rs`), whose
//! sessions are ordinary sessions of their uplink on a port the pools never hand out. Pure
//! state: the fast path parses and rewrites packets, this module decides and remembers
//! translations. IPv6 prefix translation (NPTv6) is stateless and lives apart, in `npt6.rs`.
//!
//! Layout: sessions live in 64 shards chosen by the remote endpoint, which both the outbound key
//! (proto, inside, remote) and the inbound key (uplink, proto, outside port, remote) contain, so
//! either lookup takes one shard lock. Port mappings live in a pool per (uplink, protocol),
//! touched only when a session is created or removed. Locks are never nested.
//!
//! The two tables of a shard (`table.rs`) are open-addressing arrays whose slot for a key
//! follows from its hash: a worker prefetches the slots of a whole batch (`prefetch_outbound`,
//! `prefetch_inbound`) without the lock, then looks the frames up one by one, so at a million
//! sessions a lookup finds its slot in cache instead of waiting for DRAM. An inbound lookup
//! finds the inside endpoint in the inbound table, then the session in the outbound one:
//! `prefetch_inbound` covers the first, `prefetch_inbound_session` (a second pass, once the
//! first has arrived) the second.
//!
//! Memory: a session is one slot in each of two tables (26 + 16 bytes, plus a distance byte
//! each and one of padding in the inbound slot: 27 + 18), which a table keeps between 7/16 and
//! 7/8 full. So a session stores no outside address (it is its uplink's current one) and its
//! last-seen time in coarse ticks (`Tick`).

mod forward;
mod frag;
pub mod npt6;
mod ports;
mod session;
mod state;
mod table;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use foldhash::fast::RandomState;
use parking_lot::Mutex;

use crate::UplinkId;
use crate::clock::Instant;
pub use forward::Forward;
use forward::Forwards;
pub use frag::{FragKey, FragTable};
use ports::{Endpoint, PortPool};
use session::{
    AddrCell, InKey, MAX_TIMEOUT, OutKey, PaddedShard, Session, Tick, Uplink, encode_addr,
};
use state::State;
pub use state::{
    Direction, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Timeouts,
};

const SHARDS: usize = 64;
/// Shards of the per-host session counts (touched only when a session is created or removed).
const HOST_SHARDS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatParams {
    /// Sessions in total, all uplinks together.
    pub max_entries: usize,
    /// Sessions one inside host may hold, all uplinks together (SPEC 35): one host cannot take
    /// the table from the others.
    pub max_sessions_per_host: usize,
    /// Outside ports (and ICMP query ids) handed out, inclusive.
    pub port_min: u16,
    pub port_max: u16,
    pub timeouts: Timeouts,
}

impl Default for NatParams {
    fn default() -> NatParams {
        NatParams {
            max_entries: 262_144,
            max_sessions_per_host: 65_536,
            port_min: 1024,
            port_max: 65535,
            timeouts: Timeouts::default(),
        }
    }
}

/// A flow as the inside host sends it. For ICMP echo the inside port is the echo identifier and
/// the remote port is 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FlowKey {
    pub proto: u8,
    pub inside: Ipv4Addr,
    pub inside_port: u16,
    pub remote: Ipv4Addr,
    pub remote_port: u16,
}

/// A packet arriving on an uplink as NAT matches it: to (the uplink's address, `outside_port`)
/// from (`remote`, `remote_port`). For ICMP echo replies the outside port is the echo identifier
/// and the remote port is 0.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InboundKey {
    pub uplink: UplinkId,
    pub proto: u8,
    pub outside_port: u16,
    pub remote: Ipv4Addr,
    pub remote_port: u16,
}

/// How a session is rewritten: inside (ip, port) <-> (uplink address, outside port).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Translation {
    pub uplink: UplinkId,
    pub outside: Ipv4Addr,
    pub outside_port: u16,
    pub inside: Ipv4Addr,
    pub inside_port: u16,
}

#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum NatError {
    #[error("NAT table full")]
    TableFull,
    #[error("no free outside port")]
    PortsExhausted,
    #[error("uplink has no NAT address")]
    NoAddress,
    #[error("the inside host holds its quota of sessions")]
    HostQuota,
}

/// A TCP session removed by `flush_uplink`, for the RST toward its inside host (SPEC 21).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushedTcp {
    pub key: FlowKey,
    pub uplink: UplinkId,
    /// The last ACK number the inside host sent: the next sequence number it expects from the
    /// remote, so a RST with this sequence number lands exactly in its window.
    pub inside_ack: u32,
}

/// One session, for `show nat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub key: FlowKey,
    pub translation: Translation,
    /// "syn" "established" "closing" "udp" "udp-unreplied" "icmp" (or "other").
    pub state: &'static str,
    pub idle: Duration,
    pub expires_in: Duration,
    /// The port forward that opened the session (index into `forwards()`).
    pub forward: Option<usize>,
}

/// A port forward's use, for `show forwards` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForwardStats {
    /// Sessions it opened.
    pub hits: u64,
    /// New connections its `allow` list refused.
    pub refused: u64,
    /// Its sessions now.
    pub active: usize,
}

/// Snapshot of the table's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NatCounters {
    pub created: u64,
    pub expired: u64,
    /// Removed by `flush_uplink` or an address change.
    pub flushed: u64,
    /// New flows refused because the table was full (SPEC 12).
    pub table_full: u64,
    /// New flows refused because the uplink had no free outside port.
    pub ports_exhausted: u64,
}

/// The live atomics behind [`NatCounters`]: every worker creating or removing sessions adds to
/// them, so unlike the per-worker packet counters they need an atomic add.
#[derive(Default)]
struct AtomicCounters {
    created: AtomicU64,
    expired: AtomicU64,
    flushed: AtomicU64,
    table_full: AtomicU64,
    ports_exhausted: AtomicU64,
}

fn increment(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What `create_outbound` found under the shard lock.
enum Creation {
    Created(Translation),
    /// Another thread created the session between the caller's lookup and this creation.
    Raced(Translation),
    /// An uplink's address changed (and its sessions are being flushed) meanwhile: the packet
    /// is dropped like any other during an address change.
    AddressChanged,
}

/// A removed session, to be released from its port pool once the shard lock is dropped.
struct Removed {
    key: OutKey,
    session: Session,
}

/// Shared by all worker threads through `&self`.
pub struct NatTable {
    params: NatParams,
    shards: [PaddedShard; SHARDS],
    uplinks: Box<[Uplink]>,
    /// Sessions plus creations in progress; bounded by `params.max_entries`.
    count: AtomicUsize,
    /// The same per inside host, bounded by `params.max_sessions_per_host`; sharded by host.
    hosts: [Mutex<HashMap<Ipv4Addr, usize, RandomState>>; HOST_SHARDS],
    counters: AtomicCounters,
    /// Keyed at startup: picks shards and port search starts, which attackers must not predict.
    seed: RandomState,
    forwards: Forwards,
}

impl NatTable {
    /// `uplink_addrs[i]` is the NAT address of `UplinkId(i)`; `None` = uplink without NAT.
    pub fn new(mut params: NatParams, uplink_addrs: &[Option<Ipv4Addr>]) -> NatTable {
        params.timeouts = params.timeouts.capped(MAX_TIMEOUT);
        let pool = || Mutex::new(PortPool::new(params.port_min, params.port_max));
        let uplinks = uplink_addrs
            .iter()
            .map(|&addr| Uplink {
                addr: AddrCell(AtomicU64::new(encode_addr(addr))),
                sessions: AtomicUsize::new(0),
                pools: [pool(), pool(), pool(), pool()],
            })
            .collect();
        NatTable {
            params,
            shards: std::array::from_fn(|_| PaddedShard::default()),
            uplinks,
            count: AtomicUsize::new(0),
            hosts: std::array::from_fn(|_| Mutex::new(HashMap::default())),
            counters: AtomicCounters::default(),
            seed: RandomState::default(),
            forwards: Forwards::default(),
        }
    }

    /// New NAT address of `uplink` (or none); on a change its sessions are flushed, since their
    /// outside ports were mapped on the old address. Unknown uplinks are ignored.
    pub fn set_uplink_addr(&self, uplink: UplinkId, addr: Option<Ipv4Addr>) {
        let Some(up) = self.uplinks.get(usize::from(uplink.0)) else {
            return;
        };
        // Store before flushing: a creation re-checks the address under its shard lock, so it
        // either sees the new address or inserts before the flush visits its shard.
        if up.addr.0.swap(encode_addr(addr), Ordering::AcqRel) != encode_addr(addr) {
            self.flush_uplink(uplink);
        }
    }

    /// Starts loading the slots where the session of `key` would be, so that a lookup of it a
    /// little later finds them in cache: a worker calls it for every frame of a batch before
    /// processing the first. Takes no lock and has no effect besides timing.
    pub fn prefetch_outbound(&self, key: &FlowKey) {
        self.shard(key.proto, key.remote, key.remote_port)
            .prefetch_out(&OutKey::of(key));
    }

    /// `prefetch_outbound` for an inbound key: its entry in the inbound table, which names the
    /// session's inside endpoint. The session is another table's slot: see
    /// `prefetch_inbound_session`.
    pub fn prefetch_inbound(&self, key: &InboundKey) {
        self.shard(key.proto, key.remote, key.remote_port)
            .prefetch_inb(&InKey::of_inbound(key));
    }

    /// The second step for an inbound key, once `prefetch_inbound`'s load has arrived: reads
    /// its entry (under the shard lock, briefly) and prefetches the session it leads to.
    pub fn prefetch_inbound_session(&self, key: &InboundKey) {
        let shard = self.shard(key.proto, key.remote, key.remote_port);
        let Some(inside) = shard.lock().inside(&InKey::of_inbound(key)) else {
            return;
        };
        shard.prefetch_out(&OutKey::new(key.proto, inside, key.remote, key.remote_port));
    }

    /// Fast path, outbound: refreshes the session of `key` (last seen, TCP state from
    /// `tcp_flags`, 0 for non-TCP; `tcp_ack` when the ACK flag is set) and returns it.
    pub fn lookup_outbound(
        &self,
        key: &FlowKey,
        now: Instant,
        tcp_flags: u8,
        tcp_ack: Option<u32>,
    ) -> Option<Translation> {
        let okey = OutKey::of(key);
        let mut shard = self.shard(key.proto, key.remote, key.remote_port).lock();
        let session = shard.session_mut(&okey)?;
        session.touch(Tick::of(now), Direction::Outbound, tcp_flags, tcp_ack);
        self.translation(okey, session)
    }

    /// Outbound without a session: creates one on `uplink` (the routing decision), reusing the
    /// inside endpoint's mapping on that uplink if it has one. If another thread created the
    /// session meanwhile, that one is refreshed and returned, whatever its uplink.
    pub fn create_outbound(
        &self,
        key: &FlowKey,
        uplink: UplinkId,
        now: Instant,
        tcp_flags: u8,
        tcp_ack: Option<u32>,
    ) -> Result<Translation, NatError> {
        let (up, outside) = self.uplink_with_slot(uplink)?;
        if !self.reserve_host(key.inside) {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(NatError::HostQuota);
        }
        let inside = Endpoint {
            ip: key.inside,
            port: key.inside_port,
        };
        let outside_port = match up.pool(key.proto).lock().acquire(inside, &self.seed) {
            Ok(port) => port,
            Err(e) => {
                self.release_host(key.inside);
                self.count.fetch_sub(1, Ordering::AcqRel);
                increment(&self.counters.ports_exhausted);
                return Err(e);
            }
        };
        let okey = OutKey::of(key);
        let outcome = {
            let mut shard = self.shard(key.proto, key.remote, key.remote_port).lock();
            if let Some(existing) = shard.session_mut(&okey) {
                existing.touch(Tick::of(now), Direction::Outbound, tcp_flags, tcp_ack);
                self.translation(okey, existing)
                    .map_or(Creation::AddressChanged, Creation::Raced)
            } else if up.addr() != Some(outside) {
                Creation::AddressChanged
            } else {
                let session = Session {
                    last_seen: Tick::of(now),
                    inside_ack: tcp_ack.unwrap_or(0),
                    outside_port,
                    uplink,
                    state: State::initial(key.proto, tcp_flags),
                    ack_seen: tcp_ack.is_some(),
                };
                // The pool gives this port to this inside endpoint alone, so the inbound key
                // cannot belong to another session.
                shard.insert(okey, session);
                Creation::Created(session.translation(okey, outside))
            }
        };
        if let Creation::Created(translation) = outcome {
            up.sessions.fetch_add(1, Ordering::Relaxed);
            increment(&self.counters.created);
            return Ok(translation);
        }
        // Not created after all: give back the mapping reference and the slots.
        up.pool(key.proto).lock().release(inside, outside_port);
        self.release_host(key.inside);
        self.count.fetch_sub(1, Ordering::AcqRel);
        match outcome {
            Creation::Raced(translation) | Creation::Created(translation) => Ok(translation),
            Creation::AddressChanged => Err(NatError::NoAddress),
        }
    }

    /// Fast path, inbound on `uplink` to (its address, `outside_port`) from the remote: the
    /// session, refreshed, or `None` (unsolicited: the caller drops and counts).
    pub fn lookup_inbound(
        &self,
        key: &InboundKey,
        now: Instant,
        tcp_flags: u8,
    ) -> Option<Translation> {
        let (proto, remote, remote_port) = (key.proto, key.remote, key.remote_port);
        let ikey = InKey::of_inbound(key);
        let mut shard = self.shard(proto, remote, remote_port).lock();
        let inside = shard.inside(&ikey)?;
        let okey = OutKey::new(proto, inside, remote, remote_port);
        let session = shard.session_mut(&okey)?;
        session.touch(Tick::of(now), Direction::Inbound, tcp_flags, None);
        self.translation(okey, session)
    }

    /// `lookup_inbound` without refreshing or changing state (ICMP errors quoting a packet of
    /// the session, `explain`).
    pub fn peek_inbound(&self, key: &InboundKey) -> Option<Translation> {
        let (proto, remote, remote_port) = (key.proto, key.remote, key.remote_port);
        let ikey = InKey::of_inbound(key);
        let shard = self.shard(proto, remote, remote_port).lock();
        let inside = shard.inside(&ikey)?;
        let okey = OutKey::new(proto, inside, remote, remote_port);
        self.translation(okey, shard.session(&okey)?)
    }

    /// `lookup_outbound` without refreshing or changing state.
    pub fn peek_outbound(&self, key: &FlowKey) -> Option<Translation> {
        let okey = OutKey::of(key);
        let shard = self.shard(key.proto, key.remote, key.remote_port).lock();
        self.translation(okey, shard.session(&okey)?)
    }

    /// Removes sessions idle longer than their state's timeout; returns how many. Call
    /// periodically from the control thread: it locks one shard at a time.
    pub fn expire(&self, now: Instant) -> usize {
        let timeouts = self.params.timeouts;
        let now = Tick::of(now);
        let n = self.remove_where(
            |_, s| now.since(s.last_seen) > timeouts.for_state(s.state),
            |_| {},
        );
        self.counters.expired.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// SPEC 21: removes every session on `uplink`; returns how many, and the TCP ones whose
    /// inside host has sent an ACK (the RST toward it needs that number; a host still in
    /// SYN-SENT retries its SYN and gets a fresh session).
    pub fn flush_uplink(&self, uplink: UplinkId) -> (usize, Vec<FlushedTcp>) {
        self.flush(uplink, false)
    }

    /// Like `flush_uplink`, for an uplink whose routes were withdrawn while its link still
    /// works: connections that came in through its port forwards stay (their clients reach this
    /// uplink's address, no other uplink can carry them; SPEC 13), and so do the LAN clients'
    /// halves of hairpin flows, which go to an uplink's own address.
    pub fn flush_outbound(&self, uplink: UplinkId) -> (usize, Vec<FlushedTcp>) {
        self.flush(uplink, true)
    }

    fn flush(&self, uplink: UplinkId, spare_inbound: bool) -> (usize, Vec<FlushedTcp>) {
        let own: Vec<Ipv4Addr> = self.uplinks.iter().filter_map(|u| u.addr()).collect();
        let inbound = |key: &OutKey, s: &Session| {
            self.forwards
                .find(uplink, key.proto, s.outside_port)
                .is_some()
                || own.contains(&key.remote)
        };
        let mut tcp = Vec::new();
        let n = self.remove_where(
            |key, s| s.uplink == uplink && !(spare_inbound && inbound(key, s)),
            |r| {
                if r.key.proto == PROTO_TCP && r.session.ack_seen {
                    tcp.push(FlushedTcp {
                        key: r.key.flow_key(),
                        uplink,
                        inside_ack: r.session.inside_ack,
                    });
                }
            },
        );
        self.counters.flushed.fetch_add(n as u64, Ordering::Relaxed);
        (n, tcp)
    }

    pub fn len(&self) -> usize {
        self.uplinks
            .iter()
            .map(|u| u.sessions.load(Ordering::Relaxed))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions per uplink, indexed by `UplinkId.0`.
    pub fn len_by_uplink(&self) -> Vec<usize> {
        self.uplinks
            .iter()
            .map(|u| u.sessions.load(Ordering::Relaxed))
            .collect()
    }

    pub fn counters(&self) -> NatCounters {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NatCounters {
            created: get(&c.created),
            expired: get(&c.expired),
            flushed: get(&c.flushed),
            table_full: get(&c.table_full),
            ports_exhausted: get(&c.ports_exhausted),
        }
    }

    /// For `show nat`: a copy of the sessions (of one uplink, or all), with state and age.
    /// Sessions of an uplink whose address is being removed are left out, as they are going.
    pub fn sessions(&self, uplink: Option<UplinkId>, now: Instant) -> Vec<SessionInfo> {
        self.sessions_matching(uplink, None, usize::MAX, now).0
    }

    /// At most `limit` sessions of `uplink` (or all) that involve `address` (inside, outside or
    /// remote; or any), and how many matched: `show nat` on a full table copies a page, not
    /// the table.
    pub fn sessions_matching(
        &self,
        uplink: Option<UplinkId>,
        address: Option<Ipv4Addr>,
        limit: usize,
        now: Instant,
    ) -> (Vec<SessionInfo>, usize) {
        let timeouts = self.params.timeouts;
        let now = Tick::of(now);
        let mut out = Vec::new();
        let mut matched = 0;
        for shard in &self.shards {
            let shard = shard.lock();
            for (&key, s) in shard
                .sessions()
                .filter(|(_, s)| uplink.is_none_or(|u| s.uplink == u))
            {
                let Some(translation) = self.translation(key, s) else {
                    continue;
                };
                let flow = key.flow_key();
                let involved = address.is_none_or(|a| {
                    flow.inside == a || flow.remote == a || translation.outside == a
                });
                if !involved {
                    continue;
                }
                matched += 1;
                if out.len() < limit {
                    let idle = now.since(s.last_seen);
                    out.push(SessionInfo {
                        key: flow,
                        translation,
                        state: s.state.label(),
                        idle,
                        expires_in: timeouts.for_state(s.state).saturating_sub(idle),
                        forward: self.forwards.find(s.uplink, key.proto, s.outside_port),
                    });
                }
            }
        }
        (out, matched)
    }

    /// Approximate heap bytes of the sessions and mappings: hash-table slots, port bitmaps,
    /// shard array.
    pub fn memory_bytes(&self) -> usize {
        let shards: usize = self.shards.iter().map(|s| s.lock().memory_bytes()).sum();
        let pools: usize = self
            .uplinks
            .iter()
            .flat_map(|u| &u.pools)
            .map(|p| p.lock().memory_bytes())
            .sum();
        size_of_val(&self.shards) + shards + pools
    }

    /// The session's translation, with its uplink's current address; `None` while that uplink
    /// has none, in the moment before `set_uplink_addr` flushes the session.
    /// The uplink and its outside address, with one table slot reserved for a new session:
    /// taken first, so a full table costs no port-pool work. The caller gives the slot back
    /// (`count`) if the session is not created after all.
    fn uplink_with_slot(&self, uplink: UplinkId) -> Result<(&Uplink, Ipv4Addr), NatError> {
        let up = self
            .uplinks
            .get(usize::from(uplink.0))
            .ok_or(NatError::NoAddress)?;
        let outside = up.addr().ok_or(NatError::NoAddress)?;
        let max = self.params.max_entries;
        if self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c < max).then_some(c + 1)
            })
            .is_err()
        {
            increment(&self.counters.table_full);
            return Err(NatError::TableFull);
        }
        Ok((up, outside))
    }

    fn translation(&self, key: OutKey, session: &Session) -> Option<Translation> {
        let outside = self.uplinks.get(usize::from(session.uplink.0))?.addr()?;
        Some(session.translation(key, outside))
    }

    fn shard(&self, proto: u8, remote: Ipv4Addr, remote_port: u16) -> &PaddedShard {
        let h = self.seed.hash_one(
            u64::from(remote.to_bits()) << 24 | u64::from(remote_port) << 8 | u64::from(proto),
        );
        // The top bits: the in-shard maps use the low bits of their own (differently seeded)
        // hashes, but keeping the two apart costs nothing.
        &self.shards[(h >> 58) as usize % SHARDS]
    }

    /// Removes the sessions matching `pred`, shard by shard; `on_removed` sees each one after
    /// the shard lock is dropped, then its mapping reference and slot are released.
    fn remove_where(
        &self,
        pred: impl Fn(&OutKey, &Session) -> bool,
        mut on_removed: impl FnMut(&Removed),
    ) -> usize {
        let mut removed = Vec::new();
        let mut total = 0;
        for shard in &self.shards {
            {
                let mut shard = shard.lock();
                removed.extend(
                    shard
                        .sessions()
                        .filter(|(key, session)| pred(key, session))
                        .map(|(&key, &session)| Removed { key, session }),
                );
                for r in &removed {
                    shard.remove(&r.key);
                }
            }
            total += removed.len();
            for r in removed.drain(..) {
                on_removed(&r);
                if let Some(up) = self.uplinks.get(usize::from(r.session.uplink.0)) {
                    let port = r.session.outside_port;
                    up.pool(r.key.proto).lock().release(r.key.inside(), port);
                    up.sessions.fetch_sub(1, Ordering::Relaxed);
                }
                self.release_host(r.key.inside().ip);
                self.count.fetch_sub(1, Ordering::AcqRel);
            }
        }
        total
    }

    fn host_shard(&self, host: Ipv4Addr) -> &Mutex<HashMap<Ipv4Addr, usize, RandomState>> {
        &self.hosts[self.seed.hash_one(host) as usize % HOST_SHARDS]
    }

    /// Counts a session of `host` unless it holds its quota.
    fn reserve_host(&self, host: Ipv4Addr) -> bool {
        let mut hosts = self.host_shard(host).lock();
        let n = hosts.entry(host).or_insert(0);
        if *n >= self.params.max_sessions_per_host {
            return false;
        }
        *n += 1;
        true
    }

    fn release_host(&self, host: Ipv4Addr) {
        let mut hosts = self.host_shard(host).lock();
        if let Some(n) = hosts.get_mut(&host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                hosts.remove(&host);
            }
        }
    }
}

/// Heap bytes of a std (hashbrown) table of `capacity`: a power-of-two number of buckets at
/// most 7/8 full, each holding the entry and one control byte, plus one group of trailing
/// control bytes.
fn hash_table_bytes<K, V>(capacity: usize) -> usize {
    const GROUP: usize = 16;
    let buckets = match capacity {
        0 => return 0,
        1..=3 => 4,
        4..=7 => 8,
        c => (c * 8 / 7).next_power_of_two(),
    };
    buckets * (size_of::<(K, V)>() + 1) + GROUP
}

#[cfg(test)]
mod tests;
