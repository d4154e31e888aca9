//! Per-client token buckets for DNS queries (SPEC 30): the UDP forwarder and the TCP relay
//! each keep one set, with the configured rate and burst.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::clock::Instant;

/// Clients with a token bucket, at most.
pub(super) const MAX_CLIENTS: usize = 4096;

struct Bucket {
    /// In thousandths of a query.
    tokens: u64,
    last: Instant,
}

pub(super) struct ClientBuckets {
    /// Thousandths of a query per millisecond: queries per second.
    rate: u64,
    /// In thousandths of a query.
    burst: u64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl ClientBuckets {
    /// `rate` queries per second per client, up to `burst` at once.
    pub(super) fn new(rate: u32, burst: u32) -> ClientBuckets {
        ClientBuckets {
            rate: u64::from(rate),
            burst: u64::from(burst) * 1000,
            buckets: HashMap::new(),
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Takes a token from `client`'s bucket; false when it is empty (or `MAX_CLIENTS` others
    /// are still refilling).
    pub(super) fn take(&mut self, client: IpAddr, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        if !self.buckets.contains_key(&client) && self.buckets.len() >= MAX_CLIENTS {
            // Forget clients whose bucket has refilled: they lose nothing.
            self.buckets.retain(|_, b| {
                b.tokens + now.saturating_since(b.last).as_millis() as u64 * rate < burst
            });
            if self.buckets.len() >= MAX_CLIENTS {
                return false;
            }
        }
        let b = self.buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let refill = now.saturating_since(b.last).as_millis() as u64 * rate;
        b.tokens = (b.tokens + refill).min(burst);
        b.last = now;
        if b.tokens < 1000 {
            return false;
        }
        b.tokens -= 1000;
        true
    }
}
