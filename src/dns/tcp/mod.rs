//! DNS over TCP (RFC 7766) on the router's LAN addresses (IPv4, and IPv6 in each LAN prefix),
//! relayed over TCP to the resolvers of
//! the uplink that carries the default route (SPEC 30), as dnsmasq does: each LAN connection
//! gets at most one upstream connection, from the active uplink's address and a port of
//! [`TCP_PORTS`], to one resolver; queries and answers are whole length-prefixed messages,
//! passed byte for byte (the client's ids stay: one upstream connection serves one client).
//!
//! The router has no kernel TCP (the LAN is a TAP, uplinks are AF_PACKET), so TCP runs in
//! userspace. It is smoltcp's (`stack`), not a hand-written one: smoltcp is maintained and
//! already does what a minimal TCP would have to get right (handshakes both ways, in-order
//! reassembly, ACKs, RTO estimation and retransmission with back-off, FIN/RST, RST for unknown
//! segments, windows), and it is itself I/O-free: with `Medium::Ip` and a queue as its device
//! it takes packets and a time and returns packets and the next time it needs. This module
//! keeps what smoltcp cannot know: the relay, its bounds and its counters.
//!
//! Same engine shape as the UDP forwarder: `handle_packet(side, packet, now)`,
//! `handle_timeout(now)`, `poll_transmit`, `poll_timeout`. Packets are IP packets without a
//! link header: IPv4 or IPv6 on the LAN side, IPv4 upstream. Bounds: connections in total and per client (further SYNs are dropped and
//! counted), each client's queries (a token bucket like the UDP forwarder's, of its own: a
//! query over it resets the connection), one query's size, unanswered queries per connection
//! (reading pauses), answer bytes held for a slow client (reading the resolver pauses),
//! handshake, idle time and total lifetime per connection, tries across the resolvers, and
//! sockets winding down (FIN, TIME-WAIT). smoltcp's retransmission backs off by doubling its
//! RTO after three retransmissions in a row, and resets a socket whose peer is silent for
//! `PEER_TIMEOUT`.
//!
//! After a failover (`set_upstream` with another uplink or address) upstream connections are
//! dropped and their unanswered queries go out again at once over a new connection through the
//! new uplink.

mod stack;

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::AnySocket;
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::{IpListenEndpoint, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket};

use self::stack::Stack;
use super::ratelimit::ClientBuckets;
use crate::clock::Instant;
use crate::config::DnsConfig;
use crate::prefix::Ipv4Prefix;
use crate::prefix6::Ipv6Prefix;
use crate::rng::SplitMix;
use crate::{Iface, UplinkId};

/// Source ports of upstream connections on every uplink. They are carved out of every NAT
/// pool, so what comes back to one from port 53 is the relay's.
pub const TCP_PORTS: RangeInclusive<u16> = 65024..=65279;
/// LAN connections at once, and per client address.
const MAX_CONNS: usize = 64;
const MAX_CONNS_PER_CLIENT: usize = 8;
/// Largest query taken (a query is one question; EDNS and TSIG fit well within).
const MAX_QUERY: usize = 4096;
/// Queries sent upstream and not answered yet, per connection; the client is not read beyond.
const MAX_UNANSWERED: usize = 8;
/// Answer bytes held for a client that does not read; the resolver is not read beyond.
const CLIENT_BACKLOG: usize = 2 + 65535;
/// A client that does not complete the handshake within this long loses its place (a SYN
/// flood from spoofed sources holds places no longer).
const HANDSHAKE: Duration = Duration::from_secs(5);
/// A connection with nothing in flight is closed after this long (RFC 7766 6.2.3: seconds).
const IDLE: Duration = Duration::from_secs(10);
/// smoltcp resets a socket whose peer has sent nothing for this long (a vanished host, a
/// closing socket never acknowledged); longer than `IDLE` and the tries of one query.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);
/// Any connection is reset after this long.
const LIFETIME: Duration = Duration::from_secs(120);
/// Upstream connections for one client connection, cycling through the resolvers.
const MAX_TRIES: usize = 4;
/// Sockets closing (FIN exchange, TIME-WAIT) per side; beyond it the oldest is reset. With
/// `MAX_CONNS` this stays within `TCP_PORTS`.
const MAX_CLOSING: usize = 128;
/// Socket buffers: queries are small, answers up to 64 KiB pass through in pieces.
const CLIENT_RX: usize = 2 + MAX_QUERY;
const CLIENT_TX: usize = 16 * 1024;
const UPSTREAM_RX: usize = 16 * 1024;
const UPSTREAM_TX: usize = 2 * (2 + MAX_QUERY);
/// DNS header length: a shorter message is malformed.
const DNS_HEADER: usize = 12;

