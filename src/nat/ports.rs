//! Outside-port allocation for one (uplink, protocol): endpoint-independent mappings (RFC 4787),
//! each held by a reference count of the sessions that use it.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::Ipv4Addr;

use foldhash::fast::RandomState;

use super::NatError;
use crate::dns::tcp::TCP_PORTS;
use crate::probe::PROBE_PORTS;

/// An inside host's address and port (or ICMP query id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

#[derive(Debug, Clone, Copy)]
struct Mapping {
    outside_port: u16,
    sessions: u32,
}

pub(super) struct PortPool {
    port_min: u16,
    /// Number of ports in the range (0 when the configured range is empty).
    range: usize,
    /// One bit per port of the range, set while a mapping holds it. Bits past `range` in the
    /// last word are set at construction so the search never returns them.
    used: Vec<u64>,
    /// Ports held by mappings, plus the reserved ones (the probes', the forwards').
    in_use: usize,
    mappings: HashMap<Endpoint, Mapping, RandomState>,
    /// Feeds the random starting point of each search, so ports are not predictable (RFC 6056).
    allocations: u64,
}

impl PortPool {
    /// The ports `port_min..=port_max` except the probes' (`PROBE_PORTS`, SPEC 35) and the
    /// DNS relay's (`TCP_PORTS`, SPEC 30), which are marked used from the start and never
    /// released.
    pub fn new(port_min: u16, port_max: u16) -> PortPool {
        let range = if port_max >= port_min {
            usize::from(port_max - port_min) + 1
        } else {
            0
        };
        let mut used = vec![0u64; range.div_ceil(64)];
        if let Some(last) = used.last_mut() {
            let tail = range % 64;
            if tail != 0 {
                *last = u64::MAX << tail;
            }
        }
        let mut pool = PortPool {
            port_min,
            range,
            used,
            in_use: 0,
            mappings: HashMap::default(),
            allocations: 0,
        };
        pool.reserve(*PROBE_PORTS.start(), *PROBE_PORTS.end());
        pool.reserve(*TCP_PORTS.start(), *TCP_PORTS.end());
        pool
    }

    /// The inside endpoint's outside port, allocating one if it has no mapping yet; either way
    /// the mapping gains a session.
    pub fn acquire(&mut self, inside: Endpoint, seed: &RandomState) -> Result<u16, NatError> {
        if let Some(m) = self.mappings.get_mut(&inside) {
            m.sessions = m.sessions.saturating_add(1);
            return Ok(m.outside_port);
        }
        if self.in_use >= self.range {
            return Err(NatError::PortsExhausted);
        }
        self.allocations = self.allocations.wrapping_add(1);
        let start = seed.hash_one((inside, self.allocations)) as usize % self.range;
        let index = self.find_free(start).ok_or(NatError::PortsExhausted)?;
        let offset = u16::try_from(index).map_err(|_| NatError::PortsExhausted)?;
        let outside_port = self.port_min.wrapping_add(offset);
        self.set_used(index, true);
        self.in_use += 1;
        self.mappings.insert(
            inside,
            Mapping {
                outside_port,
                sessions: 1,
            },
        );
        Ok(outside_port)
    }

    /// Takes the ports of `first..=last` inside the range out of the pool for good (the ports
    /// of port forwards).
    pub fn reserve(&mut self, first: u16, last: u16) {
        // Word by word over the part inside the range: every table reserves the probe and
        // relay ports at startup, and the fuzz targets build tables per input.
        let lo = usize::from(first.max(self.port_min) - self.port_min);
        let hi = (usize::from(last) + 1).saturating_sub(usize::from(self.port_min));
        let hi = hi.min(self.range);
        let mut index = lo;
        while index < hi {
            let bit = index % 64;
            let bits = (hi - index).min(64 - bit);
            let mask = (u64::MAX >> (64 - bits)) << bit;
            if let Some(word) = self.used.get_mut(index / 64) {
                self.in_use += (mask & !*word).count_ones() as usize;
                *word |= mask;
            }
            index += bits;
        }
    }

    /// A session of `inside` mapped to `outside_port` ended; its mapping (and port) is freed
    /// with its last session. A session on a reserved port (a forward's) holds no mapping.
    pub fn release(&mut self, inside: Endpoint, outside_port: u16) {
        let Some(m) = self
            .mappings
            .get_mut(&inside)
            .filter(|m| m.outside_port == outside_port)
        else {
            return;
        };
        m.sessions = m.sessions.saturating_sub(1);
        if m.sessions == 0 {
            let index = usize::from(m.outside_port.wrapping_sub(self.port_min));
            self.mappings.remove(&inside);
            self.set_used(index, false);
            self.in_use = self.in_use.saturating_sub(1);
        }
    }

    /// Bytes this pool occupies, for the table's memory estimate.
    pub fn memory_bytes(&self) -> usize {
        self.used.capacity() * size_of::<u64>()
            + super::hash_table_bytes::<Endpoint, Mapping>(self.mappings.capacity())
    }

    /// First free index at or after `start`, wrapping around; word by word.
    fn find_free(&self, start: usize) -> Option<usize> {
        let words = self.used.len();
        let first = start / 64;
        let low_bits = !(u64::MAX << (start % 64));
        // words + 1 steps: the first word is visited again at the end for the bits below start.
        for step in 0..=words {
            let w = (first + step) % words;
            let mut free = !self.used.get(w)?;
            if step == 0 {
                free &= !low_bits;
            } else if step == words {
                free &= low_bits;
            }
            if free != 0 {
                return Some(w * 64 + free.trailing_zeros() as usize);
            }
        }
        None
    }

