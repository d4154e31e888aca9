//! mhrouter: a userspace IPv4 router for a small multihomed site.
//!
//! Pure logic (no I/O): `wire` (packet formats), `fastpath` (per-packet decisions), `gro`
//! (TCP segments merged into GSO super-frames for the LAN), `route`, `nat`, `neigh`
//! (neighbour cache), `prefix6`, `track`, `probe`, `config`, and the control plane's protocol
//! engines in `control` (ARP, echo, probes, failover, VRRP, IPv6 ND and RAs). Platform I/O:
//! `io` (TAP, packet sockets, netlink, epoll). Threads: `dataplane` (workers), `control` (the
//! control thread, the probe thread, the control socket), `router` (start-up and shutdown);
//! `shared` is what they share; `systemd` (readiness notifications to the service manager).

pub mod clock;
pub mod config;
pub mod control;
pub mod counters;
pub mod dataplane;
pub mod dhcp;
pub mod dns;
pub mod fastpath;
#[cfg(fuzzing)]
pub mod fuzz;
pub mod gro;
pub mod hooks;
pub mod io;
pub mod metrics;
pub mod nat;
pub mod neigh;
pub mod prefix;
pub mod prefix6;
pub mod probe;
pub mod rng;
pub mod route;
pub mod router;
pub mod shared;
pub mod snapshot;
pub mod systemd;
pub mod track;
pub mod views;
pub mod wire;

/// Index of an uplink in the configuration's uplink list (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct UplinkId(pub u8);

/// An interface of the router: the LAN (inside) or one uplink (outside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Iface {
    Lan,
    Uplink(UplinkId),
}

impl Iface {
    /// Index in per-interface arrays: 0 is the LAN, 1.. are the uplinks.
    pub fn index(self) -> usize {
        match self {
            Iface::Lan => 0,
            Iface::Uplink(u) => 1 + u.0 as usize,
        }
    }
}
