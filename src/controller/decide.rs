//! The pure decision core of the apply branch: which ADS reads a pass needs
//! ([`reads`]) and, from the [`Observation`], what to do ([`decide`] -> [`Plan`]).
//! No I/O, no clock but `Observation::now`, no shared state (docs/architecture.md,
//! "Observe, decide, act").

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;

use super::annotations;
use super::claims::{Among, Lifecycle, Others, PENDING_SKEW};
use super::failure::Failure;
use super::messages;
use super::observation::Observation;
use crate::ads::{ExportDescription, ExportStatus, Reason, ReportedStatus, format_time};
use crate::api::{CONDITION_STALLED, ContinuousExportSpec, ContinuousExportStatus};

/// Stalled reasons that can clear without a spec change: the export's state in ADS
/// ([`Phase::Failed`]), another object's claim on the export (which may go away), an
/// export ADS does not list (which may be eventual consistency), or a ConfigMap in the
/// way of `spec.writeInfoTo` (which may be deleted), an `ExportAccount` that is missing
/// or does not allow the namespace (which an administrator may fix: such objects are
/// also reconciled at once when the account or the namespace changes). Such objects are
/// looked at again every resync period.
pub const RECHECKED_STALLS: [&str; 10] = [
    "StoppedOutsideKubernetes",
    "StartFailed",
    "StopFailed",
    "ExportError",
    "UnknownStatus",
    "AlreadyManaged",
    "NotFound",
    "InfoTargetConflict",
    "AccountNotFound",
    "AccountNotAllowed",
];

/// What one pass concluded about the export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The export matches the spec (or there is nothing to do): resync later.
    Steady,
    /// Starting or stopping: poll again soon.
    Transition,
    /// The export is in a state that needs a human (failed, errored, stopped out of band).
    Failed {
        /// The `Stalled` reason, e.g. `ExportError`.
        reason: &'static str,
        /// What happened and what fixes it.
        message: String,
    },
    /// `spec.stopped` and the export no longer exists in ADS: nothing left to stop.
    Gone,
}

/// A change of the `start-pending` annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnotationChange {
    /// Leave it as it is.
    Keep,
    /// Remove it (if the object carries it): no start of this object is pending.
    Clear,
}

/// Whether a Start is the first attempt or a retry after an unanswered one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// No start pending: the annotation is set to now before Start is sent.
    First,
    /// An earlier attempt's answer was lost (the annotation is kept: the export it may
    /// have created started after that time).
    Retry,
}

/// Where StopContinuousExport's times come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    /// From the answer, and a Describe right after, whose look the status takes: a
    /// stop that ends at once is written `INACTIVE` in the same pass, not after a
    /// second look (the documented sample response carries no times either).
    FromAnswerAndDescribe,
    /// Not needed (the status is not kept or the export is gone).
    NotNeeded,
}

/// Why a Stop is sent, which says how its outcome is read ([`super::fold::stop`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `spec.stopped` and the export was `was` (`ACTIVE`, `ERROR` or `STOP_FAILED`,
    /// whose `statusDetail` was `detail`).
    Requested {
        /// The status Describe reported.
        was: ExportStatus,
        /// Its `statusDetail`.
        detail: Option<String>,
    },
    /// `spec.stopped` and ADS does not list the managed export: maybe not *yet*, so a
    /// Stop settles whether it exists.
    Unlisted,
}

/// The one call a pass makes after reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// StartContinuousExport in the region (after the region's start gate is taken and,
    /// for a first attempt, the annotation set); then Describe of the new export, or
    /// on `ConflictErrorException` a listing that names the running one.
    Start(Attempt),
    /// StopContinuousExport of `id`; then Describe when the times are wanted and
    /// missing, or when ADS answers `OperationNotPermitted` (stopped meanwhile?).
    Stop {
        /// The export.
        id: String,
        /// Where its times come from.
        times: Times,
        /// How the outcome is read.
        reason: StopReason,
    },
}

/// The call to make, or the result when none is needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing to call: the pass's result.
    Done(Result<Phase, Failure>),
    /// Make this call, then fold its outcome ([`super::fold`]).
    Call(Call),
}

