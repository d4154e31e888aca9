//! Router Advertisement engine for the LAN (RFC 4861 §6.2, RFC 8106, RFC 8475; SPEC 32, 33).
//!
//! The LAN gets one /64 per uplink, each advertised for SLAAC (L and A set), the router's LAN
//! addresses as the recursive DNS servers, and the router as the default router. Health drives the
//! lifetimes: while an uplink is down its prefix is advertised with preferred lifetime 0 (its
//! valid lifetime kept, RFC 8475 §3), so hosts keep their addresses but pick the other prefix
//! for new connections; while no uplink is up the router lifetime is 0, so hosts stop using the
//! router as their default. With NPTv6 the LAN has one internal prefix instead, preferred while
//! any uplink is up. Every change is announced at once with a short burst.
//!
//! Start (RFC 4861 §6.2.2, RFC 4862 §5.4): nothing is sent before [`RaEngine::start`], which
//! the caller calls once the router's link-local address on the LAN has passed DAD and the
//! uplinks' health has been measured, so the first RAs already say which prefixes are usable
//! instead of advertising everything deprecated until the first probes pass.
//!
//! A delegated prefix can change or go (SPEC 32): the uplink's old /64 is then advertised
//! with preferred and valid lifetime 0 (RFC 7084 L-13, RFC 9096) for as long as hosts may
//! still hold it (the valid lifetime it was advertised with), so they stop using it at once.
//!
//! Timing (RFC 4861 §6.2.4, §6.2.6): unsolicited RAs at a random interval in
//! [min_interval, max_interval], the first few at most 16 s apart; a solicitation is answered
//! with a multicast RA after a random delay of up to 500 ms; consecutive multicast RAs are at
//! least 3 s apart. The randomness comes from a seed the caller injects, so tests replay it.
//! Pure: solicitations, uplink states and the clock come in, frames come out.

use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::time::Duration;

use super::Transmit;
use crate::clock::Instant;
use crate::prefix6::Ipv6Prefix;
use crate::rng::SplitMix;
use crate::wire::ethernet::MacAddr;
use crate::wire::frame::IP_OFFSET;
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::ndisc::{
    self, Message, NdOption, NdPacket, NdRepr, PrefixInfo, Rdnss, RouterAdvert,
};
use crate::{Iface, UplinkId};

/// MAX_INITIAL_RTR_ADVERTISEMENTS: how many RAs come fast at start, and on each change.
const FAST_ADVERTS: u32 = 3;
/// MAX_INITIAL_RTR_ADVERT_INTERVAL: the longest gap between the first RAs.
const MAX_INITIAL_INTERVAL: Duration = Duration::from_secs(16);
/// MIN_DELAY_BETWEEN_RAS: the shortest gap between multicast RAs; also the spacing of the
/// burst that announces a change.
const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
/// MAX_RA_DELAY_TIME: the longest random delay before answering a solicitation.
const MAX_RA_DELAY: Duration = Duration::from_millis(500);

/// What the RAs say and how often (RFC 4861 §6.2.1 names; lifetimes from RFC 9096 §3.4,
/// which keeps them short so a renumbered or dead prefix ages out of hosts quickly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaParams {
    pub min_interval: Duration,
    pub max_interval: Duration,
    /// AdvDefaultLifetime, while at least one uplink is up.
    pub router_lifetime: Duration,
    /// AdvValidLifetime of each prefix, in seconds; kept while its uplink is down.
    pub valid_lifetime: u32,
    /// AdvPreferredLifetime of each prefix while its uplink is up, in seconds.
    pub preferred_lifetime: u32,
    /// The LAN MTU to advertise, if any.
    pub mtu: Option<u32>,
}

impl Default for RaParams {
    fn default() -> Self {
        RaParams {
            min_interval: Duration::from_secs(200),
            max_interval: Duration::from_secs(600),
            router_lifetime: Duration::from_secs(1800),
            valid_lifetime: 5400,
            preferred_lifetime: 2700,
            mtu: None,
        }
    }
}

/// The LAN /64 that an uplink's provider prefix gives, or the NPTv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanPrefix {
    /// The uplink whose health the prefix follows; None for the NPTv6 prefix (SPEC 33), which
    /// any uplink that is up carries, translated.
    pub uplink: Option<UplinkId>,
    pub prefix: Ipv6Prefix,
}

/// The LAN side of the router as the RAs describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaConfig {
    /// The router's MAC on the LAN: the source link-layer option, and the source of the
    /// link-local address RAs come from.
    pub lan_mac: MacAddr,
    pub prefixes: Vec<LanPrefix>,
    /// The recursive DNS servers advertised (RFC 8106): the router's LAN addresses where its
    /// DNS forwarder answers; empty: no RDNSS option.
    pub dns: Vec<Ipv6Addr>,
    pub params: RaParams,
}

