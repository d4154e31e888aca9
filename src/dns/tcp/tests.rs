//! The relay between a LAN client and a resolver, both smoltcp stacks of their own, on a
//! simulated clock and a link that can lose segments.

use super::stack::Stack;
use super::*;
use crate::wire::ipv4::{Ipv4Packet as Ip, OwnHeader};
use crate::wire::tcp::{TcpPacket as Tcp, TcpRepr, build_segment, flags};

const LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
const UP_A: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
const UP_B: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 2);
const RESOLVER: Ipv4Addr = Ipv4Addr::new(100, 64, 2, 53);
const RESOLVER_2: Ipv4Addr = Ipv4Addr::new(100, 64, 2, 54);
const TIMEOUT: Duration = Duration::from_secs(5);
const ANSWER_PAD: usize = 3000;

/// (source, destination, source port, destination port, flags, payload length) of a packet.
type Seg = (Ipv4Addr, Ipv4Addr, u16, u16, u8, usize);

fn seg(p: &[u8]) -> Seg {
    let ip = Ip::new_checked(p).expect("ipv4");
    let t = Tcp::new_checked(&p[ip.header_len()..ip.total_len()]).expect("tcp");
    (
        ip.src(),
        ip.dst(),
        t.src_port(),
        t.dst_port(),
        t.flags(),
        t.payload().len(),
    )
}

/// A query message with `id`, length-prefixed.
fn query(id: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(b"\x03big\x03lab\x00\x00\x10\x00\x01");
    let mut framed = (m.len() as u16).to_be_bytes().to_vec();
    framed.extend(m);
    framed
}

/// The resolver's answer to a framed query: QR set, padded so it spans several segments.
fn answer(q: &[u8]) -> Vec<u8> {
    let mut m = q[2..].to_vec();
    m[2] |= 0x80;
    m.extend(std::iter::repeat_n(b'x', ANSWER_PAD));
    let mut framed = (m.len() as u16).to_be_bytes().to_vec();
    framed.extend(m);
    framed
}

fn cfg() -> DnsConfig {
    DnsConfig {
        cache_entries: 0,
        cache_bytes: 0,
        // Less than one more query in the short tests' time.
        rate: 1,
        burst: 100,
        timeout: TIMEOUT,
    }
}

fn relay(seed: u64, now: Instant) -> TcpRelay {
    TcpRelay::new(&cfg(), "192.168.0.1/24".parse().unwrap(), &[], seed, now)
}

struct Net {
    now: Instant,
    relay: TcpRelay,
    client: Stack,
    resolvers: Vec<Stack>,
    /// Every packet the relay sent, with its time.
    sent: Vec<(Instant, TcpTransmit)>,
    /// Packets from the relay toward a resolver to lose, next first.
    lose_upstream: usize,
    /// Whether the resolvers answer.
    answering: bool,
    /// Queries the resolvers received.
    received: Vec<Vec<u8>>,
}

impl Net {
    fn new() -> Net {
        let now = Instant::from_millis(1_000_000);
        let mut relay = relay(7, now);
        relay.set_upstream(Some(upstream(0, UP_A, vec![RESOLVER])), now);
        let resolvers = [RESOLVER, RESOLVER_2]
            .iter()
            .map(|&a| {
                let mut s = Stack::new(a, 32, &[], true, 3, now);
                let mut l = socket(4096, 16384);
                l.listen(53).expect("listen");
                s.add(l);
                s
            })
            .collect();
        Net {
            now,
            relay,
            client: Stack::new(CLIENT, 24, &[], false, 5, now),
            resolvers,
            sent: Vec::new(),
            lose_upstream: 0,
            answering: true,
            received: Vec::new(),
        }
    }

    fn connect(&mut self, port: u16) -> SocketHandle {
        let h = self
            .client
            .connect(socket(16384, 4096), port, LAN)
            .expect("connect");
        self.pump();
        h
    }

