//! The LAN's DHCP server (SPEC 27), I/O-free.
//!
//! Input: a DHCP payload received on UDP port 67 with the Ethernet source MAC it came from
//! (`handle_packet`), ARP seen on the LAN (`handle_arp`), and the time (`handle_timeout`).
//! Output (`poll_output`): replies with their destination MAC and IP, and ARP probes the loop
//! sends for the conflict check before an address is offered. Every dropped request is
//! counted by reason.
//!
//! An address is in one of three states for a client: being probed (reserved while the ARP
//! probe runs), offered (held `OFFER_HOLD` for the client's REQUEST) or bound (until the lease
//! expires). Offers, probes and leases together are bounded in total (`max_leases`) and per
//! Ethernet source MAC (`max_per_mac`), so a flood of DISCOVERs from one MAC cannot empty the
//! pool and one from many MACs cannot grow the state past the bound.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Encodable, HType, Message, MessageType, Opcode, OptionCode};

use super::{WireError, decode, netmask};
use crate::clock::Instant;
use crate::config::DhcpServerConfig;
use crate::prefix::Ipv4Prefix;
use crate::wire::ethernet::MacAddr;

mod counters;
mod reply;

pub use counters::{Drop, ServerCounters};

/// How long an offered address waits for the client's REQUEST.
pub const OFFER_HOLD: Duration = Duration::from_secs(30);
/// How long the conflict check waits for an ARP answer before offering.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long an address that answered a probe or was declined stays out of the pool.
pub const QUARANTINE: Duration = Duration::from_secs(600);
/// Candidates tried for one DISCOVER before giving up (each found in use by ARP).
const PROBE_ATTEMPTS: u8 = 3;
/// Longest hostname kept from option 12.
const MAX_HOSTNAME: usize = 63;

/// Who a lease belongs to: the client identifier (option 61) when sent, else the hardware
/// type and address, which is how RFC 2132 9.14 forms a client identifier from chaddr.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub Vec<u8>);

impl ClientId {
    fn of(msg: &Message, chaddr: MacAddr) -> ClientId {
        match msg.opts().get(OptionCode::ClientIdentifier) {
            Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => ClientId(id.clone()),
            _ => ClientId::from_mac(chaddr),
        }
    }

    pub fn from_mac(mac: MacAddr) -> ClientId {
        let mut id = vec![1];
        id.extend_from_slice(&mac.0);
        ClientId(id)
    }
}

/// A datagram for a client: the loop sends `payload` from the router's LAN address port 67 to
/// `dst_ip` port 68 in a frame to `dst_mac`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub payload: Vec<u8>,
    pub dst_mac: MacAddr,
    pub dst_ip: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Reply(Reply),
    /// Send an ARP probe (sender address 0.0.0.0) for `target` on the LAN and report what
    /// answers through `handle_arp`.
    ArpProbe {
        target: Ipv4Addr,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    Probing,
    Offered,
    Bound,
}

#[derive(Debug, Clone)]
struct Binding {
    client: ClientId,
    ip: Ipv4Addr,
    chaddr: MacAddr,
    /// Ethernet source of the request, which the per-MAC bound counts.
    src_mac: MacAddr,
    hostname: Option<String>,
    state: LeaseState,
    /// When the offer, probe or lease ends.
    until: Instant,
}

/// A DISCOVER waiting for the ARP probe of its candidate address.
#[derive(Debug, Clone)]
struct Probe {
    request: Message,
    attempts: u8,
}

/// A lease as shown and as stored in the lease file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub client: ClientId,
    pub hostname: Option<String>,
    pub state: LeaseState,
    pub expires: Instant,
}

pub struct Server {
    cfg: DhcpServerConfig,
    /// The router's LAN address and prefix; the server identifier.
    lan: Ipv4Prefix,
    bindings: HashMap<Ipv4Addr, Binding>,
    by_client: HashMap<ClientId, Ipv4Addr>,
    per_mac: HashMap<MacAddr, usize>,
    probes: HashMap<Ipv4Addr, Probe>,
    /// Addresses found in use or declined, and until when they stay out of the pool.
    quarantine: HashMap<Ipv4Addr, Instant>,
    out: VecDeque<Output>,
    counters: ServerCounters,
    /// Set when bound leases changed since `take_changed`, so the loop rewrites the file.
    changed: bool,
}

impl Server {
    pub fn new(cfg: DhcpServerConfig, lan: Ipv4Prefix) -> Server {
        Server {
            cfg,
            lan,
            bindings: HashMap::new(),
            by_client: HashMap::new(),
            per_mac: HashMap::new(),
            probes: HashMap::new(),
            quarantine: HashMap::new(),
            out: VecDeque::new(),
            counters: ServerCounters::default(),
            changed: false,
        }
    }