/// A duration uniformly in [lo, hi] at millisecond resolution.
fn between(rng: &mut SplitMix, lo: Duration, hi: Duration) -> Duration {
    let (lo, hi) = (
        lo.as_millis() as u64,
        hi.as_millis().max(lo.as_millis()) as u64,
    );
    Duration::from_millis(lo + rng.next_u64() % (hi - lo + 1))
}

pub struct RaEngine {
    config: RaConfig,
    /// LAN prefixes an uplink no longer has, advertised with lifetimes 0 until the instant.
    withdrawn: Vec<(LanPrefix, Instant)>,
    /// Uplinks whose track is up.
    up: Vec<UplinkId>,
    jitter: SplitMix,
    /// Whether RAs go out yet (see [`start`](Self::start)).
    started: bool,
    next_advert: Instant,
    last_advert: Option<Instant>,
    /// RAs still to send at most 16 s apart (start).
    initial_left: u32,
    /// RAs still to send 3 s apart (a change).
    burst_left: u32,
    transmits: VecDeque<Transmit>,
}

impl RaEngine {
    /// An engine that sends nothing until [`start`](Self::start); every uplink counts as down
    /// until [`set_uplink`](Self::set_uplink) says otherwise.
    pub fn new(config: RaConfig, seed: u64, now: Instant) -> RaEngine {
        RaEngine {
            config,
            withdrawn: Vec::new(),
            up: Vec::new(),
            jitter: SplitMix::new(seed),
            started: false,
            next_advert: now,
            last_advert: None,
            initial_left: FAST_ADVERTS,
            burst_left: 0,
            transmits: VecDeque::new(),
        }
    }

    /// Starts advertising at `now` (the start-up RAs, at most 16 s apart): the router's
    /// link-local address is usable (DAD passed) and the uplinks' states are known. Later
    /// calls change nothing.
    pub fn start(&mut self, now: Instant) {
        if !self.started {
            self.started = true;
            self.next_advert = now;
        }
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The DNS servers the RAs name.
    pub fn dns(&self) -> &[Ipv6Addr] {
        &self.config.dns
    }

    /// The DNS servers change with the router's LAN addresses (a delegated prefix came or
    /// went); the next RA names them ([`set_prefix`](Self::set_prefix) announces it).
    pub fn set_dns(&mut self, dns: Vec<Ipv6Addr>) {
        self.config.dns = dns;
    }

    /// The source of every RA: the router's link-local address on the LAN.
    pub fn source(&self) -> Ipv6Addr {
        ndisc::link_local(self.config.lan_mac)
    }

    /// Uplink `uplink`'s track went up or down (SPEC 33): its prefix's preferred lifetime and
    /// perhaps the router lifetime change, announced with a burst starting now (or 3 s after
    /// the previous RA, the fastest RFC 4861 allows).
    pub fn set_uplink(&mut self, uplink: UplinkId, up: bool, now: Instant) {
        if self.up.contains(&uplink) == up {
            return;
        }
        if up {
            self.up.push(uplink);
        } else {
            self.up.retain(|&u| u != uplink);
        }
        if !self.started {
            // The start-up RAs will say it.
            return;
        }
        self.burst_left = FAST_ADVERTS;
        self.next_advert = self.next_advert.min(self.earliest(now));
    }

    /// Uplink `uplink`'s LAN prefix is now `prefix` (a delegation came, changed or went): the
    /// old one is withdrawn, and the change announced with a burst like a health change.
    pub fn set_prefix(&mut self, uplink: UplinkId, prefix: Option<Ipv6Prefix>, now: Instant) {
        let prefixes = &mut self.config.prefixes;
        let old = prefixes.iter().position(|p| p.uplink == Some(uplink));
        if old.map(|i| prefixes[i].prefix) == prefix {
            return;
        }
        if let Some(i) = old {
            let gone = prefixes.remove(i);
            let until = now + Duration::from_secs(self.config.params.valid_lifetime.into());
            self.withdrawn.push((gone, until));
        }
        if let Some(prefix) = prefix {
            self.withdrawn.retain(|(w, _)| w.prefix != prefix);
            prefixes.push(LanPrefix {
                uplink: Some(uplink),
                prefix,
            });
            prefixes.sort_by_key(|p| p.uplink.map(|u| u.0));
        }
        self.burst_left = FAST_ADVERTS;
        self.next_advert = self.next_advert.min(self.earliest(now));
    }

    /// The LAN prefixes withdrawn and still advertised with lifetimes 0.
    pub fn withdrawn(&self) -> impl Iterator<Item = LanPrefix> + '_ {
        self.withdrawn.iter().map(|(p, _)| *p)
    }

    /// The earliest a multicast RA may go out: now, or 3 s after the last one.
    fn earliest(&self, now: Instant) -> Instant {
        self.last_advert
            .map_or(now, |last| (last + MIN_DELAY_BETWEEN_RAS).max(now))
    }

