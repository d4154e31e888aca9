//! The forwarding state the control plane publishes to the workers: immutable, swapped whole
//! (arc-swap), loaded by each worker once per batch. Routes and interfaces (`Snapshot`) and
//! neighbours (`Neighbours`) are published apart: ARP changes far more often than routes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::nat::npt6::Npt6;
use crate::prefix::Ipv4Prefix;
use crate::prefix6::Ipv6Prefix;
use crate::probe::PROBE_PORTS;
use crate::route::RouteTable;
use crate::route::egress6::Policy6;
use crate::route::source6::UplinkPrefix;
use crate::route::table6::Route6;
use crate::wire::ethernet::MacAddr;
use crate::{Iface, UplinkId};

pub struct Snapshot {
    pub routes: RouteTable,
    pub lan: LanState,
    pub uplinks: Vec<UplinkState>,
    /// Every probe's (uplink, protocol, target, port): its port is one of `PROBE_PORTS`, which
    /// no NAT session can hold, so what arrives on an uplink is told for a probe's reply before
    /// any NAT lookup (SPEC 35).
    pub probes: Vec<ProbeFlow>,
    /// IPv6 forwarding (SPEC 32): None unless `[lan] ipv6 = true`, and IPv6 frames are then
    /// dropped as not IPv4.
    pub ipv6: Option<Ipv6State>,
}

/// What the fast path needs for IPv6: the LAN prefixes, each uplink's provider prefix and
/// health (for the egress by source, `route::source6`), next hops and the router's addresses.
#[derive(Debug, Clone, Default)]
pub struct Ipv6State {
    /// The LAN /64s, one per uplink with a prefix.
    pub lan_prefixes: Vec<Ipv6Prefix>,
    /// The uplinks with IPv6: provider prefix, and up while the uplink's carrier is up and no
    /// track watching it is down.
    pub uplinks: Vec<UplinkPrefix>,
    /// Per uplink (indexed like `Snapshot::uplinks`): its IPv6 next hop, if it has IPv6.
    pub next_hops: Vec<Option<Ipv6Addr>>,
    /// The router's own addresses, by interface: each interface's link-local address and each
    /// uplink's `address6`. The first of an interface is the source of its ICMPv6 errors.
    pub local: Vec<(Iface, Ipv6Addr)>,
    /// NPTv6 (SPEC 33), per uplink (indexed like `Snapshot::uplinks`): the mapping of the LAN's
    /// internal prefix (then the only one in `lan_prefixes`) to the uplink's LAN /64; None
    /// everywhere while NPTv6 is off.
    pub npt6: Vec<Option<Npt6>>,
    /// The IPv6 `[[route]]`s with their eligibility (SPEC 34), in configuration order.
    pub routes: Vec<Route6>,
    /// The IPv6 `[[policy]]`s, in order.
    pub policies: Vec<Policy6>,
}

impl Ipv6State {
    /// True when `ip` is one of the router's addresses (on any interface).
    pub fn is_local(&self, ip: Ipv6Addr) -> bool {
        self.local.iter().any(|&(_, a)| a == ip)
    }

    /// True when `ip` is in one of the LAN prefixes.
    pub fn is_lan(&self, ip: Ipv6Addr) -> bool {
        self.lan_prefixes.iter().any(|p| p.contains(ip))
    }

    /// The source of what the router sends out of `iface` on its own (ICMPv6 errors): its
    /// global address there if it has one, else its link-local address.
    pub fn iface_addr(&self, iface: Iface) -> Option<Ipv6Addr> {
        let mut mine = self
            .local
            .iter()
            .filter(|(i, _)| *i == iface)
            .map(|&(_, a)| a);
        let first = mine.next()?;
        Some(if first.is_unicast_link_local() {
            mine.next().unwrap_or(first)
        } else {
            first
        })
    }

    pub fn next_hop(&self, u: UplinkId) -> Option<Ipv6Addr> {
        self.next_hops.get(usize::from(u.0)).copied().flatten()
    }

