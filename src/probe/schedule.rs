//! IP SLA operations: when each probe is due, the frame it sends, and which received packet
//! answers it. Pure: the probe engine (`control::probe`) turns its packets into frames and
//! hands over what arrives.
//!
//! Probes are pinned by construction (SPEC 15): the frame carries the uplink's own address and
//! goes to that uplink's next hop on that uplink's socket; replies are matched by (uplink, id,
//! sequence), ids drawn at random so an outsider cannot forge a success. Ids and source ports
//! come from `PROBE_PORTS`, which no NAT session can hold (SPEC 35). A probe to an IPv6 target
//! (ICMPv6 echo, TCP or DNS) leaves from the uplink's `address6` (SPEC 34), matched the same way.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::clock::Instant;
use crate::config::{ProbeConfig, ProbeKind};
use crate::probe::probe_port;
use crate::probe::stats::{ProbeResult, ProbeStats};
use crate::wire::icmp::{self, EchoRepr, IcmpPacket, types};
use crate::wire::icmpv6::{self, Icmpv6Packet};
use crate::wire::ipv4::{Ipv4Packet, OwnHeader, proto};
use crate::wire::ipv6::{self, Ipv6Packet, next_header};
use crate::wire::tcp::{self, TcpPacket, TcpRepr};
use crate::wire::udp::{self, UdpPacket};

/// A probe sent before its next hop is resolved would count as lost and hold its track down
/// for delay-up at start.
const FIRST_PROBE_DELAY: Duration = Duration::from_millis(300);

/// Attempts kept for the loss window of each probe's statistics.
const LOSS_WINDOW: usize = 20;

/// DNS response codes that say the resolver is not working (SERVFAIL, REFUSED): such an answer
/// does not count as a reply, so the attempt ends as lost.
const DNS_FAILURES: [u8; 2] = [2, 5];

/// One probe with its runtime state.
pub struct Probe {
    pub def: ProbeConfig,
    pub uplink: usize,
    pub stats: ProbeStats,
    next_send: Instant,
    outstanding: Option<Outstanding>,
    /// ICMP identifier and TCP/DNS source port (in `PROBE_PORTS`), also the DNS id's key: fixed
    /// per probe so the fast path knows it (SPEC 35), random per run.
    ident: u16,
    seq: u16,
}

/// A probe's definition and statistics as the health table publishes them.
#[derive(Clone)]
pub struct ProbeStatus {
    pub def: ProbeConfig,
    pub stats: ProbeStats,
}

#[derive(Clone, Copy)]
struct Outstanding {
    seq: u16,
    sent: Instant,
    /// The uplink address it left from: a reply must come back to it.
    src: IpAddr,
    /// Source port of this attempt (TCP/DNS).
    sport: u16,
}

/// What a frame to send needs from the uplink: its address of the target's family.
#[derive(Clone, Copy)]
pub struct Source {
    pub addr: IpAddr,
}

/// A probe attempt that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub probe: usize,
    pub result: ProbeResult,
}

/// After a TCP probe's SYN-ACK, the RST that closes the half-open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpReset {
    pub probe: usize,
    pub sport: u16,
    pub seq: u32,
}

pub struct ProbeSet {
    pub probes: Vec<Probe>,
}

fn random_u16(r: &RandomState, salt: u64) -> u16 {
    r.hash_one(salt) as u16
}

impl ProbeSet {
    /// `uplink_of` maps each probe's uplink name to its index; probe `i` uses
    /// `probe_port(port_base + i)`, as the forwarding snapshot has it. The first attempts wait
    /// `FIRST_PROBE_DELAY` (time for the next hops' ARP) and are spread over up to a second so
    /// probes do not all fire at once.
    pub fn new(
        defs: Vec<ProbeConfig>,
        uplink_of: impl Fn(&str) -> usize,
        port_base: u16,
        now: Instant,
    ) -> ProbeSet {
        let random = RandomState::new();
        let n = defs.len().max(1) as u32;
        let probes = defs
            .into_iter()
            .enumerate()
            .map(|(i, def)| Probe {
                uplink: uplink_of(&def.uplink),
                next_send: now
                    + FIRST_PROBE_DELAY
                    + def.interval.min(Duration::from_secs(1)) * i as u32 / n,
                stats: ProbeStats::new(LOSS_WINDOW),
                outstanding: None,
                ident: probe_port(port_base.wrapping_add(i as u16)),
                seq: random_u16(&random, 1000 + i as u64),
                def,
            })
            .collect();
        ProbeSet { probes }
    }

