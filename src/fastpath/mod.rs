//! The per-packet path: parse → decide (route, NAT) → rewrite, in place. No I/O, no allocation,
//! no panic on any input: every frame ends as exactly one [`Verdict`].
//!
//! Before a batch is walked, `prefetch` reads each frame's NAT key and starts loading the
//! table slots the walk will look it up in (when the table is too large for the caches).
//!
//! A packet's walk, and where each step lives:
//! - [`FastPath::process`] (here): the virtio_net_hdr, the Ethernet destination (ours, else
//!   dropped) and type (ARP is punted);
//! - `parse`: the IPv4 header (checksum verified), the martian filter, the transport header
//!   as far as routing and NAT care (`Ip`, `L4`);
//! - `decide`: by ingress side. From the LAN: anti-spoofing, the flow's NAT session, else the
//!   route table and a session to open; to an uplink's address and a forwarded port, hairpin NAT.
//!   From an uplink: probe replies first (told by their reserved ports, before any NAT lookup),
//!   then only traffic to the uplink's address that a session expects or a port forward
//!   accepts, and rate-limited pings. Then the common steps: TTL, MTU (fragment or
//!   "fragmentation needed"), NAT commit;
//! - `rewrite`: the field changes, through the wire views' typed setters (NAT endpoint with
//!   incremental or partial checksums, the packet an ICMP error quotes, TTL, MSS clamp);
//! - `reply`: when the packet cannot go on, the ICMP error or TCP RST written to the scratch
//!   buffer, limited by `ratelimit`.

mod admit;
mod decide;
mod parse;
mod prefetch;
pub(crate) mod ratelimit;
mod reply;
mod rewrite;
#[cfg(test)]
mod tests;
mod v6;
#[cfg(any(test, fuzzing))]
pub mod valid_frames;

use std::net::IpAddr;

use crate::Iface;
use crate::clock::Instant;
use crate::config::LimitsConfig;
use crate::counters::DropReason;
use crate::nat::{FragTable, NatTable};
use crate::snapshot::{Neighbours, Snapshot};
use crate::wire::ethernet::{self, EthernetFrame};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::vnet::VnetHdr;
use crate::wire::vrrp;
use parse::{Ip, L4, check_martian, is_dhcp, parse_ip, parse_l4};
pub use prefetch::{prefetch_inbound_session, prefetch_session, worth_prefetching};
use ratelimit::RateLimit;
pub use rewrite::complete_checksum;

/// Size of the scratch buffer `process` may write an ICMP error into: an ICMPv6 error quotes
/// up to 1280 bytes in all (RFC 4443 §2.4 c).
pub const SCRATCH_LEN: usize = IP_OFFSET + crate::wire::ipv6::MIN_MTU;

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the frame, rewritten in place, on `egress`.
    Forward {
        egress: Iface,
    },
    /// Like `Forward`, but the packet (DF clear) is larger than the egress `mtu`: send it as
    /// IPv4 fragments.
    Fragment {
        egress: Iface,
        mtu: usize,
    },
    /// Drop the frame for `reason` and send the ICMP error written to `scratch[..len]` on `egress`.
    Reply {
        egress: Iface,
        len: usize,
        reason: DropReason,
    },
    /// Hand the frame to the control plane, on the queue of its class (admitted by the class's
    /// token bucket already).
    Punt(PuntClass),
    /// Rewritten except its destination MAC: `next_hop` has no known MAC yet, so the control
    /// plane resolves it (ARP, or neighbour discovery for IPv6) and sends the frame.
    NeedsNeighbour {
        egress: Iface,
        next_hop: IpAddr,
    },
    Drop(DropReason),
    /// An MLD message (RFC 3810): a LAN host saying which multicast groups it listens to, as
    /// every IPv6 host does. The router routes no multicast, so it takes no part; counted
    /// (`mld`), not a drop: it is normal traffic, not a fault.
    Mld,
}

/// The classes of frames for the control plane (SPEC 35): each has its own token bucket in
/// every worker and its own queue bounded in bytes, served in this order, so a flood of one
/// class cannot delay another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PuntClass {
    /// A probe's reply, or an ICMP error quoting a probe: for the probe thread.
    Probe,
    /// ARP and IPv6 neighbour discovery, for the control thread before anything else.
    Arp,
    /// The router's own traffic (pings, closed ports) and frames waiting for ARP.
    Other,
}

/// Everything the fast path reads, loaded once per batch.
pub struct Env<'a> {
    pub snap: &'a Snapshot,
    pub neighbours: &'a Neighbours,
    pub nat: &'a NatTable,
    pub frags: &'a FragTable,
    pub now: Instant,
}

/// Per-worker state of the fast path: its rate limiters.
pub struct FastPath {
    /// ICMP errors (and RSTs) the router generates, like the kernel's icmp_msgs_per_sec.
    errors: RateLimit,
    /// Pings to the router from the Internet handed to the control plane.
    pings: RateLimit,
    /// Admission to the control plane, by class (`[limits]`).
    probe_replies: RateLimit,
    /// ICMP errors quoting a probe: apart from the replies, so a flood of them (no spoofing
    /// needed) cannot crowd out a reply.
    probe_errors: RateLimit,
    arp: RateLimit,
    /// ARP from an uplink's next hop: apart, so an ARP flood cannot starve the next hops.
    next_hop_arp: RateLimit,
    /// VRRP advertisements: apart, so a flood of the rest cannot make a backup take over.
    vrrp: RateLimit,
    punts: RateLimit,
}

