//! A client-side rate limit for ADS calls per region: a token bucket whose rate backs
//! off on throttling answers (AIMD: halved on `ThrottlingException`, raised by a
//! twentieth of the ceiling on each success), shared by every caller of the region, so
//! a restart with thousands of objects or a throttling period never becomes a retry
//! storm. Applied per HTTP request (each page of a listing counts). Migration Hub
//! Config's `GetHomeRegion` takes a token too, from the bucket of the region it is sent
//! to (`super::home_region::AwsHomeRegionLookup::with_rate_limits`), without moving the
//! rate.
//!
//! Each bucket holds a burst of twice its rate (a second's worth of requests on top of
//! the steady rate, as AWS's own token buckets allow bursts above their refill rate), so
//! the few calls of an interactive change (a Start and the Describe after it, a Stop and
//! its Describe) go out at once while the sustained rate stays at the ceiling.
//!
//! Two lanes share each bucket. Foreground requests (Start, Stop, the reads a
//! reconcile waits for) take a token or queue for the next one. Background requests
//! (the transition watch's later looks, the resync listing; run inside
//! [`in_background`]) take a token only while half the burst (a second's worth) stays in
//! the bucket for the foreground, and never queue ahead of it: a foreground request waits
//! at most for the requests already admitted, never for background ones still waiting;
//! during a resync listing, a Stop and the Describe after it still find tokens. Both
//! lanes draw on the same tokens, so the total stays within the bucket's rate.

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

/// Which lane a request is sent in (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Start, Stop and the reads a reconcile waits for: ahead of background requests.
    Foreground,
    /// Requests nothing waits for at once: they leave a token to the foreground.
    Background,
}

tokio::task_local! {
    static LANE: Lane;
}

/// Runs `f` with its requests in the background lane ([`RateLimits::acquire`] reads it).
pub async fn in_background<F: Future>(f: F) -> F::Output {
    LANE.scope(Lane::Background, f).await
}

/// The lane of the requests of the running task: [`Lane::Background`] inside
/// [`in_background`], else [`Lane::Foreground`].
pub fn current_lane() -> Lane {
    LANE.try_with(|l| *l).unwrap_or(Lane::Foreground)
}

/// One region's bucket.
#[derive(Debug, Clone)]
struct Bucket {
    /// Tokens per second now (the ceiling, or less after throttling).
    rate: f64,
    /// Tokens available (negative: callers queued behind one another).
    tokens: f64,
    last: Instant,
}

/// The most tokens a bucket of `rate` requests per second holds: twice the rate (a
/// throttled bucket's burst shrinks with its rate), at least one.
fn burst(rate: f64) -> f64 {
    (2.0 * rate).max(1.0)
}

/// The tokens background requests leave to the foreground in a bucket of `rate`: half
/// its burst, rounded down (none when the burst is a single token).
fn kept_for_foreground(rate: f64) -> f64 {
    (burst(rate) / 2.0).floor()
}

