//! Stateful: the input is a set of limits (NAT entries and sessions per host, the port pool,
//! the fragment table, neighbours on the LAN and on the uplinks, frames and bytes held per
//! neighbour) and then a sequence of operations against the NAT table, the fragment table and
//! the neighbour cache, driven the way the workers and the control thread drive them: frames
//! from LAN hosts and from the Internet (a few hosts and ports, replies to what went out,
//! fragments), ARP from LAN hosts, clock advances, expiry sweeps and uplink flushes. After every
//! step every table is within its bound, and every frame's outcome passes
//! `fastpath::valid_frames::check`.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mhrouter::clock::Instant;
use mhrouter::config::LimitsConfig;
use mhrouter::control::arp::{ArpEngine, ArpEvent, NextHop};
use mhrouter::control::{Addressing, IfAddr};
use mhrouter::fastpath::{
    Env, FastPath, SCRATCH_LEN, Verdict, prefetch_inbound_session, prefetch_session,
};
use mhrouter::fuzz::{Bytes, valid_frames};
use mhrouter::nat::{FragTable, NatParams, NatTable};
use mhrouter::neigh::NeighParams;
use mhrouter::snapshot::Neighbours;
use mhrouter::wire::arp;
use mhrouter::wire::ethernet::MacAddr;
use mhrouter::wire::frame::IP_OFFSET;
use mhrouter::wire::ipv4::Ipv4Packet;
use mhrouter::wire::tcp::flags;
use mhrouter::wire::vnet;
use mhrouter::{Iface, UplinkId};
use valid_frames::{Case, Ends, Frag, OUTSIDE, OUTSIDE_B, SERVER, Seeded, Transport};

const REMOTES: [[u8; 4]; 3] = [SERVER, [172, 19, 0, 9], [203, 0, 113, 5]];

/// A LAN host: 192.168.0.10 and up.
fn host(i: u8) -> [u8; 4] {
    [192, 168, 0, 10 + i % 8]
}

fn host_mac(i: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 9, 10 + i % 8])
}

/// A packet that left by an uplink, as its reply will match it.
#[derive(Clone, Copy)]
struct Sent {
    uplink: UplinkId,
    transport: Transport,
    ends: Ends,
}

struct Limits {
    nat: NatParams,
    frags: usize,
    neigh: NeighParams,
}

fn limits(b: &mut Bytes) -> (Limits, Duration) {
    let nat = NatParams {
        max_entries: 1 + usize::from(b.u8() % 48),
        max_sessions_per_host: 1 + usize::from(b.u8() % 12),
        port_min: 1024,
        port_max: 1024 + u16::from(b.u8() % 64),
        ..NatParams::default()
    };
    let frags = 1 + usize::from(b.u8() % 8);
    let frag_lifetime = Duration::from_secs(1 + u64::from(b.u8() % 30));
    let neigh = NeighParams {
        max_lan: 1 + usize::from(b.u8() % 6),
        max_uplinks: 1 + usize::from(b.u8() % 3),
        queue_len: 1 + usize::from(b.u8() % 4),
        queue_bytes: 64 + usize::from(b.u16() % 2048),
        ..NeighParams::default()
    };
    (Limits { nat, frags, neigh }, frag_lifetime)
}

