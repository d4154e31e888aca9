//! VRRPv3 for IPv4 on the LAN (SPEC 29, RFC 5798 §6): the state machine of each virtual router,
//! as an I/O-free engine.
//!
//! `Vrrp` holds the groups of the configuration. It takes received IPv4 packets and the clock
//! (`handle_packet`, `handle_timeout`), the tracks that are down (`set_down_tracks`), and gives
//! back Ethernet frames for the LAN (`poll_transmit`: advertisements from the virtual MAC,
//! gratuitous ARP on becoming master), what happened (`poll_event`: transitions and priority
//! changes, for the log and the counters) and when it next needs the clock (`poll_timeout`).
//!
//! Beyond the RFC: a track down lowers the priority by its decrement (floor 1), a master whose
//! priority changes advertises at once, and a preempting backup tolerates a lower-priority master
//! for `preempt_delay` before it lets the master-down timer run out.

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::clock::Instant;
use crate::config::{VRRP_OWNER_PRIORITY, VrrpConfig};
use crate::wire::arp;
use crate::wire::ethernet::MacAddr;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::vrrp::{self, VrrpPacket, VrrpRepr};

/// Priority an advertisement carries when its master is leaving (RFC 5798 §6.4.3 shutdown).
const LEAVING_PRIORITY: u8 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VrrpState {
    Initialize,
    Backup,
    Master,
}

impl fmt::Display for VrrpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VrrpState::Initialize => "Init",
            VrrpState::Backup => "Backup",
            VrrpState::Master => "Master",
        })
    }
}

/// Why a group changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Startup: Backup, or Master for the address owner.
    Startup,
    /// No advertisement from a master for Master_Down_Interval (or skew time after a master
    /// said it was leaving).
    MasterDown,
    /// An advertisement with a higher priority (or equal, from a higher address).
    Preempted {
        by: Ipv4Addr,
        priority: u8,
    },
    Shutdown,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Startup => f.write_str("startup"),
            Cause::MasterDown => f.write_str("master down"),
            Cause::Preempted { by, priority } => write!(f, "preempted by {by} priority {priority}"),
            Cause::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// Why a received VRRP packet was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvertDrop {
    /// Not sent with TTL 255: it crossed a router (RFC 5798 §7.1).
    Ttl,
    /// Truncated, another version or type, interval 0, or not to 224.0.0.18.
    Malformed,
    BadChecksum,
    /// A VRID no group here has.
    UnknownVrid,
    /// The sender's addresses differ from ours and it is not the owner (RFC 5798 §7.1).
    AddressMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VrrpEvent {
    StateChange {
        vrid: u8,
        from: VrrpState,
        to: VrrpState,
        cause: Cause,
    },
    /// The effective priority changed (a track went down or came back up).
    PriorityChange {
        vrid: u8,
        from: u8,
        to: u8,
    },
    Dropped(AdvertDrop),
}

impl VrrpEvent {
    /// IOS-flavoured log line.
    pub fn log_line(&self) -> String {
        match self {
            VrrpEvent::StateChange {
                vrid,
                from,
                to,
                cause,
            } => format!("%VRRP-6-STATECHANGE: Lan Grp {vrid} state {from} -> {to} ({cause})"),
            VrrpEvent::PriorityChange { vrid, from, to } => {
                format!("%VRRP-6-PRIORITY: Lan Grp {vrid} priority {from} -> {to}")
            }
            VrrpEvent::Dropped(reason) => format!("%VRRP-4-BADADVERT: dropped ({reason:?})"),
        }
    }
}

/// One group as `show vrrp` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupStatus {
    pub vrid: u8,
    pub state: VrrpState,
    pub priority: u8,
    pub configured_priority: u8,
    pub addresses: Vec<Ipv4Addr>,
    pub advert_interval_cs: u16,
    pub preempt: bool,
    pub preempt_delay_ms: u64,
    /// The master's address: ours while master, the last advertiser's while backup.
    pub master: Option<Ipv4Addr>,
    pub master_priority: Option<u8>,
    pub master_adver_interval_cs: u16,
    pub master_down_interval_ms: u64,
    pub transitions: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
}

/// Skew_Time (RFC 5798 §6.1): ((256 - priority) * Master_Adver_Interval) / 256, so the backup
/// with the highest priority notices a dead master first.
pub fn skew_time(priority: u8, master_adver_interval_cs: u16) -> Duration {
    let micros = (256 - u64::from(priority)) * u64::from(master_adver_interval_cs) * 10_000 / 256;
    Duration::from_micros(micros)
}