    pub fn counters(&self) -> &ServerCounters {
        &self.counters
    }

    /// True once after bound leases changed (bound, renewed, released, expired).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Leases from the lease file. Returns those not taken back: expired, outside the pools
    /// now, or clashing with a static lease or an earlier record.
    pub fn restore(&mut self, leases: Vec<Lease>, now: Instant) -> Vec<Lease> {
        let mut rejected = Vec::new();
        for lease in leases {
            let fits = lease.expires > now
                && self.bindings.len() < self.cfg.max_leases
                && !self.bindings.contains_key(&lease.ip)
                && !self.by_client.contains_key(&lease.client)
                && match self.static_for(lease.mac) {
                    Some(ip) => ip == lease.ip,
                    None => self.assignable(lease.ip, now),
                };
            if !fits {
                rejected.push(lease);
                continue;
            }
            self.insert(Binding {
                client: lease.client,
                ip: lease.ip,
                chaddr: lease.mac,
                src_mac: lease.mac,
                hostname: lease.hostname,
                state: LeaseState::Bound,
                until: lease.expires,
            });
        }
        rejected
    }

    /// Every offer, probe and lease, ordered by address.
    pub fn leases(&self) -> Vec<Lease> {
        let mut v: Vec<Lease> = self
            .bindings
            .values()
            .map(|b| Lease {
                ip: b.ip,
                mac: b.chaddr,
                client: b.client.clone(),
                hostname: b.hostname.clone(),
                state: b.state,
                expires: b.until,
            })
            .collect();
        v.sort_by_key(|l| l.ip);
        v
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next offer, probe or lease deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let b = self.bindings.values().map(|b| b.until);
        let q = self.quarantine.values().copied();
        b.chain(q).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<Ipv4Addr> = self
            .bindings
            .values()
            .filter(|b| b.until <= now)
            .map(|b| b.ip)
            .collect();
        for ip in due {
            if let Some(probe) = self.probes.remove(&ip) {
                // Nothing answered the probe: the address is free.
                let Some(b) = self.bindings.get_mut(&ip) else {
                    continue;
                };
                b.state = LeaseState::Offered;
                b.until = now + OFFER_HOLD;
                let req = probe.request;
                self.send(&req, MessageType::Offer, ip, Some(self.cfg.lease_time));
                self.counters.offers += 1;
            } else if let Some(b) = self.remove(ip)
                && b.state == LeaseState::Bound
            {
                self.counters.expired += 1;
                self.changed = true;
            }
        }
        self.quarantine.retain(|_, until| *until > now);
    }

    /// ARP from the LAN claiming `ip` for `mac` (a reply to a probe, or any request's sender):
    /// an address being probed for someone else is in use.
    pub fn handle_arp(&mut self, ip: Ipv4Addr, mac: MacAddr, now: Instant) {
        let Some(probe) = self.probes.remove(&ip) else {
            return;
        };
        let Some(b) = self.remove(ip) else {
            return;
        };
        if b.chaddr == mac {
            // The client itself still uses the address (INIT-REBOOT after a lost lease).
            self.insert(b);
            self.probes.insert(ip, probe);
            return;
        }
        self.counters.conflicts += 1;
        self.quarantine(ip, now);
        if probe.attempts < PROBE_ATTEMPTS {
            self.offer(probe.request, b.chaddr, b.src_mac, probe.attempts + 1, now);
        } else {
            self.drop_request(Drop::PoolExhausted);
        }
    }

    /// A DHCP payload from UDP port 68 to port 67 on the LAN, sent from `src_mac`.
    pub fn handle_packet(&mut self, payload: &[u8], src_mac: MacAddr, now: Instant) {
        self.handle_timeout(now);
        self.counters.received += 1;
        let (msg, chaddr) = match decode(payload, Opcode::BootRequest) {
            Ok(m) => m,
            Err(e) => return self.drop_request(e.into()),
        };
        if !msg.giaddr().is_unspecified() {
            return self.drop_request(Drop::Relayed);
        }
        match msg.opts().msg_type() {
            Some(MessageType::Discover) => self.discover(msg, chaddr, src_mac, now),
            Some(MessageType::Request) => self.request(msg, chaddr, src_mac, now),
            Some(MessageType::Decline) => self.decline(msg, chaddr, now),
            Some(MessageType::Release) => self.release(msg, chaddr),
            Some(MessageType::Inform) => self.inform(msg, chaddr),
            _ => self.drop_request(Drop::UnexpectedType),
        }
    }

    fn drop_request(&mut self, reason: Drop) {
        self.counters.dropped[reason as usize] += 1;
    }

