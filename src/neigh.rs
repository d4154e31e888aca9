//! Neighbour cache (SPEC 2): bounded, with expiry, refresh and a bounded queue of frames
//! waiting for resolution. Pure: the control thread feeds it ARP replies (or, keyed by IPv6
//! address, neighbour advertisements) and the clock, and sends the requests it asks for.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::Iface;
use crate::clock::Instant;
use crate::wire::ethernet::MacAddr;

#[derive(Debug, Clone)]
pub struct NeighParams {
    /// Most entries held (resolved and pending together) on the LAN, and on the uplinks
    /// together: apart, so a LAN scan cannot take the room of the uplinks' next hops (SPEC 35).
    pub max_lan: usize,
    pub max_uplinks: usize,
    /// A resolved entry not confirmed for this long is removed.
    pub reachable: Duration,
    /// A resolved entry this old is re-requested (before it expires).
    pub refresh: Duration,
    /// Time between requests for an unresolved address.
    pub retry: Duration,
    /// Requests sent before giving up on an unresolved address (its queued frames are dropped).
    pub max_requests: u32,
    /// Frames queued per unresolved address, and their bytes at most.
    pub queue_len: usize,
    pub queue_bytes: usize,
}

impl Default for NeighParams {
    fn default() -> Self {
        NeighParams {
            max_lan: 4096,
            max_uplinks: 256,
            reachable: Duration::from_secs(300),
            refresh: Duration::from_secs(240),
            retry: Duration::from_secs(1),
            max_requests: 3,
            queue_len: 16,
            queue_bytes: 64 << 10,
        }
    }
}

#[derive(Debug)]
struct Entry {
    mac: Option<MacAddr>,
    /// Last confirmation (resolved) or first request (pending).
    since: Instant,
    last_request: Option<Instant>,
    requests: u32,
    queue: VecDeque<Vec<u8>>,
}

/// What the caller must do after `resolve`.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolve {
    /// The address is known: send now.
    Known(MacAddr),
    /// Send an ARP request now (the frame, if any, was queued).
    Request,
    /// A request is outstanding (the frame, if any, was queued).
    Pending,
    /// The frame could not be queued (table or queue full); count it as dropped.
    Dropped,
}

/// One entry as shown by `show arp`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NeighView<A = Ipv4Addr> {
    pub iface: Iface,
    pub ip: A,
    pub mac: Option<String>,
    pub age_ms: u64,
    pub queued: usize,
}

/// What `poll` asks for.
#[derive(Debug)]
pub struct PollOutcome<A = Ipv4Addr> {
    pub requests: Vec<(Iface, A)>,
    /// Addresses removed (expired, or unresolved after max_requests).
    pub removed: Vec<(Iface, A)>,
    /// Frames dropped because their neighbour never answered, with the interface they were
    /// for (so the sender can be told: ICMPv6 address unreachable).
    pub dropped_frames: Vec<(Iface, Vec<u8>)>,
}

/// The cache, keyed by interface and address (`Ipv4Addr` for ARP, `Ipv6Addr` for neighbour
/// discovery).
pub struct NeighTable<A = Ipv4Addr> {
    params: NeighParams,
    entries: HashMap<(Iface, A), Entry>,
    /// Entries on the LAN, and on the uplinks.
    lan: usize,
    uplinks: usize,
}

/// How full the cache is, counted entry by entry: what `NeighParams` bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub lan: usize,
    pub uplinks: usize,
    /// The most frames, and bytes, held for one unresolved neighbour.
    pub most_frames_held: usize,
    pub most_bytes_held: usize,
}

