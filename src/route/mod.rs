//! The routing table (SPEC 4–8) as an immutable snapshot: pure logic, no I/O.
//!
//! The control plane builds a [`RouteTable`] from the configuration and the current [`Health`]
//! (carrier per uplink, state per track) whenever either changes, and publishes it to the workers
//! (arc-swap). Everything a lookup needs is precomputed at build time, so [`RouteTable::lookup`]
//! neither allocates nor locks.
//!
//! Order of a lookup:
//! 1. the router's own addresses → [`Decision::Local`];
//! 2. policies, in order, unless the destination is directly connected (LAN, or the subnet of an
//!    uplink with carrier): a policy pins Internet-bound traffic, and sending a neighbour's traffic
//!    to another ISP could only blackhole it;
//! 3. longest-prefix match over connected prefixes and installed static routes; among the
//!    installed (lowest-distance eligible) routes of the matching prefix, a weighted hash of the
//!    flow picks one (SPEC 7). A prefix without an eligible route is absent, so the lookup falls
//!    through to shorter prefixes, as with a withdrawn route.
//!
//! IPv6 leaves by its source address instead (`source6.rs`, SPEC 32): a pure function of the
//! source, the uplinks' provider prefixes and states, and a policy's choice. IPv6 `[[route]]`s
//! (`table6.rs`, SPEC 34) and policies make that choice (`egress6.rs`): a matching policy, else
//! the eligible route for the destination, steers the packet to an uplink that can carry the
//! source.

pub mod egress6;
mod fib;
#[cfg(test)]
pub(crate) mod fixtures;
mod render;
pub mod source6;
pub mod table6;
#[cfg(test)]
mod tests;

pub use render::RouteEntryView;

use crate::prefix::Ipv4Prefix;
use crate::rng::mix;
use crate::{Iface, UplinkId};
use fib::{Fib, Group, Target};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// A static route (SPEC 4). `prefix` is a network (no host bits).
#[derive(Clone, Debug)]
pub struct StaticRoute {
    pub name: String,
    pub prefix: Ipv4Prefix,
    /// An uplink, or the LAN: a router on the LAN (a VRRP peer) as next hop (SPEC 29).
    pub egress: Iface,
    pub next_hop: Ipv4Addr,
    pub distance: u8,
    /// Share of new flows among installed routes of equal distance (SPEC 7). A weight of 0 takes
    /// no new flows while a sibling has a non-zero weight (a drained member); if all are 0 they
    /// share equally.
    pub weight: u8,
    /// Track index; the route is ineligible while that track is down (SPEC 5).
    pub track: Option<usize>,
}

/// A policy rule (SPEC 8): traffic matching every given field is pinned to the first usable
/// uplink of `uplinks`.
#[derive(Clone, Debug)]
pub struct Policy {
    pub name: String,
    pub source: Option<Ipv4Prefix>,
    pub destination: Option<Ipv4Prefix>,
    pub protocol: Option<u8>,
    /// Destination port range, inclusive. Only TCP and UDP flows can match a rule with ports.
    pub ports: Option<(u16, u16)>,
    pub uplinks: Vec<UplinkId>,
    pub fallback: PolicyFallback,
}

pub use crate::config::PolicyFallback;

#[derive(Clone, Debug)]
pub struct Interfaces {
    /// The router's LAN address/len, e.g. 192.168.0.1/24.
    pub lan: Ipv4Prefix,
    /// Index = `UplinkId.0`.
    pub uplinks: Vec<UplinkIf>,
}

#[derive(Clone, Debug)]
pub struct UplinkIf {
    pub name: String,
    /// Address/len, e.g. 172.16.1.1/30. An unspecified address (0.0.0.0, a DHCP client without a
    /// lease) gives neither a local address nor a connected prefix.
    pub address: Ipv4Prefix,
    pub next_hop: Ipv4Addr,
}

/// Dynamic inputs of eligibility (SPEC 5). A missing entry counts as down, so a route never uses
/// an uplink or track the health table does not know.
#[derive(Clone, Debug)]
pub struct Health {
    /// Per uplink.
    pub carrier: Vec<bool>,
    /// Per track index, true = up.
    pub tracks: Vec<bool>,
}

