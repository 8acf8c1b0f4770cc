//! The pure rules of the cleanup branch (the object is being deleted): which reads it
//! needs, and whether the finalizer is released, the export stopped first, or the
//! deletion held (docs/architecture.md, "Deletion").

use super::claims::Among;
use super::decide::{AnnotationChange, Next, Notice, Phase, Plan, is_running, pending_candidate, stores_terminal};
use super::failure::Failure;
use super::fold::{StopOutcome, Verdict, record_stop, without_call};
use super::messages;
use super::observation::Observation;
use crate::ads::{ExportStatus, Reason};
use crate::api::{ContinuousExportSpec, DeletionPolicy};

/// What the cleanup branch does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Release the finalizer; the text says why (logged).
    Release(String),
    /// Stop this export, then release the finalizer.
    Stop(String),
    /// Keep the finalizer: report the failure and try again.
    Hold(Failure),
}

/// How a deletion ends once any Stop is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Release the finalizer; the text says why (logged).
    Release(String),
    /// Keep the finalizer: report the failure and try again.
    Hold(Failure),
}

impl Deletion {
    /// The end, or (`Err`) the export ID to stop first.
    pub fn ended(self) -> Result<End, String> {
        match self {
            Deletion::Release(what) => Ok(End::Release(what)),
            Deletion::Hold(failure) => Ok(End::Hold(failure)),
            Deletion::Stop(id) => Err(id),
        }
    }
}

/// The export a deletion concerns, before it is described.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// This export ID.
    Export(String),
    /// Nothing to stop, and why.
    Nothing(String),
    /// Hold the deletion.
    Hold(Failure),
}

/// Whether the region's exports must be listed: no `status.exportId`, but a start may
/// be pending (its export is looked for, to stop it or name it).
pub fn needs_listing(obs: &Observation) -> bool {
    obs.region.is_some() && obs.status.managed_export_id().is_none() && obs.pending.since.is_some()
}

/// The export to Describe before stopping it, once the listing (if any) is read;
/// `None` when no Describe is needed.
pub fn to_describe(spec: &ContinuousExportSpec, obs: &Observation) -> Option<String> {
    if spec.deletion_policy == DeletionPolicy::Retain || spec.observe_only() || obs.region.is_none() {
        return None;
    }
    match target(obs) {
        Target::Export(id) if obs.others.manager_of(&id, Among::Older).is_none() => Some(id),
        _ => None,
    }
}

/// Whether the Describe of [`to_describe`] may read the export's last look (at most one
/// resync period old) instead of asking ADS: the status says `INACTIVE`, terminal in
/// ADS. (An `ACTIVE` one is described afresh: if it was stopped out of band meanwhile,
/// a Stop on a stale look would be sent to an `INACTIVE` export.) A reconcile request
/// reads afresh.
pub fn reads_last_look(obs: &Observation) -> bool {
    obs.request.is_none() && stores_terminal(&obs.status)
}

/// Only an export this object manages (`status.exportId` written under `Full`, or its
/// own pending start's): a `spec.exportId` whose adoption never succeeded (unknown,
/// managed by another object, or only observed so far) is not this object's to stop.
fn target(obs: &Observation) -> Target {
    if let Some(id) = obs.status.managed_export_id() {
        return Target::Export(id.to_owned());
    }
    let region = obs.region.as_deref().unwrap_or_default();
    let nothing = || Target::Nothing("no export was started".into());
    let Some(since) = obs.pending.since else { return nothing() };
    match obs.ads.listed.as_ref() {
        Some(Ok(exports)) => match pending_candidate(exports, since, &obs.others) {
            Some(_) if obs.others.pending_start(Among::Older).is_some() => {
                let other = obs.others.pending_start(Among::Older).unwrap_or_default();
                Target::Hold(messages::pending_elsewhere(other, region))
            }
            Some(d) => Target::Export(d.export_id),
            None => nothing(),
        },
        Some(Err(e)) => Target::Hold(e.clone().into()),
        None => nothing(),
    }
}