    /// The NPTv6 mapping of packets leaving by uplink `u`, if it translates.
    pub fn npt6(&self, u: UplinkId) -> Option<&Npt6> {
        self.npt6.get(usize::from(u.0))?.as_ref()
    }

    /// The NPTv6 mapping whose external prefix holds `dst`: a packet to a LAN host from
    /// outside.
    pub fn npt6_inbound(&self, dst: Ipv6Addr) -> Option<&Npt6> {
        self.npt6
            .iter()
            .flatten()
            .find(|n| n.external().contains(dst))
    }
}

/// What a probe's replies come as: on `uplink`, from `target`, protocol `proto`, to the
/// probe's `port` (its ICMP id or TCP/UDP source port, one of `PROBE_PORTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeFlow {
    pub uplink: UplinkId,
    pub proto: u8,
    pub target: IpAddr,
    pub port: u16,
}

pub struct LanState {
    /// Router's LAN address with the LAN prefix length.
    pub address: Ipv4Prefix,
    pub mac: MacAddr,
    pub mtu: usize,
    /// Virtual MACs of the VRRP groups this router is master of: frames to them are forwarded
    /// like frames to `mac` (SPEC 29).
    pub virtual_macs: Vec<MacAddr>,
    /// VRRP is configured: advertisements (to the VRRP group MAC) go to the control plane.
    pub vrrp: bool,
}

impl LanState {
    /// A frame to `mac` is for the router: its own MAC, or a virtual MAC while master.
    pub fn accepts(&self, mac: MacAddr) -> bool {
        mac == self.mac || self.virtual_macs.contains(&mac)
    }
}

pub struct UplinkState {
    pub name: String,
    pub address: Ipv4Prefix,
    pub mac: MacAddr,
    pub next_hop: Ipv4Addr,
    pub mtu: usize,
    pub mss_clamp: Option<u16>,
    /// Outside interface: NAPT to `address`.
    pub nat: bool,
    /// Inside sources allowed to be translated; empty means all.
    pub nat_sources: Vec<Ipv4Prefix>,
    pub carrier: bool,
}

impl UplinkState {
    /// True when traffic from the inside source `src` leaving here is translated (SPEC 9); the
    /// rest is routed as is, and so are its replies (SPEC 10).
    pub fn translates(&self, src: Ipv4Addr) -> bool {
        self.nat
            && (self.nat_sources.is_empty() || self.nat_sources.iter().any(|p| p.contains(src)))
    }
}

impl Snapshot {
    pub fn uplink(&self, id: UplinkId) -> Option<&UplinkState> {
        self.uplinks.get(id.0 as usize)
    }

    /// True when `ip` is one of the router's own addresses.
    pub fn is_local(&self, ip: Ipv4Addr) -> bool {
        ip == self.lan.address.addr() || self.uplinks.iter().any(|u| u.address.addr() == ip)
    }

    /// The uplink whose address is `ip`.
    pub fn uplink_with_addr(&self, ip: Ipv4Addr) -> Option<UplinkId> {
        let i = self.uplinks.iter().position(|u| u.address.addr() == ip)?;
        Some(UplinkId(u8::try_from(i).ok()?))
    }

    /// True when `ip` is a host of the LAN prefix other than the router itself.
    pub fn is_lan_host(&self, ip: Ipv4Addr) -> bool {
        let lan = self.lan.address;
        lan.contains(ip) && ip != lan.addr() && ip != lan.network().addr() && ip != lan.broadcast()
    }

    pub fn iface_mac(&self, iface: Iface) -> Option<MacAddr> {
        match iface {
            Iface::Lan => Some(self.lan.mac),
            Iface::Uplink(u) => self.uplink(u).map(|u| u.mac),
        }
    }

    pub fn iface_mtu(&self, iface: Iface) -> usize {
        match iface {
            Iface::Lan => self.lan.mtu,
            Iface::Uplink(u) => self.uplink(u).map_or(0, |u| u.mtu),
        }
    }