/// The uplink that carries the default route: its id, its address and its resolvers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpUpstream {
    pub uplink: UplinkId,
    pub addr: Ipv4Addr,
    pub resolvers: Vec<Ipv4Addr>,
}

/// An IP packet to send on `iface` (IPv4 or IPv6 to a LAN client, or IPv4 through the active
/// uplink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpTransmit {
    pub iface: Iface,
    pub packet: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpCounters {
    pub accepted: u64,
    /// SYNs dropped: `MAX_CONNS` connections open.
    pub refused_total: u64,
    /// SYNs dropped: `MAX_CONNS_PER_CLIENT` open from that client.
    pub refused_per_client: u64,
    pub queries: u64,
    pub answers: u64,
    /// Connections reset for a query over the client's token bucket (`rate`, `burst`).
    pub rate_limited: u64,
    /// Connections reset for a query shorter than a DNS header or over `MAX_QUERY`.
    pub malformed: u64,
    /// Connections reset for a query while no uplink with resolvers carries the default route.
    pub no_upstream: u64,
    /// Upstream connections replaced (closed, reset or silent with queries unanswered).
    pub upstream_retries: u64,
    /// Connections reset after `MAX_TRIES` upstream connections failed.
    pub upstream_failed: u64,
    /// Answers for no unanswered query of the connection, dropped.
    pub unmatched: u64,
    /// Connections reset for not completing the handshake within `HANDSHAKE`.
    pub handshake_timeouts: u64,
    pub idle_closed: u64,
    pub lifetime_exceeded: u64,
    /// Closing sockets reset early to stay within `MAX_CLOSING`.
    pub closing_evicted: u64,
    /// Segments from an uplink that is no longer the active one.
    pub stale: u64,
}

struct Upstream {
    handle: SocketHandle,
    from_server: Vec<u8>,
    to_server: Vec<u8>,
    /// Last progress: connect, or the last answer.
    since: Instant,
}

struct Conn {
    client: SocketAddr,
    opened: Instant,
    /// Last query or answer.
    active: Instant,
    from_client: Vec<u8>,
    to_client: Vec<u8>,
    /// Length-prefixed queries not answered yet, sent again on a new upstream connection.
    unanswered: VecDeque<Vec<u8>>,
    upstream: Option<Upstream>,
    tries: usize,
}

/// The active uplink's side: its stack, resolvers, and sockets closing there.
struct UpSide {
    uplink: UplinkId,
    stack: Stack,
    resolvers: Vec<Ipv4Addr>,
    closing: VecDeque<SocketHandle>,
}

/// How a connection ends.
enum End {
    /// FIN to the client and the resolver.
    Close,
    /// RST to both (a client already gone gets none: its socket has no peer any more).
    Reset,
}

pub struct TcpRelay {
    lan: Stack,
    listener: SocketHandle,
    lan_closing: VecDeque<SocketHandle>,
    up: Option<UpSide>,
    /// LAN connections by their socket on the LAN stack.
    conns: BTreeMap<SocketHandle, Conn>,
    /// Upstream answer timeout (the forwarder's `timeout`).
    timeout: Duration,
    /// Each client's queries, over all its connections.
    buckets: ClientBuckets,
    rng: SplitMix,
    out: VecDeque<TcpTransmit>,
    /// `next_timeout` as of the last run (smoltcp needs `&mut` to compute it).
    next_timeout: Option<Instant>,
    counters: TcpCounters,
}