/// An event to publish (events.k8s.io/v1): type, reason, action, note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason, e.g. `Adopted`.
    pub reason: String,
    /// What the operator did: an ADS operation, `Adopt`, `Delete` or `Reconcile`.
    /// Events are aggregated per reason *and* action.
    pub action: String,
    /// One line for humans.
    pub note: String,
}

impl Notice {
    /// A Normal event.
    pub fn normal(reason: &str, action: &str, note: String) -> Self {
        Self { type_: EventType::Normal, reason: reason.into(), action: action.into(), note }
    }

    /// A Warning event.
    pub fn warning(reason: &str, action: &str, note: String) -> Self {
        Self { type_: EventType::Warning, reason: reason.into(), action: action.into(), note }
    }
}

/// What [`decide`] concluded: the annotation change and events due before any call,
/// the export fields of the status as known now, and the call or the result.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Made first (a stale or settled `start-pending` is removed).
    pub annotation: AnnotationChange,
    /// The status (export fields; conditions as stored) before the call.
    pub status: ContinuousExportStatus,
    /// Events to publish.
    pub notices: Vec<Notice>,
    /// The call, or the result.
    pub next: Next,
}

/// The reads an apply pass needs, before any rule runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadPlan {
    /// No ADS call (no region, a configuration error, an export claimed by another
    /// object, or stopped with nothing started).
    Nothing,
    /// Describe this export ID.
    Describe(String),
    /// List the region's exports.
    List,
}

/// Which reads [`decide`] needs, from the object and the cache alone. An observer
/// (`managementPolicy: ObserveOnly`) describes `spec.exportId`, whoever manages it.
pub fn reads(spec: &ContinuousExportSpec, obs: &Observation) -> ReadPlan {
    if obs.region.is_none() {
        return ReadPlan::Nothing;
    }
    if spec.observe_only() {
        return spec.export_id.clone().map_or(ReadPlan::Nothing, ReadPlan::Describe);
    }
    match (obs.status.managed_export_id(), spec.export_id.as_deref()) {
        (Some(id), Some(spec_id)) if spec_id != id => ReadPlan::Nothing,
        (Some(id), _) if obs.others.manager_of(id, Among::Older).is_some() => ReadPlan::Nothing,
        (Some(id), _) => ReadPlan::Describe(id.to_owned()),
        (None, Some(id)) if obs.others.manager_of(id, Among::All).is_some() => ReadPlan::Nothing,
        (None, Some(id)) => ReadPlan::Describe(id.to_owned()),
        (None, None) if obs.pending.since.is_none() && spec.stopped => ReadPlan::Nothing,
        (None, None) => ReadPlan::List,
    }
}

/// Whether a pass may read its export from the region's shared listing (at most one
/// resync period old) instead of describing it by ID: the stored export is settled
/// (`ACTIVE` or `INACTIVE`) for this very generation, or the object adopts
/// `spec.exportId` or observes it (an ID the listing lacks is still described by ID).
/// A transition, a spec change, an export just started or stopped, or a reconcile
/// request is read afresh.
pub fn shared_read_suffices(spec: &ContinuousExportSpec, obs: &Observation) -> bool {
    if obs.request.is_some() {
        return false;
    }
    let settled = matches!(obs.status.export_status.as_deref(), Some("ACTIVE" | "INACTIVE"));
    match obs.status.managed_export_id() {
        Some(_) => settled && obs.status.observed_generation == Some(obs.generation),
        None => spec.export_id.is_some(),
    }
}

/// Whether a pass about to stop its export (`spec.stopped`, the stored status says
/// `ACTIVE`) may read the export's last look (the Describe after Start, a listing or the
/// watch, at most one resync period old) instead of describing it afresh: the Stop's own
/// answer settles whatever changed since (ADS refuses to stop an export that is
/// starting, stopping or stopped, and the refusal is followed by a Describe), so the
/// stop costs one call fewer. A reconcile request reads afresh.
pub fn stop_reads_last_look(spec: &ContinuousExportSpec, obs: &Observation) -> bool {
    spec.stopped
        && !spec.observe_only()
        && obs.request.is_none()
        && obs.status.managed_export_id().is_some()
        && obs.status.export_status.as_deref() == Some(ExportStatus::Active.as_str())
}

