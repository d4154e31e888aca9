//! Admission to the control plane (SPEC 35): a frame for it takes a token from its class's
//! bucket (`[limits]`, per worker) or is dropped and counted here, so a flood of one class
//! never reaches the queues, let alone another class's.

use std::net::Ipv6Addr;

use super::ratelimit::RateLimit;
use super::{Env, FastPath, PuntClass, Verdict};
use crate::Iface;
use crate::clock::Instant;
use crate::counters::DropReason;
use crate::snapshot::Ipv6State;
use crate::wire::arp::ArpPacket;
use crate::wire::frame::IP_OFFSET;

/// `Punt(class)` if `bucket` has a token, else dropped for `reason`.
fn admit(
    bucket: &mut RateLimit,
    now: Instant,
    class: PuntClass,
    reason: DropReason,
) -> Result<Verdict, DropReason> {
    if bucket.take(now) {
        Ok(Verdict::Punt(class))
    } else {
        Err(reason)
    }
}

impl FastPath {
    /// The router's own traffic, and frames waiting for ARP.
    pub(super) fn punt_other(&mut self, now: Instant) -> Result<Verdict, DropReason> {
        admit(
            &mut self.punts,
            now,
            PuntClass::Other,
            DropReason::PuntRateLimited,
        )
    }

    /// A VRRP advertisement from the LAN.
    pub(super) fn punt_vrrp(&mut self, now: Instant) -> Result<Verdict, DropReason> {
        admit(
            &mut self.vrrp,
            now,
            PuntClass::Other,
            DropReason::PuntRateLimited,
        )
    }

    /// A probe's reply, or (`error`) an ICMP error quoting a probe.
    pub(super) fn punt_probe(&mut self, now: Instant, error: bool) -> Result<Verdict, DropReason> {
        let bucket = if error {
            &mut self.probe_errors
        } else {
            &mut self.probe_replies
        };
        admit(bucket, now, PuntClass::Probe, DropReason::ProbeRateLimited)
    }

    /// An ARP frame (vnet header first): from an uplink's next hop it has a bucket of its own,
    /// so an ARP flood cannot keep the next hops from being resolved.
    pub(super) fn punt_arp(
        &mut self,
        env: &Env,
        buf: &[u8],
        ingress: Iface,
    ) -> Result<Verdict, DropReason> {
        let arp = ArpPacket::new_checked(buf.get(IP_OFFSET..).unwrap_or(&[]))
            .map_err(|_| DropReason::BadL4Header)?;
        let from_next_hop = match ingress {
            Iface::Uplink(u) => env
                .snap
                .uplink(u)
                .is_some_and(|up| up.next_hop == arp.sender_ip()),
            Iface::Lan => false,
        };
        self.admit_neighbour(env, from_next_hop)
    }

    /// IPv6 neighbour discovery from `src`: ARP's class, and ARP's buckets (the next hop's own
    /// on an uplink).
    pub(super) fn punt_nd(
        &mut self,
        env: &Env,
        v6: &Ipv6State,
        ingress: Iface,
        src: Ipv6Addr,
    ) -> Result<Verdict, DropReason> {
        let from_next_hop = match ingress {
            Iface::Uplink(u) => v6.next_hop(u) == Some(src),
            Iface::Lan => false,
        };
        self.admit_neighbour(env, from_next_hop)
    }

    /// ARP and neighbour discovery share a class and buckets; the next hop has its own, so a
    /// flood from the LAN or the link cannot starve its resolution.
    fn admit_neighbour(&mut self, env: &Env, from_next_hop: bool) -> Result<Verdict, DropReason> {
        let bucket = if from_next_hop {
            &mut self.next_hop_arp
        } else {
            &mut self.arp
        };
        admit(bucket, env.now, PuntClass::Arp, DropReason::ArpRateLimited)
    }
}
