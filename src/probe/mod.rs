//! IP SLA probes: their schedule and reply matching (`schedule`) and their statistics (`stats`).

use std::ops::RangeInclusive;

pub mod schedule;
pub mod stats;

/// Ports (TCP/DNS source ports) and ICMP echo ids the probes draw from, on every uplink. They
/// are carved out of every NAT pool (SPEC 35): no session can ever own one, so a LAN host cannot
/// capture a probe's replies, and the fast path tells a probe's reply by its port alone.
pub const PROBE_PORTS: RangeInclusive<u16> = 65280..=65535;

/// The `n`th port of [`PROBE_PORTS`], wrapping: the `i`th configured probe uses
/// `probe_port(base + i)`, `base` random per run, so probes' ports are distinct and unguessable.
pub fn probe_port(n: u16) -> u16 {
    let first = *PROBE_PORTS.start();
    let len = PROBE_PORTS.end() - first + 1;
    first + n % len
}
