//! The second pure step: what a call's outcome (Start or Stop, with the read made right
//! after it) means for the status. [`super::act`] makes the calls; these functions
//! fold their outcomes into a [`Verdict`].

use super::decide::{
    AnnotationChange, Attempt, Goal, Notice, Phase, Plan, StopReason, copy_description, mark_gone, phase, settle,
};
use super::failure::Failure;
use super::messages;
use super::observation::Observation;
use crate::ads::{AdsError, ExportDescription, ExportStatus, Operation, Reason, StartedExport, StopTimes, format_time};
use crate::api::{ContinuousExportSpec, ContinuousExportStatus};

/// What a pass ends with before its conditions are computed: the status's export
/// fields, the result, the annotation change due before the status is written, and
/// the events to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The status (export fields; conditions as stored).
    pub status: ContinuousExportStatus,
    /// The phase reached, or why not.
    pub result: Result<Phase, Failure>,
    /// Made before the status is written.
    pub annotation: AnnotationChange,
    /// Events to publish before the status is written.
    pub notices: Vec<Notice>,
}

/// What StartContinuousExport (and the read after it) gave.
#[derive(Clone, Debug, PartialEq)]
pub enum StartOutcome {
    /// Not sent: another object of this process holds the region's start gate.
    Gated {
        /// Its `namespace/name`.
        holder: String,
    },
    /// Started; then Describe of the new export answered this.
    Started {
        /// Start's answer.
        started: StartedExport,
        /// Describe's answer.
        described: Result<ExportDescription, AdsError>,
    },
    /// Start failed; on `ConflictErrorException` the region was listed, and this is
    /// its running export (if the listing worked and found one).
    Failed {
        /// Start's error.
        error: AdsError,
        /// The running export that conflicts.
        running: Option<ExportDescription>,
    },
}

/// What StopContinuousExport (and the read after it) gave.
#[derive(Clone, Debug, PartialEq)]
pub enum StopOutcome {
    /// Stopped; `described` is the Describe made when the times were wanted and missing.
    Stopped {
        /// Stop's answer.
        times: StopTimes,
        /// Describe's answer, when one was made.
        described: Option<Result<ExportDescription, AdsError>>,
    },
    /// `OperationNotPermitted` (stopped meanwhile by someone else?); then Describe answered.
    Refused {
        /// Stop's error.
        error: AdsError,
        /// Describe's answer.
        described: Result<ExportDescription, AdsError>,
    },
    /// Any other failure.
    Failed(AdsError),
}

/// The verdict of a plan that made no call.
pub fn without_call(plan: Plan, result: Result<Phase, Failure>) -> Verdict {
    Verdict { status: plan.status, result, annotation: AnnotationChange::Keep, notices: plan.notices }
}

/// Folds a Start's outcome. `attempt` was the plan's.
pub fn start(
    spec: &ContinuousExportSpec,
    obs: &Observation,
    plan: Plan,
    attempt: Attempt,
    outcome: StartOutcome,
) -> Verdict {
    let region = obs.region.as_deref().unwrap_or_default();
    let mut verdict = without_call(plan, Ok(Phase::Steady));
    verdict.result = match outcome {
        StartOutcome::Gated { holder } => Err(messages::pending_elsewhere(&holder, region)),
        StartOutcome::Failed { mut error, running } => {
            // A definite failure started nothing. A conflict after an earlier attempt
            // whose answer was lost may be that attempt's export, not yet listed when
            // checked: keep the annotation so the next pass looks again.
            let maybe_ours = error.reason == Reason::Conflict && attempt == Attempt::Retry;
            if !error.ambiguous && !maybe_ours {
                verdict.annotation = AnnotationChange::Clear;
            }
            if let Some(active) = running.filter(|_| error.reason == Reason::Conflict) {
                error.message = messages::conflict(region, &active, &error.message, &obs.others);
            }
            Err(error.into())
        }
        StartOutcome::Started { started, described } => {
            let note = format!("started export {} in {region}", started.export_id);
            verdict.notices.push(Notice::normal("Started", Operation::Start.name(), note));
            record_start(&mut verdict.status, &started);
            match described {
                Ok(d) => settle_into(spec, &mut verdict, &d),
                // Not listed yet right after Start (eventual consistency): it is starting.
                Err(e) if e.reason == Reason::NotFound => settle_into(spec, &mut verdict, &starting(started)),
                Err(e) => Err(e.into()),
            }
        }
    };
    verdict
}

