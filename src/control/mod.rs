//! The control plane (docs/architecture.md): everything that is not per-packet, as I/O-free protocol
//! engines driven by thin threads.
//!
//! Engines take `(input, now)` and queue what to send; they never read the clock or touch a
//! socket (quinn-proto style: `handle_frame`, `handle_timeout(now)`, `poll_transmit`,
//! `poll_timeout`), so each is unit-tested on a simulated clock:
//! - `arp`: ARP responder and next-hop resolver, holding frames while it resolves (SPEC 2);
//! - `icmp`: echo responder for the router's own addresses;
//! - `probe`: probes as complete frames pinned to their uplink, and their replies (SPEC 15);
//! - `dhcp`: the LAN's DHCP server (SPEC 27) in frames, around `crate::dhcp::server`;
//! - `dns`: the DNS forwarder (SPEC 30) in frames, around `crate::dns`;
//! - `uplink_dhcp`: an uplink's DHCP client (SPEC 28) in frames, around `crate::dhcp::client`;
//! - `uplink_pd`: an uplink's DHCPv6 prefix delegation client (SPEC 32) in frames, around
//!   `crate::dhcp::pd`;
//! - `failover`: what happens to NAT flows when the route table changes (SPEC 21, 22);
//! - `vrrp`: VRRPv3 groups on the LAN, priority from the tracks (SPEC 29);
//! - `ndp`: IPv6 neighbour discovery: the neighbour cache, answers for the router's own
//!   addresses, duplicate address detection (SPEC 32);
//! - `ra`: Router Advertisements on the LAN, one prefix per uplink deprecated by health, or
//!   the NPTv6 prefix (SPEC 32, 33);
//! - `unreachable6`: ICMPv6 address unreachable for a LAN address neighbour discovery could
//!   not resolve (SPEC 34);
//! - `inputs`: what they are built from, derived from the configuration at start and reload.
//!
//! Threads own the sockets and the clock and dispatch to the engines:
//! - `thread`: the control thread (punted frames, ARP, pings, VRRP, tracks, route rebuild and
//!   publication, failover, reload, control-socket requests);
//! - `probe_thread`: the probes, on their own sockets and reply queue, so the control thread
//!   never delays them;
//! - `socket`: the control socket protocol, server and client.

pub mod arp;
pub mod dhcp;
pub mod dns;
pub mod failover;
pub mod icmp;
pub mod inputs;
pub mod ndp;
pub mod probe;
pub mod probe_thread;
pub mod ra;
pub mod socket;
pub mod thread;
pub mod unreachable6;
pub mod uplink_dhcp;
pub mod uplink_pd;
pub mod vrrp;

#[cfg(test)]
mod fixtures;

use std::net::Ipv4Addr;

use crate::Iface;
use crate::prefix::Ipv4Prefix;
use crate::wire::ethernet::{self, EthernetFrame, MacAddr};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::vnet::VnetHdr;

pub use thread::{Control, ControlParts, UplinkIo};

/// A complete frame (virtio_net_hdr, Ethernet header, payload) to send on `iface`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub iface: Iface,
    pub frame: Vec<u8>,
}

impl Transmit {
    /// An IPv4 packet that `build` writes into a buffer of `capacity` bytes (returning its
    /// length), behind a vnet header (no offload) and an Ethernet header from `src` to `dst`.
    pub fn ipv4(
        iface: Iface,
        src: MacAddr,
        dst: MacAddr,
        capacity: usize,
        build: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<Transmit> {
        Self::ip(
            iface,
            (src, dst, ethernet::ethertype::IPV4),
            capacity,
            build,
        )
    }

    /// [`ipv4`](Self::ipv4) for an IPv6 packet.
    pub fn ipv6(
        iface: Iface,
        src: MacAddr,
        dst: MacAddr,
        capacity: usize,
        build: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<Transmit> {
        Self::ip(
            iface,
            (src, dst, ethernet::ethertype::IPV6),
            capacity,
            build,
        )
    }

    fn ip(
        iface: Iface,
        (src, dst, ethertype): (MacAddr, MacAddr, u16),
        capacity: usize,
        build: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<Transmit> {
        let mut frame = vec![0u8; IP_OFFSET + capacity];
        let n = build(&mut frame[IP_OFFSET..])?;
        frame.truncate(IP_OFFSET + n);
        VnetHdr::default().write(&mut frame).ok()?;
        let mut eth = EthernetFrame::new_unchecked(&mut frame[ETH_OFFSET..]);
        eth.set_dst(dst);
        eth.set_src(src);
        eth.set_ethertype(ethertype);
        Some(Transmit { iface, frame })
    }

    /// A frame the fast path rewrote completely but for its destination MAC.
    pub fn resolved(iface: Iface, mut frame: Vec<u8>, dst: MacAddr) -> Transmit {
        if let Some(eth) = frame.get_mut(ETH_OFFSET..) {
            EthernetFrame::new_unchecked(eth).set_dst(dst);
        }
        Transmit { iface, frame }
    }
}

/// A frame complete but for its destination MAC, to send to `next_hop` on `iface` once the
/// ARP engine knows its MAC.
pub struct Outgoing {
    pub iface: Iface,
    pub next_hop: Ipv4Addr,
    pub frame: Vec<u8>,
}

/// The router's own address (with its prefix length) and MAC on one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    pub prefix: Ipv4Prefix,
    pub mac: MacAddr,
}

/// The router's addresses and MACs on every interface, from the configuration and the NICs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressing {
    pub lan: IfAddr,
    pub uplinks: Vec<IfAddr>,
}

impl Addressing {
    pub fn get(&self, iface: Iface) -> Option<IfAddr> {
        match iface {
            Iface::Lan => Some(self.lan),
            Iface::Uplink(u) => self.uplinks.get(usize::from(u.0)).copied(),
        }
    }

    /// The router's address on `iface`.
    pub fn addr(&self, iface: Iface) -> Option<Ipv4Addr> {
        self.get(iface).map(|a| a.prefix.addr())
    }

    /// True when `ip` is one of the router's own addresses.
    pub fn is_local(&self, ip: Ipv4Addr) -> bool {
        self.lan.prefix.addr() == ip || self.uplinks.iter().any(|u| u.prefix.addr() == ip)
    }
}
