//! Per-probe statistics (SPEC 14): what one probe's attempts looked like, for tracks (SPEC 17),
//! log reasons (SPEC 24) and status views (SPEC 26). Pure: the prober records results here.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// Outcome of one probe attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// A reply within the latency threshold.
    Ok(Duration),
    /// A reply, but slower than the latency threshold.
    OverThreshold(Duration),
    /// No reply within the timeout.
    Timeout,
}

impl ProbeResult {
    /// Classifies a reply's round-trip time against the probe's latency threshold.
    pub fn from_reply(rtt: Duration, threshold: Duration) -> ProbeResult {
        if rtt <= threshold {
            ProbeResult::Ok(rtt)
        } else {
            ProbeResult::OverThreshold(rtt)
        }
    }

    /// Round-trip time, if there was a reply.
    pub fn rtt(self) -> Option<Duration> {
        match self {
            ProbeResult::Ok(rtt) | ProbeResult::OverThreshold(rtt) => Some(rtt),
            ProbeResult::Timeout => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Ok(_) => "ok",
            ProbeResult::OverThreshold(_) => "over_threshold",
            ProbeResult::Timeout => "timeout",
        }
    }
}

/// Upper bounds (seconds) of the RTT histogram's buckets, from a LAN-side next hop (well under
/// a millisecond) to a satellite or congested path (seconds). Replies slower than the last
/// bound count only in the total.
pub const RTT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Statistics of SPEC 14 for one probe.
///
/// RTT figures (last/avg/min/max/jitter) cover replies only (ok and over-threshold); loss counts
/// timeouts only. Jitter is RFC 3550's smoothed mean deviation (gain 1/16) of the difference
/// between consecutive replies' RTTs; timeouts in between do not reset it.
/// Serializes as a flat JSON object with times in milliseconds (see [`ProbeStatsView`]).
#[derive(Clone, Debug)]
pub struct ProbeStats {
    window: usize,
    /// Lost flags of the last `window` attempts, oldest first.
    recent: VecDeque<bool>,
    recent_lost: usize,
    last: Option<ProbeResult>,
    last_rtt: Option<Duration>,
    min_rtt: Option<Duration>,
    max_rtt: Option<Duration>,
    /// Sum of all reply RTTs in nanoseconds; u128 cannot overflow in any realistic lifetime.
    rtt_sum_ns: u128,
    /// Smoothed jitter in nanoseconds, present from the second reply on.
    jitter_ns: Option<f64>,
    /// Replies per [`RTT_BUCKETS`] bucket: index i counts RTTs in (bound i-1, bound i].
    rtt_buckets: [u64; RTT_BUCKETS.len()],
    sent: u64,
    ok: u64,
    over: u64,
    timeouts: u64,
    consecutive_timeouts: u32,
    consecutive_replies: u32,
}

impl ProbeStats {
    /// `window` is the number of recent attempts the loss figure covers (at least 1).
    pub fn new(window: usize) -> Self {
        let window = window.max(1);
        ProbeStats {
            window,
            recent: VecDeque::with_capacity(window),
            recent_lost: 0,
            last: None,
            last_rtt: None,
            min_rtt: None,
            max_rtt: None,
            rtt_sum_ns: 0,
            jitter_ns: None,
            rtt_buckets: [0; RTT_BUCKETS.len()],
            sent: 0,
            ok: 0,
            over: 0,
            timeouts: 0,
            consecutive_timeouts: 0,
            consecutive_replies: 0,
        }
    }

    pub fn record(&mut self, r: ProbeResult) {
        self.sent += 1;
        self.last = Some(r);
        let lost = r == ProbeResult::Timeout;
        match r {
            ProbeResult::Ok(_) => self.ok += 1,
            ProbeResult::OverThreshold(_) => self.over += 1,
            ProbeResult::Timeout => self.timeouts += 1,
        }
        if lost {
            self.consecutive_timeouts = self.consecutive_timeouts.saturating_add(1);
            self.consecutive_replies = 0;
        } else {
            self.consecutive_replies = self.consecutive_replies.saturating_add(1);
            self.consecutive_timeouts = 0;
        }
        if let Some(rtt) = r.rtt() {
            self.record_rtt(rtt);
        }
        if self.recent.len() == self.window && self.recent.pop_front() == Some(true) {
            self.recent_lost -= 1;
        }
        self.recent.push_back(lost);
        if lost {
            self.recent_lost += 1;
        }
    }