/// Remembers a started export at once: if the Describe after Start fails, the status
/// written with the error still records which export this object owns.
fn record_start(status: &mut ContinuousExportStatus, started: &StartedExport) {
    status.export_id = Some(started.export_id.clone());
    status.s3_bucket = started.s3_bucket.clone();
    status.data_source = started.data_source.clone();
    status.database_name = started.database_name.clone();
    status.start_time = started.start_time.map(format_time);
    status.export_status = Some(ExportStatus::StartInProgress.as_str().into());
}

/// A just-started export as Describe would show it while starting.
fn starting(started: StartedExport) -> ExportDescription {
    ExportDescription {
        export_id: started.export_id,
        status: ExportStatus::StartInProgress.into(),
        status_detail: None,
        s3_bucket: started.s3_bucket,
        data_source: started.data_source,
        database_name: started.database_name,
        start_time: started.start_time,
        stop_time: None,
    }
}

fn settle_into(spec: &ContinuousExportSpec, verdict: &mut Verdict, d: &ExportDescription) -> Result<Phase, Failure> {
    copy_description(&mut verdict.status, d);
    let (annotation, result) = settle(spec, &mut verdict.status, d);
    if annotation == AnnotationChange::Clear {
        verdict.annotation = AnnotationChange::Clear;
    }
    result
}

/// Folds a Stop's outcome into the plan's status, per why it was sent.
pub fn stop(
    spec: &ContinuousExportSpec,
    obs: &Observation,
    plan: Plan,
    id: &str,
    reason: &StopReason,
    outcome: StopOutcome,
) -> Verdict {
    let region = obs.region.as_deref().unwrap_or_default();
    let mut verdict = without_call(plan, Ok(Phase::Steady));
    let stopped = record_stop(&mut verdict, id, region, outcome);
    verdict.result = match (reason, stopped) {
        // Gone between Describe and Stop (or never listed): nothing left to stop.
        (_, Err(e)) if e.reason == Reason::NotFound => {
            mark_gone(&mut verdict.status);
            Ok(Phase::Gone)
        }
        (_, Err(e)) => Err(e.into()),
        (StopReason::Unlisted, Ok(())) => {
            verdict.status.status_detail = None;
            Ok(Phase::Transition)
        }
        // Stop was sent again; whatever it leads to, the next look is on the failure
        // backoff schedule, so a stop that keeps failing is no hot loop.
        (StopReason::Requested { was: ExportStatus::StopFailed, detail }, Ok(())) => {
            Err(messages::stop_failed(detail.as_deref().unwrap_or("no detail")))
        }
        (StopReason::Requested { .. }, Ok(())) => Ok(phase(Goal::of(spec), &verdict.status)),
    };
    verdict
}

/// What a Stop did to the status: `STOP_IN_PROGRESS` and the times (from the answer or
/// the Describe after it), or, when ADS refused because the export is already stopping
/// or stopped, what Describe says. `Err` when it failed.
pub fn record_stop(verdict: &mut Verdict, id: &str, region: &str, outcome: StopOutcome) -> Result<(), AdsError> {
    let status = &mut verdict.status;
    match outcome {
        StopOutcome::Stopped { times, described } => {
            status.export_status = Some(ExportStatus::StopInProgress.as_str().into());
            if let Some(t) = times.start_time {
                status.start_time = Some(format_time(t));
            }
            if let Some(t) = times.stop_time {
                status.stop_time = Some(format_time(t));
            }
            verdict.notices.push(Notice::normal("Stopped", Operation::Stop.name(), format!("stopped export {id}")));
            let timed = status.start_time.is_some() && status.stop_time.is_some();
            match described {
                Some(Ok(d)) => copy_description(status, &d),
                // The Stop was taken and both times are known (from its answer or an
                // earlier look): the transition watch looks again.
                Some(Err(_)) if timed => {}
                Some(Err(e)) => return Err(messages::managed_gone(e, id, region)),
                None => {}
            }
            Ok(())
        }
        // Stopped meanwhile by someone else: fine if it is now stopping or stopped.
        StopOutcome::Refused { error, described } => {
            let d = described.map_err(|e| messages::managed_gone(e, id, region))?;
            copy_description(status, &d);
            let settled = d.status.is(ExportStatus::Inactive) || d.status.is(ExportStatus::StopInProgress);
            if settled { Ok(()) } else { Err(error) }
        }
        StopOutcome::Failed(e) => Err(e),
    }
}
