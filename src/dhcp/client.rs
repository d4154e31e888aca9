//! The DHCP client of an uplink (SPEC 28), I/O-free, with the RFC 2131 state machine:
//! INIT → SELECTING → REQUESTING → BOUND → RENEWING (T1) → REBINDING (T2) → lease lost at
//! expiry, back to INIT. A NAK in any state goes back to INIT.
//!
//! Input: DHCP payloads received on UDP port 68 of the uplink (`handle_packet`) and the time
//! (`handle_timeout`). Output: datagrams to send (`poll_transmit`: payload, source address,
//! destination address, broadcast or the server's) and lease events (`poll_event`: bound,
//! renewed, rebinding, lost), which the control thread turns into the uplink's address, next hop and
//! default route. Retransmissions back off 4, 8, ... 64 s with ±1 s of jitter drawn from a
//! seeded generator, so tests replay exactly (RFC 2131 4.1). While renewing or rebinding, the
//! client retransmits after half the time left to T2 or to expiry, at least 60 s (RFC 2131
//! 4.4.5). INIT-REBOOT and the ARP check of the offered address are not done.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Encodable, Flags, HType, Message, MessageType, Opcode, OptionCode};

use super::{WireError, decode, mask_len};
use crate::clock::Instant;
use crate::config::ClientRoute;
use crate::prefix::Ipv4Prefix;
use crate::rng::SplitMix;
use crate::wire::ethernet::MacAddr;

/// First retransmission delay, doubled up to `MAX_BACKOFF` (RFC 2131 4.1).
const FIRST_BACKOFF: Duration = Duration::from_secs(4);
const MAX_BACKOFF: Duration = Duration::from_secs(64);
/// REQUESTs sent for one offer before starting over.
const REQUEST_ATTEMPTS: u32 = 4;
/// Shortest retransmission interval while renewing or rebinding (RFC 2131 4.4.5).
const MIN_RENEW_RETRY: Duration = Duration::from_secs(60);
/// Wait before the first DISCOVER and after a NAK (RFC 2131 suggests 1 to 10 s; an uplink
/// without an address is an outage, so it is short).
const INIT_DELAY: Duration = Duration::from_millis(500);

/// What the client sends about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub mac: MacAddr,
    /// Option 61; hardware type 1 and the MAC unless set.
    pub client_id: Option<Vec<u8>>,
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 60.
    pub vendor_class: Option<String>,
}

/// An address lease and what came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address with the prefix length of the subnet mask.
    pub address: Ipv4Prefix,
    /// Default gateway: the 0.0.0.0/0 entry of option 121 when sent (RFC 3442), else the first
    /// router of option 3.
    pub router: Option<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub mtu: Option<u16>,
    /// Option 121 without its default route.
    pub routes: Vec<ClientRoute>,
    pub server: Ipv4Addr,
    pub lease_time: Duration,
    pub t1: Duration,
    pub t2: Duration,
    /// When the REQUEST that got this lease was first sent; the timers count from it
    /// (RFC 2131 4.4.1).
    pub acquired: Instant,
}

impl Lease {
    pub fn renew_at(&self) -> Instant {
        self.acquired + self.t1
    }

    pub fn rebind_at(&self) -> Instant {
        self.acquired + self.t2
    }

    pub fn expires_at(&self) -> Instant {
        self.acquired + self.lease_time
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Bound(Lease),
    /// The same address again, with timers (and maybe parameters) renewed.
    Renewed(Lease),
    /// T2 passed without an answer from `server`: the address is still ours, and the
    /// REQUESTs now go to any server (broadcast) until expiry.
    Rebinding {
        address: Ipv4Prefix,
        server: Ipv4Addr,
    },
    /// The address is no longer ours (NAK or expiry).
    Lost {
        address: Ipv4Prefix,
    },
}

/// A datagram from port 68 to port 67. `dst` is 255.255.255.255 (to the Ethernet broadcast)
/// or the server's address while renewing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub payload: Vec<u8>,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Init,
    Selecting,
    Requesting,
    Bound,
    Renewing,
    Rebinding,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "init",
            State::Selecting => "selecting",
            State::Requesting => "requesting",
            State::Bound => "bound",
            State::Renewing => "renewing",
            State::Rebinding => "rebinding",
        }
    }
}

