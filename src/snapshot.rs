//! The forwarding state the control plane publishes to the workers: immutable, swapped whole
//! (arc-swap), loaded by each worker once per batch.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::prefix::Ipv4Prefix;
use crate::route::RouteTable;
use crate::wire::ethernet::MacAddr;
use crate::{Iface, UplinkId};

pub struct Snapshot {
    pub routes: RouteTable,
    pub lan: LanState,
    pub uplinks: Vec<UplinkState>,
    /// Resolved neighbours (ARP), by interface.
    pub neighbours: HashMap<(Iface, Ipv4Addr), MacAddr>,
    /// (uplink, target) of every probe: what arrives on an uplink from a probe's target may be
    /// its reply and goes to the control plane; other unsolicited traffic is dropped at once.
    pub probe_targets: Vec<(UplinkId, Ipv4Addr)>,
}

pub struct LanState {
    /// Router's LAN address with the LAN prefix length.
    pub address: Ipv4Prefix,
    pub mac: MacAddr,
    pub mtu: usize,
}

pub struct UplinkState {
    pub name: String,
    pub address: Ipv4Prefix,
    pub mac: MacAddr,
    pub next_hop: Ipv4Addr,
    /// The next hop's MAC, copied here so established flows need no neighbour lookup.
    pub next_hop_mac: Option<MacAddr>,
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

    pub fn is_probe_target(&self, uplink: UplinkId, ip: Ipv4Addr) -> bool {
        self.probe_targets.contains(&(uplink, ip))
    }

    pub fn neighbour(&self, iface: Iface, ip: Ipv4Addr) -> Option<MacAddr> {
        if let Iface::Uplink(u) = iface
            && let Some(up) = self.uplink(u)
            && up.next_hop == ip
            && up.next_hop_mac.is_some()
        {
            return up.next_hop_mac;
        }
        self.neighbours.get(&(iface, ip)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Health, Interfaces};

    fn p(s: &str) -> Ipv4Prefix {
        s.parse().unwrap()
    }

    fn uplink(nat: bool, nat_sources: &[&str]) -> UplinkState {
        UplinkState {
            name: "isp-a".into(),
            address: p("172.16.1.1/30"),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            next_hop: Ipv4Addr::new(172, 16, 1, 2),
            next_hop_mac: None,
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
            },
            uplinks: vec![uplink(false, &[])],
            neighbours: HashMap::new(),
            probe_targets: vec![],
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
}
