//! The passes over a received batch before `process`: for each frame, the NAT key it will be
//! looked up by, read cheaply (no checksum, no validation beyond the lengths it reads), and a
//! prefetch of the table slots that key lives in; for a batch from an uplink, a second pass
//! that prefetches the session each inbound entry leads to. By the time `process` reaches the
//! frame, the lookup finds them in cache instead of waiting for DRAM (the table of a million
//! sessions is far larger than the caches). A wrong key costs a useless prefetch, nothing
//! else: `process` decides. Small tables stay in cache without help: the worker runs the
//! passes only from `SESSIONS_WORTH_PREFETCHING` sessions on.

use super::Env;
use crate::Iface;
use crate::nat::{FlowKey, InboundKey};
use crate::wire::ethernet::{EthernetFrame, ethertype};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::icmp::{IcmpPacket, types};
use crate::wire::ipv4::{Ipv4Packet, proto};
use crate::wire::udp::UdpPacket;

/// Prefetches the NAT entry `frame` (virtio_net_hdr, Ethernet, IPv4) will be looked up by, if
/// it is a TCP or UDP segment or an ICMP echo (request from the LAN, reply from an uplink).
#[inline]
pub fn prefetch_session(env: &Env, frame: &[u8], ingress: Iface) {
    match nat_key(frame, ingress) {
        Some(NatKey::Out(key)) => env.nat.prefetch_outbound(&key),
        Some(NatKey::In(key)) => env.nat.prefetch_inbound(&key),
        None => {}
    }
}

/// The second pass over a batch from an uplink, after `prefetch_session` on every frame:
/// prefetches the session each inbound entry leads to (the inbound lookup's second table),
/// taking each frame's shard lock briefly.
#[inline]
pub fn prefetch_inbound_session(env: &Env, frame: &[u8], ingress: Iface) {
    if let Some(NatKey::In(key)) = nat_key(frame, ingress) {
        env.nat.prefetch_inbound_session(&key);
    }
}

/// Sessions from which the passes pay: a table of this many takes some 6 MB, more than the
/// caches hold beside everything else. Below it the lookups hit the caches anyway, and the
/// passes cost each frame a parse and a few hashes for nothing (`cargo bench --bench
/// fastpath -- batch_`: about 20 ns a frame at 1k sessions, where they save 100-200 at 1M).
const SESSIONS_WORTH_PREFETCHING: usize = 65_536;

/// Whether a batch gets the prefetch passes: once per batch, from the table's size.
pub fn worth_prefetching(env: &Env) -> bool {
    env.nat.len() >= SESSIONS_WORTH_PREFETCHING
}

#[derive(Debug, PartialEq, Eq)]
enum NatKey {
    Out(FlowKey),
    In(InboundKey),
}

