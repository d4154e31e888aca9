//! DNS forwarder on the router's LAN addresses, IPv4 and IPv6 (SPEC 30), I/O-free.
//!
//! LAN clients' queries (`handle_query`) are answered from a small cache or forwarded to the
//! resolvers of the uplink that carries the default route (`set_upstream`, called at once on
//! failover; the cache is flushed then, since answers may depend on the resolver). Forwarded
//! queries get a fresh random id, matched with the resolver, uplink and question of the answer
//! (`handle_response`). A resolver that does not answer within `timeout` is replaced by the
//! next; after the last try the client gets SERVFAIL. Truncated (TC) answers are passed to the
//! client unchanged so it retries over TCP, which `tcp` relays. Each client has a token bucket;
//! queries over it are dropped.
//!
//! Outputs (`poll_transmit`) say which uplink an upstream query must leave through, so the
//! loop pins it there like a probe. `hickory-proto` parses the messages; the id is rewritten in
//! place so answers reach clients byte for byte as the resolver sent them.

mod ratelimit;
pub mod tcp;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};

use crate::UplinkId;
use crate::clock::Instant;
use crate::config::DnsConfig;
use crate::rng::SplitMix;
use ratelimit::ClientBuckets;

/// UDP port of DNS.
pub const PORT: u16 = 53;
/// Largest UDP DNS message taken (EDNS allows up to 4096 in practice).
const MAX_MESSAGE: usize = 4096;
/// Queries waiting for a resolver, at most.
const MAX_PENDING: usize = 1024;
/// Tries for one query across the resolvers (each waits `timeout`).
const MAX_TRIES: usize = 4;
/// Answers are cached for at most this long whatever their TTL.
const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);

/// A LAN client as the forwarder answers it: where its query came from, and the router's
/// address it was sent to, which the answer must come from (the router has one IPv4 LAN
/// address but one IPv6 address per LAN prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub addr: SocketAddr,
    pub server: IpAddr,
}

