//! Worker threads (docs/architecture.md): each owns one TAP queue and one packet socket per uplink,
//! waits in epoll, drains a batch, prefetches the NAT entries of its frames (large tables), runs
//! the fast path to completion and sends in batches. What they share with the other threads is
//! in `shared`: the published snapshot and neighbours, the sharded NAT table and the punt queues.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock::Instant;
use crate::config::LimitsConfig;
use crate::counters::{Counters, DropReason, bump};
use crate::fastpath::{
    Env, FastPath, PuntClass, SCRATCH_LEN, Verdict, complete_checksum, prefetch_inbound_session,
    prefetch_session, worth_prefetching,
};
use crate::gro::Gro;
use crate::io::MAX_FRAME;
use crate::io::packet::{PacketSocket, RecvBatch, send_all};
use crate::io::poll::{Epoll, Waker};
use crate::io::tap::TapQueue;
use crate::shared::{Punt, Shared};
use crate::wire::frame::IP_OFFSET;
use crate::wire::ipv4;
use crate::wire::vnet::VnetHdr;
use crate::{Iface, UplinkId};

/// Frames drained from one source before moving to the next.
pub const BATCH: usize = 32;

/// How often a worker asks the kernel how many frames its uplink sockets lost.
const SOCKET_DROPS_EVERY: Duration = Duration::from_millis(100);

pub struct Worker {
    pub id: usize,
    pub tap: Arc<TapQueue>,
    pub uplinks: Vec<PacketSocket>,
    pub counters: Arc<Counters>,
    pub shared: Arc<Shared>,
    /// Wakes this worker for shutdown.
    pub waker: Arc<Waker>,
    /// Merge LAN-bound TCP segments into GSO super-frames (the TAP has offloads).
    pub gro: bool,
    /// Admission to the control plane.
    pub limits: LimitsConfig,
}

const TOKEN_TAP: u64 = 0;
const TOKEN_WAKER: u64 = u64::MAX;