    /// Keeps statistics and sequence numbers of probes whose name survives a reload (the port
    /// is the one of the probe's new place, as the forwarding snapshot has it).
    pub fn carry_over(&mut self, old: ProbeSet) {
        for mut o in old.probes {
            if let Some(p) = self.probes.iter_mut().find(|p| p.def.name == o.def.name) {
                p.stats = std::mem::replace(&mut o.stats, ProbeStats::new(LOSS_WINDOW));
                p.seq = o.seq;
            }
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.probes
            .iter()
            .map(|p| match p.outstanding {
                Some(o) => (o.sent + p.def.timeout).min(p.next_send),
                None => p.next_send,
            })
            .min()
    }

    /// Attempts that timed out by `now`; records them in the statistics.
    pub fn expire(&mut self, now: Instant) -> Vec<Outcome> {
        let mut out = Vec::new();
        for (i, p) in self.probes.iter_mut().enumerate() {
            if let Some(o) = p.outstanding
                && now >= o.sent + p.def.timeout
            {
                p.outstanding = None;
                p.stats.record(ProbeResult::Timeout);
                out.push(Outcome {
                    probe: i,
                    result: ProbeResult::Timeout,
                });
            }
        }
        out
    }

    /// Probes due to send at `now`.
    pub fn due(&self, now: Instant) -> Vec<usize> {
        (0..self.probes.len())
            .filter(|&i| {
                let p = &self.probes[i];
                p.outstanding.is_none() && now >= p.next_send
            })
            .collect()
    }

    /// Writes probe `i`'s next attempt (an IP packet from `src`, of the target's family) into
    /// `out` and starts its timer. Returns the packet length.
    pub fn build(&mut self, i: usize, src: Source, out: &mut [u8], now: Instant) -> Option<usize> {
        let p = self.probes.get_mut(i)?;
        p.seq = p.seq.wrapping_add(1);
        // Schedule from the planned time, not from now, so intervals do not drift.
        p.next_send = (p.next_send + p.def.interval).max(now);
        let (n, sport) = match (src.addr, p.def.target) {
            (IpAddr::V4(s), IpAddr::V4(d)) => p.build4(s, d, out)?,
            (IpAddr::V6(s), IpAddr::V6(d)) => p.build6(s, d, out)?,
            _ => return None,
        };
        p.outstanding = Some(Outstanding {
            seq: p.seq,
            sent: now,
            src: src.addr,
            sport,
        });
        Some(n)
    }

    /// Matches an IP packet that arrived on `uplink` against the outstanding probes of that
    /// uplink. Returns the outcome and, for a TCP SYN-ACK, the RST to send back.
    pub fn match_reply(
        &mut self,
        uplink: usize,
        packet: &[u8],
        now: Instant,
    ) -> Option<(Outcome, Option<TcpReset>)> {
        let (i, reset) = match packet.first()? >> 4 {
            6 => self.match_reply6(uplink, packet)?,
            _ => self.match_reply4(uplink, packet)?,
        };
        let p = &mut self.probes[i];
        let o = p.outstanding.take()?;
        let rtt = now.saturating_since(o.sent);
        let result = if rtt > p.def.threshold {
            ProbeResult::OverThreshold(rtt)
        } else {
            ProbeResult::Ok(rtt)
        };
        p.stats.record(result);
        Some((Outcome { probe: i, result }, reset))
    }

    /// The probe an IPv4 packet answers, and for a TCP SYN-ACK the RST to send back.
    fn match_reply4(&self, uplink: usize, packet: &[u8]) -> Option<(usize, Option<TcpReset>)> {
        let ip = Ipv4Packet::new_checked(packet).ok()?;
        if ip.is_fragment() {
            return None;
        }
        let (src, dst) = (IpAddr::V4(ip.src()), IpAddr::V4(ip.dst()));
        self.probes.iter().enumerate().find_map(|(i, p)| {
            let o = p.outstanding?;
            if p.uplink != uplink || src != p.def.target || dst != o.src {
                return None;
            }
            match (&p.def.kind, ip.protocol()) {
                (ProbeKind::IcmpEcho { .. }, proto::ICMP) => {
                    let m = IcmpPacket::new_checked(ip.payload()).ok()?;
                    (m.msg_type() == types::ECHO_REPLY
                        && m.ident() == p.ident
                        && m.seq_no() == o.seq)
                        .then_some((i, None))
                }
                (ProbeKind::Tcp { port }, proto::TCP) => {
                    let t = TcpPacket::new_checked(ip.payload()).ok()?;
                    tcp_answer(i, p, o, *port, &t)
                }
                (ProbeKind::Dns { port, .. }, proto::UDP) => {
                    let u = UdpPacket::new_checked(ip.payload()).ok()?;
                    dns_answer(p, o, *port, &u).then_some((i, None))
                }
                _ => None,
            }
        })
    }

    /// The probe an IPv6 packet answers (from its target to the address the attempt left
    /// from): an ICMPv6 echo reply with its id and sequence and a valid checksum, a TCP or DNS
    /// answer as over IPv4; for a TCP SYN-ACK the RST to send back.
    fn match_reply6(&self, uplink: usize, packet: &[u8]) -> Option<(usize, Option<TcpReset>)> {
        let ip = Ipv6Packet::new_checked(packet).ok()?;
        let upper = ip.upper_layer().ok()?;
        if upper.fragment.is_some() {
            return None;
        }
        let l4 = ip.payload().get(upper.offset..)?;
        let (src, dst) = (IpAddr::V6(ip.src()), IpAddr::V6(ip.dst()));
        self.probes.iter().enumerate().find_map(|(i, p)| {
            let o = p.outstanding?;
            if p.uplink != uplink || src != p.def.target || dst != o.src {
                return None;
            }
            match (&p.def.kind, upper.protocol) {
                (ProbeKind::IcmpEcho { .. }, next_header::ICMPV6) => {
                    let m = Icmpv6Packet::new_checked(l4).ok()?;
                    (m.msg_type() == icmpv6::types::ECHO_REPLY
                        && m.verify_checksum(ip.src(), ip.dst())
                        && m.ident() == p.ident
                        && m.seq_no() == o.seq)
                        .then_some((i, None))
                }
                (ProbeKind::Tcp { port }, next_header::TCP) => {
                    let t = TcpPacket::new_checked(l4).ok()?;
                    tcp_answer(i, p, o, *port, &t)
                }
                (ProbeKind::Dns { port, .. }, next_header::UDP) => {
                    let u = UdpPacket::new_checked(l4).ok()?;
                    dns_answer(p, o, *port, &u).then_some((i, None))
                }
                _ => None,
            }
        })
    }
}

impl ProbeSet {
    /// The probe an ICMP error that arrived on `uplink` is about: the packet it quotes is the
    /// outstanding attempt of a probe of that uplink (target, protocol, id or source port). The
    /// attempt itself runs on to its timeout; errors that quote no attempt are not accepted.
    pub fn match_error(&self, uplink: usize, packet: &[u8]) -> Option<usize> {
        if packet.first()? >> 4 == 6 {
            return self.match_error6(uplink, packet);
        }
        let ip = Ipv4Packet::new_checked(packet).ok()?;
        let m = IcmpPacket::new_checked(ip.payload()).ok()?;
        if ip.protocol() != proto::ICMP || !icmp::is_error(m.msg_type()) {
            return None;
        }
        let q = Ipv4Packet::new_quoted(ip.payload().get(icmp::HEADER_LEN..)?).ok()?;
        let l4 = q.payload();
        self.probes.iter().position(|p| {
            let Some(o) = p.outstanding else {
                return false;
            };
            if p.uplink != uplink || IpAddr::V4(q.dst()) != p.def.target {
                return false;
            }
            match (&p.def.kind, q.protocol()) {
                (ProbeKind::IcmpEcho { .. }, proto::ICMP) => {
                    l4.len() >= 8 && {
                        let e = IcmpPacket::new_unchecked(l4);
                        e.ident() == p.ident && e.seq_no() == o.seq
                    }
                }
                (ProbeKind::Tcp { .. }, proto::TCP) | (ProbeKind::Dns { .. }, proto::UDP) => {
                    l4.len() >= 2 && u16::from_be_bytes([l4[0], l4[1]]) == o.sport
                }
                _ => false,
            }
        })
    }

