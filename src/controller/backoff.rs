//! Per-object exponential backoff with jitter (DESIGN.md section 3) and the short
//! polling schedule used while an export is starting or stopping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Fraction of a delay that jitter may take away (delays are never lengthened, so
/// `max` stays a hard cap).
pub const JITTER: f64 = 0.2;

/// First poll delay while an export is in `START_IN_PROGRESS`/`STOP_IN_PROGRESS`.
pub const POLL_MIN: Duration = Duration::from_secs(1);
/// Longest poll delay during a transition.
pub const POLL_MAX: Duration = Duration::from_secs(30);

/// The `attempt`-th delay (0-based) of an exponential schedule: `base * 2^attempt`
/// capped at `max`, then shortened by `jitter_fraction * JITTER` (`jitter_fraction`
/// in `0.0..=1.0`, random in production).
pub fn exponential(base: Duration, max: Duration, attempt: u32, jitter_fraction: f64) -> Duration {
    let factor = 2u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX);
    let raw = base.checked_mul(factor).unwrap_or(max).min(max);
    raw.mul_f64(1.0 - JITTER * jitter_fraction.clamp(0.0, 1.0))
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    generation: i64,
    failures: u32,
    polls: u32,
}

/// Backoff state for every object, keyed by UID. Kept in memory: after a restart
/// an object starts again at `base`, which is what a fresh process should do.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Backoff {
    /// A schedule starting at `base` and capped at `max` (e.g. 5 s and 5 min).
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max: max.max(base), entries: Mutex::default() }
    }

    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        f(entries.entry(key.to_owned()).or_default())
    }

    /// Records the generation being reconciled; a spec change (new generation)
    /// resets both counters, so the new spec is acted on at once.
    pub fn observe_generation(&self, key: &str, generation: i64) {
        self.with(key, |e| {
            if e.generation != generation {
                *e = Entry { generation, ..Entry::default() };
            }
        });
    }

    /// The delay before retrying after a recoverable error; each call doubles the next.
    pub fn next_failure_delay(&self, key: &str) -> Duration {
        let attempt = self.with(key, |e| {
            e.failures = e.failures.saturating_add(1);
            e.failures - 1
        });
        exponential(self.base, self.max, attempt, rand::random::<f64>())
    }

    /// How many recoverable failures in a row this object has had.
    pub fn failures(&self, key: &str) -> u32 {
        self.with(key, |e| e.failures)
    }

    /// The delay before polling a transition again (1 s doubling to 30 s, no jitter).
    pub fn next_poll_delay(&self, key: &str) -> Duration {
        let attempt = self.with(key, |e| {
            e.polls = e.polls.saturating_add(1);
            e.polls - 1
        });
        exponential(POLL_MIN, POLL_MAX, attempt, 0.0)
    }

    /// Resets the failure counter after a successful call to AWS.
    pub fn succeeded(&self, key: &str) {
        self.with(key, |e| e.failures = 0);
    }

    /// Resets the poll counter once an export leaves a transition.
    pub fn settled(&self, key: &str) {
        self.with(key, |e| e.polls = 0);
    }

    /// Drops the object's state (it was deleted).
    pub fn forget(&self, key: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_and_caps() {
        let base = 5 * S;
        let max = 300 * S;
        let got: Vec<_> = (0..9).map(|a| exponential(base, max, a, 0.0).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(exponential(base, max, u32::MAX, 0.0), max);
    }

    #[test]
    fn jitter_only_shortens() {
        assert_eq!(exponential(10 * S, 60 * S, 0, 1.0), 8 * S);
        assert_eq!(exponential(10 * S, 60 * S, 9, 1.0), 48 * S);
        assert_eq!(exponential(10 * S, 60 * S, 0, 7.0), 8 * S, "clamped");
    }

    #[test]
    fn failures_grow_reset_on_success_and_on_new_generation() {
        let b = Backoff::new(S, 60 * S);
        b.observe_generation("a", 1);
        let d: Vec<_> = (0..4).map(|_| b.next_failure_delay("a")).collect();
        for (i, d) in d.iter().enumerate() {
            let full = S * 2u32.pow(i as u32);
            assert!(*d <= full && *d >= full.mul_f64(1.0 - JITTER), "{i}: {d:?}");
        }
        assert_eq!(b.failures("a"), 4);
        b.succeeded("a");
        assert_eq!(b.failures("a"), 0);
        b.next_failure_delay("a");
        b.observe_generation("a", 1);
        assert_eq!(b.failures("a"), 1, "same generation keeps state");
        b.observe_generation("a", 2);
        assert_eq!(b.failures("a"), 0, "spec change resets");
        assert_eq!(b.failures("other"), 0, "per object");
    }

    #[test]
    fn polls_double_then_settle() {
        let b = Backoff::new(S, 60 * S);
        let got: Vec<_> = (0..7).map(|_| b.next_poll_delay("a").as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30]);
        b.settled("a");
        assert_eq!(b.next_poll_delay("a"), S);
        b.forget("a");
        assert_eq!(b.failures("a"), 0);
    }
}