    /// The router's address on `iface`, with the interface's prefix length.
    pub fn iface_prefix(&self, iface: Iface) -> Option<Ipv4Prefix> {
        match iface {
            Iface::Lan => Some(self.lan.address),
            Iface::Uplink(u) => self.uplink(u).map(|u| u.address),
        }
    }

    /// Address the router uses as source for what it sends out of `iface`.
    pub fn iface_addr(&self, iface: Iface) -> Option<Ipv4Addr> {
        self.iface_prefix(iface).map(|p| p.addr())
    }

    /// True when a packet of protocol `proto` from `remote` to the router's `port` on `uplink`
    /// is one a probe expects (it may still answer no outstanding attempt).
    pub fn is_probe_reply(&self, uplink: UplinkId, proto: u8, remote: IpAddr, port: u16) -> bool {
        PROBE_PORTS.contains(&port)
            && self.probes.contains(&ProbeFlow {
                uplink,
                proto,
                target: remote,
                port,
            })
    }
}

/// Resolved neighbours (ARP, and neighbour discovery for IPv6), by interface.
#[derive(Debug, Default)]
pub struct Neighbours {
    map: HashMap<(Iface, Ipv4Addr), MacAddr>,
    map6: HashMap<(Iface, Ipv6Addr), MacAddr>,
    /// Per uplink: its next hop and that hop's MAC, checked before the map so established
    /// flows need no hash lookup.
    next_hops: Vec<(Ipv4Addr, Option<MacAddr>)>,
}

impl Neighbours {
    pub fn new(
        map: HashMap<(Iface, Ipv4Addr), MacAddr>,
        next_hops: Vec<(Ipv4Addr, Option<MacAddr>)>,
    ) -> Neighbours {
        Neighbours {
            map,
            map6: HashMap::new(),
            next_hops,
        }
    }

    /// With the IPv6 neighbours resolved by neighbour discovery.
    pub fn with_v6(mut self, map6: HashMap<(Iface, Ipv6Addr), MacAddr>) -> Neighbours {
        self.map6 = map6;
        self
    }

    pub fn lookup6(&self, iface: Iface, ip: Ipv6Addr) -> Option<MacAddr> {
        self.map6.get(&(iface, ip)).copied()
    }