/// Master_Down_Interval: 3 * Master_Adver_Interval + Skew_Time.
pub fn master_down_interval(priority: u8, master_adver_interval_cs: u16) -> Duration {
    centis(master_adver_interval_cs) * 3 + skew_time(priority, master_adver_interval_cs)
}

fn centis(cs: u16) -> Duration {
    Duration::from_millis(u64::from(cs) * 10)
}

struct Group {
    cfg: VrrpConfig,
    /// Effective priority: configured minus the decrements of the tracks down, at least 1.
    priority: u8,
    state: VrrpState,
    master_adver_interval_cs: u16,
    /// Adver_Timer while master, Master_Down_Timer while backup.
    timer: Option<Instant>,
    /// When a lower-priority master was first heard, while preempting is delayed.
    lower_master_since: Option<Instant>,
    master: Option<Ipv4Addr>,
    master_priority: Option<u8>,
    transitions: u64,
    adverts_sent: u64,
    adverts_received: u64,
}

/// What the groups give back, shared so each group can queue into it.
#[derive(Default)]
struct Output {
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<VrrpEvent>,
}

/// The VRRP groups of the LAN.
pub struct Vrrp {
    /// The router's LAN address: the source of advertisements, the tie-breaker.
    primary: Ipv4Addr,
    groups: Vec<Group>,
    out: Output,
}

impl Vrrp {
    /// The groups start in Initialize; `startup` moves them on.
    pub fn new(configs: Vec<VrrpConfig>, primary: Ipv4Addr) -> Vrrp {
        Vrrp {
            primary,
            groups: configs.into_iter().map(Group::new).collect(),
            out: Output::default(),
        }
    }

    /// The LAN is up: every group in Initialize starts (RFC 5798 §6.4.1).
    pub fn startup(&mut self, now: Instant) {
        for g in &mut self.groups {
            g.startup(self.primary, now, &mut self.out);
        }
    }

    /// The router is stopping: a master says so with priority 0, so a backup takes over after
    /// its skew time instead of the whole master-down interval.
    pub fn shutdown(&mut self, now: Instant) {
        for g in &mut self.groups {
            g.shutdown(self.primary, now, &mut self.out);
        }
    }

    /// A VRRP packet (the IPv4 packet, protocol 112) received on the LAN.
    pub fn handle_packet(&mut self, ip: &[u8], now: Instant) {
        match parse(ip) {
            Err(reason) => self.out.events.push_back(VrrpEvent::Dropped(reason)),
            // Our own advertisement, looped back by the LAN.
            Ok((src, _)) if src == self.primary => {}
            Ok((src, advert)) => match self.groups.iter_mut().find(|g| g.cfg.vrid == advert.vrid) {
                Some(g) => g.handle_advert(src, &advert, self.primary, now, &mut self.out),
                None => self
                    .out
                    .events
                    .push_back(VrrpEvent::Dropped(AdvertDrop::UnknownVrid)),
            },
        }
    }

    /// Fires the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for g in &mut self.groups {
            g.handle_timeout(self.primary, now, &mut self.out);
        }
    }

    /// `is_down(name)` tells which tracks are down; each group's priority follows.
    pub fn set_down_tracks(&mut self, is_down: impl Fn(&str) -> bool, now: Instant) {
        for g in &mut self.groups {
            let decrement: u32 = g
                .cfg
                .tracks
                .iter()
                .filter(|t| is_down(&t.track))
                .map(|t| u32::from(t.decrement))
                .sum();
            let priority = u32::from(g.cfg.priority).saturating_sub(decrement).max(1) as u8;
            g.set_priority(priority, self.primary, now, &mut self.out);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.groups.iter().filter_map(|g| g.timer).min()
    }

    /// An Ethernet frame (no virtio header) to send on the LAN.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<VrrpEvent> {
        self.out.events.pop_front()
    }

    /// The virtual MACs and addresses of the groups that are master: what the router answers
    /// ARP for and accepts frames to.
    pub fn mastered(&self) -> impl Iterator<Item = (MacAddr, &[Ipv4Addr])> + '_ {
        self.groups
            .iter()
            .filter(|g| g.state == VrrpState::Master)
            .map(|g| (vrrp::virtual_mac(g.cfg.vrid), g.cfg.addresses.as_slice()))
    }

    pub fn status(&self) -> Vec<GroupStatus> {
        self.groups.iter().map(|g| g.status(self.primary)).collect()
    }
}