/// The key NAT will look `frame` up by; for an echo the identifier is the inside host's port
/// and the remote's is 0.
#[inline]
fn nat_key(frame: &[u8], ingress: Iface) -> Option<NatKey> {
    let eth = EthernetFrame::new_unchecked(frame.get(ETH_OFFSET..IP_OFFSET)?);
    if eth.ethertype() != ethertype::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_quoted(&frame[IP_OFFSET..]).ok()?;
    if ip.frag_offset() != 0 {
        return None;
    }
    // The ports, or the echo type and identifier: the first 8 bytes.
    let l4 = ip.payload().get(..8)?;
    let (sport, dport) = match (ip.protocol(), ingress) {
        (proto::TCP | proto::UDP, _) => {
            let ports = UdpPacket::new_unchecked(l4);
            (ports.src_port(), ports.dst_port())
        }
        (proto::ICMP, Iface::Lan) => {
            let icmp = IcmpPacket::new_unchecked(l4);
            (icmp.msg_type() == types::ECHO_REQUEST).then(|| (icmp.ident(), 0))?
        }
        (proto::ICMP, Iface::Uplink(_)) => {
            let icmp = IcmpPacket::new_unchecked(l4);
            (icmp.msg_type() == types::ECHO_REPLY).then(|| (0, icmp.ident()))?
        }
        _ => return None,
    };
    let proto = ip.protocol();
    Some(match ingress {
        Iface::Lan => NatKey::Out(FlowKey {
            proto,
            inside: ip.src(),
            inside_port: sport,
            remote: ip.dst(),
            remote_port: dport,
        }),
        Iface::Uplink(uplink) => NatKey::In(InboundKey {
            uplink,
            proto,
            outside_port: dport,
            remote: ip.src(),
            remote_port: sport,
        }),
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use etherparse::PacketBuilder;

    use super::*;
    use crate::UplinkId;
    use crate::clock::Instant;
    use crate::fastpath::valid_frames::eth;
    use crate::nat::{NatParams, NatTable};
    use crate::wire::ethernet::MacAddr;

    const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
    const SERVER: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 6);
    const OUTSIDE: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);
    const UPLINK: Iface = Iface::Uplink(UplinkId(0));

    type Ip = etherparse::PacketBuilderStep<etherparse::IpHeaders>;
    type Written = Result<(), etherparse::err::packet::BuildWriteError>;

    fn frame(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        l4: impl FnOnce(Ip, &mut Vec<u8>) -> Written,
    ) -> Vec<u8> {
        let mut ip = Vec::new();
        l4(PacketBuilder::ipv4(src.octets(), dst.octets(), 64), &mut ip)
            .unwrap_or_else(|e| panic!("test frame: {e}"));
        eth(
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
            &ip,
        )
    }

    /// For a TCP, UDP and echo flow with a session: the key read from an outbound frame is the
    /// session's, and the one read from its reply finds the session.
    #[test]
    fn keys_are_those_the_session_is_found_by() {
        let nat = NatTable::new(NatParams::default(), &[Some(OUTSIDE)]);
        let cases: [(u8, u16, u16); 3] = [
            (proto::TCP, 40000, 443),
            (proto::UDP, 5353, 53),
            (proto::ICMP, 77, 0),
        ];
        for (p, inside_port, remote_port) in cases {
            let key = FlowKey {
                proto: p,
                inside: HOST,
                inside_port,
                remote: SERVER,
                remote_port,
            };
            let t = nat
                .create_outbound(&key, UplinkId(0), Instant::from_millis(0), 0, None)
                .unwrap_or_else(|e| panic!("{p}: {e}"));
            let outside_port = t.outside_port;
            let (out, back) = match p {
                proto::TCP => (
                    frame(HOST, SERVER, |b, o| {
                        b.tcp(inside_port, remote_port, 1, 100).write(o, &[])
                    }),
                    frame(SERVER, OUTSIDE, |b, o| {
                        b.tcp(remote_port, outside_port, 1, 100).write(o, &[])
                    }),
                ),
                proto::UDP => (
                    frame(HOST, SERVER, |b, o| {
                        b.udp(inside_port, remote_port).write(o, &[1])
                    }),
                    frame(SERVER, OUTSIDE, |b, o| {
                        b.udp(remote_port, outside_port).write(o, &[1])
                    }),
                ),
                _ => (
                    frame(HOST, SERVER, |b, o| {
                        b.icmpv4_echo_request(inside_port, 1).write(o, &[])
                    }),
                    frame(SERVER, OUTSIDE, |b, o| {
                        b.icmpv4_echo_reply(outside_port, 1).write(o, &[])
                    }),
                ),
            };
            assert_eq!(nat_key(&out, Iface::Lan), Some(NatKey::Out(key)), "{p}");
            let Some(NatKey::In(inbound)) = nat_key(&back, UPLINK) else {
                panic!("{p}: no inbound key");
            };
            assert_eq!(nat.peek_inbound(&inbound), Some(t), "{p}");
        }
    }

    #[test]
    fn frames_no_session_lookup_starts_from_have_no_key() {
        let echo_reply = frame(SERVER, HOST, |b, o| b.icmpv4_echo_reply(7, 1).write(o, &[]));
        assert_eq!(nat_key(&echo_reply, Iface::Lan), None);
        let echo_request = frame(SERVER, OUTSIDE, |b, o| {
            b.icmpv4_echo_request(7, 1).write(o, &[])
        });
        assert_eq!(nat_key(&echo_request, UPLINK), None);
        let mut fragment = frame(HOST, SERVER, |b, o| b.udp(1, 2).write(o, &[0; 16]));
        // Fragment offset 8 bytes: no transport header in it.
        fragment[IP_OFFSET + 7] = 1;
        assert_eq!(nat_key(&fragment, Iface::Lan), None);
        let short = frame(HOST, SERVER, |b, o| b.udp(1, 2).write(o, &[]));
        assert_eq!(nat_key(&short[..short.len() - 1], Iface::Lan), None);
        assert_eq!(nat_key(&short[..IP_OFFSET - 1], Iface::Lan), None);
    }
}
