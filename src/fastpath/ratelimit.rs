//! Token buckets for what the fast path may generate or punt per second.

use crate::clock::Instant;

/// At most `per_sec` events per second, refilled whole once a second (burst as large).
pub(crate) struct RateLimit {
    per_sec: u32,
    tokens: u32,
    refill: Instant,
}

impl RateLimit {
    pub(crate) fn per_second(per_sec: u32) -> RateLimit {
        RateLimit {
            per_sec,
            tokens: per_sec,
            refill: Instant::ZERO,
        }
    }

    pub(crate) fn take(&mut self, now: Instant) -> bool {
        if now.saturating_since(self.refill).as_secs() >= 1 {
            self.tokens = self.per_sec;
            self.refill = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}
