//! The last pure step: from a [`Verdict`], the conditions, the requeue and the new
//! backoff counts ([`conclude`]); for a held deletion, its conditions and retry
//! ([`hold_deletion`]); and the Warning events a condition change announces.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::annotations::PAUSED_REASON;
use super::backoff::{Attempts, Delay, Pace};
use super::conditions::{ConditionUpdate, merge, whole_seconds};
use super::decide::{Goal, Notice, Phase, observed_phase, stores_terminal};
use super::failure::Failure;
use super::fold::Verdict;
use super::messages::camel;
use super::observation::{Observation, Schedule};
use crate::ads::{ErrorClass, ExportStatus, format_time};
use crate::api::{
    CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED, CONDITION_SYNCED, ContinuousExportSpec,
    ContinuousExportStatus, ManagementPolicy, PAUSED_ANNOTATION,
};
use crate::duration;

/// When a freshly adopted export is checked again for a second adopter.
pub const ADOPTION_RECHECK: Duration = Duration::from_secs(2);

/// When the object is reconciled again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// After this long.
    After(Duration),
    /// Only on a change of the object (a spec change, deletion).
    AwaitChange,
}

/// What a pass writes and when it comes back.
#[derive(Clone, Debug, PartialEq)]
pub struct Conclusion {
    /// The whole status to write (conditions stamped, `observedGeneration` set).
    pub status: ContinuousExportStatus,
    /// When to reconcile again.
    pub requeue: Requeue,
    /// The object's backoff counts after this pass.
    pub attempts: Attempts,
}

/// The conditions, requeue and counts of an apply pass.
pub fn conclude(spec: &ContinuousExportSpec, obs: &Observation, verdict: &Verdict) -> Conclusion {
    let old = &obs.status;
    let mut attempts = obs.schedule.attempts;
    if verdict.status.export_status != old.export_status {
        attempts.polls = 0; // a new state (e.g. starting -> stopping) polls from the shortest delay again
    }
    let ready = ready(spec, &verdict.status, &verdict.result);
    let (mut rest, pace, requeue) = match &verdict.result {
        Ok(phase) => settled(spec, &verdict.status, phase, obs.schedule.resync),
        Err(f) => failed(f, obs.schedule.resync),
    };
    let (attempts, delay) = obs.schedule.policy.advance(attempts, pace, obs.schedule.jitter);
    let mut requeue = match (requeue, delay) {
        (_, Some(d)) => Requeue::After(d.after),
        (r, None) => r,
    };
    if let (Err(f), Some(delay)) = (&verdict.result, delay) {
        rest[1].message = format!("{}: {}; {}", f.step, f.message.trim_end_matches('.'), next_try(f, delay, obs.now));
    }
    let adopted = old.managed_export_id().is_none() && verdict.status.export_id.is_some();
    if spec.export_id.is_some() && !spec.observe_only() && adopted {
        // Just adopted: another object may have adopted the same export at the same
        // moment, unseen in the cache until now. Look again shortly (the older one keeps it).
        requeue = Requeue::After(ADOPTION_RECHECK);
    }
    let mut updates = vec![ready];
    updates.append(&mut rest);
    let mut status = verdict.status.clone();
    status.observed_generation = Some(obs.generation);
    status.region = obs.region.clone();
    status.management_policy = spec.observe_only().then_some(ManagementPolicy::ObserveOnly);
    status.last_handled_reconcile_at = handled(obs);
    status.conditions = merge(&old.conditions, &updates, obs.generation, whole_seconds(obs.now));
    Conclusion { status, requeue, attempts }
}

/// `status.lastHandledReconcileAt` after a pass: the request it handled, else as stored.
fn handled(obs: &Observation) -> Option<String> {
    obs.request.clone().or_else(|| obs.status.last_handled_reconcile_at.clone())
}

/// The status of a paused object (`adsexport.io/paused: "true"`): as stored, but for
/// `Synced=False`, reason `Paused` (its `observedGeneration` the current one, so a spec
/// change made meanwhile shows as seen and pending). Pure; written only when it differs.
pub fn paused(
    status: &ContinuousExportStatus,
    generation: i64,
    deleting: bool,
    now: Timestamp,
) -> ContinuousExportStatus {
    let mut message = format!(
        "reconciliation is paused by the annotation {PAUSED_ANNOTATION}: \"true\": no AWS calls until it is removed"
    );
    if deleting {
        message.push_str("; the deletion waits (the finalizer stays, the export is not stopped) until then");
    }
    let update = ConditionUpdate::is_false(CONDITION_SYNCED, PAUSED_REASON, message);
    let mut out = status.clone();
    out.conditions = merge(&status.conditions, &[update], generation, whole_seconds(now));
    out
}

