//! The fast path alone, on in-memory frames (no I/O): what one packet costs in
//! `FastPath::process`, so the lab numbers can be split into "our code" and "the syscalls".
//!
//! Cases:
//! - `established_out`: a 1500-byte TCP segment of an established flow, LAN -> uplink. The
//!   template is copied back into the buffer each iteration (the rewrite is in place), so the
//!   `copy_only` case gives the part of the figure that is the copy.
//! - `established_out_partial`: the same with VIRTIO_NET_HDR_F_NEEDS_CSUM, as frames arrive from
//!   the TAP when the LAN host offloads checksums.
//! - `established_in`: the reply direction, uplink -> LAN (inbound NAT lookup).
//! - `new_flow`: a TCP SYN from a new source port each iteration: route lookup, port allocation,
//!   session insert. The port pool holds at most 64512 mappings per (uplink, protocol), so a
//!   fresh NAT table is made every `NEW_FLOWS_PER_TABLE` packets, outside the timed section.
//! - `batch_out_{1k,1M}_{plain,prefetch}`: batches of `BATCH` ACKs of random established flows of
//!   a table of 1k or 1M sessions, LAN -> uplink, as a worker processes a batch: `plain` calls
//!   `process` on each frame, `prefetch` runs `prefetch_session` over the batch first. Times are
//!   per packet; writing the frames is outside the timed section.
//! - `batch_in_{1k,1M}_{plain,prefetch,two_passes}`: the same for their replies, uplink -> LAN;
//!   `two_passes` adds `prefetch_inbound_session` (the session behind each inbound entry).
//!
//! Target (issue 6): `established_out` <= 100 ns per packet.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant as WallClock};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use mhrouter::clock::Instant;
use mhrouter::fastpath::{
    Env, FastPath, SCRATCH_LEN, Verdict, prefetch_inbound_session, prefetch_session,
};
use mhrouter::nat::{FlowKey, FragTable, NatParams, NatTable, PROTO_TCP, TCP_ACK};
use mhrouter::prefix::Ipv4Prefix;
use mhrouter::route::{Health, Interfaces, RouteTable, StaticRoute, UplinkIf};
use mhrouter::snapshot::{LanState, Neighbours, Snapshot, UplinkState};
use mhrouter::wire::ethernet::{HEADER_LEN, MacAddr};
use mhrouter::wire::frame::IP_OFFSET;
use mhrouter::wire::ipv4::Ipv4Packet;
use mhrouter::wire::vnet::{self, VnetHdr};
use mhrouter::{Iface, UplinkId};

const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 6);
const WAN_A: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);
const PE_A: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 2);
const WAN_B: Ipv4Addr = Ipv4Addr::new(172, 17, 3, 1);
const PE_B: Ipv4Addr = Ipv4Addr::new(172, 17, 3, 2);

const LAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const HOST_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x10]);
const WAN_A_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0xa, 0x01]);
const PE_A_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0xa, 0x02]);
const WAN_B_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0xb, 0x01]);
const PE_B_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0xb, 0x02]);

const HOST_PORT: u16 = 40000;
const SERVER_PORT: u16 = 5201;
/// 1500-byte IP packets: 20 IP + 20 TCP + 1460 payload.
const PAYLOAD: usize = 1460;
/// Fresh NAT table this often in `new_flow`: a quarter of one port pool, so the port search
/// stays representative of a table that is not nearly full.
const NEW_FLOWS_PER_TABLE: u16 = 16384;
/// Frames per batch in the `batch_out` cases: a worker's receive batch.
const BATCH: usize = 32;
/// Inside endpoints of the `batch_out` flows: each holds one outside port of the uplink's pool
/// (64512), so a million flows share 50k endpoints (20 remotes each), as in `nat_scale`.
const ENDPOINTS: u32 = 50_000;