/// Whether the object is stalled by a terminal error for this very generation: it
/// waits for a spec change and makes no AWS calls. (A stall on the export's own state,
/// [`RECHECKED_STALLS`], is looked at again every resync.)
pub fn stalled_for_generation(status: &ContinuousExportStatus, generation: i64) -> bool {
    status.condition(CONDITION_STALLED).is_some_and(|c| {
        c.status == "True"
            && c.observed_generation == Some(generation)
            && !RECHECKED_STALLS.contains(&c.reason.as_str())
    })
}

/// The apply rules: from what was observed, the plan (docs/architecture.md has them as
/// a table). Pure.
pub fn decide(spec: &ContinuousExportSpec, obs: &Observation) -> Plan {
    let mut plan = Plan {
        annotation: AnnotationChange::Keep,
        status: obs.status.clone(),
        notices: Vec::new(),
        next: done_steady(),
    };
    if annotations::status_paused(&obs.status) {
        let note = "reconciliation resumed: adsexport.io/paused was removed".to_owned();
        plan.notices.push(Notice::normal("Resumed", "Reconcile", note));
    }
    let Some(region) = obs.region.as_deref() else {
        plan.next = Next::Done(Err(messages::no_region()));
        return plan;
    };
    if spec.observe_only() {
        plan.next = observe_only(spec, obs, region, &mut plan);
        return plan;
    }
    plan.next = match (obs.status.managed_export_id().map(str::to_owned), spec.export_id.as_deref()) {
        (Some(id), _) => managed(spec, obs, region, &id, &mut plan),
        (None, Some(id)) => adopt(spec, obs, region, id, &mut plan),
        (None, None) => own_start(spec, obs, region, &mut plan),
    };
    plan
}

/// `managementPolicy: ObserveOnly`: mirror the export `spec.exportId` names into the
/// status, whoever manages it; never Start or Stop.
fn observe_only(spec: &ContinuousExportSpec, obs: &Observation, region: &str, plan: &mut Plan) -> Next {
    if obs.pending.marked {
        plan.annotation = AnnotationChange::Clear; // an observer never starts
    }
    let Some(id) = spec.export_id.as_deref() else {
        return Next::Done(Err(messages::observe_without_id()));
    };
    match obs.ads.described.clone() {
        Some(Ok(d)) => {
            copy_description(&mut plan.status, &d);
            Next::Done(Ok(observed_phase(&plan.status)))
        }
        Some(Err(e)) if e.reason == Reason::NotFound => {
            mark_gone(&mut plan.status);
            Next::Done(Err(messages::observed_not_found(e, id, region).into()))
        }
        Some(Err(e)) => Next::Done(Err(e.into())),
        None => done_steady(),
    }
}

/// The phase of an observed export: polled while it moves (`START_IN_PROGRESS`,
/// `STOP_IN_PROGRESS`), else steady whatever its state (the observer wants nothing of
/// it); an unknown status stalls as for a managed export.
pub fn observed_phase(status: &ContinuousExportStatus) -> Phase {
    let raw = status.export_status.as_deref().unwrap_or_default();
    match raw.parse::<ExportStatus>() {
        Ok(ExportStatus::StartInProgress | ExportStatus::StopInProgress) => Phase::Transition,
        Ok(_) => Phase::Steady,
        Err(_) => Phase::Failed { reason: "UnknownStatus", message: format!("ADS reports an unknown status {raw:?}") },
    }
}

fn done_steady() -> Next {
    Next::Done(Ok(Phase::Steady))
}

/// The object manages export `id` (`status.exportId`).
fn managed(spec: &ContinuousExportSpec, obs: &Observation, region: &str, id: &str, plan: &mut Plan) -> Next {
    if let Some(spec_id) = spec.export_id.as_deref().filter(|s| *s != id) {
        return Next::Done(Err(messages::spec_mismatch(spec_id, id)));
    }
    if let Some(other) = obs.others.manager_of(id, Among::Older) {
        // Adopted at the same moment as an older object: that one keeps it, and this
        // status lets go of it, so deleting this object stops nothing.
        plan.status = export_fields_cleared(&plan.status, None);
        return Next::Done(Err(messages::already_managed(id, &other.owner)));
    }
    match obs.ads.described.clone() {
        Some(Ok(d)) => on_described(spec, &d, plan),
        Some(Err(e)) if e.reason == Reason::NotFound => {
            mark_gone(&mut plan.status);
            if spec.stopped {
                // Not listed may be not listed *yet*: a Stop settles it.
                let reason = StopReason::Unlisted;
                Next::Call(Call::Stop { id: id.to_owned(), times: Times::NotNeeded, reason })
            } else {
                Next::Done(Err(messages::managed_gone(e, id, region).into()))
            }
        }
        Some(Err(e)) => Next::Done(Err(e.into())),
        None => done_steady(),
    }
}