/// What the client sent and received; `malformed`, `not_ours` (another transaction or client,
/// or a type the state does not expect) and `unusable` (no server identifier, an unusable
/// address, no lease time) count ignored payloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCounters {
    pub discovers: u64,
    pub requests: u64,
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    pub malformed: u64,
    pub not_ours: u64,
    pub unusable: u64,
}

/// An OFFER the client is requesting.
#[derive(Debug, Clone)]
struct Offer {
    address: Ipv4Addr,
    server: Ipv4Addr,
}

pub struct Client {
    opts: ClientOptions,
    state: State,
    xid: u32,
    /// When the current exchange began (the `secs` field).
    started: Instant,
    /// When its first REQUEST was sent: the start of the lease it gets.
    requested: Instant,
    attempts: u32,
    timer: Option<Instant>,
    offer: Option<Offer>,
    lease: Option<Lease>,
    rng: SplitMix,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: ClientCounters,
}

impl Client {
    /// A client in INIT that sends its first DISCOVER shortly after `now`.
    pub fn new(opts: ClientOptions, seed: u64, now: Instant) -> Client {
        let mut c = Client {
            opts,
            state: State::Init,
            xid: 0,
            started: now,
            requested: now,
            attempts: 0,
            timer: None,
            offer: None,
            lease: None,
            rng: SplitMix::new(seed),
            out: VecDeque::new(),
            events: VecDeque::new(),
            counters: ClientCounters::default(),
        };
        c.timer = Some(now + c.jitter(INIT_DELAY));
        c
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer.is_none_or(|t| t > now) {
            return;
        }
        match self.state {
            State::Init => self.start_selecting(now),
            State::Selecting => {
                self.send_discover(now);
                self.backoff(now);
            }
            State::Requesting if self.attempts >= REQUEST_ATTEMPTS => self.restart(now),
            State::Requesting => {
                self.send_request(now);
                self.backoff(now);
            }
            State::Bound | State::Renewing | State::Rebinding => self.lease_timer(now),
        }
    }

    /// BOUND/RENEWING/REBINDING: the timer is T1, T2, expiry or a retransmission.
    fn lease_timer(&mut self, now: Instant) {
        let Some(lease) = self.lease.clone() else {
            return self.restart(now);
        };
        if now >= lease.expires_at() {
            self.events.push_back(Event::Lost {
                address: lease.address,
            });
            self.lease = None;
            return self.restart(now);
        }
        if now >= lease.rebind_at() {
            if self.state != State::Rebinding {
                self.state = State::Rebinding;
                self.new_exchange(now);
                self.events.push_back(Event::Rebinding {
                    address: lease.address,
                    server: lease.server,
                });
            }
            self.send_request(now);
            self.timer = Some(retry_before(now, lease.expires_at()));
        } else if now >= lease.renew_at() {
            if self.state != State::Renewing {
                self.state = State::Renewing;
                self.new_exchange(now);
            }
            self.send_request(now);
            self.timer = Some(retry_before(now, lease.rebind_at()));
        } else {
            self.timer = Some(lease.renew_at());
        }
    }