fn prefix(addr: Ipv4Addr, len: u8) -> Ipv4Prefix {
    Ipv4Prefix::new(addr, len).unwrap_or_else(|e| panic!("bench setup: {e}"))
}

/// The reference site with both uplinks up, a default route via isp-a (distance 10, untracked)
/// and both next hops and the LAN host resolved: the state the lab bench measures in.
fn snapshot() -> Snapshot {
    let ifaces = Interfaces {
        lan: prefix(LAN_ADDR, 24),
        uplinks: vec![
            UplinkIf {
                name: "isp-a".into(),
                address: prefix(WAN_A, 30),
                next_hop: PE_A,
            },
            UplinkIf {
                name: "isp-b".into(),
                address: prefix(WAN_B, 30),
                next_hop: PE_B,
            },
        ],
    };
    let default_via = |name: &str, uplink: u8, next_hop: Ipv4Addr, distance: u8| StaticRoute {
        name: name.into(),
        prefix: prefix(Ipv4Addr::UNSPECIFIED, 0),
        egress: Iface::Uplink(UplinkId(uplink)),
        next_hop,
        distance,
        weight: 1,
        track: None,
    };
    let routes = vec![
        default_via("a-default", 0, PE_A, 10),
        default_via("b-default", 1, PE_B, 11),
    ];
    let health = Health {
        carrier: vec![true, true],
        tracks: Vec::new(),
    };
    let uplink = |name: &str, address, mac, next_hop| UplinkState {
        name: name.into(),
        address: prefix(address, 30),
        mac,
        next_hop,
        mtu: 1500,
        mss_clamp: None,
        nat: true,
        nat_sources: Vec::new(),
        carrier: true,
    };
    Snapshot {
        routes: RouteTable::build(ifaces, routes, Vec::new(), &health),
        lan: LanState {
            address: prefix(LAN_ADDR, 24),
            mac: LAN_MAC,
            mtu: 1500,
            virtual_macs: vec![],
            vrrp: false,
        },
        uplinks: vec![
            uplink("isp-a", WAN_A, WAN_A_MAC, PE_A),
            uplink("isp-b", WAN_B, WAN_B_MAC, PE_B),
        ],
        ipv6: None,
        probes: Vec::new(),
    }
}

fn neighbours() -> Neighbours {
    Neighbours::new(
        [((Iface::Lan, HOST), HOST_MAC)].into_iter().collect(),
        vec![(PE_A, Some(PE_A_MAC)), (PE_B, Some(PE_B_MAC))],
    )
}

fn nat_table() -> NatTable {
    NatTable::new(NatParams::default(), &[Some(WAN_A), Some(WAN_B)])
}

/// A frame as the router reads it: virtio_net_hdr, Ethernet, IPv4, TCP (+ payload).
struct Segment {
    eth: (MacAddr, MacAddr),
    ip: (Ipv4Addr, Ipv4Addr),
    ports: (u16, u16),
    syn: bool,
    payload: usize,
    vnet: VnetHdr,
}

impl Segment {
    fn build(&self) -> Vec<u8> {
        let (src_mac, dst_mac) = self.eth;
        let builder = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
            .ipv4(self.ip.0.octets(), self.ip.1.octets(), 64)
            .tcp(self.ports.0, self.ports.1, 1_000_000, 64240);
        let builder = if self.syn {
            builder.syn()
        } else {
            builder.ack(2_000_000)
        };
        let payload = vec![0x5a; self.payload];
        let mut frame = vec![0u8; vnet::LEN];
        builder
            .write(&mut frame, &payload)
            .unwrap_or_else(|e| panic!("bench setup: {e}"));
        self.vnet
            .write(&mut frame)
            .unwrap_or_else(|e| panic!("bench setup: {e}"));
        frame
    }
}

fn outbound(vnet: VnetHdr) -> Segment {
    Segment {
        eth: (HOST_MAC, LAN_MAC),
        ip: (HOST, SERVER),
        ports: (HOST_PORT, SERVER_PORT),
        syn: false,
        payload: PAYLOAD,
        vnet,
    }
}

