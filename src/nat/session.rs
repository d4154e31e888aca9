//! What the NAT table stores: the packed session keys and entries, their coarse clock, the
//! shards that hold them (two `table::Table`s each, behind a lock, and what prefetching reads
//! without it) and the per-uplink state (address, port pools).

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use foldhash::fast::RandomState;
use parking_lot::{Mutex, MutexGuard};

use super::ports::{Endpoint, PortPool};
use super::state::{Direction, PROTO_ICMP, PROTO_TCP, PROTO_UDP, State};
use super::table::{Hint, Table};
use super::{FlowKey, InboundKey, Translation};
use crate::UplinkId;
use crate::clock::Instant;

/// `FlowKey` without padding: 13 bytes, byte-aligned like `Session`, so a session table entry is
/// 26 bytes where natural alignment would make it 32.
#[repr(C, packed)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct OutKey {
    pub(super) inside: Ipv4Addr,
    pub(super) remote: Ipv4Addr,
    pub(super) inside_port: u16,
    pub(super) remote_port: u16,
    pub(super) proto: u8,
}

impl OutKey {
    pub(super) fn new(proto: u8, inside: Endpoint, remote: Ipv4Addr, remote_port: u16) -> OutKey {
        OutKey {
            inside: inside.ip,
            remote,
            inside_port: inside.port,
            remote_port,
            proto,
        }
    }

    pub(super) fn of(key: &FlowKey) -> OutKey {
        let inside = Endpoint {
            ip: key.inside,
            port: key.inside_port,
        };
        OutKey::new(key.proto, inside, key.remote, key.remote_port)
    }

    pub(super) fn inside(self) -> Endpoint {
        Endpoint {
            ip: self.inside,
            port: self.inside_port,
        }
    }

    pub(super) fn flow_key(self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            inside: self.inside,
            inside_port: self.inside_port,
            remote: self.remote,
            remote_port: self.remote_port,
        }
    }
}

/// Two words: hashing costs two hasher rounds instead of five.
impl Hash for OutKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(u64::from(self.inside.to_bits()) << 32 | u64::from(self.remote.to_bits()));
        h.write_u64(
            u64::from(self.inside_port) << 24
                | u64::from(self.remote_port) << 8
                | u64::from(self.proto),
        );
    }
}

/// The inbound key: (uplink, proto, outside port, remote ip, remote port); 10 bytes, so with
/// its `Endpoint` value a table entry is 16.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct InKey {
    pub(super) remote: Ipv4Addr,
    pub(super) outside_port: u16,
    pub(super) remote_port: u16,
    pub(super) uplink: UplinkId,
    pub(super) proto: u8,
}

impl InKey {
    pub(super) fn new(
        uplink: UplinkId,
        proto: u8,
        outside_port: u16,
        remote: Ipv4Addr,
        rport: u16,
    ) -> InKey {
        InKey {
            remote,
            outside_port,
            remote_port: rport,
            uplink,
            proto,
        }
    }

    pub(super) fn of_inbound(key: &InboundKey) -> InKey {
        InKey::new(
            key.uplink,
            key.proto,
            key.outside_port,
            key.remote,
            key.remote_port,
        )
    }

    pub(super) fn of(key: OutKey, s: &Session) -> InKey {
        InKey::new(
            s.uplink,
            key.proto,
            s.outside_port,
            key.remote,
            key.remote_port,
        )
    }
}

impl Hash for InKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(
            u64::from(self.remote.to_bits()) << 32
                | u64::from(self.outside_port) << 16
                | u64::from(self.remote_port),
        );
        h.write_u16(u16::from(self.uplink.0) << 8 | u16::from(self.proto));
    }
}

/// The longest timeout a session can have: `Tick`s wrap after 49 days, and `Tick::since` reads
/// past half of that as "not yet". Twenty days leave `expire` days of slack to run.
pub(super) const MAX_TIMEOUT: Duration = Duration::from_secs(20 * 24 * 60 * 60);

/// A session's last-seen time: milliseconds of the monotonic clock in a wrapping u32, half the
/// size of an `Instant`. Sessions are expired long before it wraps (`MAX_TIMEOUT`).
#[derive(Clone, Copy)]
pub(super) struct Tick(u32);

impl Tick {
    pub(super) fn of(now: Instant) -> Tick {
        // Truncating keeps the low bits, all that wrapping arithmetic needs.
        Tick((now.as_nanos() / 1_000_000) as u32)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is in fact later (workers read the clock
    /// before taking the shard lock, so their updates can arrive a little out of order).
    pub(super) fn since(self, earlier: Tick) -> Duration {
        let ms = self.0.wrapping_sub(earlier.0);
        if ms > u32::MAX / 2 {
            Duration::ZERO
        } else {
            Duration::from_millis(u64::from(ms))
        }
    }

    pub(super) fn later(self, other: Tick) -> Tick {
        if other.since(self).is_zero() {
            self
        } else {
            other
        }
    }
}

/// Everything a session needs beyond its key: 13 bytes, packed (see `OutKey`). The outside
/// address is not stored: it is the uplink's current one, and an address change flushes the
/// uplink's sessions.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub(super) struct Session {
    pub(super) last_seen: Tick,
    /// Last ACK number from the inside host (SPEC 21); meaningful when `ack_seen`.
    pub(super) inside_ack: u32,
    pub(super) outside_port: u16,
    pub(super) uplink: UplinkId,
    pub(super) state: State,
    pub(super) ack_seen: bool,
}

impl Session {
    pub(super) fn touch(&mut self, now: Tick, dir: Direction, tcp_flags: u8, tcp_ack: Option<u32>) {
        self.last_seen = self.last_seen.later(now);
        self.state = self.state.next(dir, tcp_flags);
        if let Some(ack) = tcp_ack {
            self.inside_ack = ack;
            self.ack_seen = true;
        }
    }