    fn send(&mut self, h: SocketHandle, bytes: &[u8]) {
        let n = self.client.socket(h).send_slice(bytes).expect("send");
        assert_eq!(n, bytes.len());
        self.pump();
    }

    fn recv(&mut self, h: SocketHandle) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.client.socket(h).recv(|d| {
            out.extend_from_slice(d);
            (d.len(), ())
        });
        out
    }

    /// Resolver side: a fresh listener when the last one took a connection; answers.
    fn serve(&mut self) {
        for r in &mut self.resolvers {
            let handles: Vec<SocketHandle> = r.sockets.iter().map(|(h, _)| h).collect();
            let mut listening = false;
            for h in handles {
                let s = r.socket(h);
                listening |= s.state() == State::Listen;
                let mut buf = Vec::new();
                // A query is read only when its whole answer fits the send buffer.
                while s.send_capacity() - s.send_queue() >= 2 + 64 + ANSWER_PAD
                    && let Ok(Some(q)) = read_message(s, &mut buf, 65535)
                {
                    self.received.push(q.clone());
                    if self.answering && s.may_send() {
                        let a = answer(&q);
                        assert_eq!(s.send_slice(&a), Ok(a.len()));
                    }
                }
                if s.state() == State::CloseWait {
                    s.close();
                }
            }
            if !listening {
                let mut l = socket(4096, 16384);
                l.listen(53).expect("listen");
                r.add(l);
            }
        }
    }

    /// Moves packets until none moves.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            self.client.poll(self.now);
            self.serve();
            for r in &mut self.resolvers {
                r.poll(self.now);
            }
            while let Some(p) = self.client.pop_packet() {
                self.relay.handle_packet(Iface::Lan, &p, self.now);
                moved = true;
            }
            for i in 0..self.resolvers.len() {
                while let Some(p) = self.resolvers[i].pop_packet() {
                    let u = if seg(&p).1 == UP_A { 0 } else { 1 };
                    self.relay
                        .handle_packet(Iface::Uplink(UplinkId(u)), &p, self.now);
                    moved = true;
                }
            }
            while let Some(t) = self.relay.poll_transmit() {
                moved = true;
                self.sent.push((self.now, t.clone()));
                match t.iface {
                    Iface::Lan => self.client.input(&t.packet, self.now),
                    Iface::Uplink(_) if self.lose_upstream > 0 => self.lose_upstream -= 1,
                    Iface::Uplink(_) => {
                        let dst = seg(&t.packet).1;
                        if let Some(r) = self.resolvers.iter_mut().find(|r| r.addr() == dst) {
                            r.input(&t.packet, self.now);
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("packets never settle");
    }

    /// Advances the clock to the next timer of anyone and runs it.
    fn tick(&mut self) {
        let mut next = self.relay.poll_timeout();
        for s in std::iter::once(&mut self.client).chain(self.resolvers.iter_mut()) {
            next = next.into_iter().chain(s.poll_at(self.now)).min();
        }
        let next = next.unwrap_or(self.now + Duration::from_secs(1));
        self.now = self.now.max(next);
        self.relay.handle_timeout(self.now);
        self.pump();
    }

    /// Ticks until `done` or `limit` of simulated time passes.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.tick();
        }
        done(self)
    }

    fn upstream_segments(&self) -> Vec<(Instant, Seg)> {
        self.sent
            .iter()
            .filter(|(_, t)| t.iface != Iface::Lan)
            .map(|(at, t)| (*at, seg(&t.packet)))
            .collect()
    }
}

fn upstream(u: u8, addr: Ipv4Addr, resolvers: Vec<Ipv4Addr>) -> TcpUpstream {
    TcpUpstream {
        uplink: UplinkId(u),
        addr,
        resolvers,
    }
}

/// Reads from the client until `want` bytes arrived.
fn read_answer(net: &mut Net, h: SocketHandle, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    net.run_until(Duration::from_secs(30), |n| {
        got.extend(n.recv(h));
        got.len() >= want
    });
    got
}