/// The header a TAP gives a frame whose TCP checksum the LAN host left to offload.
fn needs_csum() -> VnetHdr {
    VnetHdr {
        flags: vnet::flags::NEEDS_CSUM,
        csum_start: (HEADER_LEN + 20) as u16,
        csum_offset: 16,
        ..VnetHdr::default()
    }
}

/// Times `process` on a copy of `template`, checking first that it is forwarded on `egress`.
fn bench_forward(
    c: &mut Criterion,
    name: &str,
    env: &Env,
    template: &[u8],
    ingress: Iface,
    egress: Iface,
) {
    let mut fp = FastPath::default();
    let mut buf = template.to_vec();
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let v = fp.process(env, &mut buf, ingress, &mut scratch);
    assert_eq!(
        v,
        Verdict::Forward { egress },
        "{name}: bench setup is not forwarded"
    );
    let mut g = c.benchmark_group("fastpath");
    g.throughput(Throughput::Elements(1));
    g.bench_function(name, |b| {
        b.iter(|| {
            buf.copy_from_slice(template);
            black_box(fp.process(env, black_box(&mut buf), ingress, &mut scratch))
        })
    });
    g.finish();
}

fn fastpath(c: &mut Criterion) {
    let snap = snapshot();
    let nat = nat_table();
    let neighbours = neighbours();
    let frags = FragTable::default();
    let env = Env {
        snap: &snap,
        neighbours: &neighbours,
        nat: &nat,
        frags: &frags,
        now: Instant::now(),
    };
    let lan_to_a = (Iface::Lan, Iface::Uplink(UplinkId(0)));

    let plain = outbound(VnetHdr::default()).build();
    {
        let mut buf = plain.clone();
        let mut g = c.benchmark_group("fastpath");
        g.throughput(Throughput::Elements(1));
        g.bench_function("copy_only", |b| {
            b.iter(|| buf.copy_from_slice(black_box(&plain)))
        });
        g.finish();
    }
    // The flow's SYN opens its NAT session (a segment of no flow would be answered with a RST).
    let open = Segment {
        syn: true,
        payload: 0,
        ..outbound(VnetHdr::default())
    }
    .build();
    let verdict = FastPath::default().process(
        &env,
        &mut open.clone(),
        Iface::Lan,
        &mut vec![0u8; SCRATCH_LEN],
    );
    assert_eq!(
        verdict,
        Verdict::Forward { egress: lan_to_a.1 },
        "bench setup: SYN not forwarded"
    );
    bench_forward(c, "established_out", &env, &plain, lan_to_a.0, lan_to_a.1);
    let partial = outbound(needs_csum()).build();
    bench_forward(
        c,
        "established_out_partial",
        &env,
        &partial,
        lan_to_a.0,
        lan_to_a.1,
    );

    // The session the outbound cases created gives the outside port the reply is sent to.
    let key = FlowKey {
        proto: PROTO_TCP,
        inside: HOST,
        inside_port: HOST_PORT,
        remote: SERVER,
        remote_port: SERVER_PORT,
    };
    let t = nat
        .peek_outbound(&key)
        .unwrap_or_else(|| panic!("bench setup: no session after the outbound cases"));
    let reply = Segment {
        eth: (PE_A_MAC, WAN_A_MAC),
        ip: (SERVER, WAN_A),
        ports: (SERVER_PORT, t.outside_port),
        syn: false,
        payload: PAYLOAD,
        vnet: VnetHdr::default(),
    }
    .build();
    bench_forward(
        c,
        "established_in",
        &env,
        &reply,
        Iface::Uplink(UplinkId(0)),
        Iface::Lan,
    );

    let syn = Segment {
        syn: true,
        payload: 0,
        ..outbound(VnetHdr::default())
    }
    .build();
    let mut g = c.benchmark_group("fastpath");
    g.throughput(Throughput::Elements(1));
    g.bench_function("new_flow", |b| {
        b.iter_custom(|iters| new_flows(&snap, &neighbours, &frags, &syn, iters))
    });
    g.finish();
}

