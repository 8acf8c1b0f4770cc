//! A client-side rate limit for ADS calls per region: a token bucket whose rate backs
//! off on throttling answers (AIMD: halved on `ThrottlingException`, raised by a
//! twentieth of the ceiling on each success), shared by every caller of the region, so
//! a restart with thousands of objects or a throttling period never becomes a retry
//! storm. Applied per HTTP request (each page of a listing counts).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The default of `--aws-max-requests-per-second`: 5. AWS does not publish ADS's
/// per-account limit; AWS control-plane APIs commonly allow 5-20 requests per second
/// per account and region, shared with the console and CLI. At 5 a listing of 10,000
/// exports (100 pages) takes 20 s, and steady state needs far less (one listing per
/// region per resync period).
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: f64 = 5.0;

/// The lowest rate throttling can push a bucket to: a sixteenth of its ceiling.
const FLOOR_DIVISOR: f64 = 16.0;

/// One region's bucket.
#[derive(Debug, Clone)]
struct Bucket {
    /// Tokens per second now (the ceiling, or less after throttling).
    rate: f64,
    /// Tokens available (negative: callers queued behind one another).
    tokens: f64,
    last: Instant,
}

/// Token buckets per region, each with at most `ceiling` requests per second and a
/// burst of `ceiling` requests (at least one).
#[derive(Debug)]
pub struct RateLimits {
    ceiling: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimits {
    /// Buckets of `max_per_second` requests per second (a positive, finite number;
    /// anything else is taken as [`DEFAULT_MAX_REQUESTS_PER_SECOND`]).
    pub fn new(max_per_second: f64) -> Self {
        let ceiling = if max_per_second.is_finite() && max_per_second > 0.0 {
            max_per_second
        } else {
            DEFAULT_MAX_REQUESTS_PER_SECOND
        };
        Self { ceiling, buckets: Mutex::default() }
    }

    fn with_bucket<T>(&self, region: &str, now: Instant, f: impl FnOnce(&mut Bucket, f64) -> T) -> T {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let ceiling = self.ceiling;
        let burst = ceiling.max(1.0);
        let b = buckets.entry(region.to_owned()).or_insert_with(|| Bucket { rate: ceiling, tokens: burst, last: now });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.rate).min(burst);
        b.last = now;
        f(b, ceiling)
    }

    /// Takes a token for one request in `region` at `now`, and says how long the
    /// caller must wait before sending it (zero when a token was free).
    pub fn reserve(&self, region: &str, now: Instant) -> Duration {
        self.with_bucket(region, now, |b, _| {
            b.tokens -= 1.0;
            if b.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-b.tokens / b.rate) }
        })
    }

    /// Waits for a token in `region`; returns how long it waited.
    pub async fn acquire(&self, region: &str) -> Duration {
        let wait = self.reserve(region, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// ADS answered a request in `region` with throttling: halve the rate (not below
    /// a sixteenth of the ceiling).
    pub fn throttled(&self, region: &str) {
        self.with_bucket(region, Instant::now(), |b, ceiling| b.rate = (b.rate / 2.0).max(ceiling / FLOOR_DIVISOR));
    }

    /// A request in `region` was answered without throttling: raise the rate by a
    /// twentieth of the ceiling (not above it).
    pub fn succeeded(&self, region: &str) {
        self.with_bucket(region, Instant::now(), |b, ceiling| b.rate = (b.rate + ceiling / 20.0).min(ceiling));
    }

    /// The rate of `region` now, in requests per second.
    pub fn rate(&self, region: &str) -> f64 {
        self.with_bucket(region, Instant::now(), |b, _| b.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_request_per_interval() {
        let limits = RateLimits::new(5.0);
        let t0 = Instant::now();
        let waits: Vec<_> = (0..8).map(|_| limits.reserve("r", t0).as_millis()).collect();
        // A burst of 5, then callers queue 200 ms apart.
        assert_eq!(waits, [0, 0, 0, 0, 0, 200, 400, 600]);
        // Regions are independent.
        assert_eq!(limits.reserve("other", t0), Duration::ZERO);
        // Tokens refill with time: 2 s later the queue of 3 is served and 7 are free.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(limits.reserve("r", later), Duration::ZERO);
    }

    #[test]
    fn throttling_halves_the_rate_and_successes_restore_it() {
        let limits = RateLimits::new(8.0);
        for _ in 0..10 {
            limits.throttled("r");
        }
        assert_eq!(limits.rate("r"), 0.5, "not below a sixteenth of the ceiling");
        for _ in 0..100 {
            limits.succeeded("r");
        }
        assert_eq!(limits.rate("r"), 8.0, "back to the ceiling, not above");
        assert_eq!(RateLimits::new(f64::NAN).rate("r"), DEFAULT_MAX_REQUESTS_PER_SECOND);
    }
}
