//! The probe thread (docs/architecture.md, "Threads"): runs the probe
//! engine with its own clock, its own send socket on each uplink and its own queue of replies
//! from the workers, so nothing the control thread does (a large `show nat`, a reload, a burst
//! of ARP) can delay a probe, its reply or its timeout. It publishes every probe's statistics
//! (the health table, for the views) and reports each result to the control thread, which
//! drives the tracks.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::Transmit;
use super::probe::{ProbeEngine, ProbeUplink, ProbeUplink6};
use crate::clock::Instant;
use crate::config::ProbeConfig;
use crate::counters::{Counters, DropReason};
use crate::io::packet::PacketSocket;
use crate::io::poll::Epoll;
use crate::probe::schedule::Probe;
use crate::probe::stats::ProbeStats;
use crate::shared::{PuntReceiver, Shared};
use crate::{Iface, UplinkId};

/// Longest wait without an event, so a stop request is seen.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// A probe recorded a result: its statistics after it.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub name: String,
    pub stats: ProbeStats,
}

pub struct ProbeThread {
    pub shared: Arc<Shared>,
    /// Probe replies and ICMP errors about probes, queued by the workers.
    pub replies: PuntReceiver,
    /// New probe definitions after a reload.
    pub configs: Receiver<Vec<ProbeConfig>>,
    pub reports: Sender<ProbeReport>,
    pub uplink_names: Vec<String>,
    /// Send-only socket per uplink, by index.
    pub sockets: Vec<PacketSocket>,
    pub counters: Arc<Counters>,
}

impl ProbeThread {
    pub fn run(self, probes: Vec<ProbeConfig>) -> io::Result<()> {
        let ep = Epoll::new()?;
        ep.add(self.shared.probe_waker.as_raw_fd(), 0)?;
        let names = self.uplink_names.clone();
        let uplink_of = |n: &str| names.iter().position(|u| u == n).unwrap_or(0);
        let mut engine = ProbeEngine::new(
            probes,
            uplink_of,
            self.shared.probe_port_base,
            Instant::now(),
        );
        self.publish(&engine);
        let mut ready = Vec::new();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            engine.set_uplinks(self.uplinks());
            if let Some(defs) = self.configs.try_iter().last() {
                engine.reconfigure(defs, uplink_of, now);
                self.publish(&engine);
            }
            // Replies first: one that arrived before its deadline counts even if the thread
            // gets to it after.
            while let Some(p) = self.replies.try_recv() {
                let matched = match p.ingress {
                    Iface::Uplink(u) => {
                        engine.handle_reply(u, &p.frame, p.received)
                            || engine.is_error_about_probe(u, &p.frame)
                    }
                    Iface::Lan => false,
                };
                if !matched {
                    self.counters.dropped(DropReason::ProbeUnmatched);
                }
            }
            engine.handle_timeout(now);
            while let Some(t) = engine.poll_transmit() {
                self.send(t);
            }
            let mut reported = false;
            while let Some(i) = engine.poll_result() {
                let p = &engine.probes()[i];
                log::debug!("probe {}: {:?}", p.def.name, p.stats.last());
                let _ = self.reports.send(ProbeReport {
                    name: p.def.name.clone(),
                    stats: p.stats.clone(),
                });
                reported = true;
            }
            if reported {
                self.publish(&engine);
                self.shared.control_waker.wake();
            }
            let wait = engine
                .poll_timeout()
                .map_or(IDLE_WAIT, |t| t.saturating_since(Instant::now()))
                .min(IDLE_WAIT);
            // Round up so a deadline is never missed by a sub-millisecond remainder.
            ep.wait(&mut ready, wait.as_micros().div_ceil(1000) as i32)?;
            if !ready.is_empty() {
                self.shared.probe_waker.drain();
            }
        }
        Ok(())
    }

    /// The uplinks as the control thread last published them: IPv6 from the uplink's global
    /// address (`address6`) to its IPv6 next hop, when it has both.
    fn uplinks(&self) -> Vec<ProbeUplink> {
        let snap = self.shared.snapshot.load();
        let neighbours = self.shared.neighbours.load();
        snap.uplinks
            .iter()
            .enumerate()
            .map(|(u, s)| {
                let id = UplinkId(u as u8);
                let iface = Iface::Uplink(id);
                let v6 = snap.ipv6.as_ref().and_then(|v6| {
                    let next_hop = v6.next_hop(id)?;
                    let addr = v6
                        .iface_addr(iface)
                        .filter(|a| !a.is_unicast_link_local())?;
                    Some(ProbeUplink6 {
                        addr,
                        next_hop_mac: neighbours.lookup6(iface, next_hop),
                    })
                });
                ProbeUplink {
                    addr: s.address.addr(),
                    mac: s.mac,
                    next_hop_mac: neighbours.lookup(iface, s.next_hop),
                    carrier: s.carrier,
                    v6,
                }
            })
            .collect()
    }

    fn publish(&self, engine: &ProbeEngine) {
        let table = engine.probes().iter().map(Probe::status).collect();
        self.shared.probe_health.store(Arc::new(table));
    }

    fn send(&self, t: Transmit) {
        let Iface::Uplink(u) = t.iface else {
            return;
        };
        let Some(socket) = self.sockets.get(usize::from(u.0)) else {
            return;
        };
        match socket.send(&t.frame) {
            Ok(()) => self.counters.tx(t.iface.index(), t.frame.len()),
            Err(e) => {
                log::debug!("probe send on uplink {} failed: {e}", u.0);
                self.counters.dropped(DropReason::TxError);
            }
        }
    }
}