    /// Every IPv6 neighbour, for `show`.
    pub fn v6(&self) -> impl Iterator<Item = (Iface, Ipv6Addr, MacAddr)> + '_ {
        self.map6.iter().map(|(&(i, ip), &m)| (i, ip, m))
    }

    pub fn lookup(&self, iface: Iface, ip: Ipv4Addr) -> Option<MacAddr> {
        if let Iface::Uplink(u) = iface
            && let Some(&(next_hop, Some(mac))) = self.next_hops.get(usize::from(u.0))
            && next_hop == ip
        {
            return Some(mac);
        }
        self.map.get(&(iface, ip)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::fixtures::{NH_A, ifaces, p};
    use crate::route::{Health, Interfaces};
    use crate::wire::ipv4::proto;

    fn uplink(nat: bool, nat_sources: &[&str]) -> UplinkState {
        UplinkState {
            name: "isp-a".into(),
            address: p("172.16.1.1/30"),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            next_hop: Ipv4Addr::new(172, 16, 1, 2),
            mtu: 1500,
            mss_clamp: None,
            nat,
            nat_sources: nat_sources.iter().map(|s| p(s)).collect(),
            carrier: true,
        }
    }

    #[test]
    fn translates_follows_nat_and_nat_sources() {
        let host = Ipv4Addr::new(192, 168, 0, 10);
        let high = Ipv4Addr::new(192, 168, 0, 200);
        assert!(uplink(true, &[]).translates(host));
        assert!(!uplink(false, &[]).translates(host));
        let some = uplink(true, &["192.168.0.128/25"]);
        assert!(!some.translates(host) && some.translates(high));
    }

    #[test]
    fn lan_hosts_exclude_the_router_network_and_broadcast() {
        let snap = Snapshot {
            routes: RouteTable::build(
                Interfaces {
                    lan: p("192.168.0.1/24"),
                    uplinks: vec![],
                },
                vec![],
                vec![],
                &Health {
                    carrier: vec![],
                    tracks: vec![],
                },
            ),
            lan: LanState {
                address: p("192.168.0.1/24"),
                mac: MacAddr([2, 0, 0, 0, 0, 2]),
                mtu: 1500,
                virtual_macs: vec![],
                vrrp: false,
            },
            uplinks: vec![uplink(false, &[])],
            probes: vec![],
            ipv6: None,
        };
        let host = |s: &str| snap.is_lan_host(s.parse().unwrap());
        assert!(host("192.168.0.10") && host("192.168.0.254"));
        for not in [
            "192.168.0.1",
            "192.168.0.0",
            "192.168.0.255",
            "192.168.1.10",
            "172.16.1.1",
        ] {
            assert!(!host(not), "{not}");
        }
    }

    const A: Iface = Iface::Uplink(UplinkId(0));
    const B: Iface = Iface::Uplink(UplinkId(1));
    const PE_A: MacAddr = MacAddr([2, 0, 0, 0, 1, 0xa]);
    const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
    const HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x10]);
    const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));

    #[test]
    fn next_hops_are_found_before_the_map_and_only_on_their_uplink() {
        let n = Neighbours::new(
            HashMap::from([((Iface::Lan, HOST), HOST_MAC)]),
            vec![(NH_A, Some(PE_A)), (Ipv4Addr::new(172, 17, 3, 2), None)],
        );
        assert_eq!(n.lookup(A, NH_A), Some(PE_A));
        assert_eq!(n.lookup(B, NH_A), None);
        assert_eq!(n.lookup(Iface::Lan, HOST), Some(HOST_MAC));
        assert_eq!(n.lookup(A, HOST), None);
        assert_eq!(n.lookup(B, Ipv4Addr::new(172, 17, 3, 2)), None);
    }

    #[test]
    fn lan_accepts_its_mac_and_the_virtual_macs_it_is_master_of() {
        let lan = snapshot().lan;
        assert!(lan.accepts(MacAddr([2, 0, 0, 0, 0, 1])));
        assert!(lan.accepts(crate::wire::vrrp::virtual_mac(1)));
        assert!(!lan.accepts(crate::wire::vrrp::virtual_mac(2)));
        assert!(!lan.accepts(HOST_MAC));
    }

    fn snapshot() -> Snapshot {
        let health = Health {
            carrier: vec![true, true],
            tracks: Vec::new(),
        };
        Snapshot {
            routes: RouteTable::build(ifaces(), Vec::new(), Vec::new(), &health),
            lan: LanState {
                address: p("192.168.0.1/24"),
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                mtu: 1500,
                virtual_macs: vec![crate::wire::vrrp::virtual_mac(1)],
                vrrp: true,
            },
            uplinks: Vec::new(),
            ipv6: None,
            probes: vec![ProbeFlow {
                uplink: UplinkId(0),
                proto: proto::ICMP,
                target: TARGET,
                port: *PROBE_PORTS.start() + 7,
            }],
        }
    }

    #[test]
    fn a_probe_reply_is_its_uplink_protocol_target_and_port() {
        let s = snapshot();
        let port = *PROBE_PORTS.start() + 7;
        assert!(s.is_probe_reply(UplinkId(0), proto::ICMP, TARGET, port));
        assert!(
            !s.is_probe_reply(UplinkId(0), proto::ICMP, TARGET, port + 1),
            "another probe's port"
        );
        assert!(
            !s.is_probe_reply(UplinkId(1), proto::ICMP, TARGET, port),
            "another uplink"
        );
        assert!(
            !s.is_probe_reply(UplinkId(0), proto::UDP, TARGET, port),
            "another protocol"
        );
        let other = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
        assert!(
            !s.is_probe_reply(UplinkId(0), proto::ICMP, other, port),
            "another host"
        );
        assert!(
            !s.is_probe_reply(UplinkId(0), proto::ICMP, TARGET, *PROBE_PORTS.start() - 1),
            "a NAT port"
        );
    }
}
