//! The I/O floor (issue 16): a null forwarder built from the router's own I/O code, so
//! `bench/run.sh` can show what mhrouter costs above the I/O alone. It opens the LAN TAP and one
//! uplink's AF_PACKET socket as the router does (src/router.rs: a multi-queue TAP with offloads
//! enslaved to the bridge, one fanout socket per worker with vnet headers and a 16 MiB receive
//! buffer), runs the workers' loop (src/dataplane.rs: epoll, batches of `BATCH`, sendmmsg toward
//! the uplink, userspace GRO toward the TAP) and copies every frame across, rewriting only the
//! two MAC addresses: no parsing, no routing, no NAT, no ARP.
//!
//!     null_forward --tap NAME --bridge BR --uplink IF --lan-mac MAC --host-mac MAC \
//!                  --peer-mac MAC [--workers N] [--rx mmsg|ring]
//!
//! Frames from the TAP leave on IF from IF's MAC to `--peer-mac` (the PE); frames from IF go
//! to the TAP from `--lan-mac` (the gateway MAC the LAN host has in its neighbour table) to
//! `--host-mac`. Nothing answers ARP: the bench gives both hosts static neighbours and the far
//! side a route back to the LAN. `--rx ring` reads the uplink through a TPACKET_V3 ring
//! (src/io/ring.rs) instead of recvmmsg. Runs until SIGTERM or SIGINT, then prints one line of
//! totals (frames each way, kernel drops, frames cut) to stderr. Built with the examples
//! (`cargo build --release --example null_forward`), never part of the router.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mhrouter::dataplane::BATCH;
use mhrouter::gro::Gro;
use mhrouter::io::link::link_info;
use mhrouter::io::packet::{PacketOptions, PacketSocket, RecvBatch, send_all};
use mhrouter::io::poll::Epoll;
use mhrouter::io::ring::{RingOptions, RxRing};
use mhrouter::io::tap::{Tap, TapQueue};
use mhrouter::io::{MAX_FRAME, VNET_HDR_LEN};

/// As src/router.rs: the uplink sockets' buffers and the LAN MTU of scripts/lab.toml.
const RCVBUF: usize = 16 << 20;
const SNDBUF: usize = 4 << 20;
const LAN_MTU: u32 = 1500;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn usage() -> ! {
    eprintln!(
        "usage: null_forward --tap NAME --bridge BR --uplink IF --lan-mac MAC --host-mac MAC \
         --peer-mac MAC [--workers N] [--rx mmsg|ring]"
    );
    std::process::exit(2)
}

struct Args {
    tap: String,
    bridge: String,
    uplink: String,
    lan_mac: [u8; 6],
    host_mac: [u8; 6],
    peer_mac: [u8; 6],
    workers: usize,
    ring: bool,
}

fn mac(s: &str) -> [u8; 6] {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|_| usage()))
        .collect();
    bytes.try_into().unwrap_or_else(|_| usage())
}

fn args() -> Args {
    let mut a = Args {
        tap: String::new(),
        bridge: String::new(),
        uplink: String::new(),
        lan_mac: [0; 6],
        host_mac: [0; 6],
        peer_mac: [0; 6],
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ring: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let [key, value] = pair else { usage() };
        match key.as_str() {
            "--tap" => a.tap = value.clone(),
            "--bridge" => a.bridge = value.clone(),
            "--uplink" => a.uplink = value.clone(),
            "--lan-mac" => a.lan_mac = mac(value),
            "--host-mac" => a.host_mac = mac(value),
            "--peer-mac" => a.peer_mac = mac(value),
            "--workers" => a.workers = value.parse().unwrap_or_else(|_| usage()),
            "--rx" => {
                a.ring = match value.as_str() {
                    "mmsg" => false,
                    "ring" => true,
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    if a.tap.is_empty() || a.bridge.is_empty() || a.uplink.is_empty() || a.workers == 0 {
        usage();
    }
    a
}

/// Totals over all workers, printed at exit.
#[derive(Default)]
struct Totals {
    to_uplink: AtomicU64,
    to_lan: AtomicU64,
    tx_errors: AtomicU64,
    drops: AtomicU64,
    truncated: AtomicU64,
}

fn main() {
    let a = args();
    if let Err(e) = run(&a) {
        eprintln!("null_forward: {e}");
        std::process::exit(1);
    }
}

fn run(a: &Args) -> io::Result<()> {
    // SAFETY: installs a handler that only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_signal as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGINT,
            on_signal as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t,
        );
    }
    let uplink = link_info(&a.uplink)?;
    let mut tap = Tap::create(&a.tap, a.workers, true, LAN_MTU)?;
    tap.enslave(&a.bridge)?;
    // Destination then source: the first 12 bytes of the Ethernet header, after the vnet header.
    let mut to_uplink = [0u8; 12];
    to_uplink[..6].copy_from_slice(&a.peer_mac);
    to_uplink[6..].copy_from_slice(&uplink.mac);
    let mut to_lan = [0u8; 12];
    to_lan[..6].copy_from_slice(&a.host_mac);
    to_lan[6..].copy_from_slice(&a.lan_mac);
    let fanout = (std::process::id() as u16) & 0xff00;
    let totals = Arc::new(Totals::default());
    let mut handles = Vec::new();
    for queue in tap.take_queues() {
        let sock = PacketSocket::open(
            uplink.ifindex,
            &PacketOptions {
                vnet_hdr: true,
                receive: true,
                fanout_group: (a.workers > 1).then_some(fanout),
                rcvbuf: RCVBUF,
                sndbuf: SNDBUF,
            },
        )?;
        let rx = if a.ring {
            Rx::Ring(RxRing::attach(&sock, RingOptions::default(), BATCH)?)
        } else {
            Rx::Mmsg(RecvBatch::new(BATCH))
        };
        let w = Worker {
            tap: queue,
            sock,
            rx,
            to_uplink,
            to_lan,
            totals: totals.clone(),
        };
        handles.push(std::thread::spawn(move || w.run()));
    }
    eprintln!(
        "null_forward: {} <-> {} ({} worker{}, rx {})",
        a.tap,
        a.uplink,
        a.workers,
        if a.workers == 1 { "" } else { "s" },
        if a.ring { "ring" } else { "mmsg" }
    );
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("a worker panicked"))??;
    }
    let t = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "null_forward: {} frames to the uplink, {} to the LAN, {} send errors, {} dropped by the \
         kernel (receive queue or ring full), {} cut",
        t(&totals.to_uplink),
        t(&totals.to_lan),
        t(&totals.tx_errors),
        t(&totals.drops),
        t(&totals.truncated)
    );
    Ok(())
}

