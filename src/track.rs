//! Object tracking (SPEC 17–20, 24): tracks follow a probe, an uplink's carrier, or a list of
//! other tracks, and commit a change only after its condition has held for the whole delay.
//!
//! Pure state machine: callers feed observations and `now`, and get events to log/act on.
//!
//! Initial state: every track starts Down and "unsettled". An unsettled track follows its
//! condition at once, without delays, so that the router converges at boot instead of waiting
//! delay-up before any tracked route is usable; that first transition is an ordinary committed
//! change (event, log line, counter +1, as IOS counts its first change after boot). A probe or
//! carrier track settles at its first observation (a first timeout settles it Down without a
//! change, and later recovery then waits delay-up); a list track settles once all its members
//! have. Feed the initial carrier state through [`TrackSet::on_carrier`] at start.
//!
//! Timing: a pending change commits when `now` reaches its deadline in [`TrackSet::poll`], or in
//! the next observation call if poll ran late: expired changes are committed before the new
//! observation is applied, because the old condition held until that observation.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::clock::Instant;
use crate::probe::stats::{HumanDuration, ProbeResult, ProbeStats};

pub use crate::config::{ListOp, TrackMode};

impl fmt::Display for ListOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListOp::All => f.write_str("all"),
            ListOp::Any => f.write_str("any"),
            ListOp::AtLeast(n) => write!(f, "at least {n}"),
        }
    }
}

/// What a track follows, resolved to indices (the configuration's `TrackSource` names them).
#[derive(Clone, Debug)]
pub enum TrackInput {
    Probe {
        probe: usize,
        mode: TrackMode,
    },
    Carrier {
        uplink: usize,
    },
    /// `members` are track indices; the config validator rejects cycles, and [`TrackSet`] drops
    /// any member that would still form one (or is out of range) rather than loop.
    List {
        members: Vec<usize>,
        op: ListOp,
    },
}

#[derive(Clone, Debug)]
pub struct TrackDef {
    pub name: String,
    pub input: TrackInput,
    pub delay_down: Duration,
    pub delay_up: Duration,
}