/// The fields of a new flow that routing looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTuple {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// One of the router's own addresses.
    Local,
    /// Connected LAN prefix: deliver on the LAN (resolve dst by ARP).
    Lan,
    /// Send to `next_hop` on `uplink`; `route` says what decided (for explain/show).
    Uplink {
        uplink: UplinkId,
        next_hop: Ipv4Addr,
        route: RouteRef,
    },
    /// Send to `next_hop`, a router on the LAN, untranslated: that router translates (SPEC 29).
    Peer { next_hop: Ipv4Addr, route: RouteRef },
    /// No eligible route: ICMP unreachable.
    Unreachable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteRef {
    /// The uplink's connected prefix; the next hop is the destination itself.
    Connected,
    /// Index into the routes given to [`RouteTable::build`].
    Static(usize),
    /// Index into the policies, and the static route via the chosen uplink that covered dst.
    Policy { policy: usize, route: Option<usize> },
}

/// Why a static route is or is not installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteState {
    /// Eligible and of the lowest distance for its prefix.
    Installed,
    /// Eligible, but a lower distance (or a connected prefix) wins.
    Backup,
    /// Its track is down.
    TrackDown,
    /// Its uplink has no carrier (checked before the track).
    NoCarrier,
    /// Its next hop comes from a DHCP lease the uplink does not have (SPEC 28).
    NoAddress,
}

impl RouteState {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteState::Installed => "installed",
            RouteState::Backup => "backup",
            RouteState::TrackDown => "track down",
            RouteState::NoCarrier => "no carrier",
            RouteState::NoAddress => "no address",
        }
    }

    pub fn eligible(self) -> bool {
        matches!(self, RouteState::Installed | RouteState::Backup)
    }
}

/// The routing table snapshot. Immutable after [`RouteTable::build`]; `Send + Sync`.
pub struct RouteTable {
    ifaces: Interfaces,
    routes: Vec<StaticRoute>,
    policies: Vec<Policy>,
    /// Per uplink of `ifaces`, missing health entries filled in as down.
    carrier: Vec<bool>,
    tracks: Vec<bool>,
    /// Per route.
    states: Vec<RouteState>,
    local: Vec<Ipv4Addr>,
    /// Prefixes reachable directly right now: the LAN and the uplinks with carrier.
    connected: Vec<Ipv4Prefix>,
    /// Connected prefixes plus installed routes.
    fib: Fib,
    /// Per uplink: its eligible routes (lowest distance per prefix), for policies.
    via_uplink: Vec<Fib>,
}

/// (network, length): the identity of a prefix, ordered as IOS lists them.
type PrefixKey = (u32, u8);

fn key(prefix: &Ipv4Prefix) -> PrefixKey {
    (u32::from(prefix.network().addr()), prefix.prefix_len())
}

impl RouteTable {
    /// Computes eligibility (SPEC 5), the installed routes per prefix (SPEC 4) and the lookup
    /// structures.
    pub fn build(
        ifaces: Interfaces,
        routes: Vec<StaticRoute>,
        policies: Vec<Policy>,
        health: &Health,
    ) -> RouteTable {
        let carrier: Vec<bool> = (0..ifaces.uplinks.len())
            .map(|i| health.carrier.get(i).copied().unwrap_or(false))
            .collect();
        let carrier_up = |u: UplinkId| carrier.get(usize::from(u.0)).copied().unwrap_or(false);
        // The LAN has no carrier to lose.
        let egress_up = |e: Iface| match e {
            Iface::Lan => true,
            Iface::Uplink(u) => carrier_up(u),
        };
        let track_up =
            |t: Option<usize>| t.is_none_or(|t| health.tracks.get(t).copied().unwrap_or(false));

        let mut local = vec![ifaces.lan.addr()];
        let mut connected = vec![ifaces.lan.network()];
        let mut fib_entries = vec![(ifaces.lan.network(), Target::Lan)];
        for (i, uplink) in ifaces.uplinks.iter().enumerate() {
            let Ok(id) = u8::try_from(i) else { break };
            if uplink.address.addr().is_unspecified() {
                continue;
            }
            local.push(uplink.address.addr());
            if carrier_up(UplinkId(id)) {
                connected.push(uplink.address.network());
                fib_entries.push((uplink.address.network(), Target::Connected(UplinkId(id))));
            }
        }

        let mut states: Vec<RouteState> = routes
            .iter()
            .map(|r| {
                if !egress_up(r.egress) {
                    RouteState::NoCarrier
                } else if r.next_hop.is_unspecified() {
                    RouteState::NoAddress
                } else if !track_up(r.track) {
                    RouteState::TrackDown
                } else {
                    RouteState::Backup
                }
            })
            .collect();

        let connected_keys: Vec<PrefixKey> = connected.iter().map(key).collect();
        let installed = best_by_prefix(&routes, &states, |_| true);
        for (prefix_key, best) in &installed {
            // A connected prefix has distance 0: a static route to the same prefix stays backup.
            if connected_keys.contains(prefix_key) {
                continue;
            }
            for &i in &best.members {
                if let Some(state) = states.get_mut(i) {
                    *state = RouteState::Installed;
                }
            }
            fib_entries.push(best.fib_entry(&routes));
        }

        let via_uplink = (0..ifaces.uplinks.len())
            .map(|u| {
                let via = Iface::Uplink(UplinkId(u as u8));
                let best = best_by_prefix(&routes, &states, |r| r.egress == via);
                Fib::build(best.values().map(|b| b.fib_entry(&routes)))
            })
            .collect();

        RouteTable {
            fib: Fib::build(fib_entries),
            via_uplink,
            carrier,
            tracks: health.tracks.clone(),
            states,
            local,
            connected,
            ifaces,
            routes,
            policies,
        }
    }