    /// [`match_error`](Self::match_error) for ICMPv6: the error quotes the request of an
    /// outstanding attempt, from the address it left from to the probe's target (echo id and
    /// sequence, or TCP/UDP source port).
    fn match_error6(&self, uplink: usize, packet: &[u8]) -> Option<usize> {
        let ip = Ipv6Packet::new_checked(packet).ok()?;
        let upper = ip.upper_layer().ok()?;
        if upper.protocol != next_header::ICMPV6 || upper.fragment.is_some() {
            return None;
        }
        let m = Icmpv6Packet::new_checked(ip.payload().get(upper.offset..)?).ok()?;
        if !icmpv6::is_error(m.msg_type()) {
            return None;
        }
        let q = Ipv6Packet::new_quoted(m.payload()).ok()?;
        let quoted = q.upper_layer().ok()?;
        if quoted.fragment.is_some() {
            return None;
        }
        let l4 = q.payload().get(quoted.offset..)?;
        let (src, dst) = (IpAddr::V6(q.src()), IpAddr::V6(q.dst()));
        self.probes.iter().position(|p| {
            let Some(o) = p.outstanding else {
                return false;
            };
            if p.uplink != uplink || dst != p.def.target || src != o.src {
                return false;
            }
            match (&p.def.kind, quoted.protocol) {
                (ProbeKind::IcmpEcho { .. }, next_header::ICMPV6) => {
                    l4.len() >= icmpv6::HEADER_LEN && {
                        let e = Icmpv6Packet::new_unchecked(l4);
                        e.msg_type() == icmpv6::types::ECHO_REQUEST
                            && e.ident() == p.ident
                            && e.seq_no() == o.seq
                    }
                }
                (ProbeKind::Tcp { .. }, next_header::TCP)
                | (ProbeKind::Dns { .. }, next_header::UDP) => {
                    l4.len() >= 2 && u16::from_be_bytes([l4[0], l4[1]]) == o.sport
                }
                _ => false,
            }
        })
    }
}

impl Probe {
    /// An IPv4 attempt from `src` to `dst`: its length and source port (TCP/DNS).
    fn build4(&self, src: Ipv4Addr, dst: Ipv4Addr, out: &mut [u8]) -> Option<(usize, u16)> {
        let ip = OwnHeader {
            src,
            dst,
            ttl: 64,
            dscp: self.def.dscp,
        };
        Some(match &self.def.kind {
            ProbeKind::IcmpEcho { payload_size } => {
                let echo = EchoRepr {
                    msg_type: types::ECHO_REQUEST,
                    ident: self.ident,
                    seq: self.seq,
                };
                let (payload, len) = echo_payload(*payload_size);
                let n = icmp::build_echo(out, &ip, &echo, &payload[..len]).ok()?;
                (n, 0)
            }
            ProbeKind::Tcp { port } => {
                let n = tcp::build_segment(out, &ip, &self.syn(*port)).ok()?;
                (n, self.ident)
            }
            ProbeKind::Dns { port, query } => {
                let sport = self.ident;
                let mut q = [0u8; 300];
                let qlen = dns_query(&mut q, self.seq_id(self.seq), query)?;
                let n = udp::build_datagram(out, &ip, (sport, *port), &q[..qlen]).ok()?;
                (n, sport)
            }
        })
    }