    pub(super) fn translation(&self, key: OutKey, outside: Ipv4Addr) -> Translation {
        Translation {
            uplink: self.uplink,
            outside,
            outside_port: self.outside_port,
            inside: key.inside,
            inside_port: key.inside_port,
        }
    }
}

/// A shard's sessions: one entry in each table per session. Only reachable through `Locked`,
/// which keeps the two tables and the prefetch hints in step.
#[derive(Default)]
pub(super) struct Shard {
    out: Table<OutKey, Session>,
    /// Inbound key -> inside endpoint; with the remote from the inbound key that rebuilds the
    /// `OutKey` of the session.
    inb: Table<InKey, Endpoint>,
}

/// What is read without the shard lock, to prefetch: each table's hash key (random per table,
/// so no one outside can choose keys that collide; fixed at creation) and where its slots are.
#[derive(Default)]
struct Index {
    out_keys: RandomState,
    inb_keys: RandomState,
    out_at: Hint<OutKey, Session>,
    inb_at: Hint<InKey, Endpoint>,
}

impl Index {
    fn out_hash(&self, key: &OutKey) -> u64 {
        self.out_keys.hash_one(key)
    }

    fn inb_hash(&self, key: &InKey) -> u64 {
        self.inb_keys.hash_one(key)
    }
}

/// Each shard on cache lines of its own (two), so workers locking neighbouring shards do not
/// contend.
#[repr(align(64))]
#[derive(Default)]
pub(super) struct PaddedShard {
    map: Mutex<Shard>,
    index: Index,
}

impl PaddedShard {
    pub(super) fn lock(&self) -> Locked<'_> {
        Locked {
            shard: self.map.lock(),
            index: &self.index,
        }
    }

    /// Starts loading the slots where `key`'s session would be, without the lock.
    pub(super) fn prefetch_out(&self, key: &OutKey) {
        self.index.out_at.prefetch(self.index.out_hash(key));
    }

    /// The same for an inbound key's entry (the session entry it leads to is another miss).
    pub(super) fn prefetch_inb(&self, key: &InKey) {
        self.index.inb_at.prefetch(self.index.inb_hash(key));
    }
}

/// A locked shard.
pub(super) struct Locked<'a> {
    shard: MutexGuard<'a, Shard>,
    index: &'a Index,
}

impl Locked<'_> {
    pub(super) fn session(&self, key: &OutKey) -> Option<&Session> {
        self.shard.out.get(self.index.out_hash(key), key)
    }

    pub(super) fn session_mut(&mut self, key: &OutKey) -> Option<&mut Session> {
        self.shard.out.get_mut(self.index.out_hash(key), key)
    }

    /// The inside endpoint of the session an inbound key belongs to.
    pub(super) fn inside(&self, key: &InKey) -> Option<Endpoint> {
        self.shard.inb.get(self.index.inb_hash(key), key).copied()
    }

    /// Adds a session: the caller has checked that neither of its keys is taken.
    pub(super) fn insert(&mut self, key: OutKey, session: Session) {
        let Index {
            out_keys, inb_keys, ..
        } = self.index;
        let ikey = InKey::of(key, &session);
        let Shard { out, inb } = &mut *self.shard;
        let hash = |k: &InKey| inb_keys.hash_one(k);
        inb.insert_new(hash(&ikey), ikey, key.inside(), hash);
        let hash = |k: &OutKey| out_keys.hash_one(k);
        out.insert_new(hash(&key), key, session, hash);
        // Either table may have grown into a new array.
        self.index.out_at.publish(out);
        self.index.inb_at.publish(inb);
    }

    /// Removes the session of `key` (both entries).
    pub(super) fn remove(&mut self, key: &OutKey) -> Option<Session> {
        let session = self.shard.out.remove(self.index.out_hash(key), key)?;
        let ikey = InKey::of(*key, &session);
        self.shard.inb.remove(self.index.inb_hash(&ikey), &ikey);
        Some(session)
    }

    pub(super) fn sessions(&self) -> impl Iterator<Item = (&OutKey, &Session)> {
        self.shard.out.iter()
    }

    /// Heap bytes of both tables' slots.
    pub(super) fn memory_bytes(&self) -> usize {
        self.shard.out.memory_bytes() + self.shard.inb.memory_bytes()
    }
}

/// An uplink's NAT address: 0 = none, else 1 << 32 | address, one atomic word read without a
/// lock. Every lookup reads it, so it has a cache line to itself, apart from the counter and
/// locks that creations write.
#[repr(align(64))]
pub(super) struct AddrCell(pub(super) AtomicU64);

pub(super) struct Uplink {
    pub(super) addr: AddrCell,
    pub(super) sessions: AtomicUsize,
    /// TCP, UDP, ICMP, anything else.
    pub(super) pools: [Mutex<PortPool>; 4],
}

impl Uplink {
    pub(super) fn addr(&self) -> Option<Ipv4Addr> {
        decode_addr(self.addr.0.load(Ordering::Acquire))
    }

    pub(super) fn pool(&self, proto: u8) -> &Mutex<PortPool> {
        let [tcp, udp, icmp, other] = &self.pools;
        match proto {
            PROTO_TCP => tcp,
            PROTO_UDP => udp,
            PROTO_ICMP => icmp,
            _ => other,
        }
    }
}

pub(super) fn encode_addr(addr: Option<Ipv4Addr>) -> u64 {
    addr.map_or(0, |a| 1 << 32 | u64::from(a.to_bits()))
}

pub(super) fn decode_addr(word: u64) -> Option<Ipv4Addr> {
    (word >> 32 != 0).then(|| Ipv4Addr::from_bits(word as u32))
}