/// `Ready` from the export's state against the spec; a terminal error or a vanished
/// export overrides it.
fn ready(
    spec: &ContinuousExportSpec,
    status: &ContinuousExportStatus,
    result: &Result<Phase, Failure>,
) -> ConditionUpdate {
    match result {
        // the last known state may be stale: a terminal error needs a human first
        Err(f) if f.cause.class() == ErrorClass::Terminal => {
            return ConditionUpdate::is_false(CONDITION_READY, f.reason(), "see the Stalled condition");
        }
        Ok(Phase::Gone) => {
            let msg = "the export no longer exists in ADS: nothing to stop";
            return ConditionUpdate::is_true(CONDITION_READY, "ExportGone", msg);
        }
        _ => {}
    }
    if spec.observe_only() {
        return observed_ready(status);
    }
    let stopped = spec.stopped;
    let state = status.export_status.as_deref();
    match (state.and_then(|s| s.parse::<ExportStatus>().ok()), stopped) {
        (Some(ExportStatus::Active), false) => {
            ConditionUpdate::is_true(CONDITION_READY, "Active", "the export is active")
        }
        (Some(ExportStatus::Inactive), true) => {
            ConditionUpdate::is_true(CONDITION_READY, "Stopped", "the export is stopped")
        }
        (Some(ExportStatus::StartFailed), true) => {
            ConditionUpdate::is_true(CONDITION_READY, "StartFailed", "the export never started: nothing to stop")
        }
        _ if state.is_none() && stopped && status.export_id.is_none() && result.is_ok() => {
            ConditionUpdate::is_true(CONDITION_READY, "NotStarted", "spec.stopped is true: no export was started")
        }
        _ => match state {
            Some(s) => ConditionUpdate::is_false(
                CONDITION_READY,
                camel(s),
                format!("export is {s}, wanted {}", Goal::of(spec).status()),
            ),
            None => ConditionUpdate::is_false(CONDITION_READY, "Pending", "no export yet"),
        },
    }
}

/// `Ready` of an observer: `True` (reason `Observed`) once the export is seen in a
/// settled state, whatever it is; `False` with the export's status while it moves.
fn observed_ready(status: &ContinuousExportStatus) -> ConditionUpdate {
    let Some(state) = status.export_status.as_deref() else {
        return ConditionUpdate::is_false(CONDITION_READY, "Pending", "the export has not been observed yet");
    };
    let what = format!("export is {state}; observed only (spec.managementPolicy: ObserveOnly)");
    match observed_phase(status) {
        Phase::Steady => ConditionUpdate::is_true(CONDITION_READY, "Observed", what),
        _ => ConditionUpdate::is_false(CONDITION_READY, camel(state), what),
    }
}

/// When a settled export is looked at again: every `resync`, unless its status is
/// terminal in ADS (`INACTIVE`): then only a change of the object (a spec edit,
/// `reconcile-requested-at`, its deletion), of what it depends on (its account, its
/// ConfigMap) or an operator restart reconciles it, so thousands of stopped exports cost
/// nothing per resync period.
fn resync_unless_terminal(status: &ContinuousExportStatus, resync: Duration) -> Requeue {
    if stores_terminal(status) { Requeue::AwaitChange } else { Requeue::After(resync) }
}

/// `Synced`, `Reconciling`, `Stalled` and the pace of a pass that reached `phase`.
fn settled(
    spec: &ContinuousExportSpec,
    status: &ContinuousExportStatus,
    phase: &Phase,
    resync: Duration,
) -> (Vec<ConditionUpdate>, Pace, Requeue) {
    let synced = ConditionUpdate::is_true(CONDITION_SYNCED, "Synced", "the last calls to AWS succeeded");
    let not_stalled = ConditionUpdate::is_false(CONDITION_STALLED, "NotStalled", "");
    match phase {
        Phase::Steady | Phase::Gone => {
            let done = ConditionUpdate::is_false(CONDITION_RECONCILING, "Settled", "");
            (vec![synced, done, not_stalled], Pace::Settled, resync_unless_terminal(status, resync))
        }
        Phase::Transition => {
            // No delay in the message: it would rewrite the status on every poll.
            let state = status.export_status.as_deref().unwrap_or("pending");
            let msg = if spec.observe_only() {
                format!("export is {state}; observing it until it settles")
            } else {
                format!("export is {state}; polling until it is {}", Goal::of(spec).status())
            };
            let busy = ConditionUpdate::is_true(CONDITION_RECONCILING, "Transitioning", msg);
            (vec![synced, busy, not_stalled], Pace::Polling, Requeue::AwaitChange)
        }
        Phase::Failed { reason, message } => {
            let done = ConditionUpdate::is_false(CONDITION_RECONCILING, *reason, "");
            let stalled = ConditionUpdate::is_true(CONDITION_STALLED, *reason, message.clone());
            // ADS may still move on (an ERROR export recovering, a new status): keep
            // resyncing, as for a steady export.
            (vec![synced, done, stalled], Pace::Settled, Requeue::After(resync))
        }
    }
}