fn socket(rx: usize, tx: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; rx]),
        tcp::SocketBuffer::new(vec![0; tx]),
    );
    s.set_timeout(Some(smoltcp::time::Duration::from_secs(
        PEER_TIMEOUT.as_secs(),
    )));
    s.set_nagle_enabled(false);
    s
}

fn listen(stack: &mut Stack) -> SocketHandle {
    let mut s = socket(CLIENT_RX, CLIENT_TX);
    // Any of the stack's addresses: the LAN address and the router's IPv6 LAN addresses.
    let endpoint = IpListenEndpoint {
        addr: None,
        port: super::PORT,
    };
    s.listen(endpoint).expect("port 53 is not zero");
    stack.add(s)
}

/// True once a socket has nothing more to do (closed, its RST sent).
fn finished(s: &tcp::Socket) -> bool {
    s.state() == State::Closed && s.remote_endpoint().is_none()
}

/// Reads from `s` into `buf` until it holds one whole length-prefixed message of at most
/// `max` bytes, and returns it. Err: the length is out of bounds.
fn read_message(s: &mut tcp::Socket, buf: &mut Vec<u8>, max: usize) -> Result<Option<Vec<u8>>, ()> {
    loop {
        let want = if buf.len() < 2 {
            2
        } else {
            let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if !(DNS_HEADER..=max).contains(&len) {
                return Err(());
            }
            2 + len
        };
        if buf.len() == want && want > 2 {
            return Ok(Some(std::mem::take(buf)));
        }
        let need = want - buf.len();
        let got = s
            .recv(|data| {
                let n = data.len().min(need);
                buf.extend_from_slice(&data[..n]);
                (n, n)
            })
            .unwrap_or(0);
        if got == 0 {
            return Ok(None);
        }
    }
}

/// Sends as much of `buf` as `s` takes.
fn write_some(s: &mut tcp::Socket, buf: &mut Vec<u8>) {
    if s.may_send()
        && !buf.is_empty()
        && let Ok(n) = s.send_slice(buf)
    {
        buf.drain(..n);
    }
}

impl TcpRelay {
    /// Listens on the LAN address and the IPv6 addresses `lan6` (with their prefix lengths),
    /// port 53; `cfg.timeout` is how long a resolver may keep a query unanswered, `cfg.rate`
    /// and `cfg.burst` each client's queries.
    pub fn new(
        cfg: &DnsConfig,
        lan: Ipv4Prefix,
        lan6: &[Ipv6Prefix],
        seed: u64,
        now: Instant,
    ) -> Self {
        let mut rng = SplitMix::new(seed);
        let seed = rng.next_u64();
        let mut lan = Stack::new(lan.addr(), lan.prefix_len(), lan6, false, seed, now);
        let listener = listen(&mut lan);
        TcpRelay {
            lan,
            listener,
            lan_closing: VecDeque::new(),
            up: None,
            conns: BTreeMap::new(),
            timeout: cfg.timeout,
            buckets: ClientBuckets::new(cfg.rate, cfg.burst),
            rng,
            out: VecDeque::new(),
            next_timeout: None,
            counters: TcpCounters::default(),
        }
    }

    pub fn counters(&self) -> &TcpCounters {
        &self.counters
    }

    /// LAN connections open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The uplink that now carries the default route (None: none does, or it has no resolvers).
    pub fn set_upstream(&mut self, upstream: Option<TcpUpstream>, now: Instant) {
        let upstream = upstream.filter(|u| !u.resolvers.is_empty());
        match (&mut self.up, upstream) {
            (Some(up), Some(u)) if up.uplink == u.uplink && up.stack.addr() == u.addr => {
                up.resolvers = u.resolvers;
                return;
            }
            (_, u) => {
                // The old uplink's connections are abandoned: it may be down, and its
                // resolvers may refuse the new address. Unanswered queries go out again.
                self.up = u.map(|u| UpSide {
                    uplink: u.uplink,
                    stack: Stack::new(u.addr, 32, &[], true, self.rng.next_u64(), now),
                    resolvers: u.resolvers,
                    closing: VecDeque::new(),
                });
                for c in self.conns.values_mut() {
                    c.upstream = None;
                    c.tries = 0;
                }
            }
        }
        self.run(now);
    }