/// Every table within its bound.
fn check_bounds(s: &Seeded, arp: &ArpEngine, l: &Limits, now: Instant) {
    let nat = &s.world.nat;
    assert!(nat.len() <= l.nat.max_entries, "{} NAT sessions", nat.len());
    let sessions = nat.sessions(None, now);
    assert_eq!(sessions.len(), nat.len(), "sessions listed and counted");
    let mut per_host: HashMap<Ipv4Addr, usize> = HashMap::new();
    for x in &sessions {
        *per_host.entry(x.key.inside).or_default() += 1;
    }
    for (h, n) in per_host {
        assert!(n <= l.nat.max_sessions_per_host, "{h} holds {n} sessions");
    }
    assert!(
        s.world.frags.len() <= l.frags,
        "{} fragments",
        s.world.frags.len()
    );
    let u = arp.table().usage();
    assert!(u.lan <= l.neigh.max_lan, "{u:?}");
    assert!(u.uplinks <= l.neigh.max_uplinks, "{u:?}");
    assert!(u.most_frames_held <= l.neigh.queue_len, "{u:?}");
    assert!(u.most_bytes_held <= l.neigh.queue_bytes, "{u:?}");
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let (l, frag_lifetime) = limits(&mut b);
    let mut now = valid_frames::now();
    let mut world = valid_frames::world(1500);
    world.nat = NatTable::new(l.nat, &[Some(OUTSIDE.into()), Some(OUTSIDE_B.into())]);
    world.frags = FragTable::new(l.frags, frag_lifetime);
    let s = Seeded {
        world,
        flows: Vec::new(),
    };
    let mut s = s;
    let snap_uplinks: Vec<(Ipv4Addr, IfAddr)> = s
        .world
        .snap
        .uplinks
        .iter()
        .map(|u| {
            (
                u.next_hop,
                IfAddr {
                    prefix: u.address,
                    mac: u.mac,
                },
            )
        })
        .collect();
    let addressing = Addressing {
        lan: IfAddr {
            prefix: s.world.snap.lan.address,
            mac: s.world.snap.lan.mac,
        },
        uplinks: snap_uplinks.iter().map(|&(_, a)| a).collect(),
    };
    let next_hops = snap_uplinks
        .iter()
        .map(|&(addr, _)| NextHop {
            addr,
            carrier: true,
        })
        .collect();
    let mut arp = ArpEngine::new(addressing, next_hops, l.neigh.clone(), now);
    // The next hops answer at once; the LAN hosts only when an operation says so.
    for (u, &(nh, _)) in snap_uplinks.iter().enumerate() {
        let mut f = vec![0u8; vnet::LEN + arp::MIN_FRAME_LEN];
        let mac = MacAddr([2, 0, 0, 0, 1, 0xa + u as u8]);
        let me = s.world.snap.uplinks[u].address.addr();
        arp::build_frame(
            &mut f[vnet::LEN..],
            MacAddr::BROADCAST,
            arp::op::REQUEST,
            mac,
            nh,
            MacAddr::ZERO,
            me,
        )
        .unwrap();
        arp.handle_frame(Iface::Uplink(UplinkId(u as u8)), &f, now);
    }
    let mut fp = FastPath::new(&LimitsConfig::default());
    let mut sent: Vec<Sent> = Vec::new();
    let mut stale = true;
    for _ in 0..64 {
        if b.is_empty() {
            break;
        }
        if stale {
            let next_hops = snap_uplinks
                .iter()
                .enumerate()
                .map(|(u, &(nh, _))| (nh, arp.lookup(Iface::Uplink(UplinkId(u as u8)), nh)))
                .collect();
            s.world.neighbours = Neighbours::new(arp.resolved(), next_hops);
            stale = false;
        }
        let frame = match b.u8() % 8 {
            0..=2 => Some(lan_frame(&mut b, &s)),
            3 | 4 => Some(uplink_frame(&mut b, &s, &sent)),
            5 => {
                let i = b.u8();
                let mut f = vec![0u8; vnet::LEN + arp::MIN_FRAME_LEN];
                let (op, dst) = if b.bool() {
                    (arp::op::REQUEST, MacAddr::BROADCAST)
                } else {
                    (arp::op::REPLY, valid_frames::LAN_MAC)
                };
                arp::build_frame(
                    &mut f[vnet::LEN..],
                    dst,
                    op,
                    host_mac(i),
                    host(i).into(),
                    valid_frames::LAN_MAC,
                    valid_frames::LAN_ROUTER.into(),
                )
                .unwrap();
                arp.handle_frame(Iface::Lan, &f, now);
                None
            }
            6 => {
                now = now + Duration::from_millis(u64::from(b.u16()) * 20);
                arp.handle_timeout(now);
                None
            }
            _ => {
                match b.u8() % 3 {
                    0 => {
                        s.world.nat.expire(now);
                        s.world.frags.expire(now);
                    }
                    u => {
                        s.world.nat.flush_uplink(UplinkId(u - 1));
                    }
                }
                None
            }
        };
        if let Some((ingress, before)) = frame {
            let mut after = before.clone();
            let mut scratch = vec![0u8; SCRATCH_LEN];
            let env = Env {
                snap: &s.world.snap,
                neighbours: &s.world.neighbours,
                nat: &s.world.nat,
                frags: &s.world.frags,
                now,
            };
            prefetch_session(&env, &after, ingress);
            prefetch_inbound_session(&env, &after, ingress);
            let verdict = fp.process(&env, &mut after, ingress, &mut scratch);
            if let Err(e) = valid_frames::check(&s, ingress, &before, &after, verdict, &scratch) {
                panic!("{verdict:?} on {ingress:?}: {e}");
            }
            match verdict {
                Verdict::Forward {
                    egress: Iface::Uplink(u),
                }
                | Verdict::NeedsNeighbour {
                    egress: Iface::Uplink(u),
                    ..
                } => {
                    if let Some(x) = outbound(u, &after) {
                        sent.push(x);
                        if sent.len() > 16 {
                            sent.remove(0);
                        }
                    }
                }
                _ => {}
            }
            // IPv6 next hops are the NDP engine's, which this target does not drive.
            if let Verdict::NeedsNeighbour {
                egress,
                next_hop: IpAddr::V4(next_hop),
            } = verdict
            {
                arp.send_via(egress, next_hop, after, now);
            }
        }
        while arp.poll_transmit().is_some() {}
        while let Some(e) = arp.poll_event() {
            stale |= matches!(e, ArpEvent::Learned { .. } | ArpEvent::Removed);
        }
        check_bounds(&s, &arp, &l, now);
    }
});