/// No export managed yet, `spec.exportId` set: adopt it. An object that observed it
/// until now (`ObserveOnly` changed to `Full`) takes it over the same way.
fn adopt(spec: &ContinuousExportSpec, obs: &Observation, region: &str, id: &str, plan: &mut Plan) -> Next {
    if obs.pending.marked {
        plan.annotation = AnnotationChange::Clear; // an adopting object never starts
    }
    if let Some(other) = obs.others.manager_of(id, Among::All) {
        // What was observed is not this object's: its status names no export it manages.
        plan.status = export_fields_cleared(&plan.status, None);
        return Next::Done(Err(match other.lifecycle {
            // Its finalizer decides the export's fate first; look again after it.
            Lifecycle::Deleting => messages::owner_deleting(id, &other.owner),
            Lifecycle::Live => messages::already_managed(id, &other.owner),
        }));
    }
    match obs.ads.described.clone() {
        Some(Ok(d)) => {
            let observed = if obs.status.export_id.is_some() { ", observed until now" } else { "" };
            let note = format!("adopted export {id} ({}) in {region}{observed}", d.status.as_str());
            plan.notices.push(Notice::normal("Adopted", "Adopt", note));
            on_described(spec, &d, plan)
        }
        Some(Err(e)) => Next::Done(Err(messages::adoption_not_found(e, id, region).into())),
        None => done_steady(),
    }
}

/// No export and no `spec.exportId`: resolve a pending start, or start one.
fn own_start(spec: &ContinuousExportSpec, obs: &Observation, region: &str, plan: &mut Plan) -> Next {
    let since = obs.pending.since;
    if since.is_none() && obs.pending.marked {
        plan.annotation = AnnotationChange::Clear; // a value that cannot be this object's
    }
    let exports = match obs.ads.listed.clone() {
        Some(Ok(exports)) => exports,
        Some(Err(e)) => return Next::Done(Err(e.into())),
        None => return done_steady(), // stopped before anything was started
    };
    if let Some(since) = since
        && let Some(d) = pending_candidate(&exports, since, &obs.others)
    {
        if let Some(other) = obs.others.pending_start(Among::Older) {
            return Next::Done(Err(messages::pending_elsewhere(other, region)));
        }
        let note =
            format!("found export {}, started by an earlier attempt whose answer was lost; managing it", d.export_id);
        plan.notices.push(Notice::normal("Recovered", "Adopt", note));
        return on_described(spec, &d, plan);
    }
    if spec.stopped {
        plan.annotation = AnnotationChange::Clear;
        return done_steady();
    }
    // One start in flight per region: another object's unanswered start would make
    // every export that shows up there ambiguous (a running one may be its own).
    let among = if since.is_some() { Among::Older } else { Among::All };
    if let Some(other) = obs.others.pending_start(among) {
        return Next::Done(Err(messages::pending_elsewhere(other, region)));
    }
    if let Some(active) = exports.iter().find(|d| is_running(&d.status)) {
        // Not this object's (see above): Start would answer ConflictErrorException.
        plan.annotation = AnnotationChange::Clear;
        return Next::Done(Err(messages::region_busy(region, active, &obs.others)));
    }
    Next::Call(Call::Start(if since.is_some() { Attempt::Retry } else { Attempt::First }))
}