#[test]
fn a_query_is_relayed_from_the_uplink_address_and_answered_byte_for_byte() {
    let mut net = Net::new();
    let h = net.connect(40000);
    assert_eq!(net.client.socket(h).state(), State::Established);
    let q = query(0x1234);
    net.send(h, &q);
    let want = answer(&q);
    assert_eq!(read_answer(&mut net, h, want.len()), want);
    assert_eq!(net.received, vec![q]);
    let up = net.upstream_segments();
    let (_, (src, dst, sport, dport, f, _)) = up[0];
    assert_eq!((src, dst, dport, f), (UP_A, RESOLVER, 53, flags::SYN));
    assert!(TCP_PORTS.contains(&sport), "{sport}");
    assert!(up.iter().all(|(_, s)| s.0 == UP_A && s.2 == sport));
    let c = net.relay.counters();
    assert_eq!((c.accepted, c.queries, c.answers), (1, 1, 1));
}

#[test]
fn a_length_prefix_and_query_split_across_segments_are_reassembled() {
    let mut net = Net::new();
    let h = net.connect(40001);
    let q = query(7);
    let (head, last) = q.split_at(q.len() - 1);
    for b in head {
        net.send(h, std::slice::from_ref(b));
    }
    assert!(
        net.received.is_empty(),
        "nothing relayed before the query is whole"
    );
    let lan_data: Vec<usize> = net
        .sent
        .iter()
        .filter(|(_, t)| t.iface == Iface::Lan)
        .map(|(_, t)| seg(&t.packet).5)
        .collect();
    assert!(
        lan_data.iter().all(|&n| n == 0),
        "no answer before the query is whole"
    );
    net.send(h, last);
    let want = answer(&q);
    assert_eq!(read_answer(&mut net, h, want.len()), want);
    assert_eq!(net.received, vec![q]);
}

#[test]
fn two_pipelined_queries_on_one_connection_get_both_answers() {
    let mut net = Net::new();
    let h = net.connect(40002);
    let (q1, q2) = (query(1), query(2));
    net.send(h, &[q1.clone(), q2.clone()].concat());
    let want = [answer(&q1), answer(&q2)].concat();
    assert_eq!(read_answer(&mut net, h, want.len()), want);
    let syns = net
        .upstream_segments()
        .iter()
        .filter(|(_, s)| s.4 == flags::SYN)
        .count();
    assert_eq!(syns, 1, "one upstream connection per client connection");
}

#[test]
fn a_lost_syn_is_retransmitted_with_back_off() {
    let mut net = Net::new();
    net.lose_upstream = 4;
    let h = net.connect(40003);
    let q = query(9);
    net.send(h, &q);
    let want = answer(&q);
    assert_eq!(read_answer(&mut net, h, want.len()), want);
    let up = net.upstream_segments();
    let syns: Vec<Instant> = up
        .iter()
        .filter(|(_, s)| s.4 == flags::SYN && s.2 == up[0].1.2)
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(syns.len(), 5, "four lost, the fifth arrives: {up:?}");
    let gaps: Vec<Duration> = syns
        .windows(2)
        .map(|w| w[1].saturating_since(w[0]))
        .collect();
    // smoltcp doubles its RTO after three retransmissions in a row.
    assert!(gaps[3] > gaps[0], "back-off: {gaps:?}");
    assert_eq!(net.relay.counters().upstream_retries, 0);
}