/// Checks of RFC 5798 §7.1 that need no group: TTL, destination, version, type, length and
/// checksum. The advertisement and its sender.
fn parse(ip: &[u8]) -> Result<(Ipv4Addr, VrrpRepr), AdvertDrop> {
    let ip = Ipv4Packet::new_checked(ip).map_err(|_| AdvertDrop::Malformed)?;
    if ip.ttl() != vrrp::TTL {
        return Err(AdvertDrop::Ttl);
    }
    if ip.protocol() != vrrp::PROTOCOL || ip.dst() != vrrp::MULTICAST_ADDR || ip.is_fragment() {
        return Err(AdvertDrop::Malformed);
    }
    let packet = VrrpPacket::new_checked(ip.payload()).map_err(|_| AdvertDrop::Malformed)?;
    let advert =
        VrrpRepr::parse(&packet, ip.src(), ip.dst()).map_err(|_| AdvertDrop::BadChecksum)?;
    if advert.max_adver_int == 0 {
        return Err(AdvertDrop::Malformed);
    }
    Ok((ip.src(), advert))
}

impl Group {
    fn new(cfg: VrrpConfig) -> Group {
        Group {
            priority: cfg.priority,
            state: VrrpState::Initialize,
            master_adver_interval_cs: cfg.advert_interval_cs,
            timer: None,
            lower_master_since: None,
            master: None,
            master_priority: None,
            transitions: 0,
            adverts_sent: 0,
            adverts_received: 0,
            cfg,
        }
    }

    fn vrid(&self) -> u8 {
        self.cfg.vrid
    }

    fn master_down_interval(&self) -> Duration {
        master_down_interval(self.priority, self.master_adver_interval_cs)
    }

    fn startup(&mut self, primary: Ipv4Addr, now: Instant, out: &mut Output) {
        if self.state != VrrpState::Initialize {
            return;
        }
        if self.priority == VRRP_OWNER_PRIORITY {
            self.become_master(primary, Cause::Startup, now, out);
        } else {
            self.master_adver_interval_cs = self.cfg.advert_interval_cs;
            self.timer = Some(now + self.master_down_interval());
            self.transition(VrrpState::Backup, Cause::Startup, out);
        }
    }

    fn shutdown(&mut self, primary: Ipv4Addr, _now: Instant, out: &mut Output) {
        if self.state == VrrpState::Master {
            self.send_advert(LEAVING_PRIORITY, primary, out);
        }
        if self.state != VrrpState::Initialize {
            self.timer = None;
            self.lower_master_since = None;
            self.master = None;
            self.master_priority = None;
            self.transition(VrrpState::Initialize, Cause::Shutdown, out);
        }
    }

    fn handle_advert(
        &mut self,
        src: Ipv4Addr,
        advert: &VrrpRepr,
        primary: Ipv4Addr,
        now: Instant,
        out: &mut Output,
    ) {
        if advert.priority != VRRP_OWNER_PRIORITY && !same_addresses(&advert.addrs, &self.cfg) {
            out.events
                .push_back(VrrpEvent::Dropped(AdvertDrop::AddressMismatch));
            return;
        }
        self.adverts_received += 1;
        match self.state {
            VrrpState::Initialize => {}
            VrrpState::Backup if advert.priority == LEAVING_PRIORITY => {
                self.timer = Some(now + skew_time(self.priority, self.master_adver_interval_cs));
            }
            VrrpState::Backup => {
                if self.preempts(advert.priority, now) {
                    // Discarded: the master-down timer runs out and this router takes over.
                    return;
                }
                self.master = Some(src);
                self.master_priority = Some(advert.priority);
                self.master_adver_interval_cs = advert.max_adver_int;
                self.timer = Some(now + self.master_down_interval());
            }
            VrrpState::Master if advert.priority == LEAVING_PRIORITY => {
                self.send_advert(self.priority, primary, out);
                self.timer = Some(now + centis(self.cfg.advert_interval_cs));
            }
            VrrpState::Master => {
                let wins = advert.priority > self.priority
                    || (advert.priority == self.priority && src > primary);
                if wins {
                    self.master = Some(src);
                    self.master_priority = Some(advert.priority);
                    self.master_adver_interval_cs = advert.max_adver_int;
                    self.lower_master_since = None;
                    self.timer = Some(now + self.master_down_interval());
                    let cause = Cause::Preempted {
                        by: src,
                        priority: advert.priority,
                    };
                    self.transition(VrrpState::Backup, cause, out);
                }
            }
        }
    }