    /// Decides where a new flow goes (see the module doc for the order). Policies come first, in
    /// order: the first matching policy picks the first listed uplink that has carrier and an
    /// eligible route covering dst (next hop = that route's next hop), else its fallback.
    /// Deterministic: the same flow on the same table always gets the same decision.
    pub fn lookup(&self, flow: &FlowTuple) -> Decision {
        let dst = flow.dst;
        if self.local.contains(&dst) {
            return Decision::Local;
        }
        let hash = flow_hash(flow);
        if !self.connected.iter().any(|p| p.contains(dst))
            && let Some(decision) = self.policy_decision(flow, hash)
        {
            return decision;
        }
        match self.fib.lookup(dst) {
            None => Decision::Unreachable,
            Some(Target::Lan) => Decision::Lan,
            Some(Target::Connected(uplink)) => Decision::Uplink {
                uplink: *uplink,
                next_hop: dst,
                route: RouteRef::Connected,
            },
            Some(Target::Static(group)) => match group.pick(hash) {
                Some(m) => match m.egress {
                    Iface::Uplink(uplink) => Decision::Uplink {
                        uplink,
                        next_hop: m.next_hop,
                        route: RouteRef::Static(m.route),
                    },
                    Iface::Lan => Decision::Peer {
                        next_hop: m.next_hop,
                        route: RouteRef::Static(m.route),
                    },
                },
                None => Decision::Unreachable,
            },
        }
    }

    /// `None` when no policy matches or the matching one falls back to the table.
    fn policy_decision(&self, flow: &FlowTuple, hash: u32) -> Option<Decision> {
        let (index, policy) = self
            .policies
            .iter()
            .enumerate()
            .find(|(_, p)| p.matches(flow))?;
        for &uplink in &policy.uplinks {
            // Eligible routes only exist on uplinks with carrier, so no separate carrier check.
            if let Some(fib) = self.via_uplink.get(usize::from(uplink.0))
                && let Some(Target::Static(group)) = fib.lookup(flow.dst)
                && let Some(m) = group.pick(hash)
            {
                return Some(Decision::Uplink {
                    uplink,
                    next_hop: m.next_hop,
                    route: RouteRef::Policy {
                        policy: index,
                        route: Some(m.route),
                    },
                });
            }
        }
        match policy.fallback {
            PolicyFallback::Table => None,
            PolicyFallback::Unreachable => Some(Decision::Unreachable),
        }
    }

    /// Whether `uplink` may still be used at all: carrier up and at least one eligible static
    /// route via it or its connected prefix. With an address configured this is the carrier;
    /// see [`RouteTable::uplink_has_eligible_route`] for "routes via it are all down".
    pub fn uplink_usable(&self, uplink: UplinkId) -> bool {
        let has_address = self
            .ifaces
            .uplinks
            .get(usize::from(uplink.0))
            .is_some_and(|u| !u.address.addr().is_unspecified());
        self.carrier_up(uplink) && (has_address || self.uplink_has_eligible_route(uplink))
    }

    /// Whether at least one static route via `uplink` is eligible (carrier up, track up).
    pub fn uplink_has_eligible_route(&self, uplink: UplinkId) -> bool {
        self.routes_via(uplink).any(|(_, s)| s.eligible())
    }

    /// The uplinks this table was built for.
    pub fn uplinks(&self) -> impl Iterator<Item = UplinkId> + use<> {
        (0..self.ifaces.uplinks.len().min(256)).map(|i| UplinkId(i as u8))
    }