#[test]
fn segments_for_no_connection_get_a_reset() {
    let mut net = Net::new();
    let mut p = vec![0; 40];
    let ack = TcpRepr {
        sport: 45000,
        dport: 53,
        seq: 100,
        ack: 200,
        flags: flags::ACK,
        window: 1000,
    };
    build_segment(&mut p, &OwnHeader::new(CLIENT, LAN), &ack).unwrap();
    net.relay.handle_packet(Iface::Lan, &p, net.now);
    let t = net.relay.poll_transmit().expect("an answer");
    assert_eq!(t.iface, Iface::Lan);
    assert_eq!(seg(&t.packet), (LAN, CLIENT, 53, 45000, flags::RST, 0));
    let to_port = TcpRepr {
        sport: 53,
        dport: *TCP_PORTS.start(),
        ..ack
    };
    build_segment(&mut p, &OwnHeader::new(RESOLVER, UP_A), &to_port).unwrap();
    net.relay
        .handle_packet(Iface::Uplink(UplinkId(0)), &p, net.now);
    let t = net.relay.poll_transmit().expect("an answer");
    assert_eq!(t.iface, Iface::Uplink(UplinkId(0)));
    assert_eq!(seg(&t.packet).4, flags::RST);
    assert!(net.relay.is_empty());
}

fn syn(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    let mut p = vec![0; 40];
    let repr = TcpRepr {
        sport,
        dport: 53,
        seq: 1,
        ack: 0,
        flags: flags::SYN,
        window: 1000,
    };
    build_segment(&mut p, &OwnHeader::new(src, LAN), &repr).unwrap();
    p
}

/// SYN-ACKs the relay sent to `dst`.
fn syn_acks(net: &mut TcpRelay, dst: Ipv4Addr) -> usize {
    std::iter::from_fn(|| net.poll_transmit())
        .filter(|t| {
            let s = seg(&t.packet);
            s.1 == dst && s.4 == flags::SYN | flags::ACK
        })
        .count()
}

#[test]
fn connections_are_bounded_per_client_and_in_total() {
    let now = Instant::from_millis(1000);
    let mut relay = relay(1, now);
    for port in 0..MAX_CONNS_PER_CLIENT as u16 + 2 {
        relay.handle_packet(Iface::Lan, &syn(CLIENT, 1000 + port), now);
    }
    assert_eq!(syn_acks(&mut relay, CLIENT), MAX_CONNS_PER_CLIENT);
    assert_eq!(relay.counters().refused_per_client, 2);
    // A retransmitted SYN of an open connection is not a new one.
    relay.handle_packet(Iface::Lan, &syn(CLIENT, 1000), now);
    assert_eq!(relay.counters().refused_per_client, 2);
    let mut host = 11;
    while relay.len() < MAX_CONNS {
        relay.handle_packet(
            Iface::Lan,
            &syn(Ipv4Addr::new(192, 168, 0, host), 1000),
            now,
        );
        host += 1;
    }
    relay.handle_packet(Iface::Lan, &syn(Ipv4Addr::new(192, 168, 0, 200), 1000), now);
    let last = Ipv4Addr::new(192, 168, 0, 200);
    assert_eq!(syn_acks(&mut relay, last), 0);
    assert_eq!(relay.counters().refused_total, 1);
    assert_eq!(relay.len(), MAX_CONNS);
    // Half-open connections time out and free their places.
    relay.handle_timeout(now + (HANDSHAKE - Duration::from_millis(1)));
    assert_eq!(relay.len(), MAX_CONNS);
    let later = now + HANDSHAKE;
    relay.handle_timeout(later);
    assert!(relay.is_empty());
    assert_eq!(relay.counters().handshake_timeouts, MAX_CONNS as u64);
    relay.handle_packet(Iface::Lan, &syn(last, 1000), later);
    assert_eq!(syn_acks(&mut relay, last), 1);
}

#[test]
fn an_oversized_or_undersized_query_resets_the_connection() {
    let mut net = Net::new();
    let h = net.connect(40004);
    net.send(h, &((MAX_QUERY + 1) as u16).to_be_bytes());
    assert_eq!(net.relay.counters().malformed, 1);
    assert_eq!(net.client.socket(h).state(), State::Closed);
    assert!(net.relay.is_empty());
    // Shorter than a DNS header: no query either.
    let h = net.connect(40009);
    net.send(h, &[0, 4, 1, 2, 3, 4]);
    assert_eq!(net.relay.counters().malformed, 2);
    assert_eq!(net.client.socket(h).state(), State::Closed);
    assert!(net.received.is_empty());
}