/// Where a datagram goes: to a LAN client (from the address it asked, port 53), or to a
/// resolver (port 53) through one uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    Client {
        dst: Client,
        payload: Vec<u8>,
    },
    Upstream {
        uplink: UplinkId,
        server: Ipv4Addr,
        payload: Vec<u8>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsCounters {
    pub queries: u64,
    pub cache_hits: u64,
    pub forwarded: u64,
    pub answered: u64,
    /// Answers passed on with the TC bit (the client retries over TCP).
    pub truncated: u64,
    /// SERVFAIL sent after every try timed out.
    pub timeouts: u64,
    /// SERVFAIL sent because no uplink with resolvers carries the default route.
    pub no_upstream: u64,
    pub rate_limited: u64,
    /// Queries that do not parse or are not one standard question.
    pub malformed: u64,
    pub pending_full: u64,
    /// Answers for no pending query, or from the wrong resolver or with the wrong question.
    pub unmatched: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    name: String,
    qtype: u16,
    qclass: u16,
}

impl CacheKey {
    fn of(q: &Query) -> CacheKey {
        CacheKey {
            name: q.name.to_ascii().to_ascii_lowercase(),
            qtype: q.query_type.into(),
            qclass: q.query_class.into(),
        }
    }
}

struct CacheEntry {
    answer: Vec<u8>,
    stored: Instant,
    expires: Instant,
    seq: u64,
}

struct Pending {
    client: Client,
    client_id: u16,
    query: Query,
    /// The client's query with the upstream id, resent as is on each try.
    payload: Vec<u8>,
    uplink: UplinkId,
    server: Ipv4Addr,
    tries: usize,
    deadline: Instant,
}

pub struct Forwarder {
    cfg: DnsConfig,
    upstream: Option<(UplinkId, Vec<Ipv4Addr>)>,
    pending: HashMap<u16, Pending>,
    cache: HashMap<CacheKey, CacheEntry>,
    /// Cache keys by insertion order, oldest first, for eviction.
    cache_order: BTreeMap<u64, CacheKey>,
    cache_bytes: usize,
    next_seq: u64,
    buckets: ClientBuckets,
    rng: SplitMix,
    out: VecDeque<Transmit>,
    counters: DnsCounters,
}

impl Forwarder {
    /// `seed` drives the upstream query ids.
    pub fn new(cfg: DnsConfig, seed: u64) -> Forwarder {
        Forwarder {
            buckets: ClientBuckets::new(cfg.rate, cfg.burst),
            cfg,
            upstream: None,
            pending: HashMap::new(),
            cache: HashMap::new(),
            cache_order: BTreeMap::new(),
            cache_bytes: 0,
            next_seq: 0,
            rng: SplitMix::new(seed),
            out: VecDeque::new(),
            counters: DnsCounters::default(),
        }
    }

    pub fn counters(&self) -> &DnsCounters {
        &self.counters
    }

    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// The uplink that carries the default route and its resolvers (None: no such uplink).
    /// Pending queries move to the new resolvers at once.
    pub fn set_upstream(&mut self, upstream: Option<(UplinkId, Vec<Ipv4Addr>)>, now: Instant) {
        let upstream = upstream.filter(|(_, s)| !s.is_empty());
        if upstream == self.upstream {
            return;
        }
        self.upstream = upstream;
        self.cache.clear();
        self.cache_order.clear();
        self.cache_bytes = 0;
        let ids: Vec<u16> = self.pending.keys().copied().collect();
        for id in ids {
            self.retry(id, now);
        }
    }

    /// A UDP datagram to one of the router's LAN addresses, port 53, from `client`.
    pub fn handle_query(&mut self, client: Client, payload: &[u8], now: Instant) {
        self.counters.queries += 1;
        if !self.buckets.take(client.addr.ip(), now) {
            self.counters.rate_limited += 1;
            return;
        }
        let Some(msg) = parse(payload).filter(|m| {
            m.metadata.message_type == MessageType::Query
                && m.metadata.op_code == OpCode::Query
                && m.queries.len() == 1
        }) else {
            self.counters.malformed += 1;
            return;
        };
        let query = msg.queries[0].clone();
        let client_id = msg.metadata.id;
        if let Some(answer) = self.cached(&query, client_id, now) {
            self.counters.cache_hits += 1;
            self.out.push_back(Transmit::Client {
                dst: client,
                payload: answer,
            });
            return;
        }
        if self.upstream.is_none() {
            self.counters.no_upstream += 1;
            return self.servfail(client, client_id, query);
        }
        if self.pending.len() >= MAX_PENDING {
            self.counters.pending_full += 1;
            return;
        }
        let id = self.fresh_id();
        let mut upstream_payload = payload.to_vec();
        upstream_payload[..2].copy_from_slice(&id.to_be_bytes());
        self.pending.insert(
            id,
            Pending {
                client,
                client_id,
                query,
                payload: upstream_payload,
                uplink: UplinkId(0),
                server: Ipv4Addr::UNSPECIFIED,
                tries: 0,
                deadline: now,
            },
        );
        self.counters.forwarded += 1;
        self.retry(id, now);
    }

    /// A UDP datagram from `server` port 53 received on `uplink`.
    pub fn handle_response(
        &mut self,
        uplink: UplinkId,
        server: Ipv4Addr,
        payload: &[u8],
        now: Instant,
    ) {
        let Some(msg) = parse(payload) else {
            self.counters.unmatched += 1;
            return;
        };
        let id = msg.metadata.id;
        let matches = self.pending.get(&id).is_some_and(|p| {
            p.uplink == uplink
                && p.server == server
                && msg.metadata.message_type == MessageType::Response
                && msg.queries.len() == 1
                && CacheKey::of(&msg.queries[0]) == CacheKey::of(&p.query)
        });
        if !matches {
            self.counters.unmatched += 1;
            return;
        }
        let rcode = msg.metadata.response_code;
        let more_servers = self.upstream.as_ref().is_some_and(|(_, s)| s.len() > 1);
        let p = &self.pending[&id];
        if matches!(rcode, ResponseCode::ServFail | ResponseCode::Refused)
            && more_servers
            && p.tries < MAX_TRIES
        {
            // ISP resolvers refuse other networks' clients; another one may answer.
            return self.retry(id, now);
        }
        let p = self.pending.remove(&id).expect("matched above");
        let mut answer = payload.to_vec();
        answer[..2].copy_from_slice(&p.client_id.to_be_bytes());
        if msg.metadata.truncation {
            self.counters.truncated += 1;
        } else if matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
            self.store(&p.query, &msg, &answer, now);
        }
        self.counters.answered += 1;
        self.out.push_back(Transmit::Client {
            dst: p.client,
            payload: answer,
        });
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.retry(id, now);
        }
    }

    /// Sends pending query `id` to the next resolver, or answers SERVFAIL after the last try.
    fn retry(&mut self, id: u16, now: Instant) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        let Some((uplink, servers)) = &self.upstream else {
            let p = self.pending.remove(&id).expect("present");
            self.counters.no_upstream += 1;
            return self.servfail(p.client, p.client_id, p.query);
        };
        if p.tries >= MAX_TRIES {
            let p = self.pending.remove(&id).expect("present");
            self.counters.timeouts += 1;
            return self.servfail(p.client, p.client_id, p.query);
        }
        p.uplink = *uplink;
        p.server = servers[p.tries % servers.len()];
        p.tries += 1;
        p.deadline = now + self.cfg.timeout;
        self.out.push_back(Transmit::Upstream {
            uplink: p.uplink,
            server: p.server,
            payload: p.payload.clone(),
        });
    }

    fn servfail(&mut self, client: Client, id: u16, query: Query) {
        let mut m = Message::error_msg(id, OpCode::Query, ResponseCode::ServFail);
        m.metadata.recursion_desired = true;
        m.metadata.recursion_available = true;
        m.add_query(query);
        if let Ok(payload) = m.to_vec() {
            self.out.push_back(Transmit::Client {
                dst: client,
                payload,
            });
        }
    }

    /// The cached answer to `query` with `id` and TTLs lowered by the time spent in the cache.
    fn cached(&mut self, query: &Query, id: u16, now: Instant) -> Option<Vec<u8>> {
        let key = CacheKey::of(query);
        let entry = self.cache.get(&key)?;
        if entry.expires <= now {
            self.evict(&key);
            return None;
        }
        let aged = u32::try_from(now.saturating_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        let mut msg = parse(&entry.answer)?;
        msg.metadata.id = id;
        for r in msg
            .answers
            .iter_mut()
            .chain(msg.authorities.iter_mut())
            .chain(msg.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(aged);
        }
        msg.to_vec().ok()
    }

    fn store(&mut self, query: &Query, msg: &Message, answer: &[u8], now: Instant) {
        let Some(ttl) = msg
            .answers
            .iter()
            .chain(msg.authorities.iter())
            .map(|r| r.ttl)
            .min()
        else {
            return;
        };
        let ttl = Duration::from_secs(ttl.into()).min(MAX_CACHE_TTL);
        if ttl.is_zero() || answer.len() > self.cfg.cache_bytes || self.cfg.cache_entries == 0 {
            return;
        }
        let key = CacheKey::of(query);
        self.evict(&key);
        while self.cache.len() >= self.cfg.cache_entries
            || self.cache_bytes + answer.len() > self.cfg.cache_bytes
        {
            let Some((_, oldest)) = self.cache_order.pop_first() else {
                break;
            };
            self.evict(&oldest);
        }
        self.next_seq += 1;
        self.cache_order.insert(self.next_seq, key.clone());
        self.cache_bytes += answer.len();
        self.cache.insert(
            key,
            CacheEntry {
                answer: answer.to_vec(),
                stored: now,
                expires: now + ttl,
                seq: self.next_seq,
            },
        );
    }

    fn evict(&mut self, key: &CacheKey) {
        if let Some(e) = self.cache.remove(key) {
            self.cache_order.remove(&e.seq);
            self.cache_bytes -= e.answer.len();
        }
    }

    /// A random id no pending query uses.
    fn fresh_id(&mut self) -> u16 {
        loop {
            let id = self.rng.next_u64() as u16;
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }
}

fn parse(payload: &[u8]) -> Option<Message> {
    if payload.len() < 12 || payload.len() > MAX_MESSAGE {
        return None;
    }
    Message::from_vec(payload).ok()
}

#[cfg(test)]
mod tests;