    /// An IPv6 frame (vnet header, Ethernet, IPv6) that arrived on the LAN: a valid router
    /// solicitation (RFC 4861 §6.1.1) brings the next RA forward to within 500 ms. Anything
    /// else is ignored; returns whether it was a solicitation.
    pub fn handle_frame(&mut self, frame: &[u8], now: Instant) -> bool {
        let Ok(ip) = Ipv6Packet::new_checked(frame.get(IP_OFFSET..).unwrap_or(&[])) else {
            return false;
        };
        let Ok(nd) = NdPacket::parse(&ip) else {
            return false;
        };
        if nd.message != Message::RouterSolicit
            || (nd.src.is_unspecified() && nd.link_addr().is_some())
        {
            return false;
        }
        if !self.started {
            // Answered by the first RA, which goes out as soon as the router may send.
            return true;
        }
        let answer =
            (now + between(&mut self.jitter, Duration::ZERO, MAX_RA_DELAY)).max(self.earliest(now));
        self.next_advert = self.next_advert.min(answer);
        true
    }

    /// Sends the RA that is due, and schedules the next.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.started || now < self.next_advert {
            return;
        }
        self.withdrawn.retain(|&(_, until)| until > now);
        self.advertise();
        self.last_advert = Some(now);
        let p = &self.config.params;
        let random = between(&mut self.jitter, p.min_interval, p.max_interval);
        let interval = if self.burst_left > 1 {
            MIN_DELAY_BETWEEN_RAS
        } else if self.initial_left > 1 {
            random.min(MAX_INITIAL_INTERVAL)
        } else {
            random
        };
        self.burst_left = self.burst_left.saturating_sub(1);
        self.initial_left = self.initial_left.saturating_sub(1);
        self.next_advert = now + interval.max(MIN_DELAY_BETWEEN_RAS);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.started.then_some(self.next_advert)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// What the RA says now: the fixed fields and the lifetimes of each prefix.
    pub fn advert(&self) -> (RouterAdvert, Vec<PrefixInfo>) {
        let p = &self.config.params;
        let router_lifetime = if self.up.is_empty() {
            0
        } else {
            u16::try_from(p.router_lifetime.as_secs()).unwrap_or(u16::MAX)
        };
        let ra = RouterAdvert {
            cur_hop_limit: 64,
            managed: false,
            other: false,
            router_lifetime,
            reachable_time: 0,
            retrans_timer: 0,
        };
        let prefixes = self
            .config
            .prefixes
            .iter()
            .map(|lp| PrefixInfo {
                prefix: lp.prefix.network().addr(),
                prefix_len: lp.prefix.prefix_len(),
                on_link: true,
                autonomous: true,
                valid_lifetime: p.valid_lifetime,
                preferred_lifetime: if lp
                    .uplink
                    .map_or(!self.up.is_empty(), |u| self.up.contains(&u))
                {
                    p.preferred_lifetime.min(p.valid_lifetime)
                } else {
                    0
                },
            })
            .chain(self.withdrawn.iter().map(|(w, _)| PrefixInfo {
                prefix: w.prefix.network().addr(),
                prefix_len: w.prefix.prefix_len(),
                on_link: true,
                autonomous: true,
                valid_lifetime: 0,
                preferred_lifetime: 0,
            }))
            .collect();
        (ra, prefixes)
    }

    fn advertise(&mut self) {
        let (ra, prefixes) = self.advert();
        let p = &self.config.params;
        let dns: Vec<u8> = self.config.dns.iter().flat_map(|d| d.octets()).collect();
        // RFC 8106 §5.1: at least 3 × MaxRtrAdvInterval, so one lost RA does not drop it.
        let dns_lifetime = u32::try_from(p.max_interval.as_secs() * 3).unwrap_or(u32::MAX);
        let mut options = vec![NdOption::SourceLinkAddr(self.config.lan_mac)];
        options.extend(p.mtu.map(NdOption::Mtu));
        options.extend(prefixes.into_iter().map(NdOption::PrefixInfo));
        if !dns.is_empty() {
            options.push(NdOption::Rdnss(Rdnss {
                lifetime: dns_lifetime,
                servers: &dns,
            }));
        }
        let repr = NdRepr {
            src: self.source(),
            dst: ndisc::ALL_NODES,
            message: Message::RouterAdvert(ra),
            options: &options,
        };
        let pios = self.config.prefixes.len() + self.withdrawn.len();
        let capacity = ipv6::HEADER_LEN + 16 + 8 + 8 + 32 * pios + 8 + dns.len();
        if let Some(t) = Transmit::ipv6(
            Iface::Lan,
            self.config.lan_mac,
            ndisc::multicast_mac(ndisc::ALL_NODES),
            capacity,
            |buf| ndisc::build(buf, &repr).ok(),
        ) {
            self.transmits.push_back(t);
        }
    }
}

#[cfg(test)]
mod tests;
