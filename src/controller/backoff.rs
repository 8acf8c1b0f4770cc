//! Per-object exponential backoff with jitter (docs/architecture.md, "Backoff") and the short
//! polling schedule used while an export is starting or stopping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Fraction of a delay that jitter may take away (delays are never lengthened, so
/// `max` stays a hard cap).
pub const JITTER: f64 = 0.2;

/// First poll delay while an export is in `START_IN_PROGRESS`/`STOP_IN_PROGRESS` (or
/// a wait): short, so a stop ADS completes at once shows `INACTIVE` within about
/// 250 ms; it doubles on every poll, so a long transition costs few calls.
pub const POLL_MIN: Duration = Duration::from_millis(250);
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

/// The per-object counts a schedule advances: recoverable failures in a row, and polls
/// since the export's state last changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    /// Recoverable failures in a row (the next failure waits `base * 2^failures`).
    pub failures: u32,
    /// Polls of the current transition or wait (the next poll waits `250 ms * 2^polls`, at most 30 s).
    pub polls: u32,
}

/// How a reconcile ended, as far as its schedule is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Nothing to wait for (steady, gone, a failed export state): both counts reset;
    /// the object is looked at again after the resync period.
    Settled,
    /// A transition (starting, stopping) or a wait for something else to settle: the
    /// next poll delay; the failure count is kept, so failures between polls keep doubling.
    Polling,
    /// A recoverable failure: the next failure delay (jittered).
    Failing,
    /// A terminal error: the poll count resets, the failure count is kept; no delay.
    Stalled,
}

/// The delay a [`Pace`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delay {
    /// For [`Pace::Failing`]: the retry's number (1 for the first retry); for
    /// [`Pace::Polling`]: the poll's number.
    pub attempt: u32,
    /// How long to wait.
    pub after: Duration,
}

/// The schedule's two bounds: failures wait `base` doubling to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// First failure delay (e.g. 5 s).
    pub base: Duration,
    /// Longest failure delay (e.g. 5 min); never below `base`.
    pub max: Duration,
}

impl Policy {
    /// The one rule by which the counts advance: the counts after `pace`, and the delay
    /// it asks for (`None` for [`Pace::Settled`] and [`Pace::Stalled`]). `jitter` in
    /// `0.0..=1.0` (random in production) shortens a failure delay by up to [`JITTER`].
    pub fn advance(self, before: Attempts, pace: Pace, jitter: f64) -> (Attempts, Option<Delay>) {
        match pace {
            Pace::Settled => (Attempts::default(), None),
            Pace::Stalled => (Attempts { polls: 0, ..before }, None),
            Pace::Polling => {
                let after = exponential(POLL_MIN, POLL_MAX, before.polls, 0.0);
                let polls = before.polls.saturating_add(1);
                (Attempts { polls, ..before }, Some(Delay { attempt: polls, after }))
            }
            Pace::Failing => {
                let after = exponential(self.base, self.max, before.failures, jitter);
                let failures = before.failures.saturating_add(1);
                (Attempts { failures, ..before }, Some(Delay { attempt: failures, after }))
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    generation: i64,
    attempts: Attempts,
}

/// Backoff state for every object, keyed by UID. Kept in memory: after a restart
/// an object starts again at `base`, which is what a fresh process should do.
#[derive(Debug)]
pub struct Backoff {
    policy: Policy,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Backoff {
    /// A schedule starting at `base` and capped at `max` (e.g. 5 s and 5 min).
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { policy: Policy { base, max: max.max(base) }, entries: Mutex::default() }
    }

    /// The bounds of the failure schedule.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        f(entries.entry(key.to_owned()).or_default())
    }

    /// Records the generation being reconciled; a spec change (new generation)
    /// resets both counts, so the new spec is acted on at once.
    pub fn observe_generation(&self, key: &str, generation: i64) {
        self.with(key, |e| {
            if e.generation != generation {
                *e = Entry { generation, ..Entry::default() };
            }
        });
    }

    /// The object's counts now.
    pub fn attempts(&self, key: &str) -> Attempts {
        self.with(key, |e| e.attempts)
    }

    /// Stores counts that [`Policy::advance`] computed (reconcile computes them in its
    /// pure step, with the delay its conditions state).
    pub fn store(&self, key: &str, attempts: Attempts) {
        self.with(key, |e| e.attempts = attempts);
    }

    /// Advances the object's counts by `pace` ([`Policy::advance`]) and returns the delay.
    pub fn advance(&self, key: &str, pace: Pace, jitter: f64) -> Option<Delay> {
        self.with(key, |e| {
            let (attempts, delay) = self.policy.advance(e.attempts, pace, jitter);
            e.attempts = attempts;
            delay
        })
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

    fn fail(b: &Backoff, key: &str) -> Duration {
        b.advance(key, Pace::Failing, rand::random::<f64>()).expect("a failure delay").after
    }

    fn poll(b: &Backoff, key: &str) -> Duration {
        b.advance(key, Pace::Polling, 0.0).expect("a poll delay").after
    }

    #[test]
    fn failures_grow_reset_on_success_and_on_new_generation() {
        let b = Backoff::new(S, 60 * S);
        b.observe_generation("a", 1);
        let d: Vec<_> = (0..4).map(|_| fail(&b, "a")).collect();
        for (i, d) in d.iter().enumerate() {
            let full = S * 2u32.pow(i as u32);
            assert!(*d <= full && *d >= full.mul_f64(1.0 - JITTER), "{i}: {d:?}");
        }
        assert_eq!(b.attempts("a").failures, 4);
        b.advance("a", Pace::Settled, 0.0);
        assert_eq!(b.attempts("a").failures, 0);
        fail(&b, "a");
        b.observe_generation("a", 1);
        assert_eq!(b.attempts("a").failures, 1, "same generation keeps state");
        b.observe_generation("a", 2);
        assert_eq!(b.attempts("a").failures, 0, "spec change resets");
        assert_eq!(b.attempts("other").failures, 0, "per object");
    }

    #[test]
    fn polls_double_then_settle() {
        let b = Backoff::new(S, 60 * S);
        let got: Vec<_> = (0..9).map(|_| poll(&b, "a").as_millis()).collect();
        assert_eq!(got, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        b.advance("a", Pace::Stalled, 0.0);
        assert_eq!(poll(&b, "a"), POLL_MIN);
        b.forget("a");
        assert_eq!(b.attempts("a").failures, 0);
    }

    #[test]
    fn each_pace_moves_its_own_count() {
        let policy = Policy { base: 5 * S, max: 300 * S };
        let before = Attempts { failures: 2, polls: 3 };
        let (a, d) = policy.advance(before, Pace::Polling, 1.0);
        assert_eq!((a, d), (Attempts { failures: 2, polls: 4 }, Some(Delay { attempt: 4, after: 2 * S })));
        let (a, d) = policy.advance(before, Pace::Failing, 0.0);
        assert_eq!((a, d), (Attempts { failures: 3, polls: 3 }, Some(Delay { attempt: 3, after: 20 * S })));
        assert_eq!(policy.advance(before, Pace::Stalled, 0.0), (Attempts { failures: 2, polls: 0 }, None));
        assert_eq!(policy.advance(before, Pace::Settled, 0.0), (Attempts::default(), None));
    }
}