/// The export as Describe (or a listing) reports it: copy it into the status, then
/// stop it if the spec asks, else conclude.
fn on_described(spec: &ContinuousExportSpec, d: &ExportDescription, plan: &mut Plan) -> Next {
    copy_description(&mut plan.status, d);
    match d.status.known() {
        Some(was @ (ExportStatus::Active | ExportStatus::Error | ExportStatus::StopFailed)) if spec.stopped => {
            let reason = StopReason::Requested { was, detail: d.status_detail.clone() };
            let id = d.export_id.clone();
            Next::Call(Call::Stop { id, times: Times::FromAnswerAndDescribe, reason })
        }
        _ => {
            let (annotation, result) = settle(spec, &mut plan.status, d);
            if annotation == AnnotationChange::Clear {
                plan.annotation = AnnotationChange::Clear;
            }
            Next::Done(result)
        }
    }
}

/// The result for a described export that needs no call: a `START_FAILED` export this
/// object started is let go (a new one is started, on the failure schedule), else the
/// [`phase`] of the status.
pub fn settle(
    spec: &ContinuousExportSpec,
    status: &mut ContinuousExportStatus,
    d: &ExportDescription,
) -> (AnnotationChange, Result<Phase, Failure>) {
    if d.status.is(ExportStatus::StartFailed) && !spec.stopped && spec.export_id.is_none() {
        // AWS: "To recover, call start-continuous-export again". That start is settled
        // (it failed): other objects may start now.
        let detail = d.status_detail.clone().unwrap_or_else(|| "no detail".into());
        *status = export_fields_cleared(status, Some(detail.clone()));
        return (AnnotationChange::Clear, Err(messages::start_failed(&d.export_id, &detail)));
    }
    (AnnotationChange::Keep, Ok(phase(Goal::of(spec), status)))
}

/// A status without export fields (conditions and `lastHandledReconcileAt` kept), with `status_detail`.
pub fn export_fields_cleared(status: &ContinuousExportStatus, detail: Option<String>) -> ContinuousExportStatus {
    ContinuousExportStatus {
        conditions: status.conditions.clone(),
        status_detail: detail,
        last_handled_reconcile_at: status.last_handled_reconcile_at.clone(),
        ..Default::default()
    }
}

/// ADS does not list the export (any more): its last known state is stale.
pub fn mark_gone(status: &mut ContinuousExportStatus) {
    status.export_status = None;
    status.status_detail = Some("the export no longer exists in ADS".into());
}

/// Starting or running (the statuses that block a Start), as reported.
pub fn is_running(status: &ReportedStatus) -> bool {
    status.known().is_some_and(ExportStatus::is_running)
}

/// Whether `status` stores an export status that is final in ADS (`INACTIVE`, see
/// [`ExportStatus::is_terminal`]); `false` without one or for a status this operator
/// does not know.
pub fn stores_terminal(status: &ContinuousExportStatus) -> bool {
    status.export_status.as_deref().and_then(|s| s.parse::<ExportStatus>().ok()).is_some_and(ExportStatus::is_terminal)
}

/// The export a crashed or unanswered start may have created, among `exports`: running,
/// started no earlier than the `start-pending` time (less [`PENDING_SKEW`]), and claimed
/// by no other object.
pub fn pending_candidate(
    exports: &[ExportDescription],
    since: Timestamp,
    others: &Others,
) -> Option<ExportDescription> {
    let earliest = since.checked_sub(PENDING_SKEW).unwrap_or(since);
    exports
        .iter()
        .find(|d| is_running(&d.status) && !others.claimed(&d.export_id) && d.start_time.is_none_or(|t| t >= earliest))
        .cloned()
}

/// Copies what ADS reports into the status fields (a member ADS omits keeps its value).
pub fn copy_description(status: &mut ContinuousExportStatus, d: &ExportDescription) {
    status.export_id = Some(d.export_id.clone());
    status.export_status = Some(d.status.as_str().to_owned());
    status.status_detail = d.status_detail.clone();
    status.s3_bucket = d.s3_bucket.clone().or(status.s3_bucket.take());
    status.data_source = d.data_source.clone().or(status.data_source.take());
    status.database_name = d.database_name.clone().or(status.database_name.take());
    status.start_time = d.start_time.map(format_time).or(status.start_time.take());
    status.stop_time = d.stop_time.map(format_time).or(status.stop_time.take());
}