#[test]
fn after_failover_the_unanswered_query_leaves_through_the_new_uplink() {
    let mut net = Net::new();
    net.answering = false;
    let h = net.connect(40005);
    let q = query(0x42);
    net.send(h, &q);
    assert_eq!(net.received.len(), 1);
    net.answering = true;
    net.relay
        .set_upstream(Some(upstream(1, UP_B, vec![RESOLVER])), net.now);
    net.pump();
    let want = answer(&q);
    assert_eq!(read_answer(&mut net, h, want.len()), want);
    let syns: Vec<_> = net
        .upstream_segments()
        .into_iter()
        .filter(|(_, s)| s.4 == flags::SYN)
        .map(|(_, s)| s.0)
        .collect();
    assert_eq!(syns, vec![UP_A, UP_B]);
    let b: Vec<_> = net
        .sent
        .iter()
        .filter(|(_, t)| seg(&t.packet).0 == UP_B)
        .collect();
    assert!(b.iter().all(|(_, t)| t.iface == Iface::Uplink(UplinkId(1))));
    // A new query on the same connection also goes through the new uplink.
    let q2 = query(0x43);
    let before = net.sent.len();
    net.send(h, &q2);
    assert_eq!(read_answer(&mut net, h, answer(&q2).len()), answer(&q2));
    assert!(
        net.sent[before..]
            .iter()
            .all(|(_, t)| t.iface != Iface::Uplink(UplinkId(0)))
    );
}

#[test]
fn a_silent_resolver_is_replaced_by_the_next_then_the_client_is_reset() {
    let mut net = Net::new();
    net.relay
        .set_upstream(Some(upstream(0, UP_A, vec![RESOLVER, RESOLVER_2])), net.now);
    net.answering = false;
    let h = net.connect(40006);
    net.send(h, &query(5));
    let gone = net.run_until(Duration::from_secs(60), |n| {
        n.client.socket(h).state() == State::Closed
    });
    assert!(gone);
    let c = net.relay.counters();
    assert_eq!((c.upstream_retries, c.upstream_failed), (3, 1));
    let servers: Vec<Ipv4Addr> = net
        .upstream_segments()
        .iter()
        .filter(|(_, s)| s.4 == flags::SYN)
        .map(|(_, s)| s.1)
        .collect();
    assert_eq!(servers, [RESOLVER, RESOLVER_2, RESOLVER, RESOLVER_2]);
    assert_eq!(net.received.len(), MAX_TRIES);
}

#[test]
fn an_idle_connection_is_closed_with_a_fin() {
    let mut net = Net::new();
    let h = net.connect(40007);
    let q = query(3);
    net.send(h, &q);
    read_answer(&mut net, h, answer(&q).len());
    let closed = net.run_until(IDLE * 2, |n| !n.client.socket(h).may_recv());
    assert!(closed, "FIN from the router");
    assert_eq!(net.relay.counters().idle_closed, 1);
    net.client.socket(h).close();
    // Closed sockets go, TIME-WAIT ones after smoltcp's 10 s; the listener stays.
    let swept = net.run_until(Duration::from_secs(30), |n| {
        let up = n.relay.up.as_ref().expect("upstream");
        n.relay.is_empty()
            && n.relay.lan.sockets.iter().count() == 1
            && up.stack.sockets.iter().count() == 0
    });
    assert!(swept);
}

#[test]
fn a_query_without_an_upstream_resets_the_connection() {
    let mut net = Net::new();
    net.relay.set_upstream(None, net.now);
    let h = net.connect(40008);
    net.send(h, &query(1));
    assert_eq!(net.relay.counters().no_upstream, 1);
    assert_eq!(net.client.socket(h).state(), State::Closed);
}

