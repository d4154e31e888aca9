//! Failover policy (SPEC 21, 22): what to do with NAT flows when the route table changes. Pure:
//! the control thread hands over the old and new tables and the clock, and carries out the
//! actions (it owns the NAT table and the LAN socket).
//!
//! - An uplink whose installed routes were all withdrawn for loss of eligibility (track down, no
//!   carrier) loses its flows, with RSTs to the LAN ends when `reset_tcp` (SPEC 21). An uplink
//!   merely displaced by a preferred one keeps them (SPEC 22).
//! - Nothing is flushed while no static route is installed anywhere: stranded flows may still
//!   work when the uplink comes back, and there is nowhere else for them to go.
//! - With `failback = "move"`, a preferred uplink coming back starts a grace period; when it ends,
//!   flows still on uplinks that carry no installed route are flushed so they reconnect home.
//! - Connections in through a port forward are flushed only with their uplink's carrier: while
//!   the link works their replies still leave by it, and no other uplink could carry them (their
//!   clients reach this uplink's address; SPEC 13).

use std::fmt;
use std::time::Duration;

use crate::UplinkId;
use crate::clock::Instant;
use crate::config::{Failback, FailoverConfig};
use crate::route::{RouteState, RouteTable};

/// Why an uplink's flows are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    /// Its installed routes were all withdrawn (SPEC 21).
    Withdrawn,
    /// `failback = "move"` and the grace period is over (SPEC 22).
    FailbackGrace,
}

impl fmt::Display for FlushReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlushReason::Withdrawn => "no installed route left",
            FlushReason::FailbackGrace => "failback grace over",
        })
    }
}

/// What the control thread must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Remove the NAT flows of `uplink`; with `reset_tcp`, send a RST to the LAN end of each
    /// TCP flow; with `forwarded`, the connections in through its port forwards too.
    Flush {
        uplink: UplinkId,
        reset_tcp: bool,
        forwarded: bool,
        reason: FlushReason,
    },
    /// Flows on backup uplinks move home after `grace` (logged; the timer is ours).
    FailbackScheduled { grace: Duration },
}

pub struct Failover {
    cfg: FailoverConfig,
    /// With `failback = "move"`: when flows left on backup uplinks are moved.
    move_due: Option<Instant>,
}

impl Failover {
    pub fn new(cfg: FailoverConfig) -> Failover {
        Failover {
            cfg,
            move_due: None,
        }
    }

    /// A reload: the new settings apply to the next change; a running grace period is kept.
    pub fn reconfigure(&mut self, cfg: FailoverConfig) {
        self.cfg = cfg;
    }

    /// The route table changed from `old` to `new` at `now`.
    pub fn on_routes_changed(
        &mut self,
        old: &RouteTable,
        new: &RouteTable,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Failback::Move { grace } = self.cfg.failback
            && new
                .uplinks()
                .any(|u| !old.uplink_installed(u) && new.uplink_installed(u))
        {
            self.move_due = Some(now + grace);
            actions.push(Action::FailbackScheduled { grace });
        }
        if new.any_installed() {
            actions.extend(
                new.uplinks()
                    .filter(|&u| withdrawn(old, new, u))
                    .map(|uplink| self.flush(new, uplink, FlushReason::Withdrawn)),
            );
        }
        actions
    }

    /// Timers at `now`; `table` is the current route table and `flows[u]` the number of NAT
    /// flows on uplink `u`.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        table: &RouteTable,
        flows: &[usize],
    ) -> Vec<Action> {
        if self.move_due.is_none_or(|t| now < t) {
            return Vec::new();
        }
        self.move_due = None;
        if !table.any_installed() {
            return Vec::new();
        }
        table
            .uplinks()
            .filter(|&u| !table.uplink_installed(u))
            .filter(|u| flows.get(usize::from(u.0)).is_some_and(|&n| n > 0))
            .map(|uplink| self.flush(table, uplink, FlushReason::FailbackGrace))
            .collect()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.move_due
    }

    /// The flush of `uplink` in the route table `now`.
    fn flush(&self, now: &RouteTable, uplink: UplinkId, reason: FlushReason) -> Action {
        Action::Flush {
            uplink,
            reset_tcp: self.cfg.reset_tcp,
            forwarded: !now.carrier_up(uplink),
            reason,
        }
    }
}

/// True when `uplink` had installed routes in `old`, has none in `new`, and every one of them
/// is now ineligible (not merely displaced by a preferred route).
fn withdrawn(old: &RouteTable, new: &RouteTable, uplink: UplinkId) -> bool {
    let mut was = old
        .routes_via(uplink)
        .filter(|(_, s)| *s == RouteState::Installed)
        .peekable();
    was.peek().is_some()
        && !new.uplink_installed(uplink)
        && was.all(|(w, _)| {
            new.routes_via(uplink)
                .any(|(r, s)| r.name == w.name && !s.eligible())
        })
}

#[cfg(test)]
mod tests;