/// What the spec asks of the export: `spec.stopped` as a goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Running (`ACTIVE`).
    Running,
    /// Stopped (`INACTIVE`).
    Stopped,
}

impl Goal {
    /// The goal of `spec`.
    pub fn of(spec: &ContinuousExportSpec) -> Self {
        if spec.stopped { Goal::Stopped } else { Goal::Running }
    }

    /// The export status that meets it.
    pub fn status(self) -> ExportStatus {
        match self {
            Goal::Running => ExportStatus::Active,
            Goal::Stopped => ExportStatus::Inactive,
        }
    }
}

/// The phase of an export in `status` against the spec's goal.
pub fn phase(goal: Goal, status: &ContinuousExportStatus) -> Phase {
    use ExportStatus::*;
    let detail = status.status_detail.clone().unwrap_or_default();
    let raw = status.export_status.as_deref().unwrap_or_default();
    let stopped = goal == Goal::Stopped;
    match (raw.parse::<ExportStatus>().ok(), stopped) {
        (Some(StartInProgress | StopInProgress), _) | (Some(Active), true) => Phase::Transition,
        (Some(Active), false) | (Some(Inactive | StartFailed), true) => Phase::Steady,
        (Some(Inactive), false) => Phase::Failed {
            reason: "StoppedOutsideKubernetes",
            message: format!(
                "the export is INACTIVE (stopped, or adopted already stopped) while spec.stopped is false; an \
                 export cannot be resumed: set spec.stopped: true to acknowledge, or create a new ContinuousExport \
                 without spec.exportId ({detail})"
            ),
        },
        (Some(StartFailed), _) => Phase::Failed {
            reason: "StartFailed",
            message: format!(
                "ADS could not start the export: {detail}; set spec.stopped: true to acknowledge, or create a new \
                 ContinuousExport"
            ),
        },
        (Some(StopFailed), _) => {
            Phase::Failed { reason: "StopFailed", message: format!("ADS could not stop the export: {detail}") }
        }
        (Some(Error), _) => Phase::Failed {
            reason: "ExportError",
            message: format!("the export is in ERROR: {detail}; set spec.stopped: true to stop it"),
        },
        (None, _) => {
            Phase::Failed { reason: "UnknownStatus", message: format!("ADS reports an unknown status {raw:?}") }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(s: &str) -> ContinuousExportStatus {
        ContinuousExportStatus { export_status: Some(s.into()), ..Default::default() }
    }

    #[test]
    fn phases() {
        use ExportStatus::*;
        let p = |stopped, s: ExportStatus| phase(if stopped { Goal::Stopped } else { Goal::Running }, &st(s.as_str()));
        assert!(matches!(p(false, Active), Phase::Steady));
        assert!(matches!(p(true, Inactive), Phase::Steady));
        assert!(matches!(p(true, Active), Phase::Transition));
        assert!(matches!(p(false, StartInProgress), Phase::Transition));
        assert!(matches!(p(true, StopInProgress), Phase::Transition));
        assert!(matches!(p(false, Inactive), Phase::Failed { reason: "StoppedOutsideKubernetes", .. }));
        assert!(matches!(p(false, Error), Phase::Failed { reason: "ExportError", .. }));
        assert!(matches!(p(false, StartFailed), Phase::Failed { reason: "StartFailed", .. }));
        assert!(matches!(p(true, StartFailed), Phase::Steady), "nothing runs: what stopped asks");
        assert!(matches!(phase(Goal::Running, &st("NEW_THING")), Phase::Failed { reason: "UnknownStatus", .. }));
    }

    #[test]
    fn description_copies_and_keeps_known_fields() {
        let mut status = ContinuousExportStatus { s3_bucket: Some("b".into()), ..Default::default() };
        let d = ExportDescription {
            export_id: "e".into(),
            status: ExportStatus::Active.into(),
            start_time: crate::ads::timestamp_from_epoch(1_493_405_005, 639_000_000),
            ..Default::default()
        };
        copy_description(&mut status, &d);
        assert_eq!(status.export_id.as_deref(), Some("e"));
        assert_eq!(status.s3_bucket.as_deref(), Some("b"));
        assert_eq!(status.start_time.as_deref(), Some("2017-04-28T18:43:25.639Z"));
    }
}