    fn discover(&mut self, msg: Message, chaddr: MacAddr, src_mac: MacAddr, now: Instant) {
        let client = ClientId::of(&msg, chaddr);
        if let Some(&ip) = self.by_client.get(&client) {
            let b = &self.bindings[&ip];
            match b.state {
                // The probe is running; its timeout sends the offer.
                LeaseState::Probing => {}
                LeaseState::Offered | LeaseState::Bound => {
                    if b.state == LeaseState::Offered {
                        self.bindings.get_mut(&ip).expect("indexed").until = now + OFFER_HOLD;
                    }
                    self.send(&msg, MessageType::Offer, ip, Some(self.cfg.lease_time));
                    self.counters.offers += 1;
                }
            }
            return;
        }
        self.offer(msg, chaddr, src_mac, 0, now);
    }

    /// Picks an address for a new client and probes it, or offers a static one at once.
    fn offer(&mut self, msg: Message, chaddr: MacAddr, src_mac: MacAddr, tries: u8, now: Instant) {
        if let Some(reason) = self.over_bounds(src_mac) {
            return self.drop_request(reason);
        }
        let client = ClientId::of(&msg, chaddr);
        let hostname = hostname(&msg);
        if let Some(ip) = self.static_for(chaddr) {
            if self.bindings.contains_key(&ip) {
                return self.drop_request(Drop::AddressTaken);
            }
            self.insert(Binding {
                client,
                ip,
                chaddr,
                src_mac,
                hostname,
                state: LeaseState::Offered,
                until: now + OFFER_HOLD,
            });
            self.send(&msg, MessageType::Offer, ip, Some(self.cfg.lease_time));
            self.counters.offers += 1;
            return;
        }
        let requested = requested_ip(&msg).filter(|&ip| self.assignable(ip, now));
        let Some(ip) = requested.or_else(|| self.free_address(now)) else {
            return self.drop_request(Drop::PoolExhausted);
        };
        self.insert(Binding {
            client,
            ip,
            chaddr,
            src_mac,
            hostname,
            state: LeaseState::Probing,
            until: now + PROBE_TIMEOUT,
        });
        self.probes.insert(
            ip,
            Probe {
                request: msg,
                attempts: tries,
            },
        );
        self.counters.probes += 1;
        self.out.push_back(Output::ArpProbe { target: ip });
    }

    fn over_bounds(&self, src_mac: MacAddr) -> Option<Drop> {
        if self.per_mac.get(&src_mac).copied().unwrap_or(0) >= self.cfg.max_per_mac {
            Some(Drop::PerMacLimit)
        } else if self.bindings.len() >= self.cfg.max_leases {
            Some(Drop::TotalLimit)
        } else {
            None
        }
    }

    /// RFC 2131 4.3.2: SELECTING (server id), INIT-REBOOT (requested address), RENEWING and
    /// REBINDING (ciaddr).
    fn request(&mut self, msg: Message, chaddr: MacAddr, src_mac: MacAddr, now: Instant) {
        let client = ClientId::of(&msg, chaddr);
        let held = self.by_client.get(&client).copied();
        if let Some(server) = server_id(&msg) {
            if server != self.lan.addr() {
                // The client took another server's offer: ours is free again.
                if let Some(ip) = held.filter(|ip| self.bindings[ip].state != LeaseState::Bound) {
                    self.remove(ip);
                }
                return self.drop_request(Drop::NotForUs);
            }
            let wanted = requested_ip(&msg).unwrap_or(msg.ciaddr());
            return match held {
                Some(ip) if ip == wanted && self.bindings[&ip].state != LeaseState::Probing => {
                    self.bind(&msg, ip, now)
                }
                _ => self.nak(&msg, Drop::WrongAddress),
            };
        }
        let wanted = if msg.ciaddr().is_unspecified() {
            match requested_ip(&msg) {
                Some(ip) => ip,
                None => return self.drop_request(Drop::Malformed),
            }
        } else {
            msg.ciaddr()
        };
        if held == Some(wanted) {
            return self.bind(&msg, wanted, now);
        }
        if self.bindings.contains_key(&wanted) {
            return self.nak(&msg, Drop::AddressTaken);
        }
        let allowed = match self.static_for(chaddr) {
            Some(ip) => ip == wanted,
            None => self.assignable(wanted, now),
        };
        if !allowed {
            return self.nak(&msg, Drop::WrongAddress);
        }
        // Authoritative for the LAN: a client whose lease we do not know (it expired, or the
        // file was removed) keeps its address if nobody else has it.
        if let Some(ip) = held {
            self.remove(ip);
        }
        if let Some(reason) = self.over_bounds(src_mac) {
            return self.drop_request(reason);
        }
        self.insert(Binding {
            client,
            ip: wanted,
            chaddr,
            src_mac,
            hostname: hostname(&msg),
            state: LeaseState::Offered,
            until: now,
        });
        self.bind(&msg, wanted, now);
    }