    /// An IPv6 attempt from `src` to `dst`, its DSCP in the traffic class: its length and
    /// source port (TCP/DNS).
    fn build6(&self, src: Ipv6Addr, dst: Ipv6Addr, out: &mut [u8]) -> Option<(usize, u16)> {
        let ip = ipv6::OwnHeader::new(src, dst);
        let (n, sport) = match &self.def.kind {
            ProbeKind::IcmpEcho { payload_size } => {
                let echo = icmpv6::EchoRepr {
                    msg_type: icmpv6::types::ECHO_REQUEST,
                    ident: self.ident,
                    seq: self.seq,
                };
                let (payload, len) = echo_payload(*payload_size);
                (
                    icmpv6::build_echo(out, &ip, &echo, &payload[..len]).ok()?,
                    0,
                )
            }
            ProbeKind::Tcp { port } => {
                let n = tcp::build_segment_v6(out, &ip, &self.syn(*port)).ok()?;
                (n, self.ident)
            }
            ProbeKind::Dns { port, query } => {
                let mut q = [0u8; 300];
                let qlen = dns_query(&mut q, self.seq_id(self.seq), query)?;
                let ports = (self.ident, *port);
                (
                    udp::build_datagram_v6(out, &ip, ports, &q[..qlen]).ok()?,
                    self.ident,
                )
            }
        };
        Ipv6Packet::new_unchecked(&mut out[..n]).set_version_tc_flow(self.def.dscp << 2, 0);
        Some((n, sport))
    }