impl TrackDef {
    fn delay(&self, to: TrackState) -> Duration {
        match to {
            TrackState::Up => self.delay_up,
            TrackState::Down => self.delay_down,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackState {
    Up,
    Down,
}

impl TrackState {
    fn from_up(up: bool) -> TrackState {
        if up { TrackState::Up } else { TrackState::Down }
    }
}

impl fmt::Display for TrackState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrackState::Up => "up",
            TrackState::Down => "down",
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TrackEvent {
    ChangeDelayed {
        track: usize,
        to: TrackState,
        delay: Duration,
        reason: String,
    },
    /// The condition reverted before the delay ran out; `to` is the change that was pending.
    DelayCancelled {
        track: usize,
        to: TrackState,
        reason: String,
    },
    /// Always followed by the `Changed` it leads to.
    DelayExpired { track: usize, to: TrackState },
    Changed {
        track: usize,
        from: TrackState,
        to: TrackState,
        change_no: u64,
        reason: String,
    },
}

impl TrackEvent {
    pub fn track(&self) -> usize {
        match self {
            TrackEvent::ChangeDelayed { track, .. }
            | TrackEvent::DelayCancelled { track, .. }
            | TrackEvent::DelayExpired { track, .. }
            | TrackEvent::Changed { track, .. } => *track,
        }
    }

    /// IOS-flavoured log line; `names` are the track names by index (see [`TrackSet::names`]).
    pub fn log_line(&self, names: &[String]) -> String {
        let track = self.track();
        let name = names
            .get(track)
            .map_or_else(|| format!("#{track}"), Clone::clone);
        match self {
            TrackEvent::ChangeDelayed {
                to, delay, reason, ..
            } => format!(
                "track {name}: {to} change delayed {} ({reason})",
                HumanDuration(*delay)
            ),
            TrackEvent::DelayCancelled { to, reason, .. } => {
                format!("track {name}: {to} change delay cancelled ({reason})")
            }
            TrackEvent::DelayExpired { to, .. } => {
                format!("track {name}: {to} change delay expired")
            }
            TrackEvent::Changed {
                from,
                to,
                change_no,
                reason,
                ..
            } => format!("track {name}: change #{change_no} {from} -> {to} ({reason})"),
        }
    }
}

#[derive(Clone, Debug)]
struct Pending {
    to: TrackState,
    deadline: Instant,
    /// Reason of the latest observation backing the change, reported when it commits.
    reason: String,
}

#[derive(Clone, Debug)]
struct Track {
    def: TrackDef,
    state: TrackState,
    settled: bool,
    changes: u64,
    pending: Option<Pending>,
}

impl Track {
    fn new(def: TrackDef) -> Track {
        Track {
            def,
            state: TrackState::Down,
            settled: false,
            changes: 0,
            pending: None,
        }
    }

    fn list_members_mut(&mut self) -> Option<&mut Vec<usize>> {
        match &mut self.def.input {
            TrackInput::List { members, .. } => Some(members),
            _ => None,
        }
    }

    /// Applies the current condition `cond`; `immediate` skips the delay (unsettled track).
    fn apply(
        &mut self,
        index: usize,
        cond: TrackState,
        reason: String,
        immediate: bool,
        now: Instant,
        events: &mut Vec<TrackEvent>,
    ) {
        if cond == self.state {
            if let Some(p) = self.pending.take() {
                events.push(TrackEvent::DelayCancelled {
                    track: index,
                    to: p.to,
                    reason,
                });
            }
            return;
        }
        let delay = self.def.delay(cond);
        if immediate || delay.is_zero() {
            self.pending = None;
            self.commit(index, cond, reason, events);
        } else if let Some(p) = &mut self.pending {
            // With two states a pending change always points at `cond`: it keeps its deadline.
            p.reason = reason;
        } else {
            events.push(TrackEvent::ChangeDelayed {
                track: index,
                to: cond,
                delay,
                reason: reason.clone(),
            });
            self.pending = Some(Pending {
                to: cond,
                deadline: now + delay,
                reason,
            });
        }
    }

    fn expire(&mut self, index: usize, now: Instant, events: &mut Vec<TrackEvent>) {
        if self.pending.as_ref().is_some_and(|p| p.deadline <= now)
            && let Some(p) = self.pending.take()
        {
            events.push(TrackEvent::DelayExpired {
                track: index,
                to: p.to,
            });
            self.commit(index, p.to, p.reason, events);
        }
    }

    fn commit(
        &mut self,
        index: usize,
        to: TrackState,
        reason: String,
        events: &mut Vec<TrackEvent>,
    ) {
        let from = self.state;
        self.state = to;
        self.changes += 1;
        events.push(TrackEvent::Changed {
            track: index,
            from,
            to,
            change_no: self.changes,
            reason,
        });
    }
}

/// All tracks of the configuration, indexed as in the config.
#[derive(Clone, Debug)]
pub struct TrackSet {
    tracks: Vec<Track>,
    /// Track indices with every list's members before the list itself.
    order: Vec<usize>,
}

impl TrackSet {
    pub fn new(defs: Vec<TrackDef>, now: Instant) -> TrackSet {
        let mut set = TrackSet {
            tracks: Vec::new(),
            order: Vec::new(),
        };
        set.reconfigure(defs, now);
        set
    }

    /// Redefines the tracks on config reload. Tracks whose name survives keep their state,
    /// settledness and change count; pending changes are dropped (the next observation that
    /// still disagrees starts the delay again), and new tracks start Down and unsettled.
    /// List tracks are re-evaluated at the next `poll` or observation.
    pub fn reconfigure(&mut self, defs: Vec<TrackDef>, _now: Instant) {
        let mut tracks: Vec<Track> = defs
            .into_iter()
            .map(|def| {
                let mut t = Track::new(def);
                if let Some(old) = self.tracks.iter().find(|o| o.def.name == t.def.name) {
                    t.state = old.state;
                    t.settled = old.settled;
                    t.changes = old.changes;
                }
                t
            })
            .collect();
        self.order = topological_order(&mut tracks);
        self.tracks = tracks;
    }

    /// A probe recorded a result: tracks on `probe` follow its latest result.
    pub fn on_probe(
        &mut self,
        probe: usize,
        probe_name: &str,
        stats: &ProbeStats,
        now: Instant,
    ) -> Vec<TrackEvent> {
        let mut events = self.poll(now);
        let Some(last) = stats.last() else {
            return events;
        };
        let reason = probe_reason(probe_name, stats);
        for (i, t) in self.tracks.iter_mut().enumerate() {
            if let TrackInput::Probe { probe: p, mode } = t.def.input
                && p == probe
            {
                let up = match (mode, last) {
                    (_, ProbeResult::Ok(_)) => true,
                    (TrackMode::Reachability, ProbeResult::OverThreshold(_)) => true,
                    (TrackMode::State, ProbeResult::OverThreshold(_)) => false,
                    (_, ProbeResult::Timeout) => false,
                };
                let immediate = !t.settled;
                t.settled = true;
                t.apply(
                    i,
                    TrackState::from_up(up),
                    reason.clone(),
                    immediate,
                    now,
                    &mut events,
                );
            }
        }
        self.update_lists(now, &mut events);
        events
    }

    /// An uplink's carrier is (still) up or down; call once at start with the initial state.
    pub fn on_carrier(&mut self, uplink: usize, carrier: bool, now: Instant) -> Vec<TrackEvent> {
        let mut events = self.poll(now);
        let reason = if carrier {
            "carrier up"
        } else {
            "carrier lost"
        };
        for (i, t) in self.tracks.iter_mut().enumerate() {
            if let TrackInput::Carrier { uplink: u } = t.def.input
                && u == uplink
            {
                let immediate = !t.settled;
                t.settled = true;
                t.apply(
                    i,
                    TrackState::from_up(carrier),
                    reason.to_owned(),
                    immediate,
                    now,
                    &mut events,
                );
            }
        }
        self.update_lists(now, &mut events);
        events
    }

    /// Commits pending changes whose delay has run out, then re-evaluates list tracks, in
    /// dependency order so a list sees its members' commits of the same instant.
    pub fn poll(&mut self, now: Instant) -> Vec<TrackEvent> {
        let mut events = Vec::new();
        let order = std::mem::take(&mut self.order);
        for &i in &order {
            if let Some(t) = self.tracks.get_mut(i) {
                t.expire(i, now, &mut events);
            }
            self.update_list(i, now, &mut events);
        }
        self.order = order;
        events
    }

    fn update_lists(&mut self, now: Instant, events: &mut Vec<TrackEvent>) {
        let order = std::mem::take(&mut self.order);
        for &i in &order {
            self.update_list(i, now, events);
        }
        self.order = order;
    }

    /// Re-evaluates track `i` from its members' committed states if it is a list.
    fn update_list(&mut self, i: usize, now: Instant, events: &mut Vec<TrackEvent>) {
        let Some(Track {
            def:
                TrackDef {
                    input: TrackInput::List { members, op },
                    ..
                },
            ..
        }) = self.tracks.get(i)
        else {
            return;
        };
        let mut up = 0;
        let mut all_settled = true;
        let mut down_names = Vec::new();
        for m in members.iter().filter_map(|&m| self.tracks.get(m)) {
            all_settled &= m.settled;
            if m.state == TrackState::Up {
                up += 1;
            } else {
                down_names.push(m.def.name.as_str());
            }
        }
        let n = members.len();
        let cond = match op {
            ListOp::All => up == n,
            ListOp::Any => up > 0,
            ListOp::AtLeast(k) => up >= *k,
        };
        let mut reason = format!("list {op}: {up}/{n} up");
        if !down_names.is_empty() {
            reason.push_str(", down: ");
            reason.push_str(&down_names.join(", "));
        }
        if let Some(t) = self.tracks.get_mut(i) {
            let immediate = !t.settled;
            t.settled = all_settled;
            t.apply(i, TrackState::from_up(cond), reason, immediate, now, events);
        }
    }

    /// Earliest instant at which `poll` has something to commit.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.tracks
            .iter()
            .filter_map(|t| t.pending.as_ref().map(|p| p.deadline))
            .min()
    }

    /// Committed state; Down for an unknown index.
    pub fn state(&self, track: usize) -> TrackState {
        self.tracks.get(track).map_or(TrackState::Down, |t| t.state)
    }

    /// Committed states, true = up, indexed by track (the route table's view).
    pub fn states(&self) -> Vec<bool> {
        self.tracks
            .iter()
            .map(|t| t.state == TrackState::Up)
            .collect()
    }

    /// Per track: whether it has seen its first observation (false: not measured yet).
    pub fn settled(&self) -> Vec<bool> {
        self.tracks.iter().map(|t| t.settled).collect()
    }

    /// Number of committed changes of `track` (0 for an unknown index).
    pub fn change_count(&self, track: usize) -> u64 {
        self.tracks.get(track).map_or(0, |t| t.changes)
    }

    /// The pending change of `track` and the time left before it commits.
    pub fn pending(&self, track: usize, now: Instant) -> Option<(TrackState, Duration)> {
        let p = self.tracks.get(track)?.pending.as_ref()?;
        Some((p.to, p.deadline.saturating_since(now)))
    }

    /// Name of `track` ("" for an unknown index).
    pub fn name(&self, track: usize) -> &str {
        self.tracks.get(track).map_or("", |t| t.def.name.as_str())
    }

    /// All names by index, for [`TrackEvent::log_line`].
    pub fn names(&self) -> Vec<String> {
        self.tracks.iter().map(|t| t.def.name.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}

/// The log reason for a probe's latest result (SPEC 24: which probe, how many lost, RTT).
fn probe_reason(name: &str, stats: &ProbeStats) -> String {
    match stats.last() {
        Some(ProbeResult::Ok(rtt)) => format!("probe {name}: ok, rtt {}", HumanDuration(rtt)),
        Some(ProbeResult::OverThreshold(rtt)) => {
            format!("probe {name}: over threshold, rtt {}", HumanDuration(rtt))
        }
        Some(ProbeResult::Timeout) | None => {
            let n = stats.consecutive_timeouts();
            let (lost, attempts) = stats.window_lost();
            let plural = if n == 1 { "" } else { "s" };
            let mut reason = format!("probe {name}: {n} timeout{plural}, {lost}/{attempts} lost");
            if let Some(rtt) = stats.last_rtt() {
                reason.push_str(&format!(", last rtt {}", HumanDuration(rtt)));
            }
            reason
        }
    }
}

/// Orders tracks so every list comes after its members (depth-first post-order), removing list
/// members that are out of range or would close a cycle.
fn topological_order(tracks: &mut [Track]) -> Vec<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        InProgress,
        Done,
    }
    let n = tracks.len();
    let mut mark = vec![Mark::New; n];
    let mut order = Vec::with_capacity(n);
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if mark[root] != Mark::New {
            continue;
        }
        mark[root] = Mark::InProgress;
        stack.push((root, 0));
        while let Some((node, next)) = stack.last().copied() {
            let member = tracks
                .get_mut(node)
                .and_then(Track::list_members_mut)
                .and_then(|ms| ms.get(next).copied());
            match member {
                Some(m) if m >= n || mark[m] == Mark::InProgress => {
                    if let Some(ms) = tracks.get_mut(node).and_then(Track::list_members_mut) {
                        ms.remove(next);
                    }
                }
                Some(m) => {
                    if let Some(top) = stack.last_mut() {
                        top.1 += 1;
                    }
                    if mark[m] == Mark::New {
                        mark[m] = Mark::InProgress;
                        stack.push((m, 0));
                    }
                }
                None => {
                    mark[node] = Mark::Done;
                    order.push(node);
                    stack.pop();
                }
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OK: ProbeResult = ProbeResult::Ok(Duration::from_micros(900));
    const SLOW: ProbeResult = ProbeResult::OverThreshold(Duration::from_millis(300));
    const LOST: ProbeResult = ProbeResult::Timeout;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn def(name: &str, input: TrackInput, down: Duration, up: Duration) -> TrackDef {
        TrackDef {
            name: name.to_owned(),
            input,
            delay_down: down,
            delay_up: up,
        }
    }

    fn on_probe(probe: usize, mode: TrackMode) -> TrackInput {
        TrackInput::Probe { probe, mode }
    }

    /// The seed's profile: one reachability track on probe 0, delay down 10 s, up 20 s.
    fn seed_set() -> TrackSet {
        TrackSet::new(
            vec![def(
                "a-ok",
                on_probe(0, TrackMode::Reachability),
                secs(10),
                secs(20),
            )],
            at(0),
        )
    }

    /// A probe's statistics and the feed into a track set.
    struct Probe {
        index: usize,
        name: &'static str,
        stats: ProbeStats,
    }

    impl Probe {
        fn new(index: usize, name: &'static str) -> Probe {
            Probe {
                index,
                name,
                stats: ProbeStats::new(5),
            }
        }

        fn feed(&mut self, set: &mut TrackSet, r: ProbeResult, ms: u64) -> Vec<TrackEvent> {
            self.stats.record(r);
            set.on_probe(self.index, self.name, &self.stats, at(ms))
        }
    }

    fn changes(events: &[TrackEvent]) -> Vec<(usize, TrackState)> {
        events
            .iter()
            .filter_map(|e| match e {
                TrackEvent::Changed { track, to, .. } => Some((*track, *to)),
                _ => None,
            })
            .collect()
    }

    /// Brings the seed set up at t=0 (initial convergence) and returns the probe.
    fn converged_up(set: &mut TrackSet) -> Probe {
        let mut p = Probe::new(0, "a-nexthop");
        let ev = p.feed(set, OK, 0);
        assert_eq!(changes(&ev), vec![(0, TrackState::Up)]);
        p
    }

    #[test]
    fn starts_down_and_first_good_result_is_immediate() {
        let mut set = seed_set();
        assert_eq!(set.state(0), TrackState::Down);
        assert_eq!(set.states(), vec![false]);
        let mut p = Probe::new(0, "a-nexthop");
        let ev = p.feed(&mut set, OK, 0);
        assert_eq!(
            ev[0].log_line(&set.names()),
            "track a-ok: change #1 down -> up (probe a-nexthop: ok, rtt 0.9 ms)"
        );
        assert_eq!(set.change_count(0), 1);
        assert_eq!(set.next_deadline(), None);
    }

    #[test]
    fn first_timeout_settles_down_and_recovery_waits_delay_up() {
        let mut set = seed_set();
        let mut p = Probe::new(0, "a-nexthop");
        assert!(p.feed(&mut set, LOST, 0).is_empty());
        let ev = p.feed(&mut set, OK, 3_000);
        assert!(matches!(
            ev.as_slice(),
            [TrackEvent::ChangeDelayed { to: TrackState::Up, delay, .. }] if *delay == secs(20)
        ));
        assert_eq!(set.change_count(0), 0);
    }

    #[test]
    fn seed_profile_down_committed_exactly_after_delay_down() {
        let mut set = seed_set();
        let mut p = converged_up(&mut set);
        assert!(p.feed(&mut set, OK, 3_000).is_empty());
        let t = 6_000;
        let ev = p.feed(&mut set, LOST, t);
        assert_eq!(
            ev.iter()
                .map(|e| e.log_line(&set.names()))
                .collect::<Vec<_>>(),
            vec![
                "track a-ok: down change delayed 10 s (probe a-nexthop: 1 timeout, 1/3 lost, last rtt 0.9 ms)"
            ]
        );
        assert_eq!(set.next_deadline(), Some(at(t + 10_000)));
        assert_eq!(
            set.pending(0, at(t + 4_000)),
            Some((TrackState::Down, secs(6)))
        );
        for k in 1..=3 {
            assert!(p.feed(&mut set, LOST, t + k * 3_000).is_empty());
        }
        assert!(set.poll(at(t + 9_999)).is_empty());
        assert_eq!(set.state(0), TrackState::Up);
        let ev = set.poll(at(t + 10_000));
        let lines: Vec<_> = ev.iter().map(|e| e.log_line(&set.names())).collect();
        assert_eq!(
            lines,
            vec![
                "track a-ok: down change delay expired",
                "track a-ok: change #2 up -> down (probe a-nexthop: 4 timeouts, 4/5 lost, last rtt 0.9 ms)",
            ]
        );
        assert_eq!(set.state(0), TrackState::Down);
        assert_eq!(set.next_deadline(), None);
        assert_eq!(set.pending(0, at(t + 10_000)), None);
    }

    #[test]
    fn recovery_needs_delay_up_of_continuous_good() {
        let mut set = seed_set();
        let mut p = converged_up(&mut set);
        p.feed(&mut set, LOST, 3_000);
        assert_eq!(changes(&set.poll(at(13_000))), vec![(0, TrackState::Down)]);
        let first_good = 15_000;
        let ev = p.feed(&mut set, OK, first_good);
        assert!(matches!(
            ev.as_slice(),
            [TrackEvent::ChangeDelayed {
                to: TrackState::Up,
                ..
            }]
        ));
        let mut now = first_good;
        while now + 3_000 < first_good + 20_000 {
            now += 3_000;
            assert!(p.feed(&mut set, OK, now).is_empty());
        }
        assert!(set.poll(at(first_good + 19_999)).is_empty());
        let ev = set.poll(at(first_good + 20_000));
        assert_eq!(changes(&ev), vec![(0, TrackState::Up)]);
        assert_eq!(set.change_count(0), 3);
    }

    #[test]
    fn single_good_probe_cancels_down_delay() {
        let mut set = seed_set();
        let mut p = converged_up(&mut set);
        p.feed(&mut set, LOST, 3_000);
        p.feed(&mut set, LOST, 6_000);
        let ev = p.feed(&mut set, OK, 9_000);
        assert_eq!(
            ev.iter()
                .map(|e| e.log_line(&set.names()))
                .collect::<Vec<_>>(),
            vec!["track a-ok: down change delay cancelled (probe a-nexthop: ok, rtt 0.9 ms)"]
        );
        assert_eq!(set.next_deadline(), None);
        assert!(set.poll(at(13_000)).is_empty());
        // A new failure starts a fresh delay rather than resuming the old one.
        let ev = p.feed(&mut set, LOST, 12_000);
        assert_eq!(ev.len(), 1);
        assert_eq!(set.next_deadline(), Some(at(22_000)));
        assert_eq!(set.state(0), TrackState::Up);
        assert_eq!(set.change_count(0), 1);
    }

    #[test]
    fn flap_shorter_than_delay_up_moves_nothing() {
        let mut set = seed_set();
        let mut p = converged_up(&mut set);
        p.feed(&mut set, LOST, 3_000);
        set.poll(at(13_000));
        assert_eq!(set.state(0), TrackState::Down);
        p.feed(&mut set, OK, 15_000);
        p.feed(&mut set, OK, 18_000);
        let ev = p.feed(&mut set, LOST, 21_000);
        assert!(matches!(
            ev.as_slice(),
            [TrackEvent::DelayCancelled {
                to: TrackState::Up,
                ..
            }]
        ));
        assert!(set.poll(at(40_000)).is_empty());
        assert_eq!(set.state(0), TrackState::Down);
        assert_eq!(set.change_count(0), 2);
    }

    #[test]
    fn late_poll_commits_before_the_next_observation() {
        let mut set = seed_set();
        let mut p = converged_up(&mut set);
        p.feed(&mut set, LOST, 3_000);
        // No poll at 13 s: the good result at 14 s arrives after the delay had run out.
        let ev = p.feed(&mut set, OK, 14_000);
        assert_eq!(
            changes(&ev),
            vec![(0, TrackState::Down)],
            "the failure held 11 s"
        );
        assert!(matches!(
            ev.last(),
            Some(TrackEvent::ChangeDelayed {
                to: TrackState::Up,
                ..
            })
        ));
    }

    #[test]
    fn state_mode_fails_on_over_threshold_reachability_does_not() {
        let mut set = TrackSet::new(
            vec![
                def(
                    "reach",
                    on_probe(0, TrackMode::Reachability),
                    secs(10),
                    secs(20),
                ),
                def("state", on_probe(0, TrackMode::State), secs(10), secs(20)),
            ],
            at(0),
        );
        let mut p = Probe::new(0, "a-far");
        assert_eq!(
            changes(&p.feed(&mut set, OK, 0)),
            vec![(0, TrackState::Up), (1, TrackState::Up)]
        );
        let ev = p.feed(&mut set, SLOW, 3_000);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            ev[0].log_line(&set.names()),
            "track state: down change delayed 10 s (probe a-far: over threshold, rtt 300 ms)"
        );
        assert_eq!(changes(&set.poll(at(13_000))), vec![(1, TrackState::Down)]);
        assert_eq!(set.states(), vec![true, false]);
        // A first over-threshold result brings a reachability track up, not a state track.
        let mut fresh = TrackSet::new(
            vec![
                def(
                    "reach",
                    on_probe(0, TrackMode::Reachability),
                    secs(10),
                    secs(20),
                ),
                def("state", on_probe(0, TrackMode::State), secs(10), secs(20)),
            ],
            at(0),
        );
        let mut q = Probe::new(0, "a-far");
        assert_eq!(
            changes(&q.feed(&mut fresh, SLOW, 0)),
            vec![(0, TrackState::Up)]
        );
    }

    /// Three probe tracks (delay down 10 s, up 0) and a list over them with delay down 5 s.
    fn list_set(op: ListOp) -> (TrackSet, Vec<Probe>) {
        let mut defs: Vec<TrackDef> = (0..3)
            .map(|i| {
                def(
                    ["a", "b", "c"][i],
                    on_probe(i, TrackMode::Reachability),
                    secs(10),
                    Duration::ZERO,
                )
            })
            .collect();
        defs.push(def(
            "quorum",
            TrackInput::List {
                members: vec![0, 1, 2],
                op,
            },
            secs(5),
            Duration::ZERO,
        ));
        let mut set = TrackSet::new(defs, at(0));
        let mut probes = vec![
            Probe::new(0, "pa"),
            Probe::new(1, "pb"),
            Probe::new(2, "pc"),
        ];
        for p in &mut probes {
            p.feed(&mut set, OK, 0);
        }
        assert_eq!(set.states(), vec![true; 4]);
        (set, probes)
    }

    /// Fails the first `n` probes at 1 s and polls at 11 s; returns the list's state then.
    fn fail_members(op: ListOp, n: usize) -> (TrackSet, Vec<TrackEvent>) {
        let (mut set, mut probes) = list_set(op);
        for p in probes.iter_mut().take(n) {
            p.feed(&mut set, LOST, 1_000);
        }
        let ev = set.poll(at(11_000));
        (set, ev)
    }

    #[test]
    fn list_all() {
        let (set, ev) = fail_members(ListOp::All, 1);
        assert_eq!(set.state(0), TrackState::Down);
        // The list starts its own delay in the same call, after the member's events.
        assert!(matches!(
            ev.last(),
            Some(TrackEvent::ChangeDelayed {
                track: 3,
                to: TrackState::Down,
                ..
            })
        ));
        assert_eq!(
            ev.last().map(|e| e.log_line(&set.names())).as_deref(),
            Some("track quorum: down change delayed 5 s (list all: 2/3 up, down: a)")
        );
        let mut set = set;
        assert!(set.poll(at(15_999)).is_empty());
        assert_eq!(changes(&set.poll(at(16_000))), vec![(3, TrackState::Down)]);
    }

    #[test]
    fn list_any() {
        let (mut set, _) = fail_members(ListOp::Any, 2);
        assert_eq!(set.state(3), TrackState::Up);
        set.poll(at(30_000));
        assert_eq!(set.state(3), TrackState::Up, "one member up is enough");
        let (mut set, _) = fail_members(ListOp::Any, 3);
        set.poll(at(16_000));
        assert_eq!(set.state(3), TrackState::Down);
    }

    #[test]
    fn list_quorum_two_of_three() {
        let (mut set, _) = fail_members(ListOp::AtLeast(2), 1);
        set.poll(at(30_000));
        assert_eq!(set.state(3), TrackState::Up);
        let (mut set, mut probes) = list_set(ListOp::AtLeast(2));
        probes[0].feed(&mut set, LOST, 1_000);
        probes[1].feed(&mut set, LOST, 1_000);
        set.poll(at(11_000));
        assert_eq!(
            set.state(3),
            TrackState::Up,
            "list delay down still running"
        );
        set.poll(at(16_000));
        assert_eq!(set.state(3), TrackState::Down);
        // One member back (delay up 0): quorum again, list up at once (its delay up is 0).
        let ev = probes[1].feed(&mut set, OK, 17_000);
        assert_eq!(
            changes(&ev),
            vec![(1, TrackState::Up), (3, TrackState::Up)],
            "member first, then the list"
        );
    }

    #[test]
    fn carrier_tracks() {
        let mut set = TrackSet::new(
            vec![
                def(
                    "wan-a",
                    TrackInput::Carrier { uplink: 0 },
                    Duration::ZERO,
                    secs(2),
                ),
                def(
                    "wan-b",
                    TrackInput::Carrier { uplink: 1 },
                    Duration::ZERO,
                    secs(2),
                ),
            ],
            at(0),
        );
        assert_eq!(
            changes(&set.on_carrier(0, true, at(0))),
            vec![(0, TrackState::Up)]
        );
        assert!(set.on_carrier(1, false, at(0)).is_empty(), "settles down");
        let ev = set.on_carrier(0, false, at(5_000));
        assert_eq!(
            ev.iter()
                .map(|e| e.log_line(&set.names()))
                .collect::<Vec<_>>(),
            vec!["track wan-a: change #2 up -> down (carrier lost)"]
        );
        let ev = set.on_carrier(0, true, at(6_000));
        assert_eq!(
            ev[0].log_line(&set.names()),
            "track wan-a: up change delayed 2 s (carrier up)"
        );
        assert_eq!(changes(&set.poll(at(8_000))), vec![(0, TrackState::Up)]);
        assert_eq!(set.states(), vec![true, false]);
    }

    #[test]
    fn zero_delays_commit_immediately() {
        let mut set = TrackSet::new(
            vec![def(
                "fast",
                on_probe(0, TrackMode::State),
                Duration::ZERO,
                Duration::ZERO,
            )],
            at(0),
        );
        let mut p = Probe::new(0, "p");
        p.feed(&mut set, OK, 0);
        assert_eq!(
            changes(&p.feed(&mut set, LOST, 100)),
            vec![(0, TrackState::Down)]
        );
        assert_eq!(
            changes(&p.feed(&mut set, OK, 200)),
            vec![(0, TrackState::Up)]
        );
        assert_eq!(set.change_count(0), 3);
        assert_eq!(set.next_deadline(), None);
    }

    #[test]
    fn next_deadline_is_the_earliest_pending() {
        let mut set = TrackSet::new(
            vec![
                def(
                    "slow",
                    on_probe(0, TrackMode::Reachability),
                    secs(10),
                    secs(20),
                ),
                def(
                    "quick",
                    on_probe(1, TrackMode::Reachability),
                    secs(2),
                    secs(4),
                ),
            ],
            at(0),
        );
        let mut p0 = Probe::new(0, "p0");
        let mut p1 = Probe::new(1, "p1");
        p0.feed(&mut set, OK, 0);
        p1.feed(&mut set, OK, 0);
        p0.feed(&mut set, LOST, 1_000);
        assert_eq!(set.next_deadline(), Some(at(11_000)));
        p1.feed(&mut set, LOST, 2_000);
        assert_eq!(set.next_deadline(), Some(at(4_000)));
        set.poll(at(4_000));
        assert_eq!(set.next_deadline(), Some(at(11_000)));
    }

    #[test]
    fn reconfigure_keeps_state_of_surviving_names() {
        let mut set = seed_set();
        let mut p = converged_up(&mut set);
        p.feed(&mut set, LOST, 3_000);
        set.reconfigure(
            vec![
                def("new", on_probe(1, TrackMode::State), secs(1), secs(1)),
                def(
                    "a-ok",
                    on_probe(0, TrackMode::Reachability),
                    secs(5),
                    secs(5),
                ),
            ],
            at(4_000),
        );
        assert_eq!(set.len(), 2);
        assert_eq!(set.name(1), "a-ok");
        assert_eq!(set.states(), vec![false, true]);
        assert_eq!(set.change_count(1), 1);
        assert_eq!(
            set.pending(1, at(4_000)),
            None,
            "pending changes are dropped"
        );
        // Still settled: the next failure waits the new delay down.
        let ev = p.feed(&mut set, LOST, 6_000);
        assert!(matches!(
            ev.as_slice(),
            [TrackEvent::ChangeDelayed { track: 1, delay, .. }] if *delay == secs(5)
        ));
    }

    #[test]
    fn cyclic_or_dangling_members_are_dropped() {
        let list = |members: Vec<usize>| TrackInput::List {
            members,
            op: ListOp::All,
        };
        let mut set = TrackSet::new(
            vec![
                def("x", list(vec![1, 7]), Duration::ZERO, Duration::ZERO),
                def("y", list(vec![0, 2]), Duration::ZERO, Duration::ZERO),
                def(
                    "c",
                    TrackInput::Carrier { uplink: 0 },
                    Duration::ZERO,
                    Duration::ZERO,
                ),
            ],
            at(0),
        );
        let ev = set.on_carrier(0, true, at(0));
        assert_eq!(set.states(), vec![true, true, true]);
        assert_eq!(ev.len(), 3);
        assert_eq!(set.state(9), TrackState::Down);
        assert_eq!(set.name(9), "");
    }

    #[test]
    fn log_line_with_unknown_track_name() {
        let ev = TrackEvent::DelayExpired {
            track: 4,
            to: TrackState::Up,
        };
        assert_eq!(ev.log_line(&[]), "track #4: up change delay expired");
    }

    // --- property: delays are honoured, counters match events -------------------------------

    #[derive(Clone, Debug)]
    enum Step {
        Probe(usize, ProbeResult),
        Carrier(bool),
        Poll,
    }

    fn step() -> impl Strategy<Value = Step> {
        let result = prop_oneof![Just(OK), Just(SLOW), Just(LOST)];
        prop_oneof![
            3 => (0usize..3, result).prop_map(|(p, r)| Step::Probe(p, r)),
            1 => any::<bool>().prop_map(Step::Carrier),
            2 => Just(Step::Poll),
        ]
    }

    fn delay() -> impl Strategy<Value = Duration> {
        prop_oneof![Just(0u64), Just(1), Just(3), Just(10), Just(20)].prop_map(secs)
    }

    fn list_op() -> impl Strategy<Value = ListOp> {
        prop_oneof![
            Just(ListOp::All),
            Just(ListOp::Any),
            (0usize..5).prop_map(ListOp::AtLeast)
        ]
    }

    const LIST: usize = 3;
    const CARRIER: usize = 4;

    /// What the observations said about one track: its condition and since when it has held.
    #[derive(Clone, Copy)]
    struct Cond {
        cond: Option<TrackState>,
        since: Instant,
    }

    impl Cond {
        fn set(&mut self, c: TrackState, now: Instant) {
            if self.cond != Some(c) {
                self.cond = Some(c);
                self.since = now;
            }
        }
    }

    fn list_cond(op: &ListOp, members: &[TrackState]) -> TrackState {
        let up = members.iter().filter(|s| **s == TrackState::Up).count();
        TrackState::from_up(match op {
            ListOp::All => up == members.len(),
            ListOp::Any => up > 0,
            ListOp::AtLeast(k) => up >= *k,
        })
    }

    proptest! {
        #[test]
        fn changes_only_after_condition_held_for_delay(
            delays in proptest::collection::vec((delay(), delay()), 5),
            modes in proptest::collection::vec(any::<bool>(), 3),
            op in list_op(),
            steps in proptest::collection::vec((0u64..12_000, step()), 1..80),
        ) {
            let mut defs: Vec<TrackDef> = (0..3)
                .map(|i| {
                    let mode = if modes[i] { TrackMode::State } else { TrackMode::Reachability };
                    def(&format!("p{i}"), on_probe(i, mode), delays[i].0, delays[i].1)
                })
                .collect();
            defs.push(def("list", TrackInput::List { members: vec![0, 1, 2], op }, delays[3].0, delays[3].1));
            defs.push(def("carrier", TrackInput::Carrier { uplink: 0 }, delays[4].0, delays[4].1));
            let delay_of = |i: usize, to: TrackState| match to {
                TrackState::Up => delays[i].1,
                TrackState::Down => delays[i].0,
            };
            let mut set = TrackSet::new(defs, at(0));
            let mut stats: Vec<ProbeStats> = (0..3).map(|_| ProbeStats::new(4)).collect();
            let mut conds = [Cond { cond: None, since: at(0) }; 5];
            let mut observed = [false; 5];
            let mut model = [TrackState::Down; 5];
            let mut changed = [0u64; 5];
            let mut now = 0;
            for (dt, st) in steps {
                now += dt;
                let t = at(now);
                let pre_settled = {
                    let mut s = observed;
                    s[LIST] = observed[..3].iter().all(|o| *o);
                    s
                };
                // An observation first commits what a poll at the same instant would; a list is
                // evaluated once per batch of commits, so each batch is checked on its own.
                let poll_part = set.clone().poll(t);
                let mut pre = conds;
                let events = match st {
                    Step::Probe(p, r) => {
                        stats[p].record(r);
                        observed[p] = true;
                        let up = match r {
                            ProbeResult::Ok(_) => true,
                            ProbeResult::OverThreshold(_) => !modes[p],
                            ProbeResult::Timeout => false,
                        };
                        conds[p].set(TrackState::from_up(up), t);
                        set.on_probe(p, "probe", &stats[p], t)
                    }
                    Step::Carrier(c) => {
                        observed[CARRIER] = true;
                        conds[CARRIER].set(TrackState::from_up(c), t);
                        set.on_carrier(0, c, t)
                    }
                    Step::Poll => set.poll(t),
                };
                let (polled, applied) = events.split_at(poll_part.len().min(events.len()));
                prop_assert_eq!(polled, &poll_part[..]);
                for batch in [polled, applied] {
                    for e in batch {
                        match e {
                            TrackEvent::Changed { track, from, to, change_no, .. } => {
                                let i = *track;
                                prop_assert_eq!(*from, model[i]);
                                prop_assert_ne!(from, to);
                                let d = delay_of(i, *to);
                                let held = pre[i].cond == Some(*to) && t - pre[i].since >= d;
                                let immediate = d.is_zero() || !pre_settled[i];
                                let immediate_ok =
                                    immediate && (i == LIST || conds[i].cond == Some(*to));
                                prop_assert!(held || immediate_ok, "track {} -> {} at {} ms", i, to, now);
                                model[i] = *to;
                                changed[i] += 1;
                                prop_assert_eq!(*change_no, changed[i]);
                            }
                            TrackEvent::ChangeDelayed { track, to, delay, .. } => {
                                prop_assert!(!delay.is_zero());
                                prop_assert_eq!(*delay, delay_of(*track, *to));
                            }
                            TrackEvent::DelayCancelled { .. } | TrackEvent::DelayExpired { .. } => {}
                        }
                    }
                    // Members committing at the same instant change the list's condition once,
                    // whatever order their events are listed in.
                    conds[LIST].set(list_cond(&op, &model[..3]), t);
                    pre = conds;
                }
                if observed[..3].iter().all(|o| *o) {
                    observed[LIST] = true;
                }
                for i in 0..5 {
                    prop_assert_eq!(set.state(i), model[i]);
                    prop_assert_eq!(set.change_count(i), changed[i]);
                    if let Some((to, left)) = set.pending(i, t) {
                        prop_assert_ne!(to, model[i]);
                        prop_assert!(left > Duration::ZERO);
                    }
                    // Liveness: a settled condition that has held for its delay is committed.
                    if let Some(c) = conds[i].cond
                        && observed[i]
                        && conds[i].since < t
                        && t - conds[i].since >= delay_of(i, c)
                    {
                        prop_assert_eq!(model[i], c, "track {} stuck at {} ms", i, now);
                    }
                }
                if let Some(d) = set.next_deadline() {
                    prop_assert!(d > t);
                }
            }
        }
    }
}