    /// A backup heard a master with `priority`: true when it preempts (ignores the
    /// advertisement), which with a delay only starts once the lower master has been heard for
    /// `preempt_delay`.
    fn preempts(&mut self, priority: u8, now: Instant) -> bool {
        if !self.cfg.preempt || priority >= self.priority {
            self.lower_master_since = None;
            return false;
        }
        let since = *self.lower_master_since.get_or_insert(now);
        now >= since + self.cfg.preempt_delay
    }

    fn handle_timeout(&mut self, primary: Ipv4Addr, now: Instant, out: &mut Output) {
        if self.timer.is_none_or(|t| now < t) {
            return;
        }
        match self.state {
            VrrpState::Initialize => self.timer = None,
            VrrpState::Backup => self.become_master(primary, Cause::MasterDown, now, out),
            VrrpState::Master => {
                self.send_advert(self.priority, primary, out);
                self.timer = Some(now + centis(self.cfg.advert_interval_cs));
            }
        }
    }

    fn set_priority(&mut self, priority: u8, primary: Ipv4Addr, now: Instant, out: &mut Output) {
        if priority == self.priority || self.priority == VRRP_OWNER_PRIORITY {
            return;
        }
        out.events.push_back(VrrpEvent::PriorityChange {
            vrid: self.vrid(),
            from: self.priority,
            to: priority,
        });
        self.priority = priority;
        if self.state == VrrpState::Master {
            // Backups learn at once that they may preempt, instead of at the next interval.
            self.master_priority = Some(priority);
            self.send_advert(priority, primary, out);
            self.timer = Some(now + centis(self.cfg.advert_interval_cs));
        }
        if self.state == VrrpState::Backup && self.master_priority.is_some_and(|p| p >= priority) {
            self.lower_master_since = None;
        }
    }

    fn become_master(&mut self, primary: Ipv4Addr, cause: Cause, now: Instant, out: &mut Output) {
        self.send_advert(self.priority, primary, out);
        let vmac = vrrp::virtual_mac(self.vrid());
        for &addr in &self.cfg.addresses {
            let mut frame = vec![0u8; 60];
            if let Ok(n) = arp::build_frame(
                &mut frame,
                MacAddr::BROADCAST,
                arp::op::REQUEST,
                vmac,
                addr,
                MacAddr::ZERO,
                addr,
            ) {
                frame.truncate(n);
                out.transmits.push_back(frame);
            }
        }
        self.timer = Some(now + centis(self.cfg.advert_interval_cs));
        self.lower_master_since = None;
        self.master = Some(primary);
        self.master_priority = Some(self.priority);
        self.transition(VrrpState::Master, cause, out);
    }

    fn send_advert(&mut self, priority: u8, primary: Ipv4Addr, out: &mut Output) {
        let repr = VrrpRepr {
            vrid: self.vrid(),
            priority,
            max_adver_int: self.cfg.advert_interval_cs,
            addrs: self.cfg.addresses.clone(),
        };
        let mut frame = vec![0u8; repr.frame_len()];
        if repr.build_frame(&mut frame, primary).is_ok() {
            out.transmits.push_back(frame);
            self.adverts_sent += 1;
        }
    }

    fn transition(&mut self, to: VrrpState, cause: Cause, out: &mut Output) {
        let from = self.state;
        self.state = to;
        self.transitions += 1;
        out.events.push_back(VrrpEvent::StateChange {
            vrid: self.vrid(),
            from,
            to,
            cause,
        });
    }

    fn status(&self, primary: Ipv4Addr) -> GroupStatus {
        let master = match self.state {
            VrrpState::Master => Some(primary),
            VrrpState::Backup => self.master,
            VrrpState::Initialize => None,
        };
        GroupStatus {
            vrid: self.vrid(),
            state: self.state,
            priority: self.priority,
            configured_priority: self.cfg.priority,
            addresses: self.cfg.addresses.clone(),
            advert_interval_cs: self.cfg.advert_interval_cs,
            preempt: self.cfg.preempt,
            preempt_delay_ms: self.cfg.preempt_delay.as_millis() as u64,
            master,
            master_priority: master.and(self.master_priority),
            master_adver_interval_cs: self.master_adver_interval_cs,
            master_down_interval_ms: self.master_down_interval().as_millis() as u64,
            transitions: self.transitions,
            adverts_sent: self.adverts_sent,
            adverts_received: self.adverts_received,
        }
    }
}

/// The advertised addresses are the configured ones, in any order.
fn same_addresses(advertised: &[Ipv4Addr], cfg: &VrrpConfig) -> bool {
    advertised.len() == cfg.addresses.len() && advertised.iter().all(|a| cfg.addresses.contains(a))
}
