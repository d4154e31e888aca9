//! DHCPv6 prefix delegation on an uplink (RFC 8415, IA_PD only; SPEC 32), I/O-free:
//! SOLICIT → ADVERTISE → REQUEST → REPLY → bound; RENEW (to the server that delegated) at T1,
//! REBIND (to any server) at T2, the prefix lost when its valid lifetime ends, then SOLICIT
//! again. A Reply that carries another prefix renumbers: the old one is lost, the new one
//! delegated.
//!
//! Input: DHCPv6 payloads received on UDP port 546 of the uplink with their source address
//! (`handle_packet`) and the time (`handle_timeout`). Output: payloads to send to
//! All_DHCP_Relay_Agents_and_Servers (ff02::1:2) from the uplink's link-local address
//! (`poll_transmit`), and delegation events (`poll_event`), which the control thread turns into
//! the LAN's /64 and the RAs.
//!
//! Retransmission follows RFC 8415 §15 (RT doubles from IRT with ±10 % jitter, up to MRT,
//! stopped by MRC or MRD) with the jitter drawn from a seeded generator, so tests replay
//! exactly. SOL_MAX_RT is bounded at 120 s rather than 3600 s: an uplink without a prefix is
//! an outage. The client collects Advertises for the first Solicit timeout and requests from
//! the one with the highest preference (at once on preference 255, §18.2.1). The client DUID
//! is DUID-LL of the uplink's MAC, stable across restarts. The timers count from the first
//! transmission of the exchange that got the Reply, so they never run late.

use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::time::Duration;

use dhcproto::v6::{
    Decodable, DhcpOption, DhcpOptions, Encodable, IAPD, IAPrefix, Message, MessageType, ORO,
    OptionCode, Status, StatusCode,
};

use crate::clock::Instant;
use crate::prefix6::Ipv6Prefix;
use crate::rng::SplitMix;
use crate::wire::ethernet::MacAddr;

/// UDP port of DHCPv6 clients.
pub const CLIENT_PORT: u16 = 546;
/// UDP port of DHCPv6 servers and relays.
pub const SERVER_PORT: u16 = 547;
/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
pub const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// Larger payloads are not DHCPv6 from a server on an Ethernet link.
const MAX_PAYLOAD: usize = 1500;
/// The one IA_PD the client asks for.
const IAID: u32 = 1;

/// RFC 8415 §7.6 transmission parameters (SOL_MAX_RT bounded, see the module doc).
const SOL_MAX_DELAY: Duration = Duration::from_secs(1);
const SOL_TIMEOUT: Duration = Duration::from_secs(1);
const SOL_MAX_RT: Duration = Duration::from_secs(120);
const REQ_TIMEOUT: Duration = Duration::from_secs(1);
const REQ_MAX_RT: Duration = Duration::from_secs(30);
const REQ_MAX_RC: u32 = 10;
const REN_TIMEOUT: Duration = Duration::from_secs(10);
const REN_MAX_RT: Duration = Duration::from_secs(600);
const REB_TIMEOUT: Duration = Duration::from_secs(10);
const REB_MAX_RT: Duration = Duration::from_secs(600);

/// A delegated prefix and its timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    pub prefix: Ipv6Prefix,
    pub preferred: Duration,
    pub valid: Duration,
    pub t1: Duration,
    pub t2: Duration,
    /// The server's DUID (sent back in Renew) and the address its Reply came from.
    pub server_id: Vec<u8>,
    pub server_addr: Ipv6Addr,
    /// When the exchange that got this delegation began; the timers count from it.
    pub acquired: Instant,
}

impl Delegation {
    pub fn renew_at(&self) -> Instant {
        self.acquired + self.t1
    }

    pub fn rebind_at(&self) -> Instant {
        self.acquired + self.t2
    }

    pub fn expires_at(&self) -> Instant {
        self.acquired + self.valid
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A prefix is ours (first, or after a renumbering's `Lost`).
    Delegated(Delegation),
    /// The same prefix again, with its timers renewed.
    Renewed(Delegation),
    /// T2 passed without the server's answer: asking any server until the prefix expires.
    Rebinding { prefix: Ipv6Prefix },
    /// The prefix is no longer ours: expired, given valid lifetime 0, or replaced.
    Lost { prefix: Ipv6Prefix },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting the random delay before the first Solicit.
    Init,
    Soliciting,
    Requesting,
    Bound,
    Renewing,
    Rebinding,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "init",
            State::Soliciting => "soliciting",
            State::Requesting => "requesting",
            State::Bound => "bound",
            State::Renewing => "renewing",
            State::Rebinding => "rebinding",
        }
    }
}