/// Sends `iters` SYNs from distinct source ports; returns the time spent in `process` alone.
fn new_flows(
    snap: &Snapshot,
    neighbours: &Neighbours,
    frags: &FragTable,
    syn: &[u8],
    iters: u64,
) -> Duration {
    // Source port at: vnet header, Ethernet header, 20-byte IP header.
    let sport_at = vnet::LEN + HEADER_LEN + 20;
    let mut fp = FastPath::default();
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let mut buf = syn.to_vec();
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let nat = nat_table();
        let env = Env {
            snap,
            neighbours,
            nat: &nat,
            frags,
            now: Instant::now(),
        };
        let chunk = left.min(u64::from(NEW_FLOWS_PER_TABLE));
        let start = WallClock::now();
        for port in 1..=chunk as u16 {
            buf.copy_from_slice(syn);
            buf[sport_at..sport_at + 2].copy_from_slice(&port.to_be_bytes());
            black_box(fp.process(&env, black_box(&mut buf), Iface::Lan, &mut scratch));
        }
        total += start.elapsed();
        assert_eq!(
            nat.len() as u64,
            chunk,
            "new_flow: every SYN must create a session"
        );
        left -= chunk;
    }
    total
}

/// Established flow `i` of the `batch_out` cases: 200 LAN hosts, a remote address per flow.
fn flow(i: u32) -> FlowKey {
    let endpoint = i % ENDPOINTS;
    FlowKey {
        proto: PROTO_TCP,
        inside: Ipv4Addr::from_bits(HOST.to_bits() + endpoint % 200),
        inside_port: 1024 + (endpoint / 200) as u16,
        remote: Ipv4Addr::from_bits(0x5000_0000 + i),
        remote_port: 443,
    }
}

/// `template` rewritten to be a segment from `src` to `dst` (IP checksum included; the fast
/// path does not verify the TCP one).
fn write_segment(buf: &mut [u8], template: &[u8], src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) {
    buf.copy_from_slice(template);
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[IP_OFFSET..]);
    ip.set_src(src.0);
    ip.set_dst(dst.0);
    ip.fill_checksum();
    let ports = IP_OFFSET + 20;
    buf[ports..ports + 2].copy_from_slice(&src.1.to_be_bytes());
    buf[ports + 2..ports + 4].copy_from_slice(&dst.1.to_be_bytes());
}

/// The passes a batch gets before `process`.
#[derive(Clone, Copy)]
enum Passes {
    None,
    /// `prefetch_session` on every frame.
    Prefetch,
    /// `prefetch_session`, then `prefetch_inbound_session` on every frame.
    Both,
}