    /// An IP packet for the relay: TCP to one of the LAN addresses, port 53, from the LAN
    /// (IPv4 or IPv6), or TCP from a resolver's port 53 to one of `TCP_PORTS` on uplink `u`.
    pub fn handle_packet(&mut self, iface: Iface, packet: &[u8], now: Instant) {
        match iface {
            Iface::Lan => {
                if self.admit(packet) {
                    self.lan.input(packet, now);
                }
            }
            Iface::Uplink(u) => match &mut self.up {
                Some(up) if up.uplink == u => up.stack.input(packet, now),
                _ => self.counters.stale += 1,
            },
        }
        self.run(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.run(now);
    }

    pub fn poll_transmit(&mut self) -> Option<TcpTransmit> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timeout
    }

    /// The earliest of the stacks' timers and the connections' deadlines.
    fn next_timeout(&mut self, now: Instant) -> Option<Instant> {
        let stacks = [
            self.lan.poll_at(now),
            self.up.as_mut().and_then(|u| u.stack.poll_at(now)),
        ];
        let conns = self.conns.iter().map(|(&h, c)| {
            let mut t = c.opened + LIFETIME;
            if self.lan.sockets.get::<tcp::Socket>(h).state() == State::SynReceived {
                t = t.min(c.opened + HANDSHAKE);
            }
            if c.unanswered.is_empty() && c.to_client.is_empty() {
                t = t.min(c.active + IDLE);
            }
            if let Some(u) = &c.upstream
                && !c.unanswered.is_empty()
            {
                t = t.min(u.since + self.timeout);
            }
            t
        });
        stacks.into_iter().flatten().chain(conns).min()
    }

    /// False for a SYN that would open a connection over the bounds (counted). A SYN of a
    /// connection already open (retransmitted) passes.
    fn admit(&mut self, packet: &[u8]) -> bool {
        let Some((src, segment)) = tcp_segment(packet) else {
            return true;
        };
        let Ok(tcp) = TcpPacket::new_checked(segment) else {
            return true;
        };
        if !tcp.syn() || tcp.ack() {
            return true;
        }
        let client = SocketAddr::new(src, tcp.src_port());
        if self.conns.values().any(|c| c.client == client) {
            return true;
        }
        if self.conns.len() >= MAX_CONNS {
            self.counters.refused_total += 1;
            return false;
        }
        let same = self
            .conns
            .values()
            .filter(|c| c.client.ip() == client.ip())
            .count();
        if same >= MAX_CONNS_PER_CLIENT {
            self.counters.refused_per_client += 1;
            return false;
        }
        true
    }

    /// After any input: take new connections, move data, end what is over, send.
    fn run(&mut self, now: Instant) {
        self.lan.poll(now);
        if let Some(up) = &mut self.up {
            up.stack.poll(now);
        }
        self.accept(now);
        let handles: Vec<SocketHandle> = self.conns.keys().copied().collect();
        for h in handles {
            if let Some(end) = self.serve(h, now) {
                self.end(h, end);
            }
        }
        self.lan.poll(now);
        if let Some(up) = &mut self.up {
            up.stack.poll(now);
        }
        self.sweep();
        while let Some(packet) = self.lan.pop_packet() {
            self.out.push_back(TcpTransmit {
                iface: Iface::Lan,
                packet,
            });
        }
        if let Some(up) = &mut self.up {
            while let Some(packet) = up.stack.pop_packet() {
                self.out.push_back(TcpTransmit {
                    iface: Iface::Uplink(up.uplink),
                    packet,
                });
            }
        }
        self.next_timeout = self.next_timeout(now);
    }