    /// A DHCP payload received on the uplink's port 68.
    pub fn handle_packet(&mut self, payload: &[u8], now: Instant) {
        let msg = match decode(payload, Opcode::BootReply) {
            Ok((msg, chaddr)) if msg.xid() == self.xid && chaddr == self.opts.mac => msg,
            Ok(_) => return self.counters.not_ours += 1,
            Err(WireError::WrongDirection) => return self.counters.not_ours += 1,
            Err(_) => return self.counters.malformed += 1,
        };
        let kind = msg.opts().msg_type();
        let server = match msg.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => *ip,
            _ => return self.counters.unusable += 1,
        };
        match (self.state, kind) {
            (State::Selecting, Some(MessageType::Offer)) => {
                if !usable(msg.yiaddr()) {
                    return self.counters.unusable += 1;
                }
                self.counters.offers += 1;
                self.offer = Some(Offer {
                    address: msg.yiaddr(),
                    server,
                });
                self.state = State::Requesting;
                self.attempts = 0;
                self.requested = now;
                self.send_request(now);
                self.backoff(now);
            }
            (State::Requesting | State::Renewing | State::Rebinding, Some(MessageType::Ack)) => {
                match self.lease_from(&msg, server) {
                    Some(lease) => self.bind(lease, now),
                    None => self.counters.unusable += 1,
                }
            }
            (State::Requesting | State::Renewing | State::Rebinding, Some(MessageType::Nak)) => {
                if self.state == State::Requesting
                    && self.offer.as_ref().is_some_and(|o| o.server != server)
                {
                    return self.counters.not_ours += 1;
                }
                self.counters.naks += 1;
                if let Some(lease) = self.lease.take() {
                    self.events.push_back(Event::Lost {
                        address: lease.address,
                    });
                }
                self.state = State::Init;
                self.timer = Some(now + self.jitter(INIT_DELAY));
            }
            _ => self.counters.not_ours += 1,
        }
    }

    fn bind(&mut self, lease: Lease, now: Instant) {
        self.counters.acks += 1;
        let event = match self.lease.take() {
            Some(old) if old.address == lease.address => Event::Renewed(lease.clone()),
            Some(old) => {
                self.events.push_back(Event::Lost {
                    address: old.address,
                });
                Event::Bound(lease.clone())
            }
            None => Event::Bound(lease.clone()),
        };
        self.events.push_back(event);
        self.timer = Some(lease.renew_at().max(now));
        self.lease = Some(lease);
        self.offer = None;
        self.state = State::Bound;
    }

    fn lease_from(&self, msg: &Message, server: Ipv4Addr) -> Option<Lease> {
        let address = msg.yiaddr();
        if !usable(address) {
            return None;
        }
        let o = msg.opts();
        let lease_secs = match o.get(OptionCode::AddressLeaseTime) {
            Some(DhcpOption::AddressLeaseTime(s)) if *s > 0 => *s,
            _ => return None,
        };
        let lease_time = Duration::from_secs(lease_secs.into());
        let secs = |code, default: Duration| match o.get(code) {
            Some(DhcpOption::Renewal(s) | DhcpOption::Rebinding(s)) => {
                Duration::from_secs((*s).into())
            }
            _ => default,
        };
        let mut t1 = secs(OptionCode::Renewal, lease_time / 2);
        let mut t2 = secs(OptionCode::Rebinding, lease_time / 8 * 7);
        if !(t1 <= t2 && t2 <= lease_time) {
            t1 = lease_time / 2;
            t2 = lease_time / 8 * 7;
        }
        let len = match o.get(OptionCode::SubnetMask) {
            Some(DhcpOption::SubnetMask(m)) => mask_len(*m)?,
            _ => natural_len(address),
        };
        let address = Ipv4Prefix::new(address, len).ok()?;
        let mut router = match o.get(OptionCode::Router) {
            Some(DhcpOption::Router(r)) => r.first().copied(),
            _ => None,
        };
        let mut routes = Vec::new();
        if let Some(DhcpOption::ClasslessStaticRoute(list)) =
            o.get(OptionCode::ClasslessStaticRoute)
        {
            router = None;
            for (net, gw) in list {
                if net.prefix_len() == 0 {
                    router = Some(*gw);
                } else if let Ok(prefix) = Ipv4Prefix::new(net.network(), net.prefix_len()) {
                    routes.push(ClientRoute {
                        prefix,
                        next_hop: *gw,
                    });
                }
            }
        }
        Some(Lease {
            address,
            router,
            dns_servers: match o.get(OptionCode::DomainNameServer) {
                Some(DhcpOption::DomainNameServer(d)) => d.clone(),
                _ => Vec::new(),
            },
            mtu: match o.get(OptionCode::InterfaceMtu) {
                Some(DhcpOption::InterfaceMtu(m)) => Some(*m),
                _ => None,
            },
            routes,
            server,
            lease_time,
            t1,
            t2,
            acquired: self.requested,
        })
    }

    fn restart(&mut self, now: Instant) {
        self.state = State::Init;
        self.offer = None;
        self.start_selecting(now);
    }

    fn start_selecting(&mut self, now: Instant) {
        self.state = State::Selecting;
        self.new_exchange(now);
        self.send_discover(now);
        self.backoff(now);
    }

    fn new_exchange(&mut self, now: Instant) {
        self.xid = self.next_random() as u32;
        self.started = now;
        self.requested = now;
        self.attempts = 0;
    }

    /// Schedules the next retransmission: 4 s doubling to 64 s, ±1 s.
    fn backoff(&mut self, now: Instant) {
        let base = FIRST_BACKOFF
            .saturating_mul(1 << self.attempts.min(8))
            .min(MAX_BACKOFF);
        self.attempts += 1;
        let wait = (base - Duration::from_secs(1)) + self.jitter(Duration::from_secs(2));
        self.timer = Some(now + wait);
    }

    /// A uniformly random duration in [0, max).
    fn jitter(&mut self, max: Duration) -> Duration {
        let ms = max.as_millis().max(1) as u64;
        Duration::from_millis(self.next_random() % ms)
    }

    fn next_random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn message(&self, kind: MessageType, ciaddr: Ipv4Addr, now: Instant) -> Message {
        let mut m = Message::new_with_id(
            self.xid,
            ciaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &self.opts.mac.0,
        );
        let secs = u16::try_from(now.saturating_since(self.started).as_secs()).unwrap_or(u16::MAX);
        // Without an address the client cannot take unicast replies (the router only accepts
        // frames for its own addresses): ask for broadcast ones (RFC 2131 4.1).
        let flags = if ciaddr.is_unspecified() {
            Flags::default().set_broadcast()
        } else {
            Flags::default()
        };
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_secs(secs)
            .set_flags(flags);
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        let id = self.opts.client_id.clone().unwrap_or_else(|| {
            let mut id = vec![1];
            id.extend_from_slice(&self.opts.mac.0);
            id
        });
        o.insert(DhcpOption::ClientIdentifier(id));
        if let Some(h) = &self.opts.hostname {
            o.insert(DhcpOption::Hostname(h.clone()));
        }
        if let Some(v) = &self.opts.vendor_class {
            o.insert(DhcpOption::ClassIdentifier(v.as_bytes().to_vec()));
        }
        o.insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::InterfaceMtu,
            OptionCode::ClasslessStaticRoute,
            OptionCode::AddressLeaseTime,
            OptionCode::Renewal,
            OptionCode::Rebinding,
        ]));
        m
    }

    fn send_discover(&mut self, now: Instant) {
        let m = self.message(MessageType::Discover, Ipv4Addr::UNSPECIFIED, now);
        self.counters.discovers += 1;
        self.queue(m, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
    }

    /// REQUEST as RFC 2131 4.3.2 wants it in each state.
    fn send_request(&mut self, now: Instant) {
        let (ciaddr, dst) = match (self.state, &self.lease) {
            (State::Renewing, Some(l)) => (l.address.addr(), l.server),
            (State::Rebinding, Some(l)) => (l.address.addr(), Ipv4Addr::BROADCAST),
            _ => (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST),
        };
        let mut m = self.message(MessageType::Request, ciaddr, now);
        if self.state == State::Requesting {
            let Some(offer) = &self.offer else {
                return;
            };
            m.opts_mut()
                .insert(DhcpOption::RequestedIpAddress(offer.address));
            m.opts_mut()
                .insert(DhcpOption::ServerIdentifier(offer.server));
        }
        self.counters.requests += 1;
        self.queue(m, ciaddr, dst);
    }

    fn queue(&mut self, m: Message, src: Ipv4Addr, dst: Ipv4Addr) {
        if let Ok(payload) = m.to_vec() {
            self.out.push_back(Transmit { payload, src, dst });
        }
    }
}

/// Half the time left to `deadline`, at least `MIN_RENEW_RETRY`, never past `deadline`.
fn retry_before(now: Instant, deadline: Instant) -> Instant {
    let half = deadline.saturating_since(now) / 2;
    (now + half.max(MIN_RENEW_RETRY)).min(deadline)
}

/// An address a server may give a host: not 0.0.0.0, broadcast, multicast, loopback or class E.
fn usable(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
        && ip.octets()[0] < 240
}

/// The classful prefix length, for a lease without a subnet mask.
fn natural_len(ip: Ipv4Addr) -> u8 {
    match ip.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests;