    /// The static routes via `uplink`, with their states.
    pub fn routes_via(
        &self,
        uplink: UplinkId,
    ) -> impl Iterator<Item = (&StaticRoute, RouteState)> + '_ {
        self.routes
            .iter()
            .zip(&self.states)
            .filter(move |(r, _)| r.egress == Iface::Uplink(uplink))
            .map(|(r, s)| (r, *s))
    }

    /// Whether at least one static route via `uplink` is installed.
    pub fn uplink_installed(&self, uplink: UplinkId) -> bool {
        self.routes_via(uplink)
            .any(|(_, s)| s == RouteState::Installed)
    }

    /// Whether any static route is installed: some uplink is left to carry new flows.
    pub fn any_installed(&self) -> bool {
        self.states.contains(&RouteState::Installed)
    }

    /// Next hop and interface of the installed default route (the first one when load is
    /// shared).
    pub fn gateway_of_last_resort(&self) -> Option<(Ipv4Addr, Iface)> {
        self.routes
            .iter()
            .zip(&self.states)
            .find(|(r, s)| r.prefix.prefix_len() == 0 && **s == RouteState::Installed)
            .map(|(r, _)| (r.next_hop, r.egress))
    }

    /// The route at `index` (as in [`RouteRef::Static`]) with its state.
    pub fn route(&self, index: usize) -> Option<(&StaticRoute, RouteState)> {
        Some((self.routes.get(index)?, *self.states.get(index)?))
    }

    /// The policy at `index` (as in [`RouteRef::Policy`]).
    pub fn policy(&self, index: usize) -> Option<&Policy> {
        self.policies.get(index)
    }

    pub fn carrier_up(&self, uplink: UplinkId) -> bool {
        self.carrier
            .get(usize::from(uplink.0))
            .copied()
            .unwrap_or(false)
    }
}

impl Policy {
    fn matches(&self, flow: &FlowTuple) -> bool {
        const TCP: u8 = 6;
        const UDP: u8 = 17;
        self.source.is_none_or(|p| p.contains(flow.src))
            && self.destination.is_none_or(|p| p.contains(flow.dst))
            && self.protocol.is_none_or(|p| p == flow.proto)
            && self.ports.is_none_or(|(lo, hi)| {
                matches!(flow.proto, TCP | UDP) && (lo..=hi).contains(&flow.dst_port)
            })
    }
}

/// Per prefix, the indices of the eligible routes accepted by `keep` that have the lowest
/// distance.
fn best_by_prefix(
    routes: &[StaticRoute],
    states: &[RouteState],
    keep: impl Fn(&StaticRoute) -> bool,
) -> BTreeMap<PrefixKey, Best> {
    let mut best: BTreeMap<PrefixKey, Best> = BTreeMap::new();
    for (i, (route, state)) in routes.iter().zip(states).enumerate() {
        if !state.eligible() || !keep(route) {
            continue;
        }
        let entry = best.entry(key(&route.prefix)).or_insert(Best {
            prefix: route.prefix.network(),
            distance: route.distance,
            members: Vec::new(),
        });
        if route.distance < entry.distance {
            entry.distance = route.distance;
            entry.members.clear();
        }
        if route.distance == entry.distance {
            entry.members.push(i);
        }
    }
    best
}

/// The lowest-distance eligible routes of one prefix.
struct Best {
    prefix: Ipv4Prefix,
    distance: u8,
    members: Vec<usize>,
}

impl Best {
    fn fib_entry(&self, routes: &[StaticRoute]) -> (Ipv4Prefix, Target) {
        let members = self
            .members
            .iter()
            .filter_map(|&i| Some((i, routes.get(i)?)));
        (self.prefix, Target::Static(Group::new(members)))
    }
}

/// Hash of a flow for load sharing: deterministic (no per-process seed, so a rebuilt table maps
/// a flow the same way) and well mixed, so that sequential source ports spread evenly.
pub fn flow_hash(flow: &FlowTuple) -> u32 {
    let addrs = (u64::from(u32::from(flow.src)) << 32) | u64::from(u32::from(flow.dst));
    let rest =
        (u64::from(flow.proto) << 32) | (u64::from(flow.src_port) << 16) | u64::from(flow.dst_port);
    let h = mix(addrs ^ mix(rest ^ 0x9e37_79b9_7f4a_7c15));
    // The high half of a splitmix64 output is as good as the low one; keep it.
    (h >> 32) as u32
}