    /// The SYN of a TCP attempt to `port`: from the probe's port, its id and sequence in the ISN.
    fn syn(&self, port: u16) -> TcpRepr {
        TcpRepr {
            sport: self.ident,
            dport: port,
            seq: isn(self.ident, self.seq),
            ack: 0,
            flags: tcp::flags::SYN,
            window: 65535,
        }
    }

    pub fn status(&self) -> ProbeStatus {
        ProbeStatus {
            def: self.def.clone(),
            stats: self.stats.clone(),
        }
    }

    fn seq_id(&self, seq: u16) -> u16 {
        seq ^ self.ident
    }
}

/// A TCP attempt's initial sequence number: the probe's id and the attempt's sequence, so only
/// an answer to this attempt acknowledges it.
fn isn(ident: u16, seq: u16) -> u32 {
    u32::from(ident) << 16 | u32::from(seq)
}

/// Whether `t` answers probe `i`'s outstanding attempt `o` to `port` (IPv4 or IPv6): a RST, or
/// a SYN-ACK with the RST that closes the half-open connection.
fn tcp_answer(
    i: usize,
    p: &Probe,
    o: Outstanding,
    port: u16,
    t: &TcpPacket<&[u8]>,
) -> Option<(usize, Option<TcpReset>)> {
    if t.src_port() != port
        || t.dst_port() != o.sport
        || t.ack() != isn(p.ident, o.seq).wrapping_add(1)
    {
        return None;
    }
    let f = t.flags();
    if f & tcp::flags::RST != 0 {
        Some((i, None))
    } else if f & (tcp::flags::SYN | tcp::flags::ACK) == tcp::flags::SYN | tcp::flags::ACK {
        let reset = TcpReset {
            probe: i,
            sport: o.sport,
            seq: t.ack(),
        };
        Some((i, Some(reset)))
    } else {
        None
    }
}

/// Whether `u` answers probe `p`'s outstanding DNS attempt `o` to `port`: its id, the
/// response bit, and a resolver that works (not SERVFAIL or REFUSED).
fn dns_answer(p: &Probe, o: Outstanding, port: u16, u: &UdpPacket<&[u8]>) -> bool {
    let d = u.payload();
    u.src_port() == port
        && u.dst_port() == o.sport
        && d.len() >= 12
        && u16::from_be_bytes([d[0], d[1]]) == p.seq_id(o.seq)
        && d[2] & 0x80 != 0
        && !DNS_FAILURES.contains(&(d[3] & 0x0f))
}

/// An echo probe's payload: `size` bytes counting up (at most 1472, what one IPv4 frame holds).
fn echo_payload(size: u16) -> ([u8; 1472], usize) {
    let mut payload = [0u8; 1472];
    let len = usize::from(size).min(payload.len());
    for (k, b) in payload[..len].iter_mut().enumerate() {
        *b = k as u8;
    }
    (payload, len)
}

/// Writes a DNS query for `name` (type A, class IN, recursion desired) into `out`.
fn dns_query(out: &mut [u8], id: u16, name: &str) -> Option<usize> {
    let mut n = 0;
    let mut put = |b: &[u8]| -> Option<()> {
        out.get_mut(n..n + b.len())?.copy_from_slice(b);
        n += b.len();
        Some(())
    };
    put(&id.to_be_bytes())?;
    put(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])?;
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let len = u8::try_from(label.len()).ok().filter(|&l| l <= 63)?;
        put(&[len])?;
        put(label.as_bytes())?;
    }
    put(&[0, 0, 1, 0, 1])?;
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);
    const TARGET: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 6);
    const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 9);

    fn def(kind: ProbeKind) -> ProbeConfig {
        ProbeConfig {
            name: "p".into(),
            kind,
            uplink: "isp-a".into(),
            target: TARGET.into(),
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(150),
            threshold: Duration::from_millis(100),
            dscp: 0,
        }
    }

    /// One probe on uplink 0, its first attempt sent at 1 s: the set and the request.
    fn sent(kind: ProbeKind) -> (ProbeSet, Vec<u8>) {
        let mut set = ProbeSet::new(vec![def(kind)], |_| 0, 0, Instant::ZERO);
        let mut out = [0u8; 1600];
        let n = set
            .build(
                0,
                Source { addr: ME.into() },
                &mut out,
                Instant::from_millis(1000),
            )
            .unwrap();
        (set, out[..n].to_vec())
    }

    fn at(ms: u64) -> Instant {
        Instant::from_millis(1000 + ms)
    }

    fn echo(src: Ipv4Addr, msg_type: u8, ident: u16, seq: u16) -> Vec<u8> {
        echo_to(src, ME, msg_type, ident, seq)
    }

    fn echo_to(src: Ipv4Addr, dst: Ipv4Addr, msg_type: u8, ident: u16, seq: u16) -> Vec<u8> {
        let mut out = [0u8; 200];
        let echo = EchoRepr {
            msg_type,
            ident,
            seq,
        };
        let n = icmp::build_echo(&mut out, &OwnHeader::new(src, dst), &echo, &[]).unwrap();
        out[..n].to_vec()
    }

    fn echo_ids(request: &[u8]) -> (u16, u16) {
        let ip = Ipv4Packet::new_checked(request).unwrap();
        let m = IcmpPacket::new_checked(ip.payload()).unwrap();
        (m.ident(), m.seq_no())
    }

    fn ok(ms: u64) -> Option<ProbeResult> {
        Some(ProbeResult::Ok(Duration::from_millis(ms)))
    }

    fn matched(set: &mut ProbeSet, uplink: usize, pkt: &[u8], ms: u64) -> Option<ProbeResult> {
        set.match_reply(uplink, pkt, at(ms)).map(|(o, _)| o.result)
    }

    #[test]
    fn echo_reply_matches_only_its_own_attempt() {
        let (mut set, req) = sent(ProbeKind::IcmpEcho { payload_size: 8 });
        let (ident, seq) = echo_ids(&req);
        // Forgeries: another id, another sequence, another source, another destination (found
        // by the probe_reply fuzz target), another uplink, a request.
        for (uplink, pkt) in [
            (0, echo(TARGET, types::ECHO_REPLY, ident ^ 1, seq)),
            (0, echo_to(TARGET, ELSEWHERE, types::ECHO_REPLY, ident, seq)),
            (
                0,
                echo(TARGET, types::ECHO_REPLY, ident, seq.wrapping_sub(1)),
            ),
            (0, echo(ELSEWHERE, types::ECHO_REPLY, ident, seq)),
            (1, echo(TARGET, types::ECHO_REPLY, ident, seq)),
            (0, echo(TARGET, types::ECHO_REQUEST, ident, seq)),
        ] {
            assert_eq!(matched(&mut set, uplink, &pkt, 5), None);
        }
        let reply = echo(TARGET, types::ECHO_REPLY, ident, seq);
        assert_eq!(matched(&mut set, 0, &reply, 7), ok(7));
        // A duplicate of the answered reply counts nothing more.
        assert_eq!(matched(&mut set, 0, &reply, 8), None);
        assert_eq!(set.probes[0].stats.last(), ok(7));
    }

    /// An ICMP error (from any router) quoting `quoted`, as it arrives at the probe's uplink.
    fn error_quoting(quoted: &[u8]) -> Vec<u8> {
        let repr = icmp::ErrorRepr {
            src: ELSEWHERE,
            dst: ME,
            msg_type: types::TIME_EXCEEDED,
            code: 0,
            rest_of_header: 0,
        };
        let mut out = [0u8; 600];
        let n = icmp::build_error(&mut out, &repr, quoted).unwrap();
        out[..n].to_vec()
    }

    /// SPEC 35: an ICMP error is about a probe only when the packet it quotes is the probe's
    /// outstanding attempt (target, protocol, id and sequence, or source port).
    #[test]
    fn errors_are_about_a_probe_only_when_they_quote_its_attempt() {
        let (set, req) = sent(ProbeKind::IcmpEcho { payload_size: 0 });
        assert_eq!(set.match_error(0, &error_quoting(&req)), Some(0));
        assert_eq!(
            set.match_error(1, &error_quoting(&req)),
            None,
            "another uplink"
        );
        let mut other_seq = req.clone();
        other_seq[20 + 7] ^= 1;
        assert_eq!(set.match_error(0, &error_quoting(&other_seq)), None);
        let (set, syn) = sent(ProbeKind::Tcp { port: 5201 });
        assert_eq!(set.match_error(0, &error_quoting(&syn)), Some(0));
        let mut other_port = syn.clone();
        other_port[20] ^= 1;
        assert_eq!(set.match_error(0, &error_quoting(&other_port)), None);
        assert_eq!(set.match_error(0, &syn), None, "not an error");
    }

    /// The configured DSCP is what leaves in the TOS byte (46, EF, is 0xb8), not shifted twice.
    #[test]
    fn probes_carry_their_dscp() {
        let mut d = def(ProbeKind::IcmpEcho { payload_size: 0 });
        d.dscp = 46;
        let mut set = ProbeSet::new(vec![d], |_| 0, 0, Instant::ZERO);
        let mut out = [0u8; 200];
        let n = set
            .build(
                0,
                Source { addr: ME.into() },
                &mut out,
                Instant::from_millis(1000),
            )
            .unwrap();
        let ip = Ipv4Packet::new_checked(&out[..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(out[1], 0xb8);
    }

    #[test]
    fn slow_late_and_next_replies() {
        let (mut set, req) = sent(ProbeKind::IcmpEcho { payload_size: 0 });
        let (ident, seq) = echo_ids(&req);
        let reply = echo(TARGET, types::ECHO_REPLY, ident, seq);
        // Beyond the threshold (100 ms) but within the timeout (150 ms): over threshold.
        assert_eq!(
            matched(&mut set, 0, &reply, 120),
            Some(ProbeResult::OverThreshold(Duration::from_millis(120)))
        );

        // The next attempt times out; its reply arriving after that is not a success.
        let mut out = [0u8; 200];
        let n = set
            .build(0, Source { addr: ME.into() }, &mut out, at(200))
            .unwrap();
        let (_, seq2) = echo_ids(&out[..n]);
        assert_eq!(
            seq2,
            seq.wrapping_add(1),
            "each attempt has its own sequence"
        );
        assert!(set.expire(at(349)).is_empty(), "not before the timeout");
        assert_eq!(
            set.expire(at(350)),
            vec![Outcome {
                probe: 0,
                result: ProbeResult::Timeout
            }]
        );
        let late = echo(TARGET, types::ECHO_REPLY, ident, seq2);
        assert_eq!(matched(&mut set, 0, &late, 360), None);
        // Nor does the old attempt's reply answer a newer one.
        let n = set
            .build(0, Source { addr: ME.into() }, &mut out, at(400))
            .unwrap();
        let (_, seq3) = echo_ids(&out[..n]);
        assert_eq!(matched(&mut set, 0, &late, 401), None);
        let good = echo(TARGET, types::ECHO_REPLY, ident, seq3);
        assert_eq!(matched(&mut set, 0, &good, 403), ok(3));
    }

    fn tcp_answer(sport: u16, dport: u16, ack: u32, flags: u8) -> Vec<u8> {
        let mut out = [0u8; 100];
        let answer = TcpRepr {
            sport,
            dport,
            seq: 7,
            ack,
            flags,
            window: 100,
        };
        let n = tcp::build_segment(&mut out, &OwnHeader::new(TARGET, ME), &answer).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn tcp_syn_ack_and_rst_match_only_with_our_sequence() {
        let (mut set, req) = sent(ProbeKind::Tcp { port: 5201 });
        let ip = Ipv4Packet::new_checked(&req[..]).unwrap();
        let syn = TcpPacket::new_checked(ip.payload()).unwrap();
        let (sport, isn) = (syn.src_port(), syn.seq());
        let syn_ack = tcp::flags::SYN | tcp::flags::ACK;
        for forged in [
            tcp_answer(5201, sport, isn, syn_ack),
            tcp_answer(5201, sport ^ 1, isn + 1, syn_ack),
            tcp_answer(80, sport, isn + 1, syn_ack),
            tcp_answer(5201, sport, isn + 1, tcp::flags::ACK),
        ] {
            assert_eq!(set.match_reply(0, &forged, at(5)), None);
        }
        let (outcome, reset) = set
            .match_reply(0, &tcp_answer(5201, sport, isn + 1, syn_ack), at(6))
            .unwrap();
        assert_eq!(outcome.result, ProbeResult::Ok(Duration::from_millis(6)));
        assert_eq!(
            reset,
            Some(TcpReset {
                probe: 0,
                sport,
                seq: isn + 1
            }),
            "the half-open connection is closed"
        );

        // A RST (port closed) answers too: the target is reachable.
        let mut out = [0u8; 100];
        let n = set
            .build(0, Source { addr: ME.into() }, &mut out, at(200))
            .unwrap();
        let ip = Ipv4Packet::new_checked(&out[..n]).unwrap();
        let syn = TcpPacket::new_checked(ip.payload()).unwrap();
        let rst = tcp_answer(5201, syn.src_port(), syn.seq() + 1, tcp::flags::RST);
        let (outcome, reset) = set.match_reply(0, &rst, at(204)).unwrap();
        assert_eq!(outcome.result, ProbeResult::Ok(Duration::from_millis(4)));
        assert_eq!(reset, None);
    }

    #[test]
    fn dns_answer_needs_our_id_and_the_response_bit() {
        let (mut set, req) = sent(ProbeKind::Dns {
            port: 53,
            query: "probe.lab".into(),
        });
        let ip = Ipv4Packet::new_checked(&req[..]).unwrap();
        let q = UdpPacket::new_checked(ip.payload()).unwrap();
        let (sport, query) = (q.src_port(), q.payload().to_vec());
        let answer = |id_xor: u16, flags: u8, rcode: u8| {
            let mut d = query.clone();
            let id = u16::from_be_bytes([d[0], d[1]]) ^ id_xor;
            d[..2].copy_from_slice(&id.to_be_bytes());
            d[2] = flags;
            d[3] = rcode;
            let mut out = [0u8; 400];
            let ip = OwnHeader::new(TARGET, ME);
            let n = udp::build_datagram(&mut out, &ip, (53, sport), &d).unwrap();
            out[..n].to_vec()
        };
        assert_eq!(
            matched(&mut set, 0, &answer(1, 0x81, 0), 3),
            None,
            "another id"
        );
        assert_eq!(
            matched(&mut set, 0, &answer(0, 0x01, 0), 3),
            None,
            "a query, not a response"
        );
        for (rcode, name) in [(2, "SERVFAIL"), (5, "REFUSED")] {
            assert_eq!(
                matched(&mut set, 0, &answer(0, 0x81, rcode), 3),
                None,
                "{name} is a failing resolver, not a reply"
            );
        }
        // NXDOMAIN: the resolver works, the name does not exist.
        assert_eq!(matched(&mut set, 0, &answer(0, 0x81, 3), 4), ok(4));
    }
}
