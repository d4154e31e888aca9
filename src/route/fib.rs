//! Longest-prefix match for a small table: one sorted vector per prefix length, longest first,
//! searched by binary search. No allocation and no hashing per lookup.

use super::StaticRoute;
use crate::prefix::Ipv4Prefix;
use crate::{Iface, UplinkId};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub(super) enum Target {
    Lan,
    Connected(UplinkId),
    Static(Group),
}

/// The installed routes of one prefix, sharing new flows by weight (SPEC 7).
pub(super) struct Group {
    members: Vec<Member>,
    total: u32,
}

pub(super) struct Member {
    pub route: usize,
    pub egress: Iface,
    pub next_hop: Ipv4Addr,
    /// Sum of the weights up to and including this member.
    cumulative: u32,
}

impl Group {
    pub fn new<'a>(routes: impl Iterator<Item = (usize, &'a StaticRoute)>) -> Group {
        let routes: Vec<(usize, &StaticRoute)> = routes.collect();
        let all_zero = routes.iter().all(|(_, r)| r.weight == 0);
        let mut total = 0;
        let members = routes
            .into_iter()
            .map(|(i, r)| {
                total += if all_zero { 1 } else { u32::from(r.weight) };
                Member {
                    route: i,
                    egress: r.egress,
                    next_hop: r.next_hop,
                    cumulative: total,
                }
            })
            .collect();
        Group { members, total }
    }

    /// The member owning `hash`'s slot of the weight range. `None` only for an empty group.
    pub fn pick(&self, hash: u32) -> Option<&Member> {
        // Multiply-shift maps the hash onto 0..total without modulo bias; the result is < total.
        let slot = ((u64::from(hash) * u64::from(self.total)) >> 32) as u32;
        self.members.iter().find(|m| m.cumulative > slot)
    }
}

pub(super) struct Fib {
    /// Longest prefix length first.
    levels: Vec<Level>,
}

struct Level {
    mask: u32,
    /// Sorted by network, unique.
    entries: Vec<(u32, Target)>,
}

impl Fib {
    /// When two entries share a prefix, the first one wins.
    pub fn build(entries: impl IntoIterator<Item = (Ipv4Prefix, Target)>) -> Fib {
        let mut by_len: BTreeMap<u8, Level> = BTreeMap::new();
        for (prefix, target) in entries {
            let level = by_len.entry(prefix.prefix_len()).or_insert(Level {
                mask: prefix.mask(),
                entries: Vec::new(),
            });
            let network = u32::from(prefix.network().addr());
            if !level.entries.iter().any(|(n, _)| *n == network) {
                level.entries.push((network, target));
            }
        }
        let mut levels: Vec<Level> = by_len.into_values().rev().collect();
        for level in &mut levels {
            level.entries.sort_by_key(|(network, _)| *network);
        }
        Fib { levels }
    }

    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&Target> {
        let dst = u32::from(dst);
        self.levels.iter().find_map(|level| {
            let network = dst & level.mask;
            let i = level
                .entries
                .binary_search_by_key(&network, |(n, _)| *n)
                .ok()?;
            level.entries.get(i).map(|(_, target)| target)
        })
    }
}