    fn set_used(&mut self, index: usize, used: bool) {
        if let Some(word) = self.used.get_mut(index / 64) {
            let bit = 1u64 << (index % 64);
            if used {
                *word |= bit;
            } else {
                *word &= !bit;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl PortPool {
        fn is_used(&self, index: usize) -> bool {
            self.used
                .get(index / 64)
                .is_some_and(|w| w & 1 << (index % 64) != 0)
        }
    }

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            ip: Ipv4Addr::new(192, 168, 0, 10),
            port,
        }
    }

    #[test]
    fn allocates_every_port_of_the_range_once_then_exhausts() {
        let seed = RandomState::default();
        let mut pool = PortPool::new(1000, 1069); // 70 ports: crosses a word boundary
        let ports: Vec<u16> = (0..70)
            .map(|i| pool.acquire(ep(i), &seed).unwrap())
            .collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1000..1070).collect::<Vec<_>>());
        assert_eq!(pool.acquire(ep(70), &seed), Err(NatError::PortsExhausted));
        pool.release(ep(5), ports[5]);
        assert_eq!(pool.acquire(ep(70), &seed), Ok(ports[5]));
    }

    #[test]
    fn mapping_lives_until_its_last_session_ends() {
        let seed = RandomState::default();
        let mut pool = PortPool::new(2000, 2000);
        let p = pool.acquire(ep(1), &seed).unwrap();
        assert_eq!(pool.acquire(ep(1), &seed), Ok(p));
        pool.release(ep(1), p);
        assert_eq!(pool.acquire(ep(2), &seed), Err(NatError::PortsExhausted));
        pool.release(ep(1), p);
        pool.release(ep(1), p);
        assert_eq!(pool.acquire(ep(2), &seed), Ok(2000));
    }

    #[test]
    fn reserved_ports_are_never_handed_out_nor_freed_by_a_release() {
        let seed = RandomState::default();
        let mut pool = PortPool::new(2000, 2003);
        pool.reserve(1990, 2001);
        pool.reserve(2001, 2001);
        let a = pool.acquire(ep(1), &seed).unwrap();
        let b = pool.acquire(ep(2), &seed).unwrap();
        assert_eq!([a.min(b), a.max(b)], [2002, 2003]);
        assert_eq!(pool.acquire(ep(3), &seed), Err(NatError::PortsExhausted));
        // A forwarded session of ep(1) on the reserved 2000 leaves ep(1)'s mapping alone.
        pool.release(ep(1), 2000);
        assert_eq!(pool.acquire(ep(1), &seed), Ok(a));
        pool.release(ep(3), 2001);
        assert_eq!(pool.acquire(ep(3), &seed), Err(NatError::PortsExhausted));
    }

    #[test]
    fn the_probes_and_the_dns_relays_ports_are_never_handed_out() {
        let seed = RandomState::default();
        let mut pool = PortPool::new(1024, 65535);
        let mut n = 0u16;
        while let Ok(port) = pool.acquire(ep(n), &seed) {
            assert!(!PROBE_PORTS.contains(&port), "port {port} is a probe's");
            assert!(!TCP_PORTS.contains(&port), "port {port} is the DNS relay's");
            n += 1;
        }
        let reserved = PROBE_PORTS.len() + TCP_PORTS.len();
        assert_eq!(usize::from(n), 65535 - 1024 + 1 - reserved);
        // A range inside the reserved one has nothing to give.
        let mut pool = PortPool::new(*PROBE_PORTS.start(), *PROBE_PORTS.end());
        assert_eq!(pool.acquire(ep(1), &seed), Err(NatError::PortsExhausted));
    }

    #[test]
    fn empty_range_never_allocates() {
        let seed = RandomState::default();
        let mut pool = PortPool::new(10, 9);
        assert_eq!(pool.acquire(ep(1), &seed), Err(NatError::PortsExhausted));
    }

    proptest::proptest! {
        /// Reserving word by word takes exactly the ports of the range inside the pool.
        #[test]
        fn reserve_takes_exactly_the_ports_inside_the_range(
            min in 1u16..200, len in 0u16..300, first in 0u16..600, n in 0u16..300,
            earlier in proptest::option::of((0u16..600, 0u16..100)),
        ) {
            let max = min.wrapping_add(len).wrapping_sub(1);
            let mut pool = PortPool::new(min, max);
            let mut expected = pool.in_use;
            let mut taken = vec![false; usize::from(len)];
            let mut take = |pool: &mut PortPool, first: u16, last: u16, expected: &mut usize| {
                pool.reserve(first, last);
                for port in first..=last {
                    if port >= min && usize::from(port - min) < taken.len() && !taken[usize::from(port - min)] {
                        taken[usize::from(port - min)] = true;
                        *expected += 1;
                    }
                }
            };
            if let Some((f, k)) = earlier {
                take(&mut pool, f, f + k, &mut expected);
            }
            take(&mut pool, first, first.saturating_add(n), &mut expected);
            proptest::prop_assert_eq!(pool.in_use, expected);
            for (i, &t) in taken.iter().enumerate() {
                proptest::prop_assert_eq!(pool.is_used(i), t, "port {}", u32::from(min) + i as u32);
            }
        }
    }
}