/// Messages sent and received; `malformed`, `not_ours` (another transaction or client, or a
/// type the state does not expect) and `unusable` (no server id, no usable prefix, an error
/// status) count what was ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PdCounters {
    pub solicits: u64,
    pub requests: u64,
    pub renews: u64,
    pub rebinds: u64,
    pub advertises: u64,
    pub replies: u64,
    pub malformed: u64,
    pub not_ours: u64,
    pub unusable: u64,
}

impl PdCounters {
    pub fn sent(&self) -> u64 {
        self.solicits + self.requests + self.renews + self.rebinds
    }

    /// Advertises and Replies taken.
    pub fn received(&self) -> u64 {
        self.advertises + self.replies
    }

    pub fn ignored(&self) -> u64 {
        self.malformed + self.not_ours + self.unusable
    }
}

/// The best Advertise so far while soliciting.
#[derive(Debug, Clone)]
struct Offer {
    server_id: Vec<u8>,
    preference: u8,
    prefix: Ipv6Prefix,
}

/// One exchange's retransmission state (RFC 8415 §15).
#[derive(Debug, Clone, Copy)]
struct Retrans {
    started: Instant,
    rt: Duration,
    sent: u32,
}

pub struct PdClient {
    duid: Vec<u8>,
    state: State,
    xid: u32,
    ex: Retrans,
    timer: Option<Instant>,
    offer: Option<Offer>,
    held: Option<Delegation>,
    rng: SplitMix,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    counters: PdCounters,
}

/// DUID-LL (RFC 8415 §11.4): type 3, hardware type 1 (Ethernet), the MAC.
pub fn duid_ll(mac: MacAddr) -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1];
    d.extend_from_slice(&mac.0);
    d
}