    fn record_rtt(&mut self, rtt: Duration) {
        if let Some(prev) = self.last_rtt {
            let d = rtt.abs_diff(prev).as_nanos() as f64;
            let j = self.jitter_ns.unwrap_or(0.0);
            self.jitter_ns = Some(j + (d - j) / 16.0);
        }
        self.last_rtt = Some(rtt);
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        self.max_rtt = Some(self.max_rtt.map_or(rtt, |m| m.max(rtt)));
        self.rtt_sum_ns += rtt.as_nanos();
        let secs = rtt.as_secs_f64();
        if let Some(i) = RTT_BUCKETS.iter().position(|&le| secs <= le) {
            self.rtt_buckets[i] += 1;
        }
    }

    /// The most recent attempt's result.
    pub fn last(&self) -> Option<ProbeResult> {
        self.last
    }

    /// RTT of the most recent reply (kept through later timeouts).
    pub fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    pub fn avg_rtt(&self) -> Option<Duration> {
        let replies = u128::from(self.ok + self.over);
        if replies == 0 {
            return None;
        }
        Some(Duration::from_nanos(
            u64::try_from(self.rtt_sum_ns / replies).unwrap_or(u64::MAX),
        ))
    }

    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    pub fn max_rtt(&self) -> Option<Duration> {
        self.max_rtt
    }

    pub fn jitter(&self) -> Option<Duration> {
        self.jitter_ns
            .map(|j| Duration::from_nanos(j.round() as u64))
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn ok(&self) -> u64 {
        self.ok
    }

    pub fn over_threshold(&self) -> u64 {
        self.over
    }

    pub fn timeouts(&self) -> u64 {
        self.timeouts
    }

    /// (lost, attempts) over the last `window` attempts.
    pub fn window_lost(&self) -> (usize, usize) {
        (self.recent_lost, self.recent.len())
    }

    pub fn consecutive_timeouts(&self) -> u32 {
        self.consecutive_timeouts
    }

    /// Replies (ok or over-threshold) since the last timeout.
    pub fn consecutive_replies(&self) -> u32 {
        self.consecutive_replies
    }

    /// Loss over the window, in percent; 0 before the first attempt.
    pub fn loss_percent(&self) -> f64 {
        let (lost, attempts) = self.window_lost();
        if attempts == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / attempts as f64
        }
    }

    /// The JSON/status view: plain numbers, times in milliseconds.
    pub fn view(&self) -> ProbeStatsView {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        let (window_lost, window_attempts) = self.window_lost();
        ProbeStatsView {
            sent: self.sent,
            ok: self.ok,
            over_threshold: self.over,
            timeouts: self.timeouts,
            last: self.last.map(ProbeResult::as_str),
            last_rtt_ms: ms(self.last_rtt),
            avg_rtt_ms: ms(self.avg_rtt()),
            min_rtt_ms: ms(self.min_rtt),
            max_rtt_ms: ms(self.max_rtt),
            jitter_ms: self.jitter_ns.map(|j| j / 1e6),
            window: self.window,
            window_lost,
            window_attempts,
            loss_percent: self.loss_percent(),
            consecutive_timeouts: self.consecutive_timeouts,
            consecutive_replies: self.consecutive_replies,
            rtt_histogram: self.rtt_histogram(),
        }
    }

    fn rtt_histogram(&self) -> RttHistogram {
        let mut buckets = [0; RTT_BUCKETS.len()];
        let mut below = 0;
        for (cumulative, n) in buckets.iter_mut().zip(&self.rtt_buckets) {
            below += n;
            *cumulative = below;
        }
        RttHistogram {
            buckets,
            sum_seconds: self.rtt_sum_ns as f64 / 1e9,
            count: self.ok + self.over,
        }
    }
}

/// The RTT distribution in Prometheus' histogram shape: cumulative counts per bucket bound of
/// [`RTT_BUCKETS`], the sum of all RTTs and the number of replies (the `+Inf` bucket).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RttHistogram {
    pub buckets: [u64; RTT_BUCKETS.len()],
    pub sum_seconds: f64,
    pub count: u64,
}

