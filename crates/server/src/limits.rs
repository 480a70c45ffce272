//! Per-connection and per-address limits: a token bucket for request rates, and a counter of
//! connections per source address. Plain structs; time is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        let burst = burst.max(1) as f64;
        Self {
            rate: rate as f64,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Adds what accrued since the last call.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Whether `n` tokens are there now.
    fn has(&mut self, n: f64, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= n
    }

    /// Takes `n` tokens; call after [`has`](Self::has) said they are there.
    fn take(&mut self, n: f64) {
        self.tokens -= n;
    }

    /// Takes one token if one is there.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let ok = self.has(1.0, now);
        if ok {
            self.take(1.0);
        }
        ok
    }
}

/// Rate-limit settings for one connection: requests and bytes, each a token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests that may come at once after a quiet spell.
    pub burst: u32,
    /// Request bytes per second, sustained.
    pub bytes_per_second: u64,
    /// Request bytes that may come at once after a quiet spell.
    pub bytes_burst: u64,
    /// Refused requests (net of accepted ones) after which the client is disconnected.
    pub max_strikes: u32,
}

/// What the rate limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Refuse this request with `ERR RATE_LIMITED`.
    Refuse,
    /// Refuse, and disconnect: the client keeps ignoring the refusals.
    Disconnect,
}

/// A connection's rate limiter: a bucket of requests, one of bytes, and a count of strikes. A
/// request passes when both buckets hold enough, and then takes from both. Each refused
/// request is a strike and each allowed one takes a strike away, so a client that backs off
/// when told is never cut off, and one that keeps pushing is.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    requests: TokenBucket,
    bytes: TokenBucket,
    strikes: u32,
    max_strikes: u32,
}

impl RateLimiter {
    /// A limiter with full buckets.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            requests: TokenBucket::new(limit.per_second.into(), limit.burst.into(), now),
            bytes: TokenBucket::new(limit.bytes_per_second, limit.bytes_burst, now),
            strikes: 0,
            max_strikes: limit.max_strikes,
        }
    }

    /// Judges one request of `len` bytes arriving `now`.
    pub fn check(&mut self, now: Instant, len: usize) -> Verdict {
        let len = len as f64;
        if self.requests.has(1.0, now) && self.bytes.has(len, now) {
            self.requests.take(1.0);
            self.bytes.take(len);
            self.strikes = self.strikes.saturating_sub(1);
            return Verdict::Allow;
        }
        self.strikes += 1;
        if self.strikes >= self.max_strikes {
            Verdict::Disconnect
        } else {
            Verdict::Refuse
        }
    }
}

/// Counts connections per source address.
#[derive(Debug, Default)]
pub struct AddressCounter {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in an [`AddressCounter`]; given back when dropped.
#[derive(Debug)]
pub struct AddressSlot {
    counter: Arc<AddressCounter>,
    ip: IpAddr,
}

impl AddressCounter {
    /// Takes a slot for `ip` unless it already has `max` connections.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut counts = lock(&self.counts);
        let count = counts.entry(ip).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counter: self.clone(),
            ip,
        })
    }

    /// Connections from `ip` now.
    pub fn count(&self, ip: IpAddr) -> usize {
        lock(&self.counts).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counter.counts);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// When a quiet connection gets a keepalive `EVENT PING`, and when it is closed.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// No input for this long closes the connection.
    pub timeout: Duration,
}

impl Idle {
    /// When to act next, given the last input and whether a ping went out since.
    pub fn deadline(self, last_input: Instant, pinged: bool) -> Instant {
        if pinged {
            last_input + self.timeout
        } else {
            last_input + self.timeout / 2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 5, t0);
        assert_eq!(
            (0..8).filter(|_| bucket.try_take(t0)).count(),
            5,
            "the burst"
        );
        assert!(
            !bucket.try_take(t0 + Duration::from_millis(50)),
            "half a token"
        );
        assert!(
            bucket.try_take(t0 + Duration::from_millis(100)),
            "one token after 1/rate"
        );
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            (0..8).filter(|_| bucket.try_take(later)).count(),
            5,
            "never more than the burst"
        );
    }

    #[test]
    fn a_client_that_backs_off_is_never_cut_off_and_one_that_pushes_is() {
        let t0 = Instant::now();
        let limit = RateLimit {
            per_second: 10,
            burst: 2,
            bytes_per_second: 1 << 30,
            bytes_burst: 1 << 30,
            max_strikes: 5,
        };
        let mut polite = RateLimiter::new(limit, t0);
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(100 * i);
            assert_eq!(polite.check(now, 10), Verdict::Allow);
        }
        let mut pushy = RateLimiter::new(limit, t0);
        let verdicts: Vec<Verdict> = (0..7).map(|_| pushy.check(t0, 10)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Allow,
                Verdict::Allow,
                Verdict::Refuse,
                Verdict::Refuse,
                Verdict::Refuse,
                Verdict::Refuse,
                Verdict::Disconnect
            ]
        );
    }

    #[test]
    fn a_sender_pays_for_bytes_not_only_for_lines() {
        let t0 = Instant::now();
        let limit = RateLimit {
            per_second: 1000,
            burst: 1000,
            bytes_per_second: 1000,
            bytes_burst: 4000,
            max_strikes: 100,
        };
        let mut limiter = RateLimiter::new(limit, t0);
        let allowed = (0..10)
            .filter(|_| limiter.check(t0, 1000) == Verdict::Allow)
            .count();
        assert_eq!(
            allowed, 4,
            "the byte burst, though the line rate allows 1000"
        );
        assert_eq!(
            limiter.check(t0, 10),
            Verdict::Refuse,
            "the bytes are spent"
        );
        let later = t0 + Duration::from_millis(500);
        assert_eq!(
            limiter.check(later, 400),
            Verdict::Allow,
            "500 bytes accrued"
        );
        assert_eq!(limiter.check(later, 200), Verdict::Refuse);
        assert_eq!(
            limiter.check(later, 100),
            Verdict::Allow,
            "a refusal takes nothing"
        );
    }

    #[test]
    fn address_slots_are_counted_and_given_back() {
        let counter = Arc::new(AddressCounter::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(counter.count(ip), 0);
        let a = counter.try_acquire(ip, 2).unwrap();
        let b = counter.try_acquire(ip, 2).unwrap();
        assert_eq!(counter.count(ip), 2);
        assert!(counter.try_acquire(ip, 2).is_none());
        assert!(counter
            .try_acquire("192.0.2.2".parse().unwrap(), 2)
            .is_some());
        drop(a);
        assert_eq!(counter.count(ip), 1);
        let c = counter.try_acquire(ip, 2).unwrap();
        drop(b);
        drop(c);
        assert_eq!(counter.count(ip), 0, "every slot given back");
    }

    #[test]
    fn idle_connections_are_pinged_halfway_and_closed_at_the_timeout() {
        let t0 = Instant::now();
        let idle = Idle {
            timeout: Duration::from_secs(60),
        };
        assert_eq!(idle.deadline(t0, false), t0 + Duration::from_secs(30));
        assert_eq!(idle.deadline(t0, true), t0 + Duration::from_secs(60));
    }
}