/// The cleanup rules: per `deletionPolicy`, stop the export or leave it, then let the
/// finalizer go (at once for an observer, `managementPolicy: ObserveOnly`); with the
/// events to publish. Pure.
pub fn decide(spec: &ContinuousExportSpec, obs: &Observation) -> (Deletion, Vec<Notice>) {
    if spec.observe_only() {
        // Whatever the status says: the spec's ObserveOnly says the export is not ours.
        return (Deletion::Release("observe only: the export is left as it is".into()), Vec::new());
    }
    if spec.deletion_policy == DeletionPolicy::Retain {
        let notices = retained_note(obs).map(|note| Notice::normal("Retained", "Delete", note));
        return (Deletion::Release("retained".into()), notices.into_iter().collect());
    }
    (delete(obs), Vec::new())
}

/// `deletionPolicy: Delete`: stop the export this object manages, unless it is gone,
/// settled or someone else's.
fn delete(obs: &Observation) -> Deletion {
    if obs.region.is_none() {
        if obs.status.export_id.is_none() && obs.pending.since.is_none() {
            return Deletion::Release("no region: nothing could have been started".into());
        }
        // An export may be running, and only its region's endpoint can stop it.
        return Deletion::Hold(messages::no_region());
    }
    let id = match target(obs) {
        Target::Export(id) => id,
        Target::Nothing(what) => return Deletion::Release(what),
        Target::Hold(failure) => return Deletion::Hold(failure),
    };
    if let Some(other) = obs.others.manager_of(&id, Among::Older) {
        return Deletion::Release(format!("export {id} is managed by ContinuousExport {}: not stopped", other.owner));
    }
    match obs.ads.described.clone().map(|r| r.map(|d| d.status)) {
        // STOP_FAILED: the export may still be exporting; ask again.
        Some(Ok(state)) if state.is(ExportStatus::Active) || state.is(ExportStatus::Error) => Deletion::Stop(id),
        Some(Ok(state)) if state.is(ExportStatus::StopFailed) => Deletion::Stop(id),
        Some(Ok(state)) if state.is(ExportStatus::StartInProgress) => Deletion::Hold(messages::still_starting(&id)),
        Some(Ok(other)) => Deletion::Release(format!("export {id} is {}", other.as_str())),
        // Not listed, which may just be too soon after Start: a Stop settles it.
        Some(Err(e)) if e.reason == Reason::NotFound => Deletion::Stop(id),
        Some(Err(e)) => Deletion::Hold(e.into()),
        None => Deletion::Stop(id),
    }
}

/// With `deletionPolicy: Retain`, the export left behind (also one of a start whose
/// answer was lost), for the `Retained` event; `None` when there is none.
fn retained_note(obs: &Observation) -> Option<String> {
    let mut status = obs.status.clone();
    if status.export_id.is_none()
        && let (Some(since), Some(Ok(exports))) = (obs.pending.since, obs.ads.listed.as_ref())
        && let Some(d) = pending_candidate(exports, since, &obs.others)
    {
        status.export_status = Some(d.status.as_str().to_owned());
        status.export_id = Some(d.export_id);
    }
    let id = status.export_id?;
    let state = status.export_status.as_deref().unwrap_or("in an unknown state");
    Some(if is_running(&crate::ads::ReportedStatus::from_wire(state)) {
        format!("deletionPolicy Retain: export {id} left running")
    } else {
        format!("deletionPolicy Retain: export {id} left as it is ({state})")
    })
}

/// Folds the Stop of a deleted object's export: released, or held by the failure; with
/// the events to publish.
pub fn fold_stop(obs: &Observation, id: &str, outcome: StopOutcome) -> (End, Vec<Notice>) {
    let region = obs.region.as_deref().unwrap_or_default();
    // The object is going away: its status times are not needed.
    let plan = Plan {
        annotation: AnnotationChange::Keep,
        status: obs.status.clone(),
        notices: Vec::new(),
        next: Next::Done(Ok(Phase::Steady)),
    };
    let mut scratch: Verdict = without_call(plan, Ok(Phase::Steady));
    let end = match record_stop(&mut scratch, id, region, outcome) {
        Ok(()) => End::Release(format!("stopped export {id}")),
        Err(e) if e.reason == Reason::NotFound => End::Release(format!("export {id} does not exist")),
        Err(e) => End::Hold(e.into()),
    };
    (end, scratch.notices)
}