#[test]
fn segments_from_a_former_uplink_are_counted_and_dropped() {
    let mut net = Net::new();
    net.relay
        .handle_packet(Iface::Uplink(UplinkId(1)), &syn(RESOLVER, 53), net.now);
    assert_eq!(net.relay.counters().stale, 1);
    assert!(net.relay.poll_transmit().is_none());
}

#[test]
fn a_reset_in_syn_received_frees_the_place_and_leaves_one_listener() {
    let now = Instant::from_millis(1000);
    let mut relay = relay(1, now);
    relay.handle_packet(Iface::Lan, &syn(CLIENT, 1000), now);
    assert_eq!(syn_acks(&mut relay, CLIENT), 1);
    assert_eq!(relay.len(), 1);
    let mut rst = vec![0; 40];
    let repr = TcpRepr {
        sport: 1000,
        dport: 53,
        seq: 2,
        ack: 0,
        flags: flags::RST,
        window: 0,
    };
    build_segment(&mut rst, &OwnHeader::new(CLIENT, LAN), &repr).unwrap();
    relay.handle_packet(Iface::Lan, &rst, now);
    assert!(relay.is_empty());
    assert_eq!(relay.lan.sockets.iter().count(), 1, "the listener alone");
    relay.handle_packet(Iface::Lan, &syn(CLIENT, 1001), now);
    assert_eq!(syn_acks(&mut relay, CLIENT), 1);
    assert_eq!(relay.len(), 1);
}

#[test]
fn queries_over_the_clients_bucket_reset_the_connection() {
    let mut net = Net::new();
    let burst = cfg().burst as usize;
    let h = net.connect(40010);
    let queries: Vec<u8> = (0..=burst as u16).flat_map(query).collect();
    net.send(h, &queries);
    let reset = net.run_until(Duration::from_millis(900), |n| {
        n.recv(h);
        n.client.socket(h).state() == State::Closed
    });
    assert!(reset);
    assert_eq!(net.relay.counters().rate_limited, 1);
    assert_eq!(
        net.received.len(),
        burst,
        "the one over the burst is not relayed"
    );
}

mod prop {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever arrives on either side, in any order and at any time: no panic, and the
        /// connections and sockets stay within their bounds.
        #[test]
        fn any_segments_keep_the_bounds(
            inputs in proptest::collection::vec(
                (any::<bool>(), 0..40u8, any::<u16>(), any::<u32>(), any::<u8>(), 0..3000u64),
                1..300,
            ),
            garbage in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut now = Instant::from_millis(1000);
            let mut r = relay(3, now);
            r.set_upstream(Some(upstream(0, UP_A, vec![RESOLVER])), now);
            for (lan, host, port, seq, flag_bits, wait) in inputs {
                now = now + Duration::from_millis(wait);
                let mut p = vec![0; 40];
                let (src, dst, sport, dport) = if lan {
                    (Ipv4Addr::new(192, 168, 0, 10 + host), LAN, 1000 + port % 16, 53)
                } else {
                    (RESOLVER, UP_A, 53, TCP_PORTS.start() + port % 8)
                };
                let repr = TcpRepr {
                    sport,
                    dport,
                    seq,
                    ack: seq.rotate_left(7),
                    flags: flag_bits & 0x3f,
                    window: 1000,
                };
                build_segment(&mut p, &OwnHeader::new(src, dst), &repr).unwrap();
                let iface = if lan { Iface::Lan } else { Iface::Uplink(UplinkId(0)) };
                r.handle_packet(iface, &p, now);
                r.handle_packet(iface, &garbage, now);
                r.handle_timeout(now);
                while r.poll_transmit().is_some() {}
                prop_assert!(r.len() <= MAX_CONNS);
                prop_assert!(r.lan.sockets.iter().count() <= 1 + MAX_CONNS + MAX_CLOSING + 1);
            }
        }
    }
}