/// The uplink's receive path under test.
enum Rx {
    Mmsg(RecvBatch),
    Ring(RxRing),
}

struct Worker {
    tap: TapQueue,
    sock: PacketSocket,
    rx: Rx,
    to_uplink: [u8; 12],
    to_lan: [u8; 12],
    totals: Arc<Totals>,
}

const TOKEN_TAP: u64 = 0;
const TOKEN_UPLINK: u64 = 1;

/// The MACs of a frame that starts with the vnet header.
const MACS: std::ops::Range<usize> = VNET_HDR_LEN..VNET_HDR_LEN + 12;

impl Worker {
    /// The shape of `dataplane::Worker::run`: wait, then drain every source in batches until a
    /// whole pass finds nothing.
    fn run(mut self) -> io::Result<()> {
        let ep = Epoll::new()?;
        ep.add(self.tap.as_raw_fd(), TOKEN_TAP)?;
        ep.add(self.sock.as_raw_fd(), TOKEN_UPLINK)?;
        let mut tap_bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; MAX_FRAME]).collect();
        let mut tap_lens = [0usize; BATCH];
        let mut gro = Gro::default();
        let mut ready = Vec::new();
        while !STOP.load(Ordering::Relaxed) {
            ep.wait(&mut ready, 500)?;
            loop {
                let (n, failed) = self.tap.read_batch(&mut tap_bufs, &mut tap_lens);
                if let Some(e) = failed {
                    return Err(e);
                }
                for (buf, &len) in tap_bufs.iter_mut().zip(&tap_lens).take(n) {
                    if let Some(macs) = buf.get_mut(..len).and_then(|f| f.get_mut(MACS)) {
                        macs.copy_from_slice(&self.to_uplink);
                    }
                }
                let frames = tap_bufs.iter().zip(&tap_lens).take(n);
                let sent = send_all(&self.sock, frames.map(|(b, &len)| &b[..len]))?;
                self.count(&self.totals.to_uplink, sent);
                self.count(&self.totals.tx_errors, n - sent);

                let got = self.receive()?;
                let mut failed = 0;
                gro.coalesce(self.rx.frames(got), |f, _| {
                    if self.tap.write(f).is_err() {
                        failed += 1;
                    }
                });
                self.count(&self.totals.to_lan, got);
                self.count(&self.totals.tx_errors, failed);
                if n + got == 0 || STOP.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
        self.count(&self.totals.drops, self.sock.take_drops()? as usize);
        Ok(())
    }

    /// Reads a batch from the uplink and rewrites its MACs; returns how many frames.
    fn receive(&mut self) -> io::Result<usize> {
        let (n, cut) = match &mut self.rx {
            Rx::Mmsg(batch) => {
                let before = batch.truncated();
                let n = batch.recv(&self.sock)?;
                for i in 0..n {
                    rewrite(batch.frame_mut(i), &self.to_lan);
                }
                (n, batch.truncated() - before)
            }
            Rx::Ring(ring) => {
                let before = ring.truncated();
                let n = ring.recv();
                for i in 0..n {
                    rewrite(ring.frame_mut(i), &self.to_lan);
                }
                (n, ring.truncated() - before)
            }
        };
        self.count(&self.totals.truncated, cut as usize);
        Ok(n)
    }

    fn count(&self, counter: &AtomicU64, n: usize) {
        if n > 0 {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl Rx {
    fn frames(&self, n: usize) -> impl Iterator<Item = &[u8]> {
        (0..n).map(move |i| match self {
            Rx::Mmsg(batch) => batch.frame(i),
            Rx::Ring(ring) => ring.frame(i),
        })
    }
}

fn rewrite(frame: &mut [u8], macs: &[u8; 12]) {
    if let Some(m) = frame.get_mut(MACS) {
        m.copy_from_slice(macs);
    }
}