impl Worker {
    pub fn run(self) -> io::Result<()> {
        let ep = Epoll::new()?;
        ep.add(self.tap.as_raw_fd(), TOKEN_TAP)?;
        for (i, s) in self.uplinks.iter().enumerate() {
            ep.add(s.as_raw_fd(), 1 + i as u64)?;
        }
        ep.add(self.waker.as_raw_fd(), TOKEN_WAKER)?;
        let mut tap_bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; MAX_FRAME]).collect();
        let mut tap_lens = [0usize; BATCH];
        let mut rx: Vec<RecvBatch> = self.uplinks.iter().map(|_| RecvBatch::new(BATCH)).collect();
        let mut scratch = vec![0u8; SCRATCH_LEN];
        let mut fp = FastPath::new(&self.limits);
        let mut ready = Vec::new();
        let mut out = Outbox::new(self.uplinks.len(), self.gro);
        let mut drops_read = Instant::now();
        while !self.shared.stop.load(Ordering::Relaxed) {
            ep.wait(&mut ready, 500)?;
            if ready.contains(&TOKEN_WAKER) {
                self.waker.drain();
            }
            // Drain every source until a full pass finds nothing: level-triggered epoll would
            // report them again anyway, and this keeps batches full under load.
            loop {
                let snap = self.shared.snapshot.load();
                let neighbours = self.shared.neighbours.load();
                let env = Env {
                    snap: &snap,
                    neighbours: &neighbours,
                    nat: &self.shared.nat,
                    frags: &self.shared.frags,
                    now: Instant::now(),
                };
                let mut work = 0;

                let (n, failed) = self.tap.read_batch(&mut tap_bufs, &mut tap_lens);
                if let Some(e) = failed {
                    log::warn!("worker {}: TAP read failed: {e}", self.id);
                }
                if n > 0 {
                    work += n;
                    out.batch_received();
                    if worth_prefetching(&env) {
                        for i in 0..n {
                            prefetch_session(&env, &tap_bufs[i][..tap_lens[i]], Iface::Lan);
                        }
                    }
                    for i in 0..n {
                        let frame = &mut tap_bufs[i][..tap_lens[i]];
                        let v = fp.process(&env, frame, Iface::Lan, &mut scratch);
                        self.counters.rx(Iface::Lan.index(), frame.len());
                        out.take(i, v, Iface::Lan, frame, &scratch, &self);
                    }
                    out.flush(&self, |i| &tap_bufs[i][..tap_lens[i]]);
                    self.batch_done(n);
                }

                for (u, batch) in rx.iter_mut().enumerate() {
                    let ingress = Iface::Uplink(UplinkId(u as u8));
                    let cut_before = batch.truncated();
                    let n = match batch.recv(&self.uplinks[u]) {
                        Ok(n) => n,
                        Err(e) => {
                            log::warn!("worker {}: uplink {u} receive failed: {e}", self.id);
                            0
                        }
                    };
                    for _ in cut_before..batch.truncated() {
                        self.counters
                            .rx_dropped(ingress.index(), DropReason::Truncated);
                    }
                    if n == 0 {
                        continue;
                    }
                    work += n;
                    out.batch_received();
                    if worth_prefetching(&env) {
                        for i in 0..n {
                            prefetch_session(&env, batch.frame(i), ingress);
                        }
                        for i in 0..n {
                            prefetch_inbound_session(&env, batch.frame(i), ingress);
                        }
                    }
                    for i in 0..n {
                        let stamp = batch.received(i);
                        let frame = batch.frame_mut(i);
                        let v = fp.process(&env, frame, ingress, &mut scratch);
                        self.counters.rx(ingress.index(), frame.len());
                        if let Some(t) = stamp {
                            out.received_at(t);
                        }
                        out.take(i, v, ingress, frame, &scratch, &self);
                    }
                    out.flush(&self, |i| batch.frame(i));
                    self.batch_done(n);
                }
                if env.now.saturating_since(drops_read) >= SOCKET_DROPS_EVERY {
                    drops_read = env.now;
                    self.count_socket_drops();
                }
                // Under sustained load the drain loop never runs dry: see `stop` every pass.
                if work == 0 || self.shared.stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Frames lost before the router read them (the socket's buffer was full) count as drops
    /// of their uplink: the loss the senders' retransmissions show is visible here.
    fn count_socket_drops(&self) {
        for (u, sock) in self.uplinks.iter().enumerate() {
            match sock.take_drops() {
                Ok(0) => {}
                Ok(n) => self.counters.rx_dropped_n(
                    Iface::Uplink(UplinkId(u as u8)).index(),
                    DropReason::RxQueueFull,
                    u64::from(n),
                ),
                Err(e) => log::warn!("worker {}: uplink {u} statistics: {e}", self.id),
            }
        }
    }

    fn batch_done(&self, n: usize) {
        bump(&self.counters.batches, 1);
        bump(&self.counters.batch_packets, n as u64);
    }

    fn send(&self, egress: Iface, frame: &[u8]) -> bool {
        let r = match egress {
            Iface::Lan => self.tap.write(frame),
            Iface::Uplink(u) => match self.uplinks.get(u.0 as usize) {
                Some(s) => s.send(frame),
                None => return false,
            },
        };
        match r {
            Ok(()) => {
                self.counters.tx(egress.index(), frame.len());
                true
            }
            Err(_) => {
                self.counters.dropped(DropReason::TxError);
                false
            }
        }
    }

    /// Sends `frame` (rewritten, DF clear) as IPv4 fragments of at most `mtu` bytes.
    fn send_fragments(&self, egress: Iface, frame: &[u8], mtu: usize, bufs: &mut FragmentBufs) {
        let Some(packet) = bufs.packet.get_mut(..frame.len()) else {
            self.counters.dropped(DropReason::TooBig);
            return;
        };
        packet.copy_from_slice(frame);
        complete_checksum(packet);
        let mut sent = 0;
        while let Some(len) =
            ipv4::fragment(&packet[IP_OFFSET..], mtu, sent, &mut bufs.out[IP_OFFSET..])
        {
            bufs.out[..IP_OFFSET].copy_from_slice(&packet[..IP_OFFSET]);
            let _ = VnetHdr::default().write(&mut bufs.out);
            self.send(egress, &bufs.out[..IP_OFFSET + len]);
            sent += 1;
        }
        if sent == 0 {
            self.counters.dropped(DropReason::TooBig);
        }
    }

    /// Queues a frame for the control plane on its class's queue.
    fn punt(&self, class: PuntClass, p: Punt) -> bool {
        let (queue, full) = match class {
            PuntClass::Probe => (&self.shared.probe_punt, DropReason::ProbeQueueFull),
            PuntClass::Arp => (&self.shared.arp_punt, DropReason::ArpQueueFull),
            PuntClass::Other => (&self.shared.punt, DropReason::PuntQueueFull),
        };
        if queue.send(p) {
            bump(&self.counters.punted, 1);
            true
        } else {
            self.counters.dropped(full);
            false
        }
    }
}

fn punt(ingress: Iface, received: Instant, resolve: Option<(Iface, IpAddr)>, frame: &[u8]) -> Punt {
    Punt {
        ingress,
        received,
        resolve,
        frame: frame.to_vec(),
    }
}

/// Frames of one batch waiting to be sent, by egress, as indices into the batch's buffers.
struct Outbox {
    /// When the frame being taken was received (by the kernel, else when the batch was read):
    /// what probe round trips are timed to, however long a busy worker takes to get to it.
    received: Instant,
    /// The monotonic and the wall clock when the batch was read, to place kernel timestamps
    /// (wall clock) on the monotonic clock.
    batch_clock: (Instant, std::time::SystemTime),
    lan: Vec<usize>,
    uplinks: Vec<Vec<usize>>,
    punted: bool,
    probe_punted: bool,
    /// Present when LAN-bound frames are merged before they are written to the TAP.
    gro: Option<Gro>,
    fragment: FragmentBufs,
}

/// Per-worker buffers for the (rare) packets that must be fragmented on the way out.
struct FragmentBufs {
    packet: Vec<u8>,
    out: Vec<u8>,
}

impl Outbox {
    fn new(uplinks: usize, gro: bool) -> Outbox {
        Outbox {
            received: Instant::ZERO,
            batch_clock: (Instant::ZERO, std::time::UNIX_EPOCH),
            lan: Vec::with_capacity(BATCH),
            uplinks: (0..uplinks).map(|_| Vec::with_capacity(BATCH)).collect(),
            punted: false,
            probe_punted: false,
            gro: gro.then(Gro::default),
            fragment: FragmentBufs {
                packet: vec![0; MAX_FRAME],
                out: vec![0; MAX_FRAME],
            },
        }
    }

    /// A batch was just read: its frames were received now, unless the kernel says when.
    fn batch_received(&mut self) {
        self.batch_clock = (Instant::now(), std::time::SystemTime::now());
        self.received = self.batch_clock.0;
    }

    /// The next frame was received by the kernel at `stamp` (since the epoch).
    fn received_at(&mut self, stamp: Duration) {
        let (mono, wall) = self.batch_clock;
        let age = wall
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(Duration::ZERO, |w| w.saturating_sub(stamp));
        self.received = mono.saturating_sub(age);
    }

    fn take(
        &mut self,
        i: usize,
        v: Verdict,
        ingress: Iface,
        frame: &[u8],
        scratch: &[u8],
        w: &Worker,
    ) {
        match v {
            Verdict::Forward { egress } => {
                bump(&w.counters.forwarded, 1);
                match egress {
                    Iface::Lan => self.lan.push(i),
                    Iface::Uplink(u) => {
                        if let Some(q) = self.uplinks.get_mut(u.0 as usize) {
                            q.push(i);
                        }
                    }
                }
            }
            Verdict::Reply {
                egress,
                len,
                reason,
            } => {
                w.counters.rx_dropped(ingress.index(), reason);
                if w.send(egress, &scratch[..len]) {
                    bump(&w.counters.icmp_errors_sent, 1);
                }
            }
            Verdict::Fragment { egress, mtu } => {
                bump(&w.counters.forwarded, 1);
                w.send_fragments(egress, frame, mtu, &mut self.fragment);
            }
            Verdict::Punt(PuntClass::Probe) => {
                let p = punt(ingress, self.received, None, frame);
                self.probe_punted |= w.punt(PuntClass::Probe, p)
            }
            Verdict::Punt(class) => {
                self.punted |= w.punt(class, punt(ingress, self.received, None, frame))
            }
            Verdict::NeedsNeighbour { egress, next_hop } => {
                let p = punt(ingress, self.received, Some((egress, next_hop)), frame);
                self.punted |= w.punt(PuntClass::Other, p)
            }
            Verdict::Drop(d) => w.counters.rx_dropped(ingress.index(), d),
            Verdict::Mld => bump(&w.counters.mld, 1),
        }
    }

    fn flush<'a>(&mut self, w: &Worker, frame: impl Fn(usize) -> &'a [u8]) {
        match &mut self.gro {
            // The TAP takes one frame per write(): a super-frame saves the syscalls and the
            // bridge's and LAN host's per-packet work of every segment it carries.
            Some(gro) => gro.coalesce(self.lan.iter().map(|&i| frame(i)), |f, segments| {
                if w.send(Iface::Lan, f) && segments > 1 {
                    bump(&w.counters.gro_frames, 1);
                    bump(&w.counters.gro_segments, segments as u64);
                }
            }),
            None => {
                for &i in &self.lan {
                    w.send(Iface::Lan, frame(i));
                }
            }
        }
        self.lan.clear();
        for (u, q) in self.uplinks.iter_mut().enumerate() {
            if q.is_empty() {
                continue;
            }
            let egress = Iface::Uplink(UplinkId(u as u8));
            let sent = send_all(&w.uplinks[u], q.iter().map(|&i| frame(i))).unwrap_or(0);
            for &i in &q[..sent.min(q.len())] {
                w.counters.tx(egress.index(), frame(i).len());
            }
            for _ in sent..q.len() {
                w.counters.dropped(DropReason::TxError);
            }
            q.clear();
        }
        if std::mem::take(&mut self.punted) {
            w.shared.control_waker.wake();
        }
        if std::mem::take(&mut self.probe_punted) {
            w.shared.probe_waker.wake();
        }
    }
}