    fn bind(&mut self, msg: &Message, ip: Ipv4Addr, now: Instant) {
        let lease_time = self.cfg.lease_time;
        let b = self
            .bindings
            .get_mut(&ip)
            .expect("bound address is indexed");
        b.state = LeaseState::Bound;
        b.until = now + lease_time;
        if let Some(h) = hostname(msg) {
            b.hostname = Some(h);
        }
        self.changed = true;
        self.counters.acks += 1;
        self.send(msg, MessageType::Ack, ip, Some(lease_time));
    }

    fn nak(&mut self, msg: &Message, reason: Drop) {
        self.drop_request(reason);
        self.counters.naks += 1;
        self.send(msg, MessageType::Nak, Ipv4Addr::UNSPECIFIED, None);
    }

    fn decline(&mut self, msg: Message, chaddr: MacAddr, now: Instant) {
        let client = ClientId::of(&msg, chaddr);
        let ip = requested_ip(&msg);
        match ip.filter(|ip| self.by_client.get(&client) == Some(ip)) {
            Some(ip) => {
                let was_bound = self
                    .remove(ip)
                    .is_some_and(|b| b.state == LeaseState::Bound);
                self.changed |= was_bound;
                self.quarantine(ip, now);
                self.counters.declines += 1;
            }
            None => self.drop_request(Drop::NotHeld),
        }
    }

    fn release(&mut self, msg: Message, chaddr: MacAddr) {
        let client = ClientId::of(&msg, chaddr);
        if self.by_client.get(&client) == Some(&msg.ciaddr()) {
            self.remove(msg.ciaddr());
            self.changed = true;
            self.counters.releases += 1;
        } else {
            self.drop_request(Drop::NotHeld);
        }
    }

    fn inform(&mut self, msg: Message, _chaddr: MacAddr) {
        if msg.ciaddr().is_unspecified() || !self.lan.contains(msg.ciaddr()) {
            return self.drop_request(Drop::WrongAddress);
        }
        self.counters.informs += 1;
        self.send(&msg, MessageType::Ack, Ipv4Addr::UNSPECIFIED, None);
    }

    fn quarantine(&mut self, ip: Ipv4Addr, now: Instant) {
        if self.quarantine.len() < self.cfg.max_leases {
            self.quarantine.insert(ip, now + QUARANTINE);
        }
    }

    fn insert(&mut self, b: Binding) {
        *self.per_mac.entry(b.src_mac).or_default() += 1;
        self.by_client.insert(b.client.clone(), b.ip);
        self.bindings.insert(b.ip, b);
    }

    fn remove(&mut self, ip: Ipv4Addr) -> Option<Binding> {
        let b = self.bindings.remove(&ip)?;
        self.probes.remove(&ip);
        self.by_client.remove(&b.client);
        if let Entry::Occupied(mut e) = self.per_mac.entry(b.src_mac) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
        Some(b)
    }

    fn static_for(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.cfg
            .static_leases
            .iter()
            .find(|s| s.mac == mac)
            .map(|s| s.address)
    }

    /// True when `ip` may be given dynamically now: in a pool, not excluded, not static, not
    /// the router's, not held or quarantined.
    fn assignable(&self, ip: Ipv4Addr, now: Instant) -> bool {
        self.cfg.pools.iter().any(|p| p.contains(ip))
            && !self.cfg.exclude.iter().any(|r| r.contains(ip))
            && !self.cfg.static_leases.iter().any(|s| s.address == ip)
            && ip != self.lan.addr()
            && ip != self.lan.network().addr()
            && ip != self.lan.broadcast()
            && !self.bindings.contains_key(&ip)
            && self.quarantine.get(&ip).is_none_or(|&t| t <= now)
    }

    /// The lowest assignable address. Excluded ranges are skipped whole, so the scan visits at
    /// most the held, quarantined and static addresses before it finds one.
    fn free_address(&self, now: Instant) -> Option<Ipv4Addr> {
        for pool in &self.cfg.pools {
            let mut ip = u32::from(pool.first);
            let last = u32::from(pool.last);
            while ip <= last {
                let addr = Ipv4Addr::from(ip);
                if let Some(r) = self.cfg.exclude.iter().find(|r| r.contains(addr)) {
                    ip = u32::from(r.last).checked_add(1)?;
                    continue;
                }
                if self.assignable(addr, now) {
                    return Some(addr);
                }
                ip = ip.checked_add(1)?;
            }
        }
        None
    }
}

fn requested_ip(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    }
}

fn server_id(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

/// Option 12 if it is a plausible host name (kept for `show dhcp leases` and the lease file,
/// so it must not carry spaces or control characters).
fn hostname(msg: &Message) -> Option<String> {
    match msg.opts().get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h))
            if !h.is_empty()
                && h.len() <= MAX_HOSTNAME
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
        {
            Some(h.clone())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