/// Token buckets per region, each with at most `ceiling` requests per second and a
/// burst of twice its rate (at least one request; see the module docs).
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
        let b = buckets.entry(region.to_owned()).or_insert_with(|| Bucket {
            rate: ceiling,
            tokens: burst(ceiling),
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.rate).min(burst(b.rate));
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

    /// Takes a token for one background request in `region` at `now` when half the
    /// burst still stays for the foreground (nothing stays when the burst is a single
    /// token); otherwise takes nothing and says how long until that could be so (`Err`).
    pub fn try_reserve_background(&self, region: &str, now: Instant) -> Result<(), Duration> {
        self.with_bucket(region, now, |b, _| {
            let needed = 1.0 + kept_for_foreground(b.rate);
            if b.tokens >= needed {
                b.tokens -= 1.0;
                Ok(())
            } else {
                Err(Duration::from_secs_f64((needed - b.tokens) / b.rate))
            }
        })
    }

    /// Waits for a token in `region`, in the lane of the running task
    /// ([`current_lane`]); returns how long it waited.
    pub async fn acquire(&self, region: &str) -> Duration {
        match current_lane() {
            Lane::Foreground => {
                let wait = self.reserve(region, Instant::now());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                wait
            }
            Lane::Background => {
                let started = Instant::now();
                while let Err(wait) = self.try_reserve_background(region, Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                started.elapsed()
            }
        }
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
    fn a_burst_of_twice_the_rate_then_one_request_per_interval() {
        let limits = RateLimits::new(5.0);
        let t0 = Instant::now();
        let waits: Vec<_> = (0..13).map(|_| limits.reserve("r", t0).as_millis()).collect();
        // A burst of 10, then callers queue 200 ms apart.
        assert_eq!(waits, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200, 400, 600]);
        // Regions are independent.
        assert_eq!(limits.reserve("other", t0), Duration::ZERO);
        // Tokens refill with time: 2 s later the queue of 3 is served and 7 are free.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(limits.reserve("r", later), Duration::ZERO);
        // A bucket never holds more than its burst: after a long idle, 10 go at once again.
        let idle = t0 + Duration::from_secs(3600);
        let waits: Vec<_> = (0..11).map(|_| limits.reserve("r", idle).is_zero()).collect();
        assert_eq!(waits.iter().filter(|free| **free).count(), 10, "{waits:?}");
    }

    #[test]
    fn background_requests_leave_half_the_burst_to_the_foreground() {
        let limits = RateLimits::new(5.0);
        let t0 = Instant::now();
        // Background requests take 5 of the burst of 10, then wait: 5 always stay.
        let background: Vec<_> = (0..6).map(|_| limits.try_reserve_background("r", t0).is_ok()).collect();
        assert_eq!(background, [true, true, true, true, true, false]);
        // A Stop and its Describe, a Start and its Describe arriving now go at once; the
        // sixth foreground request waits one slot.
        let foreground: Vec<_> = (0..6).map(|_| limits.reserve("r", t0).as_millis()).collect();
        assert_eq!(foreground, [0, 0, 0, 0, 0, 200]);
        // A background request waits until the queued foreground one is served and six
        // tokens are back (1 token behind: 7 slots), and does not jump that queue.
        assert_eq!(limits.try_reserve_background("r", t0).unwrap_err().as_millis(), 1400);
        let later = t0 + Duration::from_millis(1400);
        assert!(limits.try_reserve_background("r", later).is_ok());
        // Over a long run both lanes together stay within the rate: 10 s of background
        // requests alone take at most the burst plus 5 per second.
        let limits = RateLimits::new(5.0);
        let taken = (0..=1000)
            .filter(|ms| limits.try_reserve_background("r", t0 + Duration::from_millis(ms * 10)).is_ok())
            .count();
        assert!(taken <= 10 + 50, "{taken} background requests in 10 s");
        // A bucket of one token: background requests take it (nothing to keep).
        let single = RateLimits::new(0.5);
        assert!(single.try_reserve_background("r", t0).is_ok());
        assert!(single.try_reserve_background("r", t0).is_err());
    }

    #[tokio::test]
    async fn the_lane_is_the_tasks() {
        assert_eq!(current_lane(), Lane::Foreground);
        assert_eq!(in_background(async { current_lane() }).await, Lane::Background);
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
        // A throttled bucket's burst shrinks with its rate: at 0.5 per second one request
        // goes at once after an idle hour, the next waits two seconds.
        let limits = RateLimits::new(8.0);
        for _ in 0..10 {
            limits.throttled("r");
        }
        let later = Instant::now() + Duration::from_secs(3600);
        assert_eq!(limits.reserve("r", later), Duration::ZERO);
        assert_eq!(limits.reserve("r", later), Duration::from_secs(2));
        assert_eq!(RateLimits::new(f64::NAN).rate("r"), DEFAULT_MAX_REQUESTS_PER_SECOND);
    }
}
