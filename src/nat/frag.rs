//! Translations of fragmented datagrams: only the first fragment carries the ports, so the fast
//! path records its translation here and applies it to the later fragments of the datagram.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use foldhash::fast::RandomState;
use parking_lot::Mutex;

use super::Translation;
use crate::clock::Instant;

/// Identifies one datagram's fragments as they arrive (before translation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ident: u16,
}

/// Bounded, with a fixed lifetime per entry (like a reassembly timeout; not refreshed).
pub struct FragTable {
    entries: Mutex<Entries>,
    capacity: usize,
    lifetime: Duration,
}

/// The entries and their keys in insertion order: with one lifetime for all, the oldest is the
/// first to expire, so making room when full looks at the front only, O(1) per entry removed
/// (a scan of the whole table per insert would let a fragment flood cost O(capacity) each).
struct Entries {
    map: HashMap<FragKey, (Translation, Instant), RandomState>,
    order: VecDeque<FragKey>,
}

impl Entries {
    /// Removes the entries older than `lifetime` at `now`; returns how many.
    fn expire(&mut self, now: Instant, lifetime: Duration) -> usize {
        let mut n = 0;
        while let Some(key) = self.order.front() {
            match self.map.get(key) {
                Some(&(_, created)) if now.saturating_since(created) <= lifetime => break,
                _ => {
                    self.map.remove(key);
                    self.order.pop_front();
                    n += 1;
                }
            }
        }
        n
    }
}

impl Default for FragTable {
    fn default() -> FragTable {
        FragTable::new(4096, Duration::from_secs(30))
    }
}

impl FragTable {
    pub fn new(capacity: usize, lifetime: Duration) -> FragTable {
        FragTable {
            // Allocated once, so inserting on the packet path never allocates.
            entries: Mutex::new(Entries {
                map: HashMap::with_capacity_and_hasher(capacity, RandomState::default()),
                order: VecDeque::with_capacity(capacity),
            }),
            capacity,
            lifetime,
        }
    }

    /// Records the translation of the datagram `key` (a known one keeps its age); false when
    /// the table is full even after dropping expired entries (the caller drops the later
    /// fragments).
    pub fn insert(&self, key: FragKey, translation: Translation, now: Instant) -> bool {
        let mut entries = self.entries.lock();
        if let Some(e) = entries.map.get_mut(&key) {
            e.0 = translation;
            return true;
        }
        if entries.map.len() >= self.capacity {
            entries.expire(now, self.lifetime);
            if entries.map.len() >= self.capacity {
                return false;
            }
        }
        entries.map.insert(key, (translation, now));
        entries.order.push_back(key);
        true
    }

    pub fn lookup(&self, key: &FragKey, now: Instant) -> Option<Translation> {
        let entries = self.entries.lock();
        let &(translation, created) = entries.map.get(key)?;
        (now.saturating_since(created) <= self.lifetime).then_some(translation)
    }

    /// Removes expired entries; returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        self.entries.lock().expire(now, self.lifetime)
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UplinkId;

    fn key(ident: u16) -> FragKey {
        FragKey {
            src: Ipv4Addr::new(192, 168, 0, 10),
            dst: Ipv4Addr::new(172, 18, 0, 6),
            proto: 17,
            ident,
        }
    }

    fn tr(port: u16) -> Translation {
        Translation {
            uplink: UplinkId(0),
            outside: Ipv4Addr::new(172, 16, 1, 1),
            outside_port: port,
            inside: Ipv4Addr::new(192, 168, 0, 10),
            inside_port: 5000,
        }
    }

    #[test]
    fn entry_lives_for_its_lifetime_then_expires() {
        let t = FragTable::new(8, Duration::from_secs(30));
        assert!(t.insert(key(1), tr(1), Instant::from_millis(0)));
        assert_eq!(t.lookup(&key(1), Instant::from_millis(30_000)), Some(tr(1)));
        assert_eq!(t.lookup(&key(2), Instant::from_millis(0)), None);
        assert_eq!(t.lookup(&key(1), Instant::from_millis(30_001)), None);
        assert_eq!(t.expire(Instant::from_millis(29_000)), 0);
        assert_eq!(t.expire(Instant::from_millis(30_001)), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_refuses_new_datagrams_until_old_ones_expire() {
        let t = FragTable::new(2, Duration::from_secs(30));
        let t0 = Instant::from_millis(0);
        assert!(t.insert(key(1), tr(1), t0));
        assert!(t.insert(key(2), tr(2), t0));
        assert!(!t.insert(key(3), tr(3), t0));
        assert!(
            t.insert(key(2), tr(4), t0),
            "updating a known datagram is not growth"
        );
        assert_eq!(t.lookup(&key(2), t0), Some(tr(4)));
        assert!(t.insert(key(3), tr(3), Instant::from_millis(31_000)));
        assert_eq!(t.len(), 1);
    }

    /// Making room takes the oldest entries only, so a full table of young entries refuses at
    /// once, and entries leave in the order they came.
    #[test]
    fn room_is_made_from_the_oldest() {
        let t = FragTable::new(3, Duration::from_secs(30));
        let at = Instant::from_millis;
        assert!(t.insert(key(1), tr(1), at(0)));
        assert!(t.insert(key(2), tr(2), at(10_000)));
        assert!(t.insert(key(3), tr(3), at(20_000)));
        assert!(!t.insert(key(4), tr(4), at(29_000)), "none old enough yet");
        assert!(t.insert(key(4), tr(4), at(30_001)), "the oldest made room");
        assert_eq!(t.lookup(&key(1), at(30_001)), None);
        assert_eq!(t.lookup(&key(2), at(30_001)), Some(tr(2)));
        assert_eq!(t.expire(at(45_000)), 1, "only the next oldest");
        assert_eq!(t.len(), 2);
    }
}