/// `Synced`, `Reconciling`, `Stalled` and the pace of a failed pass. The
/// `Reconciling` message of a retried failure is completed in [`conclude`], once the
/// delay is known.
fn failed(f: &Failure, resync: Duration) -> (Vec<ConditionUpdate>, Pace, Requeue) {
    let reason = f.reason();
    let synced = ConditionUpdate::is_false(CONDITION_SYNCED, reason, format!("{}: {}", f.step, f.message));
    match f.cause.class() {
        ErrorClass::Recoverable => {
            // A wait for something else to settle is polled, not backed off as a failure:
            // it should move on soon after the other side does.
            let pace = if f.cause.is_wait() { Pace::Polling } else { Pace::Failing };
            let busy = ConditionUpdate::is_true(CONDITION_RECONCILING, reason, "");
            let not_stalled = ConditionUpdate::is_false(CONDITION_STALLED, "NotStalled", "");
            (vec![synced, busy, not_stalled], pace, Requeue::AwaitChange)
        }
        ErrorClass::Terminal => {
            let (requeue, when) = if super::decide::RECHECKED_STALLS.contains(&reason) {
                (Requeue::After(resync), format!("checked again every {}", duration::format_compact(resync)))
            } else {
                (
                    Requeue::AwaitChange,
                    format!(
                        "no retries until the spec changes or the {} annotation is set to a new value",
                        crate::api::RECONCILE_REQUESTED_ANNOTATION
                    ),
                )
            };
            let done = ConditionUpdate::is_false(CONDITION_RECONCILING, reason, "");
            let msg = format!("{}: {} ({when})", f.step, f.message);
            let stalled = ConditionUpdate::is_true(CONDITION_STALLED, reason, msg);
            (vec![synced, done, stalled], Pace::Stalled, requeue)
        }
    }
}

/// How a condition message says when the next try is: a wait is polled ("looking
/// again in 2s (at <time>)"), a failure backs off ("retry 3 in 20s (at <time>)").
fn next_try(f: &Failure, delay: Delay, now: Timestamp) -> String {
    let at = now.checked_add(delay.after).map(format_time).unwrap_or_default();
    let after = duration::format_compact(delay.after);
    if f.cause.is_wait() {
        format!("looking again in {after} (at {at})")
    } else {
        format!("retry {} in {after} (at {at})", delay.attempt)
    }
}

/// A deletion that cannot finish yet: the status saying why, the delay before the next
/// try (`None`: a wait, polled by the error policy) and the object's counts.
pub fn hold_deletion(obs: &Observation, f: &Failure) -> (ContinuousExportStatus, Option<Duration>, Attempts) {
    // Say why deletion waits: a starting export is a normal wait, not a failure (polled;
    // no time in the message, which would rewrite the status every poll).
    let what = format!("deleting: {}: {}", f.step, f.message.trim_end_matches('.'));
    let mut updates = vec![ConditionUpdate::is_true(CONDITION_RECONCILING, "Deleting", what.clone())];
    let Schedule { policy, attempts, jitter, .. } = obs.schedule;
    let (attempts, retry_in) = if f.cause.is_wait() {
        (attempts, None)
    } else {
        let (attempts, delay) = policy.advance(attempts, Pace::Failing, jitter);
        let delay = delay.unwrap_or(Delay { attempt: attempts.failures, after: policy.base });
        updates.push(ConditionUpdate::is_false(
            CONDITION_SYNCED,
            f.reason(),
            format!("{what}; {}", next_try(f, delay, obs.now)),
        ));
        (attempts, Some(delay.after))
    };
    let mut status = obs.status.clone();
    status.observed_generation = Some(obs.generation);
    status.last_handled_reconcile_at = handled(obs);
    status.conditions = merge(&obs.status.conditions, &updates, obs.generation, whole_seconds(obs.now));
    (status, retry_in, attempts)
}

/// The Warning events of a status change: when `Synced` turns False (or changes
/// reason), and when `Stalled` turns True; once per change, not on every retry.
/// `action` is the step that failed (`Reconcile` when none did).
pub fn announcements(old: &ContinuousExportStatus, new: &ContinuousExportStatus, action: &str) -> Vec<Notice> {
    let mut out = Vec::new();
    for (type_, bad) in [(CONDITION_SYNCED, "False"), (CONDITION_STALLED, "True")] {
        let Some(now) = new.condition(type_).filter(|c| c.status == bad) else { continue };
        if old.condition(type_).is_some_and(|b| b.status == bad && b.reason == now.reason) {
            continue;
        }
        if type_ == CONDITION_STALLED && new.condition(CONDITION_SYNCED).is_some_and(|c| c.reason == now.reason) {
            continue; // already announced as the Synced failure
        }
        out.push(Notice::warning(&now.reason, action, now.message.clone()));
    }
    out
}