/// ICMP errors (and RSTs) the router generates per second, like the kernel's
/// icmp_msgs_per_sec; the control thread's own errors (ICMPv6 address unreachable) have a
/// bucket of this size too.
pub(crate) const ERRORS_PER_SECOND: u32 = 1000;
/// ARP frames per second from each uplink's next hop: it answers a request a second at most.
const NEXT_HOP_ARP_PER_SECOND: u32 = 50;
/// VRRP advertisements per second: a group's master sends one a second by default, at most
/// 100 (a 10 ms interval).
const VRRP_PER_SECOND: u32 = 200;
/// ICMP errors about probes per second: one per attempt is all a probe can cause.
const PROBE_ERRORS_PER_SECOND: u32 = 100;

impl FastPath {
    pub fn new(limits: &LimitsConfig) -> FastPath {
        FastPath {
            errors: RateLimit::per_second(ERRORS_PER_SECOND),
            pings: RateLimit::per_second(200),
            probe_replies: RateLimit::per_second(limits.probe_replies_per_second),
            probe_errors: RateLimit::per_second(PROBE_ERRORS_PER_SECOND),
            arp: RateLimit::per_second(limits.arp_per_second),
            next_hop_arp: RateLimit::per_second(NEXT_HOP_ARP_PER_SECOND),
            vrrp: RateLimit::per_second(VRRP_PER_SECOND),
            punts: RateLimit::per_second(limits.punts_per_second),
        }
    }
}

impl Default for FastPath {
    fn default() -> Self {
        FastPath::new(&LimitsConfig::default())
    }
}

/// One frame being decided: its buffer (rewritten in place), what parsing found, the side it
/// came in on, and the scratch buffer a reply is built in.
struct Frame<'a> {
    buf: &'a mut [u8],
    scratch: &'a mut [u8],
    // By reference: moving the parsed headers into the frame costs the hot path measurably.
    vh: &'a VnetHdr,
    ip: &'a Ip,
    l4: L4,
    ingress: Iface,
}

impl FastPath {
    /// Decides and rewrites one frame: `frame` is a virtio_net_hdr followed by an Ethernet frame.
    pub fn process(
        &mut self,
        env: &Env,
        frame: &mut [u8],
        ingress: Iface,
        scratch: &mut [u8],
    ) -> Verdict {
        match self.walk(env, frame, ingress, scratch) {
            Ok(v) => v,
            Err(d) => Verdict::Drop(d),
        }
    }

    fn walk(
        &mut self,
        env: &Env,
        buf: &mut [u8],
        ingress: Iface,
        scratch: &mut [u8],
    ) -> Result<Verdict, DropReason> {
        if buf.len() < IP_OFFSET {
            return Err(DropReason::Truncated);
        }
        let vh = VnetHdr::parse(buf).map_err(|_| DropReason::BadVnetHeader)?;
        let my_mac = env.snap.iface_mac(ingress).ok_or(DropReason::NotOurMac)?;
        let eth = EthernetFrame::new_unchecked(&buf[ETH_OFFSET..]);
        if eth.ethertype() == ethernet::ethertype::ARP {
            return self.punt_arp(env, buf, ingress);
        }
        if eth.ethertype() == ethernet::ethertype::IPV6
            && let Some(v6) = &env.snap.ipv6
        {
            return self.ipv6(env, v6, buf, ingress, scratch, &vh);
        }
        let dst_mac = eth.dst();
        let ours = match ingress {
            Iface::Lan => env.snap.lan.accepts(dst_mac),
            Iface::Uplink(_) => dst_mac == my_mac,
        };
        if !ours {
            if ingress == Iface::Lan && env.snap.lan.vrrp && dst_mac == vrrp::MULTICAST_MAC {
                return self.punt_vrrp(env.now);
            }
            if dst_mac.is_broadcast() && is_dhcp(buf, ingress) {
                // DHCP DISCOVERs and most REQUESTs are broadcasts from 0.0.0.0 (SPEC 27), and
                // so are the answers to an uplink's client without an address (SPEC 28).
                return self.punt_other(env.now);
            }
            return Err(if dst_mac.is_multicast() {
                DropReason::Broadcast
            } else {
                DropReason::NotOurMac
            });
        }
        if eth.ethertype() != ethernet::ethertype::IPV4 {
            return Err(DropReason::NotIpv4);
        }
        let ip = parse_ip(&buf[IP_OFFSET..])?;
        if ip.dst.is_broadcast() && ingress != Iface::Lan && is_dhcp(buf, ingress) {
            // The same answers as above from servers (Kea) that send them to our MAC.
            return self.punt_other(env.now);
        }
        check_martian(&ip)?;
        let l4 = parse_l4(&buf[IP_OFFSET..IP_OFFSET + ip.total], &ip)?;
        let mut f = Frame {
            buf,
            scratch,
            vh: &vh,
            ip: &ip,
            l4,
            ingress,
        };
        match ingress {
            Iface::Lan => self.lan_ingress(env, &mut f),
            Iface::Uplink(u) => self.uplink_ingress(env, &mut f, u),
        }
    }
}
