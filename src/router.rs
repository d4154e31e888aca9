//! Start-up and shutdown: checks every interface before touching any, creates the TAP, opens
//! the sockets, starts the workers and runs the control loop until SIGINT/SIGTERM.

use std::collections::hash_map::RandomState;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_channel::{bounded, unbounded};

use crate::clock::Instant;
use crate::config::Config;
use crate::control::probe_thread::ProbeThread;
use crate::control::socket;
use crate::control::{Control, ControlParts, UplinkIo};
use crate::counters::Counters;
use crate::dataplane::Worker;
use crate::dhcp::leases::{self, Clocks, LeaseFileError};
use crate::io::link::{self, LinkWatcher};
use crate::io::packet::{PacketOptions, PacketSocket};
use crate::io::poll::{Epoll, Waker};
use crate::io::tap::Tap;
use crate::metrics;
use crate::nat::{Forward, FragTable, NatParams, NatTable, Timeouts};
use crate::shared::{Shared, build_snapshot, punt_queue};
use crate::snapshot::Neighbours;
use crate::systemd;
use crate::wire::ethernet::MacAddr;

/// Receive buffer of each uplink socket. Frames arrive GRO-merged (up to 64 KiB each), so 4 MiB
/// held only ~60 of them: a 64-stream download overflowed it (`rx_queue_full`) and the senders
/// retransmitted ~100,000 segments in 3 s where the kernel router lost ~500; with 16 MiB nothing
/// was lost. The kernel charges the memory only while frames wait.
const UPLINK_RCVBUF: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("uplink {uplink}: interface {interface}: {source}")]
    Uplink {
        uplink: String,
        interface: String,
        source: io::Error,
    },
    #[error("LAN bridge {bridge}: {source}")]
    Bridge { bridge: String, source: io::Error },
    #[error("LAN TAP {tap}: {source}")]
    Tap { tap: String, source: io::Error },
    #[error("control socket {path}: {source}")]
    Socket { path: PathBuf, source: io::Error },
    #[error("metrics listener {addr}: {source}")]
    Metrics { addr: SocketAddr, source: io::Error },
    #[error(
        "DHCP lease file: {0} (fix or remove it; the router does not start over leases clients may still hold)"
    )]
    Leases(#[from] LeaseFileError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> StartError {
    move |source| StartError::Io { what, source }
}

/// Frames in the control thread's queues (each also bounded in bytes, `[limits]`).
const PUNT_QUEUE: usize = 4096;
const ARP_QUEUE: usize = 1024;
/// Frames in the probe thread's queue of replies.
const PROBE_QUEUE: usize = 1024;

/// The LAN MAC when the config sets none: locally administered, derived from the LAN address
/// so it is stable across restarts (hosts' ARP caches stay right).
fn default_lan_mac(cfg: &Config) -> MacAddr {
    let a = cfg.lan.address.addr().octets();
    MacAddr([0x02, 0x6d, 0x68, a[1], a[2], a[3]])
}