/// Stable, flat JSON shape of [`ProbeStats`]; the internal ring and sums stay private.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeStatsView {
    pub sent: u64,
    pub ok: u64,
    pub over_threshold: u64,
    pub timeouts: u64,
    /// "ok", "over_threshold", "timeout", or null before the first attempt.
    pub last: Option<&'static str>,
    pub last_rtt_ms: Option<f64>,
    pub avg_rtt_ms: Option<f64>,
    pub min_rtt_ms: Option<f64>,
    pub max_rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub window: usize,
    pub window_lost: usize,
    pub window_attempts: usize,
    pub loss_percent: f64,
    pub consecutive_timeouts: u32,
    pub consecutive_replies: u32,
    /// For the metrics; `show probes` has min/avg/max.
    #[serde(skip)]
    pub rtt_histogram: RttHistogram,
}

impl Serialize for ProbeStats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.view().serialize(s)
    }
}

/// A duration for people: "10 s", "2.5 s", "600 ms", "1.2 ms", "0.045 ms".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs_f64();
        let (value, decimals, unit) = if secs >= 1.0 {
            (secs, 1, "s")
        } else {
            let ms = secs * 1000.0;
            let decimals = if ms >= 100.0 {
                0
            } else if ms >= 1.0 {
                1
            } else {
                3
            };
            (ms, decimals, "ms")
        };
        let text = format!("{value:.decimals$}");
        let text = if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.')
        } else {
            &text
        };
        write!(f, "{text} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn known_sequence() {
        let mut s = ProbeStats::new(4);
        for r in [
            ProbeResult::Ok(ms(10)),
            ProbeResult::Ok(ms(20)),
            ProbeResult::Timeout,
            ProbeResult::OverThreshold(ms(40)),
            ProbeResult::Ok(ms(10)),
        ] {
            s.record(r);
        }
        assert_eq!(
            (s.sent(), s.ok(), s.over_threshold(), s.timeouts()),
            (5, 3, 1, 1)
        );
        assert_eq!(s.avg_rtt(), Some(ms(20)));
        assert_eq!(s.min_rtt(), Some(ms(10)));
        assert_eq!(s.max_rtt(), Some(ms(40)));
        assert_eq!(s.last(), Some(ProbeResult::Ok(ms(10))));
        assert_eq!(s.last_rtt(), Some(ms(10)));
        // |D| = 10, 20, 30 ms: J = 0.625, 1.8359375, 3.59619140625 ms.
        assert_eq!(s.jitter(), Some(Duration::from_nanos(3_596_191)));
        // Window of 4 holds [ok, timeout, over, ok]: the first ok slid out.
        assert_eq!(s.window_lost(), (1, 4));
        assert_eq!(s.loss_percent(), 25.0);
        assert_eq!(s.consecutive_timeouts(), 0);
        assert_eq!(s.consecutive_replies(), 2);
    }

    #[test]
    fn rtt_histogram_is_cumulative_with_the_slow_ones_only_in_the_count() {
        let mut s = ProbeStats::new(10);
        for rtt in [ms(1), ms(3), ms(3), ms(700), ms(4000)] {
            s.record(ProbeResult::Ok(rtt));
        }
        s.record(ProbeResult::Timeout);
        let h = s.view().rtt_histogram;
        let at = |le: f64| h.buckets[RTT_BUCKETS.iter().position(|&b| b == le).unwrap()];
        assert_eq!(at(0.0005), 0);
        assert_eq!(
            at(0.001),
            1,
            "1 ms falls in le=0.001 (bounds are inclusive)"
        );
        assert_eq!(at(0.0025), 1);
        assert_eq!(at(0.005), 3);
        assert_eq!(at(0.5), 3);
        assert_eq!(at(1.0), 4);
        assert_eq!(at(2.5), 4, "4 s is above the last bound");
        assert_eq!(h.count, 5, "replies only: the timeout has no RTT");
        assert!((h.sum_seconds - 4.707).abs() < 1e-9, "{}", h.sum_seconds);
    }

    #[test]
    fn timeouts_keep_last_rtt_and_count_up() {
        let mut s = ProbeStats::new(3);
        assert_eq!(s.jitter(), None);
        assert_eq!(s.avg_rtt(), None);
        assert_eq!(s.loss_percent(), 0.0);
        s.record(ProbeResult::Ok(ms(5)));
        assert_eq!(s.jitter(), None, "jitter needs two replies");
        for _ in 0..4 {
            s.record(ProbeResult::Timeout);
        }
        assert_eq!(s.consecutive_timeouts(), 4);
        assert_eq!(s.consecutive_replies(), 0);
        assert_eq!(s.last_rtt(), Some(ms(5)));
        assert_eq!(s.window_lost(), (3, 3));
        assert_eq!(s.loss_percent(), 100.0);
    }

    #[test]
    fn zero_window_is_one() {
        let mut s = ProbeStats::new(0);
        s.record(ProbeResult::Timeout);
        s.record(ProbeResult::Ok(ms(1)));
        assert_eq!(s.window_lost(), (0, 1));
    }

    #[test]
    fn classify_reply() {
        assert_eq!(
            ProbeResult::from_reply(ms(100), ms(100)),
            ProbeResult::Ok(ms(100))
        );
        assert_eq!(
            ProbeResult::from_reply(ms(101), ms(100)),
            ProbeResult::OverThreshold(ms(101))
        );
    }

    #[test]
    fn json_view_is_flat_and_in_ms() {
        let mut s = ProbeStats::new(5);
        s.record(ProbeResult::Ok(Duration::from_micros(1500)));
        s.record(ProbeResult::Timeout);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["sent"], 2);
        assert_eq!(v["last"], "timeout");
        assert_eq!(v["last_rtt_ms"], 1.5);
        assert_eq!(v["jitter_ms"], serde_json::Value::Null);
        assert_eq!(v["window_lost"], 1);
        assert_eq!(v["window_attempts"], 2);
        assert_eq!(v["loss_percent"], 50.0);
    }

    #[test]
    fn human_durations() {
        let cases = [
            (Duration::from_secs(10), "10 s"),
            (ms(2500), "2.5 s"),
            (ms(9999), "10 s"),
            (ms(600), "600 ms"),
            (Duration::from_micros(1200), "1.2 ms"),
            (Duration::from_micros(900), "0.9 ms"),
            (Duration::from_micros(45), "0.045 ms"),
            (ms(20), "20 ms"),
            (Duration::ZERO, "0 ms"),
        ];
        for (d, want) in cases {
            assert_eq!(HumanDuration(d).to_string(), want, "{d:?}");
        }
    }

    fn result() -> impl Strategy<Value = ProbeResult> {
        prop_oneof![
            (0u64..5_000).prop_map(|v| ProbeResult::Ok(ms(v))),
            (0u64..5_000).prop_map(|v| ProbeResult::OverThreshold(ms(v))),
            Just(ProbeResult::Timeout),
        ]
    }

    proptest! {
        #[test]
        fn counters_stay_consistent(window in 0usize..8, rs in proptest::collection::vec(result(), 0..60)) {
            let mut s = ProbeStats::new(window);
            for r in &rs {
                s.record(*r);
            }
            prop_assert_eq!(s.sent(), rs.len() as u64);
            prop_assert_eq!(s.sent(), s.ok() + s.over_threshold() + s.timeouts());
            let (lost, attempts) = s.window_lost();
            prop_assert_eq!(attempts, rs.len().min(window.max(1)));
            let tail = &rs[rs.len() - attempts..];
            prop_assert_eq!(lost, tail.iter().filter(|r| **r == ProbeResult::Timeout).count());
            let trailing = rs.iter().rev().take_while(|r| **r == ProbeResult::Timeout).count();
            prop_assert_eq!(s.consecutive_timeouts() as usize, trailing);
            if let (Some(min), Some(avg), Some(max)) = (s.min_rtt(), s.avg_rtt(), s.max_rtt()) {
                prop_assert!(min <= avg && avg <= max);
                prop_assert!(s.jitter().unwrap_or_default() <= max - min);
            } else {
                prop_assert_eq!(s.ok() + s.over_threshold(), 0);
            }
        }
    }
}