    /// The listener took a SYN: it is now a connection, and a new listener takes its place.
    fn accept(&mut self, now: Instant) {
        let s = self.lan.socket(self.listener);
        if s.state() == State::Listen {
            return;
        }
        let client = match s.remote_endpoint() {
            Some(e) => SocketAddr::new(e.addr.into(), e.port),
            None => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        };
        self.counters.accepted += 1;
        self.conns.insert(
            self.listener,
            Conn {
                client,
                opened: now,
                active: now,
                from_client: Vec::new(),
                to_client: Vec::new(),
                unanswered: VecDeque::new(),
                upstream: None,
                tries: 0,
            },
        );
        self.listener = listen(&mut self.lan);
    }

    /// Moves one connection's data; Some when it is over.
    fn serve(&mut self, h: SocketHandle, now: Instant) -> Option<End> {
        let c = self.conns.get_mut(&h)?;
        let s = self.lan.socket(h);
        // An RST in SYN-RECEIVED sends a socket back to LISTEN: that client is gone too (and
        // the socket must not take another).
        if matches!(s.state(), State::Closed | State::Listen) {
            return Some(End::Reset);
        }
        if now >= c.opened + LIFETIME {
            self.counters.lifetime_exceeded += 1;
            return Some(End::Reset);
        }
        if s.state() == State::SynReceived && now >= c.opened + HANDSHAKE {
            self.counters.handshake_timeouts += 1;
            return Some(End::Reset);
        }
        while c.unanswered.len() < MAX_UNANSWERED {
            match read_message(s, &mut c.from_client, MAX_QUERY) {
                Ok(Some(query)) => {
                    self.counters.queries += 1;
                    if !self.buckets.take(c.client.ip(), now) {
                        self.counters.rate_limited += 1;
                        return Some(End::Reset);
                    }
                    c.active = now;
                    if let Some(u) = &mut c.upstream {
                        u.to_server.extend_from_slice(&query);
                        if c.unanswered.is_empty() {
                            u.since = now;
                        }
                    }
                    c.unanswered.push_back(query);
                }
                Ok(None) => break,
                Err(()) => {
                    self.counters.malformed += 1;
                    return Some(End::Reset);
                }
            }
        }
        if let Some(end) = self.upstream_io(h, now) {
            return Some(end);
        }
        let c = self.conns.get_mut(&h)?;
        let s = self.lan.socket(h);
        write_some(s, &mut c.to_client);
        let quiet = c.unanswered.is_empty() && c.to_client.is_empty();
        if quiet && !s.may_recv() && s.state() != State::SynReceived {
            // The client closed its side and has every answer.
            return Some(End::Close);
        }
        if quiet && now >= c.active + IDLE {
            self.counters.idle_closed += 1;
            return Some(End::Close);
        }
        None
    }