fn batches(c: &mut Criterion) {
    let snap = snapshot();
    // Every LAN host of the flows resolved, for the replies.
    let hosts = (0..200).map(|h| {
        let ip = Ipv4Addr::from_bits(HOST.to_bits() + h);
        ((Iface::Lan, ip), HOST_MAC)
    });
    let neighbours = Neighbours::new(
        hosts.collect(),
        vec![(PE_A, Some(PE_A_MAC)), (PE_B, Some(PE_B_MAC))],
    );
    let frags = FragTable::default();
    let ack = Segment {
        payload: 0,
        ..outbound(VnetHdr::default())
    }
    .build();
    let reply = Segment {
        eth: (PE_A_MAC, WAN_A_MAC),
        ip: (SERVER, WAN_A),
        payload: 0,
        ..outbound(VnetHdr::default())
    }
    .build();
    let mut g = c.benchmark_group("fastpath");
    g.throughput(Throughput::Elements(1));
    for (flows, label) in [(1_000u32, "1k"), (1_000_000, "1M")] {
        let params = NatParams {
            max_entries: flows as usize,
            ..NatParams::default()
        };
        let nat = NatTable::new(params, &[Some(WAN_A), Some(WAN_B)]);
        let now = Instant::now();
        let outside_ports: Vec<u16> = (0..flows)
            .map(|i| {
                nat.create_outbound(&flow(i), UplinkId(0), now, TCP_ACK, Some(1))
                    .unwrap_or_else(|e| panic!("bench setup: flow {i}: {e}"))
                    .outside_port
            })
            .collect();
        let env = Env {
            snap: &snap,
            neighbours: &neighbours,
            nat: &nat,
            frags: &frags,
            now,
        };
        let out = |buf: &mut [u8], i: u32| {
            let k = flow(i);
            write_segment(
                buf,
                &ack,
                (k.inside, k.inside_port),
                (k.remote, k.remote_port),
            );
        };
        let back = |buf: &mut [u8], i: u32| {
            let k = flow(i);
            let to = (WAN_A, outside_ports[i as usize]);
            write_segment(buf, &reply, (k.remote, k.remote_port), to);
        };
        let cases = [
            ("out", Iface::Lan, Passes::None, "plain"),
            ("out", Iface::Lan, Passes::Prefetch, "prefetch"),
            ("in", Iface::Uplink(UplinkId(0)), Passes::None, "plain"),
            (
                "in",
                Iface::Uplink(UplinkId(0)),
                Passes::Prefetch,
                "prefetch",
            ),
            ("in", Iface::Uplink(UplinkId(0)), Passes::Both, "two_passes"),
        ];
        for (dir, ingress, passes, mode) in cases {
            let write: &dyn Fn(&mut [u8], u32) = if dir == "out" { &out } else { &back };
            let template = if dir == "out" { &ack } else { &reply };
            let batch = Batch {
                env: &env,
                template,
                write,
                flows,
                ingress,
                passes,
            };
            g.bench_function(format!("batch_{dir}_{label}_{mode}"), |b| {
                b.iter_custom(|iters| batch.run(iters))
            });
        }
    }
    g.finish();
}

/// Batches of `BATCH` frames of random flows of `flows`, written by `write`.
struct Batch<'a> {
    env: &'a Env<'a>,
    template: &'a [u8],
    write: &'a dyn Fn(&mut [u8], u32),
    flows: u32,
    ingress: Iface,
    passes: Passes,
}

impl Batch<'_> {
    /// Processes at least `iters` frames in batches; returns the time of `iters` of them.
    fn run(&self, iters: u64) -> Duration {
        let env = self.env;
        let mut fp = FastPath::default();
        let mut scratch = vec![0u8; SCRATCH_LEN];
        let mut frames: Vec<Vec<u8>> = (0..BATCH).map(|_| self.template.to_vec()).collect();
        // xorshift64: reproducible random flows without a dependency.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let batches = iters.div_ceil(BATCH as u64);
        let mut total = Duration::ZERO;
        let mut forwarded = 0;
        for _ in 0..batches {
            for frame in &mut frames {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (self.write)(frame, (rng % u64::from(self.flows)) as u32);
            }
            let start = WallClock::now();
            if !matches!(self.passes, Passes::None) {
                for frame in &frames {
                    prefetch_session(env, frame, self.ingress);
                }
            }
            if matches!(self.passes, Passes::Both) {
                for frame in &frames {
                    prefetch_inbound_session(env, frame, self.ingress);
                }
            }
            for frame in &mut frames {
                let v = fp.process(env, black_box(frame), self.ingress, &mut scratch);
                forwarded += u64::from(matches!(v, Verdict::Forward { .. }));
            }
            total += start.elapsed();
        }
        assert_eq!(
            forwarded,
            batches * BATCH as u64,
            "batch cases: every frame must be forwarded"
        );
        total.mul_f64(iters as f64 / (batches * BATCH as u64) as f64)
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = fastpath, batches
}
criterion_main!(benches);