/// A frame from a LAN host: to a remote, the router, another LAN host, or a fragment.
fn lan_frame(b: &mut Bytes, s: &Seeded) -> (Iface, Vec<u8>) {
    let h = b.u8();
    let dst = match b.u8() % 6 {
        0..=2 => REMOTES[usize::from(b.u8()) % 3],
        3 => OUTSIDE,
        4 => host(b.u8()),
        _ => b.addr(),
    };
    let transport = match b.u8() % 6 {
        0 | 1 => Transport::Tcp {
            flags: b.pick(&[
                flags::SYN,
                flags::ACK,
                flags::FIN | flags::ACK,
                flags::RST,
                flags::SYN | flags::ACK,
            ]),
            mss: b.bool(),
        },
        2 | 3 => Transport::Udp,
        4 => Transport::EchoRequest,
        _ => b.transport(),
    };
    let ends = Ends {
        src: host(h),
        sport: b.pick(&[1000, 1001, 2000, 40000]),
        dst,
        dport: b.pick(&[80, 53, 443, 8080]),
    };
    frame(b, s, 0, transport, ends)
}

/// A frame from the Internet: a reply to what left, or something to an uplink's address.
fn uplink_frame(b: &mut Bytes, s: &Seeded, sent: &[Sent]) -> (Iface, Vec<u8>) {
    let pick = usize::from(b.u8());
    if !sent.is_empty() && pick % 4 != 0 {
        let x = sent[pick % sent.len()];
        let transport = match x.transport {
            Transport::EchoRequest => Transport::EchoReply,
            Transport::Tcp { .. } => Transport::Tcp {
                flags: b.pick(&[
                    flags::ACK,
                    flags::SYN | flags::ACK,
                    flags::FIN | flags::ACK,
                    flags::RST,
                ]),
                mss: false,
            },
            t => t,
        };
        let ends = Ends {
            src: x.ends.dst,
            sport: x.ends.dport,
            dst: x.ends.src,
            dport: x.ends.sport,
        };
        return frame(b, s, 1 + x.uplink.0, transport, ends);
    }
    let side = 1 + b.u8() % 2;
    let ends = Ends {
        src: REMOTES[usize::from(b.u8()) % 3],
        sport: b.port(),
        dst: if side == 1 { OUTSIDE } else { OUTSIDE_B },
        dport: b.port(),
    };
    let transport = b.transport();
    frame(b, s, side, transport, ends)
}

/// The frame of `transport` between `ends` on `side` through the generator of valid frames.
fn frame(
    b: &mut Bytes,
    s: &Seeded,
    side: u8,
    transport: Transport,
    ends: Ends,
) -> (Iface, Vec<u8>) {
    let frag = match b.u8() % 8 {
        0 => Frag::First,
        1 => Frag::Later {
            seeded: false,
            offset: 1 + b.u16() % 199,
        },
        _ => Frag::Whole,
    };
    let n = usize::from(b.u8());
    let case = Case {
        side,
        flow: None,
        transport,
        ends,
        ttl: 64,
        df: false,
        frag,
        // A few datagrams, so later fragments can follow a first one.
        ident: u16::from(b.u8() % 4),
        payload: vec![0x42; n * 4],
        partial: b.bool(),
        gso: (vnet::gso::NONE, 0),
        our_mac: true,
    };
    valid_frames::build(&case, s)
}

/// What a packet that left by `uplink` looks like to the reply that will match it.
fn outbound(uplink: UplinkId, frame: &[u8]) -> Option<Sent> {
    let p = Ipv4Packet::new_checked(&frame[IP_OFFSET..]).ok()?;
    let (sport, dport) = valid_frames::nat_ports(&p)?;
    let transport = match p.protocol() {
        6 => Transport::Tcp {
            flags: 0,
            mss: false,
        },
        17 => Transport::Udp,
        1 => Transport::EchoRequest,
        _ => return None,
    };
    // An echo's identifier travels as the source port of the request, the destination port
    // of the reply.
    let ends = Ends {
        src: p.src().octets(),
        sport,
        dst: p.dst().octets(),
        dport: if p.protocol() == 1 { sport } else { dport },
    };
    Some(Sent {
        uplink,
        transport,
        ends,
    })
}