    /// Opens, feeds and reads the connection's upstream side, replacing it when it fails.
    fn upstream_io(&mut self, h: SocketHandle, now: Instant) -> Option<End> {
        let c = self.conns.get_mut(&h)?;
        if c.unanswered.is_empty() && c.upstream.is_none() {
            return None;
        }
        let Some(up) = &mut self.up else {
            self.counters.no_upstream += 1;
            return Some(End::Reset);
        };
        for _ in 0..MAX_TRIES {
            if c.upstream.is_none() {
                let server = up.resolvers[c.tries % up.resolvers.len()];
                c.tries += 1;
                let port = free_port(&up.stack, &mut self.rng);
                let Some(handle) = up
                    .stack
                    .connect(socket(UPSTREAM_RX, UPSTREAM_TX), port, server)
                else {
                    self.counters.upstream_failed += 1;
                    return Some(End::Reset);
                };
                c.upstream = Some(Upstream {
                    handle,
                    from_server: Vec::new(),
                    to_server: c.unanswered.iter().flatten().copied().collect(),
                    since: now,
                });
            }
            let u = c.upstream.as_mut().expect("opened above");
            let s = up.stack.socket(u.handle);
            write_some(s, &mut u.to_server);
            let mut broken = false;
            while c.to_client.len() < CLIENT_BACKLOG {
                match read_message(s, &mut u.from_server, usize::from(u16::MAX)) {
                    Ok(Some(answer)) => {
                        let id = &answer[2..4];
                        match c.unanswered.iter().position(|q| &q[2..4] == id) {
                            Some(i) => {
                                c.unanswered.remove(i);
                                c.to_client.extend_from_slice(&answer);
                                self.counters.answers += 1;
                                c.active = now;
                                u.since = now;
                            }
                            None => self.counters.unmatched += 1,
                        }
                    }
                    Ok(None) => break,
                    Err(()) => {
                        broken = true;
                        break;
                    }
                }
            }
            let closed = broken
                || s.state() == State::Closed
                || (!s.may_recv() && !s.can_recv() && s.state() != State::SynSent);
            let silent = !c.unanswered.is_empty() && now >= u.since + self.timeout;
            if !closed && !silent {
                return None;
            }
            // Done with this connection: FIN when the resolver closed cleanly, else RST.
            let handle = u.handle;
            if closed && !broken && s.state() != State::Closed {
                s.close();
            } else {
                s.abort();
            }
            up.closing.push_back(handle);
            c.upstream = None;
            if c.unanswered.is_empty() {
                return None;
            }
            if c.tries >= MAX_TRIES {
                self.counters.upstream_failed += 1;
                return Some(End::Reset);
            }
            self.counters.upstream_retries += 1;
        }
        None
    }

    fn end(&mut self, h: SocketHandle, end: End) {
        let Some(c) = self.conns.remove(&h) else {
            return;
        };
        let s = self.lan.socket(h);
        match end {
            End::Close => s.close(),
            End::Reset => s.abort(),
        }
        self.lan_closing.push_back(h);
        if let (Some(u), Some(up)) = (c.upstream, &mut self.up) {
            let s = up.stack.socket(u.handle);
            match end {
                End::Close => s.close(),
                End::Reset => s.abort(),
            }
            up.closing.push_back(u.handle);
        }
    }

    /// Removes finished sockets; resets the oldest closing ones over `MAX_CLOSING`.
    fn sweep(&mut self) {
        let mut sides: Vec<(&mut Stack, &mut VecDeque<SocketHandle>)> =
            vec![(&mut self.lan, &mut self.lan_closing)];
        if let Some(up) = &mut self.up {
            sides.push((&mut up.stack, &mut up.closing));
        }
        for (stack, closing) in sides {
            closing.retain(|&h| {
                let done = finished(stack.socket(h));
                if done {
                    stack.remove(h);
                }
                !done
            });
            let over = closing.len().saturating_sub(MAX_CLOSING);
            for &h in closing.iter().take(over) {
                let s = stack.socket(h);
                if s.state() != State::Closed {
                    s.abort();
                    self.counters.closing_evicted += 1;
                }
            }
        }
    }
}

/// The source and the TCP segment of an IPv4 or IPv6 packet whose payload is TCP.
fn tcp_segment(packet: &[u8]) -> Option<(IpAddr, &[u8])> {
    match packet.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            (ip.next_header() == IpProtocol::Tcp).then(|| (ip.src_addr().into(), ip.payload()))
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            (ip.next_header() == IpProtocol::Tcp).then(|| (ip.src_addr().into(), ip.payload()))
        }
        _ => None,
    }
}

/// A port of `TCP_PORTS` no socket of `stack` uses, from a random start.
fn free_port(stack: &Stack, rng: &mut SplitMix) -> u16 {
    let used: Vec<u16> = stack
        .sockets
        .iter()
        .filter_map(|(_, s)| tcp::Socket::downcast(s)?.local_endpoint())
        .map(|e| e.port)
        .collect();
    let first = *TCP_PORTS.start();
    let len = TCP_PORTS.end() - first + 1;
    let start = rng.next_u64() as u16 % len;
    (0..len)
        .map(|i| first + (start + i) % len)
        .find(|p| !used.contains(p))
        .unwrap_or(first + start)
}

#[cfg(test)]
mod tests;