impl PdClient {
    /// A client that sends its first Solicit within a second of `now`.
    pub fn new(mac: MacAddr, seed: u64, now: Instant) -> PdClient {
        let mut c = PdClient {
            duid: duid_ll(mac),
            state: State::Init,
            xid: 0,
            ex: Retrans {
                started: now,
                rt: Duration::ZERO,
                sent: 0,
            },
            timer: None,
            offer: None,
            held: None,
            rng: SplitMix::new(seed),
            out: VecDeque::new(),
            events: VecDeque::new(),
            counters: PdCounters::default(),
        };
        c.timer = Some(now + c.fraction(SOL_MAX_DELAY, 0.0, 1.0));
        c
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn delegation(&self) -> Option<&Delegation> {
        self.held.as_ref()
    }

    pub fn counters(&self) -> &PdCounters {
        &self.counters
    }

    pub fn duid(&self) -> &[u8] {
        &self.duid
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
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
        if let Some(d) = &self.held
            && now >= d.expires_at()
        {
            let prefix = d.prefix;
            self.held = None;
            self.events.push_back(Event::Lost { prefix });
            return self.solicit(now);
        }
        match self.state {
            State::Init => self.solicit(now),
            State::Soliciting => match self.offer.clone() {
                // The first RT is over: request from the best Advertise (§18.2.1).
                Some(offer) if self.ex.sent >= 1 => self.request(offer, now),
                _ => self.retransmit(now, SOL_MAX_RT, None),
            },
            State::Requesting if self.ex.sent >= REQ_MAX_RC => self.solicit(now),
            State::Requesting => self.retransmit(now, REQ_MAX_RT, None),
            State::Bound | State::Renewing | State::Rebinding => self.lease_timer(now),
        }
    }

    /// Bound, renewing or rebinding: the timer is T1, T2, expiry or a retransmission.
    fn lease_timer(&mut self, now: Instant) {
        let Some(d) = self.held.clone() else {
            return self.solicit(now);
        };
        if now >= d.rebind_at() {
            if self.state != State::Rebinding {
                self.state = State::Rebinding;
                self.events.push_back(Event::Rebinding { prefix: d.prefix });
                self.begin(now, REB_TIMEOUT);
                return self.send(now, Some(d.expires_at()));
            }
            self.retransmit(now, REB_MAX_RT, Some(d.expires_at()));
        } else if now >= d.renew_at() {
            if self.state != State::Renewing {
                self.state = State::Renewing;
                self.begin(now, REN_TIMEOUT);
                return self.send(now, Some(d.rebind_at()));
            }
            self.retransmit(now, REN_MAX_RT, Some(d.rebind_at()));
        } else {
            self.timer = Some(d.renew_at());
        }
    }

    /// A DHCPv6 payload received on the uplink's port 546, from `src`.
    pub fn handle_packet(&mut self, payload: &[u8], src: Ipv6Addr, now: Instant) {
        if payload.len() > MAX_PAYLOAD {
            return self.counters.malformed += 1;
        }
        let Ok(msg) = Message::from_bytes(payload) else {
            return self.counters.malformed += 1;
        };
        let client_id = match msg.opts().get(OptionCode::ClientId) {
            Some(DhcpOption::ClientId(id)) => Some(id),
            _ => None,
        };
        if msg.xid_num() != self.xid || client_id != Some(&self.duid) {
            return self.counters.not_ours += 1;
        }
        let Some(DhcpOption::ServerId(server_id)) = msg.opts().get(OptionCode::ServerId) else {
            return self.counters.unusable += 1;
        };
        let server_id = server_id.clone();
        match (self.state, msg.msg_type()) {
            (State::Soliciting, MessageType::Advertise) => self.advertise(&msg, server_id, now),
            (State::Requesting | State::Renewing, MessageType::Reply)
                if self.server_id() != Some(&server_id) =>
            {
                self.counters.not_ours += 1
            }
            (State::Requesting | State::Renewing | State::Rebinding, MessageType::Reply) => {
                self.reply(&msg, server_id, src, now)
            }
            _ => self.counters.not_ours += 1,
        }
    }

    /// The server the current Request or Renew is for.
    fn server_id(&self) -> Option<&Vec<u8>> {
        match self.state {
            State::Requesting => self.offer.as_ref().map(|o| &o.server_id),
            _ => self.held.as_ref().map(|d| &d.server_id),
        }
    }

    fn advertise(&mut self, msg: &Message, server_id: Vec<u8>, now: Instant) {
        let Ok(Some(p)) = ia_pd(msg.opts()) else {
            return self.counters.unusable += 1;
        };
        self.counters.advertises += 1;
        let preference = match msg.opts().get(OptionCode::Preference) {
            Some(DhcpOption::Preference(p)) => *p,
            _ => 0,
        };
        if self
            .offer
            .as_ref()
            .is_none_or(|o| preference > o.preference)
        {
            self.offer = Some(Offer {
                server_id,
                preference,
                prefix: p.prefix,
            });
        }
        let first_rt_over = self.ex.sent > 1;
        if let Some(offer) = self.offer.clone()
            && (preference == u8::MAX || first_rt_over)
        {
            self.request(offer, now);
        }
    }

    fn reply(&mut self, msg: &Message, server_id: Vec<u8>, src: Ipv6Addr, now: Instant) {
        if let Some(DhcpOption::StatusCode(s)) = msg.opts().get(OptionCode::StatusCode)
            && s.status != Status::Success
        {
            return self.counters.unusable += 1;
        }
        let granted = match ia_pd(msg.opts()) {
            Ok(Some(p)) => p,
            Ok(None) => return self.counters.unusable += 1,
            // NoBinding to a Renew or Rebind: the server lost it; request it again (§18.2.10.1).
            Err(Status::NoBinding) if self.state != State::Requesting => {
                self.counters.replies += 1;
                let Some(d) = &self.held else { return };
                let offer = Offer {
                    server_id,
                    preference: 0,
                    prefix: d.prefix,
                };
                return self.request(offer, now);
            }
            // No prefix for us in a Request's Reply: start over (§18.2.10.1).
            Err(_) if self.state == State::Requesting => {
                self.counters.unusable += 1;
                return self.solicit(now);
            }
            Err(_) => return self.counters.unusable += 1,
        };
        self.counters.replies += 1;
        if granted.valid.is_zero() {
            // The server withdraws what we hold: it is gone now, and we start over.
            if let Some(d) = self.held.take_if(|d| d.prefix == granted.prefix) {
                self.events.push_back(Event::Lost { prefix: d.prefix });
            }
            return self.solicit(now);
        }
        let d = Delegation {
            prefix: granted.prefix,
            preferred: granted.preferred,
            valid: granted.valid,
            t1: granted.t1,
            t2: granted.t2,
            server_id,
            server_addr: src,
            acquired: self.ex.started,
        };
        let event = match self.held.take() {
            Some(old) if old.prefix == d.prefix => Event::Renewed(d.clone()),
            Some(old) => {
                self.events.push_back(Event::Lost { prefix: old.prefix });
                Event::Delegated(d.clone())
            }
            None => Event::Delegated(d.clone()),
        };
        self.events.push_back(event);
        self.timer = Some(d.renew_at().max(now));
        self.held = Some(d);
        self.offer = None;
        self.state = State::Bound;
    }

    fn solicit(&mut self, now: Instant) {
        self.state = State::Soliciting;
        self.offer = None;
        self.begin(now, SOL_TIMEOUT);
        // The first Solicit's RT is always above IRT, so Advertises have time to come (§15).
        self.ex.rt = SOL_TIMEOUT + self.fraction(SOL_TIMEOUT, 0.0, 0.1);
        self.send(now, None);
    }

    fn request(&mut self, offer: Offer, now: Instant) {
        self.state = State::Requesting;
        self.offer = Some(offer);
        self.begin(now, REQ_TIMEOUT);
        self.send(now, None);
    }

    /// A new exchange: a new transaction id, RT from IRT (§15).
    fn begin(&mut self, now: Instant, irt: Duration) {
        self.xid = (self.rng.next_u64() & 0x00ff_ffff) as u32;
        self.ex = Retrans {
            started: now,
            rt: irt + self.fraction(irt, -0.1, 0.1),
            sent: 0,
        };
    }

    /// The next transmission of the exchange: RT doubled with jitter, capped at `mrt` (§15).
    fn retransmit(&mut self, now: Instant, mrt: Duration, mrd: Option<Instant>) {
        let rt = self.ex.rt * 2 + self.fraction(self.ex.rt, -0.1, 0.1);
        self.ex.rt = if rt > mrt {
            mrt + self.fraction(mrt, -0.1, 0.1)
        } else {
            rt
        };
        self.send(now, mrd);
    }

    /// Sends the current state's message and arms the timer for RT, or the deadline first.
    fn send(&mut self, now: Instant, deadline: Option<Instant>) {
        let kind = match self.state {
            State::Init | State::Soliciting => MessageType::Solicit,
            State::Requesting => MessageType::Request,
            State::Bound | State::Renewing => MessageType::Renew,
            State::Rebinding => MessageType::Rebind,
        };
        let elapsed = now.saturating_since(self.ex.started).as_millis() / 10;
        let mut m = Message::new(kind);
        m.set_xid_num(self.xid);
        let o = m.opts_mut();
        o.insert(DhcpOption::ClientId(self.duid.clone()));
        // The first transmission says 0; later ones the time since it, in 1/100 s (§21.9).
        o.insert(DhcpOption::ElapsedTime(
            u16::try_from(elapsed).unwrap_or(u16::MAX),
        ));
        o.insert(DhcpOption::ORO(ORO {
            opts: vec![OptionCode::SolMaxRt],
        }));
        if matches!(kind, MessageType::Request | MessageType::Renew)
            && let Some(id) = self.server_id()
        {
            o.insert(DhcpOption::ServerId(id.clone()));
        }
        // Solicit hints nothing; Request names the prefix advertised, Renew and Rebind the
        // prefix held.
        let held = match kind {
            MessageType::Solicit => None,
            MessageType::Request => self.offer.as_ref().map(|o| o.prefix),
            _ => self.held.as_ref().map(|d| d.prefix),
        };
        let mut ia = DhcpOptions::new();
        if let Some(p) = held {
            ia.insert(DhcpOption::IAPrefix(IAPrefix {
                preferred_lifetime: 0,
                valid_lifetime: 0,
                prefix_len: p.prefix_len(),
                prefix_ip: p.addr(),
                opts: DhcpOptions::new(),
            }));
        }
        o.insert(DhcpOption::IAPD(IAPD {
            id: IAID,
            t1: 0,
            t2: 0,
            opts: ia,
        }));
        match kind {
            MessageType::Solicit => self.counters.solicits += 1,
            MessageType::Request => self.counters.requests += 1,
            MessageType::Renew => self.counters.renews += 1,
            _ => self.counters.rebinds += 1,
        }
        if let Ok(payload) = m.to_vec() {
            self.out.push_back(payload);
        }
        self.ex.sent += 1;
        // Whatever the exchange, the held prefix's expiry is a deadline too.
        let expiry = self.held.as_ref().map(Delegation::expires_at);
        self.timer = [Some(now + self.ex.rt), deadline, expiry]
            .into_iter()
            .flatten()
            .min();
    }

    /// `base` times a uniform random factor in [lo, hi], at millisecond resolution.
    fn fraction(&mut self, base: Duration, lo: f64, hi: f64) -> Duration {
        let r = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let f = lo + r * (hi - lo);
        let ms = base.as_millis() as f64 * f;
        if ms >= 0.0 {
            Duration::from_millis(ms as u64)
        } else {
            Duration::ZERO.saturating_sub(Duration::from_millis((-ms) as u64))
        }
    }
}

/// What an IA_PD grants: its first usable prefix and the timers.
#[derive(Debug, Clone, Copy)]
struct Granted {
    prefix: Ipv6Prefix,
    preferred: Duration,
    valid: Duration,
    t1: Duration,
    t2: Duration,
}

/// The IA_PD of a message: Ok(None) without one or without a usable prefix, Err(status) when
/// it carries an error status (NoPrefixAvail, NoBinding, ...) (RFC 8415 §21.21–21.22).
fn ia_pd(opts: &DhcpOptions) -> Result<Option<Granted>, Status> {
    let Some(DhcpOption::IAPD(ia)) = opts.get(OptionCode::IAPD) else {
        return Ok(None);
    };
    if ia.id != IAID {
        return Ok(None);
    }
    if let Some(DhcpOption::StatusCode(StatusCode { status, .. })) =
        ia.opts.get(OptionCode::StatusCode)
        && *status != Status::Success
    {
        return Err(*status);
    }
    if ia.t1 > ia.t2 && ia.t2 > 0 {
        return Ok(None);
    }
    // A live prefix first: a renumbering server sends the old one with lifetimes 0 beside it.
    let prefixes: Vec<&IAPrefix> = ia
        .opts
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAPrefix(p) => usable(p),
            _ => None,
        })
        .collect();
    let Some(p) = prefixes
        .iter()
        .find(|p| p.valid_lifetime > 0)
        .or(prefixes.first())
    else {
        return Ok(None);
    };
    let Ok(prefix) = Ipv6Prefix::new(p.prefix_ip, p.prefix_len) else {
        return Ok(None);
    };
    let secs = |s: u32| Duration::from_secs(s.into());
    let (preferred, valid) = (secs(p.preferred_lifetime), secs(p.valid_lifetime));
    // T1 and T2 of 0 leave them to the client: 0.5 and 0.8 of the preferred lifetime (§14.2).
    let (t1, t2) = if ia.t1 == 0 || ia.t2 == 0 {
        (preferred / 2, preferred * 4 / 5)
    } else {
        (secs(ia.t1), secs(ia.t2))
    };
    Ok(Some(Granted {
        prefix: prefix.network(),
        preferred,
        valid,
        t1: t1.min(valid),
        t2: t2.min(valid),
    }))
}

/// A prefix a LAN /64 can come from, with coherent lifetimes (§21.22), the IAPrefix's own
/// status not an error.
fn usable(p: &IAPrefix) -> Option<&IAPrefix> {
    let a = p.prefix_ip;
    let routable =
        !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_unicast_link_local());
    let ok_status = !matches!(
        p.opts.get(OptionCode::StatusCode),
        Some(DhcpOption::StatusCode(s)) if s.status != Status::Success
    );
    (routable
        && ok_status
        && (1..=64).contains(&p.prefix_len)
        && p.preferred_lifetime <= p.valid_lifetime)
        .then_some(p)
}

#[cfg(test)]
mod tests;