/// No room for a new neighbour on that side (`NeighParams::max_lan`, `max_uplinks`).
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl<A: Copy + Eq + Hash + Ord> NeighTable<A> {
    pub fn new(params: NeighParams) -> NeighTable<A> {
        NeighTable {
            params,
            entries: HashMap::new(),
            lan: 0,
            uplinks: 0,
        }
    }

    fn full(&self, iface: Iface) -> bool {
        match iface {
            Iface::Lan => self.lan >= self.params.max_lan,
            Iface::Uplink(_) => self.uplinks >= self.params.max_uplinks,
        }
    }

    fn count(&mut self, iface: Iface) -> &mut usize {
        match iface {
            Iface::Lan => &mut self.lan,
            Iface::Uplink(_) => &mut self.uplinks,
        }
    }

    pub fn lookup(&self, iface: Iface, ip: A) -> Option<MacAddr> {
        self.entries.get(&(iface, ip)).and_then(|e| e.mac)
    }

    /// Records `ip is-at mac` from an ARP packet. Returns whether the published mapping changed
    /// and the frames that were waiting for it. Addresses never asked for are learned only if
    /// `create` (an ARP request addressed to us: RFC 826 merge), and only while there is room
    /// on that side (`Full` otherwise).
    pub fn learn(
        &mut self,
        iface: Iface,
        ip: A,
        mac: MacAddr,
        create: bool,
        now: Instant,
    ) -> Result<(bool, Vec<Vec<u8>>), Full> {
        let full = self.full(iface);
        match self.entries.get_mut(&(iface, ip)) {
            Some(e) => {
                let changed = e.mac != Some(mac);
                e.mac = Some(mac);
                e.since = now;
                e.requests = 0;
                e.last_request = None;
                Ok((changed, e.queue.drain(..).collect()))
            }
            None if create && full => Err(Full),
            None if create => {
                *self.count(iface) += 1;
                self.entries.insert(
                    (iface, ip),
                    Entry {
                        mac: Some(mac),
                        since: now,
                        last_request: None,
                        requests: 0,
                        queue: VecDeque::new(),
                    },
                );
                Ok((true, Vec::new()))
            }
            None => Ok((false, Vec::new())),
        }
    }

    /// Asks for the MAC of `ip`, queueing `frame` (complete except for its destination MAC) if
    /// the address is not known yet.
    pub fn resolve(
        &mut self,
        iface: Iface,
        ip: A,
        frame: Option<Vec<u8>>,
        now: Instant,
    ) -> Resolve {
        let full = self.full(iface);
        let (queue_len, queue_bytes) = (self.params.queue_len, self.params.queue_bytes);
        if !full && !self.entries.contains_key(&(iface, ip)) {
            *self.count(iface) += 1;
        }
        let e = match self.entries.get_mut(&(iface, ip)) {
            Some(e) => e,
            None if full => return Resolve::Dropped,
            None => self.entries.entry((iface, ip)).or_insert(Entry {
                mac: None,
                since: now,
                last_request: None,
                requests: 0,
                queue: VecDeque::new(),
            }),
        };
        if let Some(mac) = e.mac {
            return Resolve::Known(mac);
        }
        let held: usize = e.queue.iter().map(Vec::len).sum();
        let queued = match frame {
            Some(f) if e.queue.len() < queue_len && held + f.len() <= queue_bytes => {
                e.queue.push_back(f);
                true
            }
            Some(_) => false,
            None => true,
        };
        let action = if e.last_request.is_none() {
            e.last_request = Some(now);
            e.requests = 1;
            Resolve::Request
        } else {
            Resolve::Pending
        };
        if queued { action } else { Resolve::Dropped }
    }

    /// Retries, refreshes and expiry; call at least every `retry`.
    pub fn poll(&mut self, now: Instant) -> PollOutcome<A> {
        let p = &self.params;
        let mut out = PollOutcome {
            requests: Vec::new(),
            removed: Vec::new(),
            dropped_frames: Vec::new(),
        };
        let (mut lan, mut uplinks) = (0, 0);
        self.entries.retain(|&(iface, ip), e| {
            let keep = Self::keep(p, &mut out, now, iface, ip, e);
            if keep {
                match iface {
                    Iface::Lan => lan += 1,
                    Iface::Uplink(_) => uplinks += 1,
                }
            }
            keep
        });
        (self.lan, self.uplinks) = (lan, uplinks);
        out
    }

    /// Whether `poll` keeps entry `e` of (`iface`, `ip`), and what it asks for.
    fn keep(
        p: &NeighParams,
        out: &mut PollOutcome<A>,
        now: Instant,
        iface: Iface,
        ip: A,
        e: &mut Entry,
    ) -> bool {
        let due = e
            .last_request
            .is_none_or(|t| now.saturating_since(t) >= p.retry);
        match e.mac {
            Some(_) => {
                let age = now.saturating_since(e.since);
                if age >= p.reachable {
                    out.removed.push((iface, ip));
                    return false;
                }
                if age >= p.refresh && due {
                    e.last_request = Some(now);
                    out.requests.push((iface, ip));
                }
                true
            }
            None => {
                if !due {
                    return true;
                }
                if e.requests >= p.max_requests {
                    out.dropped_frames
                        .extend(e.queue.drain(..).map(|f| (iface, f)));
                    out.removed.push((iface, ip));
                    return false;
                }
                e.requests += 1;
                e.last_request = Some(now);
                out.requests.push((iface, ip));
                true
            }
        }
    }

    pub fn usage(&self) -> Usage {
        let mut u = Usage::default();
        for (&(iface, _), e) in &self.entries {
            match iface {
                Iface::Lan => u.lan += 1,
                Iface::Uplink(_) => u.uplinks += 1,
            }
            u.most_frames_held = u.most_frames_held.max(e.queue.len());
            u.most_bytes_held = u
                .most_bytes_held
                .max(e.queue.iter().map(Vec::len).sum::<usize>());
        }
        u
    }

    /// Resolved mappings, for publishing to the workers.
    pub fn resolved(&self) -> HashMap<(Iface, A), MacAddr> {
        self.entries
            .iter()
            .filter_map(|(k, e)| e.mac.map(|m| (*k, m)))
            .collect()
    }

    pub fn view(&self, now: Instant) -> Vec<NeighView<A>> {
        let mut v: Vec<NeighView<A>> = self
            .entries
            .iter()
            .map(|(&(iface, ip), e)| NeighView {
                iface,
                ip,
                mac: e.mac.map(|m| m.to_string()),
                age_ms: now.saturating_since(e.since).as_millis() as u64,
                queued: e.queue.len(),
            })
            .collect();
        v.sort_by_key(|n| (n.iface, n.ip));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UplinkId;

    const A: Iface = Iface::Uplink(UplinkId(0));
    const IP: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 2);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn usage_counts_entries_by_side_and_what_they_hold() {
        let params = NeighParams {
            max_lan: 2,
            max_uplinks: 1,
            queue_len: 3,
            queue_bytes: 10,
            ..NeighParams::default()
        };
        let mut n = NeighTable::new(params);
        for host in 1..=4 {
            n.resolve(
                Iface::Lan,
                Ipv4Addr::new(192, 168, 0, host),
                Some(vec![0; 4]),
                t(0),
            );
        }
        n.resolve(A, IP, Some(vec![0; 6]), t(0));
        n.resolve(A, IP, Some(vec![0; 4]), t(1));
        n.resolve(A, IP, Some(vec![0; 1]), t(2));
        assert_eq!(
            n.usage(),
            Usage {
                lan: 2,
                uplinks: 1,
                most_frames_held: 2,
                most_bytes_held: 10
            }
        );
    }

    #[test]
    fn resolve_queues_then_learn_releases() {
        let mut n = NeighTable::new(NeighParams::default());
        assert_eq!(n.resolve(A, IP, Some(vec![1]), t(0)), Resolve::Request);
        assert_eq!(n.resolve(A, IP, Some(vec![2]), t(10)), Resolve::Pending);
        let (changed, frames) = n.learn(A, IP, MAC, false, t(20)).unwrap();
        assert!(changed);
        assert_eq!(frames, vec![vec![1], vec![2]]);
        assert_eq!(n.resolve(A, IP, None, t(30)), Resolve::Known(MAC));
        assert_eq!(n.lookup(A, IP), Some(MAC));
    }

    #[test]
    fn unanswered_requests_give_up_and_drop_queue() {
        let mut n = NeighTable::new(NeighParams::default());
        n.resolve(A, IP, Some(vec![1]), t(0));
        assert_eq!(n.poll(t(500)).requests.len(), 0);
        assert_eq!(n.poll(t(1000)).requests, vec![(A, IP)]);
        assert_eq!(n.poll(t(2000)).requests, vec![(A, IP)]);
        let out = n.poll(t(3000));
        assert_eq!(out.removed, vec![(A, IP)]);
        assert_eq!(out.dropped_frames.len(), 1);
        assert_eq!(n.lookup(A, IP), None);
    }

    #[test]
    fn refresh_then_expire() {
        let mut n = NeighTable::new(NeighParams::default());
        n.resolve(A, IP, None, t(0));
        n.learn(A, IP, MAC, false, t(0)).unwrap();
        assert!(n.poll(t(239_000)).requests.is_empty());
        assert_eq!(n.poll(t(240_000)).requests, vec![(A, IP)]);
        assert!(n.poll(t(240_500)).requests.is_empty());
        assert_eq!(n.poll(t(300_000)).removed, vec![(A, IP)]);
    }

    #[test]
    fn bounded_table_and_queue() {
        let mut n = NeighTable::new(NeighParams {
            max_uplinks: 1,
            queue_len: 2,
            queue_bytes: 100,
            ..NeighParams::default()
        });
        assert_eq!(n.resolve(A, IP, Some(vec![1; 60]), t(0)), Resolve::Request);
        assert_eq!(
            n.resolve(A, IP, Some(vec![2; 60]), t(0)),
            Resolve::Dropped,
            "over the bytes held"
        );
        assert_eq!(n.resolve(A, IP, Some(vec![3; 40]), t(0)), Resolve::Pending);
        assert_eq!(n.resolve(A, IP, Some(vec![4]), t(0)), Resolve::Dropped);
        let other = Ipv4Addr::new(172, 16, 1, 3);
        assert_eq!(n.resolve(A, other, Some(vec![3]), t(0)), Resolve::Dropped);
        // Unsolicited learning never grows a full table.
        assert_eq!(n.learn(A, other, MAC, true, t(0)), Err(Full));
    }

    /// SPEC 35: the LAN's entries and the uplinks' are bounded apart: a LAN scan fills the
    /// LAN's room only, and a next hop is still resolved (and stays, past the scan's expiry).
    #[test]
    fn a_lan_scan_cannot_take_the_uplinks_room() {
        let mut n = NeighTable::new(NeighParams {
            max_lan: 10,
            max_uplinks: 2,
            ..NeighParams::default()
        });
        for h in 0..100u8 {
            let host = Ipv4Addr::new(192, 168, 0, h);
            let _ = n.learn(Iface::Lan, host, MAC, true, t(0));
            let _ = n.resolve(Iface::Lan, host, Some(vec![0; 100]), t(0));
        }
        assert_eq!(n.view(t(0)).len(), 10);
        assert_eq!(n.resolve(A, IP, None, t(0)), Resolve::Request);
        assert!(n.learn(A, IP, MAC, false, t(10)).unwrap().0);
        let lan = Ipv4Addr::new(192, 168, 0, 200);
        assert_eq!(n.learn(Iface::Lan, lan, MAC, true, t(20)), Err(Full));
        n.poll(t(400_000));
        assert!(
            n.learn(Iface::Lan, lan, MAC, true, t(400_000)).is_ok(),
            "expiry frees room"
        );
    }

    #[test]
    fn unsolicited_learning_only_when_asked() {
        let mut n = NeighTable::new(NeighParams::default());
        assert!(!n.learn(A, IP, MAC, false, t(0)).unwrap().0);
        assert_eq!(n.lookup(A, IP), None);
        assert!(n.learn(A, IP, MAC, true, t(0)).unwrap().0);
        assert_eq!(n.lookup(A, IP), Some(MAC));
    }
}