pub fn run(
    cfg: Config,
    config_path: PathBuf,
    socket_override: Option<PathBuf>,
) -> Result<(), StartError> {
    // Everything is checked before anything is created: a bad environment changes nothing.
    let dhcp_leases = match cfg.dhcp_server.as_ref().and_then(|d| d.lease_file.as_ref()) {
        Some(path) => leases::load(path, Clocks::now())?,
        None => Vec::new(),
    };
    let mut infos = Vec::new();
    for u in &cfg.uplinks {
        let info = link::link_info(&u.interface).map_err(|source| StartError::Uplink {
            uplink: u.name.clone(),
            interface: u.interface.clone(),
            source,
        })?;
        infos.push(info);
    }
    if let Some(b) = &cfg.lan.bridge {
        link::link_info(b).map_err(|source| StartError::Bridge {
            bridge: b.clone(),
            source,
        })?;
    }
    let socket_path = socket_override.unwrap_or_else(|| cfg.router.control_socket.clone());
    let signals = block_signals().map_err(io_err("signals"))?;

    let workers = cfg.router.workers.max(1);
    let mut tap =
        Tap::create(&cfg.lan.tap, workers, cfg.router.offload, cfg.lan.mtu).map_err(|source| {
            StartError::Tap {
                tap: cfg.lan.tap.clone(),
                source,
            }
        })?;
    if let Some(b) = &cfg.lan.bridge {
        tap.enslave(b).map_err(|source| StartError::Bridge {
            bridge: b.clone(),
            source,
        })?;
    }
    for u in &cfg.uplinks {
        link::set_link_up(&u.interface).map_err(|source| StartError::Uplink {
            uplink: u.name.clone(),
            interface: u.interface.clone(),
            source,
        })?;
    }
    let lan_mac = cfg
        .lan
        .mac
        .map(MacAddr)
        .unwrap_or_else(|| default_lan_mac(&cfg));

    let mut uplink_io = Vec::new();
    let mut probe_sockets = Vec::new();
    let mut carrier = Vec::new();
    for (u, info) in cfg.uplinks.iter().zip(&infos) {
        let send_only = || {
            PacketSocket::open(
                info.ifindex,
                &PacketOptions {
                    vnet_hdr: true,
                    receive: false,
                    fanout_group: None,
                    rcvbuf: 0,
                    sndbuf: 1 << 20,
                },
            )
            .map_err(|source| StartError::Uplink {
                uplink: u.name.clone(),
                interface: u.interface.clone(),
                source,
            })
        };
        let tx = send_only()?;
        probe_sockets.push(send_only()?);
        uplink_io.push(UplinkIo {
            mac: MacAddr(info.mac),
            nic_mtu: info.mtu,
            ifindex: info.ifindex,
            tx,
        });
        // Re-read: the NIC was just brought up.
        carrier.push(
            link::link_info(&u.interface)
                .map(|i| i.carrier)
                .unwrap_or(info.carrier),
        );
    }

    let uplink_addrs: Vec<_> = cfg
        .uplinks
        .iter()
        // A DHCP uplink has no address until its lease (SPEC 28).
        .map(|u| (u.nat && u.dhcp.is_none()).then(|| u.address.addr()))
        .collect();
    let nat = NatTable::new(
        NatParams {
            max_entries: cfg.nat.max_entries,
            max_sessions_per_host: cfg.nat.max_sessions_per_host,
            port_min: cfg.nat.port_min,
            port_max: cfg.nat.port_max,
            timeouts: Timeouts {
                tcp_syn: cfg.nat.tcp_syn,
                tcp_established: cfg.nat.tcp_established,
                tcp_closing: cfg.nat.tcp_closing,
                udp: cfg.nat.udp,
                udp_unreplied: cfg.nat.udp_unreplied,
                icmp: cfg.nat.icmp,
            },
        },
        &uplink_addrs,
    )
    .with_forwards(Forward::from_config(&cfg));
    let limits = &cfg.limits;
    let (punt_tx, punt_rx) = punt_queue(PUNT_QUEUE, limits.punt_queue_bytes);
    let (arp_punt_tx, arp_punt_rx) = punt_queue(ARP_QUEUE, limits.arp_queue_bytes);
    let (probe_punt_tx, probe_punt_rx) = punt_queue(PROBE_QUEUE, limits.probe_queue_bytes);
    let control_waker = Waker::new().map_err(io_err("eventfd"))?;
    let probe_waker = Waker::new().map_err(io_err("eventfd"))?;
    let probe_port_base = std::hash::BuildHasher::hash_one(&RandomState::new(), 0) as u16;
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(build_snapshot(
            &cfg,
            probe_port_base,
            lan_mac,
            &uplink_io,
            &carrier,
            vec![false; cfg.tracks.len()],
        )),
        neighbours: ArcSwap::from_pointee(Neighbours::default()),
        nat,
        frags: FragTable::default(),
        stop: AtomicBool::new(false),
        arp_punt: arp_punt_tx,
        punt: punt_tx,
        control_waker,
        probe_punt: probe_punt_tx,
        probe_waker,
        probe_port_base,
        probe_health: ArcSwap::from_pointee(Vec::new()),
    });

    let queues: Vec<Arc<_>> = tap.take_queues().into_iter().map(Arc::new).collect();
    // The control thread writes its frames through the first queue (writes are per packet).
    let control_tap = queues.first().cloned().ok_or_else(|| StartError::Tap {
        tap: cfg.lan.tap.clone(),
        source: io::Error::other("no queue"),
    })?;
    let fanout_base = (std::process::id() as u16) & 0xff00;
    let mut handles = Vec::new();
    let mut wakers = Vec::new();
    let mut worker_counters = Vec::new();
    for (id, q) in queues.into_iter().enumerate() {
        let mut socks = Vec::new();
        for (ui, (u, info)) in cfg.uplinks.iter().zip(&infos).enumerate() {
            let s = PacketSocket::open(
                info.ifindex,
                &PacketOptions {
                    vnet_hdr: true,
                    receive: true,
                    fanout_group: (workers > 1).then_some(fanout_base | ui as u16),
                    rcvbuf: UPLINK_RCVBUF,
                    sndbuf: 4 << 20,
                },
            )
            .map_err(|source| StartError::Uplink {
                uplink: u.name.clone(),
                interface: u.interface.clone(),
                source,
            })?;
            socks.push(s);
        }
        let counters = Arc::new(Counters::new(1 + cfg.uplinks.len()));
        let waker = Arc::new(Waker::new().map_err(io_err("eventfd"))?);
        let w = Worker {
            id,
            tap: q,
            uplinks: socks,
            counters: counters.clone(),
            shared: shared.clone(),
            waker: waker.clone(),
            gro: cfg.router.offload,
            limits: cfg.limits.clone(),
        };
        wakers.push(waker);
        worker_counters.push(counters);
        let h = std::thread::Builder::new()
            .name(format!("worker{id}"))
            .spawn(move || {
                if let Err(e) = w.run() {
                    log::error!("worker {id} stopped: {e}");
                }
            })
            .map_err(io_err("spawning a worker"))?;
        handles.push(h);
    }

    let (report_tx, report_rx) = unbounded();
    let (probe_config_tx, probe_config_rx) = unbounded();
    let probe_counters = Arc::new(Counters::new(1 + cfg.uplinks.len()));
    worker_counters.push(probe_counters.clone());
    let prober = ProbeThread {
        shared: shared.clone(),
        replies: probe_punt_rx,
        configs: probe_config_rx,
        reports: report_tx,
        uplink_names: cfg.uplinks.iter().map(|u| u.name.clone()).collect(),
        sockets: probe_sockets,
        counters: probe_counters,
    };
    let probes = cfg.probes.clone();
    handles.push(
        std::thread::Builder::new()
            .name("probes".into())
            .spawn(move || {
                if let Err(e) = prober.run(probes) {
                    log::error!("probe thread stopped: {e}");
                }
            })
            .map_err(io_err("spawning the probe thread"))?,
    );

    let (req_tx, req_rx) = bounded(16);
    let ctl_waker = Arc::new(Waker::new().map_err(io_err("eventfd"))?);
    // Scrapes travel the control socket's channel: the control thread answers both alike.
    if let Some(addr) = cfg.router.metrics_listen {
        let bound = metrics::serve(addr, req_tx.clone(), ctl_waker.clone())
            .map_err(|source| StartError::Metrics { addr, source })?;
        log::info!("metrics on http://{bound}/metrics");
        if !bound.ip().is_loopback() {
            log::warn!(
                "metrics on {bound} are open to anyone who can reach that address (no \
                 authentication): filter the port if that is wider than intended"
            );
        }
    }
    let group = cfg.router.control_group.as_deref();
    socket::serve(&socket_path, group, req_tx, ctl_waker.clone()).map_err(|source| {
        StartError::Socket {
            path: socket_path.clone(),
            source,
        }
    })?;
    let mut links = LinkWatcher::new().map_err(io_err("netlink"))?;

    log::info!(
        "mhrouter up: LAN {} on {} ({} worker{}), {} uplink{}",
        cfg.lan.address,
        cfg.lan.tap,
        workers,
        if workers == 1 { "" } else { "s" },
        cfg.uplinks.len(),
        if cfg.uplinks.len() == 1 { "" } else { "s" }
    );
    // Re-read after a netlink overrun, when carrier events may have been lost.
    let uplink_nics: Vec<String> = cfg.uplinks.iter().map(|u| u.interface.clone()).collect();
    let mut control = Control::new(ControlParts {
        cfg,
        config_path,
        shared: shared.clone(),
        arp_punts: arp_punt_rx,
        punts: punt_rx,
        requests: req_rx,
        tap: control_tap,
        lan_mac,
        uplinks: uplink_io,
        carrier,
        workers: worker_counters,
        probe_reports: report_rx,
        probe_configs: probe_config_tx,
        dhcp_leases,
    });

    let ep = Epoll::new().map_err(io_err("epoll"))?;
    const T_PUNT: u64 = 1;
    const T_CTL: u64 = 2;
    const T_LINK: u64 = 3;
    const T_SIG: u64 = 4;
    ep.add(shared.control_waker.as_raw_fd(), T_PUNT)
        .map_err(io_err("epoll"))?;
    ep.add(ctl_waker.as_raw_fd(), T_CTL)
        .map_err(io_err("epoll"))?;
    ep.add(links.as_raw_fd(), T_LINK).map_err(io_err("epoll"))?;
    ep.add(signals.as_raw_fd(), T_SIG)
        .map_err(io_err("epoll"))?;
    // Interfaces, workers and both sockets are up: the service manager may start what needs us.
    systemd::notify(systemd::READY);
    let mut ready = Vec::new();
    loop {
        let timeout = control.timeout(Instant::now(), Duration::from_millis(500));
        // Round up so a deadline is never missed by a sub-millisecond remainder.
        let ms = timeout.as_micros().div_ceil(1000) as i32;
        ep.wait(&mut ready, ms).map_err(io_err("epoll"))?;
        if ready.contains(&T_SIG) {
            let sig = read_signal(&signals);
            if sig == libc::SIGHUP {
                if let Err(e) = control.reload() {
                    log::error!("{e}");
                }
            } else {
                log::info!("signal {sig}: shutting down");
                systemd::notify(systemd::STOPPING);
                break;
            }
        }
        if ready.contains(&T_PUNT) {
            shared.control_waker.drain();
        }
        if ready.contains(&T_CTL) {
            ctl_waker.drain();
        }
        if ready.contains(&T_LINK) {
            match links.read_events() {
                Ok(events) => {
                    for e in events {
                        control.link_changed(e.ifindex, e.carrier);
                    }
                }
                Err(e) => log::warn!("netlink: {e}"),
            }
            if links.take_overrun() {
                log::warn!("netlink: link events lost (socket overrun); re-reading carriers");
                for nic in &uplink_nics {
                    match link::link_info(nic) {
                        Ok(info) => control.link_changed(info.ifindex, info.carrier),
                        Err(e) => log::warn!("netlink: re-reading {nic}: {e}"),
                    }
                }
            }
        }
        control.run_once();
    }
    control.shutdown();
    control.stop();
    for w in &wakers {
        w.wake();
    }
    shared.probe_waker.wake();
    for h in handles {
        let _ = h.join();
    }
    drop(control);
    let _ = std::fs::remove_file(&socket_path);
    // The TAP goes away with its last queue fd, closed above with the workers and control.
    log::info!("mhrouter stopped");
    Ok(())
}

/// Blocks SIGINT, SIGTERM and SIGHUP in every thread (those spawned later inherit the mask) and
/// returns a signalfd that reports them to the control loop.
fn block_signals() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the calls only read/write it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn read_signal(fd: &OwnedFd) -> i32 {
    let mut info = std::mem::MaybeUninit::<libc::signalfd_siginfo>::zeroed();
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reads at most `size` bytes into the buffer we own.
    let n = unsafe { libc::read(fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
    if n as usize == size {
        // SAFETY: the kernel filled the whole struct.
        unsafe { info.assume_init() }.ssi_signo as i32
    } else {
        0
    }
}
